//! Reading a genesis file, and the errors a bad one gets (spec D6).

use tieline_core::genesis::{ClearingRule, FaultKind, Genesis, GenesisError};
use tieline_core::sample::SampleConsortium;
use tieline_core::units::Quantity;

fn sample_toml() -> String {
    SampleConsortium::new(4, 2).genesis.to_toml()
}

fn field_error(text: &str) -> (String, String) {
    match Genesis::from_toml(text) {
        Err(GenesisError::Field { field, reason }) => (field, reason),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn genesis_toml_round_trips() {
    let s = SampleConsortium::new(4, 2);
    let text = s.genesis.to_toml();
    let back = Genesis::from_toml(&text).unwrap();
    assert_eq!(back, s.genesis);
    assert_eq!(back.chain_id(), s.genesis.chain_id());
    assert_eq!(back.fault_model.kind, FaultKind::Byzantine);
    assert_eq!(back.quorum(), 3);
    assert_eq!(back.clearing.rule, ClearingRule::UniformPrice);
}

#[test]
fn hand_written_genesis_reads_decimals_exactly() {
    let text = r#"
chain_name = "two countries"
rotation_period = 24
max_revisions = 3

[fault_model]
kind = "crash"
f = 1

[timing]
gate_ms = 1000
batch_wait_ms = 500
view_timeout_ms = 3000

[clearing]
rule = "zonal-coupling"
price_tick = 0.01
price_floor = -500
price_cap = "3000"

[[areas]]
id = 1
name = "North"

[[areas]]
id = 2
name = "South"

[[members]]
id = 1
name = "North PX"
area = 1
public_key = "PK0"
address = "127.0.0.1:7101"

[[members]]
id = 2
name = "South PX"
area = 2
public_key = "PK1"
address = "127.0.0.1:7102"

[[members]]
id = 3
name = "South TSO"
area = 2
public_key = "PK2"
address = "south-tso.example:7103"

[[tie_lines]]
id = 1
from = 1
to = 2
capacity_forward = 250.5
capacity_backward = "100"
"#;
    let s = SampleConsortium::new(4, 0);
    let mut text = text.to_owned();
    for i in 0..3 {
        text = text.replace(&format!("PK{i}"), &s.genesis.members[i].public_key.to_hex());
    }
    let g = Genesis::from_toml(&text).unwrap();
    assert_eq!(g.tie_lines[0].capacity_forward, Quantity(250_500));
    assert_eq!(g.tie_lines[0].capacity_backward, Quantity(100_000));
    assert_eq!(g.quorum(), 2);
    // Rotation: members[(h / period + v) mod n].
    assert_eq!(g.primary(0, 0).0, 1);
    assert_eq!(g.primary(23, 0).0, 1);
    assert_eq!(g.primary(24, 0).0, 2);
    assert_eq!(g.primary(24, 2).0, 1);
}

#[test]
fn bad_genesis_errors_name_the_field() {
    let good = sample_toml();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            good.replace("kind = \"byzantine\"", "kind = \"optimistic\""),
            "fault_model.kind",
            "neither",
        ),
        (
            good.replace("f = 1", "f = 2"),
            "fault_model.f",
            "at least 7",
        ),
        (
            good.replace("rule = \"uniform-price\"", "rule = \"lottery\""),
            "clearing.rule",
            "not one of",
        ),
        (
            good.replace("price_tick = \"0.01\"", "price_tick = \"0.00001\""),
            "clearing.price_tick",
            "decimal places",
        ),
        (
            good.replace("rotation_period = 1", "rotation_period = 0"),
            "rotation_period",
            "at least 1",
        ),
        (
            good.replace("address = \"127.0.0.1:7101\"", "address = \"nowhere\""),
            "members[1].address",
            "host:port",
        ),
        (
            good.replace("home = 2", "home = 9"),
            "participants[2].home",
            "no management node",
        ),
        (
            good.replace("capacity_backward = \"500\"", "capacity_backward = \"-5\""),
            "tie_lines[0].capacity_backward",
            "negative",
        ),
        (
            good.replace("max_revisions = 4", "max_revisions = 0"),
            "max_revisions",
            "between 1",
        ),
    ];
    for (text, field, reason) in cases {
        let (f, r) = field_error(&text);
        assert_eq!(f, field, "{r}");
        assert!(r.contains(reason), "{field}: {r}");
    }
    // A key that is not hex, and one that is not a curve point.
    let key0 = SampleConsortium::new(4, 2).genesis.members[0]
        .public_key
        .to_hex();
    let (f, _) = field_error(&good.replace(&key0, "xyz"));
    assert_eq!(f, "members[0].public_key");
    let (f, r) = field_error(&good.replace(&key0, &"00".repeat(32)));
    assert_eq!(f, "members[0].public_key");
    assert!(r.contains("ed25519"));
    // Two members with one key.
    let key1 = SampleConsortium::new(4, 2).genesis.members[1]
        .public_key
        .to_hex();
    let (f, _) = field_error(&good.replace(&key1, &key0));
    assert_eq!(f, "members[1].public_key");
    // A missing field and an unknown field are syntax errors that name the field.
    let err = Genesis::from_toml(&good.replace("chain_name = ", "name = ")).unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
    let err = Genesis::from_toml(&good.replace("rotation_period", "rotation_periodd")).unwrap_err();
    assert!(err.to_string().contains("rotation_periodd"), "{err}");
}

/// D23: areas, members and participants may carry an EIC; a bad or repeated code is refused
/// naming the field, and a good one survives the round trip and changes the chain id.
#[test]
fn eic_codes_are_checked_and_kept() {
    let mut s = SampleConsortium::new(4, 2).genesis;
    let plain_id = s.chain_id();
    s.areas[0].eic = Some("10YBE----------2".parse().unwrap());
    s.members[0].eic = Some("10X1001A1001A450".parse().unwrap());
    s.participants[0].eic = Some("10YFR-RTE------C".parse().unwrap());
    let text = s.to_toml();
    assert!(text.contains("eic = \"10YBE----------2\""), "{text}");
    let back = Genesis::from_toml(&text).unwrap();
    assert_eq!(back, s);
    assert_ne!(back.chain_id(), plain_id);
    let (f, r) = field_error(&text.replace("10YBE----------2", "10YBE----------3"));
    assert_eq!(f, "areas[0].eic");
    assert!(r.contains("check character"), "{r}");
    let (f, r) = field_error(&text.replace("10X1001A1001A450", "10X1001A1001A45"));
    assert_eq!(f, "members[0].eic");
    assert!(r.contains("16 characters"), "{r}");
    let (f, r) = field_error(&text.replace("10YFR-RTE------C", "10YFR-RTE------c"));
    assert_eq!(f, "participants[0].eic");
    assert!(r.contains("character 16"), "{r}");
    s.areas[1].eic = s.areas[0].eic;
    let (f, r) = field_error(&s.to_toml());
    assert_eq!(f, "areas[1].eic");
    assert!(r.contains("areas[0]"), "{r}");
}

/// D24 and D6: a gate schedule reads and writes as `[timing.schedule]`, keeps its value and
/// chain id, and every bad field is named.
#[test]
fn a_gate_schedule_round_trips_and_bad_fields_are_named() {
    let mut g = SampleConsortium::new(4, 2).genesis;
    g.timing.gate_ms = 0;
    g.timing.schedule = Some(tieline_core::schedule::GateSchedule {
        zone: "Europe/Brussels".into(),
        gate_second: 12 * 3600,
        resolution_minutes: 15,
        first_delivery_day: tieline_core::schedule::GateSchedule::parse_day("2026-12-08").unwrap(),
    });
    g.validate().unwrap();
    let text = g.to_toml();
    for line in [
        "[timing.schedule]",
        "zone = \"Europe/Brussels\"",
        "gate = \"12:00\"",
        "resolution_minutes = 15",
        "first_delivery_day = \"2026-12-08\"",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains("gate_ms"), "{text}");
    let back = Genesis::from_toml(&text).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.chain_id(), g.chain_id());
    let cases = [
        (
            "Europe/Brussels",
            "Europe/Atlantis",
            "timing.schedule.zone",
            "IANA",
        ),
        (
            "\"12:00\"",
            "\"25:00\"",
            "timing.schedule.gate",
            "time of day",
        ),
        (
            "resolution_minutes = 15",
            "resolution_minutes = 20",
            "timing.schedule.resolution_minutes",
            "15, 30 or 60",
        ),
        (
            "\"2026-12-08\"",
            "\"2026-13-08\"",
            "timing.schedule.first_delivery_day",
            "YYYY-MM-DD",
        ),
        (
            "[timing.schedule]",
            "gate_ms = 1000\n\n[timing.schedule]",
            "timing.gate_ms",
            "leave gate_ms out",
        ),
    ];
    for (from, to, field, reason) in cases {
        let (f, r) = field_error(&text.replacen(from, to, 1));
        assert_eq!(f, field, "{r}");
        assert!(r.contains(reason), "{field}: {r}");
    }
    // Without a schedule, gate_ms is required to be positive.
    let plain = SampleConsortium::new(4, 2).genesis.to_toml();
    let (f, _) = field_error(&plain.replace("gate_ms = 1000", "gate_ms = 0"));
    assert_eq!(f, "timing.gate_ms");
}
