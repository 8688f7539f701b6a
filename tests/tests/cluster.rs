//! The management node end to end: real `tieline node` processes, real QUIC on loopback.
//! Every test is bounded in time; the cluster kills its processes when dropped, also when a
//! test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tieline_core::block::Block;
use tieline_core::consensus::Reply;
use tieline_core::consensus::wire::{FailureKind, Response};
use tieline_core::crypto::{Digest, Ed25519Signer, Signer};
use tieline_core::market::{BidError, SignedBatch};
use tieline_core::units::NodeId;
use tieline_net::cluster::{self, ClusterSpec, LocalCluster};
use tieline_net::participant::ParticipantClient;
use tieline_net::transport::{Client, Directory, Endpoint, TransportConfig};
use tieline_tests::{TempDir, tieline_bin};

/// Every test finishes within this, or fails.
const TEST_LIMIT: Duration = Duration::from_secs(90);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(TEST_LIMIT, test)
                .await
                .expect("test exceeded its time limit");
        });
}

/// One cluster at a time: the tests are bounded in time, and four node processes per test
/// are already a load for a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A cluster for one test, with the lock that keeps the tests from running their clusters at
/// the same time (declared first, so it is released after the cluster's processes are gone).
fn cluster(name: &str) -> (std::sync::MutexGuard<'static, ()>, TempDir, LocalCluster) {
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new(name);
    let c = LocalCluster::create(
        &dir.0.join("cluster"),
        &tieline_bin(),
        &ClusterSpec::default(),
    )
    .expect("create the cluster");
    (serial, dir, c)
}

/// Polls `check` until it holds; panics after `limit` naming `what`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

async fn committed(c: &ParticipantClient) -> Option<u64> {
    c.status().await.ok().map(|s| s.height - 1)
}

/// Participants bidding: one client per sample participant, with rising nonces.
struct Bidders {
    clients: Vec<Arc<ParticipantClient>>,
    nonce: u64,
    receipted: BTreeMap<Digest, u64>,
}

impl Bidders {
    fn new(c: &LocalCluster) -> Self {
        let clients = (0..c.genesis.participants.len())
            .map(|k| Arc::new(c.participant(k, REQUEST_TIMEOUT).unwrap()))
            .collect();
        Self {
            clients,
            nonce: 0,
            receipted: BTreeMap::new(),
        }
    }

    /// The client of a participant whose home is member `i`.
    fn of(&self, c: &LocalCluster, i: usize) -> Arc<ParticipantClient> {
        self.clients[c.participants_of(i)[0]].clone()
    }

    /// One bid from every participant whose home is not in `skip`.
    async fn round(&mut self, c: &LocalCluster, skip: &[usize]) {
        self.nonce += 1;
        for i in (0..c.len()).filter(|i| !skip.contains(i)) {
            for k in c.participants_of(i) {
                let bid = c.consortium.bid(k, 1, self.nonce);
                let id = bid.body.id();
                if let Ok(replies) = self.clients[k].submit(vec![bid]).await {
                    if let Some(Reply::Receipt(r)) = replies.first() {
                        self.receipted.insert(id, r.body.height);
                    }
                }
            }
        }
    }

    /// Waits until every node has committed the height of the last receipt, then closes
    /// the clients.
    async fn finish(&self, c: &LocalCluster) {
        let last = *self.receipted.values().max().unwrap();
        for i in 0..c.len() {
            let w = self.of(c, i);
            eventually(
                Duration::from_secs(20),
                "the last receipted bids to commit",
                || async { committed(&w).await.is_some_and(|h| h >= last) },
            )
            .await;
        }
        for cl in &self.clients {
            cl.close().await;
        }
    }
}

/// Stops every node, reads and audits every chain, and checks agreement and that every
/// receipted bid is in a committed block (cleared, or with a recorded rejection).
fn stop_and_check(c: &mut LocalCluster, receipted: &BTreeMap<Digest, u64>) -> Vec<Block> {
    assert!(c.stop_all(), "every node stops gracefully on SIGTERM");
    let chains: Vec<Vec<Vec<u8>>> = (0..c.len()).map(|i| c.stored_chain(i).unwrap()).collect();
    assert_eq!(
        cluster::first_disagreement(&chains),
        None,
        "no two nodes disagree at any height"
    );
    let mut longest = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let (_, blocks) = cluster::audit_blocks(&c.genesis, chain)
            .unwrap_or_else(|e| panic!("node {}'s chain fails its audit: {e}", i + 1));
        if blocks.len() > longest.len() {
            longest = blocks;
        }
    }
    let on_chain: BTreeSet<Digest> = longest
        .iter()
        .flat_map(|b| b.body.process.batches.iter())
        .flat_map(|batch| batch.body.bids.iter().map(|sb| sb.body.id()))
        .collect();
    for (id, height) in receipted {
        assert!(
            on_chain.contains(id),
            "bid {id:?} got a receipt for height {height} but is in no committed block"
        );
    }
    longest
}

/// The node's metrics page, read over HTTP.
async fn scrape_metrics(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// A metric's value on a metrics page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| l.split_whitespace().next() == Some(name))
        .find_map(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Waits (up to 10 s) until the metric `name` on node 0's page reaches `at_least`.
async fn counted(port: u16, name: &str, at_least: f64) {
    eventually(Duration::from_secs(10), name, || async {
        scrape_metrics(port)
            .await
            .is_some_and(|m| metric(&m, name) >= Some(at_least))
    })
    .await;
}

/// Starts node 0 with its metrics endpoint on a free port (and `extra` flags), then the
/// nodes `others`; returns the metrics port.
fn start_metered(c: &mut LocalCluster, extra: &[&str], others: std::ops::Range<usize>) -> u16 {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let args: Vec<&str> = extra
        .iter()
        .copied()
        .chain(["--metrics", &metrics])
        .collect();
    c.start_with(0, &args).unwrap();
    for i in others {
        c.start(i).unwrap();
    }
    port
}

/// Waits until node 0's participant sees `height` committed.
async fn first_rounds(p0: &ParticipantClient, height: u64, within: Duration) {
    eventually(within, "the first rounds", || async {
        committed(p0).await.is_some_and(|h| h >= height)
    })
    .await;
}

/// Participant 0's bare transport client to node 0, for requests the participant library
/// would not send.
fn raw_client(c: &LocalCluster) -> Client {
    Client::new(
        c.consortium.participants[0].clone(),
        c.genesis.members[0].address.parse().unwrap(),
        c.genesis.members[0].public_key,
        TransportConfig::default(),
    )
    .unwrap()
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn rounds_commit_with_rotating_primaries() {
    let (_serial, _dir, mut c) = cluster("rounds");
    bounded(async {
        c.start_all().unwrap();
        let mut bidders = Bidders::new(&c);
        let watch = bidders.of(&c, 0);
        eventually(Duration::from_secs(20), "the first round", || async {
            committed(&watch).await.is_some_and(|h| h >= 1)
        })
        .await;
        let start = committed(&watch).await.unwrap();
        while committed(&watch).await.unwrap_or(0) < start + 5 {
            bidders.round(&c, &[]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bidders.finish(&c).await;
        let chain = stop_and_check(&mut c, &bidders.receipted);
        assert!(chain.len() >= 6);
        for b in &chain {
            assert_eq!(b.header.view, 0, "no fault skips without faults");
            assert_eq!(b.header.primary, c.genesis.primary(b.header.height, 0));
        }
        let primaries: BTreeSet<NodeId> = chain.iter().map(|b| b.header.primary).collect();
        assert_eq!(primaries.len(), 4, "every member took its turn as primary");
        let trades: usize = chain.iter().map(|b| b.body.trades.len()).sum();
        assert!(trades > 0, "crossing bids trade");
    });
}

#[test]
fn killed_primary_is_skipped_and_the_restarted_node_catches_up() {
    let (_serial, _dir, mut c) = cluster("kill");
    let view_timeout = Duration::from_millis(c.genesis.timing.view_timeout_ms);
    bounded(async {
        c.start_all().unwrap();
        let mut bidders = Bidders::new(&c);
        let kill_height = 4;
        let victim = c
            .genesis
            .members
            .iter()
            .position(|m| m.id == c.genesis.primary(kill_height, 0))
            .unwrap();
        let survivor = (victim + 1) % c.len();
        let vw = bidders.of(&c, victim);
        let sw = bidders.of(&c, survivor);
        while committed(&vw).await.unwrap_or(0) < kill_height - 1 {
            bidders.round(&c, &[]).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.kill(victim);
        let killed = Instant::now();
        // The next primary commits the round after the view timeout (plus the gate and the
        // message delays).
        bidders.round(&c, &[victim]).await;
        // Generous for a loaded machine: the chain shows below that it was a fault skip.
        eventually(
            view_timeout * 3 + Duration::from_secs(15),
            "the next primary to commit the round",
            || async { committed(&sw).await.is_some_and(|h| h >= kill_height) },
        )
        .await;
        eprintln!(
            "fault skip: height {kill_height} committed {:?} after the kill",
            killed.elapsed()
        );
        for _ in 0..3 {
            bidders.round(&c, &[victim]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.start(victim).unwrap();
        eventually(
            Duration::from_secs(30),
            "the restarted node to catch up",
            || async {
                match (committed(&vw).await, committed(&sw).await) {
                    (Some(v), Some(s)) => v >= s && v > kill_height,
                    _ => false,
                }
            },
        )
        .await;
        for _ in 0..3 {
            bidders.round(&c, &[]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bidders.finish(&c).await;
        let chain = stop_and_check(&mut c, &bidders.receipted);
        let skipped = &chain[kill_height as usize - 1];
        assert_eq!(
            skipped.header.view, 1,
            "the round was committed after a fault skip"
        );
        assert_eq!(skipped.header.primary, c.genesis.primary(kill_height, 1));
        assert_eq!(
            skipped.body.process.skipped,
            vec![c.genesis.members[victim].id]
        );
    });
}

#[test]
fn a_node_whose_key_is_not_in_the_genesis_is_refused() {
    let (_serial, dir, mut c) = cluster("stranger");
    bounded(async {
        // As a node: it does not start, and says why.
        let stranger = dir.0.join("stranger.key");
        tieline_net::keyfile::generate(&stranger).unwrap();
        let out = Command::new(tieline_bin())
            .args(["node", "--genesis"])
            .arg(c.dir.join("genesis.toml"))
            .arg("--key")
            .arg(&stranger)
            .arg("--data-dir")
            .arg(dir.0.join("stranger-data"))
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a member of the consortium"), "{err}");

        // As a peer: its connection is refused and logged with its key; the node serves on.
        c.start_all().unwrap();
        let watch = c.participant(0, REQUEST_TIMEOUT).unwrap();
        eventually(Duration::from_secs(20), "a first round", || async {
            committed(&watch).await.is_some_and(|h| h >= 1)
        })
        .await;
        let key = Ed25519Signer::from_seed([0x5a; 32]);
        let mut directory = Directory::new();
        let m1 = &c.genesis.members[0];
        directory.add_member(m1.id, m1.public_key, m1.address.clone());
        let (impostor, _inbound) = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            key.clone(),
            directory,
            TransportConfig::default(),
        )
        .unwrap();
        impostor
            .send(m1.id, Bytes::from_static(b"let me in"))
            .unwrap();
        let hex = key.public_key().to_hex();
        let log = c.log_path(0);
        eventually(
            Duration::from_secs(10),
            "the refusal in node 1's log",
            || {
                let log = log.clone();
                let hex = hex.clone();
                async move { std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&hex)) }
            },
        )
        .await;
        let before = committed(&watch).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "node 1 to keep committing",
            || async { committed(&watch).await.is_some_and(|h| h > before) },
        )
        .await;
        impostor.shutdown().await;
        watch.close().await;
    });
}

#[test]
fn a_bid_from_a_participant_not_admitted_is_refused_with_a_clear_error() {
    let (_serial, dir, mut c) = cluster("not-admitted");
    bounded(async {
        c.start_all().unwrap();
        let watch = c.participant(0, REQUEST_TIMEOUT).unwrap();
        eventually(Duration::from_secs(20), "the nodes to answer", || async {
            committed(&watch).await.is_some()
        })
        .await;
        let genesis = c.dir.join("genesis.toml");
        // A key the genesis does not admit: the CLI says so; forced at a node, the node
        // refuses the key.
        let stranger = dir.0.join("stranger.key");
        tieline_net::keyfile::generate(&stranger).unwrap();
        let bid = |key: &std::path::Path, extra: &[&str]| {
            Command::new(tieline_bin())
                .args([
                    "bid",
                    "--side",
                    "sell",
                    "--step",
                    "40@1",
                    "--timeout",
                    "3",
                    "--genesis",
                ])
                .arg(&genesis)
                .arg("--key")
                .arg(key)
                .args(extra)
                .output()
                .unwrap()
        };
        let out = bid(&stranger, &[]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not an admitted participant"), "{err}");
        let out = bid(&stranger, &["--node", "1", "--as-participant", "1000"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refused our key"), "{err}");

        // An admitted key bidding as a participant the genesis does not know: the node's
        // state machine rejects it with the reason.
        let admitted = dir.0.join("p0.key");
        tieline_net::keyfile::write(&admitted, &c.consortium.participants[0]).unwrap();
        let out = bid(&admitted, &["--as-participant", "4242"]);
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("rejected") && text.contains("participant 4242 is not admitted"),
            "{text}"
        );
        // The same key bidding as itself gets a receipt.
        let out = bid(&admitted, &["--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["status"], "receipted");
        watch.close().await;
    });
}

#[test]
fn malformed_oversized_and_replayed_messages_are_rejected_and_the_node_keeps_serving() {
    let (_serial, _dir, mut c) = cluster("malformed");
    bounded(async {
        let n = c.len();
        let metrics_port = start_metered(&mut c, &["--max-frame-mib", "1"], 1..n);
        let p0 = c.participant(0, REQUEST_TIMEOUT).unwrap();
        first_rounds(&p0, 1, Duration::from_secs(20)).await;

        // A participant's malformed request is refused with the reason.
        let raw = raw_client(&c);
        let answer = raw
            .request(b"\x05\x02\x01\xff not a request")
            .await
            .unwrap();
        match <Response as tieline_core::encoding::Tagged>::from_canonical_bytes(&answer) {
            Ok(Response::Failed(f)) => assert_eq!(f.kind, FailureKind::Malformed),
            other => panic!("expected a refusal, got {other:?}"),
        }

        // A member's malformed and oversized messages are dropped (the link is cut for the
        // oversized one and comes back).
        let m2 = &c.consortium.members[1];
        let (peer, _inbound) = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            m2.clone(),
            Directory::from_genesis(&c.genesis),
            TransportConfig::default(),
        )
        .unwrap();
        let to = c.genesis.members[0].id;
        peer.send(to, Bytes::from_static(b"\x05\x01\x01\x63garbage"))
            .unwrap();
        peer.send(to, Bytes::from_static(b"short")).unwrap();
        peer.send(to, Bytes::from(vec![0u8; 2 << 20])).unwrap();

        // A replayed bid is refused as a replay.
        let bid = c.consortium.bid(0, 1, 77);
        let first = p0.submit(vec![bid.clone()]).await.unwrap();
        assert!(matches!(first[0], Reply::Receipt(_)));
        let again = p0.submit(vec![bid]).await.unwrap();
        assert!(
            matches!(
                &again[0],
                Reply::BidRejected {
                    reason: BidError::ReplayedNonce { nonce: 77, .. },
                    ..
                }
            ),
            "{again:?}"
        );

        counted(metrics_port, "tieline_malformed_frames_total", 3.0).await;
        let m = scrape_metrics(metrics_port).await.unwrap();
        for name in [
            "tieline_height",
            "tieline_view",
            "tieline_bids_received_total",
            "tieline_commit_latency_seconds_bucket",
            "tieline_connected_peers",
            "tieline_revisions_total",
        ] {
            assert!(m.contains(name), "metric {name} missing:\n{m}");
        }

        // The node keeps serving: rounds go on committing and bids get receipts.
        let before = committed(&p0).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "node 1 to keep committing",
            || async { committed(&p0).await.is_some_and(|h| h >= before + 2) },
        )
        .await;
        let later = p0.submit(vec![c.consortium.bid(0, 1, 78)]).await.unwrap();
        assert!(matches!(later[0], Reply::Receipt(_)));
        peer.shutdown().await;
        raw.close().await;
        p0.close().await;
        let log = std::fs::read_to_string(c.log_path(0)).unwrap();
        assert!(
            log.contains("oversized frame"),
            "the oversized frame is logged"
        );
    });
}

/// Compact frames (spec 1.3): a member's message names batches by digest, and a node that
/// lacks one fetches it from the sender before the state machine sees the message; a revision
/// frame whose base revision the node lacks makes it fetch the whole frame. Member 3 here is
/// this test's own endpoint at member 3's address: it sends node 0 a frame naming a batch
/// node 0 has never seen, then a revision frame against a proposal node 0 never received, and
/// answers node 0's fetches; it fetches a committed batch from node 0 in turn. A participant
/// may not fetch batches.
#[test]
fn frames_naming_what_the_node_lacks_are_resolved_by_fetching_it_from_the_sender() {
    use tieline_core::block::SkipCertificate;
    use tieline_core::consensus::Message;
    use tieline_core::consensus::compact::{self, BatchRef};
    use tieline_core::consensus::wire::Request;
    use tieline_core::encoding::Tagged;
    use tieline_net::transport::{Inbound, Peer};

    let (_serial, _dir, mut c) = cluster("fetch");
    bounded(async {
        let metrics_port = start_metered(&mut c, &[], 1..3);
        let node0 = c.genesis.members[0].id;
        let (peer, mut inbound) = Endpoint::bind(
            c.genesis.members[3].address.parse().unwrap(),
            c.consortium.members[3].clone(),
            Directory::from_genesis(&c.genesis),
            TransportConfig::default(),
        )
        .unwrap();
        let p0 = c.participant(0, REQUEST_TIMEOUT).unwrap();
        first_rounds(&p0, 1, Duration::from_secs(40)).await;

        // A batch of member 3 that node 0 has never seen, named in a view certificate.
        let height = p0.status().await.unwrap().height;
        let batch = c
            .consortium
            .batch(3, height, vec![c.consortium.bid(3, height, 901)]);
        let wanted = BatchRef::to(&batch);
        // Member 3 serves what it names: batches by digest, whole proposal frames by round.
        type Served = (Vec<SignedBatch>, Vec<((u64, u32, u32), Vec<u8>)>);
        let served: Arc<std::sync::Mutex<Served>> =
            Arc::new(std::sync::Mutex::new((vec![batch.clone()], Vec::new())));
        let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn({
            let served = served.clone();
            async move {
                while let Some(item) = inbound.recv().await {
                    if let Inbound::Request { from, frame, reply } = item {
                        assert_eq!(from, Peer::Member(node0));
                        let request = Request::from_canonical_bytes(&frame).unwrap();
                        let answer = {
                            let (batches, frames) = &*served.lock().unwrap();
                            match &request {
                                Request::FetchBatch(r) => Response::Batch(
                                    batches
                                        .iter()
                                        .find(|b| BatchRef::to(b) == *r)
                                        .map(|b| Box::new(b.clone())),
                                ),
                                Request::FetchProposal {
                                    height,
                                    view,
                                    revision,
                                } => Response::Frame(
                                    frames
                                        .iter()
                                        .find(|(k, _)| *k == (*height, *view, *revision))
                                        .map(|(_, f)| {
                                            Box::new(
                                                compact::Frame::from_canonical_bytes(f).unwrap(),
                                            )
                                        }),
                                ),
                                other => panic!("node 0 asked member 3 something else: {other:?}"),
                            }
                        };
                        reply.send(Bytes::from(answer.to_canonical_bytes()));
                        let _ = asked_tx.send(request);
                    }
                }
            }
        });
        let msg = Message::ViewCertificate(
            Box::new(SkipCertificate {
                height,
                view: 0,
                votes: Vec::new(),
            }),
            vec![batch.clone()],
        );
        let frame = compact::encode(&msg);
        assert!(frame.len() < msg.to_canonical_bytes().len());
        peer.send(node0, Bytes::from(frame)).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(20), asked.recv())
            .await
            .expect("node 0 fetches the batch it lacks")
            .unwrap();
        assert_eq!(first, Request::FetchBatch(wanted));
        counted(metrics_port, "tieline_batches_fetched_total", 1.0).await;
        let page = scrape_metrics(metrics_port).await.unwrap();
        assert_eq!(metric(&page, "tieline_unresolved_frames_total"), Some(0.0));

        // A revision frame whose base node 0 never saw: node 0 fetches the whole frame.
        let process = p0.process(1).await.unwrap();
        let proposal = |revision: u32, cuts: usize| {
            let mut body = tieline_core::block::BlockBody {
                trades: Vec::new(),
                process: process.process.clone(),
            };
            let cut = tieline_core::clearing::Cut {
                product: tieline_core::sample::sample_product(height),
                label: 9,
                terms: Vec::new(),
                limit: tieline_core::units::Quantity(0),
            };
            body.process
                .clearing
                .cuts
                .extend(std::iter::repeat_n(cut, cuts));
            let mut header = process.header.clone();
            header.height = height;
            header.revision = revision;
            tieline_core::consensus::Proposal {
                stamp: tieline_core::crypto::Signed {
                    body: tieline_core::block::Vote {
                        kind: tieline_core::block::VoteKind::Propose,
                        chain_id: header.chain_id,
                        height,
                        view: 0,
                        revision,
                        block: header.digest(),
                        voter: c.genesis.members[3].id,
                    },
                    signature: tieline_core::crypto::Signature([0; 64]),
                },
                header,
                body: Arc::new(body),
                justification: None,
            }
        };
        let (base, next) = (proposal(0, 0), proposal(1, 1));
        let next = Message::Proposal(Box::new(next));
        served
            .lock()
            .unwrap()
            .1
            .push(((height, 0, 1), compact::encode(&next)));
        served
            .lock()
            .unwrap()
            .0
            .extend(process.process.batches.iter().cloned());
        let edits = compact::encode_revision(&next, &base).unwrap();
        peer.send(node0, Bytes::from(edits)).unwrap();
        loop {
            let r = tokio::time::timeout(Duration::from_secs(20), asked.recv())
                .await
                .expect("node 0 fetches the whole proposal")
                .unwrap();
            if let Request::FetchProposal { .. } = r {
                assert_eq!(
                    r,
                    Request::FetchProposal {
                        height,
                        view: 0,
                        revision: 1
                    }
                );
                break;
            }
        }
        counted(metrics_port, "tieline_proposals_fetched_total", 1.0).await;
        let page = scrape_metrics(metrics_port).await.unwrap();
        assert_eq!(metric(&page, "tieline_unresolved_frames_total"), Some(0.0));

        // Member 3 fetches a committed batch from node 0, and an unknown one is not found.
        let committed_batch = p0.process(1).await.unwrap().process.batches[0].clone();
        let fetch = |r: BatchRef| {
            let peer = peer.clone();
            async move {
                let bytes = peer
                    .request(node0, &Request::FetchBatch(r).to_canonical_bytes())
                    .await
                    .unwrap();
                Response::from_canonical_bytes(&bytes).unwrap()
            }
        };
        match fetch(BatchRef::to(&committed_batch)).await {
            Response::Batch(Some(b)) => assert_eq!(*b, committed_batch),
            other => panic!("expected the committed batch, got {other:?}"),
        }
        let unknown = BatchRef {
            digest: Digest([9; 32]),
            ..BatchRef::to(&committed_batch)
        };
        assert_eq!(fetch(unknown).await, Response::Batch(None));

        // A participant is refused.
        let raw = raw_client(&c);
        let answer = raw
            .request(&Request::FetchBatch(wanted).to_canonical_bytes())
            .await
            .unwrap();
        match Response::from_canonical_bytes(&answer) {
            Ok(Response::Failed(f)) => assert_eq!(f.kind, FailureKind::Forbidden),
            other => panic!("expected a refusal, got {other:?}"),
        }
        server.abort();
        raw.close().await;
        p0.close().await;
        peer.shutdown().await;
    });
}
