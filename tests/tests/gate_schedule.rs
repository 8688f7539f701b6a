//! A day-ahead auction on a gate-closure schedule with real `tieline node` processes over QUIC
//! (spec D24, N4): the example. On a three-member consortium, a sell bid at 20 and a
//! buy bid at 60 for the same delivery period, submitted with `tieline bid`'s defaults 92 ms
//! apart to two home nodes, rest until that period's gate and trade in one round.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tieline_core::genesis::Timing;
use tieline_core::schedule::GateSchedule;
use tieline_net::cluster::{ClusterSpec, LocalCluster};
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

fn bid(c: &LocalCluster, dir: &TempDir, index: usize, side: &str, step: &str) -> serde_json::Value {
    let key = dir.0.join(format!("p{index}.key"));
    if !key.exists() {
        tieline_net::keyfile::write(&key, &c.consortium.participants[index]).unwrap();
    }
    let out = Command::new(tieline_bin())
        .args([
            "bid",
            "--json",
            "--timeout",
            "5",
            "--side",
            side,
            "--step",
            step,
        ])
        .arg("--genesis")
        .arg(c.dir.join("genesis.toml"))
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
    let out = Command::new(tieline_bin())
        .args(["status", "--json", "--timeout", "3", "--genesis"])
        .arg(c.dir.join("genesis.toml"))
        .arg("--key")
        .arg(dir.0.join("p0.key"))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["open_height"], 1, "{status}");
    assert_eq!(status["open_gate_ms"], gate.0, "{status}");

    // After the gate, height 1 commits with the trade.
    let deadline = std::time::Instant::now() + GATE_IN + Duration::from_secs(40);
    let trades = loop {
        let out = Command::new(tieline_bin())
            .args(["query", "--json", "--timeout", "3", "--genesis"])
            .arg(c.dir.join("genesis.toml"))
            .arg("--key")
            .arg(dir.0.join("p0.key"))
            .output()
            .unwrap();
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
}
