//! A simulated member's storage and outbox, which the core's executor (`Ready::execute`)
//! writes and sends through.

use super::*;

/// What a simulated node has made durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    /// Committed blocks, in height order.
    pub blocks: Vec<Block>,
    /// The write-ahead log.
    pub records: Vec<Record>,
}

impl Storage for Store {
    fn append(&mut self, record: Record) {
        self.records.push(record);
    }

    fn commit(&mut self, block: Block) {
        self.blocks.push(block);
    }

    fn prune(&mut self, below: u64) {
        self.records.retain(|r| r.height() >= below);
    }

    fn blocks(&self, from: u64, to: u64) -> Vec<Block> {
        crate::consensus::ready::blocks_between(&self.blocks, from, to)
    }
}

/// Where a simulated member's messages, timers and notices go: events of the cluster.
pub(super) struct SimOutbox<'c> {
    pub(super) cluster: &'c mut Cluster,
    pub(super) i: usize,
    pub(super) me: NodeId,
}

impl SimOutbox<'_> {
    /// Schedules the delivery of `msg` to `to` one latency from now.
    fn deliver(&mut self, to: NodeId, msg: Message) {
        let c = &mut *self.cluster;
        c.schedule_from(
            self.i,
            c.now + LATENCY_MS,
            Event::Deliver {
                from: self.me,
                to,
                msg,
            },
        );
    }
}

impl Outbox for SimOutbox<'_> {
    fn send(&mut self, to: NodeId, msg: Message) {
        self.cluster.measure(&msg);
        self.deliver(to, msg);
    }

    fn broadcast(&mut self, msg: Message) {
        self.cluster.measure(&msg);
        let others: Vec<NodeId> = self
            .cluster
            .nodes
            .iter()
            .map(|n| n.ctx.me)
            .filter(|&m| m != self.me)
            .collect();
        for to in others {
            self.deliver(to, msg.clone());
        }
    }

    fn set_timer(&mut self, timer: Timer, after_ms: u64) {
        let c = &mut *self.cluster;
        if let Some(old) = c.timers.remove(&(self.me, timer)) {
            c.unschedule(&old);
        }
        let key = c.schedule_from(
            self.i,
            c.now + after_ms,
            Event::Fire {
                node: self.me,
                timer,
            },
        );
        c.timers.insert((self.me, timer), key);
    }

    fn cancel_timer(&mut self, timer: Timer) {
        let c = &mut *self.cluster;
        if let Some(old) = c.timers.remove(&(self.me, timer)) {
            c.unschedule(&old);
        }
    }

    fn reply(&mut self, to: ParticipantId, reply: Reply) {
        self.cluster.replies.push((self.me, to, reply));
    }

    fn evidence(&mut self, evidence: Evidence) {
        self.cluster.evidence.push((self.me, evidence));
    }
}
