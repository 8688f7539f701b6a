//! A deterministic sample consortium and chain, for tests, benchmarks and the demo. Keys come
//! from fixed seeds, so every run builds the same chain; they are public and must never be
//! used outside samples.

use crate::block::{
    BLOCK_VERSION, Block, BlockBody, BlockHeader, QuorumCertificate, SkipCertificate, SkipVote,
    VoteKind, VoteSignature,
};
use crate::clearing::rule_for;
use crate::consensus::content::{BlockPlan, CommittedNonces, ContentRules, advance_nonces};
use crate::crypto::{Digest, Ed25519, Ed25519Signer, Signed, Signer, sha256};
use crate::genesis::{
    Area, ClearingParams, ClearingRule, FaultKind, FaultModel, Genesis, Member, Participant,
    TieLine, Timing,
};
use crate::market::{
    Bid, BidBatch, BidStep, Product, Settlement, Side, SignedBatch, SignedBid, Term,
};
use crate::units::{AreaId, NodeId, ParticipantId, Price, Quantity, TieLineId, Timestamp};

/// A sample consortium: a genesis and every secret key it names.
pub struct SampleConsortium {
    /// The genesis.
    pub genesis: Genesis,
    /// The members' signers, in genesis order.
    pub members: Vec<Ed25519Signer>,
    /// The participants' signers, in genesis order.
    pub participants: Vec<Ed25519Signer>,
}

/// The fixed, public seed of a sample key.
pub fn sample_seed(role: &str, index: usize) -> [u8; 32] {
    sha256(&[
        b"tieline-sample-key/",
        role.as_bytes(),
        &(index as u64).to_be_bytes(),
    ])
    .0
}

/// The sample delivery product of a height: one hour of spot, physical.
pub fn sample_product(height: u64) -> Product {
    Product {
        delivery_start: Timestamp(1_767_225_600_000 + height * 3_600_000),
        delivery_minutes: 60,
        term: Term::Spot,
        settlement: Settlement::Physical,
    }
}

impl SampleConsortium {
    /// `members` management nodes, one area each, joined in a ring of tie lines, with
    /// `participants_per_member` participants at each; byzantine fault model with the largest
    /// f the size allows (crash if fewer than 4 members).
    pub fn new(members: usize, participants_per_member: usize) -> Self {
        assert!((1..=64).contains(&members), "1 to 64 members");
        let member_signers: Vec<_> = (0..members)
            .map(|i| Ed25519Signer::from_seed(sample_seed("member", i)))
            .collect();
        let participant_signers: Vec<_> = (0..members * participants_per_member)
            .map(|i| Ed25519Signer::from_seed(sample_seed("participant", i)))
            .collect();
        let areas = (0..members)
            .map(|i| Area {
                id: AreaId(i as u16 + 1),
                name: format!("Area {}", i + 1),
                eic: None,
            })
            .collect();
        let genesis_members = member_signers
            .iter()
            .enumerate()
            .map(|(i, s)| Member {
                id: NodeId(i as u16 + 1),
                name: format!("Exchange {}", i + 1),
                area: AreaId(i as u16 + 1),
                public_key: s.public_key(),
                address: format!("127.0.0.1:{}", 7100 + i),
                eic: None,
            })
            .collect();
        let participants = participant_signers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let home = i / participants_per_member;
                Participant {
                    id: ParticipantId(1000 + i as u32),
                    name: format!("participant-{}", 1000 + i),
                    home: NodeId(home as u16 + 1),
                    area: AreaId(home as u16 + 1),
                    public_key: s.public_key(),
                    eic: None,
                }
            })
            .collect();
        let tie_lines = if members < 2 {
            vec![]
        } else {
            (0..members)
                .filter(|&i| members > 2 || i == 0)
                .map(|i| TieLine {
                    id: TieLineId(i as u16 + 1),
                    from: AreaId(i as u16 + 1),
                    to: AreaId(((i + 1) % members) as u16 + 1),
                    capacity_forward: Quantity::parse("500").expect("constant"),
                    capacity_backward: Quantity::parse("500").expect("constant"),
                    from_bus: None,
                    to_bus: None,
                })
                .collect()
        };
        let fault_model = if members >= 4 {
            FaultModel {
                kind: FaultKind::Byzantine,
                f: ((members - 1) / 3) as u16,
            }
        } else {
            FaultModel {
                kind: FaultKind::Crash,
                f: ((members - 1) / 2) as u16,
            }
        };
        let genesis = Genesis {
            chain_name: "tieline-sample".into(),
            areas,
            members: genesis_members,
            participants,
            tie_lines,
            fault_model,
            rotation_period: 1,
            timing: Timing {
                gate_ms: 1_000,
                batch_wait_ms: 500,
                view_timeout_ms: 2_000,
                schedule: None,
            },
            max_revisions: 4,
            clearing: ClearingParams {
                rule: ClearingRule::UniformPrice,
                price_tick: Price::parse("0.01").expect("constant"),
                price_floor: Price::parse("-500").expect("constant"),
                price_cap: Price::parse("3000").expect("constant"),
            },
        };
        genesis.validate().expect("the sample genesis is valid");
        Self {
            genesis,
            members: member_signers,
            participants: participant_signers,
        }
    }

    /// A signed sample bid by participant `index` (genesis order) for `height`: even
    /// participants sell, odd ones buy, at prices that cross.
    pub fn bid(&self, index: usize, height: u64, nonce: u64) -> SignedBid {
        let side = if index % 2 == 0 {
            Side::Sell
        } else {
            Side::Buy
        };
        let base = 40 + (index % 17) as i64;
        let price = match side {
            Side::Sell => base,
            Side::Buy => base + 20,
        };
        let step = BidStep {
            price: Price(price * Price::SCALE),
            quantity: Quantity((10 + (index % 7) as i64) * Quantity::SCALE),
        };
        self.bid_with(index, side, vec![step], height, nonce)
    }

    /// A signed bid by participant `index` with the given side and steps, for the sample
    /// product of `height`.
    pub fn bid_with(
        &self,
        index: usize,
        side: Side,
        steps: Vec<BidStep>,
        height: u64,
        nonce: u64,
    ) -> SignedBid {
        let timestamp = Timestamp(1_767_225_000_000 + height * 60_000 + nonce % 60_000);
        self.bid_for(index, side, steps, sample_product(height), nonce, timestamp)
    }

    /// A signed bid by participant `index` for any product, made at `timestamp`.
    pub fn bid_for(
        &self,
        index: usize,
        side: Side,
        steps: Vec<BidStep>,
        product: Product,
        nonce: u64,
        timestamp: Timestamp,
    ) -> SignedBid {
        let p = &self.genesis.participants[index];
        let bid = Bid {
            chain_id: self.genesis.chain_id(),
            participant: p.id,
            area: p.area,
            bus: None,
            side,
            product,
            steps,
            nonce,
            timestamp,
        };
        Signed::sign(bid, &self.participants[index])
    }

    /// A chain of `blocks` blocks with `bids_per_block` bids each, spread over the members'
    /// batches, cleared by the genesis's rule exactly as a primary does, every block committed
    /// by all members in view 0.
    pub fn chain(&self, blocks: usize, bids_per_block: usize) -> Vec<Block> {
        let chain_id = self.genesis.chain_id();
        let mut committed = CommittedNonces::new();
        let mut out: Vec<Block> = Vec::with_capacity(blocks);
        let mut previous = chain_id;
        for b in 0..blocks {
            let height = b as u64 + 1;
            let mut per_member: Vec<Vec<SignedBid>> = vec![Vec::new(); self.members.len()];
            for i in 0..bids_per_block {
                let who = i % self.participants.len();
                let home = who * self.members.len() / self.participants.len();
                per_member[home].push(self.bid(who, height, (height << 32) + i as u64));
            }
            let batches = per_member
                .into_iter()
                .enumerate()
                .map(|(m, bids)| self.batch(m, height, bids))
                .collect();
            let body = self.body(
                BlockPlan {
                    height,
                    batches,
                    ..BlockPlan::default()
                },
                &committed,
                false,
            );
            let header = BlockHeader {
                version: BLOCK_VERSION,
                chain_id,
                height,
                view: 0,
                revision: 0,
                previous,
                trades_root: Digest::ZERO,
                process_hash: Digest::ZERO,
                timestamp: Timestamp(1_767_225_000_000 + height * 60_000),
                primary: self.genesis.primary(height, 0),
            };
            let all: Vec<usize> = (0..self.members.len()).collect();
            let block = self.seal(header, body, &all);
            advance_nonces(&mut committed, &block.body);
            previous = block.digest();
            out.push(block);
        }
        out
    }

    /// Member `m`'s signed batch of `bids` for `height`. The sample's home node receives
    /// each bid when it was made, or with the bid before it if that was made later.
    pub fn batch(&self, m: usize, height: u64, bids: Vec<SignedBid>) -> SignedBatch {
        let received = bids
            .iter()
            .scan(Timestamp(0), |t, b| {
                *t = (*t).max(b.body.timestamp);
                Some(*t)
            })
            .collect();
        let batch = BidBatch {
            chain_id: self.genesis.chain_id(),
            height,
            home: self.genesis.members[m].id,
            bids,
            received,
            changes: Vec::new(),
        };
        Signed::sign(batch, &self.members[m])
    }

    /// The body a primary builds for `plan`, given the nonces committed before it. With
    /// `check_signatures` false, bid signatures are taken as valid (the sample's own bids, when
    /// building large benchmark chains).
    pub fn body(
        &self,
        plan: BlockPlan,
        committed: &CommittedNonces,
        check_signatures: bool,
    ) -> BlockBody {
        let scheme = Ed25519::with_known_keys(self.genesis.public_keys());
        let rules = ContentRules {
            genesis: &self.genesis,
            chain_id: self.genesis.chain_id(),
            scheme: &scheme,
            clearing: rule_for(self.genesis.clearing.rule),
            committed,
        };
        rules
            .build_body(
                plan,
                &mut |sb: &SignedBid, key: &crate::crypto::PublicKey| {
                    !check_signatures || sb.verify(&scheme, key).is_ok()
                },
            )
            .expect("the sample market clears")
    }

    /// Completes a block: fills the header's Merkle root and process digest from `body` and
    /// certifies it with commit votes of the members at `signers` (genesis positions) in the
    /// header's own round.
    pub fn seal(&self, mut header: BlockHeader, body: BlockBody, signers: &[usize]) -> Block {
        header.trades_root = body.trades_root();
        header.process_hash = body.process_hash();
        let certificate = self.certify(
            VoteKind::Commit,
            &header,
            (header.view, header.revision),
            signers,
        );
        Block {
            header,
            body,
            certificate,
        }
    }

    /// A certificate of `kind` for `header` in `round` (view, revision), signed by the members
    /// at `signers`.
    pub fn certify(
        &self,
        kind: VoteKind,
        header: &BlockHeader,
        round: (u32, u32),
        signers: &[usize],
    ) -> QuorumCertificate {
        let mut qc = QuorumCertificate {
            kind,
            height: header.height,
            view: round.0,
            revision: round.1,
            block: header.digest(),
            signatures: vec![],
        };
        let chain_id = self.genesis.chain_id();
        qc.signatures = signers
            .iter()
            .map(|&i| {
                let voter = self.genesis.members[i].id;
                let vote = qc.vote_of(chain_id, voter);
                VoteSignature {
                    voter,
                    signature: Signed::sign(vote, &self.members[i]).signature,
                }
            })
            .collect();
        qc
    }

    /// A skip certificate for (height, view) with votes of the members at `voters`, none
    /// locked, none reporting a batch.
    pub fn skip_certificate(&self, height: u64, view: u32, voters: &[usize]) -> SkipCertificate {
        let chain_id = self.genesis.chain_id();
        SkipCertificate {
            height,
            view,
            votes: voters
                .iter()
                .map(|&i| {
                    let vote = SkipVote {
                        chain_id,
                        height,
                        view,
                        voter: self.genesis.members[i].id,
                        lock: None,
                        held: Vec::new(),
                    };
                    Signed::sign(vote, &self.members[i])
                })
                .collect(),
        }
    }
}
