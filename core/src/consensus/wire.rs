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

// ----- replies to participants -----

impl Canonical for BidError {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            BidError::WrongChain { expected, found } => {
                out.push(0);
                expected.encode(out);
                found.encode(out);
            }
            BidError::UnknownParticipant(p) => {
                out.push(1);
                p.encode(out);
            }
            BidError::WrongArea {
                participant,
                registered,
                found,
            } => {
                out.push(2);
                participant.encode(out);
                registered.encode(out);
                found.encode(out);
            }
            BidError::WrongHome {
                participant,
                home,
                this,
            } => {
                out.push(3);
                participant.encode(out);
                home.encode(out);
                this.encode(out);
            }
            BidError::NoSteps => out.push(4),
            BidError::BadStep { step, reason } => {
                out.push(5);
                // A step index is below MAX_BID_STEPS; decoding enforces it.
                (*step as u32).encode(out);
                encode_str(reason, out);
            }
            BidError::BadSignature(p) => {
                out.push(6);
                p.encode(out);
            }
            BidError::ReplayedNonce { participant, nonce } => {
                out.push(7);
                participant.encode(out);
                nonce.encode(out);
            }
            BidError::EmptyDelivery => out.push(8),
            BidError::BatchFull { height } => {
                out.push(9);
                height.encode(out);
            }
            BidError::OffSchedule { reason } => {
                out.push(10);
                encode_str(reason, out);
            }
            BidError::GateClosed { height, gate } => {
                out.push(11);
                height.encode(out);
                gate.encode(out);
            }
            BidError::TooFarAhead {
                height,
                open,
                ahead,
            } => {
                out.push(12);
                height.encode(out);
                open.encode(out);
                ahead.encode(out);
            }
            BidError::Revoked {
                participant,
                height,
            } => {
                out.push(13);
                participant.encode(out);
                height.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => BidError::WrongChain {
                expected: field(r, "expected")?,
                found: field(r, "found")?,
            },
            1 => BidError::UnknownParticipant(field(r, "participant")?),
            2 => BidError::WrongArea {
                participant: field(r, "participant")?,
                registered: field(r, "registered")?,
                found: field(r, "found")?,
            },
            3 => BidError::WrongHome {
                participant: field(r, "participant")?,
                home: field(r, "home")?,
                this: field(r, "this")?,
            },
            4 => BidError::NoSteps,
            5 => {
                let step = u32::decode(r).map_err(|e| e.within("step"))?;
                if step as usize >= MAX_BID_STEPS {
                    return Err(DecodeError::new(DecodeErrorKind::TooLong {
                        len: step.into(),
                        max: MAX_BID_STEPS - 1,
                    })
                    .within("step"));
                }
                BidError::BadStep {
                    step: step as usize,
                    reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
                }
            }
            6 => BidError::BadSignature(field(r, "participant")?),
            7 => BidError::ReplayedNonce {
                participant: field(r, "participant")?,
                nonce: field(r, "nonce")?,
            },
            8 => BidError::EmptyDelivery,
            9 => BidError::BatchFull {
                height: field(r, "height")?,
            },
            10 => BidError::OffSchedule {
                reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
            },
            11 => BidError::GateClosed {
                height: field(r, "height")?,
                gate: field(r, "gate")?,
            },
            12 => BidError::TooFarAhead {
                height: field(r, "height")?,
                open: field(r, "open")?,
                ahead: field(r, "ahead")?,
            },
            13 => BidError::Revoked {
                participant: field(r, "participant")?,
                height: field(r, "height")?,
            },

            value => return Err(invalid(value)),
        })
    }
}

impl Canonical for Reply {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Receipt(r) => {
                out.push(0);
                r.encode(out);
            }
            Reply::BidRejected { bid, reason } => {
                out.push(1);
                bid.encode(out);
                reason.encode(out);
            }
            Reply::AppealForwarded { height } => {
                out.push(2);
                height.encode(out);
            }
            Reply::AppealRejected { reason } => {
                out.push(3);
                encode_str(reason, out);
            }
            Reply::AppealResolved { height, resolution } => {
                out.push(4);
                height.encode(out);
                resolution.encode(out);
            }
            Reply::Result {
                height,
                block,
                trades,
            } => {
                out.push(5);
                height.encode(out);
                block.encode(out);
                encode_seq(trades, out);
            }
            Reply::ChangeAccepted { change, height } => {
                out.push(6);
                change.encode(out);
                height.encode(out);
            }
            Reply::ChangeRefused { change, reason } => {
                out.push(7);
                change.encode(out);
                encode_str(reason, out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => Reply::Receipt(field::<SignedReceipt>(r, "receipt")?),
            1 => Reply::BidRejected {
                bid: field(r, "bid")?,
                reason: field(r, "reason")?,
            },
            2 => Reply::AppealForwarded {
                height: field(r, "height")?,
            },
            3 => Reply::AppealRejected {
                reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
            },
            4 => Reply::AppealResolved {
                height: field(r, "height")?,
                resolution: field::<AppealResolution>(r, "resolution")?,
            },
            5 => Reply::Result {
                height: field(r, "height")?,
                block: field(r, "block")?,
                trades: decode_seq(r, MAX_REPORTED_TRADES).map_err(|e| e.within("trades"))?,
            },
            6 => Reply::ChangeAccepted {
                change: field(r, "change")?,
                height: field(r, "height")?,
            },
            7 => Reply::ChangeRefused {
                change: field(r, "change")?,
                reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
            },
            value => return Err(invalid(value)),
        })
    }
}

// ----- the participant protocol -----

/// What a participant (or an operator's tool) asks its home node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Submit signed bids, in order (a participant's nonces must rise through the list). The
    /// answer has one [`Reply`] per bid, in the same order.
    SubmitBids(Vec<SignedBid>),
    /// Submit a signed appeal against the preliminary result of the height in progress.
    SubmitAppeal(Box<Signed<Appeal>>),
    /// The requester's trades in committed blocks from `from_height` on, each with its Merkle
    /// proof and the block's certified header; at most [`MAX_QUERY_BLOCKS`] blocks are scanned.
    QueryTrades {
        /// The first height to look at.
        from_height: u64,
    },
    /// The node's committed height, current view and last header.
    Status,
    /// The committed block of `height`'s process data (batches, appeals with their
    /// resolutions, objections, cuts) with its certified header: how a participant reads the
    /// resolution of its appeal (spec 2.8).
    QueryProcess {
        /// The height.
        height: u64,
    },
    /// Submit a signed registry change (spec A1-A5) to the member that sponsors it: its home
    /// node, or the member whose key it replaces. The answer has one [`Reply`]:
    /// [`Reply::ChangeAccepted`] or [`Reply::ChangeRefused`]. The change authenticates itself
    /// by its signatures, so any identity the node accepts may deliver it.
    SubmitChange(Box<SignedChange>),
    /// A member's request for a batch that a compact frame from this node named and the
    /// member does not hold (spec 1.3, frames). Members only; answered with
    /// [`Response::Batch`].
    FetchBatch(crate::consensus::compact::BatchRef),
    /// A member's request for the whole frame of the sender's proposal of (height, view,
    /// revision): sent when a revision frame names a base revision the member does not hold
    /// (spec 1.3, frames). Members only; answered with [`Response::Frame`].
    FetchProposal {
        /// The height.
        height: u64,
        /// The view.
        view: u32,
        /// The revision.
        revision: u32,
    },
}

impl Canonical for Request {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::SubmitBids(bids) => {
                out.push(0);
                encode_seq(bids, out);
            }
            Request::SubmitAppeal(a) => {
                out.push(1);
                a.encode(out);
            }
            Request::QueryTrades { from_height } => {
                out.push(2);
                from_height.encode(out);
            }
            Request::Status => out.push(3),
            Request::QueryProcess { height } => {
                out.push(4);
                height.encode(out);
            }
            Request::SubmitChange(c) => {
                out.push(5);
                c.encode(out);
            }
            Request::FetchBatch(r) => {
                out.push(6);
                r.encode(out);
            }
            Request::FetchProposal {
                height,
                view,
                revision,
            } => {
                out.push(7);
                height.encode(out);
                view.encode(out);
                revision.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => {
                Request::SubmitBids(decode_seq(r, MAX_REQUEST_BIDS).map_err(|e| e.within("bids"))?)
            }
            1 => Request::SubmitAppeal(boxed(r, "appeal")?),
            2 => Request::QueryTrades {
                from_height: field(r, "from_height")?,
            },
            3 => Request::Status,
            4 => Request::QueryProcess {
                height: field(r, "height")?,
            },
            5 => Request::SubmitChange(boxed(r, "change")?),
            6 => Request::FetchBatch(field(r, "batch")?),
            7 => Request::FetchProposal {
                height: field(r, "height")?,
                view: field(r, "view")?,
                revision: field(r, "revision")?,
            },
            value => return Err(invalid(value)),
        })
    }
}
crate::tagged!(
    Request,
    0x0502,
    "participant-request",
    16 + MAX_REQUEST_BIDS * (crate::market::Bid::MAX_ENCODED_LEN + 64)
);

/// One of the requester's trades with its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenTrade {
    /// The trade, a leaf of the block's Merkle tree.
    pub trade: Trade,
    /// Its proof against the header's `trades_root`.
    pub proof: InclusionProof,
}
crate::canonical_struct!(ProvenTrade { trade, proof });

/// A committed block's header and commit certificate with the requester's trades in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedTrades {
    /// The header.
    pub header: BlockHeader,
    /// The commit certificate over the header.
    pub certificate: QuorumCertificate,
    /// The requester's trades in the block, in block order.
    pub trades: Vec<ProvenTrade>,
}
crate::canonical_struct!(CertifiedTrades {
    header,
    certificate,
    trades: seq(MAX_REPORTED_TRADES)
});

/// Why certified trades do not convince a participant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The header is for another chain.
    #[error("the header of height {height} names another chain")]
    WrongChain {
        /// The header's height.
        height: u64,
    },
    /// The certificate is not a commit certificate for this header.
    #[error("the certificate at height {height} is not a commit certificate for its header")]
    CertificateTarget {
        /// The header's height.
        height: u64,
    },
    /// The certificate's signatures do not make a valid quorum including the participant's
    /// area's members.
    #[error("the commit certificate at height {height}: {reason}")]
    Certificate {
        /// The header's height.
        height: u64,
        /// What is wrong.
        reason: crate::block::CertificateError,
    },
    /// A trade is someone else's.
    #[error("trade {index} at height {height} is participant {found}'s, not the requester's")]
    NotMine {
        /// The header's height.
        height: u64,
        /// The trade's position in the answer.
        index: usize,
        /// Whose it is.
        found: ParticipantId,
    },
    /// A trade's Merkle proof does not lead to the header's trades root.
    #[error("trade {index} at height {height}: the Merkle proof does not verify")]
    BadProof {
        /// The header's height.
        height: u64,
        /// The trade's position in the answer.
        index: usize,
    },
    /// The participant is not in the genesis.
    #[error("participant {0} is not admitted")]
    UnknownParticipant(ParticipantId),
    /// The process data is not what the header commits to.
    #[error("the process data of height {height} does not match its header's process hash")]
    ProcessHash {
        /// The header's height.
        height: u64,
    },
}

/// The header is of this chain and the certificate is a commit certificate for it (its
/// signatures are checked by the caller, with the members it requires).
fn commit_target(
    chain_id: &crate::crypto::Digest,
    header: &BlockHeader,
    c: &QuorumCertificate,
) -> Result<(), ProofError> {
    let height = header.height;
    if header.chain_id != *chain_id {
        return Err(ProofError::WrongChain { height });
    }
    if c.kind != VoteKind::Commit || c.height != height || c.block != header.digest() {
        return Err(ProofError::CertificateTarget { height });
    }
    Ok(())
}

/// A committed block's header, commit certificate and process data: what a home node answers
/// to [`Request::QueryProcess`], and what a participant checks an appeal's recorded
/// resolution against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedProcess {
    /// The header.
    pub header: BlockHeader,
    /// The commit certificate over the header.
    pub certificate: QuorumCertificate,
    /// The block's process data.
    pub process: ProcessData,
}
crate::canonical_struct!(CertifiedProcess {
    header,
    certificate,
    process
});

impl CertifiedProcess {
    /// The certified process data of `block`.
    pub fn from_block(block: &Block) -> Self {
        Self {
            header: block.header.clone(),
            certificate: block.certificate.clone(),
            process: block.body.process.clone(),
        }
    }

    /// What a participant checks, trusting nothing but the genesis: the certificate is a valid
    /// commit certificate for the header (a quorum of members; spec D11, D18) and the process
    /// data is the one the header commits to (D16).
    pub fn verify(
        &self,
        genesis: &Genesis,
        scheme: &dyn SignatureScheme,
    ) -> Result<(), ProofError> {
        self.verify_in(&genesis.chain_id(), genesis, scheme)
    }

    /// [`CertifiedProcess::verify`] for chain `chain_id` under `registry`: the genesis with the
    /// registry changes on chain applied, whose members' keys certified the block (spec A4).
    pub fn verify_in(
        &self,
        chain_id: &crate::crypto::Digest,
        registry: &Genesis,
        scheme: &dyn SignatureScheme,
    ) -> Result<(), ProofError> {
        let height = self.header.height;
        commit_target(chain_id, &self.header, &self.certificate)?;
        self.certificate
            .verify(registry, *chain_id, scheme, &[])
            .map_err(|reason| ProofError::Certificate { height, reason })?;
        if crate::crypto::digest_of(&self.process) != self.header.process_hash {
            return Err(ProofError::ProcessHash { height });
        }
        Ok(())
    }

    /// The recorded appeals of `participant` in this block.
    pub fn appeals_of(&self, participant: ParticipantId) -> impl Iterator<Item = &AppealRecord> {
        self.process
            .appeals
            .iter()
            .filter(move |a| a.appeal.body.participant == participant)
    }
}

impl CertifiedTrades {
    /// What a participant checks, trusting nothing but the genesis: the certificate is a
    /// valid commit certificate for the header (a quorum of members, including every member of
    /// the participant's area, which its trades touch; spec D11, D12, D18), and each trade is
    /// the participant's and is proven under the header's trades root (spec D5).
    pub fn verify(
        &self,
        genesis: &Genesis,
        scheme: &dyn SignatureScheme,
        participant: ParticipantId,
    ) -> Result<(), ProofError> {
        self.verify_in(&genesis.chain_id(), genesis, scheme, participant)
    }

    /// [`CertifiedTrades::verify`] for chain `chain_id` under `registry`: the genesis with the
    /// registry changes on chain applied, which names the participant (spec A1) and the
    /// members' keys that certified the block (A4).
    pub fn verify_in(
        &self,
        chain_id: &crate::crypto::Digest,
        registry: &Genesis,
        scheme: &dyn SignatureScheme,
        participant: ParticipantId,
    ) -> Result<(), ProofError> {
        let height = self.header.height;
        let chain_id = *chain_id;
        let genesis = registry;
        commit_target(&chain_id, &self.header, &self.certificate)?;
        let c = &self.certificate;
        let area: AreaId = genesis
            .participant(participant)
            .ok_or(ProofError::UnknownParticipant(participant))?
            .area;
        let required: Vec<NodeId> = if self.trades.is_empty() {
            Vec::new()
        } else {
            genesis.members_of_area(area).map(|m| m.id).collect()
        };
        c.verify(genesis, chain_id, scheme, &required)
            .map_err(|reason| ProofError::Certificate { height, reason })?;
        for (index, t) in self.trades.iter().enumerate() {
            if t.trade.participant != participant {
                return Err(ProofError::NotMine {
                    height,
                    index,
                    found: t.trade.participant,
                });
            }
            if !t
                .proof
                .verify(&merkle::leaf_hash_of(&t.trade), &self.header.trades_root)
            {
                return Err(ProofError::BadProof { height, index });
            }
        }
        Ok(())
    }

    /// The requester's trades in `block` with their proofs (what a home node answers).
    pub fn from_block(block: &Block, participant: ParticipantId) -> Self {
        let leaves = block.body.trade_leaves();
        let trades = block
            .body
            .trades
            .iter()
            .enumerate()
            .filter(|(_, t)| t.participant == participant)
            .filter_map(|(i, t)| {
                merkle::prove(&leaves, i).map(|proof| ProvenTrade {
                    trade: t.clone(),
                    proof,
                })
            })
            .collect();
        CertifiedTrades {
            header: block.header.clone(),
            certificate: block.certificate.clone(),
            trades,
        }
    }
}

/// The answer to [`Request::QueryTrades`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeReport {
    /// The node's last committed height (0 before the first block).
    pub committed: u64,
    /// The blocks scanned that hold trades of the requester.
    pub blocks: Vec<CertifiedTrades>,
    /// The height to ask from next; above `committed` when the scan reached the head.
    pub next_height: u64,
}
crate::canonical_struct!(TradeReport {
    committed,
    blocks: seq(MAX_QUERY_BLOCKS),
    next_height
});

/// A node's progress, as its home participants and operators see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeId,
    /// The height it is deciding (its last committed height plus one).
    pub height: u64,
    /// Its view at that height.
    pub view: u32,
    /// The last committed header, if any.
    pub last: Option<BlockHeader>,
    /// Trades in the last committed block.
    pub last_trades: u64,
    /// Bids in the last committed block's batches.
    pub last_bids: u64,
    /// How the registry the node decides `height` by differs from the genesis (spec A1-A5).
    pub registry: RegistryDelta,
}
crate::canonical_struct!(NodeStatus {
    node,
    height,
    view,
    last,
    last_trades,
    last_bids,
    registry
});

/// A participant revoked on chain, as it stood when revoked, with the height from which it is
/// revoked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revocation {
    /// The participant, with its last key.
    pub participant: Participant,
    /// The first height at which its bids are refused.
    pub from_height: u64,
}
crate::canonical_struct!(Revocation {
    participant,
    from_height
});

/// A member's current key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey {
    /// The member.
    pub member: NodeId,
    /// Its key.
    pub key: PublicKey,
}
crate::canonical_struct!(MemberKey { member, key });

/// How a registry differs from the genesis it grew from: what a node tells its participants
/// and operators in its status, small while few changes were made (spec A1-A5). Applied to
/// the genesis ([`RegistryDelta::apply`]) it gives the registry itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryDelta {
    /// The participants admitted on chain or whose key was replaced, as they stand, by id.
    pub participants: Vec<Participant>,
    /// The participants revoked, by id.
    pub revoked: Vec<Revocation>,
    /// The members whose key was replaced, with their current key, by id.
    pub member_keys: Vec<MemberKey>,
}
crate::canonical_struct!(RegistryDelta {
    participants: seq(MAX_PARTICIPANTS),
    revoked: seq(MAX_PARTICIPANTS),
    member_keys: seq(MAX_MEMBERS)
});

impl RegistryDelta {
    /// How `head` (the registry, with `revoked` its revocations) differs from `base`.
    pub fn between(base: &Genesis, head: &Genesis, revoked: Vec<Revocation>) -> Self {
        RegistryDelta {
            participants: head
                .participants
                .iter()
                .filter(|p| base.participant(p.id) != Some(*p))
                .cloned()
                .collect(),
            revoked,
            member_keys: head
                .members
                .iter()
                .filter(|m| {
                    base.member(m.id)
                        .is_none_or(|b| b.public_key != m.public_key)
                })
                .map(|m| MemberKey {
                    member: m.id,
                    key: m.public_key,
                })
                .collect(),
        }
    }

    /// Whether the registry is the genesis.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.revoked.is_empty() && self.member_keys.is_empty()
    }

    /// The registry: `base` with the revoked participants removed, the admitted ones added,
    /// and the replaced keys in place.
    pub fn apply(&self, base: &Genesis) -> Genesis {
        let mut g = base.clone();
        g.participants.retain(|p| {
            self.revoked.iter().all(|r| r.participant.id != p.id)
                && self.participants.iter().all(|q| q.id != p.id)
        });
        g.participants.extend(self.participants.iter().cloned());
        g.participants.sort_by_key(|p| p.id);
        for k in &self.member_keys {
            if let Some(m) = g.members.iter_mut().find(|m| m.id == k.member) {
                m.public_key = k.key;
            }
        }
        g
    }
}

/// Why a request was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// The request did not decode.
    Malformed,
    /// The requester may not ask this.
    Forbidden,
    /// The node is overloaded or shutting down; try again later.
    Unavailable,
    /// The node failed to read its storage.
    Internal,
}
crate::canonical_enum!(FailureKind {
    Malformed = 0,
    Forbidden = 1,
    Unavailable = 2,
    Internal = 3
});

/// A refused request: the kind and a readable detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct RequestFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What went wrong, in words.
    pub detail: String,
}
crate::canonical_struct!(RequestFailure {
    kind,
    detail: str(MAX_DETAIL_LEN)
});

/// A home node's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The core's replies to submitted bids or an appeal, in order.
    Replies(Vec<Reply>),
    /// Trades with proofs.
    Trades(TradeReport),
    /// The node's status.
    Status(Box<NodeStatus>),
    /// The request was refused.
    Failed(RequestFailure),
    /// A committed block's process data with its certified header.
    Process(Box<CertifiedProcess>),
    /// The batch a [`Request::FetchBatch`] named, or `None` if this node no longer holds it.
    Batch(Option<Box<SignedBatch>>),
    /// The whole compact frame of the proposal a [`Request::FetchProposal`] named, or `None`
    /// if this node did not send it or no longer keeps it.
    Frame(Option<Box<crate::consensus::compact::Frame>>),
}

impl Canonical for Response {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Replies(r) => {
                out.push(0);
                encode_seq(r, out);
            }
            Response::Trades(t) => {
                out.push(1);
                t.encode(out);
            }
            Response::Status(s) => {
                out.push(2);
                s.encode(out);
            }
            Response::Failed(f) => {
                out.push(3);
                f.encode(out);
            }
            Response::Process(p) => {
                out.push(4);
                p.encode(out);
            }
            Response::Batch(b) => {
                out.push(5);
                encode_opt_box(b, out);
            }
            Response::Frame(f) => {
                out.push(6);
                encode_opt_box(f, out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => Response::Replies(decode_seq(r, MAX_REPLIES).map_err(|e| e.within("replies"))?),
            1 => Response::Trades(field(r, "trades")?),
            2 => Response::Status(boxed(r, "status")?),
            3 => Response::Failed(field(r, "failure")?),
            4 => Response::Process(boxed(r, "process")?),
            5 => Response::Batch(decode_opt_box(r, "batch")?),
            6 => Response::Frame(decode_opt_box(r, "frame")?),
            value => return Err(invalid(value)),
        })
    }
}
crate::tagged!(Response, 0x0503, "participant-response", MAX_WIRE_LEN);

/// Every tag this module defines, for the domain-separation test (spec D3).
pub const WIRE_TAGS: [u16; 5] = [0x0501, 0x0502, 0x0503, 0x0504, 0x0505];

const _: () = assert!(MAX_MEMBERS <= MAX_REQUEST_BIDS);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::consensus::sim::Cluster;
    use crate::consensus::{Input, NoGridModel, SecurityCheck};
    use crate::crypto::Ed25519;
    use crate::encoding::Tagged;
    use crate::proptests as st;
    use crate::sample::SampleConsortium;
    use crate::units::Timestamp;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::sync::Arc;

    pub(crate) fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            st::signed(st::batch()).prop_map(Message::Batch),
            (
                st::signed(st::vote()),
                st::header(),
                st::body(),
                proptest::option::of(st::skip_certificate())
            )
                .prop_map(|(stamp, header, body, justification)| {
                    Message::Proposal(Box::new(Proposal {
                        stamp,
                        header,
                        body: std::sync::Arc::new(body),
                        justification,
                    }))
                }),
            st::signed(st::vote()).prop_map(Message::Vote),
            (
                st::signed(st::objection()),
                proptest::option::of(st::signed(st::batch()))
            )
                .prop_map(|(o, b)| Message::Objection(Box::new(o), b.map(Box::new))),
            (st::signed(st::appeal()), any::<u16>()).prop_map(|(a, v)| Message::Appeal {
                appeal: Box::new(a),
                via: NodeId(v),
            }),
            (
                st::signed(st::skip_vote()),
                proptest::collection::vec(st::signed(st::batch()), 0..3)
            )
                .prop_map(|(v, b)| Message::Skip(Box::new(v), None, b)),
            (
                st::skip_certificate(),
                proptest::collection::vec(st::signed(st::batch()), 0..3)
            )
                .prop_map(|(c, b)| Message::ViewCertificate(Box::new(c), b)),
            st::block().prop_map(|b| Message::Decided(Box::new(b))),
            any::<u64>().prop_map(|from| Message::SyncRequest { from }),
            vec(st::block(), 0..3).prop_map(Message::SyncResponse),
            st::qc().prop_map(|c| Message::Endorsed(Box::new(c))),
        ]
    }

    fn bid_error() -> impl Strategy<Value = BidError> {
        prop_oneof![
            (st::digest(), st::digest())
                .prop_map(|(expected, found)| BidError::WrongChain { expected, found }),
            any::<u32>().prop_map(|p| BidError::UnknownParticipant(ParticipantId(p))),
            (any::<u32>(), any::<u64>()).prop_map(|(p, height)| BidError::Revoked {
                participant: ParticipantId(p),
                height,
            }),
            (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(p, a, b)| BidError::WrongArea {
                participant: ParticipantId(p),
                registered: AreaId(a),
                found: AreaId(b),
            }),
            Just(BidError::NoSteps),
            (0..MAX_BID_STEPS, "[a-z ]{0,20}")
                .prop_map(|(step, reason)| BidError::BadStep { step, reason }),
            any::<u64>().prop_map(|height| BidError::BatchFull { height }),
            Just(BidError::EmptyDelivery),
            "[a-z ]{0,20}".prop_map(|reason| BidError::OffSchedule { reason }),
            (any::<u64>(), any::<u64>()).prop_map(|(height, g)| BidError::GateClosed {
                height,
                gate: Timestamp(g)
            }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(height, open, ahead)| {
                BidError::TooFarAhead {
                    height,
                    open,
                    ahead,
                }
            }),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            st::signed(st::receipt()).prop_map(Reply::Receipt),
            (st::digest(), bid_error())
                .prop_map(|(bid, reason)| Reply::BidRejected { bid, reason }),
            any::<u64>().prop_map(|height| Reply::AppealForwarded { height }),
            "[a-z ]{0,20}".prop_map(|reason| Reply::AppealRejected { reason }),
            (any::<u64>(), st::digest(), vec(st::trade(), 0..3)).prop_map(
                |(height, block, trades)| Reply::Result {
                    height,
                    block,
                    trades
                }
            ),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (
                st::signed(st::bid()),
                st::signed(st::receipt()),
                any::<u64>()
            )
                .prop_map(|(bid, receipt, height)| Record::Bid {
                    bid,
                    receipt,
                    height
                }),
            st::signed(st::batch()).prop_map(Record::Batch),
            st::signed(st::vote()).prop_map(Record::Vote),
            st::signed(st::skip_vote()).prop_map(Record::Skip),
            st::skip_certificate().prop_map(Record::SkipCertificate),
            (
                st::signed(st::objection()),
                proptest::option::of(st::signed(st::batch()))
            )
                .prop_map(|(o, b)| Record::Objection(o, b)),
        ]
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            vec(st::signed(st::bid()), 0..4).prop_map(Request::SubmitBids),
            st::signed(st::appeal()).prop_map(|a| Request::SubmitAppeal(Box::new(a))),
            any::<u64>().prop_map(|from_height| Request::QueryTrades { from_height }),
            Just(Request::Status),
            any::<u64>().prop_map(|height| Request::QueryProcess { height }),
            st::change().prop_map(|c| Request::SubmitChange(Box::new(c))),
            (any::<u64>(), any::<u16>(), st::digest()).prop_map(|(height, home, digest)| {
                Request::FetchBatch(crate::consensus::compact::BatchRef {
                    height,
                    home: NodeId(home),
                    digest,
                })
            }),
            (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(height, view, revision)| {
                Request::FetchProposal {
                    height,
                    view,
                    revision,
                }
            }),
        ]
    }

    fn registry_delta() -> impl Strategy<Value = RegistryDelta> {
        (
            vec(st::participant(), 0..3),
            vec((st::participant(), any::<u64>()), 0..3),
            vec((any::<u16>(), st::public_key()), 0..3),
        )
            .prop_map(|(participants, revoked, keys)| RegistryDelta {
                participants,
                revoked: revoked
                    .into_iter()
                    .map(|(participant, from_height)| Revocation {
                        participant,
                        from_height,
                    })
                    .collect(),
                member_keys: keys
                    .into_iter()
                    .map(|(m, key)| MemberKey {
                        member: NodeId(m),
                        key,
                    })
                    .collect(),
            })
    }

    fn response() -> impl Strategy<Value = Response> {
        let certified = (
            st::header(),
            st::qc(),
            vec((st::trade(), st::inclusion_proof()), 0..3),
        )
            .prop_map(|(header, certificate, trades)| CertifiedTrades {
                header,
                certificate,
                trades: trades
                    .into_iter()
                    .map(|(trade, proof)| ProvenTrade { trade, proof })
                    .collect(),
            });
        prop_oneof![
            vec(reply(), 0..4).prop_map(Response::Replies),
            (any::<u64>(), vec(certified, 0..3), any::<u64>()).prop_map(
                |(committed, blocks, next_height)| Response::Trades(TradeReport {
                    committed,
                    blocks,
                    next_height
                })
            ),
            (
                any::<u16>(),
                any::<u64>(),
                any::<u32>(),
                proptest::option::of(st::header()),
                any::<u64>(),
                any::<u64>(),
                registry_delta(),
            )
                .prop_map(
                    |(n, height, view, last, last_trades, last_bids, registry)| {
                        Response::Status(Box::new(NodeStatus {
                            node: NodeId(n),
                            height,
                            view,
                            last,
                            last_trades,
                            last_bids,
                            registry,
                        }))
                    }
                ),
            "[a-z ]{0,20}".prop_map(|detail| Response::Failed(RequestFailure {
                kind: FailureKind::Forbidden,
                detail
            })),
            (st::header(), st::qc(), st::body()).prop_map(|(header, certificate, body)| {
                Response::Process(Box::new(CertifiedProcess {
                    header,
                    certificate,
                    process: body.process,
                }))
            }),
            proptest::option::of(st::signed(st::batch()))
                .prop_map(|b| Response::Batch(b.map(Box::new))),
            proptest::option::of(message()).prop_map(|m| Response::Frame(m.map(|m| {
                let bytes = crate::consensus::compact::encode(&m);
                Box::new(crate::consensus::compact::Frame::from_canonical_bytes(&bytes).unwrap())
            }))),
        ]
    }

    /// Round trip, and the canonical property on a mutation of one byte (spec D1, D2).
    fn check<T: Tagged + PartialEq + std::fmt::Debug>(
        x: &T,
        pos: prop::sample::Index,
        byte: u8,
    ) -> Result<(), TestCaseError> {
        let bytes = x.to_canonical_bytes();
        prop_assert_eq!(&T::from_canonical_bytes(&bytes).unwrap(), x);
        let mut changed = bytes.clone();
        let i = pos.index(changed.len());
        changed[i] = byte;
        for v in [
            changed,
            bytes[..i].to_vec(),
            [bytes.as_slice(), &[byte]].concat(),
        ] {
            if let Ok(y) = T::from_canonical_bytes(&v) {
                prop_assert_eq!(y.to_canonical_bytes(), v);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn decode_encode_message(x in message(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
            check(&x, pos, b)?;
        }

        #[test]
        fn decode_encode_record(x in record(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
            check(&x, pos, b)?;
        }

        #[test]
        fn decode_encode_request(x in request(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
            check(&x, pos, b)?;
        }

        #[test]
        fn decode_encode_response(x in response(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
            check(&x, pos, b)?;
        }

        /// Arbitrary bytes behind each wire tag: whatever decodes re-encodes to itself, and
        /// nothing panics.
        #[test]
        fn wire_decoders_reject_or_round_trip_arbitrary_bytes(tail in vec(any::<u8>(), 0..300)) {
            for tag in WIRE_TAGS {
                let mut b = tag.to_be_bytes().to_vec();
                b.push(crate::encoding::FORMAT_VERSION);
                b.extend_from_slice(&tail);
                macro_rules! each { ($($t:ty),*) => {$(
                    if tag == <$t>::TAG.id {
                        if let Ok(v) = <$t>::from_canonical_bytes(&b) {
                            prop_assert_eq!(v.to_canonical_bytes(), b.clone());
                        }
                    }
                )*}; }
                each!(Message, Request, Response, Record);
            }
        }
    }

    #[test]
    fn malformed_frames_are_rejected_with_a_typed_error() {
        let m = Message::SyncRequest { from: 3 };
        let bytes = m.to_canonical_bytes();
        assert_eq!(Message::from_canonical_bytes(&bytes).unwrap(), m);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            Message::from_canonical_bytes(&trailing).unwrap_err().kind,
            DecodeErrorKind::TrailingBytes { count: 1 }
        ));
        let mut bad = bytes.clone();
        bad[3] = 42;
        assert!(matches!(
            Message::from_canonical_bytes(&bad).unwrap_err().kind,
            DecodeErrorKind::InvalidDiscriminant { value: 42 }
        ));
        assert!(matches!(
            Request::from_canonical_bytes(&bytes).unwrap_err().kind,
            DecodeErrorKind::WrongTag { .. }
        ));
        assert!(Message::from_canonical_bytes(&[]).is_err());
    }

    /// A sample consortium of 4 members and 8 participants, each bidding once for height 1,
    /// run by the simulated cluster until every member has committed `heights` blocks.
    /// The registry delta a status carries gives back the registry it was taken from.
    #[test]
    fn a_registry_delta_applied_to_the_genesis_gives_the_registry() {
        let s = SampleConsortium::new(3, 2);
        let base = &s.genesis;
        assert!(RegistryDelta::between(base, base, Vec::new()).is_empty());
        let mut head = base.clone();
        let revoked = head.participants.remove(1);
        head.participants[0].public_key = crate::crypto::PublicKey([7; 32]);
        head.participants.push(Participant {
            id: ParticipantId(9000),
            name: "Newcomer".into(),
            home: NodeId(2),
            area: head.members[1].area,
            public_key: crate::crypto::PublicKey([8; 32]),
            eic: None,
        });
        head.members[2].public_key = crate::crypto::PublicKey([9; 32]);
        let delta = RegistryDelta::between(
            base,
            &head,
            vec![Revocation {
                participant: revoked.clone(),
                from_height: 4,
            }],
        );
        assert_eq!(delta.participants.len(), 2, "{delta:?}");
        assert_eq!(delta.member_keys.len(), 1, "{delta:?}");
        assert_eq!(delta.apply(base), head);
        let status = NodeStatus {
            node: NodeId(1),
            height: 5,
            view: 0,
            last: None,
            last_trades: 0,
            last_bids: 0,
            registry: delta.clone(),
        };
        let mut bytes = Vec::new();
        status.encode(&mut bytes);
        let back = NodeStatus::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(back.registry, delta);
    }

    pub(crate) fn committed(heights: u64) -> (SampleConsortium, Cluster) {
        let s = SampleConsortium::new(4, 2);
        let security: Vec<Arc<dyn SecurityCheck>> =
            (0..4).map(|_| Arc::new(NoGridModel) as _).collect();
        let mut cluster = Cluster::from_sample(&s, security);
        cluster.start();
        for i in 0..8 {
            cluster.input(i / 2, Input::Bid(s.bid(i, 1, 1)));
        }
        assert!(cluster.run_until(100_000, |c| c.min_height() >= heights));
        (s, cluster)
    }

    /// A participant verifies its trades against the certified header of a block committed by
    /// the simulated cluster, and catches a forged trade or a forged certificate (spec D5).
    #[test]
    fn participant_verifies_certified_trades_and_catches_forgeries() {
        let (s, cluster) = committed(1);
        let block = cluster.nodes[0].store.blocks[0].clone();
        let scheme = Ed25519::default();
        let who = block.body.trades[0].participant;
        let certified = CertifiedTrades::from_block(&block, who);
        assert!(!certified.trades.is_empty());
        let bytes = Response::Trades(TradeReport {
            committed: 1,
            blocks: vec![certified.clone()],
            next_height: 2,
        })
        .to_canonical_bytes();
        let Response::Trades(report) = Response::from_canonical_bytes(&bytes).unwrap() else {
            panic!("a trade report");
        };
        report.blocks[0].verify(&s.genesis, &scheme, who).unwrap();

        let mut forged = certified.clone();
        forged.trades[0].trade.quantity.0 += 1;
        assert!(matches!(
            forged.verify(&s.genesis, &scheme, who),
            Err(ProofError::BadProof { index: 0, .. })
        ));
        let mut forged = certified.clone();
        forged.certificate.signatures.truncate(1);
        assert!(matches!(
            forged.verify(&s.genesis, &scheme, who),
            Err(ProofError::Certificate { .. })
        ));
        let other = s
            .genesis
            .participants
            .iter()
            .map(|p| p.id)
            .find(|p| *p != who)
            .unwrap();
        assert!(matches!(
            certified.verify(&s.genesis, &scheme, other),
            Err(ProofError::NotMine { .. })
        ));
    }

    /// A participant reads an appeal's resolution from certified process data (spec 2.8):
    /// what the simulated cluster committed verifies; altered process data, a certificate of
    /// another block or a short quorum, and another chain's header are caught.
    #[test]
    fn participant_verifies_certified_process_data_and_catches_forgeries() {
        let (s, cluster) = committed(2);
        let scheme = Ed25519::default();
        let block = cluster.nodes[0].store.blocks[0].clone();
        let certified = CertifiedProcess::from_block(&block);
        let bytes = Response::Process(Box::new(certified.clone())).to_canonical_bytes();
        let Response::Process(answer) = Response::from_canonical_bytes(&bytes).unwrap() else {
            panic!("process data");
        };
        answer.verify(&s.genesis, &scheme).unwrap();
        assert_eq!(answer.appeals_of(s.genesis.participants[0].id).count(), 0);

        let mut forged = certified.clone();
        forged.process.skipped.push(NodeId(1));
        assert_eq!(
            forged.verify(&s.genesis, &scheme),
            Err(ProofError::ProcessHash { height: 1 })
        );
        let mut forged = certified.clone();
        forged.certificate = cluster.nodes[0].store.blocks[1].certificate.clone();
        assert_eq!(
            forged.verify(&s.genesis, &scheme),
            Err(ProofError::CertificateTarget { height: 1 })
        );
        let mut forged = certified.clone();
        forged.certificate.signatures.truncate(1);
        assert!(matches!(
            forged.verify(&s.genesis, &scheme),
            Err(ProofError::Certificate { .. })
        ));
        let mut forged = certified;
        forged.header.chain_id = crate::crypto::sha256(&[b"another chain"]);
        assert_eq!(
            forged.verify(&s.genesis, &scheme),
            Err(ProofError::WrongChain { height: 1 })
        );
    }
}
