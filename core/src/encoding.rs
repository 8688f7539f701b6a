//! The canonical binary encoding of everything that is hashed or signed (spec D1-D3).
//!
//! Rules, in the order a reader meets them:
//! - A top-level value starts with its domain tag (`u16`, big-endian) and the format version
//!   (`u8`), so that no two types and no two format versions ever hash or sign alike.
//! - Integers are fixed-width and big-endian; `bool` is one byte, 0 or 1.
//! - `Option<T>` is one byte, 0 (none) or 1 (some), then `T`.
//! - Enums are a one-byte discriminant, then the variant's fields.
//! - Sequences and strings are a `u32` length, then the items; each field has its own maximum
//!   length, checked before anything is allocated.
//! - Decoding rejects a wrong tag or version, any byte left over, an out-of-range discriminant,
//!   a `bool` or option byte other than 0 or 1, invalid UTF-8, and input longer than the type's
//!   maximum. Every byte string that decodes therefore re-encodes to itself.

use std::fmt;

/// The version of the encoding written after every domain tag.
pub const FORMAT_VERSION: u8 = 1;

/// A per-type domain separator: the first two bytes of every top-level encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainTag {
    /// The tag's number, written big-endian.
    pub id: u16,
    /// The type's name, for error messages.
    pub name: &'static str,
}

/// Why a byte string is not the canonical encoding of a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Where in the value the problem is, e.g. `body.trades[3].price`.
    pub path: String,
    /// What the problem is.
    pub kind: DecodeErrorKind,
}

/// The kinds of decoding failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ended in the middle of a field.
    #[error("input ends early: {needed} more bytes needed, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// Bytes are left after a complete value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes are left.
        count: usize,
    },
    /// The domain tag names another type.
    #[error("wrong domain tag: expected {expected:#06x} ({name}), found {found:#06x}")]
    WrongTag {
        /// The tag this type carries.
        expected: u16,
        /// The type's name.
        name: &'static str,
        /// The tag found.
        found: u16,
    },
    /// The format version is not one this build reads.
    #[error("unsupported format version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A sequence or string is longer than its field allows.
    #[error("length {len} exceeds the maximum of {max}")]
    TooLong {
        /// The declared length.
        len: u64,
        /// The field's maximum.
        max: usize,
    },
    /// The whole input is longer than the type allows.
    #[error("input of {len} bytes exceeds the maximum of {max} for this type")]
    Oversize {
        /// The input's length.
        len: usize,
        /// The type's maximum.
        max: usize,
    },
    /// An enum discriminant, `bool` or option byte has no meaning.
    #[error("invalid discriminant {value}")]
    InvalidDiscriminant {
        /// The byte found.
        value: u8,
    },
    /// A string is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A value breaks its type's own rule (for example an EIC's check character).
    #[error("{0}")]
    Invalid(String),
}

impl DecodeError {
    /// A new error at the current position, with no path yet.
    pub fn new(kind: DecodeErrorKind) -> Self {
        Self {
            path: String::new(),
            kind,
        }
    }

    /// Prefixes the error's path with the field (or `[index]`) it occurred in.
    pub fn within(mut self, field: &str) -> Self {
        self.path = if self.path.is_empty() {
            field.to_owned()
        } else if self.path.starts_with('[') {
            format!("{field}{}", self.path)
        } else {
            format!("{field}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.path, self.kind)
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over the bytes being decoded.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::new(DecodeErrorKind::UnexpectedEnd {
                needed: n,
                remaining: self.bytes.len(),
            }));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a `u32` length prefix and checks it against `max`.
    pub fn length(&mut self, max: usize) -> Result<usize, DecodeError> {
        let len = u32::decode(self)?;
        if len as u64 > max as u64 {
            return Err(DecodeError::new(DecodeErrorKind::TooLong {
                len: len.into(),
                max,
            }));
        }
        Ok(len as usize)
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::new(DecodeErrorKind::TrailingBytes {
                count: self.bytes.len(),
            }))
        }
    }
}

/// A value with a canonical binary encoding.
pub trait Canonical: Sized {
    /// Appends the value's encoding (without tag or version) to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads one value from `r`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// How many bytes `value` encodes to.
pub fn encoded_len<T: Canonical>(value: &T) -> usize {
    let mut out = Vec::new();
    value.encode(&mut out);
    out.len()
}

/// A value that is hashed or signed on its own: it carries a domain tag and a size limit.
pub trait Tagged: Canonical {
    /// The type's domain tag.
    const TAG: DomainTag;
    /// The largest encoding (tag and version included) that decoding accepts.
    const MAX_ENCODED_LEN: usize;

    /// The tagged, versioned canonical bytes: what is hashed and signed.
    fn to_canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_canonical_bytes(&mut out);
        out
    }

    /// Appends the tagged, versioned canonical bytes to `out`.
    fn write_canonical_bytes(&self, out: &mut Vec<u8>) {
        Self::TAG.id.encode(out);
        FORMAT_VERSION.encode(out);
        self.encode(out);
    }

    /// Decodes tagged, versioned canonical bytes, rejecting anything non-canonical.
    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > Self::MAX_ENCODED_LEN {
            return Err(DecodeError::new(DecodeErrorKind::Oversize {
                len: bytes.len(),
                max: Self::MAX_ENCODED_LEN,
            }));
        }
        let mut r = Reader::new(bytes);
        let tag = u16::decode(&mut r)?;
        if tag != Self::TAG.id {
            return Err(DecodeError::new(DecodeErrorKind::WrongTag {
                expected: Self::TAG.id,
                name: Self::TAG.name,
                found: tag,
            }));
        }
        let version = u8::decode(&mut r)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::new(DecodeErrorKind::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            }));
        }
        let value = Self::decode(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

macro_rules! canonical_int {
    ($($t:ty),*) => {$(
        impl Canonical for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_be_bytes(r.array()?))
            }
        }
    )*};
}
canonical_int!(u8, u16, u32, u64, i32, i64, i128);

impl Canonical for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match u8::decode(r)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::new(DecodeErrorKind::InvalidDiscriminant {
                value,
            })),
        }
    }
}

impl<const N: usize> Canonical for [u8; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array()
    }
}

/// A shared value encodes as the value (a proposal's body is shared by every copy of it).
impl<T: Canonical> Canonical for std::sync::Arc<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        T::decode(r).map(std::sync::Arc::new)
    }
}

impl<T: Canonical> Canonical for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match u8::decode(r)? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            value => Err(DecodeError::new(DecodeErrorKind::InvalidDiscriminant {
                value,
            })),
        }
    }
}

impl<A: Canonical, B: Canonical> Canonical for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((A::decode(r)?, B::decode(r)?))
    }
}

/// Appends a length-prefixed sequence.
///
/// # Panics
/// If the sequence has more than `u32::MAX` items: every caller bounds its sequences far lower.
pub fn encode_seq<T: Canonical>(items: &[T], out: &mut Vec<u8>) {
    let len = u32::try_from(items.len()).expect("sequence length fits in u32");
    len.encode(out);
    for item in items {
        item.encode(out);
    }
}

/// Reads a length-prefixed sequence of at most `max` items.
pub fn decode_seq<T: Canonical>(r: &mut Reader<'_>, max: usize) -> Result<Vec<T>, DecodeError> {
    let len = r.length(max)?;
    // Never trust a length for allocation beyond what the input could hold.
    let mut items = Vec::with_capacity(len.min(r.remaining()));
    for i in 0..len {
        items.push(T::decode(r).map_err(|e| e.within(&format!("[{i}]")))?);
    }
    Ok(items)
}

/// Appends a length-prefixed UTF-8 string.
///
/// # Panics
/// If the string is longer than `u32::MAX` bytes.
pub fn encode_str(s: &str, out: &mut Vec<u8>) {
    let len = u32::try_from(s.len()).expect("string length fits in u32");
    len.encode(out);
    out.extend_from_slice(s.as_bytes());
}

/// Reads a length-prefixed UTF-8 string of at most `max` bytes.
pub fn decode_str(r: &mut Reader<'_>, max: usize) -> Result<String, DecodeError> {
    let len = r.length(max)?;
    let bytes = r.take(len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::new(DecodeErrorKind::InvalidUtf8))
}

/// Implements [`Canonical`] for a struct, field by field in the order given.
///
/// A field written `name: seq(MAX)` is a sequence of at most `MAX` items, `name: str(MAX)` a
/// string of at most `MAX` bytes; any other field uses its own `Canonical` impl.
#[macro_export]
macro_rules! canonical_struct {
    ($ty:ident { $($field:ident $(: $kind:ident($max:expr))?),* $(,)? }) => {
        impl $crate::encoding::Canonical for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                $( $crate::canonical_struct!(@enc self.$field, out $(, $kind)?); )*
            }
            fn decode(
                r: &mut $crate::encoding::Reader<'_>,
            ) -> Result<Self, $crate::encoding::DecodeError> {
                Ok(Self {
                    $( $field: $crate::canonical_struct!(@dec r $(, $kind($max))?)
                        .map_err(|e| e.within(stringify!($field)))?, )*
                })
            }
        }
    };
    (@enc $v:expr, $out:ident) => { $crate::encoding::Canonical::encode(&$v, $out) };
    (@enc $v:expr, $out:ident, seq) => { $crate::encoding::encode_seq(&$v, $out) };
    (@enc $v:expr, $out:ident, str) => { $crate::encoding::encode_str(&$v, $out) };
    (@dec $r:ident) => { $crate::encoding::Canonical::decode($r) };
    (@dec $r:ident, seq($max:expr)) => { $crate::encoding::decode_seq($r, $max) };
    (@dec $r:ident, str($max:expr)) => { $crate::encoding::decode_str($r, $max) };
}

/// Implements [`Canonical`] for a field-less enum as a one-byte discriminant.
#[macro_export]
macro_rules! canonical_enum {
    ($ty:ident { $($variant:ident = $value:literal),* $(,)? }) => {
        impl $crate::encoding::Canonical for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                out.push(match self { $(Self::$variant => $value),* });
            }
            fn decode(
                r: &mut $crate::encoding::Reader<'_>,
            ) -> Result<Self, $crate::encoding::DecodeError> {
                match <u8 as $crate::encoding::Canonical>::decode(r)? {
                    $($value => Ok(Self::$variant),)*
                    value => Err($crate::encoding::DecodeError::new(
                        $crate::encoding::DecodeErrorKind::InvalidDiscriminant { value },
                    )),
                }
            }
        }
    };
}

/// Implements [`Tagged`] for a type that already implements [`Canonical`].
#[macro_export]
macro_rules! tagged {
    ($ty:ty, $id:literal, $name:literal, $max:expr) => {
        impl $crate::encoding::Tagged for $ty {
            const TAG: $crate::encoding::DomainTag = $crate::encoding::DomainTag {
                id: $id,
                name: $name,
            };
            const MAX_ENCODED_LEN: usize = $max;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Sample {
        a: u16,
        b: Option<i64>,
        name: String,
        list: Vec<u32>,
    }
    canonical_struct!(Sample {
        a,
        b,
        name: str(8),
        list: seq(3)
    });
    tagged!(Sample, 0x7fff, "sample", 64);

    fn sample() -> Sample {
        Sample {
            a: 7,
            b: Some(-2),
            name: "ab".into(),
            list: vec![1, 2],
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let bytes = sample().to_canonical_bytes();
        assert_eq!(&bytes[..3], &[0x7f, 0xff, FORMAT_VERSION]);
        assert_eq!(&bytes[3..5], &[0, 7]);
        assert_eq!(Sample::from_canonical_bytes(&bytes).unwrap(), sample());
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = sample().to_canonical_bytes();
        bytes.push(0);
        let err = Sample::from_canonical_bytes(&bytes).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes { count: 1 });
    }

    #[test]
    fn rejects_wrong_tag_and_version() {
        let mut bytes = sample().to_canonical_bytes();
        bytes[1] = 0;
        assert!(matches!(
            Sample::from_canonical_bytes(&bytes).unwrap_err().kind,
            DecodeErrorKind::WrongTag { found: 0x7f00, .. }
        ));
        let mut bytes = sample().to_canonical_bytes();
        bytes[2] = 9;
        assert!(matches!(
            Sample::from_canonical_bytes(&bytes).unwrap_err().kind,
            DecodeErrorKind::UnsupportedVersion { found: 9, .. }
        ));
    }

    #[test]
    fn rejects_non_canonical_option_byte() {
        let mut bytes = sample().to_canonical_bytes();
        bytes[5] = 2;
        let err = Sample::from_canonical_bytes(&bytes).unwrap_err();
        assert_eq!(err.path, "b");
        assert_eq!(err.kind, DecodeErrorKind::InvalidDiscriminant { value: 2 });
    }

    #[test]
    fn rejects_too_long_sequence_and_oversize_input() {
        let mut s = sample();
        s.list = vec![1, 2, 3, 4];
        let err = Sample::from_canonical_bytes(&s.to_canonical_bytes()).unwrap_err();
        assert_eq!(err.path, "list");
        assert_eq!(err.kind, DecodeErrorKind::TooLong { len: 4, max: 3 });
        let err = Sample::from_canonical_bytes(&[0u8; 65]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Oversize { len: 65, max: 64 });
    }

    #[test]
    fn error_path_names_the_element() {
        let mut bytes = sample().to_canonical_bytes();
        bytes.truncate(bytes.len() - 2);
        let err = Sample::from_canonical_bytes(&bytes).unwrap_err();
        assert_eq!(err.path, "list[1]");
        assert!(err.to_string().starts_with("list[1]: input ends early"));
    }
}
