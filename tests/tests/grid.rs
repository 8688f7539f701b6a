//! `tieline grid`: a public case as a consortium from the command line, its JSON and files, and
//! the errors it gives for what it cannot take. Every run is bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tieline_tests::{TempDir, tieline_bin};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Runs `tieline grid` with `args`, killing it after a minute.
fn grid(args: &[&str]) -> Output {
    let mut child = Command::new(tieline_bin())
        .arg("grid")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tieline grid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tieline grid {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_public_case_runs_as_a_consortium_and_writes_what_real_nodes_need() {
    let dir = TempDir::new("grid-cli");
    let out = dir.0.join("consortium");
    let case = root().join("data/grids/case_ACTIVSg500.m");
    let o = grid(&[
        "--case",
        case.to_str().unwrap(),
        "--split",
        "zone",
        "--tie-rating",
        "20",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    for field in [
        "members",
        "tie_lines",
        "bids",
        "revisions",
        "objections",
        "cuts",
        "cost",
        "seconds",
        "critical_path_seconds",
    ] {
        assert!(!d[field].is_null(), "{field} in {d}");
    }
    assert_eq!(d["members"].as_array().unwrap().len(), 2);
    assert_eq!(d["tie_lines"], 9);
    assert_eq!(d["bids"], 256);
    assert_eq!(d["view"], 0);
    assert_eq!(d["served_mwh"], d["demand_mwh"]);
    // The decided block travels as a compact frame, smaller than the block spelled out (its
    // bids by position, its cuts by their place in the objections).
    let (frame, whole) = (
        d["frame_bytes"].as_u64().unwrap(),
        d["whole_bytes"].as_u64().unwrap(),
    );
    assert!(0 < frame && frame < whole, "{frame} of {whole} bytes");
    let islands: u64 = d["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["components"].as_u64().unwrap())
        .sum();
    assert_eq!(islands, 3);
    for f in [
        "genesis.toml",
        "zone-1.m",
        "zone-2.m",
        "member-1.key",
        "member-2.key",
        "offers.csv",
    ] {
        assert!(out.join(f).exists(), "{f} written");
    }
    // A second run does not overwrite the genesis.
    let again = grid(&[
        "--case",
        case.to_str().unwrap(),
        "--split",
        "zone",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwriting"));
}

#[test]
fn a_case_the_command_cannot_take_gets_an_error_naming_what_is_wrong() {
    let dir = TempDir::new("grid-cli-errors");
    // No such file.
    let o = grid(&["--case", dir.0.join("missing.m").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the case"));
    // Rows without the zone column, split by zone: the error names the matrix and the row.
    let short = dir.0.join("short.m");
    std::fs::write(
        &short,
        "mpc.baseMVA = 100;\nmpc.bus = [1 3 0 0 0 0 1; 2 1 50 0 0 0 1];\nmpc.gen = [1 0 0 0 0 1 100 1 80 0];\nmpc.branch = [1 2 0 0.1 0 40 0 0 0 0 1];\nmpc.gencost = [2 0 0 2 10 0];\n",
    )
    .unwrap();
    let o = grid(&["--case", short.to_str().unwrap(), "--split", "zone"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`mpc.bus` row 1"), "{err}");
    // A bus nothing reaches: the area model is refused naming the bus and the area.
    let lonely = dir.0.join("lonely.m");
    std::fs::write(
        &lonely,
        "mpc.baseMVA = 100;\nmpc.bus = [1 3 0 0 0 0 1; 2 1 50 0 0 0 1; 3 1 10 0 0 0 1];\nmpc.gen = [1 0 0 0 0 1 100 1 80 0];\nmpc.branch = [1 2 0 0.1 0 40 0 0 0 0 1];\nmpc.gencost = [2 0 0 2 10 0];\n",
    )
    .unwrap();
    let o = grid(&["--case", lonely.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bus 3 of area 1"), "{err}");
    // Percentages must be positive.
    let o = grid(&["--case", lonely.to_str().unwrap(), "--tie-rating", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be positive"));
}
