use super::*;
use crate::consensus::wire::tests::{committed, message};
use proptest::prelude::*;
use std::sync::Arc;

/// The compact frame of `msg`, as a receiver decodes it.
fn frame_of(msg: &Message) -> Frame {
    Frame::from_canonical_bytes(&encode(msg)).expect("a frame decodes")
}

/// The frame of `msg` resolved against its own batches.
fn round_trip(msg: &Message) -> Result<Message, ResolveError> {
    let held: HashMap<Digest, SignedBatch> = batches_of(msg)
        .into_iter()
        .map(|b| (digest_of(b), b.clone()))
        .collect();
    let frame = frame_of(msg);
    frame.resolve(|r| held.get(&r.digest).cloned())
}

/// The store keeps batches from its floor to BATCH_HEIGHTS_AHEAD past it, at most
/// BATCHES_PER_HOME_HEIGHT of a home per height, whatever peers send, and pruning raises
/// the floor.
#[test]
fn the_batch_store_keeps_a_bounded_window_of_heights() {
    let (s, _) = committed(1);
    let at = |h: u64| s.batch(0, h, Vec::new());
    let mut store = BatchStore::default();
    store.prune_below(10);
    let kept: Vec<BatchRef> = [9, 10, 14, 15].map(|h| store.insert(at(h))).to_vec();
    assert_eq!(
        kept.iter()
            .map(|r| store.get(r).is_some())
            .collect::<Vec<_>>(),
        [false, true, true, false]
    );
    store.keep(&Message::Batch(at(12)));
    assert_eq!(store.len(), 3);
    // A home's third distinct batch for one height is not kept.
    let other = |nonce| s.batch(0, 12, vec![s.bid(0, 12, nonce)]);
    store.insert(other(1));
    assert_eq!(store.len(), 4);
    let third = store.insert(other(2));
    assert!(store.get(&third).is_none());
    assert_eq!(store.len(), 4);
    store.prune_below(12);
    assert_eq!(store.len(), 3);
    store.prune_below(11);
    assert!(store.get(&BatchRef::to(&at(12))).is_some());
    assert_eq!(store.len(), 3, "the floor never goes down");
}

fn skip_with(block: &Block, proposal: Proposal) -> Message {
    let vote = crate::crypto::Signed {
        body: crate::block::SkipVote {
            chain_id: block.header.chain_id,
            height: block.header.height,
            view: 0,
            voter: NodeId(1),
            lock: None,
            held: vec![NodeId(0)],
        },
        signature: crate::crypto::Signature([7; 64]),
    };
    Message::Skip(
        Box::new(vote),
        Some(Box::new(proposal)),
        block.body.process.batches.clone(),
    )
}

/// A committed round's block in every message that carries a body: each frame names its
/// batches and every award and trade by position, is smaller than the whole message, and
/// resolves to exactly that message (spec 1.3, frames).
#[test]
fn every_message_of_a_committed_round_travels_compact_and_resolves_to_itself() {
    let (_, cluster) = committed(2);
    let block = cluster.nodes[0].store.blocks[0].clone();
    assert!(!block.body.trades.is_empty() && !block.body.process.batches.is_empty());
    let proposal = Proposal {
        stamp: crate::crypto::Signed {
            body: crate::block::Vote {
                kind: crate::block::VoteKind::Propose,
                chain_id: block.header.chain_id,
                height: block.header.height,
                view: 0,
                revision: 0,
                block: block.header.digest(),
                voter: NodeId(0),
            },
            signature: crate::crypto::Signature([5; 64]),
        },
        header: block.header.clone(),
        body: Arc::new(block.body.clone()),
        justification: None,
    };
    let messages = [
        Message::Decided(Box::new(block.clone())),
        Message::Proposal(Box::new(proposal.clone())),
        Message::SyncResponse(cluster.nodes[0].store.blocks.clone()),
        skip_with(&block, proposal),
        Message::ViewCertificate(
            Box::new(crate::block::SkipCertificate {
                height: 1,
                view: 0,
                votes: Vec::new(),
            }),
            block.body.process.batches.clone(),
        ),
    ];
    for msg in &messages {
        let frame = frame_of(msg);
        for p in &frame.places {
            assert!(
                p.awards
                    .iter()
                    .all(|a| matches!(a, Edit::New(AwardEntry::At { .. })))
            );
            assert!(
                p.trades
                    .iter()
                    .all(|t| matches!(t, Edit::New(TradeEntry::At { .. })))
            );
        }
        assert!(frame.wanted().count() > 0);
        assert!(encode(msg).len() < msg.to_canonical_bytes().len());
        assert_eq!(&round_trip(msg).unwrap(), msg);
    }
}

/// A trade its bid does not describe (a faulty primary's) and an award of a bid in no batch
/// travel whole, so the receiver still sees exactly what was sent.
#[test]
fn awards_and_trades_their_bids_do_not_describe_travel_whole() {
    let (_, cluster) = committed(1);
    let mut block = cluster.nodes[0].store.blocks[0].clone();
    block.body.trades[0].participant = ParticipantId(9_999);
    block.body.process.clearing.outcome.awards[0].bid = Digest([3; 32]);
    let msg = Message::Decided(Box::new(block));
    let frame = frame_of(&msg);
    assert!(matches!(
        frame.places[0].trades[0],
        Edit::New(TradeEntry::Whole(_))
    ));
    assert!(matches!(
        frame.places[0].awards[0],
        Edit::New(AwardEntry::Whole(_))
    ));
    assert_eq!(round_trip(&msg).unwrap(), msg);
}

/// A receiver that lacks a named batch is told which one, and a position past the batches
/// is refused as malformed rather than read.
#[test]
fn a_missing_batch_is_named_and_a_bad_position_is_refused() {
    let (_, cluster) = committed(1);
    let block = cluster.nodes[0].store.blocks[0].clone();
    let msg = Message::Decided(Box::new(block.clone()));
    let frame = frame_of(&msg);
    let first = *frame.wanted().next().unwrap();
    assert_eq!(
        frame.clone().resolve(|_| None),
        Err(ResolveError::Missing(first))
    );
    let mut bad = frame;
    if let Edit::New(AwardEntry::At { at, .. }) = &mut bad.places[0].awards[0] {
        at.bid = u32::MAX;
    }
    let mut store = BatchStore::default();
    for b in &block.body.process.batches {
        store.insert(b.clone());
    }
    let bytes = bad.to_canonical_bytes();
    let back = Frame::from_canonical_bytes(&bytes).unwrap();
    assert_eq!(
        back.resolve(|r| store.get(r).cloned()),
        Err(ResolveError::Malformed("a position names no bid"))
    );
    store.prune_below(block.header.height + 1);
    assert!(store.is_empty());
}

/// One committed block with trades, made once for the property tests.
fn revision_block() -> Block {
    static BLOCK: std::sync::OnceLock<Block> = std::sync::OnceLock::new();
    BLOCK
        .get_or_init(|| committed(1).1.nodes[0].store.blocks[0].clone())
        .clone()
}

/// The bid of an upheld omission appeal, which no batch carries, is named by its position
/// among the appeals' bids; a rejected appeal's bid is no position, so an award or trade
/// naming it (a faulty primary's) travels whole.
#[test]
fn the_bids_of_upheld_omission_appeals_travel_by_position_too() {
    let with_appeal = |resolution| {
        let mut block = revision_block();
        let bid = block.body.trades[0].bid;
        let batch = block
            .body
            .process
            .batches
            .iter_mut()
            .find(|b| b.body.bids.iter().any(|sb| sb.body.id() == bid))
            .expect("a traded bid is in a batch");
        let at = batch.body.bids.iter().position(|sb| sb.body.id() == bid);
        let sb = batch.body.bids.remove(at.unwrap());
        batch.body.received.remove(at.unwrap());
        let receipt = crate::crypto::Signed {
            body: crate::market::BidReceipt {
                chain_id: block.header.chain_id,
                bid,
                participant: sb.body.participant,
                home: batch.body.home,
                height: block.header.height,
                received_at: crate::units::Timestamp(1),
            },
            signature: crate::crypto::Signature([9; 64]),
        };
        let appeal = crate::crypto::Signed {
            body: crate::block::Appeal {
                chain_id: block.header.chain_id,
                participant: sb.body.participant,
                height: block.header.height,
                claim: crate::block::AppealClaim::Omitted {
                    bid: Box::new(sb),
                    receipt,
                },
            },
            signature: crate::crypto::Signature([8; 64]),
        };
        block.body.process.appeals.push(crate::block::AppealRecord {
            appeal,
            via: NodeId(0),
            resolution,
        });
        Message::Decided(Box::new(block))
    };
    let upheld = with_appeal(crate::block::AppealResolution::Upheld { revision: 1 });
    let frame = frame_of(&upheld);
    let batches = frame.places[0].batches.len() as u16;
    assert!(matches!(
        frame.places[0].trades[0],
        Edit::New(TradeEntry::At { at, .. }) if at == BidAt { batch: batches, bid: 0 }
    ));
    assert!(
        frame.places[0]
            .awards
            .iter()
            .all(|a| matches!(a, Edit::New(AwardEntry::At { .. })))
    );
    assert!(
        frame.places[0]
            .trades
            .iter()
            .all(|t| matches!(t, Edit::New(TradeEntry::At { .. })))
    );
    assert_eq!(round_trip(&upheld).unwrap(), upheld);
    let rejected = with_appeal(crate::block::AppealResolution::RejectedOutcomeStands);
    let frame = frame_of(&rejected);
    assert!(matches!(
        frame.places[0].trades[0],
        Edit::New(TradeEntry::Whole(_))
    ));
    assert_eq!(round_trip(&rejected).unwrap(), rejected);
}

/// D25: the frame bound counts each item at its encoded size (each fixed-size item against
/// its encoding, and an empty body's fixed fields under `BODY_FIXED_LEN`).
#[test]
fn the_frame_bound_counts_each_item_at_its_encoded_size() {
    use crate::clearing::{AreaPrice, BusPrice, TieFlow};
    use crate::encoding::encoded_len;
    let product = crate::sample::sample_product(1);
    let at = BidAt { batch: 1, bid: 2 };
    assert_eq!(encoded_len(&at), BID_AT_LEN);
    let award = Edit::New(AwardEntry::At {
        at,
        step: 3,
        quantity: Quantity(4),
    });
    assert_eq!(encoded_len(&award), AWARD_AT_LEN);
    for (counterparty, len) in [
        (None, TRADE_AT_LEN[0]),
        (Some(ParticipantId(5)), TRADE_AT_LEN[1]),
    ] {
        let trade = Edit::New(TradeEntry::At {
            at,
            quantity: Quantity(6),
            price: Price(7),
            counterparty,
        });
        assert_eq!(encoded_len(&trade), len);
    }
    assert_eq!(
        encoded_len(&CutEntry::In {
            objection: 1,
            cut: 2
        }),
        CUT_ENTRY_LEN
    );
    let block = revision_block();
    assert_eq!(
        encoded_len(&BatchRef::to(&block.body.process.batches[0])),
        BATCH_REF_LEN
    );
    let rejection = crate::block::Rejection {
        bid: Digest([1; 32]),
        reason: crate::block::RejectionReason::Invalid,
    };
    assert_eq!(encoded_len(&rejection), REJECTION_LEN);
    assert_eq!(encoded_len(&product), PRODUCT_LEN);
    let row = encoded_len(&AreaPrice {
        product,
        area: crate::units::AreaId(1),
        price: Price(1),
    }) + encoded_len(&BusPrice {
        product,
        bus: crate::units::BusId(1),
        price: Price(1),
    }) + encoded_len(&TieFlow {
        product,
        tie_line: crate::units::TieLineId(1),
        flow: Quantity(1),
    }) + encoded_len(&Price(1));
    assert_eq!(row, OUTCOME_ROW_LEN);
    assert_eq!(encoded_len(&0u32), SEQ_LEN);
    assert_eq!(encoded_len(&Place::of_batches(&[])), PLACE_FIXED_LEN);
    // A body with every list empty: its fixed fields and lengths.
    let mut empty = block.body.clone();
    empty.trades.clear();
    let p = &mut empty.process;
    p.batches.clear();
    p.clearing.outcome = ClearingOutcome::default();
    p.clearing.cuts.clear();
    let mut places = Vec::new();
    let stripped = strip_body(&empty, &mut places);
    assert!(encoded_len(&stripped) + encoded_len(&places[0]) <= BODY_FIXED_LEN);
    // The bound at the limits, printed for the record (spec D25).
    for rule in [ClearingRule::PayAsBid, ClearingRule::ZonalCoupling] {
        println!(
            "{}: {} steps a round, frame bound {} of {} bytes",
            rule.name(),
            rule.max_round_steps(),
            frame_bound(rule),
            MAX_WIRE_LEN
        );
    }
}

/// A committed round's block as the revision-0 proposal of its view.
fn proposal_of(block: &Block, revision: u32) -> Proposal {
    Proposal {
        stamp: crate::crypto::Signed {
            body: crate::block::Vote {
                kind: crate::block::VoteKind::Propose,
                chain_id: block.header.chain_id,
                height: block.header.height,
                view: 0,
                revision,
                block: block.header.digest(),
                voter: NodeId(0),
            },
            signature: crate::crypto::Signature([5; 64]),
        },
        header: block.header.clone(),
        body: Arc::new(block.body.clone()),
        justification: None,
    }
}

/// A cut of `product` whose label is `label`, with a few terms.
fn cut(label: u32) -> crate::clearing::Cut {
    crate::clearing::Cut {
        product: crate::sample::sample_product(1),
        label,
        terms: (0..8)
            .map(|k| crate::clearing::CutTerm {
                variable: crate::clearing::CutVariable::TieFlow(crate::units::TieLineId(k)),
                coefficient: 1_000 + i64::from(k),
            })
            .collect(),
        limit: Quantity(i64::from(label)),
    }
}

/// `objector`'s signed objection to `p` for `reason`.
fn objection(
    p: &Proposal,
    objector: u16,
    reason: ObjectionReason,
) -> crate::crypto::Signed<Objection> {
    crate::crypto::Signed {
        body: Objection {
            chain_id: p.header.chain_id,
            height: p.height(),
            view: 0,
            revision: p.round().revision,
            block: p.header.digest(),
            objector: NodeId(objector),
            reason,
        },
        signature: crate::crypto::Signature([7; 64]),
    }
}

/// `base` revised by `script`: each (kind, index) removes, changes or repeats an award or
/// a trade, and objections and cuts grow, as a revision's do.
fn revised(base: &Proposal, script: &[(u8, usize)]) -> Proposal {
    let mut next = base.clone();
    next.stamp.body.revision += 1;
    next.header.revision += 1;
    let body = Arc::make_mut(&mut next.body);
    let (awards, trades) = (&mut body.process.clearing.outcome.awards, &mut body.trades);
    for &(kind, i) in script {
        match kind % 7 {
            0 if !awards.is_empty() => {
                awards.remove(i % awards.len());
            }
            1 if !awards.is_empty() => {
                let n = awards.len();
                awards[i % n].quantity.0 += 1;
            }
            2 if !awards.is_empty() => {
                let a = awards[i % awards.len()];
                awards.insert(i % awards.len(), a);
            }
            3 if !trades.is_empty() => {
                trades.remove(i % trades.len());
            }
            4 if !trades.is_empty() => {
                let n = trades.len();
                trades[i % n].price.0 -= 1;
            }
            5 => {
                let mut cut =
                    body.process
                        .clearing
                        .cuts
                        .first()
                        .cloned()
                        .unwrap_or(crate::clearing::Cut {
                            product: crate::sample::sample_product(1),
                            label: 0,
                            terms: Vec::new(),
                            limit: Quantity(0),
                        });
                cut.label = 1_000 + i as u32 % 1_000;
                body.process.clearing.cuts.push(cut);
            }
            6 => {
                // A security objection whose second cut the clearing takes.
                let label = 2_000 + 2 * (i as u32 % 1_000);
                let cuts = vec![cut(label), cut(label + 1)];
                let o = objection(base, 1, ObjectionReason::Security { cuts });
                body.process.objections.push(o);
                body.process.clearing.cuts.push(cut(label + 1));
            }
            _ => {}
        }
    }
    next
}

/// A revision travels as edits of the revision before: it resolves against that revision
/// to exactly itself, is refused without it or against another, and is smaller than its
/// whole compact frame when it keeps most of the base.
#[test]
fn a_revision_travels_as_edits_of_the_revision_before() {
    let (_, cluster) = committed(2);
    let block = cluster.nodes[0].store.blocks[0].clone();
    let base = proposal_of(&block, 0);
    let next = revised(&base, &[(1, 0), (5, 3), (4, 1)]);
    let msg = Message::Proposal(Box::new(next.clone()));
    let delta = encode_revision(&msg, &base).expect("a later revision of the view");
    assert!(delta.len() < encode(&msg).len(), "{} bytes", delta.len());
    let held: HashMap<Digest, SignedBatch> = batches_of(&msg)
        .into_iter()
        .map(|b| (digest_of(b), b.clone()))
        .collect();
    let lookup = |r: &BatchRef| held.get(&r.digest).cloned();
    let frame = Frame::from_canonical_bytes(&delta).unwrap();
    assert_eq!(frame.base(), Some(&BaseRef::of(&base)));
    assert_eq!(frame.proposal_round(), Some((block.header.height, 0, 1)));
    assert_eq!(
        frame.clone().resolve_against(lookup, Some(&base)).unwrap(),
        msg
    );
    assert_eq!(
        frame.clone().resolve(lookup),
        Err(ResolveError::MissingBase(BaseRef::of(&base)))
    );
    let other = proposal_of(&cluster.nodes[0].store.blocks[1], 0);
    assert!(matches!(
        frame.resolve_against(lookup, Some(&other)),
        Err(ResolveError::MissingBase(_))
    ));
    // Not a later revision of the base's view: no revision frame.
    assert!(encode_revision(&Message::Proposal(Box::new(base.clone())), &next).is_none());
}

/// The clearing's cuts travel as places in the security objections that carry them; a cut
/// no objection carries travels whole, and a place that names no security cut is refused.
#[test]
fn clearing_cuts_travel_as_places_in_the_objections_that_carry_them() {
    let block = revision_block();
    let mut p = proposal_of(&block, 2);
    let body = Arc::make_mut(&mut p.body);
    let security = ObjectionReason::Security {
        cuts: vec![cut(10), cut(11), cut(12)],
    };
    let missing = ObjectionReason::MissingBatch {
        batch: Digest([3; 32]),
    };
    body.process.objections = vec![
        objection(&proposal_of(&block, 0), 1, missing),
        objection(&proposal_of(&block, 1), 2, security),
    ];
    body.process.clearing.cuts = vec![cut(12), cut(10), cut(99), cut(11)];
    let msg = Message::Proposal(Box::new(p.clone()));
    let bytes = encode(&msg);
    let frame = Frame::from_canonical_bytes(&bytes).unwrap();
    let Message::Proposal(stripped) = &frame.message else {
        panic!("a proposal frame");
    };
    assert_eq!(stripped.body.process.clearing.cuts, vec![cut(99)]);
    assert_eq!(
        frame.places[0].cuts,
        vec![
            CutEntry::In {
                objection: 1,
                cut: 2
            },
            CutEntry::In {
                objection: 1,
                cut: 0
            },
            CutEntry::Carried,
            CutEntry::In {
                objection: 1,
                cut: 1
            },
        ]
    );
    assert_eq!(round_trip(&msg).unwrap(), msg);
    // The three cuts the objection carries are not repeated.
    let whole_cut = {
        let mut out = Vec::new();
        cut(10).encode(&mut out);
        out.len()
    };
    let mut uncut = p.clone();
    Arc::make_mut(&mut uncut.body).process.clearing.cuts = vec![cut(99)];
    let baseline = encode(&Message::Proposal(Box::new(uncut))).len();
    assert!(bytes.len() < baseline + whole_cut, "{} bytes", bytes.len());
    // A place in the missing-batch objection, past the cuts, or a carried cut too many or
    // too few: refused.
    let held: HashMap<Digest, SignedBatch> = batches_of(&msg)
        .into_iter()
        .map(|b| (digest_of(b), b.clone()))
        .collect();
    let place = |objection, cut| CutEntry::In { objection, cut };
    for (at, entry, why) in [
        (
            0,
            Some(place(0, 0)),
            "a cut place names no security objection",
        ),
        (0, Some(place(1, 3)), "a cut place names no cut"),
        (
            4,
            Some(CutEntry::Carried),
            "more carried cuts named than carried",
        ),
        (2, Some(place(1, 0)), "a carried cut no place names"),
        (2, None, "a carried cut no place names"),
    ] {
        let mut bad = frame.clone();
        let cuts = &mut bad.places[0].cuts;
        match entry {
            Some(e) if at < cuts.len() => cuts[at] = e,
            Some(e) => cuts.push(e),
            None => {
                cuts.remove(at);
            }
        }
        assert_eq!(
            bad.resolve(|r| held.get(&r.digest).cloned()),
            Err(ResolveError::Malformed(why)),
            "{why}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any revision of a committed round's proposal (awards and trades removed, changed or
    /// repeated anywhere, cuts added) resolves from its revision frame to itself.
    #[test]
    fn any_revision_resolves_against_its_base_to_itself(
        script in proptest::collection::vec((any::<u8>(), any::<usize>()), 0..24)
    ) {
        let base = proposal_of(&revision_block(), 0);
        let next = revised(&base, &script);
        let msg = Message::Proposal(Box::new(next));
        let held: HashMap<Digest, SignedBatch> = batches_of(&msg)
            .into_iter()
            .map(|b| (digest_of(b), b.clone()))
            .collect();
        let bytes = encode_revision(&msg, &base).unwrap();
        let frame = Frame::from_canonical_bytes(&bytes).unwrap();
        prop_assert_eq!(frame.to_canonical_bytes(), bytes);
        let back = frame.resolve_against(|r| held.get(&r.digest).cloned(), Some(&base));
        prop_assert_eq!(back.unwrap(), msg);
    }

    /// Every message, whatever its contents, resolves from its frame to itself, and a frame
    /// re-encodes to its own bytes (spec D1, D2 for the frame).
    #[test]
    fn any_message_resolves_from_its_frame_to_itself(msg in message()) {
        let bytes = encode(&msg);
        let frame = Frame::from_canonical_bytes(&bytes).unwrap();
        prop_assert_eq!(frame.to_canonical_bytes(), bytes);
        prop_assert_eq!(round_trip(&msg).unwrap(), msg);
    }
}
