//! [`PayAsBid`]: bilateral matching of buy and sell steps by price, then submission time, then
//! bid id (spec C1).

use crate::genesis::ClearingRule;
use crate::market::{Side, Trade};
use crate::units::{Price, Quantity};

use super::pool::{self, Layout};
use super::uniform::refuse_cuts;
use super::{Cleared, Clearing, ClearingError, ClearingInput, ClearingOutcome};

/// Pay-as-bid matching: per product, the best remaining buyer step (highest limit, then
/// earliest submission, then smallest bid id) is matched with the best remaining seller step
/// (lowest limit, then earliest, then smallest id) while the buyer's limit is at least the
/// seller's. A matched pair trades at the limit price of the pair's **earlier-submitted** bid
/// (the bid that was waiting in the book), the seller's on equal submission times. Each
/// matched pair gives two trades, the buyer's and the seller's, each naming the other as
/// counterparty; consecutive matches of the same two bids at the same price are merged. All
/// areas form one zone; cuts are not supported. No area price is published, and the
/// congestion rent is zero. Verification recomputes and compares.
#[derive(Clone, Copy, Debug, Default)]
pub struct PayAsBid;

#[derive(Clone, Copy)]
struct Entry {
    key: (i64, u64, [u8; 32]),
    pos: usize,
    step: usize,
}

impl Clearing for PayAsBid {
    fn rule(&self) -> ClearingRule {
        ClearingRule::PayAsBid
    }

    fn clear(&self, input: &ClearingInput<'_>) -> Result<Cleared, ClearingError> {
        refuse_cuts(input)?;
        let (layout, products) = Layout::new(input);
        let mut flat = vec![0i64; layout.total()];
        let mut trades: Vec<Trade> = Vec::new();
        for (_, bids) in products {
            let mut buys = Vec::new();
            let mut sells = Vec::new();
            for &p in &bids {
                let (id, bid) = input.bids[p];
                for (s, step) in bid.steps.iter().enumerate() {
                    let (price, book) = match bid.side {
                        Side::Buy => (-step.price.0, &mut buys),
                        Side::Sell => (step.price.0, &mut sells),
                    };
                    book.push(Entry {
                        key: (price, bid.timestamp.0, id.0),
                        pos: p,
                        step: s,
                    });
                }
            }
            buys.sort_unstable_by_key(|e| e.key);
            sells.sort_unstable_by_key(|e| e.key);
            let left = |e: &Entry| input.bids[e.pos].1.steps[e.step].quantity.0;
            let (mut i, mut j) = (0, 0);
            let (mut left_b, mut left_s) =
                (buys.first().map_or(0, left), sells.first().map_or(0, left));
            // Each round fills one step on at least one side: at most buys + sells rounds.
            while i < buys.len() && j < sells.len() && -buys[i].key.0 >= sells[j].key.0 {
                let (b, s) = (buys[i], sells[j]);
                let q = left_b.min(left_s);
                flat[layout.at(b.pos, b.step)] += q;
                flat[layout.at(s.pos, s.step)] += q;
                let (bid_b, bid_s) = (input.bids[b.pos], input.bids[s.pos]);
                let buyer_first =
                    pool::priority(&bid_b.0, bid_b.1).0 < pool::priority(&bid_s.0, bid_s.1).0;
                let price = if buyer_first {
                    Price(-b.key.0)
                } else {
                    Price(s.key.0)
                };
                let n = trades.len();
                let merge = n >= 2
                    && trades[n - 2].bid == bid_b.0
                    && trades[n - 1].bid == bid_s.0
                    && trades[n - 1].price == price;
                if merge {
                    trades[n - 2].quantity.0 += q;
                    trades[n - 1].quantity.0 += q;
                } else {
                    for (me, other) in [(bid_b, bid_s), (bid_s, bid_b)] {
                        trades.push(Trade {
                            bid: me.0,
                            participant: me.1.participant,
                            side: me.1.side,
                            area: me.1.area,
                            bus: me.1.bus,
                            product: me.1.product,
                            quantity: Quantity(q),
                            price,
                            counterparty: Some(other.1.participant),
                        });
                    }
                }
                left_b -= q;
                left_s -= q;
                if left_b == 0 {
                    i += 1;
                    left_b = buys.get(i).map_or(0, left);
                }
                if left_s == 0 {
                    j += 1;
                    left_s = sells.get(j).map_or(0, left);
                }
            }
        }
        let outcome = ClearingOutcome {
            awards: pool::awards_of(input, &layout, &flat),
            welfare: pool::welfare_of(input, &layout, &flat),
            congestion_rent: pool::rent_of(&trades),
            ..ClearingOutcome::default()
        };
        Ok(Cleared { outcome, trades })
    }
}
