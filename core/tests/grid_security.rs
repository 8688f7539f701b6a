//! A node's private security check on its RTS-GMLC area model (spec 3.8, C20, C21): the cuts
//! it raises, their validity for every DC-feasible schedule, and what it refuses.

mod grid_common;

use std::collections::{BTreeMap, BTreeSet};

use grid_common::*;
use proptest::prelude::*;
use tieline_core::clearing::{
    COEFFICIENT_SCALE, CUT_TOLERANCE, Cleared, ClearingInput, ClearingOutcome, CutVariable,
    StepAward, TieFlow,
};
use tieline_core::consensus::{CutValues, SecurityCheck};
use tieline_core::crypto::Digest;
use tieline_core::genesis::Genesis;
use tieline_core::grid::{AreaModel, AreaModelError, Case};
use tieline_core::market::{Bid, Settlement, Side};
use tieline_core::sample::sample_product;
use tieline_core::units::{AreaId, BusId, Quantity};

/// Area 1's bids and an outcome that accepts `share[i]` of bid `i` and balances the area over
/// its tie lines, the imbalance split evenly.
/// The clearing input of `refs` with no cuts and every area available; each bid's home node
/// received it at the bid's own timestamp.
fn input_of<'a>(genesis: &'a Genesis, refs: &[(Digest, &'a Bid)]) -> ClearingInput<'a> {
    ClearingInput::new(
        genesis,
        refs.to_vec(),
        refs.iter().map(|(_, b)| b.timestamp).collect(),
        &[],
        &BTreeSet::new(),
    )
}

fn outcome(
    c: &tieline_core::grid::GridConsortium,
    bids: &[(Digest, Bid)],
    share: &[f64],
) -> (
    ClearingOutcome,
    BTreeMap<Digest, i64>,
    Vec<(tieline_core::units::TieLineId, i64)>,
) {
    let mut awards = Vec::new();
    let mut net = BTreeMap::new();
    let mut balance = 0i64;
    for ((id, bid), s) in bids.iter().zip(share) {
        let mut left = (bid.total_quantity().0 as f64 * s) as i64;
        let accepted = left;
        for (k, step) in bid.steps.iter().enumerate() {
            let q = left.min(step.quantity.0);
            if q > 0 {
                awards.push(StepAward {
                    bid: *id,
                    step: k as u16,
                    quantity: Quantity(q),
                });
            }
            left -= q;
        }
        let x = if bid.side == Side::Sell {
            accepted
        } else {
            -accepted
        };
        net.insert(*id, x);
        balance += x;
    }
    // Imports into area 1 make up for its net injection.
    let ties: Vec<_> = c
        .genesis
        .tie_lines
        .iter()
        .filter(|t| t.from == AreaId(1) || t.to == AreaId(1))
        .collect();
    let n = ties.len() as i64;
    let mut flows = Vec::new();
    for (k, t) in ties.iter().enumerate() {
        let import = -balance / n + if k == 0 { -balance % n } else { 0 };
        let flow = if t.to == AreaId(1) { import } else { -import };
        flows.push((t.id, flow));
    }
    let outcome = ClearingOutcome {
        awards,
        flows: flows
            .iter()
            .map(|&(tie_line, f)| TieFlow {
                product: sample_product(1),
                tie_line,
                flow: Quantity(f),
            })
            .collect(),
        ..Default::default()
    };
    (outcome, net, flows)
}

fn area1_bids(c: &tieline_core::grid::GridConsortium) -> Vec<(Digest, Bid)> {
    c.bids(1)
        .into_iter()
        .map(|sb| (sb.body.id(), sb.body))
        .filter(|(_, b)| b.area == AreaId(1))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// C21: every cut the check raises is violated by the outcome it objects to, and holds
    /// for every DC-feasible schedule of the area (up to its coefficients' rounding).
    #[test]
    fn every_cut_is_valid_for_dc_feasible_schedules(
        violating in proptest::collection::vec(0.0f64..1.0, 48),
        feasible in proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 48), 8),
    ) {
        let c = rts(100);
        let model = AreaModel::from_matpower(&c.area_files[0].text, AreaId(1), &c.genesis).unwrap();
        let bids = area1_bids(&c);
        let refs: Vec<(Digest, &Bid)> = bids.iter().map(|(d, b)| (*d, b)).collect();
        let input = input_of(&c.genesis, &refs);
        let (o, _, _) = outcome(&c, &bids, &violating);
        let cleared = Cleared { outcome: o, trades: vec![] };
        let cuts = model.check(&input, &cleared);
        prop_assume!(!cuts.is_empty(), "a secure schedule raises no cut");
        for cut in &cuts {
            prop_assert!(!cut.honoured_by(CutValues::new(&input, &cleared).of(cut)));
        }
        let case = Case::parse(RTS_GMLC).unwrap();
        for share in &feasible {
            let (_, net, flows) = outcome(&c, &bids, share);
            // Scale the schedule into the area's line limits: it stays balanced.
            let mut at: BTreeMap<u32, f64> = BTreeMap::new();
            for (id, bid) in &bids {
                *at.entry(bid.bus.unwrap().0).or_default() += net[id] as f64;
            }
            for &(l, f) in &flows {
                let t = c.genesis.tie_line(l).unwrap();
                let (bus, sign) = if t.to == AreaId(1) { (t.to_bus, 1.0) } else { (t.from_bus, -1.0) };
                *at.entry(bus.unwrap().0).or_default() += sign * f as f64;
            }
            let worst = dc_flows(&case, &at)
                .iter()
                .map(|&(_, f, limit)| f.abs() / limit)
                .fold(0.0, f64::max);
            let scale = if worst > 1.0 { 1.0 / worst } else { 1.0 };
            for cut in &cuts {
                let mut lhs = 0.0;
                let mut named = 0.0;
                for t in &cut.terms {
                    let x = scale * match t.variable {
                        CutVariable::Bid(id) => net[&id] as f64,
                        CutVariable::TieFlow(l) => flows.iter().find(|f| f.0 == l).unwrap().1 as f64,
                    };
                    lhs += t.coefficient as f64 * x / COEFFICIENT_SCALE as f64;
                    named += x.abs();
                }
                let bound = cut.limit.0 as f64 + 0.5 * named / COEFFICIENT_SCALE as f64 + 1e-6;
                prop_assert!(lhs <= bound, "cut {} at a feasible schedule: {} > {}", cut.label, lhs, bound);
            }
        }
    }
}

#[test]
fn an_overloaded_line_gives_one_cut_per_direction_over_the_areas_bids_and_tie_lines() {
    let c = rts(100);
    let model = AreaModel::from_matpower(&c.area_files[0].text, AreaId(1), &c.genesis).unwrap();
    let bids = area1_bids(&c);
    let refs: Vec<(Digest, &Bid)> = bids.iter().map(|(d, b)| (*d, b)).collect();
    let input = input_of(&c.genesis, &refs);
    // Every generator at full output, no demand: area 1 exports everything.
    let share: Vec<f64> = bids
        .iter()
        .map(|(_, b)| if b.side == Side::Sell { 1.0 } else { 0.0 })
        .collect();
    let (o, _, _) = outcome(&c, &bids, &share);
    let cleared = Cleared {
        outcome: o,
        trades: vec![],
    };
    let cuts = model.check(&input, &cleared);
    assert!(!cuts.is_empty());
    let flows = model.line_flows(&input, &cleared);
    for cut in &cuts {
        let line = flows.iter().find(|f| f.branch == cut.label / 2).unwrap();
        let forward = cut.label % 2 == 0;
        assert!(
            if forward {
                line.flow_kwh
            } else {
                -line.flow_kwh
            } > line.limit.0 as f64,
            "{line:?}"
        );
        assert_eq!(cut.limit, line.limit);
        // Terms name area 1's bids and its tie lines only.
        assert!(cut.terms.iter().all(|t| match t.variable {
            CutVariable::Bid(id) => bids.iter().any(|(d, _)| *d == id),
            CutVariable::TieFlow(l) => {
                let t = c.genesis.tie_line(l).unwrap();
                t.from == AreaId(1) || t.to == AreaId(1)
            }
        }));
    }
    // A secure outcome passes: nothing accepted, nothing flows.
    let idle = Cleared::default();
    assert!(model.check(&input, &idle).is_empty());
}

/// C20, L3: the check raises only cuts the outcome does not honour as the clearing's
/// verification measures them (`Cut::honoured_by`, within `CUT_TOLERANCE`). A line whose DC flow
/// exceeds its limit by less than the tolerance raises nothing: the clearing may leave it so,
/// and a cut it already honours, raised again, would add nothing, so the primary would not
/// revise and the view would be lost (found on PEGASE 9241 by zone, where it was).
#[test]
fn a_line_over_its_limit_by_less_than_the_cut_tolerance_raises_nothing() {
    let c = rts(100);
    let model = AreaModel::from_matpower(&c.area_files[0].text, AreaId(1), &c.genesis).unwrap();
    let bids = area1_bids(&c);
    let refs: Vec<(Digest, &Bid)> = bids.iter().map(|(d, b)| (*d, b)).collect();
    let input = input_of(&c.genesis, &refs);
    let cleared_at = |scale: f64| {
        let share: Vec<f64> = bids
            .iter()
            .map(|(_, b)| if b.side == Side::Sell { scale } else { 0.0 })
            .collect();
        Cleared {
            outcome: outcome(&c, &bids, &share).0,
            trades: vec![],
        }
    };
    // The line most overloaded (relative to its limit) when every generator runs flat out.
    let full = cleared_at(1.0);
    let worst = model
        .line_flows(&input, &full)
        .into_iter()
        .filter(|f| f.limit.0 > 0)
        .max_by(|a, b| {
            (a.flow_kwh.abs() / a.limit.0 as f64).total_cmp(&(b.flow_kwh.abs() / b.limit.0 as f64))
        })
        .unwrap();
    assert!(worst.flow_kwh.abs() > worst.limit.0 as f64);
    let over = |scale: f64| {
        let f = model
            .line_flows(&input, &cleared_at(scale))
            .into_iter()
            .find(|f| f.branch == worst.branch)
            .unwrap();
        f.flow_kwh.abs() - f.limit.0 as f64
    };
    // Scale every output down until that line is over its limit by a few kWh, less than the
    // tolerance (bisection on the scale; the overload grows with it).
    let tolerance = CUT_TOLERANCE.0 as f64;
    let (mut lo, mut hi) = (0.0, 1.0);
    let mut scale = 1.0;
    for _ in 0..80 {
        scale = (lo + hi) / 2.0;
        let x = over(scale);
        if x > 0.6 * tolerance {
            hi = scale;
        } else if x < 0.2 * tolerance {
            lo = scale;
        } else {
            break;
        }
    }
    let x = over(scale);
    assert!(
        x > 1.0 && x < 0.6 * tolerance,
        "the line is {x} kWh over its limit"
    );
    let cleared = cleared_at(scale);
    let cuts = model.check(&input, &cleared);
    assert!(
        cuts.iter().all(|cut| cut.label / 2 != worst.branch),
        "a line {x} kWh over its limit, within the cut tolerance, raised a cut"
    );
    for cut in &cuts {
        assert!(!cut.honoured_by(CutValues::new(&input, &cleared).of(cut)));
    }
    // Over by more than the tolerance (the outcome at full output), it raises its cut, which
    // that outcome does not honour.
    let cuts = model.check(&input, &full);
    assert!(cuts.iter().any(|cut| cut.label / 2 == worst.branch));
    assert!(
        cuts.iter()
            .all(|cut| !cut.honoured_by(CutValues::new(&input, &full).of(cut)))
    );
}

#[test]
fn a_bid_the_model_cannot_place_is_excluded_once_accepted() {
    let c = rts(100);
    let model = AreaModel::from_matpower(&c.area_files[0].text, AreaId(1), &c.genesis).unwrap();
    let mut bids = area1_bids(&c);
    // A seller without a bus, a buyer at a bus of another area.
    let seller = bids.iter().position(|(_, b)| b.side == Side::Sell).unwrap();
    let buyer = bids.iter().position(|(_, b)| b.side == Side::Buy).unwrap();
    bids[seller].1.bus = None;
    bids[buyer].1.bus = Some(BusId(201));
    for i in [seller, buyer] {
        bids[i].0 = bids[i].1.id();
    }
    let refs: Vec<(Digest, &Bid)> = bids.iter().map(|(d, b)| (*d, b)).collect();
    let input = input_of(&c.genesis, &refs);
    let mut share = vec![0.0; bids.len()];
    share[seller] = 0.5;
    share[buyer] = 0.5;
    let (o, _, _) = outcome(&c, &bids, &share);
    let cleared = Cleared {
        outcome: o,
        trades: vec![],
    };
    let cuts = model.check(&input, &cleared);
    assert_eq!(cuts.len(), 2);
    for cut in &cuts {
        assert_eq!(cut.label, tieline_core::grid::security::UNLOCATED_BID_LABEL);
        assert_eq!(cut.limit, Quantity::ZERO);
        assert!(CutValues::new(&input, &cleared).of(cut) > 0);
    }
    // Not accepted, they need no cut.
    assert!(model.check(&input, &Cleared::default()).is_empty());
    // A financial product carries no flows: nothing is checked.
    let mut financial = bids.clone();
    for (d, b) in &mut financial {
        b.product.settlement = Settlement::Financial;
        *d = b.id();
    }
    let refs: Vec<(Digest, &Bid)> = financial.iter().map(|(d, b)| (*d, b)).collect();
    let input = input_of(&c.genesis, &refs);
    assert!(model.line_flows(&input, &cleared).is_empty());
}

#[test]
fn an_area_model_refuses_tie_lines_that_do_not_land_in_it() {
    let c = rts(100);
    let text = &c.area_files[0].text;
    let mut g = c.genesis.clone();
    g.tie_lines[0].from_bus = None;
    assert!(matches!(
        AreaModel::from_matpower(text, AreaId(1), &g),
        Err(AreaModelError::TieLine { .. })
    ));
    let mut g = c.genesis.clone();
    g.tie_lines[0].from_bus = Some(BusId(203));
    let e = AreaModel::from_matpower(text, AreaId(1), &g).unwrap_err();
    assert!(e.to_string().contains("203"), "{e}");
    assert_eq!(
        AreaModel::from_matpower(text, AreaId(9), &c.genesis).unwrap_err(),
        AreaModelError::UnknownArea(AreaId(9))
    );
    assert!(matches!(
        AreaModel::from_matpower("mpc.baseMVA = 100;", AreaId(1), &c.genesis),
        Err(AreaModelError::Case(_))
    ));
    // The model's debug form shows no part of the network.
    let model = AreaModel::from_matpower(text, AreaId(1), &c.genesis).unwrap();
    let shown = format!("{model:?}");
    assert!(
        !shown.contains("175") && !shown.contains("factor"),
        "{shown}"
    );
}
