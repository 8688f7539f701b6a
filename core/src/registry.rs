//! Who may trade, after the genesis: admission, revocation and key rotation on chain (spec
//! 1.10, A1-A5).
//!
//! A change is a [`RegistryRecord`] signed by the parties the rules require ([`SignedChange`]).
//! A home node carries it in its batch, so it enters a block like any bid, and every member and
//! every auditor applies the block's changes in order ([`Registry::apply`]). A change in the
//! block of height h takes effect from height h + 1: the bids, batches, votes and certificates
//! of height h + 1 are judged by the registry that includes it.
//!
//! The registry is the genesis with the changes applied (the same [`Genesis`] type, so every
//! rule that reads a participant or a member's key reads the current one), plus what the
//! changes retired: revoked participant ids and replaced keys, never to be used again, so that
//! no signed change can be replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::crypto::{Digest, PublicKey, Signature, SignatureScheme, Signer, digest_of, sha256};
use crate::encoding::{Canonical, DecodeError, DecodeErrorKind, Reader, Tagged};
use crate::genesis::{Genesis, Participant};
use crate::units::{NodeId, ParticipantId};

/// The most changes one batch carries.
pub const MAX_BATCH_CHANGES: usize = 64;

/// The most signatures one change carries: a quorum of the largest consortium and its subject.
pub const MAX_CHANGE_SIGNATURES: usize = crate::genesis::MAX_MEMBERS + 1;

/// What a change does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegistryChange {
    /// Admit a participant (A1). Signed by its home member.
    Admit(Participant),
    /// Revoke a participant (A2). Signed by its home member.
    Revoke(ParticipantId),
    /// Replace a participant's key (A3). Signed by the participant's current key and by its
    /// home member.
    ParticipantKey {
        /// The participant.
        participant: ParticipantId,
        /// Its new key.
        key: PublicKey,
    },
    /// Replace a member's key (A4). Signed by the member's current key and by a quorum of
    /// members (the member itself may be one of them).
    MemberKey {
        /// The member.
        member: NodeId,
        /// Its new key.
        key: PublicKey,
    },
}

impl Canonical for RegistryChange {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RegistryChange::Admit(p) => {
                out.push(0);
                p.encode(out);
            }
            RegistryChange::Revoke(p) => {
                out.push(1);
                p.encode(out);
            }
            RegistryChange::ParticipantKey { participant, key } => {
                out.push(2);
                participant.encode(out);
                key.encode(out);
            }
            RegistryChange::MemberKey { member, key } => {
                out.push(3);
                member.encode(out);
                key.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => RegistryChange::Admit(Participant::decode(r).map_err(|e| e.within("admit"))?),
            1 => RegistryChange::Revoke(ParticipantId::decode(r)?),
            2 => RegistryChange::ParticipantKey {
                participant: ParticipantId::decode(r)?,
                key: PublicKey::decode(r)?,
            },
            3 => RegistryChange::MemberKey {
                member: NodeId::decode(r)?,
                key: PublicKey::decode(r)?,
            },
            value => {
                return Err(DecodeError::new(DecodeErrorKind::InvalidDiscriminant {
                    value,
                }));
            }
        })
    }
}

/// What the parties sign: the change, bound to one chain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistryRecord {
    /// The chain.
    pub chain_id: Digest,
    /// The change.
    pub change: RegistryChange,
}
crate::canonical_struct!(RegistryRecord { chain_id, change });
crate::tagged!(RegistryRecord, 0x0106, "registry-record", 4096);

/// Who signed a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    /// A member, under its current key.
    Member(NodeId),
    /// A participant, under its current key.
    Participant(ParticipantId),
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Member(m) => write!(f, "member {m}"),
            Party::Participant(p) => write!(f, "participant {p}"),
        }
    }
}

impl Canonical for Party {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Party::Member(m) => {
                out.push(0);
                m.encode(out);
            }
            Party::Participant(p) => {
                out.push(1);
                p.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => Party::Member(NodeId::decode(r)?),
            1 => Party::Participant(ParticipantId::decode(r)?),
            value => {
                return Err(DecodeError::new(DecodeErrorKind::InvalidDiscriminant {
                    value,
                }));
            }
        })
    }
}

/// One party's signature over a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartySignature {
    /// The signer.
    pub by: Party,
    /// Its signature over the record's canonical bytes.
    pub signature: Signature,
}
crate::canonical_struct!(PartySignature { by, signature });

/// A record with the signatures that authorise it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignedChange {
    /// What is signed.
    pub record: RegistryRecord,
    /// The signatures, each by a distinct party.
    pub signatures: Vec<PartySignature>,
}
crate::canonical_struct!(SignedChange {
    record,
    signatures: seq(MAX_CHANGE_SIGNATURES),
});
crate::tagged!(
    SignedChange,
    0x0107,
    "signed-change",
    4096 + MAX_CHANGE_SIGNATURES * 80
);

impl SignedChange {
    /// An unsigned change of `chain_id`.
    pub fn new(chain_id: Digest, change: RegistryChange) -> Self {
        Self {
            record: RegistryRecord { chain_id, change },
            signatures: Vec::new(),
        }
    }

    /// Adds `by`'s signature (replacing an earlier one by the same party).
    pub fn sign(&mut self, by: Party, signer: &dyn Signer) {
        let signature = signer.sign(&self.record.to_canonical_bytes());
        self.signatures.retain(|s| s.by != by);
        self.signatures.push(PartySignature { by, signature });
        self.signatures.sort_by_key(|s| s.by);
    }

    /// The change's id: the digest of the whole signed change.
    pub fn id(&self) -> Digest {
        digest_of(self)
    }

    /// The member whose batch carries the change: the participant's home member, or the member
    /// whose key is replaced. `None` if `registry` knows no such participant or member.
    pub fn sponsor(&self, registry: &Genesis) -> Option<NodeId> {
        match &self.record.change {
            RegistryChange::Admit(p) => Some(p.home),
            RegistryChange::Revoke(id)
            | RegistryChange::ParticipantKey {
                participant: id, ..
            } => registry.participant(*id).map(|p| p.home),
            RegistryChange::MemberKey { member, .. } => registry.member(*member).map(|m| m.id),
        }
    }

    /// A one-line description for logs and the CLI.
    pub fn describe(&self) -> String {
        match &self.record.change {
            RegistryChange::Admit(p) => format!(
                "admit participant {} ({}) at home node {} in area {}",
                p.id, p.name, p.home, p.area
            ),
            RegistryChange::Revoke(p) => format!("revoke participant {p}"),
            RegistryChange::ParticipantKey { participant, key } => {
                format!("replace the key of participant {participant} with {key}")
            }
            RegistryChange::MemberKey { member, key } => {
                format!("replace the key of member {member} with {key}")
            }
        }
    }
}

/// Why a change is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// For another chain.
    #[error("the change is for another chain")]
    WrongChain,
    /// The participant or member it names does not exist (or no longer does).
    #[error("{0}")]
    Unknown(String),
    /// Carried by a member that is not its sponsor.
    #[error("the change must be carried by home node {sponsor}, not {carrier}")]
    WrongCarrier {
        /// Who must carry it.
        sponsor: NodeId,
        /// Who did.
        carrier: NodeId,
    },
    /// A required signature is missing.
    #[error("the change needs the signature of {0}")]
    MissingSignature(String),
    /// A signature does not verify, or a party signed twice, or a stranger signed.
    #[error("signature by {by}: {reason}")]
    BadSignature {
        /// The signer.
        by: Party,
        /// Why.
        reason: String,
    },
    /// A participant id or key was used before and is retired for good.
    #[error("{0}")]
    Retired(String),
    /// The registry after the change would break a genesis rule (D6).
    #[error("{0}")]
    Invalid(String),
}

/// How a block's change fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeVerdict {
    /// The change's id.
    pub id: Digest,
    /// What it does.
    pub change: RegistryChange,
    /// The member whose batch carried it.
    pub carrier: NodeId,
    /// `Ok` if it took effect from the next height; otherwise why it did not.
    pub result: Result<(), ChangeError>,
}

/// The participants and members' keys at a height: the genesis with every change of the
/// blocks before it applied. Two registries are equal when they applied the same changes.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    /// The genesis with the changes applied; `None` until the first change.
    current: Option<Arc<Genesis>>,
    /// Revoked participants, with the height from which they are revoked.
    revoked: BTreeMap<ParticipantId, u64>,
    /// Every key a change replaced or revoked.
    retired: BTreeSet<PublicKey>,
    /// A digest over the applied changes in order (`None` before the first).
    trail: Option<Digest>,
}

impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.trail == other.trail
    }
}
impl Eq for Registry {}
impl Hash for Registry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.trail.hash(state);
    }
}
impl PartialOrd for Registry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Registry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.trail.cmp(&other.trail)
    }
}

impl Registry {
    /// The genesis as the changes so far left it.
    pub fn genesis(&self, base: &Arc<Genesis>) -> Arc<Genesis> {
        self.current.clone().unwrap_or_else(|| base.clone())
    }

    /// Whether no change was applied yet.
    pub fn is_genesis(&self) -> bool {
        self.trail.is_none()
    }

    /// The height from which `participant` is revoked, if it is.
    pub fn revoked_at(&self, participant: ParticipantId) -> Option<u64> {
        self.revoked.get(&participant).copied()
    }

    /// The revoked participants, with the height from which each is revoked.
    pub fn revoked(&self) -> &BTreeMap<ParticipantId, u64> {
        &self.revoked
    }

    /// Checks `change`, carried by `carrier`, against this registry (spec A1-A5), and returns
    /// the genesis it would leave. `base` is the genesis the chain started from.
    pub fn check(
        &self,
        base: &Arc<Genesis>,
        chain_id: &Digest,
        scheme: &dyn SignatureScheme,
        carrier: NodeId,
        change: &SignedChange,
    ) -> Result<Genesis, ChangeError> {
        let g = self.genesis(base);
        if change.record.chain_id != *chain_id {
            return Err(ChangeError::WrongChain);
        }
        let message = change.record.to_canonical_bytes();
        // Every signature verifies under its party's current key, each party once.
        let mut signers = BTreeSet::new();
        for s in &change.signatures {
            let key = match s.by {
                Party::Member(m) => g.member(m).map(|m| m.public_key),
                Party::Participant(p) => g.participant(p).map(|p| p.public_key),
            };
            let Some(key) = key else {
                return Err(ChangeError::BadSignature {
                    by: s.by,
                    reason: "no such party in the registry".into(),
                });
            };
            if !signers.insert(s.by) {
                return Err(ChangeError::BadSignature {
                    by: s.by,
                    reason: "signed twice".into(),
                });
            }
            scheme
                .verify(&key, &message, &s.signature)
                .map_err(|e| ChangeError::BadSignature {
                    by: s.by,
                    reason: e.to_string(),
                })?;
        }
        let need = |p: Party| {
            if signers.contains(&p) {
                Ok(())
            } else {
                Err(ChangeError::MissingSignature(p.to_string()))
            }
        };
        let carried_by = |sponsor: NodeId| {
            if sponsor == carrier {
                Ok(())
            } else {
                Err(ChangeError::WrongCarrier { sponsor, carrier })
            }
        };
        let fresh = |key: &PublicKey| {
            if self.retired.contains(key) {
                Err(ChangeError::Retired(format!(
                    "key {key} was replaced or revoked before and cannot be used again"
                )))
            } else {
                Ok(())
            }
        };
        let mut next = (*g).clone();
        match &change.record.change {
            RegistryChange::Admit(p) => {
                if let Some(at) = self.revoked_at(p.id) {
                    return Err(ChangeError::Retired(format!(
                        "participant id {} was revoked at height {at} and cannot be admitted again",
                        p.id
                    )));
                }
                if g.participant(p.id).is_some() {
                    return Err(ChangeError::Invalid(format!(
                        "participant {} is already admitted",
                        p.id
                    )));
                }
                if g.member(p.home).is_none() {
                    return Err(ChangeError::Unknown(format!(
                        "home node {} is not a member",
                        p.home
                    )));
                }
                carried_by(p.home)?;
                need(Party::Member(p.home))?;
                fresh(&p.public_key)?;
                let at = next.participants.partition_point(|q| q.id < p.id);
                next.participants.insert(at, p.clone());
            }
            RegistryChange::Revoke(id) => {
                let p = self.active(&g, *id)?;
                carried_by(p.home)?;
                need(Party::Member(p.home))?;
                next.participants.retain(|q| q.id != *id);
            }
            RegistryChange::ParticipantKey { participant, key } => {
                let p = self.active(&g, *participant)?;
                carried_by(p.home)?;
                need(Party::Participant(*participant))?;
                need(Party::Member(p.home))?;
                fresh(key)?;
                let q = next
                    .participants
                    .iter_mut()
                    .find(|q| q.id == *participant)
                    .expect("the participant is active");
                q.public_key = *key;
            }
            RegistryChange::MemberKey { member, key } => {
                if g.member(*member).is_none() {
                    return Err(ChangeError::Unknown(format!(
                        "member {member} is not a member"
                    )));
                }
                carried_by(*member)?;
                need(Party::Member(*member))?;
                let members = signers
                    .iter()
                    .filter(|s| matches!(s, Party::Member(_)))
                    .count();
                if members < g.quorum() {
                    return Err(ChangeError::MissingSignature(format!(
                        "a quorum of {} members ({members} signed)",
                        g.quorum()
                    )));
                }
                fresh(key)?;
                let m = next
                    .members
                    .iter_mut()
                    .find(|m| m.id == *member)
                    .expect("the member exists");
                m.public_key = *key;
            }
        }
        next.validate()
            .map_err(|e| ChangeError::Invalid(format!("the registry after the change: {e}")))?;
        Ok(next)
    }

    /// The active participant `id`, or why there is none.
    fn active<'g>(
        &self,
        g: &'g Genesis,
        id: ParticipantId,
    ) -> Result<&'g Participant, ChangeError> {
        if let Some(at) = self.revoked_at(id) {
            return Err(ChangeError::Unknown(format!(
                "participant {id} was revoked at height {at}"
            )));
        }
        g.participant(id)
            .ok_or_else(|| ChangeError::Unknown(format!("participant {id} is not admitted")))
    }

    /// Applies the changes that the batches of the block at `height` carry, in member order
    /// and then in batch order, each checked against the registry as the ones before it left
    /// it; a change that fails is not applied, and its verdict says why (spec A5). The
    /// registry then holds for height + 1.
    pub fn apply<'b>(
        &mut self,
        base: &Arc<Genesis>,
        chain_id: &Digest,
        scheme: &dyn SignatureScheme,
        height: u64,
        batches: impl IntoIterator<Item = &'b crate::market::SignedBatch>,
    ) -> Vec<ChangeVerdict> {
        let mut verdicts = Vec::new();
        for batch in batches {
            let carrier = batch.body.home;
            for change in &batch.body.changes {
                let result = self.apply_one(base, chain_id, scheme, carrier, height, change);
                verdicts.push(ChangeVerdict {
                    id: change.id(),
                    change: change.record.change.clone(),
                    carrier,
                    result,
                });
            }
        }
        verdicts
    }

    /// Applies one change carried by `carrier` in the block at `height`, if it holds.
    pub fn apply_one(
        &mut self,
        base: &Arc<Genesis>,
        chain_id: &Digest,
        scheme: &dyn SignatureScheme,
        carrier: NodeId,
        height: u64,
        change: &SignedChange,
    ) -> Result<(), ChangeError> {
        let before = self.genesis(base);
        let next = self.check(base, chain_id, scheme, carrier, change)?;
        self.commit(&before, next, height, change);
        Ok(())
    }

    /// Makes `next` (what [`Registry::check`] returned for `change` against `before`) the
    /// registry, retiring the key the change replaced or revoked.
    fn commit(&mut self, before: &Genesis, next: Genesis, height: u64, change: &SignedChange) {
        let retired = match &change.record.change {
            RegistryChange::Admit(_) => None,
            RegistryChange::Revoke(id) => {
                self.revoked.insert(*id, height + 1);
                before.participant(*id).map(|p| p.public_key)
            }
            RegistryChange::ParticipantKey { participant, .. } => {
                before.participant(*participant).map(|p| p.public_key)
            }
            RegistryChange::MemberKey { member, .. } => {
                before.member(*member).map(|m| m.public_key)
            }
        };
        self.retired.extend(retired);
        let id = change.id();
        let prev = self.trail.map_or([0u8; 32], |d| d.0);
        self.trail = Some(sha256(&[&prev, &id.0]));
        self.current = Some(Arc::new(next));
    }
}
