//! Packet capture as a tier-1 source, for a host with no NetFlow exporter
//! (`[collector.pcap]`, docs/pcap-source.md).
//!
//! libpcap (the `pcap` crate) captures on an interface with the
//! configured BPF filter; [`packet`] turns each frame into its IP fields;
//! [`flows`] builds flows with active and idle timeouts; the records go to
//! the collector's writer like decoded NetFlow, kind [`SourceKind::Pcap`].
//! Packets the kernel or the interface dropped (libpcap's statistics) are
//! written as loss records (reason `dropped`, unit packets), so nobody
//! bills from a capture with an unnoticed hole. [`read_file`] runs the same
//! flow builder over a capture file (`kopek collector pcap-read`).

pub mod flows;
pub mod packet;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use kopek_config::PcapConfig;
use serde::{Deserialize, Serialize};

pub use flows::{FlowTable, FlowTableStats, Origin};
pub use packet::{PacketInfo, Skip};

use crate::record::{FlowRecord, LossReason, LossRecord, LossUnit, SourceKind};

/// How long a read waits on a quiet interface (the flow timeouts are
/// checked at least this often).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("pcap on {what}: {source}")]
    Pcap {
        what: String,
        #[source]
        source: pcap::Error,
    },
}

/// Counters of the capture, as the stats file shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcapStats {
    pub interface: String,
    #[serde(flatten)]
    pub flows: FlowTableStats,
    /// Frames that were not IP (ARP, LLDP, …), skipped.
    pub not_ip: u64,
    /// Frames shorter than their IP header, skipped.
    pub truncated: u64,
    /// Frames with an impossible IP header, skipped.
    pub malformed: u64,
    /// Packets the kernel dropped (capture buffer full), from libpcap.
    pub kernel_dropped: u64,
    /// Packets the interface or its driver dropped, from libpcap.
    pub if_dropped: u64,
    pub loss_records: u64,
}

impl PcapStats {
    fn skipped(&mut self, s: Skip) {
        match s {
            Skip::NotIp | Skip::UnknownLink => self.not_ip += 1,
            Skip::Truncated => self.truncated += 1,
            Skip::Malformed => self.malformed += 1,
        }
    }
}

fn flow_table(c: &PcapConfig, origin: Origin) -> FlowTable {
    FlowTable::new(
        c.active_timeout.as_millis() as i64,
        c.idle_timeout.as_millis() as i64,
        c.max_flows,
        origin,
    )
}

/// One captured frame into the flow table (or the skip counters); returns
/// its capture time.
fn take_frame(
    table: &mut FlowTable,
    stats: &mut PcapStats,
    link: i32,
    p: &pcap::Packet<'_>,
    out: &mut Vec<FlowRecord>,
) -> i64 {
    let t = ts_ms(p.header);
    match packet::parse(link, p.data) {
        Ok(info) => table.add(&info, t, out),
        Err(s) => stats.skipped(s),
    }
    t
}

// `time_t` and `suseconds_t` are `i64` here but 32 bits on some targets.
#[allow(clippy::useless_conversion)]
fn ts_ms(h: &pcap::PacketHeader) -> i64 {
    i64::from(h.ts.tv_sec) * 1000 + i64::from(h.ts.tv_usec) / 1000
}

/// The kernel's index of an interface (0 when unknown, e.g. `any`).
pub fn ifindex(interface: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A live capture and its flow table.
pub struct LiveCapture {
    cap: pcap::Capture<pcap::Active>,
    link: i32,
    table: FlowTable,
    pub stats: PcapStats,
    origin: Origin,
    /// libpcap's drop counters (32-bit, wrapping) at the last look.
    seen_drops: (u32, u32),
    seen_ms: i64,
    /// Newest packet time seen.
    latest_ms: i64,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interface", &self.stats.interface)
            .finish()
    }
}

impl LiveCapture {
    /// Opens the interface (root or CAP_NET_RAW) and sets the filter.
    pub fn open(c: &PcapConfig, now_ms: i64) -> Result<LiveCapture, CaptureError> {
        let err = |what: &str| {
            let what = format!("{} ({what})", c.interface);
            move |source| CaptureError::Pcap { what, source }
        };
        let mut cap = pcap::Capture::from_device(c.interface.as_str())
            .map_err(err("device"))?
            .promisc(c.promiscuous)
            .snaplen(c.snaplen as i32)
            .buffer_size(i32::try_from(c.buffer_bytes).unwrap_or(i32::MAX))
            // Packets as they arrive: without it TPACKET_V3 hands over a
            // block only when it fills or its timer fires.
            .immediate_mode(true)
            .open()
            .map_err(err("open"))?
            // libpcap's own read timeout does not return from
            // pcap_next_ex on Linux (it polls again), so the capture is
            // non-blocking and `read` waits on its descriptor itself.
            .setnonblock()
            .map_err(err("non-blocking"))?;
        if !c.filter.is_empty() {
            cap.filter(&c.filter, true).map_err(err("filter"))?;
        }
        let link = cap.get_datalink().0;
        let origin = Origin {
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ifindex: ifindex(&c.interface),
        };
        let stats = cap.stats().map_err(err("stats"))?;
        Ok(LiveCapture {
            cap,
            link,
            table: flow_table(c, origin),
            stats: PcapStats {
                interface: c.interface.clone(),
                ..PcapStats::default()
            },
            origin,
            seen_drops: (stats.dropped, stats.if_dropped),
            seen_ms: now_ms,
            latest_ms: now_ms,
        })
    }

    /// Reads up to `max` packets (less when the interface is quiet for
    /// the read timeout); records of flows that end go to `out`.
    pub fn read(&mut self, max: usize, out: &mut Vec<FlowRecord>) -> Result<(), CaptureError> {
        let mut n = 0;
        let mut waited = false;
        while n < max {
            match self.cap.next_packet() {
                Ok(p) => {
                    n += 1;
                    let t = take_frame(&mut self.table, &mut self.stats, self.link, &p, out);
                    self.latest_ms = self.latest_ms.max(t);
                }
                // Nothing buffered: wait once, then give the caller its turn.
                Err(pcap::Error::TimeoutExpired) if n == 0 && !waited => {
                    waited = true;
                    crate::run::wait_readable(&self.cap, READ_TIMEOUT);
                }
                Err(pcap::Error::TimeoutExpired) => break,
                Err(source) => {
                    return Err(CaptureError::Pcap {
                        what: format!("{} (read)", self.stats.interface),
                        source,
                    });
                }
            }
        }
        self.stats.flows = self.table.stats;
        Ok(())
    }

    /// Housekeeping at `now_ms` (wall clock): flows past their timeouts
    /// are exported, new drops become a loss record.
    pub fn tick(
        &mut self,
        now_ms: i64,
        out: &mut Vec<FlowRecord>,
        losses: &mut Vec<LossRecord>,
    ) -> Result<(), CaptureError> {
        self.table.expire(now_ms.max(self.latest_ms), out);
        self.stats.flows = self.table.stats;
        let s = self.cap.stats().map_err(|source| CaptureError::Pcap {
            what: format!("{} (stats)", self.stats.interface),
            source,
        })?;
        if let Some(l) = self.drops((s.dropped, s.if_dropped), now_ms) {
            losses.push(l);
        }
        Ok(())
    }

    fn drops(&mut self, now: (u32, u32), now_ms: i64) -> Option<LossRecord> {
        let l = drop_record(self.origin, self.seen_drops, now, self.seen_ms, now_ms);
        self.stats.kernel_dropped += u64::from(now.0.wrapping_sub(self.seen_drops.0));
        self.stats.if_dropped += u64::from(now.1.wrapping_sub(self.seen_drops.1));
        self.seen_drops = now;
        self.seen_ms = now_ms;
        if l.is_some() {
            self.stats.loss_records += 1;
        }
        l
    }

    /// Capture stops: every flow is exported, the last drops counted.
    pub fn finish(
        &mut self,
        now_ms: i64,
        out: &mut Vec<FlowRecord>,
        losses: &mut Vec<LossRecord>,
    ) -> Result<(), CaptureError> {
        let r = self.tick(now_ms, out, losses);
        self.table.flush(out);
        self.stats.flows = self.table.stats;
        r
    }
}

/// The loss record for libpcap's drop counters going from `before` to
/// `now` (32-bit counters that wrap), if any packet was dropped.
pub fn drop_record(
    origin: Origin,
    before: (u32, u32),
    now: (u32, u32),
    from_ms: i64,
    to_ms: i64,
) -> Option<LossRecord> {
    let n = u64::from(now.0.wrapping_sub(before.0)) + u64::from(now.1.wrapping_sub(before.1));
    (n > 0).then_some(LossRecord {
        exporter: origin.exporter,
        domain: origin.ifindex,
        kind: SourceKind::Pcap,
        reason: LossReason::Dropped,
        unit: LossUnit::Packets,
        count: n,
        from_ms,
        to_ms,
        expected_seq: 0,
        received_seq: 0,
    })
}

/// Compiles a BPF filter without an interface (Ethernet link type), so
/// that `kopek config check` rejects a bad `[collector.pcap] filter`
/// before the collector starts. An empty filter is fine.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Ok(());
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
    dead.compile(filter, true)
        .map(|_| ())
        .map_err(|e| format!("{filter:?}: {e}"))
}

/// Writes Ethernet frames with their capture times (ms, UTC) as a pcap
/// file, through libpcap: the demo's capture, and a capture for anyone
/// who wants to feed [`read_file`] or softflowd known packets.
pub fn write_file(path: &Path, frames: &[(i64, Vec<u8>)]) -> Result<(), String> {
    let err = |e: pcap::Error| format!("{}: {e}", path.display());
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(err)?;
    let mut out = dead.savefile(path).map_err(err)?;
    for (t, data) in frames {
        let len = u32::try_from(data.len()).map_err(|_| "frame too long".to_string())?;
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: t.div_euclid(1000) as libc::time_t,
                tv_usec: (t.rem_euclid(1000) * 1000) as libc::suseconds_t,
            },
            caplen: len,
            len,
        };
        out.write(&pcap::Packet::new(&header, data));
    }
    out.flush().map_err(err)
}

/// Runs the flow builder over a capture file (the BPF `filter` applied),
/// handing records to `sink` in chunks of at most `chunk`; everything is
/// flushed at the end of the file. Times are the packets' own.
pub fn read_file(
    path: &Path,
    c: &PcapConfig,
    chunk: usize,
    mut sink: impl FnMut(&[FlowRecord]) -> Result<(), String>,
) -> Result<PcapStats, String> {
    let mut cap = pcap::Capture::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !c.filter.is_empty() {
        cap.filter(&c.filter, true)
            .map_err(|e| format!("filter {:?}: {e}", c.filter))?;
    }
    let link = cap.get_datalink().0;
    let mut table = flow_table(c, Origin::default());
    let mut stats = PcapStats {
        interface: path.display().to_string(),
        ..PcapStats::default()
    };
    let mut out = Vec::new();
    let mut latest = i64::MIN;
    let mut last_expire = i64::MIN;
    loop {
        match cap.next_packet() {
            Ok(p) => {
                latest = latest.max(take_frame(&mut table, &mut stats, link, &p, &mut out));
                // The file's own clock drives the timeouts, once a second.
                if latest.saturating_sub(last_expire) >= 1_000 {
                    table.expire(latest, &mut out);
                    last_expire = latest;
                }
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        if out.len() >= chunk {
            sink(&out)?;
            out.clear();
        }
    }
    table.flush(&mut out);
    for part in out.chunks(chunk.max(1)) {
        sink(part)?;
    }
    stats.flows = table.stats;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_capture_reads_back_as_its_flows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let info = |dst_port, ip_len| PacketInfo {
            src: "10.0.1.2".parse().unwrap(),
            dst: "203.0.113.5".parse().unwrap(),
            protocol: 17,
            src_port: 40_000,
            dst_port,
            ip_len,
        };
        // Two flows; the second one 70 s long, cut by the 60 s active timeout.
        let mut frames = vec![(
            1_700_000_000_123,
            packet::ethernet_ipv4_frame(&info(53, 80)).unwrap(),
        )];
        for i in 0..8 {
            let f = packet::ethernet_ipv4_frame(&info(443, 1000)).unwrap();
            frames.push((1_700_000_001_000 + i * 10_000, f));
        }
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        frames.push((1_700_000_001_500, arp));
        frames.sort_by_key(|f| f.0);
        write_file(&path, &frames).unwrap();
        let mut got = Vec::new();
        let stats = read_file(&path, &PcapConfig::default(), 2, |r| {
            got.extend_from_slice(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            (stats.flows.packets, stats.flows.ip_bytes, stats.not_ip),
            (9, 8080, 1)
        );
        got.sort_by_key(|r| (r.dst_port, r.first_ms));
        let summary: Vec<_> = got
            .iter()
            .map(|r| (r.dst_port, r.first_ms, r.last_ms, r.bytes(), r.packets()))
            .collect();
        assert_eq!(
            summary,
            [
                (53, 1_700_000_000_123, 1_700_000_000_123, 80, 1),
                // A packet 60 s after the flow's first starts the next record.
                (443, 1_700_000_001_000, 1_700_000_051_000, 6000, 6),
                (443, 1_700_000_061_000, 1_700_000_071_000, 2000, 2),
            ]
        );
    }

    #[test]
    fn filters_are_compiled_without_an_interface() {
        assert_eq!(check_filter(""), Ok(()));
        assert_eq!(check_filter("udp and dst port 9 or ip6"), Ok(()));
        let e = check_filter("tcp port (((").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
    }

    #[test]
    fn drops_become_loss_records_even_across_the_wrap() {
        let o = Origin {
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ifindex: 7,
        };
        assert_eq!(drop_record(o, (5, 1), (5, 1), 0, 1000), None);
        let l = drop_record(o, (5, 1), (15, 3), 1000, 2000).unwrap();
        assert_eq!((l.count, l.from_ms, l.to_ms, l.domain), (12, 1000, 2000, 7));
        assert_eq!(
            (l.kind, l.reason, l.unit),
            (SourceKind::Pcap, LossReason::Dropped, LossUnit::Packets)
        );
        let l = drop_record(o, (u32::MAX - 1, 0), (3, 0), 0, 1).unwrap();
        assert_eq!(l.count, 5);
    }
}
