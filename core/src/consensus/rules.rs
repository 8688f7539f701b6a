//! The protocol's decision rules, as one policy a node runs with.
//!
//! Every method is a rule of the spec at one decision point of the state machine, and its
//! default body is that rule: [`Honest`] keeps every default and is the only implementation
//! in this crate, the one [`Context::new`] installs and the node binary runs. The model
//! checker's catalogue of seeded bugs (`checker/src/mutants.rs`) implements the trait with
//! one rule broken per bug, so the faulty rules live in the checker and every build of the core
//! is the honest core.
//!
//! A method reads only what it is given; none of them keeps state.

use std::fmt;

use super::content::ContentRules;
use super::context::{Context, SecurityCheck};
use super::node::Lock;
use super::types::Record;
use crate::audit::{AuditFailure, check_skip_batches};
use crate::block::{
    AppealResolution, BlockBody, ProcessData, QuorumCertificate, SkipCertificate, Vote, VoteKind,
};
use crate::clearing::{Cleared, ClearingInput, Cut};
use crate::crypto::Digest;
use crate::genesis::Genesis;
use crate::market::SignedBatch;
use crate::registry::{Party, RegistryChange, SignedChange};
use crate::units::NodeId;

/// The protocol's decision rules (see the module documentation). The spec property each
/// method decides is named in its documentation.
pub trait Rules: Send + Sync + fmt::Debug {
    /// S1: the votes a vote certificate needs.
    fn quorum(&self, genesis: &Genesis) -> usize {
        genesis.quorum()
    }

    /// L1: the skip votes for a view that move a node to the next view.
    fn skip_quorum(&self, genesis: &Genesis) -> usize {
        genesis.quorum()
    }

    /// V1: whether `voter` may propose at (`height`, `view`): only the rotation's primary.
    fn may_propose(&self, genesis: &Genesis, height: u64, view: u32, voter: NodeId) -> bool {
        voter == genesis.primary(height, view)
    }

    /// L1: whether a proposal's justification opens `view` (> 0) at `height`: a valid skip
    /// certificate for the view before it.
    fn justifies(&self, ctx: &Context, cert: &SkipCertificate, height: u64, view: u32) -> bool {
        view > 0
            && cert
                .verify(
                    &ctx.genesis,
                    ctx.chain_id,
                    ctx.scheme.as_ref(),
                    height,
                    view - 1,
                )
                .is_ok()
    }

    /// L1: whether a view certificate a node is handed (an answer to its late skip vote) is
    /// a valid skip certificate for its view at `height`.
    fn view_certificate_holds(&self, ctx: &Context, cert: &SkipCertificate, height: u64) -> bool {
        cert.verify(
            &ctx.genesis,
            ctx.chain_id,
            ctx.scheme.as_ref(),
            height,
            cert.view,
        )
        .is_ok()
    }

    /// S2: whether a skip vote's lock is an endorsement certificate of `height`, of the vote's
    /// view or before it, signed by a quorum.
    fn skip_lock_holds(
        &self,
        ctx: &Context,
        lock: &QuorumCertificate,
        height: u64,
        vote_view: u32,
    ) -> bool {
        lock.kind == VoteKind::Endorse
            && lock.height == height
            && lock.view <= vote_view
            && lock
                .verify(&ctx.genesis, ctx.chain_id, ctx.scheme.as_ref(), &[])
                .is_ok()
    }

    /// S2: the lock a skip certificate carries into the next view, which its primary must
    /// propose again and every verifier must see proposed: the highest of its voters'.
    fn carried_lock<'c>(
        &self,
        justification: &'c SkipCertificate,
    ) -> Option<&'c QuorumCertificate> {
        justification.highest_lock()
    }

    /// S2: whether this node's lock forbids endorsing block `digest` in `view`: it locked on
    /// another block in that view.
    fn lock_forbids(&self, lock: &QuorumCertificate, view: u32, digest: &Digest) -> bool {
        lock.view == view && lock.block != *digest
    }

    /// S2: the lock certificate a skip vote reports: the voter's own, if it has one.
    fn skip_vote_lock(&self, lock: Option<&Lock>) -> Option<QuorumCertificate> {
        lock.map(|l| l.certificate.clone())
    }

    /// S2, spec 2.6: whether a primary may issue a new revision of its view, given whether it
    /// is locked in that view (an endorsement quorum may already be committing the block it
    /// locked on): only if it is not.
    fn may_revise(&self, locked_in_view: bool) -> bool {
        !locked_in_view
    }

    /// L5, spec 2.6: whether an objection to revision `objected` is answered when the
    /// primary's latest revision is `current`: an objection to an earlier revision of the view
    /// is as valid against the current one, so it is; one to a later revision cannot be.
    fn answers(&self, objected: u32, current: u32) -> bool {
        objected <= current
    }

    /// V10: whether a missing-batch objection's batch may be taken: only the objector's own
    /// batch of the height.
    fn objection_batch(&self, batch: &SignedBatch, objector: NodeId, height: u64) -> bool {
        batch.body.home == objector && batch.body.height == height
    }

    /// V5: the resolution of an appeal recorded in an earlier revision, resolved again
    /// against this revision's batches as `now`: the new resolution, whatever was recorded.
    fn appeal_resolution(
        &self,
        _earlier: Option<AppealResolution>,
        now: AppealResolution,
    ) -> AppealResolution {
        now
    }

    /// N2: the batches a primary clears after a skip, from every home's batch it holds: all
    /// of them.
    fn batches_after_skip(&self, _me: NodeId, _batches: &mut Vec<SignedBatch>) {}

    /// N2: a verifier's check that a block after a skip carries every batch its skip
    /// certificate's voters reported.
    fn check_skip_batches(&self, process: &ProcessData) -> Result<(), AuditFailure> {
        check_skip_batches(process)
    }

    /// V2: a verifier's check of the proposed clearing outcome against the agreed rule.
    fn verify_clearing(
        &self,
        content: &ContentRules<'_>,
        input: &ClearingInput<'_>,
        cleared: &Cleared,
    ) -> Result<(), AuditFailure> {
        content.verify_clearing(input, cleared)
    }

    /// V7: the constraints of this node's own area that the outcome violates.
    fn security_cuts(
        &self,
        security: &dyn SecurityCheck,
        input: &ClearingInput<'_>,
        cleared: &Cleared,
    ) -> Vec<Cut> {
        security.check(input, cleared)
    }

    /// S4 (spec 2.9): the members whose endorsements a commit needs beyond the quorum: the
    /// node of every area the block touches.
    fn required_signers(&self, genesis: &Genesis, body: &BlockBody) -> Vec<NodeId> {
        body.required_signers(genesis)
    }

    /// S3: whether two votes of one voter in one slot are an equivocation: they name
    /// different blocks.
    fn equivocates(&self, first: &Vote, second: &Vote) -> bool {
        first.block != second.block
    }

    /// N3: whether a record goes to the log before anything that depends on it is sent:
    /// every record does.
    fn logs(&self, _record: &Record) -> bool {
        true
    }

    /// N3: whether a restart reads a record of its log back: every record.
    fn restores(&self, _record: &Record) -> bool {
        true
    }

    /// A1: whether a home node countersigns a registry change it sponsors: a participant's
    /// key change signed by that participant (an admission needs its home's operator, who
    /// signs it before it reaches the node).
    fn countersigns(&self, change: &SignedChange) -> bool {
        match &change.record.change {
            RegistryChange::ParticipantKey { participant, .. } => change
                .signatures
                .iter()
                .any(|s| s.by == Party::Participant(*participant)),
            _ => false,
        }
    }

    /// A2: whether a committed registry change is applied: every one.
    fn applies(&self, _change: &RegistryChange) -> bool {
        true
    }
}

/// The protocol's rules as the spec states them: every default of [`Rules`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Honest;

impl Rules for Honest {}
