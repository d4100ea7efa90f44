//! Tier 1: raw segment files.
//!
//! A segment is an append-only file of checksummed, optionally compressed
//! blocks of records, written by exactly one collector. The open segment is
//! `<name>-<id>.open`; when it is rotated it gets a footer, is fsynced and is
//! renamed atomically to `<name>-<id>.kseg`. After a crash the next start
//! finds the `.open` file, keeps every whole block, truncates the torn tail,
//! and closes it. A reader never returns a record from a block whose
//! checksum does not match. The byte layout is docs/raw-format.md.

mod codec;
mod dict;
mod format;
mod reader;
mod store;
mod writer;

pub use codec::{
    BlockStream, EncodedFlows, FlowBlockEncoder, FlowColumns, MAX_BLOCK_RECORDS, PREFETCH_RECORDS,
    decode_columns, decode_flows,
};
pub use format::{BlockKind, FORMAT_VERSION, Footer, HEADER_LEN, SegmentHeader};
pub use reader::{Block, FlowSink, SegmentReader, TailState};
pub use store::{RawStore, RecoveryReport, SegmentInfo, SegmentState, StoreLock};
pub use writer::{SegmentWriter, WriterOptions};

use std::path::PathBuf;

/// Errors of tier-1 files. Corruption names what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a kopek segment ({why})")]
    BadHeader { path: PathBuf, why: &'static str },
    #[error(
        "{path}: segment format version {version} is not supported (this kopek reads versions 1 to {FORMAT_VERSION})"
    )]
    UnsupportedVersion { path: PathBuf, version: u8 },
    #[error("{path}: block at offset {offset} is damaged: {why}")]
    BadBlock {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("corrupt block: {0}")]
    CorruptBlock(&'static str),
    #[error("another collector named {name:?} holds {lock}")]
    Locked { name: String, lock: PathBuf },
}

impl SegmentError {
    /// The filesystem had no room for a write (full, or over a quota): a
    /// condition an operator fixes while the collector waits.
    pub fn is_no_space(&self) -> bool {
        matches!(self, SegmentError::Io { source, .. } if crate::state_file::no_space(source))
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SegmentError {
        let path = path.into();
        move |source| SegmentError::Io { path, source }
    }
}

#[cfg(test)]
mod tests;
