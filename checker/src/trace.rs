//! Counterexamples as a reader wants them: who sent what to whom, which timer fired, who
//! crashed; as text and as JSON.

use stateright::Path;
use stateright::actor::{ActorModelAction, Id};
use tieline_core::block::{ObjectionReason, Vote};
use tieline_core::consensus::{Message, Reply, Timer};
use tieline_core::crypto::{Digest, Signed};

use crate::model::{Model, Msg, State, Wire};

/// One step of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// "deliver", "timer", "crash", "recover" or "drop".
    pub kind: &'static str,
    /// The acting or receiving actor.
    pub actor: String,
    /// The sender, for a delivery.
    pub from: Option<String>,
    /// What happened.
    pub what: String,
}

fn short(d: &Digest) -> String {
    d.to_hex()[..8].to_owned()
}

fn actor_name(model: &Model, id: Id) -> String {
    let i = usize::from(id);
    let twins = |m| {
        model
            .cfg
            .member_of
            .iter()
            .filter(|x| **x == Some(m))
            .count()
    };
    match model.cfg.member_of.get(i).copied().flatten() {
        Some(m) if twins(m) > 1 => {
            let k = model.cfg.member_of[..i]
                .iter()
                .filter(|x| **x == Some(m))
                .count();
            format!("node {}{}", m.0, ['a', 'b', 'c', 'd'][k.min(3)])
        }
        Some(m) => format!("node {}", m.0),
        None => {
            let k = i - model.cfg.member_of.iter().filter(|x| x.is_some()).count();
            format!("participant #{k}")
        }
    }
}

fn vote(v: &Signed<Vote>) -> String {
    let b = &v.body;
    format!(
        "{:?} by node {} for block {} at h{} v{} r{}",
        b.kind,
        b.voter.0,
        short(&b.block),
        b.height,
        b.view,
        b.revision
    )
}

/// A message in a few words.
pub fn describe(msg: &Msg) -> String {
    match msg {
        Msg::Bid(b) => format!("bid {} (nonce {})", short(&b.body.id()), b.body.nonce),
        Msg::Appeal(a) => format!("appeal for h{}", a.body.height),
        Msg::Reply(r) => match r {
            Reply::Receipt(rc) => format!(
                "receipt for bid {} at h{}",
                short(&rc.body.bid),
                rc.body.height
            ),
            Reply::BidRejected { reason, .. } => format!("bid rejected: {reason}"),
            Reply::AppealForwarded { height } => format!("appeal forwarded (h{height})"),
            Reply::AppealRejected { reason } => format!("appeal rejected: {reason}"),
            Reply::AppealResolved { height, resolution } => {
                format!("appeal at h{height} resolved {resolution:?}")
            }
            Reply::Result { height, trades, .. } => {
                format!("result of h{height}: {} trades", trades.len())
            }
            Reply::ChangeAccepted { height, .. } => format!("change accepted for h{height}"),
            Reply::ChangeRefused { reason, .. } => format!("change refused: {reason}"),
        },
        Msg::Node(m) => match m {
            Message::Batch(b) => format!(
                "batch of node {} for h{} ({} bids)",
                b.body.home.0,
                b.body.height,
                b.body.bids.len()
            ),
            Message::Proposal(p) => format!(
                "proposal {} ({} batches, {} trades{})",
                vote(&p.stamp),
                p.body.process.batches.len(),
                p.body.trades.len(),
                if p.header.view < p.stamp.body.view {
                    format!(", the block locked in view {}", p.header.view)
                } else {
                    String::new()
                }
            ),
            Message::Vote(v) => format!("vote {}", vote(v)),
            Message::Endorsed(c) => format!(
                "endorsement certificate for {} at h{} v{} r{} signed by {:?}",
                short(&c.block),
                c.height,
                c.view,
                c.revision,
                c.signers().map(|n| n.0).collect::<Vec<_>>()
            ),
            Message::Objection(o, _) => {
                let reason = match &o.body.reason {
                    ObjectionReason::Security { cuts } => format!("security, {} cuts", cuts.len()),
                    ObjectionReason::MissingBatch { .. } => "missing batch".to_owned(),
                    ObjectionReason::Invalid { detail } => format!("invalid: {detail}"),
                };
                format!(
                    "objection by node {} to block {} at h{} v{} r{} ({reason})",
                    o.body.objector.0,
                    short(&o.body.block),
                    o.body.height,
                    o.body.view,
                    o.body.revision
                )
            }
            Message::Appeal { appeal, via } => {
                format!("appeal for h{} via node {}", appeal.body.height, via.0)
            }
            Message::Skip(s, locked, _) => format!(
                "skip vote by node {} for h{} v{}, holding batches of {:?}{}",
                s.body.voter.0,
                s.body.height,
                s.body.view,
                s.body.held.iter().map(|n| n.0).collect::<Vec<_>>(),
                match (&s.body.lock, locked) {
                    (Some(l), _) => format!(
                        ", locked on {} (v{} r{})",
                        short(&l.block),
                        l.view,
                        l.revision
                    ),
                    _ => String::new(),
                }
            ),
            Message::ViewCertificate(c, _) => {
                format!("skip certificate for h{} v{}", c.height, c.view)
            }
            Message::Decided(b) => format!(
                "decided block {} at h{} (v{} r{})",
                short(&b.digest()),
                b.header.height,
                b.header.view,
                b.header.revision
            ),
            Message::SyncRequest { from } => format!("sync request from h{from}"),
            Message::SyncResponse(bs) => format!("sync response with {} blocks", bs.len()),
        },
    }
}

fn timer(t: &Timer) -> String {
    match t {
        Timer::Gate(h) => format!("Gate(h{h})"),
        Timer::BatchWait(h) => format!("BatchWait(h{h})"),
        Timer::View(h, v) => format!("View(h{h}, v{v})"),
        Timer::Revise(h, v, r) => format!("Revise(h{h}, v{v}, r{r})"),
    }
}

/// The steps of a path.
pub fn steps(model: &Model, path: &Path<State, ActorModelAction<Wire, Timer, ()>>) -> Vec<Step> {
    path.clone()
        .into_actions()
        .iter()
        .map(|a| match a {
            ActorModelAction::Deliver { src, dst, msg } => Step {
                kind: "deliver",
                actor: actor_name(model, *dst),
                from: Some(actor_name(model, *src)),
                what: describe(msg.msg()),
            },
            ActorModelAction::Drop(env) => Step {
                kind: "drop",
                actor: actor_name(model, env.dst),
                from: Some(actor_name(model, env.src)),
                what: describe(env.msg.msg()),
            },
            ActorModelAction::Timeout(id, t) => Step {
                kind: "timer",
                actor: actor_name(model, *id),
                from: None,
                what: format!("timer {} fires", timer(t)),
            },
            ActorModelAction::Crash(id) => Step {
                kind: "crash",
                actor: actor_name(model, *id),
                from: None,
                what: if model.cfg.atomic_restart {
                    "crashes (loses all it did not store) and recovers from its storage".to_owned()
                } else {
                    "crashes (loses all it did not store)".to_owned()
                },
            },
            ActorModelAction::Recover(id) => Step {
                kind: "recover",
                actor: actor_name(model, *id),
                from: None,
                what: "recovers from its storage".to_owned(),
            },
            ActorModelAction::SelectRandom { actor, .. } => Step {
                kind: "random",
                actor: actor_name(model, *actor),
                from: None,
                what: "random choice".to_owned(),
            },
        })
        .collect()
}

/// A trace as numbered lines.
pub fn text(steps: &[Step]) -> String {
    let mut out = String::new();
    for (i, s) in steps.iter().enumerate() {
        let line = match &s.from {
            Some(from) if s.kind == "deliver" => format!("{from} -> {}: {}", s.actor, s.what),
            Some(from) => format!("{from} -> {}: {} (dropped)", s.actor, s.what),
            None => format!("{}: {}", s.actor, s.what),
        };
        out.push_str(&format!("  {:>3}. {line}\n", i + 1));
    }
    out
}

/// A trace as a JSON document.
pub fn json(scenario: &str, property: &str, steps: &[Step]) -> serde_json::Value {
    serde_json::json!({
        "scenario": scenario,
        "property": property,
        "length": steps.len(),
        "steps": steps.iter().enumerate().map(|(i, s)| serde_json::json!({
            "step": i + 1,
            "kind": s.kind,
            "actor": s.actor,
            "from": s.from,
            "what": s.what,
        })).collect::<Vec<_>>(),
    })
}
