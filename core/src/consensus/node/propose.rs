//! Proposing (paper steps 3-4; spec V1, V2, V5, S2, N2, L3): the primary's plan from what it
//! holds, its proposal and its revisions once every member has answered.

use super::*;

/// The current view's round: the proposal this node holds and, as the view's primary, what it
/// proposed and what negotiation gave it. A new view or height starts it afresh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoundState {
    /// The latest valid proposal in the current view.
    pub proposal: Option<Proposal>,
    /// As primary: the latest proposal this node made in the current view, which objections
    /// and appeals refer to (it may have failed this node's own checks).
    pub own: Option<Proposal>,
    /// The negotiation of the current view (used when this node is its primary).
    pub negotiation: Negotiation,
}

impl RoundState {
    /// What holds of the round at node `me` in `view` between steps (debug and test builds):
    /// its proposals are of that view (a new view starts the round afresh), its own is its own,
    /// and negotiation stays within its limits (spec D25).
    pub(super) fn assert_invariants(&self, view: u32, me: NodeId) {
        assert!(
            self.proposal
                .as_ref()
                .is_none_or(|p| p.round().view == view)
        );
        assert!(
            self.own
                .as_ref()
                .is_none_or(|p| p.round().view == view && p.stamp.body.voter == me)
        );
        let n = &self.negotiation;
        assert!(n.objections.len() <= MAX_OBJECTIONS && n.bytes <= MAX_NEGOTIATION_BYTES);
        assert!(n.appeals.len() <= MAX_APPEALS);
    }
}

impl NodeState {
    /// Whether the primary accepted objections its current proposal does not carry yet: its
    /// proposal records every objection accepted before it (the plan's), so any beyond those.
    pub(super) fn revision_pending(&self) -> bool {
        self.round.own.as_ref().is_some_and(|p| {
            self.round.negotiation.objections.len() > p.body.process.objections.len()
        })
    }

    /// Whether every other member answered the primary's current proposal: endorsed it, or
    /// objected to it with an objection the primary accepted.
    pub(super) fn all_answered(&self, ctx: &Context) -> bool {
        let Some(p) = &self.round.own else {
            return false;
        };
        let Round { view, revision } = p.round();
        let endorsed = self.ballot.signers(
            VoteSlot::new(VoteKind::Endorse, view, revision),
            p.stamp.body.block,
        );
        ctx.genesis
            .members
            .iter()
            .filter(|m| m.id != ctx.me)
            .all(|m| {
                endorsed.is_some_and(|e| e.contains_key(&m.id))
                    || self.round.negotiation.answered.contains(&m.id)
            })
    }

    /// Negotiation (spec 2.6): the primary revises once every other member answered its
    /// current proposal, so that one revision carries every objection to it; a member that
    /// does not answer is waited for until `Timer::Revise`.
    pub(super) fn revise_when_answered(&mut self, out: &mut Out<'_>) {
        if self.revision_pending() && self.all_answered(out.ctx) {
            if let Some(r) = self.round.own.as_ref().map(|p| p.round().revision) {
                self.propose(out, r + 1);
            }
        }
    }

    /// The primary that has not proposed yet does so once it holds what it waits for: every
    /// batch in view 0, every batch a skip voter reported in a later view.
    pub(super) fn propose_when_batches_are_in(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        if self.intake.gate_closed
            && self.primary(ctx) == ctx.me
            && self.round.own.is_none()
            && (self.view > 0 || self.intake.batches.len() == ctx.genesis.n())
        {
            self.propose(out, 0);
        }
    }

    /// The body the rules give for this view and revision, from everything this node holds.
    pub(super) fn plan(&mut self, ctx: &Context, revision: u32) -> BlockPlan {
        let mut batches: Vec<SignedBatch> = ctx
            .genesis
            .members
            .iter()
            .filter_map(|m| self.intake.batches.get(&m.id).cloned())
            .collect();
        if self.view > 0 {
            ctx.rules.batches_after_skip(ctx.me, &mut batches);
        }
        // V5: appeals are resolved in arrival order against the batches and earlier upheld
        // appeals, as every verifier and the audit resolve them; an upheld appeal names the
        // revision that first clears it. Appeals recorded in earlier revisions are resolved
        // again against this revision's batches: an omitted bid upheld while its home's batch
        // was missing is included by the batch once a missing-batch objection brings it in,
        // and its appeal is then rejected as already included. New appeals are recorded while
        // revisions remain below `max_revisions` (L3).
        let mut included: BTreeSet<Digest> = batches
            .iter()
            .flat_map(|b| b.body.bids.iter().map(|sb| sb.body.id()))
            .collect();
        let (height, committed) = (self.height, &self.committed_nonces);
        let mut resolve = |appeal: &Signed<Appeal>, earlier: Option<AppealResolution>| {
            let resolution = match resolve_appeal(
                &ctx.genesis,
                &ctx.chain_id,
                ctx.scheme.as_ref(),
                height,
                &included,
                committed,
                appeal,
            ) {
                AppealResolution::Upheld { .. } => match earlier {
                    Some(AppealResolution::Upheld { revision: first }) => {
                        AppealResolution::Upheld { revision: first }
                    }
                    _ => AppealResolution::Upheld { revision },
                },
                other => other,
            };
            let resolution = ctx.rules.appeal_resolution(earlier, resolution);
            if let (AppealResolution::Upheld { .. }, AppealClaim::Omitted { bid, .. }) =
                (&resolution, &appeal.body.claim)
            {
                included.insert(bid.body.id());
            }
            resolution
        };
        for a in &mut self.round.negotiation.appeals {
            a.resolution = resolve(&a.appeal, Some(a.resolution));
        }
        if revision < ctx.genesis.max_revisions {
            for (appeal, via) in &self.appeals.held {
                if self.round.negotiation.appeals.len() >= MAX_APPEALS
                    || self
                        .round
                        .negotiation
                        .appeals
                        .iter()
                        .any(|r| r.appeal == *appeal)
                {
                    continue;
                }
                let resolution = resolve(appeal, None);
                self.round.negotiation.appeals.push(AppealRecord {
                    appeal: appeal.clone(),
                    via: *via,
                    resolution,
                });
            }
        }
        BlockPlan {
            height: self.height,
            view: self.view,
            revision,
            batches,
            appeals: self.round.negotiation.appeals.clone(),
            objections: self.round.negotiation.objections.clone(),
            cuts: self.round.negotiation.cuts.clone(),
            skip_certificate: if self.view > 0 {
                self.justification.clone()
            } else {
                None
            },
            evidence: self
                .ballot
                .evidence
                .iter()
                .take(MAX_EVIDENCE)
                .cloned()
                .collect(),
        }
    }

    /// The primary builds, signs and sends its proposal for (view, revision), then handles it
    /// as every other node does.
    pub(super) fn propose(&mut self, out: &mut Out<'_>, revision: u32) {
        let ctx = out.ctx;
        if self.primary(ctx) != ctx.me {
            return;
        }
        if !self.intake.gate_closed {
            self.close_gate(out);
        }
        let locked = self
            .justification
            .as_ref()
            .filter(|_| self.view > 0)
            .and_then(|j| ctx.rules.carried_lock(j))
            .map(|l| l.block);
        // S2: a primary locked in its view proposes nothing new in it (an endorsement quorum
        // may already be committing the block), nor a revision below one it has signed (a
        // restarted primary has no proposal in memory, only its stamps in the log).
        if !ctx.rules.may_revise(self.locked_in_view())
            || self.signed_later_revision(VoteKind::Propose, self.view, revision)
        {
            return;
        }
        let (header, body, revision) = match locked {
            // S2: after a skip, a block that may have been committed is proposed again as it is.
            Some(digest) => {
                let held = self
                    .ballot
                    .lock
                    .as_ref()
                    .filter(|l| l.certificate.block == digest)
                    .map(|l| &l.proposal)
                    .or_else(|| self.skip.offered.get(&digest));
                let Some(p) = held else {
                    return;
                };
                (p.header.clone(), p.body.clone(), 0)
            }
            None => {
                let Some((header, body)) = self.build(out, revision) else {
                    return;
                };
                (header, Arc::new(body), revision)
            }
        };
        let digest = header.digest();
        let slot = VoteSlot::new(VoteKind::Propose, self.view, revision);
        if self.ballot.voted.get(&slot).is_some_and(|d| *d != digest) {
            return;
        }
        let stamp = out.sign(Vote {
            kind: VoteKind::Propose,
            chain_id: ctx.chain_id,
            height: self.height,
            view: self.view,
            revision,
            block: digest,
            voter: ctx.me,
        });
        self.ballot.voted.insert(slot, digest);
        out.persist_vote(&stamp);
        let proposal = Proposal {
            stamp,
            header,
            body,
            justification: if self.view > 0 {
                self.justification.clone()
            } else {
                None
            },
        };
        out.push(Effect::Broadcast(Message::Proposal(Box::new(
            proposal.clone(),
        ))));
        self.round.own = Some(proposal.clone());
        self.round.negotiation.answered.clear();
        out.push(Effect::CancelTimer(Timer::BatchWait(self.height)));
        self.on_proposal(out, ctx.me, proposal);
    }

    /// A new block for (view, `revision`) from everything this node holds, by the content
    /// rules (spec V2), or nothing while a batch a skip voter reported is missing (N2).
    fn build(&mut self, out: &Out<'_>, revision: u32) -> Option<(BlockHeader, BlockBody)> {
        let ctx = out.ctx;
        // N2: a block built after a skip carries every batch a skip voter reported; wait until
        // they are all here (they travel with the votes).
        let reported = self
            .justification
            .as_ref()
            .filter(|_| self.view > 0)
            .map(SkipCertificate::reported_homes)
            .unwrap_or_default();
        if reported
            .iter()
            .any(|h| !self.intake.batches.contains_key(h))
        {
            return None;
        }
        let plan = self.plan(ctx, revision);
        let (rules, mut check) = content_checks(ctx, &self.committed_nonces, &mut self.verified);
        let body = rules.build_body(plan, &mut check).ok()?;
        let prev_ts = self.prev.as_ref().map_or(Timestamp(0), |p| p.timestamp);
        let header = BlockHeader {
            version: BLOCK_VERSION,
            chain_id: ctx.chain_id,
            height: self.height,
            view: self.view,
            revision,
            previous: self.prev_digest(ctx),
            trades_root: body.trades_root(),
            process_hash: body.process_hash(),
            timestamp: out.now.max(prev_ts),
            primary: ctx.me,
        };
        Some((header, body))
    }
}
