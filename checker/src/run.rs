//! Running a scenario: exhaustive search (DFS or BFS) or seeded random walks, and the report
//! of every property's status.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use stateright::actor::ActorModelAction;
use stateright::report::{ReportData, ReportDiscovery, Reporter};
use stateright::{Checker, Expectation, HasDiscoveries, Model as _, Path};
use tieline_core::consensus::Timer;

use crate::mutants::Mutation;

use crate::model::{Model, State, Wire, representative};
use crate::properties;
use crate::scenario::{Bounds, Scenario};
use crate::search::{self, SearchOptions};

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Depth first, the checker's own search (`search.rs`): the exhaustive mode.
    Dfs,
    /// Stateright's depth-first search, with the dead-message fold as its symmetry: kept to
    /// cross-check the checker's own search.
    StaterightDfs,
    /// Stateright's breadth-first search (no fold).
    Bfs,
}

/// A property's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// An `always` property with no counterexample, or a `sometimes` property with an example.
    Holds,
    /// An `always` property with a counterexample.
    Violated,
    /// A `sometimes` property with no example.
    NotReached,
}

impl Status {
    /// As in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Holds => "holds",
            Status::Violated => "violated",
            Status::NotReached => "not-reached",
        }
    }
}

/// One property's line of a report.
#[derive(Clone, Debug)]
pub struct PropertyResult {
    /// The spec id.
    pub id: &'static str,
    /// The checker property's name.
    pub name: &'static str,
    /// `always` or `sometimes`.
    pub kind: &'static str,
    /// Its status.
    pub status: Status,
}

/// The result of checking one scenario.
pub struct Outcome {
    /// The scenario.
    pub name: String,
    /// Distinct states.
    pub unique_states: usize,
    /// States generated, repeats included.
    pub total_states: usize,
    /// The deepest path.
    pub max_depth: usize,
    /// Wall time.
    pub seconds: f64,
    /// Every property.
    pub properties: Vec<PropertyResult>,
    /// A path per discovered property (counterexamples and examples).
    pub paths: HashMap<&'static str, Path<State, ActorModelAction<Wire, Timer, ()>>>,
    /// The model, to print paths with.
    pub model: Model,
    /// Whether the search covered every state within the bounds (no time limit cut it short).
    pub exhaustive: bool,
}

impl Outcome {
    /// Whether every property holds (a `sometimes` property not reached counts as a failure).
    pub fn passed(&self) -> bool {
        self.properties.iter().all(|p| p.status == Status::Holds)
    }

    /// States per second.
    pub fn rate(&self) -> f64 {
        self.total_states as f64 / self.seconds.max(1e-9)
    }
}

/// Prints a progress line every few seconds on long runs.
struct Progress {
    name: String,
    quiet: bool,
    last: Instant,
}

impl Reporter<Model> for Progress {
    fn report_checking(&mut self, data: ReportData) {
        if self.quiet
            || data.done
            || data.duration < Duration::from_secs(5)
            || self.last.elapsed() < Duration::from_secs(10)
        {
            return;
        }
        self.last = Instant::now();
        eprintln!(
            "  {}: {} states ({} unique), depth {}, {:.0}s",
            self.name,
            data.total_states,
            data.unique_states,
            data.max_depth,
            data.duration.as_secs_f64()
        );
    }

    fn report_discoveries(
        &mut self,
        _: &Model,
        _: std::collections::BTreeMap<&'static str, ReportDiscovery<Model>>,
    ) {
    }

    fn delay(&self) -> Duration {
        // How often the run is polled: the report's time is accurate to this.
        Duration::from_millis(20)
    }
}

/// What a run looks for.
#[derive(Clone)]
pub struct Options {
    /// The search bounds.
    pub bounds: Bounds,
    /// The seeded bug, if any.
    pub mutation: Option<Mutation>,
    /// DFS or BFS.
    pub strategy: Strategy,
    /// Worker threads.
    pub threads: usize,
    /// Stop at the first discovery of this property.
    pub stop_at: Option<&'static str>,
    /// No progress lines.
    pub quiet: bool,
    /// Stop the search after this long (the result is then not exhaustive).
    pub timeout: Option<Duration>,
}

/// Checks a scenario exhaustively within its bounds.
pub fn check(scenario: &Scenario, opts: &Options) -> Outcome {
    let start = Instant::now();
    if opts.strategy == Strategy::Dfs {
        let model = scenario.model(opts.bounds, opts.mutation);
        let r = search::search(
            &model,
            &SearchOptions {
                threads: opts.threads,
                timeout: opts.timeout,
                stop_at: opts.stop_at,
                progress: (!opts.quiet).then(|| scenario.name.to_owned()),
            },
        );
        let seconds = start.elapsed().as_secs_f64();
        let mut o = outcome(
            scenario.name,
            model,
            r.total,
            r.unique,
            r.max_depth,
            seconds,
            r.discoveries,
        );
        o.exhaustive = r.exhaustive;
        return o;
    }
    let model = scenario.model(opts.bounds, opts.mutation);
    let kept = scenario.model(opts.bounds, opts.mutation);
    let mut builder = model.checker().threads(opts.threads.max(1));
    if let Some(t) = opts.timeout {
        builder = builder.timeout(t);
    }
    if let Some(p) = opts.stop_at {
        builder = builder.finish_when(HasDiscoveries::AnyOf(BTreeSet::from([p])));
    }
    let mut progress = Progress {
        name: scenario.name.to_owned(),
        quiet: opts.quiet,
        last: Instant::now(),
    };
    let (total, unique, depth, paths) = match opts.strategy {
        Strategy::Dfs | Strategy::StaterightDfs => {
            let c = builder
                .symmetry_fn(representative)
                .spawn_dfs()
                .join_and_report(&mut progress);
            (
                c.state_count(),
                c.unique_state_count(),
                c.max_depth(),
                c.discoveries(),
            )
        }
        Strategy::Bfs => {
            let c = builder.spawn_bfs().join_and_report(&mut progress);
            (
                c.state_count(),
                c.unique_state_count(),
                c.max_depth(),
                c.discoveries(),
            )
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut o = outcome(scenario.name, kept, total, unique, depth, seconds, paths);
    // A search that ran to its time limit without stopping at a wanted discovery is partial.
    let stopped_early = opts.stop_at.is_some_and(|p| o.paths.contains_key(p));
    o.exhaustive = !stopped_early
        && opts
            .timeout
            .is_none_or(|t| start.elapsed() + Duration::from_millis(50) < t);
    o
}

fn outcome(
    name: &str,
    model: Model,
    total: usize,
    unique: usize,
    depth: usize,
    seconds: f64,
    paths: HashMap<&'static str, Path<State, ActorModelAction<Wire, Timer, ()>>>,
) -> Outcome {
    let ids: HashMap<&str, &str> = properties::catalogue()
        .iter()
        .map(|p| (p.name, p.id))
        .collect();
    let properties = model
        .properties()
        .iter()
        .map(|p| {
            let found = paths.contains_key(p.name);
            let (kind, status) = match p.expectation {
                Expectation::Sometimes => (
                    "sometimes",
                    if found {
                        Status::Holds
                    } else {
                        Status::NotReached
                    },
                ),
                _ => (
                    "always",
                    if found {
                        Status::Violated
                    } else {
                        Status::Holds
                    },
                ),
            };
            PropertyResult {
                id: ids.get(p.name).copied().unwrap_or(p.name),
                name: p.name,
                kind,
                status,
            }
        })
        .collect();
    Outcome {
        name: name.to_owned(),
        unique_states: unique,
        total_states: total,
        max_depth: depth,
        seconds,
        properties,
        paths,
        model,
        exhaustive: false,
    }
}

/// A small, seeded generator for random walks (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Most steps in one random walk.
pub const MAX_WALK: usize = 2_000;

/// `runs` random walks from the initial state, each choosing uniformly among the actions
/// that stay within the bounds, until no action is left or [`MAX_WALK`] steps.
pub fn simulate(scenario: &Scenario, opts: &Options, seed: u64, runs: usize) -> Outcome {
    let model = scenario.model(opts.bounds, opts.mutation);
    let props = model.properties();
    let mut rng = Rng(seed);
    let mut paths: HashMap<&'static str, Path<State, ActorModelAction<Wire, Timer, ()>>> =
        HashMap::new();
    let (mut total, mut depth) = (0usize, 0usize);
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    let mut last_report = Instant::now();
    for run in 0..runs {
        let init = model.init_states().remove(0);
        let mut state = init.clone();
        let mut taken = Vec::new();
        for step in 0..MAX_WALK {
            total += 1;
            seen.insert(stateright_fingerprint(&representative(&state)));
            for p in &props {
                if paths.contains_key(p.name) {
                    continue;
                }
                let hit = (p.condition)(&model, &state);
                let found = match p.expectation {
                    Expectation::Sometimes => hit,
                    _ => !hit,
                };
                if found {
                    if let Some(path) = Path::from_actions(&model, init.clone(), &taken) {
                        paths.insert(p.name, path);
                    }
                }
            }
            let mut actions = Vec::new();
            model.actions(&state, &mut actions);
            let mut next = None;
            while !actions.is_empty() {
                let i = (rng.next() % actions.len() as u64) as usize;
                let a = actions.swap_remove(i);
                if let Some(s) = model.next_state(&state, a.clone()) {
                    if stateright::Model::within_boundary(&model, &s) {
                        next = Some((a, s));
                        break;
                    }
                }
            }
            let Some((a, s)) = next else {
                depth = depth.max(step);
                break;
            };
            taken.push(a);
            state = s;
            depth = depth.max(step + 1);
        }
        if !opts.quiet && last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {}: run {}/{runs}, {total} states, {:.0}s",
                scenario.name,
                run + 1,
                start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let unique = seen.len();
    outcome(scenario.name, model, total, unique, depth, seconds, paths)
}

fn stateright_fingerprint(s: &State) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}
