//! Fault skip (paper step 2; spec L1, L2, S2, N2): skip votes, skip certificates and view
//! certificates, and entering a view.

use super::*;

/// The skip votes of a height, by the view they skip, and the locked proposals skip voters
/// brought to this node as the next view's primary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ViewChange {
    /// Skip votes per view.
    pub skips: BTreeMap<u32, BTreeMap<NodeId, Signed<SkipVote>>>,
    /// Locked proposals other nodes attached to their skip votes, by digest.
    pub offered: BTreeMap<Digest, Proposal>,
}

impl ViewChange {
    /// The skip votes of views before `view` are dropped.
    pub(super) fn forget_views_before(&mut self, view: u32) {
        self.skips.retain(|&w, _| w >= view);
    }

    /// What holds of the skip votes at a node in `view` between steps (debug and test
    /// builds): none of an earlier view, each kept under its view and voter.
    pub(super) fn assert_invariants(&self, view: u32) {
        assert!(self.skips.iter().all(|(&w, votes)| {
            w >= view
                && votes
                    .iter()
                    .all(|(voter, v)| v.body.view == w && v.body.voter == *voter)
        }));
        assert!(
            self.offered
                .iter()
                .all(|(digest, p)| p.header.digest() == *digest)
        );
    }
}

impl NodeState {
    /// The view lasted too long: vote to skip its primary, reporting the highest lock. The
    /// vote goes to the primary of the next view only, which gathers the certificate and opens
    /// the view with its proposal (HotStuff's new-view messages). If the timer fires again
    /// before then, that primary may be down too: the node votes to skip the next view as
    /// well, and so on (PBFT's escalation), each vote to the primary of the view after it.
    pub(super) fn skip_view(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        let target = self.next_skip_view(ctx.me);
        if !self
            .skip
            .skips
            .get(&target)
            .is_some_and(|m| m.contains_key(&ctx.me))
        {
            let v = out.sign(SkipVote {
                chain_id: ctx.chain_id,
                height: self.height,
                view: target,
                voter: ctx.me,
                lock: ctx.rules.skip_vote_lock(self.ballot.lock.as_ref()),
                held: self.intake.batches.keys().copied().collect(),
            });
            self.skip
                .skips
                .entry(target)
                .or_default()
                .insert(ctx.me, v.clone());
            out.persist(Record::Skip(v));
        }
        self.send_skip_votes(out);
        out.push(Effect::SetTimer {
            timer: Timer::View(self.height, self.view),
            after_ms: self.view_timeout(ctx, target + 1),
        });
        self.try_skip_certificate(out, target);
    }

    /// The view the next firing of this node's view timer votes to skip: its current view,
    /// or, once it voted to skip that one, the view after the highest it voted to skip (below
    /// `MAX_VIEW`). The model checker reads it to tell a run that can go on only past its
    /// view bound.
    pub fn next_skip_view(&self, me: NodeId) -> u32 {
        self.skip
            .skips
            .range(self.view..)
            .rev()
            .find(|(_, m)| m.contains_key(&me))
            .map_or(self.view, |(&w, _)| (w + 1).min(crate::block::MAX_VIEW - 1))
    }

    /// Whether this node voted to skip `view` or a later view: it then votes in `view` no more.
    pub(super) fn skipped(&self, ctx: &Context, view: u32) -> bool {
        self.skip
            .skips
            .range(view..)
            .any(|(_, m)| m.contains_key(&ctx.me))
    }

    /// Sends this node's skip vote for its current view and its latest one (the votes for the
    /// views between are superseded by the latest: its certificate skips them all), each to
    /// the primary of the view after it, with the locked proposal and the batches the vote
    /// reports.
    pub(super) fn send_skip_votes(&self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        let mine = |w: &u32| {
            self.skip
                .skips
                .get(w)
                .and_then(|m| m.get(&ctx.me))
                .map(|v| (*w, v))
        };
        let latest = self
            .skip
            .skips
            .range(self.view..)
            .rev()
            .find_map(|(w, _)| mine(w));
        let current = mine(&self.view);
        let votes = current
            .into_iter()
            .chain(latest.filter(|l| Some(l.0) != current.map(|c| c.0)));
        for (w, v) in votes {
            let to = ctx.genesis.primary(self.height, w + 1);
            if to != ctx.me {
                out.push(Effect::Send {
                    to,
                    msg: Message::Skip(
                        Box::new(v.clone()),
                        self.locked_proposal(),
                        self.held_batches(&v.body.held),
                    ),
                });
            }
        }
    }

    pub(super) fn on_skip(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        v: Signed<SkipVote>,
        locked: Option<Proposal>,
        batches: Vec<SignedBatch>,
    ) {
        let ctx = out.ctx;
        let b = &v.body;
        if b.voter != from || b.chain_id != ctx.chain_id {
            return;
        }
        if b.height < self.height {
            // L4: the sender is stuck at a height this node decided (it missed the decided
            // block, and no message of a later height told it): answer with the blocks.
            self.on_sync_request(out, from, b.height);
            return;
        }
        if !self.current(out, from, b.height) {
            return;
        }
        if b.view < self.view {
            // L2: the sender lags behind in views; show it how this node got ahead. Only a
            // vote for the view just before this one is answered: the certificate that opened
            // this view is for that view, and a sender further behind escalates its votes
            // until one reaches a node in the view after it (2.7).
            if b.view + 1 != self.view {
                return;
            }
            if let Some(cert) = &self.justification {
                let reported: Vec<NodeId> = cert.reported_homes().into_iter().collect();
                out.push(Effect::Send {
                    to: from,
                    msg: Message::ViewCertificate(
                        Box::new(cert.clone()),
                        self.held_batches(&reported),
                    ),
                });
            }
            return;
        }
        // Skip votes for a view are gathered by the primary of the view after it alone.
        if ctx.genesis.primary(self.height, b.view.saturating_add(1)) != ctx.me {
            return;
        }
        let Some(key) = Self::member_key(ctx, from) else {
            return;
        };
        if v.verify(ctx.scheme.as_ref(), &key).is_err() {
            return;
        }
        if let Some(lock) = &b.lock {
            if !ctx.rules.skip_lock_holds(ctx, lock, self.height, b.view) {
                return;
            }
            if let Some(p) = locked {
                if p.header.digest() == lock.block
                    && p.body.trades_root() == p.header.trades_root
                    && p.body.process_hash() == p.header.process_hash
                {
                    self.skip.offered.entry(lock.block).or_insert(p);
                }
            }
        }
        // N2: keep the batches the vote reports, before the vote can open the next view.
        for batch in batches {
            if b.held.contains(&batch.body.home) && batch.body.height == self.height {
                self.keep_batch(out, batch);
            }
        }
        let view = b.view;
        self.skip
            .skips
            .entry(view)
            .or_default()
            .entry(from)
            .or_insert(v);
        self.try_skip_certificate(out, view);
        self.propose_when_batches_are_in(out);
    }

    /// L2: a valid skip certificate for a later view moves a lagging node forward.
    pub(super) fn on_view_certificate(
        &mut self,
        out: &mut Out<'_>,
        from: NodeId,
        cert: SkipCertificate,
        batches: Vec<SignedBatch>,
    ) {
        let ctx = out.ctx;
        if !self.current(out, from, cert.height) || cert.view < self.view {
            return;
        }
        if ctx.rules.view_certificate_holds(ctx, &cert, self.height) {
            let reported = cert.reported_homes();
            for batch in batches {
                if reported.contains(&batch.body.home) && batch.body.height == self.height {
                    self.keep_batch(out, batch);
                }
            }
            self.enter_view(out, cert.view + 1, cert);
            self.propose_when_batches_are_in(out);
        }
    }

    /// L1: a quorum of skip votes for a view moves this node to the next view.
    pub(super) fn try_skip_certificate(&mut self, out: &mut Out<'_>, view: u32) {
        let ctx = out.ctx;
        let need = ctx.rules.skip_quorum(&ctx.genesis);
        let Some(votes) = self.skip.skips.get(&view) else {
            return;
        };
        if view < self.view || votes.len() < need {
            return;
        }
        let cert = SkipCertificate {
            height: self.height,
            view,
            votes: votes.values().cloned().collect(),
        };
        self.enter_view(out, view + 1, cert);
    }

    pub(super) fn enter_view(&mut self, out: &mut Out<'_>, view: u32, cert: SkipCertificate) {
        let ctx = out.ctx;
        if view <= self.view || view > crate::block::MAX_VIEW {
            return;
        }
        out.persist(Record::SkipCertificate(cert.clone()));
        out.push(Effect::CancelTimer(Timer::View(self.height, self.view)));
        self.view = view;
        self.forget_earlier_views();
        self.justification = Some(cert);
        self.round = RoundState::default();
        self.arm_view_timer(out);
        if self.primary(ctx) == ctx.me {
            self.propose(out, 0);
        }
    }

    /// A node in view v acts on nothing of an earlier view but a skip vote (answered with the
    /// certificate that opened v): it drops the votes it counted, the votes it noted for
    /// equivocation (evidence already found is kept) and the skip votes of earlier views.
    /// Nothing is lost: a block committed in an earlier view reaches the node as `Decided` or
    /// by sync, and a block locked there is proposed again in v (S2).
    pub(super) fn forget_earlier_views(&mut self) {
        let view = self.view;
        self.ballot.forget_views_before(view);
        self.skip.forget_views_before(view);
    }
}
