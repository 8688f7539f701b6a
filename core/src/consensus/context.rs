//! What a node knows that never changes while it runs: the genesis, its identity and keys,
//! and the pluggable parts (signature scheme, clearing rule, security check).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::rules::{Honest, Rules};
use crate::clearing::{Cleared, Clearing, ClearingInput, Cut, CutVariable};
use crate::crypto::{Digest, SignatureScheme, Signer};
use crate::genesis::Genesis;
use crate::market::{Product, Side};
use crate::units::{NodeId, TieLineId};

/// A node's private check of its own area's grid (the paper's Fig. 5): given the proposed
/// outcome, it returns the violated constraints as cuts, or nothing if the outcome is secure.
///
/// A cut reveals one constraint (coefficients over bids' injections and tie-line flows and a
/// bound), never the grid model behind it.
pub trait SecurityCheck: Send + Sync + fmt::Debug {
    /// The cuts the outcome violates; empty if it is secure in this node's area.
    fn check(&self, input: &ClearingInput<'_>, cleared: &Cleared) -> Vec<Cut>;
}

/// A node with no grid model to check (for instance a purely financial market): every outcome
/// passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoGridModel;

impl SecurityCheck for NoGridModel {
    fn check(&self, _: &ClearingInput<'_>, _: &Cleared) -> Vec<Cut> {
        Vec::new()
    }
}

/// A security check given as an explicit list of constraints: it returns exactly those that
/// the outcome violates. It is the test double of a grid model (the real one derives its
/// constraints from the area's lines and PTDFs), and the form in which the model checker
/// scripts an objection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConstraintList {
    /// The constraints.
    pub constraints: Vec<Cut>,
}

impl SecurityCheck for ConstraintList {
    fn check(&self, input: &ClearingInput<'_>, cleared: &Cleared) -> Vec<Cut> {
        // Only the cuts the outcome does not honour, as the clearing's verification measures
        // them (spec C20), so an objection always adds a cut.
        let values = CutValues::new(input, cleared);
        self.constraints
            .iter()
            .filter(|c| !c.honoured_by(values.of(c)))
            .cloned()
            .collect()
    }
}

/// What a cut's variables are worth on one outcome: each bid's net injection (its accepted
/// quantity, positive for a sale, negative for a purchase) and each tie line's flow, by product.
/// Built once, it evaluates any number of cuts in time linear in their terms.
#[derive(Clone, Debug, Default)]
pub struct CutValues {
    bids: BTreeMap<Digest, (Product, i128)>,
    ties: BTreeMap<(TieLineId, Product), i128>,
}

impl CutValues {
    /// The values on `cleared`, for the bids of `input`.
    pub fn new(input: &ClearingInput<'_>, cleared: &Cleared) -> Self {
        let mut accepted: BTreeMap<Digest, i128> = BTreeMap::new();
        for a in &cleared.outcome.awards {
            *accepted.entry(a.bid).or_insert(0) += i128::from(a.quantity.0);
        }
        let bids = input
            .bids
            .iter()
            .map(|(id, bid)| {
                let x = accepted.get(id).copied().unwrap_or(0);
                let net = match bid.side {
                    Side::Sell => x,
                    Side::Buy => -x,
                };
                (*id, (bid.product, net))
            })
            .collect();
        let mut ties = BTreeMap::new();
        for f in &cleared.outcome.flows {
            *ties.entry((f.tie_line, f.product)).or_insert(0) += i128::from(f.flow.0);
        }
        CutValues { bids, ties }
    }

    /// A bid's net injection for `product` (zero for a bid of another product, or none).
    pub fn bid(&self, id: &Digest, product: Product) -> i128 {
        match self.bids.get(id) {
            Some(&(p, net)) if p == product => net,
            _ => 0,
        }
    }

    /// A tie line's flow for `product`.
    pub fn tie(&self, line: TieLineId, product: Product) -> i128 {
        self.ties.get(&(line, product)).copied().unwrap_or(0)
    }

    /// The cut's left-hand side, in millionths of the quantity unit.
    pub fn of(&self, cut: &Cut) -> i128 {
        cut.terms
            .iter()
            .map(|t| {
                let x = match t.variable {
                    CutVariable::Bid(id) => self.bid(&id, cut.product),
                    CutVariable::TieFlow(line) => self.tie(line, cut.product),
                };
                i128::from(t.coefficient) * x
            })
            .sum()
    }
}

/// Everything a node's transitions read but never change.
#[derive(Clone)]
pub struct Context {
    /// The consortium.
    pub genesis: Arc<Genesis>,
    /// The genesis digest.
    pub chain_id: Digest,
    /// This node.
    pub me: NodeId,
    /// This node's signing key.
    pub signer: Arc<dyn Signer>,
    /// How signatures are verified.
    pub scheme: Arc<dyn SignatureScheme>,
    /// The agreed clearing rule.
    pub clearing: &'static dyn Clearing,
    /// This node's private grid check.
    pub security: Arc<dyn SecurityCheck>,
    /// The protocol's decision rules: [`Honest`] unless the model checker seeds a bug.
    pub rules: Arc<dyn Rules>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("me", &self.me)
            .field("chain_id", &self.chain_id)
            .field("clearing", &self.clearing)
            .field("security", &self.security)
            .field("rules", &self.rules)
            .finish()
    }
}

impl Context {
    /// A context for member `me` of `genesis`.
    pub fn new(
        genesis: Arc<Genesis>,
        me: NodeId,
        signer: Arc<dyn Signer>,
        scheme: Arc<dyn SignatureScheme>,
        clearing: &'static dyn Clearing,
        security: Arc<dyn SecurityCheck>,
    ) -> Self {
        Self {
            chain_id: genesis.chain_id(),
            genesis,
            me,
            signer,
            scheme,
            clearing,
            security,
            rules: Arc::new(Honest),
        }
    }
}
