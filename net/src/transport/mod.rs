//! The QUIC transport between management nodes, and between participants and their home node.
//!
//! Message-agnostic: it moves frames (byte strings) between authenticated peers and knows
//! nothing of what they mean.
//!
//! - **Identity.** Every endpoint holds an ed25519 key of the consortium. TLS 1.3 runs with
//!   RFC 7250 raw public keys ([`tls`]): both sides present their key and sign the handshake.
//!   A server accepts only keys in its [`Directory`] (built from the registry: the genesis
//!   with the changes on chain applied) and tells the application which [`Peer`] connected; a
//!   client accepts only the key it meant to reach. Anything else fails the handshake and is
//!   logged with the offending key's hex. The node replaces its endpoint's directory when a
//!   decided block changes the registry ([`Endpoint::set_directory`]): from then on a revoked or
//!   replaced key is refused, its open connections are closed, and links pin members' new keys.
//! - **Protocol version.** ALPN [`ALPN`]; a peer speaking another version is refused.
//! - **Framing.** A frame is a `u32` big-endian length and that many bytes, at most the
//!   configured [`TransportConfig::max_frame_len`] (never above [`MAX_FRAME_LEN`]). A peer that
//!   breaks framing loses that stream or connection, never the endpoint.
//! - **Messages** (one-way, ordered): [`Endpoint::send`] queues a frame on the outbound link to
//!   a member. A link connects lazily, keeps one long-lived unidirectional stream, reconnects
//!   with capped exponential backoff, and drops frames only when its bounded queue is full.
//! - **Requests** (request/response): one bidirectional stream per request, carrying one frame
//!   each way ([`Endpoint::request`], [`Client::request`]). Participants use [`Client`].
//!
//! Everything must run inside a tokio runtime.

mod client;
mod endpoint;
mod frame;
mod link;
pub mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tieline_core::crypto::PublicKey;
use tieline_core::genesis::Genesis;
use tieline_core::units::{NodeId, ParticipantId};

pub use client::Client;
pub use endpoint::{Endpoint, Inbound, Responder};
pub use frame::FrameError;

/// The ALPN protocol id: names the wire protocol and its version.
pub const ALPN: &[u8] = b"tieline/1";

/// The largest frame any configuration may allow: 64 MiB. A frame is held whole in memory, so
/// this bounds what one peer can make us allocate per stream.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;
/// The default frame limit: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// The default capacity of each outbound link's queue, in frames.
pub const DEFAULT_SEND_QUEUE_LEN: usize = 8192;
/// The capacity of the queue of inbound messages and requests handed to the application.
pub const INBOUND_QUEUE_LEN: usize = 8192;
/// A link writes at most this many bytes of queued frames in one stream write (a frame larger
/// than this is written alone).
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// The most requests in flight on one connection (concurrent bidirectional streams).
pub const MAX_CONCURRENT_REQUESTS: u32 = 256;
/// The most unidirectional (message) streams a peer may have open on one connection; a link
/// uses one at a time.
pub const MAX_MESSAGE_STREAMS: u32 = 4;
/// The round-trip time assumed before one is measured. It sets when a lost handshake packet is
/// sent again (about three times this), so a link to a member that starts a moment later comes
/// up within a fraction of a second rather than after quinn's default of one second.
pub const INITIAL_RTT: Duration = Duration::from_millis(100);
/// The most connections an endpoint keeps at once (members and participants together).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Application close and stream error codes the transport uses on the wire.
pub mod codes {
    /// Normal close: the endpoint shuts down.
    pub const SHUTDOWN: u32 = 0;
    /// A frame's declared length is above the limit.
    pub const FRAME_TOO_LARGE: u32 = 1;
    /// A stream broke the framing rules (cut short, or extra data after a request).
    pub const MALFORMED: u32 = 2;
    /// The application did not answer a request.
    pub const NO_REPLY: u32 = 3;
    /// The connection negotiated another protocol than [`super::ALPN`].
    pub const WRONG_PROTOCOL: u32 = 4;
    /// The endpoint has too many connections.
    pub const BUSY: u32 = 5;
    /// The peer's key is no longer in the directory: replaced or revoked on chain.
    pub const KEY_RETIRED: u32 = 6;
}

/// Timeouts, limits and backoff of an endpoint or client.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Largest frame accepted or sent; at most [`MAX_FRAME_LEN`].
    pub max_frame_len: usize,
    /// Capacity of each outbound link's queue, in frames.
    pub send_queue_len: usize,
    /// Most connections an endpoint keeps; further connection attempts are refused.
    pub max_connections: usize,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
    /// How long a request may take end to end (connecting, sending, the reply); also how long
    /// an endpoint waits for the application to answer a request.
    pub request_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Keep-alive period, so idle links stay up and dead peers are noticed.
    pub keep_alive: Duration,
    /// First wait before reconnecting a link.
    pub backoff_initial: Duration,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            send_queue_len: DEFAULT_SEND_QUEUE_LEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl TransportConfig {
    fn validate(&self) -> Result<(), TransportError> {
        let bad = |what: &str| Err(TransportError::Config(what.to_string()));
        if self.max_frame_len == 0 || self.max_frame_len > MAX_FRAME_LEN {
            return bad("max_frame_len must be between 1 and MAX_FRAME_LEN");
        }
        if self.send_queue_len == 0 || self.max_connections == 0 {
            return bad("send_queue_len and max_connections must be positive");
        }
        if self.keep_alive >= self.idle_timeout {
            return bad("keep_alive must be shorter than idle_timeout");
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            return bad("backoff_initial must be positive and at most backoff_max");
        }
        Ok(())
    }

    fn quinn_transport(&self) -> Result<Arc<quinn::TransportConfig>, TransportError> {
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TransportError::Config("idle_timeout out of range".into()))?;
        let mut t = quinn::TransportConfig::default();
        t.max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .initial_rtt(INITIAL_RTT)
            .max_concurrent_bidi_streams(MAX_CONCURRENT_REQUESTS.into())
            .max_concurrent_uni_streams(MAX_MESSAGE_STREAMS.into());
        Ok(Arc::new(t))
    }
}

/// Who is at the other end of a connection, as the genesis names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A management node.
    Member(NodeId),
    /// A market participant.
    Participant(ParticipantId),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Member(id) => write!(f, "member {id}"),
            Peer::Participant(id) => write!(f, "participant {id}"),
        }
    }
}

/// A member as the transport needs it: its key and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddress {
    /// The key it must authenticate with.
    pub public_key: PublicKey,
    /// `host:port`.
    pub address: String,
}

/// The keys an endpoint accepts, and whom each belongs to.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    by_key: BTreeMap<PublicKey, Peer>,
    members: BTreeMap<NodeId, MemberAddress>,
}

impl Directory {
    /// An empty directory: accepts nobody.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every member and every admitted participant of `genesis`.
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let mut d = Self::new();
        for m in &genesis.members {
            d.add_member(m.id, m.public_key, m.address.clone());
        }
        for p in &genesis.participants {
            d.add_participant(p.id, p.public_key);
        }
        d
    }

    /// What the management node `home` accepts: every member, and the participants whose home
    /// it is (a participant talks to its home node only).
    pub fn for_home(genesis: &Genesis, home: NodeId) -> Self {
        let mut d = Self::new();
        for m in &genesis.members {
            d.add_member(m.id, m.public_key, m.address.clone());
        }
        for p in genesis.participants.iter().filter(|p| p.home == home) {
            d.add_participant(p.id, p.public_key);
        }
        d
    }

    /// Adds (or replaces) a member.
    pub fn add_member(&mut self, id: NodeId, public_key: PublicKey, address: String) {
        if let Some(old) = self.members.insert(
            id,
            MemberAddress {
                public_key,
                address,
            },
        ) {
            self.by_key.remove(&old.public_key);
        }
        self.by_key.insert(public_key, Peer::Member(id));
    }

    /// Adds (or replaces) a participant's key.
    pub fn add_participant(&mut self, id: ParticipantId, public_key: PublicKey) {
        self.by_key.insert(public_key, Peer::Participant(id));
    }

    /// Who holds `key`, if anyone admitted.
    pub fn peer(&self, key: &PublicKey) -> Option<Peer> {
        self.by_key.get(key).copied()
    }

    /// A member's key and address.
    pub fn member(&self, id: NodeId) -> Option<&MemberAddress> {
        self.members.get(&id)
    }

    /// How many keys are accepted.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key is accepted.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Live counters of an endpoint or client, for export as metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    connected_peers: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    refused_handshakes: AtomicU64,
    oversized_frames: AtomicU64,
    malformed_frames: AtomicU64,
    dropped_frames: AtomicU64,
    reconnects: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Connections currently established, inbound and outbound.
    pub connected_peers: u64,
    /// Frames received (messages, requests and replies).
    pub frames_in: u64,
    /// Frames sent (messages, requests and replies).
    pub frames_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Handshakes that failed: inbound ones refused or broken off, outbound ones whose server
    /// did not hold the pinned key.
    pub refused_handshakes: u64,
    /// Frames refused for exceeding the frame limit, inbound or outbound.
    pub oversized_frames: u64,
    /// Streams that broke the framing rules.
    pub malformed_frames: u64,
    /// Frames dropped because a link's queue was full.
    pub dropped_frames: u64,
    /// Link connections re-established after a loss.
    pub reconnects: u64,
}

impl Metrics {
    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            connected_peers: get(&self.connected_peers),
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            refused_handshakes: get(&self.refused_handshakes),
            oversized_frames: get(&self.oversized_frames),
            malformed_frames: get(&self.malformed_frames),
            dropped_frames: get(&self.dropped_frames),
            reconnects: get(&self.reconnects),
        }
    }

    fn count_refused_handshake(&self) {
        self.refused_handshakes.fetch_add(1, Ordering::Relaxed);
    }
    fn count_in(&self, frames: u64, bytes: usize) {
        self.frames_in.fetch_add(frames, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn count_out(&self, frames: u64, bytes: usize) {
        self.frames_out.fetch_add(frames, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn count_oversized(&self) {
        self.oversized_frames.fetch_add(1, Ordering::Relaxed);
    }
    fn count_malformed(&self) {
        self.malformed_frames.fetch_add(1, Ordering::Relaxed);
    }
    fn count_dropped(&self) -> u64 {
        self.dropped_frames.fetch_add(1, Ordering::Relaxed) + 1
    }
    fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection as established until the guard is dropped.
    fn connected(self: &Arc<Self>) -> ConnectedGuard {
        self.connected_peers.fetch_add(1, Ordering::Relaxed);
        ConnectedGuard(self.clone())
    }
}

struct ConnectedGuard(Arc<Metrics>);

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.connected_peers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why an endpoint or client cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The UDP socket cannot be bound or used.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("transport configuration: {0}")]
    Config(String),
    /// The TLS configuration cannot be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsConfigError),
}

/// Why a message was not queued. The link itself never reports delivery: consensus tolerates
/// loss and retransmits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The destination is not a member in the directory, or is this endpoint itself.
    #[error("no link to node {0}: not another member in the directory")]
    UnknownMember(NodeId),
    /// The frame exceeds the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The link's queue is full; the frame was dropped.
    #[error("the queue of the link to node {0} is full; frame dropped")]
    QueueFull(NodeId),
    /// The endpoint is shutting down.
    #[error("the endpoint is shut down")]
    Closed,
}

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The destination is not a member in the directory, or is this endpoint itself.
    #[error("no link to node {0}: not another member in the directory")]
    UnknownMember(NodeId),
    /// The request exceeds the frame limit.
    #[error("request of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No connection could be made.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The connection failed or was closed (for instance because the server refused our key).
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] quinn::ConnectionError),
    /// The peer refused the request stream or did not answer; the code is one of [`codes`].
    #[error("request refused by the peer (code {0})")]
    Refused(u64),
    /// The request stream could not be written.
    #[error("cannot send the request: {0}")]
    Write(quinn::WriteError),
    /// The reply broke the framing rules.
    #[error("bad reply: {0}")]
    BadReply(FrameError),
    /// No reply within the request timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The endpoint is shutting down.
    #[error("the endpoint is shut down")]
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tieline_core::sample::SampleConsortium;

    #[test]
    fn directory_admits_members_and_home_participants_only() {
        let s = SampleConsortium::new(3, 2);
        let all = Directory::from_genesis(&s.genesis);
        assert_eq!(all.len(), 3 + 6);
        let home = Directory::for_home(&s.genesis, NodeId(2));
        assert_eq!(home.len(), 3 + 2);
        for m in &s.genesis.members {
            assert_eq!(home.peer(&m.public_key), Some(Peer::Member(m.id)));
            assert_eq!(home.member(m.id).unwrap().address, m.address);
        }
        for p in &s.genesis.participants {
            let expected = (p.home == NodeId(2)).then_some(Peer::Participant(p.id));
            assert_eq!(home.peer(&p.public_key), expected);
        }
        assert_eq!(home.peer(&PublicKey([9; 32])), None);
    }

    #[test]
    fn replacing_a_member_forgets_its_old_key() {
        let mut d = Directory::new();
        d.add_member(NodeId(1), PublicKey([1; 32]), "127.0.0.1:1".into());
        d.add_member(NodeId(1), PublicKey([2; 32]), "127.0.0.1:2".into());
        assert_eq!(d.peer(&PublicKey([1; 32])), None);
        assert_eq!(d.peer(&PublicKey([2; 32])), Some(Peer::Member(NodeId(1))));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn config_limits_are_checked() {
        assert!(TransportConfig::default().validate().is_ok());
        let too_large = TransportConfig {
            max_frame_len: MAX_FRAME_LEN + 1,
            ..TransportConfig::default()
        };
        assert!(too_large.validate().is_err());
        let keep_alive_too_long = TransportConfig {
            keep_alive: Duration::from_secs(60),
            ..TransportConfig::default()
        };
        assert!(keep_alive_too_long.validate().is_err());
    }
}
