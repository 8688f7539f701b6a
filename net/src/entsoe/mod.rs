//! IEC 62325-451 (ENTSO-E) market documents in and out of Tieline.
//!
//! | direction | document | standard, namespace | module |
//! |---|---|---|---|
//! | in  | `Bid_MarketDocument` (type A24) | IEC 62325-451-3, `urn:iec62325.351:tc57wg16:451-3:biddocument:7:x` (7.0, 7.1) | [`bids`] |
//! | out | `Acknowledgement_MarketDocument` | IEC 62325-451-1, [`ack::NAMESPACE`] (7.0) | [`ack`] |
//! | out | `Publication_MarketDocument` type A44 (prices) | IEC 62325-451-3, [`results::PUBLICATION_NAMESPACE`] (7.3) | [`results`] |
//! | out | `AllocationResult_MarketDocument` type A25 (per participant) | IEC 62325-451-3, [`results::ALLOCATION_NAMESPACE`] (7.2) | [`results`] |
//! | out | `Publication_MarketDocument` type A09 (tie-line exchanges) | IEC 62325-451-3, 7.3 | [`results`] |
//!
//! Element names, their order and the namespaces follow the ENTSO-E schemas of those versions;
//! code values follow the ENTSO-E code lists (`urn:entsoe.eu:wgedi:codelists`).
//!
//! # Identities
//!
//! ENTSO-E documents name parties and areas by a code and its `codingScheme`. [`Parties`] maps
//! Tieline's areas, management nodes (members), participants and tie lines to codes and back.
//! [`Parties::from_genesis`] names an entity by the EIC its genesis entry carries (spec D23;
//! read in one place, [`registered_eic`]) and otherwise by its *fallback* code (see
//! [`FALLBACK_SCHEME`]). Inbound documents are mapped back
//! through the same struct and may use either an entity's EIC (scheme `A01`) or its fallback.
//!
//! # Times
//!
//! Every time is UTC. Intervals are written `YYYY-MM-DDTHH:MMZ` and `createdDateTime`
//! `YYYY-MM-DDTHH:MM:SSZ`, as the schemas' patterns require; inbound intervals may also carry
//! seconds (they must be `:00`).

pub mod ack;
pub mod bids;
pub mod results;
pub mod xml;

use std::collections::BTreeMap;
use std::fmt;

use tieline_core::genesis::Genesis;
use tieline_core::units::{AreaId, NodeId, ParticipantId, TieLineId, Timestamp};

pub use ack::{AckInput, acknowledgement};
pub use bids::{
    BidContext, BidDocument, BidSeries, DocumentBid, DocumentError, DocumentErrors,
    parse_bid_document,
};
pub use results::{ResultDocuments, result_documents};

/// The `codingScheme` of an EIC code.
pub const EIC_SCHEME: &str = "A01";

/// The `codingScheme` of Tieline's fallback codes, for entities without an EIC.
///
/// The ENTSO-E coding scheme list has no code for identifiers private to a consortium: `A01`
/// is EIC, `A02` CGM (identifiers of the Common Grid Model exchange standard), `A10` GS1, and
/// `Nxx` the national schemes of single countries. Tieline uses `A02` for its fallback codes:
/// like CGMES identifiers they name objects of a shared model (here the consortium's genesis)
/// rather than parties registered with an issuing office, no EIC or GS1 registry will resolve
/// them, and a national scheme would wrongly tie a cross-border consortium to one country. The
/// codes are `TL-A<id>` (area), `TL-N<id>` (management node), `TL-P<id>` (participant) and
/// `TL-L<id>` (tie line): at most 16 characters, the schemas' limit for party codes. A
/// receiver must read them together with the consortium's genesis.
pub const FALLBACK_SCHEME: &str = "A02";

/// One entity's code in documents.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code {
    /// The `codingScheme` attribute: [`EIC_SCHEME`] or [`FALLBACK_SCHEME`].
    pub scheme: String,
    /// The code.
    pub code: String,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (codingScheme {})", self.code, self.scheme)
    }
}

/// Which genesis entity an EIC lookup is for.
#[derive(Clone, Copy, Debug)]
pub enum Entity {
    /// A market area.
    Area(AreaId),
    /// A management node.
    Node(NodeId),
    /// A participant.
    Participant(ParticipantId),
    /// A tie line.
    TieLine(TieLineId),
}

/// The EIC the genesis registers for an entity (spec D23): areas, members and participants
/// may carry one; tie lines have none in the genesis.
pub fn registered_eic(genesis: &Genesis, entity: Entity) -> Option<String> {
    let eic = match entity {
        Entity::Area(a) => genesis.area(a)?.eic,
        Entity::Node(n) => genesis.member(n)?.eic,
        Entity::Participant(p) => genesis.participant(p)?.eic,
        Entity::TieLine(_) => None,
    };
    eic.map(|e| e.to_string())
}

/// The fallback code of an entity (see [`FALLBACK_SCHEME`]).
pub fn fallback_code(entity: Entity) -> String {
    match entity {
        Entity::Area(a) => format!("TL-A{}", a.0),
        Entity::Node(n) => format!("TL-N{}", n.0),
        Entity::Participant(p) => format!("TL-P{}", p.0),
        Entity::TieLine(t) => format!("TL-L{}", t.0),
    }
}

/// The codes of a consortium's areas, nodes, participants and tie lines, both ways.
#[derive(Clone, Debug, Default)]
pub struct Parties {
    areas: BTreeMap<AreaId, Code>,
    nodes: BTreeMap<NodeId, Code>,
    participants: BTreeMap<ParticipantId, Code>,
    tie_lines: BTreeMap<TieLineId, Code>,
}

impl Parties {
    /// Every entity of the genesis with its EIC where [`registered_eic`] knows one, else its
    /// fallback code.
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let code = |e: Entity| match registered_eic(genesis, e) {
            Some(eic) => Code {
                scheme: EIC_SCHEME.into(),
                code: eic,
            },
            None => Code {
                scheme: FALLBACK_SCHEME.into(),
                code: fallback_code(e),
            },
        };
        Parties {
            areas: genesis
                .areas
                .iter()
                .map(|a| (a.id, code(Entity::Area(a.id))))
                .collect(),
            nodes: genesis
                .members
                .iter()
                .map(|m| (m.id, code(Entity::Node(m.id))))
                .collect(),
            participants: genesis
                .participants
                .iter()
                .map(|p| (p.id, code(Entity::Participant(p.id))))
                .collect(),
            tie_lines: genesis
                .tie_lines
                .iter()
                .map(|t| (t.id, code(Entity::TieLine(t.id))))
                .collect(),
        }
    }

    /// An area's code (its fallback if the area is unknown).
    pub fn area(&self, id: AreaId) -> Code {
        self.areas
            .get(&id)
            .cloned()
            .unwrap_or_else(|| fallback(Entity::Area(id)))
    }

    /// A management node's code.
    pub fn node(&self, id: NodeId) -> Code {
        self.nodes
            .get(&id)
            .cloned()
            .unwrap_or_else(|| fallback(Entity::Node(id)))
    }

    /// A participant's code.
    pub fn participant(&self, id: ParticipantId) -> Code {
        self.participants
            .get(&id)
            .cloned()
            .unwrap_or_else(|| fallback(Entity::Participant(id)))
    }

    /// A tie line's code.
    pub fn tie_line(&self, id: TieLineId) -> Code {
        self.tie_lines
            .get(&id)
            .cloned()
            .unwrap_or_else(|| fallback(Entity::TieLine(id)))
    }

    /// The area a code names: its EIC (scheme `A01`) or its fallback code (scheme `A02`).
    pub fn area_by_code(&self, scheme: &str, code: &str) -> Result<AreaId, String> {
        lookup(&self.areas, scheme, code, "area", |id| Entity::Area(*id))
    }

    /// The participant a code names.
    pub fn participant_by_code(&self, scheme: &str, code: &str) -> Result<ParticipantId, String> {
        lookup(&self.participants, scheme, code, "participant", |id| {
            Entity::Participant(*id)
        })
    }

    /// The management node a code names.
    pub fn node_by_code(&self, scheme: &str, code: &str) -> Result<NodeId, String> {
        lookup(&self.nodes, scheme, code, "management node", |id| {
            Entity::Node(*id)
        })
    }
}

fn fallback(e: Entity) -> Code {
    Code {
        scheme: FALLBACK_SCHEME.into(),
        code: fallback_code(e),
    }
}

fn lookup<K: Copy + Ord>(
    map: &BTreeMap<K, Code>,
    scheme: &str,
    code: &str,
    what: &str,
    entity: impl Fn(&K) -> Entity,
) -> Result<K, String> {
    for (id, c) in map {
        let fb = fallback_code(entity(id));
        if c.code == code || fb == code {
            let expected = if c.code == code {
                &c.scheme
            } else {
                FALLBACK_SCHEME
            };
            if scheme != expected {
                return Err(format!(
                    "`{code}` is a {what} code of scheme {expected}, the document says codingScheme `{scheme}`"
                ));
            }
            return Ok(*id);
        }
    }
    Err(format!(
        "`{code}` (codingScheme `{scheme}`) is no {what} of this consortium"
    ))
}

/// `YYYY-MM-DDTHH:MMZ`, the schemas' form for interval ends.
pub fn interval_time(t: Timestamp) -> String {
    jiff_ts(t).strftime("%Y-%m-%dT%H:%MZ").to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the schemas' form for `createdDateTime`.
pub fn created_time(t: Timestamp) -> String {
    jiff_ts(t).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn jiff_ts(t: Timestamp) -> jiff::Timestamp {
    tieline_core::schedule::instant(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Parses a UTC time `YYYY-MM-DDTHH:MM[:SS]Z` to a [`Timestamp`].
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let bad = || format!("`{s}` is not a UTC time YYYY-MM-DDTHH:MMZ");
    let body = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let num = |x: &str, len: usize| -> Result<i64, String> {
        if x.len() == len && x.bytes().all(|b| b.is_ascii_digit()) {
            x.parse::<i64>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    if d.len() != 3 || !(t.len() == 2 || t.len() == 3) {
        return Err(bad());
    }
    let (y, mo, da) = (num(d[0], 4)?, num(d[1], 2)?, num(d[2], 2)?);
    let (h, mi) = (num(t[0], 2)?, num(t[1], 2)?);
    let sec = if t.len() == 3 { num(t[2], 2)? } else { 0 };
    let dt = jiff::civil::DateTime::new(
        i16::try_from(y).map_err(|_| bad())?,
        i8::try_from(mo).map_err(|_| bad())?,
        i8::try_from(da).map_err(|_| bad())?,
        i8::try_from(h).map_err(|_| bad())?,
        i8::try_from(mi).map_err(|_| bad())?,
        i8::try_from(sec).map_err(|_| bad())?,
        0,
    )
    .map_err(|e| format!("`{s}`: {e}"))?;
    let ts = dt
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_err(|e| format!("`{s}`: {e}"))?
        .timestamp();
    u64::try_from(ts.as_millisecond())
        .map(Timestamp)
        .map_err(|_| format!("`{s}` is before 1970"))
}

/// An mRID of at most `max` characters: `prefix` followed by as much of `hash` as fits.
pub fn mrid(prefix: &str, hash: &str, max: usize) -> String {
    let room = max.saturating_sub(prefix.len());
    format!("{prefix}{}", &hash[..room.min(hash.len())])
}
