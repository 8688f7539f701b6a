//! The spec's protocol properties (spec part 2, 2.13) as named predicates over the model's
//! global state: every node's state and storage, the messages on the network that a node can
//! still act on (in a lossless duplicating network every message ever sent stays there; see
//! `model::representative` for why the dead ones are not read), with N2's ghost in the
//! model's storage (the batches each node held at its skip votes).
//!
//! Each property carries the id of the spec property it checks. Safety is `always`; liveness
//! and fault skip are `always` over bounded runs ("the bound was reached, or every live node
//! decided") plus `sometimes` reachability.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use stateright::actor::ActorModelAction;
use stateright::{Expectation, Model as _};
use tieline_core::audit::{AuditSummary, verify_block};
use tieline_core::block::{
    AppealClaim, AppealResolution, Block, BlockBody, BlockHeader, ObjectionReason,
    QuorumCertificate, Vote, VoteKind,
};
use tieline_core::clearing::{Cleared, ClearingInput};
use tieline_core::consensus::content::{
    CommittedNonces, ContentRules, advance_nonces, select_bids, unavailable_areas,
};
use tieline_core::consensus::{
    CutValues, MAX_FALLBACK_LEVELS, Message, NodeState, Proposal, Record, Reply,
};
use tieline_core::crypto::{Digest, Signed};
use tieline_core::genesis::Genesis;
use tieline_core::market::SignedBid;
use tieline_core::registry::Registry;
use tieline_core::units::NodeId;

use crate::model::{
    Action, Model, Msg, NodeView, Places, State, Store, Wire, live_messages, representative,
};
use crate::scenario::{Scenario, Setup};

/// A checker property: its spec id, its name in reports, and its predicate.
pub struct PropertyDef {
    /// The spec property it checks.
    pub id: &'static str,
    /// Its name: the id, or the id and what a `sometimes` property looks for.
    pub name: &'static str,
    /// `always` or `sometimes`.
    pub expectation: Expectation,
    /// The predicate.
    pub condition: fn(&Model, &State) -> bool,
    /// Whether a scenario checks it.
    pub applies: fn(&Scenario) -> bool,
}

fn every(_: &Scenario) -> bool {
    true
}

/// Every checker property.
pub fn catalogue() -> Vec<PropertyDef> {
    use Expectation::{Always, Sometimes};
    let always = |id, condition| PropertyDef {
        id,
        name: id,
        expectation: Always,
        condition,
        applies: every,
    };
    vec![
        always("S1", s1),
        always("S2", s2),
        always("S3", s3),
        always("S4", s4),
        always("V1", v1),
        always("V2", v2),
        always("V3", v3),
        always("V4", v4),
        always("V5", v5),
        always("V6", v6),
        always("V7", v7),
        always("V8", v8),
        always("V9", v9),
        always("V10", v10),
        always("L1", l1),
        always("L2", l2),
        always("L3", l3),
        always("L4", l4),
        always("N1", n1),
        always("N2", n2),
        always("N3", n3),
        always("A1", a1),
        always("A2", a2),
        always("A5", a5),
        PropertyDef {
            id: "A1",
            name: "A1: a participant admitted on chain trades",
            expectation: Sometimes,
            condition: a1_reached,
            applies: |s| !s.changes.is_empty(),
        },
        PropertyDef {
            id: "A2",
            name: "A2: a block committed after a revocation",
            expectation: Sometimes,
            condition: a2_reached,
            applies: |s| !s.changes.is_empty(),
        },
        PropertyDef {
            id: "L1",
            name: "L1: decided in view 1 after the view-0 primary crashed",
            expectation: Sometimes,
            condition: l1_reached,
            applies: |s| s.max_crashes > 0 && s.bounds.max_view >= 1,
        },
        PropertyDef {
            id: "L4",
            name: "L4: a node decided a block whose certificate lacks its vote (caught up)",
            expectation: Sometimes,
            condition: l4_reached,
            applies: |s| s.max_crashes > 0 || s.misses_decided.is_some(),
        },
        PropertyDef {
            id: "S4",
            name: "S4: a correct node holds evidence of the equivocation",
            expectation: Sometimes,
            condition: s4_reached,
            // A member run as twins can equivocate.
            applies: |s| s.faults.values().any(|twins| twins.len() > 1),
        },
        PropertyDef {
            id: "L3",
            name: "L3: decided at revision 1 after an objection",
            expectation: Sometimes,
            condition: l3_reached,
            applies: |s| !s.security.is_empty(),
        },
        PropertyDef {
            id: "L3",
            name: "L3: decided by the fallback past the revision bound",
            expectation: Sometimes,
            condition: l3_fallback_reached,
            applies: |s| !s.security.is_empty() && s.genesis.max_revisions == 0,
        },
        PropertyDef {
            id: "L5",
            name: "L5: an objection to an earlier revision of the view is answered",
            expectation: Sometimes,
            condition: l5_reached,
            // Two members object to one revision with different cuts.
            applies: |s| s.security.len() >= 2,
        },
        PropertyDef {
            id: "V5",
            name: "V5: an appeal upheld, recorded and told",
            expectation: Sometimes,
            condition: v5_upheld,
            // A block commits with an omitted bid upheld only if a quorum without the bid's
            // home endorses it: with two members the home must endorse, and it objects to its
            // missing batch first.
            applies: |s| s.scripts.iter().any(|p| p.appeal.is_some()) && s.genesis.n() >= 3,
        },
        PropertyDef {
            id: "V5",
            name: "V5: an appeal rejected, recorded and told",
            expectation: Sometimes,
            condition: v5_rejected,
            applies: |s| s.scripts.iter().any(|p| p.appeal.is_some()),
        },
        PropertyDef {
            id: "V5",
            name: "V5: an appeal past the revision bound is not recorded, and its participant told",
            expectation: Sometimes,
            condition: v5_unrecorded,
            // Revisions that record no appeal are within the bounds.
            applies: |s| {
                s.scripts.iter().any(|p| p.appeal.is_some())
                    && s.bounds.max_revision >= s.genesis.max_revisions
            },
        },
        PropertyDef {
            id: "L2",
            name: "L2: every correct node decided",
            expectation: Sometimes,
            condition: all_decided,
            applies: every,
        },
    ]
}

// ----- reading the state -----

/// A correct member's actor: its index, member id, view, storage and whether it is down.
struct Correct<'a> {
    index: usize,
    member: NodeId,
    view: &'a NodeView,
    store: &'a Store,
    crashed: bool,
}

fn empty_store() -> &'static Store {
    static EMPTY: std::sync::OnceLock<Store> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Store::default)
}

fn correct<'a>(model: &'a Model, state: &'a State) -> impl Iterator<Item = Correct<'a>> + 'a {
    let setup = &model.cfg;
    state
        .actor_states
        .iter()
        .enumerate()
        .filter(|(i, _)| setup.is_correct_node(*i))
        .filter_map(move |(i, s)| {
            let view = s.node()?;
            Some(Correct {
                index: i,
                member: setup.member_of[i]?,
                view,
                store: state
                    .actor_storages
                    .get(i)
                    .and_then(Option::as_ref)
                    .map_or(empty_store(), |s| s.as_ref()),
                crashed: state.crashed.get(i).copied().unwrap_or(false),
            })
        })
}

fn node_views(state: &State) -> impl Iterator<Item = &NodeView> {
    state.actor_states.iter().filter_map(|s| s.node())
}

/// Every message ever sent that a node can still act on (see [`representative`]), with its
/// sender's actor index. A message about a height, or a view of it, that every node has left is
/// no longer seen: the properties checked it in every state in which it was live, and no vote,
/// proposal or certificate of that height or view can be sent after (only its decided block
/// again, which is in the stores; a node's own votes stay in its log until the height ends).
fn sent(state: &State) -> impl Iterator<Item = (usize, &Msg)> {
    sent_wires(state).map(|(i, w)| (i, w.msg()))
}

/// [`sent`], with each message as it travels (shared).
fn sent_wires(state: &State) -> impl Iterator<Item = (usize, &Wire)> {
    // A representative holds live messages only: its network needs no filter.
    let all = evaluating(state);
    let (every, live) = if all {
        (Some(state.network.iter_all()), None)
    } else {
        (None, Some(live_messages(state)))
    };
    every
        .into_iter()
        .flatten()
        .chain(live.into_iter().flatten())
        .map(|e| (usize::from(e.src), e.msg))
}

/// Every proposal on the network, by round and block digest (kept as its message, shared).
fn proposals(state: &State) -> Rc<Proposals> {
    shared(
        state,
        |s| &mut s.proposals,
        || {
            let mut out = BTreeMap::new();
            for (_, w) in sent_wires(state) {
                if let Msg::Node(Message::Proposal(p)) = w.msg() {
                    let (v, r) = p.round().into();
                    out.entry((v, r, p.stamp.body.block))
                        .or_insert_with(|| w.clone());
                }
            }
            out
        },
    )
}

/// The proposal a message of [`proposals`] carries.
fn proposal(w: &Wire) -> &Proposal {
    match w.msg() {
        Msg::Node(Message::Proposal(p)) => p,
        _ => unreachable!("proposals() keeps proposals only"),
    }
}

/// Block bodies by digest, from every proposal on the network and every block a node locked
/// on (in its log) or decided.
fn bodies(state: &State) -> BTreeMap<Digest, (&BlockHeader, &BlockBody)> {
    let mut out = BTreeMap::new();
    for (_, m) in sent(state) {
        if let Msg::Node(Message::Proposal(p)) = m {
            out.entry(p.stamp.body.block)
                .or_insert((&p.header, &*p.body));
        }
    }
    for v in node_views(state) {
        for r in &v.store.0.records {
            if let Record::Lock(qc, p) = r {
                out.entry(qc.block).or_insert((&p.header, &*p.body));
            }
        }
        // The digest as the block's certificate names it: V2 checks that it is the header's,
        // and it needs no hashing in every state.
        for b in &v.store.0.blocks {
            out.entry(b.certificate.block)
                .or_insert((&b.header, &b.body));
        }
    }
    out
}

/// Every signed vote in the system, with the actor it was found at: votes and proposal stamps
/// on the network, the votes of every certificate on the network (a primary's own vote travels
/// only inside the certificates it gathers), the votes in every node's log, and the votes of
/// the commit certificate of every block a node stored (a sync response carries blocks from
/// its sender's store, so its votes stay visible here after it dies).
fn signed_votes(model: &Model, state: &State) -> Rc<Votes> {
    shared(
        state,
        |s| &mut s.votes,
        || {
            let chain_id = model.cfg.chain_id;
            let mut out = Vec::new();
            let mut owned = |i: usize, c: &QuorumCertificate| {
                out.extend(c.signed_votes(chain_id).map(|v| (i, v)));
            };
            let mut borrowed = Vec::new();
            for (i, m) in sent(state) {
                match m {
                    Msg::Node(Message::Vote(v)) => borrowed.push((i, v)),
                    Msg::Node(Message::Proposal(p)) => borrowed.push((i, &p.stamp)),
                    Msg::Node(Message::Endorsed(c)) => owned(i, c),
                    Msg::Node(Message::Decided(b)) => owned(i, &b.certificate),
                    Msg::Node(Message::SyncResponse(bs)) => {
                        bs.iter().for_each(|b| owned(i, &b.certificate))
                    }
                    _ => {}
                }
            }
            for (i, a) in state.actor_states.iter().enumerate() {
                let Some(v) = a.node() else {
                    continue;
                };
                borrowed.extend(v.store.0.records.iter().filter_map(|r| match r {
                    Record::Vote(v) => Some((i, v)),
                    _ => None,
                }));
                for b in &v.store.0.blocks {
                    owned(i, &b.certificate);
                }
            }
            out.extend(borrowed.into_iter().map(|(i, v)| (i, v.clone())));
            out
        },
    )
}

/// The endorse votes of correct members.
fn correct_endorsements(model: &Model, state: &State) -> Rc<Vec<Vote>> {
    shared(
        state,
        |s| &mut s.endorsements,
        || {
            signed_votes(model, state)
                .iter()
                .map(|(_, v)| v.body.clone())
                .filter(|v| v.kind == VoteKind::Endorse && !model.cfg.faulty.contains(&v.voter))
                .collect()
        },
    )
}

/// What the chain before a height decides for the blocks at that height: the committed
/// nonces and the registry (the genesis with the changes of the earlier blocks, spec A5).
struct Before {
    committed: CommittedNonces,
    registry: Registry,
    genesis: Arc<Genesis>,
}

/// The chain `blocks` before height `h`, replayed with the core's own rules.
fn before(setup: &Setup, blocks: &[Block], h: u64) -> Before {
    let mut committed = CommittedNonces::new();
    let mut registry = Registry::default();
    for b in blocks.iter().filter(|b| b.header.height < h) {
        advance_nonces(&mut committed, &b.body);
        registry.apply(
            &setup.genesis,
            &setup.chain_id,
            setup.scheme.as_ref(),
            b.header.height,
            &b.body.process.batches,
        );
    }
    let genesis = registry.genesis(&setup.genesis);
    Before {
        committed,
        registry,
        genesis,
    }
}

/// The chain before `header` on any correct chain that links to it.
fn before_header(model: &Model, state: &State, header: &BlockHeader) -> Before {
    let setup = &model.cfg;
    for c in correct(model, state) {
        let blocks = &c.store.blocks;
        let linked = if header.height == 1 {
            true
        } else {
            blocks
                .get(header.height as usize - 2)
                .is_some_and(|b| b.digest() == header.previous)
        };
        if linked {
            return before(setup, blocks, header.height);
        }
    }
    before(setup, &[], header.height)
}

thread_local! {
    /// Verdicts on block contents, which depend only on the block (its digest) and the
    /// checking member: memoised, since the same block appears in many states.
    static VERDICTS: RefCell<HashMap<(u8, Digest, NodeId), bool>> = RefCell::new(HashMap::new());
    /// Verdicts on quorum certificates (V9), by a hash of the certificate and the header.
    static CERTIFICATES: RefCell<HashMap<u64, bool>> = RefCell::new(HashMap::new());
    /// The members whose signatures a block needs beyond the quorum (D12), by block digest.
    static REQUIRED: RefCell<HashMap<Digest, Vec<NodeId>>> = RefCell::new(HashMap::new());
}

fn memo(kind: u8, digest: Digest, member: NodeId, f: impl FnOnce() -> bool) -> bool {
    if let Some(v) = VERDICTS.with(|m| m.borrow().get(&(kind, digest, member)).copied()) {
        return v;
    }
    let v = f();
    VERDICTS.with(|m| m.borrow_mut().insert((kind, digest, member), v));
    v
}

fn rules<'a>(setup: &'a Setup, before: &'a Before) -> ContentRules<'a> {
    ContentRules {
        genesis: &before.genesis,
        chain_id: setup.chain_id,
        scheme: setup.scheme.as_ref(),
        clearing: setup.clearing,
        committed: &before.committed,
    }
}

/// The bid-signature check of the content rules, with the scenario's signature scheme.
fn bid_signatures(
    setup: &Setup,
) -> impl FnMut(&SignedBid, &tieline_core::crypto::PublicKey) -> bool + use<> {
    let scheme = setup.scheme.clone();
    move |sb, key| sb.verify(scheme.as_ref(), key).is_ok()
}

/// Runs `f` on the clearing input and proposed result of a body.
fn with_clearing<R>(
    setup: &Setup,
    header: &BlockHeader,
    body: &BlockBody,
    before: &Before,
    f: impl FnOnce(&ClearingInput<'_>, &Cleared) -> R,
) -> R {
    let mut check = bid_signatures(setup);
    let g = &before.genesis;
    let selection = select_bids(
        g,
        &setup.chain_id,
        &body.process,
        header.height,
        header.revision,
        &before.committed,
        &mut check,
    );
    let (input, _) = selection.into_input(g, &body.process);
    let cleared = body.cleared();
    f(&input, &cleared)
}

/// The bids a body carries: every batch's, then every upheld omission's.
fn carried(body: &BlockBody) -> Vec<&SignedBid> {
    let p = &body.process;
    p.batches
        .iter()
        .flat_map(|b| b.body.bids.iter())
        .chain(
            p.appeals
                .iter()
                .filter_map(|a| a.upheld_omission().map(|(bid, _)| bid)),
        )
        .collect()
}

// ----- bounds -----

/// The search bounds: no node beyond the last height (a node that decided it waits with its
/// next gate open), view or revision, and no skip vote for the last view (it could only lead
/// beyond the view bound; a node that would time out there has reached the bound).
pub fn within_boundary(setup: &Setup, state: &State) -> bool {
    let b = setup.bounds;
    let crashes = crate::model::crashes_spent(state);
    // Only management nodes crash: a participant's crash adds states and no behaviour.
    let participant_down = state
        .crashed
        .iter()
        .enumerate()
        .any(|(i, c)| *c && setup.member_of.get(i).copied().flatten().is_none());
    crashes <= b.max_crashes
        && !participant_down
        && node_views(state).all(|v| {
            let n = &v.node;
            n.height <= b.max_height + 1
                && !(n.height == b.max_height + 1 && n.intake.gate_closed)
                && n.view <= b.max_view
                && n.round
                    .proposal
                    .as_ref()
                    .is_none_or(|p| p.round().revision <= b.max_revision)
                && n.ballot.voted.keys().all(|k| k.revision <= b.max_revision)
                && n.skip.skips.get(&b.max_view).is_none_or(|m| m.is_empty())
        })
}

fn decided(setup: &Setup, n: &NodeState) -> bool {
    n.height > setup.bounds.max_height
}

/// Whether a run has reached a bound: a live correct node can go on only by voting to skip
/// the last view (its view timer is armed, and the core says its next skip vote is for that
/// view: it is in it, or it voted to skip every view before it and their primaries are
/// silent), or a revision at the bound was voted on. `down` is a node taken as down (see
/// [`l2`]).
fn at_bound(model: &Model, state: &State, down: Option<usize>) -> bool {
    let b = model.cfg.bounds;
    correct(model, state).any(|c| {
        let n = &c.view.node;
        let skip_next = !c.crashed
            && Some(c.index) != down
            && n.next_skip_view(c.member) == b.max_view
            && state.timers_set.get(c.index).is_some_and(|t| {
                t.iter()
                    .any(|t| *t == tieline_core::consensus::Timer::View(n.height, n.view))
            });
        skip_next || n.ballot.voted.keys().any(|k| k.revision >= b.max_revision)
    })
}

fn same_state(a: &State, b: &State) -> bool {
    representative(a) == representative(b)
}

thread_local! {
    /// The actors that can go on in the state whose properties are being evaluated, as the
    /// search that computed its successors found (see [`with_progress`]).
    static PROGRESS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Evaluates the properties of `state`, a representative (its network holds live messages
/// only), in `f`, knowing which actors can go on in it (bit i: some delivery to actor i or
/// timer of actor i changes the state within the bounds): the search computed the successors
/// already, and L2 then reads this answer instead of computing them again. What several
/// properties derive from the state (its signed votes, the correct endorsements) is computed
/// once for all of them ([`Shared`]).
pub fn with_progress<R>(state: &State, movers: u64, f: impl FnOnce() -> R) -> R {
    PROGRESS.with(|p| p.set(Some(movers)));
    SHARED.with(|s| {
        *s.borrow_mut() = Some(Shared {
            state: std::ptr::from_ref(state) as usize,
            ..Shared::default()
        })
    });
    let r = f();
    PROGRESS.with(|p| p.set(None));
    SHARED.with(|s| *s.borrow_mut() = None);
    r
}

/// Signed votes, each with the actor it was found at ([`signed_votes`]).
type Votes = Vec<(usize, Signed<Vote>)>;
/// Proposals by round and block digest, as their messages ([`proposals`]).
type Proposals = BTreeMap<(u32, u32, Digest), Wire>;

/// What the properties of the state being evaluated share (see [`with_progress`]): the
/// state's address, and what was derived from it so far.
#[derive(Default)]
struct Shared {
    state: usize,
    votes: Option<Rc<Votes>>,
    endorsements: Option<Rc<Vec<Vote>>>,
    proposals: Option<Rc<Proposals>>,
    endorsed: Option<Rc<Vec<(NodeId, Wire)>>>,
}

thread_local! {
    static SHARED: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

/// Whether `state` is the representative [`with_progress`] is evaluating.
fn evaluating(state: &State) -> bool {
    SHARED.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|s| s.state == std::ptr::from_ref(state) as usize)
    })
}

/// `make()`, computed once per evaluated state and kept in the `slot` of [`Shared`]; computed
/// afresh for any other state.
fn shared<T>(
    state: &State,
    slot: impl Fn(&mut Shared) -> &mut Option<Rc<T>>,
    make: impl FnOnce() -> T,
) -> Rc<T> {
    if !evaluating(state) {
        return Rc::new(make());
    }
    if let Some(v) = SHARED.with(|s| s.borrow_mut().as_mut().and_then(|s| slot(s).clone())) {
        return v;
    }
    let v = Rc::new(make());
    SHARED.with(|s| {
        if let Some(s) = s.borrow_mut().as_mut() {
            *slot(s) = Some(v.clone());
        }
    });
    v
}

/// The actor whose step `action` is, for a delivery or a timer (a crash, a recovery or a drop
/// is no step of a running actor).
pub fn mover(action: &Action) -> Option<usize> {
    match action {
        ActorModelAction::Deliver { dst, .. } => Some(usize::from(*dst)),
        ActorModelAction::Timeout(id, _) => Some(usize::from(*id)),
        _ => None,
    }
}

/// The bit of actor `i` in a set of movers.
pub fn bit(i: usize) -> u64 {
    1u64.checked_shl(i as u32).unwrap_or(0)
}

/// The actors some delivery or timer of which (not a crash or a recovery) changes the state
/// within the bounds.
fn movers(model: &Model, state: &State) -> u64 {
    if let Some(known) = PROGRESS.with(std::cell::Cell::get) {
        return known;
    }
    let mut actions = Vec::new();
    model.actions(state, &mut actions);
    let mut movers = 0;
    for a in actions {
        let Some(i) = mover(&a) else {
            continue;
        };
        if movers & bit(i) != 0 {
            continue;
        }
        if let Some(next) = model.next_state(state, a) {
            if stateright::Model::within_boundary(model, &next) && !same_state(&next, state) {
                movers |= bit(i);
            }
        }
    }
    movers
}

// ----- safety -----

/// S1: no two correct nodes commit different blocks at one height.
fn s1(model: &Model, state: &State) -> bool {
    let mut at: BTreeMap<u64, Digest> = BTreeMap::new();
    for c in correct(model, state) {
        for b in &c.store.blocks {
            let d = b.digest();
            if *at.entry(b.header.height).or_insert(d) != d {
                return false;
            }
        }
    }
    true
}

/// The certificates that can be formed from the votes on the network: (kind, height, view,
/// revision, block) with a quorum that includes every touched area's members (D11, D12).
fn certificates(model: &Model, state: &State) -> BTreeSet<(VoteKind, u64, u32, u32, Digest)> {
    let g = &model.cfg.genesis;
    let mut voters: BTreeMap<(VoteKind, u64, u32, u32, Digest), BTreeSet<NodeId>> = BTreeMap::new();
    for (_, v) in signed_votes(model, state).iter() {
        let b = &v.body;
        if b.kind != VoteKind::Propose {
            voters
                .entry((b.kind, b.height, b.view, b.revision, b.block))
                .or_default()
                .insert(b.voter);
        }
    }
    let bodies = bodies(state);
    voters
        .into_iter()
        .filter(|(k, signers)| {
            if signers.len() < g.quorum() {
                return false;
            }
            let Some((_, body)) = bodies.get(&k.4) else {
                return true;
            };
            // The touched areas' members depend only on the block: memoised by its digest.
            let required = REQUIRED.with(|m| {
                m.borrow_mut()
                    .entry(k.4)
                    .or_insert_with(|| body.required_signers(g))
                    .clone()
            });
            required.iter().all(|r| signers.contains(r))
        })
        .map(|(k, _)| k)
        .collect()
}

/// S2: once a commit certificate for B exists in a round, every endorsement certificate at
/// that height in a later round is for B.
fn s2(model: &Model, state: &State) -> bool {
    let certs = certificates(model, state);
    certs
        .iter()
        .filter(|c| c.0 == VoteKind::Commit)
        .all(|&(_, h, v, r, b)| {
            certs.iter().all(|&(kind, h2, v2, r2, b2)| {
                kind != VoteKind::Endorse || h2 != h || (v2, r2) <= (v, r) || b2 == b
            })
        })
}

/// S3: no correct node signs two different blocks of one kind in one round, even across a
/// crash (its signed votes and proposals stay on the network).
fn s3(model: &Model, state: &State) -> bool {
    let mut slots: BTreeMap<(NodeId, VoteKind, u64, u32, u32), Digest> = BTreeMap::new();
    for (_, v) in signed_votes(model, state).iter() {
        let b = &v.body;
        if model.cfg.faulty.contains(&b.voter) {
            continue;
        }
        let d = *slots
            .entry((b.voter, b.kind, b.height, b.view, b.revision))
            .or_insert(b.block);
        if d != b.block {
            return false;
        }
    }
    true
}

/// S4: evidence accuses only faulty members and verifies; a correct node that received two
/// conflicting votes of one voter in one slot at its height (proposals: from the round's
/// primary) holds the evidence.
fn s4(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    let fair = |e: &tieline_core::block::Evidence| {
        setup.faulty.contains(&e.offender()) && e.verify(&setup.genesis, setup.scheme.as_ref())
    };
    for c in correct(model, state) {
        if !c.view.node.ballot.evidence.iter().all(fair) {
            return false;
        }
        if c.store
            .blocks
            .iter()
            .any(|b| !b.body.process.evidence.iter().all(fair))
        {
            return false;
        }
        if c.crashed {
            continue;
        }
        let n = &c.view.node;
        let got: Vec<&Signed<Vote>> = c
            .view
            .received_votes
            .iter()
            .filter(|v| v.body.height == n.height)
            .filter(|v| {
                v.body.kind != VoteKind::Propose
                    || v.body.voter == setup.genesis.primary(v.body.height, v.body.view)
            })
            .collect();
        for (i, a) in got.iter().enumerate() {
            for b in &got[i + 1..] {
                let (x, y) = (&a.body, &b.body);
                let conflict = x.voter == y.voter
                    && x.kind == y.kind
                    && (x.view, x.revision) == (y.view, y.revision)
                    && x.block != y.block;
                if conflict
                    && !n.ballot.evidence.iter().any(|e| {
                        (e.first == **a && e.second == **b) || (e.first == **b && e.second == **a)
                    })
                {
                    return false;
                }
            }
        }
    }
    for (_, m) in sent(state) {
        if let Msg::Node(Message::Proposal(p)) = m {
            if !setup.faulty.contains(&p.stamp.body.voter)
                && !p.body.process.evidence.iter().all(fair)
            {
                return false;
            }
        }
    }
    true
}

// ----- the registry (spec A1-A5) -----

/// A1: a correct node's registry admits no participant but the genesis's and those whose
/// admission their home node's operator signed.
fn a1(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    correct(model, state).all(|c| {
        c.view.node.registry.is_genesis()
            || c.view
                .node
                .registry
                .genesis(&setup.genesis)
                .participants
                .iter()
                .all(|p| {
                    setup.genesis.participant(p.id).is_some() || setup.authorised.contains(&p.id)
                })
    })
}

/// A2: no block a correct node commits has a trade of a participant that the registry before
/// it does not hold (a revoked one, or one never admitted).
fn a2(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    correct(model, state).all(|c| {
        let blocks = &c.store.blocks;
        let changed = carries_changes(blocks);
        blocks.iter().all(|b| {
            let holds = |g: &Genesis| {
                b.body
                    .trades
                    .iter()
                    .all(|t| g.participant(t.participant).is_some())
            };
            if changed {
                holds(&before(setup, blocks, b.header.height).genesis)
            } else {
                holds(&setup.genesis)
            }
        })
    })
}

/// Whether any block of `blocks` carries a registry change (most scenarios have none, and
/// then the registry is the genesis at every height).
fn carries_changes(blocks: &[Block]) -> bool {
    blocks.iter().any(|b| b.body.process.has_changes())
}

/// A5: a correct node's registry is its chain's, replayed with the core's rules.
fn a5(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    correct(model, state).all(|c| {
        if !carries_changes(&c.store.blocks) {
            return c.view.node.registry.is_genesis();
        }
        before(setup, &c.store.blocks, u64::MAX).registry == c.view.node.registry
    })
}

fn a1_reached(model: &Model, state: &State) -> bool {
    let g = &model.cfg.genesis;
    correct(model, state).any(|c| {
        c.store.blocks.iter().any(|b| {
            b.body
                .trades
                .iter()
                .any(|t| g.participant(t.participant).is_none())
        })
    })
}

/// A block committed at or after a revocation's first height (where A2 is at stake: the
/// revoked participant bid at that height). A bid's refusal is not read from the network: the
/// search drops refusals as messages no node acts on.
fn a2_reached(model: &Model, state: &State) -> bool {
    correct(model, state).any(|c| {
        c.view
            .node
            .registry
            .revoked()
            .values()
            .any(|&from| c.store.blocks.iter().any(|b| b.header.height >= from))
    })
}

fn s4_reached(model: &Model, state: &State) -> bool {
    correct(model, state).any(|c| !c.view.node.ballot.evidence.is_empty())
}

// ----- validity -----

/// V1: a correct node endorses only a proposal signed by the rotation's primary for the
/// round, and a committed block's header names the rotation's primary for its view.
fn v1(model: &Model, state: &State) -> bool {
    let g = &model.cfg.genesis;
    let props = proposals(state);
    let floor = Places::of(state).floor;
    let endorsed_right = correct_endorsements(model, state).iter().all(|v| {
        match props.get(&(v.view, v.revision, v.block)).map(proposal) {
            Some(p) => p.stamp.body.voter == g.primary(v.height, v.view),
            // A vote in a node's log for a round every node has left: it was checked while
            // the proposal it endorses was live.
            None => (v.height, v.view) < (floor.height, floor.view),
        }
    });
    endorsed_right
        && correct(model, state).all(|c| {
            c.store
                .blocks
                .iter()
                .all(|b| b.header.primary == g.primary(b.header.height, b.header.view))
        })
}

/// V2: every block a correct node commits passes the audit (D15-D22, the content rules and a
/// re-run of its clearing), given the node's own chain before it; and every body a correct
/// primary proposes passes the same content rules.
fn v2(model: &Model, state: &State) -> bool {
    v2_blocks(model, state, |_, _| true) && v2_proposed(model, state)
}

/// V2 before the commit: a correct primary proposes only bodies the rules accept (the checks
/// every verifier and the audit make of a body, D19-D22 and V1-V9, but the members' private
/// grid checks), so no correct verifier objects `Invalid` to it and no view is lost to a
/// proposal of the primary's own making.
fn v2_proposed(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    correct(model, state).all(|c| {
        let Some(p) = &c.view.node.round.own else {
            return true;
        };
        memo(11, p.stamp.body.block, NodeId(0), || {
            let before = before_header(model, state, &p.header);
            let mut check = bid_signatures(setup);
            rules(setup, &before)
                .verify_body(p.header.height, p.header.revision, &p.body, &mut check)
                .is_ok()
        })
    })
}

/// V3: a bid is receipted once, and no bid is cleared twice on a correct node's chain.
fn v3(model: &Model, state: &State) -> bool {
    let mut receipted: BTreeMap<Digest, u64> = BTreeMap::new();
    for (_, m) in sent(state) {
        if let Msg::Reply(Reply::Receipt(r)) = m {
            if *receipted.entry(r.body.bid).or_insert(r.body.height) != r.body.height {
                return false;
            }
        }
    }
    correct(model, state).all(|c| {
        let pooled: Vec<Digest> = c
            .view
            .node
            .intake
            .pool
            .values()
            .flatten()
            .map(|(b, _)| b.body.id())
            .collect();
        let unique: BTreeSet<&Digest> = pooled.iter().collect();
        if unique.len() != pooled.len() {
            return false;
        }
        let mut cleared: BTreeSet<(tieline_core::units::ParticipantId, u64)> = BTreeSet::new();
        for b in &c.store.blocks {
            let rejected: BTreeMap<Digest, usize> =
                b.body
                    .process
                    .rejections
                    .iter()
                    .fold(BTreeMap::new(), |mut m, r| {
                        *m.entry(r.bid).or_insert(0) += 1;
                        m
                    });
            let mut count: BTreeMap<Digest, (usize, &SignedBid)> = BTreeMap::new();
            for sb in carried(&b.body) {
                count.entry(sb.body.id()).or_insert((0, sb)).0 += 1;
            }
            for (id, (n, sb)) in count {
                let kept = n.saturating_sub(rejected.get(&id).copied().unwrap_or(0));
                if kept > 1 {
                    return false;
                }
                if kept == 1 && !cleared.insert((sb.body.participant, sb.body.nonce)) {
                    return false;
                }
            }
        }
        true
    })
}

/// V4: a correct node endorses a new block only if its own batch is in it unchanged, unless
/// its area sat the view out.
fn v4(model: &Model, state: &State) -> bool {
    let g = &model.cfg.genesis;
    let props = proposals(state);
    let mut batches: BTreeMap<(NodeId, u64), &tieline_core::market::SignedBatch> = BTreeMap::new();
    for (_, m) in sent(state) {
        if let Msg::Node(Message::Batch(b)) = m {
            batches.entry((b.body.home, b.body.height)).or_insert(b);
        }
    }
    correct_endorsements(model, state).iter().all(|v| {
        let Some(p) = props.get(&(v.view, v.revision, v.block)).map(proposal) else {
            return true;
        };
        if p.header.view != v.view || p.header.revision != v.revision {
            return true; // a locked block proposed again (S2)
        }
        let Some(mine) = batches.get(&(v.voter, v.height)) else {
            return true;
        };
        let area = g.member(v.voter).map(|m| m.area);
        let sat_out = area.is_some_and(|a| {
            unavailable_areas(g, p.body.process.skip_certificate.as_ref()).contains(&a)
        });
        sat_out
            || p.body
                .process
                .batches
                .iter()
                .any(|b| b.body.home == v.voter && b == *mine)
    })
}

/// V5: every appeal recorded in a committed block is resolved by the rules (an upheld
/// omission's bid is carried; an "already included" bid is in a batch), and its participant is
/// told the recorded resolution by its home node once that node commits the block.
fn v5(model: &Model, state: &State) -> bool {
    let told: BTreeSet<(u64, AppealResolution)> = sent(state)
        .filter_map(|(_, m)| match m {
            Msg::Reply(Reply::AppealResolved { height, resolution }) => {
                Some((*height, *resolution))
            }
            _ => None,
        })
        .collect();
    correct(model, state).all(|c| {
        c.store.blocks.iter().all(|b| {
            let p = &b.body.process;
            let in_batches: BTreeSet<Digest> = p
                .batches
                .iter()
                .flat_map(|x| x.body.bids.iter().map(|sb| sb.body.id()))
                .collect();
            p.appeals.iter().all(|a| {
                let by_rule = match (&a.resolution, &a.appeal.body.claim) {
                    (AppealResolution::Upheld { .. }, AppealClaim::Omitted { bid, .. }) => {
                        !in_batches.contains(&bid.body.id())
                    }
                    (
                        AppealResolution::RejectedAlreadyIncluded,
                        AppealClaim::Omitted { bid, .. },
                    ) => in_batches.contains(&bid.body.id()),
                    (AppealResolution::Upheld { .. }, AppealClaim::Misallocated { .. }) => false,
                    _ => true,
                };
                let home_committed = a.via == c.member;
                by_rule && (!home_committed || told.contains(&(b.header.height, a.resolution)))
            })
        })
    })
}

fn appeal_told(model: &Model, state: &State, upheld: bool) -> bool {
    let told = sent(state).any(|(_, m)| {
        matches!(m, Msg::Reply(Reply::AppealResolved { resolution, .. })
            if matches!(resolution, AppealResolution::Upheld { .. }) == upheld)
    });
    told && correct(model, state).any(|c| {
        c.store.blocks.iter().any(|b| {
            b.body
                .process
                .appeals
                .iter()
                .any(|a| matches!(a.resolution, AppealResolution::Upheld { .. }) == upheld)
        })
    })
}

fn v5_upheld(model: &Model, state: &State) -> bool {
    appeal_told(model, state, true)
}

fn v5_rejected(model: &Model, state: &State) -> bool {
    appeal_told(model, state, false)
}

/// An appeal that met the revision bound: a correct node committed a block that records no
/// appeal, and the home told the participant that its appeal was not recorded (the scripted
/// appeals are valid, so a refusal at the home is not this).
fn v5_unrecorded(model: &Model, state: &State) -> bool {
    let told = sent(state).any(|(_, m)| matches!(m, Msg::Reply(Reply::AppealRejected { .. })));
    told && correct(model, state).any(|c| {
        c.store
            .blocks
            .iter()
            .any(|b| b.body.process.appeals.is_empty())
    })
}

/// The proposals correct nodes endorsed, once each.
fn endorsed(model: &Model, state: &State) -> Rc<Vec<(NodeId, Wire)>> {
    shared(
        state,
        |s| &mut s.endorsed,
        || {
            let props = proposals(state);
            let mut out: Vec<(NodeId, Wire)> = correct_endorsements(model, state)
                .iter()
                .filter_map(|v| {
                    props
                        .get(&(v.view, v.revision, v.block))
                        .map(|w| (v.voter, w.clone()))
                })
                .collect();
            out.sort_by_key(|(n, w)| (*n, proposal(w).stamp.body.block));
            out.dedup_by_key(|(n, w)| (*n, proposal(w).stamp.body.block));
            out
        },
    )
}

/// V6: a correct node endorses a block only if its outcome and trades are what the agreed
/// rule gives on the included bids with the accepted cuts.
fn v6(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    endorsed(model, state).iter().all(|(_, w)| {
        let p = proposal(w);
        memo(6, p.stamp.body.block, NodeId(0), || {
            let before = before_header(model, state, &p.header);
            with_clearing(setup, &p.header, &p.body, &before, |input, cleared| {
                setup.clearing.verify(input, cleared).is_ok()
            })
        })
    })
}

/// V7: a correct node endorses a block only if its own private security check passes on it
/// (every cut it would raise is already accepted in the block).
fn v7(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    endorsed(model, state).iter().all(|(who, w)| {
        let p = proposal(w);
        let Some(check) = setup.security.get(who) else {
            return true;
        };
        memo(7, p.stamp.body.block, *who, || {
            let before = before_header(model, state, &p.header);
            with_clearing(setup, &p.header, &p.body, &before, |input, cleared| {
                check
                    .check(input, cleared)
                    .iter()
                    .all(|c| p.body.process.clearing.cuts.contains(c))
            })
        })
    })
}

/// V8: every cut in an endorsed or committed block was raised by a member's signed security
/// objection recorded in it, and the outcome honours every cut.
fn v8(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    // Memoised by the block's digest as its stamp or certificate names it (V2 checks that a
    // stored block's certificate is for its header), not recomputed in every state.
    let check = |digest: Digest, header: &BlockHeader, body: &BlockBody| {
        memo(8, digest, NodeId(0), || {
            let p = &body.process;
            let objected = p.clearing.cuts.iter().all(|cut| {
                p.objections.iter().any(|o| {
                    let signed = setup
                        .genesis
                        .member(o.body.objector)
                        .is_some_and(|m| o.verify(setup.scheme.as_ref(), &m.public_key).is_ok());
                    signed
                        && matches!(&o.body.reason, ObjectionReason::Security { cuts } if cuts.contains(cut))
                })
            });
            let before = before_header(model, state, header);
            objected
                && with_clearing(setup, header, body, &before, |input, cleared| {
                    let values = CutValues::new(input, cleared);
                    p.clearing
                        .cuts
                        .iter()
                        .all(|cut| cut.honoured_by(values.of(cut)))
                })
        })
    };
    endorsed(model, state)
        .iter()
        .map(|(_, w)| proposal(w))
        .all(|p| check(p.stamp.body.block, &p.header, &p.body))
        && correct(model, state).all(|c| {
            c.store
                .blocks
                .iter()
                .all(|b| check(b.certificate.block, &b.header, &b.body))
        })
}

/// V10: every proposal a correct primary holds as its own is moved only by objections the
/// rules accept: each of its batches is for its height, and each missing-batch objection it
/// records names a batch of the objector's own that the proposal carries (a member cannot
/// make a correct primary revise with another home's batch or one of another height).
fn v10(model: &Model, state: &State) -> bool {
    correct(model, state).all(|c| {
        let Some(p) = &c.view.node.round.own else {
            return true;
        };
        memo(10, p.stamp.body.block, NodeId(0), || {
            let process = &p.body.process;
            process
                .batches
                .iter()
                .all(|b| b.body.height == p.header.height && b.body.chain_id == model.cfg.chain_id)
                && process.objections.iter().all(|o| match &o.body.reason {
                    ObjectionReason::MissingBatch { batch } => process
                        .batches
                        .iter()
                        .any(|b| b.body.home == o.body.objector && b.body_digest() == *batch),
                    _ => true,
                })
        })
    })
}

/// V9: a committed block's commit certificate, and every endorsement certificate a correct
/// node locked on, has a quorum that includes every member of every touched area.
fn v9(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    let g = &setup.genesis;
    // A certificate's verdict depends only on it and the block it certifies, which the
    // header names (it commits to the body): memoised by a hash of both, since the same
    // certificate is in many states.
    let ok =
        |qc: &tieline_core::block::QuorumCertificate, header: &BlockHeader, body: &BlockBody| {
            let mut h = DefaultHasher::new();
            (qc, header).hash(&mut h);
            let key = h.finish();
            if let Some(v) = CERTIFICATES.with(|m| m.borrow().get(&key).copied()) {
                return v;
            }
            let v = qc
                .verify(
                    g,
                    setup.chain_id,
                    setup.scheme.as_ref(),
                    &body.required_signers(g),
                )
                .is_ok();
            CERTIFICATES.with(|m| m.borrow_mut().insert(key, v));
            v
        };
    correct(model, state).all(|c| {
        c.store
            .blocks
            .iter()
            .all(|b| ok(&b.certificate, &b.header, &b.body))
            && c.store.records.iter().all(|r| match r {
                Record::Lock(qc, p) => ok(qc, &p.header, &p.body),
                _ => true,
            })
            && c.view
                .node
                .ballot
                .lock
                .as_ref()
                .is_none_or(|l| ok(&l.certificate, &l.proposal.header, &l.proposal.body))
    })
}

// ----- fault skip and liveness -----

/// L1: a correct node is in a view above 0 only with a valid skip certificate for the view
/// before, and a committed block of a later view records the skipped primaries and the
/// certificate.
fn l1(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    let g = &setup.genesis;
    correct(model, state).all(|c| {
        let n = &c.view.node;
        let in_view = n.view == 0
            || n.justification.as_ref().is_some_and(|j| {
                j.view + 1 == n.view
                    && j.verify(g, setup.chain_id, setup.scheme.as_ref(), n.height, j.view)
                        .is_ok()
            });
        in_view
            && c.store.blocks.iter().all(|b| {
                let p = &b.body.process;
                let v = b.header.view;
                p.skipped
                    == (0..v)
                        .map(|x| g.primary(b.header.height, x))
                        .collect::<Vec<_>>()
                    && (v == 0
                        || p.skip_certificate.as_ref().is_some_and(|cert| {
                            cert.verify(
                                g,
                                setup.chain_id,
                                setup.scheme.as_ref(),
                                b.header.height,
                                v - 1,
                            )
                            .is_ok()
                        }))
            })
    })
}

fn l1_reached(model: &Model, state: &State) -> bool {
    let g = &model.cfg.genesis;
    let p0 = g.primary(1, 0);
    let down = model.cfg.member_of.iter().enumerate().any(|(i, m)| {
        *m == Some(p0)
            && (state.crashed.get(i).copied().unwrap_or(false)
                || state
                    .actor_storages
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.recoveries > 0))
    });
    down && correct(model, state).any(|c| c.store.blocks.iter().any(|b| b.header.view == 1))
}

/// L2: within the bounds, a run that can go no further has reached a bound or every live
/// correct node has decided. With a crash and its recovery taken as one step (see
/// [`Model`]), no state has a node down, so L2 is also checked as if each node that may still
/// crash were down here: the others must go on without it (the verdict of the state in which
/// it crashed and stayed down; checker/README.md argues it).
fn l2(model: &Model, state: &State) -> bool {
    let movers = movers(model, state);
    let l2_with = |down: Option<usize>| {
        let done = correct(model, state)
            .all(|c| c.crashed || Some(c.index) == down || decided(&model.cfg, &c.view.node));
        done || at_bound(model, state, down) || movers & !down.map_or(0, bit) != 0
    };
    l2_with(None)
        && (!model.cfg.atomic_restart
            || (0..state.actor_states.len())
                .filter(|&i| model.may_crash(state, i))
                .all(|i| l2_with(Some(i))))
}

fn all_decided(model: &Model, state: &State) -> bool {
    correct(model, state).all(|c| !c.crashed && decided(&model.cfg, &c.view.node))
}

/// L3: revisions are bounded, and a fallback revision clears at most the earliest half (per
/// level) of the valid bids.
fn l3(model: &Model, state: &State) -> bool {
    let g = &model.cfg.genesis;
    proposals(state).values().map(proposal).all(|p| {
        let r = p.header.revision;
        if r > g.max_revisions + MAX_FALLBACK_LEVELS {
            return false;
        }
        if r <= g.max_revisions {
            return true;
        }
        let level = r - g.max_revisions;
        let rejections = &p.body.process.rejections;
        let fallback = rejections
            .iter()
            .filter(|x| x.reason == tieline_core::block::RejectionReason::Fallback)
            .count();
        let others = rejections.len() - fallback;
        let valid = carried(&p.body).len().saturating_sub(others);
        let kept = valid - fallback.min(valid);
        kept <= if level >= 63 { 0 } else { valid >> level }
    })
}

fn l3_reached(model: &Model, state: &State) -> bool {
    correct(model, state).any(|c| {
        c.store
            .blocks
            .iter()
            .any(|b| b.header.revision == 1 && !b.body.process.objections.is_empty())
    })
}

/// L5: a correct primary accepted an objection to an earlier revision of its view than the
/// one it proposes, which that proposal does not carry: an objection accepted before a
/// revision is recorded in it, so this one reached the primary after it had revised, and
/// its next revision answers it.
fn l5_reached(model: &Model, state: &State) -> bool {
    correct(model, state).any(|c| {
        let n = &c.view.node;
        n.round.own.as_ref().is_some_and(|p| {
            let revision = p.round().revision;
            n.round
                .negotiation
                .objections
                .iter()
                .any(|o| o.body.revision < revision && !p.body.process.objections.contains(o))
        })
    })
}

/// L3's bound: a correct node decided a block built by the fallback (a revision past
/// `max_revisions`) after an objection.
fn l3_fallback_reached(model: &Model, state: &State) -> bool {
    let bound = model.cfg.genesis.max_revisions;
    correct(model, state).any(|c| {
        c.store
            .blocks
            .iter()
            .any(|b| b.header.revision > bound && !b.body.process.objections.is_empty())
    })
}

/// L4: a block a correct node decided without voting to commit it (it caught up from a peer)
/// passes the audit against the node's own chain.
fn l4(model: &Model, state: &State) -> bool {
    v2_blocks(model, state, caught_up)
}

/// Whether `member` decided `block` by catching up: its commit certificate has no vote of the
/// member (a node that decides from its own tally is in the certificate it formed).
fn caught_up(member: NodeId, block: &Block) -> bool {
    !block
        .certificate
        .signatures
        .iter()
        .any(|s| s.voter == member)
}

fn v2_blocks(model: &Model, state: &State, pick: impl Fn(NodeId, &Block) -> bool) -> bool {
    let setup = &model.cfg;
    correct(model, state).all(|c| {
        c.store
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| pick(c.member, b))
            .all(|(i, b)| {
                memo(2, b.digest(), NodeId(0), || {
                    let before = before(setup, &c.store.blocks, b.header.height);
                    let prev = i.checked_sub(1).map(|j| &c.store.blocks[j].header);
                    let mut check = bid_signatures(setup);
                    verify_block(
                        &rules(setup, &before),
                        prev,
                        b,
                        &mut check,
                        &mut AuditSummary::default(),
                    )
                    .is_ok()
                })
            })
    })
}

fn l4_reached(model: &Model, state: &State) -> bool {
    correct(model, state).any(|c| c.store.blocks.iter().any(|b| caught_up(c.member, b)))
}

// ----- no loss -----

/// N1: every receipted bid is on its home node's chain (cleared or rejected by rule), or still
/// pending in the home node's log for a height it has not decided.
fn n1(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    let stores: BTreeMap<NodeId, &Store> =
        correct(model, state).map(|c| (c.member, c.store)).collect();
    sent(state).all(|(src, m)| {
        let Msg::Reply(Reply::Receipt(r)) = m else {
            return true;
        };
        if !setup.is_correct_node(src) {
            return true;
        }
        let Some(store) = stores.get(&r.body.home) else {
            return true;
        };
        let id = r.body.bid;
        let on_chain = store
            .blocks
            .iter()
            .any(|b| carried(&b.body).iter().any(|sb| sb.body.id() == id));
        let pending = store.records.iter().any(|rec| {
            matches!(rec, Record::Bid { bid, height, .. }
                if bid.body.id() == id && *height >= store.next_height())
        });
        on_chain || pending
    })
}

/// N2: a block built in view v > 0 carries every batch that a correct node held (in its log)
/// when it voted to skip view v - 1, if that vote is in the block's skip certificate (a faulty
/// home's batch counts by its home).
fn n2(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    // What each correct member's actors held at their skip votes, by member.
    let held: Vec<(NodeId, &Store)> = correct(model, state)
        .filter(|c| !c.store.at_skip.is_empty())
        .map(|c| (c.member, c.store))
        .collect();
    if held.is_empty() {
        return true;
    }
    correct(model, state).all(|c| {
        c.store.blocks.iter().all(|b| {
            let Some(cert) = &b.body.process.skip_certificate else {
                return true;
            };
            let batches = &b.body.process.batches;
            cert.voters().all(|voter| {
                held.iter()
                    .filter(|(m, _)| *m == voter)
                    .filter_map(|(_, s)| s.at_skip.get(&(cert.height, cert.view)))
                    .flatten()
                    .all(|&(home, digest)| {
                        batches.iter().any(|x| {
                            x.body.home == home
                                && (setup.faulty.contains(&home) || x.body_digest() == digest)
                        })
                    })
            })
        })
    })
}

/// N3: every vote, proposal, batch, skip vote and lock a correct node sent for a height it has
/// not decided is in its log, and a node's committed blocks are stored before the next height
/// opens.
fn n3(model: &Model, state: &State) -> bool {
    let setup = &model.cfg;
    let stores: BTreeMap<usize, &Store> =
        correct(model, state).map(|c| (c.index, c.store)).collect();
    let logged = |i: usize, f: &dyn Fn(&Record) -> bool, height: u64| {
        stores
            .get(&i)
            .is_none_or(|s| height < s.next_height() || s.records.iter().any(f))
    };
    let sends_logged = sent(state).all(|(src, m)| {
        if !setup.is_correct_node(src) {
            return true;
        }
        match m {
            Msg::Node(Message::Vote(v)) => logged(
                src,
                &|r| matches!(r, Record::Vote(x) if x == v),
                v.body.height,
            ),
            Msg::Node(Message::Proposal(p)) => logged(
                src,
                &|r| matches!(r, Record::Vote(x) if *x == p.stamp),
                p.height(),
            ),
            Msg::Node(Message::Batch(b)) => logged(
                src,
                &|r| matches!(r, Record::Batch(x) if x == b),
                b.body.height,
            ),
            // The primary's own vote in the certificate it hands on, and its lock.
            Msg::Node(Message::Endorsed(c)) => {
                let me = setup.member_of[src];
                c.signed_votes(setup.chain_id)
                    .filter(|v| Some(v.body.voter) == me)
                    .all(|v| logged(src, &|r| matches!(r, Record::Vote(x) if *x == v), c.height))
                    && logged(
                        src,
                        &|r| matches!(r, Record::Lock(x, _) if **c == *x),
                        c.height,
                    )
            }
            Msg::Node(Message::Skip(s, ..)) => {
                logged(
                    src,
                    &|r| matches!(r, Record::Skip(x) if **s == *x),
                    s.body.height,
                ) && s.body.lock.as_ref().is_none_or(|qc| {
                    logged(
                        src,
                        &|r| matches!(r, Record::Lock(x, _) if x == qc),
                        s.body.height,
                    )
                })
            }
            _ => true,
        }
    });
    sends_logged
        && correct(model, state)
            .filter(|c| !c.crashed)
            .all(|c| c.view.node.height == c.store.next_height())
}

/// The ids of the spec properties the checker verifies.
pub fn ids() -> BTreeSet<&'static str> {
    catalogue().iter().map(|p| p.id).collect()
}

/// The members of a model's correct nodes that have decided every bounded height.
pub fn summary(model: &Model, state: &State) -> Vec<(NodeId, u64)> {
    correct(model, state)
        .map(|c| (c.member, c.store.blocks.len() as u64))
        .collect()
}
