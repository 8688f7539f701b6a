//! The genesis: the consortium's definition, fixed for the life of a chain (spec D6).
//!
//! It names the management nodes (in rotation order), the areas, the admitted participants, the
//! tie lines, the fault model, the rotation period, the timers and the clearing rule. Its digest
//! is the chain id, which every header and every signed message carries, so nothing signed
//! under one consortium can be replayed in another.

use serde::{Deserialize, Serialize};

use crate::crypto::{Digest, Ed25519, PublicKey, digest_of};
use crate::eic::Eic;
use crate::schedule::GateSchedule;
use crate::units::{AreaId, BusId, NodeId, ParticipantId, Price, Quantity, TieLineId, Timestamp};

mod file;
use file::*;
#[cfg(test)]
mod tests;

/// Most management nodes a consortium may have.
pub const MAX_MEMBERS: usize = 64;
/// Most areas.
pub const MAX_AREAS: usize = 64;
/// Most admitted participants.
pub const MAX_PARTICIPANTS: usize = 1_000_000;
/// Most tie lines.
pub const MAX_TIE_LINES: usize = 1024;
/// Longest name or address, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Most negotiation revisions a genesis may allow before the fallback.
pub const MAX_REVISIONS_LIMIT: u32 = 64;
/// Most bid steps one round's batches carry under a coupled rule (uniform price, zonal
/// coupling), where a bid gets at most one trade: each home node's batch holds at most its
/// share, [`Genesis::batch_steps`]. Related to the frame limit at compile time, so that a
/// proposal of a full round fits one frame (spec 1.3, D25).
pub const MAX_ROUND_STEPS_COUPLED: usize = 1 << 20;
/// Most bid steps one round's batches carry under pay-as-bid, where every match gives two
/// trades (one per side), so a step costs a proposal more than under a coupled rule.
pub const MAX_ROUND_STEPS_MATCHED: usize = 576 * 1024;

/// A market area: a country or a bidding zone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Area {
    /// The area's id.
    pub id: AreaId,
    /// A readable name.
    pub name: String,
    /// The bidding zone's Energy Identification Code, if it has one (spec D23).
    pub eic: Option<Eic>,
}
crate::canonical_struct!(Area {
    id,
    name: str(MAX_NAME_LEN),
    eic,
});

/// A management node: a country's power exchange or dispatch centre; a bookkeeper.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The node's id.
    pub id: NodeId,
    /// A readable name.
    pub name: String,
    /// The area whose grid this node is responsible for.
    pub area: AreaId,
    /// The key the node signs with.
    pub public_key: PublicKey,
    /// Where peers reach it: `host:port`.
    pub address: String,
    /// The party's Energy Identification Code, if it has one (spec D23).
    pub eic: Option<Eic>,
}
crate::canonical_struct!(Member {
    id,
    name: str(MAX_NAME_LEN),
    area,
    public_key,
    address: str(MAX_NAME_LEN),
    eic,
});

/// An admitted market participant (a subject node), attached to exactly one home node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Participant {
    /// The participant's id.
    pub id: ParticipantId,
    /// A readable name.
    pub name: String,
    /// The management node that admits it, takes its bids and answers its queries.
    pub home: NodeId,
    /// The area it trades in.
    pub area: AreaId,
    /// The key it signs bids and appeals with.
    pub public_key: PublicKey,
    /// The party's Energy Identification Code, if it has one (spec D23).
    pub eic: Option<Eic>,
}
crate::canonical_struct!(Participant {
    id,
    name: str(MAX_NAME_LEN),
    home,
    area,
    public_key,
    eic,
});

/// A tie line: a scheduled exchange between two areas with a capacity in each direction
/// (available transfer capacity, as energy per delivery period; transport model).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TieLine {
    /// The tie line's id.
    pub id: TieLineId,
    /// The area where a positive flow starts.
    pub from: AreaId,
    /// The area where a positive flow ends.
    pub to: AreaId,
    /// Most energy from `from` to `to` per delivery period.
    pub capacity_forward: Quantity,
    /// Most energy from `to` to `from` per delivery period.
    pub capacity_backward: Quantity,
    /// The bus in `from` where the line lands, if grid models use it.
    pub from_bus: Option<BusId>,
    /// The bus in `to` where the line lands, if grid models use it.
    pub to_bus: Option<BusId>,
}
crate::canonical_struct!(TieLine {
    id,
    from,
    to,
    capacity_forward,
    capacity_backward,
    from_bus,
    to_bus,
});

/// Which faults the consortium tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Nodes may stop and restart; needs n >= 2f + 1.
    Crash,
    /// Nodes may behave arbitrarily; needs n >= 3f + 1.
    Byzantine,
}
crate::canonical_enum!(FaultKind {
    Crash = 0,
    Byzantine = 1
});

/// The fault model: its kind and how many faulty nodes it tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultModel {
    /// Crash or byzantine.
    pub kind: FaultKind,
    /// The number of faulty management nodes tolerated.
    pub f: u16,
}
crate::canonical_struct!(FaultModel { kind, f });

impl FaultModel {
    /// The fewest nodes the model needs.
    pub fn min_members(&self) -> usize {
        let f = usize::from(self.f);
        match self.kind {
            FaultKind::Crash => 2 * f + 1,
            FaultKind::Byzantine => 3 * f + 1,
        }
    }

    /// The quorum size for `n` members (spec D8): any two quorums share a correct node, and the
    /// correct nodes alone form a quorum.
    ///
    /// Crash: a majority, `floor(n/2) + 1`. Byzantine: `floor((n + f)/2) + 1`, which is
    /// `2f + 1` when `n = 3f + 1`.
    pub fn quorum(&self, n: usize) -> usize {
        match self.kind {
            FaultKind::Crash => n / 2 + 1,
            FaultKind::Byzantine => (n + usize::from(self.f)) / 2 + 1,
        }
    }
}

/// The consensus timers, in milliseconds, and when gates close.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timing {
    /// Without a schedule: how long after a height opens its gate closes and home nodes send
    /// their batches (each height is its own auction of the bids that arrived while it was
    /// open). With a schedule: 0, unused.
    pub gate_ms: u64,
    /// How long the primary waits after its gate closes for missing batches.
    pub batch_wait_ms: u64,
    /// How long a node waits in a view before voting to skip its primary; doubles per view.
    pub view_timeout_ms: u64,
    /// A daily gate-closure schedule: height h clears one delivery day and its gate closes at
    /// a fixed local time the day before (spec D24, N4).
    pub schedule: Option<GateSchedule>,
}
crate::canonical_struct!(Timing {
    gate_ms,
    batch_wait_ms,
    view_timeout_ms,
    schedule,
});

impl Timing {
    /// The primary's default wait for missing batches, in ms (the node binary's default).
    pub const DEFAULT_BATCH_WAIT_MS: u64 = 500;
    /// The default view timeout, in ms (the node binary's default).
    pub const DEFAULT_VIEW_TIMEOUT_MS: u64 = 2_000;

    /// How long after `now` the gate of `height`, opening now, closes: `gate_ms`, or with a
    /// schedule the time left until the height's gate (0 if it has passed).
    pub fn gate_after(&self, height: u64, now: Timestamp) -> u64 {
        match &self.schedule {
            None => self.gate_ms,
            Some(s) => s.gate_of(height).0.saturating_sub(now.0),
        }
    }
}

/// The clearing rule the consortium agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClearingRule {
    /// Buy and sell bids matched by price; each trade at a documented side's price.
    PayAsBid,
    /// One zone, one marginal price per delivery period.
    UniformPrice,
    /// Several areas joined by tie lines; welfare-maximising, zonal prices.
    ZonalCoupling,
}
crate::canonical_enum!(ClearingRule {
    PayAsBid = 0,
    UniformPrice = 1,
    ZonalCoupling = 2
});

impl ClearingRule {
    /// Most bid steps one round's batches carry under this rule (spec D25).
    pub const fn max_round_steps(self) -> usize {
        match self {
            ClearingRule::PayAsBid => MAX_ROUND_STEPS_MATCHED,
            ClearingRule::UniformPrice | ClearingRule::ZonalCoupling => MAX_ROUND_STEPS_COUPLED,
        }
    }

    /// The name used in genesis files.
    pub fn name(self) -> &'static str {
        match self {
            ClearingRule::PayAsBid => "pay-as-bid",
            ClearingRule::UniformPrice => "uniform-price",
            ClearingRule::ZonalCoupling => "zonal-coupling",
        }
    }
}

/// The clearing rule and its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClearingParams {
    /// Which rule.
    pub rule: ClearingRule,
    /// Prices are multiples of this.
    pub price_tick: Price,
    /// The lowest admissible bid price.
    pub price_floor: Price,
    /// The highest admissible bid price.
    pub price_cap: Price,
}
crate::canonical_struct!(ClearingParams {
    rule,
    price_tick,
    price_floor,
    price_cap
});

/// The consortium definition. Build it with [`Genesis::from_toml`] or construct it and call
/// [`Genesis::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Genesis {
    /// A readable name of the consortium.
    pub chain_name: String,
    /// The areas.
    pub areas: Vec<Area>,
    /// The management nodes, in rotation order.
    pub members: Vec<Member>,
    /// The admitted participants, by ascending id.
    pub participants: Vec<Participant>,
    /// The tie lines.
    pub tie_lines: Vec<TieLine>,
    /// The fault model.
    pub fault_model: FaultModel,
    /// How many consecutive heights each primary serves.
    pub rotation_period: u64,
    /// The consensus timers.
    pub timing: Timing,
    /// Negotiation revisions before the deterministic fallback applies.
    pub max_revisions: u32,
    /// The clearing rule.
    pub clearing: ClearingParams,
}
crate::canonical_struct!(Genesis {
    chain_name: str(MAX_NAME_LEN),
    areas: seq(MAX_AREAS),
    members: seq(MAX_MEMBERS),
    participants: seq(MAX_PARTICIPANTS),
    tie_lines: seq(MAX_TIE_LINES),
    fault_model,
    rotation_period,
    timing,
    max_revisions,
    clearing,
});
crate::tagged!(Genesis, 0x0001, "genesis", 512 * 1024 * 1024);

/// Why a genesis is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// The file is not well-formed TOML or lacks a field.
    #[error("genesis is not valid: {0}")]
    Syntax(String),
    /// A field has a value the consortium cannot run with.
    #[error("genesis field `{field}`: {reason}")]
    Field {
        /// The field, e.g. `members[2].public_key`.
        field: String,
        /// Why its value is wrong.
        reason: String,
    },
}

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> GenesisError {
    GenesisError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Genesis {
    /// The chain id: the digest of the canonical genesis.
    pub fn chain_id(&self) -> Digest {
        digest_of(self)
    }

    /// The number of management nodes.
    pub fn n(&self) -> usize {
        self.members.len()
    }

    /// Most bid steps one home node's batch for a height carries: an equal share of the
    /// rule's round budget, so that every round's proposal fits one frame (spec D25). A home
    /// node refuses bids beyond it (`BatchFull`); a batch over it is malformed.
    pub fn batch_steps(&self) -> usize {
        self.clearing.rule.max_round_steps() / self.n().max(1)
    }

    /// How many distinct members a certificate needs (spec D8).
    pub fn quorum(&self) -> usize {
        self.fault_model.quorum(self.n())
    }

    /// The primary of height `h` in view `v`: `members[(h / period + v) mod n]` (spec D9).
    /// The one place that computes it.
    pub fn primary(&self, height: u64, view: u32) -> NodeId {
        let n = self.n() as u64;
        let slot = (height / self.rotation_period + u64::from(view)) % n;
        self.members[slot as usize].id
    }

    /// The member with this id.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The admitted participant with this id.
    pub fn participant(&self, id: ParticipantId) -> Option<&Participant> {
        self.participants
            .binary_search_by_key(&id, |p| p.id)
            .ok()
            .map(|i| &self.participants[i])
    }

    /// The area with this id.
    pub fn area(&self, id: AreaId) -> Option<&Area> {
        self.areas.iter().find(|a| a.id == id)
    }

    /// The tie line with this id.
    pub fn tie_line(&self, id: TieLineId) -> Option<&TieLine> {
        self.tie_lines.iter().find(|t| t.id == id)
    }

    /// The members responsible for `area`.
    pub fn members_of_area(&self, area: AreaId) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.area == area)
    }

    /// Every public key the genesis names: members' then participants'.
    pub fn public_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.members
            .iter()
            .map(|m| &m.public_key)
            .chain(self.participants.iter().map(|p| &p.public_key))
    }

    /// Checks every rule a genesis must satisfy; the error names the first bad field.
    pub fn validate(&self) -> Result<(), GenesisError> {
        check_name("chain_name", &self.chain_name)?;
        if self.areas.is_empty() || self.areas.len() > MAX_AREAS {
            return Err(field_err(
                "areas",
                format!("must list between 1 and {MAX_AREAS} areas"),
            ));
        }
        for (i, a) in self.areas.iter().enumerate() {
            check_name(&format!("areas[{i}].name"), &a.name)?;
            if self.areas[..i].iter().any(|b| b.id == a.id) {
                return Err(field_err(
                    format!("areas[{i}].id"),
                    format!("duplicate area id {}", a.id),
                ));
            }
        }
        unique_eics("areas", self.areas.iter().map(|a| a.eic))?;
        unique_eics("members", self.members.iter().map(|m| m.eic))?;
        unique_eics("participants", self.participants.iter().map(|p| p.eic))?;
        let n = self.members.len();
        if n == 0 || n > MAX_MEMBERS {
            return Err(field_err(
                "members",
                format!("must list between 1 and {MAX_MEMBERS} management nodes"),
            ));
        }
        for (i, m) in self.members.iter().enumerate() {
            let at = |f: &str| format!("members[{i}].{f}");
            check_name(&at("name"), &m.name)?;
            check_address(&at("address"), &m.address)?;
            if self.members[..i].iter().any(|o| o.id == m.id) {
                return Err(field_err(at("id"), format!("duplicate member id {}", m.id)));
            }
            if self.members[..i]
                .iter()
                .any(|o| o.public_key == m.public_key)
            {
                return Err(field_err(
                    at("public_key"),
                    "the same key as an earlier member",
                ));
            }
            if self.area(m.area).is_none() {
                return Err(field_err(at("area"), format!("no area with id {}", m.area)));
            }
        }
        let need = self.fault_model.min_members();
        if n < need {
            return Err(field_err(
                "fault_model.f",
                format!(
                    "{:?} faults with f = {} need at least {need} management nodes, the genesis has {n}",
                    self.fault_model.kind, self.fault_model.f
                ),
            ));
        }
        if self.participants.len() > MAX_PARTICIPANTS {
            return Err(field_err(
                "participants",
                format!("more than {MAX_PARTICIPANTS}"),
            ));
        }
        for (i, p) in self.participants.iter().enumerate() {
            let at = |f: &str| format!("participants[{i}].{f}");
            check_name(&at("name"), &p.name)?;
            if i > 0 && self.participants[i - 1].id >= p.id {
                return Err(field_err(
                    at("id"),
                    format!(
                        "participant ids must be unique and ascending; {} repeats or is out of order",
                        p.id
                    ),
                ));
            }
            if self.member(p.home).is_none() {
                return Err(field_err(
                    at("home"),
                    format!("no management node with id {}", p.home),
                ));
            }
            if self.area(p.area).is_none() {
                return Err(field_err(at("area"), format!("no area with id {}", p.area)));
            }
            if self.members.iter().any(|m| m.public_key == p.public_key) {
                return Err(field_err(
                    at("public_key"),
                    "the same key as a management node",
                ));
            }
        }
        let mut keys: Vec<&PublicKey> = self.participants.iter().map(|p| &p.public_key).collect();
        keys.sort();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            let i = self
                .participants
                .iter()
                .position(|p| &p.public_key == w[0])
                .unwrap_or(0);
            return Err(field_err(
                format!("participants[{i}].public_key"),
                "two participants share this key",
            ));
        }
        if self.tie_lines.len() > MAX_TIE_LINES {
            return Err(field_err("tie_lines", format!("more than {MAX_TIE_LINES}")));
        }
        for (i, t) in self.tie_lines.iter().enumerate() {
            let at = |f: &str| format!("tie_lines[{i}].{f}");
            if self.tie_lines[..i].iter().any(|o| o.id == t.id) {
                return Err(field_err(
                    at("id"),
                    format!("duplicate tie line id {}", t.id),
                ));
            }
            for (f, a) in [("from", t.from), ("to", t.to)] {
                if self.area(a).is_none() {
                    return Err(field_err(at(f), format!("no area with id {a}")));
                }
            }
            if t.from == t.to {
                return Err(field_err(
                    at("to"),
                    "a tie line must join two different areas",
                ));
            }
            for (f, c) in [
                ("capacity_forward", t.capacity_forward),
                ("capacity_backward", t.capacity_backward),
            ] {
                if c < Quantity::ZERO {
                    return Err(field_err(at(f), format!("capacity {c} is negative")));
                }
            }
        }
        if self.rotation_period == 0 {
            return Err(field_err("rotation_period", "must be at least 1 height"));
        }
        for (f, v) in [
            ("timing.batch_wait_ms", self.timing.batch_wait_ms),
            ("timing.view_timeout_ms", self.timing.view_timeout_ms),
        ] {
            if v == 0 {
                return Err(field_err(f, "must be at least 1 ms"));
            }
        }
        match &self.timing.schedule {
            None if self.timing.gate_ms == 0 => {
                return Err(field_err(
                    "timing.gate_ms",
                    "must be at least 1 ms (or give timing.schedule)",
                ));
            }
            Some(_) if self.timing.gate_ms != 0 => {
                return Err(field_err(
                    "timing.gate_ms",
                    "a schedule decides when gates close: leave gate_ms out",
                ));
            }
            Some(s) => s
                .validate()
                .map_err(|(f, r)| field_err(format!("timing.schedule.{f}"), r))?,
            None => {}
        }
        if self.max_revisions == 0 || self.max_revisions > MAX_REVISIONS_LIMIT {
            return Err(field_err(
                "max_revisions",
                format!("must be between 1 and {MAX_REVISIONS_LIMIT}"),
            ));
        }
        let c = &self.clearing;
        if c.price_tick <= Price::ZERO {
            return Err(field_err("clearing.price_tick", "must be positive"));
        }
        if c.price_floor >= c.price_cap {
            return Err(field_err(
                "clearing.price_cap",
                format!(
                    "cap {} must be above the floor {}",
                    c.price_cap, c.price_floor
                ),
            ));
        }
        for (f, p) in [
            ("clearing.price_floor", c.price_floor),
            ("clearing.price_cap", c.price_cap),
        ] {
            if p.0 % c.price_tick.0 != 0 {
                return Err(field_err(
                    f,
                    format!("{p} is not a multiple of the price tick {}", c.price_tick),
                ));
            }
        }
        Ok(())
    }

    /// Reads and validates a genesis file. Participants may be listed in any order; they are
    /// kept by ascending id. Keys must be usable ed25519 keys.
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let file: GenesisFile =
            toml::from_str(text).map_err(|e| GenesisError::Syntax(e.to_string()))?;
        file.into_genesis()
    }

    /// Writes the genesis as TOML that [`Genesis::from_toml`] reads back to an equal value.
    pub fn to_toml(&self) -> String {
        toml::to_string(&GenesisFile::from_genesis(self)).expect("genesis serialises to TOML")
    }
}

fn check_name(field: &str, s: &str) -> Result<(), GenesisError> {
    if s.trim().is_empty() {
        return Err(field_err(field, "must not be empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(field_err(
            field,
            format!("longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    Ok(())
}

/// D23: no two entries of a list share an EIC (a document names each by it).
fn unique_eics(list: &str, eics: impl Iterator<Item = Option<Eic>>) -> Result<(), GenesisError> {
    let mut seen = std::collections::BTreeMap::new();
    for (i, eic) in eics.enumerate() {
        if let Some(e) = eic {
            if let Some(first) = seen.insert(e, i) {
                return Err(field_err(
                    format!("{list}[{i}].eic"),
                    format!("{e} is also {list}[{first}]'s"),
                ));
            }
        }
    }
    Ok(())
}

fn check_address(field: &str, s: &str) -> Result<(), GenesisError> {
    check_name(field, s)?;
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(field_err(field, format!("`{s}` is not host:port")))
    }
}
