//! Clusters of the sample consortium, and what tests read of a cluster's chain.

use super::*;

impl Cluster {
    /// A cluster of a sample consortium with real ed25519 keys, its genesis's clearing rule
    /// and the given security checks (one per member).
    pub fn from_sample(
        s: &crate::sample::SampleConsortium,
        security: Vec<Arc<dyn SecurityCheck>>,
    ) -> Self {
        Self::with_keys(&s.genesis, &s.members, security)
    }

    /// A cluster of `genesis` whose members sign with `members` (real ed25519 keys, in member
    /// order), clearing by the genesis's rule and checking with `security` (one per member).
    pub fn with_keys(
        genesis: &Genesis,
        members: &[crate::crypto::Ed25519Signer],
        security: Vec<Arc<dyn SecurityCheck>>,
    ) -> Self {
        let signers: Vec<Arc<dyn Signer>> = members
            .iter()
            .map(|k| Arc::new(k.clone()) as Arc<dyn Signer>)
            .collect();
        let scheme = Arc::new(crate::crypto::Ed25519::with_known_keys(
            genesis.public_keys(),
        ));
        Cluster::new(
            genesis,
            signers,
            scheme,
            crate::clearing::rule_for(genesis.clearing.rule),
            security,
        )
    }

    /// Submits a bid to its participant's home node (as the first member's registry knows
    /// it); returns the home node's reply.
    pub fn submit(&mut self, bid: crate::market::SignedBid) -> Option<Reply> {
        let first = &self.nodes[0];
        let home = first
            .state
            .effective(&first.ctx)
            .genesis
            .participant(bid.body.participant)
            .map(|p| p.home)?;
        let i = self.index(home);
        self.input(i, Input::Bid(bid))
            .into_iter()
            .find_map(|e| match e {
                Effect::Reply { reply, .. } => Some(reply),
                _ => None,
            })
    }

    /// Submits a registry change to member `i`; returns its answer.
    pub fn submit_change(
        &mut self,
        i: usize,
        change: crate::registry::SignedChange,
    ) -> Option<Reply> {
        self.input(i, Input::Change(change))
            .into_iter()
            .find_map(|e| match e {
                Effect::Answer(reply) => Some(reply),
                _ => None,
            })
    }

    /// The blocks committed by the node with the longest chain.
    pub fn longest_chain(&self) -> &[Block] {
        self.nodes
            .iter()
            .map(|n| n.store.blocks.as_slice())
            .max_by_key(|b| b.len())
            .unwrap_or(&[])
    }
}
