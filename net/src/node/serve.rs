//! The dispatcher: decodes what arrives, hands the state machine's inputs to the driver in
//! arrival order, and serves queries and status requests itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tieline_core::block::Block;
use tieline_core::consensus::compact::{BaseRef, BatchRef, Frame};
use tieline_core::consensus::wire::{
    CertifiedProcess, CertifiedTrades, FailureKind, MAX_QUERY_BLOCKS, Request, RequestFailure,
    Response, TradeReport,
};
use tieline_core::consensus::{Input, Message, Proposal};
use tieline_core::encoding::Tagged;
use tieline_core::market::{SignedBatch, SignedBid};
use tieline_core::units::{NodeId, ParticipantId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::driver::{DriverInput, Pending};
use super::{PREVERIFY_CHUNK, Shared};
use crate::transport::{Inbound, Peer, Responder};

fn respond(reply: Responder, response: &Response) {
    reply.send(Bytes::from(response.to_canonical_bytes()));
}

fn refuse(reply: Responder, kind: FailureKind, detail: impl Into<String>) {
    respond(
        reply,
        &Response::Failed(RequestFailure {
            kind,
            detail: detail.into(),
        }),
    );
}

/// The message of a compact frame from `from`. A revision frame is resolved against the last
/// proposal resolved from `from` if that is its base; otherwise the whole frame is fetched from
/// `from` (spec 1.3, frames). A proposal is remembered as the base of `from`'s next revision.
async fn resolve(shared: &Arc<Shared>, from: NodeId, frame: Frame) -> Result<Message, String> {
    let (frame, base) = match frame.base().copied() {
        None => (frame, None),
        Some(want) => {
            let held = shared
                .proposals
                .lock()
                .expect("proposals lock")
                .get(&from)
                .filter(|p| BaseRef::of(p) == want)
                .cloned();
            match held {
                Some(base) => (frame, Some(base)),
                None => (fetch_whole(shared, from, &frame).await?, None),
            }
        }
    };
    let msg = resolve_batches(shared, from, frame, base.as_ref()).await?;
    if let Message::Proposal(p) = &msg {
        // Only a proposal of the same height and view can be a revision's base: earlier
        // heights' proposals are let go (each shares its body with the state machine's copy).
        let mut held = shared.proposals.lock().expect("proposals lock");
        held.retain(|_, q| q.height() >= p.height());
        held.insert(from, (**p).clone());
    }
    Ok(msg)
}

/// Asks `from` for the whole frame of the proposal a revision frame of it carries.
async fn fetch_whole(shared: &Arc<Shared>, from: NodeId, frame: &Frame) -> Result<Frame, String> {
    let Some((height, view, revision)) = frame.proposal_round() else {
        return Err(format!(
            "member {from} sent a revision frame that carries no proposal"
        ));
    };
    let what = format!("proposal of height {height}, view {view}, revision {revision}");
    let request = Request::FetchProposal {
        height,
        view,
        revision,
    };
    let bytes = shared
        .endpoint
        .request(from, &request.to_canonical_bytes())
        .await
        .map_err(|e| format!("fetching the whole {what} from member {from}: {e}"))?;
    match Response::from_canonical_bytes(&bytes) {
        Ok(Response::Frame(Some(f)))
            if f.base().is_none() && f.proposal_round() == Some((height, view, revision)) =>
        {
            shared.metrics.proposals_fetched.inc();
            Ok(*f)
        }
        Ok(Response::Frame(None)) => Err(format!("member {from} no longer keeps the {what}")),
        Ok(other) => Err(format!(
            "member {from} answered the fetch of the {what} with something else: {other:?}"
        )),
        Err(e) => Err(format!(
            "member {from}'s answer to the fetch of the {what} does not decode: {e}"
        )),
    }
}

/// The message of a compact frame from `from`, against `base` for a revision frame. Batches
/// this node does not hold are fetched from `from`, which named them and so holds them (or,
/// for a committed height, has them in its chain); each must be the batch of the digest asked
/// for.
async fn resolve_batches(
    shared: &Arc<Shared>,
    from: NodeId,
    frame: Frame,
    base: Option<&Proposal>,
) -> Result<Message, String> {
    let missing: BTreeSet<BatchRef> = {
        let store = shared.batches.lock().expect("batch store lock");
        frame
            .wanted()
            .filter(|r| store.get(r).is_none())
            .copied()
            .collect()
    };
    let mut fetched = HashMap::new();
    for r in missing {
        let batch = fetch(shared, from, r).await?;
        shared.metrics.batches_fetched.inc();
        preverify(shared, Arc::new(batch.body.bids.clone())).await;
        fetched.insert(r.digest, batch);
    }
    let store = shared.batches.lock().expect("batch store lock");
    frame
        .resolve_against(
            |r| store.get(r).or_else(|| fetched.get(&r.digest)).cloned(),
            base,
        )
        .map_err(|e| e.to_string())
}

/// Asks `from` for the batch `r` names.
async fn fetch(shared: &Shared, from: NodeId, r: BatchRef) -> Result<SignedBatch, String> {
    let what = format!(
        "batch of home {} for height {} ({})",
        r.home, r.height, r.digest
    );
    let bytes = shared
        .endpoint
        .request(from, &Request::FetchBatch(r).to_canonical_bytes())
        .await
        .map_err(|e| format!("fetching the {what} from member {from}: {e}"))?;
    match Response::from_canonical_bytes(&bytes) {
        Ok(Response::Batch(Some(b))) if BatchRef::to(&b) == r => Ok(*b),
        Ok(Response::Batch(Some(_))) => Err(format!(
            "member {from} answered the fetch of the {what} with another batch"
        )),
        Ok(Response::Batch(None)) => Err(format!("member {from} no longer holds the {what}")),
        Ok(Response::Failed(f)) => Err(format!(
            "member {from} refused the fetch of the {what}: {f}"
        )),
        Ok(_) => Err(format!(
            "member {from} answered the fetch of the {what} with something else"
        )),
        Err(e) => Err(format!(
            "member {from}'s answer to the fetch of the {what} does not decode: {e}"
        )),
    }
}

/// The batch `r` names from the committed block of its height, if this node has it.
fn batch_from_storage(
    storage: &crate::storage::Storage,
    r: BatchRef,
) -> Result<Option<SignedBatch>, String> {
    let Some(bytes) = storage.block(r.height).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let block = Block::from_canonical_bytes(&bytes)
        .map_err(|e| format!("stored block {}: {e}", r.height))?;
    Ok(block
        .body
        .process
        .batches
        .into_iter()
        .find(|b| b.body.home == r.home && BatchRef::to(b) == r))
}

/// Reads inbound frames until `stop` turns true or the transport closes.
pub(super) async fn dispatch(
    mut inbound: mpsc::Receiver<Inbound>,
    shared: Arc<Shared>,
    pending: mpsc::Sender<Pending>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let item = tokio::select! {
            _ = stop.changed() => return,
            i = inbound.recv() => match i {
                Some(i) => i,
                None => return,
            },
        };
        let next: Option<Pending> = match item {
            Inbound::Message {
                from: Peer::Member(from),
                frame,
            } => Some(tokio::spawn(decode_message(shared.clone(), from, frame))),
            Inbound::Message {
                from: Peer::Participant(p),
                ..
            } => {
                shared.metrics.malformed_frames.inc();
                warn!(participant = %p, "dropped a one-way message from a participant (participants send requests)");
                None
            }
            Inbound::Request { from, frame, reply } => request(&shared, from, frame, reply),
        };
        if let Some(p) = next {
            if pending.send(p).await.is_err() {
                return;
            }
        }
    }
}

/// Decodes a member's compact frame and resolves it to its message, fetching from the sender
/// any batch it names that this node lacks; a batch's bid signatures are verified on the
/// blocking pool meanwhile (warming the signature cache only).
async fn decode_message(shared: Arc<Shared>, from: NodeId, frame: Bytes) -> Option<DriverInput> {
    let compact = match Frame::from_canonical_bytes(&frame) {
        Ok(f) => f,
        Err(e) => {
            shared.metrics.malformed_frames.inc();
            warn!(%from, error = %e, len = frame.len(), "dropped a malformed message");
            return None;
        }
    };
    let msg = match resolve(&shared, from, compact).await {
        Ok(m) => m,
        Err(e) => {
            shared.metrics.unresolved_frames.inc();
            warn!(%from, error = %e, "dropped a message whose batches could not be resolved");
            return None;
        }
    };
    shared.batches.lock().expect("batch store lock").keep(&msg);
    let msg = match msg {
        Message::Batch(mut batch) => {
            let bids = Arc::new(std::mem::take(&mut batch.body.bids));
            preverify(&shared, bids.clone()).await;
            batch.body.bids = Arc::try_unwrap(bids).unwrap_or_else(|a| (*a).clone());
            Message::Batch(batch)
        }
        other => other,
    };
    Some(DriverInput::Core(Box::new(Input::Message { from, msg })))
}

/// Verifies the bids' signatures in chunks on the blocking pool, as many chunks at once as
/// there are cores.
async fn preverify(shared: &Arc<Shared>, bids: Arc<Vec<SignedBid>>) {
    let mut tasks = Vec::new();
    for start in (0..bids.len()).step_by(PREVERIFY_CHUNK) {
        let Ok(permit) = shared.preverify_slots.clone().acquire_owned().await else {
            return;
        };
        let (shared, bids) = (shared.clone(), bids.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let end = (start + PREVERIFY_CHUNK).min(bids.len());
            let registry = shared.registry.borrow().clone();
            for b in &bids[start..end] {
                shared.scheme.preverify_bid(&registry, b);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Handles a request: inputs for the state machine go to the driver; queries and status are
/// answered here. Participants may ask anything of their home node. A connection authenticated
/// by a member's key (another node, or an operator's tool holding a member key) may submit
/// registry changes, which authenticate themselves by their signatures, and ask the status;
/// members talk to each other over messages otherwise.
fn request(shared: &Arc<Shared>, from: Peer, frame: Bytes, reply: Responder) -> Option<Pending> {
    let request = match Request::from_canonical_bytes(&frame) {
        Ok(r) => r,
        Err(e) => {
            shared.metrics.malformed_frames.inc();
            warn!(%from, error = %e, "refused a malformed request");
            refuse(
                reply,
                FailureKind::Malformed,
                format!("the request does not decode: {e}"),
            );
            return None;
        }
    };
    let participant = match from {
        Peer::Participant(p) => Some(p),
        Peer::Member(_) => None,
    };
    // A participant revoked here is still let in so that its bids are answered with the
    // revocation by the state machine; it may ask the status, and nothing else.
    if let Some(p) = participant.filter(|p| shared.registry.borrow().participant(*p).is_none()) {
        if !matches!(request, Request::SubmitBids(_) | Request::Status) {
            refuse(
                reply,
                FailureKind::Forbidden,
                format!("participant {p} is no longer admitted: revoked on chain"),
            );
            return None;
        }
    }
    if let (Peer::Member(m), Request::SubmitBids(_) | Request::SubmitAppeal(_))
    | (Peer::Member(m), Request::QueryTrades { .. } | Request::QueryProcess { .. }) =
        (from, &request)
    {
        refuse(
            reply,
            FailureKind::Forbidden,
            format!(
                "member {m}: members talk over messages; a member's key may only submit registry changes, ask the status and fetch batches and proposals"
            ),
        );
        return None;
    }
    if let (Some(p), Request::FetchBatch(_) | Request::FetchProposal { .. }) =
        (participant, &request)
    {
        refuse(
            reply,
            FailureKind::Forbidden,
            format!("participant {p}: only members fetch batches and proposals"),
        );
        return None;
    }
    match request {
        Request::SubmitChange(change) => {
            debug!(%from, change = %change.describe(), "registry change submitted");
            Some(tokio::spawn(async move {
                Some(DriverInput::Change(change, reply))
            }))
        }
        Request::SubmitBids(bids) => {
            shared.metrics.bids_received.inc_by(bids.len() as u64);
            let shared = shared.clone();
            Some(tokio::spawn(async move {
                let bids = Arc::new(bids);
                preverify(&shared, bids.clone()).await;
                let bids = Arc::try_unwrap(bids).unwrap_or_else(|a| (*a).clone());
                Some(DriverInput::Bids(bids, reply))
            }))
        }
        Request::SubmitAppeal(appeal) => Some(tokio::spawn(async move {
            Some(DriverInput::Appeal(appeal, reply))
        })),
        Request::FetchBatch(r) => {
            let held = shared
                .batches
                .lock()
                .expect("batch store lock")
                .get(&r)
                .cloned();
            if let Some(b) = held {
                respond(reply, &Response::Batch(Some(Box::new(b))));
                return None;
            }
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(_permit) = shared.query_slots.clone().acquire_owned().await else {
                    return;
                };
                let storage = shared.storage.clone();
                match tokio::task::spawn_blocking(move || batch_from_storage(&storage, r)).await {
                    Ok(Ok(b)) => respond(reply, &Response::Batch(b.map(Box::new))),
                    Ok(Err(detail)) => refuse(reply, FailureKind::Internal, detail),
                    Err(e) => refuse(reply, FailureKind::Internal, e.to_string()),
                }
            });
            None
        }
        Request::FetchProposal {
            height,
            view,
            revision,
        } => {
            let whole = shared
                .sent
                .lock()
                .expect("sent proposals lock")
                .get(&(height, view, revision))
                .cloned();
            // The kept frame was encoded by this node; it decodes.
            let frame = whole.and_then(|b| Frame::from_canonical_bytes(&b).ok());
            respond(reply, &Response::Frame(frame.map(Box::new)));
            None
        }
        Request::Status => {
            let status = shared.status.borrow().clone();
            respond(reply, &Response::Status(Box::new(status)));
            None
        }
        Request::QueryProcess { height } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(_permit) = shared.query_slots.clone().acquire_owned().await else {
                    return;
                };
                let storage = shared.storage.clone();
                let answer =
                    tokio::task::spawn_blocking(move || query_process(&storage, height)).await;
                match answer {
                    Ok(response) => respond(reply, &response),
                    Err(e) => refuse(reply, FailureKind::Internal, e.to_string()),
                }
            });
            None
        }
        Request::QueryTrades { from_height } => {
            let participant = participant?;
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(_permit) = shared.query_slots.clone().acquire_owned().await else {
                    return;
                };
                let storage = shared.storage.clone();
                let answer = tokio::task::spawn_blocking(move || {
                    query_trades(&storage, participant, from_height)
                })
                .await;
                match answer {
                    Ok(response) => respond(reply, &response),
                    Err(e) => refuse(reply, FailureKind::Internal, e.to_string()),
                }
            });
            None
        }
    }
}

/// The committed block of `height`'s process data with its certified header.
fn query_process(storage: &crate::storage::Storage, height: u64) -> Response {
    let failed = |kind, detail: String| Response::Failed(RequestFailure { kind, detail });
    let committed = storage.last_height().unwrap_or(0);
    if height == 0 || height > committed {
        return failed(
            FailureKind::Unavailable,
            format!("height {height} is not committed here (committed: {committed})"),
        );
    }
    match storage.blocks(height, height) {
        Ok(stored) => match stored.first().map(|(_, b)| Block::from_canonical_bytes(b)) {
            Some(Ok(b)) => Response::Process(Box::new(CertifiedProcess::from_block(&b))),
            Some(Err(e)) => failed(FailureKind::Internal, format!("stored block {height}: {e}")),
            None => failed(
                FailureKind::Internal,
                format!("block {height} is not stored"),
            ),
        },
        Err(e) => failed(FailureKind::Internal, e.to_string()),
    }
}

/// The participant's trades in committed blocks from `from_height`, with proofs.
fn query_trades(
    storage: &crate::storage::Storage,
    participant: ParticipantId,
    from_height: u64,
) -> Response {
    let committed = storage.last_height().unwrap_or(0);
    let from = from_height.max(1);
    let to = committed.min(from.saturating_add(MAX_QUERY_BLOCKS as u64 - 1));
    let mut blocks = Vec::new();
    if from <= to {
        let stored = match storage.blocks(from, to) {
            Ok(b) => b,
            Err(e) => {
                return Response::Failed(RequestFailure {
                    kind: FailureKind::Internal,
                    detail: e.to_string(),
                });
            }
        };
        for (h, bytes) in stored {
            match Block::from_canonical_bytes(&bytes) {
                Ok(b) if b.body.trades.iter().any(|t| t.participant == participant) => {
                    blocks.push(CertifiedTrades::from_block(&b, participant));
                }
                Ok(_) => {}
                Err(e) => debug!(height = h, error = %e, "stored block does not decode"),
            }
        }
    }
    Response::Trades(TradeReport {
        committed,
        blocks,
        next_height: to.max(from.saturating_sub(1)) + 1,
    })
}
