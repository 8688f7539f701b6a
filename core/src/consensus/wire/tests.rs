use super::*;
use crate::consensus::sim::Cluster;
use crate::consensus::{Input, NoGridModel, SecurityCheck};
use crate::crypto::Ed25519;
use crate::encoding::Tagged;
use crate::proptests as st;
use crate::sample::SampleConsortium;
use crate::units::Timestamp;
use proptest::collection::vec;
use proptest::prelude::*;
use std::sync::Arc;

pub(crate) fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        st::signed(st::batch()).prop_map(Message::Batch),
        (
            st::signed(st::vote()),
            st::header(),
            st::body(),
            proptest::option::of(st::skip_certificate())
        )
            .prop_map(|(stamp, header, body, justification)| {
                Message::Proposal(Box::new(Proposal {
                    stamp,
                    header,
                    body: std::sync::Arc::new(body),
                    justification,
                }))
            }),
        st::signed(st::vote()).prop_map(Message::Vote),
        (
            st::signed(st::objection()),
            proptest::option::of(st::signed(st::batch()))
        )
            .prop_map(|(o, b)| Message::Objection(Box::new(o), b.map(Box::new))),
        (st::signed(st::appeal()), any::<u16>()).prop_map(|(a, v)| Message::Appeal {
            appeal: Box::new(a),
            via: NodeId(v),
        }),
        (
            st::signed(st::skip_vote()),
            proptest::collection::vec(st::signed(st::batch()), 0..3)
        )
            .prop_map(|(v, b)| Message::Skip(Box::new(v), None, b)),
        (
            st::skip_certificate(),
            proptest::collection::vec(st::signed(st::batch()), 0..3)
        )
            .prop_map(|(c, b)| Message::ViewCertificate(Box::new(c), b)),
        st::block().prop_map(|b| Message::Decided(Box::new(b))),
        any::<u64>().prop_map(|from| Message::SyncRequest { from }),
        vec(st::block(), 0..3).prop_map(Message::SyncResponse),
        st::qc().prop_map(|c| Message::Endorsed(Box::new(c))),
    ]
}

fn bid_error() -> impl Strategy<Value = BidError> {
    prop_oneof![
        (st::digest(), st::digest())
            .prop_map(|(expected, found)| BidError::WrongChain { expected, found }),
        any::<u32>().prop_map(|p| BidError::UnknownParticipant(ParticipantId(p))),
        (any::<u32>(), any::<u64>()).prop_map(|(p, height)| BidError::Revoked {
            participant: ParticipantId(p),
            height,
        }),
        (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(p, a, b)| BidError::WrongArea {
            participant: ParticipantId(p),
            registered: AreaId(a),
            found: AreaId(b),
        }),
        Just(BidError::NoSteps),
        (0..MAX_BID_STEPS, "[a-z ]{0,20}")
            .prop_map(|(step, reason)| BidError::BadStep { step, reason }),
        any::<u64>().prop_map(|height| BidError::BatchFull { height }),
        Just(BidError::EmptyDelivery),
        "[a-z ]{0,20}".prop_map(|reason| BidError::OffSchedule { reason }),
        (any::<u64>(), any::<u64>()).prop_map(|(height, g)| BidError::GateClosed {
            height,
            gate: Timestamp(g)
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(height, open, ahead)| {
            BidError::TooFarAhead {
                height,
                open,
                ahead,
            }
        }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        st::signed(st::receipt()).prop_map(Reply::Receipt),
        (st::digest(), bid_error()).prop_map(|(bid, reason)| Reply::BidRejected { bid, reason }),
        any::<u64>().prop_map(|height| Reply::AppealForwarded { height }),
        "[a-z ]{0,20}".prop_map(|reason| Reply::AppealRejected { reason }),
        (any::<u64>(), st::digest(), vec(st::trade(), 0..3)).prop_map(|(height, block, trades)| {
            Reply::Result {
                height,
                block,
                trades,
            }
        }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (
            st::signed(st::bid()),
            st::signed(st::receipt()),
            any::<u64>()
        )
            .prop_map(|(bid, receipt, height)| Record::Bid {
                bid,
                receipt,
                height
            }),
        st::signed(st::batch()).prop_map(Record::Batch),
        st::signed(st::vote()).prop_map(Record::Vote),
        st::signed(st::skip_vote()).prop_map(Record::Skip),
        st::skip_certificate().prop_map(Record::SkipCertificate),
        (
            st::signed(st::objection()),
            proptest::option::of(st::signed(st::batch()))
        )
            .prop_map(|(o, b)| Record::Objection(o, b)),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        vec(st::signed(st::bid()), 0..4).prop_map(Request::SubmitBids),
        st::signed(st::appeal()).prop_map(|a| Request::SubmitAppeal(Box::new(a))),
        any::<u64>().prop_map(|from_height| Request::QueryTrades { from_height }),
        Just(Request::Status),
        any::<u64>().prop_map(|height| Request::QueryProcess { height }),
        st::change().prop_map(|c| Request::SubmitChange(Box::new(c))),
        (any::<u64>(), any::<u16>(), st::digest()).prop_map(|(height, home, digest)| {
            Request::FetchBatch(crate::consensus::compact::BatchRef {
                height,
                home: NodeId(home),
                digest,
            })
        }),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(height, view, revision)| {
            Request::FetchProposal {
                height,
                view,
                revision,
            }
        }),
    ]
}

fn registry_delta() -> impl Strategy<Value = RegistryDelta> {
    (
        vec(st::participant(), 0..3),
        vec((st::participant(), any::<u64>()), 0..3),
        vec((any::<u16>(), st::public_key()), 0..3),
    )
        .prop_map(|(participants, revoked, keys)| RegistryDelta {
            participants,
            revoked: revoked
                .into_iter()
                .map(|(participant, from_height)| Revocation {
                    participant,
                    from_height,
                })
                .collect(),
            member_keys: keys
                .into_iter()
                .map(|(m, key)| MemberKey {
                    member: NodeId(m),
                    key,
                })
                .collect(),
        })
}

fn response() -> impl Strategy<Value = Response> {
    let certified = (
        st::header(),
        st::qc(),
        vec((st::trade(), st::inclusion_proof()), 0..3),
    )
        .prop_map(|(header, certificate, trades)| CertifiedTrades {
            header,
            certificate,
            trades: trades
                .into_iter()
                .map(|(trade, proof)| ProvenTrade { trade, proof })
                .collect(),
        });
    prop_oneof![
        vec(reply(), 0..4).prop_map(Response::Replies),
        (any::<u64>(), vec(certified, 0..3), any::<u64>()).prop_map(
            |(committed, blocks, next_height)| Response::Trades(TradeReport {
                committed,
                blocks,
                next_height
            })
        ),
        (
            any::<u16>(),
            any::<u64>(),
            any::<u32>(),
            proptest::option::of(st::header()),
            any::<u64>(),
            any::<u64>(),
            registry_delta(),
        )
            .prop_map(
                |(n, height, view, last, last_trades, last_bids, registry)| {
                    Response::Status(Box::new(NodeStatus {
                        node: NodeId(n),
                        height,
                        view,
                        last,
                        last_trades,
                        last_bids,
                        registry,
                    }))
                }
            ),
        "[a-z ]{0,20}".prop_map(|detail| Response::Failed(RequestFailure {
            kind: FailureKind::Forbidden,
            detail
        })),
        (st::header(), st::qc(), st::body()).prop_map(|(header, certificate, body)| {
            Response::Process(Box::new(CertifiedProcess {
                header,
                certificate,
                process: body.process,
            }))
        }),
        proptest::option::of(st::signed(st::batch()))
            .prop_map(|b| Response::Batch(b.map(Box::new))),
        proptest::option::of(message()).prop_map(|m| Response::Frame(m.map(|m| {
            let bytes = crate::consensus::compact::encode(&m);
            Box::new(crate::consensus::compact::Frame::from_canonical_bytes(&bytes).unwrap())
        }))),
    ]
}

/// Round trip, and the canonical property on a mutation of one byte (spec D1, D2).
fn check<T: Tagged + PartialEq + std::fmt::Debug>(
    x: &T,
    pos: prop::sample::Index,
    byte: u8,
) -> Result<(), TestCaseError> {
    let bytes = x.to_canonical_bytes();
    prop_assert_eq!(&T::from_canonical_bytes(&bytes).unwrap(), x);
    let mut changed = bytes.clone();
    let i = pos.index(changed.len());
    changed[i] = byte;
    for v in [
        changed,
        bytes[..i].to_vec(),
        [bytes.as_slice(), &[byte]].concat(),
    ] {
        if let Ok(y) = T::from_canonical_bytes(&v) {
            prop_assert_eq!(y.to_canonical_bytes(), v);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decode_encode_message(x in message(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
        check(&x, pos, b)?;
    }

    #[test]
    fn decode_encode_record(x in record(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
        check(&x, pos, b)?;
    }

    #[test]
    fn decode_encode_request(x in request(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
        check(&x, pos, b)?;
    }

    #[test]
    fn decode_encode_response(x in response(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
        check(&x, pos, b)?;
    }

    /// Arbitrary bytes behind each wire tag: whatever decodes re-encodes to itself, and
    /// nothing panics.
    #[test]
    fn wire_decoders_reject_or_round_trip_arbitrary_bytes(tail in vec(any::<u8>(), 0..300)) {
        for tag in WIRE_TAGS {
            let mut b = tag.to_be_bytes().to_vec();
            b.push(crate::encoding::FORMAT_VERSION);
            b.extend_from_slice(&tail);
            macro_rules! each { ($($t:ty),*) => {$(
                if tag == <$t>::TAG.id {
                    if let Ok(v) = <$t>::from_canonical_bytes(&b) {
                        prop_assert_eq!(v.to_canonical_bytes(), b.clone());
                    }
                }
            )*}; }
            each!(Message, Request, Response, Record);
        }
    }
}

#[test]
fn malformed_frames_are_rejected_with_a_typed_error() {
    let m = Message::SyncRequest { from: 3 };
    let bytes = m.to_canonical_bytes();
    assert_eq!(Message::from_canonical_bytes(&bytes).unwrap(), m);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Message::from_canonical_bytes(&trailing).unwrap_err().kind,
        DecodeErrorKind::TrailingBytes { count: 1 }
    ));
    let mut bad = bytes.clone();
    bad[3] = 42;
    assert!(matches!(
        Message::from_canonical_bytes(&bad).unwrap_err().kind,
        DecodeErrorKind::InvalidDiscriminant { value: 42 }
    ));
    assert!(matches!(
        Request::from_canonical_bytes(&bytes).unwrap_err().kind,
        DecodeErrorKind::WrongTag { .. }
    ));
    assert!(Message::from_canonical_bytes(&[]).is_err());
}

/// A sample consortium of 4 members and 8 participants, each bidding once for height 1,
/// run by the simulated cluster until every member has committed `heights` blocks.
/// The registry delta a status carries gives back the registry it was taken from.
#[test]
fn a_registry_delta_applied_to_the_genesis_gives_the_registry() {
    let s = SampleConsortium::new(3, 2);
    let base = &s.genesis;
    assert!(RegistryDelta::between(base, base, Vec::new()).is_empty());
    let mut head = base.clone();
    let revoked = head.participants.remove(1);
    head.participants[0].public_key = crate::crypto::PublicKey([7; 32]);
    head.participants.push(Participant {
        id: ParticipantId(9000),
        name: "Newcomer".into(),
        home: NodeId(2),
        area: head.members[1].area,
        public_key: crate::crypto::PublicKey([8; 32]),
        eic: None,
    });
    head.members[2].public_key = crate::crypto::PublicKey([9; 32]);
    let delta = RegistryDelta::between(
        base,
        &head,
        vec![Revocation {
            participant: revoked.clone(),
            from_height: 4,
        }],
    );
    assert_eq!(delta.participants.len(), 2, "{delta:?}");
    assert_eq!(delta.member_keys.len(), 1, "{delta:?}");
    assert_eq!(delta.apply(base), head);
    let status = NodeStatus {
        node: NodeId(1),
        height: 5,
        view: 0,
        last: None,
        last_trades: 0,
        last_bids: 0,
        registry: delta.clone(),
    };
    let mut bytes = Vec::new();
    status.encode(&mut bytes);
    let back = NodeStatus::decode(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(back.registry, delta);
}

pub(crate) fn committed(heights: u64) -> (SampleConsortium, Cluster) {
    let s = SampleConsortium::new(4, 2);
    let security: Vec<Arc<dyn SecurityCheck>> =
        (0..4).map(|_| Arc::new(NoGridModel) as _).collect();
    let mut cluster = Cluster::from_sample(&s, security);
    cluster.start();
    for i in 0..8 {
        cluster.input(i / 2, Input::Bid(s.bid(i, 1, 1)));
    }
    assert!(cluster.run_until(100_000, |c| c.min_height() >= heights));
    (s, cluster)
}

/// A participant verifies its trades against the certified header of a block committed by
/// the simulated cluster, and catches a forged trade or a forged certificate (spec D5).
#[test]
fn participant_verifies_certified_trades_and_catches_forgeries() {
    let (s, cluster) = committed(1);
    let block = cluster.nodes[0].store.blocks[0].clone();
    let scheme = Ed25519::default();
    let who = block.body.trades[0].participant;
    let certified = CertifiedTrades::from_block(&block, who);
    assert!(!certified.trades.is_empty());
    let bytes = Response::Trades(TradeReport {
        committed: 1,
        blocks: vec![certified.clone()],
        next_height: 2,
    })
    .to_canonical_bytes();
    let Response::Trades(report) = Response::from_canonical_bytes(&bytes).unwrap() else {
        panic!("a trade report");
    };
    report.blocks[0].verify(&s.genesis, &scheme, who).unwrap();

    let mut forged = certified.clone();
    forged.trades[0].trade.quantity.0 += 1;
    assert!(matches!(
        forged.verify(&s.genesis, &scheme, who),
        Err(ProofError::BadProof { index: 0, .. })
    ));
    let mut forged = certified.clone();
    forged.certificate.signatures.truncate(1);
    assert!(matches!(
        forged.verify(&s.genesis, &scheme, who),
        Err(ProofError::Certificate { .. })
    ));
    let other = s
        .genesis
        .participants
        .iter()
        .map(|p| p.id)
        .find(|p| *p != who)
        .unwrap();
    assert!(matches!(
        certified.verify(&s.genesis, &scheme, other),
        Err(ProofError::NotMine { .. })
    ));
}

/// A participant reads an appeal's resolution from certified process data (spec 2.8):
/// what the simulated cluster committed verifies; altered process data, a certificate of
/// another block or a short quorum, and another chain's header are caught.
#[test]
fn participant_verifies_certified_process_data_and_catches_forgeries() {
    let (s, cluster) = committed(2);
    let scheme = Ed25519::default();
    let block = cluster.nodes[0].store.blocks[0].clone();
    let certified = CertifiedProcess::from_block(&block);
    let bytes = Response::Process(Box::new(certified.clone())).to_canonical_bytes();
    let Response::Process(answer) = Response::from_canonical_bytes(&bytes).unwrap() else {
        panic!("process data");
    };
    answer.verify(&s.genesis, &scheme).unwrap();
    assert_eq!(answer.appeals_of(s.genesis.participants[0].id).count(), 0);

    let mut forged = certified.clone();
    forged.process.skipped.push(NodeId(1));
    assert_eq!(
        forged.verify(&s.genesis, &scheme),
        Err(ProofError::ProcessHash { height: 1 })
    );
    let mut forged = certified.clone();
    forged.certificate = cluster.nodes[0].store.blocks[1].certificate.clone();
    assert_eq!(
        forged.verify(&s.genesis, &scheme),
        Err(ProofError::CertificateTarget { height: 1 })
    );
    let mut forged = certified.clone();
    forged.certificate.signatures.truncate(1);
    assert!(matches!(
        forged.verify(&s.genesis, &scheme),
        Err(ProofError::Certificate { .. })
    ));
    let mut forged = certified;
    forged.header.chain_id = crate::crypto::sha256(&[b"another chain"]);
    assert_eq!(
        forged.verify(&s.genesis, &scheme),
        Err(ProofError::WrongChain { height: 1 })
    );
}
