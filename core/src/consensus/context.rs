//! What a node knows that never changes while it runs: the genesis, its identity and keys,
//! and the pluggable parts (signature scheme, clearing rule, security check).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

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

/// A deliberately seeded protocol bug, for the model checker's catalogue only. Without the
/// `mutants` feature no mutation exists in the build.
#[cfg(feature = "mutants")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutation {
    /// Certificates need one vote fewer than a quorum.
    QuorumTooSmall,
    /// A node enters the next view on a single skip vote.
    SkipWithoutCertificate,
    /// A node endorses a different block in the same view after locking.
    IgnoreLock,
    /// A new primary proposes afresh, ignoring the highest lock in the skip certificate.
    NewPrimaryIgnoresLock,
    /// Votes are sent but never persisted, so a restarted node forgets them.
    VoteBeforePersist,
    /// A verifier accepts any clearing outcome without recomputing it.
    SkipClearingCheck,
    /// A verifier ignores its own grid's security check.
    IgnoreOwnSecurity,
    /// A proposal from a node that is not the round's primary is accepted.
    AcceptWrongPrimary,
    /// A new primary after a skip clears only its own batch, dropping the others', and
    /// verifiers do not check that a block after a skip carries the batches its skip
    /// certificate reports.
    DropBatchOnSkip,
    /// A block commits without the endorsement of a touched area's node.
    CommitWithoutTouchedArea,
    /// A restarted node forgets its lock: restore skips the lock records of its log.
    ForgetLockOnRestart,
    /// A node that receives two conflicting votes of one voter in one slot keeps no evidence.
    UnrecordedEquivocation,
    /// A skip vote leaves out the voter's lock.
    SkipVoteHidesLock,
    /// A primary locked in its view still revises for a late objection.
    ReviseAfterLock,
    /// Skip votes are sent but never logged.
    SkipVoteUnlogged,
    /// A bid is receipted without being logged.
    ReceiptBeforePersist,
    /// A node enters the view a view certificate opens without verifying the certificate.
    UnverifiedViewCertificate,
    /// The next primary counts a skip vote without verifying the lock certificate it carries.
    UnverifiedSkipLock,
    /// A primary accepts a missing-batch objection whose batch is not its objector's own batch
    /// of the height (another home's, or of another height).
    ForeignObjectionBatch,
    /// A primary keeps the resolution it recorded for an appeal in an earlier revision when a
    /// later revision's batches change what the rules give (an omitted bid upheld, then
    /// brought in by its home's missing-batch objection).
    StaleAppealResolution,
    /// A home node countersigns any admission it is handed, so a participant is admitted
    /// without its home node's operator signing the admission (spec A1).
    AdmitWithoutHomeSignature,
    /// A node does not apply revocations: a revoked participant's later bids are taken and
    /// cleared (spec A2).
    IgnoreRevocation,
    /// A primary drops an objection to an earlier revision of its view (it revised before the
    /// objection arrived) instead of answering it in its next revision (spec L5).
    DropLateObjection,
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
    /// The seeded bug this node runs with, if any (model checker only).
    #[cfg(feature = "mutants")]
    pub mutation: Option<Mutation>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("me", &self.me)
            .field("chain_id", &self.chain_id)
            .field("clearing", &self.clearing)
            .field("security", &self.security)
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
            #[cfg(feature = "mutants")]
            mutation: None,
        }
    }

    /// Whether this node runs with seeded bug `m` (always false without the `mutants`
    /// feature).
    #[cfg(feature = "mutants")]
    pub(crate) fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }
}

/// Names a seeded bug at a place where it can take effect; compiles to `false` without the
/// `mutants` feature, so no mutation is reachable in a normal build.
macro_rules! mutated {
    ($ctx:expr, $m:ident) => {{
        #[cfg(feature = "mutants")]
        let on = $ctx.mutated($crate::consensus::Mutation::$m);
        // Without the catalogue the context is still evaluated, so a parameter read only
        // here is not an unused variable in the node build.
        #[cfg(not(feature = "mutants"))]
        let on = {
            let _ = &$ctx;
            false
        };
        on
    }};
}
pub(crate) use mutated;
