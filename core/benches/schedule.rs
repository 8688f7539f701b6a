//! What a gate schedule (spec D24, N4) costs the block rules: the bid selection of one round
//! of `BIDS` bids (default 200,000) spread over a day's 96 quarter-hours, with continuous
//! rounds and under the day-ahead schedule, beside one calendar placement of a period
//! (`GateSchedule::height_of`), measured in one run.
//!
//! `cargo bench -p tieline-core --bench schedule` (release). Signatures are taken as valid:
//! the figure is the selection's own work.

use std::time::Instant;

use tieline_core::block::ProcessData;
use tieline_core::clearing::{ClearingOutcome, ClearingRecord};
use tieline_core::consensus::content::select_bids;
use tieline_core::crypto::{Signature, Signed};
use tieline_core::genesis::ClearingRule;
use tieline_core::genesis::Genesis;
use tieline_core::market::{Bid, BidStep, Product, Settlement, Side, Term};
use tieline_core::sample::SampleConsortium;
use tieline_core::schedule::GateSchedule;
use tieline_core::units::{Price, Quantity, Timestamp};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn selection_ms(genesis: &Genesis, process: &ProcessData, height: u64) -> (f64, usize) {
    let chain_id = genesis.chain_id();
    let mut accept = |_: &Signed<Bid>, _: &tieline_core::crypto::PublicKey| true;
    let t = Instant::now();
    let s = select_bids(
        genesis,
        &chain_id,
        process,
        height,
        0,
        &Default::default(),
        &mut accept,
    );
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(s.rejections.is_empty(), "{:?}", s.rejections.first());
    (ms, s.bids.len())
}

fn main() {
    let n = env("BIDS", 200_000);
    let mut s = SampleConsortium::new(4, 25);
    let schedule = GateSchedule {
        zone: "Europe/Brussels".into(),
        gate_second: 12 * 3600,
        resolution_minutes: 15,
        first_delivery_day: GateSchedule::parse_day("2026-12-01").unwrap(),
    };
    let height = 9;
    let periods = schedule.periods_of(height);
    let mut scheduled = s.genesis.clone();
    scheduled.timing.gate_ms = 0;
    scheduled.timing.schedule = Some(schedule.clone());
    scheduled.validate().unwrap();

    // One batch per member; bids of its participants over the day's periods.
    let batches_for = |s: &SampleConsortium| {
        let chain_id = s.genesis.chain_id();
        let mut per_member = vec![Vec::new(); s.members.len()];
        for i in 0..n {
            let p = &s.genesis.participants[i % s.genesis.participants.len()];
            let m = usize::from(p.home.0) - 1;
            let bid = Bid {
                chain_id,
                participant: p.id,
                area: p.area,
                bus: None,
                side: if i % 2 == 0 { Side::Sell } else { Side::Buy },
                product: Product {
                    delivery_start: periods[i % periods.len()],
                    delivery_minutes: 15,
                    term: Term::Spot,
                    settlement: Settlement::Physical,
                },
                steps: vec![BidStep {
                    price: Price(40 * Price::SCALE),
                    quantity: Quantity(Quantity::SCALE),
                }],
                nonce: i as u64,
                timestamp: Timestamp(i as u64),
            };
            per_member[m].push(Signed {
                body: bid,
                signature: Signature([0; 64]),
            });
        }
        per_member
            .into_iter()
            .enumerate()
            .map(|(m, bids)| s.batch(m, height, bids))
            .collect::<Vec<_>>()
    };
    let process_of = |s: &SampleConsortium| ProcessData {
        batches: batches_for(s),
        clearing: ClearingRecord {
            rule: ClearingRule::UniformPrice,
            cuts: vec![],
            outcome: ClearingOutcome::default(),
        },
        objections: vec![],
        appeals: vec![],
        rejections: vec![],
        skipped: vec![],
        skip_certificate: None,
        evidence: vec![],
    };
    let continuous = process_of(&s);
    let (plain_ms, plain_n) = selection_ms(&s.genesis, &continuous, height);
    s.genesis = scheduled;
    let day_ahead = process_of(&s);
    let (sched_ms, sched_n) = selection_ms(&s.genesis, &day_ahead, height);
    assert_eq!(plain_n, sched_n);

    let calls = 200_000;
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..calls {
        sum += schedule
            .height_of(periods[i % periods.len()], 15)
            .expect("a period of the day");
    }
    let per_call = t.elapsed().as_secs_f64() * 1e9 / calls as f64;
    assert_eq!(sum, height * calls as u64);
    println!(
        "select_bids of {n} bids over {} periods: continuous rounds {plain_ms:.1} ms, day-ahead schedule {sched_ms:.1} ms ({:+.0} ns per bid); one calendar placement (height_of) {per_call:.0} ns",
        periods.len(),
        (sched_ms - plain_ms) * 1e6 / n as f64,
    );
}
