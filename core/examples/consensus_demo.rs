//! The consensus core in memory, in three short stories: rounds committed by rotating
//! primaries; an objection that leads to revision 1 and a commit; a crashed primary skipped and
//! its round committed by the next primary.
//!
//! `cargo run -p tieline-core --example consensus_demo`

use std::sync::Arc;

use tieline_core::audit::audit_chain;
use tieline_core::block::{Block, ObjectionReason};
use tieline_core::clearing::{COEFFICIENT_SCALE, Cut, CutTerm, CutVariable};
use tieline_core::consensus::sim::Cluster;
use tieline_core::consensus::{ConstraintList, NoGridModel, SecurityCheck};
use tieline_core::crypto::Ed25519;
use tieline_core::genesis::ClearingRule;
use tieline_core::market::{BidStep, Side};
use tieline_core::sample::{SampleConsortium, sample_product};
use tieline_core::units::{NodeId, Price, Quantity, TieLineId};

fn open() -> Vec<Arc<dyn SecurityCheck>> {
    (0..4)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect()
}

fn name(s: &SampleConsortium, id: NodeId) -> String {
    s.genesis
        .member(id)
        .map_or(id.to_string(), |m| m.name.clone())
}

fn all_decided(height: usize) -> impl Fn(&Cluster) -> bool {
    move |c| {
        c.nodes
            .iter()
            .filter(|n| n.up)
            .all(|n| n.store.blocks.len() >= height)
    }
}

fn describe(s: &SampleConsortium, b: &Block) {
    let h = &b.header;
    let price = b
        .body
        .process
        .clearing
        .outcome
        .area_prices
        .first()
        .map_or("-".to_string(), |p| p.price.to_string());
    let signers: Vec<String> = b.certificate.signers().map(|n| name(s, n)).collect();
    println!(
        "  height {}: primary {} (view {}, revision {}), {} trades, price {}/MWh, committed with {}",
        h.height,
        name(s, h.primary),
        h.view,
        h.revision,
        b.body.trades.len(),
        price,
        signers.join(", ")
    );
}

fn finish(s: &SampleConsortium, c: &Cluster) {
    assert_eq!(c.disagreement(), None, "nodes disagree");
    for n in &c.nodes {
        audit_chain(&s.genesis, &Ed25519::default(), &n.store.blocks).expect("chain audits clean");
    }
    println!("  every node holds the same chain, and it audits clean\n");
}

fn main() {
    println!("1. Rounds committed by rotating primaries");
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    for h in 1..=4u64 {
        for i in 0..s.participants.len() {
            c.submit(s.bid(i, h, h * 1000 + i as u64));
        }
        c.run_until(50_000, all_decided(h as usize));
    }
    for b in &c.nodes[0].store.blocks {
        describe(&s, b);
    }
    finish(&s, &c);

    println!("2. An objection leads to revision 1 and a commit");
    let mut s = SampleConsortium::new(4, 2);
    s.genesis.clearing.rule = ClearingRule::ZonalCoupling;
    // Area 3 imports over tie lines 2 (from area 2) and 3 (towards area 4).
    let term = |t: u16, sign: i64| CutTerm {
        variable: CutVariable::TieFlow(TieLineId(t)),
        coefficient: sign * COEFFICIENT_SCALE,
    };
    let limit = Cut {
        product: sample_product(1),
        label: 1,
        terms: vec![term(2, 1), term(3, -1)],
        limit: Quantity(40 * Quantity::SCALE),
    };
    let mut security = open();
    security[2] = Arc::new(ConstraintList {
        constraints: vec![limit],
    });
    let mut c = Cluster::from_sample(&s, security);
    c.start();
    let step = |p: i64, q: i64| BidStep {
        price: Price(p * Price::SCALE),
        quantity: Quantity(q * Quantity::SCALE),
    };
    c.submit(s.bid_with(0, Side::Sell, vec![step(10, 100)], 1, 1));
    c.submit(s.bid_with(5, Side::Buy, vec![step(90, 100)], 1, 1));
    println!("  a seller in Area 1 offers 100 MWh at 10, a buyer in Area 3 bids 100 MWh at 90;");
    println!(
        "  Exchange 3 may import at most 40 MWh into Area 3, a limit of its grid only it knows"
    );
    c.run_until(50_000, all_decided(1));
    let b = &c.nodes[0].store.blocks[0];
    for o in &b.body.process.objections {
        if let ObjectionReason::Security { cuts } = &o.body.reason {
            println!(
                "  revision {} traded 100 MWh; {} objected with a cut: import into Area 3 <= {} MWh",
                o.body.revision,
                name(&s, o.body.objector),
                cuts[0].limit
            );
        }
    }
    for t in &b.body.trades {
        println!(
            "  revision {}: participant {} {:?} {} MWh at {}/MWh",
            b.header.revision, t.participant, t.side, t.quantity, t.price
        );
    }
    describe(&s, b);
    finish(&s, &c);

    println!("3. A crashed primary is skipped and its round committed by the next");
    let s = SampleConsortium::new(4, 2);
    let mut c = Cluster::from_sample(&s, open());
    c.start();
    for i in 0..s.participants.len() {
        c.submit(s.bid(i, 1, 1000 + i as u64));
    }
    let p0 = s.genesis.primary(1, 0);
    let i0 = c
        .nodes
        .iter()
        .position(|n| n.ctx.me == p0)
        .expect("a member");
    c.crash(i0);
    println!(
        "  {} (primary of height 1, view 0) crashed before proposing",
        name(&s, p0)
    );
    c.run_until(50_000, all_decided(1));
    let b = c.longest_chain()[0].clone();
    let cert = b
        .body
        .process
        .skip_certificate
        .as_ref()
        .expect("a skip certificate");
    let voters: Vec<String> = cert.voters().map(|v| name(&s, v)).collect();
    println!(
        "  skip certificate for view {} signed by {}",
        cert.view,
        voters.join(", ")
    );
    let skipped: Vec<String> = b
        .body
        .process
        .skipped
        .iter()
        .map(|n| name(&s, *n))
        .collect();
    describe(&s, &b);
    println!(
        "  skipped primaries recorded in the block: {}",
        skipped.join(", ")
    );
    c.restart(i0);
    c.run_until(50_000, all_decided(2));
    println!(
        "  {} restarted and caught up to height {}",
        name(&s, p0),
        c.nodes[i0].store.blocks.len()
    );
    finish(&s, &c);
}
