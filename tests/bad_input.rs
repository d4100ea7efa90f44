//! Bad input on every surface of this issue: config files, CLI arguments,
//! damaged segments, hostile datagrams. A clear error and a non-zero exit,
//! or a counted drop; never a panic, never a half-done job.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Collector, kopek_bin};
use kopek_collector::generator::{
    DatagramBatch, Encoder, FlowGen, GenProfile, IpfixConfig, IpfixEncoder,
};

fn kopek(args: &[&str]) -> Output {
    Command::new(kopek_bin()).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_check_names_file_line_and_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k.toml");
    for (text, needle) in [
        ("[collector]\nlisten_port = 1\n", "line 2"),
        (
            "[collector]\nlisten = [\"nowhere\"]\n",
            "collector.listen[0]",
        ),
        (
            "[[collector.exporter]]\nname = \"a\"\naddress = \"1.2.3\"\n",
            "collector.exporter[0].address",
        ),
        (
            "[collector.segment]\ncompression = \"rar\"\n",
            "collector.segment.compression",
        ),
        ("this is not toml", "line 1"),
    ] {
        std::fs::write(&f, text).unwrap();
        let o = kopek(&["--config", f.to_str().unwrap(), "config", "check"]);
        assert_eq!(o.status.code(), Some(78), "{text}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(f.to_str().unwrap()) && e.contains(needle),
            "{text}: {e}"
        );
    }
    let o = kopek(&["--config", "/nonexistent/kopek.toml", "config", "check"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("/nonexistent/kopek.toml"));
    // A device that never ends is refused at the limit, not read forever.
    let o = kopek(&["--config", "/dev/zero", "config", "check"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains("/dev/zero") && stderr(&o).contains("more than 16 MiB"),
        "{}",
        stderr(&o)
    );
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kopek.toml");
    let o = kopek(&["--config", example, "config", "check", "--print-effective"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("rotate_interval_s = 60"));
}

#[test]
fn raw_arguments_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("raw")).unwrap();
    let sd = dir.path().to_str().unwrap();
    for (args, code, needle) in [
        (
            vec!["raw", "--state-dir", sd, "dump", "--from", "yesterday"],
            2,
            "2026-11-22",
        ),
        (
            vec!["raw", "--state-dir", sd, "dump", "--addr", "300.1.1.1"],
            2,
            "10.0.0.0/24",
        ),
        (
            vec!["raw", "--state-dir", sd, "stats", "--unit-base", "1001"],
            2,
            "1000 or 1024",
        ),
        (
            vec![
                "raw",
                "--state-dir",
                sd,
                "dump",
                "--from",
                "2026-01-02",
                "--to",
                "2026-01-01",
            ],
            1,
            "--from must be before --to",
        ),
        (
            vec!["raw", "--state-dir", sd, "dump", "--exporter", "nosuch"],
            1,
            "nosuch",
        ),
        (
            vec!["raw", "--state-dir", "/nonexistent", "ls"],
            1,
            "no tier-1 directory",
        ),
    ] {
        let o = kopek(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // An empty store is not an error.
    let o = kopek(&["raw", "--state-dir", sd, "stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_damaged_segment_is_reported_and_fails_the_report() {
    let mut c = Collector::start("");
    let mut enc = IpfixEncoder::new(IpfixConfig::default()).unwrap();
    let mut g = FlowGen::new(5, GenProfile::default()).unwrap();
    let mut flows = Vec::new();
    g.fill(&mut flows, 2_000);
    let mut batch = DatagramBatch::new();
    enc.encode_into(
        &flows,
        flows.iter().map(|f| f.last_ms).max().unwrap() + 1000,
        &mut batch,
    )
    .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in batch.iter() {
        sock.send_to(d, ("127.0.0.1", c.port)).unwrap();
    }
    assert_eq!(c.wait_flows(2_000, Duration::from_secs(10)), 2_000);
    c.stop();
    let seg = std::fs::read_dir(c.state_dir().join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "kseg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let o = c.raw(&["stats"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("damaged") && e.contains(seg.to_str().unwrap()),
        "{e}"
    );
}

#[test]
fn hostile_datagrams_are_counted_and_dropped_and_good_ones_still_decode() {
    let mut c = Collector::start("");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", c.port);
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut hostile = 0u64;
    for i in 0..3_000u32 {
        let len = (next() % 1500) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Make most of them look like NetFlow so they reach the parsers:
        // version 5/9/10 headers with garbage, zero-length sets, huge
        // field counts.
        if d.len() >= 24 {
            let v: u16 = [5, 9, 10, 7][(i % 4) as usize];
            d[0..2].copy_from_slice(&v.to_be_bytes());
            if i % 3 == 0 {
                d[20..22].copy_from_slice(&[0, 0]); // template set id 0
                d[22..24].copy_from_slice(&[0, 0]); // set length 0
            }
            if i % 5 == 0 && d.len() >= 28 {
                d[16..18].copy_from_slice(&[0, 2]); // IPFIX template set
                d[18..20].copy_from_slice(&((len - 16) as u16).to_be_bytes());
                d[22..24].copy_from_slice(&[0xff, 0xff]); // 65535 fields
            }
        }
        sock.send_to(&d, target).unwrap();
        hostile += 1;
        if i % 200 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.stats()["datagrams_received"].as_u64().unwrap_or(0) < hostile {
        assert!(Instant::now() < deadline, "{}", c.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = c.stats();
    let dropped = s["exporters"]["local"]["dropped_datagrams"]
        .as_u64()
        .unwrap();
    assert!(
        dropped > hostile / 2,
        "only {dropped} of {hostile} dropped: {s}"
    );

    // A real exporter on the same collector still decodes exactly.
    let mut enc = IpfixEncoder::new(IpfixConfig {
        observation_domain_id: 77,
        ..IpfixConfig::default()
    })
    .unwrap();
    let mut g = FlowGen::new(6, GenProfile::default()).unwrap();
    let mut flows = Vec::new();
    g.fill(&mut flows, 1_000);
    let mut batch = DatagramBatch::new();
    enc.encode_into(
        &flows,
        flows.iter().map(|f| f.last_ms).max().unwrap() + 1000,
        &mut batch,
    )
    .unwrap();
    let before = c.stats()["flows_written"].as_u64().unwrap();
    for d in batch.iter() {
        sock.send_to(d, target).unwrap();
    }
    let got = c.wait_flows(before + 1_000, Duration::from_secs(10));
    assert!(got >= before + 1_000, "{}", c.stats());
    c.stop();
    let o = c.raw(&["stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
