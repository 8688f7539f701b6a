//! The inputs, messages, effects, timers, replies and persistent records of the state machine.

use crate::block::{
    Appeal, AppealResolution, Block, BlockBody, BlockHeader, Evidence, Objection,
    QuorumCertificate, Round, SkipCertificate, SkipVote, Vote,
};
use crate::crypto::{Digest, Signed};
use crate::market::{BidError, SignedBatch, SignedBid, SignedReceipt, Trade};
use crate::registry::SignedChange;
use crate::units::{NodeId, ParticipantId};

/// Most blocks in one sync response.
pub const MAX_SYNC_BLOCKS: u64 = 16;

/// A primary's proposal for one round (view, revision) of a height.
///
/// `stamp` is the primary's signed `Propose` vote for the header's digest in this round. The
/// header is usually built in this round; after a skip it can be the header of a block locked
/// in an earlier round, which the new primary must propose again unchanged (spec S2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proposal {
    /// The primary's signed `Propose` vote.
    pub stamp: Signed<Vote>,
    /// The proposed header.
    pub header: BlockHeader,
    /// The proposed body.
    pub body: std::sync::Arc<BlockBody>,
    /// For a round in view v > 0: the skip certificate for view v - 1.
    pub justification: Option<SkipCertificate>,
}

impl Proposal {
    /// The round the proposal is for.
    pub fn round(&self) -> Round {
        Round::new(self.stamp.body.view, self.stamp.body.revision)
    }

    /// The height.
    pub fn height(&self) -> u64 {
        self.stamp.body.height
    }
}

/// A message between management nodes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Message {
    /// A home node's batch for a height, sent to every member at gate closure (step 3 of the
    /// paper's trade process). Every member keeps it, so a skip loses no bid.
    Batch(SignedBatch),
    /// The primary's proposal (step 4).
    Proposal(Box<Proposal>),
    /// An `Endorse` or `Commit` vote, sent to the round's primary (paper step 3: each member
    /// returns its verification result to the primary).
    Vote(Signed<Vote>),
    /// The endorsement certificate the round's primary gathered, sent to every member so that
    /// it locks on the block and votes to commit.
    Endorsed(Box<QuorumCertificate>),
    /// An objection to a proposal, sent to the primary; a `MissingBatch` objection carries the
    /// objector's batch.
    Objection(Box<Signed<Objection>>, Option<Box<SignedBatch>>),
    /// A participant's appeal, forwarded by its home node to the primary (step 5).
    Appeal {
        /// The appeal as the participant signed it.
        appeal: Box<Signed<Appeal>>,
        /// The forwarding home node.
        via: NodeId,
    },
    /// A vote to skip the primary of (height, view), sent to every member, with the proposal
    /// the voter is locked on, so the next primary can propose it again, and the batches the
    /// vote reports holding, so the next primary can include them (spec N2). Batches are
    /// signed by their home nodes and need no other signature.
    Skip(
        Box<Signed<SkipVote>>,
        Option<Box<Proposal>>,
        Vec<SignedBatch>,
    ),
    /// The skip certificate that opened the sender's view, sent to a node that is still
    /// voting to skip an earlier view, so it can catch up on views; with the sender's batches
    /// of the homes the certificate reports.
    ViewCertificate(Box<SkipCertificate>, Vec<SignedBatch>),
    /// A committed block, sent by the node that completed its certificate.
    Decided(Box<Block>),
    /// "Send me the committed blocks from this height on."
    SyncRequest {
        /// The first height wanted.
        from: u64,
    },
    /// Committed blocks, consecutive, at most [`MAX_SYNC_BLOCKS`].
    SyncResponse(Vec<Block>),
}

/// Where a node stands: the next height it has to decide and its view there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The next height to decide.
    pub height: u64,
    /// The view at that height.
    pub view: u32,
}

/// Where a message belongs in the protocol: the height it is about and, for a message of one
/// round, its view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The height.
    pub height: u64,
    /// The view, for proposals, votes, endorsement certificates, objections and view
    /// certificates; none for messages about the height as a whole.
    pub view: Option<u32>,
}

impl Message {
    /// The message's kind, for reports and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Batch(_) => "batch",
            Message::Proposal(_) => "proposal",
            Message::Vote(_) => "vote",
            Message::Endorsed(_) => "endorsement certificate",
            Message::Objection(..) => "objection",
            Message::Appeal { .. } => "appeal",
            Message::Skip(..) => "skip vote",
            Message::ViewCertificate(..) => "view certificate",
            Message::Decided(_) => "decided block",
            Message::SyncRequest { .. } => "sync request",
            Message::SyncResponse(_) => "sync response",
        }
    }

    /// The height (and view) this message is about; none for a sync request (any node ahead
    /// of its height answers it) and for an empty sync response.
    pub fn position(&self) -> Option<Position> {
        let at = |height, view| Some(Position { height, view });
        match self {
            Message::Batch(b) => at(b.body.height, None),
            Message::Proposal(p) => at(p.height(), Some(p.round().view)),
            Message::Vote(v) => at(v.body.height, Some(v.body.view)),
            Message::Endorsed(c) => at(c.height, Some(c.view)),
            Message::Objection(o, _) => at(o.body.height, Some(o.body.view)),
            Message::Appeal { appeal, .. } => at(appeal.body.height, None),
            // Answered with a view certificate by a node in the next view (2.7).
            Message::Skip(v, ..) => at(v.body.height, None),
            Message::ViewCertificate(c, _) => at(c.height, Some(c.view)),
            Message::Decided(b) => at(b.header.height, None),
            Message::SyncResponse(blocks) => blocks
                .iter()
                .map(|b| b.header.height)
                .max()
                .and_then(|h| at(h, None)),
            Message::SyncRequest { .. } => None,
        }
    }

    /// Whether this message, sent by a node now at `from` to a node now at `to`, may still
    /// change a node, when the slowest node is at `floor`. A skip vote, a view certificate and
    /// a sync response change their recipient alone (spec 2.7, 2.9): a view certificate while
    /// the recipient has not left its height and view; a skip vote while the recipient may
    /// count it (it has not left the vote's view) or answer it with news (it is in the view
    /// after the vote's, and the sender is still at or before the vote's view), or, if the
    /// recipient decided the vote's height, while the sender has not (it is answered with the
    /// blocks); a sync
    /// response while the recipient has not decided all its blocks. A sync request changes
    /// no node, and is answered with blocks below the answering node's height, so it lives
    /// while such an answer could still be news to its sender: while some node may get above
    /// the height it asks from, and its sender has heights below that left to decide.
    /// `ceiling` is the highest next height to decide that any node can reach (`u64::MAX`
    /// outside a bounded search). Every other message may change any node that has not left
    /// its height or view ([`Message::concerns`], at the floor). A node's height and view
    /// never fall, even across a restart, so a message that is not live stays so: it is
    /// dead.
    pub fn live(&self, from: Place, to: Place, floor: Place, ceiling: u64) -> bool {
        match self {
            Message::SyncRequest { from: first } => *first < ceiling && from.height < ceiling,
            Message::Skip(v, ..) => {
                let (h, w) = (v.body.height, v.body.view);
                match to.height.cmp(&h) {
                    std::cmp::Ordering::Less => true,
                    // Answered with the blocks from h, news while the sender has not left h.
                    std::cmp::Ordering::Greater => from.height <= h,
                    std::cmp::Ordering::Equal => {
                        to.view <= w
                            || (u64::from(to.view) == u64::from(w) + 1
                                && (from.height, from.view) <= (h, w))
                    }
                }
            }
            Message::ViewCertificate(c, _) => (to.height, to.view) <= (c.height, c.view),
            // Committed blocks change only their recipient, while it has one of their heights
            // left to decide (or asks for more after a full response).
            Message::SyncResponse(blocks) => {
                blocks.len() as u64 >= MAX_SYNC_BLOCKS
                    || blocks.iter().any(|b| b.header.height >= to.height)
            }
            _ => self.concerns(floor.height, floor.view),
        }
    }

    /// Whether a node whose next height to decide is `height` and whose view is `view` may
    /// still act on this message. It does not on a message of a height it has left, nor on one
    /// of a view it has left (spec 2.7), but for a skip vote, which it answers (see
    /// [`Message::live`]); a sync request is answered by any node ahead of it. A node's height and
    /// view never fall, even across a restart (they are rebuilt from its stored blocks and
    /// skip certificates), so a message no node may act on stays so: it is dead.
    pub fn concerns(&self, height: u64, view: u32) -> bool {
        match self.position() {
            None => true,
            Some(Position {
                height: h,
                view: Some(v),
            }) => (h, v) >= (height, view),
            Some(Position { height: h, .. }) => h >= height,
        }
    }
}

/// The state machine's timers. Each names the height (and view) it was set for, so a timer
/// that fires after the node moved on is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Gate closure: the home node signs and sends its batch for the height.
    Gate(u64),
    /// The primary stops waiting for missing batches and proposes.
    BatchWait(u64),
    /// The view has lasted too long: vote to skip its primary.
    View(u64, u32),
    /// The primary stops waiting for the other members' answers to revision (h, v, r) and
    /// revises with the objections it accepted (spec 2.6).
    Revise(u64, u32, u32),
}

/// What a node tells a participant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reply {
    /// The bid is accepted for the height the receipt names.
    Receipt(SignedReceipt),
    /// The bid is refused.
    BidRejected {
        /// The bid's id.
        bid: Digest,
        /// Why.
        reason: BidError,
    },
    /// The appeal was forwarded to the primary.
    AppealForwarded {
        /// The height appealed.
        height: u64,
    },
    /// The appeal is refused without reaching the primary.
    AppealRejected {
        /// Why.
        reason: String,
    },
    /// The appeal's resolution, as recorded in the committed block.
    AppealResolved {
        /// The height.
        height: u64,
        /// The resolution.
        resolution: AppealResolution,
    },
    /// The participant's trades in a committed block.
    Result {
        /// The height.
        height: u64,
        /// The block's digest.
        block: Digest,
        /// The trades.
        trades: Vec<Trade>,
    },
    /// A registry change is accepted: this node's batch for `height` carries it, and it
    /// takes effect from `height + 1` once that block commits (spec A5).
    ChangeAccepted {
        /// The change's id.
        change: Digest,
        /// The height whose batch carries it.
        height: u64,
    },
    /// A registry change is refused.
    ChangeRefused {
        /// The change's id.
        change: Digest,
        /// Why.
        reason: String,
    },
}

/// What the runtime must write to durable storage before it executes any later effect of the
/// same step: a write-ahead log from which [`super::NodeState::restore`] rebuilds the state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Record {
    /// A receipted bid of this node's participant, pending for `height` (the receipt's height,
    /// or a later one it was carried to because its batch missed a block).
    Bid {
        /// The bid.
        bid: SignedBid,
        /// The receipt the participant holds.
        receipt: SignedReceipt,
        /// The height whose batch will carry it.
        height: u64,
    },
    /// A batch: this node's own (its gate closed) or a peer's.
    Batch(SignedBatch),
    /// A vote this node signed (`Propose`, `Endorse` or `Commit`).
    Vote(Signed<Vote>),
    /// An endorsement certificate this node locked on, with the proposal it certifies.
    Lock(QuorumCertificate, Box<Proposal>),
    /// A skip vote this node signed.
    Skip(Signed<SkipVote>),
    /// A skip certificate that moved this node to the next view.
    SkipCertificate(SkipCertificate),
    /// An appeal this primary received.
    Appeal {
        /// The appeal.
        appeal: Signed<Appeal>,
        /// The forwarding home node.
        via: NodeId,
    },
    /// An objection this primary accepted.
    Objection(Signed<Objection>, Option<SignedBatch>),
    /// A registry change this node sponsors, pending for `height`'s batch (spec A5).
    Change {
        /// The change.
        change: SignedChange,
        /// The height whose batch will carry it.
        height: u64,
    },
}

/// Where a record sits in a log that [`super::NodeState::restore`] reads: its group (bids,
/// batches, votes, skip votes, skip certificates, locks, appeals, objections), then its place
/// inside the group. `restore` gives the same state for any order of the log that keeps the
/// relative order of records with equal keys: it treats records with different keys alike
/// whatever their order (a batch is keyed by its home, a vote by its slot, a skip vote or skip
/// certificate by its view; within the other groups the order written is kept). A runtime may
/// therefore keep its log sorted by this key, and the model checker does, so that logs that
/// differ only in the order unrelated messages arrived are one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RestoreKey {
    /// The record's kind, in the order restore reads them.
    pub group: u8,
    /// The height, for batches, votes, skip votes and skip certificates (0 for the others).
    pub height: u64,
    /// The home of a batch, the kind and view of a vote, or the view of a skip vote or
    /// certificate (0 for the others).
    pub slot: u64,
    /// The revision of a vote (0 for the others).
    pub revision: u64,
}

impl Record {
    /// The record's [`RestoreKey`].
    pub fn restore_key(&self) -> RestoreKey {
        let key = |group, height, slot, revision| RestoreKey {
            group,
            height,
            slot,
            revision,
        };
        match self {
            Record::Bid { .. } => key(0, 0, 0, 0),
            Record::Batch(b) => key(1, b.body.height, u64::from(b.body.home.0), 0),
            Record::Vote(v) => key(
                2,
                v.body.height,
                (v.body.kind as u64) << 32 | u64::from(v.body.view),
                u64::from(v.body.revision),
            ),
            Record::Skip(v) => key(3, v.body.height, u64::from(v.body.view), 0),
            Record::SkipCertificate(c) => key(4, c.height, u64::from(c.view), 0),
            Record::Lock(..) => key(5, 0, 0, 0),
            Record::Appeal { .. } => key(6, 0, 0, 0),
            Record::Objection(..) => key(7, 0, 0, 0),
            Record::Change { .. } => key(8, 0, 0, 0),
        }
    }

    /// The height the record belongs to; records below the next height to decide can be
    /// pruned once a block is decided.
    pub fn height(&self) -> u64 {
        match self {
            Record::Bid { height, .. } => *height,
            Record::Batch(b) => b.body.height,
            Record::Vote(v) => v.body.height,
            Record::Lock(qc, _) => qc.height,
            Record::Skip(s) => s.body.height,
            Record::SkipCertificate(c) => c.height,
            Record::Appeal { appeal, .. } => appeal.body.height,
            Record::Objection(o, _) => o.body.height,
            Record::Change { height, .. } => *height,
        }
    }
}

/// An input to the state machine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Input {
    /// The node (re)started: arm timers, ask peers for blocks it missed.
    Start,
    /// A participant submitted a bid.
    Bid(SignedBid),
    /// A participant submitted an appeal.
    Appeal(Signed<Appeal>),
    /// An operator submitted a registry change this node sponsors (spec A1-A5).
    Change(SignedChange),
    /// A peer's message.
    Message {
        /// The authenticated sender.
        from: NodeId,
        /// The message.
        msg: Message,
    },
    /// A timer fired.
    Timer(Timer),
}

/// What the runtime must do. A step's effects come as a [`Ready`](super::Ready): its storage
/// effects (`Persist`, `Decide`, `Prune`) are durable before any other is carried out
/// ("persist before send", spec N3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effect {
    /// Append a record to the write-ahead log.
    Persist(Record),
    /// A block is committed: store it durably; it is final.
    Decide(Box<Block>),
    /// Records below this height are no longer needed.
    Prune {
        /// The next height to decide.
        below: u64,
    },
    /// Send to one member.
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Send to every other member.
    Broadcast(Message),
    /// Send the stored committed blocks `from..=to` to a member (a sync response).
    ServeBlocks {
        /// The recipient.
        to: NodeId,
        /// First height.
        from: u64,
        /// Last height.
        to_height: u64,
    },
    /// Arm a timer (replacing an armed timer of the same identity).
    SetTimer {
        /// Which timer.
        timer: Timer,
        /// After how many milliseconds it fires.
        after_ms: u64,
    },
    /// Disarm a timer.
    CancelTimer(Timer),
    /// Answer a participant.
    Reply {
        /// The participant.
        to: ParticipantId,
        /// The answer.
        reply: Reply,
    },
    /// Answer the operator's request this step serves (a registry change).
    Answer(Reply),
    /// Equivocation was detected; the evidence is kept and goes into the next block this node
    /// proposes.
    Evidence(Box<Evidence>),
}
