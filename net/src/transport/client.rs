//! Requests over QUIC, and the client a participant uses to reach its home node.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use tieline_core::crypto::{Ed25519Signer, PublicKey};
use tokio::sync::Mutex;

use super::frame::{self, FrameError, FrameReader};
use super::tls::{self, SERVER_NAME};
use super::{Metrics, MetricsSnapshot, RequestError, TransportConfig, TransportError, codes};

/// The QUIC client configuration for reaching the holder of `server_key`.
pub(crate) fn quinn_client_config(
    signer: &Arc<Ed25519Signer>,
    server_key: PublicKey,
    config: &TransportConfig,
    metrics: &Arc<Metrics>,
) -> Result<quinn::ClientConfig, TransportError> {
    let rustls = tls::client_config(signer, server_key, metrics.clone())?;
    let crypto = QuicClientConfig::try_from(rustls)
        .map_err(|e| TransportError::Config(format!("QUIC client crypto: {e}")))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(config.quinn_transport()?);
    Ok(client)
}

/// Dials `addr` and completes the handshake within the configured timeout.
pub(crate) async fn connect(
    endpoint: &quinn::Endpoint,
    client_config: &quinn::ClientConfig,
    addr: SocketAddr,
    config: &TransportConfig,
) -> Result<quinn::Connection, RequestError> {
    let connect_err = |reason: String| RequestError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let connecting = endpoint
        .connect_with(client_config.clone(), addr, SERVER_NAME)
        .map_err(|e| connect_err(e.to_string()))?;
    match tokio::time::timeout(config.handshake_timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(connect_err(e.to_string())),
        Err(_) => Err(connect_err(format!(
            "no handshake within {:?}",
            config.handshake_timeout
        ))),
    }
}

/// Sends `request` on a new bidirectional stream of `connection` and reads the one reply frame.
/// The caller bounds the time.
pub(crate) async fn request_on(
    connection: &quinn::Connection,
    request: &[u8],
    max_frame_len: usize,
    metrics: &Metrics,
) -> Result<Bytes, RequestError> {
    if request.len() > max_frame_len {
        metrics.count_oversized();
        return Err(RequestError::TooLarge {
            len: request.len(),
            max: max_frame_len,
        });
    }
    let (mut send, recv) = connection.open_bi().await?;
    let written = send.write_all(&frame::encode(request)).await;
    match written {
        Ok(()) => {}
        Err(quinn::WriteError::Stopped(code)) => return Err(RequestError::Refused(code.into())),
        Err(quinn::WriteError::ConnectionLost(e)) => return Err(RequestError::ConnectionLost(e)),
        Err(e @ (quinn::WriteError::ClosedStream | quinn::WriteError::ZeroRttRejected)) => {
            return Err(RequestError::Write(e));
        }
    }
    // The stream is ours and still open, so finishing cannot fail.
    let _ = send.finish();
    metrics.count_out(1, request.len());
    let mut reader = FrameReader::new(recv, max_frame_len);
    match reader.single().await {
        Ok(reply) => {
            metrics.count_in(1, reply.len());
            Ok(reply)
        }
        Err(e) => {
            match e {
                FrameError::Read(quinn::ReadError::Reset(code)) => {
                    return Err(RequestError::Refused(code.into()));
                }
                FrameError::Read(quinn::ReadError::ConnectionLost(e)) => {
                    return Err(RequestError::ConnectionLost(e));
                }
                FrameError::TooLarge { .. } => {
                    metrics.count_oversized();
                    reader.stop(codes::FRAME_TOO_LARGE);
                }
                _ => {}
            }
            Err(RequestError::BadReply(e))
        }
    }
}

/// A connection to one server with a pinned key, for request/response: how a participant
/// reaches its home node (and how tools reach a node).
///
/// It connects on the first request, keeps the connection, and reconnects on the next request
/// after a loss. Requests may run concurrently (up to [`super::MAX_CONCURRENT_REQUESTS`]).
pub struct Client {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    server: SocketAddr,
    config: TransportConfig,
    metrics: Arc<Metrics>,
    connection: Mutex<Option<quinn::Connection>>,
}

impl Client {
    /// A client authenticated by `signer` for the server at `server` holding `server_key`.
    /// Binds an ephemeral UDP port on the loopback address if `server` is a loopback address,
    /// on all interfaces otherwise. Must be called inside a tokio runtime.
    pub fn new(
        signer: Ed25519Signer,
        server: SocketAddr,
        server_key: PublicKey,
        config: TransportConfig,
    ) -> Result<Self, TransportError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let client_config = quinn_client_config(&Arc::new(signer), server_key, &config, &metrics)?;
        let local: SocketAddr = match (server.is_ipv4(), server.ip().is_loopback()) {
            (true, true) => (Ipv4Addr::LOCALHOST, 0).into(),
            (true, false) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            (false, true) => (Ipv6Addr::LOCALHOST, 0).into(),
            (false, false) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let bind_err = |source| TransportError::Bind {
            addr: local.to_string(),
            source,
        };
        let socket = UdpSocket::bind(local).map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| TransportError::Config("no async runtime found".into()))?;
        let endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
                .map_err(bind_err)?;
        Ok(Self {
            endpoint,
            client_config,
            server,
            config,
            metrics,
            connection: Mutex::new(None),
        })
    }

    /// Sends `request` and waits for the reply, within the configured request timeout
    /// (connecting included).
    pub async fn request(&self, request: &[u8]) -> Result<Bytes, RequestError> {
        let timeout = self.config.request_timeout;
        tokio::time::timeout(timeout, async {
            let connection = self.connection().await?;
            request_on(
                &connection,
                request,
                self.config.max_frame_len,
                &self.metrics,
            )
            .await
        })
        .await
        .unwrap_or(Err(RequestError::Timeout(timeout)))
    }

    /// The live connection, made now if there is none.
    async fn connection(&self) -> Result<quinn::Connection, RequestError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let c = connect(
            &self.endpoint,
            &self.client_config,
            self.server,
            &self.config,
        )
        .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The client's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Closes the connection and waits until the peer has been told.
    pub async fn close(&self) {
        self.endpoint
            .close(codes::SHUTDOWN.into(), b"client closed");
        self.endpoint.wait_idle().await;
    }
}
