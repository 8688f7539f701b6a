//! One transition at a time: a node's state taken from an in-memory cluster at a chosen moment,
//! given one input, and its effects checked (spec part 2).

use std::sync::Arc;

use tieline_core::block::{
    Appeal, AppealClaim, AppealResolution, Block, MAX_APPEALS, MAX_EVIDENCE, MAX_NEGOTIATION_BYTES,
    MAX_OBJECTIONS, MAX_VIEW, Objection, ObjectionReason, QuorumCertificate, SkipVote, Vote,
    VoteKind, VoteSignature,
};
use tieline_core::clearing::{COEFFICIENT_SCALE, Cut, CutTerm, CutVariable};
use tieline_core::consensus::sim::{Cluster, Event};
use tieline_core::consensus::{
    BATCH_WAIT_ALLOWANCE_US_PER_BID, Context, Effect, Input, MAX_FALLBACK_LEVELS, MAX_SYNC_BLOCKS,
    Message, NoGridModel, NodeState, Proposal, Record, SecurityCheck, Timer,
    VIEW_ALLOWANCE_US_PER_BID, VoteSlot,
};
use tieline_core::crypto::{Digest, Signed};
use tieline_core::genesis::ClearingRule;
use tieline_core::sample::{SampleConsortium, sample_product};
use tieline_core::units::{NodeId, Price, Quantity, TieLineId, Timestamp};

const NOW: Timestamp = Timestamp(1_767_225_700_000);

struct Rig {
    s: SampleConsortium,
    c: Cluster,
}

impl Rig {
    /// Four members, every participant has bid for height 1, every gate has closed and every
    /// batch has arrived; the primary of (1, 0) has just broadcast its proposal, which nobody
    /// has received yet.
    fn at_proposal() -> Rig {
        Self::at_proposal_of(SampleConsortium::new(4, 2))
    }

    /// The same, under zonal coupling: the rule that honours negotiated cuts.
    fn at_proposal_zonal() -> Rig {
        let mut s = SampleConsortium::new(4, 2);
        s.genesis.clearing.rule = ClearingRule::ZonalCoupling;
        Self::at_proposal_of(s)
    }

    fn at_proposal_of(s: SampleConsortium) -> Rig {
        let open: Vec<Arc<dyn SecurityCheck>> = (0..4)
            .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
            .collect();
        let mut c = Cluster::from_sample(&s, open);
        c.start();
        for i in 0..s.participants.len() {
            c.submit(s.bid(i, 1, i as u64 + 1));
        }
        let proposal = |e: &Event| {
            matches!(
                e,
                Event::Deliver {
                    msg: Message::Proposal(_),
                    ..
                }
            )
        };
        assert!(c.run_until(10_000, |c| c.events.values().any(proposal)));
        Rig { s, c }
    }

    fn index(&self, id: NodeId) -> usize {
        self.s
            .genesis
            .members
            .iter()
            .position(|m| m.id == id)
            .unwrap()
    }

    fn primary(&self) -> usize {
        self.index(self.s.genesis.primary(1, 0))
    }

    /// The primary of (1, 0), its context and its state.
    fn primary_node(&self) -> (usize, Context, NodeState) {
        let i = self.primary();
        (
            i,
            self.c.nodes[i].ctx.clone(),
            self.c.nodes[i].state.clone(),
        )
    }

    /// A verifier (not the primary) and its context and state.
    fn verifier(&self) -> (usize, Context, NodeState) {
        let i = (self.primary() + 1) % 4;
        (
            i,
            self.c.nodes[i].ctx.clone(),
            self.c.nodes[i].state.clone(),
        )
    }

    /// The verifier, after it took the primary's proposal `p`.
    fn verifier_holding(&self, p: &Proposal) -> (usize, Context, NodeState) {
        let (i, ctx, mut state) = self.verifier();
        state.step(
            &ctx,
            NOW,
            self.by_primary(Message::Proposal(Box::new(p.clone()))),
        );
        (i, ctx, state)
    }

    fn proposal(&self) -> Proposal {
        self.c.nodes[self.primary()]
            .state
            .round
            .proposal
            .clone()
            .expect("the primary proposed")
    }

    /// Whether a node in `state` votes on the primary's proposal when it arrives.
    fn endorses_the_proposal(&self, ctx: &Context, state: &mut NodeState) -> bool {
        let effects = state.step(
            ctx,
            NOW,
            self.by_primary(Message::Proposal(Box::new(self.proposal()))),
        );
        effects.iter().any(|e| {
            matches!(
                e,
                Effect::Send {
                    msg: Message::Vote(_),
                    ..
                }
            )
        })
    }

    fn by_primary(&self, msg: Message) -> Input {
        Input::Message {
            from: self.s.genesis.primary(1, 0),
            msg,
        }
    }

    /// Re-signs a changed proposal with the primary's key.
    fn resign(&self, mut p: Proposal) -> Proposal {
        let mut stamp = p.stamp.body.clone();
        stamp.block = p.header.digest();
        p.stamp = Signed::sign(stamp, &self.s.members[self.primary()]);
        p
    }

    /// Member `voter`'s signed vote of `kind` for `p`.
    fn signed_vote(&self, kind: VoteKind, voter: usize, p: &Proposal) -> Signed<Vote> {
        let (view, revision) = p.round().into();
        let v = Vote {
            kind,
            chain_id: self.s.genesis.chain_id(),
            height: 1,
            view,
            revision,
            block: p.stamp.body.block,
            voter: self.s.genesis.members[voter].id,
        };
        Signed::sign(v, &self.s.members[voter])
    }

    /// Member `voter`'s signed vote to skip view 0 at height 1, holding nothing and unlocked.
    fn skip(&self, voter: usize) -> Input {
        let v = SkipVote {
            chain_id: self.s.genesis.chain_id(),
            height: 1,
            view: 0,
            voter: self.s.genesis.members[voter].id,
            lock: None,
            held: Vec::new(),
        };
        Input::Message {
            from: v.voter,
            msg: Message::Skip(
                Box::new(Signed::sign(v, &self.s.members[voter])),
                None,
                Vec::new(),
            ),
        }
    }

    /// Member `objector`'s signed security objection to `p`, with one cut the outcome already
    /// honours (so the next revision verifies).
    fn security_objection(&self, objector: usize, p: &Proposal) -> Input {
        self.security_objection_labelled(objector, p, 1)
    }

    /// A security objection to `p` whose one (loose) cut carries `label`: objections with
    /// different labels ask for different cuts.
    fn security_objection_labelled(&self, objector: usize, p: &Proposal, label: u32) -> Input {
        let (view, revision) = p.round().into();
        let cut = Cut {
            product: sample_product(1),
            label,
            terms: vec![CutTerm {
                variable: CutVariable::TieFlow(TieLineId(1)),
                coefficient: COEFFICIENT_SCALE,
            }],
            limit: Quantity(1_000_000 * Quantity::SCALE),
        };
        let o = Objection {
            chain_id: self.s.genesis.chain_id(),
            height: 1,
            view,
            revision,
            block: p.stamp.body.block,
            objector: self.s.genesis.members[objector].id,
            reason: ObjectionReason::Security { cuts: vec![cut] },
        };
        Input::Message {
            from: o.objector,
            msg: Message::Objection(Box::new(Signed::sign(o, &self.s.members[objector])), None),
        }
    }

    /// The endorsement certificate of `p` signed by members `voters`.
    fn endorsement_certificate(&self, p: &Proposal, voters: &[usize]) -> QuorumCertificate {
        let (view, revision) = p.round().into();
        QuorumCertificate {
            kind: VoteKind::Endorse,
            height: 1,
            view,
            revision,
            block: p.stamp.body.block,
            signatures: voters
                .iter()
                .map(|&j| VoteSignature {
                    voter: self.s.genesis.members[j].id,
                    signature: self.signed_vote(VoteKind::Endorse, j, p).signature,
                })
                .collect(),
        }
    }

    fn vote(&self, kind: VoteKind, voter: usize, p: &Proposal) -> Input {
        let v = self.signed_vote(kind, voter, p);
        Input::Message {
            from: v.body.voter,
            msg: Message::Vote(v),
        }
    }
}

/// The records among `effects` that the node persists.
fn persisted(effects: &[Effect]) -> impl Iterator<Item = Record> + '_ {
    effects.iter().filter_map(|e| match e {
        Effect::Persist(rec) => Some(rec.clone()),
        _ => None,
    })
}

/// Asserts that `input` changes nothing: no effect, and the same state after.
fn assert_ignored(ctx: &Context, state: &mut NodeState, input: Input) {
    let before = state.clone();
    let e = state.step(ctx, NOW, input);
    assert!(e.is_empty(), "{e:?}");
    assert!(*state == before);
}

fn position(effects: &[Effect], f: impl Fn(&Effect) -> bool) -> Option<usize> {
    effects.iter().position(f)
}

#[test]
fn gate_closure_persists_then_broadcasts_the_signed_batch() {
    let s = SampleConsortium::new(4, 2);
    let open: Vec<Arc<dyn SecurityCheck>> = (0..4)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect();
    let mut c = Cluster::from_sample(&s, open);
    c.start();
    c.submit(s.bid(0, 1, 1));
    let home = 0;
    let ctx = c.nodes[home].ctx.clone();
    let mut state = c.nodes[home].state.clone();
    let effects = state.step(&ctx, NOW, Input::Timer(Timer::Gate(1)));
    let persisted = position(&effects, |e| matches!(e, Effect::Persist(Record::Batch(_)))).unwrap();
    let sent = position(&effects, |e| {
        matches!(e, Effect::Broadcast(Message::Batch(_)))
    })
    .unwrap();
    assert!(persisted < sent);
    let Effect::Broadcast(Message::Batch(b)) = &effects[sent] else {
        unreachable!()
    };
    assert_eq!(b.body.bids.len(), 1);
    assert!(
        b.verify(ctx.scheme.as_ref(), &s.genesis.members[home].public_key)
            .is_ok()
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::SetTimer {
            timer: Timer::View(1, 0),
            ..
        }
    )));
    assert!(state.intake.gate_closed);
    // A timer for another height does nothing.
    assert!(
        state
            .step(&ctx, NOW, Input::Timer(Timer::Gate(7)))
            .is_empty()
    );
}

#[test]
fn a_valid_proposal_is_endorsed_after_the_vote_is_persisted() {
    let r = Rig::at_proposal();
    let (_, ctx, mut state) = r.verifier();
    let p = r.proposal();
    let effects = state.step(
        &ctx,
        NOW,
        r.by_primary(Message::Proposal(Box::new(p.clone()))),
    );
    let persisted = position(
        &effects,
        |e| matches!(e, Effect::Persist(Record::Vote(v)) if v.body.kind == VoteKind::Endorse),
    )
    .unwrap();
    let primary = r.s.genesis.primary(1, 0);
    let sent = position(&effects, |e| {
        matches!(e, Effect::Send { to, msg: Message::Vote(v) } if v.body.kind == VoteKind::Endorse && *to == primary)
    })
    .expect("the endorsement goes to the primary");
    assert!(persisted < sent, "N3: persist before send");
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Broadcast(Message::Vote(_)))),
        "verification results go to the primary only"
    );
    assert_eq!(state.round.proposal.as_ref(), Some(&p));
    // The same proposal again changes nothing.
    let again = state.step(&ctx, NOW, r.by_primary(Message::Proposal(Box::new(p))));
    assert!(
        !again
            .iter()
            .any(|e| matches!(e, Effect::Broadcast(_) | Effect::Send { .. }))
    );
}

#[test]
fn a_proposal_from_a_node_that_is_not_the_primary_is_ignored() {
    let r = Rig::at_proposal();
    let (i, ctx, mut state) = r.verifier();
    let mut p = r.proposal();
    let other = (i + 1) % 4;
    let mut stamp = p.stamp.body.clone();
    stamp.voter = r.s.genesis.members[other].id;
    p.stamp = Signed::sign(stamp, &r.s.members[other]);
    let effects = state.step(
        &ctx,
        NOW,
        Input::Message {
            from: r.s.genesis.members[other].id,
            msg: Message::Proposal(Box::new(p)),
        },
    );
    assert!(effects.is_empty(), "{effects:?}");
    assert!(state.round.proposal.is_none());
}

#[test]
fn a_tampered_clearing_result_gets_an_invalid_objection_naming_it() {
    let r = Rig::at_proposal();
    let (_, ctx, mut state) = r.verifier();
    let mut p = r.proposal();
    let prices = &mut Arc::make_mut(&mut p.body)
        .process
        .clearing
        .outcome
        .area_prices;
    prices[0].price = Price(prices[0].price.0 + 10_000);
    p.header.process_hash = p.body.process_hash();
    let p = r.resign(p);
    let effects = state.step(&ctx, NOW, r.by_primary(Message::Proposal(Box::new(p))));
    let objection = effects
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                msg: Message::Objection(o, _),
                to,
            } => Some((o.clone(), *to)),
            _ => None,
        })
        .expect("an objection to the primary");
    assert_eq!(objection.1, r.s.genesis.primary(1, 0));
    match &objection.0.body.reason {
        ObjectionReason::Invalid { detail } => assert!(detail.contains("price"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert!(!effects.iter().any(|e| matches!(
        e,
        Effect::Send {
            msg: Message::Vote(_),
            ..
        }
    )));
}

#[test]
fn a_proposal_without_the_nodes_batch_gets_a_missing_batch_objection_with_the_batch() {
    let r = Rig::at_proposal();
    let (i, ctx, mut state) = r.verifier();
    let me = r.s.genesis.members[i].id;
    let mut p = r.proposal();
    Arc::make_mut(&mut p.body)
        .process
        .batches
        .retain(|b| b.body.home != me);
    let plan = tieline_core::consensus::content::BlockPlan {
        height: 1,
        batches: p.body.process.batches.clone(),
        ..Default::default()
    };
    p.body = Arc::new(r.s.body(plan, &Default::default(), true));
    p.header.trades_root = p.body.trades_root();
    p.header.process_hash = p.body.process_hash();
    let p = r.resign(p);
    let effects = state.step(&ctx, NOW, r.by_primary(Message::Proposal(Box::new(p))));
    let (o, batch) = effects
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                msg: Message::Objection(o, b),
                ..
            } => Some((o.clone(), b.clone())),
            _ => None,
        })
        .expect("an objection");
    let batch = batch.expect("the objection carries the batch");
    assert_eq!(batch.body.home, me);
    assert!(
        matches!(o.body.reason, ObjectionReason::MissingBatch { batch: d } if d == batch.body_digest())
    );
}

/// D11: a vote counts only for its own chain. Endorsements that every member signed, but for
/// another chain's block of the same digest, are not counted, so no certificate forms from
/// them (a cargo-mutants survivor: a vote was refused only when it was both of another chain
/// and a `Propose`).
#[test]
fn votes_of_another_chain_are_not_counted() {
    let r = Rig::at_proposal();
    let p = r.proposal();
    let (i, ctx, mut state) = r.verifier_holding(&p);
    for j in (0..4).filter(|&j| j != i) {
        let mut v = r.signed_vote(VoteKind::Endorse, j, &p).body;
        v.chain_id = Digest([7; 32]);
        let vote = Signed::sign(v, &r.s.members[j]);
        state.step(&ctx, NOW, message(vote.body.voter, Message::Vote(vote)));
    }
    assert!(
        state.ballot.lock.is_none(),
        "votes of another chain formed a certificate"
    );
    // The same votes of this chain lock it.
    for j in (0..4).filter(|&j| j != i) {
        state.step(&ctx, NOW, r.vote(VoteKind::Endorse, j, &p));
    }
    assert!(state.ballot.lock.is_some());
}

#[test]
fn an_endorsement_quorum_locks_and_a_commit_quorum_decides() {
    let r = Rig::at_proposal();
    let p = r.proposal();
    let (i, ctx, mut state) = r.verifier_holding(&p);
    let others: Vec<usize> = (0..4).filter(|&j| j != i).collect();
    // Two of four endorsements: below the quorum of three.
    state.step(&ctx, NOW, r.vote(VoteKind::Endorse, others[0], &p));
    assert!(state.ballot.lock.is_none());
    // Three: a quorum, but the block touches every area, and one area's node has not
    // endorsed it yet (D12, the joint signatures).
    state.step(&ctx, NOW, r.vote(VoteKind::Endorse, others[1], &p));
    assert!(state.ballot.lock.is_none());
    // All four: locked (persisted with its proposal) before the commit vote goes out.
    let e2 = state.step(&ctx, NOW, r.vote(VoteKind::Endorse, others[2], &p));
    let locked = position(&e2, |e| matches!(e, Effect::Persist(Record::Lock(..)))).unwrap();
    let commit = position(&e2, |e| {
        matches!(e, Effect::Send { msg: Message::Vote(v), .. } if v.body.kind == VoteKind::Commit)
    })
    .unwrap();
    assert!(locked < commit);
    assert_eq!(
        state.ballot.lock.as_ref().unwrap().certificate.block,
        p.stamp.body.block
    );
    // Commits from all others complete the commit certificate: decided, height 2 opens.
    state.step(&ctx, NOW, r.vote(VoteKind::Commit, others[0], &p));
    state.step(&ctx, NOW, r.vote(VoteKind::Commit, others[1], &p));
    assert_eq!(state.height, 1);
    let e3 = state.step(&ctx, NOW, r.vote(VoteKind::Commit, others[2], &p));
    let decided = e3.iter().find_map(|e| match e {
        Effect::Decide(b) => Some(b.clone()),
        _ => None,
    });
    let b = decided.expect("decided");
    assert_eq!(b.digest(), p.stamp.body.block);
    assert_eq!(b.certificate.signatures.len(), 4);
    assert_eq!(state.height, 2);
    assert!(e3.iter().any(|e| matches!(
        e,
        Effect::SetTimer {
            timer: Timer::Gate(2),
            ..
        }
    )));
    assert!(e3.iter().any(|e| matches!(e, Effect::Prune { below: 2 })));
}

#[test]
fn the_primary_gathers_endorsements_and_hands_the_certificate_to_all() {
    let r = Rig::at_proposal();
    let i = r.primary();
    let ctx = r.c.nodes[i].ctx.clone();
    let mut state = r.c.nodes[i].state.clone();
    let p = r.proposal();
    // The primary endorsed its own proposal when it proposed; two more make a quorum of three,
    // and the block touches every area, so the fourth is needed too (D12).
    let others: Vec<usize> = (0..4).filter(|&j| j != i).collect();
    state.step(&ctx, NOW, r.vote(VoteKind::Endorse, others[0], &p));
    state.step(&ctx, NOW, r.vote(VoteKind::Endorse, others[1], &p));
    assert!(state.ballot.lock.is_none());
    let e = state.step(&ctx, NOW, r.vote(VoteKind::Endorse, others[2], &p));
    let locked = position(&e, |e| matches!(e, Effect::Persist(Record::Lock(..)))).unwrap();
    let relayed = e
        .iter()
        .position(|e| matches!(e, Effect::Broadcast(Message::Endorsed(c)) if c.block == p.stamp.body.block && c.signatures.len() == 4))
        .expect("the certificate goes to every member");
    assert!(locked < relayed);
    // The primary's own commit vote is logged and counted, not sent.
    assert!(
        e.iter().any(
            |e| matches!(e, Effect::Persist(Record::Vote(v)) if v.body.kind == VoteKind::Commit)
        )
    );
    assert!(!e.iter().any(|e| matches!(
        e,
        Effect::Send {
            msg: Message::Vote(_),
            ..
        }
    )));
    // Commit votes complete the commit certificate: the primary decides and sends the block.
    state.step(&ctx, NOW, r.vote(VoteKind::Commit, others[0], &p));
    state.step(&ctx, NOW, r.vote(VoteKind::Commit, others[1], &p));
    let e = state.step(&ctx, NOW, r.vote(VoteKind::Commit, others[2], &p));
    assert!(e.iter().any(|e| matches!(e, Effect::Decide(_))));
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Broadcast(Message::Decided(_))))
    );
}

#[test]
fn a_relayed_endorsement_certificate_locks_a_verifier_only_if_every_signature_verifies() {
    let r = Rig::at_proposal();
    let p = r.proposal();
    let (_, ctx, mut state) = r.verifier_holding(&p);
    let certificate = r.endorsement_certificate(&p, &[0, 1, 2, 3]);
    // One signature swapped for another voter's: that vote does not count, and three
    // remaining do not include every touched area, so no lock.
    let mut forged = certificate.clone();
    forged.signatures[0].signature = forged.signatures[1].signature;
    let mut bad = state.clone();
    bad.step(&ctx, NOW, r.by_primary(Message::Endorsed(Box::new(forged))));
    assert!(bad.ballot.lock.is_none());
    // The real certificate: locked, and the commit vote goes to the primary.
    let e = state.step(
        &ctx,
        NOW,
        r.by_primary(Message::Endorsed(Box::new(certificate))),
    );
    assert_eq!(
        state.ballot.lock.as_ref().map(|l| l.certificate.block),
        Some(p.stamp.body.block)
    );
    let primary = r.s.genesis.primary(1, 0);
    assert!(e.iter().any(|e| matches!(e, Effect::Send { to, msg: Message::Vote(v) } if *to == primary && v.body.kind == VoteKind::Commit)));
}

/// S2, V9: a certificate counts only for the block it names. A valid endorsement quorum for
/// another block of the same round (an equivocating primary's other proposal) does not lock a
/// node on the proposal it holds: it holds no proposal with that digest.
#[test]
fn an_endorsement_certificate_for_another_block_of_the_round_does_not_lock_the_held_proposal() {
    let r = Rig::at_proposal();
    let p = r.proposal();
    let (_, ctx, mut state) = r.verifier_holding(&p);
    let mut other = p.clone();
    other.stamp.body.block = Digest([7; 32]);
    assert_eq!(other.round(), p.round());
    let certificate = r.endorsement_certificate(&other, &[0, 1, 2, 3]);
    state.step(
        &ctx,
        NOW,
        r.by_primary(Message::Endorsed(Box::new(certificate))),
    );
    assert!(
        state.ballot.lock.is_none(),
        "locked on {:?} with a certificate for another block",
        state
            .ballot
            .lock
            .as_ref()
            .map(|l| l.proposal.stamp.body.block)
    );
    // (Its own proposal's certificate locks it, as in
    // a_relayed_endorsement_certificate_locks_a_verifier_only_if_every_signature_verifies;
    // here the voters would have signed two blocks in one slot, which is equivocation.)
}

/// 2.9, S1: a node decides a block it endorsed, received by sync, only if the block's commit
/// certificate verifies; a forged certificate for that very block is refused.
#[test]
fn a_synced_block_the_node_endorsed_is_decided_only_with_a_valid_commit_certificate() {
    let r = Rig::at_proposal();
    let p = r.proposal();
    let (_, ctx, mut state) = r.verifier_holding(&p);
    let (view, revision) = p.round().into();
    let certificate = QuorumCertificate {
        kind: VoteKind::Commit,
        height: 1,
        view,
        revision,
        block: p.stamp.body.block,
        signatures: (0..4)
            .map(|j| VoteSignature {
                voter: r.s.genesis.members[j].id,
                signature: r.signed_vote(VoteKind::Commit, j, &p).signature,
            })
            .collect(),
    };
    let block = |certificate: QuorumCertificate| Block {
        header: p.header.clone(),
        body: (*p.body).clone(),
        certificate,
    };
    let peer = r.s.genesis.members[1].id;
    let mut forged = certificate.clone();
    forged.signatures[0].signature = forged.signatures[1].signature;
    let e = state.step(
        &ctx,
        NOW,
        message(peer, Message::SyncResponse(vec![block(forged)])),
    );
    assert!(
        !e.iter().any(|e| matches!(e, Effect::Decide(_))),
        "decided a block whose commit certificate does not verify"
    );
    assert_eq!(state.height, 1);
    let e = state.step(
        &ctx,
        NOW,
        message(peer, Message::SyncResponse(vec![block(certificate)])),
    );
    assert!(e.iter().any(|e| matches!(e, Effect::Decide(_))));
}

#[test]
fn a_vote_with_a_bad_signature_or_from_another_voter_is_ignored() {
    let r = Rig::at_proposal();
    let p = r.proposal();
    let (i, ctx, mut state) = r.verifier_holding(&p);
    let j = (i + 2) % 4;
    let Input::Message {
        msg: Message::Vote(mut v),
        from,
    } = r.vote(VoteKind::Endorse, j, &p)
    else {
        unreachable!()
    };
    v.signature.0[0] ^= 1;
    let before = state.ballot.votes.clone();
    state.step(
        &ctx,
        NOW,
        Input::Message {
            from,
            msg: Message::Vote(v.clone()),
        },
    );
    assert_eq!(state.ballot.votes, before);
    // Relayed by someone else than the voter.
    let Input::Message {
        msg: Message::Vote(good),
        ..
    } = r.vote(VoteKind::Endorse, j, &p)
    else {
        unreachable!()
    };
    state.step(
        &ctx,
        NOW,
        Input::Message {
            from: r.s.genesis.members[(j + 1) % 4].id,
            msg: Message::Vote(good),
        },
    );
    assert_eq!(state.ballot.votes, before);
}

#[test]
fn skip_votes_form_a_certificate_that_opens_the_next_view() {
    let r = Rig::at_proposal();
    let (i, ctx, mut state) = r.verifier();
    // The verifier is the primary of view 1: it gathers the skip votes for view 0.
    assert_eq!(r.s.genesis.primary(1, 1), r.s.genesis.members[i].id);
    let effects = state.step(&ctx, NOW, Input::Timer(Timer::View(1, 0)));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Persist(Record::Skip(_))))
    );
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::Broadcast(_)
                | Effect::Send {
                    msg: Message::Skip(..),
                    ..
                }
        )),
        "the next view's primary keeps its own skip vote"
    );
    let others: Vec<usize> = (0..4).filter(|&j| j != i).collect();
    state.step(&ctx, NOW, r.skip(others[0]));
    assert_eq!(state.view, 0);
    let effects = state.step(&ctx, NOW, r.skip(others[1]));
    assert_eq!(state.view, 1);
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(Record::SkipCertificate(c)) if c.view == 0 && c.votes.len() == 3)));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::SetTimer {
            timer: Timer::View(1, 1),
            ..
        }
    )));
    // Having voted to skip view 0, the node never endorses in it.
    assert!(!r.endorses_the_proposal(&ctx, &mut state));

    // A node still voting to skip view 0 is sent the certificate, and catches up with it.
    let lagging = others[2];
    let effects = state.step(&ctx, NOW, r.skip(lagging));
    let cert = effects
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                msg: Message::ViewCertificate(c, _),
                ..
            } => Some(c.clone()),
            _ => None,
        })
        .expect("the view certificate");
    let mut behind = r.c.nodes[lagging].state.clone();
    let lctx = r.c.nodes[lagging].ctx.clone();
    behind.step(
        &lctx,
        NOW,
        Input::Message {
            from: r.s.genesis.members[i].id,
            msg: Message::ViewCertificate(cert, Vec::new()),
        },
    );
    assert_eq!(behind.view, 1);
}

#[test]
fn skip_votes_go_to_the_next_primary_and_escalate_while_it_stays_silent() {
    let r = Rig::at_proposal();
    let g = &r.s.genesis;
    // A node that is not the primary of view 1.
    let i = (0..4)
        .find(|&j| g.members[j].id != g.primary(1, 1) && g.members[j].id != g.primary(1, 0))
        .unwrap();
    let ctx = r.c.nodes[i].ctx.clone();
    let mut state = r.c.nodes[i].state.clone();
    let effects = state.step(&ctx, NOW, Input::Timer(Timer::View(1, 0)));
    let persisted = position(
        &effects,
        |e| matches!(e, Effect::Persist(Record::Skip(v)) if v.body.view == 0),
    )
    .unwrap();
    let sent = position(&effects, |e| {
        matches!(e, Effect::Send { to, msg: Message::Skip(v, ..) } if *to == g.primary(1, 1) && v.body.view == 0)
    })
    .expect("the skip vote for view 0 goes to the primary of view 1");
    assert!(persisted < sent);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Broadcast(_))));
    // It is not the primary of view 1: skip votes of others for view 0 do not move it.
    let others: Vec<usize> = (0..4).filter(|&j| j != i).collect();
    for &j in &others {
        state.step(&ctx, NOW, r.skip(j));
    }
    assert_eq!(state.view, 0);
    assert_eq!(state.skip.skips.get(&0).map(|m| m.len()), Some(1));
    // The timer fires again: the primary of view 1 may be down, so the node also votes to
    // skip view 1, to the primary of view 2, and re-sends its vote for view 0.
    assert_eq!(state.next_skip_view(ctx.me), 1);
    let effects = state.step(&ctx, NOW, Input::Timer(Timer::View(1, 0)));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Persist(Record::Skip(v)) if v.body.view == 1))
    );
    for (view, to) in [(0, g.primary(1, 1)), (1, g.primary(1, 2))] {
        assert!(
            to == g.members[i].id
                || effects.iter().any(|e| matches!(e, Effect::Send { to: t, msg: Message::Skip(v, ..) } if *t == to && v.body.view == view)),
            "skip vote for view {view} to {to:?}"
        );
    }
    assert_eq!(state.view, 0);
    // Having voted to skip views 0 and 1, it endorses in neither.
    assert!(!r.endorses_the_proposal(&ctx, &mut state));
    assert_eq!(state.next_skip_view(ctx.me), 2);
}

/// MAX_VIEW: escalation stops at the last view a skip certificate can open, and each firing
/// re-sends two votes at most (the current view's and the latest).
#[test]
fn escalating_skip_votes_stop_below_max_view() {
    let r = Rig::at_proposal();
    let (_, ctx, mut state) = r.verifier();
    let mut sent = 0;
    for _ in 0..MAX_VIEW + 8 {
        let effects = state.step(&ctx, NOW, Input::Timer(Timer::View(1, 0)));
        sent = effects
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::Send {
                        msg: Message::Skip(..),
                        ..
                    }
                )
            })
            .count();
        assert!(sent <= 2);
    }
    assert_eq!(state.view, 0);
    assert_eq!(state.next_skip_view(ctx.me), MAX_VIEW - 1);
    assert_eq!(
        state.skip.skips.keys().next_back().copied(),
        Some(MAX_VIEW - 1)
    );
    assert_eq!(state.skip.skips.len() as u32, MAX_VIEW);
    assert!(sent >= 1);
}

#[test]
fn a_node_acts_on_nothing_of_a_view_it_has_left() {
    let r = Rig::at_proposal();
    let p = r.proposal();
    let (i, ctx, mut state) = r.verifier();
    let mut log = r.c.nodes[i].store.records.clone();
    let mut step = |state: &mut NodeState, input: Input| {
        let effects = state.step(&ctx, NOW, input);
        log.extend(persisted(&effects));
        effects
    };
    step(
        &mut state,
        r.by_primary(Message::Proposal(Box::new(p.clone()))),
    );
    let others: Vec<usize> = (0..4).filter(|&j| j != i && j != r.primary()).collect();
    step(&mut state, r.vote(VoteKind::Endorse, others[0], &p));
    assert!(state.ballot.votes.keys().any(|k| k.0.view == 0));
    assert!(state.ballot.seen.keys().any(|k| k.1.view == 0));

    // Skip votes from the node itself and two others open view 1.
    step(&mut state, Input::Timer(Timer::View(1, 0)));
    for &j in &others {
        step(&mut state, r.skip(j));
    }
    assert_eq!(state.view, 1);
    // The tallies, the votes noted for equivocation and the skip votes of view 0 are gone.
    assert!(state.ballot.votes.keys().all(|k| k.0.view >= 1));
    assert!(state.ballot.seen.keys().all(|k| k.1.view >= 1));
    assert!(state.skip.skips.keys().all(|&v| v >= 1));

    // View 0's proposal, votes and endorsement certificate change nothing and send nothing,
    // even when they would have completed a certificate.
    let before = state.clone();
    let certificate = r.endorsement_certificate(&p, &[r.primary(), others[0], others[1]]);
    for input in [
        r.by_primary(Message::Proposal(Box::new(p.clone()))),
        r.vote(VoteKind::Endorse, others[1], &p),
        r.vote(VoteKind::Commit, others[0], &p),
        r.by_primary(Message::Endorsed(Box::new(certificate))),
    ] {
        let effects = step(&mut state, input);
        assert!(effects.is_empty(), "{effects:?}");
        assert!(state == before);
    }

    // A restart forgets them too, though its own view-0 votes stay in its log (S3).
    assert!(
        log.iter()
            .any(|rec| matches!(rec, Record::Vote(v) if v.body.view == 0))
    );
    let restored = NodeState::restore(&ctx, &r.c.nodes[i].store.blocks, log);
    assert_eq!(restored.view, 1);
    assert_eq!(restored.ballot.votes, state.ballot.votes);
    assert!(restored.ballot.seen.keys().all(|k| k.1.view >= 1));
    assert_eq!(restored.skip.skips, state.skip.skips);
}

/// The revision the primary broadcast among `effects`, if any.
/// Member `from`'s message `msg`, as a node receives it.
fn message(from: NodeId, msg: Message) -> Input {
    Input::Message { from, msg }
}

/// The primary's effects of `input` (an objection it accepts) followed by those of its
/// `Revise` timer: the other members have not answered its current revision, so it revises
/// when its wait ends (spec 2.6).
fn step_and_revise(ctx: &Context, state: &mut NodeState, input: Input) -> Vec<Effect> {
    let mut e = state.step(ctx, NOW, input).to_vec();
    if let Some((view, revision)) = state.round.own.as_ref().map(|p| p.round().into()) {
        let timer = Timer::Revise(state.height, view, revision);
        e.extend(state.step(ctx, NOW, Input::Timer(timer)));
    }
    e
}

fn proposed(effects: &[Effect]) -> Option<Proposal> {
    effects.iter().find_map(|e| match e {
        Effect::Broadcast(Message::Proposal(p)) => Some((**p).clone()),
        _ => None,
    })
}

#[test]
fn a_locked_primary_proposes_nothing_new_in_its_view() {
    let r = Rig::at_proposal_zonal();
    let (i, ctx, mut state) = r.primary_node();
    let p = r.proposal();
    let others: Vec<usize> = (0..4).filter(|&j| j != i).collect();
    let objection = r.security_objection(others[0], &p);
    // Unlocked, the primary takes the objection's new cut into revision 1.
    let mut unlocked = state.clone();
    let e = step_and_revise(&ctx, &mut unlocked, objection.clone());
    assert_eq!(proposed(&e).map(|p| p.round().into()), Some((0, 1)));
    // Locked, a late objection is neither logged nor answered: the quorum that endorsed
    // revision 0 may already be committing it (S2).
    for &j in &others {
        state.step(&ctx, NOW, r.vote(VoteKind::Endorse, j, &p));
    }
    assert!(state.ballot.lock.is_some());
    assert_ignored(&ctx, &mut state, objection);
}

/// V10: a missing-batch objection moves the primary only with the objector's own batch of the
/// height: another home's batch, or the objector's batch for another height, is ignored.
#[test]
fn a_primary_is_not_moved_by_an_objection_carrying_a_batch_not_its_objectors_own() {
    let r = Rig::at_proposal();
    let (i, ctx, mut state) = r.primary_node();
    let p = r.proposal();
    let j = (i + 1) % 4;
    let objector = r.s.genesis.members[j].id;
    let another_homes = p
        .body
        .process
        .batches
        .iter()
        .find(|b| b.body.home != objector)
        .expect("the proposal carries another home's batch")
        .clone();
    let later_height = Signed::sign(
        tieline_core::market::BidBatch {
            chain_id: r.s.genesis.chain_id(),
            height: 2,
            home: objector,
            bids: Vec::new(),
            received: Vec::new(),
            changes: Vec::new(),
        },
        &r.s.members[j],
    );
    for batch in [another_homes, later_height] {
        let (view, revision) = p.round().into();
        let o = Objection {
            chain_id: r.s.genesis.chain_id(),
            height: 1,
            view,
            revision,
            block: p.stamp.body.block,
            objector,
            reason: ObjectionReason::MissingBatch {
                batch: batch.body_digest(),
            },
        };
        let input = Input::Message {
            from: objector,
            msg: Message::Objection(
                Box::new(Signed::sign(o, &r.s.members[j])),
                Some(Box::new(batch)),
            ),
        };
        assert_ignored(&ctx, &mut state, input);
    }
}

/// V5, V2: a primary resolves the appeals it recorded in earlier revisions again in each
/// revision. An omitted bid is upheld while its home's batch is missing; once the home's
/// missing-batch objection brings the batch in, the batch carries the bid and the appeal is
/// rejected as already included, which is what every verifier and the audit recompute, so the
/// revision is endorsed (the model checker's `late-appeal` found the revision that kept the
/// stale resolution objected to as invalid, and the view lost).
#[test]
fn an_appeal_upheld_while_its_batch_was_missing_is_resolved_again_when_the_batch_arrives() {
    let r = Rig::at_proposal();
    let (i, ctx, mut primary) = r.primary_node();
    let j = (i + 1) % 4;
    let home = r.s.genesis.members[j].id;
    // The home's batch has not reached the primary.
    let batch = primary
        .intake
        .batches
        .remove(&home)
        .expect("every batch arrived");
    let bid = batch.body.bids[0].clone();
    let participant =
        r.s.genesis
            .participants
            .iter()
            .position(|p| p.id == bid.body.participant)
            .unwrap();
    let receipt = Signed::sign(
        tieline_core::market::BidReceipt {
            chain_id: r.s.genesis.chain_id(),
            bid: bid.body.id(),
            participant: bid.body.participant,
            home,
            height: 1,
            received_at: NOW,
        },
        &r.s.members[j],
    );
    let appeal = Signed::sign(
        Appeal {
            chain_id: r.s.genesis.chain_id(),
            participant: bid.body.participant,
            height: 1,
            claim: AppealClaim::Omitted {
                bid: Box::new(bid.clone()),
                receipt,
            },
        },
        &r.s.participants[participant],
    );
    let appeal = Message::Appeal {
        appeal: Box::new(appeal),
        via: home,
    };
    let e = primary.step(&ctx, NOW, message(home, appeal));
    let upheld = proposed(&e).expect("the appeal is recorded in revision 1");
    assert_eq!(upheld.round(), (0, 1));
    assert!(
        upheld
            .body
            .process
            .batches
            .iter()
            .all(|b| b.body.home != home),
        "revision 1 lacks the home's batch"
    );
    assert_eq!(
        upheld.body.process.appeals[0].resolution,
        AppealResolution::Upheld { revision: 1 }
    );
    // The home objects to its missing batch, attaching it.
    let o = Objection {
        chain_id: r.s.genesis.chain_id(),
        height: 1,
        view: 0,
        revision: 1,
        block: upheld.stamp.body.block,
        objector: home,
        reason: ObjectionReason::MissingBatch {
            batch: batch.body_digest(),
        },
    };
    let objection = Message::Objection(
        Box::new(Signed::sign(o, &r.s.members[j])),
        Some(Box::new(batch)),
    );
    let e = step_and_revise(&ctx, &mut primary, message(home, objection));
    let revised = proposed(&e).expect("the objection brings revision 2");
    assert_eq!(revised.round(), (0, 2));
    assert_eq!(
        revised.body.process.appeals[0].resolution,
        AppealResolution::RejectedAlreadyIncluded
    );
    // The home, holding every batch, endorses revision 2.
    let (_, vctx, mut verifier) = r.verifier();
    assert_eq!(vctx.me, home);
    let e = verifier.step(
        &vctx,
        NOW,
        r.by_primary(Message::Proposal(Box::new(revised))),
    );
    assert!(
        e.iter().any(|x| matches!(x, Effect::Send { msg: Message::Vote(v), .. } if v.body.kind == VoteKind::Endorse)),
        "{e:?}"
    );
}

/// L1, 2.5: the primary of a later view proposes as soon as it holds the batches the skip
/// certificate reports; it does not wait for every member's batch, as a view-0 primary does
/// (a home it lacks may be the one that failed). Here the certificate reports a batch the new
/// primary lacks, so it cannot propose on entering the view; when that batch arrives it
/// proposes, without the batch of another home that no vote reported (a cargo-mutants
/// survivor: a primary of a later view that waited for every batch was caught by no test).
#[test]
fn a_primary_of_a_later_view_proposes_once_it_holds_the_reported_batches() {
    let r = Rig::at_proposal();
    let next = r.index(r.s.genesis.primary(1, 1));
    let ctx = r.c.nodes[next].ctx.clone();
    let mut state = r.c.nodes[next].state.clone();
    let others: Vec<usize> = (0..4).filter(|&j| j != next).collect();
    let (reported, unreported) = (
        r.s.genesis.members[others[0]].id,
        r.s.genesis.members[others[1]].id,
    );
    // Two other homes' batches have not reached it.
    let late = state
        .intake
        .batches
        .remove(&reported)
        .expect("every batch arrived");
    state
        .intake
        .batches
        .remove(&unreported)
        .expect("every batch arrived");
    // A quorum of the others votes to skip view 0, each reporting that it holds the first
    // home's batch (without attaching it).
    for &j in &others {
        let v = SkipVote {
            chain_id: r.s.genesis.chain_id(),
            height: 1,
            view: 0,
            voter: r.s.genesis.members[j].id,
            lock: None,
            held: vec![reported],
        };
        let voter = v.voter;
        let skip = Message::Skip(Box::new(Signed::sign(v, &r.s.members[j])), None, Vec::new());
        let e = state.step(&ctx, NOW, message(voter, skip));
        assert!(proposed(&e).is_none(), "{e:?}");
    }
    assert_eq!(state.view, 1);
    // The reported batch arrives: it proposes now, without the unreported one.
    let e = state.step(&ctx, NOW, message(reported, Message::Batch(late)));
    let p = proposed(&e).expect("the view-1 primary proposes");
    assert_eq!(p.round(), (1, 0));
    let homes: Vec<NodeId> = p.body.process.batches.iter().map(|b| b.body.home).collect();
    assert!(
        homes.contains(&reported) && !homes.contains(&unreported),
        "{homes:?}"
    );
}

/// L4: a message of a later height tells a node it is behind; it asks the sender for the
/// blocks from its own height (a cargo-mutants survivor: within the checker's bounds catch-up
/// always came through a decided block or an answered skip vote).
#[test]
fn a_message_of_a_later_height_makes_the_node_ask_its_sender_for_blocks() {
    let r = Rig::at_proposal();
    let (_, ctx, mut state) = r.verifier();
    let mut p = r.proposal();
    p.header.height = 2;
    p.stamp.body.height = 2;
    let sender = p.stamp.body.voter;
    let e = state.step(&ctx, NOW, r.by_primary(Message::Proposal(Box::new(p))));
    assert!(
        e.iter().any(|x| matches!(x, Effect::Send { to, msg: Message::SyncRequest { from: 1 } } if *to == sender)),
        "{e:?}"
    );
}

/// N2, N3: a batch for the next height that arrives before the node moves on is kept and
/// logged, so the node has it when that height opens (a cargo-mutants survivor: the checker's
/// bounds end at the height after the one they decide).
#[test]
fn a_batch_for_the_next_height_is_kept_and_logged() {
    let r = Rig::at_proposal();
    let (i, ctx, mut state) = r.verifier();
    let j = (i + 1) % 4;
    let home = r.s.genesis.members[j].id;
    let early = Signed::sign(
        tieline_core::market::BidBatch {
            chain_id: r.s.genesis.chain_id(),
            height: 2,
            home,
            bids: Vec::new(),
            received: Vec::new(),
            changes: Vec::new(),
        },
        &r.s.members[j],
    );
    let e = state.step(
        &ctx,
        NOW,
        Input::Message {
            from: home,
            msg: Message::Batch(early.clone()),
        },
    );
    assert_eq!(state.intake.early_batches.get(&home), Some(&early));
    assert!(persisted(&e).any(|rec| matches!(rec, Record::Batch(b) if b == early)));
}

/// 2.6: an objection to an earlier revision of the view, which reached the primary after it
/// had revised, is answered: its cut enters the next revision once the wait for answers to the
/// current revision ends. One naming a block the primary did not propose moves nothing.
#[test]
fn an_objection_to_an_earlier_revision_of_the_view_is_answered() {
    let r = Rig::at_proposal_zonal();
    let (i, ctx, mut primary) = r.primary_node();
    let p0 = r.proposal();
    let (a, b) = ((i + 1) % 4, (i + 2) % 4);
    let e = step_and_revise(&ctx, &mut primary, r.security_objection_labelled(a, &p0, 1));
    let p1 = proposed(&e).expect("revision 1");
    assert_eq!(p1.round(), (0, 1));
    // An objection to revision 0 that names another block is not the primary's revision 0.
    let mut forged = p0.clone();
    forged.stamp.body.block = p1.stamp.body.block;
    assert_ignored(
        &ctx,
        &mut primary,
        r.security_objection_labelled(b, &forged, 2),
    );
    // Member b's objection to revision 0 arrives now, with a cut revision 1 lacks: it is
    // logged, and revision 2 carries it when the wait for answers to revision 1 ends.
    let e = primary.step(&ctx, NOW, r.security_objection_labelled(b, &p0, 2));
    let objector = r.s.genesis.members[b].id;
    assert!(persisted(&e).any(|rec| matches!(
        rec,
        Record::Objection(o, _) if o.body.objector == objector && o.body.revision == 0
    )));
    assert!(
        proposed(&e).is_none(),
        "members have not answered revision 1"
    );
    let e = primary.step(&ctx, NOW, Input::Timer(Timer::Revise(1, 0, 1)));
    let p2 = proposed(&e).expect("revision 2");
    assert_eq!(p2.round(), (0, 2));
    let labels: Vec<u32> = p2
        .body
        .process
        .clearing
        .cuts
        .iter()
        .map(|c| c.label)
        .collect();
    assert_eq!(labels, vec![1, 2]);
}

impl Rig {
    /// The primary's context and state, and a verifier's security objection to its proposal
    /// (as the input that delivers it, and itself).
    fn primary_and_objection(&self) -> (Context, NodeState, Input, Signed<Objection>) {
        let (i, ctx, state) = self.primary_node();
        let objection = self.security_objection((i + 1) % 4, &self.proposal());
        let Input::Message {
            msg: Message::Objection(o, _),
            ..
        } = &objection
        else {
            unreachable!()
        };
        let o = (**o).clone();
        (ctx, state, objection, o)
    }
}

/// L3, MAX_OBJECTIONS: a primary takes at most `MAX_OBJECTIONS` objections into the negotiation
/// of a view; one more is neither logged nor answered with a revision.
#[test]
fn a_primary_takes_objections_up_to_max_objections() {
    let r = Rig::at_proposal_zonal();
    let (ctx, mut state, objection, o) = r.primary_and_objection();
    // Objections accepted earlier in the view: the count is what bounds them (a copy of the
    // objection itself would add nothing).
    let mut filler = o.clone();
    filler.body.revision += 1;
    state
        .round
        .negotiation
        .objections
        .resize(MAX_OBJECTIONS - 1, filler.clone());
    // Below the bound the objection's new cut is taken into revision 1.
    let mut below = state.clone();
    let e = step_and_revise(&ctx, &mut below, objection.clone());
    assert_eq!(proposed(&e).map(|p| p.round().into()), Some((0, 1)));
    // At the bound it changes nothing.
    state.round.negotiation.objections.push(filler);
    assert_ignored(&ctx, &mut state, objection);
}

/// D25, MAX_NEGOTIATION_BYTES: a primary takes no objection that would take the objections it
/// accepted in the view past the negotiation's bytes, as none past `MAX_OBJECTIONS`.
#[test]
fn a_primary_takes_objections_up_to_the_negotiation_bytes() {
    let r = Rig::at_proposal_zonal();
    let (ctx, mut state, objection, o) = r.primary_and_objection();
    let len = tieline_core::encoding::encoded_len(&o);
    // Exactly at the bound with this objection: taken into revision 1, and counted.
    let mut at = state.clone();
    at.round.negotiation.bytes = MAX_NEGOTIATION_BYTES - len;
    let e = step_and_revise(&ctx, &mut at, objection.clone());
    assert_eq!(proposed(&e).map(|p| p.round().into()), Some((0, 1)));
    assert_eq!(at.round.negotiation.bytes, MAX_NEGOTIATION_BYTES);
    // One byte past it: changes nothing.
    state.round.negotiation.bytes = MAX_NEGOTIATION_BYTES - len + 1;
    assert_ignored(&ctx, &mut state, objection);
}

/// L3, MAX_FALLBACK_LEVELS: negotiation ends at `max_revisions + MAX_FALLBACK_LEVELS`. A primary
/// answers an objection to the revision below that bound, and none to a revision at it.
#[test]
fn negotiation_ends_at_the_last_fallback_level() {
    let r = Rig::at_proposal_zonal();
    let (i, ctx, primary) = r.primary_node();
    let last = r.s.genesis.max_revisions + MAX_FALLBACK_LEVELS;
    // The primary's current proposal, as if negotiation had reached `revision`; objections
    // refer to it by round and digest.
    let at = |revision: u32| {
        let mut state = primary.clone();
        let own = state.round.own.as_mut().expect("the primary proposed");
        own.stamp.body.revision = revision;
        let p = own.clone();
        state.ballot.voted.insert(
            VoteSlot::new(VoteKind::Propose, 0, revision),
            p.stamp.body.block,
        );
        (state, r.security_objection((i + 1) % 4, &p))
    };
    let (mut below, objection) = at(last - 1);
    let e = below.step(&ctx, NOW, objection);
    assert!(persisted(&e).any(|rec| matches!(rec, Record::Objection(..))));
    let (mut state, objection) = at(last);
    assert_ignored(&ctx, &mut state, objection);
}

#[test]
fn a_restarted_node_acts_on_nothing_of_a_revision_it_has_moved_past() {
    let r = Rig::at_proposal_zonal();
    let p0 = r.proposal();
    // The primary's revision 1, after another member's objection.
    let objector = (r.primary() + 2) % 4;
    let mut primary = r.c.nodes[r.primary()].state.clone();
    let e = step_and_revise(
        &r.c.nodes[r.primary()].ctx,
        &mut primary,
        r.security_objection(objector, &p0),
    );
    let p1 = proposed(&e).expect("revision 1");
    // The verifier endorses revision 0, then revision 1, and logs both votes.
    let (i, ctx, mut state) = r.verifier();
    assert_ne!(i, objector);
    let mut log = r.c.nodes[i].store.records.clone();
    for p in [&p0, &p1] {
        let e = state.step(
            &ctx,
            NOW,
            r.by_primary(Message::Proposal(Box::new(p.clone()))),
        );
        log.extend(persisted(&e));
    }
    assert!(
        state
            .ballot
            .voted
            .contains_key(&VoteSlot::new(VoteKind::Endorse, 0, 1))
    );
    // Running or restarted from its log, revision 0's proposal and certificate (a duplicate
    // and a late relay) move it back to nothing: no vote, no lock. Before this rule a
    // restarted node, which holds no proposal in memory, took revision 0 again, locked on it
    // and voted to commit it beside its endorsement of revision 1 (S2).
    let restored = NodeState::restore(&ctx, &r.c.nodes[i].store.blocks, log);
    for mut node in [state, restored] {
        let before = node.clone();
        for input in [
            r.by_primary(Message::Proposal(Box::new(p0.clone()))),
            r.by_primary(Message::Endorsed(Box::new(
                r.endorsement_certificate(&p0, &[0, 1, 2, 3]),
            ))),
        ] {
            let e = node.step(&ctx, NOW, input);
            assert!(
                !e.iter()
                    .any(|e| matches!(e, Effect::Persist(_) | Effect::Send { .. })),
                "{e:?}"
            );
        }
        assert!(node.ballot.lock.is_none());
        assert_eq!(node.ballot.voted, before.ballot.voted);
    }
}

#[test]
fn sync_requests_are_served_and_only_valid_blocks_are_decided() {
    let r = Rig::at_proposal();
    let mut c = r.c;
    assert!(c.run_until(50_000, |c| {
        c.nodes.iter().all(|n| !n.store.blocks.is_empty())
    }));
    let block = c.nodes[0].store.blocks[0].clone();
    let ctx = c.nodes[1].ctx.clone();
    let mut ahead = c.nodes[1].state.clone();
    let effects = ahead.step(
        &ctx,
        NOW,
        Input::Message {
            from: NodeId(1),
            msg: Message::SyncRequest { from: 1 },
        },
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::ServeBlocks {
            to: NodeId(1),
            from: 1,
            to_height: 1
        }
    )));

    // A node that saw nothing of height 1 catches up from the committed block.
    let fresh_ctx = c.nodes[2].ctx.clone();
    let mut fresh = NodeState::new();
    let mut forged = block.clone();
    forged.body.trades[0].quantity.0 += 1;
    let none = fresh.step(
        &fresh_ctx,
        NOW,
        Input::Message {
            from: NodeId(1),
            msg: Message::SyncResponse(vec![forged]),
        },
    );
    assert!(!none.iter().any(|e| matches!(e, Effect::Decide(_))));
    assert_eq!(fresh.height, 1);
    let effects = fresh.step(
        &fresh_ctx,
        NOW,
        Input::Message {
            from: NodeId(1),
            msg: Message::SyncResponse(vec![block.clone()]),
        },
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Decide(b) if b.digest() == block.digest()))
    );
    assert_eq!(fresh.height, 2);
    // A message for a later height makes a node ask for the blocks it lacks.
    let mut behind = NodeState::new();
    let batch = c.nodes[0].state.intake.batches.values().next().cloned();
    if let Some(b) = batch {
        let from = b.body.home;
        let effects = behind.step(
            &fresh_ctx,
            NOW,
            Input::Message {
                from,
                msg: Message::Batch(b),
            },
        );
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Send {
                msg: Message::SyncRequest { from: 1 },
                ..
            }
        )));
    }
}

/// S4, MAX_EVIDENCE: a node keeps evidence of every equivocation it sees up to the bound and no
/// more; each new piece is reported once (`Effect::Evidence`).
#[test]
fn equivocation_evidence_is_kept_up_to_max_evidence() {
    let r = Rig::at_proposal();
    let (_, ctx, mut state) = r.verifier();
    let voter = (r.primary() + 2) % 4;
    let mut reported = 0;
    for revision in 0..=MAX_EVIDENCE as u32 {
        for block in [1u8, 2] {
            let v = Vote {
                kind: VoteKind::Endorse,
                chain_id: r.s.genesis.chain_id(),
                height: 1,
                view: 0,
                revision,
                block: Digest([block; 32]),
                voter: r.s.genesis.members[voter].id,
            };
            let effects = state.step(
                &ctx,
                NOW,
                Input::Message {
                    from: v.voter,
                    msg: Message::Vote(Signed::sign(v, &r.s.members[voter])),
                },
            );
            reported += effects
                .iter()
                .filter(|e| matches!(e, Effect::Evidence(_)))
                .count();
        }
    }
    assert_eq!(state.ballot.evidence.len(), MAX_EVIDENCE);
    assert_eq!(reported, MAX_EVIDENCE);
    assert!(
        state
            .ballot
            .evidence
            .iter()
            .all(|e| e.offender() == r.s.genesis.members[voter].id)
    );
}

/// V5, MAX_APPEALS: a node keeps at most `MAX_APPEALS` forwarded appeals for a height; one more
/// is neither logged nor kept.
#[test]
fn forwarded_appeals_are_kept_up_to_max_appeals() {
    let r = Rig::at_proposal();
    let (_, ctx, mut state) = r.primary_node();
    let participant = &r.s.genesis.participants[0];
    let appeal = |bid: u8| {
        Signed::sign(
            Appeal {
                chain_id: r.s.genesis.chain_id(),
                participant: participant.id,
                height: 1,
                claim: AppealClaim::Misallocated {
                    bid: Digest([bid; 32]),
                },
            },
            &r.s.participants[0],
        )
    };
    let forward = |state: &mut NodeState, a: Signed<Appeal>| {
        state.step(
            &ctx,
            NOW,
            Input::Message {
                from: participant.home,
                msg: Message::Appeal {
                    appeal: Box::new(a),
                    via: participant.home,
                },
            },
        )
    };
    let kept = forward(&mut state, appeal(1));
    assert!(persisted(&kept).any(|rec| matches!(rec, Record::Appeal { .. })));
    let filler = state.appeals.held[0].clone();
    state.appeals.held.resize(MAX_APPEALS, filler);
    let refused = forward(&mut state, appeal(2));
    assert!(persisted(&refused).next().is_none(), "{refused:?}");
    assert_eq!(state.appeals.held.len(), MAX_APPEALS);
}

/// L4, MAX_SYNC_BLOCKS: a sync response is a bounded chunk. A node far ahead serves at most
/// `MAX_SYNC_BLOCKS` blocks from the height asked for, and up to its last block when fewer
/// remain; a request for a height it has not decided is not answered.
#[test]
fn sync_responses_are_chunks_of_at_most_max_sync_blocks() {
    let r = Rig::at_proposal();
    let ctx = r.c.nodes[1].ctx.clone();
    let mut ahead = NodeState::new();
    ahead.height = 2 * MAX_SYNC_BLOCKS + 4;
    let served = |ahead: &mut NodeState, first: u64| {
        ahead
            .step(
                &ctx,
                NOW,
                Input::Message {
                    from: NodeId(1),
                    msg: Message::SyncRequest { from: first },
                },
            )
            .into_iter()
            .find_map(|e| match e {
                Effect::ServeBlocks {
                    from, to_height, ..
                } => Some((from, to_height)),
                _ => None,
            })
    };
    assert_eq!(served(&mut ahead, 1), Some((1, MAX_SYNC_BLOCKS)));
    assert_eq!(
        served(&mut ahead, MAX_SYNC_BLOCKS + 1),
        Some((MAX_SYNC_BLOCKS + 1, 2 * MAX_SYNC_BLOCKS))
    );
    assert_eq!(
        served(&mut ahead, 2 * MAX_SYNC_BLOCKS + 1),
        Some((2 * MAX_SYNC_BLOCKS + 1, 2 * MAX_SYNC_BLOCKS + 3))
    );
    assert_eq!(served(&mut ahead, 2 * MAX_SYNC_BLOCKS + 4), None);
}

#[test]
fn restore_rebuilds_pool_votes_lock_and_view_from_the_log() {
    let r = Rig::at_proposal();
    let (i, ctx, mut state) = r.verifier();
    let p = r.proposal();
    let mut log: Vec<Record> = r.c.nodes[i].store.records.clone();
    let run = |state: &mut NodeState, input: Input, log: &mut Vec<Record>| {
        log.extend(persisted(&state.step(&ctx, NOW, input)));
    };
    run(
        &mut state,
        r.by_primary(Message::Proposal(Box::new(p.clone()))),
        &mut log,
    );
    let others: Vec<usize> = (0..4).filter(|&j| j != i).collect();
    for &j in &others {
        run(&mut state, r.vote(VoteKind::Endorse, j, &p), &mut log);
    }
    assert!(state.ballot.lock.is_some());
    let restored = NodeState::restore(&ctx, [], log);
    assert_eq!(restored.ballot.lock, state.ballot.lock);
    assert_eq!(restored.ballot.voted, state.ballot.voted);
    assert_eq!(restored.intake.pool, state.intake.pool);
    assert_eq!(restored.intake.batches, state.intake.batches);
    assert!(restored.intake.gate_closed);
    assert_eq!(restored.height, 1);
}

/// The timer `which` after `effects`, if they arm it.
fn armed(effects: &[Effect], which: Timer) -> Option<u64> {
    effects.iter().find_map(|e| match e {
        Effect::SetTimer { timer, after_ms } if *timer == which => Some(*after_ms),
        _ => None,
    })
}

/// Member `j`'s signed batch for height 1 of `bids` bids by participants `first` and
/// `first + 1`, received at `NOW`.
fn batch_of(
    s: &SampleConsortium,
    j: usize,
    first: usize,
    bids: u64,
) -> tieline_core::market::SignedBatch {
    let bids: Vec<_> = (0..bids)
        .map(|n| s.bid(first + (n % 2) as usize, 1, n + 1))
        .collect();
    Signed::sign(
        tieline_core::market::BidBatch {
            chain_id: s.genesis.chain_id(),
            height: 1,
            home: s.genesis.members[j].id,
            received: vec![NOW; bids.len()],
            bids,
            changes: Vec::new(),
        },
        &s.members[j],
    )
}

/// A sample cluster of four members, started, with `bids` bids at member `j`'s participants.
fn cluster_with_bids_at(s: &SampleConsortium, j: usize, bids: u64) -> Cluster {
    let open: Vec<Arc<dyn SecurityCheck>> = (0..4)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect();
    let mut c = Cluster::from_sample(s, open);
    c.start();
    for n in 0..bids {
        c.submit(s.bid(2 * j + (n % 2) as usize, 1, n + 1));
    }
    c
}

/// 2.7: a view's timeout grows by `VIEW_ALLOWANCE_US_PER_BID` for every bid of the batches
/// the node holds; a new batch re-arms it from its arrival, but not once the node has voted to
/// skip the view.
#[test]
fn the_view_timer_grows_with_the_rounds_bids() {
    let s = SampleConsortium::new(4, 2);
    let primary = s.genesis.primary(1, 0);
    // A member that is not the primary, with 100 bids at its participants.
    let me = (0..4)
        .find(|&j| s.genesis.members[j].id != primary)
        .unwrap();
    let c = cluster_with_bids_at(&s, me, 100);
    let ctx = c.nodes[me].ctx.clone();
    let mut state = c.nodes[me].state.clone();
    let base = s.genesis.timing.view_timeout_ms;
    let allowance = |bids: u64| bids * VIEW_ALLOWANCE_US_PER_BID / 1_000;
    let view = Timer::View(1, 0);
    let e = state.step(&ctx, NOW, Input::Timer(Timer::Gate(1)));
    assert_eq!(armed(&e, view), Some(base + allowance(100)));
    // Another home's batch of 200 bids.
    let (j, k) = {
        let others: Vec<usize> = (0..4).filter(|&j| j != me).collect();
        (others[0], others[1])
    };
    let from = s.genesis.members[j].id;
    let e = state.step(
        &ctx,
        NOW,
        message(from, Message::Batch(batch_of(&s, j, 2 * j, 200))),
    );
    assert_eq!(armed(&e, view), Some(base + allowance(300)));
    // The same batch again adds nothing and arms nothing.
    let e = state.step(
        &ctx,
        NOW,
        message(from, Message::Batch(batch_of(&s, j, 2 * j, 200))),
    );
    assert_eq!(armed(&e, view), None);
    // Once the node has voted to skip the view, a late batch does not hold the skip back.
    let e = state.step(&ctx, NOW, Input::Timer(view));
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Persist(Record::Skip(_))))
    );
    let late = s.genesis.members[k].id;
    let e = state.step(
        &ctx,
        NOW,
        message(late, Message::Batch(batch_of(&s, k, 2 * k, 10))),
    );
    assert!(state.intake.batches.contains_key(&late));
    assert_eq!(armed(&e, view), None);
}

/// 2.5: the view-0 primary's wait for missing batches grows by
/// `BATCH_WAIT_ALLOWANCE_US_PER_BID` for every bid of the batches it holds, and starts again
/// at each new batch, until every batch is in and it proposes.
#[test]
fn the_primarys_batch_wait_grows_with_the_rounds_bids() {
    let s = SampleConsortium::new(4, 2);
    let primary = s.genesis.primary(1, 0);
    let p = (0..4)
        .find(|&j| s.genesis.members[j].id == primary)
        .unwrap();
    let c = cluster_with_bids_at(&s, p, 100);
    let ctx = c.nodes[p].ctx.clone();
    let mut state = c.nodes[p].state.clone();
    let base = s.genesis.timing.batch_wait_ms;
    let allowance = |bids: u64| bids * BATCH_WAIT_ALLOWANCE_US_PER_BID / 1_000;
    let wait = Timer::BatchWait(1);
    let e = state.step(&ctx, NOW, Input::Timer(Timer::Gate(1)));
    assert_eq!(armed(&e, wait), Some(base + allowance(100)));
    let others: Vec<usize> = (0..4).filter(|&j| j != p).collect();
    let mut held = 100;
    for (n, &j) in others.iter().enumerate() {
        let bids = 200 * (n as u64 + 1);
        held += bids;
        let from = s.genesis.members[j].id;
        let e = state.step(
            &ctx,
            NOW,
            message(from, Message::Batch(batch_of(&s, j, 2 * j, bids))),
        );
        if n + 1 < others.len() {
            assert_eq!(armed(&e, wait), Some(base + allowance(held)));
            assert!(proposed(&e).is_none());
        } else {
            // The last batch is in: the primary proposes and waits no more.
            assert!(proposed(&e).is_some());
            assert_eq!(armed(&e, wait), None);
        }
    }
}
