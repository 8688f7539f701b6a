//! The QUIC transport over real loopback sockets: authentication, framing limits, links,
//! requests and reconnection. Every test is bounded in time.

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use tieline_core::crypto::{Ed25519Signer, PublicKey, Signer};
use tieline_core::genesis::Genesis;
use tieline_core::sample::SampleConsortium;
use tieline_core::units::NodeId;
use tieline_net::transport::{
    ALPN, Client, Directory, Endpoint, Inbound, Metrics, MetricsSnapshot, Peer, RequestError,
    SendError, TransportConfig, codes, tls,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

/// Every test finishes within this, or fails.
const TEST_LIMIT: Duration = Duration::from_secs(30);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn bounded<F: Future<Output = ()>>(test: F) {
    init_logs();
    timeout(TEST_LIMIT, test)
        .await
        .expect("test exceeded its time limit");
}

fn test_config() -> TransportConfig {
    TransportConfig {
        handshake_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(5),
        keep_alive: Duration::from_secs(1),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..TransportConfig::default()
    }
}

fn loopback_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind loopback")
}

/// A sample consortium whose members listen on fresh loopback sockets.
struct Net {
    consortium: SampleConsortium,
    sockets: Vec<Option<UdpSocket>>,
}

impl Net {
    fn new(members: usize) -> Self {
        let mut consortium = SampleConsortium::new(members, 2);
        let sockets: Vec<_> = (0..members).map(|_| loopback_socket()).collect();
        for (m, s) in consortium.genesis.members.iter_mut().zip(&sockets) {
            m.address = s.local_addr().unwrap().to_string();
        }
        Self {
            consortium,
            sockets: sockets.into_iter().map(Some).collect(),
        }
    }

    fn genesis(&self) -> &Genesis {
        &self.consortium.genesis
    }

    fn addr(&self, member: usize) -> SocketAddr {
        self.genesis().members[member].address.parse().unwrap()
    }

    fn member_key(&self, member: usize) -> PublicKey {
        self.consortium.members[member].public_key()
    }

    /// Starts member `index` (0-based) on its socket, serving with the echo application.
    fn start(&mut self, index: usize, config: TransportConfig) -> (Endpoint, EchoApp) {
        let socket = self.sockets[index].take().expect("socket not used yet");
        self.start_on(index, socket, config)
    }

    fn start_on(
        &self,
        index: usize,
        socket: UdpSocket,
        config: TransportConfig,
    ) -> (Endpoint, EchoApp) {
        let home = self.genesis().members[index].id;
        let (endpoint, inbound) = Endpoint::from_socket(
            socket,
            self.consortium.members[index].clone(),
            Directory::for_home(self.genesis(), home),
            config,
        )
        .expect("endpoint starts");
        (endpoint, EchoApp::spawn(inbound))
    }

    /// A client for participant `index` (genesis order) to member `member`.
    fn participant_client(&self, index: usize, member: usize) -> Client {
        Client::new(
            self.consortium.participants[index].clone(),
            self.addr(member),
            self.member_key(member),
            test_config(),
        )
        .expect("client starts")
    }
}

/// A stand-in for the node: answers each request with `echo:` and the request (refuses
/// requests saying `no-reply`), and hands over one-way messages.
struct EchoApp {
    messages: mpsc::UnboundedReceiver<(Peer, Bytes)>,
}

impl EchoApp {
    fn spawn(mut inbound: mpsc::Receiver<Inbound>) -> Self {
        let (tx, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(item) = inbound.recv().await {
                match item {
                    Inbound::Message { from, frame } => {
                        let _ = tx.send((from, frame));
                    }
                    Inbound::Request { frame, reply, .. } => {
                        if frame.as_ref() != b"no-reply" {
                            reply.send(Bytes::from([b"echo:".as_slice(), &frame].concat()));
                        }
                    }
                }
            }
        });
        Self { messages }
    }

    async fn next(&mut self) -> (Peer, Bytes) {
        self.messages.recv().await.expect("application running")
    }
}

/// Waits until `check` holds for the endpoint's counters, or fails after a few seconds.
async fn eventually(
    what: &str,
    mut metrics: impl FnMut() -> MetricsSnapshot,
    check: impl Fn(&MetricsSnapshot) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics();
        if check(&m) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: counters stayed at {m:?}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// A bare QUIC connection with our TLS setup but any ALPN, to speak out of turn.
async fn raw_connect(
    signer: &Ed25519Signer,
    server: SocketAddr,
    server_key: PublicKey,
    alpn: &[u8],
) -> (
    quinn::Endpoint,
    Result<quinn::Connection, quinn::ConnectionError>,
) {
    let mut rustls = tls::client_config(
        &Arc::new(signer.clone()),
        server_key,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    rustls.alpn_protocols = vec![alpn.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(rustls).unwrap()));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = endpoint
        .connect_with(config, server, tls::SERVER_NAME)
        .unwrap();
    let connection = connecting.await;
    (endpoint, connection)
}

#[tokio::test]
async fn members_exchange_frames_both_ways_in_order() {
    bounded(async {
        let mut net = Net::new(2);
        let (a, mut a_app) = net.start(0, test_config());
        let (b, mut b_app) = net.start(1, test_config());
        assert_eq!(a.me(), Some(NodeId(1)));
        for i in 0..500u32 {
            a.send(NodeId(2), Bytes::from(i.to_be_bytes().to_vec()))
                .unwrap();
        }
        for i in 0..500u32 {
            let (from, frame) = b_app.next().await;
            assert_eq!(from, Peer::Member(NodeId(1)));
            assert_eq!(frame.as_ref(), i.to_be_bytes());
        }
        b.send(NodeId(1), Bytes::from_static(b"back")).unwrap();
        assert_eq!(
            a_app.next().await,
            (Peer::Member(NodeId(2)), Bytes::from_static(b"back"))
        );
        let reply = a.request(NodeId(2), b"ping").await.unwrap();
        assert_eq!(reply.as_ref(), b"echo:ping");
        assert_eq!(
            a.send(NodeId(1), Bytes::from_static(b"self")),
            Err(SendError::UnknownMember(NodeId(1)))
        );
        assert_eq!(
            a.send(NodeId(9), Bytes::from_static(b"nobody")),
            Err(SendError::UnknownMember(NodeId(9)))
        );
        let m = a.metrics();
        assert_eq!(m.frames_out, 501);
        assert_eq!(m.connected_peers, 2, "its link out and b's link in");
        assert_eq!(m.refused_handshakes, 0);
    })
    .await;
}

#[tokio::test]
async fn participant_request_response() {
    bounded(async {
        let mut net = Net::new(2);
        let (a, _a_app) = net.start(0, test_config());
        // Participants 0 and 1 have member 1 as home.
        let client = Arc::new(net.participant_client(0, 0));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let request = format!("bid {i}");
                let reply = client.request(request.as_bytes()).await.unwrap();
                assert_eq!(reply.as_ref(), format!("echo:bid {i}").as_bytes());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        match client.request(b"no-reply").await {
            Err(RequestError::Refused(code)) => assert_eq!(code, u64::from(codes::NO_REPLY)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(client.metrics().frames_in, 64);
        assert_eq!(a.metrics().frames_in, 65);
        assert_eq!(a.metrics().connected_peers, 1);
    })
    .await;
}

#[tokio::test]
async fn unknown_key_refused_and_server_keeps_serving() {
    bounded(async {
        let mut net = Net::new(2);
        let (a, _a_app) = net.start(0, test_config());
        let stranger = Ed25519Signer::from_seed([0xee; 32]);
        let client = Client::new(stranger, net.addr(0), net.member_key(0), test_config()).unwrap();
        assert!(client.request(b"let me in").await.is_err());
        eventually(
            "refusal counted",
            || a.metrics(),
            |m| m.refused_handshakes == 1,
        )
        .await;
        // A participant of another home node is not admitted here either.
        let foreign = net.participant_client(2, 0);
        assert!(foreign.request(b"wrong home").await.is_err());
        eventually(
            "second refusal",
            || a.metrics(),
            |m| m.refused_handshakes == 2,
        )
        .await;
        // A stranger on a member link is refused the same way.
        let mut directory = Directory::from_genesis(net.genesis());
        directory.add_member(NodeId(1), net.member_key(0), net.addr(0).to_string());
        let (impostor, _) = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            Ed25519Signer::from_seed([0xef; 32]),
            directory,
            test_config(),
        )
        .unwrap();
        impostor
            .send(NodeId(1), Bytes::from_static(b"forged"))
            .unwrap();
        eventually(
            "link refusal",
            || a.metrics(),
            |m| m.refused_handshakes >= 3,
        )
        .await;
        // Good clients are still served.
        let good = net.participant_client(1, 0);
        assert_eq!(
            good.request(b"hello").await.unwrap().as_ref(),
            b"echo:hello"
        );
        assert_eq!(a.metrics().frames_in, 1);
    })
    .await;
}

#[tokio::test]
async fn dialer_refuses_a_server_with_the_wrong_key() {
    bounded(async {
        let mut net = Net::new(3);
        let (_a, _a_app) = net.start(0, test_config());
        // The participant expects member 2's key at member 1's address.
        let client = Client::new(
            net.consortium.participants[0].clone(),
            net.addr(0),
            net.member_key(1),
            test_config(),
        )
        .unwrap();
        match client.request(b"hello").await {
            Err(RequestError::Connect { .. }) => {}
            other => panic!("expected a failed connection, got {other:?}"),
        }
        assert_eq!(client.metrics().refused_handshakes, 1);

        // A member whose directory lists member 2 at member 1's address refuses it too.
        let mut genesis = net.genesis().clone();
        genesis.members[1].address = net.addr(0).to_string();
        let (c, _) = Endpoint::from_socket(
            net.sockets[2].take().unwrap(),
            net.consortium.members[2].clone(),
            Directory::from_genesis(&genesis),
            test_config(),
        )
        .unwrap();
        c.send(NodeId(2), Bytes::from_static(b"to member 2"))
            .unwrap();
        eventually(
            "pinned key mismatch",
            || c.metrics(),
            |m| m.refused_handshakes >= 1,
        )
        .await;
        assert_eq!(c.metrics().frames_out, 0);
    })
    .await;
}

#[tokio::test]
async fn alpn_mismatch_refused() {
    bounded(async {
        let mut net = Net::new(2);
        let (a, _a_app) = net.start(0, test_config());
        let signer = net.consortium.participants[0].clone();
        let (_ep, wrong) = raw_connect(&signer, net.addr(0), net.member_key(0), b"tieline/0").await;
        assert!(
            wrong.is_err(),
            "a client speaking tieline/0 must be refused"
        );
        eventually(
            "refusal counted",
            || a.metrics(),
            |m| m.refused_handshakes == 1,
        )
        .await;
        let (_ep, right) = raw_connect(&signer, net.addr(0), net.member_key(0), ALPN).await;
        assert!(right.is_ok());
    })
    .await;
}

#[tokio::test]
async fn oversized_and_malformed_frames_refused_and_endpoint_keeps_serving() {
    bounded(async {
        const MAX: usize = 1024;
        let config = TransportConfig {
            max_frame_len: MAX,
            ..test_config()
        };
        let mut net = Net::new(2);
        let (a, _a_app) = net.start(0, config.clone());
        let signer = net.consortium.participants[0].clone();
        let connect = || raw_connect(&signer, net.addr(0), net.member_key(0), ALPN);

        // An oversized frame on a message stream closes that connection, with a reason.
        let (_ep, conn) = connect().await;
        let conn = conn.unwrap();
        let mut uni = conn.open_uni().await.unwrap();
        uni.write_all(&(MAX as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        uni.write_all(&[0; 64]).await.unwrap();
        match conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, codes::FRAME_TOO_LARGE.into());
                assert_eq!(close.reason.as_ref(), b"frame too large");
            }
            other => panic!("expected an application close, got {other:?}"),
        }
        assert_eq!(a.metrics().oversized_frames, 1);

        // On a request stream only that request is refused; the connection goes on.
        let (_ep, conn) = connect().await;
        let conn = conn.unwrap();
        let refused = |frame: Vec<u8>| {
            let conn = conn.clone();
            async move {
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                // The server may stop the stream before all of it is written.
                let _ = send.write_all(&frame).await;
                let _ = send.finish();
                match recv.read_to_end(MAX + 4).await {
                    Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                        code.into_inner()
                    }
                    other => panic!("expected a reset, got {other:?}"),
                }
            }
        };
        let mut oversized = (MAX as u32 + 1).to_be_bytes().to_vec();
        oversized.extend_from_slice(&[1; 16]);
        assert_eq!(refused(oversized).await, u64::from(codes::FRAME_TOO_LARGE));
        let mut truncated = 100u32.to_be_bytes().to_vec();
        truncated.extend_from_slice(&[2; 10]);
        assert_eq!(refused(truncated).await, u64::from(codes::MALFORMED));
        let mut trailing = 2u32.to_be_bytes().to_vec();
        trailing.extend_from_slice(b"hi and more");
        assert_eq!(refused(trailing).await, u64::from(codes::MALFORMED));
        assert_eq!(refused(vec![0, 0]).await, u64::from(codes::MALFORMED));
        let m = a.metrics();
        assert_eq!((m.oversized_frames, m.malformed_frames), (2, 3));

        // The same connection still serves a well-formed request.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 2, b'o', b'k']).await.unwrap();
        send.finish().unwrap();
        let reply = recv.read_to_end(64).await.unwrap();
        assert_eq!(reply, [&[0, 0, 0, 7][..], b"echo:ok"].concat());

        // And so does the endpoint, for a fresh client; limits are enforced locally too.
        let client = Client::new(
            signer.clone(),
            net.addr(0),
            net.member_key(0),
            config.clone(),
        )
        .unwrap();
        assert_eq!(
            client.request(b"still").await.unwrap().as_ref(),
            b"echo:still"
        );
        assert!(matches!(
            client.request(&[0; MAX + 1]).await,
            Err(RequestError::TooLarge {
                len: 1025,
                max: MAX
            })
        ));
        assert_eq!(
            a.send(NodeId(2), Bytes::from(vec![0; MAX + 1])),
            Err(SendError::TooLarge {
                len: MAX + 1,
                max: MAX
            })
        );
    })
    .await;
}

#[tokio::test]
async fn link_reconnects_after_the_peer_restarts() {
    bounded(async {
        let mut net = Net::new(2);
        let (a, _a_app) = net.start(0, test_config());
        let (b, mut b_app) = net.start(1, test_config());
        a.send(NodeId(2), Bytes::from_static(b"before")).unwrap();
        assert_eq!(b_app.next().await.1.as_ref(), b"before");

        b.shutdown().await;
        drop(b);
        drop(b_app);
        // Rebind the same port once the old endpoint has let it go.
        let socket = loop {
            match UdpSocket::bind(net.addr(1)) {
                Ok(s) => break s,
                Err(_) => sleep(Duration::from_millis(20)).await,
            }
        };
        let (_b, mut b_app) = net.start_on(1, socket, test_config());
        // Frames sent while the link was down may be lost; keep sending until one arrives.
        let mut i = 0u32;
        let got = loop {
            let _ = a.send(NodeId(2), Bytes::from(i.to_be_bytes().to_vec()));
            i += 1;
            tokio::select! {
                m = b_app.next() => break m,
                _ = sleep(Duration::from_millis(20)) => {}
            }
        };
        assert_eq!(got.0, Peer::Member(NodeId(1)));
        assert!(a.metrics().reconnects >= 1);
    })
    .await;
}

#[tokio::test]
async fn a_full_link_queue_drops_and_counts() {
    bounded(async {
        let config = TransportConfig {
            send_queue_len: 4,
            ..test_config()
        };
        // Member 2 never starts: the link keeps retrying and its queue fills up.
        let mut net = Net::new(2);
        let (a, _a_app) = net.start(0, config);
        let results: Vec<_> = (0..10)
            .map(|i| a.send(NodeId(2), Bytes::from(vec![i])))
            .collect();
        assert!(results[..4].iter().all(Result::is_ok));
        assert!(
            results[4..]
                .iter()
                .all(|r| *r == Err(SendError::QueueFull(NodeId(2))))
        );
        assert_eq!(a.metrics().dropped_frames, 6);
    })
    .await;
}

/// The registry changes on chain (spec A1-A4): after `set_directory`, a newly admitted
/// participant's key is accepted, a replaced participant key is refused and its open connection
/// closed, and a link to a member whose key was replaced keeps its connection until the member
/// answers under the new key, then pins that one.
#[tokio::test]
async fn the_directory_follows_the_registry() {
    bounded(async {
        let mut net = Net::new(2);
        let (a, _a_app) = net.start(0, test_config());
        let (b, mut b_app) = net.start(1, test_config());
        let old = net.participant_client(0, 0);
        assert_eq!(
            old.request(b"before").await.unwrap().as_ref(),
            b"echo:before"
        );
        let newcomer = Ed25519Signer::from_seed([0x51; 32]);
        let fresh = Client::new(
            newcomer.clone(),
            net.addr(0),
            net.member_key(0),
            test_config(),
        )
        .unwrap();
        assert!(fresh.request(b"not yet").await.is_err());

        // Participant 0's key is replaced by the newcomer's key.
        let id = net.genesis().participants[0].id;
        let mut g = net.genesis().clone();
        g.participants[0].public_key = newcomer.public_key();
        a.set_directory(Directory::for_home(&g, NodeId(1)));
        let fresh = Client::new(newcomer, net.addr(0), net.member_key(0), test_config()).unwrap();
        assert_eq!(fresh.request(b"new").await.unwrap().as_ref(), b"echo:new");
        // The old key's open connection is closed, and it cannot connect again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while old.request(b"old").await.is_ok() {
            assert!(Instant::now() < deadline, "the old key is still served");
            sleep(Duration::from_millis(20)).await;
        }
        assert!(
            a.directory()
                .peer(&net.consortium.participants[0].public_key())
                .is_none()
        );
        assert_eq!(
            a.directory().peer(&g.participants[0].public_key),
            Some(Peer::Participant(id))
        );

        // Member 2's key is replaced: a's link to b keeps working while b runs under the old
        // key, and switches once b answers under the new one.
        a.send(NodeId(2), Bytes::from_static(b"one")).unwrap();
        assert_eq!(b_app.next().await.1.as_ref(), b"one");
        let new_b = Ed25519Signer::from_seed([0x52; 32]);
        g.members[1].public_key = new_b.public_key();
        a.set_directory(Directory::for_home(&g, NodeId(1)));
        a.send(NodeId(2), Bytes::from_static(b"two")).unwrap();
        assert_eq!(b_app.next().await.1.as_ref(), b"two");
        // b restarts under its new key on the same port.
        let addr = net.addr(1);
        b.shutdown().await;
        drop(b);
        drop(b_app);
        // Rebind the same port once the old endpoint has let it go.
        let socket = loop {
            match UdpSocket::bind(addr) {
                Ok(s) => break s,
                Err(_) => sleep(Duration::from_millis(20)).await,
            }
        };
        let (_b2, mut b2_inbound) = Endpoint::from_socket(
            socket,
            new_b,
            Directory::for_home(&g, NodeId(2)),
            test_config(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            a.send(NodeId(2), Bytes::from_static(b"three")).ok();
            if let Ok(Some(Inbound::Message { from, frame })) =
                timeout(Duration::from_millis(200), b2_inbound.recv()).await
            {
                assert_eq!(from, Peer::Member(NodeId(1)));
                assert_eq!(frame.as_ref(), b"three");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the link never reached the member under its new key"
            );
        }
    })
    .await;
}
