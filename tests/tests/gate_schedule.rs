//! A day-ahead auction on a gate-closure schedule with real `tieline node` processes over QUIC
//! (spec D24, N4): the issue's example. On a three-member consortium, a sell bid at 20 and a
//! buy bid at 60 for the same delivery period, submitted with `tieline bid`'s defaults 92 ms
//! apart to two home nodes, rest until that period's gate and trade in one round; an ENTSO-E
//! bid document is acknowledged, and the round's result documents are written from a node's store.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tieline_core::genesis::Timing;
use tieline_core::schedule::GateSchedule;
use tieline_core::units::Timestamp;
use tieline_net::cluster::{ClusterSpec, LocalCluster};
use tieline_net::entsoe::interval_time;
use tieline_tests::{TempDir, tieline_bin};

/// How far ahead of the test's start the first gate closes: long enough for three nodes to
/// start and two bids to be receipted, short enough for a test.
const GATE_IN: Duration = Duration::from_secs(15);

/// A schedule in UTC whose first gate closes `GATE_IN` from now (to the second), for the
/// quarter-hours of the day after it.
fn schedule_closing_soon() -> GateSchedule {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let gate = (now + GATE_IN).as_secs() as i64;
    let day = gate.div_euclid(86_400);
    GateSchedule {
        zone: "UTC".into(),
        gate_second: gate.rem_euclid(86_400) as u32,
        resolution_minutes: 15,
        // Height 1 delivers the day after its gate.
        first_delivery_day: (day + 1) as i32,
    }
}

/// Runs `tieline VERB --timeout 5 --genesis G --key K ARGS...` as participant `index` (its key
/// written to `dir` on first use).
fn participant_cmd(
    c: &LocalCluster,
    dir: &TempDir,
    index: usize,
    verb: &str,
    args: &[&OsStr],
) -> Output {
    let key = dir.0.join(format!("p{index}.key"));
    if !key.exists() {
        tieline_net::keyfile::write(&key, &c.consortium.participants[index]).unwrap();
    }
    Command::new(tieline_bin())
        .args([verb, "--timeout", "5", "--genesis"])
        .arg(c.dir.join("genesis.toml"))
        .arg("--key")
        .arg(&key)
        .args(args)
        .output()
        .unwrap()
}

fn bid(c: &LocalCluster, dir: &TempDir, index: usize, side: &str, step: &str) -> serde_json::Value {
    let args = ["--json", "--side", side, "--step", step].map(OsStr::new);
    let out = participant_cmd(c, dir, index, "bid", &args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An IEC 62325-451-3 bid document: participant `sender` offers 40 MW at 25 in the
/// quarter-hours from `start` to `end` (two points), in its area `area` (fallback codes).
fn bid_document(sender: u32, area: u16, start: Timestamp, end: Timestamp) -> String {
    let (start, end) = (interval_time(start), interval_time(end));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Bid_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-3:biddocument:7:1">
  <mRID>DOC-{sender}</mRID>
  <revisionNumber>1</revisionNumber>
  <type>A24</type>
  <sender_MarketParticipant.mRID codingScheme="A02">TL-P{sender}</sender_MarketParticipant.mRID>
  <sender_MarketParticipant.marketRole.type>A01</sender_MarketParticipant.marketRole.type>
  <receiver_MarketParticipant.mRID codingScheme="A02">TL-N1</receiver_MarketParticipant.mRID>
  <receiver_MarketParticipant.marketRole.type>A11</receiver_MarketParticipant.marketRole.type>
  <createdDateTime>2026-01-01T00:00:00Z</createdDateTime>
  <period.timeInterval><start>{start}</start><end>{end}</end></period.timeInterval>
  <domain.mRID codingScheme="A02">TL-A{area}</domain.mRID>
  <subject_MarketParticipant.mRID codingScheme="A02">TL-P{sender}</subject_MarketParticipant.mRID>
  <subject_MarketParticipant.marketRole.type>A01</subject_MarketParticipant.marketRole.type>
  <Bid_TimeSeries>
    <mRID>S1</mRID>
    <auction.mRID>DA</auction.mRID>
    <businessType>B74</businessType>
    <in_Domain.mRID codingScheme="A02">TL-A{area}</in_Domain.mRID>
    <out_Domain.mRID codingScheme="A02">TL-A{area}</out_Domain.mRID>
    <quantity_Measurement_Unit.name>MAW</quantity_Measurement_Unit.name>
    <currency_Unit.name>EUR</currency_Unit.name>
    <price_Measurement_Unit.name>MWH</price_Measurement_Unit.name>
    <divisible>A01</divisible>
    <blockBid>A02</blockBid>
    <Period>
      <timeInterval><start>{start}</start><end>{end}</end></timeInterval>
      <resolution>PT15M</resolution>
      <Point><position>1</position><quantity>40</quantity><price.amount>25</price.amount></Point>
      <Point><position>2</position><quantity>40</quantity><price.amount>25</price.amount></Point>
    </Period>
  </Bid_TimeSeries>
</Bid_MarketDocument>
"#
    )
}

#[test]
fn bids_for_one_period_submitted_apart_trade_at_its_gate() {
    let dir = TempDir::new("gate-schedule");
    // Built (if need be) before the clock starts.
    let bin = tieline_bin();
    let spec = ClusterSpec {
        members: 3,
        participants_per_member: 2,
        timing: Timing {
            gate_ms: 0,
            batch_wait_ms: 300,
            view_timeout_ms: 2_000,
            schedule: Some(schedule_closing_soon()),
        },
        ..ClusterSpec::default()
    };
    let mut c = LocalCluster::create(&dir.0.join("cluster"), &bin, &spec).unwrap();
    let gate = c.genesis.timing.schedule.as_ref().unwrap().gate_of(1);
    c.start_all().unwrap();
    // Participant 0's home is member 1, participant 2's member 2.
    assert_ne!(
        c.genesis.participants[0].home,
        c.genesis.participants[2].home
    );
    // Both bids name the default product: the open delivery day's first quarter-hour.
    let sell = bid(&c, &dir, 0, "sell", "20@10");
    std::thread::sleep(Duration::from_millis(92));
    let buy = bid(&c, &dir, 2, "buy", "60@10");
    // Participant 1 (#1001, home 1) sends an ENTSO-E bid document: 40 MW offered at 25 in the
    // day's second and third quarter-hours (10 MWh each), acknowledged by its home node.
    let periods = c.genesis.timing.schedule.as_ref().unwrap().periods_of(1);
    let doc = dir.0.join("bids.xml");
    std::fs::write(&doc, bid_document(1001, 1, periods[1], periods[3])).unwrap();
    let ack = dir.0.join("ack.xml");
    let args = [
        OsStr::new("--document"),
        doc.as_os_str(),
        OsStr::new("--ack-out"),
        ack.as_os_str(),
    ];
    let out = participant_cmd(&c, &dir, 1, "bid", &args);
    let ack = std::fs::read_to_string(&ack).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}{}{ack}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ack.contains("Acknowledgement_MarketDocument"), "{ack}");
    assert!(ack.contains("<code>A01</code>"), "{ack}");
    assert!(ack.contains("DOC-1001"), "{ack}");
    assert_eq!(sell["status"], "receipted", "{sell}");
    assert_eq!(buy["status"], "receipted", "{buy}");
    assert_eq!(sell["height"], 1, "{sell}");
    assert_eq!(buy["height"], 1, "{buy}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now < gate.0, "the bids were receipted before the gate");
    // `tieline status` names the open auction and its gate.
    let out = participant_cmd(&c, &dir, 0, "status", &[OsStr::new("--json")]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["open_height"], 1, "{status}");
    assert_eq!(status["open_gate_ms"], gate.0, "{status}");

    // After the gate, height 1 commits with the trade.
    let deadline = std::time::Instant::now() + GATE_IN + Duration::from_secs(40);
    let trades = loop {
        let out = participant_cmd(&c, &dir, 0, "query", &[OsStr::new("--json")]);
        if out.status.success() {
            let blocks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(b) = blocks.iter().find(|b| b["height"] == 1) {
                break b["trades"].as_array().cloned().unwrap_or_default();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "height 1 did not commit a trade within {:?} of its gate",
            deadline
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now >= gate.0, "nothing trades before the gate");
    assert_eq!(trades.len(), 1, "{trades:?}");
    assert_eq!(trades[0]["side"], "sell", "{trades:?}");
    assert_eq!(trades[0]["quantity_mwh"], "10", "{trades:?}");
    c.stop_all();
    // The round's result documents, from a stopped node's store, name the block.
    let docs = dir.0.join("documents");
    let out = Command::new(tieline_bin())
        .args(["documents", "--height", "1", "--genesis"])
        .arg(c.dir.join("genesis.toml"))
        .arg("--data-dir")
        .arg(c.node_dir(0).join("data"))
        .arg("--out")
        .arg(&docs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prices = std::fs::read_to_string(docs.join("prices-h1.xml")).unwrap();
    assert!(prices.contains("<type>A44</type>"), "{prices}");
    assert!(
        prices.contains("<resolution>PT15M</resolution>"),
        "{prices}"
    );
    let allocation = std::fs::read_to_string(docs.join("allocation-h1-p1000.xml")).unwrap();
    assert!(allocation.contains("<type>A25</type>"), "{allocation}");
}
