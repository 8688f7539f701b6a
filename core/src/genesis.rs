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

/// A decimal in a TOML file: an integer, a float or a string such as `"12.345"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum DecimalToml {
    Int(i64),
    Float(f64),
    Text(String),
}

impl DecimalToml {
    fn text(&self) -> String {
        match self {
            DecimalToml::Int(i) => i.to_string(),
            // Rust prints the shortest string that reads back as the same float, so a value
            // such as 0.1 stays "0.1" and is not rounded on its way to fixed point.
            DecimalToml::Float(x) => format!("{x}"),
            DecimalToml::Text(s) => s.clone(),
        }
    }
    fn quantity(&self, field: &str) -> Result<Quantity, GenesisError> {
        Quantity::parse(&self.text()).map_err(|r| field_err(field, r))
    }
    fn price(&self, field: &str) -> Result<Price, GenesisError> {
        Price::parse(&self.text()).map_err(|r| field_err(field, r))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    chain_name: String,
    rotation_period: u64,
    max_revisions: u32,
    fault_model: FaultModelFile,
    timing: TimingFile,
    clearing: ClearingFile,
    areas: Vec<AreaFile>,
    members: Vec<MemberFile>,
    #[serde(default)]
    participants: Vec<ParticipantFile>,
    #[serde(default)]
    tie_lines: Vec<TieLineFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultModelFile {
    kind: String,
    f: u16,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimingFile {
    #[serde(default, skip_serializing_if = "is_zero")]
    gate_ms: u64,
    batch_wait_ms: u64,
    view_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleFile>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// `[timing.schedule]`: `zone = "Europe/Brussels"`, `gate = "12:00"` (local `HH:MM[:SS]`, the day before
/// delivery), `resolution_minutes = 15`, `first_delivery_day = "2026-12-08"`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    zone: String,
    gate: String,
    resolution_minutes: u16,
    first_delivery_day: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearingFile {
    rule: String,
    price_tick: DecimalToml,
    price_floor: DecimalToml,
    price_cap: DecimalToml,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaFile {
    id: AreaId,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eic: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    id: NodeId,
    name: String,
    area: AreaId,
    public_key: String,
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eic: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantFile {
    id: ParticipantId,
    name: String,
    home: NodeId,
    area: AreaId,
    public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eic: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TieLineFile {
    id: TieLineId,
    from: AreaId,
    to: AreaId,
    capacity_forward: DecimalToml,
    capacity_backward: DecimalToml,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_bus: Option<BusId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_bus: Option<BusId>,
}

fn parse_key(field: &str, s: &str) -> Result<PublicKey, GenesisError> {
    let key = PublicKey::from_hex(s)
        .map_err(|e| field_err(field, format!("expected 64 hex characters: {e}")))?;
    if !Ed25519::is_valid_key(&key) {
        return Err(field_err(field, "not a usable ed25519 public key"));
    }
    Ok(key)
}

fn parse_eic(field: &str, s: Option<&str>) -> Result<Option<Eic>, GenesisError> {
    s.map(|s| Eic::parse(s).map_err(|e| field_err(field, e.to_string())))
        .transpose()
}

impl GenesisFile {
    fn into_genesis(self) -> Result<Genesis, GenesisError> {
        let kind = match self.fault_model.kind.as_str() {
            "crash" => FaultKind::Crash,
            "byzantine" => FaultKind::Byzantine,
            other => {
                return Err(field_err(
                    "fault_model.kind",
                    format!("`{other}` is neither \"crash\" nor \"byzantine\""),
                ));
            }
        };
        let rule = [
            ClearingRule::PayAsBid,
            ClearingRule::UniformPrice,
            ClearingRule::ZonalCoupling,
        ]
        .into_iter()
        .find(|r| r.name() == self.clearing.rule)
        .ok_or_else(|| {
            field_err(
                "clearing.rule",
                format!(
                    "`{}` is not one of \"pay-as-bid\", \"uniform-price\", \"zonal-coupling\"",
                    self.clearing.rule
                ),
            )
        })?;
        let members = self
            .members
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(Member {
                    public_key: parse_key(&format!("members[{i}].public_key"), &m.public_key)?,
                    eic: parse_eic(&format!("members[{i}].eic"), m.eic.as_deref())?,
                    id: m.id,
                    name: m.name,
                    area: m.area,
                    address: m.address,
                })
            })
            .collect::<Result<Vec<_>, GenesisError>>()?;
        let mut participants = self
            .participants
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(Participant {
                    public_key: parse_key(&format!("participants[{i}].public_key"), &p.public_key)?,
                    eic: parse_eic(&format!("participants[{i}].eic"), p.eic.as_deref())?,
                    id: p.id,
                    name: p.name,
                    home: p.home,
                    area: p.area,
                })
            })
            .collect::<Result<Vec<_>, GenesisError>>()?;
        participants.sort_by_key(|p| p.id);
        let tie_lines = self
            .tie_lines
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                Ok(TieLine {
                    id: t.id,
                    from: t.from,
                    to: t.to,
                    capacity_forward: t
                        .capacity_forward
                        .quantity(&format!("tie_lines[{i}].capacity_forward"))?,
                    capacity_backward: t
                        .capacity_backward
                        .quantity(&format!("tie_lines[{i}].capacity_backward"))?,
                    from_bus: t.from_bus,
                    to_bus: t.to_bus,
                })
            })
            .collect::<Result<Vec<_>, GenesisError>>()?;
        let genesis = Genesis {
            chain_name: self.chain_name,
            areas: self
                .areas
                .into_iter()
                .enumerate()
                .map(|(i, a)| {
                    Ok(Area {
                        eic: parse_eic(&format!("areas[{i}].eic"), a.eic.as_deref())?,
                        id: a.id,
                        name: a.name,
                    })
                })
                .collect::<Result<Vec<_>, GenesisError>>()?,
            members,
            participants,
            tie_lines,
            fault_model: FaultModel {
                kind,
                f: self.fault_model.f,
            },
            rotation_period: self.rotation_period,
            timing: Timing {
                gate_ms: self.timing.gate_ms,
                batch_wait_ms: self.timing.batch_wait_ms,
                view_timeout_ms: self.timing.view_timeout_ms,
                schedule: self
                    .timing
                    .schedule
                    .map(|s| {
                        Ok::<_, GenesisError>(GateSchedule {
                            gate_second: GateSchedule::parse_time(&s.gate)
                                .map_err(|r| field_err("timing.schedule.gate", r))?,
                            first_delivery_day: GateSchedule::parse_day(&s.first_delivery_day)
                                .map_err(|r| field_err("timing.schedule.first_delivery_day", r))?,
                            zone: s.zone,
                            resolution_minutes: s.resolution_minutes,
                        })
                    })
                    .transpose()?,
            },
            max_revisions: self.max_revisions,
            clearing: ClearingParams {
                rule,
                price_tick: self.clearing.price_tick.price("clearing.price_tick")?,
                price_floor: self.clearing.price_floor.price("clearing.price_floor")?,
                price_cap: self.clearing.price_cap.price("clearing.price_cap")?,
            },
        };
        genesis.validate()?;
        Ok(genesis)
    }

    fn from_genesis(g: &Genesis) -> Self {
        GenesisFile {
            chain_name: g.chain_name.clone(),
            rotation_period: g.rotation_period,
            max_revisions: g.max_revisions,
            fault_model: FaultModelFile {
                kind: match g.fault_model.kind {
                    FaultKind::Crash => "crash",
                    FaultKind::Byzantine => "byzantine",
                }
                .into(),
                f: g.fault_model.f,
            },
            timing: TimingFile {
                gate_ms: g.timing.gate_ms,
                batch_wait_ms: g.timing.batch_wait_ms,
                view_timeout_ms: g.timing.view_timeout_ms,
                schedule: g.timing.schedule.as_ref().map(|s| ScheduleFile {
                    zone: s.zone.clone(),
                    gate: GateSchedule::time_text(s.gate_second),
                    resolution_minutes: s.resolution_minutes,
                    first_delivery_day: GateSchedule::day_text(s.first_delivery_day),
                }),
            },
            clearing: ClearingFile {
                rule: g.clearing.rule.name().into(),
                price_tick: DecimalToml::Text(g.clearing.price_tick.to_string()),
                price_floor: DecimalToml::Text(g.clearing.price_floor.to_string()),
                price_cap: DecimalToml::Text(g.clearing.price_cap.to_string()),
            },
            areas: g
                .areas
                .iter()
                .map(|a| AreaFile {
                    id: a.id,
                    name: a.name.clone(),
                    eic: a.eic.map(|e| e.to_string()),
                })
                .collect(),
            members: g
                .members
                .iter()
                .map(|m| MemberFile {
                    id: m.id,
                    name: m.name.clone(),
                    area: m.area,
                    public_key: m.public_key.to_hex(),
                    address: m.address.clone(),
                    eic: m.eic.map(|e| e.to_string()),
                })
                .collect(),
            participants: g
                .participants
                .iter()
                .map(|p| ParticipantFile {
                    id: p.id,
                    name: p.name.clone(),
                    home: p.home,
                    area: p.area,
                    public_key: p.public_key.to_hex(),
                    eic: p.eic.map(|e| e.to_string()),
                })
                .collect(),
            tie_lines: g
                .tie_lines
                .iter()
                .map(|t| TieLineFile {
                    id: t.id,
                    from: t.from,
                    to: t.to,
                    capacity_forward: DecimalToml::Text(t.capacity_forward.to_string()),
                    capacity_backward: DecimalToml::Text(t.capacity_backward.to_string()),
                    from_bus: t.from_bus,
                    to_bus: t.to_bus,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_sizes() {
        let crash = |f| FaultModel {
            kind: FaultKind::Crash,
            f,
        };
        let byz = |f| FaultModel {
            kind: FaultKind::Byzantine,
            f,
        };
        assert_eq!((crash(1).min_members(), crash(1).quorum(3)), (3, 2));
        assert_eq!(crash(2).quorum(5), 3);
        assert_eq!(crash(1).quorum(4), 3);
        assert_eq!((byz(1).min_members(), byz(1).quorum(4)), (4, 3));
        assert_eq!(byz(2).quorum(7), 5);
        assert_eq!(byz(1).quorum(5), 4);
        // Any two quorums overlap in more than f nodes, and n - f nodes form a quorum.
        for f in 0..5u16 {
            for extra in 0..4usize {
                for m in [crash(f), byz(f)] {
                    let n = m.min_members() + extra;
                    let q = m.quorum(n);
                    let overlap = 2 * q - n;
                    let need = if m.kind == FaultKind::Byzantine {
                        usize::from(f) + 1
                    } else {
                        1
                    };
                    assert!(overlap >= need, "{m:?} n={n} q={q}");
                    assert!(q <= n - usize::from(f), "{m:?} n={n} q={q}");
                }
            }
        }
    }

    #[test]
    fn rotation_follows_the_formula() {
        let mut g = crate::sample::SampleConsortium::new(4, 0).genesis;
        g.rotation_period = 3;
        let ids: Vec<u16> = g.members.iter().map(|m| m.id.0).collect();
        for h in 0..30u64 {
            for v in 0..6u32 {
                let expect = ids[((h / 3 + u64::from(v)) % 4) as usize];
                assert_eq!(g.primary(h, v).0, expect);
            }
        }
    }
}
