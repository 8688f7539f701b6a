//! Verifying a proposed pool outcome product by product (spec C5).

use super::*;

/// A bid's offset from its zone price: zero where the market has no cuts (empty offsets).
pub(super) fn offset(offsets: &[i128], i: usize) -> i128 {
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

pub(super) fn fine_label(v: i128) -> String {
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
    let prices = crate::clearing::parallel_map(
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
    crate::clearing::parallel_map(
        products,
        || (),
        |_, (product, bids)| Market::new(input, layout, mode, *product, bids.clone()),
    )
    .into_iter()
    .collect()
}

/// What one product's checks establish: its flows and cut prices as published, its canonical
/// prices, and its part of the welfare.
pub(super) struct Checked {
    flows: Vec<i64>,
    mu: Vec<i64>,
    priced: Priced,
    welfare: i128,
}

/// Checks one product of a proposed pool outcome (spec 3.5), whose flows start at row
/// `flow_row` and area prices at row `area_row` of the outcome.
pub(super) fn check_product(
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
    let checked = crate::clearing::parallel_map(
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
    crate::clearing::compare_parts(
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
