//! Bid priority that no bidder can fake (spec C4): among equal prices the home node's receipt
//! time ranks bids, never the bidder's own timestamp. Two sellers offer the same energy at the
//! same price into a demand that takes only one of them; the one its home node received first
//! sells, under every clearing rule, whatever either claims about when it made its bid.

use std::sync::Arc;

use tieline_core::audit::audit_chain;
use tieline_core::block::{Block, RejectionReason};
use tieline_core::consensus::sim::Cluster;
use tieline_core::consensus::{NoGridModel, Reply, SecurityCheck};
use tieline_core::crypto::Ed25519;
use tieline_core::genesis::ClearingRule;
use tieline_core::market::{BidStep, Side, SignedBid};
use tieline_core::sample::{SampleConsortium, sample_product};
use tieline_core::units::{ParticipantId, Price, Quantity, Timestamp};

const RULES: [ClearingRule; 3] = [
    ClearingRule::PayAsBid,
    ClearingRule::UniformPrice,
    ClearingRule::ZonalCoupling,
];

/// Three members, two participants each (participants 0 and 1 at home 1 in area 1, 2 and 3 at
/// home 2 in area 2, ...).
fn consortium(rule: ClearingRule) -> SampleConsortium {
    let mut s = SampleConsortium::new(3, 2);
    s.genesis.clearing.rule = rule;
    s.genesis.validate().unwrap();
    s
}

fn offer(s: &SampleConsortium, index: usize, side: Side, price: i64, made_at: u64) -> SignedBid {
    let step = BidStep {
        price: Price(price * Price::SCALE),
        quantity: Quantity(10 * Quantity::SCALE),
    };
    s.bid_for(
        index,
        side,
        vec![step],
        sample_product(1),
        1,
        Timestamp(made_at),
    )
}

/// The two sellers: of two home nodes, except under zonal coupling, where priority (spec C4)
/// ranks only the steps of one zone, so both trade in area 1 through its one home node.
fn sellers(rule: ClearingRule) -> (usize, usize) {
    if rule == ClearingRule::ZonalCoupling {
        (0, 1)
    } else {
        (0, 2)
    }
}

/// Runs height 1 with the two sellers' bids received in the order given, 50 ms apart, and
/// participant 3's buy after them; returns the committed block.
fn run(s: &SampleConsortium, first: SignedBid, second: SignedBid) -> Block {
    let open = (0..3)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect();
    let mut c = Cluster::from_sample(s, open);
    c.start();
    let now = c.now;
    for bid in [first, second, offer(s, 3, Side::Buy, 60, now)] {
        assert!(matches!(c.submit(bid), Some(Reply::Receipt(_))));
        c.advance(50);
    }
    assert!(c.run_until(100_000, |c| {
        c.nodes.iter().all(|n| !n.store.blocks.is_empty())
    }));
    let chain = c.longest_chain().to_vec();
    audit_chain(&s.genesis, &Ed25519::default(), &chain).expect("the chain audits clean");
    chain[0].clone()
}

fn sold(block: &Block, participant: ParticipantId) -> i64 {
    block
        .body
        .trades
        .iter()
        .filter(|t| t.participant == participant && t.side == Side::Sell)
        .map(|t| t.quantity.0)
        .sum()
}

#[test]
fn a_back_dated_bid_gains_nothing() {
    for rule in RULES {
        let s = consortium(rule);
        let (i, j) = sellers(rule);
        let (honest, cheat) = (s.genesis.participants[i].id, s.genesis.participants[j].id);
        let made = 1_767_225_000_000;
        // The honest seller's bid arrives first; the other arrives 50 ms later, claiming to
        // have been made a day earlier.
        let block = run(
            &s,
            offer(&s, i, Side::Sell, 20, made),
            offer(&s, j, Side::Sell, 20, made - 86_400_000),
        );
        assert_eq!(sold(&block, honest), 10 * Quantity::SCALE, "{rule:?}");
        assert_eq!(sold(&block, cheat), 0, "{rule:?}");
        if rule == ClearingRule::PayAsBid {
            // The pair trades at the price of the bid its home node received first.
            assert!(
                block
                    .body
                    .trades
                    .iter()
                    .all(|t| t.price.0 == 20 * Price::SCALE)
            );
        }
        // Nothing is lost: the unsold offer is in the block, only without energy.
        assert!(block.body.process.bid_count() == 3);
        assert!(
            block
                .body
                .process
                .rejections
                .iter()
                .all(|r| r.reason != RejectionReason::Invalid)
        );
    }
}

#[test]
fn the_bid_received_first_has_priority_whoever_makes_it() {
    for rule in RULES {
        let s = consortium(rule);
        let (i, j) = sellers(rule);
        let (a, b) = (s.genesis.participants[i].id, s.genesis.participants[j].id);
        let made = 1_767_225_000_000;
        // The same two offers with honest timestamps, received in either order: the first
        // received sells, so the order is the home nodes' and not the bid ids'.
        let block = run(
            &s,
            offer(&s, i, Side::Sell, 20, made),
            offer(&s, j, Side::Sell, 20, made),
        );
        assert_eq!(
            (sold(&block, a), sold(&block, b)),
            (10 * Quantity::SCALE, 0),
            "{rule:?}"
        );
        let block = run(
            &s,
            offer(&s, j, Side::Sell, 20, made),
            offer(&s, i, Side::Sell, 20, made),
        );
        assert_eq!(
            (sold(&block, a), sold(&block, b)),
            (0, 10 * Quantity::SCALE),
            "{rule:?}"
        );
    }
}
