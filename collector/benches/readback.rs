//! Tier-1 write and read-back speed on one core, and bytes per flow on
//! disk: 10 M generated flows into one segment with `SegmentWriter` (zstd
//! level 1, and no compression), then read back block by block with
//! `SegmentReader::next_block` into a reused vector. First, the column
//! encoding alone (`FlowBlockEncoder`, in memory, median of the runs): the
//! collector's per-flow cost before compression and I/O.
//!
//! ```text
//! cargo bench -p kopek-collector --bench readback [-- --flows N --runs N --ipv6-percent P
//!     --zstd-levels 1,3 --block-records N]
//! ```
//!
//! `--zstd-levels` and `--block-records` are for experiments (what would
//! a higher level or bigger blocks buy); the defaults are the collector's.
//!
//! The segment is read right after it was written, so it comes from the
//! page cache: this measures checksum, decompression and column decoding,
//! not the disk. Target: >= 10,000,000 records/s read back.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use kopek_collector::generator::{Encoder, FlowGen, GenProfile, IpfixConfig, IpfixEncoder};
use kopek_collector::segment::{
    Block, FlowBlockEncoder, SegmentReader, SegmentWriter, WriterOptions,
};
use kopek_collector::{FlowRecord, LossRecord};
use kopek_config::{Compression, Durability};

const DEFAULT_FLOWS: usize = 10_000_000;
const DEFAULT_RUNS: usize = 5;
/// The collector's default `block_records`.
const BLOCK_RECORDS: usize = 16_384;
const MAX_BLOCK_RECORDS: usize = kopek_collector::segment::MAX_BLOCK_RECORDS;
const TARGET_RECORDS_PER_S: f64 = 10_000_000.0;
const EXPORTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

struct Opts {
    flows: usize,
    runs: usize,
    ipv6_percent: u8,
    zstd_levels: Vec<i32>,
    block_records: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        flows: DEFAULT_FLOWS,
        runs: DEFAULT_RUNS,
        ipv6_percent: 10,
        zstd_levels: vec![1],
        block_records: BLOCK_RECORDS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--flows" => o.flows = val().parse().expect("--flows N"),
            "--runs" => o.runs = val().parse().expect("--runs N"),
            "--ipv6-percent" => o.ipv6_percent = val().parse().expect("--ipv6-percent P"),
            "--zstd-levels" => {
                o.zstd_levels = val()
                    .split(',')
                    .map(|l| l.parse().expect("--zstd-levels 1,3"))
                    .collect()
            }
            "--block-records" => o.block_records = val().parse().expect("--block-records N"),
            _ => {}
        }
    }
    o
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `n` flows as an IPFIX collector would store them (exporter, kind,
/// domain, direction filled in; u64 counters, 4-byte interfaces).
fn generate(n: usize, ipv6_percent: u8) -> Vec<FlowRecord> {
    let profile = GenProfile {
        ipv6_share_percent: ipv6_percent,
        flows_per_s: 500_000,
        ..GenProfile::default()
    };
    let mut flow_gen = FlowGen::new(1, profile).expect("profile");
    let enc = IpfixEncoder::new(IpfixConfig::default()).expect("ipfix");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let f = flow_gen.next_flow();
        out.push(enc.expected(&f, EXPORTER).expect("same-family flow"));
    }
    out
}

fn main() {
    let o = opts();
    let t = Instant::now();
    let flows = generate(o.flows, o.ipv6_percent);
    let bytes_total: u64 = flows.iter().map(|f| f.bytes_raw).sum();
    let block_records = o.block_records.clamp(1, MAX_BLOCK_RECORDS);
    println!(
        "readback: {} flows (IPv6 share {} %, generated in {:.1} s), blocks of {block_records}, median of {} reads, one thread, warm page cache",
        flows.len(),
        o.ipv6_percent,
        t.elapsed().as_secs_f64(),
        o.runs
    );
    let mut encoder = FlowBlockEncoder::default();
    let mut encoded = Vec::new();
    let mut times = Vec::new();
    let mut encoded_bytes = 0usize;
    for _ in 0..o.runs + 1 {
        let started = Instant::now();
        encoded_bytes = 0;
        for chunk in flows.chunks(block_records) {
            encoder.encode(chunk, &mut encoded);
            encoded_bytes += black_box(&encoded).len();
        }
        times.push(started.elapsed().as_secs_f64());
    }
    times.remove(0);
    let t = median(times);
    println!(
        "column encoding alone: {:.1} ns/flow ({:.0} rec/s), {:.2} bytes/flow before compression",
        t * 1e9 / flows.len() as f64,
        flows.len() as f64 / t,
        encoded_bytes as f64 / flows.len() as f64
    );
    println!(
        "{:<8} {:>12} {:>10} {:>14} {:>16} {:>8}",
        "codec", "file bytes", "bytes/flow", "write rec/s", "read rec/s", "target"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut codecs: Vec<(String, Compression)> = o
        .zstd_levels
        .iter()
        .map(|&level| (format!("zstd-{level}"), Compression::Zstd { level }))
        .collect();
    codecs.push(("none".to_string(), Compression::None));
    for (name, compression) in codecs {
        let opts = WriterOptions {
            compression,
            durability: Durability::Never,
        };
        let mut w = SegmentWriter::create(dir.path(), name.replace('-', "_").as_str(), 1, 0, opts)
            .expect("create segment");
        let started = Instant::now();
        for chunk in flows.chunks(block_records) {
            w.append_flows(chunk).expect("append");
        }
        let path = w.close(0).expect("close");
        let write_s = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path).expect("stat").len();

        let mut block: Vec<FlowRecord> = Vec::with_capacity(block_records);
        let mut losses: Vec<LossRecord> = Vec::new();
        let mut times = Vec::new();
        for _ in 0..o.runs + 1 {
            let started = Instant::now();
            let mut r = SegmentReader::open(&path).expect("open");
            let (mut n, mut bytes) = (0usize, 0u64);
            loop {
                block.clear();
                match r.next_block(&mut block, &mut losses).expect("read") {
                    Some(Block::Flows(_)) => {
                        n += block.len();
                        bytes += block.iter().map(|f| f.bytes_raw).sum::<u64>();
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            times.push(started.elapsed().as_secs_f64());
            assert_eq!(
                n,
                flows.len(),
                "{name}: read back {n} of {} records",
                flows.len()
            );
            assert_eq!(black_box(bytes), bytes_total, "{name}: byte total differs");
        }
        times.remove(0); // the first read is a warm-up
        let read_rps = flows.len() as f64 / median(times);
        println!(
            "{:<8} {:>12} {:>10.2} {:>14.0} {:>16.0} {:>8}",
            name,
            size,
            size as f64 / flows.len() as f64,
            flows.len() as f64 / write_s,
            read_rps,
            if read_rps >= TARGET_RECORDS_PER_S {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
