//! Deciding (spec S1, N1, A5, V5): a decided block stored, its results told, what it does not
//! carry moved to the next height, and the next height opened.

use super::*;

impl NodeState {
    /// Applies the registry changes of a decided block (spec A5): they hold from the next
    /// height. Batches of the next height already held are kept only if their home's key
    /// still verifies them.
    pub(super) fn apply_changes(&mut self, ctx: &Context, block: &Block) {
        if !block.body.process.has_changes() {
            return;
        }
        let before = self.registry.clone();
        let mut batches = Cow::Borrowed(&block.body.process.batches);
        let applies = |c: &SignedChange| ctx.rules.applies(&c.record.change);
        if !batches.iter().all(|b| b.body.changes.iter().all(applies)) {
            for b in batches.to_mut() {
                b.body.changes.retain(applies);
            }
        }
        self.registry.apply(
            &ctx.genesis,
            &ctx.chain_id,
            ctx.scheme.as_ref(),
            block.header.height,
            batches.iter(),
        );
        if self.registry != before {
            let g = self.registry.genesis(&ctx.genesis);
            for held in [&mut self.intake.batches, &mut self.intake.early_batches] {
                held.retain(|home, b| {
                    g.member(*home)
                        .is_some_and(|m| b.verify(ctx.scheme.as_ref(), &m.public_key).is_ok())
                });
            }
        }
    }

    /// S1: a commit certificate decides the block; it is final.
    pub(super) fn decide(
        &mut self,
        out: &mut Out<'_>,
        header: BlockHeader,
        body: BlockBody,
        certificate: QuorumCertificate,
    ) {
        let ctx = out.ctx;
        let proposer = ctx.genesis.primary(self.height, certificate.view) == ctx.me;
        let block = Block {
            header,
            body,
            certificate,
        };
        if proposer {
            out.push(Effect::Broadcast(Message::Decided(Box::new(block.clone()))));
        }
        self.after_decide(out, block);
    }

    /// Everything a decided block changes: it is stored, participants learn their results,
    /// receipted bids it does not carry move to the next batch (spec N1), and the next
    /// height opens.
    pub(super) fn after_decide(&mut self, out: &mut Out<'_>, block: Block) {
        let ctx = out.ctx;
        let h = block.header.height;
        let old_view = self.view;
        advance_nonces(&mut self.committed_nonces, &block.body);
        out.push(Effect::Decide(Box::new(block.clone())));
        self.apply_changes(ctx, &block);
        self.carry_over(out, &block);
        self.tell_participants(out, &block);
        // The next height opens: each part starts it afresh (the ballot keeps the evidence
        // the block did not record; intake keeps its pools and the batches that came early).
        self.ballot.next_height(&block);
        self.height = h + 1;
        self.prev = Some(block.header);
        self.view = 0;
        self.justification = None;
        self.intake.next_height();
        self.round = RoundState::default();
        self.skip = ViewChange::default();
        self.appeals = Appeals::default();
        self.verified = VerifiedBids::default();
        if self.sync_from.is_some_and(|f| f <= h) {
            self.sync_from = None;
        }
        out.push(Effect::Prune { below: self.height });
        out.push(Effect::CancelTimer(Timer::View(h, old_view)));
        out.push(Effect::CancelTimer(Timer::BatchWait(h)));
        out.push(Effect::SetTimer {
            timer: Timer::Gate(self.height),
            after_ms: ctx.genesis.timing.gate_after(self.height, out.now),
        });
    }

    /// What this node holds for the decided height that the block does not carry moves to
    /// the next: the registry changes it sponsors (A5) and its participants' receipted bids
    /// (N1), each logged again for the next height.
    fn carry_over(&mut self, out: &mut Out<'_>, block: &Block) {
        let h = block.header.height;
        // A change this node sponsors that the block does not carry (its batch was missing)
        // goes into the next batch; one it carries is on the chain, applied or refused (A5).
        let carried: BTreeSet<Digest> = block
            .body
            .process
            .batches
            .iter()
            .flat_map(|b| b.body.changes.iter().map(SignedChange::id))
            .collect();
        for change in self.intake.changes.remove(&h).unwrap_or_default() {
            if !carried.contains(&change.id()) {
                out.persist(Record::Change {
                    change: change.clone(),
                    height: h + 1,
                });
                self.intake.changes.entry(h + 1).or_default().push(change);
            }
        }
        // N1: receipted bids that this block does not carry go into the next batch. With a
        // gate schedule their period's auction is over: the next block records them rejected
        // as `OutsideGate` (N4), so the participant can read on the chain what became of them.
        let on_chain: BTreeSet<Digest> = block
            .body
            .process
            .batches
            .iter()
            .flat_map(|b| b.body.bids.iter().map(|sb| sb.body.id()))
            .chain(
                block
                    .body
                    .process
                    .appeals
                    .iter()
                    .filter_map(|a| a.upheld_omission().map(|(bid, _)| bid.body.id())),
            )
            .collect();
        for (bid, receipt) in self.intake.pool_take(h) {
            if !on_chain.contains(&bid.body.id()) {
                out.persist(Record::Bid {
                    bid: bid.clone(),
                    receipt: receipt.clone(),
                    height: h + 1,
                });
                self.intake.pool_push(h + 1, bid, receipt);
            }
        }
    }

    /// This node's participants learn their trades in the decided block, and those whose
    /// appeal it forwarded learn its resolution, or that it was not recorded (V5).
    fn tell_participants(&mut self, out: &mut Out<'_>, block: &Block) {
        let ctx = out.ctx;
        let h = block.header.height;
        let mut results: BTreeMap<ParticipantId, Vec<crate::market::Trade>> = BTreeMap::new();
        for t in &block.body.trades {
            if ctx
                .genesis
                .participant(t.participant)
                .is_some_and(|p| p.home == ctx.me)
            {
                results.entry(t.participant).or_default().push(t.clone());
            }
        }
        let digest = block.digest();
        for (participant, trades) in results {
            out.push(Effect::Reply {
                to: participant,
                reply: Reply::Result {
                    height: h,
                    block: digest,
                    trades,
                },
            });
        }
        let resolutions: Vec<(ParticipantId, AppealResolution)> = block
            .body
            .process
            .appeals
            .iter()
            .map(|a| (a.appeal.body.participant, a.resolution))
            .collect();
        for participant in std::mem::take(&mut self.appeals.forwarded) {
            let reply = match resolutions.iter().find(|(p, _)| *p == participant) {
                Some((_, resolution)) => Reply::AppealResolved {
                    height: h,
                    resolution: *resolution,
                },
                None => Reply::AppealRejected {
                    reason: format!(
                        "the appeal was not recorded in block {h}: negotiation had closed or the primary changed"
                    ),
                },
            };
            out.push(Effect::Reply {
                to: participant,
                reply,
            });
        }
    }
}
