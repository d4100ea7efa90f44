//! The enforcer's one nftables table, and every change to it as one `nft
//! -f -` batch (one kernel transaction: all of it or nothing).
//!
//! ```text
//! table inet kopek {
//!     set allowed4 { type ipv4_addr; flags timeout; }             # leased hosts (hash)
//!     set allowed6 { type ipv6_addr; flags timeout; }
//!     set allowed4net { type ipv4_addr; flags interval, timeout; } # leased prefixes
//!     set allowed6net { type ipv6_addr; flags interval, timeout; }
//!     set subs4 / subs6      # enforcer.networks
//!     set garden4 / garden6  # enforcer.walled_garden
//!     chain forward {
//!         type filter hook forward priority filter; policy accept;
//!         ip saddr @subs4 ip saddr != @allowed4 ip saddr != @allowed4net ip daddr != @garden4 counter drop
//!         ip daddr @subs4 ip daddr != @allowed4 ip daddr != @allowed4net ip saddr != @garden4 counter drop
//!         (the same for ip6)
//!         ip daddr vmap @rl_in4 ... (speed caps, crate::shaping)
//!         counter name ip saddr map @cnt_out4 ... (crate::counters)
//!     }
//! }
//! ```
//!
//! Single addresses (pppd sessions, static /32s) live in hash sets, whose
//! updates cost the same at 100,000 elements as at 10; prefixes (delegated
//! IPv6 prefixes, static subnets) in interval sets, whose updates nft
//! 1.0.6 makes cost in proportion to the whole set (500 deletes + 500 adds
//! against 100,000 interval elements took 60 s: bench/enforcer-apply.sh).
//!
//! Only traffic of the subscriber networks is judged; everything else on
//! the host passes this table untouched. The batches are built from typed
//! values (`IpNet`, integers, the validated table name) only, so nothing
//! from outside reaches nft's parser as text.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::IpNet;
use kopek_config::EnforcerConfig;

use crate::EnforcerError;
use crate::classes::ClassMirror;
use crate::shaping::{Caps, CapsDelta};

/// Elements per `add element` statement (nft handles large batches, but
/// one huge line is slow to parse).
const ELEMENTS_PER_LINE: usize = 2_000;

fn family_sets(nets: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    nets.iter().partition(|n| matches!(n, IpNet::V4(_)))
}

/// The allowed set an element belongs in: hosts in the hash sets,
/// prefixes in the interval sets.
fn allowed_set(n: &IpNet) -> &'static str {
    match (n, n.prefix_len() == n.max_prefix_len()) {
        (IpNet::V4(_), true) => "allowed4",
        (IpNet::V4(_), false) => "allowed4net",
        (IpNet::V6(_), true) => "allowed6",
        (IpNet::V6(_), false) => "allowed6net",
    }
}

/// Elements grouped by their allowed set, in a fixed order.
fn by_set(nets: &[IpNet]) -> Vec<(&'static str, Vec<IpNet>)> {
    ["allowed4", "allowed4net", "allowed6", "allowed6net"]
        .into_iter()
        .map(|set| {
            (
                set,
                nets.iter()
                    .copied()
                    .filter(|n| allowed_set(n) == set)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// A host as nft writes it: no /32 or /128 (hash sets take addresses).
fn elem(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn elements(nets: &[IpNet]) -> String {
    if nets.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        format!(" elements = {{ {} }};", list.join(", "))
    }
}

/// The table with empty allowed sets (what the unit loads before the
/// enforcer starts: nothing allowed yet).
pub fn base_table(c: &EnforcerConfig, classes: Option<&ClassMirror>) -> String {
    let (s4, s6) = family_sets(&c.networks);
    let (g4, g6) = family_sets(&c.walled_garden);
    format!(
        "table inet {t} {{\n\
         \tset allowed4 {{ type ipv4_addr; flags timeout; }}\n\
         \tset allowed6 {{ type ipv6_addr; flags timeout; }}\n\
         \tset allowed4net {{ type ipv4_addr; flags interval, timeout; }}\n\
         \tset allowed6net {{ type ipv6_addr; flags interval, timeout; }}\n\
         \tset subs4 {{ type ipv4_addr; flags interval;{s4} }}\n\
         \tset subs6 {{ type ipv6_addr; flags interval;{s6} }}\n\
         \tset garden4 {{ type ipv4_addr; flags interval;{g4} }}\n\
         \tset garden6 {{ type ipv6_addr; flags interval;{g6} }}\n\
         {rl_maps}\
         \tmap cnt_in4 {{ type ipv4_addr : counter; }}\n\
         \tmap cnt_out4 {{ type ipv4_addr : counter; }}\n\
         \tmap cnt_in6 {{ type ipv6_addr : counter; }}\n\
         \tmap cnt_out6 {{ type ipv6_addr : counter; }}\n\
         {cls_decls}\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tip saddr @subs4 ip saddr != @allowed4 ip saddr != @allowed4net ip daddr != @garden4 counter drop\n\
         \t\tip daddr @subs4 ip daddr != @allowed4 ip daddr != @allowed4net ip saddr != @garden4 counter drop\n\
         \t\tip6 saddr @subs6 ip6 saddr != @allowed6 ip6 saddr != @allowed6net ip6 daddr != @garden6 counter drop\n\
         \t\tip6 daddr @subs6 ip6 daddr != @allowed6 ip6 daddr != @allowed6net ip6 saddr != @garden6 counter drop\n\
         {rl_rules}\
         {count_rules}\
         \t}}\n\
         }}\n",
        t = c.table,
        s4 = elements(&s4),
        s6 = elements(&s6),
        g4 = elements(&g4),
        g6 = elements(&g6),
        rl_maps = crate::shaping::base_maps(),
        rl_rules = crate::shaping::forward_rules(),
        cls_decls = classes.map(ClassMirror::set_decls).unwrap_or_default(),
        count_rules = classes
            .map(ClassMirror::count_rules)
            .unwrap_or_else(|| ClassMirror::empty_count_rules().to_string()),
    )
}

/// `add element` lines giving `nets` a fresh lease (re-adding with
/// `expires` is what refreshes an existing element's countdown).
fn add_lines(c: &EnforcerConfig, nets: &[IpNet], lease: Duration, out: &mut String) {
    let secs = lease.as_secs().max(1);
    for (set, list) in by_set(nets) {
        for chunk in list.chunks(ELEMENTS_PER_LINE) {
            let items: Vec<String> = chunk
                .iter()
                .map(|n| format!("{} timeout {secs}s expires {secs}s", elem(n)))
                .collect();
            out.push_str(&format!(
                "add element inet {} {set} {{ {} }}\n",
                c.table,
                items.join(", ")
            ));
        }
    }
}

fn delete_lines(c: &EnforcerConfig, nets: &[IpNet], out: &mut String) {
    for (set, list) in by_set(nets) {
        for chunk in list.chunks(ELEMENTS_PER_LINE) {
            let items: Vec<String> = chunk.iter().map(elem).collect();
            out.push_str(&format!(
                "delete element inet {} {set} {{ {} }}\n",
                c.table,
                items.join(", ")
            ));
        }
    }
}

/// Replaces the whole table (ours only) with the base and the given
/// allowed elements, in one transaction: nothing is allowed after it that
/// is not in `allowed`. Applied through [`replace`], which covers the
/// moment inside the transaction when the new sets look empty.
pub fn replace_batch(
    c: &EnforcerConfig,
    allowed: &BTreeSet<IpNet>,
    caps: &BTreeMap<IpNet, Caps>,
    classes: Option<&ClassMirror>,
    lease: Duration,
) -> String {
    let mut b = format!("add table inet {t}\ndelete table inet {t}\n", t = c.table);
    b.push_str(&base_table(c, classes));
    if let Some(m) = classes {
        m.fill_lines(&c.table, false, &mut b);
    }
    let v: Vec<IpNet> = allowed.iter().copied().collect();
    add_lines(c, &v, lease, &mut b);
    if c.counters_poll.is_some() {
        crate::counters::add_lines(c, &v, classes, &mut b);
    }
    let caps: Vec<(IpNet, Caps)> = caps.iter().map(|(n, k)| (*n, *k)).collect();
    crate::shaping::add_lines(c, &caps, &mut b);
    b
}

/// The table that stands in for ours while [`replace`] rebuilds it.
pub fn guard_table(c: &EnforcerConfig) -> String {
    format!("{}_guard", c.table)
}

/// Replaces our table whole ([`replace_batch`]) without a moment in which
/// an unpaid packet passes. Within that one transaction the kernel makes
/// the new table's rules active a moment before the contents of its new
/// interval sets (measured with nft 1.0.6 on kernel 6.18: a UDP flood
/// from an unpaid address at ~200,000 packets/s got about one packet
/// through per replace), and a subscriber-network set that looks empty
/// means no drop. So a guard table with the same drops (subscriber
/// networks, walled garden, the allowed hosts and prefixes with the same
/// leases) is put in place first, in its own transaction, while the old
/// table still drops; then ours is replaced while the guard drops; then
/// the guard is deleted (a deletion opens nothing: ours drops by then).
/// The guard is ours too: a leftover of a crash between the steps only
/// withholds (its leases run out) and goes at the next replace.
pub fn replace(
    c: &EnforcerConfig,
    allowed: &BTreeSet<IpNet>,
    caps: &BTreeMap<IpNet, Caps>,
    classes: Option<&ClassMirror>,
    lease: Duration,
) -> Result<(), EnforcerError> {
    let guard = EnforcerConfig {
        table: guard_table(c),
        ..c.clone()
    };
    let mut g = format!(
        "add table inet {t}\ndelete table inet {t}\n",
        t = guard.table
    );
    g.push_str(&base_table(&guard, None));
    let hosts: Vec<IpNet> = allowed.iter().copied().collect();
    add_lines(&guard, &hosts, lease, &mut g);
    apply(c, &g)?;
    let replaced = apply(c, &replace_batch(c, allowed, caps, classes, lease));
    let removed = apply(c, &format!("delete table inet {}\n", guard.table));
    replaced.and(removed)
}

/// Adds (with a lease) and removes elements in one transaction. `remove`
/// must be in the kernel set (nft refuses to delete what is not there, and
/// the whole batch fails: the caller then resynchronizes).
pub fn delta_batch(
    c: &EnforcerConfig,
    add: &[IpNet],
    remove: &[IpNet],
    caps: &CapsDelta,
    classes: Option<&ClassMirror>,
    lease: Duration,
) -> String {
    let mut b = String::new();
    crate::shaping::delete_lines(c, &caps.0, &mut b);
    delete_lines(c, remove, &mut b);
    add_lines(c, add, lease, &mut b);
    if c.counters_poll.is_some() {
        crate::counters::unmap_lines(c, remove, classes, &mut b);
        crate::counters::add_lines(c, add, classes, &mut b);
    }
    crate::shaping::add_lines(c, &caps.1, &mut b);
    b
}

/// Runs one batch through `nft -f -`.
pub fn apply(c: &EnforcerConfig, batch: &str) -> Result<(), EnforcerError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut child = Command::new(&c.nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EnforcerError::Nft(format!("running {}: {e}", c.nft.display())))?;
    child
        .stdin
        .take()
        .ok_or_else(|| EnforcerError::Nft("no stdin".into()))?
        .write_all(batch.as_bytes())
        .map_err(|e| EnforcerError::Nft(format!("writing the batch: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| EnforcerError::Nft(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first: String = err.lines().take(6).collect::<Vec<_>>().join(" / ");
        return Err(EnforcerError::Nft(format!(
            "batch refused ({}): {first}",
            out.status
        )));
    }
    Ok(())
}

/// What the kernel's allowed sets hold now; `None` when our table is not
/// there at all.
pub fn kernel_allowed(c: &EnforcerConfig) -> Result<Option<BTreeSet<IpNet>>, EnforcerError> {
    let mut all = BTreeSet::new();
    for set in ["allowed4", "allowed4net", "allowed6", "allowed6net"] {
        let out = Command::new(&c.nft)
            .args(["-j", "list", "set", "inet", &c.table, set])
            .output()
            .map_err(|e| EnforcerError::Nft(format!("running {}: {e}", c.nft.display())))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(EnforcerError::Nft(format!("listing {set}: {}", err.trim())));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| EnforcerError::Nft(format!("unreadable JSON from nft: {e}")))?;
        for obj in v["nftables"].as_array().into_iter().flatten() {
            for e in obj["set"]["elem"].as_array().into_iter().flatten() {
                if let Some(n) = parse_elem(e) {
                    all.insert(n);
                }
            }
        }
    }
    Ok(Some(all))
}

/// One element of `nft -j` output: `"10.0.0.1"`, `{"prefix": {"addr",
/// "len"}}`, or either wrapped in `{"elem": {"val": ...}}`.
fn parse_elem(e: &serde_json::Value) -> Option<IpNet> {
    let val = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
    if let Some(s) = val.as_str() {
        return s.parse::<std::net::IpAddr>().ok().map(IpNet::from);
    }
    let p = val.get("prefix")?;
    let addr: std::net::IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
    let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
    IpNet::new(addr, len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EnforcerConfig {
        EnforcerConfig {
            table: "kopek".into(),
            networks: vec![
                "10.1.0.0/16".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            walled_garden: vec!["192.0.2.53/32".parse().unwrap()],
            lease: Duration::from_secs(120),
            renew: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            nft: "/usr/sbin/nft".into(),
            counters_poll: None,
            counters_by_class: false,
        }
    }

    #[test]
    fn batches_are_built_from_typed_values() {
        let c = cfg();
        let allowed: BTreeSet<IpNet> = ["10.1.0.5/32", "10.1.2.0/24", "2001:db8:1::/48"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let b = replace_batch(
            &c,
            &allowed,
            &BTreeMap::new(),
            None,
            Duration::from_secs(120),
        );
        assert!(b.starts_with("add table inet kopek\ndelete table inet kopek\ntable inet kopek {"));
        assert!(
            b.contains("set subs4 { type ipv4_addr; flags interval; elements = { 10.1.0.0/16 }; }")
        );
        assert!(b.contains("set garden6 { type ipv6_addr; flags interval; }"));
        assert!(
            b.contains("add element inet kopek allowed4 { 10.1.0.5 timeout 120s expires 120s }")
        );
        assert!(b.contains(
            "add element inet kopek allowed4net { 10.1.2.0/24 timeout 120s expires 120s }"
        ));
        assert!(b.contains(
            "add element inet kopek allowed6net { 2001:db8:1::/48 timeout 120s expires 120s }"
        ));
        let d = delta_batch(
            &c,
            &[],
            &["10.1.0.5/32".parse().unwrap()],
            &(vec![], vec![]),
            None,
            Duration::from_secs(9),
        );
        assert_eq!(d, "delete element inet kopek allowed4 { 10.1.0.5 }\n");
    }

    #[test]
    fn nft_json_elements_parse() {
        let v: serde_json::Value = serde_json::from_str(
            r#"[{"elem": {"val": {"prefix": {"addr": "10.0.0.0", "len": 24}}, "timeout": 120, "expires": 119}},
                {"elem": {"val": "10.1.0.5", "timeout": 30, "expires": 29}}, "2001:db8::1"]"#,
        )
        .unwrap();
        let got: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(parse_elem)
            .map(|n| n.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.0/24", "10.1.0.5/32", "2001:db8::1/128"]);
    }
}
