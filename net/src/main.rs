//! The `tieline` command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tieline_core::audit::ChainAuditor;
use tieline_core::crypto::Ed25519;
use tieline_core::genesis::Genesis;
use tieline_core::sample::SampleConsortium;
use tieline_net::{chainfile, keyfile};

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
    /// Verify an exported chain offline against its genesis.
    Audit {
        /// The consortium's genesis file (TOML).
        #[arg(long)]
        genesis: PathBuf,
        /// The exported chain file.
        #[arg(long)]
        chain: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a sample consortium and chain, export it, and audit the export.
    Demo {
        /// How many blocks to build.
        #[arg(long, default_value_t = 20)]
        blocks: usize,
        /// Bids per block.
        #[arg(long, default_value_t = 100)]
        bids: usize,
        /// Keep the files in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
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

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Keygen { out } => {
            let signer = keyfile::generate(&out)?;
            println!("{}", keyfile::public_hex(&signer));
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            genesis,
            chain,
            json,
        } => audit(&genesis, &chain, json),
        Command::Demo {
            blocks,
            bids,
            dir,
            json,
        } => demo(blocks, bids, dir, json),
    }
}

fn read_genesis(path: &Path) -> Result<Genesis> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read genesis file {}", path.display()))?;
    Genesis::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

fn audit(genesis: &Path, chain: &Path, json: bool) -> Result<ExitCode> {
    let genesis = read_genesis(genesis)?;
    let blocks = chainfile::read_chain(chain)?;
    let scheme = Ed25519::with_known_keys(genesis.public_keys());
    let clearing = tieline_core::clearing::rule_for(genesis.clearing.rule);
    let mut auditor = ChainAuditor::new(&genesis, &scheme, clearing);
    for b in &blocks {
        if let Err(e) = auditor.push_encoded(b) {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"audit": "failed", "height": e.height, "reason": e.reason.to_string()})
                );
            } else {
                println!("audit FAILED: {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    let s = auditor.finish();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "audit": "ok", "blocks": s.blocks, "trades": s.trades, "bids": s.bids,
                "signatures": s.signatures, "fault_skips": s.fault_skips, "head": s.head.to_hex(),
            })
        );
    } else {
        println!(
            "audit ok: {} blocks, {} trades, {} bids, {} signatures verified, head {}",
            s.blocks, s.trades, s.bids, s.signatures, s.head
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn demo(blocks: usize, bids: usize, dir: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let (dir, temporary) = match dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("tieline-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let consortium = SampleConsortium::new(4, 8);
    let chain = consortium.chain(blocks, bids);
    let genesis_path = dir.join("genesis.toml");
    let chain_path = dir.join("chain.bin");
    std::fs::write(&genesis_path, consortium.genesis.to_toml())?;
    chainfile::write_chain(&chain_path, &chain)?;
    if !json {
        println!(
            "built a sample chain of {blocks} blocks x {bids} bids for a consortium of {} management nodes",
            consortium.genesis.n()
        );
        println!(
            "genesis: {}\nchain:   {}",
            genesis_path.display(),
            chain_path.display()
        );
    }
    let code = audit(&genesis_path, &chain_path, json)?;
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(code)
}
