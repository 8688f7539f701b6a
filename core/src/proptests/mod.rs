//! Property tests of the canonical encoding over every ledger type (spec D1, D2).

use proptest::collection::vec;
use proptest::prelude::*;

use crate::block::*;
use crate::clearing::*;
use crate::crypto::{Digest, PublicKey, Signature, Signed};
use crate::encoding::{Canonical, Reader, Tagged};
use crate::genesis::*;
use crate::market::*;
use crate::merkle::InclusionProof;
use crate::registry::{Party, PartySignature, RegistryChange, RegistryRecord, SignedChange};
use crate::units::*;

mod ledger;
mod market;
pub(crate) use ledger::*;
pub(crate) use market::*;

/// decode(encode(x)) == x, and every single-byte change, truncation or extension of the
/// encoding either fails to decode or decodes to a value that re-encodes to exactly the changed
/// bytes (so no two byte strings decode to the same value).
fn check_tagged<T: Tagged + PartialEq + std::fmt::Debug>(
    x: &T,
    pos: prop::sample::Index,
    byte: u8,
) -> Result<(), TestCaseError> {
    let bytes = x.to_canonical_bytes();
    prop_assert_eq!(&T::from_canonical_bytes(&bytes).unwrap(), x);
    let i = pos.index(bytes.len());
    let mut changed = bytes.clone();
    changed[i] = byte;
    let mut variants = vec![changed, bytes[..i].to_vec()];
    let mut longer = bytes.clone();
    longer.push(byte);
    variants.push(longer);
    for v in variants {
        if let Ok(y) = T::from_canonical_bytes(&v) {
            prop_assert_eq!(y.to_canonical_bytes(), v);
        }
    }
    Ok(())
}

fn check_untagged<T: Canonical + PartialEq + std::fmt::Debug>(x: &T) -> Result<(), TestCaseError> {
    let mut bytes = Vec::new();
    x.encode(&mut bytes);
    let mut r = Reader::new(&bytes);
    prop_assert_eq!(&T::decode(&mut r).unwrap(), x);
    prop_assert_eq!(r.remaining(), 0);
    Ok(())
}

macro_rules! round_trips {
    ($($name:ident: $ty:ty = $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $name(x in $strategy, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
                    check_tagged::<$ty>(&x, pos, byte)?;
                }
            )*
        }
    };
}

round_trips! {
    decode_encode_bid: Bid = bid();
    decode_encode_signed_bid: SignedBid = signed(bid());
    decode_encode_receipt: SignedReceipt = signed(receipt());
    decode_encode_batch: SignedBatch = signed(batch());
    decode_encode_trade: Trade = trade();
    decode_encode_header: BlockHeader = header();
    decode_encode_objection: Signed<Objection> = signed(objection());
    decode_encode_appeal: Signed<Appeal> = signed(appeal());
    decode_encode_vote: Signed<Vote> = signed(vote());
    decode_encode_qc: QuorumCertificate = qc();
    decode_encode_skip_vote: Signed<SkipVote> = signed(skip_vote());
    decode_encode_skip_certificate: SkipCertificate = skip_certificate();
    decode_encode_evidence: Evidence = evidence();
    decode_encode_process: ProcessData = process();
    decode_encode_body: BlockBody = body();
    decode_encode_block: Block = block();
    decode_encode_genesis: Genesis = genesis();
    decode_encode_inclusion_proof: InclusionProof = inclusion_proof();
    decode_encode_change: SignedChange = change();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decode_encode_nested_types(
        o in outcome(), c in cut(), r in clearing_record(), a in appeal_record(), rj in rejection()
    ) {
        check_untagged(&o)?;
        check_untagged(&c)?;
        check_untagged(&r)?;
        check_untagged(&a)?;
        check_untagged(&rj)?;
    }

    /// Arbitrary bytes behind a valid tag and version: whatever decodes re-encodes to itself.
    #[test]
    fn encode_decode_arbitrary_bytes(tail in vec(any::<u8>(), 0..300)) {
        for tag in [Bid::TAG.id, SignedBid::TAG.id, Trade::TAG.id, BlockHeader::TAG.id, Vote::TAG.id, Block::TAG.id] {
            let mut b = tag.to_be_bytes().to_vec();
            b.push(crate::encoding::FORMAT_VERSION);
            b.extend_from_slice(&tail);
            macro_rules! check { ($($t:ty),*) => {$(
                if tag == <$t>::TAG.id {
                    if let Ok(v) = <$t>::from_canonical_bytes(&b) {
                        prop_assert_eq!(v.to_canonical_bytes(), b.clone());
                    }
                }
            )*}; }
            check!(Bid, SignedBid, Trade, BlockHeader, Vote, Block);
        }
    }
}

#[test]
fn tags_are_distinct() {
    let tags = [
        Genesis::TAG.id,
        Bid::TAG.id,
        SignedBid::TAG.id,
        BidReceipt::TAG.id,
        SignedReceipt::TAG.id,
        BidBatch::TAG.id,
        SignedBatch::TAG.id,
        Trade::TAG.id,
        Block::TAG.id,
        BlockHeader::TAG.id,
        Objection::TAG.id,
        Appeal::TAG.id,
        BlockBody::TAG.id,
        ProcessData::TAG.id,
        Vote::TAG.id,
        QuorumCertificate::TAG.id,
        SkipVote::TAG.id,
        SkipCertificate::TAG.id,
        Evidence::TAG.id,
        InclusionProof::TAG.id,
        RegistryRecord::TAG.id,
        SignedChange::TAG.id,
    ];
    let tags: Vec<u16> = tags
        .into_iter()
        .chain(crate::consensus::wire::WIRE_TAGS)
        .collect();
    let mut sorted = tags.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), tags.len());
}
