//! Micro benchmark of the transport and storage layers, on loopback and the local disk.
//!
//! Run: `cargo bench -p tieline-net --bench transport` (release build). Prints:
//! - one member-to-member link: frames/s and MB/s for 200-byte frames;
//! - participant requests (one QUIC stream per request) with a reply each: requests/s;
//! - storage: records/s with 1000 records per durable transaction vs one per transaction.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use tieline_core::crypto::Signer;
use tieline_core::sample::SampleConsortium;
use tieline_core::units::NodeId;
use tieline_net::storage::{Storage, WriteBatch};
use tieline_net::transport::{Client, Directory, Endpoint, Inbound, SendError, TransportConfig};

/// Payload size of a frame, about a signed bid.
const FRAME_LEN: usize = 200;
/// Frames sent over the link.
const LINK_FRAMES: usize = 1_000_000;
/// Requests sent by the participant client.
const REQUESTS: usize = 100_000;
/// Requests in flight at once.
const REQUESTS_IN_FLIGHT: usize = 128;
/// Records per transaction in the group-commit case.
const GROUP: usize = 1000;
/// Transactions in the group-commit case.
const GROUP_TRANSACTIONS: usize = 100;
/// Transactions in the one-record case.
const SINGLE_TRANSACTIONS: usize = 500;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        link_throughput().await?;
        request_throughput().await
    })?;
    storage_throughput()
}

fn start(
    consortium: &SampleConsortium,
    index: usize,
) -> Result<(Endpoint, tokio::sync::mpsc::Receiver<Inbound>)> {
    let socket =
        UdpSocket::bind(&consortium.genesis.members[index].address).context("bind loopback")?;
    let home = consortium.genesis.members[index].id;
    Ok(Endpoint::from_socket(
        socket,
        consortium.members[index].clone(),
        Directory::for_home(&consortium.genesis, home),
        TransportConfig::default(),
    )?)
}

fn loopback_consortium() -> Result<SampleConsortium> {
    let mut consortium = SampleConsortium::new(2, 1);
    for m in &mut consortium.genesis.members {
        // Pick free ports now; the endpoints bind them right after.
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        m.address = probe.local_addr()?.to_string();
    }
    Ok(consortium)
}

async fn link_throughput() -> Result<()> {
    let consortium = loopback_consortium()?;
    let (a, _a_rx) = start(&consortium, 0)?;
    let (_b, mut b_rx) = start(&consortium, 1)?;
    let receiver = tokio::spawn(async move {
        let mut frames = 0;
        while frames < LINK_FRAMES {
            match b_rx.recv().await {
                Some(Inbound::Message { .. }) => frames += 1,
                Some(_) => {}
                None => break,
            }
        }
        frames
    });
    // Warm the link up so the handshake is not timed.
    a.request(NodeId(2), b"warm-up").await.ok();
    let payload = Bytes::from(vec![0x5a; FRAME_LEN]);
    let started = Instant::now();
    let mut retries = 0u64;
    for _ in 0..LINK_FRAMES {
        loop {
            match a.send(NodeId(2), payload.clone()) {
                Ok(()) => break,
                // Back-pressure for the benchmark: wait for room instead of dropping.
                Err(SendError::QueueFull(_)) => {
                    retries += 1;
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let received = receiver.await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(received == LINK_FRAMES, "only {received} frames arrived");
    println!(
        "link: {LINK_FRAMES} frames of {FRAME_LEN} B in {secs:.2} s: {:.0} frames/s, {:.1} MB/s \
         (queue-full retries {retries})",
        LINK_FRAMES as f64 / secs,
        (LINK_FRAMES * FRAME_LEN) as f64 / secs / 1e6
    );
    Ok(())
}

async fn request_throughput() -> Result<()> {
    let consortium = loopback_consortium()?;
    let (_a, mut a_rx) = start(&consortium, 0)?;
    tokio::spawn(async move {
        while let Some(item) = a_rx.recv().await {
            if let Inbound::Request { frame, reply, .. } = item {
                reply.send(frame.slice(..32));
            }
        }
    });
    let client = Arc::new(Client::new(
        consortium.participants[0].clone(),
        consortium.genesis.members[0].address.parse()?,
        consortium.members[0].public_key(),
        TransportConfig::default(),
    )?);
    client
        .request(b"warm-up-request-of-at-least-32-bytes")
        .await?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..REQUESTS_IN_FLIGHT {
        let client = client.clone();
        workers.push(tokio::spawn(async move {
            let request = vec![w as u8; FRAME_LEN];
            let mut done = 0;
            for _ in (w..REQUESTS).step_by(REQUESTS_IN_FLIGHT) {
                client.request(&request).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut done = 0;
    for w in workers {
        done += w.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "requests: {done} requests of {FRAME_LEN} B with 32 B replies, {REQUESTS_IN_FLIGHT} in \
         flight, in {secs:.2} s: {:.0} requests/s",
        done as f64 / secs
    );
    Ok(())
}

fn storage_throughput() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tieline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let record = vec![0xa5; FRAME_LEN];
    for (name, per_tx, transactions) in [
        ("group commit", GROUP, GROUP_TRANSACTIONS),
        ("one record per transaction", 1, SINGLE_TRANSACTIONS),
    ] {
        let path = dir.join(format!("{per_tx}.redb"));
        let _ = std::fs::remove_file(&path);
        let storage = Storage::open(&path)?;
        let batch = WriteBatch {
            records: vec![record.clone(); per_tx],
            ..WriteBatch::default()
        };
        let started = Instant::now();
        for _ in 0..transactions {
            storage.write(&batch)?;
        }
        let secs = started.elapsed().as_secs_f64();
        let records = per_tx * transactions;
        println!(
            "storage, {name}: {records} records of {FRAME_LEN} B in {transactions} durable \
             transactions, {secs:.2} s: {:.0} records/s, {:.2} ms per transaction",
            records as f64 / secs,
            secs * 1e3 / transactions as f64
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
