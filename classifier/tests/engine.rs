//! Library-level tests of the engine over real tier-1 segments on disk.

use std::net::IpAddr;
use std::path::Path;

use rusqlite::OptionalExtension;

use kopek_classifier::ClassifierError;
use kopek_classifier::engine::{Engine, HOSTS_GRACE_MS};
use kopek_classifier::rebuild::{Lists, RebuildOptions, RebuildReport};
use kopek_classifier::store::{OTHER_HOSTS, SqliteTier2};
use kopek_collector::segment::{SegmentWriter, WriterOptions};
use kopek_collector::{FlowRecord, SourceKind};
use kopek_config::{Compression, Config, Durability};

const MIN: i64 = 60_000;

fn config(state: &Path) -> Config {
    let toml = format!(
        r#"
[general]
state_dir = "{}"
[classifier]
bucket_s = 60
subscriber_networks = ["10.0.0.0/8"]
[[classifier.class]]
name = "peering"
networks = ["192.0.2.0/24"]
[retention]
raw_days = 0
traffic_days = 0
top_hosts_days = 0
"#,
        state.display()
    );
    Config::from_toml(Path::new("test.toml"), &toml).unwrap()
}

fn flow(i: u64) -> FlowRecord {
    let sub: IpAddr = format!("10.0.0.{}", 1 + i % 50).parse().unwrap();
    let remote: IpAddr = format!("192.0.2.{}", i % 200).parse().unwrap();
    let first = 1_700_000_000_000 + (i as i64) * 1_000;
    FlowRecord {
        exporter: "127.0.0.1".parse().unwrap(),
        first_ms: first,
        last_ms: first + (i as i64 % 5) * 30_000,
        src: if i.is_multiple_of(3) { sub } else { remote },
        dst: if i.is_multiple_of(3) { remote } else { sub },
        bytes_raw: 1_000 + i,
        packets_raw: 1 + i % 7,
        ..FlowRecord::empty(SourceKind::Ipfix)
    }
}

/// Writes `segments` sealed segments of `per` flows each (blocks of 100).
fn tier1(state: &Path, segments: u64, per: u64) -> (u64, u64) {
    let raw = state.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let opts = WriterOptions {
        compression: Compression::Zstd { level: 1 },
        durability: Durability::Never,
    };
    let (mut n, mut bytes) = (0, 0);
    for s in 0..segments {
        let mut w = SegmentWriter::create(&raw, "main", s + 1, 0, opts).unwrap();
        let flows: Vec<_> = (0..per).map(|k| flow(s * per + k)).collect();
        for b in flows.chunks(100) {
            w.append_flows(b).unwrap();
        }
        n += flows.len() as u64;
        bytes += flows.iter().map(|f| f.bytes()).sum::<u64>();
        w.close(0).unwrap();
    }
    (n, bytes)
}

/// Writes sealed segment `id` of collector `main`, one block per slice.
fn sealed(state: &Path, id: u64, blocks: &[&[FlowRecord]]) {
    let raw = state.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let opts = WriterOptions {
        compression: Compression::Zstd { level: 1 },
        durability: Durability::Never,
    };
    let mut w = SegmentWriter::create(&raw, "main", id, 0, opts).unwrap();
    for b in blocks {
        w.append_flows(b).unwrap();
    }
    w.close(0).unwrap();
}

/// Binds each (account, prefix) for all time, as a static binding.
fn bind(state: &Path, bindings: &[(&str, &str)]) {
    let mut reg = kopek_classifier::bindings::Registry::open(state).unwrap();
    for (account, net) in bindings {
        reg.add(account, net.parse().unwrap(), 0, None, "static", None)
            .unwrap();
    }
}

fn tier2_totals(state: &Path) -> (u64, u64) {
    let c = SqliteTier2::open_read(state).unwrap();
    let q = |t: &str| -> (i64, i64) {
        c.query_row(
            &format!("SELECT COALESCE(SUM(flows),0), COALESCE(SUM(bytes),0) FROM {t}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (a, b) = (q("traffic"), q("unattributed"));
    ((a.0 + b.0) as u64, (a.1 + b.1) as u64)
}

#[test]
fn steps_without_a_commit_never_read_a_block_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (n, bytes) = tier1(dir.path(), 3, 1_000);
    let mut e = Engine::open(config(dir.path()), 0).unwrap();
    // Several steps before one commit: finished segments must not be
    // reopened at their committed (zero) offset.
    for _ in 0..3 {
        e.step(0).unwrap();
    }
    e.commit(0).unwrap();
    e.catch_up(0).unwrap();
    assert_eq!(e.stats().committed.records, n);
    drop(e);
    // Every record here has exactly one subscriber side and its flow count
    // in one bucket: tier 2 holds each record once.
    assert_eq!(tier2_totals(dir.path()), (n, bytes));
}

#[test]
fn an_uncommitted_batch_is_read_again_after_a_crash_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (n, bytes) = tier1(dir.path(), 4, 700);
    {
        let mut e = Engine::open(config(dir.path()), 0).unwrap();
        e.step(0).unwrap();
        // Dropped without commit: as if killed.
    }
    {
        let mut e = Engine::open(config(dir.path()), 0).unwrap();
        e.step(0).unwrap();
        e.commit(0).unwrap();
        // A second batch lost to a "crash" after the first commit.
        e.step(0).unwrap();
    }
    let mut e = Engine::open(config(dir.path()), 0).unwrap();
    e.catch_up(0).unwrap();
    e.finish_hosts(i64::MAX / 2).unwrap();
    drop(e);
    assert_eq!(tier2_totals(dir.path()), (n, bytes));
    // The host detail adds up to the traffic of the accounts... here nobody
    // is bound, so there is none, and nothing is pending.
    let c = SqliteTier2::open_read(dir.path()).unwrap();
    let pending: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM hosts_hours WHERE gen_pending > gen_done",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
}

#[test]
fn buckets_split_a_flow_exactly_and_minutes_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let (n, bytes) = tier1(dir.path(), 1, 500);
    let mut e = Engine::open(config(dir.path()), 0).unwrap();
    e.catch_up(0).unwrap();
    assert!(e.stats().committed.split_records > 0);
    drop(e);
    assert_eq!(tier2_totals(dir.path()), (n, bytes));
    let c = SqliteTier2::open_read(dir.path()).unwrap();
    let bad: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM unattributed WHERE bucket_ms % ?1 <> 0",
            [MIN],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bad, 0, "bucket starts are whole minutes");
}

#[test]
fn the_hourly_rollup_answers_exactly_what_the_buckets_do() {
    use kopek_classifier::report::{self, Period, TrafficQuery};
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    tier1(dir.path(), 2, 3_000);
    // Two accounts over the subscribers 10.0.0.1..50; the rest unattributed.
    let mut reg = kopek_classifier::bindings::Registry::open(dir.path()).unwrap();
    let forever = kopek_classifier::bindings::FOREVER_START_MS;
    reg.add(
        "acme",
        "10.0.0.0/28".parse().unwrap(),
        forever,
        None,
        "test",
        None,
    )
    .unwrap();
    reg.add(
        "bolt",
        "10.0.0.16/28".parse().unwrap(),
        forever,
        None,
        "test",
        None,
    )
    .unwrap();
    let mut e = Engine::open(config(dir.path()), 0).unwrap();
    e.catch_up(0).unwrap();
    e.finish_hosts(1_700_020_000_000).unwrap();
    drop(e);
    let conn = SqliteTier2::open_read(dir.path()).unwrap();
    let hour = 3_600_000;
    let q = |period, tz: &str| TrafficQuery {
        from_ms: 1_699_999_200_000 - hour, // whole hours around the data
        to_ms: 1_700_010_000_000 + hour,
        account: None,
        class: None,
        billed_only: false,
        period,
        tz: tz.parse().unwrap(),
    };
    let sum = |rows: Vec<report::TrafficRow>| {
        let mut m: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
        for r in rows {
            let e = m.entry((r.account, r.class)).or_default();
            e.0 += r.bytes_in;
            e.1 += r.bytes_out;
            e.2 += r.flows;
        }
        m
    };
    let by_day = q(Period::Day, "Europe/Moscow");
    assert!(report::hourly_answers(&by_day));
    let by_bucket = q(Period::Bucket, "Europe/Moscow");
    assert!(!report::hourly_answers(&by_bucket));
    let india = q(Period::Day, "Asia/Kolkata");
    assert!(!report::hourly_answers(&india), "+05:30 needs the buckets");
    let a = sum(report::traffic(&conn, &by_day).unwrap());
    let b = sum(report::traffic(&conn, &by_bucket).unwrap());
    let c = sum(report::traffic(&conn, &india).unwrap());
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(a, c);

    // One account's reports (read through its index, or hour by hour for
    // the host detail) answer what the scans of all accounts do, for
    // intervals inside, around, across and outside the data, whole hours
    // or not.
    let t0 = 1_700_000_000_000;
    for (from, to) in [
        (t0 - 10 * hour, t0 + 10 * hour),
        (t0 - t0 % hour, t0 - t0 % hour + hour),
        (t0 + 1_234_567, t0 + 4_000_000),
        (t0 + 1, t0 + 2),
        (t0 + 20 * hour, t0 + 30 * hour),
        (t0 - 30 * hour, t0 - 20 * hour),
        (t0 + hour, t0),
    ] {
        let hosts = report::top_hosts(&conn, from, to, None, 3).unwrap();
        for account in ["acme", "bolt", "nobody"] {
            let one = report::top_hosts(&conn, from, to, Some(account), 3).unwrap();
            let all: Vec<_> = hosts
                .iter()
                .filter(|h| h.account == account)
                .cloned()
                .collect();
            assert_eq!(one, all, "{account} {from}..{to}");
            for period in [Period::Bucket, Period::Hour, Period::Total] {
                let q = TrafficQuery {
                    from_ms: from,
                    to_ms: to,
                    account: None,
                    class: None,
                    billed_only: false,
                    period,
                    tz: chrono_tz::UTC,
                };
                let all: Vec<_> = report::traffic(&conn, &q)
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.account == account)
                    .collect();
                let one = TrafficQuery {
                    account: Some(account.to_string()),
                    ..q
                };
                assert_eq!(
                    report::traffic(&conn, &one).unwrap(),
                    all,
                    "{account} {period:?}"
                );
            }
        }
    }
    let hosts = report::top_hosts(&conn, t0 - 10 * hour, t0 + 10 * hour, Some("acme"), 3).unwrap();
    assert!(hosts.len() > 3, "{hosts:?}");
}

#[test]
fn the_bucket_width_of_an_existing_tier2_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    tier1(dir.path(), 1, 100);
    let mut e = Engine::open(config(dir.path()), 0).unwrap();
    e.catch_up(0).unwrap();
    let mut other = config(dir.path());
    other.classifier.bucket = std::time::Duration::from_secs(300);
    let err = e.reload(other.clone(), 0).unwrap_err().to_string();
    assert!(
        err.contains("built with classifier.bucket_s = 60, the config says 300"),
        "{err}"
    );
    drop(e);
    let err = Engine::open(other, 0).unwrap_err().to_string();
    assert!(err.contains("bucket_s = 60"), "{err}");
    // The same width opens fine.
    Engine::open(config(dir.path()), 0).unwrap();
}

/// Every row of the tier-2 tables a catch-up writes, sorted, without the
/// columns that count commits (`seq`, generations, update times): those
/// depend on how the work was cut into batches, the sums must not.
fn tier2_dump(state: &Path) -> Vec<String> {
    let c = SqliteTier2::open_read(state).unwrap();
    let mut rows = Vec::new();
    for (table, cols) in [
        (
            "traffic",
            "bucket_ms, account, class, direction, point, billed, bytes, packets, flows",
        ),
        (
            "traffic_hourly",
            "hour_ms, account, class, direction, point, billed, bytes, packets, flows",
        ),
        (
            "traffic_daily",
            "day_ms, account, class, direction, point, billed, bytes, packets, flows",
        ),
        (
            "unattributed",
            "bucket_ms, address, class, direction, point, bytes, packets, flows",
        ),
        (
            "top_hosts",
            "hour_ms, account, remote, class, bytes_in, bytes_out, flows",
        ),
        ("losses", "bucket_ms, exporter, domain, reason, unit, count"),
        ("progress", "collector, segment_id, next_offset, done"),
    ] {
        let mut st = c.prepare(&format!("SELECT {cols} FROM {table}")).unwrap();
        let n = st.column_count();
        let mut q = st.query([]).unwrap();
        while let Some(r) = q.next().unwrap() {
            let vals: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            rows.push(format!("{table}: {}", vals.join(" ")));
        }
    }
    rows.sort();
    rows
}

/// Tier 1 for the parallel tests: `segments` sealed segments of 2,000
/// flows with a loss record each, two bound accounts (the rest of the
/// subscribers unattributed), and segment 3 damaged in its middle.
fn backlog(state: &Path, segments: u64) -> (u64, u64) {
    let (n, bytes) = tier1(state, segments, 2_000);
    let raw = state.join("raw");
    let opts = WriterOptions {
        compression: Compression::None,
        durability: Durability::Never,
    };
    let mut w = SegmentWriter::create(&raw, "loss", 1, 0, opts).unwrap();
    for s in 0..segments {
        w.append_losses(&[kopek_collector::LossRecord {
            exporter: "127.0.0.1".parse().unwrap(),
            domain: 7,
            kind: SourceKind::Ipfix,
            reason: kopek_collector::LossReason::Gap,
            unit: kopek_collector::LossUnit::Flows,
            count: 10 + s,
            from_ms: 1_700_000_000_000 + s as i64 * MIN,
            to_ms: 1_700_000_000_000 + s as i64 * MIN + 5,
            expected_seq: 1,
            received_seq: 11,
        }])
        .unwrap();
    }
    w.close(0).unwrap();
    let seg3 = raw.join("main-0000000003.kseg");
    let mut b = std::fs::read(&seg3).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(&seg3, b).unwrap();
    let mut reg = kopek_classifier::bindings::Registry::open(state).unwrap();
    let forever = kopek_classifier::bindings::FOREVER_START_MS;
    for (acc, net) in [("acme", "10.0.0.0/28"), ("bolt", "10.0.0.16/28")] {
        reg.add(acc, net.parse().unwrap(), forever, None, "test", None)
            .unwrap();
    }
    (n, bytes)
}

#[test]
fn a_parallel_catch_up_commits_exactly_what_one_reader_does() {
    let run = |threads: usize, crash_after_first_step: bool| {
        let dir = tempfile::tempdir().unwrap();
        backlog(dir.path(), 7);
        let mut cfg = config(dir.path());
        cfg.classifier.threads = threads;
        if crash_after_first_step {
            // A batch read by the workers and lost: counted once later.
            let mut e = Engine::open(cfg.clone(), 0).unwrap();
            let o = e.step(0).unwrap();
            assert!(o.records > 0);
        }
        let mut e = Engine::open(cfg, 0).unwrap();
        let first = e.step(0).unwrap();
        e.commit(0).unwrap();
        e.catch_up(0).unwrap();
        e.finish_hosts(i64::MAX / 2).unwrap();
        let damaged = e.stats().damaged_segments.clone();
        let records = e.stats().committed.records;
        drop(e);
        (first, tier2_dump(dir.path()), damaged, records)
    };
    let (first, one, damaged, records) = run(1, false);
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(
        damaged[0].starts_with("main-0000000003 at offset"),
        "{damaged:?}"
    );
    assert!(records > 6 * 2_000 && records < 7 * 2_000, "{records}");
    assert!(one.iter().any(|r| r.starts_with("top_hosts: ")));
    assert_eq!(one.iter().filter(|r| r.starts_with("losses: ")).count(), 7);
    // One reader takes every segment in turn in its first step; several
    // read `threads` segments at once per step (the loss segment, listed
    // first, and `threads - 1` of the flow segments), all 8 in one.
    assert_eq!(first.records, records);
    for threads in [2, 3, 8] {
        let (first, many, damaged_many, records_many) = run(threads, false);
        if threads < 8 {
            assert!(first.records > 0 && first.records <= (threads as u64 - 1) * 2_000);
        } else {
            assert_eq!(first.records, records);
        }
        assert_eq!(many, one, "{threads} threads");
        assert_eq!(damaged_many, damaged);
        assert_eq!(records_many, records);
        let (_, crashed, _, _) = run(threads, true);
        assert_eq!(crashed, one, "{threads} threads after a lost batch");
    }
}

#[test]
fn a_failed_commit_drops_what_was_read_after_it_and_counts_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let opts = WriterOptions {
        compression: Compression::Zstd { level: 1 },
        durability: Durability::Never,
    };
    // One growing segment: the commit that fails covers its first half,
    // the batch read while it was being written covers the second.
    let mut w = SegmentWriter::create(&raw, "main", 1, 0, opts).unwrap();
    let flows: Vec<_> = (0..2_000).map(flow).collect();
    let bytes: u64 = flows.iter().map(|f| f.bytes()).sum();
    for b in flows[..1_000].chunks(100) {
        w.append_flows(b).unwrap();
    }
    let mut cfg = config(dir.path());
    cfg.classifier.threads = 1;
    let mut e = Engine::open(cfg, 0).unwrap();
    assert_eq!(e.step(0).unwrap().records, 1_000);
    // Hold tier 2's write lock, and take away a table the commit writes:
    // the commit thread waits for the lock, then fails.
    let sabotage = rusqlite::Connection::open(dir.path().join("tier2.sqlite")).unwrap();
    sabotage
        .execute_batch("BEGIN IMMEDIATE; ALTER TABLE traffic_hourly RENAME TO gone;")
        .unwrap();
    e.commit(0).unwrap();
    for b in flows[1_000..].chunks(100) {
        w.append_flows(b).unwrap();
    }
    // Read while the commit waits: the segment's second half.
    assert_eq!(e.step(0).unwrap().records, 1_000);
    sabotage.execute_batch("COMMIT").unwrap();
    let err = e.commit(0).unwrap_err().to_string();
    assert!(err.contains("traffic_hourly"), "{err}");
    assert_eq!(e.stats().committed.records, 0);
    sabotage
        .execute_batch("ALTER TABLE gone RENAME TO traffic_hourly")
        .unwrap();
    // Both halves again, each once.
    w.close(0).unwrap();
    e.catch_up(0).unwrap();
    assert_eq!(e.stats().committed.records, 2_000);
    drop(e);
    assert_eq!(tier2_totals(dir.path()), (2_000, bytes));
}

/// Runs a daemon's worth of work over what tier 1 holds now: every record
/// committed, every hour's host detail done.
fn classify_all(state: &Path, cfg: Config, now_ms: i64) {
    let mut e = Engine::open(cfg, now_ms).unwrap();
    e.catch_up(now_ms).unwrap();
    e.flush(now_ms).unwrap();
    e.finish_hosts(now_ms).unwrap();
    drop(e);
    assert!(state.join(kopek_classifier::store::TIER2_FILE).exists());
}

fn rebuild(cfg: Config, dry_run: bool) -> RebuildReport {
    rebuild_with(cfg, dry_run, true)
}

fn rebuild_with(cfg: Config, dry_run: bool, hosts: bool) -> RebuildReport {
    let opts = RebuildOptions {
        dry_run,
        hosts,
        ..Default::default()
    };
    try_rebuild(cfg, opts).unwrap()
}

fn try_rebuild(cfg: Config, opts: RebuildOptions) -> Result<RebuildReport, ClassifierError> {
    kopek_classifier::rebuild::rebuild(cfg, opts, NOW_MS)
}

fn tier2_id(state: &Path) -> String {
    tier2_meta(state, kopek_classifier::store::TIER2_ID_KEY).unwrap()
}

/// A value of tier 2's `meta` table.
fn tier2_meta(state: &Path, key: &str) -> Option<String> {
    SqliteTier2::open_read(state)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .unwrap()
}

/// Long after the generated flows (2023): every hour's host detail is due.
const NOW_MS: i64 = 1_800_000_000_000;

#[test]
fn a_rebuild_with_nothing_new_gives_the_same_tier2_under_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (n, _) = backlog(dir.path(), 4);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let before = tier2_dump(dir.path());
    let id = tier2_id(dir.path());
    let r = rebuild(config(dir.path()), false);
    // The damaged segment 3 is read up to its damage, as by the daemon.
    assert!(r.records > n / 2 && r.records < n, "{}", r.records);
    assert!(r.installed);
    assert_eq!(r.changes, vec![]);
    assert_eq!(r.kept_before_ms, None);
    assert_eq!(tier2_dump(dir.path()), before);
    assert_ne!(tier2_id(dir.path()), id);
    assert_eq!(tier2_id(dir.path()), r.tier2_id);
    assert!(
        !dir.path()
            .join(kopek_classifier::rebuild::REBUILD_DIR)
            .exists()
    );
    // The daemon goes on from the rebuilt positions: nothing read twice.
    let mut e = Engine::open(config(dir.path()), NOW_MS).unwrap();
    e.catch_up(NOW_MS).unwrap();
    assert_eq!(e.stats().committed.records, 0);
}

#[test]
fn a_session_recorded_late_moves_its_traffic_in_a_rebuild_only() {
    let dir = tempfile::tempdir().unwrap();
    backlog(dir.path(), 4);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let unattributed = |state: &Path| -> i64 {
        SqliteTier2::open_read(state)
            .unwrap()
            .query_row(
                "SELECT coalesce(sum(bytes), 0) FROM unattributed WHERE address = '10.0.0.40'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let moved = unattributed(dir.path());
    assert!(moved > 0);
    let totals = tier2_totals(dir.path());
    // The session of 10.0.0.40, recorded after its traffic was counted.
    let mut reg = kopek_classifier::bindings::Registry::open(dir.path()).unwrap();
    reg.add(
        "late",
        "10.0.0.40/32".parse().unwrap(),
        1_600_000_000_000,
        Some(1_900_000_000_000),
        "radius",
        Some("s1"),
    )
    .unwrap();
    drop(reg);
    // A dry run shows it and changes nothing.
    let before = tier2_dump(dir.path());
    let r = rebuild(config(dir.path()), true);
    assert!(!r.installed);
    assert_eq!(tier2_dump(dir.path()), before);
    let late: i64 = r
        .changes
        .iter()
        .filter(|c| c.account == "late")
        .map(|c| c.after - c.before)
        .sum();
    let left: i64 = r
        .changes
        .iter()
        .filter(|c| c.account.is_empty())
        .map(|c| c.after - c.before)
        .sum();
    assert_eq!((late, left), (moved, -moved));
    // The rebuild itself.
    let r2 = rebuild(config(dir.path()), false);
    assert_eq!(r2.changes, r.changes);
    assert_eq!(unattributed(dir.path()), 0);
    let late_bytes: i64 = SqliteTier2::open_read(dir.path())
        .unwrap()
        .query_row(
            "SELECT sum(bytes) FROM traffic WHERE account = 'late'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(late_bytes, moved);
    assert_eq!(tier2_totals(dir.path()), totals);
}

#[test]
fn a_rebuild_keeps_the_rows_of_time_whose_tier1_retention_removed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // Segments 1-2 (the first 2,000 s of flows), counted, then removed by
    // retention; segment 3 (the next 1,000 s) arrives afterwards.
    tier1(state, 2, 1_000);
    let mut cfg = config(state);
    cfg.retention.raw_days = 1;
    classify_all(state, cfg.clone(), NOW_MS);
    let mut e = Engine::open(cfg.clone(), NOW_MS).unwrap();
    e.maintain(NOW_MS).unwrap();
    drop(e);
    let raw = state.join("raw");
    assert_eq!(std::fs::read_dir(&raw).unwrap().count(), 0);
    let mut w = SegmentWriter::create(
        &raw,
        "main",
        3,
        0,
        WriterOptions {
            compression: Compression::None,
            durability: Durability::Never,
        },
    )
    .unwrap();
    let flows: Vec<_> = (2_000..3_000).map(flow).collect();
    w.append_flows(&flows).unwrap();
    w.close(0).unwrap();
    classify_all(state, cfg.clone(), NOW_MS);
    let before: Vec<String> = tier2_dump(state)
        .into_iter()
        .filter(|r| !r.starts_with("progress"))
        .collect();
    let r = rebuild(cfg, false);
    assert_eq!(r.records, 1_000);
    let newest_removed = flow(1_999).last_ms;
    let cut = r.kept_before_ms.expect("retention removed tier 1");
    assert!(cut > newest_removed && cut - newest_removed <= 3_600_000);
    assert!(r.rows_kept > 0);
    assert_eq!(r.changes, vec![]);
    let after: Vec<String> = tier2_dump(state)
        .into_iter()
        .filter(|r| !r.starts_with("progress"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn a_rebuild_refuses_while_the_classifier_runs() {
    let dir = tempfile::tempdir().unwrap();
    tier1(dir.path(), 1, 100);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let lock = std::fs::File::create(dir.path().join(kopek_classifier::run::LOCK_FILE)).unwrap();
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    assert_eq!(rc, 0);
    let err = try_rebuild(config(dir.path()), RebuildOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains(
            "classifier.lock is locked: the classifier daemon runs: stop it first (systemctl stop kopek-classifier)"
        ),
        "{err}"
    );
}

#[test]
fn without_host_detail_a_rebuild_keeps_the_old_until_the_daemon_redoes_each_hour() {
    let dir = tempfile::tempdir().unwrap();
    backlog(dir.path(), 4);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let hosts = |state: &Path| -> Vec<String> {
        tier2_dump(state)
            .into_iter()
            .filter(|r| r.starts_with("top_hosts"))
            .collect()
    };
    let old = hosts(dir.path());
    assert!(!old.is_empty());
    let mut reg = kopek_classifier::bindings::Registry::open(dir.path()).unwrap();
    reg.add(
        "late",
        "10.0.0.40/32".parse().unwrap(),
        0,
        None,
        "radius",
        None,
    )
    .unwrap();
    drop(reg);
    let r = rebuild_with(config(dir.path()), false, false);
    assert_eq!(r.rows_kept, old.len() as u64);
    assert_eq!(hosts(dir.path()), old);
    // The daemon's host passes redo every hour the rebuild left pending.
    let mut e = Engine::open(config(dir.path()), NOW_MS).unwrap();
    e.finish_hosts(NOW_MS).unwrap();
    assert!(e.stats().host_hours_done > 0);
    drop(e);
    let new = hosts(dir.path());
    let late: i64 = SqliteTier2::open_read(dir.path())
        .unwrap()
        .query_row(
            "SELECT count(*) FROM top_hosts WHERE account = 'late'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(late > 0);
    // The same detail a rebuild that computed it gives.
    rebuild(config(dir.path()), false);
    assert_eq!(hosts(dir.path()), new);
}

#[test]
fn traffic_moved_away_from_an_account_leaves_its_rows_at_zero_for_the_core() {
    let dir = tempfile::tempdir().unwrap();
    backlog(dir.path(), 4);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let rows = |account: &str| -> (i64, i64) {
        SqliteTier2::open_read(dir.path())
            .unwrap()
            .query_row(
                "SELECT count(*), coalesce(sum(bytes), 0) FROM traffic WHERE account = ?1 AND billed = 1",
                [account],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let (acme_rows, acme_bytes) = rows("acme");
    assert!(acme_rows > 0 && acme_bytes > 0);
    // acme's prefix turns out to have been another account's since before
    // any of this traffic: its binding is ended there, zed's begins.
    let net: ipnet::IpNet = "10.0.0.0/28".parse().unwrap();
    let mut reg = kopek_classifier::bindings::Registry::open(dir.path()).unwrap();
    reg.end(net, 1_600_000_000_000).unwrap();
    reg.add("zed", net, 1_600_000_000_000, None, "radius", None)
        .unwrap();
    drop(reg);
    let r = rebuild(config(dir.path()), false);
    assert_eq!(r.rows_zeroed, acme_rows as u64);
    assert_eq!(rows("acme"), (acme_rows, 0));
    assert_eq!(rows("zed").1, acme_bytes);
    let acme: i64 = r
        .changes
        .iter()
        .filter(|c| c.account == "acme")
        .map(|c| c.after - c.before)
        .sum();
    assert_eq!(acme, -acme_bytes);
}

#[test]
fn lists_changed_since_apply_to_the_past_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    backlog(dir.path(), 4);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let by_class = |state: &Path| -> Vec<(String, i64)> {
        SqliteTier2::open_read(state)
            .unwrap()
            .prepare("SELECT class, sum(bytes) FROM traffic GROUP BY class ORDER BY class")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = by_class(dir.path());
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].0, "peering");
    // The peering list turns out to have been wrong: 192.0.2.0/24 is
    // paid traffic. The new lists are a new version, valid from now.
    let mut cfg = config(dir.path());
    cfg.classifier.classes[0].networks = vec!["198.51.100.0/24".parse().unwrap()];
    let run = |lists, cfg: Config| {
        let opts = RebuildOptions {
            lists,
            hosts: true,
            ..Default::default()
        };
        try_rebuild(cfg, opts).unwrap()
    };
    // Recorded: each record keeps the lists of its time.
    let r = run(Lists::Recorded, cfg.clone());
    assert_eq!(r.changes, vec![]);
    assert_eq!(by_class(dir.path()), before);
    let versions = |state: &Path| -> i64 {
        SqliteTier2::open_read(state)
            .unwrap()
            .query_row("SELECT count(*) FROM class_versions", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(versions(dir.path()), 2);
    // Current: today's lists for all of it, on purpose.
    let r = run(Lists::Current, cfg);
    // (peering's old rows stay at 0 bytes: the core credits them back.)
    assert_eq!(
        by_class(dir.path()),
        vec![
            ("paid".to_string(), before[0].1),
            ("peering".to_string(), 0)
        ]
    );
    assert!(r.rows_zeroed > 0);
    assert_eq!(versions(dir.path()), 1);
    let moved: i64 = r
        .changes
        .iter()
        .filter(|c| c.class == "paid")
        .map(|c| c.after - c.before)
        .sum();
    assert!(moved > 0);
    assert_eq!(
        moved,
        -r.changes
            .iter()
            .filter(|c| c.class == "peering")
            .map(|c| c.after - c.before)
            .sum::<i64>()
    );
}

#[test]
fn a_rebuild_from_a_time_keeps_the_rows_before_and_skips_what_ends_before() {
    let dir = tempfile::tempdir().unwrap();
    // Eight segments of 1,000 flows, one a second: 8,000 s from
    // 1,700,000,000 s (22:13:20 UTC), so hours 22, 23, 00 and 01.
    tier1(dir.path(), 8, 1_000);
    let mut reg = kopek_classifier::bindings::Registry::open(dir.path()).unwrap();
    reg.add("acme", "10.0.0.0/28".parse().unwrap(), 0, None, "t", None)
        .unwrap();
    drop(reg);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let before: Vec<String> = tier2_dump(dir.path())
        .into_iter()
        .filter(|r| !r.starts_with("progress"))
        .collect();
    let rows = |state: &Path, account: &str, from: i64, to: i64| -> i64 {
        SqliteTier2::open_read(state)
            .unwrap()
            .query_row(
                "SELECT coalesce(sum(bytes), 0) FROM traffic
                 WHERE account = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3",
                rusqlite::params![account, from, to],
                |r| r.get(0),
            )
            .unwrap()
    };
    // acme's prefix was zed's from the start (recorded late).
    let net: ipnet::IpNet = "10.0.0.0/28".parse().unwrap();
    let mut reg = kopek_classifier::bindings::Registry::open(dir.path()).unwrap();
    reg.end(net, 1).unwrap();
    reg.add("zed", net, 1, None, "radius", None).unwrap();
    drop(reg);
    let cut = 1_700_006_400_000; // 00:00 UTC
    let acme_before_cut = rows(dir.path(), "acme", 0, cut);
    let acme_after_cut = rows(dir.path(), "acme", cut, i64::MAX);
    assert!(acme_before_cut > 0 && acme_after_cut > 0);
    let opts = RebuildOptions {
        hosts: true,
        from_ms: Some(cut + 1_234), // rounded down to the hour
        ..Default::default()
    };
    let r = try_rebuild(config(dir.path()), opts).unwrap();
    assert_eq!(r.kept_before_ms, Some(cut));
    // Segments 1-6 end before 00:00 (flows up to 6,000 s + 120 s after
    // 22:13:20; 00:00 is 6,400 s): not read. Segment 7 straddles it.
    assert_eq!(r.segments_skipped, 6);
    assert_eq!(r.records, 2_000);
    // Before the cut: as it was; after: zed's.
    assert_eq!(rows(dir.path(), "acme", 0, cut), acme_before_cut);
    assert_eq!(rows(dir.path(), "acme", cut, i64::MAX), 0);
    assert_eq!(rows(dir.path(), "zed", cut, i64::MAX), acme_after_cut);
    assert_eq!(rows(dir.path(), "zed", 0, cut), 0);
    let after: Vec<String> = tier2_dump(dir.path())
        .into_iter()
        .filter(|r| !r.starts_with("progress"))
        .collect();
    assert_ne!(after, before);
    // The daemon goes on from the rebuilt positions: nothing left to read.
    let mut e = Engine::open(config(dir.path()), NOW_MS).unwrap();
    e.catch_up(NOW_MS).unwrap();
    assert_eq!(e.stats().committed.records, 0);
}

#[test]
fn a_rebuild_refuses_to_keep_rows_that_miss_records_tier2_had_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    tier1(dir.path(), 2, 1_000);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    // Two more segments, about the same past, not counted yet.
    for s in 3..=4u64 {
        let mut w = SegmentWriter::create(
            &dir.path().join("raw"),
            "main",
            s,
            0,
            WriterOptions {
                compression: Compression::None,
                durability: Durability::Never,
            },
        )
        .unwrap();
        let flows: Vec<_> = ((s - 1) * 1_000..s * 1_000).map(flow).collect();
        w.append_flows(&flows).unwrap();
        w.close(0).unwrap();
    }
    let before = tier2_dump(dir.path());
    // A dry run does not catch tier 2 up first: keeping the rows before
    // the cut would lose what it had not counted.
    let opts = RebuildOptions {
        dry_run: true,
        from_ms: Some(1_700_006_400_000),
        ..Default::default()
    };
    let err = try_rebuild(config(dir.path()), opts).unwrap_err();
    assert!(err.to_string().contains("had not counted"), "{err}");
    assert_eq!(tier2_dump(dir.path()), before);
    // The real rebuild counts them into tier 2 first, then rebuilds.
    let opts = RebuildOptions {
        dry_run: false,
        ..opts
    };
    let r = try_rebuild(config(dir.path()), opts).unwrap();
    assert_eq!(r.changes, vec![]);
    assert_eq!(tier2_totals(dir.path()).0, 4_000);
}

#[test]
fn an_hours_top_hosts_rank_by_bytes_with_ties_by_address_and_sum_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000;
    // (subscriber, remote, bytes, subscriber is the source)
    let traffic: &[(&str, &str, u64, bool)] = &[
        ("10.0.0.1", "192.0.2.4", 100, true),
        ("10.0.0.1", "192.0.2.3", 300, false),
        ("10.0.0.1", "192.0.2.2", 900, true),
        ("10.0.0.1", "192.0.2.1", 500, false),
        ("10.0.0.1", "198.51.100.9", 100, true),
        ("10.0.0.1", "192.0.2.3", 200, true),
        ("10.0.0.2", "192.0.2.9", 50, false),
    ];
    let flows: Vec<FlowRecord> = traffic
        .iter()
        .enumerate()
        .map(|(i, &(sub, remote, bytes, out))| {
            let (sub, remote): (IpAddr, IpAddr) = (sub.parse().unwrap(), remote.parse().unwrap());
            FlowRecord {
                first_ms: t0 + i as i64 * MIN,
                last_ms: t0 + i as i64 * MIN,
                src: if out { sub } else { remote },
                dst: if out { remote } else { sub },
                bytes_raw: bytes,
                packets_raw: 1,
                ..flow(0)
            }
        })
        .collect();
    sealed(dir.path(), 1, &[&flows]);
    bind(dir.path(), &[("a", "10.0.0.1/32"), ("b", "10.0.0.2/32")]);
    let mut cfg = config(dir.path());
    cfg.classifier.top_hosts_per_hour = 2;
    classify_all(dir.path(), cfg, NOW_MS);
    let c = SqliteTier2::open_read(dir.path()).unwrap();
    let mut q = c
        .prepare(
            "SELECT account, remote, class, bytes_in, bytes_out, flows FROM top_hosts
             ORDER BY account, remote = '', bytes_in + bytes_out DESC, remote",
        )
        .unwrap();
    let rows: Vec<(String, String, String, i64, i64, i64)> = q
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let row = |a: &str, h: &str, c: &str, i: i64, o: i64, f: i64| {
        (a.to_string(), h.to_string(), c.to_string(), i, o, f)
    };
    assert_eq!(
        rows,
        vec![
            row("a", "192.0.2.2", "peering", 0, 900, 1),
            // 500 bytes each: the lower address first.
            row("a", "192.0.2.1", "peering", 500, 0, 1),
            // 192.0.2.3 (500), 192.0.2.4 and 198.51.100.9.
            row("a", OTHER_HOSTS, "", 300, 400, 4),
            row("b", "192.0.2.9", "peering", 50, 0, 1),
        ]
    );
}

/// A record whose counters no link can carry (a broken or forged 64-bit
/// counter, or a huge one times the sampling rate) is not traffic: it is
/// a loss of its exporter, and the sums beside it stay exact. Before, three
/// records of 2^62 bytes became a tier-2 row of −4.6e18 bytes.
#[test]
fn a_record_with_implausible_counters_is_a_loss_not_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000;
    let rec = |i: i64, bytes: u64, packets: u64, sampling: u32| FlowRecord {
        first_ms: t0 + i,
        last_ms: t0 + i,
        src: "10.0.0.1".parse().unwrap(),
        dst: "192.0.2.1".parse().unwrap(),
        bytes_raw: bytes,
        packets_raw: packets,
        sampling,
        ..flow(0)
    };
    let max = kopek_classifier::aggregate::MAX_RECORD_BYTES;
    let flows = [
        rec(0, 1 << 62, 1, 1),
        rec(1, 1 << 62, 1, 1),
        rec(2, 1_500, 1, 1),
        // Plausible raw, implausible once scaled by 1:1000 sampling.
        rec(3, max / 999, 1, 1_000),
        rec(4, 1 << 62, 1, 1),
        // At the limit: counted.
        rec(5, max, 1, 1),
        // Packets no bytes could carry.
        rec(6, 100, u64::MAX, 1),
    ];
    // Over two blocks: sums across blocks, commits and the host pass.
    sealed(dir.path(), 1, &[&flows[..3], &flows[3..]]);
    bind(dir.path(), &[("a", "10.0.0.1/32")]);
    let mut e = Engine::open(config(dir.path()), NOW_MS).unwrap();
    e.catch_up(NOW_MS).unwrap();
    e.flush(NOW_MS).unwrap();
    e.finish_hosts(NOW_MS).unwrap();
    let stats = e.stats().committed;
    drop(e);
    assert_eq!((stats.records, stats.implausible_records), (7, 5));
    let c = SqliteTier2::open_read(dir.path()).unwrap();
    let one = |sql: &str| -> (String, i64) {
        c.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
    };
    let want = 1_500 + max as i64;
    assert_eq!(
        one("SELECT typeof(sum(bytes)), sum(bytes) FROM traffic"),
        ("integer".into(), want)
    );
    assert_eq!(
        one("SELECT typeof(sum(bytes_out)), sum(bytes_out) FROM top_hosts"),
        ("integer".into(), want)
    );
    assert_eq!(
        one("SELECT reason || '/' || unit, sum(count) FROM losses GROUP BY reason, unit"),
        ("implausible/records".into(), 5)
    );
}

/// Sums past SQLite's largest integer stop there, in one commit and
/// across commits, in every table: never a wrap to a negative number,
/// never a silent change to a floating-point value.
#[test]
fn sums_saturate_at_the_largest_integer_instead_of_wrapping() {
    let dir = tempfile::tempdir().unwrap();
    let max = kopek_classifier::aggregate::MAX_RECORD_BYTES;
    // 4,600 records of the largest plausible size: 5.2e18 bytes, below
    // i64::MAX alone, above it twice.
    let segment = |id: u64, at_ms: i64| {
        let flows: Vec<FlowRecord> = (0..4_600)
            .map(|i| FlowRecord {
                first_ms: at_ms + i,
                last_ms: at_ms + i,
                src: "10.0.0.1".parse().unwrap(),
                dst: "192.0.2.1".parse().unwrap(),
                bytes_raw: max,
                packets_raw: 1,
                ..flow(0)
            })
            .collect();
        sealed(dir.path(), id, &[&flows]);
    };
    bind(dir.path(), &[("a", "10.0.0.1/32")]);
    let sums = |state: &Path| -> Vec<(String, i64)> {
        let c = SqliteTier2::open_read(state).unwrap();
        [
            "SELECT typeof(bytes), bytes FROM traffic",
            "SELECT typeof(bytes), bytes FROM traffic_hourly",
            "SELECT typeof(bytes), bytes FROM traffic_daily",
            "SELECT typeof(bytes_out), bytes_out FROM top_hosts",
        ]
        .iter()
        .map(|q| c.query_row(q, [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap())
        .collect()
    };
    let t = 1_700_000_000_000;
    segment(1, t);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    let one = 4_600 * max as i64;
    assert_eq!(sums(dir.path()), vec![("integer".to_string(), one); 4]);
    // The second commit adds as much again: past the largest integer.
    segment(2, t);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    assert_eq!(sums(dir.path()), vec![("integer".to_string(), i64::MAX); 4]);
    // One commit of both (a rebuild): the same.
    rebuild(config(dir.path()), false);
    assert_eq!(sums(dir.path()), vec![("integer".to_string(), i64::MAX); 4]);

    // An hour later as much again: reports summing both hours (SQLite's
    // SUM would fail with "integer overflow") stop at the largest integer.
    segment(3, t + 3_600_000);
    classify_all(dir.path(), config(dir.path()), NOW_MS);
    use kopek_classifier::report::{self, Period, TrafficQuery};
    let c = SqliteTier2::open_read(dir.path()).unwrap();
    let (from_ms, to_ms) = (t - t % 86_400_000, t - t % 86_400_000 + 86_400_000);
    for period in [Period::Total, Period::Bucket, Period::Day] {
        let q = TrafficQuery {
            from_ms,
            to_ms,
            account: None,
            class: None,
            billed_only: false,
            period,
            tz: chrono_tz::UTC,
        };
        // Rows of one period are added as u64 (saturating): the stored
        // buckets, one at the limit, plus the next hour's. By day and in
        // total the whole day is read from the daily rollup, whose sum
        // tier 2 stores saturated.
        let rows = report::traffic(&c, &q).unwrap();
        let total = rows.iter().fold(0u64, |a, r| a.saturating_add(r.bytes_out));
        let want = match period {
            Period::Bucket => i64::MAX as u64 + one as u64,
            _ => i64::MAX as u64,
        };
        assert_eq!(total, want, "{period:?}: {rows:?}");
        if period != Period::Bucket {
            assert_eq!(rows.len(), 1, "{period:?}: {rows:?}");
            assert_eq!(rows[0].flows, 3 * 4_600, "{period:?}");
        }
    }
    let hosts = report::top_hosts(&c, from_ms, to_ms, None, 10).unwrap();
    assert_eq!(
        hosts
            .iter()
            .map(|h| (h.remote.as_str(), h.bytes_out))
            .collect::<Vec<_>>(),
        vec![("192.0.2.1", i64::MAX as u64)]
    );
    let points = report::points(&c, from_ms, to_ms).unwrap();
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0].bytes, i64::MAX as u64);
}

#[test]
fn retention_removes_old_rows_but_keeps_rows_a_core_beside_it_has_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let cfg = thirty_days(state);
    // Records 31 days old are counted two days ago (inside the 30 days
    // then) and past retention now.
    let (then, old, recent) = (NOW_MS - 2 * DAY, NOW_MS - 31 * DAY, NOW_MS - 3_600_000);
    let count = |table: &str, time: &str| -> (i64, i64) {
        let c = SqliteTier2::open_read(state).unwrap();
        c.query_row(
            &format!(
                "SELECT count(*) FILTER (WHERE {time} < ?1), count(*) FILTER (WHERE {time} >= ?1) FROM {table}"
            ),
            [NOW_MS - 30 * DAY],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let maintain = |cfg: &Config| {
        let mut e = Engine::open(cfg.clone(), NOW_MS).unwrap();
        e.maintain(NOW_MS).unwrap();
    };
    // No core in this state dir: rows past retention go by their time.
    sealed(state, 1, &[&[at_ms(old), at_ms(recent)]]);
    classify_all(state, cfg.clone(), then);
    assert_eq!(count("traffic", "bucket_ms"), (1, 1));
    assert_eq!(count("traffic_hourly", "hour_ms"), (1, 1));
    assert_eq!(count("traffic_daily", "day_ms"), (1, 1));
    maintain(&cfg);
    assert_eq!(count("traffic", "bucket_ms"), (0, 1));
    assert_eq!(count("traffic_hourly", "hour_ms"), (0, 1));
    assert_eq!(count("traffic_daily", "day_ms"), (0, 1));

    // A core that has read through the commits so far (of this tier 2's
    // identity), then stopped: the old record counted afterwards stays,
    // with its hour in the rollup, until the core has read it.
    let core = rusqlite::Connection::open(state.join(kopek_classifier::store::CORE_FILE)).unwrap();
    core.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        .unwrap();
    let read_through = |seq: i64| {
        core.execute(
            "INSERT INTO meta VALUES (?1, ?2), (?3, ?4)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            rusqlite::params![
                kopek_classifier::store::CORE_READ_ID_KEY,
                tier2_id(state),
                kopek_classifier::store::CORE_READ_SEQ_KEY,
                seq.to_string()
            ],
        )
        .unwrap();
    };
    let top = || -> i64 {
        tier2_meta(state, kopek_classifier::store::COMMIT_SEQ_KEY)
            .unwrap()
            .parse()
            .unwrap()
    };
    read_through(top());
    sealed(state, 2, &[&[at_ms(old)]]);
    classify_all(state, cfg.clone(), then);
    maintain(&cfg);
    assert_eq!(count("traffic", "bucket_ms"), (1, 1));
    assert_eq!(count("traffic_hourly", "hour_ms"), (1, 1));
    assert_eq!(count("traffic_daily", "day_ms"), (1, 1));
    read_through(top());
    maintain(&cfg);
    assert_eq!(count("traffic", "bucket_ms"), (0, 1));
    assert_eq!(count("traffic_hourly", "hour_ms"), (0, 1));
    assert_eq!(count("traffic_daily", "day_ms"), (0, 1));
}

const DAY: i64 = 86_400_000;

/// The test config with 30 days of tier-2 retention, 10.0.0.1 bound to
/// account `a`.
fn thirty_days(state: &Path) -> Config {
    let mut cfg = config(state);
    cfg.retention.traffic_days = 30;
    bind(state, &[("a", "10.0.0.1/32")]);
    cfg
}

/// One 1,000-byte record of subscriber 10.0.0.1 (bound to `a` by
/// [`thirty_days`]) to 192.0.2.1 at `t`.
fn at_ms(t: i64) -> FlowRecord {
    FlowRecord {
        first_ms: t,
        last_ms: t,
        src: "10.0.0.1".parse().unwrap(),
        dst: "192.0.2.1".parse().unwrap(),
        bytes_raw: 1_000,
        packets_raw: 1,
        ..flow(0)
    }
}

#[test]
fn a_record_older_than_tier2_retention_is_a_stale_loss_not_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let cfg = thirty_days(state);
    let cut = kopek_classifier::aggregate::traffic_cut(NOW_MS, 30).unwrap();
    assert!(cut <= NOW_MS - 30 * DAY && cut > NOW_MS - 30 * DAY - 3_600_000);
    let span = |first: i64, last: i64| FlowRecord {
        first_ms: first,
        last_ms: last,
        ..at_ms(first)
    };
    sealed(
        state,
        1,
        &[&[
            // A router whose clock is years behind.
            at_ms(1_000),
            at_ms(NOW_MS - 90 * DAY),
            // Starts a minute before the cut: some of its bytes would go
            // into a bucket retention no longer keeps.
            span(cut - 60_000, cut + 60_000),
            // Longer than a record may last: clamped to its last 2 hours,
            // which start before the cut.
            span(cut - 5 * 3_600_000, cut + 3_600_000),
            // Clamped to its last 2 hours, which start after the cut:
            // counted.
            span(cut - 5 * 3_600_000, cut + 3 * 3_600_000),
            // Starts at the cut: counted.
            at_ms(cut),
            // Recent (an hour that has ended: host detail done).
            at_ms(NOW_MS - 2 * 3_600_000),
        ]],
    );
    classify_all(state, cfg.clone(), NOW_MS);
    let c = SqliteTier2::open_read(state).unwrap();
    let (rows_before, bytes): (i64, i64) = c
        .query_row(
            "SELECT count(*) FILTER (WHERE bucket_ms < ?1), sum(bytes) FROM traffic",
            [cut],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows_before, bytes), (0, 3_000));
    let losses: Vec<(i64, String, String, i64)> = c
        .prepare("SELECT bucket_ms, reason, unit, count FROM losses")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        losses,
        vec![(NOW_MS - NOW_MS % MIN, "stale".into(), "records".into(), 4)]
    );
    let hosts: i64 = c
        .query_row("SELECT sum(bytes_out) FROM top_hosts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hosts, 3_000, "no host detail of stale records");
    drop(c);
    // A rebuild counts the same records: no billed change; also with a
    // stale record in tier 1 that tier 2 has not read yet (a dry run does
    // not catch up first): not counted either way, so no reason to refuse.
    sealed(state, 2, &[&[at_ms(7_000)]]);
    let r = rebuild(cfg.clone(), true);
    assert_eq!((r.records, r.changes.clone()), (8, vec![]));
    assert_eq!(r.kept_before_ms, Some(cut));
    let r = rebuild(cfg, false);
    assert_eq!((r.records, r.changes), (8, vec![]));
}

#[test]
fn reports_across_a_dst_change_give_each_period_once_with_every_byte() {
    use kopek_classifier::report::{self, Period, TrafficQuery};
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    bind(state, &[("a", "10.0.0.1/32"), ("b", "10.0.0.2/32")]);
    // Berlin leaves summer time on 2023-10-29 at 01:00 UTC: local 02:00 to
    // 03:00 happens twice. Records every 5 minutes from 22:00 UTC the day
    // before to 04:00 UTC, of two accounts.
    let start = 1_698_530_400_000; // 2023-10-28 22:00 UTC
    let recs: Vec<FlowRecord> = (0..72i64)
        .flat_map(|i| {
            let t = start + i * 300_000;
            [
                FlowRecord {
                    bytes_raw: 1_000 + i as u64,
                    ..at_ms(t)
                },
                FlowRecord {
                    src: "10.0.0.2".parse().unwrap(),
                    bytes_raw: 7,
                    ..at_ms(t + 60_000)
                },
            ]
        })
        .collect();
    sealed(state, 1, &[&recs]);
    classify_all(state, config(state), NOW_MS);
    let c = SqliteTier2::open_read(state).unwrap();
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    for period in [Period::Bucket, Period::Hour, Period::Day, Period::Total] {
        let q = TrafficQuery {
            from_ms: start - 3_600_000,
            to_ms: start + 8 * 3_600_000,
            account: None,
            class: None,
            billed_only: false,
            period,
            tz,
        };
        // The reference: every row of the table report::traffic reads,
        // grouped here.
        let (table, time) = if report::hourly_answers(&q) {
            ("traffic_hourly", "hour_ms")
        } else {
            ("traffic", "bucket_ms")
        };
        let mut want: BTreeMap<(i64, String, String), (u64, u64)> = BTreeMap::new();
        let mut st = c
            .prepare(&format!(
                "SELECT {time}, account, class, direction, bytes FROM {table} WHERE {time} >= ?1 AND {time} < ?2"
            ))
            .unwrap();
        let mut rows = st.query([q.from_ms, q.to_ms]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let p = report::period_start(r.get(0).unwrap(), period, q.from_ms, tz);
            let e = want
                .entry((p, r.get(1).unwrap(), r.get(2).unwrap()))
                .or_default();
            if r.get::<_, String>(3).unwrap() == "in" {
                e.0 += r.get::<_, i64>(4).unwrap() as u64;
            } else {
                e.1 += r.get::<_, i64>(4).unwrap() as u64;
            }
        }
        type Sums = Vec<((i64, String, String), (u64, u64))>;
        let got: Sums = report::traffic(&c, &q)
            .unwrap()
            .into_iter()
            .map(|r| ((r.period_ms, r.account, r.class), (r.bytes_in, r.bytes_out)))
            .collect();
        assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{period:?}");
        let total: u64 = got.iter().map(|(_, (i, o))| i + o).sum();
        assert_eq!(
            total,
            (0..72).map(|i| 1_000 + i + 7).sum::<u64>(),
            "{period:?}"
        );
    }
}

/// A `traffic_daily` primary key.
type DailyKey = (i64, String, String, String, String, i64);

/// `traffic_daily` summed independently: every bucket row of `traffic`
/// added to the local day of `tz` its start lies in.
fn daily_from_buckets(state: &Path, tz: chrono_tz::Tz) -> Vec<String> {
    daily_from_buckets_since(state, tz, i64::MIN)
}

/// [`daily_from_buckets`], the days from `from` on.
fn daily_from_buckets_since(state: &Path, tz: chrono_tz::Tz, from: i64) -> Vec<String> {
    use std::collections::BTreeMap;
    let c = SqliteTier2::open_read(state).unwrap();
    let mut st = c
        .prepare("SELECT bucket_ms, account, class, direction, point, billed, bytes, packets, flows FROM traffic")
        .unwrap();
    let mut q = st.query([]).unwrap();
    let mut days: BTreeMap<DailyKey, (i64, i64, i64)> = BTreeMap::new();
    while let Some(r) = q.next().unwrap() {
        let day = kopek_classifier::days::day_start(r.get(0).unwrap(), tz);
        if day < from {
            continue;
        }
        let k = (
            day,
            r.get(1).unwrap(),
            r.get(2).unwrap(),
            r.get(3).unwrap(),
            r.get(4).unwrap(),
            r.get(5).unwrap(),
        );
        let e = days.entry(k).or_default();
        e.0 += r.get::<_, i64>(6).unwrap();
        e.1 += r.get::<_, i64>(7).unwrap();
        e.2 += r.get::<_, i64>(8).unwrap();
    }
    days.into_iter()
        .filter(|(_, v)| *v != (0, 0, 0))
        .map(|(k, v)| format!("{k:?} {v:?}"))
        .collect()
}

/// Where the daily rollup is complete from (`meta.daily_from_ms`).
fn daily_complete_from(state: &Path) -> i64 {
    tier2_meta(state, kopek_classifier::store::DAILY_FROM_KEY)
        .map_or(i64::MIN, |v| v.parse().unwrap())
}

/// Runs the daemon's idle work on the daily rollup until it is complete,
/// checking the reports in between; returns the steps taken.
fn complete_daily(e: &mut Engine, state: &Path, tz: chrono_tz::Tz, t0: i64) -> usize {
    let mut steps = 0;
    while e.daily_step(NOW_MS).unwrap() {
        steps += 1;
        let from = daily_complete_from(state);
        assert_eq!(e.stats().daily_complete_from_ms, Some(from));
        assert_eq!(
            daily_table(state),
            daily_from_buckets_since(state, tz, from)
        );
        if steps == 2 {
            assert_days_report_as_buckets(state, tz, t0);
        }
    }
    assert_eq!(daily_complete_from(state), i64::MIN);
    assert_eq!(e.stats().daily_complete_from_ms, None);
    assert_eq!(daily_table(state), daily_from_buckets(state, tz));
    steps
}

fn daily_table(state: &Path) -> Vec<String> {
    let c = SqliteTier2::open_read(state).unwrap();
    let mut st = c
        .prepare(
            "SELECT day_ms, account, class, direction, point, billed, bytes, packets, flows
             FROM traffic_daily ORDER BY day_ms, account, class, direction, point, billed",
        )
        .unwrap();
    st.query_map([], |r| {
        let k: DailyKey = (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        );
        let v: (i64, i64, i64) = (r.get(6)?, r.get(7)?, r.get(8)?);
        Ok(format!("{k:?} {v:?}"))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Reports by day and in total of zone `tz` equal the buckets summed by
/// hand, over intervals of whole days, part days and odd offsets; and a
/// multi-day one is read (mostly) from the daily rollup.
fn assert_days_report_as_buckets(state: &Path, tz: chrono_tz::Tz, t0: i64) {
    use kopek_classifier::days::day_start;
    use kopek_classifier::report::{self, Period, Source, TrafficQuery};
    use std::collections::BTreeMap;
    let conn = SqliteTier2::open_read(state).unwrap();
    let h = 3_600_000;
    let d0 = day_start(t0, tz);
    let mut used_days = false;
    for (from, to) in [
        (d0 - 40 * 24 * h, d0 + 40 * 24 * h),
        (d0 - 2 * 24 * h, d0 + 8 * 24 * h),
        (d0, d0 + 3 * 24 * h),
        (d0 + 5 * h, d0 + 3 * 24 * h - 7 * h),
        (t0 + 1_234_567, t0 + 2 * 24 * h + 999),
        (d0 + h, d0 + 2 * h),
        (d0 + 24 * h, d0 + 24 * h + 30 * 60_000),
    ] {
        for period in [Period::Day, Period::Month, Period::Total] {
            for account in [None, Some("acme".to_string())] {
                let q = TrafficQuery {
                    from_ms: from,
                    to_ms: to,
                    account: account.clone(),
                    class: None,
                    billed_only: false,
                    period,
                    tz,
                };
                used_days |= report::plan(&conn, &q)
                    .unwrap()
                    .iter()
                    .any(|p| p.2 == Source::Days);
                let got = report::traffic(&conn, &q).unwrap();
                let buckets = report::traffic(
                    &conn,
                    &TrafficQuery {
                        period: Period::Bucket,
                        ..q.clone()
                    },
                )
                .unwrap();
                let mut want: BTreeMap<(i64, String, String), report::TrafficRow> = BTreeMap::new();
                for r in buckets {
                    let p = report::period_start(r.period_ms, period, from, tz);
                    let e = want
                        .entry((p, r.account.clone(), r.class.clone()))
                        .or_insert_with(|| report::TrafficRow {
                            period_ms: p,
                            account: r.account.clone(),
                            class: r.class.clone(),
                            ..Default::default()
                        });
                    e.bytes_in += r.bytes_in;
                    e.bytes_out += r.bytes_out;
                    e.packets_in += r.packets_in;
                    e.packets_out += r.packets_out;
                    e.flows += r.flows;
                }
                let want: Vec<_> = want.into_values().collect();
                assert_eq!(got, want, "{tz} {period:?} {account:?} {from}..{to}");
                if period == Period::Month && from == d0 - 40 * 24 * h {
                    let months: std::collections::BTreeSet<i64> =
                        got.iter().map(|r| r.period_ms).collect();
                    assert_eq!(months.len(), 2, "{tz}: August and September");
                }
            }
        }
    }
    assert!(used_days, "{tz}: no report read the daily rollup");
}

#[test]
fn the_daily_rollup_answers_exactly_what_the_buckets_do_in_any_zone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // Nine days across a month's end and Santiago's DST jump of
    // 2024-09-08 (its midnight skipped), a record every four minutes
    // lasting up to 12.
    let t0 = 1_724_976_000_000; // 2024-08-30 00:00 UTC
    let flows: Vec<FlowRecord> = (0..3_300u64)
        .map(|i| {
            let first = t0 + i as i64 * 240_000;
            FlowRecord {
                first_ms: first,
                last_ms: first + (i as i64 % 7) * 120_000,
                ..flow(i)
            }
        })
        .collect();
    let (a, b) = flows.split_at(2_000);
    sealed(state, 1, &[&a[..1_000], &a[1_000..]]);
    bind(state, &[("acme", "10.0.0.0/28"), ("bolt", "10.0.0.16/28")]);
    let zoned = |tz: &str| {
        let mut c = config(state);
        c.timezone = tz.parse().unwrap();
        c
    };
    let zones = [
        "America/Santiago",
        "Asia/Kolkata",
        "UTC",
        "Australia/Lord_Howe",
        "Europe/Moscow",
        "Asia/Kathmandu",
    ];
    // Written commit by commit in the first zone.
    classify_all(state, zoned(zones[0]), NOW_MS);
    let tz: chrono_tz::Tz = zones[0].parse().unwrap();
    assert!(!daily_table(state).is_empty());
    assert_eq!(daily_table(state), daily_from_buckets(state, tz));
    assert_days_report_as_buckets(state, tz, t0);
    // Another zone: summed again when the engine opens (the daemon
    // restarted with a new general.timezone), then new records added to it
    // (the rest of the stream, and some of its first days again).
    sealed(state, 2, &[b, &a[..50]]);
    for (i, zone) in zones.iter().enumerate().skip(1) {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        let mut e = Engine::open(zoned(zone), NOW_MS).unwrap();
        // Opening sums the newest day; the older ones follow a day a step
        // in the background, reports right all along.
        let from = daily_complete_from(state);
        assert!(from > i64::MIN, "{zone}");
        assert_eq!(e.stats().daily_complete_from_ms, Some(from), "{zone}");
        let partial = daily_from_buckets_since(state, tz, from);
        assert!(!partial.is_empty());
        assert_eq!(daily_table(state), partial, "{zone}");
        assert_days_report_as_buckets(state, tz, t0);
        if i == 1 {
            // New records, of days before and after `from`: only the
            // complete days get them now.
            e.catch_up(NOW_MS).unwrap();
            e.flush(NOW_MS).unwrap();
            assert_eq!(
                daily_table(state),
                daily_from_buckets_since(state, tz, from),
                "{zone}"
            );
        }
        assert!(complete_daily(&mut e, state, tz, t0) >= 3, "{zone}");
        // A reload (SIGHUP) to another zone starts it again the same way,
        // new records included; and back.
        let next = zones[(i + 1) % zones.len()];
        let next_tz: chrono_tz::Tz = next.parse().unwrap();
        e.reload(zoned(next), NOW_MS).unwrap();
        if i == 2 {
            sealed(state, 3, &[&b[..100], &a[..50]]);
            e.catch_up(NOW_MS).unwrap();
            e.flush(NOW_MS).unwrap();
        }
        let from = daily_complete_from(state);
        assert!(from > i64::MIN, "{next}");
        assert_eq!(
            daily_table(state),
            daily_from_buckets_since(state, next_tz, from),
            "{next}"
        );
        assert_days_report_as_buckets(state, next_tz, t0);
        e.reload(zoned(zone), NOW_MS).unwrap();
        complete_daily(&mut e, state, tz, t0);
        drop(e);
        assert_eq!(daily_table(state), daily_from_buckets(state, tz), "{zone}");
        assert_days_report_as_buckets(state, tz, t0);
    }
    // A report in a zone the rollup is not of reads hours or buckets, and
    // answers the same.
    assert_days_report_as_buckets_without_days(state, "Asia/Tokyo".parse().unwrap(), t0);
    // A rebuild from the middle of a day, with a binding recorded late:
    // the rows before the cut kept as they were (10.0.0.32/28
    // unattributed), after it computed again (carl's), and the day of the
    // cut summed from both.
    let zone = zones[zones.len() - 1];
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    bind(state, &[("carl", "10.0.0.32/28")]);
    let cut = t0 + 2 * 24 * 3_600_000 + 13 * 3_600_000;
    let rebuild_from = |zone: &str| {
        let opts = RebuildOptions {
            from_ms: Some(cut),
            ..Default::default()
        };
        try_rebuild(zoned(zone), opts).unwrap()
    };
    assert!(rebuild_from(zone).rows_kept > 0);
    let carl: Vec<i64> = SqliteTier2::open_read(state)
        .unwrap()
        .prepare("SELECT bucket_ms FROM traffic WHERE account = 'carl'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !carl.is_empty() && carl.iter().all(|&t| t >= cut),
        "{carl:?}"
    );
    assert_eq!(daily_table(state), daily_from_buckets(state, tz));
    assert_days_report_as_buckets(state, tz, t0);
    // And one in another zone than the live rollup's: all of it summed again.
    let india: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    rebuild_from("Asia/Kolkata");
    let from = daily_complete_from(state);
    assert_eq!(
        from,
        kopek_classifier::days::next_day_start(
            kopek_classifier::days::day_start(cut, india),
            india
        )
    );
    assert_eq!(
        daily_table(state),
        daily_from_buckets_since(state, india, from)
    );
    assert_days_report_as_buckets(state, india, t0);
    let mut e = Engine::open(zoned("Asia/Kolkata"), NOW_MS).unwrap();
    complete_daily(&mut e, state, india, t0);
}

fn assert_days_report_as_buckets_without_days(state: &Path, tz: chrono_tz::Tz, t0: i64) {
    use kopek_classifier::report::{self, Period, Source, TrafficQuery};
    let conn = SqliteTier2::open_read(state).unwrap();
    let q = TrafficQuery {
        from_ms: t0,
        to_ms: t0 + 4 * 24 * 3_600_000,
        account: None,
        class: None,
        billed_only: false,
        period: Period::Day,
        tz,
    };
    let plan = report::plan(&conn, &q).unwrap();
    assert_eq!(plan, vec![(q.from_ms, q.to_ms, Source::Hours)]);
    let by_hours = report::traffic(&conn, &q).unwrap();
    assert!(!by_hours.is_empty());
}

#[test]
fn a_top_hosts_report_names_the_hours_it_has_no_hosts_for() {
    use kopek_classifier::report;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut cfg = thirty_days(state);
    cfg.retention.top_hosts_days = 5;
    let hour = 3_600_000;
    let whole = |t: i64| t - t.rem_euclid(hour);
    // Ten days old (its hosts past retention), three hours old (summed),
    // five minutes old (its hour not over: not summed yet).
    let (old, recent, current) = (NOW_MS - 10 * DAY, NOW_MS - 3 * hour, NOW_MS - 300_000);
    sealed(state, 1, &[&[at_ms(old), at_ms(recent), at_ms(current)]]);
    classify_all(state, cfg.clone(), NOW_MS);
    let mut e = Engine::open(cfg.clone(), NOW_MS).unwrap();
    e.maintain(NOW_MS).unwrap();
    drop(e);
    let conn = SqliteTier2::open_read(state).unwrap();
    let covered = |from: i64, to: i64| report::host_coverage(&conn, from, to).unwrap();
    let hosts = |from: i64, to: i64| -> u64 {
        report::top_hosts(&conn, from, to, None, 3)
            .unwrap()
            .iter()
            .map(|h| h.bytes_out)
            .sum()
    };

    // Twenty days: the whole hours of the interval, the old record's hour
    // without hosts any more, the current hour without hosts yet; what
    // the hosts sum is the one record in between.
    let (from, to) = (NOW_MS - 20 * DAY + 1, NOW_MS);
    let c = covered(from, to);
    assert_eq!((c.from_ms, c.to_ms), (NOW_MS - 20 * DAY + hour, NOW_MS));
    assert_eq!(c.pending_hours_ms, vec![whole(current)]);
    assert_eq!(c.removed_before_ms, Some(whole(recent)));
    assert_eq!(hosts(from, to), 1_000);
    // Only the hours kept and done: nothing lacking.
    let c = covered(NOW_MS - 4 * hour, whole(current));
    assert_eq!((c.pending_hours_ms.len(), c.removed_before_ms), (0, None));
    assert_eq!(hosts(NOW_MS - 4 * hour, whole(current)), 1_000);
    // Before the host retention but with no traffic there: nothing lacking.
    let c = covered(NOW_MS - 8 * DAY, whole(current));
    assert_eq!(c.removed_before_ms, None);
    // Only the old day: its traffic is there, its hosts are not.
    let c = covered(whole(old), whole(old) + hour);
    assert_eq!(c.removed_before_ms, Some(whole(old) + hour));
    assert_eq!(hosts(whole(old), whole(old) + hour), 0);

    // Once the current hour is over and summed, nothing is pending.
    let later = whole(current) + hour + HOSTS_GRACE_MS;
    let mut e = Engine::open(cfg, later).unwrap();
    e.finish_hosts(later).unwrap();
    drop(e);
    let c = report::host_coverage(&conn, from, later).unwrap();
    assert!(c.pending_hours_ms.is_empty(), "{c:?}");
    assert_eq!(
        report::top_hosts(&conn, from, later, None, 3)
            .unwrap()
            .iter()
            .map(|h| h.bytes_out)
            .sum::<u64>(),
        2_000
    );
}

#[test]
fn a_list_file_is_reloaded_once_it_has_stopped_changing_not_half_written() {
    let dir = tempfile::tempdir().unwrap();
    tier1(dir.path(), 1, 10);
    let list = dir.path().join("peering.txt");
    std::fs::write(&list, "192.0.2.0/24\n").unwrap();
    let mut cfg = config(dir.path());
    cfg.classifier.classes[0].networks.clear();
    cfg.classifier.classes[0].files = vec![list.clone()];
    let versions = || -> Vec<(i64, i64)> {
        let c = SqliteTier2::open_read(dir.path()).unwrap();
        let mut st = c
            .prepare("SELECT id, prefixes FROM class_versions ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let t = NOW_MS;
    let mut e = Engine::open(cfg, t).unwrap();
    assert_eq!(versions(), [(1, 1)]);
    // A copy of a longer list caught half done at one look, finished by
    // the next: neither look loads it.
    std::fs::write(&list, "192.0.2.0/24\n198.51.100.0/24\n").unwrap();
    e.step(t + 1_000).unwrap();
    std::fs::write(&list, "192.0.2.0/24\n198.51.100.0/24\n203.0.113.0/24\n").unwrap();
    e.step(t + 2_000).unwrap();
    assert_eq!(versions(), [(1, 1)], "a list still changing is not loaded");
    // Unchanged for a whole look: loaded, whole.
    e.step(t + 3_000).unwrap();
    assert_eq!(versions(), [(1, 1), (2, 3)], "no half-written version");
    assert_eq!(
        e.stats().last_reload.as_ref().map(|r| r.at_ms),
        Some(t + 3_000)
    );
}

/// `retention.raw_max_bytes` (like nfexpire -s): tier 1 is kept below it by
/// removing the sealed segments with the oldest records first, and only
/// those fully counted: tier 2 keeps every row, the time removed is noted
/// for rebuilds, and a segment not yet counted stays whatever the size.
#[test]
fn tier1_is_kept_below_raw_max_bytes_by_its_oldest_counted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (n, bytes) = tier1(state, 6, 1_000);
    let raw = kopek_collector::segment::RawStore::new(state.join("raw"));
    let ids = || -> Vec<u64> { raw.list().unwrap().iter().map(|s| s.id).collect() };
    let size: Vec<u64> = raw.list().unwrap().iter().map(|s| s.size_bytes).collect();
    assert_eq!(ids(), vec![1, 2, 3, 4, 5, 6]);
    let mut cfg = config(state);
    // Room for the newest three.
    cfg.retention.raw_max_bytes = size[3] + size[4] + size[5] + 1;
    let mut e = Engine::open(cfg.clone(), NOW_MS).unwrap();
    let (removed, over) = e.trim_raw(NOW_MS).unwrap();
    assert_eq!(removed, 0, "nothing counted yet");
    assert_eq!(over, size[..3].iter().sum::<u64>() - 1);
    assert_eq!(ids().len(), 6);
    e.catch_up(NOW_MS).unwrap();
    let over = e.trim_raw(NOW_MS).unwrap();
    assert_eq!(
        over.0, 0,
        "counted, but the hours' host detail (read from tier 1) is not done"
    );
    while e.hosts_step(NOW_MS).unwrap() {}
    assert_eq!(e.trim_raw(NOW_MS).unwrap(), (3, 0));
    assert_eq!(ids(), vec![4, 5, 6]);
    assert_eq!(tier2_totals(state), (n, bytes));
    let newest_removed = (0..3_000).map(|i| flow(i).last_ms).max().unwrap();
    assert_eq!(
        tier2_meta(state, "raw_removed_through_ms"),
        Some(newest_removed.to_string())
    );
    assert_eq!(e.trim_raw(NOW_MS).unwrap(), (0, 0), "below the limit now");

    // A segment not yet counted and a limit of 1 byte: every counted one
    // goes, it stays.
    let flows: Vec<_> = (6_000..6_100).map(flow).collect();
    sealed(state, 7, &[&flows]);
    let seven = raw.list().unwrap().last().unwrap().size_bytes;
    drop(e);
    cfg.retention.raw_max_bytes = 1;
    let mut e = Engine::open(cfg, NOW_MS).unwrap();
    assert_eq!(e.trim_raw(NOW_MS).unwrap(), (3, seven - 1));
    assert_eq!(ids(), vec![7]);
    e.catch_up(NOW_MS).unwrap();
    while e.hosts_step(NOW_MS).unwrap() {}
    assert_eq!(e.trim_raw(NOW_MS).unwrap(), (1, 0));
    assert_eq!(ids(), Vec::<u64>::new());
    let (n7, b7): (u64, u64) = (100, flows.iter().map(|f| f.bytes()).sum());
    assert_eq!(tier2_totals(state), (n + n7, bytes + b7));
}
