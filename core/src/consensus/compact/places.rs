//! Places: a message with its batches, awards and trades left out (`strip`) and filled in
//! again from the batches a member holds (`fill_body`), each award and trade named by the
//! position of its bid.

use super::*;

/// The message with every place's batches, awards and trades left out, each place's contents
/// appended to `places` in the order [`Frame::resolve`] reads them.
pub(super) fn strip(msg: &Message, places: &mut Vec<Place>) -> Message {
    match msg {
        Message::Proposal(p) => Message::Proposal(Box::new(strip_proposal(p, places))),
        Message::Decided(b) => Message::Decided(Box::new(strip_block(b, places))),
        Message::Skip(vote, locked, batches) => {
            let locked = locked.as_ref().map(|p| Box::new(strip_proposal(p, places)));
            places.push(Place::of_batches(batches));
            Message::Skip(vote.clone(), locked, Vec::new())
        }
        Message::ViewCertificate(c, batches) => {
            places.push(Place::of_batches(batches));
            Message::ViewCertificate(c.clone(), Vec::new())
        }
        Message::SyncResponse(blocks) => {
            Message::SyncResponse(blocks.iter().map(|b| strip_block(b, places)).collect())
        }
        Message::Batch(_)
        | Message::Vote(_)
        | Message::Endorsed(_)
        | Message::Objection(..)
        | Message::Appeal { .. }
        | Message::SyncRequest { .. } => msg.clone(),
    }
}

pub(super) fn strip_proposal(p: &Proposal, places: &mut Vec<Place>) -> Proposal {
    Proposal {
        stamp: p.stamp.clone(),
        header: p.header.clone(),
        body: std::sync::Arc::new(strip_body(&p.body, places)),
        justification: p.justification.clone(),
    }
}

pub(super) fn strip_block(b: &Block, places: &mut Vec<Place>) -> Block {
    Block {
        header: b.header.clone(),
        body: strip_body(&b.body, places),
        certificate: b.certificate.clone(),
    }
}

/// The body without its batches, awards and trades, which go to a new place.
pub(super) fn strip_body(body: &BlockBody, places: &mut Vec<Place>) -> BlockBody {
    let p = &body.process;
    let lists = bid_lists(p);
    let positions = positions(&lists);
    let at = |bid: &Digest| positions.get(bid).copied();
    let outcome = &p.clearing.outcome;
    let awards = outcome
        .awards
        .iter()
        .map(|a| {
            Edit::New(match at(&a.bid) {
                Some(at) => AwardEntry::At {
                    at,
                    step: a.step,
                    quantity: a.quantity,
                },
                None => AwardEntry::Whole(*a),
            })
        })
        .collect();
    let trades = body
        .trades
        .iter()
        .map(|t| {
            Edit::New(match at(&t.bid).filter(|at| describes(&lists, *at, t)) {
                Some(at) => TradeEntry::At {
                    at,
                    quantity: t.quantity,
                    price: t.price,
                    counterparty: t.counterparty,
                },
                None => TradeEntry::Whole(Box::new(t.clone())),
            })
        })
        .collect();
    let (cuts, carried) = cut_entries(&p.objections, &p.clearing.cuts);
    places.push(Place {
        batches: p.batches.iter().map(BatchRef::to).collect(),
        awards,
        trades,
        cuts,
        kept_objections: 0,
        kept_cuts: 0,
    });
    BlockBody {
        trades: Vec::new(),
        process: ProcessData {
            batches: Vec::new(),
            clearing: ClearingRecord {
                rule: p.clearing.rule,
                cuts: carried,
                outcome: ClearingOutcome {
                    awards: Vec::new(),
                    area_prices: outcome.area_prices.clone(),
                    bus_prices: outcome.bus_prices.clone(),
                    flows: outcome.flows.clone(),
                    cut_prices: outcome.cut_prices.clone(),
                    congestion_rent: outcome.congestion_rent,
                    welfare: outcome.welfare,
                },
            },
            objections: p.objections.clone(),
            appeals: p.appeals.clone(),
            rejections: p.rejections.clone(),
            skipped: p.skipped.clone(),
            skip_certificate: p.skip_certificate.clone(),
            evidence: p.evidence.clone(),
        },
    }
}

impl Place {
    pub(super) fn of_batches(batches: &[SignedBatch]) -> Self {
        Place {
            batches: batches.iter().map(BatchRef::to).collect(),
            awards: Vec::new(),
            trades: Vec::new(),
            cuts: Vec::new(),
            kept_objections: 0,
            kept_cuts: 0,
        }
    }
}

/// The security cuts of `objections`, each by its place (objection index, cut index).
pub(super) fn objection_cuts(
    objections: &[Signed<Objection>],
) -> impl Iterator<Item = ((usize, usize), &Cut)> {
    objections
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match &o.body.reason {
            ObjectionReason::Security { cuts } => Some((i, cuts)),
            _ => None,
        })
        .flat_map(|(i, cuts)| cuts.iter().enumerate().map(move |(j, c)| ((i, j), c)))
}

/// The clearing's `cuts` as entries: each by its first place among the security cuts of
/// `objections`, or carried; and the carried cuts, in order.
pub(super) fn cut_entries(
    objections: &[Signed<Objection>],
    cuts: &[Cut],
) -> (Vec<CutEntry>, Vec<Cut>) {
    let mut first: HashMap<&Cut, (usize, usize)> = HashMap::new();
    for (at, c) in objection_cuts(objections) {
        first.entry(c).or_insert(at);
    }
    let mut carried = Vec::new();
    let entries = cuts
        .iter()
        .map(|c| match first.get(c) {
            // Places fit: at most MAX_OBJECTIONS objections of MAX_CUTS_PER_OBJECTION cuts.
            Some(&(objection, cut)) => CutEntry::In {
                objection: objection as u16,
                cut: cut as u16,
            },
            None => {
                carried.push(c.clone());
                CutEntry::Carried
            }
        })
        .collect();
    (entries, carried)
}

/// The bids a body's positions name, list by list: each batch's, then the bids of its upheld
/// omission appeals, which its clearing takes after the batches' (spec V5).
pub(super) fn bid_lists(p: &ProcessData) -> Vec<Vec<&SignedBid>> {
    let mut lists: Vec<Vec<&SignedBid>> = p
        .batches
        .iter()
        .map(|b| b.body.bids.iter().collect())
        .collect();
    lists.push(
        p.appeals
            .iter()
            .filter_map(|a| a.upheld_omission().map(|(bid, _)| bid))
            .collect(),
    );
    lists
}

/// Where each bid of `lists` is, by id (the first position of a repeated bid).
pub(super) fn positions(lists: &[Vec<&SignedBid>]) -> DigestMap<BidAt> {
    let mut at =
        DigestMap::with_capacity_and_hasher(lists.iter().map(Vec::len).sum(), Default::default());
    for (i, list) in lists.iter().enumerate() {
        for (j, sb) in list.iter().enumerate() {
            // Positions fit: at most MAX_MEMBERS batches of at most MAX_BATCH_BIDS bids, and
            // MAX_APPEALS appeals.
            let pos = BidAt {
                batch: i as u16,
                bid: j as u32,
            };
            at.entry(sb.body.id()).or_insert(pos);
        }
    }
    at
}

/// The bid at `at`, if there is one.
pub(super) fn bid_at<'a>(lists: &[Vec<&'a SignedBid>], at: BidAt) -> Option<&'a SignedBid> {
    lists
        .get(at.batch as usize)
        .and_then(|l| l.get(at.bid as usize))
        .copied()
}

/// Whether the bid at `at` says everything of `t` that a positional entry leaves out.
pub(super) fn describes(lists: &[Vec<&SignedBid>], at: BidAt, t: &Trade) -> bool {
    let Some(b) = bid_at(lists, at).map(|sb| &sb.body) else {
        return false;
    };
    b.participant == t.participant
        && b.side == t.side
        && b.area == t.area
        && b.bus == t.bus
        && b.product == t.product
}

/// The batches `refs` names, in order.
pub(super) fn take_batches(
    refs: &[BatchRef],
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
) -> Result<Vec<SignedBatch>, ResolveError> {
    refs.iter()
        .map(|r| held(r).ok_or(ResolveError::Missing(*r)))
        .collect()
}

/// A batch list's place: references only, in place of a list the frame left empty.
pub(super) fn fill_batches(
    stripped: &[SignedBatch],
    place: Place,
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
) -> Result<Vec<SignedBatch>, ResolveError> {
    if !stripped.is_empty()
        || !place.awards.is_empty()
        || !place.trades.is_empty()
        || !place.cuts.is_empty()
        || place.kept_objections != 0
        || place.kept_cuts != 0
    {
        return Err(ResolveError::Malformed(
            "a batch list carries more than refs",
        ));
    }
    take_batches(&place.batches, held)
}

pub(super) fn fill_proposal(
    p: &mut Proposal,
    place: Place,
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
    base: Option<&BlockBody>,
) -> Result<(), ResolveError> {
    let body = std::sync::Arc::make_mut(&mut p.body);
    fill_body(body, place, held, base)
}

/// `base`'s first `kept` items, then `rest`.
pub(super) fn prefixed<T: Clone>(
    base: &[T],
    kept: u32,
    rest: &mut Vec<T>,
) -> Result<(), ResolveError> {
    let head = base.get(..kept as usize).ok_or(ResolveError::Malformed(
        "a kept prefix longer than the base's list",
    ))?;
    rest.splice(0..0, head.iter().cloned());
    Ok(())
}

/// The items `edits` rebuild: `Keep` copies the base's next items, `Skip` passes them over
/// (both only in a revision frame, within the base's list), and a new entry is resolved by
/// `new`.
pub(super) fn apply<T: Clone, E>(
    edits: Vec<Edit<E>>,
    base: Option<&[T]>,
    mut new: impl FnMut(E) -> Result<T, ResolveError>,
) -> Result<Vec<T>, ResolveError> {
    let (mut out, mut at) = (Vec::with_capacity(edits.len()), 0usize);
    for e in edits {
        let (n, copy) = match e {
            Edit::New(e) => {
                out.push(new(e)?);
                continue;
            }
            Edit::Keep(n) => (n, true),
            Edit::Skip(n) => (n, false),
        };
        let base = base.ok_or(ResolveError::Malformed(
            "an edit in a frame that is no revision",
        ))?;
        let end = at
            .checked_add(n as usize)
            .filter(|e| *e <= base.len())
            .ok_or(ResolveError::Malformed("an edit past the base's list"))?;
        if copy {
            out.extend_from_slice(&base[at..end]);
        }
        at = end;
    }
    Ok(out)
}

pub(super) fn fill_body(
    body: &mut BlockBody,
    place: Place,
    held: &impl Fn(&BatchRef) -> Option<SignedBatch>,
    base: Option<&BlockBody>,
) -> Result<(), ResolveError> {
    let p = &mut body.process;
    if !p.batches.is_empty() || !p.clearing.outcome.awards.is_empty() || !body.trades.is_empty() {
        return Err(ResolveError::Malformed(
            "a stripped body still carries batches, awards or trades",
        ));
    }
    let mut cuts = Vec::with_capacity(place.cuts.len());
    match base {
        Some(b) => {
            prefixed(
                &b.process.objections,
                place.kept_objections,
                &mut p.objections,
            )?;
            prefixed(&b.process.clearing.cuts, place.kept_cuts, &mut cuts)?;
        }
        None if place.kept_objections != 0 || place.kept_cuts != 0 => {
            return Err(ResolveError::Malformed(
                "a kept prefix in a frame that is no revision",
            ));
        }
        None => {}
    }
    let mut carried = std::mem::take(&mut p.clearing.cuts).into_iter();
    for entry in place.cuts {
        cuts.push(match entry {
            CutEntry::Carried => carried.next().ok_or(ResolveError::Malformed(
                "more carried cuts named than carried",
            ))?,
            CutEntry::In { objection, cut } => {
                match p.objections.get(objection as usize).map(|o| &o.body.reason) {
                    Some(ObjectionReason::Security { cuts }) => cuts
                        .get(cut as usize)
                        .cloned()
                        .ok_or(ResolveError::Malformed("a cut place names no cut"))?,
                    _ => {
                        return Err(ResolveError::Malformed(
                            "a cut place names no security objection",
                        ));
                    }
                }
            }
        });
    }
    if carried.next().is_some() {
        return Err(ResolveError::Malformed("a carried cut no place names"));
    }
    p.clearing.cuts = cuts;
    let base_awards = base.map(|b| b.process.clearing.outcome.awards.as_slice());
    let base_trades = base.map(|b| b.trades.as_slice());
    p.batches = take_batches(&place.batches, held)?;
    let lists = bid_lists(p);
    let ids: Vec<Vec<Digest>> = if place
        .awards
        .iter()
        .any(|a| matches!(a, Edit::New(AwardEntry::At { .. })))
        || place
            .trades
            .iter()
            .any(|t| matches!(t, Edit::New(TradeEntry::At { .. })))
    {
        lists
            .iter()
            .map(|l| l.iter().map(|sb| sb.body.id()).collect())
            .collect()
    } else {
        Vec::new()
    };
    let id_at = |at: BidAt| {
        ids.get(at.batch as usize)
            .and_then(|b| b.get(at.bid as usize))
            .copied()
            .ok_or(ResolveError::Malformed("a position names no bid"))
    };
    let awards = apply(place.awards, base_awards, |a| {
        Ok(match a {
            AwardEntry::At { at, step, quantity } => StepAward {
                bid: id_at(at)?,
                step,
                quantity,
            },
            AwardEntry::Whole(a) => a,
        })
    })?;
    let trades = apply(place.trades, base_trades, |t| {
        Ok(match t {
            TradeEntry::At {
                at,
                quantity,
                price,
                counterparty,
            } => {
                let bid = id_at(at)?;
                let b = &bid_at(&lists, at)
                    .ok_or(ResolveError::Malformed("a position names no bid"))?
                    .body;
                Trade {
                    bid,
                    participant: b.participant,
                    side: b.side,
                    area: b.area,
                    bus: b.bus,
                    product: b.product,
                    quantity,
                    price,
                    counterparty,
                }
            }
            TradeEntry::Whole(t) => *t,
        })
    })?;
    drop(lists);
    p.clearing.outcome.awards = awards;
    body.trades = trades;
    Ok(())
}
