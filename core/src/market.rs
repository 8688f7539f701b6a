//! What participants trade: products, bids, receipts, batches and trades (spec D7).

use crate::crypto::{Digest, Signed};
use crate::genesis::Genesis;
use crate::registry::{MAX_BATCH_CHANGES, SignedChange};
use crate::units::{AreaId, BusId, NodeId, ParticipantId, Price, Quantity, Timestamp};

/// Most price-quantity steps in one bid.
pub const MAX_BID_STEPS: usize = 32;
/// Most bids in one home node's batch for one height: a full batch of the largest bids, signed,
/// fits one frame (asserted with the other message limits in [`crate::consensus::wire`]). A
/// home node refuses further bids for the height with [`BidError::BatchFull`].
pub const MAX_BATCH_BIDS: usize = 90_000;

/// Whether a bid buys or sells energy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Buys energy (a retailer, a large consumer).
    Buy,
    /// Sells energy (a generator).
    Sell,
}
crate::canonical_enum!(Side { Buy = 0, Sell = 1 });

/// The horizon of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    /// Medium- or long-term contracts.
    MediumLongTerm,
    /// Day-ahead or real-time spot.
    Spot,
}
crate::canonical_enum!(Term {
    MediumLongTerm = 0,
    Spot = 1
});

/// Whether a product delivers energy or settles money only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Settlement {
    /// Energy flows across the grid; security checks apply.
    Physical,
    /// A financial contract; settles money only.
    Financial,
}
crate::canonical_enum!(Settlement {
    Physical = 0,
    Financial = 1
});

/// A tradable product: a delivery period, a term and a settlement kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Product {
    /// When delivery starts.
    pub delivery_start: Timestamp,
    /// How long delivery lasts, in minutes.
    pub delivery_minutes: u32,
    /// Medium/long-term or spot.
    pub term: Term,
    /// Physical or financial.
    pub settlement: Settlement,
}
crate::canonical_struct!(Product {
    delivery_start,
    delivery_minutes,
    term,
    settlement
});

/// One step of a bid curve: up to `quantity` at no worse than `price`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BidStep {
    /// The limit price: the most a buyer pays, the least a seller takes.
    pub price: Price,
    /// The energy offered or wanted at that price.
    pub quantity: Quantity,
}
crate::canonical_struct!(BidStep { price, quantity });

/// A participant's bid, signed by the participant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bid {
    /// The chain this bid is for; stops replay into another consortium.
    pub chain_id: Digest,
    /// Who bids.
    pub participant: ParticipantId,
    /// The area the energy is delivered in or taken from.
    pub area: AreaId,
    /// The bus, where the area's grid model needs it.
    pub bus: Option<BusId>,
    /// Buy or sell.
    pub side: Side,
    /// What is traded.
    pub product: Product,
    /// The bid curve: prices falling for a buyer, rising for a seller.
    pub steps: Vec<BidStep>,
    /// Distinguishes otherwise equal bids; a (participant, nonce) pair is used once.
    pub nonce: u64,
    /// When the participant made the bid (its own clock).
    pub timestamp: Timestamp,
}
crate::canonical_struct!(Bid {
    chain_id,
    participant,
    area,
    bus,
    side,
    product,
    steps: seq(MAX_BID_STEPS),
    nonce,
    timestamp,
});
crate::tagged!(Bid, 0x0101, "bid", 128 + 16 * MAX_BID_STEPS);

/// A bid with its participant's signature.
pub type SignedBid = Signed<Bid>;

/// Why a bid is refused.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum BidError {
    /// The bid names another chain.
    #[error("the bid is for chain {found:?}, not this consortium's {expected:?}")]
    WrongChain {
        /// This chain's id.
        expected: Digest,
        /// The bid's.
        found: Digest,
    },
    /// The participant was not admitted.
    #[error("participant {0} is not admitted to this consortium")]
    UnknownParticipant(ParticipantId),
    /// The participant was revoked (spec A2).
    #[error("participant {participant} was revoked from height {height} and can no longer bid")]
    Revoked {
        /// The participant.
        participant: ParticipantId,
        /// The first height at which it was revoked.
        height: u64,
    },
    /// The bid is for another area than the participant's.
    #[error("participant {participant} trades in area {registered}, the bid names area {found}")]
    WrongArea {
        /// The participant.
        participant: ParticipantId,
        /// Its admitted area.
        registered: AreaId,
        /// The bid's area.
        found: AreaId,
    },
    /// The participant is not attached to this node.
    #[error("participant {participant}'s home node is {home}, not {this}")]
    WrongHome {
        /// The participant.
        participant: ParticipantId,
        /// Its home node.
        home: NodeId,
        /// The node that received it.
        this: NodeId,
    },
    /// The bid has no steps.
    #[error("the bid has no price-quantity steps")]
    NoSteps,
    /// A step is invalid.
    #[error("step {step}: {reason}")]
    BadStep {
        /// The step's index.
        step: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature does not verify under the participant's key.
    #[error("the signature does not verify under participant {0}'s key")]
    BadSignature(ParticipantId),
    /// The (participant, nonce) pair was used before.
    #[error("participant {participant} already used nonce {nonce}")]
    ReplayedNonce {
        /// The participant.
        participant: ParticipantId,
        /// The nonce.
        nonce: u64,
    },
    /// The delivery period is empty.
    #[error("the delivery period has zero length")]
    EmptyDelivery,
    /// The home node's batch for the height is full: it holds [`MAX_BATCH_BIDS`] bids, or
    /// the bid's steps would take it past the home node's share of the round
    /// (`Genesis::batch_steps`, spec D25).
    #[error("the batch for height {height} is full; try again after it closes")]
    BatchFull {
        /// The height whose batch is full.
        height: u64,
    },
    /// The consortium's gate schedule opens no such delivery period (spec D24).
    #[error("the delivery period is not one the gate schedule opens: {reason}")]
    OffSchedule {
        /// Why not.
        reason: String,
    },
    /// The gate of the auction that clears the bid's delivery period has closed (spec N4).
    #[error(
        "the gate for this delivery period (height {height}) closed at {gate} ms since the epoch"
    )]
    GateClosed {
        /// The height that clears the period.
        height: u64,
        /// When its gate closed.
        gate: Timestamp,
    },
    /// The bid's auction is further ahead than a home node holds bids (spec N4).
    #[error(
        "the delivery period is cleared at height {height}; bids are taken for at most {ahead} heights after the open one, {open}"
    )]
    TooFarAhead {
        /// The height that clears the period.
        height: u64,
        /// The open height.
        open: u64,
        /// How far ahead bids are taken.
        ahead: u64,
    },
}

impl Bid {
    /// The bid's identity: the digest of its body.
    pub fn id(&self) -> Digest {
        crate::crypto::digest_of(self)
    }

    /// The bid's total quantity over all steps.
    pub fn total_quantity(&self) -> Quantity {
        self.steps.iter().map(|s| s.quantity).sum()
    }

    /// Checks the bid against the consortium's rules (not its signature; spec D7), its
    /// delivery period against the gate schedule included (D24).
    pub fn check(&self, genesis: &Genesis, chain_id: &Digest) -> Result<(), BidError> {
        self.check_rules(genesis, chain_id)?;
        self.scheduled_height(genesis).map(|_| ())
    }

    /// The height whose round clears the bid's delivery period under the genesis's gate
    /// schedule (spec D24), `None` without a schedule, or why the schedule opens no such
    /// period.
    pub fn scheduled_height(&self, genesis: &Genesis) -> Result<Option<u64>, BidError> {
        genesis
            .timing
            .schedule
            .as_ref()
            .map(|s| {
                s.height_of(self.product.delivery_start, self.product.delivery_minutes)
                    .map_err(|e| BidError::OffSchedule {
                        reason: e.to_string(),
                    })
            })
            .transpose()
    }

    /// [`Bid::check`] but for the gate schedule: for a caller that places the period itself
    /// (the block rules do, once per round, spec N4).
    pub fn check_rules(&self, genesis: &Genesis, chain_id: &Digest) -> Result<(), BidError> {
        if self.chain_id != *chain_id {
            return Err(BidError::WrongChain {
                expected: *chain_id,
                found: self.chain_id,
            });
        }
        let p = genesis
            .participant(self.participant)
            .ok_or(BidError::UnknownParticipant(self.participant))?;
        if p.area != self.area {
            return Err(BidError::WrongArea {
                participant: p.id,
                registered: p.area,
                found: self.area,
            });
        }
        if self.product.delivery_minutes == 0 {
            return Err(BidError::EmptyDelivery);
        }
        if self.steps.is_empty() {
            return Err(BidError::NoSteps);
        }
        let c = &genesis.clearing;
        for (i, s) in self.steps.iter().enumerate() {
            let bad = |reason: String| BidError::BadStep { step: i, reason };
            if s.quantity <= Quantity::ZERO {
                return Err(bad(format!("quantity {} is not positive", s.quantity)));
            }
            if s.price < c.price_floor || s.price > c.price_cap {
                return Err(bad(format!(
                    "price {} is outside [{}, {}]",
                    s.price, c.price_floor, c.price_cap
                )));
            }
            if s.price.0 % c.price_tick.0 != 0 {
                return Err(bad(format!(
                    "price {} is not a multiple of the tick {}",
                    s.price, c.price_tick
                )));
            }
            if i > 0 {
                let prev = self.steps[i - 1].price;
                let ordered = match self.side {
                    Side::Buy => s.price < prev,
                    Side::Sell => s.price > prev,
                };
                if !ordered {
                    return Err(bad(match self.side {
                        Side::Buy => "a buyer's step prices must strictly fall".into(),
                        Side::Sell => "a seller's step prices must strictly rise".into(),
                    }));
                }
            }
        }
        Ok(())
    }
}

/// A home node's receipt for a bid: proof that it accepted the bid for a height.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BidReceipt {
    /// The chain.
    pub chain_id: Digest,
    /// The bid's id.
    pub bid: Digest,
    /// The bidder.
    pub participant: ParticipantId,
    /// The home node that accepted it.
    pub home: NodeId,
    /// The height (trading round) whose batch carries the bid.
    pub height: u64,
    /// When the home node accepted it.
    pub received_at: Timestamp,
}
crate::canonical_struct!(BidReceipt {
    chain_id,
    bid,
    participant,
    home,
    height,
    received_at
});
crate::tagged!(BidReceipt, 0x0102, "bid-receipt", 128);

/// A receipt with the home node's signature.
pub type SignedReceipt = Signed<BidReceipt>;

/// A home node's batch of its participants' bids for one height, sent at gate closure.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BidBatch {
    /// The chain.
    pub chain_id: Digest,
    /// The height the batch is for.
    pub height: u64,
    /// The home node.
    pub home: NodeId,
    /// The bids, in the order the home node received them.
    pub bids: Vec<SignedBid>,
    /// When the home node received each bid (its receipt's `received_at`), one per bid in the
    /// same order, never decreasing: the bids' priority among equals (spec C4).
    pub received: Vec<Timestamp>,
    /// Changes to the registry this home node sponsors (admissions, revocations, key
    /// replacements; spec A1-A5), in the order it accepted them. They take effect from the
    /// height after the block that carries the batch.
    pub changes: Vec<SignedChange>,
}
crate::canonical_struct!(BidBatch {
    chain_id,
    height,
    home,
    bids: seq(MAX_BATCH_BIDS),
    received: seq(MAX_BATCH_BIDS),
    changes: seq(MAX_BATCH_CHANGES),
});
crate::tagged!(
    BidBatch,
    0x0103,
    "bid-batch",
    64 + MAX_BATCH_BIDS * (Bid::MAX_ENCODED_LEN + 64 + 8)
        + MAX_BATCH_CHANGES * <SignedChange as crate::encoding::Tagged>::MAX_ENCODED_LEN
);

impl BidBatch {
    /// How many price-quantity steps its bids have in all.
    pub fn steps(&self) -> usize {
        self.bids.iter().map(|b| b.body.steps.len()).sum()
    }

    /// Why the batch is malformed under `genesis`, if it is: a receipt time missing or extra,
    /// or out of order (spec D19), or more bid steps than a home node's share of the round
    /// (`Genesis::batch_steps`, D25). A malformed batch is refused whole; it is not its bids'
    /// fault.
    pub fn malformed(&self, genesis: &Genesis) -> Option<String> {
        let (steps, allowed) = (self.steps(), genesis.batch_steps());
        if steps > allowed {
            return Some(format!(
                "{steps} bid steps, over a home node's share of the round ({allowed})"
            ));
        }
        if self.received.len() != self.bids.len() {
            return Some(format!(
                "{} receipt times for {} bids",
                self.received.len(),
                self.bids.len()
            ));
        }
        self.received
            .windows(2)
            .position(|w| w[1] < w[0])
            .map(|i| format!("receipt time of bid {} is before the previous bid's", i + 1))
    }
}

/// A batch with its home node's signature.
pub type SignedBatch = Signed<BidBatch>;

/// One accepted trade: a bid's accepted quantity at its price. It is a leaf of the block's
/// Merkle tree, so a participant can prove its trade against a certified header.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Trade {
    /// The bid's id.
    pub bid: Digest,
    /// The bidder.
    pub participant: ParticipantId,
    /// Buy or sell.
    pub side: Side,
    /// Where the energy is delivered or taken.
    pub area: AreaId,
    /// The bus, if the bid named one.
    pub bus: Option<BusId>,
    /// The product.
    pub product: Product,
    /// The accepted energy.
    pub quantity: Quantity,
    /// The settlement price.
    pub price: Price,
    /// The matched participant in bilateral matching; `None` when the counterparty is the
    /// coupled market as a whole.
    pub counterparty: Option<ParticipantId>,
}
crate::canonical_struct!(Trade {
    bid,
    participant,
    side,
    area,
    bus,
    product,
    quantity,
    price,
    counterparty,
});
crate::tagged!(Trade, 0x0104, "trade", 256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Ed25519, Signer};
    use crate::sample::SampleConsortium;

    #[test]
    fn bid_rules() {
        let s = SampleConsortium::new(4, 2);
        let g = &s.genesis;
        let chain_id = g.chain_id();
        let good = s.bid(0, 1, 7).body;
        assert_eq!(good.check(g, &chain_id), Ok(()));

        let mut b = good.clone();
        b.chain_id = Digest::ZERO;
        assert!(matches!(
            b.check(g, &chain_id),
            Err(BidError::WrongChain { .. })
        ));
        let mut b = good.clone();
        b.participant = ParticipantId(1);
        assert_eq!(
            b.check(g, &chain_id),
            Err(BidError::UnknownParticipant(ParticipantId(1)))
        );
        let mut b = good.clone();
        b.area = AreaId(3);
        assert!(matches!(
            b.check(g, &chain_id),
            Err(BidError::WrongArea { .. })
        ));
        let mut b = good.clone();
        b.steps.clear();
        assert_eq!(b.check(g, &chain_id), Err(BidError::NoSteps));
        let mut b = good.clone();
        b.steps[0].quantity = Quantity(0);
        assert!(matches!(
            b.check(g, &chain_id),
            Err(BidError::BadStep { step: 0, .. })
        ));
        let mut b = good.clone();
        b.steps[0].price = Price(g.clearing.price_cap.0 + g.clearing.price_tick.0);
        assert!(matches!(
            b.check(g, &chain_id),
            Err(BidError::BadStep { step: 0, .. })
        ));
        let mut b = good.clone();
        b.steps[0].price = Price(b.steps[0].price.0 + 1);
        assert!(
            b.check(g, &chain_id)
                .unwrap_err()
                .to_string()
                .contains("tick")
        );
        // A seller's second step must be dearer than its first.
        let mut b = good.clone();
        assert_eq!(b.side, Side::Sell);
        b.steps.push(b.steps[0]);
        assert!(
            b.check(g, &chain_id)
                .unwrap_err()
                .to_string()
                .contains("rise")
        );
        b.steps[1].price = Price(b.steps[0].price.0 + g.clearing.price_tick.0);
        assert_eq!(b.check(g, &chain_id), Ok(()));
        let mut b = good.clone();
        b.product.delivery_minutes = 0;
        assert_eq!(b.check(g, &chain_id), Err(BidError::EmptyDelivery));

        // The signature covers every field.
        let signed = s.bid(0, 1, 7);
        let key = s.participants[0].public_key();
        assert!(signed.verify(&Ed25519::default(), &key).is_ok());
        let mut forged = signed.clone();
        forged.body.nonce += 1;
        assert!(forged.verify(&Ed25519::default(), &key).is_err());
    }
}
