//! [`FlowGen`]: a seeded, deterministic stream of plausible subscriber flows.

use std::net::IpAddr;

use super::GenError;
use super::prng::SplitMix64;
use super::profile::{GenProfile, Prefix};
use crate::record::{FlowRecord, SourceKind};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Ephemeral ports of subscriber hosts (Linux default range).
const EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);
/// Share of flows that come from the heaviest 5 % of subscribers.
const HEAVY_SUBSCRIBER_SHARE_PERCENT: u8 = 20;
/// Fastest packet rate of one flow, packets per ms (100 kpps).
const MAX_PACKETS_PER_MS: u64 = 100;

/// One kind of remote service and the shape of its flows.
struct Service {
    protocol: u8,
    /// Server port; 0 = a random high port (peer-to-peer).
    port: u16,
    weight: u64,
    max_packets: u64,
    /// Average packet size range, bytes, of flows toward the subscriber.
    download_packet_bytes: (u64, u64),
    /// Same for flows from the subscriber.
    upload_packet_bytes: (u64, u64),
}

const fn svc(
    protocol: u8,
    port: u16,
    weight: u64,
    max_packets: u64,
    download_packet_bytes: (u64, u64),
    upload_packet_bytes: (u64, u64),
) -> Service {
    Service {
        protocol,
        port,
        weight,
        max_packets,
        download_packet_bytes,
        upload_packet_bytes,
    }
}

/// The service mix: web and QUIC dominate, DNS is frequent and tiny.
const SERVICES: [Service; 11] = [
    svc(PROTO_TCP, 443, 42, 100_000, (900, 1500), (40, 300)),
    svc(PROTO_TCP, 80, 8, 100_000, (700, 1500), (40, 400)),
    svc(PROTO_UDP, 443, 15, 100_000, (1000, 1350), (60, 400)),
    svc(PROTO_UDP, 53, 14, 4, (60, 512), (50, 120)),
    svc(PROTO_UDP, 123, 2, 2, (76, 90), (76, 90)),
    svc(PROTO_ICMP, 0, 4, 20, (64, 100), (64, 100)),
    svc(PROTO_TCP, 22, 2, 20_000, (40, 1500), (40, 1500)),
    svc(PROTO_TCP, 993, 2, 2_000, (100, 1200), (40, 400)),
    svc(PROTO_TCP, 25, 1, 500, (40, 200), (200, 1500)),
    svc(PROTO_UDP, 4500, 2, 100_000, (100, 1400), (100, 1400)),
    svc(PROTO_TCP, 0, 8, 100_000, (100, 1500), (100, 1500)),
];

/// Packet-count magnitudes: weight of 1..10, 10..100, ..., 10^4..=10^5.
const PACKET_MAGNITUDE_WEIGHTS: [u64; 5] = [40, 30, 18, 9, 3];
/// Duration classes: weight of (0..=2 s), (2..=30 s), (30 s..=max).
const DURATION_CLASS_WEIGHTS: [u64; 3] = [40, 40, 20];

fn cumulative(weights: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut sum = 0u64;
    weights
        .map(|w| {
            sum = sum.saturating_add(w);
            sum
        })
        .collect()
}

/// A deterministic source of [`FlowRecord`]s: the same seed and profile give
/// the same flows, in the same order, on every platform.
///
/// Flow `k` (from 0) ends at `start_ms + k * 1000 / flows_per_s`, so the
/// flows come out ordered by end time, as an exporter expires them; its
/// start lies 0..=`max_flow_duration_ms` earlier (so early flows may start
/// before `start_ms`, like on a router that was already running).
///
/// `exporter` (unspecified), `domain` (0), `kind` and `sampling` (1) are
/// placeholders: the exporter is whoever sends the datagrams, and
/// [`Encoder::expected`](super::Encoder::expected) fills them as a decoder
/// would.
#[derive(Debug, Clone)]
pub struct FlowGen {
    rng: SplitMix64,
    profile: GenProfile,
    /// Cumulative weights of the IPv4 / IPv6 remote networks (indexes into
    /// `v4_nets` / `v6_nets`).
    v4_nets: Vec<usize>,
    v4_cum: Vec<u64>,
    v6_nets: Vec<usize>,
    v6_cum: Vec<u64>,
    service_cum: Vec<u64>,
    magnitude_cum: Vec<u64>,
    duration_cum: Vec<u64>,
    generated: u64,
    now_ms: i64,
}

impl FlowGen {
    pub fn new(seed: u64, profile: GenProfile) -> Result<FlowGen, GenError> {
        profile.validate()?;
        let family = |v6: bool| -> (Vec<usize>, Vec<u64>) {
            let idx: Vec<usize> = (0..profile.remote_nets.len())
                .filter(|&i| profile.remote_nets[i].prefix.is_ipv6() == v6)
                .collect();
            let cum = cumulative(
                idx.iter()
                    .map(|&i| u64::from(profile.remote_nets[i].weight)),
            );
            (idx, cum)
        };
        let (v4_nets, v4_cum) = family(false);
        let (v6_nets, v6_cum) = family(true);
        Ok(FlowGen {
            rng: SplitMix64::new(seed),
            v4_nets,
            v4_cum,
            v6_nets,
            v6_cum,
            service_cum: cumulative(SERVICES.iter().map(|s| s.weight)),
            magnitude_cum: cumulative(PACKET_MAGNITUDE_WEIGHTS.into_iter()),
            duration_cum: cumulative(DURATION_CLASS_WEIGHTS.into_iter()),
            generated: 0,
            now_ms: profile.start_ms,
            profile,
        })
    }

    pub fn profile(&self) -> &GenProfile {
        &self.profile
    }

    /// Flows generated so far.
    pub fn flows_generated(&self) -> u64 {
        self.generated
    }

    /// End time of the latest generated flow (`start_ms` before the first):
    /// a fitting export time for everything generated so far.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Appends `n` flows to `out`.
    pub fn fill(&mut self, out: &mut Vec<FlowRecord>, n: usize) {
        out.reserve(n);
        for _ in 0..n {
            out.push(self.next_flow());
        }
    }

    /// End time of flow number `k`.
    fn end_ms_of(&self, k: u64) -> i64 {
        let offset_ms = u128::from(k) * 1000 / u128::from(self.profile.flows_per_s);
        let offset_ms = i64::try_from(offset_ms).unwrap_or(i64::MAX);
        self.profile.start_ms.saturating_add(offset_ms)
    }

    pub fn next_flow(&mut self) -> FlowRecord {
        let last_ms = self.end_ms_of(self.generated);
        self.generated += 1;
        self.now_ms = last_ms;
        let p = &self.profile;
        let rng = &mut self.rng;

        // Who: a subscriber, skewed toward a heavy 5 %.
        let subs = u64::from(p.subscribers);
        let sub = if rng.percent(HEAVY_SUBSCRIBER_SHARE_PERCENT) {
            rng.below((subs / 20).max(1))
        } else {
            rng.below(subs)
        };
        let v6 = rng.percent(p.ipv6_share_percent);
        let upload = rng.percent(p.upload_share_percent);

        // Where: a remote network of the same family, by weight.
        let (nets, cum) = if v6 {
            (&self.v6_nets, &self.v6_cum)
        } else {
            (&self.v4_nets, &self.v4_cum)
        };
        let net = &p.remote_nets[nets[rng.pick_cumulative(cum)]];
        let (subscriber_addr, remote_addr) = if v6 {
            let slash64 = p.subscriber_v6.at(u128::from(sub) << 64);
            let iid = u128::from(rng.next_u64() | 1);
            let sub_addr = Prefix {
                addr: slash64,
                prefix_len: 64,
            }
            .at(iid);
            (sub_addr, random_host(rng, &net.prefix))
        } else {
            let sub_addr = p.subscriber_v4.at(u128::from(sub) + 1);
            (sub_addr, random_host(rng, &net.prefix))
        };

        // What: a service, its ports and its volumes.
        let service = &SERVICES[rng.pick_cumulative(&self.service_cum)];
        let protocol = match (service.protocol, v6) {
            (PROTO_ICMP, true) => PROTO_ICMPV6,
            (proto, _) => proto,
        };
        let ephemeral =
            rng.between(u64::from(EPHEMERAL_PORTS.0), u64::from(EPHEMERAL_PORTS.1)) as u16;
        let server_port = match service.port {
            0 => rng.between(1024, 65535) as u16,
            port => port,
        };
        let magnitude = rng.pick_cumulative(&self.magnitude_cum) as u32;
        let lo = 10u64.pow(magnitude);
        let packets = rng.between(lo, lo * 10).min(service.max_packets);
        let size_range = if upload {
            service.upload_packet_bytes
        } else {
            service.download_packet_bytes
        };
        let bytes = packets * rng.between(size_range.0, size_range.1);

        // When: single packets have no duration; fast flows need time.
        let max_ms = u64::from(p.max_flow_duration_ms);
        let duration_ms = if packets <= 1 {
            0
        } else {
            let drawn = match rng.pick_cumulative(&self.duration_cum) {
                0 => rng.between(0, 2_000),
                1 => rng.between(2_000, 30_000),
                _ => rng.between(30_000, max_ms),
            };
            drawn.max(packets / MAX_PACKETS_PER_MS).min(max_ms)
        };
        let first_ms = last_ms.saturating_sub(duration_ms as i64);

        // ICMP carries type/code in the destination port, as Cisco does:
        // echo request (8/0) up, echo reply (0/0) down.
        let (sub_port, remote_port) = if service.protocol == PROTO_ICMP {
            let echo = if upload {
                if v6 { 128 } else { 8 }
            } else if v6 {
                129
            } else {
                0
            };
            (0, echo << 8)
        } else {
            (ephemeral, server_port)
        };
        let sub_ifindex = p.subscriber_ifindexes[(sub as usize) % p.subscriber_ifindexes.len()];

        let mut r = FlowRecord::empty(SourceKind::Ipfix);
        r.first_ms = first_ms;
        r.last_ms = last_ms;
        r.protocol = protocol;
        r.direction = p.flow_direction;
        r.bytes_raw = bytes;
        r.packets_raw = packets;
        if upload {
            r.src = subscriber_addr;
            r.dst = remote_addr;
            r.src_port = sub_port;
            r.dst_port = remote_port;
            r.in_if = sub_ifindex;
            r.out_if = net.uplink_ifindex;
        } else {
            r.src = remote_addr;
            r.dst = subscriber_addr;
            // ICMP replies: type/code stays in the destination port.
            if service.protocol == PROTO_ICMP {
                r.dst_port = remote_port;
            } else {
                r.src_port = remote_port;
                r.dst_port = sub_port;
            }
            r.in_if = net.uplink_ifindex;
            r.out_if = sub_ifindex;
        }
        r
    }
}

impl Iterator for FlowGen {
    type Item = FlowRecord;

    fn next(&mut self) -> Option<FlowRecord> {
        Some(self.next_flow())
    }
}

/// A host address inside `prefix`, avoiding the all-zeros and all-ones
/// host parts when the prefix has room for others.
fn random_host(rng: &mut SplitMix64, prefix: &Prefix) -> IpAddr {
    let host_bits = prefix.host_bits();
    let offset = match host_bits {
        0 => 0,
        1 => u128::from(rng.below(2)),
        2..=63 => u128::from(rng.between(1, (1u64 << host_bits) - 2)),
        _ => {
            let hi = u128::from(rng.next_u64()) << 64;
            (hi | u128::from(rng.next_u64())) | 1
        }
    };
    prefix.at(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FlowDirection;

    fn gen_n(seed: u64, profile: GenProfile, n: usize) -> Vec<FlowRecord> {
        let mut g = FlowGen::new(seed, profile).unwrap();
        let mut v = Vec::new();
        g.fill(&mut v, n);
        v
    }

    #[test]
    fn same_seed_same_flows_other_seed_other_flows() {
        let a = gen_n(42, GenProfile::default(), 2000);
        let b = gen_n(42, GenProfile::default(), 2000);
        let c = gen_n(43, GenProfile::default(), 2000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let it: Vec<FlowRecord> = FlowGen::new(42, GenProfile::default())
            .unwrap()
            .take(2000)
            .collect();
        assert_eq!(a, it);
    }

    #[test]
    fn flows_follow_the_profile() {
        let p = GenProfile::default();
        let flows = gen_n(1, p.clone(), 50_000);
        let (mut v6, mut up, mut crossing, mut icmp, mut udp, mut tcp) = (0, 0, 0, 0, 0, 0);
        let mut prev_last = i64::MIN;
        for (k, f) in flows.iter().enumerate() {
            assert_eq!(f.last_ms, p.start_ms + (k as i64) * 1000 / 10_000);
            assert!(f.last_ms >= prev_last);
            prev_last = f.last_ms;
            assert!(f.first_ms <= f.last_ms);
            assert!(f.last_ms - f.first_ms <= 120_000);
            assert!((1..=100_000).contains(&f.packets_raw), "{f:?}");
            assert!(f.bytes_raw >= f.packets_raw * 40 && f.bytes_raw <= f.packets_raw * 1500);
            assert_eq!(f.src.is_ipv6(), f.dst.is_ipv6());
            assert_eq!(f.direction, FlowDirection::Ingress);
            let src_is_sub = p.subscriber_v4.contains(f.src) || p.subscriber_v6.contains(f.src);
            let dst_is_sub = p.subscriber_v4.contains(f.dst) || p.subscriber_v6.contains(f.dst);
            assert!(src_is_sub != dst_is_sub, "{f:?}");
            let remote = if src_is_sub { f.dst } else { f.src };
            assert!(
                p.remote_nets.iter().any(|n| n.prefix.contains(remote)),
                "{f:?}"
            );
            if src_is_sub {
                up += 1;
                assert!([1, 2, 3, 4].contains(&f.in_if));
                assert!([10, 11, 20, 21].contains(&f.out_if));
            } else {
                assert!([1, 2, 3, 4].contains(&f.out_if));
                assert!([10, 11, 20, 21].contains(&f.in_if));
            }
            match f.protocol {
                PROTO_TCP | PROTO_UDP => {
                    let (sub_port, remote_port) = if src_is_sub {
                        (f.src_port, f.dst_port)
                    } else {
                        (f.dst_port, f.src_port)
                    };
                    assert!((32768..=60999).contains(&sub_port));
                    assert!(remote_port > 0);
                    if f.protocol == PROTO_TCP {
                        tcp += 1;
                    } else {
                        udp += 1;
                    }
                }
                PROTO_ICMP | PROTO_ICMPV6 => {
                    icmp += 1;
                    assert_eq!(f.src_port, 0);
                }
                other => panic!("protocol {other}"),
            }
            if f.src.is_ipv6() {
                v6 += 1;
            }
            if f.first_ms / 300_000 != f.last_ms / 300_000 {
                crossing += 1;
            }
        }
        // Shares within a few percent of the profile's.
        assert!((4_000..6_000).contains(&v6), "ipv6 {v6}");
        assert!((18_000..22_000).contains(&up), "upload {up}");
        assert!(crossing > 100, "crossing 5-minute boundaries: {crossing}");
        assert!(
            icmp > 1000 && udp > 10_000 && tcp > 20_000,
            "{icmp} {udp} {tcp}"
        );
    }

    #[test]
    fn extreme_profiles_do_not_panic() {
        let mut p = GenProfile {
            subscriber_v4: Prefix::v4(10, 0, 0, 0, 30),
            subscriber_v6: Prefix::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 64),
            subscribers: 1,
            ipv6_share_percent: 100,
            upload_share_percent: 100,
            flows_per_s: 1,
            max_flow_duration_ms: 0,
            start_ms: super::super::profile::MAX_START_MS,
            ..GenProfile::default()
        };
        p.remote_nets[4].prefix = Prefix::v6([0x2001, 0xdb8, 0xca1, 0, 0, 0, 0, 1], 128);
        p.remote_nets[5].prefix = "8000::/1".parse().unwrap();
        p.remote_nets[0].prefix = Prefix::v4(198, 51, 100, 7, 32);
        let flows = gen_n(9, p.clone(), 5000);
        assert!(
            flows
                .iter()
                .all(|f| f.src.is_ipv6() && f.first_ms == f.last_ms)
        );
        p.ipv6_share_percent = 0;
        p.flows_per_s = super::super::profile::MAX_FLOWS_PER_S;
        let flows = gen_n(9, p, 5000);
        assert!(
            flows
                .iter()
                .all(|f| f.src == "10.0.0.1".parse::<IpAddr>().unwrap())
        );
    }
}
