//! Bids in: an IEC 62325-451-3 `Bid_MarketDocument` (7.0 or 7.1) as Tieline bids.
//!
//! # What is read
//!
//! The header: `mRID`, `revisionNumber`, `type` (must be `A24`, bid document), the sender
//! (`sender_MarketParticipant.mRID` with its `codingScheme`, and `.marketRole.type`), the
//! receiver (must be the sender's home node), `createdDateTime`, `period.timeInterval`,
//! `domain.mRID` and, if present, `subject_MarketParticipant.mRID` (must be the sender: a
//! participant submits its own bids).
//!
//! Each `Bid_TimeSeries`: `mRID`, `businessType`, `in_Domain.mRID` and `out_Domain.mRID`,
//! `quantity_Measurement_Unit.name`, `currency_Unit.name`, `price_Measurement_Unit.name`,
//! `divisible`, `linkedBidsIdentification`, `blockBid`, and its `Period`s with `timeInterval`,
//! `resolution` and `Point`s of `position`, `quantity` and `price.amount`.
//!
//! # Rules
//!
//! * **Side.** The 451-3 bid schema has no direction element; the side is the
//!   `businessType`: `B74` (offer) sells, `B75` (need) buys. Any other business type is refused.
//! * **Area.** A Tieline bid trades in one area, so `in_Domain.mRID` and `out_Domain.mRID` must
//!   name the same area, the participant's own.
//! * **One bid per point.** Each `Point` becomes one single-step [`Bid`]: product
//!   `(period start + (position - 1) x resolution, resolution minutes)`, term spot, settlement
//!   physical, price `price.amount`.
//! * **Quantity.** `quantity` is power in MW (`MAW`, the only unit taken) held over the
//!   resolution; Tieline's [`Quantity`] is the energy of the delivery period in kWh
//!   (0.001 MWh). The energy is `MW x minutes / 60`, and it must come out as a whole number of
//!   kWh (e.g. 10.002 MW over 15 minutes = 2.5005 MWh is refused, not rounded).
//! * **Prices.** `price.amount` in EUR (`currency_Unit.name`, if given, must be `EUR`) per MWh
//!   (`price_Measurement_Unit.name`, if given, must be `MWH`), at most 4 decimals, and within
//!   the genesis's floor, cap and tick.
//! * **Divisibility.** Tieline clears divisible step curves only: `divisible` must be `A01`;
//!   `A02` (indivisible), block bids (`blockBid` `A01`) and linked bids are refused.
//! * **All or nothing.** Every error is collected with the path of its element (e.g.
//!   `Bid_TimeSeries[2]/Period[1]/Point[3]/quantity`) and the reason; a document with any error
//!   yields no bids. Each bid is also checked with [`Bid::check`] here, so a document that parses
//!   is one the home node will take unless its state changed (a full batch, a used nonce).
//! * **Resolution.** `PT15M`, `PT30M`, `PT60M` (or `PT1H`).

use std::collections::BTreeSet;
use std::fmt;

use tieline_core::genesis::Genesis;
use tieline_core::market::{Bid, BidError, BidStep, Product, Settlement, Side, Term};
use tieline_core::units::{AreaId, NodeId, ParticipantId, Price, Quantity, Timestamp};

use super::xml::{self, Element};
use super::{Code, Parties, parse_time};

/// The namespace of the 451-3 bid document, up to its minor version (7.0 and 7.1 are taken).
pub const NAMESPACE_PREFIX: &str = "urn:iec62325.351:tc57wg16:451-3:biddocument:7:";
/// The root element.
pub const ROOT: &str = "Bid_MarketDocument";

/// One error in a document: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    /// The element, as a path from the root (`Bid_TimeSeries[2]/Period[1]/Point[3]/quantity`).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// The header fields of a received document that an acknowledgement refers to, as far as they
/// could be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// `mRID`.
    pub mrid: Option<String>,
    /// `revisionNumber`.
    pub revision: Option<String>,
    /// `type`.
    pub doc_type: Option<String>,
    /// `createdDateTime`, as written.
    pub created: Option<String>,
    /// The sender's code.
    pub sender: Option<Code>,
    /// `sender_MarketParticipant.marketRole.type`.
    pub sender_role: Option<String>,
}

/// Why a document was refused as a whole: every error found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentErrors {
    /// What of the header could be read, for the acknowledgement.
    pub received: Box<Received>,
    /// The errors, in document order.
    pub errors: Vec<DocumentError>,
}

impl fmt::Display for DocumentErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the bid document is refused as a whole ({} error{}; no bid was submitted):",
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DocumentErrors {}

/// One Tieline bid made from one `Point` of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentBid {
    /// The time series, from 1 in document order.
    pub series: usize,
    /// The time series's `mRID`.
    pub series_mrid: String,
    /// The point's path in the document.
    pub path: String,
    /// The bid (unsigned).
    pub bid: Bid,
}

/// One `Bid_TimeSeries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidSeries {
    /// From 1, in document order.
    pub index: usize,
    /// `mRID`.
    pub mrid: String,
    /// From `businessType`.
    pub side: Side,
    /// From the domains.
    pub area: AreaId,
}

/// A parsed, fully valid bid document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidDocument {
    /// The header fields an acknowledgement refers to.
    pub received: Received,
    /// The bidding participant (the sender).
    pub participant: ParticipantId,
    /// The receiver: the participant's home node.
    pub receiver: NodeId,
    /// `period.timeInterval`.
    pub interval: (Timestamp, Timestamp),
    /// The time series.
    pub series: Vec<BidSeries>,
    /// The bids, one per point, in document order.
    pub bids: Vec<DocumentBid>,
}

/// What the conversion needs besides the text.
pub struct BidContext<'a> {
    /// The consortium.
    pub genesis: &'a Genesis,
    /// Its codes.
    pub parties: &'a Parties,
    /// The participant the caller bids as (e.g. from its key); the sender must be it.
    pub participant: Option<ParticipantId>,
    /// The first bid's nonce; the others follow by one each, in document order.
    pub first_nonce: u64,
    /// The bids' timestamp.
    pub now: Timestamp,
}

struct Errors {
    list: Vec<DocumentError>,
}

impl Errors {
    fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.list.push(DocumentError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// The text of a required child, or an error.
    fn required<'e>(&mut self, parent: &'e Element, base: &str, name: &str) -> Option<&'e Element> {
        match parent.first(name) {
            Some(e) if !e.text.is_empty() || !e.children.is_empty() => Some(e),
            Some(_) => {
                self.add(join(base, name), "is empty");
                None
            }
            None => {
                self.add(join(base, name), "is missing");
                None
            }
        }
    }

    fn coded(&mut self, parent: &Element, base: &str, name: &str) -> Option<(String, String)> {
        let e = self.required(parent, base, name)?;
        match e.attribute("codingScheme") {
            Some(s) => Some((s.to_string(), e.text.clone())),
            None => {
                self.add(join(base, name), "has no codingScheme attribute");
                None
            }
        }
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// Parses a `Bid_MarketDocument` and turns it into Tieline bids, all or nothing.
pub fn parse_bid_document(text: &str, cx: &BidContext<'_>) -> Result<BidDocument, DocumentErrors> {
    let mut errs = Errors { list: Vec::new() };
    let mut received = Received::default();
    let root = match xml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            errs.add("/", e);
            return Err(DocumentErrors {
                received: Box::new(received),
                errors: errs.list,
            });
        }
    };
    let parsed = read(&root, cx, &mut errs, &mut received);
    match parsed {
        Some(doc) if errs.list.is_empty() => Ok(doc),
        _ => Err(DocumentErrors {
            received: Box::new(received),
            errors: errs.list,
        }),
    }
}

fn read(
    root: &Element,
    cx: &BidContext<'_>,
    errs: &mut Errors,
    received: &mut Received,
) -> Option<BidDocument> {
    if root.name != ROOT {
        errs.add(
            root.name.as_str(),
            format!("the root element must be {ROOT}"),
        );
        return None;
    }
    match &root.namespace {
        Some(ns) if ns.starts_with(NAMESPACE_PREFIX) => {}
        Some(ns) => errs.add(
            ROOT,
            format!(
                "namespace `{ns}` is not the IEC 62325-451-3 bid document 7.x ({NAMESPACE_PREFIX}N)"
            ),
        ),
        None => errs.add(
            ROOT,
            format!("no namespace: expected {NAMESPACE_PREFIX}N (bid document 7.x)"),
        ),
    }
    let g = cx.genesis;
    let h = "";
    received.mrid = errs.required(root, h, "mRID").map(|e| e.text.clone());
    if let Some(m) = &received.mrid {
        if m.chars().count() > 60 {
            errs.add("mRID", "is longer than 60 characters");
        }
    }
    received.revision = errs
        .required(root, h, "revisionNumber")
        .map(|e| e.text.clone());
    if let Some(r) = &received.revision {
        let ok = (1..=3).contains(&r.len())
            && r.bytes().all(|b| b.is_ascii_digit())
            && !r.starts_with('0');
        if !ok {
            errs.add("revisionNumber", format!("`{r}` is not a number 1 to 999"));
        }
    }
    received.doc_type = errs.required(root, h, "type").map(|e| e.text.clone());
    if let Some(t) = &received.doc_type {
        if t != "A24" {
            errs.add("type", format!("`{t}` is not A24 (bid document)"));
        }
    }
    // The sender: the bidding participant.
    let sender = errs.coded(root, h, "sender_MarketParticipant.mRID");
    let mut participant = None;
    if let Some((scheme, code)) = &sender {
        received.sender = Some(Code {
            scheme: scheme.clone(),
            code: code.clone(),
        });
        match cx.parties.participant_by_code(scheme, code) {
            Ok(p) => match cx.participant {
                Some(expected) if expected != p => errs.add(
                    "sender_MarketParticipant.mRID",
                    format!(
                        "the document is sent by participant {p} ({code}), but you bid as participant {expected} ({})",
                        cx.parties.participant(expected).code
                    ),
                ),
                _ => participant = Some(p),
            },
            Err(e) => errs.add("sender_MarketParticipant.mRID", e),
        }
    }
    received.sender_role = errs
        .required(root, h, "sender_MarketParticipant.marketRole.type")
        .map(|e| e.text.clone());
    let home = participant.and_then(|p| g.participant(p)).map(|p| p.home);
    let mut receiver = None;
    if let Some((scheme, code)) = errs.coded(root, h, "receiver_MarketParticipant.mRID") {
        match cx.parties.node_by_code(&scheme, &code) {
            Ok(n) => match home {
                Some(home) if home != n => errs.add(
                    "receiver_MarketParticipant.mRID",
                    format!(
                        "the document is addressed to node {n} ({code}), but the participant's home node is {home} ({})",
                        cx.parties.node(home).code
                    ),
                ),
                _ => receiver = Some(n),
            },
            Err(e) => errs.add("receiver_MarketParticipant.mRID", e),
        }
    }
    errs.required(root, h, "receiver_MarketParticipant.marketRole.type");
    if let Some(c) = errs.required(root, h, "createdDateTime") {
        received.created = Some(c.text.clone());
        if let Err(e) = parse_time(&c.text) {
            errs.add("createdDateTime", e);
        }
    }
    let interval = interval_of(root, "period.timeInterval", errs);
    if let Some((scheme, code)) = errs.coded(root, h, "domain.mRID") {
        if let Err(e) = cx.parties.area_by_code(&scheme, &code) {
            errs.add("domain.mRID", e);
        }
    }
    if let Some(subject) = root.first("subject_MarketParticipant.mRID") {
        let scheme = subject.attribute("codingScheme").unwrap_or("");
        match cx.parties.participant_by_code(scheme, &subject.text) {
            Ok(p) if Some(p) == participant || participant.is_none() => {}
            Ok(p) => errs.add(
                "subject_MarketParticipant.mRID",
                format!(
                    "participant {p} is not the sender: a participant submits its own bids only"
                ),
            ),
            Err(e) => errs.add("subject_MarketParticipant.mRID", e),
        }
    }
    let all_series: Vec<&Element> = root.all("Bid_TimeSeries").collect();
    if all_series.is_empty() {
        errs.add("Bid_TimeSeries", "the document has no Bid_TimeSeries");
    }
    let mut series = Vec::new();
    let mut bids = Vec::new();
    let mut mrids = BTreeSet::new();
    for (i, ts) in all_series.iter().enumerate() {
        let index = i + 1;
        let base = format!("Bid_TimeSeries[{index}]");
        if let Some(s) = read_series(ts, index, &base, participant, interval, cx, errs, &mut bids) {
            if !mrids.insert(s.mrid.clone()) {
                errs.add(
                    join(&base, "mRID"),
                    format!("`{}` is used by an earlier time series", s.mrid),
                );
            }
            series.push(s);
        }
    }
    Some(BidDocument {
        received: received.clone(),
        participant: participant?,
        receiver: receiver?,
        interval: interval?,
        series,
        bids,
    })
}

fn interval_of(parent: &Element, name: &str, errs: &mut Errors) -> Option<(Timestamp, Timestamp)> {
    interval_at(parent, "", name, errs)
}

fn interval_at(
    parent: &Element,
    base: &str,
    name: &str,
    errs: &mut Errors,
) -> Option<(Timestamp, Timestamp)> {
    let path = join(base, name);
    let e = errs.required(parent, base, name)?;
    let mut end_point = |which: &str| -> Option<Timestamp> {
        let el = errs.required(e, &path, which)?;
        match parse_time(&el.text) {
            Ok(t) => Some(t),
            Err(r) => {
                errs.add(join(&path, which), r);
                None
            }
        }
    };
    let start = end_point("start");
    let end = end_point("end");
    let (start, end) = (start?, end?);
    if end <= start {
        errs.add(path, "end is not after start");
        return None;
    }
    Some((start, end))
}

/// Minutes of an ISO 8601 resolution Tieline takes.
pub fn resolution_minutes(s: &str) -> Result<u32, String> {
    match s {
        "PT15M" => Ok(15),
        "PT30M" => Ok(30),
        "PT60M" | "PT1H" => Ok(60),
        other => Err(format!(
            "`{other}` is not a resolution Tieline takes (PT15M, PT30M, PT60M)"
        )),
    }
}

/// The energy of `mw` megawatts held for `minutes`, exactly, in kWh.
pub fn energy_of(mw: &str, minutes: u32) -> Result<Quantity, String> {
    let raw =
        tieline_core::units::parse_decimal(mw, 6).map_err(|e| format!("{e} (a power in MW)"))?;
    // raw is in 1e-6 MW; energy in kWh = raw * minutes / 60 / 1000.
    let num = raw * i128::from(minutes);
    let den = 60_000i128;
    if num % den != 0 {
        return Err(format!(
            "{mw} MW over {minutes} minutes is {} MWh, not a whole number of kWh (Tieline's energy unit)",
            tieline_core::units::format_decimal(num / 60, 6)
        ));
    }
    i64::try_from(num / den)
        .map(Quantity)
        .map_err(|_| format!("{mw} MW is out of range"))
}

#[allow(clippy::too_many_arguments)]
fn read_series(
    ts: &Element,
    index: usize,
    base: &str,
    participant: Option<ParticipantId>,
    doc_interval: Option<(Timestamp, Timestamp)>,
    cx: &BidContext<'_>,
    errs: &mut Errors,
    bids: &mut Vec<DocumentBid>,
) -> Option<BidSeries> {
    let mrid = errs.required(ts, base, "mRID").map(|e| e.text.clone());
    let side = match errs
        .required(ts, base, "businessType")
        .map(|e| e.text.as_str())
    {
        Some("B74") => Some(Side::Sell),
        Some("B75") => Some(Side::Buy),
        Some(other) => {
            errs.add(
                join(base, "businessType"),
                format!("`{other}` is not B74 (offer: a sell bid) or B75 (need: a buy bid)"),
            );
            None
        }
        None => None,
    };
    let domain = |name: &str, errs: &mut Errors| -> Option<AreaId> {
        let (scheme, code) = errs.coded(ts, base, name)?;
        match cx.parties.area_by_code(&scheme, &code) {
            Ok(a) => Some(a),
            Err(e) => {
                errs.add(join(base, name), e);
                None
            }
        }
    };
    let in_area = domain("in_Domain.mRID", errs);
    let out_area = domain("out_Domain.mRID", errs);
    let mut area = match (in_area, out_area) {
        (Some(a), Some(b)) if a == b => Some(a),
        (Some(a), Some(b)) => {
            errs.add(
                join(base, "out_Domain.mRID"),
                format!("names area {b}, in_Domain.mRID area {a}: a Tieline bid trades in one area, so both must name it"),
            );
            None
        }
        _ => None,
    };
    if let (Some(a), Some(p)) = (area, participant.and_then(|p| cx.genesis.participant(p))) {
        if p.area != a {
            area = None;
            errs.add(
                join(base, "in_Domain.mRID"),
                format!(
                    "area {a} is not participant {}'s area {} ({})",
                    p.id,
                    p.area,
                    cx.parties.area(p.area).code
                ),
            );
        }
    }
    if let Some(u) = errs.required(ts, base, "quantity_Measurement_Unit.name") {
        if u.text != "MAW" {
            errs.add(
                join(base, "quantity_Measurement_Unit.name"),
                format!(
                    "`{}` is not MAW (megawatt), the only quantity unit taken",
                    u.text
                ),
            );
        }
    }
    if let Some(c) = ts.first("currency_Unit.name") {
        if c.text != "EUR" {
            errs.add(
                join(base, "currency_Unit.name"),
                format!("`{}` is not EUR, the currency of Tieline's prices", c.text),
            );
        }
    }
    if let Some(u) = ts.first("price_Measurement_Unit.name") {
        if u.text != "MWH" {
            errs.add(
                join(base, "price_Measurement_Unit.name"),
                format!("`{}` is not MWH: Tieline prices are per MWh", u.text),
            );
        }
    }
    match errs.required(ts, base, "divisible").map(|e| e.text.as_str()) {
        Some("A01") | None => {}
        Some("A02") => errs.add(
            join(base, "divisible"),
            "A02 (indivisible): Tieline clears divisible bids only (step curves any part of which may be accepted)",
        ),
        Some(other) => errs.add(
            join(base, "divisible"),
            format!("`{other}` is not A01 (yes) or A02 (no)"),
        ),
    }
    if let Some(b) = ts.first("blockBid") {
        match b.text.as_str() {
            "A02" => {}
            "A01" => errs.add(
                join(base, "blockBid"),
                "A01 (a block bid): Tieline clears each delivery period on its own and takes no block bids",
            ),
            other => errs.add(
                join(base, "blockBid"),
                format!("`{other}` is not A01 (yes) or A02 (no)"),
            ),
        }
    }
    if ts.first("linkedBidsIdentification").is_some() {
        errs.add(
            join(base, "linkedBidsIdentification"),
            "linked bids are not supported: Tieline clears each bid on its own",
        );
    }
    let periods: Vec<&Element> = ts.all("Period").collect();
    if periods.is_empty() {
        errs.add(join(base, "Period"), "is missing");
    }
    for (j, period) in periods.iter().enumerate() {
        let pbase = format!("{base}/Period[{}]", j + 1);
        let interval = interval_at(period, &pbase, "timeInterval", errs);
        let minutes = match errs.required(period, &pbase, "resolution") {
            Some(r) => match resolution_minutes(&r.text) {
                Ok(m) => Some(m),
                Err(e) => {
                    errs.add(join(&pbase, "resolution"), e);
                    None
                }
            },
            None => None,
        };
        if let (Some((s, e)), Some((ds, de))) = (interval, doc_interval) {
            if s < ds || e > de {
                errs.add(
                    join(&pbase, "timeInterval"),
                    "lies outside the document's period.timeInterval",
                );
            }
        }
        let slots = match (interval, minutes) {
            (Some((s, e)), Some(m)) => {
                let step = u64::from(m) * 60_000;
                if (e.0 - s.0) % step != 0 {
                    errs.add(
                        join(&pbase, "timeInterval"),
                        format!("is not a whole number of {m}-minute steps"),
                    );
                    None
                } else {
                    Some((s, m, (e.0 - s.0) / step))
                }
            }
            _ => None,
        };
        let points: Vec<&Element> = period.all("Point").collect();
        if points.is_empty() {
            errs.add(join(&pbase, "Point"), "is missing");
        }
        let mut positions = BTreeSet::new();
        for (k, point) in points.iter().enumerate() {
            let ptpath = format!("{pbase}/Point[{}]", k + 1);
            let position = match errs.required(point, &ptpath, "position") {
                Some(p) => match p.text.parse::<u64>() {
                    Ok(n) if n >= 1 => {
                        if !positions.insert(n) {
                            errs.add(
                                join(&ptpath, "position"),
                                format!("position {n} appears twice in the period"),
                            );
                        }
                        if let Some((_, _, count)) = slots {
                            if n > count {
                                errs.add(
                                    join(&ptpath, "position"),
                                    format!(
                                        "position {n} is past the period's end ({count} steps)"
                                    ),
                                );
                            }
                        }
                        Some(n)
                    }
                    _ => {
                        errs.add(
                            join(&ptpath, "position"),
                            format!("`{}` is not a position (a whole number from 1)", p.text),
                        );
                        None
                    }
                },
                None => None,
            };
            let quantity = match (errs.required(point, &ptpath, "quantity"), minutes) {
                (Some(q), Some(m)) => match energy_of(&q.text, m) {
                    Ok(q) => Some(q),
                    Err(e) => {
                        errs.add(join(&ptpath, "quantity"), e);
                        None
                    }
                },
                _ => None,
            };
            let price = match errs.required(point, &ptpath, "price.amount") {
                Some(p) => match Price::parse(&p.text) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        errs.add(
                            join(&ptpath, "price.amount"),
                            format!("{e} (a price in EUR/MWh)"),
                        );
                        None
                    }
                },
                None => None,
            };
            let (
                Some(pos),
                Some(quantity),
                Some(price),
                Some((start, m, _)),
                Some(side),
                Some(area),
                Some(p),
                Some(mrid),
            ) = (
                position,
                quantity,
                price,
                slots,
                side,
                area,
                participant,
                mrid.as_ref(),
            )
            else {
                continue;
            };
            let bid = Bid {
                chain_id: cx.genesis.chain_id(),
                participant: p,
                area,
                bus: None,
                side,
                product: Product {
                    delivery_start: Timestamp(start.0 + (pos - 1) * u64::from(m) * 60_000),
                    delivery_minutes: m,
                    term: Term::Spot,
                    settlement: Settlement::Physical,
                },
                steps: vec![BidStep { price, quantity }],
                nonce: cx.first_nonce + bids.len() as u64,
                timestamp: cx.now,
            };
            if let Err(e) = bid.check(cx.genesis, &cx.genesis.chain_id()) {
                let at = match &e {
                    BidError::BadStep { reason, .. } if reason.contains("quantity") => {
                        join(&ptpath, "quantity")
                    }
                    BidError::BadStep { .. } => join(&ptpath, "price.amount"),
                    BidError::WrongArea { .. } => join(base, "in_Domain.mRID"),
                    _ => ptpath.clone(),
                };
                errs.add(at, e.to_string());
                continue;
            }
            bids.push(DocumentBid {
                series: index,
                series_mrid: mrid.clone(),
                path: ptpath,
                bid,
            });
        }
    }
    Some(BidSeries {
        index,
        mrid: mrid?,
        side: side?,
        area: area?,
    })
}
