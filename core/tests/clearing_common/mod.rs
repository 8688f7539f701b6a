//! Helpers shared by the clearing tests: small markets written by hand.
#![allow(dead_code)]

use tieline_core::clearing::{ClearingInput, Cut, CutTerm, CutVariable};
use tieline_core::crypto::Digest;
use tieline_core::genesis::{Area, ClearingParams, ClearingRule, TieLine};
use tieline_core::market::{Bid, BidStep, Product, Settlement, Side, Term};
use tieline_core::units::{AreaId, BusId, ParticipantId, Price, Quantity, TieLineId, Timestamp};

/// A price from a decimal.
pub fn p(s: &str) -> Price {
    Price::parse(s).unwrap()
}

/// A quantity from a decimal (MWh).
pub fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

/// The product every helper bid is for.
pub fn product() -> Product {
    Product {
        delivery_start: Timestamp(1_767_225_600_000),
        delivery_minutes: 60,
        term: Term::Spot,
        settlement: Settlement::Physical,
    }
}

/// A market under construction.
#[derive(Clone, Debug)]
pub struct Book {
    pub params: ClearingParams,
    pub areas: Vec<Area>,
    pub lines: Vec<TieLine>,
    pub bids: Vec<Bid>,
    pub cuts: Vec<Cut>,
}

impl Book {
    /// `areas` areas (ids 1..), tick 0.01, floor -500, cap 3000.
    pub fn new(rule: ClearingRule, areas: u16) -> Self {
        Self {
            params: ClearingParams {
                rule,
                price_tick: p("0.01"),
                price_floor: p("-500"),
                price_cap: p("3000"),
            },
            areas: (1..=areas)
                .map(|i| Area {
                    id: AreaId(i),
                    name: format!("A{i}"),
                    eic: None,
                })
                .collect(),
            lines: vec![],
            bids: vec![],
            cuts: vec![],
        }
    }

    /// Adds a bid in `area` with `(price, MWh)` steps submitted at `time`; returns its id.
    pub fn bid(&mut self, area: u16, side: Side, steps: &[(&str, &str)], time: u64) -> Digest {
        self.bid_at(area, None, side, steps, time)
    }

    /// As [`Book::bid`], at a bus.
    pub fn bid_at(
        &mut self,
        area: u16,
        bus: Option<u32>,
        side: Side,
        steps: &[(&str, &str)],
        time: u64,
    ) -> Digest {
        let n = self.bids.len();
        let bid = Bid {
            chain_id: Digest::ZERO,
            participant: ParticipantId(n as u32 + 1),
            area: AreaId(area),
            bus: bus.map(BusId),
            side,
            product: product(),
            steps: steps
                .iter()
                .map(|(price, qty)| BidStep {
                    price: p(price),
                    quantity: q(qty),
                })
                .collect(),
            nonce: n as u64,
            timestamp: Timestamp(time),
        };
        let id = bid.id();
        self.bids.push(bid);
        id
    }

    /// Adds a tie line from `from` to `to` with capacities in MWh.
    pub fn line(&mut self, id: u16, from: u16, to: u16, forward: &str, backward: &str) {
        self.lines.push(TieLine {
            id: TieLineId(id),
            from: AreaId(from),
            to: AreaId(to),
            capacity_forward: q(forward),
            capacity_backward: q(backward),
            from_bus: None,
            to_bus: None,
        });
    }

    /// Adds a cut `sum(coefficient * variable) <= limit` (coefficients as decimals).
    pub fn cut(&mut self, terms: &[(CutVariable, f64)], limit: &str) {
        self.cuts.push(Cut {
            product: product(),
            label: self.cuts.len() as u32,
            terms: terms
                .iter()
                .map(|&(variable, c)| CutTerm {
                    variable,
                    coefficient: (c * 1e6).round() as i64,
                })
                .collect(),
            limit: q(limit),
        });
    }

    /// The clearing input. The test market's home node receives each bid at the bid's own
    /// timestamp, so a test sets a bid's priority (spec C4) through it.
    pub fn input(&self) -> ClearingInput<'_> {
        ClearingInput {
            params: self.params,
            areas: &self.areas,
            tie_lines: self.lines.clone(),
            bids: self.bids.iter().map(|b| (b.id(), b)).collect(),
            received: self.bids.iter().map(|b| b.timestamp).collect(),
            cuts: &self.cuts,
        }
    }
}
