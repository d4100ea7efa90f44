//! Classification + aggregation speed from tier 1, on one core, with a
//! full-size setup: 10,000 accounts (IPv4 /32 and IPv6 /64 bindings) and
//! 500,000 IPv4 + 50,000 IPv6 prefixes in the class lists. Also: how the
//! rate compares with reading tier 1 from disk (re-aggregation must be
//! bounded by the disk, not the CPU).
//!
//! ```text
//! cargo bench -p kopek-classifier --bench classify [-- --flows N --runs N
//!     --skip-engine --skip-rows --skip-hosts --skip-rebuild --rebuild-hosts
//!     --rebuild-threads N --uniform-remotes --flows-per-s N]
//! ```
//!
//! Stages, each a median of `--runs`:
//! - `read`: tier 1 → decoded blocks (checksum, zstd, columns), warm page
//!   cache;
//! - `classify`: read + classify + aggregate into the in-memory batch, the
//!   engine's way ([`add_columns`]: each distinct address of a block judged
//!   once, no rows built; the batch is cleared every 4 M records as a
//!   commit would);
//! - `rows` (unless `--skip-rows`): the same with every block turned into
//!   `FlowRecord` rows and every record judged on its own ([`add_block`]),
//!   for comparison;
//! - `engine`: the real [`Engine::catch_up`] over the segments into a fresh
//!   SQLite tier 2 (commits included), once with `classifier.threads = 1`
//!   and once (`engine xN`) with one worker thread per CPU, each reading
//!   its own sealed segment;
//! - `rebuild` (unless `--skip-rebuild`): `kopek classifier rebuild` over
//!   the tier 2 the engine stages left ([`rebuild`]: a new tier 2 from all
//!   of tier 1 with the top-hosts pass, compared with the old one and
//!   installed), i.e. what re-aggregating tier 1 takes an operator; the
//!   host detail left to the daemon unless `--rebuild-hosts`; with
//!   `--skip-engine` the daemon's tier 2 is first brought up to date
//!   (untimed: a rebuild counts into it whatever it had not counted);
//! - `disk`: sequential read of the segment files after dropping them from
//!   the page cache (`posix_fadvise(DONTNEED)`), i.e. what the disk gives.
//!
//! The flows come from the collector's generator (10,000 subscribers,
//! 10 % IPv6) with remote addresses redrawn from inside the class-list
//! prefixes, so every lookup walks a realistic path of the full table.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kopek_classifier::aggregate::{Batch, Rules, Scratch, add_block, add_columns};
use kopek_classifier::bindings::{BindingIndex, read_static};
use kopek_classifier::classes::{ClassTable, NetSet};
use kopek_classifier::engine::Engine;
use kopek_classifier::points::PointMatcher;
use kopek_classifier::rebuild::{Lists, RebuildOptions, rebuild};
use kopek_classifier::versions::ClassVersions;
use kopek_collector::generator::{Encoder, FlowGen, GenProfile, IpfixConfig, IpfixEncoder};
use kopek_collector::segment::{
    Block, FlowColumns, FlowSink, RawStore, SegmentReader, SegmentWriter, WriterOptions,
};
use kopek_collector::{FlowRecord, LossRecord};
use kopek_config::{Compression, Config, Durability};

const DEFAULT_FLOWS: u64 = 10_000_000;
const DEFAULT_RUNS: usize = 3;
const ACCOUNTS: u32 = 10_000;
const V4_PREFIXES: usize = 500_000;
const V6_PREFIXES: usize = 50_000;
const CHUNK: usize = 1 << 20;
const BLOCK_RECORDS: usize = 16_384;
const SEGMENT_FLOWS: u64 = 5_000_000;
const TARGET_RECORDS_PER_S: f64 = 5_000_000.0;
const EXPORTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Opts {
    flows: u64,
    runs: usize,
    /// Every remote address drawn uniformly from the whole table (each flow
    /// a new host: the worst case for the per-host detail), instead of the
    /// default power-law popularity over a fixed set of hosts.
    uniform: bool,
    /// Flows per second of generated traffic time: how densely the
    /// records fill the buckets, i.e. how many tier-2 rows a commit writes
    /// per record (100,000/s: 12 M flows in one 5-minute bucket; a
    /// mid-size ISP's month, 3 billion flows, is ~1,200/s).
    rate: u64,
    skip_engine: bool,
    /// No `rows` stage (the comparison with judging every record alone).
    skip_rows: bool,
    /// No top-hosts pass after the engine stage.
    skip_hosts: bool,
    /// No `rebuild` stage.
    skip_rebuild: bool,
    /// The `rebuild` stage computes the host detail too (`--with-hosts`).
    rebuild_hosts: bool,
    /// `classifier.threads` of the `rebuild` stage (default: the config's
    /// default, one reader per CPU).
    rebuild_threads: Option<usize>,
}

fn opts() -> Opts {
    let mut o = Opts {
        flows: DEFAULT_FLOWS,
        runs: DEFAULT_RUNS,
        uniform: false,
        rate: 100_000,
        skip_engine: false,
        skip_rows: false,
        skip_hosts: false,
        skip_rebuild: false,
        rebuild_hosts: false,
        rebuild_threads: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--flows" => o.flows = args.next().and_then(|v| v.parse().ok()).expect("--flows N"),
            "--runs" => o.runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--uniform-remotes" => o.uniform = true,
            "--flows-per-s" => {
                o.rate = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--flows-per-s N")
            }
            "--skip-engine" => o.skip_engine = true,
            "--skip-rows" => o.skip_rows = true,
            "--skip-hosts" => o.skip_hosts = true,
            "--skip-rebuild" => o.skip_rebuild = true,
            "--rebuild-hosts" => o.rebuild_hosts = true,
            "--rebuild-threads" => {
                o.rebuild_threads = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--rebuild-threads N"),
                )
            }
            _ => {}
        }
    }
    o.runs = o.runs.max(1);
    o
}

/// Distinct remote hosts in the default (power-law) mode.
const REMOTE_HOSTS: usize = 200_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// BGP-like IPv4 prefixes (mostly /24) outside 10/8, and IPv6 /29–/48.
type V4List = Vec<(u32, u8)>;
type V6List = Vec<(u128, u8)>;

fn prefixes(rng: &mut Rng) -> (V4List, V6List) {
    let mut v4 = Vec::with_capacity(V4_PREFIXES);
    while v4.len() < V4_PREFIXES {
        let len = match rng.next() % 100 {
            0..55 => 24,
            55..65 => 22 + (rng.next() % 2) as u8,
            65..80 => 19 + (rng.next() % 3) as u8,
            80..98 => 8 + (rng.next() % 11) as u8,
            _ => 25 + (rng.next() % 8) as u8,
        };
        let a = (rng.next() as u32) & (u32::MAX << (32 - len));
        if a >> 24 == 10 || a >> 24 == 0 {
            continue;
        }
        v4.push((a, len));
    }
    let mut v6 = Vec::with_capacity(V6_PREFIXES);
    while v6.len() < V6_PREFIXES {
        let len = 29 + (rng.next() % 20) as u8;
        let a = (0x2a00u128 << 112) | (u128::from(rng.next()) << 64);
        v6.push((a & (u128::MAX << (128 - len)), len));
    }
    (v4, v6)
}

fn write_lists(dir: &Path, v4: &[(u32, u8)], v6: &[(u128, u8)]) -> (PathBuf, PathBuf) {
    // One in ten prefixes is peering, the rest are listed as paid.
    let (mut peering, mut paid) = (String::new(), String::new());
    for (i, &(a, l)) in v4.iter().enumerate() {
        let out = if i % 10 == 0 { &mut peering } else { &mut paid };
        let _ = writeln!(out, "{}/{l}", Ipv4Addr::from(a));
    }
    for (i, &(a, l)) in v6.iter().enumerate() {
        let out = if i % 10 == 0 { &mut peering } else { &mut paid };
        let _ = writeln!(out, "{}/{l}", Ipv6Addr::from(a));
    }
    let p = dir.join("peering.txt");
    let q = dir.join("paid.txt");
    std::fs::write(&p, peering).expect("write list");
    std::fs::write(&q, paid).expect("write list");
    (p, q)
}

fn write_bindings(dir: &Path) -> PathBuf {
    let mut s = String::new();
    for i in 0..ACCOUNTS {
        let v4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + 1 + i);
        let v6 = Ipv6Addr::from((0x2001_0db8_0100u128 << 80) | (u128::from(i) << 64));
        let _ = writeln!(s, "acc{i},{v4}\nacc{i},{v6}/64");
    }
    let p = dir.join("bindings.csv");
    std::fs::write(&p, s).expect("write bindings");
    p
}

/// Writes `n` generated flows into tier-1 segments under `raw`.
fn write_tier1(raw: &Path, n: u64, v4: &[(u32, u8)], v6: &[(u128, u8)], o: &Opts) -> u64 {
    std::fs::create_dir_all(raw).expect("raw dir");
    let profile = GenProfile {
        subscribers: ACCOUNTS,
        ipv6_share_percent: 10,
        flows_per_s: o.rate,
        ..GenProfile::default()
    };
    let mut flow_gen = FlowGen::new(7, profile).expect("profile");
    let enc = IpfixEncoder::new(IpfixConfig::default()).expect("ipfix");
    let mut rng = Rng(99);
    let draw4 = |rng: &mut Rng| {
        let (a, l) = v4[(rng.next() % v4.len() as u64) as usize];
        let host = if l == 32 { 0 } else { (rng.next() as u32) >> l };
        Ipv4Addr::from(a | host)
    };
    let draw6 = |rng: &mut Rng| {
        let (a, l) = v6[(rng.next() % v6.len() as u64) as usize];
        let host = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> l;
        Ipv6Addr::from(a | host)
    };
    let hosts4: Vec<Ipv4Addr> = (0..REMOTE_HOSTS).map(|_| draw4(&mut rng)).collect();
    let hosts6: Vec<Ipv6Addr> = (0..REMOTE_HOSTS / 4).map(|_| draw6(&mut rng)).collect();
    // Popularity ~ u^4: a few hosts (CDNs) carry most flows.
    let pick = |rng: &mut Rng, len: usize| {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u * u) * len as f64) as usize % len
    };
    let opts = WriterOptions {
        compression: Compression::Zstd { level: 1 },
        durability: Durability::Never,
    };
    let (mut written, mut seg_id, mut bytes) = (0u64, 1u64, 0u64);
    let mut chunk = Vec::with_capacity(CHUNK);
    while written < n {
        let mut w = SegmentWriter::create(raw, "bench", seg_id, 0, opts).expect("segment");
        let mut in_seg = 0;
        while in_seg < SEGMENT_FLOWS && written < n {
            chunk.clear();
            let take = (CHUNK as u64).min(n - written).min(SEGMENT_FLOWS - in_seg);
            for _ in 0..take {
                let f = flow_gen.next_flow();
                let mut r = enc.expected(&f, EXPORTER).expect("flow");
                // Redraw the remote side from inside a listed prefix.
                let remote = match (r.src, o.uniform) {
                    (IpAddr::V4(_), true) => IpAddr::V4(draw4(&mut rng)),
                    (IpAddr::V6(_), true) => IpAddr::V6(draw6(&mut rng)),
                    (IpAddr::V4(_), false) => IpAddr::V4(hosts4[pick(&mut rng, hosts4.len())]),
                    (IpAddr::V6(_), false) => IpAddr::V6(hosts6[pick(&mut rng, hosts6.len())]),
                };
                if is_subscriber(r.src) {
                    r.dst = remote;
                } else {
                    r.src = remote;
                }
                chunk.push(r);
            }
            for b in chunk.chunks(BLOCK_RECORDS) {
                w.append_flows(b).expect("append");
            }
            written += take;
            in_seg += take;
        }
        let path = w.close(0).expect("close");
        bytes += std::fs::metadata(path).expect("stat").len();
        seg_id += 1;
    }
    bytes
}

fn is_subscriber(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.octets()[0] == 10,
        IpAddr::V6(v) => v.segments()[..3] == [0x2001, 0xdb8, 0x100],
    }
}

fn segments(raw: &Path) -> Vec<PathBuf> {
    RawStore::new(raw)
        .list()
        .expect("list")
        .into_iter()
        .map(|s| s.path)
        .collect()
}

fn main() {
    let o = opts();
    let (n, runs) = (o.flows, o.runs);
    let dir = tempfile::tempdir_in(std::env::var("KOPEK_BENCH_DIR").unwrap_or("/var/tmp".into()))
        .expect("tempdir");
    let mut rng = Rng(1);
    let t = Instant::now();
    let (v4, v6) = prefixes(&mut rng);
    let (peering, paid) = write_lists(dir.path(), &v4, &v6);
    let bindings = write_bindings(dir.path());
    let state = dir.path().join("state");
    let raw = state.join("raw");
    let tier1_bytes = write_tier1(&raw, n, &v4, &v6, &o);
    println!(
        "classify ({} remotes): {n} flows in {} segments ({:.1} MB, {:.1} B/flow), {ACCOUNTS} accounts, {V4_PREFIXES} IPv4 + {V6_PREFIXES} IPv6 prefixes; setup {:.1} s",
        if o.uniform { "uniform" } else { "power-law" },
        segments(&raw).len(),
        tier1_bytes as f64 / 1e6,
        tier1_bytes as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );

    let toml = format!(
        r#"
[general]
state_dir = "{}"
[classifier]
subscriber_networks = ["10.0.0.0/8", "2001:db8:100::/48"]
bindings_file = "{}"
default_class = "paid"
[[classifier.class]]
name = "local"
networks = ["10.0.0.0/8"]
[[classifier.class]]
name = "peering"
files = ["{}"]
count = "inbound"
[[classifier.class]]
name = "paid"
files = ["{}"]
[retention]
raw_days = 0
traffic_days = 0
top_hosts_days = 0
"#,
        state.display(),
        bindings.display(),
        peering.display(),
        paid.display()
    );
    let config = Config::from_toml(Path::new("bench.toml"), &toml).expect("config");
    let t = Instant::now();
    let table = ClassTable::load(&config.classifier).expect("lists");
    let load_s = t.elapsed().as_secs_f64();
    let mut versions = ClassVersions::new();
    versions.push(1, 0, Some(std::sync::Arc::new(table)));
    let mut index = BindingIndex::new();
    for b in read_static(&bindings).expect("bindings") {
        index.apply(&b);
    }
    index.finish();
    let subs = NetSet::new(&config.classifier.subscriber_networks);
    let points = PointMatcher::new(&[]);
    let rules = Rules {
        versions: &versions,
        bindings: &index,
        subscribers: &subs,
        points: &points,
        bucket_ms: config.classifier.bucket_ms(),
        stale_before_ms: i64::MIN,
        stale_loss_bucket_ms: 0,
    };
    println!(
        "class lists loaded and built in {load_s:.2} s ({} prefixes, {:.0} MB)",
        versions.current().map(|c| c.1.prefixes()).unwrap_or(0),
        versions.current().map(|c| c.1.memory_bytes()).unwrap_or(0) as f64 / 1e6
    );

    let segs = segments(&raw);
    // Every flow block of every segment, into `sink` (rows or columns),
    // handed to `f` (which may empty a sink of rows, which appends).
    fn read_all<F: FlowSink>(segs: &[PathBuf], sink: &mut F, f: &mut dyn FnMut(&mut F)) {
        let mut losses: Vec<LossRecord> = Vec::new();
        for p in segs {
            let mut r = SegmentReader::open(p).expect("open");
            loop {
                losses.clear();
                match r.next_block(sink, &mut losses).expect("block") {
                    Some(Block::Flows(_)) => f(sink),
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }

    let mut read_rates = Vec::new();
    let mut class_rates = Vec::new();
    let mut rows_rates = Vec::new();
    let with_rows = !o.skip_rows;
    let mut rows: Vec<FlowRecord> = Vec::with_capacity(BLOCK_RECORDS);
    let mut cols = FlowColumns::default();
    for _ in 0..runs {
        let t = Instant::now();
        let mut count = 0u64;
        read_all(&segs, &mut cols, &mut |b| {
            count += b.len() as u64;
            black_box(b);
        });
        read_rates.push(count as f64 / t.elapsed().as_secs_f64());

        // The engine's path: columns, each distinct address judged once.
        let mut batch = Batch::default();
        let mut scratch = Scratch::default();
        let t = Instant::now();
        let mut count = 0u64;
        read_all(&segs, &mut cols, &mut |b| {
            add_columns(&rules, b, &mut batch, &mut scratch);
            count += b.len() as u64;
            if batch.stats.records >= 4_000_000 {
                batch.settle();
                black_box(batch.entries());
                batch.clear();
            }
        });
        batch.settle();
        class_rates.push(count as f64 / t.elapsed().as_secs_f64());
        black_box(batch.entries());

        // For comparison: rows, every record judged on its own.
        if with_rows {
            let mut batch = Batch::default();
            let t = Instant::now();
            let mut count = 0u64;
            read_all(&segs, &mut rows, &mut |b| {
                add_block(&rules, b, &mut batch, &mut scratch);
                count += b.len() as u64;
                b.clear();
                if batch.stats.records >= 4_000_000 {
                    batch.settle();
                    black_box(batch.entries());
                    batch.clear();
                }
            });
            batch.settle();
            rows_rates.push(count as f64 / t.elapsed().as_secs_f64());
            black_box(batch.entries());
        }
    }
    let read = median(read_rates);
    let classify = median(class_rates);
    let classify_rows = if with_rows { median(rows_rates) } else { 0.0 };

    // The real engine into a fresh SQLite tier 2, once reading the
    // segments in turn, once with a worker thread per segment
    // (`classifier.threads`, one per CPU).
    let (mut open_s, mut engine_rate, mut hosts_rate) = (0.0, 0.0, 0.0);
    let mut parallel = (0, 0.0);
    if !o.skip_engine {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for threads in [1, cpus] {
            for f in std::fs::read_dir(&state).expect("state dir").flatten() {
                if f.file_name().to_string_lossy().starts_with("tier2.") {
                    std::fs::remove_file(f.path()).expect("fresh tier 2");
                }
            }
            let mut config = config.clone();
            config.classifier.threads = threads;
            let t = Instant::now();
            let mut engine = Engine::open(config, 0).expect("engine");
            let open = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let done = engine.catch_up(0).expect("catch up");
            let rate = n as f64 / t.elapsed().as_secs_f64();
            assert_eq!(done.records, n, "the engine counted every record");
            if threads > 1 {
                parallel = (threads, rate);
                continue;
            }
            (open_s, engine_rate) = (open, rate);
            // The top-hosts pass of every hour, off the hot path.
            if !o.skip_hosts {
                let t = Instant::now();
                engine
                    .finish_hosts(chrono::Utc::now().timestamp_millis())
                    .expect("hosts");
                hosts_rate = n as f64 / t.elapsed().as_secs_f64();
            }
        }
    }

    // Re-aggregation as an operator runs it: the whole of tier 1 into a
    // new tier 2 (host detail included), compared and installed.
    let mut rebuild_rate = 0.0;
    if !o.skip_rebuild {
        if o.skip_engine {
            // No engine stage left a tier 2: the daemon's, brought up to
            // date first (untimed), as on a host where the daemon runs —
            // a rebuild first counts into the live tier 2 whatever it had
            // not counted yet, which would be all of tier 1 here.
            for f in std::fs::read_dir(&state).expect("state dir").flatten() {
                if f.file_name().to_string_lossy().starts_with("tier2.") {
                    std::fs::remove_file(f.path()).expect("fresh tier 2");
                }
            }
            let t = Instant::now();
            let mut engine = Engine::open(config.clone(), 0).expect("engine");
            engine.catch_up(0).expect("catch up");
            engine.flush(0).expect("flush");
            drop(engine);
            eprintln!(
                "live tier 2 brought up to date before the rebuild (untimed): {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let opts = RebuildOptions {
            lists: Lists::Recorded,
            dry_run: false,
            hosts: o.rebuild_hosts,
            from_ms: None,
            discard_damaged: false,
        };
        let t = Instant::now();
        let mut config = config.clone();
        if let Some(t) = o.rebuild_threads {
            config.classifier.threads = t;
        }
        let r = rebuild(config, opts, chrono::Utc::now().timestamp_millis()).expect("rebuild");
        rebuild_rate = n as f64 / t.elapsed().as_secs_f64();
        assert_eq!(r.records, n, "the rebuild counted every record");
        assert_eq!(
            r.changes,
            vec![],
            "a rebuild of the same tier 1 changes nothing"
        );
        eprintln!(
            "rebuild phases (s): tier 1 {:.1}, hosts {:.1}, indexes {:.1}, kept {:.1}, compare {:.1}, install {:.1}",
            r.phases_s[0],
            r.phases_s[1],
            r.phases_s[2],
            r.phases_s[3],
            r.phases_s[4],
            r.phases_s[5]
        );
        eprintln!(
            "rebuild tier-2 writer: {:.1} s writing, the reading waited {:.1} s for it",
            r.writer_s, r.writer_wait_s
        );
    }

    // What the disk gives: read the segments with the page cache dropped.
    let t = Instant::now();
    let mut disk_bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for p in &segs {
        let mut f = std::fs::File::open(p).expect("open");
        // SAFETY: fadvise on an open file descriptor; only drops clean cache.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        loop {
            let k = f.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            disk_bytes += k as u64;
        }
    }
    let disk_s = t.elapsed().as_secs_f64();
    let disk_mb_s = disk_bytes as f64 / 1e6 / disk_s;
    let bytes_per_rec = tier1_bytes as f64 / n as f64;
    let classify_mb_s = classify * bytes_per_rec / 1e6;
    let engine_mb_s = engine_rate * bytes_per_rec / 1e6;

    println!(
        "{:<10} {:>16} {:>16} {:>10}",
        "stage", "records/s", "tier-1 MB/s", "target"
    );
    println!(
        "{:<10} {:>16.0} {:>16.1}",
        "read",
        read,
        read * bytes_per_rec / 1e6
    );
    println!(
        "{:<10} {:>16.0} {:>16.1} {:>10}",
        "classify",
        classify,
        classify_mb_s,
        if classify >= TARGET_RECORDS_PER_S {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "{:<10} {:>16.0} {:>16.1}   (rows: every record judged on its own, for comparison)",
        "rows",
        classify_rows,
        classify_rows * bytes_per_rec / 1e6
    );
    println!(
        "{:<10} {:>16.0} {:>16.1}   (tier 2 open {open_s:.2} s; commits included)",
        "engine", engine_rate, engine_mb_s
    );
    println!(
        "{:<10} {:>16.0} {:>16.1}   ({} threads, one sealed segment each)",
        format!("engine x{}", parallel.0),
        parallel.1,
        parallel.1 * bytes_per_rec / 1e6,
        parallel.0
    );
    println!(
        "{:<10} {:>16.0} {:>16.1}   (top-hosts pass over all hours, separate)",
        "hosts",
        hosts_rate,
        hosts_rate * bytes_per_rec / 1e6
    );
    println!(
        "{:<10} {:>16.0} {:>16.1}   (kopek classifier rebuild: all of tier 1, hosts, compare, install)",
        "rebuild",
        rebuild_rate,
        rebuild_rate * bytes_per_rec / 1e6
    );
    println!(
        "{:<10} {:>16.0} {:>16.1}   (page cache dropped)",
        "disk",
        disk_mb_s * 1e6 / bytes_per_rec,
        disk_mb_s
    );
    println!(
        "re-aggregation CPU rate / disk rate: classify {:.2}x, engine {:.2}x, engine x{} {:.2}x, rebuild {:.2}x (>= 1: bounded by the disk)",
        classify_mb_s / disk_mb_s,
        engine_mb_s / disk_mb_s,
        parallel.0,
        parallel.1 * bytes_per_rec / 1e6 / disk_mb_s,
        rebuild_rate * bytes_per_rec / 1e6 / disk_mb_s
    );
}
