//! TLS 1.3 with RFC 7250 raw public keys, pinned to the consortium's ed25519 keys.
//!
//! Each side presents its ed25519 key as a bare SubjectPublicKeyInfo (no certificate, no CA)
//! and proves possession by signing the TLS 1.3 handshake transcript. The verifiers accept a
//! key only if it is pinned: a server accepts the keys of its [`Directory`], a client accepts
//! exactly the one key it expected to reach. Handshake signatures are checked with the core's
//! strict ed25519 verification, the same rule that verifies ledger signatures.
//!
//! Session resumption and 0-RTT are off, so every connection runs the full mutual
//! authentication and the identity of a connection is always the key it just proved.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, PeerMisbehaved, SignatureAlgorithm,
    SignatureScheme,
};
use tieline_core::crypto::{Ed25519, Ed25519Signer, PublicKey, Signature, SignatureScheme as _};
use tokio::sync::watch;
use tracing::warn;

use super::{ALPN, Directory, Metrics};

/// The DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The server name every client asks for. Identity comes from the pinned key, never from the
/// name, so one fixed name serves all connections.
pub const SERVER_NAME: &str = "tieline";

/// Why a TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration: {0}")]
pub struct TlsConfigError(String);

/// The SubjectPublicKeyInfo DER of an ed25519 key.
pub fn spki_of(key: &PublicKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    out.extend_from_slice(&ED25519_SPKI_PREFIX);
    out.extend_from_slice(&key.0);
    out
}

/// The ed25519 key inside a SubjectPublicKeyInfo DER, if it is exactly one.
pub fn key_of_spki(spki: &[u8]) -> Option<PublicKey> {
    let raw = spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    Some(PublicKey(raw.try_into().ok()?))
}

/// What a refused key looks like in a log line: the key's hex, or the raw bytes' hex if they
/// are not an ed25519 SubjectPublicKeyInfo.
fn describe(spki: &[u8]) -> String {
    match key_of_spki(spki) {
        Some(k) => k.to_hex(),
        None => format!("not-ed25519:{}", hex::encode(spki)),
    }
}

/// Our key as rustls sees it: a signing key whose "certificate" is its raw SPKI.
struct TlsSigningKey {
    signer: Arc<Ed25519Signer>,
    spki: Vec<u8>,
}

impl fmt::Debug for TlsSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSigningKey({:?})", self.signer)
    }
}

impl rustls::sign::SigningKey for TlsSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(TlsSigner(self.signer.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

#[derive(Debug)]
struct TlsSigner(Arc<Ed25519Signer>);

impl rustls::sign::Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(tieline_core::crypto::Signer::sign(self.0.as_ref(), message)
            .0
            .to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

fn certified_key(signer: &Arc<Ed25519Signer>) -> Arc<CertifiedKey> {
    let spki = spki_of(&tieline_core::crypto::Signer::public_key(signer.as_ref()));
    let key = TlsSigningKey {
        signer: signer.clone(),
        spki: spki.clone(),
    };
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        Arc::new(key),
    ))
}

/// Checks a TLS 1.3 handshake signature by the key in `spki`: ed25519 only, strict.
fn verify_handshake_signature(
    message: &[u8],
    spki: &[u8],
    scheme: SignatureScheme,
    signature: &[u8],
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    let key = key_of_spki(spki).ok_or(rustls::Error::InvalidCertificate(
        CertificateError::BadEncoding,
    ))?;
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    Ed25519::default()
        .verify(&key, message, &Signature(sig))
        .map(|()| HandshakeSignatureValid::assertion())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))
}

/// A server's check of clients: the key must be in the directory as it stands at the
/// handshake (the endpoint replaces it when the registry changes on chain).
struct DirectoryVerifier {
    directory: watch::Receiver<Arc<Directory>>,
}

impl fmt::Debug for DirectoryVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DirectoryVerifier({} keys)",
            self.directory.borrow().len()
        )
    }
}

impl ClientCertVerifier for DirectoryVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let known = intermediates.is_empty()
            && key_of_spki(end_entity).is_some_and(|k| self.directory.borrow().peer(&k).is_some());
        if known {
            Ok(ClientCertVerified::assertion())
        } else {
            warn!(
                key = %describe(end_entity),
                "refused a connection: the client's key is not in the consortium directory"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss.scheme, dss.signature())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// A client's check of the server: exactly the pinned key.
#[derive(Debug)]
struct PinnedKeyVerifier {
    expected: PublicKey,
    metrics: Arc<Metrics>,
}

impl ServerCertVerifier for PinnedKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if intermediates.is_empty() && key_of_spki(end_entity) == Some(self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            self.metrics.count_refused_handshake();
            warn!(
                key = %describe(end_entity),
                expected = %self.expected,
                "refused a connection: the server's key is not the one pinned for it"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss.scheme, dss.signature())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_err(e: impl fmt::Display) -> TlsConfigError {
    TlsConfigError(e.to_string())
}

/// The rustls server configuration of an endpoint: our key as a raw public key, clients
/// authenticated against `directory` (the one it holds at each handshake), ALPN [`ALPN`], TLS
/// 1.3 only, no resumption.
pub fn server_config(
    signer: &Arc<Ed25519Signer>,
    directory: watch::Receiver<Arc<Directory>>,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let verifier = Arc::new(DirectoryVerifier { directory });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            certified_key(signer),
        )));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The rustls client configuration for reaching the holder of `server_key`: our key as a raw
/// public key, the server's key pinned (a mismatch is counted in `metrics`), ALPN [`ALPN`], TLS 1.3 only, no resumption.
pub fn client_config(
    signer: &Arc<Ed25519Signer>,
    server_key: PublicKey,
    metrics: Arc<Metrics>,
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let verifier = Arc::new(PinnedKeyVerifier {
        expected: server_key,
        metrics,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            certified_key(signer),
        )));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

/// The ed25519 key a QUIC connection's peer authenticated with, if any.
pub fn peer_key(connection: &quinn::Connection) -> Option<PublicKey> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    match chain.as_slice() {
        [only] => key_of_spki(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tieline_core::crypto::Signer as _;

    #[test]
    fn spki_round_trip_and_rejects_other_shapes() {
        let key = Ed25519Signer::from_seed([3; 32]).public_key();
        let spki = spki_of(&key);
        assert_eq!(spki.len(), 44);
        assert_eq!(key_of_spki(&spki), Some(key));
        assert_eq!(key_of_spki(&spki[..43]), None);
        let mut longer = spki.clone();
        longer.push(0);
        assert_eq!(key_of_spki(&longer), None);
        let mut other_oid = spki;
        other_oid[8] = 0x71; // 1.3.101.113 is Ed448
        assert_eq!(key_of_spki(&other_oid), None);
    }

    #[test]
    fn handshake_signature_checked_strictly() {
        let signer = Ed25519Signer::from_seed([4; 32]);
        let spki = spki_of(&signer.public_key());
        let sig = signer.sign(b"transcript");
        let ed = SignatureScheme::ED25519;
        assert!(verify_handshake_signature(b"transcript", &spki, ed, &sig.0).is_ok());
        assert!(verify_handshake_signature(b"transcripT", &spki, ed, &sig.0).is_err());
        let ecdsa = SignatureScheme::ECDSA_NISTP256_SHA256;
        assert!(verify_handshake_signature(b"transcript", &spki, ecdsa, &sig.0).is_err());
        assert!(verify_handshake_signature(b"transcript", &spki, ed, &sig.0[..63]).is_err());
        let other = spki_of(&Ed25519Signer::from_seed([5; 32]).public_key());
        assert!(verify_handshake_signature(b"transcript", &other, ed, &sig.0).is_err());
    }
}
