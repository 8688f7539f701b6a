//! A management node's endpoint: it serves inbound connections from members and participants
//! and keeps an outbound link to each member it sends to.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use quinn::crypto::rustls::QuicServerConfig;
use tieline_core::crypto::{Ed25519Signer, Signer, sha256};
use tieline_core::units::NodeId;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::client::request_on;
use super::frame::{self, FrameError, FrameReader};
use super::link::{self, LinkContext, LinkHandle};
use super::{
    ALPN, Directory, INBOUND_QUEUE_LEN, Metrics, MetricsSnapshot, Peer, RequestError, SendError,
    TransportConfig, TransportError, codes, tls,
};

/// What arrives from peers, in the order each stream delivers it.
#[derive(Debug)]
pub enum Inbound {
    /// A one-way message on a peer's link.
    Message {
        /// The authenticated sender.
        from: Peer,
        /// The frame.
        frame: Bytes,
    },
    /// A request that expects one reply through `reply`.
    Request {
        /// The authenticated sender.
        from: Peer,
        /// The frame.
        frame: Bytes,
        /// Where the answer goes.
        reply: Responder,
    },
}

/// The way back to a requester. Dropping it without [`Responder::send`] refuses the request
/// (the requester sees [`RequestError::Refused`] with [`codes::NO_REPLY`]).
#[derive(Debug)]
pub struct Responder(oneshot::Sender<Bytes>);

impl Responder {
    /// Answers the request. A reply above the frame limit is not sent; the request is refused.
    pub fn send(self, reply: Bytes) {
        // The requester may have given up; then nobody waits for the reply.
        let _ = self.0.send(reply);
    }
}

/// The key of the stateless-reset tokens an endpoint issues: HMAC-SHA256 under a key derived
/// from the endpoint's signing seed (never the seed itself), so it is the same after a restart.
struct ResetKey([u8; 32]);

impl ResetKey {
    fn derive(seed: &[u8; 32]) -> Self {
        ResetKey(sha256(&[b"tieline/quic-stateless-reset/1", seed]).0)
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut inner_pad = [0x36u8; 64];
        let mut outer_pad = [0x5cu8; 64];
        for (i, k) in self.0.iter().enumerate() {
            inner_pad[i] ^= k;
            outer_pad[i] ^= k;
        }
        let inner = sha256(&[&inner_pad, data]);
        sha256(&[&outer_pad, &inner.0]).0
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        signature_out.copy_from_slice(&self.mac(data));
    }
    fn signature_len(&self) -> usize {
        32
    }
    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        if self.mac(data).as_slice() == signature {
            Ok(())
        } else {
            Err(quinn::crypto::CryptoError)
        }
    }
}

/// Random 8-byte connection ids that any incarnation of the endpoint accepts as plausibly its
/// own (quinn's default generator rejects ids of an earlier process, so it would never send
/// the stateless reset that tells a peer its connection is gone).
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut bytes = [0u8; 8];
        rand::Rng::fill(&mut rand::thread_rng(), &mut bytes);
        quinn::ConnectionId::new(&bytes)
    }
    fn cid_len(&self) -> usize {
        8
    }
    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// What the tasks serving inbound connections share.
struct ServeContext {
    directory: watch::Receiver<Arc<Directory>>,
    config: TransportConfig,
    metrics: Arc<Metrics>,
    inbound: mpsc::Sender<Inbound>,
    endpoint: quinn::Endpoint,
}

struct Inner {
    quinn: quinn::Endpoint,
    me: Option<NodeId>,
    directory: watch::Sender<Arc<Directory>>,
    local_addr: SocketAddr,
    links: Mutex<BTreeMap<NodeId, LinkHandle>>,
    link_context: Arc<LinkContext>,
    shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.quinn
            .close(codes::SHUTDOWN.into(), b"endpoint dropped");
    }
}

/// A management node's QUIC endpoint. Cheap to clone; the endpoint stops when the last clone
/// is dropped or [`Endpoint::shutdown`] is called.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

impl Endpoint {
    /// Binds `addr` and starts serving. Returns the endpoint and the queue of inbound messages
    /// and requests (bounded by [`INBOUND_QUEUE_LEN`]: a slow reader slows its peers down
    /// through QUIC flow control rather than losing frames). Must be called inside a tokio
    /// runtime.
    pub fn bind(
        addr: SocketAddr,
        signer: Ed25519Signer,
        directory: Directory,
        config: TransportConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), TransportError> {
        let socket = UdpSocket::bind(addr).map_err(|source| TransportError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        Self::from_socket(socket, signer, directory, config)
    }

    /// Like [`Endpoint::bind`], on a socket bound already (so a caller can learn its port
    /// before the directory is complete).
    pub fn from_socket(
        socket: UdpSocket,
        signer: Ed25519Signer,
        directory: Directory,
        config: TransportConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), TransportError> {
        config.validate()?;
        let local_addr = socket.local_addr().map_err(|source| TransportError::Bind {
            addr: "socket".into(),
            source,
        })?;
        let bind_err = |source| TransportError::Bind {
            addr: local_addr.to_string(),
            source,
        };
        let signer = Arc::new(signer);
        let metrics = Arc::new(Metrics::default());
        let me = match directory.peer(&signer.public_key()) {
            Some(Peer::Member(id)) => Some(id),
            _ => None,
        };
        let (directory_tx, directory) = watch::channel(Arc::new(directory));

        let rustls = tls::server_config(&signer, directory.clone())?;
        let crypto = QuicServerConfig::try_from(rustls)
            .map_err(|e| TransportError::Config(format!("QUIC server crypto: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(config.quinn_transport()?);
        server.max_incoming(config.max_connections);

        let runtime = quinn::default_runtime()
            .ok_or_else(|| TransportError::Config("no async runtime found".into()))?;
        // Stateless-reset tokens derive from the node's key, so after a restart the node can
        // reset its peers' connections to its previous incarnation at once, instead of leaving
        // them to the idle timeout.
        let reset_key = Arc::new(ResetKey::derive(&signer.seed()));
        let mut endpoint_config = quinn::EndpointConfig::new(reset_key);
        endpoint_config.cid_generator(|| Box::new(RandomCids));
        let quinn = quinn::Endpoint::new(endpoint_config, Some(server), socket, runtime)
            .map_err(bind_err)?;

        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE_LEN);
        let (shutdown, _) = watch::channel(false);
        let serve = Arc::new(ServeContext {
            directory: directory.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            inbound: inbound_tx,
            endpoint: quinn.clone(),
        });
        tokio::spawn(accept_loop(serve));
        let link_context = Arc::new(LinkContext {
            quinn: quinn.clone(),
            signer,
            directory,
            config,
            metrics,
            shutdown: shutdown.subscribe(),
        });
        info!(%local_addr, ?me, "transport endpoint listening");
        let inner = Inner {
            quinn,
            me,
            directory: directory_tx,
            local_addr,
            links: Mutex::new(BTreeMap::new()),
            link_context,
            shutdown,
        };
        Ok((
            Endpoint {
                inner: Arc::new(inner),
            },
            inbound_rx,
        ))
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This endpoint's member id, if its key is a member's in the directory.
    pub fn me(&self) -> Option<NodeId> {
        self.inner.me
    }

    /// The keys the endpoint accepts now.
    pub fn directory(&self) -> Arc<Directory> {
        self.inner.directory.borrow().clone()
    }

    /// Replaces the keys the endpoint accepts (the registry changed on chain): new handshakes
    /// are checked against `directory`; a participant's connection whose key it no longer maps
    /// to the same participant is closed ([`codes::KEY_RETIRED`]). A member whose key was
    /// replaced keeps its open connections (it learns the block that replaced its key over
    /// them, and the core refuses what it signs with the old key), and the link to it keeps its
    /// connection until the member answers under the new key, then reconnects pinning it.
    /// Members keep their addresses, and this endpoint its member id.
    pub fn set_directory(&self, directory: Directory) {
        self.inner.directory.send_replace(Arc::new(directory));
    }

    /// The endpoint's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.link_context.metrics.snapshot()
    }

    /// The link to `to`, started on first use.
    fn link(&self, to: NodeId) -> Option<LinkHandle> {
        if Some(to) == self.inner.me || *self.inner.shutdown.borrow() {
            return None;
        }
        let mut links = self.inner.links.lock().expect("link table lock");
        if let Some(l) = links.get(&to) {
            return Some(l.clone());
        }
        let handle = link::spawn(self.inner.link_context.clone(), to)?;
        links.insert(to, handle.clone());
        Some(handle)
    }

    /// Queues `frame` for member `to`, in order after earlier frames to it. Returns at once:
    /// delivery is not confirmed, and frames queued while the link is down are sent once it is
    /// back (or dropped when the queue overflows).
    pub fn send(&self, to: NodeId, frame: Bytes) -> Result<(), SendError> {
        let max = self.inner.link_context.config.max_frame_len;
        if frame.len() > max {
            self.inner.link_context.metrics.count_oversized();
            warn!(to = %to, len = frame.len(), max, "refused to send an oversized frame");
            return Err(SendError::TooLarge {
                len: frame.len(),
                max,
            });
        }
        if *self.inner.shutdown.borrow() {
            return Err(SendError::Closed);
        }
        let link = self.link(to).ok_or(SendError::UnknownMember(to))?;
        link.enqueue(frame, &self.inner.link_context.metrics)
    }

    /// Sends `request` to member `to` over its link's connection and waits for the reply,
    /// within the configured request timeout (waiting for the link to connect included).
    pub async fn request(&self, to: NodeId, request: &[u8]) -> Result<Bytes, RequestError> {
        let context = &self.inner.link_context;
        if request.len() > context.config.max_frame_len {
            context.metrics.count_oversized();
            return Err(RequestError::TooLarge {
                len: request.len(),
                max: context.config.max_frame_len,
            });
        }
        let link = self.link(to).ok_or(RequestError::UnknownMember(to))?;
        let timeout = context.config.request_timeout;
        tokio::time::timeout(timeout, async {
            let connection = link.connection().await.ok_or(RequestError::Closed)?;
            request_on(
                &connection,
                request,
                context.config.max_frame_len,
                &context.metrics,
            )
            .await
        })
        .await
        .unwrap_or(Err(RequestError::Timeout(timeout)))
    }

    /// Stops links and listening, tells connected peers, and waits until they have been told
    /// (so the port can be bound again).
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        self.inner.links.lock().expect("link table lock").clear();
        self.inner
            .quinn
            .close(codes::SHUTDOWN.into(), b"endpoint shut down");
        self.inner.quinn.wait_idle().await;
    }
}

async fn accept_loop(context: Arc<ServeContext>) {
    while let Some(incoming) = context.endpoint.accept().await {
        if context.endpoint.open_connections() >= context.config.max_connections {
            warn!(remote = %incoming.remote_address(), "refused a connection: too many connections");
            incoming.refuse();
            continue;
        }
        tokio::spawn(serve_connection(context.clone(), incoming));
    }
    debug!("endpoint closed; no longer accepting");
}

fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

async fn serve_connection(context: Arc<ServeContext>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let handshake = tokio::time::timeout(context.config.handshake_timeout, incoming).await;
    let connection = match handshake {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            context.metrics.count_refused_handshake();
            warn!(%remote, error = %e, "inbound handshake failed");
            return;
        }
        Err(_) => {
            context.metrics.count_refused_handshake();
            warn!(%remote, "inbound handshake timed out");
            return;
        }
    };
    // The TLS layer refuses other protocols; this double-checks what was negotiated.
    if negotiated_alpn(&connection).as_deref() != Some(ALPN) {
        context.metrics.count_refused_handshake();
        warn!(%remote, "refused a connection that did not negotiate {:?}", ALPN);
        connection.close(codes::WRONG_PROTOCOL.into(), b"wrong protocol");
        return;
    }
    let mut directory = context.directory.clone();
    let key = tls::peer_key(&connection);
    let Some((key, peer)) = key.and_then(|k| Some((k, directory.borrow_and_update().peer(&k)?)))
    else {
        // The verifier accepted the key, so it left the directory since, or never was there;
        // refuse rather than trust.
        context.metrics.count_refused_handshake();
        warn!(%remote, "refused a connection without a directory key");
        connection.close(codes::KEY_RETIRED.into(), b"unknown key");
        return;
    };
    let _connected = context.metrics.connected();
    info!(%remote, %peer, "peer connected");
    let mut watching = true;
    loop {
        tokio::select! {
            changed = directory.changed(), if watching => match changed {
                // A member whose key was replaced keeps its connections until it restarts under
                // the new key (it must learn the block that replaced it; the core refuses what
                // it signs with the old key); new handshakes with the old key are refused.
                Ok(()) => {
                    let now = directory.borrow_and_update().peer(&key);
                    let member_replaced = matches!(peer, Peer::Member(m) if directory.borrow().member(m).is_some());
                    if now != Some(peer) && !member_replaced {
                        warn!(%remote, %peer, key = %key, "the key is no longer accepted (replaced or revoked on chain); closing the connection");
                        connection.close(codes::KEY_RETIRED.into(), b"key no longer accepted");
                        break;
                    }
                }
                // The endpoint is gone; the connection ends with it.
                Err(_) => watching = false,
            },
            stream = connection.accept_uni() => match stream {
                Ok(recv) => {
                    tokio::spawn(read_messages(context.clone(), connection.clone(), peer, recv));
                }
                Err(e) => {
                    info!(%remote, %peer, reason = %e, "peer disconnected");
                    break;
                }
            },
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    tokio::spawn(serve_request(context.clone(), peer, send, recv));
                }
                Err(e) => {
                    info!(%remote, %peer, reason = %e, "peer disconnected");
                    break;
                }
            },
        }
    }
}

/// Reads one link's messages until the stream ends. A framing violation closes the connection:
/// the stream's frame boundaries are lost, and the peer's link reconnects.
async fn read_messages(
    context: Arc<ServeContext>,
    connection: quinn::Connection,
    peer: Peer,
    recv: quinn::RecvStream,
) {
    let mut reader = FrameReader::new(recv, context.config.max_frame_len);
    loop {
        match reader.next().await {
            Ok(Some(frame)) => {
                context.metrics.count_in(1, frame.len());
                let message = Inbound::Message { from: peer, frame };
                if context.inbound.send(message).await.is_err() {
                    return; // Nobody reads any more: the node is stopping.
                }
            }
            Ok(None) => return,
            Err(FrameError::TooLarge { len, max }) => {
                context.metrics.count_oversized();
                warn!(%peer, len, max, "oversized frame on a message stream; closing the connection");
                reader.stop(codes::FRAME_TOO_LARGE);
                connection.close(codes::FRAME_TOO_LARGE.into(), b"frame too large");
                return;
            }
            Err(FrameError::Read(e)) => {
                debug!(%peer, error = %e, "message stream ended");
                return;
            }
            Err(e) => {
                context.metrics.count_malformed();
                warn!(%peer, error = %e, "malformed message stream; closing the connection");
                connection.close(codes::MALFORMED.into(), b"malformed frame");
                return;
            }
        }
    }
}

/// Serves one request stream: one frame in, the application's answer out. A framing violation
/// refuses this request only; the connection keeps serving.
async fn serve_request(
    context: Arc<ServeContext>,
    peer: Peer,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut reader = FrameReader::new(recv, context.config.max_frame_len);
    let timeout = context.config.request_timeout;
    let refuse = |send: &mut quinn::SendStream, reader: &mut FrameReader, code: u32| {
        reader.stop(code);
        // The stream may be gone already; nothing more to do then.
        let _ = send.reset(code.into());
    };
    let request = match tokio::time::timeout(timeout, reader.single()).await {
        Ok(Ok(frame)) => frame,
        Ok(Err(FrameError::TooLarge { len, max })) => {
            context.metrics.count_oversized();
            warn!(%peer, len, max, "refused an oversized request");
            refuse(&mut send, &mut reader, codes::FRAME_TOO_LARGE);
            return;
        }
        Ok(Err(FrameError::Read(e))) => {
            debug!(%peer, error = %e, "request stream failed");
            return;
        }
        Ok(Err(e)) => {
            context.metrics.count_malformed();
            warn!(%peer, error = %e, "refused a malformed request");
            refuse(&mut send, &mut reader, codes::MALFORMED);
            return;
        }
        Err(_) => {
            warn!(%peer, "request not received within {timeout:?}");
            refuse(&mut send, &mut reader, codes::MALFORMED);
            return;
        }
    };
    context.metrics.count_in(1, request.len());
    let (reply_tx, reply_rx) = oneshot::channel();
    let inbound = Inbound::Request {
        from: peer,
        frame: request,
        reply: Responder(reply_tx),
    };
    if context.inbound.send(inbound).await.is_err() {
        refuse(&mut send, &mut reader, codes::NO_REPLY);
        return;
    }
    let reply = match tokio::time::timeout(timeout, reply_rx).await {
        Ok(Ok(reply)) if reply.len() <= context.config.max_frame_len => reply,
        Ok(Ok(reply)) => {
            context.metrics.count_oversized();
            warn!(%peer, len = reply.len(), "refused to send an oversized reply");
            refuse(&mut send, &mut reader, codes::NO_REPLY);
            return;
        }
        Ok(Err(_)) | Err(_) => {
            refuse(&mut send, &mut reader, codes::NO_REPLY);
            return;
        }
    };
    match send.write_all(&frame::encode(&reply)).await {
        Ok(()) => {
            context.metrics.count_out(1, reply.len());
            let _ = send.finish();
        }
        Err(e) => debug!(%peer, error = %e, "could not send a reply"),
    }
}
