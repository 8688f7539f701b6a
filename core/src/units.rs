//! Identifiers and fixed-point units. Nothing on the ledger is a float (spec D4).
//!
//! | unit        | type        | resolution                 |
//! |-------------|-------------|----------------------------|
//! | energy      | [`Quantity`]| 1 kWh = 0.001 MWh (i64)    |
//! | price       | [`Price`]   | 0.0001 currency/MWh (i64)  |
//! | money       | [`Money`]   | price x quantity: 1e-7 currency (i128, exact) |
//! | time        | [`Timestamp`]| 1 ms since the Unix epoch (u64) |

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::encoding::{Canonical, DecodeError, Reader};

macro_rules! id_type {
    ($(#[$doc:meta])* $ty:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $ty(pub $inner);

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl Canonical for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                self.0.encode(out);
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok($ty(<$inner>::decode(r)?))
            }
        }
    };
}

id_type!(
    /// A management node (a country's power exchange or dispatch centre).
    NodeId(u16)
);
id_type!(
    /// A market area (a country or bidding zone).
    AreaId(u16)
);
id_type!(
    /// A market participant (a subject node: generator, retailer, large consumer).
    ParticipantId(u32)
);
id_type!(
    /// A bus of a grid model (MATPOWER bus number).
    BusId(u32)
);
id_type!(
    /// A tie line between two areas.
    TieLineId(u16)
);
id_type!(
    /// A point in time: milliseconds since the Unix epoch. Comes into the core as an input.
    Timestamp(u64)
);

macro_rules! fixed_point {
    ($(#[$doc:meta])* $ty:ident($inner:ty), $decimals:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(pub $inner);

        impl $ty {
            /// Decimal places of the unit.
            pub const DECIMALS: u32 = $decimals;
            /// Raw units per whole unit.
            pub const SCALE: $inner = (10 as $inner).pow($decimals);
            /// Zero.
            pub const ZERO: $ty = $ty(0);

            /// Parses a decimal such as `-12.5`, exactly; more decimals than the unit has is
            /// an error, never a silent rounding.
            pub fn parse(s: &str) -> Result<Self, String> {
                parse_decimal(s, $decimals)
                    .and_then(|v| <$inner>::try_from(v).map_err(|_| format!("`{s}` is out of range")))
                    .map($ty)
            }

            /// The value as a float, for display and for solvers; never for the ledger.
            pub fn to_f64(self) -> f64 {
                self.0 as f64 / Self::SCALE as f64
            }

            /// The nearest representable value to a float; `None` if it is not finite or out
            /// of range.
            pub fn from_f64(x: f64) -> Option<Self> {
                let raw = (x * Self::SCALE as f64).round();
                (raw.is_finite() && raw.abs() < 9.0e18).then(|| $ty(raw as $inner))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&format_decimal(self.0 as i128, $decimals))
            }
        }

        impl Canonical for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                self.0.encode(out);
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok($ty(<$inner>::decode(r)?))
            }
        }

        impl std::ops::Add for $ty {
            type Output = $ty;
            fn add(self, o: $ty) -> $ty {
                $ty(self.0 + o.0)
            }
        }

        impl std::ops::Sub for $ty {
            type Output = $ty;
            fn sub(self, o: $ty) -> $ty {
                $ty(self.0 - o.0)
            }
        }

        impl std::ops::AddAssign for $ty {
            fn add_assign(&mut self, o: $ty) {
                self.0 += o.0;
            }
        }

        impl std::ops::SubAssign for $ty {
            fn sub_assign(&mut self, o: $ty) {
                self.0 -= o.0;
            }
        }

        impl std::ops::Neg for $ty {
            type Output = $ty;
            fn neg(self) -> $ty {
                $ty(-self.0)
            }
        }

        impl std::iter::Sum for $ty {
            fn sum<I: Iterator<Item = $ty>>(it: I) -> $ty {
                it.fold($ty::ZERO, |a, b| a + b)
            }
        }
    };
}

fixed_point!(
    /// Energy in kWh (0.001 MWh); power over a delivery period is expressed as its energy.
    Quantity(i64),
    3
);
fixed_point!(
    /// A price in 0.0001 currency units per MWh.
    Price(i64),
    4
);
fixed_point!(
    /// An amount of money in 1e-7 currency units: exactly a [`Price`] times a [`Quantity`].
    Money(i128),
    7
);

impl Price {
    /// The exact value of `quantity` at this price.
    pub fn times(self, quantity: Quantity) -> Money {
        Money(i128::from(self.0) * i128::from(quantity.0))
    }
}

/// Parses a decimal string into an integer scaled by `10^decimals`, exactly.
pub fn parse_decimal(s: &str, decimals: u32) -> Result<i128, String> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let well_formed = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty());
    if !well_formed {
        return Err(format!("`{s}` is not a decimal number"));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > decimals as usize {
        return Err(format!("`{s}` has more than {decimals} decimal places"));
    }
    let scale = 10i128.pow(decimals);
    let int: i128 = int.parse().map_err(|_| format!("`{s}` is out of range"))?;
    let frac_value: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i128>()
            .map_err(|_| format!("`{s}` is out of range"))?
            * 10i128.pow(decimals - frac.len() as u32)
    };
    let v = int
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(|| format!("`{s}` is out of range"))?;
    Ok(if neg { -v } else { v })
}

/// Formats an integer scaled by `10^decimals` as a decimal, without trailing zeros.
pub fn format_decimal(v: i128, decimals: u32) -> String {
    let scale = 10i128.pow(decimals);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let (int, frac) = (a / scale as u128, a % scale as u128);
    if frac == 0 {
        format!("{sign}{int}")
    } else {
        let f = format!("{frac:0width$}", width = decimals as usize);
        format!("{sign}{int}.{}", f.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Quantity::parse("12.5"), Ok(Quantity(12_500)));
        assert_eq!(Quantity::parse("-0.001"), Ok(Quantity(-1)));
        assert_eq!(Price::parse("30"), Ok(Price(300_000)));
        assert_eq!(Price::parse("16.9774"), Ok(Price(169_774)));
        assert!(
            Quantity::parse("0.0001")
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(Quantity::parse("1.").is_err());
        assert!(Quantity::parse("abc").is_err());
        assert!(Quantity::parse("99999999999999999999").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["0", "12.5", "-0.001", "123456.789"] {
            assert_eq!(Quantity::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Price(300_000).times(Quantity(2_000)), Money(600_000_000));
        assert_eq!(Money(600_000_000).to_string(), "60");
    }
}
