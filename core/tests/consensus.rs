//! The consensus state machine in an in-memory cluster of four members with real ed25519 keys
//! (spec part 2). Each test names the property it checks.

use std::collections::BTreeSet;
use std::sync::Arc;

use tieline_core::audit::audit_chain;
use tieline_core::block::{
    Appeal, AppealClaim, AppealResolution, Block, RejectionReason, VoteKind,
};
use tieline_core::clearing::{COEFFICIENT_SCALE, Cut, CutTerm, CutVariable};
use tieline_core::consensus::sim::{Cluster, Event};
use tieline_core::consensus::{
    ConstraintList, Effect, Input, Message, NoGridModel, NodeState, Record, Reply, SecurityCheck,
};
use tieline_core::crypto::{Ed25519, Signed};
use tieline_core::genesis::ClearingRule;
use tieline_core::market::{BidError, BidReceipt, BidStep, Side, SignedBid};
use tieline_core::sample::{SampleConsortium, sample_product};
use tieline_core::units::{NodeId, Price, Quantity, TieLineId, Timestamp};

fn open() -> Vec<Arc<dyn SecurityCheck>> {
    open_for(4)
}

fn open_for(members: usize) -> Vec<Arc<dyn SecurityCheck>> {
    (0..members)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect()
}

fn mwh(x: i64) -> Quantity {
    Quantity(x * Quantity::SCALE)
}

fn price(x: i64) -> Price {
    Price(x * Price::SCALE)
}

fn step(p: i64, q: i64) -> BidStep {
    BidStep {
        price: price(p),
        quantity: mwh(q),
    }
}

/// Every participant of the sample whose home node is up bids once for `height`.
fn bid_round(s: &SampleConsortium, c: &mut Cluster, height: u64) {
    for i in 0..s.participants.len() {
        let home = s.genesis.participants[i].home;
        if !c.nodes.iter().any(|n| n.ctx.me == home && n.up) {
            continue;
        }
        let reply = c.submit(s.bid(i, height, height * 1000 + i as u64));
        assert!(matches!(reply, Some(Reply::Receipt(_))), "{reply:?}");
    }
}

fn decided(height: u64) -> impl Fn(&Cluster) -> bool {
    move |c: &Cluster| {
        c.nodes
            .iter()
            .filter(|n| n.up)
            .all(|n| n.store.blocks.len() as u64 >= height)
    }
}

fn assert_agree_and_audit(s: &SampleConsortium, c: &Cluster) {
    assert_eq!(c.disagreement(), None);
    for n in &c.nodes {
        audit_chain(&s.genesis, &Ed25519::default(), &n.store.blocks).unwrap();
    }
}

#[test]
fn rounds_commit_with_rotating_primaries() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    for h in 1..=4 {
        bid_round(&s, &mut c, h);
        assert!(c.run_until(20_000, decided(h)), "height {h} not decided");
    }
    assert_agree_and_audit(&s, &c);
    let chain = &c.nodes[0].store.blocks;
    for (i, b) in chain.iter().enumerate() {
        let h = i as u64 + 1;
        assert_eq!(b.header.view, 0);
        assert_eq!(b.header.primary, s.genesis.primary(h, 0));
        assert!(!b.body.trades.is_empty());
    }
    let primaries: BTreeSet<NodeId> = chain.iter().map(|b| b.header.primary).collect();
    assert_eq!(primaries.len(), 4, "every member served as primary once");
}

#[test]
fn bids_are_receipted_only_when_valid_and_after_persisting() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    let bid = s.bid(0, 1, 7);
    let home = c
        .nodes
        .iter()
        .position(|n| n.ctx.me == s.genesis.participants[0].home)
        .unwrap();
    let effects = c.input(home, Input::Bid(bid.clone()));
    // N1: the bid is in the log before the receipt goes out.
    let persisted = effects
        .iter()
        .position(|e| matches!(e, Effect::Persist(Record::Bid { .. })));
    let replied = effects.iter().position(|e| {
        matches!(
            e,
            Effect::Reply {
                reply: Reply::Receipt(_),
                ..
            }
        )
    });
    assert!(persisted.unwrap() < replied.unwrap());
    let Some(Effect::Reply {
        reply: Reply::Receipt(r),
        ..
    }) = effects.get(replied.unwrap())
    else {
        unreachable!()
    };
    assert_eq!(r.body.height, 1);
    assert_eq!(r.body.bid, bid.body.id());
    assert!(
        r.verify(&Ed25519::default(), &s.genesis.members[home].public_key)
            .is_ok()
    );

    let rejected = |c: &mut Cluster, node: usize, b: SignedBid| match c
        .input(node, Input::Bid(b))
        .into_iter()
        .find_map(|e| match e {
            Effect::Reply {
                reply: Reply::BidRejected { reason, .. },
                ..
            } => Some(reason),
            _ => None,
        }) {
        Some(r) => r,
        None => panic!("not rejected"),
    };
    // V3: the same nonce again is a replay.
    assert!(matches!(
        rejected(&mut c, home, bid.clone()),
        BidError::ReplayedNonce { nonce: 7, .. }
    ));
    // Not this node's participant.
    assert!(matches!(
        rejected(&mut c, (home + 1) % 4, s.bid(0, 1, 8)),
        BidError::WrongHome { .. }
    ));
    // A forged signature.
    let mut forged = s.bid(0, 1, 9);
    forged.body.steps[0].quantity = mwh(99);
    assert!(matches!(
        rejected(&mut c, home, forged),
        BidError::BadSignature(_)
    ));
    // A rule broken.
    let bad = s.bid_with(0, Side::Sell, vec![], 1, 10);
    assert_eq!(rejected(&mut c, home, bad), BidError::NoSteps);
}

/// "The flow over tie line `plus` minus the flow over tie line `minus` is at most `mwh_limit`".
fn net_tie_flow_cut(label: u32, plus: TieLineId, minus: TieLineId, mwh_limit: i64) -> Cut {
    Cut {
        product: sample_product(1),
        label,
        terms: vec![
            CutTerm {
                variable: CutVariable::TieFlow(plus),
                coefficient: COEFFICIENT_SCALE,
            },
            CutTerm {
                variable: CutVariable::TieFlow(minus),
                coefficient: -COEFFICIENT_SCALE,
            },
        ],
        limit: mwh(mwh_limit),
    }
}

/// "Area 3 imports at most `mwh` over its two tie lines": a constraint only area 3's node
/// knows (tie line 2 runs from area 2 into area 3, tie line 3 from area 3 to area 4).
fn import_limit_of_area_3(mwh_limit: i64) -> Cut {
    net_tie_flow_cut(7, TieLineId(2), TieLineId(3), mwh_limit)
}

/// Height 1 with a cheap seller in area 1 and a buyer in area 3 (100 MWh would flow into area
/// 3), negotiated to a commit that every member agrees on and that audits.
fn seller_in_area_1_buyer_in_area_3(
    s: &SampleConsortium,
    security: Vec<Arc<dyn SecurityCheck>>,
) -> Cluster {
    let mut c = Cluster::from_sample(s, security);
    c.start();
    c.submit(s.bid_with(0, Side::Sell, vec![step(10, 100)], 1, 1));
    c.submit(s.bid_with(5, Side::Buy, vec![step(90, 100)], 1, 1));
    assert!(c.run_until(20_000, decided(1)));
    assert_agree_and_audit(s, &c);
    c
}

/// The sample under zonal coupling, where area 3's member alone knows that area 3 imports at
/// most `mwh_limit`; returns the sample, the members' checks and that cut.
fn zonal_with_area_3_import_limit(
    mwh_limit: i64,
) -> (SampleConsortium, Vec<Arc<dyn SecurityCheck>>, Cut) {
    let mut s = SampleConsortium::new(4, 2);
    s.genesis.clearing.rule = ClearingRule::ZonalCoupling;
    let limit = import_limit_of_area_3(mwh_limit);
    let mut security = open();
    security[2] = Arc::new(ConstraintList {
        constraints: vec![limit.clone()],
    });
    (s, security, limit)
}

#[test]
fn objection_leads_to_revision_1_and_a_commit() {
    let (s, security, limit) = zonal_with_area_3_import_limit(40);
    let c = seller_in_area_1_buyer_in_area_3(&s, security);
    let b = &c.nodes[0].store.blocks[0];
    assert_eq!(
        (b.header.view, b.header.revision),
        (0, 1),
        "one revision after the objection"
    );
    let p = &b.body.process;
    assert_eq!(p.objections.len(), 1);
    assert_eq!(p.objections[0].body.objector, NodeId(3));
    assert_eq!(p.objections[0].body.revision, 0);
    assert_eq!(p.clearing.cuts, vec![limit]);
    // The cut binds: area 3 imports its limit (within the clearing's documented tolerance).
    let flow = |t: u16| {
        p.clearing
            .outcome
            .flows
            .iter()
            .find(|f| f.tie_line == TieLineId(t))
            .map_or(0, |f| f.flow.0)
    };
    let import = flow(2) - flow(3);
    assert!((import - mwh(40).0).abs() <= 10, "imports {import} kWh");
}

#[test]
fn crashed_primary_is_skipped_and_its_round_committed_by_the_next() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    c.crash(i0);
    assert!(c.run_until(50_000, decided(1)));
    assert_agree_and_audit(&s, &c);
    let b = &c.longest_chain()[0];
    assert_eq!(b.header.view, 1);
    assert_eq!(b.header.primary, s.genesis.primary(1, 1));
    assert_eq!(b.body.process.skipped, vec![p0]);
    let cert = b.body.process.skip_certificate.as_ref().unwrap();
    assert!(!cert.voters().any(|v| v == p0));
    assert!(!b.body.trades.is_empty());
    // The crashed primary's area sat the view out: none of its trades are in the block.
    let area = s.genesis.member(p0).unwrap().area;
    assert!(b.body.trades.iter().all(|t| t.area != area));
}

#[test]
fn two_crashed_primaries_in_a_row_are_skipped_by_escalating_skip_votes() {
    // Seven members tolerate two faults. The primaries of views 0 and 1 are both down, so
    // nobody gathers the skip votes for view 0: the others' timers fire again and they vote
    // to skip view 1 as well, to the primary of view 2, which opens view 2 and commits.
    let s = SampleConsortium::new(7, 1);
    let mut c = Cluster::from_sample(&s, open_for(7));
    c.start();
    bid_round(&s, &mut c, 1);
    let down: Vec<NodeId> = (0..2).map(|v| s.genesis.primary(1, v)).collect();
    for p in &down {
        let i = c.nodes.iter().position(|n| n.ctx.me == *p).unwrap();
        c.crash(i);
    }
    assert!(c.run_until(200_000, decided(1)));
    assert_agree_and_audit(&s, &c);
    let b = &c.longest_chain()[0];
    assert_eq!(b.header.view, 2);
    assert_eq!(b.header.primary, s.genesis.primary(1, 2));
    assert_eq!(b.body.process.skipped, down);
    let cert = b.body.process.skip_certificate.as_ref().unwrap();
    assert_eq!(cert.view, 1);
    assert!(!cert.voters().any(|v| down.contains(&v)));
}

/// L1, N2: a primary that is down from the start never sends its batch; the next primary
/// proposes with the batches the skip certificate reports instead of waiting for every
/// member's (every other fault-skip test takes its primary down after its gate closed).
#[test]
fn a_primary_down_from_the_start_is_skipped_without_its_batch() {
    let s = SampleConsortium::new(4, 1);
    let mut c = Cluster::from_sample(&s, open());
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    c.crash(i0);
    c.start();
    bid_round(&s, &mut c, 1);
    assert!(c.run_until(50_000, decided(1)));
    assert_eq!(c.disagreement(), None);
    let b = &c.longest_chain()[0];
    assert_eq!(b.header.view, 1);
    assert!(b.body.process.batches.iter().all(|x| x.body.home != p0));
    assert_eq!(b.body.process.batches.len(), 3);
}

#[test]
fn restarted_node_catches_up_and_its_receipted_bids_are_not_lost() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    c.crash(i0);
    assert!(c.run_until(50_000, decided(1)));
    bid_round(&s, &mut c, 2);
    assert!(c.run_until(50_000, decided(2)));
    c.restart(i0);
    assert!(
        c.run_until(50_000, |c| c.nodes[i0].store.blocks.len() >= 2),
        "caught up"
    );
    assert_agree_and_audit(&s, &c);
    // N1: the crashed node's receipted bids of height 1 go into a later block.
    assert!(c.run_until(50_000, decided(3)));
    assert_agree_and_audit(&s, &c);
    let on_chain: BTreeSet<_> = c.nodes[i0]
        .store
        .blocks
        .iter()
        .flat_map(|b| {
            b.body
                .process
                .batches
                .iter()
                .flat_map(|x| x.body.bids.iter().map(|sb| sb.body.id()))
        })
        .collect();
    for id in c.receipted() {
        assert!(
            on_chain.contains(&id),
            "receipted bid {id:?} is on no block"
        );
    }
}

#[test]
fn a_node_that_missed_the_decided_block_catches_up_through_its_skip_vote() {
    // L4: a node never receives the decided block, nor anything of a later height but the
    // blocks it is sent. Its view timer fires, its skip vote for the decided height
    // reaches a node that decided it, and the answer carries the block.
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let deaf = s.genesis.members[3].id;
    assert!(deaf != s.genesis.primary(1, 0) && deaf != s.genesis.primary(1, 1));
    let i = c.nodes.iter().position(|n| n.ctx.me == deaf).unwrap();
    let lost = |e: &Event| match e {
        Event::Deliver { to, msg, .. } if *to == deaf => {
            matches!(msg, Message::Decided(_))
                || (!matches!(msg, Message::SyncResponse(_))
                    && msg.position().is_some_and(|p| p.height > 1))
        }
        _ => false,
    };
    assert!(c.run_filtered(200_000, lost, |c| !c.nodes[i].store.blocks.is_empty()));
    assert_agree_and_audit(&s, &c);
    assert!(c.nodes[i].state.height > 1);
}

#[test]
fn new_primary_reproposes_the_highest_lock() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    // Every commit vote of view 0 is lost: everyone locks, nobody decides, the view times out.
    let lost = |e: &Event| matches!(e, Event::Deliver { msg: Message::Vote(v), .. } if v.body.kind == VoteKind::Commit && v.body.view == 0);
    assert!(c.run_filtered(50_000, lost, decided(1)));
    assert_agree_and_audit(&s, &c);
    let b = &c.nodes[0].store.blocks[0];
    // S2: the block of view 0 was proposed again unchanged and committed in view 1.
    assert_eq!(b.header.view, 0);
    assert_eq!(b.header.primary, s.genesis.primary(1, 0));
    assert_eq!(b.certificate.view, 1);
}

#[test]
fn restarted_primary_never_signs_a_second_proposal_for_its_round() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    assert!(c.run_until(50_000, |c| c.nodes[i0].state.round.proposal.is_some()));
    // Its proposal never leaves: it crashes, restarts and must not sign another for round (0, 0).
    c.events.retain(
        |_, e| !matches!(e, Event::Deliver { from, msg: Message::Proposal(_), .. } if *from == p0),
    );
    c.crash(i0);
    c.advance(10);
    c.restart(i0);
    assert!(c.run_until(100_000, decided(1)));
    assert_agree_and_audit(&s, &c);
    // S3: no evidence of equivocation against anyone, and the block came from view 1.
    assert!(c.evidence.is_empty(), "{:?}", c.evidence);
    assert_eq!(c.nodes[0].store.blocks[0].header.view, 1);
}

#[test]
fn equivocating_primary_is_caught_with_evidence() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    assert!(c.run_until(50_000, |c| c.nodes[i0].state.round.proposal.is_some()));
    // The primary also signs a second proposal for the same round with another timestamp.
    let mut twin = c.nodes[i0].state.round.proposal.clone().unwrap();
    twin.header.timestamp = Timestamp(twin.header.timestamp.0 + 1);
    let mut stamp = twin.stamp.body.clone();
    stamp.block = twin.header.digest();
    twin.stamp = Signed::sign(stamp, &s.members[i0]);
    for j in (0..4).filter(|&j| j != i0) {
        c.input(
            j,
            Input::Message {
                from: p0,
                msg: Message::Proposal(Box::new(twin.clone())),
            },
        );
    }
    assert!(c.run_until(50_000, decided(2)) || c.min_height() >= 1);
    assert_eq!(c.disagreement(), None);
    // S4: the others hold verifiable evidence naming the primary, and it goes on the chain.
    assert!(!c.evidence.is_empty());
    for (_, e) in &c.evidence {
        assert_eq!(e.offender(), p0);
        assert!(e.verify(&s.genesis, &Ed25519::default()));
    }
    bid_round(&s, &mut c, 2);
    assert!(c.run_until(50_000, decided(2)));
    let recorded: usize = c.nodes[0]
        .store
        .blocks
        .iter()
        .map(|b| b.body.process.evidence.len())
        .sum();
    assert!(recorded >= 1, "the evidence is recorded in a block");
    assert_agree_and_audit(&s, &c);
}

/// The home node's receipt for a bid it then left out of its batch (a faulty home node).
fn omitted_bid(s: &SampleConsortium, index: usize) -> (SignedBid, Signed<BidReceipt>) {
    let bid = s.bid_with(index, Side::Sell, vec![step(1, 5)], 1, 77);
    let home = s.genesis.participants[index].home;
    let hi = s.genesis.members.iter().position(|m| m.id == home).unwrap();
    let receipt = Signed::sign(
        BidReceipt {
            chain_id: s.genesis.chain_id(),
            bid: bid.body.id(),
            participant: bid.body.participant,
            home,
            height: 1,
            received_at: Timestamp(0),
        },
        &s.members[hi],
    );
    (bid, receipt)
}

/// The resolutions a block records, in order.
fn resolutions(b: &Block) -> Vec<AppealResolution> {
    b.body
        .process
        .appeals
        .iter()
        .map(|a| a.resolution)
        .collect()
}

/// V5: a receipted bid that an earlier block already carried cannot be appealed as omitted
/// at a later height: the claim is rejected as already included, and nothing is cleared twice.
#[test]
fn an_omitted_claim_for_a_bid_already_on_the_chain_is_rejected_as_included() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    let i = 0;
    let bid = s.bid(i, 1, 1000);
    let Some(Reply::Receipt(receipt)) = c.submit(bid.clone()) else {
        panic!("a receipt");
    };
    for k in 1..s.participants.len() {
        assert!(matches!(
            c.submit(s.bid(k, 1, 1000 + k as u64)),
            Some(Reply::Receipt(_))
        ));
    }
    assert!(c.run_until(50_000, decided(1)));
    assert!(
        c.nodes[0].store.blocks[0]
            .body
            .process
            .batches
            .iter()
            .any(|b| b.body.bids.contains(&bid)),
        "the bid is on the chain at height 1"
    );
    let home = s.genesis.participants[i].home;
    let hi = c.nodes.iter().position(|n| n.ctx.me == home).unwrap();
    let appeal = Signed::sign(
        Appeal {
            chain_id: s.genesis.chain_id(),
            participant: s.genesis.participants[i].id,
            height: 2,
            claim: AppealClaim::Omitted {
                bid: Box::new(bid.clone()),
                receipt,
            },
        },
        &s.participants[i],
    );
    let effects = c.input(hi, Input::Appeal(appeal));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Reply {
            reply: Reply::AppealForwarded { height: 2 },
            ..
        }
    )));
    bid_round(&s, &mut c, 2);
    assert!(c.run_until(50_000, decided(2)));
    assert_agree_and_audit(&s, &c);
    let b = &c.nodes[0].store.blocks[1];
    assert_eq!(
        resolutions(b),
        vec![AppealResolution::RejectedAlreadyIncluded]
    );
    assert!(!b.body.trades.iter().any(|t| t.bid == bid.body.id()));
    assert!(
        !b.body
            .process
            .rejections
            .iter()
            .any(|r| r.bid == bid.body.id()),
        "not a candidate at all: nothing to reject as a duplicate"
    );
}

#[test]
fn appeals_are_resolved_by_the_primary_and_recorded() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    assert!(c.run_until(50_000, |c| c.nodes[i0].state.round.proposal.is_some()));
    // Two of the primary's own participants appeal: one omitted bid (upheld), one
    // misallocation claim about a cleared bid (rejected: the clearing is recomputed by all).
    let mine: Vec<usize> = (0..s.participants.len())
        .filter(|&i| s.genesis.participants[i].home == p0)
        .collect();
    let (bid, receipt) = omitted_bid(&s, mine[0]);
    let appeal = |i: usize, claim| {
        Signed::sign(
            Appeal {
                chain_id: s.genesis.chain_id(),
                participant: s.genesis.participants[i].id,
                height: 1,
                claim,
            },
            &s.participants[i],
        )
    };
    let upheld = appeal(
        mine[0],
        AppealClaim::Omitted {
            bid: Box::new(bid.clone()),
            receipt,
        },
    );
    let cleared_bid = s.bid(mine[1], 1, 1000 + mine[1] as u64).body.id();
    let rejected = appeal(mine[1], AppealClaim::Misallocated { bid: cleared_bid });
    for a in [upheld, rejected] {
        let effects = c.input(i0, Input::Appeal(a));
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Reply {
                reply: Reply::AppealForwarded { height: 1 },
                ..
            }
        )));
    }
    assert!(c.run_until(50_000, decided(1)));
    assert_agree_and_audit(&s, &c);
    let b = &c.nodes[0].store.blocks[0];
    assert!(b.header.revision >= 1);
    let res = resolutions(b);
    assert!(matches!(res[0], AppealResolution::Upheld { revision } if revision >= 1));
    assert_eq!(res[1], AppealResolution::RejectedOutcomeStands);
    assert!(
        b.body.trades.iter().any(|t| t.bid == bid.body.id()),
        "the upheld bid is cleared"
    );
    // The participants learn the recorded resolutions from their home node.
    let told: Vec<&Reply> = c
        .replies
        .iter()
        .filter(|(_, p, _)| {
            mine[..2]
                .iter()
                .any(|&i| s.genesis.participants[i].id == *p)
        })
        .map(|(_, _, r)| r)
        .collect();
    assert!(told.iter().any(|r| matches!(
        r,
        Reply::AppealResolved {
            resolution: AppealResolution::Upheld { .. },
            ..
        }
    )));
    assert!(told.iter().any(|r| matches!(
        r,
        Reply::AppealResolved {
            resolution: AppealResolution::RejectedOutcomeStands,
            ..
        }
    )));
}

/// A test double of an area that objects to every outcome that sells anything in it, with a
/// new cut each time (its sales must shrink by a megawatt-hour): negotiation cannot converge
/// within the revision bound, so the fallback must end it.
#[derive(Debug)]
struct Stubborn {
    area: tieline_core::units::AreaId,
}

impl SecurityCheck for Stubborn {
    fn check(
        &self,
        input: &tieline_core::clearing::ClearingInput<'_>,
        cleared: &tieline_core::clearing::Cleared,
    ) -> Vec<Cut> {
        let sells: Vec<_> = input
            .bids
            .iter()
            .filter(|(_, b)| b.area == self.area && b.side == Side::Sell)
            .collect();
        let sold: i64 = cleared
            .outcome
            .awards
            .iter()
            .filter(|a| sells.iter().any(|(d, _)| *d == a.bid))
            .map(|a| a.quantity.0)
            .sum();
        if sold == 0 {
            return vec![];
        }
        vec![Cut {
            product: sample_product(1),
            label: sold as u32,
            terms: sells
                .iter()
                .map(|(d, _)| CutTerm {
                    variable: CutVariable::Bid(*d),
                    coefficient: COEFFICIENT_SCALE,
                })
                .collect(),
            limit: Quantity(sold - Quantity::SCALE),
        }]
    }
}

#[test]
fn fallback_ends_negotiation_by_cutting_later_bids_first() {
    let mut s = SampleConsortium::new(4, 2);
    s.genesis.clearing.rule = ClearingRule::ZonalCoupling;
    s.genesis.max_revisions = 1;
    let area = s.genesis.members[0].area;
    let mut security = open();
    security[0] = Arc::new(Stubborn { area });
    let mut c = Cluster::from_sample(&s, security);
    c.start();
    // Four sellers in area 1 (two participants, two bids each) and buyers elsewhere.
    for (k, i) in [(0u64, 0usize), (1, 1), (2, 0), (3, 1)] {
        c.submit(s.bid_with(i, Side::Sell, vec![step(10 + k as i64, 10)], 1, 10 + k));
    }
    c.submit(s.bid_with(3, Side::Buy, vec![step(90, 100)], 1, 1));
    assert!(c.run_until(200_000, decided(1)));
    assert_agree_and_audit(&s, &c);
    let b = &c.nodes[0].store.blocks[0];
    assert!(
        b.header.revision > s.genesis.max_revisions,
        "ended in a fallback revision"
    );
    let fallback: Vec<_> = b
        .body
        .process
        .rejections
        .iter()
        .filter(|r| r.reason == RejectionReason::Fallback)
        .map(|r| r.bid)
        .collect();
    assert!(!fallback.is_empty());
    // L3: the bids cut are the latest-submitted ones.
    let all: Vec<_> = b
        .body
        .process
        .batches
        .iter()
        .flat_map(|x| x.body.bids.iter())
        .collect();
    let cut_times: Vec<_> = all
        .iter()
        .filter(|sb| fallback.contains(&sb.body.id()))
        .map(|sb| sb.body.timestamp)
        .collect();
    let kept_times: Vec<_> = all
        .iter()
        .filter(|sb| !fallback.contains(&sb.body.id()))
        .map(|sb| sb.body.timestamp)
        .collect();
    assert!(cut_times.iter().all(|t| kept_times.iter().all(|k| k <= t)));
}

#[test]
fn receipted_bids_for_a_sealed_batch_move_to_the_next_height() {
    // A bid that arrives after its home's gate closed is receipted for the next height.
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    let home = c
        .nodes
        .iter()
        .position(|n| n.ctx.me == s.genesis.participants[0].home)
        .unwrap();
    assert!(c.run_until(50_000, |c| c.nodes[home].state.intake.gate_closed));
    match c.submit(s.bid(0, 2, 5)) {
        Some(Reply::Receipt(r)) => assert_eq!(r.body.height, 2),
        other => panic!("{other:?}"),
    }
}

mod faults {
    use super::*;
    use proptest::prelude::*;
    use tieline_core::audit::ChainAuditor;
    use tieline_core::clearing::rule_for;
    use tieline_core::consensus::sim::Choice;

    fn choice(kind: u8, x: u32) -> Option<Choice> {
        let i = x as usize;
        Some(match kind {
            0..=69 => Choice::Process(i),
            70..=77 => Choice::Drop(i),
            78..=87 => Choice::Duplicate(i),
            88..=92 => Choice::Crash(i),
            93..=99 => Choice::Restart(i),
            _ => return None,
        })
    }

    /// One random step of a faulty run: a network or crash choice, or a participant's bid for
    /// the height its home is at.
    fn random_step(s: &SampleConsortium, c: &mut Cluster, kind: u8, x: u32, nonce: &mut u64) {
        match choice(kind, x) {
            Some(ch) => {
                c.apply_choice(ch, 1);
            }
            None => {
                let i = x as usize % s.participants.len();
                let home = s.genesis.participants[i].home;
                let h = c
                    .nodes
                    .iter()
                    .find(|n| n.ctx.me == home)
                    .map(|n| n.state.height)
                    .unwrap();
                *nonce += 1;
                c.submit(s.bid(i, h, *nonce));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// `Record::restore_key`: a node restored from its log sorted by the key (records of
        /// equal keys in the order written) is the node restored from the log as written, at
        /// every point of a run with random order, loss, duplication and crashes. The model
        /// checker keeps every log sorted so, and relies on this.
        #[test]
        fn restore_ignores_the_order_of_records_it_treats_alike(steps in proptest::collection::vec((0u8..106, any::<u32>()), 50..300)) {
            let s = SampleConsortium::new(4, 2);
            let mut c = Cluster::from_sample(&s, open());
            c.start();
            let mut nonce = 0u64;
            for (kind, x) in steps {
                random_step(&s, &mut c, kind, x, &mut nonce);
                for n in &c.nodes {
                    let mut sorted = n.store.records.clone();
                    sorted.sort_by_key(Record::restore_key);
                    let written = NodeState::restore(&n.ctx, &n.store.blocks, n.store.records.clone());
                    let keyed = NodeState::restore(&n.ctx, &n.store.blocks, sorted);
                    prop_assert_eq!(written, keyed);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// S1, V1, N1: under random message order, loss, duplication, and crashes with restart
        /// from storage (at most f = 1 down at a time), no two nodes ever decide different
        /// blocks at a height, every decided block audits clean, and once the faults stop every
        /// receipted bid ends on the chain.
        #[test]
        fn cluster_agrees_under_faults(steps in proptest::collection::vec((0u8..106, any::<u32>()), 50..400)) {
            let s = SampleConsortium::new(4, 2);
            let scheme = Ed25519::with_known_keys(s.genesis.public_keys());
            let clearing = rule_for(s.genesis.clearing.rule);
            let mut auditors: Vec<ChainAuditor<'_>> =
                (0..4).map(|_| ChainAuditor::new(&s.genesis, &scheme, clearing)).collect();
            let mut c = Cluster::from_sample(&s, open());
            c.start();
            let mut nonce = 0u64;
            for (kind, x) in steps {
                random_step(&s, &mut c, kind, x, &mut nonce);
                prop_assert_eq!(c.disagreement(), None);
                for (n, a) in c.nodes.iter().zip(auditors.iter_mut()) {
                    while (a.next_height() as usize) <= n.store.blocks.len() {
                        let b = &n.store.blocks[a.next_height() as usize - 1];
                        prop_assert!(a.push(b).is_ok(), "{:?}", a.push(b));
                    }
                }
            }
            // The faults stop: everyone restarts and time runs normally.
            for i in 0..4 {
                if !c.nodes[i].up {
                    c.restart(i);
                }
            }
            let receipted = c.receipted();
            let all_on_chain = |c: &Cluster| {
                c.nodes.iter().all(|n| {
                    let on: BTreeSet<_> = n
                        .store
                        .blocks
                        .iter()
                        .flat_map(|b| b.body.process.batches.iter().flat_map(|x| x.body.bids.iter().map(|sb| sb.body.id())))
                        .collect();
                    receipted.iter().all(|id| on.contains(id))
                })
            };
            prop_assert!(c.run_until(400_000, all_on_chain), "receipted bids missing from the chain");
            prop_assert_eq!(c.disagreement(), None);
            for n in &c.nodes {
                prop_assert!(audit_chain(&s.genesis, &scheme, &n.store.blocks).is_ok());
            }
        }
    }
}

#[test]
fn a_skip_loses_no_batch() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    // The primary's batch reaches everyone, its proposal nobody; then it crashes.
    let proposal_from_p0 = |e: &Event| matches!(e, Event::Deliver { from, msg: Message::Proposal(_), .. } if *from == p0);
    let everyone_has_its_batch = |c: &Cluster| {
        c.nodes
            .iter()
            .all(|n| n.state.intake.batches.contains_key(&p0))
    };
    assert!(c.run_filtered(50_000, proposal_from_p0, everyone_has_its_batch));
    c.crash(i0);
    assert!(c.run_until(50_000, decided(1)));
    assert_agree_and_audit(&s, &c);
    // N2: the block of view 1 carries the crashed primary's batch; its bids are recorded as
    // rejected because its area sat the view out.
    let b = &c.longest_chain()[0];
    assert_eq!(b.header.view, 1);
    let batch = b
        .body
        .process
        .batches
        .iter()
        .find(|x| x.body.home == p0)
        .expect("its batch is in the block");
    let rejected: BTreeSet<_> = b
        .body
        .process
        .rejections
        .iter()
        .filter(|r| r.reason == RejectionReason::AreaUnavailable)
        .map(|r| r.bid)
        .collect();
    assert!(!batch.body.bids.is_empty());
    assert!(
        batch
            .body
            .bids
            .iter()
            .all(|sb| rejected.contains(&sb.body.id()))
    );
}

/// N2 when the batch reached a single node: the skip vote of that node reports it and carries
/// it to the next primary, which must include it.
#[test]
fn a_batch_held_by_one_skip_voter_reaches_the_block_of_the_next_view() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let p1 = s.genesis.primary(1, 1);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    let witness = c
        .nodes
        .iter()
        .map(|n| n.ctx.me)
        .find(|id| *id != p0 && *id != p1)
        .unwrap();
    // The primary's batch reaches one node only, its proposal nobody; then it crashes.
    let held_back = |e: &Event| match e {
        Event::Deliver { from, to, msg } if *from == p0 => match msg {
            Message::Proposal(_) => true,
            Message::Batch(_) => *to != witness,
            _ => false,
        },
        _ => false,
    };
    let witness_has_it = |c: &Cluster| {
        c.nodes
            .iter()
            .any(|n| n.ctx.me == witness && n.state.intake.batches.contains_key(&p0))
    };
    assert!(c.run_filtered(50_000, held_back, witness_has_it));
    c.crash(i0);
    assert!(c.run_until(50_000, decided(1)));
    assert_agree_and_audit(&s, &c);
    let b = &c.longest_chain()[0];
    assert_eq!(b.header.view, 1);
    let cert = b.body.process.skip_certificate.as_ref().unwrap();
    assert!(cert.reported_homes().contains(&p0));
    assert!(b.body.process.batches.iter().any(|x| x.body.home == p0));
}

/// N2, D19: a body after a skip that leaves out a reported batch fails the check every
/// verifier and the auditor run.
#[test]
fn a_block_that_drops_a_reported_batch_fails_the_skip_batch_check() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    bid_round(&s, &mut c, 1);
    let p0 = s.genesis.primary(1, 0);
    let i0 = c.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    let proposal_from_p0 = |e: &Event| matches!(e, Event::Deliver { from, msg: Message::Proposal(_), .. } if *from == p0);
    let everyone_has_its_batch = |c: &Cluster| {
        c.nodes
            .iter()
            .all(|n| n.state.intake.batches.contains_key(&p0))
    };
    assert!(c.run_filtered(50_000, proposal_from_p0, everyone_has_its_batch));
    c.crash(i0);
    assert!(c.run_until(50_000, decided(1)));
    let mut process = c.longest_chain()[0].body.process.clone();
    assert_eq!(tieline_core::audit::check_skip_batches(&process), Ok(()));
    process.batches.retain(|x| x.body.home != p0);
    assert_eq!(
        tieline_core::audit::check_skip_batches(&process),
        Err(tieline_core::audit::AuditFailure::SkippedBatch(p0))
    );
}

/// The in-memory cluster steps members on several threads in the same run, event for event:
/// the same blocks and the same clock as one thread gives, through a crashed primary's skip.
/// Only where it stops may differ: `done` is asked between rounds, so a run on threads may
/// also have processed the rest of its last round (events of the same instant).
#[test]
fn a_cluster_on_several_threads_runs_the_same_run() {
    // Seven members, so a broadcast reaches six at one instant: enough for threads.
    let run = |threads: usize| {
        let s = SampleConsortium::new(7, 1);
        let mut c = Cluster::from_sample(&s, open_for(7));
        c.threads = threads;
        c.start();
        for h in 1..=3 {
            if h == 2 {
                let primary = s.genesis.primary(2, 0);
                let i = c.nodes.iter().position(|n| n.ctx.me == primary).unwrap();
                c.crash(i);
            }
            bid_round(&s, &mut c, h);
            assert!(c.run_until(50_000, decided(h)), "height {h} not decided");
        }
        let chains: Vec<Vec<_>> = c
            .nodes
            .iter()
            .map(|n| n.store.blocks.iter().map(|b| b.digest()).collect())
            .collect();
        let pending: Vec<(u64, u64)> = c.events.keys().copied().collect();
        (chains, c.now, pending)
    };
    let one = run(1);
    assert!(one.0.iter().filter(|c| c.len() == 3).count() >= 6);
    for threads in [2, 4] {
        let (chains, now, pending) = run(threads);
        assert_eq!((&chains, now), (&one.0, one.1), "{threads} threads");
        assert!(one.2.ends_with(&pending), "{threads} threads");
        assert!(
            one.2[..one.2.len() - pending.len()]
                .iter()
                .all(|(t, _)| *t == now)
        );
    }
}

/// Spec 2.6: the primary waits until every member has answered a revision, so the objections of
/// two members to revision 0 (area 1's export limit, area 3's import limit) make one revision
/// that carries both, not one revision each.
#[test]
fn objections_of_several_members_to_one_revision_make_one_revision() {
    let mut s = SampleConsortium::new(4, 2);
    s.genesis.clearing.rule = ClearingRule::ZonalCoupling;
    let import = import_limit_of_area_3(40);
    // Tie line 1 runs from area 1 to area 2, tie line 4 from area 4 to area 1.
    let export = net_tie_flow_cut(3, TieLineId(1), TieLineId(4), 60);
    let mut security = open();
    security[0] = Arc::new(ConstraintList {
        constraints: vec![export.clone()],
    });
    security[2] = Arc::new(ConstraintList {
        constraints: vec![import.clone()],
    });
    let c = seller_in_area_1_buyer_in_area_3(&s, security);
    let b = &c.nodes[0].store.blocks[0];
    assert_eq!((b.header.view, b.header.revision), (0, 1));
    let p = &b.body.process;
    let objectors: BTreeSet<NodeId> = p.objections.iter().map(|o| o.body.objector).collect();
    assert_eq!(objectors, BTreeSet::from([NodeId(1), NodeId(3)]));
    assert!(p.objections.iter().all(|o| o.body.revision == 0));
    assert!(p.clearing.cuts.contains(&import) && p.clearing.cuts.contains(&export));
}

/// A check that takes `pause` and passes, counting its calls.
#[derive(Debug)]
struct SlowCheck {
    pause: std::time::Duration,
    calls: std::sync::atomic::AtomicUsize,
}

impl SecurityCheck for SlowCheck {
    fn check(
        &self,
        _: &tieline_core::clearing::ClearingInput<'_>,
        _: &tieline_core::clearing::Cleared,
    ) -> Vec<Cut> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(self.pause);
        Vec::new()
    }
}

/// The cluster's compute-only critical path (`Cluster::critical_path`) counts the members'
/// checks of one proposal, which run on their own machines in a deployment, once: with a check
/// of 100 ms at every member, it is at least one check and well under their sum, and never
/// longer than the round took on one thread.
#[test]
fn the_critical_path_counts_the_members_parallel_checks_once() {
    let s = SampleConsortium::new(4, 2);
    let pause = std::time::Duration::from_millis(100);
    let checks: Vec<Arc<SlowCheck>> = (0..4)
        .map(|_| {
            Arc::new(SlowCheck {
                pause,
                calls: Default::default(),
            })
        })
        .collect();
    let mut c = Cluster::from_sample(
        &s,
        checks
            .iter()
            .map(|k| k.clone() as Arc<dyn SecurityCheck>)
            .collect(),
    );
    let started = std::time::Instant::now();
    c.start();
    bid_round(&s, &mut c, 1);
    assert!(c.run_until(20_000, decided(1)));
    let wall = started.elapsed();
    let calls: usize = checks
        .iter()
        .map(|k| k.calls.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(calls >= 3, "the verifiers checked the proposal: {calls}");
    let critical = c.critical_path();
    assert!(critical >= pause, "{critical:?}");
    assert!(critical <= wall, "{critical:?} > {wall:?}");
    assert!(
        critical + pause < pause * calls as u32,
        "{critical:?} for {calls} checks of {pause:?}"
    );
}

/// 2.6: a member whose answer to a revision never arrives does not stall negotiation: the
/// primary revises with area 3's cut when its `Revise` timer ends the wait, and the block
/// commits in view 0. (The lost answer is the silent member's endorsement of revision 0; a
/// member that is down would do, but the outcome's flows touch every area of the sample's
/// ring, so every member must sign the block, D12.)
#[test]
fn the_primary_revises_when_its_wait_for_a_lost_answer_ends() {
    let (s, security, limit) = zonal_with_area_3_import_limit(40);
    let primary = s.genesis.primary(1, 0);
    // Neither the primary nor area 3's member, whose objection is the one answer that moves.
    let silent = s
        .genesis
        .members
        .iter()
        .map(|m| m.id)
        .find(|&id| id != primary && id != s.genesis.members[2].id)
        .unwrap();
    let mut c = Cluster::from_sample(&s, security);
    c.start();
    c.submit(s.bid_with(0, Side::Sell, vec![step(10, 100)], 1, 1));
    c.submit(s.bid_with(5, Side::Buy, vec![step(90, 100)], 1, 1));
    let mut lost = 0;
    let lose = |e: &Event| {
        let drop = matches!(
            e,
            Event::Deliver { from, to, msg: Message::Vote(v) }
                if *from == silent && *to == primary && v.body.revision == 0
        );
        lost += usize::from(drop);
        drop
    };
    assert!(c.run_filtered(20_000, lose, decided(1)));
    assert!(
        lost > 0,
        "the silent member's answer to revision 0 was lost"
    );
    assert_agree_and_audit(&s, &c);
    let b = &c.nodes[0].store.blocks[0];
    assert_eq!((b.header.view, b.header.revision), (0, 1));
    assert_eq!(b.body.process.clearing.cuts, vec![limit]);
}

/// D25: a home node receipts bids up to its share of the round's bid steps and refuses the
/// rest as `BatchFull`; at gate closure, bids beyond the share (bids carried from a block that
/// missed them, N1) wait in the pool for the next batch.
#[test]
fn a_home_node_takes_bids_up_to_its_share_of_the_round_steps() {
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    let share = s.genesis.batch_steps();
    let home = c
        .nodes
        .iter()
        .position(|n| n.ctx.me == s.genesis.participants[0].home)
        .unwrap();
    let step = |price: i64| BidStep {
        price: Price(price * Price::SCALE),
        quantity: Quantity(Quantity::SCALE),
    };
    // The pool already holds all but one step of the share.
    c.nodes[home].state.intake.pool_steps.insert(1, share - 1);
    let two = s.bid_with(0, Side::Sell, vec![step(40), step(41)], 1, 8);
    assert!(matches!(
        c.submit(two),
        Some(Reply::BidRejected {
            reason: BidError::BatchFull { height: 1 },
            ..
        })
    ));
    assert!(matches!(c.submit(s.bid(0, 1, 9)), Some(Reply::Receipt(_))));
    assert!(matches!(
        c.submit(s.bid(0, 1, 10)),
        Some(Reply::BidRejected {
            reason: BidError::BatchFull { height: 1 },
            ..
        })
    ));

    // Gate closure with more steps in the pool than the share: the earliest-received bids up
    // to the share go into the batch, the rest stay.
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    let big = s.bid_with(0, Side::Sell, (0..32).map(step).collect(), 1, 11);
    let me = s.genesis.members[home].id;
    let count = share / 32 + 3;
    let state = &mut c.nodes[home].state;
    for k in 0..count {
        let receipt = Signed::sign(
            BidReceipt {
                chain_id: s.genesis.chain_id(),
                bid: big.body.id(),
                participant: big.body.participant,
                home: me,
                height: 1,
                received_at: Timestamp(1_767_225_000_000 + k as u64),
            },
            &s.members[home],
        );
        state
            .intake
            .pool
            .entry(1)
            .or_default()
            .push((big.clone(), receipt));
    }
    let effects = c.input(home, Input::Timer(tieline_core::consensus::Timer::Gate(1)));
    let batch = effects
        .iter()
        .find_map(|e| match e {
            Effect::Broadcast(Message::Batch(b)) => Some(b),
            _ => None,
        })
        .expect("the gate closes with a batch");
    assert_eq!(batch.body.bids.len(), share / 32);
    assert!(batch.body.steps() <= share);
    assert!(batch.body.malformed(&s.genesis).is_none());
    assert_eq!(c.nodes[home].state.intake.pool[&1].len(), count);
}
