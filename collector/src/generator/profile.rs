//! What the generated traffic looks like: [`GenProfile`] and its parts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::GenError;
use crate::record::FlowDirection;

/// Most subscribers a profile may name (keeps per-subscriber tables small).
pub const MAX_SUBSCRIBERS: u32 = 1 << 24;
/// Fastest simulated flow rate a profile may ask for, flows per second.
pub const MAX_FLOWS_PER_S: u64 = 1_000_000_000;
/// Longest flow a profile may ask for (an hour: beyond any active timeout).
pub const MAX_FLOW_DURATION_MS: u32 = 3_600_000;
/// Latest start time a profile may name: 2100-01-01T00:00:00Z. Leaves room
/// for v5/v9 `unix_secs` (u32 seconds) for decades of simulated time.
pub const MAX_START_MS: i64 = 4_102_444_800_000;
/// Most remote networks or interface indexes a profile may list.
pub const MAX_TABLE_LEN: usize = 4096;

/// Default start of simulated time: 2024-01-01T00:00:00Z.
pub const DEFAULT_START_MS: i64 = 1_704_067_200_000;
pub const DEFAULT_SUBSCRIBERS: u32 = 1000;
pub const DEFAULT_IPV6_SHARE_PERCENT: u8 = 10;
pub const DEFAULT_UPLOAD_SHARE_PERCENT: u8 = 40;
pub const DEFAULT_FLOWS_PER_S: u64 = 10_000;
pub const DEFAULT_MAX_FLOW_DURATION_MS: u32 = 120_000;

/// An IP prefix (`10.0.0.0/16`, `2001:db8::/32`). Host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Prefix {
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> Prefix {
        Prefix {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix_len,
        }
    }

    pub const fn v6(segments: [u16; 8], prefix_len: u8) -> Prefix {
        let [a, b, c, d, e, f, g, h] = segments;
        Prefix {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix_len,
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// Address width in bits: 32 or 128.
    pub fn width_bits(&self) -> u8 {
        if self.is_ipv6() { 128 } else { 32 }
    }

    /// Bits left for hosts (and subnets) below the prefix.
    pub fn host_bits(&self) -> u8 {
        self.width_bits().saturating_sub(self.prefix_len)
    }

    fn bits(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn host_mask(&self) -> u128 {
        mask_low(self.host_bits())
    }

    /// Whether `a` lies inside this prefix.
    pub fn contains(&self, a: IpAddr) -> bool {
        if a.is_ipv6() != self.is_ipv6() {
            return false;
        }
        let bits = match a {
            IpAddr::V4(v) => u128::from(u32::from(v)),
            IpAddr::V6(v) => u128::from(v),
        };
        bits & !self.host_mask() == self.bits()
    }

    fn overlaps(&self, other: &Prefix) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// Network address plus `offset` (wrapping inside the prefix).
    pub(crate) fn at(&self, offset: u128) -> IpAddr {
        let bits = self.bits() | (offset & self.host_mask());
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
        }
    }

    fn check(&self, key: &'static str) -> Result<(), GenError> {
        if self.prefix_len > self.width_bits() {
            return Err(GenError::profile(
                key,
                format!(
                    "prefix length {} is longer than the address",
                    self.prefix_len
                ),
            ));
        }
        if self.bits() & self.host_mask() != 0 {
            return Err(GenError::profile(
                key,
                format!("{self} has host bits set; expected a network address"),
            ));
        }
        Ok(())
    }
}

/// All-ones in the low `n` bits (`n` ≤ 128).
fn mask_low(n: u8) -> u128 {
    match n {
        0 => 0,
        128.. => u128::MAX,
        n => (1u128 << n) - 1,
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Prefix {
    type Err = GenError;

    fn from_str(s: &str) -> Result<Prefix, GenError> {
        let bad = || GenError::profile("prefix", format!("{s:?} is not ADDRESS/LENGTH"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        let p = Prefix { addr, prefix_len };
        p.check("prefix")?;
        Ok(p)
    }
}

/// What kind of network a remote prefix stands for (for readers of the
/// traffic; the generator treats both alike apart from their weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteKind {
    /// Reached over a peering link (IX, CDN cache, private interconnect).
    Peering,
    /// Reached over a transit link.
    Internet,
}

/// A remote network the subscribers talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNet {
    pub prefix: Prefix,
    pub kind: RemoteKind,
    /// Relative share of flows of the prefix's address family. > 0.
    pub weight: u32,
    /// Router interface (SNMP ifIndex) toward this network: the output
    /// interface of uploads, the input interface of downloads.
    pub uplink_ifindex: u32,
}

/// Everything that shapes the generated flows. Validated by
/// [`FlowGen::new`](super::FlowGen::new); every field has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenProfile {
    /// Subscribers' IPv4 network; subscriber `i` is network + 1 + `i`.
    pub subscriber_v4: Prefix,
    /// Subscribers' IPv6 network; subscriber `i` gets the `i`-th /64 in it,
    /// with a pseudo-random interface id per flow (privacy addresses).
    pub subscriber_v6: Prefix,
    /// Number of subscribers, 1..=[`MAX_SUBSCRIBERS`] and fitting both
    /// subscriber networks.
    pub subscribers: u32,
    /// Subscriber-facing router interfaces; subscriber `i` sits behind
    /// `subscriber_ifindexes[i % len]`.
    pub subscriber_ifindexes: Vec<u32>,
    /// Remote networks, IPv4 and IPv6; must not overlap subscriber networks.
    pub remote_nets: Vec<RemoteNet>,
    /// Share of flows that are IPv6, 0..=100.
    pub ipv6_share_percent: u8,
    /// Share of flows sent by the subscriber (upload); the rest are
    /// received (download). 0..=100.
    pub upload_share_percent: u8,
    /// Simulated time of the first flow's end, ms since the epoch (UTC).
    pub start_ms: i64,
    /// Flows ending per second of simulated time: flow `k` ends at
    /// `start_ms + k * 1000 / flows_per_s`.
    pub flows_per_s: u64,
    /// Longest flow, ms. Durations are spread over 0..=this.
    pub max_flow_duration_ms: u32,
    /// flowDirection every flow carries (ingress-only export by default).
    pub flow_direction: FlowDirection,
}

impl Default for GenProfile {
    fn default() -> GenProfile {
        let remote = |prefix, kind, weight, uplink_ifindex| RemoteNet {
            prefix,
            kind,
            weight,
            uplink_ifindex,
        };
        GenProfile {
            subscriber_v4: Prefix::v4(10, 0, 0, 0, 16),
            subscriber_v6: Prefix::v6([0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0], 48),
            subscribers: DEFAULT_SUBSCRIBERS,
            subscriber_ifindexes: vec![1, 2, 3, 4],
            remote_nets: vec![
                // A CDN cache and an IX route server's members.
                remote(Prefix::v4(198, 51, 100, 0, 24), RemoteKind::Peering, 25, 10),
                remote(Prefix::v4(192, 0, 2, 0, 24), RemoteKind::Peering, 10, 11),
                // "The internet" behind two transits (RFC 2544 + TEST-NET-3).
                remote(Prefix::v4(198, 18, 0, 0, 15), RemoteKind::Internet, 50, 20),
                remote(Prefix::v4(203, 0, 113, 0, 24), RemoteKind::Internet, 15, 21),
                remote(
                    Prefix::v6([0x2001, 0xdb8, 0xca1, 0, 0, 0, 0, 0], 48),
                    RemoteKind::Peering,
                    40,
                    10,
                ),
                remote(
                    Prefix::v6([0x2001, 0xdb8, 0xf000, 0, 0, 0, 0, 0], 36),
                    RemoteKind::Internet,
                    60,
                    20,
                ),
            ],
            ipv6_share_percent: DEFAULT_IPV6_SHARE_PERCENT,
            upload_share_percent: DEFAULT_UPLOAD_SHARE_PERCENT,
            start_ms: DEFAULT_START_MS,
            flows_per_s: DEFAULT_FLOWS_PER_S,
            max_flow_duration_ms: DEFAULT_MAX_FLOW_DURATION_MS,
            flow_direction: FlowDirection::Ingress,
        }
    }
}

impl GenProfile {
    /// Checks every field; the error names the first offending key.
    pub fn validate(&self) -> Result<(), GenError> {
        self.subscriber_v4.check("subscriber_v4")?;
        self.subscriber_v6.check("subscriber_v6")?;
        if self.subscriber_v4.is_ipv6() {
            return Err(GenError::profile("subscriber_v4", "must be an IPv4 prefix"));
        }
        if !self.subscriber_v6.is_ipv6() {
            return Err(GenError::profile("subscriber_v6", "must be an IPv6 prefix"));
        }
        if self.subscriber_v6.prefix_len > 64 {
            return Err(GenError::profile(
                "subscriber_v6",
                "must be /64 or shorter (each subscriber gets a /64)",
            ));
        }
        if self.subscribers == 0 || self.subscribers > MAX_SUBSCRIBERS {
            return Err(GenError::profile(
                "subscribers",
                format!("must be 1..={MAX_SUBSCRIBERS}"),
            ));
        }
        // IPv4: network and broadcast addresses stay unused.
        let v4_hosts = mask_low(self.subscriber_v4.host_bits()).saturating_sub(1);
        if u128::from(self.subscribers) > v4_hosts {
            return Err(GenError::profile(
                "subscribers",
                format!(
                    "{} subscribers do not fit {} ({v4_hosts} host addresses)",
                    self.subscribers, self.subscriber_v4
                ),
            ));
        }
        let v6_nets = mask_low(64 - self.subscriber_v6.prefix_len).saturating_add(1);
        if u128::from(self.subscribers) > v6_nets {
            return Err(GenError::profile(
                "subscribers",
                format!(
                    "{} subscribers do not fit {} ({v6_nets} /64 networks)",
                    self.subscribers, self.subscriber_v6
                ),
            ));
        }
        if self.subscriber_ifindexes.is_empty() || self.subscriber_ifindexes.len() > MAX_TABLE_LEN {
            return Err(GenError::profile(
                "subscriber_ifindexes",
                format!("must list 1..={MAX_TABLE_LEN} interface indexes"),
            ));
        }
        if self.remote_nets.len() > MAX_TABLE_LEN {
            return Err(GenError::profile(
                "remote_nets",
                format!("at most {MAX_TABLE_LEN} networks"),
            ));
        }
        for net in &self.remote_nets {
            net.prefix.check("remote_nets.prefix")?;
            if net.weight == 0 {
                return Err(GenError::profile(
                    "remote_nets.weight",
                    format!("{}: weight must be > 0", net.prefix),
                ));
            }
            for sub in [&self.subscriber_v4, &self.subscriber_v6] {
                if net.prefix.overlaps(sub) {
                    return Err(GenError::profile(
                        "remote_nets.prefix",
                        format!("{} overlaps subscriber network {sub}", net.prefix),
                    ));
                }
            }
        }
        if self.ipv6_share_percent > 100 {
            return Err(GenError::profile("ipv6_share_percent", "must be 0..=100"));
        }
        if self.upload_share_percent > 100 {
            return Err(GenError::profile("upload_share_percent", "must be 0..=100"));
        }
        let has_v4 = self.remote_nets.iter().any(|n| !n.prefix.is_ipv6());
        let has_v6 = self.remote_nets.iter().any(|n| n.prefix.is_ipv6());
        if self.ipv6_share_percent < 100 && !has_v4 {
            return Err(GenError::profile(
                "remote_nets",
                "no IPv4 network, but ipv6_share_percent < 100",
            ));
        }
        if self.ipv6_share_percent > 0 && !has_v6 {
            return Err(GenError::profile(
                "remote_nets",
                "no IPv6 network, but ipv6_share_percent > 0",
            ));
        }
        if !(0..=MAX_START_MS).contains(&self.start_ms) {
            return Err(GenError::profile(
                "start_ms",
                format!("must be 0..={MAX_START_MS} (1970..2100)"),
            ));
        }
        if self.flows_per_s == 0 || self.flows_per_s > MAX_FLOWS_PER_S {
            return Err(GenError::profile(
                "flows_per_s",
                format!("must be 1..={MAX_FLOWS_PER_S}"),
            ));
        }
        if self.max_flow_duration_ms > MAX_FLOW_DURATION_MS {
            return Err(GenError::profile(
                "max_flow_duration_ms",
                format!("must be 0..={MAX_FLOW_DURATION_MS}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_is_valid() {
        GenProfile::default().validate().unwrap();
    }

    #[test]
    fn prefixes_parse_and_check() {
        let p: Prefix = "10.0.0.0/16".parse().unwrap();
        assert_eq!(p, Prefix::v4(10, 0, 0, 0, 16));
        assert!(p.contains("10.0.255.255".parse().unwrap()));
        assert!(!p.contains("10.1.0.0".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        assert_eq!(p.at(258), "10.0.1.2".parse::<IpAddr>().unwrap());
        for bad in ["10.0.0.1/16", "10.0.0.0/33", "10.0.0.0", "x/8", "::/129"] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        let z: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("1.2.3.4".parse().unwrap()));
        let z6: Prefix = "::/0".parse().unwrap();
        assert!(z6.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn bad_profiles_name_their_key() {
        type Mutate = fn(&mut GenProfile);
        let cases: Vec<(&str, Mutate)> = vec![
            ("subscribers", |p| p.subscribers = 0),
            ("subscribers", |p| p.subscribers = 70_000),
            ("subscribers", |p| p.subscribers = u32::MAX),
            ("subscriber_v4", |p| {
                p.subscriber_v4 = Prefix::v4(10, 0, 0, 1, 16)
            }),
            ("subscriber_v4", |p| {
                p.subscriber_v4 = Prefix::v4(10, 0, 0, 0, 40)
            }),
            ("subscriber_v6", |p| {
                p.subscriber_v6 = Prefix::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 80)
            }),
            ("subscriber_v6", |p| {
                p.subscriber_v6 = Prefix::v4(10, 0, 0, 0, 8)
            }),
            ("subscriber_ifindexes", |p| p.subscriber_ifindexes.clear()),
            ("remote_nets.weight", |p| p.remote_nets[0].weight = 0),
            ("remote_nets.prefix", |p| {
                p.remote_nets[0].prefix = Prefix::v4(10, 0, 5, 0, 24)
            }),
            ("remote_nets", |p| {
                p.remote_nets.retain(|n| n.prefix.is_ipv6())
            }),
            ("remote_nets", |p| {
                p.remote_nets.retain(|n| !n.prefix.is_ipv6())
            }),
            ("ipv6_share_percent", |p| p.ipv6_share_percent = 101),
            ("upload_share_percent", |p| p.upload_share_percent = 200),
            ("start_ms", |p| p.start_ms = -1),
            ("start_ms", |p| p.start_ms = i64::MAX),
            ("flows_per_s", |p| p.flows_per_s = 0),
            ("flows_per_s", |p| p.flows_per_s = u64::MAX),
            ("max_flow_duration_ms", |p| {
                p.max_flow_duration_ms = u32::MAX
            }),
        ];
        for (key, mutate) in cases {
            let mut p = GenProfile::default();
            mutate(&mut p);
            let err = p.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        // Edge cases that are fine.
        let mut p = GenProfile {
            ipv6_share_percent: 0,
            ..GenProfile::default()
        };
        p.remote_nets.retain(|n| !n.prefix.is_ipv6());
        p.validate().unwrap();
        p.subscriber_v4 = Prefix::v4(10, 0, 0, 0, 30);
        p.subscribers = 2;
        p.max_flow_duration_ms = 0;
        p.validate().unwrap();
    }
}
