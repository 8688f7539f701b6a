//! `tieline report`: one self-contained HTML audit report of a chain, for a regulator or a
//! member.
//!
//! The report re-runs the chain audit (spec 1.9, D15-D22 and the content rules V1-V9 that a
//! copy of the chain lets anyone check) block by block and shows, per round, what the block
//! records: who proposed it, fault skips, the negotiation (objections, cuts, revisions,
//! appeals), the prices per area, the tie-line flows as a diagram, and who signed. A price
//! chart covers all rounds. Everything is in one file: inline CSS and inline SVG, no script, no
//! external resource. If the audit fails, the report says at which height and why near the
//! top, and every later round is shown as decoded but unverified.
//!
//! [`audit`] and the renderers are pure: the `tieline report` command reads the blocks and
//! writes the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use tieline_core::audit::{AuditError, AuditSummary, ChainAuditor};
use tieline_core::block::{AppealClaim, AppealResolution, Block, ObjectionReason, RejectionReason};
use tieline_core::clearing::{ClearingOutcome, CutVariable, rule_for};
use tieline_core::consensus::content::unavailable_areas;
use tieline_core::crypto::Ed25519;
use tieline_core::encoding::Tagged;
use tieline_core::genesis::{FaultKind, Genesis, Participant, TieLine};
use tieline_core::market::{Product, Settlement, Side, Term};
use tieline_core::units::{AreaId, NodeId, ParticipantId, Price, Quantity, Timestamp};

/// What the audit found about one round (one encoded block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoundStatus {
    /// The block passed every check.
    Verified,
    /// The audit failed at this block, for this reason.
    Failed(String),
    /// The audit failed at an earlier block; this one was not checked.
    Unverified,
}

/// One round of the chain: an encoded block, what the audit said, and what could be decoded.
#[derive(Clone, Debug)]
pub struct Round {
    /// The block's position in the chain, from 1: the height it must have.
    pub position: u64,
    /// The audit's verdict on this block.
    pub status: RoundStatus,
    /// The decoded block, or why the bytes do not decode.
    pub block: Result<Block, String>,
}

/// The audit's verdict on the whole chain.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Every block passed.
    Passed(AuditSummary),
    /// The audit failed at a block.
    Failed {
        /// The first failure, with its height.
        error: AuditError,
        /// Blocks verified before it.
        verified_blocks: u64,
        /// Signatures verified before it.
        verified_signatures: u64,
    },
}

/// A chain as the report shows it: the verdict and every round.
#[derive(Clone, Debug)]
pub struct AuditedChain {
    /// The verdict.
    pub verdict: Verdict,
    /// Every round, in chain order.
    pub rounds: Vec<Round>,
    /// The participants admitted on chain (spec 2.14) in the audited blocks, as admitted (a
    /// later revocation or key replacement does not remove them: their trades keep a name).
    pub admitted: BTreeMap<ParticipantId, Participant>,
}

impl AuditedChain {
    /// Whether every block passed the audit.
    pub fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Passed(_))
    }
}

/// Audits encoded blocks from height 1 with [`ChainAuditor`] (re-running each block's
/// clearing), and decodes what can be decoded after a failure.
pub fn audit(genesis: &Genesis, encoded_blocks: &[Vec<u8>]) -> AuditedChain {
    let scheme = Ed25519::with_known_keys(genesis.public_keys());
    let mut auditor = ChainAuditor::new(genesis, &scheme, rule_for(genesis.clearing.rule));
    let mut failure: Option<AuditError> = None;
    let mut rounds = Vec::with_capacity(encoded_blocks.len());
    let mut admitted = BTreeMap::new();
    for (i, bytes) in encoded_blocks.iter().enumerate() {
        let position = i as u64 + 1;
        let decode = || Block::from_canonical_bytes(bytes).map_err(|e| e.to_string());
        let (status, block) = if failure.is_some() {
            (RoundStatus::Unverified, decode())
        } else {
            match auditor.push_encoded(bytes) {
                Ok(block) => {
                    if block.body.process.has_changes() {
                        for p in &auditor.registry().participants {
                            if genesis.participant(p.id).is_none() {
                                admitted.entry(p.id).or_insert_with(|| p.clone());
                            }
                        }
                    }
                    (RoundStatus::Verified, Ok(block))
                }
                Err(e) => {
                    let status = RoundStatus::Failed(e.reason.to_string());
                    failure = Some(e);
                    (status, decode())
                }
            }
        };
        rounds.push(Round {
            position,
            status,
            block,
        });
    }
    let summary = auditor.finish();
    let verdict = match failure {
        None => Verdict::Passed(summary),
        Some(error) => Verdict::Failed {
            error,
            verified_blocks: summary.blocks,
            verified_signatures: summary.signatures,
        },
    };
    AuditedChain {
        verdict,
        rounds,
        admitted,
    }
}

/// The HTML report of a chain given as encoded blocks: [`audit`] then [`render_audited`].
pub fn render(genesis: &Genesis, encoded_blocks: &[Vec<u8>]) -> String {
    render_audited(genesis, &audit(genesis, encoded_blocks))
}

/// The HTML report of an audited chain: one self-contained document.
pub fn render_audited(genesis: &Genesis, chain: &AuditedChain) -> String {
    let mut r = Renderer::new(genesis);
    r.admitted = &chain.admitted;
    let mut out = String::with_capacity(64 * 1024);
    r.document(&mut out, chain);
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    Esc(text).to_string()
}

// ----- helpers -----

/// Writes to a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Displays a value HTML-escaped.
struct Esc<T>(T);

impl<T: fmt::Display> fmt::Display for Esc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.to_string().chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The checks the audit runs, by spec id (spec 1.9 and 2.13).
const CHECKS: &[(&str, &str)] = &[
    (
        "D15",
        "heights and links: each block at its height, on this chain, linked to its predecessor, time never backwards",
    ),
    (
        "D16",
        "the header commits to every byte: trades Merkle root and process-data digest",
    ),
    (
        "D17",
        "rotation and fault skip: the primary is the rotation's, skipped primaries and skip certificate justified",
    ),
    (
        "D18",
        "the commit certificate is for this block (D11: quorum of distinct members, every signature verified; D12: joint signatures of every touched area)",
    ),
    (
        "D19",
        "batches are their home nodes': one per member, signed by it; a skip loses no reported batch",
    ),
    (
        "D20",
        "bids are their participants': valid and signed, or recorded as rejected",
    ),
    ("D21", "trades are backed by bids in the block"),
    (
        "D22",
        "objections, appeals and equivocation evidence are signed by whom they name",
    ),
    (
        "V1",
        "only the round's primary proposes: the header names the rotation's primary (D17)",
    ),
    (
        "V2",
        "the committed block is valid: all of D15-D22, the content rules and a re-run of its clearing",
    ),
    (
        "V3",
        "no bid is cleared twice: duplicates and replayed nonces are rejected",
    ),
    (
        "V4",
        "a home node's batch is in the block unchanged: the home node signed its batch (D19); the missing-batch check itself runs at each node when it votes",
    ),
    (
        "V5",
        "appeals are resolved by the rules and recorded: every recorded resolution is re-derived",
    ),
    (
        "V6",
        "the clearing is what the rule gives: the outcome and trades verified against the rule on the included bids and cuts",
    ),
    (
        "V7",
        "every touched area's own security check passed: checked privately by each member before it signed; the audit sees its signature and the cuts it raised",
    ),
    (
        "V8",
        "cuts come from recorded security objections and are honoured by the outcome",
    ),
    (
        "V9",
        "joint signatures: the commit certificate includes every member of every touched area (the endorsement certificate is not stored in the block; a commit vote is cast only after one)",
    ),
];

/// Colours of the areas in diagrams and the chart, by area index.
const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22",
];

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid #d5d9e0;padding-bottom:4px}
h3{font-size:1.05em;margin:1.2em 0 .4em}
h4{font-size:.95em;margin:1em 0 .3em;color:#444}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
table{border-collapse:collapse;margin:.4em 0;background:#fff}
th,td{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top;font-size:.9em}
th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:170px}
.verdict{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:1.05em}
.verdict.ok{background:#e3f4e8;border:1px solid #6cbf84}
.verdict.bad{background:#fde8e8;border:2px solid #d64545}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.75em;font-weight:600;vertical-align:middle;margin-left:8px}
.badge.ok{background:#d3f0dc;color:#1c6b34}
.badge.bad{background:#f8d0d0;color:#9b1c1c}
.badge.unverified{background:#fbe9c8;color:#8a5a00}
.round{background:#fff;border:1px solid #d5d9e0;border-radius:8px;padding:8px 20px 16px;margin:20px 0}
.round.failed{border:2px solid #d64545}
.round.unverified{border:2px dashed #d9a441;background:#fffcf5}
.note{color:#555;font-size:.9em}
.warn{color:#9b1c1c;font-weight:600}
.diagram{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
svg{background:#fff;border:1px solid #e1e4ea;border-radius:6px}
ol.story li,ul.checks li{margin:.2em 0}
nav table{width:100%}
details{margin:.5em 0}
summary{cursor:pointer;font-weight:600}
footer{color:#777;font-size:.85em;margin-top:32px}
";

/// `ms` since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC` (with milliseconds if any).
/// A timestamp as a UTC date and time, e.g. `2026-01-01 01:00:00 UTC` (milliseconds shown
/// when there are any).
pub fn utc(t: Timestamp) -> String {
    let Some(ts) = tieline_core::schedule::instant(t) else {
        return format!("{} ms after the Unix epoch", t.0);
    };
    if t.0 % 1000 == 0 {
        ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        ts.strftime("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
    }
}

fn product_label(p: &Product) -> String {
    let term = match p.term {
        Term::Spot => "spot",
        Term::MediumLongTerm => "medium/long-term",
    };
    let settlement = match p.settlement {
        Settlement::Physical => "physical",
        Settlement::Financial => "financial",
    };
    format!(
        "delivery {} for {} min, {term}, {settlement}",
        utc(p.delivery_start),
        p.delivery_minutes
    )
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn rejection_name(r: RejectionReason) -> &'static str {
    match r {
        RejectionReason::AreaUnavailable => "area unavailable (sat out the view)",
        RejectionReason::Fallback => "cut by the negotiation fallback",
        RejectionReason::Invalid => "invalid",
        RejectionReason::Duplicate => "duplicate",
        RejectionReason::OutsideGate => "outside its gate (another height clears its period)",
    }
}

fn resolution_text(r: AppealResolution) -> String {
    match r {
        AppealResolution::Upheld { revision } => {
            format!("upheld: revision {revision} corrects the result")
        }
        AppealResolution::RejectedAlreadyIncluded => {
            "rejected: the bid was in the result already".into()
        }
        AppealResolution::RejectedUnverifiable => {
            "rejected: the bid or receipt does not verify or match".into()
        }
        AppealResolution::RejectedOutcomeStands => {
            "rejected: the clearing was recomputed by the rule and the outcome stands".into()
        }
    }
}

/// A round number for axis ticks: 1, 2 or 5 times a power of ten, at least `x`.
fn nice_step(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    let f = x / p;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * p
}

/// A number for an axis label, without needless decimals.
fn axis_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

// ----- rendering -----

struct Renderer<'g> {
    g: &'g Genesis,
    area_index: BTreeMap<AreaId, usize>,
    /// Participants admitted on chain, named like the genesis's.
    admitted: &'g BTreeMap<ParticipantId, Participant>,
}

fn with_eic(name: String, eic: Option<tieline_core::eic::Eic>) -> String {
    match eic {
        Some(e) => format!("{name} [EIC {e}]"),
        None => name,
    }
}

impl<'g> Renderer<'g> {
    fn new(g: &'g Genesis) -> Self {
        let area_index = g.areas.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
        static NONE: BTreeMap<ParticipantId, Participant> = BTreeMap::new();
        Self {
            g,
            area_index,
            admitted: &NONE,
        }
    }

    /// An area by name, with its EIC where the genesis gives one (spec D23).
    fn area_name(&self, id: AreaId) -> String {
        self.g.area(id).map_or_else(
            || format!("area {id} (unknown)"),
            |a| with_eic(a.name.clone(), a.eic),
        )
    }

    fn color(&self, id: AreaId) -> &'static str {
        let i = self.area_index.get(&id).copied().unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }

    fn member_name(&self, id: NodeId) -> String {
        match self.g.member(id) {
            Some(m) => with_eic(format!("{} (node {})", m.name, m.id), m.eic),
            None => format!("node {id} (not a member)"),
        }
    }

    fn participant_name(&self, id: ParticipantId) -> String {
        match self.g.participant(id).or_else(|| self.admitted.get(&id)) {
            Some(p) => with_eic(format!("{} (#{})", p.name, p.id), p.eic),
            None => format!("participant #{id} (not admitted)"),
        }
    }

    fn document(&self, out: &mut String, chain: &AuditedChain) {
        let g = self.g;
        put!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>Tieline audit report: {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
            Esc(&g.chain_name)
        );
        put!(
            out,
            "<header>\n<h1>Tieline audit report: {}</h1>\n<p>Chain id <code>{}</code> &middot; {} rounds (blocks) in the copy audited</p>\n",
            Esc(&g.chain_name),
            g.chain_id().to_hex(),
            chain.rounds.len()
        );
        self.verdict(out, chain);
        out.push_str("</header>\n");
        self.checks(out);
        self.genesis_summary(out);
        self.contents(out, chain);
        self.price_chart(out, chain);
        out.push_str("<h2 id=\"rounds\">Rounds</h2>\n");
        if chain.rounds.is_empty() {
            out.push_str("<p class=\"note\">The chain has no blocks yet.</p>\n");
        }
        for round in &chain.rounds {
            self.round(out, round);
        }
        out.push_str(
            "<footer>Written by <code>tieline report</code>: a self-contained file (inline CSS and SVG, no script, no external resource). \
             Every figure comes from the blocks; the verdict from re-running the audit of spec 1.9 against the genesis.</footer>\n\
             </main>\n</body>\n</html>\n",
        );
    }

    fn verdict(&self, out: &mut String, chain: &AuditedChain) {
        match &chain.verdict {
            Verdict::Passed(s) => {
                put!(
                    out,
                    "<div class=\"verdict ok\" id=\"verdict\"><strong>Audit passed.</strong> All {} blocks verified against the genesis: \
                     {} trades, {} bids, {} signatures verified, {} fault skips, {} negotiation revisions. \
                     Head block <code>{}</code>.</div>\n",
                    s.blocks,
                    s.trades,
                    s.bids,
                    s.signatures,
                    s.fault_skips,
                    s.revisions,
                    s.head.to_hex()
                );
            }
            Verdict::Failed {
                error,
                verified_blocks,
                verified_signatures,
            } => {
                let hash = chain
                    .rounds
                    .get(error.height.saturating_sub(1) as usize)
                    .and_then(|r| r.block.as_ref().ok())
                    .map_or_else(
                        || "the block does not decode".to_string(),
                        |b| format!("block <code>{}</code>", b.digest().to_hex()),
                    );
                put!(
                    out,
                    "<div class=\"verdict bad\" id=\"verdict\"><strong>AUDIT FAILED at height {h}</strong> \
                     (<a href=\"#height-{h}\">round {h}</a>, {hash}): {reason}.<br>\
                     Blocks verified before it: {verified_blocks} ({verified_signatures} signatures). \
                     Rounds from height {h} on are shown as far as they decode but are <strong>unverified</strong>: do not rely on them.</div>\n",
                    h = error.height,
                    reason = Esc(&error.reason),
                );
            }
        }
    }

    fn checks(&self, out: &mut String) {
        out.push_str(
            "<h2 id=\"checks\">What the audit checked</h2>\n<p class=\"note\">Each block is checked in order from height 1 with nothing but the genesis \
             (<code>ChainAuditor</code>, spec 1.9), re-running its clearing. The checks, by spec id:</p>\n<ul class=\"checks\">\n",
        );
        for (id, text) in CHECKS {
            put!(out, "<li><strong>{id}</strong>: {}</li>\n", Esc(text));
        }
        out.push_str("</ul>\n");
    }

    fn genesis_summary(&self, out: &mut String) {
        let g = self.g;
        let c = &g.clearing;
        let kind = match g.fault_model.kind {
            FaultKind::Crash => "crash",
            FaultKind::Byzantine => "byzantine",
        };
        out.push_str("<h2 id=\"genesis\">The consortium (genesis)</h2>\n<table class=\"kv\">\n");
        put!(
            out,
            "<tr><th>Chain name</th><td>{}</td></tr>\n<tr><th>Chain id</th><td><code>{}</code></td></tr>\n",
            Esc(&g.chain_name),
            g.chain_id().to_hex()
        );
        put!(
            out,
            "<tr><th>Clearing rule</th><td>{}; price tick {}, floor {}, cap {} per MWh</td></tr>\n",
            c.rule.name(),
            c.price_tick,
            c.price_floor,
            c.price_cap
        );
        put!(
            out,
            "<tr><th>Fault model</th><td>{kind}, f = {}: {} members, quorum {}</td></tr>\n",
            g.fault_model.f,
            g.n(),
            g.quorum()
        );
        put!(
            out,
            "<tr><th>Rotation</th><td>each primary serves {} consecutive height(s); at most {} negotiation revisions before the fallback</td></tr>\n",
            g.rotation_period,
            g.max_revisions
        );
        put!(
            out,
            "<tr><th>Participants</th><td>{} admitted</td></tr>\n</table>\n",
            g.participants.len()
        );
        out.push_str(
            "<h3>Members (management nodes, in rotation order)</h3>\n<table>\n<tr><th>Node</th><th>Name</th><th>Area</th><th>Participants homed</th><th>Address</th><th>Public key</th></tr>\n",
        );
        for m in &g.members {
            let homed = g.participants.iter().filter(|p| p.home == m.id).count();
            put!(
                out,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{homed}</td><td><code>{}</code></td><td><code>{}</code></td></tr>\n",
                m.id,
                Esc(&m.name),
                Esc(self.area_name(m.area)),
                Esc(&m.address),
                m.public_key.to_hex()
            );
        }
        out.push_str("</table>\n");
        if !g.tie_lines.is_empty() {
            out.push_str(
                "<h3>Tie lines</h3>\n<table>\n<tr><th>Line</th><th>From</th><th>To</th><th>Capacity forward (MWh)</th><th>Capacity backward (MWh)</th></tr>\n",
            );
            for t in &g.tie_lines {
                put!(
                    out,
                    "<tr><td>L{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                    t.id,
                    Esc(self.area_name(t.from)),
                    Esc(self.area_name(t.to)),
                    t.capacity_forward,
                    t.capacity_backward
                );
            }
            out.push_str("</table>\n");
        }
    }

    fn contents(&self, out: &mut String, chain: &AuditedChain) {
        out.push_str(
            "<h2 id=\"contents\">Contents</h2>\n<nav>\n<p><a href=\"#verdict\">Verdict</a> &middot; <a href=\"#checks\">Checks</a> &middot; \
             <a href=\"#genesis\">Consortium</a> &middot; <a href=\"#prices\">Price chart</a></p>\n",
        );
        if chain.rounds.is_empty() {
            out.push_str("</nav>\n");
            return;
        }
        out.push_str(
            "<table>\n<tr><th>Round</th><th>Audit</th><th>Primary</th><th>View</th><th>Revision</th><th>Bids</th><th>Trades</th><th>Block hash</th></tr>\n",
        );
        for r in &chain.rounds {
            let h = r.position;
            put!(
                out,
                "<tr><td><a href=\"#height-{h}\">height {h}</a></td><td>{}</td>",
                status_badge(&r.status)
            );
            match &r.block {
                Ok(b) => {
                    let bids = b.body.process.bid_count();
                    put!(
                        out,
                        "<td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{bids}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>\n",
                        Esc(self.member_name(b.header.primary)),
                        b.header.view,
                        b.header.revision,
                        b.body.trades.len(),
                        &b.digest().to_hex()[..16]
                    );
                }
                Err(_) => out.push_str("<td colspan=\"6\">does not decode</td></tr>\n"),
            }
        }
        out.push_str("</table>\n</nav>\n");
    }

    /// One line per area over the rounds: the area's price per round (the mean over the
    /// round's delivery periods where it clears several).
    fn price_chart(&self, out: &mut String, chain: &AuditedChain) {
        let g = self.g;
        let mut series: BTreeMap<AreaId, Vec<ChartPoint>> = BTreeMap::new();
        let mut several_products = false;
        for r in &chain.rounds {
            let Ok(b) = &r.block else { continue };
            let mut by_area: BTreeMap<AreaId, Vec<Price>> = BTreeMap::new();
            let mut products = BTreeSet::new();
            for p in &b.body.process.clearing.outcome.area_prices {
                by_area.entry(p.area).or_default().push(p.price);
                products.insert(p.product);
            }
            several_products |= products.len() > 1;
            let unavailable = unavailable_areas(g, b.body.process.skip_certificate.as_ref());
            for (area, prices) in by_area {
                let mean = prices.iter().map(|p| p.to_f64()).sum::<f64>() / prices.len() as f64;
                let mut label = if prices.len() == 1 {
                    prices[0].to_string()
                } else {
                    format!("mean {mean:.4} over {} delivery periods", prices.len())
                };
                let sat_out = unavailable.contains(&area);
                if sat_out {
                    label.push_str(" (the area sat out this view)");
                }
                series.entry(area).or_default().push(ChartPoint {
                    height: r.position,
                    price: mean,
                    label,
                    sat_out,
                });
            }
        }
        out.push_str("<h2 id=\"prices\">Prices per area over the rounds</h2>\n");
        let (w, h) = (960.0_f64, 360.0_f64);
        let (left, right, top, bottom) = (70.0, 170.0, 20.0, 50.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        put!(
            out,
            "<svg class=\"price-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"price per area and round\">\n"
        );
        let points: Vec<f64> = series.values().flatten().map(|p| p.price).collect();
        let heights: Vec<u64> = series.values().flatten().map(|p| p.height).collect();
        if points.is_empty() {
            put!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#666\">No area prices on the chain (the {} rule publishes none, or no round cleared).</text>\n</svg>\n",
                w / 2.0,
                h / 2.0,
                g.clearing.rule.name()
            );
            return;
        }
        let (x0, x1) = (
            *heights.iter().min().unwrap_or(&1),
            *heights.iter().max().unwrap_or(&1),
        );
        let lo = points.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = points.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if hi - lo < 1e-9 {
            (lo - 1.0, hi + 1.0)
        } else {
            (lo, hi)
        };
        let step = nice_step((hi - lo) / 5.0);
        let (y0, y1) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let sx = |x: u64| {
            if x1 == x0 {
                left + pw / 2.0
            } else {
                left + (x - x0) as f64 / (x1 - x0) as f64 * pw
            }
        };
        let sy = |y: f64| top + (y1 - y) / (y1 - y0) * ph;
        // Unverified rounds are shaded.
        if let Verdict::Failed { error, .. } = &chain.verdict {
            if error.height <= x1 {
                let half = if x1 == x0 {
                    pw / 2.0
                } else {
                    pw / (x1 - x0) as f64 / 2.0
                };
                let from = (sx(error.height.max(x0)) - half).max(left);
                put!(
                    out,
                    "<rect x=\"{from:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{ph}\" fill=\"#fbe9c8\" opacity=\"0.7\"/>\n\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#8a5a00\">unverified from height {}</text>\n",
                    left + pw - from,
                    from + 4.0,
                    top + 14.0,
                    error.height
                );
            }
        }
        // Axes, grid and ticks.
        let mut y = y0;
        while y <= y1 + step / 2.0 {
            let py = sy(y);
            put!(
                out,
                "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#e6e8ec\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#444\">{}</text>\n",
                left + pw,
                left - 6.0,
                py + 4.0,
                axis_label(y, step)
            );
            y += step;
        }
        let span = x1 - x0;
        let every = (span / 12).max(1);
        let mut x = x0;
        while x <= x1 {
            let px = sx(x);
            put!(
                out,
                "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>\n\
                 <text x=\"{px:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">{x}</text>\n",
                top + ph,
                top + ph + 5.0,
                top + ph + 18.0
            );
            x += every;
        }
        put!(
            out,
            "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"#444\"/>\n\
             <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#222\">height (round)</text>\n\
             <text x=\"16\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#222\" transform=\"rotate(-90 16 {:.1})\">price (currency/MWh)</text>\n",
            top + ph,
            top + ph,
            left + pw,
            top + ph,
            left + pw / 2.0,
            h - 10.0,
            top + ph / 2.0,
            top + ph / 2.0
        );
        // One polyline per area, with a marker and a tooltip per point, and the legend.
        for (i, (area, pts)) in series.iter().enumerate() {
            let colour = self.color(*area);
            let name = self.area_name(*area);
            let path: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", sx(p.height), sy(p.price)))
                .collect();
            put!(
                out,
                "<polyline class=\"price-line\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
                path.join(" ")
            );
            for p in pts {
                put!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\" stroke=\"{colour}\" stroke-width=\"1.5\"><title>{}, height {}: {}</title></circle>\n",
                    sx(p.height),
                    sy(p.price),
                    if p.sat_out { "#fff" } else { colour },
                    Esc(&name),
                    p.height,
                    Esc(&p.label)
                );
            }
            let ly = top + 10.0 + 20.0 * i as f64;
            put!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#222\">{}</text>\n",
                left + pw + 16.0,
                ly - 4.0,
                left + pw + 36.0,
                ly + 2.0,
                Esc(&name)
            );
        }
        out.push_str("</svg>\n");
        if several_products {
            out.push_str("<p class=\"note\">Where a round clears several delivery periods the chart shows the mean of their prices; each round lists them all.</p>\n");
        }
        if series.values().flatten().any(|p| p.sat_out) {
            out.push_str("<p class=\"note\">A hollow point is an area that sat out the round's view after a fault skip: it traded nothing and its tie lines were closed.</p>\n");
        }
        // The same figures as a table.
        let rounds: BTreeSet<u64> = series.values().flatten().map(|p| p.height).collect();
        out.push_str("<details><summary>Prices as a table</summary>\n<table>\n<tr><th>Area</th>");
        for h in &rounds {
            put!(out, "<th><a href=\"#height-{h}\">{h}</a></th>");
        }
        out.push_str("</tr>\n");
        for (area, pts) in &series {
            put!(out, "<tr><td>{}</td>", Esc(self.area_name(*area)));
            for h in &rounds {
                match pts.iter().find(|p| p.height == *h) {
                    Some(p) => put!(out, "<td class=\"num\">{}</td>", Esc(&p.label)),
                    None => out.push_str("<td></td>"),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n</details>\n");
    }

    fn round(&self, out: &mut String, round: &Round) {
        let h = round.position;
        let class = match round.status {
            RoundStatus::Verified => "round",
            RoundStatus::Failed(_) => "round failed",
            RoundStatus::Unverified => "round unverified",
        };
        put!(
            out,
            "<section class=\"{class}\" id=\"height-{h}\">\n<h2>Round {h} {}</h2>\n",
            status_badge(&round.status)
        );
        match &round.status {
            RoundStatus::Verified => {}
            RoundStatus::Failed(reason) => put!(
                out,
                "<p class=\"warn\">The audit failed at this block: {}.</p>\n",
                Esc(reason)
            ),
            RoundStatus::Unverified => out.push_str(
                "<p class=\"warn\">Not verified: the audit failed at an earlier block. What follows is decoded from the bytes as given.</p>\n",
            ),
        }
        let b = match &round.block {
            Ok(b) => b,
            Err(e) => {
                put!(
                    out,
                    "<p>The bytes of this block do not decode as a canonical block: {}.</p>\n</section>\n",
                    Esc(e)
                );
                return;
            }
        };
        self.round_header(out, h, b);
        self.negotiation(out, b);
        self.prices_and_flows(out, h, b);
        self.signatures(out, b);
        self.details(out, b);
        out.push_str("</section>\n");
    }

    fn round_header(&self, out: &mut String, h: u64, b: &Block) {
        let g = self.g;
        let hd = &b.header;
        let p = &b.body.process;
        out.push_str("<table class=\"kv\">\n");
        put!(
            out,
            "<tr><th>Block hash</th><td><code>{}</code></td></tr>\n",
            b.digest().to_hex()
        );
        let previous = if hd.previous == g.chain_id() && h == 1 {
            " (the chain id: the first block)".to_string()
        } else if h > 1 {
            format!(" (<a href=\"#height-{}\">round {}</a>)", h - 1, h - 1)
        } else {
            String::new()
        };
        put!(
            out,
            "<tr><th>Previous hash</th><td><code>{}</code>{previous}</td></tr>\n",
            hd.previous.to_hex()
        );
        if hd.height != h {
            put!(
                out,
                "<tr><th>Header height</th><td class=\"warn\">{} (its place in the chain is {h})</td></tr>\n",
                hd.height
            );
        }
        put!(
            out,
            "<tr><th>Trades root / process digest</th><td><code>{}</code><br><code>{}</code></td></tr>\n",
            hd.trades_root.to_hex(),
            hd.process_hash.to_hex()
        );
        put!(
            out,
            "<tr><th>Built</th><td>{}</td></tr>\n",
            utc(hd.timestamp)
        );
        let area = g
            .member(hd.primary)
            .map(|m| self.area_name(m.area))
            .unwrap_or_default();
        put!(
            out,
            "<tr><th>Primary</th><td>{} of {}</td></tr>\n",
            Esc(self.member_name(hd.primary)),
            Esc(area)
        );
        let mut view = format!("{}", hd.view);
        if hd.view == 0 {
            view.push_str(" (no fault skip)");
        } else {
            let skipped: Vec<String> = p.skipped.iter().map(|n| self.member_name(*n)).collect();
            let _ = write!(
                view,
                " &mdash; <strong>fault skip</strong>: skipped primar{} {}",
                if skipped.len() == 1 { "y" } else { "ies" },
                Esc(skipped.join(", "))
            );
        }
        match &p.skip_certificate {
            Some(c) => {
                let voters: Vec<String> = c.voters().map(|n| self.member_name(n)).collect();
                let _ = write!(
                    view,
                    "; skip certificate for view {} present, votes from {}",
                    c.view,
                    Esc(voters.join(", "))
                );
                let locks: Vec<String> = c
                    .votes
                    .iter()
                    .filter_map(|v| v.body.lock.as_ref())
                    .map(|l| {
                        let signers: Vec<String> = l.signers().map(|n| n.to_string()).collect();
                        format!(
                            "endorsement certificate of view {} revision {} signed by nodes {}",
                            l.view,
                            l.revision,
                            signers.join(", ")
                        )
                    })
                    .collect();
                if !locks.is_empty() {
                    let _ = write!(view, "; reported locks: {}", Esc(locks.join("; ")));
                }
            }
            None if hd.view > 0 => {
                view.push_str("; <span class=\"warn\">no skip certificate</span>")
            }
            None => {}
        }
        put!(out, "<tr><th>View</th><td>{view}</td></tr>\n");
        put!(
            out,
            "<tr><th>Revision</th><td>{}{}</td></tr>\n",
            hd.revision,
            if hd.revision > g.max_revisions {
                " (beyond the revision bound: the fallback applied)"
            } else {
                ""
            }
        );
        let bids = p.bid_count();
        let homes: Vec<String> = p
            .batches
            .iter()
            .map(|x| format!("{} from node {}", x.body.bids.len(), x.body.home))
            .collect();
        put!(
            out,
            "<tr><th>Bids</th><td>{bids} in {} batches ({})</td></tr>\n",
            p.batches.len(),
            Esc(homes.join(", "))
        );
        let bought: Quantity = b
            .body
            .trades
            .iter()
            .filter(|t| t.side == Side::Buy)
            .map(|t| t.quantity)
            .sum();
        let sold: Quantity = b
            .body
            .trades
            .iter()
            .filter(|t| t.side == Side::Sell)
            .map(|t| t.quantity)
            .sum();
        put!(
            out,
            "<tr><th>Trades</th><td>{} trades: {sold} MWh sold, {bought} MWh bought</td></tr>\n",
            b.body.trades.len()
        );
        if !p.rejections.is_empty() {
            let mut by: BTreeMap<RejectionReason, usize> = BTreeMap::new();
            for r in &p.rejections {
                *by.entry(r.reason).or_default() += 1;
            }
            let text: Vec<String> = by
                .iter()
                .map(|(r, n)| format!("{n} {}", rejection_name(*r)))
                .collect();
            put!(
                out,
                "<tr><th>Rejected by rule</th><td>{}</td></tr>\n",
                Esc(text.join(", "))
            );
        }
        let o = &p.clearing.outcome;
        put!(
            out,
            "<tr><th>Welfare / congestion rent</th><td>{} / {}</td></tr>\n",
            o.welfare,
            o.congestion_rent
        );
        if !p.evidence.is_empty() {
            let who: Vec<String> = p
                .evidence
                .iter()
                .map(|e| self.member_name(e.offender()))
                .collect();
            put!(
                out,
                "<tr><th>Equivocation evidence</th><td class=\"warn\">{}</td></tr>\n",
                Esc(who.join(", "))
            );
        }
        out.push_str("</table>\n");
    }

    fn negotiation(&self, out: &mut String, b: &Block) {
        let g = self.g;
        let p = &b.body.process;
        let final_revision = b.header.revision;
        out.push_str("<h3>Negotiation</h3>\n<ol class=\"story\" start=\"0\">\n");
        for rev in 0..=final_revision {
            let mut items: Vec<String> = Vec::new();
            for o in p.objections.iter().filter(|o| o.body.revision == rev) {
                let who = Esc(self.member_name(o.body.objector));
                items.push(match &o.body.reason {
                    ObjectionReason::Security { cuts } => {
                        let labels: Vec<String> = cuts.iter().map(|c| c.label.to_string()).collect();
                        format!(
                            "{who} objected on <strong>grid security</strong> with {} cut{} (its constraint labels {})",
                            cuts.len(),
                            if cuts.len() == 1 { "" } else { "s" },
                            Esc(labels.join(", "))
                        )
                    }
                    ObjectionReason::MissingBatch { batch } => format!(
                        "{who} objected that its <strong>batch is missing</strong> or altered (batch <code>{}</code>)",
                        &batch.to_hex()[..16]
                    ),
                    ObjectionReason::Invalid { detail } => format!(
                        "{who} objected that the proposal is <strong>invalid</strong>: {}",
                        Esc(detail)
                    ),
                });
            }
            for a in &p.appeals {
                if matches!(a.resolution, AppealResolution::Upheld { revision } if revision == rev + 1)
                {
                    items.push(format!(
                        "the appeal of {} was upheld; the next revision corrects the result",
                        Esc(self.participant_name(a.appeal.body.participant))
                    ));
                }
            }
            let head = if rev == 0 {
                format!(
                    "Revision 0 proposed by {}",
                    Esc(self.member_name(b.header.primary))
                )
            } else if rev > g.max_revisions {
                format!(
                    "Revision {rev} (fallback: later-submitted bids cut until every area's check passes)"
                )
            } else {
                format!("Revision {rev} proposed with the cuts and corrections so far")
            };
            let tail = if rev == final_revision {
                " &mdash; <strong>endorsed and committed</strong>".to_string()
            } else if items.is_empty() {
                String::new()
            } else {
                ":".to_string()
            };
            put!(out, "<li>{head}{tail}");
            if !items.is_empty() {
                out.push_str("<ul>");
                for i in items {
                    put!(out, "<li>{i}</li>");
                }
                out.push_str("</ul>");
            }
            out.push_str("</li>\n");
        }
        out.push_str("</ol>\n");
        let cuts = &p.clearing.cuts;
        if !cuts.is_empty() {
            put!(
                out,
                "<p>{} cut{} honoured by the final outcome.</p>\n",
                cuts.len(),
                if cuts.len() == 1 { "" } else { "s" }
            );
        }
        let fallback = p
            .rejections
            .iter()
            .filter(|r| r.reason == RejectionReason::Fallback)
            .count();
        if fallback > 0 {
            put!(
                out,
                "<p class=\"warn\">The fallback cut {fallback} bid{}.</p>\n",
                if fallback == 1 { "" } else { "s" }
            );
        }
        if p.appeals.is_empty() {
            out.push_str("<p class=\"note\">No appeals.</p>\n");
        } else {
            out.push_str(
                "<h4>Appeals</h4>\n<table>\n<tr><th>Participant</th><th>Via</th><th>Claim</th><th>Resolution</th></tr>\n",
            );
            for a in &p.appeals {
                let claim = match &a.appeal.body.claim {
                    AppealClaim::Omitted { bid, receipt } => format!(
                        "omitted: bid <code>{}</code> receipted by node {} for height {} is not in the result",
                        &bid.body.id().to_hex()[..16],
                        receipt.body.home,
                        receipt.body.height
                    ),
                    AppealClaim::Misallocated { bid } => format!(
                        "misallocated: bid <code>{}</code> should have been accepted differently",
                        &bid.to_hex()[..16]
                    ),
                };
                put!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{claim}</td><td>{}</td></tr>\n",
                    Esc(self.participant_name(a.appeal.body.participant)),
                    Esc(self.member_name(a.via)),
                    Esc(resolution_text(a.resolution))
                );
            }
            out.push_str("</table>\n");
        }
    }

    fn prices_and_flows(&self, out: &mut String, h: u64, b: &Block) {
        let p = &b.body.process;
        let o = &p.clearing.outcome;
        let unavailable = unavailable_areas(self.g, p.skip_certificate.as_ref());
        out.push_str("<h3>Prices and tie-line flows</h3>\n");
        if !unavailable.is_empty() {
            let names: Vec<String> = unavailable.iter().map(|a| self.area_name(*a)).collect();
            put!(
                out,
                "<p class=\"note\">Sat out this view (their members are not in the skip certificate, so their tie lines are closed and their bids rejected): {}.</p>\n",
                Esc(names.join(", "))
            );
        }
        let mut products: BTreeSet<Product> = o.area_prices.iter().map(|p| p.product).collect();
        products.extend(o.flows.iter().map(|f| f.product));
        if products.is_empty() {
            out.push_str("<p class=\"note\">No area prices or flows in this round.</p>\n");
            out.push_str("<div class=\"diagram\">\n");
            self.flow_diagram(out, h, o, None, &unavailable);
            out.push_str("</div>\n");
            return;
        }
        for product in &products {
            put!(
                out,
                "<h4>{}</h4>\n<div class=\"diagram\">\n",
                Esc(product_label(product))
            );
            self.flow_diagram(out, h, o, Some(product), &unavailable);
            out.push_str("<div>\n<table>\n<tr><th>Area</th><th>Price (per MWh)</th></tr>\n");
            for p in o.area_prices.iter().filter(|p| p.product == *product) {
                put!(
                    out,
                    "<tr><td>{}{}</td><td class=\"num\">{}</td></tr>\n",
                    Esc(self.area_name(p.area)),
                    if unavailable.contains(&p.area) {
                        " (sat out)"
                    } else {
                        ""
                    },
                    p.price
                );
            }
            out.push_str("</table>\n");
            let flows: Vec<_> = o.flows.iter().filter(|f| f.product == *product).collect();
            if !flows.is_empty() {
                out.push_str(
                    "<table>\n<tr><th>Line</th><th>Direction</th><th>Flow (MWh)</th><th>Capacity (MWh)</th></tr>\n",
                );
                for f in flows {
                    let Some(t) = self.g.tie_line(f.tie_line) else {
                        put!(
                            out,
                            "<tr><td>L{}</td><td colspan=\"3\" class=\"warn\">not a tie line of the genesis</td></tr>\n",
                            f.tie_line
                        );
                        continue;
                    };
                    let line = LineState::of(t, f.flow, &unavailable);
                    let (from, to) = if f.flow.0 >= 0 {
                        (t.from, t.to)
                    } else {
                        (t.to, t.from)
                    };
                    put!(
                        out,
                        "<tr><td>L{}</td><td>{} &rarr; {}</td><td class=\"num\">{}</td><td class=\"num\">{}{}</td></tr>\n",
                        t.id,
                        Esc(self.area_name(from)),
                        Esc(self.area_name(to)),
                        Quantity(f.flow.0.abs()),
                        line.capacity,
                        line.note()
                    );
                }
                out.push_str("</table>\n");
            }
            out.push_str("</div>\n</div>\n");
        }
    }

    /// The areas on a circle, tie lines between them with their flow (arrow) and capacity,
    /// each area with its price for `product`.
    fn flow_diagram(
        &self,
        out: &mut String,
        h: u64,
        o: &ClearingOutcome,
        product: Option<&Product>,
        unavailable: &BTreeSet<AreaId>,
    ) {
        let g = self.g;
        let (w, hh) = (640.0_f64, 500.0_f64);
        let n = g.areas.len();
        let ring = if n <= 1 { 0.0 } else { 185.0 };
        let radius = if n > 8 { 30.0 } else { 54.0 };
        // The areas on a circle, first at the top, then centred in the drawing.
        let raw: Vec<(AreaId, (f64, f64))> = g
            .areas
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let angle = -std::f64::consts::FRAC_PI_2
                    + if n == 2 {
                        std::f64::consts::FRAC_PI_2
                    } else {
                        0.0
                    }
                    + std::f64::consts::TAU * i as f64 / n.max(1) as f64;
                (a.id, (ring * angle.cos(), ring * angle.sin()))
            })
            .collect();
        let (min_x, max_x, min_y, max_y) = raw.iter().fold(
            (
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ),
            |(a, b, c, d), (_, (x, y))| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
        );
        let (shift_x, shift_y) = (
            w / 2.0 - (min_x + max_x) / 2.0,
            (hh + 24.0) / 2.0 - (min_y + max_y) / 2.0,
        );
        let pos: BTreeMap<AreaId, (f64, f64)> = raw
            .into_iter()
            .map(|(a, (x, y))| (a, (x + shift_x, y + shift_y)))
            .collect();
        let price_of = |area: AreaId| {
            product.and_then(|p| {
                o.area_prices
                    .iter()
                    .find(|x| x.product == *p && x.area == area)
                    .map(|x| x.price)
            })
        };
        let flow_of = |t: &TieLine| {
            product.and_then(|p| {
                o.flows
                    .iter()
                    .find(|f| f.product == *p && f.tie_line == t.id)
                    .map(|f| f.flow)
            })
        };
        let title = match product {
            Some(p) => format!("Round {h}: {}", product_label(p)),
            None => format!("Round {h}"),
        };
        put!(
            out,
            "<svg class=\"flow-diagram\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hh}\" viewBox=\"0 0 {w} {hh}\" role=\"img\" aria-label=\"{}\">\n\
             <text x=\"10\" y=\"18\" font-size=\"12\" fill=\"#555\">{}</text>\n\
             <text x=\"10\" y=\"{:.0}\" font-size=\"10.5\" fill=\"#666\">Lk: flow / capacity in the flow's direction (MWh); arrows point where energy flows; red: congested</text>\n",
            Esc(format!("areas, prices and tie-line flows, {title}")),
            Esc(&title),
            hh - 8.0
        );
        // Net export of each area over the tie lines.
        let mut net: BTreeMap<AreaId, i64> = BTreeMap::new();
        // Lines grouped by the pair of areas they join, so parallel lines are drawn apart.
        let mut groups: BTreeMap<(AreaId, AreaId), Vec<&TieLine>> = BTreeMap::new();
        for t in &g.tie_lines {
            let key = if t.from <= t.to {
                (t.from, t.to)
            } else {
                (t.to, t.from)
            };
            groups.entry(key).or_default().push(t);
        }
        let max_cap = g
            .tie_lines
            .iter()
            .map(|t| t.capacity_forward.0.max(t.capacity_backward.0))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut labels = String::new();
        for ((a, b), lines) in &groups {
            let (Some(&(ax, ay)), Some(&(bx, by))) = (pos.get(a), pos.get(b)) else {
                continue;
            };
            let len = ((bx - ax).powi(2) + (by - ay).powi(2)).sqrt().max(1e-9);
            let (ux, uy) = ((bx - ax) / len, (by - ay) / len);
            let (px, py) = (-uy, ux);
            let m = lines.len() as f64;
            for (k, t) in lines.iter().enumerate() {
                let slot = k as f64 - (m - 1.0) / 2.0;
                let offset = slot * 20.0;
                // Endpoints on the circles' rims, from `t.from` to `t.to`.
                let (fx, fy, tx, ty) = if t.from == *a {
                    (ax, ay, bx, by)
                } else {
                    (bx, by, ax, ay)
                };
                let (vx, vy) = ((tx - fx) / len, (ty - fy) / len);
                let s = (
                    fx + vx * radius + px * offset,
                    fy + vy * radius + py * offset,
                );
                let e = (
                    tx - vx * radius + px * offset,
                    ty - vy * radius + py * offset,
                );
                let flow = flow_of(t);
                let f = flow.map_or(0, |q| q.0);
                *net.entry(t.from).or_default() += f;
                *net.entry(t.to).or_default() -= f;
                let line = LineState::of(t, Quantity(f), unavailable);
                let colour = if line.congested {
                    "#c62828"
                } else if f == 0 {
                    "#9aa1ad"
                } else {
                    "#37474f"
                };
                let width = 1.5 + 5.0 * (f.abs() as f64 / max_cap).min(1.0);
                let dash = if f == 0 {
                    " stroke-dasharray=\"5 4\""
                } else {
                    ""
                };
                let (from_name, to_name) = if f >= 0 {
                    (self.area_name(t.from), self.area_name(t.to))
                } else {
                    (self.area_name(t.to), self.area_name(t.from))
                };
                let (label, tooltip) = match flow {
                    Some(q) => (
                        format!("L{}: {} / {}", t.id, Quantity(q.0.abs()), line.capacity),
                        format!(
                            "tie line L{}: {} MWh from {from_name} to {to_name}, capacity {} MWh{}",
                            t.id,
                            Quantity(q.0.abs()),
                            line.capacity,
                            line.note()
                        ),
                    ),
                    None => (
                        format!("L{}: cap {}", t.id, t.capacity_forward),
                        format!(
                            "tie line L{}: no flow published; capacity {} MWh forward, {} MWh backward",
                            t.id, t.capacity_forward, t.capacity_backward
                        ),
                    ),
                };
                put!(
                    out,
                    "<line class=\"tie-line\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"{width:.1}\"{dash}><title>{}</title></line>\n",
                    s.0,
                    s.1,
                    e.0,
                    e.1,
                    Esc(&tooltip)
                );
                if f != 0 {
                    // The arrowhead at the receiving end.
                    let (hx, hy, dx, dy) = if f > 0 {
                        (e.0, e.1, vx, vy)
                    } else {
                        (s.0, s.1, -vx, -vy)
                    };
                    let size = 8.0 + width;
                    let (bx0, by0) = (hx - dx * size, hy - dy * size);
                    put!(
                        out,
                        "<polygon points=\"{hx:.1},{hy:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{colour}\"/>\n",
                        bx0 + px * size * 0.55,
                        by0 + py * size * 0.55,
                        bx0 - px * size * 0.55,
                        by0 - py * size * 0.55
                    );
                }
                // Each label sits on its line, staggered along it (from the pair's first area,
                // whatever the line's direction) so the labels of parallel lines part.
                let at = radius + (len - 2.0 * radius) * (0.5 + slot * 0.24);
                let (lx, ly) = (ax + ux * at + px * offset, ay + uy * at + py * offset);
                let chars = label.chars().count() as f64;
                put!(
                    labels,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"15\" rx=\"3\" fill=\"#fff\" fill-opacity=\"0.85\"/>\n",
                    lx - chars * 3.2 - 3.0,
                    ly - 7.0,
                    chars * 6.4 + 6.0
                );
                put!(
                    labels,
                    "<text class=\"tie-label\" x=\"{lx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{colour}\" stroke=\"#fff\" stroke-width=\"6\" stroke-linejoin=\"round\" paint-order=\"stroke\"><title>{}</title>{}</text>\n",
                    ly + 4.0,
                    Esc(&tooltip),
                    Esc(&label)
                );
            }
        }
        for a in &g.areas {
            let Some(&(x, y)) = pos.get(&a.id) else {
                continue;
            };
            let out_of_view = unavailable.contains(&a.id);
            let colour = if out_of_view {
                "#9aa1ad"
            } else {
                self.color(a.id)
            };
            let price = match price_of(a.id) {
                Some(p) => format!("{p} /MWh"),
                None => "no price".into(),
            };
            let third = if out_of_view {
                "sat out this view".to_string()
            } else {
                match net.get(&a.id).copied().unwrap_or(0) {
                    0 => "balanced".to_string(),
                    v if v > 0 => format!("exports {} MWh", Quantity(v)),
                    v => format!("imports {} MWh", Quantity(-v)),
                }
            };
            put!(
                out,
                "<g class=\"area\"><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{radius}\" fill=\"{colour}\" fill-opacity=\"0.14\" stroke=\"{colour}\" stroke-width=\"2\"{}/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"600\" text-anchor=\"middle\" fill=\"#1d2433\">{}</text>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">{}</text></g>\n",
                if out_of_view {
                    " stroke-dasharray=\"6 4\""
                } else {
                    ""
                },
                y - 10.0,
                Esc(&a.name),
                y + 7.0,
                Esc(price),
                y + 22.0,
                Esc(third)
            );
        }
        out.push_str(&labels);
        out.push_str("</svg>\n");
    }

    fn signatures(&self, out: &mut String, b: &Block) {
        let g = self.g;
        let p = &b.body.process;
        let qc = &b.certificate;
        let signers: BTreeSet<NodeId> = qc.signers().collect();
        let required: BTreeSet<NodeId> = b.body.required_signers(g).into_iter().collect();
        let touched: Vec<String> = b
            .body
            .touched_areas(g)
            .into_iter()
            .map(|a| self.area_name(a))
            .collect();
        put!(
            out,
            "<h3>Joint signatures</h3>\n<p>Commit certificate ({:?}) for round (view {}, revision {}) over block <code>{}</code>, signed by {} of {} members \
             (quorum {}). Touched areas, whose every member must sign (D12): {}.</p>\n",
            qc.kind,
            qc.view,
            qc.revision,
            &qc.block.to_hex()[..16],
            signers.len(),
            g.n(),
            g.quorum(),
            Esc(if touched.is_empty() {
                "none".to_string()
            } else {
                touched.join(", ")
            })
        );
        out.push_str(
            "<table>\n<tr><th>Member</th><th>Area</th><th>Signature required</th><th>Commit certificate</th><th>Signed batch</th><th>Objections signed</th></tr>\n",
        );
        for m in &g.members {
            let batch = p.batches.iter().find(|x| x.body.home == m.id);
            let objections = p
                .objections
                .iter()
                .filter(|o| o.body.objector == m.id)
                .count();
            put!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{objections}</td></tr>\n",
                Esc(self.member_name(m.id)),
                Esc(self.area_name(m.area)),
                if required.contains(&m.id) {
                    "yes (touched area)"
                } else {
                    "quorum only"
                },
                if signers.contains(&m.id) {
                    "<strong>signed</strong>"
                } else if required.contains(&m.id) {
                    "<span class=\"warn\">missing</span>"
                } else {
                    "&mdash;"
                },
                match batch {
                    Some(x) => format!("{} bids", x.body.bids.len()),
                    None => "&mdash;".into(),
                }
            );
        }
        out.push_str("</table>\n");
        let foreign: Vec<NodeId> = signers
            .iter()
            .copied()
            .filter(|s| g.member(*s).is_none())
            .collect();
        if !foreign.is_empty() {
            let text: Vec<String> = foreign.iter().map(|n| n.to_string()).collect();
            put!(
                out,
                "<p class=\"warn\">Signers that are not members: {}</p>\n",
                Esc(text.join(", "))
            );
        }
        out.push_str(
            "<p class=\"note\">The endorsement certificate that preceded the commit is not stored in the block: each signer of the commit \
             certificate cast its commit vote only after seeing an endorsement quorum with the same joint signatures (V9).</p>\n",
        );
    }

    fn details(&self, out: &mut String, b: &Block) {
        let p = &b.body.process;
        let cuts = &p.clearing.cuts;
        if !cuts.is_empty() {
            put!(
                out,
                "<details><summary>Cuts honoured ({})</summary>\n<table>\n<tr><th>#</th><th>Raised by</th><th>Label</th><th>Terms</th><th>Limit (MWh)</th><th>Shadow price</th></tr>\n",
                cuts.len()
            );
            for (i, c) in cuts.iter().enumerate() {
                let by = p
                    .objections
                    .iter()
                    .find(|o| matches!(&o.body.reason, ObjectionReason::Security { cuts } if cuts.contains(c)))
                    .map(|o| self.member_name(o.body.objector))
                    .unwrap_or_else(|| "no recorded objection".into());
                let bids = c
                    .terms
                    .iter()
                    .filter(|t| matches!(t.variable, CutVariable::Bid(_)))
                    .count();
                let lines: Vec<String> = c
                    .terms
                    .iter()
                    .filter_map(|t| match t.variable {
                        CutVariable::TieFlow(l) => Some(format!("L{l}")),
                        CutVariable::Bid(_) => None,
                    })
                    .collect();
                let terms = if lines.is_empty() {
                    format!("{bids} bids")
                } else {
                    format!("{bids} bids, tie lines {}", lines.join(", "))
                };
                let shadow = p
                    .clearing
                    .outcome
                    .cut_prices
                    .get(i)
                    .map_or_else(|| "&mdash;".to_string(), |x| x.to_string());
                put!(
                    out,
                    "<tr><td class=\"num\">{i}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{shadow}</td></tr>\n",
                    Esc(by),
                    c.label,
                    Esc(terms),
                    c.limit
                );
            }
            out.push_str("</table>\n</details>\n");
        }
        let trades = &b.body.trades;
        if !trades.is_empty() {
            put!(
                out,
                "<details><summary>Trades ({})</summary>\n<table>\n<tr><th>Participant</th><th>Side</th><th>Area</th><th>Quantity (MWh)</th><th>Price</th><th>Counterparty</th><th>Bid</th></tr>\n",
                trades.len()
            );
            for t in trades {
                put!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
                    Esc(self.participant_name(t.participant)),
                    side_name(t.side),
                    Esc(self.area_name(t.area)),
                    t.quantity,
                    t.price,
                    Esc(t.counterparty.map_or_else(
                        || "the coupled market".to_string(),
                        |c| self.participant_name(c)
                    )),
                    &t.bid.to_hex()[..16]
                );
            }
            out.push_str("</table>\n</details>\n");
        }
    }
}

/// One area's price in one round, as the chart draws it.
struct ChartPoint {
    height: u64,
    price: f64,
    label: String,
    sat_out: bool,
}

/// A tie line's state in a round: its capacity in the direction of its flow (zero where an
/// area at either end sat out the view) and whether the flow is at it.
struct LineState {
    capacity: Quantity,
    closed: bool,
    congested: bool,
}

impl LineState {
    fn of(t: &TieLine, flow: Quantity, unavailable: &BTreeSet<AreaId>) -> Self {
        let closed = unavailable.contains(&t.from) || unavailable.contains(&t.to);
        let capacity = if closed {
            Quantity::ZERO
        } else if flow.0 >= 0 {
            t.capacity_forward
        } else {
            t.capacity_backward
        };
        Self {
            capacity,
            closed,
            congested: flow.0 != 0 && flow.0.abs() >= capacity.0,
        }
    }

    fn note(&self) -> &'static str {
        if self.closed {
            " (closed: an area sat out)"
        } else if self.congested {
            " (congested)"
        } else {
            ""
        }
    }
}

fn status_badge(s: &RoundStatus) -> &'static str {
    match s {
        RoundStatus::Verified => "<span class=\"badge ok\">verified</span>",
        RoundStatus::Failed(_) => "<span class=\"badge bad\">AUDIT FAILED</span>",
        RoundStatus::Unverified => "<span class=\"badge unverified\">unverified</span>",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(utc(Timestamp(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(Timestamp(1_767_225_600_000)), "2026-01-01 00:00:00 UTC");
        assert_eq!(
            utc(Timestamp(951_782_400_123)),
            "2000-02-29 00:00:00.123 UTC"
        );
    }

    #[test]
    fn names_carry_their_eic_where_the_genesis_gives_one() {
        let mut g = tieline_core::sample::SampleConsortium::new(4, 1).genesis;
        g.areas[0].eic = Some("10YBE----------2".parse().unwrap());
        g.members[1].eic = Some("10X1001A1001A450".parse().unwrap());
        let r = Renderer::new(&g);
        assert_eq!(r.area_name(AreaId(1)), "Area 1 [EIC 10YBE----------2]");
        assert_eq!(r.area_name(AreaId(2)), "Area 2");
        assert_eq!(
            r.member_name(NodeId(2)),
            "Exchange 2 (node 2) [EIC 10X1001A1001A450]"
        );
        assert_eq!(
            r.participant_name(ParticipantId(1000)),
            "participant-1000 (#1000)"
        );
    }

    /// A participant admitted on chain is named in the report like the genesis's, by the name
    /// its admission gave.
    #[test]
    fn a_participant_admitted_on_chain_is_named() {
        use std::sync::Arc;
        use tieline_core::consensus::sim::Cluster;
        use tieline_core::consensus::{NoGridModel, Reply, SecurityCheck};
        use tieline_core::crypto::{Ed25519Signer, Signed, Signer};
        use tieline_core::encoding::Tagged;
        use tieline_core::market::{Bid, BidStep, Side};
        use tieline_core::registry::{Party, RegistryChange, SignedChange};
        let s = tieline_core::sample::SampleConsortium::new(3, 2);
        let checks = (0..3)
            .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
            .collect();
        let mut c = Cluster::from_sample(&s, checks);
        c.start();
        let key = Ed25519Signer::from_seed([77; 32]);
        let newcomer = Participant {
            id: ParticipantId(100),
            name: "Newcomer Energy".into(),
            home: NodeId(1),
            area: AreaId(1),
            public_key: key.public_key(),
            eic: None,
        };
        let mut admit = SignedChange::new(s.genesis.chain_id(), RegistryChange::Admit(newcomer));
        admit.sign(Party::Member(NodeId(1)), &s.members[0]);
        assert!(matches!(
            c.submit_change(0, admit),
            Some(Reply::ChangeAccepted { .. })
        ));
        let decided =
            |h: usize| move |c: &Cluster| c.nodes.iter().all(|n| n.store.blocks.len() >= h);
        assert!(c.run_until(100_000, decided(1)));
        let step = |p: i64| BidStep {
            price: Price(p * Price::SCALE),
            quantity: Quantity(5 * Quantity::SCALE),
        };
        let sell = Signed::sign(
            Bid {
                chain_id: s.genesis.chain_id(),
                participant: ParticipantId(100),
                area: AreaId(1),
                bus: None,
                side: Side::Sell,
                product: tieline_core::sample::sample_product(2),
                steps: vec![step(20)],
                nonce: 1,
                timestamp: Timestamp(1_767_225_700_000),
            },
            &key,
        );
        assert!(matches!(c.submit(sell), Some(Reply::Receipt(_))));
        let buy = s.bid_with(1, Side::Buy, vec![step(60)], 2, 7);
        assert!(matches!(c.submit(buy), Some(Reply::Receipt(_))));
        assert!(c.run_until(100_000, decided(2)));
        let encoded: Vec<Vec<u8>> = c
            .longest_chain()
            .iter()
            .map(|b| b.to_canonical_bytes())
            .collect();
        let audited = audit(&s.genesis, &encoded);
        assert!(audited.passed());
        assert!(audited.admitted.contains_key(&ParticipantId(100)));
        let html = render_audited(&s.genesis, &audited);
        assert!(html.contains("Newcomer Energy (#100)"));
        assert!(!html.contains("participant #100 (not admitted)"));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(1.5), 2.0);
    }
}
