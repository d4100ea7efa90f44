//! Exactly-once under kill -9: a collector receives a generated stream at
//! a steady rate (rotating segments every 2 s) while the classifier tailing
//! it is killed with SIGKILL at seeded random moments and restarted, also
//! after the stream ended (during the catch-up and the host-detail passes).
//! A second classifier then runs once, uninterrupted, over a copy of the
//! same sealed tier 1 with the same config (only the state dir differs)
//! and the same binding registry: both tier-2 databases must hold the very
//! same traffic, unattributed, top_hosts and losses rows, and their bytes
//! must add up to tier 1's.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Collector;
use common::classify::{Classifier, Rng, kopek, table_rows, tier2, tier2_caught_up};

const FLOWS: u64 = 400_000;
const RATE: u64 = 40_000;
/// Kills after the stream ended (catch-up, host detail).
const LATE_KILLS: u64 = 6;

fn wait_caught_up(state: &Path, what: &str, c: &mut Classifier) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !tier2_caught_up(state, &state.join("raw")) {
        c.assert_running();
        assert!(Instant::now() < deadline, "{what}: not caught up in 90 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Flows in tier 1 once the stream has landed: all of them, unless the
/// machine was too loaded to take 40,000 flows/s through a small socket
/// buffer (this test compares two classifications of whatever tier 1
/// holds, so a few lost datagrams do not matter; most must arrive).
fn settled_flows(c: &Collector, expected: u64) -> u64 {
    let mut last = (
        c.wait_flows(expected, Duration::from_secs(5)),
        Instant::now(),
    );
    while last.0 < expected && last.1.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
        let now = c.stats()["flows_written"].as_u64().unwrap();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    assert!(
        last.0 * 10 >= expected * 9,
        "only {} of {expected} flows reached tier 1: {}",
        last.0,
        c.stats()
    );
    if last.0 < expected {
        eprintln!(
            "crash: {} of {expected} flows reached tier 1 (datagrams dropped under load)",
            last.0
        );
    }
    last.0
}

/// `kopek gen` sending `flows` IPFIX flows (20 % IPv6) at `rate` to the
/// collector on `port`; its report on standard output.
fn stream(port: u16, flows: u64, rate: u64, seed: u64) -> std::process::Child {
    Command::new(common::kopek_bin())
        .args(["gen", "--target"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--version", "ipfix", "--ipv6-percent", "20"])
        .args(["--seed", &seed.to_string()])
        .args(["--flows", &flows.to_string(), "--rate", &rate.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kopek gen")
}

/// Waits until `c` has committed once (20 s at most).
fn wait_for_a_commit(c: &mut Classifier) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.stats()["commits"].as_u64().unwrap_or(0) == 0 {
        c.assert_running();
        assert!(Instant::now() < deadline, "no commit in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sum(state: &Path, sql: &str) -> i64 {
    tier2(state).query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn kill_9_at_random_moments_counts_every_record_exactly_once() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let extra = classifier_config(work.path());
    let mut collector = Collector::start(&extra);
    let config = collector.config.clone();
    let state = collector.state_dir().to_path_buf();
    // A session binding in the registry, starting inside the stream's time.
    kopek(
        &config,
        &[
            "binding",
            "add",
            "session",
            "10.0.0.77",
            "--from",
            "2024-01-01T00:00:04Z",
        ],
    );

    let mut classifier = Classifier::start(&config, &state);
    let gen_cmd = stream(collector.port, FLOWS, RATE, 5);

    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let kills = rng.between(25, 40);
    let mut gen_child = Some(gen_cmd);
    let mut kills_during_stream = 0;
    let mut stored = 0;
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.between(20, 400)));
        classifier.kill9();
        classifier.spawn();
        if let Some(g) = gen_child.as_mut()
            && g.try_wait().unwrap().is_none()
        {
            kills_during_stream += 1;
        }
        // The last kills hit after the stream: stop the collector first
        // (sealing its segment) so they land in the catch-up.
        if i + LATE_KILLS == kills
            && let Some(g) = gen_child.take()
        {
            let out = g.wait_with_output().unwrap();
            assert!(out.status.success(), "kopek gen failed");
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let expected = report["expected_flows"].as_u64().unwrap();
            assert_eq!(expected, FLOWS, "{report}");
            stored = settled_flows(&collector, expected);
            collector.stop();
        }
    }
    assert!(
        kills_during_stream >= 10,
        "only {kills_during_stream} of {kills} kills while the stream ran"
    );
    wait_caught_up(&state, "the killed classifier", &mut classifier);
    classifier.stop();

    // Tier 1 as it stands: every segment sealed.
    let t1 = tier1_holds(&config, stored);

    let (state2, segments) = same_as_a_clean_run(&config, &state, work.path(), "kills");
    assert!(segments >= 4, "only {segments} segments");
    for s in [state.as_path(), state2.path()] {
        adds_up_to_tier1(s, t1);
    }
    // Restarts with unchanged lists add no class version.
    assert_eq!(sum(&state, "SELECT COUNT(*) FROM class_versions"), 1);
    assert!(
        sum(
            &state,
            "SELECT COUNT(*) FROM traffic WHERE account = 'session'"
        ) > 0
    );
    let rebuild_kills = rebuild_killed_at_random_moments(&config, &state, &mut rng);
    eprintln!(
        "crash: {stored} flows, {segments} segments, {kills} kills ({kills_during_stream} during the stream), {rebuild_kills} rebuilds killed, {:?}",
        started.elapsed()
    );
}

/// Tier 2's filesystem fills up while the stream runs (tier 1 is on
/// another one, as a separately mounted /var/lib/kopek/raw would be): the
/// classifier must not exit — under systemd it would be restarted every
/// 2 s until the start limit (five starts in 10 s) stopped it for good,
/// and counting would stand still after the disk had room again. Its
/// commits fail and are retried; once there is room it counts everything,
/// exactly once (the same rows as a run that never saw a full disk), and
/// `kopek classifier stats` names the failure.
#[test]
fn a_full_disk_under_tier2_stops_counting_until_there_is_room_and_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let _state_fs = common::Tmpfs::mount(&state, "64m");
    let _raw_fs = common::Tmpfs::mount(&state.join("raw"), "256m");
    let port = common::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kopek.toml");
    let text = Collector::config_text(&state, port, &classifier_config(work.path()));
    std::fs::write(&config, text).unwrap();
    let mut collector = Collector::with_state(dir, config.clone(), port, state.clone());
    let log = work.path().join("classifier.log");
    let mut classifier = Classifier::start_logged(&config, &state, Some(&log));
    let flows = FLOWS / 2;
    let rate = RATE / 2;
    let gen_child = stream(port, flows, rate, 9);
    wait_for_a_commit(&mut classifier);

    // Fill the filesystem, and keep it full until a commit has failed.
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("tier 2 not written")
    {
        classifier.assert_running();
        assert!(
            Instant::now() < deadline,
            "no commit failed in 15 s on a full disk: nothing was tested"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Failing for a while, retried, and still running.
    std::thread::sleep(Duration::from_secs(3));
    classifier.assert_running();
    std::fs::remove_file(&filler).unwrap();

    let stored = stream_done(gen_child, &mut collector, flows);
    let st = classifier.wait_caught_up(stored, Duration::from_secs(90));
    let f = &st["last_failure"];
    assert!(
        f["attempts"].as_u64().unwrap_or(0) >= 1
            && f["error"].as_str().unwrap_or("").contains("full")
            && f["recovered_ms"].as_i64().unwrap_or(0) > f["since_ms"].as_i64().unwrap(),
        "{st}"
    );
    let table = kopek(&config, &["classifier", "stats"]);
    assert!(
        table.contains("last failure") && table.contains("database or disk is full"),
        "{table}"
    );
    classifier.stop();

    let t1 = tier1_holds(&config, stored);
    adds_up_to_tier1(&state, t1);
    let (clean, _) = same_as_a_clean_run(&config, &state, work.path(), "a full disk");
    adds_up_to_tier1(clean.path(), t1);
}

/// Tier 2 held by another writer (an operator's `sqlite3` session left in
/// a write transaction) longer than the classifier waits for it: its
/// commits fail while its stats file can still be written, so `kopek
/// classifier stats` says FAILING and why, and `kopek traffic` says its
/// figures lack what tier 1 holds since the last commit; killed while it
/// fails, its stats no longer say it retries. Once the lock is gone, the
/// classifier started again counts everything exactly once.
#[test]
fn a_tier2_locked_by_another_writer_is_reported_and_counted_once_it_is_free() {
    let LiveRun {
        work,
        mut collector,
        config,
        state,
        mut classifier,
        flows,
        gen_child,
    } = LiveRun::start(11);
    let holder = rusqlite::Connection::open(state.join("tier2.sqlite")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The classifier waits 10 s for a lock before its commit fails.
    let deadline = Instant::now() + Duration::from_secs(40);
    let failing = loop {
        classifier.assert_running();
        let st = classifier.stats();
        if st["last_failure"]["recovered_ms"].is_null() && !st["last_failure"].is_null() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no failure reported in 40 s: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        failing["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{failing}"
    );
    let table = kopek(&config, &["classifier", "stats"]);
    assert!(table.contains("FAILING since"), "{table}");
    let out = common::run(
        Command::new(common::kopek_bin())
            .arg("--config")
            .arg(&config)
            .args(["traffic", "--from", "2020-01-01", "--to", "2030-01-01"]),
    );
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("kopek: note: the classifier cannot write tier 2 since")
            && note.contains("not in these figures yet"),
        "{note}"
    );
    // Killed while failing: its stats no longer claim that it retries.
    classifier.kill9();
    let table = kopek(&config, &["classifier", "stats"]);
    assert!(
        table.contains("NOT RUNNING")
            && table.contains("not over when it ended")
            && !table.contains("FAILING"),
        "{table}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    classifier.spawn();

    let stored = stream_done(gen_child, &mut collector, flows);
    wait_caught_up(&state, "the classifier started again", &mut classifier);
    let st = classifier.stats();
    assert!(st["last_failure"].is_null(), "{st}");
    let out = common::run(
        Command::new(common::kopek_bin())
            .arg("--config")
            .arg(&config)
            .args(["traffic", "--from", "2020-01-01", "--to", "2030-01-01"]),
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    classifier.stop();
    like_a_clean_run(&config, &state, work.path(), stored, "a locked tier 2");
}

/// `tier2.sqlite` removed under a running classifier (an operator's `rm`,
/// or a restored copy renamed over it): the daemon would go on committing
/// into the unlinked file, which the core and the reports no longer see.
/// It notices within a second, opens the file that is there now (a new,
/// empty one) and counts all of tier 1 into it from there, as a restart
/// would: in the end the same rows as a clean run, from the same process.
#[test]
fn a_tier2_removed_under_the_classifier_is_made_again_from_tier1() {
    let LiveRun {
        work,
        mut collector,
        config,
        state,
        mut classifier,
        flows,
        gen_child,
    } = LiveRun::start(12);
    for f in ["tier2.sqlite", "tier2.sqlite-wal", "tier2.sqlite-shm"] {
        let _ = std::fs::remove_file(state.join(f));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        classifier.assert_running();
        let st = classifier.stats();
        if st["last_failure"]["recovered_ms"].is_i64() {
            break st;
        }
        assert!(Instant::now() < deadline, "not made again in 30 s: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let error = st["last_failure"]["error"].as_str().unwrap();
    assert!(error.contains("tier2.sqlite was removed"), "{st}");
    assert!(state.join("tier2.sqlite").exists());

    let stored = stream_done(gen_child, &mut collector, flows);
    wait_caught_up(&state, "after tier 2 was made again", &mut classifier);
    classifier.stop();
    like_a_clean_run(&config, &state, work.path(), stored, "a removed tier 2");
}

/// `retention.raw_max_bytes` on a daemon started over a tier 1 twice that
/// size: once it has counted everything (and the host detail of its
/// hours) it removes the segments with the oldest records until tier 1 is
/// below the limit; tier 2 still holds every record.
#[test]
fn the_daemon_keeps_tier1_below_raw_max_bytes() {
    let work = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(&classifier_config(work.path()));
    let config = collector.config.clone();
    let state = collector.state_dir().to_path_buf();
    let flows = FLOWS / 4;
    let out = stream(collector.port, flows, RATE / 4, 13)
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "kopek gen failed");
    let stored = settled_flows(&collector, flows);
    collector.stop();
    let t1 = tier1_holds(&config, stored);
    let raw = kopek_collector::segment::RawStore::new(state.join("raw"));
    let size = || -> u64 { raw.list().unwrap().iter().map(|s| s.size_bytes).sum() };
    // Each segment's newest record, before any goes.
    let newest: std::collections::BTreeMap<u64, i64> = raw
        .list()
        .unwrap()
        .iter()
        .map(|s| (s.id, s.read_footer().unwrap().unwrap().max_last_ms))
        .collect();
    let (before, segments) = (size(), newest.len());
    assert!(segments >= 4, "{segments} segments");
    let max = before / 2;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "raw_days = 0",
            &format!("raw_days = 0\nraw_max_bytes = {max}"),
        ),
    )
    .unwrap();

    let mut classifier = Classifier::start(&config, &state);
    let deadline = Instant::now() + Duration::from_secs(60);
    while size() > max {
        classifier.assert_running();
        assert!(
            Instant::now() < deadline,
            "tier 1 still {} > {max} after 60 s",
            size()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: Vec<u64> = raw.list().unwrap().iter().map(|s| s.id).collect();
    assert!(
        !left.is_empty() && left.len() < segments,
        "{left:?} of {segments} left"
    );
    // The segments with the oldest records went.
    let oldest_left = left.iter().map(|id| newest[id]).min().unwrap();
    for (id, t) in &newest {
        if !left.contains(id) {
            assert!(
                *t <= oldest_left,
                "segment {id} (newest record {t}) went before a newer-ended one stayed"
            );
        }
    }
    wait_caught_up(&state, "after trimming", &mut classifier);
    classifier.stop();
    adds_up_to_tier1(&state, t1);
}

/// A tier 2 damaged on disk (a table's pages overwritten: a bad sector, a
/// copy taken while it was written): a plain rebuild refuses it and names
/// `--discard-damaged`; that builds a new tier 2 from tier 1 alone, sound
/// and with the same rows as a classifier that counted the same tier 1
/// from the start. On a sound tier 2 the flag is refused.
#[test]
fn a_damaged_tier2_is_rebuilt_from_tier1_alone_on_the_operators_word() {
    let work = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(&classifier_config(work.path()));
    let config = collector.config.clone();
    let state = collector.state_dir().to_path_buf();
    let mut classifier = Classifier::start(&config, &state);
    let flows = 60_000;
    let out = stream(collector.port, flows, 20_000, 13)
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "kopek gen failed");
    let stored = settled_flows(&collector, flows);
    collector.stop();
    classifier.wait_caught_up(stored, Duration::from_secs(60));
    classifier.stop();
    let (clean, _) = same_as_a_clean_run(&config, &state, work.path(), "the first run");

    let rebuild = |args: &[&str]| {
        Command::new(common::kopek_bin())
            .arg("--config")
            .arg(&config)
            .args(["classifier", "rebuild"])
            .args(args)
            .env("KOPEK_LOG", "warn")
            .output()
            .unwrap()
    };
    let o = rebuild(&["--discard-damaged"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("tier 2 is not damaged"),
        "{err}"
    );

    // The traffic table's root page and the pages after it overwritten.
    let t2 = state.join("tier2.sqlite");
    let (root, page): (i64, i64) = {
        let c = rusqlite::Connection::open(&t2).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        (
            c.query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'traffic'",
                [],
                |r| r.get(0),
            )
            .unwrap(),
            c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap(),
        )
    };
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&t2).unwrap();
        f.seek(SeekFrom::Start(((root - 1) * page) as u64)).unwrap();
        f.write_all(&vec![0xa5; 4 * page as usize]).unwrap();
    }
    let o = rebuild(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1)
            && err.contains(
                "malformed: tier 2 is damaged; `kopek classifier rebuild --discard-damaged`"
            ),
        "{err}"
    );
    let o = rebuild(&["--discard-damaged", "--with-hosts"]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && said.contains("replaced without being read"),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let check: String = tier2(&state)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    for table in CONTENT_TABLES {
        assert_eq!(
            table_rows(&state, table),
            table_rows(clean.path(), table),
            "{table} after the rebuild of a damaged tier 2"
        );
    }
}

/// The tier-2 tables of counted traffic: what kills must not change and
/// what a rebuild replaces.
const CONTENT_TABLES: [&str; 6] = [
    "traffic",
    "traffic_hourly",
    "traffic_daily",
    "unattributed",
    "top_hosts",
    "losses",
];

/// What a rebuild replaces, without commit numbers.
fn tier2_content(state: &Path) -> Vec<Vec<Vec<String>>> {
    CONTENT_TABLES
        .iter()
        .map(|t| table_rows(state, t))
        .collect()
}

/// `kopek classifier rebuild` (the daemon stopped), killed with SIGKILL
/// at seeded random moments after a session was recorded late: the live
/// tier 2 is after every kill either the old one or the finished rebuild,
/// never a mix, and passes SQLite's integrity check; the last, uninterrupted
/// rebuild clears what the killed ones left and moves the session's
/// traffic. Returns the number of rebuilds killed while running.
fn rebuild_killed_at_random_moments(config: &Path, state: &Path, rng: &mut Rng) -> u64 {
    let before = tier2_content(state);
    kopek(
        config,
        &[
            "binding",
            "add",
            "late",
            "10.0.2.0/24",
            "--from",
            "2024-01-01T00:00:00Z",
        ],
    );
    // How long a rebuild takes here (a dry run: all but the install), so
    // that the kills spread over all of it, the install included.
    let t = Instant::now();
    kopek(
        config,
        &[
            "classifier",
            "rebuild",
            "--with-hosts",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    let span = t.elapsed().as_millis() as u64 + 200;
    let mut seen = Vec::new();
    let mut killed = 0;
    for _ in 0..8 {
        let mut child = Command::new(common::kopek_bin())
            .arg("--config")
            .arg(config)
            .args(["classifier", "rebuild", "--with-hosts", "--format", "json"])
            .env("KOPEK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kopek classifier rebuild");
        std::thread::sleep(Duration::from_millis(rng.between(30, span)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        let ok: String = tier2(state)
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        seen.push(tier2_content(state));
    }
    assert!(
        killed >= 3,
        "only {killed} of 8 rebuilds killed while running"
    );
    let finished = seen.iter().filter(|s| **s != before).count();
    eprintln!(
        "crash: rebuild {span} ms; {killed} of 8 killed while running, {finished} had installed"
    );
    let out = kopek(
        config,
        &["classifier", "rebuild", "--with-hosts", "--format", "json"],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!state.join("rebuild.tmp").exists());
    let late: i64 = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["account"] == "late")
        .map(|c| c["after"].as_i64().unwrap() - c["before"].as_i64().unwrap())
        .sum();
    let after = tier2_content(state);
    // Every kill left the old tier 2 or the finished rebuild (which the
    // last run reproduces: it changes nothing more than the first one).
    for (i, s) in seen.iter().enumerate() {
        assert!(
            *s == before || *s == after,
            "kill {i}: a tier 2 that is neither"
        );
    }
    if seen.iter().all(|s| *s == before) {
        assert!(late > 0, "the late session moved nothing: {report}");
    }
    assert_ne!(before, after);
    assert!(
        sum(
            state,
            "SELECT SUM(bytes) FROM traffic WHERE account = 'late'"
        ) > 0
    );
    killed
}

/// Runs a second classifier once, uninterrupted, over a copy of the sealed
/// tier 1 in `state` with the same config (only the state dir differs) and
/// the same binding registry, and asserts that both tier-2 databases hold
/// the very same rows (`what` happened to the first). Returns the clean
/// state dir and the number of segments.
fn same_as_a_clean_run(
    config: &Path,
    state: &Path,
    work: &Path,
    what: &str,
) -> (tempfile::TempDir, usize) {
    let state2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(state2.path().join("raw")).unwrap();
    let mut segments = 0;
    for e in std::fs::read_dir(state.join("raw")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(!name.ends_with(".open"), "{name} still open");
        if name.ends_with(".kseg") {
            std::fs::copy(&p, state2.path().join("raw").join(&name)).unwrap();
            segments += 1;
        }
    }
    for e in std::fs::read_dir(state).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("bindings.sqlite") {
            std::fs::copy(&p, state2.path().join(&name)).unwrap();
        }
    }
    let text = std::fs::read_to_string(config).unwrap();
    let line = format!("state_dir = \"{}\"", state.display());
    assert!(text.contains(&line));
    let config2 = work.join("kopek2.toml");
    std::fs::write(
        &config2,
        text.replace(
            &line,
            &format!("state_dir = \"{}\"", state2.path().display()),
        ),
    )
    .unwrap();
    let mut clean = Classifier::start(&config2, state2.path());
    wait_caught_up(state2.path(), "the clean classifier", &mut clean);
    clean.stop();

    for table in CONTENT_TABLES {
        let a = table_rows(state, table);
        let b = table_rows(state2.path(), table);
        if a != b {
            let only_a: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
            let only_b: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
            panic!(
                "{table}: {} rows after {what}, {} in the clean run; only after {what}: {only_a:?}; only clean: {only_b:?}",
                a.len(),
                b.len()
            );
        }
        if table != "losses" {
            assert!(!a.is_empty(), "{table} is empty");
        }
    }
    (state2, segments)
}

/// The classifier's part of the config (and its list and bindings files,
/// written into `work`): classes, a bindings file, 60 s buckets, quick
/// polls and commits, nothing removed by retention.
fn classifier_config(work: &Path) -> String {
    let peering = work.join("peering.txt");
    std::fs::write(
        &peering,
        "# peering\n198.51.100.0/24\n192.0.2.0/24 # IX\n2001:db8:ca1::/48\n",
    )
    .unwrap();
    let bindings_file = work.join("bindings.csv");
    std::fs::write(
        &bindings_file,
        "big,10.0.0.0/26\nhost,10.0.1.7\nv6,2001:db8:100::/56\n",
    )
    .unwrap();
    format!(
        r#"
[collector.segment]
rotate_interval_s = 2
block_flush_ms = 50

[classifier]
bucket_s = 60
subscriber_networks = ["10.0.0.0/16", "2001:db8:100::/48"]
bindings_file = "{bindings}"
top_hosts_per_hour = 10
poll_interval_ms = 50
commit_interval_ms = 300

[[classifier.class]]
name = "local"
networks = ["198.18.0.0/16", "2001:db8:f000::/40"]

[[classifier.class]]
name = "peering"
files = ["{peering}"]
count = "inbound"

[retention]
raw_days = 0
traffic_days = 0
top_hosts_days = 0
"#,
        bindings = bindings_file.display(),
        peering = peering.display(),
    )
}

/// Flows and bytes in tier 1 (`kopek raw stats`).
/// A collector and a classifier on one state dir, `kopek gen` streaming a
/// quarter of [`FLOWS`] at a quarter of [`RATE`] into them, the classifier
/// past its first commit.
struct LiveRun {
    work: tempfile::TempDir,
    collector: Collector,
    config: std::path::PathBuf,
    state: std::path::PathBuf,
    classifier: Classifier,
    flows: u64,
    gen_child: std::process::Child,
}

impl LiveRun {
    fn start(seed: u64) -> LiveRun {
        let work = tempfile::tempdir().unwrap();
        let collector = Collector::start(&classifier_config(work.path()));
        let config = collector.config.clone();
        let state = collector.state_dir().to_path_buf();
        let mut classifier = Classifier::start(&config, &state);
        let flows = FLOWS / 4;
        let gen_child = stream(collector.port, flows, RATE / 4, seed);
        wait_for_a_commit(&mut classifier);
        LiveRun {
            work,
            collector,
            config,
            state,
            classifier,
            flows,
            gen_child,
        }
    }
}

/// Tier 1 holds the `stored` flows, tier 2 in `state` adds up to it and
/// has the rows of a classifier that counted it without trouble.
fn like_a_clean_run(config: &Path, state: &Path, work: &Path, stored: u64, what: &str) {
    let t1 = tier1_holds(config, stored);
    adds_up_to_tier1(state, t1);
    same_as_a_clean_run(config, state, work, what);
}

/// Waits for `kopek gen` to end and for the collector to have written what
/// it will of the `flows` sent, then stops (seals) it; returns the flows
/// in tier 1.
fn stream_done(gen_child: std::process::Child, collector: &mut Collector, flows: u64) -> u64 {
    let out = gen_child.wait_with_output().unwrap();
    assert!(out.status.success(), "kopek gen failed");
    let stored = settled_flows(collector, flows);
    collector.stop();
    stored
}

/// [`tier1_totals`], which must hold the `stored` flows.
fn tier1_holds(config: &Path, stored: u64) -> (i64, i64) {
    let t1 = tier1_totals(config);
    assert_eq!(t1.0 as u64, stored);
    t1
}

fn tier1_totals(config: &Path) -> (i64, i64) {
    let raw_stats: serde_json::Value =
        serde_json::from_str(&kopek(config, &["raw", "stats", "--format", "json"])).unwrap();
    (
        raw_stats["total"]["flows"].as_i64().unwrap(),
        raw_stats["total"]["bytes"].as_i64().unwrap(),
    )
}

/// Every generated flow has exactly one subscriber side: tier 2's bytes
/// and flows are tier 1's (`t1`), and the host detail sums the traffic.
fn adds_up_to_tier1(s: &Path, t1: (i64, i64)) {
    let bytes = sum(s, "SELECT SUM(bytes) FROM traffic")
        + sum(s, "SELECT COALESCE(SUM(bytes), 0) FROM unattributed");
    let flows = sum(s, "SELECT SUM(flows) FROM traffic")
        + sum(s, "SELECT COALESCE(SUM(flows), 0) FROM unattributed");
    assert_eq!((flows, bytes), t1, "{}", s.display());
    let hosts = sum(s, "SELECT SUM(bytes_in + bytes_out) FROM top_hosts");
    assert_eq!(
        hosts,
        sum(s, "SELECT SUM(bytes) FROM traffic"),
        "{}",
        s.display()
    );
}
