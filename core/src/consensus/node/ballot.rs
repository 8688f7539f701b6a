//! Votes and certificates (spec S1-S4, D11, D12, V9, N3): votes checked and counted, locks,
//! the node's own votes, equivocation evidence.

use super::*;

/// One vote slot of a height: a member signs at most one vote of `kind` in round
/// (`view`, `revision`) (spec S3). Ordered by kind, then view, then revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoteSlot {
    /// Which vote.
    pub kind: VoteKind,
    /// Its view.
    pub view: u32,
    /// Its revision.
    pub revision: u32,
}

impl VoteSlot {
    /// The slot of `kind` in round (`view`, `revision`).
    pub fn new(kind: VoteKind, view: u32, revision: u32) -> Self {
        Self {
            kind,
            view,
            revision,
        }
    }

    /// The slot a vote is cast in.
    pub fn of(v: &Vote) -> Self {
        Self {
            kind: v.kind,
            view: v.view,
            revision: v.revision,
        }
    }
}

/// The votes of a height: those counted toward certificates, the first seen from each voter in
/// each slot, this node's own, its lock, and the equivocation evidence not yet on the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ballot {
    /// The lock, if any.
    pub lock: Option<Lock>,
    /// Votes collected: (slot, block) -> voter -> signature.
    pub votes: BTreeMap<(VoteSlot, Digest), BTreeMap<NodeId, Signature>>,
    /// The first vote seen from each voter in each slot, to detect equivocation.
    pub seen: BTreeMap<(NodeId, VoteSlot), Signed<Vote>>,
    /// This node's own votes at this height: slot -> block.
    pub voted: BTreeMap<VoteSlot, Digest>,
    /// Equivocation evidence not yet on the chain.
    pub evidence: BTreeSet<Evidence>,
}

impl Ballot {
    /// A vote counted toward the certificate of its slot and block.
    pub(super) fn count(&mut self, v: &Signed<Vote>) {
        self.votes
            .entry((VoteSlot::of(&v.body), v.body.block))
            .or_default()
            .insert(v.body.voter, v.signature);
    }

    /// The voters of `block` in `slot`, with their signatures.
    pub(super) fn signers(
        &self,
        slot: VoteSlot,
        block: Digest,
    ) -> Option<&BTreeMap<NodeId, Signature>> {
        self.votes.get(&(slot, block))
    }

    /// The votes of views before `view` are dropped (evidence already found is kept).
    pub(super) fn forget_views_before(&mut self, view: u32) {
        self.votes.retain(|(slot, _), _| slot.view >= view);
        self.seen.retain(|(_, slot), _| slot.view >= view);
    }

    /// The next height opens: nothing of the last is kept but the evidence `block` did not
    /// record.
    pub(super) fn next_height(&mut self, block: &Block) {
        let recorded: BTreeSet<&Evidence> = block.body.process.evidence.iter().collect();
        let evidence = std::mem::take(&mut self.evidence)
            .into_iter()
            .filter(|e| !recorded.contains(e))
            .collect();
        *self = Ballot {
            evidence,
            ..Ballot::default()
        };
    }

    /// What holds of the ballot at a node in `view` between steps (debug and test builds).
    pub(super) fn assert_invariants(&self, view: u32) {
        // Nothing of an earlier view is counted or remembered (`forget_views_before`), and a
        // proposal's stamp counts toward no certificate.
        assert!(
            self.votes
                .iter()
                .all(|((slot, _), voters)| slot.view >= view
                    && slot.kind != VoteKind::Propose
                    && !voters.is_empty()),
            "a counted vote of an earlier view, a stamp, or an empty count"
        );
        assert!(
            self.seen.iter().all(|((voter, slot), v)| slot.view >= view
                && *voter == v.body.voter
                && *slot == VoteSlot::of(&v.body)),
            "a vote noted under another slot, or of an earlier view"
        );
        // A lock is an endorsement certificate of the very proposal it keeps (S2).
        if let Some(l) = &self.lock {
            assert_eq!(l.certificate.kind, VoteKind::Endorse);
            assert_eq!(l.certificate.block, l.proposal.stamp.body.block);
            assert_eq!(l.certificate.round(), l.proposal.round());
        }
        assert!(self.evidence.len() <= MAX_EVIDENCE);
    }
}

impl NodeState {
    /// S4: remembers the first vote of each voter in each slot, and turns a second, different
    /// one into evidence anyone can verify.
    pub(super) fn note_vote(&mut self, out: &mut Out<'_>, v: &Signed<Vote>) {
        let b = &v.body;
        let key = (b.voter, VoteSlot::of(b));
        match self.ballot.seen.get(&key) {
            None => {
                self.ballot.seen.insert(key, v.clone());
            }
            Some(first) if out.ctx.rules.equivocates(&first.body, b) => {
                let e = Evidence {
                    first: first.clone(),
                    second: v.clone(),
                };
                if self.ballot.evidence.len() < MAX_EVIDENCE
                    && self.ballot.evidence.insert(e.clone())
                {
                    out.push(Effect::Evidence(Box::new(e)));
                }
            }
            Some(_) => {}
        }
    }

    /// The proposal this node is locked on, if it holds it.
    pub(super) fn locked_proposal(&self) -> Option<Box<Proposal>> {
        self.ballot
            .lock
            .as_ref()
            .map(|l| Box::new(l.proposal.clone()))
    }

    /// Whether this node is locked on a block of its current view: as that view's primary it
    /// then proposes nothing new in it (spec 2.6, S2).
    pub(super) fn locked_in_view(&self) -> bool {
        self.ballot
            .lock
            .as_ref()
            .is_some_and(|l| l.certificate.view == self.view)
    }

    /// Whether this node has signed a vote of `kind` in a later revision of `view` than
    /// `revision`: it then acts on nothing of `revision` (spec 2.6). A running node knows it
    /// from the proposal it holds; a restarted one from the votes in its log.
    pub(super) fn signed_later_revision(&self, kind: VoteKind, view: u32, revision: u32) -> bool {
        revision < u32::MAX
            && self
                .ballot
                .voted
                .range(
                    VoteSlot::new(kind, view, revision + 1)..=VoteSlot::new(kind, view, u32::MAX),
                )
                .next()
                .is_some()
    }

    pub(super) fn on_vote(&mut self, out: &mut Out<'_>, from: NodeId, v: Signed<Vote>) {
        if v.body.voter != from {
            return;
        }
        self.accept_vote(out, from, v);
    }

    /// D11: the round's primary relays the endorsement certificate it formed; each of its
    /// votes is checked and counted as if it had come from its voter, so the node forms the
    /// same certificate itself (and notes any equivocation among the votes, S4).
    pub(super) fn on_endorsed(&mut self, out: &mut Out<'_>, from: NodeId, cert: QuorumCertificate) {
        if cert.kind != VoteKind::Endorse {
            return;
        }
        for v in cert.signed_votes(out.ctx.chain_id) {
            self.accept_vote(out, from, v);
        }
    }

    /// Checks a vote (its chain, height, voter and signature) and counts it; `from` is the
    /// peer it came from (its voter, or the primary relaying a certificate).
    pub(super) fn accept_vote(&mut self, out: &mut Out<'_>, from: NodeId, v: Signed<Vote>) {
        let ctx = out.ctx;
        let b = &v.body;
        if b.chain_id != ctx.chain_id || b.kind == VoteKind::Propose {
            return;
        }
        if !self.current(out, from, b.height) || b.view < self.view {
            return;
        }
        let Some(key) = Self::member_key(ctx, b.voter) else {
            return;
        };
        if v.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        self.note_vote(out, &v);
        let first = self.ballot.seen.get(&(b.voter, VoteSlot::of(b)));
        if first.is_some_and(|f| f.body.block != b.block) {
            return;
        }
        self.count_vote(out, &v);
    }

    pub(super) fn count_vote(&mut self, out: &mut Out<'_>, v: &Signed<Vote>) {
        let b = &v.body;
        self.ballot.count(v);
        self.try_certificate(out, b.kind, b.view, b.revision, b.block);
        if b.kind == VoteKind::Endorse {
            self.revise_when_answered(out);
        }
    }

    /// The proposal of round (view, revision) with this digest, if this node holds it.
    pub(super) fn held(&self, view: u32, revision: u32, digest: Digest) -> Option<&Proposal> {
        let cur =
            self.round.proposal.as_ref().filter(|p| {
                p.round() == Round::new(view, revision) && p.stamp.body.block == digest
            });
        cur.or_else(|| {
            self.ballot
                .lock
                .as_ref()
                .filter(|l| {
                    l.certificate.round() == Round::new(view, revision)
                        && l.certificate.block == digest
                })
                .map(|l| &l.proposal)
        })
    }

    /// D11, D12, V9: a quorum of votes that includes every member of every touched area.
    pub(super) fn try_certificate(
        &mut self,
        out: &mut Out<'_>,
        kind: VoteKind,
        view: u32,
        revision: u32,
        digest: Digest,
    ) {
        let ctx = out.ctx;
        let Some(p) = self.held(view, revision, digest) else {
            return;
        };
        let Some(signers) = self
            .ballot
            .signers(VoteSlot::new(kind, view, revision), digest)
        else {
            return;
        };
        if signers.len() < Self::quorum(ctx) {
            return;
        }
        // A vote beyond the quorum changes nothing once the node locked: spare the copy of
        // the proposal.
        if kind == VoteKind::Endorse && !self.would_lock(ctx, view, revision) {
            return;
        }
        if !ctx
            .rules
            .required_signers(&ctx.genesis, &p.body)
            .iter()
            .all(|n| signers.contains_key(n))
        {
            return;
        }
        let certificate = QuorumCertificate {
            kind,
            height: self.height,
            view,
            revision,
            block: digest,
            signatures: signers
                .iter()
                .map(|(voter, signature)| VoteSignature {
                    voter: *voter,
                    signature: *signature,
                })
                .collect(),
        };
        let p = p.clone();
        match kind {
            VoteKind::Endorse => self.lock_on(out, certificate, p),
            VoteKind::Commit => {
                self.decide(out, p.header, Arc::unwrap_or_clone(p.body), certificate)
            }
            VoteKind::Propose => {}
        }
    }

    /// Whether an endorsement certificate of round (view, revision) would lock this node: it
    /// has not skipped the view, holds no lock of that round or later, and has not voted to
    /// commit in the round.
    pub(super) fn would_lock(&self, ctx: &Context, view: u32, revision: u32) -> bool {
        !self.skipped(ctx, view)
            && self
                .ballot
                .lock
                .as_ref()
                .is_none_or(|l| l.certificate.round() < Round::new(view, revision))
            && !self
                .ballot
                .voted
                .contains_key(&VoteSlot::new(VoteKind::Commit, view, revision))
    }

    /// S2: with an endorsement certificate, lock on the block and vote to commit it.
    pub(super) fn lock_on(
        &mut self,
        out: &mut Out<'_>,
        certificate: QuorumCertificate,
        p: Proposal,
    ) {
        let ctx = out.ctx;
        let Round { view, revision } = certificate.round();
        if !self.would_lock(ctx, view, revision) {
            return;
        }
        let digest = certificate.block;
        out.persist(Record::Lock(certificate.clone(), Box::new(p.clone())));
        // The primary gathered the endorsements; it hands the certificate to every member so
        // that they lock too (paper step 4: the primary distributes the verified result).
        if ctx.genesis.primary(self.height, view) == ctx.me {
            out.push(Effect::Broadcast(Message::Endorsed(Box::new(
                certificate.clone(),
            ))));
        }
        self.ballot.lock = Some(Lock {
            certificate,
            proposal: p,
        });
        self.cast_vote(out, VoteKind::Commit, view, revision, digest);
    }

    /// S3, N3: signs this node's one vote of `kind` in the round, logs it, sends it to the
    /// round's primary and counts it. Returns false if the node already voted in that slot.
    pub(super) fn cast_vote(
        &mut self,
        out: &mut Out<'_>,
        kind: VoteKind,
        view: u32,
        revision: u32,
        block: Digest,
    ) -> bool {
        let slot = VoteSlot::new(kind, view, revision);
        if self.ballot.voted.contains_key(&slot) {
            return false;
        }
        let vote = out.sign(Vote {
            kind,
            chain_id: out.ctx.chain_id,
            height: self.height,
            view,
            revision,
            block,
            voter: out.ctx.me,
        });
        self.ballot.voted.insert(slot, block);
        out.persist_vote(&vote);
        // Verification results go to the round's primary (paper steps 3-4), which gathers the
        // certificates and hands them on (`Endorsed`, `Decided`).
        let primary = out.ctx.genesis.primary(self.height, view);
        if primary != out.ctx.me {
            out.push(Effect::Send {
                to: primary,
                msg: Message::Vote(vote.clone()),
            });
        }
        self.count_vote(out, &vote);
        true
    }
}
