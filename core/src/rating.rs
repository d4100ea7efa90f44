//! Pure, exact rating arithmetic: integers only (`i128` where products can
//! exceed `i64`), and rounding to whole kopecks in exactly one place
//! ([`num_to_kopecks`]), always on a cumulative figure.
//!
//! A rule's charge for a period's volume V is Σ over byte positions
//! x ∈ [0, V) of price(x) / unit_bytes, where price(x) is 0 inside the
//! included volume and otherwise the price of the tier containing x. It is
//! computed as a numerator in (price units × bytes) and floored once to
//! kopecks. The core posts differences of these floors, so however often it
//! rates, the postings of a period add up to floor(charge(total)): never
//! more than the exact price, less by under one kopeck.

use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Weekday};

use crate::money::{Money, PRICE_PER_MINOR};
use crate::tariff::{DirectionRule, TrafficRule, Unit};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("billing period {0:?}: expected YYYY-MM, e.g. 2026-10")]
    Period(String),
}

/// Volume a rule counts, in bytes, from period totals.
pub fn volume(dir: DirectionRule, in_bytes: u64, out_bytes: u64) -> u64 {
    match dir {
        DirectionRule::In => in_bytes,
        DirectionRule::Out => out_bytes,
        DirectionRule::Sum => in_bytes.saturating_add(out_bytes),
        DirectionRule::Max => in_bytes.max(out_bytes),
    }
}

/// The exact charge of `volume_bytes` under `rule`, as a numerator in
/// (price units × bytes); divide by `unit.bytes()` for price units.
pub fn rule_charge_num(rule: &TrafficRule, unit: Unit, volume_bytes: u64) -> i128 {
    let ub = u128::from(unit.bytes());
    let v = u128::from(volume_bytes);
    let free_to = u128::from(rule.included_units) * ub;
    let mut num: i128 = 0;
    for (i, t) in rule.tiers.iter().enumerate() {
        let lo = u128::from(t.from_units) * ub;
        let hi = rule
            .tiers
            .get(i + 1)
            .map(|n| u128::from(n.from_units) * ub)
            .unwrap_or(u128::MAX);
        // The part of [lo, hi) that is used and not included.
        let a = lo.max(free_to);
        let b = hi.min(v);
        if b > a {
            num += (b - a) as i128 * i128::from(t.price.0);
        }
    }
    num
}

/// Whole kopecks of a numerator: floor(num / (unit_bytes × price units per
/// kopeck)).
pub fn num_to_kopecks(num: i128, unit: Unit) -> Money {
    let den = i128::from(unit.bytes()) * i128::from(PRICE_PER_MINOR);
    Money(num.div_euclid(den) as i64)
}

/// Kopecks a rule has earned for period totals so far.
pub fn rule_charge(rule: &TrafficRule, unit: Unit, in_bytes: u64, out_bytes: u64) -> Money {
    num_to_kopecks(
        rule_charge_num(rule, unit, volume(rule.direction, in_bytes, out_bytes)),
        unit,
    )
}

/// A monthly fee for `active_days` of a `days_in_period`-day period:
/// floor(fee × active_days / days_in_period); the whole fee on the last day.
pub fn fee_cumulative(fee: Money, active_days: u32, days_in_period: u32) -> Money {
    if days_in_period == 0 {
        return Money::ZERO;
    }
    let k = i128::from(active_days.min(days_in_period));
    Money((i128::from(fee.0) * k).div_euclid(i128::from(days_in_period)) as i64)
}

/// A billing period: a calendar month in the ISP's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
    pub days: u32,
    /// "2026-10".
    pub label: String,
}

/// UTC ms of local midnight starting `date` (the first valid instant after
/// it if midnight does not exist; the earlier if it is ambiguous).
fn local_midnight(tz: chrono_tz::Tz, date: NaiveDate) -> i64 {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..(4 * 24) {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.timestamp_millis();
        }
        t += chrono::Duration::minutes(15);
    }
    tz.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
        .timestamp_millis()
}

fn local_date(tz: chrono_tz::Tz, utc_ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(utc_ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

fn month_period(tz: chrono_tz::Tz, year: i32, month: u32) -> Period {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .unwrap_or_default();
    Period {
        start_ms: local_midnight(tz, first),
        end_ms: local_midnight(tz, next),
        days: (next - first).num_days() as u32,
        label: format!("{year:04}-{month:02}"),
    }
}

pub fn period_of(tz: chrono_tz::Tz, utc_ms: i64) -> Period {
    let d = local_date(tz, utc_ms);
    month_period(tz, d.year(), d.month())
}

pub fn period_by_label(tz: chrono_tz::Tz, label: &str) -> Result<Period, RatingError> {
    let err = || RatingError::Period(label.to_string());
    let (y, m) = label.split_once('-').ok_or_else(err)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(err());
    }
    let y: i32 = y.parse().map_err(|_| err())?;
    let m: u32 = m.parse().map_err(|_| err())?;
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
        return Err(err());
    }
    Ok(month_period(tz, y, m))
}

/// The local day containing `utc_ms`: its start and end in UTC ms (23 h or
/// 25 h on DST days) and its 0-based index in its month.
pub fn local_day(tz: chrono_tz::Tz, utc_ms: i64) -> (i64, i64, u32) {
    let d = local_date(tz, utc_ms);
    let start = local_midnight(tz, d);
    let end = local_midnight(tz, d.succ_opt().unwrap_or(d));
    (start, end, d.day0())
}

/// Weekday and minute of the day of the local wall time at `utc_ms`.
pub fn local_slot(tz: chrono_tz::Tz, utc_ms: i64) -> (Weekday, u16) {
    let t = chrono::DateTime::from_timestamp_millis(utc_ms)
        .unwrap_or_default()
        .with_timezone(&tz);
    (t.weekday(), (t.hour() * 60 + t.minute()) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Price;
    use crate::tariff::Tier;

    fn rule(included: u64, tiers: &[(u64, i64)], dir: DirectionRule) -> TrafficRule {
        TrafficRule {
            name: "r".into(),
            class: "paid".into(),
            direction: dir,
            zones: vec![],
            included_units: included,
            tiers: tiers
                .iter()
                .map(|&(f, p)| Tier {
                    from_units: f,
                    price: Price(p),
                })
                .collect(),
        }
    }

    #[test]
    fn quota_and_tier_edges_are_exact() {
        // 1000 MB included, then 2.00/MB up to 10,000 MB, then 1.00/MB.
        let r = rule(
            1000,
            &[(0, 2_000_000), (10_000, 1_000_000)],
            DirectionRule::In,
        );
        let mb = 1_000_000u64;
        for (bytes, kopecks) in [
            (1000 * mb - 1, 0),
            (1000 * mb, 0),
            (1000 * mb + 1, 0),           // 2.00 × 1e-6 MB: under a kopeck
            (1001 * mb, 200),             // 1 MB at 2.00
            (10_000 * mb - 1, 1_799_999), // 8999 MB at 2.00 minus one byte
            (10_000 * mb, 1_800_000),
            (10_001 * mb, 1_800_100),
        ] {
            assert_eq!(
                rule_charge(&r, Unit::MB, bytes, 0).0,
                kopecks,
                "{bytes} bytes"
            );
        }
    }

    #[test]
    fn mb_and_mib_differ_by_their_sizes() {
        let r = rule(0, &[(0, 1_000_000)], DirectionRule::Sum);
        let bytes = 1_048_576_000u64; // 1000 MiB
        assert_eq!(rule_charge(&r, Unit::MiB, bytes, 0).0, 100_000);
        assert_eq!(rule_charge(&r, Unit::MB, bytes, 0).0, 104_857);
    }

    #[test]
    fn direction_rules() {
        assert_eq!(volume(DirectionRule::In, 5, 7), 5);
        assert_eq!(volume(DirectionRule::Out, 5, 7), 7);
        assert_eq!(volume(DirectionRule::Sum, 5, 7), 12);
        assert_eq!(volume(DirectionRule::Max, 5, 7), 7);
        assert_eq!(volume(DirectionRule::Sum, u64::MAX, 7), u64::MAX);
    }

    #[test]
    fn fee_by_days() {
        let fee = Money(50_000);
        assert_eq!(fee_cumulative(fee, 31, 31), fee);
        assert_eq!(fee_cumulative(fee, 10, 31), Money(16_129)); // 500 × 10/31 = 161.29...
        assert_eq!(fee_cumulative(fee, 1, 30), Money(1_666));
        assert_eq!(fee_cumulative(fee, 0, 30), Money::ZERO);
    }

    #[test]
    fn periods_and_dst_days() {
        let tz = chrono_tz::Europe::Berlin;
        let p = period_by_label(tz, "2026-10").unwrap();
        assert_eq!(p.days, 31);
        assert_eq!(p.end_ms - p.start_ms, (31 * 24 + 1) * 3_600_000);
        assert_eq!(period_of(tz, p.start_ms), p);
        assert_eq!(period_of(tz, p.end_ms - 1), p);
        let (s, e, i) = local_day(tz, p.start_ms + 24 * 86_400_000 + 5 * 3_600_000); // Oct 25
        assert_eq!((e - s, i), (25 * 3_600_000, 24));
        assert!(period_by_label(tz, "2026-13").is_err());
        assert!(period_by_label(tz, "26-10").is_err());
    }
}
