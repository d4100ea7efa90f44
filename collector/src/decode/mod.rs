//! Decoder of NetFlow v5, NetFlow v9 and IPFIX export datagrams.
//!
//! Role: turn one UDP payload from an allowed exporter into uniform
//! [`FlowRecord`]s, and the holes in each export stream into
//! [`LossRecord`]s. Library code only: no sockets, no clock (the caller
//! passes `now_ms`), no threads.
//!
//! ```text
//!  datagram ─► version ─► v5: validate count/length ─► fixed offsets ─► records
//!                      └► v9 / IPFIX: header ─► set structure check (all or nothing)
//!                           ├► template sets ─► validate ─► compile Plan (once)
//!                           ├► data sets ─► Plan over each record ─► records
//!                           │      └► template unknown: hold the set (bounded, timed)
//!                           └► sequence tracking per (exporter, domain, kind) ─► gaps
//!  tick(now) ─► final gaps, expired held sets ─► LossRecords
//! ```
//!
//! Templates are scoped per exporter address, protocol and source id /
//! observation domain: the same template id from two routers or two
//! domains never collides. Every cache is capped ([`DecodeLimits`]): over a
//! cap, new things are refused and counted while existing ones keep
//! working.
//!
//! Inputs: datagram bytes, exporter address, arrival time, an optional
//! configured sampling rate. Outputs: records appended to the caller's
//! vectors, counters in [`DecodeStats`].
//!
//! Never: panics, loops or allocates without bound on any input (NetFlow
//! input is hostile, see the guide's RELIABILITY.md); decodes a datagram
//! it recognised as a duplicate; drops anything without counting why.

mod error;
mod plan;
mod sequence;
mod stats;
mod template;
mod templated;
mod v5;
mod wire;

#[cfg(test)]
mod fuzz_seeds;
#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
pub(crate) mod testpkt;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::mem::FastMap;

pub use error::{DecodeError, LimitScope, TemplateProblem};
pub use stats::{DecodeStats, DropCounts, TemplateRejectCounts};

use plan::{FieldSpec, Plan, StreamOptions};
use sequence::SeqTracker;
pub use sequence::{SeqCheckpoint, SeqConvention};
pub use v5::V5Rows;

use crate::record::{FlowRecord, LossReason, LossRecord, LossUnit, SourceKind};

/// Default of [`DecodeLimits::max_templates_per_exporter`].
pub const DEFAULT_MAX_TEMPLATES_PER_EXPORTER: usize = 512;
/// Default of [`DecodeLimits::max_templates_total`].
pub const DEFAULT_MAX_TEMPLATES_TOTAL: usize = 65_536;
/// Default of [`DecodeLimits::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 16_384;
/// Default of [`DecodeLimits::max_fields_per_template`].
pub const DEFAULT_MAX_FIELDS_PER_TEMPLATE: usize = 128;
/// Default of [`DecodeLimits::pending_hold_ms`].
pub const DEFAULT_PENDING_HOLD_MS: i64 = 5_000;
/// Default of [`DecodeLimits::max_pending_bytes_per_exporter`].
pub const DEFAULT_MAX_PENDING_BYTES_PER_EXPORTER: usize = 256 * 1024;
/// Default of [`DecodeLimits::max_pending_bytes_total`].
pub const DEFAULT_MAX_PENDING_BYTES_TOTAL: usize = 32 * 1024 * 1024;
/// Default of [`DecodeLimits::gap_hold_ms`].
pub const DEFAULT_GAP_HOLD_MS: i64 = 2_000;

/// Bookkeeping charged per held set on top of its bytes, so that many tiny
/// sets cannot exhaust memory under the byte limits.
pub const HELD_SET_OVERHEAD_BYTES: usize = 64;
/// With all stream slots taken, every stream idle this long is evicted to
/// make room (its pending gaps become loss records; if it comes back, its
/// templates are learned again). Exporters that start new export streams
/// all the time (new source ids) must not end with every new stream refused.
pub const STREAM_IDLE_EVICT_MS: i64 = 60 * 1000;
/// When no stream is that idle, the least recently seen streams are
/// evicted instead, this share of the cap at once (one scan serves the next
/// `max_streams / STREAM_EVICT_FRACTION` new streams): a new export stream
/// is never refused. A stream evicted while still alive comes back as a new
/// stream and relearns its templates.
pub const STREAM_EVICT_FRACTION: usize = 8;

/// Caps on everything the decoder keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Templates of one exporter address, all domains and protocols.
    pub max_templates_per_exporter: usize,
    /// Templates of all exporters.
    pub max_templates_total: usize,
    /// Export streams (exporter, protocol, domain).
    pub max_streams: usize,
    /// Fields (scope fields included) of one template.
    pub max_fields_per_template: usize,
    /// How long data sets wait for their template.
    pub pending_hold_ms: i64,
    pub max_pending_bytes_per_exporter: usize,
    pub max_pending_bytes_total: usize,
    /// Reorder window: how long a sequence gap may still be filled by late
    /// datagrams before it becomes a loss record.
    pub gap_hold_ms: i64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_templates_per_exporter: DEFAULT_MAX_TEMPLATES_PER_EXPORTER,
            max_templates_total: DEFAULT_MAX_TEMPLATES_TOTAL,
            max_streams: DEFAULT_MAX_STREAMS,
            max_fields_per_template: DEFAULT_MAX_FIELDS_PER_TEMPLATE,
            pending_hold_ms: DEFAULT_PENDING_HOLD_MS,
            max_pending_bytes_per_exporter: DEFAULT_MAX_PENDING_BYTES_PER_EXPORTER,
            max_pending_bytes_total: DEFAULT_MAX_PENDING_BYTES_TOTAL,
            gap_hold_ms: DEFAULT_GAP_HOLD_MS,
        }
    }
}

/// One export stream inside an exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StreamKey {
    pub kind: SourceKind,
    pub domain: u32,
}

/// A data set waiting for its template.
#[derive(Debug)]
struct HeldSet {
    template_id: u16,
    seq: u32,
    arrival_ms: i64,
    export_ms: i64,
    /// Added to every time of the set ([`ExporterOpts::arrival_clock`]).
    shift_ms: i64,
    sys_uptime_ms: Option<u32>,
    sampling_override: Option<u32>,
    bytes: Box<[u8]>,
}

impl HeldSet {
    fn charge_bytes(&self) -> usize {
        self.bytes.len() + HELD_SET_OVERHEAD_BYTES
    }
}

#[derive(Debug)]
pub(crate) struct Stream {
    seq: SeqTracker,
    templates: FastMap<u16, Plan>,
    opts: StreamOptions,
    held: VecDeque<HeldSet>,
    last_seen_ms: i64,
}

#[derive(Debug, Default)]
pub(crate) struct ExporterState {
    streams: FastMap<StreamKey, Stream>,
    /// Templates of all streams of this exporter.
    template_count: usize,
    /// Charged bytes of held sets of all streams of this exporter.
    pending_bytes: usize,
    /// Arrival minus export time of its last datagram: how far the
    /// exporter's clock is behind the collector's (negative: ahead).
    clock_skew_ms: i64,
}

/// What the configuration says of one exporter, for its datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExporterOpts {
    /// `Some(n)`: the exporter samples 1:n (wins over the export's own
    /// fields).
    pub sampling: Option<u32>,
    /// Read the flows' times by the collector's clock: every time of a
    /// datagram is moved by its arrival minus its export time (config
    /// `clock = "arrival"`).
    pub arrival_clock: bool,
}

/// An exporter clock more than this ahead of the collector's is read by
/// the arrival time whatever the config says: no flow is observed in the
/// future, and its traffic would otherwise land in hours (or years) to
/// come — in a tariff zone, a billing period and under address holders
/// that do not exist yet. Network delay is milliseconds; NTP keeps clocks
/// within far less.
pub const CLOCK_AHEAD_MAX_MS: i64 = 5 * 60_000;

impl ExporterOpts {
    /// Whether the times of a datagram exported at `export_ms` (by the
    /// exporter's clock) and arriving at `now_ms` are read by its arrival:
    /// configured so, or the exporter's clock is more than
    /// [`CLOCK_AHEAD_MAX_MS`] ahead.
    pub fn reads_by_arrival(&self, export_ms: i64, now_ms: i64) -> bool {
        self.arrival_clock || export_ms.saturating_sub(now_ms) > CLOCK_AHEAD_MAX_MS
    }
}

/// The stateful decoder: templates, options, held data and sequence state
/// of every exporter. One per receiving thread.
#[derive(Debug)]
pub struct Decoder {
    limits: DecodeLimits,
    stats: DecodeStats,
    exporters: FastMap<IpAddr, ExporterState>,
    fields_scratch: Vec<FieldSpec>,
    learned_scratch: Vec<u16>,
}

pub(crate) fn stream_in(
    exporters: &mut FastMap<IpAddr, ExporterState>,
    exporter: IpAddr,
    key: StreamKey,
) -> Result<&mut Stream, DecodeError> {
    // ensure_stream() ran before: a miss is a bug, reported, not a panic.
    exporters
        .get_mut(&exporter)
        .and_then(|e| e.streams.get_mut(&key))
        .ok_or(DecodeError::Malformed)
}

/// Where [`Decoder::decode`] puts the flows of a datagram: v9 and IPFIX
/// records are built into [`DecodeSink::records`]; a v5 datagram's records
/// are handed over as a view of the datagram ([`V5Rows`]), which the
/// receivers encode straight into a block's columns. A plain
/// `Vec<FlowRecord>` is a sink that builds every record.
pub trait DecodeSink {
    /// Where built records are appended.
    fn records(&mut self) -> &mut Vec<FlowRecord>;

    /// Takes the records of one v5 datagram, after those appended before.
    fn v5(&mut self, rows: V5Rows<'_>) {
        use crate::record::FlowRows;
        self.records().extend((0..rows.len()).map(|i| rows.row(i)));
    }
}

impl DecodeSink for Vec<FlowRecord> {
    fn records(&mut self) -> &mut Vec<FlowRecord> {
        self
    }
}

impl Decoder {
    pub fn new(limits: DecodeLimits) -> Decoder {
        Decoder {
            limits,
            stats: DecodeStats::default(),
            exporters: FastMap::default(),
            fields_scratch: Vec::new(),
            learned_scratch: Vec::new(),
        }
    }

    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Arrival minus export time of the last datagram decoded from
    /// `exporter` (ms): how far its clock is behind the collector's.
    pub fn clock_skew_ms(&self, exporter: IpAddr) -> Option<i64> {
        self.exporters.get(&exporter).map(|e| e.clock_skew_ms)
    }

    /// Decode one UDP datagram from `exporter`, received at `now_ms` (ms UTC).
    ///
    /// `opts`: what the configuration says of the exporter (sampling,
    /// whose clock). Hands decoded flows to
    /// `flows` ([`DecodeSink`]) and appends finished loss records to
    /// `losses`; returns the number of flows handed over, which includes
    /// flows of earlier held data sets whose template arrived in this
    /// datagram.
    ///
    /// On `Err` the datagram was dropped whole and counted in
    /// [`DecodeStats::dropped`]; nothing was handed to `flows`, and the
    /// stream's sequence state is untouched (so the loss shows as a gap).
    pub fn decode(
        &mut self,
        exporter: IpAddr,
        now_ms: i64,
        opts: ExporterOpts,
        datagram: &[u8],
        flows: &mut impl DecodeSink,
        losses: &mut Vec<LossRecord>,
    ) -> Result<usize, DecodeError> {
        let result = match wire::be16(datagram, 0) {
            None => Err(DecodeError::Truncated),
            Some(5) => self.decode_v5(exporter, now_ms, opts, datagram, flows, losses),
            Some(9) => self.decode_templated(
                SourceKind::NetflowV9,
                exporter,
                now_ms,
                opts,
                datagram,
                flows.records(),
                losses,
            ),
            Some(10) => self.decode_templated(
                SourceKind::Ipfix,
                exporter,
                now_ms,
                opts,
                datagram,
                flows.records(),
                losses,
            ),
            Some(v) => Err(DecodeError::WrongVersion(v)),
        };
        if let Err(e) = &result {
            self.stats.count_drop(e);
        }
        result
    }

    /// Called periodically (every ~100 ms) with the clock: finalizes held
    /// gaps and expires held template-less data (emitting
    /// [`LossReason::NoTemplate`] loss records counting the dropped sets).
    pub fn tick(&mut self, now_ms: i64, losses: &mut Vec<LossRecord>) {
        let Decoder {
            limits,
            stats,
            exporters,
            ..
        } = self;
        for (ip, exp) in exporters.iter_mut() {
            for (key, stream) in exp.streams.iter_mut() {
                stream.seq.tick(now_ms, limits.gap_hold_ms, losses, stats);
                if stream.held.is_empty() {
                    continue;
                }
                let mut expired: Option<(u64, &HeldSet, &HeldSet)> = None;
                let mut released = 0usize;
                let mut released_raw = 0u64;
                for h in stream.held.iter() {
                    if now_ms.saturating_sub(h.arrival_ms) >= limits.pending_hold_ms {
                        released += h.charge_bytes();
                        released_raw += h.bytes.len() as u64;
                        expired = Some(match expired {
                            None => (1, h, h),
                            Some((n, first, _)) => (n + 1, first, h),
                        });
                    }
                }
                let Some((count, first, last)) = expired else {
                    continue;
                };
                losses.push(LossRecord {
                    exporter: *ip,
                    domain: key.domain,
                    kind: key.kind,
                    reason: LossReason::NoTemplate,
                    unit: LossUnit::Packets,
                    count,
                    from_ms: first.arrival_ms,
                    to_ms: last.arrival_ms,
                    expected_seq: first.seq,
                    received_seq: last.seq,
                });
                stats.held_sets_dropped += count;
                stats.held_bytes_dropped += released_raw;
                stream
                    .held
                    .retain(|h| now_ms.saturating_sub(h.arrival_ms) < limits.pending_hold_ms);
                exp.pending_bytes = exp.pending_bytes.saturating_sub(released);
                stats.pending_bytes_current =
                    stats.pending_bytes_current.saturating_sub(released as u64);
            }
        }
    }

    /// Drop all state of an exporter (it was removed from the allow-list).
    /// Its held sets are counted as dropped; its pending gaps are discarded.
    pub fn forget_exporter(&mut self, exporter: IpAddr) {
        let Some(exp) = self.exporters.remove(&exporter) else {
            return;
        };
        let s = &mut self.stats;
        s.exporters_forgotten += 1;
        s.templates_current = s
            .templates_current
            .saturating_sub(exp.template_count as u64);
        s.pending_bytes_current = s
            .pending_bytes_current
            .saturating_sub(exp.pending_bytes as u64);
        s.streams_current = s.streams_current.saturating_sub(exp.streams.len() as u64);
        for stream in exp.streams.values() {
            s.held_sets_dropped += stream.held.len() as u64;
            s.held_bytes_dropped += stream
                .held
                .iter()
                .map(|h| h.bytes.len() as u64)
                .sum::<u64>();
        }
    }

    /// Makes every pending gap final now (the collector is stopping: no
    /// late datagram can fill it any more).
    pub fn flush_gaps(&mut self, losses: &mut Vec<LossRecord>) {
        let Decoder {
            stats, exporters, ..
        } = self;
        for exp in exporters.values_mut() {
            for stream in exp.streams.values_mut() {
                stream.seq.flush(losses, stats);
            }
        }
    }

    /// Appends the sequence state of every stream whose next sequence
    /// number is known (see [`SeqCheckpoint`]).
    pub fn checkpoint(&self, out: &mut Vec<SeqCheckpoint>) {
        for exp in self.exporters.values() {
            for stream in exp.streams.values() {
                if let Some(cp) = stream.seq.checkpoint() {
                    out.push(cp);
                }
            }
        }
    }

    /// Continues the sequence state persisted by a previous run, so the
    /// first datagram of each stream after a restart is checked against
    /// what was expected before it. Streams over the limit are skipped;
    /// losses of streams evicted to make room go to `losses`.
    pub fn restore(
        &mut self,
        checkpoints: &[SeqCheckpoint],
        now_ms: i64,
        losses: &mut Vec<LossRecord>,
    ) {
        for cp in checkpoints {
            let key = StreamKey {
                kind: cp.kind,
                domain: cp.domain,
            };
            if self
                .ensure_stream(cp.exporter, key, now_ms, losses)
                .is_err()
            {
                continue;
            }
            if let Ok(stream) = stream_in(&mut self.exporters, cp.exporter, key) {
                stream.seq.restore(cp, now_ms);
            }
        }
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Makes sure the stream exists, evicting an idle stream if all slots
    /// are taken.
    fn ensure_stream(
        &mut self,
        exporter: IpAddr,
        key: StreamKey,
        now_ms: i64,
        losses: &mut Vec<LossRecord>,
    ) -> Result<(), DecodeError> {
        if self
            .exporters
            .get(&exporter)
            .is_some_and(|e| e.streams.contains_key(&key))
        {
            return Ok(());
        }
        if self.stats.streams_current >= self.limits.max_streams as u64 {
            self.evict_idle_stream(now_ms, losses)?;
        }
        let stream = Stream {
            seq: SeqTracker::new(exporter, key.domain, key.kind),
            templates: FastMap::default(),
            opts: StreamOptions::default(),
            held: VecDeque::new(),
            last_seen_ms: now_ms,
        };
        self.exporters
            .entry(exporter)
            .or_default()
            .streams
            .insert(key, stream);
        self.stats.streams_current += 1;
        Ok(())
    }

    /// Makes room for a new stream: evicts every stream idle for
    /// [`STREAM_IDLE_EVICT_MS`], or if none is, the least recently seen
    /// `max_streams / STREAM_EVICT_FRACTION` (at least one).
    fn evict_idle_stream(
        &mut self,
        now_ms: i64,
        losses: &mut Vec<LossRecord>,
    ) -> Result<(), DecodeError> {
        let mut all: Vec<(i64, IpAddr, StreamKey)> = self
            .exporters
            .iter()
            .flat_map(|(ip, e)| {
                e.streams
                    .iter()
                    .map(move |(k, s)| (s.last_seen_ms, *ip, *k))
            })
            .collect();
        if all.is_empty() {
            return Err(DecodeError::StreamLimit);
        }
        let idle = all
            .iter()
            .filter(|(seen, _, _)| now_ms.saturating_sub(*seen) >= STREAM_IDLE_EVICT_MS)
            .count();
        let n = if idle > 0 {
            idle
        } else {
            (self.limits.max_streams / STREAM_EVICT_FRACTION).clamp(1, all.len())
        };
        if n < all.len() {
            all.select_nth_unstable_by_key(n, |(seen, _, _)| *seen);
        }
        for &(_, ip, key) in &all[..n] {
            self.remove_stream(ip, key, losses);
        }
        Ok(())
    }

    /// Removes one stream, emitting its pending gaps and held sets as losses.
    fn remove_stream(&mut self, ip: IpAddr, key: StreamKey, losses: &mut Vec<LossRecord>) {
        let Some(exp) = self.exporters.get_mut(&ip) else {
            return;
        };
        let Some(mut stream) = exp.streams.remove(&key) else {
            return;
        };
        let s = &mut self.stats;
        stream.seq.flush(losses, s);
        let templates = stream.templates.len();
        exp.template_count = exp.template_count.saturating_sub(templates);
        s.templates_current = s.templates_current.saturating_sub(templates as u64);
        s.templates_evicted += templates as u64;
        let charged: usize = stream.held.iter().map(HeldSet::charge_bytes).sum();
        exp.pending_bytes = exp.pending_bytes.saturating_sub(charged);
        s.pending_bytes_current = s.pending_bytes_current.saturating_sub(charged as u64);
        if let (Some(first), Some(last)) = (stream.held.front(), stream.held.back()) {
            let n = stream.held.len() as u64;
            s.held_sets_dropped += n;
            s.held_bytes_dropped += stream
                .held
                .iter()
                .map(|h| h.bytes.len() as u64)
                .sum::<u64>();
            losses.push(LossRecord {
                exporter: ip,
                domain: key.domain,
                kind: key.kind,
                reason: LossReason::NoTemplate,
                unit: LossUnit::Packets,
                count: n,
                from_ms: first.arrival_ms,
                to_ms: last.arrival_ms,
                expected_seq: first.seq,
                received_seq: last.seq,
            });
        }
        s.streams_current = s.streams_current.saturating_sub(1);
        s.streams_evicted += 1;
        if exp.streams.is_empty() {
            self.exporters.remove(&ip);
        }
    }
}
