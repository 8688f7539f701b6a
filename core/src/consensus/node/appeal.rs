//! Appeals (paper step 5; spec V5): a participant's appeal taken by its home node and forwarded
//! to every member for the primary to record.

use super::*;

/// The appeals of a height.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Appeals {
    /// Appeals for this height, forwarded by home nodes, in arrival order.
    pub held: Vec<(Signed<Appeal>, NodeId)>,
    /// This node's participants whose appeals it forwarded at this height.
    pub forwarded: BTreeSet<ParticipantId>,
}

impl Appeals {
    /// What holds of the appeals between steps (debug and test builds).
    pub(super) fn assert_invariants(&self) {
        assert!(self.held.len() <= MAX_APPEALS);
    }
}

impl NodeState {
    pub(super) fn on_participant_appeal(&mut self, out: &mut Out<'_>, appeal: Signed<Appeal>) {
        let ctx = out.ctx;
        let a = &appeal.body;
        let refuse = |out: &mut Out<'_>, reason: String| {
            out.push(Effect::Reply {
                to: a.participant,
                reply: Reply::AppealRejected { reason },
            })
        };
        let Some(p) = ctx.genesis.participant(a.participant) else {
            return refuse(
                out,
                format!("participant {} is not admitted", a.participant),
            );
        };
        if p.home != ctx.me {
            return refuse(
                out,
                format!("participant {}'s home node is {}", p.id, p.home),
            );
        }
        if a.chain_id != ctx.chain_id || appeal.verify(ctx.scheme.as_ref(), &p.public_key).is_err()
        {
            return refuse(out, "the appeal's signature does not verify".into());
        }
        if a.height != self.height {
            return refuse(
                out,
                format!(
                    "height {} is not the round in progress ({})",
                    a.height, self.height
                ),
            );
        }
        self.appeals.forwarded.insert(a.participant);
        out.push(Effect::Reply {
            to: a.participant,
            reply: Reply::AppealForwarded { height: a.height },
        });
        out.push(Effect::Broadcast(Message::Appeal {
            appeal: Box::new(appeal.clone()),
            via: ctx.me,
        }));
        self.on_forwarded_appeal(out, ctx.me, appeal, ctx.me);
    }

    pub(super) fn on_forwarded_appeal(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        appeal: Signed<Appeal>,
        via: NodeId,
    ) {
        let ctx = out.ctx;
        let a = &appeal.body;
        if via != from || a.chain_id != ctx.chain_id || a.height != self.height {
            return;
        }
        let Some(p) = ctx.genesis.participant(a.participant) else {
            return;
        };
        if p.home != via
            || appeal.verify(ctx.scheme.as_ref(), &p.public_key).is_err()
            || self.appeals.held.len() >= MAX_APPEALS
            || self.appeals.held.iter().any(|(x, _)| *x == appeal)
        {
            return;
        }
        out.persist(Record::Appeal {
            appeal: appeal.clone(),
            via,
        });
        self.appeals.held.push((appeal, via));
        // The primary records it in its next revision, while revisions remain.
        if let Some(cur) = &self.round.own {
            let Round { view, revision } = cur.round();
            let fresh = cur.header.view == view;
            if view == self.view && fresh && revision + 1 < ctx.genesis.max_revisions {
                self.propose(out, revision + 1);
            }
        }
    }
}
