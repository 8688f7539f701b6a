//! Catch-up (spec L4): a node behind asks a peer for blocks and decides them after the audit's
//! checks.

use super::*;

impl NodeState {
    /// Asks `peer` for the blocks from this node's height on, once per height (spec L4).
    pub(super) fn request_sync(&mut self, out: &mut Out<'_>, peer: NodeId) {
        if self.sync_from != Some(self.height) && peer != out.ctx.me {
            self.sync_from = Some(self.height);
            out.push(Effect::Send {
                to: peer,
                msg: Message::SyncRequest { from: self.height },
            });
        }
    }

    /// Where a message for `height` stands: `true` to process it now.
    pub(super) fn current(&mut self, out: &mut Out<'_>, from: NodeId, height: u64) -> bool {
        if height > self.height {
            self.request_sync(out, from);
        }
        height == self.height
    }

    pub(super) fn on_sync_request(&mut self, out: &mut Out<'_>, from: NodeId, first: u64) {
        if first >= 1 && first < self.height {
            out.push(Effect::ServeBlocks {
                to: from,
                from: first,
                to_height: (self.height - 1).min(first + MAX_SYNC_BLOCKS - 1),
            });
        }
    }

    /// L4: committed blocks from a peer are decided after the same checks the audit makes.
    pub(super) fn on_blocks(&mut self, out: &mut Out<'_>, from: NodeId, mut blocks: Vec<Block>) {
        let full = blocks.len() as u64 >= MAX_SYNC_BLOCKS;
        blocks.sort_by_key(|b| b.header.height);
        for block in blocks {
            let h = block.header.height;
            if h < self.height {
                continue;
            }
            if h > self.height {
                self.request_sync(out, from);
                return;
            }
            // Each block is judged by the registry its predecessors left (spec A5).
            let effective = self.effective(out.ctx);
            let ctx = &*effective;
            let digest = block.digest();
            let endorsed = self.ballot.voted.get(&VoteSlot::new(
                VoteKind::Endorse,
                block.certificate.view,
                block.certificate.revision,
            )) == Some(&digest)
                || self
                    .ballot
                    .lock
                    .as_ref()
                    .is_some_and(|l| l.certificate.block == digest);
            let ok = if endorsed {
                block
                    .certificate
                    .verify(
                        &ctx.genesis,
                        ctx.chain_id,
                        ctx.scheme.as_ref(),
                        &block.body.required_signers(&ctx.genesis),
                    )
                    .is_ok()
                    && block.certificate.block == digest
                    && block.certificate.kind == VoteKind::Commit
            } else {
                let (rules, mut check) =
                    content_checks(ctx, &self.committed_nonces, &mut self.verified);
                verify_block(
                    &rules,
                    self.prev.as_ref(),
                    &block,
                    &mut check,
                    &mut AuditSummary::default(),
                )
                .is_ok()
            };
            if !ok {
                return;
            }
            self.after_decide(out, block);
        }
        if full {
            self.request_sync(out, from);
        }
    }
}
