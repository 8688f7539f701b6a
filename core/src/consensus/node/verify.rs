//! Verifying (paper step 4, Fig. 5; spec V1-V9, S2, L1): a proposal checked by every member
//! against the content rules and its own grid, then endorsed or objected to.

use super::*;

/// A member's verdict on a valid proposal of its round (spec V4, V7). It lives for one call,
/// so the size of its objection is no cost.
#[allow(clippy::large_enum_variant)]
pub(super) enum Verdict {
    /// It can be endorsed.
    Endorse,
    /// This node must object: its own batch is missing (the objection carries it), or the
    /// outcome violates its area's grid (the objection carries the cuts).
    Object(ObjectionReason, Option<SignedBatch>),
}

impl NodeState {
    pub(super) fn on_proposal(&mut self, out: &mut Out<'_>, from: NodeId, p: Proposal) {
        let ctx = out.ctx;
        let stamp = p.stamp.body.clone();
        if stamp.kind != VoteKind::Propose || stamp.chain_id != ctx.chain_id {
            return;
        }
        if !self.current(out, from, stamp.height) {
            return;
        }
        let Round { view, revision } = p.round();
        // V1: only the rotation's primary for the round may propose.
        if !ctx
            .rules
            .may_propose(&ctx.genesis, stamp.height, view, stamp.voter)
        {
            return;
        }
        let Some(key) = Self::member_key(ctx, stamp.voter) else {
            return;
        };
        if p.stamp.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        // A node acts on nothing of a view it has left (spec 2.7).
        if view < self.view {
            return;
        }
        self.note_vote(out, &p.stamp);
        // L1: a proposal for a later view carries the skip certificate that opened it.
        if view > 0 {
            let Some(cert) = p.justification.as_ref() else {
                return;
            };
            let known = self.view == view && self.justification.as_ref() == Some(cert);
            if !known {
                if !ctx.rules.justifies(ctx, cert, stamp.height, view) {
                    return;
                }
                self.enter_view(out, view, cert.clone());
            }
        }
        if view != self.view || self.skipped(ctx, view) {
            return;
        }
        // N4: under a gate schedule, a proposal long before the gate (by this node's clock)
        // must not close it: the auction stays open for every participant until its gate.
        if !self.intake.gate_closed && self.before_gate(ctx, out.now) {
            return;
        }
        if !self.intake.gate_closed {
            self.close_gate(out);
        }
        if self
            .round
            .proposal
            .as_ref()
            .is_some_and(|cur| cur.round() >= Round::new(view, revision))
            || self.signed_later_revision(VoteKind::Endorse, view, revision)
        {
            return;
        }
        let digest = p.header.digest();
        if stamp.block != digest {
            return;
        }
        match self.check_proposal(ctx, &p) {
            Err(detail) => {
                return self.object(out, &p, ObjectionReason::Invalid { detail }, None);
            }
            Ok(Verdict::Object(reason, batch)) => return self.object(out, &p, reason, batch),
            Ok(Verdict::Endorse) => {}
        }
        // S2: once locked in this view, never endorse another block in it.
        if let Some(lock) = &self.ballot.lock {
            let c = &lock.certificate;
            if ctx.rules.lock_forbids(c, view, &digest) {
                return;
            }
        }
        self.round.proposal = Some(p.clone());
        self.arm_view_timer(out);
        if !self.cast_vote(out, VoteKind::Endorse, view, revision, digest) {
            return;
        }
        // Votes for this round may have arrived before the proposal.
        for kind in [VoteKind::Endorse, VoteKind::Commit] {
            self.try_certificate(out, kind, view, revision, digest);
        }
    }

    /// Checks a proposal for the current round: `Err` with what is wrong if it is invalid,
    /// else this node's [`Verdict`] on it.
    pub(super) fn check_proposal(
        &mut self,
        ctx: &Context,
        p: &Proposal,
    ) -> Result<Verdict, String> {
        let Round { view, revision } = p.round();
        let h = &p.header;
        // V1: a header that names a proposer the rules accept is checked as if it named the
        // rotation's primary (with the spec's rules, only the rotation's primary is accepted).
        let rotation = ctx.genesis.primary(h.height, h.view);
        let as_rotation = (h.primary != rotation
            && ctx
                .rules
                .may_propose(&ctx.genesis, h.height, h.view, h.primary))
        .then(|| BlockHeader {
            primary: rotation,
            ..h.clone()
        });
        check_header(
            &ctx.genesis,
            ctx.chain_id,
            ctx.scheme.as_ref(),
            self.prev.as_ref(),
            as_rotation.as_ref().unwrap_or(h),
            &p.body,
        )
        .map_err(|e| e.to_string())?;
        let locked = p
            .justification
            .as_ref()
            .and_then(|j| ctx.rules.carried_lock(j));
        if let Some(lock) = locked {
            // S2: the new primary must propose the highest locked block, unchanged; a quorum
            // with every touched area already verified it.
            return if lock.block == h.digest() {
                Ok(Verdict::Endorse)
            } else {
                Err(format!(
                    "the skip certificate locks block {:?}, the proposal is {:?}",
                    lock.block,
                    h.digest()
                ))
            };
        }
        if h.view != view
            || h.revision != revision
            || (h.primary != p.stamp.body.voter
                && !ctx
                    .rules
                    .may_propose(&ctx.genesis, h.height, h.view, h.primary))
        {
            return Err("header round or primary differs from the proposal's".into());
        }
        if p.body.process.skip_certificate != p.justification {
            return Err("the body's skip certificate is not the proposal's justification".into());
        }
        let (rules, mut check) = content_checks(ctx, &self.committed_nonces, &mut self.verified);
        // V7, Fig. 5: this node's private security check of its own area, on the selection
        // the content rules made (its verdict counts only if the checks below pass).
        let violated = rules
            .verify_body_then(h.height, revision, &p.body, &mut check, |input, cleared| {
                ctx.rules.verify_clearing(&rules, input, cleared)?;
                Ok(ctx
                    .rules
                    .security_cuts(ctx.security.as_ref(), input, cleared))
            })
            .map_err(|e| e.to_string())?;
        // N2: after a skip, every batch a skip voter reported is carried.
        ctx.rules
            .check_skip_batches(&p.body.process)
            .map_err(|e| e.to_string())?;
        // V4: this node's own batch is in the block unchanged, unless its area sat out the view.
        let me = ctx.genesis.member(ctx.me).expect("a node is a member");
        let unavailable = unavailable_areas(&ctx.genesis, p.body.process.skip_certificate.as_ref());
        if let Some(mine) = self.intake.batches.get(&ctx.me) {
            let theirs = p
                .body
                .process
                .batches
                .iter()
                .find(|b| b.body.home == ctx.me);
            if theirs != Some(mine) && !unavailable.contains(&me.area) {
                return Ok(Verdict::Object(
                    ObjectionReason::MissingBatch {
                        batch: mine.body_digest(),
                    },
                    Some(mine.clone()),
                ));
            }
        }
        let cuts: Vec<Cut> = violated
            .into_iter()
            .filter(|c| !p.body.process.clearing.cuts.contains(c))
            .collect();
        if cuts.is_empty() {
            Ok(Verdict::Endorse)
        } else {
            Ok(Verdict::Object(ObjectionReason::Security { cuts }, None))
        }
    }

    pub(super) fn object(
        &mut self,
        out: &mut Out<'_>,
        p: &Proposal,
        reason: ObjectionReason,
        batch: Option<SignedBatch>,
    ) {
        let ctx = out.ctx;
        let Round { view, revision } = p.round();
        let o = out.sign(Objection {
            chain_id: ctx.chain_id,
            height: self.height,
            view,
            revision,
            block: p.stamp.body.block,
            objector: ctx.me,
            reason,
        });
        let proposer = p.stamp.body.voter;
        if proposer == ctx.me {
            self.on_objection(out, ctx.me, o, batch);
        } else {
            out.push(Effect::Send {
                to: proposer,
                msg: Message::Objection(Box::new(o), batch.map(Box::new)),
            });
        }
    }
}
