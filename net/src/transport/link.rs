//! Outbound links: one per destination member, connected lazily, reconnecting with capped
//! exponential backoff, carrying queued frames in order on one long-lived unidirectional stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tieline_core::crypto::Ed25519Signer;
use tieline_core::units::NodeId;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::client::{connect, quinn_client_config};
use super::frame::encode_into;
use super::{
    Directory, MemberAddress, Metrics, SendError, TransportConfig, WRITE_BATCH_BYTES, codes,
};

/// What every link of an endpoint shares.
pub(crate) struct LinkContext {
    pub(crate) quinn: quinn::Endpoint,
    pub(crate) signer: Arc<Ed25519Signer>,
    pub(crate) directory: watch::Receiver<Arc<Directory>>,
    pub(crate) config: TransportConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The sending side of a link, held by the endpoint.
#[derive(Clone)]
pub(crate) struct LinkHandle {
    to: NodeId,
    queue: mpsc::Sender<Bytes>,
    connection: watch::Receiver<Option<quinn::Connection>>,
    /// Whether the queue is overflowing, so a burst of drops is logged once.
    dropping: Arc<AtomicBool>,
}

impl LinkHandle {
    /// Queues a frame, or drops it if the queue is full.
    pub(crate) fn enqueue(&self, frame: Bytes, metrics: &Metrics) -> Result<(), SendError> {
        match self.queue.try_send(frame) {
            Ok(()) => {
                if self.dropping.swap(false, Ordering::Relaxed) {
                    info!(to = %self.to, "link queue accepts frames again");
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let total = metrics.count_dropped();
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    warn!(to = %self.to, dropped_total = total, "link queue full; dropping frames");
                }
                Err(SendError::QueueFull(self.to))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// The link's connection, once it is up; `None` if the link stopped.
    pub(crate) async fn connection(&self) -> Option<quinn::Connection> {
        let mut rx = self.connection.clone();
        let c = rx.wait_for(Option::is_some).await.ok()?;
        c.clone()
    }
}

/// Starts the link to `to`; `None` if `to` is not a member in the directory.
pub(crate) fn spawn(context: Arc<LinkContext>, to: NodeId) -> Option<LinkHandle> {
    context.directory.borrow().member(to)?;
    let (queue, rx) = mpsc::channel(context.config.send_queue_len);
    let (connection_tx, connection) = watch::channel(None);
    tokio::spawn(run(context, to, rx, connection_tx));
    Some(LinkHandle {
        to,
        queue,
        connection,
        dropping: Arc::new(AtomicBool::new(false)),
    })
}

/// How a connected link ended.
enum Ended {
    /// The endpoint shut down, or dropped the link.
    Stopped,
    /// The connection or stream failed; reconnect.
    Lost(String),
}

async fn run(
    context: Arc<LinkContext>,
    to: NodeId,
    mut queue: mpsc::Receiver<Bytes>,
    connection_tx: watch::Sender<Option<quinn::Connection>>,
) {
    let mut directory = context.directory.clone();
    // The member's key and address, and the client configuration pinning that key: read
    // again before each attempt, since the registry may replace the key.
    let mut pinned: Option<(MemberAddress, quinn::ClientConfig)> = None;
    let mut shutdown = context.shutdown.clone();
    let mut backoff = context.config.backoff_initial;
    let mut failures: u32 = 0;
    let mut was_connected = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(member) = directory.borrow_and_update().member(to).cloned() else {
            warn!(%to, "no longer a member in the directory; link stopped");
            return;
        };
        if pinned.as_ref().is_none_or(|(m, _)| *m != member) {
            if pinned.is_some() {
                info!(%to, key = %member.public_key, "the member's key changed; the link pins the new one");
            }
            match quinn_client_config(
                &context.signer,
                member.public_key,
                &context.config,
                &context.metrics,
            ) {
                Ok(c) => pinned = Some((member.clone(), c)),
                Err(e) => {
                    warn!(%to, error = %e, "cannot configure the link");
                    return;
                }
            }
        }
        let client_config = &pinned.as_ref().expect("configured above").1;
        let attempt = async {
            let addr = resolve(&member.address).await?;
            connect(&context.quinn, client_config, addr, &context.config)
                .await
                .map_err(|e| e.to_string())
        };
        let connected = tokio::select! {
            _ = shutdown.changed() => return,
            r = attempt => r,
        };
        let connection = match connected {
            Ok(c) => c,
            Err(reason) => {
                failures += 1;
                // The first failure of a streak is worth a warning; the retries are not.
                if failures == 1 {
                    warn!(%to, address = %member.address, %reason, "cannot connect; retrying with backoff");
                } else {
                    debug!(%to, address = %member.address, %reason, failures, "reconnect attempt failed");
                }
                let wait = jitter(backoff);
                backoff = (backoff * 2).min(context.config.backoff_max);
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if was_connected {
            context.metrics.count_reconnect();
        }
        was_connected = true;
        failures = 0;
        info!(%to, remote = %connection.remote_address(), "link up");
        let up_since = tokio::time::Instant::now();
        connection_tx.send_replace(Some(connection.clone()));
        let ended = {
            let _connected = context.metrics.connected();
            pump(
                &context,
                &connection,
                &mut queue,
                &mut shutdown,
                (&mut directory, to, &member),
            )
            .await
        };
        connection_tx.send_replace(None);
        let reason = match ended {
            Ended::Stopped => {
                connection.close(codes::SHUTDOWN.into(), b"link closed");
                return;
            }
            Ended::Lost(reason) => reason,
        };
        // A client's handshake completes before the server has checked the client's key, so a
        // peer that refuses us looks like a link that comes up and drops at once. Only a link
        // that stayed up resets the backoff; one that flaps waits like a failed attempt.
        if up_since.elapsed() >= context.config.backoff_max {
            warn!(%to, %reason, "link down; reconnecting");
            backoff = context.config.backoff_initial;
        } else {
            warn!(%to, %reason, "link dropped right after connecting; retrying with backoff");
            let wait = jitter(backoff);
            backoff = (backoff * 2).min(context.config.backoff_max);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Moves queued frames onto one stream of `connection`, coalescing what is queued into writes of
/// up to [`WRITE_BATCH_BYTES`], until the connection fails, the link is stopped, or the member,
/// whose key the directory replaced since the connection was made, answers under its new key
/// (the link then reconnects pinning it).
async fn pump(
    context: &LinkContext,
    connection: &quinn::Connection,
    queue: &mut mpsc::Receiver<Bytes>,
    shutdown: &mut watch::Receiver<bool>,
    (directory, to, member): (&mut watch::Receiver<Arc<Directory>>, NodeId, &MemberAddress),
) -> Ended {
    let mut stream = match connection.open_uni().await {
        Ok(s) => s,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    let mut batch = Vec::with_capacity(WRITE_BATCH_BYTES);
    let mut watching = true;
    let mut replaced: Option<MemberAddress> = None;
    let mut probe = tokio::time::interval(context.config.backoff_max);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.changed() => {
                let _ = stream.finish();
                return Ended::Stopped;
            }
            e = connection.closed() => return Ended::Lost(e.to_string()),
            changed = directory.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else {
                    replaced = directory.borrow_and_update().member(to).filter(|m| *m != member).cloned();
                    if let Some(m) = &replaced {
                        info!(%to, key = %m.public_key, "the member's key was replaced on chain; the link keeps its connection until the member answers under the new key");
                    }
                }
                continue;
            }
            // The member still runs under its old key until its operator restarts it: the link
            // keeps the old connection (the member learns the block that replaced its key over
            // it) and probes for the new key, switching once it answers.
            _ = probe.tick(), if replaced.is_some() => {
                let m = replaced.as_ref().expect("guarded");
                if answers_under(context, m).await {
                    let _ = stream.finish();
                    connection.close(codes::KEY_RETIRED.into(), b"key replaced");
                    return Ended::Lost("the member answers under its new key".into());
                }
                continue;
            }
            f = queue.recv() => match f {
                Some(f) => f,
                None => {
                    let _ = stream.finish();
                    return Ended::Stopped;
                }
            },
        };
        batch.clear();
        encode_into(&mut batch, &first);
        let (mut frames, mut bytes) = (1u64, first.len());
        while batch.len() < WRITE_BATCH_BYTES {
            match queue.try_recv() {
                Ok(f) => {
                    encode_into(&mut batch, &f);
                    frames += 1;
                    bytes += f.len();
                }
                Err(_) => break,
            }
        }
        // A peer that stops reading stalls the write; shutdown must not wait for it.
        let written = tokio::select! {
            biased;
            _ = shutdown.changed() => return Ended::Stopped,
            w = stream.write_all(&batch) => w,
        };
        if let Err(e) = written {
            return Ended::Lost(e.to_string());
        }
        context.metrics.count_out(frames, bytes);
    }
}

/// Whether `member` answers a handshake under its key (the connection is closed at once).
async fn answers_under(context: &LinkContext, member: &MemberAddress) -> bool {
    let Ok(config) = quinn_client_config(
        &context.signer,
        member.public_key,
        &context.config,
        &context.metrics,
    ) else {
        return false;
    };
    let Ok(addr) = resolve(&member.address).await else {
        return false;
    };
    match connect(&context.quinn, &config, addr, &context.config).await {
        Ok(c) => {
            c.close(codes::SHUTDOWN.into(), b"probe");
            true
        }
        Err(_) => false,
    }
}

/// The first address `host:port` resolves to.
async fn resolve(address: &str) -> Result<std::net::SocketAddr, String> {
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))
}

/// `base` scaled by a random factor in [0.5, 1.0], so links that lost the same peer do not
/// retry in lockstep.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}
