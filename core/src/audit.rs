//! Chain audit: everything a regulator, a restarted node or a participant checks about a copy
//! of the chain, with nothing but the genesis (spec D15-D22).

use std::collections::{BTreeMap, BTreeSet};

use crate::block::{
    AppealClaim, BLOCK_VERSION, Block, BlockHeader, CertificateError, MAX_VIEW, RejectionReason,
    VoteKind,
};
use crate::crypto::{Digest, SignatureScheme};
use crate::encoding::{DecodeError, Tagged};
use crate::genesis::Genesis;
use crate::market::Bid;
use crate::units::{NodeId, Timestamp};

/// What an audit found in a clean chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditSummary {
    /// Blocks audited.
    pub blocks: u64,
    /// Trades in them.
    pub trades: u64,
    /// Bids in their batches.
    pub bids: u64,
    /// Signatures verified.
    pub signatures: u64,
    /// Blocks committed in a view above 0 (after a fault skip).
    pub fault_skips: u64,
    /// Negotiation revisions over all blocks.
    pub revisions: u64,
    /// The digest of the last block, or the chain id for an empty chain.
    pub head: Digest,
}

/// The first problem found, and the height of the block it is in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("block at height {height}: {reason}")]
pub struct AuditError {
    /// The height of the first bad block (its position in the sequence, from 1).
    pub height: u64,
    /// What is wrong with it.
    pub reason: AuditFailure,
}

/// Everything that can be wrong with a block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditFailure {
    /// The bytes are not a canonical block.
    #[error("not a canonical block encoding: {0}")]
    Decode(DecodeError),
    /// The block is not at the height its position gives (dropped, reordered or repeated).
    #[error("header says height {found}, expected {expected}")]
    WrongHeight {
        /// The position's height.
        expected: u64,
        /// The header's.
        found: u64,
    },
    /// The header names another chain.
    #[error("header names chain {found:?}, expected {expected:?}")]
    WrongChain {
        /// This chain's id.
        expected: Digest,
        /// The header's.
        found: Digest,
    },
    /// The header has an unknown format version.
    #[error("block format version {0} (this build audits {BLOCK_VERSION})")]
    WrongVersion(u16),
    /// The header does not link to the previous block.
    #[error("previous-block digest is {found:?}, the previous block is {expected:?}")]
    BrokenLink {
        /// The previous block's digest.
        expected: Digest,
        /// What the header says.
        found: Digest,
    },
    /// The trades do not hash to the header's Merkle root.
    #[error("trades Merkle root {computed:?} differs from the header's {header:?}")]
    TradesRoot {
        /// The root of the body's trades.
        computed: Digest,
        /// The header's.
        header: Digest,
    },
    /// The process data does not hash to the header's digest.
    #[error("process-data digest {computed:?} differs from the header's {header:?}")]
    ProcessHash {
        /// The digest of the body's process data.
        computed: Digest,
        /// The header's.
        header: Digest,
    },
    /// The timestamp is earlier than the previous block's.
    #[error("timestamp {found} is earlier than the previous block's {previous}")]
    TimestampBackwards {
        /// The previous block's.
        previous: Timestamp,
        /// This block's.
        found: Timestamp,
    },
    /// The view is beyond the limit.
    #[error("view {0} is above the maximum of {MAX_VIEW}")]
    ViewTooHigh(u32),
    /// The primary is not the one the rotation gives.
    #[error("primary is {found}, the rotation gives {expected} for this height and view")]
    WrongPrimary {
        /// The rotation's primary.
        expected: NodeId,
        /// The header's.
        found: NodeId,
    },
    /// A view above 0 without a skip certificate.
    #[error("view {0} needs a skip certificate for view {prev}", prev = .0 - 1)]
    MissingSkipCertificate(u32),
    /// A skip certificate in view 0.
    #[error("a block in view 0 carries a skip certificate")]
    UnexpectedSkipCertificate,
    /// The skip certificate is not valid.
    #[error("skip certificate: {0}")]
    SkipCertificate(CertificateError),
    /// The recorded skipped primaries are not the rotation's.
    #[error("skipped primaries {found:?}, the rotation gives {expected:?}")]
    SkippedPrimaries {
        /// The rotation's primaries of the skipped views.
        expected: Vec<NodeId>,
        /// The recorded list.
        found: Vec<NodeId>,
    },
    /// The commit certificate is for something else.
    #[error("commit certificate is for {0}")]
    CertificateTarget(String),
    /// The commit certificate is not valid.
    #[error("commit certificate: {0}")]
    Certificate(CertificateError),
    /// A batch is not valid.
    #[error("batch {index}: {reason}")]
    Batch {
        /// Its position in the block.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A bid in a batch is invalid and not recorded as rejected.
    #[error("batch {batch}, bid {index}: {reason}")]
    Bid {
        /// The batch's position.
        batch: usize,
        /// The bid's position in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A trade does not match a bid in the block.
    #[error("trade {index}: {reason}")]
    Trade {
        /// The trade's position.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record in the process data is not valid.
    #[error("{0}")]
    Process(String),
}

/// Audits blocks one after another from height 1. The same checks serve a full audit, a
/// restarted node re-verifying its store, and a node catching up.
#[derive(Debug)]
pub struct ChainAuditor<'a> {
    genesis: &'a Genesis,
    chain_id: Digest,
    scheme: &'a dyn SignatureScheme,
    previous: Option<BlockHeader>,
    summary: AuditSummary,
}

impl<'a> ChainAuditor<'a> {
    /// An auditor at the start of the chain.
    pub fn new(genesis: &'a Genesis, scheme: &'a dyn SignatureScheme) -> Self {
        let chain_id = genesis.chain_id();
        Self {
            genesis,
            chain_id,
            scheme,
            previous: None,
            summary: AuditSummary {
                head: chain_id,
                ..AuditSummary::default()
            },
        }
    }

    /// The height the next block must have.
    pub fn next_height(&self) -> u64 {
        self.summary.blocks + 1
    }

    /// Audits the next block.
    pub fn push(&mut self, block: &Block) -> Result<(), AuditError> {
        let height = self.next_height();
        verify_block(
            self.genesis,
            self.chain_id,
            self.scheme,
            self.previous.as_ref(),
            block,
            &mut self.summary,
        )
        .map_err(|reason| AuditError { height, reason })?;
        self.summary.blocks += 1;
        self.summary.head = block.digest();
        self.previous = Some(block.header.clone());
        Ok(())
    }

    /// Decodes and audits the next block.
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Result<Block, AuditError> {
        let block = Block::from_canonical_bytes(bytes).map_err(|e| AuditError {
            height: self.next_height(),
            reason: AuditFailure::Decode(e),
        })?;
        self.push(&block)?;
        Ok(block)
    }

    /// The summary so far.
    pub fn finish(self) -> AuditSummary {
        self.summary
    }
}

/// Audits a whole chain from height 1 (spec D15-D22).
pub fn audit_chain(
    genesis: &Genesis,
    scheme: &dyn SignatureScheme,
    blocks: &[Block],
) -> Result<AuditSummary, AuditError> {
    let mut auditor = ChainAuditor::new(genesis, scheme);
    for b in blocks {
        auditor.push(b)?;
    }
    Ok(auditor.finish())
}

/// Decodes and audits a whole chain given as encoded blocks.
pub fn audit_encoded(
    genesis: &Genesis,
    scheme: &dyn SignatureScheme,
    blocks: &[Vec<u8>],
) -> Result<AuditSummary, AuditError> {
    let mut auditor = ChainAuditor::new(genesis, scheme);
    for b in blocks {
        auditor.push_encoded(b)?;
    }
    Ok(auditor.finish())
}

/// Checks one block against the genesis and the previous header (`None` at height 1).
pub fn verify_block(
    genesis: &Genesis,
    chain_id: Digest,
    scheme: &dyn SignatureScheme,
    previous: Option<&BlockHeader>,
    block: &Block,
    summary: &mut AuditSummary,
) -> Result<(), AuditFailure> {
    let h = &block.header;
    let body = &block.body;
    let p = &body.process;
    // D15: position, chain, version, link, time.
    let expected_height = previous.map_or(1, |p| p.height + 1);
    if h.height != expected_height {
        return Err(AuditFailure::WrongHeight {
            expected: expected_height,
            found: h.height,
        });
    }
    if h.chain_id != chain_id {
        return Err(AuditFailure::WrongChain {
            expected: chain_id,
            found: h.chain_id,
        });
    }
    if h.version != BLOCK_VERSION {
        return Err(AuditFailure::WrongVersion(h.version));
    }
    let expected_previous = previous.map_or(chain_id, BlockHeader::digest);
    if h.previous != expected_previous {
        return Err(AuditFailure::BrokenLink {
            expected: expected_previous,
            found: h.previous,
        });
    }
    if let Some(prev) = previous {
        if h.timestamp < prev.timestamp {
            return Err(AuditFailure::TimestampBackwards {
                previous: prev.timestamp,
                found: h.timestamp,
            });
        }
    }
    // D16: the header commits to the body.
    let computed = body.trades_root();
    if computed != h.trades_root {
        return Err(AuditFailure::TradesRoot {
            computed,
            header: h.trades_root,
        });
    }
    let computed = body.process_hash();
    if computed != h.process_hash {
        return Err(AuditFailure::ProcessHash {
            computed,
            header: h.process_hash,
        });
    }
    // D17: rotation and fault skip.
    if h.view > MAX_VIEW {
        return Err(AuditFailure::ViewTooHigh(h.view));
    }
    let expected_primary = genesis.primary(h.height, h.view);
    if h.primary != expected_primary {
        return Err(AuditFailure::WrongPrimary {
            expected: expected_primary,
            found: h.primary,
        });
    }
    let expected_skipped: Vec<NodeId> = (0..h.view).map(|v| genesis.primary(h.height, v)).collect();
    if p.skipped != expected_skipped {
        return Err(AuditFailure::SkippedPrimaries {
            expected: expected_skipped,
            found: p.skipped.clone(),
        });
    }
    match (&p.skip_certificate, h.view) {
        (None, 0) => {}
        (Some(_), 0) => return Err(AuditFailure::UnexpectedSkipCertificate),
        (None, v) => return Err(AuditFailure::MissingSkipCertificate(v)),
        (Some(cert), v) => {
            cert.verify(genesis, chain_id, scheme, h.height, v - 1)
                .map_err(AuditFailure::SkipCertificate)?;
            summary.signatures += cert.votes.len() as u64;
            summary.fault_skips += 1;
        }
    }
    // D18: the commit certificate, with the joint signatures of every touched area.
    let qc = &block.certificate;
    let digest = h.digest();
    if qc.kind != VoteKind::Commit
        || qc.height != h.height
        || qc.block != digest
        || qc.round() < (h.view, h.revision)
    {
        return Err(AuditFailure::CertificateTarget(format!(
            "{:?} at height {} round {:?} of {:?}, not a commit of this block (height {}, round {:?}, {:?})",
            qc.kind,
            qc.height,
            qc.round(),
            qc.block,
            h.height,
            (h.view, h.revision),
            digest
        )));
    }
    qc.verify(genesis, chain_id, scheme, &body.required_signers(genesis))
        .map_err(AuditFailure::Certificate)?;
    summary.signatures += qc.signatures.len() as u64;
    // D19-D20: batches and their bids.
    let bids = verify_batches(genesis, chain_id, scheme, block, summary)?;
    // D21: trades are awards of bids in the block; rejections name bids in the block.
    for (i, t) in body.trades.iter().enumerate() {
        let bad = |reason: String| AuditFailure::Trade { index: i, reason };
        let bid = bids
            .get(&t.bid)
            .ok_or_else(|| bad(format!("bid {:?} is in no batch of the block", t.bid)))?;
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
    for r in &p.rejections {
        if !bids.contains_key(&r.bid) {
            return Err(AuditFailure::Process(format!(
                "rejection of bid {:?}, which is in no batch of the block",
                r.bid
            )));
        }
    }
    // D22: objections, appeals and evidence are signed by who they name.
    for (i, o) in p.objections.iter().enumerate() {
        let b = &o.body;
        let member = genesis.member(b.objector).ok_or_else(|| {
            AuditFailure::Process(format!(
                "objection {i}: objector {} is not a member",
                b.objector
            ))
        })?;
        if b.chain_id != chain_id || b.height != h.height {
            return Err(AuditFailure::Process(format!(
                "objection {i} is for height {}, not this block's",
                b.height
            )));
        }
        o.verify(scheme, &member.public_key)
            .map_err(|e| AuditFailure::Process(format!("objection {i}: {e}")))?;
        summary.signatures += 1;
    }
    for (i, a) in p.appeals.iter().enumerate() {
        let b = &a.appeal.body;
        let participant = genesis.participant(b.participant).ok_or_else(|| {
            AuditFailure::Process(format!(
                "appeal {i}: participant {} is not admitted",
                b.participant
            ))
        })?;
        if b.chain_id != chain_id || b.height != h.height {
            return Err(AuditFailure::Process(format!(
                "appeal {i} is for height {}, not this block's",
                b.height
            )));
        }
        a.appeal
            .verify(scheme, &participant.public_key)
            .map_err(|e| AuditFailure::Process(format!("appeal {i}: {e}")))?;
        if let AppealClaim::Omitted { bid, .. } = &b.claim {
            if bid.body.participant != b.participant {
                return Err(AuditFailure::Process(format!(
                    "appeal {i} claims another participant's bid"
                )));
            }
        }
        summary.signatures += 1;
    }
    for (i, e) in p.evidence.iter().enumerate() {
        if !e.verify(genesis, scheme) {
            return Err(AuditFailure::Process(format!(
                "evidence {i} does not show an equivocation"
            )));
        }
        summary.signatures += 2;
    }
    summary.trades += body.trades.len() as u64;
    summary.revisions += u64::from(h.revision);
    Ok(())
}

/// Checks the batches and their bids and returns the block's bids by id.
fn verify_batches<'b>(
    genesis: &Genesis,
    chain_id: Digest,
    scheme: &dyn SignatureScheme,
    block: &'b Block,
    summary: &mut AuditSummary,
) -> Result<BTreeMap<Digest, &'b Bid>, AuditFailure> {
    let p = &block.body.process;
    let rejected_invalid: BTreeSet<Digest> = p
        .rejections
        .iter()
        .filter(|r| r.reason == RejectionReason::Invalid)
        .map(|r| r.bid)
        .collect();
    let mut homes = BTreeSet::new();
    let mut bids = BTreeMap::new();
    for (bi, batch) in p.batches.iter().enumerate() {
        let b = &batch.body;
        let bad = |reason: String| AuditFailure::Batch { index: bi, reason };
        let home = genesis
            .member(b.home)
            .ok_or_else(|| bad(format!("home node {} is not a member", b.home)))?;
        if !homes.insert(b.home) {
            return Err(bad(format!("a second batch from node {}", b.home)));
        }
        if b.chain_id != chain_id || b.height != block.header.height {
            return Err(bad(format!(
                "batch is for height {}, not this block's",
                b.height
            )));
        }
        batch
            .verify(scheme, &home.public_key)
            .map_err(|e| bad(format!("home node {}'s signature: {e}", b.home)))?;
        summary.signatures += 1;
        for (i, sb) in b.bids.iter().enumerate() {
            let bid = &sb.body;
            let id = bid.id();
            summary.bids += 1;
            let problem = match genesis.participant(bid.participant) {
                None => Some(format!("participant {} is not admitted", bid.participant)),
                Some(pt) if pt.home != b.home => Some(format!(
                    "participant {}'s home is {}, not batch node {}",
                    pt.id, pt.home, b.home
                )),
                Some(pt) => bid
                    .check(genesis, &chain_id)
                    .err()
                    .map(|e| e.to_string())
                    .or_else(|| {
                        summary.signatures += 1;
                        sb.verify(scheme, &pt.public_key)
                            .err()
                            .map(|e| format!("bid signature: {e}"))
                    }),
            };
            if let Some(reason) = problem {
                if !rejected_invalid.contains(&id) {
                    return Err(AuditFailure::Bid {
                        batch: bi,
                        index: i,
                        reason: format!("{reason}, and it is not recorded as rejected"),
                    });
                }
            }
            bids.insert(id, bid);
        }
    }
    Ok(bids)
}
