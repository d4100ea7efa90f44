//! Builds classic libpcap files (Ethernet, IPv4/IPv6, TCP/UDP) from a list
//! of flows, so a real exporter (softflowd) can turn them into NetFlow and
//! the test knows the exact truth.

use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 6 TCP or 17 UDP.
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub packets: u32,
    /// Payload bytes per packet (after the TCP/UDP header).
    pub payload: u16,
    /// First packet time, seconds since the epoch; one packet per 10 ms.
    pub start_s: u32,
}

impl Flow {
    fn l4_len(&self) -> usize {
        (if self.protocol == 6 { 20 } else { 8 }) + self.payload as usize
    }

    fn ip_len(&self) -> usize {
        (if self.src.is_ipv4() { 20 } else { 40 }) + self.l4_len()
    }

    /// What an exporter counts as the flow's bytes: the IP packets' lengths.
    pub fn ip_bytes(&self) -> u64 {
        self.ip_len() as u64 * self.packets as u64
    }
}

/// A deterministic mix of IPv4 and IPv6 TCP/UDP flows between a few
/// subscriber addresses and many remote ones.
pub fn sample_flows(v4: usize, v6: usize, seed: u64) -> Vec<Flow> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut flows = Vec::new();
    for i in 0..v4 + v6 {
        let r = rnd();
        let (src, dst): (IpAddr, IpAddr) = if i < v4 {
            (
                IpAddr::V4([10, 0, (r % 4) as u8, (r >> 8) as u8 % 50 + 1].into()),
                IpAddr::V4([198, 51, (r >> 16) as u8 % 8, (r >> 24) as u8].into()),
            )
        } else {
            let s: u128 = (0x2001_0db8_0001u128 << 80) | u128::from(r % 20);
            let d: u128 = (0x2001_0db8_ff00u128 << 80) | u128::from((r >> 16) % 300);
            (IpAddr::V6(s.into()), IpAddr::V6(d.into()))
        };
        // Half the flows are downloads: remote → subscriber.
        let (src, dst) = if r & (1 << 40) != 0 {
            (dst, src)
        } else {
            (src, dst)
        };
        flows.push(Flow {
            src,
            dst,
            protocol: if r & (1 << 41) != 0 { 6 } else { 17 },
            src_port: 1024 + (i as u16 % 60_000),
            dst_port: [80, 443, 53, 123][(r >> 42) as usize % 4],
            packets: 1 + (r >> 44) as u32 % 20,
            payload: ((r >> 50) % 1400) as u16,
            start_s: 1_763_790_000 + (i as u32 % 7),
        });
    }
    flows
}

/// Writes the flows' packets, in time order, into a pcap file.
pub fn write_pcap(path: &Path, flows: &[Flow]) {
    let mut pkts: Vec<(u64, usize, u32)> = Vec::new(); // (time µs, flow, seq)
    for (i, f) in flows.iter().enumerate() {
        for k in 0..f.packets {
            pkts.push((
                f.start_s as u64 * 1_000_000 + k as u64 * 10_000 + i as u64,
                i,
                k,
            ));
        }
    }
    pkts.sort();
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (t_us, i, k) in pkts {
        let frame = frame(&flows[i], k);
        out.extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

fn frame(f: &Flow, seq: u32) -> Vec<u8> {
    let mut b = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    let l4_len = f.l4_len();
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&(f.ip_len() as u16).to_be_bytes());
            ip.extend_from_slice(&(seq as u16).to_be_bytes());
            ip.extend_from_slice(&[0x40, 0, 64, f.protocol, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            b.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b.extend_from_slice(&[0x86, 0xdd]);
            b.extend_from_slice(&[0x60, 0, 0, 0]);
            b.extend_from_slice(&(l4_len as u16).to_be_bytes());
            b.extend_from_slice(&[f.protocol, 64]);
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families in one flow"),
    }
    if f.protocol == 6 {
        b.extend_from_slice(&f.src_port.to_be_bytes());
        b.extend_from_slice(&f.dst_port.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        // ACK|PSH: no SYN/FIN/RST, so softflowd's TCP state machine keeps
        // the flow open until the end of the file.
        b.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        b.extend_from_slice(&f.src_port.to_be_bytes());
        b.extend_from_slice(&f.dst_port.to_be_bytes());
        b.extend_from_slice(&(l4_len as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
    }
    b.extend(std::iter::repeat_n(0x61u8, f.payload as usize));
    b
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}
