//! The read side of tier 2 for operator reports (`kopek traffic`).
//!
//! Times are UTC inside; a report groups buckets into hours or days of the
//! ISP's time zone at the edge. Buckets divide 15 minutes, so every bucket
//! lies wholly inside one local hour and day, also across DST changes.

use chrono::{DateTime, Timelike};
use chrono_tz::Tz;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::aggregate::{FastMap, HOUR_MS};
use crate::store::{NameIds, OTHER_HOSTS, text};

#[derive(Debug, thiserror::Error)]
#[error("tier 2 query: {0}")]
pub struct ReportError(#[from] rusqlite::Error);

/// How rows are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Bucket,
    Hour,
    Day,
    /// Calendar months of the zone (from the first instant of the 1st).
    Month,
    /// The whole requested interval.
    Total,
}

#[derive(Debug, Clone)]
pub struct TrafficQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub account: Option<String>,
    pub class: Option<String>,
    /// Only what billing counts (billing point and the class's direction rule).
    pub billed_only: bool,
    pub period: Period,
    pub tz: Tz,
}

/// One report line: an account's traffic of one class in one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrafficRow {
    /// Start of the period, ms UTC.
    pub period_ms: i64,
    pub account: String,
    pub class: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub flows: u64,
}

/// Start of the period containing `t_ms` in zone `tz`, as ms UTC.
pub fn period_start(t_ms: i64, period: Period, from_ms: i64, tz: Tz) -> i64 {
    match period {
        Period::Total => from_ms,
        Period::Bucket => t_ms,
        Period::Day => crate::days::day_start(t_ms, tz),
        Period::Month => crate::days::month_start(t_ms, tz),
        Period::Hour => DateTime::from_timestamp_millis(t_ms)
            .and_then(|utc| {
                utc.with_timezone(&tz)
                    .with_minute(0)
                    .and_then(|l| l.with_second(0))
                    .and_then(|l| l.with_nanosecond(0))
            })
            .map_or(t_ms, |l| l.timestamp_millis()),
    }
}

/// Whether whole UTC hours can answer `q`: hours, days and totals over an
/// interval of whole hours, in a zone whose offset at both ends is a whole
/// number of hours (not India, Nepal, parts of Australia...). Then the
/// hourly rollup is read, 12× fewer rows than 5-minute buckets.
pub fn hourly_answers(q: &TrafficQuery) -> bool {
    hours_answer(q.from_ms, q.to_ms, q.period, q.tz)
}

/// [`hourly_answers`] for the interval `[from_ms, to_ms)`.
fn hours_answer(from_ms: i64, to_ms: i64, period: Period, tz: Tz) -> bool {
    use chrono::Offset;
    let whole = |t: i64| {
        DateTime::from_timestamp_millis(t)
            .is_some_and(|u| u.with_timezone(&tz).offset().fix().local_minus_utc() % 3600 == 0)
    };
    period != Period::Bucket
        && from_ms.rem_euclid(HOUR_MS) == 0
        && to_ms.rem_euclid(HOUR_MS) == 0
        && whole(from_ms)
        && whole(to_ms)
}

/// Where a part of a report is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `traffic`: every bucket.
    Buckets,
    /// `traffic_hourly`: 12× fewer rows (5-minute buckets).
    Hours,
    /// `traffic_daily`: 24× fewer again.
    Days,
}

/// How `q` is read: the interval cut into parts, in time order, each
/// from the coarsest table that answers it exactly. By day, month or in
/// total, the whole local days inside the interval come from the daily
/// rollup when it is of `q`'s zone (and complete for them); the rest (or
/// all) from hours when the edges are whole hours of a zone a whole number
/// of hours off UTC, else from the buckets.
pub fn plan(conn: &Connection, q: &TrafficQuery) -> Result<Vec<(i64, i64, Source)>, ReportError> {
    use crate::days::{day_start, next_day_start};
    let edge = |from: i64, to: i64| {
        let source = if hours_answer(from, to, q.period, q.tz) {
            Source::Hours
        } else {
            Source::Buckets
        };
        (from, to, source)
    };
    let (from, to) = (q.from_ms, q.to_ms);
    if matches!(q.period, Period::Day | Period::Month | Period::Total) && from < to {
        let (zone, complete) = crate::store::daily_rollup(conn, "main")?;
        if zone.as_deref() == Some(q.tz.name()) {
            // Days before `complete` are still being summed by the daemon.
            let first = match day_start(from, q.tz) {
                d if d == from => from,
                _ => next_day_start(from, q.tz),
            }
            .max(complete);
            let end = day_start(to, q.tz);
            if first < end {
                let parts = [edge(from, first), (first, end, Source::Days), edge(end, to)];
                return Ok(parts.into_iter().filter(|p| p.0 < p.1).collect());
            }
        }
    }
    Ok(vec![edge(from, to)])
}

/// The condition on parameter `?3` (an account or NULL). Written as
/// `account = ?3` only when there is one: SQLite cannot use the
/// by-account index for `(?3 IS NULL OR account = ?3)`, and one account's
/// month then scanned every account's rows (2.6 s instead of 20 ms for
/// 10,000 accounts, docs/performance.md).
fn account_filter(one: bool) -> &'static str {
    if one { "account = ?3" } else { "?3 IS NULL" }
}

/// Per account, class and period: in/out bytes, packets, flows, ordered
/// by period, account, class. See [`traffic_each`].
pub fn traffic(conn: &Connection, q: &TrafficQuery) -> Result<Vec<TrafficRow>, ReportError> {
    let mut out = Vec::new();
    traffic_each(conn, q, |r| out.push(r))?;
    Ok(out)
}

/// [`traffic`], each row handed to `f` as soon as its period is complete:
/// memory holds one period's rows, not the whole answer (an hourly report
/// of every account over a year is ~90 M rows).
///
/// The rows are summed here, not by SQL `GROUP BY`: a month of 10,000
/// accounts is ~30 M hourly rows, and SQLite's grouping of them cost more
/// than reading them (docs/performance.md). Account and class names are
/// interned, each row read without allocating. Rows come in time order
/// and a period's start never decreases with time (it is the time itself
/// inside a repeated DST hour), so a period is complete when the next
/// one starts.
pub fn traffic_each(
    conn: &Connection,
    q: &TrafficQuery,
    mut f: impl FnMut(TrafficRow),
) -> Result<(), ReportError> {
    // One read transaction: the plan (which days the daily rollup has)
    // and every part read from the same state of tier 2.
    let snapshot = conn.unchecked_transaction()?;
    let conn: &Connection = &snapshot;
    let mut sum = Summer {
        q,
        names: NameIds::default(),
        sums: FastMap::default(),
        last_time: None,
        period: i64::MIN,
        f: &mut f,
    };
    for (from, to, source) in plan(conn, q)? {
        let (table, time) = match source {
            Source::Buckets => ("traffic", "bucket_ms"),
            Source::Hours => ("traffic_hourly", "hour_ms"),
            Source::Days => ("traffic_daily", "day_ms"),
        };
        let sql = format!(
            "SELECT {time}, account, class, direction, bytes, packets, flows
             FROM {table}
             WHERE {time} >= ?1 AND {time} < ?2
               AND {}
               AND (?4 IS NULL OR class = ?4)
               AND (?5 = 0 OR billed = 1)
             ORDER BY {time}",
            account_filter(q.account.is_some())
        );
        let mut st = conn.prepare_cached(&sql)?;
        let mut rows = st.query(params![from, to, q.account, q.class, q.billed_only])?;
        while let Some(r) = rows.next()? {
            sum.add(r)?;
        }
    }
    sum.flush();
    Ok(())
}

/// Rows summed per account and class while their period lasts
/// ([`traffic_each`]).
struct Summer<'q, F: FnMut(TrafficRow)> {
    q: &'q TrafficQuery,
    names: NameIds,
    sums: FastMap<(u32, u32), TrafficRow>,
    last_time: Option<i64>,
    period: i64,
    f: &'q mut F,
}

impl<F: FnMut(TrafficRow)> Summer<'_, F> {
    /// Adds row `r` (time, account, class, direction, bytes, packets,
    /// flows), handing out the period before when `r` starts a new one.
    fn add(&mut self, r: &rusqlite::Row<'_>) -> Result<(), rusqlite::Error> {
        let t: i64 = r.get(0)?;
        if self.last_time != Some(t) {
            self.last_time = Some(t);
            let p = period_start(t, self.q.period, self.q.from_ms, self.q.tz);
            if p != self.period {
                self.flush();
                self.period = p;
            }
        }
        let account = self.names.id(text(r, 1)?);
        let class = self.names.id(text(r, 2)?);
        let inbound = text(r, 3)? == "in";
        let (bytes, packets, flows): (i64, i64, i64) = (r.get(4)?, r.get(5)?, r.get(6)?);
        let row = self.sums.entry((account, class)).or_default();
        if inbound {
            row.bytes_in = row.bytes_in.saturating_add(bytes as u64);
            row.packets_in = row.packets_in.saturating_add(packets as u64);
        } else {
            row.bytes_out = row.bytes_out.saturating_add(bytes as u64);
            row.packets_out = row.packets_out.saturating_add(packets as u64);
        }
        row.flows = row.flows.saturating_add(flows as u64);
        Ok(())
    }

    /// Hands out the current period's rows, by account and class.
    fn flush(&mut self) {
        let names = &self.names;
        let period = self.period;
        let mut done: Vec<TrafficRow> = self
            .sums
            .drain()
            .map(|((a, c), row)| TrafficRow {
                period_ms: period,
                account: names.name(a).to_string(),
                class: names.name(c).to_string(),
                ..row
            })
            .collect();
        done.sort_unstable_by(|a, b| (&a.account, &a.class).cmp(&(&b.account, &b.class)));
        done.into_iter().for_each(&mut *self.f);
    }
}

/// One remote host of an account in an hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRow {
    pub hour_ms: i64,
    pub account: String,
    /// Empty: the sum of hosts folded by compaction.
    pub remote: String,
    pub class: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub flows: u64,
}

/// The `n` largest remote hosts of each account over the interval (hours
/// summed), largest first.
pub fn top_hosts(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    account: Option<&str>,
    n: usize,
) -> Result<Vec<HostRow>, ReportError> {
    // One account: its rows hour by hour through the primary key
    // (hour_ms, account, ...), over the hours the table holds; a scan of
    // the interval would read every account's hosts (1.2 s instead of
    // 10 ms for 10 days of 10,000 accounts, docs/performance.md).
    let (from_ms, to_ms) = match account {
        None => (from_ms, to_ms),
        Some(_) => {
            let (lo, hi): (Option<i64>, Option<i64>) = conn
                // Two subqueries: SQLite reads a lone min() or max() from
                // the index's ends, both in one SELECT by a full scan.
                .prepare_cached(
                    "SELECT (SELECT min(hour_ms) FROM top_hosts), (SELECT max(hour_ms) FROM top_hosts)",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Ok(Vec::new());
            };
            // The first whole hour at or after from_ms (rows are hours).
            let first = from_ms.saturating_add(HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
            (first.max(lo), to_ms.min(hi.saturating_add(1)))
        }
    };
    let source = if account.is_some() {
        "(WITH RECURSIVE hours(h) AS (SELECT ?1 WHERE ?1 < ?2
                                      UNION ALL SELECT h + 3600000 FROM hours WHERE h + 3600000 < ?2)
          SELECT t.* FROM hours JOIN top_hosts t ON t.hour_ms = hours.h AND t.account = ?3)"
    } else {
        "(SELECT * FROM top_hosts WHERE hour_ms >= ?1 AND hour_ms < ?2 AND ?3 IS NULL)"
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT account, remote, class, sat_sum(bytes_in), sat_sum(bytes_out), sat_sum(flows), MIN(hour_ms)
         FROM {source}
         GROUP BY account, remote, class
         ORDER BY account, sat_sum(bytes_in) + sat_sum(bytes_out) DESC, remote"
    ))?;
    let mut rows = st.query(params![from_ms, to_ms, account])?;
    let mut out: Vec<HostRow> = Vec::new();
    let mut per = 0usize;
    while let Some(r) = rows.next()? {
        let account: String = r.get(0)?;
        if out.last().is_none_or(|l| l.account != account) {
            per = 0;
        }
        let remote: String = r.get(1)?;
        // The "other hosts" row is always shown and takes none of the n.
        if remote != OTHER_HOSTS {
            if per >= n {
                continue;
            }
            per += 1;
        }
        out.push(HostRow {
            hour_ms: r.get(6)?,
            account,
            remote,
            class: r.get(2)?,
            bytes_in: r.get::<_, i64>(3)? as u64,
            bytes_out: r.get::<_, i64>(4)? as u64,
            flows: r.get::<_, i64>(5)? as u64,
        });
    }
    Ok(out)
}

/// What [`top_hosts`] over an interval sums, and what it cannot: host rows
/// are whole UTC hours, summed by the daemon once an hour is over, and
/// kept `retention.top_hosts_days` (often shorter than the traffic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostCoverage {
    /// The whole hours summed: those starting in `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Hours among them with records whose hosts are not summed yet (the
    /// current hour, an hour that got late records, or a daemon behind).
    pub pending_hours_ms: Vec<i64>,
    /// Traffic of these hours before this instant has no host detail any
    /// more (removed by retention).
    pub removed_before_ms: Option<i64>,
}

/// The hours [`top_hosts`] sums for `[from_ms, to_ms)`, and the ones among
/// them whose hosts it lacks, so that a report never passes a partial list
/// of hosts off as the interval's.
pub fn host_coverage(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> Result<HostCoverage, ReportError> {
    let ceil_hour = |t: i64| t.saturating_add(HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
    let (first, end) = (ceil_hour(from_ms), ceil_hour(to_ms));
    let pending = conn
        .prepare_cached(
            "SELECT hour_ms FROM hosts_hours
             WHERE hour_ms >= ?1 AND hour_ms < ?2 AND gen_pending > gen_done ORDER BY hour_ms",
        )?
        .query_map(params![first, end], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    // Every hour with records has a `hosts_hours` row until retention
    // removes it with the hour's hosts: the oldest row is where the host
    // detail begins.
    let oldest: Option<i64> = conn
        .prepare_cached("SELECT min(hour_ms) FROM hosts_hours")?
        .query_row([], |r| r.get(0))?;
    let gone_until = oldest.unwrap_or(end).min(end);
    let removed_before_ms = if first < gone_until {
        conn.prepare_cached(
            "SELECT 1 FROM traffic_hourly WHERE hour_ms >= ?1 AND hour_ms < ?2 LIMIT 1",
        )?
        .exists(params![first, gone_until])?
        .then_some(gone_until)
    } else {
        None
    };
    Ok(HostCoverage {
        from_ms: first,
        to_ms: end,
        pending_hours_ms: pending,
        removed_before_ms,
    })
}

/// The start of the newest bucket tier 2 has counted traffic in (of an
/// account or of nobody), if any: bindings recorded for earlier times do
/// not change what was counted before them (a rebuild does).
pub fn newest_bucket(conn: &Connection) -> Result<Option<i64>, ReportError> {
    // Each max() from its primary key's end.
    Ok(conn
        .prepare_cached(
            "SELECT max(m) FROM (SELECT max(bucket_ms) AS m FROM traffic
                                 UNION ALL SELECT max(bucket_ms) FROM unattributed)",
        )?
        .query_row([], |r| r.get(0))?)
}

/// Traffic of subscriber addresses no account held, or with no subscriber
/// side at all (`transit`), per address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnattributedRow {
    pub address: String,
    pub direction: String,
    pub class: String,
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
}

/// Per address, direction and class over `[from_ms, to_ms)`, largest
/// first; `class`: that class only.
pub fn unattributed(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    class: Option<&str>,
) -> Result<Vec<UnattributedRow>, ReportError> {
    let mut st = conn.prepare_cached(
        "SELECT address, direction, class, sat_sum(bytes), sat_sum(packets), sat_sum(flows)
         FROM unattributed WHERE bucket_ms >= ?1 AND bucket_ms < ?2 AND (?3 IS NULL OR class = ?3)
         GROUP BY address, direction, class
         ORDER BY sat_sum(bytes) DESC, address, direction, class",
    )?;
    let rows = st.query_map(params![from_ms, to_ms, class], |r| {
        Ok(UnattributedRow {
            address: r.get(0)?,
            direction: r.get(1)?,
            class: r.get(2)?,
            bytes: r.get::<_, i64>(3)? as u64,
            packets: r.get::<_, i64>(4)? as u64,
            flows: r.get::<_, i64>(5)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Flow-export losses recorded in the interval, per exporter and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LossRow {
    pub exporter: String,
    pub reason: String,
    pub unit: String,
    pub count: u64,
}

pub fn losses(conn: &Connection, from_ms: i64, to_ms: i64) -> Result<Vec<LossRow>, ReportError> {
    let mut st = conn.prepare_cached(
        "SELECT exporter, reason, unit, sat_sum(count) FROM losses
         WHERE bucket_ms >= ?1 AND bucket_ms < ?2
         GROUP BY exporter, reason, unit ORDER BY exporter, reason, unit",
    )?;
    let rows = st.query_map(params![from_ms, to_ms], |r| {
        Ok(LossRow {
            exporter: r.get(0)?,
            reason: r.get(1)?,
            unit: r.get(2)?,
            count: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Bytes per observation point and billed flag: the reconciliation view
/// (a non-billing point carrying as much as a billing one is a hint that
/// two routers export the same traffic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointRow {
    pub point: String,
    pub billed: bool,
    pub bytes: u64,
    pub flows: u64,
}

pub fn points(conn: &Connection, from_ms: i64, to_ms: i64) -> Result<Vec<PointRow>, ReportError> {
    let mut st = conn.prepare_cached(
        "SELECT point, billed, sat_sum(bytes), sat_sum(flows) FROM traffic
         WHERE bucket_ms >= ?1 AND bucket_ms < ?2
         GROUP BY point, billed ORDER BY point, billed",
    )?;
    let rows = st.query_map(params![from_ms, to_ms], |r| {
        Ok(PointRow {
            point: r.get(0)?,
            billed: r.get::<_, i64>(1)? != 0,
            bytes: r.get::<_, i64>(2)? as u64,
            flows: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Class-list versions with their validity (for `kopek traffic --versions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRow {
    pub id: i64,
    pub valid_from_ms: i64,
    pub sha256: String,
    pub prefixes: i64,
}

pub fn versions(conn: &Connection) -> Result<Vec<VersionRow>, ReportError> {
    let mut st = conn.prepare_cached(
        "SELECT id, valid_from_ms, sha256, prefixes FROM class_versions ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(VersionRow {
            id: r.get(0)?,
            valid_from_ms: r.get(1)?,
            sha256: r.get(2)?,
            prefixes: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The versions in force at some time of `[from_ms, to_ms)`: each from its
/// start to the next one's (the first one also before its start: it judges
/// older records too). `versions` in id order, as [`versions`] gives them.
pub fn versions_in_force(versions: Vec<VersionRow>, from_ms: i64, to_ms: i64) -> Vec<VersionRow> {
    let ends: Vec<i64> = versions
        .iter()
        .skip(1)
        .map(|v| v.valid_from_ms)
        .chain([i64::MAX])
        .collect();
    versions
        .into_iter()
        .zip(ends)
        .enumerate()
        .filter(|(i, (v, end))| (*i == 0 || v.valid_from_ms < to_ms) && *end > from_ms)
        .map(|(_, (v, _))| v)
        .collect()
}

/// The class-list version valid at `t_ms` (the first one before any) with
/// its canonical content: "which class did this address have at T".
pub fn version_at(
    conn: &Connection,
    t_ms: i64,
) -> Result<Option<(VersionRow, String)>, ReportError> {
    let mut st = conn.prepare_cached(
        "SELECT id, valid_from_ms, sha256, prefixes, content FROM class_versions
         ORDER BY CASE WHEN valid_from_ms <= ?1 THEN 0 ELSE 1 END,
                  CASE WHEN valid_from_ms <= ?1 THEN -valid_from_ms ELSE valid_from_ms END
         LIMIT 1",
    )?;
    let mut rows = st.query(params![t_ms])?;
    match rows.next()? {
        None => Ok(None),
        Some(r) => Ok(Some((
            VersionRow {
                id: r.get(0)?,
                valid_from_ms: r.get(1)?,
                sha256: r.get(2)?,
                prefixes: r.get(3)?,
            },
            r.get(4)?,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_isp_zone() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap(); // +05:30
        // 2026-03-01 00:10 IST = 2026-02-28 18:40 UTC.
        let t = DateTime::parse_from_rfc3339("2026-02-28T18:40:00Z")
            .unwrap()
            .timestamp_millis();
        let day = period_start(t, Period::Day, 0, tz);
        assert_eq!(
            DateTime::from_timestamp_millis(day).unwrap().to_rfc3339(),
            "2026-02-28T18:30:00+00:00"
        );
        let hour = period_start(t, Period::Hour, 0, tz);
        assert_eq!(
            DateTime::from_timestamp_millis(hour).unwrap().to_rfc3339(),
            "2026-02-28T18:30:00+00:00"
        );
        // Moscow has no DST; Berlin's spring-forward day is 23 hours long.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let t = DateTime::parse_from_rfc3339("2026-03-29T12:00:00Z")
            .unwrap()
            .timestamp_millis();
        let day = period_start(t, Period::Day, 0, tz);
        assert_eq!(
            DateTime::from_timestamp_millis(day).unwrap().to_rfc3339(),
            "2026-03-28T23:00:00+00:00"
        );
    }
}
