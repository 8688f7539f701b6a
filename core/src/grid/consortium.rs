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

use super::offers::{Offer, OfferError, OfferSource, case_offers};
use super::security::{AreaModel, AreaModelError};
use super::split::{Split, SplitError, TieBranch, derate_lines, split_by_area};
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
        let Split { areas, ties } = split_by_area(text)?;
        let params = options.clearing();
        let offers = case_offers(&case, &params, DELIVERY_MINUTES)?;
        let hours = f64::from(DELIVERY_MINUTES) / 60.0;
        let capacity = |mw: f64| {
            Quantity::from_f64(mw * f64::from(options.tie_rating_percent) / 100.0 * hours)
                .unwrap_or(Quantity(i64::MAX))
        };
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
                    name: format!("Area {}", a.area),
                })
                .collect(),
            members: areas
                .iter()
                .zip(&member_signers)
                .enumerate()
                .map(|(k, (a, s))| Member {
                    id: NodeId(k as u16 + 1),
                    name: format!("Exchange of area {}", a.area),
                    area: area_id(a.area),
                    public_key: s.public_key(),
                    address: format!("127.0.0.1:{}", options.first_port + k as u16),
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
                    file_name: format!("area-{}.m", a.area),
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
