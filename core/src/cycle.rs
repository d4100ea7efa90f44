//! One rating cycle: tier-2 changes in, accruals, postings and access
//! decisions out, all in one transaction with the tier-2 watermark.
//!
//! Tier 2 stamps every `traffic` row a commit touches with that commit's
//! number (`seq`). The core remembers the last number it consumed
//! (`meta.tier2_seq`) and the last total it saw of every billed row
//! (`usage_mirror`); a changed row's delta is its new total minus the
//! mirrored one. Deltas go to cumulative volumes per (account, billing
//! period, tariff version, service); the charge of a service is recomputed
//! from its cumulative volume (`rating::rule_charge`) and the difference to
//! what was already posted is the accrued amount. kill -9 anywhere: the
//! transaction either committed (watermark, mirror, accruals, entries
//! together) or did not, and the next cycle starts from the same place.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kopek_config::Posting;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::CoreError;
use crate::ledger::{self, FEE_SERVICE};
use crate::money::Money;
use crate::ops::Policy;
use crate::rating::{self, Period};
use crate::store::{
    Billing, META_LAST_CYCLE, META_POSTED_DAY, META_SHAPING_SEQ, META_TIER2_ID, META_TIER2_SEQ,
    NewEntry, account_book, meta_i64, meta_text, post, set_meta, set_meta_text,
};
use crate::tariff::Tariff;

/// At most this many tier-2 rows are rated in one cycle (catching up on a
/// long history takes several cycles, each bounded in memory and time).
pub const MAX_ROWS_PER_CYCLE: usize = 500_000;

/// Prefix of the service name of traffic no rule prices (kept for
/// reports, charged nothing).
pub const FREE_PREFIX: &str = "free:";

/// Access state of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Access {
    Allowed,
    NoMoney,
    Frozen,
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Allowed => "allowed",
            Access::NoMoney => "blocked:no-money",
            Access::Frozen => "blocked:frozen",
            Access::Admin => "blocked:admin",
        }
    }
}

/// What a cycle did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    pub now_ms: i64,
    pub tier2_seq_from: i64,
    pub tier2_seq_to: i64,
    /// Tier 2 had another identity than in the last cycle (rebuilt,
    /// restored, replaced): this cycle read it from its first commit on,
    /// comparing every row with the mirror.
    pub tier2_replaced: bool,
    pub rows: u64,
    pub rows_unrated: u64,
    pub accruals_touched: u64,
    pub fee_days: u64,
    pub entries_posted: u64,
    pub transitions: Vec<Transition>,
    /// Accounts whose speed caps changed (a tariff with other caps began).
    pub shaping_changed: u64,
    pub elapsed_ms: u64,
    /// Where the time went: reading and diffing tier 2, rating, charges,
    /// fees and postings, decisions, commit (ms).
    pub phases_ms: [u64; 6],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub account: String,
    pub from: String,
    pub to: String,
    pub detail: String,
}

/// Key of an accrual row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AccrualKey {
    account_id: i64,
    period_start_ms: i64,
    version_id: i64,
    service: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    in_bytes: i64,
    out_bytes: i64,
}

/// A billed tier-2 row whose total changed since the core last saw it.
#[derive(Debug, Clone)]
struct Change {
    account: String,
    bucket_ms: i64,
    class: String,
    direction: String,
    delta: i64,
}

/// (account, reason, class, direction) of usage the core cannot price.
type UnratedKey = (String, &'static str, String, String);

/// An accrual whose charge differs from what is posted.
struct Unposted {
    account_id: i64,
    period_start_ms: i64,
    version_id: i64,
    service: String,
    class: String,
    in_bytes: i64,
    out_bytes: i64,
    days: i64,
    charged: i64,
    posted: i64,
    payer: i64,
}

/// Tariff assignment interval of an account.
#[derive(Debug, Clone, Copy)]
struct Assignment {
    tariff_id: i64,
    from_ms: i64,
    to_ms: i64,
}

/// What rating needs of the billing model, cached between cycles and
/// reloaded whenever an operator command changed it (`meta.model_gen`).
#[derive(Debug, Default)]
struct Model {
    generation: Option<i64>,
    accounts: HashMap<String, i64>,
    created_ms: HashMap<i64, i64>,
    assignments: HashMap<i64, Vec<Assignment>>,
    /// Per tariff: (effective_ms, version id), by effective time.
    versions: HashMap<i64, Vec<(i64, i64)>>,
}

impl Model {
    fn load(conn: &Connection, generation: i64) -> Result<Model, CoreError> {
        let e = CoreError::from_sql;
        let mut m = Model {
            generation: Some(generation),
            ..Model::default()
        };
        let mut st = conn
            .prepare("SELECT id, number, created_ms FROM accounts")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let id: i64 = r.get(0).map_err(e)?;
            m.accounts.insert(r.get(1).map_err(e)?, id);
            m.created_ms.insert(id, r.get(2).map_err(e)?);
        }
        let mut st = conn
            .prepare("SELECT account_id, tariff_id, from_ms, to_ms FROM account_tariffs ORDER BY account_id, from_ms")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            m.assignments
                .entry(r.get(0).map_err(e)?)
                .or_default()
                .push(Assignment {
                    tariff_id: r.get(1).map_err(e)?,
                    from_ms: r.get(2).map_err(e)?,
                    to_ms: r.get::<_, Option<i64>>(3).map_err(e)?.unwrap_or(i64::MAX),
                });
        }
        let mut st = conn
            .prepare("SELECT tariff_id, effective_ms, id FROM tariff_versions ORDER BY tariff_id, effective_ms")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            m.versions
                .entry(r.get(0).map_err(e)?)
                .or_default()
                .push((r.get(1).map_err(e)?, r.get(2).map_err(e)?));
        }
        Ok(m)
    }

    /// The tariff version an account has at `t_ms`, if any.
    fn version_at(&self, account_id: i64, t_ms: i64) -> Option<i64> {
        let a = self
            .assignments
            .get(&account_id)?
            .iter()
            .find(|a| a.from_ms <= t_ms && t_ms < a.to_ms)?;
        let v = self.versions.get(&a.tariff_id)?;
        let ix = v.partition_point(|(eff, _)| *eff <= t_ms);
        ix.checked_sub(1).map(|i| v[i].1)
    }
}

/// The `meta` key operator commands bump when accounts, tariffs or tariff
/// assignments change.
pub const META_MODEL_GEN: &str = "model_gen";

/// The rating state kept between cycles: caches of the billing model and
/// of parsed tariff versions, and whether tier 2 is attached.
pub struct Rater {
    state_dir: PathBuf,
    attached: bool,
    model: Model,
    /// Parsed tariff versions (immutable once stored).
    versions: HashMap<i64, Arc<Tariff>>,
    /// Cumulative (in, out) of the accruals rated lately: one write per
    /// accrual and cycle instead of a read and a write. Dropped whenever a
    /// cycle fails (its transaction rolled back) and when it grows past
    /// [`MAX_CACHED_VOLUMES`].
    volumes: HashMap<AccrualKey, (i64, i64)>,
    pub posting: Posting,
}

/// Bound of the rater's accrual cache (about 100 bytes each).
pub const MAX_CACHED_VOLUMES: usize = 2_000_000;

impl std::fmt::Debug for Rater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rater")
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

impl Rater {
    pub fn new(state_dir: &Path, posting: Posting) -> Rater {
        Rater {
            state_dir: state_dir.to_path_buf(),
            attached: false,
            model: Model::default(),
            versions: HashMap::new(),
            volumes: HashMap::new(),
            posting,
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Attaches tier 2 (read-only) to the core's connection once it
    /// exists: the changed rows are then diffed against the mirror inside
    /// SQLite, in the cycle's own transaction and snapshot.
    fn attach(&mut self, conn: &Connection) -> Result<bool, CoreError> {
        if !self.attached {
            let path = self.state_dir.join(kopek_classifier::store::TIER2_FILE);
            if !path.exists() {
                return Ok(false);
            }
            let uri = kopek_classifier::store::read_only_uri(&path);
            conn.execute("ATTACH DATABASE ?1 AS t2", params![uri])
                .map_err(crate::store::sql(&path))?;
            self.attached = true;
        }
        Ok(true)
    }

    fn refresh_model(&mut self, conn: &Connection) -> Result<(), CoreError> {
        let generation = meta_i64(conn, META_MODEL_GEN)
            .map_err(CoreError::from_sql)?
            .unwrap_or(0);
        if self.model.generation != Some(generation) {
            self.model = Model::load(conn, generation)?;
        }
        Ok(())
    }

    fn tariff(&mut self, conn: &Connection, version_id: i64) -> Result<Arc<Tariff>, CoreError> {
        if let Some(t) = self.versions.get(&version_id) {
            return Ok(t.clone());
        }
        let content: String = conn
            .query_row(
                "SELECT content FROM tariff_versions WHERE id = ?1",
                params![version_id],
                |r| r.get(0),
            )
            .map_err(CoreError::from_sql)?;
        let t = Tariff::from_toml(&content).map_err(|e| {
            CoreError::Invalid(format!(
                "stored tariff version {version_id} no longer parses: {e}"
            ))
        })?;
        let t = Arc::new(t);
        self.versions.insert(version_id, t.clone());
        Ok(t)
    }
}

/// The tier-2 rows changed after `watermark` (at most
/// [`MAX_ROWS_PER_CYCLE`], whole commits), diffed against the mirror, the
/// mirror updated; returns the non-zero changes, the new watermark and how
/// many rows were read.
fn changes(tx: &Transaction<'_>, watermark: i64) -> Result<(Vec<Change>, i64, u64), CoreError> {
    let e = CoreError::from_sql;
    let top: i64 = tx
        .query_row(
            "SELECT value FROM t2.meta WHERE key = ?1",
            params![kopek_classifier::store::COMMIT_SEQ_KEY],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(e)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if top <= watermark {
        return Ok((Vec::new(), watermark, 0));
    }
    let cut: Option<i64> = tx
        .query_row(
            "SELECT seq FROM t2.traffic WHERE seq > ?1 ORDER BY seq LIMIT 1 OFFSET ?2",
            params![watermark, MAX_ROWS_PER_CYCLE as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(e)?;
    let hi = match cut {
        None => top,
        Some(s) if s - 1 > watermark => s - 1,
        // One commit larger than the cap: all of it.
        Some(s) => s,
    };
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS changed (
             account TEXT, bucket_ms INTEGER, class TEXT, direction TEXT, point TEXT, bytes INTEGER, delta INTEGER);
         DELETE FROM temp.changed;",
    )
    .map_err(e)?;
    let n = tx
        .prepare_cached(
            "INSERT INTO temp.changed
             SELECT t.account, t.bucket_ms, t.class, t.direction, t.point, t.bytes, t.bytes - coalesce(m.bytes, 0)
             FROM t2.traffic t LEFT JOIN main.usage_mirror m
               ON m.account = t.account AND m.bucket_ms = t.bucket_ms AND m.class = t.class
              AND m.direction = t.direction AND m.point = t.point
             WHERE t.billed = 1 AND t.seq > ?1 AND t.seq <= ?2",
        )
        .and_then(|mut st| st.execute(params![watermark, hi]))
        .map_err(e)?;
    tx.prepare_cached(
        "INSERT INTO main.usage_mirror (account, bucket_ms, class, direction, point, bytes)
         SELECT account, bucket_ms, class, direction, point, bytes FROM temp.changed WHERE delta <> 0
         ON CONFLICT (account, bucket_ms, class, direction, point) DO UPDATE SET bytes = excluded.bytes",
    )
    .and_then(|mut st| st.execute([]))
    .map_err(e)?;
    let mut st = tx
        .prepare_cached(
            "SELECT account, bucket_ms, class, direction, delta FROM temp.changed WHERE delta <> 0",
        )
        .map_err(e)?;
    let v = st
        .query_map([], |r| {
            Ok(Change {
                account: r.get(0)?,
                bucket_ms: r.get(1)?,
                class: r.get(2)?,
                direction: r.get(3)?,
                delta: r.get(4)?,
            })
        })
        .map_err(e)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    Ok((v, hi, n as u64))
}

/// Whether the attached tier 2 is the one the watermark counts in: `None`
/// when either side has no identity yet (a tier 2 or a core of an older
/// version: kept as before). Records tier 2's identity in `meta`.
fn same_tier2(tx: &Transaction<'_>) -> Result<Option<bool>, CoreError> {
    let e = CoreError::from_sql;
    let id: Option<String> = tx
        .query_row(
            "SELECT value FROM t2.meta WHERE key = ?1",
            params![kopek_classifier::store::TIER2_ID_KEY],
            |r| r.get(0),
        )
        .optional()
        .map_err(e)?;
    let Some(id) = id else {
        return Ok(None);
    };
    let seen = meta_text(tx, META_TIER2_ID).map_err(e)?;
    if seen.as_deref() != Some(id.as_str()) {
        set_meta_text(tx, META_TIER2_ID, &id).map_err(e)?;
    }
    Ok(seen.map(|s| s == id))
}

/// Local date label (`2026-10-05`) of the day containing `ms`.
pub fn day_label(tz: chrono_tz::Tz, ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

impl Billing {
    /// Runs one rating cycle at `now_ms`: all of it commits, or none.
    pub fn cycle(&mut self, rater: &mut Rater, now_ms: i64) -> Result<CycleReport, CoreError> {
        if rater.volumes.len() > MAX_CACHED_VOLUMES {
            rater.volumes.clear();
        }
        let r = self.cycle_in(rater, now_ms);
        if r.is_err() {
            // The transaction rolled back: what the caches learned in it
            // is not in the database.
            rater.volumes.clear();
            rater.model = Model::default();
        }
        r
    }

    fn cycle_in(&mut self, rater: &mut Rater, now_ms: i64) -> Result<CycleReport, CoreError> {
        let started = Instant::now();
        let tz = self.timezone;
        let mut watermark = self.meta_i64(META_TIER2_SEQ)?.unwrap_or(-1);
        if let Some(last) = self.meta_i64(META_LAST_CYCLE)?
            && now_ms < last
        {
            return Err(CoreError::Invalid(format!(
                "clock went back: last cycle ran at {}, now is {}; refusing to rate backwards",
                crate::fmt_ms(last, tz),
                crate::fmt_ms(now_ms, tz)
            )));
        }
        let attached = rater.attach(&self.conn)?;
        let posting = rater.posting;
        let tx = self.write()?;
        rater.refresh_model(&tx)?;
        let replaced = attached && same_tier2(&tx)?.is_some_and(|same| !same);
        if replaced {
            tracing::warn!(
                "tier 2 has another identity than in the last cycle (rebuilt, restored or replaced): \
                 comparing all of it with the usage already rated (watermark {watermark} dropped)"
            );
            watermark = -1;
        }
        let (rows, new_watermark, read) = if attached {
            changes(&tx, watermark)?
        } else {
            (Vec::new(), watermark, 0)
        };
        let mut report = CycleReport {
            now_ms,
            tier2_seq_from: watermark,
            tier2_seq_to: new_watermark,
            tier2_replaced: replaced,
            rows: read,
            ..Default::default()
        };
        let mut mark = Instant::now();
        let mut lap = |report: &mut CycleReport, i: usize| {
            report.phases_ms[i] = mark.elapsed().as_millis() as u64;
            mark = Instant::now();
        };
        report.phases_ms[0] = started.elapsed().as_millis() as u64;
        let touched = rate_rows(&tx, rater, tz, &rows, &mut report)?;
        lap(&mut report, 1);
        recharge(&tx, rater, &touched, &mut report)?;
        lap(&mut report, 2);
        let today = rating::local_day(tz, now_ms).0;
        match posting {
            Posting::Day => {
                let posted_day = meta_i64(&tx, META_POSTED_DAY).map_err(CoreError::from_sql)?;
                match posted_day {
                    Some(d) if d < today => {
                        // The day(s) before today are over: count their fees
                        // (a core that was down catches up), post them.
                        fees(&tx, rater, tz, now_ms, today - 1, &mut report)?;
                        report.entries_posted +=
                            post_accruals(&tx, tz, now_ms, today - 1, new_watermark)?;
                        set_meta(&tx, META_POSTED_DAY, today).map_err(CoreError::from_sql)?;
                    }
                    Some(_) => {}
                    None => set_meta(&tx, META_POSTED_DAY, today).map_err(CoreError::from_sql)?,
                }
                fees(&tx, rater, tz, now_ms, today, &mut report)?;
            }
            Posting::Cycle => {
                fees(&tx, rater, tz, now_ms, today, &mut report)?;
                report.entries_posted += post_accruals(&tx, tz, now_ms, now_ms, new_watermark)?;
            }
        }
        lap(&mut report, 3);
        decide(&tx, tz, now_ms, &mut report)?;
        report.shaping_changed = shape(&tx, rater, now_ms)?;
        lap(&mut report, 4);
        set_meta(&tx, META_TIER2_SEQ, new_watermark).map_err(CoreError::from_sql)?;
        set_meta(&tx, META_LAST_CYCLE, now_ms).map_err(CoreError::from_sql)?;
        tx.commit().map_err(CoreError::from_sql)?;
        lap(&mut report, 5);
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

/// Brings `shaping` in line with every account's tariff at `now_ms`;
/// bumps `meta.shaping_seq` when anything changed. Returns the number of
/// accounts whose caps changed.
fn shape(tx: &Transaction<'_>, rater: &mut Rater, now_ms: i64) -> Result<u64, CoreError> {
    type Caps = (Option<u32>, Option<u32>);
    let e = CoreError::from_sql;
    let current: HashMap<i64, Caps> = tx
        .prepare_cached("SELECT account_id, down_kbit, up_kbit FROM shaping")
        .map_err(e)?
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let versions: Vec<(i64, Option<i64>)> = rater
        .model
        .created_ms
        .keys()
        .map(|&id| (id, rater.model.version_at(id, now_ms)))
        .collect();
    let mut want: HashMap<i64, Caps> = HashMap::new();
    for (id, v) in versions {
        if let Some(v) = v
            && let Some(r) = rater.tariff(tx, v)?.rate_limit
        {
            want.insert(id, (r.down_kbit, r.up_kbit));
        }
    }
    let mut changed = 0;
    let mut del = tx
        .prepare_cached("DELETE FROM shaping WHERE account_id = ?1")
        .map_err(e)?;
    for id in current.keys().filter(|id| !want.contains_key(id)) {
        del.execute(params![id]).map_err(e)?;
        changed += 1;
    }
    let mut up = tx
        .prepare_cached(
            "INSERT INTO shaping (account_id, down_kbit, up_kbit, since_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id) DO UPDATE SET down_kbit = excluded.down_kbit,
                 up_kbit = excluded.up_kbit, since_ms = excluded.since_ms",
        )
        .map_err(e)?;
    for (id, caps) in &want {
        if current.get(id) != Some(caps) {
            up.execute(params![id, caps.0, caps.1, now_ms]).map_err(e)?;
            changed += 1;
        }
    }
    if changed > 0 {
        let seq = meta_i64(tx, META_SHAPING_SEQ).map_err(e)?.unwrap_or(0);
        set_meta(tx, META_SHAPING_SEQ, seq + 1).map_err(e)?;
    }
    Ok(changed)
}

/// Adds the changes' deltas to accrual keys (account, period, tariff
/// version, service); what cannot be priced goes to `unrated`. Returns the
/// accrual keys whose volumes changed.
fn rate_rows(
    tx: &Transaction<'_>,
    rater: &mut Rater,
    tz: chrono_tz::Tz,
    rows: &[Change],
    report: &mut CycleReport,
) -> Result<BTreeMap<AccrualKey, (String, Delta)>, CoreError> {
    let e = CoreError::from_sql;
    let mut touched: BTreeMap<AccrualKey, (String, Delta)> = BTreeMap::new();
    let mut unrated: HashMap<UnratedKey, (i64, i64, i64)> = HashMap::new();
    let mut periods: Vec<Period> = Vec::new();
    for r in rows {
        let d = if r.direction == "in" {
            Delta {
                in_bytes: r.delta,
                out_bytes: 0,
            }
        } else {
            Delta {
                in_bytes: 0,
                out_bytes: r.delta,
            }
        };
        let version = match rater.model.accounts.get(&r.account) {
            None => Err("unknown-account"),
            Some(&id) => rater
                .model
                .version_at(id, r.bucket_ms)
                .map(|v| (id, v))
                .ok_or("no-tariff"),
        };
        let (id, version_id) = match version {
            Ok(x) => x,
            Err(reason) => {
                report.rows_unrated += 1;
                let u = unrated
                    .entry((
                        r.account.clone(),
                        reason,
                        r.class.clone(),
                        r.direction.clone(),
                    ))
                    .or_insert((0, i64::MAX, i64::MIN));
                u.0 += r.delta;
                u.1 = u.1.min(r.bucket_ms);
                u.2 = u.2.max(r.bucket_ms);
                continue;
            }
        };
        let tariff = rater.tariff(tx, version_id)?;
        let (weekday, minute) = rating::local_slot(tz, r.bucket_ms);
        let service = match tariff.rule_for(&r.class, weekday, minute) {
            Some(ix) => tariff.rules[ix].name.clone(),
            None => format!("{FREE_PREFIX}{}", r.class),
        };
        let period_start_ms = match periods
            .iter()
            .find(|p| p.start_ms <= r.bucket_ms && r.bucket_ms < p.end_ms)
        {
            Some(p) => p.start_ms,
            None => {
                let p = rating::period_of(tz, r.bucket_ms);
                let s = p.start_ms;
                periods.push(p);
                s
            }
        };
        let t = touched
            .entry(AccrualKey {
                account_id: id,
                period_start_ms,
                version_id,
                service,
            })
            .or_insert_with(|| (r.class.clone(), Delta::default()));
        t.1.in_bytes += d.in_bytes;
        t.1.out_bytes += d.out_bytes;
    }
    let mut st = tx
        .prepare_cached(
            "INSERT INTO unrated (account, reason, class, direction, bytes, first_ms, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (account, reason, class, direction) DO UPDATE SET
               bytes = unrated.bytes + excluded.bytes,
               first_ms = min(unrated.first_ms, excluded.first_ms),
               last_ms = max(unrated.last_ms, excluded.last_ms)",
        )
        .map_err(e)?;
    for ((account, reason, class, dir), (bytes, first, last)) in &unrated {
        st.execute(params![account, reason, class, dir, bytes, first, last])
            .map_err(e)?;
    }
    Ok(touched)
}

/// Adds volume deltas to accruals and recomputes their cumulative charge:
/// one upsert per accrual, with the totals known from the rater's cache
/// (read from the table on a miss).
fn recharge(
    tx: &Transaction<'_>,
    rater: &mut Rater,
    touched: &BTreeMap<AccrualKey, (String, Delta)>,
    report: &mut CycleReport,
) -> Result<(), CoreError> {
    let e = CoreError::from_sql;
    let mut get = tx
        .prepare_cached(
            "SELECT in_bytes, out_bytes FROM accruals WHERE account_id = ?1 AND period_start_ms = ?2
             AND version_id = ?3 AND service = ?4",
        )
        .map_err(e)?;
    let mut put = tx
        .prepare_cached(
            "INSERT INTO accruals (account_id, period_start_ms, version_id, service, class, in_bytes, out_bytes, days, charged, posted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, 0)
             ON CONFLICT (account_id, period_start_ms, version_id, service) DO UPDATE SET
               in_bytes = excluded.in_bytes, out_bytes = excluded.out_bytes, charged = excluded.charged",
        )
        .map_err(e)?;
    for (k, (class, d)) in touched {
        let (in_b, out_b) = match rater.volumes.get(k) {
            Some(v) => *v,
            None => get
                .query_row(
                    params![k.account_id, k.period_start_ms, k.version_id, k.service],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(e)?
                .unwrap_or((0, 0)),
        };
        let (in_b, out_b) = (in_b + d.in_bytes, out_b + d.out_bytes);
        report.accruals_touched += 1;
        let mut charged = Money::ZERO;
        if !k.service.starts_with(FREE_PREFIX) {
            let tariff = rater.tariff(tx, k.version_id)?;
            if let Some(ix) = tariff.rule_by_name(&k.service) {
                charged = rating::rule_charge(
                    &tariff.rules[ix],
                    tariff.unit,
                    in_b.max(0) as u64,
                    out_b.max(0) as u64,
                );
            }
        }
        put.execute(params![
            k.account_id,
            k.period_start_ms,
            k.version_id,
            k.service,
            class,
            in_b,
            out_b,
            charged.0
        ])
        .map_err(e)?;
        rater.volumes.insert(k.clone(), (in_b, out_b));
    }
    Ok(())
}

/// Counts the periodic fee for every local day that began since the last
/// count, up to the day containing `through_ms`, for each account with a
/// tariff and not frozen at the day's start.
fn fees(
    tx: &Transaction<'_>,
    rater: &mut Rater,
    tz: chrono_tz::Tz,
    now_ms: i64,
    through_ms: i64,
    report: &mut CycleReport,
) -> Result<(), CoreError> {
    let e = CoreError::from_sql;
    let (today, _, _) = rating::local_day(tz, through_ms);
    let due: Vec<(i64, Option<i64>, i64)> = tx
        .prepare_cached(
            "SELECT a.id, a.fee_day_ms, a.created_ms FROM accounts a
             WHERE (a.fee_day_ms IS NULL OR a.fee_day_ms < ?1)
               AND EXISTS (SELECT 1 FROM account_tariffs t WHERE t.account_id = a.id AND t.from_ms < ?2)",
        )
        .map_err(e)?
        .query_map(params![today, now_ms + 1], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let mut add = tx
        .prepare_cached(
            "INSERT INTO accruals (account_id, period_start_ms, version_id, service, class, in_bytes, out_bytes, days, charged, posted)
             VALUES (?1, ?2, ?3, ?4, '', 0, 0, 1, 0, 0)
             ON CONFLICT (account_id, period_start_ms, version_id, service) DO UPDATE SET
               days = accruals.days + 1
             RETURNING days",
        )
        .map_err(e)?;
    let mut set = tx
        .prepare_cached(
            "UPDATE accruals SET charged = ?5 WHERE account_id = ?1 AND period_start_ms = ?2
             AND version_id = ?3 AND service = ?4",
        )
        .map_err(e)?;
    let mut frozen_st = tx
        .prepare_cached(
            "SELECT 1 FROM freezes WHERE account_id = ?1 AND from_ms <= ?2 AND ?2 < to_ms",
        )
        .map_err(e)?;
    let mut done_st = tx
        .prepare_cached("UPDATE accounts SET fee_day_ms = ?1 WHERE id = ?2")
        .map_err(e)?;
    for (id, fee_day, created_ms) in due {
        let assigned = rater
            .model
            .assignments
            .get(&id)
            .cloned()
            .unwrap_or_default();
        let Some(first) = assigned.first() else {
            continue;
        };
        // The first day to consider: the one after the last considered, or
        // the day the first tariff started — not before the account
        // existed (a tariff dated back does not charge the years before).
        let mut day = match fee_day {
            Some(d) => rating::local_day(tz, d).1,
            None => rating::local_day(tz, first.from_ms.max(created_ms)).0,
        };
        while day <= today {
            let (ds, de, _) = rating::local_day(tz, day);
            // The tariff at the day's start, or the one starting during it.
            let at = assigned
                .iter()
                .find(|a| a.from_ms <= ds && ds < a.to_ms)
                .map(|_| ds)
                .or_else(|| {
                    assigned
                        .iter()
                        .find(|a| ds < a.from_ms && a.from_ms < de)
                        .map(|a| a.from_ms)
                });
            let frozen = frozen_st.exists(params![id, ds]).map_err(e)?;
            if let (Some(at), false) = (at, frozen)
                && let Some(vid) = rater.model.version_at(id, at)
            {
                let tariff = rater.tariff(tx, vid)?;
                if tariff.monthly_fee.0 > 0 {
                    let p = rating::period_of(tz, ds);
                    let days: i64 = add
                        .query_row(params![id, p.start_ms, vid, FEE_SERVICE], |r| r.get(0))
                        .map_err(e)?;
                    let charged = rating::fee_cumulative(tariff.monthly_fee, days as u32, p.days);
                    set.execute(params![id, p.start_ms, vid, FEE_SERVICE, charged.0])
                        .map_err(e)?;
                    report.fee_days += 1;
                }
            }
            day = de;
        }
        done_st.execute(params![today, id]).map_err(e)?;
    }
    Ok(())
}

/// Turns every accrual that charged more (or less) than was posted into a
/// ledger entry. `day_ms` names the day the entries are for.
fn post_accruals(
    tx: &Transaction<'_>,
    tz: chrono_tz::Tz,
    now_ms: i64,
    day_ms: i64,
    watermark: i64,
) -> Result<u64, CoreError> {
    let e = CoreError::from_sql;
    let rows: Vec<Unposted> = tx
        .prepare_cached(
            "SELECT a.account_id, a.period_start_ms, a.version_id, a.service, a.class, a.in_bytes, a.out_bytes,
                    a.days, a.charged, a.posted, coalesce(c.payer_id, c.id)
             FROM accruals a JOIN accounts c ON c.id = a.account_id
             WHERE a.charged <> a.posted
             ORDER BY a.account_id, a.period_start_ms, a.service",
        )
        .map_err(e)?
        .query_map([], |r| {
            Ok(Unposted {
                account_id: r.get(0)?,
                period_start_ms: r.get(1)?,
                version_id: r.get(2)?,
                service: r.get(3)?,
                class: r.get(4)?,
                in_bytes: r.get(5)?,
                out_bytes: r.get(6)?,
                days: r.get(7)?,
                charged: r.get(8)?,
                posted: r.get(9)?,
                payer: r.get(10)?,
            })
        })
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let day = day_label(tz, day_ms);
    let mut entries = Vec::with_capacity(rows.len());
    let mut done = tx
        .prepare_cached(
            "UPDATE accruals SET posted = charged WHERE account_id = ?1 AND period_start_ms = ?2
             AND version_id = ?3 AND service = ?4",
        )
        .map_err(e)?;
    for u in rows {
        let Unposted {
            account_id: id,
            period_start_ms: pstart,
            version_id: vid,
            service,
            class,
            in_bytes: in_b,
            out_bytes: out_b,
            days,
            charged,
            posted,
            payer,
        } = u;
        let diff = charged - posted;
        let (kind, revenue) = if service == FEE_SERVICE {
            (ledger::FEE, ledger::BOOK_FEE.to_string())
        } else {
            (ledger::CHARGE, ledger::traffic_book(&class))
        };
        let (kind, debit, credit) = if diff > 0 {
            (kind, account_book(payer), revenue)
        } else {
            (ledger::ADJUSTMENT, revenue, account_book(payer))
        };
        let period = rating::period_of(tz, pstart).label;
        let details = serde_json::json!({
            "in_bytes": in_b, "out_bytes": out_b, "days": days,
            "charged_before": posted, "charged_after": charged,
            "tier2_seq": watermark, "period_start_ms": pstart,
        });
        entries.push(NewEntry {
            ts_ms: now_ms,
            kind,
            account_id: Some(id),
            debit,
            credit,
            amount: Money(diff.abs()),
            ext_id: None,
            who: "core".into(),
            why: "rating".into(),
            service: Some(service.clone()),
            day: Some(day.clone()),
            period: Some(period),
            version_id: Some(vid),
            details: Some(details.to_string()),
        });
        done.execute(params![id, pstart, vid, service]).map_err(e)?;
    }
    post(tx, now_ms, &entries).map_err(e)?;
    Ok(entries.len() as u64)
}

/// The inputs of one account's access decision.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub balance: Money,
    pub accrued: Money,
    pub promised: Money,
    pub policy: Policy,
    pub credit_limit: Money,
    pub frozen: bool,
    pub admin: bool,
}

impl Standing {
    /// What the account may still spend: balance − accrued + promised
    /// payments + (credit limit, for the credit policy).
    pub fn available(&self) -> Money {
        let limit = match self.policy {
            Policy::Credit => self.credit_limit.0,
            Policy::BlockAtZero => 0,
        };
        Money(self.balance.0 - self.accrued.0 + self.promised.0 + limit)
    }

    pub fn decide(&self) -> Access {
        if self.admin {
            Access::Admin
        } else if self.frozen {
            Access::Frozen
        } else if self.available().0 < 0 {
            Access::NoMoney
        } else {
            Access::Allowed
        }
    }
}

/// Every account's standing at `now_ms` (balances, accruals and promises
/// of its payer).
/// `only`: just that account (its payer's sums still apply).
pub fn standings(
    conn: &Connection,
    now_ms: i64,
    only: Option<i64>,
) -> Result<Vec<(i64, String, Standing)>, CoreError> {
    let e = CoreError::from_sql;
    let accrued: HashMap<i64, i64> = conn
        .prepare_cached(
            "SELECT coalesce(c.payer_id, c.id), sum(a.charged - a.posted)
             FROM accruals a JOIN accounts c ON c.id = a.account_id
             WHERE a.charged <> a.posted GROUP BY coalesce(c.payer_id, c.id)",
        )
        .map_err(e)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let promised: HashMap<i64, i64> = conn
        .prepare_cached(
            "SELECT coalesce(c.payer_id, c.id), sum(p.amount) FROM promises p JOIN accounts c ON c.id = p.account_id
             WHERE p.from_ms <= ?1 AND ?1 < p.until_ms GROUP BY coalesce(c.payer_id, c.id)",
        )
        .map_err(e)?
        .query_map(params![now_ms], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let mut st = conn
        .prepare_cached(
            "SELECT c.id, c.number, coalesce(c.payer_id, c.id), coalesce(b.balance, 0), p.policy, p.credit_limit,
                    c.admin_block IS NOT NULL,
                    EXISTS (SELECT 1 FROM freezes f WHERE f.account_id = c.id AND f.from_ms <= ?1 AND ?1 < f.to_ms)
             FROM accounts c
             JOIN accounts p ON p.id = coalesce(c.payer_id, c.id)
             LEFT JOIN books b ON b.book = 'acct:' || p.id
             WHERE ?2 IS NULL OR c.id = ?2
             ORDER BY c.id",
        )
        .map_err(e)?;
    let v = st
        .query_map(params![now_ms, only], |r| {
            let payer: i64 = r.get(2)?;
            let policy: String = r.get(4)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                Standing {
                    balance: Money(r.get(3)?),
                    accrued: Money(accrued.get(&payer).copied().unwrap_or(0)),
                    promised: Money(promised.get(&payer).copied().unwrap_or(0)),
                    policy: if policy == "credit" {
                        Policy::Credit
                    } else {
                        Policy::BlockAtZero
                    },
                    credit_limit: Money(r.get(5)?),
                    admin: r.get(6)?,
                    frozen: r.get(7)?,
                },
            ))
        })
        .map_err(e)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    Ok(v)
}

/// Decides every account's access and records the transitions.
fn decide(
    tx: &Transaction<'_>,
    _tz: chrono_tz::Tz,
    now_ms: i64,
    report: &mut CycleReport,
) -> Result<(), CoreError> {
    let e = CoreError::from_sql;
    let current: HashMap<i64, String> = tx
        .prepare_cached("SELECT account_id, state FROM access")
        .map_err(e)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let mut next_seq: i64 = tx
        .query_row("SELECT coalesce(max(seq), 0) FROM access_events", [], |r| {
            r.get(0)
        })
        .map_err(e)?;
    let mut ev = tx
        .prepare_cached(
            "INSERT INTO access_events (seq, ts_ms, account_id, state, previous, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(e)?;
    let mut up = tx
        .prepare_cached(
            "INSERT INTO access (account_id, state, since_ms, seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id) DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms, seq = excluded.seq",
        )
        .map_err(e)?;
    for (id, number, s) in standings(tx, now_ms, None)? {
        let state = s.decide().as_str();
        let prev = current.get(&id).map(String::as_str).unwrap_or("new");
        if prev == state {
            continue;
        }
        next_seq += 1;
        let detail = format!(
            "available {} = balance {} - accrued {} + promised {} + limit {} ({})",
            s.available(),
            s.balance,
            s.accrued,
            s.promised,
            if s.policy == Policy::Credit {
                s.credit_limit
            } else {
                Money::ZERO
            },
            s.policy.as_str()
        );
        ev.execute(params![next_seq, now_ms, id, state, prev, detail])
            .map_err(e)?;
        up.execute(params![id, state, now_ms, next_seq])
            .map_err(e)?;
        report.transitions.push(Transition {
            account: number,
            from: prev.to_string(),
            to: state.to_string(),
            detail,
        });
    }
    Ok(())
}
