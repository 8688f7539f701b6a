//! The cluster benchmark: a 4-node consortium on loopback (each node its own `tieline node`
//! process, release build) fed by a load generator. For each round size it prints the bid
//! intake (bids per second that got a receipt) and the commit latency per round (from gate
//! closure to commit, median and p99), and, measured in the same run, the single-core ed25519
//! verification rate the intake is compared with.
//!
//!     cargo bench -p tieline-net --bench cluster
//!
//! `SIZES` (comma-separated bids per round, default `1000,10000,100000`), `ROUNDS`
//! (comma-separated rounds per size, default `10,5,3`) and `CHUNK` (bids per request, default
//! 64) change the run; `BENCH_LOG` sets the nodes' log filter (default `warn`) and
//! `BENCH_KEEP` keeps the cluster's files (logs, databases) in the temporary directory.
//! `STEPS` (default 1) gives each bid that many price-quantity steps, so that, for example,
//! `SIZES=31250 STEPS=32` is a round of 1,000,000 bid steps; `DEFAULT_TIMINGS=1` runs the
//! node's default batch wait and view timeout (500 ms, 2 s) instead of ones that grow with
//! the round.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tieline_core::consensus::Reply;
use tieline_core::consensus::wire::{Request, Response};
use tieline_core::crypto::{Ed25519, SignatureScheme, Signer};
use tieline_core::encoding::Tagged;
use tieline_core::genesis::Timing;
use tieline_core::market::SignedBid;
use tieline_net::cluster::{ClusterMarket, ClusterSpec, LocalCluster};
use tieline_net::participant::ParticipantClient;
use tieline_net::transport::{Client, TransportConfig};

/// Participants per member in the load generator.
const PARTICIPANTS_PER_MEMBER: usize = 64;

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// The release `tieline` binary, built if needed.
fn release_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let status = tieline_net::cluster::nested_cargo(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "tieline-net",
            "--bin",
            "tieline",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cannot build the tieline binary");
    let release = dir
        .parent()
        .map(|t| t.join("release").join("tieline"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| dir.join("tieline"));
    assert!(release.exists(), "no binary at {}", release.display());
    release
}

/// Strict ed25519 verifications per second on one core, over signed sample bids.
fn verify_rate(bids: &[SignedBid], keys: &[tieline_core::crypto::PublicKey]) -> f64 {
    let scheme = Ed25519::with_known_keys(keys.iter());
    let messages: Vec<Vec<u8>> = bids.iter().map(|b| b.body.to_canonical_bytes()).collect();
    let start = Instant::now();
    let mut ok = 0usize;
    for _ in 0..3 {
        for (b, m) in bids.iter().zip(&messages) {
            let key = keys[b.body.participant.0 as usize - 1000];
            if scheme.verify(&key, m, &b.signature).is_ok() {
                ok += 1;
            }
        }
    }
    assert_eq!(ok, 3 * bids.len());
    ok as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct SizeResult {
    size: u64,
    intake: f64,
    latencies: Vec<f64>,
    spilled: usize,
    rejected: usize,
}

async fn committed(c: &ParticipantClient) -> u64 {
    c.status().await.map_or(0, |s| s.height - 1)
}

/// Bid `k`'s round bid with `steps` steps: the sample bid's side and price level, each further
/// step a cent worse and the same quantity.
fn bid_with_steps(
    consortium: &tieline_core::sample::SampleConsortium,
    k: usize,
    nonce: u64,
    steps: usize,
) -> SignedBid {
    let one = consortium.bid(k, 1, nonce);
    if steps <= 1 {
        return one;
    }
    let first = one.body.steps[0];
    let side = one.body.side;
    let steps = (0..steps as i64)
        .map(|i| tieline_core::market::BidStep {
            price: tieline_core::units::Price(match side {
                tieline_core::market::Side::Sell => first.price.0 + i * 100,
                tieline_core::market::Side::Buy => first.price.0 - i * 100,
            }),
            quantity: first.quantity,
        })
        .collect();
    consortium.bid_with(k, side, steps, 1, nonce)
}

async fn run_size(
    bin: &Path,
    size: u64,
    rounds: u64,
    chunk: usize,
    gate_ms: u64,
    steps: usize,
) -> SizeResult {
    let dir = std::env::temp_dir().join(format!("tieline-bench-{}-{size}", std::process::id()));
    let spec = ClusterSpec {
        market: ClusterMarket::Sample,
        members: 4,
        participants_per_member: PARTICIPANTS_PER_MEMBER,
        timing: if std::env::var_os("DEFAULT_TIMINGS").is_some() {
            Timing {
                gate_ms,
                batch_wait_ms: Timing::DEFAULT_BATCH_WAIT_MS,
                view_timeout_ms: Timing::DEFAULT_VIEW_TIMEOUT_MS,
                schedule: None,
            }
        } else {
            Timing {
                gate_ms,
                // The primary waits for every home's batch before it clears: a batch of 25,000
                // bids takes seconds to arrive and be verified, and a proposal without it does
                // not commit in view 0 (see the closing note of issue 7).
                batch_wait_ms: 2_000 + size / 5,
                view_timeout_ms: 20_000 + size / 2,
                schedule: None,
            }
        },
        log_level: std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
    };
    let mut cluster = LocalCluster::create(&dir, bin, &spec).expect("create cluster");
    if std::env::var_os("BENCH_KEEP").is_some() {
        cluster.keep();
        eprintln!("keeping {}", dir.display());
    }
    let g = cluster.genesis.clone();
    let participants = g.participants.len();
    // Pre-sign every round's bids, so the generator's signing is not measured.
    let per_round: Vec<Vec<Vec<SignedBid>>> = {
        let consortium = &cluster.consortium;
        (0..rounds + 1)
            .map(|r| {
                let mut by_participant: Vec<Vec<SignedBid>> = vec![Vec::new(); participants];
                for i in 0..size as usize {
                    let k = i % participants;
                    let nonce = r * 1_000_000 + (i / participants) as u64 + 1;
                    by_participant[k].push(bid_with_steps(consortium, k, nonce, steps));
                }
                by_participant
            })
            .collect()
    };
    cluster.start_all().expect("start nodes");
    let watch = cluster
        .participant(0, Duration::from_secs(30))
        .expect("status client");
    let deadline = Instant::now() + Duration::from_secs(60);
    while watch.status().await.is_err() {
        assert!(Instant::now() < deadline, "the cluster does not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = TransportConfig {
        request_timeout: Duration::from_secs(60),
        ..TransportConfig::default()
    };
    let clients: Vec<Arc<Client>> = g
        .participants
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let home = g.member(p.home).expect("home");
            Arc::new(
                Client::new(
                    cluster.consortium.participants[k].clone(),
                    home.address.parse().expect("address"),
                    home.public_key,
                    config.clone(),
                )
                .expect("client"),
            )
        })
        .collect();
    let mut result = SizeResult {
        size,
        intake: 0.0,
        latencies: Vec::new(),
        spilled: 0,
        rejected: 0,
    };
    let (mut receipted, mut intake_time) = (0usize, 0.0f64);
    // A round starts when the previous height commits (its gate opens then); its bids must
    // arrive before its gate closes. The first round waits for a commit; each later one
    // starts at the commit of the round before.
    let base = committed(&watch).await;
    let mut opened = loop {
        if committed(&watch).await > base {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    for (r, bids) in per_round.into_iter().enumerate() {
        let height = committed(&watch).await + 1;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (k, list) in bids.into_iter().enumerate() {
            let c = clients[k].clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for part in list.chunks(chunk) {
                    let req = Request::SubmitBids(part.to_vec()).to_canonical_bytes();
                    let answer = c.request(&req).await.expect("submit");
                    match Response::from_canonical_bytes(&answer).expect("decode") {
                        Response::Replies(rs) => out.extend(rs),
                        other => panic!("unexpected answer {other:?}"),
                    }
                }
                out
            }));
        }
        let mut replies = Vec::new();
        for t in tasks {
            replies.extend(t.await.expect("generator task"));
        }
        let took = start.elapsed().as_secs_f64();
        let mut spilled = 0;
        let mut ok = 0;
        for rep in &replies {
            match rep {
                Reply::Receipt(rc) => {
                    ok += 1;
                    if rc.body.height != height {
                        spilled += 1;
                    }
                }
                _ => result.rejected += 1,
            }
        }
        // Wait for the round's height to commit.
        loop {
            if committed(&watch).await >= height {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let latency = opened.elapsed().as_secs_f64() - gate_ms as f64 / 1000.0;
        opened = Instant::now();
        if r == 0 {
            continue; // warm-up: connections and caches
        }
        receipted += ok;
        intake_time += took;
        result.spilled += spilled;
        result.latencies.push(latency);
        eprintln!(
            "  size {size}: round at height {height}: {ok} receipts in {took:.3}s ({:.0}/s), {spilled} for a later height, commit {latency:.3}s after gate closure",
            ok as f64 / took
        );
    }
    result.intake = receipted as f64 / intake_time;
    watch.close().await;
    for c in &clients {
        c.close().await;
    }
    cluster.stop_all();
    result
}

fn main() {
    let sizes = env_list("SIZES", &[1_000, 10_000, 100_000]);
    let rounds = env_list("ROUNDS", &[10, 5, 3]);
    let chunk = env_list("CHUNK", &[64])[0].max(1) as usize;
    let steps = env_list("STEPS", &[1])[0].clamp(1, 32) as usize;
    let bin = release_binary();
    let sample = tieline_core::sample::SampleConsortium::new(4, PARTICIPANTS_PER_MEMBER);
    let bids: Vec<SignedBid> = (0..4000)
        .map(|i| sample.bid(i % sample.participants.len(), 1, i as u64 + 1))
        .collect();
    let keys: Vec<_> = sample.participants.iter().map(|p| p.public_key()).collect();
    let verify = verify_rate(&bids, &keys);
    println!(
        "cluster benchmark: 4 management nodes (separate processes) on loopback, {} participants, {chunk} bids per request, {} cores",
        4 * PARTICIPANTS_PER_MEMBER,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("single-core ed25519 verification (strict): {verify:.0} signatures/s");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut expected_rate = 10_000.0f64;
    for (i, &size) in sizes.iter().enumerate() {
        let n = rounds.get(i).copied().unwrap_or(3).max(1);
        // The gate must stay open long enough to take a round's bids.
        let gate_ms = ((2.0 * size as f64 / expected_rate) * 1000.0).max(1000.0) as u64;
        let r = runtime.block_on(run_size(&bin, size, n, chunk, gate_ms, steps));
        expected_rate = r.intake.min(expected_rate * 4.0);
        let mut sorted = r.latencies.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:>7} bids/round ({} bid steps): intake {:>7.0} bids/s with receipts ({:.0}% of single-core verification), commit latency after gate closure median {:.3}s p99 {:.3}s over {} rounds (gate {} ms){}{}",
            r.size,
            r.size * steps as u64,
            r.intake,
            100.0 * r.intake / verify,
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            sorted.len(),
            gate_ms,
            if r.spilled > 0 {
                format!(", {} bids spilled to a later round", r.spilled)
            } else {
                String::new()
            },
            if r.rejected > 0 {
                format!(", {} rejected", r.rejected)
            } else {
                String::new()
            },
        );
    }
}
