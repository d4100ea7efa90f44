//! Fixed-size parts of a segment: file header, block frame, footer.

use super::SegmentError;
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"KOPEKRAW";
/// The version byte of the segments this kopek writes (docs/raw-format.md).
pub const FORMAT_VERSION: u8 = 2;
/// The oldest version it still reads.
pub const MIN_FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 80;
pub const FRAME_MAGIC: &[u8; 4] = b"KBLK";
pub const FRAME_LEN: usize = 24;
/// A frame announcing more than this is damaged (bounds reader memory).
pub const MAX_PAYLOAD_LEN: usize = 256 << 20;
pub const FOOTER_PAYLOAD_LEN: usize = 48;

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockKind {
    Flows = 1,
    Losses = 2,
    Footer = 3,
    /// Sequence state of the export streams as of the data before it.
    Checkpoint = 4,
}

impl BlockKind {
    fn from_u8(v: u8) -> Option<BlockKind> {
        Some(match v {
            1 => BlockKind::Flows,
            2 => BlockKind::Losses,
            3 => BlockKind::Footer,
            4 => BlockKind::Checkpoint,
            _ => return None,
        })
    }
}

pub const CODEC_NONE: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

/// The file header: who wrote the segment and when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u8,
    pub segment_id: u64,
    pub created_ms: i64,
    pub collector: String,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8] = self.version;
        h[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        h[12..20].copy_from_slice(&self.segment_id.to_le_bytes());
        h[20..28].copy_from_slice(&self.created_ms.to_le_bytes());
        let name = self.collector.as_bytes();
        let n = name.len().min(32);
        h[28] = n as u8;
        h[29..29 + n].copy_from_slice(&name[..n]);
        let crc = crc32c::crc32c(&h[..76]);
        h[76..80].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(path: &Path, h: &[u8]) -> Result<SegmentHeader, SegmentError> {
        let bad = |why| SegmentError::BadHeader {
            path: path.to_path_buf(),
            why,
        };
        if h.len() < HEADER_LEN {
            return Err(bad("shorter than a header"));
        }
        if &h[0..8] != MAGIC {
            return Err(bad("wrong magic"));
        }
        let crc = u32::from_le_bytes([h[76], h[77], h[78], h[79]]);
        if crc != crc32c::crc32c(&h[..76]) {
            return Err(bad("header checksum mismatch"));
        }
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&h[8]) {
            return Err(SegmentError::UnsupportedVersion {
                path: path.to_path_buf(),
                version: h[8],
            });
        }
        let n = usize::from(h[28]).min(32);
        Ok(SegmentHeader {
            version: h[8],
            segment_id: u64::from_le_bytes(h[12..20].try_into().expect("8 bytes")),
            created_ms: i64::from_le_bytes(h[20..28].try_into().expect("8 bytes")),
            collector: String::from_utf8_lossy(&h[29..29 + n]).into_owned(),
        })
    }
}

/// A block's frame header, parsed but not yet checked against its payload.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub kind: BlockKind,
    pub codec: u8,
    pub stored_len: usize,
    pub raw_len: usize,
    pub count: u32,
    pub crc: u32,
}

impl Frame {
    /// Writes the frame header for `payload` into `out[..FRAME_LEN]`.
    pub fn write(
        out: &mut [u8],
        kind: BlockKind,
        codec: u8,
        raw_len: usize,
        count: u32,
        payload: &[u8],
    ) {
        out[0..4].copy_from_slice(FRAME_MAGIC);
        out[4] = kind as u8;
        out[5] = codec;
        out[6..8].copy_from_slice(&[0, 0]);
        out[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        out[12..16].copy_from_slice(&(raw_len as u32).to_le_bytes());
        out[16..20].copy_from_slice(&count.to_le_bytes());
        let mut crc = crc32c::crc32c(&out[0..20]);
        crc = crc32c::crc32c_append(crc, payload);
        out[20..24].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses a frame header; `Err` names what is wrong with it.
    pub fn parse(b: &[u8]) -> Result<Frame, &'static str> {
        if b.len() < FRAME_LEN {
            return Err("incomplete frame header");
        }
        if &b[0..4] != FRAME_MAGIC {
            return Err("no frame magic");
        }
        let kind = BlockKind::from_u8(b[4]).ok_or("unknown block kind")?;
        let codec = b[5];
        if codec != CODEC_NONE && codec != CODEC_ZSTD {
            return Err("unknown codec");
        }
        let le32 = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let stored_len = le32(8) as usize;
        let raw_len = le32(12) as usize;
        if stored_len > MAX_PAYLOAD_LEN || raw_len > MAX_PAYLOAD_LEN {
            return Err("block length out of range");
        }
        if codec == CODEC_NONE && stored_len != raw_len {
            return Err("uncompressed block with two lengths");
        }
        Ok(Frame {
            kind,
            codec,
            stored_len,
            raw_len,
            count: le32(16),
            crc: le32(20),
        })
    }

    /// True when `payload` is what this frame was written for.
    pub fn verify(&self, header: &[u8], payload: &[u8]) -> bool {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[0..20]), payload);
        crc == self.crc
    }
}

/// Summary written as the last block of a closed segment, so that
/// `kopek raw ls` need not read the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footer {
    pub flow_records: u64,
    pub loss_records: u64,
    pub blocks: u64,
    /// Smallest first_ms of any flow (i64::MAX when there are none).
    pub min_first_ms: i64,
    /// Largest last_ms of any flow (i64::MIN when there are none).
    pub max_last_ms: i64,
    pub closed_ms: i64,
}

impl Footer {
    pub fn empty() -> Footer {
        Footer {
            min_first_ms: i64::MAX,
            max_last_ms: i64::MIN,
            ..Footer::default()
        }
    }

    /// What a block of `count` flows adds.
    pub fn of_flows(count: u32, min_first_ms: i64, max_last_ms: i64) -> Footer {
        Footer {
            flow_records: u64::from(count),
            min_first_ms,
            max_last_ms,
            ..Footer::empty()
        }
    }

    /// Adds `o`'s records, blocks and time range (not its close time).
    pub fn add(&mut self, o: &Footer) {
        self.flow_records += o.flow_records;
        self.loss_records += o.loss_records;
        self.blocks += o.blocks;
        self.min_first_ms = self.min_first_ms.min(o.min_first_ms);
        self.max_last_ms = self.max_last_ms.max(o.max_last_ms);
    }

    pub fn encode(&self) -> [u8; FOOTER_PAYLOAD_LEN] {
        let mut b = [0u8; FOOTER_PAYLOAD_LEN];
        b[0..8].copy_from_slice(&self.flow_records.to_le_bytes());
        b[8..16].copy_from_slice(&self.loss_records.to_le_bytes());
        b[16..24].copy_from_slice(&self.blocks.to_le_bytes());
        b[24..32].copy_from_slice(&self.min_first_ms.to_le_bytes());
        b[32..40].copy_from_slice(&self.max_last_ms.to_le_bytes());
        b[40..48].copy_from_slice(&self.closed_ms.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Footer> {
        if b.len() != FOOTER_PAYLOAD_LEN {
            return None;
        }
        let q = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Footer {
            flow_records: q(0),
            loss_records: q(8),
            blocks: q(16),
            min_first_ms: q(24) as i64,
            max_last_ms: q(32) as i64,
            closed_ms: q(40) as i64,
        })
    }
}
