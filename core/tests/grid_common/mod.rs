//! Helpers shared by the grid security tests: the shipped RTS-GMLC consortium, a negotiation
//! through the in-memory cluster, an independent DC power flow of the whole case, and the
//! centralised references of `fixtures/rts_gmlc/reference.toml`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use tieline_core::block::Block;
use tieline_core::clearing::{COEFFICIENT_SCALE, CUT_TOLERANCE, Cut, CutVariable};
use tieline_core::consensus::sim::{Cluster, Event};
use tieline_core::consensus::{Reply, SecurityCheck};
use tieline_core::crypto::{Digest, Ed25519, sha256};
use tieline_core::grid::{Case, GridConsortium, GridConsortiumOptions};
use tieline_core::market::Side;
use tieline_core::units::{NodeId, TieLineId};

/// The source case, as shipped.
pub const RTS_GMLC: &str = include_str!("../../../data/rts-gmlc/case_RTS_GMLC.m");
/// The centralised references.
pub const REFERENCE: &str = include_str!("../fixtures/rts_gmlc/reference.toml");

/// Most simulated events one negotiation may take.
pub const MAX_EVENTS: usize = 200_000;

/// The RTS-GMLC consortium with tie lines at `percent` of their ratings.
pub fn rts(percent: u32) -> GridConsortium {
    rts_with(GridConsortiumOptions::rts_gmlc(percent))
}

/// The RTS-GMLC consortium with the given options.
pub fn rts_with(options: GridConsortiumOptions) -> GridConsortium {
    GridConsortium::from_case(RTS_GMLC, &options).expect("the shipped case makes a consortium")
}

/// A finished negotiation of height 1.
pub struct Negotiated {
    /// The committed block (the same at every member).
    pub block: Block,
    /// A digest of every message delivered, in order.
    pub messages: Vec<Digest>,
}

/// Every participant bids once for height 1, and the cluster runs until every member has
/// committed it; every member checks its grid with its entry of `checks`.
pub fn negotiate(c: &GridConsortium, checks: Vec<Arc<dyn SecurityCheck>>) -> Negotiated {
    let mut cluster = Cluster::with_keys(&c.genesis, &c.members, checks);
    cluster.start();
    for bid in c.bids(1) {
        let reply = cluster.submit(bid);
        assert!(matches!(reply, Some(Reply::Receipt(_))), "{reply:?}");
    }
    let mut messages = Vec::new();
    let done = cluster.run_filtered(
        MAX_EVENTS,
        |e| {
            if let Event::Deliver { msg, .. } = e {
                messages.push(sha256(&[format!("{msg:?}").as_bytes()]));
            }
            false
        },
        |cl| cl.nodes.iter().all(|n| !n.store.blocks.is_empty()),
    );
    assert!(
        done,
        "the negotiation did not finish within {MAX_EVENTS} events"
    );
    assert_eq!(cluster.disagreement(), None);
    for n in &cluster.nodes {
        tieline_core::audit::audit_chain(&c.genesis, &Ed25519::default(), &n.store.blocks)
            .expect("every member's chain passes the audit");
    }
    Negotiated {
        block: cluster.nodes[0].store.blocks[0].clone(),
        messages,
    }
}

/// The accepted net injection (kWh, + sale, - purchase) of every participant in a block.
pub fn injections(block: &Block) -> BTreeMap<Digest, (tieline_core::market::Bid, i64)> {
    let mut out: BTreeMap<Digest, (tieline_core::market::Bid, i64)> = block
        .body
        .process
        .batches
        .iter()
        .flat_map(|b| b.body.bids.iter())
        .map(|sb| (sb.body.id(), (sb.body.clone(), 0)))
        .collect();
    for a in &block.body.process.clearing.outcome.awards {
        let e = out.get_mut(&a.bid).expect("an award of a bid in the block");
        e.1 += match e.0.side {
            Side::Sell => a.quantity.0,
            Side::Buy => -a.quantity.0,
        };
    }
    out
}

/// The DC flow (kWh, positive from `from`) and the limit (kWh) of every rated internal branch
/// of the whole case, for net injections (kWh) at its buses; tie branches carry nothing (their
/// flows are the injections at their landing buses). An independent B-theta power flow: each
/// area's susceptance system solved by Gaussian elimination with its first bus as reference.
pub fn dc_flows(case: &Case, injection: &BTreeMap<u32, f64>) -> Vec<(usize, f64, f64)> {
    let area: BTreeMap<u32, u32> = case.buses.iter().map(|b| (b.id, b.area)).collect();
    let mut out = Vec::new();
    let areas: std::collections::BTreeSet<u32> = area.values().copied().collect();
    for a in areas {
        let buses: Vec<u32> = case
            .buses
            .iter()
            .filter(|b| b.area == a)
            .map(|b| b.id)
            .collect();
        let at = |id: u32| buses.iter().position(|&b| b == id).unwrap();
        let n = buses.len();
        let lines: Vec<(usize, usize, usize, f64)> = case
            .branches
            .iter()
            .enumerate()
            .filter(|(_, br)| br.in_service && area[&br.from] == a && area[&br.to] == a)
            .map(|(i, br)| {
                let ratio = if br.ratio == 0.0 { 1.0 } else { br.ratio };
                (i, at(br.from), at(br.to), 1.0 / (br.x * ratio))
            })
            .collect();
        // Reduced system without bus 0: B' theta = P.
        let m = n - 1;
        let mut b = vec![vec![0.0; m + 1]; m];
        for &(_, f, t, s) in &lines {
            for (u, v, w) in [(f, f, s), (t, t, s), (f, t, -s), (t, f, -s)] {
                if u > 0 && v > 0 {
                    b[u - 1][v - 1] += w;
                }
            }
        }
        for (k, &id) in buses.iter().enumerate().skip(1) {
            b[k - 1][m] = injection.get(&id).copied().unwrap_or(0.0);
        }
        for c in 0..m {
            let p = (c..m)
                .max_by(|&x, &y| b[x][c].abs().total_cmp(&b[y][c].abs()))
                .unwrap();
            b.swap(c, p);
            let pivot = b[c].clone();
            for (r, row) in b.iter_mut().enumerate() {
                let k = row[c] / pivot[c];
                if r != c && k != 0.0 {
                    for (v, pv) in row.iter_mut().zip(&pivot).skip(c) {
                        *v -= k * pv;
                    }
                }
            }
        }
        let theta = |k: usize| {
            if k == 0 {
                0.0
            } else {
                b[k - 1][m] / b[k - 1][k - 1]
            }
        };
        for &(i, f, t, s) in &lines {
            if case.branches[i].rate_a > 0.0 {
                out.push((
                    i,
                    s * (theta(f) - theta(t)),
                    case.branches[i].rate_a * 1000.0,
                ));
            }
        }
    }
    out
}

/// The bus injections (kWh) of a block's dispatch: accepted bids at their buses, tie-line
/// flows at their landing buses.
pub fn bus_injections(c: &GridConsortium, block: &Block) -> BTreeMap<u32, f64> {
    let mut at: BTreeMap<u32, f64> = BTreeMap::new();
    for (bid, x) in injections(block).values() {
        *at.entry(bid.bus.expect("RTS bids name their bus").0)
            .or_default() += *x as f64;
    }
    for f in &block.body.process.clearing.outcome.flows {
        let t = c.genesis.tie_line(f.tie_line).unwrap();
        *at.entry(t.from_bus.unwrap().0).or_default() -= f.flow.0 as f64;
        *at.entry(t.to_bus.unwrap().0).or_default() += f.flow.0 as f64;
    }
    at
}

/// The largest overload (kWh above the limit; negative if every line is within its limit) of
/// a block's dispatch on the consortium's area files, by the independent power flow.
pub fn worst_overload(c: &GridConsortium, block: &Block) -> f64 {
    let at = bus_injections(c, block);
    c.area_files
        .iter()
        .flat_map(|f| dc_flows(&Case::parse(&f.text).unwrap(), &at))
        .map(|(_, f, limit)| f.abs() - limit)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// How much a security overload the ledger's rounding allows on a line (kWh): the clearing
/// honours a cut within `CUT_TOLERANCE`, and rounding each coefficient to a millionth moves
/// the cut by at most half a millionth of every injection it names.
pub fn security_tolerance(block: &Block) -> f64 {
    let total: i64 = injections(block)
        .values()
        .map(|(_, x)| x.abs())
        .sum::<i64>()
        + block
            .body
            .process
            .clearing
            .outcome
            .flows
            .iter()
            .map(|f| f.flow.0.abs())
            .sum::<i64>();
    CUT_TOLERANCE.0 as f64 + 0.5 * total as f64 / COEFFICIENT_SCALE as f64
}

/// A centralised reference of the fixture.
pub struct Reference {
    /// Total generation cost.
    pub total_cost: f64,
    /// Net injection (MWh) of every participant, in participant order.
    pub injection_mwh: Vec<f64>,
    /// Flow (MWh) of every tie line, in genesis order.
    pub tie_flow_mwh: Vec<f64>,
}

/// The reference with tie lines at `percent` and internal lines at `lines` percent of their
/// ratings.
pub fn reference(percent: u32, lines: u32) -> Reference {
    let doc: toml::Value = toml::from_str(REFERENCE).unwrap();
    let t = doc["transport"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["tie_rating_percent"].as_integer() == Some(i64::from(percent))
                && t["line_rating_percent"].as_integer() == Some(i64::from(lines))
        })
        .expect("a reference for this rating");
    let floats = |k: &str| -> Vec<f64> {
        t[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_float().unwrap())
            .collect()
    };
    Reference {
        total_cost: t["total_cost"].as_float().unwrap(),
        injection_mwh: floats("injection_mwh"),
        tie_flow_mwh: floats("tie_flow_mwh"),
    }
}

/// A cut's left-hand side (kWh) at the reference dispatch, and half a millionth of the
/// injections it names (the most its coefficients' rounding can move it).
pub fn cut_at_reference(c: &GridConsortium, block: &Block, r: &Reference, cut: &Cut) -> (f64, f64) {
    let participant: BTreeMap<Digest, usize> = injections(block)
        .iter()
        .map(|(id, (bid, _))| {
            let i = c
                .genesis
                .participants
                .iter()
                .position(|p| p.id == bid.participant)
                .unwrap();
            (*id, i)
        })
        .collect();
    let mut lhs = 0.0;
    let mut named = 0.0;
    for t in &cut.terms {
        let x = match t.variable {
            CutVariable::Bid(id) => r.injection_mwh[participant[&id]],
            CutVariable::TieFlow(TieLineId(k)) => r.tie_flow_mwh[usize::from(k) - 1],
        } * 1000.0;
        lhs += t.coefficient as f64 * x / COEFFICIENT_SCALE as f64;
        named += x.abs();
    }
    (lhs, 0.5 * named / COEFFICIENT_SCALE as f64)
}

/// The objector of each cut of a block.
pub fn objectors(block: &Block) -> Vec<(NodeId, Cut)> {
    block
        .body
        .process
        .objections
        .iter()
        .flat_map(|o| match &o.body.reason {
            tieline_core::block::ObjectionReason::Security { cuts } => cuts
                .iter()
                .map(|c| (o.body.objector, c.clone()))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect()
}
