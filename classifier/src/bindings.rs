//! Which account owns an address at a given time.
//!
//! Two sources feed one time-indexed [`BindingIndex`]:
//! - static bindings: an account's fixed addresses and prefixes (incl. IPv6
//!   delegated prefixes), from the `bindings_file` (`account,prefix` lines),
//!   valid for all time;
//! - session bindings: an address bound from T1 to T2 (pppd hooks, RADIUS
//!   accounting, `kopek binding add|end`), kept in the binding registry
//!   ([`Registry`], `<state_dir>/bindings.sqlite`).
//!
//! A lookup takes the most specific bound prefix that has a binding covering
//! the time; among bindings of one prefix the latest start wins. The
//! registry refuses two overlapping bindings of the same prefix, so that
//! case only arises between the static file and the registry.
//!
//! The classifier only reads the registry; `kopek binding` (and later the
//! pppd hooks and RADIUS, then the core) write it. Every write bumps a
//! sequence number, so readers pick up changes incrementally.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use kopek_config::parse_net;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::aggregate::FastMap;
use crate::lpm::{PrefixMap, PrefixMapBuilder, Strides};
use crate::probe::{self, ProbeMap};

/// The registry file name inside the state dir.
pub const REGISTRY_FILE: &str = "bindings.sqlite";
/// How long a writer waits for another writer's transaction.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest account id accepted.
pub const MAX_ACCOUNT_LEN: usize = 64;
/// Start time of static bindings: the beginning of time.
pub const FOREVER_START_MS: i64 = i64::MIN;

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("{file}: {source}")]
    Db {
        file: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {why}")]
    Line {
        file: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{net} is already bound to account {account:?} from {from} to {to} (binding {id}); end it first"
    )]
    Overlap {
        net: IpNet,
        account: String,
        id: i64,
        from: String,
        to: String,
    },
    #[error("no open binding of {0} started before the given end time")]
    NotOpen(IpNet),
}

/// One binding: `account` holds `net` during `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Registry row id; static-file bindings get negative ids (−line).
    pub id: i64,
    pub account: String,
    pub net: IpNet,
    pub from_ms: i64,
    /// `None`: still bound.
    pub to_ms: Option<i64>,
    /// Who recorded it: `file`, `cli`, `pppd`, `radius`.
    pub source: String,
    /// Session id of the source (pppd link, Acct-Session-Id), if any.
    pub session: Option<String>,
}

/// Checks an account id: 1..=64 printable characters, no spaces or commas.
pub fn check_account(a: &str) -> Result<(), BindingError> {
    if a.is_empty()
        || a.len() > MAX_ACCOUNT_LEN
        || !a
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ',' && c != '"')
    {
        return Err(BindingError::Invalid(format!(
            "account id must be 1-{MAX_ACCOUNT_LEN} printable ASCII characters without spaces, commas or quotes, got {a:?}"
        )));
    }
    Ok(())
}

/// Reads a static bindings file: `account,prefix` per line (a bare address
/// is a host prefix); `#` comments and blank lines are ignored.
pub fn read_static(path: &Path) -> Result<Vec<Binding>, BindingError> {
    let text = kopek_config::files::read_limited_text(path, kopek_config::files::MAX_LIST_BYTES)
        .map_err(|source| BindingError::Read {
            file: path.to_path_buf(),
            source,
        })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: String| BindingError::Line {
            file: path.to_path_buf(),
            line: i + 1,
            why,
        };
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (account, net) = line
            .split_once(',')
            .ok_or_else(|| bad(format!("expected `account,prefix`, got {line:?}")))?;
        let account = account.trim();
        check_account(account).map_err(|e| bad(e.to_string()))?;
        let net = parse_net(net).ok_or_else(|| {
            bad(format!(
                "expected a network like 10.1.2.0/24 or an address, got {:?}",
                net.trim()
            ))
        })?;
        out.push(Binding {
            id: -((i + 1) as i64),
            account: account.to_string(),
            net,
            from_ms: FOREVER_START_MS,
            to_ms: None,
            source: "file".into(),
            session: None,
        });
    }
    Ok(out)
}

/// The binding registry: one SQLite file, written by binding producers,
/// read by the classifier.
pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bindings (
    id      INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    prefix  TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms   INTEGER,
    source  TEXT NOT NULL,
    session TEXT,
    seq     INTEGER NOT NULL,
    CHECK (to_ms IS NULL OR to_ms > from_ms)
);
CREATE INDEX IF NOT EXISTS bindings_seq ON bindings (seq);
CREATE INDEX IF NOT EXISTS bindings_prefix ON bindings (prefix, from_ms);
";

impl Registry {
    /// Opens (creating if needed) the registry in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Registry, BindingError> {
        let path = state_dir.join(REGISTRY_FILE);
        let db = |source| BindingError::Db {
            file: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Registry { conn, path })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> BindingError {
        db_error(self.path.clone())
    }

    /// Records that `account` holds `net` from `from_ms` (to `to_ms`, or
    /// until ended). Refuses a binding overlapping another of the same
    /// prefix. Returns the new binding's id.
    pub fn add(
        &mut self,
        account: &str,
        net: IpNet,
        from_ms: i64,
        to_ms: Option<i64>,
        source: &str,
        session: Option<&str>,
    ) -> Result<i64, BindingError> {
        check_account(account)?;
        let net = net.trunc();
        if let Some(to) = to_ms
            && to <= from_ms
        {
            return Err(BindingError::Invalid(format!(
                "the end ({}) must be after the start ({})",
                fmt_ms(Some(to)),
                fmt_ms(Some(from_ms))
            )));
        }
        let db = db_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let clash: Option<(i64, String, i64, Option<i64>)> = tx
            .query_row(
                "SELECT id, account, from_ms, to_ms FROM bindings
                 WHERE prefix = ?1 AND (to_ms IS NULL OR to_ms > ?2)
                   AND (?3 IS NULL OR from_ms < ?3)
                 ORDER BY from_ms LIMIT 1",
                params![net.to_string(), from_ms, to_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(&db)?;
        if let Some((id, account, from, to)) = clash {
            return Err(BindingError::Overlap {
                net,
                account,
                id,
                from: fmt_ms(Some(from)),
                to: fmt_ms(to),
            });
        }
        tx.execute(
            "INSERT INTO bindings (account, prefix, from_ms, to_ms, source, session, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, (SELECT COALESCE(MAX(seq), 0) + 1 FROM bindings))",
            params![account, net.to_string(), from_ms, to_ms, source, session],
        )
        .map_err(&db)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(&db)?;
        Ok(id)
    }

    /// Ends the open binding of `net` at `at_ms`. Returns the binding.
    pub fn end(&mut self, net: IpNet, at_ms: i64) -> Result<Binding, BindingError> {
        let net = net.trunc();
        let db = db_error(self.path.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM bindings WHERE prefix = ?1 AND to_ms IS NULL AND from_ms < ?2",
                params![net.to_string(), at_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(&db)?;
        let Some(id) = id else {
            return Err(BindingError::NotOpen(net));
        };
        tx.execute(
            "UPDATE bindings SET to_ms = ?2, seq = (SELECT MAX(seq) + 1 FROM bindings) WHERE id = ?1",
            params![id, at_ms],
        )
        .map_err(&db)?;
        let b = tx
            .query_row(
                &format!("{SELECT_BINDING} WHERE id = ?1"),
                params![id],
                row_to_binding,
            )
            .map_err(&db)?;
        tx.commit().map_err(&db)?;
        b.map_err(BindingError::Invalid)
    }

    /// Bindings changed after `seq` (inserted or ended), and the newest seq.
    /// Read by the classifier to keep its index current.
    pub fn changes_since(&self, seq: i64) -> Result<(Vec<Binding>, i64), BindingError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, account, prefix, from_ms, to_ms, source, session, seq
                 FROM bindings WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(self.db())?;
        let mut out = Vec::new();
        let mut max = seq;
        let rows = stmt
            .query_map(params![seq], |r| {
                Ok((row_to_binding(r)?, r.get::<_, i64>(7)?))
            })
            .map_err(self.db())?;
        for row in rows {
            let (b, s) = row.map_err(self.db())?;
            max = max.max(s);
            out.push(b.map_err(BindingError::Invalid)?);
        }
        Ok((out, max))
    }

    /// Bindings of `account` and/or covering `addr` at some time, and/or
    /// active at `at_ms`; newest first; at most `limit`.
    pub fn list(
        &self,
        account: Option<&str>,
        net: Option<IpNet>,
        at_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Binding>, BindingError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{SELECT_BINDING} WHERE (?1 IS NULL OR account = ?1)
                   AND (?2 IS NULL OR (from_ms <= ?2 AND (to_ms IS NULL OR to_ms > ?2)))
                 ORDER BY from_ms DESC, id DESC"
            ))
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![account, at_ms], row_to_binding)
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let b = row.map_err(self.db())?.map_err(BindingError::Invalid)?;
            if let Some(n) = net
                && !(b.net.contains(&n) || n.contains(&b.net))
            {
                continue;
            }
            out.push(b);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// Maps SQLite errors to [`BindingError::Db`] naming `file`.
fn db_error(file: PathBuf) -> impl Fn(rusqlite::Error) -> BindingError {
    move |source| BindingError::Db {
        file: file.clone(),
        source,
    }
}

const SELECT_BINDING: &str =
    "SELECT id, account, prefix, from_ms, to_ms, source, session FROM bindings";

type RowResult = Result<Binding, String>;

fn row_to_binding(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let prefix: String = r.get(2)?;
    let id: i64 = r.get(0)?;
    let Ok(net) = prefix.parse::<IpNet>() else {
        return Ok(Err(format!(
            "binding {id} has a malformed prefix {prefix:?}"
        )));
    };
    Ok(Ok(Binding {
        id,
        account: r.get(1)?,
        net,
        from_ms: r.get(3)?,
        to_ms: r.get(4)?,
        source: r.get(5)?,
        session: r.get(6)?,
    }))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, `-inf` for static, `open` for None.
pub fn fmt_ms(ms: Option<i64>) -> String {
    match ms {
        None => "open".into(),
        Some(FOREVER_START_MS) => "-inf".into(),
        Some(ms) => chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| ms.to_string()),
    }
}

/// One bound prefix and its bindings over time.
#[derive(Debug, Clone)]
struct Slot {
    net: IpNet,
    /// (from_ms, to_ms or i64::MAX, account index, binding id), sorted by from.
    spans: Vec<(i64, i64, u32, i64)>,
    /// The next less specific bound prefix (fallback when no span covers t).
    parent: Option<u32>,
}

/// A bound prefix as the hash maps hold it: when it has exactly one
/// binding, its span and account are right here (one memory access per
/// lookup, the common case); otherwise `account` is [`MULTI`] and the
/// slot has the list.
#[derive(Debug, Clone, Copy, Default)]
struct HostEntry {
    slot: u32,
    account: u32,
    from_ms: i64,
    to_ms: i64,
}

const MULTI: u32 = u32::MAX;

/// One bit per /16 of IPv4 (or per top 16 bits of IPv6) that holds any
/// bound prefix: most remote addresses are answered "nobody's" from 8 KiB
/// that stay in cache, without touching the hash map or the trie.
#[derive(Debug, Clone)]
pub(crate) struct Coverage(Vec<u64>);

impl Default for Coverage {
    fn default() -> Self {
        Coverage(vec![0; 1024])
    }
}

impl Coverage {
    pub(crate) fn add(&mut self, net: IpNet) {
        let (top, len) = match net {
            IpNet::V4(n) => ((u32::from(n.addr()) >> 16) as usize, n.prefix_len()),
            IpNet::V6(n) => ((u128::from(n.addr()) >> 112) as usize, n.prefix_len()),
        };
        let span = if len >= 16 { 1 } else { 1usize << (16 - len) };
        for i in top..top + span {
            self.0[i >> 6] |= 1 << (i & 63);
        }
    }

    #[inline]
    pub(crate) fn may_contain(&self, addr: IpAddr) -> bool {
        let top = match addr {
            IpAddr::V4(a) => (u32::from(a) >> 16) as usize,
            IpAddr::V6(a) => (u128::from(a) >> 112) as usize,
        };
        self.0[top >> 6] & (1 << (top & 63)) != 0
    }
}

/// The in-memory time-indexed binding structure the classifier queries.
#[derive(Debug, Default)]
pub struct BindingIndex {
    /// Account ids by index; append-only, so indices stay valid.
    accounts: Vec<String>,
    account_ix: HashMap<String, u32>,
    slots: Vec<Slot>,
    /// Per slot: its one span inline (account [`MULTI`] when it has none or
    /// several), so a prefix with one binding (an IPv6 /64, the common
    /// case) is answered without following the slot's span list.
    only: Vec<HostEntry>,
    slot_of: HashMap<IpNet, u32>,
    hosts_v4: ProbeMap<HostEntry>,
    hosts_v6: FastMap<u128, HostEntry>,
    /// Bound IPv6 /64s (the usual delegation to a subscriber) by their
    /// upper 64 bits: answered without a walk down the trie, while no
    /// longer non-host IPv6 prefix is bound (`v6_below_64`).
    v6_64: ProbeMap<HostEntry>,
    v6_below_64: bool,
    cover_v4: Coverage,
    cover_v6: Coverage,
    /// Non-host prefixes; rebuilt when the set of such prefixes changes.
    nets: PrefixMap,
    nets_dirty: bool,
    span_of: HashMap<i64, u32>,
}

impl BindingIndex {
    pub fn new() -> BindingIndex {
        BindingIndex::default()
    }

    /// Adds a binding, or updates it (same id: an end time was set).
    pub fn apply(&mut self, b: &Binding) {
        let acc = self.intern(&b.account);
        let net = b.net.trunc();
        let slot = match self.slot_of.get(&net) {
            Some(&s) => s,
            None => {
                let s = self.slots.len() as u32;
                self.slots.push(Slot {
                    net,
                    spans: Vec::new(),
                    parent: None,
                });
                self.only.push(HostEntry {
                    slot: s,
                    account: MULTI,
                    from_ms: 0,
                    to_ms: 0,
                });
                self.slot_of.insert(net, s);
                match net {
                    IpNet::V4(_) => self.cover_v4.add(net),
                    IpNet::V6(n) => {
                        self.cover_v6.add(net);
                        self.v6_below_64 |= n.prefix_len() > 64 && n.prefix_len() < 128;
                    }
                }
                self.nets_dirty = true;
                s
            }
        };
        let to = b.to_ms.unwrap_or(i64::MAX);
        let old_slot = self.span_of.get(&b.id).copied();
        if let Some(old) = old_slot {
            self.slots[old as usize].spans.retain(|s| s.3 != b.id);
        }
        let spans = &mut self.slots[slot as usize].spans;
        let at = spans.partition_point(|s| (s.0, s.3) < (b.from_ms, b.id));
        spans.insert(at, (b.from_ms, to, acc, b.id));
        self.span_of.insert(b.id, slot);
        self.refresh(slot);
        if let Some(old) = old_slot.filter(|&o| o != slot) {
            self.refresh(old);
        }
    }

    /// Re-derives a slot's inline span and, for a host, its hash entry.
    fn refresh(&mut self, slot: u32) {
        let sl = &self.slots[slot as usize];
        let entry = match sl.spans.as_slice() {
            [(from_ms, to_ms, account, _)] => HostEntry {
                slot,
                account: *account,
                from_ms: *from_ms,
                to_ms: *to_ms,
            },
            _ => HostEntry {
                slot,
                account: MULTI,
                from_ms: 0,
                to_ms: 0,
            },
        };
        self.only[slot as usize] = entry;
        match sl.net {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                self.hosts_v4.insert(u64::from(u32::from(n.addr())), entry);
            }
            IpNet::V6(n) if n.prefix_len() == 128 => {
                self.hosts_v6.insert(u128::from(n.addr()), entry);
            }
            IpNet::V6(n) if n.prefix_len() == 64 => {
                let upper = (u128::from(n.addr()) >> 64) as u64;
                // The one /64 whose key is the empty marker takes the trie.
                if upper != probe::EMPTY {
                    self.v6_64.insert(upper, entry);
                }
            }
            _ => {}
        }
    }

    /// Rebuilds derived structures after a round of [`Self::apply`].
    pub fn finish(&mut self) {
        if !self.nets_dirty {
            return;
        }
        self.nets_dirty = false;
        let mut order: Vec<u32> = (0..self.slots.len() as u32).collect();
        order.sort_by_key(|&s| self.slots[s as usize].net.prefix_len());
        let mut b = PrefixMapBuilder::new(Strides::COMPACT);
        for &s in &order {
            let net = self.slots[s as usize].net;
            let parent = net
                .supernet()
                .and_then(|sup| self.nets_lookup_in_slots(sup));
            self.slots[s as usize].parent = parent;
            if !is_host(net) {
                b.insert(net, s);
            }
        }
        self.nets = b.build();
    }

    /// The most specific bound prefix containing `net` (slow path, build only).
    fn nets_lookup_in_slots(&self, mut net: IpNet) -> Option<u32> {
        loop {
            if let Some(&s) = self.slot_of.get(&net) {
                return Some(s);
            }
            net = net.supernet()?;
        }
    }

    /// The entry of the most specific bound prefix containing `addr`
    /// (its host binding, its /64, or the trie's answer); `None` when
    /// there is none. Most remote addresses are answered by the coverage
    /// bitmap alone.
    #[inline]
    fn entry_of(&self, addr: IpAddr) -> Option<&HostEntry> {
        match addr {
            IpAddr::V4(a) => {
                if !self.cover_v4.may_contain(addr) {
                    return None;
                }
                let a = u32::from(a);
                if let Some(e) = self.hosts_v4.get(u64::from(a)) {
                    return Some(e);
                }
                self.nets.lookup_v4(a).map(|s| &self.only[s as usize])
            }
            IpAddr::V6(a) => {
                if !self.cover_v6.may_contain(addr) {
                    return None;
                }
                let a = u128::from(a);
                if !self.hosts_v6.is_empty()
                    && let Some(e) = self.hosts_v6.get(&a)
                {
                    return Some(e);
                }
                let upper = (a >> 64) as u64;
                if !self.v6_below_64
                    && upper != probe::EMPTY
                    && let Some(e) = self.v6_64.get(upper)
                {
                    return Some(e);
                }
                self.nets.lookup_v6(a).map(|s| &self.only[s as usize])
            }
        }
    }

    /// Asks the CPU to bring what [`Self::lookup`] of `addr` reads first
    /// into the cache (a caller that knows its next addresses early); no
    /// effect on the index.
    #[inline]
    pub fn prefetch(&self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) if self.cover_v4.may_contain(addr) => {
                self.hosts_v4.prefetch(u64::from(u32::from(a)));
            }
            IpAddr::V6(a) if !self.v6_below_64 && self.cover_v6.may_contain(addr) => {
                self.v6_64.prefetch((u128::from(a) >> 64) as u64);
            }
            _ => {}
        }
    }

    /// The account holding `addr` at `t_ms`, as an index into
    /// [`Self::account`].
    #[inline]
    pub fn lookup(&self, addr: IpAddr, t_ms: i64) -> Option<u32> {
        let e = self.entry_of(addr)?;
        if e.account != MULTI && e.from_ms <= t_ms && t_ms < e.to_ms {
            return Some(e.account);
        }
        // One binding, not at t: the next less specific prefix decides.
        let mut slot = match e.account {
            MULTI => Some(e.slot),
            _ => self.slots[e.slot as usize].parent,
        };
        while let Some(s) = slot {
            let one = &self.only[s as usize];
            if one.account != MULTI && one.from_ms <= t_ms && t_ms < one.to_ms {
                return Some(one.account);
            }
            let sl = &self.slots[s as usize];
            // Latest span starting at or before t that still covers t.
            let end = sl.spans.partition_point(|x| x.0 <= t_ms);
            for x in sl.spans[..end].iter().rev() {
                if x.1 > t_ms {
                    return Some(x.2);
                }
            }
            slot = sl.parent;
        }
        None
    }

    /// The account holding `addr` at every time of `[t0_ms, t1_ms]`, when
    /// that is cheap to prove (`Some`: the same answer [`Self::lookup`]
    /// gives for any time in the interval); `None` when the answer may
    /// change within it, so ask [`Self::lookup`] per time. Proven: an
    /// address outside every bound prefix, and an address whose most
    /// specific bound prefix has one binding spanning the whole interval
    /// (static bindings, and a session bound for all of a tier-1 block).
    #[inline]
    pub fn lookup_over(&self, addr: IpAddr, t0_ms: i64, t1_ms: i64) -> Option<Option<u32>> {
        let Some(one) = self.entry_of(addr) else {
            return Some(None);
        };
        (one.account != MULTI && one.from_ms <= t0_ms && t1_ms < one.to_ms)
            .then_some(Some(one.account))
    }

    pub fn account(&self, ix: u32) -> &str {
        &self.accounts[ix as usize]
    }

    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// Bound prefixes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn intern(&mut self, a: &str) -> u32 {
        if let Some(&i) = self.account_ix.get(a) {
            return i;
        }
        let i = self.accounts.len() as u32;
        self.accounts.push(a.to_string());
        self.account_ix.insert(a.to_string(), i);
        i
    }
}

fn is_host(n: IpNet) -> bool {
    n.prefix_len() == n.max_prefix_len()
}

#[cfg(test)]
mod tests;
