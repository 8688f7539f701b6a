//! What a block must contain: which bids it clears and rejects, how appeals resolve, how the
//! primary builds the body, and how every verifier and auditor checks it (spec V2, V3, V5, V6,
//! V8, L1, L3).
//!
//! The primary, every verifying node and the chain audit run these same functions, so a body
//! that one accepts all accept.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit::AuditFailure;
use crate::block::{
    AppealClaim, AppealRecord, AppealResolution, BlockBody, Evidence, Objection, ProcessData,
    Rejection, RejectionReason, SkipCertificate,
};
use crate::clearing::{Cleared, Clearing, ClearingError, ClearingInput, ClearingRecord, Cut};
use crate::crypto::{Digest, PublicKey, SignatureError, SignatureScheme, Signed};
use crate::genesis::Genesis;
use crate::market::{Bid, SignedBatch, SignedBid};
use crate::schedule::GateSchedule;
use crate::units::{AreaId, NodeId, ParticipantId, Timestamp};

/// The highest nonce of each participant in committed blocks. A bid is replayed if its nonce
/// is not above its participant's (spec V3).
pub type CommittedNonces = BTreeMap<ParticipantId, u64>;

/// How content checks learn a bid's id and check the signatures of bids, batches and
/// objections (spec D10, D19, D20, D22). The audit verifies everything afresh (any closure
/// `FnMut(&SignedBid, &PublicKey) -> bool` is a checker of bids that verifies the rest
/// directly); a node remembers, within a height, what it verified before
/// (`node::VerifiedBids`), which changes the work done, never a verdict.
pub trait SignatureCheck {
    /// The id of `sb`'s bid.
    fn bid_id(&mut self, sb: &SignedBid) -> Digest {
        sb.body.id()
    }
    /// Whether `sb`, whose id is `id` (what [`SignatureCheck::bid_id`] gave for it), is signed
    /// under `key`.
    fn bid(&mut self, sb: &SignedBid, id: &Digest, key: &PublicKey) -> bool;
    /// Whether a batch is signed under `key`.
    fn batch(
        &mut self,
        scheme: &dyn SignatureScheme,
        b: &SignedBatch,
        key: &PublicKey,
    ) -> Result<(), SignatureError> {
        b.verify(scheme, key)
    }
    /// Whether an objection is signed under `key`.
    fn objection(
        &mut self,
        scheme: &dyn SignatureScheme,
        o: &Signed<Objection>,
        key: &PublicKey,
    ) -> Result<(), SignatureError> {
        o.verify(scheme, key)
    }
}

impl<F: FnMut(&SignedBid, &PublicKey) -> bool> SignatureCheck for F {
    fn bid(&mut self, sb: &SignedBid, _: &Digest, key: &PublicKey) -> bool {
        self(sb, key)
    }
}

/// The signature checker content checks take.
pub type BidSignatureCheck<'f> = dyn SignatureCheck + 'f;

/// The areas that cannot trade in a view: those with a member missing from the skip
/// certificate that opened the view. Their members could not co-sign (spec L1, V9). View 0 has
/// none.
pub fn unavailable_areas(genesis: &Genesis, skip: Option<&SkipCertificate>) -> BTreeSet<AreaId> {
    let Some(cert) = skip else {
        return BTreeSet::new();
    };
    let voters: BTreeSet<NodeId> = cert.voters().collect();
    genesis
        .members
        .iter()
        .filter(|m| !voters.contains(&m.id))
        .map(|m| m.area)
        .collect()
}

/// The bids a block clears, and the bids it rejects by rule.
#[derive(Debug)]
pub struct Selection<'a> {
    /// The bids to clear, with their ids, in canonical order.
    pub bids: Vec<(Digest, &'a Bid)>,
    /// When each bid's home node received it, parallel to `bids` (spec C4).
    pub received: Vec<Timestamp>,
    /// The rejected bids, in canonical order.
    pub rejections: Vec<Rejection>,
}

impl<'a> Selection<'a> {
    /// The clearing input of this selection from `process`, the body it was made from: its
    /// bids with their receipt times, the process's cuts, and the tie lines of the areas that
    /// cannot trade in its view closed; with the rejections.
    pub fn into_input(
        self,
        genesis: &'a Genesis,
        process: &'a ProcessData,
    ) -> (ClearingInput<'a>, Vec<Rejection>) {
        let unavailable = unavailable_areas(genesis, process.skip_certificate.as_ref());
        let input = ClearingInput::new(
            genesis,
            self.bids,
            self.received,
            &process.clearing.cuts,
            &unavailable,
        );
        (input, self.rejections)
    }
}

/// The candidate bids of a body: every bid of every batch (batches in member order, bids in
/// batch order), then the bids of upheld `Omitted` appeals, each with the home node that
/// vouches for it and when that node received it (the batch's receipt time, or the appeal's
/// receipt's).
fn candidates(process: &ProcessData) -> impl Iterator<Item = (&SignedBid, NodeId, Timestamp)> {
    let batched = process.batches.iter().flat_map(|b| {
        let home = b.body.home;
        b.body
            .bids
            .iter()
            .zip(&b.body.received)
            .map(move |(sb, &t)| (sb, home, t))
    });
    let appealed = process.appeals.iter().filter_map(|a| {
        a.upheld_omission()
            .map(|(bid, receipt)| (bid, receipt.body.home, receipt.body.received_at))
    });
    batched.chain(appealed)
}

/// Where a bid's delivery period stands against one round (spec D24, N4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// The round clears it (always, without a gate schedule).
    InRound,
    /// No round does: the schedule does not open it (the bid is invalid, D7).
    OffSchedule,
    /// Another round does.
    OtherRound,
}

/// The delivery periods a round clears under a gate schedule, computed once per round so
/// that placing a bid is a search among the day's periods; only a bid outside them needs
/// the calendar.
struct RoundPeriods<'g> {
    schedule: Option<&'g GateSchedule>,
    height: u64,
    starts: Vec<u64>,
}

impl<'g> RoundPeriods<'g> {
    fn new(genesis: &'g Genesis, height: u64) -> Self {
        let schedule = genesis.timing.schedule.as_ref();
        let starts = schedule.map_or_else(Vec::new, |s| {
            s.periods_of(height).into_iter().map(|t| t.0).collect()
        });
        Self {
            schedule,
            height,
            starts,
        }
    }

    fn place(&self, p: &crate::market::Product) -> Placement {
        let Some(s) = self.schedule else {
            return Placement::InRound;
        };
        if p.delivery_minutes == u32::from(s.resolution_minutes)
            && self.starts.binary_search(&p.delivery_start.0).is_ok()
        {
            return Placement::InRound;
        }
        match s.height_of(p.delivery_start, p.delivery_minutes) {
            Err(_) => Placement::OffSchedule,
            Ok(h) if h == self.height => Placement::InRound,
            Ok(_) => Placement::OtherRound,
        }
    }
}

/// Which bids a body clears and which it rejects (spec V2, V3, L3, N4): a bid is rejected as
/// `Duplicate` if its id or its (participant, nonce) was seen earlier in the body or (without a
/// gate schedule) its nonce is not above the participant's committed nonce; under a schedule
/// a bid can be cleared only in its own period's block (N4), so a replay of it elsewhere is
/// `OutsideGate`, and bids for later days may carry lower nonces than bids already committed
/// for earlier ones; as `Invalid` if it breaks a rule (D7), its
/// signature fails, or its participant's home is not the node that vouches for it; as
/// `OutsideGate` if a gate schedule clears its delivery period at another height; as
/// `AreaUnavailable` if its area cannot trade in this view; and, in fallback revisions
/// (revision `r` above the genesis bound `R`), all but the earliest-received
/// `floor(n / 2^(r - R))` of the remaining `n` bids (by their home nodes' receipt times, then
/// id, spec C4) are rejected as `Fallback` (the paper: later-submitted trades are cut first).
pub fn select_bids<'a>(
    genesis: &Genesis,
    chain_id: &Digest,
    process: &'a ProcessData,
    height: u64,
    revision: u32,
    committed: &CommittedNonces,
    check_signature: &mut BidSignatureCheck<'_>,
) -> Selection<'a> {
    let unavailable = unavailable_areas(genesis, process.skip_certificate.as_ref());
    let round = RoundPeriods::new(genesis, height);
    let mut seen_ids: crate::crypto::DigestMap<()> = Default::default();
    let mut seen_nonces = std::collections::HashSet::new();
    let mut verdicts: Vec<(Digest, &'a Bid, Timestamp, Option<RejectionReason>)> = Vec::new();
    for (sb, home, received) in candidates(process) {
        let bid = &sb.body;
        let id = check_signature.bid_id(sb);
        let replay = seen_ids.insert(id, ()).is_some()
            || !seen_nonces.insert((bid.participant, bid.nonce))
            || (round.schedule.is_none()
                && committed
                    .get(&bid.participant)
                    .is_some_and(|&n| bid.nonce <= n));
        let verdict = if replay {
            Some(RejectionReason::Duplicate)
        } else {
            let placement = round.place(&bid.product);
            let valid = genesis.participant(bid.participant).is_some_and(|p| {
                p.home == home
                    && placement != Placement::OffSchedule
                    && bid.check_rules(genesis, chain_id).is_ok()
                    && check_signature.bid(sb, &id, &p.public_key)
            });
            if !valid {
                Some(RejectionReason::Invalid)
            } else if placement == Placement::OtherRound {
                Some(RejectionReason::OutsideGate)
            } else if unavailable.contains(&bid.area) {
                Some(RejectionReason::AreaUnavailable)
            } else {
                None
            }
        };
        verdicts.push((id, bid, received, verdict));
    }
    if revision > genesis.max_revisions {
        let level = revision - genesis.max_revisions;
        let mut live: Vec<(Timestamp, Digest, usize)> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, v)| v.3.is_none())
            .map(|(i, v)| (v.2, v.0, i))
            .collect();
        live.sort_unstable();
        let keep = if level >= 63 { 0 } else { live.len() >> level };
        for &(_, _, i) in &live[keep..] {
            verdicts[i].3 = Some(RejectionReason::Fallback);
        }
    }
    let mut selection = Selection {
        bids: Vec::new(),
        received: Vec::new(),
        rejections: Vec::new(),
    };
    for (id, bid, received, verdict) in verdicts {
        match verdict {
            None => {
                selection.bids.push((id, bid));
                selection.received.push(received);
            }
            Some(reason) => selection.rejections.push(Rejection { bid: id, reason }),
        }
    }
    selection
}

/// How an appeal resolves against the body's batches and the appeals before it (spec V5):
/// an `Omitted` claim is upheld if its receipt is the home node's signature for this bid, the
/// bid is valid and signed and names the appellant, the receipt's height is not above this
/// height (under a gate schedule: is this height, the bid's only round, N4), and the bid is
/// neither in the body nor (without a schedule) on the chain already (its nonce above the
/// participant's committed nonce); a `Misallocated` claim about a cleared bid stands rejected,
/// because every node recomputes the clearing (V7).
pub fn resolve_appeal(
    genesis: &Genesis,
    chain_id: &Digest,
    scheme: &dyn SignatureScheme,
    height: u64,
    included: &BTreeSet<Digest>,
    committed: &CommittedNonces,
    appeal: &Signed<crate::block::Appeal>,
) -> AppealResolution {
    let a = &appeal.body;
    match &a.claim {
        AppealClaim::Omitted { bid, receipt } => {
            let r = &receipt.body;
            // Under a gate schedule a bid's auction is its receipt's round only (N4).
            let scheduled = genesis.timing.schedule.is_some();
            let verifiable = genesis.participant(a.participant).is_some_and(|p| {
                let home_key = genesis.member(p.home).map(|m| m.public_key);
                bid.body.participant == a.participant
                    && r.participant == a.participant
                    && r.chain_id == *chain_id
                    && r.bid == bid.body.id()
                    && r.home == p.home
                    && (r.height == height || (!scheduled && r.height < height))
                    && bid.body.check(genesis, chain_id).is_ok()
                    && bid.verify(scheme, &p.public_key).is_ok()
                    && home_key.is_some_and(|k| receipt.verify(scheme, &k).is_ok())
            });
            if !verifiable {
                AppealResolution::RejectedUnverifiable
            } else if included.contains(&bid.body.id())
                || (!scheduled
                    && committed
                        .get(&a.participant)
                        .is_some_and(|&n| bid.body.nonce <= n))
            {
                AppealResolution::RejectedAlreadyIncluded
            } else {
                AppealResolution::Upheld { revision: 0 }
            }
        }
        AppealClaim::Misallocated { bid } => {
            if included.contains(bid) {
                AppealResolution::RejectedOutcomeStands
            } else {
                AppealResolution::RejectedUnverifiable
            }
        }
    }
}

/// The ids of every bid in the body's batches.
fn batch_bid_ids(process: &ProcessData) -> BTreeSet<Digest> {
    process
        .batches
        .iter()
        .flat_map(|b| b.body.bids.iter().map(|sb| sb.body.id()))
        .collect()
}

/// What a primary decided to clear in one round.
#[derive(Clone, Debug, Default)]
pub struct BlockPlan {
    /// The height.
    pub height: u64,
    /// The view.
    pub view: u32,
    /// The revision.
    pub revision: u32,
    /// The batches, in member order.
    pub batches: Vec<SignedBatch>,
    /// Appeals with their resolutions (an upheld appeal names the revision it is cleared in).
    pub appeals: Vec<AppealRecord>,
    /// The objections that led to revisions.
    pub objections: Vec<Signed<Objection>>,
    /// The cuts from those objections.
    pub cuts: Vec<Cut>,
    /// The certificate that opened the view.
    pub skip_certificate: Option<SkipCertificate>,
    /// Equivocation evidence to record.
    pub evidence: Vec<Evidence>,
}

/// The read-only facts content checks need besides the body.
pub struct ContentRules<'a> {
    /// The consortium.
    pub genesis: &'a Genesis,
    /// Its chain id.
    pub chain_id: Digest,
    /// How signatures verify.
    pub scheme: &'a dyn SignatureScheme,
    /// The agreed rule.
    pub clearing: &'a dyn Clearing,
    /// Committed nonces before this block.
    pub committed: &'a CommittedNonces,
}

impl ContentRules<'_> {
    /// Builds the body the rule gives for `plan` (the primary's side).
    pub fn build_body(
        &self,
        plan: BlockPlan,
        check_signature: &mut BidSignatureCheck<'_>,
    ) -> Result<BlockBody, ClearingError> {
        let g = self.genesis;
        let mut process = ProcessData {
            batches: plan.batches,
            clearing: ClearingRecord {
                rule: g.clearing.rule,
                cuts: plan.cuts,
                outcome: Default::default(),
            },
            objections: plan.objections,
            appeals: plan.appeals,
            rejections: Vec::new(),
            skipped: (0..plan.view).map(|v| g.primary(plan.height, v)).collect(),
            skip_certificate: plan.skip_certificate,
            evidence: plan.evidence,
        };
        let (cleared, rejections) = {
            let selection = select_bids(
                g,
                &self.chain_id,
                &process,
                plan.height,
                plan.revision,
                self.committed,
                check_signature,
            );
            let (input, rejections) = selection.into_input(g, &process);
            (self.clearing.clear(&input)?, rejections)
        };
        process.rejections = rejections;
        process.clearing.outcome = cleared.outcome;
        Ok(BlockBody {
            trades: cleared.trades,
            process,
        })
    }

    /// Checks a body for a header at (height, view, revision) (the verifier's and the
    /// auditor's side; spec D19-D22, V2, V3, V5, V6, V8).
    pub fn verify_body(
        &self,
        height: u64,
        revision: u32,
        body: &BlockBody,
        check_signature: &mut BidSignatureCheck<'_>,
    ) -> Result<(), AuditFailure> {
        self.verify_body_then(height, revision, body, check_signature, |input, cleared| {
            self.verify_clearing(input, cleared)
        })
    }

    /// V2: the proposed clearing outcome is the one the agreed rule gives for the body's
    /// clearing input.
    pub fn verify_clearing(
        &self,
        input: &ClearingInput<'_>,
        cleared: &Cleared,
    ) -> Result<(), AuditFailure> {
        self.clearing
            .verify(input, cleared)
            .map_err(|e| AuditFailure::Process(format!("clearing: {e}")))
    }

    /// Every check of [`ContentRules::verify_body`] but the clearing's, then `then` on the
    /// body's clearing input and outcome: the verifier checks the clearing (V2) and its own
    /// grid's security (V7) there, on the very selection the rules made.
    pub fn verify_body_then<R>(
        &self,
        height: u64,
        revision: u32,
        body: &BlockBody,
        check_signature: &mut BidSignatureCheck<'_>,
        then: impl FnOnce(&ClearingInput<'_>, &Cleared) -> Result<R, AuditFailure>,
    ) -> Result<R, AuditFailure> {
        let g = self.genesis;
        let p = &body.process;
        // D19: batches, one per member, in member order, each signed by its home node.
        let mut last_index = None;
        for (i, batch) in p.batches.iter().enumerate() {
            let b = &batch.body;
            let bad = |reason: String| AuditFailure::Batch { index: i, reason };
            let index = g
                .members
                .iter()
                .position(|m| m.id == b.home)
                .ok_or_else(|| bad(format!("home node {} is not a member", b.home)))?;
            if last_index.is_some_and(|l| l == index) {
                return Err(bad(format!("a second batch from node {}", b.home)));
            }
            if last_index.is_some_and(|l| l > index) {
                return Err(bad("batches are not in member order".into()));
            }
            last_index = Some(index);
            if b.chain_id != self.chain_id || b.height != height {
                return Err(bad(format!(
                    "batch is for height {}, not {height}",
                    b.height
                )));
            }
            check_signature
                .batch(self.scheme, batch, &g.members[index].public_key)
                .map_err(|e| bad(format!("home node {}'s signature: {e}", b.home)))?;
            if let Some(why) = b.malformed(g) {
                return Err(bad(format!("home node {}'s batch: {why}", b.home)));
            }
        }
        // D25: the objections within the negotiation's bytes, so that the block fits a frame.
        let bytes: usize = p.objections.iter().map(crate::encoding::encoded_len).sum();
        if bytes > crate::block::MAX_NEGOTIATION_BYTES {
            return Err(AuditFailure::Process(format!(
                "the objections take {bytes} bytes, over MAX_NEGOTIATION_BYTES ({})",
                crate::block::MAX_NEGOTIATION_BYTES
            )));
        }
        // D22 and V5: records are signed by whom they name; appeals resolve as the rules say.
        for (i, o) in p.objections.iter().enumerate() {
            let b = &o.body;
            let member = g.member(b.objector).ok_or_else(|| {
                AuditFailure::Process(format!(
                    "objection {i}: objector {} is not a member",
                    b.objector
                ))
            })?;
            if b.chain_id != self.chain_id || b.height != height || b.revision >= revision {
                return Err(AuditFailure::Process(format!(
                    "objection {i} is for height {} revision {}, not an earlier revision of this block",
                    b.height, b.revision
                )));
            }
            check_signature
                .objection(self.scheme, o, &member.public_key)
                .map_err(|e| AuditFailure::Process(format!("objection {i}: {e}")))?;
        }
        let mut included = batch_bid_ids(p);
        for (i, a) in p.appeals.iter().enumerate() {
            let b = &a.appeal.body;
            let participant = g.participant(b.participant).ok_or_else(|| {
                AuditFailure::Process(format!(
                    "appeal {i}: participant {} is not admitted",
                    b.participant
                ))
            })?;
            if b.chain_id != self.chain_id || b.height != height || g.member(a.via).is_none() {
                return Err(AuditFailure::Process(format!(
                    "appeal {i} is for height {} via {}, not this block's",
                    b.height, a.via
                )));
            }
            a.appeal
                .verify(self.scheme, &participant.public_key)
                .map_err(|e| AuditFailure::Process(format!("appeal {i}: {e}")))?;
            let expected = resolve_appeal(
                g,
                &self.chain_id,
                self.scheme,
                height,
                &included,
                self.committed,
                &a.appeal,
            );
            let consistent = match (expected, a.resolution) {
                (AppealResolution::Upheld { .. }, AppealResolution::Upheld { revision: r }) => {
                    r <= revision
                }
                (e, r) => e == r,
            };
            if !consistent {
                return Err(AuditFailure::Process(format!(
                    "appeal {i} is resolved {:?}, the rules give {:?}",
                    a.resolution, expected
                )));
            }
            if let Some((bid, _)) = a.upheld_omission() {
                included.insert(bid.body.id());
            }
        }
        for (i, e) in p.evidence.iter().enumerate() {
            if !e.verify(g, self.scheme) {
                return Err(AuditFailure::Process(format!(
                    "evidence {i} does not show an equivocation"
                )));
            }
        }
        // V3: the selection and its recorded rejections.
        let selection = select_bids(
            g,
            &self.chain_id,
            p,
            height,
            revision,
            self.committed,
            check_signature,
        );
        if selection.rejections != p.rejections {
            let at = (0..selection.rejections.len().max(p.rejections.len()))
                .find(|&i| selection.rejections.get(i) != p.rejections.get(i))
                .unwrap_or(0);
            let (expected, recorded) = (selection.rejections.get(at), p.rejections.get(at));
            let reason = format!("recorded as {recorded:?}, the rules give {expected:?}");
            // D20: name the bid by its place in the batches where it has one.
            let id = expected.or(recorded).map(|r| r.bid);
            let place = p.batches.iter().enumerate().find_map(|(bi, b)| {
                b.body
                    .bids
                    .iter()
                    .position(|sb| Some(sb.body.id()) == id)
                    .map(|i| (bi, i))
            });
            return Err(match place {
                Some((batch, index)) => AuditFailure::Bid {
                    batch,
                    index,
                    reason,
                },
                None => AuditFailure::Process(format!("rejection {at}: {reason}")),
            });
        }
        // D21: every trade is for a cleared bid and matches it.
        let bids: crate::crypto::DigestMap<&Bid> =
            selection.bids.iter().map(|(d, b)| (*d, *b)).collect();
        for (i, t) in body.trades.iter().enumerate() {
            let bad = |reason: String| AuditFailure::Trade { index: i, reason };
            let bid = bids
                .get(&t.bid)
                .ok_or_else(|| bad(format!("bid {:?} is not cleared in this block", t.bid)))?;
            if bid.participant != t.participant
                || bid.side != t.side
                || bid.area != t.area
                || bid.bus != t.bus
                || bid.product != t.product
            {
                return Err(bad(format!(
                    "does not match bid {:?} (participant, side, area, bus or product differs)",
                    t.bid
                )));
            }
            if t.quantity.0 <= 0 {
                return Err(bad(format!("quantity {} is not positive", t.quantity)));
            }
        }
        // V6: the rule and the outcome.
        if p.clearing.rule != g.clearing.rule {
            return Err(AuditFailure::Process(format!(
                "cleared by {} but the genesis rule is {}",
                p.clearing.rule.name(),
                g.clearing.rule.name()
            )));
        }
        // V8: every cut was objected by a member, and none twice (sets: a negotiation may
        // record a thousand cuts).
        let objected: BTreeSet<&Cut> = p
            .objections
            .iter()
            .flat_map(|o| match &o.body.reason {
                crate::block::ObjectionReason::Security { cuts } => cuts.as_slice(),
                _ => &[],
            })
            .collect();
        let mut seen = BTreeSet::new();
        for (i, c) in p.clearing.cuts.iter().enumerate() {
            if !objected.contains(c) || !seen.insert(c) {
                return Err(AuditFailure::Process(format!(
                    "cut {i} comes from no recorded security objection, or repeats"
                )));
            }
        }
        let (input, _) = selection.into_input(g, p);
        let proposed = body.cleared();
        then(&input, &proposed)
    }
}

/// Raises `committed` to the nonces of every authentic bid in a committed body: cleared or
/// rejected by rule, a bid's nonce is used once it is on the chain, so nobody can replay it
/// into a later block (spec V3). Bids rejected as `Invalid` may be forgeries and consume
/// nothing.
pub fn advance_nonces(committed: &mut CommittedNonces, body: &BlockBody) {
    let invalid: BTreeSet<Digest> = body
        .process
        .rejections
        .iter()
        .filter(|r| r.reason == RejectionReason::Invalid)
        .map(|r| r.bid)
        .collect();
    for (sb, _, _) in candidates(&body.process) {
        if invalid.contains(&sb.body.id()) {
            continue;
        }
        let n = committed.entry(sb.body.participant).or_insert(0);
        *n = (*n).max(sb.body.nonce);
    }
}
