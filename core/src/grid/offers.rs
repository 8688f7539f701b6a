//! Bids from a MATPOWER case: generator offers from its cost curves and demand bids from its
//! loads, by a documented conversion (spec 3.8; `data/rts-gmlc/README.md`).
//!
//! For a delivery period of `h` hours, with quantities in whole kWh and prices on the
//! consortium's tick:
//!
//! - An in-service generator with `Pmax > 0` sells. Its cost curve is taken on
//!   `[Pmin, Pmax]`: piecewise-linear costs (model 1) by their breakpoints, interpolated at
//!   `Pmin` and `Pmax` if they lie between breakpoints, then replaced by their lower convex
//!   envelope (a non-convex curve cannot be a merit order); linear polynomial costs (model 2 of
//!   degree at most 1, or with zero higher coefficients) as one segment; polynomial costs of
//!   higher degree (most public cases are quadratic) as the chord curve of
//!   [`DEFAULT_POLYNOMIAL_SEGMENTS`] segments (an option): breakpoints equally spaced over
//!   `[Pmin, Pmax]`, the cost evaluated exactly at each, then as a piecewise-linear curve.
//!   Its minimum output
//!   `Pmin * h` is offered at the price floor (it must run: a committed unit is dispatched at
//!   least to its minimum, as in a DC optimal power flow); each segment of the curve above it
//!   is a step at the segment's slope rounded to the nearest tick, for the kWh between its
//!   breakpoints (each breakpoint `P * h` rounded to the nearest kWh). Steps whose rounded
//!   prices are equal are merged. The cost at `Pmin` is not in any step: it is the unit's
//!   fixed cost, the same in every dispatch that runs it.
//! - A bus with positive demand `Pd` buys `Pd * h` at the price cap (price-inelastic demand:
//!   served whenever the grid allows). A negative demand is a fixed injection, sold at the
//!   price floor.
//!
//! The total generation cost of a dispatch is then the case's cost function evaluated at it:
//! the fixed costs plus every accepted step above the minimum at its price
//! ([`Offer::cost`]).

use crate::genesis::ClearingParams;
use crate::market::{BidStep, MAX_BID_STEPS, Side};
use crate::units::{Price, Quantity};

use super::{Case, GenCost};

/// Why a case's costs cannot be turned into bids.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OfferError {
    /// The generator has no cost row.
    #[error("generator row {0} has no cost row")]
    NoCost(usize),
    /// A polynomial cost of degree above 1 with no segments to approximate it by.
    #[error(
        "generator row {0}: polynomial cost of degree above 1 and no segments to approximate it"
    )]
    NotPiecewiseLinear(usize),
    /// The cost curve does not cover the generator's range.
    #[error("generator row {row}: {reason}")]
    Curve {
        /// The generator row (from 1).
        row: usize,
        /// What is wrong.
        reason: String,
    },
    /// A price falls outside the consortium's floor and cap.
    #[error("{what}: price {price} is outside the floor and cap")]
    Price {
        /// Which generator or load.
        what: String,
        /// The price, currency/MWh.
        price: f64,
    },
}

/// Where an offer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OfferSource {
    /// A generator: its row in `mpc.gen` (from 1).
    Generator(usize),
    /// The demand at a bus.
    Load(u32),
}

/// A bid curve made from a generator or a load of a case.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// What it comes from.
    pub source: OfferSource,
    /// The bus it is located at.
    pub bus: u32,
    /// The bus's MATPOWER area.
    pub area: u32,
    /// Sell for a generator, buy for a load.
    pub side: Side,
    /// The steps (at most [`MAX_BID_STEPS`]).
    pub steps: Vec<BidStep>,
    /// The kWh of the first step that are the generator's minimum output, offered at the
    /// floor (zero if none).
    pub must_run: Quantity,
    /// The case's cost at the minimum output, currency per delivery period.
    pub fixed_cost: f64,
}

impl Offer {
    /// The case's generation cost of accepting `awards[k]` kWh of step `k`: the fixed cost
    /// plus every step above the minimum output at its price. Zero for a load.
    pub fn cost(&self, awards: &[Quantity]) -> f64 {
        if self.side == Side::Buy {
            return 0.0;
        }
        let skip = usize::from(self.must_run > Quantity::ZERO);
        self.fixed_cost
            + self
                .steps
                .iter()
                .zip(awards)
                .skip(skip)
                .map(|(s, q)| s.price.to_f64() * q.to_f64())
                .sum::<f64>()
    }
}

/// The nearest kWh to `mw` over `hours`.
fn kwh(mw: f64, hours: f64) -> i64 {
    (mw * hours * Quantity::SCALE as f64).round() as i64
}

/// The lower convex envelope of points sorted by abscissa (Andrew's monotone chain).
fn lower_envelope(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(points.len());
    for &p in points {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // Drop b if it lies on or above the segment a-p.
            if (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0) <= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

/// How many chord segments a polynomial cost of degree above 1 becomes, unless asked
/// otherwise.
pub const DEFAULT_POLYNOMIAL_SEGMENTS: u32 = 20;

/// The cost curve of a generator on `[pmin, pmax]`, as breakpoints (MW, currency/h); a
/// polynomial of degree above 1 as its chord curve of `segments` equal segments.
fn curve(
    row: usize,
    cost: &GenCost,
    pmin: f64,
    pmax: f64,
    segments: u32,
) -> Result<Vec<(f64, f64)>, OfferError> {
    let bad = |reason: String| OfferError::Curve { row, reason };
    match cost {
        GenCost::Polynomial(c) => {
            let n = c.len();
            if c.iter().take(n.saturating_sub(2)).any(|&a| a != 0.0) {
                if segments == 0 {
                    return Err(OfferError::NotPiecewiseLinear(row));
                }
                // Horner's rule, highest coefficient first, as MATPOWER lists them.
                let at = |p: f64| c.iter().fold(0.0, |acc, &a| acc * p + a);
                let step = (pmax - pmin) / f64::from(segments);
                return Ok((0..=segments)
                    .map(|k| {
                        let p = if k == segments {
                            pmax
                        } else {
                            pmin + step * f64::from(k)
                        };
                        (p, at(p))
                    })
                    .collect());
            }
            let slope = if n >= 2 { c[n - 2] } else { 0.0 };
            let at = |p: f64| slope * p + c.last().copied().unwrap_or(0.0);
            Ok(vec![(pmin, at(pmin)), (pmax, at(pmax))])
        }
        GenCost::PiecewiseLinear(pts) => {
            if pts.len() < 2 || pts.windows(2).any(|w| w[1].0 < w[0].0) {
                return Err(bad("breakpoints are fewer than two or not ascending".into()));
            }
            let (first, last) = (pts[0].0, pts[pts.len() - 1].0);
            let tol = 1e-6 * (1.0 + pmax.abs());
            if first > pmin + tol || last < pmax - tol {
                return Err(bad(format!(
                    "breakpoints span [{first}, {last}] MW, the unit runs over [{pmin}, {pmax}]"
                )));
            }
            let at = |p: f64| {
                pts.windows(2)
                    .find(|w| p <= w[1].0 && w[1].0 > w[0].0)
                    .map_or(pts[pts.len() - 1].1, |w| {
                        w[0].1 + (w[1].1 - w[0].1) * (p - w[0].0) / (w[1].0 - w[0].0)
                    })
            };
            let mut out = vec![(pmin, at(pmin))];
            out.extend(
                pts.iter()
                    .copied()
                    .filter(|&(p, _)| p > pmin + tol && p < pmax - tol),
            );
            out.push((pmax, at(pmax)));
            Ok(out)
        }
    }
}

/// The nearest price on the tick to `x` currency/MWh, if within the floor and cap.
fn on_tick(x: f64, params: &ClearingParams) -> Option<Price> {
    let tick = params.price_tick.0 as f64;
    let raw = (x * Price::SCALE as f64 / tick).round() * tick;
    let p = Price(raw as i64);
    (raw.is_finite() && p >= params.price_floor && p <= params.price_cap).then_some(p)
}

/// The offers of every in-service generator with positive `Pmax` (in `mpc.gen` order), then
/// the demand bids of every bus with non-zero demand (in `mpc.bus` order), for a delivery
/// period of `minutes`, polynomial costs of degree above 1 as chord curves of
/// `polynomial_segments` segments (0 refuses them).
pub fn case_offers(
    case: &Case,
    params: &ClearingParams,
    minutes: u32,
    polynomial_segments: u32,
) -> Result<Vec<Offer>, OfferError> {
    let hours = f64::from(minutes) / 60.0;
    let area_of = |bus: u32| {
        case.buses
            .iter()
            .find(|b| b.id == bus)
            .map_or(0, |b| b.area)
    };
    let mut offers = Vec::new();
    for (i, g) in case.generators.iter().enumerate() {
        let row = i + 1;
        if !g.in_service || g.pmax <= 0.0 {
            continue;
        }
        let cost = case.costs.get(i).ok_or(OfferError::NoCost(row))?;
        let points = lower_envelope(&curve(
            row,
            cost,
            g.pmin.max(0.0),
            g.pmax,
            polynomial_segments,
        )?);
        let what = || format!("generator row {row}");
        let mut steps: Vec<BidStep> = Vec::new();
        let must_run = Quantity(kwh(points[0].0, hours));
        if must_run > Quantity::ZERO {
            steps.push(BidStep {
                price: params.price_floor,
                quantity: must_run,
            });
        }
        for w in points.windows(2) {
            let quantity = Quantity(kwh(w[1].0, hours) - kwh(w[0].0, hours));
            if quantity <= Quantity::ZERO {
                continue;
            }
            let slope = (w[1].1 - w[0].1) / (w[1].0 - w[0].0);
            let price = on_tick(slope, params)
                .filter(|&p| p > params.price_floor)
                .ok_or_else(|| OfferError::Price {
                    what: what(),
                    price: slope,
                })?;
            match steps.last_mut() {
                Some(last) if last.price == price => last.quantity += quantity,
                _ => steps.push(BidStep { price, quantity }),
            }
        }
        if steps.is_empty() {
            continue;
        }
        if steps.len() > MAX_BID_STEPS {
            return Err(OfferError::Curve {
                row,
                reason: format!("{} steps exceed {MAX_BID_STEPS}", steps.len()),
            });
        }
        offers.push(Offer {
            source: OfferSource::Generator(row),
            bus: g.bus,
            area: area_of(g.bus),
            side: Side::Sell,
            steps,
            must_run,
            fixed_cost: points[0].1 * hours,
        });
    }
    for b in &case.buses {
        let q = kwh(b.pd.abs(), hours);
        if q == 0 {
            continue;
        }
        let (side, price, must_run) = if b.pd > 0.0 {
            (Side::Buy, params.price_cap, Quantity::ZERO)
        } else {
            (Side::Sell, params.price_floor, Quantity(q))
        };
        offers.push(Offer {
            source: OfferSource::Load(b.id),
            bus: b.id,
            area: b.area,
            side,
            steps: vec![BidStep {
                price,
                quantity: Quantity(q),
            }],
            must_run,
            fixed_cost: 0.0,
        });
    }
    Ok(offers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::ClearingRule;

    fn params() -> ClearingParams {
        ClearingParams {
            rule: ClearingRule::ZonalCoupling,
            price_tick: Price(1),
            price_floor: Price(-500 * Price::SCALE),
            price_cap: Price(3_000 * Price::SCALE),
        }
    }

    fn case(generator: &str, cost: &str) -> Case {
        Case::parse(&format!(
            "mpc.baseMVA = 100;\nmpc.bus = [1 3 50 0 0 0 1; 2 1 -5 0 0 0 1];\nmpc.gen = [{generator}];\nmpc.branch = [1 2 0 0.1 0 0 0 0 0 0 1];\nmpc.gencost = [{cost}];"
        ))
        .unwrap()
    }

    #[test]
    fn offers_follow_the_documented_conversion() {
        // Pmin 10, Pmax 40; a non-convex middle breakpoint is dropped by the envelope.
        let c = case(
            "1 0 0 0 0 1 100 1 40 10",
            "1 0 0 4 10 100 20 350 30 550 40 850",
        );
        let o = case_offers(&c, &params(), 60, 0).unwrap();
        assert_eq!(o.len(), 3, "a generator, a demand, a negative demand");
        let g = &o[0];
        assert_eq!(
            (g.side, g.must_run, g.fixed_cost),
            (Side::Sell, Quantity(10_000), 100.0)
        );
        let steps: Vec<(i64, i64)> = g.steps.iter().map(|s| (s.price.0, s.quantity.0)).collect();
        // Segments 25 and 20 /MWh are not convex: the envelope joins them at 22.5 over 20 MWh.
        assert_eq!(
            steps,
            vec![(-5_000_000, 10_000), (225_000, 20_000), (300_000, 10_000)]
        );
        // Cost at 25 MWh: fixed cost plus 15 MWh at 22.5.
        let awards = [Quantity(10_000), Quantity(15_000)];
        assert_eq!(g.cost(&awards), 100.0 + 15.0 * 22.5);
        assert_eq!(
            (o[1].side, o[1].steps[0].price, o[1].steps[0].quantity),
            (Side::Buy, params().price_cap, Quantity(50_000))
        );
        assert_eq!(
            (o[2].side, o[2].must_run, o[2].cost(&[Quantity(5_000)])),
            (Side::Sell, Quantity(5_000), 0.0)
        );
        // Half an hour halves every quantity; a linear polynomial is one step.
        let c = case("1 0 0 0 0 1 100 1 40 0", "2 0 0 2 14.5 0");
        let o = case_offers(&c, &params(), 30, 0).unwrap();
        assert_eq!(
            o[0].steps,
            vec![BidStep {
                price: Price(145_000),
                quantity: Quantity(20_000)
            }]
        );
        assert_eq!(o[0].must_run, Quantity::ZERO);
        // A quadratic cost is refused without segments to approximate it by.
        let c = case("1 0 0 0 0 1 100 1 40 0", "2 0 0 3 0.1 14.5 0");
        assert_eq!(
            case_offers(&c, &params(), 60, 0),
            Err(OfferError::NotPiecewiseLinear(1))
        );
    }

    /// A quadratic cost becomes its chord curve: the cost exact at every breakpoint, the
    /// slopes rising (convex), each step the chord's slope on the tick.
    #[test]
    fn a_quadratic_cost_becomes_its_chord_curve_exact_at_the_breakpoints() {
        // 0.1 P^2 + 14.5 P + 7 over [10, 50] MW, 4 segments of 10 MW.
        let c = case("1 0 0 0 0 1 100 1 50 10", "2 0 0 3 0.1 14.5 7");
        let cost = |p: f64| 0.1 * p * p + 14.5 * p + 7.0;
        for segments in [4u32, 20] {
            let o = case_offers(&c, &params(), 60, segments).unwrap();
            let g = &o[0];
            assert_eq!(g.must_run, Quantity(10_000));
            assert_eq!(g.fixed_cost, cost(10.0));
            assert_eq!(g.steps.len(), 1 + segments as usize, "{:?}", g.steps);
            let width = 40.0 / f64::from(segments);
            let mut at = 10.0;
            let mut total = g.fixed_cost;
            for (k, s) in g.steps[1..].iter().enumerate() {
                let chord = (cost(at + width) - cost(at)) / width;
                assert_eq!(s.price, on_tick(chord, &params()).unwrap(), "segment {k}");
                assert_eq!(s.quantity, Quantity((width * 1000.0).round() as i64));
                at += width;
                total += s.price.to_f64() * s.quantity.to_f64();
                // Exact at the breakpoint, up to the tick rounding of the slopes so far.
                let slack = 0.5e-4 * (at - 10.0);
                assert!(
                    (total - cost(at)).abs() <= slack + 1e-9,
                    "{total} vs {}",
                    cost(at)
                );
            }
            assert!(
                g.steps[1..].windows(2).all(|w| w[0].price < w[1].price),
                "convex"
            );
        }
        // Pmin = Pmax: only the must-run step.
        let c = case("1 0 0 0 0 1 100 1 30 30", "2 0 0 3 0.1 14.5 7");
        let o = case_offers(&c, &params(), 60, 20).unwrap();
        assert_eq!(o[0].steps.len(), 1);
    }
}
