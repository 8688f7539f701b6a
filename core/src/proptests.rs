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

pub(crate) fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}
pub(crate) fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}
fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}
pub(crate) fn signed<T: std::fmt::Debug + Clone>(
    body: impl Strategy<Value = T>,
) -> impl Strategy<Value = Signed<T>> {
    (body, signature()).prop_map(|(body, signature)| Signed { body, signature })
}
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é:._-]{0,12}"
}
fn quantity() -> impl Strategy<Value = Quantity> {
    any::<i64>().prop_map(Quantity)
}
fn price() -> impl Strategy<Value = Price> {
    any::<i64>().prop_map(Price)
}

fn product() -> impl Strategy<Value = Product> {
    (any::<u64>(), any::<u32>(), any::<bool>(), any::<bool>()).prop_map(|(s, m, t, p)| Product {
        delivery_start: Timestamp(s),
        delivery_minutes: m,
        term: if t { Term::Spot } else { Term::MediumLongTerm },
        settlement: if p {
            Settlement::Physical
        } else {
            Settlement::Financial
        },
    })
}
fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}
pub(crate) fn bid() -> impl Strategy<Value = Bid> {
    (
        digest(),
        any::<u32>(),
        any::<u16>(),
        any::<Option<u32>>(),
        side(),
        product(),
        vec((price(), quantity()), 0..4),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(chain_id, p, a, bus, side, product, steps, nonce, ts)| Bid {
                chain_id,
                participant: ParticipantId(p),
                area: AreaId(a),
                bus: bus.map(BusId),
                side,
                product,
                steps: steps
                    .into_iter()
                    .map(|(price, quantity)| BidStep { price, quantity })
                    .collect(),
                nonce,
                timestamp: Timestamp(ts),
            },
        )
}
pub(crate) fn receipt() -> impl Strategy<Value = BidReceipt> {
    (
        digest(),
        digest(),
        any::<u32>(),
        any::<u16>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(chain_id, bid, p, home, height, at)| BidReceipt {
            chain_id,
            bid,
            participant: ParticipantId(p),
            home: NodeId(home),
            height,
            received_at: Timestamp(at),
        })
}
pub(crate) fn batch() -> impl Strategy<Value = BidBatch> {
    (
        digest(),
        any::<u64>(),
        any::<u16>(),
        vec(signed(bid()), 0..3),
        vec(any::<u64>(), 0..4),
        vec(change(), 0..3),
    )
        .prop_map(|(chain_id, height, home, bids, at, changes)| BidBatch {
            chain_id,
            height,
            home: NodeId(home),
            bids,
            received: at.into_iter().map(Timestamp).collect(),
            changes,
        })
}
pub(crate) fn participant() -> impl Strategy<Value = Participant> {
    (
        any::<u32>(),
        name(),
        any::<u16>(),
        any::<u16>(),
        public_key(),
    )
        .prop_map(|(id, name, home, area, public_key)| Participant {
            id: ParticipantId(id),
            name,
            home: NodeId(home),
            area: AreaId(area),
            public_key,
            eic: None,
        })
}

pub(crate) fn change() -> impl Strategy<Value = SignedChange> {
    let what = prop_oneof![
        participant().prop_map(RegistryChange::Admit),
        any::<u32>().prop_map(|p| RegistryChange::Revoke(ParticipantId(p))),
        (any::<u32>(), public_key()).prop_map(|(p, key)| RegistryChange::ParticipantKey {
            participant: ParticipantId(p),
            key
        }),
        (any::<u16>(), public_key()).prop_map(|(m, key)| RegistryChange::MemberKey {
            member: NodeId(m),
            key
        }),
    ];
    let by = prop_oneof![
        any::<u16>().prop_map(|m| Party::Member(NodeId(m))),
        any::<u32>().prop_map(|p| Party::Participant(ParticipantId(p))),
    ];
    (digest(), what, vec((by, signature()), 0..3)).prop_map(|(chain_id, change, sigs)| {
        SignedChange {
            record: RegistryRecord { chain_id, change },
            signatures: sigs
                .into_iter()
                .map(|(by, signature)| PartySignature { by, signature })
                .collect(),
        }
    })
}
pub(crate) fn trade() -> impl Strategy<Value = Trade> {
    (
        digest(),
        any::<u32>(),
        side(),
        any::<u16>(),
        any::<Option<u32>>(),
        product(),
        quantity(),
        price(),
        any::<Option<u32>>(),
    )
        .prop_map(
            |(bid, p, side, a, bus, product, quantity, price, cp)| Trade {
                bid,
                participant: ParticipantId(p),
                side,
                area: AreaId(a),
                bus: bus.map(BusId),
                product,
                quantity,
                price,
                counterparty: cp.map(ParticipantId),
            },
        )
}
fn outcome() -> impl Strategy<Value = ClearingOutcome> {
    (
        vec((digest(), any::<u16>(), quantity()), 0..3),
        vec((product(), any::<u16>(), price()), 0..2),
        vec((product(), any::<u32>(), price()), 0..2),
        vec((product(), any::<u16>(), quantity()), 0..2),
        vec(price(), 0..2),
        any::<i128>(),
        any::<i128>(),
    )
        .prop_map(|(aw, ap, bp, fl, cp, rent, welfare)| ClearingOutcome {
            awards: aw
                .into_iter()
                .map(|(bid, step, quantity)| StepAward {
                    bid,
                    step,
                    quantity,
                })
                .collect(),
            area_prices: ap
                .into_iter()
                .map(|(product, a, price)| AreaPrice {
                    product,
                    area: AreaId(a),
                    price,
                })
                .collect(),
            bus_prices: bp
                .into_iter()
                .map(|(product, b, price)| BusPrice {
                    product,
                    bus: BusId(b),
                    price,
                })
                .collect(),
            flows: fl
                .into_iter()
                .map(|(product, t, flow)| TieFlow {
                    product,
                    tie_line: TieLineId(t),
                    flow,
                })
                .collect(),
            cut_prices: cp,
            congestion_rent: Money(rent),
            welfare: Money(welfare),
        })
}
fn cut() -> impl Strategy<Value = Cut> {
    (
        product(),
        any::<u32>(),
        vec(
            (
                prop_oneof![
                    digest().prop_map(CutVariable::Bid),
                    any::<u16>().prop_map(|t| CutVariable::TieFlow(TieLineId(t)))
                ],
                any::<i64>(),
            ),
            0..3,
        ),
        quantity(),
    )
        .prop_map(|(product, label, terms, limit)| Cut {
            product,
            label,
            terms: terms
                .into_iter()
                .map(|(variable, coefficient)| CutTerm {
                    variable,
                    coefficient,
                })
                .collect(),
            limit,
        })
}
fn clearing_record() -> impl Strategy<Value = ClearingRecord> {
    (
        prop_oneof![
            Just(ClearingRule::PayAsBid),
            Just(ClearingRule::UniformPrice),
            Just(ClearingRule::ZonalCoupling)
        ],
        vec(cut(), 0..2),
        outcome(),
    )
        .prop_map(|(rule, cuts, outcome)| ClearingRecord {
            rule,
            cuts,
            outcome,
        })
}
pub(crate) fn header() -> impl Strategy<Value = BlockHeader> {
    (
        any::<u16>(),
        digest(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        digest(),
        digest(),
        digest(),
        any::<u64>(),
        any::<u16>(),
    )
        .prop_map(
            |(version, chain_id, height, view, revision, previous, tr, ph, ts, p)| BlockHeader {
                version,
                chain_id,
                height,
                view,
                revision,
                previous,
                trades_root: tr,
                process_hash: ph,
                timestamp: Timestamp(ts),
                primary: NodeId(p),
            },
        )
}
fn vote_kind() -> impl Strategy<Value = VoteKind> {
    prop_oneof![
        Just(VoteKind::Propose),
        Just(VoteKind::Endorse),
        Just(VoteKind::Commit)
    ]
}
pub(crate) fn vote() -> impl Strategy<Value = Vote> {
    (
        vote_kind(),
        digest(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        digest(),
        any::<u16>(),
    )
        .prop_map(
            |(kind, chain_id, height, view, revision, block, voter)| Vote {
                kind,
                chain_id,
                height,
                view,
                revision,
                block,
                voter: NodeId(voter),
            },
        )
}
pub(crate) fn qc() -> impl Strategy<Value = QuorumCertificate> {
    (
        vote_kind(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        digest(),
        vec((any::<u16>(), signature()), 0..4),
    )
        .prop_map(
            |(kind, height, view, revision, block, sigs)| QuorumCertificate {
                kind,
                height,
                view,
                revision,
                block,
                signatures: sigs
                    .into_iter()
                    .map(|(v, signature)| VoteSignature {
                        voter: NodeId(v),
                        signature,
                    })
                    .collect(),
            },
        )
}
pub(crate) fn skip_vote() -> impl Strategy<Value = SkipVote> {
    (
        digest(),
        any::<u64>(),
        any::<u32>(),
        any::<u16>(),
        proptest::option::of(qc()),
        vec(any::<u16>().prop_map(NodeId), 0..4),
    )
        .prop_map(|(chain_id, height, view, voter, lock, held)| SkipVote {
            chain_id,
            height,
            view,
            voter: NodeId(voter),
            lock,
            held,
        })
}
pub(crate) fn skip_certificate() -> impl Strategy<Value = SkipCertificate> {
    (any::<u64>(), any::<u32>(), vec(signed(skip_vote()), 0..3)).prop_map(
        |(height, view, votes)| SkipCertificate {
            height,
            view,
            votes,
        },
    )
}
pub(crate) fn objection() -> impl Strategy<Value = Objection> {
    (
        digest(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        digest(),
        any::<u16>(),
        prop_oneof![
            vec(cut(), 0..2).prop_map(|cuts| ObjectionReason::Security { cuts }),
            digest().prop_map(|batch| ObjectionReason::MissingBatch { batch }),
            name().prop_map(|detail| ObjectionReason::Invalid { detail }),
        ],
    )
        .prop_map(
            |(chain_id, height, view, revision, block, o, reason)| Objection {
                chain_id,
                height,
                view,
                revision,
                block,
                objector: NodeId(o),
                reason,
            },
        )
}
pub(crate) fn appeal() -> impl Strategy<Value = Appeal> {
    (
        digest(),
        any::<u32>(),
        any::<u64>(),
        prop_oneof![
            (signed(bid()), signed(receipt())).prop_map(|(bid, receipt)| AppealClaim::Omitted {
                bid: Box::new(bid),
                receipt
            }),
            digest().prop_map(|bid| AppealClaim::Misallocated { bid }),
        ],
    )
        .prop_map(|(chain_id, p, height, claim)| Appeal {
            chain_id,
            participant: ParticipantId(p),
            height,
            claim,
        })
}
fn appeal_record() -> impl Strategy<Value = AppealRecord> {
    (
        signed(appeal()),
        any::<u16>(),
        prop_oneof![
            any::<u32>().prop_map(|revision| AppealResolution::Upheld { revision }),
            Just(AppealResolution::RejectedAlreadyIncluded),
            Just(AppealResolution::RejectedUnverifiable),
            Just(AppealResolution::RejectedOutcomeStands),
        ],
    )
        .prop_map(|(appeal, via, resolution)| AppealRecord {
            appeal,
            via: NodeId(via),
            resolution,
        })
}
fn evidence() -> impl Strategy<Value = Evidence> {
    (signed(vote()), signed(vote())).prop_map(|(first, second)| Evidence { first, second })
}
fn rejection() -> impl Strategy<Value = Rejection> {
    (
        digest(),
        prop_oneof![
            Just(RejectionReason::AreaUnavailable),
            Just(RejectionReason::Fallback),
            Just(RejectionReason::Invalid),
            Just(RejectionReason::Duplicate),
            Just(RejectionReason::OutsideGate)
        ],
    )
        .prop_map(|(bid, reason)| Rejection { bid, reason })
}
fn process() -> impl Strategy<Value = ProcessData> {
    (
        vec(signed(batch()), 0..2),
        clearing_record(),
        vec(signed(objection()), 0..2),
        vec(appeal_record(), 0..2),
        vec(rejection(), 0..2),
        vec(any::<u16>(), 0..3),
        proptest::option::of(skip_certificate()),
        vec(evidence(), 0..2),
    )
        .prop_map(
            |(
                batches,
                clearing,
                objections,
                appeals,
                rejections,
                skipped,
                skip_certificate,
                evidence,
            )| {
                ProcessData {
                    batches,
                    clearing,
                    objections,
                    appeals,
                    rejections,
                    skipped: skipped.into_iter().map(NodeId).collect(),
                    skip_certificate,
                    evidence,
                }
            },
        )
}
pub(crate) fn body() -> impl Strategy<Value = BlockBody> {
    (vec(trade(), 0..3), process()).prop_map(|(trades, process)| BlockBody { trades, process })
}
pub(crate) fn block() -> impl Strategy<Value = Block> {
    (header(), body(), qc()).prop_map(|(header, body, certificate)| Block {
        header,
        body,
        certificate,
    })
}
fn genesis() -> impl Strategy<Value = Genesis> {
    (
        name(),
        vec((any::<u16>(), name()), 0..3),
        vec(
            (any::<u16>(), name(), any::<u16>(), public_key(), name()),
            0..3,
        ),
        vec(
            (
                any::<u32>(),
                name(),
                any::<u16>(),
                any::<u16>(),
                public_key(),
            ),
            0..3,
        ),
        vec(
            (
                any::<u16>(),
                any::<u16>(),
                any::<u16>(),
                quantity(),
                quantity(),
                any::<Option<u32>>(),
                any::<Option<u32>>(),
            ),
            0..3,
        ),
        (
            any::<bool>(),
            any::<u16>(),
            any::<u64>(),
            any::<[u64; 3]>(),
            any::<u32>(),
        ),
        (price(), price(), price()),
    )
        .prop_map(
            |(
                chain_name,
                areas,
                members,
                participants,
                ties,
                (byz, f, period, t, maxr),
                (tick, floor, cap),
            )| Genesis {
                chain_name,
                areas: areas
                    .into_iter()
                    .map(|(id, name)| Area {
                        id: AreaId(id),
                        name,
                        eic: None,
                    })
                    .collect(),
                members: members
                    .into_iter()
                    .map(|(id, name, area, public_key, address)| Member {
                        id: NodeId(id),
                        name,
                        area: AreaId(area),
                        public_key,
                        address,
                        eic: None,
                    })
                    .collect(),
                participants: participants
                    .into_iter()
                    .map(|(id, name, home, area, public_key)| Participant {
                        id: ParticipantId(id),
                        name,
                        home: NodeId(home),
                        area: AreaId(area),
                        public_key,
                        eic: None,
                    })
                    .collect(),
                tie_lines: ties
                    .into_iter()
                    .map(|(id, from, to, f, b, fb, tb)| TieLine {
                        id: TieLineId(id),
                        from: AreaId(from),
                        to: AreaId(to),
                        capacity_forward: f,
                        capacity_backward: b,
                        from_bus: fb.map(BusId),
                        to_bus: tb.map(BusId),
                    })
                    .collect(),
                fault_model: FaultModel {
                    kind: if byz {
                        FaultKind::Byzantine
                    } else {
                        FaultKind::Crash
                    },
                    f,
                },
                rotation_period: period,
                timing: Timing {
                    gate_ms: t[0],
                    batch_wait_ms: t[1],
                    view_timeout_ms: t[2],
                    schedule: None,
                },
                max_revisions: maxr,
                clearing: ClearingParams {
                    rule: ClearingRule::ZonalCoupling,
                    price_tick: tick,
                    price_floor: floor,
                    price_cap: cap,
                },
            },
        )
}
pub(crate) fn inclusion_proof() -> impl Strategy<Value = InclusionProof> {
    (any::<u64>(), any::<u64>(), vec(digest(), 0..4))
        .prop_map(|(index, size, path)| InclusionProof { index, size, path })
}

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
