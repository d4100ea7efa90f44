//! The uniform record every source delivers to tier 1.
//!
//! Whatever produced it (NetFlow v5, v9, IPFIX, later nftables counters,
//! RADIUS accounting or pcap), a traffic observation becomes one
//! [`FlowRecord`]: *which* exporter saw it, *when*, *between which
//! addresses*, *how much*. A hole in a source's stream becomes a
//! [`LossRecord`], so nobody bills from a stream with an unnoticed hole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which kind of source produced a record. Stored as one byte in tier 1;
/// the numbers are part of the on-disk format (docs/raw-format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SourceKind {
    NetflowV5 = 1,
    NetflowV9 = 2,
    Ipfix = 3,
    NftCounter = 4,
    Radius = 5,
    Pcap = 6,
}

impl SourceKind {
    pub fn from_u8(v: u8) -> Option<SourceKind> {
        Some(match v {
            1 => SourceKind::NetflowV5,
            2 => SourceKind::NetflowV9,
            3 => SourceKind::Ipfix,
            4 => SourceKind::NftCounter,
            5 => SourceKind::Radius,
            6 => SourceKind::Pcap,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::NetflowV5 => "v5",
            SourceKind::NetflowV9 => "v9",
            SourceKind::Ipfix => "ipfix",
            SourceKind::NftCounter => "nft",
            SourceKind::Radius => "radius",
            SourceKind::Pcap => "pcap",
        }
    }
}

/// Flow direction as the exporter reported it (IPFIX IE 61 flowDirection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowDirection {
    Ingress = 0,
    Egress = 1,
    Unknown = 255,
}

impl FlowDirection {
    pub fn from_u8(v: u8) -> FlowDirection {
        match v {
            0 => FlowDirection::Ingress,
            1 => FlowDirection::Egress,
            _ => FlowDirection::Unknown,
        }
    }
}

/// One observed flow, as stored in tier 1.
///
/// Byte and packet counts are kept *as exported* (`bytes_raw`,
/// `packets_raw`) together with the sampling interval that applied
/// (`sampling`, 1 = unsampled). The scaled estimates are [`FlowRecord::bytes`]
/// and [`FlowRecord::packets`]: integer, exact, reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRecord {
    /// Address the export datagram came from (the router).
    pub exporter: IpAddr,
    /// v5 engine type/id (`type << 8 | id`), v9 source id, IPFIX observation
    /// domain id. Together with `exporter` it names one export stream.
    pub domain: u32,
    pub kind: SourceKind,
    /// First packet of the flow, ms since the Unix epoch, UTC.
    pub first_ms: i64,
    /// Last packet of the flow, ms since the Unix epoch, UTC. `>= first_ms`.
    pub last_ms: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub direction: FlowDirection,
    pub in_if: u32,
    pub out_if: u32,
    pub bytes_raw: u64,
    pub packets_raw: u64,
    /// Sampling interval: 1 packet in `sampling` was counted. Never 0.
    pub sampling: u32,
}

impl FlowRecord {
    /// Scaled byte estimate: `bytes_raw × sampling`, saturating.
    pub fn bytes(&self) -> u64 {
        self.bytes_raw
            .saturating_mul(u64::from(self.sampling.max(1)))
    }

    /// Scaled packet estimate: `packets_raw × sampling`, saturating.
    pub fn packets(&self) -> u64 {
        self.packets_raw
            .saturating_mul(u64::from(self.sampling.max(1)))
    }

    /// An all-zero IPv4 record, handy as a base for builders and tests.
    pub fn empty(kind: SourceKind) -> FlowRecord {
        FlowRecord {
            exporter: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            domain: 0,
            kind,
            first_ms: 0,
            last_ms: 0,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            protocol: 0,
            direction: FlowDirection::Unknown,
            in_if: 0,
            out_if: 0,
            bytes_raw: 0,
            packets_raw: 0,
            sampling: 1,
        }
    }
}

/// A run of flow records as the block encoder takes them
/// ([`crate::segment::FlowBlockEncoder::push_rows`]): records in memory,
/// or a view that builds each one where it is used, from the bytes it was
/// decoded from (NetFlow v5's fixed records: no [`FlowRecord`] is stored
/// and read back between the datagram and the block's columns).
pub trait FlowRows: Copy {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i` (< `len()`).
    fn row(&self, i: usize) -> FlowRecord;

    /// The first `mid` records and the rest.
    fn split_at(self, mid: usize) -> (Self, Self);

    /// Whether every row has the same exporter, domain, kind and sampling
    /// (the rows of one datagram), so that a consumer may compare them once.
    fn one_stream(&self) -> bool {
        false
    }

    /// Source and destination of record `i` when both are IPv4.
    #[inline(always)]
    fn v4_pair(&self, i: usize) -> Option<[u32; 2]> {
        let r = self.row(i);
        match (r.src, r.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some([u32::from(s), u32::from(d)]),
            _ => None,
        }
    }
}

impl FlowRows for &[FlowRecord] {
    #[inline]
    fn len(&self) -> usize {
        <[FlowRecord]>::len(self)
    }

    #[inline(always)]
    fn row(&self, i: usize) -> FlowRecord {
        self[i]
    }

    #[inline]
    fn split_at(self, mid: usize) -> (Self, Self) {
        <[FlowRecord]>::split_at(self, mid)
    }
}

/// Why a loss record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LossReason {
    /// Sequence numbers skipped: export datagrams never arrived.
    Gap = 1,
    /// The exporter restarted (sequence or uptime went back); what it sent
    /// between its last packet before and its first after is unknowable.
    Reset = 2,
    /// The kernel or capture layer dropped packets (socket buffer overrun,
    /// pcap drops).
    Dropped = 3,
    /// Data records whose template never arrived within the hold time
    /// (v9/IPFIX): they could not be decoded and were discarded.
    NoTemplate = 4,
}

impl LossReason {
    pub fn from_u8(v: u8) -> Option<LossReason> {
        Some(match v {
            1 => LossReason::Gap,
            2 => LossReason::Reset,
            3 => LossReason::Dropped,
            4 => LossReason::NoTemplate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::Gap => "gap",
            LossReason::Reset => "reset",
            LossReason::Dropped => "dropped",
            LossReason::NoTemplate => "no-template",
        }
    }
}

/// What a loss count counts. NetFlow v5 and IPFIX sequence numbers count
/// flows; NetFlow v9 sequence numbers count export datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LossUnit {
    Flows = 1,
    Packets = 2,
}

impl LossUnit {
    pub fn from_u8(v: u8) -> Option<LossUnit> {
        Some(match v {
            1 => LossUnit::Flows,
            2 => LossUnit::Packets,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LossUnit::Flows => "flows",
            LossUnit::Packets => "packets",
        }
    }
}

/// "N flows lost from router X between T1 and T2".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LossRecord {
    pub exporter: IpAddr,
    pub domain: u32,
    pub kind: SourceKind,
    pub reason: LossReason,
    pub unit: LossUnit,
    /// How many `unit`s were lost (0 for a `Reset`, where it is unknowable).
    pub count: u64,
    /// Last good observation before the hole, ms UTC (arrival time).
    pub from_ms: i64,
    /// First observation after the hole, ms UTC (arrival time).
    pub to_ms: i64,
    /// Sequence number that was expected.
    pub expected_seq: u32,
    /// Sequence number that arrived.
    pub received_seq: u32,
}

/// Stores any address as 16 bytes: IPv4 as its IPv4-mapped IPv6 form.
pub fn addr_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Inverse of [`addr_to_u128`]: IPv4-mapped addresses come back as IPv4.
pub fn u128_to_addr(v: u128) -> IpAddr {
    let v6 = Ipv6Addr::from(v);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_counts_multiply_and_saturate() {
        let mut r = FlowRecord::empty(SourceKind::NetflowV5);
        r.bytes_raw = 1500;
        r.packets_raw = 1;
        r.sampling = 100;
        assert_eq!(r.bytes(), 150_000);
        assert_eq!(r.packets(), 100);
        r.bytes_raw = u64::MAX / 2;
        assert_eq!(r.bytes(), u64::MAX);
    }

    #[test]
    fn addresses_round_trip_through_u128() {
        for a in ["10.1.2.3", "0.0.0.0", "2001:db8::1", "::1", "::"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(u128_to_addr(addr_to_u128(ip)), ip, "{a}");
        }
    }
}
