//! Property tests of the clearing rules on random small markets (spec C1, C2, C6, C7).

mod clearing_common;

use std::collections::BTreeMap;

use clearing_common::Book;
use proptest::prelude::*;
use tieline_core::clearing::{Cleared, Clearing, PayAsBid, UniformPrice, ZonalCoupling};
use tieline_core::genesis::ClearingRule;
use tieline_core::market::{Bid, Side};
use tieline_core::units::{AreaId, Money, Price, Quantity};

/// One random bid: area, side, (price in whole currency, kWh) steps, submission time.
type RawBid = (u16, bool, Vec<(i64, i64)>, u64);

fn raw_bid(areas: u16) -> impl Strategy<Value = RawBid> {
    (
        1..=areas,
        any::<bool>(),
        prop::collection::btree_map(2i64..=14, 1i64..=20_000, 1..=3),
        0u64..3,
    )
        .prop_map(|(a, buy, steps, t)| {
            // Prices on a 5-unit grid so that ties are common; buyers' fall, sellers' rise.
            let mut s: Vec<(i64, i64)> = steps.into_iter().map(|(p, q)| (p * 5, q)).collect();
            if buy {
                s.reverse();
            }
            (a, buy, s, t)
        })
}

fn book(rule: ClearingRule, areas: u16, bids: &[RawBid], capacity: i64) -> Book {
    let mut b = Book::new(rule, areas);
    for (area, buy, steps, t) in bids {
        let steps: Vec<(String, String)> = steps
            .iter()
            .map(|&(p, q)| (p.to_string(), Quantity(q).to_string()))
            .collect();
        let steps: Vec<(&str, &str)> = steps
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let side = if *buy { Side::Buy } else { Side::Sell };
        b.bid(*area, side, &steps, *t);
    }
    // A chain of areas 1 - 2 - ... with the same capacity both ways.
    let cap = Quantity(capacity).to_string();
    for a in 1..areas {
        b.line(a, a, a + 1, &cap, &cap);
    }
    b
}

/// Accepted kWh per (bid index, step).
fn accepted(book: &Book, c: &Cleared) -> BTreeMap<(usize, usize), i64> {
    let ids: Vec<_> = book.bids.iter().map(Bid::id).collect();
    c.outcome
        .awards
        .iter()
        .map(|a| {
            let i = ids.iter().position(|d| *d == a.bid).unwrap();
            ((i, usize::from(a.step)), a.quantity.0)
        })
        .collect()
}

/// Feasibility and limit prices, for a pool rule's result.
fn check_pool(book: &Book, c: &Cleared, zonal: bool) -> Result<(), TestCaseError> {
    let got = accepted(book, c);
    let mut net: BTreeMap<AreaId, i64> = BTreeMap::new();
    for (&(i, s), &x) in &got {
        let bid = &book.bids[i];
        prop_assert!(x > 0 && x <= bid.steps[s].quantity.0);
        let sign = if bid.side == Side::Sell { 1 } else { -1 };
        let area = if zonal { bid.area } else { AreaId(0) };
        *net.entry(area).or_default() += sign * x;
    }
    for f in &c.outcome.flows {
        let line = book.lines.iter().find(|l| l.id == f.tie_line).unwrap();
        prop_assert!(f.flow <= line.capacity_forward && -f.flow <= line.capacity_backward);
        *net.entry(line.from).or_default() -= f.flow.0;
        *net.entry(line.to).or_default() += f.flow.0;
    }
    prop_assert!(net.values().all(|&v| v == 0), "unbalanced: {net:?}");
    // No step is accepted beyond its limit price, and every step better than the price is.
    for t in &c.trades {
        let i = book.bids.iter().position(|b| b.id() == t.bid).unwrap();
        let bid = &book.bids[i];
        for (s, step) in bid.steps.iter().enumerate() {
            let x = got.get(&(i, s)).copied().unwrap_or(0);
            let worse = match bid.side {
                Side::Sell => step.price > t.price,
                Side::Buy => step.price < t.price,
            };
            prop_assert!(!(worse && x > 0), "step accepted outside its limit");
            let better = match bid.side {
                Side::Sell => step.price < t.price,
                Side::Buy => step.price > t.price,
            };
            prop_assert!(
                !(better && x < step.quantity.0),
                "in-the-money step not full"
            );
        }
    }
    Ok(())
}

/// Welfare of a random feasible schedule: random seller-buyer pairs trade random amounts,
/// routed along the chain where capacity is left.
fn random_schedule_welfare(book: &Book, picks: &[(usize, usize, u32)], capacity: i64) -> Money {
    let mut left: Vec<Vec<i64>> = book
        .bids
        .iter()
        .map(|b| b.steps.iter().map(|s| s.quantity.0).collect())
        .collect();
    let mut flow = vec![0i64; book.areas.len()];
    let mut welfare = 0i128;
    let sellers: Vec<usize> = (0..book.bids.len())
        .filter(|&i| book.bids[i].side == Side::Sell)
        .collect();
    let buyers: Vec<usize> = (0..book.bids.len())
        .filter(|&i| book.bids[i].side == Side::Buy)
        .collect();
    if sellers.is_empty() || buyers.is_empty() {
        return Money::ZERO;
    }
    for &(a, b, share) in picks {
        let (s, d) = (sellers[a % sellers.len()], buyers[b % buyers.len()]);
        let (Some(ss), Some(ds)) = (
            left[s].iter().position(|&q| q > 0),
            left[d].iter().position(|&q| q > 0),
        ) else {
            continue;
        };
        let mut q = left[s][ss].min(left[d][ds]) * i64::from(share) / 100;
        // Route from the seller's area to the buyer's along the chain (line k joins k, k+1).
        let (from, to) = (book.bids[s].area.0 as usize, book.bids[d].area.0 as usize);
        let dir: i64 = if to > from { 1 } else { -1 };
        let lines: Vec<usize> = if to > from {
            (from..to).collect()
        } else {
            (to..from).collect()
        };
        for &k in &lines {
            q = q.min(capacity - dir * flow[k]);
        }
        if q <= 0 {
            continue;
        }
        for &k in &lines {
            flow[k] += dir * q;
        }
        left[s][ss] -= q;
        left[d][ds] -= q;
        let value = book.bids[d].steps[ds].price.times(Quantity(q)).0
            - book.bids[s].steps[ss].price.times(Quantity(q)).0;
        welfare += value;
    }
    Money(welfare)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// C2, C6: uniform and zonal outcomes balance, stay within capacities and bid
    /// quantities, accept no step outside its limit price, and verify.
    #[test]
    fn pool_outcomes_are_feasible_and_within_limit_prices(
        areas in 1u16..=3,
        bids in prop::collection::vec(raw_bid(3), 0..14),
        capacity in 0i64..30_000,
    ) {
        let bids: Vec<RawBid> = bids.into_iter().map(|mut b| { b.0 = b.0.min(areas); b }).collect();
        let uniform = book(ClearingRule::UniformPrice, areas, &bids, capacity);
        let c = UniformPrice.clear(&uniform.input()).unwrap();
        check_pool(&uniform, &c, false)?;
        prop_assert_eq!(UniformPrice.verify(&uniform.input(), &c), Ok(()));
        let prices: Vec<Price> = c.outcome.area_prices.iter().map(|p| p.price).collect();
        prop_assert!(prices.windows(2).all(|w| w[0] == w[1]));

        let zonal = book(ClearingRule::ZonalCoupling, areas, &bids, capacity);
        let z = ZonalCoupling.clear(&zonal.input()).unwrap();
        check_pool(&zonal, &z, true)?;
        prop_assert_eq!(ZonalCoupling.verify(&zonal.input(), &z), Ok(()));
    }

    /// C1: pay-as-bid matches only crossing steps, each trade between the two limits, and
    /// its welfare equals the uniform price's (both maximise it in one zone).
    #[test]
    fn pay_as_bid_trades_within_both_limits(
        bids in prop::collection::vec(raw_bid(2), 0..14),
    ) {
        let b = book(ClearingRule::PayAsBid, 2, &bids, 0);
        let c = PayAsBid.clear(&b.input()).unwrap();
        prop_assert_eq!(PayAsBid.verify(&b.input(), &c), Ok(()));
        let got = accepted(&b, &c);
        let (mut sold, mut bought) = (0i64, 0i64);
        for (&(i, s), &x) in &got {
            prop_assert!(x > 0 && x <= b.bids[i].steps[s].quantity.0);
            if b.bids[i].side == Side::Sell { sold += x } else { bought += x }
        }
        prop_assert_eq!(sold, bought);
        prop_assert_eq!(c.trades.len() % 2, 0);
        for pair in c.trades.chunks(2) {
            let (buy, sell) = (&pair[0], &pair[1]);
            prop_assert_eq!(buy.side, Side::Buy);
            prop_assert_eq!(sell.side, Side::Sell);
            prop_assert_eq!(buy.quantity, sell.quantity);
            prop_assert_eq!(buy.price, sell.price);
            prop_assert_eq!(buy.counterparty, Some(sell.participant));
            let bid = |id| b.bids.iter().find(|x| x.id() == id).unwrap();
            let lowest_buy = bid(buy.bid).steps.iter().map(|s| s.price).min().unwrap();
            let highest_sell = bid(sell.bid).steps.iter().map(|s| s.price).max().unwrap();
            let best_buy = bid(buy.bid).steps[0].price;
            let best_sell = bid(sell.bid).steps[0].price;
            prop_assert!(buy.price <= best_buy && buy.price >= best_sell);
            prop_assert!(lowest_buy <= best_buy && highest_sell >= best_sell);
        }
        let u = book(ClearingRule::UniformPrice, 2, &bids, 0);
        let uc = UniformPrice.clear(&u.input()).unwrap();
        prop_assert_eq!(c.outcome.welfare, uc.outcome.welfare);
    }

    /// C6: zonal welfare is at least that of any feasible schedule we can draw at random.
    #[test]
    fn zonal_welfare_is_at_least_any_random_feasible_schedule(
        areas in 1u16..=3,
        bids in prop::collection::vec(raw_bid(3), 1..14),
        capacity in 0i64..30_000,
        picks in prop::collection::vec((0usize..20, 0usize..20, 1u32..=100), 0..30),
    ) {
        let bids: Vec<RawBid> = bids.into_iter().map(|mut b| { b.0 = b.0.min(areas); b }).collect();
        let b = book(ClearingRule::ZonalCoupling, areas, &bids, capacity);
        let z = ZonalCoupling.clear(&b.input()).unwrap();
        let random = random_schedule_welfare(&b, &picks, capacity);
        prop_assert!(z.outcome.welfare >= random, "{} < {}", z.outcome.welfare, random);
        prop_assert!(z.outcome.welfare >= Money::ZERO);
    }

    /// C7: with tie lines that never bind, zonal coupling gives every area the uniform price
    /// of the merged market, and the same welfare.
    #[test]
    fn zonal_with_unlimited_lines_equals_uniform_price(
        areas in 1u16..=3,
        bids in prop::collection::vec(raw_bid(3), 0..14),
    ) {
        let bids: Vec<RawBid> = bids.into_iter().map(|mut b| { b.0 = b.0.min(areas); b }).collect();
        let total: i64 = bids.iter().flat_map(|b| b.2.iter().map(|s| s.1)).sum();
        let z = book(ClearingRule::ZonalCoupling, areas, &bids, total + 1_000);
        let u = book(ClearingRule::UniformPrice, areas, &bids, total + 1_000);
        let zc = ZonalCoupling.clear(&z.input()).unwrap();
        let uc = UniformPrice.clear(&u.input()).unwrap();
        prop_assert_eq!(&zc.outcome.area_prices, &uc.outcome.area_prices);
        prop_assert_eq!(zc.outcome.welfare, uc.outcome.welfare);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// C8: with random cuts over bids and tie lines, zonal coupling clears, honours every cut
    /// within the tolerance and verifies its own outcome.
    #[test]
    fn zonal_with_random_cuts_verifies_and_honours_them(
        areas in 1u16..=3,
        bids in prop::collection::vec(raw_bid(3), 1..12),
        capacity in 0i64..30_000,
        cuts in prop::collection::vec(
            (prop::collection::vec((0usize..12, -4i64..=4), 1..4), 0i64..20_000),
            1..3,
        ),
    ) {
        use tieline_core::clearing::{CUT_TOLERANCE, CutVariable};
        use tieline_core::units::TieLineId;
        let bids: Vec<RawBid> = bids.into_iter().map(|mut b| { b.0 = b.0.min(areas); b }).collect();
        let mut b = book(ClearingRule::ZonalCoupling, areas, &bids, capacity);
        for (terms, limit) in &cuts {
            let terms: Vec<(CutVariable, f64)> = terms
                .iter()
                .map(|&(i, c)| {
                    let v = if i < b.bids.len() {
                        CutVariable::Bid(b.bids[i].id())
                    } else {
                        CutVariable::TieFlow(TieLineId((i % 2) as u16 + 1))
                    };
                    (v, c as f64 / 2.0)
                })
                .collect();
            b.cut(&terms, &Quantity(*limit).to_string());
        }
        let z = ZonalCoupling.clear(&b.input()).unwrap();
        prop_assert_eq!(ZonalCoupling.verify(&b.input(), &z), Ok(()));
        check_pool_feasible_only(&b, &z)?;
        // Every cut holds within the tolerance.
        let got = accepted(&b, &z);
        for cut in &b.cuts {
            let mut lhs: i128 = 0;
            for t in &cut.terms {
                let x: i64 = match t.variable {
                    CutVariable::Bid(id) => {
                        let i = b.bids.iter().position(|x| x.id() == id).unwrap();
                        let total: i64 = (0..b.bids[i].steps.len()).map(|s| got.get(&(i, s)).copied().unwrap_or(0)).sum();
                        if b.bids[i].side == Side::Sell { total } else { -total }
                    }
                    CutVariable::TieFlow(l) => z.outcome.flows.iter().find(|f| f.tie_line == l).map_or(0, |f| f.flow.0),
                };
                lhs += i128::from(t.coefficient) * i128::from(x);
            }
            prop_assert!(lhs <= i128::from(cut.limit.0 + CUT_TOLERANCE.0) * 1_000_000);
        }
    }
}

/// Balances and capacities only (with cuts, prices are locational).
fn check_pool_feasible_only(book: &Book, c: &Cleared) -> Result<(), TestCaseError> {
    let got = accepted(book, c);
    let mut net: BTreeMap<AreaId, i64> = BTreeMap::new();
    for (&(i, s), &x) in &got {
        let bid = &book.bids[i];
        prop_assert!(x > 0 && x <= bid.steps[s].quantity.0);
        let sign = if bid.side == Side::Sell { 1 } else { -1 };
        *net.entry(bid.area).or_default() += sign * x;
    }
    for f in &c.outcome.flows {
        let line = book.lines.iter().find(|l| l.id == f.tie_line).unwrap();
        prop_assert!(f.flow <= line.capacity_forward && -f.flow <= line.capacity_backward);
        *net.entry(line.from).or_default() -= f.flow.0;
        *net.entry(line.to).or_default() += f.flow.0;
    }
    prop_assert!(net.values().all(|&v| v == 0), "unbalanced: {net:?}");
    Ok(())
}

/// A plausible tampering of a pay-as-bid result: something a primary could try.
fn tamper(c: &Cleared, how: u8, at: usize, delta: i64) -> Cleared {
    let mut t = c.clone();
    let pairs = t.trades.len() / 2;
    if pairs == 0 {
        t.outcome.welfare.0 += 1;
        return t;
    }
    let k = at % pairs;
    match how % 8 {
        // One award too many.
        6 => {
            if let Some(a) = t.outcome.awards.last().copied() {
                t.outcome.awards.push(a);
            }
        }
        // A trade that names another counterparty (the seller's side names itself).
        7 => {
            t.trades[2 * k + 1].counterparty = Some(t.trades[2 * k + 1].participant);
        }
        // Another quantity on both sides of a trade, with the awards left alone.
        0 => {
            t.trades[2 * k].quantity.0 += delta;
            t.trades[2 * k + 1].quantity.0 += delta;
        }
        // Another price on both sides.
        1 => {
            t.trades[2 * k].price.0 += delta * 10_000;
            t.trades[2 * k + 1].price.0 += delta * 10_000;
        }
        // Two trades in the other order.
        2 => {
            let j = (k + 1) % pairs;
            t.trades.swap(2 * k, 2 * j);
            t.trades.swap(2 * k + 1, 2 * j + 1);
        }
        // Split a trade in two.
        3 => {
            let (b, s) = (t.trades[2 * k].clone(), t.trades[2 * k + 1].clone());
            if b.quantity.0 > 1 {
                let half = b.quantity.0 / 2;
                t.trades[2 * k].quantity.0 -= half;
                t.trades[2 * k + 1].quantity.0 -= half;
                let (mut b2, mut s2) = (b, s);
                b2.quantity.0 = half;
                s2.quantity.0 = half;
                t.trades.insert(2 * k + 2, s2);
                t.trades.insert(2 * k + 2, b2);
            }
        }
        // Drop a trade (and keep the awards).
        4 => {
            t.trades.drain(2 * k..2 * k + 2);
        }
        // Move an award from one step to another.
        _ => {
            if let Some(a) = t.outcome.awards.get_mut(at % c.outcome.awards.len().max(1)) {
                a.quantity.0 -= delta.abs().min(a.quantity.0 - 1).max(0);
            }
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// C1: pay-as-bid verification, which never sorts, accepts exactly the rule's own result:
    /// every tampered variant that differs from it is rejected.
    #[test]
    fn pay_as_bid_verification_accepts_exactly_the_rules_result(
        bids in prop::collection::vec(raw_bid(1), 0..12),
        how in any::<u8>(),
        at in any::<usize>(),
        delta in prop_oneof![-3i64..=-1, 1i64..=3],
    ) {
        let b = book(ClearingRule::PayAsBid, 1, &bids, 0);
        let c = PayAsBid.clear(&b.input()).unwrap();
        prop_assert_eq!(PayAsBid.verify(&b.input(), &c), Ok(()));
        let t = tamper(&c, how, at, delta);
        let verdict = PayAsBid.verify(&b.input(), &t);
        prop_assert_eq!(verdict.is_ok(), t == c, "{:?}", verdict);
    }
}
