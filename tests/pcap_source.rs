//! pcap as a tier-1 source (issue 5): flows built from packets must give
//! the same per-address totals as softflowd (a real exporter, reading the
//! same capture) and as the capture's own truth; a live capture on an
//! interface in a network namespace counts known traffic exactly, long
//! flows cut by the active timeout and all.
//!
//! Needs softflowd (.ci/run installs it), and for the live test root,
//! `ip` and `ping`; fails loudly without them.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::netns::{euid, sh, spawn_in_ns};
use common::{
    Collector, kopek_bin, pcap, raw, raw_totals_by_address, require_tool, softflowd, totals_of,
};

/// The records of a state dir as CSV rows (header skipped).
fn dump(state: &Path) -> Vec<Vec<String>> {
    let out = raw(state, &["dump", "--format", "csv"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn pcap_read_equals_softflowd_and_the_capture() {
    let work = tempfile::tempdir().unwrap();
    let mut flows = pcap::sample_flows(600, 200, 0x9cab);
    // One long UDP flow: 9,000 packets 10 ms apart (90 s), cut by the
    // 60 s active timeout into two records.
    flows.push(pcap::Flow {
        src: "10.0.3.7".parse().unwrap(),
        dst: "198.51.100.99".parse().unwrap(),
        protocol: 17,
        src_port: 40000,
        dst_port: 4500,
        packets: 9_000,
        payload: 100,
        start_s: 1_763_789_990,
    });
    let file = work.path().join("traffic.pcap");
    pcap::write_pcap(&file, &flows);
    let truth = totals_of(&flows);

    // softflowd -> NetFlow v9 -> the kopek collector.
    let mut exported = Collector::start("");
    softflowd(&file, exported.port, "9", work.path());
    let got = exported.wait_flows(flows.len() as u64, Duration::from_secs(20));
    assert_eq!(got, flows.len() as u64, "flows from softflowd");
    exported.stop();
    let via_softflowd = exported.totals_by_address();

    // The same file through kopek's own flow builder.
    let state = work.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let config = work.path().join("kopek.toml");
    std::fs::write(
        &config,
        format!("[general]\nstate_dir = \"{}\"\n", state.display()),
    )
    .unwrap();
    let out = Command::new(kopek_bin())
        .arg("--config")
        .arg(&config)
        .args(["collector", "pcap-read"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("-> {} flows", flows.len() + 1)),
        "{summary}"
    );
    let via_pcap = raw_totals_by_address(&state);

    assert_eq!(via_pcap.len(), truth.len(), "addresses");
    for (a, t) in &truth {
        assert_eq!(via_pcap.get(a), Some(t), "{a}: kopek pcap vs the capture");
        assert_eq!(
            via_softflowd.get(a),
            Some(t),
            "{a}: softflowd vs the capture"
        );
    }
    // The long flow: two records, 60 s and 30 s of it.
    let long: Vec<Vec<String>> = dump(&state)
        .into_iter()
        .filter(|r| r[5] == "10.0.3.7" && r[7] == "40000")
        .collect();
    assert_eq!(long.len(), 2, "{long:?}");
    let packets: u64 = long.iter().map(|r| r[14].parse::<u64>().unwrap()).sum();
    assert_eq!(packets, 9_000);

    // A BPF filter applies to files too.
    let state2 = work.path().join("state2");
    std::fs::create_dir(&state2).unwrap();
    let config2 = work.path().join("kopek2.toml");
    std::fs::write(
        &config2,
        format!("[general]\nstate_dir = \"{}\"\n", state2.display()),
    )
    .unwrap();
    let out = Command::new(kopek_bin())
        .arg("--config")
        .arg(&config2)
        .args(["collector", "pcap-read", "--filter", "ip6"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v6 = raw_totals_by_address(&state2);
    assert!(!v6.is_empty() && v6.keys().all(IpAddr::is_ipv6));
    for (a, t) in &v6 {
        assert_eq!(truth.get(a), Some(t), "{a}");
    }
}

/// A collector run inside a network namespace.
struct NsCollector {
    child: Option<Child>,
    stats: std::path::PathBuf,
}

impl NsCollector {
    fn start(ns: &str, config: &Path, stats: std::path::PathBuf) -> NsCollector {
        let child = spawn_in_ns(ns, config, &["collector", "run"]);
        let mut c = NsCollector {
            child: Some(child),
            stats,
        };
        let t0 = Instant::now();
        // Ready when the capture thread has published its counters.
        while !std::fs::read_to_string(&c.stats).is_ok_and(|s| s.contains("\"pcap\": {")) {
            if let Some(st) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("collector exited at start: {st}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "collector not capturing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&self.stats).unwrap()).unwrap()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sh(&["kill", "-TERM", &c.id().to_string()]);
            let status = c.wait().unwrap();
            assert!(status.success(), "collector exited with {status}");
        }
    }
}

impl Drop for NsCollector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Two namespaces `<tag><pid>a` and `…b` (removed on drop) joined by a
/// veth pair, each end with its address and up.
fn veth_pair(tag: &str, a_end: (&str, &str), b_end: (&str, &str)) -> (Namespaces, String, String) {
    let id = std::process::id() % 100_000;
    let (a, b) = (format!("{tag}{id}a"), format!("{tag}{id}b"));
    let nss = Namespaces(vec![a.clone(), b.clone()]);
    for ns in &nss.0 {
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    sh(&[
        "ip", "link", "add", a_end.0, "netns", &a, "type", "veth", "peer", "name", b_end.0,
        "netns", &b,
    ]);
    for (ns, (dev, addr)) in [(&a, a_end), (&b, b_end)] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    (nss, a, b)
}

#[test]
fn live_capture_counts_pings_exactly() {
    assert_eq!(
        euid(),
        0,
        "this test needs root (network namespaces, packet capture); CI runs as root"
    );
    for tool in ["ip", "ping"] {
        require_tool(tool);
    }
    let (_nss, a, _b) = veth_pair("kpc", ("cap0", "10.9.0.1/24"), ("cap1", "10.9.0.2/24"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kopek.toml");
    std::fs::write(
        &config,
        format!(
            r#"[general]
state_dir = "{s}"
[collector]
name = "cap"
listen = []
stats_interval_ms = 100
[collector.segment]
block_flush_ms = 50
[collector.pcap]
interface = "cap0"
filter = "ip"
active_timeout_s = 2
idle_timeout_s = 1
"#,
            s = dir.path().display()
        ),
    )
    .unwrap();
    let mut c = NsCollector::start(&a, &config, dir.path().join("collector-cap.stats.json"));
    // 30 pings of 1,000 payload bytes, 0.2 s apart: 6 s, so the 2 s
    // active timeout cuts each direction's flow into several records.
    let out = Command::new("ip")
        .args([
            "netns", "exec", &a, "ping", "-c", "30", "-i", "0.2", "-s", "1000", "-q",
        ])
        .arg("10.9.0.2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Idle flows are written within the idle timeout, before any stop.
    let t0 = Instant::now();
    let want = 30 * 1028 * 2;
    loop {
        let t = raw_totals_by_address(dir.path());
        if t.get(&"10.9.0.1".parse().unwrap()).map(|x| x.0) == Some(want) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "idle flows not written: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The stats file is rewritten every 100 ms from counters the capture
    // publishes once a second, so it may trail the records a little.
    let t0 = Instant::now();
    let s = loop {
        let s = c.stats();
        if s["pcap"]["packets"].as_u64().unwrap() >= 60 || t0.elapsed() > Duration::from_secs(5) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    c.stop();
    let t = raw_totals_by_address(dir.path());
    assert_eq!(t.len(), 2, "only the two hosts (filter \"ip\"): {t:?}");
    for host in ["10.9.0.1", "10.9.0.2"] {
        assert_eq!(
            t[&host.parse::<IpAddr>().unwrap()],
            (30 * 1028 * 2, 60),
            "{host}: 30 echo requests and 30 replies of 1,028 bytes"
        );
    }
    let records = dump(dir.path());
    let requests: Vec<&Vec<String>> = records
        .iter()
        .filter(|r| r[5] == "10.9.0.1" && r[6] == "10.9.0.2")
        .collect();
    assert!(
        requests.len() >= 3,
        "the active timeout cuts a 6 s flow into 3+ records: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| r[8] == (8 << 8).to_string()),
        "echo request in the port"
    );
    assert_eq!(s["pcap"]["kernel_dropped"], 0, "{s}");
    assert_eq!(s["loss_records_written"], 0, "{s}");
    assert!(s["pcap"]["packets"].as_u64().unwrap() >= 60, "{s}");
}

/// Capture drops are never silent: the collector is stopped (SIGSTOP)
/// while 20,000 datagrams cross the interface, so its 64 KiB ring must
/// overflow; after SIGCONT, what it captured plus what the kernel says it
/// dropped is every datagram, and the drops are a loss record in tier 1.
#[test]
fn capture_drops_become_loss_records() {
    assert_eq!(
        euid(),
        0,
        "this test needs root (network namespaces, packet capture); CI runs as root"
    );
    for tool in ["ip", "python3"] {
        require_tool(tool);
    }
    let (_nss, a, b) = veth_pair("kpd", ("drp0", "10.9.1.1/24"), ("drp1", "10.9.1.2/24"));
    // Static neighbours: no ARP exchange while the collector is stopped.
    sh(&[
        "ip",
        "-n",
        &a,
        "neigh",
        "replace",
        "10.9.1.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "drp0",
        "nud",
        "permanent",
    ]);
    sh(&[
        "ip",
        "-n",
        &b,
        "link",
        "set",
        "drp1",
        "address",
        "02:00:00:00:00:02",
    ]);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kopek.toml");
    std::fs::write(
        &config,
        format!(
            r#"[general]
state_dir = "{s}"
[collector]
name = "drops"
listen = []
stats_interval_ms = 100
[collector.segment]
block_flush_ms = 50
[collector.pcap]
interface = "drp0"
filter = "udp and dst port 9"
buffer_bytes = 65536
idle_timeout_s = 1
active_timeout_s = 2
"#,
            s = dir.path().display()
        ),
    )
    .unwrap();
    let mut c = NsCollector::start(&a, &config, dir.path().join("collector-drops.stats.json"));
    let pid = c.child.as_ref().unwrap().id().to_string();
    sh(&["kill", "-STOP", &pid]);
    const SENT: u64 = 20_000;
    let send = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range({SENT}):\n    s.sendto(b'x' * 972, ('10.9.1.2', 9))\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &a, "python3", "-c", &send])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sh(&["kill", "-CONT", &pid]);

    // Flows are written after the idle timeout, drops at the next tick.
    let t0 = Instant::now();
    let s = loop {
        let s = c.stats();
        let p = &s["pcap"];
        let seen = p["packets"].as_u64().unwrap() + p["kernel_dropped"].as_u64().unwrap();
        if seen >= SENT && p["loss_records"].as_u64().unwrap() >= 1
            || t0.elapsed() > Duration::from_secs(10)
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    c.stop();
    let p = &s["pcap"];
    let (captured, dropped) = (
        p["packets"].as_u64().unwrap(),
        p["kernel_dropped"].as_u64().unwrap() + p["if_dropped"].as_u64().unwrap(),
    );
    eprintln!("capture: {captured} packets captured, {dropped} dropped, of {SENT}");
    assert!(
        dropped > 0,
        "a 64 KiB ring cannot hold 20,000 packets of 1,000 bytes: {s}"
    );
    assert_eq!(captured + dropped, SENT, "captured + dropped = sent: {s}");

    // Tier 1: the captured packets as flows (1,000 IP bytes each), the
    // dropped ones as loss records of this capture.
    let t = raw_totals_by_address(dir.path());
    assert_eq!(
        t.get(&"10.9.1.2".parse().unwrap()).copied(),
        Some((captured * 1000, captured)),
        "{t:?}"
    );
    let out = raw(dir.path(), &["stats", "--format", "json"]);
    assert!(out.status.success());
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lost: u64 = st["exporters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["losses"]["lost_packets"].as_u64())
        .sum();
    assert_eq!(lost, dropped, "loss records in tier 1: {st}");
}
