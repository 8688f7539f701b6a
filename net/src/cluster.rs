//! A local consortium of management nodes, each a separate `tieline node` process on
//! loopback: what the demo, the end-to-end tests and the cluster benchmark run.
//!
//! The consortium is the deterministic sample one ([`SampleConsortium`], public demo keys), or
//! the three-area RTS-GMLC grid consortium of `data/rts-gmlc/` with each member's private area
//! model ([`ClusterMarket::RtsGmlc`]), with members on free loopback ports and the timers asked
//! for. Every file lives in one directory,
//! removed when the cluster is dropped; every child process is killed when the cluster is
//! dropped, and each child also exits on its own when its standard input closes, so no node
//! outlives the program that started it, even one killed with `kill -9`.

use std::fs;
use std::io;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tieline_core::audit::{AuditError, AuditSummary, ChainAuditor};
use tieline_core::block::Block;
use tieline_core::clearing::rule_for;
use tieline_core::crypto::Ed25519;
use tieline_core::encoding::Tagged;
use tieline_core::genesis::{Genesis, Timing};
use tieline_core::grid::{GridConsortium, GridConsortiumOptions};
use tieline_core::sample::SampleConsortium;

use crate::node::DATABASE_FILE;
use crate::participant::{ClientError, ParticipantClient};
use crate::storage::{Storage, StorageError};

/// How long a node gets to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The RTS-GMLC case as shipped in `data/rts-gmlc/` (MATPOWER format).
pub const RTS_GMLC_CASE: &str = include_str!("../../data/rts-gmlc/case_RTS_GMLC.m");

/// Which consortium a local cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterMarket {
    /// The sample consortium of [`ClusterSpec::members`] members and
    /// [`ClusterSpec::participants_per_member`] participants each, uniform price, no grid.
    Sample,
    /// The three-area RTS-GMLC consortium (`data/rts-gmlc/`): zonal coupling, 144 participants,
    /// each member checking its own area's grid privately (spec 3.8). Ratings in percent.
    RtsGmlc {
        /// Tie-line capacities, percent of their ratings.
        tie_rating_percent: u32,
        /// Ratings of the lines inside the areas, percent of the case's (below 100: stressed).
        line_rating_percent: u32,
    },
}

/// The shape of a local consortium.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The consortium.
    pub market: ClusterMarket,
    /// Management nodes (sample market only).
    pub members: usize,
    /// Participants per member (sample market only).
    pub participants_per_member: usize,
    /// The consensus timers.
    pub timing: Timing,
    /// The nodes' log filter.
    pub log_level: String,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            market: ClusterMarket::Sample,
            members: 4,
            participants_per_member: 4,
            timing: Timing {
                gate_ms: 400,
                batch_wait_ms: 200,
                view_timeout_ms: 1_500,
                schedule: None,
            },
            log_level: "info".into(),
        }
    }
}

/// A local consortium of node processes.
pub struct LocalCluster {
    /// Where everything lives.
    pub dir: PathBuf,
    /// The consortium's genesis and keys, with the loopback addresses and timers of this
    /// cluster.
    pub consortium: SampleConsortium,
    /// The grid consortium (its offers and area files), for [`ClusterMarket::RtsGmlc`].
    pub grid: Option<Arc<GridConsortium>>,
    /// Its genesis.
    pub genesis: Arc<Genesis>,
    bin: PathBuf,
    children: Vec<Option<Child>>,
    keep: bool,
}

/// Free UDP ports on the loopback address (free when asked; the nodes bind them next).
///
/// They are taken below Linux's ephemeral range (32768-60999), from a start that differs from
/// run to run: a port the system hands out for `127.0.0.1:0` is one it may hand out again to
/// the next socket bound that way, such as a client of the same demo, before the node that
/// was given it has started and bound it. Falls back to the system's choice if that range is
/// full.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut sockets: Vec<UdpSocket> = Vec::with_capacity(n);
    for k in 0..SPAN {
        if sockets.len() == n {
            break;
        }
        let port = LOW + (seed.wrapping_add(k.wrapping_mul(7_919))) % SPAN;
        if let Ok(s) = UdpSocket::bind(("127.0.0.1", port as u16)) {
            sockets.push(s);
        }
    }
    while sockets.len() < n {
        sockets.push(UdpSocket::bind("127.0.0.1:0")?);
    }
    sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect()
}

impl LocalCluster {
    /// Writes the genesis, keys and configurations of a new cluster in `dir` (created; removed
    /// on drop unless [`LocalCluster::keep`]); `bin` is the `tieline` binary. No node runs yet.
    pub fn create(dir: &Path, bin: &Path, spec: &ClusterSpec) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let (mut consortium, grid) = match spec.market {
            ClusterMarket::Sample => (
                SampleConsortium::new(spec.members, spec.participants_per_member),
                None,
            ),
            ClusterMarket::RtsGmlc {
                tie_rating_percent,
                line_rating_percent,
            } => {
                let options = GridConsortiumOptions {
                    line_rating_percent,
                    ..GridConsortiumOptions::rts_gmlc(tie_rating_percent)
                };
                let grid = GridConsortium::from_case(RTS_GMLC_CASE, &options)
                    .map_err(|e| io::Error::other(format!("the RTS-GMLC consortium: {e}")))?;
                let sample = SampleConsortium {
                    genesis: grid.genesis.clone(),
                    members: grid.members.clone(),
                    participants: grid.participants.clone(),
                };
                (sample, Some(grid))
            }
        };
        let members = consortium.genesis.members.len();
        let ports = free_ports(members)?;
        for (m, port) in consortium.genesis.members.iter_mut().zip(&ports) {
            m.address = format!("127.0.0.1:{port}");
        }
        consortium.genesis.chain_name = "tieline-local".into();
        consortium.genesis.timing = spec.timing.clone();
        consortium
            .genesis
            .validate()
            .map_err(|e| io::Error::other(e.to_string()))?;
        fs::write(dir.join("genesis.toml"), consortium.genesis.to_toml())?;
        for (i, signer) in consortium.members.iter().enumerate() {
            let node_dir = dir.join(format!("node-{}", i + 1));
            fs::create_dir_all(&node_dir)?;
            let key = node_dir.join("node.key");
            if !key.exists() {
                crate::keyfile::write(&key, signer).map_err(io::Error::other)?;
            }
            let mut config = format!(
                "genesis = \"../genesis.toml\"\nkey = \"node.key\"\ndata_dir = \"data\"\nlog_level = \"{}\"\n",
                spec.log_level
            );
            if let Some(file) = grid.as_ref().and_then(|g| g.area_files.get(i)) {
                fs::write(node_dir.join(&file.file_name), &file.text)?;
                config.push_str(&format!("area_model = \"{}\"\n", file.file_name));
            }
            fs::write(node_dir.join("node.toml"), config)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            genesis: Arc::new(consortium.genesis.clone()),
            grid: grid.map(|mut g| {
                // The bids are signed for this cluster's chain.
                g.genesis = consortium.genesis.clone();
                Arc::new(g)
            }),
            consortium,
            bin: bin.to_path_buf(),
            children: (0..members).map(|_| None).collect(),
            keep: false,
        })
    }

    /// Keeps the directory when the cluster is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Member `i`'s directory (from 0, genesis order).
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{}", i + 1))
    }

    /// Member `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("node.log")
    }

    /// Starts member `i` as a child process (`tieline node --config ...`), logging to its
    /// log file. Extra flags are passed on.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) -> io::Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let child = Command::new(&self.bin)
            .arg("node")
            .arg("--config")
            .arg(self.node_dir(i).join("node.toml"))
            .arg("--exit-on-stdin-close")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Starts member `i`.
    pub fn start(&mut self, i: usize) -> io::Result<()> {
        self.start_with(i, &[])
    }

    /// Starts every member.
    pub fn start_all(&mut self) -> io::Result<()> {
        (0..self.len()).try_for_each(|i| self.start(i))
    }

    /// Whether member `i`'s process is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Member `i`'s process id, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Kills member `i` with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops member `i` with SIGTERM (graceful shutdown), killing it after [`STOP_GRACE`];
    /// returns whether it exited successfully by itself.
    pub fn stop(&mut self, i: usize) -> bool {
        let Some(mut c) = self.children[i].take() else {
            return true;
        };
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if signalled {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = c.try_wait() {
                    return status.success();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Stops every member gracefully; returns whether all exited successfully.
    pub fn stop_all(&mut self) -> bool {
        let mut clean = true;
        for i in 0..self.len() {
            clean &= self.stop(i);
        }
        clean
    }

    /// A client for sample participant `index` (genesis order), talking to its home node.
    pub fn participant(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<ParticipantClient, ClientError> {
        ParticipantClient::new(
            self.genesis.clone(),
            self.consortium.participants[index].clone(),
            None,
            timeout,
        )
    }

    /// The sample participants whose home is member `i`, by genesis index.
    pub fn participants_of(&self, i: usize) -> Vec<usize> {
        let home = self.genesis.members[i].id;
        self.genesis
            .participants
            .iter()
            .enumerate()
            .filter(|(_, p)| p.home == home)
            .map(|(k, _)| k)
            .collect()
    }

    /// Member `i`'s stored chain, as encoded blocks (the node must be stopped).
    pub fn stored_chain(&self, i: usize) -> Result<Vec<Vec<u8>>, StorageError> {
        stored_chain(&self.node_dir(i).join("data"))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The encoded blocks stored in a node's data directory (the node must be stopped: the
/// database is locked while it runs).
pub fn stored_chain(data_dir: &Path) -> Result<Vec<Vec<u8>>, StorageError> {
    let storage = Storage::open(data_dir.join(DATABASE_FILE))?;
    match storage.last_height() {
        Some(last) => Ok(storage
            .blocks(1, last)?
            .into_iter()
            .map(|(_, b)| b)
            .collect()),
        None => Ok(Vec::new()),
    }
}

/// Audits encoded blocks from height 1 against `genesis`, re-running each block's clearing;
/// returns the summary and the decoded blocks.
pub fn audit_blocks(
    genesis: &Genesis,
    blocks: &[Vec<u8>],
) -> Result<(AuditSummary, Vec<Block>), AuditError> {
    let scheme = Ed25519::with_known_keys(genesis.public_keys());
    let mut auditor = ChainAuditor::new(genesis, &scheme, rule_for(genesis.clearing.rule));
    let mut decoded = Vec::with_capacity(blocks.len());
    for b in blocks {
        decoded.push(auditor.push_encoded(b)?);
    }
    Ok((auditor.finish(), decoded))
}

/// What [`audit_registry`] finds: the summary, and the registry at the chain's head.
pub struct AuditedRegistry {
    /// The audit's summary.
    pub summary: AuditSummary,
    /// The genesis with the chain's registry changes applied.
    pub registry: Arc<Genesis>,
    /// The participants revoked on chain, with the height from which each is.
    pub revoked: std::collections::BTreeMap<tieline_core::units::ParticipantId, u64>,
}

/// Audits encoded blocks as [`audit_blocks`] does, and returns the registry at the head (the
/// participants admitted and revoked, the members' keys: spec A1-A5).
pub fn audit_registry(
    genesis: &Genesis,
    blocks: &[Vec<u8>],
) -> Result<AuditedRegistry, AuditError> {
    let scheme = Ed25519::with_known_keys(genesis.public_keys());
    let mut auditor = ChainAuditor::new(genesis, &scheme, rule_for(genesis.clearing.rule));
    for b in blocks {
        auditor.push_encoded(b)?;
    }
    let registry = auditor.registry();
    let revoked = auditor.revoked().clone();
    Ok(AuditedRegistry {
        summary: auditor.finish(),
        registry,
        revoked,
    })
}

/// Whether every chain is a prefix of the longest one, comparing blocks by identity (the
/// header digest: two nodes may hold different commit certificates for the same block): no
/// two nodes disagree at any height. Returns the first height where two chains differ, or
/// where a block does not decode.
pub fn first_disagreement(chains: &[Vec<Vec<u8>>]) -> Option<u64> {
    let ids: Vec<Vec<Option<String>>> = chains
        .iter()
        .map(|c| c.iter().map(|b| block_digest(b)).collect())
        .collect();
    let longest = ids.iter().max_by_key(|c| c.len())?;
    for c in &ids {
        for (i, (a, b)) in c.iter().zip(longest).enumerate() {
            if a.is_none() || a != b {
                return Some(i as u64 + 1);
            }
        }
    }
    None
}

/// The digest of an encoded block's header, for display.
pub fn block_digest(encoded: &[u8]) -> Option<String> {
    Block::from_canonical_bytes(encoded)
        .ok()
        .map(|b| b.digest().to_hex())
}

/// A nested `cargo` command (a test or benchmark building the `tieline` binary), without the
/// variables cargo sets for the running test or benchmark: build scripts that read them
/// (ring's reads `CARGO_PKG_NAME`) would otherwise see a changed environment and rebuild
/// their crate and everything above it, on every run.
pub fn nested_cargo(cargo: &str) -> Command {
    let mut cmd = Command::new(cargo);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_")
            || matches!(
                k.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "LD_LIBRARY_PATH"
            )
        {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd
}
