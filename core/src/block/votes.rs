//! Votes, quorum and skip certificates, skip votes and equivocation evidence (spec D11-D14).

use super::*;

/// A round of a height: a view and a revision in it. Rounds are ordered as the protocol orders
/// them: by view, then by revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Round {
    /// The view.
    pub view: u32,
    /// The revision within the view.
    pub revision: u32,
}

impl Round {
    /// Round (`view`, `revision`).
    pub const fn new(view: u32, revision: u32) -> Self {
        Self { view, revision }
    }
}

/// A round compares with a (view, revision) pair.
impl PartialEq<(u32, u32)> for Round {
    fn eq(&self, other: &(u32, u32)) -> bool {
        (self.view, self.revision) == *other
    }
}

impl From<Round> for (u32, u32) {
    fn from(r: Round) -> Self {
        (r.view, r.revision)
    }
}

/// What a vote is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteKind {
    /// The primary proposes the block (its signature on a proposal).
    Propose,
    /// A node found the proposal valid and secure in its area (the first voting phase).
    Endorse,
    /// A node saw an endorsement certificate and is locked on the block (the second phase).
    Commit,
}
crate::canonical_enum!(VoteKind {
    Propose = 0,
    Endorse = 1,
    Commit = 2
});

/// A signed statement by a management node about a block in a round (view, revision).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vote {
    /// What the vote is for.
    pub kind: VoteKind,
    /// The chain.
    pub chain_id: Digest,
    /// The height.
    pub height: u64,
    /// The view of the round.
    pub view: u32,
    /// The revision of the round.
    pub revision: u32,
    /// The digest of the header voted for.
    pub block: Digest,
    /// Who votes.
    pub voter: NodeId,
}
crate::canonical_struct!(Vote {
    kind,
    chain_id,
    height,
    view,
    revision,
    block,
    voter
});
crate::tagged!(Vote, 0x0301, "vote", 128);

/// One signer's signature in a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoteSignature {
    /// The voter.
    pub voter: NodeId,
    /// Its signature over the [`Vote`] the certificate implies.
    pub signature: Signature,
}
crate::canonical_struct!(VoteSignature { voter, signature });

/// Votes of one kind for one block in one round, from distinct members.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuorumCertificate {
    /// Endorse (a lock) or commit (a decision).
    pub kind: VoteKind,
    /// The height.
    pub height: u64,
    /// The view of the round.
    pub view: u32,
    /// The revision of the round.
    pub revision: u32,
    /// The digest of the header.
    pub block: Digest,
    /// The signatures, one per voter.
    pub signatures: Vec<VoteSignature>,
}
crate::canonical_struct!(QuorumCertificate {
    kind,
    height,
    view,
    revision,
    block,
    signatures: seq(MAX_MEMBERS),
});
crate::tagged!(
    QuorumCertificate,
    0x0302,
    "quorum-certificate",
    32 + 66 * MAX_MEMBERS + 64
);

/// Why a certificate is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Fewer distinct signers than a quorum.
    #[error("{have} signers, a quorum needs {need}")]
    TooFewSigners {
        /// Distinct valid signers.
        have: usize,
        /// The quorum.
        need: usize,
    },
    /// A signer appears twice.
    #[error("signer {0} appears more than once")]
    RepeatedSigner(NodeId),
    /// A signer is not a member.
    #[error("signer {0} is not a management node of this consortium")]
    ForeignSigner(NodeId),
    /// A signature does not verify.
    #[error("the signature of {0} does not verify")]
    BadSignature(NodeId),
    /// A node whose area a trade touches did not sign (the paper's joint signatures).
    #[error("node {node} of area {area}, which the block touches, did not sign")]
    MissingJointSignature {
        /// The node.
        node: NodeId,
        /// Its area.
        area: AreaId,
    },
    /// The certificate is for something else.
    #[error("the certificate is for {found}, expected {expected}")]
    Mismatch {
        /// What was expected.
        expected: String,
        /// What it is for.
        found: String,
    },
}

impl QuorumCertificate {
    /// The vote that `voter`'s signature in this certificate signs.
    pub fn vote_of(&self, chain_id: Digest, voter: NodeId) -> Vote {
        Vote {
            kind: self.kind,
            chain_id,
            height: self.height,
            view: self.view,
            revision: self.revision,
            block: self.block,
            voter,
        }
    }

    /// The signed votes the certificate carries, one per signer (not checked here).
    pub fn signed_votes(&self, chain_id: Digest) -> impl Iterator<Item = Signed<Vote>> + '_ {
        self.signatures.iter().map(move |s| Signed {
            body: self.vote_of(chain_id, s.voter),
            signature: s.signature,
        })
    }

    /// The round the certificate is for.
    pub fn round(&self) -> Round {
        Round::new(self.view, self.revision)
    }

    /// The signers, in the certificate's order.
    pub fn signers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.signatures.iter().map(|s| s.voter)
    }

    /// Checks the certificate: members only, no signer twice, every signature valid, at
    /// least a quorum, and every node in `required` among the signers (spec D11, D12).
    pub fn verify(
        &self,
        genesis: &Genesis,
        chain_id: Digest,
        scheme: &dyn SignatureScheme,
        required: &[NodeId],
    ) -> Result<(), CertificateError> {
        let mut seen = BTreeSet::new();
        for s in &self.signatures {
            let member = genesis
                .member(s.voter)
                .ok_or(CertificateError::ForeignSigner(s.voter))?;
            if !seen.insert(s.voter) {
                return Err(CertificateError::RepeatedSigner(s.voter));
            }
            let vote = self.vote_of(chain_id, s.voter);
            verify_signature(scheme, &member.public_key, &vote, &s.signature)
                .map_err(|_| CertificateError::BadSignature(s.voter))?;
        }
        let need = genesis.quorum();
        if seen.len() < need {
            return Err(CertificateError::TooFewSigners {
                have: seen.len(),
                need,
            });
        }
        if let Some(node) = required.iter().find(|n| !seen.contains(n)) {
            let area = genesis.member(*node).map(|m| m.area).unwrap_or(AreaId(0));
            return Err(CertificateError::MissingJointSignature { node: *node, area });
        }
        Ok(())
    }
}

pub(super) fn verify_signature<T: crate::encoding::Tagged>(
    scheme: &dyn SignatureScheme,
    key: &PublicKey,
    body: &T,
    signature: &Signature,
) -> Result<(), crate::crypto::SignatureError> {
    scheme.verify(key, &body.to_canonical_bytes(), signature)
}

/// A node's vote to skip the primary of (height, view), with the highest lock it holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkipVote {
    /// The chain.
    pub chain_id: Digest,
    /// The height.
    pub height: u64,
    /// The view being skipped.
    pub view: u32,
    /// Who votes.
    pub voter: NodeId,
    /// The voter's highest endorsement certificate at this height, if it is locked.
    pub lock: Option<QuorumCertificate>,
    /// The home nodes whose batch for this height the voter holds, ascending (spec N2): a
    /// block built in the next view must carry a batch of each.
    pub held: Vec<NodeId>,
}
crate::canonical_struct!(SkipVote {
    chain_id,
    height,
    view,
    voter,
    lock,
    held: seq(MAX_MEMBERS)
});
crate::tagged!(
    SkipVote,
    0x0303,
    "skip-vote",
    64 + QuorumCertificate::MAX_ENCODED_LEN + 4 + 4 * MAX_MEMBERS
);

/// A quorum of skip votes for (height, view): it justifies view + 1 (the paper's fault skip).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkipCertificate {
    /// The height.
    pub height: u64,
    /// The skipped view.
    pub view: u32,
    /// The votes, from distinct members.
    pub votes: Vec<Signed<SkipVote>>,
}
crate::canonical_struct!(SkipCertificate {
    height,
    view,
    votes: seq(MAX_MEMBERS)
});
crate::tagged!(
    SkipCertificate,
    0x0304,
    "skip-certificate",
    16 + MAX_MEMBERS * (SkipVote::MAX_ENCODED_LEN + 64)
);

impl SkipCertificate {
    /// The highest lock reported by any vote: the block a new primary must re-propose.
    pub fn highest_lock(&self) -> Option<&QuorumCertificate> {
        self.votes
            .iter()
            .filter_map(|v| v.body.lock.as_ref())
            .max_by(|a, b| {
                a.round()
                    .cmp(&b.round())
                    .then_with(|| a.block.cmp(&b.block))
            })
    }

    /// The voters.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.votes.iter().map(|v| v.body.voter)
    }

    /// The home nodes whose batch some voter reports holding (spec N2, D19).
    pub fn reported_homes(&self) -> BTreeSet<NodeId> {
        self.votes
            .iter()
            .flat_map(|v| v.body.held.iter().copied())
            .collect()
    }

    /// Checks the certificate for (height, view): members only, no voter twice, every vote
    /// for this chain, height and view and validly signed, at least a quorum, every reported
    /// lock a valid endorsement certificate for this height below the skipped round, and every
    /// held-batch list ascending and of members (spec D13).
    pub fn verify(
        &self,
        genesis: &Genesis,
        chain_id: Digest,
        scheme: &dyn SignatureScheme,
        height: u64,
        view: u32,
    ) -> Result<(), CertificateError> {
        if self.height != height || self.view != view {
            return Err(CertificateError::Mismatch {
                expected: format!("skipping height {height} view {view}"),
                found: format!("skipping height {} view {}", self.height, self.view),
            });
        }
        let mut seen = BTreeSet::new();
        for v in &self.votes {
            let b = &v.body;
            let member = genesis
                .member(b.voter)
                .ok_or(CertificateError::ForeignSigner(b.voter))?;
            if !seen.insert(b.voter) {
                return Err(CertificateError::RepeatedSigner(b.voter));
            }
            if b.chain_id != chain_id || b.height != height || b.view != view {
                return Err(CertificateError::Mismatch {
                    expected: format!("a skip vote for height {height} view {view}"),
                    found: format!(
                        "one for height {} view {} from {}",
                        b.height, b.view, b.voter
                    ),
                });
            }
            v.verify(scheme, &member.public_key)
                .map_err(|_| CertificateError::BadSignature(b.voter))?;
            if let Some(home) = b.held.iter().find(|h| genesis.member(**h).is_none()) {
                return Err(CertificateError::Mismatch {
                    expected: "held batches of members".into(),
                    found: format!("{} reports a batch of {home}, not a member", b.voter),
                });
            }
            if b.held.windows(2).any(|w| w[0] >= w[1]) {
                return Err(CertificateError::Mismatch {
                    expected: "held batches in ascending order, each once".into(),
                    found: format!("{:?} from {}", b.held, b.voter),
                });
            }
            if let Some(lock) = &b.lock {
                if lock.kind != VoteKind::Endorse || lock.height != height || lock.view > view {
                    return Err(CertificateError::Mismatch {
                        expected: format!("a lock at height {height} in view {view} or earlier"),
                        found: format!(
                            "a {:?} certificate at height {} view {}",
                            lock.kind, lock.height, lock.view
                        ),
                    });
                }
                lock.verify(genesis, chain_id, scheme, &[])?;
            }
        }
        let need = genesis.quorum();
        if seen.len() < need {
            return Err(CertificateError::TooFewSigners {
                have: seen.len(),
                need,
            });
        }
        Ok(())
    }
}

/// Proof that a node signed two different blocks of the same kind in the same round: anyone
/// can check it with the node's public key alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Evidence {
    /// One signed vote.
    pub first: Signed<Vote>,
    /// Another, for a different block.
    pub second: Signed<Vote>,
}
crate::canonical_struct!(Evidence { first, second });
crate::tagged!(Evidence, 0x0305, "evidence", 512);

impl Evidence {
    /// The equivocating node.
    pub fn offender(&self) -> NodeId {
        self.first.body.voter
    }

    /// Whether this is valid evidence: same voter, kind, height and round, different blocks,
    /// both signatures valid.
    pub fn verify(&self, genesis: &Genesis, scheme: &dyn SignatureScheme) -> bool {
        let (a, b) = (&self.first.body, &self.second.body);
        let same_slot = a.voter == b.voter
            && a.kind == b.kind
            && a.chain_id == b.chain_id
            && a.height == b.height
            && a.view == b.view
            && a.revision == b.revision;
        let Some(member) = genesis.member(a.voter) else {
            return false;
        };
        same_slot
            && a.block != b.block
            && self.first.verify(scheme, &member.public_key).is_ok()
            && self.second.verify(scheme, &member.public_key).is_ok()
    }
}
