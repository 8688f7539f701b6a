//! [`ZonalCoupling`]: areas joined by tie lines (transport model), welfare-maximising, zonal
//! prices, negotiation cuts (spec C5-C8).

use std::collections::{BTreeMap, VecDeque};

use good_lp::solvers::clarabel::clarabel;
use good_lp::{
    Expression, ProblemVariables, Solution, SolutionWithDual, SolverModel, Variable,
    constraint::ConstraintReference, variable,
};

use crate::genesis::ClearingRule;
use crate::market::Side;

use super::pool::{self, Layout, Market, Mode};
use super::{Cleared, Clearing, ClearingError, ClearingInput, VerifyError, parallel_map};

/// Zonal market coupling: per product, the welfare-maximising acceptance of bid steps and
/// tie-line flows subject to each area's balance, each tie line's capacity per direction and
/// every negotiation cut, solved as a linear programme (good_lp with the pure-Rust interior
/// point solver clarabel), then canonicalised to whole kWh and priced by the canonical price
/// rule (spec C3) from the optimal duals.
///
/// Interchangeable steps (same area, side, limit price and cut coefficients) enter the
/// programme as one variable and are filled by submission time, then id (C4). A proposal is
/// verified by an exact integer check of its optimality certificate (C5), never by comparing
/// floats, so every node reaches the same verdict.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZonalCoupling;

impl Clearing for ZonalCoupling {
    fn rule(&self) -> ClearingRule {
        ClearingRule::ZonalCoupling
    }

    fn clear(&self, input: &ClearingInput<'_>) -> Result<Cleared, ClearingError> {
        let (layout, products) = Layout::new(input);
        // Products are independent programmes (spec 3.1): built and solved on every core,
        // each worker writing its products' awards into its own copy of the flat array.
        let markets = pool::markets_of(input, &layout, Mode::Zonal, &products)?;
        let solved = parallel_map(
            &markets,
            || vec![0i64; layout.total()],
            |scratch, market| {
                let (flows, mu) = solve(market, scratch)?;
                let awards: Vec<i64> = market.rows.iter().map(|r| scratch[r.flat()]).collect();
                Ok::<_, ClearingError>((awards, flows, mu))
            },
        );
        let mut flat = vec![0i64; layout.total()];
        let mut flows = Vec::with_capacity(markets.len());
        let mut mus = Vec::with_capacity(markets.len());
        for (market, result) in markets.iter().zip(solved) {
            let (awards, f, mu) = result?;
            for (row, x) in market.rows.iter().zip(awards) {
                flat[row.flat()] = x;
            }
            flows.push(f);
            mus.push(mu);
        }
        let cleared = pool::assemble(input, Mode::Zonal, &layout, &markets, &flat, &flows, &mus)?;
        pool::verify(input, Mode::Zonal, &cleared).map_err(|e| {
            ClearingError::Solver(format!("the canonical solution does not verify: {e}"))
        })?;
        Ok(cleared)
    }

    fn verify(&self, input: &ClearingInput<'_>, proposed: &Cleared) -> Result<(), VerifyError> {
        pool::verify(input, Mode::Zonal, proposed)
    }
}

/// Interchangeable steps: one variable of the programme.
struct Class {
    zone: usize,
    side: Side,
    /// Limit price, currency/MWh.
    price: f64,
    /// A bid of the class (index into the market's bids), for its cut coefficients.
    bid: usize,
    /// (priority, flat index, quantity) of its steps.
    steps: Vec<((crate::units::Timestamp, crate::crypto::Digest), usize, i64)>,
    total: i64,
}

const KWH_PER_MWH: f64 = 1000.0;

/// Solves one product's programme and writes its awards into `flat`; returns the flows (kWh,
/// per market line) and cut shadow prices (raw price units, per market cut).
fn solve(market: &Market<'_, '_>, flat: &mut [i64]) -> Result<(Vec<i64>, Vec<i64>), ClearingError> {
    let input = market.input;
    let price_scale = crate::units::Price::SCALE as f64;
    // Classes of interchangeable steps.
    let mut index: BTreeMap<(usize, Side, i64, u32), usize> = BTreeMap::new();
    let mut classes: Vec<Class> = Vec::new();
    for (i, &p) in market.bids.iter().enumerate() {
        let bid = input.bids[p].1;
        for (s, step) in bid.steps.iter().enumerate() {
            let key = (
                market.zone_of[i],
                bid.side,
                step.price.0,
                market.signature[i],
            );
            let c = *index.entry(key).or_insert_with(|| {
                classes.push(Class {
                    zone: key.0,
                    side: bid.side,
                    price: step.price.0 as f64 / price_scale,
                    bid: i,
                    steps: Vec::new(),
                    total: 0,
                });
                classes.len() - 1
            });
            classes[c]
                .steps
                .push((input.priority(p), market.layout.at(p, s), step.quantity.0));
            classes[c].total += step.quantity.0;
        }
    }
    let open: Vec<usize> = (0..market.lines.len())
        .filter(|&l| market.lines[l].forward > 0 || market.lines[l].backward > 0)
        .collect();

    // The programme: quantities in MWh, prices in currency/MWh.
    let mut vars = ProblemVariables::new();
    let y: Vec<Variable> = classes
        .iter()
        .map(|c| vars.add(variable().min(0.0).max(c.total as f64 / KWH_PER_MWH)))
        .collect();
    let f: Vec<Variable> = open
        .iter()
        .map(|&l| {
            let line = &market.lines[l];
            vars.add(
                variable()
                    .min(-(line.backward as f64) / KWH_PER_MWH)
                    .max(line.forward as f64 / KWH_PER_MWH),
            )
        })
        .collect();
    let mut objective = Expression::with_capacity(classes.len());
    for (c, v) in classes.iter().zip(&y) {
        match c.side {
            Side::Buy => objective.add_mul(c.price, *v),
            Side::Sell => objective.add_mul(-c.price, *v),
        }
    }
    let mut problem = vars.maximise(objective).using(clarabel);
    problem
        .settings()
        .tol_gap_abs(1e-10)
        .tol_gap_rel(1e-10)
        .max_iter(500);
    // Balance of each zone: exports minus net injection is zero; its dual is the zone price.
    let mut balance: Vec<Expression> = (0..market.zones).map(|_| Expression::default()).collect();
    let mut used = vec![false; market.zones];
    for (c, v) in classes.iter().zip(&y) {
        used[c.zone] = true;
        match c.side {
            Side::Sell => balance[c.zone].add_mul(-1.0, *v),
            Side::Buy => balance[c.zone].add_mul(1.0, *v),
        }
    }
    for (&l, v) in open.iter().zip(&f) {
        let line = &market.lines[l];
        balance[line.from].add_mul(1.0, *v);
        balance[line.to].add_mul(-1.0, *v);
        used[line.from] = true;
        used[line.to] = true;
    }
    let balance_rows: Vec<Option<ConstraintReference>> = balance
        .into_iter()
        .zip(&used)
        .map(|(e, &u)| u.then(|| problem.add_constraint(e.eq(0.0))))
        .collect();
    // Cuts; rounding to whole kWh may exceed one by less than the tolerance.
    let mut cut_rows = Vec::with_capacity(market.cuts.len());
    for (k, &c) in market.cuts.iter().enumerate() {
        let mut e = Expression::default();
        let mut any = false;
        for (cl, v) in classes.iter().zip(&y) {
            if let Some(&(_, coef)) = market.bid_coefs[cl.bid].iter().find(|(kk, _)| *kk == k) {
                let sign = if cl.side == Side::Sell { 1.0 } else { -1.0 };
                e.add_mul(sign * coef as f64 / super::COEFFICIENT_SCALE as f64, *v);
                any = true;
            }
        }
        for (&l, v) in open.iter().zip(&f) {
            if let Some(&(_, coef)) = market.line_coefs[l].iter().find(|(kk, _)| *kk == k) {
                e.add_mul(coef as f64 / super::COEFFICIENT_SCALE as f64, *v);
                any = true;
            }
        }
        let limit = input.cuts[c].limit.0 as f64 / KWH_PER_MWH;
        cut_rows.push(any.then(|| problem.add_constraint(e.leq(limit))));
    }
    let mut solution = problem.solve().map_err(|e| {
        ClearingError::Solver(format!("{}: {e}", pool::product_label(&market.product)))
    })?;
    let yv: Vec<f64> = y.iter().map(|v| solution.value(*v)).collect();
    let fv: Vec<f64> = f.iter().map(|v| solution.value(*v)).collect();
    let duals = solution.compute_dual();
    use good_lp::DualValues;
    let pi: Vec<f64> = balance_rows
        .iter()
        .map(|r| r.as_ref().map_or(0.0, |r| duals.dual(r.clone())))
        .collect();
    let mu_f: Vec<f64> = cut_rows
        .iter()
        .map(|r| r.as_ref().map_or(0.0, |r| duals.dual(r.clone()).max(0.0)))
        .collect();

    // Snap to bounds by reduced cost; what is marginal keeps its rounded value. Limit prices
    // lie on the tick, so without cuts a quarter tick tells the marginal classes (those at
    // the zone price) from the others, however many classes lie within a few ticks of it (a
    // large case's chord curves); with cuts, the rounding of their coefficients moves the
    // local prices by up to the cut price tolerance.
    let delta = if market.cuts.is_empty() {
        input.params.price_tick.0 as f64 / price_scale / 4.0
    } else {
        pool::cut_price_tolerance(&input.params).0 as f64 / price_scale / 4.0
    };
    let offset = |coefs: &Vec<(usize, i64)>| {
        coefs
            .iter()
            .map(|&(k, c)| mu_f[k] * c as f64 / super::COEFFICIENT_SCALE as f64)
            .sum::<f64>()
    };
    let mut total: Vec<i64> = Vec::with_capacity(classes.len());
    let mut marginal: Vec<bool> = Vec::with_capacity(classes.len());
    for (c, &v) in classes.iter().zip(&yv) {
        let local = pi[c.zone] - offset(&market.bid_coefs[c.bid]);
        let r = match c.side {
            Side::Sell => local - c.price,
            Side::Buy => c.price - local,
        };
        let (t, m) = if r > delta {
            (c.total, false)
        } else if r < -delta {
            (0, false)
        } else {
            (
                (v * KWH_PER_MWH).round().clamp(0.0, c.total as f64) as i64,
                true,
            )
        };
        total.push(t);
        marginal.push(m);
    }
    let mut flows = vec![0i64; market.lines.len()];
    let mut free = vec![false; market.lines.len()];
    for (&l, &v) in open.iter().zip(&fv) {
        let line = &market.lines[l];
        let g = pi[line.to] - pi[line.from] - offset(&market.line_coefs[l]);
        flows[l] = if g > delta {
            line.forward
        } else if g < -delta {
            -line.backward
        } else {
            free[l] = true;
            ((v * KWH_PER_MWH).round() as i64).clamp(-line.backward, line.forward)
        };
    }
    repair(market, &classes, &mut total, &marginal, &mut flows, &free)?;

    // Fill each class by priority.
    for (c, &t) in classes.iter_mut().zip(&total) {
        c.steps.sort_unstable();
        let mut left = t;
        for &(_, at, q) in &c.steps {
            let x = left.min(q);
            flat[at] = x;
            left -= x;
        }
    }
    // A cut the rounded solution leaves slack by more than the tolerance has no shadow price,
    // however small the solver's (an interior point's duals of nearly binding cuts).
    let slack = market.slack_cuts(flat, &flows);
    let mu = mu_f
        .iter()
        .enumerate()
        .map(|(k, &m)| {
            if slack.get(k).copied().unwrap_or(false) {
                0
            } else {
                (m * price_scale).round().max(0.0) as i64
            }
        })
        .collect();
    Ok((flows, mu))
}

/// Where a zone's rounding residual goes: into a marginal class, or into another zone's
/// opposite residual.
#[derive(Clone, Copy)]
enum Sink {
    Class(usize),
    Zone,
}

/// How much more energy `line` can move away from its end `a` (an excess, `sign` > 0) or
/// toward it (a deficit), where `a_is_from` tells which end `a` is.
fn line_room(line: &pool::Line, flow: i64, a_is_from: bool, sign: i64) -> i64 {
    if a_is_from == (sign > 0) {
        line.forward - flow
    } else {
        flow + line.backward
    }
}

/// Where a residual of zone `z` can go: the zone `zone` with a sink, reached from `z` over
/// `path`, the free lines it crosses as (the line's end nearer `z`, line), from `zone` back to
/// `z`.
struct Route {
    zone: usize,
    sink: Sink,
    path: Vec<(usize, usize)>,
}

/// The nearest zone to `z` for which `sink` gives a sink, by breadth-first search over free
/// lines with room to move energy away from `z` (`sign` > 0, an excess) or toward it (a
/// deficit).
fn nearest(
    market: &Market<'_, '_>,
    flows: &[i64],
    free: &[bool],
    z: usize,
    sign: i64,
    sink: impl Fn(usize) -> Option<Sink>,
) -> Option<Route> {
    let mut prev: Vec<Option<(usize, usize)>> = vec![None; market.zones];
    let mut seen = vec![false; market.zones];
    seen[z] = true;
    let mut queue = VecDeque::from([z]);
    while let Some(a) = queue.pop_front() {
        if let Some(found) = sink(a) {
            let mut path = Vec::new();
            let mut at = a;
            while let Some((from, l)) = prev[at] {
                path.push((from, l));
                at = from;
            }
            return Some(Route {
                zone: a,
                sink: found,
                path,
            });
        }
        for (l, line) in market.lines.iter().enumerate() {
            let b = if line.from == a {
                line.to
            } else if line.to == a {
                line.from
            } else {
                continue;
            };
            if free[l] && !seen[b] && line_room(line, flows[l], line.from == a, sign) > 0 {
                seen[b] = true;
                prev[b] = Some((a, l));
                queue.push_back(b);
            }
        }
    }
    None
}

/// Makes every zone balance exactly after rounding, moving only marginal classes and free
/// (uncongested) lines. Bounded: each step zeroes a residual or exhausts a class or a line.
fn repair(
    market: &Market<'_, '_>,
    classes: &[Class],
    total: &mut [i64],
    marginal: &[bool],
    flows: &mut [i64],
    free: &[bool],
) -> Result<(), ClearingError> {
    let zones = market.zones;
    let mut net = vec![0i64; zones];
    for (c, &t) in classes.iter().zip(total.iter()) {
        net[c.zone] += if c.side == Side::Sell { t } else { -t };
    }
    for (l, line) in market.lines.iter().enumerate() {
        net[line.from] -= flows[l];
        net[line.to] += flows[l];
    }
    // Room of class c to absorb an excess (sign > 0) or a deficit (sign < 0) of its zone.
    let room = |c: usize, sign: i64, total: &[i64]| -> i64 {
        if !marginal[c] {
            return 0;
        }
        let cl = &classes[c];
        match (cl.side, sign > 0) {
            (Side::Sell, true) | (Side::Buy, false) => total[c],
            (Side::Sell, false) | (Side::Buy, true) => cl.total - total[c],
        }
    };
    let absorb = |c: usize, amount: i64, sign: i64, total: &mut [i64]| {
        let cl = &classes[c];
        match (cl.side, sign > 0) {
            (Side::Sell, true) | (Side::Buy, false) => total[c] -= amount,
            (Side::Sell, false) | (Side::Buy, true) => total[c] += amount,
        }
    };
    let budget = 4 * (classes.len() + market.lines.len() + zones) + 16;
    for _ in 0..budget {
        let Some(z) = (0..zones).find(|&z| net[z] != 0) else {
            return Ok(());
        };
        let sign = net[z].signum();
        // Nearest by free lines that can move energy away from z (excess) or toward it
        // (deficit): a zone with a marginal class that has room; failing that, a zone whose
        // residual is the opposite of z's (residuals of rounded flows cancel over free lines).
        let has_room = |a: usize| {
            (0..classes.len())
                .find(|&c| classes[c].zone == a && room(c, sign, total) > 0)
                .map(Sink::Class)
        };
        let opposite = |a: usize| (a != z && net[a].signum() == -sign).then_some(Sink::Zone);
        let Some(Route {
            zone: w,
            sink,
            path,
        }) = nearest(market, flows, free, z, sign, has_room)
            .or_else(|| nearest(market, flows, free, z, sign, opposite))
        else {
            return Err(ClearingError::Solver(format!(
                "cannot round the solution for {} to whole kWh: {} has {} kWh left over",
                pool::product_label(&market.product),
                market.zone_name(z),
                net[z]
            )));
        };
        let mut amount = net[z].abs().min(match sink {
            Sink::Class(c) => room(c, sign, total),
            Sink::Zone => net[w].abs(),
        });
        for &(a, l) in &path {
            let line = &market.lines[l];
            amount = amount.min(line_room(line, flows[l], line.from == a, sign));
        }
        // Energy moves from z toward w for an excess, from w toward z for a deficit.
        for &(a, l) in &path {
            let forward = market.lines[l].from == a;
            flows[l] += if forward == (sign > 0) {
                amount
            } else {
                -amount
            };
        }
        match sink {
            Sink::Class(c) => absorb(c, amount, sign, total),
            Sink::Zone => net[w] += sign * amount,
        }
        net[z] -= sign * amount;
    }
    Err(ClearingError::Solver(format!(
        "cannot round the solution for {} to whole kWh",
        pool::product_label(&market.product)
    )))
}
