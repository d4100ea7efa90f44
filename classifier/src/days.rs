//! Days of the ISP's time zone, as UTC instants: where the daily rollup
//! (`traffic_daily`) and reports by day cut time.
//!
//! A local day starts at its first instant: local midnight, or, where a
//! DST change skips midnight (America/Santiago, America/Havana,
//! Asia/Beirut...), the instant the clocks jump to. It is 23, 24 or 25
//! hours long (24.5 on Lord Howe Island).

use chrono::{DateTime, Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::aggregate::HOUR_MS;

/// The first instant (ms UTC) of the local day of `tz` that contains
/// `t_ms`; `t_ms` itself if the time is outside what chrono represents.
pub fn day_start(t_ms: i64, tz: Tz) -> i64 {
    let Some(utc) = DateTime::from_timestamp_millis(t_ms) else {
        return t_ms;
    };
    first_instant(utc.with_timezone(&tz).date_naive(), tz)
        .filter(|&s| s <= t_ms)
        .unwrap_or(t_ms)
}

/// The first instant of the local day after the one starting at (or
/// containing) `t_ms`.
pub fn next_day_start(t_ms: i64, tz: Tz) -> i64 {
    let Some(utc) = DateTime::from_timestamp_millis(t_ms) else {
        return t_ms.saturating_add(24 * HOUR_MS);
    };
    utc.with_timezone(&tz)
        .date_naive()
        .succ_opt()
        .and_then(|d| first_instant(d, tz))
        .filter(|&s| s > t_ms)
        .unwrap_or(t_ms.saturating_add(24 * HOUR_MS))
}

/// The first instant of the local calendar month of `tz` that contains
/// `t_ms` (the first instant of its 1st day).
pub fn month_start(t_ms: i64, tz: Tz) -> i64 {
    let Some(utc) = DateTime::from_timestamp_millis(t_ms) else {
        return t_ms;
    };
    utc.with_timezone(&tz)
        .date_naive()
        .with_day(1)
        .and_then(|d| first_instant(d, tz))
        .filter(|&s| s <= t_ms)
        .unwrap_or(t_ms)
}

/// Whether the hour starting at `hour_ms` lies inside one local day (its
/// traffic can be rolled up into a day from the hourly rollup). Not where
/// the zone's offset is not a whole number of hours (India, Nepal...):
/// then midnight falls inside an hour.
pub fn hour_in_one_day(hour_ms: i64, tz: Tz) -> bool {
    day_start(hour_ms, tz) == day_start(hour_ms.saturating_add(HOUR_MS - 1), tz)
}

/// Local midnight of `date`, or the first local time of it that exists
/// (offsets and DST steps are multiples of 15 minutes).
fn first_instant(date: NaiveDate, tz: Tz) -> Option<i64> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    (0..=24 * 4).find_map(|quarter| {
        let local = midnight + chrono::Duration::minutes(15 * quarter);
        tz.from_local_datetime(&local)
            .earliest()
            .map(|t| t.timestamp_millis())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn days_start_at_local_midnight() {
        let msk: Tz = "Europe/Moscow".parse().unwrap();
        let t = utc("2026-11-22T05:00:00Z"); // 08:00 in Moscow
        assert_eq!(day_start(t, msk), utc("2026-11-21T21:00:00Z"));
        assert_eq!(next_day_start(t, msk), utc("2026-11-22T21:00:00Z"));
        let start = utc("2026-11-21T21:00:00Z");
        assert_eq!(day_start(start, msk), start);
        assert_eq!(day_start(start - 1, msk), utc("2026-11-20T21:00:00Z"));
        let india: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(day_start(t, india), utc("2026-11-21T18:30:00Z"));
        assert!(!hour_in_one_day(utc("2026-11-21T18:00:00Z"), india));
        assert!(hour_in_one_day(utc("2026-11-21T19:00:00Z"), india));
        assert!(hour_in_one_day(utc("2026-11-21T18:00:00Z"), msk));
        assert_eq!(month_start(t, msk), utc("2026-10-31T21:00:00Z"));
        assert_eq!(
            month_start(utc("2026-10-31T21:00:00Z") - 1, msk),
            utc("2026-09-30T21:00:00Z")
        );
        assert_eq!(month_start(t, chrono_tz::UTC), utc("2026-11-01T00:00:00Z"));
    }

    #[test]
    fn a_day_whose_midnight_a_dst_change_skips_starts_when_the_clocks_jump() {
        // Santiago: 2024-09-08 00:00 (-04) became 01:00 (-03).
        let scl: Tz = "America/Santiago".parse().unwrap();
        let jump = utc("2024-09-08T04:00:00Z");
        assert_eq!(day_start(jump, scl), jump);
        assert_eq!(day_start(jump + 5 * HOUR_MS, scl), jump);
        assert_eq!(day_start(jump - 1, scl), utc("2024-09-07T04:00:00Z"));
        assert_eq!(next_day_start(jump - 1, scl), jump);
        // That day is 23 hours long; the one in autumn (2024-04-07, 00:00
        // -03 back to 23:00 -04 the day before) 25.
        assert_eq!(next_day_start(jump, scl) - jump, 23 * HOUR_MS);
        let autumn = utc("2024-04-06T03:00:00Z");
        assert_eq!(day_start(autumn, scl), autumn);
        assert_eq!(next_day_start(autumn, scl) - autumn, 25 * HOUR_MS);
        // Lord Howe Island: half-hour DST, a 24.5-hour day.
        let lhi: Tz = "Australia/Lord_Howe".parse().unwrap();
        let d = day_start(utc("2024-04-07T00:00:00Z"), lhi);
        assert_eq!(next_day_start(d, lhi) - d, 24 * HOUR_MS + HOUR_MS / 2);
    }

    #[test]
    fn times_outside_chrono_do_not_panic() {
        for t in [i64::MIN, i64::MAX, i64::MIN / 2, i64::MAX / 2] {
            let _ = day_start(t, chrono_tz::UTC);
            let _ = next_day_start(t, chrono_tz::UTC);
            let _ = month_start(t, chrono_tz::UTC);
            let _ = hour_in_one_day(t, chrono_tz::UTC);
        }
    }
}
