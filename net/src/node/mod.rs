//! The management node runtime: a tokio program that drives the core's [`ManagementNode`] over
//! the QUIC transport, with durable storage, timers, participant service and metrics. It holds
//! no protocol logic: it feeds inputs to the state machine and carries out the effects it
//! returns, in order (spec part 2, "persist before send").
//!
//! # Tasks
//! - **Dispatcher** (one task): reads the transport's inbound queue, decodes frames with the
//!   one wire encoding ([`tieline_core::consensus::wire`]; a member's message travels as a
//!   compact frame, [`tieline_core::consensus::compact`], resolved against the batches this
//!   node holds and, for any it lacks, fetched from the sender), drops malformed ones
//!   (counted, logged), and passes everything meant for the state machine on, in arrival order, through
//!   a bounded queue of pending inputs. Bid signatures are verified on the blocking pool
//!   meanwhile (an optimisation only: see [`verify`]). Queries and status requests are served
//!   here, from storage and from the driver's published status, without the state machine.
//! - **Driver** (one task): owns the state machine and is the only writer of storage. It takes
//!   the inputs that are ready (up to [`MAX_GROUP_INPUTS`]), steps each one, writes every
//!   `Persist` and `Decide` of the whole group in one durable transaction, and only then carries
//!   out the group's other effects in their order: sends, replies, timers, block service.
//! - **Timers**: one sleeping task per armed timer; each firing carries a generation number
//!   so a timer that was re-armed or cancelled after it fired is ignored.
//! - **Metrics endpoint** (optional) and the transport's own tasks.
//!
//! # Why the ordering is safe
//! The core requires that each `Persist`/`Decide` be durable before any later effect of the
//! same step. Group commit only delays effects: every send, reply or timer of a group waits
//! until the group's single write has returned, so each of them follows every persist that
//! preceded it in its own step (and in earlier steps). Delaying a message is something the
//! network may do anyway, so the protocol is unaffected. Storage is written by the driver
//! alone, in step order, so the log on disk is always a prefix of what the state machine
//! asked for.

pub mod config;
mod driver;
pub mod metrics;
mod serve;
pub mod verify;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tieline_core::audit::{AuditError, ChainAuditor};
use tieline_core::clearing::rule_for;
use tieline_core::consensus::compact::BatchStore;
use tieline_core::consensus::wire::NodeStatus;
use tieline_core::consensus::{Context, ManagementNode, NoGridModel, Record, SecurityCheck};
use tieline_core::crypto::{Ed25519Signer, PublicKey, Signer};
use tieline_core::encoding::{DecodeError, Tagged};
use tieline_core::genesis::{Genesis, GenesisError, Member, Participant};
use tieline_core::grid::security::AreaModel;
use tieline_core::units::{NodeId, ParticipantId};
use tokio::sync::watch;
use tracing::{error, info};

use crate::keyfile::{self, KeyFileError};
use crate::storage::{Storage, StorageError};
use crate::transport::{Directory, Endpoint, TransportConfig, TransportError};
pub use config::{ConfigError, ConfigFile, LogFormat, NodeConfig};
use metrics::NodeMetrics;
use verify::CachingEd25519;

/// Most inputs stepped in one group (one durable write).
pub const MAX_GROUP_INPUTS: usize = 4096;
/// Capacity of the queue of pending inputs between the dispatcher and the driver.
pub const PENDING_QUEUE_LEN: usize = 4096;
/// Capacity of the queue of fired timers.
pub const TIMER_QUEUE_LEN: usize = 1024;
/// Most trade queries served at once (each reads storage on the blocking pool).
pub const MAX_CONCURRENT_QUERIES: usize = 4;
/// Most sync responses being read from storage at once.
pub const MAX_CONCURRENT_SERVES: usize = 4;
/// Bids verified per task on the blocking pool.
pub const PREVERIFY_CHUNK: usize = 256;
/// Longest wait between attempts to reconnect a link to a member: short next to a view
/// timeout, so a restarted member is heard from again within a round or two.
pub const RECONNECT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "node.redb";

/// Why a node cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The genesis file cannot be read.
    #[error("cannot read the genesis file {path}: {source}")]
    GenesisRead {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The genesis file is not a valid genesis.
    #[error("genesis file {path}: {source}")]
    Genesis {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        source: GenesisError,
    },
    /// The key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The key is not a member's.
    #[error(
        "the key in {key_file} (public key {public_key}) is not a member of the consortium in {genesis}{at}"
    )]
    NotAMember {
        /// The key file.
        key_file: String,
        /// Its public key.
        public_key: String,
        /// The genesis file.
        genesis: String,
        /// Where the registry was read, if not at the genesis.
        at: String,
    },
    /// The key was a member's, but the chain replaced it (spec A4).
    #[error(
        "the key in {key_file} (public key {public_key}) was member {member}'s, but the stored chain replaced it with {current} (from height {from_height} on): start the node with the key file of the new key"
    )]
    KeyReplaced {
        /// The key file.
        key_file: String,
        /// Its public key.
        public_key: String,
        /// The member.
        member: NodeId,
        /// The member's key at the head of the stored chain.
        current: String,
        /// The height from which the current key holds.
        from_height: u64,
    },
    /// The area model cannot be read.
    #[error("area model {path}: {reason}")]
    AreaModel {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored chain does not pass the audit: the node refuses to run on it.
    #[error("the stored chain fails its audit: {0}")]
    Audit(#[from] AuditError),
    /// A stored log record does not decode.
    #[error("stored log record {seq} does not decode: {source}")]
    Record {
        /// The record's sequence number.
        seq: u64,
        /// The cause.
        source: DecodeError,
    },
    /// The transport cannot start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The metrics endpoint cannot be bound.
    #[error("cannot bind the metrics endpoint {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The listen address is not usable.
    #[error(transparent)]
    Listen(ConfigError),
    /// A runtime task failed.
    #[error("runtime task failed: {0}")]
    Task(String),
}

/// Reads and validates a genesis file.
pub fn read_genesis(path: &Path) -> Result<Genesis, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::GenesisRead {
        path: path.display().to_string(),
        source,
    })?;
    Genesis::from_toml(&text).map_err(|source| NodeError::Genesis {
        path: path.display().to_string(),
        source,
    })
}

/// A node whose state is rebuilt from storage, ready to run.
struct Prepared {
    genesis: Arc<Genesis>,
    /// The participants the stored chain revoked, as they stood when revoked.
    revoked: BTreeMap<ParticipantId, Participant>,
    me: NodeId,
    signer: Ed25519Signer,
    scheme: Arc<CachingEd25519>,
    storage: Arc<Storage>,
    node: ManagementNode,
    /// (sequence, height) of every stored log record, in sequence order.
    log: VecDeque<(u64, u64)>,
    listen: SocketAddr,
}

/// Reads the configuration's files, opens storage, audits the stored chain (re-running each
/// block's clearing) and restores the state machine from the chain and the log.
fn prepare(config: &NodeConfig) -> Result<Prepared, NodeError> {
    let genesis = Arc::new(read_genesis(&config.genesis)?);
    let signer = keyfile::read(&config.key)?;
    // A key that is no member's at the genesis may be one the chain gave a member; a key that
    // is a member's at the genesis may have been replaced: the stored chain decides (below).
    let known = genesis
        .members
        .iter()
        .any(|m| m.public_key == signer.public_key());
    if !known && !config.data_dir.join(DATABASE_FILE).exists() {
        return Err(NodeError::NotAMember {
            key_file: config.key.display().to_string(),
            public_key: keyfile::public_hex(&signer),
            genesis: config.genesis.display().to_string(),
            at: String::new(),
        });
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let storage = Arc::new(Storage::open(config.data_dir.join(DATABASE_FILE))?);
    let scheme = Arc::new(CachingEd25519::for_genesis(&genesis));
    let clearing = rule_for(genesis.clearing.rule);

    let mut blocks = Vec::new();
    let mut registry = genesis.clone();
    // The height from which each member's current key holds, where the chain replaced it,
    // and whose each replaced key was.
    let mut key_since = BTreeMap::new();
    let mut replaced = BTreeMap::new();
    // The participants revoked, as they stood when revoked.
    let mut revoked = BTreeMap::new();
    let mut head = 0;
    if let Some(last) = storage.last_height() {
        let mut auditor = ChainAuditor::new(&genesis, scheme.as_ref(), clearing);
        for (_, bytes) in storage.blocks(1, last)? {
            let block = auditor.push_encoded(&bytes)?;
            let next = auditor.registry();
            if !Arc::ptr_eq(&next, &registry) {
                note_revoked(&registry, &next, &mut revoked);
                for m in &next.members {
                    if let Some(old) = registry
                        .member(m.id)
                        .filter(|r| r.public_key != m.public_key)
                    {
                        key_since.insert(m.id, block.header.height + 1);
                        replaced.insert(old.public_key, m.id);
                    }
                }
                registry = next;
            }
            blocks.push(block);
        }
        head = last;
        let summary = auditor.finish();
        info!(
            blocks = summary.blocks,
            trades = summary.trades,
            changes = summary.changes,
            head = %summary.head,
            "stored chain audited clean"
        );
    }
    // The node runs under its member's key at the head of its chain (spec A4: after a key
    // rotation the operator restarts it with the new key file).
    let member = member_of(config, &registry, &replaced, &key_since, &signer, head)?.clone();
    let me = member.id;
    let listen = match config.listen {
        Some(a) => a,
        None => config::parse_address("listen", &member.address).map_err(NodeError::Listen)?,
    };
    // This member's private security check: its area's grid model if it has one.
    let security: Arc<dyn SecurityCheck> = match &config.area_model {
        Some(path) => {
            let err = |reason: String| NodeError::AreaModel {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let model = AreaModel::from_matpower(&text, member.area, &genesis)
                .map_err(|e| err(e.to_string()))?;
            info!(area = %member.area, model = ?model, "grid security check from the area model");
            Arc::new(model)
        }
        None => Arc::new(NoGridModel),
    };
    let mut log = VecDeque::new();
    let mut records = Vec::new();
    for (seq, bytes) in storage.records()? {
        let r = Record::from_canonical_bytes(&bytes)
            .map_err(|source| NodeError::Record { seq, source })?;
        log.push_back((seq, r.height()));
        records.push(r);
    }
    let restored = records.len();
    let ctx = Context::new(
        genesis.clone(),
        me,
        Arc::new(signer.clone()),
        scheme.clone(),
        clearing,
        security,
    );
    let node = ManagementNode::restore(ctx, &blocks, records);
    info!(
        node = %me,
        height = node.state.height,
        view = node.state.view,
        log_records = restored,
        "state restored"
    );
    Ok(Prepared {
        genesis,
        revoked,
        me,
        signer,
        scheme,
        storage,
        node,
        log,
        listen,
    })
}

/// Adds the participants that `before` held and `after` no longer does (revoked) to `revoked`.
pub(crate) fn note_revoked(
    before: &Genesis,
    after: &Genesis,
    revoked: &mut BTreeMap<ParticipantId, Participant>,
) {
    for p in &before.participants {
        if after.participant(p.id).is_none() {
            revoked.insert(p.id, p.clone());
        }
    }
}

/// What the transport of member `me` accepts under `registry`: every member under its current
/// key, and the participants at this node. A participant revoked here keeps its last key
/// accepted so that its bids are answered with the revocation (`BidError::Revoked`) rather
/// than a refused handshake; the dispatcher serves it nothing else. A replaced key is gone.
pub(crate) fn directory_for(
    registry: &Genesis,
    revoked: &BTreeMap<ParticipantId, Participant>,
    me: NodeId,
) -> Directory {
    let mut d = Directory::for_home(registry, me);
    for p in revoked.values().filter(|p| p.home == me) {
        d.add_participant(p.id, p.public_key);
    }
    d
}

/// The member whose key `signer` holds in `registry` (the registry at the head of the stored
/// chain, `head`), or why there is none: naming the member whose key the chain replaced, if
/// the key was one, with its current key and the height that key holds from.
fn member_of<'r>(
    config: &NodeConfig,
    registry: &'r Genesis,
    replaced: &BTreeMap<PublicKey, NodeId>,
    key_since: &BTreeMap<NodeId, u64>,
    signer: &Ed25519Signer,
    head: u64,
) -> Result<&'r Member, NodeError> {
    let key = signer.public_key();
    if let Some(m) = registry.members.iter().find(|m| m.public_key == key) {
        return Ok(m);
    }
    let key_file = config.key.display().to_string();
    let public_key = keyfile::public_hex(signer);
    match replaced.get(&key).and_then(|id| registry.member(*id)) {
        Some(current) => Err(NodeError::KeyReplaced {
            key_file,
            public_key,
            member: current.id,
            current: current.public_key.to_hex(),
            from_height: key_since.get(&current.id).copied().unwrap_or(1),
        }),
        None => Err(NodeError::NotAMember {
            key_file,
            public_key,
            genesis: config.genesis.display().to_string(),
            at: if head > 0 {
                format!(" nor a member's at the head of its stored chain (height {head})")
            } else {
                String::new()
            },
        }),
    }
}

/// What the dispatcher and the driver share.
struct Shared {
    /// The registry at the node's head (the driver publishes it).
    registry: watch::Receiver<Arc<Genesis>>,
    scheme: Arc<CachingEd25519>,
    storage: Arc<Storage>,
    metrics: Arc<NodeMetrics>,
    status: watch::Receiver<NodeStatus>,
    preverify_slots: Arc<tokio::sync::Semaphore>,
    query_slots: Arc<tokio::sync::Semaphore>,
    /// The batches compact frames are resolved against and peers' fetches served from
    /// (shared with the driver, which keeps what it sends and prunes what is committed).
    batches: Arc<std::sync::Mutex<BatchStore>>,
    /// To fetch a batch from the member whose frame named it.
    endpoint: Endpoint,
    /// The whole frames of this node's own proposals at its height (kept by the driver).
    sent: Arc<std::sync::Mutex<driver::SentProposals>>,
    /// The last proposal resolved from each member: the base of its next revision frame.
    proposals:
        std::sync::Mutex<std::collections::HashMap<NodeId, tieline_core::consensus::Proposal>>,
}

/// Runs a management node until `shutdown` completes (or a fatal error), then stops
/// gracefully: the group in progress is written and its effects carried out, the transport
/// tells its peers, and the database is closed.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let cfg = config.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&cfg))
        .await
        .map_err(|e| NodeError::Task(e.to_string()))??;
    let Prepared {
        genesis,
        revoked,
        me,
        signer,
        scheme,
        storage,
        node,
        log,
        listen,
    } = prepared;

    let transport = TransportConfig {
        max_frame_len: config.max_frame_len,
        backoff_max: RECONNECT_BACKOFF_MAX,
        ..TransportConfig::default()
    };
    // The transport accepts the participants and members' keys of the registry at the head
    // of the stored chain; the driver keeps it following the registry.
    let (registry, delta) = driver::registry_of(&node, &revoked);
    let (endpoint, inbound) = Endpoint::bind(
        listen,
        signer,
        directory_for(&registry, &revoked, me),
        transport,
    )?;
    let metrics = Arc::new(NodeMetrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            stop_tx.send_replace(true);
        }
    });
    if let Some(addr) = config.metrics {
        let listener = metrics::bind(addr)
            .await
            .map_err(|source| NodeError::Metrics { addr, source })?;
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            endpoint.clone(),
            stop_rx.clone(),
        ));
    }
    let (status_tx, status_rx) = watch::channel(driver::status_of(&node, None, &delta));
    let (registry_tx, registry_rx) = watch::channel(registry);
    let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
    let batches = Arc::new(std::sync::Mutex::new(BatchStore::default()));
    let sent = Arc::new(std::sync::Mutex::new(driver::SentProposals::new()));
    let shared = Arc::new(Shared {
        registry: registry_rx,
        scheme,
        storage: storage.clone(),
        metrics: metrics.clone(),
        status: status_rx,
        preverify_slots: Arc::new(tokio::sync::Semaphore::new(parallelism)),
        query_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_QUERIES)),
        batches: batches.clone(),
        endpoint: endpoint.clone(),
        sent: sent.clone(),
        proposals: std::sync::Mutex::default(),
    });
    let (pending_tx, pending_rx) = tokio::sync::mpsc::channel(PENDING_QUEUE_LEN);
    let dispatcher = tokio::spawn(serve::dispatch(
        inbound,
        shared.clone(),
        pending_tx,
        stop_rx.clone(),
    ));
    info!(node = %me, %listen, members = genesis.n(), "management node running");
    let result = driver::Driver::new(
        node,
        storage,
        endpoint.clone(),
        log,
        metrics,
        driver::Publish {
            status: status_tx,
            registry: registry_tx,
            revoked,
            batches,
            sent,
        },
        config.max_frame_len,
    )
    .run(pending_rx, stop_rx)
    .await;
    stop_tx.send_replace(true);
    dispatcher.abort();
    endpoint.shutdown().await;
    match &result {
        Ok(()) => info!(node = %me, "stopped"),
        Err(e) => error!(node = %me, error = %e, "stopped on a fatal error"),
    }
    result
}
