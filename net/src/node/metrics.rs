//! The node's Prometheus metrics and the small HTTP endpoint that serves them.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::transport::Endpoint;

/// Longest HTTP request head the endpoint reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Most scrapes served at once.
const MAX_SCRAPES: usize = 8;

/// Everything the node counts.
#[derive(Debug)]
pub struct NodeMetrics {
    /// The last committed height.
    pub height: Gauge,
    /// The current view at the height being decided.
    pub view: Gauge,
    /// Negotiation revisions of committed blocks, summed.
    pub revisions: Counter,
    /// Committed blocks decided in a view above 0 (fault skips).
    pub fault_skips: Counter,
    /// Bids submitted by participants.
    pub bids_received: Counter,
    /// Bids that got a receipt.
    pub bids_receipted: Counter,
    /// Bids refused with a reason.
    pub bids_rejected: Counter,
    /// Inbound frames that did not decode and were dropped.
    pub malformed_frames: Counter,
    /// Inbound compact frames that named a batch this node could neither find nor fetch from
    /// the sender, and were dropped.
    pub unresolved_frames: Counter,
    /// Batches fetched from the member whose frame named them (spec 1.3, frames).
    pub batches_fetched: Counter,
    /// Whole proposal frames fetched because a revision frame's base revision was not held.
    pub proposals_fetched: Counter,
    /// Seconds from this node's gate closure to the height's commit.
    pub commit_latency: Histogram,
    /// Connections currently established with peers and participants.
    pub connected_peers: Gauge,
    /// Durable writes (one per group of inputs).
    pub storage_writes: Counter,
    /// Equivocation evidence detected.
    pub evidence: Counter,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    /// Fresh metrics.
    pub fn new() -> Self {
        Self {
            height: Gauge::default(),
            view: Gauge::default(),
            revisions: Counter::default(),
            fault_skips: Counter::default(),
            bids_received: Counter::default(),
            bids_receipted: Counter::default(),
            bids_rejected: Counter::default(),
            malformed_frames: Counter::default(),
            unresolved_frames: Counter::default(),
            batches_fetched: Counter::default(),
            proposals_fetched: Counter::default(),
            commit_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            connected_peers: Gauge::default(),
            storage_writes: Counter::default(),
            evidence: Counter::default(),
        }
    }

    fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("tieline");
        r.register("height", "last committed height", self.height.clone());
        r.register(
            "view",
            "view at the height being decided",
            self.view.clone(),
        );
        r.register(
            "revisions",
            "negotiation revisions of committed blocks",
            self.revisions.clone(),
        );
        r.register(
            "fault_skips",
            "blocks committed after a fault skip",
            self.fault_skips.clone(),
        );
        r.register(
            "bids_received",
            "bids submitted by participants",
            self.bids_received.clone(),
        );
        r.register(
            "bids_receipted",
            "bids that got a receipt",
            self.bids_receipted.clone(),
        );
        r.register(
            "bids_rejected",
            "bids refused with a reason",
            self.bids_rejected.clone(),
        );
        r.register(
            "malformed_frames",
            "inbound frames that did not decode",
            self.malformed_frames.clone(),
        );
        r.register(
            "unresolved_frames",
            "inbound compact frames dropped for a batch that could not be fetched",
            self.unresolved_frames.clone(),
        );
        r.register(
            "batches_fetched",
            "batches fetched from the member whose frame named them",
            self.batches_fetched.clone(),
        );
        r.register(
            "proposals_fetched",
            "whole proposal frames fetched for a revision frame whose base was not held",
            self.proposals_fetched.clone(),
        );
        r.register(
            "commit_latency_seconds",
            "time from gate closure to commit",
            self.commit_latency.clone(),
        );
        r.register(
            "connected_peers",
            "established QUIC connections",
            self.connected_peers.clone(),
        );
        r.register(
            "storage_writes",
            "durable group-commit writes",
            self.storage_writes.clone(),
        );
        r.register(
            "evidence",
            "equivocation evidence detected",
            self.evidence.clone(),
        );
        r
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<NodeMetrics>,
    endpoint: Endpoint,
    mut shutdown: watch::Receiver<bool>,
) {
    let registry = Arc::new(metrics.registry());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening");
    }
    loop {
        let (mut stream, remote) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%remote, "too many scrapes; closing");
            continue;
        };
        metrics
            .connected_peers
            .set(endpoint.metrics().connected_peers as i64);
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head);
            let (status, body) = if line.starts_with("GET /metrics ") {
                let mut body = String::new();
                match encode(&mut body, &registry) {
                    Ok(()) => ("200 OK", body),
                    Err(_) => ("500 Internal Server Error", String::new()),
                }
            } else {
                ("404 Not Found", "GET /metrics\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
