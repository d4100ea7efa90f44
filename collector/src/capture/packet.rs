//! One captured frame → the fields a flow is keyed and counted by.
//!
//! Link layers: Ethernet (with up to three 802.1Q/802.1ad tags), Linux
//! cooked capture v1 and v2 (the `any` pseudo-interface), raw IP, BSD
//! loopback. Network layer: IPv4 (options skipped), IPv6 (hop-by-hop,
//! routing, destination options, fragment and AH headers skipped).
//!
//! What a flow counts is the IP packet's length from its own header (IPv4
//! total length, IPv6 40 + payload length) — what NetFlow exporters and
//! softflowd count, whatever the snap length and link layer. Ports come
//! from TCP, UDP, SCTP and UDP-Lite; ICMP and ICMPv6 put type << 8 | code
//! in the destination port, as Cisco exporters do; non-first fragments
//! and other protocols have port 0. A packet whose transport header was
//! not captured (snap length) still counts, with port 0.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What one IP packet contributes to its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP packet length from the IP header.
    pub ip_len: u32,
}

/// Why a frame gives no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// ARP, LLDP, STP, …: not IP.
    NotIp,
    /// Shorter than the headers it announces.
    Truncated,
    /// A header that cannot be (wrong IP version, IHL < 5, …).
    Malformed,
    /// A link type this parser does not know.
    UnknownLink,
}

/// Link types (pcap `LINKTYPE_*` / `DLT_*` numbers).
pub const LINK_NULL: i32 = 0;
pub const LINK_ETHERNET: i32 = 1;
pub const LINK_RAW_DLT: i32 = 12;
pub const LINK_RAW: i32 = 101;
pub const LINK_LINUX_SLL: i32 = 113;
pub const LINK_IPV4: i32 = 228;
pub const LINK_IPV6: i32 = 229;
pub const LINK_LINUX_SLL2: i32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// Most VLAN tags followed (QinQ has two).
const MAX_VLAN_TAGS: usize = 3;
/// Most IPv6 extension headers followed.
const MAX_EXT_HEADERS: usize = 8;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// Parses one frame of link type `link`.
pub fn parse(link: i32, frame: &[u8]) -> Result<PacketInfo, Skip> {
    let (ethertype, ip) = match link {
        LINK_ETHERNET => {
            let mut off = 12;
            let mut et = be16(frame, off).ok_or(Skip::Truncated)?;
            let mut tags = 0;
            while ETHERTYPE_VLAN.contains(&et) {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(Skip::Malformed);
                }
                off += 4;
                et = be16(frame, off).ok_or(Skip::Truncated)?;
            }
            (et, frame.get(off + 2..).ok_or(Skip::Truncated)?)
        }
        LINK_LINUX_SLL => (
            be16(frame, 14).ok_or(Skip::Truncated)?,
            frame.get(16..).ok_or(Skip::Truncated)?,
        ),
        LINK_LINUX_SLL2 => (
            be16(frame, 0).ok_or(Skip::Truncated)?,
            frame.get(20..).ok_or(Skip::Truncated)?,
        ),
        LINK_RAW | LINK_RAW_DLT | LINK_IPV4 | LINK_IPV6 => {
            let v = frame.first().ok_or(Skip::Truncated)? >> 4;
            (
                match v {
                    4 => ETHERTYPE_IPV4,
                    6 => ETHERTYPE_IPV6,
                    _ => return Err(Skip::Malformed),
                },
                frame,
            )
        }
        LINK_NULL => {
            // A host-order u32 address family: 2 is IPv4; 24, 28 and 30
            // are IPv6 on the BSDs.
            let fam = frame.get(..4).ok_or(Skip::Truncated)?;
            let fam = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]])
                .min(u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]));
            (
                match fam {
                    2 => ETHERTYPE_IPV4,
                    24 | 28 | 30 => ETHERTYPE_IPV6,
                    _ => return Err(Skip::NotIp),
                },
                &frame[4..],
            )
        }
        _ => return Err(Skip::UnknownLink),
    };
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(ip),
        ETHERTYPE_IPV6 => ipv6(ip),
        _ => Err(Skip::NotIp),
    }
}

fn ipv4(d: &[u8]) -> Result<PacketInfo, Skip> {
    let h = d.get(..20).ok_or(Skip::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(Skip::Malformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = u32::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || (total as usize) < ihl {
        return Err(Skip::Malformed);
    }
    let frag_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let protocol = h[9];
    let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    let (src_port, dst_port) = if frag_offset == 0 {
        ports(protocol, d.get(ihl..).unwrap_or_default(), false)
    } else {
        (0, 0)
    };
    Ok(PacketInfo {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
        ip_len: total,
    })
}

fn ipv6(d: &[u8]) -> Result<PacketInfo, Skip> {
    let h = d.get(..40).ok_or(Skip::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    let payload = u32::from(u16::from_be_bytes([h[4], h[5]]));
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).expect("16")));
    let dst = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(&h[24..40]).expect("16"),
    ));
    let mut next = h[6];
    let mut off = 40usize;
    let mut first_fragment = true;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) × 8.
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (d.get(off), d.get(off + 1)) else {
                    next = 59; // not captured: no ports
                    break;
                };
                next = n;
                off += (usize::from(len) + 1) * 8;
            }
            // Fragment: 8 bytes; only the first fragment has the ports.
            44 => {
                let Some(f) = d.get(off..off + 8) else {
                    next = 59;
                    break;
                };
                next = f[0];
                first_fragment = u16::from_be_bytes([f[2], f[3]]) >> 3 == 0;
                off += 8;
            }
            // Authentication header: (len + 2) × 4.
            51 => {
                let (Some(&n), Some(&len)) = (d.get(off), d.get(off + 1)) else {
                    next = 59;
                    break;
                };
                next = n;
                off += (usize::from(len) + 2) * 4;
            }
            _ => break,
        }
    }
    let (src_port, dst_port) = if first_fragment {
        ports(next, d.get(off..).unwrap_or_default(), true)
    } else {
        (0, 0)
    };
    Ok(PacketInfo {
        src,
        dst,
        protocol: next,
        src_port,
        dst_port,
        ip_len: 40 + payload,
    })
}

/// (source, destination) port of a transport header; (0, 0) when there is
/// none or it was not captured.
fn ports(protocol: u8, l4: &[u8], v6: bool) -> (u16, u16) {
    match protocol {
        // TCP, UDP, SCTP, UDP-Lite, DCCP.
        6 | 17 | 132 | 136 | 33 => match (be16(l4, 0), be16(l4, 2)) {
            (Some(s), Some(d)) => (s, d),
            _ => (0, 0),
        },
        1 if !v6 => match l4.get(..2) {
            Some(t) => (0, u16::from(t[0]) << 8 | u16::from(t[1])),
            None => (0, 0),
        },
        58 if v6 => match l4.get(..2) {
            Some(t) => (0, u16::from(t[0]) << 8 | u16::from(t[1])),
            None => (0, 0),
        },
        _ => (0, 0),
    }
}

/// An Ethernet frame carrying an IPv4 packet of `ip_len` bytes (at least
/// 28: the IPv4 header, then a TCP, UDP or ICMP header as far as it fits,
/// zero payload): the inverse of [`parse`], for the demo and for tests
/// that need known packets. The IPv4 header checksum is filled in.
/// `None` unless both addresses are IPv4.
pub fn ethernet_ipv4_frame(p: &PacketInfo) -> Option<Vec<u8>> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) else {
        return None;
    };
    let len = p.ip_len.clamp(28, 65_535) as usize;
    let mut f = vec![0u8; 14 + len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = p.protocol;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = ip[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let l4 = &mut ip[20..];
    match p.protocol {
        1 => l4[0..2].copy_from_slice(&p.dst_port.to_be_bytes()),
        _ => {
            l4[0..2].copy_from_slice(&p.src_port.to_be_bytes());
            l4[2..4].copy_from_slice(&p.dst_port.to_be_bytes());
        }
    }
    if p.protocol == 17 {
        l4[4..6].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, vlans: &[u16], ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for v in vlans {
            f.extend_from_slice(&v.to_be_bytes());
            f.extend_from_slice(&[0, 7]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    fn v4(proto: u8, frag: u16, total: u16, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 1, 0, 2, 198, 51, 100, 7,
        ];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    fn v6(next: u8, payload: u16, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        h[4..6].copy_from_slice(&payload.to_be_bytes());
        h.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(rest);
        h
    }

    #[test]
    fn built_frames_parse_back() {
        for (protocol, sport, dport, len) in [
            (6, 443, 50_123, 1500),
            (17, 53, 40_000, 80),
            (1, 0, 8 << 8, 28),
        ] {
            let p = PacketInfo {
                src: "198.51.100.7".parse().unwrap(),
                dst: "10.0.1.9".parse().unwrap(),
                protocol,
                src_port: sport,
                dst_port: dport,
                ip_len: len,
            };
            let f = ethernet_ipv4_frame(&p).expect("IPv4");
            assert_eq!(f.len(), 14 + len as usize);
            assert_eq!(parse(LINK_ETHERNET, &f), Ok(p));
        }
    }

    #[test]
    fn ethernet_vlan_and_cooked_frames_give_the_ip_fields() {
        let udp = [0x04, 0x00, 0x00, 0x35, 0, 8, 0, 0];
        let ip = v4(17, 0, 1028, &udp);
        for frame in [
            eth(0x0800, &[], &ip),
            eth(0x0800, &[0x8100], &ip),
            eth(0x0800, &[0x88a8, 0x8100], &ip),
        ] {
            let p = parse(LINK_ETHERNET, &frame).unwrap();
            assert_eq!(p.src, "10.1.0.2".parse::<IpAddr>().unwrap());
            assert_eq!(p.dst, "198.51.100.7".parse::<IpAddr>().unwrap());
            assert_eq!((p.protocol, p.src_port, p.dst_port), (17, 1024, 53));
            // The IP header's length, not the (snapped) frame's.
            assert_eq!(p.ip_len, 1028);
        }
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(&ip);
        assert_eq!(parse(LINK_LINUX_SLL, &sll).unwrap().ip_len, 1028);
        let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(parse(LINK_LINUX_SLL2, &sll2).unwrap().dst_port, 53);
        assert_eq!(parse(LINK_RAW, &ip).unwrap().src_port, 1024);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(parse(LINK_NULL, &null).unwrap().protocol, 17);
    }

    #[test]
    fn icmp_fragments_and_short_transport_headers() {
        // Echo request: type 8 code 0 in the destination port.
        let p = parse(LINK_RAW, &v4(1, 0, 84, &[8, 0, 0, 0])).unwrap();
        assert_eq!((p.src_port, p.dst_port), (0, 8 << 8));
        // A later fragment has no ports even if bytes look like some.
        let p = parse(LINK_RAW, &v4(17, 185, 1500, &[1, 2, 3, 4])).unwrap();
        assert_eq!((p.src_port, p.dst_port, p.ip_len), (0, 0, 1500));
        // Transport header cut by the snap length: counted, port 0.
        let p = parse(LINK_RAW, &v4(6, 0, 1500, &[1])).unwrap();
        assert_eq!((p.src_port, p.dst_port, p.ip_len), (0, 0, 1500));
        // IPv4 options (IHL 6) are skipped.
        let mut ip = v4(17, 0, 32, &[0, 0, 0, 0]);
        ip[0] = 0x46;
        ip.extend_from_slice(&[0x10, 0x00, 0x00, 0x50]);
        let p = parse(LINK_RAW, &ip).unwrap();
        assert_eq!((p.src_port, p.dst_port), (0x1000, 0x50));
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        // Hop-by-hop (8 bytes) then UDP.
        let mut rest = vec![17, 0, 0, 0, 0, 0, 0, 0];
        rest.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb, 0, 8, 0, 0]);
        let p = parse(LINK_RAW, &v6(0, 16, &rest)).unwrap();
        assert_eq!(
            (p.protocol, p.src_port, p.dst_port, p.ip_len),
            (17, 12345, 443, 56)
        );
        // First fragment carries ports, a later one does not.
        let mut first = vec![6, 0, 0, 0, 0, 0, 0, 1];
        first.extend_from_slice(&[0x00, 0x50, 0x9c, 0x40]);
        let p = parse(LINK_RAW, &v6(44, 1240, &first)).unwrap();
        assert_eq!((p.protocol, p.src_port, p.dst_port), (6, 80, 40000));
        let mut later = vec![6, 0, 0x05, 0x00, 0, 0, 0, 1];
        later.extend_from_slice(&[0x00, 0x50, 0x9c, 0x40]);
        let p = parse(LINK_RAW, &v6(44, 1240, &later)).unwrap();
        assert_eq!(
            (p.protocol, p.src_port, p.dst_port, p.ip_len),
            (6, 0, 0, 1280)
        );
        // ICMPv6 echo reply.
        let p = parse(LINK_RAW, &v6(58, 8, &[129, 0, 0, 0])).unwrap();
        assert_eq!(p.dst_port, 129 << 8);
    }

    #[test]
    fn bad_frames_are_skipped_with_a_reason() {
        assert_eq!(parse(LINK_ETHERNET, &[0; 5]), Err(Skip::Truncated));
        assert_eq!(
            parse(LINK_ETHERNET, &eth(0x0806, &[], &[0; 28])),
            Err(Skip::NotIp)
        );
        assert_eq!(
            parse(LINK_ETHERNET, &eth(0x0800, &[], &[0x45; 10])),
            Err(Skip::Truncated)
        );
        let mut bad = v4(17, 0, 40, &[0; 8]);
        bad[0] = 0x43; // IHL 3
        assert_eq!(parse(LINK_RAW, &bad), Err(Skip::Malformed));
        assert_eq!(parse(LINK_RAW, &[0x50; 40]), Err(Skip::Malformed));
        assert_eq!(parse(9999, &[0; 64]), Err(Skip::UnknownLink));
        assert_eq!(
            parse(
                LINK_ETHERNET,
                &eth(0x8100, &[0x8100, 0x8100, 0x8100], &[0; 40])
            ),
            Err(Skip::Malformed)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200_000 {
            let len = (next() % 200) as usize;
            let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the frames start as plausible IP so the deep paths run.
            if i % 2 == 0 && !f.is_empty() {
                f[0] = if i % 4 == 0 { 0x45 } else { 0x60 };
            }
            for link in [
                LINK_ETHERNET,
                LINK_RAW,
                LINK_LINUX_SLL,
                LINK_LINUX_SLL2,
                LINK_NULL,
            ] {
                let _ = parse(link, &f);
            }
        }
    }
}
