//! Clearing: the ledger form of a clearing outcome and of negotiation cuts.
//!
//! Everything here is fixed-point; see [`crate::units`] for the units.

use crate::crypto::Digest;
use crate::genesis::ClearingRule;
use crate::market::Product;
use crate::units::{AreaId, BusId, Money, Price, Quantity, TieLineId};

/// Most step awards in one outcome.
pub const MAX_AWARDS: usize = 2_000_000;
/// Most prices, flows or cuts in one outcome.
pub const MAX_OUTCOME_ROWS: usize = 100_000;
/// Most terms in one cut.
pub const MAX_CUT_TERMS: usize = 250_000;

/// The accepted quantity of one step of one bid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepAward {
    /// The bid's id.
    pub bid: Digest,
    /// The step's index in the bid.
    pub step: u16,
    /// The accepted energy, between zero and the step's quantity.
    pub quantity: Quantity,
}
crate::canonical_struct!(StepAward {
    bid,
    step,
    quantity
});

/// The clearing price of an area for a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AreaPrice {
    /// The product.
    pub product: Product,
    /// The area.
    pub area: AreaId,
    /// The price.
    pub price: Price,
}
crate::canonical_struct!(AreaPrice {
    product,
    area,
    price
});

/// The clearing price at a bus for a product, where the rule is nodal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusPrice {
    /// The product.
    pub product: Product,
    /// The bus.
    pub bus: BusId,
    /// The price.
    pub price: Price,
}
crate::canonical_struct!(BusPrice {
    product,
    bus,
    price
});

/// The scheduled flow on a tie line for a product: positive from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TieFlow {
    /// The product.
    pub product: Product,
    /// The tie line.
    pub tie_line: TieLineId,
    /// The energy scheduled across it.
    pub flow: Quantity,
}
crate::canonical_struct!(TieFlow {
    product,
    tie_line,
    flow
});

/// A clearing result as it is recorded on the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClearingOutcome {
    /// Accepted quantity per bid step; steps with nothing accepted are left out.
    pub awards: Vec<StepAward>,
    /// A price per area and product.
    pub area_prices: Vec<AreaPrice>,
    /// A price per bus and product, for nodal rules.
    pub bus_prices: Vec<BusPrice>,
    /// Tie-line flows per product.
    pub flows: Vec<TieFlow>,
    /// Total congestion rent: what buyers pay minus what sellers get, over all areas.
    pub congestion_rent: Money,
    /// Social welfare: buyers' value minus sellers' cost of the accepted steps.
    pub welfare: Money,
}
crate::canonical_struct!(ClearingOutcome {
    awards: seq(MAX_AWARDS),
    area_prices: seq(MAX_OUTCOME_ROWS),
    bus_prices: seq(MAX_OUTCOME_ROWS),
    flows: seq(MAX_OUTCOME_ROWS),
    congestion_rent,
    welfare,
});

/// A variable a cut constrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CutVariable {
    /// A bid's net injection: its accepted quantity, positive for a sale, negative for a
    /// purchase.
    Bid(Digest),
    /// A tie line's scheduled flow.
    TieFlow(TieLineId),
}

impl crate::encoding::Canonical for CutVariable {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            CutVariable::Bid(d) => {
                out.push(0);
                d.encode(out);
            }
            CutVariable::TieFlow(t) => {
                out.push(1);
                t.encode(out);
            }
        }
    }
    fn decode(r: &mut crate::encoding::Reader<'_>) -> Result<Self, crate::encoding::DecodeError> {
        match u8::decode(r)? {
            0 => Ok(CutVariable::Bid(Digest::decode(r)?)),
            1 => Ok(CutVariable::TieFlow(TieLineId::decode(r)?)),
            value => Err(crate::encoding::DecodeError::new(
                crate::encoding::DecodeErrorKind::InvalidDiscriminant { value },
            )),
        }
    }
}

/// One term of a cut: a coefficient in millionths times a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CutTerm {
    /// The variable.
    pub variable: CutVariable,
    /// The coefficient, in millionths.
    pub coefficient: i64,
}
crate::canonical_struct!(CutTerm {
    variable,
    coefficient
});

/// Scale of cut coefficients: a coefficient of `COEFFICIENT_SCALE` means 1.0.
pub const COEFFICIENT_SCALE: i64 = 1_000_000;

/// A linear constraint from negotiation: `sum(coefficient * variable) / 1e6 <= limit` for one
/// product. It reveals one constraint of a node's private grid, never the model.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cut {
    /// The product it constrains.
    pub product: Product,
    /// The objecting node's label for the constraint (opaque to everyone else).
    pub label: u32,
    /// The terms.
    pub terms: Vec<CutTerm>,
    /// The bound.
    pub limit: Quantity,
}
crate::canonical_struct!(Cut {
    product,
    label,
    terms: seq(MAX_CUT_TERMS),
    limit
});

/// The rule and the outcome it produced, as recorded in a block's process data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClearingRecord {
    /// The rule that cleared.
    pub rule: ClearingRule,
    /// The cuts the outcome honours.
    pub cuts: Vec<Cut>,
    /// The outcome.
    pub outcome: ClearingOutcome,
}
crate::canonical_struct!(ClearingRecord {
    rule,
    cuts: seq(MAX_OUTCOME_ROWS),
    outcome
});
