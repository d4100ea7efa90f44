//! The one writer of an open segment.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kopek_config::{Compression, Durability};

use super::codec::{
    EncodedFlows, FlowBlockEncoder, MAX_BLOCK_RECORDS, encode_checkpoints, encode_losses,
};
use super::format::{
    BlockKind, CODEC_NONE, CODEC_ZSTD, FORMAT_VERSION, FRAME_LEN, Footer, Frame, SegmentHeader,
};
use super::{SegmentError, store};
use crate::decode::SeqCheckpoint;
use crate::record::{FlowRecord, LossRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    pub compression: Compression,
    pub durability: Durability,
}

/// Appends blocks to `<name>-<id>.open`; [`SegmentWriter::close`] seals it.
pub struct SegmentWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    header: SegmentHeader,
    footer: Footer,
    len_bytes: u64,
    opts: WriterOptions,
    encoder: FlowBlockEncoder,
    raw: Vec<u8>,
    /// Whole frames not yet written: one `write` per commit.
    pending: Vec<u8>,
    /// The pending frames: where each ends in `pending`, and what it adds
    /// to the footer once written.
    staged: Vec<Staged>,
    /// Commits keep their frames pending instead of writing them (the
    /// disk refused a write; see [`Self::hold`]).
    holding: bool,
    /// A write failed: the file may hold part of the pending frames
    /// beyond `len_bytes` (rewritten in place by the next write).
    torn: bool,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    last_sync: Instant,
    unsynced: bool,
}

impl SegmentWriter {
    /// Creates a new open segment; its header is on disk (fsynced, and the
    /// directory entry too) before this returns.
    pub fn create(
        dir: &Path,
        collector: &str,
        segment_id: u64,
        now_ms: i64,
        opts: WriterOptions,
    ) -> Result<SegmentWriter, SegmentError> {
        let path = dir.join(store::open_name(collector, segment_id));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(SegmentError::io(&path))?;
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            segment_id,
            created_ms: now_ms,
            collector: collector.to_string(),
        };
        let h = header.encode();
        let written = file
            .write_all(&h)
            .and_then(|()| file.sync_all())
            .map_err(SegmentError::io(&path))
            .and_then(|()| store::sync_dir(dir));
        if let Err(e) = written {
            // No half-made segment left behind (a disk without room for
            // the header is tried again with the same id).
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let zstd = match opts.compression {
            Compression::None => None,
            Compression::Zstd { level } => {
                Some(block_compressor(level).map_err(SegmentError::io(&path))?)
            }
        };
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            path,
            file,
            header,
            footer: Footer::empty(),
            len_bytes: h.len() as u64,
            opts,
            encoder: FlowBlockEncoder::default(),
            raw: Vec::with_capacity(1 << 20),
            pending: Vec::with_capacity(1 << 20),
            staged: Vec::new(),
            holding: false,
            torn: false,
            zstd,
            last_sync: Instant::now(),
            unsynced: false,
        })
    }

    pub fn segment_id(&self) -> u64 {
        self.header.segment_id
    }

    pub fn created_ms(&self) -> i64 {
        self.header.created_ms
    }

    /// Bytes in the file (written blocks; pending ones are not counted).
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Running totals of what this segment holds so far (written blocks;
    /// pending ones are not counted).
    pub fn footer(&self) -> Footer {
        self.footer
    }

    /// Bytes of frames appended but not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Keeps what is appended from now on in memory instead of writing it,
    /// until [`Self::write_held`] succeeds: for a disk that refused a write
    /// (full), so that the writer's owner can go on taking flows while it
    /// waits for room. A crash while holding loses what is held, never what
    /// was written (the file ends with whole blocks or a torn tail that
    /// recovery cuts).
    pub fn hold(&mut self) {
        self.holding = true;
    }

    pub fn is_holding(&self) -> bool {
        self.holding
    }

    /// Tries to write everything held, whole blocks at a time, each run of
    /// them given its room first (`fallocate`), so that a disk with a
    /// little room takes what fits and is not filled by a write that
    /// fails halfway. When all of it is written, appends are written again
    /// as they come; otherwise the rest stays held.
    pub fn write_held(&mut self) -> Result<(), SegmentError> {
        let (mut frames, mut off) = (0, 0);
        let res = loop {
            let Some(first) = self.staged.get(frames) else {
                break Ok(());
            };
            // Frames up to HELD_CHUNK bytes (at least one).
            let mut end = first.end;
            let mut k = frames + 1;
            while let Some(next) = self.staged.get(k).filter(|f| f.end - off <= HELD_CHUNK) {
                end = next.end;
                k += 1;
            }
            let chunk = &self.pending[off..end];
            let written = reserve(&self.file, self.len_bytes, chunk.len())
                .and_then(|()| self.file.write_all_at(chunk, self.len_bytes));
            if let Err(e) = written {
                self.torn = true;
                break Err(SegmentError::io(&self.path)(e));
            }
            self.len_bytes += chunk.len() as u64;
            for f in &self.staged[frames..k] {
                self.footer.add(&f.adds);
            }
            (frames, off) = (k, end);
        };
        self.pending.drain(..off);
        self.staged.drain(..frames);
        for f in &mut self.staged {
            f.end -= off;
        }
        self.unsynced |= frames > 0;
        res?;
        self.holding = false;
        // What a long hold grew is given back (it doubles as it grows:
        // up to twice `hold_bytes`).
        self.pending.shrink_to(PENDING_KEPT);
        self.written_whole()
    }

    /// Writes `records` as one or more blocks. When this returns the blocks
    /// are in the kernel (they survive a crash of this process); they are on
    /// stable storage after the next sync the durability policy makes.
    pub fn append_flows(&mut self, records: &[FlowRecord]) -> Result<(), SegmentError> {
        self.push_flows(records, MAX_BLOCK_RECORDS)?;
        self.commit()
    }

    /// Writes loss records as one block (uncompressed: they are few).
    pub fn append_losses(&mut self, records: &[LossRecord]) -> Result<(), SegmentError> {
        self.push_losses(records)?;
        self.commit()
    }

    /// Writes the export streams' sequence state as of the blocks before
    /// it. A restart continues from the last one (see `RawStore::last_checkpoint`).
    pub fn append_checkpoint(&mut self, entries: &[SeqCheckpoint]) -> Result<(), SegmentError> {
        self.push_checkpoint(entries)?;
        self.commit()
    }

    /// Flows, losses and the checkpoint that follows them, in one `write`:
    /// a crash keeps all of them or a prefix of whole blocks, and the
    /// checkpoint never survives without the data it covers.
    pub fn append_batch(
        &mut self,
        flows: &[FlowRecord],
        block_records: usize,
        losses: &[LossRecord],
        checkpoint: &[SeqCheckpoint],
    ) -> Result<(), SegmentError> {
        self.push_flows(flows, block_records)?;
        self.push_losses(losses)?;
        self.push_checkpoint(checkpoint)?;
        self.commit()
    }

    /// [`Self::append_batch`] for flow blocks encoded already (by the
    /// receiver that decoded them).
    pub fn append_encoded(
        &mut self,
        flows: &EncodedFlows,
        losses: &[LossRecord],
        checkpoint: &[SeqCheckpoint],
    ) -> Result<(), SegmentError> {
        for (b, payload) in flows.iter() {
            let adds = Footer::of_flows(b.count, b.min_first_ms, b.max_last_ms);
            self.write_block(BlockKind::Flows, b.count, true, payload, adds)?;
        }
        self.push_losses(losses)?;
        self.push_checkpoint(checkpoint)?;
        self.commit()
    }

    /// Encodes flow blocks into the pending buffer.
    fn push_flows(
        &mut self,
        records: &[FlowRecord],
        block_records: usize,
    ) -> Result<(), SegmentError> {
        for chunk in records.chunks(block_records.clamp(1, MAX_BLOCK_RECORDS)) {
            let mut raw = std::mem::take(&mut self.raw);
            self.encoder.encode(chunk, &mut raw);
            let (min_first_ms, max_last_ms) =
                chunk.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
                    (lo.min(r.first_ms), hi.max(r.last_ms))
                });
            let count = chunk.len() as u32;
            let adds = Footer::of_flows(count, min_first_ms, max_last_ms);
            let written = self.write_block(BlockKind::Flows, count, true, &raw, adds);
            self.raw = raw;
            written?;
        }
        Ok(())
    }

    fn push_losses(&mut self, records: &[LossRecord]) -> Result<(), SegmentError> {
        for chunk in records.chunks(MAX_BLOCK_RECORDS) {
            let mut raw = std::mem::take(&mut self.raw);
            encode_losses(chunk, &mut raw);
            let count = chunk.len() as u32;
            let adds = Footer {
                loss_records: chunk.len() as u64,
                ..Footer::empty()
            };
            let written = self.write_block(BlockKind::Losses, count, false, &raw, adds);
            self.raw = raw;
            written?;
        }
        Ok(())
    }

    fn push_checkpoint(&mut self, entries: &[SeqCheckpoint]) -> Result<(), SegmentError> {
        if !entries.is_empty() {
            let mut raw = std::mem::take(&mut self.raw);
            encode_checkpoints(entries, &mut raw);
            let count = entries.len() as u32;
            let written =
                self.write_block(BlockKind::Checkpoint, count, true, &raw, Footer::empty());
            self.raw = raw;
            written?;
        }
        Ok(())
    }

    /// Blocks appended but not yet written to the file.
    pub fn pending_blocks(&self) -> u64 {
        self.staged.len() as u64
    }

    /// Writes the pending frames in one `write` at the end of what is
    /// written, unless holding.
    fn commit(&mut self) -> Result<(), SegmentError> {
        if self.pending.is_empty() || self.holding {
            return Ok(());
        }
        if let Err(e) = self.file.write_all_at(&self.pending, self.len_bytes) {
            // Part of it may be in the file: a prefix of what the next
            // write puts in the same place.
            self.torn = true;
            return Err(SegmentError::io(&self.path)(e));
        }
        self.len_bytes += self.pending.len() as u64;
        for f in self.staged.drain(..) {
            self.footer.add(&f.adds);
        }
        self.pending.clear();
        self.unsynced = true;
        self.written_whole()
    }

    /// Everything pending is written: the file ends there, and is synced
    /// if every block must be.
    fn written_whole(&mut self) -> Result<(), SegmentError> {
        if self.torn {
            self.file
                .set_len(self.len_bytes)
                .map_err(SegmentError::io(&self.path))?;
            self.torn = false;
        }
        if self.opts.durability == Durability::EveryBlock {
            self.sync()?;
        }
        Ok(())
    }

    /// Frames `raw` (compressed when that makes it smaller) into the
    /// pending buffer. zstd writes straight into the pending buffer's spare
    /// capacity, after a header left blank until the payload is known (no
    /// zeroed scratch frame to copy over).
    fn write_block(
        &mut self,
        kind: BlockKind,
        count: u32,
        compress: bool,
        raw: &[u8],
        adds: Footer,
    ) -> Result<(), SegmentError> {
        let start = self.pending.len();
        let payload_at = start + FRAME_LEN;
        self.pending.resize(payload_at, 0);
        let mut codec = CODEC_NONE;
        if let (true, Some(z)) = (compress, self.zstd.as_mut()) {
            self.pending
                .reserve(zstd::zstd_safe::compress_bound(raw.len()));
            let mut out = std::io::Cursor::new(&mut self.pending);
            out.set_position(payload_at as u64);
            match z.compress_to_buffer(raw, &mut out) {
                Ok(n) if n < raw.len() => codec = CODEC_ZSTD,
                Ok(_) => self.pending.truncate(payload_at),
                Err(e) => {
                    self.pending.truncate(start);
                    return Err(SegmentError::io(&self.path)(e));
                }
            }
        }
        if codec == CODEC_NONE {
            self.pending.extend_from_slice(raw);
        }
        let (head, payload) = self.pending[start..].split_at_mut(FRAME_LEN);
        Frame::write(head, kind, codec, raw.len(), count, payload);
        self.staged.push(Staged {
            end: self.pending.len(),
            adds: Footer { blocks: 1, ..adds },
        });
        Ok(())
    }

    /// fsyncs if the durability policy says it is time. Returns true if it did.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<bool, SegmentError> {
        match self.opts.durability {
            Durability::Interval(every)
                if self.unsynced && now.duration_since(self.last_sync) >= every =>
            {
                self.sync()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Forces everything written so far to stable storage.
    pub fn sync(&mut self) -> Result<(), SegmentError> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(SegmentError::io(&self.path))?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Writes the footer, fsyncs, renames `.open` to `.kseg` and fsyncs the
    /// directory. Returns the closed segment's path.
    pub fn close(mut self, now_ms: i64) -> Result<PathBuf, SegmentError> {
        self.write_held()?;
        self.footer.closed_ms = now_ms;
        store::seal(&self.dir, &self.path, &mut self.file, self.footer)
    }
}

/// A frame appended and not yet written.
struct Staged {
    /// Where it ends in the pending buffer.
    end: usize,
    /// What it adds to the footer.
    adds: Footer,
}

/// At most this much is written at once from what is held.
const HELD_CHUNK: usize = 1 << 20;
/// The pending buffer's capacity kept after a hold.
const PENDING_KEPT: usize = 4 << 20;

/// Allocates `len` bytes of `file` at `offset` without changing its size,
/// so that a write there cannot fail for room: all of it or nothing
/// (`ENOSPC`). A filesystem without `fallocate` is left to the write.
fn reserve(file: &File, offset: u64, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS) => Ok(()),
        _ => Err(e),
    }
}

/// zstd's window for flow blocks: 32 KiB. A block's columns are each a few
/// tens of KiB, and zstd's internal blocks are at most one window long, so
/// each internal block (and its Huffman table) covers about one column
/// instead of 128 KiB of mixed columns: on generated v9 flows at level 1,
/// 13.69 instead of 14.40 bytes per flow, and matches a window further
/// back are rare in columnar data anyway. Readers need no setting: the
/// window is in the frame header (and smaller needs less memory).
const BLOCK_WINDOW_LOG: u32 = 15;
/// Hash table of zstd's fast levels (<= 1): 2,048 entries fit the L1
/// cache; level 1's default (8,192) costs 28 instead of 22 ns per flow for
/// 0.01 bytes per flow less. Stronger levels keep their own tables.
const FAST_HASH_LOG: u32 = 11;
/// Level 1's match finder skips ahead faster (zstd's "acceleration"), and
/// its literals stay Huffman-coded (zstd turns that off by itself once the
/// search is accelerated). Most columns are either constant (any search
/// finds them) or high-entropy numbers where matches are rare and Huffman
/// coding is the whole gain: on generated v5 flows 13.90 instead of 13.69
/// bytes per flow for 30 % less compression time (21 vs 30 ns per flow).
const FAST_TARGET_LENGTH: u32 = 32;

/// The zstd compressor for blocks at `level`; numbers in docs/performance.md.
fn block_compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::{CParameter, ParamSwitch};
    let mut z = zstd::bulk::Compressor::new(level)?;
    z.set_parameter(CParameter::WindowLog(BLOCK_WINDOW_LOG))?;
    if level <= 1 {
        z.set_parameter(CParameter::HashLog(FAST_HASH_LOG))?;
        // An experimental zstd parameter: a libzstd without it gets no
        // acceleration either (which alone would store the literals raw).
        if z.set_parameter(CParameter::LiteralCompressionMode(ParamSwitch::Enable))
            .is_ok()
        {
            z.set_parameter(CParameter::TargetLength(FAST_TARGET_LENGTH))?;
        }
    }
    Ok(z)
}
