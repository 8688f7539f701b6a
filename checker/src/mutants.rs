//! The catalogue of seeded protocol bugs: each a [`Mutation`], a set of the core's decision
//! [`Rules`] with one rule broken, the scenario that exposes it, and the property that must
//! catch it. The faulty rules live here only: the core has the honest ones
//! ([`tieline_core::consensus::Honest`]) and nothing else.

use std::sync::Arc;

use tieline_core::audit::AuditFailure;
use tieline_core::block::{
    AppealResolution, BlockBody, ProcessData, QuorumCertificate, SkipCertificate, Vote,
};
use tieline_core::clearing::{Cleared, ClearingInput, Cut};
use tieline_core::consensus::content::ContentRules;
use tieline_core::consensus::{Context, Honest, Lock, Record, Rules, SecurityCheck};
use tieline_core::crypto::Digest;
use tieline_core::genesis::Genesis;
use tieline_core::market::SignedBatch;
use tieline_core::registry::{RegistryChange, SignedChange};
use tieline_core::units::NodeId;

use crate::run::{self, Options, Status, Strategy};
use crate::scenario::Scenario;

/// A deliberately seeded protocol bug: the honest [`Rules`] with the one rule it names broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutation {
    /// Certificates need one vote fewer than a quorum.
    QuorumTooSmall,
    /// A node enters the next view on a single skip vote, and takes a proposal's
    /// justification without verifying it.
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

impl Mutation {
    /// The rules a node runs with under this bug.
    pub fn rules(self) -> Arc<dyn Rules> {
        Arc::new(self)
    }
}

/// Each bug breaks one rule; every other rule is [`Honest`]'s.
impl Rules for Mutation {
    fn quorum(&self, genesis: &Genesis) -> usize {
        let q = Honest.quorum(genesis);
        if *self == Self::QuorumTooSmall {
            q - 1
        } else {
            q
        }
    }

    fn skip_quorum(&self, genesis: &Genesis) -> usize {
        if *self == Self::SkipWithoutCertificate {
            1
        } else {
            Honest.skip_quorum(genesis)
        }
    }

    fn may_propose(&self, genesis: &Genesis, height: u64, view: u32, voter: NodeId) -> bool {
        *self == Self::AcceptWrongPrimary || Honest.may_propose(genesis, height, view, voter)
    }

    fn justifies(&self, ctx: &Context, cert: &SkipCertificate, height: u64, view: u32) -> bool {
        *self == Self::SkipWithoutCertificate || Honest.justifies(ctx, cert, height, view)
    }

    fn view_certificate_holds(&self, ctx: &Context, cert: &SkipCertificate, height: u64) -> bool {
        *self == Self::UnverifiedViewCertificate || Honest.view_certificate_holds(ctx, cert, height)
    }

    fn skip_lock_holds(
        &self,
        ctx: &Context,
        lock: &QuorumCertificate,
        height: u64,
        vote_view: u32,
    ) -> bool {
        *self == Self::UnverifiedSkipLock || Honest.skip_lock_holds(ctx, lock, height, vote_view)
    }

    fn carried_lock<'c>(
        &self,
        justification: &'c SkipCertificate,
    ) -> Option<&'c QuorumCertificate> {
        if *self == Self::NewPrimaryIgnoresLock {
            None
        } else {
            Honest.carried_lock(justification)
        }
    }

    fn lock_forbids(&self, lock: &QuorumCertificate, view: u32, digest: &Digest) -> bool {
        *self != Self::IgnoreLock && Honest.lock_forbids(lock, view, digest)
    }

    fn skip_vote_lock(&self, lock: Option<&Lock>) -> Option<QuorumCertificate> {
        if *self == Self::SkipVoteHidesLock {
            None
        } else {
            Honest.skip_vote_lock(lock)
        }
    }

    fn may_revise(&self, locked_in_view: bool) -> bool {
        *self == Self::ReviseAfterLock || Honest.may_revise(locked_in_view)
    }

    fn answers(&self, objected: u32, current: u32) -> bool {
        if *self == Self::DropLateObjection {
            objected == current
        } else {
            Honest.answers(objected, current)
        }
    }

    fn objection_batch(&self, batch: &SignedBatch, objector: NodeId, height: u64) -> bool {
        *self == Self::ForeignObjectionBatch || Honest.objection_batch(batch, objector, height)
    }

    fn appeal_resolution(
        &self,
        earlier: Option<AppealResolution>,
        now: AppealResolution,
    ) -> AppealResolution {
        match earlier {
            Some(kept) if *self == Self::StaleAppealResolution => kept,
            _ => Honest.appeal_resolution(earlier, now),
        }
    }

    fn batches_after_skip(&self, me: NodeId, batches: &mut Vec<SignedBatch>) {
        if *self == Self::DropBatchOnSkip {
            batches.retain(|b| b.body.home == me);
        }
    }

    fn check_skip_batches(&self, process: &ProcessData) -> Result<(), AuditFailure> {
        if *self == Self::DropBatchOnSkip {
            Ok(())
        } else {
            Honest.check_skip_batches(process)
        }
    }

    fn verify_clearing(
        &self,
        content: &ContentRules<'_>,
        input: &ClearingInput<'_>,
        cleared: &Cleared,
    ) -> Result<(), AuditFailure> {
        if *self == Self::SkipClearingCheck {
            Ok(())
        } else {
            Honest.verify_clearing(content, input, cleared)
        }
    }

    fn security_cuts(
        &self,
        security: &dyn SecurityCheck,
        input: &ClearingInput<'_>,
        cleared: &Cleared,
    ) -> Vec<Cut> {
        if *self == Self::IgnoreOwnSecurity {
            Vec::new()
        } else {
            Honest.security_cuts(security, input, cleared)
        }
    }

    fn required_signers(&self, genesis: &Genesis, body: &BlockBody) -> Vec<NodeId> {
        if *self == Self::CommitWithoutTouchedArea {
            Vec::new()
        } else {
            Honest.required_signers(genesis, body)
        }
    }

    fn equivocates(&self, first: &Vote, second: &Vote) -> bool {
        *self != Self::UnrecordedEquivocation && Honest.equivocates(first, second)
    }

    fn logs(&self, record: &Record) -> bool {
        match record {
            Record::Vote(_) => *self != Self::VoteBeforePersist,
            Record::Skip(_) => *self != Self::SkipVoteUnlogged,
            Record::Bid { .. } => *self != Self::ReceiptBeforePersist,
            _ => Honest.logs(record),
        }
    }

    fn restores(&self, record: &Record) -> bool {
        match record {
            Record::Lock(..) => *self != Self::ForgetLockOnRestart,
            _ => Honest.restores(record),
        }
    }

    fn countersigns(&self, change: &SignedChange) -> bool {
        match change.record.change {
            RegistryChange::Admit(_) if *self == Self::AdmitWithoutHomeSignature => true,
            _ => Honest.countersigns(change),
        }
    }

    fn applies(&self, change: &RegistryChange) -> bool {
        match change {
            RegistryChange::Revoke(_) if *self == Self::IgnoreRevocation => false,
            _ => Honest.applies(change),
        }
    }
}

/// One seeded bug.
#[derive(Clone, Copy, Debug)]
pub struct Mutant {
    /// Its name.
    pub name: &'static str,
    /// What it breaks.
    pub about: &'static str,
    /// The bug.
    pub mutation: Mutation,
    /// The scenario that exposes it.
    pub scenario: &'static str,
    /// The checker property that must catch it.
    pub property: &'static str,
    /// How to search: breadth first finds shallow counterexamples in a large scenario soon;
    /// depth first finds deep ones in a small scenario.
    pub strategy: Strategy,
    /// The slice of the scenario searched, if not all of it.
    pub slice: Slice,
}

/// Which part of a scenario a mutant's search covers: a bug that needs one ingredient of a
/// large scenario is found soonest in the exhaustive slice that keeps that ingredient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slice {
    /// The whole scenario.
    Whole,
    /// Collection done before the search (`--after-collection`).
    AfterCollection,
    /// View 0 only (`--max-view 0`).
    ViewZero,
}

/// The catalogue.
pub const CATALOGUE: &[Mutant] = &[
    Mutant {
        name: "quorum-too-small",
        about: "certificates need one vote fewer than a quorum",
        mutation: Mutation::QuorumTooSmall,
        scenario: "crash",
        property: "S1",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "skip-without-certificate",
        about: "a node enters the next view on a single skip vote",
        mutation: Mutation::SkipWithoutCertificate,
        scenario: "crash",
        property: "L1",
        strategy: Strategy::Dfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "vote-before-persist",
        about: "votes are sent but never persisted, so a restarted node forgets them",
        mutation: Mutation::VoteBeforePersist,
        scenario: "crash",
        property: "S3",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "skip-clearing-check",
        about: "a verifier accepts any clearing outcome without recomputing it",
        mutation: Mutation::SkipClearingCheck,
        scenario: "byzantine",
        property: "V6",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "ignore-own-security",
        about: "a verifier ignores its own grid's security check",
        mutation: Mutation::IgnoreOwnSecurity,
        scenario: "negotiate",
        property: "V7",
        strategy: Strategy::Dfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "accept-wrong-primary",
        about: "a proposal from a node that is not the round's primary is accepted",
        mutation: Mutation::AcceptWrongPrimary,
        scenario: "impostor",
        property: "V1",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "drop-batch-on-skip",
        about: "a new primary after a skip clears only its own batch, and verifiers do not check the reported batches",
        mutation: Mutation::DropBatchOnSkip,
        scenario: "crash",
        property: "N2",
        strategy: Strategy::Dfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "commit-without-touched-area",
        about: "a block commits without the endorsement of a touched area's node",
        mutation: Mutation::CommitWithoutTouchedArea,
        scenario: "joint",
        property: "V9",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "new-primary-ignores-lock",
        about: "a new primary proposes afresh, ignoring the lock in the skip certificate, and verifiers do not check it",
        mutation: Mutation::NewPrimaryIgnoresLock,
        scenario: "lock",
        property: "S2",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "forget-lock-on-restart",
        about: "a restarted node forgets its lock (restore skips the lock records of its log)",
        mutation: Mutation::ForgetLockOnRestart,
        scenario: "crash",
        property: "S2",
        strategy: Strategy::Bfs,
        slice: Slice::AfterCollection,
    },
    Mutant {
        name: "unrecorded-equivocation",
        about: "a node that receives two conflicting votes of one voter in one slot keeps no evidence",
        mutation: Mutation::UnrecordedEquivocation,
        scenario: "byzantine",
        property: "S4",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "skip-vote-hides-lock",
        about: "a skip vote leaves out the voter's lock",
        mutation: Mutation::SkipVoteHidesLock,
        scenario: "lock",
        property: "S2",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "skip-vote-unlogged",
        about: "skip votes are sent but never logged",
        mutation: Mutation::SkipVoteUnlogged,
        scenario: "crash",
        property: "N3",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "receipt-before-persist",
        about: "a bid is receipted without being logged, so a restart loses it",
        mutation: Mutation::ReceiptBeforePersist,
        scenario: "crash",
        property: "N1",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "unverified-view-certificate",
        about: "a node enters the view a view certificate opens without verifying it, so a byzantine member's forged certificate moves it",
        mutation: Mutation::UnverifiedViewCertificate,
        scenario: "liar",
        property: "L1",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "unverified-skip-lock",
        about: "the next primary counts a skip vote whose lock certificate it does not verify, so a byzantine member's unprovable lock enters the skip certificate",
        mutation: Mutation::UnverifiedSkipLock,
        scenario: "liar",
        property: "L1",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "foreign-objection-batch",
        about: "a primary accepts a missing-batch objection whose batch is not its objector's own of the height (the liar's batch for height 2 moves it to revise)",
        mutation: Mutation::ForeignObjectionBatch,
        scenario: "liar",
        property: "V10",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "ignore-lock",
        about: "a locked node endorses a different block (a later revision) in the same view, so the byzantine primary's revision 1 gets an endorsement quorum after revision 0 may have been committed",
        mutation: Mutation::IgnoreLock,
        scenario: "late-revision",
        property: "S2",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "stale-appeal-resolution",
        about: "a primary keeps an appeal's earlier resolution when a later revision's batches change it: the seller's bid, upheld while its home's batch was missing, is carried again by the batch the home's objection brings in, and the verifier objects Invalid to the revision (the view is lost)",
        mutation: Mutation::StaleAppealResolution,
        scenario: "late-appeal",
        property: "V2",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "drop-late-objection",
        about: "a primary drops an objection to an earlier revision of its view instead of answering it: the second member's objection to revision 0, arriving after revision 1, is never carried (the objector must object again, a revision later)",
        mutation: Mutation::DropLateObjection,
        scenario: "late-objection",
        property: "L5: an objection to an earlier revision of the view is answered",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "admit-without-home-signature",
        about: "a home node countersigns any admission it is handed, so the admission that only another member signed takes effect",
        mutation: Mutation::AdmitWithoutHomeSignature,
        scenario: "admission",
        property: "A1",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
    Mutant {
        name: "ignore-revocation",
        about: "a node does not apply revocations, so the revoked participant's bid at the next height is taken and cleared",
        mutation: Mutation::IgnoreRevocation,
        scenario: "admission",
        property: "A2",
        strategy: Strategy::Bfs,
        slice: Slice::Whole,
    },
];

/// Seeded bugs no scenario exposes, each masked by another rule of the protocol (kept, and run
/// with `mutants --only NAME`, but not part of the catalogue's test):
/// - `revise-after-lock` (the S2 bug fixed in 2.6) is masked by the lock rule itself: a node
///   locked on revision 0 never endorses revision 1, so revision 1 gathers no endorsement
///   quorum. The exhaustive `--max-view 0` slice of `crash` with it finds no violation.
pub const PENDING: &[Mutant] = &[Mutant {
    name: "revise-after-lock",
    about: "a primary locked in its view still revises for a late objection",
    mutation: Mutation::ReviseAfterLock,
    scenario: "crash",
    property: "S2",
    strategy: Strategy::Dfs,
    slice: Slice::ViewZero,
}];

/// What the search found for one mutant.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The mutant.
    pub mutant: Mutant,
    /// Whether its property was violated.
    pub caught: bool,
    /// Steps in the counterexample.
    pub trace_len: Option<usize>,
    /// Distinct states searched.
    pub unique_states: usize,
    /// Wall time.
    pub seconds: f64,
    /// The counterexample, as text.
    pub trace: String,
}

/// Runs one mutant: a DFS of its scenario that stops at the first violation of its property.
pub fn run(
    m: &Mutant,
    ci: bool,
    threads: usize,
    quiet: bool,
    timeout: Option<std::time::Duration>,
) -> Verdict {
    run_shaped(m, ci, threads, quiet, timeout, |_| {})
}

/// [`run`], with the scenario shaped by `shape` first (for example, crashes in two steps, to
/// cross-check a reduction).
pub fn run_shaped(
    m: &Mutant,
    ci: bool,
    threads: usize,
    quiet: bool,
    timeout: Option<std::time::Duration>,
    shape: impl FnOnce(&mut Scenario),
) -> Verdict {
    let mut scenario = Scenario::named(m.scenario).expect("a named scenario");
    shape(&mut scenario);
    let mut bounds = if ci {
        scenario.ci_bounds
    } else {
        scenario.bounds
    };
    match m.slice {
        Slice::Whole => {}
        Slice::AfterCollection => scenario.after_collection = true,
        Slice::ViewZero => bounds.max_view = 0,
    }
    let opts = Options {
        bounds,
        mutation: Some(m.mutation),
        strategy: m.strategy,
        threads,
        stop_at: Some(m.property),
        quiet,
        timeout,
    };
    let out = run::check(&scenario, &opts);
    // An `always` property is caught by a counterexample; a `sometimes` property by an
    // exhaustive search that never reaches it.
    let caught = out.properties.iter().any(|p| {
        p.name == m.property
            && (p.status == Status::Violated || (p.status == Status::NotReached && out.exhaustive))
    });
    let path = out.paths.get(m.property);
    let steps = path.map(|p| crate::trace::steps(&out.model, p));
    Verdict {
        mutant: *m,
        caught,
        trace_len: steps.as_ref().map(Vec::len),
        unique_states: out.unique_states,
        seconds: out.seconds,
        trace: steps.map(|s| crate::trace::text(&s)).unwrap_or_default(),
    }
}
