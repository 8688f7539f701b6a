//! The participant protocol: requests to a home node, its responses, and the certified trades
//! a participant verifies against nothing but the genesis.

use super::*;

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
