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
    Round, SkipCertificate, SkipVote,
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

mod bound;
pub use bound::*;
mod places;
use places::*;
mod store;
pub use store::*;
#[cfg(test)]
mod tests;

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
        let Round { view, revision } = p.round();
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
    let (round, base_round) = (p.round(), base.round());
    if p.height() != base.height() || round.view != base_round.view || round <= base_round {
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
            Message::Proposal(p) => {
                let Round { view, revision } = p.round();
                Some((p.height(), view, revision))
            }
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

// Positions fit their fields: at most MAX_MEMBERS batches of at most MAX_BATCH_BIDS bids, at
// most MAX_OBJECTIONS objections of at most MAX_CUTS_PER_OBJECTION cuts.
const _: () = {
    assert!(MAX_MEMBERS <= u16::MAX as usize);
    assert!(MAX_OBJECTIONS <= u16::MAX as usize);
    assert!(MAX_CUTS_PER_OBJECTION <= u16::MAX as usize);
    assert!(crate::market::MAX_BATCH_BIDS <= u32::MAX as usize);
};
