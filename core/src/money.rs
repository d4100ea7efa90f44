//! Money: whole kopecks (minor units) in an `i64`, never a float.
//!
//! `Money` is what the ledger stores. Prices finer than a kopeck (a price per
//! megabyte of 0.0123) are [`Price`]s in millionths of the major unit; rating
//! multiplies them out in `i128` and rounds to kopecks once (see
//! `rating.rs`).

use std::fmt;
use std::str::FromStr;

/// Minor units per major unit (kopecks per rouble, cents per dollar).
pub const MINOR_PER_MAJOR: i64 = 100;

/// Fractional digits of a [`Price`]: millionths of the major unit.
pub const PRICE_DIGITS: u32 = 6;

/// Price units per major unit (10^PRICE_DIGITS).
pub const PRICE_PER_MAJOR: i64 = 1_000_000;

/// Price units per kopeck.
pub const PRICE_PER_MINOR: i64 = PRICE_PER_MAJOR / MINOR_PER_MAJOR;

/// An amount of money in kopecks. Positive and negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

/// A price in millionths of the major unit (1 = 0.000001 rouble).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error(
        "'{0}' is not an amount: expected digits with an optional '.' and at most {1} decimals, e.g. 12.50"
    )]
    Syntax(String, u32),
    #[error("'{0}' is too large")]
    Overflow(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// "12", "12.5", "12.50", "-3.07"; at most two decimals (a third would
    /// be a fraction of a kopeck and is refused, not rounded).
    fn from_str(s: &str) -> Result<Money, MoneyError> {
        parse_decimal(s, 2).map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let m = MINOR_PER_MAJOR as u64;
        let s = format!("{sign}{}.{:02}", abs / m, abs % m);
        f.pad(&s)
    }
}

impl FromStr for Price {
    type Err = MoneyError;

    /// A non-negative or negative decimal with up to six decimals.
    fn from_str(s: &str) -> Result<Price, MoneyError> {
        parse_decimal(s, PRICE_DIGITS).map(Price)
    }
}

impl fmt::Display for Price {
    /// Shortest exact form: "1.5", "0.000123", "2".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let m = PRICE_PER_MAJOR as u64;
        let frac = abs % m;
        let s = if frac == 0 {
            format!("{sign}{}", abs / m)
        } else {
            let digits = format!("{frac:06}");
            format!("{sign}{}.{}", abs / m, digits.trim_end_matches('0'))
        };
        f.pad(&s)
    }
}

/// Parses a decimal into an integer scaled by 10^`digits`, exactly.
fn parse_decimal(s: &str, digits: u32) -> Result<i64, MoneyError> {
    let syntax = || MoneyError::Syntax(s.to_string(), digits);
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || frac.len() > digits as usize {
        return Err(syntax());
    }
    if body.contains('.') && frac.is_empty() {
        return Err(syntax());
    }
    let overflow = || MoneyError::Overflow(s.to_string());
    let scale = 10i64.pow(digits);
    let int: i64 = int.parse().map_err(|_| overflow())?;
    let mut frac_v: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| syntax())?
    };
    frac_v *= 10i64.pow(digits - frac.len() as u32);
    let v = int
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_v))
        .ok_or_else(overflow)?;
    Ok(if neg { -v } else { v })
}

/// Money travels as a decimal string ("12.50") in JSON and TOML, never as
/// a float.
impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_and_prints_exactly() {
        for (text, kop, shown) in [
            ("12", 1200, "12.00"),
            ("12.5", 1250, "12.50"),
            ("0.07", 7, "0.07"),
            ("-3.07", -307, "-3.07"),
            ("+1.00", 100, "1.00"),
            ("-0.05", -5, "-0.05"),
        ] {
            let m: Money = text.parse().unwrap();
            assert_eq!(m, Money(kop), "{text}");
            assert_eq!(m.to_string(), shown);
        }
    }

    #[test]
    fn money_refuses_fractions_of_a_kopeck_and_junk() {
        for bad in [
            "1.234",
            "",
            "-",
            "1.",
            ".5",
            "1,5",
            "1e3",
            "12a",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn price_keeps_six_decimals() {
        let p: Price = "0.000123".parse().unwrap();
        assert_eq!(p, Price(123));
        assert_eq!(p.to_string(), "0.000123");
        assert_eq!("1.5".parse::<Price>().unwrap().to_string(), "1.5");
        assert_eq!("2".parse::<Price>().unwrap(), Price(2_000_000));
        assert!("0.0000001".parse::<Price>().is_err());
    }
}
