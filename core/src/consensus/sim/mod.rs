//! A deterministic in-memory cluster: the state machines of every member, a network, timers
//! and storage, all simulated. Tests and the in-memory demo drive it; it adds no protocol
//! logic, only carries out effects the way the node runtime does.
//!
//! Time is simulated: every timer and every message delivery is an event at a simulated
//! instant, processed earliest first ([`Cluster::run_until`]), or in an order a test chooses
//! ([`Cluster::apply_choice`]) to explore reorderings, loss, duplication and crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    Context, Effect, Input, Message, NodeState, Outbox, Ready, Record, Reply, SecurityCheck,
    Storage, Timer,
};
use crate::block::{Block, Evidence};
use crate::clearing::Clearing;
use crate::crypto::{SignatureScheme, Signer};
use crate::genesis::Genesis;
use crate::units::{NodeId, ParticipantId, Timestamp};

mod runtime;
pub use runtime::*;
mod sample;

/// Simulated one-way network latency, in milliseconds.
pub const LATENCY_MS: u64 = 5;

/// One simulated member.
#[derive(Debug)]
pub struct SimNode {
    /// Its context.
    pub ctx: Context,
    /// Its volatile state.
    pub state: NodeState,
    /// Its durable storage.
    pub store: Store,
    /// Whether it is running.
    pub up: bool,
}

/// A pending event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A message in flight.
    Deliver {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// An armed timer.
    Fire {
        /// Whose.
        node: NodeId,
        /// Which.
        timer: Timer,
    },
}

/// A test's choice of what happens next.
#[derive(Clone, Copy, Debug)]
pub enum Choice {
    /// Process pending event number `i` (modulo the count).
    Process(usize),
    /// Lose pending message number `i`.
    Drop(usize),
    /// Deliver pending message number `i` and keep a copy in flight.
    Duplicate(usize),
    /// Crash member number `i` (loses its volatile state and its timers).
    Crash(usize),
    /// Restart member number `i` from its storage.
    Restart(usize),
}

/// The simulated consortium.
#[derive(Debug)]
pub struct Cluster {
    /// The members, in genesis order.
    pub nodes: Vec<SimNode>,
    /// Pending events by (simulated time, sequence).
    pub events: BTreeMap<(u64, u64), Event>,
    /// Armed timers and their event keys.
    timers: BTreeMap<(NodeId, Timer), (u64, u64)>,
    seq: u64,
    /// The simulated clock, in milliseconds since the epoch.
    pub now: u64,
    /// Everything nodes told participants.
    pub replies: Vec<(NodeId, ParticipantId, Reply)>,
    /// Equivocation evidence nodes reported.
    pub evidence: Vec<(NodeId, Evidence)>,
    /// Threads [`Cluster::run_until`] steps different members on at once (1: one after
    /// another). Any value gives the same run, event for event (see
    /// [`Cluster::process_round`]); more threads give it sooner.
    pub threads: usize,
    /// Whether to encode every message sent, to record the largest in
    /// [`Cluster::largest_message`] (a benchmark's figure; off by default, as it costs an
    /// encoding per message).
    pub measure_messages: bool,
    /// The largest message sent while [`Cluster::measure_messages`] was on: the length in
    /// bytes of its compact frame (as a member sends it, [`super::compact`]) and its kind.
    pub largest_message: Option<(usize, &'static str)>,
    /// The largest message sent while [`Cluster::measure_messages`] was on, encoded whole
    /// (every batch, award and trade spelled out, as the write-ahead log stores it): the
    /// figure the compact frame is measured against.
    pub largest_whole_message: Option<(usize, &'static str)>,
    /// Per member (by index): when it would finish its last step if every member ran on its
    /// own machine and messages arrived the moment they were sent ([`Cluster::critical_path`]).
    busy: Vec<Duration>,
    /// Per pending event: the sender's `busy` when it was sent (or the timer set).
    ready: BTreeMap<(u64, u64), Duration>,
}

impl Cluster {
    /// A cluster of every member of `genesis`, each signing with its entry in `signers`,
    /// clearing by `clearing` and checking its grid with its entry in `security`.
    pub fn new(
        genesis: &Genesis,
        signers: Vec<Arc<dyn Signer>>,
        scheme: Arc<dyn SignatureScheme>,
        clearing: &'static dyn Clearing,
        security: Vec<Arc<dyn SecurityCheck>>,
    ) -> Self {
        assert!(
            signers.len() == genesis.n() && security.len() == genesis.n(),
            "a cluster of {} members needs as many signers and security checks, not {} and {}",
            genesis.n(),
            signers.len(),
            security.len()
        );
        let genesis = Arc::new(genesis.clone());
        let nodes = genesis
            .members
            .iter()
            .zip(signers)
            .zip(security)
            .map(|((m, signer), security)| SimNode {
                ctx: Context::new(
                    genesis.clone(),
                    m.id,
                    signer,
                    scheme.clone(),
                    clearing,
                    security,
                ),
                state: NodeState::new(),
                store: Store::default(),
                up: true,
            })
            .collect();
        Cluster {
            busy: vec![Duration::ZERO; genesis.n()],
            ready: BTreeMap::new(),
            nodes,
            events: BTreeMap::new(),
            timers: BTreeMap::new(),
            seq: 0,
            now: 1_767_225_600_000,
            replies: Vec::new(),
            evidence: Vec::new(),
            threads: 1,
            measure_messages: false,
            largest_message: None,
            largest_whole_message: None,
        }
    }

    /// Records `msg`'s size when [`Cluster::measure_messages`] is on.
    fn measure(&mut self, msg: &Message) {
        if !self.measure_messages {
            return;
        }
        let frame = super::compact::encode(msg).len();
        if self.largest_message.is_none_or(|(l, _)| frame > l) {
            self.largest_message = Some((frame, msg.kind()));
        }
        let whole = crate::encoding::Tagged::to_canonical_bytes(msg).len();
        if self.largest_whole_message.is_none_or(|(l, _)| whole > l) {
            self.largest_whole_message = Some((whole, msg.kind()));
        }
    }

    fn index(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.ctx.me == id)
            .expect("a member of the cluster")
    }

    fn schedule(&mut self, at: u64, e: Event) -> (u64, u64) {
        self.seq += 1;
        let key = (at, self.seq);
        self.events.insert(key, e);
        key
    }

    /// Starts every node.
    pub fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.input(i, Input::Start);
        }
    }

    /// Gives node `i` an input and carries out the effects.
    pub fn input(&mut self, i: usize, input: Input) -> Ready {
        self.input_ready(i, input, Duration::ZERO)
    }

    /// [`Cluster::input`] of an input that was ready for node `i` at `ready` on the
    /// compute-only clock ([`Cluster::critical_path`]).
    fn input_ready(&mut self, i: usize, input: Input, ready: Duration) -> Ready {
        if !self.nodes[i].up {
            return Ready::default();
        }
        let now = Timestamp(self.now);
        let node = &mut self.nodes[i];
        let started = Instant::now();
        let effects = node.state.step(&node.ctx, now, input);
        self.busy[i] = self.busy[i].max(ready) + started.elapsed();
        self.apply(i, effects.clone());
        effects
    }

    /// The compute-only critical path of the run so far: when the last member would have
    /// finished its last step if every member ran on its own machine and every message
    /// arrived the moment it was sent, from the steps' measured times. Simulated waits
    /// (timers, latency) are not in it; the time members spend waiting for each other's
    /// results is. A deployment's round takes this plus its network round trips.
    pub fn critical_path(&self) -> Duration {
        self.busy.iter().copied().max().unwrap_or_default()
    }

    /// Starts the critical path afresh from here: what the members did before (their bid
    /// intake, say) no longer counts, and pending events are ready at once.
    pub fn reset_critical_path(&mut self) {
        self.busy.iter_mut().for_each(|b| *b = Duration::ZERO);
        self.ready.values_mut().for_each(|r| *r = Duration::ZERO);
    }

    /// Schedules an event that member `i` caused in its last step.
    fn schedule_from(&mut self, i: usize, at: u64, e: Event) -> (u64, u64) {
        let key = self.schedule(at, e);
        self.ready.insert(key, self.busy[i]);
        key
    }

    /// Removes a pending event (a cancelled timer, a lost message).
    fn unschedule(&mut self, key: &(u64, u64)) -> Option<Event> {
        self.ready.remove(key);
        self.events.remove(key)
    }

    /// Carries out node `i`'s step through the core's executor: its storage first, then
    /// its messages and timers (spec N3).
    fn apply(&mut self, i: usize, ready: Ready) {
        let me = self.nodes[i].ctx.me;
        let mut store = std::mem::take(&mut self.nodes[i].store);
        ready.execute(
            &mut store,
            &mut SimOutbox {
                cluster: self,
                i,
                me,
            },
        );
        self.nodes[i].store = store;
    }

    /// Processes the event at `key`.
    fn process(&mut self, key: (u64, u64)) {
        let ready = self.ready.get(&key).copied().unwrap_or_default();
        let Some(event) = self.unschedule(&key) else {
            return;
        };
        self.now = self.now.max(key.0);
        match event {
            Event::Deliver { from, to, msg } => {
                let i = self.index(to);
                self.input_ready(i, Input::Message { from, msg }, ready);
            }
            Event::Fire { node, timer } => {
                self.timers.remove(&(node, timer));
                let i = self.index(node);
                self.input_ready(i, Input::Timer(timer), ready);
            }
        }
    }

    /// Processes events earliest first until `done` holds or `max_events` were processed;
    /// returns whether `done` held. With [`Cluster::threads`] above 1, events are taken in
    /// rounds ([`Cluster::process_round`]) and `done` is asked between rounds.
    pub fn run_until(&mut self, max_events: usize, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let mut processed = 0;
        while processed < max_events {
            if done(self) {
                return true;
            }
            let Some(&key) = self.events.keys().next() else {
                return done(self);
            };
            if self.threads > 1 {
                processed += self.process_round(max_events - processed);
            } else {
                self.process(key);
                processed += 1;
            }
        }
        done(self)
    }

    /// Processes the next events in order, as many as share the earliest time and go to
    /// different members (at most `limit`), stepping those members on [`Cluster::threads`]
    /// threads, then carries out their effects in the events' order. The run is the one
    /// [`Cluster::process`] gives event by event: an event's effects only schedule later
    /// events (a later sequence number), arm or cancel its own member's timers and write its
    /// own member's store, so they cannot change another member's event of the round, and no
    /// member has two events in one round. Returns how many events it processed.
    pub fn process_round(&mut self, limit: usize) -> usize {
        let Some(&(time, _)) = self.events.keys().next() else {
            return 0;
        };
        let mut round: Vec<(usize, Input)> = Vec::new();
        let mut ready: BTreeMap<usize, Duration> = BTreeMap::new();
        let mut members = std::collections::BTreeSet::new();
        let keys: Vec<(u64, u64)> = self
            .events
            .range((time, 0)..=(time, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if round.len() >= limit.max(1) {
                break;
            }
            let node = match &self.events[&key] {
                Event::Deliver { to, .. } => *to,
                Event::Fire { node, .. } => *node,
            };
            let i = self.index(node);
            if !members.insert(i) {
                break;
            }
            ready.insert(i, self.ready.get(&key).copied().unwrap_or_default());
            let input = match self.unschedule(&key).expect("listed above") {
                Event::Deliver { from, msg, .. } => Input::Message { from, msg },
                Event::Fire { node, timer } => {
                    self.timers.remove(&(node, timer));
                    Input::Timer(timer)
                }
            };
            round.push((i, input));
        }
        self.now = self.now.max(time);
        let now = Timestamp(self.now);
        let count = round.len();
        // Each member's step, on its own state; the threads take the members in turn. Each
        // step keeps its place in the round, the order its effects are carried out in.
        let place: BTreeMap<usize, usize> = round
            .iter()
            .enumerate()
            .map(|(k, (i, _))| (*i, k))
            .collect();
        let mut work: Vec<(usize, &mut SimNode, Option<Input>)> = Vec::new();
        let mut inputs: BTreeMap<usize, Input> = round.into_iter().collect();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(input) = inputs.remove(&i) {
                work.push((i, node, Some(input)));
            }
        }
        let step = |(i, node, input): &mut (usize, &mut SimNode, Option<Input>)| {
            let input = input.take().expect("stepped once");
            let started = Instant::now();
            let effects = if node.up {
                node.state.step(&node.ctx, now, input)
            } else {
                Ready::default()
            };
            (*i, effects, started.elapsed())
        };
        let mut results: Vec<(usize, Ready, Duration)> = if work.len() < 4 || self.threads < 2 {
            work.iter_mut().map(step).collect()
        } else {
            let per = work.len().div_ceil(self.threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = work
                    .chunks_mut(per)
                    .map(|chunk| {
                        scope.spawn(move || chunk.iter_mut().map(step).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a member's step panicked"))
                    .collect()
            })
        };
        results.sort_by_key(|(i, _, _)| place[i]);
        for (i, effects, took) in results {
            self.busy[i] = self.busy[i].max(ready[&i]) + took;
            self.apply(i, effects);
        }
        count
    }

    /// Like [`Cluster::run_until`], but an event for which `drop` holds is discarded instead
    /// of processed (a lossy link, chosen by the test).
    pub fn run_filtered(
        &mut self,
        max_events: usize,
        mut drop: impl FnMut(&Event) -> bool,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> bool {
        for _ in 0..max_events {
            if done(self) {
                return true;
            }
            let Some((&key, event)) = self.events.iter().next() else {
                return done(self);
            };
            if drop(event) {
                self.unschedule(&key);
            } else {
                self.process(key);
            }
        }
        done(self)
    }

    /// Moves the simulated clock forward by `ms` without processing anything.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// Crashes node `i`: its volatile state and timers are lost; its storage stays.
    pub fn crash(&mut self, i: usize) {
        let me = self.nodes[i].ctx.me;
        self.nodes[i].up = false;
        let keys: Vec<(NodeId, Timer)> = self
            .timers
            .keys()
            .filter(|(n, _)| *n == me)
            .copied()
            .collect();
        for k in keys {
            if let Some(e) = self.timers.remove(&k) {
                self.unschedule(&e);
            }
        }
        self.events
            .retain(|_, e| !matches!(e, Event::Deliver { to, .. } if *to == me));
        let events = &self.events;
        self.ready.retain(|k, _| events.contains_key(k));
    }

    /// Restarts node `i` from its storage.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.state = NodeState::restore(&node.ctx, &node.store.blocks, node.store.records.clone());
        node.up = true;
        self.input(i, Input::Start);
    }

    /// Carries out a test's choice; returns false if it did not apply (nothing pending).
    pub fn apply_choice(&mut self, choice: Choice, max_crashed: usize) -> bool {
        let keys: Vec<(u64, u64)> = self.events.keys().copied().collect();
        let messages: Vec<(u64, u64)> = keys
            .iter()
            .copied()
            .filter(|k| matches!(self.events[k], Event::Deliver { .. }))
            .collect();
        match choice {
            Choice::Process(i) if !keys.is_empty() => {
                self.process(keys[i % keys.len()]);
                true
            }
            Choice::Drop(i) if !messages.is_empty() => {
                self.unschedule(&messages[i % messages.len()]);
                true
            }
            Choice::Duplicate(i) if !messages.is_empty() => {
                let k = messages[i % messages.len()];
                let copy = self.events[&k].clone();
                let ready = self.ready.get(&k).copied();
                let key = self.schedule(k.0 + LATENCY_MS, copy);
                if let Some(r) = ready {
                    self.ready.insert(key, r);
                }
                self.process(k);
                true
            }
            Choice::Crash(i) => {
                let i = i % self.nodes.len();
                let down = self.nodes.iter().filter(|n| !n.up).count();
                if self.nodes[i].up && down < max_crashed {
                    self.crash(i);
                    true
                } else {
                    false
                }
            }
            Choice::Restart(i) => {
                let i = i % self.nodes.len();
                if !self.nodes[i].up {
                    self.restart(i);
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// The lowest committed height over the running nodes.
    pub fn min_height(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .map(|n| n.store.blocks.len() as u64)
            .min()
            .unwrap_or(0)
    }

    /// S1: no two nodes ever committed different blocks at a height. Returns the first
    /// disagreement.
    pub fn disagreement(&self) -> Option<(u64, NodeId, NodeId)> {
        let mut by_height: BTreeMap<u64, (NodeId, crate::crypto::Digest)> = BTreeMap::new();
        for n in &self.nodes {
            for b in &n.store.blocks {
                let d = b.digest();
                match by_height.get(&b.header.height) {
                    Some((other, od)) if *od != d => {
                        return Some((b.header.height, *other, n.ctx.me));
                    }
                    Some(_) => {}
                    None => {
                        by_height.insert(b.header.height, (n.ctx.me, d));
                    }
                }
            }
        }
        None
    }

    /// The ids of every bid that got a receipt.
    pub fn receipted(&self) -> BTreeSet<crate::crypto::Digest> {
        self.replies
            .iter()
            .filter_map(|(_, _, r)| match r {
                Reply::Receipt(rc) => Some(rc.body.bid),
                _ => None,
            })
            .collect()
    }
}
