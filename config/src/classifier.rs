//! `[classifier]` and `[retention]`: traffic classes, observation points,
//! buckets, and how long each tier keeps its data.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::{Exporter, valid_name, wire};

/// Which direction of a class's traffic is billed (some upstreams bill
/// inbound only, some outbound). Both directions are always stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountRule {
    Both,
    Inbound,
    Outbound,
}

impl CountRule {
    pub fn as_str(self) -> &'static str {
        match self {
            CountRule::Both => "both",
            CountRule::Inbound => "inbound",
            CountRule::Outbound => "outbound",
        }
    }
}

/// One traffic class: the networks that make a remote address this class.
/// List files are read by the classifier (this crate never opens them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassDef {
    pub name: String,
    pub networks: Vec<IpNet>,
    pub files: Vec<PathBuf>,
    pub count: CountRule,
}

/// Which records an observation point takes, by the direction the exporter
/// observed them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointDirection {
    Ingress,
    Egress,
    Any,
}

impl PointDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            PointDirection::Ingress => "ingress",
            PointDirection::Egress => "egress",
            PointDirection::Any => "any",
        }
    }
}

/// A billing observation point: records exported by `exporter` whose
/// observation interface (the input interface for ingress records, the
/// output interface for egress ones) is `interface` (any when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationPoint {
    pub name: String,
    pub exporter_name: String,
    pub exporter: IpAddr,
    pub interface: Option<u32>,
    pub direction: PointDirection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierConfig {
    /// Tier-2 bucket width; divides 15 minutes so that buckets never straddle
    /// an hour or a day in any time zone.
    pub bucket: Duration,
    /// Addresses inside these networks are subscriber addresses even when no
    /// account holds them (their traffic is then "unattributed").
    pub subscriber_networks: Vec<IpNet>,
    /// Classes in the order they are checked.
    pub classes: Vec<ClassDef>,
    /// The class of every remote address no list matches. Either one of
    /// `classes` (its lists add to it) or an implicit class with no lists.
    pub default_class: String,
    /// Static bindings (`account,prefix` lines).
    pub bindings_file: Option<PathBuf>,
    pub top_hosts_per_hour: usize,
    pub poll_interval: Duration,
    pub commit_interval: Duration,
    /// Threads that read sealed tier-1 segments in parallel when the
    /// classifier is behind (a backlog, re-aggregation); 1 reads them in
    /// turn. `threads = 0` in the file: one per CPU the process may use
    /// but one (which the commit thread needs), at least 1, at most
    /// [`MAX_AUTO_THREADS`].
    pub threads: usize,
    /// Empty: every record is billed (one router, one export per packet).
    pub points: Vec<ObservationPoint>,
}

/// The most threads `classifier.threads = 0` (automatic) chooses.
pub const MAX_AUTO_THREADS: usize = 8;

impl ClassifierConfig {
    pub fn bucket_ms(&self) -> i64 {
        self.bucket.as_millis() as i64
    }
}

/// How long each tier keeps data; 0 days = forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub raw_days: u32,
    /// Tier 1 in all (every collector's segments in the state dir) is kept
    /// below this many bytes by removing the oldest fully counted sealed
    /// segments (0: no limit).
    pub raw_max_bytes: u64,
    pub traffic_days: u32,
    pub top_hosts_days: u32,
}

pub(crate) fn validate(
    c: &wire::Classifier,
    exporters: &[Exporter],
    bad: &mut dyn FnMut(&str, String),
) -> ClassifierConfig {
    if c.bucket_s == 0 || 900 % c.bucket_s != 0 {
        bad(
            "classifier.bucket_s",
            format!(
                "must divide 900 (15 minutes) so buckets never straddle an hour in any time zone: \
                 1, 2, 3, 4, 5, 6, 9, 10, 12, 15, 18, 20, 25, 30, 36, 45, 50, 60, 75, 90, 100, \
                 150, 180, 225, 300, 450 or 900; got {}",
                c.bucket_s
            ),
        );
    }
    let subscriber_networks = parse_nets(
        "classifier.subscriber_networks",
        &c.subscriber_networks,
        bad,
    );

    let mut classes = Vec::new();
    let mut names = HashSet::new();
    for (i, k) in c.class.iter().enumerate() {
        let key = format!("classifier.class[{i}]");
        if !valid_name(&k.name) {
            bad(
                &format!("{key}.name"),
                format!("must be 1-32 characters of a-z, 0-9, '_', got {:?}", k.name),
            );
        } else if !names.insert(k.name.clone()) {
            bad(
                &format!("{key}.name"),
                format!("class {:?} is defined twice", k.name),
            );
        }
        let networks = parse_nets(&format!("{key}.networks"), &k.networks, bad);
        let mut files = Vec::new();
        for (j, f) in k.files.iter().enumerate() {
            let p = PathBuf::from(f);
            if !p.is_absolute() {
                bad(
                    &format!("{key}.files[{j}]"),
                    format!("must be an absolute path, got {f:?}"),
                );
            }
            files.push(p);
        }
        let count = match k.count.as_str() {
            "both" => CountRule::Both,
            "inbound" => CountRule::Inbound,
            "outbound" => CountRule::Outbound,
            other => {
                bad(
                    &format!("{key}.count"),
                    format!("expected \"both\", \"inbound\" or \"outbound\", got {other:?}"),
                );
                CountRule::Both
            }
        };
        classes.push(ClassDef {
            name: k.name.clone(),
            networks,
            files,
            count,
        });
    }
    if !valid_name(&c.default_class) {
        bad(
            "classifier.default_class",
            format!(
                "must be 1-32 characters of a-z, 0-9, '_', got {:?}",
                c.default_class
            ),
        );
    }

    let bindings_file = c.bindings_file.as_ref().map(|f| {
        let p = PathBuf::from(f);
        if !p.is_absolute() {
            bad(
                "classifier.bindings_file",
                format!("must be an absolute path, got {f:?}"),
            );
        }
        p
    });
    if !(1..=10_000).contains(&c.top_hosts_per_hour) {
        bad(
            "classifier.top_hosts_per_hour",
            format!("must be 1..=10000, got {}", c.top_hosts_per_hour),
        );
    }
    if !(10..=60_000).contains(&c.poll_interval_ms) {
        bad(
            "classifier.poll_interval_ms",
            format!("must be 10..=60000, got {}", c.poll_interval_ms),
        );
    }
    if c.threads > 64 {
        bad(
            "classifier.threads",
            format!("must be 0 (one per CPU) ..= 64, got {}", c.threads),
        );
    }
    if !(10..=60_000).contains(&c.commit_interval_ms) {
        bad(
            "classifier.commit_interval_ms",
            format!("must be 10..=60000, got {}", c.commit_interval_ms),
        );
    }

    let mut points: Vec<ObservationPoint> = Vec::new();
    let mut point_names = HashSet::new();
    for (i, p) in c.observation_point.iter().enumerate() {
        let key = format!("classifier.observation_point[{i}]");
        if !valid_name(&p.name) {
            bad(
                &format!("{key}.name"),
                format!("must be 1-32 characters of a-z, 0-9, '_', got {:?}", p.name),
            );
        } else if !point_names.insert(p.name.clone()) {
            bad(
                &format!("{key}.name"),
                format!("observation point {:?} is defined twice", p.name),
            );
        }
        let exporter = exporters.iter().find(|e| e.name == p.exporter);
        if exporter.is_none() {
            bad(
                &format!("{key}.exporter"),
                format!(
                    "no [[collector.exporter]] is named {:?} (known: {})",
                    p.exporter,
                    exporters
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let interface = match p.interface {
            None => None,
            Some(n) => match u32::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    bad(
                        &format!("{key}.interface"),
                        format!("must be an SNMP ifIndex 0..=4294967295, got {n}"),
                    );
                    None
                }
            },
        };
        let direction = match p.direction.as_str() {
            "ingress" => PointDirection::Ingress,
            "egress" => PointDirection::Egress,
            "any" => PointDirection::Any,
            other => {
                bad(
                    &format!("{key}.direction"),
                    format!("expected \"ingress\", \"egress\" or \"any\", got {other:?}"),
                );
                PointDirection::Any
            }
        };
        let Some(exporter) = exporter else { continue };
        let point = ObservationPoint {
            name: p.name.clone(),
            exporter_name: exporter.name.clone(),
            exporter: exporter.address,
            interface,
            direction,
        };
        for (j, other) in points.iter().enumerate() {
            if let Some(why) = double_count(other, &point) {
                bad(
                    &key,
                    format!(
                        "observation points {:?} (classifier.observation_point[{j}]) and {:?} would count the same traffic twice: {why}",
                        other.name, point.name
                    ),
                );
            }
        }
        points.push(point);
    }

    ClassifierConfig {
        bucket: Duration::from_secs(c.bucket_s),
        subscriber_networks,
        classes,
        default_class: c.default_class.clone(),
        bindings_file,
        top_hosts_per_hour: c.top_hosts_per_hour,
        poll_interval: Duration::from_millis(c.poll_interval_ms),
        commit_interval: Duration::from_millis(c.commit_interval_ms),
        threads: match c.threads {
            // One CPU is left to the commit thread.
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .saturating_sub(1)
                .clamp(1, MAX_AUTO_THREADS),
            n => n as usize,
        },
        points,
    }
}

/// Why two billing points on one exporter would bill some traffic twice, if
/// they would. Each record has exactly one observation key (direction and
/// the interface in that direction), so points overlap when their keys do;
/// and a router that exports a packet on ingress at one interface exports
/// it again on egress at another, so ingress and egress points on one
/// exporter overlap unless both name the same interface (the uplink:
/// ingress there is download, egress there is upload).
pub fn double_count(a: &ObservationPoint, b: &ObservationPoint) -> Option<String> {
    if a.exporter != b.exporter {
        return None;
    }
    let same_if = match (a.interface, b.interface) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    let iface = |p: &ObservationPoint| match p.interface {
        Some(i) => format!("interface {i}"),
        None => "any interface".to_string(),
    };
    use PointDirection::*;
    let dirs_meet = matches!(
        (a.direction, b.direction),
        (Any, _) | (_, Any) | (Ingress, Ingress) | (Egress, Egress)
    );
    if dirs_meet && same_if {
        return Some(format!(
            "both take {} records of exporter {:?} on {}",
            if a.direction == Any {
                b.direction
            } else {
                a.direction
            }
            .as_str(),
            a.exporter_name,
            if a.interface.is_none() {
                iface(b)
            } else {
                iface(a)
            },
        ));
    }
    let ingress_egress_apart = match (a.interface, b.interface) {
        (Some(x), Some(y)) => x != y,
        _ => true,
    };
    if dirs_meet || !ingress_egress_apart {
        return None;
    }
    let (ing, eg) = if a.direction == Ingress {
        (a, b)
    } else {
        (b, a)
    };
    Some(format!(
        "a packet entering exporter {:?} on {} and leaving on {} is exported twice (ingress and egress)",
        a.exporter_name,
        iface(ing),
        iface(eg)
    ))
}

pub(crate) fn validate_retention(
    r: &wire::Retention,
    bad: &mut dyn FnMut(&str, String),
) -> RetentionConfig {
    for (key, v) in [
        ("retention.raw_days", r.raw_days),
        ("retention.traffic_days", r.traffic_days),
        ("retention.top_hosts_days", r.top_hosts_days),
    ] {
        if v > 36_500 {
            bad(
                key,
                format!("must be 0 (keep forever) or at most 36500 days, got {v}"),
            );
        }
    }
    if r.traffic_days != 0 && r.raw_days != 0 && r.traffic_days < r.raw_days {
        bad(
            "retention.traffic_days",
            format!(
                "tier 2 must be kept at least as long as tier 1 (raw_days = {}), got {}",
                r.raw_days, r.traffic_days
            ),
        );
    }
    RetentionConfig {
        raw_days: r.raw_days,
        raw_max_bytes: r.raw_max_bytes,
        traffic_days: r.traffic_days,
        top_hosts_days: r.top_hosts_days,
    }
}

fn parse_nets(key: &str, list: &[String], bad: &mut dyn FnMut(&str, String)) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match parse_net(s) {
            Some(n) => out.push(n),
            None => bad(
                &format!("{key}[{i}]"),
                format!(
                    "expected a network like \"10.0.0.0/8\" or \"2001:db8::/32\" (or a single address), got {s:?}"
                ),
            ),
        }
    }
    out
}

/// A CIDR, or a bare address meaning a host route. Host bits must be zero:
/// `10.1.2.3/8` is almost always a typo.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return (n.trunc() == n).then_some(n);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}
