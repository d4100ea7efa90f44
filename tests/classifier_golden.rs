//! The classifier's golden test: real exporters feed a real collector,
//! the real classifier turns tier 1 into tier 2, and every tier-2 total
//! must equal, byte for byte, what this file computes on its own from the
//! tier-1 records (`kopek raw dump`) with the config's rules restated as
//! plain loops (tests/common/classify.rs), and what nfdump reports for the
//! same export.
//!
//! Feeds: softflowd replaying a pcap built here (IPFIX, IPv4 and IPv6: a
//! 61-second flow over three one-minute buckets, subscriber-to-subscriber,
//! unattributed and transit flows, one account with a handful of remote
//! hosts), sent to nfcapd too; and `kopek gen` (NetFlow v9, 30 % IPv6,
//! thousands of flows, many crossing bucket boundaries) from a second
//! exporter address. Classes: an inline `local` class, a `peering` list
//! file (IPv4 and IPv6, comments, a prefix also listed inline), default
//! `paid`. Bindings: a static file (IPv4 hosts and nested prefixes, IPv6
//! /56s) and one generated address handed from account `dyn_a` to
//! `dyn_b` with `kopek binding add/end`, unbound before `dyn_a`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use common::classify::{
    Bind, ClassSpec, Classifier, Count, Key, Oracle, RawRec, Subject, Sums, assert_same, kopek,
    kopek_json, net_of, raw_dump, read_list, split_parts, tier2, tier2_totals,
};
use common::{Collector, Nfcapd, nfdump_totals_by_address, pcap, totals_of};

/// 2024-01-01T00:00:00Z.
const T0_S: u32 = 1_704_067_200;
const BUCKET_MS: i64 = 60_000;
const FROM: &str = "2023-12-31T00:00:00Z";
const TO: &str = "2024-01-02T00:00:00Z";
/// The generated stream's flows end from here on (its flows start up to
/// two minutes earlier): the same hour as the softflowd part.
const GEN_START: &str = "2024-01-01T00:30:00Z";
const GEN_FLOWS: u64 = 6_000;

const PEERING_LIST: &str = "\
# Peering partners: IX route-server members and CDN caches.
198.51.100.0/24      # CDN cache
192.0.2.0/24         # IX members (192.0.2.0/26 is inline in class local: longer wins)
203.0.113.128/25     # a regional ISP

198.18.0.0/24        # also inline in class local, which is listed first and wins
# IPv6
2001:db8:ca1::/48    # IX v6
";
const LOCAL_NETS: [&str; 3] = ["192.0.2.0/26", "198.18.0.0/24", "2001:db8:ca1:1::/64"];

const BINDINGS: &str = "\
# account,prefix
big,10.0.0.0/27
hostacct,10.0.1.7
outer,10.0.2.0/24
inner,10.0.2.128/25   # more specific than outer's
v6big,2001:db8:100::/56
solo4,10.0.100.10
multi,10.0.100.20
solo6,2001:db8:100:ab00::/56
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn flow(
    src: &str,
    dst: &str,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    packets: u32,
    payload: u16,
    start_off_s: u32,
) -> pcap::Flow {
    pcap::Flow {
        src: ip(src),
        dst: ip(dst),
        protocol,
        src_port,
        dst_port,
        packets,
        payload,
        start_s: T0_S + start_off_s,
    }
}

/// The softflowd part: every flow by hand.
#[rustfmt::skip]
fn pcap_flows() -> Vec<pcap::Flow> {
    vec![
        // solo4: 6200 packets 10 ms apart from 00:09:59 to 00:11:00.99:
        // three buckets.
        flow("10.0.100.10", "198.51.100.77", 17, 40001, 443, 6200, 100, 599),
        // solo6 (a /56): a download over the 00:11 boundary, and local.
        flow("2001:db8:ca1::5", "2001:db8:100:ab12::1", 6, 443, 50002, 300, 1200, 659),
        flow("2001:db8:100:abff::9", "2001:db8:ca1:1::7", 17, 50003, 53, 5, 80, 700),
        // multi: a handful of remote hosts of every class.
        flow("10.0.100.20", "203.0.113.201", 17, 40010, 443, 50, 1000, 620),
        flow("203.0.113.202", "10.0.100.20", 6, 443, 40011, 80, 1400, 621),
        flow("10.0.100.20", "203.0.113.202", 6, 40012, 443, 10, 100, 622),
        flow("10.0.100.20", "198.18.0.9", 17, 40013, 123, 30, 500, 623),
        flow("192.0.2.10", "10.0.100.20", 17, 53, 40014, 20, 300, 624),
        flow("192.0.2.200", "10.0.100.20", 17, 53, 40015, 10, 700, 625),
        flow("203.0.113.5", "10.0.100.20", 6, 80, 40016, 15, 900, 626),
        // Unattributed subscriber addresses; one talks to solo4.
        flow("10.0.100.30", "198.51.100.78", 17, 40020, 443, 40, 600, 630),
        flow("10.0.100.30", "10.0.100.10", 17, 40021, 9000, 25, 200, 631),
        flow("2001:db8:f000::abcd", "2001:db8:100:cc00::1", 6, 443, 40022, 60, 1300, 632),
        // Transit: no subscriber side.
        flow("203.0.113.250", "198.51.100.250", 17, 5000, 5001, 12, 400, 633),
        flow("2001:db8:f000::1:2", "2001:db8:ca1::99", 17, 5002, 5003, 8, 300, 634),
    ]
}

/// What `kopek traffic` says on standard error (it must succeed).
fn traffic_stderr(config: &Path) -> String {
    let out = common::run(
        std::process::Command::new(common::kopek_bin())
            .arg("--config")
            .arg(config)
            .args(["traffic", "--from", FROM, "--to", TO])
            .env("KOPEK_LOG", "warn"),
    );
    String::from_utf8(out.stderr).unwrap()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// Per account: (remote, class) -> (bytes in, bytes out, flows).
type Hosts = BTreeMap<(IpAddr, String), (u64, u64, u64)>;

/// What the checks share: the config, tier 1 as dumped, and the rules.
struct Golden {
    config: PathBuf,
    state: PathBuf,
    records: Vec<RawRec>,
    oracle: Oracle,
}

impl Golden {
    /// `kopek traffic --from FROM --to TO --format json <extra>`.
    fn traffic(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["traffic", "--from", FROM, "--to", TO, "--format", "json"];
        args.extend_from_slice(extra);
        kopek_json(&self.config, &args)
    }

    fn rows(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        self.traffic(extra)["rows"].as_array().unwrap().clone()
    }

    fn record(&self, src: &str, src_port: u16) -> &RawRec {
        self.records
            .iter()
            .find(|r| r.src == ip(src) && r.src_port == src_port)
            .unwrap_or_else(|| panic!("no record from {src}:{src_port}"))
    }
}

#[test]
fn tier2_equals_an_independent_classification_of_tier1_byte_for_byte() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(&config_toml(work.path()));
    let config = collector.config.clone();
    let state = collector.state_dir().to_path_buf();
    kopek(&config, &["config", "check"]);

    // Feed (a): softflowd, IPFIX, to kopek and to nfcapd.
    let flows = pcap_flows();
    let pcap_path = work.path().join("traffic.pcap");
    pcap::write_pcap(&pcap_path, &flows);
    let mut nfcapd = Nfcapd::start();
    common::softflowd(&pcap_path, collector.port, "10", work.path());
    common::softflowd(&pcap_path, nfcapd.port, "10", work.path());
    // Feed (b): kopek gen, NetFlow v9 from 127.0.0.2.
    let gen_flows = GEN_FLOWS.to_string();
    #[rustfmt::skip]
    let report = common::classify::gen_stream(collector.port, &[
        "--version", "9", "--flows", &gen_flows, "--rate", "3000", "--ipv6-percent", "30",
        "--seed", "7", "--source", "127.0.0.2", "--start", GEN_START,
    ]);
    assert_eq!(u(&report["expected_flows"]), GEN_FLOWS, "{report}");
    let total = flows.len() as u64 + GEN_FLOWS;
    assert_eq!(
        collector.wait_flows(total, Duration::from_secs(20)),
        total,
        "flows in tier 1"
    );
    collector.stop();
    nfcapd.stop();

    let records = raw_dump(&state);
    assert_eq!(records.len() as u64, total);
    let generated: Vec<&RawRec> = records
        .iter()
        .filter(|r| r.exporter == ip("127.0.0.2"))
        .collect();
    assert_eq!(generated.len() as u64, GEN_FLOWS);
    assert_eq!(
        u(&report["expected_bytes"]),
        generated.iter().map(|r| r.bytes).sum::<u64>()
    );
    let crossing = generated
        .iter()
        .filter(|r| r.first_ms.div_euclid(BUCKET_MS) != (r.last_ms - 1).div_euclid(BUCKET_MS))
        .count();
    assert!(
        crossing * 4 > generated.len(),
        "only {crossing} generated flows cross a bucket boundary"
    );

    // The dynamic address, bound with `kopek binding` before the
    // classifier runs.
    let statics = static_bindings();
    let handover = bind_dynamic(&config, &generated, &statics);

    // Classify.
    let mut classifier = Classifier::start(&config, &state);
    let stats = classifier.wait_caught_up(total, Duration::from_secs(60));
    assert_eq!(stats["damaged_segments"], serde_json::json!([]), "{stats}");
    assert_eq!(
        u(&stats["committed"]["bytes"]),
        records.iter().map(|r| r.bytes).sum::<u64>()
    );
    assert_eq!(u(&stats["committed"]["transit_records"]), 2, "{stats}");

    let mut bindings = statics;
    bindings.extend(handover.bindings());
    let mut g = Golden {
        config,
        state,
        records,
        oracle: Oracle {
            classes: vec![
                ClassSpec {
                    name: "local".into(),
                    nets: LOCAL_NETS.iter().map(|n| net_of(n)).collect(),
                    count: Count::Both,
                },
                ClassSpec {
                    name: "peering".into(),
                    nets: read_list(PEERING_LIST),
                    count: Count::Inbound,
                },
            ],
            default_class: "paid".into(),
            subscribers: vec![net_of("10.0.0.0/16"), net_of("2001:db8:100::/48")],
            bindings,
            points: Vec::new(),
        },
    };

    let want = check_totals(&g, handover.addr);
    check_reports(&g, &want);
    let nf = nfdump_totals_by_address(nfcapd.dir.path());
    assert_eq!(nf, totals_of(&flows), "nfdump vs the pcap");
    check_nfdump(&g, &nf);
    check_buckets(&g);
    check_handover(&g, &handover);
    check_top_hosts(&g, &nf);
    // A report says when the classifier is not running (tier 1 may then
    // hold records tier 2 does not have yet), and only then.
    let note = "kopek: note: the classifier is not running (stopped at ";
    assert!(!traffic_stderr(&g.config).contains(note));
    classifier.stop();
    let said = traffic_stderr(&g.config);
    assert!(
        said.contains(note) && said.contains("are not in these figures yet"),
        "{said}"
    );

    // Tier 2 computed again from tier 1 (`kopek classifier rebuild`), the
    // daemon stopped: the same answers, checked against the same oracle.
    let dry = kopek_json(
        &g.config,
        &["classifier", "rebuild", "--dry-run", "--format", "json"],
    );
    assert_eq!(
        (u(&dry["records"]), &dry["installed"], &dry["changes"]),
        (total, &serde_json::json!(false), &serde_json::json!([])),
        "{dry}"
    );
    let rebuilt = kopek_json(
        &g.config,
        &["classifier", "rebuild", "--with-hosts", "--format", "json"],
    );
    assert_eq!(
        (
            u(&rebuilt["records"]),
            &rebuilt["installed"],
            &rebuilt["changes"]
        ),
        (total, &serde_json::json!(true), &serde_json::json!([])),
        "{rebuilt}"
    );
    assert_eq!(check_totals(&g, handover.addr), want);
    check_reports(&g, &want);
    check_buckets(&g);
    check_handover(&g, &handover);
    check_top_hosts(&g, &nf);

    let want = check_late_session(&mut g, want);

    let bytes: u64 = want.values().map(|s| s.bytes).sum();
    eprintln!(
        "golden: {} records ({crossing} generated ones over a bucket boundary), {} tier-2 keys, {bytes} bytes, {:?}",
        g.records.len(),
        want.len(),
        started.elapsed()
    );
}

/// The config: the fixture's collector section, a second exporter for
/// `kopek gen`, and the classifier with its list and bindings files
/// (written into `work`).
fn config_toml(work: &Path) -> String {
    let peering = work.join("peering.txt");
    std::fs::write(&peering, PEERING_LIST).unwrap();
    let bindings = work.join("bindings.csv");
    std::fs::write(&bindings, BINDINGS).unwrap();
    let local_nets = LOCAL_NETS
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[collector.exporter]]
name = "gen"
address = "127.0.0.2"

[classifier]
bucket_s = 60
subscriber_networks = ["10.0.0.0/16", "2001:db8:100::/48"]
default_class = "paid"
bindings_file = "{bindings}"
poll_interval_ms = 50
commit_interval_ms = 200

[[classifier.class]]
name = "local"
networks = [{local_nets}]

[[classifier.class]]
name = "peering"
files = ["{peering}"]
count = "inbound"

[retention]
raw_days = 0
traffic_days = 0
top_hosts_days = 0
"#,
        bindings = bindings.display(),
        peering = peering.display(),
    )
}

fn static_bindings() -> Vec<Bind> {
    BINDINGS
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, n) = l.split_once(',').unwrap();
            Bind::always(a, n)
        })
        .collect()
}

/// The address handed from `dyn_a` to `dyn_b`.
struct Handover {
    addr: IpAddr,
    /// `dyn_a` holds it from here (unbound before).
    t_a: i64,
    /// `dyn_b` holds it from here on.
    t_h: i64,
}

impl Handover {
    fn bindings(&self) -> [Bind; 2] {
        let net = net_of(&self.addr.to_string());
        [
            Bind {
                account: "dyn_a".into(),
                net,
                from_ms: self.t_a,
                to_ms: self.t_h,
            },
            Bind {
                account: "dyn_b".into(),
                net,
                from_ms: self.t_h,
                to_ms: i64::MAX,
            },
        ]
    }
}

/// The IPv4 subscriber address (10.0.0.0/16) with the most records that no
/// binding of `bound` holds, and its records' first packets, in order.
fn busiest_unbound<'a>(
    records: impl Iterator<Item = &'a RawRec>,
    bound: &[Bind],
) -> (IpAddr, Vec<i64>) {
    let subscribers = net_of("10.0.0.0/16");
    let mut per_addr: BTreeMap<IpAddr, Vec<i64>> = BTreeMap::new();
    for r in records {
        for a in [r.src, r.dst] {
            if subscribers.contains(&a) && !bound.iter().any(|b| b.net.contains(&a)) {
                per_addr.entry(a).or_default().push(r.first_ms);
            }
        }
    }
    let (addr, mut times) = per_addr
        .into_iter()
        .max_by_key(|(a, t)| (t.len(), std::cmp::Reverse(*a)))
        .unwrap();
    times.sort();
    (addr, times)
}

/// Picks the busiest generated IPv4 subscriber address no static binding
/// holds; leaves it unbound for its first quarter of records, then binds
/// it to dyn_a and hands it to dyn_b at one record's first packet.
fn bind_dynamic(config: &Path, generated: &[&RawRec], statics: &[Bind]) -> Handover {
    let (addr, times) = busiest_unbound(generated.iter().copied(), statics);
    assert!(times.len() >= 8, "{addr}: {} records", times.len());
    let t_a = times[times.len() / 4];
    let t_h = times[times.len() * 3 / 5];
    assert!(times[0] < t_a && t_a < t_h, "{times:?}");
    let a = addr.to_string();
    kopek(
        config,
        &["binding", "add", "dyn_a", &a, "--from", &t_a.to_string()],
    );
    kopek(config, &["binding", "end", &a, "--at", &rfc3339(t_h)]);
    kopek(
        config,
        &["binding", "add", "dyn_b", &a, "--from", &rfc3339(t_h)],
    );
    let listed: Vec<(String, i64, Option<i64>)> =
        kopek_json(config, &["binding", "ls", "--addr", &a, "--format", "json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    text(&b["account"]),
                    b["from_ms"].as_i64().unwrap(),
                    b["to_ms"].as_i64(),
                )
            })
            .collect();
    assert_eq!(
        listed,
        vec![
            ("dyn_b".into(), t_h, None),
            ("dyn_a".into(), t_a, Some(t_h))
        ]
    );
    Handover { addr, t_a, t_h }
}

/// 1. Every total per account or address, class, direction and billed
///    flag, buckets summed: tier 2 equals the oracle. Returns the oracle's.
fn check_totals(g: &Golden, dyn_addr: IpAddr) -> BTreeMap<Key, Sums> {
    let want = g.oracle.totals(g.records.iter());
    assert_same("tier 2 vs the oracle", &tier2_totals(&g.state), &want);
    // The data exercises every path (else the equality proves less).
    let has = |f: &dyn Fn(&Key) -> bool| want.keys().any(f);
    for acc in [
        "big", "hostacct", "outer", "inner", "v6big", "solo4", "multi", "solo6", "dyn_a", "dyn_b",
    ] {
        assert!(
            has(&|k| k.subject == Subject::Account(acc.into())),
            "account {acc} has no traffic"
        );
    }
    for class in ["local", "peering", "paid"] {
        for dir in ["in", "out"] {
            assert!(
                has(&|k| k.class == class
                    && k.dir == dir
                    && matches!(k.subject, Subject::Account(_))),
                "{class} {dir}"
            );
        }
    }
    assert!(has(&|k| k.billed == Some(false)) && has(&|k| k.billed == Some(true)));
    assert!(has(&|k| k.dir == "transit"));
    assert!(has(&|k| matches!(
        k.subject,
        Subject::Address(IpAddr::V6(_))
    ) && k.dir == "in"));
    assert!(has(&|k| k.subject == Subject::Address(dyn_addr)));
    want
}

/// The same totals through `kopek traffic`: per account and class, the
/// billed-only view, and unattributed/transit traffic per address.
fn check_reports(g: &Golden, want: &BTreeMap<Key, Sums>) {
    let mut want_acc: BTreeMap<(String, String), (u64, u64, u64, u64)> = BTreeMap::new();
    let mut want_billed: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut want_un: BTreeMap<(String, String, String), (u64, u64, u64)> = BTreeMap::new();
    for (k, s) in want {
        match &k.subject {
            Subject::Account(a) => {
                let e = want_acc.entry((a.clone(), k.class.clone())).or_default();
                let b = want_billed.entry((a.clone(), k.class.clone())).or_default();
                let billed = if k.billed == Some(true) { s.bytes } else { 0 };
                if k.dir == "in" {
                    (e.0, e.2, b.0) = (e.0 + s.bytes, e.2 + s.packets, b.0 + billed);
                } else {
                    (e.1, e.3, b.1) = (e.1 + s.bytes, e.3 + s.packets, b.1 + billed);
                }
            }
            Subject::Address(a) => {
                let e = want_un
                    .entry((a.to_string(), k.dir.to_string(), k.class.clone()))
                    .or_default();
                (e.0, e.1, e.2) = (e.0 + s.bytes, e.1 + s.packets, e.2 + s.flows);
            }
        }
    }
    want_billed.retain(|_, v| *v != (0, 0));
    let key = |r: &serde_json::Value| (text(&r["account"]), text(&r["class"]));
    let got: BTreeMap<_, _> = g
        .rows(&["--by", "total"])
        .iter()
        .map(|r| {
            let n = |f: &str| u(&r[f]);
            let v = (
                n("bytes_in"),
                n("bytes_out"),
                n("packets_in"),
                n("packets_out"),
            );
            (key(r), v)
        })
        .collect();
    assert_same("kopek traffic --by total", &got, &want_acc);
    let got: BTreeMap<_, _> = g
        .rows(&["--by", "total", "--billed"])
        .iter()
        .map(|r| (key(r), (u(&r["bytes_in"]), u(&r["bytes_out"]))))
        .collect();
    assert_same("kopek traffic --billed", &got, &want_billed);
    // `kopek traffic --unattributed <extra>` as (address, direction,
    // class) -> (bytes, packets, flows).
    let unattributed = |extra: &[&str]| -> BTreeMap<_, _> {
        let mut args = vec!["--unattributed"];
        args.extend_from_slice(extra);
        g.traffic(&args)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    (
                        text(&r["address"]),
                        text(&r["direction"]),
                        text(&r["class"]),
                    ),
                    (u(&r["bytes"]), u(&r["packets"]), u(&r["flows"])),
                )
            })
            .collect()
    };
    assert_same("kopek traffic --unattributed", &unattributed(&[]), &want_un);
    // One class of it.
    let peering: BTreeMap<_, _> = want_un
        .iter()
        .filter(|(k, _)| k.2 == "peering")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(!peering.is_empty() && peering.len() < want_un.len());
    assert_same(
        "kopek traffic --unattributed --class peering",
        &unattributed(&["--class", "peering"]),
        &peering,
    );

    // The same rows as CSV (the report streams them, one period at a time).
    let csv = std::process::Command::new(common::kopek_bin())
        .arg("--config")
        .arg(&g.config)
        .args([
            "traffic", "--from", FROM, "--to", TO, "--by", "total", "--format", "csv",
        ])
        .output()
        .unwrap();
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let got: BTreeMap<_, _> = String::from_utf8(csv.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            (
                (f[1].to_string(), f[2].to_string()),
                (n(3), n(4), n(5), n(6)),
            )
        })
        .collect();
    assert_same("kopek traffic --format csv", &got, &want_acc);
    // The daily rollup of a tier 2 the daemon made is complete.
    let stats = kopek(&g.config, &["classifier", "stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.trim() == format!("{:<28} complete", "daily rollup")),
        "{stats}"
    );
    // By month of the ISP's zone: the same bytes as in total.
    let bytes = |rows: Vec<serde_json::Value>| -> u64 {
        rows.iter()
            .map(|r| r["bytes_in"].as_u64().unwrap() + r["bytes_out"].as_u64().unwrap())
            .sum()
    };
    let months = g.rows(&["--by", "month"]);
    assert!(!months.is_empty());
    assert_eq!(bytes(months), bytes(g.rows(&["--by", "total"])));
    // A mistyped filter is named, not answered with an empty table alone.
    let typo = kopek(
        &g.config,
        &[
            "traffic", "--from", FROM, "--to", TO, "--class", "peerng", "--format", "table",
        ],
    );
    assert!(
        typo.contains("(no traffic of class \"peerng\" in this interval)")
            && typo.contains("no class \"peerng\" is configured; the classes are: "),
        "{typo}"
    );
    // A reader that has gone (| head -1 that is done): a quiet, successful
    // end, not a panic or an error message. The pipe is closed before the
    // report writes, so its first write fails.
    let traffic = ["traffic", "--from", FROM, "--to", TO];
    for extra in [
        &["--by", "bucket", "--format", "csv"][..],
        &["--by", "hour", "--format", "table", "--top", "3"],
        &["--unattributed"],
        &["--points"],
        &["--versions", "--format", "json"],
        &["binding", "ls"],
        &["binding", "ls", "--format", "csv"],
        &["classifier", "stats"],
        &["classifier", "explain", "10.0.100.10"],
        &["raw", "ls"],
        &["raw", "dump"],
        &["raw", "dump", "--format", "json"],
        &["raw", "stats", "--by-address"],
        &["config", "check", "--print-effective"],
    ] {
        let mut args = if !extra[0].starts_with("--") {
            vec![]
        } else {
            traffic.to_vec()
        };
        args.extend(extra);
        common::classify::kopek_into_closed_pipe(&g.config, &args);
    }
}

/// 2. nfdump's per-address totals of the softflowd export equal tier 2's
///    for the same subscriber addresses (accounts holding just these
///    addresses, unattributed addresses, transit sources).
fn check_nfdump(g: &Golden, nf: &HashMap<IpAddr, (u64, u64)>) {
    let acct = |a: &str| Subject::Account(a.into());
    let addr = |a: &str| Subject::Address(ip(a));
    let subjects = [
        ("10.0.100.10", acct("solo4")),
        ("10.0.100.20", acct("multi")),
        ("2001:db8:100:ab12::1", acct("solo6")),
        ("2001:db8:100:abff::9", acct("solo6")),
        ("10.0.100.30", addr("10.0.100.30")),
        ("2001:db8:100:cc00::1", addr("2001:db8:100:cc00::1")),
        ("203.0.113.250", addr("203.0.113.250")),
        ("2001:db8:f000::1:2", addr("2001:db8:f000::1:2")),
    ];
    let mut from_nfdump: BTreeMap<Subject, (u64, u64)> = BTreeMap::new();
    for (a, s) in &subjects {
        let (bytes, packets) = nf[&ip(a)];
        let e = from_nfdump.entry(s.clone()).or_default();
        (e.0, e.1) = (e.0 + bytes, e.1 + packets);
    }
    let mut from_tier2: BTreeMap<Subject, (u64, u64)> = BTreeMap::new();
    for (k, s) in &tier2_totals(&g.state) {
        if from_nfdump.contains_key(&k.subject) {
            let e = from_tier2.entry(k.subject.clone()).or_default();
            (e.0, e.1) = (e.0 + s.bytes, e.1 + s.packets);
        }
    }
    assert_same(
        "tier 2 vs nfdump, per subscriber address",
        &from_tier2,
        &from_nfdump,
    );
}

/// 3. Per bucket. Hand-picked flows first (solo4's 62-second upload over
///    three buckets, solo6's download over two), then every account's
///    every bucket from the oracle and the split.
fn check_buckets(g: &Golden) {
    for (account, src, port, dir, buckets) in [
        ("solo4", "10.0.100.10", 40001, "out", 3),
        ("solo6", "2001:db8:ca1::5", 443, "in", 2),
    ] {
        let r = g.record(src, port);
        let bytes = split_parts(r.bytes, r.first_ms, r.last_ms, BUCKET_MS);
        let packets = split_parts(r.packets, r.first_ms, r.last_ms, BUCKET_MS);
        assert_eq!(bytes.len(), buckets, "{r:?}");
        assert_eq!(bytes.iter().map(|p| p.1).sum::<u64>(), r.bytes);
        let got: Vec<(i64, u64, u64, u64)> = g
            .rows(&["--account", account, "--class", "peering", "--by", "bucket"])
            .iter()
            .map(|row| {
                (
                    row["period_ms"].as_i64().unwrap(),
                    u(&row[format!("bytes_{dir}").as_str()]),
                    u(&row[format!("packets_{dir}").as_str()]),
                    u(&row["flows"]),
                )
            })
            .collect();
        let want: Vec<(i64, u64, u64, u64)> = bytes
            .iter()
            .zip(&packets)
            .enumerate()
            .map(|(i, (b, p))| (b.0, b.1, p.1, u64::from(i == 0)))
            .collect();
        assert_eq!(got, want, "{account}: {r:?}");
        assert_eq!(got.iter().map(|g| g.1).sum::<u64>(), r.bytes);
    }

    type Row = (u64, u64, u64, u64, u64);
    let mut want: BTreeMap<(i64, String, String), Row> = BTreeMap::new();
    for r in &g.records {
        for (k, _) in g.oracle.entries(r) {
            let Subject::Account(a) = &k.subject else {
                continue;
            };
            let bytes = split_parts(r.bytes, r.first_ms, r.last_ms, BUCKET_MS);
            let packets = split_parts(r.packets, r.first_ms, r.last_ms, BUCKET_MS);
            for (i, (b, p)) in bytes.iter().zip(&packets).enumerate() {
                let e = want.entry((b.0, a.clone(), k.class.clone())).or_default();
                if k.dir == "in" {
                    (e.0, e.2) = (e.0 + b.1, e.2 + p.1);
                } else {
                    (e.1, e.3) = (e.1 + b.1, e.3 + p.1);
                }
                e.4 += u64::from(i == 0);
            }
        }
    }
    let got: BTreeMap<(i64, String, String), Row> = g
        .rows(&["--by", "bucket"])
        .iter()
        .map(|r| {
            (
                (
                    r["period_ms"].as_i64().unwrap(),
                    text(&r["account"]),
                    text(&r["class"]),
                ),
                (
                    u(&r["bytes_in"]),
                    u(&r["bytes_out"]),
                    u(&r["packets_in"]),
                    u(&r["packets_out"]),
                    u(&r["flows"]),
                ),
            )
        })
        .collect();
    assert_same("kopek traffic --by bucket", &got, &want);
}

/// 4. The handed-over address: its bytes before dyn_a's binding are
///    unattributed, then dyn_a's, and from the hand-over on dyn_b's.
fn check_handover(g: &Golden, h: &Handover) {
    let mut parts = [0u64; 3];
    for r in g
        .records
        .iter()
        .filter(|r| r.src == h.addr || r.dst == h.addr)
    {
        parts[usize::from(r.first_ms >= h.t_a) + usize::from(r.first_ms >= h.t_h)] += r.bytes;
    }
    assert!(parts.iter().all(|&p| p > 0), "{parts:?}");
    let account_bytes = |a: &str| -> u64 {
        g.rows(&["--by", "total", "--account", a])
            .iter()
            .map(|r| u(&r["bytes_in"]) + u(&r["bytes_out"]))
            .sum()
    };
    assert_eq!(account_bytes("dyn_a"), parts[1], "dyn_a from {}", h.t_a);
    assert_eq!(account_bytes("dyn_b"), parts[2], "dyn_b from {}", h.t_h);
    let unbound: u64 = g
        .traffic(&["--unattributed"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["address"] == h.addr.to_string().as_str())
        .map(|r| u(&r["bytes"]))
        .sum();
    assert_eq!(
        unbound, parts[0],
        "{} before {}: unattributed",
        h.addr, h.t_a
    );
}

/// A session recorded late (the usual dispute): an address tier 2 counted
/// as nobody's is bound from a past time after it was counted. The command
/// says that the counted traffic keeps its attribution and names the
/// rebuild that counts it again; that rebuild (the daemon stopped) gives
/// the oracle's answer with the binding, moving only the address's records
/// from the binding's start on.
fn check_late_session(g: &mut Golden, before: BTreeMap<Key, Sums>) -> BTreeMap<Key, Sums> {
    let (addr, times) = busiest_unbound(g.records.iter(), &g.oracle.bindings);
    assert!(times.len() >= 4, "{addr}: {} records", times.len());
    // A whole minute between two of its records, so that the minute the
    // note names is the binding's start.
    let t = times[times.len() / 2] / 60_000 * 60_000 + 60_000;
    assert!(times[0] < t && t <= times[times.len() - 1], "{times:?}");
    let a = addr.to_string();
    let out = common::run(
        std::process::Command::new(common::kopek_bin())
            .arg("--config")
            .arg(&g.config)
            .args(["binding", "add", "late", &a, "--from", &rfc3339(t)])
            .env("KOPEK_LOG", "warn"),
    );
    let note = String::from_utf8(out.stderr).unwrap();
    let minute = chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let rebuild = format!("kopek classifier rebuild --from \"{minute}\"");
    assert!(
        note.contains("tier 2 has already counted traffic since ")
            && note.contains(&format!("records of {a}/32 among it keep that attribution"))
            && note.contains(&rebuild),
        "{note}"
    );
    // Until the rebuild, tier 2 is as it was counted.
    assert_same(
        "tier 2 before the rebuild",
        &tier2_totals(&g.state),
        &before,
    );
    let rebuilt = kopek_json(
        &g.config,
        &[
            "classifier",
            "rebuild",
            "--from",
            &minute,
            "--format",
            "json",
        ],
    );
    assert_eq!(rebuilt["installed"], serde_json::json!(true), "{rebuilt}");
    g.oracle.bindings.push(Bind {
        account: "late".into(),
        net: net_of(&a),
        from_ms: t,
        to_ms: i64::MAX,
    });
    let want = g.oracle.totals(g.records.iter());
    assert_same("tier 2 after the rebuild", &tier2_totals(&g.state), &want);
    assert!(
        want.keys()
            .any(|k| k.subject == Subject::Account("late".into())),
        "the late session has traffic"
    );
    assert!(
        want.keys().any(|k| k.subject == Subject::Address(addr)),
        "the address's records before the session stay unattributed"
    );
    assert_ne!(want, before);
    check_reports(g, &want);
    want
}

/// 5. Top hosts: per account the largest remote hosts with their bytes
///    (everything lies in one hour here, so the hour's top N is the
///    interval's); multi's against nfdump too. And each account's host
///    detail (kept hosts plus the "other hosts" row) adds up to its
///    traffic exactly.
fn check_top_hosts(g: &Golden, nf: &HashMap<IpAddr, (u64, u64)>) {
    let mut hosts: HashMap<String, Hosts> = HashMap::new();
    for r in &g.records {
        for (k, _) in g.oracle.entries(r) {
            let Subject::Account(a) = &k.subject else {
                continue;
            };
            let remote = if k.dir == "in" { r.src } else { r.dst };
            let e = hosts
                .entry(a.clone())
                .or_default()
                .entry((remote, k.class.clone()))
                .or_default();
            if k.dir == "in" {
                e.0 += r.bytes;
            } else {
                e.1 += r.bytes;
            }
            e.2 += 1;
        }
    }
    for account in ["multi", "big", "v6big", "dyn_b"] {
        let mut all: Vec<_> = hosts[account].iter().collect();
        all.sort_by_key(|((remote, class), c)| {
            (std::cmp::Reverse(c.0 + c.1), *remote, class.clone())
        });
        assert!(
            all.len() < 4 || (all[2].1.0 + all[2].1.1) > (all[3].1.0 + all[3].1.1),
            "{account}: a tie at rank 3 makes the top 3 ambiguous"
        );
        let want: Vec<(IpAddr, String, u64, u64, u64)> = all
            .iter()
            .take(3)
            .map(|((remote, class), c)| (*remote, class.clone(), c.0, c.1, c.2))
            .collect();
        let got: Vec<(IpAddr, String, u64, u64, u64)> =
            g.traffic(&["--account", account, "--top", "3"])["top_hosts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["remote"] != "")
                .map(|h| {
                    assert_eq!(h["account"], account);
                    (
                        ip(h["remote"].as_str().unwrap()),
                        text(&h["class"]),
                        u(&h["bytes_in"]),
                        u(&h["bytes_out"]),
                        u(&h["flows"]),
                    )
                })
                .collect();
        assert_eq!(got, want, "top hosts of {account}");
        // Every hour of the interval has its hosts summed: the report says
        // nothing is lacking.
        let coverage = &g.traffic(&["--account", account, "--top", "3"])["top_hosts_coverage"];
        assert_eq!(
            coverage["pending_hours_ms"],
            serde_json::json!([]),
            "{coverage}"
        );
        assert!(coverage["removed_before_ms"].is_null(), "{coverage}");
        // The same as CSV (the hosts alone).
        let csv = kopek(
            &g.config,
            &[
                "traffic",
                "--from",
                FROM,
                "--to",
                TO,
                "--account",
                account,
                "--top",
                "3",
                "--format",
                "csv",
            ],
        );
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("account,remote,class,bytes_in,bytes_out,flows")
        );
        let rows: Vec<(String, String, u64, u64, u64)> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 6, "{l}");
                assert_eq!(f[0], account, "{l}");
                let n = |i: usize| f[i].parse::<u64>().unwrap();
                (f[1].to_string(), f[2].to_string(), n(3), n(4), n(5))
            })
            .collect();
        let from_csv: Vec<_> = rows
            .iter()
            .filter(|r| !r.0.is_empty())
            .map(|(remote, class, bi, bo, fl)| (ip(remote), class.clone(), *bi, *bo, *fl))
            .collect();
        assert_eq!(from_csv, want, "top hosts of {account} as CSV");
        assert!(
            rows.len() <= 4,
            "{account}: three hosts and the other hosts' sum"
        );
        if account == "multi" {
            for (remote, _, bi, bo, _) in &want {
                assert_eq!(nf[remote].0, bi + bo, "multi's host {remote} vs nfdump");
            }
        }
    }

    let conn = tier2(&g.state);
    let mut st = conn
        .prepare(
            "SELECT h.account, h.i, h.o, t.i, t.o FROM
               (SELECT account, SUM(bytes_in) AS i, SUM(bytes_out) AS o FROM top_hosts GROUP BY account) h
             JOIN (SELECT account, SUM(CASE WHEN direction = 'in' THEN bytes ELSE 0 END) AS i,
                          SUM(CASE WHEN direction = 'out' THEN bytes ELSE 0 END) AS o
                   FROM traffic GROUP BY account) t ON t.account = h.account",
        )
        .unwrap();
    let sums: Vec<(String, i64, i64, i64, i64)> = st
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sums.len(), hosts.len(), "accounts with host detail");
    for (account, hi, ho, ti, to) in sums {
        assert_eq!((hi, ho), (ti, to), "{account}: host detail vs traffic");
    }
}
