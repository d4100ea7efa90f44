//! Per-tariff speed caps: nftables policing of every capped host.
//!
//! A tariff's `[rate_limit]` (`down_kbit`, `up_kbit`) reaches the core's
//! `shaping` table for every account on that tariff; the enforcer caps
//! each allowed host (/32, /128) of such an account:
//!
//! ```text
//! map rl_in4 { type ipv4_addr : verdict; }    # host -> jump rl_in_<kbit>
//! map rl_out4 { type ipv4_addr : verdict; }   # host -> jump rl_out_<kbit>
//! (and rl_in6, rl_out6)
//! chain forward { ...drops...; ip daddr vmap @rl_in4; ip saddr vmap @rl_out4; ...; counters }
//! set rlm_in_<kbit>_4 { type ipv4_addr; size 1048576; flags dynamic, timeout; timeout 60s; }
//! chain rl_in_<kbit> {
//!     update @rlm_in_<kbit>_4 { ip daddr limit rate over <kbit×125> bytes/second } counter drop
//!     update @rlm_in_<kbit>_6 { ip6 daddr limit rate over ... } counter drop
//! }
//! ```
//!
//! One chain per direction and distinct rate (tariffs share them), one
//! token bucket per host in the chain's dynamic set: every host gets the
//! whole cap for itself. This is policing (packets over the rate are
//! dropped, TCP backs off to about the rate), not queueing; an admin who
//! wants shaping with queues uses the tc hook (docs/enforcer.md). Packets
//! the policer drops are not counted by the per-host counters (the policer
//! runs first). Prefixes (interval elements) are not capped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;
use kopek_config::EnforcerConfig;

use crate::EnforcerError;

/// A host's caps in kbit/s (1000 bit/s), each direction optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Caps {
    /// Towards the subscriber.
    pub down_kbit: Option<u32>,
    /// From the subscriber.
    pub up_kbit: Option<u32>,
}

/// Elements of one policer's dynamic set (one per host using the rate).
const METER_SIZE: u32 = 1 << 20;
/// A host's bucket is forgotten after this long without a packet.
const METER_TIMEOUT_S: u32 = 60;

/// Bytes per second of a cap.
pub fn bytes_per_s(kbit: u32) -> u64 {
    u64::from(kbit) * 125
}

/// What a policer lets through at once after a quiet while: the kernel's
/// bucket (nft_limit) holds one time unit (a second) at the rate plus the
/// configured burst, and kopek configures no extra burst. One second at
/// the rate is the classic bucket for policing TCP (a smaller one cuts
/// every window opening and TCP settles far under the cap).
pub fn bucket_bytes(kbit: u32) -> u64 {
    bytes_per_s(kbit)
}

fn chain_name(inbound: bool, kbit: u32) -> String {
    format!("rl_{}_{kbit}", if inbound { "in" } else { "out" })
}

/// The maps and the forward-chain rules of the base table.
pub fn base_maps() -> &'static str {
    "\tmap rl_in4 { type ipv4_addr : verdict; }\n\
     \tmap rl_out4 { type ipv4_addr : verdict; }\n\
     \tmap rl_in6 { type ipv6_addr : verdict; }\n\
     \tmap rl_out6 { type ipv6_addr : verdict; }\n"
}

/// Forward-chain rules sending capped hosts' packets to their policer.
pub fn forward_rules() -> &'static str {
    "\t\tip daddr vmap @rl_in4\n\
     \t\tip saddr vmap @rl_out4\n\
     \t\tip6 daddr vmap @rl_in6\n\
     \t\tip6 saddr vmap @rl_out6\n"
}

/// Lines creating (or re-creating, idempotently) the policer of one
/// direction and rate: its dynamic sets survive, its chain is rewritten.
fn policer_lines(table: &str, inbound: bool, kbit: u32, out: &mut String) {
    let chain = chain_name(inbound, kbit);
    let dir = if inbound { "in" } else { "out" };
    let field = if inbound { "daddr" } else { "saddr" };
    let rate = bytes_per_s(kbit);
    for (fam, ty) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
        out.push_str(&format!(
            "add set inet {table} rlm_{dir}_{kbit}_{fam} {{ type {ty}; size {METER_SIZE}; flags dynamic, timeout; timeout {METER_TIMEOUT_S}s; }}\n"
        ));
    }
    out.push_str(&format!("add chain inet {table} {chain}\n"));
    out.push_str(&format!("flush chain inet {table} {chain}\n"));
    for (fam, proto) in [("4", "ip"), ("6", "ip6")] {
        out.push_str(&format!(
            "add rule inet {table} {chain} update @rlm_{dir}_{kbit}_{fam} {{ {proto} {field} limit rate over {rate} bytes/second }} counter drop\n"
        ));
    }
}

fn host(n: &IpNet) -> Option<IpAddr> {
    (n.prefix_len() == n.max_prefix_len()).then(|| n.addr())
}

fn map_of(a: IpAddr, inbound: bool) -> &'static str {
    match (a.is_ipv4(), inbound) {
        (true, true) => "rl_in4",
        (true, false) => "rl_out4",
        (false, true) => "rl_in6",
        (false, false) => "rl_out6",
    }
}

/// The (host, direction, rate) elements of a set of caps.
fn elements(caps: &[(IpNet, Caps)]) -> Vec<(IpAddr, bool, u32)> {
    let mut v = Vec::new();
    for (n, c) in caps {
        let Some(a) = host(n) else { continue };
        if let Some(k) = c.down_kbit {
            v.push((a, true, k));
        }
        if let Some(k) = c.up_kbit {
            v.push((a, false, k));
        }
    }
    v
}

/// Lines adding caps (with their policers). The hosts must not have caps
/// in the kernel already (delete them first).
pub fn add_lines(c: &EnforcerConfig, caps: &[(IpNet, Caps)], out: &mut String) {
    let els = elements(caps);
    let rates: BTreeSet<(bool, u32)> = els.iter().map(|&(_, i, k)| (i, k)).collect();
    for (inbound, kbit) in rates {
        policer_lines(&c.table, inbound, kbit, out);
    }
    for (a, inbound, kbit) in els {
        out.push_str(&format!(
            "add element inet {} {} {{ {a} : jump {} }}\n",
            c.table,
            map_of(a, inbound),
            chain_name(inbound, kbit)
        ));
    }
}

/// Lines removing caps as they are in the kernel.
pub fn delete_lines(c: &EnforcerConfig, caps: &[(IpNet, Caps)], out: &mut String) {
    for (a, inbound, _) in elements(caps) {
        out.push_str(&format!(
            "delete element inet {} {} {{ {a} }}\n",
            c.table,
            map_of(a, inbound)
        ));
    }
}

/// The caps to change: what to delete (as applied) and what to add.
pub type CapsDelta = (Vec<(IpNet, Caps)>, Vec<(IpNet, Caps)>);

/// Compares applied caps with wanted ones.
pub fn delta(applied: &BTreeMap<IpNet, Caps>, want: &BTreeMap<IpNet, Caps>) -> CapsDelta {
    let remove = applied
        .iter()
        .filter(|(n, c)| want.get(n) != Some(c))
        .map(|(n, c)| (*n, *c))
        .collect();
    let add = want
        .iter()
        .filter(|(n, c)| applied.get(n) != Some(c))
        .map(|(n, c)| (*n, *c))
        .collect();
    (remove, add)
}

/// The caps the kernel's maps hold now (empty when the table is missing).
pub fn kernel(c: &EnforcerConfig) -> Result<BTreeMap<IpNet, Caps>, EnforcerError> {
    let mut all: BTreeMap<IpNet, Caps> = BTreeMap::new();
    for map in ["rl_in4", "rl_out4", "rl_in6", "rl_out6"] {
        let out = Command::new(&c.nft)
            .args(["-j", "list", "map", "inet", &c.table, map])
            .output()
            .map_err(|e| EnforcerError::Nft(format!("running {}: {e}", c.nft.display())))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file or directory") {
                continue;
            }
            return Err(EnforcerError::Nft(format!("listing {map}: {}", err.trim())));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| EnforcerError::Nft(format!("unreadable JSON from nft: {e}")))?;
        for obj in v["nftables"].as_array().into_iter().flatten() {
            for e in obj["map"]["elem"].as_array().into_iter().flatten() {
                if let Some((a, inbound, kbit)) = parse_elem(e) {
                    let caps = all.entry(IpNet::from(a)).or_default();
                    if inbound {
                        caps.down_kbit = Some(kbit);
                    } else {
                        caps.up_kbit = Some(kbit);
                    }
                }
            }
        }
    }
    Ok(all)
}

/// `["10.1.0.5", {"jump": {"target": "rl_in_20000"}}]`.
fn parse_elem(e: &serde_json::Value) -> Option<(IpAddr, bool, u32)> {
    let pair = e.as_array()?;
    let a: IpAddr = pair.first()?.as_str()?.parse().ok()?;
    let target = pair.get(1)?.get("jump")?.get("target")?.as_str()?;
    let (dir, kbit) = target.strip_prefix("rl_")?.split_once('_')?;
    let inbound = match dir {
        "in" => true,
        "out" => false,
        _ => return None,
    };
    Some((a, inbound, kbit.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EnforcerConfig {
        EnforcerConfig {
            table: "kopek".into(),
            networks: vec!["10.1.0.0/16".parse().unwrap()],
            walled_garden: vec![],
            lease: std::time::Duration::from_secs(120),
            renew: std::time::Duration::from_secs(30),
            poll_interval: std::time::Duration::from_millis(200),
            nft: "/usr/sbin/nft".into(),
            counters_poll: None,
            counters_by_class: false,
        }
    }

    #[test]
    fn caps_become_policers_and_map_elements() {
        let caps = vec![
            (
                "10.1.0.5/32".parse().unwrap(),
                Caps {
                    down_kbit: Some(8000),
                    up_kbit: Some(2000),
                },
            ),
            (
                "2001:db8::5/128".parse().unwrap(),
                Caps {
                    down_kbit: Some(8000),
                    up_kbit: None,
                },
            ),
            // Prefixes are not capped.
            (
                "10.1.2.0/24".parse().unwrap(),
                Caps {
                    down_kbit: Some(8000),
                    up_kbit: None,
                },
            ),
        ];
        let mut b = String::new();
        add_lines(&cfg(), &caps, &mut b);
        // One policer per direction and rate, however many hosts use it.
        assert_eq!(b.matches("add chain inet kopek rl_in_8000\n").count(), 1);
        assert_eq!(b.matches("add chain inet kopek rl_out_2000\n").count(), 1);
        assert!(b.contains(
            "add rule inet kopek rl_in_8000 update @rlm_in_8000_4 { ip daddr limit rate over 1000000 bytes/second } counter drop\n"
        ));
        assert!(b.contains(
            "add rule inet kopek rl_out_2000 update @rlm_out_2000_6 { ip6 saddr limit rate over 250000 bytes/second } counter drop\n"
        ));
        assert!(b.contains("add element inet kopek rl_in4 { 10.1.0.5 : jump rl_in_8000 }\n"));
        assert!(b.contains("add element inet kopek rl_out4 { 10.1.0.5 : jump rl_out_2000 }\n"));
        assert!(b.contains("add element inet kopek rl_in6 { 2001:db8::5 : jump rl_in_8000 }\n"));
        assert!(!b.contains("10.1.2.0"));
        let mut d = String::new();
        delete_lines(&cfg(), &caps[..1], &mut d);
        assert_eq!(
            d,
            "delete element inet kopek rl_in4 { 10.1.0.5 }\ndelete element inet kopek rl_out4 { 10.1.0.5 }\n"
        );
        assert_eq!(bucket_bytes(64), 8_000);
    }

    #[test]
    fn delta_replaces_changed_caps() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        let c = |d: u32| Caps {
            down_kbit: Some(d),
            up_kbit: None,
        };
        let applied: BTreeMap<IpNet, Caps> =
            [(n("10.0.0.1/32"), c(1000)), (n("10.0.0.2/32"), c(1000))].into();
        let want: BTreeMap<IpNet, Caps> =
            [(n("10.0.0.2/32"), c(2000)), (n("10.0.0.3/32"), c(1000))].into();
        let (rm, add) = delta(&applied, &want);
        assert_eq!(
            rm,
            vec![(n("10.0.0.1/32"), c(1000)), (n("10.0.0.2/32"), c(1000))]
        );
        assert_eq!(
            add,
            vec![(n("10.0.0.2/32"), c(2000)), (n("10.0.0.3/32"), c(1000))]
        );
        assert_eq!(delta(&want, &want), (vec![], vec![]));
    }

    #[test]
    fn kernel_json_elements_parse() {
        let v: serde_json::Value = serde_json::from_str(
            r#"[["10.1.0.5", {"jump": {"target": "rl_in_20000"}}],
                ["2001:db8::1", {"jump": {"target": "rl_out_64"}}],
                ["10.1.0.6", {"jump": {"target": "elsewhere"}}], "junk"]"#,
        )
        .unwrap();
        let got: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(parse_elem)
            .collect();
        assert_eq!(
            got,
            [
                ("10.1.0.5".parse().unwrap(), true, 20_000),
                ("2001:db8::1".parse().unwrap(), false, 64)
            ]
        );
    }
}
