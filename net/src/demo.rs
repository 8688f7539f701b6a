//! `tieline demo`: the paper's whole trade process on a local consortium, each management node
//! its own process on loopback over QUIC.
//!
//! By default ([`DemoMarket::Grid`]) the consortium is the RTS-GMLC system as three countries
//! (`data/rts-gmlc/`): 144 participants (every generator and every loaded bus) bid each round,
//! the primary clears by zonal coupling, every member re-runs the clearing and checks its own
//! area's grid privately (lines at 70% of their ratings, tie lines at 20%: a stressed grid), so
//! members object with cuts and the primary revises until every touched area co-signs. A
//! participant appeals a round's preliminary result and gets the resolution recorded in the
//! block. The primary of one round is killed with SIGKILL right after the previous round
//! commits; the next primary commits that round in view 1 (the fault skip); the killed node
//! restarts and catches up; at the end every node stops gracefully, every node's stored chain
//! is audited offline, and a report for a regulator is written.
//!
//! [`DemoMarket::Simple`] is the earlier demo: four members, sample participants bidding
//! continuously, uniform price, no grid.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tieline_core::block::{AppealClaim, AppealResolution, Block, ObjectionReason};
use tieline_core::consensus::Reply;
use tieline_core::consensus::wire::NodeStatus;
use tieline_core::crypto::Digest;
use tieline_core::crypto::Signed;
use tieline_core::genesis::{Genesis, Timing};
use tieline_core::units::Quantity;
use tieline_net::cluster::{self, ClusterMarket, ClusterSpec, LocalCluster};
use tieline_net::participant::ParticipantClient;

/// Which market the demo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoMarket {
    /// RTS-GMLC as three countries: zonal coupling, private grid checks, objections, cuts,
    /// revisions and an appeal.
    Grid,
    /// Four members, sample participants, uniform price, no grid.
    Simple,
}

/// The grid demo's stress: tie lines at this percentage of their ratings...
const GRID_TIE_RATING: u32 = 20;
/// ...and the lines inside the areas at this one, so that every area's check cuts.
const GRID_LINE_RATING: u32 = 70;
/// The round in which a participant appeals.
const APPEAL_HEIGHT: u64 = 2;

/// How the demo runs.
pub struct DemoOptions {
    /// Print the summary as JSON instead of text.
    pub json: bool,
    /// The market.
    pub market: DemoMarket,
    /// Where to write the report (HTML).
    pub report: PathBuf,
    /// Rounds (heights) to commit in all.
    pub rounds: u64,
    /// Keep the files here.
    pub keep: Option<PathBuf>,
    /// The `tieline` binary to start the nodes with.
    pub bin: PathBuf,
}

/// What the demo shows.
pub struct DemoSummary {
    grid: bool,
    rounds_committed: u64,
    fault_skips: u64,
    caught_up: bool,
    audit_ok: bool,
    agree: bool,
    revisions: u64,
    objections: u64,
    appeals_recorded: u64,
}

impl DemoSummary {
    /// Whether everything the demo shows held.
    pub fn ok(&self) -> bool {
        let negotiated = !self.grid
            || (self.objections >= 1 && self.revisions >= 1 && self.appeals_recorded >= 1);
        self.audit_ok
            && self.agree
            && self.caught_up
            && self.fault_skips >= 1
            && self.rounds_committed > KILL_HEIGHT
            && negotiated
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
    let spec = match options.market {
        DemoMarket::Simple => ClusterSpec {
            log_level: "warn,tieline_net::node=info".into(),
            ..ClusterSpec::default()
        },
        DemoMarket::Grid => ClusterSpec {
            market: ClusterMarket::RtsGmlc {
                tie_rating_percent: GRID_TIE_RATING,
                line_rating_percent: GRID_LINE_RATING,
            },
            timing: Timing {
                gate_ms: 700,
                batch_wait_ms: 300,
                view_timeout_ms: 1_500,
                schedule: None,
            },
            log_level: "warn,tieline_net::node=info".into(),
            ..ClusterSpec::default()
        },
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
    /// Each participant's last receipted bid and its height, by participant index.
    by_participant: Mutex<BTreeMap<usize, (Digest, u64)>>,
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
    let grid = cluster.grid.clone();
    if !options.json {
        let ports: Vec<&str> = g
            .members
            .iter()
            .map(|m| m.address.rsplit(':').next().unwrap_or(""))
            .collect();
        let what = match &grid {
            Some(_) => format!(
                "the RTS-GMLC system as {n} countries, one management node each (its own process, QUIC on 127.0.0.1 ports {}); {} participants (every generator and loaded bus); {} clearing; each member checks its own area's grid privately (lines at {GRID_LINE_RATING}% of their ratings, tie lines at {GRID_TIE_RATING}%)",
                ports.join(", "),
                g.participants.len(),
                g.clearing.rule.name(),
            ),
            None => format!(
                "{n} management nodes, each its own process, on 127.0.0.1 ports {}; {} participants; {} clearing",
                ports.join(", "),
                g.participants.len(),
                g.clearing.rule.name(),
            ),
        };
        println!(
            "Tieline demo: {what}; gate {} ms, view timeout {} ms",
            g.timing.gate_ms, g.timing.view_timeout_ms,
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

    // Participants bid (paper step 3, collection); a node that is down is skipped.
    let feed = Arc::new(Feed::default());
    let down: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let homes: Vec<usize> = g
        .participants
        .iter()
        .map(|p| g.members.iter().position(|m| m.id == p.home).unwrap_or(0))
        .collect();
    let source = match &grid {
        Some(grid) => BidSource::Grid(grid.clone()),
        None => BidSource::Sample(Box::new(SampleBids::from(&*cluster))),
    };
    let feeder = tokio::spawn(feed_bids(
        source,
        clients.clone(),
        watchers.clone(),
        homes,
        down.clone(),
        feed.clone(),
    ));
    if !options.json && grid.is_some() {
        println!(
            "  each round: collection (every participant bids to its home node) -> clearing (the primary) -> verification (every member re-runs the clearing and its own grid check) -> objection with cuts -> revision -> joint signatures of the touched areas -> commit"
        );
    }

    // A participant appeals a round's preliminary result (paper step 5).
    let mut appeal = None;
    if grid.is_some() {
        appeal = Some(appeal_once(&g, &clients, &feed, log).await?);
    }

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

    // The next primary commits the round in view 1 (paper step 2, fault skip).
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
            member_name(&g, h.primary),
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
    // Stop the nodes first (each empty gate would commit another empty round), then drop
    // the participants' connections.
    let stopped_cleanly = cluster.stop_all();
    drop(watchers);
    drop(clients);
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
    let mut longest_encoded: Vec<Vec<u8>> = Vec::new();
    for i in 0..n {
        let chain = cluster
            .stored_chain(i)
            .context("cannot read a node's chain")?;
        let (audit, blocks) = match cluster::audit_blocks(&g, &chain) {
            Ok((s, blocks)) => (
                format!(
                    "ok: {} blocks, {} signatures verified, every clearing re-run",
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
            longest_encoded = chain.clone();
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
    let stories: Vec<RoundStory> = longest.iter().map(|b| RoundStory::of(&g, b)).collect();
    let revisions: u64 = stories.iter().map(|r| u64::from(r.revision)).sum();
    let objections: u64 = stories.iter().map(|r| r.objections.len() as u64).sum();
    let cuts: u64 = stories.iter().map(|r| r.cuts as u64).sum();
    let appeals: Vec<&AppealStory> = stories.iter().flat_map(|r| &r.appeals).collect();

    // The regulator's report.
    let report = std::fs::write(
        &options.report,
        tieline_net::report::render(&g, &longest_encoded),
    )
    .map(|()| options.report.display().to_string())
    .with_context(|| format!("cannot write the report to {}", options.report.display()));
    // The market's own documents (ENTSO-E) of the last round with trades, beside the report.
    let documents = result_documents_beside(&g, &longest, &options.report);
    let summary = DemoSummary {
        grid: grid.is_some(),
        rounds_committed,
        fault_skips,
        caught_up,
        audit_ok,
        agree,
        revisions,
        objections,
        appeals_recorded: appeals.len() as u64,
    };
    if options.json {
        println!(
            "{}",
            json!({
                "market": if grid.is_some() { "rts-gmlc" } else { "simple" },
                "rule": g.clearing.rule.name(),
                "rounds_committed": rounds_committed,
                "fault_skips": fault_skips,
                "caught_up": caught_up,
                "audit": if audit_ok { "ok" } else { "failed" },
                "chains_agree": agree,
                "bids_receipted": receipted.len(),
                "receipted_bids_on_chain": receipted.len() - lost,
                "trades": trades,
                "revisions": revisions,
                "objections": objections,
                "cuts": cuts,
                "appeals": appeals.iter().map(|a| a.json()).collect::<Vec<_>>(),
                "appeal_sent": appeal.as_ref().map(|a| json!({
                    "participant": a.participant, "height": a.height, "recorded": a.recorded,
                })),
                "rounds": stories.iter().map(RoundStory::json).collect::<Vec<_>>(),
                "report": report.as_ref().ok(),
                "documents": documents.as_ref().ok().map(|(h, paths)| json!({
                    "height": h,
                    "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                })),
                "seconds": log.start.elapsed().as_secs_f64(),
                "nodes": node_reports,
            })
        );
    } else {
        println!("rounds (as the paper names the steps):");
        for r in &stories {
            r.print(g.clearing.rule.name(), grid.is_some());
        }
        println!(
            "summary: {rounds_committed} rounds committed by all {n} nodes, {fault_skips} fault skip(s), {revisions} revision(s) after {objections} objection(s) with {cuts} cut(s), {} appeal(s) recorded, restarted node caught up: {}, chains agree: {}, audit: {}, {}/{} receipted bids on chain, {trades} trades, {:.1} s",
            appeals.len(),
            if caught_up { "yes" } else { "NO" },
            if agree { "yes" } else { "NO" },
            if audit_ok { "ok" } else { "FAILED" },
            receipted.len() - lost,
            receipted.len(),
            log.start.elapsed().as_secs_f64()
        );
        match &report {
            Ok(path) => {
                println!("report for a regulator: {path} (open it in a browser; it works offline)")
            }
            Err(e) => println!("report: {e:#}"),
        }
        match &documents {
            Ok((h, paths)) => println!(
                "market documents of round {h} (ENTSO-E A44 prices, A25 allocations, A09 exchanges): {}",
                paths
                    .first()
                    .and_then(|p| p.parent())
                    .map_or_else(String::new, |d| d.display().to_string())
            ),
            Err(e) => println!("market documents: {e:#}"),
        }
    }
    report?;
    documents?;
    Ok(summary)
}

/// Writes the result documents of the chain's last round with trades into a directory beside
/// `report`, named after it (`report-documents/`), sent by that round's primary.
fn result_documents_beside(
    g: &Genesis,
    chain: &[Block],
    report: &std::path::Path,
) -> Result<(u64, Vec<PathBuf>)> {
    use tieline_net::entsoe::{Parties, result_documents};
    let block = chain
        .iter()
        .rev()
        .find(|b| !b.body.trades.is_empty())
        .ok_or_else(|| anyhow::anyhow!("no round has trades"))?;
    let stem = report
        .file_stem()
        .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
    let dir = report.with_file_name(format!("{stem}-documents"));
    let now = crate::now_ms();
    let docs = result_documents(
        g,
        &Parties::from_genesis(g),
        block,
        block.header.primary,
        tieline_core::units::Timestamp(now),
    );
    let height = block.header.height;
    let paths = docs
        .write(height, &dir)
        .with_context(|| format!("cannot write the documents into {}", dir.display()))?;
    Ok((height, paths))
}

fn member_name(g: &Genesis, id: tieline_core::units::NodeId) -> String {
    g.member(id)
        .map_or_else(|| format!("node {id}"), |m| m.name.clone())
}

/// A product as its delivery period, e.g. `2026-01-01 01:00:00 UTC +60 min`.
fn product_name(p: &tieline_core::market::Product) -> String {
    format!(
        "{} +{} min",
        tieline_net::report::utc(p.delivery_start),
        p.delivery_minutes
    )
}

fn area_name(g: &Genesis, id: tieline_core::units::AreaId) -> String {
    g.area(id)
        .map_or_else(|| format!("area {id}"), |a| a.name.clone())
}

/// What one committed block tells of its round.
struct RoundStory {
    height: u64,
    primary: String,
    view: u32,
    revision: u32,
    skipped: Vec<String>,
    skip_votes: usize,
    batches: usize,
    bids: usize,
    trades: usize,
    /// (objector, what it said).
    objections: Vec<(String, String)>,
    cuts: usize,
    appeals: Vec<AppealStory>,
    /// (product, area, price per MWh).
    prices: Vec<(String, String, String)>,
    /// (product, tie line, from area, to area, flow MWh in that direction, its capacity MWh).
    flows: Vec<(String, u32, String, String, String, String)>,
    signers: Vec<String>,
    block: String,
}

/// An appeal recorded in a block.
struct AppealStory {
    height: u64,
    participant: u32,
    claim: &'static str,
    resolution: String,
    upheld: bool,
}

impl AppealStory {
    fn json(&self) -> serde_json::Value {
        json!({
            "height": self.height, "participant": self.participant, "claim": self.claim,
            "resolution": self.resolution, "upheld": self.upheld,
        })
    }
}

impl RoundStory {
    fn of(g: &Genesis, b: &Block) -> Self {
        let p = &b.body.process;
        let outcome = &p.clearing.outcome;
        Self {
            height: b.header.height,
            primary: member_name(g, b.header.primary),
            view: b.header.view,
            revision: b.header.revision,
            skipped: p.skipped.iter().map(|id| member_name(g, *id)).collect(),
            skip_votes: p.skip_certificate.as_ref().map_or(0, |c| c.votes.len()),
            batches: p.batches.len(),
            bids: p.bid_count(),
            trades: b.body.trades.len(),
            objections: p
                .objections
                .iter()
                .map(|o| {
                    let what = match &o.body.reason {
                        ObjectionReason::Security { cuts } => format!(
                            "revision {} overloads its grid; it sends {} cut(s), one per line and direction",
                            o.body.revision,
                            cuts.len()
                        ),
                        ObjectionReason::MissingBatch { .. } => {
                            format!("its batch is missing from revision {}", o.body.revision)
                        }
                        ObjectionReason::Invalid { detail } => {
                            format!("revision {} is invalid: {detail}", o.body.revision)
                        }
                    };
                    (member_name(g, o.body.objector), what)
                })
                .collect(),
            cuts: p.clearing.cuts.len(),
            appeals: p
                .appeals
                .iter()
                .map(|a| AppealStory {
                    height: b.header.height,
                    participant: a.appeal.body.participant.0,
                    claim: match a.appeal.body.claim {
                        AppealClaim::Omitted { .. } => "omitted bid",
                        AppealClaim::Misallocated { .. } => "disputed allocation",
                    },
                    resolution: a.resolution.to_string(),
                    upheld: matches!(a.resolution, AppealResolution::Upheld { .. }),
                })
                .collect(),
            prices: outcome
                .area_prices
                .iter()
                .map(|a| {
                    (
                        product_name(&a.product),
                        area_name(g, a.area),
                        a.price.to_string(),
                    )
                })
                .collect(),
            flows: outcome
                .flows
                .iter()
                .filter_map(|f| {
                    let t = g.tie_line(f.tie_line)?;
                    let (from, to, flow, cap) = if f.flow.0 < 0 {
                        (t.to, t.from, Quantity(-f.flow.0), t.capacity_backward)
                    } else {
                        (t.from, t.to, f.flow, t.capacity_forward)
                    };
                    Some((
                        product_name(&f.product),
                        f.tie_line.0.into(),
                        area_name(g, from),
                        area_name(g, to),
                        flow.to_string(),
                        cap.to_string(),
                    ))
                })
                .collect(),
            signers: b
                .certificate
                .signatures
                .iter()
                .map(|s| member_name(g, s.voter))
                .collect(),
            block: b.digest().to_hex(),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "height": self.height, "primary": self.primary, "view": self.view,
            "revision": self.revision, "skipped": self.skipped, "bids": self.bids,
            "trades": self.trades,
            "objections": self.objections.iter().map(|(who, what)| json!({"objector": who, "reason": what})).collect::<Vec<_>>(),
            "cuts": self.cuts,
            "appeals": self.appeals.iter().map(AppealStory::json).collect::<Vec<_>>(),
            "prices": self.prices.iter().map(|(product, a, p)| json!({"product": product, "area": a, "price": p})).collect::<Vec<_>>(),
            "flows": self.flows.iter().map(|(product, id, from, to, flow, cap)| json!({"product": product, "tie_line": id, "from": from, "to": to, "flow_mwh": flow, "capacity_mwh": cap})).collect::<Vec<_>>(),
            "signers": self.signers, "block": self.block,
        })
    }

    fn print(&self, rule: &str, grid: bool) {
        println!(
            "  height {:>2}  primary {}, view {}, block {}",
            self.height,
            self.primary,
            self.view,
            &self.block[..16]
        );
        if self.view > 0 {
            println!(
                "    fault skip     {} skipped with a certificate of {} skip votes; the next primary in rotation proposed",
                self.skipped.join(", "),
                self.skip_votes
            );
        }
        println!(
            "    collection     {} bids in {} batches",
            self.bids, self.batches
        );
        println!(
            "    clearing       {rule} by {}, re-run by every verifier",
            self.primary
        );
        for (who, what) in &self.objections {
            println!("    objection      {who}: {what}");
        }
        if self.revision > 0 {
            println!(
                "    revision       {} revision(s); the committed one honours {} cut(s)",
                self.revision, self.cuts
            );
        } else if grid {
            println!("    verification   every member's grid check passed revision 0");
        } else {
            println!("    verification   every verifier accepted revision 0");
        }
        for a in &self.appeals {
            println!(
                "    appeal         participant {} ({}): {}",
                a.participant, a.claim, a.resolution
            );
        }
        println!(
            "    joint sigs     commit certificate signed by {}",
            self.signers.join(", ")
        );
        println!("    commit         {} trades", self.trades);
        let mut products: Vec<&String> = self.prices.iter().map(|(p, _, _)| p).collect();
        products.dedup();
        for product in products {
            let prices: Vec<String> = self
                .prices
                .iter()
                .filter(|(p, _, _)| p == product)
                .map(|(_, a, price)| format!("{a} {price}"))
                .collect();
            let flows: Vec<String> = self
                .flows
                .iter()
                .filter(|(p, ..)| p == product)
                .map(|(_, id, from, to, flow, cap)| format!("#{id} {from}->{to} {flow} of {cap}"))
                .collect();
            println!("    {product}  prices per MWh: {}", prices.join(", "));
            if !flows.is_empty() {
                println!(
                    "    {:width$}  tie-line flows, MWh: {}",
                    "",
                    flows.join("; "),
                    width = product.len()
                );
            }
        }
    }
}

/// What the appellant got.
struct AppealSent {
    participant: u32,
    height: u64,
    recorded: bool,
}

/// A participant of the second member disputes the allocation of its bid of
/// [`APPEAL_HEIGHT`] (or a later round) while the round is in progress, and reads the
/// resolution recorded in the committed block.
async fn appeal_once(
    g: &Genesis,
    clients: &[Arc<ParticipantClient>],
    feed: &Feed,
    log: &Log,
) -> Result<AppealSent> {
    let home = g.members[1.min(g.members.len() - 1)].id;
    let k = g
        .participants
        .iter()
        .position(|p| p.home == home)
        .context("the appellant's home has participants")?;
    let c = &clients[k];
    let participant = g.participants[k].id;
    for _ in 0..3 {
        let mut bid = None;
        wait_until(PHASE_LIMIT, "the appellant's receipt", || {
            let found = feed
                .by_participant
                .lock()
                .expect("feed lock")
                .get(&k)
                .copied()
                .filter(|(_, h)| *h >= APPEAL_HEIGHT);
            bid = found;
            async move { found.is_some() }
        })
        .await?;
        let (id, height) = bid.expect("found");
        let appeal = tieline_core::block::Appeal {
            chain_id: g.chain_id(),
            participant,
            height,
            claim: AppealClaim::Misallocated { bid: id },
        };
        match c.appeal(Signed::sign(appeal, c.signer())).await? {
            Reply::AppealForwarded { height } => {
                log.event(format!(
                    "appeal: participant {participant} disputes the allocation of its bid {} in round {height}; its home node {} forwarded it to every member",
                    &id.to_hex()[..12],
                    member_name(g, home)
                ));
                let process = c.committed_process(height, PHASE_LIMIT).await?;
                let record = process.appeals_of(participant).last();
                log.event(match record {
                    Some(r) => format!(
                        "appeal resolved in block {} (height {height}, revision {}): {}",
                        &process.header.digest().to_hex()[..16],
                        process.header.revision,
                        r.resolution
                    ),
                    None => format!("appeal not recorded in height {height}; appealing again"),
                });
                if record.is_some() {
                    return Ok(AppealSent {
                        participant: participant.0,
                        height,
                        recorded: true,
                    });
                }
            }
            other => log.event(format!("appeal refused ({other:?}); appealing again")),
        }
        let next = c.status().await?.height;
        wait_until(PHASE_LIMIT, "the next round", || async {
            c.status().await.is_ok_and(|s| s.height > next)
        })
        .await?;
    }
    Ok(AppealSent {
        participant: participant.0,
        height: 0,
        recorded: false,
    })
}

/// Where the demo's bids come from.
enum BidSource {
    /// The sample consortium's crossing bids, one per participant every [`BID_INTERVAL`].
    Sample(Box<SampleBids>),
    /// Every grid participant's offer or demand bid, once per round.
    Grid(Arc<tieline_core::grid::GridConsortium>),
}

/// Submits bids until told to stop, recording receipts; participants of a node marked down
/// do not bid.
async fn feed_bids(
    source: BidSource,
    clients: Vec<Arc<ParticipantClient>>,
    watchers: Vec<Arc<ParticipantClient>>,
    homes: Vec<usize>,
    down: Arc<Vec<AtomicBool>>,
    feed: Arc<Feed>,
) {
    let mut tick = 0u64;
    // Submissions run on their own: one that waits for a node that was just killed (until the
    // request times out) does not hold back the bids of the next round.
    let mut tasks = tokio::task::JoinSet::new();
    while !feed.stop.load(Ordering::Relaxed) {
        let bids: Vec<(usize, tieline_core::market::SignedBid)> = match &source {
            BidSource::Sample(sample) => {
                tick += 1;
                (0..clients.len())
                    .map(|k| (k, sample.bid(k, tick)))
                    .collect()
            }
            BidSource::Grid(grid) => {
                // The round in progress at any live node; each round's bids once.
                let mut height = 0;
                for (i, w) in watchers.iter().enumerate() {
                    if !down[i].load(Ordering::Relaxed) {
                        if let Some(s) = status(w).await {
                            height = height.max(s.height);
                        }
                    }
                }
                if height <= tick {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                tick = height;
                grid.bids(height).into_iter().enumerate().collect()
            }
        };
        for (k, bid) in bids {
            if down[homes[k]].load(Ordering::Relaxed) {
                continue;
            }
            let (c, feed) = (clients[k].clone(), feed.clone());
            tasks.spawn(async move {
                let id = bid.body.id();
                if let Ok(replies) = c.submit(vec![bid]).await {
                    match replies.first() {
                        Some(Reply::Receipt(r)) => {
                            feed.receipted
                                .lock()
                                .expect("feed lock")
                                .insert(id, r.body.height);
                            feed.by_participant
                                .lock()
                                .expect("feed lock")
                                .insert(k, (id, r.body.height));
                        }
                        _ => {
                            feed.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        if matches!(source, BidSource::Sample(_)) {
            tokio::time::sleep(BID_INTERVAL).await;
        }
        while tasks.try_join_next().is_some() {}
    }
    tasks.join_all().await;
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
