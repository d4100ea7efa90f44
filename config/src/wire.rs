//! The file as written: serde structs, unknown keys rejected, defaults named.

use serde::{Deserialize, Serialize};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/kopek";
pub const DEFAULT_COLLECTOR_NAME: &str = "main";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:2055";
/// 4 MiB: enough for ~100 ms of a 1 M flows/s burst. The kernel caps it at
/// `net.core.rmem_max` unless the process has CAP_NET_ADMIN (SO_RCVBUFFORCE).
pub const DEFAULT_SOCKET_BUFFER_BYTES: usize = 4 << 20;
pub const DEFAULT_STATS_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_ROTATE_INTERVAL_S: u64 = 60;
pub const DEFAULT_ROTATE_SIZE_BYTES: u64 = 256 << 20;
/// Flow blocks held in memory while the disk refuses writes (full): at
/// ~14 bytes a flow, 128 MiB is ~9.6 M flows (~96 s at 100,000 flows/s).
pub const DEFAULT_HOLD_BYTES: u64 = 128 << 20;
pub const DEFAULT_BLOCK_RECORDS: usize = 16_384;
pub const DEFAULT_BLOCK_FLUSH_MS: u64 = 200;
pub const DEFAULT_COMPRESSION: &str = "zstd";
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
pub const DEFAULT_FSYNC: &str = "interval";
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_MAX_TEMPLATES_PER_EXPORTER: usize = 512;
pub const DEFAULT_MAX_TEMPLATES_TOTAL: usize = 65_536;
pub const DEFAULT_PENDING_HOLD_MS: u64 = 5_000;
pub const DEFAULT_TIMEZONE: &str = "UTC";
/// Tier-2 bucket width: 5 minutes.
pub const DEFAULT_BUCKET_S: u64 = 300;
pub const DEFAULT_CLASS: &str = "paid";
pub const DEFAULT_TOP_HOSTS_PER_HOUR: usize = 20;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 200;
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_COUNT: &str = "both";
pub const DEFAULT_POINT_DIRECTION: &str = "any";
/// Tier 1: about 13 months (disputes over last year's bills).
pub const DEFAULT_RAW_DAYS: u32 = 400;
/// Tier-2 traffic aggregates: three years.
pub const DEFAULT_TRAFFIC_DAYS: u32 = 1_100;
/// Tier-2 per-host detail: six months.
pub const DEFAULT_TOP_HOSTS_DAYS: u32 = 190;
/// The core's control socket (root and the `kopek` group may connect).
pub const DEFAULT_CORE_SOCKET: &str = "/run/kopek/core.sock";
pub const DEFAULT_CORE_SOCKET_GROUP: &str = "kopek";
/// One rating cycle a second: blocking reacts within 2 s.
pub const DEFAULT_CYCLE_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_POSTING: &str = "day";
pub const DEFAULT_NFT_TABLE: &str = "kopek";
/// Allowed-set leases: traffic stops by itself this long after the
/// enforcer (or the core behind it) stops renewing.
pub const DEFAULT_LEASE_S: u64 = 120;
pub const DEFAULT_RENEW_S: u64 = 30;
pub const DEFAULT_ENFORCER_POLL_MS: u64 = 200;
pub const DEFAULT_NFT: &str = "/usr/sbin/nft";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub collector: Collector,
    #[serde(default)]
    pub classifier: Classifier,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub core: Core,
    #[serde(default)]
    pub enforcer: Enforcer,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Enforcer {
    pub table: String,
    /// Subscriber address space the default deny applies to; empty: the
    /// classifier's subscriber_networks.
    pub networks: Vec<String>,
    pub walled_garden: Vec<String>,
    pub lease_s: u64,
    pub renew_s: u64,
    pub poll_interval_ms: u64,
    pub nft: String,
    /// Per-subscriber nft counters as a tier-1 source, read and zeroed this
    /// often; 0: off.
    pub counters_poll_s: u64,
    /// Count every traffic class apart (the class lists mirrored into nft
    /// sets); false: everything in the default class.
    pub counters_by_class: bool,
}

impl Default for Enforcer {
    fn default() -> Self {
        Enforcer {
            table: DEFAULT_NFT_TABLE.into(),
            networks: Vec::new(),
            walled_garden: Vec::new(),
            lease_s: DEFAULT_LEASE_S,
            renew_s: DEFAULT_RENEW_S,
            poll_interval_ms: DEFAULT_ENFORCER_POLL_MS,
            nft: DEFAULT_NFT.into(),
            counters_poll_s: 0,
            counters_by_class: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Core {
    pub socket: String,
    pub socket_group: String,
    pub cycle_interval_ms: u64,
    pub posting: String,
}

impl Default for Core {
    fn default() -> Self {
        Core {
            socket: DEFAULT_CORE_SOCKET.into(),
            socket_group: DEFAULT_CORE_SOCKET_GROUP.into(),
            cycle_interval_ms: DEFAULT_CYCLE_INTERVAL_MS,
            posting: DEFAULT_POSTING.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    pub state_dir: String,
    pub timezone: String,
}

impl Default for General {
    fn default() -> Self {
        General {
            state_dir: DEFAULT_STATE_DIR.into(),
            timezone: DEFAULT_TIMEZONE.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Collector {
    pub name: String,
    pub listen: Vec<String>,
    pub socket_buffer_bytes: usize,
    pub stats_interval_ms: u64,
    pub segment: Segment,
    pub durability: Durability,
    pub limits: Limits,
    pub exporter: Vec<Exporter>,
    /// Packet capture as a source (no NetFlow exporter on this host).
    pub pcap: Option<Pcap>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pcap {
    pub interface: String,
    #[serde(default)]
    pub filter: String,
    #[serde(default = "Pcap::default_snaplen")]
    pub snaplen: u32,
    #[serde(default = "Pcap::default_buffer_bytes")]
    pub buffer_bytes: u64,
    #[serde(default)]
    pub promiscuous: bool,
    #[serde(default = "Pcap::default_active_timeout_s")]
    pub active_timeout_s: u64,
    #[serde(default = "Pcap::default_idle_timeout_s")]
    pub idle_timeout_s: u64,
    #[serde(default = "Pcap::default_max_flows")]
    pub max_flows: usize,
}

pub const PCAP_SNAPLEN: u32 = 128;
pub const PCAP_BUFFER_BYTES: u64 = 8 << 20;
pub const PCAP_ACTIVE_TIMEOUT_S: u64 = 60;
pub const PCAP_IDLE_TIMEOUT_S: u64 = 15;
pub const PCAP_MAX_FLOWS: usize = 1_000_000;

impl Pcap {
    fn default_snaplen() -> u32 {
        PCAP_SNAPLEN
    }
    fn default_buffer_bytes() -> u64 {
        PCAP_BUFFER_BYTES
    }
    fn default_active_timeout_s() -> u64 {
        PCAP_ACTIVE_TIMEOUT_S
    }
    fn default_idle_timeout_s() -> u64 {
        PCAP_IDLE_TIMEOUT_S
    }
    fn default_max_flows() -> usize {
        PCAP_MAX_FLOWS
    }
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            name: DEFAULT_COLLECTOR_NAME.into(),
            listen: vec![DEFAULT_LISTEN.into()],
            socket_buffer_bytes: DEFAULT_SOCKET_BUFFER_BYTES,
            stats_interval_ms: DEFAULT_STATS_INTERVAL_MS,
            segment: Segment::default(),
            durability: Durability::default(),
            limits: Limits::default(),
            exporter: Vec::new(),
            pcap: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Segment {
    pub rotate_interval_s: u64,
    pub rotate_size_bytes: u64,
    pub block_records: usize,
    pub block_flush_ms: u64,
    pub compression: String,
    pub zstd_level: i32,
    pub hold_bytes: u64,
}

impl Default for Segment {
    fn default() -> Self {
        Segment {
            rotate_interval_s: DEFAULT_ROTATE_INTERVAL_S,
            rotate_size_bytes: DEFAULT_ROTATE_SIZE_BYTES,
            block_records: DEFAULT_BLOCK_RECORDS,
            block_flush_ms: DEFAULT_BLOCK_FLUSH_MS,
            compression: DEFAULT_COMPRESSION.into(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            hold_bytes: DEFAULT_HOLD_BYTES,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Durability {
    pub fsync: String,
    pub fsync_interval_ms: u64,
}

impl Default for Durability {
    fn default() -> Self {
        Durability {
            fsync: DEFAULT_FSYNC.into(),
            fsync_interval_ms: DEFAULT_FSYNC_INTERVAL_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_templates_per_exporter: usize,
    pub max_templates_total: usize,
    pub pending_hold_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_templates_per_exporter: DEFAULT_MAX_TEMPLATES_PER_EXPORTER,
            max_templates_total: DEFAULT_MAX_TEMPLATES_TOTAL,
            pending_hold_ms: DEFAULT_PENDING_HOLD_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exporter {
    pub name: String,
    pub address: String,
    #[serde(default = "Sampling::auto")]
    pub sampling: Sampling,
    /// `"exporter"` (default) or `"arrival"`.
    #[serde(default = "default_clock")]
    pub clock: String,
}

fn default_clock() -> String {
    "exporter".into()
}

/// `sampling = "auto"` or `sampling = 100`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Sampling {
    Rate(i64),
    Auto(String),
}

impl Sampling {
    fn auto() -> Sampling {
        Sampling::Auto("auto".into())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Classifier {
    pub bucket_s: u64,
    pub subscriber_networks: Vec<String>,
    pub default_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bindings_file: Option<String>,
    pub top_hosts_per_hour: usize,
    pub poll_interval_ms: u64,
    pub commit_interval_ms: u64,
    pub threads: u32,
    pub class: Vec<Class>,
    pub observation_point: Vec<ObservationPoint>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier {
            bucket_s: DEFAULT_BUCKET_S,
            subscriber_networks: Vec::new(),
            default_class: DEFAULT_CLASS.into(),
            bindings_file: None,
            top_hosts_per_hour: DEFAULT_TOP_HOSTS_PER_HOUR,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            commit_interval_ms: DEFAULT_COMMIT_INTERVAL_MS,
            threads: 0,
            class: Vec::new(),
            observation_point: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub name: String,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default = "default_count")]
    pub count: String,
}

fn default_count() -> String {
    DEFAULT_COUNT.into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationPoint {
    pub name: String,
    pub exporter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<i64>,
    #[serde(default = "default_point_direction")]
    pub direction: String,
}

fn default_point_direction() -> String {
    DEFAULT_POINT_DIRECTION.into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    pub raw_days: u32,
    pub raw_max_bytes: u64,
    pub traffic_days: u32,
    pub top_hosts_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_days: DEFAULT_RAW_DAYS,
            raw_max_bytes: 0,
            traffic_days: DEFAULT_TRAFFIC_DAYS,
            top_hosts_days: DEFAULT_TOP_HOSTS_DAYS,
        }
    }
}
