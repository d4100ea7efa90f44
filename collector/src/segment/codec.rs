//! Columnar encoding of one block of records (before compression).
//!
//! A flow block stores its records column by column: a dictionary of export
//! streams (exporter, domain, kind, sampling), a dictionary of addresses
//! (IPv4 in byte planes), last-packet times as deltas and durations,
//! address references that say "the next new one" for an address's first
//! use, counters as LEB128 varints. Columns of similar values next to each
//! other are what makes zstd's job easy. The exact layout (version 2, and
//! version 1 which is still read) is specified in docs/raw-format.md; this
//! module is its only implementation.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::record::{
    FlowDirection, FlowRecord, FlowRows, LossReason, LossRecord, LossUnit, SourceKind,
    addr_to_u128, u128_to_addr,
};

use super::SegmentError;
use super::dict::V4Dict;
use crate::decode::{SeqCheckpoint, SeqConvention};

/// A block may not hold more records than this (bounds reader memory).
pub const MAX_BLOCK_RECORDS: usize = 1 << 20;

/// Address codes as written: "the next new IPv4 / IPv6 address", else a
/// dictionary index plus [`ADDR_CODE_INDEX`].
const NEW_V4: u32 = 0;
const NEW_V6: u32 = 1;
const ADDR_CODE_INDEX: u32 = 2;
/// Marks a provisional IPv6 index in the encoder: IPv6 entries follow the
/// IPv4 ones, whose number is known only at the end of the block.
const V6_TAG: u32 = 1 << 31;

/// How many records ahead of its push a record's dictionary entries are
/// best asked for (in [`FlowBlockEncoder::push_rows`]): 2 × 16 addresses in
/// flight, about what a core's miss buffers hold.
pub const PREFETCH_RECORDS: usize = 16;

/// Fixed size of one loss record in a loss block.
pub const LOSS_RECORD_LEN: usize = 17 + 4 + 3 + 8 + 8 + 8 + 4 + 4;

/// IPv6 addresses of a block: foldhash with a per-process random seed
/// (the addresses are chosen by whoever sends the packets).
type AddrMap<K> = HashMap<K, u32, foldhash::fast::RandomState>;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct StreamKey {
    exporter: IpAddr,
    domain: u32,
    kind: SourceKind,
    sampling: u32,
}

/// Reusable encoder state, so the hot path does not allocate. Records go
/// in one at a time ([`Self::push`]: a receiver encodes each datagram's
/// flows while they are still in its cache) and come out as one block
/// ([`Self::finish`]); [`Self::encode`] does both for a slice.
#[derive(Default)]
pub struct FlowBlockEncoder {
    streams: Vec<StreamKey>,
    last_stream: Option<usize>,
    /// Per family, so that the IPv4 map (most addresses) has 8-byte
    /// entries: a block's dictionary then stays in the L2 cache.
    addrs_v4: V4Dict,
    addrs_v6: AddrMap<u128>,
    v4: Vec<u32>,
    v6: Vec<u128>,
    /// Per record, source then destination, the address codes as they
    /// will be written, while the block has no IPv6 address (the usual
    /// case: IPv4 codes are final when the address is first seen).
    addr_codes: Col,
    /// Once the block has an IPv6 address (`addr_mixed`), the codes are
    /// kept here instead, an IPv6 index [`V6_TAG`]ged and not yet shifted
    /// past the IPv4 entries, whose number is known only at the end.
    addr_idx: Vec<u32>,
    addr_mixed: bool,
    /// Records pushed since the last [`Self::finish`].
    records: usize,
    /// The stream of each record, as runs of (stream index, records).
    stream_runs: Vec<(u32, u32)>,
    /// The columns after the address codes, filled a few at a time in
    /// passes over each pushed slice (see [`Self::push_rows`]).
    cols: [Col; 10],
    base_ms: i64,
    prev_ms: i64,
    min_first_ms: i64,
    max_last_ms: i64,
}

impl FlowBlockEncoder {
    /// Encodes `records` (at least one) into `out` (cleared first).
    pub fn encode(&mut self, records: &[FlowRecord], out: &mut Vec<u8>) {
        debug_assert!(!records.is_empty() && records.len() <= MAX_BLOCK_RECORDS);
        out.clear();
        self.push_rows(records);
        self.finish(out);
    }

    /// Records pushed since the last [`Self::finish`].
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Smallest first-packet and largest last-packet time pushed since the
    /// last [`Self::finish`] (`i64::MAX`, `i64::MIN` when none).
    pub fn time_range(&self) -> (i64, i64) {
        if self.is_empty() {
            return (i64::MAX, i64::MIN);
        }
        (self.min_first_ms, self.max_last_ms)
    }

    fn reset(&mut self) {
        self.streams.clear();
        self.last_stream = None;
        self.addrs_v4.clear();
        self.addrs_v6.clear();
        self.v4.clear();
        self.v6.clear();
        self.addr_codes.len = 0;
        self.addr_idx.clear();
        self.addr_mixed = false;
        self.stream_runs.clear();
        for c in &mut self.cols {
            c.len = 0;
        }
        self.min_first_ms = i64::MAX;
        self.max_last_ms = i64::MIN;
    }

    /// Adds one record to the block being built (see [`Self::push_rows`]).
    pub fn push(&mut self, r: &FlowRecord) {
        self.push_rows(std::slice::from_ref(r));
    }

    /// Adds `rows` to the block being built. A block holds at most
    /// [`MAX_BLOCK_RECORDS`]: the caller finishes it before. The first
    /// record of a block clears what the previous block left.
    ///
    /// The columns are written in four passes over the slice (times,
    /// fixed-width fields, counters, addresses), each through a few cursors
    /// that stay in registers, into room made beforehand ([`Col`]): one
    /// pass for all ten columns spilled its cursors to the stack and took
    /// 4–8 % more instructions a flow (callgrind, `benches/decode.rs`). The
    /// dictionary entries of a record's addresses are asked for
    /// [`PREFETCH_RECORDS`] records ahead.
    pub fn push_rows<R: FlowRows>(&mut self, rows: R) {
        if rows.is_empty() {
            return;
        }
        if self.records == 0 {
            self.reset();
            let first = rows.row(0).last_ms;
            self.base_ms = first;
            self.prev_ms = first;
        }
        debug_assert!(self.records + rows.len() <= MAX_BLOCK_RECORDS);
        prefetch_slots(&self.addrs_v4, rows, 0..PREFETCH_RECORDS.min(rows.len()));
        for c in &mut self.cols {
            c.make_room(rows.len() * MAX_VARINT_BYTES);
        }
        let n = rows.len();
        self.records += n;
        // Streams: one comparison per record against the last one seen
        // (one in all when the rows say they share their stream).
        let one = rows.one_stream();
        for i in 0..if one { 1 } else { n } {
            let r = rows.row(i);
            let key = StreamKey {
                exporter: r.exporter,
                domain: r.domain,
                kind: r.kind,
                sampling: r.sampling,
            };
            let s = match self.last_stream {
                Some(s) if self.streams[s] == key => s,
                _ => match self.streams.iter().position(|k| *k == key) {
                    Some(i) => i,
                    None => {
                        self.streams.push(key);
                        self.streams.len() - 1
                    }
                },
            };
            self.last_stream = Some(s);
            let len = if one { n as u32 } else { 1 };
            match self.stream_runs.last_mut() {
                Some((last, run)) if *last == s as u32 => *run += len,
                _ => self.stream_runs.push((s as u32, len)),
            }
        }
        let [
            last,
            dur,
            sport,
            dport,
            proto,
            dir,
            in_if,
            out_if,
            bytes,
            packets,
        ] = &mut self.cols;
        // Times.
        let (mut prev_ms, mut min_first, mut max_last) =
            (self.prev_ms, self.min_first_ms, self.max_last_ms);
        {
            let (mut last, mut dur) = (last.cursor(), dur.cursor());
            for i in 0..n {
                let r = rows.row(i);
                min_first = min_first.min(r.first_ms);
                max_last = max_last.max(r.last_ms);
                last.varint(zigzag(r.last_ms.wrapping_sub(prev_ms)));
                prev_ms = r.last_ms;
                dur.varint_mixed(zigzag(r.last_ms.wrapping_sub(r.first_ms)));
            }
        }
        // Fixed-width columns.
        {
            let (mut sport, mut dport, mut proto, mut dir) =
                (sport.cursor(), dport.cursor(), proto.cursor(), dir.cursor());
            for i in 0..n {
                let r = rows.row(i);
                sport.bytes(r.src_port.to_le_bytes());
                dport.bytes(r.dst_port.to_le_bytes());
                proto.bytes([r.protocol]);
                dir.bytes([r.direction as u8]);
            }
        }
        // Counters and interfaces.
        {
            let (mut in_if, mut out_if, mut bytes, mut packets) = (
                in_if.cursor(),
                out_if.cursor(),
                bytes.cursor(),
                packets.cursor(),
            );
            for i in 0..n {
                let r = rows.row(i);
                in_if.varint(u64::from(r.in_if));
                out_if.varint(u64::from(r.out_if));
                bytes.varint_mixed(r.bytes_raw);
                packets.varint(r.packets_raw);
            }
        }
        // Addresses: while the block has only IPv4 ones, their codes go
        // straight into their column.
        self.addr_codes.make_room(2 * n * 4);
        let mut i = 0;
        if !self.addr_mixed {
            let mut codes = self.addr_codes.cursor();
            while i < n {
                if i + PREFETCH_RECORDS < n {
                    let later = i + PREFETCH_RECORDS;
                    prefetch_slots(&self.addrs_v4, rows, later..later + 1);
                }
                let Some(pair) = rows.v4_pair(i) else {
                    break;
                };
                for a in pair {
                    codes.code(v4_code(&mut self.addrs_v4, &mut self.v4, a));
                }
                i += 1;
            }
        }
        if i < n {
            if !self.addr_mixed {
                self.go_mixed();
            }
            self.addr_idx.reserve(2 * (n - i));
        }
        for i in i..n {
            if i + PREFETCH_RECORDS < n {
                let later = i + PREFETCH_RECORDS;
                prefetch_slots(&self.addrs_v4, rows, later..later + 1);
            }
            let r = rows.row(i);
            for addr in [r.src, r.dst] {
                let code = match addr {
                    IpAddr::V4(v4) => v4_code(&mut self.addrs_v4, &mut self.v4, u32::from(v4)),
                    IpAddr::V6(v6) => match self.addrs_v6.entry(u128::from(v6)) {
                        Entry::Occupied(e) => *e.get(),
                        Entry::Vacant(e) => {
                            e.insert((self.v6.len() as u32 + ADDR_CODE_INDEX) | V6_TAG);
                            self.v6.push(u128::from(v6));
                            NEW_V6
                        }
                    },
                };
                self.addr_idx.push(code);
            }
        }
        (self.prev_ms, self.min_first_ms, self.max_last_ms) = (prev_ms, min_first, max_last);
    }

    /// The block's first IPv6 address: its codes so far, all final IPv4
    /// ones, move from the written column to `addr_idx`.
    #[cold]
    fn go_mixed(&mut self) {
        let mut codes = Cursor {
            buf: self.addr_codes.bytes(),
            pos: 0,
        };
        // Room for every code of the block so far, this slice's included.
        self.addr_idx.reserve(2 * self.records);
        while codes.pos < codes.buf.len() {
            let code = codes.varint().expect("the encoder wrote these codes");
            self.addr_idx.push(code as u32);
        }
        self.addr_codes.len = 0;
        self.addr_mixed = true;
    }

    /// Appends the block of the records pushed so far (at least one) to
    /// `out` and starts an empty one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        debug_assert!(self.records > 0);
        let v4_count = self.v4.len() as u32;

        // Header and dictionaries.
        out.extend_from_slice(&self.base_ms.to_le_bytes());
        put_varint(out, self.streams.len() as u64);
        for s in &self.streams {
            out.push(s.kind as u8);
            put_addr(out, s.exporter);
            out.extend_from_slice(&s.domain.to_le_bytes());
            out.extend_from_slice(&s.sampling.to_le_bytes());
        }
        put_varint(out, self.v4.len() as u64);
        for shift in [24, 16, 8, 0] {
            out.extend(self.v4.iter().map(|a| (a >> shift) as u8));
        }
        put_varint(out, self.v6.len() as u64);
        for a in &self.v6 {
            out.extend_from_slice(&a.to_be_bytes());
        }

        // Columns, in the order of docs/raw-format.md. One stream (the
        // usual case) is a run of one-byte zeros.
        if self.streams.len() == 1 {
            out.resize(out.len() + self.records, 0);
        } else {
            for &(s, run) in &self.stream_runs {
                for _ in 0..run {
                    put_varint(out, u64::from(s));
                }
            }
        }
        let [
            last,
            dur,
            sport,
            dport,
            proto,
            dir,
            in_if,
            out_if,
            bytes,
            packets,
        ] = &self.cols;
        out.extend_from_slice(last.bytes());
        out.extend_from_slice(dur.bytes());
        // The address codes, written without a branch on their length
        // (1 to 3 bytes, varying from one address to the next: a loop's
        // exit branch mispredicted about every other code) into a zeroed
        // stretch that is then cut to what was written.
        if !self.addr_mixed {
            out.extend_from_slice(self.addr_codes.bytes());
        }
        let start = out.len();
        out.resize(start + self.addr_idx.len() * 4 + 4, 0);
        let mut pos = start;
        for &i in &self.addr_idx {
            // IPv6 is the rare case: this branch is predicted, where one
            // on "new or known" would miss for about every other address.
            let code = if i & V6_TAG != 0 {
                (i & !V6_TAG) + v4_count
            } else {
                i
            };
            pos += put_code(&mut out[pos..pos + 4], code);
        }
        out.truncate(pos);
        for c in [sport, dport, proto, dir, in_if, out_if, bytes, packets] {
            out.extend_from_slice(c.bytes());
        }
        // Empty now; the next push clears the rest.
        self.records = 0;
    }
}

/// Flow blocks encoded before they reach the writer (a receiver encodes
/// each datagram's flows as it decodes them), waiting to be framed by
/// [`super::SegmentWriter::append_encoded`].
#[derive(Debug, Default)]
pub struct EncodedFlows {
    bytes: Vec<u8>,
    blocks: Vec<EncodedBlock>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodedBlock {
    pub(crate) end: usize,
    pub(crate) count: u32,
    pub(crate) min_first_ms: i64,
    pub(crate) max_last_ms: i64,
}

impl EncodedFlows {
    /// Ends the block `enc` is building (if it holds any record) and keeps
    /// it here.
    pub fn seal(&mut self, enc: &mut FlowBlockEncoder) {
        if enc.is_empty() {
            return;
        }
        let count = enc.len() as u32;
        let (min_first_ms, max_last_ms) = enc.time_range();
        enc.finish(&mut self.bytes);
        self.blocks.push(EncodedBlock {
            end: self.bytes.len(),
            count,
            min_first_ms,
            max_last_ms,
        });
    }

    /// Records in the sealed blocks.
    pub fn flows(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.count)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.blocks.clear();
    }

    /// Each block's metadata and payload, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&EncodedBlock, &[u8])> {
        let starts = std::iter::once(0).chain(self.blocks.iter().map(|b| b.end));
        self.blocks
            .iter()
            .zip(starts)
            .map(|(b, start)| (b, &self.bytes[start..b.end]))
    }
}

/// One export stream of a decoded block: the dictionary entry every record
/// of the block points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStream {
    pub kind: SourceKind,
    pub exporter: IpAddr,
    pub domain: u32,
    /// Never 0.
    pub sampling: u32,
}

/// A decoded flow block as it is stored: column by column, with each
/// record's stream and addresses as indexes into the block's dictionaries.
/// For readers that work per column or per distinct address (the
/// classifier judges each address of a block once, not once per record);
/// [`FlowColumns::append_records`] gives the rows.
///
/// Filled by [`decode_columns`], which checks every index: `stream[i] <
/// streams.len()`, `src[i]` and `dst[i] < addrs.len()`, and every column
/// has [`FlowColumns::len`] entries.
#[derive(Debug, Clone, Default)]
pub struct FlowColumns {
    pub streams: Vec<BlockStream>,
    /// The block's addresses, each once: IPv4 first, then IPv6.
    pub addrs: Vec<IpAddr>,
    pub stream: Vec<u32>,
    pub first_ms: Vec<i64>,
    pub last_ms: Vec<i64>,
    pub src: Vec<u32>,
    pub dst: Vec<u32>,
    pub src_port: Vec<u16>,
    pub dst_port: Vec<u16>,
    pub protocol: Vec<u8>,
    pub direction: Vec<FlowDirection>,
    pub in_if: Vec<u32>,
    pub out_if: Vec<u32>,
    pub bytes_raw: Vec<u64>,
    pub packets_raw: Vec<u64>,
}

impl FlowColumns {
    /// Records in the block.
    pub fn len(&self) -> usize {
        self.first_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first_ms.is_empty()
    }

    pub fn clear(&mut self) {
        self.streams.clear();
        self.addrs.clear();
        self.stream.clear();
        self.first_ms.clear();
        self.last_ms.clear();
        self.src.clear();
        self.dst.clear();
        self.src_port.clear();
        self.dst_port.clear();
        self.protocol.clear();
        self.direction.clear();
        self.in_if.clear();
        self.out_if.clear();
        self.bytes_raw.clear();
        self.packets_raw.clear();
    }

    /// The stream of record `i`.
    #[inline]
    pub fn stream_of(&self, i: usize) -> &BlockStream {
        &self.streams[self.stream[i] as usize]
    }

    /// Appends every record of the block to `out`, as rows.
    pub fn append_records(&self, out: &mut Vec<FlowRecord>) {
        out.reserve(self.len());
        let times = self.first_ms.iter().zip(&self.last_ms);
        let addrs = self.src.iter().zip(&self.dst);
        let ports = self.src_port.iter().zip(&self.dst_port);
        let kinds = self.protocol.iter().zip(&self.direction);
        let ifs = self.in_if.iter().zip(&self.out_if);
        let counts = self.bytes_raw.iter().zip(&self.packets_raw);
        let cols = self
            .stream
            .iter()
            .zip(times)
            .zip(addrs)
            .zip(ports)
            .zip(kinds)
            .zip(ifs)
            .zip(counts);
        for (
            (((((&s, (&first_ms, &last_ms)), (&src, &dst)), (&sp, &dp)), (&p, &d)), (&i, &o)),
            (&b, &k),
        ) in cols
        {
            let st = &self.streams[s as usize];
            out.push(FlowRecord {
                exporter: st.exporter,
                domain: st.domain,
                kind: st.kind,
                first_ms,
                last_ms,
                src: self.addrs[src as usize],
                dst: self.addrs[dst as usize],
                src_port: sp,
                dst_port: dp,
                protocol: p,
                direction: d,
                in_if: i,
                out_if: o,
                bytes_raw: b,
                packets_raw: k,
                sampling: st.sampling,
            });
        }
    }
}

/// Decodes a flow block of `count` records, appending them to `out`
/// (nothing is appended when the block is corrupt). See [`decode_columns`].
pub fn decode_flows(
    buf: &[u8],
    count: usize,
    version: u8,
    out: &mut Vec<FlowRecord>,
) -> Result<(), SegmentError> {
    let mut cols = FlowColumns::default();
    decode_columns(buf, count, version, &mut cols)?;
    cols.append_records(out);
    Ok(())
}

/// Decodes a flow block of `count` records into `cols` (cleared first).
/// Every length and index is checked: a corrupt payload is an error, never
/// a panic. `version`: the segment's format version (1 or 2; they differ
/// in the time column, the IPv4 dictionary and the address indexes). This
/// is the one parser of the layout in docs/raw-format.md.
pub fn decode_columns(
    buf: &[u8],
    count: usize,
    version: u8,
    cols: &mut FlowColumns,
) -> Result<(), SegmentError> {
    cols.clear();
    let res = decode_columns_into(buf, count, version, cols);
    if res.is_err() {
        cols.clear();
    }
    res
}

fn decode_columns_into(
    buf: &[u8],
    count: usize,
    version: u8,
    cols: &mut FlowColumns,
) -> Result<(), SegmentError> {
    let v1 = match version {
        1 => true,
        2 => false,
        _ => return Err(corrupt("unknown format version")),
    };
    if count == 0 || count > MAX_BLOCK_RECORDS {
        return Err(corrupt("record count out of range"));
    }
    let mut c = Cursor { buf, pos: 0 };
    let base_ms = i64::from_le_bytes(c.array::<8>()?);
    let nstreams = c.varint_len(count)?;
    for _ in 0..nstreams {
        let kind = SourceKind::from_u8(c.u8()?).ok_or_else(|| corrupt("unknown source kind"))?;
        let exporter = c.addr()?;
        let domain = u32::from_le_bytes(c.array::<4>()?);
        let sampling = u32::from_le_bytes(c.array::<4>()?).max(1);
        cols.streams.push(BlockStream {
            kind,
            exporter,
            domain,
            sampling,
        });
    }
    let nv4 = c.varint_len(2 * count)?;
    let addrs = &mut cols.addrs;
    addrs.reserve(nv4);
    let dict = c.take(4 * nv4)?;
    if v1 {
        for a in dict.chunks_exact(4) {
            addrs.push(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])));
        }
    } else {
        // Byte planes: every address's first byte, then every second...
        for i in 0..nv4 {
            addrs.push(IpAddr::V4(Ipv4Addr::new(
                dict[i],
                dict[nv4 + i],
                dict[2 * nv4 + i],
                dict[3 * nv4 + i],
            )));
        }
    }
    let nv6 = c.varint_len(2 * count - nv4)?;
    for _ in 0..nv6 {
        addrs.push(IpAddr::V6(Ipv6Addr::from(c.array::<16>()?)));
    }
    let naddrs = addrs.len();

    let stream = &mut cols.stream;
    stream.reserve(count);
    c.varints(count, |s| {
        if s >= nstreams as u64 {
            return Err(corrupt("stream index out of range"));
        }
        stream.push(s as u32);
        Ok(())
    })?;
    let (first, last) = (&mut cols.first_ms, &mut cols.last_ms);
    first.reserve(count);
    last.reserve(count);
    let mut prev = base_ms;
    if v1 {
        // First-packet times as deltas, then durations.
        c.varints(count, |d| {
            prev = prev.wrapping_add(unzigzag(d));
            first.push(prev);
            Ok(())
        })?;
        let mut k = 0;
        c.varints(count, |d| {
            last.push(first[k].wrapping_add(unzigzag(d)));
            k += 1;
            Ok(())
        })?;
        for col in [&mut cols.src, &mut cols.dst] {
            col.reserve(count);
            c.varints(count, |i| {
                if i >= naddrs as u64 {
                    return Err(corrupt("address index out of range"));
                }
                col.push(i as u32);
                Ok(())
            })?;
        }
        return decode_tail(&mut c, count, cols);
    }
    // Last-packet times as deltas (exporters send flows as they expire:
    // nearly in order), then durations.
    c.varints(count, |d| {
        prev = prev.wrapping_add(unzigzag(d));
        last.push(prev);
        Ok(())
    })?;
    let mut k = 0;
    c.varints(count, |d| {
        first.push(last[k].wrapping_sub(unzigzag(d)));
        k += 1;
        Ok(())
    })?;
    // Source and destination per record: 0 is the next new IPv4 address
    // of the dictionary, 1 the next new IPv6 one, n the index n - 2. The
    // codes first (`src` holds both, interleaved), then resolved in place
    // without a branch on the code: the three cases come in no order a
    // predictor could learn.
    let (src, dst) = (&mut cols.src, &mut cols.dst);
    src.reserve(2 * count);
    dst.reserve(count);
    c.varints(2 * count, |code| {
        src.push(u32::try_from(code).map_err(|_| corrupt("address index out of range"))?);
        Ok(())
    })?;
    // [next IPv4 index, next IPv6 index, highest index]
    let mut at = [0u32, nv4 as u32, 0];
    #[inline(always)]
    fn resolve(code: u32, at: &mut [u32; 3]) -> u32 {
        let ix = if code >= 2 {
            code - 2
        } else if code == 0 {
            at[0]
        } else {
            at[1]
        };
        at[0] += u32::from(code == 0);
        at[1] += u32::from(code == 1);
        at[2] = at[2].max(ix);
        ix
    }
    for i in 0..count {
        // Reads 2i and 2i + 1 before writing i <= 2i: in place is safe.
        let (s, d) = (src[2 * i], src[2 * i + 1]);
        src[i] = resolve(s, &mut at);
        dst.push(resolve(d, &mut at));
    }
    let [next4, next6, highest] = at;
    src.truncate(count);
    if next4 as usize > nv4 || next6 as usize > naddrs || highest as usize >= naddrs {
        return Err(corrupt("address index out of range"));
    }
    decode_tail(&mut c, count, cols)
}

/// The columns both layouts share: ports, protocol, direction,
/// interfaces, counters.
fn decode_tail(
    c: &mut Cursor<'_>,
    count: usize,
    cols: &mut FlowColumns,
) -> Result<(), SegmentError> {
    let ports = c.take(2 * count)?;
    cols.src_port.extend(
        ports
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]])),
    );
    let ports = c.take(2 * count)?;
    cols.dst_port.extend(
        ports
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]])),
    );
    cols.protocol.extend_from_slice(c.take(count)?);
    cols.direction
        .extend(c.take(count)?.iter().map(|&d| FlowDirection::from_u8(d)));
    for col in [&mut cols.in_if, &mut cols.out_if] {
        col.reserve(count);
        c.varints(count, |v| {
            col.push(u32::try_from(v).map_err(|_| corrupt("value does not fit 32 bits"))?);
            Ok(())
        })?;
    }
    for col in [&mut cols.bytes_raw, &mut cols.packets_raw] {
        col.reserve(count);
        c.varints(count, |v| {
            col.push(v);
            Ok(())
        })?;
    }
    if c.pos != c.buf.len() {
        return Err(corrupt("trailing bytes after the last column"));
    }
    Ok(())
}

pub fn encode_losses(records: &[LossRecord], out: &mut Vec<u8>) {
    out.clear();
    for l in records {
        put_addr_fixed(out, l.exporter);
        out.extend_from_slice(&l.domain.to_le_bytes());
        out.push(l.kind as u8);
        out.push(l.reason as u8);
        out.push(l.unit as u8);
        out.extend_from_slice(&l.count.to_le_bytes());
        out.extend_from_slice(&l.from_ms.to_le_bytes());
        out.extend_from_slice(&l.to_ms.to_le_bytes());
        out.extend_from_slice(&l.expected_seq.to_le_bytes());
        out.extend_from_slice(&l.received_seq.to_le_bytes());
    }
}

pub fn decode_losses(
    buf: &[u8],
    count: usize,
    out: &mut Vec<LossRecord>,
) -> Result<(), SegmentError> {
    if count.checked_mul(LOSS_RECORD_LEN) != Some(buf.len()) {
        return Err(corrupt("loss block length does not match its count"));
    }
    let mut c = Cursor { buf, pos: 0 };
    for _ in 0..count {
        let exporter = c.addr_fixed()?;
        let domain = u32::from_le_bytes(c.array::<4>()?);
        let kind = SourceKind::from_u8(c.u8()?).ok_or_else(|| corrupt("unknown source kind"))?;
        let reason = LossReason::from_u8(c.u8()?).ok_or_else(|| corrupt("unknown loss reason"))?;
        let unit = LossUnit::from_u8(c.u8()?).ok_or_else(|| corrupt("unknown loss unit"))?;
        out.push(LossRecord {
            exporter,
            domain,
            kind,
            reason,
            unit,
            count: u64::from_le_bytes(c.array::<8>()?),
            from_ms: i64::from_le_bytes(c.array::<8>()?),
            to_ms: i64::from_le_bytes(c.array::<8>()?),
            expected_seq: u32::from_le_bytes(c.array::<4>()?),
            received_seq: u32::from_le_bytes(c.array::<4>()?),
        });
    }
    Ok(())
}

/// Most pending gaps one checkpoint entry may carry.
const MAX_CHECKPOINT_GAPS: usize = 1024;

pub fn encode_checkpoints(entries: &[SeqCheckpoint], out: &mut Vec<u8>) {
    out.clear();
    for c in entries {
        put_addr_fixed(out, c.exporter);
        out.extend_from_slice(&c.domain.to_le_bytes());
        out.push(c.kind as u8);
        out.extend_from_slice(&c.expected.to_le_bytes());
        out.extend_from_slice(&c.last_arrival_ms.to_le_bytes());
        out.push(u8::from(c.last_uptime_ms.is_some()));
        out.extend_from_slice(&c.last_uptime_ms.unwrap_or(0).to_le_bytes());
        // 0xff: not learned yet; else bit 0 inclusive, bit 1 data-only.
        out.push(c.convention.map_or(0xff, SeqConvention::to_byte));
        let gaps = &c.gaps[..c.gaps.len().min(MAX_CHECKPOINT_GAPS)];
        out.extend_from_slice(&(gaps.len() as u16).to_le_bytes());
        for &(start, len, from_ms, to_ms) in gaps {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&from_ms.to_le_bytes());
            out.extend_from_slice(&to_ms.to_le_bytes());
        }
    }
}

pub fn decode_checkpoints(
    buf: &[u8],
    count: usize,
    out: &mut Vec<SeqCheckpoint>,
) -> Result<(), SegmentError> {
    let mut c = Cursor { buf, pos: 0 };
    for _ in 0..count {
        let exporter = c.addr_fixed()?;
        let domain = u32::from_le_bytes(c.array::<4>()?);
        let kind = SourceKind::from_u8(c.u8()?).ok_or_else(|| corrupt("unknown source kind"))?;
        let expected = u32::from_le_bytes(c.array::<4>()?);
        let last_arrival_ms = i64::from_le_bytes(c.array::<8>()?);
        let has_uptime = c.u8()? != 0;
        let uptime = u32::from_le_bytes(c.array::<4>()?);
        let convention = match c.u8()? {
            0xff => None,
            b if b <= 3 => Some(SeqConvention::from_byte(b)),
            _ => return Err(corrupt("unknown sequence convention")),
        };
        let n = usize::from(u16::from_le_bytes(c.array::<2>()?));
        if n > MAX_CHECKPOINT_GAPS {
            return Err(corrupt("too many gaps in a checkpoint"));
        }
        let mut gaps = Vec::with_capacity(n);
        for _ in 0..n {
            gaps.push((
                u32::from_le_bytes(c.array::<4>()?),
                u32::from_le_bytes(c.array::<4>()?),
                i64::from_le_bytes(c.array::<8>()?),
                i64::from_le_bytes(c.array::<8>()?),
            ));
        }
        out.push(SeqCheckpoint {
            exporter,
            domain,
            kind,
            expected,
            last_arrival_ms,
            last_uptime_ms: has_uptime.then_some(uptime),
            gaps,
            convention,
        });
    }
    if c.pos != buf.len() {
        return Err(corrupt("trailing bytes after the last checkpoint"));
    }
    Ok(())
}

fn corrupt(what: &'static str) -> SegmentError {
    SegmentError::CorruptBlock(what)
}

/// Asks the CPU for the dictionary slots of the IPv4 addresses of
/// `records`, which are about to be pushed: their cache misses then
/// overlap. Changes nothing. (A free function: `push_rows` calls it while
/// its column writers borrow the encoder.)
#[inline(always)]
fn prefetch_slots<R: FlowRows>(dict: &V4Dict, records: R, range: std::ops::Range<usize>) {
    for i in range {
        for a in records.v4_pair(i).into_iter().flatten() {
            dict.prefetch(a);
        }
    }
}

/// The code of IPv4 address `a` in a block whose dictionary is `dict`
/// and list `v4`: its index (plus [`ADDR_CODE_INDEX`]), or [`NEW_V4`]
/// after adding it.
#[inline(always)]
fn v4_code(dict: &mut V4Dict, v4: &mut Vec<u32>, a: u32) -> u32 {
    let code = v4.len() as u32 + ADDR_CODE_INDEX;
    match dict.get_or_insert(a, code) {
        Some(known) => known,
        None => {
            v4.push(a);
            NEW_V4
        }
    }
}

/// Longest LEB128 varint of a `u64`.
const MAX_VARINT_BYTES: usize = 10;

/// One column of the block being built: `buf` only grows, and its bytes
/// past `len` are scratch, so that values are stored into room made for a
/// whole slice of records ([`Col::make_room`]) without a capacity check
/// per byte (a four-byte write may run past its value). No memset per
/// block: `len` goes back to 0.
#[derive(Default)]
struct Col {
    buf: Vec<u8>,
    len: usize,
}

impl Col {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Room for `n` more bytes, plus the three that a four-byte write of
    /// the last value may touch beyond them.
    fn make_room(&mut self, n: usize) {
        let need = self.len + n + 4;
        if self.buf.len() < need {
            self.buf.resize(need.next_power_of_two(), 0);
        }
    }

    /// A writer at the column's end; the column's length follows it when
    /// it is dropped.
    fn cursor(&mut self) -> ColWriter<'_> {
        let Col { buf, len } = self;
        ColWriter {
            pos: *len,
            buf,
            len,
        }
    }
}

/// Writes into the room [`Col::make_room`] made; a write past it panics
/// (a bug, not an input).
struct ColWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
    len: &'a mut usize,
}

impl ColWriter<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&mut self, b: [u8; N]) {
        self.buf[self.pos..self.pos + N].copy_from_slice(&b);
        self.pos += N;
    }

    /// A value below 2^28 (an address code), see [`put_code`].
    #[inline(always)]
    fn code(&mut self, code: u32) {
        let at = self.pos;
        self.pos += put_code(&mut self.buf[at..at + 4], code);
    }

    /// LEB128, a byte at a time: for columns whose values mostly take
    /// one byte (times, interfaces, packets), where the loop's branch is
    /// predicted.
    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.pos] = (v as u8) | 0x80;
            self.pos += 1;
            v >>= 7;
        }
        self.buf[self.pos] = v as u8;
        self.pos += 1;
    }

    /// LEB128, without a branch on the length for values below 2^28: for
    /// columns whose lengths vary from one flow to the next (durations,
    /// byte counts), where a loop's exit branch would mispredict about
    /// every other value.
    #[inline(always)]
    fn varint_mixed(&mut self, v: u64) {
        if v < 1 << 28 {
            self.code(v as u32);
        } else {
            self.varint(v);
        }
    }
}

impl Drop for ColWriter<'_> {
    fn drop(&mut self) {
        *self.len = self.pos;
    }
}

/// An address code (below 2^28: a block holds at most 2^21 addresses) as
/// a LEB128 varint of 1 to 4 bytes into `out`, without branches; returns
/// its length. The bytes after it in `out` are written too (zeros).
#[inline]
fn put_code(out: &mut [u8], code: u32) -> usize {
    debug_assert!(code < 1 << 28);
    // Length and continuation bits from one table load, by the count of
    // leading zeros (the lowest bit set so that 0 takes one byte).
    let shape = CODE_SHAPES[(code | 1).leading_zeros() as usize];
    // The 7-bit groups moved apart to one per byte: each group above the
    // first moves up by one bit per group below it, i.e. is added once,
    // twice, four times more (additions of masked copies, which x86 does
    // with `lea`, instead of a shift, mask and or per group).
    let c = code;
    let groups = c + (c & !0x7f) + ((c & !0x3fff) << 1) + ((c & !0x1f_ffff) << 2);
    out.copy_from_slice(&(groups | shape >> 8).to_le_bytes());
    (shape & 0xff) as usize
}

/// For each count of leading zeros of a `u32` below 2^28 (4 to 31): its
/// LEB128 length in the low byte, above it the continuation bits of every
/// byte but the last. (0 to 3, values [`put_code`] is never given: four
/// bytes, as the 2^28 bound says.)
const CODE_SHAPES: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut lz: u32 = 0;
    while lz < 32 {
        let bits = 32 - lz;
        let n = if bits > 28 { 4 } else { bits.div_ceil(7) };
        let more = 0x0080_8080u32 & ((1u32 << (8 * (n - 1))) - 1);
        t[lz as usize] = (more << 8) | n;
        lz += 1;
    }
    t
};

/// The value of a LEB128 varint of at most eight bytes, given as those
/// bytes (little-endian, nothing after them): the 7-bit groups joined
/// without a per-byte loop.
#[inline(always)]
fn join_groups(bytes: u64) -> u64 {
    let mut x = bytes & 0x7f7f_7f7f_7f7f_7f7f;
    x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Family byte (4 or 6) then 4 or 16 address bytes.
fn put_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// Family byte then always 16 bytes (fixed-size records).
fn put_addr_fixed(out: &mut Vec<u8>, a: IpAddr) {
    let v = addr_to_u128(a);
    out.push(if a.is_ipv4() { 4 } else { 6 });
    out.extend_from_slice(&v.to_be_bytes());
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SegmentError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| corrupt("block ends inside a column"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SegmentError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, SegmentError> {
        Ok(self.array::<1>()?[0])
    }

    /// LEB128 varint. Fast path: eight bytes at once when the varint ends
    /// within them (any value below 2^56, i.e. every count and index a
    /// block holds), its 7-bit groups joined without a per-byte loop.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, SegmentError> {
        if let Some(w) = self.buf.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            let stops = !word & 0x8080_8080_8080_8080;
            if stops != 0 {
                let bits = stops.trailing_zeros() + 1; // through the last byte's high bit
                let len = bits.div_ceil(8);
                let bytes = if len == 8 {
                    word
                } else {
                    word & ((1u64 << (8 * len)) - 1)
                };
                self.pos += len as usize;
                return Ok(join_groups(bytes));
            }
        }
        self.varint_slow()
    }

    /// A column of `n` varints, each passed to `f` in order. Eight bytes
    /// are loaded at once and every varint that ends within them is taken
    /// from that one word (the end bytes found all together, the next
    /// varint's start from the previous one's end bit): the position
    /// advances once a word, not once a varint, so a column of two- and
    /// three-byte values is no longer one long chain of dependent loads.
    /// Eight one-byte varints (small indexes, counts and time deltas: most
    /// of some columns) go in one step. Within eight bytes of the end, and
    /// for a varint longer than eight bytes, [`Self::varint`] reads them.
    #[inline(always)]
    fn varints(
        &mut self,
        n: usize,
        mut f: impl FnMut(u64) -> Result<(), SegmentError>,
    ) -> Result<(), SegmentError> {
        const ENDS: u64 = 0x8080_8080_8080_8080;
        let mut left = n;
        // The values of one word, then handed to `f` from one call site
        // (so that the compiler inlines `f` into this loop).
        let mut vals = [0u64; 8];
        while left > 0 {
            let mut m = 0;
            match self.buf.get(self.pos..self.pos + 8) {
                None => {
                    vals[0] = self.varint()?;
                    m = 1;
                }
                Some(w) => {
                    let word = u64::from_le_bytes(w.try_into().expect("8 bytes"));
                    let mut stops = !word & ENDS;
                    if stops == ENDS && left >= 8 {
                        for (k, v) in vals.iter_mut().enumerate() {
                            *v = (word >> (8 * k)) & 0x7f;
                        }
                        self.pos += 8;
                        m = 8;
                    } else if stops == 0 {
                        // A varint of nine or ten bytes starts here.
                        vals[0] = self.varint()?;
                        m = 1;
                    } else {
                        // Bit offset in `word` where the next varint starts.
                        let mut start = 0u32;
                        while stops != 0 && m < left {
                            let end = stops.trailing_zeros() + 1;
                            let bytes = (word >> start) & (u64::MAX >> (64 - (end - start)));
                            vals[m] = join_groups(bytes);
                            m += 1;
                            start = end;
                            stops &= stops - 1;
                        }
                        self.pos += (start / 8) as usize;
                    }
                }
            }
            for &v in &vals[..m] {
                f(v)?;
            }
            left -= m;
        }
        Ok(())
    }

    fn varint_slow(&mut self) -> Result<u64, SegmentError> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| corrupt("block ends inside a varint"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(corrupt("varint longer than 10 bytes"));
            }
        }
    }

    /// A dictionary length, bounded by what the block could need.
    fn varint_len(&mut self, max: usize) -> Result<usize, SegmentError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| corrupt("dictionary larger than the block"))
    }

    fn addr(&mut self) -> Result<IpAddr, SegmentError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => Err(corrupt("unknown address family")),
        }
    }

    fn addr_fixed(&mut self) -> Result<IpAddr, SegmentError> {
        let fam = self.u8()?;
        let v = u128::from_be_bytes(self.array::<16>()?);
        match fam {
            4 => Ok(u128_to_addr(v)),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(v))),
            _ => Err(corrupt("unknown address family")),
        }
    }
}

#[cfg(test)]
mod varint_tests {
    use super::*;

    /// A deterministic stream of test values.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The branch-free address code writer gives the bytes of the varint
    /// loop, at every length boundary and in between.
    #[test]
    fn codes_are_varints() {
        let mut codes: Vec<u32> = (0..4)
            .flat_map(|k| {
                let b = 1u32 << (7 * k);
                [b.saturating_sub(1), b, b + 1, b * 3]
            })
            .collect();
        codes.extend([
            (1 << 28) - 1,
            0,
            2,
            127,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
        ]);
        codes.extend((0..100_000u32).map(|i| i.wrapping_mul(2_654_435_761) >> 4));
        for code in codes {
            let mut want = Vec::new();
            put_varint(&mut want, u64::from(code));
            let mut got = [0xffu8; 4];
            let n = put_code(&mut got, code);
            assert_eq!(&got[..n], &want[..], "code {code}");
        }
    }

    /// The column writer's two varint forms write the byte loop's bytes
    /// at every length (one to ten bytes), one after another: the room
    /// [`Col::make_room`] makes holds them, and a value's wide write never
    /// spoils the one before.
    #[test]
    fn column_writer_varints_equal_the_byte_loop() {
        let mut next = xorshift(0x5eed_cafe_f00d_beefu64);
        let values: Vec<u64> = (0..=64u32)
            .flat_map(|bits| std::iter::repeat_n(bits, 20))
            .map(|bits| if bits == 0 { 0 } else { next() >> (64 - bits) })
            .chain([
                127,
                128,
                (1 << 28) - 1,
                1 << 28,
                (1 << 56) - 1,
                1 << 56,
                u64::MAX,
            ])
            .collect();
        let mut want = Vec::new();
        for &v in &values {
            put_varint(&mut want, v);
        }
        for mixed in [false, true] {
            let mut col = Col::default();
            // In slices, as a receiver pushes datagrams.
            for part in values.chunks(7) {
                col.make_room(part.len() * MAX_VARINT_BYTES);
                let mut w = col.cursor();
                for &v in part {
                    if mixed {
                        w.varint_mixed(v);
                    } else {
                        w.varint(v);
                    }
                }
            }
            assert_eq!(col.bytes(), &want[..], "mixed {mixed}");
        }
    }

    /// A column read word by word gives the values and the end position
    /// the one-varint reader gives: random lengths (one to ten bytes,
    /// runs of one-byte values), columns that end near the buffer's end
    /// or with bytes after them, and truncated columns (an error either
    /// way).
    #[test]
    fn columns_read_by_word_equal_one_by_one() {
        let mut next = xorshift(0x0ddc_0ffe_e0dd_f00du64);
        for round in 0..3_000 {
            let n = (next() % 40) as usize;
            let values: Vec<u64> = (0..n)
                .map(|_| match next() % 6 {
                    0 | 1 => next() % 128,
                    2 => next() % 20_000,
                    3 => next() % 3_000_000,
                    4 => next() >> (next() % 64),
                    _ => next(),
                })
                .collect();
            let mut buf = Vec::new();
            for &v in &values {
                put_varint(&mut buf, v);
            }
            let len = buf.len();
            buf.extend((0..round % 11).map(|_| next() as u8));
            let mut got = Vec::new();
            let mut c = Cursor { buf: &buf, pos: 0 };
            c.varints(n, |v| {
                got.push(v);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, values, "round {round}");
            assert_eq!(c.pos, len, "round {round}");
            if len > 0 {
                let cut = &buf[..len - 1];
                let mut c = Cursor { buf: cut, pos: 0 };
                assert!(c.varints(n, |_| Ok(())).is_err(), "round {round}");
            }
        }
    }

    /// The eight-byte fast path agrees with the byte loop on every length,
    /// with and without bytes after the varint, and on truncation.
    #[test]
    fn fast_varint_equals_the_byte_loop() {
        let mut next = xorshift(0x1234_5678_9abc_def0u64);
        for bits in 0..=64u32 {
            for _ in 0..200 {
                let v = if bits == 0 { 0 } else { next() >> (64 - bits) };
                let mut buf = Vec::new();
                put_varint(&mut buf, v);
                let len = buf.len();
                for tail in [0usize, 1, 3, 9] {
                    let mut b = buf.clone();
                    b.extend((0..tail).map(|_| next() as u8));
                    let mut fast = Cursor { buf: &b, pos: 0 };
                    let mut slow = Cursor { buf: &b, pos: 0 };
                    assert_eq!(fast.varint().unwrap(), v, "{v:#x} tail {tail}");
                    assert_eq!(slow.varint_slow().unwrap(), v);
                    assert_eq!((fast.pos, slow.pos), (len, len));
                }
                let cut = &buf[..len - 1];
                assert!(Cursor { buf: cut, pos: 0 }.varint().is_err());
            }
        }
        // Eight or more continuation bytes go the long way, errors included.
        let over = [0xffu8; 11];
        assert!(Cursor { buf: &over, pos: 0 }.varint().is_err());
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(Cursor { buf: &max, pos: 0 }.varint().unwrap(), u64::MAX);
    }
}
