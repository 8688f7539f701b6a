//! Negotiation at the primary (Fig. 5; spec V8, V10, L3, L5, D25): objections accepted into
//! the next revision.

use super::*;

impl NodeState {
    pub(super) fn on_objection(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        o: Signed<Objection>,
        batch: Option<SignedBatch>,
    ) {
        let ctx = out.ctx;
        let b = &o.body;
        if b.objector != from || b.chain_id != ctx.chain_id || b.height != self.height {
            return;
        }
        let Some(key) = Self::member_key(ctx, from) else {
            return;
        };
        if o.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        let Some(current) = &self.round.own else {
            return;
        };
        let fresh = current.header.view == current.round().view;
        let Round { view, revision } = current.round();
        // An objection to the current revision, or to an earlier revision of the view that
        // this primary proposed (it was revised before the objection arrived): its cuts and
        // batch are as valid against the current revision, so it is answered, not dropped
        // (spec 2.6, L5).
        if view != self.view
            || b.view != view
            || !ctx.rules.answers(b.revision, revision)
            || self
                .ballot
                .voted
                .get(&VoteSlot::new(VoteKind::Propose, view, b.revision))
                != Some(&b.block)
            || !fresh
            || !ctx.rules.may_revise(self.locked_in_view())
            || revision >= ctx.genesis.max_revisions + MAX_FALLBACK_LEVELS
            || self.round.negotiation.objections.len() >= MAX_OBJECTIONS
            || self.round.negotiation.bytes + encoded_len(&o) > MAX_NEGOTIATION_BYTES
        {
            return;
        }
        // The wait for answers starts at the first objection accepted since the revision.
        let waiting = self.revision_pending();
        if self.accept_objection(ctx, o.clone(), batch.clone()) {
            if b.revision == revision {
                self.round.negotiation.answered.insert(from);
            }
            out.persist(Record::Objection(o, batch));
            if !waiting && !self.all_answered(ctx) {
                out.push(Effect::SetTimer {
                    timer: Timer::Revise(self.height, view, revision),
                    after_ms: ctx.genesis.timing.batch_wait_ms,
                });
            }
        }
        // This answer may be the last the pending revision waited for.
        self.revise_when_answered(out);
    }

    /// The batch a `MissingBatch` objection carries, if it is the one the objection names:
    /// the objector's own, for this height.
    pub(super) fn objectors_batch<'b>(
        &self,
        ctx: &Context,
        o: &Signed<Objection>,
        batch: Option<&'b SignedBatch>,
    ) -> Option<&'b SignedBatch> {
        let ObjectionReason::MissingBatch { batch: digest } = &o.body.reason else {
            return None;
        };
        // V10: only the objector's own batch of this height; a member cannot move the primary
        // with another home's batch or a batch of another height.
        batch.filter(|b| {
            b.body_digest() == *digest && ctx.rules.objection_batch(b, o.body.objector, self.height)
        })
    }

    /// Adds what an objection asks for to the negotiation: new cuts, or the objector's own
    /// batch. Returns whether anything changed.
    pub(super) fn accept_objection(
        &mut self,
        ctx: &Context,
        o: Signed<Objection>,
        batch: Option<SignedBatch>,
    ) -> bool {
        // A copy of an objection already accepted (the network duplicates) adds nothing, even
        // while the revision that will carry it is still awaited.
        if self.round.negotiation.objections.contains(&o) {
            return false;
        }
        let changed = match &o.body.reason {
            ObjectionReason::Security { cuts } => {
                let new: Vec<Cut> = cuts
                    .iter()
                    .filter(|c| !self.round.negotiation.cuts.contains(c))
                    .cloned()
                    .collect();
                let any = !new.is_empty();
                self.round.negotiation.cuts.extend(new);
                any
            }
            ObjectionReason::MissingBatch { .. } => {
                match self.objectors_batch(ctx, &o, batch.as_ref()) {
                    Some(b) => {
                        let b = b.clone();
                        // New to the primary, or held but missing from its current proposal
                        // (the batch arrived after it proposed): either way the next revision
                        // carries it.
                        let carried = self
                            .round
                            .own
                            .as_ref()
                            .is_some_and(|p| p.body.process.batches.contains(&b));
                        let changed = self.intake.batches.get(&b.body.home) != Some(&b) || !carried;
                        self.intake.batches.insert(b.body.home, b);
                        changed
                    }
                    None => false,
                }
            }
            ObjectionReason::Invalid { .. } => false,
        };
        if changed {
            self.round.negotiation.bytes += encoded_len(&o);
            self.round.negotiation.objections.push(o);
        }
        changed
    }
}
