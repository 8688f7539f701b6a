//! Strategies for the block, consensus, registry and genesis types.

use super::*;

pub(super) fn vote_kind() -> impl Strategy<Value = VoteKind> {
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
pub(super) fn appeal_record() -> impl Strategy<Value = AppealRecord> {
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
pub(super) fn evidence() -> impl Strategy<Value = Evidence> {
    (signed(vote()), signed(vote())).prop_map(|(first, second)| Evidence { first, second })
}
pub(super) fn rejection() -> impl Strategy<Value = Rejection> {
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
pub(super) fn process() -> impl Strategy<Value = ProcessData> {
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
pub(super) fn genesis() -> impl Strategy<Value = Genesis> {
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
