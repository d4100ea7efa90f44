//! The collector process: sockets, receiver threads, the writer thread,
//! signals, the stats file.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kopek_config::{CollectorConfig, Config, ExporterClock};
use serde::Serialize;

use crate::capture::{CaptureError, LiveCapture, PcapStats};
use crate::decode::{
    DecodeLimits, DecodeSink, DecodeStats, Decoder, ExporterOpts, SeqCheckpoint, V5Rows,
};
use crate::mem::FastMap;
use crate::record::{FlowRecord, FlowRows, LossRecord};
use crate::recv::MultiRecv;
use crate::segment::{
    EncodedFlows, FlowBlockEncoder, MAX_BLOCK_RECORDS, RawStore, SegmentError, SegmentWriter,
    WriterOptions,
};

/// Batches in flight between receivers and the writer. When the writer is
/// this far behind, receivers wait and the socket buffers absorb the burst.
const WRITER_QUEUE_BATCHES: usize = 16;
/// Receivers wake at least this often (shutdown, ticks, partial batches).
const RECV_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a receiver lets datagrams accumulate when its socket is empty,
/// to begin with: at most this long, and 1 ms per 2 MiB of granted socket
/// buffer below it (see [`coalesce_for`]); then as [`Naps`] adapts it.
const RECV_COALESCE_MAX: Duration = Duration::from_millis(4);
/// The longest nap [`Naps`] grows to: 1 ms per 512 KiB granted, at most
/// this (8 MiB granted fill in ~22 ms at 5 M flows/s).
const RECV_NAP_MAX: Duration = Duration::from_millis(16);
/// Empty polls (a nap each) before a receiver sleeps in poll(2).
const IDLE_POLLS_BEFORE_WAIT: u32 = 100;
/// Decoder housekeeping (held gaps, held template-less data).
const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// How often a healthy collector tells systemd's watchdog it is alive.
const WATCHDOG_PING: Duration = Duration::from_secs(5);
/// Largest UDP payload.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Decoded flows a receiver holds before it encodes them (plus one
/// datagram's): ~110 KiB of rows.
const DRAIN_ROWS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Config(#[from] kopek_config::ConfigError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Thread(String),
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The allow-list as the receivers see it; replaced whole on reload.
#[derive(Debug, Default)]
pub struct ExporterTable {
    by_addr: FastMap<IpAddr, ExporterEntry>,
}

#[derive(Debug, Clone)]
struct ExporterEntry {
    name: String,
    opts: ExporterOpts,
}

impl ExporterTable {
    pub fn from_config(c: &CollectorConfig) -> ExporterTable {
        ExporterTable {
            by_addr: c
                .exporters
                .iter()
                .map(|e| {
                    (
                        e.address,
                        ExporterEntry {
                            name: e.name.clone(),
                            opts: ExporterOpts {
                                sampling: e.sampling.map(|s| s.get()),
                                arrival_clock: e.clock == ExporterClock::Arrival,
                            },
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Counters of one exporter, as the stats file shows them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ExporterStats {
    pub name: String,
    pub datagrams: u64,
    pub flows: u64,
    pub dropped_datagrams: u64,
    pub loss_records: u64,
    pub last_seen_ms: i64,
    /// Arrival minus export time of its last datagram (ms): how far its
    /// clock is behind the collector's (negative: ahead).
    #[serde(default)]
    pub clock_skew_ms: i64,
    /// When the skew was last logged.
    #[serde(skip)]
    pub skew_logged_ms: Option<i64>,
}

/// An exporter clock further than this from the collector's is logged
/// (network delay is milliseconds; NTP keeps clocks within far less).
pub const CLOCK_SKEW_WARN_MS: i64 = 5 * 60_000;
/// How often a skewed clock is logged again, per exporter.
const CLOCK_SKEW_LOG_EVERY_MS: i64 = 10 * 60_000;

/// Logs an exporter clock far from the collector's, at most every
/// [`CLOCK_SKEW_LOG_EVERY_MS`]: flows stamped by it land at the wrong
/// time (a router without NTP after a reboot stamps 1970), in the wrong
/// tariff zone and under whoever held the address then.
fn note_clock_skew(exporter: IpAddr, e: &mut ExporterStats, arrival_clock: bool, now: i64) {
    if e.clock_skew_ms.abs() <= CLOCK_SKEW_WARN_MS
        || e.skew_logged_ms
            .is_some_and(|t| now - t < CLOCK_SKEW_LOG_EVERY_MS)
    {
        return;
    }
    e.skew_logged_ms = Some(now);
    let how = if e.clock_skew_ms > 0 {
        "behind"
    } else {
        "ahead of"
    };
    let secs = match e.clock_skew_ms.unsigned_abs() / 1000 {
        s if s >= 2 * 86_400 => format!("{} days ({s} s)", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours ({s} s)", s / 3_600),
        s => format!("{s} s"),
    };
    if arrival_clock {
        tracing::info!(
            name = %e.name, %exporter, skew_s = e.clock_skew_ms / 1000,
            "exporter clock is {secs} {how} the collector's; its flows are read by the arrival time (clock = \"arrival\")"
        );
    } else if e.clock_skew_ms < -crate::decode::CLOCK_AHEAD_MAX_MS {
        tracing::warn!(
            name = %e.name, %exporter, skew_s = e.clock_skew_ms / 1000,
            "exporter clock is {secs} ahead of the collector's: no flow is seen in the future, so its flows are read by the arrival time (as with clock = \"arrival\"); fix its clock (NTP)"
        );
    } else {
        tracing::warn!(
            name = %e.name, %exporter, skew_s = e.clock_skew_ms / 1000,
            "exporter clock is {secs} {how} the collector's and its flows are stamped by it; fix its clock (NTP) or set clock = \"arrival\" in its [[collector.exporter]] entry"
        );
    }
}

/// What `kopek collector stats` reads.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub collector: String,
    pub pid: u32,
    pub started_ms: i64,
    pub written_ms: i64,
    pub datagrams_received: u64,
    pub datagrams_unknown_exporter: u64,
    pub unknown_exporters: HashMap<String, u64>,
    pub flows_written: u64,
    pub loss_records_written: u64,
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub segments_closed: u64,
    pub fsyncs: u64,
    pub open_segment: String,
    pub socket_drops: u64,
    pub exporters: HashMap<String, ExporterStats>,
    pub decode: DecodeStats,
    /// The capture source, when `[collector.pcap]` is configured.
    #[serde(default)]
    pub pcap: Option<PcapStats>,
    /// Written last by a collector that stopped cleanly (its open segment
    /// sealed); a file without it whose pid is gone was killed.
    #[serde(default)]
    pub stopped: bool,
    /// How often the running collector rewrites this file (0: an older
    /// kopek's file).
    #[serde(default)]
    pub stats_interval_ms: u64,
    /// The last time tier 1 could not be written (a full disk): the
    /// collector holds blocks in memory meanwhile. `recovered_ms` is `None`
    /// while it still fails.
    #[serde(default)]
    pub last_write_failure: Option<WriteFailure>,
}

/// A run of failed attempts of a daemon's work, for its stats file: the
/// collector's writes to tier 1, the classifier's commits to tier 2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Failure {
    pub since_ms: i64,
    /// Attempts that failed in a row (the first one included).
    pub attempts: u64,
    /// The latest attempt's error.
    pub error: String,
    pub recovered_ms: Option<i64>,
}

impl Failure {
    /// Notes a failed attempt in `slot`: one more of the run going on, or
    /// the first of a new one at `now_ms`.
    pub fn note(slot: &mut Option<Failure>, now_ms: i64, error: String) -> &Failure {
        match slot {
            Some(f) if f.recovered_ms.is_none() => {
                f.attempts += 1;
                f.error = error;
            }
            _ => {
                *slot = Some(Failure {
                    since_ms: now_ms,
                    attempts: 1,
                    error,
                    recovered_ms: None,
                })
            }
        }
        slot.as_ref().expect("just set")
    }

    /// Ends the run at `now_ms` if it goes on; returns whether it did.
    pub fn end(&mut self, now_ms: i64) -> bool {
        let going_on = self.recovered_ms.is_none();
        if going_on {
            self.recovered_ms = Some(now_ms);
        }
        going_on
    }
}

/// [`StatsSnapshot::last_write_failure`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WriteFailure {
    #[serde(flatten)]
    pub failure: Failure,
    /// Bytes of blocks held in memory, waiting for room.
    pub held_bytes: u64,
    /// Holding all it may (`collector.segment.hold_bytes`): the sockets
    /// are not read, the kernel drops what arrives (recorded as gaps).
    pub paused: bool,
}

/// A unit of work for the writer: records, then the sequence state of the
/// export streams right after them (written behind them, so a restart
/// notices every datagram that was not written).
#[derive(Default)]
struct Batch {
    /// Flow blocks, encoded by the thread that decoded them.
    flows: EncodedFlows,
    losses: Vec<LossRecord>,
    checkpoint: Vec<SeqCheckpoint>,
}

#[derive(Default)]
struct WriterCounters {
    flows: AtomicU64,
    losses: AtomicU64,
    blocks: AtomicU64,
    bytes: AtomicU64,
    segments_closed: AtomicU64,
    fsyncs: AtomicU64,
}

/// Shared between the threads of one process.
struct Shared {
    stop: AtomicBool,
    exporters: RwLock<Arc<ExporterTable>>,
    generation: AtomicU64,
    receivers: Mutex<Vec<ReceiverStats>>,
    writer: WriterCounters,
    open_segment: Mutex<String>,
    /// Written batches' buffers, handed back to the receivers: a fresh
    /// megabyte-sized Vec per batch costs a page fault per 4 KiB.
    spare: Mutex<Vec<Batch>>,
    /// The capture thread's counters.
    pcap: Mutex<Option<PcapStats>>,
    /// The writer's current or last run of failed writes.
    write_failure: Mutex<Option<WriteFailure>>,
}

/// A producer's records on their way into a batch: decoded into `rows`
/// (one datagram's, or one capture read's), then encoded into the batch's
/// blocks at once, while they are still in this core's cache. The writer
/// only compresses, frames and writes.
struct BlockFeed {
    rows: Vec<FlowRecord>,
    enc: FlowBlockEncoder,
    block_records: usize,
}

impl BlockFeed {
    fn new(block_records: usize) -> BlockFeed {
        BlockFeed {
            rows: Vec::new(),
            enc: FlowBlockEncoder::default(),
            block_records: block_records.clamp(1, MAX_BLOCK_RECORDS),
        }
    }

    /// Encodes the waiting `rows` into `flows`, sealing a block whenever
    /// it holds `block_records`.
    fn drain(&mut self, flows: &mut EncodedFlows) {
        push_split(&mut self.enc, self.block_records, flows, &self.rows[..]);
        self.rows.clear();
    }

    /// At least one whole block is waiting in `batch`.
    fn full(&self, batch: &Batch) -> bool {
        !batch.flows.is_empty()
    }

    /// No flow is waiting, sealed or not.
    fn no_flows(&self, batch: &Batch) -> bool {
        batch.flows.is_empty() && self.enc.is_empty() && self.rows.is_empty()
    }

    /// Seals the last, partial block before `batch` is sent.
    fn seal(&mut self, batch: &mut Batch) {
        self.drain(&mut batch.flows);
        batch.flows.seal(&mut self.enc);
    }
}

/// Encodes `rows` into `enc` after what it holds, sealing a block into
/// `flows` whenever it holds `block_records`.
fn push_split<R: FlowRows>(
    enc: &mut FlowBlockEncoder,
    block_records: usize,
    flows: &mut EncodedFlows,
    mut rows: R,
) {
    while !rows.is_empty() {
        // `enc` holds fewer than `block_records`: a full one is sealed.
        let take = (block_records - enc.len()).min(rows.len());
        let (now, rest) = rows.split_at(take);
        enc.push_rows(now);
        rows = rest;
        if enc.len() >= block_records {
            flows.seal(enc);
        }
    }
}

/// The decoder's sink in a receiver: v9/IPFIX records wait in the feed's
/// rows (encoded a recvmmsg(2) call's worth at a time); a v5 datagram's
/// records go into the block from the datagram itself, after the rows
/// waiting before them.
struct FeedSink<'a> {
    feed: &'a mut BlockFeed,
    flows: &'a mut EncodedFlows,
}

impl DecodeSink for FeedSink<'_> {
    fn records(&mut self) -> &mut Vec<FlowRecord> {
        &mut self.feed.rows
    }

    fn v5(&mut self, rows: V5Rows<'_>) {
        let feed = &mut *self.feed;
        feed.drain(self.flows);
        push_split(&mut feed.enc, feed.block_records, self.flows, rows);
    }
}

/// Most spare batch buffers kept (bounded like everything else).
const SPARE_BATCHES: usize = WRITER_QUEUE_BATCHES + 4;

impl Shared {
    /// Notes a failed write; returns the attempts of the run so far.
    fn failed(&self, e: &SegmentError) -> u64 {
        let mut slot = self.write_failure.lock().expect("poisoned");
        // A run that goes on keeps what it holds; a new one holds nothing
        // yet (`note_held` says when it does).
        let (held_bytes, paused) = slot
            .as_ref()
            .filter(|w| w.failure.recovered_ms.is_none())
            .map_or((0, false), |w| (w.held_bytes, w.paused));
        let mut run = slot.take().map(|w| w.failure);
        let attempts = Failure::note(&mut run, now_ms(), e.to_string()).attempts;
        *slot = run.map(|failure| WriteFailure {
            failure,
            held_bytes,
            paused,
        });
        attempts
    }

    /// What the writer holds now.
    fn note_held(&self, seg: &SegmentWriter, paused: bool) {
        if let Some(w) = self.write_failure.lock().expect("poisoned").as_mut() {
            w.held_bytes = seg.pending_bytes() as u64;
            w.paused = paused;
        }
    }

    /// Writes succeed again: the run of failures ends.
    fn written_again(&self) {
        let mut slot = self.write_failure.lock().expect("poisoned");
        if let Some(w) = slot.as_mut() {
            let held = w.held_bytes;
            if w.failure.end(now_ms()) {
                w.held_bytes = 0;
                w.paused = false;
                tracing::info!(
                    since_ms = w.failure.since_ms,
                    attempts = w.failure.attempts,
                    held_bytes = held,
                    "tier 1 written again: everything held in memory is on disk"
                );
            }
        }
    }

    fn take_spare(&self) -> Batch {
        let spare = self.spare.lock().expect("poisoned").pop();
        spare.unwrap_or_default()
    }

    fn give_back(&self, mut b: Batch) {
        b.flows.clear();
        b.losses.clear();
        b.checkpoint.clear();
        let mut spare = self.spare.lock().expect("poisoned");
        if spare.len() < SPARE_BATCHES {
            spare.push(b);
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ReceiverStats {
    datagrams: u64,
    unknown: u64,
    unknown_by_addr: FastMap<IpAddr, u64>,
    exporters: FastMap<IpAddr, ExporterStats>,
    decode: DecodeStats,
}

/// A running collector. Dropping it without [`Collector::shutdown`] leaves
/// the threads running until the process exits.
pub struct Collector {
    config: Config,
    shared: Arc<Shared>,
    receivers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<Result<(), SegmentError>>>,
    local_addrs: Vec<SocketAddr>,
    started_ms: i64,
}

impl Collector {
    /// Recovers crashed segments, binds every socket, opens a new segment
    /// and starts the threads. When this returns the collector is receiving.
    pub fn start(config: Config) -> Result<Collector, CollectorError> {
        let c = &config.collector;
        let store = RawStore::new(c.raw_dir(&config.state_dir));
        store.create_dir()?;
        let lock = store.lock(&c.name)?;
        let started_ms = now_ms();
        for rep in store.recover(&c.name, started_ms)? {
            tracing::warn!(
                segment = %rep.closed_path.display(),
                blocks_kept = rep.blocks_kept,
                flow_records_kept = rep.flow_records_kept,
                truncated_bytes = rep.truncated_bytes,
                why = %rep.why,
                "recovered a segment left open by a crash"
            );
        }

        let checkpoints = Arc::new(store.last_checkpoint(&c.name)?);
        if !checkpoints.is_empty() {
            tracing::info!(
                streams = checkpoints.len(),
                "continuing export streams' sequence numbers from tier 1"
            );
        }

        let mut sockets = Vec::new();
        for addr in &c.listen {
            sockets.push(bind(*addr, c.socket_buffer_bytes)?);
        }
        // Opened before anything runs: a missing interface or permission
        // is a startup error, not a silent thread.
        let capture = match &c.pcap {
            Some(p) => Some(LiveCapture::open(p, started_ms)?),
            None => None,
        };
        let local_addrs = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CollectorError::Io {
                what: "local address".into(),
                source,
            })?;

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            exporters: RwLock::new(Arc::new(ExporterTable::from_config(c))),
            generation: AtomicU64::new(0),
            receivers: Mutex::new(vec![ReceiverStats::default(); sockets.len()]),
            writer: WriterCounters::default(),
            open_segment: Mutex::new(String::new()),
            spare: Mutex::new(Vec::new()),
            pcap: Mutex::new(None),
            write_failure: Mutex::new(None),
        });

        let opts = WriterOptions {
            compression: c.segment.compression,
            durability: c.durability,
        };
        let first = SegmentWriter::create(
            store.dir(),
            &c.name,
            store.next_id(&c.name)?,
            started_ms,
            opts,
        )?;
        *shared.open_segment.lock().expect("poisoned") = first.path().display().to_string();
        let (tx, rx) = sync_channel::<Batch>(WRITER_QUEUE_BATCHES);
        let writer = {
            let shared = shared.clone();
            let seg = c.segment.clone();
            let name = c.name.clone();
            std::thread::Builder::new()
                .name("kopek-writer".into())
                .spawn(move || {
                    let _lock = lock;
                    write_loop(rx, first, store, name, seg, opts, &shared)
                })
                .map_err(|source| CollectorError::Io {
                    what: "spawn writer".into(),
                    source,
                })?
        };

        let limits = DecodeLimits {
            max_templates_per_exporter: c.limits.max_templates_per_exporter,
            max_templates_total: c.limits.max_templates_total,
            pending_hold_ms: c.limits.pending_hold.as_millis() as i64,
            ..DecodeLimits::default()
        };
        let mut receivers = Vec::new();
        for (i, sock) in sockets.into_iter().enumerate() {
            let shared = shared.clone();
            let tx = tx.clone();
            let limits = limits.clone();
            let block_records = c.segment.block_records;
            let block_flush = c.segment.block_flush;
            let checkpoints = checkpoints.clone();
            receivers.push(
                std::thread::Builder::new()
                    .name(format!("kopek-recv-{i}"))
                    .spawn(move || {
                        let mut decoder = Decoder::new(limits);
                        let mut restore_losses = Vec::new();
                        decoder.restore(&checkpoints, now_ms(), &mut restore_losses);
                        receive_loop(
                            i,
                            sock,
                            decoder,
                            restore_losses,
                            tx,
                            &shared,
                            block_records,
                            block_flush,
                        )
                    })
                    .map_err(|source| CollectorError::Io {
                        what: "spawn receiver".into(),
                        source,
                    })?,
            );
        }
        if let Some(cap) = capture {
            let shared = shared.clone();
            let tx = tx.clone();
            let block_records = c.segment.block_records;
            let block_flush = c.segment.block_flush;
            tracing::info!(interface = %cap.stats.interface, "capturing packets");
            receivers.push(
                std::thread::Builder::new()
                    .name("kopek-pcap".into())
                    .spawn(move || capture_loop(cap, tx, &shared, block_records, block_flush))
                    .map_err(|source| CollectorError::Io {
                        what: "spawn capture".into(),
                        source,
                    })?,
            );
        }
        drop(tx);
        tracing::info!(collector = %c.name, listen = ?local_addrs, "collector receiving");
        Ok(Collector {
            config,
            shared,
            receivers,
            writer: Some(writer),
            local_addrs,
            started_ms,
        })
    }

    /// The bound addresses (port 0 in the config becomes a real port).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Replaces the exporter allow-list (SIGHUP). Other settings need a restart.
    pub fn reload(&mut self, config: Config) {
        let table = Arc::new(ExporterTable::from_config(&config.collector));
        *self.shared.exporters.write().expect("poisoned") = table;
        self.shared.generation.fetch_add(1, Ordering::Release);
        if config.collector.listen != self.config.collector.listen
            || config.collector.segment != self.config.collector.segment
        {
            tracing::warn!("only the exporter list is reloaded; restart for other changes");
        }
        tracing::info!(
            exporters = config.collector.exporters.len(),
            "exporter list reloaded"
        );
        self.config.collector.exporters = config.collector.exporters;
    }

    /// True while every thread runs.
    pub fn is_healthy(&self) -> bool {
        self.receivers.iter().all(|r| !r.is_finished())
            && self.writer.as_ref().is_some_and(|w| !w.is_finished())
    }

    pub fn stats(&self) -> StatsSnapshot {
        let shared = &self.shared;
        let mut s = StatsSnapshot {
            collector: self.config.collector.name.clone(),
            pid: std::process::id(),
            started_ms: self.started_ms,
            written_ms: now_ms(),
            flows_written: shared.writer.flows.load(Ordering::Relaxed),
            loss_records_written: shared.writer.losses.load(Ordering::Relaxed),
            blocks_written: shared.writer.blocks.load(Ordering::Relaxed),
            bytes_written: shared.writer.bytes.load(Ordering::Relaxed),
            segments_closed: shared.writer.segments_closed.load(Ordering::Relaxed),
            fsyncs: shared.writer.fsyncs.load(Ordering::Relaxed),
            open_segment: shared.open_segment.lock().expect("poisoned").clone(),
            socket_drops: udp_socket_drops(&self.local_addrs),
            stats_interval_ms: self.config.collector.stats_interval.as_millis() as u64,
            last_write_failure: shared.write_failure.lock().expect("poisoned").clone(),
            ..StatsSnapshot::default()
        };
        for r in shared.receivers.lock().expect("poisoned").iter() {
            s.datagrams_received += r.datagrams;
            s.datagrams_unknown_exporter += r.unknown;
            for (a, n) in &r.unknown_by_addr {
                *s.unknown_exporters.entry(a.to_string()).or_default() += n;
            }
            for e in r.exporters.values() {
                let t = s.exporters.entry(e.name.clone()).or_default();
                t.name = e.name.clone();
                t.datagrams += e.datagrams;
                t.flows += e.flows;
                t.dropped_datagrams += e.dropped_datagrams;
                t.loss_records += e.loss_records;
                // The receiver that heard from it last knows its clock.
                if e.last_seen_ms >= t.last_seen_ms {
                    t.clock_skew_ms = e.clock_skew_ms;
                }
                t.last_seen_ms = t.last_seen_ms.max(e.last_seen_ms);
            }
            s.decode.add(&r.decode);
        }
        s.pcap = shared.pcap.lock().expect("poisoned").clone();
        s
    }

    /// Writes the stats file atomically (write to a temp name, rename).
    pub fn write_stats_file(&self) -> Result<PathBuf, CollectorError> {
        self.write_stats(&self.stats())
    }

    fn write_stats(&self, stats: &StatsSnapshot) -> Result<PathBuf, CollectorError> {
        let path = stats_path(&self.config.state_dir, &self.config.collector.name);
        let json = serde_json::to_vec_pretty(stats).expect("stats serialize");
        crate::state_file::replace(&path, &json).map_err(|source| CollectorError::Io {
            what: format!("write {}", path.display()),
            source,
        })?;
        Ok(path)
    }

    /// Stops receiving, writes what is buffered, seals the open segment.
    pub fn shutdown(mut self) -> Result<StatsSnapshot, CollectorError> {
        self.shared.stop.store(true, Ordering::Release);
        let mut errors = Vec::new();
        for r in self.receivers.drain(..) {
            if r.join().is_err() {
                errors.push("a receiver thread panicked".to_string());
            }
        }
        if let Some(w) = self.writer.take() {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push("the writer thread panicked".to_string()),
            }
        }
        let stats = StatsSnapshot {
            stopped: errors.is_empty(),
            ..self.stats()
        };
        if let Err(e) = self.write_stats(&stats) {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(stats)
        } else {
            Err(CollectorError::Thread(errors.join("; ")))
        }
    }
}

/// Where a collector writes its stats: `<state_dir>/collector-<name>.stats.json`.
pub fn stats_path(state_dir: &Path, collector: &str) -> PathBuf {
    state_dir.join(format!("collector-{collector}.stats.json"))
}

fn bind(addr: SocketAddr, rcvbuf: usize) -> Result<UdpSocket, CollectorError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| CollectorError::Bind { addr, source };
    let sock =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(err)?;
    }
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to SO_RCVBUF (capped by
    // net.core.rmem_max) and say what we got.
    if !set_rcvbuf_force(&sock, rcvbuf) {
        sock.set_recv_buffer_size(rcvbuf).map_err(err)?;
    }
    let got = sock.recv_buffer_size().unwrap_or(0);
    // Linux reports double the requested size (bookkeeping overhead).
    if got < rcvbuf {
        tracing::warn!(
            %addr, requested = rcvbuf, granted = got,
            "socket receive buffer smaller than configured; raise net.core.rmem_max"
        );
    }
    sock.bind(&addr.into()).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    Ok(sock.into())
}

/// Blocks until `fd` (a socket, a capture) is readable or `timeout` passes.
pub(crate) fn wait_readable(fd: &impl std::os::fd::AsRawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call; poll only writes
    // its revents.
    unsafe {
        libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int);
    }
}

/// SO_RCVBUFFORCE: exceeds net.core.rmem_max, needs CAP_NET_ADMIN.
fn set_rcvbuf_force(sock: &socket2::Socket, bytes: usize) -> bool {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on an owned socket with a pointer to a c_int that
    // outlives the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// How often the capture thread expires flows and reads libpcap's drops.
const CAPTURE_TICK: Duration = Duration::from_secs(1);

/// The capture thread: packets → flows → batches for the writer. On stop
/// (or a capture error) every flow in the table is written first.
fn capture_loop(
    mut cap: LiveCapture,
    tx: SyncSender<Batch>,
    shared: &Shared,
    block_records: usize,
    block_flush: Duration,
) {
    let mut batch = shared.take_spare();
    let mut feed = BlockFeed::new(block_records);
    let mut batch_started = Instant::now();
    let mut last_tick = Instant::now();
    let publish = |cap: &LiveCapture| {
        *shared.pcap.lock().expect("poisoned") = Some(cap.stats.clone());
    };
    publish(&cap);
    let mut failed = None;
    while !shared.stop.load(Ordering::Acquire) {
        if let Err(e) = cap.read(4096, &mut feed.rows) {
            failed = Some(e);
            break;
        }
        if last_tick.elapsed() >= CAPTURE_TICK {
            last_tick = Instant::now();
            if let Err(e) = cap.tick(now_ms(), &mut feed.rows, &mut batch.losses) {
                failed = Some(e);
                break;
            }
            publish(&cap);
        }
        feed.drain(&mut batch.flows);
        let full = feed.full(&batch);
        let due = batch_started.elapsed() >= block_flush
            && !(feed.no_flows(&batch) && batch.losses.is_empty());
        if full || due {
            feed.seal(&mut batch);
            let next = shared.take_spare();
            if tx.send(std::mem::replace(&mut batch, next)).is_err() {
                return;
            }
            batch_started = Instant::now();
        }
    }
    if let Err(e) = cap.finish(now_ms(), &mut feed.rows, &mut batch.losses) {
        tracing::warn!(error = %e, "capture: last statistics unavailable");
    }
    publish(&cap);
    feed.seal(&mut batch);
    if !(batch.flows.is_empty() && batch.losses.is_empty()) {
        let _ = tx.send(batch);
    }
    if let Some(e) = failed {
        tracing::error!(error = %e, "capture stopped; its flows were written");
    }
}

#[allow(clippy::too_many_arguments)]
fn receive_loop(
    index: usize,
    sock: UdpSocket,
    mut decoder: Decoder,
    restore_losses: Vec<LossRecord>,
    tx: SyncSender<Batch>,
    shared: &Shared,
    block_records: usize,
    block_flush: Duration,
) {
    // Datagrams are taken up to 16 at a time; at stop, those taken are
    // decoded first (what is still in the kernel's queue is not: a
    // restart's sequence tracking records that hole as a loss).
    let mut rx = MultiRecv::new(MAX_DATAGRAM_BYTES);
    let fd = sock.as_raw_fd();
    let mut naps = Naps::new(
        socket2::SockRef::from(&sock)
            .recv_buffer_size()
            .unwrap_or(0),
    );
    let mut batch = shared.take_spare();
    let mut feed = BlockFeed::new(block_records);
    batch.losses.extend(restore_losses);
    let mut batch_started = Instant::now();
    let mut last_tick = Instant::now();
    let mut generation = shared.generation.load(Ordering::Acquire);
    let mut table = shared.exporters.read().expect("poisoned").clone();
    let mut stats = ReceiverStats::default();
    let mut last_publish = Instant::now();
    // Datagrams decoded since the last batch: their sequence numbers must
    // reach the writer's checkpoint even when they carried no flows.
    let mut dirty = false;

    let mut idle_polls = 0u32;
    // Arrival time of the datagrams one recvmmsg(2) call took: read once
    // per call, not per datagram (they came within moments of each other).
    let mut now = now_ms();
    loop {
        let stopping = shared.stop.load(Ordering::Acquire) && !rx.has_pending();
        if !stopping {
            let fresh = !rx.has_pending();
            match rx.next(fd) {
                Ok((datagram, from)) => {
                    idle_polls = 0;
                    if fresh {
                        now = now_ms();
                    }
                    naps.took(datagram.len());
                    stats.datagrams += 1;
                    // Only a family other than IPv4/IPv6 has no address:
                    // never on a UDP/IP socket; counted as unknown if it were.
                    let exporter = from.map(canonical);
                    match exporter.and_then(|e| table.by_addr.get(&e).map(|x| (e, x))) {
                        None => {
                            let exporter = exporter.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                            stats.unknown += 1;
                            // Bounded: an attacker spraying sources must not
                            // grow this map without end.
                            if stats.unknown_by_addr.len() < 1024
                                || stats.unknown_by_addr.contains_key(&exporter)
                            {
                                *stats.unknown_by_addr.entry(exporter).or_default() += 1;
                            }
                        }
                        Some((exporter, entry)) => {
                            let e =
                                stats
                                    .exporters
                                    .entry(exporter)
                                    .or_insert_with(|| ExporterStats {
                                        name: entry.name.clone(),
                                        ..ExporterStats::default()
                                    });
                            e.datagrams += 1;
                            e.last_seen_ms = now;
                            dirty = true;
                            let losses_before = batch.losses.len();
                            match decoder.decode(
                                exporter,
                                now,
                                entry.opts,
                                datagram,
                                &mut FeedSink {
                                    feed: &mut feed,
                                    flows: &mut batch.flows,
                                },
                                &mut batch.losses,
                            ) {
                                Ok(flows) => e.flows += flows as u64,
                                Err(err) => {
                                    e.dropped_datagrams += 1;
                                    tracing::debug!(%exporter, reason = err.reason(), "datagram dropped");
                                }
                            }
                            e.loss_records += (batch.losses.len() - losses_before) as u64;
                            if let Some(skew) = decoder.clock_skew_ms(exporter) {
                                e.clock_skew_ms = skew;
                                note_clock_skew(exporter, e, entry.opts.arrival_clock, now);
                            }
                            // The flows of the datagrams one recvmmsg(2)
                            // call took are encoded together, so that
                            // their dictionary lookups can be prefetched
                            // ahead of use (see `FlowBlockEncoder::push_rows`).
                            if !rx.has_pending() || feed.rows.len() >= DRAIN_ROWS {
                                feed.drain(&mut batch.flows);
                            }
                        }
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    // Empty: let datagrams accumulate for a moment instead
                    // of waking once per datagram (a context switch costs
                    // more than decoding 30 flows); after a while of
                    // nothing, wait in poll(2) until one arrives.
                    idle_polls = idle_polls.saturating_add(1);
                    if idle_polls < IDLE_POLLS_BEFORE_WAIT {
                        std::thread::sleep(naps.next());
                    } else {
                        wait_readable(&sock, RECV_TIMEOUT);
                        naps.restart();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(error = %e, "receive failed");
                    std::thread::sleep(RECV_TIMEOUT);
                }
            }
        }

        // The timers and the reload flag are looked at between recvmmsg(2)
        // calls, not between the datagrams one call took.
        if rx.has_pending() && !stopping {
            continue;
        }
        let g = shared.generation.load(Ordering::Acquire);
        if g != generation {
            generation = g;
            let new = shared.exporters.read().expect("poisoned").clone();
            for addr in table.by_addr.keys() {
                if !new.by_addr.contains_key(addr) {
                    decoder.forget_exporter(*addr);
                    stats.exporters.remove(addr);
                }
            }
            table = new;
        }
        // One clock read for the three timers (each read is ~1 % of the
        // receiver's time when done per datagram).
        let clock = Instant::now();
        if clock.duration_since(last_tick) >= TICK_INTERVAL || stopping {
            decoder.tick(now_ms(), &mut batch.losses);
            last_tick = clock;
        }
        if stopping {
            decoder.flush_gaps(&mut batch.losses);
        }
        let full = feed.full(&batch);
        let due = clock.duration_since(batch_started) >= block_flush;
        if full || due || stopping {
            if dirty || !feed.no_flows(&batch) || !batch.losses.is_empty() {
                dirty = false;
                // Every flow decoded so far goes with the checkpoint that
                // says its datagrams arrived.
                feed.seal(&mut batch);
                decoder.checkpoint(&mut batch.checkpoint);
                let out = std::mem::replace(&mut batch, shared.take_spare());
                if tx.send(out).is_err() {
                    tracing::error!("writer is gone; receiver stops");
                    break;
                }
            }
            batch_started = clock;
        }
        if clock.duration_since(last_publish) >= Duration::from_millis(200) || stopping {
            stats.decode = decoder.stats().clone();
            shared.receivers.lock().expect("poisoned")[index] = stats.clone();
            last_publish = clock;
        }
        if stopping {
            break;
        }
    }
}

/// The receiver's nap when its socket is empty, from the socket buffer the
/// kernel granted (Linux reports twice the requested size). Each nap is a
/// context switch pair (~10 µs in a VM), so longer naps cost less CPU per
/// flow (1 → 4 ms: 0.192 → 0.176 CPU s per million v9 flows at 0.5 M/s,
/// docs/performance.md); but the buffer must hold what arrives meanwhile.
/// 1 ms per 2 MiB granted keeps a nap under a fifth of what the buffer
/// holds at 5 M flows/s (a 1.35 KB loopback datagram of 30 flows takes
/// ~2.3 KB of buffer: 8 MiB granted hold ~21 ms at 5 M flows/s).
fn coalesce_for(granted_bytes: usize) -> Duration {
    let ms = (granted_bytes >> 21).clamp(1, RECV_COALESCE_MAX.as_millis() as usize);
    Duration::from_millis(ms as u64)
}

/// Kernel memory a loopback or Ethernet datagram takes in the socket buffer
/// beyond its payload (sk_buff and slab rounding): a 1,364-byte v5
/// datagram is charged ~2.3 KB.
const SKB_OVERHEAD_BYTES: usize = 1024;

/// The receiver's naps, adapted to the rate: a nap that let little
/// accumulate (under 1/16 of the granted buffer) is followed by one twice
/// as long, up to [`RECV_NAP_MAX`] (1 ms per 512 KiB granted); one that let
/// more than 1/8 accumulate by one half as long, down to 1 ms. At
/// 0.5 M flows/s and 8 MiB granted that is ~60 naps a second instead of
/// ~250 (each a context switch pair), and a rate that jumps tenfold
/// during the longest nap still fits the buffer.
struct Naps {
    granted: usize,
    start: Duration,
    max: Duration,
    nap: Duration,
    /// Buffer bytes taken since the last nap: what it let accumulate.
    haul: usize,
}

impl Naps {
    fn new(granted_bytes: usize) -> Naps {
        let start = coalesce_for(granted_bytes);
        let max_ms = (granted_bytes >> 19).clamp(1, RECV_NAP_MAX.as_millis() as usize);
        Naps {
            granted: granted_bytes.max(1),
            start,
            max: Duration::from_millis(max_ms as u64).max(start),
            nap: start,
            haul: 0,
        }
    }

    /// A datagram of `len` bytes was taken from the socket.
    fn took(&mut self, len: usize) {
        self.haul = self.haul.saturating_add(len + SKB_OVERHEAD_BYTES);
    }

    /// The socket is empty: how long to nap now.
    fn next(&mut self) -> Duration {
        if self.haul.saturating_mul(16) < self.granted {
            self.nap = (self.nap * 2).min(self.max);
        } else if self.haul.saturating_mul(8) > self.granted {
            self.nap = (self.nap / 2).max(Duration::from_millis(1));
        }
        self.haul = 0;
        self.nap
    }

    /// After a wait for the first datagram of a new stream: the rate is
    /// unknown again.
    fn restart(&mut self) {
        self.nap = self.start;
        self.haul = 0;
    }
}

/// IPv4 peers on a dual-stack socket arrive as ::ffff:a.b.c.d.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// How often the writer tries again to write what it holds while the
/// disk refuses writes.
const HELD_RETRY: Duration = Duration::from_secs(1);

/// What the writer has published of the open segment's totals.
#[derive(Default)]
struct Published {
    blocks: u64,
    flows: u64,
    losses: u64,
    bytes: u64,
}

impl Published {
    /// The counters of a segment just opened (its header not counted).
    fn of(seg: &SegmentWriter) -> Published {
        Published {
            bytes: seg.len_bytes(),
            ..Published::default()
        }
    }

    /// Adds what `seg` wrote since the last call to the shared counters.
    fn publish(&mut self, seg: &SegmentWriter, w: &WriterCounters) {
        let f = seg.footer();
        w.blocks
            .fetch_add(f.blocks - self.blocks, Ordering::Relaxed);
        w.flows
            .fetch_add(f.flow_records - self.flows, Ordering::Relaxed);
        w.losses
            .fetch_add(f.loss_records - self.losses, Ordering::Relaxed);
        w.bytes
            .fetch_add(seg.len_bytes() - self.bytes, Ordering::Relaxed);
        (self.blocks, self.flows, self.losses, self.bytes) =
            (f.blocks, f.flow_records, f.loss_records, seg.len_bytes());
    }
}

/// The writer thread: batches from the receivers into the open segment,
/// which it rotates. When the disk refuses a write (full, or over a
/// quota) it does not stop: what the segment could not write is held in
/// memory (`cfg.hold_bytes`) and written once the disk has room, tried
/// every [`HELD_RETRY`]; with that much held it stops taking batches, so
/// the receivers stop reading and the kernel drops datagrams, which the
/// receivers record as gaps when they read again. Any other write error
/// ends the thread (and the daemon: a restart recovers the segment).
fn write_loop(
    rx: Receiver<Batch>,
    mut seg: SegmentWriter,
    store: RawStore,
    name: String,
    cfg: kopek_config::SegmentConfig,
    opts: WriterOptions,
    shared: &Shared,
) -> Result<(), SegmentError> {
    let w = &shared.writer;
    let mut opened = Instant::now();
    let mut published = Published::of(&seg);
    // Sequence state already in this segment: only changes are written,
    // and a new segment starts with everything.
    let mut written: HashMap<(IpAddr, u32, crate::SourceKind), SeqCheckpoint> = HashMap::new();
    let mut changed: Vec<SeqCheckpoint> = Vec::new();
    let mut retry_at = Instant::now();
    let mut paused = false;
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        // Holding all it may: the queue is left to fill (at shutdown it
        // is taken whatever: the receivers must not wait for ever).
        let full = seg.is_holding() && seg.pending_bytes() as u64 >= cfg.hold_bytes && !stopping;
        if full != paused {
            paused = full;
            shared.note_held(&seg, paused);
            if paused {
                tracing::warn!(
                    held_bytes = seg.pending_bytes(),
                    "collector.segment.hold_bytes reached: the sockets are not read until \
                     the disk has room; what the exporters send meanwhile is dropped by the \
                     kernel and recorded as gaps"
                );
            }
        }
        let batch = if full {
            std::thread::sleep(TICK_INTERVAL);
            None
        } else {
            match rx.recv_timeout(TICK_INTERVAL) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        if let Some(b) = batch {
            changed.clear();
            for cp in &b.checkpoint {
                let key = (cp.exporter, cp.domain, cp.kind);
                match written.get(&key) {
                    Some(old) if old == cp || old.last_arrival_ms > cp.last_arrival_ms => {}
                    _ => {
                        changed.push(cp.clone());
                        written.insert(key, cp.clone());
                    }
                }
            }
            if let Err(e) = seg.append_encoded(&b.flows, &b.losses, &changed) {
                retry_at = held(&mut seg, e, shared)?;
            }
            for l in &b.losses {
                tracing::warn!(
                    exporter = %l.exporter, domain = l.domain, reason = l.reason.as_str(),
                    count = l.count, unit = l.unit.as_str(), "export stream loss recorded"
                );
            }
            shared.give_back(b);
            if seg.is_holding() {
                shared.note_held(&seg, paused);
            }
        }
        if seg.is_holding() && Instant::now() >= retry_at {
            match seg.write_held() {
                Ok(()) => shared.written_again(),
                Err(e) => {
                    retry_at = held(&mut seg, e, shared)?;
                }
            }
        }
        published.publish(&seg, w);
        if seg.is_holding() {
            continue;
        }
        if seg.sync_if_due(Instant::now())? {
            w.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let due =
            seg.len_bytes() >= cfg.rotate_size_bytes || opened.elapsed() >= cfg.rotate_interval;
        if due && Instant::now() >= retry_at {
            // The next segment first: a disk without room for it leaves
            // the open one open (tried again in a second).
            let next = match SegmentWriter::create(
                store.dir(),
                &name,
                seg.segment_id() + 1,
                now_ms(),
                opts,
            ) {
                Ok(next) => next,
                Err(e) if e.is_no_space() => {
                    shared.failed(&e);
                    retry_at = Instant::now() + HELD_RETRY;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let closed = std::mem::replace(&mut seg, next).close(now_ms())?;
            w.segments_closed.fetch_add(1, Ordering::Relaxed);
            w.fsyncs.fetch_add(1, Ordering::Relaxed);
            tracing::info!(segment = %closed.display(), "segment closed");
            published = Published::of(&seg);
            let all: Vec<SeqCheckpoint> = written.values().cloned().collect();
            if let Err(e) = seg.append_checkpoint(&all) {
                retry_at = held(&mut seg, e, shared)?;
            }
            *shared.open_segment.lock().expect("poisoned") = seg.path().display().to_string();
            opened = Instant::now();
            if !seg.is_holding() {
                shared.written_again();
            }
        }
    }
    let held_bytes = seg.pending_bytes();
    let closed = seg.close(now_ms()).inspect_err(|e| {
        tracing::error!(
            error = %e, held_bytes,
            "the blocks held in memory could not be written before the stop: \
             the flows in them are a gap at the next start"
        )
    })?;
    w.segments_closed.fetch_add(1, Ordering::Relaxed);
    *shared.open_segment.lock().expect("poisoned") = String::new();
    tracing::info!(segment = %closed.display(), "segment closed at shutdown");
    Ok(())
}

/// A write of `seg` failed with `e`: a disk without room makes it hold
/// (noted for the stats and the log) and returns when to try again; any
/// other error is returned.
fn held(
    seg: &mut SegmentWriter,
    e: SegmentError,
    shared: &Shared,
) -> Result<Instant, SegmentError> {
    if !e.is_no_space() {
        return Err(e);
    }
    seg.hold();
    if shared.failed(&e) == 1 {
        tracing::error!(
            error = %e,
            "tier 1 cannot be written: holding the blocks in memory \
             (collector.segment.hold_bytes) and writing them as soon as the disk has room"
        );
    }
    Ok(Instant::now() + HELD_RETRY)
}

/// Kernel drops of our UDP sockets (receive buffer overruns), from
/// /proc/net/udp{,6}: the last column of each socket's line.
fn udp_socket_drops(addrs: &[SocketAddr]) -> u64 {
    let mut total = 0;
    for (file, v6) in [("/proc/net/udp", false), ("/proc/net/udp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(drops)) = (cols.get(1), cols.last()) else {
                continue;
            };
            let Some(port) = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if addrs.iter().any(|a| a.port() == port && a.is_ipv6() == v6) {
                total += drops.parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// Runs the collector daemon until SIGTERM/SIGINT: READY to systemd once
/// receiving, SIGHUP reloads the exporter list from `config_path`, the stats
/// file is rewritten every `stats_interval`, STOPPING then a clean seal.
pub fn serve(config_path: &Path) -> Result<(), CollectorError> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = Config::load(config_path)?;
    let interval = config.collector.stats_interval;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CollectorError::Io {
            what: "tokio runtime".into(),
            source,
        })?;
    rt.block_on(async move {
        let sig = |k| {
            signal(k).map_err(|source| CollectorError::Io {
                what: "signal handler".into(),
                source,
            })
        };
        let (mut term, mut int, mut hup) = (
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
            sig(SignalKind::hangup())?,
        );
        let mut collector = Collector::start(config)?;
        collector.write_stats_file()?;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let mut tick = tokio::time::interval(interval);
        // systemd's watchdog (WatchdogSec=30 in the unit) hears from us on
        // its own clock, whatever stats_interval_ms says.
        let mut watchdog = tokio::time::interval(WATCHDOG_PING);
        let mut failure = None;
        let mut stats_unwritten = false;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
                _ = hup.recv() => match Config::load(config_path) {
                    Ok(c) => collector.reload(c),
                    Err(e) => tracing::error!(error = %e, "reload failed; the old exporter list stays"),
                },
                _ = tick.tick() => match collector.write_stats_file() {
                    Ok(_) => stats_unwritten = false,
                    // Said once, not every interval (a full disk).
                    Err(e) if !stats_unwritten => {
                        tracing::error!(error = %e, "cannot write the stats file");
                        stats_unwritten = true;
                    }
                    Err(_) => {}
                },
                _ = watchdog.tick() => {
                    if !collector.is_healthy() {
                        failure = Some(CollectorError::Thread("a collector thread stopped".into()));
                        break;
                    }
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let stats = collector.shutdown()?;
        tracing::info!(
            flows = stats.flows_written,
            loss_records = stats.loss_records_written,
            "collector stopped"
        );
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

#[cfg(test)]
mod coalesce_tests {
    use super::*;

    #[test]
    fn naps_scale_with_the_granted_buffer() {
        assert_eq!(coalesce_for(0), Duration::from_millis(1));
        assert_eq!(coalesce_for(212_992), Duration::from_millis(1));
        assert_eq!(coalesce_for(4 << 20), Duration::from_millis(2));
        assert_eq!(coalesce_for(8 << 20), RECV_COALESCE_MAX);
        assert_eq!(coalesce_for(64 << 20), RECV_COALESCE_MAX);
    }

    /// Naps grow while little arrives, shrink when much does, stay inside
    /// 1 ms and the cap the buffer allows, and start over after a wait.
    #[test]
    fn naps_follow_the_rate() {
        let granted = 8 << 20;
        let mut n = Naps::new(granted);
        assert_eq!(n.nap, Duration::from_millis(4));
        // 0.5 M flows/s: ~39 MB/s of buffer, 1,364-byte datagrams.
        let per_ms = 39_000 / (1_364 + SKB_OVERHEAD_BYTES);
        let mut seen = Vec::new();
        for _ in 0..6 {
            let nap = n.next();
            seen.push(nap.as_millis());
            for _ in 0..per_ms * nap.as_millis() as usize {
                n.took(1_364);
            }
        }
        assert_eq!(seen, [8, 16, 16, 16, 16, 16]);
        // 5 M flows/s: ten times as much (6 MB in 16 ms of the 8 MiB);
        // halves until under 1/8.
        let mut seen = Vec::new();
        for _ in 0..4 {
            for _ in 0..10 * per_ms * n.nap.as_millis() as usize {
                n.took(1_364);
            }
            seen.push(n.next().as_millis());
        }
        assert_eq!(seen, [8, 4, 2, 2]);
        // Idle: back to the cap; a restart goes back to the start.
        for _ in 0..8 {
            n.next();
        }
        assert_eq!(n.nap, RECV_NAP_MAX);
        n.restart();
        assert_eq!(n.nap, Duration::from_millis(4));
        // The kernel's default buffer: 1 ms, never more.
        let mut small = Naps::new(212_992);
        assert_eq!(
            (small.next(), small.next()),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
        // A burst never shortens a nap below 1 ms.
        let mut n = Naps::new(granted);
        for _ in 0..10 {
            n.took(65_535);
        }
        for _ in 0..5 {
            n.took(1 << 20);
            n.next();
        }
        assert_eq!(n.nap, Duration::from_millis(1));
    }
}

#[cfg(test)]
mod feed_tests {
    use super::*;
    use crate::decode::testpkt::{Flow, V5};
    use crate::record::SourceKind;
    use crate::segment::{FORMAT_VERSION, FlowColumns, decode_columns};

    /// Records waiting in the feed, then a v5 datagram's (encoded straight
    /// from the datagram), then more: the blocks hold them in that order,
    /// split at `block_records`, equal to what the decoder builds.
    #[test]
    fn v5_rows_keep_their_place_among_built_ones() {
        let exporter: IpAddr = "192.0.2.9".parse().unwrap();
        let now = 1_700_000_100_000;
        let mut flows: Vec<Flow> = (0..30).map(Flow::v4).collect();
        // A broken exporter: last packet before the first.
        flows[4].last_uptime_ms = flows[4].first_uptime_ms - 1;
        let datagram = V5::new(0).build(&flows);
        let built = |i: u32| FlowRecord {
            exporter,
            src_port: i as u16,
            ..FlowRecord::empty(SourceKind::NetflowV9)
        };

        let mut expected: Vec<FlowRecord> = (0..3).map(built).collect();
        let mut oracle = Decoder::new(DecodeLimits::default());
        let mut losses = Vec::new();
        oracle
            .decode(
                exporter,
                now,
                ExporterOpts::default(),
                &datagram,
                &mut expected,
                &mut losses,
            )
            .unwrap();
        expected.push(built(3));
        assert_eq!(expected[3 + 4].last_ms, expected[3 + 4].first_ms);

        let mut decoder = Decoder::new(DecodeLimits::default());
        let mut feed = BlockFeed::new(7);
        let mut batch = Batch::default();
        let mut sink = FeedSink {
            feed: &mut feed,
            flows: &mut batch.flows,
        };
        sink.records().extend((0..3).map(built));
        let n = decoder
            .decode(
                exporter,
                now,
                ExporterOpts::default(),
                &datagram,
                &mut sink,
                &mut batch.losses,
            )
            .unwrap();
        assert_eq!(n, 30);
        sink.records().push(built(3));
        feed.seal(&mut batch);
        assert_eq!(decoder.stats().records_time_inverted, 1);
        assert_eq!(oracle.stats().records_time_inverted, 1);

        let mut got = Vec::new();
        let mut cols = FlowColumns::default();
        let mut sizes = Vec::new();
        for (block, payload) in batch.flows.iter() {
            decode_columns(payload, block.count as usize, FORMAT_VERSION, &mut cols).unwrap();
            cols.append_records(&mut got);
            sizes.push(block.count);
        }
        assert_eq!(sizes, [7, 7, 7, 7, 6]);
        assert_eq!(got, expected);
    }
}
