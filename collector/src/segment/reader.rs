//! Reading segments, closed or still growing.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::SegmentError;
use super::codec::{FlowColumns, decode_checkpoints, decode_columns, decode_losses};
use super::format::{BlockKind, CODEC_ZSTD, FRAME_LEN, Footer, Frame, HEADER_LEN, SegmentHeader};
use crate::decode::SeqCheckpoint;
use crate::record::{FlowRecord, LossRecord};

/// What [`SegmentReader::next_block`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Flows(usize),
    Losses(usize),
    Footer(Footer),
    /// A sequence checkpoint; its entries are in [`SegmentReader::checkpoint`].
    Checkpoint(usize),
}

/// Where [`SegmentReader::next_block`] puts a flow block's records.
pub trait FlowSink {
    /// Decodes a flow block (`scratch` is the reader's, for sinks that
    /// build rows from the columns). On error nothing is added.
    fn take_block(
        &mut self,
        payload: &[u8],
        count: usize,
        version: u8,
        scratch: &mut FlowColumns,
    ) -> Result<(), SegmentError>;
}

/// Rows, appended.
impl FlowSink for Vec<FlowRecord> {
    fn take_block(
        &mut self,
        payload: &[u8],
        count: usize,
        version: u8,
        scratch: &mut FlowColumns,
    ) -> Result<(), SegmentError> {
        decode_columns(payload, count, version, scratch)?;
        scratch.append_records(self);
        Ok(())
    }
}

/// Columns of the one block, replacing what was there.
impl FlowSink for FlowColumns {
    fn take_block(
        &mut self,
        payload: &[u8],
        count: usize,
        version: u8,
        _scratch: &mut FlowColumns,
    ) -> Result<(), SegmentError> {
        decode_columns(payload, count, version, self)
    }
}

/// Why the reader stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailState {
    /// Not at the end yet.
    Reading,
    /// The file ends exactly after a whole block.
    Clean,
    /// The file ends inside a block: a writer is still appending it, or
    /// crashed while appending it (recovery truncates such a tail).
    Incomplete { offset: u64, bytes: u64 },
    /// A whole-looking block fails its checks: corruption, or a torn write
    /// after power loss.
    Damaged { offset: u64, why: String },
}

/// Reads blocks in order. Never returns a record of a block whose checksum
/// fails; memory per block is bounded by the frame's length limits.
pub struct SegmentReader {
    path: PathBuf,
    file: File,
    header: SegmentHeader,
    offset: u64,
    tail: TailState,
    stored: Vec<u8>,
    raw: Vec<u8>,
    zstd: zstd::bulk::Decompressor<'static>,
    footer: Option<Footer>,
    checkpoint: Vec<SeqCheckpoint>,
    /// Decoded columns of the last block, for [`FlowSink`]s of rows.
    cols: FlowColumns,
}

impl SegmentReader {
    pub fn open(path: &Path) -> Result<SegmentReader, SegmentError> {
        let file = File::open(path).map_err(SegmentError::io(path))?;
        let mut h = [0u8; HEADER_LEN];
        let n = read_full_at(&file, &mut h, 0).map_err(SegmentError::io(path))?;
        let header = SegmentHeader::decode(path, &h[..n])?;
        Ok(SegmentReader {
            path: path.to_path_buf(),
            file,
            header,
            offset: HEADER_LEN as u64,
            tail: TailState::Reading,
            stored: Vec::new(),
            raw: Vec::new(),
            zstd: zstd::bulk::Decompressor::new().map_err(SegmentError::io(path))?,
            footer: None,
            checkpoint: Vec::new(),
            cols: FlowColumns::default(),
        })
    }

    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Byte offset of the next block to read (a resume point).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Resume at a block boundary previously returned by [`Self::offset`].
    pub fn seek(&mut self, offset: u64) {
        self.offset = offset.max(HEADER_LEN as u64);
        self.tail = TailState::Reading;
    }

    /// Why the last `next_block` returned `None`.
    pub fn tail(&self) -> &TailState {
        &self.tail
    }

    /// The footer, once read (closed segments end with one).
    pub fn footer(&self) -> Option<Footer> {
        self.footer
    }

    /// The entries of the last checkpoint block read.
    pub fn checkpoint(&self) -> &[SeqCheckpoint] {
        &self.checkpoint
    }

    /// Reads the next block, its records into `flows` (appended to a
    /// `Vec<FlowRecord>`, or replacing what a [`FlowColumns`] held; see
    /// [`FlowSink`]) or appended to `losses`; `flows` is only touched by a
    /// [`Block::Flows`]. `Ok(None)` at the end of what can be read now; see
    /// [`Self::tail`]. Calling again after `None` re-checks a growing file.
    pub fn next_block<F: FlowSink + ?Sized>(
        &mut self,
        flows: &mut F,
        losses: &mut Vec<LossRecord>,
    ) -> Result<Option<Block>, SegmentError> {
        let io = |e| SegmentError::Io {
            path: self.path.clone(),
            source: e,
        };
        let mut fh = [0u8; FRAME_LEN];
        let n = read_full_at(&self.file, &mut fh, self.offset).map_err(io)?;
        if n == 0 {
            self.tail = TailState::Clean;
            return Ok(None);
        }
        if n < FRAME_LEN {
            return Ok(self.stop_incomplete(n as u64));
        }
        let frame = match Frame::parse(&fh) {
            Ok(f) => f,
            Err(why) => return Ok(self.stop_damaged(why.to_string())),
        };
        self.stored.resize(frame.stored_len, 0);
        let got = read_full_at(&self.file, &mut self.stored, self.offset + FRAME_LEN as u64)
            .map_err(|e| SegmentError::Io {
                path: self.path.clone(),
                source: e,
            })?;
        if got < frame.stored_len {
            return Ok(self.stop_incomplete((FRAME_LEN + got) as u64));
        }
        if !frame.verify(&fh, &self.stored) {
            return Ok(self.stop_damaged("checksum mismatch".into()));
        }
        let payload: &[u8] = if frame.codec == CODEC_ZSTD {
            self.raw.clear();
            self.raw.reserve(frame.raw_len);
            match self.zstd.decompress_to_buffer(&self.stored, &mut self.raw) {
                Ok(n) if n == frame.raw_len => &self.raw,
                Ok(_) => return Err(self.bad("decompressed length differs from the frame's")),
                Err(e) => return Err(self.bad(&format!("zstd: {e}"))),
            }
        } else {
            &self.stored
        };
        let count = frame.count as usize;
        let block = match frame.kind {
            BlockKind::Flows => {
                if let Err(e) =
                    flows.take_block(payload, count, self.header.version, &mut self.cols)
                {
                    return Err(self.bad(&e.to_string()));
                }
                Block::Flows(count)
            }
            BlockKind::Losses => {
                let before = losses.len();
                if let Err(e) = decode_losses(payload, count, losses) {
                    losses.truncate(before);
                    return Err(self.bad(&e.to_string()));
                }
                Block::Losses(count)
            }
            BlockKind::Checkpoint => {
                let mut entries = Vec::new();
                if let Err(e) = decode_checkpoints(payload, count, &mut entries) {
                    return Err(self.bad(&e.to_string()));
                }
                self.checkpoint = entries;
                Block::Checkpoint(count)
            }
            BlockKind::Footer => match Footer::decode(payload) {
                Some(f) => {
                    self.footer = Some(f);
                    Block::Footer(f)
                }
                None => return Err(self.bad("footer of the wrong size")),
            },
        };
        self.offset += (FRAME_LEN + frame.stored_len) as u64;
        Ok(Some(block))
    }

    fn stop_incomplete(&mut self, bytes: u64) -> Option<Block> {
        self.tail = TailState::Incomplete {
            offset: self.offset,
            bytes,
        };
        None
    }

    fn stop_damaged(&mut self, why: String) -> Option<Block> {
        self.tail = TailState::Damaged {
            offset: self.offset,
            why,
        };
        None
    }

    /// A block whose checksum matched but whose content does not decode:
    /// a writer bug or deliberate tampering, never a torn write.
    fn bad(&self, why: &str) -> SegmentError {
        SegmentError::BadBlock {
            path: self.path.clone(),
            offset: self.offset,
            why: why.to_string(),
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
