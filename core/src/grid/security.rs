//! A management node's private security check of its own area (the paper's Fig. 5; spec 3.8,
//! C20-C25).
//!
//! The node's [`AreaModel`] is built from a MATPOWER case of its area (its buses, its
//! generators, and its branches with their ratings) and from the genesis, which says where each
//! tie line touching the area lands. Tie lines are scheduled exchanges (transport model): a flow
//! `f` on a tie line from area A to area B withdraws `f` at its landing bus in A and injects it
//! at its landing bus in B, so each area's internal DC flows follow from the injections of the
//! bids located in it and the flows of its tie lines alone.
//!
//! Given a proposed outcome, the check runs a DC power flow of the area for every physical
//! product and returns one cut per overloaded line and direction: the line's PTDF row over the
//! net injections of the area's bids and the flows of its tie lines, at most the line's rating
//! times the delivery period. A cut reveals that one row and bound, never the model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::clearing::{
    COEFFICIENT_SCALE, CUT_TOLERANCE, Cleared, ClearingInput, Cut, CutTerm, CutVariable,
};
use crate::consensus::{CutValues, SecurityCheck};
use crate::crypto::Digest;
use crate::genesis::Genesis;
use crate::market::{Bid, Product, Settlement, Side};
use crate::units::{AreaId, Quantity, TieLineId};

use super::network::Network;
use super::{Case, GridError, MatpowerError};

/// The label of a cut that excludes a bid the area's model cannot place (no bus, or a bus the
/// model does not have). Line cuts are labelled `2 * branch` (forward) and `2 * branch + 1`
/// (backward), with `branch` the row of the branch in the area file, counted from 0.
pub const UNLOCATED_BID_LABEL: u32 = u32::MAX;

/// The first label of the cuts that balance a connected component of the area's network:
/// component `k` (in the order of its first bus in the area file, from 0) gets
/// `BALANCE_LABEL + 2 * k` (a surplus: its net injection at most zero) and
/// `BALANCE_LABEL + 2 * k + 1` (a deficit: at least zero).
pub const BALANCE_LABEL: u32 = 1 << 31;

/// Float noise of the flow computation, far below a kWh: a line whose DC flow exceeds its
/// limit by more than this (or an island whose imbalance does) is a candidate for a cut, which
/// is raised only if the outcome does not honour it (`Cut::honoured_by`).
pub const OVERLOAD_EPSILON_KWH: f64 = 1e-3;

/// Why an area model cannot be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AreaModelError {
    /// The area file is not a readable MATPOWER case.
    #[error("the area file: {0}")]
    Case(#[from] MatpowerError),
    /// The area's network has no DC power flow (no reference bus, not connected, ...).
    #[error("the area's network: {0}")]
    Grid(#[from] GridError),
    /// The genesis has no such area.
    #[error("area {0} is not in the genesis")]
    UnknownArea(AreaId),
    /// A bus number appears twice in the area file.
    #[error("bus {0} appears twice in the area file")]
    DuplicateBus(u32),
    /// A bus has no in-service branch and no tie line: nothing can flow to or from it.
    #[error(
        "bus {bus} of area {area} has no in-service branch and no tie line: nothing can flow to or from it"
    )]
    IsolatedBus {
        /// The bus.
        bus: u32,
        /// The area.
        area: AreaId,
    },
    /// A tie line touching the area does not land at one of its buses.
    #[error("tie line {tie_line}: {reason}")]
    TieLine {
        /// The tie line.
        tie_line: TieLineId,
        /// What is wrong.
        reason: String,
    },
}

/// A rated branch of the area: its line in the network and its rating.
#[derive(Clone, Copy)]
struct RatedLine {
    /// The branch's row in the area file (from 0).
    branch: u32,
    /// Its index in [`Network::lines`].
    line: usize,
    /// The rating (MATPOWER `rateA`), MW.
    rating_mw: f64,
}

/// A tie line landing in the area: where, and the sign of its flow as an injection there.
#[derive(Clone, Copy)]
struct Landing {
    tie_line: TieLineId,
    column: usize,
    /// +1 if the area is the line's `to` side (a positive flow is imported), -1 if `from`.
    sign: f64,
}

/// A management node's private grid model of its area, and its security check
/// ([`SecurityCheck`]).
///
/// Bus numbers are consortium-wide: a bid's bus is interpreted by the model of the bid's area,
/// and a tie line's landing buses are named in the genesis. Only bids of the model's own area
/// are placed on its network; a bid of the area that names no bus, or a bus the model does not
/// have, cannot be dispatched securely and is excluded by a cut as soon as it is accepted.
/// Financial products carry no flows and are not checked.
#[derive(Clone)]
pub struct AreaModel {
    area: AreaId,
    /// Bus number -> its position in the network.
    columns: BTreeMap<u32, usize>,
    network: std::sync::Arc<Network>,
    lines: Vec<RatedLine>,
    landings: Vec<Landing>,
}

/// The model never prints its network: a node's logs must not leak it either.
impl fmt::Debug for AreaModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AreaModel")
            .field("area", &self.area)
            .field("tie_lines", &self.landings.len())
            .finish_non_exhaustive()
    }
}

/// The DC flow of one rated line for one product, as [`AreaModel::line_flows`] gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineFlow {
    /// The product.
    pub product: Product,
    /// The branch's row in the area file (from 0).
    pub branch: u32,
    /// The flow, kWh over the delivery period, positive from the branch's `from` bus.
    pub flow_kwh: f64,
    /// The rating times the delivery period, kWh.
    pub limit: Quantity,
}

impl AreaModel {
    /// The model of `area` from the text of its MATPOWER area file (see
    /// `data/rts-gmlc/README.md` for the layout) and the genesis.
    pub fn from_matpower(
        text: &str,
        area: AreaId,
        genesis: &Genesis,
    ) -> Result<Self, AreaModelError> {
        Self::new(&Case::parse(text)?, area, genesis)
    }

    /// The model of `area` from its parsed case and the genesis. Every in-service branch
    /// carries flow (susceptance `1 / (x * ratio)`); those with a positive `rateA` are checked.
    /// Every tie line touching the area must name its landing bus in the area, and the case
    /// must have that bus.
    pub fn new(case: &Case, area: AreaId, genesis: &Genesis) -> Result<Self, AreaModelError> {
        if genesis.area(area).is_none() {
            return Err(AreaModelError::UnknownArea(area));
        }
        let mut seen = BTreeSet::new();
        if let Some(b) = case.buses.iter().find(|b| !seen.insert(b.id)) {
            return Err(AreaModelError::DuplicateBus(b.id));
        }
        let network = Network::new(case)?;
        let columns: BTreeMap<u32, usize> = network
            .buses
            .iter()
            .enumerate()
            .map(|(c, &b)| (b, c))
            .collect();
        let lines = network
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| case.branches[l.branch].rate_a > 0.0)
            .map(|(k, l)| RatedLine {
                branch: l.branch as u32,
                line: k,
                rating_mw: case.branches[l.branch].rate_a,
            })
            .collect();
        let mut landings = Vec::new();
        for t in genesis
            .tie_lines
            .iter()
            .filter(|t| t.from == area || t.to == area)
        {
            let (bus, sign) = if t.from == area {
                (t.from_bus, -1.0)
            } else {
                (t.to_bus, 1.0)
            };
            let bad = |reason: String| AreaModelError::TieLine {
                tie_line: t.id,
                reason,
            };
            let bus = bus.ok_or_else(|| bad(format!("names no landing bus in area {area}")))?;
            let column = *columns.get(&bus.0).ok_or_else(|| {
                bad(format!(
                    "lands at bus {bus}, which the area file does not have"
                ))
            })?;
            landings.push(Landing {
                tie_line: t.id,
                column,
                sign,
            });
        }
        // A bus nothing can reach: no branch in service and no tie line.
        let mut reached = vec![false; network.buses.len()];
        for l in &network.lines {
            reached[l.from] = true;
            reached[l.to] = true;
        }
        for l in &landings {
            reached[l.column] = true;
        }
        if let Some(k) = reached.iter().position(|r| !r) {
            return Err(AreaModelError::IsolatedBus {
                bus: network.buses[k],
                area,
            });
        }
        Ok(AreaModel {
            area,
            columns,
            network: std::sync::Arc::new(network),
            lines,
            landings,
        })
    }

    /// The area this model is of.
    pub fn area(&self) -> AreaId {
        self.area
    }

    /// How many connected components the area's own network has (each balanced by its own
    /// bids and tie flows).
    pub fn components(&self) -> usize {
        self.network.components()
    }

    /// The DC flow of every rated line for every physical product of the input, on the
    /// outcome. Bids the model cannot place are left out.
    pub fn line_flows(&self, input: &ClearingInput<'_>, cleared: &Cleared) -> Vec<LineFlow> {
        let values = CutValues::new(input, cleared);
        let mut out = Vec::new();
        for product in physical_products(input) {
            let injection = self.injections(input, &values, product).0;
            let angles = self.network.angles(&injection);
            for line in &self.lines {
                out.push(LineFlow {
                    product,
                    branch: line.branch,
                    flow_kwh: self.network.flow(&self.network.lines[line.line], &angles),
                    limit: line_limit(line, product),
                });
            }
        }
        out
    }

    /// The net injection (kWh) at each bus for `product`, from the outcome's `values`, and
    /// the area's bids of the product the model cannot place.
    fn injections<'b>(
        &self,
        input: &ClearingInput<'b>,
        values: &CutValues,
        product: Product,
    ) -> (Vec<f64>, Vec<(Digest, &'b Bid)>) {
        let mut injection = vec![0.0; self.columns.len()];
        let mut unlocated = Vec::new();
        for &(id, bid) in self.bids(input, product) {
            match self.column(bid) {
                Some(c) => injection[c] += values.bid(&id, product) as f64,
                None => unlocated.push((id, bid)),
            }
        }
        for l in &self.landings {
            injection[l.column] += l.sign * values.tie(l.tie_line, product) as f64;
        }
        (injection, unlocated)
    }

    /// The input's bids of this area and product, in input order.
    fn bids<'i, 'b>(
        &self,
        input: &'i ClearingInput<'b>,
        product: Product,
    ) -> impl Iterator<Item = &'i (Digest, &'b Bid)> {
        input
            .bids
            .iter()
            .filter(move |(_, b)| b.area == self.area && b.product == product)
    }

    fn column(&self, bid: &Bid) -> Option<usize> {
        bid.bus.and_then(|b| self.columns.get(&b.0).copied())
    }

    /// The cut keeping `line` within its limit in direction `sign` (+1 forward, -1 backward):
    /// its PTDF row over every placed bid of the area and product and every tie line landing
    /// in the area, coefficients rounded to the nearest millionth.
    fn line_cut(
        &self,
        input: &ClearingInput<'_>,
        product: Product,
        line: &RatedLine,
        sign: f64,
        direction: u32,
    ) -> Cut {
        let mut factors = vec![0.0; self.columns.len()];
        for (k, f) in self.network.ptdf_row(&self.network.lines[line.line]) {
            factors[k] = f;
        }
        Cut {
            product,
            label: 2 * line.branch + direction,
            terms: self.terms(input, product, |c| sign * factors[c]),
            limit: line_limit(line, product),
        }
    }

    /// The cut that balances connected component `component`: its net injection at most zero
    /// (`sign` +1, a surplus) or at least zero (`sign` -1, a deficit).
    fn balance_cut(
        &self,
        input: &ClearingInput<'_>,
        product: Product,
        component: usize,
        sign: f64,
    ) -> Cut {
        let of = &self.network.component_of;
        Cut {
            product,
            label: BALANCE_LABEL + 2 * component as u32 + u32::from(sign < 0.0),
            terms: self.terms(
                input,
                product,
                |c| {
                    if of[c] == component { sign } else { 0.0 }
                },
            ),
            limit: Quantity::ZERO,
        }
    }

    /// A cut's terms: every placed bid of the area and product with the weight of its bus, and
    /// every tie line landing in the area with the weight of its landing bus times its sign,
    /// each rounded to the nearest millionth, zero terms left out.
    fn terms(
        &self,
        input: &ClearingInput<'_>,
        product: Product,
        weight: impl Fn(usize) -> f64,
    ) -> Vec<CutTerm> {
        let scale = COEFFICIENT_SCALE as f64;
        let mut terms: Vec<CutTerm> = self
            .bids(input, product)
            .filter_map(|&(id, bid)| {
                let c = self.column(bid)?;
                let coefficient = (weight(c) * scale).round() as i64;
                (coefficient != 0).then_some(CutTerm {
                    variable: CutVariable::Bid(id),
                    coefficient,
                })
            })
            .collect();
        terms.extend(self.landings.iter().filter_map(|l| {
            let coefficient = (l.sign * weight(l.column) * scale).round() as i64;
            (coefficient != 0).then_some(CutTerm {
                variable: CutVariable::TieFlow(l.tie_line),
                coefficient,
            })
        }));
        terms
    }
}

impl SecurityCheck for AreaModel {
    /// For each physical product: if an accepted bid of the area cannot be placed, a cut that
    /// excludes it (and nothing else for the product, whose flows are then unknown); otherwise
    /// one cut per connected component that does not balance, and one per rated line and
    /// direction whose DC flow exceeds the line's limit, each raised only if the outcome does
    /// not honour it within [`CUT_TOLERANCE`] (`Cut::honoured_by`, the clearing's own test).
    fn check(&self, input: &ClearingInput<'_>, cleared: &Cleared) -> Vec<Cut> {
        // A cut is raised only if the outcome does not honour it, as the clearing's
        // verification measures it (`Cut::honoured_by`): a cut the proposal honours within
        // the tolerance is never raised again, so every objection adds a cut (L3).
        let values = CutValues::new(input, cleared);
        let mut cuts = Vec::new();
        for product in physical_products(input) {
            let (injection, unlocated) = self.injections(input, &values, product);
            let excluded: Vec<Cut> = unlocated
                .iter()
                .filter(|(id, _)| values.bid(id, product) != 0)
                .map(|&(id, bid)| Cut {
                    product,
                    label: UNLOCATED_BID_LABEL,
                    terms: vec![CutTerm {
                        variable: CutVariable::Bid(id),
                        coefficient: match bid.side {
                            Side::Sell => COEFFICIENT_SCALE,
                            Side::Buy => -COEFFICIENT_SCALE,
                        },
                    }],
                    limit: Quantity::ZERO,
                })
                .collect();
            if !excluded.is_empty() {
                cuts.extend(excluded);
                continue;
            }
            // Rounding a cut's coefficients moves its side by at most half a millionth of
            // every injection it names: the bids of the area and the landing tie lines.
            let magnitude: f64 = self
                .bids(input, product)
                .map(|(id, _)| values.bid(id, product).abs() as f64)
                .chain(
                    self.landings
                        .iter()
                        .map(|l| values.tie(l.tie_line, product).abs() as f64),
                )
                .sum();
            // Each connected component balances through its own bids and tie flows.
            let mut imbalance = vec![0.0; self.network.components()];
            for (k, x) in injection.iter().enumerate() {
                imbalance[self.network.component_of[k]] += x;
            }
            for (component, &x) in imbalance.iter().enumerate() {
                if x.abs() > OVERLOAD_EPSILON_KWH {
                    let cut = self.balance_cut(input, product, component, x.signum());
                    if !cut.honoured_by(values.of(&cut)) {
                        cuts.push(cut);
                    }
                }
            }
            // The float flow finds the candidates: a line whose flow is below its limit plus
            // the tolerance by more than the rounding has an honoured cut.
            let rounding = 0.5 * magnitude / COEFFICIENT_SCALE as f64;
            let angles = self.network.angles(&injection);
            for line in &self.lines {
                let f = self.network.flow(&self.network.lines[line.line], &angles);
                let limit = line_limit(line, product).0 as f64 + OVERLOAD_EPSILON_KWH;
                for (sign, direction) in [(1.0, 0), (-1.0, 1)] {
                    if sign * f > limit + CUT_TOLERANCE.0 as f64 - rounding {
                        let cut = self.line_cut(input, product, line, sign, direction);
                        if !cut.honoured_by(values.of(&cut)) {
                            cuts.push(cut);
                        }
                    }
                }
            }
        }
        cuts
    }
}

/// The physical products of the input's bids, in order.
fn physical_products(input: &ClearingInput<'_>) -> BTreeSet<Product> {
    input
        .bids
        .iter()
        .map(|(_, b)| b.product)
        .filter(|p| p.settlement == Settlement::Physical)
        .collect()
}

/// The line's rating times the product's delivery period, to the nearest kWh.
fn line_limit(line: &RatedLine, product: Product) -> Quantity {
    let hours = f64::from(product.delivery_minutes) / 60.0;
    Quantity::from_f64(line.rating_mw * hours).unwrap_or(Quantity(i64::MAX))
}
