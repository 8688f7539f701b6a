//! Hashing (SHA-256) and signatures (ed25519), behind a small signature-scheme trait.
//!
//! Ledger types hold keys and signatures as plain bytes ([`PublicKey`], [`Signature`]); what the
//! bytes mean is up to the [`SignatureScheme`] that verifies them. Nodes use [`Ed25519`]; the
//! model checker uses [`SymbolicScheme`], which is cheap and, inside the model, unforgeable.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::encoding::{Canonical, DecodeError, Reader, Tagged};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest.
    pub const ZERO: Digest = Digest([0; 32]);

    /// Lower-case hex of all 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Canonical for Digest {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Digest(r.array()?))
    }
}

/// A hasher for maps keyed by [`Digest`]: a digest is already uniformly distributed, so its
/// first eight bytes are the hash. For lookups only; nothing may depend on such a map's
/// iteration order.
#[derive(Clone, Copy, Debug, Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
}

/// A hash map keyed by digests, for fast lookups (never iterate it where order matters).
pub type DigestMap<V> =
    std::collections::HashMap<Digest, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Digest(h.finalize().into())
}

/// The digest of a value: SHA-256 of its tagged canonical bytes. The one hash of every type.
pub fn digest_of<T: Tagged>(value: &T) -> Digest {
    with_canonical_bytes(value, |bytes| sha256(&[bytes]))
}

/// Runs `f` on `value`'s tagged canonical bytes, encoded into a buffer this thread reuses, so
/// hashing and signing a large block do not allocate and grow a fresh buffer each time.
pub(crate) fn with_canonical_bytes<T: Tagged, R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> R {
    /// A buffer larger than this is released after use rather than kept.
    const KEEP: usize = 64 << 20;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            value.write_canonical_bytes(&mut buf);
            let out = f(&buf);
            if buf.capacity() > KEEP {
                *buf = Vec::new();
            }
            out
        }
        // Re-entered (an encoding that hashes): a buffer of its own.
        Err(_) => f(&value.to_canonical_bytes()),
    })
}

/// A signer's public key: 32 bytes whose meaning the [`SignatureScheme`] defines.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// A signature: 64 bytes whose meaning the [`SignatureScheme`] defines.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

macro_rules! hex_bytes {
    ($ty:ident, $n:literal) => {
        impl $ty {
            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Parses exactly the right number of hex characters.
            pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
                let mut out = [0u8; $n];
                hex::decode_to_slice(s.trim(), &mut out)?;
                Ok($ty(out))
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", &self.to_hex()[..12])
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl Canonical for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                self.0.encode(out);
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok($ty(r.array()?))
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::from_hex(&s).map_err(|e| {
                    serde::de::Error::custom(format!("expected {} hex characters: {e}", 2 * $n))
                })
            }
        }
    };
}
hex_bytes!(PublicKey, 32);
hex_bytes!(Signature, 64);

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a signature does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key bytes are not a key of this scheme.
    #[error("malformed public key")]
    MalformedKey,
    /// The signature does not match the key and message.
    #[error("invalid signature")]
    Invalid,
}

/// Verifies signatures. Implementations must be deterministic: every node reaches the same
/// verdict on the same bytes.
pub trait SignatureScheme: Send + Sync + fmt::Debug {
    /// Checks `signature` over `message` under `key`.
    fn verify(
        &self,
        key: &PublicKey,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError>;
}

/// Produces signatures under one key.
pub trait Signer: Send + Sync {
    /// The key that verifies this signer's signatures.
    fn public_key(&self) -> PublicKey;
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Signature;
}

/// Ed25519 with strict verification (RFC 8032 plus rejection of non-canonical and small-order
/// encodings), so every node agrees on every signature.
///
/// Decompressing a public key costs a noticeable share of a verification, so keys known in
/// advance (the consortium's members and participants) can be decompressed once.
#[derive(Clone, Debug, Default)]
pub struct Ed25519 {
    known: BTreeMap<PublicKey, VerifyingKey>,
}

impl Ed25519 {
    /// A verifier that decompresses `keys` once up front; other keys are decompressed per call.
    /// Keys that are not valid points are skipped here and rejected when used.
    pub fn with_known_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        let known = keys
            .into_iter()
            .filter_map(|k| VerifyingKey::from_bytes(&k.0).ok().map(|v| (*k, v)))
            .collect();
        Self { known }
    }

    /// Whether `key` is a usable ed25519 public key (a valid point, not of small order).
    pub fn is_valid_key(key: &PublicKey) -> bool {
        VerifyingKey::from_bytes(&key.0).is_ok_and(|k| !k.is_weak())
    }
}

impl SignatureScheme for Ed25519 {
    fn verify(
        &self,
        key: &PublicKey,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        let decompressed;
        let vk = match self.known.get(key) {
            Some(vk) => vk,
            None => {
                decompressed =
                    VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::MalformedKey)?;
                &decompressed
            }
        };
        vk.verify_strict(message, &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// An ed25519 signing key.
#[derive(Clone)]
pub struct Ed25519Signer {
    key: SigningKey,
}

impl Ed25519Signer {
    /// The signer whose secret is `seed` (32 bytes from a cryptographic random source).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The secret seed, for storing in a key file.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Signer({:?})", self.public_key())
    }
}

impl Signer for Ed25519Signer {
    fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }
    fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        Signature(self.key.sign(message).to_bytes())
    }
}

/// A symbolic signature scheme for model checking: a signature is the signer's key followed by
/// the SHA-256 of the message. It is trivially forgeable outside a model and must never secure
/// a real deployment; inside the model checker no actor forges, so it stands for an
/// unforgeable scheme while keeping states small and checks fast.
#[derive(Clone, Copy, Debug, Default)]
pub struct SymbolicScheme;

/// The signer of [`SymbolicScheme`].
#[derive(Clone, Copy, Debug)]
pub struct SymbolicSigner {
    key: PublicKey,
}

impl SymbolicSigner {
    /// A symbolic signer for `key`.
    pub fn new(key: PublicKey) -> Self {
        Self { key }
    }
}

impl Signer for SymbolicSigner {
    fn public_key(&self) -> PublicKey {
        self.key
    }
    fn sign(&self, message: &[u8]) -> Signature {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.key.0);
        out[32..].copy_from_slice(&sha256(&[message]).0);
        Signature(out)
    }
}

impl SignatureScheme for SymbolicScheme {
    fn verify(
        &self,
        key: &PublicKey,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        if signature.0[..32] == key.0 && signature.0[32..] == sha256(&[message]).0 {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// A value together with its signer's signature over the value's tagged canonical bytes.
///
/// Who the signer is follows from the value itself (a bid names its participant, a vote its
/// voter), so it is not repeated here.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signed<T> {
    /// What was signed.
    pub body: T,
    /// The signature over `body.to_canonical_bytes()`.
    pub signature: Signature,
}

impl<T: Tagged> Signed<T> {
    /// Signs `body` with `signer`.
    pub fn sign(body: T, signer: &dyn Signer) -> Self {
        let signature = with_canonical_bytes(&body, |bytes| signer.sign(bytes));
        Self { body, signature }
    }

    /// Checks the signature under `key`.
    pub fn verify(
        &self,
        scheme: &dyn SignatureScheme,
        key: &PublicKey,
    ) -> Result<(), SignatureError> {
        with_canonical_bytes(&self.body, |bytes| {
            scheme.verify(key, bytes, &self.signature)
        })
    }

    /// The digest of the signed body (not of the signature): the value's identity.
    pub fn body_digest(&self) -> Digest {
        digest_of(&self.body)
    }
}

impl<T: Canonical> Canonical for Signed<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.body.encode(out);
        self.signature.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let body = T::decode(r).map_err(|e| e.within("body"))?;
        let signature = Signature::decode(r).map_err(|e| e.within("signature"))?;
        Ok(Self { body, signature })
    }
}

impl<T: Tagged> Tagged for Signed<T> {
    const TAG: crate::encoding::DomainTag = crate::encoding::DomainTag {
        id: T::TAG.id | 0x8000,
        name: T::TAG.name,
    };
    const MAX_ENCODED_LEN: usize = T::MAX_ENCODED_LEN + 64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256(&[b"abc"]).to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256(&[b"a", b"bc"]), sha256(&[b"abc"]));
    }

    #[test]
    fn ed25519_signs_and_rejects_tampering() {
        let signer = Ed25519Signer::from_seed([7; 32]);
        let key = signer.public_key();
        let sig = signer.sign(b"bid");
        let scheme = Ed25519::default();
        assert_eq!(scheme.verify(&key, b"bid", &sig), Ok(()));
        assert_eq!(
            scheme.verify(&key, b"bix", &sig),
            Err(SignatureError::Invalid)
        );
        let mut bad = sig;
        bad.0[3] ^= 1;
        assert_eq!(
            scheme.verify(&key, b"bid", &bad),
            Err(SignatureError::Invalid)
        );
        let cached = Ed25519::with_known_keys([&key]);
        assert_eq!(cached.verify(&key, b"bid", &sig), Ok(()));
        assert!(Ed25519::is_valid_key(&key));
        assert!(!Ed25519::is_valid_key(&PublicKey([0; 32])));
    }

    #[test]
    fn symbolic_scheme_binds_key_and_message() {
        let a = SymbolicSigner::new(PublicKey([1; 32]));
        let sig = a.sign(b"m");
        assert_eq!(
            SymbolicScheme.verify(&PublicKey([1; 32]), b"m", &sig),
            Ok(())
        );
        assert!(
            SymbolicScheme
                .verify(&PublicKey([2; 32]), b"m", &sig)
                .is_err()
        );
        assert!(
            SymbolicScheme
                .verify(&PublicKey([1; 32]), b"n", &sig)
                .is_err()
        );
    }
}
