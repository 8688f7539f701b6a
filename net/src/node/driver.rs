//! The driver: the one task that steps the state machine, writes storage and carries out
//! effects (see the module documentation of [`super`] for the ordering argument).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tieline_core::block::Block;
use tieline_core::consensus::compact::{self, BatchStore, SYNC_CHUNK_BYTES};
use tieline_core::consensus::wire::{NodeStatus, RegistryDelta, Response, Revocation};
use tieline_core::consensus::{
    Effect, Input, ManagementNode, Message, Proposal, Ready, Reply, Timer,
};
use tieline_core::encoding::Tagged;
use tieline_core::genesis::{Genesis, Participant};
use tieline_core::registry::{Registry, SignedChange};
use tieline_core::units::{NodeId, ParticipantId, Timestamp};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::metrics::NodeMetrics;
use super::{MAX_CONCURRENT_SERVES, MAX_GROUP_INPUTS, NodeError, TIMER_QUEUE_LEN};
use crate::storage::{Storage, WriteBatch};
use crate::transport::{Endpoint, Responder};

/// Bytes left for framing overhead when packing blocks into one sync response.
const SYNC_PACKING_MARGIN: usize = 64 * 1024;

/// An input for the driver, decoded and (for bids) pre-verified by the dispatcher.
#[derive(Debug)]
pub(super) enum DriverInput {
    /// A peer's message or another plain input.
    Core(Box<Input>),
    /// A participant's bids, stepped one by one; their replies answer the request.
    Bids(Vec<tieline_core::market::SignedBid>, Responder),
    /// A participant's appeal; its replies answer the request.
    Appeal(
        Box<tieline_core::crypto::Signed<tieline_core::block::Appeal>>,
        Responder,
    ),
    /// A registry change (spec A1-A5); the node's answer (accepted with the height whose batch
    /// carries it, or refused with the reason) answers the request.
    Change(Box<SignedChange>, Responder),
}

/// An input still being decoded or verified; `None` if it turned out malformed.
pub(super) type Pending = JoinHandle<Option<DriverInput>>;

/// What the driver does after a group's durable write, in order.
// Short-lived, one per effect of a group; boxing the effect would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Action {
    Effect(Effect),
    Respond(Responder, Response),
}

/// Armed timers, each with the generation of its latest arming.
struct Timers {
    armed: HashMap<Timer, (u64, tokio::task::AbortHandle)>,
    generation: u64,
    fired: mpsc::Sender<(Timer, u64)>,
}

impl Timers {
    fn set(&mut self, timer: Timer, after_ms: u64) {
        self.cancel(timer);
        self.generation += 1;
        let generation = self.generation;
        let fired = self.fired.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(after_ms)).await;
            // The driver has stopped if nobody receives; nothing to do then.
            let _ = fired.send((timer, generation)).await;
        });
        self.armed.insert(timer, (generation, task.abort_handle()));
    }

    fn cancel(&mut self, timer: Timer) {
        if let Some((_, task)) = self.armed.remove(&timer) {
            task.abort();
        }
    }

    /// Whether a firing is the timer's latest arming (and disarms it if so).
    fn take(&mut self, timer: Timer, generation: u64) -> bool {
        match self.armed.get(&timer) {
            Some((g, _)) if *g == generation => {
                self.armed.remove(&timer);
                true
            }
            _ => false,
        }
    }
}

/// The registry the node decides its height by (the genesis with the chain's changes
/// applied), and how it differs from the genesis; `revoked` holds the revoked participants as
/// they stood when revoked.
pub(super) fn registry_of(
    node: &ManagementNode,
    revoked: &BTreeMap<ParticipantId, Participant>,
) -> (Arc<Genesis>, RegistryDelta) {
    let base = &node.ctx.genesis;
    let registry = node.state.registry.genesis(base);
    let revocations = node
        .state
        .registry
        .revoked()
        .iter()
        .filter_map(|(id, &from_height)| {
            revoked.get(id).map(|p| Revocation {
                participant: p.clone(),
                from_height,
            })
        })
        .collect();
    let delta = RegistryDelta::between(base, &registry, revocations);
    (registry, delta)
}

/// The status the dispatcher answers with.
pub(super) fn status_of(
    node: &ManagementNode,
    last: Option<&Block>,
    registry: &RegistryDelta,
) -> NodeStatus {
    let s = &node.state;
    NodeStatus {
        node: node.ctx.me,
        height: s.height,
        view: s.view,
        last: s.prev.clone(),
        last_trades: last.map_or(0, |b| b.body.trades.len() as u64),
        last_bids: last.map_or(0, |b| {
            b.body
                .process
                .batches
                .iter()
                .map(|x| x.body.bids.len() as u64)
                .sum()
        }),
        registry: registry.clone(),
    }
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// Where the driver publishes the node's status and the registry it follows (for the
/// dispatcher), the participants the stored chain revoked, as they stood when revoked, and the
/// batch store it shares with the dispatcher.
pub(super) struct Publish {
    /// The status.
    pub(super) status: watch::Sender<NodeStatus>,
    /// The registry.
    pub(super) registry: watch::Sender<Arc<Genesis>>,
    /// The revoked participants.
    pub(super) revoked: BTreeMap<ParticipantId, Participant>,
    /// The batches the node's frames name, shared with the dispatcher.
    pub(super) batches: Arc<std::sync::Mutex<BatchStore>>,
    /// The whole compact frames of the node's own proposals at its height, by (height, view,
    /// revision), shared with the dispatcher, which serves them to a member that lacks the
    /// revision a revision frame is written against.
    pub(super) sent: Arc<std::sync::Mutex<SentProposals>>,
}

/// The whole compact frames of a node's own proposals, by (height, view, revision).
pub(super) type SentProposals = BTreeMap<(u64, u32, u32), Bytes>;

/// The state machine and everything it writes to.
pub(super) struct Driver {
    node: ManagementNode,
    storage: Arc<Storage>,
    endpoint: Endpoint,
    others: Vec<NodeId>,
    /// (sequence, height) of every stored log record, oldest first.
    log: VecDeque<(u64, u64)>,
    next_seq: u64,
    metrics: Arc<NodeMetrics>,
    status: watch::Sender<NodeStatus>,
    last_counts: (u64, u64),
    gate_closed_at: BTreeMap<u64, Instant>,
    max_frame_len: usize,
    serve_slots: Arc<Semaphore>,
    /// The registry the endpoint's directory and the published registry follow.
    registry: Registry,
    /// How it differs from the genesis, for the status.
    delta: RegistryDelta,
    /// Where the registry is published (for the dispatcher's pre-verification).
    registry_tx: watch::Sender<Arc<Genesis>>,
    /// The participants the chain revoked, as they stood when revoked.
    revoked: BTreeMap<ParticipantId, Participant>,
    /// The batches this node's frames may name (shared with the dispatcher, which resolves
    /// frames against it and serves peers' fetches from it).
    batches: Arc<std::sync::Mutex<BatchStore>>,
    /// Whole frames of its own proposals (see [`Publish::sent`]).
    sent: Arc<std::sync::Mutex<SentProposals>>,
    /// Its last proposal broadcast: the base its next revision's frame is written against.
    last_proposal: Option<Proposal>,
}

impl Driver {
    pub(super) fn new(
        node: ManagementNode,
        storage: Arc<Storage>,
        endpoint: Endpoint,
        log: VecDeque<(u64, u64)>,
        metrics: Arc<NodeMetrics>,
        publish: Publish,
        max_frame_len: usize,
    ) -> Self {
        let Publish {
            status,
            registry: registry_tx,
            revoked,
            batches,
            sent,
        } = publish;
        let me = node.ctx.me;
        let others = node
            .ctx
            .genesis
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != me)
            .collect();
        let next_seq = storage.next_record();
        metrics
            .height
            .set(node.state.height.saturating_sub(1) as i64);
        let registry = node.state.registry.clone();
        let (_, delta) = registry_of(&node, &revoked);
        Self {
            node,
            storage,
            endpoint,
            others,
            log,
            next_seq,
            metrics,
            status,
            last_counts: (0, 0),
            gate_closed_at: BTreeMap::new(),
            max_frame_len,
            serve_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_SERVES)),
            registry,
            delta,
            registry_tx,
            revoked,
            batches,
            sent,
            last_proposal: None,
        }
    }

    /// Follows the registry after a decided block changed it (spec A5): the endpoint accepts
    /// the participants at this node and every member as the registry now names them (a
    /// revoked or replaced key is refused from now on), and the status and the dispatcher see
    /// it.
    fn follow_registry(&mut self) {
        if self.node.state.registry == self.registry {
            return;
        }
        let before = self.registry.genesis(&self.node.ctx.genesis);
        self.registry = self.node.state.registry.clone();
        let after = self.node.state.registry.genesis(&self.node.ctx.genesis);
        super::note_revoked(&before, &after, &mut self.revoked);
        let (registry, delta) = registry_of(&self.node, &self.revoked);
        let me = self.node.ctx.me;
        self.endpoint
            .set_directory(super::directory_for(&registry, &self.revoked, me));
        info!(
            height = self.node.state.height,
            participants = registry.participants.len(),
            revoked = delta.revoked.len(),
            replaced_member_keys = delta.member_keys.len(),
            "registry changed; the transport follows it"
        );
        self.delta = delta;
        self.registry_tx.send_replace(registry);
    }

    /// Steps inputs until `stop` turns true or storage fails.
    pub(super) async fn run(
        mut self,
        mut pending: mpsc::Receiver<Pending>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let (fired_tx, mut fired) = mpsc::channel(TIMER_QUEUE_LEN);
        let mut timers = Timers {
            armed: HashMap::new(),
            generation: 0,
            fired: fired_tx,
        };
        self.group(vec![DriverInput::Core(Box::new(Input::Start))], &mut timers)
            .await?;
        loop {
            let mut group = Vec::new();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                Some((t, g)) = fired.recv() => {
                    if timers.take(t, g) {
                        group.push(DriverInput::Core(Box::new(Input::Timer(t))));
                    }
                }
                Some(p) = pending.recv() => {
                    if let Some(i) = settle(p).await {
                        group.push(i);
                    }
                }
                else => break,
            }
            // Take whatever else is ready, so one write covers many inputs.
            while group.len() < MAX_GROUP_INPUTS {
                if let Ok((t, g)) = fired.try_recv() {
                    if timers.take(t, g) {
                        group.push(DriverInput::Core(Box::new(Input::Timer(t))));
                    }
                    continue;
                }
                match pending.try_recv() {
                    Ok(p) => {
                        if let Some(i) = settle(p).await {
                            group.push(i);
                        }
                    }
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.group(group, &mut timers).await?;
            }
            if *stop.borrow() {
                break;
            }
        }
        for (_, (_, task)) in timers.armed.drain() {
            task.abort();
        }
        Ok(())
    }

    /// Steps a group of inputs, writes what they persist in one transaction, then carries out
    /// the rest of their effects in order.
    async fn group(
        &mut self,
        inputs: Vec<DriverInput>,
        timers: &mut Timers,
    ) -> Result<(), NodeError> {
        let mut batch = WriteBatch::default();
        let mut actions = Vec::new();
        let mut last_block = None;
        for input in inputs {
            match input {
                DriverInput::Core(i) => {
                    let i = *i;
                    if let Input::Timer(Timer::Gate(h)) = i {
                        self.gate_closed_at.insert(h, Instant::now());
                    }
                    let effects = self.node.step(now(), i);
                    self.sort(effects, &mut batch, &mut actions, None, &mut last_block);
                }
                DriverInput::Bids(bids, reply) => {
                    let mut replies = Vec::with_capacity(bids.len());
                    for b in bids {
                        let effects = self.node.step(now(), Input::Bid(b));
                        self.sort(
                            effects,
                            &mut batch,
                            &mut actions,
                            Some(&mut replies),
                            &mut last_block,
                        );
                    }
                    for r in &replies {
                        match r {
                            Reply::Receipt(_) => self.metrics.bids_receipted.inc(),
                            _ => self.metrics.bids_rejected.inc(),
                        };
                    }
                    actions.push(Action::Respond(reply, Response::Replies(replies)));
                }
                DriverInput::Appeal(appeal, reply) => {
                    let input = Input::Appeal(*appeal);
                    self.answer(input, reply, &mut batch, &mut actions, &mut last_block);
                }
                DriverInput::Change(change, reply) => {
                    let input = Input::Change(*change);
                    self.answer(input, reply, &mut batch, &mut actions, &mut last_block);
                }
            }
        }
        if !batch.is_empty() {
            let storage = self.storage.clone();
            tokio::task::spawn_blocking(move || storage.write(&batch))
                .await
                .map_err(|e| NodeError::Task(e.to_string()))??;
            self.metrics.storage_writes.inc();
        }
        self.follow_registry();
        for a in actions {
            match a {
                Action::Respond(reply, response) => {
                    reply.send(Bytes::from(response.to_canonical_bytes()));
                }
                Action::Effect(e) => self.perform(e, timers),
            }
        }
        if let Some(b) = &last_block {
            self.last_counts = {
                let s = status_of(&self.node, Some(b), &RegistryDelta::default());
                (s.last_trades, s.last_bids)
            };
        }
        let mut status = status_of(&self.node, None, &self.delta);
        (status.last_trades, status.last_bids) = self.last_counts;
        self.metrics.view.set(i64::from(status.view));
        self.status.send_replace(status);
        Ok(())
    }

    /// Steps one input a request awaits, and answers the request with the step's replies.
    fn answer(
        &mut self,
        input: Input,
        reply: Responder,
        batch: &mut WriteBatch,
        actions: &mut Vec<Action>,
        last_block: &mut Option<Block>,
    ) {
        let mut replies = Vec::new();
        let effects = self.node.step(now(), input);
        self.sort(effects, batch, actions, Some(&mut replies), last_block);
        actions.push(Action::Respond(reply, Response::Replies(replies)));
    }

    /// Puts a step's persists and decisions into the write batch and queues its other effects,
    /// keeping their order.
    fn sort(
        &mut self,
        ready: Ready,
        batch: &mut WriteBatch,
        actions: &mut Vec<Action>,
        mut replies: Option<&mut Vec<Reply>>,
        last_block: &mut Option<Block>,
    ) {
        // Spec N3 through the type: the step's storage effects go into the write batch, which
        // is on disk before any of its other effects is carried out.
        let (durable, others) = ready.into_parts();
        for e in durable {
            match e {
                Effect::Persist(r) => {
                    self.log.push_back((self.next_seq, r.height()));
                    self.next_seq += 1;
                    batch.records.push(r.to_canonical_bytes());
                }
                Effect::Decide(b) => {
                    let h = b.header.height;
                    batch.blocks.push((h, b.to_canonical_bytes()));
                    self.note_decided(&b);
                    *last_block = Some(*b);
                }
                Effect::Prune { below } => {
                    while self.log.front().is_some_and(|&(_, h)| h < below) {
                        self.log.pop_front();
                    }
                    let bound = self.log.front().map_or(self.next_seq, |&(s, _)| s);
                    batch.prune_records_before = Some(bound);
                }
                other => unreachable!("not a storage effect: {other:?}"),
            }
        }
        for e in others {
            match e {
                Effect::Reply { reply, .. } | Effect::Answer(reply) if replies.is_some() => {
                    if let Some(r) = replies.as_deref_mut() {
                        r.push(reply);
                    }
                }
                other => actions.push(Action::Effect(other)),
            }
        }
    }

    fn note_decided(&mut self, b: &Block) {
        let h = b.header.height;
        let m = &self.metrics;
        m.height.set(h as i64);
        m.revisions.inc_by(u64::from(b.header.revision));
        if b.header.view > 0 {
            m.fault_skips.inc();
        }
        if let Some(t) = self.gate_closed_at.remove(&h) {
            m.commit_latency.observe(t.elapsed().as_secs_f64());
        }
        self.gate_closed_at = self.gate_closed_at.split_off(&(h + 1));
        // Older heights' batches are served from the committed blocks in storage; proposals of
        // a decided height are needed by no one.
        self.batches
            .lock()
            .expect("batch store lock")
            .prune_below(h);
        {
            let mut sent = self.sent.lock().expect("sent proposals lock");
            *sent = sent.split_off(&(h + 1, 0, 0));
        }
        if self.last_proposal.as_ref().is_some_and(|p| p.height() <= h) {
            self.last_proposal = None;
        }
        info!(
            height = h,
            view = b.header.view,
            revision = b.header.revision,
            primary = %b.header.primary,
            trades = b.body.trades.len(),
            block = %b.digest(),
            "committed"
        );
    }

    fn send(&self, to: NodeId, frame: Bytes) {
        if let Err(e) = self.endpoint.send(to, frame) {
            debug!(%to, error = %e, "message not queued");
        }
    }

    /// The compact frame of `msg` (spec 1.3, frames), keeping every batch it names so that
    /// a peer that lacks one can fetch it from this node.
    fn frame_of(&self, msg: &Message) -> Bytes {
        self.batches.lock().expect("batch store lock").keep(msg);
        Bytes::from(compact::encode(msg))
    }

    /// The frame of this node's proposal `p`: written against its previous revision of the
    /// view when that is smaller (spec 1.3, frames), the whole compact frame otherwise. The
    /// whole frame is kept for members that lack the previous revision and ask for it.
    fn proposal_frame(&mut self, p: Box<Proposal>) -> Bytes {
        let (height, (view, revision)) = (p.height(), p.round().into());
        // A proposal is cheap to copy: its body is shared.
        let next = (*p).clone();
        let msg = Message::Proposal(p);
        let whole = self.frame_of(&msg);
        self.sent
            .lock()
            .expect("sent proposals lock")
            .insert((height, view, revision), whole.clone());
        let revision_frame = self
            .last_proposal
            .replace(next)
            .and_then(|base| compact::encode_revision(&msg, &base))
            .filter(|f| f.len() < whole.len());
        revision_frame.map_or(whole, Bytes::from)
    }

    fn perform(&mut self, e: Effect, timers: &mut Timers) {
        match e {
            Effect::Send { to, msg } => self.send(to, self.frame_of(&msg)),
            Effect::Broadcast(Message::Proposal(p)) => {
                let frame = self.proposal_frame(p);
                for &to in &self.others {
                    self.send(to, frame.clone());
                }
            }
            Effect::Broadcast(msg) => {
                let frame = self.frame_of(&msg);
                for &to in &self.others {
                    self.send(to, frame.clone());
                }
            }
            Effect::ServeBlocks {
                to,
                from,
                to_height,
            } => self.serve_blocks(to, from, to_height),
            Effect::SetTimer { timer, after_ms } => timers.set(timer, after_ms),
            Effect::CancelTimer(timer) => timers.cancel(timer),
            Effect::Reply { to, reply } => {
                debug!(participant = %to, ?reply, "participant notice (available by query)");
            }
            Effect::Answer(reply) => debug!(?reply, "answer to an operator's request"),
            Effect::Evidence(e) => {
                self.metrics.evidence.inc();
                warn!(offender = %e.offender(), height = e.first.body.height, "equivocation detected");
            }
            Effect::Persist(_) | Effect::Decide(_) | Effect::Prune { .. } => {
                unreachable!("storage effects are written before actions are performed")
            }
        }
    }

    /// Reads committed blocks from storage and sends them to `to` as sync responses in compact
    /// frames of at most [`SYNC_CHUNK_BYTES`] (or the frame limit, if lower), as many blocks
    /// per frame as fit (all of them in one when they fit, so the peer knows to ask for more);
    /// a block too large for a chunk on its own goes alone. The peer fetches the batches it
    /// lacks, which this node serves from the same blocks.
    fn serve_blocks(&self, to: NodeId, from: u64, to_height: u64) {
        let storage = self.storage.clone();
        let endpoint = self.endpoint.clone();
        let slots = self.serve_slots.clone();
        let budget = self
            .max_frame_len
            .saturating_sub(SYNC_PACKING_MARGIN)
            .min(SYNC_CHUNK_BYTES);
        tokio::spawn(async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            let read = tokio::task::spawn_blocking(move || storage.blocks(from, to_height)).await;
            let blocks = match read {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    warn!(%to, error = %e, "cannot read blocks to serve");
                    return;
                }
                Err(_) => return,
            };
            let mut pack: Vec<Block> = Vec::new();
            let mut size = 0;
            let flush = |pack: &mut Vec<Block>| {
                if !pack.is_empty() {
                    let msg = Message::SyncResponse(std::mem::take(pack));
                    if let Err(e) = endpoint.send(to, Bytes::from(compact::encode(&msg))) {
                        debug!(%to, error = %e, "sync response not queued");
                    }
                }
            };
            for (h, bytes) in blocks {
                let Ok(block) = Block::from_canonical_bytes(&bytes) else {
                    warn!(height = h, "stored block does not decode; not served");
                    return;
                };
                let len = compact::block_len(&block);
                if size + len > budget {
                    flush(&mut pack);
                    size = 0;
                }
                size += len;
                pack.push(block);
            }
            flush(&mut pack);
        });
    }
}

/// Waits for a pending input to be decoded and verified.
async fn settle(p: Pending) -> Option<DriverInput> {
    p.await.ok().flatten()
}
