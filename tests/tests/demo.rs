//! The README's main command and the participant's appeal from the command line, end to end:
//! real `tieline` processes, real QUIC on loopback, every run bounded in time.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tieline_net::cluster::{ClusterSpec, LocalCluster};
use tieline_tests::{TempDir, tieline_bin};

/// One cluster at a time: node processes are a load for a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `cmd` to completion, or kills it after `limit` and fails naming `what`.
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    // Read both pipes on their own threads, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn json_of(output: &Output, what: &str) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn the_demo_shows_the_papers_whole_process_and_writes_the_report() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("demo");
    let report = dir.0.join("report.html");
    let output = run_bounded(
        Command::new(tieline_bin())
            .args(["demo", "--json", "--report"])
            .arg(&report),
        Duration::from_secs(180),
        "tieline demo",
    );
    let d = json_of(&output, "tieline demo --json");
    assert!(output.status.success(), "the demo reports success: {d:#}");
    assert_eq!(d["market"], "rts-gmlc");
    assert_eq!(d["rule"], "zonal-coupling");
    assert_eq!(d["audit"], "ok", "every chain audits clean");
    assert_eq!(d["chains_agree"], true, "every chain agrees");
    assert_eq!(d["caught_up"], true);
    for node in d["nodes"].as_array().expect("nodes") {
        assert_eq!(node["audit"], "ok", "{node}");
    }
    assert!(d["fault_skips"].as_u64().unwrap() >= 1, "a fault skip");
    assert!(d["objections"].as_u64().unwrap() >= 1, "an objection");
    assert!(d["revisions"].as_u64().unwrap() >= 1, "a revision");
    assert!(d["cuts"].as_u64().unwrap() >= 1, "a cut");
    let appeals = d["appeals"].as_array().expect("appeals");
    assert!(
        !appeals.is_empty(),
        "an appeal recorded with its resolution"
    );
    assert!(appeals.iter().all(|a| a["resolution"].is_string()));
    assert_eq!(
        d["bids_receipted"], d["receipted_bids_on_chain"],
        "no receipted bid lost"
    );
    let rounds = d["rounds"].as_array().expect("rounds");
    assert!(rounds.len() as u64 >= d["rounds_committed"].as_u64().unwrap());
    // Rounds that cleared bids have a price per area and a flow per tie line.
    let traded: Vec<&Value> = rounds.iter().filter(|r| r["trades"] != 0).collect();
    assert!(!traded.is_empty());
    for r in &traded {
        assert!(!r["prices"].as_array().unwrap().is_empty(), "{r}");
        assert!(!r["flows"].as_array().unwrap().is_empty(), "{r}");
        assert!(!r["signers"].as_array().unwrap().is_empty(), "{r}");
    }
    // The skip round names the skipped primary.
    let skip = rounds
        .iter()
        .find(|r| r["view"] != 0)
        .expect("a round in view 1");
    assert!(!skip["skipped"].as_array().unwrap().is_empty(), "{skip}");
    // The report was written where asked, with every committed block's hash.
    assert_eq!(d["report"].as_str(), Some(report.to_str().unwrap()));
    let html = std::fs::read_to_string(&report).expect("the report is written");
    assert!(html.contains("<svg"));
    for r in rounds {
        assert!(html.contains(r["block"].as_str().unwrap()), "block of {r}");
    }
    // The last round with trades as the market's own documents, beside the report: prices
    // (A44) per area naming the round's block, and an exchange on a tie line (A09).
    let docs = &d["documents"];
    let height = docs["height"].as_u64().expect("a round's documents");
    let round = rounds
        .iter()
        .find(|r| r["height"] == height)
        .expect("the documents' round is on the chain");
    let files: Vec<&str> = docs["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let prices = files
        .iter()
        .find(|f| f.ends_with(&format!("prices-h{height}.xml")))
        .expect("an A44 document");
    let xml = std::fs::read_to_string(prices).unwrap();
    assert!(xml.contains("<type>A44</type>"), "{xml}");
    assert!(
        xml.contains(round["block"].as_str().unwrap()),
        "the A44 names the block"
    );
    assert!(
        files.iter().any(|f| f.contains("allocation-h")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(&format!("exchanges-h{height}.xml"))),
        "{files:?}"
    );
}

fn tieline(args: &[&str], genesis: &Path, key: &Path, what: &str) -> Output {
    run_bounded(
        Command::new(tieline_bin())
            .args(&args[..1])
            .arg("--genesis")
            .arg(genesis)
            .arg("--key")
            .arg(key)
            .args(&args[1..]),
        Duration::from_secs(60),
        what,
    )
}

#[test]
fn a_participant_appeals_from_the_command_line_and_reads_the_recorded_resolution() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("appeal-cli");
    let mut c = LocalCluster::create(
        &dir.0.join("cluster"),
        &tieline_bin(),
        &ClusterSpec {
            log_level: "warn".into(),
            ..ClusterSpec::default()
        },
    )
    .expect("create the cluster");
    c.start_all().expect("start the nodes");
    let genesis = c.dir.join("genesis.toml");
    let key = dir.0.join("participant.key");
    tieline_net::keyfile::write(&key, &c.consortium.participants[0]).expect("write the key");

    // A claim that makes no sense is refused before anything is sent.
    let none = tieline(&["appeal"], &genesis, &key, "tieline appeal");
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("--omitted"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    let bad = tieline(
        &["appeal", "--disputes", "not-hex"],
        &genesis,
        &key,
        "tieline appeal",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--disputes `not-hex`"));

    // Bid, keeping the evidence; appeal that it was omitted while its round is in progress.
    // The round may commit between the two commands; then the node refuses the appeal (its
    // round is over) and the participant bids and appeals again.
    let mut recorded = None;
    for attempt in 0..5 {
        let evidence = dir.0.join(format!("bid-{attempt}.json"));
        let bid = tieline(
            &[
                "bid",
                "--side",
                "sell",
                "--step",
                "20@1",
                "--json",
                "--save",
                evidence.to_str().unwrap(),
            ],
            &genesis,
            &key,
            "tieline bid",
        );
        let receipt = json_of(&bid, "tieline bid --json");
        assert_eq!(receipt["status"], "receipted", "{receipt}");
        let height = receipt["height"].as_u64().unwrap().to_string();
        let appeal = tieline(
            &[
                "appeal",
                "--omitted",
                evidence.to_str().unwrap(),
                "--height",
                &height,
                "--wait",
                "30",
                "--json",
            ],
            &genesis,
            &key,
            "tieline appeal",
        );
        let answer = json_of(&appeal, "tieline appeal --json");
        if answer["status"] == "recorded" {
            assert!(appeal.status.success());
            recorded = Some((answer, height));
            break;
        }
        assert_eq!(answer["status"], "refused", "{answer}");
        assert!(
            answer["reason"]
                .as_str()
                .unwrap()
                .contains("is not the round in progress"),
            "{answer}"
        );
    }
    let (answer, height) = recorded.expect("an appeal recorded within 5 rounds");
    assert_eq!(answer["height"].as_u64().unwrap().to_string(), height);
    // The bid was in its round's batch: the claim is rejected, and the rejection is on chain.
    assert_eq!(answer["upheld"], false, "{answer}");
    assert!(
        answer["resolution"]
            .as_str()
            .unwrap()
            .contains("in the result already"),
        "{answer}"
    );
    assert_eq!(answer["block"].as_str().unwrap().len(), 64);
    assert!(c.stop_all(), "every node stops gracefully");
}
