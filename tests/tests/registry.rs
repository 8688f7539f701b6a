//! Admission, revocation and key rotation on chain (spec A1-A5) end to end: real `tieline node`
//! processes over QUIC on loopback, driven through the `tieline` command as an operator and a
//! participant would. Every wait is bounded; the cluster kills its processes when dropped.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tieline_core::genesis::Timing;
use tieline_net::cluster::{ClusterSpec, LocalCluster};
use tieline_tests::{TempDir, tieline_bin};

/// How long any one wait of these tests may take.
const LIMIT: Duration = Duration::from_secs(60);

/// One cluster at a time: four node processes are already a load for a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cluster(name: &str) -> (std::sync::MutexGuard<'static, ()>, TempDir, LocalCluster) {
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new(name);
    let spec = ClusterSpec {
        timing: Timing {
            gate_ms: 1_000,
            batch_wait_ms: 200,
            view_timeout_ms: 1_500,
            schedule: None,
        },
        ..ClusterSpec::default()
    };
    let mut c = LocalCluster::create(&dir.0.join("cluster"), &tieline_bin(), &spec)
        .expect("create the cluster");
    c.start_all().expect("start the nodes");
    (serial, dir, c)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tieline ARGS...`.
fn tieline<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(tieline_bin()).args(args).output().unwrap()
}

/// `tieline VERB --genesis G --key KEY --timeout 5 ARGS...`.
fn as_key(c: &LocalCluster, verb: &str, key: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(tieline_bin());
    cmd.arg(verb)
        .arg("--genesis")
        .arg(c.dir.join("genesis.toml"))
        .arg("--key")
        .arg(key)
        .args(["--timeout", "5"])
        .args(args);
    cmd.output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// A new key file in `dir`; returns its path and public key (hex).
fn keygen(dir: &TempDir, name: &str) -> (PathBuf, String) {
    let path = dir.0.join(name);
    let out = tieline([OsStr::new("keygen"), OsStr::new("--out"), path.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (path, public)
}

/// Sample participant `index`'s key, written to `dir`.
fn participant_key(c: &LocalCluster, dir: &TempDir, index: usize) -> PathBuf {
    let path = dir.0.join(format!("p{index}.key"));
    if !path.exists() {
        tieline_net::keyfile::write(&path, &c.consortium.participants[index]).unwrap();
    }
    path
}

/// Member `i`'s key file (what its operator holds).
fn node_key(c: &LocalCluster, i: usize) -> PathBuf {
    c.node_dir(i).join("node.key")
}

/// Waits until `key`'s node answers `tieline status` and has committed a block.
fn wait_running(c: &LocalCluster, key: &Path) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = as_key(c, "status", key, &["--json"]);
        if out.status.success() && json(&out)["committed"].as_u64() > Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node never ran: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `tieline bid --json` with `key`; the parsed output and the exit status.
fn bid(c: &LocalCluster, key: &Path, side: &str, step: &str) -> (bool, Output) {
    let out = as_key(c, "bid", key, &["--json", "--side", side, "--step", step]);
    (out.status.success(), out)
}

/// `seller` offers 5 MWh at 20 and `buyer` (of the same area) asks for 5 at 60, until both
/// bids are receipted for the same height (each height is its own auction); then waits until
/// that height commits with the seller's trade, and returns the block as `tieline query`
/// reports it.
fn trade(c: &LocalCluster, seller: &Path, buyer: &Path) -> serde_json::Value {
    let mut tries = 0;
    let height = loop {
        let (ok, out) = bid(c, seller, "sell", "20@5");
        assert!(ok, "{}", text(&out));
        let sell = json(&out);
        assert_eq!(sell["status"], "receipted", "{sell}");
        let (ok, out) = bid(c, buyer, "buy", "60@5");
        assert!(ok, "{}", text(&out));
        let buy = json(&out);
        if buy["height"] == sell["height"] {
            break sell["height"].as_u64().unwrap();
        }
        tries += 1;
        assert!(tries < 5, "the bids never met in one height");
    };
    let deadline = Instant::now() + LIMIT;
    loop {
        let from = height.to_string();
        let out = as_key(c, "query", seller, &["--json", "--from-height", &from]);
        if out.status.success() {
            let blocks = json(&out);
            if let Some(b) = blocks.as_array().and_then(|b| b.first()) {
                return b.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trade committed: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_participant_admitted_on_chain_can_bid_and_a_revoked_one_cannot() {
    let (_serial, dir, mut c) = cluster("registry-admit");
    // Participant 0's home is member 1 (index 0), as the newcomer's will be.
    assert_eq!(c.genesis.participants[0].home.0, 1);
    let buyer = participant_key(&c, &dir, 0);
    wait_running(&c, &buyer);
    let (newcomer, public) = keygen(&dir, "newcomer.key");

    // Not admitted yet: the key is no participant's, and no node accepts it.
    let (ok, out) = bid(&c, &newcomer, "sell", "20@5");
    assert!(!ok, "{}", text(&out));
    assert!(
        text(&out).contains("not an admitted participant"),
        "{}",
        text(&out)
    );

    // A bad public key is named.
    let out = as_key(
        &c,
        "admit",
        &node_key(&c, 0),
        &["--id", "5000", "--name", "Newcomer", "--public-key", "abc"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--public-key"), "{}", text(&out));

    // Node 1's operator admits it, signing with node 1's key, and waits for the block.
    let out = as_key(
        &c,
        "admit",
        &node_key(&c, 0),
        &[
            "--id",
            "5000",
            "--name",
            "Newcomer Energy",
            "--public-key",
            &public,
            "--json",
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let admitted = json(&out);
    assert_eq!(admitted["status"], "effective", "{admitted}");
    let carried = admitted["height"].as_u64().unwrap();
    assert_eq!(admitted["effective_height"].as_u64(), Some(carried + 1));

    // Its bid is receipted (its area is the one the chain gave it) and trades.
    let (ok, out) = bid(&c, &newcomer, "sell", "20@5");
    assert!(ok, "{}", text(&out));
    let sell = json(&out);
    assert_eq!(sell["status"], "receipted", "{sell}");
    assert_eq!(sell["participant"], 5000, "{sell}");
    assert!(sell["height"].as_u64().unwrap() > carried, "{sell}");
    let block = trade(&c, &newcomer, &buyer);
    let trades = block["trades"].as_array().unwrap();
    assert_eq!(trades[0]["side"], "sell", "{block}");
    assert_eq!(trades[0]["quantity_mwh"], "5", "{block}");

    // The status lists it among the participants at the head.
    let out = as_key(&c, "status", &buyer, &["--json"]);
    let status = json(&out);
    let listed = status["registry"]["participants"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|p| p["id"] == 5000 && p["key"] == public.as_str() && p["home"] == 1),
        "{status}"
    );

    // Only its home node's operator may revoke it: node 2's key is refused with the reason.
    let out = as_key(&c, "revoke", &node_key(&c, 1), &["--participant", "5000"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("home node is 1"), "{}", text(&out));
    let out = as_key(
        &c,
        "revoke",
        &node_key(&c, 0),
        &["--participant", "5000", "--json", "--wait"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let revoked = json(&out);
    assert_eq!(revoked["status"], "effective", "{revoked}");
    let from = revoked["effective_height"].as_u64().unwrap();

    // Its next bid is refused with the revocation.
    let (ok, out) = bid(&c, &newcomer, "sell", "20@5");
    assert!(!ok, "{}", text(&out));
    let refused = json(&out);
    assert_eq!(refused["status"], "rejected", "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(
        reason.contains("participant 5000 was revoked from height"),
        "{refused}"
    );
    let out = as_key(&c, "status", &buyer, &["--json"]);
    let status = json(&out);
    assert_eq!(
        status["registry"]["revoked"],
        serde_json::json!([{"id": 5000, "from_height": from}]),
        "{status}"
    );

    // The audit of a stopped node's store finds both changes and the same registry.
    assert!(c.stop_all());
    let out = tieline([
        OsStr::new("audit"),
        OsStr::new("--json"),
        OsStr::new("--genesis"),
        c.dir.join("genesis.toml").as_os_str(),
        OsStr::new("--data-dir"),
        c.node_dir(2).join("data").as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let audit = json(&out);
    assert_eq!(audit["audit"], "ok", "{audit}");
    assert_eq!(audit["changes"], 2, "{audit}");
    assert_eq!(
        audit["registry"]["revoked"],
        serde_json::json!([{"id": 5000, "from_height": from}]),
        "{audit}"
    );
    let listed = audit["registry"]["participants"].as_array().unwrap();
    assert_eq!(listed.len(), c.genesis.participants.len(), "{audit}");
}

#[test]
fn after_a_key_rotation_the_old_key_is_refused_and_the_new_one_is_receipted() {
    let (_serial, dir, c) = cluster("registry-rotate");
    let old = participant_key(&c, &dir, 0);
    let id = c.genesis.participants[0].id.0;
    wait_running(&c, &old);
    let (new, public) = keygen(&dir, "p0-new.key");

    // The old key bids until the rotation takes effect.
    let (ok, out) = bid(&c, &old, "sell", "20@5");
    assert!(ok, "{}", text(&out));

    // Replacing the key with itself is refused locally, naming the flag.
    let out = as_key(
        &c,
        "rotate-key",
        &old,
        &["--new-key", old.to_str().unwrap()],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--new-key"), "{}", text(&out));

    // The participant signs with its current key; its home node countersigns.
    let out = as_key(
        &c,
        "rotate-key",
        &old,
        &["--new-key", new.to_str().unwrap(), "--json", "--wait"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let rotated = json(&out);
    assert_eq!(rotated["status"], "effective", "{rotated}");

    // The old key is refused: the home node no longer accepts it.
    let (ok, out) = bid(&c, &old, "sell", "20@5");
    assert!(!ok, "{}", text(&out));
    assert!(text(&out).contains("refused our key"), "{}", text(&out));

    // The new key is receipted, as the same participant, and its trade commits.
    let (ok, out) = bid(&c, &new, "sell", "20@5");
    assert!(ok, "{}", text(&out));
    let sell = json(&out);
    assert_eq!(sell["status"], "receipted", "{sell}");
    assert_eq!(sell["participant"], id, "{sell}");
    let buyer = participant_key(&c, &dir, 1);
    assert_eq!(
        c.genesis.participants[1].home,
        c.genesis.participants[0].home
    );
    let block = trade(&c, &new, &buyer);
    assert_eq!(block["trades"][0]["side"], "sell", "{block}");
    let out = as_key(&c, "status", &new, &["--json"]);
    let status = json(&out);
    assert!(
        status["registry"]["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id && p["key"] == public.as_str()),
        "{status}"
    );
}

#[test]
fn a_member_key_rotation_signed_by_a_quorum_takes_effect_and_the_node_restarts_with_the_new_key() {
    let (_serial, dir, mut c) = cluster("registry-member");
    let p = participant_key(&c, &dir, 0);
    wait_running(&c, &p);
    let (new, public) = keygen(&dir, "node4-new.key");
    let last = c.len() - 1;
    let member = c.genesis.members[last].id.0;

    // Without a quorum (3 of 4) the CLI refuses before sending anything.
    let out = as_key(
        &c,
        "rotate-key",
        &node_key(&c, last),
        &[
            "--member",
            "--new-key",
            &public,
            "--cosign",
            node_key(&c, 0).to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("quorum of 3"), "{}", text(&out));

    let out = as_key(
        &c,
        "rotate-key",
        &node_key(&c, last),
        &[
            "--member",
            "--new-key",
            &public,
            "--cosign",
            node_key(&c, 0).to_str().unwrap(),
            "--cosign",
            node_key(&c, 1).to_str().unwrap(),
            "--json",
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let rotated = json(&out);
    assert_eq!(rotated["status"], "effective", "{rotated}");

    // The operator restarts the node: under the old key file it refuses to start, naming the
    // replacement; under the new one it runs.
    c.stop(last);
    c.start(last).unwrap();
    let deadline = Instant::now() + LIMIT;
    while c.is_running(last) {
        assert!(
            Instant::now() < deadline,
            "the node started under its old key"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(c.log_path(last)).unwrap_or_default();
    assert!(log.contains(&format!("was member {member}'s")), "{log}");
    std::fs::copy(&new, node_key(&c, last)).unwrap();
    c.start(last).unwrap();
    // The restarted node is accepted by the others under its new key and keeps committing:
    // its participants (told its new key by its operator) see its status follow the chain,
    // and their bids are receipted.
    let ps = c.participants_of(last);
    let its = participant_key(&c, &dir, ps[0]);
    let deadline = Instant::now() + LIMIT;
    let start = loop {
        let out = as_key(&c, "status", &its, &["--json", "--node-key", &public]);
        if out.status.success() {
            let s = json(&out);
            let keys = s["registry"]["members"].as_array().unwrap().clone();
            assert!(
                keys.iter()
                    .any(|m| m["id"] == member && m["key"] == public.as_str()),
                "{s}"
            );
            break s["committed"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the node did not restart: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    loop {
        let out = as_key(&c, "status", &its, &["--json", "--node-key", &public]);
        if out.status.success() && json(&out)["committed"].as_u64() > Some(start + 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node does not commit: {}\n{}",
            text(&out),
            std::fs::read_to_string(c.log_path(last)).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = as_key(
        &c,
        "bid",
        &its,
        &[
            "--json",
            "--side",
            "sell",
            "--step",
            "20@5",
            "--node-key",
            &public,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["status"], "receipted");
}
