//! Restart (spec N1, N3): the state rebuilt from the stored chain and the write-ahead log.

use super::*;

impl NodeState {
    /// Rebuilds the state after a restart from the stored chain (already audited) and the
    /// write-ahead log (spec N1, N3). Call `step(Input::Start)` next.
    pub fn restore<'b>(
        ctx: &Context,
        chain: impl IntoIterator<Item = &'b Block>,
        records: impl IntoIterator<Item = Record>,
    ) -> Self {
        let mut s = NodeState::new();
        for block in chain {
            advance_nonces(&mut s.committed_nonces, &block.body);
            s.apply_changes(ctx, block);
            s.height = block.header.height + 1;
            s.prev = Some(block.header.clone());
        }
        let effective = s.effective(ctx);
        let ctx = &*effective;
        for record in records {
            if record.height() < s.height || !ctx.rules.restores(&record) {
                continue;
            }
            match record {
                Record::Bid {
                    bid,
                    receipt,
                    height,
                } => {
                    let n = s
                        .intake
                        .receipted_nonces
                        .entry(bid.body.participant)
                        .or_insert(0);
                    *n = (*n).max(bid.body.nonce);
                    s.intake.pool_push(height, bid, receipt);
                }
                Record::Batch(b) => {
                    if b.body.home == ctx.me && b.body.height == s.height {
                        s.intake.gate_closed = true;
                    }
                    s.store_batch(b);
                }
                Record::Vote(v) => {
                    let b = &v.body;
                    s.ballot.voted.insert(VoteSlot::of(b), b.block);
                    // A proposal's stamp is logged as a vote but counts toward no certificate.
                    if b.kind != VoteKind::Propose {
                        s.ballot.count(&v);
                    }
                }
                Record::Lock(certificate, proposal) => {
                    s.ballot.lock = Some(Lock {
                        certificate,
                        proposal: *proposal,
                    });
                }
                Record::Skip(v) => {
                    s.skip
                        .skips
                        .entry(v.body.view)
                        .or_default()
                        .insert(ctx.me, v);
                }
                Record::SkipCertificate(c) => {
                    if c.view + 1 > s.view {
                        s.view = c.view + 1;
                        s.justification = Some(c);
                        s.round = RoundState::default();
                    }
                }
                Record::Appeal { appeal, via } => s.appeals.held.push((appeal, via)),
                Record::Change { change, height } => {
                    s.intake.changes.entry(height).or_default().push(change);
                }
                Record::Objection(o, batch) => {
                    // The objector's batch stays held after its view ends, as it does in a
                    // running node's memory; the objection itself counts only in its view.
                    if let Some(b) = s.objectors_batch(ctx, &o, batch.as_ref()) {
                        s.intake.batches.insert(b.body.home, b.clone());
                    }
                    if o.body.view == s.view {
                        s.accept_objection(ctx, o, batch);
                    }
                }
            }
        }
        s.forget_earlier_views();
        if cfg!(debug_assertions) {
            s.assert_invariants(ctx.me);
        }
        s
    }
}
