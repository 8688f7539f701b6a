//! Clearing: the ledger form of a clearing outcome and of negotiation cuts, the [`Clearing`]
//! trait and the shipped rules (spec part 3, C1 onwards).
//!
//! Everything on the ledger is fixed-point; see [`crate::units`] for the units.
//!
//! - [`PayAsBid`]: bilateral matching by price, then submission time, then bid id.
//! - [`UniformPrice`]: one zone, welfare-maximising merit order, one price per product.
//! - [`ZonalCoupling`]: areas joined by tie lines, welfare-maximising linear programme, zonal
//!   prices, negotiation cuts; verified by an exact check of an optimality certificate.

mod pay_as_bid;
mod pool;
mod uniform;
mod zonal;

use std::collections::BTreeSet;

pub use pay_as_bid::PayAsBid;
pub use pool::{CUT_TOLERANCE, cut_price_tolerance};
pub use uniform::UniformPrice;
pub use zonal::ZonalCoupling;

use crate::crypto::Digest;
use crate::genesis::{Area, ClearingParams, ClearingRule, Genesis, TieLine};
use crate::market::{Bid, Product, Trade};
use crate::units::{AreaId, BusId, Money, Price, Quantity, TieLineId, Timestamp};

/// Most step awards in one outcome.
pub const MAX_AWARDS: usize = 2_000_000;
/// Most prices, flows or cuts in one outcome: with the other limits, a proposal fits one frame
/// (spec D25).
pub const MAX_OUTCOME_ROWS: usize = 50_000;
/// Most terms in one cut.
pub const MAX_CUT_TERMS: usize = 250_000;

/// The accepted quantity of one step of one bid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepAward {
    /// The bid's id.
    pub bid: Digest,
    /// The step's index in the bid.
    pub step: u16,
    /// The accepted energy, between zero and the step's quantity.
    pub quantity: Quantity,
}
crate::canonical_struct!(StepAward {
    bid,
    step,
    quantity
});

/// The clearing price of an area for a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AreaPrice {
    /// The product.
    pub product: Product,
    /// The area.
    pub area: AreaId,
    /// The price.
    pub price: Price,
}
crate::canonical_struct!(AreaPrice {
    product,
    area,
    price
});

/// The clearing price at a bus for a product, where the rule is nodal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusPrice {
    /// The product.
    pub product: Product,
    /// The bus.
    pub bus: BusId,
    /// The price.
    pub price: Price,
}
crate::canonical_struct!(BusPrice {
    product,
    bus,
    price
});

/// The scheduled flow on a tie line for a product: positive from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TieFlow {
    /// The product.
    pub product: Product,
    /// The tie line.
    pub tie_line: TieLineId,
    /// The energy scheduled across it.
    pub flow: Quantity,
}
crate::canonical_struct!(TieFlow {
    product,
    tie_line,
    flow
});

/// A clearing result as it is recorded on the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClearingOutcome {
    /// Accepted quantity per bid step; steps with nothing accepted are left out.
    pub awards: Vec<StepAward>,
    /// A price per area and product.
    pub area_prices: Vec<AreaPrice>,
    /// A price per bus and product, for nodal rules.
    pub bus_prices: Vec<BusPrice>,
    /// Tie-line flows per product.
    pub flows: Vec<TieFlow>,
    /// The shadow price of each cut of the input, in the input's order (currency per MWh of
    /// the cut's bound): the certificate a verifier checks the locational prices against. Empty
    /// for rules that take no cuts.
    pub cut_prices: Vec<Price>,
    /// Total congestion rent: what buyers pay minus what sellers get, over all areas.
    pub congestion_rent: Money,
    /// Social welfare: buyers' value minus sellers' cost of the accepted steps.
    pub welfare: Money,
}
crate::canonical_struct!(ClearingOutcome {
    awards: seq(MAX_AWARDS),
    area_prices: seq(MAX_OUTCOME_ROWS),
    bus_prices: seq(MAX_OUTCOME_ROWS),
    flows: seq(MAX_OUTCOME_ROWS),
    cut_prices: seq(MAX_OUTCOME_ROWS),
    congestion_rent,
    welfare,
});

/// A variable a cut constrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CutVariable {
    /// A bid's net injection: its accepted quantity, positive for a sale, negative for a
    /// purchase.
    Bid(Digest),
    /// A tie line's scheduled flow.
    TieFlow(TieLineId),
}

impl crate::encoding::Canonical for CutVariable {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            CutVariable::Bid(d) => {
                out.push(0);
                d.encode(out);
            }
            CutVariable::TieFlow(t) => {
                out.push(1);
                t.encode(out);
            }
        }
    }
    fn decode(r: &mut crate::encoding::Reader<'_>) -> Result<Self, crate::encoding::DecodeError> {
        match u8::decode(r)? {
            0 => Ok(CutVariable::Bid(Digest::decode(r)?)),
            1 => Ok(CutVariable::TieFlow(TieLineId::decode(r)?)),
            value => Err(crate::encoding::DecodeError::new(
                crate::encoding::DecodeErrorKind::InvalidDiscriminant { value },
            )),
        }
    }
}

/// One term of a cut: a coefficient in millionths times a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CutTerm {
    /// The variable.
    pub variable: CutVariable,
    /// The coefficient, in millionths.
    pub coefficient: i64,
}
crate::canonical_struct!(CutTerm {
    variable,
    coefficient
});

/// Scale of cut coefficients: a coefficient of `COEFFICIENT_SCALE` means 1.0.
pub const COEFFICIENT_SCALE: i64 = 1_000_000;

/// A linear constraint from negotiation: `sum(coefficient * variable) / 1e6 <= limit` for one
/// product. It reveals one constraint of a node's private grid, never the model.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cut {
    /// The product it constrains.
    pub product: Product,
    /// The objecting node's label for the constraint (opaque to everyone else).
    pub label: u32,
    /// The terms.
    pub terms: Vec<CutTerm>,
    /// The bound.
    pub limit: Quantity,
}
crate::canonical_struct!(Cut {
    product,
    label,
    terms: seq(MAX_CUT_TERMS),
    limit
});

impl Cut {
    /// Whether a left-hand side `value` (in millionths of a kWh: coefficients times kWh, as
    /// [`crate::consensus::CutValues::of`] computes it) honours the cut: at most its limit plus
    /// [`CUT_TOLERANCE`], which absorbs the rounding of a solution to whole kWh. This is the
    /// one test of a cut: the clearing's verification (3.5, V8) and a member's security check
    /// (C20: it objects only with cuts the outcome does not honour) both use it, so a cut that
    /// a verified outcome honours is never raised again.
    pub fn honoured_by(&self, value: i128) -> bool {
        value
            <= (i128::from(self.limit.0) + i128::from(CUT_TOLERANCE.0))
                * i128::from(COEFFICIENT_SCALE)
    }
}

/// The rule and the outcome it produced, as recorded in a block's process data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClearingRecord {
    /// The rule that cleared.
    pub rule: ClearingRule,
    /// The cuts the outcome honours.
    pub cuts: Vec<Cut>,
    /// The outcome.
    pub outcome: ClearingOutcome,
}
crate::canonical_struct!(ClearingRecord {
    rule,
    cuts: seq(MAX_OUTCOME_ROWS),
    outcome
});

/// Everything a clearing rule sees. Built by [`ClearingInput::new`] from the genesis and the
/// included bids, the same way by the primary, by every verifier and by the audit.
#[derive(Clone, Debug)]
pub struct ClearingInput<'a> {
    /// The rule's parameters.
    pub params: ClearingParams,
    /// The areas.
    pub areas: &'a [Area],
    /// The tie lines with their effective capacities: zero in both directions for a line that
    /// touches an unavailable area.
    pub tie_lines: Vec<TieLine>,
    /// The bids to clear with their ids, in canonical order (batches in member order, bids in
    /// batch order). Every bid here is valid (spec D7) and appears once.
    pub bids: Vec<(Digest, &'a Bid)>,
    /// When each bid's home node received it (its signed receipt time, carried in the batch),
    /// one per bid in the order of `bids`: the priority among equal bids (spec C4). The
    /// bidder's own `Bid::timestamp` ranks nothing, so a back-dated bid gains nothing.
    pub received: Vec<Timestamp>,
    /// The cuts from negotiation the outcome must honour.
    pub cuts: &'a [Cut],
}

impl<'a> ClearingInput<'a> {
    /// The input for `bids` under the genesis's rule, with every tie line that touches an area
    /// in `unavailable` closed.
    pub fn new(
        genesis: &'a Genesis,
        bids: Vec<(Digest, &'a Bid)>,
        received: Vec<Timestamp>,
        cuts: &'a [Cut],
        unavailable: &BTreeSet<AreaId>,
    ) -> Self {
        let tie_lines = genesis
            .tie_lines
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if unavailable.contains(&t.from) || unavailable.contains(&t.to) {
                    t.capacity_forward = Quantity::ZERO;
                    t.capacity_backward = Quantity::ZERO;
                }
                t
            })
            .collect();
        Self {
            params: genesis.clearing,
            areas: &genesis.areas,
            tie_lines,
            bids,
            received,
            cuts,
        }
    }

    /// The priority of the bid at `pos` among equal bids (spec C4): earlier receipt by its
    /// home node first, then the smaller id. Neither is the bidder's to choose: the home node
    /// stamps the receipt, and the id is the digest of the whole bid.
    pub fn priority(&self, pos: usize) -> (Timestamp, Digest) {
        (self.received[pos], self.bids[pos].0)
    }
}

/// A rule's result: the ledger outcome and the trades it implies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleared {
    /// The outcome recorded in the block's process data.
    pub outcome: ClearingOutcome,
    /// The trades, the leaves of the block's Merkle tree, in the rule's canonical order.
    pub trades: Vec<Trade>,
}

/// Why a rule could not clear.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClearingError {
    /// The input breaks an assumption of the rule (e.g. several areas under a one-zone rule).
    #[error("the input does not suit the rule: {0}")]
    UnsuitableInput(String),
    /// The numerical solver failed.
    #[error("the solver failed: {0}")]
    Solver(String),
}

/// Why a proposed result is not what the rule gives: names the first differing item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{item}: proposed {proposed}, the rule gives {expected}")]
pub struct ClearingMismatch {
    /// What differs, e.g. `price of area 2 for product 2026-01-01T10:00/60`.
    pub item: String,
    /// The proposed value.
    pub proposed: String,
    /// The rule's value.
    pub expected: String,
}

/// A clearing rule: deterministic, and checkable by every node (spec V-properties of
/// clearing; the consensus reaches it only through this trait).
pub trait Clearing: Send + Sync + std::fmt::Debug {
    /// Which rule this is.
    fn rule(&self) -> ClearingRule;

    /// Clears the input.
    fn clear(&self, input: &ClearingInput<'_>) -> Result<Cleared, ClearingError>;

    /// Checks a proposed result against the rule. The default recomputes it and compares
    /// canonical outcomes and trades; a rule may instead check a certificate of optimality.
    fn verify(&self, input: &ClearingInput<'_>, proposed: &Cleared) -> Result<(), VerifyError> {
        let expected = self.clear(input).map_err(VerifyError::Clearing)?;
        compare(&expected, proposed).map_err(VerifyError::Mismatch)
    }
}

/// Maps `f` over `items` on the available cores and returns the results in the items' order.
/// Each worker owns a scratch value made by `scratch`. The result is the sequential map's
/// whatever the number of cores, as long as each result depends on its item alone (and not
/// on what an earlier item left in the scratch): the products of a round clear and verify
/// independently (spec 3.1), so this is how a round of many periods uses every core.
pub(crate) fn parallel_map<T: Sync, S, R: Send>(
    items: &[T],
    scratch: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads < 2 {
        let mut s = scratch();
        return items.iter().map(|item| f(&mut s, item)).collect();
    }
    // Items are handed out one at a time, as their costs differ; results go back in place.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut s = scratch();
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, f(&mut s, item)));
                    }
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(done) => {
                    for (i, r) in done {
                        out[i] = Some(r);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    out.into_iter()
        .map(|r| r.expect("every item is mapped once"))
        .collect()
}

/// The implementation of `rule`, as the consensus picks it from the genesis.
pub fn rule_for(rule: ClearingRule) -> &'static dyn Clearing {
    match rule {
        ClearingRule::PayAsBid => &PayAsBid,
        ClearingRule::UniformPrice => &UniformPrice,
        ClearingRule::ZonalCoupling => &ZonalCoupling,
    }
}

/// Why a proposed result does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The verifier's own clearing failed.
    #[error("clearing failed while verifying: {0}")]
    Clearing(ClearingError),
    /// The proposed result differs from the rule's.
    #[error("{0}")]
    Mismatch(ClearingMismatch),
}

/// The first difference between two results, named.
pub fn compare(expected: &Cleared, proposed: &Cleared) -> Result<(), ClearingMismatch> {
    compare_parts(expected, proposed, true, true)
}

/// [`compare`], leaving out the awards or the trades when their flag is false (a caller that
/// checks them itself).
pub(crate) fn compare_parts(
    expected: &Cleared,
    proposed: &Cleared,
    awards: bool,
    trades: bool,
) -> Result<(), ClearingMismatch> {
    fn first<T: PartialEq + std::fmt::Debug>(
        what: &str,
        e: &[T],
        p: &[T],
    ) -> Result<(), ClearingMismatch> {
        if let Some(i) = (0..e.len().max(p.len())).find(|&i| e.get(i) != p.get(i)) {
            return Err(ClearingMismatch {
                item: format!("{what} {i}"),
                proposed: p.get(i).map_or("nothing".into(), |v| format!("{v:?}")),
                expected: e.get(i).map_or("nothing".into(), |v| format!("{v:?}")),
            });
        }
        Ok(())
    }
    let (e, p) = (&expected.outcome, &proposed.outcome);
    if awards {
        first("award", &e.awards, &p.awards)?;
    }
    first("area price", &e.area_prices, &p.area_prices)?;
    first("bus price", &e.bus_prices, &p.bus_prices)?;
    first("tie-line flow", &e.flows, &p.flows)?;
    first("cut shadow price", &e.cut_prices, &p.cut_prices)?;
    for (what, a, b) in [
        ("congestion rent", e.congestion_rent, p.congestion_rent),
        ("welfare", e.welfare, p.welfare),
    ] {
        if a != b {
            return Err(ClearingMismatch {
                item: what.into(),
                proposed: b.to_string(),
                expected: a.to_string(),
            });
        }
    }
    if trades {
        first("trade", &expected.trades, &proposed.trades)?;
    }
    Ok(())
}
