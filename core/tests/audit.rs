//! The chain audit against generated and tampered chains (spec D15-D22).

use std::sync::OnceLock;

use proptest::prelude::*;
use tieline_core::audit::{AuditFailure, audit_chain, audit_encoded};
use tieline_core::block::{Block, BlockHeader, CertificateError, RejectionReason, VoteSignature};
use tieline_core::consensus::content::{BlockPlan, CommittedNonces, advance_nonces};
use tieline_core::crypto::{Ed25519, Ed25519Signer, Signed};
use tieline_core::encoding::Tagged;
use tieline_core::merkle;
use tieline_core::sample::SampleConsortium;
use tieline_core::units::{AreaId, NodeId};

fn scheme(s: &SampleConsortium) -> Ed25519 {
    Ed25519::with_known_keys(s.genesis.public_keys())
}

struct Fixture {
    consortium: SampleConsortium,
    chain: Vec<Block>,
    encoded: Vec<Vec<u8>>,
}

fn small() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let consortium = SampleConsortium::new(4, 2);
        let chain = consortium.chain(5, 6);
        let encoded = chain.iter().map(Tagged::to_canonical_bytes).collect();
        Fixture {
            consortium,
            chain,
            encoded,
        }
    })
}

/// Re-seals `chain[i..]` after an edit so that only the rule under test is broken.
fn reseal_from(s: &SampleConsortium, chain: &mut [Block], i: usize, signers: &[usize]) {
    for k in i..chain.len() {
        if k > 0 {
            chain[k].header.previous = chain[k - 1].digest();
        }
        let b = chain[k].clone();
        chain[k] = s.seal(b.header, b.body, signers);
    }
}

const ALL: [usize; 4] = [0, 1, 2, 3];

#[test]
fn generated_chain_of_100_blocks_audits_clean() {
    let s = SampleConsortium::new(4, 8);
    let chain = s.chain(100, 16);
    let summary = audit_chain(&s.genesis, &scheme(&s), &chain).unwrap();
    assert_eq!(summary.blocks, 100);
    assert_eq!(summary.trades, 1600);
    assert_eq!(summary.bids, 1600);
    assert_eq!(summary.head, chain[99].digest());
    // 16 bids + 4 batches + 4 commit votes per block.
    assert_eq!(summary.signatures, 100 * (16 + 4 + 4));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// D15-D18: any single changed byte of any encoded block fails the audit at that block.
    #[test]
    fn flipping_any_byte_fails_the_audit_at_that_block(
        which in 0usize..5, pos in any::<prop::sample::Index>(), xor in 1u8..=255
    ) {
        let f = small();
        let mut encoded = f.encoded.clone();
        let i = pos.index(encoded[which].len());
        encoded[which][i] ^= xor;
        let err = audit_encoded(&f.consortium.genesis, &scheme(&f.consortium), &encoded).unwrap_err();
        prop_assert_eq!(err.height, which as u64 + 1, "byte {} of block {}: {}", i, which + 1, err);
    }
}

#[test]
fn dropped_reordered_and_duplicated_blocks_are_caught() {
    let f = small();
    let s = &f.consortium;
    let g = &s.genesis;
    let sc = scheme(s);

    let mut dropped = f.chain.clone();
    dropped.remove(2);
    let err = audit_chain(g, &sc, &dropped).unwrap_err();
    assert_eq!(err.height, 3);
    assert!(matches!(
        err.reason,
        AuditFailure::WrongHeight {
            expected: 3,
            found: 4
        }
    ));

    let mut reordered = f.chain.clone();
    reordered.swap(1, 3);
    let err = audit_chain(g, &sc, &reordered).unwrap_err();
    assert_eq!(err.height, 2);
    assert!(matches!(
        err.reason,
        AuditFailure::WrongHeight {
            expected: 2,
            found: 4
        }
    ));

    let mut duplicated = f.chain.clone();
    duplicated.insert(2, f.chain[1].clone());
    let err = audit_chain(g, &sc, &duplicated).unwrap_err();
    assert_eq!(err.height, 3);
    assert!(matches!(
        err.reason,
        AuditFailure::WrongHeight {
            expected: 3,
            found: 2
        }
    ));

    // A block re-sealed at the right height but linking to a forged predecessor.
    let mut relinked = f.chain.clone();
    relinked[3].header.previous = relinked[1].digest();
    let b = relinked[3].clone();
    relinked[3] = s.seal(b.header, b.body, &ALL);
    let err = audit_chain(g, &sc, &relinked).unwrap_err();
    assert_eq!(err.height, 4);
    assert!(matches!(err.reason, AuditFailure::BrokenLink { .. }));
}

fn certificate_error(chain: &[Block], s: &SampleConsortium) -> (u64, CertificateError) {
    let err = audit_chain(&s.genesis, &scheme(s), chain).unwrap_err();
    match err.reason {
        AuditFailure::Certificate(c) => (err.height, c),
        other => panic!("expected a certificate failure, got {other}"),
    }
}

#[test]
fn certificate_with_too_few_signers_is_caught() {
    let f = small();
    let mut chain = f.chain.clone();
    chain[1].certificate.signatures.truncate(2);
    assert_eq!(
        certificate_error(&chain, &f.consortium),
        (2, CertificateError::TooFewSigners { have: 2, need: 3 })
    );
}

#[test]
fn certificate_with_a_repeated_signer_is_caught() {
    let f = small();
    let mut chain = f.chain.clone();
    let sigs = &mut chain[2].certificate.signatures;
    sigs[3] = sigs[0];
    assert_eq!(
        certificate_error(&chain, &f.consortium),
        (3, CertificateError::RepeatedSigner(NodeId(1)))
    );
}

#[test]
fn certificate_with_a_foreign_signer_is_caught() {
    let f = small();
    let mut chain = f.chain.clone();
    let outsider = Ed25519Signer::from_seed([9; 32]);
    let vote = chain[0]
        .certificate
        .vote_of(f.consortium.genesis.chain_id(), NodeId(77));
    chain[0].certificate.signatures[3] = VoteSignature {
        voter: NodeId(77),
        signature: Signed::sign(vote, &outsider).signature,
    };
    assert_eq!(
        certificate_error(&chain, &f.consortium),
        (1, CertificateError::ForeignSigner(NodeId(77)))
    );
    // A member's id with an outsider's signature.
    let mut chain = f.chain.clone();
    let vote = chain[0]
        .certificate
        .vote_of(f.consortium.genesis.chain_id(), NodeId(4));
    chain[0].certificate.signatures[3].signature = Signed::sign(vote, &outsider).signature;
    assert_eq!(
        certificate_error(&chain, &f.consortium),
        (1, CertificateError::BadSignature(NodeId(4)))
    );
}

/// The nonces committed by `chain[..upto]`.
fn committed_before(chain: &[Block], upto: usize) -> CommittedNonces {
    let mut committed = CommittedNonces::new();
    for b in &chain[..upto] {
        advance_nonces(&mut committed, &b.body);
    }
    committed
}

#[test]
fn certificate_without_a_touched_areas_signature_is_caught() {
    let f = small();
    let s = &f.consortium;
    let mut chain = f.chain.clone();
    // Block 2 clears only area 1's batch, and members 2, 3 and 4 (a quorum) certify it.
    let plan = BlockPlan {
        height: 2,
        batches: vec![chain[1].body.process.batches[0].clone()],
        ..BlockPlan::default()
    };
    chain[1].body = s.body(plan, &committed_before(&chain, 1), true);
    assert!(chain[1].body.trades.iter().all(|t| t.area == AreaId(1)));
    reseal_from(s, &mut chain, 1, &[1, 2, 3]);
    assert_eq!(
        certificate_error(&chain, s),
        (
            2,
            CertificateError::MissingJointSignature {
                node: NodeId(1),
                area: AreaId(1)
            }
        )
    );
    // With member 1 among the signers, the same block is fine.
    reseal_from(s, &mut chain, 1, &[0, 1, 2]);
    audit_chain(&s.genesis, &scheme(s), &chain).unwrap();
}

#[test]
fn wrong_primary_for_the_rotation_is_caught() {
    let f = small();
    let s = &f.consortium;
    let mut chain = f.chain.clone();
    chain[2].header.primary = NodeId(1);
    reseal_from(s, &mut chain, 2, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert_eq!(err.height, 3);
    assert_eq!(
        err.reason,
        AuditFailure::WrongPrimary {
            expected: s.genesis.primary(3, 0),
            found: NodeId(1)
        }
    );
}

#[test]
fn a_view_above_zero_needs_a_valid_skip_certificate() {
    let f = small();
    let s = &f.consortium;
    let g = &s.genesis;
    let mut chain = f.chain.clone();
    // Block 3 proposed in view 1 by the next primary after members 2, 3 and 4 skipped view 0;
    // area 1 sat the view out (its member is not in the certificate).
    let plan = BlockPlan {
        height: 3,
        view: 1,
        batches: chain[2].body.process.batches.clone(),
        skip_certificate: Some(s.skip_certificate(3, 0, &[1, 2, 3])),
        ..BlockPlan::default()
    };
    chain[2].body = s.body(plan, &committed_before(&chain, 2), true);
    chain[2].header.view = 1;
    chain[2].header.primary = g.primary(3, 1);
    reseal_from(s, &mut chain, 2, &ALL);
    let summary = audit_chain(g, &scheme(s), &chain).unwrap();
    assert_eq!(summary.fault_skips, 1);
    let rejected = &chain[2].body.process.rejections;
    assert!(!rejected.is_empty());
    assert!(
        rejected
            .iter()
            .all(|r| r.reason == RejectionReason::AreaUnavailable)
    );
    let good = chain.clone();

    // Without the certificate.
    chain[2].body.process.skip_certificate = None;
    reseal_from(s, &mut chain, 2, &ALL);
    let err = audit_chain(g, &scheme(s), &chain).unwrap_err();
    assert_eq!(
        (err.height, err.reason),
        (3, AuditFailure::MissingSkipCertificate(1))
    );

    // Too few skip votes.
    let mut chain = good.clone();
    chain[2].body.process.skip_certificate = Some(s.skip_certificate(3, 0, &[1, 2]));
    reseal_from(s, &mut chain, 2, &ALL);
    let err = audit_chain(g, &scheme(s), &chain).unwrap_err();
    assert_eq!(
        (err.height, err.reason),
        (
            3,
            AuditFailure::SkipCertificate(CertificateError::TooFewSigners { have: 2, need: 3 })
        )
    );

    // Skipped primaries not as the rotation gives.
    let mut chain = good;
    chain[2].body.process.skipped = vec![];
    reseal_from(s, &mut chain, 2, &ALL);
    let err = audit_chain(g, &scheme(s), &chain).unwrap_err();
    assert!(matches!(err.reason, AuditFailure::SkippedPrimaries { .. }));
}

#[test]
fn a_forged_bid_inside_a_signed_batch_is_caught() {
    let f = small();
    let s = &f.consortium;
    let mut chain = f.chain.clone();
    // The home node re-signs its batch with a bid whose quantity it changed: the participant's
    // signature no longer verifies.
    let batch = &mut chain[0].body.process.batches[0];
    batch.body.bids[0].body.steps[0].quantity.0 += 1;
    *batch = Signed::sign(batch.body.clone(), &s.members[0]);
    reseal_from(s, &mut chain, 0, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert_eq!(err.height, 1);
    assert!(
        matches!(
            err.reason,
            AuditFailure::Bid {
                batch: 0,
                index: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn participant_verifies_a_trade_against_a_certified_header() {
    let f = small();
    let block = &f.chain[1];
    let leaves = block.body.trade_leaves();
    for (i, trade) in block.body.trades.iter().enumerate() {
        let proof = merkle::prove(&leaves, i).unwrap();
        assert!(proof.verify(&merkle::leaf_hash_of(trade), &block.header.trades_root));
    }
    // The header the participant trusts is the one the commit certificate signs.
    let header: &BlockHeader = &block.header;
    assert_eq!(block.certificate.block, header.digest());
    let other = &f.chain[2].body.trades[0];
    let proof = merkle::prove(&leaves, 0).unwrap();
    assert!(!proof.verify(&merkle::leaf_hash_of(other), &block.header.trades_root));
}

#[test]
fn a_batch_not_signed_by_its_home_node_is_caught() {
    let f = small();
    let s = &f.consortium;
    let mut chain = f.chain.clone();
    // Member 2 signs a batch that claims to be member 1's.
    let batch = &mut chain[0].body.process.batches[0];
    *batch = Signed::sign(batch.body.clone(), &s.members[1]);
    reseal_from(s, &mut chain, 0, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert_eq!(err.height, 1);
    assert!(
        matches!(err.reason, AuditFailure::Batch { index: 0, .. }),
        "{err}"
    );
    // Two batches from one home node.
    let mut chain = f.chain.clone();
    let copy = chain[0].body.process.batches[0].clone();
    chain[0].body.process.batches[1] = copy;
    reseal_from(s, &mut chain, 0, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert!(err.to_string().contains("a second batch"), "{err}");
}

#[test]
fn a_trade_that_no_bid_in_the_block_backs_is_caught() {
    let f = small();
    let s = &f.consortium;
    let mut chain = f.chain.clone();
    // A trade for a bid of another block.
    let foreign = f.chain[2].body.trades[0].clone();
    chain[1].body.trades.push(foreign);
    reseal_from(s, &mut chain, 1, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert_eq!(err.height, 2);
    assert!(
        matches!(err.reason, AuditFailure::Trade { index: 6, .. }),
        "{err}"
    );
    // A trade whose side differs from its bid's.
    let mut chain = f.chain.clone();
    let t = &mut chain[1].body.trades[0];
    t.side = match t.side {
        tieline_core::market::Side::Buy => tieline_core::market::Side::Sell,
        tieline_core::market::Side::Sell => tieline_core::market::Side::Buy,
    };
    reseal_from(s, &mut chain, 1, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert!(
        matches!(err.reason, AuditFailure::Trade { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn equivocation_evidence_verifies_and_forged_evidence_is_caught() {
    use tieline_core::block::{Evidence, Vote, VoteKind};
    let f = small();
    let s = &f.consortium;
    let g = &s.genesis;
    let vote = |block| Vote {
        kind: VoteKind::Endorse,
        chain_id: g.chain_id(),
        height: 2,
        view: 0,
        revision: 0,
        block,
        voter: NodeId(3),
    };
    let a = Signed::sign(vote(f.chain[0].digest()), &s.members[2]);
    let b = Signed::sign(vote(f.chain[1].digest()), &s.members[2]);
    let good = Evidence {
        first: a.clone(),
        second: b.clone(),
    };
    assert!(good.verify(g, &scheme(s)));
    assert_eq!(good.offender(), NodeId(3));
    // The same vote twice is no equivocation; a vote signed by someone else is no evidence.
    assert!(
        !Evidence {
            first: a.clone(),
            second: a.clone()
        }
        .verify(g, &scheme(s))
    );
    let forged = Signed::sign(vote(f.chain[1].digest()), &s.members[0]);
    assert!(
        !Evidence {
            first: a,
            second: forged.clone()
        }
        .verify(g, &scheme(s))
    );

    // In a block, bad evidence fails the audit; good evidence passes.
    let mut chain = f.chain.clone();
    chain[1].body.process.evidence = vec![good];
    reseal_from(s, &mut chain, 1, &ALL);
    audit_chain(g, &scheme(s), &chain).unwrap();
    chain[1].body.process.evidence[0].second = forged;
    reseal_from(s, &mut chain, 1, &ALL);
    let err = audit_chain(g, &scheme(s), &chain).unwrap_err();
    assert!(err.to_string().contains("evidence 0"), "{err}");
}

/// D25: a batch with more bid steps than its home node's share of the round, and objections
/// over the negotiation's bytes, are caught: either would make a proposal no frame can carry.
#[test]
fn a_batch_over_its_share_of_the_round_and_objections_over_the_negotiation_bytes_are_caught() {
    use tieline_core::block::{MAX_NEGOTIATION_BYTES, Objection, ObjectionReason};
    use tieline_core::clearing::{Cut, CutTerm, CutVariable};
    use tieline_core::crypto::Digest;
    use tieline_core::market::{BidStep, MAX_BID_STEPS};
    use tieline_core::units::{Price, Quantity};
    let f = small();
    let s = &f.consortium;
    let share = s.genesis.batch_steps();
    // Bids of the largest size, one step more than the share in all.
    let mut chain = f.chain.clone();
    let batch = &mut chain[0].body.process.batches[0];
    let home = s
        .genesis
        .members
        .iter()
        .position(|m| m.id == batch.body.home)
        .unwrap();
    let mut big = batch.body.bids[0].clone();
    big.body.steps = (0..MAX_BID_STEPS as i64)
        .map(|k| BidStep {
            price: Price((40 + k) * Price::SCALE),
            quantity: Quantity(Quantity::SCALE),
        })
        .collect();
    let mut body = batch.body.clone();
    let count = share / MAX_BID_STEPS + 1;
    body.bids = vec![big; count];
    body.received = vec![body.received[0]; count];
    assert!(body.steps() > share);
    *batch = Signed::sign(body, &s.members[home]);
    reseal_from(s, &mut chain, 0, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert!(
        matches!(&err.reason, AuditFailure::Batch { index: 0, reason } if reason.contains("over a home node's share")),
        "{err}"
    );
    // One objection whose cuts take more than the negotiation's bytes.
    let mut chain = f.chain.clone();
    let block = &chain[0];
    let term = CutTerm {
        variable: CutVariable::Bid(Digest([1; 32])),
        coefficient: 1,
    };
    let cut = Cut {
        product: block.body.trades[0].product,
        label: 0,
        terms: vec![term; MAX_NEGOTIATION_BYTES / 41 / 2 + 1],
        limit: Quantity(0),
    };
    let objection = Signed::sign(
        Objection {
            chain_id: block.header.chain_id,
            height: block.header.height,
            view: 0,
            revision: 0,
            block: block.header.digest(),
            objector: s.genesis.members[1].id,
            reason: ObjectionReason::Security {
                cuts: vec![cut.clone(), cut],
            },
        },
        &s.members[1],
    );
    chain[0].body.process.objections = vec![objection];
    reseal_from(s, &mut chain, 0, &ALL);
    let err = audit_chain(&s.genesis, &scheme(s), &chain).unwrap_err();
    assert!(
        err.to_string().contains("over MAX_NEGOTIATION_BYTES"),
        "{err}"
    );
}
