//! End-to-end tests across Tieline's crates. The tests are in `tests/tests/`; this library
//! holds what they share.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The path of the `tieline` binary, built once per test run if cargo has not built it yet.
pub fn tieline_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> -> target/<profile>/tieline
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target profile directory");
        let bin = profile_dir.join("tieline");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        // The very build `cargo test --workspace` does, which builds the binary too: a no-op
        // when that is what is running. A narrower build (`-p tieline-net`) would resolve
        // other features for shared dependencies, recompile them and overwrite the binary.
        let mut cmd = tieline_net::cluster::nested_cargo(env!("CARGO"));
        cmd.args(["test", "--workspace", "--no-run", "--quiet"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the tieline binary failed");
        assert!(bin.exists(), "no tieline binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A fresh directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/tieline-e2e-<name>-<pid>`.
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tieline-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
