//! A participant's client: submits signed bids to its home node, checks the receipts, and
//! queries its trades, verifying each against a certified header with nothing but the genesis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tieline_core::block::Appeal;
use tieline_core::consensus::Reply;
use tieline_core::consensus::wire::{
    CertifiedProcess, CertifiedTrades, NodeStatus, ProofError, Request, RequestFailure, Response,
    Revocation, TradeReport,
};
use tieline_core::crypto::{Ed25519, Ed25519Signer, PublicKey, Signed, Signer};
use tieline_core::encoding::{DecodeError, Tagged};
use tieline_core::genesis::Genesis;
use tieline_core::market::SignedBid;
use tieline_core::units::{NodeId, ParticipantId};

use crate::node::config::parse_address;
use crate::transport::{Client, MAX_FRAME_LEN, RequestError, TransportConfig, TransportError};

/// Why a participant's request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The key is not an admitted participant's, and no home node was named.
    #[error(
        "key {0} is not an admitted participant of this consortium, or no longer is (replaced or revoked on chain): a node would refuse it; name a node to try anyway"
    )]
    NotAdmitted(String),
    /// The named node is not a member.
    #[error("node {0} is not a member of this consortium")]
    UnknownNode(NodeId),
    /// The node's address is unusable.
    #[error("node {node}'s address: {reason}")]
    Address {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The transport cannot start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The request got no answer.
    #[error("node {node} at {addr}: {source}{hint}")]
    Request {
        /// The node.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The cause.
        source: RequestError,
        /// What the cause most likely means.
        hint: &'static str,
    },
    /// The node refused the request.
    #[error("the node refused the request: {0}")]
    Refused(RequestFailure),
    /// The answer does not decode.
    #[error("the node's answer does not decode: {0}")]
    BadAnswer(DecodeError),
    /// The answer is of the wrong kind.
    #[error("the node answered with something else than asked: {0}")]
    Unexpected(String),
    /// A receipt is not the home node's signature over this bid.
    #[error("receipt for bid {index} does not verify under the home node's key")]
    BadReceipt {
        /// The bid's position in the request.
        index: usize,
    },
    /// The home node did not commit the height in time.
    #[error("node {node} had not committed height {height} after {waited:?}")]
    NotCommitted {
        /// The node.
        node: NodeId,
        /// The height waited for.
        height: u64,
        /// How long.
        waited: Duration,
    },
    /// Certified trades do not verify.
    #[error("the node's answer does not verify: {0}")]
    Proof(#[from] ProofError),
}

/// A participant (or a tool holding a participant's or a member's key) connected to a home
/// node.
pub struct ParticipantClient {
    client: Client,
    genesis: Arc<Genesis>,
    /// The registry as the node last told it ([`ParticipantClient::learn`]): the genesis
    /// with the changes on chain applied. The genesis until then.
    registry: Arc<Genesis>,
    scheme: Ed25519,
    /// The participant, if the key is an admitted one.
    pub participant: Option<ParticipantId>,
    /// The member, if the key is a member's (an operator's tool).
    pub member: Option<NodeId>,
    /// The participants revoked on chain, as the node last told it.
    revoked: Vec<Revocation>,
    /// The node it talks to.
    pub node: NodeId,
    node_key: PublicKey,
    addr: SocketAddr,
    signer: Ed25519Signer,
}

/// The transport settings a participant uses.
pub fn client_transport(request_timeout: Duration) -> TransportConfig {
    TransportConfig {
        max_frame_len: MAX_FRAME_LEN,
        request_timeout,
        handshake_timeout: Duration::from_secs(5).min(request_timeout),
        ..TransportConfig::default()
    }
}

impl ParticipantClient {
    /// A client for the participant holding `signer`, talking to its home node, or to `node`
    /// if given (for instance to try a key the genesis does not admit). Must be called inside
    /// a tokio runtime.
    pub fn new(
        genesis: Arc<Genesis>,
        signer: Ed25519Signer,
        node: Option<NodeId>,
        request_timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::with_node_key(
            genesis.clone(),
            genesis,
            signer,
            node,
            None,
            request_timeout,
        )
    }

    /// Like [`ParticipantClient::new`], knowing the registry `registry` (the genesis with the
    /// changes on chain applied, as far as known) and pinning `node_key` as the node's key if
    /// given (a member's key replaced on chain, learnt from its operator).
    pub fn with_node_key(
        genesis: Arc<Genesis>,
        registry: Arc<Genesis>,
        signer: Ed25519Signer,
        node: Option<NodeId>,
        node_key: Option<PublicKey>,
        request_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let key = signer.public_key();
        let me = registry.participants.iter().find(|p| p.public_key == key);
        let as_member = registry.members.iter().find(|m| m.public_key == key);
        let node = match (node, me, as_member) {
            (Some(n), _, _) => n,
            (None, Some(p), _) => p.home,
            (None, None, Some(m)) => m.id,
            (None, None, None) => return Err(ClientError::NotAdmitted(key.to_hex())),
        };
        let member = registry
            .member(node)
            .ok_or(ClientError::UnknownNode(node))?;
        let node_key = node_key.unwrap_or(member.public_key);
        let addr = parse_address("address", &member.address).map_err(|e| ClientError::Address {
            node,
            reason: e.to_string(),
        })?;
        let client = Client::new(
            signer.clone(),
            addr,
            node_key,
            client_transport(request_timeout),
        )?;
        Ok(Self {
            scheme: Ed25519::with_known_keys(registry.members.iter().map(|m| &m.public_key)),
            participant: me.map(|p| p.id),
            member: as_member.map(|m| m.id),
            revoked: Vec::new(),
            node_key,
            genesis,
            registry,
            client,
            node,
            addr,
            signer,
        })
    }

    /// A client for `signer` whose key the genesis may not know (a participant admitted on
    /// chain, a replaced key): connected to `node` if given, else to its home node by the
    /// genesis, else to the first member that accepts the key (a node accepts only its own
    /// participants and the members); then it learns the registry at the node's head
    /// ([`ParticipantClient::learn`]).
    pub async fn locate(
        genesis: Arc<Genesis>,
        signer: Ed25519Signer,
        node: Option<NodeId>,
        node_key: Option<PublicKey>,
        request_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let first = Self::with_node_key(
            genesis.clone(),
            genesis.clone(),
            signer.clone(),
            node,
            node_key,
            request_timeout,
        );
        match first {
            Ok(mut c) => {
                if let Err(e) = c.learn().await {
                    c.close().await;
                    return Err(e);
                }
                Ok(c)
            }
            Err(ClientError::NotAdmitted(key)) => {
                // Try each member with a short timeout: one that does not know the key
                // refuses the handshake at once.
                let short = request_timeout.min(Duration::from_secs(3));
                for m in &genesis.members {
                    let Ok(mut c) = Self::with_node_key(
                        genesis.clone(),
                        genesis.clone(),
                        signer.clone(),
                        Some(m.id),
                        None,
                        short,
                    ) else {
                        continue;
                    };
                    let learnt = c.learn().await;
                    c.close().await;
                    if learnt.is_ok() && (c.participant.is_some() || c.member.is_some()) {
                        // Talk, with the full timeout, to the node that accepted the key (a
                        // participant's home node), or a member's own node.
                        let to = c.member.is_none().then_some(c.node);
                        let mut found = Self::with_node_key(
                            genesis.clone(),
                            c.registry.clone(),
                            signer.clone(),
                            to,
                            None,
                            request_timeout,
                        )?;
                        found.learn().await?;
                        return Ok(found);
                    }
                }
                Err(ClientError::NotAdmitted(key))
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the node's status and takes the registry it names (the genesis with the changes
    /// on chain applied) as this client's: the participant the key belongs to now, its area,
    /// and the members' keys that certificates are verified with (a block certified before a
    /// replacement verifies under the genesis). The node is trusted for it as it is for the
    /// status; receipts and certificates are still verified.
    pub async fn learn(&mut self) -> Result<NodeStatus, ClientError> {
        let status = self.status().await?;
        let registry = Arc::new(status.registry.apply(&self.genesis));
        let key = self.signer.public_key();
        // The participant the key is now, or was when it was revoked (its bids are answered
        // with the revocation).
        self.participant = registry
            .participants
            .iter()
            .chain(status.registry.revoked.iter().map(|r| &r.participant))
            .find(|p| p.public_key == key)
            .map(|p| p.id);
        self.revoked = status.registry.revoked.clone();
        self.member = registry
            .members
            .iter()
            .find(|m| m.public_key == key)
            .map(|m| m.id);
        self.scheme = Ed25519::with_known_keys(registry.members.iter().map(|m| &m.public_key));
        self.registry = registry;
        Ok(status)
    }

    /// The registry as this client knows it (see [`ParticipantClient::learn`]).
    pub fn registry(&self) -> &Arc<Genesis> {
        &self.registry
    }

    /// Participant `id` as the registry names it, or as it stood when revoked.
    pub fn participant_record(
        &self,
        id: ParticipantId,
    ) -> Option<&tieline_core::genesis::Participant> {
        self.registry.participant(id).or_else(|| {
            self.revoked
                .iter()
                .map(|r| &r.participant)
                .find(|p| p.id == id)
        })
    }

    /// The node this client talks to.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The participant's signer.
    pub fn signer(&self) -> &Ed25519Signer {
        &self.signer
    }

    async fn ask(&self, request: &Request) -> Result<Response, ClientError> {
        let answer = self
            .client
            .request(&request.to_canonical_bytes())
            .await
            .map_err(|source| {
                let hint = match &source {
                    RequestError::ConnectionLost(_) | RequestError::Refused(_)
                        if self.member.is_none()
                            && self.participant.is_none_or(|p| {
                                self.registry
                                    .participant(p)
                                    .is_none_or(|p| p.home != self.node)
                            }) =>
                    {
                        " (the node refused our key: it is not a participant admitted at this node)"
                    }
                    RequestError::ConnectionLost(quinn::ConnectionError::ConnectionClosed(_)) => {
                        " (the node refused our key: it is not, or no longer, admitted at this node: replaced or revoked on chain?)"
                    }
                    RequestError::Connect { .. } | RequestError::Timeout(_) => {
                        " (is the node running?)"
                    }
                    _ => "",
                };
                ClientError::Request {
                    node: self.node,
                    addr: self.addr,
                    source,
                    hint,
                }
            })?;
        let response = Response::from_canonical_bytes(&answer).map_err(ClientError::BadAnswer)?;
        match response {
            Response::Failed(f) => Err(ClientError::Refused(f)),
            r => Ok(r),
        }
    }

    /// Submits bids in order; returns the node's reply to each. Every receipt is checked
    /// against the home node's key and the bid.
    pub async fn submit(&self, bids: Vec<SignedBid>) -> Result<Vec<Reply>, ClientError> {
        let ids: Vec<_> = bids.iter().map(|b| b.body.id()).collect();
        match self.ask(&Request::SubmitBids(bids)).await? {
            Response::Replies(replies) if replies.len() == ids.len() => {
                for (index, (r, id)) in replies.iter().zip(&ids).enumerate() {
                    if let Reply::Receipt(rc) = r {
                        if rc.body.bid != *id
                            || rc.body.home != self.node
                            || rc.verify(&self.scheme, &self.node_key).is_err()
                        {
                            return Err(ClientError::BadReceipt { index });
                        }
                    }
                }
                Ok(replies)
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Submits a signed registry change (spec A1-A5) to the node, which must be its sponsor;
    /// returns the node's answer: [`Reply::ChangeAccepted`] with the height whose batch
    /// carries it, or [`Reply::ChangeRefused`] with the reason.
    pub async fn submit_change(
        &self,
        change: tieline_core::registry::SignedChange,
    ) -> Result<Reply, ClientError> {
        match self.ask(&Request::SubmitChange(Box::new(change))).await? {
            Response::Replies(mut replies) if replies.len() == 1 => Ok(replies.remove(0)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Submits a signed appeal (spec 2.8); returns the home node's reply: forwarded (its
    /// receipt of the appeal) or rejected with the reason.
    pub async fn appeal(&self, appeal: Signed<Appeal>) -> Result<Reply, ClientError> {
        match self.ask(&Request::SubmitAppeal(Box::new(appeal))).await? {
            Response::Replies(mut replies) if replies.len() == 1 => Ok(replies.remove(0)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The committed block of `height`'s process data (its appeals with their resolutions),
    /// verified against its certified header with nothing but the genesis.
    pub async fn process(&self, height: u64) -> Result<CertifiedProcess, ClientError> {
        match self.ask(&Request::QueryProcess { height }).await? {
            Response::Process(p) if p.header.height == height => {
                // Under the registry at the head, or, for a block certified before a member's
                // key was replaced, the genesis.
                let chain_id = self.genesis.chain_id();
                p.verify_in(&chain_id, &self.registry, &self.scheme)
                    .or_else(|_| p.verify(&self.genesis, &self.scheme))?;
                Ok(*p)
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Waits until the home node has committed `height` (polling its status), then returns
    /// that block's verified process data; gives up after `limit`.
    pub async fn committed_process(
        &self,
        height: u64,
        limit: Duration,
    ) -> Result<CertifiedProcess, ClientError> {
        let start = std::time::Instant::now();
        loop {
            if self.status().await?.height > height {
                return self.process(height).await;
            }
            if start.elapsed() >= limit {
                return Err(ClientError::NotCommitted {
                    node: self.node,
                    height,
                    waited: limit,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        match self.ask(&Request::Status).await? {
            Response::Status(s) => Ok(*s),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// One page of this participant's trades from `from_height`, every block verified.
    pub async fn query(&self, from_height: u64) -> Result<TradeReport, ClientError> {
        let me = self
            .participant
            .ok_or_else(|| ClientError::NotAdmitted(self.signer.public_key().to_hex()))?;
        match self.ask(&Request::QueryTrades { from_height }).await? {
            Response::Trades(report) => {
                let chain_id = self.genesis.chain_id();
                for b in &report.blocks {
                    b.verify_in(&chain_id, &self.registry, &self.scheme, me)
                        .or_else(|_| b.verify(&self.genesis, &self.scheme, me))?;
                }
                Ok(report)
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// All of this participant's trades from `from_height` to the node's committed height,
    /// every block verified.
    pub async fn all_trades(&self, from_height: u64) -> Result<Vec<CertifiedTrades>, ClientError> {
        let mut out = Vec::new();
        let mut from = from_height;
        loop {
            let page = self.query(from).await?;
            out.extend(page.blocks);
            if page.next_height > page.committed || page.next_height <= from {
                return Ok(out);
            }
            from = page.next_height;
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        self.client.close().await;
    }
}
