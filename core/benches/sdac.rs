//! A round at the scale of the European single day-ahead coupling (SDAC), through the real
//! consensus in memory: 27 members (one bidding area each) joined by 40 tie lines, the 96
//! quarter-hours of a delivery day as products, 1,000,000 bid steps in bids of 1 to 32 steps,
//! every bid signed with ed25519 by one of 1,080 participants, cleared by zonal coupling.
//!
//! `cargo bench -p tieline-core --bench sdac` (release). `SDAC_STEPS` sets the number of bid
//! steps (default 1,000,000).
//!
//! A deployment runs each member on its own machine; the in-memory run shares this machine's
//! cores among all 27. So besides the whole run's wall time it reports the round's critical
//! path from gate closure ([`Cluster::critical_path`]: each member's steps timed, a member
//! busy one step at a time, messages arriving when sent; plus the proposal's compact frame,
//! encoded by the primary and resolved by a verifier), and its three parts measured on
//! their own on the committed block:
//! - `clear_s`: the primary's clearing of the block's input (zonal coupling, 96 programmes);
//! - `verify_s`: one verifier's complete check of the body (every bid and batch signature,
//!   the selection rules, the clearing certificate; the members here have no grid model);
//! - `commit_s`: the votes to commit: checking the quorum certificate twice (endorsement and
//!   commit) over the signers the block requires.
//!
//! It prints each, the largest message sent as a member sends it (its compact frame: batches
//! by digest, awards and trades by bid position, spec 1.3) against the frame limit, the same
//! message encoded whole for comparison, the frame of a revision 1 (one quarter-hour's busiest
//! tie flow cut to half and that product cleared again) as edits of revision 0, and a final
//! JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tieline_core::block::{Vote, VoteKind};
use tieline_core::clearing::{COEFFICIENT_SCALE, Cut, CutTerm, CutVariable};
use tieline_core::clearing::{Clearing, ZonalCoupling};
use tieline_core::consensus::compact::{self, BatchStore};
use tieline_core::consensus::content::ContentRules;
use tieline_core::consensus::sim::Cluster;
use tieline_core::consensus::wire::MAX_WIRE_LEN;
use tieline_core::consensus::{Message, Proposal};
use tieline_core::consensus::{NoGridModel, Reply, SecurityCheck};
use tieline_core::crypto::{Ed25519, PublicKey};
use tieline_core::encoding::Tagged;
use tieline_core::genesis::ClearingRule;
use tieline_core::market::{BidStep, Product, Settlement, Side, SignedBid, Term};
use tieline_core::sample::SampleConsortium;
use tieline_core::units::{AreaId, Price, Quantity, TieLineId, Timestamp};

const MEMBERS: usize = 27;
const TIE_LINES: usize = 40;
const PERIODS: u64 = 96;
const PARTICIPANTS_PER_MEMBER: usize = 40;
const MAX_STEPS_PER_BID: usize = 32;
/// 2026-01-02T00:00Z, the delivery day.
const DELIVERY_DAY_MS: u64 = 1_767_312_000_000;

fn steps_wanted() -> usize {
    std::env::var("SDAC_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The sample consortium of 27 members, its ring of 27 tie lines closed by 13 chords (area
/// `i` to area `i + 9`), capacities of 100 to 500 MWh per quarter-hour, zonal coupling.
fn consortium() -> SampleConsortium {
    let mut s = SampleConsortium::new(MEMBERS, PARTICIPANTS_PER_MEMBER);
    let g = &mut s.genesis;
    g.chain_name = "tieline-sdac".into();
    g.clearing.rule = ClearingRule::ZonalCoupling;
    let ring = g.tie_lines.clone();
    let template = ring[0].clone();
    for k in 0..TIE_LINES - ring.len() {
        let mut t = template.clone();
        t.id = TieLineId((ring.len() + k + 1) as u16);
        t.from = AreaId(k as u16 + 1);
        t.to = AreaId(((k + 9) % MEMBERS) as u16 + 1);
        g.tie_lines.push(t);
    }
    for (i, t) in g.tie_lines.iter_mut().enumerate() {
        let mwh = 100 + (i as i64 * 137) % 400;
        t.capacity_forward = Quantity(mwh * Quantity::SCALE);
        t.capacity_backward = Quantity((mwh + 50) * Quantity::SCALE);
    }
    g.validate().expect("the SDAC genesis is valid");
    s
}

/// The `steps` bid steps of the round, in bids of 1 to 32 steps, signed. Bid `i` is by
/// participant `i mod 1,080` (nonces rising in `i`), for a quarter-hour hashed from `i`;
/// prices follow its area's level and a daily shape (higher from 08:00 to 20:00), sellers'
/// rising and buyers' falling by step.
fn bids(s: &SampleConsortium, steps: usize) -> Vec<SignedBid> {
    let participants = s.genesis.participants.len();
    let mut out = Vec::new();
    let mut left = steps;
    let mut i = 0usize;
    while left > 0 {
        let n = (1 + (i * 7_919) % MAX_STEPS_PER_BID).min(left);
        left -= n;
        let p = i % participants;
        let round = i / participants;
        // A quarter-hour by a multiplicative hash of the bid's index, so that every
        // quarter-hour has producers and consumers.
        let period = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % PERIODS;
        let area = (p / PARTICIPANTS_PER_MEMBER) as i64;
        // Even participants produce, odd ones consume.
        let side = if p % 2 == 0 { Side::Sell } else { Side::Buy };
        let hour = period / 4;
        let shape = if (8..20).contains(&hour) { 25 } else { 0 };
        let level = 30 + (area * 11) % 40 + shape;
        let steps: Vec<BidStep> = (0..n as i64)
            .map(|k| {
                let euros = match side {
                    Side::Sell => level - 10 + (i as i64 % 23) + 2 * k,
                    Side::Buy => level + 25 + (i as i64 % 19) - 2 * k,
                };
                BidStep {
                    price: Price(euros * Price::SCALE),
                    quantity: Quantity(100 + ((i as i64) * 31 + k * 17) % 4_900),
                }
            })
            .collect();
        let product = Product {
            delivery_start: Timestamp(DELIVERY_DAY_MS + period * 15 * 60_000),
            delivery_minutes: 15,
            term: Term::Spot,
            settlement: Settlement::Physical,
        };
        let nonce = round as u64 + 1;
        let at = Timestamp(1_767_225_000_000 + i as u64);
        out.push(s.bid_for(p, side, steps, product, nonce, at));
        i += 1;
    }
    out
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let steps = steps_wanted();
    let s = consortium();
    let g = &s.genesis;
    let t = Instant::now();
    let bids = bids(&s, steps);
    println!(
        "sdac: {} members, {} tie lines, {} quarter-hours, {} bid steps in {} signed bids from {} participants (signed in {:.1} s)",
        g.members.len(),
        g.tie_lines.len(),
        PERIODS,
        steps,
        bids.len(),
        g.participants.len(),
        secs(t.elapsed())
    );

    let checks: Vec<Arc<dyn SecurityCheck>> = (0..MEMBERS)
        .map(|_| Arc::new(NoGridModel) as Arc<dyn SecurityCheck>)
        .collect();
    let mut cluster = Cluster::from_sample(&s, checks);
    cluster.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    cluster.measure_messages = true;
    cluster.start();
    let t = Instant::now();
    for bid in bids {
        match cluster.submit(bid) {
            Some(Reply::Receipt(_)) => {}
            other => panic!("a bid was refused: {other:?}"),
        }
    }
    let intake = t.elapsed();
    println!(
        "intake: {:.1} s for every bid at its home node ({:.0} bids/s)",
        secs(intake),
        cluster.receipted().len() as f64 / secs(intake)
    );

    // The round, from gate closure.
    cluster.reset_critical_path();
    let t = Instant::now();
    let done = cluster.run_until(2_000_000, |cl| {
        cl.nodes.iter().all(|n| !n.store.blocks.is_empty())
    });
    let wall = t.elapsed();
    assert!(done, "the round did not commit within the event budget");
    assert!(cluster.disagreement().is_none(), "members disagree");
    let critical = cluster.critical_path();
    let block = cluster.nodes[0].store.blocks[0].clone();
    let h = &block.header;
    let p = &block.body.process;
    let bids_in: usize = p.batches.iter().map(|b| b.body.bids.len()).sum();
    println!(
        "round: committed height {} in view {} revision {}: {} bids in {} batches, {} rejected, {} awards, {} trades, welfare {}, congestion rent {}",
        h.height,
        h.view,
        h.revision,
        bids_in,
        p.batches.len(),
        p.rejections.len(),
        p.clearing.outcome.awards.len(),
        block.body.trades.len(),
        p.clearing.outcome.welfare,
        p.clearing.outcome.congestion_rent
    );

    // The parts, each on its own, on the committed block.
    let scheme = Ed25519::with_known_keys(g.public_keys());
    let committed = Default::default();
    let rules = ContentRules {
        genesis: g,
        chain_id: g.chain_id(),
        scheme: &scheme,
        clearing: &ZonalCoupling,
        committed: &committed,
    };
    let t = Instant::now();
    rules
        .verify_body(
            h.height,
            h.revision,
            &block.body,
            &mut |sb: &SignedBid, key: &PublicKey| sb.verify(&scheme, key).is_ok(),
        )
        .expect("the committed body verifies");
    let verify = t.elapsed();
    let mut clear = Duration::ZERO;
    let mut revised = None;
    rules
        .verify_body_then(
            h.height,
            h.revision,
            &block.body,
            &mut |_: &SignedBid, _: &PublicKey| true,
            |input, _| {
                let t = Instant::now();
                let again = ZonalCoupling
                    .clear(input)
                    .expect("the block's input clears");
                clear = t.elapsed();
                assert_eq!(again.outcome.welfare, p.clearing.outcome.welfare);
                // A revision as a security objection would make one: the busiest tie flow of
                // one quarter-hour cut to half, that product cleared again.
                let busiest = p
                    .clearing
                    .outcome
                    .flows
                    .iter()
                    .max_by_key(|f| f.flow.0.abs())
                    .expect("the round schedules tie flows");
                let sign = busiest.flow.0.signum();
                let cuts = [Cut {
                    product: busiest.product,
                    label: 1,
                    terms: vec![CutTerm {
                        variable: CutVariable::TieFlow(busiest.tie_line),
                        coefficient: sign * COEFFICIENT_SCALE,
                    }],
                    limit: Quantity(busiest.flow.0.abs() / 2),
                }];
                let mut cut_input = input.clone();
                cut_input.cuts = &cuts;
                let cleared = ZonalCoupling
                    .clear(&cut_input)
                    .expect("the cut round clears");
                let mut body = block.body.clone();
                body.process.clearing.cuts = cuts.to_vec();
                body.process.clearing.outcome = cleared.outcome;
                body.trades = cleared.trades;
                revised = Some(body);
                Ok(())
            },
        )
        .expect("the committed body verifies");
    let required = block.body.required_signers(g);
    let t = Instant::now();
    for _ in 0..2 {
        block
            .certificate
            .verify(g, g.chain_id(), &scheme, &required)
            .expect("the commit certificate verifies");
    }
    let commit = t.elapsed();
    // The proposal's hop as a deployment makes it: the primary encodes its compact frame once,
    // a verifier decodes it and resolves it against the batches it holds (spec 1.3, frames).
    // The in-memory run passes messages whole, so these are added to its critical path. The
    // decided block stands in for the proposal: it carries the same body.
    let proposal = Message::Decided(Box::new(block.clone()));
    let t = Instant::now();
    let frame = compact::encode(&proposal);
    let encode = t.elapsed();
    let mut held = BatchStore::default();
    for b in &p.batches {
        held.insert(b.clone());
    }
    let t = Instant::now();
    let back = compact::Frame::from_canonical_bytes(&frame)
        .expect("the frame decodes")
        .resolve(|r| held.get(r).cloned())
        .expect("the frame resolves");
    let resolve = t.elapsed();
    assert!(back == proposal, "the frame resolves to the message");
    println!(
        "frame: {} bytes for the block, encoded in {:.3} s, decoded and resolved in {:.3} s (added to the critical path)",
        frame.len(),
        secs(encode),
        secs(resolve)
    );
    let critical = critical + encode + resolve;
    // Revision 1 of the round's proposal, sent as edits of revision 0 (spec 1.3, frames).
    let revision_0 = Proposal {
        // The frame does not check the stamp's signature; the state machine would.
        stamp: tieline_core::crypto::Signed {
            body: Vote {
                kind: VoteKind::Propose,
                chain_id: h.chain_id,
                height: h.height,
                view: h.view,
                revision: 0,
                block: h.digest(),
                voter: h.primary,
            },
            signature: tieline_core::crypto::Signature([0; 64]),
        },
        header: h.clone(),
        body: Arc::new(block.body.clone()),
        justification: None,
    };
    let mut revision_1 = revision_0.clone();
    revision_1.stamp.body.revision = 1;
    revision_1.header.revision = 1;
    revision_1.body = Arc::new(revised.expect("the revision was built"));
    let revision_1 = Message::Proposal(Box::new(revision_1));
    let whole_revision = compact::encode(&revision_1).len();
    let t = Instant::now();
    let edits = compact::encode_revision(&revision_1, &revision_0).expect("a later revision");
    let edits_encode = t.elapsed();
    let t = Instant::now();
    let back = compact::Frame::from_canonical_bytes(&edits)
        .expect("the revision frame decodes")
        .resolve_against(|r| held.get(r).cloned(), Some(&revision_0))
        .expect("the revision frame resolves");
    let edits_resolve = t.elapsed();
    assert!(
        back == revision_1,
        "the revision frame resolves to the revision"
    );
    println!(
        "revision 1 (one quarter-hour's busiest tie flow cut to half): {} bytes as edits of revision 0 ({:.3} s to encode, {:.3} s to resolve), {} as a whole frame",
        edits.len(),
        secs(edits_encode),
        secs(edits_resolve),
        whole_revision
    );
    let (largest, kind) = cluster.largest_message.unwrap_or((0, "none"));
    let (whole, whole_kind) = cluster.largest_whole_message.unwrap_or((0, "none"));

    println!(
        "clear {:.2} s (the primary's zonal coupling of {} quarter-hours); verify {:.2} s (one verifier: {} signatures, the selection and the certificate); commit {:.4} s (two quorum certificates of {} signers)",
        secs(clear),
        PERIODS,
        secs(verify),
        bids_in + p.batches.len(),
        secs(commit),
        block.certificate.signatures.len()
    );
    println!(
        "critical path {:.2} s from gate closure, the proposal's frame included (clear + verify + commit = {:.2} s); in-memory wall {:.2} s for all {} members on {} cores",
        secs(critical),
        secs(clear + verify + commit),
        secs(wall),
        MEMBERS,
        cluster.threads
    );
    println!(
        "largest message: {largest} bytes, a {kind} frame ({:.1} MiB; the frame limit is {} MiB, the target 16 MiB; encoded whole, the largest was {whole} bytes, a {whole_kind}, {:.1} MiB){}",
        largest as f64 / (1024.0 * 1024.0),
        MAX_WIRE_LEN / (1024 * 1024),
        whole as f64 / (1024.0 * 1024.0),
        if largest > MAX_WIRE_LEN {
            ": OVER THE FRAME LIMIT, a QUIC deployment could not send it"
        } else {
            ""
        }
    );
    println!(
        "{{\"members\":{},\"tie_lines\":{},\"periods\":{},\"bid_steps\":{},\"clear_s\":{:.3},\"verify_s\":{:.3},\"commit_s\":{:.4},\"critical_path_s\":{:.3},\"wall_s\":{:.3},\"largest_message_bytes\":{}}}",
        g.members.len(),
        g.tie_lines.len(),
        PERIODS,
        steps,
        secs(clear),
        secs(verify),
        secs(commit),
        secs(critical),
        secs(wall),
        largest
    );
}
