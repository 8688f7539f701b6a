//! The named scenarios: who the members are, who is faulty and how, what participants bid,
//! and the bounds of the search (heights, views, revisions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use stateright::actor::{ActorModel, Id, Network};
use tieline_core::block::{
    Objection, ObjectionReason, QuorumCertificate, SkipCertificate, SkipVote, Vote, VoteKind,
    VoteSignature,
};
use tieline_core::clearing::{
    COEFFICIENT_SCALE, Cleared, Clearing, ClearingError, ClearingInput, Cut, CutTerm, CutVariable,
    VerifyError, rule_for,
};
use tieline_core::consensus::{
    ConstraintList, Context, Effect, Input, Message, NoGridModel, NodeState, Proposal,
    SecurityCheck, Timer,
};
use tieline_core::crypto::{
    Digest, Ed25519Signer, PublicKey, SignatureScheme, Signed, Signer, SymbolicScheme,
    SymbolicSigner,
};
use tieline_core::genesis::{ClearingRule, Genesis, Participant};
use tieline_core::market::{Bid, BidBatch, BidStep, Side, SignedBatch, SignedBid};
use tieline_core::registry::{Party, RegistryChange, SignedChange};
use tieline_core::sample::{SampleConsortium, sample_product};
use tieline_core::units::{NodeId, ParticipantId, Price, Quantity, TieLineId, Timestamp};

use crate::model::{Agent, AppealPlan, Ceiling, Model, NOW, NodeAgent, ParticipantAgent, Topology};
use crate::mutants::Mutation;
use crate::properties;

/// How far the search goes. A state beyond a bound is not explored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The highest height decided; a node then waits at the next height with its gate open.
    pub max_height: u64,
    /// The highest view entered.
    pub max_view: u32,
    /// The highest revision proposed.
    pub max_revision: u32,
    /// The most crashes in a run.
    pub max_crashes: u32,
}

/// How a faulty member's actor deviates. It always runs the core's correct code; the fault is
/// in its configuration (after the Twins method: several actors may share one member's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A twin with the member's own configuration.
    Twin,
    /// A twin whose clearing rule publishes a wrong price (one tick too high).
    TamperedClearing,
    /// A node that believes the rotation makes it the primary of view 0 (its genesis has
    /// another rotation period under the real chain id).
    Impostor,
    /// A node that runs the member's correct code and, at its start, also lies as a voter and
    /// a verifier (see [`Scenario::lies`]): a skip vote whose lock certificate it cannot show
    /// (only its own signature), to every other member a view certificate it did not gather
    /// (the others' skip votes signed by itself), and to the primary two missing-batch
    /// objections carrying batches that are not its own batch of the height.
    Liar,
    /// A primary that runs the member's correct code (it proposes revision 0 and gathers its
    /// certificates) and, at its start, also offers every other member a revision 1 of that
    /// proposal, justified by an objection of its own that carries a second batch of its own
    /// (see [`Scenario::reviser_lies`]), with its own endorsement of it: nodes locked on
    /// revision 0 are offered another block in the same view.
    Reviser,
}

/// What a scripted participant does.
#[derive(Clone, Debug)]
pub struct Script {
    /// The participant's index in the genesis.
    pub participant: usize,
    /// Its side.
    pub side: Side,
    /// Its limit price, in currency per MWh.
    pub price: i64,
    /// Its quantity, in MWh.
    pub mwh: i64,
    /// Its appeal, if any.
    pub appeal: Option<AppealPlan>,
}

impl Script {
    /// A participant that bids once and does not appeal.
    pub fn bid(participant: usize, side: Side, price: i64, mwh: i64) -> Self {
        Script {
            participant,
            side,
            price,
            mwh,
            appeal: None,
        }
    }
}

/// A named scenario, before it becomes a model.
#[derive(Clone)]
pub struct Scenario {
    /// Its name.
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// The consortium.
    pub genesis: Genesis,
    /// The faulty members and their actors' faults.
    pub faults: BTreeMap<NodeId, Vec<Fault>>,
    /// Members whose private grid check is a list of constraints (others have none).
    pub security: BTreeMap<NodeId, ConstraintList>,
    /// The participants that bid.
    pub scripts: Vec<Script>,
    /// How many nodes may be down at once.
    pub max_crashes: usize,
    /// The search bounds.
    pub bounds: Bounds,
    /// The search bounds for CI (smaller or equal).
    pub ci_bounds: Bounds,
    /// Whether the search starts after bid collection: every scripted bid taken by its home
    /// node, every gate closed and every batch delivered to every member, in that order, each
    /// through the core's `step` (see [`NodeAgent::prefix`]). Scenarios about what follows
    /// collection (locks, equivocation, impostors, joint signatures) then spend no states on
    /// the order in which batches arrive; `crash` keeps collection in the search.
    pub after_collection: bool,
    /// Whether a crash and the recovery are two steps, with states in between where the node
    /// is down (the actor system's own crashes), instead of one (the default; see [`Model`]):
    /// the cross-check of that reduction.
    pub two_step_crash: bool,
    /// A member whose actor never receives a decided block (`Decided`): a lossy link for that
    /// one message, so it must catch up by asking (spec L4).
    pub misses_decided: Option<NodeId>,
    /// Registry changes each member's operator hands its node before its gate closes at
    /// height 1, in order (spec A1-A5; part of collection, so only with `after_collection`).
    pub changes: Vec<(NodeId, SignedChange)>,
    /// Bids a home node takes as it enters a later height: (height, home, bid).
    pub later_bids: Vec<(u64, NodeId, SignedBid)>,
}

/// The model's configuration: what every property may read.
#[derive(Clone)]
pub struct Setup {
    /// The scenario's name.
    pub name: &'static str,
    /// The consortium.
    pub genesis: Arc<Genesis>,
    /// Its chain id.
    pub chain_id: Digest,
    /// How signatures verify in the model.
    pub scheme: Arc<dyn SignatureScheme>,
    /// The agreed clearing rule.
    pub clearing: &'static dyn Clearing,
    /// The bounds.
    pub bounds: Bounds,
    /// The faulty members.
    pub faulty: BTreeSet<NodeId>,
    /// Per actor: the member it is (none for a participant).
    pub member_of: Vec<Option<NodeId>>,
    /// Each correct member's private grid check.
    pub security: BTreeMap<NodeId, Arc<dyn SecurityCheck>>,
    /// Whether nodes may crash.
    pub crashes: bool,
    /// Whether a crash and the recovery from storage are one step (see [`Model`]).
    pub atomic_restart: bool,
    /// The actor that never receives a decided block, if any.
    pub misses_decided: Option<usize>,
    /// The participants whose admission the scenario's operators signed as their home
    /// members (spec A1): the only ones besides the genesis's that may be admitted.
    pub authorised: BTreeSet<ParticipantId>,
}

impl Setup {
    /// Whether actor `i` is a faulty member's.
    pub fn is_faulty_actor(&self, i: usize) -> bool {
        self.member_of
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|m| self.faulty.contains(&m))
    }

    /// Whether actor `i` is a correct member's.
    pub fn is_correct_node(&self, i: usize) -> bool {
        self.member_of
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|m| !self.faulty.contains(&m))
    }
}

/// The symbolic key of a sample member or participant: its real public key, used as a name.
fn signer(key: PublicKey) -> Arc<SymbolicSigner> {
    Arc::new(SymbolicSigner::new(key))
}

fn mwh(x: i64) -> Quantity {
    Quantity(x * Quantity::SCALE)
}

/// A clearing rule that publishes the real rule's outcome with every price one tick higher:
/// a byzantine primary's tampered result.
#[derive(Debug)]
pub struct Tampered(pub &'static dyn Clearing);

impl Clearing for Tampered {
    fn rule(&self) -> ClearingRule {
        self.0.rule()
    }
    fn clear(&self, input: &ClearingInput<'_>) -> Result<Cleared, ClearingError> {
        let mut c = self.0.clear(input)?;
        let tick = input.params.price_tick.0;
        for p in &mut c.outcome.area_prices {
            p.price = Price(p.price.0 + tick);
        }
        for t in &mut c.trades {
            t.price = Price(t.price.0 + tick);
        }
        Ok(c)
    }
}

/// The tampered uniform-price rule.
pub static TAMPERED_UNIFORM: Tampered = Tampered(&tieline_core::clearing::UniformPrice);

/// A rule that remembers its results: clearing is a pure function of its input, and a search
/// clears the same input in many states. Only `clear` is remembered; `verify` delegates.
#[derive(Debug)]
pub struct Remembered {
    rule: &'static dyn Clearing,
    memo: Mutex<HashMap<Vec<u8>, Result<Cleared, ClearingError>>>,
}

impl Remembered {
    fn key(input: &ClearingInput<'_>) -> Vec<u8> {
        use tieline_core::encoding::Canonical;
        let mut out = Vec::new();
        for t in &input.tie_lines {
            t.encode(&mut out);
        }
        for (d, _) in &input.bids {
            out.extend_from_slice(&d.0);
        }
        for c in input.cuts {
            c.encode(&mut out);
        }
        out
    }
}

impl Clearing for Remembered {
    fn rule(&self) -> ClearingRule {
        self.rule.rule()
    }
    fn clear(&self, input: &ClearingInput<'_>) -> Result<Cleared, ClearingError> {
        let key = Self::key(input);
        if let Some(r) = self.memo.lock().expect("not poisoned").get(&key) {
            return r.clone();
        }
        let r = self.rule.clear(input);
        self.memo
            .lock()
            .expect("not poisoned")
            .insert(key, r.clone());
        r
    }
    fn verify(&self, input: &ClearingInput<'_>, proposed: &Cleared) -> Result<(), VerifyError> {
        self.rule.verify(input, proposed)
    }
}

/// The zonal-coupling rule, remembered.
pub static ZONAL: std::sync::LazyLock<Remembered> = std::sync::LazyLock::new(|| Remembered {
    rule: &tieline_core::clearing::ZonalCoupling,
    memo: Mutex::new(HashMap::new()),
});

/// Numbers the models built in this process, so that transitions remembered for one model
/// are never used by another (with another scenario or seeded bug).
static NEXT_MODEL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// The rule the model's nodes run for `rule`.
pub fn model_rule(rule: ClearingRule) -> &'static dyn Clearing {
    match rule {
        ClearingRule::ZonalCoupling => &*ZONAL,
        other => rule_for(other),
    }
}

impl Scenario {
    /// Every named scenario, in the order `all` runs them.
    pub fn all() -> Vec<Scenario> {
        vec![
            Self::crash(),
            Self::byzantine(),
            Self::byzantine_skip(),
            Self::negotiate(),
            Self::fallback(),
            Self::appeal(),
            Self::impostor(),
            Self::lock(),
            Self::joint(),
            Self::catch_up(),
            Self::liar(),
            Self::late_revision(),
            Self::late_appeal(),
            Self::late_objection(),
            Self::admission(),
        ]
    }

    /// The scenario called `name`.
    pub fn named(name: &str) -> Option<Scenario> {
        Self::all().into_iter().find(|s| s.name == name)
    }

    fn base(members: usize) -> Genesis {
        let mut g = SampleConsortium::new(members, 1).genesis;
        g.max_revisions = 2;
        g
    }

    /// n = 3, f = 1, crash faults: a node may crash and recover from its storage; the network
    /// reorders and duplicates. One participant bids.
    pub fn crash() -> Scenario {
        let genesis = Self::base(3);
        Scenario {
            name: "crash",
            about: "n=3, f=1 crash faults: crash and recover from storage; unordered network that duplicates and reorders",
            genesis,
            faults: BTreeMap::new(),
            security: BTreeMap::new(),
            scripts: vec![Script::bid(0, Side::Sell, 40, 10)],
            max_crashes: 1,
            bounds: Bounds {
                max_height: 1,
                max_view: 1,
                max_revision: 1,
                max_crashes: 1,
            },
            ci_bounds: Bounds {
                max_height: 1,
                max_view: 1,
                max_revision: 1,
                max_crashes: 1,
            },
            after_collection: false,
            two_step_crash: false,
            misses_decided: None,
            changes: Vec::new(),
            later_bids: Vec::new(),
        }
    }

    /// n = 4, f = 1, byzantine: member 2, the primary of view 0, runs as two twins under its
    /// key, one of them with a tampered clearing rule: it equivocates as primary and votes
    /// twice. A seller at node 3 and a buyer at node 4 trade.
    pub fn byzantine() -> Scenario {
        let genesis = Self::base(4);
        let primary = genesis.primary(1, 0);
        Scenario {
            name: "byzantine",
            about: "n=4, f=1 byzantine: the view-0 primary runs as twins under one key (one with a tampered clearing), equivocating and voting twice",
            genesis,
            faults: BTreeMap::from([(primary, vec![Fault::Twin, Fault::TamperedClearing])]),
            security: BTreeMap::new(),
            scripts: vec![
                Script::bid(2, Side::Sell, 40, 10),
                Script::bid(3, Side::Buy, 60, 10),
            ],
            max_crashes: 0,
            bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            ci_bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            after_collection: true,
            two_step_crash: false,
            misses_decided: None,
            changes: Vec::new(),
            later_bids: Vec::new(),
        }
    }

    /// n = 4, f = 1, byzantine: the view-0 primary proposes revision 0 and gathers its
    /// certificates as a correct primary does, and also offers revision 1 of its proposal,
    /// justified by an objection of its own with a second batch of its own, and endorses it:
    /// nodes locked on revision 0 are offered another block in the same view, and must not
    /// endorse it (spec 2.6, S2).
    pub fn late_revision() -> Scenario {
        let genesis = Self::base(4);
        let primary = genesis.primary(1, 0);
        let home_of_primary = genesis
            .participants
            .iter()
            .position(|p| p.home == primary)
            .expect("the primary is a home node");
        let bounds = Bounds {
            max_height: 1,
            max_view: 0,
            max_revision: 1,
            max_crashes: 0,
        };
        Scenario {
            name: "late-revision",
            about: "n=4, f=1 byzantine: the view-0 primary also offers revision 1 of its proposal, justified by its own objection, to nodes that may have locked on revision 0",
            faults: BTreeMap::from([(primary, vec![Fault::Reviser])]),
            // Only the primary's own participant bids, so that its batch has a bid to leave
            // out; the other members' batches are empty.
            scripts: vec![Script::bid(home_of_primary, Side::Sell, 40, 10)],
            bounds,
            ci_bounds: bounds,
            genesis,
            ..Self::byzantine()
        }
    }

    /// n = 4, f = 1, byzantine, with a view change: the view-0 primary runs as twins as in
    /// `byzantine` (equivocating as primary, voting twice as a verifier, and both twins voting
    /// to skip), and the honest nodes, some locked in view 0, skip to view 1, whose primary
    /// must propose any block that may have been committed (S2 under byzantine quorums).
    pub fn byzantine_skip() -> Scenario {
        let bounds = Bounds {
            max_height: 1,
            max_view: 1,
            max_revision: 0,
            max_crashes: 0,
        };
        Scenario {
            name: "byzantine-skip",
            about: "n=4, f=1 byzantine: a skip away from the equivocating view-0 primary (twins) keeps every block that may have been committed",
            bounds,
            ci_bounds: bounds,
            ..Self::byzantine()
        }
    }

    /// n = 2 under zonal coupling: node 2's private grid limits the flow over tie line 1 to
    /// 40 MWh; a seller at node 1 and a buyer at node 2 want 100 MWh, so node 2 objects with a
    /// cut and the primary must revise before the block commits.
    pub fn negotiate() -> Scenario {
        let mut genesis = Self::base(2);
        genesis.clearing.rule = ClearingRule::ZonalCoupling;
        let limit = Cut {
            product: sample_product(1),
            label: 7,
            terms: vec![CutTerm {
                variable: CutVariable::TieFlow(TieLineId(1)),
                coefficient: COEFFICIENT_SCALE,
            }],
            limit: mwh(40),
        };
        Scenario {
            name: "negotiate",
            about: "n=2, zonal coupling: a security objection with a cut forces a revision before the commit",
            genesis,
            faults: BTreeMap::new(),
            security: BTreeMap::from([(
                NodeId(2),
                ConstraintList {
                    constraints: vec![limit],
                },
            )]),
            scripts: vec![
                Script::bid(0, Side::Sell, 10, 100),
                Script::bid(1, Side::Buy, 90, 100),
            ],
            max_crashes: 0,
            bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 2,
                max_crashes: 0,
            },
            ci_bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 1,
                max_crashes: 0,
            },
            after_collection: false,
            two_step_crash: false,
            misses_decided: None,
            changes: Vec::new(),
            later_bids: Vec::new(),
        }
    }

    /// `negotiate` at the revision bound: the genesis allows no negotiation revision
    /// (`max_revisions` 0), so node 2's objection sends the round straight into the fallback
    /// (L3), whose first level keeps the earlier-submitted half of the bids; the block it
    /// commits overloads nothing. Every fallback level up to the bound is explored.
    pub fn fallback() -> Scenario {
        let mut s = Self::negotiate();
        s.name = "fallback";
        s.about = "n=2, zonal coupling, max_revisions 0: an objection sends the round into the fallback, which cuts the later bid and commits";
        s.genesis.max_revisions = 0;
        s.bounds.max_revision = 2;
        s.ci_bounds.max_revision = 1;
        s
    }

    /// `negotiate` with an appeal where the revision bound meets it: the genesis allows one
    /// negotiation revision (`max_revisions` 1), so the primary records appeals in revision 0
    /// only (a revision records new appeals while it is below `max_revisions`, spec 2.8). The
    /// seller, whose home is not the primary, appeals that its receipted bid is missing as soon
    /// as it holds the receipt. An appeal that reaches the primary before revision 0 is
    /// recorded there (upheld if the home's batch missed it, which the home's missing-batch
    /// objection then brings in too; rejected as included otherwise); one that arrives later
    /// meets the bound: revision 1, forced by node 2's security objection, and any fallback
    /// revision after it record nothing new, and the home tells the participant after the
    /// commit that its appeal was not recorded. Its bid is not lost either way (N1, V3).
    pub fn late_appeal() -> Scenario {
        let mut s = Self::negotiate();
        s.name = "late-appeal";
        s.about = "n=2, zonal coupling, max_revisions 1: the seller's appeal is recorded in revision 0 or, arriving later, meets the revision bound and is told it was not recorded";
        s.genesis.max_revisions = 1;
        s.scripts[0].appeal = Some(AppealPlan::Omitted);
        s.bounds.max_revision = 2;
        s.ci_bounds.max_revision = 2;
        s
    }

    /// n = 3 under zonal coupling, after collection: a seller in area 1 and a buyer in area 2
    /// want 100 MWh over tie line 1 (the ring's other lines are closed), and the two members
    /// that are not the primary each limit that line by a cut of their own, 40 and 60 MWh, so
    /// both object to revision 0. If the primary's `Revise` timer fires after the first
    /// objection, it revises with that cut alone and the other objection to revision 0 reaches
    /// it late: it answers it in its next revision (L5), although revision 1's 40 MWh already
    /// honours the 60 MWh cut.
    pub fn late_objection() -> Scenario {
        let mut genesis = Self::base(3);
        genesis.clearing.rule = ClearingRule::ZonalCoupling;
        for line in genesis
            .tie_lines
            .iter_mut()
            .filter(|l| l.id != TieLineId(1))
        {
            line.capacity_forward = Quantity(0);
            line.capacity_backward = Quantity(0);
        }
        let primary = genesis.primary(1, 0);
        let cut = |label, limit| Cut {
            product: sample_product(1),
            label,
            terms: vec![CutTerm {
                variable: CutVariable::TieFlow(TieLineId(1)),
                coefficient: COEFFICIENT_SCALE,
            }],
            limit: mwh(limit),
        };
        let security = genesis
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != primary)
            .zip([cut(7, 40), cut(8, 60)])
            .map(|(id, c)| {
                (
                    id,
                    ConstraintList {
                        constraints: vec![c],
                    },
                )
            })
            .collect();
        let bounds = Bounds {
            max_height: 1,
            max_view: 0,
            max_revision: 2,
            max_crashes: 0,
        };
        Scenario {
            name: "late-objection",
            about: "n=3, zonal coupling, after collection: two members object to revision 0 with cuts of their own; one that reaches the primary after it revised is answered in the next revision",
            genesis,
            faults: BTreeMap::new(),
            security,
            scripts: vec![
                Script::bid(0, Side::Sell, 10, 100),
                Script::bid(1, Side::Buy, 90, 100),
            ],
            max_crashes: 0,
            bounds,
            ci_bounds: bounds,
            after_collection: true,
            two_step_crash: false,
            misses_decided: None,
            changes: Vec::new(),
            later_bids: Vec::new(),
        }
    }

    /// n = 3, f = 1: a participant appeals that its receipted bid is missing from the result;
    /// the primary upholds or rejects it, records it, and the home node tells the participant.
    /// Its home is not the primary, and a block needs no endorsement of the home's area (the
    /// bid does not trade), so a block can commit while the home's batch is still on its way:
    /// the appeal is then upheld, and the bid cleared through it (V5's upheld branch).
    pub fn appeal() -> Scenario {
        let genesis = Self::base(3);
        Scenario {
            name: "appeal",
            about: "n=3, f=1: a participant's appeal is upheld (its home's batch misses the block) or rejected, recorded in the block, and the participant told",
            genesis,
            faults: BTreeMap::new(),
            security: BTreeMap::new(),
            scripts: vec![Script {
                appeal: Some(AppealPlan::Omitted),
                ..Script::bid(0, Side::Sell, 40, 10)
            }],
            max_crashes: 0,
            bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 1,
                max_crashes: 0,
            },
            ci_bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            after_collection: false,
            two_step_crash: false,
            misses_decided: None,
            changes: Vec::new(),
            later_bids: Vec::new(),
        }
    }

    /// n = 4, f = 1, byzantine: member 1 believes it is the primary of view 0 and proposes;
    /// the real primary is member 2.
    pub fn impostor() -> Scenario {
        let genesis = Self::base(4);
        Scenario {
            name: "impostor",
            about: "n=4, f=1 byzantine: a member that is not the primary proposes",
            genesis,
            faults: BTreeMap::from([(NodeId(1), vec![Fault::Impostor])]),
            security: BTreeMap::new(),
            scripts: vec![],
            max_crashes: 0,
            bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            ci_bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            after_collection: true,
            two_step_crash: false,
            misses_decided: None,
            changes: Vec::new(),
            later_bids: Vec::new(),
        }
    }

    /// n = 4, f = 1: member 4 runs correct code but also lies as a voter and a verifier (a
    /// skip vote whose lock it cannot show, a view certificate it did not gather); views 0
    /// and 1, so that the lies could move an honest node to view 1 or onto a false lock.
    pub fn liar() -> Scenario {
        Scenario {
            name: "liar",
            about: "n=4, f=1 byzantine: member 4 sends a skip vote with a lock it cannot show, a forged view certificate and objections with batches not its own",
            genesis: Self::base(4),
            faults: BTreeMap::from([(NodeId(4), vec![Fault::Liar])]),
            // Revision 1 is in the bounds so that a primary moved by the liar's objections
            // would be seen (V10); a correct one never revises here.
            bounds: Bounds {
                max_revision: 1,
                ..Self::lock().bounds
            },
            ci_bounds: Bounds {
                max_revision: 1,
                ..Self::lock().ci_bounds
            },
            ..Self::lock()
        }
    }

    /// n = 3, f = 1, no bids and no crashes: views 0 and 1, so that a lock taken in view 0
    /// must survive the skip to view 1 (spec S2).
    pub fn lock() -> Scenario {
        Scenario {
            name: "lock",
            about: "n=3, f=1: a skip from view 0 to view 1 with locks taken in view 0; no bids, no crashes",
            scripts: vec![],
            max_crashes: 0,
            bounds: Bounds {
                max_height: 1,
                max_view: 1,
                max_revision: 0,
                max_crashes: 0,
            },
            ci_bounds: Bounds {
                max_height: 1,
                max_view: 1,
                max_revision: 0,
                max_crashes: 0,
            },
            after_collection: true,
            two_step_crash: false,
            misses_decided: None,
            ..Self::crash()
        }
    }

    /// n = 3, f = 1: node 1 never receives a decided block (a lossy link for that message), so
    /// it learns the block only by asking: its skip vote for the decided height reaches a node
    /// that decided it, which answers with the block (spec L4, 2.9).
    pub fn catch_up() -> Scenario {
        Scenario {
            name: "catch-up",
            about: "n=3, f=1: node 1 never receives a decided block and catches up by its skip vote; no crashes",
            misses_decided: Some(NodeId(1)),
            ..Self::lock()
        }
    }

    /// n = 3, f = 1: a seller at node 1 and a buyer at node 3 trade, so a block needs both
    /// areas' endorsements beyond a bare quorum (spec V9, D12).
    pub fn joint() -> Scenario {
        Scenario {
            name: "joint",
            about: "n=3, f=1: a trade between areas 1 and 3 needs both their endorsements (joint signatures)",
            scripts: vec![
                Script::bid(0, Side::Sell, 40, 10),
                Script::bid(2, Side::Buy, 60, 10),
            ],
            max_crashes: 0,
            bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            ci_bounds: Bounds {
                max_height: 1,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            after_collection: true,
            two_step_crash: false,
            misses_decided: None,
            ..Self::crash()
        }
    }

    /// n = 3, f = 1, two heights: at height 1 node 1's operator revokes participant 1 (whose
    /// bid at height 1 still trades), admits participant 10, and hands the node an admission
    /// of participant 11 that only node 2 signed. As height 2 opens, participants 10, 1 and 11
    /// bid at node 1 and the buyer at node 2: the admitted participant trades, the revoked
    /// one's bid is refused, and the unsigned admission never takes effect (spec A1, A2, A5).
    pub fn admission() -> Scenario {
        let genesis = Self::base(3);
        let chain_id = genesis.chain_id();
        let home = genesis.members[0].id;
        let newcomer = |id: u32, seed: u8| Participant {
            id: ParticipantId(id),
            name: format!("newcomer {id}"),
            home,
            area: genesis.members[0].area,
            public_key: Ed25519Signer::from_seed([seed; 32]).public_key(),
            eic: None,
        };
        let (admitted, unsigned) = (newcomer(10, 10), newcomer(11, 11));
        let old = genesis.participants[0].clone();
        let buyer = genesis.participants[1].clone();
        let member = |i: usize| signer(genesis.members[i].public_key);
        let change = |what: RegistryChange, by: usize| {
            let mut c = SignedChange::new(chain_id, what);
            c.sign(Party::Member(genesis.members[by].id), member(by).as_ref());
            c
        };
        let bid = |p: &Participant, side: Side, price: i64, nonce: u64| {
            let bid = Bid {
                chain_id,
                participant: p.id,
                area: p.area,
                bus: None,
                side,
                product: sample_product(2),
                steps: vec![BidStep {
                    price: Price(price * Price::SCALE),
                    quantity: mwh(10),
                }],
                nonce,
                timestamp: Timestamp(1_767_225_120_000 + u64::from(p.id.0)),
            };
            Signed::sign(bid, signer(p.public_key).as_ref())
        };
        Scenario {
            name: "admission",
            about: "n=3, f=1, two heights: a participant admitted on chain trades, a revoked one's bid is refused, an admission its home node did not sign never takes effect",
            changes: vec![
                (home, change(RegistryChange::Revoke(old.id), 0)),
                (home, change(RegistryChange::Admit(admitted.clone()), 0)),
                (home, change(RegistryChange::Admit(unsigned.clone()), 1)),
            ],
            later_bids: vec![
                (2, home, bid(&admitted, Side::Sell, 40, 1)),
                (2, home, bid(&old, Side::Sell, 30, 2)),
                (2, home, bid(&unsigned, Side::Sell, 20, 1)),
                (2, buyer.home, bid(&buyer, Side::Buy, 60, 2)),
            ],
            genesis,
            scripts: vec![
                Script::bid(0, Side::Sell, 40, 10),
                Script::bid(1, Side::Buy, 60, 10),
            ],
            max_crashes: 0,
            bounds: Bounds {
                max_height: 2,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            ci_bounds: Bounds {
                max_height: 2,
                max_view: 0,
                max_revision: 0,
                max_crashes: 0,
            },
            after_collection: true,
            two_step_crash: false,
            misses_decided: None,
            ..Self::crash()
        }
    }

    /// The scripted participant's signed bid.
    fn bid(&self, s: &Script) -> SignedBid {
        let p = &self.genesis.participants[s.participant];
        let bid = Bid {
            chain_id: self.genesis.chain_id(),
            participant: p.id,
            area: p.area,
            bus: None,
            side: s.side,
            product: sample_product(1),
            steps: vec![BidStep {
                price: Price(s.price * Price::SCALE),
                quantity: mwh(s.mwh),
            }],
            nonce: 1,
            timestamp: Timestamp(1_767_225_060_000 + s.participant as u64),
        };
        Signed::sign(bid, signer(p.public_key).as_ref())
    }

    /// The bids and the gate closure of the member whose context is `ctx`: the first inputs
    /// of its start-up prefix.
    fn collection(&self, ctx: &Context) -> Vec<Input> {
        let changes = self
            .changes
            .iter()
            .filter(|(m, _)| *m == ctx.me)
            .map(|(_, c)| Input::Change(c.clone()));
        let bids = self
            .scripts
            .iter()
            .filter(|s| self.genesis.participants[s.participant].home == ctx.me)
            .map(|s| Input::Bid(self.bid(s)));
        changes
            .chain(bids)
            .chain([Input::Timer(Timer::Gate(1))])
            .collect()
    }

    /// Each node actor's start-up prefix (empty unless the scenario starts after collection).
    fn prefixes(&self, contexts: &[Context]) -> Vec<Vec<Input>> {
        if !self.after_collection {
            return vec![Vec::new(); contexts.len()];
        }
        // Each actor's own batch, from a scratch run of its start and collection through the
        // core: the actor's real run signs the same batch (the core is deterministic).
        let mut batches: BTreeMap<NodeId, SignedBatch> = BTreeMap::new();
        for ctx in contexts {
            let batch = Self::scratch_run(ctx, &self.collection(ctx))
                .into_iter()
                .find_map(|e| match e {
                    Effect::Broadcast(Message::Batch(b)) => Some(b),
                    _ => None,
                })
                .expect("a gate closure broadcasts the node's batch");
            let first = batches.entry(ctx.me).or_insert_with(|| batch.clone());
            assert_eq!(
                *first, batch,
                "twins of member {} sign different batches",
                ctx.me.0
            );
        }
        contexts
            .iter()
            .map(|ctx| {
                let mut prefix = self.collection(ctx);
                for (&home, b) in &batches {
                    if home != ctx.me {
                        prefix.push(Input::Message {
                            from: home,
                            msg: Message::Batch(b.clone()),
                        });
                    }
                }
                prefix
            })
            .collect()
    }

    /// The proposal the primary of view 0 makes right after collection, from a scratch run of
    /// its start-up prefix through the core (the actor's real run makes the same proposal: the
    /// core is deterministic). None if the scenario starts before collection.
    fn first_proposal(&self, contexts: &[Context], prefixes: &[Vec<Input>]) -> Option<Proposal> {
        let primary = self.genesis.primary(1, 0);
        let i = contexts.iter().position(|c| c.me == primary)?;
        Self::last_proposal(&contexts[i], &prefixes[i])
    }

    /// The effects of a scratch run, through the core, of a new node with context `ctx` that
    /// starts and then takes `inputs`: what the model's actor does at its first start (the
    /// core is deterministic).
    fn scratch_run(ctx: &Context, inputs: &[Input]) -> Vec<Effect> {
        let mut node = NodeState::new();
        let mut effects: Vec<Effect> = node.step(ctx, NOW, Input::Start).into_iter().collect();
        for input in inputs {
            effects.extend(node.step(ctx, NOW, input.clone()));
        }
        effects
    }

    /// The last proposal a node with context `ctx` makes in a scratch run of its start and
    /// `prefix`.
    fn last_proposal(ctx: &Context, prefix: &[Input]) -> Option<Proposal> {
        Self::scratch_run(ctx, prefix)
            .into_iter()
            .rev()
            .find_map(|e| match e {
                Effect::Broadcast(Message::Proposal(p)) => Some(*p),
                _ => None,
            })
    }

    /// What a reviser (see [`Fault::Reviser`]) sends at its start besides what its correct
    /// code sends: to every other member, the revision 1 that its core makes in a scratch run
    /// of its start-up prefix followed by [`Self::self_objection`], and its endorsement of it.
    fn reviser_lies(ctx: &Context, prefix: &[Input], genesis: &Genesis) -> Vec<(NodeId, Message)> {
        let first = Self::last_proposal(ctx, prefix).expect("the reviser proposes revision 0");
        let objection =
            Self::self_objection(ctx, &first).expect("a reviser's batch has a bid to leave out");
        let mut scratch = prefix.to_vec();
        scratch.push(objection);
        // The other members have not answered revision 0 in the scratch run: the primary
        // revises when its wait for them ends (spec 2.6).
        let (view0, revision0) = first.round().into();
        scratch.push(Input::Timer(Timer::Revise(
            first.header.height,
            view0,
            revision0,
        )));
        let revised = Self::last_proposal(ctx, &scratch).expect("the objection makes a revision");
        let (view, revision) = revised.round().into();
        assert_eq!(revision, revision0 + 1, "the objection makes revision 1");
        let endorsement = Signed::sign(
            Vote {
                kind: VoteKind::Endorse,
                chain_id: ctx.chain_id,
                height: revised.header.height,
                view,
                revision,
                block: revised.stamp.body.block,
                voter: ctx.me,
            },
            ctx.signer.as_ref(),
        );
        genesis
            .members
            .iter()
            .filter(|m| m.id != ctx.me)
            .flat_map(|m| {
                [
                    (m.id, Message::Proposal(Box::new(revised.clone()))),
                    (m.id, Message::Vote(endorsement.clone())),
                ]
            })
            .collect()
    }

    /// A missing-batch objection of the member's own to its proposal `first`, carrying a second
    /// batch of its own for the height with its last bid left out (a home node equivocating on
    /// its batch), which the core takes into revision 1. None if its batch has no bid to leave
    /// out.
    fn self_objection(ctx: &Context, first: &Proposal) -> Option<Input> {
        let own = first
            .body
            .process
            .batches
            .iter()
            .find(|b| b.body.home == ctx.me)?;
        let mut bids = own.body.bids.clone();
        let mut received = own.body.received.clone();
        bids.pop()?;
        received.pop()?;
        let other = Signed::sign(
            BidBatch {
                bids,
                received,
                ..own.body.clone()
            },
            ctx.signer.as_ref(),
        );
        Some(Input::Message {
            from: ctx.me,
            msg: Self::missing_batch_objection(ctx, first, other),
        })
    }

    /// Member `ctx.me`'s signed missing-batch objection to proposal `p`, carrying `batch`
    /// (whatever batch it is: a lie is the caller's).
    fn missing_batch_objection(ctx: &Context, p: &Proposal, batch: SignedBatch) -> Message {
        let (view, revision) = p.round().into();
        let objection = Signed::sign(
            Objection {
                chain_id: ctx.chain_id,
                height: p.header.height,
                view,
                revision,
                block: p.stamp.body.block,
                objector: ctx.me,
                reason: ObjectionReason::MissingBatch {
                    batch: batch.body_digest(),
                },
            },
            ctx.signer.as_ref(),
        );
        Message::Objection(Box::new(objection), Some(Box::new(batch)))
    }

    /// What a liar (`ctx.me`) sends at its start, besides what its correct code sends: to the
    /// primary of view 1, a skip vote for view 0 of height 1 whose lock is an endorsement
    /// certificate for a block nobody proposed, signed by the liar alone; to every other
    /// member, a view certificate for view 0 whose votes claim to be the others' skip votes
    /// but are signed by the liar; and to the primary of view 0, two missing-batch objections
    /// to its first proposal (`first`), one carrying another home's batch, one carrying a batch
    /// the liar signed for height 2. Honest nodes must be moved by none of them (L1, S2, V10).
    fn lies(
        &self,
        ctx: &Context,
        genesis: &Genesis,
        first: Option<&Proposal>,
    ) -> Vec<(NodeId, Message)> {
        let chain_id = genesis.chain_id();
        let (height, view) = (1, 0);
        let fake = tieline_core::crypto::sha256(&[b"a block nobody proposed"]);
        let vote = Vote {
            kind: VoteKind::Endorse,
            chain_id,
            height,
            view,
            revision: 0,
            block: fake,
            voter: ctx.me,
        };
        let lock = QuorumCertificate {
            kind: VoteKind::Endorse,
            height,
            view,
            revision: 0,
            block: fake,
            signatures: vec![VoteSignature {
                voter: ctx.me,
                signature: Signed::sign(vote, ctx.signer.as_ref()).signature,
            }],
        };
        let skip = |voter: NodeId, lock: Option<QuorumCertificate>| {
            Signed::sign(
                SkipVote {
                    chain_id,
                    height,
                    view,
                    voter,
                    lock,
                    held: Vec::new(),
                },
                ctx.signer.as_ref(),
            )
        };
        let mut lies = vec![(
            genesis.primary(height, view + 1),
            Message::Skip(Box::new(skip(ctx.me, Some(lock))), None, Vec::new()),
        )];
        let forged = SkipCertificate {
            height,
            view,
            votes: genesis.members.iter().map(|m| skip(m.id, None)).collect(),
        };
        for m in genesis.members.iter().filter(|m| m.id != ctx.me) {
            lies.push((
                m.id,
                Message::ViewCertificate(Box::new(forged.clone()), Vec::new()),
            ));
        }
        let Some(first) = first.filter(|p| p.stamp.body.voter != ctx.me) else {
            return lies;
        };
        let another_homes = first
            .body
            .process
            .batches
            .iter()
            .find(|b| b.body.home != ctx.me)
            .cloned();
        let later_height = Signed::sign(
            BidBatch {
                chain_id,
                height: height + 1,
                home: ctx.me,
                bids: Vec::new(),
                received: Vec::new(),
                changes: Vec::new(),
            },
            ctx.signer.as_ref(),
        );
        for batch in another_homes.into_iter().chain([later_height]) {
            lies.push((
                first.stamp.body.voter,
                Self::missing_batch_objection(ctx, first, batch),
            ));
        }
        lies
    }

    /// The stateright model of this scenario, with every node running `mutation` (if any),
    /// bounded by `bounds`.
    pub fn model(&self, bounds: Bounds, mutation: Option<Mutation>) -> Model {
        let genesis = Arc::new(self.genesis.clone());
        let chain_id = genesis.chain_id();
        let scheme: Arc<dyn SignatureScheme> = Arc::new(SymbolicScheme);
        let clearing = model_rule(genesis.clearing.rule);
        // Actors: one per member (several for a twinned member), then the participants.
        let mut topology = Topology::default();
        let mut contexts: Vec<Context> = Vec::new();
        let mut actor_faults: Vec<Fault> = Vec::new();
        let faulty: BTreeSet<NodeId> = self.faults.keys().copied().collect();
        let mut security: BTreeMap<NodeId, Arc<dyn SecurityCheck>> = BTreeMap::new();
        for m in &genesis.members {
            let check: Arc<dyn SecurityCheck> = match self.security.get(&m.id) {
                Some(list) => Arc::new(list.clone()),
                None => Arc::new(NoGridModel),
            };
            security.insert(m.id, check.clone());
            let faults = self.faults.get(&m.id).cloned().unwrap_or(vec![Fault::Twin]);
            for fault in faults {
                let mut ctx = Context::new(
                    genesis.clone(),
                    m.id,
                    signer(m.public_key),
                    scheme.clone(),
                    clearing,
                    check.clone(),
                );
                match fault {
                    Fault::Twin | Fault::Liar | Fault::Reviser => {}
                    Fault::TamperedClearing => ctx.clearing = &TAMPERED_UNIFORM,
                    Fault::Impostor => {
                        // A rotation period of 2 makes members[0] the primary of (1, 0).
                        let mut g = (*genesis).clone();
                        g.rotation_period = 2;
                        ctx.genesis = Arc::new(g);
                    }
                }
                if let Some(m) = mutation {
                    ctx.rules = m.rules();
                }
                actor_faults.push(fault);
                let id = Id::from(contexts.len());
                topology.member_actors.entry(m.id).or_default().push(id);
                topology.member_of.push(Some(m.id));
                contexts.push(ctx);
            }
        }
        let first_participant = contexts.len();
        for (k, s) in self.scripts.iter().enumerate() {
            let p = &genesis.participants[s.participant];
            topology
                .participant_actors
                .insert(p.id, Id::from(first_participant + k));
            topology.member_of.push(None);
        }
        let topology = Arc::new(topology);
        let mut prefixes = self.prefixes(&contexts);
        let first = self.first_proposal(&contexts, &prefixes);
        let revisions: Vec<Vec<(NodeId, Message)>> = actor_faults
            .iter()
            .zip(&contexts)
            .zip(&prefixes)
            .map(|((fault, ctx), prefix)| match fault {
                Fault::Reviser => Self::reviser_lies(ctx, prefix, &genesis),
                _ => Vec::new(),
            })
            .collect();
        // Remembered transitions are keyed by the actor's context: this model's and its own.
        let model_key = NEXT_MODEL.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 8;
        let mut actors: Vec<Agent> = contexts
            .into_iter()
            .enumerate()
            .map(|(i, ctx)| {
                let liar = self
                    .faults
                    .get(&ctx.me)
                    .is_some_and(|f| f.contains(&Fault::Liar));
                let mut lies = if liar {
                    self.lies(&ctx, &genesis, first.as_ref())
                } else {
                    Vec::new()
                };
                lies.extend(revisions[i].iter().cloned());
                let on_height = self
                    .later_bids
                    .iter()
                    .filter(|(_, home, _)| *home == ctx.me)
                    .map(|(h, _, b)| (*h, Input::Bid(b.clone())))
                    .collect();
                Agent::Node(Box::new(NodeAgent {
                    ctx,
                    topology: topology.clone(),
                    watch: faulty.clone(),
                    key: model_key | i,
                    on_height,
                    prefix: std::mem::take(&mut prefixes[i]),
                    lies,
                }))
            })
            .collect();
        for s in &self.scripts {
            let p = &genesis.participants[s.participant];
            actors.push(Agent::Participant(Box::new(ParticipantAgent {
                id: p.id,
                home: topology.actors_of(p.home)[0],
                signer: signer(p.public_key),
                chain_id,
                bid: self.bid(s),
                appeal: s.appeal,
                bid_in_prefix: self.after_collection,
            })));
        }
        let setup = Setup {
            name: self.name,
            genesis: genesis.clone(),
            chain_id,
            scheme,
            clearing,
            bounds,
            faulty,
            member_of: topology.member_of.clone(),
            security: security
                .into_iter()
                .filter(|(m, _)| !self.faults.contains_key(m))
                .collect(),
            crashes: self.max_crashes > 0,
            atomic_restart: !self.two_step_crash,
            misses_decided: self.misses_decided.map(|m| topology.actors_of(m)[0].into()),
            authorised: self
                .changes
                .iter()
                .filter_map(|(_, c)| match &c.record.change {
                    RegistryChange::Admit(p)
                        if c.signatures.iter().any(|s| s.by == Party::Member(p.home)) =>
                    {
                        Some(p.id)
                    }
                    _ => None,
                })
                .collect(),
        };
        let actors = ActorModel::new(setup, Ceiling(bounds.max_height + 1))
            .actors(actors)
            .init_network(Network::new_unordered_duplicating([]))
            .max_crashes(self.max_crashes)
            .within_boundary(properties::within_boundary);
        let checked = properties::catalogue()
            .into_iter()
            .filter(|p| (p.applies)(self))
            .map(|p| stateright::Property {
                expectation: p.expectation,
                name: p.name,
                condition: p.condition,
            })
            .collect();
        Model::new(actors, checked)
    }
}
