//! The canonical price rule (spec C3), priority among interchangeable steps (C4), the
//! objectives, and publishing a product's outcome.

use super::*;

impl<'i, 'a> Market<'i, 'a> {
    /// The canonical prices (spec C3) of the awards, flows and cut shadow prices `mu` (raw
    /// price units, one per cut of the market). `Err(zone)` if no price vector is consistent.
    pub fn canonical_prices(
        &self,
        flat: &[i64],
        flows: &[i64],
        mu: &[i64],
    ) -> Result<Priced, usize> {
        let (bid_offset, line_offset) = self.offsets(mu);
        let range = self.range(&bid_offset, &line_offset);
        let (lo, hi) = self.zone_bounds(flat, &bid_offset, range);
        let zone_price = self.settle(&lo, &hi, flows, &line_offset)?;
        Ok(Priced {
            zone_price,
            bid_offset,
        })
    }

    /// One pass over the steps for verification at the published zone prices (fine units):
    /// step quantities, injections, the steps' price bounds, complementary slackness, the
    /// marginal steps and both objectives' step terms.
    pub(super) fn scan(
        &self,
        flat: &[i64],
        bid_offset: &[i128],
        published: &[i128],
        range: (i128, i128),
    ) -> Result<Scan, ClearingMismatch> {
        let (clip_lo, clip_hi) = range;
        let tau = self.tau;
        let mut out = Scan {
            injection: vec![0; self.zones],
            bid_injection: vec![
                0;
                if self.cuts.is_empty() {
                    0
                } else {
                    self.bids.len()
                }
            ],
            lo: vec![clip_lo; self.zones],
            hi: vec![clip_hi; self.zones],
            violation: None,
            marginal: Vec::new(),
            dual: 0,
            primal: 0,
            volume: 0,
        };
        for (j, row) in self.rows.iter().enumerate() {
            let i = row.bid();
            let z = self.zone_of[i];
            let x = flat[row.flat()];
            if x > row.quantity {
                let id = self.input.bids[self.bids[i]].0;
                return Err(mismatch(
                    format!("award of bid {id:?} step {}", self.step_of(row)),
                    format!("quantity {}", Quantity(x)),
                    format!("at most the step's {}", Quantity(row.quantity)),
                ));
            }
            let signed = i128::from(if row.sell() { x } else { -x });
            out.injection[z] += signed;
            if let Some(b) = out.bid_injection.get_mut(i) {
                *b += signed;
            }
            let limit = i128::from(row.price) * FINE;
            let at = limit + offset(bid_offset, i);
            let (floor, ceil) = if row.sell() {
                (x > 0, x < row.quantity)
            } else {
                (x < row.quantity, x > 0)
            };
            if floor && at - tau > out.lo[z] {
                out.lo[z] = at - tau;
            }
            if ceil && at + tau < out.hi[z] {
                out.hi[z] = at + tau;
            }
            // Reduced profit of one more kWh for the bidder at the published price.
            let local = published[z] - offset(bid_offset, i);
            let r = if row.sell() {
                local - limit
            } else {
                limit - local
            };
            if out.violation.is_none() && ((x > 0 && r < -tau) || (x < row.quantity && r > tau)) {
                out.violation = Some(j);
            }
            if r.abs() <= tau {
                out.marginal.push(j);
            }
            let q = i128::from(row.quantity);
            out.dual += q * r.max(0);
            out.primal -= limit * signed;
            out.volume += q;
        }
        // Sales enter the primal objective negatively and purchases positively.
        Ok(out)
    }

    /// The complementary-slackness violation of step `row` at `published` prices, named.
    pub(super) fn row_mismatch(
        &self,
        row: usize,
        flat: &[i64],
        bid_offset: &[i128],
        published: &[i128],
    ) -> ClearingMismatch {
        let r = &self.rows[row];
        let i = r.bid();
        let id = self.input.bids[self.bids[i]].0;
        let local = published[self.zone_of[i]] - offset(bid_offset, i);
        let limit = i128::from(r.price) * FINE;
        let gain = if r.sell() {
            local - limit
        } else {
            limit - local
        };
        mismatch(
            format!("award of bid {id:?} step {}", self.step_of(r)),
            format!("{} of {}", Quantity(flat[r.flat()]), Quantity(r.quantity)),
            format!(
                "{} at limit price {} where the clearing price is {}",
                if gain > 0 { "all" } else { "nothing" },
                Price(r.price),
                fine_label(local)
            ),
        )
    }

    /// The first line whose flow violates complementary slackness at `prices`, named.
    pub(super) fn line_violation(
        &self,
        flows: &[i64],
        line_offset: &[i128],
        prices: &[i128],
    ) -> Option<ClearingMismatch> {
        for (k, l) in self.lines.iter().enumerate() {
            let g = prices[l.to] - prices[l.from] - line_offset[k];
            let f = flows[k];
            if (f < l.forward && g > self.tau) || (f > -l.backward && g < -self.tau) {
                return Some(mismatch(
                    format!(
                        "tie-line flow of line {} for {}",
                        self.input.tie_lines[l.index].id,
                        product_label(&self.product)
                    ),
                    Quantity(f),
                    format!(
                        "at its capacity toward the dearer end (price difference {})",
                        fine_label(g)
                    ),
                ));
            }
        }
        None
    }

    /// Submission-time priority among interchangeable steps (spec C4): among the steps of one
    /// zone, side, limit price and cut coefficients that are marginal (reduced profit within
    /// the tolerance, listed in `marginal`), no step gets energy while an earlier one is not
    /// full.
    pub(super) fn check_priority(
        &self,
        flat: &[i64],
        marginal: &[usize],
    ) -> Result<(), ClearingMismatch> {
        type Key = (usize, bool, i64, u32);
        type Rank = ((Timestamp, Digest), usize, usize);
        let mut classes: BTreeMap<Key, (Option<Rank>, Option<Rank>)> = BTreeMap::new();
        for &j in marginal {
            let row = &self.rows[j];
            let i = row.bid();
            let p = self.bids[i];
            let x = flat[row.flat()];
            let rank = (self.input.priority(p), p, self.step_of(row));
            let key = (self.zone_of[i], row.sell(), row.price, self.signature[i]);
            let e = classes.entry(key).or_default();
            if x > 0 && e.0.is_none_or(|r| r < rank) {
                e.0 = Some(rank);
            }
            if x < row.quantity && e.1.is_none_or(|r| r > rank) {
                e.1 = Some(rank);
            }
        }
        for (last_filled, first_open) in classes.values() {
            if let (Some(a), Some(b)) = (last_filled, first_open) {
                if a > b {
                    let (id, _) = self.input.bids[a.1];
                    let (earlier, _) = self.input.bids[b.1];
                    return Err(mismatch(
                        format!("award of bid {id:?} step {}", a.2),
                        format!(
                            "{} while bid {earlier:?}, earlier in priority at the same price, is not full",
                            Quantity(flat[self.layout.at(a.1, a.2)])
                        ),
                        "equal bids filled by submission time, then id",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Equal objectives: the dual objective at the prices equals the welfare of the awards,
    /// within the bound the tolerances allow (exactly, for a product without cuts). Returns
    /// the welfare.
    pub(super) fn check_objectives(
        &self,
        scan: &Scan,
        mu: &[i64],
        prices: &[i128],
        line_offset: &[i128],
    ) -> Result<Money, ClearingMismatch> {
        let mut dual = scan.dual;
        let mut volume = scan.volume;
        for (k, l) in self.lines.iter().enumerate() {
            let g = prices[l.to] - prices[l.from] - line_offset[k];
            dual += i128::from(l.forward) * g.max(0) + i128::from(l.backward) * (-g).max(0);
            volume += i128::from(l.forward) + i128::from(l.backward);
        }
        let mut slack_bound: i128 = 0;
        for (k, &c) in self.cuts.iter().enumerate() {
            let m = i128::from(mu[k]);
            dual += m * i128::from(self.input.cuts[c].limit.0) * FINE;
            slack_bound += m * i128::from(CUT_TOLERANCE.0) * FINE;
        }
        let bound = self.tau * volume + slack_bound;
        if (dual - scan.primal).abs() > bound {
            return Err(mismatch(
                format!("objective for {}", product_label(&self.product)),
                format!(
                    "welfare {} with dual objective {}",
                    Money(scan.primal / FINE),
                    Money(dual / FINE)
                ),
                format!("equal within {}", Money(bound / FINE)),
            ));
        }
        Ok(Money(scan.primal / FINE))
    }

    /// Everything published from the awards, flows and prices of this product: area prices,
    /// bus prices, flows, and each bid's trade price (into `trade_price`, by input position).
    pub fn publish(
        &self,
        flows: &[i64],
        priced: &Priced,
        trade_price: &mut [Option<Price>],
        out: &mut ClearingOutcome,
    ) {
        let tick = self.tick_fine();
        for (z_or_all, area) in self.input.areas.iter().enumerate() {
            let z = match self.mode {
                Mode::OneZone => 0,
                Mode::Zonal => z_or_all,
            };
            out.area_prices.push(AreaPrice {
                product: self.product,
                area: area.id,
                price: Price((priced.zone_price[z] / FINE) as i64),
            });
        }
        for (k, l) in self.lines.iter().enumerate() {
            out.flows.push(TieFlow {
                product: self.product,
                tie_line: self.input.tie_lines[l.index].id,
                flow: Quantity(flows[k]),
            });
        }
        let local = |i: usize| {
            let v = priced.zone_price[self.zone_of[i]] - offset(&priced.bid_offset, i);
            // Zone prices are on the tick already; only an offset needs rounding.
            let v = if offset(&priced.bid_offset, i) == 0 {
                v
            } else {
                round_to_tick(v, tick)
            };
            Price((v / FINE) as i64)
        };
        for (i, &p) in self.bids.iter().enumerate() {
            trade_price[p] = Some(local(i));
        }
        if !self.cuts.is_empty() {
            // A bus has a price when all its bids share their zone and cut coefficients.
            let mut buses: BTreeMap<BusId, Option<(usize, usize, u32)>> = BTreeMap::new();
            for (i, &p) in self.bids.iter().enumerate() {
                if let Some(b) = self.input.bids[p].1.bus {
                    let me = (i, self.zone_of[i], self.signature[i]);
                    buses
                        .entry(b)
                        .and_modify(|e| {
                            if e.is_some_and(|(_, z, s)| (z, s) != (me.1, me.2)) {
                                *e = None;
                            }
                        })
                        .or_insert(Some(me));
                }
            }
            for (bus, e) in buses {
                if let Some((i, _, _)) = e {
                    out.bus_prices.push(BusPrice {
                        product: self.product,
                        bus,
                        price: local(i),
                    });
                }
            }
        }
    }
}
