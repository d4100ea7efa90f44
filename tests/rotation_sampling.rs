//! Segments rotate by time while a stream runs without losing or repeating
//! a record; sampled exports are stored scaled, with raw counts and rate.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use common::Collector;
use kopek_collector::FlowRecord;
use kopek_collector::generator::{
    DatagramBatch, Encoder, FlowGen, GenProfile, V5Config, V5Encoder, V9Config, V9Encoder,
};

/// The flows' datagrams, the records tier 1 should hold, and the export
/// time the datagrams carry.
fn encode(enc: &mut dyn Encoder, seed: u64, n: usize) -> (DatagramBatch, Vec<FlowRecord>, i64) {
    encode_shifted(enc, seed, n, 0)
}

/// [`encode`] with every time of the generated flows moved by `shift_ms`
/// (an exporter whose clock is that far off).
fn encode_shifted(
    enc: &mut dyn Encoder,
    seed: u64,
    n: usize,
    shift_ms: i64,
) -> (DatagramBatch, Vec<FlowRecord>, i64) {
    let mut g = FlowGen::new(seed, GenProfile::default()).unwrap();
    let mut flows = Vec::new();
    g.fill(&mut flows, n);
    for f in &mut flows {
        f.first_ms += shift_ms;
        f.last_ms += shift_ms;
    }
    let mut batch = DatagramBatch::new();
    let export_ms = flows.iter().map(|f| f.last_ms).max().unwrap() + 1_000;
    enc.encode_into(&flows, export_ms, &mut batch).unwrap();
    let local = IpAddr::V4([127, 0, 0, 1].into());
    let expected = flows
        .iter()
        .filter_map(|f| enc.expected(f, local))
        .collect();
    (batch, expected, export_ms)
}

fn csv_totals(c: &Collector) -> (u64, u64, u64, u64, u64) {
    let out = c.raw(&["stats", "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("exporter,"))
        .expect("an exporter row");
    let f: Vec<u64> = line
        .split(',')
        .skip(2)
        .take(5)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0], f[1], f[2], f[3], f[4])
}

#[test]
fn segments_rotate_every_second_and_no_record_is_lost_or_repeated() {
    let mut c =
        Collector::start("[collector.segment]\nrotate_interval_s = 1\nblock_flush_ms = 20\n");
    let mut enc = V5Encoder::new(V5Config::default()).unwrap();
    let (batch, expected, _) = encode(&mut enc, 21, 30 * 200);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // 200 datagrams over ~3.5 s: the stream crosses several rotations.
    for (i, d) in batch.iter().enumerate() {
        sock.send_to(d, ("127.0.0.1", c.port)).unwrap();
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(175));
        }
    }
    let n = expected.len() as u64;
    assert_eq!(c.wait_flows(n, Duration::from_secs(10)), n);
    c.stop();
    let ls = c.raw(&["ls", "--format", "csv"]);
    let closed = String::from_utf8(ls.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains(",closed,"))
        .count();
    assert!(closed >= 3, "only {closed} segments");
    let (flows, bytes, packets, _, _) = csv_totals(&c);
    assert_eq!(flows, n);
    assert_eq!(bytes, expected.iter().map(|f| f.bytes()).sum::<u64>());
    assert_eq!(packets, expected.iter().map(|f| f.packets()).sum::<u64>());
}

#[test]
fn configured_sampling_scales_counts_and_keeps_the_raw_ones() {
    // The config says this router samples 1:100 (its export says nothing).
    let mut c = Collector::start("sampling = 100\n");
    let mut enc = V9Encoder::new(V9Config::default()).unwrap();
    let (batch, expected, _) = encode(&mut enc, 22, 3_000);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in batch.iter() {
        sock.send_to(d, ("127.0.0.1", c.port)).unwrap();
    }
    let n = expected.len() as u64;
    assert_eq!(c.wait_flows(n, Duration::from_secs(10)), n);
    c.stop();
    let (flows, bytes, packets, bytes_raw, packets_raw) = csv_totals(&c);
    assert_eq!(flows, n);
    assert_eq!(bytes_raw, expected.iter().map(|f| f.bytes_raw).sum::<u64>());
    assert_eq!(
        packets_raw,
        expected.iter().map(|f| f.packets_raw).sum::<u64>()
    );
    assert_eq!(bytes, bytes_raw * 100);
    assert_eq!(packets, packets_raw * 100);
    let dump = c.raw(&["dump", "--format", "csv", "--limit", "5"]);
    for line in String::from_utf8(dump.stdout).unwrap().lines().skip(1) {
        assert!(line.ends_with(",100"), "sampling not kept: {line}");
    }
}

#[test]
fn the_exports_own_sampling_rate_is_applied_when_the_config_says_auto() {
    let mut c = Collector::start("");
    let mut enc = V5Encoder::new(V5Config {
        sampling_interval: 64,
        ..V5Config::default()
    })
    .unwrap();
    let (batch, expected, _) = encode(&mut enc, 23, 900);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in batch.iter() {
        sock.send_to(d, ("127.0.0.1", c.port)).unwrap();
    }
    let n = expected.len() as u64;
    assert_eq!(c.wait_flows(n, Duration::from_secs(10)), n);
    c.stop();
    let (_, bytes, _, bytes_raw, _) = csv_totals(&c);
    assert_eq!(bytes_raw, expected.iter().map(|f| f.bytes_raw).sum::<u64>());
    assert_eq!(bytes, bytes_raw * 64);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A router whose clock cannot be trusted (here: its exports are stamped
/// in the generator's past, as by a router without NTP), with
/// `clock = "arrival"`: every record is moved by its datagram's arrival
/// minus export time — stamped by the collector's clock, its duration
/// kept — and the skew is in the stats for the operator.
#[test]
fn an_exporter_read_by_the_arrival_clock_is_stamped_by_the_collector() {
    let mut c = Collector::start("clock = \"arrival\"\n");
    // v5: the export time has millisecond precision.
    let mut enc = V5Encoder::new(V5Config::default()).unwrap();
    let (batch, expected, export_ms) = encode(&mut enc, 24, 600);
    let (lo, hi) = send_timed(&c, &batch, expected.len(), export_ms);
    assert!(lo > 86_400_000, "the generator's exports are in the past");
    // The receivers publish their counters a moment after the writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let skew = loop {
        let s = c.stats();
        if let Some(v) = s["exporters"]["local"]["clock_skew_ms"].as_i64() {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no clock_skew_ms: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!((lo..=hi).contains(&skew), "{skew} not in {lo}..={hi}");
    let text = common::classify::kopek(&c.config, &["collector", "stats"]);
    let years = skew / 1000 / (365 * 86_400);
    let shown = if years > 0 {
        format!("-{years} y")
    } else {
        format!("-{} d", skew / 1000 / 86_400)
    };
    assert!(text.contains(&shown), "{shown:?} missing in {text}");
    c.stop();
    assert_stamped_on_arrival(&c, &expected, lo..=hi);
}

/// Sends `batch` to `c` and waits until its `flows` are written; returns
/// the range its arrival minus `export_ms` lies in.
fn send_timed(c: &Collector, batch: &DatagramBatch, flows: usize, export_ms: i64) -> (i64, i64) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = now_ms();
    for d in batch.iter() {
        sock.send_to(d, ("127.0.0.1", c.port)).unwrap();
    }
    let n = flows as u64;
    assert_eq!(c.wait_flows(n, Duration::from_secs(10)), n);
    (before - export_ms, now_ms() - export_ms)
}

/// Every record `c` stored is the flow `expected` moved by a shift in
/// `shifts` (arrival minus export time), its duration kept.
fn assert_stamped_on_arrival(
    c: &Collector,
    expected: &[FlowRecord],
    shifts: std::ops::RangeInclusive<i64>,
) {
    let dump = c.raw(&["dump", "--format", "csv"]);
    let text = String::from_utf8(dump.stdout).unwrap();
    let got: Vec<(i64, i64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[3].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for ((first, last), want) in got.iter().zip(expected) {
        let shift = first - want.first_ms;
        assert!(shifts.contains(&shift), "{shift} not in {shifts:?}");
        assert_eq!(last - first, want.last_ms - want.first_ms);
    }
}

/// A router whose clock is far ahead (in 2099 here) under the default
/// `clock = "exporter"`: its flows are read by the arrival time all the
/// same — no flow is seen in the future, and by its own clock its traffic
/// would land in a billing period 70 years away — durations kept, the
/// skew shown for the operator.
#[test]
fn an_exporter_clock_far_ahead_is_read_by_arrival_unasked() {
    let mut c = Collector::start("");
    let mut enc = V5Encoder::new(V5Config::default()).unwrap();
    // The generator's flows are of 2024: moved into 2099.
    let (batch, expected, export_ms) = encode_shifted(&mut enc, 25, 600, 75 * 365 * 86_400_000);
    let (lo, hi) = send_timed(&c, &batch, expected.len(), export_ms);
    assert!(hi < -70 * 365 * 86_400_000, "the exports are in 2099");
    // The receivers publish their counters a moment after the writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !c.stats()["exporters"]["local"]["clock_skew_ms"]
        .as_i64()
        .is_some_and(|skew| (lo..=hi).contains(&skew))
    {
        assert!(std::time::Instant::now() < deadline, "{}", c.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = common::classify::kopek(&c.config, &["collector", "stats"]);
    assert!(text.contains(" +7"), "the skew (+7x y) missing in {text}");
    c.stop();
    assert_stamped_on_arrival(&c, &expected, lo..=hi);
}
