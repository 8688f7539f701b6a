//! Clearing and verification time of each rule on large random markets, measured in one run.
//!
//! `cargo bench -p tieline-core --bench clearing` (release). Sizes with `UNIFORM_STEPS`
//! (default 1,000,000), `ZONAL_STEPS` (default 100,000) and `PAB_STEPS` (default 1,000,000).

use std::time::{Duration, Instant};

use tieline_core::clearing::{
    Cleared, Clearing, ClearingInput, PayAsBid, UniformPrice, ZonalCoupling,
};
use tieline_core::crypto::Digest;
use tieline_core::genesis::{Area, ClearingParams, ClearingRule, TieLine};
use tieline_core::market::{Bid, BidStep, Product, Settlement, Side, Term};
use tieline_core::units::{AreaId, ParticipantId, Price, Quantity, TieLineId, Timestamp};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: a fixed, seedable sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const STEPS_PER_BID: usize = 4;

/// `steps` bid steps in `areas` areas; area `a` has its price level shifted by `a * 8`.
fn market(steps: usize, areas: u16, seed: u64) -> Vec<Bid> {
    let mut rng = Rng(seed);
    let product = Product {
        delivery_start: Timestamp(1_767_225_600_000),
        delivery_minutes: 60,
        term: Term::Spot,
        settlement: Settlement::Physical,
    };
    (0..steps / STEPS_PER_BID)
        .map(|i| {
            let area = (rng.below(u64::from(areas)) + 1) as u16;
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            // Prices in cents around 50/MWh, plus the area's level; steps 0.5 apart.
            let base = 3_000 + rng.below(4_000) as i64 + i64::from(area) * 800;
            let steps = (0..STEPS_PER_BID as i64)
                .map(|k| BidStep {
                    price: Price(
                        (match side {
                            Side::Sell => base + 50 * k,
                            Side::Buy => base + 1_000 - 50 * k,
                        }) * 100,
                    ),
                    quantity: Quantity(1_000 + rng.below(9_000) as i64),
                })
                .collect();
            Bid {
                chain_id: Digest::ZERO,
                participant: ParticipantId(i as u32),
                area: AreaId(area),
                bus: None,
                side,
                product,
                steps,
                nonce: i as u64,
                timestamp: Timestamp(rng.below(1_000)),
            }
        })
        .collect()
}

fn params(rule: ClearingRule) -> ClearingParams {
    ClearingParams {
        rule,
        price_tick: Price(100),
        price_floor: Price(-5_000_000),
        price_cap: Price(30_000_000),
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.expect("at least one run"))
}

fn measure(name: &str, rule: &dyn Clearing, input: &ClearingInput<'_>, steps: usize, runs: usize) {
    let (clear, cleared): (Duration, Cleared) =
        best_of(runs, || rule.clear(input).expect("clears"));
    let (verify, verdict) = best_of(runs, || rule.verify(input, &cleared));
    verdict.expect("verifies");
    let o = &cleared.outcome;
    println!(
        "{name}: {steps} bid steps, {} areas, {} tie lines: clear {:.1} ms, verify {:.1} ms, clear/verify {:.1}x; {} awards, {} trades, welfare {}, congestion rent {}",
        input.areas.len(),
        input.tie_lines.len(),
        clear.as_secs_f64() * 1e3,
        verify.as_secs_f64() * 1e3,
        clear.as_secs_f64() / verify.as_secs_f64(),
        o.awards.len(),
        cleared.trades.len(),
        o.welfare,
        o.congestion_rent,
    );
}

fn areas(n: u16) -> Vec<Area> {
    (1..=n)
        .map(|i| Area {
            id: AreaId(i),
            name: format!("A{i}"),
            eic: None,
        })
        .collect()
}

fn main() {
    let uniform_steps = env("UNIFORM_STEPS", 1_000_000);
    let zonal_steps = env("ZONAL_STEPS", 100_000);
    let pab_steps = env("PAB_STEPS", 1_000_000);

    let bids = market(uniform_steps, 1, 1);
    let ids: Vec<(Digest, &Bid)> = bids.iter().map(|b| (b.id(), b)).collect();
    let one = areas(1);
    let input = ClearingInput {
        params: params(ClearingRule::UniformPrice),
        areas: &one,
        tie_lines: vec![],
        bids: ids.clone(),
        received: bids.iter().map(|b| b.timestamp).collect(),
        cuts: &[],
    };
    measure("uniform-price", &UniformPrice, &input, uniform_steps, 5);

    let bids_pab = market(pab_steps, 1, 2);
    let input = ClearingInput {
        params: params(ClearingRule::PayAsBid),
        areas: &one,
        tie_lines: vec![],
        bids: bids_pab.iter().map(|b| (b.id(), b)).collect(),
        received: bids_pab.iter().map(|b| b.timestamp).collect(),
        cuts: &[],
    };
    measure("pay-as-bid", &PayAsBid, &input, pab_steps, 3);

    // Four areas in a ring with one diagonal; capacities small enough to congest.
    let bids = market(zonal_steps, 4, 3);
    let four = areas(4);
    let line = |id: u16, from: u16, to: u16, mwh: i64| TieLine {
        id: TieLineId(id),
        from: AreaId(from),
        to: AreaId(to),
        capacity_forward: Quantity(mwh * 1_000),
        capacity_backward: Quantity(mwh * 1_000),
        from_bus: None,
        to_bus: None,
    };
    let input = ClearingInput {
        params: params(ClearingRule::ZonalCoupling),
        areas: &four,
        tie_lines: vec![
            line(1, 1, 2, 2_000),
            line(2, 2, 3, 1_500),
            line(3, 3, 4, 2_500),
            line(4, 4, 1, 1_000),
            line(5, 1, 3, 500),
        ],
        bids: bids.iter().map(|b| (b.id(), b)).collect(),
        received: bids.iter().map(|b| b.timestamp).collect(),
        cuts: &[],
    };
    measure("zonal-coupling", &ZonalCoupling, &input, zonal_steps, 2);
}
