//! Admission, revocation and key rotation on chain (spec A1-A5), in an in-memory cluster with
//! real keys: a change enters a home node's batch, takes effect from the next height, is
//! applied alike by every member and by the audit, and a change without the signatures its
//! rule needs is refused.

use std::sync::Arc;

use tieline_core::audit::{ChainAuditor, audit_chain};
use tieline_core::block::Block;
use tieline_core::clearing::rule_for;
use tieline_core::consensus::sim::Cluster;
use tieline_core::consensus::{Effect, Input, NoGridModel, Reply, SecurityCheck};
use tieline_core::crypto::{Ed25519, Ed25519Signer, Signed, Signer};
use tieline_core::genesis::Participant;
use tieline_core::market::{Bid, BidError, BidStep, Side, SignedBatch, SignedBid};
use tieline_core::registry::{Party, RegistryChange, SignedChange};
use tieline_core::sample::{SampleConsortium, sample_product};
use tieline_core::units::{AreaId, NodeId, ParticipantId, Price, Quantity, Timestamp};

fn consortium() -> SampleConsortium {
    SampleConsortium::new(3, 2)
}

fn cluster(s: &SampleConsortium) -> Cluster {
    let open = (0..3)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect();
    let mut c = Cluster::from_sample(s, open);
    c.start();
    c
}

fn decide(c: &mut Cluster, height: u64) {
    assert!(c.run_until(200_000, |c| {
        c.nodes
            .iter()
            .all(|n| n.store.blocks.len() as u64 >= height)
    }));
}

/// A one-step bid signed by `key` for participant `id` in `area`, for `height`'s product.
fn bid(
    s: &SampleConsortium,
    key: &dyn Signer,
    id: ParticipantId,
    area: AreaId,
    side: Side,
    height: u64,
    nonce: u64,
) -> SignedBid {
    let price = if side == Side::Sell { 20 } else { 60 };
    Signed::sign(
        Bid {
            chain_id: s.genesis.chain_id(),
            participant: id,
            area,
            bus: None,
            side,
            product: sample_product(height),
            steps: vec![BidStep {
                price: Price(price * Price::SCALE),
                quantity: Quantity(5 * Quantity::SCALE),
            }],
            nonce,
            timestamp: Timestamp(1_767_225_000_000 + nonce),
        },
        key,
    )
}

fn newcomer(key: &Ed25519Signer) -> Participant {
    Participant {
        id: ParticipantId(100),
        name: "Newcomer Energy".into(),
        home: NodeId(1),
        area: AreaId(1),
        public_key: key.public_key(),
        eic: None,
    }
}

/// Whether a batch of the committed block of height 1 satisfies `f`.
fn a_batch_of_height_1(c: &Cluster, f: impl Fn(&SignedBatch) -> bool) -> bool {
    c.longest_chain()[0].body.process.batches.iter().any(f)
}

fn accepted(reply: Option<Reply>) -> u64 {
    match reply {
        Some(Reply::ChangeAccepted { height, .. }) => height,
        other => panic!("expected the change accepted, got {other:?}"),
    }
}

fn refused(reply: Option<Reply>) -> String {
    match reply {
        Some(Reply::ChangeRefused { reason, .. }) => reason,
        other => panic!("expected the change refused, got {other:?}"),
    }
}

fn audit<'a>(s: &'a SampleConsortium, chain: &[Block]) -> ChainAuditor<'a> {
    audit_chain(&s.genesis, &Ed25519::default(), chain).expect("the chain audits clean");
    let scheme: &'static Ed25519 = Box::leak(Box::default());
    let mut a = ChainAuditor::new(&s.genesis, scheme, rule_for(s.genesis.clearing.rule));
    for b in chain {
        a.push(b).unwrap();
    }
    a
}

#[test]
fn a_participant_admitted_on_chain_bids_from_the_next_height() {
    let s = consortium();
    let mut c = cluster(&s);
    let key = Ed25519Signer::from_seed([200; 32]);
    let mut admit = SignedChange::new(s.genesis.chain_id(), RegistryChange::Admit(newcomer(&key)));
    // Not yet admitted: its bid is refused.
    let early = bid(&s, &key, ParticipantId(100), AreaId(1), Side::Sell, 1, 1);
    assert!(c.submit(early.clone()).is_none(), "no member knows it yet");
    // Without its home node's signature the change is refused, naming the signature.
    let reason = refused(c.submit_change(0, admit.clone()));
    assert!(reason.contains("member 1"), "{reason}");
    // Signed by another member, it is still not the home node's.
    admit.sign(Party::Member(NodeId(2)), &s.members[1]);
    let reason = refused(c.submit_change(0, admit.clone()));
    assert!(reason.contains("member 1"), "{reason}");
    admit.signatures.clear();
    admit.sign(Party::Member(NodeId(1)), &s.members[0]);
    // Only its home node carries it.
    let reason = refused(c.submit_change(1, admit.clone()));
    assert!(reason.contains("home node 1"), "{reason}");
    let h = accepted(c.submit_change(0, admit.clone()));
    assert_eq!(h, 1);
    // A second copy is refused while the first is pending.
    refused(c.submit_change(0, admit.clone()));
    decide(&mut c, 1);
    // From height 2 it bids like anyone, and trades.
    let sell = bid(&s, &key, ParticipantId(100), AreaId(1), Side::Sell, 2, 1);
    assert!(matches!(c.submit(sell), Some(Reply::Receipt(r)) if r.body.height == 2));
    let buy = s.bid_with(
        1,
        Side::Buy,
        vec![BidStep {
            price: Price(60 * Price::SCALE),
            quantity: Quantity(5 * Quantity::SCALE),
        }],
        2,
        1,
    );
    assert!(matches!(c.submit(buy), Some(Reply::Receipt(_))));
    decide(&mut c, 2);
    let chain = c.longest_chain().to_vec();
    assert!(
        chain[1]
            .body
            .trades
            .iter()
            .any(|t| t.participant == ParticipantId(100) && t.quantity.0 == 5 * Quantity::SCALE)
    );
    // Every member and the audit hold the same registry.
    let a = audit(&s, &chain);
    assert!(a.registry().participant(ParticipantId(100)).is_some());
    assert_eq!(a.finish().changes, 1);
    for n in &c.nodes {
        assert!(
            n.state
                .effective(&n.ctx)
                .genesis
                .participant(ParticipantId(100))
                .is_some()
        );
    }
    // The admission cannot be replayed: the id is taken.
    let reason = refused(c.submit_change(0, admit));
    assert!(reason.contains("already admitted"), "{reason}");
}

#[test]
fn a_revoked_participant_cannot_bid_and_its_pending_bid_is_recorded() {
    let s = consortium();
    let mut c = cluster(&s);
    let victim = s.genesis.participants[0].clone();
    let mut revoke = SignedChange::new(s.genesis.chain_id(), RegistryChange::Revoke(victim.id));
    revoke.sign(Party::Member(victim.home), &s.members[0]);
    assert_eq!(accepted(c.submit_change(0, revoke.clone())), 1);
    // A bid in the same block as the revocation is still settled (the revocation takes
    // effect from the next height).
    let same = s.bid(0, 1, 1);
    assert!(matches!(c.submit(same.clone()), Some(Reply::Receipt(_))));
    decide(&mut c, 1);
    assert!(a_batch_of_height_1(&c, |b| b.body.bids.contains(&same)));
    // From height 2 its bids are refused with the reason.
    let later = s.bid(0, 2, 2);
    let effects = c.input(0, Input::Bid(later));
    let reason = effects.iter().find_map(|e| match e {
        Effect::Reply {
            reply: Reply::BidRejected { reason, .. },
            ..
        } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        reason,
        Some(BidError::Revoked {
            participant: victim.id,
            height: 2
        })
    );
    let a = audit(&s, c.longest_chain());
    assert!(a.registry().participant(victim.id).is_none());
    assert_eq!(a.revoked().get(&victim.id), Some(&2));
    // Revoking it again, or admitting its id again, is refused.
    refused(c.submit_change(0, revoke));
    let key = Ed25519Signer::from_seed([201; 32]);
    let mut again = SignedChange::new(
        s.genesis.chain_id(),
        RegistryChange::Admit(Participant {
            id: victim.id,
            ..newcomer(&key)
        }),
    );
    again.sign(Party::Member(NodeId(1)), &s.members[0]);
    let reason = refused(c.submit_change(0, again));
    assert!(reason.contains("revoked"), "{reason}");
}

#[test]
fn after_a_key_rotation_the_old_key_is_refused_and_the_new_one_bids() {
    let s = consortium();
    let mut c = cluster(&s);
    let p = s.genesis.participants[0].clone();
    let new_key = Ed25519Signer::from_seed([202; 32]);
    let mut rotate = SignedChange::new(
        s.genesis.chain_id(),
        RegistryChange::ParticipantKey {
            participant: p.id,
            key: new_key.public_key(),
        },
    );
    // The home node's countersignature alone is not enough: the old key must sign.
    let mut home_only = rotate.clone();
    home_only.sign(Party::Member(p.home), &s.members[0]);
    let reason = refused(c.submit_change(0, home_only));
    assert!(reason.contains("participant"), "{reason}");
    // A key other than the current one is refused too.
    let mut wrong = rotate.clone();
    wrong.sign(Party::Participant(p.id), &new_key);
    let reason = refused(c.submit_change(0, wrong));
    assert!(reason.contains("participant"), "{reason}");
    // Signed by the current key, the home node countersigns it as it accepts it.
    rotate.sign(Party::Participant(p.id), &s.participants[0]);
    assert_eq!(accepted(c.submit_change(0, rotate.clone())), 1);
    decide(&mut c, 1);
    let old = bid(&s, &s.participants[0], p.id, p.area, Side::Sell, 2, 5);
    assert!(matches!(
        c.submit(old),
        Some(Reply::BidRejected {
            reason: BidError::BadSignature(_),
            ..
        })
    ));
    let new = bid(&s, &new_key, p.id, p.area, Side::Sell, 2, 6);
    assert!(matches!(c.submit(new), Some(Reply::Receipt(_))));
    decide(&mut c, 2);
    let chain = c.longest_chain().to_vec();
    let a = audit(&s, &chain);
    assert_eq!(
        a.registry().participant(p.id).unwrap().public_key,
        new_key.public_key()
    );
    // The old key is retired: rotating back to it is refused.
    let mut back = SignedChange::new(
        s.genesis.chain_id(),
        RegistryChange::ParticipantKey {
            participant: p.id,
            key: s.participants[0].public_key(),
        },
    );
    back.sign(Party::Member(p.home), &s.members[0]);
    back.sign(Party::Participant(p.id), &new_key);
    let reason = refused(c.submit_change(0, back));
    assert!(reason.contains("cannot be used again"), "{reason}");
}

#[test]
fn a_member_key_rotation_needs_a_quorum_and_the_chain_goes_on_under_the_new_key() {
    let s = consortium();
    let mut c = cluster(&s);
    let member = s.genesis.members[2].clone();
    let new_key = Ed25519Signer::from_seed([203; 32]);
    let mut rotate = SignedChange::new(
        s.genesis.chain_id(),
        RegistryChange::MemberKey {
            member: member.id,
            key: new_key.public_key(),
        },
    );
    rotate.sign(Party::Member(member.id), &s.members[2]);
    // The old key alone is one member of a quorum of two.
    let reason = refused(c.submit_change(2, rotate.clone()));
    assert!(reason.contains("quorum"), "{reason}");
    rotate.sign(Party::Member(NodeId(1)), &s.members[0]);
    assert_eq!(accepted(c.submit_change(2, rotate)), 1);
    decide(&mut c, 1);
    // The member now signs with its new key (its operator restarts it with the new key file).
    c.nodes[2].ctx.signer = Arc::new(new_key.clone());
    for h in 2..=3 {
        let sell = s.bid(4, h, h);
        assert!(matches!(c.submit(sell), Some(Reply::Receipt(_))));
        decide(&mut c, h);
    }
    let chain = c.longest_chain().to_vec();
    let a = audit(&s, &chain);
    assert_eq!(
        a.registry().member(member.id).unwrap().public_key,
        new_key.public_key()
    );
    // Its batches of heights 2 and 3 are signed with the new key, and the audit accepts them.
    for b in &chain[1..] {
        let batch = b
            .body
            .process
            .batches
            .iter()
            .find(|x| x.body.home == member.id)
            .expect("the member's batch is in the block");
        batch
            .verify(&Ed25519::default(), &new_key.public_key())
            .unwrap();
    }
}

#[test]
fn an_accepted_change_survives_a_restart_of_its_node() {
    let s = consortium();
    let mut c = cluster(&s);
    let key = Ed25519Signer::from_seed([210; 32]);
    let mut admit = SignedChange::new(s.genesis.chain_id(), RegistryChange::Admit(newcomer(&key)));
    admit.sign(Party::Member(NodeId(1)), &s.members[0]);
    assert_eq!(accepted(c.submit_change(0, admit)), 1);
    // The node crashes before its gate closes and restarts from its log.
    c.crash(0);
    c.restart(0);
    decide(&mut c, 1);
    assert!(
        a_batch_of_height_1(&c, |b| b.body.changes.len() == 1),
        "the restarted node's batch carries the change"
    );
    let chain = c.longest_chain().to_vec();
    assert!(
        audit(&s, &chain)
            .registry()
            .participant(ParticipantId(100))
            .is_some()
    );
}
