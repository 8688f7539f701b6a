//! Results out for a committed round (one certified block).
//!
//! * **Prices**: a `Publication_MarketDocument` 7.3 of type `A44` (price document). One
//!   `TimeSeries` per area and run of contiguous delivery periods of one length (and one term
//!   and settlement): `businessType` `A62` (spot price), `in_Domain.mRID` = `out_Domain.mRID` =
//!   the area, `contract_MarketAgreement.type` `A01` (daily) for spot or `A06` (long term) for
//!   medium/long-term products, `currency_Unit.name` `EUR`, `price_Measure_Unit.name` `MWH`,
//!   `curveType` `A01`, and a `Period` whose `Point`s carry `price.amount`. This is the form the
//!   ENTSO-E transparency platform publishes day-ahead prices in.
//! * **Allocation results**: per participant with trades in the block, an
//!   `AllocationResult_MarketDocument` 7.2 (IEC 62325-451-3) of type `A25` (allocation result
//!   document): the document the auction process defines for telling a bidder what it was
//!   allocated. Receiver and `subjectParty` are the participant, `domain.mRID` its area. One
//!   `TimeSeries` per trade: `mRID` and `marketAgreement.mRID` are the first 32 hex digits of
//!   the bid id (the trade's Merkle leaf names the bid), `auction.mRID` `TL-H<height>`,
//!   `businessType` `A01` (production) for a sale or `A04` (consumption) for a purchase,
//!   in/out domain the area, `marketAgreement.type` as above, `quantity` in MW (`MAW`) and
//!   `amount_Price.amount` the settlement price in EUR/MWh. (`Publication_MarketDocument`
//!   would do for public results, but it has no receiver-specific subject party.)
//! * **Scheduled exchanges**: a `Publication_MarketDocument` 7.3 of type `A09` (finalised
//!   schedule), as the transparency platform publishes scheduled commercial exchanges. Per tie
//!   line and run of contiguous periods, two `TimeSeries`, one per direction:
//!   `out_Domain.mRID` the area the energy leaves, `in_Domain.mRID` the area it enters,
//!   `businessType` `A06` (external trade without explicit capacity: Tieline's exchanges are
//!   implicit, from the coupled clearing), `connectingLine_RegisteredResource.mRID` the tie
//!   line, and `quantity` in MW, zero in the periods the flow runs the other way.
//!
//! **Quantities.** Tieline records energy per delivery period; documents carry MW, the mean
//! power over the period: `MWh x 60 / minutes`, exact for 15, 30 and 60 minutes (periods of
//! other lengths are written to six decimals, truncated).
//!
//! **Tracing back to the block.** Every document's `mRID` is `TL-H<height>-<kind>-` followed by
//! the leading hex digits of the block's digest (as many as the schema's length allows: 35
//! characters for publications, 60 for allocation results), and each carries the full digest,
//! with the height and the chain id, in a `Reason` of code `A95` (complementary information):
//! on every `TimeSeries` of the publications (their documents have no document-level reason)
//! and at document level in the allocation results. `sender_MarketParticipant.mRID` is the
//! member writing the document (role `A11`, market operator); all of it can be checked
//! against the certified block with `tieline audit`.

use std::collections::{BTreeMap, BTreeSet};

use tieline_core::block::Block;
use tieline_core::genesis::Genesis;
use tieline_core::market::{Settlement, Side, Term};
use tieline_core::units::{
    AreaId, NodeId, ParticipantId, Price, Quantity, TieLineId, Timestamp, format_decimal,
};

use super::ack::truncate;
use super::xml::Writer;
use super::{Parties, created_time, interval_time, mrid};

/// The namespace of the publication document 7.3.
pub const PUBLICATION_NAMESPACE: &str = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3";
/// The namespace of the allocation result document 7.2.
pub const ALLOCATION_NAMESPACE: &str =
    "urn:iec62325.351:tc57wg16:451-3:allocationresultdocument:7:2";

/// The documents of one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultDocuments {
    /// The A44 price document; `None` when the block records no area prices (pay-as-bid).
    pub prices: Option<String>,
    /// One A25 allocation result document per participant with trades, by participant.
    pub allocations: Vec<(ParticipantId, String)>,
    /// The A09 exchange document; `None` when the block records no tie-line flows.
    pub exchanges: Option<String>,
}

/// The mean power of `energy` over `minutes`, in MW, as a decimal.
pub fn mw_of(energy: Quantity, minutes: u32) -> String {
    let m = i128::from(minutes.max(1));
    let milli = i128::from(energy.0) * 60;
    if milli % m == 0 {
        format_decimal(milli / m, 3)
    } else {
        format_decimal(milli * 1000 / m, 6)
    }
}

fn contract_type(term: Term) -> &'static str {
    match term {
        Term::Spot => "A01",
        Term::MediumLongTerm => "A06",
    }
}

/// Values per delivery period: (start, minutes, value).
type Periods<T> = Vec<(Timestamp, u32, T)>;

/// A run of contiguous delivery periods of one length: the start, the minutes and the values.
struct Run<T> {
    start: Timestamp,
    minutes: u32,
    values: Vec<T>,
}

/// Splits `(start, minutes, value)` items (any order) into runs of contiguous periods.
fn runs<T: Clone>(mut items: Periods<T>) -> Vec<Run<T>> {
    items.sort_by_key(|(s, m, _)| (*m, *s));
    let mut out: Vec<Run<T>> = Vec::new();
    for (start, minutes, v) in items {
        if let Some(last) = out.last_mut() {
            let end = last.start.0 + last.values.len() as u64 * u64::from(last.minutes) * 60_000;
            if last.minutes == minutes && end == start.0 {
                last.values.push(v);
                continue;
            }
        }
        out.push(Run {
            start,
            minutes,
            values: vec![v],
        });
    }
    out
}

fn period<T>(w: &mut Writer, run: &Run<T>, mut point: impl FnMut(&mut Writer, &T)) {
    let end = Timestamp(run.start.0 + run.values.len() as u64 * u64::from(run.minutes) * 60_000);
    w.open("Period");
    w.open("timeInterval");
    w.text("start", &interval_time(run.start));
    w.text("end", &interval_time(end));
    w.close("timeInterval");
    w.text("resolution", &format!("PT{}M", run.minutes));
    for (i, v) in run.values.iter().enumerate() {
        w.open("Point");
        w.text("position", &(i + 1).to_string());
        point(w, v);
        w.close("Point");
    }
    w.close("Period");
}

/// Opens a publication's `TimeSeries` and writes its head: number, business type, the
/// (in, out) domains and the contract type.
fn series_head(
    w: &mut Writer,
    n: usize,
    business: &str,
    (in_domain, out_domain): (&super::Code, &super::Code),
    term: Term,
) {
    w.open("TimeSeries");
    w.text("mRID", &n.to_string());
    w.text("businessType", business);
    w.coded("in_Domain.mRID", &in_domain.scheme, &in_domain.code);
    w.coded("out_Domain.mRID", &out_domain.scheme, &out_domain.code);
    w.text("contract_MarketAgreement.type", contract_type(term));
}

fn reason(w: &mut Writer, code: &str, text: &str) {
    w.open("Reason");
    w.text("code", code);
    w.text("text", &truncate(text, 512));
    w.close("Reason");
}

struct Header<'a> {
    parties: &'a Parties,
    sender: NodeId,
    created: Timestamp,
    trace: String,
    hash: String,
    height: u64,
}

impl Header<'_> {
    fn open(&self, w: &mut Writer, kind: &str, doc_type: &str, max: usize) {
        w.text(
            "mRID",
            &mrid(&format!("TL-H{}-{kind}-", self.height), &self.hash, max),
        );
        w.text("revisionNumber", "1");
        w.text("type", doc_type);
        let s = self.parties.node(self.sender);
        w.coded("sender_MarketParticipant.mRID", &s.scheme, &s.code);
        w.text("sender_MarketParticipant.marketRole.type", "A11");
    }

    fn interval(&self, w: &mut Writer, start: Timestamp, end: Timestamp) {
        w.text("createdDateTime", &created_time(self.created));
        w.open("period.timeInterval");
        w.text("start", &interval_time(start));
        w.text("end", &interval_time(end));
        w.close("period.timeInterval");
    }
}

impl ResultDocuments {
    /// Writes the documents into `dir` (created if missing) as `prices-h<H>.xml`,
    /// `allocation-h<H>-p<P>.xml` and `exchanges-h<H>.xml`; returns the paths written.
    pub fn write(
        &self,
        height: u64,
        dir: &std::path::Path,
    ) -> std::io::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let named = self
            .prices
            .iter()
            .map(|x| (format!("prices-h{height}.xml"), x))
            .chain(
                self.allocations
                    .iter()
                    .map(|(p, x)| (format!("allocation-h{height}-p{p}.xml"), x)),
            )
            .chain(
                self.exchanges
                    .iter()
                    .map(|x| (format!("exchanges-h{height}.xml"), x)),
            );
        let mut written = Vec::new();
        for (name, xml) in named {
            let path = dir.join(name);
            std::fs::write(&path, xml)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// The three kinds of result documents for a committed block, written by member `sender`.
pub fn result_documents(
    genesis: &Genesis,
    parties: &Parties,
    block: &Block,
    sender: NodeId,
    created: Timestamp,
) -> ResultDocuments {
    let hash = block.header.digest().to_hex();
    let h = Header {
        parties,
        sender,
        created,
        trace: format!(
            "Tieline block {hash} at height {} of chain {} (certified; verify with tieline audit)",
            block.header.height,
            genesis.chain_id().to_hex()
        ),
        hash,
        height: block.header.height,
    };
    ResultDocuments {
        prices: prices(&h, block),
        allocations: allocations(&h, genesis, block),
        exchanges: exchanges(&h, genesis, block),
    }
}

fn span<'a>(
    products: impl Iterator<Item = &'a tieline_core::market::Product>,
) -> Option<(Timestamp, Timestamp)> {
    let mut span: Option<(Timestamp, Timestamp)> = None;
    for p in products {
        let end = Timestamp(p.delivery_start.0 + u64::from(p.delivery_minutes) * 60_000);
        span = Some(match span {
            None => (p.delivery_start, end),
            Some((s, e)) => (s.min(p.delivery_start), e.max(end)),
        });
    }
    span
}

fn prices(h: &Header<'_>, block: &Block) -> Option<String> {
    let o = &block.body.process.clearing.outcome;
    let (start, end) = span(o.area_prices.iter().map(|p| &p.product))?;
    let mut groups: BTreeMap<(AreaId, Term, Settlement), Periods<Price>> = BTreeMap::new();
    for p in &o.area_prices {
        groups
            .entry((p.area, p.product.term, p.product.settlement))
            .or_default()
            .push((
                p.product.delivery_start,
                p.product.delivery_minutes,
                p.price,
            ));
    }
    let mut w = Writer::new("Publication_MarketDocument", PUBLICATION_NAMESPACE);
    h.open(&mut w, "A44", "A44", 35);
    h.interval(&mut w, start, end);
    let mut n = 0;
    for ((area, term, settlement), items) in groups {
        let code = h.parties.area(area);
        for run in runs(items) {
            n += 1;
            series_head(&mut w, n, "A62", (&code, &code), term);
            w.text("currency_Unit.name", "EUR");
            w.text("price_Measure_Unit.name", "MWH");
            w.text("curveType", "A01");
            period(&mut w, &run, |w, p| w.text("price.amount", &p.to_string()));
            let note = match settlement {
                Settlement::Physical => String::new(),
                Settlement::Financial => " (financially settled product)".into(),
            };
            reason(&mut w, "A95", &format!("{}{note}", h.trace));
            w.close("TimeSeries");
        }
    }
    Some(w.finish("Publication_MarketDocument"))
}

fn allocations(h: &Header<'_>, genesis: &Genesis, block: &Block) -> Vec<(ParticipantId, String)> {
    let mut by_participant: BTreeMap<ParticipantId, Vec<&tieline_core::market::Trade>> =
        BTreeMap::new();
    for t in &block.body.trades {
        by_participant.entry(t.participant).or_default().push(t);
    }
    let mut out = Vec::new();
    for (p, trades) in by_participant {
        let Some((start, end)) = span(trades.iter().map(|t| &t.product)) else {
            continue;
        };
        let who = h.parties.participant(p);
        let area = genesis
            .participant(p)
            .map(|x| x.area)
            .unwrap_or(trades[0].area);
        let area_code = h.parties.area(area);
        let mut w = Writer::new("AllocationResult_MarketDocument", ALLOCATION_NAMESPACE);
        h.open(&mut w, &format!("A25-{}", who.code), "A25", 60);
        w.coded("receiver_MarketParticipant.mRID", &who.scheme, &who.code);
        w.text("receiver_MarketParticipant.marketRole.type", "A01");
        h.interval(&mut w, start, end);
        w.coded("domain.mRID", &area_code.scheme, &area_code.code);
        w.coded(
            "subjectParty_MarketParticipant.mRID",
            &who.scheme,
            &who.code,
        );
        w.text("subjectParty_MarketParticipant.marketRole.type", "A01");
        let mut seen = BTreeSet::new();
        for t in trades {
            let bid = t.bid.to_hex();
            let mut id = bid[..32].to_string();
            let mut k = 1;
            while !seen.insert(id.clone()) {
                k += 1;
                id = format!("{}-{k}", &bid[..32]);
            }
            let code = h.parties.area(t.area);
            w.open("TimeSeries");
            w.text("mRID", &id);
            w.text("auction.mRID", &format!("TL-H{}", h.height));
            w.text(
                "businessType",
                match t.side {
                    Side::Sell => "A01",
                    Side::Buy => "A04",
                },
            );
            w.coded("in_Domain.mRID", &code.scheme, &code.code);
            w.coded("out_Domain.mRID", &code.scheme, &code.code);
            w.text("marketAgreement.mRID", &bid[..32]);
            w.text("marketAgreement.type", contract_type(t.product.term));
            w.text("quantity_Measurement_Unit.name", "MAW");
            w.text("currency_Unit.name", "EUR");
            w.text("price_Measurement_Unit.name", "MWH");
            w.text("curveType", "A01");
            let run = Run {
                start: t.product.delivery_start,
                minutes: t.product.delivery_minutes,
                values: vec![(t.quantity, t.price)],
            };
            let minutes = run.minutes;
            period(&mut w, &run, |w, (q, price)| {
                w.text("quantity", &mw_of(*q, minutes));
                w.text("amount_Price.amount", &price.to_string());
            });
            w.close("TimeSeries");
        }
        reason(&mut w, "A95", &h.trace);
        out.push((p, w.finish("AllocationResult_MarketDocument")));
    }
    out
}

fn exchanges(h: &Header<'_>, genesis: &Genesis, block: &Block) -> Option<String> {
    let o = &block.body.process.clearing.outcome;
    let (start, end) = span(o.flows.iter().map(|f| &f.product))?;
    let mut groups: BTreeMap<(TieLineId, Term), Periods<Quantity>> = BTreeMap::new();
    for f in &o.flows {
        groups
            .entry((f.tie_line, f.product.term))
            .or_default()
            .push((f.product.delivery_start, f.product.delivery_minutes, f.flow));
    }
    let mut w = Writer::new("Publication_MarketDocument", PUBLICATION_NAMESPACE);
    h.open(&mut w, "A09", "A09", 35);
    h.interval(&mut w, start, end);
    let mut n = 0;
    for ((line, term), items) in groups {
        let Some(t) = genesis.tie_line(line) else {
            continue;
        };
        let line_code = h.parties.tie_line(line);
        for run in runs(items) {
            for forward in [true, false] {
                let (from, to) = if forward {
                    (t.from, t.to)
                } else {
                    (t.to, t.from)
                };
                let (out_code, in_code) = (h.parties.area(from), h.parties.area(to));
                n += 1;
                series_head(&mut w, n, "A06", (&in_code, &out_code), term);
                w.text("quantity_Measure_Unit.name", "MAW");
                w.text("curveType", "A01");
                w.coded(
                    "connectingLine_RegisteredResource.mRID",
                    &line_code.scheme,
                    &line_code.code,
                );
                let minutes = run.minutes;
                period(&mut w, &run, |w, f| {
                    let directed = if forward { f.0 } else { -f.0 };
                    w.text("quantity", &mw_of(Quantity(directed.max(0)), minutes));
                });
                reason(&mut w, "A95", &h.trace);
                w.close("TimeSeries");
            }
        }
    }
    if n == 0 {
        return None;
    }
    Some(w.finish("Publication_MarketDocument"))
}
