//! nfdump's own exporter: a generated v9 stream is captured by nfcapd into
//! an nfcapd file; nfreplay replays that file to kopek as NetFlow v9 and as
//! v5; kopek's per-address totals must equal `nfdump -r` on the same file.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{Collector, Nfcapd, require_tool, run};
use kopek_collector::generator::{
    DatagramBatch, Encoder, FlowGen, GenProfile, V9Config, V9Encoder, send_batch,
};

const FLOWS: u64 = 20_000;

/// A stream from kopek's generator, captured by nfcapd.
fn nfcapd_file() -> (Nfcapd, std::path::PathBuf) {
    let mut nfcapd = Nfcapd::start();
    let mut g = FlowGen::new(42, GenProfile::default()).unwrap();
    let mut flows = Vec::new();
    g.fill(&mut flows, FLOWS as usize);
    let mut enc = V9Encoder::new(V9Config::default()).unwrap();
    let mut batch = DatagramBatch::new();
    let export_ms = flows.iter().map(|f| f.last_ms).max().unwrap() + 1_000;
    enc.encode_into(&flows, export_ms, &mut batch).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_batch(
        &sock,
        ([127, 0, 0, 1], nfcapd.port).into(),
        &batch,
        Some(100_000),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nfcapd.stop();
    let files = nfcapd.files();
    assert_eq!(files.len(), 1, "nfcapd files: {files:?}");
    let file = files[0].clone();
    (nfcapd, file)
}

fn replay(version: &str) {
    let (_nfcapd, file) = nfcapd_file();
    // IPv6 flows cannot travel in v5: compare v5 against nfdump's IPv4 view.
    let filter = if version == "5" { "ipv4" } else { "any" };
    let mut kopek = Collector::start("");
    run(Command::new(require_tool("nfreplay"))
        .arg("-r")
        .arg(&file)
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &kopek.port.to_string(),
            "-v",
            version,
            "-d",
            "50",
        ])
        .arg(filter));

    let dir = tempfile::tempdir().unwrap();
    let filtered = dir.path().join("nfcapd.filtered");
    run(Command::new(require_tool("nfdump"))
        .arg("-r")
        .arg(&file)
        .arg("-w")
        .arg(&filtered)
        .arg(filter));
    let theirs = common::nfdump_totals_by_address(dir.path());
    let want_flows: u64 = {
        let out = run(Command::new(require_tool("nfdump"))
            .arg("-r")
            .arg(&filtered)
            .args(["-q", "-o", "csv"]));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.contains(','))
            .count() as u64
    };
    assert!(
        want_flows > FLOWS / 2,
        "nfdump sees only {want_flows} flows"
    );
    let got = kopek.wait_flows(want_flows, Duration::from_secs(20));
    assert_eq!(got, want_flows, "v{version}: flows written");
    kopek.stop();
    let ours = kopek.totals_by_address();
    let mut bad: Vec<String> = theirs
        .iter()
        .filter(|(a, t)| ours.get(a) != Some(t))
        .map(|(a, t)| format!("{a}: nfdump {t:?} kopek {:?}", ours.get(a)))
        .collect();
    bad.extend(
        ours.keys()
            .filter(|a| !theirs.contains_key(a))
            .map(|a| format!("{a}: only in kopek")),
    );
    assert!(
        bad.is_empty(),
        "v{version}: {} differences, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(
        kopek.stats()["loss_records_written"],
        0,
        "{}",
        kopek.stats()
    );
}

#[test]
fn nfreplay_v9_totals_equal_nfdump() {
    replay("9");
}

#[test]
fn nfreplay_v5_totals_equal_nfdump() {
    replay("5");
}
