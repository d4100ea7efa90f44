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

fn sum(state: &Path, sql: &str) -> i64 {
    tier2(state).query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn kill_9_at_random_moments_counts_every_record_exactly_once() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let peering = work.path().join("peering.txt");
    std::fs::write(
        &peering,
        "# peering\n198.51.100.0/24\n192.0.2.0/24 # IX\n2001:db8:ca1::/48\n",
    )
    .unwrap();
    let bindings_file = work.path().join("bindings.csv");
    std::fs::write(
        &bindings_file,
        "big,10.0.0.0/26\nhost,10.0.1.7\nv6,2001:db8:100::/56\n",
    )
    .unwrap();
    let extra = format!(
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
    );
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
    let gen_cmd = Command::new(common::kopek_bin())
        .args(["gen", "--target"])
        .arg(format!("127.0.0.1:{}", collector.port))
        .args(["--version", "ipfix", "--ipv6-percent", "20", "--seed", "5"])
        .args(["--flows", &FLOWS.to_string(), "--rate", &RATE.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kopek gen");

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
    let raw = state.join("raw");
    let raw_stats: serde_json::Value =
        serde_json::from_str(&kopek(&config, &["raw", "stats", "--format", "json"])).unwrap();
    let (t1_flows, t1_bytes) = (
        raw_stats["total"]["flows"].as_i64().unwrap(),
        raw_stats["total"]["bytes"].as_i64().unwrap(),
    );
    assert_eq!(t1_flows as u64, stored, "{raw_stats}");

    // The same config and registry over a copy of tier 1, uninterrupted.
    let state2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(state2.path().join("raw")).unwrap();
    let mut segments = 0;
    for e in std::fs::read_dir(&raw).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(!name.ends_with(".open"), "{name} still open");
        if name.ends_with(".kseg") {
            std::fs::copy(&p, state2.path().join("raw").join(&name)).unwrap();
            segments += 1;
        }
    }
    assert!(segments >= 4, "only {segments} segments");
    for e in std::fs::read_dir(&state).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("bindings.sqlite") {
            std::fs::copy(&p, state2.path().join(&name)).unwrap();
        }
    }
    let text = std::fs::read_to_string(&config).unwrap();
    let line = format!("state_dir = \"{}\"", state.display());
    assert!(text.contains(&line));
    let config2 = work.path().join("kopek2.toml");
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
        let a = table_rows(&state, table);
        let b = table_rows(state2.path(), table);
        if a != b {
            let only_a: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
            let only_b: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
            panic!(
                "{table}: {} rows after {kills} kills, {} in the clean run; only after kills: {only_a:?}; only clean: {only_b:?}",
                a.len(),
                b.len()
            );
        }
        if table != "losses" {
            assert!(!a.is_empty(), "{table} is empty");
        }
    }
    // Every generated flow has exactly one subscriber side: tier 2's
    // bytes and flows are tier 1's.
    for s in [state.as_path(), state2.path()] {
        let bytes = sum(s, "SELECT SUM(bytes) FROM traffic")
            + sum(s, "SELECT COALESCE(SUM(bytes), 0) FROM unattributed");
        let flows = sum(s, "SELECT SUM(flows) FROM traffic")
            + sum(s, "SELECT COALESCE(SUM(flows), 0) FROM unattributed");
        assert_eq!((bytes, flows), (t1_bytes, t1_flows), "{}", s.display());
        let hosts = sum(s, "SELECT SUM(bytes_in + bytes_out) FROM top_hosts");
        assert_eq!(
            hosts,
            sum(s, "SELECT SUM(bytes) FROM traffic"),
            "{}",
            s.display()
        );
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
