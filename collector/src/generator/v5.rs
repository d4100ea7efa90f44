//! Cisco NetFlow v5: fixed 24-byte header, fixed 48-byte IPv4 records.

use std::net::IpAddr;

use super::{
    DEFAULT_BOOT_MS, DatagramBatch, Encoder, GenError, StreamState, clamp_time, family_of, sat_u16,
    sat_u32, stream_hooks, tcp_flags_of,
};
use crate::record::{FlowDirection, FlowRecord, SourceKind};

/// The format's limit (and the default): 24 + 30 × 48 = 1464 bytes.
pub const V5_MAX_FLOWS_PER_DATAGRAM: u16 = 30;
const HEADER_BYTES: usize = 24;
const RECORD_BYTES: usize = 48;
/// Largest interval the 14-bit header field holds.
const MAX_SAMPLING_INTERVAL: u16 = 0x3fff;
/// Sampling mode bits (top two of the field): 01 = 1-in-N packet interval.
const SAMPLING_MODE_INTERVAL: u16 = 0x4000;
const NAME: &str = "netflow v5";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V5Config {
    pub engine_type: u8,
    pub engine_id: u8,
    /// When the exporter booted, ms since the epoch (UTC): `sys_uptime` and
    /// the records' first/last count from here.
    pub boot_ms: i64,
    /// 1 = unsampled; 2..=16383 is written to the header as 1-in-N.
    pub sampling_interval: u16,
    /// 1..=30.
    pub max_flows_per_datagram: u16,
}

impl Default for V5Config {
    fn default() -> V5Config {
        V5Config {
            engine_type: 0,
            engine_id: 0,
            boot_ms: DEFAULT_BOOT_MS,
            sampling_interval: 1,
            max_flows_per_datagram: V5_MAX_FLOWS_PER_DATAGRAM,
        }
    }
}

/// Writes NetFlow v5 datagrams. `flow_sequence` counts flows emitted *and*
/// skipped before the datagram. IPv6 flows cannot be carried: they are left
/// out and counted in [`EncoderStats::flows_unrepresentable`](super::EncoderStats).
#[derive(Debug, Clone)]
pub struct V5Encoder {
    config: V5Config,
    flow_sequence: u32,
    stream: StreamState,
}

impl V5Encoder {
    pub fn new(config: V5Config) -> Result<V5Encoder, GenError> {
        if config.sampling_interval == 0 || config.sampling_interval > MAX_SAMPLING_INTERVAL {
            return Err(GenError::config(
                NAME,
                "sampling_interval",
                format!("must be 1..={MAX_SAMPLING_INTERVAL}"),
            ));
        }
        if config.max_flows_per_datagram == 0
            || config.max_flows_per_datagram > V5_MAX_FLOWS_PER_DATAGRAM
        {
            return Err(GenError::config(
                NAME,
                "max_flows_per_datagram",
                format!("must be 1..={V5_MAX_FLOWS_PER_DATAGRAM}"),
            ));
        }
        Ok(V5Encoder {
            config,
            flow_sequence: 0,
            stream: StreamState::default(),
        })
    }

    pub fn config(&self) -> &V5Config {
        &self.config
    }

    fn sampling_field(&self) -> u16 {
        match self.config.sampling_interval {
            0 | 1 => 0,
            n => SAMPLING_MODE_INTERVAL | n,
        }
    }

    /// The 24-byte header with count 0 and sequence 0, patched per datagram.
    fn header(&self, export_time_ms: i64) -> Result<[u8; HEADER_BYTES], GenError> {
        let err = |problem| GenError::ExportTime {
            encoder: NAME,
            export_time_ms,
            problem,
        };
        if export_time_ms < self.config.boot_ms {
            return Err(err("before the exporter booted (boot_ms)"));
        }
        let unix_secs = u32::try_from(export_time_ms.div_euclid(1000))
            .map_err(|_| err("outside unix_secs (u32 seconds since 1970)"))?;
        let unix_nsecs = (export_time_ms.rem_euclid(1000) as u32) * 1_000_000;
        let uptime_ms = export_time_ms.wrapping_sub(self.config.boot_ms) as u32;
        let mut h = [0u8; HEADER_BYTES];
        h[0..2].copy_from_slice(&5u16.to_be_bytes());
        h[4..8].copy_from_slice(&uptime_ms.to_be_bytes());
        h[8..12].copy_from_slice(&unix_secs.to_be_bytes());
        h[12..16].copy_from_slice(&unix_nsecs.to_be_bytes());
        h[20] = self.config.engine_type;
        h[21] = self.config.engine_id;
        h[22..24].copy_from_slice(&self.sampling_field().to_be_bytes());
        Ok(h)
    }

    fn finish(&mut self, out: &mut DatagramBatch, start: usize, flows: u16) {
        let seq = self.flow_sequence;
        let buf = out.buf();
        buf[start + 2..start + 4].copy_from_slice(&flows.to_be_bytes());
        buf[start + 16..start + 20].copy_from_slice(&seq.to_be_bytes());
        self.flow_sequence = seq.wrapping_add(u32::from(flows));
        self.stream.finish(out, start, u32::from(flows), seq, false);
    }
}

impl Encoder for V5Encoder {
    fn kind(&self) -> SourceKind {
        SourceKind::NetflowV5
    }

    fn domain(&self) -> u32 {
        u32::from(self.config.engine_type) << 8 | u32::from(self.config.engine_id)
    }

    fn max_flows_per_datagram(&self) -> usize {
        usize::from(self.config.max_flows_per_datagram)
    }

    fn encode_into(
        &mut self,
        flows: &[FlowRecord],
        export_time_ms: i64,
        out: &mut DatagramBatch,
    ) -> Result<(), GenError> {
        let header = self.header(export_time_ms)?;
        let boot_ms = self.config.boot_ms;
        // Times the 32-bit uptime difference can express exactly.
        let lo_ms = export_time_ms.saturating_sub(i64::from(u32::MAX));
        let max_flows = self.config.max_flows_per_datagram;
        let mut open: Option<(usize, u16)> = None;
        let mut clamped = 0u64;
        out.buf().reserve(
            (flows.len() / usize::from(max_flows) + 1) * HEADER_BYTES + flows.len() * RECORD_BYTES,
        );
        for f in flows {
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (f.src, f.dst) else {
                self.stream.stats.flows_unrepresentable += 1;
                continue;
            };
            let (start, count) = match open {
                Some((start, count)) if count < max_flows => (start, count),
                full => {
                    if let Some((start, count)) = full {
                        self.finish(out, start, count);
                    }
                    let start = out.buf().len();
                    out.buf().extend_from_slice(&header);
                    (start, 0)
                }
            };
            let first_ms = clamp_time(f.first_ms, lo_ms, export_time_ms, &mut clamped);
            let last_ms = clamp_time(f.last_ms, lo_ms, export_time_ms, &mut clamped);
            let mut r = [0u8; RECORD_BYTES];
            r[0..4].copy_from_slice(&src.octets());
            r[4..8].copy_from_slice(&dst.octets());
            // 8..12 next hop: 0.0.0.0
            r[12..14].copy_from_slice(&sat_u16(f.in_if, &mut clamped).to_be_bytes());
            r[14..16].copy_from_slice(&sat_u16(f.out_if, &mut clamped).to_be_bytes());
            r[16..20].copy_from_slice(&sat_u32(f.packets_raw, &mut clamped).to_be_bytes());
            r[20..24].copy_from_slice(&sat_u32(f.bytes_raw, &mut clamped).to_be_bytes());
            r[24..28].copy_from_slice(&(first_ms.wrapping_sub(boot_ms) as u32).to_be_bytes());
            r[28..32].copy_from_slice(&(last_ms.wrapping_sub(boot_ms) as u32).to_be_bytes());
            r[32..34].copy_from_slice(&f.src_port.to_be_bytes());
            r[34..36].copy_from_slice(&f.dst_port.to_be_bytes());
            // 36 pad1
            r[37] = tcp_flags_of(f);
            r[38] = f.protocol;
            // 39 tos, 40..44 src/dst AS, 44/45 masks, 46..48 pad2: 0
            out.buf().extend_from_slice(&r);
            open = Some((start, count + 1));
        }
        if let Some((start, count)) = open {
            self.finish(out, start, count);
        }
        self.stream.stats.values_clamped += clamped;
        Ok(())
    }

    fn expected(&self, flow: &FlowRecord, exporter: IpAddr) -> Option<FlowRecord> {
        if family_of(flow) != Some(false) {
            return None;
        }
        let mut ignored = 0;
        Some(FlowRecord {
            exporter,
            domain: self.domain(),
            kind: SourceKind::NetflowV5,
            direction: FlowDirection::Unknown,
            in_if: u32::from(sat_u16(flow.in_if, &mut ignored)),
            out_if: u32::from(sat_u16(flow.out_if, &mut ignored)),
            bytes_raw: u64::from(sat_u32(flow.bytes_raw, &mut ignored)),
            packets_raw: u64::from(sat_u32(flow.packets_raw, &mut ignored)),
            sampling: u32::from(self.config.sampling_interval.max(1)),
            ..*flow
        })
    }

    fn restart(&mut self, boot_ms: i64) {
        self.config.boot_ms = boot_ms;
        self.flow_sequence = 0;
    }

    stream_hooks!(stream);
}
