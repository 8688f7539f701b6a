//! The checker's own tests: spec and checker in step, the unmutated protocol passing every
//! scenario, and every seeded bug of the catalogue caught by the property it names.

use std::collections::BTreeSet;

use tieline_checker::mutants::{self, CATALOGUE};
use tieline_checker::properties;
use tieline_checker::run::{self, Options, Status, Strategy};
use tieline_checker::scenario::Scenario;
use tieline_checker::spec;

/// Every property id of spec/PROTOCOL.md with a `- Checker:` line is a checker property of the
/// same id, every checker property's id is such a spec property, and the checker line names
/// the id itself.
#[test]
fn spec_and_checker_properties_are_in_step() {
    let spec_ids: BTreeSet<String> = spec::properties(spec::PROTOCOL_MD)
        .into_iter()
        .filter(|p| !p.checker.is_empty())
        .map(|p| {
            assert_eq!(p.checker, vec![p.id.clone()], "{}'s checker line", p.id);
            p.id
        })
        .collect();
    let checker_ids: BTreeSet<String> = properties::catalogue()
        .iter()
        .map(|p| p.id.to_owned())
        .collect();
    assert!(!spec_ids.is_empty());
    let missing: Vec<_> = spec_ids.difference(&checker_ids).collect();
    let extra: Vec<_> = checker_ids.difference(&spec_ids).collect();
    assert!(
        missing.is_empty(),
        "spec properties with no checker property: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "checker properties not in the spec: {extra:?}"
    );
    // Every `always` property's name is its id.
    for p in properties::catalogue() {
        if p.expectation == stateright::Expectation::Always {
            assert_eq!(p.name, p.id);
        }
    }
}

fn opts(s: &Scenario) -> Options {
    Options {
        bounds: s.ci_bounds,
        mutation: None,
        strategy: Strategy::Dfs,
        threads: 1,
        stop_at: None,
        quiet: true,
        timeout: None,
    }
}

fn failures(o: &run::Outcome) -> Vec<String> {
    o.properties
        .iter()
        .filter(|p| p.status != Status::Holds)
        .map(|p| format!("{} {}", p.name, p.status.as_str()))
        .collect()
}

/// The scenarios whose search ends within a minute, exhaustively at their CI bounds: every
/// property holds and every `sometimes` property is reached.
#[test]
fn unmutated_protocol_passes_every_scenario_but_crash_and_byzantine_skip_exhaustively() {
    for name in [
        "appeal",
        "negotiate",
        "fallback",
        "joint",
        "impostor",
        "byzantine",
        "lock",
        "catch-up",
        "late-revision",
        "late-appeal",
        "late-objection",
    ] {
        let s = Scenario::named(name).unwrap();
        let o = run::check(&s, &opts(&s));
        assert!(o.exhaustive);
        assert!(o.unique_states > 10, "{name}: {} states", o.unique_states);
        let failed = failures(&o);
        assert!(failed.is_empty(), "{name}: {failed:?}");
    }
}

/// The checker's own search against stateright's DFS with the dead-message fold as its
/// symmetry (the reference it replaces): the same distinct and total states and the same
/// verdict for every property, on the scenarios small enough for CI.
#[test]
fn own_search_matches_stateright() {
    for name in ["appeal", "negotiate", "fallback", "joint", "impostor"] {
        let s = Scenario::named(name).unwrap();
        let ours = run::check(&s, &opts(&s));
        let reference = run::check(
            &s,
            &Options {
                strategy: Strategy::StaterightDfs,
                ..opts(&s)
            },
        );
        assert!(ours.exhaustive && reference.exhaustive, "{name}");
        assert_eq!(
            (ours.unique_states, ours.total_states),
            (reference.unique_states, reference.total_states),
            "{name}"
        );
        let verdicts = |o: &run::Outcome| {
            o.properties
                .iter()
                .map(|p| (p.name, p.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(verdicts(&ours), verdicts(&reference), "{name}");
    }
}

fn verdicts(o: &run::Outcome) -> Vec<(&'static str, Status)> {
    o.properties.iter().map(|p| (p.name, p.status)).collect()
}

/// The fold of dead messages (the core's `Message::live`) against stateright's breadth-first
/// search, which folds nothing: the same verdict for every property on the scenarios small
/// enough for CI, and on the slice of `crash` after collection in view 0.
#[test]
fn folding_dead_messages_keeps_every_verdict() {
    let mut slice = Scenario::named("crash").unwrap();
    slice.after_collection = true;
    let mut cases: Vec<(Scenario, Options)> = ["negotiate", "fallback", "joint", "impostor"]
        .into_iter()
        .map(|name| {
            let s = Scenario::named(name).unwrap();
            let o = opts(&s);
            (s, o)
        })
        .collect();
    let mut o = opts(&slice);
    o.bounds.max_view = 0;
    cases.push((slice, o));
    for (s, o) in cases {
        let folded = run::check(&s, &o);
        let unfolded = run::check(
            &s,
            &Options {
                strategy: Strategy::Bfs,
                ..o.clone()
            },
        );
        assert!(folded.exhaustive && unfolded.exhaustive, "{}", s.name);
        assert!(
            folded.unique_states < unfolded.unique_states,
            "{}: the fold folds ({} against {})",
            s.name,
            folded.unique_states,
            unfolded.unique_states
        );
        assert_eq!(verdicts(&folded), verdicts(&unfolded), "{}", s.name);
    }
}

/// The fold of dead messages loses no node state: on the scenarios small enough for CI, the
/// states the search reaches with the fold (stateright's DFS with the fold as its symmetry)
/// and without it (stateright's BFS) have the same set of node parts (every actor's state,
/// timers and storage, and who is down), the network left out. The fold's argument says a
/// dead message's delivery changes no node; this checks it on every state, beyond the
/// verdicts. `FOLD_SCENARIOS=lock` (a comma-separated list) checks other scenarios instead
/// (`lock`: about 60 s in a release build).
#[test]
fn folding_dead_messages_keeps_every_node_state() {
    use stateright::{Checker, Model as _};
    use std::hash::{DefaultHasher, Hash, Hasher};
    use std::sync::{Arc, Mutex};
    use tieline_checker::model::{Model, State, representative};

    fn nodes_of(model: Model, fold: bool) -> BTreeSet<u64> {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let sink = Arc::clone(&seen);
        let visit = move |path: stateright::Path<State, tieline_checker::model::Action>| {
            let s = path.last_state();
            let mut h = DefaultHasher::new();
            (
                &s.actor_states,
                &s.timers_set,
                &s.actor_storages,
                &s.crashed,
            )
                .hash(&mut h);
            sink.lock().unwrap().insert(h.finish());
        };
        let builder = model.checker().threads(1).visitor(visit);
        if fold {
            builder
                .symmetry_fn(representative)
                .spawn_dfs()
                .join()
                .assert_properties();
        } else {
            builder.spawn_bfs().join().assert_properties();
        }
        seen.lock().unwrap().clone()
    }
    let names: Vec<String> = std::env::var("FOLD_SCENARIOS").map_or_else(
        |_| {
            ["negotiate", "fallback", "joint", "impostor", "late-appeal"]
                .map(String::from)
                .to_vec()
        },
        |v| v.split(',').map(String::from).collect(),
    );
    for name in &names {
        let s = Scenario::named(name).unwrap();
        let folded = nodes_of(s.model(s.ci_bounds, None), true);
        let unfolded = nodes_of(s.model(s.ci_bounds, None), false);
        assert!(folded.len() > 10, "{name}");
        assert_eq!(
            folded, unfolded,
            "{name}: node states with and without the fold"
        );
    }
}

/// A crash and its recovery as one step against the actor system's two (with states where
/// the node is down): the same verdicts on the slice of `crash` after collection in view 0,
/// and every catalogue mutant of `crash` caught by the same property both ways.
#[test]
fn atomic_restart_keeps_every_verdict() {
    let mut one = Scenario::named("crash").unwrap();
    one.after_collection = true;
    let mut two = one.clone();
    two.two_step_crash = true;
    let mut o = opts(&one);
    o.bounds.max_view = 0;
    let (a, b) = (run::check(&one, &o), run::check(&two, &o));
    assert!(a.exhaustive && b.exhaustive);
    assert!(a.unique_states < b.unique_states);
    assert_eq!(verdicts(&a), verdicts(&b));
    for m in CATALOGUE.iter().filter(|m| m.scenario == "crash") {
        let two_step = mutants::run_shaped(m, true, 1, true, None, |s| s.two_step_crash = true);
        assert!(
            two_step.caught,
            "{} was not caught by {} with crashes in two steps",
            m.name, m.property
        );
    }
}

/// `crash` and `byzantine-skip`, by seeded random walks within their bounds (their searches are
/// not exhaustive within minutes; `tieline-check check` runs them): no `always` property is
/// violated.
#[test]
fn unmutated_protocol_passes_random_walks_of_crash_and_byzantine_skip() {
    // `liar` is exhaustive in about 20 s in a release build, too long for CI's debug build:
    // walks here, and its two catalogue mutants are caught at CI bounds.
    for name in ["crash", "byzantine-skip", "liar"] {
        let s = Scenario::named(name).unwrap();
        let o = run::simulate(&s, &opts(&s), 7, 12);
        let violated: Vec<_> = o
            .properties
            .iter()
            .filter(|p| p.status == Status::Violated)
            .map(|p| p.name)
            .collect();
        assert!(violated.is_empty(), "{name}: {violated:?}");
        assert!(o.max_depth > 5, "{name}: walks of depth {}", o.max_depth);
    }
}

/// Every seeded bug of the catalogue is caught by the property the catalogue names: an
/// `always` property with a counterexample, a `sometimes` property by an exhaustive search
/// that never reaches it.
#[test]
fn every_seeded_bug_is_caught_by_its_property() {
    assert!(CATALOGUE.len() >= 14);
    let names: BTreeSet<&str> = CATALOGUE.iter().map(|m| m.name).collect();
    assert_eq!(names.len(), CATALOGUE.len(), "mutant names are unique");
    let catalogue = properties::catalogue();
    for m in CATALOGUE {
        let Some(property) = catalogue.iter().find(|p| p.name == m.property) else {
            panic!("{}: no property {}", m.name, m.property);
        };
        let v = mutants::run(m, true, 1, true, None);
        assert!(
            v.caught,
            "{} was not caught by {} in {} ({} states)",
            m.name, m.property, m.scenario, v.unique_states
        );
        if property.expectation == stateright::Expectation::Always {
            assert!(
                v.trace_len.is_some_and(|n| n > 0),
                "{}: empty trace",
                m.name
            );
        }
    }
}
