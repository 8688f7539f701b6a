//! Energy Identification Codes (EIC): how European market documents name bidding zones,
//! market parties and tie lines (spec D23).
//!
//! An EIC is 16 characters from `A-Z`, `0-9` and `-`: two for the issuing office, one for the
//! object type, twelve that identify the object, and a check character. The check character is
//! computed as the ENTSO-E EIC reference manual gives it: each of the first 15 characters has
//! a value (`0-9` are 0-9, `A-Z` are 10-35, `-` is 36) and a weight (16 for the first, falling
//! to 2 for the fifteenth); with `S` the weighted sum, the check value is `36 - ((S - 1) mod
//! 37)`, written with the same alphabet. A check value of 36 (`-`) is never issued.
//!
//! Published codes that the tests check against: `10YBE----------2` (Belgium),
//! `10YFR-RTE------C` (France), `10Y1001A1001A82H` (Germany-Luxembourg).

use std::fmt;

use crate::encoding::{Canonical, DecodeError, DecodeErrorKind, Reader};

/// The characters of an EIC, by value.
const ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-";

/// A checked Energy Identification Code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Eic([u8; 16]);

/// Why a string is not an EIC.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EicError {
    /// Not 16 characters.
    #[error("an EIC has 16 characters, `{0}` has {1}")]
    Length(String, usize),
    /// A character outside `A-Z`, `0-9`, `-`.
    #[error("`{code}`: character {position} (`{found}`) is not A-Z, 0-9 or -")]
    Character {
        /// The code.
        code: String,
        /// 1-based position.
        position: usize,
        /// The character.
        found: char,
    },
    /// The check character does not match.
    #[error(
        "`{code}`: the check character is `{found}`, the first 15 characters give `{expected}`"
    )]
    Check {
        /// The code.
        code: String,
        /// Its 16th character.
        found: char,
        /// What the algorithm computes.
        expected: char,
    },
}

fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u32)
}

/// The check character of an EIC's first 15 characters, if they are all valid; `-` (36) is
/// what the algorithm yields for a base no issuing office would assign.
pub fn check_character(base: &[u8; 15]) -> Option<char> {
    let mut sum = 0u32;
    for (i, &c) in base.iter().enumerate() {
        sum += value(c)? * (16 - i as u32);
    }
    let check = 36 - ((sum + 36) % 37);
    Some(char::from(ALPHABET[check as usize]))
}

impl Eic {
    /// Parses and checks a code (upper case only, as codes are issued).
    pub fn parse(s: &str) -> Result<Eic, EicError> {
        let chars = s.chars().count();
        if chars != 16 {
            return Err(EicError::Length(s.to_owned(), chars));
        }
        for (i, c) in s.chars().enumerate() {
            let ok = u8::try_from(c).ok().and_then(value).is_some();
            if !ok || (i == 15 && c == '-') {
                return Err(EicError::Character {
                    code: s.to_owned(),
                    position: i + 1,
                    found: c,
                });
            }
        }
        let bytes: [u8; 16] = s.as_bytes().try_into().expect("16 ASCII characters");
        let base: [u8; 15] = bytes[..15].try_into().expect("15 bytes");
        let expected = check_character(&base).expect("characters checked above");
        let found = char::from(bytes[15]);
        if found != expected {
            return Err(EicError::Check {
                code: s.to_owned(),
                found,
                expected,
            });
        }
        Ok(Eic(bytes))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("an EIC is ASCII")
    }
}

impl fmt::Display for Eic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Eic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eic({})", self.as_str())
    }
}

impl std::str::FromStr for Eic {
    type Err = EicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Eic::parse(s)
    }
}

/// Sixteen bytes; decoding checks the code, so every EIC that decodes is valid.
impl Canonical for Eic {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bytes: [u8; 16] = r.array()?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| DecodeError::new(DecodeErrorKind::InvalidUtf8))?;
        Eic::parse(text).map_err(|e| DecodeError::new(DecodeErrorKind::Invalid(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes published by ENTSO-E (bidding zones and a tie point), not computed here.
    const PUBLISHED: [&str; 8] = [
        "10YBE----------2",
        "10YFR-RTE------C",
        "10YNL----------L",
        "10Y1001A1001A82H",
        "10YDE-VE-------2",
        "10X1001A1001A450",
        "10YAT-APG------L",
        "10YCH-SWISSGRIDZ",
    ];

    #[test]
    fn published_codes_check() {
        for code in PUBLISHED {
            let eic = Eic::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"));
            assert_eq!(eic.as_str(), code);
        }
    }

    #[test]
    fn every_wrong_check_character_is_refused() {
        for code in PUBLISHED {
            for &c in ALPHABET {
                let mut wrong = code.as_bytes().to_vec();
                if wrong[15] == c {
                    continue;
                }
                wrong[15] = c;
                let wrong = String::from_utf8(wrong).unwrap();
                assert!(Eic::parse(&wrong).is_err(), "{wrong} accepted");
            }
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            Eic::parse("10YBE").unwrap_err(),
            EicError::Length("10YBE".into(), 5)
        );
        assert!(matches!(
            Eic::parse("10ybe----------2").unwrap_err(),
            EicError::Character {
                position: 3,
                found: 'y',
                ..
            }
        ));
        assert_eq!(
            Eic::parse("10YBE----------3").unwrap_err().to_string(),
            "`10YBE----------3`: the check character is `3`, the first 15 characters give `2`"
        );
        assert!(matches!(
            Eic::parse("10YBE----------é").unwrap_err(),
            EicError::Character {
                position: 16,
                found: 'é',
                ..
            }
        ));
        assert!(matches!(
            Eic::parse("10YBE-----------").unwrap_err(),
            EicError::Character {
                position: 16,
                found: '-',
                ..
            }
        ));
    }

    #[test]
    fn canonical_bytes_round_trip_and_refuse_a_bad_code() {
        let eic = Eic::parse("10YBE----------2").unwrap();
        let mut out = Vec::new();
        eic.encode(&mut out);
        assert_eq!(Eic::decode(&mut Reader::new(&out)).unwrap(), eic);
        out[15] = b'3';
        assert!(Eic::decode(&mut Reader::new(&out)).is_err());
    }
}
