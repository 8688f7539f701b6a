//! Clearing rules on small markets computed by hand, and verification of tampered proposals
//! (spec part 3).

mod clearing_common;

use clearing_common::{Book, p, q};
use tieline_core::clearing::{
    Cleared, Clearing, ClearingError, CutVariable, PayAsBid, UniformPrice, VerifyError,
    ZonalCoupling, rule_for,
};
use tieline_core::crypto::Digest;
use tieline_core::genesis::ClearingRule;
use tieline_core::market::Side::{Buy, Sell};
use tieline_core::units::{AreaId, Money, ParticipantId, Price, Quantity, TieLineId};

fn money(s: &str) -> Money {
    Money::parse(s).unwrap()
}

/// The accepted quantity of (bid, step), zero if there is no award.
fn award(c: &Cleared, bid: Digest, step: u16) -> Quantity {
    c.outcome
        .awards
        .iter()
        .find(|a| a.bid == bid && a.step == step)
        .map_or(Quantity::ZERO, |a| a.quantity)
}

fn area_price(c: &Cleared, area: u16) -> Price {
    c.outcome
        .area_prices
        .iter()
        .find(|a| a.area == AreaId(area))
        .unwrap()
        .price
}

fn rejects(rule: &dyn Clearing, book: &Book, tampered: &Cleared, needle: &str) -> String {
    let err = rule
        .verify(&book.input(), tampered)
        .unwrap_err()
        .to_string();
    assert!(err.contains(needle), "`{err}` does not mention `{needle}`");
    err
}

/// Three sellers and two buyers; the second buyer is cut short and sets the price.
fn merit_order_book(rule: ClearingRule) -> (Book, [Digest; 5]) {
    let mut b = Book::new(rule, 1);
    let s1 = b.bid(1, Sell, &[("20", "10")], 1);
    let s2 = b.bid(1, Sell, &[("30", "10")], 5);
    let s3 = b.bid(1, Sell, &[("40", "10")], 2);
    let b1 = b.bid(1, Buy, &[("50", "15")], 3);
    let b2 = b.bid(1, Buy, &[("35", "10")], 0);
    (b, [s1, s2, s3, b1, b2])
}

#[test]
fn uniform_price_partially_accepts_the_marginal_bid() {
    let (book, [s1, s2, s3, b1, b2]) = merit_order_book(ClearingRule::UniformPrice);
    let c = UniformPrice.clear(&book.input()).unwrap();
    assert_eq!(award(&c, s1, 0), q("10"));
    assert_eq!(award(&c, s2, 0), q("10"));
    assert_eq!(award(&c, s3, 0), q("0"));
    assert_eq!(award(&c, b1, 0), q("15"));
    assert_eq!(award(&c, b2, 0), q("5"));
    // The partly accepted buyer at 35 is the only price consistent with every award.
    assert_eq!(area_price(&c, 1), p("35"));
    assert!(c.trades.iter().all(|t| t.price == p("35")));
    assert_eq!(c.outcome.welfare, money("425"));
    assert_eq!(c.outcome.congestion_rent, Money::ZERO);
    assert_eq!(c.trades.len(), 4);
    assert_eq!(UniformPrice.verify(&book.input(), &c), Ok(()));
}

#[test]
fn uniform_price_takes_the_midpoint_when_the_price_is_not_unique() {
    let mut book = Book::new(ClearingRule::UniformPrice, 1);
    book.bid(1, Sell, &[("20.01", "10")], 1);
    book.bid(1, Buy, &[("50", "10")], 2);
    let c = UniformPrice.clear(&book.input()).unwrap();
    // Any price in [20.01, 50] clears; the midpoint 35.005 is rounded down to the tick.
    assert_eq!(area_price(&c, 1), p("35"));
    assert_eq!(c.outcome.welfare, money("299.9"));
    assert_eq!(UniformPrice.verify(&book.input(), &c), Ok(()));
}

#[test]
fn uniform_price_breaks_ties_by_submission_time_then_id() {
    let mut book = Book::new(ClearingRule::UniformPrice, 1);
    let late = book.bid(1, Sell, &[("30", "10")], 2);
    let early = book.bid(1, Sell, &[("30", "10")], 1);
    let x = book.bid(1, Sell, &[("30", "10")], 7);
    let y = book.bid(1, Sell, &[("30", "10")], 7);
    book.bid(1, Buy, &[("40", "25")], 3);
    let c = UniformPrice.clear(&book.input()).unwrap();
    assert_eq!(award(&c, early, 0), q("10"));
    assert_eq!(award(&c, late, 0), q("10"));
    // Equal submission times: the smaller id goes first.
    let (first, second) = if x < y { (x, y) } else { (y, x) };
    assert_eq!(award(&c, first, 0), q("5"));
    assert_eq!(award(&c, second, 0), q("0"));
    assert_eq!(area_price(&c, 1), p("30"));

    // Giving the energy to the later of two equal bids is rejected, naming the award.
    let mut t = c.clone();
    for a in &mut t.outcome.awards {
        if a.bid == first {
            a.bid = second;
        }
    }
    t.outcome
        .awards
        .sort_by_key(|a| book.bids.iter().position(|b| b.id() == a.bid));
    rejects(&UniformPrice, &book, &t, "award of bid");
}

#[test]
fn uniform_price_with_zero_volume_prices_between_best_bid_and_offer() {
    let mut book = Book::new(ClearingRule::UniformPrice, 1);
    book.bid(1, Sell, &[("30", "10")], 1);
    book.bid(1, Buy, &[("20", "10")], 2);
    let c = UniformPrice.clear(&book.input()).unwrap();
    assert!(c.outcome.awards.is_empty());
    assert!(c.trades.is_empty());
    assert_eq!(area_price(&c, 1), p("25"));
    assert_eq!(c.outcome.welfare, Money::ZERO);
    assert_eq!(UniformPrice.verify(&book.input(), &c), Ok(()));
}

#[test]
fn uniform_price_with_only_buyers_prices_at_the_highest_bid() {
    let mut book = Book::new(ClearingRule::UniformPrice, 2);
    book.bid(1, Buy, &[("50", "10"), ("40", "5")], 1);
    book.bid(2, Buy, &[("45", "5")], 2);
    let c = UniformPrice.clear(&book.input()).unwrap();
    assert!(c.trades.is_empty());
    // One price for the whole market, published for every area.
    assert_eq!(area_price(&c, 1), p("50"));
    assert_eq!(area_price(&c, 2), p("50"));
    assert_eq!(UniformPrice.verify(&book.input(), &c), Ok(()));

    let mut only_sellers = Book::new(ClearingRule::UniformPrice, 1);
    only_sellers.bid(1, Sell, &[("12", "10"), ("18", "5")], 1);
    let c = UniformPrice.clear(&only_sellers.input()).unwrap();
    assert_eq!(area_price(&c, 1), p("12"));
}

#[test]
fn uniform_price_rejects_tampered_price_quantity_and_trade() {
    let (book, [_, _, _, b1, _]) = merit_order_book(ClearingRule::UniformPrice);
    let c = UniformPrice.clear(&book.input()).unwrap();

    let mut t = c.clone();
    t.outcome.area_prices[0].price = p("35.01");
    let e = rejects(&UniformPrice, &book, &t, "area price");
    assert!(e.contains("35.01") && e.contains("35"), "{e}");

    let mut t = c.clone();
    let i = t.outcome.awards.iter().position(|a| a.bid == b1).unwrap();
    t.outcome.awards[i].quantity = q("14");
    rejects(&UniformPrice, &book, &t, "award");

    // Moving energy between two buyers keeps the balance; the full buyer is named.
    let mut t = c.clone();
    t.outcome.awards[i].quantity = q("14");
    let j = t
        .outcome
        .awards
        .iter()
        .position(|a| a.quantity == q("5"))
        .unwrap();
    t.outcome.awards[j].quantity = q("6");
    let e = rejects(&UniformPrice, &book, &t, "award of bid");
    assert!(e.contains(&format!("{b1:?}")), "{e}");

    let mut t = c.clone();
    t.trades[0].price = p("36");
    rejects(&UniformPrice, &book, &t, "trade 0");

    let mut t = c.clone();
    t.trades[1].quantity = q("1");
    rejects(&UniformPrice, &book, &t, "trade 1");

    let mut t = c.clone();
    t.outcome.welfare = money("426");
    rejects(&UniformPrice, &book, &t, "welfare");
}

#[test]
fn one_zone_rules_refuse_cuts() {
    let (mut book, [s1, ..]) = merit_order_book(ClearingRule::UniformPrice);
    book.cut(&[(CutVariable::Bid(s1), 1.0)], "5");
    for rule in [&UniformPrice as &dyn Clearing, &PayAsBid] {
        assert!(matches!(
            rule.clear(&book.input()),
            Err(ClearingError::UnsuitableInput(_))
        ));
        assert!(matches!(
            rule.verify(&book.input(), &Cleared::default()),
            Err(VerifyError::Clearing(_))
        ));
    }
}

#[test]
fn pay_as_bid_matches_by_price_then_time_at_the_earlier_bids_price() {
    let (book, [s1, s2, _, b1, b2]) = merit_order_book(ClearingRule::PayAsBid);
    let c = PayAsBid.clear(&book.input()).unwrap();
    let pid = |d: Digest| book.bids.iter().find(|b| b.id() == d).unwrap().participant;
    let got: Vec<(Digest, Quantity, Price, Option<ParticipantId>)> = c
        .trades
        .iter()
        .map(|t| (t.bid, t.quantity, t.price, t.counterparty))
        .collect();
    assert_eq!(
        got,
        vec![
            // B1 (50) meets S1 (20): S1 was submitted first, its price.
            (b1, q("10"), p("20"), Some(pid(s1))),
            (s1, q("10"), p("20"), Some(pid(b1))),
            // B1 meets S2 (30): B1 was first, its price.
            (b1, q("5"), p("50"), Some(pid(s2))),
            (s2, q("5"), p("50"), Some(pid(b1))),
            // B2 (35) meets the rest of S2: B2 was first.
            (b2, q("5"), p("35"), Some(pid(s2))),
            (s2, q("5"), p("35"), Some(pid(b2))),
        ]
    );
    assert_eq!(c.outcome.welfare, money("425"));
    assert_eq!(c.outcome.congestion_rent, Money::ZERO);
    assert!(c.outcome.area_prices.is_empty());
    assert_eq!(award(&c, s2, 0), q("10"));
    assert_eq!(PayAsBid.verify(&book.input(), &c), Ok(()));

    let mut t = c.clone();
    t.trades[2].price = p("30");
    rejects(&PayAsBid, &book, &t, "trade 2");
    let mut t = c.clone();
    t.outcome.awards[0].quantity = q("9");
    rejects(&PayAsBid, &book, &t, "award 0");
}

#[test]
fn pay_as_bid_with_only_buyers_trades_nothing() {
    let mut book = Book::new(ClearingRule::PayAsBid, 1);
    book.bid(1, Buy, &[("50", "10")], 1);
    let c = PayAsBid.clear(&book.input()).unwrap();
    assert_eq!(c, Cleared::default());
    assert_eq!(PayAsBid.verify(&book.input(), &c), Ok(()));
}

/// Cheap energy in area 1, dear energy and demand in area 2, joined by a 5 MWh line.
fn two_area_book(capacity: &str) -> (Book, [Digest; 3]) {
    let mut b = Book::new(ClearingRule::ZonalCoupling, 2);
    let cheap = b.bid(1, Sell, &[("20", "20")], 1);
    let dear = b.bid(2, Sell, &[("40", "20")], 2);
    let demand = b.bid(2, Buy, &[("60", "15")], 3);
    b.line(1, 1, 2, capacity, capacity);
    (b, [cheap, dear, demand])
}

#[test]
fn zonal_congestion_splits_prices() {
    let (book, [cheap, dear, demand]) = two_area_book("5");
    let c = ZonalCoupling.clear(&book.input()).unwrap();
    assert_eq!(award(&c, cheap, 0), q("5"));
    assert_eq!(award(&c, dear, 0), q("10"));
    assert_eq!(award(&c, demand, 0), q("15"));
    assert_eq!(area_price(&c, 1), p("20"));
    assert_eq!(area_price(&c, 2), p("40"));
    assert_eq!(c.outcome.flows.len(), 1);
    assert_eq!(c.outcome.flows[0].tie_line, TieLineId(1));
    assert_eq!(c.outcome.flows[0].flow, q("5"));
    // Rent: 5 MWh across a 20/MWh price difference.
    assert_eq!(c.outcome.congestion_rent, money("100"));
    assert_eq!(c.outcome.welfare, money("400"));
    let demand_trade = c.trades.iter().find(|t| t.bid == demand).unwrap();
    assert_eq!(demand_trade.price, p("40"));
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));
}

#[test]
fn zonal_without_congestion_has_one_price() {
    let (book, [cheap, dear, _]) = two_area_book("100");
    let c = ZonalCoupling.clear(&book.input()).unwrap();
    assert_eq!(award(&c, cheap, 0), q("15"));
    assert_eq!(award(&c, dear, 0), q("0"));
    assert_eq!(area_price(&c, 1), p("20"));
    assert_eq!(area_price(&c, 2), p("20"));
    assert_eq!(c.outcome.flows[0].flow, q("15"));
    assert_eq!(c.outcome.congestion_rent, Money::ZERO);
    assert_eq!(c.outcome.welfare, money("600"));
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));
}

#[test]
fn zonal_honours_a_cut_and_prices_it() {
    let (mut book, [cheap, dear, demand]) = two_area_book("5");
    // The cheap seller may inject at most 3 MWh.
    book.cut(&[(CutVariable::Bid(cheap), 1.0)], "3");
    let c = ZonalCoupling.clear(&book.input()).unwrap();
    assert_eq!(award(&c, cheap, 0), q("3"));
    assert_eq!(award(&c, dear, 0), q("12"));
    assert_eq!(award(&c, demand, 0), q("15"));
    assert_eq!(c.outcome.flows[0].flow, q("3"));
    // The line is free, so both areas are priced by the dear seller; the cut's shadow price
    // is what the cheap seller's location is worth less.
    assert_eq!(area_price(&c, 1), p("40"));
    assert_eq!(area_price(&c, 2), p("40"));
    assert_eq!(c.outcome.cut_prices, vec![p("20")]);
    let cheap_trade = c.trades.iter().find(|t| t.bid == cheap).unwrap();
    assert_eq!(cheap_trade.price, p("20"));
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));

    let mut t = c.clone();
    t.outcome.cut_prices[0] = p("0");
    rejects(&ZonalCoupling, &book, &t, "award of bid");
    let mut t = c.clone();
    t.outcome.cut_prices[0] = p("-1");
    rejects(&ZonalCoupling, &book, &t, "cut shadow price 0");
}

#[test]
fn zonal_rejects_tampered_price_quantity_flow_and_trade() {
    let (book, [_, dear, _]) = two_area_book("5");
    let c = ZonalCoupling.clear(&book.input()).unwrap();

    let mut t = c.clone();
    t.outcome.area_prices[1].price = p("40.01");
    let e = rejects(&ZonalCoupling, &book, &t, "area price of area 2");
    assert!(e.contains("40.01"), "{e}");

    let mut t = c.clone();
    let i = t.outcome.awards.iter().position(|a| a.bid == dear).unwrap();
    t.outcome.awards[i].quantity = q("9");
    rejects(&ZonalCoupling, &book, &t, "award");

    let mut t = c.clone();
    t.outcome.flows[0].flow = q("4");
    rejects(&ZonalCoupling, &book, &t, "flow");

    let mut t = c.clone();
    t.outcome.flows[0].flow = q("6");
    rejects(&ZonalCoupling, &book, &t, "tie-line flow of line 1");

    let mut t = c.clone();
    t.trades[0].quantity = q("1");
    rejects(&ZonalCoupling, &book, &t, "trade 0");

    let mut t = c.clone();
    t.outcome.congestion_rent = money("0");
    rejects(&ZonalCoupling, &book, &t, "congestion rent");
}

#[test]
fn rule_for_picks_each_rule() {
    for rule in [
        ClearingRule::PayAsBid,
        ClearingRule::UniformPrice,
        ClearingRule::ZonalCoupling,
    ] {
        assert_eq!(rule_for(rule).rule(), rule);
    }
}

#[test]
fn products_clear_independently() {
    let mut book = Book::new(ClearingRule::UniformPrice, 1);
    book.bid(1, Sell, &[("20", "10")], 1);
    book.bid(1, Buy, &[("30", "10")], 1);
    book.bid(1, Sell, &[("40", "10")], 1);
    book.bid(1, Buy, &[("50", "4")], 1);
    // The last two bids are for the next hour.
    for b in &mut book.bids[2..] {
        b.product.delivery_start.0 += 3_600_000;
    }
    for rule in [&UniformPrice as &dyn Clearing, &ZonalCoupling] {
        let c = rule.clear(&book.input()).unwrap();
        let prices: Vec<Price> = c.outcome.area_prices.iter().map(|a| a.price).collect();
        assert_eq!(prices, vec![p("25"), p("40")]);
        let q_of = |i: usize| award(&c, book.bids[i].id(), 0);
        assert_eq!(
            [q_of(0), q_of(1), q_of(2), q_of(3)],
            [q("10"), q("10"), q("4"), q("4")]
        );
        assert_eq!(c.outcome.welfare, money("140"));
        assert_eq!(rule.verify(&book.input(), &c), Ok(()));
    }
}

#[test]
fn zonal_with_cuts_but_no_bids_publishes_zero_shadow_prices() {
    let mut book = Book::new(ClearingRule::ZonalCoupling, 2);
    book.line(1, 1, 2, "5", "5");
    book.cut(&[(CutVariable::TieFlow(TieLineId(1)), 1.0)], "1");
    let c = ZonalCoupling.clear(&book.input()).unwrap();
    assert_eq!(c.outcome.cut_prices, vec![Price::ZERO]);
    assert!(c.outcome.area_prices.is_empty() && c.trades.is_empty());
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));
    let mut t = c.clone();
    t.outcome.cut_prices[0] = p("3");
    rejects(&ZonalCoupling, &book, &t, "cut shadow price 0");
}

#[test]
fn zonal_cut_on_a_tie_line_acts_as_a_capacity() {
    let (mut book, [cheap, dear, _]) = two_area_book("100");
    book.cut(&[(CutVariable::TieFlow(TieLineId(1)), 1.0)], "5");
    let c = ZonalCoupling.clear(&book.input()).unwrap();
    assert_eq!(award(&c, cheap, 0), q("5"));
    assert_eq!(award(&c, dear, 0), q("10"));
    assert_eq!(c.outcome.flows[0].flow, q("5"));
    assert_eq!(area_price(&c, 1), p("20"));
    assert_eq!(area_price(&c, 2), p("40"));
    assert_eq!(c.outcome.cut_prices, vec![p("20")]);
    assert_eq!(c.outcome.congestion_rent, money("100"));
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));
}

#[test]
fn zonal_prices_a_zone_beyond_the_cap_when_every_location_is_offset_by_a_cut() {
    // One area; both bids sit at locations the cut names: the seller's injection counts fully,
    // the buyer's withdrawal at 0.99, so the cut lets 4 MWh trade. The cut's shadow price is
    // 4,000 and the area's reference price 4,010, beyond the cap of 3,000, while the seller's
    // location is priced at its limit of 10 and the buyer's at its limit of 50 (spec 3.4: with
    // cuts the range is widened by the largest offset).
    let mut book = Book::new(ClearingRule::ZonalCoupling, 1);
    let seller = book.bid(1, Sell, &[("10", "10")], 1);
    let buyer = book.bid(1, Buy, &[("50", "5")], 2);
    book.cut(
        &[
            (CutVariable::Bid(seller), 1.0),
            (CutVariable::Bid(buyer), 0.99),
        ],
        "0.04",
    );
    let c = ZonalCoupling.clear(&book.input()).unwrap();
    assert_eq!(award(&c, seller, 0), q("4"));
    assert_eq!(award(&c, buyer, 0), q("4"));
    assert_eq!(c.outcome.cut_prices, vec![p("4000")]);
    assert_eq!(area_price(&c, 1), p("4010"));
    let price_of = |bid: Digest| c.trades.iter().find(|t| t.bid == bid).unwrap().price;
    assert_eq!(price_of(seller), p("10"));
    assert_eq!(price_of(buyer), p("50"));
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));
}

#[test]
fn the_products_of_a_round_clear_on_every_core_as_each_would_alone() {
    // Twelve quarter-hours in two areas joined by a line, bids grouped by quarter-hour (the
    // canonical order). Clearing runs the products in parallel (spec 3.1): each product's part
    // of the whole round's outcome is that product's outcome cleared alone, and of two
    // tampered products the earlier names the error.
    for rule in [&UniformPrice as &dyn Clearing, &ZonalCoupling] {
        let mut whole = Book::new(rule.rule(), 2);
        whole.line(1, 1, 2, "5", "5");
        let mut per_product = Vec::new();
        for h in 0..12u64 {
            // Sellers ask 20 to 34, buyers bid 30 to 49: every quarter-hour trades.
            let ask = |x: u64| format!("{}", 20 + (h * 7 + x) % 15);
            let offer = |x: u64| format!("{}", 30 + (h * 11 + x) % 20);
            let first = whole.bids.len();
            whole.bid(1, Sell, &[(&ask(1), "10"), (&ask(9), "5")], h);
            whole.bid(2, Sell, &[(&ask(4), "8")], h + 1);
            whole.bid(1, Buy, &[(&offer(25), "6"), (&offer(12), "6")], h + 2);
            whole.bid(2, Buy, &[(&offer(29), "12")], h + 3);
            let mut alone = whole.clone();
            alone.bids.clear();
            for b in &mut whole.bids[first..] {
                b.product.delivery_minutes = 15;
                b.product.delivery_start.0 += h * 15 * 60_000;
                alone.bids.push(b.clone());
            }
            per_product.push(alone);
        }
        let c = rule.clear(&whole.input()).unwrap();
        assert_eq!(rule.verify(&whole.input(), &c), Ok(()));
        let parts: Vec<Cleared> = per_product
            .iter()
            .map(|b| rule.clear(&b.input()).unwrap())
            .collect();
        fn show<T: std::fmt::Debug>(v: &[T]) -> Vec<String> {
            v.iter().map(|x| format!("{x:?}")).collect()
        }
        let joined =
            |f: fn(&Cleared) -> Vec<String>| -> Vec<String> { parts.iter().flat_map(f).collect() };
        assert_eq!(show(&c.outcome.awards), joined(|p| show(&p.outcome.awards)));
        assert_eq!(
            show(&c.outcome.area_prices),
            joined(|p| show(&p.outcome.area_prices))
        );
        assert_eq!(show(&c.outcome.flows), joined(|p| show(&p.outcome.flows)));
        assert_eq!(show(&c.trades), joined(|p| show(&p.trades)));
        let sum = |f: fn(&Cleared) -> i128| parts.iter().map(f).sum::<i128>();
        assert_eq!(c.outcome.welfare.0, sum(|p| p.outcome.welfare.0));
        assert_eq!(
            c.outcome.congestion_rent.0,
            sum(|p| p.outcome.congestion_rent.0)
        );
        // The round is not trivial: every product trades, at more than one price.
        assert!(parts.iter().all(|p| !p.trades.is_empty()));
        let prices: std::collections::BTreeSet<Price> =
            c.outcome.area_prices.iter().map(|a| a.price).collect();
        assert!(prices.len() > 3, "{prices:?}");

        let mut t = c.clone();
        for h in [9usize, 3] {
            t.outcome.area_prices[2 * h].price.0 += 1;
        }
        let third = c.outcome.area_prices[6].product;
        let err = rejects(rule, &whole, &t, "area price");
        assert!(
            err.contains(&format!("{}+15min", third.delivery_start)),
            "`{err}` names another product than the fourth quarter-hour"
        );
    }
}

#[test]
fn zonal_rounding_residuals_of_free_flows_cancel_between_zones() {
    // Twenty-seven areas in a ring closed by chords (the SDAC benchmark's grid), a day of 96
    // quarter-hours whose bids are all sellers' (even quarter-hours) or all buyers' (odd):
    // nothing trades, no class is marginal, and the interior point returns a zero-cost
    // circulation around the cycles that, rounded to whole kWh line by line, leaves zones 1 kWh
    // over or under. Those residuals cancel over the free lines (spec 3.6, step 2); before
    // that rule the primary could not clear such a day and lost every view.
    let areas = 27u16;
    let mut book = Book::new(ClearingRule::ZonalCoupling, areas);
    for i in 0..40u16 {
        let (from, to) = if i < areas {
            (i + 1, (i + 1) % areas + 1)
        } else {
            (i - areas + 1, (i - areas + 9) % areas + 1)
        };
        let mwh = 100 + (i64::from(i) * 137) % 400;
        book.line(i + 1, from, to, &mwh.to_string(), &(mwh + 50).to_string());
    }
    // The SDAC benchmark's first generator at 20,000 steps: 1,080 participants, 40 per area,
    // over 96 quarter-hours, so most areas have no bid in a quarter-hour.
    let (mut i, mut steps_left) = (0u64, 20_000u64);
    while steps_left > 0 {
        let n = (1 + (i * 7_919) % 32).min(steps_left);
        steps_left -= n;
        let (p, round) = (i % 1_080, i / 1_080);
        let quarter = (round + 5 * i) % 96;
        let area = (p / 40) as u16 + 1;
        let sell = (p + round) % 2 == 0;
        let level = 30
            + ((i64::from(area) - 1) * 11) % 40
            + if (8..20).contains(&(quarter / 4)) {
                25
            } else {
                0
            };
        let steps: Vec<(String, String)> = (0..n as i64)
            .map(|k| {
                let euros = if sell {
                    level - 10 + (i as i64 % 23) + 2 * k
                } else {
                    level + 25 + (i as i64 % 19) - 2 * k
                };
                let kwh = 100 + ((i as i64) * 31 + k * 17) % 4_900;
                (
                    euros.to_string(),
                    format!("{}.{:03}", kwh / 1000, kwh % 1000),
                )
            })
            .collect();
        let steps: Vec<(&str, &str)> = steps.iter().map(|(p, q)| (&p[..], &q[..])).collect();
        book.bid(area, if sell { Sell } else { Buy }, &steps, i);
        let last = book.bids.last_mut().unwrap();
        last.product.delivery_minutes = 15;
        last.product.delivery_start.0 += quarter * 15 * 60_000;
        i += 1;
    }
    book.bids.sort_by_key(|b| b.product);
    let c = ZonalCoupling.clear(&book.input()).expect("clears");
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));
    assert!(c.outcome.awards.is_empty() && c.trades.is_empty());
    assert_eq!(c.outcome.flows.len(), 96 * 40);
}
