//! The billing database (`<state_dir>/core.sqlite`): schema, opening, and
//! the ledger's one write path.
//!
//! Only the core writes it (one process: `core.lock`). WAL with
//! `synchronous=FULL` (a committed payment survives power loss), every
//! write transaction `BEGIN IMMEDIATE`. The SQL is portable (`ON CONFLICT`
//! upserts, no SQLite-only functions outside [`Billing::open`]), so a
//! PostgreSQL backend can follow. Schema: docs/core-schema.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use crate::CoreError;
use crate::money::Money;

pub const CORE_FILE: &str = kopek_classifier::store::CORE_FILE;
pub const LOCK_FILE: &str = "core.lock";
pub const SCHEMA_VERSION: i64 = 1;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;
/// Page cache of the writer's connection, KiB.
const CACHE_KIB: i64 = 256 * 1024;
/// The hash the first entry chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subscribers (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    contact    TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id            INTEGER PRIMARY KEY,
    number        TEXT NOT NULL UNIQUE,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id),
    payer_id      INTEGER REFERENCES accounts (id),
    policy        TEXT NOT NULL,
    credit_limit  INTEGER NOT NULL,
    admin_block   TEXT,
    created_ms    INTEGER NOT NULL,
    fee_day_ms    INTEGER
);
CREATE TABLE IF NOT EXISTS logins (
    login      TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tariffs (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tariff_versions (
    id           INTEGER PRIMARY KEY,
    tariff_id    INTEGER NOT NULL REFERENCES tariffs (id),
    version      INTEGER NOT NULL,
    effective_ms INTEGER NOT NULL,
    content      TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    who          TEXT NOT NULL,
    why          TEXT NOT NULL,
    UNIQUE (tariff_id, version)
);
CREATE TABLE IF NOT EXISTS account_tariffs (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    tariff_id  INTEGER NOT NULL REFERENCES tariffs (id),
    from_ms    INTEGER NOT NULL,
    to_ms      INTEGER
);
CREATE INDEX IF NOT EXISTS account_tariffs_by_account ON account_tariffs (account_id, from_ms);
CREATE TABLE IF NOT EXISTS freezes (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    from_ms    INTEGER NOT NULL,
    to_ms      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS promises (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount     INTEGER NOT NULL,
    from_ms    INTEGER NOT NULL,
    until_ms   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS books (
    book    TEXT PRIMARY KEY,
    balance INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    account_id  INTEGER,
    debit       TEXT NOT NULL,
    credit      TEXT NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    ext_id      TEXT UNIQUE,
    who         TEXT NOT NULL,
    why         TEXT NOT NULL,
    service     TEXT,
    day         TEXT,
    period      TEXT,
    version_id  INTEGER,
    details     TEXT,
    hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries (account_id, ts_ms);
CREATE TABLE IF NOT EXISTS usage_mirror (
    account   TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    class     TEXT NOT NULL,
    direction TEXT NOT NULL,
    point     TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    PRIMARY KEY (account, bucket_ms, class, direction, point)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accruals (
    account_id      INTEGER NOT NULL,
    period_start_ms INTEGER NOT NULL,
    version_id      INTEGER NOT NULL,
    service         TEXT NOT NULL,
    class           TEXT NOT NULL,
    in_bytes        INTEGER NOT NULL,
    out_bytes       INTEGER NOT NULL,
    days            INTEGER NOT NULL,
    charged         INTEGER NOT NULL,
    posted          INTEGER NOT NULL,
    PRIMARY KEY (account_id, period_start_ms, version_id, service)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS accruals_unposted ON accruals (account_id) WHERE charged <> posted;
CREATE INDEX IF NOT EXISTS accruals_by_period ON accruals (period_start_ms);
CREATE TABLE IF NOT EXISTS unrated (
    account   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    class     TEXT NOT NULL,
    direction TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    first_ms  INTEGER NOT NULL,
    last_ms   INTEGER NOT NULL,
    PRIMARY KEY (account, reason, class, direction)
);
CREATE TABLE IF NOT EXISTS access (
    account_id INTEGER PRIMARY KEY,
    state      TEXT NOT NULL,
    since_ms   INTEGER NOT NULL,
    seq        INTEGER NOT NULL
);
-- The speed caps of every account whose current tariff sets one; the
-- enforcer polices its addresses to them. meta.shaping_seq moves on every
-- change.
CREATE TABLE IF NOT EXISTS shaping (
    account_id INTEGER PRIMARY KEY,
    down_kbit  INTEGER,
    up_kbit    INTEGER,
    since_ms   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS access_events (
    seq        INTEGER PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    state      TEXT NOT NULL,
    previous   TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ppp_events (
    id      TEXT PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    ifname  TEXT NOT NULL,
    login   TEXT,
    address TEXT,
    account TEXT,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    ts_ms   INTEGER NOT NULL,
    who     TEXT NOT NULL,
    command TEXT NOT NULL,
    args    TEXT NOT NULL,
    result  TEXT NOT NULL
);
";

/// `meta` keys.
pub const META_TIER2_SEQ: &str = kopek_classifier::store::CORE_READ_SEQ_KEY;
/// The identity of the tier 2 that `tier2_seq` counts in (its
/// `meta.tier2_id`): another one means the watermark means nothing there.
pub const META_TIER2_ID: &str = kopek_classifier::store::CORE_READ_ID_KEY;
pub const META_POSTED_DAY: &str = "posted_through_day_ms";
pub const META_LAST_CYCLE: &str = "last_cycle_ms";
/// Bumped by every cycle that changed a row of `shaping`.
pub const META_SHAPING_SEQ: &str = "shaping_seq";

/// The billing database.
pub struct Billing {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// The ISP's zone: billing periods, days, tariff zones, messages.
    pub timezone: chrono_tz::Tz,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing").field("path", &self.path).finish()
    }
}

/// One ledger posting: `amount` moves from `debit` to `credit`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewEntry {
    pub ts_ms: i64,
    pub kind: &'static str,
    pub account_id: Option<i64>,
    pub debit: String,
    pub credit: String,
    pub amount: Money,
    pub ext_id: Option<String>,
    pub who: String,
    pub why: String,
    pub service: Option<String>,
    pub day: Option<String>,
    pub period: Option<String>,
    pub version_id: Option<i64>,
    pub details: Option<String>,
}

/// The book of a subscriber account.
pub fn account_book(account_id: i64) -> String {
    format!("acct:{account_id}")
}

impl Billing {
    /// Opens (creating) the writer's connection.
    pub fn open(state_dir: &Path, timezone: chrono_tz::Tz) -> Result<Billing, CoreError> {
        let path = state_dir.join(CORE_FILE);
        let conn = Connection::open(&path).map_err(sql(&path))?;
        let b = Billing {
            conn,
            path,
            timezone,
        };
        let e = b.err();
        b.conn.busy_timeout(BUSY_TIMEOUT).map_err(&e)?;
        b.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(&e)?;
        b.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(&e)?;
        b.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(&e)?;
        // A rating cycle touches every active account's rows: keep the hot
        // B-trees in memory (SQLite's default cache is 2 MB).
        b.conn
            .pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(&e)?;
        b.conn
            .pragma_update(None, "temp_store", "MEMORY")
            .map_err(&e)?;
        // A cycle uses a few dozen statements; rusqlite keeps 16 by default
        // and would re-parse the rest every time.
        b.conn
            .set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        b.conn.execute_batch(SCHEMA).map_err(&e)?;
        b.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1) ON CONFLICT (key) DO NOTHING",
                params![SCHEMA_VERSION.to_string()],
            )
            .map_err(&e)?;
        Ok(b)
    }

    /// A read-only connection for reports; never blocks the writer.
    pub fn open_read(state_dir: &Path, timezone: chrono_tz::Tz) -> Result<Billing, CoreError> {
        let path = state_dir.join(CORE_FILE);
        if !path.exists() {
            return Err(CoreError::Invalid(format!(
                "{}: no billing database here yet (has `kopek core run` run with this state dir?)",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(&path))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql(&path))?;
        Ok(Billing {
            conn,
            path,
            timezone,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> CoreError + use<> {
        sql(&self.path)
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`).
    pub(crate) fn write(&mut self) -> Result<Transaction<'_>, CoreError> {
        let e = self.err();
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)
    }

    pub fn meta_i64(&self, key: &str) -> Result<Option<i64>, CoreError> {
        meta_i64(&self.conn, key).map_err(self.err())
    }
}

/// Maps SQLite errors to a [`CoreError`] naming the file.
pub(crate) fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> CoreError + use<> {
    let path = path.to_path_buf();
    move |source| CoreError::Sql {
        file: path.clone(),
        source,
    }
}

pub(crate) fn meta_i64(conn: &Connection, key: &str) -> Result<Option<i64>, rusqlite::Error> {
    Ok(meta_text(conn, key)?.and_then(|v| v.parse().ok()))
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), rusqlite::Error> {
    set_meta_text(conn, key, &value.to_string())
}

pub(crate) fn meta_text(conn: &Connection, key: &str) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
        r.get(0)
    })
    .optional()
}

pub(crate) fn set_meta_text(
    conn: &Connection,
    key: &str,
    value: &str,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The hash of an entry, chained to the previous entry's hash: any later
/// edit of a stored entry breaks the chain (`kopek ledger verify`).
pub fn entry_hash(prev: &str, id: i64, e: &NewEntry) -> String {
    let mut h = Sha256::new();
    let fields: [&str; 7] = [
        prev,
        e.kind,
        &e.debit,
        &e.credit,
        e.ext_id.as_deref().unwrap_or(""),
        &e.who,
        &e.why,
    ];
    for f in fields {
        h.update(f.as_bytes());
        h.update([0u8]);
    }
    for n in [id, e.ts_ms, e.amount.0, e.account_id.unwrap_or(-1)] {
        h.update(n.to_le_bytes());
    }
    hex(&h.finalize())
}

/// Lower-case hex of bytes (one allocation).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// [`post`] for callers outside the crate (benchmarks, tools that build
/// a ledger): the same write path.
pub fn post_entries(
    tx: &Transaction<'_>,
    recorded_ms: i64,
    entries: &[NewEntry],
) -> Result<Vec<i64>, rusqlite::Error> {
    post(tx, recorded_ms, entries)
}

/// Appends entries inside `tx`: both books move, the chain grows. The
/// caller commits (all of a multi-leg posting or none of it).
pub(crate) fn post(
    tx: &Transaction<'_>,
    recorded_ms: i64,
    entries: &[NewEntry],
) -> Result<Vec<i64>, rusqlite::Error> {
    let (mut last_id, mut prev): (i64, String) = tx
        .query_row(
            "SELECT id, hash FROM entries ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS_HASH.to_string()));
    let mut ins = tx.prepare_cached(
        "INSERT INTO entries (id, ts_ms, recorded_ms, kind, account_id, debit, credit, amount, ext_id,
                              who, why, service, day, period, version_id, details, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    let mut book = tx.prepare_cached(
        "INSERT INTO books (book, balance) VALUES (?1, ?2)
         ON CONFLICT (book) DO UPDATE SET balance = books.balance + excluded.balance",
    )?;
    let mut ids = Vec::with_capacity(entries.len());
    // Balance changes summed per book, written once per book.
    let mut books: std::collections::BTreeMap<&str, i64> = Default::default();
    for e in entries {
        assert!(e.amount.0 > 0, "a posting moves a positive amount");
        assert_ne!(e.debit, e.credit, "a posting moves money between two books");
        let id = last_id + 1;
        let hash = entry_hash(&prev, id, e);
        ins.execute(params![
            id,
            e.ts_ms,
            recorded_ms,
            e.kind,
            e.account_id,
            e.debit,
            e.credit,
            e.amount.0,
            e.ext_id,
            e.who,
            e.why,
            e.service,
            e.day,
            e.period,
            e.version_id,
            e.details,
            hash
        ])?;
        *books.entry(&e.debit).or_default() -= e.amount.0;
        *books.entry(&e.credit).or_default() += e.amount.0;
        ids.push(id);
        last_id = id;
        prev = hash;
    }
    for (b, delta) in books {
        book.execute(params![b, delta])?;
    }
    Ok(ids)
}

/// What `kopek ledger verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub entries: u64,
    pub books: u64,
    /// Σ of all books: 0 in a double-entry ledger.
    pub total: i64,
    pub problems: Vec<String>,
}

impl Billing {
    /// Proves the ledger: every stored balance equals the sum of its book's
    /// entries, all books sum to zero, the hash chain is unbroken, ids are
    /// dense, and every accrual has posted no more than it charged.
    pub fn verify(&self) -> Result<Verification, CoreError> {
        let e = self.err();
        let mut v = Verification::default();
        let mut sums: std::collections::BTreeMap<String, i64> = Default::default();
        let mut st = self
            .conn
            .prepare(
                "SELECT id, ts_ms, kind, account_id, debit, credit, amount, ext_id, who, why, hash
                 FROM entries ORDER BY id",
            )
            .map_err(&e)?;
        let mut rows = st.query([]).map_err(&e)?;
        let mut prev = GENESIS_HASH.to_string();
        let mut expect_id = 1i64;
        while let Some(r) = rows.next().map_err(&e)? {
            let id: i64 = r.get(0).map_err(&e)?;
            let kind: String = r.get(2).map_err(&e)?;
            let entry = NewEntry {
                ts_ms: r.get(1).map_err(&e)?,
                kind: "",
                account_id: r.get(3).map_err(&e)?,
                debit: r.get(4).map_err(&e)?,
                credit: r.get(5).map_err(&e)?,
                amount: Money(r.get(6).map_err(&e)?),
                ext_id: r.get(7).map_err(&e)?,
                who: r.get(8).map_err(&e)?,
                why: r.get(9).map_err(&e)?,
                ..Default::default()
            };
            let hash: String = r.get(10).map_err(&e)?;
            let entry = NewEntry {
                kind: crate::ledger::kind_static(&kind),
                ..entry
            };
            if id != expect_id {
                v.problems
                    .push(format!("entry ids jump from {} to {id}", expect_id - 1));
            }
            expect_id = id + 1;
            let want = entry_hash(&prev, id, &entry);
            if want != hash {
                v.problems.push(format!(
                    "entry {id}: hash chain broken (stored {hash}, computed {want})"
                ));
            }
            prev = hash;
            if entry.amount.0 <= 0 {
                v.problems.push(format!(
                    "entry {id}: amount {} is not positive",
                    entry.amount
                ));
            }
            *sums.entry(entry.debit.clone()).or_default() -= entry.amount.0;
            *sums.entry(entry.credit.clone()).or_default() += entry.amount.0;
            v.entries += 1;
        }
        let mut st = self
            .conn
            .prepare("SELECT book, balance FROM books")
            .map_err(&e)?;
        let stored = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(&e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&e)?;
        for (book, bal) in &stored {
            let sum = sums.remove(book).unwrap_or(0);
            if sum != *bal {
                v.problems.push(format!(
                    "book {book}: stored balance {} but its entries sum to {}",
                    Money(*bal),
                    Money(sum)
                ));
            }
            v.total += bal;
            v.books += 1;
        }
        for (book, sum) in sums {
            v.problems.push(format!(
                "book {book}: entries sum to {} but it has no balance row",
                Money(sum)
            ));
        }
        if v.total != 0 {
            v.problems
                .push(format!("the books sum to {}, not 0", Money(v.total)));
        }
        let over: Vec<(i64, String, i64, i64)> = self
            .conn
            .prepare("SELECT account_id, service, charged, posted FROM accruals WHERE posted > charged OR charged < 0")
            .map_err(&e)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        for (a, s, c, p) in over {
            v.problems.push(format!(
                "account {a} service {s}: posted {} exceeds charged {}",
                Money(p),
                Money(c)
            ));
        }
        self.verify_accruals(&mut v)?;
        Ok(v)
    }

    /// The accrued side: every accrual's charge is what its tariff version
    /// gives for its volumes (or fee days), and every account's rated
    /// bytes are its mirrored tier-2 bytes minus what is kept unrated.
    fn verify_accruals(&self, v: &mut Verification) -> Result<(), CoreError> {
        use crate::tariff::Tariff;
        let e = self.err();
        let mut tariffs: std::collections::HashMap<i64, Option<Tariff>> = Default::default();
        let mut st = self
            .conn
            .prepare(
                "SELECT x.account_id, x.period_start_ms, x.version_id, x.service, x.in_bytes, x.out_bytes, x.days,
                        x.charged, t.content
                 FROM accruals x JOIN tariff_versions t ON t.id = x.version_id",
            )
            .map_err(&e)?;
        let mut rows = st.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let (account, pstart, vid): (i64, i64, i64) = (
                r.get(0).map_err(&e)?,
                r.get(1).map_err(&e)?,
                r.get(2).map_err(&e)?,
            );
            let service: String = r.get(3).map_err(&e)?;
            let (in_b, out_b, days, charged): (i64, i64, i64, i64) = (
                r.get(4).map_err(&e)?,
                r.get(5).map_err(&e)?,
                r.get(6).map_err(&e)?,
                r.get(7).map_err(&e)?,
            );
            let t = tariffs.entry(vid).or_insert_with(|| {
                r.get::<_, String>(8)
                    .ok()
                    .and_then(|c| Tariff::from_toml(&c).ok())
            });
            let Some(t) = t else {
                v.problems
                    .push(format!("tariff version {vid} no longer parses"));
                continue;
            };
            let want = if service == crate::ledger::FEE_SERVICE {
                let p = crate::rating::period_of(self.timezone, pstart);
                crate::rating::fee_cumulative(t.monthly_fee, days.max(0) as u32, p.days).0
            } else if let Some(ix) = t.rule_by_name(&service) {
                crate::rating::rule_charge(
                    &t.rules[ix],
                    t.unit,
                    in_b.max(0) as u64,
                    out_b.max(0) as u64,
                )
                .0
            } else {
                0
            };
            if want != charged {
                v.problems.push(format!(
                    "account {account} service {service} version {vid}: charged {} but its volumes price at {}",
                    Money(charged),
                    Money(want)
                ));
            }
        }
        let bytes = |sql: &str| -> Result<std::collections::BTreeMap<String, i64>, CoreError> {
            let mut st = self.conn.prepare(sql).map_err(&e)?;
            let m = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(&e)?
                .collect::<Result<_, _>>()
                .map_err(&e)?;
            Ok(m)
        };
        let mirrored = bytes("SELECT account, sum(bytes) FROM usage_mirror GROUP BY account")?;
        let unrated = bytes("SELECT account, sum(bytes) FROM unrated GROUP BY account")?;
        let rated = bytes(
            "SELECT a.number, sum(x.in_bytes + x.out_bytes) FROM accruals x JOIN accounts a ON a.id = x.account_id
             GROUP BY a.number",
        )?;
        for (account, m) in &mirrored {
            let got = rated.get(account).copied().unwrap_or(0)
                + unrated.get(account).copied().unwrap_or(0);
            if got != *m {
                v.problems.push(format!(
                    "account {account}: tier 2 gave {m} bytes, {got} are rated or kept unrated"
                ));
            }
        }
        Ok(())
    }
}

impl Billing {
    /// Forgets mirrored tier-2 rows older than `before_ms` (tier 2's own
    /// retention removes them there; a late change to such a row could not
    /// be diffed any more and is treated as new). Returns the rows removed.
    pub fn prune_mirror(&mut self, before_ms: i64) -> Result<u64, CoreError> {
        let tx = self.write()?;
        let n = tx
            .execute(
                "DELETE FROM usage_mirror WHERE bucket_ms < ?1",
                params![before_ms],
            )
            .map_err(CoreError::from_sql)?;
        tx.commit().map_err(CoreError::from_sql)?;
        Ok(n as u64)
    }
}
