//! The directory of segments: names, listing, the per-collector lock, and
//! crash recovery of `.open` files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::SegmentError;
use super::format::{BlockKind, CODEC_NONE, FOOTER_PAYLOAD_LEN, FRAME_LEN, Footer, Frame};
use super::reader::{Block, SegmentReader, TailState};
use crate::decode::SeqCheckpoint;

/// How many of the newest segments `last_checkpoint` looks through.
const CHECKPOINT_LOOKBACK_SEGMENTS: usize = 3;

const OPEN_EXT: &str = "open";
const CLOSED_EXT: &str = "kseg";

pub(crate) fn open_name(collector: &str, id: u64) -> String {
    format!("{collector}-{id:010}.{OPEN_EXT}")
}

fn closed_name(collector: &str, id: u64) -> String {
    format!("{collector}-{id:010}.{CLOSED_EXT}")
}

/// Parses `<collector>-<id>.<ext>`.
fn parse_name(file_name: &str) -> Option<(String, u64, SegmentState)> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    let state = match ext {
        OPEN_EXT => SegmentState::Open,
        CLOSED_EXT => SegmentState::Closed,
        _ => return None,
    };
    let (collector, id) = stem.rsplit_once('-')?;
    if id.len() != 10 || collector.is_empty() {
        return None;
    }
    Some((collector.to_string(), id.parse().ok()?, state))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Being written (or left by a crash, until the next start recovers it).
    Open,
    /// Sealed: footer written, renamed, never changes again.
    Closed,
}

#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub collector: String,
    pub id: u64,
    pub state: SegmentState,
    pub size_bytes: u64,
}

impl SegmentInfo {
    /// The footer of a closed segment, read from the end of the file
    /// (cheap: one small read). `None` for open segments.
    pub fn read_footer(&self) -> Result<Option<Footer>, SegmentError> {
        if self.state != SegmentState::Closed {
            return Ok(None);
        }
        let len = (FRAME_LEN + FOOTER_PAYLOAD_LEN) as u64;
        if self.size_bytes < len {
            return Ok(None);
        }
        let f = File::open(&self.path).map_err(SegmentError::io(&self.path))?;
        let mut b = [0u8; FRAME_LEN + FOOTER_PAYLOAD_LEN];
        f.read_exact_at(&mut b, self.size_bytes - len)
            .map_err(SegmentError::io(&self.path))?;
        let frame = match Frame::parse(&b) {
            Ok(fr) if fr.kind == BlockKind::Footer => fr,
            _ => return Ok(None),
        };
        if !frame.verify(&b, &b[FRAME_LEN..]) {
            return Ok(None);
        }
        Ok(Footer::decode(&b[FRAME_LEN..]))
    }
}

/// What recovery did to one `.open` segment left by a crash.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub closed_path: PathBuf,
    pub blocks_kept: u64,
    pub flow_records_kept: u64,
    pub truncated_bytes: u64,
    /// Why the tail was cut (empty when the file ended on a block boundary).
    pub why: String,
}

/// Holds the per-collector lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// The tier-1 directory (`<state_dir>/raw`).
#[derive(Debug, Clone)]
pub struct RawStore {
    dir: PathBuf,
}

impl RawStore {
    pub fn new(dir: impl Into<PathBuf>) -> RawStore {
        RawStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (mode 0750) if it is missing.
    pub fn create_dir(&self) -> Result<(), SegmentError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&self.dir)
            .map_err(SegmentError::io(&self.dir))
    }

    /// Takes the exclusive lock of `collector`: two processes must never
    /// append to the same collector's segments.
    pub fn lock(&self, collector: &str) -> Result<StoreLock, SegmentError> {
        let path = self.dir.join(format!("{collector}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(SegmentError::io(&path))?;
        // SAFETY: flock on a valid, owned fd; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(SegmentError::Locked {
                name: collector.to_string(),
                lock: path,
            });
        }
        Ok(StoreLock { _file: file })
    }

    /// Every segment in the directory, ordered by collector then id.
    pub fn list(&self) -> Result<Vec<SegmentInfo>, SegmentError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(SegmentError::io(&self.dir)(e)),
        };
        for entry in rd {
            let entry = entry.map_err(SegmentError::io(&self.dir))?;
            let name = entry.file_name();
            let Some((collector, id, state)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Renamed from .open to .kseg between readdir and stat.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SegmentError::io(entry.path())(e)),
            };
            out.push(SegmentInfo {
                path: entry.path(),
                collector,
                id,
                state,
                size_bytes: meta.len(),
            });
        }
        out.sort_by(|a, b| (&a.collector, a.id).cmp(&(&b.collector, b.id)));
        Ok(out)
    }

    /// The id the next segment of `collector` gets.
    pub fn next_id(&self, collector: &str) -> Result<u64, SegmentError> {
        Ok(self
            .list()?
            .iter()
            .filter(|s| s.collector == collector)
            .map(|s| s.id + 1)
            .max()
            .unwrap_or(1))
    }

    /// Seals every `.open` segment of `collector` left by a crash: keeps
    /// every whole block, truncates a torn tail, writes the footer, renames.
    /// Call only while holding [`RawStore::lock`].
    pub fn recover(
        &self,
        collector: &str,
        now_ms: i64,
    ) -> Result<Vec<RecoveryReport>, SegmentError> {
        let mut reports = Vec::new();
        for seg in self.list()? {
            if seg.collector != collector || seg.state != SegmentState::Open {
                continue;
            }
            reports.push(self.recover_one(&seg, now_ms)?);
        }
        Ok(reports)
    }

    /// The export streams' sequence state as last written by `collector`:
    /// the newest segment holding checkpoints, its entries merged (per
    /// stream, the latest arrival wins). Empty when there is none.
    /// Call after [`RawStore::recover`].
    pub fn last_checkpoint(&self, collector: &str) -> Result<Vec<SeqCheckpoint>, SegmentError> {
        let segs: Vec<SegmentInfo> = self
            .list()?
            .into_iter()
            .filter(|s| s.collector == collector && s.state == SegmentState::Closed)
            .collect();
        for seg in segs.iter().rev().take(CHECKPOINT_LOOKBACK_SEGMENTS) {
            let mut reader = SegmentReader::open(&seg.path)?;
            let mut merged: std::collections::HashMap<_, SeqCheckpoint> = Default::default();
            let (mut flows, mut losses) = (Vec::new(), Vec::new());
            loop {
                flows.clear();
                losses.clear();
                match reader.next_block(&mut flows, &mut losses) {
                    Ok(Some(Block::Checkpoint(_))) => {
                        for cp in reader.checkpoint() {
                            let key = (cp.exporter, cp.domain, cp.kind);
                            match merged.get(&key) {
                                Some(m) if m.last_arrival_ms > cp.last_arrival_ms => {}
                                _ => {
                                    merged.insert(key, cp.clone());
                                }
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    // A damaged segment: use what was read before the damage.
                    Ok(None) | Err(SegmentError::BadBlock { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            if !merged.is_empty() {
                return Ok(merged.into_values().collect());
            }
        }
        Ok(Vec::new())
    }

    fn recover_one(&self, seg: &SegmentInfo, now_ms: i64) -> Result<RecoveryReport, SegmentError> {
        let mut reader = match SegmentReader::open(&seg.path) {
            Ok(r) => r,
            // The header itself is torn: the segment never held a block.
            // Keep the bytes for inspection under another name.
            Err(SegmentError::BadHeader { .. }) => {
                let broken = seg.path.with_extension("broken");
                std::fs::rename(&seg.path, &broken).map_err(SegmentError::io(&seg.path))?;
                sync_dir(&self.dir)?;
                return Ok(RecoveryReport {
                    closed_path: broken,
                    blocks_kept: 0,
                    flow_records_kept: 0,
                    truncated_bytes: seg.size_bytes,
                    why: "header incomplete".into(),
                });
            }
            Err(e) => return Err(e),
        };
        let mut footer = Footer::empty();
        let mut flows = Vec::new();
        let mut losses = Vec::new();
        loop {
            flows.clear();
            losses.clear();
            match reader.next_block(&mut flows, &mut losses) {
                Ok(Some(Block::Flows(n))) => {
                    footer.blocks += 1;
                    footer.flow_records += n as u64;
                    for r in &flows {
                        footer.min_first_ms = footer.min_first_ms.min(r.first_ms);
                        footer.max_last_ms = footer.max_last_ms.max(r.last_ms);
                    }
                }
                Ok(Some(Block::Checkpoint(_))) => footer.blocks += 1,
                Ok(Some(Block::Losses(n))) => {
                    footer.blocks += 1;
                    footer.loss_records += n as u64;
                }
                // A footer in an .open file: the crash hit between sealing
                // and renaming. Everything after it is not ours.
                Ok(Some(Block::Footer(_))) => break,
                Ok(None) => break,
                // Checksum matched but content is wrong: stop before it, the
                // same as a torn block.
                Err(SegmentError::BadBlock { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        let keep = reader.offset();
        let why = match reader.tail() {
            TailState::Clean | TailState::Reading => String::new(),
            TailState::Incomplete { bytes, .. } => format!("incomplete block ({bytes} bytes)"),
            TailState::Damaged { why, .. } => why.clone(),
        };
        let mut file = OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .map_err(SegmentError::io(&seg.path))?;
        let size = file.metadata().map_err(SegmentError::io(&seg.path))?.len();
        file.set_len(keep).map_err(SegmentError::io(&seg.path))?;
        footer.closed_ms = now_ms;
        let closed_path = seal(&self.dir, &seg.path, &mut file, footer)?;
        Ok(RecoveryReport {
            closed_path,
            blocks_kept: footer.blocks,
            flow_records_kept: footer.flow_records,
            truncated_bytes: size.saturating_sub(keep),
            why,
        })
    }
}

/// Appends the footer block at the end of `file`, fsyncs it, renames
/// `open_path` to its `.kseg` name and fsyncs the directory.
pub(crate) fn seal(
    dir: &Path,
    open_path: &Path,
    file: &mut File,
    footer: Footer,
) -> Result<PathBuf, SegmentError> {
    let payload = footer.encode();
    let mut block = [0u8; FRAME_LEN + FOOTER_PAYLOAD_LEN];
    block[FRAME_LEN..].copy_from_slice(&payload);
    let (head, body) = block.split_at_mut(FRAME_LEN);
    Frame::write(head, BlockKind::Footer, CODEC_NONE, body.len(), 1, body);
    let end = file.metadata().map_err(SegmentError::io(open_path))?.len();
    file.write_all_at(&block, end)
        .map_err(SegmentError::io(open_path))?;
    file.sync_all().map_err(SegmentError::io(open_path))?;
    let name = open_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name)
        .ok_or_else(|| SegmentError::BadHeader {
            path: open_path.to_path_buf(),
            why: "not a segment file name",
        })?;
    let closed = dir.join(closed_name(&name.0, name.1));
    std::fs::rename(open_path, &closed).map_err(SegmentError::io(open_path))?;
    sync_dir(dir)?;
    let _ = file.flush();
    Ok(closed)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SegmentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SegmentError::io(dir))
}
