//! The batches a member keeps to fill compact frames in, and the batches a message names.

use super::*;

/// How many heights past its floor a [`BatchStore`] keeps batches for: the height in progress
/// and a few that peers ahead of this node may already be deciding.
pub const BATCH_HEIGHTS_AHEAD: u64 = 4;

/// Most batches a [`BatchStore`] keeps of one home node for one height: its batch, and one
/// more (a batch it revised by equivocating, which the protocol records as evidence).
pub const BATCHES_PER_HOME_HEIGHT: usize = 2;

/// The batches a member holds, by digest: what its compact frames are resolved against, and
/// what it serves a peer that asks for a batch it named. It keeps batches of heights from its
/// floor (the last committed height, set by [`BatchStore::prune_below`]) to
/// [`BATCH_HEIGHTS_AHEAD`] past it, at most [`BATCHES_PER_HOME_HEIGHT`] of each home for each
/// height, so it stays bounded whatever peers send; older batches are in the committed chain.
/// A batch it does not keep is still resolved against once, from the frame's fetch.
#[derive(Clone, Debug, Default)]
pub struct BatchStore {
    batches: DigestMap<SignedBatch>,
    /// How many are kept per (height, home).
    per_home: HashMap<(u64, NodeId), usize>,
    floor: u64,
}

impl BatchStore {
    /// Keeps `batch` if its height is in the window and its home has room at that height.
    fn admit(&mut self, digest: Digest, batch: &SignedBatch) {
        let (height, home) = (batch.body.height, batch.body.home);
        if height < self.floor
            || height - self.floor > BATCH_HEIGHTS_AHEAD
            || self.batches.contains_key(&digest)
        {
            return;
        }
        let count = self.per_home.entry((height, home)).or_default();
        if *count < BATCHES_PER_HOME_HEIGHT {
            *count += 1;
            self.batches.insert(digest, batch.clone());
        }
    }

    /// Keeps `batch` if the store has room for it; returns its reference.
    pub fn insert(&mut self, batch: SignedBatch) -> BatchRef {
        let r = BatchRef::to(&batch);
        self.admit(r.digest, &batch);
        r
    }

    /// Keeps every batch `msg` carries (a message this node sent, or received and resolved)
    /// that the store has room for.
    pub fn keep(&mut self, msg: &Message) {
        for b in batches_of(msg) {
            self.admit(digest_of(b), b);
        }
    }

    /// The batch `r` names, if held.
    pub fn get(&self, r: &BatchRef) -> Option<&SignedBatch> {
        self.batches.get(&r.digest)
    }

    /// Drops every batch of a height below `height`, and keeps none below it from now on.
    pub fn prune_below(&mut self, height: u64) {
        self.floor = self.floor.max(height);
        let floor = self.floor;
        self.batches.retain(|_, b| b.body.height >= floor);
        self.per_home.retain(|(h, _), _| *h >= floor);
    }

    /// How many batches are held.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// Every batch a (whole) message carries: what a node learns of batches from a message it
/// sent, or received and resolved.
pub fn batches_of(msg: &Message) -> Vec<&SignedBatch> {
    fn body(b: &BlockBody) -> impl Iterator<Item = &SignedBatch> {
        b.process.batches.iter()
    }
    match msg {
        Message::Batch(b) => vec![b],
        Message::Objection(_, b) => b.iter().map(|b| &**b).collect(),
        Message::Proposal(p) => body(&p.body).collect(),
        Message::Decided(b) => body(&b.body).collect(),
        Message::Skip(_, locked, batches) => locked
            .iter()
            .flat_map(|p| body(&p.body))
            .chain(batches.iter())
            .collect(),
        Message::ViewCertificate(_, batches) => batches.iter().collect(),
        Message::SyncResponse(blocks) => blocks.iter().flat_map(|b| body(&b.body)).collect(),
        Message::Vote(_)
        | Message::Endorsed(_)
        | Message::Appeal { .. }
        | Message::SyncRequest { .. } => Vec::new(),
    }
}
