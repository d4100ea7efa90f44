//! The classifier's traffic classes mirrored into nftables sets, so that
//! the per-host counters count each class apart
//! (`enforcer.counters_by_class`).
//!
//! The classifier decides a remote address's class by the longest
//! matching prefix over all lists (docs/classifier.md). nftables interval
//! sets cannot hold overlapping prefixes, and rules are tried in order, not
//! by length; so the lists are flattened first: the address space is cut
//! into disjoint ranges, each labelled with the class the classifier's own
//! [`ClassTable`] gives it, and every class other than the default gets one
//! interval set per family (`cls4_<class>`, `cls6_<class>`) of its ranges.
//! The sets are disjoint, so the counting rules' order does not matter;
//! what is in none of them is the default class.
//!
//! A counter record carries, as its remote address, a representative of
//! the class (the first address of its first range; for the default class
//! the unspecified address when that is default, as before classes were
//! counted): the classifier puts it in the same class again.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use kopek_classifier::classes::ClassTable;
use kopek_config::ClassifierConfig;

use crate::EnforcerError;

/// Elements per `add element` line.
const ELEMENTS_PER_LINE: usize = 2_000;

/// One class's ranges, inclusive, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassRanges {
    pub v4: Vec<(u32, u32)>,
    pub v6: Vec<(u128, u128)>,
}

/// The classes as nftables sees them.
#[derive(Debug, Clone)]
pub struct ClassMirror {
    /// Classes with sets, in the classifier's order (the default is not
    /// among them).
    pub classes: Vec<String>,
    pub default: String,
    /// Per class of `classes`.
    pub ranges: Vec<ClassRanges>,
    /// Remote address of a record of each class (the default included),
    /// per family.
    reps: BTreeMap<String, (Ipv4Addr, Ipv6Addr)>,
    /// The class table's hash: a reload with the same hash changes nothing.
    pub sha256: String,
}

impl ClassMirror {
    /// Reads the class lists the way the classifier does.
    pub fn load(cfg: &ClassifierConfig) -> Result<ClassMirror, EnforcerError> {
        let t = ClassTable::load(cfg).map_err(|e| EnforcerError::Invalid(e.to_string()))?;
        Ok(ClassMirror::from_table(&t))
    }

    pub fn from_table(t: &ClassTable) -> ClassMirror {
        let names: Vec<String> = t.classes.iter().map(|c| c.name.clone()).collect();
        let default = t.default as usize;
        // The prefixes each class won, from the canonical text.
        let mut nets: Vec<(IpNet, usize)> = Vec::new();
        let mut current = 0usize;
        for line in t.canonical().lines() {
            if let Some(rest) = line.strip_prefix("class ") {
                let name = rest.split(' ').next().unwrap_or_default();
                current = names.iter().position(|n| n == name).unwrap_or(default);
            } else if let Ok(n) = line.parse::<IpNet>() {
                nets.push((n, current));
            }
        }
        let v4 = flatten(
            nets.iter()
                .filter_map(|(n, c)| match n {
                    IpNet::V4(n) => Some((
                        u128::from(u32::from(n.network())),
                        u128::from(u32::from(n.broadcast())),
                        *c,
                    )),
                    IpNet::V6(_) => None,
                })
                .collect(),
        );
        let v6 = flatten(
            nets.iter()
                .filter_map(|(n, c)| match n {
                    IpNet::V6(n) => Some((u128::from(n.network()), u128::from(n.broadcast()), *c)),
                    IpNet::V4(_) => None,
                })
                .collect(),
        );
        let mut ranges = vec![ClassRanges::default(); names.len()];
        for &(a, b, c) in &v4 {
            ranges[c].v4.push((a as u32, b as u32));
        }
        for &(a, b, c) in &v6 {
            ranges[c].v6.push((a, b));
        }
        let mut reps = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let r4 = if i == default {
                first_gap(&v4, u128::from(u32::MAX))
                    .map(|a| a as u32)
                    .or_else(|| ranges[i].v4.first().map(|r| r.0))
            } else {
                ranges[i].v4.first().map(|r| r.0)
            };
            let r6 = if i == default {
                first_gap(&v6, u128::MAX).or_else(|| ranges[i].v6.first().map(|r| r.0))
            } else {
                ranges[i].v6.first().map(|r| r.0)
            };
            // A class with no range in a family never counts in it; its
            // representative is then never used.
            reps.insert(
                name.clone(),
                (
                    Ipv4Addr::from(r4.unwrap_or(0)),
                    Ipv6Addr::from(r6.unwrap_or(0)),
                ),
            );
        }
        let keep: Vec<usize> = (0..names.len()).filter(|&i| i != default).collect();
        ClassMirror {
            classes: keep.iter().map(|&i| names[i].clone()).collect(),
            default: names[default].clone(),
            ranges: keep.iter().map(|&i| ranges[i].clone()).collect(),
            reps,
            sha256: t.sha256().to_string(),
        }
    }

    /// The remote address a record of `class` carries (`None`: a class
    /// the mirror does not know, e.g. renamed since the counter was made).
    pub fn representative(&self, class: &str, v4: bool) -> Option<IpAddr> {
        self.reps
            .get(class)
            .map(|(a, b)| if v4 { IpAddr::V4(*a) } else { IpAddr::V6(*b) })
    }

    /// Set declarations for the base table.
    pub fn set_decls(&self) -> String {
        let mut s = String::new();
        for c in &self.classes {
            s.push_str(&format!(
                "\tset cls4_{c} {{ type ipv4_addr; flags interval; }}\n\
                 \tset cls6_{c} {{ type ipv6_addr; flags interval; }}\n"
            ));
            for m in ["cnt_in4", "cnt_out4"] {
                s.push_str(&format!("\tmap {m}_{c} {{ type ipv4_addr : counter; }}\n"));
            }
            for m in ["cnt_in6", "cnt_out6"] {
                s.push_str(&format!("\tmap {m}_{c} {{ type ipv6_addr : counter; }}\n"));
            }
        }
        s
    }

    /// The counting rules without classes: everything in the default maps.
    pub fn empty_count_rules() -> &'static str {
        "\t\tcounter name ip saddr map @cnt_out4\n\
         \t\tcounter name ip daddr map @cnt_in4\n\
         \t\tcounter name ip6 saddr map @cnt_out6\n\
         \t\tcounter name ip6 daddr map @cnt_in6\n"
    }

    /// The counting rules of the forward chain: per class, then the rest
    /// (the default class) under the old map names.
    pub fn count_rules(&self) -> String {
        let mut s = String::new();
        for c in &self.classes {
            s.push_str(&format!(
                "\t\tip daddr @cls4_{c} counter name ip saddr map @cnt_out4_{c}\n\
                 \t\tip saddr @cls4_{c} counter name ip daddr map @cnt_in4_{c}\n\
                 \t\tip6 daddr @cls6_{c} counter name ip6 saddr map @cnt_out6_{c}\n\
                 \t\tip6 saddr @cls6_{c} counter name ip6 daddr map @cnt_in6_{c}\n"
            ));
        }
        let not = |proto: &str, field: &str, fam: &str| -> String {
            self.classes
                .iter()
                .map(|c| format!("{proto} {field} != @cls{fam}_{c} "))
                .collect()
        };
        s.push_str(&format!(
            "\t\t{}counter name ip saddr map @cnt_out4\n\
             \t\t{}counter name ip daddr map @cnt_in4\n\
             \t\t{}counter name ip6 saddr map @cnt_out6\n\
             \t\t{}counter name ip6 daddr map @cnt_in6\n",
            not("ip", "daddr", "4"),
            not("ip", "saddr", "4"),
            not("ip6", "daddr", "6"),
            not("ip6", "saddr", "6"),
        ));
        s
    }

    /// Lines that fill (or refill: flush first) the class sets. Part of a
    /// batch: the kernel swaps the old content for the new at once.
    pub fn fill_lines(&self, table: &str, flush: bool, out: &mut String) {
        for (c, r) in self.classes.iter().zip(&self.ranges) {
            if flush {
                out.push_str(&format!("flush set inet {table} cls4_{c}\n"));
                out.push_str(&format!("flush set inet {table} cls6_{c}\n"));
            }
            for chunk in r.v4.chunks(ELEMENTS_PER_LINE) {
                let items: Vec<String> = chunk
                    .iter()
                    .map(|&(a, b)| range_text(IpAddr::V4(a.into()), IpAddr::V4(b.into())))
                    .collect();
                out.push_str(&format!(
                    "add element inet {table} cls4_{c} {{ {} }}\n",
                    items.join(", ")
                ));
            }
            for chunk in r.v6.chunks(ELEMENTS_PER_LINE) {
                let items: Vec<String> = chunk
                    .iter()
                    .map(|&(a, b)| range_text(IpAddr::V6(a.into()), IpAddr::V6(b.into())))
                    .collect();
                out.push_str(&format!(
                    "add element inet {table} cls6_{c} {{ {} }}\n",
                    items.join(", ")
                ));
            }
        }
    }
}

fn range_text(a: IpAddr, b: IpAddr) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// Disjoint ranges (inclusive) labelled by the class of the longest
/// prefix covering them, adjacent ranges of one class merged. Input:
/// distinct prefixes as (first, last, class). Addresses no prefix covers
/// are in no range.
fn flatten(mut p: Vec<(u128, u128, usize)>) -> Vec<(u128, u128, usize)> {
    // Outer prefixes before the ones inside them.
    p.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<(u128, u128, usize)> = Vec::new();
    let mut emit = |a: u128, b: u128, c: usize| {
        if let Some(last) = out.last_mut()
            && last.2 == c
            && last.1.checked_add(1) == Some(a)
        {
            last.1 = b;
        } else {
            out.push((a, b, c));
        }
    };
    // Open prefixes, innermost last; `cursor`: the first address not yet
    // emitted (None: past the end of the space).
    let mut stack: Vec<(u128, usize)> = Vec::new();
    let mut cursor: Option<u128> = Some(0);
    for (start, end, class) in p {
        while let Some(&(top_end, top_class)) = stack.last() {
            if top_end >= start {
                break;
            }
            stack.pop();
            if let Some(c) = cursor
                && c <= top_end
            {
                emit(c, top_end, top_class);
            }
            cursor = top_end.checked_add(1);
        }
        if let (Some(&(_, top_class)), Some(c)) = (stack.last(), cursor)
            && c < start
        {
            emit(c, start - 1, top_class);
        }
        cursor = Some(start);
        stack.push((end, class));
    }
    while let Some((top_end, top_class)) = stack.pop() {
        if let Some(c) = cursor
            && c <= top_end
        {
            emit(c, top_end, top_class);
        }
        cursor = top_end.checked_add(1);
    }
    out
}

/// The first address (up to `max`) in no range.
fn first_gap(ranges: &[(u128, u128, usize)], max: u128) -> Option<u128> {
    let mut next = 0u128;
    for &(a, b, _) in ranges {
        if a > next {
            return Some(next);
        }
        next = b.checked_add(1)?;
    }
    (next <= max).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kopek_config::CountRule;

    fn table(lists: &[(&str, &[&str])], default: &str) -> ClassTable {
        ClassTable::build(
            lists
                .iter()
                .map(|(n, nets)| {
                    (
                        n.to_string(),
                        CountRule::Both,
                        nets.iter().map(|s| s.parse().unwrap()).collect(),
                    )
                })
                .collect(),
            default,
        )
    }

    /// Which class the mirror's sets put an address in.
    fn mirror_class(m: &ClassMirror, a: IpAddr) -> String {
        for (c, r) in m.classes.iter().zip(&m.ranges) {
            let hit = match a {
                IpAddr::V4(v) => {
                    let x = u32::from(v);
                    r.v4.iter().any(|&(s, e)| s <= x && x <= e)
                }
                IpAddr::V6(v) => {
                    let x = u128::from(v);
                    r.v6.iter().any(|&(s, e)| s <= x && x <= e)
                }
            };
            if hit {
                return c.clone();
            }
        }
        m.default.clone()
    }

    #[test]
    fn nested_prefixes_follow_longest_match() {
        let t = table(
            &[
                ("local", &["10.0.0.0/8", "2001:db8::/32"]),
                ("peering", &["10.5.0.0/16", "10.5.7.0/24", "192.0.2.0/24"]),
                ("paid", &["10.5.7.128/25", "0.0.0.0/0"]),
            ],
            "paid",
        );
        let m = ClassMirror::from_table(&t);
        assert_eq!(m.classes, ["local", "peering"]);
        assert_eq!(
            m.ranges[0].v4,
            vec![
                (
                    u32::from(Ipv4Addr::new(10, 0, 0, 0)),
                    u32::from(Ipv4Addr::new(10, 4, 255, 255))
                ),
                (
                    u32::from(Ipv4Addr::new(10, 6, 0, 0)),
                    u32::from(Ipv4Addr::new(10, 255, 255, 255))
                ),
            ]
        );
        // 10.5.0.0/16 and 10.5.7.0/24 merge around the paid /25.
        assert_eq!(
            m.ranges[1].v4,
            vec![
                (
                    u32::from(Ipv4Addr::new(10, 5, 0, 0)),
                    u32::from(Ipv4Addr::new(10, 5, 7, 127))
                ),
                (
                    u32::from(Ipv4Addr::new(10, 5, 7, 128)) + 128,
                    u32::from(Ipv4Addr::new(10, 5, 255, 255))
                ),
                (
                    u32::from(Ipv4Addr::new(192, 0, 2, 0)),
                    u32::from(Ipv4Addr::new(192, 0, 2, 255))
                ),
            ]
        );
        for a in [
            "10.5.7.200",
            "10.5.7.1",
            "10.9.9.9",
            "8.8.8.8",
            "0.0.0.0",
            "2001:db8::1",
            "2001:db9::1",
        ] {
            let a: IpAddr = a.parse().unwrap();
            let want = &t.classes[t.class_of(a) as usize].name;
            assert_eq!(&mirror_class(&m, a), want, "{a}");
        }
        // 0.0.0.0/0 is in paid's list: the default class's representative
        // is then the start of a paid range, still classified as paid.
        for (class, v4) in [
            ("local", true),
            ("peering", true),
            ("paid", true),
            ("local", false),
            ("paid", false),
        ] {
            let r = m.representative(class, v4).unwrap();
            assert_eq!(t.classes[t.class_of(r) as usize].name, class, "{class} {r}");
        }
        let mut lines = String::new();
        m.fill_lines("kopek", true, &mut lines);
        assert!(lines.contains("flush set inet kopek cls4_local\n"));
        assert!(lines.contains(
            "add element inet kopek cls4_peering { 10.5.0.0-10.5.7.127, 10.5.8.0-10.5.255.255, 192.0.2.0-192.0.2.255 }\n"
        ));
        assert!(lines.contains("add element inet kopek cls6_local { 2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff }\n"));
    }

    #[test]
    fn random_lists_classify_like_the_classifier() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..50 {
            let mut lists: Vec<(String, Vec<String>)> =
                (0..4).map(|i| (format!("c{i}"), Vec::new())).collect();
            for _ in 0..40 {
                let r = rnd();
                let len = 4 + (r % 20) as u8;
                // Few top bits: prefixes overlap a lot.
                let addr = Ipv4Addr::from(((r >> 32) as u32) & 0xF0F0_0000);
                let net = ipnet::Ipv4Net::new(addr, len).unwrap().trunc();
                lists[(r >> 8) as usize % 4].1.push(net.to_string());
            }
            let default = format!("c{}", round % 5);
            let owned: Vec<(&str, Vec<&str>)> = lists
                .iter()
                .map(|(n, v)| (n.as_str(), v.iter().map(String::as_str).collect()))
                .collect();
            let refs: Vec<(&str, &[&str])> =
                owned.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            let t = table(&refs, &default);
            let m = ClassMirror::from_table(&t);
            for _ in 0..2_000 {
                let a = IpAddr::V4(Ipv4Addr::from((rnd() >> 32) as u32 & 0xF0FF_FFFF));
                let want = &t.classes[t.class_of(a) as usize].name;
                assert_eq!(&mirror_class(&m, a), want, "round {round}: {a}");
            }
            // Ranges of one class never overlap or touch another's order.
            let mut all: Vec<(u32, u32)> = m.ranges.iter().flat_map(|r| r.v4.clone()).collect();
            all.sort_unstable();
            assert!(
                all.windows(2).all(|w| w[0].1 < w[1].0),
                "round {round}: overlap"
            );
        }
    }

    #[test]
    fn without_lists_everything_is_the_default() {
        let t = table(&[], "paid");
        let m = ClassMirror::from_table(&t);
        assert!(m.classes.is_empty());
        assert_eq!(
            m.representative("paid", true),
            Some("0.0.0.0".parse().unwrap())
        );
        assert_eq!(m.representative("paid", false), Some("::".parse().unwrap()));
        assert_eq!(m.representative("nope", true), None);
        assert_eq!(
            m.count_rules(),
            "\t\tcounter name ip saddr map @cnt_out4\n\t\tcounter name ip daddr map @cnt_in4\n\t\tcounter name ip6 saddr map @cnt_out6\n\t\tcounter name ip6 daddr map @cnt_in6\n"
        );
    }
}
