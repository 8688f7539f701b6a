//! [`PayAsBid`]: bilateral matching of buy and sell steps by price, then submission time, then
//! bid id (spec C1).

use std::collections::BTreeMap;

use crate::crypto::{Digest, DigestMap};
use crate::genesis::ClearingRule;
use crate::market::{Product, Side, Trade};
use crate::units::{Money, Price, Quantity};

use super::pool::{self, Layout};
use super::uniform::refuse_cuts;
use super::{
    Cleared, Clearing, ClearingError, ClearingInput, ClearingMismatch, ClearingOutcome, StepAward,
    VerifyError,
};

/// Pay-as-bid matching: per product, the best remaining buyer step (highest limit, then
/// earliest submission, then smallest bid id) is matched with the best remaining seller step
/// (lowest limit, then earliest, then smallest id) while the buyer's limit is at least the
/// seller's. A matched pair trades at the limit price of the pair's **earlier-submitted** bid
/// (the bid that was waiting in the book), the seller's on equal submission times. Each
/// matched pair gives two trades, the buyer's and the seller's, each naming the other as
/// counterparty; consecutive matches of the same two bids at the same price are merged. All
/// areas form one zone; cuts are not supported. No area price is published, and the
/// congestion rent is zero.
///
/// Verification does not sort (spec C1): it walks the proposed trades once, in their order,
/// and checks that they consume every bid's steps in priority order on each side, only while
/// the steps cross, at the earlier bid's price, merged where the rule merges; then that every
/// step ahead of the last one consumed is used up, none behind it is touched, and the best
/// steps left over do not cross. That is exactly the greedy matching the rule defines, checked
/// in time linear in the steps and trades.
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
                        key: (price, input.received[p].0, id.0),
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
                let buyer_first = input.received[b.pos] < input.received[s.pos];
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

    fn verify(&self, input: &ClearingInput<'_>, proposed: &Cleared) -> Result<(), VerifyError> {
        refuse_cuts(input).map_err(VerifyError::Clearing)?;
        let (layout, products) = Layout::new(input);
        let mut walk = Walk::new(input, &layout);
        walk.trades(&proposed.trades)
            .map_err(VerifyError::Mismatch)?;
        for (_, bids) in &products {
            walk.settled(bids).map_err(VerifyError::Mismatch)?;
        }
        // The awards and the welfare follow from what the walk consumed, read in step order;
        // the rest of the outcome is the clearing's as `clear` builds it.
        let welfare = walk
            .awards(&proposed.outcome.awards)
            .map_err(VerifyError::Mismatch)?;
        let expected = Cleared {
            outcome: ClearingOutcome {
                welfare,
                congestion_rent: pool::rent_of(&proposed.trades),
                ..ClearingOutcome::default()
            },
            // The walk has checked every trade already.
            trades: Vec::new(),
        };
        super::compare_parts(&expected, proposed, false, false).map_err(VerifyError::Mismatch)
    }
}

fn mismatch(item: String, proposed: impl ToString, expected: impl ToString) -> ClearingMismatch {
    ClearingMismatch {
        item,
        proposed: proposed.to_string(),
        expected: expected.to_string(),
    }
}

/// The last step consumed on each side, buy then sell, as (bid position, step).
type Frontier = [Option<(usize, usize)>; 2];

/// A step's place in its side's priority order: best limit first (a buyer's highest, a
/// seller's lowest), then earlier submission, then smaller bid id.
type Key = (i64, u64, [u8; 32]);

/// What the walk keeps of a bid, per bid position: everything a visit reads or changes, in
/// one cell, so that a visit in priority order (all over memory) costs one cache miss.
#[derive(Clone, Copy)]
struct BidCell {
    /// The flat index of its first step.
    first: u32,
    /// Its number of steps.
    steps: u16,
    /// The first step not yet used up.
    cursor: u16,
    /// Whether it buys.
    buys: bool,
    /// Its receipt time.
    time: u64,
    participant: crate::units::ParticipantId,
    area: crate::units::AreaId,
    bus: Option<crate::units::BusId>,
    /// Index into [`Walk::products`].
    product: u32,
}

/// What the walk keeps of a bid step, in one cell.
#[derive(Clone, Copy)]
struct StepCell {
    /// The limit price, negated for buyers: ascending is priority order.
    rank: i64,
    /// The quantity.
    quantity: i64,
    /// The energy consumed so far.
    used: i64,
}

/// How many trade pairs ahead of the one it checks the walk touches the next bids' cells, so
/// that they are on their way from memory while it works ([`Walk::touch_ahead`]).
const LOOK_AHEAD: usize = 16;

/// One pass over proposed trades, tracking how much of every step they consume. Everything
/// the walk reads of a bid (prices, quantities, times, sides, the fields a trade repeats and
/// the id) is copied once, in bid order, into a cell per bid and a cell per step, so the walk,
/// which visits bids in priority order and thus all over memory, never touches the bids
/// themselves. The trades' bid positions are looked up first, in one pass whose lookups do
/// not depend on each other.
struct Walk<'w, 'a> {
    input: &'w ClearingInput<'a>,
    index: DigestMap<u32>,
    /// The bid id per position.
    ids: Vec<Digest>,
    /// The distinct products, by the index [`BidCell::product`] holds.
    products: Vec<Product>,
    /// Per bid position.
    bids: Vec<BidCell>,
    /// Per flat step.
    steps: Vec<StepCell>,
    /// The product whose trades are being walked, and the last step consumed on each side as
    /// (bid position, step), buy then sell. Trades come grouped by product.
    current: Option<(Product, Frontier)>,
    /// The same for the products already walked.
    done: BTreeMap<Product, Frontier>,
}

impl<'w, 'a> Walk<'w, 'a> {
    fn new(input: &'w ClearingInput<'a>, layout: &Layout) -> Self {
        let m = input.bids.len();
        let mut steps = Vec::with_capacity(layout.total());
        let (mut bids, mut ids) = (Vec::with_capacity(m), Vec::with_capacity(m));
        let mut products: Vec<Product> = Vec::new();
        let mut product_index: BTreeMap<Product, u32> = BTreeMap::new();
        // Bids of one product tend to come together: the last one found is tried first.
        let mut last: Option<(Product, u32)> = None;
        for (pos, (&(id, bid), &received)) in input.bids.iter().zip(&input.received).enumerate() {
            let buys = bid.side == Side::Buy;
            for step in &bid.steps {
                steps.push(StepCell {
                    rank: if buys { -step.price.0 } else { step.price.0 },
                    quantity: step.quantity.0,
                    used: 0,
                });
            }
            ids.push(id);
            let product = match last {
                Some((p, i)) if p == bid.product => i,
                _ => {
                    let i = *product_index.entry(bid.product).or_insert_with(|| {
                        products.push(bid.product);
                        (products.len() - 1) as u32
                    });
                    last = Some((bid.product, i));
                    i
                }
            };
            // Flat indices and step counts fit: the layout counts at most MAX_AWARDS-scale
            // steps, and a bid has at most MAX_BID_STEPS.
            bids.push(BidCell {
                first: layout.at(pos, 0) as u32,
                steps: layout.steps(pos) as u16,
                cursor: 0,
                buys,
                time: received.0,
                participant: bid.participant,
                area: bid.area,
                bus: bid.bus,
                product,
            });
        }
        Self {
            index: ids
                .iter()
                .enumerate()
                .map(|(p, id)| (*id, p as u32))
                .collect(),
            ids,
            products,
            bids,
            steps,
            current: None,
            done: BTreeMap::new(),
            input,
        }
    }

    fn step(&self, pos: usize, step: usize) -> &StepCell {
        &self.steps[self.bids[pos].first as usize + step]
    }

    fn key(&self, pos: usize, step: usize) -> Key {
        (
            self.step(pos, step).rank,
            self.bids[pos].time,
            self.ids[pos].0,
        )
    }

    /// Whether the step at (`a`, `sa`) comes after the one at (`b`, `sb`) in its side's
    /// priority order: the order of [`Walk::key`], reading an id only on a tie.
    fn behind(&self, (a, sa): (usize, usize), (b, sb): (usize, usize)) -> bool {
        let ka = (self.step(a, sa).rank, self.bids[a].time);
        let kb = (self.step(b, sb).rank, self.bids[b].time);
        ka > kb || (ka == kb && self.ids[a].0 > self.ids[b].0)
    }

    /// The trade a bid's side of a match gives: `me` traded `quantity` at `price` with
    /// `other`.
    fn expected_trade(&self, me: usize, other: usize, quantity: Quantity, price: Price) -> Trade {
        let m = &self.bids[me];
        Trade {
            bid: self.ids[me],
            participant: m.participant,
            side: if m.buys { Side::Buy } else { Side::Sell },
            area: m.area,
            bus: m.bus,
            product: self.products[m.product as usize],
            quantity,
            price,
            counterparty: Some(self.bids[other].participant),
        }
    }

    /// Whether `t` is the trade a bid's side of a match gives ([`Walk::expected_trade`]),
    /// its bid id aside: the walk found `me` by that id. Reads only the two bids' cells.
    fn is_trade(
        &self,
        t: &Trade,
        me: usize,
        other: usize,
        quantity: Quantity,
        price: Price,
    ) -> bool {
        let m = &self.bids[me];
        t.quantity == quantity
            && t.price == price
            && t.participant == m.participant
            && t.side == if m.buys { Side::Buy } else { Side::Sell }
            && t.area == m.area
            && t.bus == m.bus
            && t.counterparty == Some(self.bids[other].participant)
            && t.product == self.products[m.product as usize]
    }

    /// Checks `awards` against what the walk consumed: one per step used, in step order, of
    /// the energy used; returns the welfare of the steps used (buyers' limits minus sellers'
    /// over the energy, as [`pool::welfare_of`] computes it).
    fn awards(&self, awards: &[StepAward]) -> Result<Money, ClearingMismatch> {
        let mut welfare: i128 = 0;
        let mut k = 0;
        for (pos, b) in self.bids.iter().enumerate() {
            let first = b.first as usize;
            for (step, cell) in self.steps[first..first + usize::from(b.steps)]
                .iter()
                .enumerate()
            {
                if cell.used == 0 {
                    continue;
                }
                // rank is the limit, negated for buyers: -rank * used is the step's share.
                welfare -= i128::from(cell.rank) * i128::from(cell.used);
                let expected = StepAward {
                    bid: self.ids[pos],
                    // A step index is below MAX_BID_STEPS.
                    step: step as u16,
                    quantity: Quantity(cell.used),
                };
                if awards.get(k) != Some(&expected) {
                    return Err(mismatch(
                        format!("award {k}"),
                        awards.get(k).map_or("nothing".into(), |a| format!("{a:?}")),
                        format!("{expected:?}"),
                    ));
                }
                k += 1;
            }
        }
        if let Some(extra) = awards.get(k) {
            return Err(mismatch(
                format!("award {k}"),
                format!("{extra:?}"),
                "nothing",
            ));
        }
        Ok(Money(welfare))
    }

    /// The limit price of a step.
    fn price(&self, pos: usize, step: usize) -> Price {
        let r = self.step(pos, step).rank;
        Price(if self.bids[pos].buys { -r } else { r })
    }

    /// The first step of the bid at `pos` not used up.
    fn current(&self, pos: usize) -> Option<usize> {
        let b = &self.bids[pos];
        (b.cursor < b.steps).then_some(usize::from(b.cursor))
    }

    /// Adds `piece` to a step's use, moving the bid's cursor past it once it is used up.
    fn take(&mut self, pos: usize, step: usize, piece: i64) {
        let first = self.bids[pos].first as usize;
        let cell = &mut self.steps[first + step];
        cell.used += piece;
        if cell.used == cell.quantity {
            // A step index is below MAX_BID_STEPS.
            self.bids[pos].cursor = (step + 1) as u16;
        }
    }

    /// Prefetches the bid cells of the trades 2 x [`LOOK_AHEAD`] pairs after trade `at`, and
    /// the current step cells of those [`LOOK_AHEAD`] pairs after it (whose bid cells were
    /// prefetched before), so they are in cache when the walk gets there. A prefetch waits for
    /// nothing: the processor fetches many lines at once while the walk works.
    fn touch_ahead(&self, positions: &[Option<u32>], at: usize) {
        for t in [at + 2 * LOOK_AHEAD, at + 2 * LOOK_AHEAD + 1] {
            if let Some(Some(p)) = positions.get(t) {
                prefetch_index::prefetch_index(&self.bids, *p as usize);
            }
        }
        for t in [at + LOOK_AHEAD, at + LOOK_AHEAD + 1] {
            if let Some(Some(p)) = positions.get(t) {
                if let Some(b) = self.bids.get(*p as usize) {
                    let step = b.first as usize + usize::from(b.cursor);
                    if step < self.steps.len() {
                        prefetch_index::prefetch_index(&self.steps, step);
                    }
                }
            }
        }
    }

    fn trades(&mut self, trades: &[Trade]) -> Result<(), ClearingMismatch> {
        if trades.len() % 2 != 0 {
            return Err(mismatch("trades".into(), trades.len(), "pairs of trades"));
        }
        let positions: Vec<Option<u32>> = trades
            .iter()
            .map(|t| self.index.get(&t.bid).copied())
            .collect();
        let mut previous: Option<(usize, usize, Price)> = None;
        for (k, pair) in trades.chunks(2).enumerate() {
            self.touch_ahead(&positions, 2 * k);
            let (b, s) = (&pair[0], &pair[1]);
            let name = |i: usize, what: &str| format!("trade {}: {what}", 2 * k + i);
            let pos_b = positions[2 * k]
                .ok_or_else(|| mismatch(name(0, "bid"), format!("{:?}", b.bid), "a cleared bid"))?
                as usize;
            let pos_s = positions[2 * k + 1]
                .ok_or_else(|| mismatch(name(1, "bid"), format!("{:?}", s.bid), "a cleared bid"))?
                as usize;
            if !self.bids[pos_b].buys
                || self.bids[pos_s].buys
                || self.bids[pos_b].product != self.bids[pos_s].product
            {
                return Err(mismatch(
                    name(0, "sides"),
                    "not a buyer then a seller of one product",
                    "a buyer's trade, then its seller's, of one product",
                ));
            }
            if b.quantity.0 <= 0 {
                return Err(mismatch(
                    name(0, "quantity"),
                    b.quantity,
                    "a positive quantity",
                ));
            }
            if previous == Some((pos_b, pos_s, b.price)) {
                return Err(mismatch(
                    name(0, "merging"),
                    "a separate trade",
                    "merged with the trade before",
                ));
            }
            previous = Some((pos_b, pos_s, b.price));
            // The buyer's trade is checked against the rule; the seller's must mirror it.
            self.consume(2 * k, pos_b, pos_s, b.quantity.0, b.price)?;
            for (i, t, me, other) in [(0, b, pos_b, pos_s), (1, s, pos_s, pos_b)] {
                if !self.is_trade(t, me, other, b.quantity, b.price) {
                    let exp = self.expected_trade(me, other, b.quantity, b.price);
                    return Err(mismatch(
                        name(i, "fields"),
                        format!("{t:?}"),
                        format!("{exp:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Consumes `q` from the current steps of a buyer and a seller, step by step, checking
    /// priority order on each side, crossing limits and the price of each piece.
    fn consume(
        &mut self,
        trade: usize,
        pos_b: usize,
        pos_s: usize,
        q: i64,
        price: Price,
    ) -> Result<(), ClearingMismatch> {
        let item = |what: &str| format!("trade {trade}: {what}");
        let product = self.products[self.bids[pos_b].product as usize];
        // The earlier-submitted bid sets the price; the seller's on equal times.
        let earlier_is_buyer = self.bids[pos_b].time < self.bids[pos_s].time;
        let mut left = q;
        while left > 0 {
            let sb = self.current(pos_b).ok_or_else(|| {
                mismatch(
                    item("buyer's quantity"),
                    q,
                    "at most what the buyer's steps hold",
                )
            })?;
            let ss = self.current(pos_s).ok_or_else(|| {
                mismatch(
                    item("seller's quantity"),
                    q,
                    "at most what the seller's steps hold",
                )
            })?;
            let (pb, ps) = (self.price(pos_b, sb), self.price(pos_s, ss));
            if pb < ps {
                return Err(mismatch(
                    item("limits"),
                    format!("buyer {pb} below seller {ps}"),
                    "crossing limits",
                ));
            }
            let expected = if earlier_is_buyer { pb } else { ps };
            if price != expected {
                return Err(mismatch(item("price"), price, expected));
            }
            let last = self.last_of(product, trade)?;
            for (side, pos, step) in [(0, pos_b, sb), (1, pos_s, ss)] {
                if let Some((lp, ls)) = last[side].filter(|&l| l != (pos, step)) {
                    let behind = self.behind((lp, ls), (pos, step));
                    let l = self.step(lp, ls);
                    if behind || l.used < l.quantity {
                        return Err(mismatch(
                            item("priority"),
                            "a step out of the book's order",
                            "the next step in price, then time, then id order",
                        ));
                    }
                }
            }
            if let Some((_, l)) = self.current.as_mut() {
                *l = [Some((pos_b, sb)), Some((pos_s, ss))];
            }
            let (cb, cs) = (self.step(pos_b, sb), self.step(pos_s, ss));
            let piece = left.min(cb.quantity - cb.used).min(cs.quantity - cs.used);
            self.take(pos_b, sb, piece);
            self.take(pos_s, ss, piece);
            left -= piece;
        }
        Ok(())
    }

    /// The last steps consumed in `product`, opening it if the walk just reached it (products
    /// come in canonical order, each once).
    fn last_of(&mut self, product: Product, trade: usize) -> Result<Frontier, ClearingMismatch> {
        match self.current {
            Some((p, l)) if p == product => return Ok(l),
            Some((p, l)) => {
                if product < p {
                    return Err(mismatch(
                        format!("trade {trade}: product"),
                        pool::product_label(&product),
                        "products in canonical order",
                    ));
                }
                self.done.insert(p, l);
            }
            None => {}
        }
        if self.done.contains_key(&product) {
            return Err(mismatch(
                format!("trade {trade}: product"),
                pool::product_label(&product),
                "each product's trades together",
            ));
        }
        self.current = Some((product, [None, None]));
        Ok([None, None])
    }

    /// After the walk, for one product: every step ahead of the last consumed on its side is
    /// used up and none behind it is touched, and the best steps left over do not cross.
    fn settled(&self, bids: &[usize]) -> Result<(), ClearingMismatch> {
        let Some(&first) = bids.first() else {
            return Ok(());
        };
        let product = self.input.bids[first].1.product;
        let last = match self.current {
            Some((p, l)) if p == product => l,
            _ => self.done.get(&product).copied().unwrap_or([None, None]),
        };
        let mut best_left: [Option<(Key, Price)>; 2] = [None, None];
        let bounds = last.map(|l| l.map(|(lp, ls)| self.key(lp, ls)));
        for &pos in bids {
            let side = usize::from(!self.bids[pos].buys);
            let bound = bounds[side];
            for step in 0..usize::from(self.bids[pos].steps) {
                let key = self.key(pos, step);
                let cell = self.step(pos, step);
                let (used, full) = (cell.used, cell.quantity);
                let ahead = bound.is_some_and(|b| key < b);
                let behind = bound.is_none_or(|b| key > b);
                if (ahead && used < full) || (behind && used > 0) {
                    return Err(mismatch(
                        format!("step {step} of bid {:?}", self.input.bids[pos].0),
                        used,
                        if ahead { full } else { 0 },
                    ));
                }
                if used < full && best_left[side].is_none_or(|(k, _)| key < k) {
                    best_left[side] = Some((key, self.price(pos, step)));
                }
            }
        }
        if let [Some((_, buy)), Some((_, sell))] = best_left {
            if buy >= sell {
                return Err(mismatch(
                    format!("{} left over", pool::product_label(&product)),
                    format!("a buyer at {buy} and a seller at {sell} unmatched"),
                    "no crossing steps left",
                ));
            }
        }
        Ok(())
    }
}
