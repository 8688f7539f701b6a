//! [`UniformPrice`]: one zone, a welfare-maximising merit order and one marginal price per
//! product (spec C2, C3, C4).

use crate::genesis::ClearingRule;
use crate::market::Side;

use super::pool::{self, Layout, Mode};
use super::{Cleared, Clearing, ClearingError, ClearingInput, VerifyError, parallel_map};

/// One zone, one price: sellers' steps by rising price and buyers' by falling price, each
/// price level by submission time then bid id, are matched while the buyer's limit is at
/// least the seller's (so equal limits trade). All areas form one zone and tie lines are
/// ignored. Cuts are not supported: use [`super::ZonalCoupling`].
///
/// The price is the canonical price of the pool (spec C3): the midpoint of the interval of
/// prices consistent with the accepted steps, bounded by the product's lowest and highest bid
/// prices, rounded down to the tick. Every trade takes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct UniformPrice;

/// One bid step in the merit order.
#[derive(Clone, Copy)]
struct Entry {
    /// Sort key: price (negated for buyers so that better comes first), then time, then id.
    price: i64,
    time: u64,
    id: [u8; 32],
    /// Flat step index.
    flat: usize,
    quantity: i64,
}

fn sort_key(e: &Entry) -> (i64, u64, [u8; 32]) {
    (e.price, e.time, e.id)
}

impl Clearing for UniformPrice {
    fn rule(&self) -> ClearingRule {
        ClearingRule::UniformPrice
    }

    fn clear(&self, input: &ClearingInput<'_>) -> Result<Cleared, ClearingError> {
        refuse_cuts(input)?;
        let (layout, products) = Layout::new(input);
        // Each product's merit order on its own core (spec 3.1).
        let fills = parallel_map(
            &products,
            || (),
            |_, (_, bids)| merit_order(input, &layout, bids),
        );
        let mut flat = vec![0i64; layout.total()];
        for (at, q) in fills.into_iter().flatten() {
            flat[at] += q;
        }
        let markets = pool::markets_of(input, &layout, Mode::OneZone, &products)?;
        let none = vec![Vec::new(); markets.len()];
        let cleared = pool::assemble(input, Mode::OneZone, &layout, &markets, &flat, &none, &none)?;
        debug_assert_eq!(pool::verify(input, Mode::OneZone, &cleared), Ok(()));
        Ok(cleared)
    }

    fn verify(&self, input: &ClearingInput<'_>, proposed: &Cleared) -> Result<(), VerifyError> {
        refuse_cuts(input).map_err(VerifyError::Clearing)?;
        pool::verify(input, Mode::OneZone, proposed)
    }
}

/// One product's merit order: what each round of matching accepts, as (flat index of a step,
/// kWh); a step filled over several rounds appears once per round.
fn merit_order(input: &ClearingInput<'_>, layout: &Layout, bids: &[usize]) -> Vec<(usize, i64)> {
    let steps: usize = bids.iter().map(|&p| layout.steps(p)).sum();
    let mut buys = Vec::with_capacity(steps);
    let mut sells = Vec::with_capacity(steps);
    for &p in bids {
        let (id, bid) = input.bids[p];
        for (s, step) in bid.steps.iter().enumerate() {
            let e = Entry {
                price: match bid.side {
                    Side::Buy => -step.price.0,
                    Side::Sell => step.price.0,
                },
                time: input.received[p].0,
                id: id.0,
                flat: layout.at(p, s),
                quantity: step.quantity.0,
            };
            match bid.side {
                Side::Buy => buys.push(e),
                Side::Sell => sells.push(e),
            }
        }
    }
    buys.sort_unstable_by_key(sort_key);
    sells.sort_unstable_by_key(sort_key);
    let mut fill = Vec::new();
    let (mut i, mut j) = (0, 0);
    let (mut left_b, mut left_s) = (
        buys.first().map_or(0, |e| e.quantity),
        sells.first().map_or(0, |e| e.quantity),
    );
    // Each round fills one step on at least one side: at most buys + sells rounds.
    while i < buys.len() && j < sells.len() && -buys[i].price >= sells[j].price {
        let q = left_b.min(left_s);
        fill.push((buys[i].flat, q));
        fill.push((sells[j].flat, q));
        left_b -= q;
        left_s -= q;
        if left_b == 0 {
            i += 1;
            left_b = buys.get(i).map_or(0, |e| e.quantity);
        }
        if left_s == 0 {
            j += 1;
            left_s = sells.get(j).map_or(0, |e| e.quantity);
        }
    }
    fill
}

/// One-zone rules take no cuts.
pub(crate) fn refuse_cuts(input: &ClearingInput<'_>) -> Result<(), ClearingError> {
    if input.cuts.is_empty() {
        Ok(())
    } else {
        Err(ClearingError::UnsuitableInput(format!(
            "{} negotiation cuts given to a one-zone rule; only zonal coupling honours cuts",
            input.cuts.len()
        )))
    }
}
