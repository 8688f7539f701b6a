//! Independent cross-check (spec C9): a DC optimal power flow of MATPOWER's `case5` through
//! zonal coupling in nodal form (one area, every line limit a PTDF cut over the bids at their
//! buses) reproduces the published optimum.

mod clearing_common;

use clearing_common::{Book, p};
use tieline_core::clearing::{Clearing, CutVariable, ZonalCoupling};
use tieline_core::genesis::ClearingRule;
use tieline_core::grid::{Case, Ptdf, line_limit_cuts};
use tieline_core::market::Side;
use tieline_core::units::{BusId, Price, Quantity};

const CASE5: &str = include_str!("fixtures/case5.m");

/// Published DC-OPF optimum of case5 (MATPOWER, PYPOWER, pandapower, PyPSA alike).
const TOTAL_COST: f64 = 17479.8969;
const BUS_PRICES: [f64; 5] = [16.9774, 26.3845, 30.0000, 39.9427, 10.0000];

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Generators become one-step sell bids at their marginal cost (case5's costs are linear),
/// loads buy bids at 1000/MWh, for one hour; each rated line two cuts.
fn case5_book() -> Book {
    let case = Case::parse(CASE5).unwrap();
    let mut book = Book::new(ClearingRule::ZonalCoupling, 1);
    book.params.price_tick = p("0.0001");
    book.params.price_floor = p("-1000");
    book.params.price_cap = p("1000");
    let mut at = Vec::new();
    for (g, cost) in case.generators.iter().zip(&case.costs) {
        assert_eq!(g.pmin, 0.0);
        let price = format!("{:.4}", cost.marginal(0.0));
        let qty = format!("{:.3}", g.pmax);
        let id = book.bid_at(1, Some(g.bus), Side::Sell, &[(&price, &qty)], 1);
        at.push((CutVariable::Bid(id), BusId(g.bus)));
    }
    for b in case.buses.iter().filter(|b| b.pd > 0.0) {
        let qty = format!("{:.3}", b.pd);
        let id = book.bid_at(1, Some(b.id), Side::Buy, &[("1000", &qty)], 2);
        at.push((CutVariable::Bid(id), BusId(b.id)));
    }
    let ptdf = Ptdf::compute(&case).unwrap();
    book.cuts = line_limit_cuts(&case, &ptdf, clearing_common::product(), &at);
    book
}

#[test]
fn case5_dc_opf_reproduces_published_optimum() {
    let book = case5_book();
    // Lines 1-2 (400 MW) and 4-5 (240 MW) are rated: four cuts.
    assert_eq!(book.cuts.len(), 4);
    let c = ZonalCoupling.clear(&book.input()).unwrap();
    assert_eq!(ZonalCoupling.verify(&book.input(), &c), Ok(()));

    let cost: f64 = c
        .trades
        .iter()
        .filter(|t| t.side == Side::Sell)
        .map(|t| {
            let bid = book.bids.iter().find(|b| b.id() == t.bid).unwrap();
            bid.steps[0].price.to_f64() * t.quantity.to_f64()
        })
        .sum();
    let served: Quantity = c
        .trades
        .iter()
        .filter(|t| t.side == Side::Buy)
        .map(|t| t.quantity)
        .sum();
    assert_eq!(served, Quantity::parse("1000").unwrap());
    println!("case5 total cost {cost:.4} $/h (published {TOTAL_COST})");
    assert!(relative(cost, TOTAL_COST) < 1e-4, "total cost {cost}");

    for (i, want) in BUS_PRICES.iter().enumerate() {
        let got = c
            .outcome
            .bus_prices
            .iter()
            .find(|b| b.bus == BusId(i as u32 + 1))
            .unwrap()
            .price;
        println!("case5 bus {} price {got} $/MWh (published {want})", i + 1);
        assert!(
            relative(got.to_f64(), *want) < 1e-4,
            "bus {} price {got}",
            i + 1
        );
    }
    // The binding line 4-5 carries its rating: its forward or backward cut has a positive
    // shadow price, and line 1-2's cuts have none.
    let priced: Vec<u32> = book
        .cuts
        .iter()
        .zip(&c.outcome.cut_prices)
        .filter(|(_, m)| **m > Price::ZERO)
        .map(|(cut, _)| cut.label / 2)
        .collect();
    assert_eq!(priced, vec![5]);

    // A tampered bus price or shadow price is rejected, named.
    let mut t = c.clone();
    t.outcome.bus_prices[0].price = p("17");
    let e = ZonalCoupling
        .verify(&book.input(), &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bus price 0"), "{e}");
    let mut t = c.clone();
    let k = t
        .outcome
        .cut_prices
        .iter()
        .position(|m| *m > Price::ZERO)
        .unwrap();
    t.outcome.cut_prices[k] = Price(t.outcome.cut_prices[k].0 + 10_000);
    assert!(ZonalCoupling.verify(&book.input(), &t).is_err());
}

#[test]
fn ptdf_of_case5_conserves_flow() {
    let case = Case::parse(CASE5).unwrap();
    let ptdf = Ptdf::compute(&case).unwrap();
    // The reference bus (4) has no factors; an injection at bus 1 leaves on lines 1-2, 1-4
    // and 1-5, which carry all of it.
    assert!(ptdf.factors.iter().all(|row| row[3] == 0.0));
    let out: f64 = (0..3).map(|b| ptdf.factor(b, 1).unwrap()).sum();
    assert!((out - 1.0).abs() < 1e-9, "{out}");
}
