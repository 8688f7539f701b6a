//! Acknowledgement out: an IEC 62325-451-1 `Acknowledgement_MarketDocument` (7.0) for a
//! received bid document, from the home node's answers.
//!
//! * The sender is the participant's home node (role `A11`, market operator), the receiver the
//!   participant (the role it gave as sender of the bid document, else `A01`).
//! * `received_MarketDocument.mRID`, `.revisionNumber`, `.type` and `.createdDateTime` name the
//!   bid document, as far as it could be read.
//! * Document-level `Reason`: `A01` (message fully accepted) when every bid has a signed
//!   receipt; `A03` (errors at the time series level) when some bids were refused; `A02`
//!   (message fully rejected) when every bid was refused or the document was refused before
//!   submission. A refused document lists each error as a further `Reason` `A95`
//!   (complementary information) with its element path.
//! * Each time series with a refused bid gets a `Rejected_TimeSeries` (its `mRID`, `version` =
//!   the document's revision) with `Reason` `A20` (time series fully rejected) when all its
//!   bids were refused, else `A21` (accepted with specific time interval errors), followed by
//!   one `Reason` `A95` per refused bid naming the point and the node's reason.
//! * Receipts are summarised in the `A01`/`A03` reason text (bid ids, heights); the signed
//!   receipts themselves stay with the caller (`tieline bid --save` keeps evidence).

use std::collections::BTreeMap;

use tieline_core::consensus::Reply;
use tieline_core::crypto::sha256;
use tieline_core::units::{NodeId, Timestamp};

use super::bids::{BidDocument, DocumentErrors, Received};
use super::xml::Writer;
use super::{Code, Parties, created_time, mrid};

/// The namespace of the acknowledgement document 7.0.
pub const NAMESPACE: &str = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0";
/// The root element.
pub const ROOT: &str = "Acknowledgement_MarketDocument";
/// Longest `Reason.text` the schema allows.
pub const MAX_REASON_TEXT: usize = 512;

/// What is acknowledged.
pub enum AckInput<'a> {
    /// The document was refused before any bid was submitted.
    Refused(&'a DocumentErrors),
    /// The bids were submitted; `replies[i]` is the home node's answer to `document.bids[i]`.
    Submitted {
        /// The parsed document.
        document: &'a BidDocument,
        /// One reply per bid.
        replies: &'a [Reply],
    },
}

/// Writes the acknowledgement. `receiver` is the participant's code when the document did not
/// yield one (a refused document without a readable sender).
pub fn acknowledgement(
    parties: &Parties,
    home: NodeId,
    receiver: &Code,
    input: &AckInput<'_>,
    created: Timestamp,
) -> String {
    let received: &Received = match input {
        AckInput::Refused(e) => e.received.as_ref(),
        AckInput::Submitted { document, .. } => &document.received,
    };
    let to = received.sender.clone().unwrap_or_else(|| receiver.clone());
    let id = sha256(&[
        b"tieline-ack/",
        received.mrid.as_deref().unwrap_or("").as_bytes(),
        &created.0.to_be_bytes(),
        &home.0.to_be_bytes(),
    ])
    .to_hex();
    let mut w = Writer::new(ROOT, NAMESPACE);
    w.text("mRID", &mrid("TL-ACK-", &id, 35));
    w.text("createdDateTime", &created_time(created));
    let from = parties.node(home);
    w.coded("sender_MarketParticipant.mRID", &from.scheme, &from.code);
    w.text("sender_MarketParticipant.marketRole.type", "A11");
    w.coded("receiver_MarketParticipant.mRID", &to.scheme, &to.code);
    w.text(
        "receiver_MarketParticipant.marketRole.type",
        received.sender_role.as_deref().unwrap_or("A01"),
    );
    if let Some(m) = &received.mrid {
        w.text("received_MarketDocument.mRID", m);
    }
    if let Some(r) = &received.revision {
        w.text("received_MarketDocument.revisionNumber", r);
    }
    if let Some(t) = &received.doc_type {
        w.text("received_MarketDocument.type", t);
    }
    if let Some(c) = &received.created {
        w.text("received_MarketDocument.createdDateTime", c);
    }
    match input {
        AckInput::Refused(errors) => {
            reason(
                &mut w,
                "A02",
                &format!(
                    "Message fully rejected before submission: {} error{}; no bid was submitted",
                    errors.errors.len(),
                    if errors.errors.len() == 1 { "" } else { "s" }
                ),
            );
            for e in &errors.errors {
                reason(&mut w, "A95", &e.to_string());
            }
        }
        AckInput::Submitted { document, replies } => {
            submitted(&mut w, document, replies);
        }
    }
    w.finish(ROOT)
}

fn submitted(w: &mut Writer, document: &BidDocument, replies: &[Reply]) {
    // Per series: (bids, refused bids with their reason text).
    let mut per_series: BTreeMap<usize, (usize, Vec<String>)> = BTreeMap::new();
    let mut receipts = Vec::new();
    for (i, b) in document.bids.iter().enumerate() {
        let entry = per_series.entry(b.series).or_default();
        entry.0 += 1;
        let id = b.bid.id().to_hex();
        match replies.get(i) {
            Some(Reply::Receipt(r)) => receipts.push(format!(
                "{} bid {} height {}",
                b.path,
                &id[..16],
                r.body.height
            )),
            Some(Reply::BidRejected { reason, .. }) => entry.1.push(format!(
                "{}: node refused bid {}: {reason}",
                b.path,
                &id[..16]
            )),
            Some(other) => entry.1.push(format!(
                "{}: unexpected answer from the node: {other:?}",
                b.path
            )),
            None => entry.1.push(format!("{}: the node gave no answer", b.path)),
        }
    }
    let total = document.bids.len();
    let refused: usize = per_series.values().map(|(_, r)| r.len()).sum();
    let (code, summary) = if refused == 0 {
        (
            "A01",
            format!(
                "Message fully accepted: {total} bid{} receipted ({})",
                if total == 1 { "" } else { "s" },
                receipts.join("; ")
            ),
        )
    } else if refused == total {
        (
            "A02",
            format!("Message fully rejected: the node refused all {total} bids"),
        )
    } else {
        (
            "A03",
            format!(
                "{} of {total} bids receipted ({}); {refused} refused, see Rejected_TimeSeries",
                total - refused,
                receipts.join("; ")
            ),
        )
    };
    for (series, (count, refusals)) in &per_series {
        if refusals.is_empty() {
            continue;
        }
        let s = &document.series[series - 1];
        w.open("Rejected_TimeSeries");
        w.text("mRID", &s.mrid);
        if let Some(r) = &document.received.revision {
            w.text("version", r);
        }
        if refusals.len() == *count {
            reason(w, "A20", "Time series fully rejected");
        } else {
            reason(
                w,
                "A21",
                &format!(
                    "{} of {count} points refused; the others were receipted",
                    refusals.len()
                ),
            );
        }
        for r in refusals {
            reason(w, "A95", r);
        }
        w.close("Rejected_TimeSeries");
    }
    reason(w, code, &summary);
}

fn reason(w: &mut Writer, code: &str, text: &str) {
    w.open("Reason");
    w.text("code", code);
    w.text("text", &truncate(text, MAX_REASON_TEXT));
    w.close("Reason");
}

/// At most `max` characters, marking a cut with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}
