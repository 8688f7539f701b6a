//! Auctions on a daily gate-closure schedule (spec D24, N4), in an in-memory cluster with real
//! keys: every bid for a delivery period is cleared in the one round that closes that period's
//! gate, whenever it arrived; late, off-schedule and too-early bids are refused with the
//! reason; resting bids survive a restart of their home node; a batch that carries a bid of
//! another round gets it rejected, recorded in the block.

use std::sync::Arc;

use tieline_core::audit::audit_chain;
use tieline_core::block::{Appeal, AppealClaim, AppealResolution, Rejection, RejectionReason};
use tieline_core::consensus::content::{BlockPlan, CommittedNonces, resolve_appeal, select_bids};
use tieline_core::consensus::sim::Cluster;
use tieline_core::consensus::{Effect, Input, Message, NoGridModel, Reply, SecurityCheck, Timer};
use tieline_core::crypto::{Ed25519, Signed};
use tieline_core::market::{
    BidError, BidReceipt, BidStep, Product, Settlement, Side, SignedBid, Term,
};
use tieline_core::sample::SampleConsortium;
use tieline_core::schedule::{GateSchedule, MAX_GATES_AHEAD};
use tieline_core::units::{Price, Quantity, Timestamp};

const HOUR: u64 = 3_600_000;

/// Three members (crash, f = 1), two participants each; hourly products, gate 12:00 Brussels
/// time the day before delivery, height 1 delivering on the simulation's first day.
fn consortium() -> SampleConsortium {
    let mut s = SampleConsortium::new(3, 2);
    s.genesis.timing.gate_ms = 0;
    s.genesis.timing.schedule = Some(GateSchedule {
        zone: "Europe/Brussels".into(),
        gate_second: 12 * 3600,
        resolution_minutes: 60,
        first_delivery_day: GateSchedule::parse_day("2026-01-01").unwrap(),
    });
    s.genesis.validate().unwrap();
    s
}

fn schedule(s: &SampleConsortium) -> &GateSchedule {
    s.genesis.timing.schedule.as_ref().unwrap()
}

fn cluster(s: &SampleConsortium) -> Cluster {
    let open = (0..3)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect();
    let mut c = Cluster::from_sample(s, open);
    c.start();
    c
}

/// A one-step bid by participant `index` for the hour starting `start`.
fn bid(
    s: &SampleConsortium,
    index: usize,
    side: Side,
    price: i64,
    start: Timestamp,
    nonce: u64,
) -> SignedBid {
    let product = Product {
        delivery_start: start,
        delivery_minutes: 60,
        term: Term::Spot,
        settlement: Settlement::Physical,
    };
    let step = BidStep {
        price: Price(price * Price::SCALE),
        quantity: Quantity(10 * Quantity::SCALE),
    };
    s.bid_for(index, side, vec![step], product, nonce, Timestamp(nonce))
}

fn receipt_height(reply: Option<Reply>) -> u64 {
    match reply {
        Some(Reply::Receipt(r)) => r.body.height,
        other => panic!("expected a receipt, got {other:?}"),
    }
}

fn refusal(reply: Option<Reply>) -> BidError {
    match reply {
        Some(Reply::BidRejected { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
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

/// The example: a sell at 20 and a buy at 60 for one delivery hour, submitted 92 ms
/// apart to two home nodes while different heights are open, trade in the round of that
/// hour's gate; a bid for an earlier hour clears in its own round.
#[test]
fn bids_for_one_period_rest_until_its_gate_and_clear_together() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let mut c = cluster(&s);
    // Height 1's gate (31 December, 11:00 UTC) passed before the start: it closes at once.
    assert!(c.run_until(50_000, decided(1)));
    assert!(c.nodes.iter().all(|n| n.state.height == 2));
    let day3 = sch.periods_of(3)[10];
    let day2 = sch.periods_of(2)[10];
    assert_eq!(
        receipt_height(c.submit(bid(&s, 0, Side::Sell, 20, day3, 1))),
        3
    );
    c.advance(92);
    assert_eq!(
        receipt_height(c.submit(bid(&s, 2, Side::Buy, 60, day3, 2))),
        3
    );
    assert_eq!(
        receipt_height(c.submit(bid(&s, 1, Side::Sell, 30, day2, 3))),
        2
    );
    assert_eq!(
        receipt_height(c.submit(bid(&s, 3, Side::Buy, 50, day2, 4))),
        2
    );
    // Height 2 commits at its gate (1 January, 11:00 UTC) with the day-2 bids only.
    assert!(c.run_until(200_000, decided(2)));
    let b2 = &c.nodes[0].store.blocks[1];
    assert!(Timestamp(c.now) >= sch.gate_of(2));
    assert_eq!(b2.body.trades.len(), 2);
    assert!(
        b2.body
            .trades
            .iter()
            .all(|t| t.product.delivery_start == day2)
    );
    // The day-3 bids rest in their home nodes' pools meanwhile.
    assert_eq!(c.nodes[0].state.intake.pool.get(&3).map(Vec::len), Some(1));
    assert_eq!(c.nodes[1].state.intake.pool.get(&3).map(Vec::len), Some(1));
    // A bid for day 2 now is late.
    assert_eq!(
        refusal(c.submit(bid(&s, 1, Side::Sell, 30, Timestamp(day2.0 + HOUR), 5))),
        BidError::GateClosed {
            height: 2,
            gate: sch.gate_of(2)
        }
    );
    assert!(c.run_until(200_000, decided(3)));
    let b3 = &c.nodes[0].store.blocks[2];
    assert_eq!(b3.body.trades.len(), 2, "{:?}", b3.body.trades);
    assert!(
        b3.body
            .trades
            .iter()
            .all(|t| t.product.delivery_start == day3)
    );
    assert!(
        b3.body
            .trades
            .iter()
            .all(|t| t.quantity.0 == 10 * Quantity::SCALE)
    );
    assert_eq!(c.disagreement(), None);
    for n in &c.nodes {
        audit_chain(&s.genesis, &Ed25519::default(), &n.store.blocks).unwrap();
    }
}

/// Bids the schedule cannot take are refused at once, each with its reason: a period of the
/// wrong length or off the grid, a day before the chain's first, a gate already passed, and a
/// day further ahead than a home node holds bids.
#[test]
fn bids_off_the_schedule_are_refused_with_the_reason() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let mut c = cluster(&s);
    assert!(c.run_until(50_000, decided(1)));
    let day2 = sch.periods_of(2)[0];
    let mut half_hour = bid(&s, 0, Side::Sell, 20, day2, 1).body;
    half_hour.product.delivery_minutes = 30;
    let half_hour = Signed::sign(half_hour, &s.participants[0]);
    assert!(matches!(
        refusal(c.submit(half_hour)),
        BidError::OffSchedule { reason } if reason.contains("60-minute periods, not 30")
    ));
    assert!(matches!(
        refusal(c.submit(bid(&s, 0, Side::Sell, 20, Timestamp(day2.0 + 60_000), 2))),
        BidError::OffSchedule { reason } if reason.contains("grid")
    ));
    assert!(matches!(
        refusal(c.submit(bid(&s, 0, Side::Sell, 20, Timestamp(day2.0 - 2 * 24 * HOUR), 3))),
        BidError::OffSchedule { reason } if reason.contains("before the chain's first")
    ));
    // Height 1 is decided: its period's gate has passed.
    assert_eq!(
        refusal(c.submit(bid(&s, 0, Side::Sell, 20, sch.periods_of(1)[5], 4))),
        BidError::GateClosed {
            height: 1,
            gate: sch.gate_of(1)
        }
    );
    let far = 2 + MAX_GATES_AHEAD + 1;
    assert_eq!(
        refusal(c.submit(bid(&s, 0, Side::Sell, 20, sch.periods_of(far)[0], 5))),
        BidError::TooFarAhead {
            height: far,
            open: 2,
            ahead: MAX_GATES_AHEAD
        }
    );
    assert_eq!(
        receipt_height(c.submit(bid(&s, 0, Side::Sell, 20, sch.periods_of(far - 1)[0], 6))),
        far - 1
    );
    // The error a participant reads names the height and the instant.
    let text = BidError::GateClosed {
        height: 1,
        gate: sch.gate_of(1),
    }
    .to_string();
    assert!(
        text.contains("height 1") && text.contains("closed at"),
        "{text}"
    );
}

/// N1 with N4: a resting bid is in its home node's log with its height, so a crash and
/// restart of that node before the gate loses nothing; the bid is cleared at its gate.
#[test]
fn a_resting_bid_survives_a_restart_of_its_home_node() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let mut c = cluster(&s);
    assert!(c.run_until(50_000, decided(1)));
    let day3 = sch.periods_of(3)[7];
    assert_eq!(
        receipt_height(c.submit(bid(&s, 0, Side::Sell, 20, day3, 1))),
        3
    );
    assert_eq!(
        receipt_height(c.submit(bid(&s, 2, Side::Buy, 60, day3, 2))),
        3
    );
    c.crash(0);
    c.advance(1_000);
    c.restart(0);
    assert_eq!(c.nodes[0].state.intake.pool.get(&3).map(Vec::len), Some(1));
    assert!(c.run_until(400_000, decided(3)));
    let b3 = &c.nodes[0].store.blocks[2];
    assert_eq!(b3.body.trades.len(), 2, "{:?}", b3.body);
    assert_eq!(c.disagreement(), None);
}

/// N4 in the block rules: a home node that batches a bid of another round (a faulty one, or
/// an appeal's bid after its round) gets it rejected as `OutsideGate`, and every verifier
/// and auditor computes the same rejection.
#[test]
fn a_bid_of_another_round_in_a_batch_is_rejected_as_outside_its_gate() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let here = bid(&s, 0, Side::Sell, 20, sch.periods_of(2)[3], 1);
    let later = bid(&s, 1, Side::Buy, 60, sch.periods_of(3)[3], 2);
    // A half-hour period the hourly schedule does not open: invalid in any round (D7).
    let mut off = bid(&s, 1, Side::Buy, 60, sch.periods_of(2)[5], 3).body;
    off.product.delivery_minutes = 30;
    let off = Signed::sign(off, &s.participants[1]);
    let plan = BlockPlan {
        height: 2,
        batches: vec![s.batch(0, 2, vec![here.clone(), later.clone(), off.clone()])],
        ..BlockPlan::default()
    };
    let body = s.body(plan, &Default::default(), true);
    assert_eq!(body.trades.len(), 0, "one seller alone does not trade");
    assert_eq!(
        body.process.rejections,
        vec![
            Rejection {
                bid: later.body.id(),
                reason: RejectionReason::OutsideGate
            },
            Rejection {
                bid: off.body.id(),
                reason: RejectionReason::Invalid
            }
        ]
    );
    // Without a schedule, every round takes every valid bid.
    let mut check = |_: &SignedBid, _: &tieline_core::crypto::PublicKey| true;
    let mut plain = s.genesis.clone();
    plain.timing.schedule = None;
    plain.timing.gate_ms = 1_000;
    let selection = select_bids(
        &plain,
        &s.genesis.chain_id(),
        &body.process,
        2,
        0,
        &Default::default(),
        &mut check,
    );
    assert_eq!(selection.rejections, vec![]);
    assert_eq!(selection.bids.len(), 3);
}

/// N1 with N4: a round that commits without a home node's batch (the node was down at the
/// gate) ends its periods' auction; the home node's receipted bid is not lost but carried to
/// the next round, whose block records it rejected as `OutsideGate`.
#[test]
fn a_bid_whose_batch_missed_its_round_is_recorded_rejected_in_the_next() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let mut c = cluster(&s);
    assert!(c.run_until(50_000, decided(1)));
    let day2 = sch.periods_of(2)[4];
    let lost = bid(&s, 0, Side::Sell, 20, day2, 1);
    assert_eq!(receipt_height(c.submit(lost.clone())), 2);
    // Node 1 (participant 0's home) is down from before the gate until the round commits.
    c.crash(0);
    assert!(c.run_until(400_000, |c| c.nodes[1].store.blocks.len() >= 2));
    c.restart(0);
    assert!(c.run_until(400_000, decided(3)));
    let blocks = &c.nodes[0].store.blocks;
    let home = s.genesis.members[0].id;
    assert!(
        blocks[1]
            .body
            .process
            .batches
            .iter()
            .all(|b| b.body.home != home)
    );
    assert_eq!(
        blocks[2].body.process.rejections,
        vec![Rejection {
            bid: lost.body.id(),
            reason: RejectionReason::OutsideGate
        }]
    );
    assert_eq!(c.disagreement(), None);
    for n in &c.nodes {
        audit_chain(&s.genesis, &Ed25519::default(), &n.store.blocks).unwrap();
    }
}

/// N4: a proposal for a scheduled height that arrives well before its gate (a faulty primary
/// proposing early) closes no gate and gets no vote: the auction stays open. Within
/// `MAX_CLOCK_SKEW_MS` of the gate (a correct primary whose clock runs a little ahead) it is
/// taken as usual.
#[test]
fn a_proposal_before_the_gate_does_not_close_the_auction() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let mut c = cluster(&s);
    assert!(c.run_until(50_000, decided(1)));
    let primary = s.genesis.primary(2, 0);
    let p = c.nodes.iter().position(|n| n.ctx.me == primary).unwrap();
    let v = (p + 1) % 3;
    // The primary's gate and batch-wait timers fire an hour early (its clock is wrong, or it
    // is faulty).
    c.now = sch.gate_of(2).0 - 3_600_000;
    c.input(p, Input::Timer(Timer::Gate(2)));
    // It proposes with its own batch alone once its batch wait ends.
    let effects = c.input(p, Input::Timer(Timer::BatchWait(2)));
    let proposal = effects
        .iter()
        .find_map(|e| match e {
            Effect::Broadcast(m @ Message::Proposal(_)) => Some(m.clone()),
            _ => None,
        })
        .expect("the primary proposes at its gate");
    let early = c.input(
        v,
        Input::Message {
            from: primary,
            msg: proposal.clone(),
        },
    );
    assert!(early.is_empty(), "{early:?}");
    assert!(!c.nodes[v].state.intake.gate_closed);
    // A participant of the verifier can still bid for the day.
    let home_of_v = s.genesis.members[v].id;
    let k = s
        .genesis
        .participants
        .iter()
        .position(|q| q.home == home_of_v)
        .unwrap();
    assert_eq!(
        receipt_height(c.submit(bid(&s, k, Side::Sell, 20, sch.periods_of(2)[0], 9))),
        2
    );
    // A second before the gate, within the clock skew, the proposal closes the gate.
    c.now = sch.gate_of(2).0 - 1_000;
    let late = c.input(
        v,
        Input::Message {
            from: primary,
            msg: proposal,
        },
    );
    assert!(c.nodes[v].state.intake.gate_closed);
    assert!(
        late.iter()
            .any(|e| matches!(e, Effect::Broadcast(Message::Batch(_))))
    );
}

/// N4 with V3: bids rest in the order of their periods, not of their nonces. A participant
/// that bids for the day after tomorrow (nonce 1) and then for tomorrow (nonce 2) has both
/// cleared: the second is on the chain first, and the first is no replay of it.
#[test]
fn a_bid_for_a_later_day_with_a_lower_nonce_is_no_replay() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let mut c = cluster(&s);
    assert!(c.run_until(50_000, decided(1)));
    let (day2, day3) = (sch.periods_of(2)[6], sch.periods_of(3)[6]);
    let later = bid(&s, 0, Side::Sell, 20, day3, 1);
    assert_eq!(receipt_height(c.submit(later.clone())), 3);
    assert_eq!(
        receipt_height(c.submit(bid(&s, 0, Side::Sell, 20, day2, 2))),
        2
    );
    assert_eq!(
        receipt_height(c.submit(bid(&s, 2, Side::Buy, 60, day2, 3))),
        2
    );
    assert_eq!(
        receipt_height(c.submit(bid(&s, 2, Side::Buy, 60, day3, 4))),
        3
    );
    assert!(c.run_until(400_000, decided(3)));
    let blocks = &c.nodes[0].store.blocks;
    assert_eq!(
        blocks[1].body.trades.len(),
        2,
        "{:?}",
        blocks[1].body.process.rejections
    );
    assert_eq!(blocks[2].body.process.rejections, vec![]);
    assert!(
        blocks[2]
            .body
            .trades
            .iter()
            .any(|t| t.bid == later.body.id())
    );
    // A bid for day 3 again, with a nonce the participant has used: refused at intake.
    assert!(matches!(
        refusal(c.submit(bid(&s, 0, Side::Sell, 21, sch.periods_of(4)[6], 2))),
        BidError::ReplayedNonce { .. }
    ));
    for n in &c.nodes {
        audit_chain(&s.genesis, &Ed25519::default(), &n.store.blocks).unwrap();
    }
}

/// V5 with N4: under a gate schedule an omitted bid can be claimed only in its own round (the
/// height its receipt names); there its participant's higher committed nonces (of bids for
/// earlier days) do not make it "already included".
#[test]
fn an_omission_appeal_is_heard_in_the_bids_own_round_only() {
    let s = consortium();
    let sch = schedule(&s).clone();
    let b = bid(&s, 0, Side::Sell, 20, sch.periods_of(3)[2], 1);
    let home = s.genesis.participants[0].home;
    let receipt = Signed::sign(
        BidReceipt {
            chain_id: s.genesis.chain_id(),
            bid: b.body.id(),
            participant: b.body.participant,
            home,
            height: 3,
            received_at: Timestamp(0),
        },
        &s.members[0],
    );
    let appeal = |height: u64| {
        Signed::sign(
            Appeal {
                chain_id: s.genesis.chain_id(),
                participant: b.body.participant,
                height,
                claim: AppealClaim::Omitted {
                    bid: Box::new(b.clone()),
                    receipt: receipt.clone(),
                },
            },
            &s.participants[0],
        )
    };
    // The participant's bid for day 2 with nonce 5 is already on the chain.
    let committed = CommittedNonces::from([(b.body.participant, 5)]);
    let resolve = |height: u64| {
        resolve_appeal(
            &s.genesis,
            &s.genesis.chain_id(),
            &Ed25519::default(),
            height,
            &Default::default(),
            &committed,
            &appeal(height),
        )
    };
    assert_eq!(resolve(3), AppealResolution::Upheld { revision: 0 });
    assert_eq!(resolve(2), AppealResolution::RejectedUnverifiable);
    assert_eq!(resolve(4), AppealResolution::RejectedUnverifiable);
}
