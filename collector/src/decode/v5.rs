//! NetFlow v5: fixed 24-byte header and 48-byte records, read at their
//! fixed offsets after the count/length validation. (Through
//! `netflow_parser` this cost 19 instead of ~8 ns per flow: it builds a
//! vector of its own records per datagram; it stays the oracle the tests
//! compare this decoder with, `oracle_tests.rs`.)
//!
//! Inputs: one datagram whose version field is 5.
//! Outputs: [`V5Rows`], a view that gives each record as a [`FlowRecord`]
//! (kind `NetflowV5`, direction unknown) with absolute times computed from
//! the header's export time and uptime, built where it is used: the
//! receivers' block encoder reads the columns straight from the datagram.
//! Never: reads a record past the length the count declares.

use std::net::{IpAddr, Ipv4Addr};

use super::error::DecodeError;
use super::sequence::DupKey;
use super::wire::{be16, be32};
use super::{DecodeSink, Decoder, StreamKey};
use crate::record::{FlowDirection, FlowRecord, FlowRows, SourceKind};

pub(crate) const V5_HEADER_BYTES: usize = 24;
pub(crate) const V5_RECORD_BYTES: usize = 48;
pub(crate) const V5_MAX_COUNT: u16 = 30;
/// The low 14 bits of `sampling_interval` hold the interval.
const V5_SAMPLING_MASK: u16 = 0x3fff;

/// Absolute ms of an uptime stamp, given the export time and the uptime
/// at export. Signed 32-bit difference: the uptime counter wraps after
/// 49.7 days, and a stamp slightly after the export uptime stays close.
pub(crate) fn uptime_to_ms(export_ms: i64, sys_uptime_ms: u32, stamp_ms: u32) -> i64 {
    export_ms - i64::from(sys_uptime_ms.wrapping_sub(stamp_ms) as i32)
}

/// Checks count and length (count 1..=30, length = 24 + 48 × count).
pub(crate) fn validate(datagram: &[u8]) -> Result<u16, DecodeError> {
    if datagram.len() < V5_HEADER_BYTES {
        return Err(DecodeError::Truncated);
    }
    let count = be16(datagram, 2).ok_or(DecodeError::Truncated)?;
    if count == 0 || count > V5_MAX_COUNT {
        return Err(DecodeError::BadCount(count));
    }
    let declared_bytes = V5_HEADER_BYTES + V5_RECORD_BYTES * usize::from(count);
    if datagram.len() != declared_bytes {
        return Err(DecodeError::BadLength {
            declared_bytes,
            actual_bytes: datagram.len(),
        });
    }
    Ok(count)
}

/// The records of one validated v5 datagram, read at their fixed offsets
/// when asked for: the header's values every record needs, and the
/// 48-byte records.
#[derive(Debug, Clone, Copy)]
pub struct V5Rows<'a> {
    records: &'a [[u8; V5_RECORD_BYTES]],
    exporter: IpAddr,
    domain: u32,
    export_ms: i64,
    sys_up_time: u32,
    sampling: u32,
}

impl V5Rows<'_> {
    /// First and last packet times of record `r`; a last before the first
    /// (a broken exporter) is the first.
    #[inline(always)]
    fn times(&self, r: &[u8; V5_RECORD_BYTES]) -> (i64, i64, bool) {
        let u32_at = |at: usize| u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
        let first_ms = uptime_to_ms(self.export_ms, self.sys_up_time, u32_at(24));
        let last_ms = uptime_to_ms(self.export_ms, self.sys_up_time, u32_at(28));
        (first_ms, last_ms.max(first_ms), last_ms < first_ms)
    }

    /// Whether record `r`'s last packet is stamped before its first (what
    /// [`Self::times`] reports), from the uptimes alone: the later stamp is
    /// the one nearer the export uptime.
    #[inline(always)]
    fn inverted(&self, r: &[u8; V5_RECORD_BYTES]) -> bool {
        let back = |at: usize| {
            let stamp = u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
            self.sys_up_time.wrapping_sub(stamp) as i32
        };
        back(28) > back(24)
    }
}

impl FlowRows for V5Rows<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.records.len()
    }

    #[inline(always)]
    fn row(&self, i: usize) -> FlowRecord {
        let r = &self.records[i];
        let u16_at = |at: usize| u16::from_be_bytes([r[at], r[at + 1]]);
        let u32_at = |at: usize| u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
        let (first_ms, last_ms, _) = self.times(r);
        FlowRecord {
            exporter: self.exporter,
            domain: self.domain,
            kind: SourceKind::NetflowV5,
            first_ms,
            last_ms,
            src: IpAddr::V4(Ipv4Addr::from(u32_at(0))),
            dst: IpAddr::V4(Ipv4Addr::from(u32_at(4))),
            src_port: u16_at(32),
            dst_port: u16_at(34),
            protocol: r[38],
            direction: FlowDirection::Unknown,
            in_if: u32::from(u16_at(12)),
            out_if: u32::from(u16_at(14)),
            bytes_raw: u64::from(u32_at(20)),
            packets_raw: u64::from(u32_at(16)),
            sampling: self.sampling,
        }
    }

    #[inline]
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.records.split_at(mid);
        (V5Rows { records: a, ..self }, V5Rows { records: b, ..self })
    }

    #[inline]
    fn one_stream(&self) -> bool {
        true
    }

    #[inline(always)]
    fn v4_pair(&self, i: usize) -> Option<[u32; 2]> {
        let r = &self.records[i];
        let u32_at = |at: usize| u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
        Some([u32_at(0), u32_at(4)])
    }
}

impl Decoder {
    pub(super) fn decode_v5(
        &mut self,
        exporter: IpAddr,
        now_ms: i64,
        opts: super::ExporterOpts,
        datagram: &[u8],
        flows: &mut impl DecodeSink,
        losses: &mut Vec<crate::record::LossRecord>,
    ) -> Result<usize, DecodeError> {
        let count = validate(datagram)?;
        // The header's fields; `validate` checked that the header and
        // `count` records are there.
        let u32_at = |at| be32(datagram, at).ok_or(DecodeError::Truncated);
        let sys_up_time = u32_at(4)?;
        let unix_secs = u32_at(8)?;
        let unix_nsecs = u32_at(12)?;
        let flow_sequence = u32_at(16)?;
        let engines = be16(datagram, 20).ok_or(DecodeError::Truncated)?;
        let sampling_interval = be16(datagram, 22).ok_or(DecodeError::Truncated)?;
        self.stats.datagrams_v5 += 1;

        // engine_type << 8 | engine_id
        let domain = u32::from(engines);
        let key = StreamKey {
            kind: SourceKind::NetflowV5,
            domain,
        };
        self.ensure_stream(exporter, key, now_ms, losses)?;
        let stream = super::stream_in(&mut self.exporters, exporter, key)?;
        let span = u32::from(count);
        let dup_key = DupKey {
            seq: flow_sequence,
            count: span,
            stamp: sys_up_time,
        };
        if stream.seq.is_duplicate(dup_key) {
            self.stats.duplicates += 1;
            return Err(DecodeError::Duplicate);
        }
        stream.seq.observe(
            flow_sequence,
            Some(span),
            dup_key,
            Some(sys_up_time),
            now_ms,
            losses,
            &mut self.stats,
        );

        let mut export_ms = i64::from(unix_secs) * 1000 + i64::from(unix_nsecs / 1_000_000);
        let skew_ms = now_ms - export_ms;
        if let Some(e) = self.exporters.get_mut(&exporter) {
            e.clock_skew_ms = skew_ms;
        }
        if opts.reads_by_arrival(export_ms, now_ms) {
            // Every time is relative to the export time (uptimes): read
            // from the arrival instead.
            export_ms = now_ms;
        }
        let sampling = opts
            .sampling
            .unwrap_or(u32::from(sampling_interval & V5_SAMPLING_MASK))
            .max(1);
        let (records, _) = datagram
            .get(V5_HEADER_BYTES..)
            .unwrap_or_default()
            .as_chunks::<V5_RECORD_BYTES>();
        let rows = V5Rows {
            records,
            exporter,
            domain,
            export_ms,
            sys_up_time,
            sampling,
        };
        self.stats.records_time_inverted +=
            records.iter().filter(|r| rows.inverted(r)).count() as u64;
        flows.v5(rows);
        self.stats.flows_decoded += u64::from(count);
        Ok(usize::from(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_differences_are_signed_and_wrap() {
        assert_eq!(uptime_to_ms(10_000, 5_000, 4_000), 9_000);
        // Stamp slightly after the export uptime (clock skew): after export.
        assert_eq!(uptime_to_ms(10_000, 5_000, 5_010), 10_010);
        // The uptime counter wrapped between the flow start and the export.
        assert_eq!(uptime_to_ms(10_000, 100, u32::MAX - 899), 9_000);
    }

    /// The time-inverted count's shortcut agrees with the times the
    /// records are stored with, across the uptime counter's wrap and at
    /// the signed difference's extremes.
    #[test]
    fn inverted_agrees_with_the_stored_times() {
        let edges = [
            0u32,
            1,
            999,
            1 << 31,
            (1 << 31) - 1,
            (1 << 31) + 1,
            u32::MAX - 1,
            u32::MAX,
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        };
        let mut records = Vec::new();
        for &a in &edges {
            for &b in &edges {
                records.push((a, b));
            }
        }
        for _ in 0..2_000 {
            let first = next();
            records.push((
                first,
                first
                    .wrapping_add(next() % 4_000_000)
                    .wrapping_sub(2_000_000),
            ));
        }
        let rows: Vec<[u8; V5_RECORD_BYTES]> = records
            .iter()
            .map(|&(first, last)| {
                let mut r = [0u8; V5_RECORD_BYTES];
                r[24..28].copy_from_slice(&first.to_be_bytes());
                r[28..32].copy_from_slice(&last.to_be_bytes());
                r
            })
            .collect();
        let mut uptimes = edges.to_vec();
        uptimes.extend((0..200).map(|_| next()));
        let (mut inverted, mut checked) = (0, 0);
        for up in uptimes {
            let view = V5Rows {
                records: &rows,
                exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
                domain: 0,
                export_ms: 1_700_000_000_000,
                sys_up_time: up,
                sampling: 1,
            };
            for r in &rows {
                assert_eq!(
                    view.inverted(r),
                    view.times(r).2,
                    "uptime {up}, record {r:?}"
                );
                inverted += usize::from(view.inverted(r));
                checked += 1;
            }
        }
        // Both answers occur: the comparison is not vacuous.
        assert!(
            inverted > 0 && inverted < checked,
            "{inverted} of {checked}"
        );
    }

    #[test]
    fn count_and_length_are_checked() {
        let mut d = vec![0u8; 24 + 48];
        d[1] = 5;
        d[3] = 1;
        assert_eq!(validate(&d), Ok(1));
        d[3] = 0;
        assert_eq!(validate(&d), Err(DecodeError::BadCount(0)));
        d[3] = 31;
        assert_eq!(validate(&d), Err(DecodeError::BadCount(31)));
        d[3] = 2;
        assert!(matches!(validate(&d), Err(DecodeError::BadLength { .. })));
        assert_eq!(validate(&d[..23]), Err(DecodeError::Truncated));
    }
}
