//! Traffic classes: which class a remote address is, by versioned network
//! lists.
//!
//! A [`ClassTable`] is one loaded version of all lists: the classes in
//! config order, every prefix of every list in one longest-prefix-match
//! structure, and a canonical text of the whole content with its SHA-256.
//! The canonical text is what tier 2 stores for every version, so that an
//! old answer can be reproduced exactly after the files changed.
//!
//! Matching rule: the longest matching prefix over all lists decides; when
//! the very same prefix is in two lists, the class listed first in the
//! config wins; an address no list covers gets the default class.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use kopek_config::{ClassifierConfig, CountRule, parse_net};
use sha2::{Digest, Sha256};

use crate::bindings::Coverage;
use crate::lpm::{PrefixMap, PrefixMapBuilder, Strides};

/// Prefixes per class list file, and in total: a full IPv4+IPv6 table is
/// about 1.2 M today; ten times that is a mistake, not a table.
pub const MAX_PREFIXES: usize = 10_000_000;
/// Longest line accepted in a list file.
const MAX_LINE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {why}")]
    Line {
        file: PathBuf,
        line: usize,
        why: String,
    },
    #[error("class lists hold more than {MAX_PREFIXES} prefixes")]
    TooMany,
    #[error("stored class version is malformed at line {line}: {why}")]
    Stored { line: usize, why: String },
}

/// One class of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub count: CountRule,
    /// Distinct prefixes this class won (duplicates listed earlier elsewhere
    /// are not counted here).
    pub prefixes: usize,
}

/// One loaded version of every class list.
#[derive(Debug)]
pub struct ClassTable {
    pub classes: Vec<Class>,
    /// Index into `classes` of the default class.
    pub default: u32,
    map: PrefixMap,
    /// Canonical content (see [`ClassTable::canonical`]).
    canonical: String,
    sha256: String,
    /// Prefixes listed again in a later class and ignored there.
    pub shadowed: usize,
}

impl ClassTable {
    /// Reads the lists the config names (inline networks first, then the
    /// files, in order) and builds the table.
    pub fn load(cfg: &ClassifierConfig) -> Result<ClassTable, ClassError> {
        let mut lists = Vec::new();
        let mut total = 0usize;
        for c in &cfg.classes {
            let mut nets = c.networks.clone();
            for f in &c.files {
                read_list(f, &mut nets)?;
            }
            total += nets.len();
            if total > MAX_PREFIXES {
                return Err(ClassError::TooMany);
            }
            lists.push((c.name.clone(), c.count, nets));
        }
        Ok(ClassTable::build(lists, &cfg.default_class))
    }

    /// Builds from (name, count rule, prefixes) in check order. The default
    /// class is appended (with no prefixes, counting both directions) when
    /// none of the lists has its name.
    pub fn build(mut lists: Vec<(String, CountRule, Vec<IpNet>)>, default: &str) -> ClassTable {
        if !lists.iter().any(|(n, _, _)| n == default) {
            lists.push((default.to_string(), CountRule::Both, Vec::new()));
        }
        let default_ix = lists.iter().position(|(n, _, _)| n == default).unwrap_or(0) as u32;
        // COMPACT: a full table (500k IPv4 + 100k IPv6 prefixes) takes
        // 13 MB and looks up faster than FAST's 74 MB here (it stays in
        // L3); see docs/performance.md.
        let mut builder = PrefixMapBuilder::new(Strides::COMPACT);
        let mut canonical = String::from("# kopek class lists v1\n");
        let _ = writeln!(canonical, "default {default}");
        let mut classes = Vec::with_capacity(lists.len());
        let mut shadowed = 0;
        for (i, (name, count, nets)) in lists.into_iter().enumerate() {
            let _ = writeln!(canonical, "class {name} {}", count.as_str());
            let mut won = 0;
            for n in nets {
                let n = n.trunc();
                if builder.insert(n, i as u32) {
                    won += 1;
                    let _ = writeln!(canonical, "{n}");
                } else {
                    shadowed += 1;
                }
            }
            classes.push(Class {
                name,
                count,
                prefixes: won,
            });
        }
        let sha256 = hex(&Sha256::digest(canonical.as_bytes()));
        ClassTable {
            classes,
            default: default_ix,
            map: builder.build(),
            canonical,
            sha256,
            shadowed,
        }
    }

    /// Rebuilds a version from its stored canonical text.
    pub fn from_canonical(text: &str) -> Result<ClassTable, ClassError> {
        let mut default = None;
        let mut lists: Vec<(String, CountRule, Vec<IpNet>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |why: &str| ClassError::Stored {
                line: i + 1,
                why: why.to_string(),
            };
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some(d) = line.strip_prefix("default ") {
                default = Some(d.to_string());
            } else if let Some(rest) = line.strip_prefix("class ") {
                let (name, count) = rest.split_once(' ').ok_or_else(|| bad("class line"))?;
                let count = match count {
                    "both" => CountRule::Both,
                    "inbound" => CountRule::Inbound,
                    "outbound" => CountRule::Outbound,
                    _ => return Err(bad("count rule")),
                };
                lists.push((name.to_string(), count, Vec::new()));
            } else {
                let n = line.parse::<IpNet>().map_err(|_| bad("prefix"))?;
                lists
                    .last_mut()
                    .ok_or_else(|| bad("prefix before any class"))?
                    .2
                    .push(n);
            }
        }
        let default = default.ok_or_else(|| ClassError::Stored {
            line: 0,
            why: "no default line".into(),
        })?;
        Ok(ClassTable::build(lists, &default))
    }

    /// The class index of a remote address.
    #[inline]
    pub fn class_of(&self, addr: IpAddr) -> u32 {
        self.map.lookup(addr).unwrap_or(self.default)
    }

    /// The class index of an IPv4 address (`u32::from(Ipv4Addr)`).
    #[inline]
    pub fn class_of_v4(&self, addr: u32) -> u32 {
        self.map.lookup_v4(addr).unwrap_or(self.default)
    }

    /// See [`PrefixMap::prefetch_v4`].
    #[inline]
    pub fn prefetch_v4(&self, addr: u32, near: bool) {
        self.map.prefetch_v4(addr, near);
    }

    /// The class index of an IPv6 address (`u128::from(Ipv6Addr)`).
    #[inline]
    pub fn class_of_v6(&self, addr: u128) -> u32 {
        self.map.lookup_v6(addr).unwrap_or(self.default)
    }

    /// See [`PrefixMap::prefetch_v6`].
    #[inline]
    pub fn prefetch_v6(&self, addr: u128, near: bool) {
        self.map.prefetch_v6(addr, near);
    }

    /// The class index of each IPv4 address (`u32::from(Ipv4Addr)`) in
    /// `out`, in order; `None` means the default class. Batched: faster
    /// than [`Self::class_of`] one at a time on a full table.
    pub fn classes_of_v4(&self, addrs: &[u32], out: &mut Vec<Option<u32>>) {
        self.map.lookup_v4_many(addrs, out);
    }

    /// [`Self::classes_of_v4`] for IPv6 addresses (`u128::from(Ipv6Addr)`).
    pub fn classes_of_v6(&self, addrs: &[u128], out: &mut Vec<Option<u32>>) {
        self.map.lookup_v6_many(addrs, out);
    }

    /// The class and the list prefix that decided it (None: the default).
    pub fn explain(&self, addr: IpAddr) -> (u32, Option<IpNet>) {
        match self.map.lookup_prefix(addr) {
            Some((net, c)) => (c, Some(net)),
            None => (self.default, None),
        }
    }

    /// The canonical text: a header, `default <name>`, then per class
    /// `class <name> <count>` followed by the prefixes it won, one per line,
    /// in list order. Equal content gives equal text and hash.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn prefixes(&self) -> usize {
        self.map.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.map.memory_bytes() + self.canonical.len()
    }
}

/// A set of networks (the subscriber networks): membership only.
#[derive(Debug)]
pub struct NetSet {
    map: PrefixMap,
    /// Cheap pre-filter: most addresses are far from every listed network.
    cover: [Coverage; 2],
}

impl NetSet {
    pub fn new(nets: &[IpNet]) -> NetSet {
        let mut b = PrefixMapBuilder::new(Strides::COMPACT);
        let mut cover = [Coverage::default(), Coverage::default()];
        for n in nets {
            b.insert(n.trunc(), 0);
            cover[usize::from(matches!(n, IpNet::V6(_)))].add(n.trunc());
        }
        NetSet {
            map: b.build(),
            cover,
        }
    }

    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.cover[usize::from(addr.is_ipv6())].may_contain(addr) && self.map.lookup(addr).is_some()
    }
}

/// Reads one list file: a CIDR or address per line; `#` starts a comment;
/// blank lines are ignored. Any other line is an error naming file:line.
pub fn read_list(path: &Path, out: &mut Vec<IpNet>) -> Result<(), ClassError> {
    let text = kopek_config::files::read_limited(path, kopek_config::files::MAX_LIST_BYTES)
        .map_err(|source| ClassError::Read {
            file: path.to_path_buf(),
            source,
        })?;
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let bad = |why: String| ClassError::Line {
            file: path.to_path_buf(),
            line: i + 1,
            why,
        };
        if raw.len() > MAX_LINE_BYTES {
            return Err(bad(format!("line longer than {MAX_LINE_BYTES} bytes")));
        }
        let line = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".into()))?;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_net(line) {
            Some(n) => out.push(n),
            None => {
                return Err(bad(format!(
                    "expected a network like 10.0.0.0/8 or 2001:db8::/32 (host bits zero), got {line:?}"
                )));
            }
        }
        if out.len() > MAX_PREFIXES {
            return Err(ClassError::TooMany);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn table() -> ClassTable {
        ClassTable::build(
            vec![
                (
                    "local".into(),
                    CountRule::Both,
                    vec![net("10.0.0.0/8"), net("2001:db8:100::/40")],
                ),
                (
                    "peering".into(),
                    CountRule::Inbound,
                    vec![
                        net("10.0.0.0/8"),
                        net("10.5.0.0/16"),
                        net("198.51.100.0/24"),
                    ],
                ),
            ],
            "paid",
        )
    }

    #[test]
    fn longest_prefix_decides_then_list_order_then_default() {
        let t = table();
        let name = |a: &str| &t.classes[t.class_of(a.parse().unwrap()) as usize].name;
        // (address, class): data-driven.
        for (addr, want) in [
            ("10.1.2.3", "local"),
            ("10.5.1.1", "peering"), // /16 in peering beats /8 in local
            ("198.51.100.255", "peering"),
            ("198.51.101.0", "paid"),
            ("2001:db8:1ff::1", "local"),
            ("2001:db8:200::1", "paid"),
            ("0.0.0.0", "paid"),
        ] {
            assert_eq!(name(addr), want, "{addr}");
        }
        assert_eq!(t.shadowed, 1, "10.0.0.0/8 listed again under peering");
        assert_eq!(t.classes[2].name, "paid");
        assert_eq!(t.classes[1].prefixes, 2);
        assert_eq!(
            t.explain("10.5.9.9".parse().unwrap()),
            (1, Some(net("10.5.0.0/16")))
        );
    }

    #[test]
    fn canonical_text_round_trips_with_the_same_hash() {
        let t = table();
        let back = ClassTable::from_canonical(t.canonical()).unwrap();
        assert_eq!(back.sha256(), t.sha256());
        assert_eq!(back.classes, t.classes);
        assert_ne!(
            ClassTable::build(vec![], "paid").sha256(),
            t.sha256(),
            "different content, different hash"
        );
    }

    #[test]
    fn list_files_allow_comments_and_name_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peering.txt");
        std::fs::write(
            &p,
            "# IX members\n192.0.2.0/24  # one\n\n2001:db8::/32\n203.0.113.5\n",
        )
        .unwrap();
        let mut v = Vec::new();
        read_list(&p, &mut v).unwrap();
        assert_eq!(
            v,
            vec![
                net("192.0.2.0/24"),
                net("2001:db8::/32"),
                net("203.0.113.5/32")
            ]
        );
        std::fs::write(&p, "192.0.2.0/24\n192.0.2.1/24\n").unwrap();
        let e = read_list(&p, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.ends_with("peering.txt:2: expected a network like 10.0.0.0/8 or 2001:db8::/32 (host bits zero), got \"192.0.2.1/24\""), "{e}");
    }
}
