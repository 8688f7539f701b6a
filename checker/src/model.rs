//! The stateright adapter: management nodes and participants as actors.
//!
//! A node actor holds the core's [`NodeState`] and carries out the [`Effect`]s of each
//! [`NodeState::step`] as stateright commands: messages on the network, timers, and saves of
//! its durable storage. It decides nothing itself; every protocol rule is the core's.
//!
//! A participant actor sends its scripted bid (and, if scripted, an appeal) to its home node.
//! Replies to participants travel on the network as messages, so in a lossless duplicating
//! network every reply a node ever gave stays visible to the properties.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use stateright::actor::{Actor, ActorModel, Envelope, Id, Network, Out, model_timeout};
use tieline_core::block::{Appeal, AppealClaim, Block, Vote, VoteKind};
use tieline_core::consensus::{
    Context, Input, Message, NodeState, Outbox, Place, Ready, Record, Reply, Storage, Timer,
};
use tieline_core::crypto::{Digest, Signed, Signer};
use tieline_core::market::SignedBid;
use tieline_core::units::{NodeId, ParticipantId, Timestamp};

use crate::scenario::Setup;

/// The time every step runs at. Timers are abstract in the model (they fire in any order at
/// any time), so the clock never needs to move.
pub const NOW: Timestamp = Timestamp(1_767_225_700_000);

/// The actor system as stateright builds it.
pub type Actors = ActorModel<Agent, Setup, Ceiling>;
/// One global state of the model.
pub type State = stateright::actor::ActorModelState<Agent, Ceiling>;

/// The highest next height to decide that any node can reach within the search's bounds
/// (`max_height + 1`), kept in every state as stateright's message history, into which the
/// model records nothing: it never changes, and the fold of dead messages reads it
/// ([`Places`]) where no model is at hand (stateright's `symmetry_fn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ceiling(pub u64);
/// One step of the model.
pub type Action = stateright::actor::ActorModelAction<Wire, Timer, ()>;

/// The model: stateright's actor system, with a crash and the recovery from storage taken as
/// one step when `Setup::atomic_restart` is set (checker/README.md, "A crash and its recovery
/// are one step", argues that every property keeps its verdict). The action `Crash(i)` then
/// crashes node `i` and recovers it at once; no state has a node down, and `Recover` is never
/// offered. A scenario may also make one node miss every decided block (`Setup::misses_decided`:
/// those deliveries are not offered), a lossy link for that one message. Everything else is the
/// actor system's own.
pub struct Model {
    actors: Actors,
    properties: Vec<stateright::Property<Model>>,
}

impl Model {
    /// The actor system `actors` with `properties`.
    pub fn new(actors: Actors, properties: Vec<stateright::Property<Model>>) -> Self {
        Model { actors, properties }
    }

    /// Whether management node actor `i` may still crash in `state`: the crash budget is not
    /// spent (each recovery counts, and each node down).
    pub fn may_crash(&self, state: &State, i: usize) -> bool {
        crashes_spent(state) < self.cfg.bounds.max_crashes
            && self.cfg.member_of.get(i).copied().flatten().is_some()
            && !state.crashed.get(i).copied().unwrap_or(false)
    }
}

/// The crashes of a run so far: every recovery from storage, and every node down.
pub fn crashes_spent(state: &State) -> u32 {
    state
        .actor_storages
        .iter()
        .flatten()
        .map(|s| s.recoveries)
        .sum::<u32>()
        + state.crashed.iter().filter(|c| **c).count() as u32
}

impl std::ops::Deref for Model {
    type Target = Actors;
    fn deref(&self) -> &Actors {
        &self.actors
    }
}

impl stateright::Model for Model {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        self.actors.init_states()
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        self.actors.actions(state, actions);
        if let Some(deaf) = self.cfg.misses_decided {
            actions.retain(|a| {
                !matches!(a, Action::Deliver { dst, msg, .. }
                    if usize::from(*dst) == deaf && matches!(msg.msg(), Msg::Node(Message::Decided(_))))
            });
        }
        if self.cfg.atomic_restart {
            // Only management nodes crash (a participant's crash is outside the bounds).
            actions.retain(|a| match a {
                Action::Recover(_) => false,
                Action::Crash(id) => self.may_crash(state, usize::from(*id)),
                _ => true,
            });
        }
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        match action {
            Action::Crash(id) if self.cfg.atomic_restart => {
                let down = self.actors.next_state(state, Action::Crash(id))?;
                self.actors.next_state(&down, Action::Recover(id))
            }
            a => self.actors.next_state(state, a),
        }
    }

    fn format_action(&self, action: &Action) -> String {
        self.actors.format_action(action)
    }

    fn format_step(&self, state: &State, action: Action) -> Option<String> {
        self.actors.format_step(state, action)
    }

    fn as_svg(&self, path: stateright::Path<State, Action>) -> Option<String> {
        self.actors.as_svg(path)
    }

    fn properties(&self) -> Vec<stateright::Property<Self>> {
        self.properties
            .iter()
            .map(|p| stateright::Property {
                expectation: p.expectation.clone(),
                name: p.name,
                condition: p.condition,
            })
            .collect()
    }

    fn within_boundary(&self, state: &State) -> bool {
        stateright::Model::within_boundary(&self.actors, state)
    }
}

/// A hash computed once: the value it belongs to is immutable once shared (it is reset
/// whenever the value is copied or changed), and it is invisible to equality.
#[derive(Default)]
pub struct HashCache(OnceLock<u64>);

impl HashCache {
    fn get(&self, f: impl FnOnce(&mut DefaultHasher)) -> u64 {
        *self.0.get_or_init(|| {
            let mut h = DefaultHasher::new();
            f(&mut h);
            h.finish()
        })
    }
}
impl Clone for HashCache {
    fn clone(&self) -> Self {
        HashCache::default()
    }
}
impl PartialEq for HashCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HashCache {}
impl fmt::Debug for HashCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("_")
    }
}

/// What a node has made durable: it survives a crash.
///
/// The log is kept sorted by the core's [`Record::restore_key`] (the order written among equal
/// keys): `NodeState::restore` gives the same state for any order that keeps the relative
/// order of records it does not treat alike, and the model then does not tell apart states
/// whose logs differ only in the order that unrelated messages happened to arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    /// Committed blocks, in height order.
    pub blocks: Vec<Block>,
    /// The write-ahead log.
    pub records: Vec<Record>,
    /// How often the node recovered from this storage: the model's own count, which bounds
    /// the crashes of a run; the node never reads it.
    pub recoveries: u32,
    /// A ghost for N2, which the node never reads: for each (height, view) the node voted to
    /// skip, the (home, digest) of every batch in its log when it first signed that vote. The
    /// log is what the node holds durably (a batch counts only once persisted, spec N3), so a
    /// vote that reports less, or a restart that forgets a logged batch, shows in N2.
    pub at_skip: BTreeMap<(u64, u32), BTreeSet<(NodeId, Digest)>>,
    hash: HashCache,
}

impl Hash for Store {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash.get(|h| {
            self.blocks.hash(h);
            self.records.hash(h);
            self.recoveries.hash(h);
            self.at_skip.hash(h);
        }));
    }
}

impl Store {
    /// The next height this store's owner has to decide.
    pub fn next_height(&self) -> u64 {
        self.blocks.len() as u64 + 1
    }

    /// The store, to change (copied if shared; its hash is recomputed after).
    fn edit(store: &mut Arc<Store>) -> &mut Store {
        let s = Arc::make_mut(store);
        s.hash = HashCache::default();
        s
    }

    /// N2's ghost: the batches in the log at `height` when the node first votes to skip `view`.
    fn note_skip(&mut self, height: u64, view: u32) {
        let held = self
            .records
            .iter()
            .filter_map(|x| match x {
                Record::Batch(b) if b.body.height == height => Some((b.body.home, b.body_digest())),
                _ => None,
            })
            .collect();
        self.at_skip.entry((height, view)).or_insert(held);
    }

    /// Appends a record at its place in the log (see [`Record::restore_key`]).
    fn append(&mut self, r: Record) {
        let k = r.restore_key();
        let at = self.records.partition_point(|x| x.restore_key() <= k);
        self.records.insert(at, r);
    }
}

/// What travels on the model's network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Msg {
    /// Between management nodes.
    Node(Message),
    /// A participant's bid to its home node.
    Bid(SignedBid),
    /// A participant's appeal to its home node.
    Appeal(Signed<Appeal>),
    /// A node's answer to a participant.
    Reply(Reply),
}

/// Where a node actor stands for the liveness of messages: its height and view, or, if its
/// storage is behind its memory, the stored height at view 0 (a crash brings it back there).
/// A node's height and view never fall, even across a crash (it is rebuilt from its stored
/// blocks and skip certificates).
fn place(v: &NodeView) -> Place {
    let stored = v.store.0.next_height();
    if stored < v.node.height {
        Place {
            height: stored,
            view: 0,
        }
    } else {
        Place {
            height: v.node.height,
            view: v.node.view,
        }
    }
}

/// Where each actor stands (none for a participant), and the floor: the lowest place of any
/// node actor, correct or faulty, up or crashed. Neither ever falls. The ceiling is the highest
/// next height to decide any node can reach within the bounds (`max_height + 1`).
pub struct Places {
    /// Per actor.
    pub actors: Vec<Option<Place>>,
    /// The slowest node's place.
    pub floor: Place,
    /// The highest next height within the bounds.
    pub ceiling: u64,
}

impl Places {
    /// The places of `state`.
    pub fn of(state: &State) -> Places {
        let actors: Vec<Option<Place>> = state
            .actor_states
            .iter()
            .map(|a| a.node().map(place))
            .collect();
        let floor = actors
            .iter()
            .flatten()
            .min()
            .copied()
            .unwrap_or(Place { height: 0, view: 0 });
        Places {
            actors,
            floor,
            ceiling: state.history.0,
        }
    }

    /// Whether the message `msg` from actor `src` to actor `dst` can still change a node, as the core says
    /// ([`Message::live`], spec 2.7). A participant's bid or appeal, and a node's reply to a
    /// participant, are always live, but for the refusal of a bid: a participant acts only on
    /// a receipt, and no property reads a refusal, so a refusal changes nothing once sent.
    pub fn live(&self, src: Id, dst: Id, msg: &Wire) -> bool {
        match msg.msg() {
            Msg::Node(m) => {
                let at = |id: Id| self.actors.get(usize::from(id)).copied().flatten();
                match (at(src), at(dst)) {
                    (Some(from), Some(to)) => m.live(from, to, self.floor, self.ceiling),
                    _ => true,
                }
            }
            Msg::Reply(Reply::BidRejected { .. }) => false,
            _ => true,
        }
    }
}

/// The messages on the network that can still change a node (see [`Places::live`]), with
/// every message to or from a participant but a bid's refusal.
pub fn live_messages(state: &State) -> impl Iterator<Item = Envelope<&Wire>> {
    let places = Places::of(state);
    state
        .network
        .iter_all()
        .filter(move |e| places.live(e.src, e.dst, e.msg))
}

/// The state the search remembers in place of `state`: the same state without the messages
/// no node can act on any more, and without the network's note of the last message delivered.
///
/// Two states with one representative have the same future: the dead messages' deliveries
/// are no-ops in both, every other step does the same in both, and a message once dead stays
/// dead. Every property reads the network through [`live_messages`] only, so it gives the
/// same answer on both states too. The search therefore explores one of them, and checks
/// each property on every state it explores, with no loss. In `lock` this folds together the
/// many ways the messages of a decided height can have been sent, which otherwise multiply
/// the states after it.
pub fn representative(state: &State) -> State {
    let mut s = state.clone();
    reduce(&mut s);
    s
}

/// Drops from `state`, in place, what [`representative`] leaves out: the search's own way to
/// the representative of a successor it owns (no second copy of the network).
pub fn reduce(state: &mut State) {
    let places = Places::of(state);
    if let Network::UnorderedDuplicating(set, last) = &mut state.network {
        set.retain(|e| places.live(e.src, e.dst, &e.msg));
        *last = None;
    }
}

/// A message on the wire: shared, so copying a state copies no message, and hashed once.
#[derive(Clone)]
pub struct Wire {
    hash: u64,
    msg: Arc<Msg>,
}

impl Wire {
    /// Wraps a message.
    pub fn new(msg: Msg) -> Self {
        let mut h = DefaultHasher::new();
        msg.hash(&mut h);
        Wire {
            hash: h.finish(),
            msg: Arc::new(msg),
        }
    }

    /// The message.
    pub fn msg(&self) -> &Msg {
        &self.msg
    }

    /// The message's 64-bit hash, computed once when it was wrapped.
    pub fn hash64(&self) -> u64 {
        self.hash
    }
}

impl PartialEq for Wire {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.msg, &other.msg) || self.msg == other.msg)
    }
}
impl Eq for Wire {}
impl Hash for Wire {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}
impl PartialOrd for Wire {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Wire {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.msg, &other.msg) {
            return std::cmp::Ordering::Equal;
        }
        self.msg.cmp(&other.msg)
    }
}
impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.msg.fmt(f)
    }
}

/// A copy of the actor's own storage slot. Stateright hashes and compares the slot itself; the
/// copy is equal to it whenever the actor runs (it is saved after every change and reloaded on
/// recovery), so it is left out of the state's equality and hash.
#[derive(Clone, Debug, Default)]
pub struct Mirror(pub Arc<Store>);

impl PartialEq for Mirror {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Mirror {}
impl Hash for Mirror {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// A management node as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The core's state.
    pub node: NodeState,
    /// Its durable storage.
    pub store: Mirror,
    /// Every signed vote (proposal stamps included) of a faulty member delivered to the node
    /// at its height: a ghost for the equivocation property S4, volatile like the node's own
    /// memory.
    pub received_votes: BTreeSet<Signed<Vote>>,
    hash: HashCache,
}

impl Hash for NodeView {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint());
    }
}

impl NodeView {
    fn fingerprint(&self) -> u64 {
        self.hash.get(|h| {
            self.node.hash(h);
            self.received_votes.hash(h);
        })
    }
}

/// A participant as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParticipantView {
    /// Whether it has sent its appeal.
    pub appealed: bool,
}

/// The state of one actor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// A management node.
    Node(Arc<NodeView>),
    /// A participant.
    Participant(ParticipantView),
}

impl AgentState {
    /// The node's view, if this is a node.
    pub fn node(&self) -> Option<&NodeView> {
        match self {
            AgentState::Node(v) => Some(v),
            AgentState::Participant(_) => None,
        }
    }
}

/// Who is where on the model's network: a member may have several actors (twins share a key).
#[derive(Debug, Default)]
pub struct Topology {
    /// The actors of each member.
    pub member_actors: BTreeMap<NodeId, Vec<Id>>,
    /// The member each actor is (none for a participant).
    pub member_of: Vec<Option<NodeId>>,
    /// The actor of each scripted participant.
    pub participant_actors: BTreeMap<ParticipantId, Id>,
}

impl Topology {
    /// The actors of member `to`.
    pub fn actors_of(&self, to: NodeId) -> &[Id] {
        self.member_actors.get(&to).map_or(&[], Vec::as_slice)
    }
}

/// A management node's actor: its context (keys, rule, security check, seeded bug) and where
/// its peers are.
pub struct NodeAgent {
    /// What never changes for the node.
    pub ctx: Context,
    /// The network's layout.
    pub topology: Arc<Topology>,
    /// The faulty members, whose votes the node's ghost records (spec S4).
    pub watch: BTreeSet<NodeId>,
    /// This actor's place in the model (its transitions are remembered under it).
    pub key: usize,
    /// Inputs the node takes, in order, right after its first start (not after a recovery):
    /// a scenario that begins after bid collection delivers its bids, closes its gate and
    /// hands it every other member's batch here, so the search spends its states on what
    /// follows. The inputs go through the core's `step` like any other.
    pub prefix: Vec<Input>,
    /// Messages a lying byzantine member sends at its first start, to the members named,
    /// besides what its correct code sends (empty for every other node).
    pub lies: Vec<(NodeId, Message)>,
    /// Inputs the node takes in the step that moves it to a height, after that step's own:
    /// participants who bid as soon as their home node opens the round (how a scenario bids
    /// at a later height, for instance a participant admitted on chain). Deterministic, so
    /// they add no interleavings; not repeated after a recovery.
    pub on_height: Vec<(u64, Input)>,
}

/// What a scripted participant appeals, once it has the reply that makes the claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppealPlan {
    /// On its receipt: "my receipted bid is not in the result".
    Omitted,
    /// On its result: "my bid was misallocated".
    Misallocated,
}

/// A participant's actor: one bid to its home node, and perhaps an appeal.
pub struct ParticipantAgent {
    /// The participant.
    pub id: ParticipantId,
    /// Its home node's actor.
    pub home: Id,
    /// Its signer.
    pub signer: Arc<dyn Signer>,
    /// The chain it bids on.
    pub chain_id: Digest,
    /// Its bid.
    pub bid: SignedBid,
    /// Its appeal, if any.
    pub appeal: Option<AppealPlan>,
    /// Whether its home node already took the bid in its start-up prefix (then the
    /// participant sends nothing at its start).
    pub bid_in_prefix: bool,
}

/// An actor of the model.
pub enum Agent {
    /// A management node.
    Node(Box<NodeAgent>),
    /// A participant.
    Participant(Box<ParticipantAgent>),
}

impl Agent {
    /// The node agent, if this is one.
    pub fn node(&self) -> Option<&NodeAgent> {
        match self {
            Agent::Node(n) => Some(n),
            Agent::Participant(_) => None,
        }
    }
}

/// A stateright command, kept so a remembered transition can be replayed.
#[derive(Clone, Debug)]
enum Command {
    Send(Id, Wire),
    SetTimer(Timer),
    CancelTimer(Timer),
    Save(Arc<Store>),
}

/// A remembered transition: the node's next view and its commands, or nothing (a no-op).
type Transition = Option<(Arc<NodeView>, Arc<[Command]>)>;

/// Most transitions remembered per thread before the memory is cleared.
const MEMO_LIMIT: usize = 400_000;

thread_local! {
    /// Transitions by (actor's context, view hash, store hash, input hash). A step is a pure
    /// function of the node's context, state, storage and input, and the product of the
    /// nodes' states repeats each node's own transitions many times over.
    static MEMO: std::cell::RefCell<HashMap<(usize, u64, u64, u64), Transition>> =
        std::cell::RefCell::new(HashMap::new());
}

fn input_hash(input: &Input) -> u64 {
    let mut h = DefaultHasher::new();
    match input {
        Input::Message { from, .. } => {
            0u8.hash(&mut h);
            from.hash(&mut h);
        }
        other => {
            1u8.hash(&mut h);
            other.hash(&mut h);
        }
    }
    h.finish()
}

impl NodeAgent {
    /// Steps the core and carries out its effects; leaves `state` borrowed if nothing changed.
    /// `wire` is the message's hash when the input is a message.
    fn step(
        &self,
        state: &mut Cow<'_, AgentState>,
        input: Input,
        wire: Option<u64>,
        o: &mut Out<Agent>,
    ) {
        let AgentState::Node(before) = state.as_ref() else {
            return;
        };
        let key = (
            self.key,
            before.fingerprint(),
            {
                let mut h = DefaultHasher::new();
                before.store.0.hash(&mut h);
                h.finish()
            },
            input_hash(&input) ^ wire.unwrap_or(0).rotate_left(17),
        );
        let memo = MEMO.with(|m| m.borrow().get(&key).cloned());
        let transition = match memo {
            Some(t) => t,
            None => {
                let t = self.compute(before, input);
                MEMO.with(|m| {
                    let mut m = m.borrow_mut();
                    if m.len() >= MEMO_LIMIT {
                        m.clear();
                    }
                    m.insert(key, t.clone());
                });
                t
            }
        };
        let Some((view, commands)) = transition else {
            return;
        };
        let (from, to) = (before.node.height, view.node.height);
        for c in commands.iter() {
            match c {
                Command::Send(id, w) => o.send(*id, w.clone()),
                Command::SetTimer(t) => o.set_timer(*t, model_timeout()),
                Command::CancelTimer(t) => o.cancel_timer(*t),
                Command::Save(s) => o.save(s.clone()),
            }
        }
        *state = Cow::Owned(AgentState::Node(view));
        for (h, input) in &self.on_height {
            if from < *h && *h <= to {
                self.step(state, input.clone(), None, o);
            }
        }
    }

    fn compute(&self, before: &NodeView, input: Input) -> Transition {
        let mut view = before.clone();
        if let Input::Message { msg, .. } = &input {
            let votes = match msg {
                Message::Proposal(p) => vec![p.stamp.clone()],
                Message::Vote(v) => vec![v.clone()],
                Message::Endorsed(c) if c.kind == VoteKind::Endorse => {
                    c.signed_votes(self.ctx.chain_id).collect()
                }
                _ => vec![],
            };
            let (height, at) = (view.node.height, view.node.view);
            view.received_votes.extend(votes.into_iter().filter(|v| {
                v.body.height == height && v.body.view >= at && self.watch.contains(&v.body.voter)
            }));
        }
        let effects = view.node.step(&self.ctx, NOW, input);
        // Like the node, the ghost forgets what belongs to heights and views the node left.
        let (height, at) = (view.node.height, view.node.view);
        view.received_votes
            .retain(|v| v.body.height == height && v.body.view >= at);
        if effects.is_empty() && view == *before {
            return None;
        }
        let commands = self.carry_out(&mut view, effects);
        Some((Arc::new(view), commands.into()))
    }

    /// The step carried out by the core's executor: its storage effects into the node's
    /// store, then its messages, timers and replies as stateright commands, in order; the
    /// store is saved last if the step changed it.
    fn carry_out(&self, view: &mut NodeView, ready: Ready) -> Vec<Command> {
        let mut storage = Saving {
            store: &mut view.store.0,
            saved: false,
        };
        let mut outbox = Commands {
            agent: self,
            out: Vec::new(),
        };
        ready.execute(&mut storage, &mut outbox);
        let mut out = outbox.out;
        if storage.saved {
            out.push(Command::Save(view.store.0.clone()));
        }
        out
    }
}

/// A node's storage in the model, as the core's executor writes it.
struct Saving<'a> {
    store: &'a mut Arc<Store>,
    /// Whether the step changed it.
    saved: bool,
}

impl Storage for Saving<'_> {
    fn append(&mut self, record: Record) {
        let store = Store::edit(self.store);
        if let Record::Skip(v) = &record {
            store.note_skip(v.body.height, v.body.view);
        }
        store.append(record);
        self.saved = true;
    }

    fn commit(&mut self, block: Block) {
        Store::edit(self.store).blocks.push(block);
        self.saved = true;
    }

    fn prune(&mut self, below: u64) {
        Store::edit(self.store)
            .records
            .retain(|r| r.height() >= below);
        self.saved = true;
    }

    fn blocks(&self, from: u64, to: u64) -> Vec<Block> {
        tieline_core::consensus::ready::blocks_between(&self.store.blocks, from, to)
    }
}

/// A node's messages, timers and replies as stateright commands.
struct Commands<'a> {
    agent: &'a NodeAgent,
    out: Vec<Command>,
}

impl Outbox for Commands<'_> {
    fn send(&mut self, to: NodeId, msg: Message) {
        let wire = Wire::new(Msg::Node(msg));
        for &id in self.agent.topology.actors_of(to) {
            self.out.push(Command::Send(id, wire.clone()));
        }
    }

    fn broadcast(&mut self, msg: Message) {
        let wire = Wire::new(Msg::Node(msg));
        for (&member, ids) in &self.agent.topology.member_actors {
            if member != self.agent.ctx.me {
                for &id in ids {
                    self.out.push(Command::Send(id, wire.clone()));
                }
            }
        }
    }

    fn set_timer(&mut self, timer: Timer, _after_ms: u64) {
        self.out.push(Command::SetTimer(timer));
    }

    fn cancel_timer(&mut self, timer: Timer) {
        self.out.push(Command::CancelTimer(timer));
    }

    fn reply(&mut self, to: ParticipantId, reply: Reply) {
        if let Some(&id) = self.agent.topology.participant_actors.get(&to) {
            self.out
                .push(Command::Send(id, Wire::new(Msg::Reply(reply))));
        }
    }

    // The evidence stays in the node's state until a block records it, and a registry
    // change comes from an operator at the start (see `Scenario`), who does not wait for the
    // answer: the defaults, which drop both notices, are the model's.
}

impl ParticipantAgent {
    fn appeal(&self, claim: AppealClaim, height: u64) -> Signed<Appeal> {
        Signed::sign(
            Appeal {
                chain_id: self.chain_id,
                participant: self.id,
                height,
                claim,
            },
            self.signer.as_ref(),
        )
    }
}

impl Actor for Agent {
    type Msg = Wire;
    type Timer = Timer;
    type State = AgentState;
    type Storage = Arc<Store>;
    type Random = ();

    fn on_start(&self, _id: Id, storage: &Option<Arc<Store>>, o: &mut Out<Self>) -> AgentState {
        match self {
            Agent::Node(n) => {
                let (node, store) = match storage {
                    Some(s) => {
                        let mut store = Arc::clone(s);
                        Store::edit(&mut store).recoveries += 1;
                        o.save(store.clone());
                        let node = NodeState::restore(&n.ctx, &s.blocks, s.records.iter().cloned());
                        (node, store)
                    }
                    None => (NodeState::new(), Arc::default()),
                };
                let first_start = storage.is_none();
                let mut state = Cow::Owned(AgentState::Node(Arc::new(NodeView {
                    node,
                    store: Mirror(store),
                    received_votes: BTreeSet::new(),
                    hash: HashCache::default(),
                })));
                n.step(&mut state, Input::Start, None, o);
                if first_start {
                    for input in &n.prefix {
                        let wire = match input {
                            Input::Message { msg, .. } => {
                                Some(Wire::new(Msg::Node(msg.clone())).hash)
                            }
                            _ => None,
                        };
                        n.step(&mut state, input.clone(), wire, o);
                    }
                    for (to, msg) in &n.lies {
                        for &id in n.topology.actors_of(*to) {
                            o.send(id, Wire::new(Msg::Node(msg.clone())));
                        }
                    }
                }
                state.into_owned()
            }
            Agent::Participant(p) => {
                if !p.bid_in_prefix {
                    o.send(p.home, Wire::new(Msg::Bid(p.bid.clone())));
                }
                AgentState::Participant(ParticipantView { appealed: false })
            }
        }
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<'_, AgentState>,
        src: Id,
        msg: Wire,
        o: &mut Out<Self>,
    ) {
        match self {
            Agent::Node(n) => {
                let input = match msg.msg() {
                    Msg::Node(m) => {
                        let Some(from) = n
                            .topology
                            .member_of
                            .get(usize::from(src))
                            .copied()
                            .flatten()
                        else {
                            return;
                        };
                        Input::Message {
                            from,
                            msg: m.clone(),
                        }
                    }
                    Msg::Bid(b) => Input::Bid(b.clone()),
                    Msg::Appeal(a) => Input::Appeal(a.clone()),
                    Msg::Reply(_) => return,
                };
                n.step(state, input, Some(msg.hash), o);
            }
            Agent::Participant(p) => {
                let (Msg::Reply(reply), Some(plan)) = (msg.msg(), p.appeal) else {
                    return;
                };
                let AgentState::Participant(v) = state.as_ref() else {
                    return;
                };
                if v.appealed {
                    return;
                }
                let appeal = match (plan, reply) {
                    (AppealPlan::Omitted, Reply::Receipt(r)) => p.appeal(
                        AppealClaim::Omitted {
                            bid: Box::new(p.bid.clone()),
                            receipt: r.clone(),
                        },
                        r.body.height,
                    ),
                    (AppealPlan::Misallocated, Reply::Receipt(r)) => p.appeal(
                        AppealClaim::Misallocated {
                            bid: p.bid.body.id(),
                        },
                        r.body.height,
                    ),
                    _ => return,
                };
                o.send(p.home, Wire::new(Msg::Appeal(appeal)));
                *state = Cow::Owned(AgentState::Participant(ParticipantView { appealed: true }));
            }
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<'_, AgentState>,
        timer: &Timer,
        o: &mut Out<Self>,
    ) {
        if let Agent::Node(n) = self {
            n.step(state, Input::Timer(*timer), None, o);
        }
    }

    fn name(&self) -> String {
        match self {
            Agent::Node(n) => format!("node {}", n.ctx.me.0),
            Agent::Participant(p) => format!("participant {}", p.id.0),
        }
    }
}
