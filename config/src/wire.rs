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
pub const DEFAULT_BLOCK_RECORDS: usize = 16_384;
pub const DEFAULT_BLOCK_FLUSH_MS: u64 = 200;
pub const DEFAULT_COMPRESSION: &str = "zstd";
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
pub const DEFAULT_FSYNC: &str = "interval";
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_MAX_TEMPLATES_PER_EXPORTER: usize = 512;
pub const DEFAULT_MAX_TEMPLATES_TOTAL: usize = 65_536;
pub const DEFAULT_PENDING_HOLD_MS: u64 = 5_000;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub collector: Collector,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    pub state_dir: String,
}

impl Default for General {
    fn default() -> Self {
        General {
            state_dir: DEFAULT_STATE_DIR.into(),
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
