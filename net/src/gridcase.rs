//! `tieline grid`: any MATPOWER case as a consortium, one member per area (or zone), each
//! checking its own area's grid privately, negotiated once through the real consensus in
//! memory; what the command prints, and the files it writes for real nodes.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use tieline_core::clearing::{Cleared, ClearingInput, Cut};
use tieline_core::consensus::{Message, SecurityCheck, compact};
use tieline_core::encoding::Tagged;
use tieline_core::grid::{AreaModel, Case, GridConsortium, GridConsortiumOptions, SplitColumn};
use tieline_core::market::Side;
use tieline_core::units::Quantity;

/// Most simulated events one negotiation may take.
pub const MAX_EVENTS: usize = 2_000_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct GridOptions {
    /// Which bus column makes the members.
    pub split: SplitColumn,
    /// Tie-line capacities, percent of their ratings.
    pub tie_rating_percent: u32,
    /// Ratings of the lines inside the areas, percent of the case's.
    pub line_rating_percent: u32,
    /// Chord segments per quadratic cost.
    pub polynomial_segments: u32,
    /// Negotiation revisions before the fallback (the genesis's `max_revisions`).
    pub max_revisions: u32,
}

/// One member's area, as the command reports it (sizes only: the model stays private).
#[derive(Clone, Debug)]
pub struct MemberSummary {
    /// The member's name.
    pub name: String,
    /// Buses of its area.
    pub buses: usize,
    /// In-service branches inside the area.
    pub branches: usize,
    /// Generators in the area file.
    pub generators: usize,
    /// Connected components of the area's own network.
    pub components: usize,
    /// Participants homed at the member.
    pub participants: usize,
    /// Security checks it ran.
    pub checks: u64,
    /// Total time of its checks, seconds.
    pub check_seconds: f64,
}

/// What one negotiation of a case gave.
#[derive(Clone, Debug)]
pub struct GridReport {
    /// The members.
    pub members: Vec<MemberSummary>,
    /// Tie lines.
    pub tie_lines: usize,
    /// Bids (one per participant).
    pub bids: usize,
    /// The committed block's view (above 0 only after fault skips).
    pub view: u32,
    /// The committed block's revision.
    pub revisions: u32,
    /// Objections recorded in the block.
    pub objections: usize,
    /// Cuts the committed outcome honours.
    pub cuts: usize,
    /// The case's generation cost of the committed dispatch, currency per hour.
    pub cost: f64,
    /// Demand bid, MWh.
    pub demand_mwh: f64,
    /// Demand served, MWh.
    pub served_mwh: f64,
    /// Bids rejected by rule (for instance by the fallback), by reason.
    pub rejections: std::collections::BTreeMap<String, usize>,
    /// Wall time of the negotiation, seconds (every member's work on this machine's cores).
    pub seconds: f64,
    /// The negotiation's compute-only critical path, seconds: its length if each member ran on
    /// its own machine, network round trips aside (`Cluster::critical_path`).
    pub critical_path_seconds: f64,
    /// Wall time to build the consortium (split, offers, genesis), seconds.
    pub setup_seconds: f64,
    /// The committed block's hash.
    pub block: String,
    /// The decided block as a member sends it, a compact frame (spec 1.3), bytes.
    pub frame_bytes: usize,
    /// The same message encoded whole, bytes.
    pub whole_bytes: usize,
}

impl GridReport {
    /// The longest single area check, seconds (each member's mean over its checks, the
    /// largest).
    pub fn slowest_check_seconds(&self) -> f64 {
        self.members
            .iter()
            .filter(|m| m.checks > 0)
            .map(|m| m.check_seconds / m.checks as f64)
            .fold(0.0, f64::max)
    }

    /// The report as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "members": self.members.iter().map(|m| json!({
                "name": m.name, "buses": m.buses, "branches": m.branches,
                "generators": m.generators, "components": m.components,
                "participants": m.participants, "checks": m.checks,
                "check_seconds": m.check_seconds,
            })).collect::<Vec<_>>(),
            "tie_lines": self.tie_lines,
            "bids": self.bids,
            "view": self.view,
            "revisions": self.revisions,
            "objections": self.objections,
            "cuts": self.cuts,
            "cost": self.cost,
            "demand_mwh": self.demand_mwh,
            "served_mwh": self.served_mwh,
            "rejections": self.rejections,
            "seconds": self.seconds,
            "critical_path_seconds": self.critical_path_seconds,
            "setup_seconds": self.setup_seconds,
            "slowest_check_seconds": self.slowest_check_seconds(),
            "block": self.block,
            "frame_bytes": self.frame_bytes,
            "whole_bytes": self.whole_bytes,
        })
    }

    /// The report as text.
    pub fn print(&self) {
        println!(
            "{} members, {} tie lines, {} bids",
            self.members.len(),
            self.tie_lines,
            self.bids
        );
        for m in &self.members {
            println!(
                "  {:<22} {:>5} buses {:>5} branches {:>4} generators {:>3} island(s) {:>5} participants; {} checks, {:.2} ms each",
                m.name,
                m.buses,
                m.branches,
                m.generators,
                m.components,
                m.participants,
                m.checks,
                if m.checks > 0 {
                    m.check_seconds * 1e3 / m.checks as f64
                } else {
                    0.0
                }
            );
        }
        println!(
            "negotiated: view {}, revision {}, {} objection(s), {} cut(s); generation cost {:.4} per hour; block {}",
            self.view,
            self.revisions,
            self.objections,
            self.cuts,
            self.cost,
            &self.block[..16]
        );
        println!(
            "demand served: {:.3} of {:.3} MWh; bids rejected by rule: {:?}",
            self.served_mwh, self.demand_mwh, self.rejections
        );
        println!(
            "decided block: {} bytes as a compact frame ({} encoded whole)",
            self.frame_bytes, self.whole_bytes
        );
        println!(
            "wall time: {:.3} s negotiation (critical path {:.3} s with a machine per member), {:.3} s to build the consortium",
            self.seconds, self.critical_path_seconds, self.setup_seconds
        );
    }
}

/// A member's check that counts its calls and time (the command's adapter; the check itself
/// is the core's).
#[derive(Debug)]
struct Timed {
    inner: AreaModel,
    calls: AtomicU64,
    nanos: AtomicU64,
}

impl SecurityCheck for Timed {
    fn check(&self, input: &ClearingInput<'_>, cleared: &Cleared) -> Vec<Cut> {
        let start = Instant::now();
        let cuts = self.inner.check(input, cleared);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        cuts
    }
}

/// The consortium of `text` (a MATPOWER case), and the time it took to make it.
pub fn consortium(text: &str, options: &GridOptions) -> Result<(GridConsortium, f64)> {
    let start = Instant::now();
    let c = GridConsortium::from_case(
        text,
        &GridConsortiumOptions {
            chain_name: "tieline-grid".into(),
            split: options.split,
            line_rating_percent: options.line_rating_percent,
            polynomial_segments: options.polynomial_segments,
            max_revisions: options.max_revisions,
            ..GridConsortiumOptions::rts_gmlc(options.tie_rating_percent)
        },
    )?;
    Ok((c, start.elapsed().as_secs_f64()))
}

/// Negotiates one round of `c` in memory and reports it.
pub fn negotiate(c: &GridConsortium, setup_seconds: f64) -> Result<GridReport> {
    let models = c.area_models()?;
    let timed: Vec<Arc<Timed>> = models
        .into_iter()
        .map(|inner| {
            Arc::new(Timed {
                inner,
                calls: AtomicU64::new(0),
                nanos: AtomicU64::new(0),
            })
        })
        .collect();
    let checks: Vec<Arc<dyn SecurityCheck>> = timed
        .iter()
        .map(|t| t.clone() as Arc<dyn SecurityCheck>)
        .collect();
    let start = Instant::now();
    let (block, critical_path) = c.negotiate_timed(checks, MAX_EVENTS)?;
    let seconds = start.elapsed().as_secs_f64();
    let members = c
        .genesis
        .members
        .iter()
        .zip(&c.area_files)
        .zip(&timed)
        .map(|((m, f), t)| {
            let case = Case::parse(&f.text).ok();
            MemberSummary {
                name: m.name.clone(),
                buses: case.as_ref().map_or(0, |c| c.buses.len()),
                branches: case
                    .as_ref()
                    .map_or(0, |c| c.branches.iter().filter(|b| b.in_service).count()),
                generators: case.as_ref().map_or(0, |c| c.generators.len()),
                components: t.inner.components(),
                participants: c
                    .genesis
                    .participants
                    .iter()
                    .filter(|p| p.home == m.id)
                    .count(),
                checks: t.calls.load(Ordering::Relaxed),
                check_seconds: t.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
            }
        })
        .collect();
    let objections = &block.body.process.objections;
    let decided = Message::Decided(Box::new(block.clone()));
    let (frame_bytes, whole_bytes) = (
        compact::encode(&decided).len(),
        decided.to_canonical_bytes().len(),
    );
    let buys: std::collections::BTreeMap<_, _> = block
        .body
        .process
        .batches
        .iter()
        .flat_map(|b| b.body.bids.iter())
        .filter(|sb| sb.body.side == Side::Buy)
        .map(|sb| {
            (
                sb.body.id(),
                sb.body.steps.iter().map(|s| s.quantity.0).sum::<i64>(),
            )
        })
        .collect();
    let served: i64 = block
        .body
        .process
        .clearing
        .outcome
        .awards
        .iter()
        .filter(|a| buys.contains_key(&a.bid))
        .map(|a| a.quantity.0)
        .sum();
    let mut rejections = std::collections::BTreeMap::new();
    for r in &block.body.process.rejections {
        *rejections.entry(format!("{:?}", r.reason)).or_insert(0) += 1;
    }
    Ok(GridReport {
        members,
        tie_lines: c.genesis.tie_lines.len(),
        bids: c.genesis.participants.len(),
        view: block.header.view,
        revisions: block.header.revision,
        objections: objections.len(),
        cuts: block.body.process.clearing.cuts.len(),
        cost: c.generation_cost(&block),
        demand_mwh: buys.values().sum::<i64>() as f64 / Quantity::SCALE as f64,
        served_mwh: served as f64 / Quantity::SCALE as f64,
        rejections,
        seconds,
        critical_path_seconds: critical_path.as_secs_f64(),
        setup_seconds,
        block: block.digest().to_hex(),
        frame_bytes,
        whole_bytes,
    })
}

/// Writes what real nodes need: the genesis, each member's private area file and key (the
/// public sample keys: a demo, never a real consortium), and every participant's offer
/// (`offers.csv`, what the centralised reference reads). Refuses to overwrite a genesis.
pub fn write_out(c: &GridConsortium, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let genesis = dir.join("genesis.toml");
    if genesis.exists() {
        anyhow::bail!("{} exists: not overwriting it", genesis.display());
    }
    fs::write(&genesis, c.genesis.to_toml())
        .with_context(|| format!("cannot write {}", genesis.display()))?;
    for (k, (f, signer)) in c.area_files.iter().zip(&c.members).enumerate() {
        fs::write(dir.join(&f.file_name), &f.text)
            .with_context(|| format!("cannot write {}", f.file_name))?;
        crate::keyfile::write(&dir.join(format!("member-{}.key", k + 1)), signer)
            .with_context(|| format!("cannot write member {}'s key", k + 1))?;
    }
    fs::write(dir.join("offers.csv"), c.offers_csv()).context("cannot write offers.csv")?;
    Ok(())
}
