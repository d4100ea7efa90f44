//! Decoding speed on one core, in memory: kopek's [`Decoder`] against
//! `netflow_parser` (`NetflowParser::default().parse_bytes`), on the same
//! pre-encoded NetFlow v5, v9 and IPFIX datagrams from the generator.
//!
//! ```text
//! cargo bench -p kopek-collector --bench decode [-- --flows N --runs N --ipv6-percent P
//!     --versions v5,v9,ipfix]
//! ```
//!
//! Each run decodes the whole stream with a fresh decoder (a decoder that
//! has seen a datagram rejects it the second time as a duplicate), so a run
//! includes learning the templates from the stream's first datagram, as a
//! collector does. Printed: the median of the runs, ns per flow. kopek
//! writes finished `FlowRecord`s into a reused vector (as the collector's
//! receiver does); netflow_parser builds its own packet structures per
//! datagram, and only counting its records is added to its time.
//!
//! A third column, `columns ns/f`, is the receiver's whole user-space path
//! short of compression: decode into the block encoder's columns (v5 rows
//! straight from the datagram, v9/IPFIX rows a batch at a time) and
//! `finish` a block every 16,384 records, as the collector's receivers do.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use kopek_collector::FlowRecord;
use kopek_collector::decode::{DecodeLimits, DecodeSink, Decoder, ExporterOpts, V5Rows};
use kopek_collector::generator::{
    DEFAULT_START_MS, DatagramBatch, Encoder, FlowGen, GenProfile, IpfixConfig, IpfixEncoder,
    V5Config, V5Encoder, V9Config, V9Encoder, encode_stream,
};
use kopek_collector::record::FlowRows;
use kopek_collector::segment::FlowBlockEncoder;
use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::v9::FlowSetBody as V9Body;
use netflow_parser::{NetflowPacket, NetflowParser};

const DEFAULT_FLOWS: u64 = 300_000;
const DEFAULT_RUNS: usize = 11;
/// The receiver hands a batch to the writer at this size; the bench
/// clears its vector at the same size.
const BATCH_RECORDS: usize = 16_384;
const EXPORTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

struct Opts {
    flows: u64,
    runs: usize,
    ipv6_percent: u8,
    versions: Vec<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        flows: DEFAULT_FLOWS,
        runs: DEFAULT_RUNS,
        ipv6_percent: 0,
        versions: ["v5", "v9", "ipfix"].map(String::from).to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--flows" => o.flows = val().parse().expect("--flows N"),
            "--runs" => o.runs = val().parse().expect("--runs N"),
            "--ipv6-percent" => o.ipv6_percent = val().parse().expect("--ipv6-percent P"),
            "--versions" => o.versions = val().split(',').map(String::from).collect(),
            // cargo bench passes --bench; libtest filters are not used here.
            _ => {}
        }
    }
    o
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn encode(version: &str, o: &Opts) -> DatagramBatch {
    let profile = GenProfile {
        ipv6_share_percent: if version == "v5" { 0 } else { o.ipv6_percent },
        flows_per_s: 500_000,
        ..GenProfile::default()
    };
    let mut flow_gen = FlowGen::new(1, profile).expect("profile");
    let mut enc: Box<dyn Encoder> = match version {
        "v5" => Box::new(V5Encoder::new(V5Config::default()).expect("v5")),
        "v9" => Box::new(V9Encoder::new(V9Config::default()).expect("v9")),
        "ipfix" => Box::new(IpfixEncoder::new(IpfixConfig::default()).expect("ipfix")),
        other => panic!("--versions: {other} is not one of v5, v9, ipfix"),
    };
    let mut batch = DatagramBatch::new();
    encode_stream(&mut flow_gen, enc.as_mut(), o.flows, &mut batch, None).expect("encode");
    batch
}

/// One pass with a fresh decoder; returns (seconds, flows decoded).
fn kopek_pass(batch: &DatagramBatch, flows: &mut Vec<FlowRecord>) -> (f64, u64) {
    let mut losses = Vec::new();
    let now_ms = DEFAULT_START_MS + 60_000;
    let started = Instant::now();
    let mut decoder = Decoder::new(DecodeLimits::default());
    let mut total = 0u64;
    for d in batch.iter() {
        decoder
            .decode(
                EXPORTER,
                now_ms,
                ExporterOpts::default(),
                d,
                flows,
                &mut losses,
            )
            .expect("kopek decodes the generator's datagrams");
        if flows.len() >= BATCH_RECORDS {
            total += flows.len() as u64;
            black_box(&flows[flows.len() - 1]);
            flows.clear();
        }
    }
    total += flows.len() as u64;
    flows.clear();
    let secs = started.elapsed().as_secs_f64();
    assert!(losses.is_empty(), "no losses in a clean stream: {losses:?}");
    (secs, total)
}

/// The receivers' sink in miniature: built rows wait, v5 rows go straight
/// in after them, a block is finished every [`BATCH_RECORDS`].
struct ColumnSink {
    rows: Vec<FlowRecord>,
    enc: FlowBlockEncoder,
    out: Vec<u8>,
    blocks: u64,
}

impl ColumnSink {
    fn push<R: FlowRows>(&mut self, mut rows: R) {
        while !rows.is_empty() {
            let take = (BATCH_RECORDS - self.enc.len()).min(rows.len());
            let (now, rest) = rows.split_at(take);
            self.enc.push_rows(now);
            rows = rest;
            if self.enc.len() >= BATCH_RECORDS {
                self.seal();
            }
        }
    }

    fn drain(&mut self) {
        let rows = std::mem::take(&mut self.rows);
        self.push(&rows[..]);
        self.rows = rows;
        self.rows.clear();
    }

    fn seal(&mut self) {
        self.out.clear();
        self.enc.finish(&mut self.out);
        black_box(&self.out);
        self.blocks += 1;
    }
}

impl DecodeSink for ColumnSink {
    fn records(&mut self) -> &mut Vec<FlowRecord> {
        &mut self.rows
    }

    fn v5(&mut self, rows: V5Rows<'_>) {
        self.drain();
        self.push(rows);
    }
}

/// Decode and column encoding together; returns (seconds, flows).
fn columns_pass(batch: &DatagramBatch, sink: &mut ColumnSink) -> (f64, u64) {
    let mut losses = Vec::new();
    let now_ms = DEFAULT_START_MS + 60_000;
    let started = Instant::now();
    let mut decoder = Decoder::new(DecodeLimits::default());
    let mut total = 0u64;
    for (i, d) in batch.iter().enumerate() {
        total += decoder
            .decode(
                EXPORTER,
                now_ms,
                ExporterOpts::default(),
                d,
                sink,
                &mut losses,
            )
            .expect("kopek decodes the generator's datagrams") as u64;
        // The receivers encode a recvmmsg(2) call's rows (16 datagrams) together.
        if i % 16 == 15 {
            sink.drain();
        }
    }
    sink.drain();
    if !sink.enc.is_empty() {
        sink.seal();
    }
    (started.elapsed().as_secs_f64(), total)
}

fn parser_pass(batch: &DatagramBatch) -> (f64, u64) {
    let started = Instant::now();
    let mut parser = NetflowParser::default();
    let mut total = 0u64;
    for d in batch.iter() {
        let result = parser.parse_bytes(d);
        for p in &result.packets {
            total += match p {
                NetflowPacket::V5(v5) => v5.flowsets.len() as u64,
                NetflowPacket::V9(v9) => v9
                    .flowsets
                    .iter()
                    .map(|fs| match &fs.body {
                        V9Body::Data(d) => d.fields.len() as u64,
                        _ => 0,
                    })
                    .sum(),
                NetflowPacket::IPFix(ipfix) => ipfix
                    .flowsets
                    .iter()
                    .map(|fs| match &fs.body {
                        IpfixBody::Data(d) => d.fields.len() as u64,
                        _ => 0,
                    })
                    .sum(),
                _ => 0,
            };
        }
        assert!(result.error.is_none(), "netflow_parser: {:?}", result.error);
        black_box(&result.packets);
    }
    (started.elapsed().as_secs_f64(), total)
}

fn main() {
    let o = opts();
    println!(
        "decode: {} flows per stream, median of {} runs, one thread, IPv6 share {} % (v9/IPFIX)",
        o.flows, o.runs, o.ipv6_percent
    );
    println!(
        "{:<6} {:>9} {:>10} {:>14} {:>12} {:>14} {:>20} {:>16}",
        "format",
        "datagrams",
        "flows",
        "kopek ns/flow",
        "kopek Mf/s",
        "columns ns/f",
        "netflow_parser ns/f",
        "parser / kopek"
    );
    let mut flows = Vec::with_capacity(BATCH_RECORDS + 64);
    let mut sink = ColumnSink {
        rows: Vec::with_capacity(BATCH_RECORDS + 64),
        enc: FlowBlockEncoder::default(),
        out: Vec::new(),
        blocks: 0,
    };
    for version in o.versions.iter().map(String::as_str) {
        let batch = encode(version, &o);
        let n = batch.total_flows();
        // Warm-up passes (page faults, caches, branch predictors).
        let (_, got) = kopek_pass(&batch, &mut flows);
        assert_eq!(got, n, "{version}: kopek decoded {got} of {n} flows");
        let blocks_before = sink.blocks;
        let (_, got) = columns_pass(&batch, &mut sink);
        assert_eq!(
            got, n,
            "{version}: the column pass decoded {got} of {n} flows"
        );
        assert_eq!(
            sink.blocks - blocks_before,
            n.div_ceil(BATCH_RECORDS as u64)
        );
        let (_, got) = parser_pass(&batch);
        let parser_ok = got == n;
        let mut k = Vec::new();
        let mut c = Vec::new();
        let mut p = Vec::new();
        for _ in 0..o.runs {
            k.push(kopek_pass(&batch, &mut flows).0);
            c.push(columns_pass(&batch, &mut sink).0);
            p.push(parser_pass(&batch).0);
        }
        let k_ns = median(k) * 1e9 / n as f64;
        let c_ns = median(c) * 1e9 / n as f64;
        let p_ns = median(p) * 1e9 / n as f64;
        println!(
            "{:<6} {:>9} {:>10} {:>14.1} {:>12.2} {:>14.1} {:>20.1} {:>15.2}x{}",
            version,
            batch.len(),
            n,
            k_ns,
            1e3 / k_ns,
            c_ns,
            p_ns,
            p_ns / k_ns,
            if parser_ok {
                ""
            } else {
                "  (netflow_parser: record count differs!)"
            }
        );
    }
}
