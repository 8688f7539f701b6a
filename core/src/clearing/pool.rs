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

impl<'i, 'a> Market<'i, 'a> {
    /// Builds the market of `product`, whose bids are at `bids`.
    pub fn new(
        input: &'i ClearingInput<'a>,
        layout: &'i Layout,
        mode: Mode,
        product: Product,
        bids: Vec<usize>,
    ) -> Result<Self, ClearingError> {
        let unsuitable = ClearingError::UnsuitableInput;
        if layout.total() >= u32::MAX as usize || bids.len() >= SELL_BIT as usize {
            return Err(unsuitable(format!(
                "{} bid steps exceed what one clearing handles",
                layout.total()
            )));
        }
        let area_index = |a: AreaId| input.areas.iter().position(|x| x.id == a);
        let (zones, zone_of, lines) = match mode {
            Mode::OneZone => (1, vec![0; bids.len()], Vec::new()),
            Mode::Zonal => {
                let zone_of = bids
                    .iter()
                    .map(|&p| {
                        let a = input.bids[p].1.area;
                        area_index(a).ok_or_else(|| unsuitable(format!("bid in unknown area {a}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let lines = input
                    .tie_lines
                    .iter()
                    .enumerate()
                    .map(|(index, t)| {
                        let end = |a: AreaId| {
                            area_index(a).ok_or_else(|| {
                                unsuitable(format!("tie line {} ends in unknown area {a}", t.id))
                            })
                        };
                        if t.capacity_forward.0 < 0 || t.capacity_backward.0 < 0 {
                            return Err(unsuitable(format!(
                                "tie line {} has a negative capacity",
                                t.id
                            )));
                        }
                        Ok(Line {
                            index,
                            from: end(t.from)?,
                            to: end(t.to)?,
                            forward: t.capacity_forward.0,
                            backward: t.capacity_backward.0,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (input.areas.len(), zone_of, lines)
            }
        };
        let cuts: Vec<usize> = (0..input.cuts.len())
            .filter(|&c| input.cuts[c].product == product)
            .collect();
        let mut bid_coefs = vec![Vec::new(); bids.len()];
        let mut line_coefs = vec![Vec::new(); lines.len()];
        if !cuts.is_empty() {
            // Hash maps: a negotiation may bring a thousand cuts of hundreds of terms each.
            let local: crate::crypto::DigestMap<usize> = bids
                .iter()
                .enumerate()
                .map(|(i, &p)| (input.bids[p].0, i))
                .collect();
            let line_of: std::collections::HashMap<crate::units::TieLineId, usize> = lines
                .iter()
                .enumerate()
                .map(|(l, line)| (input.tie_lines[line.index].id, l))
                .collect();
            let add = |v: &mut Vec<(usize, i64)>, k: usize, c: i64| match v.last_mut() {
                Some((kk, cc)) if *kk == k => *cc = cc.saturating_add(c),
                _ => v.push((k, c)),
            };
            for (k, &c) in cuts.iter().enumerate() {
                for t in &input.cuts[c].terms {
                    match t.variable {
                        // A term naming a bid or line outside this product's market constrains
                        // nothing: its variable is zero.
                        CutVariable::Bid(id) => {
                            if let Some(&i) = local.get(&id) {
                                add(&mut bid_coefs[i], k, t.coefficient);
                            }
                        }
                        CutVariable::TieFlow(tid) => {
                            if let Some(&l) = line_of.get(&tid) {
                                add(&mut line_coefs[l], k, t.coefficient);
                            }
                        }
                    }
                }
            }
        }
        let signature = if cuts.is_empty() {
            vec![0; bids.len()]
        } else {
            let mut names: BTreeMap<&[(usize, i64)], u32> = BTreeMap::new();
            bid_coefs
                .iter()
                .map(|c| {
                    let n = names.len() as u32;
                    *names.entry(c.as_slice()).or_insert(n)
                })
                .collect()
        };
        let params = &input.params;
        let mut rows = Vec::with_capacity(bids.iter().map(|&p| layout.steps(p)).sum());
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for (i, &p) in bids.iter().enumerate() {
            let bid = input.bids[p].1;
            for (s, step) in bid.steps.iter().enumerate() {
                lo = lo.min(step.price.0);
                hi = hi.max(step.price.0);
                let sell = if bid.side == Side::Sell { SELL_BIT } else { 0 };
                rows.push(Row {
                    price: step.price.0,
                    quantity: step.quantity.0,
                    flat: layout.at(p, s) as u32,
                    tag: i as u32 | sell,
                });
            }
        }
        let (tau, clip) = if cuts.is_empty() {
            (0, (i128::from(lo) * FINE, i128::from(hi) * FINE))
        } else {
            (
                i128::from(cut_price_tolerance(params).0) * FINE,
                (
                    i128::from(params.price_floor.0) * FINE,
                    i128::from(params.price_cap.0) * FINE,
                ),
            )
        };
        Ok(Self {
            input,
            layout,
            mode,
            product,
            bids,
            rows,
            zone_of,
            zones,
            lines,
            cuts,
            bid_coefs,
            line_coefs,
            signature,
            tau,
            clip,
        })
    }

    /// The step index of `row` within its bid.
    fn step_of(&self, row: &Row) -> usize {
        row.flat() - self.layout.at(self.bids[row.bid()], 0)
    }

    fn tick_fine(&self) -> i128 {
        i128::from(self.input.params.price_tick.0.max(1)) * FINE
    }

    /// The name of zone `z` in messages.
    pub fn zone_name(&self, z: usize) -> String {
        match self.mode {
            Mode::OneZone => "the market".into(),
            Mode::Zonal => format!("area {}", self.input.areas[z].id),
        }
    }

    /// The offsets of bids and lines from their zone prices under cut shadow prices `mu` (raw
    /// price units, one per cut of the market).
    pub fn offsets(&self, mu: &[i64]) -> (Vec<i128>, Vec<i128>) {
        if self.cuts.is_empty() {
            // Empty means zero for every bid (see [`offset`]).
            return (Vec::new(), vec![0; self.lines.len()]);
        }
        let off = |coefs: &Vec<(usize, i64)>| {
            coefs
                .iter()
                .map(|&(k, c)| i128::from(mu[k]) * i128::from(c))
                .sum::<i128>()
        };
        (
            self.bid_coefs.iter().map(off).collect(),
            self.line_coefs.iter().map(off).collect(),
        )
    }

    /// The range the price rule looks in (spec 3.4), fine units: without cuts, the product's
    /// limit prices; with cuts, the floor to the cap widened on each side by the largest offset
    /// (in magnitude) of a bid's location or a line from the cuts' shadow prices. A zone price
    /// is a reference that the locations of the zone are offset from: with congested cuts a
    /// zone's consistent prices can lie beyond the floor or the cap while its locations' prices
    /// do not (the European grid: a zone at -60,474/MWh whose locations are at the floor of
    /// -50,000), and the range must not exclude them.
    pub fn range(&self, bid_offset: &[i128], line_offset: &[i128]) -> (i128, i128) {
        if self.cuts.is_empty() {
            return self.clip;
        }
        let widest = bid_offset
            .iter()
            .chain(line_offset)
            .map(|o| o.abs())
            .max()
            .unwrap_or(0);
        (self.clip.0 - widest, self.clip.1 + widest)
    }

    /// Adds each bid's accepted kWh to `totals` (by input position).
    pub fn add_totals(&self, flat: &[i64], totals: &mut [i64]) {
        for r in &self.rows {
            totals[self.bids[r.bid()]] += flat[r.flat()];
        }
    }

    /// Welfare of the market's awards, raw money units.
    pub fn welfare(&self, flat: &[i64]) -> i128 {
        self.rows
            .iter()
            .map(|r| {
                let v = i128::from(r.price) * i128::from(flat[r.flat()]);
                if r.sell() { -v } else { v }
            })
            .sum()
    }

    /// Flows within their capacities (spec 3.5, 2).
    fn check_lines(&self, flows: &[i64]) -> Result<(), ClearingMismatch> {
        for (l, line) in self.lines.iter().enumerate() {
            let f = flows[l];
            if f > line.forward || f < -line.backward {
                return Err(mismatch(
                    format!(
                        "tie-line flow of line {} for {}",
                        self.input.tie_lines[line.index].id,
                        product_label(&self.product)
                    ),
                    Quantity(f),
                    format!(
                        "within [-{}, {}]",
                        Quantity(line.backward),
                        Quantity(line.forward)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every zone balances exactly: its net injection equals its net export.
    fn check_balance(&self, injection: &[i128], flows: &[i64]) -> Result<(), ClearingMismatch> {
        let mut net = injection.to_vec();
        for (l, line) in self.lines.iter().enumerate() {
            net[line.from] -= i128::from(flows[l]);
            net[line.to] += i128::from(flows[l]);
        }
        if let Some(z) = net.iter().position(|&v| v != 0) {
            return Err(mismatch(
                format!(
                    "balance of {} for {} (awards and tie-line flows)",
                    self.zone_name(z),
                    product_label(&self.product)
                ),
                format!(
                    "awards inject {} kWh more than the tie-line flows export",
                    net[z]
                ),
                "awards and flows that balance exactly",
            ));
        }
        Ok(())
    }

    /// Each cut's left-hand side, in millionths of a kWh, from the bids' net injections.
    fn cut_sides(&self, bid_injection: &[i128], flows: &[i64]) -> Vec<i128> {
        let mut lhs = vec![0i128; self.cuts.len()];
        for (i, coefs) in self.bid_coefs.iter().enumerate() {
            for &(k, c) in coefs {
                lhs[k] += i128::from(c) * bid_injection[i];
            }
        }
        for (l, coefs) in self.line_coefs.iter().enumerate() {
            for &(k, c) in coefs {
                lhs[k] += i128::from(c) * i128::from(flows[l]);
            }
        }
        lhs
    }

    /// Which of the market's cuts are slack by more than [`CUT_TOLERANCE`] at these awards
    /// and flows: their shadow prices must be zero (complementary slackness, 3.5).
    pub(crate) fn slack_cuts(&self, flat: &[i64], flows: &[i64]) -> Vec<bool> {
        if self.cuts.is_empty() {
            return Vec::new();
        }
        let mut bid_injection = vec![0i128; self.bids.len()];
        for row in &self.rows {
            let x = i128::from(flat[row.flat()]);
            bid_injection[row.bid()] += if row.sell() { x } else { -x };
        }
        let tol = i128::from(CUT_TOLERANCE.0) * FINE;
        self.cut_sides(&bid_injection, flows)
            .iter()
            .zip(&self.cuts)
            .map(|(&lhs, &c)| lhs < i128::from(self.input.cuts[c].limit.0) * FINE - tol)
            .collect()
    }

    /// Cuts hold within [`CUT_TOLERANCE`]; shadow prices are non-negative, and zero for a cut
    /// slack by more than the tolerance.
    fn check_cuts(
        &self,
        bid_injection: &[i128],
        flows: &[i64],
        mu: &[i64],
    ) -> Result<(), ClearingMismatch> {
        if self.cuts.is_empty() {
            return Ok(());
        }
        let lhs = self.cut_sides(bid_injection, flows);
        let tol = i128::from(CUT_TOLERANCE.0) * FINE;
        for (k, &c) in self.cuts.iter().enumerate() {
            let cut = &self.input.cuts[c];
            let limit = i128::from(cut.limit.0) * FINE;
            if !cut.honoured_by(lhs[k]) {
                return Err(mismatch(
                    format!(
                        "cut {c} (label {}) for {}",
                        cut.label,
                        product_label(&self.product)
                    ),
                    format!("left-hand side {} millionths of a kWh", lhs[k]),
                    format!("at most its limit {} plus {}", cut.limit, CUT_TOLERANCE),
                ));
            }
            if mu[k] < 0 {
                return Err(mismatch(
                    format!("cut shadow price {c}"),
                    Price(mu[k]),
                    "not negative",
                ));
            }
            if mu[k] > 0 && lhs[k] < limit - tol {
                return Err(mismatch(
                    format!("cut shadow price {c}"),
                    Price(mu[k]),
                    format!("zero: cut {c} is slack by more than {}", CUT_TOLERANCE),
                ));
            }
        }
        Ok(())
    }

    /// Per-zone bounds of the consistent prices that the steps impose (spec 3.4), fine units.
    fn zone_bounds(
        &self,
        flat: &[i64],
        bid_offset: &[i128],
        range: (i128, i128),
    ) -> (Vec<i128>, Vec<i128>) {
        let (clip_lo, clip_hi) = range;
        let mut lo = vec![clip_lo; self.zones];
        let mut hi = vec![clip_hi; self.zones];
        for r in &self.rows {
            let i = r.bid();
            let z = self.zone_of[i];
            let x = flat[r.flat()];
            // The location's price is the zone price minus the offset.
            let at = i128::from(r.price) * FINE + offset(bid_offset, i);
            let (floor, ceil) = if r.sell() {
                (x > 0, x < r.quantity)
            } else {
                (x < r.quantity, x > 0)
            };
            if floor && at - self.tau > lo[z] {
                lo[z] = at - self.tau;
            }
            if ceil && at + self.tau < hi[z] {
                hi[z] = at + self.tau;
            }
        }
        (lo, hi)
    }

    /// The canonical prices from the steps' bounds and the lines' constraints: the midpoint of
    /// the lowest and highest consistent vectors, rounded to the nearest tick, halves down.
    /// `Err(zone)` if no vector is consistent.
    fn settle(
        &self,
        lo: &[i128],
        hi: &[i128],
        flows: &[i64],
        line_offset: &[i128],
    ) -> Result<Vec<i128>, usize> {
        let tau = self.tau;
        // Line constraints: lower <= price[to] - price[from] <= upper.
        let links: Vec<(usize, usize, Option<i128>, Option<i128>)> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.forward > 0 || l.backward > 0)
            .map(|(k, l)| {
                let f = flows[k];
                let upper = (f < l.forward).then_some(line_offset[k] + tau);
                let lower = (f > -l.backward).then_some(line_offset[k] - tau);
                (l.from, l.to, lower, upper)
            })
            .collect();
        let mut low = lo.to_vec();
        let mut high = hi.to_vec();
        // Bellman-Ford relaxation: without a positive cycle it settles within `zones` rounds.
        for round in 0..=self.zones + 1 {
            let mut changed = false;
            for &(from, to, lower, upper) in &links {
                if let Some(d) = lower {
                    if low[from] + d > low[to] {
                        low[to] = low[from] + d;
                        changed = true;
                    }
                    if high[to] - d < high[from] {
                        high[from] = high[to] - d;
                        changed = true;
                    }
                }
                if let Some(d) = upper {
                    if low[to] - d > low[from] {
                        low[from] = low[to] - d;
                        changed = true;
                    }
                    if high[from] + d < high[to] {
                        high[to] = high[from] + d;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
            if round == self.zones + 1 {
                return Err(0);
            }
        }
        if let Some(z) = (0..self.zones).find(|&z| low[z] > hi[z] || high[z] < lo[z]) {
            return Err(z);
        }
        if let Some(z) = (0..self.zones).find(|&z| low[z] > high[z]) {
            return Err(z);
        }
        let tick = self.tick_fine();
        // Without cuts the midpoint is a multiple of half a tick, and this rounds it down.
        Ok((0..self.zones)
            .map(|z| round_to_tick(low[z] + high[z], 2 * tick) / 2)
            .collect())
    }

    /// The canonical prices (spec C3) of the awards, flows and cut shadow prices `mu` (raw
    /// price units, one per cut of the market). `Err(zone)` if no price vector is consistent.
    pub fn canonical_prices(
        &self,
        flat: &[i64],
        flows: &[i64],
        mu: &[i64],
    ) -> Result<Priced, usize> {
        let (bid_offset, line_offset) = self.offsets(mu);
        let range = self.range(&bid_offset, &line_offset);
        let (lo, hi) = self.zone_bounds(flat, &bid_offset, range);
        let zone_price = self.settle(&lo, &hi, flows, &line_offset)?;
        Ok(Priced {
            zone_price,
            bid_offset,
        })
    }

    /// One pass over the steps for verification at the published zone prices (fine units):
    /// step quantities, injections, the steps' price bounds, complementary slackness, the
    /// marginal steps and both objectives' step terms.
    fn scan(
        &self,
        flat: &[i64],
        bid_offset: &[i128],
        published: &[i128],
        range: (i128, i128),
    ) -> Result<Scan, ClearingMismatch> {
        let (clip_lo, clip_hi) = range;
        let tau = self.tau;
        let mut out = Scan {
            injection: vec![0; self.zones],
            bid_injection: vec![
                0;
                if self.cuts.is_empty() {
                    0
                } else {
                    self.bids.len()
                }
            ],
            lo: vec![clip_lo; self.zones],
            hi: vec![clip_hi; self.zones],
            violation: None,
            marginal: Vec::new(),
            dual: 0,
            primal: 0,
            volume: 0,
        };
        for (j, row) in self.rows.iter().enumerate() {
            let i = row.bid();
            let z = self.zone_of[i];
            let x = flat[row.flat()];
            if x > row.quantity {
                let id = self.input.bids[self.bids[i]].0;
                return Err(mismatch(
                    format!("award of bid {id:?} step {}", self.step_of(row)),
                    format!("quantity {}", Quantity(x)),
                    format!("at most the step's {}", Quantity(row.quantity)),
                ));
            }
            let signed = i128::from(if row.sell() { x } else { -x });
            out.injection[z] += signed;
            if let Some(b) = out.bid_injection.get_mut(i) {
                *b += signed;
            }
            let limit = i128::from(row.price) * FINE;
            let at = limit + offset(bid_offset, i);
            let (floor, ceil) = if row.sell() {
                (x > 0, x < row.quantity)
            } else {
                (x < row.quantity, x > 0)
            };
            if floor && at - tau > out.lo[z] {
                out.lo[z] = at - tau;
            }
            if ceil && at + tau < out.hi[z] {
                out.hi[z] = at + tau;
            }
            // Reduced profit of one more kWh for the bidder at the published price.
            let local = published[z] - offset(bid_offset, i);
            let r = if row.sell() {
                local - limit
            } else {
                limit - local
            };
            if out.violation.is_none() && ((x > 0 && r < -tau) || (x < row.quantity && r > tau)) {
                out.violation = Some(j);
            }
            if r.abs() <= tau {
                out.marginal.push(j);
            }
            let q = i128::from(row.quantity);
            out.dual += q * r.max(0);
            out.primal -= limit * signed;
            out.volume += q;
        }
        // Sales enter the primal objective negatively and purchases positively.
        Ok(out)
    }

    /// The complementary-slackness violation of step `row` at `published` prices, named.
    fn row_mismatch(
        &self,
        row: usize,
        flat: &[i64],
        bid_offset: &[i128],
        published: &[i128],
    ) -> ClearingMismatch {
        let r = &self.rows[row];
        let i = r.bid();
        let id = self.input.bids[self.bids[i]].0;
        let local = published[self.zone_of[i]] - offset(bid_offset, i);
        let limit = i128::from(r.price) * FINE;
        let gain = if r.sell() {
            local - limit
        } else {
            limit - local
        };
        mismatch(
            format!("award of bid {id:?} step {}", self.step_of(r)),
            format!("{} of {}", Quantity(flat[r.flat()]), Quantity(r.quantity)),
            format!(
                "{} at limit price {} where the clearing price is {}",
                if gain > 0 { "all" } else { "nothing" },
                Price(r.price),
                fine_label(local)
            ),
        )
    }

    /// The first line whose flow violates complementary slackness at `prices`, named.
    fn line_violation(
        &self,
        flows: &[i64],
        line_offset: &[i128],
        prices: &[i128],
    ) -> Option<ClearingMismatch> {
        for (k, l) in self.lines.iter().enumerate() {
            let g = prices[l.to] - prices[l.from] - line_offset[k];
            let f = flows[k];
            if (f < l.forward && g > self.tau) || (f > -l.backward && g < -self.tau) {
                return Some(mismatch(
                    format!(
                        "tie-line flow of line {} for {}",
                        self.input.tie_lines[l.index].id,
                        product_label(&self.product)
                    ),
                    Quantity(f),
                    format!(
                        "at its capacity toward the dearer end (price difference {})",
                        fine_label(g)
                    ),
                ));
            }
        }
        None
    }

    /// Submission-time priority among interchangeable steps (spec C4): among the steps of one
    /// zone, side, limit price and cut coefficients that are marginal (reduced profit within
    /// the tolerance, listed in `marginal`), no step gets energy while an earlier one is not
    /// full.
    fn check_priority(&self, flat: &[i64], marginal: &[usize]) -> Result<(), ClearingMismatch> {
        type Key = (usize, bool, i64, u32);
        type Rank = ((Timestamp, Digest), usize, usize);
        let mut classes: BTreeMap<Key, (Option<Rank>, Option<Rank>)> = BTreeMap::new();
        for &j in marginal {
            let row = &self.rows[j];
            let i = row.bid();
            let p = self.bids[i];
            let x = flat[row.flat()];
            let rank = (self.input.priority(p), p, self.step_of(row));
            let key = (self.zone_of[i], row.sell(), row.price, self.signature[i]);
            let e = classes.entry(key).or_default();
            if x > 0 && e.0.is_none_or(|r| r < rank) {
                e.0 = Some(rank);
            }
            if x < row.quantity && e.1.is_none_or(|r| r > rank) {
                e.1 = Some(rank);
            }
        }
        for (last_filled, first_open) in classes.values() {
            if let (Some(a), Some(b)) = (last_filled, first_open) {
                if a > b {
                    let (id, _) = self.input.bids[a.1];
                    let (earlier, _) = self.input.bids[b.1];
                    return Err(mismatch(
                        format!("award of bid {id:?} step {}", a.2),
                        format!(
                            "{} while bid {earlier:?}, earlier in priority at the same price, is not full",
                            Quantity(flat[self.layout.at(a.1, a.2)])
                        ),
                        "equal bids filled by submission time, then id",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Equal objectives: the dual objective at the prices equals the welfare of the awards,
    /// within the bound the tolerances allow (exactly, for a product without cuts). Returns
    /// the welfare.
    fn check_objectives(
        &self,
        scan: &Scan,
        mu: &[i64],
        prices: &[i128],
        line_offset: &[i128],
    ) -> Result<Money, ClearingMismatch> {
        let mut dual = scan.dual;
        let mut volume = scan.volume;
        for (k, l) in self.lines.iter().enumerate() {
            let g = prices[l.to] - prices[l.from] - line_offset[k];
            dual += i128::from(l.forward) * g.max(0) + i128::from(l.backward) * (-g).max(0);
            volume += i128::from(l.forward) + i128::from(l.backward);
        }
        let mut slack_bound: i128 = 0;
        for (k, &c) in self.cuts.iter().enumerate() {
            let m = i128::from(mu[k]);
            dual += m * i128::from(self.input.cuts[c].limit.0) * FINE;
            slack_bound += m * i128::from(CUT_TOLERANCE.0) * FINE;
        }
        let bound = self.tau * volume + slack_bound;
        if (dual - scan.primal).abs() > bound {
            return Err(mismatch(
                format!("objective for {}", product_label(&self.product)),
                format!(
                    "welfare {} with dual objective {}",
                    Money(scan.primal / FINE),
                    Money(dual / FINE)
                ),
                format!("equal within {}", Money(bound / FINE)),
            ));
        }
        Ok(Money(scan.primal / FINE))
    }

    /// Everything published from the awards, flows and prices of this product: area prices,
    /// bus prices, flows, and each bid's trade price (into `trade_price`, by input position).
    pub fn publish(
        &self,
        flows: &[i64],
        priced: &Priced,
        trade_price: &mut [Option<Price>],
        out: &mut ClearingOutcome,
    ) {
        let tick = self.tick_fine();
        for (z_or_all, area) in self.input.areas.iter().enumerate() {
            let z = match self.mode {
                Mode::OneZone => 0,
                Mode::Zonal => z_or_all,
            };
            out.area_prices.push(AreaPrice {
                product: self.product,
                area: area.id,
                price: Price((priced.zone_price[z] / FINE) as i64),
            });
        }
        for (k, l) in self.lines.iter().enumerate() {
            out.flows.push(TieFlow {
                product: self.product,
                tie_line: self.input.tie_lines[l.index].id,
                flow: Quantity(flows[k]),
            });
        }
        let local = |i: usize| {
            let v = priced.zone_price[self.zone_of[i]] - offset(&priced.bid_offset, i);
            // Zone prices are on the tick already; only an offset needs rounding.
            let v = if offset(&priced.bid_offset, i) == 0 {
                v
            } else {
                round_to_tick(v, tick)
            };
            Price((v / FINE) as i64)
        };
        for (i, &p) in self.bids.iter().enumerate() {
            trade_price[p] = Some(local(i));
        }
        if !self.cuts.is_empty() {
            // A bus has a price when all its bids share their zone and cut coefficients.
            let mut buses: BTreeMap<BusId, Option<(usize, usize, u32)>> = BTreeMap::new();
            for (i, &p) in self.bids.iter().enumerate() {
                if let Some(b) = self.input.bids[p].1.bus {
                    let me = (i, self.zone_of[i], self.signature[i]);
                    buses
                        .entry(b)
                        .and_modify(|e| {
                            if e.is_some_and(|(_, z, s)| (z, s) != (me.1, me.2)) {
                                *e = None;
                            }
                        })
                        .or_insert(Some(me));
                }
            }
            for (bus, e) in buses {
                if let Some((i, _, _)) = e {
                    out.bus_prices.push(BusPrice {
                        product: self.product,
                        bus,
                        price: local(i),
                    });
                }
            }
        }
    }
}

/// A bid's offset from its zone price: zero where the market has no cuts (empty offsets).
fn offset(offsets: &[i128], i: usize) -> i128 {
    offsets.get(i).copied().unwrap_or(0)
}

/// Rounds a fine price to the nearest multiple of `tick` (fine units), halves down.
pub(crate) fn round_to_tick(v: i128, tick: i128) -> i128 {
    let d = v.div_euclid(tick);
    let r = v.rem_euclid(tick);
    if 2 * r > tick {
        (d + 1) * tick
    } else {
        d * tick
    }
}

fn fine_label(v: i128) -> String {
    crate::units::format_decimal(v, Price::DECIMALS + 6)
}

/// The trades of a pool rule: one per bid with energy accepted, at its location's price.
/// Calls `each` with every trade, in order.
pub(crate) fn pool_trades(
    input: &ClearingInput<'_>,
    markets: &[Market<'_, '_>],
    flat: &[i64],
    trade_price: &[Option<Price>],
    mut each: impl FnMut(Trade),
) {
    let mut totals = vec![0i64; input.bids.len()];
    for m in markets {
        m.add_totals(flat, &mut totals);
    }
    for (pos, &q) in totals.iter().enumerate() {
        if q > 0 {
            let (id, bid) = input.bids[pos];
            each(Trade {
                bid: id,
                participant: bid.participant,
                side: bid.side,
                area: bid.area,
                bus: bid.bus,
                product: bid.product,
                quantity: Quantity(q),
                price: trade_price[pos].unwrap_or(Price::ZERO),
                counterparty: None,
            });
        }
    }
}

/// Assembles a pool outcome from awards, flows and shadow prices per product, pricing each
/// product by the canonical rule. Used by the primary after its own optimisation.
pub(crate) fn assemble(
    input: &ClearingInput<'_>,
    mode: Mode,
    layout: &Layout,
    markets: &[Market<'_, '_>],
    flat: &[i64],
    flows: &[Vec<i64>],
    mu: &[Vec<i64>],
) -> Result<Cleared, ClearingError> {
    let mut out = ClearingOutcome {
        cut_prices: vec![
            Price::ZERO;
            match mode {
                Mode::Zonal => input.cuts.len(),
                Mode::OneZone => 0,
            }
        ],
        ..ClearingOutcome::default()
    };
    let mut trade_price = vec![None; input.bids.len()];
    let index: Vec<usize> = (0..markets.len()).collect();
    let prices = super::parallel_map(
        &index,
        || (),
        |_, &m| markets[m].canonical_prices(flat, &flows[m], &mu[m]),
    );
    for ((m, market), priced) in markets.iter().enumerate().zip(prices) {
        let priced = priced.map_err(|z| {
            ClearingError::Solver(format!(
                "no price of {} for {} is consistent with the solution",
                market.zone_name(z),
                product_label(&market.product)
            ))
        })?;
        market.publish(&flows[m], &priced, &mut trade_price, &mut out);
        for (k, &c) in market.cuts.iter().enumerate() {
            out.cut_prices[c] = Price(mu[m][k]);
        }
    }
    out.area_prices.sort();
    out.bus_prices.sort();
    out.flows.sort();
    out.awards = awards_of(input, layout, flat);
    let mut trades = Vec::new();
    pool_trades(input, markets, flat, &trade_price, |t| trades.push(t));
    out.welfare = Money(markets.iter().map(|m| m.welfare(flat)).sum());
    out.congestion_rent = rent_of(&trades);
    Ok(Cleared {
        outcome: out,
        trades,
    })
}

/// The market of every product, built on every core (spec 3.1), in product order.
pub(crate) fn markets_of<'i, 'a>(
    input: &'i ClearingInput<'a>,
    layout: &'i Layout,
    mode: Mode,
    products: &[(Product, Vec<usize>)],
) -> Result<Vec<Market<'i, 'a>>, ClearingError> {
    super::parallel_map(
        products,
        || (),
        |_, (product, bids)| Market::new(input, layout, mode, *product, bids.clone()),
    )
    .into_iter()
    .collect()
}

/// What one product's checks establish: its flows and cut prices as published, its canonical
/// prices, and its part of the welfare.
struct Checked {
    flows: Vec<i64>,
    mu: Vec<i64>,
    priced: Priced,
    welfare: i128,
}

/// Checks one product of a proposed pool outcome (spec 3.5), whose flows start at row
/// `flow_row` and area prices at row `area_row` of the outcome.
fn check_product(
    input: &ClearingInput<'_>,
    mode: Mode,
    o: &ClearingOutcome,
    market: &Market<'_, '_>,
    flat: &[i64],
    flow_row: usize,
    area_row: usize,
) -> Result<Checked, ClearingMismatch> {
    let label = product_label(&market.product);
    let mut flows = Vec::with_capacity(market.lines.len());
    let mut sorted: Vec<_> = market
        .lines
        .iter()
        .map(|l| input.tie_lines[l.index].id)
        .collect();
    sorted.sort();
    for l in &market.lines {
        let id = input.tie_lines[l.index].id;
        let row = flow_row + sorted.binary_search(&id).unwrap_or(0);
        match o.flows.get(row) {
            Some(f) if f.product == market.product && f.tie_line == id => flows.push(f.flow.0),
            _ => {
                return Err(mismatch(
                    format!("tie-line flow {row}"),
                    o.flows
                        .get(row)
                        .map_or("nothing".into(), |f| format!("{f:?}")),
                    format!("the flow of line {id} for {label}"),
                ));
            }
        }
    }
    let mu: Vec<i64> = market.cuts.iter().map(|&c| o.cut_prices[c].0).collect();
    market.check_lines(&flows)?;
    // Published zone prices.
    let mut published = vec![None::<i128>; market.zones];
    let mut by_area: Vec<(AreaId, usize)> = input
        .areas
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id, i))
        .collect();
    by_area.sort();
    for (k, &(area, ai)) in by_area.iter().enumerate() {
        let row = area_row + k;
        let Some(ap) = o
            .area_prices
            .get(row)
            .filter(|p| p.product == market.product && p.area == area)
        else {
            return Err(mismatch(
                format!("area price {row}"),
                o.area_prices
                    .get(row)
                    .map_or("nothing".into(), |p| format!("{p:?}")),
                format!("the price of area {area} for {label}"),
            ));
        };
        let z = if mode == Mode::Zonal { ai } else { 0 };
        let v = i128::from(ap.price.0) * FINE;
        match published[z] {
            Some(w) if w != v => {
                return Err(mismatch(
                    format!("area price of area {area} for {label}"),
                    ap.price,
                    format!(
                        "{} (one price for the whole market)",
                        Price((w / FINE) as i64)
                    ),
                ));
            }
            _ => published[z] = Some(v),
        }
    }
    let published: Vec<i128> = published.into_iter().map(|p| p.unwrap_or(0)).collect();
    // One pass over the steps, then the checks in the order of spec 3.5.
    let (bid_offset, line_offset) = market.offsets(&mu);
    let range = market.range(&bid_offset, &line_offset);
    let scan = market.scan(flat, &bid_offset, &published, range)?;
    market.check_balance(&scan.injection, &flows)?;
    market.check_cuts(&scan.bid_injection, &flows, &mu)?;
    let violation = || {
        scan.violation
            .map(|j| market.row_mismatch(j, flat, &bid_offset, &published))
            .or_else(|| market.line_violation(&flows, &line_offset, &published))
    };
    let canonical = match market.settle(&scan.lo, &scan.hi, &flows, &line_offset) {
        Ok(p) => p,
        Err(z) => {
            return Err(violation().unwrap_or_else(|| {
                mismatch(
                    format!("area price of {} for {label}", market.zone_name(z)),
                    fine_label(published[z]),
                    "a price consistent with the awards and flows; there is none",
                )
            }));
        }
    };
    let differs = canonical.iter().zip(&published).position(|(a, b)| a != b);
    if let Some(z) = differs {
        return Err(mismatch(
            format!("area price of {} for {label}", market.zone_name(z)),
            fine_label(published[z]),
            fine_label(canonical[z]),
        ));
    }
    // Without cuts the canonical prices satisfy complementary slackness by construction
    // (spec 3.4); with cuts their rounding to the tick is checked against the tolerance.
    if let Some(v) = violation() {
        return Err(v);
    }
    market.check_priority(flat, &scan.marginal)?;
    let welfare = market
        .check_objectives(&scan, &mu, &published, &line_offset)?
        .0;
    Ok(Checked {
        flows,
        mu,
        priced: Priced {
            zone_price: canonical,
            bid_offset,
        },
        welfare,
    })
}

/// Verifies a proposed pool outcome by its certificate (spec C5). `zonal` selects the zonal
/// form (flows and cut shadow prices published) over the one-zone form.
pub(crate) fn verify(
    input: &ClearingInput<'_>,
    mode: Mode,
    proposed: &Cleared,
) -> Result<(), VerifyError> {
    let (layout, products) = Layout::new(input);
    let flat =
        read_awards(input, &layout, &proposed.outcome.awards).map_err(VerifyError::Mismatch)?;
    let markets = markets_of(input, &layout, mode, &products).map_err(VerifyError::Clearing)?;
    let o = &proposed.outcome;
    let mismatch_err = |m: ClearingMismatch| VerifyError::Mismatch(m);
    // Published rows must cover exactly the expected keys, in canonical order.
    let want_cut_prices = if mode == Mode::Zonal {
        input.cuts.len()
    } else {
        0
    };
    if o.cut_prices.len() != want_cut_prices {
        return Err(mismatch_err(mismatch(
            "cut shadow prices".into(),
            format!("{} rows", o.cut_prices.len()),
            format!("{want_cut_prices} rows, one per cut"),
        )));
    }
    let mut expected = ClearingOutcome {
        cut_prices: vec![Price::ZERO; want_cut_prices],
        ..ClearingOutcome::default()
    };
    let mut trade_price = vec![None; input.bids.len()];
    let mut welfare: i128 = 0;
    // Each product's rows start where the products before it end.
    let mut rows = Vec::with_capacity(markets.len());
    let (mut flow_row, mut area_row) = (0usize, 0usize);
    for market in &markets {
        rows.push((market, flow_row, area_row));
        flow_row += market.lines.len();
        area_row += input.areas.len();
    }
    // Products are checked on every core (spec 3.1); the first that fails names the error.
    let checked = super::parallel_map(
        &rows,
        || (),
        |_, &(market, flow_row, area_row)| {
            check_product(input, mode, o, market, &flat, flow_row, area_row)
        },
    );
    for (market, result) in markets.iter().zip(checked) {
        let Checked {
            flows,
            mu,
            priced,
            welfare: w,
        } = result.map_err(mismatch_err)?;
        welfare += w;
        for (k, &c) in market.cuts.iter().enumerate() {
            expected.cut_prices[c] = Price(mu[k]);
        }
        market.publish(&flows, &priced, &mut trade_price, &mut expected);
    }
    expected.area_prices.sort();
    expected.bus_prices.sort();
    expected.flows.sort();
    // Trades are derived and compared one by one, without building the list.
    let mut k = 0usize;
    let mut rent: i128 = 0;
    let mut bad_trade = None;
    expected.welfare = Money(welfare);
    pool_trades(input, &markets, &flat, &trade_price, |t| {
        let v = t.price.times(t.quantity).0;
        rent += if t.side == Side::Buy { v } else { -v };
        if bad_trade.is_none() && proposed.trades.get(k) != Some(&t) {
            bad_trade = Some(mismatch(
                format!("trade {k}"),
                proposed
                    .trades
                    .get(k)
                    .map_or("nothing".into(), |p| format!("{p:?}")),
                format!("{t:?}"),
            ));
        }
        k += 1;
    });
    if bad_trade.is_none() && proposed.trades.len() > k {
        bad_trade = Some(mismatch(
            format!("trade {k}"),
            format!("{:?}", proposed.trades[k]),
            "nothing",
        ));
    }
    expected.congestion_rent = Money(rent);
    super::compare_parts(
        &Cleared {
            outcome: expected,
            trades: Vec::new(),
        },
        proposed,
        false,
        false,
    )
    .map_err(mismatch_err)?;
    bad_trade.map_or(Ok(()), |m| Err(mismatch_err(m)))
}
