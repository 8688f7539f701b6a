//! The genesis as a TOML file: what an operator writes, read into a checked [`Genesis`]
//! and written back.

use super::*;

/// A decimal in a TOML file: an integer, a float or a string such as `"12.345"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum DecimalToml {
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
pub(super) struct GenesisFile {
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
pub(super) struct FaultModelFile {
    kind: String,
    f: u16,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TimingFile {
    #[serde(default, skip_serializing_if = "is_zero")]
    gate_ms: u64,
    batch_wait_ms: u64,
    view_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleFile>,
}

pub(super) fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// `[timing.schedule]`: `zone = "Europe/Brussels"`, `gate = "12:00"` (local `HH:MM[:SS]`, the day before
/// delivery), `resolution_minutes = 15`, `first_delivery_day = "2026-12-08"`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleFile {
    zone: String,
    gate: String,
    resolution_minutes: u16,
    first_delivery_day: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClearingFile {
    rule: String,
    price_tick: DecimalToml,
    price_floor: DecimalToml,
    price_cap: DecimalToml,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AreaFile {
    id: AreaId,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eic: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberFile {
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
pub(super) struct ParticipantFile {
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
pub(super) struct TieLineFile {
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

pub(super) fn parse_key(field: &str, s: &str) -> Result<PublicKey, GenesisError> {
    let key = PublicKey::from_hex(s)
        .map_err(|e| field_err(field, format!("expected 64 hex characters: {e}")))?;
    if !Ed25519::is_valid_key(&key) {
        return Err(field_err(field, "not a usable ed25519 public key"));
    }
    Ok(key)
}

pub(super) fn parse_eic(field: &str, s: Option<&str>) -> Result<Option<Eic>, GenesisError> {
    s.map(|s| Eic::parse(s).map_err(|e| field_err(field, e.to_string())))
        .transpose()
}

impl GenesisFile {
    pub(super) fn into_genesis(self) -> Result<Genesis, GenesisError> {
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

    pub(super) fn from_genesis(g: &Genesis) -> Self {
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
