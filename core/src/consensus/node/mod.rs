//! The management node's state machine: `step(now, input) -> Ready` (spec part 2).
//!
//! Nothing here reads a clock, a file or the network: time comes in as `now`, messages and
//! timers as inputs, and everything the node does goes out as a [`Ready`]: its storage effects,
//! then its messages and timers (spec N3).
//!
//! [`NodeState`] holds where the node stands (height, view, chain) and one part per concern;
//! each part owns its state, its reset and its invariants, and each module holds the
//! transitions of one concern (spec 2.13 names, for every property, the module and functions
//! that enforce it):
//!
//! | module | part | transitions (spec) |
//! |---|---|---|
//! | `mod.rs` | [`NodeState`] | `step`, dispatch, timers (2.10), invariants |
//! | `intake.rs` | [`Intake`] | bids, registry changes, gate closure, batches (N1, N2, N4, D25, A1-A3) |
//! | `propose.rs` | [`RoundState`] | the primary's plan, proposal and revisions (V2, V5, S2, L3) |
//! | `verify.rs` | | a member's check of a proposal, endorsement or objection (V1-V9, S2) |
//! | `negotiate.rs` | | objections at the primary (V8, V10, L3, L5) |
//! | `ballot.rs` | [`Ballot`] | votes, certificates, locks, evidence (S1-S4, V9) |
//! | `decide.rs` | | a decided block and the next height (S1, N1, A5) |
//! | `view_change.rs` | [`ViewChange`] | skip votes and certificates, entering a view (L1, L2, N2) |
//! | `appeal.rs` | [`Appeals`] | participants' appeals (V5) |
//! | `sync.rs` | | catch-up (L4) |
//! | `restore.rs` | | restart from the log (N1, N3) |
//! | `verified.rs` | [`VerifiedBids`] | signatures verified within a height (work, not verdicts) |
//!
//! Every decision the spec makes at a point of a transition (a quorum, who may propose, what a
//! lock forbids, ...) is asked of the context's [`Rules`](super::Rules), whose defaults are
//! the spec's rules.

mod appeal;
mod ballot;
mod decide;
mod intake;
mod negotiate;
mod propose;
mod restore;
mod sync;
mod verified;
mod verify;
mod view_change;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::audit::{AuditSummary, check_header, verify_block};
use crate::block::{
    Appeal, AppealClaim, AppealRecord, AppealResolution, BLOCK_VERSION, Block, BlockBody,
    BlockHeader, Evidence, MAX_APPEALS, MAX_EVIDENCE, MAX_NEGOTIATION_BYTES, MAX_OBJECTIONS,
    Objection, ObjectionReason, QuorumCertificate, Round, SkipCertificate, SkipVote, Vote,
    VoteKind, VoteSignature,
};
use crate::clearing::Cut;
use crate::consensus::content::{
    BlockPlan, CommittedNonces, ContentRules, SignatureCheck, advance_nonces, resolve_appeal,
    unavailable_areas,
};
use crate::consensus::context::Context;
use crate::consensus::ready::Ready;
use crate::consensus::types::{
    Effect, Input, MAX_SYNC_BLOCKS, Message, Proposal, Record, Reply, Timer,
};
use crate::crypto::{Digest, PublicKey, Signature, Signed};
use crate::encoding::encoded_len;
use crate::market::{
    Bid, BidBatch, BidError, BidReceipt, MAX_BATCH_BIDS, SignedBatch, SignedBid, SignedReceipt,
};
use crate::registry::{ChangeError, MAX_BATCH_CHANGES, Party, Registry, SignedChange};
use crate::schedule::{MAX_CLOCK_SKEW_MS, MAX_GATES_AHEAD};
use crate::units::{NodeId, ParticipantId, Timestamp};

pub use appeal::Appeals;
pub use ballot::{Ballot, VoteSlot};
pub use intake::Intake;
pub use propose::RoundState;
use verified::Memo;
pub use verified::VerifiedBids;
pub use view_change::ViewChange;

/// Most fallback revisions after the genesis bound: enough to halve any batch set to nothing.
pub const MAX_FALLBACK_LEVELS: u32 = 64;

// The node's limits against each other (spec 1.3, D25); the message and frame limits are
// related in `wire.rs` and `compact.rs`. The build fails if a change breaks one.
const _: () = {
    use crate::block::MAX_VIEW;
    use crate::genesis::{
        MAX_MEMBERS, MAX_REVISIONS_LIMIT, MAX_ROUND_STEPS_COUPLED, MAX_ROUND_STEPS_MATCHED,
    };
    use crate::market::{MAX_BATCH_BIDS, MAX_BID_STEPS};
    // A revision number holds the genesis bound and every fallback level.
    assert!(
        MAX_REVISIONS_LIMIT
            .checked_add(MAX_FALLBACK_LEVELS)
            .is_some()
    );
    // The last fallback level keeps no bid of the largest round: each level halves them.
    assert!(((MAX_MEMBERS * MAX_BATCH_BIDS + MAX_APPEALS) as u128) >> MAX_FALLBACK_LEVELS == 0);
    // A view number fits a skip vote's escalation past the last view (`next_skip_view`).
    assert!(MAX_VIEW < u32::MAX);
    // A home node's share of a round (budget / members, spec D25) fits one batch.
    assert!(MAX_ROUND_STEPS_COUPLED <= MAX_BATCH_BIDS * MAX_BID_STEPS);
    assert!(MAX_ROUND_STEPS_MATCHED <= MAX_ROUND_STEPS_COUPLED);
};

/// A view's time per bid of the round's batches, in microseconds, beyond the genesis's view
/// timeout (spec 2.7): a round's work (its batches' transfer and signatures, the clearing, each
/// member's verification) grows with its bids, so its views do. 300 us is about six
/// single-core ed25519 verifications: a 1,000,000-step round of 31,250 bids gets 9.4 s more,
/// a round of 100 bids 30 ms.
pub const VIEW_ALLOWANCE_US_PER_BID: u64 = 300;

/// The view-0 primary's extra wait for missing batches per bid of the batches it holds, in
/// microseconds, beyond the genesis's batch wait (spec 2.5): a large round's batches take
/// longer to arrive and be checked. A third of [`VIEW_ALLOWANCE_US_PER_BID`], so the primary
/// proposes well inside the view: 31,250 bids add 3.1 s, 100 bids 10 ms.
pub const BATCH_WAIT_ALLOWANCE_US_PER_BID: u64 = 100;

/// A lock: the highest endorsement certificate this node holds at its height, with the
/// proposal it certifies (spec S2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lock {
    /// The endorsement certificate.
    pub certificate: QuorumCertificate,
    /// The proposal it certifies.
    pub proposal: Proposal,
}

/// What the primary of the current view has accepted from negotiation (spec V8, L3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Negotiation {
    /// The cuts from security objections, in the order accepted.
    pub cuts: Vec<Cut>,
    /// The objections that led to revisions.
    pub objections: Vec<Signed<Objection>>,
    /// Their encoded size, which [`MAX_NEGOTIATION_BYTES`] bounds (spec D25).
    pub bytes: usize,
    /// Appeals resolved so far in this view.
    pub appeals: Vec<AppealRecord>,
    /// The members whose objection to the primary's current proposal it accepted: they
    /// answered it (spec 2.6). An objection that adds nothing changes no state, so a copy or an
    /// empty objection is no answer; the primary's `Revise` timer ends the wait for it.
    pub answered: BTreeSet<NodeId>,
}

/// Everything a management node remembers. Pure data: it derives equality and hashing so the
/// model checker can compare states.
///
/// Where the node stands (its height, view and chain) is here; the rest is in parts that each
/// own their state and its reset, one per concern: [`Intake`], [`RoundState`], [`Ballot`],
/// [`ViewChange`] and [`Appeals`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeState {
    /// The next height to decide.
    pub height: u64,
    /// The last decided header (none before height 1).
    pub prev: Option<BlockHeader>,
    /// The current view at this height.
    pub view: u32,
    /// The skip certificate that opened the current view.
    pub justification: Option<SkipCertificate>,
    /// Each participant's highest nonce in committed blocks.
    pub committed_nonces: CommittedNonces,
    /// The participants and members' keys for `height`: the genesis with the changes of the
    /// blocks before it applied (spec A1-A5).
    pub registry: Registry,
    /// Bids, registry changes and batches (spec N1, N2, D25; `intake.rs`).
    pub intake: Intake,
    /// The current view's proposals and, at its primary, its negotiation (spec V1-V10, L3,
    /// L5; `propose.rs`, `verify.rs`, `negotiate.rs`).
    pub round: RoundState,
    /// The height's votes, this node's own votes and lock, and equivocation evidence (spec
    /// S1-S4; `ballot.rs`).
    pub ballot: Ballot,
    /// The height's skip votes (spec L1, L2; `view_change.rs`).
    pub skip: ViewChange,
    /// The height's appeals (spec V5; `appeal.rs`).
    pub appeals: Appeals,
    /// The height this node last asked a peer to sync from (spec L4; `sync.rs`).
    pub sync_from: Option<u64>,
    /// Bid signatures already verified.
    pub verified: VerifiedBids,
}

/// The content rules of a node's height (spec D19-D22), given the nonces committed before it,
/// and its memo of verified signatures, to build or check a body with.
fn content_checks<'a>(
    ctx: &'a Context,
    committed: &'a CommittedNonces,
    verified: &'a mut VerifiedBids,
) -> (ContentRules<'a>, Memo<'a>) {
    let rules = ContentRules {
        genesis: &ctx.genesis,
        chain_id: ctx.chain_id,
        scheme: ctx.scheme.as_ref(),
        clearing: ctx.clearing,
        committed,
    };
    let memo = Memo {
        memo: verified,
        scheme: ctx.scheme.as_ref(),
    };
    (rules, memo)
}

/// The effects of one step, with the context and time they were produced in.
struct Out<'a> {
    ctx: &'a Context,
    now: Timestamp,
    effects: Vec<Effect>,
}

impl Out<'_> {
    fn push(&mut self, e: Effect) {
        self.effects.push(e);
    }

    fn sign<T: crate::encoding::Tagged>(&self, body: T) -> Signed<T> {
        Signed::sign(body, self.ctx.signer.as_ref())
    }

    /// Writes a record to the log (spec N3: before anything that depends on it is sent).
    fn persist(&mut self, record: Record) {
        if self.ctx.rules.logs(&record) {
            self.push(Effect::Persist(record));
        }
    }

    /// Persists a vote (spec N3: before anything that depends on it is sent).
    fn persist_vote(&mut self, vote: &Signed<Vote>) {
        self.persist(Record::Vote(vote.clone()));
    }
}

impl NodeState {
    /// The state of a node of a new chain.
    pub fn new() -> Self {
        NodeState {
            height: 1,
            prev: None,
            view: 0,
            justification: None,
            committed_nonces: CommittedNonces::new(),
            registry: Registry::default(),
            intake: Intake::default(),
            round: RoundState::default(),
            ballot: Ballot::default(),
            skip: ViewChange::default(),
            appeals: Appeals::default(),
            sync_from: None,
            verified: VerifiedBids::default(),
        }
    }

    /// The context as this node's registry stands: the genesis with the chain's changes
    /// applied (spec A5), so every rule that reads a participant or a member's key reads the
    /// current one. The context itself until the first change.
    pub fn effective<'c>(&self, ctx: &'c Context) -> Cow<'c, Context> {
        if self.registry.is_genesis() {
            Cow::Borrowed(ctx)
        } else {
            Cow::Owned(Context {
                genesis: self.registry.genesis(&ctx.genesis),
                ..ctx.clone()
            })
        }
    }

    /// One transition: the effects of `input` at time `now`, in the order the runtime must
    /// execute them.
    pub fn step(&mut self, ctx: &Context, now: Timestamp, input: Input) -> Ready {
        if cfg!(debug_assertions) {
            self.assert_invariants(ctx.me);
        }
        let ctx = self.effective(ctx);
        let mut out = Out {
            ctx: &ctx,
            now,
            effects: Vec::new(),
        };
        match input {
            Input::Start => self.on_start(&mut out),
            Input::Bid(bid) => self.on_bid(&mut out, bid),
            Input::Appeal(appeal) => self.on_participant_appeal(&mut out, appeal),
            Input::Change(change) => self.on_change(&mut out, change),
            Input::Timer(t) => self.on_timer(&mut out, t),
            Input::Message { from, msg } => self.on_message(&mut out, from, msg),
        }
        if cfg!(debug_assertions) {
            self.assert_invariants(ctx.me);
        }
        Ready::new(out.effects)
    }

    /// What holds of every state between steps, part by part (checked before and after each
    /// step and after a restart, in debug and test builds). No [`Rules`](super::Rules) policy
    /// can break these: they are the state machine's own bookkeeping, not the protocol's
    /// rules, which the model checker checks.
    fn assert_invariants(&self, me: NodeId) {
        assert!(self.height >= 1);
        assert!(self.prev.as_ref().is_none_or(|p| p.height < self.height));
        assert!(self.view <= crate::block::MAX_VIEW);
        assert_eq!(
            self.justification.is_some(),
            self.view > 0,
            "a view after 0 is opened by a skip certificate"
        );
        self.intake.assert_invariants(self.height);
        self.round.assert_invariants(self.view, me);
        self.ballot.assert_invariants(self.view);
        self.skip.assert_invariants(self.view);
        self.appeals.assert_invariants();
    }

    fn primary(&self, ctx: &Context) -> NodeId {
        ctx.genesis.primary(self.height, self.view)
    }

    /// How long the view-0 primary waits for missing batches: the genesis's batch wait plus
    /// [`BATCH_WAIT_ALLOWANCE_US_PER_BID`] for every bid of the batches it holds (spec 2.5).
    fn batch_wait(&self, ctx: &Context) -> u64 {
        ctx.genesis.timing.batch_wait_ms
            + self.held_bids() * BATCH_WAIT_ALLOWANCE_US_PER_BID / 1_000
    }

    /// How long this node waits in `view` before voting to skip it: the genesis's timeout,
    /// doubled per view, plus [`VIEW_ALLOWANCE_US_PER_BID`] for every bid of the batches it
    /// holds for the height (spec 2.7).
    fn view_timeout(&self, ctx: &Context, view: u32) -> u64 {
        (ctx.genesis.timing.view_timeout_ms << view.min(8))
            + self.held_bids() * VIEW_ALLOWANCE_US_PER_BID / 1_000
    }

    fn prev_digest(&self, ctx: &Context) -> Digest {
        self.prev.as_ref().map_or(ctx.chain_id, BlockHeader::digest)
    }

    fn quorum(ctx: &Context) -> usize {
        ctx.rules.quorum(&ctx.genesis)
    }

    fn member_key(ctx: &Context, id: NodeId) -> Option<PublicKey> {
        ctx.genesis.member(id).map(|m| m.public_key)
    }

    fn arm_batch_wait(&self, out: &mut Out<'_>) {
        out.push(Effect::SetTimer {
            timer: Timer::BatchWait(self.height),
            after_ms: self.batch_wait(out.ctx),
        });
    }

    fn arm_view_timer(&self, out: &mut Out<'_>) {
        out.push(Effect::SetTimer {
            timer: Timer::View(self.height, self.view),
            after_ms: self.view_timeout(out.ctx, self.view),
        });
    }

    fn on_timer(&mut self, out: &mut Out<'_>, timer: Timer) {
        match timer {
            Timer::Gate(h) if h == self.height && !self.intake.gate_closed => {
                self.close_gate(out);
                if self.primary(out.ctx) == out.ctx.me && self.round.own.is_none() {
                    if self.intake.batches.len() == out.ctx.genesis.n() {
                        self.propose(out, 0);
                    } else {
                        self.arm_batch_wait(out);
                    }
                }
            }
            Timer::BatchWait(h)
                if h == self.height
                    && self.primary(out.ctx) == out.ctx.me
                    && self.round.own.is_none() =>
            {
                self.propose(out, 0);
            }
            Timer::View(h, v) if h == self.height && v == self.view => {
                self.sync_from = None;
                self.skip_view(out);
            }
            Timer::Revise(h, v, r)
                if h == self.height
                    && v == self.view
                    && self
                        .round
                        .own
                        .as_ref()
                        .is_some_and(|p| p.round() == Round::new(v, r))
                    && self.revision_pending() =>
            {
                self.propose(out, r + 1);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, out: &mut Out<'_>, from: NodeId, msg: Message) {
        if out.ctx.genesis.member(from).is_none() {
            return;
        }
        match msg {
            Message::Batch(b) => self.on_batch(out, from, b),
            Message::Proposal(p) => self.on_proposal(out, from, *p),
            Message::Vote(v) => self.on_vote(out, from, v),
            Message::Endorsed(cert) => self.on_endorsed(out, from, *cert),
            Message::Objection(o, batch) => self.on_objection(out, from, *o, batch.map(|b| *b)),
            Message::Appeal { appeal, via } => self.on_forwarded_appeal(out, from, *appeal, via),
            Message::Skip(v, locked, batches) => {
                self.on_skip(out, from, *v, locked.map(|p| *p), batches)
            }
            Message::ViewCertificate(cert, batches) => {
                self.on_view_certificate(out, from, *cert, batches)
            }
            Message::Decided(b) => self.on_blocks(out, from, vec![*b]),
            Message::SyncRequest { from: first } => self.on_sync_request(out, from, first),
            Message::SyncResponse(blocks) => self.on_blocks(out, from, blocks),
        }
    }
}

impl Default for NodeState {
    fn default() -> Self {
        Self::new()
    }
}

/// A management node: its context and its state, stepped together. The model checker holds
/// the two apart (the state is what it explores); the node runtime uses this.
#[derive(Debug)]
pub struct ManagementNode {
    /// What never changes.
    pub ctx: Context,
    /// What does.
    pub state: NodeState,
}

impl ManagementNode {
    /// A node of a new chain.
    pub fn new(ctx: Context) -> Self {
        Self {
            ctx,
            state: NodeState::new(),
        }
    }

    /// A node restarted from its stored chain and write-ahead log.
    pub fn restore<'b>(
        ctx: Context,
        chain: impl IntoIterator<Item = &'b Block>,
        records: impl IntoIterator<Item = Record>,
    ) -> Self {
        let state = NodeState::restore(&ctx, chain, records);
        Self { ctx, state }
    }

    /// One transition.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Ready {
        self.state.step(&self.ctx, now, input)
    }
}
