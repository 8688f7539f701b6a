//! Negotiation with private grid security checks on the three-area RTS-GMLC consortium (spec
//! 3.8): revisions, cuts and wall time until every member has committed the block, through the
//! real consensus in the in-memory cluster, with tie lines at 100%, 50% and 20% of their
//! ratings (and a stressed grid: tie lines at 20%, lines inside the areas at 70%). The
//! negotiated generation cost is compared with the centralised DC optimal power flow of
//! `core/tests/fixtures/rts_gmlc/reference.toml`.
//!
//! `cargo bench -p tieline-core --bench grid` (release). Repetitions with `GRID_RUNS`
//! (default 5); the median wall time is printed.

use std::time::{Duration, Instant};

use tieline_core::clearing::{Cleared, ClearingInput};
use tieline_core::consensus::SecurityCheck;
use tieline_core::consensus::sim::Cluster;
use tieline_core::grid::{GridConsortium, GridConsortiumOptions};

const RTS_GMLC: &str = include_str!("../../data/rts-gmlc/case_RTS_GMLC.m");
const REFERENCE: &str = include_str!("../tests/fixtures/rts_gmlc/reference.toml");

fn reference(tie: u32, lines: u32) -> f64 {
    let doc: toml::Value = toml::from_str(REFERENCE).expect("the fixture is TOML");
    doc["transport"]
        .as_array()
        .expect("transport references")
        .iter()
        .find(|t| {
            t["tie_rating_percent"].as_integer() == Some(i64::from(tie))
                && t["line_rating_percent"].as_integer() == Some(i64::from(lines))
        })
        .and_then(|t| t["total_cost"].as_float())
        .expect("a reference for the scenario")
}

/// One negotiation of height 1: (wall time from the first bid to the last member's commit,
/// the committed block).
fn negotiate(c: &GridConsortium) -> (Duration, tieline_core::block::Block) {
    let checks = c.security_checks().expect("the area files are valid");
    let bids = c.bids(1);
    let started = Instant::now();
    let mut cluster = Cluster::with_keys(&c.genesis, &c.members, checks);
    cluster.start();
    for b in bids {
        cluster.submit(b);
    }
    let done = cluster.run_until(1_000_000, |cl| {
        cl.nodes.iter().all(|n| !n.store.blocks.is_empty())
    });
    let elapsed = started.elapsed();
    assert!(done, "the negotiation did not finish");
    (elapsed, cluster.nodes[0].store.blocks[0].clone())
}

fn main() {
    let runs: usize = std::env::var("GRID_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!(
        "RTS-GMLC, 3 members, 144 bids, zonal coupling with private security checks; median of {runs} runs"
    );
    println!(
        "{:>5} {:>6} {:>9} {:>10} {:>5} {:>16} {:>16} {:>9} {:>10} {:>12}",
        "ties",
        "lines",
        "revision",
        "objections",
        "cuts",
        "negotiated cost",
        "centralised cost",
        "rel. gap",
        "wall time",
        "one check"
    );
    for (tie, lines) in [(100, 100), (50, 100), (20, 100), (20, 70)] {
        let c = GridConsortium::from_case(
            RTS_GMLC,
            &GridConsortiumOptions {
                line_rating_percent: lines,
                ..GridConsortiumOptions::rts_gmlc(tie)
            },
        )
        .expect("the shipped case makes a consortium");
        let mut times = Vec::with_capacity(runs);
        let mut block = None;
        for _ in 0..runs {
            let (t, b) = negotiate(&c);
            times.push(t);
            block = Some(b);
        }
        times.sort_unstable();
        let b = block.expect("at least one run");
        // The time of one member's security check on the committed outcome.
        let models = c.area_models().expect("the area files are valid");
        let bids: Vec<_> = b
            .body
            .process
            .batches
            .iter()
            .flat_map(|x| x.body.bids.iter())
            .map(|sb| (sb.body.id(), &sb.body))
            .collect();
        let received = b
            .body
            .process
            .batches
            .iter()
            .flat_map(|x| x.body.received.iter().copied())
            .collect();
        let input = ClearingInput::new(
            &c.genesis,
            bids,
            received,
            &b.body.process.clearing.cuts,
            &Default::default(),
        );
        let cleared = Cleared {
            outcome: b.body.process.clearing.outcome.clone(),
            trades: b.body.trades.clone(),
        };
        let reps = 200;
        let t = Instant::now();
        for _ in 0..reps {
            for m in &models {
                std::hint::black_box(m.check(&input, &cleared));
            }
        }
        let check = t.elapsed() / (reps * models.len() as u32);
        let cost = c.generation_cost(&b);
        let central = reference(tie, lines);
        println!(
            "{:>4}% {:>5}% {:>9} {:>10} {:>5} {:>16.4} {:>16.4} {:>9.1e} {:>10.1?} {:>12.1?}",
            tie,
            lines,
            b.header.revision,
            b.body.process.objections.len(),
            b.body.process.clearing.cuts.len(),
            cost,
            central,
            (cost - central).abs() / central,
            times[times.len() / 2],
            check
        );
    }
}
