//! Deterministic NetFlow v5 / v9 / IPFIX export generator, for the demo, the
//! tests and the benchmarks. A library: it never opens sockets by itself
//! except in [`send_stream`] / [`send_batch`], which it is handed.
//!
//! Data flow:
//!
//! ```text
//!  FlowGen (seed, GenProfile) ──► FlowRecord* ──► Encoder ──► DatagramBatch
//!     splitmix64, integer-only        (v5 / v9 / IPFIX,          one Vec<u8> +
//!     timestamps advance by           sequence numbers,          offsets, reused
//!     flows_per_s                     templates, sampling)             │
//!                                                                      ▼
//!                                    send_batch / send_stream: paced bursts
//!                                    of sendmmsg(2) (send_to elsewhere)
//! ```
//!
//! * [`FlowGen`]: the same seed and [`GenProfile`] always give the same
//!   flows; the PRNG is written here ([`SplitMix64`]) so no dependency update
//!   can change the stream. All byte math is integer.
//! * Encoders ([`V5Encoder`], [`V9Encoder`], [`IpfixEncoder`], all behind
//!   [`Encoder`]) write real export datagrams (big-endian; Cisco v5,
//!   RFC 3954, RFC 7011) into a reusable [`DatagramBatch`]: one byte buffer
//!   plus offsets, no allocation per datagram once warm, so a benchmark can
//!   pre-encode a whole stream and then only send.
//! * [`encode_stream`] ties the two together: generate N flows, encode
//!   them chunk by chunk with advancing export times.
//! * Test hooks: [`Encoder::skip_datagram`] / [`Encoder::skip_next_datagrams`]
//!   encode a datagram (sequence numbers advance) but do not emit it — a
//!   sequence gap; [`Encoder::restart`] resets sequence numbers and uptime
//!   like a rebooted exporter. [`Encoder::expected`] tells what a correct
//!   collector must decode from a flow.
//!
//! Never: panic on any configuration (bad profiles and configs are
//! [`GenError`]s naming the key), read the wall clock while encoding (export
//! times are arguments), or drop a flow without counting it in
//! [`EncoderStats`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::record::{FlowRecord, SourceKind};

mod flows;
mod ipfix;
mod prng;
mod profile;
mod send;
mod templated;
mod v5;
mod v9;

#[cfg(test)]
mod tests;

pub use flows::{FlowGen, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
pub use ipfix::{
    IPFIX_DEFAULT_MAX_FLOWS_PER_MESSAGE, IPFIX_DEFAULT_TEMPLATE_RESEND_EVERY_MESSAGES, IpfixConfig,
    IpfixEncoder,
};
pub use prng::SplitMix64;
pub use profile::{
    DEFAULT_FLOWS_PER_S, DEFAULT_IPV6_SHARE_PERCENT, DEFAULT_MAX_FLOW_DURATION_MS,
    DEFAULT_START_MS, DEFAULT_SUBSCRIBERS, DEFAULT_UPLOAD_SHARE_PERCENT, GenProfile,
    MAX_FLOW_DURATION_MS, MAX_FLOWS_PER_S, MAX_START_MS, MAX_SUBSCRIBERS, MAX_TABLE_LEN, Prefix,
    RemoteKind, RemoteNet,
};
pub use send::{MAX_BURST_DATAGRAMS, SendReport, send_batch, send_stream};
pub use templated::{IfIndexWidth, TemplateField};
pub use v5::{V5_MAX_FLOWS_PER_DATAGRAM, V5Config, V5Encoder};
pub use v9::{
    V9_DEFAULT_MAX_FLOWS_PER_DATAGRAM, V9_DEFAULT_TEMPLATE_RESEND_EVERY_DATAGRAMS, V9Config,
    V9Encoder,
};

/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM_BYTES: u16 = 65_507;
/// Default datagram size limit: a 1500-byte Ethernet MTU minus IPv4 and UDP
/// headers.
pub const DEFAULT_MAX_DATAGRAM_BYTES: u16 = 1472;
/// Default exporter boot time: one day before [`DEFAULT_START_MS`].
pub const DEFAULT_BOOT_MS: i64 = DEFAULT_START_MS - 86_400_000;
/// Flows [`encode_stream`] hands an encoder per call (one export time each).
pub const ENCODE_STREAM_CHUNK_FLOWS: usize = 1024;

/// Why the generator refused.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("generator profile: {key}: {problem}")]
    Profile { key: &'static str, problem: String },
    #[error("{encoder} encoder config: {key}: {problem}")]
    Config {
        encoder: &'static str,
        key: &'static str,
        problem: String,
    },
    #[error("{encoder} encoder: export time {export_time_ms} ms: {problem}")]
    ExportTime {
        encoder: &'static str,
        export_time_ms: i64,
        problem: &'static str,
    },
}

impl GenError {
    pub(crate) fn profile(key: &'static str, problem: impl Into<String>) -> GenError {
        GenError::Profile {
            key,
            problem: problem.into(),
        }
    }

    pub(crate) fn config(
        encoder: &'static str,
        key: &'static str,
        problem: impl Into<String>,
    ) -> GenError {
        GenError::Config {
            encoder,
            key,
            problem: problem.into(),
        }
    }
}

/// Where one datagram lies in a [`DatagramBatch`] and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramInfo {
    pub offset: usize,
    pub len: usize,
    /// Flow data records in it (not templates, not options records).
    pub flows: u32,
    /// The sequence number in its header.
    pub sequence: u32,
    /// The encoder's running datagram number (skipped ones included), the
    /// number [`Encoder::skip_datagram`] takes.
    pub datagram_index: u64,
}

/// Encoded datagrams, back to back in one buffer. [`clear`](Self::clear)
/// keeps the capacity, so re-encoding into the same batch allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct DatagramBatch {
    bytes: Vec<u8>,
    infos: Vec<DatagramInfo>,
    skipped: Vec<DatagramInfo>,
}

impl DatagramBatch {
    pub fn new() -> DatagramBatch {
        DatagramBatch::default()
    }

    pub fn with_capacity(datagrams: usize, bytes: usize) -> DatagramBatch {
        DatagramBatch {
            bytes: Vec::with_capacity(bytes),
            infos: Vec::with_capacity(datagrams),
            skipped: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.infos.clear();
        self.skipped.clear();
    }

    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Datagram `i`. Panics if `i >= len()`, like slice indexing.
    pub fn get(&self, i: usize) -> &[u8] {
        let d = &self.infos[i];
        &self.bytes[d.offset..d.offset + d.len]
    }

    pub fn infos(&self) -> &[DatagramInfo] {
        &self.infos
    }

    /// Datagrams encoded into this batch but skipped on purpose (test
    /// hook), with `len` 0: what each gap swallowed, in flows and sequence.
    pub fn skipped(&self) -> &[DatagramInfo] {
        &self.skipped
    }

    /// Flows inside the skipped datagrams with these running numbers.
    pub fn skipped_flows(&self, datagram_indexes: &[u64]) -> u64 {
        self.skipped
            .iter()
            .filter(|d| datagram_indexes.contains(&d.datagram_index))
            .map(|d| u64::from(d.flows))
            .sum()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.infos
            .iter()
            .map(|d| &self.bytes[d.offset..d.offset + d.len])
    }

    /// Flow records over all datagrams.
    pub fn total_flows(&self) -> u64 {
        self.infos.iter().map(|d| u64::from(d.flows)).sum()
    }

    /// Bytes over all datagrams (UDP payload).
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Copies every datagram into its own `Vec` (for [`send_stream`]).
    pub fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.iter().map(<[u8]>::to_vec).collect()
    }

    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    fn commit(&mut self, offset: usize, flows: u32, sequence: u32, datagram_index: u64) {
        self.infos.push(DatagramInfo {
            offset,
            len: self.bytes.len() - offset,
            flows,
            sequence,
            datagram_index,
        });
    }
}

/// What an encoder did, cumulatively. Every flow handed to
/// [`Encoder::encode_into`] is in exactly one of `flows_emitted`,
/// `flows_skipped` or `flows_unrepresentable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncoderStats {
    pub datagrams_emitted: u64,
    /// Encoded but not emitted on purpose (test hook): sequence gaps.
    pub datagrams_skipped: u64,
    pub flows_emitted: u64,
    /// Flows inside skipped datagrams.
    pub flows_skipped: u64,
    /// Flows the format cannot carry (IPv6 in v5; mixed-family addresses).
    pub flows_unrepresentable: u64,
    /// Values clamped to fit their field: counters beyond u32 (v5, v9),
    /// interface indexes beyond the field width, times after the export
    /// time or outside the window the format can express (v5/v9: 2^32 ms
    /// before export; IPFIX: before 1970). 0 means every flow went out
    /// exactly.
    pub values_clamped: u64,
    /// Datagrams (emitted or skipped) that carried templates.
    pub template_datagrams: u64,
}

/// Sequence and skip state shared by every encoder.
#[derive(Debug, Clone, Default)]
struct StreamState {
    next_datagram_index: u64,
    skip: BTreeSet<u64>,
    stats: EncoderStats,
}

impl StreamState {
    /// Finishes the datagram that started at `offset`: emits it, or drops
    /// it from `out` when it was chosen for skipping.
    fn finish(
        &mut self,
        out: &mut DatagramBatch,
        offset: usize,
        flows: u32,
        sequence: u32,
        with_templates: bool,
    ) {
        let index = self.next_datagram_index;
        self.next_datagram_index += 1;
        if with_templates {
            self.stats.template_datagrams += 1;
        }
        if !self.skip.is_empty() && self.skip.remove(&index) {
            out.bytes.truncate(offset);
            out.skipped.push(DatagramInfo {
                offset,
                len: 0,
                flows,
                sequence,
                datagram_index: index,
            });
            self.stats.datagrams_skipped += 1;
            self.stats.flows_skipped += u64::from(flows);
        } else {
            out.commit(offset, flows, sequence, index);
            self.stats.datagrams_emitted += 1;
            self.stats.flows_emitted += u64::from(flows);
        }
    }
}

/// An export format writer. Object safe: the demo and the benchmarks pick
/// one at run time.
pub trait Encoder {
    fn kind(&self) -> SourceKind;

    /// v5 `engine_type << 8 | engine_id`, v9 source id, IPFIX observation
    /// domain: [`FlowRecord::domain`] as a collector should record it.
    fn domain(&self) -> u32;

    /// Most flow records one datagram carries (fewer when the size limit
    /// or templates leave less room).
    fn max_flows_per_datagram(&self) -> usize;

    /// Encodes `flows` in order into datagrams appended to `out`, all
    /// stamped with `export_time_ms` (ms since the epoch, UTC; it should
    /// be no earlier than the flows' `last_ms`). Errs only when the export
    /// time itself cannot be expressed; nothing is written then.
    fn encode_into(
        &mut self,
        flows: &[FlowRecord],
        export_time_ms: i64,
        out: &mut DatagramBatch,
    ) -> Result<(), GenError>;

    /// [`encode_into`](Self::encode_into), one `Vec` per datagram.
    fn encode(
        &mut self,
        flows: &[FlowRecord],
        export_time_ms: i64,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), GenError> {
        let mut batch = DatagramBatch::new();
        self.encode_into(flows, export_time_ms, &mut batch)?;
        out.extend(batch.iter().map(<[u8]>::to_vec));
        Ok(())
    }

    /// The record a correct collector decodes from `flow` when it arrives
    /// from `exporter`; `None` if this format cannot carry it. Assumes
    /// nothing was clamped (see [`EncoderStats::values_clamped`]) apart
    /// from the clamping this applies itself (counter and interface widths).
    fn expected(&self, flow: &FlowRecord, exporter: IpAddr) -> Option<FlowRecord>;

    /// Encode the datagram with this running number but do not emit it.
    fn skip_datagram(&mut self, datagram_index: u64);

    /// Skip the next `count` datagrams.
    fn skip_next_datagrams(&mut self, count: u64);

    /// Exporter restart: sequence numbers start over from 0, uptime counts
    /// from `boot_ms`, templates go out again with the next datagram.
    fn restart(&mut self, boot_ms: i64);

    fn stats(&self) -> &EncoderStats;
}

/// The [`Encoder`] methods every encoder implements the same way, over the
/// [`StreamState`] at the given field path (`stream`, `inner.stream`).
macro_rules! stream_hooks {
    ($($path:ident).+) => {
        fn skip_datagram(&mut self, datagram_index: u64) {
            self.$($path).+.skip.insert(datagram_index);
        }

        fn skip_next_datagrams(&mut self, count: u64) {
            let state = &mut self.$($path).+;
            let from = state.next_datagram_index;
            for i in from..from.saturating_add(count) {
                state.skip.insert(i);
            }
        }

        fn stats(&self) -> &$crate::generator::EncoderStats {
            &self.$($path).+.stats
        }
    };
}
pub(crate) use stream_hooks;

/// Generates `flow_count` flows from `flow_gen` and encodes them into `out`,
/// [`ENCODE_STREAM_CHUNK_FLOWS`] at a time, each chunk exported at the end
/// time of its last flow. The generated flows are appended to `keep` when
/// given (tests compare them with what a collector decoded).
pub fn encode_stream(
    flow_gen: &mut FlowGen,
    encoder: &mut dyn Encoder,
    flow_count: u64,
    out: &mut DatagramBatch,
    mut keep: Option<&mut Vec<FlowRecord>>,
) -> Result<(), GenError> {
    let mut chunk = Vec::with_capacity(ENCODE_STREAM_CHUNK_FLOWS);
    let mut left = flow_count;
    while left > 0 {
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(ENCODE_STREAM_CHUNK_FLOWS);
        chunk.clear();
        flow_gen.fill(&mut chunk, n);
        encoder.encode_into(&chunk, flow_gen.now_ms(), out)?;
        if let Some(keep) = keep.as_deref_mut() {
            keep.extend_from_slice(&chunk);
        }
        left -= n as u64;
    }
    Ok(())
}

/// TCP flags an exporter would report for `flow`: a lone SYN for
/// one-packet flows, SYN|ACK|PSH|FIN otherwise; 0 for other protocols.
pub fn tcp_flags_of(flow: &FlowRecord) -> u8 {
    match (flow.protocol, flow.packets_raw) {
        (PROTO_TCP, 0..=1) => 0x02,
        (PROTO_TCP, _) => 0x1b,
        _ => 0,
    }
}

/// Clamps a flow time into `[lo_ms, hi_ms]`, counting when it had to.
fn clamp_time(t_ms: i64, lo_ms: i64, hi_ms: i64, clamped: &mut u64) -> i64 {
    if t_ms < lo_ms {
        *clamped += 1;
        lo_ms
    } else if t_ms > hi_ms {
        *clamped += 1;
        hi_ms
    } else {
        t_ms
    }
}

/// `v` as u32, saturating, counting when it had to.
fn sat_u32(v: u64, clamped: &mut u64) -> u32 {
    u32::try_from(v).unwrap_or_else(|_| {
        *clamped += 1;
        u32::MAX
    })
}

/// `v` as u16, saturating, counting when it had to.
fn sat_u16(v: u32, clamped: &mut u64) -> u16 {
    u16::try_from(v).unwrap_or_else(|_| {
        *clamped += 1;
        u16::MAX
    })
}

/// Both addresses of one family: `Some(true)` IPv6, `Some(false)` IPv4.
fn family_of(flow: &FlowRecord) -> Option<bool> {
    match (flow.src, flow.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Some(false),
        (IpAddr::V6(_), IpAddr::V6(_)) => Some(true),
        _ => None,
    }
}
