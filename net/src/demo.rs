//! `tieline demo`: a local consortium of 4 management nodes, each its own process on
//! loopback, with built-in participants bidding every round. The primary of one round is
//! killed with SIGKILL right after the previous round commits; the next primary commits that
//! round in view 1 (the fault skip); the killed node restarts and catches up; at the end every
//! node stops gracefully and every node's stored chain is audited offline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tieline_core::block::Block;
use tieline_core::consensus::Reply;
use tieline_core::consensus::wire::NodeStatus;
use tieline_core::crypto::Digest;
use tieline_net::cluster::{self, ClusterSpec, LocalCluster};
use tieline_net::participant::ParticipantClient;

/// How the demo runs.
pub struct DemoOptions {
    /// Print the summary as JSON instead of text.
    pub json: bool,
    /// Rounds (heights) to commit in all.
    pub rounds: u64,
    /// Keep the files here.
    pub keep: Option<PathBuf>,
    /// The `tieline` binary to start the nodes with.
    pub bin: PathBuf,
}

/// What the demo shows.
pub struct DemoSummary {
    rounds_committed: u64,
    fault_skips: u64,
    caught_up: bool,
    audit_ok: bool,
    agree: bool,
}

impl DemoSummary {
    /// Whether everything the demo shows held.
    pub fn ok(&self) -> bool {
        self.audit_ok
            && self.agree
            && self.caught_up
            && self.fault_skips >= 1
            && self.rounds_committed > KILL_HEIGHT
    }
}

/// The height at which the primary is killed.
const KILL_HEIGHT: u64 = 4;
/// How often bids are submitted (per participant).
const BID_INTERVAL: Duration = Duration::from_millis(150);
/// How often node status is polled.
const POLL: Duration = Duration::from_millis(20);
/// The longest any phase of the demo may take.
const PHASE_LIMIT: Duration = Duration::from_secs(30);

struct Log {
    json: bool,
    start: Instant,
}

impl Log {
    fn event(&self, text: impl AsRef<str>) {
        if !self.json {
            println!(
                "  {:>6.2}s  {}",
                self.start.elapsed().as_secs_f64(),
                text.as_ref()
            );
        }
    }
}

/// Runs the demo; cleans up its processes and files on return, on error and on Ctrl-C.
pub async fn run(options: DemoOptions) -> Result<DemoSummary> {
    let (dir, keep) = match &options.keep {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!("tieline-demo-{}", std::process::id())),
            false,
        ),
    };
    let spec = ClusterSpec {
        log_level: "warn,tieline_net::node=info".into(),
        ..ClusterSpec::default()
    };
    let mut cluster = LocalCluster::create(&dir, &options.bin, &spec)
        .with_context(|| format!("cannot set up the demo in {}", dir.display()))?;
    if keep {
        cluster.keep();
    }
    let log = Log {
        json: options.json,
        start: Instant::now(),
    };
    // The cluster is dropped (children killed, files removed) however this ends.
    tokio::select! {
        r = scenario(&mut cluster, &options, &log) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: stopping the nodes and removing {}", dir.display());
            drop(cluster);
            std::process::exit(130);
        }
    }
}

/// The shared record of what the bid feeder did.
#[derive(Default)]
struct Feed {
    receipted: Mutex<BTreeMap<Digest, u64>>,
    rejected: AtomicU64,
    stop: AtomicBool,
}

async fn status(c: &ParticipantClient) -> Option<NodeStatus> {
    c.status().await.ok()
}

fn committed(s: &NodeStatus) -> u64 {
    s.height.saturating_sub(1)
}

async fn scenario(
    cluster: &mut LocalCluster,
    options: &DemoOptions,
    log: &Log,
) -> Result<DemoSummary> {
    let n = cluster.len();
    let g = cluster.genesis.clone();
    if !options.json {
        let ports: Vec<&str> = g
            .members
            .iter()
            .map(|m| m.address.rsplit(':').next().unwrap_or(""))
            .collect();
        println!(
            "Tieline demo: {n} management nodes, each its own process, on 127.0.0.1 ports {}; {} participants; {} clearing; gate {} ms, view timeout {} ms",
            ports.join(", "),
            g.participants.len(),
            g.clearing.rule.name(),
            g.timing.gate_ms,
            g.timing.view_timeout_ms,
        );
    }
    let rounds = options.rounds.max(KILL_HEIGHT + 2);
    cluster.start_all().context("cannot start the nodes")?;
    log.event(format!("started {n} nodes ({})", cluster.dir.display()));

    let timeout = Duration::from_secs(3);
    let clients: Vec<Arc<ParticipantClient>> = (0..g.participants.len())
        .map(|k| cluster.participant(k, timeout).map(Arc::new))
        .collect::<Result<_, _>>()?;
    // One status client per node: its first participant.
    let watchers: Vec<Arc<ParticipantClient>> = (0..n)
        .map(|i| clients[cluster.participants_of(i)[0]].clone())
        .collect();
    wait_until(PHASE_LIMIT, "every node to answer", || async {
        for w in &watchers {
            if status(w).await.is_none() {
                return false;
            }
        }
        true
    })
    .await?;

    // Participants bid continuously; a node that is down is skipped.
    let feed = Arc::new(Feed::default());
    let down: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let homes: Vec<usize> = g
        .participants
        .iter()
        .map(|p| g.members.iter().position(|m| m.id == p.home).unwrap_or(0))
        .collect();
    let feeder = {
        let (feed, down, clients) = (feed.clone(), down.clone(), clients.clone());
        let consortium_bids: Vec<_> = (0..clients.len()).collect();
        let sample = Arc::new(SampleBids::from(&*cluster));
        tokio::spawn(async move {
            let mut nonce = 0u64;
            while !feed.stop.load(Ordering::Relaxed) {
                nonce += 1;
                let mut tasks = Vec::new();
                for &k in &consortium_bids {
                    if down[homes[k]].load(Ordering::Relaxed) {
                        continue;
                    }
                    let (c, feed, sample) = (clients[k].clone(), feed.clone(), sample.clone());
                    tasks.push(tokio::spawn(async move {
                        let bid = sample.bid(k, nonce);
                        let id = bid.body.id();
                        if let Ok(replies) = c.submit(vec![bid]).await {
                            match replies.first() {
                                Some(Reply::Receipt(r)) => {
                                    feed.receipted
                                        .lock()
                                        .expect("feed lock")
                                        .insert(id, r.body.height);
                                }
                                _ => {
                                    feed.rejected.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
                tokio::time::sleep(BID_INTERVAL).await;
            }
        })
    };

    // Kill the primary of KILL_HEIGHT right after KILL_HEIGHT - 1 commits.
    let victim = g
        .members
        .iter()
        .position(|m| m.id == g.primary(KILL_HEIGHT, 0))
        .expect("the primary is a member");
    let victim_name = g.members[victim].name.clone();
    wait_until(
        PHASE_LIMIT,
        "the round before the kill to commit",
        || async {
            status(&watchers[victim])
                .await
                .is_some_and(|s| committed(&s) >= KILL_HEIGHT - 1)
        },
    )
    .await?;
    down[victim].store(true, Ordering::Relaxed);
    let pid = cluster.pid(victim).unwrap_or(0);
    cluster.kill(victim);
    let killed_at = Instant::now();
    log.event(format!(
        "height {} committed; killed {victim_name} (pid {pid}) with SIGKILL: it is the primary of height {KILL_HEIGHT}",
        KILL_HEIGHT - 1
    ));

    // The next primary commits the round in view 1.
    let survivor = (victim + 1) % n;
    let mut skip_header = None;
    wait_until(
        PHASE_LIMIT,
        "the next primary to commit the round",
        || async {
            status(&watchers[survivor])
                .await
                .is_some_and(|s| committed(&s) >= KILL_HEIGHT)
        },
    )
    .await?;
    if let Some(s) = status(&watchers[survivor]).await {
        if committed(&s) == KILL_HEIGHT {
            skip_header = s.last;
        }
    }
    let skip_text = match &skip_header {
        Some(h) => format!(
            "height {KILL_HEIGHT} committed by {} in view {} after {:.2}s: fault skip of {victim_name}",
            g.member(h.primary).map_or("?".into(), |m| m.name.clone()),
            h.view,
            killed_at.elapsed().as_secs_f64()
        ),
        None => format!(
            "height {KILL_HEIGHT} committed without {victim_name} after {:.2}s",
            killed_at.elapsed().as_secs_f64()
        ),
    };
    log.event(skip_text);

    // Restart the killed node and watch it catch up from its storage and its peers.
    cluster
        .start(victim)
        .context("cannot restart the killed node")?;
    let restarted_at = Instant::now();
    log.event(format!("restarted {victim_name}"));
    let from_height = std::cell::Cell::new(None);
    let caught_up = wait_until(PHASE_LIMIT, "the restarted node to catch up", || async {
        let Some(v) = status(&watchers[victim]).await else {
            return false;
        };
        if from_height.get().is_none() {
            from_height.set(Some(committed(&v)));
        }
        let Some(o) = status(&watchers[survivor]).await else {
            return false;
        };
        committed(&v) >= committed(&o)
    })
    .await
    .is_ok();
    down[victim].store(false, Ordering::Relaxed);
    if caught_up {
        let now = status(&watchers[victim]).await.map_or(0, |s| committed(&s));
        log.event(format!(
            "{victim_name} caught up in {:.2}s: restored height {} from its own storage, verified blocks up to {now} from its peers",
            restarted_at.elapsed().as_secs_f64(),
            from_height.get().unwrap_or(0)
        ));
    } else {
        log.event(format!("{victim_name} did NOT catch up"));
    }

    // More rounds with every node, then stop feeding and let the last bids commit.
    wait_until(PHASE_LIMIT, "the remaining rounds", || async {
        status(&watchers[survivor])
            .await
            .is_some_and(|s| committed(&s) >= rounds - 1)
    })
    .await?;
    feed.stop.store(true, Ordering::Relaxed);
    let _ = feeder.await;
    let last_receipt = feed
        .receipted
        .lock()
        .expect("feed lock")
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    let target = rounds.max(last_receipt + 1);
    wait_until(PHASE_LIMIT, "the last receipted bids to commit", || async {
        for w in &watchers {
            if status(w).await.is_none_or(|s| committed(&s) < target) {
                return false;
            }
        }
        true
    })
    .await?;
    for c in &clients {
        c.close().await;
    }
    let stopped_cleanly = cluster.stop_all();
    log.event(format!(
        "stopped every node gracefully{}",
        if stopped_cleanly {
            ""
        } else {
            " (one had to be killed)"
        }
    ));

    // Audit every node's stored chain offline.
    let mut chains = Vec::new();
    let mut node_reports = Vec::new();
    let mut audit_ok = true;
    let mut longest: Vec<Block> = Vec::new();
    for i in 0..n {
        let chain = cluster
            .stored_chain(i)
            .context("cannot read a node's chain")?;
        let (audit, blocks) = match cluster::audit_blocks(&g, &chain) {
            Ok((s, blocks)) => (
                format!(
                    "ok: {} blocks, {} signatures verified",
                    s.blocks, s.signatures
                ),
                blocks,
            ),
            Err(e) => {
                audit_ok = false;
                (format!("FAILED: {e}"), Vec::new())
            }
        };
        let m = &g.members[i];
        node_reports.push(json!({
            "id": m.id.0, "name": m.name, "address": m.address,
            "height": chain.len(),
            "head": chain.last().and_then(|b| cluster::block_digest(b)),
            "audit": if audit.starts_with("ok") { "ok" } else { "failed" },
            "killed_and_restarted": i == victim,
        }));
        if !options.json {
            println!(
                "  node {} ({}): {} blocks, audit {audit}",
                m.id,
                m.name,
                chain.len()
            );
        }
        if blocks.len() > longest.len() {
            longest = blocks;
        }
        chains.push(chain);
    }
    let agree = cluster::first_disagreement(&chains).is_none();
    let rounds_committed = chains.iter().map(Vec::len).min().unwrap_or(0) as u64;
    let fault_skips = longest.iter().filter(|b| b.header.view > 0).count() as u64;
    let on_chain: std::collections::BTreeSet<Digest> = longest
        .iter()
        .flat_map(|b| b.body.process.batches.iter())
        .flat_map(|batch| batch.body.bids.iter().map(|sb| sb.body.id()))
        .collect();
    let receipted = feed.receipted.lock().expect("feed lock").clone();
    let lost = receipted.keys().filter(|id| !on_chain.contains(id)).count();
    let trades: usize = longest.iter().map(|b| b.body.trades.len()).sum();
    let summary = DemoSummary {
        rounds_committed,
        fault_skips,
        caught_up,
        audit_ok,
        agree,
    };
    if options.json {
        println!(
            "{}",
            json!({
                "rounds_committed": rounds_committed,
                "fault_skips": fault_skips,
                "caught_up": caught_up,
                "audit": if audit_ok { "ok" } else { "failed" },
                "chains_agree": agree,
                "bids_receipted": receipted.len(),
                "receipted_bids_on_chain": receipted.len() - lost,
                "trades": trades,
                "seconds": log.start.elapsed().as_secs_f64(),
                "nodes": node_reports,
            })
        );
    } else {
        println!("rounds:");
        for b in &longest {
            let bids: usize = b
                .body
                .process
                .batches
                .iter()
                .map(|x| x.body.bids.len())
                .sum();
            let primary = g
                .member(b.header.primary)
                .map_or("?".into(), |m| m.name.clone());
            let note = if b.header.view > 0 {
                let skipped: Vec<String> = b
                    .body
                    .process
                    .skipped
                    .iter()
                    .filter_map(|id| g.member(*id).map(|m| m.name.clone()))
                    .collect();
                format!("  <- fault skip: {} was down", skipped.join(", "))
            } else {
                String::new()
            };
            println!(
                "  height {:>2}  primary {:<11} view {}  {:>3} bids  {:>3} trades{note}",
                b.header.height,
                primary,
                b.header.view,
                bids,
                b.body.trades.len()
            );
        }
        println!(
            "summary: {rounds_committed} rounds committed by all {n} nodes, {fault_skips} fault skip(s), restarted node caught up: {}, chains agree: {}, audit: {}, {}/{} receipted bids on chain, {trades} trades, {:.1} s",
            if caught_up { "yes" } else { "NO" },
            if agree { "yes" } else { "NO" },
            if audit_ok { "ok" } else { "FAILED" },
            receipted.len() - lost,
            receipted.len(),
            log.start.elapsed().as_secs_f64()
        );
    }
    Ok(summary)
}

/// The demo's bids: the sample consortium's crossing bids, one per participant and tick.
struct SampleBids {
    consortium: tieline_core::sample::SampleConsortium,
}

impl From<&LocalCluster> for SampleBids {
    fn from(c: &LocalCluster) -> Self {
        Self {
            consortium: tieline_core::sample::SampleConsortium {
                genesis: c.consortium.genesis.clone(),
                members: c.consortium.members.clone(),
                participants: c.consortium.participants.clone(),
            },
        }
    }
}

impl SampleBids {
    fn bid(&self, participant: usize, nonce: u64) -> tieline_core::market::SignedBid {
        // Every bid is for the same delivery hour, so bids of one round clear together.
        self.consortium.bid(participant, 1, nonce)
    }
}

/// Polls `check` every [`POLL`] until it holds, or fails after `limit` naming `what`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("timed out after {limit:?} waiting for {what}")
}
