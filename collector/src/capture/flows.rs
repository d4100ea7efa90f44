//! Packets → flows: a bounded table keyed by the 5-tuple, with the active
//! and idle timeouts of a NetFlow exporter.
//!
//! A flow (source, destination, ports, protocol; one direction) is
//! exported as one [`FlowRecord`] when no packet came for `idle`, when it
//! has run for `active` (a long download then yields a record every
//! `active`, so billing never waits for its end), when the table is full
//! (the oldest flows go first, early: a record more, never a byte less),
//! and when capture stops. Times are the packets' own capture times.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use super::packet::PacketInfo;
use crate::record::{FlowDirection, FlowRecord, SourceKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first_ms: i64,
    last_ms: i64,
    bytes: u64,
    packets: u64,
}

/// Where the records say they come from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The exporter address of pcap records: this host (127.0.0.1).
    pub exporter: IpAddr,
    /// The capture interface's index (0 for a file or `any`).
    pub ifindex: u32,
}

impl Default for Origin {
    fn default() -> Origin {
        Origin {
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ifindex: 0,
        }
    }
}

fn record(origin: Origin, k: &Key, e: &Entry) -> FlowRecord {
    FlowRecord {
        exporter: origin.exporter,
        domain: origin.ifindex,
        kind: SourceKind::Pcap,
        first_ms: e.first_ms,
        last_ms: e.last_ms,
        src: k.src,
        dst: k.dst,
        src_port: k.src_port,
        dst_port: k.dst_port,
        protocol: k.protocol,
        direction: FlowDirection::Unknown,
        in_if: origin.ifindex,
        out_if: 0,
        bytes_raw: e.bytes,
        packets_raw: e.packets,
        sampling: 1,
    }
}

/// What the table did, for the stats file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowTableStats {
    pub packets: u64,
    pub ip_bytes: u64,
    pub flows_exported: u64,
    /// Flows exported early because the table was full.
    pub table_full_exports: u64,
}

/// The flow table.
#[derive(Debug)]
pub struct FlowTable {
    map: HashMap<Key, Entry>,
    active_ms: i64,
    idle_ms: i64,
    max_flows: usize,
    origin: Origin,
    pub stats: FlowTableStats,
}

impl FlowTable {
    pub fn new(active_ms: i64, idle_ms: i64, max_flows: usize, origin: Origin) -> FlowTable {
        FlowTable {
            map: HashMap::new(),
            active_ms: active_ms.max(1),
            idle_ms: idle_ms.max(1),
            max_flows: max_flows.max(1),
            origin,
            stats: FlowTableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn record(&self, k: &Key, e: &Entry) -> FlowRecord {
        record(self.origin, k, e)
    }

    /// Counts one packet captured at `ts_ms`; records of flows it ends
    /// (active timeout, a full table) go to `out`.
    pub fn add(&mut self, p: &PacketInfo, ts_ms: i64, out: &mut Vec<FlowRecord>) {
        self.stats.packets += 1;
        self.stats.ip_bytes += u64::from(p.ip_len);
        let k = Key {
            src: p.src,
            dst: p.dst,
            src_port: p.src_port,
            dst_port: p.dst_port,
            protocol: p.protocol,
        };
        if let Some(e) = self.map.get_mut(&k) {
            if ts_ms - e.first_ms < self.active_ms {
                e.last_ms = e.last_ms.max(ts_ms);
                e.bytes += u64::from(p.ip_len);
                e.packets += 1;
                return;
            }
            // Ran for the active timeout: its record goes, a new one starts.
            let old = *e;
            out.push(self.record(&k, &old));
            self.stats.flows_exported += 1;
            self.map.remove(&k);
        } else if self.map.len() >= self.max_flows {
            self.evict_oldest(out);
        }
        self.map.insert(
            k,
            Entry {
                first_ms: ts_ms,
                last_ms: ts_ms,
                bytes: u64::from(p.ip_len),
                packets: 1,
            },
        );
    }

    /// A full table: the eighth of the flows idle longest are exported.
    fn evict_oldest(&mut self, out: &mut Vec<FlowRecord>) {
        let mut by_age: Vec<(i64, Key)> = self.map.iter().map(|(k, e)| (e.last_ms, *k)).collect();
        let n = (self.max_flows / 8).clamp(1, by_age.len().max(1));
        if by_age.len() > n {
            by_age.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        }
        for (_, k) in by_age.into_iter().take(n) {
            if let Some(e) = self.map.remove(&k) {
                out.push(self.record(&k, &e));
                self.stats.flows_exported += 1;
                self.stats.table_full_exports += 1;
            }
        }
    }

    /// Exports the flows idle for `idle` or running for `active` at
    /// `now_ms`.
    pub fn expire(&mut self, now_ms: i64, out: &mut Vec<FlowRecord>) {
        let (active, idle) = (self.active_ms, self.idle_ms);
        let before = out.len();
        let origin = self.origin;
        self.map.retain(|k, e| {
            let due = now_ms - e.last_ms >= idle || now_ms - e.first_ms >= active;
            if due {
                out.push(record(origin, k, e));
            }
            !due
        });
        self.stats.flows_exported += (out.len() - before) as u64;
    }

    /// Exports every flow (capture stops, end of a file).
    pub fn flush(&mut self, out: &mut Vec<FlowRecord>) {
        let mut all: Vec<(Key, Entry)> = self.map.drain().collect();
        // Deterministic order: by first packet, then key.
        all.sort_by_key(|(k, e)| {
            (
                e.first_ms, e.last_ms, k.src, k.dst, k.src_port, k.dst_port, k.protocol,
            )
        });
        for (k, e) in &all {
            out.push(self.record(k, e));
        }
        self.stats.flows_exported += all.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(src: &str, dst: &str, sport: u16, len: u32) -> PacketInfo {
        PacketInfo {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: 6,
            src_port: sport,
            dst_port: 443,
            ip_len: len,
        }
    }

    #[test]
    fn idle_and_active_timeouts_cut_flows_and_keep_every_byte() {
        let mut t = FlowTable::new(60_000, 15_000, 1_000, Origin::default());
        let mut out = Vec::new();
        // A long download: a packet every second for 150 s.
        for s in 0..150 {
            t.add(
                &pkt("198.51.100.7", "10.1.0.2", 443, 1500),
                s * 1000,
                &mut out,
            );
            t.expire(s * 1000, &mut out);
        }
        // Two records so far (0-59 s, 60-119 s), the third still open.
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].first_ms, out[0].last_ms, out[0].packets_raw),
            (0, 59_000, 60)
        );
        assert_eq!((out[1].first_ms, out[1].last_ms), (60_000, 119_000));
        // The download stops at 149 s: exported 15 s later; a short flow
        // from 150 s likewise.
        t.add(&pkt("10.1.0.2", "203.0.113.5", 5000, 60), 150_000, &mut out);
        t.expire(163_999, &mut out);
        assert_eq!(out.len(), 2);
        t.expire(164_000, &mut out);
        assert_eq!(out.len(), 3, "the idle download");
        assert_eq!((out[2].first_ms, out[2].last_ms), (120_000, 149_000));
        t.expire(164_999, &mut out);
        assert_eq!(out.len(), 3);
        t.expire(165_000, &mut out);
        assert_eq!(out.len(), 4, "the short flow");
        assert!(t.is_empty());
        let bytes: u64 = out.iter().map(|r| r.bytes_raw).sum();
        assert_eq!(bytes, 150 * 1500 + 60);
        assert_eq!(t.stats.ip_bytes, bytes);
        assert_eq!(t.stats.flows_exported, 4);
        assert!(
            out.iter()
                .all(|r| r.kind == SourceKind::Pcap && r.sampling == 1)
        );
    }

    #[test]
    fn a_full_table_exports_its_oldest_flows_early() {
        let mut t = FlowTable::new(60_000, 15_000, 1_000, Origin::default());
        let mut out = Vec::new();
        for i in 0..5_000u32 {
            t.add(
                &pkt("10.1.0.2", "198.51.100.7", (i % 60_000) as u16 + 1, 100),
                i as i64,
                &mut out,
            );
            assert!(t.len() <= 1_000);
        }
        t.flush(&mut out);
        assert_eq!(out.iter().map(|r| r.bytes_raw).sum::<u64>(), 5_000 * 100);
        assert_eq!(out.len(), 5_000);
        assert!(t.stats.table_full_exports >= 3_000);
        // The first early exports were the oldest eighth.
        let first: Vec<i64> = out[..125].iter().map(|r| r.first_ms).collect();
        assert_eq!(first.iter().min(), Some(&0));
        assert_eq!(first.iter().max(), Some(&124));
    }
}
