//! Tier 2 storage: every SQL statement of the classifier's database lives
//! here, behind [`Tier2`], so a PostgreSQL backend can be added without
//! touching classification or the CLI. The SQL is portable (`INSERT ... ON
//! CONFLICT ... DO UPDATE`, no SQLite-only functions); SQLite specifics are
//! confined to [`SqliteTier2::open`] (pragmas).
//!
//! The classifier is the only writer (its engine's connection, and the
//! commit thread's for batches: [`Tier2::write_rows`]). Every write
//! transaction is `BEGIN IMMEDIATE`; the aggregates of a batch and how far tier 1 was read
//! commit together, which is what makes counting exactly-once. The schema is
//! documented in docs/tier2-schema.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use chrono_tz::Tz;

use crate::aggregate::{Batch, Counts, FastMap, HOUR_MS, Progress, SUM_MAX, TrafficKey};
use crate::bindings::BindingIndex;
use crate::days::{day_start, hour_in_one_day, next_day_start};
use crate::points::PointMatcher;
use crate::split::bucket_of;
use crate::versions::ClassVersions;

/// The tier-2 database file inside the state dir.
pub const TIER2_FILE: &str = "tier2.sqlite";
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache of a writer's connection, KiB (SQLite's default is 2 MB).
/// A commit adds a bucket's rows for every active account: each lands at
/// that account's end of `traffic_by_account`, one leaf page per account,
/// so the leaves being written are ~4 KB × accounts (40 MB at 10,000).
const CACHE_KIB: i64 = 256 * 1024;
pub const SCHEMA_VERSION: i64 = 2;
/// `meta` key of the number of the last commit that changed `traffic`:
/// every row a commit adds to or changes carries it in `seq`, so a reader
/// (the core) finds what changed since it last looked.
pub const COMMIT_SEQ_KEY: &str = "traffic_seq";
/// `meta` key of this tier 2's identity: 32 random hex digits drawn when
/// the file is created (or first opened by a classifier that knows the
/// key). Commit numbers count within one file only; a reader that finds
/// another identity than last time (tier 2 rebuilt from tier 1, restored
/// from a backup, replaced by hand) must not trust its old position in
/// `seq` (the core then compares every row with what it saw).
pub const TIER2_ID_KEY: &str = "tier2_id";
/// `meta` key: every record of every tier-1 segment retention has removed
/// ended before this time (ms). Tier 2 before it cannot be computed again
/// from tier 1; a rebuild keeps those rows as they are.
pub const RAW_REMOVED_KEY: &str = "raw_removed_through_ms";
/// `meta` key: the time zone (IANA name) whose local days
/// `traffic_daily` sums; reports by day in another zone do not use it.
pub const DAILY_TZ_KEY: &str = "daily_tz";
/// `meta` key: `traffic_daily` is complete for the days from this one on
/// (a day start, ms); older days are still being summed from the hourly
/// rollup, a day at a time in the background. Absent: complete.
pub const DAILY_FROM_KEY: &str = "daily_from_ms";
/// Remote-host key of the row that sums an account's hosts beyond the top N.
pub const OTHER_HOSTS: &str = "";

#[derive(Debug, thiserror::Error)]
#[error("{file}: {source}")]
pub struct StoreError {
    pub file: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

impl StoreError {
    /// SQLite found `file` damaged, or not a database at all.
    pub fn is_damage(&self) -> bool {
        is_damage(&self.source)
    }
}

/// Whether SQLite says a database file is damaged (or not one).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// How names of batch keys are resolved when writing.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub accounts: &'a BindingIndex,
    pub classes: &'a ClassVersions,
    pub points: &'a PointMatcher,
    /// The ISP's zone: where `traffic_daily` cuts days.
    pub tz: Tz,
    /// Days before this one are not written to `traffic_daily` (still to
    /// be summed from the hourly rollup: [`SqliteTier2::daily_fill_step`]).
    pub daily_from: i64,
}

/// Billed bytes of one account, class and direction before and after a
/// rebuild (account `""`: unattributed traffic).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BilledChange {
    pub account: String,
    pub class: String,
    pub direction: String,
    pub before: i64,
    pub after: i64,
}

/// An SQLite URI opening `path` read-only (characters with a meaning in a
/// URI percent-encoded), for `ATTACH`.
pub fn read_only_uri(path: &Path) -> String {
    let mut enc = String::new();
    for ch in path.display().to_string().chars() {
        match ch {
            '%' | '?' | '#' | ' ' => enc.push_str(&format!("%{:02X}", ch as u32)),
            c => enc.push(c),
        }
    }
    format!("file:{enc}?mode=ro")
}

/// A stored class-list version (without its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub id: i64,
    pub valid_from_ms: i64,
    pub sha256: String,
    pub prefixes: i64,
}

/// One row of an hour's host detail (`remote` = [`OTHER_HOSTS`] for the sum
/// of an account's hosts beyond the kept top N).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDetail {
    pub account: String,
    pub remote: String,
    pub class: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub flows: u64,
}

/// The core's database beside tier 2 in the state dir: when it exists,
/// retention keeps every `traffic` row the core has not read yet.
pub const CORE_FILE: &str = "core.sqlite";
/// `meta` key in [`CORE_FILE`]: the last tier-2 commit number (`seq`) the
/// core has read.
pub const CORE_READ_SEQ_KEY: &str = "tier2_seq";
/// `meta` key in [`CORE_FILE`]: the [`TIER2_ID_KEY`] of the tier 2 that
/// [`CORE_READ_SEQ_KEY`] counts in.
pub const CORE_READ_ID_KEY: &str = "tier2_id";

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub traffic_rows: u64,
    pub unattributed_rows: u64,
    pub host_rows: u64,
    pub loss_rows: u64,
    pub progress_rows: u64,
    /// `traffic` rows past retention kept because the core has not read
    /// them yet (late records of an old time, a router's clock in the
    /// past), and the oldest bucket among them.
    pub held_rows: u64,
    pub held_oldest_ms: Option<i64>,
    /// The last commit the core has read (`None`: no core here).
    pub core_read_seq: Option<i64>,
}

/// The classifier's tier-2 store.
pub trait Tier2 {
    /// Read positions of every segment seen so far.
    fn progress(&self) -> Result<Vec<Progress>, StoreError>;
    /// Writes one commit's rows (a batch's aggregates, built by
    /// [`CommitRows::of`]) and read positions in one transaction.
    fn write_rows(&mut self, rows: &CommitRows, now_ms: i64) -> Result<(), StoreError>;
    fn class_versions(&self) -> Result<Vec<StoredVersion>, StoreError>;
    fn class_version_content(&self, id: i64) -> Result<Option<String>, StoreError>;
    fn add_class_version(
        &mut self,
        valid_from_ms: i64,
        sha256: &str,
        prefixes: i64,
        content: &str,
    ) -> Result<i64, StoreError>;
    /// Hours whose host detail is out of date (new records arrived after
    /// it was computed, or it never was), ending at or before
    /// `ended_before_ms`, oldest first, with their pending generation.
    fn hosts_pending(
        &self,
        ended_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Replaces the host detail of one hour and marks `generation` done.
    fn write_hosts(
        &mut self,
        hour_ms: i64,
        generation: i64,
        rows: &[HostDetail],
    ) -> Result<(), StoreError>;
    /// Deletes aggregates older than the cut-offs (None: keep forever).
    fn prune(
        &mut self,
        traffic_before_ms: Option<i64>,
        hosts_before_ms: Option<i64>,
    ) -> Result<Pruned, StoreError>;
    /// Forgets the progress row of a segment deleted from tier 1.
    fn forget_segment(&mut self, collector: &str, segment_id: u64) -> Result<(), StoreError>;
    /// A value of the `meta` table.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a `meta` value.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
}

pub struct SqliteTier2 {
    conn: Connection,
    path: PathBuf,
    /// (device, inode) of the file when it was opened.
    file_id: Option<(u64, u64)>,
    /// The zone of `traffic_daily`'s days, once [`Self::daily_zone`] has
    /// made the table agree with it (retention then removes whole days).
    daily_tz: Option<Tz>,
    /// [`DAILY_FROM_KEY`] as this connection last set or read it.
    daily_from: i64,
}

/// (device, inode) of the file at `path`, if there is one.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl std::fmt::Debug for SqliteTier2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTier2")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS progress (
    collector   TEXT NOT NULL,
    segment_id  INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    done        INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (collector, segment_id)
);
CREATE TABLE IF NOT EXISTS traffic (
    bucket_ms INTEGER NOT NULL,
    account   TEXT NOT NULL,
    class     TEXT NOT NULL,
    direction TEXT NOT NULL,
    point     TEXT NOT NULL,
    billed    INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    flows     INTEGER NOT NULL,
    seq       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_ms, account, class, direction, point, billed)
);
CREATE TABLE IF NOT EXISTS traffic_hourly (
    hour_ms   INTEGER NOT NULL,
    account   TEXT NOT NULL,
    class     TEXT NOT NULL,
    direction TEXT NOT NULL,
    point     TEXT NOT NULL,
    billed    INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    flows     INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, account, class, direction, point, billed)
);
CREATE TABLE IF NOT EXISTS traffic_daily (
    day_ms    INTEGER NOT NULL,
    account   TEXT NOT NULL,
    class     TEXT NOT NULL,
    direction TEXT NOT NULL,
    point     TEXT NOT NULL,
    billed    INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    flows     INTEGER NOT NULL,
    PRIMARY KEY (day_ms, account, class, direction, point, billed)
);
CREATE TABLE IF NOT EXISTS unattributed (
    bucket_ms INTEGER NOT NULL,
    address   TEXT NOT NULL,
    class     TEXT NOT NULL,
    direction TEXT NOT NULL,
    point     TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    flows     INTEGER NOT NULL,
    PRIMARY KEY (bucket_ms, address, class, direction, point)
);
CREATE TABLE IF NOT EXISTS top_hosts (
    hour_ms   INTEGER NOT NULL,
    account   TEXT NOT NULL,
    remote    TEXT NOT NULL,
    class     TEXT NOT NULL,
    bytes_in  INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    flows     INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, account, remote, class)
);
CREATE TABLE IF NOT EXISTS hosts_hours (
    hour_ms     INTEGER PRIMARY KEY,
    gen_pending INTEGER NOT NULL,
    gen_done    INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS losses (
    bucket_ms INTEGER NOT NULL,
    exporter  TEXT NOT NULL,
    domain    INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    unit      TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (bucket_ms, exporter, domain, reason, unit)
);
CREATE TABLE IF NOT EXISTS class_versions (
    id            INTEGER PRIMARY KEY,
    valid_from_ms INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    prefixes      INTEGER NOT NULL,
    content       TEXT NOT NULL
);
";

/// The secondary indexes (reports by account, the core's reads by commit
/// number). Created after the tables and the migration; a rebuild fills a
/// new tier 2 without them and builds them once at the end (a sort of all
/// rows instead of an index insert per row).
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS traffic_by_account ON traffic (account, bucket_ms);
CREATE INDEX IF NOT EXISTS traffic_hourly_by_account ON traffic_hourly (account, hour_ms);
CREATE INDEX IF NOT EXISTS traffic_daily_by_account ON traffic_daily (account, day_ms);
CREATE INDEX IF NOT EXISTS traffic_by_seq ON traffic (seq);
";

impl SqliteTier2 {
    /// Opens (creating) the writer's connection: WAL, synchronous=FULL.
    pub fn open(state_dir: &Path) -> Result<SqliteTier2, StoreError> {
        let t2 = SqliteTier2::open_tables(state_dir)?;
        t2.conn.execute_batch(INDEXES).map_err(t2.err())?;
        Ok(t2)
    }

    /// Opens (creating) a tier 2 being rebuilt: as [`Self::open`], without
    /// the secondary indexes, which [`Self::open`] builds when the rebuild
    /// is done. Nothing may read it by account or commit number meanwhile.
    pub fn open_bulk(dir: &Path) -> Result<SqliteTier2, StoreError> {
        SqliteTier2::open_tables(dir)
    }

    fn open_tables(state_dir: &Path) -> Result<SqliteTier2, StoreError> {
        let path = state_dir.join(TIER2_FILE);
        let err = |source| StoreError {
            file: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        register_sql_functions(&conn).map_err(err)?;
        Ok(SqliteTier2 {
            file_id: file_id(&path),
            conn,
            path,
            daily_tz: None,
            daily_from: i64::MIN,
        })
    }

    /// The tier 2 in `state_dir` for reading only (a dry run beside the
    /// daemon): the [`Tier2`] read methods, no schema or migration run.
    pub fn open_reader(state_dir: &Path) -> Result<SqliteTier2, StoreError> {
        Ok(SqliteTier2 {
            conn: SqliteTier2::open_read(state_dir)?,
            path: state_dir.join(TIER2_FILE),
            file_id: None,
            daily_tz: None,
            daily_from: i64::MIN,
        })
    }

    /// A read-only connection for reports (never blocks the writer: WAL).
    pub fn open_read(state_dir: &Path) -> Result<Connection, StoreError> {
        let path = state_dir.join(TIER2_FILE);
        if !path.exists() {
            return Err(StoreError {
                file: path,
                source: rusqlite::Error::InvalidPath(
                    "no tier 2 here yet: has `kopek classifier run` run with this state dir?"
                        .into(),
                ),
            });
        }
        let err = |source| StoreError {
            file: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        register_sql_functions(&conn).map_err(err)?;
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at [`Self::path`] is no longer the one this
    /// connection writes (deleted, or another renamed over it): then what
    /// it commits reaches nobody — the core and the reports open the new
    /// file — and it must open that one. Says how.
    pub fn replaced(&self) -> Option<String> {
        let opened = self.file_id?;
        match file_id(&self.path) {
            Some(now) if now == opened => None,
            Some(_) => Some(format!(
                "{} was replaced by another file since it was opened",
                self.path.display()
            )),
            None => Some(format!(
                "{} was removed since it was opened",
                self.path.display()
            )),
        }
    }

    /// Prepares a new tier 2 for a rebuild from `live`: its bucket width,
    /// what retention removed from tier 1, and (`versions`) every class-list
    /// version, so that old records get the lists of their time.
    pub fn seed_from(&mut self, live: &Path, versions: bool) -> Result<(), StoreError> {
        self.with_old(live, |tx| {
            tx.execute(
                "INSERT INTO main.meta (key, value)
                 SELECT key, value FROM old.meta WHERE key IN ('bucket_ms', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![RAW_REMOVED_KEY],
            )?;
            if versions {
                tx.execute(
                    "INSERT INTO main.class_versions (id, valid_from_ms, sha256, prefixes, content)
                     SELECT id, valid_from_ms, sha256, prefixes, content FROM old.class_versions ORDER BY id",
                    [],
                )?;
            }
            Ok(())
        })
    }

    /// Replaces this tier 2's rows before `cutoff_ms` (a whole hour) with
    /// `live`'s, in one commit of their own number: the time whose tier 1
    /// retention removed. The daily rollup (days of `tz`): `live`'s whole
    /// days before the cut, the day of the cut summed again from both
    /// sides' hours (all kept days summed again if `live`'s are another
    /// zone's). Returns the number of rows taken over.
    pub fn keep_before(&mut self, live: &Path, cutoff_ms: i64, tz: Tz) -> Result<u64, StoreError> {
        self.with_old(live, |tx| {
            let seq = next_traffic_seq(tx)?;
            let mut kept = 0;
            for (table, time, cols) in [
                (
                    "traffic",
                    "bucket_ms",
                    "bucket_ms, account, class, direction, point, billed, bytes, packets, flows",
                ),
                (
                    "traffic_hourly",
                    "hour_ms",
                    "hour_ms, account, class, direction, point, billed, bytes, packets, flows",
                ),
                (
                    "unattributed",
                    "bucket_ms",
                    "bucket_ms, address, class, direction, point, bytes, packets, flows",
                ),
                (
                    "losses",
                    "bucket_ms",
                    "bucket_ms, exporter, domain, reason, unit, count",
                ),
                (
                    "top_hosts",
                    "hour_ms",
                    "hour_ms, account, remote, class, bytes_in, bytes_out, flows",
                ),
                (
                    "hosts_hours",
                    "hour_ms",
                    "hour_ms, gen_pending, gen_done, updated_ms",
                ),
            ] {
                tx.execute(
                    &format!("DELETE FROM main.{table} WHERE {time} < ?1"),
                    params![cutoff_ms],
                )?;
                let (into, select) = if table == "traffic" {
                    (format!("{cols}, seq"), format!("{cols}, {seq}"))
                } else {
                    (cols.to_string(), cols.to_string())
                };
                kept += tx.execute(
                    &format!(
                        "INSERT INTO main.{table} ({into}) SELECT {select} FROM old.{table} WHERE {time} < ?1"
                    ),
                    params![cutoff_ms],
                )? as u64;
            }
            let cut_day = day_start(cutoff_ms, tz);
            let (old_zone, old_from) = daily_rollup(tx, "old")?;
            let next_day = next_day_start(cut_day, tz);
            if old_zone.as_deref() == Some(tz.name()) && old_from == i64::MIN {
                tx.execute(
                    "DELETE FROM main.traffic_daily WHERE day_ms < ?1",
                    params![cut_day],
                )?;
                kept += tx.execute(
                    "INSERT INTO main.traffic_daily (day_ms, account, class, direction, point, billed, bytes, packets, flows)
                     SELECT day_ms, account, class, direction, point, billed, bytes, packets, flows
                     FROM old.traffic_daily WHERE day_ms < ?1",
                    params![cut_day],
                )? as u64;
                fill_daily(tx, tz, cut_day, Some(next_day), &mut || {})?;
            } else {
                // The old rollup is of another zone or not complete: the
                // days up to the cut's are left to the daemon, which sums
                // them from the hourly rollup in the background.
                tx.execute(
                    "DELETE FROM main.traffic_daily WHERE day_ms < ?1",
                    params![next_day],
                )?;
                set_daily_from(tx, next_day)?;
            }
            Ok(kept)
        })
    }

    /// The zone of the daily rollup's days (after [`Self::daily_zone`]).
    pub fn daily_tz(&self) -> Option<Tz> {
        self.daily_tz
    }

    /// Where `traffic_daily` is complete from (a day start; `i64::MIN`:
    /// all of it), after [`Self::daily_zone`].
    pub fn daily_from(&self) -> i64 {
        self.daily_from
    }

    /// Makes `traffic_daily` sum the local days of `tz`. When tier 2 has no
    /// daily rollup yet (made before it existed) or one of another zone
    /// (`general.timezone` changed), its rows are dropped and the newest
    /// day of the hourly rollup (and any after it) is summed now, in one
    /// transaction; the older days are left to [`Self::daily_fill_step`]
    /// ([`DAILY_FROM_KEY`]), so that opening never takes long. Returns the
    /// rows written then (`None`: the rollup already was of this zone).
    /// `progress` is called about every million rows read.
    pub fn daily_zone(
        &mut self,
        tz: Tz,
        now_ms: i64,
        progress: &mut dyn FnMut(),
    ) -> Result<Option<u64>, StoreError> {
        let err = sql_error(self.path.clone());
        let (recorded, from) = daily_rollup(&self.conn, "main").map_err(&err)?;
        let mut summed = None;
        if recorded.as_deref() == Some(tz.name()) {
            self.daily_from = from;
        } else {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            tx.execute("DELETE FROM traffic_daily", []).map_err(&err)?;
            let newest: Option<i64> = tx
                .query_row("SELECT max(hour_ms) FROM traffic_hourly", [], |r| r.get(0))
                .map_err(&err)?;
            let from = newest.map_or(i64::MIN, |h| day_start(h.min(now_ms), tz));
            summed = Some(fill_daily(&tx, tz, from, None, progress).map_err(&err)?);
            set_meta_in(&tx, DAILY_TZ_KEY, tz.name()).map_err(&err)?;
            set_daily_from(&tx, from).map_err(&err)?;
            tx.commit().map_err(&err)?;
            self.daily_from = from;
        }
        self.daily_tz = Some(tz);
        Ok(summed)
    }

    /// Sums the daily rollup's next older day (with data) from the hourly
    /// rollup, in one transaction, moving [`DAILY_FROM_KEY`] back to it.
    /// Returns whether older days are left. The caller must have written
    /// every commit built with the old [`Self::daily_from`] (those left the
    /// days before it to this step).
    pub fn daily_fill_step(&mut self) -> Result<bool, StoreError> {
        let (Some(tz), wm) = (self.daily_tz, self.daily_from) else {
            return Ok(false);
        };
        if wm == i64::MIN {
            return Ok(false);
        }
        let err = sql_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let older: Option<i64> = tx
            .query_row(
                "SELECT max(hour_ms) FROM traffic_hourly WHERE hour_ms < ?1",
                params![wm],
                |r| r.get(0),
            )
            .map_err(&err)?;
        let from = match older {
            Some(h) => {
                let day = day_start(h, tz);
                fill_daily(&tx, tz, day, Some(wm), &mut || {}).map_err(&err)?;
                day
            }
            None => i64::MIN,
        };
        set_daily_from(&tx, from).map_err(&err)?;
        tx.commit().map_err(&err)?;
        self.daily_from = from;
        Ok(from != i64::MIN)
    }

    /// Takes over `live`'s read positions of the given segments (finished
    /// there): a rebuild that keeps the rows of their time never reads them.
    pub fn seed_progress(&mut self, rows: &[Progress]) -> Result<(), StoreError> {
        let err = sql_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO progress (collector, segment_id, next_offset, done, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, 0)",
                )
                .map_err(&err)?;
            for p in rows {
                st.execute(params![
                    p.collector,
                    p.segment_id as i64,
                    p.offset as i64,
                    p.done
                ])
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Gives every billed `traffic` row of `live` that this tier 2 lacks a
    /// row of 0 bytes (in one commit of its own number): a reader that
    /// keeps totals per row (the core's mirror) then learns that the
    /// traffic left it (to another account, or unbilled) instead of never
    /// hearing of the row again. Returns the number of such rows.
    pub fn zero_vanished(&mut self, live: &Path) -> Result<u64, StoreError> {
        self.with_old(live, |tx| {
            // Both tables' billed keys in key order (each read along its
            // primary-key index), merged: one sequential pass over each
            // instead of a probe into this table per live row.
            let keys = "bucket_ms, account, class, direction, point";
            let scan = |db: &str| {
                format!("SELECT {keys} FROM {db}.traffic WHERE billed = 1 ORDER BY {keys}")
            };
            // The keys found missing wait in a temporary table (spilled
            // to disk when large), not in memory: a rebuild under
            // corrected lists may move most of a month.
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS vanished (
                   bucket_ms INTEGER, account TEXT, class TEXT, direction TEXT, point TEXT);
                 DELETE FROM temp.vanished;",
            )?;
            let mut found = 0u64;
            {
                let mut put = tx.prepare("INSERT INTO temp.vanished VALUES (?1, ?2, ?3, ?4, ?5)")?;
                let mut old_st = tx.prepare(&scan("old"))?;
                let mut new_st = tx.prepare(&scan("main"))?;
                let (mut olds, mut news) = (old_st.query([])?, new_st.query([])?);
                let (mut o, mut n) = (RowKey::default(), RowKey::default());
                let mut more = n.read(news.next()?)?;
                while o.read(olds.next()?)? {
                    while more && n < o {
                        more = n.read(news.next()?)?;
                    }
                    if !more || n != o {
                        let [a, c, d, p] = &o.text;
                        put.execute(params![o.bucket_ms, a, c, d, p])?;
                        found += 1;
                    }
                }
            }
            let seq = next_traffic_seq(tx)?;
            tx.execute(
                "INSERT INTO main.traffic (bucket_ms, account, class, direction, point, billed, bytes, packets, flows, seq)
                 SELECT bucket_ms, account, class, direction, point, 1, 0, 0, 0, ?1 FROM temp.vanished",
                params![seq],
            )?;
            tx.execute_batch("DROP TABLE temp.vanished")?;
            Ok(found)
        })
    }

    /// Copies `live`'s host detail of the hours from `from_ms` on: what
    /// reports show until the daemon has computed those hours again (they
    /// are pending in this tier 2). Returns the number of rows.
    pub fn keep_hosts_from(&mut self, live: &Path, from_ms: i64) -> Result<u64, StoreError> {
        self.with_old(live, |tx| {
            let n = tx.execute(
                "INSERT INTO main.top_hosts (hour_ms, account, remote, class, bytes_in, bytes_out, flows)
                 SELECT hour_ms, account, remote, class, bytes_in, bytes_out, flows
                 FROM old.top_hosts WHERE hour_ms >= ?1",
                params![from_ms],
            )?;
            Ok(n as u64)
        })
    }

    /// Runs `f` in one write transaction of this tier 2 with `live`
    /// attached read-only as `old` (detached afterwards, also when `f`
    /// fails).
    fn with_old<T>(
        &mut self,
        live: &Path,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let err = sql_error(self.path.clone());
        self.conn
            .execute("ATTACH DATABASE ?1 AS old", params![read_only_uri(live)])
            .map_err(&err)?;
        let done = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })();
        let detached = self.conn.execute("DETACH DATABASE old", []);
        // Damage is the old file's (this one was just written): named so,
        // an operator is told which file to deal with.
        let v = done.map_err(|e| {
            if is_damage(&e) {
                sql_error(live.to_path_buf())(e)
            } else {
                err(e)
            }
        })?;
        detached.map_err(&err)?;
        Ok(v)
    }

    /// What SQLite's `PRAGMA quick_check` finds wrong with the tier 2 at
    /// `path` (its first few problems), `None` when it is sound. A file
    /// SQLite cannot read at all is damaged too.
    pub fn damage(path: &Path) -> Result<Option<String>, StoreError> {
        let check = || -> Result<Vec<String>, rusqlite::Error> {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let mut st = conn.prepare("PRAGMA quick_check(5)")?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<String>, _>>()
        };
        match check() {
            Ok(v) if v.len() == 1 && v[0] == "ok" => Ok(None),
            Ok(v) => {
                // One line, the first problems (a page's faults come one
                // per line, and there may be thousands).
                let all = v.join("\n");
                let mut lines = all.lines().filter(|l| !l.starts_with("***"));
                let mut said: Vec<&str> = lines.by_ref().take(3).collect();
                if lines.next().is_some() {
                    said.push("...");
                }
                Ok(Some(said.join("; ")))
            }
            Err(e) if is_damage(&e) => Ok(Some(e.to_string())),
            Err(source) => Err(StoreError {
                file: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Billed bytes per account, class and direction (all of tier 2) where
    /// this tier 2 and `live` differ; unattributed traffic as account `""`.
    /// From the hourly rollup (the same sums as the buckets, 12× fewer
    /// rows at 5-minute buckets).
    pub fn billed_changes(&self, live: &Path) -> Result<Vec<BilledChange>, StoreError> {
        type Sums = std::collections::BTreeMap<(String, String, String), i64>;
        fn sums(conn: &Connection) -> Result<Sums, rusqlite::Error> {
            let mut m = Sums::new();
            let mut st = conn.prepare(
                "SELECT account, class, direction, sat_sum(bytes) FROM traffic_hourly WHERE billed = 1
                 GROUP BY account, class, direction
                 UNION ALL
                 SELECT '', class, direction, sat_sum(bytes) FROM unattributed GROUP BY class, direction",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let v = m.entry((r.get(0)?, r.get(1)?, r.get(2)?)).or_default();
                *v = v.saturating_add(r.get::<_, i64>(3)?);
            }
            Ok(m)
        }
        let old = Connection::open_with_flags(
            live,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.busy_timeout(BUSY_TIMEOUT).map(|()| c))
        .and_then(|c| register_sql_functions(&c).map(|()| c))
        .map_err(sql_error(live.to_path_buf()))?;
        let before = sums(&old).map_err(sql_error(live.to_path_buf()))?;
        let after = sums(&self.conn).map_err(self.err())?;
        let mut keys: Vec<_> = before.keys().chain(after.keys()).collect();
        keys.sort();
        keys.dedup();
        Ok(keys
            .into_iter()
            .filter_map(|k| {
                let (b, a) = (
                    before.get(k).copied().unwrap_or(0),
                    after.get(k).copied().unwrap_or(0),
                );
                (b != a).then(|| BilledChange {
                    account: k.0.clone(),
                    class: k.1.clone(),
                    direction: k.2.clone(),
                    before: b,
                    after: a,
                })
            })
            .collect())
    }

    /// Replaces everything in `state_dir`'s tier 2 with the database at
    /// `source` (a tier 2 rebuilt from tier 1), through SQLite's online
    /// backup in one write transaction on the live file: connections that
    /// hold it open (the core's attachment, reports) see the old content or
    /// the new, never a mix, and the old file's WAL never meets the new
    /// content (as it would after a rename over a database in WAL mode).
    /// The new content brings its own `tier2_id`, so readers that count in
    /// `seq` know to start over.
    pub fn install(state_dir: &Path, source: &Path) -> Result<(), StoreError> {
        let src = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_error(source.to_path_buf()))?;
        let mut dest = SqliteTier2::open(state_dir)?;
        let err = sql_error(dest.path.clone());
        {
            use rusqlite::backup::{Backup, StepResult};
            let backup = Backup::new(&src, &mut dest.conn).map_err(&err)?;
            let waited = std::time::Instant::now();
            loop {
                // -1: every page in one step, i.e. one transaction.
                match backup.step(-1).map_err(&err)? {
                    StepResult::Done => break,
                    _ if waited.elapsed() > BUSY_TIMEOUT => {
                        return Err(err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("tier 2 stayed locked: is a classifier writing it?".into()),
                        )));
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        dest.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(&err)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError {
        sql_error(self.path.clone())
    }
}

/// Brings a tier 2 of an older schema up to [`SCHEMA_VERSION`], in one
/// transaction. Version 1 had no `traffic.seq`: its rows get 0 ("changed
/// before anyone counted"), which a reader starting from -1 still sees.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if version.as_deref() == Some("1") {
        let has_seq: i64 = tx.query_row(
            "SELECT count(*) FROM pragma_table_info('traffic') WHERE name = 'seq'",
            [],
            |r| r.get(0),
        )?;
        if has_seq == 0 {
            tx.execute_batch("ALTER TABLE traffic ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")?;
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![SCHEMA_VERSION.to_string()],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, '0') ON CONFLICT (key) DO NOTHING",
        params![COMMIT_SEQ_KEY],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, lower(hex(randomblob(16))))
         ON CONFLICT (key) DO NOTHING",
        params![TIER2_ID_KEY],
    )?;
    tx.commit()
}

/// Sets `key` in tier 2's `meta` table (of `main` when another database
/// is attached).
fn set_meta_in(conn: &Connection, key: &str, value: &str) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO main.meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Records where `traffic_daily` is complete from ([`DAILY_FROM_KEY`];
/// `i64::MIN`: all of it, the key removed).
fn set_daily_from(conn: &Connection, from: i64) -> Result<(), rusqlite::Error> {
    if from == i64::MIN {
        conn.execute(
            "DELETE FROM main.meta WHERE key = ?1",
            params![DAILY_FROM_KEY],
        )?;
        Ok(())
    } else {
        set_meta_in(conn, DAILY_FROM_KEY, &from.to_string())
    }
}

/// The daily rollup of tier 2 in database `schema` (`main`, or an
/// attached one): the zone of its days ([`DAILY_TZ_KEY`]; none yet) and
/// where it is complete from ([`DAILY_FROM_KEY`]; `i64::MIN`: all of it).
pub(crate) fn daily_rollup(
    conn: &Connection,
    schema: &str,
) -> Result<(Option<String>, i64), rusqlite::Error> {
    let meta = |key: &str| -> Result<Option<String>, rusqlite::Error> {
        conn.query_row(
            &format!("SELECT value FROM {schema}.meta WHERE key = ?1"),
            params![key],
            |r| r.get(0),
        )
        .optional()
    };
    let from = meta(DAILY_FROM_KEY)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MIN);
    Ok((meta(DAILY_TZ_KEY)?, from))
}

/// Column `i` of `r` as text, borrowed.
pub(crate) fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, rusqlite::Error> {
    let v = r.get_ref(i)?;
    v.as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e)))
}

/// Names interned to small numbers while rows are summed (reports, the
/// daily rollup summed again).
#[derive(Default)]
pub(crate) struct NameIds {
    ids: FastMap<String, u32>,
    of: Vec<String>,
}

impl NameIds {
    pub(crate) fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.of.len() as u32;
        self.of.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        &self.of[id as usize]
    }
}

/// A value of the `meta` table of `conn` (tier 2's, or the core's: both
/// have `meta (key, value)`).
fn meta_value(conn: &Connection, key: &str) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
        r.get(0)
    })
    .optional()
}

/// Computes `main.traffic_daily` again for the local days of `tz` that
/// start in `[from_day, to_day)` (`from_day` a day start or `i64::MIN`;
/// `to_day` a day start, `None`: all): each hour of the hourly rollup that
/// lies inside one day added to it, the buckets of an hour that midnight
/// cuts (zones a half or quarter hour off: India, Nepal...) each to its
/// own day. Memory holds one day's rows. Returns the rows written;
/// calls `progress` every million rows read.
fn fill_daily(
    tx: &rusqlite::Transaction<'_>,
    tz: Tz,
    from_day: i64,
    to_day: Option<i64>,
    progress: &mut dyn FnMut(),
) -> Result<u64, rusqlite::Error> {
    let to_day = to_day.unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM main.traffic_daily WHERE day_ms >= ?1 AND day_ms < ?2",
        params![from_day, to_day],
    )?;
    const COLS: &str = "account, class, direction, point, billed, bytes, packets, flows";
    // From the hour that holds the first day's start (it may begin in
    // the day before).
    let mut hours = tx.prepare(&format!(
        "SELECT hour_ms, {COLS} FROM main.traffic_hourly
         WHERE hour_ms >= ?1 AND hour_ms < ?2 ORDER BY hour_ms"
    ))?;
    let mut buckets = tx.prepare(&format!(
        "SELECT bucket_ms, {COLS} FROM main.traffic
         WHERE bucket_ms >= max(?1, ?3) AND bucket_ms < min(?2, ?4)"
    ))?;
    let mut put = tx.prepare(&format!(
        "INSERT INTO main.traffic_daily (day_ms, {COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?;
    let mut days = DaySums::default();
    let mut written = 0;
    let first_hour = if from_day == i64::MIN {
        i64::MIN
    } else {
        bucket_of(from_day, HOUR_MS)
    };
    let mut rows = hours.query(params![first_hour, to_day])?;
    // The hour being read, and the day its rows go to (none: outside the
    // days asked for, or cut by midnight and read from the buckets).
    let mut hour: Option<(i64, Option<i64>)> = None;
    let mut read = 0u64;
    while let Some(r) = rows.next()? {
        read += 1;
        if read.is_multiple_of(1 << 20) {
            progress();
        }
        let h: i64 = r.get(0)?;
        let into = match hour {
            Some((at, into)) if at == h => into,
            _ => {
                written += days.flush_before(day_start(h, tz), &mut put)?;
                let into = if hour_in_one_day(h, tz) {
                    Some(day_start(h, tz)).filter(|d| (from_day..to_day).contains(d))
                } else {
                    let end = h.saturating_add(HOUR_MS);
                    let mut b = buckets.query(params![h, end, from_day, to_day])?;
                    while let Some(r) = b.next()? {
                        days.add(day_start(r.get(0)?, tz), r)?;
                    }
                    None
                };
                hour = Some((h, into));
                into
            }
        };
        if let Some(day) = into {
            days.add(day, r)?;
        }
    }
    written += days.flush_before(i64::MAX, &mut put)?;
    Ok(written)
}

/// Sums of `traffic` rows per local day, names interned, written a day at
/// a time ([`fill_daily`]).
#[derive(Default)]
struct DaySums {
    names: NameIds,
    /// (day, account, class, direction, point, billed) → sums.
    sums: FastMap<(i64, [u32; 4], bool), Counts>,
}

impl DaySums {
    /// Adds row `r` (time, account, class, direction, point, billed,
    /// bytes, packets, flows) to `day`.
    fn add(&mut self, day: i64, r: &rusqlite::Row<'_>) -> Result<(), rusqlite::Error> {
        let mut key = [0u32; 4];
        for (i, k) in key.iter_mut().enumerate() {
            *k = self.names.id(text(r, i + 1)?);
        }
        let billed: bool = r.get(5)?;
        let (bytes, packets, flows): (i64, i64, i64) = (r.get(6)?, r.get(7)?, r.get(8)?);
        self.sums.entry((day, key, billed)).or_default().add(
            bytes.max(0) as u64,
            packets.max(0) as u64,
            flows.max(0) as u64,
        );
        Ok(())
    }

    /// Writes the days before `day` (in primary-key order) and forgets them.
    fn flush_before(
        &mut self,
        day: i64,
        put: &mut rusqlite::Statement<'_>,
    ) -> Result<u64, rusqlite::Error> {
        let mut done: Vec<_> = self
            .sums
            .iter()
            .filter(|(k, _)| k.0 < day)
            .map(|(k, c)| (*k, *c))
            .collect();
        if done.is_empty() {
            return Ok(0);
        }
        self.sums.retain(|k, _| k.0 >= day);
        let names = &self.names;
        done.sort_unstable_by(|(a, _), (b, _)| {
            let text = |k: &(i64, [u32; 4], bool)| k.1.map(|i| names.name(i));
            (a.0, text(a), a.2).cmp(&(b.0, text(b), b.2))
        });
        for ((day, [account, class, dir, point], billed), c) in &done {
            let name = |i: &u32| names.name(*i);
            put.execute(params![
                day,
                name(account),
                name(class),
                name(dir),
                name(point),
                billed,
                sql_sum(c.bytes),
                sql_sum(c.packets),
                sql_sum(c.flows)
            ])?;
        }
        Ok(done.len() as u64)
    }
}

/// The last commit of this tier 2 (at `tier2`) that the core beside it has
/// read: `None` when there is no core database in the state dir; −1 when
/// the core has read nothing of this tier 2 (another identity: rebuilt or
/// replaced since its last cycle) or its database cannot be read (kept
/// safe: nothing unread is removed; the cause is logged).
fn core_read_seq(tx: &rusqlite::Transaction<'_>, tier2: &Path) -> Result<Option<i64>, StoreError> {
    let Some(core) = tier2.parent().map(|d| d.join(CORE_FILE)) else {
        return Ok(None);
    };
    if !core.exists() {
        return Ok(None);
    }
    let ours = meta_value(tx, TIER2_ID_KEY).map_err(sql_error(tier2.to_path_buf()))?;
    let read = (|| -> rusqlite::Result<(Option<String>, Option<String>)> {
        let c = Connection::open_with_flags(
            &core,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(BUSY_TIMEOUT)?;
        Ok((
            meta_value(&c, CORE_READ_ID_KEY)?,
            meta_value(&c, CORE_READ_SEQ_KEY)?,
        ))
    })();
    Ok(Some(match read {
        // A core of a version before tier-2 identities: its watermark.
        Ok((id, Some(seq))) if id.is_none() || id == ours => seq.parse().unwrap_or(-1),
        Ok(_) => -1,
        Err(e) => {
            tracing::warn!(
                file = %core.display(),
                error = %e,
                "cannot read how far the core has read tier 2: retention keeps every row for now"
            );
            -1
        }
    }))
}

/// Takes the next commit number (`meta.traffic_seq`) inside `tx`: the one
/// place the classifier's commits and [`write_commit`] number themselves.
fn next_traffic_seq(tx: &rusqlite::Transaction<'_>) -> Result<i64, rusqlite::Error> {
    let v: String = tx.query_row(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = ?1 RETURNING value",
        params![COMMIT_SEQ_KEY],
        |r| r.get(0),
    )?;
    Ok(v.parse().unwrap_or(0))
}

/// Maps SQLite errors to [`StoreError`]s naming `file`.
fn sql_error(file: PathBuf) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError {
        file: file.clone(),
        source,
    }
}

/// A per-account row's key with its names resolved: bucket (or hour),
/// account, class, direction, point, billed.
pub type TrafficRowKey = (i64, Arc<str>, Arc<str>, &'static str, Arc<str>, bool);
/// An unattributed row's key: bucket, address, class, direction, point.
pub type UnattributedRowKey = (i64, String, String, &'static str, String);

/// Everything one commit writes, with names resolved and rows in primary
/// key order, owning its data: built from a batch by the thread that
/// fills batches ([`CommitRows::of`]), written by another
/// ([`SqliteTier2::write_rows`]) while the next batch is filled.
#[derive(Debug, Default)]
pub struct CommitRows {
    pub traffic: Vec<(TrafficRowKey, Counts)>,
    /// The hourly rollup of `traffic`.
    pub hourly: Vec<(TrafficRowKey, Counts)>,
    /// The daily rollup of `traffic`, by local days of [`Names::tz`].
    pub daily: Vec<(TrafficRowKey, Counts)>,
    pub unattributed: Vec<(UnattributedRowKey, Counts)>,
    /// Hours whose host detail must be recomputed.
    pub hours: Vec<i64>,
    pub losses: Vec<(crate::aggregate::LossKey, u64)>,
    /// How far tier 1 was read, per segment.
    pub progress: Vec<Progress>,
}

impl CommitRows {
    /// The rows of `batch` (settled: [`Batch::settle`]).
    pub fn of(batch: &Batch, names: Names<'_>) -> CommitRows {
        // Each name once per commit (shared), with its rank in bytewise
        // order, so that rows sort by integers in the primary key's order.
        let accounts = Interned::of(batch.traffic().map(|(k, _)| k.account), |i| {
            names.accounts.account(i)
        });
        let classes = Interned::of(batch.traffic().map(|(k, _)| k.class), |i| {
            names.classes.name(i)
        });
        let points = Interned::of(batch.traffic().map(|(k, _)| u32::from(k.point)), |i| {
            names.points.name(i as u16)
        });
        let rows = |it: &mut dyn Iterator<Item = (TrafficKey, Counts)>| {
            let mut v: Vec<_> = it
                .map(|(k, c)| {
                    let (a, cl, p) = (k.account, k.class, u32::from(k.point));
                    let order = (
                        k.bucket_ms,
                        accounts.rank[a as usize],
                        classes.rank[cl as usize],
                        k.dir.as_str(),
                        points.rank[p as usize],
                        k.billed,
                    );
                    let key = (
                        k.bucket_ms,
                        accounts.name(a),
                        classes.name(cl),
                        k.dir.as_str(),
                        points.name(p),
                        k.billed,
                    );
                    (order, key, c)
                })
                .collect();
            // In the primary key's order (SQLite compares TEXT bytewise,
            // as `str` does): each row lands next to the previous one in
            // every index instead of on a random page (a commit of ~75,000
            // rows: 0.36-0.55 s in hash-map order).
            v.sort_unstable_by_key(|r| r.0);
            v.into_iter().map(|(_, k, c)| (k, c)).collect::<Vec<_>>()
        };
        let traffic = rows(&mut batch.traffic());
        // The hourly rollup, for reports over long histories (a month of
        // 5-minute buckets is 12× the rows).
        // And per local day: reports over months and years (24× fewer
        // rows again). A commit's buckets are few: each day found once.
        let mut hourly: FastMap<TrafficKey, Counts> = FastMap::default();
        let mut daily: FastMap<TrafficKey, Counts> = FastMap::default();
        let mut days: FastMap<i64, i64> = FastMap::default();
        for (k, c) in batch.traffic() {
            let add = |into: &mut FastMap<TrafficKey, Counts>, bucket_ms| {
                into.entry(TrafficKey { bucket_ms, ..k })
                    .or_default()
                    .add(c.bytes, c.packets, c.flows);
            };
            add(&mut hourly, bucket_of(k.bucket_ms, HOUR_MS));
            let day = *days
                .entry(k.bucket_ms)
                .or_insert_with(|| day_start(k.bucket_ms, names.tz));
            if day >= names.daily_from {
                add(&mut daily, day);
            }
        }
        let hourly = rows(&mut hourly.into_iter());
        let daily = rows(&mut daily.into_iter());
        let mut unattributed: Vec<_> = batch
            .unattributed
            .iter()
            .map(|(k, c)| {
                let key = (
                    k.bucket_ms,
                    k.address.to_string(),
                    names.classes.name(k.class).to_string(),
                    k.dir.as_str(),
                    names.points.name(k.point).to_string(),
                );
                (key, *c)
            })
            .collect();
        unattributed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        CommitRows {
            traffic,
            hourly,
            daily,
            unattributed,
            hours: batch.hours.clone(),
            losses: batch.losses.iter().map(|(k, c)| (*k, *c)).collect(),
            progress: batch.progress.clone(),
        }
    }
}

/// The names of the ids one commit uses: each resolved once and shared,
/// with its rank among them in bytewise order.
struct Interned {
    /// By id: the rank (ids the commit does not use: 0).
    rank: Vec<u32>,
    names: Vec<Option<Arc<str>>>,
}

impl Interned {
    fn of<'n>(ids: impl Iterator<Item = u32>, name: impl Fn(u32) -> &'n str) -> Interned {
        let mut used: Vec<u32> = ids.collect();
        used.sort_unstable();
        used.dedup();
        let len = used.last().map_or(0, |&m| m as usize + 1);
        let mut by_name: Vec<(&str, u32)> = used.iter().map(|&i| (name(i), i)).collect();
        by_name.sort_unstable();
        let mut t = Interned {
            rank: vec![0; len],
            names: vec![None; len],
        };
        for (r, (n, i)) in by_name.into_iter().enumerate() {
            t.rank[i as usize] = r as u32;
            t.names[i as usize] = Some(Arc::from(n));
        }
        t
    }

    fn name(&self, id: u32) -> Arc<str> {
        self.names[id as usize]
            .clone()
            .expect("interned from the same rows")
    }
}

/// A `traffic` key (bucket, account, class, direction, point) as a merge
/// reads it: ordered as SQLite orders the primary key (the integer, then
/// each text bytewise, as the BINARY collation does), its buffers reused
/// from row to row.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    bucket_ms: i64,
    text: [String; 4],
}

impl RowKey {
    /// Takes the next row's key; `false` at the end.
    fn read(&mut self, row: Option<&rusqlite::Row<'_>>) -> rusqlite::Result<bool> {
        let Some(row) = row else {
            return Ok(false);
        };
        self.bucket_ms = row.get(0)?;
        for (i, t) in self.text.iter_mut().enumerate() {
            t.clear();
            t.push_str(text(row, i + 1)?);
        }
        Ok(true)
    }
}

/// A sum as tier 2 stores it: saturated at SQLite's largest integer
/// ([`crate::aggregate::SUM_MAX`]) instead of wrapping to a negative one.
fn sql_sum(v: u64) -> i64 {
    v.min(SUM_MAX) as i64
}

/// SQL `sat_sum(x)`: `SUM` over integers that stops at SQLite's largest
/// integer, as every stored sum does. Tier-2 rows may be saturated at
/// 2^63 − 1 (see [`sql_sum`]); SQLite's own `SUM` over two of them fails
/// with "integer overflow", which would make a report over them fail.
/// NULL over no rows, like `SUM`.
struct SatSum;

impl rusqlite::functions::Aggregate<i64, Option<i64>> for SatSum {
    fn init(&self, _: &mut rusqlite::functions::Context<'_>) -> rusqlite::Result<i64> {
        Ok(0)
    }

    fn step(
        &self,
        ctx: &mut rusqlite::functions::Context<'_>,
        acc: &mut i64,
    ) -> rusqlite::Result<()> {
        if let Some(v) = ctx.get::<Option<i64>>(0)? {
            *acc = acc.saturating_add(v);
        }
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut rusqlite::functions::Context<'_>,
        acc: Option<i64>,
    ) -> rusqlite::Result<Option<i64>> {
        Ok(acc)
    }
}

/// Registers [`SatSum`] on `conn` (every tier-2 connection kopek opens).
pub fn register_sql_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_aggregate_function(
        "sat_sum",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        SatSum,
    )
}

/// Adds per-account counts into `table` (`traffic` or `traffic_hourly`,
/// whose time column is `time_col`).
fn upsert_traffic(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    time_col: &str,
    rows: &[(TrafficRowKey, Counts)],
    seq: Option<i64>,
) -> Result<(), rusqlite::Error> {
    let (seq_col, seq_val, seq_set) = match seq {
        Some(seq) => (", seq", format!(", {seq}"), ", seq = excluded.seq"),
        None => ("", String::new(), ""),
    };
    let mut st = tx.prepare_cached(&format!(
        "INSERT INTO {table} ({time_col}, account, class, direction, point, billed, bytes, packets, flows{seq_col})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9{seq_val})
         ON CONFLICT ({time_col}, account, class, direction, point, billed) DO UPDATE SET
           bytes = min({table}.bytes + excluded.bytes, {SUM_MAX}),
           packets = min({table}.packets + excluded.packets, {SUM_MAX}),
           flows = {table}.flows + excluded.flows{seq_set}"
    ))?;
    for ((bucket_ms, account, class, dir, point, billed), c) in rows {
        st.execute(params![
            bucket_ms,
            account,
            class,
            dir,
            point,
            billed,
            sql_sum(c.bytes),
            sql_sum(c.packets),
            sql_sum(c.flows)
        ])?;
    }
    Ok(())
}

impl Tier2 for SqliteTier2 {
    fn progress(&self) -> Result<Vec<Progress>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT collector, segment_id, next_offset, done FROM progress")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Progress {
                    collector: r.get(0)?,
                    segment_id: r.get::<_, i64>(1)? as u64,
                    offset: r.get::<_, i64>(2)? as u64,
                    done: r.get::<_, i64>(3)? != 0,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    fn write_rows(&mut self, rows: &CommitRows, now_ms: i64) -> Result<(), StoreError> {
        let err = sql_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let seq = next_traffic_seq(&tx).map_err(&err)?;
            upsert_traffic(&tx, "traffic", "bucket_ms", &rows.traffic, Some(seq)).map_err(&err)?;
            upsert_traffic(&tx, "traffic_hourly", "hour_ms", &rows.hourly, None).map_err(&err)?;
            upsert_traffic(&tx, "traffic_daily", "day_ms", &rows.daily, None).map_err(&err)?;
            let mut st = tx
                .prepare_cached(&format!(
                    "INSERT INTO unattributed (bucket_ms, address, class, direction, point, bytes, packets, flows)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (bucket_ms, address, class, direction, point) DO UPDATE SET
                       bytes = min(unattributed.bytes + excluded.bytes, {SUM_MAX}),
                       packets = min(unattributed.packets + excluded.packets, {SUM_MAX}),
                       flows = unattributed.flows + excluded.flows",
                ))
                .map_err(&err)?;
            for ((bucket_ms, address, class, dir, point), c) in &rows.unattributed {
                st.execute(params![
                    bucket_ms,
                    address,
                    class,
                    dir,
                    point,
                    sql_sum(c.bytes),
                    sql_sum(c.packets),
                    sql_sum(c.flows)
                ])
                .map_err(&err)?;
            }
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO hosts_hours (hour_ms, gen_pending, gen_done, updated_ms)
                     VALUES (?1, 1, 0, ?2)
                     ON CONFLICT (hour_ms) DO UPDATE SET
                       gen_pending = hosts_hours.gen_pending + 1,
                       updated_ms = excluded.updated_ms",
                )
                .map_err(&err)?;
            for h in &rows.hours {
                st.execute(params![h, now_ms]).map_err(&err)?;
            }
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO losses (bucket_ms, exporter, domain, reason, unit, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (bucket_ms, exporter, domain, reason, unit) DO UPDATE SET
                       count = losses.count + excluded.count",
                )
                .map_err(&err)?;
            for (k, c) in &rows.losses {
                st.execute(params![
                    k.bucket_ms,
                    k.exporter.to_string(),
                    k.domain,
                    k.reason,
                    k.unit,
                    *c as i64
                ])
                .map_err(&err)?;
            }
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO progress (collector, segment_id, next_offset, done, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (collector, segment_id) DO UPDATE SET
                       next_offset = excluded.next_offset,
                       done = excluded.done,
                       updated_ms = excluded.updated_ms",
                )
                .map_err(&err)?;
            for p in &rows.progress {
                st.execute(params![
                    p.collector,
                    p.segment_id as i64,
                    p.offset as i64,
                    p.done,
                    now_ms
                ])
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    fn class_versions(&self) -> Result<Vec<StoredVersion>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, valid_from_ms, sha256, prefixes FROM class_versions ORDER BY id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredVersion {
                    id: r.get(0)?,
                    valid_from_ms: r.get(1)?,
                    sha256: r.get(2)?,
                    prefixes: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    fn class_version_content(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT content FROM class_versions WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    fn add_class_version(
        &mut self,
        valid_from_ms: i64,
        sha256: &str,
        prefixes: i64,
        content: &str,
    ) -> Result<i64, StoreError> {
        let err = sql_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        tx.execute(
            "INSERT INTO class_versions (valid_from_ms, sha256, prefixes, content) VALUES (?1, ?2, ?3, ?4)",
            params![valid_from_ms, sha256, prefixes, content],
        )
        .map_err(&err)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(&err)?;
        Ok(id)
    }

    fn hosts_pending(
        &self,
        ended_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT hour_ms, gen_pending FROM hosts_hours
                 WHERE gen_pending > gen_done AND hour_ms + 3600000 <= ?1
                 ORDER BY hour_ms LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![ended_before_ms, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    fn write_hosts(
        &mut self,
        hour_ms: i64,
        generation: i64,
        rows: &[HostDetail],
    ) -> Result<(), StoreError> {
        let err = sql_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        tx.execute("DELETE FROM top_hosts WHERE hour_ms = ?1", params![hour_ms])
            .map_err(&err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO top_hosts (hour_ms, account, remote, class, bytes_in, bytes_out, flows)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(&err)?;
            for r in rows {
                st.execute(params![
                    hour_ms,
                    r.account,
                    r.remote,
                    r.class,
                    sql_sum(r.bytes_in),
                    sql_sum(r.bytes_out),
                    sql_sum(r.flows)
                ])
                .map_err(&err)?;
            }
        }
        tx.execute(
            "UPDATE hosts_hours SET gen_done = ?2 WHERE hour_ms = ?1 AND gen_done < ?2",
            params![hour_ms, generation],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    fn prune(
        &mut self,
        traffic_before_ms: Option<i64>,
        hosts_before_ms: Option<i64>,
    ) -> Result<Pruned, StoreError> {
        let err = sql_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut p = Pruned::default();
        if let Some(t) = traffic_before_ms {
            // A row the core has not read stays whatever its time: it may
            // be a late record of an old bucket, and the core reads rows by
            // commit number, not by time.
            p.core_read_seq = core_read_seq(&tx, &self.path)?;
            let read = p.core_read_seq.unwrap_or(i64::MAX);
            p.traffic_rows = tx
                .execute(
                    "DELETE FROM traffic WHERE bucket_ms < ?1 AND seq <= ?2",
                    params![t, read],
                )
                .map_err(&err)? as u64;
            let (held, oldest): (i64, Option<i64>) = tx
                .query_row(
                    "SELECT count(*), min(bucket_ms) FROM traffic WHERE seq > ?2 AND bucket_ms < ?1",
                    params![t, read],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(&err)?;
            p.held_rows = held as u64;
            p.held_oldest_ms = oldest;
            // The rollup goes up to the hour of the oldest held row.
            let hourly_cut = oldest.map_or(t, |o| t.min(o.div_euclid(HOUR_MS) * HOUR_MS));
            tx.execute(
                "DELETE FROM traffic_hourly WHERE hour_ms < ?1",
                params![hourly_cut],
            )
            .map_err(&err)?;
            // Whole days before the hour's: the day of the cut stays, with
            // the hours before it that the hourly rollup no longer has.
            if let Some(tz) = self.daily_tz {
                tx.execute(
                    "DELETE FROM traffic_daily WHERE day_ms < ?1",
                    params![day_start(hourly_cut, tz)],
                )
                .map_err(&err)?;
            }
            p.unattributed_rows = tx
                .execute("DELETE FROM unattributed WHERE bucket_ms < ?1", params![t])
                .map_err(&err)? as u64;
            p.loss_rows = tx
                .execute("DELETE FROM losses WHERE bucket_ms < ?1", params![t])
                .map_err(&err)? as u64;
        }
        if let Some(t) = hosts_before_ms {
            p.host_rows = tx
                .execute("DELETE FROM top_hosts WHERE hour_ms < ?1", params![t])
                .map_err(&err)? as u64;
            tx.execute("DELETE FROM hosts_hours WHERE hour_ms < ?1", params![t])
                .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(p)
    }

    fn forget_segment(&mut self, collector: &str, segment_id: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM progress WHERE collector = ?1 AND segment_id = ?2",
                params![collector, segment_id as i64],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        meta_value(&self.conn, key).map_err(self.err())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        set_meta_in(&self.conn, key, value).map_err(self.err())
    }
}

/// One billed row of a simulated tier-2 commit ([`write_commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRow<'a> {
    pub bucket_ms: i64,
    pub account: &'a str,
    pub class: &'a str,
    pub direction: &'a str,
    pub bytes: i64,
}

/// Writes one commit into tier 2 the way the classifier does — the next
/// `traffic_seq`, every row added to and stamped with it, in one
/// transaction — for simulations, benchmarks and tests of tier-2 readers
/// (the core). Rows go to point `*`, billed. The classifier itself never
/// calls this. Returns the commit's number.
pub fn write_commit(state_dir: &Path, rows: &[SimRow<'_>]) -> Result<i64, StoreError> {
    let mut t2 = SqliteTier2::open(state_dir)?;
    let err = sql_error(t2.path.clone());
    let tx = t2
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let seq = next_traffic_seq(&tx).map_err(&err)?;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO traffic (bucket_ms, account, class, direction, point, billed, bytes, packets, flows, seq)
                 VALUES (?1, ?2, ?3, ?4, '*', 1, ?5, 1, 1, ?6)
                 ON CONFLICT (bucket_ms, account, class, direction, point, billed) DO UPDATE SET
                   bytes = traffic.bytes + excluded.bytes, seq = excluded.seq",
            )
            .map_err(&err)?;
        for r in rows {
            st.execute(params![
                r.bucket_ms,
                r.account,
                r.class,
                r.direction,
                r.bytes,
                seq
            ])
            .map_err(&err)?;
        }
    }
    tx.commit().map_err(&err)?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The merge in [`SqliteTier2::zero_vanished`] relies on [`RowKey`]'s
    /// order being the order SQLite reads the primary key in: checked on
    /// keys made to disagree if either side compared otherwise (prefixes,
    /// case, bytes above 0x7f, the empty string, negative buckets).
    #[test]
    fn row_keys_order_as_sqlite_orders_the_primary_key() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (bucket_ms INTEGER NOT NULL, account TEXT NOT NULL, class TEXT NOT NULL,
               direction TEXT NOT NULL, point TEXT NOT NULL, billed INTEGER NOT NULL,
               PRIMARY KEY (bucket_ms, account, class, direction, point, billed))",
        )
        .unwrap();
        let words = [
            "", "a", "A", "ab", "a b", "b", "é", "e\u{301}", "ж", "Ж", "z", "10", "9",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        let mut want = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let k = RowKey {
                bucket_ms: [-300_000, 0, 300_000, 1_700_000_000_000][next(4)],
                text: std::array::from_fn(|_| words[next(words.len())].to_string()),
            };
            c.execute(
                "INSERT OR IGNORE INTO t VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                params![k.bucket_ms, k.text[0], k.text[1], k.text[2], k.text[3]],
            )
            .unwrap();
            want.insert(k);
        }
        let mut st = c
            .prepare(
                "SELECT bucket_ms, account, class, direction, point FROM t WHERE billed = 1
                 ORDER BY bucket_ms, account, class, direction, point",
            )
            .unwrap();
        let mut rows = st.query([]).unwrap();
        let mut got = Vec::new();
        let mut k = RowKey::default();
        while k.read(rows.next().unwrap()).unwrap() {
            got.push(k.clone());
        }
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }
}
