//! Pure, exact rating arithmetic and the calendar it runs on: integers
//! only (`i128` where products can exceed `i64`), and rounding to whole
//! kopecks in exactly one place ([`num_to_kopecks`]), always on a
//! cumulative figure.
//!
//! A rule's charge for a period's volume V is Σ over byte positions
//! x ∈ [0, V) of price(x) / unit_bytes, where price(x) is 0 inside the
//! included volume and otherwise the price of the tier containing x. It is
//! computed as a numerator in (price units × bytes) and floored once to
//! kopecks. The core posts differences of these floors, so however often it
//! rates and however the usage is split, the postings of a period add up to
//! floor(charge(total)): never more than the exact price, less by under one
//! kopeck, and never a negative posting (the charge grows with the volume).
//!
//! Billing periods are calendar months and fee days are calendar days in
//! the ISP's zone; zones of a tariff are matched against the local wall
//! time ([`local_slot`]). Nothing here reads the clock or a database.

use chrono::{
    Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Weekday,
};
use chrono_tz::Tz;

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
/// (price units × bytes): the sum over byte positions x in [0, volume) of
/// price(x) / unit_bytes, where price(x) is 0 below `included_units` and
/// otherwise the price of the tier containing x (tier bounds are
/// `from_units × unit_bytes`). The charge in price units is this divided
/// by `unit.bytes()`; [`num_to_kopecks`] rounds it.
///
/// Cannot overflow: the tiers' byte ranges are disjoint, so the summed
/// lengths are at most 2^64 - 1 and |sum| < 2^64 · 2^63 = 2^127.
pub fn rule_charge_num(rule: &TrafficRule, unit: Unit, volume_bytes: u64) -> i128 {
    let unit_bytes = u128::from(unit.bytes());
    let used_to = u128::from(volume_bytes);
    let free_to = u128::from(rule.included_units) * unit_bytes;
    let mut num: i128 = 0;
    for (i, tier) in rule.tiers.iter().enumerate() {
        let tier_from = u128::from(tier.from_units) * unit_bytes;
        let tier_to = match rule.tiers.get(i + 1) {
            Some(next) => u128::from(next.from_units) * unit_bytes,
            None => u128::MAX,
        };
        // The part of the tier that is used and not included.
        let from = tier_from.max(free_to);
        let to = tier_to.min(used_to);
        if to > from {
            // to - from <= volume_bytes, a u64.
            num += (to - from) as i128 * i128::from(tier.price.0);
        }
    }
    num
}

/// Whole kopecks of a numerator: floor(num / (unit_bytes × price units per
/// kopeck)). The only place rating rounds; callers give it cumulative
/// figures. A figure beyond ±9.2·10^16 roubles saturates.
pub fn num_to_kopecks(num: i128, unit: Unit) -> Money {
    let den = i128::from(unit.bytes()) * i128::from(PRICE_PER_MINOR);
    let kopecks = num.div_euclid(den);
    Money(i64::try_from(kopecks).unwrap_or(if kopecks < 0 { i64::MIN } else { i64::MAX }))
}

/// Kopecks a rule has earned for period totals so far.
pub fn rule_charge(rule: &TrafficRule, unit: Unit, in_bytes: u64, out_bytes: u64) -> Money {
    num_to_kopecks(
        rule_charge_num(rule, unit, volume(rule.direction, in_bytes, out_bytes)),
        unit,
    )
}

/// The monthly fee earned after `active_days` of a `days_in_period`-day
/// period: floor(fee × active_days / days_in_period), exactly the fee when
/// active_days == days_in_period (more days count as the whole period; a
/// zero-day period earns nothing). Posting the difference day by day adds
/// up to the fee.
pub fn fee_cumulative(fee: Money, active_days: u32, days_in_period: u32) -> Money {
    if days_in_period == 0 {
        return Money::ZERO;
    }
    let k = i128::from(active_days.min(days_in_period));
    let earned = (i128::from(fee.0) * k).div_euclid(i128::from(days_in_period));
    // Between 0 and fee (k <= days), so it fits.
    Money(i64::try_from(earned).unwrap_or(fee.0))
}

/// A billing period: a calendar month in the ISP's zone, from its first
/// local midnight to the next month's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Calendar days of the month (28-31), DST days counting one each.
    pub days: u32,
    /// "2026-10".
    pub label: String,
}

/// Instants rating handles: years 1 to 9999 UTC. Others are clamped.
const MIN_MS: i64 = -62_135_596_800_000;
const MAX_MS: i64 = 253_402_300_799_999;

fn utc(utc_ms: i64) -> chrono::DateTime<chrono::Utc> {
    let ms = utc_ms.clamp(MIN_MS, MAX_MS);
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The local wall time of a UTC second.
fn wall_time(tz: Tz, utc_s: i64) -> NaiveDateTime {
    utc(utc_s.saturating_mul(1000))
        .with_timezone(&tz)
        .naive_local()
}

/// UTC ms of the first instant of local `date`: its midnight; the earlier
/// instant if midnight happens twice; the first instant after it if the
/// clocks jump over midnight (where DST starts at 00:00).
fn day_start_ms(tz: Tz, date: NaiveDate) -> i64 {
    let midnight = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(a, b) => a.min(b).timestamp_millis(),
        LocalResult::None => {
            // In a gap: the transition, i.e. the first second whose wall
            // time is at or after midnight. Offsets are under a day, so it
            // lies within a day of midnight read as UTC.
            let naive_s = midnight.and_utc().timestamp();
            let (mut lo, mut hi) = (naive_s - 86_400, naive_s + 86_400);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if wall_time(tz, mid) >= midnight {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            hi * 1000
        }
    }
}

fn local_date(tz: Tz, utc_ms: i64) -> NaiveDate {
    utc(utc_ms).with_timezone(&tz).date_naive()
}

fn month_period(tz: Tz, first: NaiveDate) -> Period {
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    Period {
        start_ms: day_start_ms(tz, first),
        end_ms: day_start_ms(tz, next),
        days: u32::try_from((next - first).num_days()).unwrap_or(0),
        label: format!("{:04}-{:02}", first.year(), first.month()),
    }
}

/// The billing period (local calendar month) containing `utc_ms`.
pub fn period_of(tz: Tz, utc_ms: i64) -> Period {
    let d = local_date(tz, utc_ms);
    month_period(tz, d.with_day(1).unwrap_or(d))
}

/// The billing period a label such as "2026-10" names (years 1970-9999).
pub fn period_by_label(tz: Tz, label: &str) -> Result<Period, RatingError> {
    let err = || RatingError::Period(label.to_string());
    let (y, m) = label.split_once('-').ok_or_else(err)?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(y, 4) || !digits(m, 2) {
        return Err(err());
    }
    let y: i32 = y.parse().map_err(|_| err())?;
    let m: u32 = m.parse().map_err(|_| err())?;
    if y < 1970 {
        return Err(err());
    }
    let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(err)?;
    Ok(month_period(tz, first))
}

/// The local day containing `utc_ms`: its start and end in UTC ms (23 h or
/// 25 h on DST days) and its 0-based index in its month.
pub fn local_day(tz: Tz, utc_ms: i64) -> (i64, i64, u32) {
    let d = local_date(tz, utc_ms);
    let start = day_start_ms(tz, d);
    let end = day_start_ms(tz, d.succ_opt().unwrap_or(d));
    (start, end, d.day0())
}

/// Weekday and minute of the day (0..1440) of the local wall time at
/// `utc_ms`: what zones are matched against. In the repeated hour of an
/// autumn DST change both passes show the same wall times.
pub fn local_slot(tz: Tz, utc_ms: i64) -> (Weekday, u16) {
    let t = utc(utc_ms).with_timezone(&tz);
    let minute = t.hour() * 60 + t.minute();
    (t.weekday(), u16::try_from(minute).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Price;
    use crate::tariff::Tier;

    const MB: u64 = 1_000_000;
    const MIB: u64 = 1 << 20;
    const HOUR_MS: i64 = 3_600_000;

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
        let quota = 1000 * MB;
        let tier = 10_000 * MB;
        // (volume, exact numerator in price units × bytes, kopecks)
        for (bytes, num, kopecks) in [
            (0, 0, 0),
            (quota - 1, 0, 0),
            (quota, 0, 0),
            (quota + 1, 2_000_000, 0), // one byte: 0.000002 roubles
            (quota + 5_000, 10_000_000_000, 1), // 5 kB at 2.00/MB: one kopeck
            (quota + 4_999, 9_998_000_000, 0),
            (1001 * MB, 2_000_000 * MB as i128, 200),
            (tier - 1, 2_000_000 * (9000 * MB as i128 - 1), 1_799_999),
            (tier, 2_000_000 * 9000 * MB as i128, 1_800_000),
            (
                tier + 1,
                2_000_000 * 9000 * MB as i128 + 1_000_000,
                1_800_000,
            ),
            (
                10_001 * MB,
                2_000_000 * 9000 * MB as i128 + 1_000_000 * MB as i128,
                1_800_100,
            ),
        ] {
            assert_eq!(rule_charge_num(&r, Unit::MB, bytes), num, "{bytes} bytes");
            assert_eq!(
                rule_charge(&r, Unit::MB, bytes, 0),
                Money(kopecks),
                "{bytes} bytes"
            );
        }
    }

    #[test]
    fn a_quota_inside_a_later_tier_starts_charging_there() {
        // Tiers 3.00 from 0, 1.00 from 100; 150 included: the first paid
        // unit is at the second tier's price.
        let r = rule(150, &[(0, 3_000_000), (100, 1_000_000)], DirectionRule::Sum);
        for (mb, kopecks) in [(99, 0), (100, 0), (150, 0), (151, 100), (250, 10_000)] {
            assert_eq!(
                rule_charge(&r, Unit::MB, mb * MB, 0),
                Money(kopecks),
                "{mb} MB"
            );
        }
    }

    #[test]
    fn directions_pick_the_volume() {
        let r = |d| rule(0, &[(0, 1_000_000)], d);
        // 5 MB in, 7 MB out at 1.00/MB.
        for (d, kopecks) in [
            (DirectionRule::In, 500),
            (DirectionRule::Out, 700),
            (DirectionRule::Sum, 1200),
            (DirectionRule::Max, 700),
        ] {
            assert_eq!(
                rule_charge(&r(d), Unit::MB, 5 * MB, 7 * MB),
                Money(kopecks),
                "{d}"
            );
        }
        assert_eq!(volume(DirectionRule::Sum, u64::MAX, 7), u64::MAX);
        assert_eq!(volume(DirectionRule::Max, 5, 7), 7);
    }

    #[test]
    fn mb_and_mib_differ_by_4_86_percent() {
        let r = rule(0, &[(0, 1_000_000)], DirectionRule::Sum);
        let bytes = 1000 * MIB;
        let per_mib = rule_charge(&r, Unit::MiB, bytes, 0);
        let per_mb = rule_charge(&r, Unit::MB, bytes, 0);
        assert_eq!(per_mib, Money(100_000)); // 1000 MiB at 1.00
        assert_eq!(per_mb, Money(104_857)); // 1048.576 MB at 1.00
        // The numerator is price × bytes in both; the charge divides it by
        // the unit: 2^20 / 10^6 = 1.048576.
        let (num_mb, num_mib) = (
            rule_charge_num(&r, Unit::MB, bytes),
            rule_charge_num(&r, Unit::MiB, bytes),
        );
        assert_eq!(num_mb, num_mib);
        assert_eq!(num_mb, 1_000_000 * i128::from(bytes));
        // And a quota of 1000 units is 4.86 % more bytes in MiB.
        let q = rule(1000, &[(0, 1_000_000)], DirectionRule::In);
        assert_eq!(rule_charge(&q, Unit::MB, 1000 * MIB, 0), Money(4_857));
        assert_eq!(rule_charge(&q, Unit::MiB, 1000 * MIB, 0), Money(0));
        // GB and GiB likewise (2^30 / 10^9 = 1.073741824).
        let g = rule(0, &[(0, 100_000_000)], DirectionRule::In); // 100.00
        assert_eq!(rule_charge(&g, Unit::GB, 1 << 30, 0), Money(10_737));
        assert_eq!(rule_charge(&g, Unit::GiB, 1 << 30, 0), Money(10_000));
    }

    #[test]
    fn rounding_is_floor_once() {
        for (num, unit, kopecks) in [
            (0, Unit::MB, 0),
            (10_000 * 1_000_000 - 1, Unit::MB, 0),
            (10_000 * 1_000_000, Unit::MB, 1),
            (-1, Unit::MB, -1), // floor, not towards zero
            (i128::MAX, Unit::MB, i64::MAX),
            (i128::MIN, Unit::MB, i64::MIN),
        ] {
            assert_eq!(num_to_kopecks(num, unit), Money(kopecks), "{num}");
        }
        // A sub-kopeck price on a huge volume: 0.000001/MB on u64::MAX bytes.
        let r = rule(0, &[(0, 1)], DirectionRule::Sum);
        assert_eq!(
            rule_charge(&r, Unit::MB, u64::MAX, u64::MAX),
            Money(1_844_674_407)
        );
        // The largest price on the largest volume does not overflow.
        let r = rule(0, &[(0, i64::MAX)], DirectionRule::In);
        assert_eq!(
            rule_charge_num(&r, Unit::MB, u64::MAX),
            i128::from(u64::MAX) * i128::from(i64::MAX)
        );
        assert_eq!(rule_charge(&r, Unit::MB, u64::MAX, 0), Money(i64::MAX));
    }

    #[test]
    fn fee_by_days() {
        for (fee, k, n, kopecks) in [
            (50_000, 31, 31, 50_000),
            (50_000, 10, 31, 16_129), // 500 × 10/31 = 161.29...
            (50_000, 1, 31, 1_612),
            (50_000, 30, 31, 48_387),
            (50_000, 1, 30, 1_666),
            (50_000, 0, 30, 0),
            (50_000, 40, 30, 50_000),
            (50_000, 5, 0, 0),
            (0, 5, 28, 0),
            (1, 27, 28, 0),
            (1, 28, 28, 1),
            (i64::MAX, 15, 30, i64::MAX / 2),
            (i64::MAX, 30, 30, i64::MAX),
        ] {
            assert_eq!(
                fee_cumulative(Money(fee), k, n),
                Money(kopecks),
                "{fee} {k}/{n}"
            );
        }
    }

    #[test]
    fn periods_and_dst_days() {
        let tz = chrono_tz::Europe::Berlin;
        let p = period_by_label(tz, "2026-10").unwrap();
        assert_eq!(p.days, 31);
        assert_eq!(p.label, "2026-10");
        assert_eq!(p.end_ms - p.start_ms, (31 * 24 + 1) * HOUR_MS);
        assert_eq!(period_of(tz, p.start_ms), p);
        assert_eq!(period_of(tz, p.end_ms - 1), p);
        assert_eq!(period_of(tz, p.end_ms).label, "2026-11");
        assert_eq!(period_of(tz, p.start_ms - 1).label, "2026-09");
        let (s, e, i) = local_day(tz, p.start_ms + 24 * 86_400_000 + 5 * HOUR_MS); // Oct 25
        assert_eq!((e - s, i), (25 * HOUR_MS, 24));
        let dec = period_by_label(tz, "2026-12").unwrap();
        assert_eq!(
            (dec.days, period_of(tz, dec.end_ms).label.as_str()),
            (31, "2027-01")
        );
        assert_eq!(period_by_label(tz, "2028-02").unwrap().days, 29);
        for bad in [
            "2026-13", "2026-00", "26-10", "2026-1", "2026-+1", "+026-10", "202610", "1969-12", "",
        ] {
            assert_eq!(
                period_by_label(tz, bad),
                Err(RatingError::Period(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_midnight_that_does_not_exist_starts_the_day_at_the_jump() {
        // America/Santiago: clocks go from 00:00 to 01:00 on 2026-09-06.
        let tz = chrono_tz::America::Santiago;
        let jump = tz
            .with_ymd_and_hms(2026, 9, 6, 1, 0, 0)
            .single()
            .unwrap()
            .timestamp_millis();
        let (s, e, i) = local_day(tz, jump + HOUR_MS);
        assert_eq!((s, e - s, i), (jump, 23 * HOUR_MS, 5));
        // The day before ends there.
        assert_eq!(local_day(tz, jump - 1).1, jump);
        assert_eq!(local_slot(tz, jump), (Weekday::Sun, 60));
        // Santiago's autumn change repeats 23:00-24:00 of Saturday 4 April:
        // that day is 25 h, the next midnight unambiguous.
        let p = period_by_label(tz, "2026-04").unwrap();
        let (s, e, _) = local_day(tz, p.start_ms + 3 * 86_400_000 + 12 * HOUR_MS);
        assert_eq!(e - s, 25 * HOUR_MS);
    }

    #[test]
    fn local_slots_follow_the_wall_clock() {
        let tz = chrono_tz::Europe::Moscow; // UTC+3 all year
        let t = tz
            .with_ymd_and_hms(2026, 10, 5, 0, 30, 0)
            .single()
            .unwrap()
            .timestamp_millis();
        assert_eq!(local_slot(tz, t), (Weekday::Mon, 30));
        assert_eq!(local_slot(tz, t - HOUR_MS), (Weekday::Sun, 23 * 60 + 30));
        // Out-of-range instants are clamped, not a panic.
        let _ = local_slot(tz, i64::MAX);
        let _ = local_day(tz, i64::MIN);
        let _ = period_of(tz, i64::MAX);
    }
}
