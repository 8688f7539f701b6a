//! The `tieline` command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use tieline_core::block::{AppealClaim, AppealResolution};
use tieline_core::consensus::Reply;
use tieline_core::crypto::{Digest, PublicKey, Signed, Signer};
use tieline_core::eic::Eic;
use tieline_core::encoding::Tagged;
use tieline_core::genesis::{
    Area, ClearingParams, ClearingRule, FaultKind, FaultModel, Genesis, Member, Participant,
    TieLine, Timing,
};
use tieline_core::market::{
    Bid, BidStep, Product, Settlement, Side, SignedBid, SignedReceipt, Term,
};
use tieline_core::registry::{Party, RegistryChange, SignedChange};
use tieline_core::schedule::GateSchedule;
use tieline_core::units::{
    AreaId, BusId, NodeId, ParticipantId, Price, Quantity, TieLineId, Timestamp,
};
use tieline_net::node::{ConfigFile, LogFormat, NodeConfig, read_genesis};
use tieline_net::participant::ParticipantClient;
use tieline_net::{chainfile, cluster, keyfile};

mod demo;

/// Tieline: a consortium ledger for cross-border electricity trade.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new ed25519 key file and print its public key.
    Keygen {
        /// Where to write the secret key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Assemble a consortium genesis file from member keys, areas and tie lines.
    Genesis(GenesisArgs),
    /// Run a management node.
    Node(NodeArgs),
    /// Submit a signed bid to the participant's home node and print the receipt.
    Bid(BidArgs),
    /// A participant's trades and prices, each verified by its Merkle proof against a
    /// certified header.
    Query(QueryArgs),
    /// The participant's home node's status: committed height, view, last block, and the
    /// registry at its head (the participants admitted, those revoked).
    Status(ParticipantArgs),
    /// Admit a participant on chain (spec A1): run by its home node's operator, signed with
    /// the home node's key file and submitted to that node; it takes effect from the height
    /// after the block that carries it.
    Admit(AdmitArgs),
    /// Revoke a participant on chain (spec A2): run by its home node's operator, signed with
    /// the home node's key file; from the height after the block that carries it, its bids
    /// are refused.
    Revoke(RevokeArgs),
    /// Replace a key on chain (spec A3, A4): a participant's, signed with its current key
    /// and countersigned by its home node; or, with --member, a member's, signed with its
    /// current key and a quorum of members' keys (--cosign).
    RotateKey(RotateKeyArgs),
    /// Verify a chain offline against its genesis, re-running each block's clearing: an
    /// exported chain file or a (stopped) node's data directory.
    Audit {
        #[command(flatten)]
        source: ChainArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Appeal the preliminary result of the round in progress to your home node (the paper's
    /// step 5): prints the node's receipt of the appeal and, once the round commits, the
    /// resolution recorded in the block.
    Appeal(AppealArgs),
    /// Run any MATPOWER case as a consortium: one member per area (or zone), tie lines between
    /// them, every generator and loaded bus bidding, and one negotiation through the real
    /// consensus in memory with each member checking its own area's grid privately.
    Grid(GridArgs),
    /// Export a (stopped) node's stored chain to a chain file.
    Export {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The chain file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a self-contained HTML audit report of a chain (re-running the audit): verdict,
    /// rounds, negotiations, prices, tie-line flows and signatures.
    Report {
        #[command(flatten)]
        source: ChainArgs,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the IEC 62325-451 (ENTSO-E) result documents of a committed round after auditing
    /// the chain: the A44 price publication, one A25 allocation result per participant with
    /// trades, and the A09 tie-line exchange publication.
    Documents {
        #[command(flatten)]
        source: ChainArgs,
        /// The round (block height).
        #[arg(long)]
        height: u64,
        /// The directory to write the documents to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The member writing the documents, their sender (default: the block's primary).
        #[arg(long)]
        member: Option<u16>,
    },
    /// The paper's whole trade process on a local consortium (each node its own process, QUIC
    /// on loopback): RTS-GMLC as three countries with private grid checks, objections, cuts,
    /// revisions and an appeal; a primary killed and skipped; the restarted node catching up;
    /// every chain audited and an HTML report written.
    Demo {
        /// Print the summary as one JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Trading rounds to commit.
        #[arg(long, default_value_t = 8)]
        rounds: u64,
        /// Keep the cluster's files in this directory instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// The market: the RTS-GMLC grid consortium, or the simple sample one.
        #[arg(long, value_enum, default_value_t = demo::DemoMarket::Grid)]
        market: demo::DemoMarket,
        /// Where to write the HTML report of the chain (default: tieline-demo-report.html in
        /// the system's temporary directory).
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

/// A chain to read offline, with its genesis.
#[derive(Args)]
struct ChainArgs {
    /// The consortium's genesis file (TOML).
    #[arg(long)]
    genesis: PathBuf,
    /// An exported chain file.
    #[arg(
        long,
        conflicts_with = "data_dir",
        required_unless_present = "data_dir"
    )]
    chain: Option<PathBuf>,
    /// A node's data directory (the node must be stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ChainArgs {
    /// The genesis and the encoded blocks.
    fn read(&self) -> Result<(Genesis, Vec<Vec<u8>>)> {
        let genesis = read_genesis(&self.genesis)?;
        let blocks = match (&self.chain, &self.data_dir) {
            (Some(c), _) => chainfile::read_chain(c)?,
            (None, Some(d)) => cluster::stored_chain(d)
                .with_context(|| format!("cannot read the node database in {}", d.display()))?,
            (None, None) => bail!("give --chain or --data-dir"),
        };
        Ok((genesis, blocks))
    }
}

#[derive(Args)]
struct GenesisArgs {
    /// Where to write the genesis (refuses to overwrite).
    #[arg(long)]
    out: PathBuf,
    /// The consortium's name.
    #[arg(long, default_value = "tieline")]
    name: String,
    /// An area: `ID=NAME[@EIC]`, EIC the bidding zone's Energy Identification Code
    /// (repeat).
    #[arg(long = "area", required = true)]
    areas: Vec<String>,
    /// A management node, in rotation order:
    /// `area=ID,address=HOST:PORT,key=KEY[,name=NAME][,eic=EIC]` where KEY is a key file or a
    /// public key in hex (repeat; ids are 1, 2, ...).
    #[arg(long = "member", required = true)]
    members: Vec<String>,
    /// A participant: `home=NODE,key=KEY[,id=ID][,name=NAME][,eic=EIC]` (repeat; trades in
    /// its home node's area; ids default to 1000, 1001, ...).
    #[arg(long = "participant")]
    participants: Vec<String>,
    /// A tie line: `from=AREA,to=AREA,capacity=MWH[,backward=MWH]` (repeat).
    #[arg(long = "tie-line")]
    tie_lines: Vec<String>,
    /// Fault model: `crash` or `byzantine`.
    #[arg(long, default_value = "byzantine")]
    fault: String,
    /// Faulty nodes tolerated (default: the most the member count allows).
    #[arg(long)]
    f: Option<u16>,
    /// Clearing rule: `pay-as-bid`, `uniform-price` or `zonal-coupling`.
    #[arg(long, default_value = "uniform-price")]
    rule: String,
    /// Price tick (currency per MWh).
    #[arg(long, default_value = "0.01")]
    price_tick: String,
    /// Lowest bid price.
    #[arg(long, default_value = "-500", allow_hyphen_values = true)]
    price_floor: String,
    /// Highest bid price.
    #[arg(long, default_value = "3000")]
    price_cap: String,
    /// Continuous rounds instead of a daily schedule: each height's gate closes this many ms
    /// after it opens, and each height is its own auction of the bids that arrived meanwhile.
    #[arg(long, conflicts_with_all = ["gate_at", "gate_zone", "resolution", "first_delivery_day"])]
    gate_ms: Option<u64>,
    /// The daily gate closure (default, the day-ahead market's): local time `HH:MM[:SS]` on the day
    /// before delivery. Each height clears one delivery day; a bid rests at its home node
    /// until its period's gate.
    #[arg(long, default_value = "12:00")]
    gate_at: String,
    /// The schedule's IANA time zone.
    #[arg(long, default_value = "Europe/Brussels")]
    gate_zone: String,
    /// The delivery periods the schedule opens, in minutes: 15, 30 or 60.
    #[arg(long, default_value_t = 15)]
    resolution: u16,
    /// The delivery day of height 1, `YYYY-MM-DD` (default: the day whose gate is the next to
    /// close).
    #[arg(long)]
    first_delivery_day: Option<String>,
    /// The primary's wait for missing batches, in ms.
    #[arg(long, default_value_t = Timing::DEFAULT_BATCH_WAIT_MS)]
    batch_wait_ms: u64,
    /// View timeout before a fault skip, in ms.
    #[arg(long, default_value_t = Timing::DEFAULT_VIEW_TIMEOUT_MS)]
    view_timeout_ms: u64,
    /// Consecutive heights per primary.
    #[arg(long, default_value_t = 1)]
    rotation_period: u64,
    /// Negotiation revisions before the fallback.
    #[arg(long, default_value_t = 4)]
    max_revisions: u32,
}

#[derive(Args)]
struct NodeArgs {
    /// The node configuration file (TOML); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The genesis file.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// This member's key file.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The QUIC listen address (default: this member's genesis address).
    #[arg(long)]
    listen: Option<String>,
    /// The Prometheus metrics address (GET /metrics).
    #[arg(long)]
    metrics: Option<String>,
    /// Log format: human or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `info,tieline_net=debug`.
    #[arg(long)]
    log_level: Option<String>,
    /// A MATPOWER model of this member's area.
    #[arg(long)]
    area_model: Option<PathBuf>,
    /// Largest frame on the wire, in MiB.
    #[arg(long)]
    max_frame_mib: Option<usize>,
    /// Stop when standard input closes (for nodes run by another program).
    #[arg(long, hide = true)]
    exit_on_stdin_close: bool,
}

#[derive(Args)]
struct ParticipantArgs {
    /// The consortium's genesis file.
    #[arg(long)]
    genesis: PathBuf,
    /// The key file: the participant's; for a registry change, the key that signs it and
    /// authenticates the connection (the home node's for admit and revoke, the current one
    /// being replaced for rotate-key).
    #[arg(long)]
    key: PathBuf,
    /// Talk to this node instead of the key's own (the participant's home node, or the member
    /// whose key it is).
    #[arg(long)]
    node: Option<u16>,
    /// The node's current public key (hex), if the chain replaced the genesis one.
    #[arg(long)]
    node_key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// Who submits a registry change, and how long to wait for it.
#[derive(Args)]
struct ChangeArgs {
    #[command(flatten)]
    who: ParticipantArgs,
    /// Wait (at most SECONDS, 60 if not given) until the block carrying the change commits,
    /// and report whether the change took effect.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    wait: Option<u64>,
}

#[derive(Args)]
struct AdmitArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// The new participant's id (unused by any participant, admitted or revoked).
    #[arg(long)]
    id: u32,
    /// Its name.
    #[arg(long)]
    name: String,
    /// Its area (default: the home node's area).
    #[arg(long)]
    area: Option<u16>,
    /// Its public key: 64 hex characters (as `tieline keygen` prints), or its key file.
    #[arg(long)]
    public_key: String,
    /// Its Energy Identification Code.
    #[arg(long)]
    eic: Option<String>,
}

#[derive(Args)]
struct RevokeArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// The participant's id.
    #[arg(long)]
    participant: u32,
}

#[derive(Args)]
struct RotateKeyArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// The new key: a key file (`tieline keygen --out`), or its public key in hex.
    #[arg(long)]
    new_key: String,
    /// Replace a member's key (--key is the member's current key file) instead of a
    /// participant's.
    #[arg(long)]
    member: bool,
    /// With --member: another member's current key file, signing too (repeat until a quorum
    /// of members signs, the member itself included).
    #[arg(long = "cosign", value_name = "FILE", requires = "member")]
    cosign: Vec<PathBuf>,
}

#[derive(Args)]
struct BidArgs {
    #[command(flatten)]
    who: ParticipantArgs,
    /// `buy` or `sell`.
    #[arg(long, required_unless_present = "document")]
    side: Option<String>,
    /// A price-quantity step `PRICE@MWH` (repeat; prices falling for a buyer, rising for a
    /// seller).
    #[arg(
        long = "step",
        required_unless_present = "document",
        allow_hyphen_values = true
    )]
    steps: Vec<String>,
    /// Bid with an IEC 62325-451-3 Bid_MarketDocument (XML) instead of --side/--step: every
    /// point of every time series becomes one bid; any error refuses the whole document.
    #[arg(long, conflicts_with_all = ["side", "steps", "delivery_start", "save"])]
    document: Option<PathBuf>,
    /// With --document: write the Acknowledgement_MarketDocument here (default: print it).
    #[arg(long, requires = "document")]
    ack_out: Option<PathBuf>,
    /// Delivery start: ms since the Unix epoch or a UTC time such as `2026-12-08T10:15Z`
    /// (default: with a gate schedule, the first period of the delivery day whose gate closes
    /// next; otherwise the next full hour).
    #[arg(long)]
    delivery_start: Option<String>,
    /// Delivery length in minutes (default: the schedule's resolution, or 60).
    #[arg(long)]
    minutes: Option<u32>,
    /// `spot` or `medium-long-term`.
    #[arg(long, default_value = "spot")]
    term: String,
    /// `physical` or `financial`.
    #[arg(long, default_value = "physical")]
    settlement: String,
    /// The bid's nonce (default: the current time in ms times 1000, the scale `--document`
    /// numbers its bids on; must rise per participant).
    #[arg(long)]
    nonce: Option<u64>,
    /// The bus, where the area's grid model needs one.
    #[arg(long)]
    bus: Option<u32>,
    /// Bid as this participant id instead of the key's (the node checks the signature).
    #[arg(long)]
    as_participant: Option<u32>,
    /// Keep the signed bid and its receipt in this file (JSON), the evidence of an appeal
    /// (`tieline appeal --omitted FILE`).
    #[arg(long)]
    save: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("claim").required(true).args(["omitted", "disputes"])))]
struct AppealArgs {
    #[command(flatten)]
    who: ParticipantArgs,
    /// Claim that a receipted bid was left out: the file `tieline bid --save` wrote.
    #[arg(long)]
    omitted: Option<PathBuf>,
    /// Dispute the allocation of one of your bids in the round: its id (hex).
    #[arg(long)]
    disputes: Option<String>,
    /// The round appealed (default: the home node's round in progress).
    #[arg(long)]
    height: Option<u64>,
    /// Seconds to wait for the round to commit (0: do not wait).
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

/// Which bus column makes the members of `tieline grid`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SplitArg {
    /// The bus `area` column (7th).
    Area,
    /// The bus `zone` column (11th).
    Zone,
}

#[derive(Args)]
struct GridArgs {
    /// The MATPOWER case (version 2).
    #[arg(long)]
    case: PathBuf,
    /// One member per area or per zone.
    #[arg(long, value_enum, default_value = "area")]
    split: SplitArg,
    /// Tie-line capacities, percent of their ratings (rateA; a tie without a rating is
    /// unlimited: it gets the case's installed generation).
    #[arg(long, default_value_t = 100)]
    tie_rating: u32,
    /// Ratings of the lines inside the areas, percent of the case's (below 100: stressed).
    #[arg(long, default_value_t = 100)]
    line_rating: u32,
    /// Chord segments per quadratic (polynomial) cost.
    #[arg(long, default_value_t = tieline_core::grid::DEFAULT_POLYNOMIAL_SEGMENTS)]
    segments: u32,
    /// Negotiation revisions before the fallback (the genesis's `max_revisions`, 1 to 64):
    /// each revision adds the cuts of the lines the last one overloaded; PEGASE 9241 by zone
    /// (24 members) needs 34.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=64))]
    max_revisions: u32,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    /// Also write the genesis, each member's area file and key, and offers.csv here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    who: ParticipantArgs,
    /// The first height to report.
    #[arg(long, default_value_t = 1)]
    from_height: u64,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Keygen { out } => {
            let signer = keyfile::generate(&out)?;
            println!("{}", keyfile::public_hex(&signer));
            Ok(ExitCode::SUCCESS)
        }
        Command::Genesis(args) => genesis(args),
        Command::Node(args) => node(args),
        Command::Bid(args) => runtime()?.block_on(bid(args)),
        Command::Query(args) => runtime()?.block_on(query(args)),
        Command::Appeal(args) => runtime()?.block_on(appeal(args)),
        Command::Grid(args) => grid(args),
        Command::Status(args) => runtime()?.block_on(status(args)),
        Command::Admit(args) => runtime()?.block_on(admit(args)),
        Command::Revoke(args) => runtime()?.block_on(revoke(args)),
        Command::RotateKey(args) => runtime()?.block_on(rotate_key(args)),
        Command::Audit { source, json } => audit(&source, json),
        Command::Export { data_dir, out } => {
            let blocks = cluster::stored_chain(&data_dir)?;
            let decoded = blocks
                .iter()
                .map(|b| {
                    <tieline_core::block::Block as tieline_core::encoding::Tagged>::from_canonical_bytes(b)
                })
                .collect::<Result<Vec<_>, _>>()
                .context("a stored block does not decode")?;
            chainfile::write_chain(&out, &decoded)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("exported {} blocks to {}", decoded.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { source, out } => report(&source, &out),
        Command::Documents {
            source,
            height,
            out,
            member,
        } => documents(&source, height, &out, member),
        Command::Demo {
            json,
            rounds,
            keep,
            market,
            report,
        } => {
            let options = demo::DemoOptions {
                json,
                market,
                report: report
                    .unwrap_or_else(|| std::env::temp_dir().join("tieline-demo-report.html")),
                rounds,
                keep,
                bin: std::env::current_exe().context("cannot locate the tieline binary")?,
            };
            let summary = runtime()?.block_on(demo::run(options))?;
            Ok(if summary.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

// ----- node -----

fn init_logs(format: LogFormat, filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn node(args: NodeArgs) -> Result<ExitCode> {
    let flags = ConfigFile {
        genesis: args.genesis,
        key: args.key,
        data_dir: args.data_dir,
        listen: args.listen,
        metrics: args.metrics,
        log_format: args.log_format,
        log_level: args.log_level,
        area_model: args.area_model,
        max_frame_mib: args.max_frame_mib,
    };
    let config = NodeConfig::load(args.config.as_deref(), flags)?;
    init_logs(config.log_format, &config.log_level);
    let stdin_watch = args.exit_on_stdin_close;
    runtime()?.block_on(async move {
        let shutdown = async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            let stdin_closed = async {
                if stdin_watch {
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                        let _ = tx.send(());
                    });
                    let _ = rx.await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = stdin_closed => tracing::info!("standard input closed: shutting down"),
            }
        };
        tieline_net::node::run(config, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

// ----- genesis -----

/// `key=value` pairs of a flag; the values may contain `:` but not `,`.
fn pairs<'a>(flag: &str, s: &'a str, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("--{flag} `{s}`: `{part}` is not key=value"))?;
        if !allowed.contains(&k) {
            bail!(
                "--{flag} `{s}`: unknown key `{k}` (expected {})",
                allowed.join(", ")
            );
        }
        out.push((k, v));
    }
    Ok(out)
}

fn get<'a>(flag: &str, s: &str, pairs: &[(&str, &'a str)], key: &str) -> Result<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| anyhow!("--{flag} `{s}`: `{key}=` is required"))
}

fn number<T: std::str::FromStr>(flag: &str, what: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| anyhow!("--{flag}: `{what}` must be a number, found `{v}`"))
}

/// An EIC given to `--{flag}` (spec D24): checked here so the error names the flag.
fn eic(flag: &str, s: &str, code: &str) -> Result<Eic> {
    Eic::parse(code).map_err(|e| anyhow!("--{flag} `{s}`: eic: {e}"))
}

fn optional_eic(flag: &str, s: &str, pairs: &[(&str, &str)]) -> Result<Option<Eic>> {
    pairs
        .iter()
        .find(|(k, _)| *k == "eic")
        .map(|(_, v)| eic(flag, s, v))
        .transpose()
}

/// A public key given as a key file or as hex.
fn public_key(flag: &str, v: &str) -> Result<PublicKey> {
    let path = Path::new(v);
    if path.exists() {
        return Ok(keyfile::read(path)?.public_key());
    }
    PublicKey::from_hex(v)
        .map_err(|_| anyhow!("--{flag}: key `{v}` is neither a key file nor 64 hex characters"))
}

/// The daily schedule `tieline genesis` writes unless `--gate-ms` is given (spec D24).
fn gate_schedule(a: &GenesisArgs) -> Result<GateSchedule> {
    let mut s = GateSchedule {
        zone: a.gate_zone.clone(),
        gate_second: GateSchedule::parse_time(&a.gate_at).map_err(|e| anyhow!("--gate-at: {e}"))?,
        resolution_minutes: a.resolution,
        first_delivery_day: 0,
    };
    if let Err((field, reason)) = s.validate() {
        let flag = match field {
            "zone" => "gate-zone",
            "resolution_minutes" => "resolution",
            _ => "gate-at",
        };
        bail!("--{flag}: {reason}");
    }
    s.first_delivery_day = match &a.first_delivery_day {
        Some(day) => {
            GateSchedule::parse_day(day).map_err(|e| anyhow!("--first-delivery-day: {e}"))?
        }
        // Counted from 1970-01-01 (day 0), the open height is the day whose gate closes next.
        None => i32::try_from(s.open_height(Timestamp(now_ms())) - 1)
            .map_err(|_| anyhow!("the clock is past the calendar's range"))?,
    };
    Ok(s)
}

fn genesis(a: GenesisArgs) -> Result<ExitCode> {
    let areas = a
        .areas
        .iter()
        .map(|s| {
            let (id, name) = s
                .split_once('=')
                .ok_or_else(|| anyhow!("--area `{s}`: expected ID=NAME[@EIC]"))?;
            let (name, eic) = match name.rsplit_once('@') {
                Some((name, code)) => (name, Some(eic("area", s, code)?)),
                None => (name, None),
            };
            Ok(Area {
                id: AreaId(number("area", "ID", id)?),
                name: name.to_string(),
                eic,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let members = a
        .members
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = pairs("member", s, &["area", "address", "key", "name", "eic"])?;
            Ok(Member {
                id: NodeId(i as u16 + 1),
                name: p
                    .iter()
                    .find(|(k, _)| *k == "name")
                    .map_or_else(|| format!("Member {}", i + 1), |(_, v)| v.to_string()),
                area: AreaId(number("member", "area", get("member", s, &p, "area")?)?),
                public_key: public_key("member", get("member", s, &p, "key")?)?,
                address: get("member", s, &p, "address")?.to_string(),
                eic: optional_eic("member", s, &p)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let participants = a
        .participants
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = pairs("participant", s, &["home", "key", "id", "name", "eic"])?;
            let home = NodeId(number(
                "participant",
                "home",
                get("participant", s, &p, "home")?,
            )?);
            let area = members
                .iter()
                .find(|m| m.id == home)
                .map(|m| m.area)
                .ok_or_else(|| anyhow!("--participant `{s}`: home {home} is not a member"))?;
            let id = match p.iter().find(|(k, _)| *k == "id") {
                Some((_, v)) => number("participant", "id", v)?,
                None => 1000 + i as u32,
            };
            Ok(Participant {
                id: ParticipantId(id),
                name: p
                    .iter()
                    .find(|(k, _)| *k == "name")
                    .map_or_else(|| format!("participant-{id}"), |(_, v)| v.to_string()),
                home,
                area,
                public_key: public_key("participant", get("participant", s, &p, "key")?)?,
                eic: optional_eic("participant", s, &p)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let tie_lines = a
        .tie_lines
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = pairs("tie-line", s, &["from", "to", "capacity", "backward"])?;
            let q = |v: &str| Quantity::parse(v).map_err(|e| anyhow!("--tie-line `{s}`: {e}"));
            let forward = q(get("tie-line", s, &p, "capacity")?)?;
            Ok(TieLine {
                id: TieLineId(i as u16 + 1),
                from: AreaId(number("tie-line", "from", get("tie-line", s, &p, "from")?)?),
                to: AreaId(number("tie-line", "to", get("tie-line", s, &p, "to")?)?),
                capacity_forward: forward,
                capacity_backward: match p.iter().find(|(k, _)| *k == "backward") {
                    Some((_, v)) => q(v)?,
                    None => forward,
                },
                from_bus: None,
                to_bus: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let kind = match a.fault.as_str() {
        "crash" => FaultKind::Crash,
        "byzantine" => FaultKind::Byzantine,
        other => bail!("--fault: `{other}` is not crash or byzantine"),
    };
    let n = members.len();
    let f = a.f.unwrap_or(match kind {
        FaultKind::Crash => (n.saturating_sub(1) / 2) as u16,
        FaultKind::Byzantine => (n.saturating_sub(1) / 3) as u16,
    });
    let rule = match a.rule.as_str() {
        "pay-as-bid" => ClearingRule::PayAsBid,
        "uniform-price" => ClearingRule::UniformPrice,
        "zonal-coupling" => ClearingRule::ZonalCoupling,
        other => bail!("--rule: `{other}` is not pay-as-bid, uniform-price or zonal-coupling"),
    };
    let price = |flag: &str, v: &str| Price::parse(v).map_err(|e| anyhow!("--{flag}: {e}"));
    let mut participants = participants;
    participants.sort_by_key(|p| p.id);
    let schedule = match a.gate_ms {
        Some(_) => None,
        None => Some(gate_schedule(&a)?),
    };
    let g = Genesis {
        chain_name: a.name,
        areas,
        members,
        participants,
        tie_lines,
        fault_model: FaultModel { kind, f },
        rotation_period: a.rotation_period,
        timing: Timing {
            gate_ms: a.gate_ms.unwrap_or(0),
            batch_wait_ms: a.batch_wait_ms,
            view_timeout_ms: a.view_timeout_ms,
            schedule,
        },
        max_revisions: a.max_revisions,
        clearing: ClearingParams {
            rule,
            price_tick: price("price-tick", &a.price_tick)?,
            price_floor: price("price-floor", &a.price_floor)?,
            price_cap: price("price-cap", &a.price_cap)?,
        },
    };
    g.validate()?;
    if a.out.exists() {
        bail!("{} exists; not overwriting it", a.out.display());
    }
    std::fs::write(&a.out, g.to_toml())
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "wrote {}: {} members, {} participants, chain id {}",
        a.out.display(),
        g.n(),
        g.participants.len(),
        g.chain_id()
    );
    match &g.timing.schedule {
        Some(s) => println!(
            "gates: daily at {} {} for the next day's {}-minute periods; height 1 delivers on {}, its gate closes at {}",
            GateSchedule::time_text(s.gate_second),
            s.zone,
            s.resolution_minutes,
            GateSchedule::day_text(s.first_delivery_day),
            tieline_net::report::utc(s.gate_of(1)),
        ),
        None => println!(
            "gates: {} ms after each height opens (continuous rounds)",
            g.timing.gate_ms
        ),
    }
    Ok(ExitCode::SUCCESS)
}

// ----- participant commands -----

/// A client for the key of `who`, connected to its node (found by the genesis, or by the
/// registry on chain for a key the chain admitted), which has told it the registry at its head.
async fn client(who: &ParticipantArgs) -> Result<(Arc<Genesis>, ParticipantClient)> {
    let genesis = Arc::new(read_genesis(&who.genesis)?);
    let signer = keyfile::read(&who.key)?;
    let node_key = who
        .node_key
        .as_deref()
        .map(|k| {
            PublicKey::from_hex(k)
                .map_err(|_| anyhow!("--node-key: `{k}` is not a public key of 64 hex characters"))
        })
        .transpose()?;
    let c = ParticipantClient::locate(
        genesis.clone(),
        signer,
        who.node.map(NodeId),
        node_key,
        Duration::from_secs(who.timeout.max(1)),
    )
    .await?;
    Ok((genesis, c))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The first nonce of bids made at `now` ms: the time times 1000, so that the bids of one
/// document (numbered from it) and later single bids keep rising per participant.
fn nonce_base(now: u64) -> u64 {
    now.saturating_mul(1000)
}

/// The participant a command acts as: `--as-participant`, else the key's own.
fn acting_participant(a: &BidArgs, c: &ParticipantClient) -> Option<ParticipantId> {
    a.as_participant.map(ParticipantId).or(c.participant)
}

async fn bid(a: BidArgs) -> Result<ExitCode> {
    if let Some(path) = &a.document {
        return bid_document(&a, path).await;
    }
    let (genesis, c) = client(&a.who).await?;
    let Some(participant) = acting_participant(&a, &c) else {
        bail!("the key is not an admitted participant; give --as-participant");
    };
    // The area the registry at the node's head names (a participant admitted on chain is not
    // in the genesis file); a revoked one's from the genesis.
    let area = c
        .participant_record(participant)
        .or_else(|| genesis.participant(participant))
        .map_or(AreaId(0), |p| p.area);
    let side = match a.side.as_deref().unwrap_or("") {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => bail!("--side: `{other}` is not buy or sell"),
    };
    let steps = a
        .steps
        .iter()
        .map(|s| {
            let (p, q) = s
                .split_once('@')
                .ok_or_else(|| anyhow!("--step `{s}`: expected PRICE@MWH"))?;
            Ok(BidStep {
                price: Price::parse(p).map_err(|e| anyhow!("--step `{s}`: price: {e}"))?,
                quantity: Quantity::parse(q).map_err(|e| anyhow!("--step `{s}`: quantity: {e}"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let now = now_ms();
    let hour = 3_600_000;
    let schedule = genesis.timing.schedule.as_ref();
    let delivery_start = match &a.delivery_start {
        Some(text) => parse_instant(text).map_err(|e| anyhow!("--delivery-start: {e}"))?,
        None => match schedule {
            Some(s) => s.periods_of(s.open_height(Timestamp(now)))[0].0,
            None => (now / hour + 1) * hour,
        },
    };
    let minutes = a
        .minutes
        .unwrap_or(schedule.map_or(60, |s| u32::from(s.resolution_minutes)));
    let body = Bid {
        chain_id: genesis.chain_id(),
        participant,
        area,
        bus: a.bus.map(BusId),
        side,
        product: Product {
            delivery_start: Timestamp(delivery_start),
            delivery_minutes: minutes,
            term: match a.term.as_str() {
                "spot" => Term::Spot,
                "medium-long-term" => Term::MediumLongTerm,
                other => bail!("--term: `{other}` is not spot or medium-long-term"),
            },
            settlement: match a.settlement.as_str() {
                "physical" => Settlement::Physical,
                "financial" => Settlement::Financial,
                other => bail!("--settlement: `{other}` is not physical or financial"),
            },
        },
        steps,
        nonce: a.nonce.unwrap_or(nonce_base(now)),
        timestamp: Timestamp(now),
    };
    let id = body.id();
    let signed = Signed::sign(body, c.signer());
    let replies = c.submit(vec![signed.clone()]).await?;
    c.close().await;
    match replies.into_iter().next() {
        Some(Reply::Receipt(r)) => {
            if let Some(path) = &a.save {
                save_evidence(path, &signed, &r)?;
            }
            if a.who.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": "receipted", "bid": id.to_hex(), "participant": r.body.participant.0,
                        "home": r.body.home.0, "height": r.body.height, "received_at": r.body.received_at.0,
                        "receipt_signature": r.signature.to_hex(),
                    })
                );
            } else {
                println!(
                    "receipt: bid {} accepted by node {} for height {} (received at {} ms); receipt signature verified",
                    id, r.body.home, r.body.height, r.body.received_at.0
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Reply::BidRejected { reason, .. }) => {
            if a.who.json {
                println!(
                    "{}",
                    serde_json::json!({"status": "rejected", "bid": id.to_hex(), "reason": reason.to_string()})
                );
            } else {
                println!("rejected: bid {id}: {reason}");
            }
            Ok(ExitCode::FAILURE)
        }
        other => bail!("unexpected answer: {other:?}"),
    }
}

/// `tieline bid --document`: parses and checks the whole document, signs every bid, submits
/// them in one call, and writes the acknowledgement; a document with any error is refused
/// before anything is sent (its acknowledgement says why).
async fn bid_document(a: &BidArgs, path: &Path) -> Result<ExitCode> {
    use tieline_net::entsoe::{self, AckInput, BidContext, Parties};
    let (genesis, c) = client(&a.who).await?;
    let participant = acting_participant(a, &c);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--document {}: cannot read the file", path.display()))?;
    let parties = Parties::from_genesis(&genesis);
    let now = now_ms();
    let cx = BidContext {
        genesis: &genesis,
        parties: &parties,
        participant,
        first_nonce: nonce_base(now),
        now: Timestamp(now),
    };
    let home = c.node();
    let fallback_receiver = participant.map_or_else(
        || entsoe::Code {
            scheme: entsoe::FALLBACK_SCHEME.into(),
            code: "unknown".into(),
        },
        |p| parties.participant(p),
    );
    let write_ack = |xml: &str| -> Result<()> {
        match &a.ack_out {
            Some(out) => std::fs::write(out, xml)
                .with_context(|| format!("--ack-out {}: cannot write", out.display())),
            None => {
                print!("{xml}");
                Ok(())
            }
        }
    };
    let document = match entsoe::parse_bid_document(&text, &cx) {
        Ok(d) => d,
        Err(errors) => {
            c.close().await;
            let ack = entsoe::acknowledgement(
                &parties,
                home,
                &fallback_receiver,
                &AckInput::Refused(&errors),
                Timestamp(now_ms()),
            );
            write_ack(&ack)?;
            eprintln!("{}: {errors}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let signed: Vec<SignedBid> = document
        .bids
        .iter()
        .map(|b| Signed::sign(b.bid.clone(), c.signer()))
        .collect();
    let replies = c.submit(signed).await;
    c.close().await;
    let replies = replies?;
    let ack = entsoe::acknowledgement(
        &parties,
        home,
        &fallback_receiver,
        &AckInput::Submitted {
            document: &document,
            replies: &replies,
        },
        Timestamp(now_ms()),
    );
    write_ack(&ack)?;
    let receipted = replies
        .iter()
        .filter(|r| matches!(r, Reply::Receipt(_)))
        .count();
    eprintln!(
        "{}: {} bids submitted to node {home}, {receipted} receipted",
        path.display(),
        replies.len()
    );
    Ok(if receipted == replies.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// An instant given as ms since the Unix epoch or as an RFC 3339 / ISO 8601 UTC time.
fn parse_instant(text: &str) -> Result<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let t: jiff::Timestamp = text.parse().map_err(|_| {
        anyhow!("`{text}` is neither ms since the epoch nor a time like 2026-12-08T10:15Z")
    })?;
    u64::try_from(t.as_millisecond()).map_err(|_| anyhow!("`{text}` is before 1970"))
}

/// Writes a signed bid and its receipt as JSON (canonical bytes in hex), refusing to overwrite.
fn save_evidence(path: &Path, bid: &SignedBid, receipt: &SignedReceipt) -> Result<()> {
    let text = serde_json::json!({
        "bid": hex::encode(bid.to_canonical_bytes()),
        "receipt": hex::encode(receipt.to_canonical_bytes()),
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("--save {}: cannot create the file", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{text:#}\n").as_bytes())
        .with_context(|| format!("--save {}", path.display()))
}

/// Reads what [`save_evidence`] wrote.
fn read_evidence(path: &Path) -> Result<(SignedBid, SignedReceipt)> {
    let what = || format!("--omitted {}", path.display());
    let text = std::fs::read_to_string(path).with_context(what)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", what()))?;
    let field = |name: &str| -> Result<Vec<u8>> {
        let s = v[name]
            .as_str()
            .ok_or_else(|| anyhow!("{}: no `{name}` string", what()))?;
        hex::decode(s).with_context(|| format!("{}: `{name}` is not hex", what()))
    };
    let bid = SignedBid::from_canonical_bytes(&field("bid")?)
        .map_err(|e| anyhow!("{}: `bid`: {e}", what()))?;
    let receipt = SignedReceipt::from_canonical_bytes(&field("receipt")?)
        .map_err(|e| anyhow!("{}: `receipt`: {e}", what()))?;
    Ok((bid, receipt))
}

async fn appeal(a: AppealArgs) -> Result<ExitCode> {
    let (genesis, c) = client(&a.who).await?;
    let Some(participant) = c.participant else {
        bail!("the key is not an admitted participant: only a participant may appeal");
    };
    let claim = match (&a.omitted, &a.disputes) {
        (Some(path), _) => {
            let (bid, receipt) = read_evidence(path)?;
            AppealClaim::Omitted {
                bid: Box::new(bid),
                receipt,
            }
        }
        (None, Some(id)) => AppealClaim::Misallocated {
            bid: Digest::from_hex(id).map_err(|e| anyhow!("--disputes `{id}`: {e}"))?,
        },
        (None, None) => bail!("give --omitted FILE or --disputes BID"),
    };
    let height = match a.height {
        Some(h) => h,
        None => c.status().await?.height,
    };
    let body = tieline_core::block::Appeal {
        chain_id: genesis.chain_id(),
        participant,
        height,
        claim,
    };
    let reply = c.appeal(Signed::sign(body, c.signer())).await?;
    let json = a.who.json;
    let forwarded = match reply {
        Reply::AppealForwarded { height } => height,
        Reply::AppealRejected { reason } => {
            c.close().await;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"status": "refused", "reason": reason})
                );
            } else {
                println!("refused: {reason}");
            }
            return Ok(ExitCode::FAILURE);
        }
        other => bail!("unexpected answer: {other:?}"),
    };
    if !json {
        println!(
            "receipt: node {} forwarded the appeal on height {forwarded} to every member",
            c.node()
        );
    }
    if a.wait == 0 {
        c.close().await;
        if json {
            println!(
                "{}",
                serde_json::json!({"status": "forwarded", "height": forwarded})
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let process = c
        .committed_process(forwarded, Duration::from_secs(a.wait))
        .await;
    c.close().await;
    let process = process?;
    let block = process.header.digest().to_hex();
    let record = process.appeals_of(participant).last();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "status": if record.is_some() { "recorded" } else { "not recorded" },
                "height": forwarded,
                "block": block,
                "revision": process.header.revision,
                "resolution": record.map(|r| r.resolution.to_string()),
                "upheld": record.map(|r| matches!(r.resolution, AppealResolution::Upheld { .. })),
            })
        );
    } else {
        match record {
            Some(r) => println!(
                "recorded in block {} (height {forwarded}, revision {}; commit certificate verified): {}",
                &block[..16],
                process.header.revision,
                r.resolution
            ),
            None => println!(
                "not recorded in block {} (height {forwarded}): negotiation had closed or the primary changed; appeal again on the next round",
                &block[..16]
            ),
        }
    }
    Ok(if record.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn grid(a: GridArgs) -> Result<ExitCode> {
    use tieline_net::gridcase;
    if a.tie_rating == 0 || a.line_rating == 0 || a.segments == 0 {
        bail!("--tie-rating, --line-rating and --segments must be positive");
    }
    let text = std::fs::read_to_string(&a.case)
        .with_context(|| format!("cannot read the case {}", a.case.display()))?;
    let options = gridcase::GridOptions {
        split: match a.split {
            SplitArg::Area => tieline_core::grid::SplitColumn::Area,
            SplitArg::Zone => tieline_core::grid::SplitColumn::Zone,
        },
        tie_rating_percent: a.tie_rating,
        line_rating_percent: a.line_rating,
        polynomial_segments: a.segments,
        max_revisions: a.max_revisions,
    };
    let what = || format!("{}", a.case.display());
    let (c, setup) = gridcase::consortium(&text, &options).with_context(what)?;
    if let Some(dir) = &a.out {
        gridcase::write_out(&c, dir)?;
    }
    let report = gridcase::negotiate(&c, setup).with_context(what)?;
    if a.json {
        println!("{}", report.json());
    } else {
        report.print();
        if let Some(dir) = &a.out {
            println!(
                "wrote the genesis, {} area files with the members' (public sample) keys, and offers.csv to {}",
                c.area_files.len(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn query(a: QueryArgs) -> Result<ExitCode> {
    let (_, c) = client(&a.who).await?;
    let blocks = c.all_trades(a.from_height).await?;
    c.close().await;
    if a.who.json {
        let out: Vec<_> = blocks
            .iter()
            .map(|b| {
                serde_json::json!({
                    "height": b.header.height, "view": b.header.view, "block": b.header.digest().to_hex(),
                    "signers": b.certificate.signatures.len(), "proofs": "verified",
                    "trades": b.trades.iter().map(|t| serde_json::json!({
                        "bid": t.trade.bid.to_hex(),
                        "side": format!("{:?}", t.trade.side).to_lowercase(),
                        "quantity_mwh": t.trade.quantity.to_string(),
                        "price": t.trade.price.to_string(),
                        "counterparty": t.trade.counterparty.map(|p| p.0),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else if blocks.is_empty() {
        println!("no trades from height {}", a.from_height);
    } else {
        for b in &blocks {
            println!(
                "height {} (view {}, block {}, commit certificate of {} members verified):",
                b.header.height,
                b.header.view,
                &b.header.digest().to_hex()[..16],
                b.certificate.signatures.len()
            );
            for t in &b.trades {
                println!(
                    "  {:?} {} MWh at {} per MWh, bid {}: Merkle proof verified",
                    t.trade.side,
                    t.trade.quantity,
                    t.trade.price,
                    &t.trade.bid.to_hex()[..16]
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(a: ParticipantArgs) -> Result<ExitCode> {
    let (genesis, mut c) = client(&a).await?;
    let s = c.learn().await?;
    c.close().await;
    let registry = c.registry().clone();
    let revoked: std::collections::BTreeMap<ParticipantId, u64> = s
        .registry
        .revoked
        .iter()
        .map(|r| (r.participant.id, r.from_height))
        .collect();
    let committed = s.height - 1;
    // Under a gate schedule: the delivery day and gate of the height being decided, and the
    // height whose gate closes next (where a new bid goes).
    let gates = genesis.timing.schedule.as_ref().map(|sch| {
        let open = sch.open_height(Timestamp(now_ms())).max(s.height);
        (
            sch.delivery_day(s.height),
            sch.gate_of(s.height),
            open,
            sch.delivery_day(open),
            sch.gate_of(open),
        )
    });
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "node": s.node.0, "committed": committed, "view": s.view,
                "head": s.last.as_ref().map(|h| h.digest().to_hex()),
                "delivery_day": gates.map(|g| g.0.to_string()), "gate_ms": gates.map(|g| g.1.0),
                "open_height": gates.map(|g| g.2), "open_delivery_day": gates.map(|g| g.3.to_string()),
                "open_gate_ms": gates.map(|g| g.4.0),
                "registry": registry_json(&registry, &revoked),
            })
        );
    } else {
        println!(
            "node {}: {} blocks committed, deciding height {} in view {}",
            s.node, committed, s.height, s.view
        );
        if let Some((day, gate, open, open_day, open_gate)) = gates {
            println!(
                "height {} clears delivery day {day} (gate {}); new bids go to height {open}, delivery day {open_day}, gate {}",
                s.height,
                tieline_net::report::utc(gate),
                tieline_net::report::utc(open_gate)
            );
        }
        print_registry(&registry, &revoked, s.height);
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry as JSON: the participants admitted (id, name, home, area, key, EIC), those
/// revoked with the height from which they are, and the members' current keys.
fn registry_json(
    registry: &Genesis,
    revoked: &std::collections::BTreeMap<ParticipantId, u64>,
) -> serde_json::Value {
    serde_json::json!({
        "participants": registry.participants.iter().map(|p| serde_json::json!({
            "id": p.id.0, "name": p.name, "home": p.home.0, "area": p.area.0,
            "key": p.public_key.to_hex(), "eic": p.eic.as_ref().map(|e| e.to_string()),
        })).collect::<Vec<_>>(),
        "revoked": revoked.iter().map(|(p, h)| serde_json::json!({
            "id": p.0, "from_height": h,
        })).collect::<Vec<_>>(),
        "members": registry.members.iter().map(|m| serde_json::json!({
            "id": m.id.0, "name": m.name, "area": m.area.0, "key": m.public_key.to_hex(),
        })).collect::<Vec<_>>(),
    })
}

/// The registry in words, as it holds for `height`.
fn print_registry(
    registry: &Genesis,
    revoked: &std::collections::BTreeMap<ParticipantId, u64>,
    height: u64,
) {
    println!(
        "registry for height {height}: {} participants admitted, {} revoked",
        registry.participants.len(),
        revoked.len()
    );
    for p in &registry.participants {
        println!(
            "  participant {} \"{}\": home node {}, area {}, key {}",
            p.id, p.name, p.home, p.area, p.public_key
        );
    }
    for (p, h) in revoked {
        println!("  participant {p}: revoked from height {h}");
    }
}

// ----- registry changes -----

/// How `--wait` confirms a change that replaces the very key the command connects with: the
/// node stops accepting that key once the change takes effect.
enum Confirm {
    /// The change leaves the command's key in place.
    Stays,
    /// The change replaces the command's key; with the new key file, the command reconnects
    /// under it to read the registry, otherwise the node's refusal of the old key is the
    /// confirmation.
    Replaced(Option<Box<tieline_core::crypto::Ed25519Signer>>),
}

/// Submits `change` through `c` and reports the answer; with `--wait`, waits until the
/// carrying block commits and checks with `took_effect` (given the registry at the node's
/// head) whether the change took effect.
async fn submit_change(
    a: &ChangeArgs,
    mut c: ParticipantClient,
    change: SignedChange,
    confirm: Confirm,
    took_effect: impl Fn(&Genesis) -> bool,
) -> Result<ExitCode> {
    let what = change.describe();
    let answer = c.submit_change(change).await;
    let answer = match answer {
        Ok(r) => r,
        Err(e) => {
            c.close().await;
            return Err(e.into());
        }
    };
    let node = c.node();
    let height = match answer {
        Reply::ChangeAccepted { change, height } => {
            if a.who.json && a.wait.is_none() {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": "accepted", "change": change.to_hex(), "node": node.0,
                        "height": height, "effective_height": height + 1,
                    })
                );
            } else if !a.who.json {
                println!(
                    "accepted by node {node}: {what}; carried by its batch of height {height}, it takes effect from height {} (change {change})",
                    height + 1
                );
            }
            height
        }
        Reply::ChangeRefused { change, reason } => {
            c.close().await;
            if a.who.json {
                println!(
                    "{}",
                    serde_json::json!({"status": "refused", "change": change.to_hex(), "reason": reason})
                );
            } else {
                println!("refused by node {node}: {what}: {reason}");
            }
            return Ok(ExitCode::FAILURE);
        }
        other => {
            c.close().await;
            bail!("unexpected answer: {other:?}");
        }
    };
    let Some(wait) = a.wait else {
        c.close().await;
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(wait);
    let key_refused = |e: &tieline_net::participant::ClientError| {
        matches!(
            e,
            tieline_net::participant::ClientError::Request {
                source: tieline_net::transport::RequestError::ConnectionLost(_),
                ..
            }
        )
    };
    // Whether the node committed the height (Some(true)), or refused the replaced key (None).
    let committed = loop {
        match c.status().await {
            Ok(s) if s.height > height => break Some(true),
            Err(e) if matches!(confirm, Confirm::Replaced(_)) && key_refused(&e) => break None,
            _ if std::time::Instant::now() >= deadline => break Some(false),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    if committed == Some(false) {
        c.close().await;
        bail!(
            "node {node} had not committed height {height} after {wait} s; the change is pending"
        );
    }
    let effective = match (committed, confirm) {
        // Under the new key: the node accepts it and its registry shows the change.
        (_, Confirm::Replaced(Some(signer))) => {
            c.close().await;
            let genesis = Arc::new(read_genesis(&a.who.genesis)?);
            let node_key = a
                .who
                .node_key
                .as_deref()
                .and_then(|k| PublicKey::from_hex(k).ok());
            let timeout = Duration::from_secs(a.who.timeout.max(1));
            let deadline = std::time::Instant::now() + Duration::from_secs(wait);
            loop {
                let found = ParticipantClient::locate(
                    genesis.clone(),
                    (*signer).clone(),
                    Some(node),
                    node_key,
                    timeout,
                )
                .await;
                let effective = found.as_ref().is_ok_and(|n| took_effect(n.registry()));
                if let Ok(n) = &found {
                    n.close().await;
                }
                if effective || std::time::Instant::now() >= deadline {
                    break effective;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // The node refused the replaced key: only the change makes it do so.
        (None, _) => {
            c.close().await;
            true
        }
        (Some(_), confirm) => {
            let learnt = c.learn().await;
            c.close().await;
            match learnt {
                Ok(_) => took_effect(c.registry()),
                Err(e) => matches!(confirm, Confirm::Replaced(_)) && key_refused(&e),
            }
        }
    };
    if a.who.json {
        println!(
            "{}",
            serde_json::json!({
                "status": if effective { "effective" } else { "refused in its block" },
                "node": node.0, "height": height, "effective_height": height + 1,
            })
        );
    } else if effective {
        println!(
            "committed: height {height} is committed; the change holds from height {}",
            height + 1
        );
    } else {
        println!(
            "refused in its block: height {height} is committed but the registry at node {node}'s head does not show the change (it no longer held when the block was applied)"
        );
    }
    Ok(if effective {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The operator's client for a registry change signed by a member's key: the member the key
/// is (at the head of the chain), or an error naming the flag.
async fn member_client(a: &ChangeArgs) -> Result<(Arc<Genesis>, ParticipantClient, NodeId)> {
    let (genesis, c) = client(&a.who).await?;
    let Some(member) = c.member else {
        let key = c.signer().public_key();
        c.close().await;
        bail!(
            "--key {}: key {key} is not a member's key at the head of the chain (the change is signed by the home node's key file)",
            a.who.key.display()
        );
    };
    Ok((genesis, c, member))
}

async fn admit(a: AdmitArgs) -> Result<ExitCode> {
    let key = public_key("public-key", &a.public_key)?;
    let eic = a
        .eic
        .as_deref()
        .map(|code| Eic::parse(code).map_err(|e| anyhow!("--eic `{code}`: {e}")))
        .transpose()?;
    if a.name.trim().is_empty() {
        bail!("--name: the participant needs a name");
    }
    let (genesis, c, home) = member_client(&a.change).await?;
    let registry = c.registry().clone();
    let id = ParticipantId(a.id);
    let area = match a.area {
        Some(area) => AreaId(area),
        None => registry.member(home).map_or(AreaId(0), |m| m.area),
    };
    let refuse = |what: String| async {
        c.close().await;
        Err::<ExitCode, _>(anyhow!(what))
    };
    if registry.participant(id).is_some() {
        return refuse(format!("--id {id}: participant {id} is already admitted")).await;
    }
    if genesis.areas.iter().all(|x| x.id != area) {
        return refuse(format!("--area {area}: no such area in the genesis")).await;
    }
    if registry.participants.iter().any(|p| p.public_key == key)
        || registry.members.iter().any(|m| m.public_key == key)
    {
        return refuse(format!("--public-key {key}: the key is in use already")).await;
    }
    let participant = Participant {
        id,
        name: a.name.clone(),
        home,
        area,
        public_key: key,
        eic,
    };
    let mut change = SignedChange::new(genesis.chain_id(), RegistryChange::Admit(participant));
    change.sign(Party::Member(home), c.signer());
    submit_change(&a.change, c, change, Confirm::Stays, move |g| {
        g.participant(id).is_some_and(|p| p.public_key == key)
    })
    .await
}

async fn revoke(a: RevokeArgs) -> Result<ExitCode> {
    let (genesis, c, home) = member_client(&a.change).await?;
    let id = ParticipantId(a.participant);
    let problem = match c.registry().participant(id) {
        None => Some(format!(
            "--participant {id}: participant {id} is not admitted"
        )),
        Some(p) if p.home != home => Some(format!(
            "--participant {id}: its home node is {}, not node {home} (whose key signs): run this with node {}'s key file",
            p.home, p.home
        )),
        Some(_) => None,
    };
    if let Some(problem) = problem {
        c.close().await;
        bail!(problem);
    }
    let mut change = SignedChange::new(genesis.chain_id(), RegistryChange::Revoke(id));
    change.sign(Party::Member(home), c.signer());
    submit_change(&a.change, c, change, Confirm::Stays, move |g| {
        g.participant(id).is_none()
    })
    .await
}

async fn rotate_key(a: RotateKeyArgs) -> Result<ExitCode> {
    let new_key = public_key("new-key", &a.new_key)?;
    // With the new key file at hand, --wait confirms under the new key.
    let new_signer = if Path::new(&a.new_key).exists() {
        Some(Box::new(keyfile::read(Path::new(&a.new_key))?))
    } else {
        None
    };
    let (genesis, c) = client(&a.change.who).await?;
    let registry = c.registry().clone();
    let current = c.signer().public_key();
    if new_key == current {
        c.close().await;
        bail!("--new-key: {new_key} is the current key already");
    }
    if !a.member {
        let Some(id) = c.participant.filter(|p| registry.participant(*p).is_some()) else {
            c.close().await;
            bail!(
                "--key {}: key {current} is not an admitted participant's current key (for a member's key give --member)",
                a.change.who.key.display()
            );
        };
        let mut change = SignedChange::new(
            genesis.chain_id(),
            RegistryChange::ParticipantKey {
                participant: id,
                key: new_key,
            },
        );
        // The home node countersigns on intake.
        change.sign(Party::Participant(id), c.signer());
        let confirm = Confirm::Replaced(new_signer);
        return submit_change(&a.change, c, change, confirm, move |g| {
            g.participant(id).is_some_and(|p| p.public_key == new_key)
        })
        .await;
    }
    let Some(member) = c.member else {
        c.close().await;
        bail!(
            "--key {}: key {current} is not a member's current key",
            a.change.who.key.display()
        );
    };
    let mut change = SignedChange::new(
        genesis.chain_id(),
        RegistryChange::MemberKey {
            member,
            key: new_key,
        },
    );
    change.sign(Party::Member(member), c.signer());
    let mut signers = std::collections::BTreeSet::from([member]);
    for path in &a.cosign {
        let signer = match keyfile::read(path) {
            Ok(s) => s,
            Err(e) => {
                c.close().await;
                bail!("--cosign {}: {e}", path.display());
            }
        };
        let key = signer.public_key();
        let Some(m) = registry.members.iter().find(|m| m.public_key == key) else {
            c.close().await;
            bail!(
                "--cosign {}: key {key} is not a member's current key",
                path.display()
            );
        };
        if !signers.insert(m.id) {
            c.close().await;
            bail!("--cosign {}: member {} signs already", path.display(), m.id);
        }
        change.sign(Party::Member(m.id), &signer);
    }
    let quorum = registry.quorum();
    if signers.len() < quorum {
        c.close().await;
        bail!(
            "a member's key is replaced with the signatures of a quorum of {quorum} members; only {} would sign (member {member} and {} --cosign): add other members' key files with --cosign",
            signers.len(),
            signers.len() - 1
        );
    }
    let confirm = Confirm::Replaced(new_signer);
    let code = submit_change(&a.change, c, change, confirm, move |g| {
        g.member(member).is_some_and(|m| m.public_key == new_key)
    })
    .await?;
    if code == ExitCode::SUCCESS && !a.change.who.json {
        let when = if a.change.wait.is_some() {
            "now"
        } else {
            "once the block carrying the change is committed (--wait tells)"
        };
        println!(
            "next: restart node {member} {when} with the new key file; the other members accept only the new key from the effective height on, and its participants pass --node-key {new_key}"
        );
    }
    Ok(code)
}

// ----- audit -----

fn audit(source: &ChainArgs, json: bool) -> Result<ExitCode> {
    let (genesis, blocks) = source.read()?;
    match cluster::audit_registry(&genesis, &blocks) {
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"audit": "failed", "height": e.height, "reason": e.reason.to_string()})
                );
            } else {
                println!("audit FAILED: {e}");
            }
            Ok(ExitCode::FAILURE)
        }
        Ok(audited) => {
            let s = &audited.summary;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "audit": "ok", "blocks": s.blocks, "trades": s.trades, "bids": s.bids,
                        "signatures": s.signatures, "fault_skips": s.fault_skips,
                        "revisions": s.revisions, "changes": s.changes, "head": s.head.to_hex(),
                        "registry": registry_json(&audited.registry, &audited.revoked),
                    })
                );
            } else {
                println!(
                    "audit ok: {} blocks, {} trades, {} bids, {} signatures verified, {} fault skips, {} registry changes, head {}",
                    s.blocks, s.trades, s.bids, s.signatures, s.fault_skips, s.changes, s.head
                );
                if s.changes > 0 {
                    print_registry(&audited.registry, &audited.revoked, s.blocks + 1);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ----- documents -----

/// Audits the chain as `audit` and `report` do, then writes the result documents of `height`.
fn documents(source: &ChainArgs, height: u64, out: &Path, member: Option<u16>) -> Result<ExitCode> {
    use tieline_net::entsoe::{Parties, result_documents};
    use tieline_net::report::RoundStatus;
    let (genesis, blocks) = source.read()?;
    let audited = tieline_net::report::audit(&genesis, &blocks);
    let committed = audited.rounds.len() as u64;
    let round = height
        .checked_sub(1)
        .and_then(|i| audited.rounds.get(i as usize))
        .ok_or_else(|| {
            anyhow!("height {height} is not committed: the chain has {committed} blocks (heights 1 to {committed})")
        })?;
    let block = match (&round.status, &round.block) {
        (RoundStatus::Verified, Ok(b)) => b,
        (RoundStatus::Failed(reason), _) => {
            bail!("the block at height {height} fails the audit: {reason}")
        }
        (RoundStatus::Unverified, _) => bail!(
            "the block at height {height} is unverified: the audit failed at an earlier height (run tieline audit)"
        ),
        (_, Err(e)) => bail!("the block at height {height} does not decode: {e}"),
    };
    let sender = member.map_or(block.header.primary, NodeId);
    if genesis.member(sender).is_none() {
        bail!("--member {sender}: not a member of this consortium");
    }
    let parties = Parties::from_genesis(&genesis);
    let docs = result_documents(&genesis, &parties, block, sender, Timestamp(now_ms()));
    let written = docs
        .write(height, out)
        .with_context(|| format!("cannot write the documents into {}", out.display()))?;
    for p in &written {
        println!("{}", p.display());
    }
    if docs.prices.is_none() {
        eprintln!(
            "note: the block records no area prices (the {} rule publishes none); no A44 document",
            genesis.clearing.rule.name()
        );
    }
    if docs.exchanges.is_none() {
        eprintln!("note: the block records no tie-line flows; no A09 document");
    }
    Ok(ExitCode::SUCCESS)
}

// ----- report -----

/// Writes the HTML audit report; fails (exit 1) if the audit does, after writing the report.
fn report(source: &ChainArgs, out: &Path) -> Result<ExitCode> {
    let (genesis, blocks) = source.read()?;
    let audited = tieline_net::report::audit(&genesis, &blocks);
    let html = tieline_net::report::render_audited(&genesis, &audited);
    std::fs::write(out, html).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", out.display());
    Ok(if audited.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
