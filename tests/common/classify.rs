//! Classifier fixtures: the `kopek classifier run` process, tier-1 records
//! read back with `kopek raw dump`, tier 2 read with SQLite, and an oracle
//! that classifies tier-1 records independently of the classifier crate
//! (plain loops over plain lists: obviously right, not fast).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::{kopek_bin, run, signal};

/// Runs `kopek --config <config> <args>`, asserts success, returns stdout.
pub fn kopek(config: &Path, args: &[&str]) -> String {
    let out = run(Command::new(kopek_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KOPEK_LOG", "warn"));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `kopek --config <config> <args>` with its standard output a pipe
/// closed before the command writes (a reader that has gone: `| head` that
/// is done) and asserts a quiet, successful end: no panic, no message but
/// the command's own notes to the operator (`kopek: note: ...`).
pub fn kopek_into_closed_pipe(config: &Path, args: &[&str]) {
    let mut child = Command::new(kopek_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KOPEK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.lines().all(|l| l.starts_with("kopek: note: ")),
        "kopek {args:?} into a closed pipe: {:?}: {stderr}",
        out.status
    );
}

/// Like [`kopek`], parsing stdout as JSON.
pub fn kopek_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let text = kopek(config, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kopek {args:?}: {e}: {text}"))
}

/// A `kopek classifier run` process.
pub struct Classifier {
    pub config: PathBuf,
    pub state_dir: PathBuf,
    /// Where its standard error goes (`None`: the test's).
    pub log: Option<PathBuf>,
    child: Option<Child>,
    spawned: Instant,
}

impl Classifier {
    /// Starts a classifier and waits until it has opened tier 2 (its
    /// first stats file).
    pub fn start(config: &Path, state_dir: &Path) -> Classifier {
        Classifier::start_logged(config, state_dir, None)
    }

    /// [`Classifier::start`] with its log (standard error) appended to
    /// `log`, if given.
    pub fn start_logged(config: &Path, state_dir: &Path, log: Option<&Path>) -> Classifier {
        let mut c = Classifier {
            config: config.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            log: log.map(Path::to_path_buf),
            child: None,
            spawned: Instant::now(),
        };
        let _ = std::fs::remove_file(c.stats_file());
        c.spawn();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.stats_file().exists() {
            if let Some(status) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("classifier exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "classifier not ready in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    pub fn stats_file(&self) -> PathBuf {
        self.state_dir.join("classifier.stats.json")
    }

    /// Starts the process without waiting for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "classifier already running");
        let child = Command::new(kopek_bin())
            .arg("--config")
            .arg(&self.config)
            .args(["classifier", "run"])
            .env("KOPEK_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(match &self.log {
                None => Stdio::inherit(),
                Some(p) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("open the classifier's log")
                    .into(),
            })
            .spawn()
            .expect("spawn kopek classifier");
        self.child = Some(child);
        self.spawned = Instant::now();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Panics if the process has exited (it must only end when told to).
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait().unwrap()
        {
            panic!("classifier exited on its own: {status}");
        }
    }

    /// SIGKILL: the crash path.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("classifier had exited on its own before the kill: {status}");
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGHUP: reload the config.
    pub fn hup(&self) {
        signal(self.pid(), 1);
    }

    /// SIGTERM and wait: commit what is pending and exit 0.
    pub fn stop(&mut self) {
        // The daemon installs its signal handlers once tier 2 is open and
        // its worker runs; a SIGTERM before that ends it by the default
        // action. Give a process spawned just now time to get there.
        while self.child.is_some()
            && (self.spawned.elapsed() < Duration::from_millis(1_500)
                || !self.stats_file().exists())
        {
            self.assert_running();
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut child) = self.child.take() {
            signal(child.id(), 15);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "classifier exited with {status} on SIGTERM"
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "classifier ignored SIGTERM for 30 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// `kopek classifier stats --format json`.
    pub fn stats(&self) -> serde_json::Value {
        kopek_json(&self.config, &["classifier", "stats", "--format", "json"])
    }

    /// Waits until this process has committed `records` flow records, no
    /// segment is pending (the collector has sealed them all) and the host
    /// detail of every finished hour is computed. Panics after `timeout`.
    pub fn wait_caught_up(&mut self, records: u64, timeout: Duration) -> serde_json::Value {
        self.wait(records, timeout, true)
    }

    /// Like [`Self::wait_caught_up`] while a collector still writes (its
    /// open segment stays pending).
    pub fn wait_committed(&mut self, records: u64, timeout: Duration) -> serde_json::Value {
        self.wait(records, timeout, false)
    }

    fn wait(&mut self, records: u64, timeout: Duration, sealed: bool) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            let s = self.stats();
            let committed = s["committed"]["records"].as_u64().unwrap_or(0);
            assert!(
                committed <= records,
                "classifier committed {committed} records, tier 1 has {records}: {s}"
            );
            if committed == records
                && (!sealed || s["segments_pending"].as_u64() == Some(0))
                && hosts_pending(&self.state_dir) == 0
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "classifier not caught up in {timeout:?} ({records} records in tier 1): {s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Classifier {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Opens tier 2 read-only.
pub fn tier2(state_dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(
        state_dir.join("tier2.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn table_exists(c: &rusqlite::Connection, table: &str) -> bool {
    c.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        > 0
}

/// Hours that ended more than 10 minutes ago (the classifier's grace for
/// late flows) whose top-hosts detail is not computed yet.
pub fn hosts_pending(state_dir: &Path) -> i64 {
    if !state_dir.join("tier2.sqlite").exists() {
        return i64::MAX;
    }
    let c = tier2(state_dir);
    if !table_exists(&c, "hosts_hours") {
        return 0;
    }
    let now = chrono::Utc::now().timestamp_millis();
    c.query_row(
        "SELECT COUNT(*) FROM hosts_hours
         WHERE gen_pending > gen_done AND hour_ms + 3600000 + 600000 <= ?1",
        [now],
        |r| r.get(0),
    )
    .unwrap()
}

/// Whether tier 2 has read every sealed segment of `raw_dir` to its end
/// (and no segment is still open) and computed the host detail of every
/// finished hour.
pub fn tier2_caught_up(state_dir: &Path, raw_dir: &Path) -> bool {
    if !state_dir.join("tier2.sqlite").exists() {
        return false;
    }
    let mut segments = Vec::new();
    for e in std::fs::read_dir(raw_dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".open") {
            return false;
        }
        if let Some(stem) = name.strip_suffix(".kseg") {
            let (collector, id) = stem.rsplit_once('-').unwrap();
            segments.push((collector.to_string(), id.parse::<i64>().unwrap()));
        }
    }
    let c = tier2(state_dir);
    for (collector, id) in &segments {
        let done: Option<i64> = c
            .query_row(
                "SELECT done FROM progress WHERE collector = ?1 AND segment_id = ?2",
                rusqlite::params![collector, id],
                |r| r.get(0),
            )
            .ok();
        if done != Some(1) {
            return false;
        }
    }
    drop(c);
    hosts_pending(state_dir) == 0
}

/// Every row of `table`, each column rendered as text, sorted. The
/// `seq` column (which commit last touched a row) is left out: two runs
/// that commit in different batches number their commits differently.
pub fn table_rows(state_dir: &Path, table: &str) -> Vec<Vec<String>> {
    let c = tier2(state_dir);
    let cols: Vec<String> = c
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') WHERE name <> 'seq'"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut st = c
        .prepare(&format!("SELECT {} FROM {table}", cols.join(", ")))
        .unwrap();
    let n = st.column_count();
    let mut rows: Vec<Vec<String>> = st
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => v.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            format!("'{}'", String::from_utf8_lossy(t))
                        }
                        rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    rows
}

/// One tier-1 flow record as `kopek raw dump --format csv` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRec {
    pub exporter: IpAddr,
    pub first_ms: i64,
    pub last_ms: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub bytes: u64,
    pub packets: u64,
}

/// Every flow record of the tier 1 in `state_dir`.
pub fn raw_dump(state_dir: &Path) -> Vec<RawRec> {
    let out = run(Command::new(kopek_bin())
        .args(["raw", "--state-dir"])
        .arg(state_dir)
        .args(["dump", "--format", "csv"]));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "exporter,domain,kind,first_ms,last_ms,src,dst,src_port,dst_port,protocol,direction,in_if,out_if,bytes,packets,bytes_raw,packets_raw,sampling"
        )
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            RawRec {
                exporter: f[0].parse().unwrap(),
                first_ms: f[3].parse().unwrap(),
                last_ms: f[4].parse().unwrap(),
                src: f[5].parse().unwrap(),
                dst: f[6].parse().unwrap(),
                src_port: f[7].parse().unwrap(),
                dst_port: f[8].parse().unwrap(),
                protocol: f[9].parse().unwrap(),
                bytes: f[13].parse().unwrap(),
                packets: f[14].parse().unwrap(),
            }
        })
        .collect()
}

/// Which direction of a class is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Both,
    Inbound,
    Outbound,
}

/// One class as the oracle sees it: every prefix of its inline networks
/// and list files.
#[derive(Debug, Clone)]
pub struct ClassSpec {
    pub name: String,
    pub nets: Vec<IpNet>,
    pub count: Count,
}

/// A binding: `account` holds `net` during `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct Bind {
    pub account: String,
    pub net: IpNet,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Bind {
    /// A static binding (valid for all time).
    pub fn always(account: &str, net: &str) -> Bind {
        Bind {
            account: account.to_string(),
            net: net_of(net),
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        }
    }
}

/// `10.0.0.0/8` or a bare address (a host prefix).
pub fn net_of(s: &str) -> IpNet {
    s.parse::<IpNet>()
        .unwrap_or_else(|_| IpNet::from(s.parse::<IpAddr>().unwrap()))
}

/// Prefixes of a list file: one per line, `#` comments, blank lines.
pub fn read_list(text: &str) -> Vec<IpNet> {
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(net_of)
        .collect()
}

/// Who a tier-2 row belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Account(String),
    /// Unattributed (or transit) traffic of an address.
    Address(IpAddr),
}

/// A tier-2 row key with the buckets summed away.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub subject: Subject,
    pub class: String,
    pub dir: &'static str,
    pub point: String,
    /// `None` for unattributed rows (which have no billed flag).
    pub billed: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
}

impl Sums {
    pub fn add(&mut self, o: Sums) {
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.flows += o.flows;
    }
}

/// The classification rules, restated from the config the test wrote.
#[derive(Debug, Clone)]
pub struct Oracle {
    /// In config order.
    pub classes: Vec<ClassSpec>,
    pub default_class: String,
    pub subscribers: Vec<IpNet>,
    pub bindings: Vec<Bind>,
    /// Billing points as (exporter, point name); empty: all billed as "*".
    pub points: Vec<(IpAddr, String)>,
}

impl Oracle {
    /// The class of a remote address: the longest prefix in any list; the
    /// same prefix in two lists goes to the class listed first; no match:
    /// the default class.
    pub fn class_of(&self, remote: IpAddr) -> (&str, Count) {
        let mut best: Option<(u8, usize)> = None;
        for (i, c) in self.classes.iter().enumerate() {
            for n in &c.nets {
                if n.contains(&remote) && best.is_none_or(|(len, _)| n.prefix_len() > len) {
                    best = Some((n.prefix_len(), i));
                }
            }
        }
        match best {
            Some((_, i)) => (&self.classes[i].name, self.classes[i].count),
            None => match self.classes.iter().find(|c| c.name == self.default_class) {
                Some(c) => (&c.name, c.count),
                None => (&self.default_class, Count::Both),
            },
        }
    }

    /// The account holding `addr` at `t_ms`: among bindings covering both,
    /// the most specific prefix, then the latest start.
    pub fn account_of(&self, addr: IpAddr, t_ms: i64) -> Option<&str> {
        self.bindings
            .iter()
            .filter(|b| b.net.contains(&addr) && b.from_ms <= t_ms && t_ms < b.to_ms)
            .max_by_key(|b| (b.net.prefix_len(), b.from_ms))
            .map(|b| b.account.as_str())
    }

    fn point_of(&self, r: &RawRec) -> Option<String> {
        if self.points.is_empty() {
            return Some("*".into());
        }
        self.points
            .iter()
            .find(|(e, _)| *e == r.exporter)
            .map(|(_, n)| n.clone())
    }

    /// What one record adds to tier 2, buckets summed: one entry per
    /// subscriber side (source: out, destination: in), or one transit
    /// entry under the source address when neither side is a subscriber.
    pub fn entries(&self, r: &RawRec) -> Vec<(Key, Sums)> {
        let t = r.first_ms;
        let point = self.point_of(r);
        let sums = Sums {
            bytes: r.bytes,
            packets: r.packets,
            flows: 1,
        };
        let mut out = Vec::new();
        let mut side = |subject: IpAddr, dir: &'static str, remote: IpAddr| {
            let (class, count) = self.class_of(remote);
            let (subject, billed) = match self.account_of(subject, t) {
                Some(a) => {
                    let counted = matches!(
                        (count, dir),
                        (Count::Both, "in" | "out")
                            | (Count::Inbound, "in")
                            | (Count::Outbound, "out")
                    );
                    (
                        Subject::Account(a.to_string()),
                        Some(point.is_some() && counted),
                    )
                }
                None => (Subject::Address(subject), None),
            };
            out.push((
                Key {
                    subject,
                    class: class.to_string(),
                    dir,
                    point: point.clone().unwrap_or_else(|| "-".into()),
                    billed,
                },
                sums,
            ));
        };
        let is_sub = |a: IpAddr| {
            self.account_of(a, t).is_some() || self.subscribers.iter().any(|n| n.contains(&a))
        };
        let (src_sub, dst_sub) = (is_sub(r.src), is_sub(r.dst));
        if src_sub {
            side(r.src, "out", r.dst);
        }
        if dst_sub {
            side(r.dst, "in", r.src);
        }
        if !src_sub && !dst_sub {
            side(r.src, "transit", r.dst);
        }
        out
    }

    /// Totals of every record, per key.
    pub fn totals<'a>(&self, records: impl IntoIterator<Item = &'a RawRec>) -> BTreeMap<Key, Sums> {
        let mut m: BTreeMap<Key, Sums> = BTreeMap::new();
        for r in records {
            for (k, s) in self.entries(r) {
                m.entry(k).or_default().add(s);
            }
        }
        m
    }
}

/// Tier-2 totals per key (traffic and unattributed, buckets summed).
pub fn tier2_totals(state_dir: &Path) -> BTreeMap<Key, Sums> {
    let c = tier2(state_dir);
    let mut m: BTreeMap<Key, Sums> = BTreeMap::new();
    let dir = |s: String| -> &'static str {
        match s.as_str() {
            "in" => "in",
            "out" => "out",
            "transit" => "transit",
            other => panic!("direction {other:?} in tier 2"),
        }
    };
    let mut st = c
        .prepare(
            "SELECT account, class, direction, point, billed, SUM(bytes), SUM(packets), SUM(flows)
             FROM traffic GROUP BY account, class, direction, point, billed",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                Key {
                    subject: Subject::Account(r.get(0)?),
                    class: r.get(1)?,
                    dir: dir(r.get(2)?),
                    point: r.get(3)?,
                    billed: Some(r.get::<_, i64>(4)? != 0),
                },
                Sums {
                    bytes: r.get::<_, i64>(5)? as u64,
                    packets: r.get::<_, i64>(6)? as u64,
                    flows: r.get::<_, i64>(7)? as u64,
                },
            ))
        })
        .unwrap();
    for row in rows {
        let (k, s) = row.unwrap();
        assert!(m.insert(k, s).is_none());
    }
    let mut st = c
        .prepare(
            "SELECT address, class, direction, point, SUM(bytes), SUM(packets), SUM(flows)
             FROM unattributed GROUP BY address, class, direction, point",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                Key {
                    subject: Subject::Address(r.get::<_, String>(0)?.parse().unwrap()),
                    class: r.get(1)?,
                    dir: dir(r.get(2)?),
                    point: r.get(3)?,
                    billed: None,
                },
                Sums {
                    bytes: r.get::<_, i64>(4)? as u64,
                    packets: r.get::<_, i64>(5)? as u64,
                    flows: r.get::<_, i64>(6)? as u64,
                },
            ))
        })
        .unwrap();
    for row in rows {
        let (k, s) = row.unwrap();
        assert!(m.insert(k, s).is_none());
    }
    m
}

/// Asserts two keyed totals are equal, naming the first differences.
pub fn assert_same<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
) {
    let mut bad = Vec::new();
    for (k, v) in want {
        if got.get(k) != Some(v) {
            bad.push(format!("{k:?}: tier 2 {:?}, expected {v:?}", got.get(k)));
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            bad.push(format!("{k:?}: tier 2 {v:?}, expected nothing"));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} keys differ, e.g.:\n{}",
        bad.len(),
        want.len(),
        bad[..bad.len().min(8)].join("\n")
    );
}

/// The pro-rata split of `total` over the `width_ms` buckets that
/// `[first_ms, last_ms)` covers: each bucket gets the floor of its share,
/// the units left go one each to the largest remainders (ties: the earlier
/// bucket). A flow without duration lies in the bucket of its start.
pub fn split_parts(total: u64, first_ms: i64, last_ms: i64, width_ms: i64) -> Vec<(i64, u64)> {
    let start = first_ms.div_euclid(width_ms) * width_ms;
    if last_ms <= first_ms {
        return vec![(start, total)];
    }
    let dur = (last_ms - first_ms) as u128;
    let mut parts = Vec::new();
    let mut b = start;
    while b < last_ms {
        let overlap = (last_ms.min(b + width_ms) - first_ms.max(b)) as u128;
        let num = total as u128 * overlap;
        parts.push((b, (num / dur) as u64, num % dur));
        b += width_ms;
    }
    let left = total - parts.iter().map(|p| p.1).sum::<u64>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].2.cmp(&parts[a].2).then(a.cmp(&b)));
    for &i in order.iter().take(left as usize) {
        parts[i].1 += 1;
    }
    parts.into_iter().map(|(b, p, _)| (b, p)).collect()
}

/// `kopek gen` to a collector: returns its one-line JSON report.
pub fn gen_stream(port: u16, args: &[&str]) -> serde_json::Value {
    let out = run(Command::new(kopek_bin())
        .arg("gen")
        .arg("--target")
        .arg(format!("127.0.0.1:{port}"))
        .args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small xorshift PRNG for seeded test schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}
