//! Intake (paper step 3; spec N1, N2, N4, D25, A5): participants' bids and registry changes
//! taken, receipted after they are logged, pooled by the height whose batch carries them; the
//! gate closes into this node's signed batch; every home's batch kept once logged.

use super::*;

/// What a home node takes in for the heights to come: its participants' bids and registry
/// changes, and every home's batch of its height and the next.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Intake {
    /// This node's participants' highest receipted nonce.
    pub receipted_nonces: BTreeMap<ParticipantId, u64>,
    /// This node's participants' receipted bids not yet on the chain, by the height whose
    /// batch will carry them.
    pub pool: BTreeMap<u64, Vec<(SignedBid, SignedReceipt)>>,
    /// How many bid steps `pool` holds for each height (kept with it by `pool_push` and
    /// `pool_take`): what a home node's share of the round is measured against (spec D25).
    pub pool_steps: BTreeMap<u64, usize>,
    /// Whether this node's gate for its height has closed (its batch is sent).
    pub gate_closed: bool,
    /// The batches for the node's height, by home node (spec N2).
    pub batches: BTreeMap<NodeId, SignedBatch>,
    /// Batches for the height after it that arrived early.
    pub early_batches: BTreeMap<NodeId, SignedBatch>,
    /// Registry changes this node sponsors, by the height whose batch will carry them.
    pub changes: BTreeMap<u64, Vec<SignedChange>>,
}

impl Intake {
    /// Adds a receipted bid to the pool of `height`.
    pub(super) fn pool_push(&mut self, height: u64, bid: SignedBid, receipt: SignedReceipt) {
        *self.pool_steps.entry(height).or_default() += bid.body.steps.len();
        self.pool.entry(height).or_default().push((bid, receipt));
    }

    /// Takes the pool of `height`.
    pub(super) fn pool_take(&mut self, height: u64) -> Vec<(SignedBid, SignedReceipt)> {
        self.pool_steps.remove(&height);
        self.pool.remove(&height).unwrap_or_default()
    }

    /// The next height opens: its gate is open, and the batches that came early are its own.
    pub(super) fn next_height(&mut self) {
        self.gate_closed = false;
        self.batches = std::mem::take(&mut self.early_batches);
    }

    /// What holds of intake at a node at `height` between steps (debug and test builds).
    pub(super) fn assert_invariants(&self, height: u64) {
        // The pool is of this height and later: a decided height's is taken. (Its step counts
        // are kept with it by `pool_push` and `pool_take`, but tests set either alone to stage
        // a full batch, so they are not asserted here.)
        assert!(
            self.pool.keys().all(|&h| h >= height),
            "a pool below the height"
        );
        // Every batch is kept under its home; early ones are of the next height.
        assert!(self.batches.iter().all(|(home, b)| b.body.home == *home));
        assert!(
            self.early_batches
                .iter()
                .all(|(home, b)| b.body.home == *home && b.body.height == height + 1)
        );
        assert!(
            self.changes.keys().all(|&h| h >= height),
            "changes below the height"
        );
    }
}

impl NodeState {
    /// Bids of the batches this node holds for its height.
    pub(super) fn held_bids(&self) -> u64 {
        self.intake
            .batches
            .values()
            .map(|b| b.body.bids.len() as u64)
            .sum()
    }

    pub(super) fn on_start(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        // A node on a new chain has nothing to catch up on (L4): it learns that it is behind,
        // if ever, from the first message of a later height.
        let restarted = *self != NodeState::new();
        if !self.intake.gate_closed {
            out.push(Effect::SetTimer {
                timer: Timer::Gate(self.height),
                after_ms: ctx.genesis.timing.gate_after(self.height, out.now),
            });
        } else {
            self.arm_view_timer(out);
            if self.primary(ctx) == ctx.me && self.round.own.is_none() {
                self.arm_batch_wait(out);
            }
            self.send_skip_votes(out);
        }
        if restarted {
            out.push(Effect::Broadcast(Message::SyncRequest {
                from: self.height,
            }));
        }
    }

    /// N1: a bid gets a receipt only after it is persisted, and only if it is valid, new and
    /// fits in a batch.
    pub(super) fn on_bid(&mut self, out: &mut Out<'_>, sb: SignedBid) {
        let ctx = out.ctx;
        let bid = &sb.body;
        let id = bid.id();
        let verdict = (|| {
            if let Some(height) = self.registry.revoked_at(bid.participant) {
                return Err(BidError::Revoked {
                    participant: bid.participant,
                    height,
                });
            }
            let p = ctx
                .genesis
                .participant(bid.participant)
                .ok_or(BidError::UnknownParticipant(bid.participant))?;
            if p.home != ctx.me {
                return Err(BidError::WrongHome {
                    participant: p.id,
                    home: p.home,
                    this: ctx.me,
                });
            }
            // The period against the schedule: `height_for`, below.
            bid.check_rules(&ctx.genesis, &ctx.chain_id)?;
            sb.verify(ctx.scheme.as_ref(), &p.public_key)
                .map_err(|_| BidError::BadSignature(p.id))?;
            let last = self
                .intake
                .receipted_nonces
                .get(&p.id)
                .copied()
                .max(self.committed_nonces.get(&p.id).copied());
            if last.is_some_and(|n| bid.nonce <= n) {
                return Err(BidError::ReplayedNonce {
                    participant: p.id,
                    nonce: bid.nonce,
                });
            }
            let height = self.height_for(ctx, bid, out.now)?;
            // D25: the batch is full at MAX_BATCH_BIDS bids, or when the bid's steps would
            // take it past this home node's share of the round.
            let steps = self.intake.pool_steps.get(&height).copied().unwrap_or(0);
            if self
                .intake
                .pool
                .get(&height)
                .is_some_and(|v| v.len() >= MAX_BATCH_BIDS)
                || steps + bid.steps.len() > ctx.genesis.batch_steps()
            {
                return Err(BidError::BatchFull { height });
            }
            Ok(height)
        })();
        match verdict {
            Err(reason) => out.push(Effect::Reply {
                to: bid.participant,
                reply: Reply::BidRejected { bid: id, reason },
            }),
            Ok(height) => {
                let receipt = out.sign(BidReceipt {
                    chain_id: ctx.chain_id,
                    bid: id,
                    participant: bid.participant,
                    home: ctx.me,
                    height,
                    received_at: out.now,
                });
                self.intake
                    .receipted_nonces
                    .insert(bid.participant, bid.nonce);
                if let Some(p) = ctx.genesis.participant(bid.participant) {
                    self.verified.receipted(&sb, id, p.public_key);
                }
                self.intake.pool_push(height, sb.clone(), receipt.clone());
                out.persist(Record::Bid {
                    bid: sb.clone(),
                    receipt: receipt.clone(),
                    height,
                });
                out.push(Effect::Reply {
                    to: sb.body.participant,
                    reply: Reply::Receipt(receipt),
                });
            }
        }
    }

    /// A registry change this node sponsors (spec A5): accepted only if it holds against the
    /// registry with the changes already pending applied; logged before the answer, and
    /// carried by the next batch this node signs. A participant's key replacement, signed by
    /// the participant's current key, gets this home node's countersignature here (A3); an
    /// admission or revocation must come signed by the home node's key (its operator's).
    pub(super) fn on_change(&mut self, out: &mut Out<'_>, mut change: SignedChange) {
        let ctx = out.ctx;
        if ctx.rules.countersigns(&change) && change.sponsor(&ctx.genesis) == Some(ctx.me) {
            change.sign(Party::Member(ctx.me), ctx.signer.as_ref());
        }
        let id = change.id();
        let height = if self.intake.gate_closed {
            self.height + 1
        } else {
            self.height
        };
        let verdict = (|| {
            let sponsor = change.sponsor(&ctx.genesis).ok_or_else(|| {
                ChangeError::Unknown(format!("no member sponsors it: {}", change.describe()))
            })?;
            if sponsor != ctx.me {
                return Err(ChangeError::WrongCarrier {
                    sponsor,
                    carrier: ctx.me,
                });
            }
            let pending: Vec<&SignedChange> = self.intake.changes.values().flatten().collect();
            if pending.contains(&&change) {
                return Err(ChangeError::Invalid("the change is already pending".into()));
            }
            let mut staged = self.registry.clone();
            for p in pending {
                // A pending change that no longer holds will be refused in its block; the
                // new one is judged as if the others took effect.
                let _ = staged.apply_one(
                    &ctx.genesis,
                    &ctx.chain_id,
                    ctx.scheme.as_ref(),
                    ctx.me,
                    self.height,
                    p,
                );
            }
            staged
                .check(
                    &ctx.genesis,
                    &ctx.chain_id,
                    ctx.scheme.as_ref(),
                    ctx.me,
                    &change,
                )
                .map(|_| ())
        })();
        match verdict {
            Err(e) => out.push(Effect::Answer(Reply::ChangeRefused {
                change: id,
                reason: e.to_string(),
            })),
            Ok(()) => {
                self.intake
                    .changes
                    .entry(height)
                    .or_default()
                    .push(change.clone());
                out.persist(Record::Change { change, height });
                out.push(Effect::Answer(Reply::ChangeAccepted { change: id, height }));
            }
        }
    }

    /// The height whose batch takes a new bid (spec N1, N4): without a schedule the open
    /// height (the next once its gate closed); with one, the height that clears the bid's
    /// delivery period, if its gate is still open and it is at most `MAX_GATES_AHEAD` heights
    /// ahead. The bid rests in the pool until then.
    pub(super) fn height_for(
        &self,
        ctx: &Context,
        bid: &Bid,
        now: Timestamp,
    ) -> Result<u64, BidError> {
        let open = if self.intake.gate_closed {
            self.height + 1
        } else {
            self.height
        };
        let (Some(schedule), Some(height)) = (
            ctx.genesis.timing.schedule.as_ref(),
            bid.scheduled_height(&ctx.genesis)?,
        ) else {
            return Ok(open);
        };
        let gate = schedule.gate_of(height);
        if height < open || now >= gate {
            return Err(BidError::GateClosed { height, gate });
        }
        if height > open + MAX_GATES_AHEAD {
            return Err(BidError::TooFarAhead {
                height,
                open,
                ahead: MAX_GATES_AHEAD,
            });
        }
        Ok(height)
    }

    /// Whether `now` is more than `MAX_CLOCK_SKEW_MS` before this height's scheduled gate.
    pub(super) fn before_gate(&self, ctx: &Context, now: Timestamp) -> bool {
        ctx.genesis
            .timing
            .schedule
            .as_ref()
            .is_some_and(|s| now.0.saturating_add(MAX_CLOCK_SKEW_MS) < s.gate_of(self.height).0)
    }

    /// Gate closure: sign and send this node's batch for the height (spec N2).
    pub(super) fn close_gate(&mut self, out: &mut Out<'_>) {
        let ctx = out.ctx;
        // In the order received (a bid carried from a batch that missed its block was
        // received before the height's own), the earliest first if the batch is full.
        let mut pending: Vec<&(SignedBid, SignedReceipt)> = self
            .intake
            .pool
            .get(&self.height)
            .into_iter()
            .flatten()
            .collect();
        pending.sort_by_key(|(_, r)| r.body.received_at);
        pending.truncate(MAX_BATCH_BIDS);
        // D25: at most this home node's share of the round's steps (carried bids may exceed
        // it); the rest wait for the next batch (N1).
        let mut steps = 0;
        let fits = pending
            .iter()
            .take_while(|(b, _)| {
                steps += b.body.steps.len();
                steps <= ctx.genesis.batch_steps()
            })
            .count();
        pending.truncate(fits);
        let batch = out.sign(BidBatch {
            chain_id: ctx.chain_id,
            height: self.height,
            home: ctx.me,
            bids: pending.iter().map(|(b, _)| b.clone()).collect(),
            received: pending.iter().map(|(_, r)| r.body.received_at).collect(),
            changes: self
                .intake
                .changes
                .get(&self.height)
                .map(|c| c.iter().take(MAX_BATCH_CHANGES).cloned().collect())
                .unwrap_or_default(),
        });
        self.intake.gate_closed = true;
        self.intake.batches.insert(ctx.me, batch.clone());
        // The gate may close before its timer fires (a proposal arrived first).
        out.push(Effect::CancelTimer(Timer::Gate(self.height)));
        out.persist(Record::Batch(batch.clone()));
        out.push(Effect::Broadcast(Message::Batch(batch)));
        self.arm_view_timer(out);
    }

    pub(super) fn store_batch(&mut self, b: SignedBatch) {
        let home = b.body.home;
        if b.body.height == self.height {
            self.intake.batches.entry(home).or_insert(b);
        } else if b.body.height == self.height + 1 {
            self.intake.early_batches.entry(home).or_insert(b);
        }
    }

    /// N2: every member keeps every home node's batch for the height.
    pub(super) fn on_batch(&mut self, out: &mut Out<'_>, from: NodeId, b: SignedBatch) {
        if b.body.home != from {
            return;
        }
        if b.body.height > self.height + 1 {
            self.request_sync(out, from);
            return;
        }
        let current = b.body.height == self.height;
        if self.keep_batch(out, b) {
            // The round just grew: the view gets the new batch's allowance, measured from its
            // arrival, until this node holds a proposal or gave up on the view (spec 2.7); the
            // view-0 primary still waiting for batches waits again likewise (spec 2.5).
            let grew = current && self.intake.gate_closed;
            if grew && self.round.proposal.is_none() && !self.skipped(out.ctx, self.view) {
                self.arm_view_timer(out);
            }
            self.propose_when_batches_are_in(out);
            if grew
                && self.view == 0
                && self.round.own.is_none()
                && self.primary(out.ctx) == out.ctx.me
            {
                self.arm_batch_wait(out);
            }
        }
    }

    /// Keeps a home node's batch for this height or the next, if it is validly signed and the
    /// first from its home; persisted before it counts (spec N2, N3). `true` if it is new.
    pub(super) fn keep_batch(&mut self, out: &mut Out<'_>, b: SignedBatch) -> bool {
        let ctx = out.ctx;
        let body = &b.body;
        let Some(key) = Self::member_key(ctx, body.home) else {
            return false;
        };
        if body.chain_id != ctx.chain_id
            || body.height < self.height
            || body.height > self.height + 1
            || body.malformed(&ctx.genesis).is_some()
        {
            return false;
        }
        let known = if body.height == self.height {
            &self.intake.batches
        } else {
            &self.intake.early_batches
        };
        if known.contains_key(&body.home) || b.verify(ctx.scheme.as_ref(), &key).is_err() {
            return false;
        }
        out.persist(Record::Batch(b.clone()));
        self.store_batch(b);
        true
    }

    /// This node's batches of the given homes, to travel with a skip vote or certificate.
    pub(super) fn held_batches(&self, homes: &[NodeId]) -> Vec<SignedBatch> {
        homes
            .iter()
            .filter_map(|h| self.intake.batches.get(h).cloned())
            .collect()
    }
}
