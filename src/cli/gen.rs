//! `kopek gen`: an exporter simulator for operators and benchmarks.
//!
//! Generates a deterministic flow stream (`kopek_collector::generator`),
//! encodes *all* of it into memory first (so that sending costs nothing but
//! system calls), then sends it paced to `--rate` flows per second and
//! prints one JSON line: what was sent, how fast, and the totals a correct
//! collector must store (from the encoder's own `expected()` records, so
//! counter clamping and sampling are accounted for exactly).
//!
//! With `--exporters N` it plays N routers at once: N sockets bound to
//! consecutive source addresses (127.1.0.1, 127.1.0.2, … by default on
//! loopback), each with its own encoder, sequence numbers and v9/IPFIX
//! templates; `--template-churn-every D` makes every exporter start a new
//! export stream (new source id / observation domain, new template ids)
//! every D datagrams, which is what a collector's template caches must
//! survive with flat memory.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kopek_collector::FlowRecord;
use kopek_collector::generator::{
    self, DatagramBatch, DatagramInfo, Encoder, FlowGen, GenProfile, IpfixConfig, IpfixEncoder,
    MAX_FLOWS_PER_S, SendReport, V5_MAX_FLOWS_PER_DATAGRAM, V5Config, V5Encoder, V9Config,
    V9Encoder,
};
use serde::Serialize;

/// Default PRNG seed: the same stream every time unless asked otherwise.
pub const DEFAULT_SEED: u64 = 1;
/// Most flows one run may pre-encode (about 60 bytes of memory each).
pub const MAX_FLOWS: u64 = 200_000_000;
/// Most simulated exporters (sockets) one run may open.
pub const MAX_EXPORTERS: u32 = 10_000;
/// First source address of `--exporters N` on an IPv4 loopback target.
pub const DEFAULT_MULTI_SOURCE_V4: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
/// Largest v5 sampling interval (14-bit header field).
const V5_MAX_SAMPLING: u32 = 0x3fff;
/// Datagrams' worth of flows generated and encoded per step (one export
/// time) for a single exporter. Each step's last datagram may be partly
/// filled, so steps are long: at 1 M flows/s one spans about 30 ms of
/// simulated time.
const CHUNK_DATAGRAMS: usize = 1024;
/// Pre-allocation guess of encoded bytes per flow (v4 records are 45–60
/// bytes; the batch grows if this is short).
const BYTES_PER_FLOW_GUESS: usize = 56;
/// With several exporters, each takes this many datagrams' worth of flows
/// per turn (so only one datagram in so many is a partly filled one).
const MULTI_TURN_DATAGRAMS: usize = 8;
/// With several exporters, the pacing check runs every this many datagrams.
const MULTI_PACE_EVERY_DATAGRAMS: usize = 32;
/// Template ids cycle through this many pairs under churn (v9/IPFIX data
/// template ids start at 256).
const CHURN_TEMPLATE_ID_PAIRS: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Version {
    /// NetFlow v5 (IPv4 only).
    #[value(name = "5")]
    V5,
    /// NetFlow v9.
    #[value(name = "9")]
    V9,
    /// IPFIX.
    #[value(name = "ipfix")]
    Ipfix,
}

impl Version {
    fn as_str(self) -> &'static str {
        match self {
            Version::V5 => "v5",
            Version::V9 => "v9",
            Version::Ipfix => "ipfix",
        }
    }
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Collector address to send to (127.0.0.1:2055, [::1]:2055).
    #[arg(long, env = "KOPEK_GEN_TARGET")]
    target: SocketAddr,
    /// Export format.
    #[arg(long, value_enum)]
    version: Version,
    /// Flows to generate (all are encoded into memory before sending).
    #[arg(long)]
    flows: u64,
    /// Send rate, flows per second (default: as fast as possible). Also the
    /// rate at which simulated time advances.
    #[arg(long)]
    rate: Option<u64>,
    /// PRNG seed: the same seed and options give the same datagrams.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Share of IPv6 flows, 0..=100 (default 10 for v9/IPFIX; v5 carries
    /// IPv4 only, so 0 there).
    #[arg(long)]
    ipv6_percent: Option<u8>,
    /// Packet sampling 1-in-N announced by the exporter (1 = unsampled).
    #[arg(long, default_value_t = 1)]
    sampling: u32,
    /// Encode but do not send every K-th datagram (K >= 2): sequence gaps
    /// a collector must report as losses. Expected totals exclude them.
    #[arg(long)]
    skip_every: Option<u64>,
    /// Flow records per datagram at most (default: v5 30, v9 30, IPFIX 24).
    #[arg(long)]
    flows_per_datagram: Option<u16>,
    /// Write the expected totals (flows, bytes, packets) as JSON here.
    #[arg(long)]
    write_expected: Option<PathBuf>,
    /// Simulated exporters, each its own socket, source address, sequence
    /// numbers and templates.
    #[arg(long, default_value_t = 1)]
    exporters: u32,
    /// Source address of the (first) exporter; the others count up from it.
    /// Default: any address for one exporter, 127.1.0.1 for several.
    #[arg(long)]
    source: Option<IpAddr>,
    /// v9/IPFIX: every exporter starts a new export stream (new source id
    /// or observation domain, new template ids) every D datagrams (checked
    /// between turns: with several exporters a turn is 8 datagrams, so D
    /// is rounded up to a multiple of 8).
    #[arg(long)]
    template_churn_every: Option<u64>,
    /// Simulated time of the first flow's end: epoch ms, a UTC time
    /// (2026-11-22T05:00:00Z, 2026-11-22 05:00), or "now" (the wall clock,
    /// so that the flows carry current times). Default: 2024-01-01T00:00:00Z.
    #[arg(long, value_parser = parse_start)]
    start: Option<i64>,
}

/// `--start`: "now" or a time [`super::format::parse_time_ms`] reads.
fn parse_start(s: &str) -> Result<i64, String> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(chrono::Utc::now().timestamp_millis());
    }
    super::format::parse_time_ms(s)
}

/// Totals a correct collector stores from the datagrams actually sent.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Totals {
    flows: u64,
    bytes: u64,
    packets: u64,
    bytes_raw: u64,
    packets_raw: u64,
}

impl Totals {
    fn add(&mut self, r: &FlowRecord) {
        self.flows += 1;
        self.bytes = self.bytes.saturating_add(r.bytes());
        self.packets = self.packets.saturating_add(r.packets());
        self.bytes_raw = self.bytes_raw.saturating_add(r.bytes_raw);
        self.packets_raw = self.packets_raw.saturating_add(r.packets_raw);
    }
}

/// The file `--write-expected` writes.
#[derive(Debug, Serialize)]
struct ExpectedFile {
    version: &'static str,
    seed: u64,
    exporters: u32,
    sampling: u32,
    #[serde(flatten)]
    totals: Totals,
    datagrams: u64,
    skipped_datagrams: u64,
    skipped_flows: u64,
}

/// The one line printed on stdout.
#[derive(Debug, Serialize)]
struct Report {
    version: &'static str,
    target: SocketAddr,
    exporters: u32,
    flows: u64,
    datagrams: u64,
    bytes: u64,
    seconds: f64,
    flows_per_s: u64,
    rate_requested: Option<u64>,
    encode_seconds: f64,
    max_lag_us: u64,
    would_block_retries: u64,
    syscalls: u64,
    skipped_datagrams: u64,
    skipped_flows: u64,
    unrepresentable_flows: u64,
    values_clamped: u64,
    template_streams: u64,
    expected_flows: u64,
    expected_bytes: u64,
    expected_packets: u64,
}

/// One simulated exporter: its socket, its current encoder and everything
/// it will send.
struct Exporter {
    socket: UdpSocket,
    address: IpAddr,
    index: u32,
    encoder: Box<dyn Encoder>,
    /// Streams (encoders) this exporter has started, churn included.
    streams: u64,
    /// Datagrams of the current encoder, for churn.
    stream_datagrams: u64,
    batch: DatagramBatch,
    /// Counters of encoders replaced by churn.
    retired: generator::EncoderStats,
}

pub fn exec(args: &GenArgs) -> super::Result {
    validate(args)?;
    let sources = source_addresses(args)?;
    let rate = args.rate;
    let mut profile = GenProfile {
        ipv6_share_percent: args.ipv6_percent.unwrap_or(match args.version {
            Version::V5 => 0,
            _ => generator::DEFAULT_IPV6_SHARE_PERCENT,
        }),
        ..GenProfile::default()
    };
    if let Some(r) = rate {
        profile.flows_per_s = r;
    }
    if let Some(start) = args.start {
        profile.start_ms = start;
    }
    let mut flow_gen = FlowGen::new(args.seed, profile)?;

    let per_exporter_flows =
        usize::try_from(args.flows / u64::from(args.exporters) + 1).unwrap_or(usize::MAX);
    let mut exporters = Vec::with_capacity(sources.len());
    for (i, &address) in sources.iter().enumerate() {
        let bind = SocketAddr::new(address, 0);
        let socket = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
        let address = socket.local_addr().context("local address")?.ip();
        // An unspecified bind address: the collector sees the address the
        // kernel routes from, the loopback address for a loopback target.
        let address = if address.is_unspecified() && args.target.ip().is_loopback() {
            args.target.ip()
        } else {
            address
        };
        let index = i as u32;
        let encoder = new_encoder(args, index, 0)?;
        let datagrams = per_exporter_flows / encoder.max_flows_per_datagram().max(1) + 1;
        exporters.push(Exporter {
            socket,
            address,
            index,
            encoder,
            streams: 1,
            stream_datagrams: 0,
            batch: DatagramBatch::with_capacity(
                datagrams,
                per_exporter_flows.saturating_mul(BYTES_PER_FLOW_GUESS),
            ),
            retired: generator::EncoderStats::default(),
        });
    }

    let encode_started = Instant::now();
    let expected = encode_all(args, &mut flow_gen, &mut exporters)?;
    let encode_seconds = encode_started.elapsed().as_secs_f64();

    let send = if exporters.len() == 1 {
        let e = &exporters[0];
        generator::send_batch(&e.socket, args.target, &e.batch, rate)
            .with_context(|| format!("send to {}", args.target))?
    } else {
        send_interleaved(args.target, &exporters, rate)?
    };

    let mut stats = generator::EncoderStats::default();
    for e in &exporters {
        for s in [&e.retired, e.encoder.stats()] {
            stats.datagrams_skipped += s.datagrams_skipped;
            stats.flows_skipped += s.flows_skipped;
            stats.flows_unrepresentable += s.flows_unrepresentable;
            stats.values_clamped += s.values_clamped;
        }
    }
    if let Some(path) = &args.write_expected {
        let file = ExpectedFile {
            version: args.version.as_str(),
            seed: args.seed,
            exporters: args.exporters,
            sampling: args.sampling,
            totals: expected,
            datagrams: send.datagrams_sent,
            skipped_datagrams: stats.datagrams_skipped,
            skipped_flows: stats.flows_skipped,
        };
        let mut json = serde_json::to_vec_pretty(&file).context("expected totals")?;
        json.push(b'\n');
        fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    let report = Report {
        version: args.version.as_str(),
        target: args.target,
        exporters: args.exporters,
        flows: send.flows_sent,
        datagrams: send.datagrams_sent,
        bytes: send.bytes_sent,
        seconds: send.elapsed.as_secs_f64(),
        flows_per_s: send.flows_per_s(),
        rate_requested: rate,
        encode_seconds,
        max_lag_us: send.max_lag_us,
        would_block_retries: send.would_block_retries,
        syscalls: send.syscalls,
        skipped_datagrams: stats.datagrams_skipped,
        skipped_flows: stats.flows_skipped,
        unrepresentable_flows: stats.flows_unrepresentable,
        values_clamped: stats.values_clamped,
        template_streams: exporters.iter().map(|e| e.streams).sum(),
        expected_flows: expected.flows,
        expected_bytes: expected.bytes,
        expected_packets: expected.packets,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&report).context("report")?).context("stdout")?;
    if stats.values_clamped > 0 {
        eprintln!(
            "kopek gen: warning: {} values were clamped to fit their fields; expected totals assume the clamped values",
            stats.values_clamped
        );
    }
    Ok(())
}

fn validate(a: &GenArgs) -> anyhow::Result<()> {
    if a.target.port() == 0 {
        bail!("--target {}: port 0 is not a destination", a.target);
    }
    if a.target.ip().is_unspecified() {
        bail!(
            "--target {}: name the collector's address (127.0.0.1:2055, not 0.0.0.0)",
            a.target
        );
    }
    if a.flows == 0 || a.flows > MAX_FLOWS {
        bail!(
            "--flows must be 1..={MAX_FLOWS} (the stream is pre-encoded in memory), got {}",
            a.flows
        );
    }
    if let Some(r) = a.rate
        && (r == 0 || r > MAX_FLOWS_PER_S)
    {
        bail!("--rate must be 1..={MAX_FLOWS_PER_S} flows per second, got {r}");
    }
    if let Some(p) = a.ipv6_percent {
        if p > 100 {
            bail!("--ipv6-percent must be 0..=100, got {p}");
        }
        if a.version == Version::V5 && p > 0 {
            bail!("--ipv6-percent {p}: NetFlow v5 carries IPv4 only; use --version 9 or ipfix");
        }
    }
    if a.sampling == 0 {
        bail!("--sampling must be >= 1 (1 = unsampled)");
    }
    if a.version == Version::V5 && a.sampling > V5_MAX_SAMPLING {
        bail!(
            "--sampling {}: NetFlow v5 holds at most {V5_MAX_SAMPLING} (14 bits)",
            a.sampling
        );
    }
    if let Some(k) = a.skip_every
        && k < 2
    {
        bail!("--skip-every must be >= 2 (every K-th datagram is not sent), got {k}");
    }
    if let Some(n) = a.flows_per_datagram {
        let max = match a.version {
            Version::V5 => V5_MAX_FLOWS_PER_DATAGRAM,
            _ => u16::MAX,
        };
        if n == 0 || n > max {
            bail!(
                "--flows-per-datagram must be 1..={max} for {}, got {n}",
                a.version.as_str()
            );
        }
    }
    if a.exporters == 0 || a.exporters > MAX_EXPORTERS {
        bail!(
            "--exporters must be 1..={MAX_EXPORTERS}, got {}",
            a.exporters
        );
    }
    if let Some(d) = a.template_churn_every {
        if a.version == Version::V5 {
            bail!("--template-churn-every: NetFlow v5 has no templates; use --version 9 or ipfix");
        }
        if d == 0 {
            bail!("--template-churn-every must be >= 1 datagram");
        }
    }
    if let Some(s) = a.source
        && s.is_ipv6() != a.target.is_ipv6()
    {
        bail!(
            "--source {s} and --target {} are of different address families",
            a.target
        );
    }
    Ok(())
}

/// The source address of every exporter.
fn source_addresses(a: &GenArgs) -> anyhow::Result<Vec<IpAddr>> {
    let n = a.exporters;
    let base = match (a.source, n, a.target.ip()) {
        (Some(s), _, _) => s,
        (None, 1, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, 1, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (None, _, IpAddr::V4(t)) if t.is_loopback() => IpAddr::V4(DEFAULT_MULTI_SOURCE_V4),
        (None, _, _) => bail!(
            "--exporters {n}: give --source (the first of {n} consecutive local addresses to send from)"
        ),
    };
    if n > 1 && base.is_unspecified() {
        bail!(
            "--source {base}: {n} exporters need {n} distinct addresses, not the unspecified one"
        );
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let a = match base {
            IpAddr::V4(b) => u32::from(b)
                .checked_add(i)
                .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
            IpAddr::V6(b) => u128::from(b)
                .checked_add(u128::from(i))
                .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        };
        match a {
            Some(a) => out.push(a),
            None => bail!(
                "--source {base}: {n} consecutive addresses run past the end of the address space"
            ),
        }
    }
    Ok(out)
}

/// A fresh encoder for exporter `index`, export stream number `stream`
/// (0 until template churn starts new ones).
fn new_encoder(a: &GenArgs, index: u32, stream: u64) -> anyhow::Result<Box<dyn Encoder>> {
    // Stream ids: exporter index first, then one more block of ids per
    // churn generation, so no two streams of one run share an id.
    let domain =
        u32::try_from(u64::from(index) + stream * u64::from(a.exporters)).unwrap_or(u32::MAX);
    let pair = (stream % u64::from(CHURN_TEMPLATE_ID_PAIRS)) as u16;
    let (t4, t6, topt) = (256 + 3 * pair, 257 + 3 * pair, 258 + 3 * pair);
    Ok(match a.version {
        Version::V5 => {
            let mut c = V5Config {
                sampling_interval: u16::try_from(a.sampling).unwrap_or(u16::MAX),
                ..V5Config::default()
            };
            // engine_type/engine_id: the domain a v5 collector records.
            c.engine_type = (index >> 8) as u8;
            c.engine_id = index as u8;
            if let Some(n) = a.flows_per_datagram {
                c.max_flows_per_datagram = n;
            }
            Box::new(V5Encoder::new(c)?)
        }
        Version::V9 => {
            let mut c = V9Config {
                source_id: domain,
                sampling_interval: a.sampling,
                template_id_v4: t4,
                template_id_v6: t6,
                template_id_options: topt,
                ..V9Config::default()
            };
            if let Some(n) = a.flows_per_datagram {
                c.max_flows_per_datagram = n;
            }
            Box::new(V9Encoder::new(c)?)
        }
        Version::Ipfix => {
            let mut c = IpfixConfig {
                observation_domain_id: domain,
                sampling_interval: a.sampling,
                template_id_v4: t4,
                template_id_v6: t6,
                template_id_options: topt,
                ..IpfixConfig::default()
            };
            if let Some(n) = a.flows_per_datagram {
                c.max_flows_per_message = n;
            }
            Box::new(IpfixEncoder::new(c)?)
        }
    })
}

/// Generates `--flows` flows and encodes them into the exporters' batches:
/// one exporter takes chunks of [`CHUNK_DATAGRAMS`] datagrams' worth; several take
/// [`MULTI_TURN_DATAGRAMS`] datagrams' worth each in turn. Returns the expected totals.
fn encode_all(
    a: &GenArgs,
    flow_gen: &mut FlowGen,
    exporters: &mut [Exporter],
) -> anyhow::Result<Totals> {
    let per_datagram = exporters[0].encoder.max_flows_per_datagram().max(1);
    let per_step = if exporters.len() == 1 {
        per_datagram * CHUNK_DATAGRAMS
    } else {
        per_datagram * MULTI_TURN_DATAGRAMS
    };
    let mut totals = Totals::default();
    let mut chunk: Vec<FlowRecord> = Vec::with_capacity(per_step);
    let mut left = a.flows;
    let mut turn = 0usize;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(per_step);
        chunk.clear();
        flow_gen.fill(&mut chunk, n);
        let count = exporters.len();
        let e = &mut exporters[turn];
        turn = (turn + 1) % count;
        if let Some(d) = a.template_churn_every
            && e.stream_datagrams >= d
        {
            let old = std::mem::replace(&mut e.encoder, new_encoder(a, e.index, e.streams)?);
            let s = old.stats();
            e.retired.datagrams_skipped += s.datagrams_skipped;
            e.retired.flows_skipped += s.flows_skipped;
            e.retired.flows_unrepresentable += s.flows_unrepresentable;
            e.retired.values_clamped += s.values_clamped;
            e.streams += 1;
            e.stream_datagrams = 0;
        }
        if let Some(k) = a.skip_every {
            // Every K-th datagram of the encoder's running count; n flows
            // make at most n datagrams.
            let s = e.encoder.stats();
            let next = s.datagrams_emitted + s.datagrams_skipped;
            for i in next..next + n as u64 {
                if (i + 1) % k == 0 {
                    e.encoder.skip_datagram(i);
                }
            }
        }
        let (emitted_before, skipped_before) = (e.batch.len(), e.batch.skipped().len());
        e.encoder
            .encode_into(&chunk, flow_gen.now_ms(), &mut e.batch)
            .context("encode")?;
        let emitted = &e.batch.infos()[emitted_before..];
        let skipped = &e.batch.skipped()[skipped_before..];
        e.stream_datagrams += (emitted.len() + skipped.len()) as u64;
        account(
            &chunk,
            emitted,
            skipped,
            e.encoder.as_ref(),
            e.address,
            &mut totals,
        )?;
        left -= n as u64;
    }
    Ok(totals)
}

/// Adds the expected records of the flows that went into emitted datagrams.
/// Datagrams carry consecutive runs of the representable flows, in datagram
/// order, so walking both in order assigns every flow to its datagram.
fn account(
    chunk: &[FlowRecord],
    emitted: &[DatagramInfo],
    skipped: &[DatagramInfo],
    encoder: &dyn Encoder,
    exporter: IpAddr,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let mut expected = chunk.iter().filter_map(|f| encoder.expected(f, exporter));
    let (mut i, mut j) = (0, 0);
    while i < emitted.len() || j < skipped.len() {
        let take_emitted = j >= skipped.len()
            || (i < emitted.len() && emitted[i].datagram_index < skipped[j].datagram_index);
        let d = if take_emitted {
            i += 1;
            &emitted[i - 1]
        } else {
            j += 1;
            &skipped[j - 1]
        };
        for _ in 0..d.flows {
            let Some(r) = expected.next() else {
                bail!(
                    "internal: datagram {} claims more flows than were encoded",
                    d.datagram_index
                );
            };
            if take_emitted {
                totals.add(&r);
            }
        }
    }
    if expected.next().is_some() {
        bail!("internal: encoded flows left over after the last datagram");
    }
    Ok(())
}

/// Sends the exporters' datagrams round-robin (datagram r of every exporter,
/// then r + 1), each from its own socket, paced like `send_batch`.
fn send_interleaved(
    target: SocketAddr,
    exporters: &[Exporter],
    rate: Option<u64>,
) -> anyhow::Result<SendReport> {
    let mut report = SendReport::default();
    let rounds = exporters.iter().map(|e| e.batch.len()).max().unwrap_or(0);
    let started = Instant::now();
    let mut since_check = 0usize;
    for r in 0..rounds {
        for e in exporters {
            if r >= e.batch.len() {
                continue;
            }
            if let Some(rate) = rate
                && since_check == 0
            {
                let due_ns = u128::from(report.flows_sent) * 1_000_000_000 / u128::from(rate);
                let now_ns = started.elapsed().as_nanos();
                if due_ns > now_ns {
                    std::thread::sleep(Duration::from_nanos(
                        u64::try_from(due_ns - now_ns).unwrap_or(u64::MAX),
                    ));
                } else {
                    let lag_us = u64::try_from((now_ns - due_ns) / 1000).unwrap_or(u64::MAX);
                    report.max_lag_us = report.max_lag_us.max(lag_us);
                }
            }
            since_check = (since_check + 1) % MULTI_PACE_EVERY_DATAGRAMS;
            let d = e.batch.get(r);
            loop {
                report.syscalls += 1;
                match e.socket.send_to(d, target) {
                    Ok(_) => break,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        report.would_block_retries += 1;
                        std::thread::yield_now();
                    }
                    Err(err) => {
                        return Err(err)
                            .with_context(|| format!("send from {} to {target}", e.address));
                    }
                }
            }
            report.datagrams_sent += 1;
            report.flows_sent += u64::from(e.batch.infos()[r].flows);
            report.bytes_sent += d.len() as u64;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
