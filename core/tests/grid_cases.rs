//! Private grid checks beyond RTS-GMLC (spec 3.8): areas that fall apart into islands, quadratic
//! costs, and public cases split by zone, negotiated through the real consensus in memory and
//! compared with the independent centralised reference of `fixtures/grids/`.

use std::collections::BTreeMap;

use tieline_core::block::Block;
use tieline_core::grid::security::BALANCE_LABEL;
use tieline_core::grid::{
    AreaModel, AreaModelError, Case, GridConsortium, GridConsortiumOptions, SplitColumn,
};
use tieline_core::market::Side;
use tieline_core::units::AreaId;

/// The centralised references, written by `fixtures/grids/reference.py`.
const REFERENCE: &str = include_str!("fixtures/grids/reference.toml");
const ACTIVSG500: &str = include_str!("../../data/grids/case_ACTIVSg500.m");
const ACTIVSG2000: &str = include_str!("../../data/grids/case_ACTIVSg2000.m");

/// Most simulated events one negotiation may take.
const MAX_EVENTS: usize = 500_000;

fn reference_cost(case: &str, split: &str, tie: u32, line: u32) -> f64 {
    let doc: toml::Value = REFERENCE.parse().expect("reference.toml parses");
    doc["scenario"]
        .as_array()
        .expect("scenarios")
        .iter()
        .find(|s| {
            s["case"].as_str() == Some(case)
                && s["split"].as_str() == Some(split)
                && s["tie_rating_percent"].as_integer() == Some(i64::from(tie))
                && s["line_rating_percent"].as_integer() == Some(i64::from(line))
        })
        .and_then(|s| s["total_cost"].as_float())
        .unwrap_or_else(|| panic!("no reference for {case} {split} {tie}/{line}"))
}

fn consortium(text: &str, split: SplitColumn, tie: u32) -> GridConsortium {
    GridConsortium::from_case(
        text,
        &GridConsortiumOptions {
            split,
            ..GridConsortiumOptions::rts_gmlc(tie)
        },
    )
    .expect("the case makes a consortium")
}

/// Net injection (kWh) of the block's awards at each bus, plus each tie flow at its landings.
fn bus_injections(c: &GridConsortium, block: &Block) -> BTreeMap<u32, i64> {
    let mut bids = BTreeMap::new();
    for sb in block
        .body
        .process
        .batches
        .iter()
        .flat_map(|b| b.body.bids.iter())
    {
        bids.insert(sb.body.id(), (sb.body.bus.map_or(0, |b| b.0), sb.body.side));
    }
    let mut out: BTreeMap<u32, i64> = BTreeMap::new();
    for a in &block.body.process.clearing.outcome.awards {
        let (bus, side) = bids[&a.bid];
        *out.entry(bus).or_default() += match side {
            Side::Sell => a.quantity.0,
            Side::Buy => -a.quantity.0,
        };
    }
    for f in &block.body.process.clearing.outcome.flows {
        let t = c.genesis.tie_line(f.tie_line).expect("a tie line");
        *out.entry(t.from_bus.expect("landing").0).or_default() -= f.flow.0;
        *out.entry(t.to_bus.expect("landing").0).or_default() += f.flow.0;
    }
    out
}

/// Three areas by hand. Area 1 is buses 1-2 joined by a 60 MW line, and bus 3, an island
/// joined to the consortium only by a tie line to area 2; area 2 is buses 4-5; area 3 is bus 6.
/// Generators at 10 (bus 1), 20 (bus 4) and 30 (bus 6) per MWh, 200 MW each; loads 100 (bus 2),
/// 50 (bus 3), 50 (bus 5) and 30 (bus 6). The optimum: bus 1 makes 90 (60 over its line to
/// bus 2, 30 to area 3), bus 4 makes 140 (its own 50, 40 to bus 2, 50 to the island), cost
/// 90 * 10 + 140 * 20 = 3700 per hour. Zonal coupling alone would serve the island from bus 1.
const THREE_AREAS: &str = "function mpc = islands
mpc.version = '2';
mpc.baseMVA = 100;
mpc.bus = [
	1	3	0	0	0	0	1	1	0	230	1	1.1	0.9;
	2	1	100	0	0	0	1	1	0	230	1	1.1	0.9;
	3	1	50	0	0	0	1	1	0	230	1	1.1	0.9;
	4	2	0	0	0	0	2	1	0	230	1	1.1	0.9;
	5	1	50	0	0	0	2	1	0	230	1	1.1	0.9;
	6	2	30	0	0	0	3	1	0	230	1	1.1	0.9;
];
mpc.gen = [
	1	0	0	0	0	1	100	1	200	0;
	4	0	0	0	0	1	100	1	200	0;
	6	0	0	0	0	1	100	1	200	0;
];
mpc.branch = [
	1	2	0	0.1	0	60	0	0	0	0	1	-360	360;
	4	5	0	0.1	0	0	0	0	0	0	1	-360	360;
	2	5	0	0.1	0	100	0	0	0	0	1	-360	360;
	3	4	0	0.1	0	100	0	0	0	0	1	-360	360;
	6	1	0	0.1	0	100	0	0	0	0	1	-360	360;
];
mpc.gencost = [
	2	0	0	2	10	0;
	2	0	0	2	20	0;
	2	0	0	2	30	0;
];
";

#[test]
fn an_island_balances_through_its_tie_line_and_the_negotiation_reaches_the_optimum() {
    let c = consortium(THREE_AREAS, SplitColumn::Area, 100);
    let models = c.area_models().unwrap();
    assert_eq!(
        models.iter().map(AreaModel::components).collect::<Vec<_>>(),
        vec![2, 1, 1],
        "area 1 has two islands"
    );
    let block = c.negotiate(MAX_EVENTS).unwrap();
    assert_eq!(block.header.view, 0);
    assert!(
        block.header.revision >= 1,
        "zonal coupling alone is not secure"
    );
    let cuts = &block.body.process.clearing.cuts;
    assert!(
        cuts.iter()
            .any(|k| k.label >= BALANCE_LABEL && k.label != u32::MAX),
        "area 1 balances its island with a cut: {cuts:?}"
    );
    let injection = bus_injections(&c, &block);
    // The island (bus 3) balances by itself, within the clearing's rounding.
    assert!(
        injection.get(&3).copied().unwrap_or(0).abs() <= 10,
        "{injection:?}"
    );
    // The line 1-2 carries bus 1's net injection: at most its 60 MW.
    assert!(injection[&1] <= 60_000 + 10, "{injection:?}");
    let cost = c.generation_cost(&block);
    assert!((cost - 3700.0).abs() / 3700.0 < 1e-6, "cost {cost}");
}

#[test]
fn a_bus_with_no_path_to_anything_is_refused_naming_bus_and_area() {
    let c = consortium(THREE_AREAS, SplitColumn::Area, 100);
    // Area 1's file without the tie line to bus 3 in the genesis: bus 3 is cut off.
    let mut genesis = c.genesis.clone();
    genesis
        .tie_lines
        .retain(|t| t.from_bus.map(|b| b.0) != Some(3) && t.to_bus.map(|b| b.0) != Some(3));
    let text = &c.area_files[0].text;
    let err = AreaModel::from_matpower(text, AreaId(1), &genesis).unwrap_err();
    assert_eq!(
        err,
        AreaModelError::IsolatedBus {
            bus: 3,
            area: AreaId(1)
        }
    );
    assert!(err.to_string().contains("bus 3 of area 1"), "{err}");
}

/// Negotiates `text` split by `split` with ties at `tie`% and compares the committed
/// dispatch's generation cost with the centralised reference (within 1e-6 relative); every
/// island of every area balances.
fn validate(
    name: &str,
    text: &str,
    split: SplitColumn,
    tie: u32,
    members: usize,
    components: usize,
) {
    let c = consortium(text, split, tie);
    assert_eq!(c.genesis.members.len(), members);
    let models = c.area_models().unwrap();
    assert_eq!(
        models.iter().map(AreaModel::components).sum::<usize>(),
        components,
        "the areas' islands"
    );
    let block = c.negotiate(MAX_EVENTS).unwrap();
    assert_eq!(block.header.view, 0, "committed without a fault skip");
    assert!(block.body.process.rejections.is_empty());
    let cost = c.generation_cost(&block);
    let split_name = match split {
        SplitColumn::Area => "area",
        SplitColumn::Zone => "zone",
    };
    let reference = reference_cost(name, split_name, tie, 100);
    let gap = (cost - reference).abs() / reference;
    println!(
        "{name} by {split_name}, ties at {tie}%: negotiated {cost:.4}, centralised {reference:.4}, relative gap {gap:.2e}, revision {}, {} cuts",
        block.header.revision,
        block.body.process.clearing.cuts.len()
    );
    assert!(gap < 1e-6, "gap {gap:.2e}");
    // Every island balances, within the clearing's rounding of a few kWh per island.
    let case = Case::parse(text).unwrap();
    let injection = bus_injections(&c, &block);
    for (m, model) in c.area_files.iter().zip(&models) {
        let area = Case::parse(&m.text).unwrap();
        let network = tieline_core::grid::Network::new(&area).unwrap();
        let mut per_island = vec![0i64; model.components()];
        for (k, bus) in network.buses.iter().enumerate() {
            per_island[network.component_of[k]] += injection.get(bus).copied().unwrap_or(0);
        }
        assert!(
            per_island.iter().all(|x| x.abs() <= 20),
            "{}: {per_island:?}",
            m.file_name
        );
    }
    assert!(case.buses.len() > 100);
}

fn validate_activsg500(tie: u32) {
    validate("case_ACTIVSg500", ACTIVSG500, SplitColumn::Zone, tie, 2, 3);
}

#[test]
fn activsg2000_by_area_reaches_the_centralised_optimum_at_full_tie_ratings() {
    validate(
        "case_ACTIVSg2000",
        ACTIVSG2000,
        SplitColumn::Area,
        100,
        8,
        29,
    );
}

#[test]
fn activsg2000_by_area_reaches_the_centralised_optimum_with_tie_lines_at_40_percent() {
    validate(
        "case_ACTIVSg2000",
        ACTIVSG2000,
        SplitColumn::Area,
        40,
        8,
        29,
    );
}

#[test]
fn activsg500_by_zone_reaches_the_centralised_optimum_at_full_tie_ratings() {
    validate_activsg500(100);
}

#[test]
fn activsg500_by_zone_reaches_the_centralised_optimum_with_derated_tie_lines() {
    validate_activsg500(20);
}
