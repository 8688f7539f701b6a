//! What one step asks of its runtime, in the order spec N3 requires: everything durable
//! first, then everything the world sees.
//!
//! [`NodeState::step`](super::NodeState::step) returns a [`Ready`] (after raft-rs's): its
//! storage effects (log records, decided blocks, pruning) come before its other effects
//! (messages, timers, notices), each part in the order the transition produced it. A runtime
//! cannot reach a message without passing the records it depends on: iterating a `Ready` yields
//! the storage effects first, [`Ready::into_parts`] hands them over separately, and
//! [`Ready::execute`], the executor the in-memory cluster and the model checker share, writes
//! them to a [`Storage`] before it gives anything to an [`Outbox`]. The node runtime puts the
//! storage part into one write batch and carries out the rest only once that batch is on disk.

use std::ops::Deref;

use super::types::{Effect, Message, Record, Reply, Timer};
use crate::block::{Block, Evidence};
use crate::units::{NodeId, ParticipantId};

/// The effects of one step: storage first, then the rest (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ready {
    /// Storage effects, then the others; each part in the order produced.
    effects: Vec<Effect>,
    /// Where the others start.
    actions_from: usize,
}

impl Effect {
    /// Whether this effect changes what the node holds durably (a log record, a decided
    /// block, pruning): it must be durable before any message of the step leaves.
    pub fn is_durable(&self) -> bool {
        matches!(
            self,
            Effect::Persist(_) | Effect::Decide(_) | Effect::Prune { .. }
        )
    }
}

impl Ready {
    /// The step's effects, storage first; each part keeps the order it was produced in.
    pub(crate) fn new(effects: Vec<Effect>) -> Self {
        let (mut durable, actions): (Vec<Effect>, Vec<Effect>) =
            effects.into_iter().partition(Effect::is_durable);
        let actions_from = durable.len();
        durable.extend(actions);
        Self {
            effects: durable,
            actions_from,
        }
    }

    /// The storage effects, in order.
    pub fn durable(&self) -> &[Effect] {
        &self.effects[..self.actions_from]
    }

    /// The messages, timers and notices, in order: to be carried out only once every storage
    /// effect is durable.
    pub fn actions(&self) -> &[Effect] {
        &self.effects[self.actions_from..]
    }

    /// The storage effects and the others, apart.
    pub fn into_parts(mut self) -> (Vec<Effect>, Vec<Effect>) {
        let actions = self.effects.split_off(self.actions_from);
        (self.effects, actions)
    }

    /// Carries the step out: every storage effect into `storage`, in order, then every other
    /// effect into `outbox`, in order. A sync response is served from `storage` (spec L4).
    pub fn execute(self, storage: &mut impl Storage, outbox: &mut impl Outbox) {
        let (durable, actions) = self.into_parts();
        for e in durable {
            match e {
                Effect::Persist(r) => storage.append(r),
                Effect::Decide(b) => storage.commit(*b),
                Effect::Prune { below } => storage.prune(below),
                other => unreachable!("not a storage effect: {other:?}"),
            }
        }
        for e in actions {
            match e {
                Effect::Send { to, msg } => outbox.send(to, msg),
                Effect::Broadcast(msg) => outbox.broadcast(msg),
                Effect::ServeBlocks {
                    to,
                    from,
                    to_height,
                } => outbox.send(to, Message::SyncResponse(storage.blocks(from, to_height))),
                Effect::SetTimer { timer, after_ms } => outbox.set_timer(timer, after_ms),
                Effect::CancelTimer(timer) => outbox.cancel_timer(timer),
                Effect::Reply { to, reply } => outbox.reply(to, reply),
                Effect::Answer(reply) => outbox.answer(reply),
                Effect::Evidence(e) => outbox.evidence(*e),
                other => unreachable!("a storage effect after the others: {other:?}"),
            }
        }
    }
}

impl Deref for Ready {
    type Target = [Effect];

    /// Every effect, in the order to carry them out.
    fn deref(&self) -> &[Effect] {
        &self.effects
    }
}

impl IntoIterator for Ready {
    type Item = Effect;
    type IntoIter = std::vec::IntoIter<Effect>;

    /// Every effect, in the order to carry them out.
    fn into_iter(self) -> Self::IntoIter {
        self.effects.into_iter()
    }
}

/// A node's durable storage, as [`Ready::execute`] writes it: the committed chain and the
/// write-ahead log.
pub trait Storage {
    /// Appends a record to the log.
    fn append(&mut self, record: Record);
    /// Stores a decided block; it is final.
    fn commit(&mut self, block: Block);
    /// Drops the log's records of heights below `below`.
    fn prune(&mut self, below: u64);
    /// The stored blocks of heights `from..=to`, in height order.
    fn blocks(&self, from: u64, to: u64) -> Vec<Block>;
}

/// The blocks of heights `from..=to` of a chain held in memory, in its order: what an
/// in-memory [`Storage`] serves.
pub fn blocks_between(chain: &[Block], from: u64, to: u64) -> Vec<Block> {
    chain
        .iter()
        .filter(|b| (from..=to).contains(&b.header.height))
        .cloned()
        .collect()
}

/// Where [`Ready::execute`] puts what the world sees: messages, timers and notices.
pub trait Outbox {
    /// Sends a message to one member.
    fn send(&mut self, to: NodeId, msg: Message);
    /// Sends a message to every other member.
    fn broadcast(&mut self, msg: Message);
    /// Arms a timer, replacing an armed timer of the same identity.
    fn set_timer(&mut self, timer: Timer, after_ms: u64);
    /// Disarms a timer.
    fn cancel_timer(&mut self, timer: Timer);
    /// Answers a participant.
    fn reply(&mut self, to: ParticipantId, reply: Reply);
    /// Answers the operator's request the step served.
    fn answer(&mut self, _reply: Reply) {}
    /// Equivocation was detected (the evidence stays in the node's state until a block
    /// records it).
    fn evidence(&mut self, _evidence: Evidence) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Record;

    /// A runtime that writes down what it is asked to do, in order.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Storage for Log {
        fn append(&mut self, record: Record) {
            self.0.push(format!("append {}", record.height()));
        }
        fn commit(&mut self, block: Block) {
            self.0.push(format!("commit {}", block.header.height));
        }
        fn prune(&mut self, below: u64) {
            self.0.push(format!("prune {below}"));
        }
        fn blocks(&self, from: u64, to: u64) -> Vec<Block> {
            assert_eq!((from, to), (1, 1));
            Vec::new()
        }
    }

    impl Outbox for Log {
        fn send(&mut self, to: NodeId, msg: Message) {
            self.0.push(format!("send {} to {to}", msg.kind()));
        }
        fn broadcast(&mut self, msg: Message) {
            self.0.push(format!("broadcast {}", msg.kind()));
        }
        fn set_timer(&mut self, timer: Timer, _: u64) {
            self.0.push(format!("set {timer:?}"));
        }
        fn cancel_timer(&mut self, timer: Timer) {
            self.0.push(format!("cancel {timer:?}"));
        }
        fn reply(&mut self, _: ParticipantId, _: Reply) {
            self.0.push("reply".into());
        }
    }

    /// Spec N3 through the type: however a transition interleaves them, a step's storage
    /// effects come first and each part keeps its order; the executor writes them all before
    /// it sends anything, and serves a sync response from the storage.
    #[test]
    fn storage_effects_come_before_everything_the_world_sees() {
        let effects = vec![
            Effect::SetTimer {
                timer: Timer::Gate(2),
                after_ms: 5,
            },
            Effect::Persist(Record::SkipCertificate(crate::block::SkipCertificate {
                height: 3,
                view: 0,
                votes: Vec::new(),
            })),
            Effect::Broadcast(Message::SyncRequest { from: 4 }),
            Effect::Prune { below: 5 },
            Effect::ServeBlocks {
                to: NodeId(2),
                from: 1,
                to_height: 1,
            },
            Effect::CancelTimer(Timer::Gate(2)),
        ];
        let ready = Ready::new(effects);
        assert_eq!(ready.durable().len(), 2);
        assert!(ready.durable().iter().all(Effect::is_durable));
        assert!(!ready.actions().iter().any(Effect::is_durable));
        assert!(matches!(ready[0], Effect::Persist(_)));
        assert!(matches!(ready[1], Effect::Prune { below: 5 }));
        assert!(matches!(ready[2], Effect::SetTimer { .. }));
        assert!(matches!(ready[5], Effect::CancelTimer(_)));
        let mut storage = Log::default();
        let mut outbox = Log::default();
        ready.clone().execute(&mut storage, &mut outbox);
        assert_eq!(storage.0, ["append 3", "prune 5"]);
        assert_eq!(
            outbox.0,
            [
                "set Gate(2)",
                "broadcast sync request",
                "send sync response to 2",
                "cancel Gate(2)"
            ]
        );
        let (durable, actions) = ready.into_parts();
        assert_eq!((durable.len(), actions.len()), (2, 4));
    }
}
