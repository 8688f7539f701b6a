//! A consortium made from a whole-system MATPOWER case: one management node per area, each
//! keeping its area's model private, tie lines between them, and one participant per generator
//! and per loaded bus bidding by the conversion of [`super::offers`]. The three-area RTS-GMLC
//! system shipped in `data/rts-gmlc/` is made this way
//! ([`GridConsortiumOptions::rts_gmlc`]).
//!
//! Keys come from the public sample seeds ([`crate::sample::sample_seed`]): demo keys, never
//! for a real consortium.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::block::Block;
use crate::consensus::SecurityCheck;
use crate::crypto::{Digest, Ed25519Signer, Signed, Signer};
use crate::genesis::{
    Area, ClearingParams, ClearingRule, FaultKind, FaultModel, Genesis, GenesisError, Member,
    Participant, TieLine, Timing,
};
use crate::market::{Bid, SignedBid};
use crate::sample::{sample_product, sample_seed};
use crate::units::{AreaId, BusId, NodeId, ParticipantId, Price, Quantity, TieLineId, Timestamp};

use super::offers::DEFAULT_POLYNOMIAL_SEGMENTS;
use super::offers::{Offer, OfferError, OfferSource, case_offers};
use super::security::{AreaModel, AreaModelError};
use super::split::{Split, SplitColumn, SplitError, TieBranch, derate_lines, split_by};
use super::{Case, MatpowerError};

/// Why a consortium cannot be made from a case.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GridConsortiumError {
    /// The case is not readable.
    #[error("{0}")]
    Case(#[from] MatpowerError),
    /// The case cannot be split by area.
    #[error("{0}")]
    Split(#[from] SplitError),
    /// Its costs cannot be turned into bids.
    #[error("{0}")]
    Offer(#[from] OfferError),
    /// The genesis made is not valid.
    #[error("{0}")]
    Genesis(#[from] GenesisError),
    /// An area's model cannot be built.
    #[error("{0}")]
    AreaModel(#[from] AreaModelError),
}

/// The choices a consortium made from a case leaves open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridConsortiumOptions {
    /// The chain name.
    pub chain_name: String,
    /// Tie-line capacities as a percentage of their ratings (`rateA` of a tie branch, `Pmax`
    /// and `-Pmin` of a DC line).
    pub tie_rating_percent: u32,
    /// Ratings of the lines inside each area as a percentage of the case's (`rateA`); below
    /// 100 the area files describe a stressed grid. At 100 the rows are kept as written.
    pub line_rating_percent: u32,
    /// Negotiation revisions before the fallback.
    pub max_revisions: u32,
    /// Price tick, floor and cap; the rule is zonal coupling.
    pub price_tick: Price,
    /// The price floor, at which minimum outputs are offered.
    pub price_floor: Price,
    /// The price cap, at which demand bids.
    pub price_cap: Price,
    /// Member `k` listens on `127.0.0.1:(first_port + k)`.
    pub first_port: u16,
    /// Which bus column makes the areas: one member per MATPOWER area or per zone.
    pub split: SplitColumn,
    /// How many chord segments a polynomial (quadratic) cost becomes ([`super::offers`]).
    pub polynomial_segments: u32,
}

impl GridConsortiumOptions {
    /// The options of the shipped RTS-GMLC consortium, with tie lines at `tie_rating_percent`
    /// of their ratings and lines inside the areas at theirs: prices on a tick of 0.0001 between -500 and 3000 per MWh, at most 32
    /// negotiation revisions.
    pub fn rts_gmlc(tie_rating_percent: u32) -> Self {
        Self {
            chain_name: "tieline-rts-gmlc".into(),
            tie_rating_percent,
            line_rating_percent: 100,
            max_revisions: 32,
            price_tick: Price(1),
            price_floor: Price(-500 * Price::SCALE),
            price_cap: Price(3_000 * Price::SCALE),
            first_port: 7301,
            split: SplitColumn::Area,
            polynomial_segments: DEFAULT_POLYNOMIAL_SEGMENTS,
        }
    }

    fn clearing(&self) -> ClearingParams {
        ClearingParams {
            rule: ClearingRule::ZonalCoupling,
            price_tick: self.price_tick,
            price_floor: self.price_floor,
            price_cap: self.price_cap,
        }
    }
}

/// A member's private area file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaFile {
    /// The area.
    pub area: AreaId,
    /// The file's name, `area-<n>.m`.
    pub file_name: String,
    /// The MATPOWER text.
    pub text: String,
}

/// A consortium made from a case, with every key it names.
#[derive(Debug)]
pub struct GridConsortium {
    /// The genesis: one area and member per case area, tie lines with their landing buses.
    pub genesis: Genesis,
    /// Each member's area file, in member order.
    pub area_files: Vec<AreaFile>,
    /// The tie lines as the case has them, in genesis order.
    pub ties: Vec<TieBranch>,
    /// Each participant's offer, in participant order.
    pub offers: Vec<Offer>,
    /// The members' signers, in member order.
    pub members: Vec<Ed25519Signer>,
    /// The participants' signers, in participant order.
    pub participants: Vec<Ed25519Signer>,
}

/// The delivery period of every bid: one hour, as the sample product.
const DELIVERY_MINUTES: u32 = 60;

impl GridConsortium {
    /// The consortium of the case's areas, in area-number order. Participants are the
    /// in-service generators (case order) then the loaded buses (case order), numbered from
    /// 1000; each is homed at its area's member.
    pub fn from_case(
        text: &str,
        options: &GridConsortiumOptions,
    ) -> Result<Self, GridConsortiumError> {
        let case = Case::parse(text)?;
        let Split { areas, ties } = split_by(text, options.split)?;
        let params = options.clearing();
        let mut offers = case_offers(
            &case,
            &params,
            DELIVERY_MINUTES,
            options.polynomial_segments,
        )?;
        if options.split == SplitColumn::Zone {
            // Offers name their bus's group: its zone in a split by zone.
            let zone: BTreeMap<u32, u32> = case.buses.iter().map(|b| (b.id, b.zone)).collect();
            for o in &mut offers {
                o.area = zone.get(&o.bus).copied().unwrap_or(o.area);
            }
        }
        let hours = f64::from(DELIVERY_MINUTES) / 60.0;
        // A tie branch without a rating (unlimited in MATPOWER) can carry at most what every
        // generator of the case together produces: that is its capacity.
        let installed: f64 = case
            .generators
            .iter()
            .filter(|g| g.in_service)
            .map(|g| g.pmax.max(0.0))
            .sum();
        let capacity = |mw: f64| {
            let mw = if mw.is_finite() {
                mw * f64::from(options.tie_rating_percent) / 100.0
            } else {
                installed
            };
            Quantity::from_f64(mw * hours).unwrap_or(Quantity(i64::MAX))
        };
        let group = options.split.name();
        let lower = group.to_lowercase();
        let area_id = |a: u32| AreaId(a as u16);
        let member_signers: Vec<Ed25519Signer> = (0..areas.len())
            .map(|i| Ed25519Signer::from_seed(sample_seed("member", i)))
            .collect();
        let participant_signers: Vec<Ed25519Signer> = (0..offers.len())
            .map(|i| Ed25519Signer::from_seed(sample_seed("participant", i)))
            .collect();
        let home: BTreeMap<u32, NodeId> = areas
            .iter()
            .enumerate()
            .map(|(k, a)| (a.area, NodeId(k as u16 + 1)))
            .collect();
        let genesis = Genesis {
            chain_name: options.chain_name.clone(),
            areas: areas
                .iter()
                .map(|a| Area {
                    id: area_id(a.area),
                    name: format!("{group} {}", a.area),
                    eic: None,
                })
                .collect(),
            members: areas
                .iter()
                .zip(&member_signers)
                .enumerate()
                .map(|(k, (a, s))| Member {
                    id: NodeId(k as u16 + 1),
                    name: format!("Exchange of {lower} {}", a.area),
                    area: area_id(a.area),
                    public_key: s.public_key(),
                    address: format!("127.0.0.1:{}", options.first_port + k as u16),
                    eic: None,
                })
                .collect(),
            participants: offers
                .iter()
                .zip(&participant_signers)
                .enumerate()
                .map(|(i, (o, s))| Participant {
                    id: ParticipantId(1000 + i as u32),
                    name: match o.source {
                        OfferSource::Generator(row) => format!("generator {row} at bus {}", o.bus),
                        OfferSource::Load(bus) => format!("demand at bus {bus}"),
                    },
                    home: home[&o.area],
                    area: area_id(o.area),
                    public_key: s.public_key(),
                    eic: None,
                })
                .collect(),
            tie_lines: ties
                .iter()
                .enumerate()
                .map(|(i, t)| TieLine {
                    id: TieLineId(i as u16 + 1),
                    from: area_id(t.from_area),
                    to: area_id(t.to_area),
                    capacity_forward: capacity(t.forward_mw),
                    capacity_backward: capacity(t.backward_mw),
                    from_bus: Some(BusId(t.from_bus)),
                    to_bus: Some(BusId(t.to_bus)),
                })
                .collect(),
            fault_model: FaultModel {
                kind: FaultKind::Crash,
                f: ((areas.len() - 1) / 2) as u16,
            },
            rotation_period: 1,
            timing: Timing {
                gate_ms: 1_000,
                batch_wait_ms: 500,
                view_timeout_ms: 2_000,
                schedule: None,
            },
            max_revisions: options.max_revisions,
            clearing: params,
        };
        genesis.validate()?;
        let area_files = areas
            .into_iter()
            .map(|a| {
                Ok(AreaFile {
                    area: area_id(a.area),
                    file_name: format!("{lower}-{}.m", a.area),
                    text: if options.line_rating_percent == 100 {
                        a.text
                    } else {
                        derate_lines(&a.text, options.line_rating_percent)?
                    },
                })
            })
            .collect::<Result<_, SplitError>>()?;
        Ok(Self {
            genesis,
            area_files,
            ties,
            offers,
            members: member_signers,
            participants: participant_signers,
        })
    }

    /// Each member's security check, from its own area file, in member order.
    pub fn area_models(&self) -> Result<Vec<AreaModel>, AreaModelError> {
        self.area_files
            .iter()
            .map(|f| AreaModel::from_matpower(&f.text, f.area, &self.genesis))
            .collect()
    }

    /// [`GridConsortium::area_models`] as the in-memory cluster takes them.
    pub fn security_checks(&self) -> Result<Vec<Arc<dyn SecurityCheck>>, AreaModelError> {
        Ok(self
            .area_models()?
            .into_iter()
            .map(|m| Arc::new(m) as Arc<dyn SecurityCheck>)
            .collect())
    }

    /// Every participant's signed bid for the sample product of `height` (one hour), with
    /// nonce `height`, in participant order. Submission times are spread over a minute in a
    /// fixed shuffled order, so that the fallback (later-submitted first) cuts generators and
    /// demand alike.
    pub fn bids(&self, height: u64) -> Vec<SignedBid> {
        let chain_id = self.genesis.chain_id();
        let n = self.offers.len().max(1) as u64;
        self.offers
            .iter()
            .zip(&self.genesis.participants)
            .zip(&self.participants)
            .enumerate()
            .map(|(i, ((o, p), key))| {
                let slot = (i as u64 * 7_919) % n;
                let bid = Bid {
                    chain_id,
                    participant: p.id,
                    area: p.area,
                    bus: Some(BusId(o.bus)),
                    side: o.side,
                    product: sample_product(height),
                    steps: o.steps.clone(),
                    nonce: height,
                    timestamp: Timestamp(1_767_225_000_000 + height * 60_000 + slot * 100),
                };
                Signed::sign(bid, key)
            })
            .collect()
    }

    /// The case's total generation cost of a block's dispatch, currency per delivery period:
    /// [`Offer::cost`] of every generator with something accepted.
    pub fn generation_cost(&self, block: &Block) -> f64 {
        let participant: BTreeMap<Digest, ParticipantId> = block
            .body
            .process
            .batches
            .iter()
            .flat_map(|b| b.body.bids.iter())
            .map(|sb| (sb.body.id(), sb.body.participant))
            .collect();
        let mut awards: BTreeMap<ParticipantId, Vec<Quantity>> = BTreeMap::new();
        for a in &block.body.process.clearing.outcome.awards {
            let Some(&p) = participant.get(&a.bid) else {
                continue;
            };
            let steps = awards.entry(p).or_default();
            let k = usize::from(a.step);
            if steps.len() <= k {
                steps.resize(k + 1, Quantity::ZERO);
            }
            steps[k] += a.quantity;
        }
        self.genesis
            .participants
            .iter()
            .zip(&self.offers)
            .filter_map(|(p, o)| awards.get(&p.id).map(|q| o.cost(q)))
            .sum()
    }

    /// The offers as CSV, one row per participant: id, name, area, bus, side, the must-run
    /// MWh, the fixed cost and the steps as `price@MWh` separated by spaces.
    pub fn offers_csv(&self) -> String {
        let mut out =
            String::from("participant,name,area,bus,side,must_run_mwh,fixed_cost,steps\n");
        for (p, o) in self.genesis.participants.iter().zip(&self.offers) {
            let steps: Vec<String> = o
                .steps
                .iter()
                .map(|s| format!("{}@{}", s.price, s.quantity))
                .collect();
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                p.id,
                p.name,
                p.area,
                o.bus,
                match o.side {
                    crate::market::Side::Buy => "buy",
                    crate::market::Side::Sell => "sell",
                },
                o.must_run,
                o.fixed_cost,
                steps.join(" ")
            ));
        }
        out
    }
}

/// Why a negotiation in memory did not end with a committed block.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NegotiationError {
    /// A member's area model cannot be built from its area file.
    #[error("{0}")]
    AreaModel(#[from] AreaModelError),
    /// A home node refused a participant's bid.
    #[error("participant {participant}'s bid was refused: {reply}")]
    BidRefused {
        /// The participant.
        participant: ParticipantId,
        /// The home node's reply.
        reply: String,
    },
    /// The members had not all committed within the event budget.
    #[error("the negotiation did not end within {0} simulated events")]
    Unfinished(usize),
    /// Two members committed different blocks (a protocol bug).
    #[error("members {1} and {2} committed different blocks at height {0}")]
    Disagreement(u64, NodeId, NodeId),
}

impl GridConsortium {
    /// One round through the real consensus in memory ([`crate::consensus::sim::Cluster`]):
    /// every participant bids once for height 1, every member checks proposals with its own
    /// area model, and the round runs until every member has committed height 1 (at most
    /// `max_events` simulated events). Returns the committed block.
    pub fn negotiate(&self, max_events: usize) -> Result<Block, NegotiationError> {
        self.negotiate_with(self.security_checks()?, max_events)
    }

    /// [`GridConsortium::negotiate`] with each member's check given (in member order), for a
    /// caller that wraps them (to time them, for instance).
    pub fn negotiate_with(
        &self,
        checks: Vec<Arc<dyn SecurityCheck>>,
        max_events: usize,
    ) -> Result<Block, NegotiationError> {
        self.negotiate_timed(checks, max_events)
            .map(|(block, _)| block)
    }

    /// [`GridConsortium::negotiate_with`], also returning the round's compute-only critical
    /// path ([`crate::consensus::sim::Cluster::critical_path`]): how long it would take if
    /// each member ran on its own machine, network round trips aside.
    pub fn negotiate_timed(
        &self,
        checks: Vec<Arc<dyn SecurityCheck>>,
        max_events: usize,
    ) -> Result<(Block, std::time::Duration), NegotiationError> {
        use crate::consensus::Reply;
        use crate::consensus::sim::Cluster;
        let mut cluster = Cluster::with_keys(&self.genesis, &self.members, checks);
        // Each member verifies on its own machine in a deployment; here they share the
        // cores, in the same run (`Cluster::process_round`).
        cluster.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        cluster.start();
        for bid in self.bids(1) {
            let participant = bid.body.participant;
            match cluster.submit(bid) {
                Some(Reply::Receipt(_)) => {}
                other => {
                    return Err(NegotiationError::BidRefused {
                        participant,
                        reply: format!("{other:?}"),
                    });
                }
            }
        }
        let done = cluster.run_until(max_events, |cl| {
            cl.nodes.iter().all(|n| !n.store.blocks.is_empty())
        });
        if !done {
            return Err(NegotiationError::Unfinished(max_events));
        }
        if let Some((h, a, b)) = cluster.disagreement() {
            return Err(NegotiationError::Disagreement(h, a, b));
        }
        Ok((
            cluster.nodes[0].store.blocks[0].clone(),
            cluster.critical_path(),
        ))
    }
}
