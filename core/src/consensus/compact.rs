//! The compact frame: how a node message travels between members (spec 1.3, "Frames").
//!
//! Every member receives every home node's batch at gate closure, so a message that carries a
//! round's batches again (a proposal, a decided block, a skip vote's locked proposal and held
//! batches, a view certificate's batches, a sync response's blocks) names each of them by a
//! [`BatchRef`] instead: its height, home and digest. Inside a block body, the outcome's step
//! awards and the trades then name their bid by its position in those batches (batch index,
//! bid index) instead of its 32-byte id, and a trade leaves out what its bid already says
//! (participant, side, area, bus, product). A message whose purpose is to deliver a batch (a
//! `Batch`, a missing-batch objection) carries it whole. The clearing's cuts, each of which a
//! security objection of the same body already carries, name that objection and the cut's
//! place in it instead of repeating its terms.
//!
//! The form is lossless: [`Frame::resolve`] rebuilds exactly the [`Message`] that
//! [`encode`] was given, byte for byte, once it is handed the batches the frame names. An
//! award or trade that its bid does not describe (a faulty primary's) is carried whole, so
//! every message has a compact form, and the state machine sees the same message it would
//! have seen uncompressed: this is a property of the transport, not of the protocol, and the
//! model checker's network carries whole messages. A receiver that lacks a named batch asks
//! the sender for it (the runtime's batch fetch); the sender holds every batch it names.

use std::collections::HashMap;

use crate::block::{
    Appeal, Block, BlockBody, Evidence, MAX_APPEALS, MAX_CUTS_PER_OBJECTION, MAX_EVIDENCE,
    MAX_NEGOTIATION_BYTES, MAX_OBJECTIONS, MAX_VIEW, Objection, ObjectionReason, ProcessData,
    SkipCertificate, SkipVote,
};
use crate::clearing::{
    ClearingOutcome, ClearingRecord, Cut, MAX_AWARDS, MAX_OUTCOME_ROWS, StepAward,
};
use crate::crypto::Signed;
use crate::crypto::{Digest, DigestMap, digest_of};
use crate::encoding::{Canonical, DecodeError, Reader, Tagged, decode_seq, encode_seq};
use crate::genesis::{ClearingRule, MAX_MEMBERS};
use crate::market::{MAX_BID_STEPS, SignedBatch, SignedBid, Trade};
use crate::units::{NodeId, ParticipantId, Price, Quantity};

use super::types::{MAX_SYNC_BLOCKS, Message, Proposal};
use super::wire::{MAX_WIRE_LEN, MESSAGE_OVERHEAD, invalid};

/// A batch named by reference: enough for the receiver to find it among the batches it holds,
/// and for the sender to find it in its store when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchRef {
    /// The height the batch is for.
    pub height: u64,
    /// Its home node.
    pub home: NodeId,
    /// The digest of the signed batch.
    pub digest: Digest,
}
crate::canonical_struct!(BatchRef {
    height,
    home,
    digest
});

impl BatchRef {
    /// The reference to `batch`.
    pub fn to(batch: &SignedBatch) -> Self {
        Self {
            height: batch.body.height,
            home: batch.body.home,
            digest: digest_of(batch),
        }
    }
}

/// The most a sync response frame carries (catch-up sends committed blocks in chunks of at
/// most this many bytes; a block larger on its own goes alone).
pub const SYNC_CHUNK_BYTES: usize = 16 * 1024 * 1024;

// ----- Every message of a valid round fits one frame (spec D25) -----
//
// A frame's size is bounded by the limits of what it carries, each counted at its encoded
// size; the build fails if a limit is raised past the frame limit. A block body's frame holds:
// - a reference per batch, at most one batch per member;
// - per bid step of the round (at most the rule's `max_round_steps`, each home node's batch at
//   most its share, D25), plus the steps of the upheld omission appeals' bids: one award, and
//   at most one trade under a coupled rule (one per cleared bid, no counterparty) or two under
//   pay-as-bid (two per match, one per side, and every match but a product's last exhausts a
//   step); every award and trade of a valid block names a bid of its batches or appeals
//   (V6), so each travels by position. A rejected bid has no award or trade, and its
//   rejection is smaller than one step's award;
// - the appeals (at most `MAX_APPEALS`);
// - the objections (at most `MAX_NEGOTIATION_BYTES`), and the clearing's cuts as places in
//   them (V8: every cut comes from a recorded security objection);
// - the outcome's prices and flows (at most `MAX_OUTCOME_ROWS` each), the skipped primaries,
//   the skip certificate, the evidence and the fixed fields.

/// Encoded sizes of the fixed-size items a frame carries, checked against their encodings by
/// `the_frame_bound_counts_each_item_at_its_encoded_size`.
const SEQ_LEN: usize = 4;
const BID_AT_LEN: usize = 2 + 4;
const AWARD_AT_LEN: usize = 1 + BID_AT_LEN + 2 + 8;
/// A trade by position without a counterparty (a coupled rule's), and with one.
const TRADE_AT_LEN: [usize; 2] = [1 + BID_AT_LEN + 8 + 8 + 1, 1 + BID_AT_LEN + 8 + 8 + 1 + 4];
const CUT_ENTRY_LEN: usize = 1 + 2 + 2;
const BATCH_REF_LEN: usize = 8 + 2 + 32;
const REJECTION_LEN: usize = 32 + 1;
const PRODUCT_LEN: usize = 8 + 4 + 1 + 1;
/// An area price, a bus price, a tie flow and a cut price.
const OUTCOME_ROW_LEN: usize =
    (PRODUCT_LEN + 2 + 8) + (PRODUCT_LEN + 4 + 8) + (PRODUCT_LEN + 2 + 8) + 8;
/// Everything of a body that is not a list, and the lists' lengths, generously.
const BODY_FIXED_LEN: usize = 512;
/// A place's list lengths and kept prefixes.
const PLACE_FIXED_LEN: usize = 4 * SEQ_LEN + 4 + 4;
/// Everything of a frame around its bodies: the encoding's tag and version, the base, the
/// message's variant, a proposal's stamp and header or a block's header and certificate, and
/// the places' fixed fields.
const FRAME_FIXED_LEN: usize = MESSAGE_OVERHEAD
    + 1
    + 48
    + <Signed<crate::block::Vote> as Tagged>::MAX_ENCODED_LEN
    + <crate::block::BlockHeader as Tagged>::MAX_ENCODED_LEN
    + <crate::block::QuorumCertificate as Tagged>::MAX_ENCODED_LEN
    + SEQ_LEN
    + PLACE_FIXED_LEN;

/// The most one bid step adds to a body's frame, with `trades` trades per step at `trade_len`
/// bytes each.
const fn step_len(trades: usize, trade_len: usize) -> usize {
    let len = AWARD_AT_LEN + trades * trade_len;
    if len > REJECTION_LEN {
        len
    } else {
        REJECTION_LEN
    }
}

/// The most a block body's frame takes under `rule` (spec D25).
pub const fn body_frame_bound(rule: ClearingRule) -> usize {
    let step = match rule {
        ClearingRule::PayAsBid => step_len(2, TRADE_AT_LEN[1]),
        ClearingRule::UniformPrice | ClearingRule::ZonalCoupling => step_len(1, TRADE_AT_LEN[0]),
    };
    BODY_FIXED_LEN
        + MAX_MEMBERS * BATCH_REF_LEN
        + (rule.max_round_steps() + MAX_APPEALS * MAX_BID_STEPS) * step
        + MAX_APPEALS * (<Signed<Appeal> as Tagged>::MAX_ENCODED_LEN + 2 + 5)
        + MAX_NEGOTIATION_BYTES
        + MAX_OUTCOME_ROWS * (CUT_ENTRY_LEN + OUTCOME_ROW_LEN)
        + MAX_VIEW as usize * 2
        + 1
        + <SkipCertificate as Tagged>::MAX_ENCODED_LEN
        + MAX_EVIDENCE * <Evidence as Tagged>::MAX_ENCODED_LEN
}

/// The most any frame takes under `rule`: a proposal, a decided block or a sync response's
/// lone block (a body and the fixed fields around it), or a skip vote with its locked
/// proposal and held batches.
pub const fn frame_bound(rule: ClearingRule) -> usize {
    FRAME_FIXED_LEN
        + body_frame_bound(rule)
        // A proposal's justification.
        + 1
        + <SkipCertificate as Tagged>::MAX_ENCODED_LEN
        // A skip vote's signed vote, its locked proposal's option byte and its held batches'
        // place.
        + <Signed<SkipVote> as Tagged>::MAX_ENCODED_LEN
        + 1
        + PLACE_FIXED_LEN
        + MAX_MEMBERS * BATCH_REF_LEN
}

const _: () = {
    // Sent as a message, or as the answer to a proposal fetch (a response around the frame).
    assert!(frame_bound(ClearingRule::PayAsBid) + MESSAGE_OVERHEAD <= MAX_WIRE_LEN);
    assert!(frame_bound(ClearingRule::UniformPrice) + MESSAGE_OVERHEAD <= MAX_WIRE_LEN);
    assert!(frame_bound(ClearingRule::ZonalCoupling) + MESSAGE_OVERHEAD <= MAX_WIRE_LEN);
    // The decode limits admit every valid round: an award per step, at most two trades per
    // step, a rejection per bid.
    let coupled = crate::genesis::MAX_ROUND_STEPS_COUPLED + MAX_APPEALS * MAX_BID_STEPS;
    let matched = crate::genesis::MAX_ROUND_STEPS_MATCHED + MAX_APPEALS * MAX_BID_STEPS;
    assert!(coupled <= MAX_AWARDS && matched <= MAX_AWARDS);
    assert!(coupled <= crate::block::MAX_BLOCK_TRADES);
    assert!(2 * matched <= crate::block::MAX_BLOCK_TRADES);
    // A sync response of several blocks holds at most SYNC_CHUNK_BYTES of them.
    assert!(SYNC_CHUNK_BYTES + FRAME_FIXED_LEN <= MAX_WIRE_LEN);
    // A view certificate: the certificate and a reference per member's batch.
    assert!(
        FRAME_FIXED_LEN
            + <SkipCertificate as Tagged>::MAX_ENCODED_LEN
            + MAX_MEMBERS * BATCH_REF_LEN
            <= MAX_WIRE_LEN
    );
};

/// Most places (batch lists and block bodies) one frame may hold: a sync response's blocks, or
/// a skip vote's locked proposal and its held batches.
const MAX_PLACES: usize = MAX_SYNC_BLOCKS as usize;

/// A bid's position among a block body's bids ([`bid_lists`]): the batch, or one past the
/// last batch for the bids of upheld omission appeals, and the bid's index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BidAt {
    batch: u16,
    bid: u32,
}
crate::canonical_struct!(BidAt { batch, bid });

/// An award or a trade of a body as it travels: a new entry or, in a revision frame, a run
/// of the base revision's items kept or passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Edit<E> {
    New(E),
    /// The next this many of the base revision's items, unchanged.
    Keep(u32),
    /// This many of the base revision's items left out.
    Skip(u32),
}

/// An entry that travels inside an [`Edit`]: its own discriminants are 0 and 1, and an edit's
/// 2 (keep) and 3 (skip), so an edit costs no byte of its own.
trait Entry: Sized {
    /// Appends the entry's discriminant and fields.
    fn encode_entry(&self, out: &mut Vec<u8>);
    /// Reads the fields of the entry whose discriminant is `tag`.
    fn decode_entry(tag: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

impl<E: Entry> Canonical for Edit<E> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Edit::New(e) => e.encode_entry(out),
            Edit::Keep(n) => {
                out.push(2);
                n.encode(out);
            }
            Edit::Skip(n) => {
                out.push(3);
                n.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            2 => Edit::Keep(u32::decode(r)?),
            3 => Edit::Skip(u32::decode(r)?),
            tag => Edit::New(E::decode_entry(tag, r)?),
        })
    }
}

/// A step award as it travels: by its bid's position, or whole.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AwardEntry {
    At {
        at: BidAt,
        step: u16,
        quantity: Quantity,
    },
    Whole(StepAward),
}

impl Entry for AwardEntry {
    fn encode_entry(&self, out: &mut Vec<u8>) {
        match self {
            AwardEntry::At { at, step, quantity } => {
                out.push(0);
                at.encode(out);
                step.encode(out);
                quantity.encode(out);
            }
            AwardEntry::Whole(a) => {
                out.push(1);
                a.encode(out);
            }
        }
    }
    fn decode_entry(tag: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match tag {
            0 => AwardEntry::At {
                at: BidAt::decode(r)?,
                step: u16::decode(r)?,
                quantity: Quantity::decode(r)?,
            },
            1 => AwardEntry::Whole(StepAward::decode(r)?),
            value => return Err(invalid(value)),
        })
    }
}

/// A trade as it travels: by its bid's position with what the bid does not say, or whole.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TradeEntry {
    At {
        at: BidAt,
        quantity: Quantity,
        price: Price,
        counterparty: Option<ParticipantId>,
    },
    Whole(Box<Trade>),
}

impl Entry for TradeEntry {
    fn encode_entry(&self, out: &mut Vec<u8>) {
        match self {
            TradeEntry::At {
                at,
                quantity,
                price,
                counterparty,
            } => {
                out.push(0);
                at.encode(out);
                quantity.encode(out);
                price.encode(out);
                counterparty.encode(out);
            }
            TradeEntry::Whole(t) => {
                out.push(1);
                t.encode(out);
            }
        }
    }
    fn decode_entry(tag: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match tag {
            0 => TradeEntry::At {
                at: BidAt::decode(r)?,
                quantity: Quantity::decode(r)?,
                price: Price::decode(r)?,
                counterparty: Option::decode(r)?,
            },
            1 => TradeEntry::Whole(Box::new(Trade::decode(r)?)),
            value => return Err(invalid(value)),
        })
    }
}

/// One of the clearing's cuts as it travels: the `cut`-th cut of the body's `objection`-th
/// objection (a security objection the cut came from), or carried in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CutEntry {
    Carried,
    In { objection: u16, cut: u16 },
}

impl Canonical for CutEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            CutEntry::Carried => out.push(0),
            CutEntry::In { objection, cut } => {
                out.push(1);
                objection.encode(out);
                cut.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => CutEntry::Carried,
            1 => CutEntry::In {
                objection: u16::decode(r)?,
                cut: u16::decode(r)?,
            },
            value => return Err(invalid(value)),
        })
    }
}

/// What a frame says about one place of its message: the batches it names and, for a block
/// body, the awards, the trades and the clearing's cuts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Place {
    batches: Vec<BatchRef>,
    awards: Vec<Edit<AwardEntry>>,
    trades: Vec<Edit<TradeEntry>>,
    /// The clearing's cuts after the kept prefix, in order.
    cuts: Vec<CutEntry>,
    /// In a revision frame: how many of the base revision's objections, then of its cuts,
    /// begin this body's lists (the message carries the rest). Zero otherwise.
    kept_objections: u32,
    kept_cuts: u32,
}
crate::canonical_struct!(Place {
    batches: seq(MAX_MEMBERS),
    awards: seq(MAX_AWARDS),
    trades: seq(MAX_AWARDS),
    cuts: seq(MAX_OUTCOME_ROWS),
    kept_objections,
    kept_cuts,
});

/// The proposal a revision frame is written against: the sender's previous revision of the
/// same view, by its header's digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BaseRef {
    /// The height.
    pub height: u64,
    /// The view.
    pub view: u32,
    /// The base's revision.
    pub revision: u32,
    /// The digest of the base's header.
    pub block: Digest,
}
crate::canonical_struct!(BaseRef {
    height,
    view,
    revision,
    block
});

impl BaseRef {
    /// The reference to proposal `p`.
    pub fn of(p: &Proposal) -> Self {
        let (view, revision) = p.round();
        Self {
            height: p.height(),
            view,
            revision,
            block: p.header.digest(),
        }
    }
}

/// A node message in compact form, as it is read off the wire: the message with every named
/// batch, award and trade left out, and what each place of it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// For a revision written against the sender's previous revision: that revision.
    base: Option<BaseRef>,
    message: Message,
    places: Vec<Place>,
}

impl Canonical for Frame {
    fn encode(&self, out: &mut Vec<u8>) {
        self.base.encode(out);
        self.message.encode(out);
        encode_seq(&self.places, out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let base = Option::decode(r).map_err(|e| e.within("base"))?;
        let message = Message::decode(r).map_err(|e| e.within("message"))?;
        let places = decode_seq(r, MAX_PLACES).map_err(|e| e.within("places"))?;
        Ok(Frame {
            base,
            message,
            places,
        })
    }
}
crate::tagged!(Frame, 0x0505, "node-frame", MAX_WIRE_LEN);

/// Why a frame could not be turned back into its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The receiver does not hold a batch the frame names (ask the sender for it).
    #[error("batch {home}@{height} ({digest}) is not held", home = .0.home, height = .0.height, digest = .0.digest)]
    Missing(BatchRef),
    /// The frame is a revision written against a proposal the receiver does not hold (ask
    /// the sender for the whole frame).
    #[error("revision frame against proposal {revision} of height {height}, view {view} ({block}), which is not held", height = .0.height, view = .0.view, revision = .0.revision, block = .0.block)]
    MissingBase(BaseRef),
    /// The frame's places do not match its message, or a position names no bid.
    #[error("malformed compact frame: {0}")]
    Malformed(&'static str),
}

/// The compact frame of `msg`, tagged and versioned: what a member sends another.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut places = Vec::new();
    let message = strip(msg, &mut places);
    Frame {
        base: None,
        message,
        places,
    }
    .to_canonical_bytes()
}

/// The compact frame of a revision, written against `base`, the sender's previous revision of
/// the same view (spec 1.3, frames): the body's objections and cuts as the base's that begin
/// them plus the rest, its awards and trades as edits of the base's (keep the next n, skip the
/// next n, or a new entry). `None` if `msg` is no later revision of `base`'s view. A receiver
/// that holds `base` resolves it with [`Frame::resolve_against`] to exactly `msg`; one that
/// does not asks the sender for the whole frame.
pub fn encode_revision(msg: &Message, base: &Proposal) -> Option<Vec<u8>> {
    let Message::Proposal(p) = msg else {
        return None;
    };
    let ((view, revision), (base_view, base_revision)) = (p.round(), base.round());
    if p.height() != base.height() || view != base_view || revision <= base_revision {
        return None;
    }
    let mut places = Vec::new();
    let mut stripped = strip_proposal(p, &mut places);
    let place = places.pop()?;
    let body = std::sync::Arc::get_mut(&mut stripped.body)?;
    let (new, old) = (&p.body.process, &base.body.process);
    let kept_objections = common_prefix(&old.objections, &new.objections);
    let kept_cuts = common_prefix(&old.clearing.cuts, &new.clearing.cuts);
    body.process.objections.drain(..kept_objections);
    // The kept cuts leave the entries; those of them the message carried leave it too.
    let mut cuts = place.cuts;
    let carried = cuts
        .drain(..kept_cuts)
        .filter(|c| *c == CutEntry::Carried)
        .count();
    body.process.clearing.cuts.drain(..carried);
    let place = Place {
        batches: place.batches,
        cuts,
        awards: edits(
            &old.clearing.outcome.awards,
            &new.clearing.outcome.awards,
            place.awards,
        ),
        trades: edits(&base.body.trades, &p.body.trades, place.trades),
        // The lists are bounded far below u32::MAX (MAX_OBJECTIONS, MAX_OUTCOME_ROWS).
        kept_objections: kept_objections as u32,
        kept_cuts: kept_cuts as u32,
    };
    Some(
        Frame {
            base: Some(BaseRef::of(base)),
            message: Message::Proposal(Box::new(stripped)),
            places: vec![place],
        }
        .to_canonical_bytes(),
    )
}

/// How many items `a` and `b` share from their start.
fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `new` (whose entries are `entries`, one new entry per item) as edits of `base`: runs of
/// the base's items kept, runs passed over, and new entries. Linear: an item not next in the base is
/// looked up by value, and found only ahead of the place in the base. Any sequence of edits
/// rebuilds `new` exactly; this one is short when `new` keeps most of `base` in order, as a
/// revision does (it re-clears the products a new cut touches).
fn edits<T: Eq + std::hash::Hash, E>(base: &[T], new: &[T], entries: Vec<Edit<E>>) -> Vec<Edit<E>> {
    let mut first: HashMap<&T, usize> = HashMap::with_capacity(base.len());
    for (i, t) in base.iter().enumerate() {
        first.entry(t).or_insert(i);
    }
    let (mut out, mut at, mut run) = (Vec::new(), 0usize, 0u32);
    for (t, e) in new.iter().zip(entries) {
        if base.get(at) == Some(t) {
            run += 1;
            at += 1;
            continue;
        }
        if run > 0 {
            out.push(Edit::Keep(run));
            run = 0;
        }
        match first.get(t) {
            Some(&k) if k > at => {
                // Item counts are bounded far below u32::MAX (MAX_AWARDS).
                out.push(Edit::Skip((k - at) as u32));
                at = k + 1;
                run = 1;
            }
            _ => out.push(e),
        }
    }
    if run > 0 {
        out.push(Edit::Keep(run));
    }
    out
}

/// The bytes `block` adds to a compact sync response frame.
pub fn block_len(block: &Block) -> usize {
    let mut places = Vec::new();
    let mut out = Vec::new();
    strip_block(block, &mut places).encode(&mut out);
    encode_seq(&places, &mut out);
    out.len()
}

impl Frame {
    /// Every batch the frame names, in order (a batch may be named more than once).
    pub fn wanted(&self) -> impl Iterator<Item = &BatchRef> + '_ {
        self.places.iter().flat_map(|p| p.batches.iter())
    }

    /// The proposal a revision frame is written against, if it is one.
    pub fn base(&self) -> Option<&BaseRef> {
        self.base.as_ref()
    }

    /// The round (height, view, revision) of the proposal the frame carries, if it carries one.
    pub fn proposal_round(&self) -> Option<(u64, u32, u32)> {
        match &self.message {
            Message::Proposal(p) => Some((p.height(), p.round().0, p.round().1)),
            _ => None,
        }
    }

    /// Rebuilds the message, taking each named batch from `held`, which must answer a
    /// reference only with the batch of that digest (a [`BatchStore`] does).
    pub fn resolve(
        self,
        held: impl Fn(&BatchRef) -> Option<SignedBatch>,
    ) -> Result<Message, ResolveError> {
        self.resolve_against(held, None)
    }

    /// [`Frame::resolve`], for a revision frame with the proposal it is written against
    /// (the sender's previous revision, as this node resolved it); a frame that is no revision
    /// frame ignores `base`.
    pub fn resolve_against(
        self,
        held: impl Fn(&BatchRef) -> Option<SignedBatch>,
        base: Option<&Proposal>,
    ) -> Result<Message, ResolveError> {
        let Frame {
            base: wanted,
            mut message,
            places,
        } = self;
        let base = match wanted {
            None => None,
            Some(w) => match base {
                Some(b) if BaseRef::of(b) == w => Some(&*b.body),
                _ => return Err(ResolveError::MissingBase(w)),
            },
        };
        if base.is_some() && !matches!(message, Message::Proposal(_)) {
            return Err(ResolveError::Malformed(
                "only a proposal is sent as a revision",
            ));
        }
        let mut places = places.into_iter();
        let mut next = || {
            places
                .next()
                .ok_or(ResolveError::Malformed("too few places"))
        };
        match &mut message {
            Message::Proposal(p) => fill_proposal(p, next()?, &held, base)?,
            Message::Decided(b) => fill_body(&mut b.body, next()?, &held, None)?,
            Message::Skip(_, locked, batches) => {
                if let Some(p) = locked {
                    fill_proposal(p, next()?, &held, None)?;
                }
                *batches = fill_batches(batches, next()?, &held)?;
            }
            Message::ViewCertificate(_, batches) => {
                *batches = fill_batches(batches, next()?, &held)?;
            }
            Message::SyncResponse(blocks) => {
                for b in blocks {
                    fill_body(&mut b.body, next()?, &held, None)?;
                }
            }
            Message::Batch(_)
            | Message::Vote(_)
            | Message::Endorsed(_)
            | Message::Objection(..)
            | Message::Appeal { .. }
            | Message::SyncRequest { .. } => {}
        }
        if places.next().is_some() {
            return Err(ResolveError::Malformed("more places than the message has"));
        }
        Ok(message)
    }
}

/// The message with every place's batches, awards and trades left out, each place's contents
/// appended to `places` in the order [`Frame::resolve`] reads them.
fn strip(msg: &Message, places: &mut Vec<Place>) -> Message {
    match msg {
        Message::Proposal(p) => Message::Proposal(Box::new(strip_proposal(p, places))),
        Message::Decided(b) => Message::Decided(Box::new(strip_block(b, places))),
        Message::Skip(vote, locked, batches) => {
            let locked = locked.as_ref().map(|p| Box::new(strip_proposal(p, places)));
            places.push(Place::of_batches(batches));
            Message::Skip(vote.clone(), locked, Vec::new())
        }
        Message::ViewCertificate(c, batches) => {
            places.push(Place::of_batches(batches));
            Message::ViewCertificate(c.clone(), Vec::new())
        }
        Message::SyncResponse(blocks) => {
            Message::SyncResponse(blocks.iter().map(|b| strip_block(b, places)).collect())
        }
        Message::Batch(_)
        | Message::Vote(_)
        | Message::Endorsed(_)
        | Message::Objection(..)
        | Message::Appeal { .. }
        | Message::SyncRequest { .. } => msg.clone(),
    }
}

fn strip_proposal(p: &Proposal, places: &mut Vec<Place>) -> Proposal {
    Proposal {
        stamp: p.stamp.clone(),
        header: p.header.clone(),
        body: std::sync::Arc::new(strip_body(&p.body, places)),
        justification: p.justification.clone(),
    }
}

fn strip_block(b: &Block, places: &mut Vec<Place>) -> Block {
    Block {
        header: b.header.clone(),
        body: strip_body(&b.body, places),
        certificate: b.certificate.clone(),
    }
}

/// The body without its batches, awards and trades, which go to a new place.
fn strip_body(body: &BlockBody, places: &mut Vec<Place>) -> BlockBody {
    let p = &body.process;
    let lists = bid_lists(p);
    let positions = positions(&lists);
    let at = |bid: &Digest| positions.get(bid).copied();
    let outcome = &p.clearing.outcome;
    let awards = outcome
        .awards
        .iter()
        .map(|a| {
            Edit::New(match at(&a.bid) {
                Some(at) => AwardEntry::At {
                    at,
                    step: a.step,
                    quantity: a.quantity,
                },
                None => AwardEntry::Whole(*a),
            })
        })
        .collect();
    let trades = body
        .trades
        .iter()
        .map(|t| {
            Edit::New(match at(&t.bid).filter(|at| describes(&lists, *at, t)) {
                Some(at) => TradeEntry::At {
                    at,
                    quantity: t.quantity,
                    price: t.price,
                    counterparty: t.counterparty,
                },
                None => TradeEntry::Whole(Box::new(t.clone())),
            })
        })
        .collect();
    let (cuts, carried) = cut_entries(&p.objections, &p.clearing.cuts);
    places.push(Place {
        batches: p.batches.iter().map(BatchRef::to).collect(),
        awards,
        trades,
        cuts,
        kept_objections: 0,
        kept_cuts: 0,
    });
    BlockBody {
        trades: Vec::new(),
        process: ProcessData {
            batches: Vec::new(),
            clearing: ClearingRecord {
                rule: p.clearing.rule,
                cuts: carried,
                outcome: ClearingOutcome {
                    awards: Vec::new(),
                    area_prices: outcome.area_prices.clone(),
                    bus_prices: outcome.bus_prices.clone(),
                    flows: outcome.flows.clone(),
                    cut_prices: outcome.cut_prices.clone(),
                    congestion_rent: outcome.congestion_rent,
                    welfare: outcome.welfare,
                },
            },
            objections: p.objections.clone(),
            appeals: p.appeals.clone(),
            rejections: p.rejections.clone(),
            skipped: p.skipped.clone(),
            skip_certificate: p.skip_certificate.clone(),
            evidence: p.evidence.clone(),
        },
    }
}

impl Place {
    fn of_batches(batches: &[SignedBatch]) -> Self {
        Place {
            batches: batches.iter().map(BatchRef::to).collect(),
            awards: Vec::new(),
            trades: Vec::new(),
            cuts: Vec::new(),
            kept_objections: 0,
            kept_cuts: 0,
        }
    }
}

/// The security cuts of `objections`, each by its place (objection index, cut index).
fn objection_cuts(
    objections: &[Signed<Objection>],
) -> impl Iterator<Item = ((usize, usize), &Cut)> {
    objections
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match &o.body.reason {
            ObjectionReason::Security { cuts } => Some((i, cuts)),
            _ => None,
        })
        .flat_map(|(i, cuts)| cuts.iter().enumerate().map(move |(j, c)| ((i, j), c)))
}

/// The clearing's `cuts` as entries: each by its first place among the security cuts of
/// `objections`, or carried; and the carried cuts, in order.
fn cut_entries(objections: &[Signed<Objection>], cuts: &[Cut]) -> (Vec<CutEntry>, Vec<Cut>) {
    let mut first: HashMap<&Cut, (usize, usize)> = HashMap::new();
    for (at, c) in objection_cuts(objections) {
        first.entry(c).or_insert(at);
    }
    let mut carried = Vec::new();
    let entries = cuts
        .iter()
        .map(|c| match first.get(c) {
            // Places fit: at most MAX_OBJECTIONS objections of MAX_CUTS_PER_OBJECTION cuts.
            Some(&(objection, cut)) => CutEntry::In {
                objection: objection as u16,
                cut: cut as u16,
            },
            None => {
                carried.push(c.clone());
                CutEntry::Carried
            }
        })
        .collect();
    (entries, carried)
}

/// The bids a body's positions name, list by list: each batch's, then the bids of its upheld
/// omission appeals, which its clearing takes after the batches' (spec V5).
fn bid_lists(p: &ProcessData) -> Vec<Vec<&SignedBid>> {
    let mut lists: Vec<Vec<&SignedBid>> = p
        .batches
        .iter()
        .map(|b| b.body.bids.iter().collect())
        .collect();
    lists.push(
        p.appeals
            .iter()
            .filter_map(|a| a.upheld_omission().map(|(bid, _)| bid))
            .collect(),
    );
    lists
}

/// Where each bid of `lists` is, by id (the first position of a repeated bid).
fn positions(lists: &[Vec<&SignedBid>]) -> DigestMap<BidAt> {
    let mut at =
        DigestMap::with_capacity_and_hasher(lists.iter().map(Vec::len).sum(), Default::default());
    for (i, list) in lists.iter().enumerate() {
        for (j, sb) in list.iter().enumerate() {
            // Positions fit: at most MAX_MEMBERS batches of at most MAX_BATCH_BIDS bids, and
            // MAX_APPEALS appeals.
            let pos = BidAt {
                batch: i as u16,
                bid: j as u32,
            };
            at.entry(sb.body.id()).or_insert(pos);
        }
    }
    at
}

/// The bid at `at`, if there is one.
fn bid_at<'a>(lists: &[Vec<&'a SignedBid>], at: BidAt) -> Option<&'a SignedBid> {
    lists
        .get(at.batch as usize)
        .and_then(|l| l.get(at.bid as usize))
        .copied()
}

/// Whether the bid at `at` says everything of `t` that a positional entry leaves out.
fn describes(lists: &[Vec<&SignedBid>], at: BidAt, t: &Trade) -> bool {
    let Some(b) = bid_at(lists, at).map(|sb| &sb.body) else {
        return false;
    };
    b.participant == t.participant
        && b.side == t.side
        && b.area == t.area
        && b.bus == t.bus
        && b.product == t.product
}

/// The batches `refs` names, in order.
fn take_batches(
    refs: &[BatchRef],
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
) -> Result<Vec<SignedBatch>, ResolveError> {
    refs.iter()
        .map(|r| held(r).ok_or(ResolveError::Missing(*r)))
        .collect()
}

/// A batch list's place: references only, in place of a list the frame left empty.
fn fill_batches(
    stripped: &[SignedBatch],
    place: Place,
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
) -> Result<Vec<SignedBatch>, ResolveError> {
    if !stripped.is_empty()
        || !place.awards.is_empty()
        || !place.trades.is_empty()
        || !place.cuts.is_empty()
        || place.kept_objections != 0
        || place.kept_cuts != 0
    {
        return Err(ResolveError::Malformed(
            "a batch list carries more than refs",
        ));
    }
    take_batches(&place.batches, held)
}

fn fill_proposal(
    p: &mut Proposal,
    place: Place,
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
    base: Option<&BlockBody>,
) -> Result<(), ResolveError> {
    let body = std::sync::Arc::make_mut(&mut p.body);
    fill_body(body, place, held, base)
}

/// `base`'s first `kept` items, then `rest`.
fn prefixed<T: Clone>(base: &[T], kept: u32, rest: &mut Vec<T>) -> Result<(), ResolveError> {
    let head = base.get(..kept as usize).ok_or(ResolveError::Malformed(
        "a kept prefix longer than the base's list",
    ))?;
    rest.splice(0..0, head.iter().cloned());
    Ok(())
}

/// The items `edits` rebuild: `Keep` copies the base's next items, `Skip` passes them over
/// (both only in a revision frame, within the base's list), and a new entry is resolved by
/// `new`.
fn apply<T: Clone, E>(
    edits: Vec<Edit<E>>,
    base: Option<&[T]>,
    mut new: impl FnMut(E) -> Result<T, ResolveError>,
) -> Result<Vec<T>, ResolveError> {
    let (mut out, mut at) = (Vec::with_capacity(edits.len()), 0usize);
    for e in edits {
        let (n, copy) = match e {
            Edit::New(e) => {
                out.push(new(e)?);
                continue;
            }
            Edit::Keep(n) => (n, true),
            Edit::Skip(n) => (n, false),
        };
        let base = base.ok_or(ResolveError::Malformed(
            "an edit in a frame that is no revision",
        ))?;
        let end = at
            .checked_add(n as usize)
            .filter(|e| *e <= base.len())
            .ok_or(ResolveError::Malformed("an edit past the base's list"))?;
        if copy {
            out.extend_from_slice(&base[at..end]);
        }
        at = end;
    }
    Ok(out)
}

fn fill_body(
    body: &mut BlockBody,
    place: Place,
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
    base: Option<&BlockBody>,
) -> Result<(), ResolveError> {
    let p = &mut body.process;
    if !p.batches.is_empty() || !p.clearing.outcome.awards.is_empty() || !body.trades.is_empty() {
        return Err(ResolveError::Malformed(
            "a stripped body still carries batches, awards or trades",
        ));
    }
    let mut cuts = Vec::with_capacity(place.cuts.len());
    match base {
        Some(b) => {
            prefixed(
                &b.process.objections,
                place.kept_objections,
                &mut p.objections,
            )?;
            prefixed(&b.process.clearing.cuts, place.kept_cuts, &mut cuts)?;
        }
        None if place.kept_objections != 0 || place.kept_cuts != 0 => {
            return Err(ResolveError::Malformed(
                "a kept prefix in a frame that is no revision",
            ));
        }
        None => {}
    }
    let mut carried = std::mem::take(&mut p.clearing.cuts).into_iter();
    for entry in place.cuts {
        cuts.push(match entry {
            CutEntry::Carried => carried.next().ok_or(ResolveError::Malformed(
                "more carried cuts named than carried",
            ))?,
            CutEntry::In { objection, cut } => {
                match p.objections.get(objection as usize).map(|o| &o.body.reason) {
                    Some(ObjectionReason::Security { cuts }) => cuts
                        .get(cut as usize)
                        .cloned()
                        .ok_or(ResolveError::Malformed("a cut place names no cut"))?,
                    _ => {
                        return Err(ResolveError::Malformed(
                            "a cut place names no security objection",
                        ));
                    }
                }
            }
        });
    }
    if carried.next().is_some() {
        return Err(ResolveError::Malformed("a carried cut no place names"));
    }
    p.clearing.cuts = cuts;
    let base_awards = base.map(|b| b.process.clearing.outcome.awards.as_slice());
    let base_trades = base.map(|b| b.trades.as_slice());
    p.batches = take_batches(&place.batches, held)?;
    let lists = bid_lists(p);
    let ids: Vec<Vec<Digest>> = if place
        .awards
        .iter()
        .any(|a| matches!(a, Edit::New(AwardEntry::At { .. })))
        || place
            .trades
            .iter()
            .any(|t| matches!(t, Edit::New(TradeEntry::At { .. })))
    {
        lists
            .iter()
            .map(|l| l.iter().map(|sb| sb.body.id()).collect())
            .collect()
    } else {
        Vec::new()
    };
    let id_at = |at: BidAt| {
        ids.get(at.batch as usize)
            .and_then(|b| b.get(at.bid as usize))
            .copied()
            .ok_or(ResolveError::Malformed("a position names no bid"))
    };
    let awards = apply(place.awards, base_awards, |a| {
        Ok(match a {
            AwardEntry::At { at, step, quantity } => StepAward {
                bid: id_at(at)?,
                step,
                quantity,
            },
            AwardEntry::Whole(a) => a,
        })
    })?;
    let trades = apply(place.trades, base_trades, |t| {
        Ok(match t {
            TradeEntry::At {
                at,
                quantity,
                price,
                counterparty,
            } => {
                let bid = id_at(at)?;
                let b = &bid_at(&lists, at)
                    .ok_or(ResolveError::Malformed("a position names no bid"))?
                    .body;
                Trade {
                    bid,
                    participant: b.participant,
                    side: b.side,
                    area: b.area,
                    bus: b.bus,
                    product: b.product,
                    quantity,
                    price,
                    counterparty,
                }
            }
            TradeEntry::Whole(t) => *t,
        })
    })?;
    drop(lists);
    p.clearing.outcome.awards = awards;
    body.trades = trades;
    Ok(())
}

/// How many heights past its floor a [`BatchStore`] keeps batches for: the height in progress
/// and a few that peers ahead of this node may already be deciding.
pub const BATCH_HEIGHTS_AHEAD: u64 = 4;

/// Most batches a [`BatchStore`] keeps of one home node for one height: its batch, and one
/// more (a batch it revised by equivocating, which the protocol records as evidence).
pub const BATCHES_PER_HOME_HEIGHT: usize = 2;

/// The batches a member holds, by digest: what its compact frames are resolved against, and
/// what it serves a peer that asks for a batch it named. It keeps batches of heights from its
/// floor (the last committed height, set by [`BatchStore::prune_below`]) to
/// [`BATCH_HEIGHTS_AHEAD`] past it, at most [`BATCHES_PER_HOME_HEIGHT`] of each home for each
/// height, so it stays bounded whatever peers send; older batches are in the committed chain.
/// A batch it does not keep is still resolved against once, from the frame's fetch.
#[derive(Clone, Debug, Default)]
pub struct BatchStore {
    batches: DigestMap<SignedBatch>,
    /// How many are kept per (height, home).
    per_home: HashMap<(u64, NodeId), usize>,
    floor: u64,
}

impl BatchStore {
    /// Keeps `batch` if its height is in the window and its home has room at that height.
    fn admit(&mut self, digest: Digest, batch: &SignedBatch) {
        let (height, home) = (batch.body.height, batch.body.home);
        if height < self.floor
            || height - self.floor > BATCH_HEIGHTS_AHEAD
            || self.batches.contains_key(&digest)
        {
            return;
        }
        let count = self.per_home.entry((height, home)).or_default();
        if *count < BATCHES_PER_HOME_HEIGHT {
            *count += 1;
            self.batches.insert(digest, batch.clone());
        }
    }

    /// Keeps `batch` if the store has room for it; returns its reference.
    pub fn insert(&mut self, batch: SignedBatch) -> BatchRef {
        let r = BatchRef::to(&batch);
        self.admit(r.digest, &batch);
        r
    }

    /// Keeps every batch `msg` carries (a message this node sent, or received and resolved)
    /// that the store has room for.
    pub fn keep(&mut self, msg: &Message) {
        for b in batches_of(msg) {
            self.admit(digest_of(b), b);
        }
    }

    /// The batch `r` names, if held.
    pub fn get(&self, r: &BatchRef) -> Option<&SignedBatch> {
        self.batches.get(&r.digest)
    }

    /// Drops every batch of a height below `height`, and keeps none below it from now on.
    pub fn prune_below(&mut self, height: u64) {
        self.floor = self.floor.max(height);
        let floor = self.floor;
        self.batches.retain(|_, b| b.body.height >= floor);
        self.per_home.retain(|(h, _), _| *h >= floor);
    }

    /// How many batches are held.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// Every batch a (whole) message carries: what a node learns of batches from a message it
/// sent, or received and resolved.
pub fn batches_of(msg: &Message) -> Vec<&SignedBatch> {
    fn body(b: &BlockBody) -> impl Iterator<Item = &SignedBatch> {
        b.process.batches.iter()
    }
    match msg {
        Message::Batch(b) => vec![b],
        Message::Objection(_, b) => b.iter().map(|b| &**b).collect(),
        Message::Proposal(p) => body(&p.body).collect(),
        Message::Decided(b) => body(&b.body).collect(),
        Message::Skip(_, locked, batches) => locked
            .iter()
            .flat_map(|p| body(&p.body))
            .chain(batches.iter())
            .collect(),
        Message::ViewCertificate(_, batches) => batches.iter().collect(),
        Message::SyncResponse(blocks) => blocks.iter().flat_map(|b| body(&b.body)).collect(),
        Message::Vote(_)
        | Message::Endorsed(_)
        | Message::Appeal { .. }
        | Message::SyncRequest { .. } => Vec::new(),
    }
}

// Positions fit their fields: at most MAX_MEMBERS batches of at most MAX_BATCH_BIDS bids, at
// most MAX_OBJECTIONS objections of at most MAX_CUTS_PER_OBJECTION cuts.
const _: () = {
    assert!(MAX_MEMBERS <= u16::MAX as usize);
    assert!(MAX_OBJECTIONS <= u16::MAX as usize);
    assert!(MAX_CUTS_PER_OBJECTION <= u16::MAX as usize);
    assert!(crate::market::MAX_BATCH_BIDS <= u32::MAX as usize);
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::wire::tests::{committed, message};
    use proptest::prelude::*;
    use std::sync::Arc;

    /// The compact frame of `msg`, as a receiver decodes it.
    fn frame_of(msg: &Message) -> Frame {
        Frame::from_canonical_bytes(&encode(msg)).expect("a frame decodes")
    }

    /// The frame of `msg` resolved against its own batches.
    fn round_trip(msg: &Message) -> Result<Message, ResolveError> {
        let held: HashMap<Digest, SignedBatch> = batches_of(msg)
            .into_iter()
            .map(|b| (digest_of(b), b.clone()))
            .collect();
        let frame = frame_of(msg);
        frame.resolve(|r| held.get(&r.digest).cloned())
    }

    /// The store keeps batches from its floor to BATCH_HEIGHTS_AHEAD past it, at most
    /// BATCHES_PER_HOME_HEIGHT of a home per height, whatever peers send, and pruning raises
    /// the floor.
    #[test]
    fn the_batch_store_keeps_a_bounded_window_of_heights() {
        let (s, _) = committed(1);
        let at = |h: u64| s.batch(0, h, Vec::new());
        let mut store = BatchStore::default();
        store.prune_below(10);
        let kept: Vec<BatchRef> = [9, 10, 14, 15].map(|h| store.insert(at(h))).to_vec();
        assert_eq!(
            kept.iter()
                .map(|r| store.get(r).is_some())
                .collect::<Vec<_>>(),
            [false, true, true, false]
        );
        store.keep(&Message::Batch(at(12)));
        assert_eq!(store.len(), 3);
        // A home's third distinct batch for one height is not kept.
        let other = |nonce| s.batch(0, 12, vec![s.bid(0, 12, nonce)]);
        store.insert(other(1));
        assert_eq!(store.len(), 4);
        let third = store.insert(other(2));
        assert!(store.get(&third).is_none());
        assert_eq!(store.len(), 4);
        store.prune_below(12);
        assert_eq!(store.len(), 3);
        store.prune_below(11);
        assert!(store.get(&BatchRef::to(&at(12))).is_some());
        assert_eq!(store.len(), 3, "the floor never goes down");
    }

    fn skip_with(block: &Block, proposal: Proposal) -> Message {
        let vote = crate::crypto::Signed {
            body: crate::block::SkipVote {
                chain_id: block.header.chain_id,
                height: block.header.height,
                view: 0,
                voter: NodeId(1),
                lock: None,
                held: vec![NodeId(0)],
            },
            signature: crate::crypto::Signature([7; 64]),
        };
        Message::Skip(
            Box::new(vote),
            Some(Box::new(proposal)),
            block.body.process.batches.clone(),
        )
    }

    /// A committed round's block in every message that carries a body: each frame names its
    /// batches and every award and trade by position, is smaller than the whole message, and
    /// resolves to exactly that message (spec 1.3, frames).
    #[test]
    fn every_message_of_a_committed_round_travels_compact_and_resolves_to_itself() {
        let (_, cluster) = committed(2);
        let block = cluster.nodes[0].store.blocks[0].clone();
        assert!(!block.body.trades.is_empty() && !block.body.process.batches.is_empty());
        let proposal = Proposal {
            stamp: crate::crypto::Signed {
                body: crate::block::Vote {
                    kind: crate::block::VoteKind::Propose,
                    chain_id: block.header.chain_id,
                    height: block.header.height,
                    view: 0,
                    revision: 0,
                    block: block.header.digest(),
                    voter: NodeId(0),
                },
                signature: crate::crypto::Signature([5; 64]),
            },
            header: block.header.clone(),
            body: Arc::new(block.body.clone()),
            justification: None,
        };
        let messages = [
            Message::Decided(Box::new(block.clone())),
            Message::Proposal(Box::new(proposal.clone())),
            Message::SyncResponse(cluster.nodes[0].store.blocks.clone()),
            skip_with(&block, proposal),
            Message::ViewCertificate(
                Box::new(crate::block::SkipCertificate {
                    height: 1,
                    view: 0,
                    votes: Vec::new(),
                }),
                block.body.process.batches.clone(),
            ),
        ];
        for msg in &messages {
            let frame = frame_of(msg);
            for p in &frame.places {
                assert!(
                    p.awards
                        .iter()
                        .all(|a| matches!(a, Edit::New(AwardEntry::At { .. })))
                );
                assert!(
                    p.trades
                        .iter()
                        .all(|t| matches!(t, Edit::New(TradeEntry::At { .. })))
                );
            }
            assert!(frame.wanted().count() > 0);
            assert!(encode(msg).len() < msg.to_canonical_bytes().len());
            assert_eq!(&round_trip(msg).unwrap(), msg);
        }
    }

    /// A trade its bid does not describe (a faulty primary's) and an award of a bid in no batch
    /// travel whole, so the receiver still sees exactly what was sent.
    #[test]
    fn awards_and_trades_their_bids_do_not_describe_travel_whole() {
        let (_, cluster) = committed(1);
        let mut block = cluster.nodes[0].store.blocks[0].clone();
        block.body.trades[0].participant = ParticipantId(9_999);
        block.body.process.clearing.outcome.awards[0].bid = Digest([3; 32]);
        let msg = Message::Decided(Box::new(block));
        let frame = frame_of(&msg);
        assert!(matches!(
            frame.places[0].trades[0],
            Edit::New(TradeEntry::Whole(_))
        ));
        assert!(matches!(
            frame.places[0].awards[0],
            Edit::New(AwardEntry::Whole(_))
        ));
        assert_eq!(round_trip(&msg).unwrap(), msg);
    }

    /// A receiver that lacks a named batch is told which one, and a position past the batches
    /// is refused as malformed rather than read.
    #[test]
    fn a_missing_batch_is_named_and_a_bad_position_is_refused() {
        let (_, cluster) = committed(1);
        let block = cluster.nodes[0].store.blocks[0].clone();
        let msg = Message::Decided(Box::new(block.clone()));
        let frame = frame_of(&msg);
        let first = *frame.wanted().next().unwrap();
        assert_eq!(
            frame.clone().resolve(|_| None),
            Err(ResolveError::Missing(first))
        );
        let mut bad = frame;
        if let Edit::New(AwardEntry::At { at, .. }) = &mut bad.places[0].awards[0] {
            at.bid = u32::MAX;
        }
        let mut store = BatchStore::default();
        for b in &block.body.process.batches {
            store.insert(b.clone());
        }
        let bytes = bad.to_canonical_bytes();
        let back = Frame::from_canonical_bytes(&bytes).unwrap();
        assert_eq!(
            back.resolve(|r| store.get(r).cloned()),
            Err(ResolveError::Malformed("a position names no bid"))
        );
        store.prune_below(block.header.height + 1);
        assert!(store.is_empty());
    }

    /// One committed block with trades, made once for the property tests.
    fn revision_block() -> Block {
        static BLOCK: std::sync::OnceLock<Block> = std::sync::OnceLock::new();
        BLOCK
            .get_or_init(|| committed(1).1.nodes[0].store.blocks[0].clone())
            .clone()
    }

    /// The bid of an upheld omission appeal, which no batch carries, is named by its position
    /// among the appeals' bids; a rejected appeal's bid is no position, so an award or trade
    /// naming it (a faulty primary's) travels whole.
    #[test]
    fn the_bids_of_upheld_omission_appeals_travel_by_position_too() {
        let with_appeal = |resolution| {
            let mut block = revision_block();
            let bid = block.body.trades[0].bid;
            let batch = block
                .body
                .process
                .batches
                .iter_mut()
                .find(|b| b.body.bids.iter().any(|sb| sb.body.id() == bid))
                .expect("a traded bid is in a batch");
            let at = batch.body.bids.iter().position(|sb| sb.body.id() == bid);
            let sb = batch.body.bids.remove(at.unwrap());
            batch.body.received.remove(at.unwrap());
            let receipt = crate::crypto::Signed {
                body: crate::market::BidReceipt {
                    chain_id: block.header.chain_id,
                    bid,
                    participant: sb.body.participant,
                    home: batch.body.home,
                    height: block.header.height,
                    received_at: crate::units::Timestamp(1),
                },
                signature: crate::crypto::Signature([9; 64]),
            };
            let appeal = crate::crypto::Signed {
                body: crate::block::Appeal {
                    chain_id: block.header.chain_id,
                    participant: sb.body.participant,
                    height: block.header.height,
                    claim: crate::block::AppealClaim::Omitted {
                        bid: Box::new(sb),
                        receipt,
                    },
                },
                signature: crate::crypto::Signature([8; 64]),
            };
            block.body.process.appeals.push(crate::block::AppealRecord {
                appeal,
                via: NodeId(0),
                resolution,
            });
            Message::Decided(Box::new(block))
        };
        let upheld = with_appeal(crate::block::AppealResolution::Upheld { revision: 1 });
        let frame = frame_of(&upheld);
        let batches = frame.places[0].batches.len() as u16;
        assert!(matches!(
            frame.places[0].trades[0],
            Edit::New(TradeEntry::At { at, .. }) if at == BidAt { batch: batches, bid: 0 }
        ));
        assert!(
            frame.places[0]
                .awards
                .iter()
                .all(|a| matches!(a, Edit::New(AwardEntry::At { .. })))
        );
        assert!(
            frame.places[0]
                .trades
                .iter()
                .all(|t| matches!(t, Edit::New(TradeEntry::At { .. })))
        );
        assert_eq!(round_trip(&upheld).unwrap(), upheld);
        let rejected = with_appeal(crate::block::AppealResolution::RejectedOutcomeStands);
        let frame = frame_of(&rejected);
        assert!(matches!(
            frame.places[0].trades[0],
            Edit::New(TradeEntry::Whole(_))
        ));
        assert_eq!(round_trip(&rejected).unwrap(), rejected);
    }

    /// D25: the frame bound counts each item at its encoded size (each fixed-size item against
    /// its encoding, and an empty body's fixed fields under `BODY_FIXED_LEN`).
    #[test]
    fn the_frame_bound_counts_each_item_at_its_encoded_size() {
        use crate::clearing::{AreaPrice, BusPrice, TieFlow};
        use crate::encoding::encoded_len;
        let product = crate::sample::sample_product(1);
        let at = BidAt { batch: 1, bid: 2 };
        assert_eq!(encoded_len(&at), BID_AT_LEN);
        let award = Edit::New(AwardEntry::At {
            at,
            step: 3,
            quantity: Quantity(4),
        });
        assert_eq!(encoded_len(&award), AWARD_AT_LEN);
        for (counterparty, len) in [
            (None, TRADE_AT_LEN[0]),
            (Some(ParticipantId(5)), TRADE_AT_LEN[1]),
        ] {
            let trade = Edit::New(TradeEntry::At {
                at,
                quantity: Quantity(6),
                price: Price(7),
                counterparty,
            });
            assert_eq!(encoded_len(&trade), len);
        }
        assert_eq!(
            encoded_len(&CutEntry::In {
                objection: 1,
                cut: 2
            }),
            CUT_ENTRY_LEN
        );
        let block = revision_block();
        assert_eq!(
            encoded_len(&BatchRef::to(&block.body.process.batches[0])),
            BATCH_REF_LEN
        );
        let rejection = crate::block::Rejection {
            bid: Digest([1; 32]),
            reason: crate::block::RejectionReason::Invalid,
        };
        assert_eq!(encoded_len(&rejection), REJECTION_LEN);
        assert_eq!(encoded_len(&product), PRODUCT_LEN);
        let row = encoded_len(&AreaPrice {
            product,
            area: crate::units::AreaId(1),
            price: Price(1),
        }) + encoded_len(&BusPrice {
            product,
            bus: crate::units::BusId(1),
            price: Price(1),
        }) + encoded_len(&TieFlow {
            product,
            tie_line: crate::units::TieLineId(1),
            flow: Quantity(1),
        }) + encoded_len(&Price(1));
        assert_eq!(row, OUTCOME_ROW_LEN);
        assert_eq!(encoded_len(&0u32), SEQ_LEN);
        assert_eq!(encoded_len(&Place::of_batches(&[])), PLACE_FIXED_LEN);
        // A body with every list empty: its fixed fields and lengths.
        let mut empty = block.body.clone();
        empty.trades.clear();
        let p = &mut empty.process;
        p.batches.clear();
        p.clearing.outcome = ClearingOutcome::default();
        p.clearing.cuts.clear();
        let mut places = Vec::new();
        let stripped = strip_body(&empty, &mut places);
        assert!(encoded_len(&stripped) + encoded_len(&places[0]) <= BODY_FIXED_LEN);
        // The bound at the limits, printed for the record (spec D25).
        for rule in [ClearingRule::PayAsBid, ClearingRule::ZonalCoupling] {
            println!(
                "{}: {} steps a round, frame bound {} of {} bytes",
                rule.name(),
                rule.max_round_steps(),
                frame_bound(rule),
                MAX_WIRE_LEN
            );
        }
    }

    /// A committed round's block as the revision-0 proposal of its view.
    fn proposal_of(block: &Block, revision: u32) -> Proposal {
        Proposal {
            stamp: crate::crypto::Signed {
                body: crate::block::Vote {
                    kind: crate::block::VoteKind::Propose,
                    chain_id: block.header.chain_id,
                    height: block.header.height,
                    view: 0,
                    revision,
                    block: block.header.digest(),
                    voter: NodeId(0),
                },
                signature: crate::crypto::Signature([5; 64]),
            },
            header: block.header.clone(),
            body: Arc::new(block.body.clone()),
            justification: None,
        }
    }

    /// A cut of `product` whose label is `label`, with a few terms.
    fn cut(label: u32) -> crate::clearing::Cut {
        crate::clearing::Cut {
            product: crate::sample::sample_product(1),
            label,
            terms: (0..8)
                .map(|k| crate::clearing::CutTerm {
                    variable: crate::clearing::CutVariable::TieFlow(crate::units::TieLineId(k)),
                    coefficient: 1_000 + i64::from(k),
                })
                .collect(),
            limit: Quantity(i64::from(label)),
        }
    }

    /// `objector`'s signed objection to `p` for `reason`.
    fn objection(
        p: &Proposal,
        objector: u16,
        reason: ObjectionReason,
    ) -> crate::crypto::Signed<Objection> {
        crate::crypto::Signed {
            body: Objection {
                chain_id: p.header.chain_id,
                height: p.height(),
                view: 0,
                revision: p.round().1,
                block: p.header.digest(),
                objector: NodeId(objector),
                reason,
            },
            signature: crate::crypto::Signature([7; 64]),
        }
    }

    /// `base` revised by `script`: each (kind, index) removes, changes or repeats an award or
    /// a trade, and objections and cuts grow, as a revision's do.
    fn revised(base: &Proposal, script: &[(u8, usize)]) -> Proposal {
        let mut next = base.clone();
        next.stamp.body.revision += 1;
        next.header.revision += 1;
        let body = Arc::make_mut(&mut next.body);
        let (awards, trades) = (&mut body.process.clearing.outcome.awards, &mut body.trades);
        for &(kind, i) in script {
            match kind % 7 {
                0 if !awards.is_empty() => {
                    awards.remove(i % awards.len());
                }
                1 if !awards.is_empty() => {
                    let n = awards.len();
                    awards[i % n].quantity.0 += 1;
                }
                2 if !awards.is_empty() => {
                    let a = awards[i % awards.len()];
                    awards.insert(i % awards.len(), a);
                }
                3 if !trades.is_empty() => {
                    trades.remove(i % trades.len());
                }
                4 if !trades.is_empty() => {
                    let n = trades.len();
                    trades[i % n].price.0 -= 1;
                }
                5 => {
                    let mut cut = body.process.clearing.cuts.first().cloned().unwrap_or(
                        crate::clearing::Cut {
                            product: crate::sample::sample_product(1),
                            label: 0,
                            terms: Vec::new(),
                            limit: Quantity(0),
                        },
                    );
                    cut.label = 1_000 + i as u32 % 1_000;
                    body.process.clearing.cuts.push(cut);
                }
                6 => {
                    // A security objection whose second cut the clearing takes.
                    let label = 2_000 + 2 * (i as u32 % 1_000);
                    let cuts = vec![cut(label), cut(label + 1)];
                    let o = objection(base, 1, ObjectionReason::Security { cuts });
                    body.process.objections.push(o);
                    body.process.clearing.cuts.push(cut(label + 1));
                }
                _ => {}
            }
        }
        next
    }

    /// A revision travels as edits of the revision before: it resolves against that revision
    /// to exactly itself, is refused without it or against another, and is smaller than its
    /// whole compact frame when it keeps most of the base.
    #[test]
    fn a_revision_travels_as_edits_of_the_revision_before() {
        let (_, cluster) = committed(2);
        let block = cluster.nodes[0].store.blocks[0].clone();
        let base = proposal_of(&block, 0);
        let next = revised(&base, &[(1, 0), (5, 3), (4, 1)]);
        let msg = Message::Proposal(Box::new(next.clone()));
        let delta = encode_revision(&msg, &base).expect("a later revision of the view");
        assert!(delta.len() < encode(&msg).len(), "{} bytes", delta.len());
        let held: HashMap<Digest, SignedBatch> = batches_of(&msg)
            .into_iter()
            .map(|b| (digest_of(b), b.clone()))
            .collect();
        let lookup = |r: &BatchRef| held.get(&r.digest).cloned();
        let frame = Frame::from_canonical_bytes(&delta).unwrap();
        assert_eq!(frame.base(), Some(&BaseRef::of(&base)));
        assert_eq!(frame.proposal_round(), Some((block.header.height, 0, 1)));
        assert_eq!(
            frame.clone().resolve_against(lookup, Some(&base)).unwrap(),
            msg
        );
        assert_eq!(
            frame.clone().resolve(lookup),
            Err(ResolveError::MissingBase(BaseRef::of(&base)))
        );
        let other = proposal_of(&cluster.nodes[0].store.blocks[1], 0);
        assert!(matches!(
            frame.resolve_against(lookup, Some(&other)),
            Err(ResolveError::MissingBase(_))
        ));
        // Not a later revision of the base's view: no revision frame.
        assert!(encode_revision(&Message::Proposal(Box::new(base.clone())), &next).is_none());
    }

    /// The clearing's cuts travel as places in the security objections that carry them; a cut
    /// no objection carries travels whole, and a place that names no security cut is refused.
    #[test]
    fn clearing_cuts_travel_as_places_in_the_objections_that_carry_them() {
        let block = revision_block();
        let mut p = proposal_of(&block, 2);
        let body = Arc::make_mut(&mut p.body);
        let security = ObjectionReason::Security {
            cuts: vec![cut(10), cut(11), cut(12)],
        };
        let missing = ObjectionReason::MissingBatch {
            batch: Digest([3; 32]),
        };
        body.process.objections = vec![
            objection(&proposal_of(&block, 0), 1, missing),
            objection(&proposal_of(&block, 1), 2, security),
        ];
        body.process.clearing.cuts = vec![cut(12), cut(10), cut(99), cut(11)];
        let msg = Message::Proposal(Box::new(p.clone()));
        let bytes = encode(&msg);
        let frame = Frame::from_canonical_bytes(&bytes).unwrap();
        let Message::Proposal(stripped) = &frame.message else {
            panic!("a proposal frame");
        };
        assert_eq!(stripped.body.process.clearing.cuts, vec![cut(99)]);
        assert_eq!(
            frame.places[0].cuts,
            vec![
                CutEntry::In {
                    objection: 1,
                    cut: 2
                },
                CutEntry::In {
                    objection: 1,
                    cut: 0
                },
                CutEntry::Carried,
                CutEntry::In {
                    objection: 1,
                    cut: 1
                },
            ]
        );
        assert_eq!(round_trip(&msg).unwrap(), msg);
        // The three cuts the objection carries are not repeated.
        let whole_cut = {
            let mut out = Vec::new();
            cut(10).encode(&mut out);
            out.len()
        };
        let mut uncut = p.clone();
        Arc::make_mut(&mut uncut.body).process.clearing.cuts = vec![cut(99)];
        let baseline = encode(&Message::Proposal(Box::new(uncut))).len();
        assert!(bytes.len() < baseline + whole_cut, "{} bytes", bytes.len());
        // A place in the missing-batch objection, past the cuts, or a carried cut too many or
        // too few: refused.
        let held: HashMap<Digest, SignedBatch> = batches_of(&msg)
            .into_iter()
            .map(|b| (digest_of(b), b.clone()))
            .collect();
        let place = |objection, cut| CutEntry::In { objection, cut };
        for (at, entry, why) in [
            (
                0,
                Some(place(0, 0)),
                "a cut place names no security objection",
            ),
            (0, Some(place(1, 3)), "a cut place names no cut"),
            (
                4,
                Some(CutEntry::Carried),
                "more carried cuts named than carried",
            ),
            (2, Some(place(1, 0)), "a carried cut no place names"),
            (2, None, "a carried cut no place names"),
        ] {
            let mut bad = frame.clone();
            let cuts = &mut bad.places[0].cuts;
            match entry {
                Some(e) if at < cuts.len() => cuts[at] = e,
                Some(e) => cuts.push(e),
                None => {
                    cuts.remove(at);
                }
            }
            assert_eq!(
                bad.resolve(|r| held.get(&r.digest).cloned()),
                Err(ResolveError::Malformed(why)),
                "{why}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any revision of a committed round's proposal (awards and trades removed, changed or
        /// repeated anywhere, cuts added) resolves from its revision frame to itself.
        #[test]
        fn any_revision_resolves_against_its_base_to_itself(
            script in proptest::collection::vec((any::<u8>(), any::<usize>()), 0..24)
        ) {
            let base = proposal_of(&revision_block(), 0);
            let next = revised(&base, &script);
            let msg = Message::Proposal(Box::new(next));
            let held: HashMap<Digest, SignedBatch> = batches_of(&msg)
                .into_iter()
                .map(|b| (digest_of(b), b.clone()))
                .collect();
            let bytes = encode_revision(&msg, &base).unwrap();
            let frame = Frame::from_canonical_bytes(&bytes).unwrap();
            prop_assert_eq!(frame.to_canonical_bytes(), bytes);
            let back = frame.resolve_against(|r| held.get(&r.digest).cloned(), Some(&base));
            prop_assert_eq!(back.unwrap(), msg);
        }

        /// Every message, whatever its contents, resolves from its frame to itself, and a frame
        /// re-encodes to its own bytes (spec D1, D2 for the frame).
        #[test]
        fn any_message_resolves_from_its_frame_to_itself(msg in message()) {
            let bytes = encode(&msg);
            let frame = Frame::from_canonical_bytes(&bytes).unwrap();
            prop_assert_eq!(frame.to_canonical_bytes(), bytes);
            prop_assert_eq!(round_trip(&msg).unwrap(), msg);
        }
    }
}
