//! Exact longest-prefix match (LPM) for IPv4 and IPv6.
//!
//! [`PrefixMap`] answers "which is the most specific inserted prefix that
//! contains this address, and what value did the caller attach to it" for
//! both families. It is built once by [`PrefixMapBuilder`] and is immutable
//! afterwards (so it is `Send + Sync` and can be shared behind an `Arc`
//! without locks); a changed network list means building a new map.
//!
//! # Structure
//!
//! Per family there is one multibit trie with controlled prefix expansion:
//!
//! * The **root** is a flat `Vec<u32>` indexed directly by the first
//!   `root` bits of the address (2^24 entries for IPv4 with
//!   [`Strides::FAST`], the DIR-24-8 layout; 2^16 for IPv4 with
//!   [`Strides::COMPACT`] and for IPv6 with both).
//! * Every **node** below the root consumes 8 or 16 more bits. Logically a
//!   node is 256 (or 65 536) entries; prefixes shorter than a level boundary
//!   are expanded into
//!   all entries they cover, a longer (more specific) prefix overwrites the
//!   entries of the shorter one it is nested in, and a node created below an
//!   entry inherits that entry's result as its default. Lookups therefore
//!   never backtrack: one root read, then one step per level until an entry
//!   is not a child pointer.
//! * Nodes are stored **compressed** in one `Vec<u32>` arena per family, as
//!   the runs of equal entries (an expanded trie stores the same entry many
//!   times in a row), in one of four kinds:
//!   - *sparse 8-bit*, at most 9 runs: 8 run-start bytes in two words,
//!     compared with all at once by SWAR byte arithmetic, then the run
//!     entries;
//!   - *bitmap 8-bit*, more runs: a 256-bit run-start bitmap, a word of
//!     cumulative popcounts and the run entries; the entry index is a rank
//!     (popcount) in the bitmap;
//!   - *sparse 16-bit*, at most 17 runs over the next 16 bits: 16 run
//!     starts in 16-bit lanes of four words (SWAR again). This is what makes
//!     IPv6 fast: a /48 under a /32 would otherwise be a chain of two nearly
//!     empty 8-bit nodes, two dependent cache misses instead of one;
//!   - *bitmap 16-bit*, at least 512 runs over the next 16 bits (a /32
//!     holding hundreds of /48s, an IPv4 /16 holding hundreds of hosts):
//!     1024 blocks of 64 bitmap bits plus the popcount of all earlier
//!     blocks, then the run entries, so one step replaces two 8-bit levels.
//!
//!   Between those (18..511 runs over 16 bits) the node is split into 8-bit
//!   nodes. Every kind keeps the run entries right after its header, so a
//!   step usually touches one or two cache lines.
//!
//! An entry is a `u32`: `0` = no match; bit 31 set = child node (bits 29..31
//! are the node's kind, bits 0..29 its offset in the arena);
//! otherwise a *leaf* naming the matched prefix by its slot in a side table
//! of prefixes (sorted, deduplicated). When the slot count and the largest
//! value fit together in 31 bits (they do for any realistic table with
//! small values, e.g. 500 000 prefixes and 8 traffic classes), the value is
//! packed into the low bits of the leaf, so [`PrefixMap::lookup_v4`] needs
//! no memory access beyond the trie itself; otherwise values live in a side
//! array indexed by the slot. [`PrefixMap::lookup_prefix`] reads the slot
//! to report which prefix matched.
//!
//! # Memory
//!
//! [`PrefixMap::memory_bytes`] reports everything the map owns. It is the
//! root (4 · 2^root bytes per non-empty family: 64 MiB for IPv4 with
//! [`Strides::FAST`], 256 KiB with [`Strides::COMPACT`] and for IPv6; an
//! empty family allocates nothing) plus the nodes plus the prefix table.
//! Node memory is bounded by the input: a prefix adds at most two run
//! boundaries to each of the at most `(len - root) / 8 + 1` nodes on its
//! path, so a node costs at most its header plus 4 bytes per run: 8 or 36
//! bytes for 8-bit nodes, 32 bytes for a sparse 16-bit node, and 12 KiB for
//! a bitmap 16-bit node, which exists only with at least 512 runs (at most
//! 24 bytes of header per run). Measured with the benchmark's
//! synthetic BGP-like tables (500 000 IPv4 + 100 000 IPv6 prefixes): 74 MB
//! with `FAST` (64 MiB of it the IPv4 root), 13 MB with `COMPACT`. Without
//! the node compression (plain 256-entry nodes) the IPv6 part alone would,
//! by estimate, need a few hundred MB: nearly every /40-/48 gets its own
//! chain of up to four 1 KiB nodes.
//!
//! # Which strides
//!
//! `FAST` answers IPv4 /24-and-shorter matches with a single read, but that
//! read is a random access into 64 MiB, i.e. a cache and TLB miss. `COMPACT`
//! needs one more step for /17 and longer, yet its whole table (13 MB for
//! the benchmark's) fits in a server's last-level cache. On the 2-vCPU AMD EPYC (32 MiB L3)
//! this was measured on, `COMPACT` was as fast as or faster than `FAST`
//! (75-90 M IPv4 lookups/s on one core). `FAST` should pay
//! off where the last-level cache cannot hold the `COMPACT` table (small or
//! heavily shared caches); measure on the target machine. Backing the `FAST` root with
//! transparent huge pages (`madvise`, which would need `unsafe`) was tried
//! and gave no measurable lookup gain while doubling the build time, so the
//! crate stays free of `unsafe`.
//!
//! # Why hand-written
//!
//! The general-purpose `prefix-trie` crate (0.8, a path-compressed binary
//! trie) was measured side by side on the same tables in `benches/lpm.rs`:
//! it follows a chain of nodes, one per branching bit, each a likely cache
//! miss in a full table, and managed 1-3.4 M lookups/s for
//! IPv4 and IPv6 alike, with a 150-350 ms build. This structure does one
//! (IPv4 `FAST`, /24 or shorter) to a few dependent reads per lookup: 75-90
//! M IPv4 and 51-55 M IPv6 lookups/s on one core (roughly 25-35x and 16x
//! prefix-trie), a 75-110 ms build for both families, and exact agreement
//! with prefix-trie on 30 M looked-up addresses. It is also immutable and
//! flat (a few `Vec`s), so it is cheap to share between threads and its
//! memory is exactly accounted.
//!
//! Lookups use safe indexing only (no `get_unchecked`); the rates above
//! include the bounds checks.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Entry flag: the entry points to a child node.
const CHILD: u32 = 1 << 31;
/// With [`CHILD`]: the child's node kind is in bits 29..31.
const KIND_SHIFT: u32 = 29;
/// Node kind: 8-bit stride, 256-bit run-start bitmap.
const BITMAP8: u32 = 0;
/// Node kind: 8-bit stride, at most [`SPARSE8_MAX_BOUNDS`] run starts.
const SPARSE8: u32 = 1;
/// Node kind: 16-bit stride, at most [`SPARSE16_MAX_BOUNDS`] run starts.
const SPARSE16: u32 = 2;
/// Node kind: 16-bit stride, 65536-bit run-start bitmap in blocks.
const BITMAP16: u32 = 3;
/// With [`CHILD`]: the bits holding the child's offset in the node arena.
const PTR_MASK: u32 = (1 << KIND_SHIFT) - 1;
/// Sparse 8-bit node header: 8 run-start bytes in two `u32`s.
const SPARSE8_HDR: usize = 2;
/// Most run starts (besides entry 0) a sparse 8-bit node can hold.
const SPARSE8_MAX_BOUNDS: usize = 8;
/// Bitmap 8-bit node header: 256-bit bitmap in eight `u32`s plus one `u32`
/// of cumulative popcounts (byte `w` = set bits in 64-bit words `0..w`).
const BITMAP8_HDR: usize = 9;
/// Sparse 16-bit node header: 8 run-start `u16`s in four `u32`s.
const SPARSE16_HDR: usize = 8;
/// Most run starts (besides entry 0) a sparse 16-bit node can hold.
const SPARSE16_MAX_BOUNDS: usize = 16;
/// Bitmap 16-bit node header: 1024 blocks of 64 entries, each three `u32`s
/// (the block's 64 bitmap bits, then the set bits in all earlier blocks).
const BITMAP16_HDR: usize = 3 * 1024;
/// Fewest runs for which a 16-bit stride is stored as a bitmap node rather
/// than split into 8-bit nodes: its 12 KiB header then costs at most six
/// `u32`s per run.
const BITMAP16_MIN_RUNS: usize = 512;
/// Largest node (a bitmap 16-bit node with every entry a run), in `u32`s.
const MAX_NODE: usize = BITMAP16_HDR + (1 << 16);
/// `0x0101…01`: broadcasts a byte to all eight bytes of a `u64`.
const BYTES_LO: u64 = 0x0101_0101_0101_0101;
/// `0x8080…80`: the high bit of every byte of a `u64`.
const BYTES_HI: u64 = 0x8080_8080_8080_8080;
/// `0x0001_0001…`: broadcasts a `u16` to all four lanes of a `u64`.
const LANES_LO: u64 = 0x0001_0001_0001_0001;
/// The high bit of every 16-bit lane of a `u64`.
const LANES_HI: u64 = 0x8000_8000_8000_8000;

/// How many address bits the root table of each family consumes; every
/// level below the root consumes 8 bits.
///
/// The root is a flat array of 2^root `u32`s, allocated for each family
/// that has at least one prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strides {
    v4_root: u8,
    v6_root: u8,
}

impl Strides {
    /// IPv4 24 then 8 (DIR-24-8: any prefix up to /24 is found with a
    /// single read, 64 MiB root); IPv6 16 then 8 per level.
    pub const FAST: Strides = Strides {
        v4_root: 24,
        v6_root: 16,
    };
    /// IPv4 16, 8, 8 (256 KiB root; one more level for /17 and longer);
    /// IPv6 16 then 8 per level.
    pub const COMPACT: Strides = Strides {
        v4_root: 16,
        v6_root: 16,
    };

    /// Custom root widths.
    ///
    /// # Panics
    ///
    /// If a width is not 8, 16 or 24 (the remaining bits must divide into
    /// 8-bit levels, and the root is capped at 2^24 entries).
    pub const fn new(v4_root_bits: u8, v6_root_bits: u8) -> Strides {
        assert!(
            matches!(v4_root_bits, 8 | 16 | 24) && matches!(v6_root_bits, 8 | 16 | 24),
            "root bits must be 8, 16 or 24"
        );
        Strides {
            v4_root: v4_root_bits,
            v6_root: v6_root_bits,
        }
    }

    /// Bits consumed by the IPv4 root table.
    pub const fn v4_root_bits(self) -> u8 {
        self.v4_root
    }

    /// Bits consumed by the IPv6 root table.
    pub const fn v6_root_bits(self) -> u8 {
        self.v6_root
    }
}

impl Default for Strides {
    fn default() -> Self {
        Strides::FAST
    }
}

/// An address as a big-endian-ordered unsigned integer (`u32` for IPv4,
/// `u128` for IPv6).
trait Key: Copy + Ord + Hash + fmt::Debug {
    /// The stored form of a prefix of this family.
    type Net: Copy + fmt::Debug;
    /// Address width in bits.
    const WIDTH: u32;

    /// The `len` bits starting `off` bits below the most significant bit,
    /// as an index. Requires `1 <= len <= 24` and `off + len` at most the
    /// address width.
    fn chunk(self, off: u32, len: u32) -> usize;
    fn net(self, len: u8) -> Self::Net;
    fn ipnet(net: Self::Net) -> IpNet;
}

impl Key for u32 {
    type Net = Ipv4Net;
    const WIDTH: u32 = 32;

    #[inline(always)]
    fn chunk(self, off: u32, len: u32) -> usize {
        ((self << off) >> (Self::BITS - len)) as usize
    }

    fn net(self, len: u8) -> Ipv4Net {
        Ipv4Net::new_assert(Ipv4Addr::from(self), len)
    }

    fn ipnet(net: Ipv4Net) -> IpNet {
        IpNet::V4(net)
    }
}

impl Key for u128 {
    type Net = Ipv6Net;
    const WIDTH: u32 = 128;

    #[inline(always)]
    fn chunk(self, off: u32, len: u32) -> usize {
        ((self << off) >> (Self::BITS - len)) as usize
    }

    fn net(self, len: u8) -> Ipv6Net {
        Ipv6Net::new_assert(Ipv6Addr::from(self), len)
    }

    fn ipnet(net: Ipv6Net) -> IpNet {
        IpNet::V6(net)
    }
}

/// The high bit of each byte of `bounds` that is (unsigned) less than `c`,
/// for all eight bytes at once (SWAR). `c` must be below 256.
#[inline(always)]
fn bytes_below(bounds: u64, c: u64) -> u64 {
    let y = c * BYTES_LO;
    // Per byte: 0x80 + low7(y) - low7(x) - 1, in 0..=0xfe, so no borrow
    // crosses into the next byte; its high bit says low7(y) > low7(x).
    let t = (y | BYTES_HI) - (bounds & !BYTES_HI) - BYTES_LO;
    // y > x: y's high bit set and x's not, or high bits equal and low7 greater.
    ((y & !bounds) | (!(y ^ bounds) & t)) & BYTES_HI
}

/// Number of bytes of `bounds` that are (unsigned) less than `c`. The sum
/// of the flags by one multiplication: `count_ones` is a dozen instructions
/// on x86-64 without `popcnt`, the baseline target.
#[inline(always)]
fn count_bytes_below(bounds: u64, c: u64) -> u32 {
    ((bytes_below(bounds, c) >> 7).wrapping_mul(BYTES_LO) >> 56) as u32
}

/// [`bytes_below`] for the four 16-bit lanes of `bounds` (flag = bit 15 of
/// the lane). `c` must be below 2^16.
#[inline(always)]
fn lanes_below(bounds: u64, c: u64) -> u64 {
    let y = c * LANES_LO;
    let t = (y | LANES_HI) - (bounds & !LANES_HI) - LANES_LO;
    ((y & !bounds) | (!(y ^ bounds) & t)) & LANES_HI
}

/// Number of 16-bit lanes in `words` (each four lanes) below `c`.
#[inline(always)]
fn count_lanes_below<const N: usize>(words: [u64; N], c: u64) -> u32 {
    let flags = words.map(|w| lanes_below(w, c) >> 15);
    // At most N per lane, summed into the top lane.
    (flags.iter().sum::<u64>().wrapping_mul(LANES_LO) >> 48) as u32
}

/// One family's trie: root table, node arena, prefix table.
struct Trie<K: Key> {
    root_bits: u32,
    /// 2^root_bits entries, or empty when the family has no prefixes.
    root: Vec<u32>,
    /// Compressed nodes, see the module docs.
    nodes: Vec<u32>,
    /// Leaf = `(slot + 1) << vbits | value` when packed, else `slot + 1`.
    packed: bool,
    vbits: u32,
    vmask: u32,
    /// Slot → value; only used (and only filled) when not packed.
    values: Vec<u32>,
    /// Slot → prefix, sorted by (address, length).
    prefixes: Vec<K::Net>,
    /// Nodes built of each kind ([`BITMAP8`], [`SPARSE8`], [`SPARSE16`],
    /// [`BITMAP16`]), for tests and the benchmark's report.
    kinds: [usize; 4],
}

impl<K: Key> Trie<K> {
    fn empty(root_bits: u32) -> Self {
        Trie {
            root_bits,
            root: Vec::new(),
            nodes: Vec::new(),
            packed: true,
            vbits: 0,
            vmask: 0,
            values: Vec::new(),
            prefixes: Vec::new(),
            kinds: [0; 4],
        }
    }

    /// `items`: distinct, truncated prefixes `(address, len, value)`.
    fn build(mut items: Vec<(K, u8, u32)>, root_bits: u32) -> Self {
        let mut trie = Self::empty(root_bits);
        if items.is_empty() {
            return trie;
        }
        // Preorder: a covering prefix sorts before everything nested in it,
        // so painting in this order lets the longer prefix win.
        items.sort_unstable_by_key(|&(k, len, _)| (k, len));
        let n = items.len() as u64;
        assert!(n < u64::from(CHILD), "too many prefixes for one family");
        let max_value = items.iter().map(|i| i.2).max().unwrap_or(0);
        let vbits = u32::BITS - max_value.leading_zeros();
        if vbits < 31 && ((n + 1) << vbits) <= 1 << 31 {
            trie.vbits = vbits;
            trie.vmask = (1u32 << vbits) - 1;
        } else {
            trie.packed = false;
            trie.values = items.iter().map(|i| i.2).collect();
        }
        trie.prefixes = items.iter().map(|&(k, len, _)| k.net(len)).collect();
        let mut b = Build {
            items: &items,
            nodes: Vec::new(),
            packed: trie.packed,
            vbits: trie.vbits,
            kinds: [0; 4],
        };
        let mut runs = Vec::new();
        b.paint(
            &mut 0,
            items.len(),
            0,
            root_bits,
            0,
            1 << root_bits,
            0,
            &mut runs,
        );
        let mut root = vec![0u32; 1 << root_bits];
        let ends = runs.iter().skip(1).map(|r| r.0).chain([1 << root_bits]);
        for (&(start, ent), end) in runs.iter().zip(ends) {
            let e = b.entry(ent, root_bits);
            root[start as usize..end as usize].fill(e);
        }
        trie.root = root;
        trie.nodes = b.nodes;
        trie.nodes.shrink_to_fit();
        trie.kinds = b.kinds;
        trie
    }

    /// The entry for `key`: 0 (no match) or a leaf.
    #[inline(always)]
    fn find(&self, key: K) -> u32 {
        let Some(&root_entry) = self.root.get(key.chunk(0, self.root_bits)) else {
            return 0;
        };
        let (mut e, mut off) = (root_entry, self.root_bits);
        while e & CHILD != 0 {
            (e, off) = self.step(key, e, off);
        }
        e
    }

    /// A pipelined lookup's early stages, for a caller that knows its
    /// next keys: `near == false` asks for `key`'s root entry; `near`
    /// (later, once that entry has arrived) for the first node it points
    /// to, its first two cache lines. Neither changes anything.
    #[inline(always)]
    fn prefetch(&self, key: K, near: bool) {
        let Some(e) = self.root.get(key.chunk(0, self.root_bits)) else {
            return;
        };
        if !near {
            kopek_collector::mem::prefetch(e);
        } else if *e & CHILD != 0 {
            let node = self.nodes.as_ptr().wrapping_add((*e & PTR_MASK) as usize);
            kopek_collector::mem::prefetch(node);
            kopek_collector::mem::prefetch(node.wrapping_add(16));
        }
    }

    /// [`find`](Self::find) for many keys, eight at a time in lockstep:
    /// every key's root entry, then every key's next node, and so on. The
    /// loads of one round do not depend on each other, so their cache
    /// misses overlap instead of queueing behind one key's chain.
    fn find_many(&self, keys: &[K], out: &mut Vec<Option<u32>>) {
        const LANES: usize = 8;
        out.clear();
        if self.root.is_empty() {
            out.resize(keys.len(), None);
            return;
        }
        for group in keys.chunks(LANES) {
            let mut e = [0u32; LANES];
            let mut off = [self.root_bits; LANES];
            for (i, &k) in group.iter().enumerate() {
                e[i] = self.root[k.chunk(0, self.root_bits)];
            }
            loop {
                let mut more = false;
                for (i, &k) in group.iter().enumerate() {
                    if e[i] & CHILD != 0 {
                        (e[i], off[i]) = self.step(k, e[i], off[i]);
                        more |= e[i] & CHILD != 0;
                    }
                }
                if !more {
                    break;
                }
            }
            out.extend(e[..group.len()].iter().map(|&leaf| self.value(leaf)));
        }
    }

    /// One node below the root: the child entry `e` (bit offset `off`)
    /// followed for `key`; returns the next entry and offset.
    #[inline(always)]
    fn step(&self, key: K, e: u32, off: u32) -> (u32, u32) {
        let nodes = &self.nodes[..];
        let o = (e & PTR_MASK) as usize;
        match (e >> KIND_SHIFT) & 3 {
            SPARSE8 => {
                let c = key.chunk(off, 8);
                let bounds = u64::from(nodes[o]) | u64::from(nodes[o + 1]) << 32;
                let n = count_bytes_below(bounds, c as u64) as usize;
                (nodes[o + SPARSE8_HDR + n], off + 8)
            }
            BITMAP8 => {
                let c = key.chunk(off, 8);
                let hdr: &[u32; BITMAP8_HDR] = nodes[o..o + BITMAP8_HDR]
                    .try_into()
                    .expect("bitmap node header");
                let w = c >> 6;
                let word = u64::from(hdr[2 * w]) | u64::from(hdr[2 * w + 1]) << 32;
                let before = (hdr[8] >> (8 * w)) & 0xff;
                // Set bits at positions 0..=c; bit 0 of word 0 is always set.
                let rank = before + (word << (63 - (c & 63))).count_ones();
                (nodes[o + BITMAP8_HDR + rank as usize - 1], off + 8)
            }
            SPARSE16 => {
                let c = key.chunk(off, 16);
                let hdr: &[u32; SPARSE16_HDR] = nodes[o..o + SPARSE16_HDR]
                    .try_into()
                    .expect("sparse node header");
                let words: [u64; SPARSE16_HDR / 2] = std::array::from_fn(|w| {
                    u64::from(hdr[2 * w]) | u64::from(hdr[2 * w + 1]) << 32
                });
                let n = count_lanes_below(words, c as u64) as usize;
                (nodes[o + SPARSE16_HDR + n], off + 16)
            }
            _ => {
                let c = key.chunk(off, 16);
                let b = o + 3 * (c >> 6);
                let block: &[u32; 3] = nodes[b..b + 3].try_into().expect("bitmap block");
                let word = u64::from(block[0]) | u64::from(block[1]) << 32;
                let rank = block[2] + (word << (63 - (c & 63))).count_ones();
                (nodes[o + BITMAP16_HDR + rank as usize - 1], off + 16)
            }
        }
    }

    #[inline(always)]
    fn value(&self, leaf: u32) -> Option<u32> {
        if leaf == 0 {
            None
        } else if self.packed {
            Some(leaf & self.vmask)
        } else {
            Some(self.values[leaf as usize - 1])
        }
    }

    fn slot(&self, leaf: u32) -> usize {
        (leaf >> self.vbits) as usize - 1
    }

    fn lookup_prefix(&self, key: K) -> Option<(IpNet, u32)> {
        let leaf = self.find(key);
        let value = self.value(leaf)?;
        Some((K::ipnet(self.prefixes[self.slot(leaf)]), value))
    }

    fn memory_bytes(&self) -> usize {
        self.root.capacity() * 4
            + self.nodes.capacity() * 4
            + self.values.capacity() * 4
            + self.prefixes.capacity() * size_of::<K::Net>()
    }
}

/// Build state: the sorted items and the node arena being written.
struct Build<'a, K> {
    items: &'a [(K, u8, u32)],
    nodes: Vec<u32>,
    packed: bool,
    vbits: u32,
    /// Nodes written so far, by kind.
    kinds: [usize; 4],
}

/// What a run of entries of a node being built holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ent {
    /// A finished entry: `0` (no match) or a leaf.
    Leaf(u32),
    /// A child node still to build, for `items[lo..hi]` (all longer than
    /// the node's end), inheriting `default`.
    Child { lo: usize, hi: usize, default: u32 },
}

/// Runs of a node being built: (first entry index, what all entries up to
/// the next run's start hold). The first run starts at 0; adjacent runs
/// differ.
type Runs = Vec<(u32, Ent)>;

impl<K: Key> Build<'_, K> {
    fn leaf(&self, slot: usize) -> u32 {
        let slot1 = slot as u32 + 1;
        if self.packed {
            slot1 << self.vbits | self.items[slot].2
        } else {
            slot1
        }
    }

    /// Append to `out` the runs of entries `a..b` of the node that starts at
    /// bit `off` and ends at bit `end` (entry = the address bits `off..end`),
    /// painting over `default` the prefixes `items[*i..hi]` that start in
    /// `a..b` (advancing `*i` past them). Items are in preorder, so the
    /// prefixes nested in one follow it directly; a prefix ending at or
    /// before `end` covers a range of entries, a longer one (with all
    /// following ones through the same entry) becomes a child entry.
    #[allow(clippy::too_many_arguments)]
    fn paint(
        &self,
        i: &mut usize,
        hi: usize,
        off: u32,
        end: u32,
        a: u32,
        b: u32,
        default: u32,
        out: &mut Runs,
    ) {
        let stride = end - off;
        let mut cur = a;
        while *i < hi {
            let (k, len, _) = self.items[*i];
            let s = k.chunk(off, stride) as u32;
            if s >= b {
                break;
            }
            debug_assert!(s >= cur);
            if s > cur {
                push_run(out, cur, Ent::Leaf(default));
            }
            let len = u32::from(len);
            if len <= end {
                debug_assert!(len >= off);
                let e = s + (1 << (end - len));
                let leaf = self.leaf(*i);
                *i += 1;
                push_run(out, s, Ent::Leaf(leaf));
                self.paint(i, hi, off, end, s, e, leaf, out);
                cur = e;
            } else {
                let lo = *i;
                while *i < hi && self.items[*i].0.chunk(off, stride) as u32 == s {
                    debug_assert!(u32::from(self.items[*i].1) > end);
                    *i += 1;
                }
                push_run(
                    out,
                    s,
                    Ent::Child {
                        lo,
                        hi: *i,
                        default,
                    },
                );
                cur = s + 1;
            }
        }
        if cur < b {
            push_run(out, cur, Ent::Leaf(default));
        }
    }

    /// The entry for a run: a leaf as is, a child built now at bit `off`.
    fn entry(&mut self, ent: Ent, off: u32) -> u32 {
        match ent {
            Ent::Leaf(e) => e,
            Ent::Child { lo, hi, default } => self.node(lo, hi, off, default),
        }
    }

    /// Build the node at bit offset `off` (below the root) for `items[lo..hi]`
    /// (all longer than `off`, all through the same parent entry), append it
    /// (and its descendants) to the arena, return the entry pointing to it.
    ///
    /// The node consumes 16 bits where they hold few runs (a sparse 16-bit
    /// node: a chain of nearly empty 8-bit nodes collapsed into one, e.g.
    /// the /48s under a /32) or very many (a bitmap 16-bit node); otherwise
    /// 8 bits.
    fn node(&mut self, lo: usize, hi: usize, off: u32, default: u32) -> u32 {
        let mut runs = Runs::new();
        if off + 16 <= K::WIDTH {
            self.paint(
                &mut { lo },
                hi,
                off,
                off + 16,
                0,
                1 << 16,
                default,
                &mut runs,
            );
            if runs.len() <= SPARSE16_MAX_BOUNDS + 1 {
                return self.encode(SPARSE16, &runs, off + 16);
            }
            if runs.len() >= BITMAP16_MIN_RUNS {
                return self.encode(BITMAP16, &runs, off + 16);
            }
            runs.clear();
        }
        self.paint(&mut { lo }, hi, off, off + 8, 0, 1 << 8, default, &mut runs);
        let kind = if runs.len() <= SPARSE8_MAX_BOUNDS + 1 {
            SPARSE8
        } else {
            BITMAP8
        };
        self.encode(kind, &runs, off + 8)
    }

    /// Write a node of `kind` holding `runs` (its entries end at bit `end`)
    /// and then its children; return the entry pointing to it.
    fn encode(&mut self, kind: u32, runs: &Runs, end: u32) -> u32 {
        let o = self.nodes.len();
        assert!(
            o + MAX_NODE <= PTR_MASK as usize,
            "prefix map node arena full"
        );
        self.kinds[kind as usize] += 1;
        let bounds = runs[1..].iter().map(|r| r.0);
        match kind {
            SPARSE8 => {
                // Run starts stored as start - 1 (0..=254) so that "start <= c"
                // becomes "byte < c"; unused bytes are 0xff, never below c.
                let mut packed = u64::MAX;
                for (n, s) in bounds.enumerate() {
                    packed &= !(0xff << (8 * n));
                    packed |= u64::from(s - 1) << (8 * n);
                }
                self.nodes.extend([packed as u32, (packed >> 32) as u32]);
            }
            BITMAP8 => {
                let mut bitmap = [0u64; 4];
                bitmap[0] = 1;
                for s in bounds {
                    bitmap[s as usize >> 6] |= 1 << (s & 63);
                }
                for w in bitmap {
                    self.nodes.extend([w as u32, (w >> 32) as u32]);
                }
                let mut cum = 0u32;
                let mut packed_cum = 0u32;
                for (w, word) in bitmap.iter().enumerate().take(3) {
                    cum += word.count_ones();
                    packed_cum |= cum << (8 * (w + 1));
                }
                self.nodes.push(packed_cum);
            }
            SPARSE16 => {
                // As SPARSE8, in 16-bit lanes (start - 1 in 0..=65534).
                let mut packed = [u64::MAX; SPARSE16_HDR / 2];
                for (n, s) in bounds.enumerate() {
                    let p = &mut packed[n / 4];
                    *p &= !(0xffff << (16 * (n % 4)));
                    *p |= u64::from(s - 1) << (16 * (n % 4));
                }
                for p in packed {
                    self.nodes.extend([p as u32, (p >> 32) as u32]);
                }
            }
            _ => {
                let mut bitmap = vec![0u64; 1024];
                bitmap[0] = 1;
                for s in bounds {
                    bitmap[s as usize >> 6] |= 1 << (s & 63);
                }
                let mut cum = 0u32;
                for w in bitmap {
                    self.nodes.extend([w as u32, (w >> 32) as u32, cum]);
                    cum += w.count_ones();
                }
            }
        }
        // Reserve the entries, then build the children behind the node.
        let first = self.nodes.len();
        self.nodes.resize(first + runs.len(), 0);
        for (n, &(_, ent)) in runs.iter().enumerate() {
            self.nodes[first + n] = self.entry(ent, end);
        }
        CHILD | kind << KIND_SHIFT | o as u32
    }
}

/// Append a run unless it continues the last one.
fn push_run(out: &mut Runs, start: u32, ent: Ent) {
    // An empty run (a prefix whose first entry leads to a child) is replaced.
    if out.last().is_some_and(|r| r.0 == start) {
        out.pop();
    }
    match out.last() {
        Some(&(_, last)) if last == ent => {}
        _ => out.push((start, ent)),
    }
}

/// An immutable longest-prefix-match map from IPv4 and IPv6 prefixes to
/// small caller-chosen `u32` values. See the [module docs](self).
pub struct PrefixMap {
    strides: Strides,
    v4: Trie<u32>,
    v6: Trie<u128>,
}

impl PrefixMap {
    /// A map with no prefixes (allocates nothing).
    pub fn empty() -> PrefixMap {
        PrefixMapBuilder::new(Strides::FAST).build()
    }

    /// Value of the longest inserted prefix containing `addr`.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is looked up as IPv6.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<u32> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(u32::from(a)),
            IpAddr::V6(a) => self.lookup_v6(u128::from(a)),
        }
    }

    /// [`lookup`](Self::lookup) for an IPv4 address given as a host-order
    /// `u32` (`u32::from(Ipv4Addr)`).
    #[inline]
    pub fn lookup_v4(&self, addr: u32) -> Option<u32> {
        self.v4.value(self.v4.find(addr))
    }

    /// For a caller that looks up a stream of IPv4 addresses one by one:
    /// ask for an address's root entry some way ahead (`near == false`),
    /// then, closer to its lookup, for the node that entry points to
    /// (`near`), so that the lookup itself finds its path in the cache.
    /// Changes nothing.
    #[inline]
    pub fn prefetch_v4(&self, addr: u32, near: bool) {
        self.v4.prefetch(addr, near);
    }

    /// [`prefetch_v4`](Self::prefetch_v4) for IPv6 (`u128::from(Ipv6Addr)`).
    #[inline]
    pub fn prefetch_v6(&self, addr: u128, near: bool) {
        self.v6.prefetch(addr, near);
    }

    /// [`lookup_v4`](Self::lookup_v4) for many addresses at once, the
    /// answers in `out` (cleared first) in the same order. Faster than one
    /// at a time where the table is larger than the caches: the lookups
    /// run eight in lockstep, so their memory accesses overlap.
    pub fn lookup_v4_many(&self, addrs: &[u32], out: &mut Vec<Option<u32>>) {
        self.v4.find_many(addrs, out);
    }

    /// [`lookup_v6`](Self::lookup_v6) for many addresses, as
    /// [`lookup_v4_many`](Self::lookup_v4_many).
    pub fn lookup_v6_many(&self, addrs: &[u128], out: &mut Vec<Option<u32>>) {
        self.v6.find_many(addrs, out);
    }

    /// [`lookup`](Self::lookup) for an IPv6 address given as
    /// `u128::from(Ipv6Addr)`.
    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> Option<u32> {
        self.v6.value(self.v6.find(addr))
    }

    /// Like [`lookup`](Self::lookup), and also the prefix that matched (as
    /// inserted, with host bits cleared).
    pub fn lookup_prefix(&self, addr: IpAddr) -> Option<(IpNet, u32)> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup_prefix(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup_prefix(u128::from(a)),
        }
    }

    /// Number of distinct prefixes (both families).
    pub fn len(&self) -> usize {
        self.v4.prefixes.len() + self.v6.prefixes.len()
    }

    /// Whether the map has no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap and inline bytes owned by the map.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.v4.memory_bytes() + self.v6.memory_bytes()
    }

    /// How many nodes of each kind the IPv4 and the IPv6 trie hold, in the
    /// order 8-bit bitmap, 8-bit sparse, 16-bit sparse, 16-bit bitmap.
    pub fn node_kinds(&self) -> ([usize; 4], [usize; 4]) {
        (self.v4.kinds, self.v6.kinds)
    }

    /// The strides the map was built with.
    pub fn strides(&self) -> Strides {
        self.strides
    }
}

impl Default for PrefixMap {
    fn default() -> Self {
        PrefixMap::empty()
    }
}

impl fmt::Debug for PrefixMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixMap")
            .field("strides", &self.strides)
            .field("v4_prefixes", &self.v4.prefixes.len())
            .field("v6_prefixes", &self.v6.prefixes.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

/// Collects prefixes for a [`PrefixMap`]. `Default` uses [`Strides::FAST`].
#[derive(Default)]
pub struct PrefixMapBuilder {
    strides: Strides,
    v4: HashMap<(u32, u8), u32>,
    v6: HashMap<(u128, u8), u32>,
}

impl PrefixMapBuilder {
    pub fn new(strides: Strides) -> Self {
        PrefixMapBuilder {
            strides,
            ..Default::default()
        }
    }

    /// Insert a prefix (host bits are ignored). If the same prefix was
    /// already inserted, the first insertion wins and this returns `false`.
    ///
    /// Values are small integers chosen by the caller (an index into the
    /// caller's table); `u32::MAX` is reserved. Small values keep lookups
    /// free of a side-table read (see the module docs).
    pub fn insert(&mut self, net: IpNet, value: u32) -> bool {
        debug_assert_ne!(value, u32::MAX, "u32::MAX is a reserved value");
        fn first_wins<K: Eq + Hash>(map: &mut HashMap<K, u32>, key: K, value: u32) -> bool {
            match map.entry(key) {
                Entry::Occupied(_) => false,
                Entry::Vacant(v) => {
                    v.insert(value);
                    true
                }
            }
        }
        match net.trunc() {
            IpNet::V4(n) => first_wins(&mut self.v4, (u32::from(n.addr()), n.prefix_len()), value),
            IpNet::V6(n) => first_wins(&mut self.v6, (u128::from(n.addr()), n.prefix_len()), value),
        }
    }

    /// Number of distinct prefixes inserted.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn build(self) -> PrefixMap {
        fn items<K>(m: HashMap<(K, u8), u32>) -> Vec<(K, u8, u32)> {
            m.into_iter().map(|((k, len), v)| (k, len, v)).collect()
        }
        PrefixMap {
            strides: self.strides,
            v4: Trie::build(items(self.v4), u32::from(self.strides.v4_root)),
            v6: Trie::build(items(self.v6), u32::from(self.strides.v6_root)),
        }
    }
}

impl fmt::Debug for PrefixMapBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixMapBuilder")
            .field("strides", &self.strides)
            .field("v4_prefixes", &self.v4.len())
            .field("v6_prefixes", &self.v6.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: tiny, deterministic, good enough for test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bits(&mut self, width: u32) -> u128 {
            let v = u128::from(self.next()) << 64 | u128::from(self.next());
            v & full(width)
        }
    }

    fn full(width: u32) -> u128 {
        u128::MAX >> (128 - width)
    }

    /// Network mask of a `len`-bit prefix in a `width`-bit address.
    fn mask(width: u32, len: u32) -> u128 {
        if len == 0 {
            0
        } else {
            (u128::MAX << (width - len)) & full(width)
        }
    }

    fn ip(width: u32, a: u128) -> IpAddr {
        if width == 32 {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }

    fn net(width: u32, a: u128, len: u32) -> IpNet {
        IpNet::new(ip(width, a), len as u8).unwrap()
    }

    /// The naive oracle: distinct prefixes in insertion order (first wins),
    /// longest match by a linear scan.
    struct Oracle {
        width: u32,
        prefixes: Vec<(u128, u32, u32)>,
    }

    impl Oracle {
        fn lookup(&self, a: u128) -> Option<(IpNet, u32)> {
            let mut best: Option<(u128, u32, u32)> = None;
            for &(p, len, v) in &self.prefixes {
                if (a ^ p) & mask(self.width, len) == 0 && best.is_none_or(|b| len > b.1) {
                    best = Some((p, len, v));
                }
            }
            best.map(|(p, len, v)| (net(self.width, p, len), v))
        }
    }

    /// A random insertion sequence (with duplicates, host bits, nesting
    /// around a few anchors) plus the addresses worth asking about.
    struct Dataset {
        width: u32,
        inserts: Vec<(IpNet, u32, bool)>,
        oracle: Oracle,
        addrs: Vec<u128>,
    }

    fn dataset(seed: u64, width: u32, n: usize, min_len: u32, big_values: bool) -> Dataset {
        let mut rng = Rng(seed);
        let anchors: Vec<u128> = (0..24).map(|_| rng.bits(width)).collect();
        let mut oracle = Oracle {
            width,
            prefixes: Vec::new(),
        };
        let mut inserts = Vec::new();
        let mut seen = HashMap::new();
        while inserts.len() < n {
            let value = if big_values {
                u32::MAX - 1 - rng.below(1 << 31) as u32
            } else {
                rng.below(8) as u32
            };
            let (addr, len) = if !oracle.prefixes.is_empty() && rng.below(10) == 0 {
                // Same prefix again, different host bits and value.
                let i = rng.below(oracle.prefixes.len() as u64) as usize;
                let (p, len, _) = oracle.prefixes[i];
                (p | (rng.bits(width) & !mask(width, len)), len)
            } else {
                let len = match rng.below(8) {
                    // Level boundaries and their neighbours are the
                    // interesting cases for expansion.
                    0 => {
                        let b = 8 * rng.below(u64::from(width / 8) + 1) as u32;
                        (b + rng.below(3) as u32).saturating_sub(1).min(width)
                    }
                    _ => rng.below(u64::from(width) + 1) as u32,
                }
                .max(min_len);
                let addr = if rng.below(4) == 0 {
                    rng.bits(width)
                } else {
                    let a = anchors[rng.below(anchors.len() as u64) as usize];
                    let keep = rng.below(u64::from(width) + 1) as u32;
                    a ^ (rng.bits(width) & !mask(width, keep))
                };
                (addr, len)
            };
            let p = addr & mask(width, len);
            let fresh = seen.insert((p, len), ()).is_none();
            if fresh {
                oracle.prefixes.push((p, len, value));
            }
            inserts.push((net(width, addr, len), value, fresh));
        }
        let mut addrs = vec![0, full(width)];
        for &(p, len, _) in &oracle.prefixes {
            let last = p | (full(width) & !mask(width, len));
            addrs.extend([
                p,
                last,
                p.wrapping_sub(1) & full(width),
                last.wrapping_add(1) & full(width),
            ]);
        }
        for _ in 0..3000 {
            addrs.push(rng.bits(width));
            let a = anchors[rng.below(anchors.len() as u64) as usize];
            addrs.push(a ^ (rng.bits(width) >> rng.below(u64::from(width))));
        }
        Dataset {
            width,
            inserts,
            oracle,
            addrs,
        }
    }

    fn check(ds: &Dataset, strides_list: &[Strides]) {
        let expected: Vec<_> = ds.addrs.iter().map(|&a| ds.oracle.lookup(a)).collect();
        assert!(expected.iter().any(|e| e.is_some()));
        for &strides in strides_list {
            let mut b = PrefixMapBuilder::new(strides);
            for &(n, v, fresh) in &ds.inserts {
                assert_eq!(b.insert(n, v), fresh, "insert {n} {strides:?}");
            }
            assert_eq!(b.len(), ds.oracle.prefixes.len());
            let map = b.build();
            assert_eq!(map.len(), ds.oracle.prefixes.len());
            for (&a, want) in ds.addrs.iter().zip(&expected) {
                let addr = ip(ds.width, a);
                let got = map.lookup_prefix(addr);
                assert_eq!(got, *want, "{addr} {strides:?}");
                let value = want.map(|w| w.1);
                assert_eq!(map.lookup(addr), value);
                if ds.width == 32 {
                    assert_eq!(map.lookup_v4(a as u32), value);
                    assert_eq!(map.lookup_v6(a), None, "family leak");
                } else {
                    assert_eq!(map.lookup_v6(a), value);
                }
            }
            // Batched lookups give the same answers in the same order.
            let mut out = Vec::new();
            let want: Vec<_> = expected.iter().map(|w| w.map(|w| w.1)).collect();
            if ds.width == 32 {
                let keys: Vec<u32> = ds.addrs.iter().map(|&a| a as u32).collect();
                map.lookup_v4_many(&keys, &mut out);
            } else {
                map.lookup_v6_many(&ds.addrs, &mut out);
            }
            assert_eq!(out, want, "batched {strides:?}");
        }
    }

    const ALL_STRIDES: [Strides; 4] = [
        Strides::FAST,
        Strides::COMPACT,
        Strides::new(8, 8),
        Strides::new(16, 24),
    ];

    #[test]
    fn v4_random_against_oracle() {
        for (seed, min_len) in [(1, 0), (2, 6), (3, 20)] {
            check(&dataset(seed, 32, 2000, min_len, false), &ALL_STRIDES);
        }
    }

    #[test]
    fn v6_random_against_oracle() {
        for (seed, min_len) in [(11, 0), (12, 6), (13, 40)] {
            check(&dataset(seed, 128, 2000, min_len, false), &ALL_STRIDES);
        }
    }

    /// Hand-made tables that need every node kind: a /32 holding a few
    /// /48s (one sparse 16-bit node instead of a chain of 8-bit ones), a
    /// /32 holding 700 /48s with /56s and /64s nested in some (a bitmap
    /// 16-bit node), and for IPv4 with a 16-bit root a /16 holding 600
    /// host routes; plus the 8-bit kinds below them. Checked against the
    /// linear oracle at every prefix edge.
    #[test]
    fn every_node_kind_against_oracle() {
        let mut rng = Rng(41);
        let mut sets: Vec<(u32, Vec<(u128, u32)>)> = Vec::new();
        let mut v6 = vec![(0x2001_0db8u128 << 96, 32), (0x2001_0db9u128 << 96, 32)];
        for k in [3u128, 900, 40_000] {
            v6.push((0x2001_0db8u128 << 96 | k << 80, 48));
        }
        for k in 0..700u128 {
            let p48 = 0x2001_0db9u128 << 96 | (k * 93 % 65_536) << 80;
            v6.push((p48, 48));
            if k % 7 == 0 {
                v6.push((p48 | (rng.below(256) as u128) << 72, 56));
            }
            if k % 13 == 1 {
                // Four /56s of five /64s each: too many runs for a sparse
                // 16-bit node, few enough 8-bit ones: a sparse 8-bit node.
                for q in 0..4u128 {
                    let p56 = p48 | (q * 50 + 1) << 72;
                    v6.push((p56, 56));
                    for j in 0..5u128 {
                        v6.push((p56 | (j * 40) << 64, 64));
                    }
                }
            }
            if k % 11 == 0 {
                // Many runs in one 8-bit node: a bitmap 8-bit node.
                for j in 0..20u128 {
                    v6.push((p48 | (j * 12) << 72 | 1 << 64, 64));
                }
            }
        }
        sets.push((128, v6));
        let mut v4 = vec![(0x0a01_0000u128, 16), (0x0a02_0000u128, 16)];
        for k in 0..600u128 {
            v4.push((0x0a01_0000 | (k * 97 % 65_536), 32));
        }
        v4.extend([(0x0a02_0100u128, 24), (0x0a02_0180, 25), (0x0a02_0181, 32)]);
        // 30 /24s in a /16: too many runs for a sparse 16-bit node, too few
        // for a bitmap one, so 8-bit nodes; a /26 in one of the /24s.
        v4.push((0x0a03_0000, 16));
        for k in 0..30u128 {
            v4.push((0x0a03_0000 | (k * 5) << 8, 24));
        }
        v4.push((0x0a03_0a40, 26));
        sets.push((32, v4));
        let mut kinds = [[0usize; 4]; 2];
        for (width, prefixes) in sets {
            let mut oracle = Oracle {
                width,
                prefixes: Vec::new(),
            };
            let mut inserts = Vec::new();
            let mut addrs = vec![0, full(width)];
            for (i, &(p, len)) in prefixes.iter().enumerate() {
                let value = (i % 8) as u32;
                oracle.prefixes.push((p, len, value));
                inserts.push((net(width, p, len), value, true));
                let last = p | (full(width) & !mask(width, len));
                addrs.extend([
                    p,
                    last,
                    p.wrapping_sub(1),
                    last.wrapping_add(1) & full(width),
                ]);
            }
            let ds = Dataset {
                width,
                inserts,
                oracle,
                addrs,
            };
            check(&ds, &[Strides::COMPACT]);
            let mut b = PrefixMapBuilder::new(Strides::COMPACT);
            for &(n, v, _) in &ds.inserts {
                b.insert(n, v);
            }
            let (k4, k6) = b.build().node_kinds();
            kinds[usize::from(width == 128)] = if width == 32 { k4 } else { k6 };
        }
        let [k4, k6] = kinds;
        assert_eq!(k4[BITMAP16 as usize], 1, "IPv4 /16 with 600 hosts: {k4:?}");
        assert!(k4[SPARSE16 as usize] >= 1, "IPv4 /16 with a /24: {k4:?}");
        assert!(k4[BITMAP8 as usize] >= 1, "IPv4 /16 with 30 /24s: {k4:?}");
        assert!(k4[SPARSE8 as usize] >= 1, "IPv4 /24 with a /26: {k4:?}");
        assert!(
            k6[SPARSE16 as usize] >= 1,
            "IPv6 /32 with three /48s: {k6:?}"
        );
        assert!(k6[BITMAP16 as usize] >= 1, "IPv6 /32 with 700 /48s: {k6:?}");
        assert!(k6[BITMAP8 as usize] >= 1, "IPv6 /56 with 20 /64s: {k6:?}");
        assert!(k6[SPARSE8 as usize] >= 1, "IPv6 /48 with four /56s: {k6:?}");
    }

    #[test]
    fn large_values_use_side_table() {
        for (seed, width) in [(21, 32), (22, 128)] {
            let ds = dataset(seed, width, 1500, 4, true);
            check(&ds, &[Strides::COMPACT, Strides::new(8, 8)]);
            let mut b = PrefixMapBuilder::new(Strides::COMPACT);
            for &(n, v, _) in &ds.inserts {
                b.insert(n, v);
            }
            let map = b.build();
            assert!(!map.v4.packed || !map.v6.packed);
        }
    }

    #[test]
    fn small_values_are_packed() {
        let ds = dataset(31, 32, 500, 0, false);
        let mut b = PrefixMapBuilder::new(Strides::COMPACT);
        for &(n, v, _) in &ds.inserts {
            b.insert(n, v);
        }
        let map = b.build();
        assert!(map.v4.packed && map.v4.values.is_empty());
        assert_eq!(map.v4.vbits, 3);
    }

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn edges_default_routes_and_hosts() {
        for strides in ALL_STRIDES {
            let mut b = PrefixMapBuilder::new(strides);
            for (i, n) in [
                "0.0.0.0/0",
                "10.0.0.0/8",
                "10.1.0.0/16",
                "10.1.2.0/24",
                "10.1.2.3/32",
                "10.1.2.128/25",
                "255.255.255.255/32",
                "0.0.0.0/32",
                "::/0",
                "2001:db8::/32",
                "2001:db8::1/128",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
                "::/128",
            ]
            .into_iter()
            .enumerate()
            {
                assert!(b.insert(p(n), i as u32));
            }
            let map = b.build();
            assert_eq!(map.len(), 13);
            for (addr, want) in [
                ("1.2.3.4", ("0.0.0.0/0", 0)),
                ("10.200.0.0", ("10.0.0.0/8", 1)),
                ("10.1.255.255", ("10.1.0.0/16", 2)),
                ("10.1.2.2", ("10.1.2.0/24", 3)),
                ("10.1.2.4", ("10.1.2.0/24", 3)),
                ("10.1.2.3", ("10.1.2.3/32", 4)),
                ("10.1.2.127", ("10.1.2.0/24", 3)),
                ("10.1.2.128", ("10.1.2.128/25", 5)),
                ("10.1.2.255", ("10.1.2.128/25", 5)),
                ("255.255.255.255", ("255.255.255.255/32", 6)),
                ("255.255.255.254", ("0.0.0.0/0", 0)),
                ("0.0.0.0", ("0.0.0.0/32", 7)),
                ("0.0.0.1", ("0.0.0.0/0", 0)),
                ("2001:db8::", ("2001:db8::/32", 9)),
                ("2001:db8::1", ("2001:db8::1/128", 10)),
                ("2001:db8::2", ("2001:db8::/32", 9)),
                ("2001:db9::1", ("::/0", 8)),
                (
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 11),
                ),
                ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", ("::/0", 8)),
                ("::", ("::/128", 12)),
                ("::1", ("::/0", 8)),
                ("::ffff:10.1.2.3", ("::/0", 8)),
            ] {
                assert_eq!(
                    map.lookup_prefix(a(addr)),
                    Some((p(want.0), want.1)),
                    "{addr} {strides:?}"
                );
                assert_eq!(map.lookup(a(addr)), Some(want.1));
            }
        }
    }

    #[test]
    fn duplicates_first_wins_and_host_bits_are_ignored() {
        let mut b = PrefixMapBuilder::default();
        assert!(b.is_empty());
        assert!(b.insert(p("192.0.2.77/24"), 1));
        assert!(!b.insert(p("192.0.2.0/24"), 2));
        assert!(!b.insert(p("192.0.2.255/24"), 3));
        assert!(b.insert(p("192.0.2.0/25"), 4));
        assert!(b.insert(p("2001:db8::1/32"), 5));
        assert!(!b.insert(p("2001:db8::/32"), 6));
        assert_eq!(b.len(), 3);
        assert!(!b.is_empty());
        let map = b.build();
        assert_eq!(map.len(), 3);
        assert_eq!(
            map.lookup_prefix(a("192.0.2.200")),
            Some((p("192.0.2.0/24"), 1))
        );
        assert_eq!(map.lookup(a("192.0.2.1")), Some(4));
        assert_eq!(
            map.lookup_prefix(a("2001:db8:ffff::")),
            Some((p("2001:db8::/32"), 5))
        );
        assert_eq!(map.lookup(a("192.0.3.0")), None);
        assert_eq!(map.lookup(a("2001:db9::")), None);
    }

    #[test]
    fn empty_maps() {
        for map in [
            PrefixMap::empty(),
            PrefixMap::default(),
            PrefixMapBuilder::new(Strides::FAST).build(),
        ] {
            assert_eq!(map.len(), 0);
            assert!(map.is_empty());
            assert!(map.memory_bytes() < 1024, "{}", map.memory_bytes());
            for addr in ["0.0.0.0", "1.2.3.4", "255.255.255.255", "::", "2001:db8::1"] {
                assert_eq!(map.lookup(a(addr)), None);
                assert_eq!(map.lookup_prefix(a(addr)), None);
            }
            assert_eq!(map.lookup_v4(7), None);
            assert_eq!(map.lookup_v6(7), None);
        }
        // One family only: the other one allocates nothing and matches nothing.
        let mut b = PrefixMapBuilder::new(Strides::COMPACT);
        b.insert(p("::/0"), 1);
        let map = b.build();
        assert_eq!(map.lookup(a("1.2.3.4")), None);
        assert_eq!(map.lookup(a("1::")), Some(1));
        assert!(map.v4.root.is_empty());
    }

    /// Every node kind: sparse nodes (few runs) and bitmap nodes (many runs,
    /// runs in every 64-bit word), at several depths.
    #[test]
    fn dense_and_sparse_nodes() {
        for strides in ALL_STRIDES {
            let mut b = PrefixMapBuilder::new(strides);
            b.insert(p("198.51.100.0/24"), 7);
            for i in 0..256u32 {
                if i % 3 != 0 {
                    let n = IpNet::new(ip(32, u128::from(0xc633_6400 | i)), 32).unwrap();
                    b.insert(n, i % 5);
                }
            }
            for i in 0..256u128 {
                if i % 2 == 0 {
                    let base = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128;
                    b.insert(net(128, base | i << 64, 64), (i % 6) as u32);
                    b.insert(net(128, base | i << 64 | 0x1234, 128), 6);
                }
            }
            let map = b.build();
            let nodes = &map.v6.nodes;
            assert!(!nodes.is_empty());
            for i in 0..256u32 {
                let want = if i % 3 != 0 { i % 5 } else { 7 };
                assert_eq!(map.lookup_v4(0xc633_6400 | i), Some(want), "{i}");
            }
            for i in 0..256u128 {
                let base = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128;
                let want = if i % 2 == 0 {
                    Some((i % 6) as u32)
                } else {
                    None
                };
                assert_eq!(map.lookup_v6(base | i << 64 | 0x1233), want);
                let want = if i % 2 == 0 { Some(6) } else { None };
                assert_eq!(map.lookup_v6(base | i << 64 | 0x1234), want);
            }
        }
    }

    #[test]
    fn swar_count_matches_naive() {
        let mut rng = Rng(99);
        for round in 0..2000 {
            let mut bytes: [u8; 8] = rng.next().to_le_bytes();
            if round % 4 == 0 {
                bytes[rng.below(8) as usize] = 0xff;
                bytes[rng.below(8) as usize] = 0;
                bytes[rng.below(8) as usize] = 0x80;
                bytes[rng.below(8) as usize] = 0x7f;
            }
            let word = u64::from_le_bytes(bytes);
            for c in 0..256u64 {
                let naive = bytes.iter().filter(|&&x| u64::from(x) < c).count() as u32;
                assert_eq!(count_bytes_below(word, c), naive, "{word:#x} {c}");
            }
        }
    }

    #[test]
    fn memory_is_reported() {
        let mut b = PrefixMapBuilder::new(Strides::FAST);
        b.insert(p("10.0.0.0/8"), 1);
        let fast = b.build();
        assert!(fast.memory_bytes() >= 4 << 24);
        let mut b = PrefixMapBuilder::new(Strides::COMPACT);
        b.insert(p("10.0.0.0/8"), 1);
        b.insert(p("10.1.2.3/32"), 2);
        b.insert(p("2001:db8::1/128"), 3);
        let compact = b.build();
        let roots = 2 * (4 << 16);
        assert!(compact.memory_bytes() >= roots);
        assert!(
            compact.memory_bytes() < roots + 4096,
            "{}",
            compact.memory_bytes()
        );
        let dbg = format!("{compact:?}");
        assert!(dbg.len() < 200 && dbg.contains("v4_prefixes: 2"), "{dbg}");
    }

    #[test]
    fn shareable() {
        fn send_sync<T: Send + Sync + fmt::Debug>() {}
        send_sync::<PrefixMap>();
        send_sync::<PrefixMapBuilder>();
    }
}
