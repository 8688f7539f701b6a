//! `tieline-check`: model-check the protocol's named scenarios, explore them, walk them at
//! random, and run the catalogue of seeded bugs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tieline_checker::mutants::{self, CATALOGUE};
use tieline_checker::run::{self, Options, Outcome, Strategy};
use tieline_checker::scenario::{Bounds, Scenario};
use tieline_checker::search::collision_probability;
use tieline_checker::trace;

#[derive(Parser)]
#[command(
    name = "tieline-check",
    about = "Model checker of the Tieline protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct BoundArgs {
    /// Use the smaller CI bounds.
    #[arg(long)]
    ci: bool,
    /// Override the highest height decided.
    #[arg(long)]
    max_height: Option<u64>,
    /// Override the highest view entered.
    #[arg(long)]
    max_view: Option<u32>,
    /// Override the highest revision proposed.
    #[arg(long)]
    max_revision: Option<u32>,
    /// Override the most crashes in a run.
    #[arg(long)]
    max_crashes: Option<u32>,
    /// Start the search after bid collection, as `lock` does (bids taken, gates closed and
    /// batches delivered through the core before the search), whatever the scenario's default.
    #[arg(long)]
    after_collection: bool,
    /// Take a crash and the recovery as two steps, with states in between where the node is
    /// down, instead of one (the cross-check of that reduction; slower).
    #[arg(long)]
    two_step_crash: bool,
}

impl BoundArgs {
    /// The scenario as these options shape it.
    fn shape(&self, mut s: Scenario) -> Scenario {
        s.after_collection |= self.after_collection;
        s.two_step_crash |= self.two_step_crash;
        s
    }

    fn bounds(&self, s: &Scenario) -> Bounds {
        let base = if self.ci { s.ci_bounds } else { s.bounds };
        Bounds {
            max_height: self.max_height.unwrap_or(base.max_height),
            max_view: self.max_view.unwrap_or(base.max_view),
            max_revision: self.max_revision.unwrap_or(base.max_revision),
            max_crashes: self.max_crashes.unwrap_or(base.max_crashes),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check every property of a scenario (or all) exhaustively within the bounds.
    Check {
        /// A scenario name, or `all`.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Depth-first search (the default; exhaustive with little memory).
        #[arg(long, conflicts_with = "bfs")]
        dfs: bool,
        /// Breadth-first search (stateright's).
        #[arg(long)]
        bfs: bool,
        /// Stateright's own depth-first search (with the dead-message fold as its symmetry)
        /// instead of the checker's: a cross-check of the checker's search.
        #[arg(long, conflicts_with = "bfs")]
        stateright: bool,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Where counterexamples are written as JSON.
        #[arg(long, default_value = "counterexamples")]
        out: PathBuf,
        /// Stop each scenario's search after this many seconds (it is then reported as not
        /// exhaustive).
        #[arg(long)]
        max_seconds: Option<u64>,
        #[command(flatten)]
        bounds: BoundArgs,
    },
    /// Serve stateright's Explorer for a scenario.
    Explore {
        /// The scenario.
        #[arg(long)]
        scenario: String,
        /// Address to serve on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
        #[command(flatten)]
        bounds: BoundArgs,
    },
    /// Random walks through a scenario, with the same property report.
    Simulate {
        /// The scenario.
        #[arg(long)]
        scenario: String,
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How many walks.
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Where counterexamples are written as JSON.
        #[arg(long, default_value = "counterexamples")]
        out: PathBuf,
        /// Walk with a seeded bug of the catalogue (or a pending one) in every node.
        #[arg(long)]
        mutant: Option<String>,
        #[command(flatten)]
        bounds: BoundArgs,
    },
    /// Run the catalogue of seeded bugs: each must be caught by its property.
    Mutants {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Use the smaller CI bounds.
        #[arg(long)]
        ci: bool,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Only the mutant of this name (from the catalogue or the pending list).
        #[arg(long)]
        only: Option<String>,
        /// Stop each mutant's search after this many seconds.
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
}

fn scenarios(name: &str) -> anyhow::Result<Vec<Scenario>> {
    if name == "all" {
        return Ok(Scenario::all());
    }
    match Scenario::named(name) {
        Some(s) => Ok(vec![s]),
        None => bail!(
            "no scenario {name:?}; the scenarios are {}",
            Scenario::all()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Prints a scenario's report (text to stdout unless JSON), writes its counterexamples, and
/// returns its JSON.
fn report(out: &Outcome, json: bool, dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let log = |s: String| {
        if json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    log(format!(
        "{}: {} unique / {} total states, depth {}, {:.1} s, {:.0} states/s, fingerprint collision p = {:.1e}{}",
        out.name,
        out.unique_states,
        out.total_states,
        out.max_depth,
        out.seconds,
        out.rate(),
        collision_probability(out.unique_states),
        if out.exhaustive {
            ", exhaustive"
        } else {
            ", not exhaustive (time limit or random walks)"
        }
    ));
    for p in &out.properties {
        log(format!(
            "  {:<11} {:<9} {}",
            p.status.as_str(),
            p.kind,
            p.name
        ));
    }
    for p in &out.properties {
        if p.status != run::Status::Violated {
            continue;
        }
        let path = &out.paths[p.name];
        let steps = trace::steps(&out.model, path);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join(format!("{}-{}.json", out.name, p.id));
        std::fs::write(
            &file,
            serde_json::to_string_pretty(&trace::json(&out.name, p.name, &steps))?,
        )
        .with_context(|| format!("writing {}", file.display()))?;
        log(format!(
            "counterexample to {} in {} ({} steps, also in {}):\n{}",
            p.name,
            out.name,
            steps.len(),
            file.display(),
            trace::text(&steps)
        ));
    }
    Ok(serde_json::json!({
        "name": out.name,
        "unique_states": out.unique_states,
        "total_states": out.total_states,
        "max_depth": out.max_depth,
        "seconds": (out.seconds * 1000.0).round() / 1000.0,
        "states_per_second": out.rate().round(),
        "collision_probability": collision_probability(out.unique_states),
        "exhaustive": out.exhaustive,
        "properties": out.properties.iter().map(|p| serde_json::json!({
            "id": p.id,
            "name": p.name,
            "kind": p.kind,
            "status": p.status.as_str(),
        })).collect::<Vec<_>>(),
    }))
}

fn main() -> ExitCode {
    match run_cli() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_cli() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            scenario,
            dfs: _,
            bfs,
            stateright,
            threads,
            json,
            out,
            max_seconds,
            bounds,
        } => {
            let mut docs = Vec::new();
            let mut ok = true;
            for s in scenarios(&scenario)? {
                let s = bounds.shape(s);
                let opts = Options {
                    bounds: bounds.bounds(&s),
                    mutation: None,
                    strategy: if bfs {
                        Strategy::Bfs
                    } else if stateright {
                        Strategy::StaterightDfs
                    } else {
                        Strategy::Dfs
                    },
                    threads,
                    stop_at: None,
                    quiet: false,
                    timeout: max_seconds.map(std::time::Duration::from_secs),
                };
                let o = run::check(&s, &opts);
                ok &= o.passed();
                docs.push(report(&o, json, &out)?);
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "scenarios": docs }))?
                );
            }
            Ok(ok)
        }
        Command::Explore {
            scenario,
            addr,
            bounds,
        } => {
            let s = bounds.shape(scenarios(&scenario)?.remove(0));
            println!("Serving the Explorer for {} on http://{addr}", s.name);
            let model = s.model(bounds.bounds(&s), None);
            use stateright::Model as _;
            // Serves until the process is stopped.
            model.checker().serve(addr.as_str());
            Ok(true)
        }
        Command::Simulate {
            scenario,
            seed,
            runs,
            json,
            out,
            mutant,
            bounds,
        } => {
            let s = bounds.shape(scenarios(&scenario)?.remove(0));
            let mutation = match mutant {
                Some(name) => Some(
                    CATALOGUE
                        .iter()
                        .chain(mutants::PENDING)
                        .find(|m| m.name == name)
                        .ok_or_else(|| anyhow::anyhow!("no seeded bug is called {name:?}"))?
                        .mutation,
                ),
                None => None,
            };
            let opts = Options {
                bounds: bounds.bounds(&s),
                mutation,
                strategy: Strategy::Dfs,
                threads: 1,
                stop_at: None,
                quiet: false,
                timeout: None,
            };
            let o = run::simulate(&s, &opts, seed, runs);
            // A random walk may miss a `sometimes` property; only violations fail it.
            let ok = o
                .properties
                .iter()
                .all(|p| p.status != run::Status::Violated);
            let doc = report(&o, json, &out)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "scenarios": [doc] }))?
                );
            }
            Ok(ok)
        }
        Command::Mutants {
            json,
            ci,
            threads,
            only,
            max_seconds,
        } => {
            let mut docs = Vec::new();
            let mut ok = true;
            let start = std::time::Instant::now();
            let chosen: Vec<&mutants::Mutant> = match &only {
                Some(o) => CATALOGUE
                    .iter()
                    .chain(mutants::PENDING)
                    .filter(|m| m.name == o)
                    .collect(),
                None => CATALOGUE.iter().collect(),
            };
            if chosen.is_empty() {
                bail!("no mutant {:?}", only.unwrap_or_default());
            }
            for m in chosen {
                let v = mutants::run(
                    m,
                    ci,
                    threads,
                    json,
                    Some(std::time::Duration::from_secs(max_seconds)),
                );
                ok &= v.caught;
                let line = format!(
                    "{:<28} {:<4} {:<10} {:>8} {:>9} states {:>7.1} s  ({})",
                    m.name,
                    // A `sometimes` property's name starts with its id.
                    m.property.split(':').next().unwrap_or(m.property),
                    if v.caught { "caught" } else { "MISSED" },
                    v.trace_len.map_or("-".to_owned(), |n| format!("{n} steps")),
                    v.unique_states,
                    v.seconds,
                    m.scenario
                );
                if json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                docs.push(serde_json::json!({
                    "name": m.name,
                    "scenario": m.scenario,
                    "expected_property": m.property,
                    "caught": v.caught,
                    "trace_len": v.trace_len,
                    "unique_states": v.unique_states,
                    "seconds": (v.seconds * 1000.0).round() / 1000.0,
                }));
            }
            let total = start.elapsed().as_secs_f64();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "mutants": docs, "seconds": total })
                    )?
                );
            } else {
                println!("{} mutants in {total:.1} s", docs.len());
            }
            Ok(ok)
        }
    }
}
