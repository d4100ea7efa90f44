//! kopek-config: the one TOML file every kopek process reads.
//!
//! Two layers, as in dora: [`wire`] holds serde structs that mirror the file
//! (every struct `deny_unknown_fields`, every default a named const), and
//! [`Config`] holds validated runtime types (`SocketAddr`, `Duration`,
//! `NonZeroU32`, ...). [`Config::load`] does both and reports the first
//! problem as a [`ConfigError`] that names the file, the key and what is
//! wrong; [`Config::check`] reports all validation problems at once for
//! `kopek config check`.
//!
//! This crate never opens sockets, creates directories or touches state: it
//! only reads the file and judges it.

use ipnet::IpNet;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod classifier;
pub mod files;
pub mod wire;

pub use classifier::{
    ClassDef, ClassifierConfig, CountRule, ObservationPoint, PointDirection, RetentionConfig,
    double_count, parse_net,
};

/// Where kopek looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kopek/kopek.toml";

/// A config problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One invalid value: `key` is the dotted TOML path (`collector.exporter[1].address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key `{}`: {}", self.key, self.message)
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from (for messages and reloads).
    pub path: PathBuf,
    pub state_dir: PathBuf,
    /// The ISP's time zone: used only at the edges (reports, tariff zones).
    pub timezone: chrono_tz::Tz,
    pub collector: CollectorConfig,
    pub classifier: ClassifierConfig,
    pub retention: RetentionConfig,
    pub core: CoreConfig,
    pub enforcer: EnforcerConfig,
}

fn validate_pcap(p: &wire::Pcap, bad: &mut dyn FnMut(&str, String)) -> PcapConfig {
    if p.interface.is_empty()
        || p.interface.len() > 15
        || !p
            .interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
    {
        bad(
            "collector.pcap.interface",
            format!(
                "expected an interface name (1-15 of letters, digits, - _ . @ :, or \"any\"), got {:?}",
                p.interface
            ),
        );
    }
    if p.filter.len() > 4096 || p.filter.contains('\0') {
        bad(
            "collector.pcap.filter",
            "must be a BPF expression of at most 4096 bytes without NUL".into(),
        );
    }
    if !(64..=65_535).contains(&p.snaplen) {
        bad(
            "collector.pcap.snaplen",
            format!(
                "must be 64..=65535 bytes (headers fit in 128), got {}",
                p.snaplen
            ),
        );
    }
    if !(64 * 1024..=1 << 31).contains(&p.buffer_bytes) {
        bad(
            "collector.pcap.buffer_bytes",
            format!("must be 64 KiB..=2 GiB, got {}", p.buffer_bytes),
        );
    }
    if !(1..=3_600).contains(&p.active_timeout_s) {
        bad(
            "collector.pcap.active_timeout_s",
            format!("must be 1..=3600, got {}", p.active_timeout_s),
        );
    }
    if p.idle_timeout_s == 0 || p.idle_timeout_s > p.active_timeout_s {
        bad(
            "collector.pcap.idle_timeout_s",
            format!(
                "must be at least 1 and at most active_timeout_s ({}), got {}",
                p.active_timeout_s, p.idle_timeout_s
            ),
        );
    }
    if !(1_000..=50_000_000).contains(&p.max_flows) {
        bad(
            "collector.pcap.max_flows",
            format!("must be 1000..=50000000, got {}", p.max_flows),
        );
    }
    PcapConfig {
        interface: p.interface.clone(),
        filter: p.filter.clone(),
        snaplen: p.snaplen,
        buffer_bytes: p.buffer_bytes,
        promiscuous: p.promiscuous,
        active_timeout: Duration::from_secs(p.active_timeout_s),
        idle_timeout: Duration::from_secs(p.idle_timeout_s),
        max_flows: p.max_flows,
    }
}

/// `[enforcer]`: the default-deny nftables table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcerConfig {
    /// The one `inet` table the enforcer owns.
    pub table: String,
    pub networks: Vec<IpNet>,
    pub walled_garden: Vec<IpNet>,
    pub lease: Duration,
    pub renew: Duration,
    pub poll_interval: Duration,
    pub nft: PathBuf,
    /// Per-subscriber counters as a tier-1 source (`None`: off).
    pub counters_poll: Option<Duration>,
    /// Counters per traffic class (class lists mirrored into nft sets).
    pub counters_by_class: bool,
}

/// `[core]`: the billing daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    pub socket: PathBuf,
    /// Group given read/write access to the socket (besides root); absent
    /// groups are tolerated (root only).
    pub socket_group: String,
    pub cycle_interval: Duration,
    pub posting: Posting,
}

/// How often accrued charges become ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posting {
    /// One entry per account, service and local day (at the day's end).
    Day,
    /// One entry per account and service every rating cycle that changed it.
    Cycle,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CollectorConfig {
    /// Names this collector's segments (`<name>-<id>-<time>.kseg`).
    pub name: String,
    pub listen: Vec<SocketAddr>,
    pub socket_buffer_bytes: usize,
    pub stats_interval: Duration,
    pub segment: SegmentConfig,
    pub durability: Durability,
    pub limits: DecodeLimitsConfig,
    pub exporters: Vec<Exporter>,
    /// `[collector.pcap]`: capture on an interface and build flows.
    pub pcap: Option<PcapConfig>,
}

/// Packet capture as a tier-1 source (docs/pcap-source.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapConfig {
    pub interface: String,
    /// BPF filter (empty: every packet; non-IP ones are counted and skipped).
    pub filter: String,
    pub snaplen: u32,
    /// Kernel capture buffer.
    pub buffer_bytes: u64,
    pub promiscuous: bool,
    /// A flow still going is exported at least this often.
    pub active_timeout: Duration,
    /// A flow with no packet for this long is exported.
    pub idle_timeout: Duration,
    /// Most flows held at once; when full, flows are exported early.
    pub max_flows: usize,
}

impl Default for PcapConfig {
    /// The documented defaults, no interface (for reading files).
    fn default() -> PcapConfig {
        PcapConfig {
            interface: String::new(),
            filter: String::new(),
            snaplen: wire::PCAP_SNAPLEN,
            buffer_bytes: wire::PCAP_BUFFER_BYTES,
            promiscuous: false,
            active_timeout: Duration::from_secs(wire::PCAP_ACTIVE_TIMEOUT_S),
            idle_timeout: Duration::from_secs(wire::PCAP_IDLE_TIMEOUT_S),
            max_flows: wire::PCAP_MAX_FLOWS,
        }
    }
}

impl CollectorConfig {
    /// The directory that holds this collector's tier-1 segments.
    pub fn raw_dir(&self, state_dir: &Path) -> PathBuf {
        state_dir.join("raw")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd { level: i32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentConfig {
    pub rotate_interval: Duration,
    pub rotate_size_bytes: u64,
    pub block_records: usize,
    pub block_flush: Duration,
    pub compression: Compression,
    /// Bytes of written-out blocks held in memory while the disk refuses
    /// writes (full); past it the collector stops reading its sockets.
    pub hold_bytes: u64,
}

/// When written blocks are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync after every block: nothing written is lost even on power loss.
    EveryBlock,
    /// fsync at most this often: a power loss may cost the last interval,
    /// a process crash costs nothing (written blocks are in the page cache).
    Interval(Duration),
    /// Never fsync except at segment close (benchmarks, tmpfs).
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimitsConfig {
    pub max_templates_per_exporter: usize,
    pub max_templates_total: usize,
    pub pending_hold: Duration,
}

/// An exporter allowed to send to this collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporter {
    pub name: String,
    pub address: IpAddr,
    /// `None`: trust the export's own sampling fields; `Some(n)`: 1 in n.
    pub sampling: Option<NonZeroU32>,
    pub clock: ExporterClock,
}

/// Whose clock a flow's times are read by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExporterClock {
    /// The times as the export carries them (the exporter's clock).
    #[default]
    Exporter,
    /// The collector's: each datagram's times are moved by the difference
    /// between its arrival and its export time, so that a router whose
    /// clock is unset (1970 after a reboot without NTP) or wrong is
    /// counted at the right time. Their distances to the export time
    /// (the flows' durations and ages) stay the exporter's.
    Arrival,
}

impl Config {
    /// Reads and validates `path`; the error names the file and the key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = files::read_limited_text(path, files::MAX_CONFIG_BYTES).map_err(|source| {
            ConfigError::Read {
                file: path.to_path_buf(),
                source,
            }
        })?;
        Config::from_toml(path, &text)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let wire: wire::File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: describe_toml_error(&e, text),
        })?;
        Config::validate(path, wire).map_err(|problems| ConfigError::Invalid {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// Turns the wire form into runtime types, collecting every problem.
    pub fn validate(path: &Path, w: wire::File) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_string(),
                message,
            })
        };

        let state_dir = PathBuf::from(&w.general.state_dir);
        if !state_dir.is_absolute() {
            bad(
                "general.state_dir",
                format!("must be an absolute path, got {:?}", w.general.state_dir),
            );
        }

        let timezone = match w.general.timezone.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                bad(
                    "general.timezone",
                    format!(
                        "expected an IANA time zone like \"Europe/Moscow\" or \"UTC\", got {:?}",
                        w.general.timezone
                    ),
                );
                chrono_tz::Tz::UTC
            }
        };

        let c = w.collector;
        if !valid_name(&c.name) {
            bad(
                "collector.name",
                format!(
                    "must be 1-32 characters of a-z, 0-9, '_' (it names segment files), got {:?}",
                    c.name
                ),
            );
        }
        let mut listen = Vec::new();
        if c.listen.is_empty() && c.pcap.is_none() {
            bad(
                "collector.listen",
                "must list at least one address:port (or configure [collector.pcap])".into(),
            );
        }
        for (i, l) in c.listen.iter().enumerate() {
            match l.parse::<SocketAddr>() {
                Ok(a) => listen.push(a),
                Err(_) => bad(
                    &format!("collector.listen[{i}]"),
                    format!(
                        "expected an address:port like \"0.0.0.0:2055\" or \"[::]:2055\", got {l:?}"
                    ),
                ),
            }
        }
        if !(64 * 1024..=1 << 30).contains(&c.socket_buffer_bytes) {
            bad(
                "collector.socket_buffer_bytes",
                format!(
                    "must be between 65536 and 1073741824, got {}",
                    c.socket_buffer_bytes
                ),
            );
        }
        if !(100..=3_600_000).contains(&c.stats_interval_ms) {
            bad(
                "collector.stats_interval_ms",
                format!("must be 100..=3600000, got {}", c.stats_interval_ms),
            );
        }

        let s = &c.segment;
        if !(1..=86_400).contains(&s.rotate_interval_s) {
            bad(
                "collector.segment.rotate_interval_s",
                format!("must be 1..=86400 seconds, got {}", s.rotate_interval_s),
            );
        }
        if !(1 << 20..=1 << 34).contains(&s.rotate_size_bytes) {
            bad(
                "collector.segment.rotate_size_bytes",
                format!("must be 1 MiB..=16 GiB, got {}", s.rotate_size_bytes),
            );
        }
        if !(1..=65_536).contains(&s.block_records) {
            bad(
                "collector.segment.block_records",
                format!("must be 1..=65536, got {}", s.block_records),
            );
        }
        if s.hold_bytes > 1 << 34 {
            bad(
                "collector.segment.hold_bytes",
                format!("must be 0..=16 GiB, got {}", s.hold_bytes),
            );
        }
        if !(1..=60_000).contains(&s.block_flush_ms) {
            bad(
                "collector.segment.block_flush_ms",
                format!("must be 1..=60000, got {}", s.block_flush_ms),
            );
        }
        let compression = match s.compression.as_str() {
            "none" => Compression::None,
            "zstd" => {
                if !(1..=19).contains(&s.zstd_level) {
                    bad(
                        "collector.segment.zstd_level",
                        format!("must be 1..=19, got {}", s.zstd_level),
                    );
                }
                Compression::Zstd {
                    level: s.zstd_level,
                }
            }
            other => {
                bad(
                    "collector.segment.compression",
                    format!("expected \"zstd\" or \"none\", got {other:?}"),
                );
                Compression::None
            }
        };

        let d = &c.durability;
        let durability = match d.fsync.as_str() {
            "block" => Durability::EveryBlock,
            "never" => Durability::Never,
            "interval" => {
                if !(1..=60_000).contains(&d.fsync_interval_ms) {
                    bad(
                        "collector.durability.fsync_interval_ms",
                        format!("must be 1..=60000, got {}", d.fsync_interval_ms),
                    );
                }
                Durability::Interval(Duration::from_millis(d.fsync_interval_ms))
            }
            other => {
                bad(
                    "collector.durability.fsync",
                    format!("expected \"block\", \"interval\" or \"never\", got {other:?}"),
                );
                Durability::Never
            }
        };

        let l = &c.limits;
        if !(1..=65_536).contains(&l.max_templates_per_exporter) {
            bad(
                "collector.limits.max_templates_per_exporter",
                format!("must be 1..=65536, got {}", l.max_templates_per_exporter),
            );
        }
        if !(1..=10_000_000).contains(&l.max_templates_total) {
            bad(
                "collector.limits.max_templates_total",
                format!("must be 1..=10000000, got {}", l.max_templates_total),
            );
        }
        if l.pending_hold_ms > 600_000 {
            bad(
                "collector.limits.pending_hold_ms",
                format!("must be at most 600000, got {}", l.pending_hold_ms),
            );
        }

        let mut exporters = Vec::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, e) in c.exporter.iter().enumerate() {
            let key = format!("collector.exporter[{i}]");
            if !valid_name(&e.name) {
                bad(
                    &format!("{key}.name"),
                    format!("must be 1-32 characters of a-z, 0-9, '_', got {:?}", e.name),
                );
            } else if !names.insert(e.name.clone()) {
                bad(
                    &format!("{key}.name"),
                    format!("exporter name {:?} is used twice", e.name),
                );
            }
            let address = match e.address.parse::<IpAddr>() {
                Ok(a) => {
                    if !addrs.insert(a) {
                        bad(
                            &format!("{key}.address"),
                            format!("address {a} is listed twice"),
                        );
                    }
                    Some(a)
                }
                Err(_) => {
                    bad(
                        &format!("{key}.address"),
                        format!("expected an IPv4 or IPv6 address, got {:?}", e.address),
                    );
                    None
                }
            };
            let sampling = match &e.sampling {
                wire::Sampling::Auto(s) if s == "auto" => None,
                wire::Sampling::Auto(s) => {
                    bad(
                        &format!("{key}.sampling"),
                        format!("expected \"auto\" or a positive integer, got {s:?}"),
                    );
                    None
                }
                wire::Sampling::Rate(n) => match u32::try_from(*n).ok().and_then(NonZeroU32::new) {
                    Some(n) => Some(n),
                    None => {
                        bad(
                            &format!("{key}.sampling"),
                            format!("must be 1..=4294967295 (1 = unsampled), got {n}"),
                        );
                        None
                    }
                },
            };
            let clock = match e.clock.as_str() {
                "exporter" => ExporterClock::Exporter,
                "arrival" => ExporterClock::Arrival,
                other => {
                    bad(
                        &format!("{key}.clock"),
                        format!("expected \"exporter\" or \"arrival\", got {other:?}"),
                    );
                    ExporterClock::Exporter
                }
            };
            if let Some(address) = address {
                exporters.push(Exporter {
                    name: e.name.clone(),
                    address,
                    sampling,
                    clock,
                });
            }
        }

        let pcap = c.pcap.as_ref().map(|p| validate_pcap(p, &mut bad));
        let classifier = classifier::validate(&w.classifier, &exporters, &mut bad);
        let retention = classifier::validate_retention(&w.retention, &mut bad);
        let core = validate_core(&w.core, &mut bad);
        let enforcer = validate_enforcer(&w.enforcer, &classifier.subscriber_networks, &mut bad);

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            path: path.to_path_buf(),
            state_dir,
            timezone,
            classifier,
            retention,
            core,
            enforcer,
            collector: CollectorConfig {
                name: c.name,
                listen,
                socket_buffer_bytes: c.socket_buffer_bytes,
                stats_interval: Duration::from_millis(c.stats_interval_ms),
                segment: SegmentConfig {
                    rotate_interval: Duration::from_secs(s.rotate_interval_s),
                    rotate_size_bytes: s.rotate_size_bytes,
                    block_records: s.block_records,
                    block_flush: Duration::from_millis(s.block_flush_ms),
                    compression,
                    hold_bytes: s.hold_bytes,
                },
                durability,
                limits: DecodeLimitsConfig {
                    max_templates_per_exporter: l.max_templates_per_exporter,
                    max_templates_total: l.max_templates_total,
                    pending_hold: Duration::from_millis(l.pending_hold_ms),
                },
                exporters,
                pcap,
            },
        })
    }

    /// The effective configuration (defaults filled in) as TOML, for
    /// `kopek config check --print-effective`.
    pub fn effective_toml(path: &Path) -> Result<String, ConfigError> {
        let text = files::read_limited_text(path, files::MAX_CONFIG_BYTES).map_err(|source| {
            ConfigError::Read {
                file: path.to_path_buf(),
                source,
            }
        })?;
        let wire: wire::File = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: describe_toml_error(&e, &text),
        })?;
        Config::validate(path, wire.clone()).map_err(|problems| ConfigError::Invalid {
            file: path.to_path_buf(),
            problems,
        })?;
        toml::to_string_pretty(&wire).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// Segment and exporter names become parts of file names and CLI filters.
/// A name kopek puts in file names (collectors, classes): 1-32 of a-z,
/// 0-9, '_'.
pub fn valid_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// toml's message already names the key (for unknown fields, the field)
/// and carries line/column; we add the line number in front.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests;

fn validate_core(c: &wire::Core, bad: &mut impl FnMut(&str, String)) -> CoreConfig {
    let socket = PathBuf::from(&c.socket);
    if !socket.is_absolute() {
        bad(
            "core.socket",
            format!("must be an absolute path, got {:?}", c.socket),
        );
    }
    if !(100..=60_000).contains(&c.cycle_interval_ms) {
        bad(
            "core.cycle_interval_ms",
            format!("must be 100..=60000, got {}", c.cycle_interval_ms),
        );
    }
    let posting = match c.posting.as_str() {
        "day" => Posting::Day,
        "cycle" => Posting::Cycle,
        other => {
            bad(
                "core.posting",
                format!("expected \"day\" or \"cycle\", got {other:?}"),
            );
            Posting::Day
        }
    };
    CoreConfig {
        socket,
        socket_group: c.socket_group.clone(),
        cycle_interval: Duration::from_millis(c.cycle_interval_ms),
        posting,
    }
}

fn validate_enforcer(
    e: &wire::Enforcer,
    subscriber_networks: &[IpNet],
    bad: &mut impl FnMut(&str, String),
) -> EnforcerConfig {
    if e.table.is_empty()
        || e.table.len() > 64
        || !e
            .table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bad(
            "enforcer.table",
            format!("1-64 letters, digits, '_' or '-', got {:?}", e.table),
        );
    }
    let nets = |key: &str, list: &[String], bad: &mut dyn FnMut(&str, String)| -> Vec<IpNet> {
        let mut v = Vec::new();
        for (i, n) in list.iter().enumerate() {
            match classifier::parse_net(n) {
                Some(net) => v.push(net),
                None => bad(
                    &format!("{key}[{i}]"),
                    format!("expected an address or prefix with zero host bits, got {n:?}"),
                ),
            }
        }
        v
    };
    let mut networks = nets("enforcer.networks", &e.networks, bad);
    if networks.is_empty() {
        networks = subscriber_networks.to_vec();
    }
    let walled_garden = nets("enforcer.walled_garden", &e.walled_garden, bad);
    if !(2..=86_400).contains(&e.lease_s) {
        bad(
            "enforcer.lease_s",
            format!("must be 2..=86400, got {}", e.lease_s),
        );
    }
    if e.renew_s == 0 || e.renew_s >= e.lease_s {
        bad(
            "enforcer.renew_s",
            format!(
                "must be at least 1 and below lease_s ({}), got {}",
                e.lease_s, e.renew_s
            ),
        );
    }
    if !(20..=10_000).contains(&e.poll_interval_ms) {
        bad(
            "enforcer.poll_interval_ms",
            format!("must be 20..=10000, got {}", e.poll_interval_ms),
        );
    }
    if e.counters_by_class && e.counters_poll_s == 0 {
        bad(
            "enforcer.counters_by_class",
            "needs counters: set enforcer.counters_poll_s too".into(),
        );
    }
    if e.counters_poll_s > 86_400 {
        bad(
            "enforcer.counters_poll_s",
            format!("must be 0 (off) or up to 86400, got {}", e.counters_poll_s),
        );
    }
    EnforcerConfig {
        table: e.table.clone(),
        networks,
        walled_garden,
        lease: Duration::from_secs(e.lease_s),
        renew: Duration::from_secs(e.renew_s),
        poll_interval: Duration::from_millis(e.poll_interval_ms),
        nft: PathBuf::from(&e.nft),
        counters_poll: (e.counters_poll_s > 0).then(|| Duration::from_secs(e.counters_poll_s)),
        counters_by_class: e.counters_by_class,
    }
}
