//! Building a product's market and the checks of a proposed outcome against it: line
//! capacities, balances, cuts, zone bounds, and settling awards and flows.

use super::*;

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
    pub(super) fn step_of(&self, row: &Row) -> usize {
        row.flat() - self.layout.at(self.bids[row.bid()], 0)
    }

    pub(super) fn tick_fine(&self) -> i128 {
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
    pub(super) fn check_lines(&self, flows: &[i64]) -> Result<(), ClearingMismatch> {
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
    pub(super) fn check_balance(
        &self,
        injection: &[i128],
        flows: &[i64],
    ) -> Result<(), ClearingMismatch> {
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
    pub(super) fn cut_sides(&self, bid_injection: &[i128], flows: &[i64]) -> Vec<i128> {
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
    pub(super) fn check_cuts(
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
    pub(super) fn zone_bounds(
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
    pub(super) fn settle(
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
}
