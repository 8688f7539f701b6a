//! The pool model shared by [`super::UniformPrice`] and [`super::ZonalCoupling`]: every accepted
//! step trades with the market as a whole at its zone's (or, with cuts, its location's) price.
//!
//! Both rules publish the same kind of outcome and are verified by the same exact check of an
//! optimality certificate (spec C5): primal feasibility (balances, capacities, bid quantities,
//! cuts), the canonical price rule (C3), complementary slackness between awards, flows, cut
//! shadow prices and prices, submission-time priority among interchangeable steps (C4), equal
//! primal and dual objectives, and the exact derivation of welfare, congestion rent, bus prices
//! and trades. Everything is integer arithmetic: no float enters a verification.
//!
//! Prices inside this module are "fine" integers: [`Price`] raw units times
//! [`COEFFICIENT_SCALE`], so that a cut's shadow price times a coefficient is exact.

use std::collections::BTreeMap;

use crate::crypto::Digest;
use crate::genesis::ClearingParams;
use crate::market::{Product, Side, Trade};
use crate::units::{AreaId, BusId, Money, Price, Quantity, Timestamp};

use super::{
    AreaPrice, BusPrice, COEFFICIENT_SCALE, Cleared, ClearingError, ClearingInput,
    ClearingMismatch, ClearingOutcome, CutVariable, StepAward, TieFlow, VerifyError,
};

mod market;
mod prices;
mod verify;
pub(in crate::clearing) use verify::*;

/// How far a cut may be exceeded, and how close to its bound a cut with a positive shadow price
/// must be: 10 kWh. It absorbs the rounding of a floating-point solution to whole kWh.
pub const CUT_TOLERANCE: Quantity = Quantity(10);

/// The tolerance of complementary slackness for a product with cuts: one price tick, and at
/// least 0.01 currency/MWh. Products without cuts are checked with no tolerance at all.
pub fn cut_price_tolerance(params: &ClearingParams) -> Price {
    Price(params.price_tick.0.max(100))
}

/// Fine price units per [`Price`] raw unit.
pub(crate) const FINE: i128 = COEFFICIENT_SCALE as i128;

/// Where each bid's steps start in a flat per-step array (one entry per bid step of the input,
/// in input order).
#[derive(Debug)]
pub(crate) struct Layout {
    offsets: Vec<usize>,
}

impl Layout {
    /// The layout of the input's steps, and the positions of its bids grouped by product
    /// (each product clears on its own), in product order, in one pass over the bids.
    pub(crate) fn new(input: &ClearingInput<'_>) -> (Self, Vec<(Product, Vec<usize>)>) {
        let mut offsets = Vec::with_capacity(input.bids.len() + 1);
        let mut products: BTreeMap<Product, Vec<usize>> = BTreeMap::new();
        let mut at = 0;
        for (i, (_, b)) in input.bids.iter().enumerate() {
            offsets.push(at);
            at += b.steps.len();
            match products.last_entry() {
                Some(mut e) if *e.key() == b.product => e.get_mut().push(i),
                _ => products.entry(b.product).or_default().push(i),
            }
        }
        offsets.push(at);
        (Self { offsets }, products.into_iter().collect())
    }

    /// The number of steps of the bid at `pos`.
    pub(crate) fn steps(&self, pos: usize) -> usize {
        self.offsets[pos + 1] - self.offsets[pos]
    }

    /// The flat index of `step` of the bid at `pos`.
    pub(crate) fn at(&self, pos: usize, step: usize) -> usize {
        self.offsets[pos] + step
    }

    /// The number of steps.
    pub(crate) fn total(&self) -> usize {
        self.offsets[self.offsets.len() - 1]
    }
}

/// A short label of a product for messages.
pub(crate) fn product_label(p: &Product) -> String {
    format!("product {}+{}min", p.delivery_start, p.delivery_minutes)
}

fn mismatch(item: String, proposed: impl ToString, expected: impl ToString) -> ClearingMismatch {
    ClearingMismatch {
        item,
        proposed: proposed.to_string(),
        expected: expected.to_string(),
    }
}

/// Reads the proposed awards into a flat per-step array, checking that they follow the input's
/// canonical order (bid order, then step), name existing steps and are positive. That they
/// stay within their steps is checked with the market ([`Market::check_feasible`]).
pub(crate) fn read_awards(
    input: &ClearingInput<'_>,
    layout: &Layout,
    awards: &[StepAward],
) -> Result<Vec<i64>, ClearingMismatch> {
    let mut flat = vec![0i64; layout.total()];
    let mut pos = 0usize;
    let mut next_step = 0usize;
    for (k, a) in awards.iter().enumerate() {
        let item = || format!("award {k} (bid {:?} step {})", a.bid, a.step);
        while pos < input.bids.len() && input.bids[pos].0 != a.bid {
            pos += 1;
            next_step = 0;
        }
        if pos >= input.bids.len() {
            return Err(mismatch(
                item(),
                "an award out of the bids' canonical order or for no included bid",
                "awards in bid order, then step order, one per step",
            ));
        }
        let s = usize::from(a.step);
        let n = layout.steps(pos);
        if s < next_step || s >= n {
            return Err(mismatch(
                item(),
                format!("step {s}"),
                format!("a step of the bid after step {next_step}, below {n}"),
            ));
        }
        if a.quantity <= Quantity::ZERO {
            return Err(mismatch(
                item(),
                format!("quantity {}", a.quantity),
                "above 0",
            ));
        }
        flat[layout.at(pos, s)] = a.quantity.0;
        next_step = s + 1;
    }
    Ok(flat)
}

/// The awards of a flat per-step array, in canonical order.
pub(crate) fn awards_of(
    input: &ClearingInput<'_>,
    layout: &Layout,
    flat: &[i64],
) -> Vec<StepAward> {
    let mut out = Vec::new();
    for (pos, (id, bid)) in input.bids.iter().enumerate() {
        for s in 0..bid.steps.len() {
            let x = flat[layout.at(pos, s)];
            if x > 0 {
                out.push(StepAward {
                    bid: *id,
                    step: s as u16,
                    quantity: Quantity(x),
                });
            }
        }
    }
    out
}

/// Welfare of the flat awards: buyers' limit prices minus sellers' over what was accepted.
pub(crate) fn welfare_of(input: &ClearingInput<'_>, layout: &Layout, flat: &[i64]) -> Money {
    let mut w: i128 = 0;
    for (pos, (_, bid)) in input.bids.iter().enumerate() {
        for (s, step) in bid.steps.iter().enumerate() {
            let v = step.price.times(Quantity(flat[layout.at(pos, s)])).0;
            match bid.side {
                Side::Buy => w += v,
                Side::Sell => w -= v,
            }
        }
    }
    Money(w)
}

/// What buyers pay minus what sellers receive, over the trades.
pub(crate) fn rent_of(trades: &[Trade]) -> Money {
    let mut r: i128 = 0;
    for t in trades {
        let v = t.price.times(t.quantity).0;
        match t.side {
            Side::Buy => r += v,
            Side::Sell => r -= v,
        }
    }
    Money(r)
}

/// The one-zone or the zonal form of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// All areas form one zone; tie lines are ignored; one price per product.
    OneZone,
    /// Each area is a zone; tie lines carry flows within their capacities.
    Zonal,
}

/// An open or closed tie line as the market sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line {
    /// Its position in the input's tie lines.
    pub index: usize,
    /// The zone a positive flow leaves.
    pub from: usize,
    /// The zone a positive flow enters.
    pub to: usize,
    /// Capacity from `from` to `to`, kWh.
    pub forward: i64,
    /// Capacity from `to` to `from`, kWh.
    pub backward: i64,
}

/// One bid step of a market, laid out flat (24 bytes) so that the checks read memory in
/// order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    /// Limit price, raw units.
    pub price: i64,
    /// Step quantity, kWh.
    pub quantity: i64,
    /// Index into the flat per-step arrays.
    flat: u32,
    /// Index into the market's bids, with the top bit set for a sale.
    tag: u32,
}

const SELL_BIT: u32 = 1 << 31;

impl Row {
    /// Index into the flat per-step arrays.
    pub fn flat(&self) -> usize {
        self.flat as usize
    }
    /// Index into the market's bids.
    pub fn bid(&self) -> usize {
        (self.tag & !SELL_BIT) as usize
    }
    /// Whether the bid sells.
    pub fn sell(&self) -> bool {
        self.tag & SELL_BIT != 0
    }
}

/// One product's pool: its bids, zones, lines and cuts.
#[derive(Debug)]
pub(crate) struct Market<'i, 'a> {
    pub input: &'i ClearingInput<'a>,
    pub layout: &'i Layout,
    pub mode: Mode,
    pub product: Product,
    /// Positions of the product's bids in the input, in input order.
    pub bids: Vec<usize>,
    /// Every step of those bids, in bid order, then step order.
    pub rows: Vec<Row>,
    /// The zone of each of `bids`.
    pub zone_of: Vec<usize>,
    /// The number of zones.
    pub zones: usize,
    /// Every tie line of the input (zonal mode), in input order.
    pub lines: Vec<Line>,
    /// Positions of the product's cuts in the input.
    pub cuts: Vec<usize>,
    /// Per bid of `bids`: (index into `cuts`, summed coefficient) of the cuts naming it.
    pub bid_coefs: Vec<Vec<(usize, i64)>>,
    /// Per line of `lines`: (index into `cuts`, summed coefficient).
    pub line_coefs: Vec<Vec<(usize, i64)>>,
    /// Per bid of `bids`: an id of its cut coefficients; equal ids, equal coefficients.
    pub signature: Vec<u32>,
    /// Complementary-slackness tolerance, fine units.
    pub tau: i128,
    /// The range the price rule looks in before cut offsets widen it ([`Market::range`]),
    /// fine units.
    pub clip: (i128, i128),
}

/// Prices and everything derived from them for one product.
#[derive(Debug)]
pub(crate) struct Priced {
    /// Zone prices, fine units, multiples of the tick.
    pub zone_price: Vec<i128>,
    /// Per bid of the market: the offset of its location from its zone price (fine units).
    pub bid_offset: Vec<i128>,
}

/// What one verification pass over a market's steps found.
#[derive(Debug)]
struct Scan {
    /// Net injection per zone, kWh.
    injection: Vec<i128>,
    /// Net injection per bid (only when the market has cuts), kWh.
    bid_injection: Vec<i128>,
    /// Lower bounds of the consistent zone prices from the steps (fine units).
    lo: Vec<i128>,
    /// Upper bounds.
    hi: Vec<i128>,
    /// The first step violating complementary slackness at the published prices.
    violation: Option<usize>,
    /// Steps whose reduced profit is within the tolerance at the published prices.
    marginal: Vec<usize>,
    /// The steps' part of the dual objective (fine units times kWh).
    dual: i128,
    /// The welfare (fine units times kWh).
    primal: i128,
    /// Total step quantity, kWh.
    volume: i128,
}
