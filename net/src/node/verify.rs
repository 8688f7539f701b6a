//! A signature scheme that remembers what it verified, so the runtime can verify bid
//! signatures in parallel before the state machine asks for them.
//!
//! This is a pure optimisation: a cache hit stands for a strict ed25519 verification of exactly
//! the same key, message and signature that succeeded before, so the state machine reaches the
//! same verdict it would have reached by verifying again. Failures are never cached.

use std::collections::HashSet;
use std::sync::Mutex;

use tieline_core::crypto::{
    Ed25519, PublicKey, Signature, SignatureError, SignatureScheme, sha256,
};
use tieline_core::encoding::Tagged;
use tieline_core::genesis::Genesis;
use tieline_core::market::SignedBid;

/// Entries per generation of the cache. Two generations are kept, so between this many and
/// twice this many of the latest verified signatures are remembered (about 50 bytes each).
pub const VERIFY_CACHE_GENERATION: usize = 500_000;

/// What the cache remembers: the successful verifications, by a digest of key, signature and
/// message, in two generations (the older is dropped when the newer fills up).
#[derive(Debug, Default)]
struct Generations {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

/// Ed25519 with a bounded memory of successful verifications.
#[derive(Debug)]
pub struct CachingEd25519 {
    inner: Ed25519,
    cache: Mutex<Generations>,
}

fn entry(key: &PublicKey, message: &[u8], signature: &Signature) -> [u8; 32] {
    sha256(&[&key.0, &signature.0, message]).0
}

impl CachingEd25519 {
    /// A verifier that decompresses every key of `genesis` once.
    pub fn for_genesis(genesis: &Genesis) -> Self {
        Self {
            inner: Ed25519::with_known_keys(genesis.public_keys()),
            cache: Mutex::new(Generations::default()),
        }
    }

    fn remembered(&self, e: &[u8; 32]) -> bool {
        let c = self.cache.lock().expect("verify cache lock");
        c.current.contains(e) || c.previous.contains(e)
    }

    fn remember(&self, e: [u8; 32]) {
        let mut c = self.cache.lock().expect("verify cache lock");
        if c.current.len() >= VERIFY_CACHE_GENERATION {
            c.previous = std::mem::take(&mut c.current);
        }
        c.current.insert(e);
    }

    /// Verifies a bid's signature under its participant's genesis key, remembering success,
    /// so that the state machine's own check of the same bid is a lookup. Bids of unknown
    /// participants are left to the state machine.
    pub fn preverify_bid(&self, genesis: &Genesis, bid: &SignedBid) {
        if let Some(p) = genesis.participant(bid.body.participant) {
            // The verdict is the state machine's to reach; this only warms the cache.
            let _ = self.verify(
                &p.public_key,
                &bid.body.to_canonical_bytes(),
                &bid.signature,
            );
        }
    }
}

impl SignatureScheme for CachingEd25519 {
    fn verify(
        &self,
        key: &PublicKey,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let e = entry(key, message, signature);
        if self.remembered(&e) {
            return Ok(());
        }
        self.inner.verify(key, message, signature)?;
        self.remember(e);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tieline_core::sample::SampleConsortium;

    #[test]
    fn caches_successes_only_and_agrees_with_ed25519() {
        let s = SampleConsortium::new(2, 1);
        let scheme = CachingEd25519::for_genesis(&s.genesis);
        let bid = s.bid(0, 1, 1);
        let key = s.genesis.participants[0].public_key;
        let msg = bid.body.to_canonical_bytes();
        assert!(!scheme.remembered(&entry(&key, &msg, &bid.signature)));
        scheme.preverify_bid(&s.genesis, &bid);
        assert!(scheme.remembered(&entry(&key, &msg, &bid.signature)));
        assert_eq!(scheme.verify(&key, &msg, &bid.signature), Ok(()));
        let mut bad = bid.signature;
        bad.0[0] ^= 1;
        assert!(scheme.verify(&key, &msg, &bad).is_err());
        assert!(scheme.verify(&key, &msg, &bad).is_err());
        let other = s.genesis.participants[1].public_key;
        assert!(scheme.verify(&other, &msg, &bid.signature).is_err());
    }
}
