//! The signatures a node verified within a height, remembered so that every revision does
//! not verify again what the last one carried (work only, never a verdict).

use super::*;

/// What a node verified within a height: bid ids and signatures, batch and objection
/// signatures, each remembered under its signature with the key and the exact content it was
/// verified for, so that every revision does not hash and verify again what the last one
/// carried. A lookup compares the content (cheaper than hashing it); anything not found, or
/// found with other content or another key, is verified afresh. It changes what work is done,
/// never what is decided, so it is invisible to equality and hashing (model-checker states
/// that differ only in it are the same state).
#[derive(Clone, Debug, Default)]
pub struct VerifiedBids {
    bids: HashMap<Signature, (Digest, Option<PublicKey>, Bid)>,
    batches: HashMap<Signature, (PublicKey, BidBatch)>,
    objections: HashMap<Signature, (PublicKey, Objection)>,
}

impl VerifiedBids {
    /// Remembers a bid this node signed a receipt for (verified at intake).
    pub(super) fn receipted(&mut self, sb: &SignedBid, id: Digest, key: PublicKey) {
        self.bids
            .insert(sb.signature, (id, Some(key), sb.body.clone()));
    }
}

/// [`VerifiedBids`] as a content checker's signature check.
pub(super) struct Memo<'a> {
    pub(super) memo: &'a mut VerifiedBids,
    pub(super) scheme: &'a dyn crate::crypto::SignatureScheme,
}

impl SignatureCheck for Memo<'_> {
    fn bid_id(&mut self, sb: &SignedBid) -> Digest {
        match self.memo.bids.get(&sb.signature) {
            Some((id, _, bid)) if *bid == sb.body => *id,
            _ => {
                let id = sb.body.id();
                self.memo
                    .bids
                    .insert(sb.signature, (id, None, sb.body.clone()));
                id
            }
        }
    }

    /// `id` is `bid_id(sb)`, so an entry under the signature with that id holds this very
    /// bid (its content hashes to the id): no second comparison of the content.
    fn bid(&mut self, sb: &SignedBid, id: &Digest, key: &PublicKey) -> bool {
        if let Some((known, verified, _)) = self.memo.bids.get(&sb.signature) {
            if known == id && *verified == Some(*key) {
                return true;
            }
        }
        let ok = sb.verify(self.scheme, key).is_ok();
        if ok {
            self.memo
                .bids
                .insert(sb.signature, (*id, Some(*key), sb.body.clone()));
        }
        ok
    }

    fn batch(
        &mut self,
        scheme: &dyn crate::crypto::SignatureScheme,
        b: &SignedBatch,
        key: &PublicKey,
    ) -> Result<(), crate::crypto::SignatureError> {
        verify_remembered(&mut self.memo.batches, scheme, b, key)
    }

    fn objection(
        &mut self,
        scheme: &dyn crate::crypto::SignatureScheme,
        o: &Signed<Objection>,
        key: &PublicKey,
    ) -> Result<(), crate::crypto::SignatureError> {
        verify_remembered(&mut self.memo.objections, scheme, o, key)
    }
}

/// Verifies `signed` under `key` unless `memo` holds its signature verified under that key
/// for the same content; remembers it once it verifies.
fn verify_remembered<T: crate::encoding::Tagged + Clone + PartialEq>(
    memo: &mut HashMap<Signature, (PublicKey, T)>,
    scheme: &dyn crate::crypto::SignatureScheme,
    signed: &Signed<T>,
    key: &PublicKey,
) -> Result<(), crate::crypto::SignatureError> {
    if memo
        .get(&signed.signature)
        .is_some_and(|(k, body)| k == key && *body == signed.body)
    {
        return Ok(());
    }
    signed.verify(scheme, key)?;
    memo.insert(signed.signature, (*key, signed.body.clone()));
    Ok(())
}

impl PartialEq for VerifiedBids {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for VerifiedBids {}
impl std::hash::Hash for VerifiedBids {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
