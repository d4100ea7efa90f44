//! Class lists change while the classifier runs; each record keeps the
//! class of the list version valid at its first packet.
//!
//! Stream 1 (wall-clock times, `kopek gen --start now`) is classified
//! under version 1. Then a peering prefix the generator uses moves from
//! the `peering` list file to the `paid` one, and the classifier's file
//! watch alone (no signal) records version 2. Then the config file gets an
//! inline network for `peering` (the file watch does not cover the config)
//! and SIGHUP records version 3. Stream 2, from a second exporter (its own
//! billing point) and timed after version 3's start, must be classified by
//! version 3 while stream 1's records keep version 1's classes: exact
//! bytes per point and class from the tier-1 records, and every total
//! equal to the oracle's with the version chosen per record.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::Collector;
use common::classify::{
    Bind, ClassSpec, Classifier, Count, Oracle, RawRec, Sums, assert_same, gen_stream, kopek,
    kopek_json, net_of, raw_dump, read_list, tier2, tier2_totals,
};

const FLOWS: u64 = 5_000;
const MOVED: &str = "198.51.100.0/24";
const ADDED: &str = "203.0.113.0/24";
const PEERING_V1: &str =
    "# peering\n198.51.100.0/24  # CDN: moves to paid\n192.0.2.0/24\n2001:db8:ca1::/48\n";
const PEERING_V2: &str = "# peering\n192.0.2.0/24\n2001:db8:ca1::/48\n";
const PAID_V1: &str = "# paid: upstream transit\n";
const PAID_V2: &str = "# paid: upstream transit\n198.51.100.0/24  # CDN, no longer peered\n";

/// `(id, valid_from_ms, prefixes)` of every class-list version.
fn versions(config: &std::path::Path) -> Vec<(i64, i64, i64)> {
    kopek_json(config, &["traffic", "--versions", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_i64().unwrap(),
                v["valid_from_ms"].as_i64().unwrap(),
                v["prefixes"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn wait_versions(config: &std::path::Path, n: usize, why: &str) -> Vec<(i64, i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = versions(config);
        assert!(v.len() <= n, "{why}: {v:?}");
        if v.len() == n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: no version {n} in 10 s: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon's last reload as `kopek classifier stats` reports it, once
/// it is newer than `after_ms` (the stats file is rewritten every second).
fn wait_reload(config: &std::path::Path, after_ms: i64, why: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r =
            kopek_json(config, &["classifier", "stats", "--format", "json"])["last_reload"].clone();
        if r["at_ms"].as_i64().is_some_and(|t| t > after_ms) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: no reload after {after_ms} in 10 s: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes per (point, class) in tier 2, traffic and unattributed.
fn by_point_class(state: &std::path::Path) -> BTreeMap<(String, String), u64> {
    let c = tier2(state);
    let mut st = c
        .prepare(
            "SELECT point, class, SUM(bytes) FROM
               (SELECT point, class, bytes FROM traffic
                UNION ALL SELECT point, class, bytes FROM unattributed)
             GROUP BY point, class",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn records_keep_the_class_version_of_their_time_across_watch_and_sighup_reloads() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let peering = work.path().join("peering.txt");
    let paid = work.path().join("paid.txt");
    std::fs::write(&peering, PEERING_V1).unwrap();
    std::fs::write(&paid, PAID_V1).unwrap();
    let bindings = work.path().join("bindings.csv");
    std::fs::write(&bindings, "big,10.0.0.0/24\nv6,2001:db8:100::/56\n").unwrap();
    let extra = format!(
        r#"
[[collector.exporter]]
name = "second"
address = "127.0.0.2"

[classifier]
bucket_s = 60
subscriber_networks = ["10.0.0.0/16", "2001:db8:100::/48"]
default_class = "paid"
bindings_file = "{bindings}"
poll_interval_ms = 50
commit_interval_ms = 200

[[classifier.class]]
name = "peering"
files = ["{peering}"]

[[classifier.class]]
name = "paid"
files = ["{paid}"]

[[classifier.observation_point]]
name = "p1"
exporter = "local"

[[classifier.observation_point]]
name = "p2"
exporter = "second"

[retention]
raw_days = 0
traffic_days = 0
top_hosts_days = 0
"#,
        bindings = bindings.display(),
        peering = peering.display(),
        paid = paid.display(),
    );
    let mut collector = Collector::start(&extra);
    let config = collector.config.clone();
    let state = collector.state_dir().to_path_buf();
    let mut classifier = Classifier::start(&config, &state);
    let v1 = wait_versions(&config, 1, "at start");

    // Stream 1, now, from 127.0.0.1 (point p1).
    let gen_args = |seed: &str, start: &str| -> Vec<String> {
        [
            "--version",
            "ipfix",
            "--flows",
            "5000",
            "--rate",
            "10000",
            "--seed",
            seed,
            "--ipv6-percent",
            "20",
            "--start",
            start,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = gen_args("1", "now");
    let r1 = gen_stream(
        collector.port,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(r1["expected_flows"].as_u64(), Some(FLOWS), "{r1}");
    assert_eq!(collector.wait_flows(FLOWS, Duration::from_secs(20)), FLOWS);
    classifier.wait_committed(FLOWS, Duration::from_secs(30));

    // Version 2 by the file watch alone. The prefix is added to paid
    // first: listed in peering (first) too, it changes nothing, so no
    // version can come from the half-done move.
    std::fs::write(&paid, PAID_V2).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(versions(&config), v1, "a shadowed prefix is no new content");
    std::fs::write(&peering, PEERING_V2).unwrap();
    let v2 = wait_versions(&config, 2, "after the list files changed");

    // Whether a reload took is in `kopek classifier stats` (a file edit
    // and `systemctl reload` report nothing back): a list that does not
    // parse leaves the old lists in force and says where it failed; put
    // right, it reloads (the same content: no new version).
    // (The reload that recorded version 2, at its start: the stats file,
    // rewritten every second, may still show the one before.)
    let ok = wait_reload(&config, v2[1].1 - 1, "the list files changed");
    assert!(ok["error"].is_null(), "{ok}");
    std::fs::write(&peering, format!("{PEERING_V2}300.1.2.3/24\n")).unwrap();
    let bad = wait_reload(&config, ok["at_ms"].as_i64().unwrap(), "a broken list");
    let err = bad["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!("{}:4:", peering.display())) && err.contains("300.1.2.3/24"),
        "{bad}"
    );
    let stats = kopek(&config, &["classifier", "stats"]);
    assert!(
        stats.contains("last reload")
            && stats.contains("FAILED at")
            && stats.contains("300.1.2.3/24"),
        "{stats}"
    );
    std::fs::write(&peering, PEERING_V2).unwrap();
    let fixed = wait_reload(
        &config,
        bad["at_ms"].as_i64().unwrap(),
        "the list put right",
    );
    assert!(fixed["error"].is_null(), "{fixed}");
    assert_eq!(
        versions(&config),
        v2,
        "the same lists again: no new version"
    );

    // Version 3 by SIGHUP: the config file itself is not watched.
    let text = std::fs::read_to_string(&config).unwrap();
    let with_inline = text.replacen(
        "name = \"peering\"\n",
        &format!("name = \"peering\"\nnetworks = [\"{ADDED}\"]\n"),
        1,
    );
    assert_ne!(text, with_inline);
    // SIGHUP with a config that does not load: noted, nothing changes
    // (read through a copy of the good one: the CLI refuses a broken one).
    let good = config.with_extension("good.toml");
    std::fs::write(&good, &text).unwrap();
    std::fs::write(&config, format!("{text}\n[bogus]\nx = 1\n")).unwrap();
    classifier.hup();
    let bad = wait_reload(
        &good,
        fixed["at_ms"].as_i64().unwrap(),
        "SIGHUP, a broken config",
    );
    assert!(
        bad["error"].as_str().is_some_and(|e| e.contains("bogus")),
        "{bad}"
    );
    assert_eq!(versions(&good), v2);
    std::fs::write(&config, with_inline).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(versions(&config).len(), 2, "the config file is not watched");
    classifier.hup();
    let v3 = wait_versions(&config, 3, "after SIGHUP");
    assert_eq!(
        v3.iter().map(|v| (v.0, v.2)).collect::<Vec<_>>(),
        vec![(1, 3), (2, 3), (3, 4)],
        "ids and prefix counts: {v3:?}"
    );
    assert_eq!(&v3[..2], &v2[..]);
    assert!(v3[0].1 < v3[1].1 && v3[1].1 < v3[2].1, "{v3:?}");
    let table = kopek(&config, &["traffic", "--versions"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    // With an interval: the versions in force in it (the first one also
    // before its start: it judges older records).
    let in_force = |from: i64, to: i64| -> Vec<i64> {
        kopek_json(
            &config,
            &[
                "traffic",
                "--versions",
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
                "--format",
                "json",
            ],
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect()
    };
    let (t1, t2, t3) = (v3[0].1, v3[1].1, v3[2].1);
    assert_eq!(in_force(t1 - 7_200_000, t1 - 3_600_000), [1]);
    assert_eq!(in_force(t1, t2), [1]);
    assert_eq!(in_force(t2, t2 + 1), [2]);
    assert_eq!(in_force(t2 - 1, t3 + 1), [1, 2, 3]);
    assert_eq!(in_force(t3, t3 + 86_400_000), [3]);

    // `kopek classifier explain`: the class an address had at a time, the
    // list entry and the version that decided it, and its account then.
    let explain = |addr: &str, at: i64| {
        kopek(
            &config,
            &["classifier", "explain", addr, "--at", &at.to_string()],
        )
    };
    for (addr, at, class, version) in [
        (
            "198.51.100.7",
            v3[0].1,
            "peering (listed as 198.51.100.0/24)",
            1,
        ),
        (
            "198.51.100.7",
            v3[1].1,
            "paid (listed as 198.51.100.0/24)",
            2,
        ),
        (
            "203.0.113.9",
            v3[1].1,
            "paid (no list covers it: the default class)",
            2,
        ),
        (
            "203.0.113.9",
            v3[2].1,
            "peering (listed as 203.0.113.0/24)",
            3,
        ),
        (
            "198.51.100.7",
            v3[0].1 - 3_600_000,
            "peering (listed as 198.51.100.0/24)",
            1,
        ),
    ] {
        let x = explain(addr, at);
        assert!(
            x.contains(&format!(
                "  class: {class}, by list version {version} valid from "
            )),
            "{x}"
        );
        assert_eq!(
            x.contains("(the oldest version: records before it are judged by it too)"),
            at < v3[0].1,
            "{x}"
        );
        assert!(
            x.contains("  account: none (not a subscriber address)"),
            "{x}"
        );
    }
    assert!(explain("10.0.0.5", v3[2].1).contains("  account: big\n"));
    assert!(
        explain("10.0.1.5", v3[2].1).contains(
            "  account: none (inside the subscriber networks: its traffic is unattributed)"
        )
    );

    // Stream 2 from 127.0.0.2 (point p2), timed so that even its longest
    // flows (2 minutes) start after version 3 began.
    let start2 = (v3[2].1 + 121_000).to_string();
    let args = gen_args("2", &start2);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--source", "127.0.0.2"]);
    let r2 = gen_stream(collector.port, &args);
    assert_eq!(r2["expected_flows"].as_u64(), Some(FLOWS), "{r2}");
    assert_eq!(
        collector.wait_flows(2 * FLOWS, Duration::from_secs(20)),
        2 * FLOWS
    );
    classifier.wait_committed(2 * FLOWS, Duration::from_secs(30));
    // `kopek classifier stats` tells a running daemon from a killed and a
    // stopped one (the counters are of one run: a restart zeroes them).
    let head = || -> String {
        let stats = kopek(&config, &["classifier", "stats"]);
        stats.lines().next().unwrap_or_default().to_string()
    };
    let pid = classifier.pid();
    assert!(
        head().starts_with(&format!("classifier running (pid {pid}, since ")),
        "{}",
        head()
    );
    classifier.kill9();
    assert!(
        head().starts_with(&format!("classifier NOT RUNNING: pid {pid} (started ")),
        "{}",
        head()
    );
    let json = kopek_json(&config, &["classifier", "stats", "--format", "json"]);
    assert_eq!(
        (&json["running"], &json["stopped"]),
        (&false.into(), &false.into()),
        "{json}"
    );
    classifier.spawn();
    let pid = classifier.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !head().starts_with(&format!("classifier running (pid {pid},")) {
        assert!(Instant::now() < deadline, "{}", head());
        std::thread::sleep(Duration::from_millis(100));
    }
    classifier.stop();
    assert!(
        head().starts_with("classifier STOPPED at ")
            && head().contains(&format!("(pid {pid}, started ")),
        "{}",
        head()
    );
    collector.stop();

    let records = raw_dump(&state);
    assert_eq!(records.len() as u64, 2 * FLOWS);
    let (s1, s2): (Vec<&RawRec>, Vec<&RawRec>) = records
        .iter()
        .partition(|r| r.exporter == "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!((s1.len() as u64, s2.len() as u64), (FLOWS, FLOWS));
    assert!(
        s1.iter().all(|r| r.first_ms < v2[1].1),
        "stream 1 predates version 2"
    );
    assert!(
        s2.iter().all(|r| r.first_ms >= v3[2].1),
        "stream 2 is in version 3"
    );

    // Exact bytes per point and class, straight from the records: stream 1
    // under version 1's peering list, stream 2 under version 3's.
    let remote = |r: &RawRec| {
        let sub = |a: &IpAddr| {
            net_of("10.0.0.0/16").contains(a) || net_of("2001:db8:100::/48").contains(a)
        };
        if sub(&r.src) { r.dst } else { r.src }
    };
    let in_any = |nets: &[&str], a: IpAddr| nets.iter().any(|n| net_of(n).contains(&a));
    let peering_v1 = [MOVED, "192.0.2.0/24", "2001:db8:ca1::/48"];
    let peering_v3 = [ADDED, "192.0.2.0/24", "2001:db8:ca1::/48"];
    let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut moved = [0u64; 2];
    let mut added = [0u64; 2];
    for (point, stream, nets) in [("p1", &s1, &peering_v1), ("p2", &s2, &peering_v3)] {
        for r in stream.iter() {
            let class = if in_any(nets, remote(r)) {
                "peering"
            } else {
                "paid"
            };
            *want.entry((point.into(), class.into())).or_default() += r.bytes;
            let i = usize::from(point == "p2");
            if in_any(&[MOVED], remote(r)) {
                moved[i] += r.bytes;
            }
            if in_any(&[ADDED], remote(r)) {
                added[i] += r.bytes;
            }
        }
    }
    assert!(
        moved.iter().chain(&added).all(|&b| b > 0),
        "the streams must use both changed prefixes: moved {moved:?}, added {added:?}"
    );
    assert_same("bytes per point and class", &by_point_class(&state), &want);

    // Every total, with each record's version chosen by its first packet.
    let oracle_of = |peering_nets: Vec<ipnet::IpNet>, paid_nets: Vec<ipnet::IpNet>| Oracle {
        classes: vec![
            ClassSpec {
                name: "peering".into(),
                nets: peering_nets,
                count: Count::Both,
            },
            ClassSpec {
                name: "paid".into(),
                nets: paid_nets,
                count: Count::Both,
            },
        ],
        default_class: "paid".into(),
        subscribers: vec![net_of("10.0.0.0/16"), net_of("2001:db8:100::/48")],
        bindings: vec![
            Bind::always("big", "10.0.0.0/24"),
            Bind::always("v6", "2001:db8:100::/56"),
        ],
        points: vec![
            ("127.0.0.1".parse().unwrap(), "p1".into()),
            ("127.0.0.2".parse().unwrap(), "p2".into()),
        ],
    };
    let mut peering_v3_nets = vec![net_of(ADDED)];
    peering_v3_nets.extend(read_list(PEERING_V2));
    let oracles = [
        (
            v3[0].1,
            oracle_of(read_list(PEERING_V1), read_list(PAID_V1)),
        ),
        (
            v3[1].1,
            oracle_of(read_list(PEERING_V2), read_list(PAID_V2)),
        ),
        (v3[2].1, oracle_of(peering_v3_nets, read_list(PAID_V2))),
    ];
    let mut want_all: BTreeMap<_, Sums> = BTreeMap::new();
    for r in &records {
        let o = oracles
            .iter()
            .rev()
            .find(|(from, _)| *from <= r.first_ms)
            .unwrap_or(&oracles[0]);
        for (k, s) in o.1.entries(r) {
            want_all.entry(k).or_default().add(s);
        }
    }
    assert_same(
        "tier 2 vs the versioned oracle",
        &tier2_totals(&state),
        &want_all,
    );

    eprintln!(
        "reload: versions {v3:?}; moved prefix {moved:?} bytes, added prefix {added:?} bytes (stream 1, stream 2); {:?}",
        started.elapsed()
    );
}
