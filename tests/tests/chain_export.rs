//! The `tieline audit` command end to end: an exported chain audits clean, and a tampered
//! export is caught at its height.

use std::process::Command;

use tieline_core::sample::SampleConsortium;
use tieline_net::chainfile;
use tieline_tests::{TempDir, tieline_bin};

#[test]
fn exported_chain_audits_clean_and_tampering_names_the_block() {
    let dir = TempDir::new("chain-export");
    let consortium = SampleConsortium::new(4, 8);
    std::fs::write(dir.0.join("genesis.toml"), consortium.genesis.to_toml()).unwrap();
    chainfile::write_chain(&dir.0.join("chain.bin"), &consortium.chain(6, 12)).unwrap();
    let out = Command::new(tieline_bin())
        .args(["audit", "--json", "--genesis"])
        .arg(dir.0.join("genesis.toml"))
        .arg("--chain")
        .arg(dir.0.join("chain.bin"))
        .output()
        .expect("run tieline audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["audit"], "ok");
    assert_eq!(summary["blocks"], 6);
    assert_eq!(summary["trades"], 72);

    // Change one byte inside block 4's frame: the audit must fail there.
    let chain = dir.0.join("chain.bin");
    let mut bytes = std::fs::read(&chain).unwrap();
    let mut pos = 8;
    for _ in 0..3 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4 + len;
    }
    bytes[pos + 4 + 100] ^= 0x40;
    std::fs::write(&chain, &bytes).unwrap();
    let out = Command::new(tieline_bin())
        .args(["audit", "--json", "--genesis"])
        .arg(dir.0.join("genesis.toml"))
        .arg("--chain")
        .arg(&chain)
        .output()
        .expect("run tieline audit");
    assert!(!out.status.success());
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(result["audit"], "failed");
    assert_eq!(result["height"], 4);
}

#[test]
fn audit_refuses_a_bad_genesis_with_the_field_named() {
    let dir = TempDir::new("bad-genesis");
    let path = dir.0.join("genesis.toml");
    std::fs::write(&path, "chain_name = \"x\"\nrotation_period = 0\n").unwrap();
    let out = Command::new(tieline_bin())
        .args(["audit", "--genesis"])
        .arg(&path)
        .args(["--chain", "/nonexistent"])
        .output()
        .expect("run tieline audit");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing field"), "{err}");
}
