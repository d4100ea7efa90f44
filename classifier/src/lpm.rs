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
//! * Every **node** below the root consumes 8 more bits. Logically a node is
//!   256 entries; prefixes shorter than a level boundary are expanded into
//!   all entries they cover, a longer (more specific) prefix overwrites the
//!   entries of the shorter one it is nested in, and a node created below an
//!   entry inherits that entry's result as its default. Lookups therefore
//!   never backtrack: one root read, then one step per level until an entry
//!   is not a child pointer.
//! * Nodes are stored **compressed** in one `Vec<u32>` arena per family, as
//!   the runs of equal entries among the 256 (an expanded trie stores the
//!   same entry many times in a row). A node with at most 9 runs is *sparse*:
//!   8 run-start bytes in two words, compared with all at once by SWAR byte
//!   arithmetic, then the run entries. A node with more runs is a *bitmap*
//!   node: a 256-bit run-start bitmap, a word of cumulative popcounts and the
//!   run entries; the entry index is a rank (popcount) in the bitmap. Both
//!   keep the run entries right after their header, so a step usually
//!   touches one or two adjacent cache lines.
//!
//! An entry is a `u32`: `0` = no match; bit 31 set = child node (bit 30 says
//! sparse or bitmap, bits 0..30 are the node's offset in the arena);
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
//! path, so a node costs at most its header (8 or 36 bytes) plus 4 bytes per
//! run, and never more than 36 + 1024 bytes. Measured with the benchmark's
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
//! (40-90 M IPv4 lookups/s on one core, noisy machine). `FAST` should pay
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
//! miss in a full table, and managed about 1 M lookups/s for
//! IPv4 and IPv6 alike, with a 250-350 ms build. This structure does one
//! (IPv4 `FAST`, /24 or shorter) to six dependent reads per lookup: 40-90 M
//! IPv4 and 15-22 M IPv6 lookups/s on one core (roughly 40-120x and 15-25x
//! prefix-trie), a ~150 ms build for both families, and exact agreement
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
/// With [`CHILD`]: the child is a sparse node (else a bitmap node).
const SPARSE: u32 = 1 << 30;
/// With [`CHILD`]: the bits holding the child's offset in the node arena.
const PTR_MASK: u32 = SPARSE - 1;
/// Bits consumed by every node below the root.
const NODE_BITS: u32 = 8;
/// Logical entries per node.
const NODE_ENTRIES: usize = 1 << NODE_BITS;
/// Sparse node header: 8 run-start bytes in two `u32`s.
const SPARSE_HDR: usize = 2;
/// Most run starts (besides entry 0) a sparse node can hold.
const SPARSE_MAX_BOUNDS: usize = 8;
/// Bitmap node header: 256-bit bitmap in eight `u32`s plus one `u32` of
/// cumulative popcounts (byte `w` = set bits in 64-bit words `0..w`).
const BITMAP_HDR: usize = 9;
/// `0x0101…01`: broadcasts a byte to all eight bytes of a `u64`.
const BYTES_LO: u64 = 0x0101_0101_0101_0101;
/// `0x8080…80`: the high bit of every byte of a `u64`.
const BYTES_HI: u64 = 0x8080_8080_8080_8080;

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

    /// The `len` bits starting `off` bits below the most significant bit,
    /// as an index. Requires `1 <= len <= 24` and `off + len` at most the
    /// address width.
    fn chunk(self, off: u32, len: u32) -> usize;
    fn net(self, len: u8) -> Self::Net;
    fn ipnet(net: Self::Net) -> IpNet;
}

impl Key for u32 {
    type Net = Ipv4Net;

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

/// Number of bytes of `bounds` that are (unsigned) less than `c`, for all
/// eight bytes at once (SWAR). `c` must be below 256.
#[inline(always)]
fn count_bytes_below(bounds: u64, c: u64) -> u32 {
    let y = c * BYTES_LO;
    // Per byte: 0x80 + low7(y) - low7(x) - 1, in 0..=0xfe, so no borrow
    // crosses into the next byte; its high bit says low7(y) > low7(x).
    let t = (y | BYTES_HI) - (bounds & !BYTES_HI) - BYTES_LO;
    // y > x: y's high bit set and x's not, or high bits equal and low7 greater.
    let gt = ((y & !bounds) | (!(y ^ bounds) & t)) & BYTES_HI;
    gt.count_ones()
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
        assert!(n < u64::from(SPARSE), "too many prefixes for one family");
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
        let mut root = vec![0u32; 1 << root_bits];
        let mut b = Build {
            items: &items,
            nodes: Vec::new(),
            packed: trie.packed,
            vbits: trie.vbits,
        };
        b.fill(0, items.len(), 0, root_bits, &mut root);
        trie.root = root;
        trie.nodes = b.nodes;
        trie.nodes.shrink_to_fit();
        trie
    }

    /// The entry for `key`: 0 (no match) or a leaf.
    #[inline(always)]
    fn find(&self, key: K) -> u32 {
        let Some(&root_entry) = self.root.get(key.chunk(0, self.root_bits)) else {
            return 0;
        };
        let mut e = root_entry;
        let mut off = self.root_bits;
        while e & CHILD != 0 {
            let c = key.chunk(off, NODE_BITS);
            let o = (e & PTR_MASK) as usize;
            e = if e & SPARSE != 0 {
                let bounds = u64::from(self.nodes[o]) | u64::from(self.nodes[o + 1]) << 32;
                self.nodes[o + SPARSE_HDR + count_bytes_below(bounds, c as u64) as usize]
            } else {
                let hdr: &[u32; BITMAP_HDR] = self.nodes[o..o + BITMAP_HDR]
                    .try_into()
                    .expect("bitmap node header");
                let w = c >> 6;
                let word = u64::from(hdr[2 * w]) | u64::from(hdr[2 * w + 1]) << 32;
                let before = (hdr[8] >> (8 * w)) & 0xff;
                // Set bits at positions 0..=c; bit 0 of word 0 is always set.
                let rank = before + (word << (63 - (c & 63))).count_ones();
                self.nodes[o + BITMAP_HDR + rank as usize - 1]
            };
            off += NODE_BITS;
        }
        e
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
}

impl<K: Key> Build<'_, K> {
    fn leaf(&self, slot: usize) -> u32 {
        let slot1 = slot as u32 + 1;
        if self.packed {
            slot1 << self.vbits | self.items[slot].2
        } else {
            slot1
        }
    }

    /// Fill `entries` (pre-filled with the inherited default), the node at
    /// bit offset `off` consuming `stride` bits, from `items[lo..hi]`: all
    /// prefixes inside this node's address range with length `>= off`
    /// (`> off` below the root), in preorder.
    fn fill(&mut self, lo: usize, hi: usize, off: u32, stride: u32, entries: &mut [u32]) {
        let end = off + stride;
        // Prefixes ending in this node: expand, longer ones overwrite.
        for slot in lo..hi {
            let (k, len, _) = self.items[slot];
            let len = u32::from(len);
            if len <= end {
                debug_assert!(len >= off);
                let start = k.chunk(off, stride);
                let count = 1usize << (end - len);
                entries[start..start + count].fill(self.leaf(slot));
            }
        }
        // Longer prefixes: grouped by the entry they pass through, which
        // becomes a child node inheriting the entry's expanded result.
        let mut i = lo;
        while i < hi {
            let (k, len, _) = self.items[i];
            if u32::from(len) <= end {
                i += 1;
                continue;
            }
            let c = k.chunk(off, stride);
            let mut j = i + 1;
            // In preorder, prefixes of this entry that end in this node sort
            // before the longer ones, so the longer ones are contiguous.
            while j < hi && self.items[j].0.chunk(off, stride) == c {
                debug_assert!(u32::from(self.items[j].1) > end);
                j += 1;
            }
            entries[c] = self.child(i, j, end, entries[c]);
            i = j;
        }
    }

    /// Build the node at bit offset `off` (below the root) for `items[lo..hi]`
    /// (all longer than `off`), append it to the arena, return its entry.
    fn child(&mut self, lo: usize, hi: usize, off: u32, default: u32) -> u32 {
        let mut entries = [default; NODE_ENTRIES];
        self.fill(lo, hi, off, NODE_BITS, &mut entries);
        self.encode(&entries)
    }

    fn encode(&mut self, entries: &[u32; NODE_ENTRIES]) -> u32 {
        let o = self.nodes.len();
        assert!(
            o + BITMAP_HDR + NODE_ENTRIES <= PTR_MASK as usize,
            "prefix map node arena full"
        );
        let starts = (1..NODE_ENTRIES).filter(|&i| entries[i] != entries[i - 1]);
        let bounds = starts.clone().count();
        if bounds <= SPARSE_MAX_BOUNDS {
            // Run starts stored as start - 1 (0..=254) so that "start <= c"
            // becomes "byte < c"; unused bytes are 0xff, never below c.
            let mut packed = u64::MAX;
            for (n, s) in starts.clone().enumerate() {
                packed &= !(0xff << (8 * n));
                packed |= ((s - 1) as u64) << (8 * n);
            }
            self.nodes.push(packed as u32);
            self.nodes.push((packed >> 32) as u32);
            self.nodes.push(entries[0]);
            self.nodes.extend(starts.map(|s| entries[s]));
            CHILD | SPARSE | o as u32
        } else {
            let mut bitmap = [0u64; 4];
            bitmap[0] = 1;
            for s in starts.clone() {
                bitmap[s >> 6] |= 1 << (s & 63);
            }
            for w in bitmap {
                self.nodes.push(w as u32);
                self.nodes.push((w >> 32) as u32);
            }
            let mut cum = 0u32;
            let mut packed_cum = 0u32;
            for (w, word) in bitmap.iter().enumerate().take(3) {
                cum += word.count_ones();
                packed_cum |= cum << (8 * (w + 1));
            }
            self.nodes.push(packed_cum);
            self.nodes.push(entries[0]);
            self.nodes.extend(starts.map(|s| entries[s]));
            CHILD | o as u32
        }
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
