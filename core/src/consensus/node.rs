//! The management node's state machine: `step(now, input) -> effects` (spec part 2).
//!
//! Every transition is a method here; comments cite the spec rule it implements. Nothing reads
//! a clock, a file or the network: time comes in as `now`, messages and timers as inputs, and
//! everything the node does goes out as an ordered list of effects.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::content::{
    BlockPlan, CommittedNonces, ContentRules, SignatureCheck, advance_nonces, resolve_appeal,
    unavailable_areas,
};
use super::context::{Context, mutated};
use super::types::{Effect, Input, MAX_SYNC_BLOCKS, Message, Proposal, Record, Reply, Timer};
use crate::audit::{AuditSummary, check_header, check_skip_batches, verify_block};
use crate::block::{
    Appeal, AppealClaim, AppealRecord, AppealResolution, BLOCK_VERSION, Block, BlockBody,
    BlockHeader, Evidence, MAX_APPEALS, MAX_EVIDENCE, MAX_NEGOTIATION_BYTES, MAX_OBJECTIONS,
    Objection, ObjectionReason, QuorumCertificate, SkipCertificate, SkipVote, Vote, VoteKind,
    VoteSignature,
};
use crate::clearing::Cut;
use crate::crypto::{Digest, PublicKey, Signature, Signed};
use crate::encoding::encoded_len;
use crate::market::{
    Bid, BidBatch, BidError, BidReceipt, MAX_BATCH_BIDS, SignedBatch, SignedBid, SignedReceipt,
};
use crate::registry::{
    ChangeError, MAX_BATCH_CHANGES, Party, Registry, RegistryChange, SignedChange,
};
use crate::schedule::{MAX_CLOCK_SKEW_MS, MAX_GATES_AHEAD};
use crate::units::{NodeId, ParticipantId, Timestamp};

/// Most fallback revisions after the genesis bound: enough to halve any batch set to nothing.
pub const MAX_FALLBACK_LEVELS: u32 = 64;

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

/// What a node verified within a height: bid ids and signatures, batch and objection
/// signatures, each remembered under its signature with the key and the exact content it was
/// verified for, so that every revision does not hash and verify again what the last one
/// carried. A lookup compares the content (cheaper than hashing it); anything not found, or
/// found with other content or another key, is verified afresh. It changes what work is done,
/// never what is decided, so it is invisible to equality and hashing (model-checker states
/// that differ only in it are the same state).
#[derive(Clone, Debug, Default)]
pub struct VerifiedBids {
    bids: HashMap<Signature, (Digest, Option<PublicKey>, Bid)>,
    batches: HashMap<Signature, (PublicKey, BidBatch)>,
    objections: HashMap<Signature, (PublicKey, Objection)>,
}

impl VerifiedBids {
    /// Remembers a bid this node signed a receipt for (verified at intake).
    fn receipted(&mut self, sb: &SignedBid, id: Digest, key: PublicKey) {
        self.bids
            .insert(sb.signature, (id, Some(key), sb.body.clone()));
    }
}

/// [`VerifiedBids`] as a content checker's signature check.
struct Memo<'a> {
    memo: &'a mut VerifiedBids,
    scheme: &'a dyn crate::crypto::SignatureScheme,
}

impl SignatureCheck for Memo<'_> {
    fn bid_id(&mut self, sb: &SignedBid) -> Digest {
        match self.memo.bids.get(&sb.signature) {
            Some((id, _, bid)) if *bid == sb.body => *id,
            _ => {
                let id = sb.body.id();
                self.memo
                    .bids
                    .insert(sb.signature, (id, None, sb.body.clone()));
                id
            }
        }
    }

    /// `id` is `bid_id(sb)`, so an entry under the signature with that id holds this very
    /// bid (its content hashes to the id): no second comparison of the content.
    fn bid(&mut self, sb: &SignedBid, id: &Digest, key: &PublicKey) -> bool {
        if let Some((known, verified, _)) = self.memo.bids.get(&sb.signature) {
            if known == id && *verified == Some(*key) {
                return true;
            }
        }
        let ok = sb.verify(self.scheme, key).is_ok();
        if ok {
            self.memo
                .bids
                .insert(sb.signature, (*id, Some(*key), sb.body.clone()));
        }
        ok
    }

    fn batch(
        &mut self,
        scheme: &dyn crate::crypto::SignatureScheme,
        b: &SignedBatch,
        key: &PublicKey,
    ) -> Result<(), crate::crypto::SignatureError> {
        verify_remembered(&mut self.memo.batches, scheme, b, key)
    }

    fn objection(
        &mut self,
        scheme: &dyn crate::crypto::SignatureScheme,
        o: &Signed<Objection>,
        key: &PublicKey,
    ) -> Result<(), crate::crypto::SignatureError> {
        verify_remembered(&mut self.memo.objections, scheme, o, key)
    }
}

/// Verifies `signed` under `key` unless `memo` holds its signature verified under that key
/// for the same content; remembers it once it verifies.
fn verify_remembered<T: crate::encoding::Tagged + Clone + PartialEq>(
    memo: &mut HashMap<Signature, (PublicKey, T)>,
    scheme: &dyn crate::crypto::SignatureScheme,
    signed: &Signed<T>,
    key: &PublicKey,
) -> Result<(), crate::crypto::SignatureError> {
    if memo
        .get(&signed.signature)
        .is_some_and(|(k, body)| k == key && *body == signed.body)
    {
        return Ok(());
    }
    signed.verify(scheme, key)?;
    memo.insert(signed.signature, (*key, signed.body.clone()));
    Ok(())
}

impl PartialEq for VerifiedBids {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for VerifiedBids {}
impl std::hash::Hash for VerifiedBids {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// Everything a management node remembers. Pure data: it derives equality and hashing so the
/// model checker can compare states.
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
    /// This node's participants' highest receipted nonce.
    pub receipted_nonces: BTreeMap<ParticipantId, u64>,
    /// This node's participants' receipted bids not yet on the chain, by the height whose
    /// batch will carry them.
    pub pool: BTreeMap<u64, Vec<(SignedBid, SignedReceipt)>>,
    /// How many bid steps `pool` holds for each height (kept with it by `pool_push` and
    /// `pool_take`): what a home node's share of the round is measured against (spec D25).
    pub pool_steps: BTreeMap<u64, usize>,
    /// Whether this node's gate for `height` has closed (its batch is sent).
    pub gate_closed: bool,
    /// The batches for `height`, by home node (spec N2).
    pub batches: BTreeMap<NodeId, SignedBatch>,
    /// Batches for `height + 1` that arrived early.
    pub early_batches: BTreeMap<NodeId, SignedBatch>,
    /// The latest valid proposal in the current view.
    pub proposal: Option<Proposal>,
    /// As primary: the latest proposal this node made in the current view, which objections
    /// and appeals refer to (it may have failed this node's own checks).
    pub own: Option<Proposal>,
    /// The lock, if any.
    pub lock: Option<Lock>,
    /// Votes collected: (kind, view, revision, block) -> voter -> signature.
    pub votes: BTreeMap<(VoteKind, u32, u32, Digest), BTreeMap<NodeId, Signature>>,
    /// The first vote seen from each voter in each slot, to detect equivocation.
    pub seen: BTreeMap<(NodeId, VoteKind, u32, u32), Signed<Vote>>,
    /// This node's own votes at this height: (kind, view, revision) -> block.
    pub voted: BTreeMap<(VoteKind, u32, u32), Digest>,
    /// Skip votes per view.
    pub skips: BTreeMap<u32, BTreeMap<NodeId, Signed<SkipVote>>>,
    /// Locked proposals other nodes attached to their skip votes, by digest.
    pub offered: BTreeMap<Digest, Proposal>,
    /// The negotiation of the current view (used when this node is its primary).
    pub negotiation: Negotiation,
    /// Appeals for this height, forwarded by home nodes, in arrival order.
    pub appeals: Vec<(Signed<Appeal>, NodeId)>,
    /// This node's participants whose appeals it forwarded at this height.
    pub forwarded: BTreeSet<ParticipantId>,
    /// Equivocation evidence not yet on the chain.
    pub evidence: BTreeSet<Evidence>,
    /// The height this node last asked a peer to sync from.
    pub sync_from: Option<u64>,
    /// Bid signatures already verified.
    pub verified: VerifiedBids,
    /// The participants and members' keys for `height`: the genesis with the changes of the
    /// blocks before it applied (spec A1-A5).
    pub registry: Registry,
    /// Registry changes this node sponsors, by the height whose batch will carry them.
    pub changes: BTreeMap<u64, Vec<SignedChange>>,
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

    /// Persists a vote (spec N3: before anything that depends on it is sent).
    fn persist_vote(&mut self, vote: &Signed<Vote>) {
        if !mutated!(self.ctx, VoteBeforePersist) {
            self.push(Effect::Persist(Record::Vote(vote.clone())));
        }
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
            receipted_nonces: BTreeMap::new(),
            pool: BTreeMap::new(),
            pool_steps: BTreeMap::new(),
            gate_closed: false,
            batches: BTreeMap::new(),
            early_batches: BTreeMap::new(),
            proposal: None,
            own: None,
            lock: None,
            votes: BTreeMap::new(),
            seen: BTreeMap::new(),
            voted: BTreeMap::new(),
            skips: BTreeMap::new(),
            offered: BTreeMap::new(),
            negotiation: Negotiation::default(),
            appeals: Vec::new(),
            forwarded: BTreeSet::new(),
            evidence: BTreeSet::new(),
            sync_from: None,
            verified: VerifiedBids::default(),
            registry: Registry::default(),
            changes: BTreeMap::new(),
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

    /// Applies the registry changes of a decided block (spec A5): they hold from the next
    /// height. Batches of the next height already held are kept only if their home's key
    /// still verifies them.
    fn apply_changes(&mut self, ctx: &Context, block: &Block) {
        if !block.body.process.has_changes() {
            return;
        }
        let before = self.registry.clone();
        let mut batches = Cow::Borrowed(&block.body.process.batches);
        if mutated!(ctx, IgnoreRevocation) {
            for b in batches.to_mut() {
                b.body
                    .changes
                    .retain(|c| !matches!(c.record.change, RegistryChange::Revoke(_)));
            }
        }
        self.registry.apply(
            &ctx.genesis,
            &ctx.chain_id,
            ctx.scheme.as_ref(),
            block.header.height,
            batches.iter(),
        );
        if self.registry != before {
            let g = self.registry.genesis(&ctx.genesis);
            for held in [&mut self.batches, &mut self.early_batches] {
                held.retain(|home, b| {
                    g.member(*home)
                        .is_some_and(|m| b.verify(ctx.scheme.as_ref(), &m.public_key).is_ok())
                });
            }
        }
    }

    /// Rebuilds the state after a restart from the stored chain (already audited) and the
    /// write-ahead log (spec N1, N3). Call `step(Input::Start)` next.
    pub fn restore<'b>(
        ctx: &Context,
        chain: impl IntoIterator<Item = &'b Block>,
        records: impl IntoIterator<Item = Record>,
    ) -> Self {
        let mut s = NodeState::new();
        for block in chain {
            advance_nonces(&mut s.committed_nonces, &block.body);
            s.apply_changes(ctx, block);
            s.height = block.header.height + 1;
            s.prev = Some(block.header.clone());
        }
        let effective = s.effective(ctx);
        let ctx = &*effective;
        for record in records {
            if record.height() < s.height {
                continue;
            }
            match record {
                Record::Bid {
                    bid,
                    receipt,
                    height,
                } => {
                    let n = s.receipted_nonces.entry(bid.body.participant).or_insert(0);
                    *n = (*n).max(bid.body.nonce);
                    s.pool_push(height, bid, receipt);
                }
                Record::Batch(b) => {
                    if b.body.home == ctx.me && b.body.height == s.height {
                        s.gate_closed = true;
                    }
                    s.store_batch(b);
                }
                Record::Vote(v) => {
                    let b = &v.body;
                    s.voted.insert((b.kind, b.view, b.revision), b.block);
                    // A proposal's stamp is logged as a vote but counts toward no certificate.
                    if b.kind != VoteKind::Propose {
                        s.votes
                            .entry((b.kind, b.view, b.revision, b.block))
                            .or_default()
                            .insert(b.voter, v.signature);
                    }
                }
                Record::Lock(..) if mutated!(ctx, ForgetLockOnRestart) => {}
                Record::Lock(certificate, proposal) => {
                    s.lock = Some(Lock {
                        certificate,
                        proposal: *proposal,
                    });
                }
                Record::Skip(v) => {
                    s.skips.entry(v.body.view).or_default().insert(ctx.me, v);
                }
                Record::SkipCertificate(c) => {
                    if c.view + 1 > s.view {
                        s.view = c.view + 1;
                        s.justification = Some(c);
                        s.negotiation = Negotiation::default();
                    }
                }
                Record::Appeal { appeal, via } => s.appeals.push((appeal, via)),
                Record::Change { change, height } => {
                    s.changes.entry(height).or_default().push(change);
                }
                Record::Objection(o, batch) => {
                    // The objector's batch stays held after its view ends, as it does in a
                    // running node's memory; the objection itself counts only in its view.
                    if let Some(b) = s.objectors_batch(ctx, &o, batch.as_ref()) {
                        s.batches.insert(b.body.home, b.clone());
                    }
                    if o.body.view == s.view {
                        s.accept_objection(ctx, o, batch);
                    }
                }
            }
        }
        s.forget_earlier_views();
        s
    }

    /// One transition: the effects of `input` at time `now`, in the order the runtime must
    /// execute them.
    pub fn step(&mut self, ctx: &Context, now: Timestamp, input: Input) -> Vec<Effect> {
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
        out.effects
    }

    fn primary(&self, ctx: &Context) -> NodeId {
        ctx.genesis.primary(self.height, self.view)
    }

    /// Bids of the batches this node holds for its height.
    fn held_bids(&self) -> u64 {
        self.batches
            .values()
            .map(|b| b.body.bids.len() as u64)
            .sum()
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
        let q = ctx.genesis.quorum();
        if mutated!(ctx, QuorumTooSmall) {
            q - 1
        } else {
            q
        }
    }

    fn member_key(ctx: &Context, id: NodeId) -> Option<PublicKey> {
        ctx.genesis.member(id).map(|m| m.public_key)
    }

    // ----- start, bids, gate (paper step 3; spec N1, N2) -----

    fn on_start(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        // A node on a new chain has nothing to catch up on (L4): it learns that it is behind,
        // if ever, from the first message of a later height.
        let restarted = *self != NodeState::new();
        if !self.gate_closed {
            out.push(Effect::SetTimer {
                timer: Timer::Gate(self.height),
                after_ms: ctx.genesis.timing.gate_after(self.height, out.now),
            });
        } else {
            self.arm_view_timer(out);
            if self.primary(ctx) == ctx.me && self.own.is_none() {
                self.arm_batch_wait(out);
            }
            self.send_skip_votes(out);
        }
        if restarted {
            out.push(Effect::Broadcast(Message::SyncRequest {
                from: self.height,
            }));
        }
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

    /// N1: a bid gets a receipt only after it is persisted, and only if it is valid, new and
    /// fits in a batch.
    fn on_bid(&mut self, out: &mut Out<'_>, sb: SignedBid) {
        let ctx = out.ctx;
        let bid = &sb.body;
        let id = bid.id();
        let verdict = (|| {
            if let Some(height) = self.registry.revoked_at(bid.participant) {
                return Err(BidError::Revoked {
                    participant: bid.participant,
                    height,
                });
            }
            let p = ctx
                .genesis
                .participant(bid.participant)
                .ok_or(BidError::UnknownParticipant(bid.participant))?;
            if p.home != ctx.me {
                return Err(BidError::WrongHome {
                    participant: p.id,
                    home: p.home,
                    this: ctx.me,
                });
            }
            // The period against the schedule: `height_for`, below.
            bid.check_rules(&ctx.genesis, &ctx.chain_id)?;
            sb.verify(ctx.scheme.as_ref(), &p.public_key)
                .map_err(|_| BidError::BadSignature(p.id))?;
            let last = self
                .receipted_nonces
                .get(&p.id)
                .copied()
                .max(self.committed_nonces.get(&p.id).copied());
            if last.is_some_and(|n| bid.nonce <= n) {
                return Err(BidError::ReplayedNonce {
                    participant: p.id,
                    nonce: bid.nonce,
                });
            }
            let height = self.height_for(ctx, bid, out.now)?;
            // D25: the batch is full at MAX_BATCH_BIDS bids, or when the bid's steps would
            // take it past this home node's share of the round.
            let steps = self.pool_steps.get(&height).copied().unwrap_or(0);
            if self
                .pool
                .get(&height)
                .is_some_and(|v| v.len() >= MAX_BATCH_BIDS)
                || steps + bid.steps.len() > ctx.genesis.batch_steps()
            {
                return Err(BidError::BatchFull { height });
            }
            Ok(height)
        })();
        match verdict {
            Err(reason) => out.push(Effect::Reply {
                to: bid.participant,
                reply: Reply::BidRejected { bid: id, reason },
            }),
            Ok(height) => {
                let receipt = out.sign(BidReceipt {
                    chain_id: ctx.chain_id,
                    bid: id,
                    participant: bid.participant,
                    home: ctx.me,
                    height,
                    received_at: out.now,
                });
                self.receipted_nonces.insert(bid.participant, bid.nonce);
                if let Some(p) = ctx.genesis.participant(bid.participant) {
                    self.verified.receipted(&sb, id, p.public_key);
                }
                self.pool_push(height, sb.clone(), receipt.clone());
                if !mutated!(ctx, ReceiptBeforePersist) {
                    out.push(Effect::Persist(Record::Bid {
                        bid: sb.clone(),
                        receipt: receipt.clone(),
                        height,
                    }));
                }
                out.push(Effect::Reply {
                    to: sb.body.participant,
                    reply: Reply::Receipt(receipt),
                });
            }
        }
    }

    /// A registry change this node sponsors (spec A5): accepted only if it holds against the
    /// registry with the changes already pending applied; logged before the answer, and
    /// carried by the next batch this node signs. A participant's key replacement, signed by
    /// the participant's current key, gets this home node's countersignature here (A3); an
    /// admission or revocation must come signed by the home node's key (its operator's).
    fn on_change(&mut self, out: &mut Out<'_>, mut change: SignedChange) {
        let ctx = out.ctx;
        let countersign = match &change.record.change {
            RegistryChange::ParticipantKey { participant, .. } => change
                .signatures
                .iter()
                .any(|s| s.by == Party::Participant(*participant)),
            RegistryChange::Admit(_) => mutated!(ctx, AdmitWithoutHomeSignature),
            _ => false,
        };
        if countersign && change.sponsor(&ctx.genesis) == Some(ctx.me) {
            change.sign(Party::Member(ctx.me), ctx.signer.as_ref());
        }
        let id = change.id();
        let height = if self.gate_closed {
            self.height + 1
        } else {
            self.height
        };
        let verdict = (|| {
            let sponsor = change.sponsor(&ctx.genesis).ok_or_else(|| {
                ChangeError::Unknown(format!("no member sponsors it: {}", change.describe()))
            })?;
            if sponsor != ctx.me {
                return Err(ChangeError::WrongCarrier {
                    sponsor,
                    carrier: ctx.me,
                });
            }
            let pending: Vec<&SignedChange> = self.changes.values().flatten().collect();
            if pending.contains(&&change) {
                return Err(ChangeError::Invalid("the change is already pending".into()));
            }
            let mut staged = self.registry.clone();
            for p in pending {
                // A pending change that no longer holds will be refused in its block; the
                // new one is judged as if the others took effect.
                let _ = staged.apply_one(
                    &ctx.genesis,
                    &ctx.chain_id,
                    ctx.scheme.as_ref(),
                    ctx.me,
                    self.height,
                    p,
                );
            }
            staged
                .check(
                    &ctx.genesis,
                    &ctx.chain_id,
                    ctx.scheme.as_ref(),
                    ctx.me,
                    &change,
                )
                .map(|_| ())
        })();
        match verdict {
            Err(e) => out.push(Effect::Answer(Reply::ChangeRefused {
                change: id,
                reason: e.to_string(),
            })),
            Ok(()) => {
                self.changes.entry(height).or_default().push(change.clone());
                out.push(Effect::Persist(Record::Change { change, height }));
                out.push(Effect::Answer(Reply::ChangeAccepted { change: id, height }));
            }
        }
    }

    /// The height whose batch takes a new bid (spec N1, N4): without a schedule the open
    /// height (the next once its gate closed); with one, the height that clears the bid's
    /// delivery period, if its gate is still open and it is at most `MAX_GATES_AHEAD` heights
    /// ahead. The bid rests in the pool until then.
    fn height_for(&self, ctx: &Context, bid: &Bid, now: Timestamp) -> Result<u64, BidError> {
        let open = if self.gate_closed {
            self.height + 1
        } else {
            self.height
        };
        let (Some(schedule), Some(height)) = (
            ctx.genesis.timing.schedule.as_ref(),
            bid.scheduled_height(&ctx.genesis)?,
        ) else {
            return Ok(open);
        };
        let gate = schedule.gate_of(height);
        if height < open || now >= gate {
            return Err(BidError::GateClosed { height, gate });
        }
        if height > open + MAX_GATES_AHEAD {
            return Err(BidError::TooFarAhead {
                height,
                open,
                ahead: MAX_GATES_AHEAD,
            });
        }
        Ok(height)
    }

    /// Whether `now` is more than `MAX_CLOCK_SKEW_MS` before this height's scheduled gate.
    fn before_gate(&self, ctx: &Context, now: Timestamp) -> bool {
        ctx.genesis
            .timing
            .schedule
            .as_ref()
            .is_some_and(|s| now.0.saturating_add(MAX_CLOCK_SKEW_MS) < s.gate_of(self.height).0)
    }

    fn on_timer(&mut self, out: &mut Out<'_>, timer: Timer) {
        match timer {
            Timer::Gate(h) if h == self.height && !self.gate_closed => {
                self.close_gate(out);
                if self.primary(out.ctx) == out.ctx.me && self.own.is_none() {
                    if self.batches.len() == out.ctx.genesis.n() {
                        self.propose(out, 0);
                    } else {
                        self.arm_batch_wait(out);
                    }
                }
            }
            Timer::BatchWait(h)
                if h == self.height
                    && self.primary(out.ctx) == out.ctx.me
                    && self.own.is_none() =>
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
                    && self.own.as_ref().is_some_and(|p| p.round() == (v, r))
                    && self.revision_pending() =>
            {
                self.propose(out, r + 1);
            }
            _ => {}
        }
    }

    /// Whether the primary accepted objections its current proposal does not carry yet: its
    /// proposal records every objection accepted before it (the plan's), so any beyond those.
    fn revision_pending(&self) -> bool {
        self.own
            .as_ref()
            .is_some_and(|p| self.negotiation.objections.len() > p.body.process.objections.len())
    }

    /// Whether every other member answered the primary's current proposal: endorsed it, or
    /// objected to it with an objection the primary accepted.
    fn all_answered(&self, ctx: &Context) -> bool {
        let Some(p) = &self.own else {
            return false;
        };
        let (view, revision) = p.round();
        let endorsed = self
            .votes
            .get(&(VoteKind::Endorse, view, revision, p.stamp.body.block));
        ctx.genesis
            .members
            .iter()
            .filter(|m| m.id != ctx.me)
            .all(|m| {
                endorsed.is_some_and(|e| e.contains_key(&m.id))
                    || self.negotiation.answered.contains(&m.id)
            })
    }

    /// Negotiation (spec 2.6): the primary revises once every other member answered its
    /// current proposal, so that one revision carries every objection to it; a member that
    /// does not answer is waited for until `Timer::Revise`.
    fn revise_when_answered(&mut self, out: &mut Out<'_>) {
        if self.revision_pending() && self.all_answered(out.ctx) {
            if let Some(r) = self.own.as_ref().map(|p| p.round().1) {
                self.propose(out, r + 1);
            }
        }
    }

    /// Gate closure: sign and send this node's batch for the height (spec N2).
    fn close_gate(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        // In the order received (a bid carried from a batch that missed its block was
        // received before the height's own), the earliest first if the batch is full.
        let mut pending: Vec<&(SignedBid, SignedReceipt)> =
            self.pool.get(&self.height).into_iter().flatten().collect();
        pending.sort_by_key(|(_, r)| r.body.received_at);
        pending.truncate(MAX_BATCH_BIDS);
        // D25: at most this home node's share of the round's steps (carried bids may exceed
        // it); the rest wait for the next batch (N1).
        let mut steps = 0;
        let fits = pending
            .iter()
            .take_while(|(b, _)| {
                steps += b.body.steps.len();
                steps <= ctx.genesis.batch_steps()
            })
            .count();
        pending.truncate(fits);
        let batch = out.sign(BidBatch {
            chain_id: ctx.chain_id,
            height: self.height,
            home: ctx.me,
            bids: pending.iter().map(|(b, _)| b.clone()).collect(),
            received: pending.iter().map(|(_, r)| r.body.received_at).collect(),
            changes: self
                .changes
                .get(&self.height)
                .map(|c| c.iter().take(MAX_BATCH_CHANGES).cloned().collect())
                .unwrap_or_default(),
        });
        self.gate_closed = true;
        self.batches.insert(ctx.me, batch.clone());
        // The gate may close before its timer fires (a proposal arrived first).
        out.push(Effect::CancelTimer(Timer::Gate(self.height)));
        out.push(Effect::Persist(Record::Batch(batch.clone())));
        out.push(Effect::Broadcast(Message::Batch(batch)));
        self.arm_view_timer(out);
    }

    /// Adds a receipted bid to the pool of `height`.
    fn pool_push(&mut self, height: u64, bid: SignedBid, receipt: SignedReceipt) {
        *self.pool_steps.entry(height).or_default() += bid.body.steps.len();
        self.pool.entry(height).or_default().push((bid, receipt));
    }

    /// Takes the pool of `height`.
    fn pool_take(&mut self, height: u64) -> Vec<(SignedBid, SignedReceipt)> {
        self.pool_steps.remove(&height);
        self.pool.remove(&height).unwrap_or_default()
    }

    fn store_batch(&mut self, b: SignedBatch) {
        let home = b.body.home;
        if b.body.height == self.height {
            self.batches.entry(home).or_insert(b);
        } else if b.body.height == self.height + 1 {
            self.early_batches.entry(home).or_insert(b);
        }
    }

    // ----- messages -----

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

    /// Asks `peer` for the blocks from this node's height on, once per height (spec L4).
    fn request_sync(&mut self, out: &mut Out<'_>, peer: NodeId) {
        if self.sync_from != Some(self.height) && peer != out.ctx.me {
            self.sync_from = Some(self.height);
            out.push(Effect::Send {
                to: peer,
                msg: Message::SyncRequest { from: self.height },
            });
        }
    }

    /// Where a message for `height` stands: `true` to process it now.
    fn current(&mut self, out: &mut Out<'_>, from: NodeId, height: u64) -> bool {
        if height > self.height {
            self.request_sync(out, from);
        }
        height == self.height
    }

    /// N2: every member keeps every home node's batch for the height.
    fn on_batch(&mut self, out: &mut Out<'_>, from: NodeId, b: SignedBatch) {
        if b.body.home != from {
            return;
        }
        if b.body.height > self.height + 1 {
            self.request_sync(out, from);
            return;
        }
        let current = b.body.height == self.height;
        if self.keep_batch(out, b) {
            // The round just grew: the view gets the new batch's allowance, measured from its
            // arrival, until this node holds a proposal or gave up on the view (spec 2.7); the
            // view-0 primary still waiting for batches waits again likewise (spec 2.5).
            let grew = current && self.gate_closed;
            if grew && self.proposal.is_none() && !self.skipped(out.ctx, self.view) {
                self.arm_view_timer(out);
            }
            self.propose_when_batches_are_in(out);
            if grew && self.view == 0 && self.own.is_none() && self.primary(out.ctx) == out.ctx.me {
                self.arm_batch_wait(out);
            }
        }
    }

    /// Keeps a home node's batch for this height or the next, if it is validly signed and the
    /// first from its home; persisted before it counts (spec N2, N3). `true` if it is new.
    fn keep_batch(&mut self, out: &mut Out<'_>, b: SignedBatch) -> bool {
        let ctx = out.ctx;
        let body = &b.body;
        let Some(key) = Self::member_key(ctx, body.home) else {
            return false;
        };
        if body.chain_id != ctx.chain_id
            || body.height < self.height
            || body.height > self.height + 1
            || body.malformed(&ctx.genesis).is_some()
        {
            return false;
        }
        let known = if body.height == self.height {
            &self.batches
        } else {
            &self.early_batches
        };
        if known.contains_key(&body.home) || b.verify(ctx.scheme.as_ref(), &key).is_err() {
            return false;
        }
        out.push(Effect::Persist(Record::Batch(b.clone())));
        self.store_batch(b);
        true
    }

    /// The primary that has not proposed yet does so once it holds what it waits for: every
    /// batch in view 0, every batch a skip voter reported in a later view.
    fn propose_when_batches_are_in(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        if self.gate_closed
            && self.primary(ctx) == ctx.me
            && self.own.is_none()
            && (self.view > 0 || self.batches.len() == ctx.genesis.n())
        {
            self.propose(out, 0);
        }
    }

    /// This node's batches of the given homes, to travel with a skip vote or certificate.
    fn held_batches(&self, homes: &[NodeId]) -> Vec<SignedBatch> {
        homes
            .iter()
            .filter_map(|h| self.batches.get(h).cloned())
            .collect()
    }

    /// S4: remembers the first vote of each voter in each slot, and turns a second, different
    /// one into evidence anyone can verify.
    fn note_vote(&mut self, out: &mut Out<'_>, v: &Signed<Vote>) {
        let b = &v.body;
        let key = (b.voter, b.kind, b.view, b.revision);
        match self.seen.get(&key) {
            None => {
                self.seen.insert(key, v.clone());
            }
            Some(first)
                if first.body.block != b.block && !mutated!(out.ctx, UnrecordedEquivocation) =>
            {
                let e = Evidence {
                    first: first.clone(),
                    second: v.clone(),
                };
                if self.evidence.len() < MAX_EVIDENCE && self.evidence.insert(e.clone()) {
                    out.push(Effect::Evidence(Box::new(e)));
                }
            }
            Some(_) => {}
        }
    }

    // ----- proposing (paper steps 3-4; spec V1, V2, S2) -----

    /// The proposal this node is locked on, if it holds it.
    fn locked_proposal(&self) -> Option<Box<Proposal>> {
        self.lock.as_ref().map(|l| Box::new(l.proposal.clone()))
    }

    /// The body the rules give for this view and revision, from everything this node holds.
    fn plan(&mut self, ctx: &Context, revision: u32) -> BlockPlan {
        let mut batches: Vec<SignedBatch> = ctx
            .genesis
            .members
            .iter()
            .filter_map(|m| self.batches.get(&m.id).cloned())
            .collect();
        if self.view > 0 && mutated!(ctx, DropBatchOnSkip) {
            batches.retain(|b| b.body.home == ctx.me);
        }
        // V5: appeals are resolved in arrival order against the batches and earlier upheld
        // appeals, as every verifier and the audit resolve them; an upheld appeal names the
        // revision that first clears it. Appeals recorded in earlier revisions are resolved
        // again against this revision's batches: an omitted bid upheld while its home's batch
        // was missing is included by the batch once a missing-batch objection brings it in,
        // and its appeal is then rejected as already included. New appeals are recorded while
        // revisions remain below `max_revisions` (L3).
        let mut included: BTreeSet<Digest> = batches
            .iter()
            .flat_map(|b| b.body.bids.iter().map(|sb| sb.body.id()))
            .collect();
        let (height, committed) = (self.height, &self.committed_nonces);
        let mut resolve = |appeal: &Signed<Appeal>, earlier: Option<AppealResolution>| {
            let resolution = match resolve_appeal(
                &ctx.genesis,
                &ctx.chain_id,
                ctx.scheme.as_ref(),
                height,
                &included,
                committed,
                appeal,
            ) {
                AppealResolution::Upheld { .. } => match earlier {
                    Some(AppealResolution::Upheld { revision: first }) => {
                        AppealResolution::Upheld { revision: first }
                    }
                    _ => AppealResolution::Upheld { revision },
                },
                other => other,
            };
            let resolution = match earlier {
                Some(kept) if mutated!(ctx, StaleAppealResolution) => kept,
                _ => resolution,
            };
            if let (AppealResolution::Upheld { .. }, AppealClaim::Omitted { bid, .. }) =
                (&resolution, &appeal.body.claim)
            {
                included.insert(bid.body.id());
            }
            resolution
        };
        for a in &mut self.negotiation.appeals {
            a.resolution = resolve(&a.appeal, Some(a.resolution));
        }
        if revision < ctx.genesis.max_revisions {
            for (appeal, via) in &self.appeals {
                if self.negotiation.appeals.len() >= MAX_APPEALS
                    || self.negotiation.appeals.iter().any(|r| r.appeal == *appeal)
                {
                    continue;
                }
                let resolution = resolve(appeal, None);
                self.negotiation.appeals.push(AppealRecord {
                    appeal: appeal.clone(),
                    via: *via,
                    resolution,
                });
            }
        }
        BlockPlan {
            height: self.height,
            view: self.view,
            revision,
            batches,
            appeals: self.negotiation.appeals.clone(),
            objections: self.negotiation.objections.clone(),
            cuts: self.negotiation.cuts.clone(),
            skip_certificate: if self.view > 0 {
                self.justification.clone()
            } else {
                None
            },
            evidence: self.evidence.iter().take(MAX_EVIDENCE).cloned().collect(),
        }
    }

    /// The primary builds, signs and sends its proposal for (view, revision), then handles it
    /// as every other node does.
    fn propose(&mut self, out: &mut Out<'_>, revision: u32) {
        let ctx = out.ctx;
        if self.primary(ctx) != ctx.me {
            return;
        }
        if !self.gate_closed {
            self.close_gate(out);
        }
        let locked = self
            .justification
            .as_ref()
            .filter(|_| self.view > 0 && !mutated!(ctx, NewPrimaryIgnoresLock))
            .and_then(|j| j.highest_lock())
            .map(|l| l.block);
        // S2: a primary locked in its view proposes nothing new in it (an endorsement quorum
        // may already be committing the block), nor a revision below one it has signed (a
        // restarted primary has no proposal in memory, only its stamps in the log).
        if (self.locked_in_view() && !mutated!(ctx, ReviseAfterLock))
            || self.signed_later_revision(VoteKind::Propose, self.view, revision)
        {
            return;
        }
        let (header, body, revision) = match locked {
            // S2: after a skip, a block that may have been committed is proposed again as it is.
            Some(digest) => {
                let held = self
                    .lock
                    .as_ref()
                    .filter(|l| l.certificate.block == digest)
                    .map(|l| &l.proposal)
                    .or_else(|| self.offered.get(&digest));
                let Some(p) = held else {
                    return;
                };
                (p.header.clone(), p.body.clone(), 0)
            }
            None => {
                // N2: a block built after a skip carries every batch a skip voter reported;
                // wait until they are all here (they travel with the votes).
                let reported = self
                    .justification
                    .as_ref()
                    .filter(|_| self.view > 0)
                    .map(SkipCertificate::reported_homes)
                    .unwrap_or_default();
                if reported.iter().any(|h| !self.batches.contains_key(h)) {
                    return;
                }
                let plan = self.plan(ctx, revision);
                let rules = ContentRules {
                    genesis: &ctx.genesis,
                    chain_id: ctx.chain_id,
                    scheme: ctx.scheme.as_ref(),
                    clearing: ctx.clearing,
                    committed: &self.committed_nonces,
                };
                let mut check = Memo {
                    memo: &mut self.verified,
                    scheme: ctx.scheme.as_ref(),
                };
                let Ok(body) = rules.build_body(plan, &mut check) else {
                    return;
                };
                let prev_ts = self.prev.as_ref().map_or(Timestamp(0), |p| p.timestamp);
                let header = BlockHeader {
                    version: BLOCK_VERSION,
                    chain_id: ctx.chain_id,
                    height: self.height,
                    view: self.view,
                    revision,
                    previous: self.prev_digest(ctx),
                    trades_root: body.trades_root(),
                    process_hash: body.process_hash(),
                    timestamp: out.now.max(prev_ts),
                    primary: ctx.me,
                };
                (header, Arc::new(body), revision)
            }
        };
        let digest = header.digest();
        let slot = (VoteKind::Propose, self.view, revision);
        if self.voted.get(&slot).is_some_and(|d| *d != digest) {
            return;
        }
        let stamp = out.sign(Vote {
            kind: VoteKind::Propose,
            chain_id: ctx.chain_id,
            height: self.height,
            view: self.view,
            revision,
            block: digest,
            voter: ctx.me,
        });
        self.voted.insert(slot, digest);
        out.persist_vote(&stamp);
        let proposal = Proposal {
            stamp,
            header,
            body,
            justification: if self.view > 0 {
                self.justification.clone()
            } else {
                None
            },
        };
        out.push(Effect::Broadcast(Message::Proposal(Box::new(
            proposal.clone(),
        ))));
        self.own = Some(proposal.clone());
        self.negotiation.answered.clear();
        out.push(Effect::CancelTimer(Timer::BatchWait(self.height)));
        self.on_proposal(out, ctx.me, proposal);
    }

    // ----- verifying and endorsing (paper step 4, Fig. 5; spec V1-V9, S2, S3) -----

    fn on_proposal(&mut self, out: &mut Out<'_>, from: NodeId, p: Proposal) {
        let ctx = out.ctx;
        let stamp = p.stamp.body.clone();
        if stamp.kind != VoteKind::Propose || stamp.chain_id != ctx.chain_id {
            return;
        }
        if !self.current(out, from, stamp.height) {
            return;
        }
        let (view, revision) = p.round();
        // V1: only the rotation's primary for the round may propose.
        if stamp.voter != ctx.genesis.primary(stamp.height, view)
            && !mutated!(ctx, AcceptWrongPrimary)
        {
            return;
        }
        let Some(key) = Self::member_key(ctx, stamp.voter) else {
            return;
        };
        if p.stamp.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        // A node acts on nothing of a view it has left (spec 2.7).
        if view < self.view {
            return;
        }
        self.note_vote(out, &p.stamp);
        // L1: a proposal for a later view carries the skip certificate that opened it.
        if view > 0 {
            let Some(cert) = p.justification.as_ref() else {
                return;
            };
            let known = self.view == view && self.justification.as_ref() == Some(cert);
            if !known {
                if cert
                    .verify(
                        &ctx.genesis,
                        ctx.chain_id,
                        ctx.scheme.as_ref(),
                        stamp.height,
                        view - 1,
                    )
                    .is_err()
                    && !mutated!(ctx, SkipWithoutCertificate)
                {
                    return;
                }
                self.enter_view(out, view, cert.clone());
            }
        }
        if view != self.view || self.skipped(ctx, view) {
            return;
        }
        // N4: under a gate schedule, a proposal long before the gate (by this node's clock)
        // must not close it: the auction stays open for every participant until its gate.
        if !self.gate_closed && self.before_gate(ctx, out.now) {
            return;
        }
        if !self.gate_closed {
            self.close_gate(out);
        }
        if self
            .proposal
            .as_ref()
            .is_some_and(|cur| cur.round() >= (view, revision))
            || self.signed_later_revision(VoteKind::Endorse, view, revision)
        {
            return;
        }
        let digest = p.header.digest();
        if stamp.block != digest {
            return;
        }
        match self.check_proposal(ctx, &p) {
            Err(detail) => {
                self.object(out, &p, ObjectionReason::Invalid { detail }, None);
                return;
            }
            Ok(Some((reason, batch))) => {
                self.object(out, &p, reason, batch);
                return;
            }
            Ok(None) => {}
        }
        // S2: once locked in this view, never endorse another block in it.
        if let Some(lock) = &self.lock {
            let c = &lock.certificate;
            if c.view == view && c.block != digest && !mutated!(ctx, IgnoreLock) {
                return;
            }
        }
        self.proposal = Some(p.clone());
        self.arm_view_timer(out);
        if !self.cast_vote(out, VoteKind::Endorse, view, revision, digest) {
            return;
        }
        // Votes for this round may have arrived before the proposal.
        for kind in [VoteKind::Endorse, VoteKind::Commit] {
            self.try_certificate(out, kind, view, revision, digest);
        }
    }

    /// Whether this node is locked on a block of its current view: as that view's primary it
    /// then proposes nothing new in it (spec 2.6, S2).
    fn locked_in_view(&self) -> bool {
        self.lock
            .as_ref()
            .is_some_and(|l| l.certificate.view == self.view)
    }

    /// Whether this node has signed a vote of `kind` in a later revision of `view` than
    /// `revision`: it then acts on nothing of `revision` (spec 2.6). A running node knows it
    /// from the proposal it holds; a restarted one from the votes in its log.
    fn signed_later_revision(&self, kind: VoteKind, view: u32, revision: u32) -> bool {
        revision < u32::MAX
            && self
                .voted
                .range((kind, view, revision + 1)..=(kind, view, u32::MAX))
                .next()
                .is_some()
    }

    /// Checks a proposal for the current round: `Err` if it is invalid, `Ok(Some(..))` with an
    /// objection this node must raise (its batch is missing, or its grid is insecure), or
    /// `Ok(None)` if it can be endorsed.
    #[allow(clippy::type_complexity)]
    fn check_proposal(
        &mut self,
        ctx: &Context,
        p: &Proposal,
    ) -> Result<Option<(ObjectionReason, Option<SignedBatch>)>, String> {
        let (view, revision) = p.round();
        let h = &p.header;
        // The seeded bug checks the header as if it named the rotation's primary.
        let as_rotation = mutated!(ctx, AcceptWrongPrimary).then(|| BlockHeader {
            primary: ctx.genesis.primary(h.height, h.view),
            ..h.clone()
        });
        check_header(
            &ctx.genesis,
            ctx.chain_id,
            ctx.scheme.as_ref(),
            self.prev.as_ref(),
            as_rotation.as_ref().unwrap_or(h),
            &p.body,
        )
        .map_err(|e| e.to_string())?;
        let locked = p
            .justification
            .as_ref()
            .filter(|_| !mutated!(ctx, NewPrimaryIgnoresLock))
            .and_then(|j| j.highest_lock());
        if let Some(lock) = locked {
            // S2: the new primary must propose the highest locked block, unchanged; a quorum
            // with every touched area already verified it.
            return if lock.block == h.digest() {
                Ok(None)
            } else {
                Err(format!(
                    "the skip certificate locks block {:?}, the proposal is {:?}",
                    lock.block,
                    h.digest()
                ))
            };
        }
        if h.view != view
            || h.revision != revision
            || (h.primary != p.stamp.body.voter && !mutated!(ctx, AcceptWrongPrimary))
        {
            return Err("header round or primary differs from the proposal's".into());
        }
        if p.body.process.skip_certificate != p.justification {
            return Err("the body's skip certificate is not the proposal's justification".into());
        }
        let check_clearing = !mutated!(ctx, SkipClearingCheck);
        let mut check = Memo {
            memo: &mut self.verified,
            scheme: ctx.scheme.as_ref(),
        };
        let rules = ContentRules {
            genesis: &ctx.genesis,
            chain_id: ctx.chain_id,
            scheme: ctx.scheme.as_ref(),
            clearing: ctx.clearing,
            committed: &self.committed_nonces,
        };
        // V7, Fig. 5: this node's private security check of its own area, on the selection
        // the content rules made (its verdict counts only if the checks below pass).
        let ignore_security = mutated!(ctx, IgnoreOwnSecurity);
        let violated = rules
            .verify_body_then(
                h.height,
                revision,
                &p.body,
                &mut check,
                check_clearing,
                |input, cleared| {
                    if ignore_security {
                        Vec::new()
                    } else {
                        ctx.security.check(input, cleared)
                    }
                },
            )
            .map_err(|e| e.to_string())?;
        // N2: after a skip, every batch a skip voter reported is carried.
        if !mutated!(ctx, DropBatchOnSkip) {
            check_skip_batches(&p.body.process).map_err(|e| e.to_string())?;
        }
        // V4: this node's own batch is in the block unchanged, unless its area sat out the view.
        let me = ctx.genesis.member(ctx.me).expect("a node is a member");
        let unavailable = unavailable_areas(&ctx.genesis, p.body.process.skip_certificate.as_ref());
        if let Some(mine) = self.batches.get(&ctx.me) {
            let theirs = p
                .body
                .process
                .batches
                .iter()
                .find(|b| b.body.home == ctx.me);
            if theirs != Some(mine) && !unavailable.contains(&me.area) {
                return Ok(Some((
                    ObjectionReason::MissingBatch {
                        batch: mine.body_digest(),
                    },
                    Some(mine.clone()),
                )));
            }
        }
        let cuts: Vec<Cut> = violated
            .into_iter()
            .filter(|c| !p.body.process.clearing.cuts.contains(c))
            .collect();
        if cuts.is_empty() {
            Ok(None)
        } else {
            Ok(Some((ObjectionReason::Security { cuts }, None)))
        }
    }

    fn object(
        &mut self,
        out: &mut Out<'_>,
        p: &Proposal,
        reason: ObjectionReason,
        batch: Option<SignedBatch>,
    ) {
        let ctx = out.ctx;
        let (view, revision) = p.round();
        let o = out.sign(Objection {
            chain_id: ctx.chain_id,
            height: self.height,
            view,
            revision,
            block: p.stamp.body.block,
            objector: ctx.me,
            reason,
        });
        let proposer = p.stamp.body.voter;
        if proposer == ctx.me {
            self.on_objection(out, ctx.me, o, batch);
        } else {
            out.push(Effect::Send {
                to: proposer,
                msg: Message::Objection(Box::new(o), batch.map(Box::new)),
            });
        }
    }

    // ----- negotiation at the primary (Fig. 5; spec V8, L3) -----

    fn on_objection(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        o: Signed<Objection>,
        batch: Option<SignedBatch>,
    ) {
        let ctx = out.ctx;
        let b = &o.body;
        if b.objector != from || b.chain_id != ctx.chain_id || b.height != self.height {
            return;
        }
        let Some(key) = Self::member_key(ctx, from) else {
            return;
        };
        if o.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        let Some(current) = &self.own else {
            return;
        };
        let fresh = current.header.view == current.round().0;
        let (view, revision) = current.round();
        // An objection to the current revision, or to an earlier revision of the view that
        // this primary proposed (it was revised before the objection arrived): its cuts and
        // batch are as valid against the current revision, so it is answered, not dropped
        // (spec 2.6, L5).
        if view != self.view
            || b.view != view
            || b.revision > revision
            || (b.revision < revision && mutated!(ctx, DropLateObjection))
            || self.voted.get(&(VoteKind::Propose, view, b.revision)) != Some(&b.block)
            || !fresh
            || (self.locked_in_view() && !mutated!(ctx, ReviseAfterLock))
            || revision >= ctx.genesis.max_revisions + MAX_FALLBACK_LEVELS
            || self.negotiation.objections.len() >= MAX_OBJECTIONS
            || self.negotiation.bytes + encoded_len(&o) > MAX_NEGOTIATION_BYTES
        {
            return;
        }
        // The wait for answers starts at the first objection accepted since the revision.
        let waiting = self.revision_pending();
        if self.accept_objection(ctx, o.clone(), batch.clone()) {
            if b.revision == revision {
                self.negotiation.answered.insert(from);
            }
            out.push(Effect::Persist(Record::Objection(o, batch)));
            if !waiting && !self.all_answered(ctx) {
                out.push(Effect::SetTimer {
                    timer: Timer::Revise(self.height, view, revision),
                    after_ms: ctx.genesis.timing.batch_wait_ms,
                });
            }
        }
        // This answer may be the last the pending revision waited for.
        self.revise_when_answered(out);
    }

    /// The batch a `MissingBatch` objection carries, if it is the one the objection names:
    /// the objector's own, for this height.
    fn objectors_batch<'b>(
        &self,
        ctx: &Context,
        o: &Signed<Objection>,
        batch: Option<&'b SignedBatch>,
    ) -> Option<&'b SignedBatch> {
        let ObjectionReason::MissingBatch { batch: digest } = &o.body.reason else {
            return None;
        };
        // V10: only the objector's own batch of this height; a member cannot move the primary
        // with another home's batch or a batch of another height.
        batch.filter(|b| {
            b.body_digest() == *digest
                && ((b.body.home == o.body.objector && b.body.height == self.height)
                    || mutated!(ctx, ForeignObjectionBatch))
        })
    }

    /// Adds what an objection asks for to the negotiation: new cuts, or the objector's own
    /// batch. Returns whether anything changed.
    fn accept_objection(
        &mut self,
        ctx: &Context,
        o: Signed<Objection>,
        batch: Option<SignedBatch>,
    ) -> bool {
        // A copy of an objection already accepted (the network duplicates) adds nothing, even
        // while the revision that will carry it is still awaited.
        if self.negotiation.objections.contains(&o) {
            return false;
        }
        let changed = match &o.body.reason {
            ObjectionReason::Security { cuts } => {
                let new: Vec<Cut> = cuts
                    .iter()
                    .filter(|c| !self.negotiation.cuts.contains(c))
                    .cloned()
                    .collect();
                let any = !new.is_empty();
                self.negotiation.cuts.extend(new);
                any
            }
            ObjectionReason::MissingBatch { .. } => {
                match self.objectors_batch(ctx, &o, batch.as_ref()) {
                    Some(b) => {
                        let b = b.clone();
                        // New to the primary, or held but missing from its current proposal
                        // (the batch arrived after it proposed): either way the next revision
                        // carries it.
                        let carried = self
                            .own
                            .as_ref()
                            .is_some_and(|p| p.body.process.batches.contains(&b));
                        let changed = self.batches.get(&b.body.home) != Some(&b) || !carried;
                        self.batches.insert(b.body.home, b);
                        changed
                    }
                    None => false,
                }
            }
            ObjectionReason::Invalid { .. } => false,
        };
        if changed {
            self.negotiation.bytes += encoded_len(&o);
            self.negotiation.objections.push(o);
        }
        changed
    }

    // ----- votes and certificates (spec S1-S3, D11, D12) -----

    fn on_vote(&mut self, out: &mut Out<'_>, from: NodeId, v: Signed<Vote>) {
        if v.body.voter != from {
            return;
        }
        self.accept_vote(out, from, v);
    }

    /// D11: the round's primary relays the endorsement certificate it formed; each of its
    /// votes is checked and counted as if it had come from its voter, so the node forms the
    /// same certificate itself (and notes any equivocation among the votes, S4).
    fn on_endorsed(&mut self, out: &mut Out<'_>, from: NodeId, cert: QuorumCertificate) {
        if cert.kind != VoteKind::Endorse {
            return;
        }
        for v in cert.signed_votes(out.ctx.chain_id) {
            self.accept_vote(out, from, v);
        }
    }

    /// Checks a vote (its chain, height, voter and signature) and counts it; `from` is the
    /// peer it came from (its voter, or the primary relaying a certificate).
    fn accept_vote(&mut self, out: &mut Out<'_>, from: NodeId, v: Signed<Vote>) {
        let ctx = out.ctx;
        let b = &v.body;
        if b.chain_id != ctx.chain_id || b.kind == VoteKind::Propose {
            return;
        }
        if !self.current(out, from, b.height) || b.view < self.view {
            return;
        }
        let Some(key) = Self::member_key(ctx, b.voter) else {
            return;
        };
        if v.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        self.note_vote(out, &v);
        let first = self.seen.get(&(b.voter, b.kind, b.view, b.revision));
        if first.is_some_and(|f| f.body.block != b.block) {
            return;
        }
        self.count_vote(out, &v);
    }

    fn count_vote(&mut self, out: &mut Out<'_>, v: &Signed<Vote>) {
        let b = &v.body;
        self.votes
            .entry((b.kind, b.view, b.revision, b.block))
            .or_default()
            .insert(b.voter, v.signature);
        self.try_certificate(out, b.kind, b.view, b.revision, b.block);
        if b.kind == VoteKind::Endorse {
            self.revise_when_answered(out);
        }
    }

    /// The proposal of round (view, revision) with this digest, if this node holds it.
    fn held(&self, view: u32, revision: u32, digest: Digest) -> Option<&Proposal> {
        let cur = self
            .proposal
            .as_ref()
            .filter(|p| p.round() == (view, revision) && p.stamp.body.block == digest);
        cur.or_else(|| {
            self.lock
                .as_ref()
                .filter(|l| {
                    l.certificate.round() == (view, revision) && l.certificate.block == digest
                })
                .map(|l| &l.proposal)
        })
    }

    /// D11, D12, V9: a quorum of votes that includes every member of every touched area.
    fn try_certificate(
        &mut self,
        out: &mut Out<'_>,
        kind: VoteKind,
        view: u32,
        revision: u32,
        digest: Digest,
    ) {
        let ctx = out.ctx;
        let Some(p) = self.held(view, revision, digest) else {
            return;
        };
        let Some(signers) = self.votes.get(&(kind, view, revision, digest)) else {
            return;
        };
        if signers.len() < Self::quorum(ctx) {
            return;
        }
        // A vote beyond the quorum changes nothing once the node locked: spare the copy of
        // the proposal.
        if kind == VoteKind::Endorse && !self.would_lock(ctx, view, revision) {
            return;
        }
        if !mutated!(ctx, CommitWithoutTouchedArea)
            && !p
                .body
                .required_signers(&ctx.genesis)
                .iter()
                .all(|n| signers.contains_key(n))
        {
            return;
        }
        let certificate = QuorumCertificate {
            kind,
            height: self.height,
            view,
            revision,
            block: digest,
            signatures: signers
                .iter()
                .map(|(voter, signature)| VoteSignature {
                    voter: *voter,
                    signature: *signature,
                })
                .collect(),
        };
        let p = p.clone();
        match kind {
            VoteKind::Endorse => self.lock_on(out, certificate, p),
            VoteKind::Commit => {
                self.decide(out, p.header, Arc::unwrap_or_clone(p.body), certificate)
            }
            VoteKind::Propose => {}
        }
    }

    /// Whether an endorsement certificate of round (view, revision) would lock this node: it
    /// has not skipped the view, holds no lock of that round or later, and has not voted to
    /// commit in the round.
    fn would_lock(&self, ctx: &Context, view: u32, revision: u32) -> bool {
        !self.skipped(ctx, view)
            && self
                .lock
                .as_ref()
                .is_none_or(|l| l.certificate.round() < (view, revision))
            && !self.voted.contains_key(&(VoteKind::Commit, view, revision))
    }

    /// S2: with an endorsement certificate, lock on the block and vote to commit it.
    fn lock_on(&mut self, out: &mut Out<'_>, certificate: QuorumCertificate, p: Proposal) {
        let ctx = out.ctx;
        let (view, revision) = certificate.round();
        if !self.would_lock(ctx, view, revision) {
            return;
        }
        let digest = certificate.block;
        out.push(Effect::Persist(Record::Lock(
            certificate.clone(),
            Box::new(p.clone()),
        )));
        // The primary gathered the endorsements; it hands the certificate to every member so
        // that they lock too (paper step 4: the primary distributes the verified result).
        if ctx.genesis.primary(self.height, view) == ctx.me {
            out.push(Effect::Broadcast(Message::Endorsed(Box::new(
                certificate.clone(),
            ))));
        }
        self.lock = Some(Lock {
            certificate,
            proposal: p,
        });
        self.cast_vote(out, VoteKind::Commit, view, revision, digest);
    }

    /// S3, N3: signs this node's one vote of `kind` in the round, logs it, sends it to the
    /// round's primary and counts it. Returns false if the node already voted in that slot.
    fn cast_vote(
        &mut self,
        out: &mut Out<'_>,
        kind: VoteKind,
        view: u32,
        revision: u32,
        block: Digest,
    ) -> bool {
        let slot = (kind, view, revision);
        if self.voted.contains_key(&slot) {
            return false;
        }
        let vote = out.sign(Vote {
            kind,
            chain_id: out.ctx.chain_id,
            height: self.height,
            view,
            revision,
            block,
            voter: out.ctx.me,
        });
        self.voted.insert(slot, block);
        out.persist_vote(&vote);
        // Verification results go to the round's primary (paper steps 3-4), which gathers the
        // certificates and hands them on (`Endorsed`, `Decided`).
        let primary = out.ctx.genesis.primary(self.height, view);
        if primary != out.ctx.me {
            out.push(Effect::Send {
                to: primary,
                msg: Message::Vote(vote.clone()),
            });
        }
        self.count_vote(out, &vote);
        true
    }

    /// S1: a commit certificate decides the block; it is final.
    fn decide(
        &mut self,
        out: &mut Out<'_>,
        header: BlockHeader,
        body: BlockBody,
        certificate: QuorumCertificate,
    ) {
        let ctx = out.ctx;
        let proposer = ctx.genesis.primary(self.height, certificate.view) == ctx.me;
        let block = Block {
            header,
            body,
            certificate,
        };
        if proposer {
            out.push(Effect::Broadcast(Message::Decided(Box::new(block.clone()))));
        }
        self.after_decide(out, block);
    }

    /// Everything a decided block changes: it is stored, participants learn their results,
    /// receipted bids it does not carry move to the next batch (spec N1), and the next
    /// height opens.
    fn after_decide(&mut self, out: &mut Out<'_>, block: Block) {
        let ctx = out.ctx;
        let h = block.header.height;
        let old_view = self.view;
        advance_nonces(&mut self.committed_nonces, &block.body);
        let on_chain: BTreeSet<Digest> = block
            .body
            .process
            .batches
            .iter()
            .flat_map(|b| b.body.bids.iter().map(|sb| sb.body.id()))
            .chain(
                block
                    .body
                    .process
                    .appeals
                    .iter()
                    .filter_map(|a| a.upheld_omission().map(|(bid, _)| bid.body.id())),
            )
            .collect();
        let mut results: BTreeMap<ParticipantId, Vec<crate::market::Trade>> = BTreeMap::new();
        for t in &block.body.trades {
            if ctx
                .genesis
                .participant(t.participant)
                .is_some_and(|p| p.home == ctx.me)
            {
                results.entry(t.participant).or_default().push(t.clone());
            }
        }
        let digest = block.digest();
        let resolutions: Vec<(ParticipantId, AppealResolution)> = block
            .body
            .process
            .appeals
            .iter()
            .map(|a| (a.appeal.body.participant, a.resolution))
            .collect();
        out.push(Effect::Decide(Box::new(block.clone())));
        self.apply_changes(ctx, &block);
        // A change this node sponsors that the block does not carry (its batch was missing)
        // goes into the next batch; one it carries is on the chain, applied or refused (A5).
        let carried: BTreeSet<Digest> = block
            .body
            .process
            .batches
            .iter()
            .flat_map(|b| b.body.changes.iter().map(SignedChange::id))
            .collect();
        for change in self.changes.remove(&h).unwrap_or_default() {
            if !carried.contains(&change.id()) {
                out.push(Effect::Persist(Record::Change {
                    change: change.clone(),
                    height: h + 1,
                }));
                self.changes.entry(h + 1).or_default().push(change);
            }
        }
        // N1: receipted bids that this block does not carry go into the next batch. With a
        // gate schedule their period's auction is over: the next block records them rejected
        // as `OutsideGate` (N4), so the participant can read on the chain what became of them.
        let pending = self.pool_take(h);
        for (bid, receipt) in pending {
            if !on_chain.contains(&bid.body.id()) {
                out.push(Effect::Persist(Record::Bid {
                    bid: bid.clone(),
                    receipt: receipt.clone(),
                    height: h + 1,
                }));
                self.pool_push(h + 1, bid, receipt);
            }
        }
        for (participant, trades) in results {
            out.push(Effect::Reply {
                to: participant,
                reply: Reply::Result {
                    height: h,
                    block: digest,
                    trades,
                },
            });
        }
        for participant in std::mem::take(&mut self.forwarded) {
            let reply = match resolutions.iter().find(|(p, _)| *p == participant) {
                Some((_, resolution)) => Reply::AppealResolved {
                    height: h,
                    resolution: *resolution,
                },
                None => Reply::AppealRejected {
                    reason: format!(
                        "the appeal was not recorded in block {h}: negotiation had closed or the primary changed"
                    ),
                },
            };
            out.push(Effect::Reply {
                to: participant,
                reply,
            });
        }
        let recorded: BTreeSet<&Evidence> = block.body.process.evidence.iter().collect();
        self.evidence.retain(|e| !recorded.contains(e));
        self.height = h + 1;
        self.prev = Some(block.header);
        self.view = 0;
        self.justification = None;
        self.gate_closed = false;
        self.batches = std::mem::take(&mut self.early_batches);
        self.proposal = None;
        self.own = None;
        self.lock = None;
        self.votes.clear();
        self.seen.clear();
        self.voted.clear();
        self.skips.clear();
        self.offered.clear();
        self.negotiation = Negotiation::default();
        self.appeals.clear();
        self.verified = VerifiedBids::default();
        if self.sync_from.is_some_and(|f| f <= h) {
            self.sync_from = None;
        }
        out.push(Effect::Prune { below: self.height });
        out.push(Effect::CancelTimer(Timer::View(h, old_view)));
        out.push(Effect::CancelTimer(Timer::BatchWait(h)));
        out.push(Effect::SetTimer {
            timer: Timer::Gate(self.height),
            after_ms: ctx.genesis.timing.gate_after(self.height, out.now),
        });
    }

    // ----- fault skip (paper step 2; spec L1, L2, S2) -----

    /// The view lasted too long: vote to skip its primary, reporting the highest lock. The
    /// vote goes to the primary of the next view only, which gathers the certificate and opens
    /// the view with its proposal (HotStuff's new-view messages). If the timer fires again
    /// before then, that primary may be down too: the node votes to skip the next view as
    /// well, and so on (PBFT's escalation), each vote to the primary of the view after it.
    fn skip_view(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        let target = self.next_skip_view(ctx.me);
        if !self
            .skips
            .get(&target)
            .is_some_and(|m| m.contains_key(&ctx.me))
        {
            let v = out.sign(SkipVote {
                chain_id: ctx.chain_id,
                height: self.height,
                view: target,
                voter: ctx.me,
                lock: self
                    .lock
                    .as_ref()
                    .filter(|_| !mutated!(ctx, SkipVoteHidesLock))
                    .map(|l| l.certificate.clone()),
                held: self.batches.keys().copied().collect(),
            });
            self.skips
                .entry(target)
                .or_default()
                .insert(ctx.me, v.clone());
            if !mutated!(ctx, SkipVoteUnlogged) {
                out.push(Effect::Persist(Record::Skip(v)));
            }
        }
        self.send_skip_votes(out);
        out.push(Effect::SetTimer {
            timer: Timer::View(self.height, self.view),
            after_ms: self.view_timeout(ctx, target + 1),
        });
        self.try_skip_certificate(out, target);
    }

    /// The view the next firing of this node's view timer votes to skip: its current view,
    /// or, once it voted to skip that one, the view after the highest it voted to skip (below
    /// `MAX_VIEW`). The model checker reads it to tell a run that can go on only past its
    /// view bound.
    pub fn next_skip_view(&self, me: NodeId) -> u32 {
        self.skips
            .range(self.view..)
            .rev()
            .find(|(_, m)| m.contains_key(&me))
            .map_or(self.view, |(&w, _)| (w + 1).min(crate::block::MAX_VIEW - 1))
    }

    /// Whether this node voted to skip `view` or a later view: it then votes in `view` no more.
    fn skipped(&self, ctx: &Context, view: u32) -> bool {
        self.skips
            .range(view..)
            .any(|(_, m)| m.contains_key(&ctx.me))
    }

    /// Sends this node's skip vote for its current view and its latest one (the votes for the
    /// views between are superseded by the latest: its certificate skips them all), each to
    /// the primary of the view after it, with the locked proposal and the batches the vote
    /// reports.
    fn send_skip_votes(&self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        let mine = |w: &u32| {
            self.skips
                .get(w)
                .and_then(|m| m.get(&ctx.me))
                .map(|v| (*w, v))
        };
        let latest = self
            .skips
            .range(self.view..)
            .rev()
            .find_map(|(w, _)| mine(w));
        let current = mine(&self.view);
        let votes = current
            .into_iter()
            .chain(latest.filter(|l| Some(l.0) != current.map(|c| c.0)));
        for (w, v) in votes {
            let to = ctx.genesis.primary(self.height, w + 1);
            if to != ctx.me {
                out.push(Effect::Send {
                    to,
                    msg: Message::Skip(
                        Box::new(v.clone()),
                        self.locked_proposal(),
                        self.held_batches(&v.body.held),
                    ),
                });
            }
        }
    }

    fn on_skip(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        v: Signed<SkipVote>,
        locked: Option<Proposal>,
        batches: Vec<SignedBatch>,
    ) {
        let ctx = out.ctx;
        let b = &v.body;
        if b.voter != from || b.chain_id != ctx.chain_id {
            return;
        }
        if b.height < self.height {
            // L4: the sender is stuck at a height this node decided (it missed the decided
            // block, and no message of a later height told it): answer with the blocks.
            self.on_sync_request(out, from, b.height);
            return;
        }
        if !self.current(out, from, b.height) {
            return;
        }
        if b.view < self.view {
            // L2: the sender lags behind in views; show it how this node got ahead. Only a
            // vote for the view just before this one is answered: the certificate that opened
            // this view is for that view, and a sender further behind escalates its votes
            // until one reaches a node in the view after it (2.7).
            if b.view + 1 != self.view {
                return;
            }
            if let Some(cert) = &self.justification {
                let reported: Vec<NodeId> = cert.reported_homes().into_iter().collect();
                out.push(Effect::Send {
                    to: from,
                    msg: Message::ViewCertificate(
                        Box::new(cert.clone()),
                        self.held_batches(&reported),
                    ),
                });
            }
            return;
        }
        // Skip votes for a view are gathered by the primary of the view after it alone.
        if ctx.genesis.primary(self.height, b.view.saturating_add(1)) != ctx.me {
            return;
        }
        let Some(key) = Self::member_key(ctx, from) else {
            return;
        };
        if v.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        if let Some(lock) = &b.lock {
            let valid = lock.kind == VoteKind::Endorse
                && lock.height == self.height
                && lock.view <= b.view
                && lock
                    .verify(&ctx.genesis, ctx.chain_id, ctx.scheme.as_ref(), &[])
                    .is_ok();
            if !valid && !mutated!(ctx, UnverifiedSkipLock) {
                return;
            }
            if let Some(p) = locked {
                if p.header.digest() == lock.block
                    && p.body.trades_root() == p.header.trades_root
                    && p.body.process_hash() == p.header.process_hash
                {
                    self.offered.entry(lock.block).or_insert(p);
                }
            }
        }
        // N2: keep the batches the vote reports, before the vote can open the next view.
        for batch in batches {
            if b.held.contains(&batch.body.home) && batch.body.height == self.height {
                self.keep_batch(out, batch);
            }
        }
        let view = b.view;
        self.skips.entry(view).or_default().entry(from).or_insert(v);
        self.try_skip_certificate(out, view);
        self.propose_when_batches_are_in(out);
    }

    /// L2: a valid skip certificate for a later view moves a lagging node forward.
    fn on_view_certificate(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        cert: SkipCertificate,
        batches: Vec<SignedBatch>,
    ) {
        let ctx = out.ctx;
        if !self.current(out, from, cert.height) || cert.view < self.view {
            return;
        }
        if cert
            .verify(
                &ctx.genesis,
                ctx.chain_id,
                ctx.scheme.as_ref(),
                self.height,
                cert.view,
            )
            .is_ok()
            || mutated!(ctx, UnverifiedViewCertificate)
        {
            let reported = cert.reported_homes();
            for batch in batches {
                if reported.contains(&batch.body.home) && batch.body.height == self.height {
                    self.keep_batch(out, batch);
                }
            }
            self.enter_view(out, cert.view + 1, cert);
            self.propose_when_batches_are_in(out);
        }
    }

    /// L1: a quorum of skip votes for a view moves this node to the next view.
    fn try_skip_certificate(&mut self, out: &mut Out<'_>, view: u32) {
        let ctx = out.ctx;
        let need = if mutated!(ctx, SkipWithoutCertificate) {
            1
        } else {
            ctx.genesis.quorum()
        };
        let Some(votes) = self.skips.get(&view) else {
            return;
        };
        if view < self.view || votes.len() < need {
            return;
        }
        let cert = SkipCertificate {
            height: self.height,
            view,
            votes: votes.values().cloned().collect(),
        };
        self.enter_view(out, view + 1, cert);
    }

    fn enter_view(&mut self, out: &mut Out<'_>, view: u32, cert: SkipCertificate) {
        let ctx = out.ctx;
        if view <= self.view || view > crate::block::MAX_VIEW {
            return;
        }
        out.push(Effect::Persist(Record::SkipCertificate(cert.clone())));
        out.push(Effect::CancelTimer(Timer::View(self.height, self.view)));
        self.view = view;
        self.forget_earlier_views();
        self.justification = Some(cert);
        self.proposal = None;
        self.own = None;
        self.negotiation = Negotiation::default();
        self.arm_view_timer(out);
        if self.primary(ctx) == ctx.me {
            self.propose(out, 0);
        }
    }

    /// A node in view v acts on nothing of an earlier view but a skip vote (answered with the
    /// certificate that opened v): it drops the votes it counted, the votes it noted for
    /// equivocation (evidence already found is kept) and the skip votes of earlier views.
    /// Nothing is lost: a block committed in an earlier view reaches the node as `Decided` or
    /// by sync, and a block locked there is proposed again in v (S2).
    fn forget_earlier_views(&mut self) {
        let view = self.view;
        self.votes.retain(|k, _| k.1 >= view);
        self.seen.retain(|k, _| k.2 >= view);
        self.skips.retain(|&w, _| w >= view);
    }

    // ----- appeals (paper step 5; spec V5) -----

    fn on_participant_appeal(&mut self, out: &mut Out<'_>, appeal: Signed<Appeal>) {
        let ctx = out.ctx;
        let a = &appeal.body;
        let refuse = |out: &mut Out<'_>, reason: String| {
            out.push(Effect::Reply {
                to: a.participant,
                reply: Reply::AppealRejected { reason },
            })
        };
        let Some(p) = ctx.genesis.participant(a.participant) else {
            return refuse(
                out,
                format!("participant {} is not admitted", a.participant),
            );
        };
        if p.home != ctx.me {
            return refuse(
                out,
                format!("participant {}'s home node is {}", p.id, p.home),
            );
        }
        if a.chain_id != ctx.chain_id || appeal.verify(ctx.scheme.as_ref(), &p.public_key).is_err()
        {
            return refuse(out, "the appeal's signature does not verify".into());
        }
        if a.height != self.height {
            return refuse(
                out,
                format!(
                    "height {} is not the round in progress ({})",
                    a.height, self.height
                ),
            );
        }
        self.forwarded.insert(a.participant);
        out.push(Effect::Reply {
            to: a.participant,
            reply: Reply::AppealForwarded { height: a.height },
        });
        out.push(Effect::Broadcast(Message::Appeal {
            appeal: Box::new(appeal.clone()),
            via: ctx.me,
        }));
        self.on_forwarded_appeal(out, ctx.me, appeal, ctx.me);
    }

    fn on_forwarded_appeal(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        appeal: Signed<Appeal>,
        via: NodeId,
    ) {
        let ctx = out.ctx;
        let a = &appeal.body;
        if via != from || a.chain_id != ctx.chain_id || a.height != self.height {
            return;
        }
        let Some(p) = ctx.genesis.participant(a.participant) else {
            return;
        };
        if p.home != via
            || appeal.verify(ctx.scheme.as_ref(), &p.public_key).is_err()
            || self.appeals.len() >= MAX_APPEALS
            || self.appeals.iter().any(|(x, _)| *x == appeal)
        {
            return;
        }
        out.push(Effect::Persist(Record::Appeal {
            appeal: appeal.clone(),
            via,
        }));
        self.appeals.push((appeal, via));
        // The primary records it in its next revision, while revisions remain.
        if let Some(cur) = &self.own {
            let (view, revision) = cur.round();
            let fresh = cur.header.view == view;
            if view == self.view && fresh && revision + 1 < ctx.genesis.max_revisions {
                self.propose(out, revision + 1);
            }
        }
    }

    // ----- catch-up (spec L4) -----

    fn on_sync_request(&mut self, out: &mut Out<'_>, from: NodeId, first: u64) {
        if first >= 1 && first < self.height {
            out.push(Effect::ServeBlocks {
                to: from,
                from: first,
                to_height: (self.height - 1).min(first + MAX_SYNC_BLOCKS - 1),
            });
        }
    }

    /// L4: committed blocks from a peer are decided after the same checks the audit makes.
    fn on_blocks(&mut self, out: &mut Out<'_>, from: NodeId, mut blocks: Vec<Block>) {
        let full = blocks.len() as u64 >= MAX_SYNC_BLOCKS;
        blocks.sort_by_key(|b| b.header.height);
        for block in blocks {
            let h = block.header.height;
            if h < self.height {
                continue;
            }
            if h > self.height {
                self.request_sync(out, from);
                return;
            }
            // Each block is judged by the registry its predecessors left (spec A5).
            let effective = self.effective(out.ctx);
            let ctx = &*effective;
            let digest = block.digest();
            let endorsed = self.voted.get(&(
                VoteKind::Endorse,
                block.certificate.view,
                block.certificate.revision,
            )) == Some(&digest)
                || self
                    .lock
                    .as_ref()
                    .is_some_and(|l| l.certificate.block == digest);
            let ok = if endorsed {
                block
                    .certificate
                    .verify(
                        &ctx.genesis,
                        ctx.chain_id,
                        ctx.scheme.as_ref(),
                        &block.body.required_signers(&ctx.genesis),
                    )
                    .is_ok()
                    && block.certificate.block == digest
                    && block.certificate.kind == VoteKind::Commit
            } else {
                let mut check = Memo {
                    memo: &mut self.verified,
                    scheme: ctx.scheme.as_ref(),
                };
                let rules = ContentRules {
                    genesis: &ctx.genesis,
                    chain_id: ctx.chain_id,
                    scheme: ctx.scheme.as_ref(),
                    clearing: ctx.clearing,
                    committed: &self.committed_nonces,
                };
                verify_block(
                    &rules,
                    self.prev.as_ref(),
                    &block,
                    &mut check,
                    &mut AuditSummary::default(),
                )
                .is_ok()
            };
            if !ok {
                return;
            }
            self.after_decide(out, block);
        }
        if full {
            self.request_sync(out, from);
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
    pub fn step(&mut self, now: Timestamp, input: Input) -> Vec<Effect> {
        self.state.step(&self.ctx, now, input)
    }
}
