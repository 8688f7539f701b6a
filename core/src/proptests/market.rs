//! Strategies for the market and clearing types.

use super::*;

pub(crate) fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}
pub(crate) fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}
pub(super) fn signature() -> impl Strategy<Value = Signature> {
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
pub(super) fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é:._-]{0,12}"
}
pub(super) fn quantity() -> impl Strategy<Value = Quantity> {
    any::<i64>().prop_map(Quantity)
}
pub(super) fn price() -> impl Strategy<Value = Price> {
    any::<i64>().prop_map(Price)
}

pub(super) fn product() -> impl Strategy<Value = Product> {
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
pub(super) fn side() -> impl Strategy<Value = Side> {
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
pub(super) fn outcome() -> impl Strategy<Value = ClearingOutcome> {
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
pub(super) fn cut() -> impl Strategy<Value = Cut> {
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
pub(super) fn clearing_record() -> impl Strategy<Value = ClearingRecord> {
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
