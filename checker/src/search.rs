//! The checker's own exhaustive search: a parallel depth-first search over stateright's
//! [`Model`] interface that continues from each state's representative (the state without its
//! dead messages, [`representative`]) rather than only remembering it.
//!
//! Stateright 0.31's DFS folds states through `symmetry_fn` for deduplication only: it goes on
//! from the state as it was, so every expansion still re-delivers each dead message (a no-op
//! step that is computed, hashed and looked up), and its BFS ignores the fold. Here the fold
//! is part of the transition: a successor's dead messages are dropped before it is stored,
//! so neither the expansion nor the properties see them again. The argument that this keeps
//! every verdict is the one for the fold (checker/README.md, "Dead messages are dropped"):
//! a state and its representative have the same successors up to representatives, and every
//! property gives them the same answer. `own_search_matches_stateright` in the tests checks that
//! both searches reach the same number of distinct states and the same verdicts.
//!
//! Each distinct state's properties are evaluated once, after its successors are computed, so
//! L2's "can the run go on" reads the successors the search computed anyway
//! ([`crate::properties::with_progress`]) instead of computing them a second time.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use stateright::actor::Network;
use stateright::{Expectation, Model as _, Path};

use crate::model::{Model, State, reduce, representative};
use crate::properties;

/// An action of the model.
pub use crate::model::Action;

/// How a search runs.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Worker threads.
    pub threads: usize,
    /// Stop after this long (the result is then not exhaustive).
    pub timeout: Option<Duration>,
    /// Stop at the first discovery of this property.
    pub stop_at: Option<&'static str>,
    /// A name to print progress lines under (to stderr, every 10 s); none: quiet.
    pub progress: Option<String>,
}

/// What a search found.
pub struct SearchResult {
    /// Distinct states (by the fingerprint of their representative).
    pub unique: usize,
    /// States generated within the bounds, repeats included.
    pub total: usize,
    /// The deepest state.
    pub max_depth: usize,
    /// Whether every state within the bounds was explored.
    pub exhaustive: bool,
    /// A path per discovered property: a counterexample to an `always` property, an example
    /// of a `sometimes` one.
    pub discoveries: HashMap<&'static str, Path<State, Action>>,
}

/// The probability that two of `n` distinct states share a 64-bit fingerprint (the birthday
/// bound, n(n-1)/2 pairs of 2^-64 each, capped at 1): the chance that the search merged two
/// different states and so skipped what lay behind one of them.
pub fn collision_probability(n: usize) -> f64 {
    let n = n as f64;
    (n * (n - 1.0) / 2.0 / 2f64.powi(64)).min(1.0)
}

/// One step of a path, shared by every state below it on the stack.
struct Step {
    action: Action,
    prev: Option<Arc<Step>>,
}

fn actions_of(mut step: Option<&Arc<Step>>) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(s) = step {
        out.push(s.action.clone());
        step = s.prev.as_ref();
    }
    out.reverse();
    out
}

/// A state waiting to be expanded.
struct Entry {
    state: State,
    fingerprint: u64,
    depth: usize,
    init: usize,
    path: Option<Arc<Step>>,
}

/// A fingerprint is already a hash: it is used as its own.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const SHARDS: usize = 64;

/// The fingerprints of every state generated, in shards so that threads rarely wait.
struct Visited(Vec<Mutex<HashSet<u64, BuildHasherDefault<Identity>>>>);

impl Visited {
    fn new() -> Self {
        Visited((0..SHARDS).map(|_| Mutex::default()).collect())
    }

    /// `true` if `fp` is new.
    fn insert(&self, fp: u64) -> bool {
        self.0[(fp >> 58) as usize % SHARDS]
            .lock()
            .expect("not poisoned")
            .insert(fp)
    }

    fn len(&self) -> usize {
        self.0
            .iter()
            .map(|s| s.lock().expect("not poisoned").len())
            .sum()
    }
}

/// Work shared between threads: entries handed over by a busy thread, and who is waiting.
struct Pool {
    entries: Vec<Entry>,
    idle: usize,
    done: bool,
}

struct Shared<'a> {
    model: &'a Model,
    inits: Vec<State>,
    threads: usize,
    visited: Visited,
    pool: Mutex<Pool>,
    wake: Condvar,
    hungry: AtomicUsize,
    stop: AtomicBool,
    total: AtomicUsize,
    max_depth: AtomicUsize,
    discoveries: Mutex<HashMap<&'static str, (usize, Vec<Action>)>>,
    discovered: AtomicUsize,
    properties: usize,
    deadline: Option<Instant>,
    stop_at: Option<&'static str>,
}

/// A state's 64-bit fingerprint: the same fields as stateright's `Hash` of the state, with its
/// sets hashed order-free, as the wrapping sum of their elements' hashes, which needs no
/// sorted buffer (stateright sorts the elements' hashes at every successor). An envelope's
/// hash mixes its message's hash, computed once when the message was wrapped, with its sender
/// and recipient (splitmix64's finaliser); a timer's is its SipHash. Equal states have equal
/// fingerprints; distinct states share one with probability about 2^-64 per pair, as before.
pub fn fingerprint(s: &State) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn set_hash(items: impl Iterator<Item = u64>, h: &mut DefaultHasher) {
        let (mut sum, mut n) = (0u64, 0u64);
        for item in items {
            sum = sum.wrapping_add(item);
            n += 1;
        }
        h.write_u64(sum);
        h.write_u64(n);
    }
    let mut h = DefaultHasher::new();
    s.actor_states.hash(&mut h);
    s.history.hash(&mut h);
    for t in &s.timers_set {
        set_hash(
            t.iter().map(|timer| {
                let mut e = DefaultHasher::new();
                timer.hash(&mut e);
                e.finish()
            }),
            &mut h,
        );
    }
    s.random_choices.hash(&mut h);
    match &s.network {
        Network::UnorderedDuplicating(set, last) => {
            set_hash(
                set.iter().map(|e| {
                    let ends = (usize::from(e.src) as u64) << 32 | usize::from(e.dst) as u64;
                    mix(e.msg.hash64() ^ mix(ends.wrapping_add(0x9e37_79b9_7f4a_7c15)))
                }),
                &mut h,
            );
            last.hash(&mut h);
        }
        other => other.hash(&mut h),
    }
    s.crashed.hash(&mut h);
    s.actor_storages.hash(&mut h);
    h.finish()
}

/// Searches `model` exhaustively within its boundary.
pub fn search(model: &Model, opts: &SearchOptions) -> SearchResult {
    let inits = model.init_states();
    let threads = opts.threads.max(1);
    let shared = Shared {
        model,
        inits: inits.clone(),
        threads,
        visited: Visited::new(),
        pool: Mutex::new(Pool {
            entries: Vec::new(),
            idle: 0,
            done: false,
        }),
        wake: Condvar::new(),
        hungry: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        total: AtomicUsize::new(0),
        max_depth: AtomicUsize::new(0),
        discoveries: Mutex::new(HashMap::new()),
        discovered: AtomicUsize::new(0),
        properties: model.properties().len(),
        deadline: opts.timeout.map(|t| Instant::now() + t),
        stop_at: opts.stop_at,
    };
    {
        let mut pool = shared.pool.lock().expect("not poisoned");
        for (i, s) in inits.iter().enumerate() {
            if !model.within_boundary(s) {
                continue;
            }
            shared.total.fetch_add(1, Ordering::Relaxed);
            let state = representative(s);
            let fp = fingerprint(&state);
            if shared.visited.insert(fp) {
                pool.entries.push(Entry {
                    state,
                    fingerprint: fp,
                    depth: 1,
                    init: i,
                    path: None,
                });
            }
        }
    }
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| worker(&shared)))
            .collect();
        let mut last = Instant::now();
        while workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(name) = &opts.progress {
                if last.elapsed() >= Duration::from_secs(10) {
                    last = Instant::now();
                    eprintln!(
                        "  {name}: {} states ({} unique), depth {}, {:.0}s",
                        shared.total.load(Ordering::Relaxed),
                        shared.visited.len(),
                        shared.max_depth.load(Ordering::Relaxed),
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        }
    });
    let exhaustive = !shared.stop.load(Ordering::Relaxed);
    let found = shared.discoveries.into_inner().expect("not poisoned");
    let discoveries = found
        .into_iter()
        .filter_map(|(name, (init, actions))| {
            Path::from_actions(model, shared.inits[init].clone(), &actions).map(|p| (name, p))
        })
        .collect();
    SearchResult {
        unique: shared.visited.len(),
        total: shared.total.load(Ordering::Relaxed),
        max_depth: shared.max_depth.load(Ordering::Relaxed),
        exhaustive,
        discoveries,
    }
}

impl Shared<'_> {
    /// The next entry to expand: the thread's own, or one another thread handed over; `None`
    /// when every thread is out of work or the search stops.
    fn next(&self, local: &mut Vec<Entry>) -> Option<Entry> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(e) = local.pop() {
            return Some(e);
        }
        let mut pool = self.pool.lock().expect("not poisoned");
        loop {
            if pool.done || self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if !pool.entries.is_empty() {
                // Take a share, leave the rest for the others.
                let len = pool.entries.len();
                let take: Vec<Entry> = pool
                    .entries
                    .drain(len - (len / self.threads).max(1)..)
                    .collect();
                local.extend(take);
                return local.pop();
            }
            pool.idle += 1;
            self.hungry.store(pool.idle, Ordering::Relaxed);
            if pool.idle == self.threads {
                pool.done = true;
                self.wake.notify_all();
                return None;
            }
            pool = self
                .wake
                .wait_timeout(pool, Duration::from_millis(20))
                .expect("not poisoned")
                .0;
            pool.idle -= 1;
            self.hungry.store(pool.idle, Ordering::Relaxed);
        }
    }

    /// Hands half of a busy thread's stack (its oldest entries, the largest subtrees) to the
    /// threads that wait.
    fn share(&self, local: &mut Vec<Entry>) {
        if self.hungry.load(Ordering::Relaxed) == 0 || local.len() < 2 {
            return;
        }
        let half = local.len() / 2;
        let mut pool = self.pool.lock().expect("not poisoned");
        pool.entries.extend(local.drain(..half));
        self.wake.notify_all();
    }

    fn discover(&self, name: &'static str, e: &Entry) {
        let mut d = self.discoveries.lock().expect("not poisoned");
        if d.contains_key(name) {
            return;
        }
        d.insert(name, (e.init, actions_of(e.path.as_ref())));
        let n = self.discovered.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.properties || self.stop_at == Some(name) {
            self.stop.store(true, Ordering::Relaxed);
            self.wake.notify_all();
        }
    }
}

fn worker(shared: &Shared<'_>) {
    let model = shared.model;
    let props = model.properties();
    let mut local: Vec<Entry> = Vec::new();
    let mut actions = Vec::new();
    let mut found: Vec<bool> = vec![false; props.len()];
    let mut expanded = 0usize;
    while let Some(entry) = shared.next(&mut local) {
        expanded += 1;
        if expanded % 256 == 0 {
            if shared.deadline.is_some_and(|d| Instant::now() >= d) {
                shared.stop.store(true, Ordering::Relaxed);
                shared.wake.notify_all();
                break;
            }
            let d = shared.discoveries.lock().expect("not poisoned");
            for (i, p) in props.iter().enumerate() {
                found[i] |= d.contains_key(p.name);
            }
        }
        shared.max_depth.fetch_max(entry.depth, Ordering::Relaxed);
        // Successors first: whether the run can go on (L2) is read from them.
        let mut movers = 0u64;
        actions.clear();
        model.actions(&entry.state, &mut actions);
        let mut children = Vec::new();
        for action in actions.drain(..) {
            let Some(mut next) = model.next_state(&entry.state, action.clone()) else {
                continue;
            };
            if !model.within_boundary(&next) {
                continue;
            }
            shared.total.fetch_add(1, Ordering::Relaxed);
            reduce(&mut next);
            let fp = fingerprint(&next);
            if fp != entry.fingerprint {
                if let Some(i) = properties::mover(&action) {
                    movers |= properties::bit(i);
                }
            }
            if shared.visited.insert(fp) {
                children.push((next, fp, action));
            }
        }
        properties::with_progress(&entry.state, movers, || {
            for (i, p) in props.iter().enumerate() {
                if found[i] {
                    continue;
                }
                let hit = (p.condition)(model, &entry.state);
                let discovered = match p.expectation {
                    Expectation::Sometimes => hit,
                    _ => !hit,
                };
                if discovered {
                    found[i] = true;
                    shared.discover(p.name, &entry);
                }
            }
        });
        for (state, fp, action) in children {
            local.push(Entry {
                state,
                fingerprint: fp,
                depth: entry.depth + 1,
                init: entry.init,
                path: Some(Arc::new(Step {
                    action,
                    prev: entry.path.clone(),
                })),
            });
        }
        if expanded % 64 == 0 {
            shared.share(&mut local);
        }
    }
    // A stopped search leaves its stack unexplored.
    local.clear();
}
