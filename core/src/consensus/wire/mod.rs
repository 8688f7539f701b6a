//! The one wire encoding: messages between management nodes, the write-ahead log's records, and
//! the participant protocol (requests to a home node and its responses).
//!
//! Everything here uses the canonical encoding of [`crate::encoding`] with domain tags in the
//! 0x05xx range, so the rules of spec 1.3 hold on the wire too: a decoder rejects a wrong tag or
//! version, trailing bytes, undefined discriminants and over-long fields with a typed
//! [`DecodeError`], and every byte string that decodes re-encodes to itself. The runtime drops a
//! frame that does not decode and keeps serving.
//!
//! The participant protocol is request/response over the participant's authenticated QUIC
//! connection to its home node: submit bids or an appeal (answered with the core's
//! [`Reply`]s), query its trades with Merkle proofs against certified headers
//! ([`CertifiedTrades::verify`] is what the participant runs, trusting nothing but the
//! genesis), or ask the node's status.

use crate::block::{
    Appeal, AppealRecord, AppealResolution, Block, BlockHeader, Objection, ProcessData,
    QuorumCertificate, SkipCertificate, SkipVote, Vote, VoteKind,
};
use crate::consensus::{MAX_SYNC_BLOCKS, Message, Proposal, Record, Reply};
use crate::crypto::PublicKey;
use crate::crypto::{SignatureScheme, Signed};
use crate::encoding::{
    Canonical, DecodeError, DecodeErrorKind, Reader, decode_seq, decode_str, encode_seq, encode_str,
};
use crate::genesis::{Genesis, MAX_MEMBERS, MAX_PARTICIPANTS, Participant};
use crate::market::{BidError, MAX_BID_STEPS, SignedBatch, SignedBid, SignedReceipt, Trade};
use crate::merkle::{self, InclusionProof};
use crate::registry::SignedChange;
use crate::units::{AreaId, NodeId, ParticipantId};

mod participant;
mod replies;
pub use participant::*;
#[cfg(test)]
pub(crate) mod tests;

/// Largest encoded node message, log record or response: the transport's hard frame cap.
pub const MAX_WIRE_LEN: usize = 64 * 1024 * 1024;
/// Most bids in one participant request.
pub const MAX_REQUEST_BIDS: usize = 4096;
/// Most blocks one trade query answers; the participant asks again from where it stopped.
pub const MAX_QUERY_BLOCKS: usize = 64;
/// Most replies in one response (one per bid of a request, at most).
pub const MAX_REPLIES: usize = MAX_REQUEST_BIDS;
/// Longest free-text detail in a reply or a failure.
pub const MAX_DETAIL_LEN: usize = 4096;
/// Most trades of one participant reported for one block.
pub const MAX_REPORTED_TRADES: usize = crate::block::MAX_BLOCK_TRADES;

/// The most a message adds around what it carries: the tag and version of its encoding, its
/// variant byte, and a signature with its envelope.
pub const MESSAGE_OVERHEAD: usize = 256;

/// Every message whose size is bounded by the protocol's limits alone fits one frame; the
/// build fails if a limit is raised past that (spec 1.3). A proposal, a decided block, a skip
/// vote with its locked proposal and a sync response, which carry a round, travel as compact
/// frames, bounded by the round's limits in [`super::compact::frame_bound`] (D25).
const _: () = {
    use crate::block::{Appeal, SkipVote, Vote};
    use crate::encoding::Tagged;
    use crate::market::{Bid, BidBatch, BidReceipt};
    const fn fits(len: usize) -> bool {
        len + MESSAGE_OVERHEAD <= MAX_WIRE_LEN
    }
    // A home node's full batch of the largest bids, as a `Batch` message or with the
    // missing-batch objection that brings it (an objection naming one digest: under 4 KiB).
    assert!(fits(<BidBatch as Tagged>::MAX_ENCODED_LEN + 4096));
    // A participant's request of the most bids, and the replies to it.
    assert!(fits(
        MAX_REQUEST_BIDS * (<Bid as Tagged>::MAX_ENCODED_LEN + MESSAGE_OVERHEAD)
    ));
    assert!(fits(
        MAX_REPLIES * (<BidReceipt as Tagged>::MAX_ENCODED_LEN + MAX_DETAIL_LEN)
    ));
    // Votes, appeals and skip votes.
    assert!(fits(<Vote as Tagged>::MAX_ENCODED_LEN));
    assert!(fits(<Appeal as Tagged>::MAX_ENCODED_LEN));
    assert!(fits(<SkipVote as Tagged>::MAX_ENCODED_LEN));
};

/// The error for an undefined discriminant.
pub(crate) fn invalid(value: u8) -> DecodeError {
    DecodeError::new(DecodeErrorKind::InvalidDiscriminant { value })
}

fn field<T: Canonical>(r: &mut Reader<'_>, name: &str) -> Result<T, DecodeError> {
    T::decode(r).map_err(|e| e.within(name))
}

fn boxed<T: Canonical>(r: &mut Reader<'_>, name: &str) -> Result<Box<T>, DecodeError> {
    field(r, name).map(Box::new)
}

fn encode_opt_box<T: Canonical>(v: &Option<Box<T>>, out: &mut Vec<u8>) {
    match v {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            b.encode(out);
        }
    }
}

fn decode_opt_box<T: Canonical>(
    r: &mut Reader<'_>,
    name: &str,
) -> Result<Option<Box<T>>, DecodeError> {
    Option::<T>::decode(r)
        .map(|o| o.map(Box::new))
        .map_err(|e| e.within(name))
}

// ----- node-to-node messages -----

impl Canonical for Proposal {
    fn encode(&self, out: &mut Vec<u8>) {
        self.stamp.encode(out);
        self.header.encode(out);
        self.body.encode(out);
        self.justification.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Proposal {
            stamp: field(r, "stamp")?,
            header: field(r, "header")?,
            body: field(r, "body")?,
            justification: field(r, "justification")?,
        })
    }
}

impl Canonical for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Batch(b) => {
                out.push(0);
                b.encode(out);
            }
            Message::Proposal(p) => {
                out.push(1);
                p.encode(out);
            }
            Message::Vote(v) => {
                out.push(2);
                v.encode(out);
            }
            Message::Objection(o, batch) => {
                out.push(3);
                o.encode(out);
                encode_opt_box(batch, out);
            }
            Message::Appeal { appeal, via } => {
                out.push(4);
                appeal.encode(out);
                via.encode(out);
            }
            Message::Skip(v, locked, batches) => {
                out.push(5);
                v.encode(out);
                encode_opt_box(locked, out);
                encode_seq(batches, out);
            }
            Message::ViewCertificate(c, batches) => {
                out.push(6);
                c.encode(out);
                encode_seq(batches, out);
            }
            Message::Decided(b) => {
                out.push(7);
                b.encode(out);
            }
            Message::SyncRequest { from } => {
                out.push(8);
                from.encode(out);
            }
            Message::SyncResponse(blocks) => {
                out.push(9);
                encode_seq(blocks, out);
            }
            Message::Endorsed(c) => {
                out.push(10);
                c.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => Message::Batch(field::<SignedBatch>(r, "batch")?),
            1 => Message::Proposal(boxed(r, "proposal")?),
            2 => Message::Vote(field::<Signed<Vote>>(r, "vote")?),
            3 => Message::Objection(
                boxed::<Signed<Objection>>(r, "objection")?,
                decode_opt_box(r, "batch")?,
            ),
            4 => Message::Appeal {
                appeal: boxed::<Signed<Appeal>>(r, "appeal")?,
                via: field(r, "via")?,
            },
            5 => Message::Skip(
                boxed::<Signed<SkipVote>>(r, "skip")?,
                decode_opt_box(r, "locked")?,
                decode_seq(r, MAX_MEMBERS).map_err(|e| e.within("batches"))?,
            ),
            6 => Message::ViewCertificate(
                boxed::<SkipCertificate>(r, "certificate")?,
                decode_seq(r, MAX_MEMBERS).map_err(|e| e.within("batches"))?,
            ),
            7 => Message::Decided(boxed::<Block>(r, "block")?),
            8 => Message::SyncRequest {
                from: field(r, "from")?,
            },
            9 => Message::SyncResponse(
                decode_seq(r, MAX_SYNC_BLOCKS as usize).map_err(|e| e.within("blocks"))?,
            ),
            10 => Message::Endorsed(boxed::<QuorumCertificate>(r, "certificate")?),
            value => return Err(invalid(value)),
        })
    }
}
crate::tagged!(Message, 0x0501, "node-message", MAX_WIRE_LEN);

// ----- the write-ahead log -----

impl Canonical for Record {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Bid {
                bid,
                receipt,
                height,
            } => {
                out.push(0);
                bid.encode(out);
                receipt.encode(out);
                height.encode(out);
            }
            Record::Batch(b) => {
                out.push(1);
                b.encode(out);
            }
            Record::Vote(v) => {
                out.push(2);
                v.encode(out);
            }
            Record::Lock(qc, p) => {
                out.push(3);
                qc.encode(out);
                p.encode(out);
            }
            Record::Skip(v) => {
                out.push(4);
                v.encode(out);
            }
            Record::SkipCertificate(c) => {
                out.push(5);
                c.encode(out);
            }
            Record::Appeal { appeal, via } => {
                out.push(6);
                appeal.encode(out);
                via.encode(out);
            }
            Record::Objection(o, batch) => {
                out.push(7);
                o.encode(out);
                batch.encode(out);
            }
            Record::Change { change, height } => {
                out.push(8);
                change.encode(out);
                height.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => Record::Bid {
                bid: field(r, "bid")?,
                receipt: field(r, "receipt")?,
                height: field(r, "height")?,
            },
            1 => Record::Batch(field(r, "batch")?),
            2 => Record::Vote(field(r, "vote")?),
            3 => Record::Lock(field(r, "certificate")?, boxed(r, "proposal")?),
            4 => Record::Skip(field(r, "skip")?),
            5 => Record::SkipCertificate(field(r, "certificate")?),
            6 => Record::Appeal {
                appeal: field(r, "appeal")?,
                via: field(r, "via")?,
            },
            7 => Record::Objection(field(r, "objection")?, field(r, "batch")?),
            8 => Record::Change {
                change: field(r, "change")?,
                height: field(r, "height")?,
            },
            value => return Err(invalid(value)),
        })
    }
}
crate::tagged!(Record, 0x0504, "log-record", MAX_WIRE_LEN);

/// Every tag this module defines, for the domain-separation test (spec D3).
pub const WIRE_TAGS: [u16; 5] = [0x0501, 0x0502, 0x0503, 0x0504, 0x0505];

const _: () = assert!(MAX_MEMBERS <= MAX_REQUEST_BIDS);
