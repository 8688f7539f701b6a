//! Chain audit: everything a regulator, a restarted node or a participant checks about a copy
//! of the chain, with nothing but the genesis (spec D15-D22).

use std::sync::Arc;

use crate::block::{
    BLOCK_VERSION, Block, BlockBody, BlockHeader, CertificateError, MAX_VIEW, ProcessData, Round,
    VoteKind,
};
use crate::clearing::{Clearing, rule_for};
use crate::consensus::content::{BidSignatureCheck, CommittedNonces, ContentRules, advance_nonces};
use crate::crypto::{Digest, SignatureScheme};
use crate::encoding::{DecodeError, Tagged};
use crate::genesis::Genesis;
use crate::market::SignedBid;
use crate::registry::Registry;
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
    /// Registry changes that took effect (spec A5).
    pub changes: u64,
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
    /// A skip voter reported holding a batch the block built after the skip does not carry.
    #[error("the skip certificate reports a batch of node {0}, the block carries none")]
    SkippedBatch(NodeId),
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
pub struct ChainAuditor<'a> {
    genesis: Arc<Genesis>,
    registry: Registry,
    chain_id: Digest,
    scheme: &'a dyn SignatureScheme,
    clearing: &'a dyn Clearing,
    committed: CommittedNonces,
    previous: Option<BlockHeader>,
    summary: AuditSummary,
}

impl std::fmt::Debug for ChainAuditor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainAuditor")
            .field("next_height", &self.next_height())
            .field("summary", &self.summary)
            .finish()
    }
}

impl<'a> ChainAuditor<'a> {
    /// An auditor at the start of the chain, re-running `clearing` on every block.
    pub fn new(
        genesis: &'a Genesis,
        scheme: &'a dyn SignatureScheme,
        clearing: &'a dyn Clearing,
    ) -> Self {
        let chain_id = genesis.chain_id();
        Self {
            genesis: Arc::new(genesis.clone()),
            registry: Registry::default(),
            chain_id,
            scheme,
            clearing,
            committed: CommittedNonces::new(),
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
        // Each block is judged by the registry the blocks before it left (spec A5).
        let current = self.registry.genesis(&self.genesis);
        let rules = ContentRules {
            genesis: &current,
            chain_id: self.chain_id,
            scheme: self.scheme,
            clearing: self.clearing,
            committed: &self.committed,
        };
        let scheme = self.scheme;
        let mut signatures = 0u64;
        let mut check = |sb: &SignedBid, key: &crate::crypto::PublicKey| {
            signatures += 1;
            sb.verify(scheme, key).is_ok()
        };
        verify_block(
            &rules,
            self.previous.as_ref(),
            block,
            &mut check,
            &mut self.summary,
        )
        .map_err(|reason| AuditError { height, reason })?;
        self.summary.signatures += signatures;
        self.summary.blocks += 1;
        self.summary.head = block.digest();
        advance_nonces(&mut self.committed, &block.body);
        let verdicts = self.registry.apply(
            &self.genesis,
            &self.chain_id,
            self.scheme,
            height,
            &block.body.process.batches,
        );
        self.summary.changes += verdicts.iter().filter(|v| v.result.is_ok()).count() as u64;
        self.previous = Some(block.header.clone());
        Ok(())
    }

    /// The registry after the blocks audited so far: the participants and members' keys
    /// for the next height (spec A5).
    pub fn registry(&self) -> Arc<Genesis> {
        self.registry.genesis(&self.genesis)
    }

    /// The participants revoked so far, with the height from which each is revoked.
    pub fn revoked(&self) -> &std::collections::BTreeMap<crate::units::ParticipantId, u64> {
        self.registry.revoked()
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

/// Audits a whole chain from height 1 under the genesis's clearing rule (spec D15-D22).
pub fn audit_chain(
    genesis: &Genesis,
    scheme: &dyn SignatureScheme,
    blocks: &[Block],
) -> Result<AuditSummary, AuditError> {
    let clearing = rule_for(genesis.clearing.rule);
    let mut auditor = ChainAuditor::new(genesis, scheme, clearing);
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
    let clearing = rule_for(genesis.clearing.rule);
    let mut auditor = ChainAuditor::new(genesis, scheme, clearing);
    for b in blocks {
        auditor.push_encoded(b)?;
    }
    Ok(auditor.finish())
}

/// Checks a header against its predecessor (`None` at height 1) and its body's digests, the
/// rotation and the skip certificate (spec D15-D17). Returns the signatures it verified.
pub fn check_header(
    genesis: &Genesis,
    chain_id: Digest,
    scheme: &dyn SignatureScheme,
    previous: Option<&BlockHeader>,
    h: &BlockHeader,
    body: &BlockBody,
) -> Result<u64, AuditFailure> {
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
        (None, 0) => Ok(0),
        (Some(_), 0) => Err(AuditFailure::UnexpectedSkipCertificate),
        (None, v) => Err(AuditFailure::MissingSkipCertificate(v)),
        (Some(cert), v) => {
            cert.verify(genesis, chain_id, scheme, h.height, v - 1)
                .map_err(AuditFailure::SkipCertificate)?;
            Ok(cert.votes.len() as u64)
        }
    }
}

/// D19 and N2: a block built after a skip carries a batch of every home node whose batch a
/// vote of its skip certificate reports holding.
pub fn check_skip_batches(process: &ProcessData) -> Result<(), AuditFailure> {
    let Some(cert) = &process.skip_certificate else {
        return Ok(());
    };
    match cert
        .reported_homes()
        .into_iter()
        .find(|home| !process.batches.iter().any(|b| b.body.home == *home))
    {
        Some(home) => Err(AuditFailure::SkippedBatch(home)),
        None => Ok(()),
    }
}

/// Checks one block: its header (D15-D17), its commit certificate with the joint signatures
/// of every touched area (D18), and its content, re-running the clearing (D19-D22, V1-V9).
pub fn verify_block(
    rules: &ContentRules<'_>,
    previous: Option<&BlockHeader>,
    block: &Block,
    check_signature: &mut BidSignatureCheck<'_>,
    summary: &mut AuditSummary,
) -> Result<(), AuditFailure> {
    let (genesis, chain_id, scheme) = (rules.genesis, rules.chain_id, rules.scheme);
    let h = &block.header;
    let body = &block.body;
    let skip_signatures = check_header(genesis, chain_id, scheme, previous, h, body)?;
    if skip_signatures > 0 {
        summary.fault_skips += 1;
    }
    // D18: the commit certificate, with the joint signatures of every touched area.
    let qc = &block.certificate;
    let digest = h.digest();
    if qc.kind != VoteKind::Commit
        || qc.height != h.height
        || qc.block != digest
        || qc.round() < Round::new(h.view, h.revision)
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
    rules.verify_body(h.height, h.revision, body, check_signature)?;
    check_skip_batches(&body.process)?;
    let p = &body.process;
    summary.signatures += skip_signatures
        + qc.signatures.len() as u64
        + p.batches.len() as u64
        + p.objections.len() as u64
        + p.appeals.len() as u64
        + 2 * p.evidence.len() as u64;
    summary.bids += p
        .batches
        .iter()
        .map(|b| b.body.bids.len() as u64)
        .sum::<u64>();
    summary.trades += body.trades.len() as u64;
    summary.revisions += u64::from(h.revision);
    Ok(())
}
