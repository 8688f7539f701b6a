//! Blocks, votes and certificates: the settlement evidence (spec D10-D14).
//!
//! A block is a header, a body and a commit certificate. The header commits to the body
//! through two digests: the Merkle root of the trades and the digest of the process data (the
//! batches, the clearing record, objections, appeals, rejections, skipped primaries and the
//! skip certificate). The block's identity is the digest of its header; the certificate's
//! signatures are over that digest, so changing any byte of the block is either caught by a
//! digest or by a signature.

use std::collections::BTreeSet;

use crate::clearing::{ClearingRecord, Cut};
use crate::crypto::{Digest, PublicKey, Signature, SignatureScheme, Signed, digest_of};
use crate::encoding::{Canonical, DecodeError, DecodeErrorKind, Reader};
use crate::genesis::{Genesis, MAX_MEMBERS};
use crate::market::{SignedBatch, SignedBid, SignedReceipt, Trade};
use crate::merkle;
use crate::units::{AreaId, NodeId, ParticipantId, Timestamp};

mod votes;
pub use votes::*;

/// The block format this build writes and reads.
pub const BLOCK_VERSION: u16 = 1;
/// Most trades in one block (as many as a clearing outcome may award steps).
pub const MAX_BLOCK_TRADES: usize = crate::clearing::MAX_AWARDS;
/// The highest view a block may be proposed in; also bounds the skipped-primaries list.
pub const MAX_VIEW: u32 = 1024;
/// Most objections recorded in one block.
pub const MAX_OBJECTIONS: usize = 4096;
/// Most bytes the signed objections a block records take, encoded: the primary takes no
/// objection past it, as none past [`MAX_OBJECTIONS`], so that a proposal fits one frame
/// (spec D25). The European grid's negotiation (PEGASE 9241 by zone) records 10.7 MiB.
pub const MAX_NEGOTIATION_BYTES: usize = 16 << 20;
/// Most appeals recorded in one block (and kept by a node for one height): with the other
/// limits, a proposal fits one frame (spec D25).
pub const MAX_APPEALS: usize = 256;
/// Most pieces of equivocation evidence in one block.
pub const MAX_EVIDENCE: usize = 256;
/// Longest free-text reason in an objection.
pub const MAX_REASON_LEN: usize = 1024;

/// A block's header: what the certificate signs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockHeader {
    /// The block format, [`BLOCK_VERSION`].
    pub version: u16,
    /// The chain: the genesis digest.
    pub chain_id: Digest,
    /// The height (trading round), from 1.
    pub height: u64,
    /// The view the block was proposed in; above 0 only after a skip.
    pub view: u32,
    /// The negotiation revision, from 0.
    pub revision: u32,
    /// The previous block's digest, or the chain id at height 1.
    pub previous: Digest,
    /// The Merkle root of the trades.
    pub trades_root: Digest,
    /// The digest of the process data.
    pub process_hash: Digest,
    /// When the primary built the block (its clock, an input to the core).
    pub timestamp: Timestamp,
    /// The primary that built the block.
    pub primary: NodeId,
}
crate::canonical_struct!(BlockHeader {
    version,
    chain_id,
    height,
    view,
    revision,
    previous,
    trades_root,
    process_hash,
    timestamp,
    primary,
});
crate::tagged!(BlockHeader, 0x0201, "block-header", 256);

impl BlockHeader {
    /// The block's identity.
    pub fn digest(&self) -> Digest {
        digest_of(self)
    }
}

/// Why a bid in an included batch ended without a trade by rule, rather than by price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectionReason {
    /// The management node of the bid's area did not take part in the view (it was not in
    /// the skip certificate), so it could not co-sign a trade there.
    AreaUnavailable,
    /// Cut by the negotiation fallback: later-submitted bids are cut first.
    Fallback,
    /// The bid breaks a rule of the consortium or its signature does not verify.
    Invalid,
    /// The same bid appeared earlier in the block.
    Duplicate,
    /// The gate schedule clears the bid's delivery period at another height (spec N4).
    OutsideGate,
}
crate::canonical_enum!(RejectionReason {
    AreaUnavailable = 0,
    Fallback = 1,
    Invalid = 2,
    Duplicate = 3,
    OutsideGate = 4,
});

/// A recorded rejection of one bid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rejection {
    /// The bid's id.
    pub bid: Digest,
    /// Why.
    pub reason: RejectionReason,
}
crate::canonical_struct!(Rejection { bid, reason });

/// What a node objects to in a proposal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectionReason {
    /// The outcome overloads a line of the objector's grid; the cuts restore security.
    Security {
        /// One cut per violated line and direction.
        cuts: Vec<Cut>,
    },
    /// The objector's own batch is missing or altered; this is the digest of the batch it sent.
    MissingBatch {
        /// The digest of the batch's body.
        batch: Digest,
    },
    /// The proposal is invalid for another reason (wrong link, wrong clearing, bad signature).
    Invalid {
        /// What is wrong, in words.
        detail: String,
    },
}

impl Canonical for ObjectionReason {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ObjectionReason::Security { cuts } => {
                out.push(0);
                crate::encoding::encode_seq(cuts, out);
            }
            ObjectionReason::MissingBatch { batch } => {
                out.push(1);
                batch.encode(out);
            }
            ObjectionReason::Invalid { detail } => {
                out.push(2);
                crate::encoding::encode_str(detail, out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match u8::decode(r)? {
            0 => Ok(ObjectionReason::Security {
                cuts: crate::encoding::decode_seq(r, MAX_CUTS_PER_OBJECTION)
                    .map_err(|e| e.within("cuts"))?,
            }),
            1 => Ok(ObjectionReason::MissingBatch {
                batch: Digest::decode(r)?,
            }),
            2 => Ok(ObjectionReason::Invalid {
                detail: crate::encoding::decode_str(r, MAX_REASON_LEN)
                    .map_err(|e| e.within("detail"))?,
            }),
            value => Err(DecodeError::new(DecodeErrorKind::InvalidDiscriminant {
                value,
            })),
        }
    }
}

/// Most cuts in one objection.
pub const MAX_CUTS_PER_OBJECTION: usize = 1024;

/// A node's objection to a proposal, signed by the objector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Objection {
    /// The chain.
    pub chain_id: Digest,
    /// The height.
    pub height: u64,
    /// The view of the proposal.
    pub view: u32,
    /// The revision of the proposal.
    pub revision: u32,
    /// The digest of the proposed header.
    pub block: Digest,
    /// Who objects.
    pub objector: NodeId,
    /// Why.
    pub reason: ObjectionReason,
}
crate::canonical_struct!(Objection {
    chain_id,
    height,
    view,
    revision,
    block,
    objector,
    reason
});
crate::tagged!(Objection, 0x0202, "objection", 64 * 1024 * 1024);

/// What a participant disputes in a preliminary result.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppealClaim {
    /// "My bid was receipted for this height but is not in the result."
    Omitted {
        /// The bid.
        bid: Box<SignedBid>,
        /// The home node's receipt for it.
        receipt: SignedReceipt,
    },
    /// "My bid should have been accepted (or accepted differently) under the rule."
    Misallocated {
        /// The bid's id.
        bid: Digest,
    },
}

impl Canonical for AppealClaim {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            AppealClaim::Omitted { bid, receipt } => {
                out.push(0);
                bid.encode(out);
                receipt.encode(out);
            }
            AppealClaim::Misallocated { bid } => {
                out.push(1);
                bid.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match u8::decode(r)? {
            0 => Ok(AppealClaim::Omitted {
                bid: Box::new(SignedBid::decode(r).map_err(|e| e.within("bid"))?),
                receipt: SignedReceipt::decode(r).map_err(|e| e.within("receipt"))?,
            }),
            1 => Ok(AppealClaim::Misallocated {
                bid: Digest::decode(r)?,
            }),
            value => Err(DecodeError::new(DecodeErrorKind::InvalidDiscriminant {
                value,
            })),
        }
    }
}

/// A participant's appeal against a preliminary result, signed by the participant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Appeal {
    /// The chain.
    pub chain_id: Digest,
    /// Who appeals.
    pub participant: ParticipantId,
    /// The height of the disputed result.
    pub height: u64,
    /// What is disputed.
    pub claim: AppealClaim,
}
crate::canonical_struct!(Appeal {
    chain_id,
    participant,
    height,
    claim
});
crate::tagged!(
    Appeal,
    0x0203,
    "appeal",
    64 + <SignedBid as crate::encoding::Tagged>::MAX_ENCODED_LEN
        + <SignedReceipt as crate::encoding::Tagged>::MAX_ENCODED_LEN
);

/// How the primary resolved an appeal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppealResolution {
    /// The claim holds; the named revision corrects the result.
    Upheld {
        /// The revision that includes the correction.
        revision: u32,
    },
    /// The bid was in the result already.
    RejectedAlreadyIncluded,
    /// The receipt or the bid does not verify, or they do not match the appellant or height.
    RejectedUnverifiable,
    /// The clearing was recomputed by the rule and the outcome stands.
    RejectedOutcomeStands,
}

impl std::fmt::Display for AppealResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppealResolution::Upheld { revision } => {
                write!(f, "upheld: revision {revision} corrects the result")
            }
            AppealResolution::RejectedAlreadyIncluded => {
                write!(f, "rejected: the bid was in the result already")
            }
            AppealResolution::RejectedUnverifiable => write!(
                f,
                "rejected: the bid or receipt does not verify, or does not match the appellant or height"
            ),
            AppealResolution::RejectedOutcomeStands => write!(
                f,
                "rejected: the clearing was recomputed by the rule and the outcome stands"
            ),
        }
    }
}

impl Canonical for AppealResolution {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            AppealResolution::Upheld { revision } => {
                out.push(0);
                revision.encode(out);
            }
            AppealResolution::RejectedAlreadyIncluded => out.push(1),
            AppealResolution::RejectedUnverifiable => out.push(2),
            AppealResolution::RejectedOutcomeStands => out.push(3),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match u8::decode(r)? {
            0 => Ok(AppealResolution::Upheld {
                revision: u32::decode(r)?,
            }),
            1 => Ok(AppealResolution::RejectedAlreadyIncluded),
            2 => Ok(AppealResolution::RejectedUnverifiable),
            3 => Ok(AppealResolution::RejectedOutcomeStands),
            value => Err(DecodeError::new(DecodeErrorKind::InvalidDiscriminant {
                value,
            })),
        }
    }
}

/// An appeal and its resolution, as recorded in a block.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppealRecord {
    /// The appeal as the participant signed it.
    pub appeal: Signed<Appeal>,
    /// The home node that forwarded it.
    pub via: NodeId,
    /// The resolution.
    pub resolution: AppealResolution,
}
crate::canonical_struct!(AppealRecord {
    appeal,
    via,
    resolution
});

impl AppealRecord {
    /// The bid an upheld omission appeal brings into the clearing, with its receipt: a bid
    /// the block clears although no batch carries it (spec V5).
    pub fn upheld_omission(&self) -> Option<(&SignedBid, &SignedReceipt)> {
        match (&self.resolution, &self.appeal.body.claim) {
            (AppealResolution::Upheld { .. }, AppealClaim::Omitted { bid, receipt }) => {
                Some((bid, receipt))
            }
            _ => None,
        }
    }
}

/// Everything the primary used and decided on the way to the trades.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessData {
    /// The home nodes' signed batches that were cleared, in member order.
    pub batches: Vec<SignedBatch>,
    /// The rule, the cuts and the outcome.
    pub clearing: ClearingRecord,
    /// The objections that led to revisions, in the order they were resolved.
    pub objections: Vec<Signed<Objection>>,
    /// The participants' appeals and their resolutions.
    pub appeals: Vec<AppealRecord>,
    /// Bids in the batches that were rejected by rule, with the reason.
    pub rejections: Vec<Rejection>,
    /// The primaries of views 0..view that were skipped.
    pub skipped: Vec<NodeId>,
    /// The certificate that justifies a view above 0.
    pub skip_certificate: Option<SkipCertificate>,
    /// Equivocation evidence the primary had seen.
    pub evidence: Vec<Evidence>,
}
crate::canonical_struct!(ProcessData {
    batches: seq(MAX_MEMBERS),
    clearing,
    objections: seq(MAX_OBJECTIONS),
    appeals: seq(MAX_APPEALS),
    rejections: seq(MAX_BLOCK_TRADES),
    skipped: seq(MAX_VIEW as usize),
    skip_certificate,
    evidence: seq(MAX_EVIDENCE),
});
crate::tagged!(ProcessData, 0x0205, "process-data", 1 << 30);

impl ProcessData {
    /// How many bids its batches carry.
    pub fn bid_count(&self) -> usize {
        self.batches.iter().map(|b| b.body.bids.len()).sum()
    }

    /// Whether its batches carry any registry change (spec 2.14).
    pub fn has_changes(&self) -> bool {
        self.batches.iter().any(|b| !b.body.changes.is_empty())
    }
}

/// The trades and the process data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockBody {
    /// The trades, the Merkle tree's leaves in order.
    pub trades: Vec<Trade>,
    /// The process data.
    pub process: ProcessData,
}
crate::canonical_struct!(BlockBody {
    trades: seq(MAX_BLOCK_TRADES),
    process
});
crate::tagged!(BlockBody, 0x0204, "block-body", 1 << 30);

impl BlockBody {
    /// The clearing outcome and trades this body records: what verification compares with
    /// what the rule gives for the body's clearing input (spec V6), and what a member's
    /// security check reads (V7).
    pub fn cleared(&self) -> crate::clearing::Cleared {
        crate::clearing::Cleared {
            outcome: self.process.clearing.outcome.clone(),
            trades: self.trades.clone(),
        }
    }

    /// The leaf hashes of the trades.
    pub fn trade_leaves(&self) -> Vec<Digest> {
        self.trades.iter().map(merkle::leaf_hash_of).collect()
    }

    /// The Merkle root over the trades.
    pub fn trades_root(&self) -> Digest {
        merkle::root(&self.trade_leaves())
    }

    /// The digest of the process data.
    pub fn process_hash(&self) -> Digest {
        digest_of(&self.process)
    }

    /// The areas the block touches: every trade's area and both ends of every tie line with a
    /// non-zero flow.
    pub fn touched_areas(&self, genesis: &Genesis) -> BTreeSet<AreaId> {
        let mut areas: BTreeSet<AreaId> = self.trades.iter().map(|t| t.area).collect();
        for f in &self.process.clearing.outcome.flows {
            if f.flow.0 != 0 {
                if let Some(t) = genesis.tie_line(f.tie_line) {
                    areas.insert(t.from);
                    areas.insert(t.to);
                }
            }
        }
        areas
    }

    /// The members whose endorsement the block needs besides a quorum: every member of every
    /// touched area (the paper's joint signatures; spec D12).
    pub fn required_signers(&self, genesis: &Genesis) -> Vec<NodeId> {
        let areas = self.touched_areas(genesis);
        genesis
            .members
            .iter()
            .filter(|m| areas.contains(&m.area))
            .map(|m| m.id)
            .collect()
    }
}

/// A committed block: header, body and the commit certificate over the header.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The body.
    pub body: BlockBody,
    /// A quorum of commit votes for the header, with every touched area's members.
    pub certificate: QuorumCertificate,
}
crate::canonical_struct!(Block {
    header,
    body,
    certificate
});
crate::tagged!(Block, 0x0200, "block", 1 << 30);

impl Block {
    /// The block's identity: the digest of its header.
    pub fn digest(&self) -> Digest {
        self.header.digest()
    }
}
