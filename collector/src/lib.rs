//! kopek-collector: tier 1 of kopek.
//!
//! Role: receive flow exports (NetFlow v5, v9, IPFIX over UDP) from the
//! routers the config allows, decode them into the uniform [`FlowRecord`],
//! track every export stream's sequence numbers so that holes become
//! [`LossRecord`]s, and append everything to tier-1 raw segment files:
//! append-only, framed, checksummed, compressed, rotated by size and time.
//!
//! Data flow inside one collector process:
//!
//! ```text
//!  UDP sockets ──► receiver thread: allow-list ─► decode (v5 / v9 / IPFIX,
//!                   templates scoped per exporter+domain, sequence tracking)
//!                   ─► columnar blocks (each datagram's flows encoded at once)
//!                        │ bounded channel of batches (blocks, losses, checkpoint)
//!                        ▼
//!                 writer thread: zstd ─► frame + crc32c
//!                        ─► segment file (.open) ─► fsync policy ─► rotate:
//!                        footer, fsync, rename to .kseg
//! ```
//!
//! With `[collector.pcap]` a capture thread (module [`capture`]) builds
//! flows from packets on an interface and feeds the same writer.
//!
//! Outputs: segment files under `<state_dir>/raw/` (format in
//! docs/raw-format.md), a stats file readable with `kopek collector stats`.
//!
//! Never: bill, classify or look up accounts (that is the classifier's job);
//! rewrite a closed segment; drop a datagram without counting why.

pub mod capture;
pub mod decode;
pub mod generator;
pub mod mem;
pub mod query;
pub mod record;
mod recv;
pub mod run;
pub mod segment;
pub mod state_file;

pub use record::{FlowDirection, FlowRecord, LossReason, LossRecord, LossUnit, SourceKind};
