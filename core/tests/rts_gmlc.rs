//! The three-area RTS-GMLC consortium (spec 3.8, C20-C25): private area models, negotiation
//! with their cuts through the real consensus, and the centralised DC optimal power flow it
//! must reach.

mod grid_common;

use std::sync::Arc;

use grid_common::*;
use tieline_core::block::RejectionReason;
use tieline_core::clearing::{COEFFICIENT_SCALE, CutVariable};
use tieline_core::consensus::SecurityCheck;
use tieline_core::grid::{AreaModel, GridConsortiumOptions, OfferSource};
use tieline_core::market::Side;
use tieline_core::units::{AreaId, NodeId};

const SHIPPED_GENESIS: &str = include_str!("../../data/rts-gmlc/genesis.toml");
const SHIPPED_OFFERS: &str = include_str!("../../data/rts-gmlc/offers.csv");
const SHIPPED_AREAS: [&str; 3] = [
    include_str!("../../data/rts-gmlc/area-1.m"),
    include_str!("../../data/rts-gmlc/area-2.m"),
    include_str!("../../data/rts-gmlc/area-3.m"),
];

#[test]
fn rts_gmlc_data_files_are_regenerated_exactly() {
    let c = rts(100);
    assert_eq!(c.genesis.to_toml(), SHIPPED_GENESIS, "genesis.toml");
    assert_eq!(c.offers_csv(), SHIPPED_OFFERS, "offers.csv");
    assert_eq!(c.area_files.len(), 3);
    for (f, shipped) in c.area_files.iter().zip(SHIPPED_AREAS) {
        assert_eq!(f.text, shipped, "{}", f.file_name);
    }
    // The shipped files are what a node loads from its configuration.
    let genesis = tieline_core::genesis::Genesis::from_toml(SHIPPED_GENESIS).unwrap();
    assert_eq!(genesis, c.genesis);
    for (k, text) in SHIPPED_AREAS.iter().enumerate() {
        let area = genesis.members[k].area;
        assert_eq!(
            AreaModel::from_matpower(text, area, &genesis)
                .unwrap()
                .area(),
            area
        );
    }
}

#[test]
fn rts_gmlc_splits_into_three_areas_with_six_tie_lines() {
    let c = rts(100);
    let g = &c.genesis;
    assert_eq!(
        (g.areas.len(), g.members.len(), g.tie_lines.len()),
        (3, 3, 6)
    );
    let mut summary = Vec::new();
    for f in &c.area_files {
        let case = tieline_core::grid::Case::parse(&f.text).unwrap();
        let a = u32::from(f.area.0);
        let gens = c
            .offers
            .iter()
            .filter(|o| o.area == a && matches!(o.source, OfferSource::Generator(_)))
            .count();
        let loads = c
            .offers
            .iter()
            .filter(|o| o.area == a && matches!(o.source, OfferSource::Load(_)))
            .count();
        let ties = g
            .tie_lines
            .iter()
            .filter(|t| t.from == f.area || t.to == f.area)
            .count();
        let rated = case.branches.iter().filter(|b| b.rate_a > 0.0).count();
        summary.push((case.buses.len(), rated, ties, gens, loads));
        println!(
            "area {a}: {} buses, {rated} rated lines, {ties} tie lines, {gens} generator offers, {loads} demand bids",
            case.buses.len()
        );
    }
    assert_eq!(
        summary,
        vec![
            (24, 38, 5, 30, 17),
            (24, 38, 4, 33, 17),
            (25, 39, 3, 30, 17)
        ]
    );
    // Every demand bids at the cap; every generator's minimum output runs at the floor.
    for o in &c.offers {
        match o.side {
            Side::Buy => assert_eq!(o.steps[0].price, g.clearing.price_cap),
            Side::Sell if o.must_run.0 > 0 => {
                assert_eq!(o.steps[0].price, g.clearing.price_floor);
                assert!(o.steps.windows(2).all(|w| w[0].price < w[1].price));
            }
            Side::Sell => {}
        }
    }
    // Total demand of the case, 8550 MW, for one hour.
    let demand: i64 = c
        .offers
        .iter()
        .filter(|o| o.side == Side::Buy)
        .map(|o| o.steps[0].quantity.0)
        .sum();
    assert_eq!(demand, 8_550_000);
}

/// C23, C21, C22 with tie lines at `percent` and the lines inside the areas at `lines` percent
/// of their ratings: the negotiated cost equals the centralised optimum within 1e-6, every cut
/// holds at the centralised optimum, and no line is overloaded. Returns the revision.
/// Returns the committed revision and the members whose objections the block records.
fn validate(percent: u32, lines: u32) -> (u32, std::collections::BTreeSet<NodeId>) {
    let c = rts_with(GridConsortiumOptions {
        line_rating_percent: lines,
        ..GridConsortiumOptions::rts_gmlc(percent)
    });
    let started = std::time::Instant::now();
    let n = negotiate(&c, c.security_checks().unwrap());
    let b = &n.block;
    let reference = reference(percent, lines);
    let cost = c.generation_cost(b);
    let gap = (cost - reference.total_cost).abs() / reference.total_cost;
    let cuts = &b.body.process.clearing.cuts;
    println!(
        "tie lines at {percent}%, lines at {lines}%: negotiated {cost:.4}, centralised {:.4}, relative gap {gap:.2e}, revision {}, {} objections, {} cuts, {:.2?}",
        reference.total_cost,
        b.header.revision,
        b.body.process.objections.len(),
        cuts.len(),
        started.elapsed()
    );
    assert!(gap < 1e-6, "relative gap {gap:e}");
    assert!(b.header.revision <= c.genesis.max_revisions, "no fallback");
    assert!(
        b.body
            .process
            .rejections
            .iter()
            .all(|r| r.reason != RejectionReason::Fallback)
    );
    // Every demand is served.
    let served: i64 = injections(b)
        .values()
        .filter(|(bid, _)| bid.side == Side::Buy)
        .map(|(_, x)| -x)
        .sum();
    assert_eq!(served, 8_550_000);
    // C21: every cut holds at the centralised optimum, up to its coefficients' rounding.
    for cut in cuts {
        let (lhs, rounding) = cut_at_reference(&c, b, &reference, cut);
        assert!(
            lhs <= cut.limit.0 as f64 + rounding + 1e-3,
            "cut {} excludes the optimum: {lhs} > {} (+{rounding})",
            cut.label,
            cut.limit.0
        );
    }
    // C22: no line overloaded beyond the ledger's rounding.
    let worst = worst_overload(&c, b);
    assert!(worst <= security_tolerance(b), "overload of {worst} kWh");
    let objectors = b
        .body
        .process
        .objections
        .iter()
        .map(|o| o.body.objector)
        .collect();
    (b.header.revision, objectors)
}

#[test]
fn negotiation_reaches_the_centralised_dc_opf_at_full_tie_ratings() {
    validate(100, 100);
}

#[test]
fn negotiation_reaches_the_centralised_dc_opf_at_half_tie_ratings() {
    validate(50, 100);
}

#[test]
fn negotiation_reaches_the_centralised_dc_opf_with_derated_tie_lines() {
    let (revisions, _) = validate(20, 100);
    assert!(revisions > 0, "derated tie lines need cuts");
}

#[test]
fn negotiation_reaches_the_centralised_dc_opf_on_a_stressed_grid() {
    // Several areas object to revision 0, and one revision carries all their cuts (2.6).
    let (revisions, objectors) = validate(20, 70);
    assert!(
        objectors.len() > 1,
        "a stressed grid draws several areas' objections: {objectors:?}"
    );
    assert_eq!(
        revisions, 1,
        "one revision answers every objection to revision 0"
    );
}

#[test]
fn reference_lp_agrees_with_pypower() {
    let doc: toml::Value = toml::from_str(REFERENCE).unwrap();
    for case in ["case5", "rts_gmlc_all_ac"] {
        let pypower = doc[case]["pypower_rundcopf"].as_float().unwrap();
        let lp = doc[case]["lp"].as_float().unwrap();
        assert!(
            (lp - pypower).abs() / pypower < 1e-6,
            "{case}: {lp} vs {pypower}"
        );
    }
    // MATPOWER's published case5 optimum.
    let case5 = doc["case5"]["lp"].as_float().unwrap();
    assert!((case5 - 17479.8969).abs() < 1e-3, "{case5}");
}

/// C25: on a grid stressed further (lines at 30%) with a revision bound of 1, negotiation cannot
/// converge in time (revision 1 still draws objections); the fallback cuts the later-received bids until every area's check passes, and the block
/// it commits overloads no line.
#[test]
fn fallback_ends_an_rts_negotiation_with_a_secure_block() {
    let c = rts_with(GridConsortiumOptions {
        max_revisions: 1,
        // At 30% the cuts of revision 0's objections leave lines overloaded in revision 1.
        line_rating_percent: 30,
        ..GridConsortiumOptions::rts_gmlc(20)
    });
    let n = negotiate(&c, c.security_checks().unwrap());
    let b = &n.block;
    let cut: Vec<_> = b
        .body
        .process
        .rejections
        .iter()
        .filter(|r| r.reason == RejectionReason::Fallback)
        .map(|r| r.bid)
        .collect();
    println!(
        "fallback: revision {}, {} bids cut",
        b.header.revision,
        cut.len()
    );
    assert!(
        b.header.revision > c.genesis.max_revisions,
        "ended in a fallback revision"
    );
    assert!(!cut.is_empty());
    // The later-received bids were cut (spec C4: by the home nodes' receipt times).
    let received: std::collections::BTreeMap<_, _> = b
        .body
        .process
        .batches
        .iter()
        .flat_map(|x| {
            x.body
                .bids
                .iter()
                .map(|sb| sb.body.id())
                .zip(&x.body.received)
        })
        .collect();
    let latest_kept = received
        .iter()
        .filter(|(id, _)| !cut.contains(id))
        .map(|(_, t)| **t)
        .max()
        .unwrap();
    assert!(cut.iter().all(|id| *received[id] >= latest_kept));
    let worst = worst_overload(&c, b);
    assert!(worst <= security_tolerance(b), "overload of {worst} kWh");
}

/// C24: a model that gives the same cuts is indistinguishable: area 1's node runs once with
/// its own file and once with a file that differs in everything no cut revealed (the ratings
/// of lines never cut are doubled, the generators and costs are gone); every message and the
/// block are the same. Every cut a node sent names only its own area's bids and tie lines.
#[test]
fn an_area_model_stays_on_its_node() {
    let c = rts(20);
    let first = negotiate(&c, c.security_checks().unwrap());
    let revealed: Vec<(NodeId, tieline_core::clearing::Cut)> = objectors(&first.block);
    assert!(!revealed.is_empty(), "the derated case needs cuts");
    let area1: Vec<u32> = revealed
        .iter()
        .filter(|(o, _)| *o == NodeId(1))
        .map(|(_, cut)| cut.label / 2)
        .collect();
    assert!(!area1.is_empty(), "area 1 objected");
    for (objector, cut) in &revealed {
        let area = c.genesis.member(*objector).unwrap().area;
        for t in &cut.terms {
            match t.variable {
                CutVariable::Bid(id) => {
                    let (bid, _) = &injections(&first.block)[&id];
                    assert_eq!(bid.area, area, "a cut names a bid of another area");
                }
                CutVariable::TieFlow(l) => {
                    let line = c.genesis.tie_line(l).unwrap();
                    assert!(line.from == area || line.to == area);
                }
            }
            assert!(t.coefficient.abs() <= COEFFICIENT_SCALE);
        }
    }
    let text = &c.area_files[0].text;
    let case = tieline_core::grid::Case::parse(text).unwrap();
    let rated = case.branches.iter().filter(|b| b.rate_a > 0.0).count();
    println!(
        "area 1 revealed {} of {} rated lines",
        {
            let mut a = area1.clone();
            a.sort_unstable();
            a.dedup();
            a.len()
        },
        rated
    );
    let mut other = String::new();
    let mut row = 0;
    let mut in_branches = false;
    let mut in_gens = false;
    for line in text.lines() {
        if line.starts_with("mpc.gencost") {
            break;
        }
        if line.starts_with("mpc.branch") {
            in_branches = true;
        } else if line.starts_with("mpc.gen ") {
            in_gens = true;
            other.push_str("mpc.gen = [\n];\n");
            continue;
        } else if line.starts_with("];") {
            let was = in_gens;
            in_branches = false;
            in_gens = false;
            if was {
                continue;
            }
        } else if in_gens {
            continue;
        } else if in_branches {
            let mut cells: Vec<String> = line.split_whitespace().map(String::from).collect();
            if !area1.contains(&row) {
                let rating: f64 = cells[5].parse().unwrap();
                cells[5] = format!("{}", 2.0 * rating);
            }
            row += 1;
            other.push('\t');
            other.push_str(&cells.join("\t"));
            other.push('\n');
            continue;
        }
        other.push_str(line);
        other.push('\n');
    }
    let changed = tieline_core::grid::Case::parse(&other).unwrap();
    assert!(changed.generators.is_empty() && changed.costs.is_empty());
    assert_ne!(changed.branches, case.branches);
    let mut checks = c.security_checks().unwrap();
    checks[0] = Arc::new(AreaModel::from_matpower(&other, AreaId(1), &c.genesis).unwrap())
        as Arc<dyn SecurityCheck>;
    let second = negotiate(&c, checks);
    assert_eq!(second.block, first.block);
    assert_eq!(second.messages, first.messages);
}
