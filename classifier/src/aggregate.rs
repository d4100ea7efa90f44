//! Turning raw records into tier-2 aggregates.
//!
//! For every record: the billing point ([`PointMatcher`]), the subscriber
//! side(s) (an address bound to an account at the record's time, or inside
//! the subscriber networks), the class of the remote address (the list
//! version valid at the record's time), the direction (subscriber as source
//! = `out`, upload; as destination = `in`, download), and the buckets its
//! bytes fall in ([`crate::split`]). A record between two subscribers counts
//! for both, each in its own direction. A record with no subscriber side is
//! kept as `transit` under its source address: visible, never billed.
//!
//! Everything accumulates in an in-memory [`Batch`] that is committed to
//! tier 2 in one transaction together with how far tier 1 was read.

use std::collections::HashMap;
use std::net::IpAddr;

use kopek_collector::segment::FlowColumns;
use kopek_collector::{FlowRecord, LossRecord};
use kopek_config::CountRule;

use crate::bindings::BindingIndex;
use crate::classes::{ClassTable, NetSet};
use crate::points::PointMatcher;
use crate::probe::ProbeMap;
use crate::split::{BucketHint, bucket_of, counted_start, cover_hinted, single_bucket, split};
use crate::versions::ClassVersions;

pub const HOUR_MS: i64 = 3_600_000;

/// Most bytes one record may carry (after scaling by its sampling rate):
/// 1 PiB, 1.25 Tbit/s for the two hours a record may last
/// ([`crate::split::MAX_FLOW_MS`]). More is a broken or forged counter
/// (NetFlow v9 and IPFIX carry 64-bit ones): such a record is not
/// aggregated, it is counted as a loss of its exporter (reason
/// [`IMPLAUSIBLE`]) and stays in tier 1 as it came.
pub const MAX_RECORD_BYTES: u64 = 1 << 50;
/// Most packets one record may carry: [`MAX_RECORD_BYTES`] in the smallest
/// IP packets (20 bytes).
pub const MAX_RECORD_PACKETS: u64 = MAX_RECORD_BYTES / 20;
/// Whether one record can carry these counters (scaled by sampling).
#[inline]
fn plausible(bytes: u64, packets: u64) -> bool {
    bytes <= MAX_RECORD_BYTES && packets <= MAX_RECORD_PACKETS
}

/// Loss reason of a record whose counters are beyond
/// [`MAX_RECORD_BYTES`] or [`MAX_RECORD_PACKETS`].
pub const IMPLAUSIBLE: &str = "implausible";
/// Loss reason of a record that starts before what tier 2 keeps
/// ([`traffic_cut`]): its rows would be removed by the next retention, or
/// change rows the core has already forgotten.
pub const STALE: &str = "stale";

/// The oldest time tier 2 keeps traffic of at `now_ms` under a retention
/// of `days` (0: forever, `None`): the hour `days` before. Retention
/// removes rows before it; the classifier counts no record starting
/// before it (a [`STALE`] loss), so no row before it ever changes again.
pub fn traffic_cut(now_ms: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| {
        now_ms
            .saturating_sub(i64::from(days) * 24 * HOUR_MS)
            .div_euclid(HOUR_MS)
            * HOUR_MS
    })
}

/// Where every sum stops in tier 2 (SQLite integers are signed 64 bits):
/// sums saturate instead of wrapping to a negative number.
pub const SUM_MAX: u64 = i64::MAX as u64;

/// Direction of traffic as the subscriber sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Dir {
    /// To the subscriber (download).
    In = 0,
    /// From the subscriber (upload).
    Out = 1,
    /// Neither address is a subscriber's.
    Transit = 2,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
            Dir::Transit => "transit",
        }
    }

    pub fn parse(s: &str) -> Option<Dir> {
        Some(match s {
            "in" => Dir::In,
            "out" => Dir::Out,
            "transit" => Dir::Transit,
            _ => return None,
        })
    }

    fn counted_by(self, rule: CountRule) -> bool {
        matches!(
            (rule, self),
            (CountRule::Both, Dir::In | Dir::Out)
                | (CountRule::Inbound, Dir::In)
                | (CountRule::Outbound, Dir::Out)
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
}

impl Counts {
    #[inline]
    pub(crate) fn add(&mut self, bytes: u64, packets: u64, flows: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.packets = self.packets.saturating_add(packets);
        self.flows += flows;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounts {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub flows: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficKey {
    pub bucket_ms: i64,
    /// Index into [`BindingIndex::account`].
    pub account: u32,
    /// Global class id ([`ClassVersions::name`]).
    pub class: u32,
    pub dir: Dir,
    /// [`PointMatcher::name`] index.
    pub point: u16,
    pub billed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnattributedKey {
    pub bucket_ms: i64,
    pub address: IpAddr,
    pub class: u32,
    pub dir: Dir,
    pub point: u16,
}

/// Key of the per-hour host detail (the hour is implied by the pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostKey {
    pub account: u32,
    pub remote: IpAddr,
    pub class: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LossKey {
    pub bucket_ms: i64,
    pub exporter: IpAddr,
    pub domain: u32,
    pub reason: &'static str,
    pub unit: &'static str,
}

/// Hash maps of the per-record paths: foldhash (a folded multiply per
/// word, about FxHash's speed) with a per-process random seed, because some
/// keys hold remote addresses, which whoever sends the packets chooses.
/// SipHash would cost a third of the per-record budget.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Counters of what the classifier did, for the stats file and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AggStats {
    pub records: u64,
    pub bytes: u64,
    /// Records whose bytes were split over more than one bucket.
    pub split_records: u64,
    /// Records longer than [`crate::split::MAX_FLOW_MS`], clamped.
    pub clamped_records: u64,
    /// Records with a subscriber side that no account held.
    pub unattributed_records: u64,
    /// Records with no subscriber side at all.
    pub transit_records: u64,
    /// Records taken by no billing point (kept, not billed).
    pub unbilled_records: u64,
    pub loss_records: u64,
    /// Records with counters beyond [`MAX_RECORD_BYTES`] or
    /// [`MAX_RECORD_PACKETS`]: not aggregated, counted as losses.
    #[serde(default)]
    pub implausible_records: u64,
    /// Records starting before what tier 2 keeps ([`STALE`]): not
    /// aggregated, counted as losses.
    #[serde(default)]
    pub stale_records: u64,
}

impl AggStats {
    pub fn add(&mut self, o: &AggStats) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.split_records += o.split_records;
        self.clamped_records += o.clamped_records;
        self.unattributed_records += o.unattributed_records;
        self.transit_records += o.transit_records;
        self.unbilled_records += o.unbilled_records;
        self.loss_records += o.loss_records;
        self.implausible_records += o.implausible_records;
        self.stale_records += o.stale_records;
    }
}

/// How far tier 1 has been read, committed with the aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub collector: String,
    pub segment_id: u64,
    /// Offset of the next unread block.
    pub offset: u64,
    /// The segment is sealed and fully read.
    pub done: bool,
}

/// Per-account updates between learning a sum's key (and prefetching its
/// slot) and adding to it: enough records' work to hide a miss to memory,
/// few enough to stay in the L1 cache.
const UPDATE_DISTANCE: usize = 16;

/// What a per-account sum is kept under besides the account, interned per
/// batch so that the sum's key is one `u64` ([`ProbeMap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Combo {
    bucket_ms: i64,
    class: u32,
    dir: Dir,
    point: u16,
    billed: bool,
}

/// Aggregates not yet committed.
#[derive(Debug)]
pub struct Batch {
    /// Per-account sums by `account << 32 | combo index`; see
    /// [`Batch::traffic`].
    traffic: ProbeMap<Counts>,
    combos: Vec<Combo>,
    combo_ix: FastMap<Combo, u32>,
    /// Updates whose slot is being fetched, oldest at `ring_head`.
    ring: [(u64, Counts); UPDATE_DISTANCE],
    ring_head: usize,
    ring_len: usize,
    pub unattributed: FastMap<UnattributedKey, Counts>,
    pub losses: FastMap<LossKey, u64>,
    /// Hours with new records: their top-hosts detail must be (re)computed.
    pub hours: Vec<i64>,
    pub progress: Vec<Progress>,
    pub stats: AggStats,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            traffic: ProbeMap::default(),
            combos: Vec::new(),
            combo_ix: FastMap::default(),
            ring: [(0, Counts::default()); UPDATE_DISTANCE],
            ring_head: 0,
            ring_len: 0,
            unattributed: FastMap::default(),
            losses: FastMap::default(),
            hours: Vec::new(),
            progress: Vec::new(),
            stats: AggStats::default(),
        }
    }
}

impl Batch {
    /// Every per-account aggregate of the batch. Call [`Batch::settle`]
    /// first: the last few updates wait in a queue.
    pub fn traffic(&self) -> impl Iterator<Item = (TrafficKey, Counts)> + '_ {
        debug_assert!(self.ring_len == 0, "Batch::traffic before Batch::settle");
        self.traffic.iter().map(|(key, c)| {
            let k = &self.combos[key as u32 as usize];
            let key = TrafficKey {
                bucket_ms: k.bucket_ms,
                account: (key >> 32) as u32,
                class: k.class,
                dir: k.dir,
                point: k.point,
                billed: k.billed,
            };
            (key, *c)
        })
    }

    /// Adds `c` to the sum of (`account`, `combo`): its slot is
    /// prefetched now and added to [`UPDATE_DISTANCE`] updates later.
    #[inline]
    fn add_traffic(&mut self, account: u32, combo: Combo, c: Counts) {
        let ix = match self.combo_ix.get(&combo) {
            Some(&ix) => ix,
            None => {
                let ix = self.combos.len() as u32;
                self.combos.push(combo);
                self.combo_ix.insert(combo, ix);
                ix
            }
        };
        let key = u64::from(account) << 32 | u64::from(ix);
        self.traffic.prefetch(key);
        if self.ring_len == UPDATE_DISTANCE {
            let (k, old) = std::mem::replace(&mut self.ring[self.ring_head], (key, c));
            self.traffic.entry(k).add(old.bytes, old.packets, old.flows);
            self.ring_head = (self.ring_head + 1) % UPDATE_DISTANCE;
        } else {
            self.ring[(self.ring_head + self.ring_len) % UPDATE_DISTANCE] = (key, c);
            self.ring_len += 1;
        }
    }

    /// Adds every queued per-account update (before a commit reads the
    /// batch).
    pub fn settle(&mut self) {
        for i in 0..self.ring_len {
            let (k, c) = self.ring[(self.ring_head + i) % UPDATE_DISTANCE];
            self.traffic.entry(k).add(c.bytes, c.packets, c.flows);
        }
        self.ring_head = 0;
        self.ring_len = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.progress.is_empty() && self.stats.records == 0 && self.stats.loss_records == 0
    }

    /// Entries held: the batch is committed before this grows past a bound.
    pub fn entries(&self) -> usize {
        self.traffic.len() + self.ring_len + self.unattributed.len() + self.losses.len()
    }

    pub fn clear(&mut self) {
        self.traffic.clear();
        self.combos.clear();
        self.combo_ix.clear();
        self.ring_head = 0;
        self.ring_len = 0;
        self.unattributed.clear();
        self.hours.clear();
        self.losses.clear();
        self.progress.clear();
        self.stats = AggStats::default();
    }

    /// Moves everything `other` holds into this batch (a parallel reader's
    /// batch into the engine's) and leaves `other` empty. Every part of a
    /// batch is a sum, a union or a per-segment position, so batches filled
    /// from different segments and merged commit the same tier 2 as one
    /// reader going through the segments in turn.
    pub fn absorb(&mut self, other: &mut Batch) {
        other.settle();
        for (k, c) in other.traffic() {
            let combo = Combo {
                bucket_ms: k.bucket_ms,
                class: k.class,
                dir: k.dir,
                point: k.point,
                billed: k.billed,
            };
            self.add_traffic(k.account, combo, c);
        }
        for (k, c) in other.unattributed.drain() {
            self.unattributed
                .entry(k)
                .or_default()
                .add(c.bytes, c.packets, c.flows);
        }
        for (k, n) in other.losses.drain() {
            *self.losses.entry(k).or_default() += n;
        }
        for h in other.hours.drain(..) {
            if !self.hours.contains(&h) {
                self.hours.push(h);
            }
        }
        for p in other.progress.drain(..) {
            self.set_progress(p);
        }
        self.stats.add(&other.stats);
        other.clear();
    }

    /// Sets the read position of a segment (the latest wins).
    pub fn set_progress(&mut self, p: Progress) {
        match self
            .progress
            .iter_mut()
            .find(|q| q.collector == p.collector && q.segment_id == p.segment_id)
        {
            Some(q) => *q = p,
            None => self.progress.push(p),
        }
    }
}

/// What a record is judged against; borrowed for one block.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub versions: &'a ClassVersions,
    pub bindings: &'a BindingIndex,
    pub subscribers: &'a NetSet,
    pub points: &'a PointMatcher,
    pub bucket_ms: i64,
    /// Records starting before this are [`STALE`] (`i64::MIN`: none).
    pub stale_before_ms: i64,
    /// Bucket of the [`STALE`] losses: now (at their own time, retention
    /// would remove them at once).
    pub stale_loss_bucket_ms: i64,
}

impl Rules<'_> {
    /// Whether a record's bytes may go into tier 2: counters one record
    /// can carry, and a start tier 2 still keeps.
    #[inline]
    fn takes(&self, first_ms: i64, last_ms: i64, bytes: u64, packets: u64) -> bool {
        plausible(bytes, packets) && counted_start(first_ms, last_ms) >= self.stale_before_ms
    }
}

/// Reused scratch space so the per-record path never allocates.
#[derive(Debug, Default)]
pub struct Scratch {
    judged: Vec<Judged>,
    hint: BucketHint,
    hour_hint: BucketHint,
    cover: Vec<(i64, i64)>,
    bytes: Vec<u64>,
    packets: Vec<u64>,
    lookups: ClassLookups,
    facts: AddrFacts,
    in_hour: Vec<InHour>,
}

/// What a block's distinct addresses are, judged once per block by
/// [`add_columns`] instead of once per record that uses them.
#[derive(Debug, Default)]
struct AddrFacts {
    /// By address index: one 16-byte entry, so that a record's look at
    /// its two addresses costs two cache lines, not eight.
    of: Vec<AddrFact>,
    /// Addresses whose class the run needs, by family.
    at4: Vec<u32>,
    at6: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct AddrFact {
    /// Account holding the address over the block's whole time range
    /// ([`NONE`]: nobody; [`VARIES`]: it may change, ask per record).
    account: u32,
    /// Class index in the table of the current run, valid where `stamp`
    /// is the run's number.
    class: u32,
    stamp: u32,
    /// Inside the configured subscriber networks.
    in_subscribers: bool,
}

impl AddrFacts {
    /// Empties the queue of addresses awaiting a class lookup.
    fn clear_queue(&mut self, l: &mut ClassLookups) {
        self.at4.clear();
        self.at6.clear();
        l.keys4.clear();
        l.keys6.clear();
    }

    /// Queues address `ix` (`addr`) for the class lookup of run `run`,
    /// once per run.
    fn queue_class(&mut self, l: &mut ClassLookups, ix: u32, addr: IpAddr, run: u32) {
        let fact = &mut self.of[ix as usize];
        if fact.stamp == run {
            return;
        }
        fact.stamp = run;
        match addr {
            IpAddr::V4(a) => {
                self.at4.push(ix);
                l.keys4.push(u32::from(a));
            }
            IpAddr::V6(a) => {
                self.at6.push(ix);
                l.keys6.push(u128::from(a));
            }
        }
    }

    /// Looks the queued addresses up in `table` (batched) and stores each
    /// one's class (an index of `table`).
    fn resolve_classes(&mut self, l: &mut ClassLookups, table: &ClassTable) {
        table.classes_of_v4(&l.keys4, &mut l.res4);
        table.classes_of_v6(&l.keys6, &mut l.res6);
        let found = self
            .at4
            .iter()
            .zip(&l.res4)
            .chain(self.at6.iter().zip(&l.res6));
        for (&ix, &ci) in found {
            self.of[ix as usize].class = ci.unwrap_or(table.default);
        }
    }
}

/// The remote addresses of a run of records, by family, for batched class
/// lookups: (record index in the block, side) and the address.
#[derive(Debug, Default)]
struct ClassLookups {
    at4: Vec<(u32, Side)>,
    keys4: Vec<u32>,
    res4: Vec<Option<u32>>,
    at6: Vec<(u32, Side)>,
    keys6: Vec<u128>,
    res6: Vec<Option<u32>>,
}

/// Which remote a class lookup is for.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// Remote = dst: the subscriber sent (or transit).
    Out,
    /// Remote = src: the subscriber received.
    In,
}

/// Adds one record to `batch`.
#[inline]
pub fn add_record(rules: &Rules<'_>, r: &FlowRecord, batch: &mut Batch, s: &mut Scratch) {
    if refused(rules, &Flow::of(r), r.exporter, r.domain, batch) {
        return;
    }
    let j = judge(rules, r);
    accumulate(
        rules,
        &Flow::of(r),
        &|src| if src { r.src } else { r.dst },
        &j,
        batch,
        s,
    );
    batch.settle();
}

/// Adds a block of records: first every lookup (binding, subscriber set,
/// class) of every record, then every aggregate update. The lookups of one
/// record do not depend on the previous record's, so in a tight loop the
/// CPU overlaps their cache misses; interleaved with hash-map updates it
/// could not. Same result as [`add_record`] on each record in order, once
/// [`Batch::settle`] has applied what is left pending.
pub fn add_block(rules: &Rules<'_>, records: &[FlowRecord], batch: &mut Batch, s: &mut Scratch) {
    let mut judged = std::mem::take(&mut s.judged);
    judged.clear();
    judged.extend(records.iter().map(|r| judge_sides(rules, r)));
    judge_classes_block(rules, records, &mut judged, &mut s.lookups);
    for (r, j) in records.iter().zip(&judged) {
        if refused(rules, &Flow::of(r), r.exporter, r.domain, batch) {
            continue;
        }
        accumulate(
            rules,
            &Flow::of(r),
            &|src| if src { r.src } else { r.dst },
            j,
            batch,
            s,
        );
    }
    s.judged = judged;
}

/// How far ahead of its binding lookup an address's hash slot is
/// prefetched.
const PREFETCH_ADDRS: usize = 16;

/// Account index of an address whose binding may change within a block.
const VARIES: u32 = u32::MAX - 1;

/// [`add_block`] for a block as tier 1 stores it: each distinct address
/// of the block is judged once (binding over the block's time range,
/// subscriber networks, class per class-table run) and records only read
/// those answers; no rows are built. Same result as [`add_record`] on
/// each record in order, once [`Batch::settle`] has applied what is left
/// pending.
pub fn add_columns(rules: &Rules<'_>, cols: &FlowColumns, batch: &mut Batch, s: &mut Scratch) {
    let n = cols.len();
    if n == 0 {
        return;
    }
    let (t0, t1) = cols
        .first_ms
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    // One class table for the block's whole time range [t0, t1] (the
    // tables' order is the times' order): then the likely remote
    // addresses are classified right here, their trie paths prefetched
    // a few dozen addresses ahead, instead of in a batch of cold lookups
    // after the records are judged.
    let table = rules.versions.at(t0).0;
    let whole = std::ptr::eq(table, rules.versions.at(t1).0);
    let f = &mut s.facts;
    f.of.clear();
    let prefetch_class = |i: usize, near: bool| match cols.addrs.get(i) {
        Some(IpAddr::V4(a)) => table.prefetch_v4(u32::from(*a), near),
        Some(IpAddr::V6(a)) => table.prefetch_v6(u128::from(*a), near),
        None => {}
    };
    for (i, &a) in cols.addrs.iter().enumerate() {
        if let Some(&ahead) = cols.addrs.get(i + PREFETCH_ADDRS) {
            rules.bindings.prefetch(ahead);
        }
        if whole {
            prefetch_class(i + 2 * PREFETCH_ADDRS, false);
            prefetch_class(i + PREFETCH_ADDRS, true);
        }
        let account = match rules.bindings.lookup_over(a, t0, t1) {
            Some(acc) => acc.unwrap_or(NONE),
            None => VARIES,
        };
        let in_subscribers = rules.subscribers.contains(a);
        // Stamped for the block's one class run (run 1 of
        // `judge_classes_columns`), which then skips it.
        let (class, stamp) = match a {
            _ if !whole || account != NONE || in_subscribers => (0, 0),
            IpAddr::V4(a) => (table.class_of_v4(u32::from(a)), 1),
            IpAddr::V6(a) => (table.class_of_v6(u128::from(a)), 1),
        };
        f.of.push(AddrFact {
            account,
            class,
            stamp,
            in_subscribers,
        });
    }
    let mut judged = std::mem::take(&mut s.judged);
    judged.clear();
    let points: Vec<_> = cols
        .streams
        .iter()
        .map(|st| rules.points.exporter(st.exporter))
        .collect();
    for i in 0..n {
        let (src, dst) = (f.of[cols.src[i] as usize], f.of[cols.dst[i] as usize]);
        let account = |fact: AddrFact, ix: u32| match fact.account {
            VARIES => rules
                .bindings
                .lookup(cols.addrs[ix as usize], cols.first_ms[i])
                .unwrap_or(NONE),
            a => a,
        };
        let (src_acc, dst_acc) = (account(src, cols.src[i]), account(dst, cols.dst[i]));
        judged.push(Judged {
            src_acc,
            dst_acc,
            src_sub: src_acc != NONE || src.in_subscribers,
            dst_sub: dst_acc != NONE || dst.in_subscribers,
            point: points[cols.stream[i] as usize].point(
                cols.direction[i],
                cols.in_if[i],
                cols.out_if[i],
            ),
            class_out: NONE,
            class_in: NONE,
            billed_out: false,
            billed_in: false,
        });
    }
    judge_classes_columns(rules, cols, whole, &mut judged, f, &mut s.lookups);
    for (i, j) in judged.iter().enumerate() {
        let st = cols.stream_of(i);
        let sampling = u64::from(st.sampling.max(1));
        let flow = Flow {
            first_ms: cols.first_ms[i],
            last_ms: cols.last_ms[i],
            bytes: cols.bytes_raw[i].saturating_mul(sampling),
            packets: cols.packets_raw[i].saturating_mul(sampling),
        };
        if refused(rules, &flow, st.exporter, st.domain, batch) {
            continue;
        }
        // The addresses themselves only for what no account holds (most
        // records never read them: a cache miss each saved).
        let address = |src: bool| cols.addrs[if src { cols.src[i] } else { cols.dst[i] } as usize];
        accumulate(rules, &flow, &address, j, batch, s);
    }
    s.judged = judged;
}

/// [`judge_classes_block`] for columns: per run of records under the same
/// class table (`whole`: one table for the block, one run), each distinct
/// remote address is looked up once — unless [`add_columns`] already did
/// (stamped with run 1).
fn judge_classes_columns(
    rules: &Rules<'_>,
    cols: &FlowColumns,
    whole: bool,
    judged: &mut [Judged],
    f: &mut AddrFacts,
    l: &mut ClassLookups,
) {
    let remotes = |j: &Judged, i: usize| {
        [
            (j.src_sub || !j.dst_sub).then_some((cols.dst[i], Side::Out)),
            j.dst_sub.then_some((cols.src[i], Side::In)),
        ]
    };
    let (mut start, mut run) = (0, 0u32);
    while start < judged.len() {
        run += 1;
        let (table, global) = rules.versions.at(cols.first_ms[start]);
        let mut end = start + 1;
        if whole {
            end = judged.len();
        }
        while end < judged.len() && std::ptr::eq(rules.versions.at(cols.first_ms[end]).0, table) {
            end += 1;
        }
        f.clear_queue(l);
        for (i, j) in judged.iter().enumerate().take(end).skip(start) {
            for (ix, _) in remotes(j, i).into_iter().flatten() {
                f.queue_class(l, ix, cols.addrs[ix as usize], run);
            }
        }
        f.resolve_classes(l, table);
        for (i, j) in judged.iter_mut().enumerate().take(end).skip(start) {
            for (ix, side) in remotes(j, i).into_iter().flatten() {
                j.set_class(side, f.of[ix as usize].class, table, global);
            }
        }
        start = end;
    }
}

/// What [`accumulate`] needs of a record.
#[derive(Debug, Clone, Copy)]
struct Flow {
    first_ms: i64,
    last_ms: i64,
    /// Scaled by sampling ([`FlowRecord::bytes`]).
    bytes: u64,
    packets: u64,
}

impl Flow {
    #[inline]
    fn of(r: &FlowRecord) -> Flow {
        Flow {
            first_ms: r.first_ms,
            last_ms: r.last_ms,
            bytes: r.bytes(),
            packets: r.packets(),
        }
    }
}

const NONE: u32 = u32::MAX;

/// What the rules say about one record, before any aggregate is touched.
#[derive(Debug, Clone, Copy)]
pub struct Judged {
    /// Accounts holding src / dst at the record's time ([`NONE`]: nobody).
    src_acc: u32,
    dst_acc: u32,
    src_sub: bool,
    dst_sub: bool,
    point: u16,
    /// Global class id and billed flag of the `out` side (remote = dst) and
    /// of the `in` side (remote = src); unused sides are not looked up.
    class_out: u32,
    class_in: u32,
    billed_out: bool,
    billed_in: bool,
}

#[inline]
fn judge(rules: &Rules<'_>, r: &FlowRecord) -> Judged {
    let mut j = judge_sides(rules, r);
    judge_classes(rules, r, &mut j);
    j
}

/// Billing point and subscriber sides (bindings, subscriber networks).
#[inline]
fn judge_sides(rules: &Rules<'_>, r: &FlowRecord) -> Judged {
    let t = r.first_ms;
    let point = rules.points.point_of(r);
    let src_acc = rules.bindings.lookup(r.src, t);
    let dst_acc = rules.bindings.lookup(r.dst, t);
    let src_sub = src_acc.is_some() || rules.subscribers.contains(r.src);
    let dst_sub = dst_acc.is_some() || rules.subscribers.contains(r.dst);
    Judged {
        src_acc: src_acc.unwrap_or(NONE),
        dst_acc: dst_acc.unwrap_or(NONE),
        src_sub,
        dst_sub,
        point,
        class_out: NONE,
        class_in: NONE,
        billed_out: false,
        billed_in: false,
    }
}

/// The class of the remote address of each side that exists.
#[inline]
fn judge_classes(rules: &Rules<'_>, r: &FlowRecord, j: &mut Judged) {
    let (table, global) = rules.versions.at(r.first_ms);
    for (remote, side) in j.remotes(r).into_iter().flatten() {
        j.set_class(side, table.class_of(remote), table, global);
    }
}

impl Judged {
    /// The remote addresses whose class the record needs: dst for the out
    /// side (src is a subscriber, or neither is: transit), src for the in
    /// side (dst is a subscriber).
    #[inline]
    fn remotes(&self, r: &FlowRecord) -> [Option<(IpAddr, Side)>; 2] {
        [
            (self.src_sub || !self.dst_sub).then_some((r.dst, Side::Out)),
            self.dst_sub.then_some((r.src, Side::In)),
        ]
    }

    /// `side` has class index `ci` of `table`: its global class, and
    /// whether it is billed (a billing point, and the class counts the
    /// direction).
    #[inline]
    fn set_class(&mut self, side: Side, ci: u32, table: &ClassTable, global: &[u32]) {
        let dir = match side {
            Side::Out if self.src_sub => Dir::Out,
            Side::Out => Dir::Transit,
            Side::In => Dir::In,
        };
        let class = global[ci as usize];
        let billed = self.point != 0 && dir.counted_by(table.classes[ci as usize].count);
        match side {
            Side::Out => (self.class_out, self.billed_out) = (class, billed),
            Side::In => (self.class_in, self.billed_in) = (class, billed),
        }
    }
}

/// [`judge_classes`] for a block: per run of records under the same class
/// table, every remote address looked up in one batch
/// ([`ClassTable::classes_of_v4`]), whose lookups overlap in memory.
fn judge_classes_block(
    rules: &Rules<'_>,
    records: &[FlowRecord],
    judged: &mut [Judged],
    l: &mut ClassLookups,
) {
    let mut start = 0;
    while start < records.len() {
        let (table, global) = rules.versions.at(records[start].first_ms);
        let mut end = start + 1;
        while end < records.len() && std::ptr::eq(rules.versions.at(records[end].first_ms).0, table)
        {
            end += 1;
        }
        l.at4.clear();
        l.keys4.clear();
        l.at6.clear();
        l.keys6.clear();
        for (i, (r, j)) in records[start..end]
            .iter()
            .zip(&judged[start..end])
            .enumerate()
        {
            let i = (start + i) as u32;
            for (remote, side) in j.remotes(r).into_iter().flatten() {
                match remote {
                    IpAddr::V4(a) => {
                        l.at4.push((i, side));
                        l.keys4.push(u32::from(a));
                    }
                    IpAddr::V6(a) => {
                        l.at6.push((i, side));
                        l.keys6.push(u128::from(a));
                    }
                }
            }
        }
        table.classes_of_v4(&l.keys4, &mut l.res4);
        table.classes_of_v6(&l.keys6, &mut l.res6);
        let found = l.at4.iter().zip(&l.res4).chain(l.at6.iter().zip(&l.res6));
        for (&(i, side), &ci) in found {
            judged[i as usize].set_class(side, ci.unwrap_or(table.default), table, global);
        }
        start = end;
    }
}

/// Whether `r` must not be aggregated: counters beyond what one record
/// can carry ([`IMPLAUSIBLE`]) or a start before what tier 2 keeps
/// ([`STALE`]); if so it is counted in `batch` as a loss of its exporter.
#[inline(always)]
fn refused(rules: &Rules<'_>, r: &Flow, exporter: IpAddr, domain: u32, batch: &mut Batch) -> bool {
    // Nearly every record: plausible and starting inside what tier 2
    // keeps (a record's counted start is never before its first_ms).
    if plausible(r.bytes, r.packets) && r.first_ms >= rules.stale_before_ms {
        return false;
    }
    refused_slow(rules, r, exporter, domain, batch)
}

/// [`refused`] past its fast path: the exact test, the loss counted.
#[cold]
#[inline(never)]
fn refused_slow(
    rules: &Rules<'_>,
    r: &Flow,
    exporter: IpAddr,
    domain: u32,
    batch: &mut Batch,
) -> bool {
    if rules.takes(r.first_ms, r.last_ms, r.bytes, r.packets) {
        return false;
    }
    batch.stats.records += 1;
    let (reason, bucket_ms) = if plausible(r.bytes, r.packets) {
        batch.stats.stale_records += 1;
        (STALE, rules.stale_loss_bucket_ms)
    } else {
        batch.stats.implausible_records += 1;
        (IMPLAUSIBLE, bucket_of(r.first_ms, rules.bucket_ms))
    };
    *batch
        .losses
        .entry(LossKey {
            bucket_ms,
            exporter,
            domain,
            reason,
            unit: "records",
        })
        .or_default() += 1;
    true
}

#[inline]
/// Adds the record `r` judged `j` to `batch`; `address(true)` is its
/// source address, `address(false)` its destination.
fn accumulate(
    rules: &Rules<'_>,
    r: &Flow,
    address: &dyn Fn(bool) -> IpAddr,
    j: &Judged,
    batch: &mut Batch,
    s: &mut Scratch,
) {
    let bytes = r.bytes;
    let packets = r.packets;
    batch.stats.records += 1;
    batch.stats.bytes = batch.stats.bytes.saturating_add(bytes);
    if j.point == 0 {
        batch.stats.unbilled_records += 1;
    }
    if let Some(b) = single_bucket(r.first_ms, r.last_ms, rules.bucket_ms, &mut s.hint) {
        // The common case, without the lists' arithmetic (the overlap is
        // not needed when nothing is split).
        s.cover.clear();
        s.cover.push((b, 0));
        s.bytes.clear();
        s.bytes.push(bytes);
        s.packets.clear();
        s.packets.push(packets);
    } else {
        if cover_hinted(
            r.first_ms,
            r.last_ms,
            rules.bucket_ms,
            &mut s.hint,
            &mut s.cover,
        ) {
            batch.stats.clamped_records += 1;
        }
        split(bytes, &s.cover, &mut s.bytes);
        split(packets, &s.cover, &mut s.packets);
        if s.cover.len() > 1 {
            batch.stats.split_records += 1;
        }
    }
    let hour = s.hour_hint.bucket_of(s.cover[0].0, HOUR_MS);
    if batch.hours.last() != Some(&hour) && !batch.hours.contains(&hour) {
        batch.hours.push(hour);
    }
    if s.cover.len() > 1 {
        let last = s.hour_hint.bucket_of(s.cover[s.cover.len() - 1].0, HOUR_MS);
        if !batch.hours.contains(&last) {
            batch.hours.push(last);
        }
    }

    if (j.src_sub && j.src_acc == NONE) || (j.dst_sub && j.dst_acc == NONE) {
        batch.stats.unattributed_records += 1;
    }
    if !j.src_sub && !j.dst_sub {
        batch.stats.transit_records += 1;
    }
    let point = j.point;
    let mut side = |src: bool, account: u32, dir: Dir, class: u32, billed: bool| {
        if account != NONE {
            for (i, &(bucket_ms, _)) in s.cover.iter().enumerate() {
                let combo = Combo {
                    bucket_ms,
                    class,
                    dir,
                    point,
                    billed,
                };
                let counts = Counts {
                    bytes: s.bytes[i],
                    packets: s.packets[i],
                    flows: u64::from(i == 0),
                };
                batch.add_traffic(account, combo, counts);
            }
        } else {
            for (i, &(bucket_ms, _)) in s.cover.iter().enumerate() {
                batch
                    .unattributed
                    .entry(UnattributedKey {
                        bucket_ms,
                        address: address(src),
                        class,
                        dir,
                        point,
                    })
                    .or_default()
                    .add(s.bytes[i], s.packets[i], u64::from(i == 0));
            }
        }
    };
    if j.src_sub {
        side(true, j.src_acc, Dir::Out, j.class_out, j.billed_out);
    }
    if j.dst_sub {
        side(false, j.dst_acc, Dir::In, j.class_in, j.billed_in);
    }
    if !j.src_sub && !j.dst_sub {
        side(true, NONE, Dir::Transit, j.class_out, false);
    }
}

/// Adds the parts of `r` that fall in the hour starting at `hour_ms` to
/// the per-(account, remote host, class) sums of that hour. Same rules as
/// [`add_record`]: only sides held by an account have host detail.
/// `hosts` holds at most `cap` pairs; beyond that, new hosts are summed per
/// account into `overflow` (sums stay exact; only the ranking could miss a
/// host that first appears after the cap was reached).
pub fn add_hosts(
    rules: &Rules<'_>,
    r: &FlowRecord,
    hour_ms: i64,
    hosts: &mut FastMap<HostKey, HostCounts>,
    overflow: &mut FastMap<u32, HostCounts>,
    cap: usize,
    s: &mut Scratch,
) {
    if !rules.takes(r.first_ms, r.last_ms, r.bytes(), r.packets()) {
        return;
    }
    let part = part_in_hour(
        (r.first_ms, r.last_ms, r.bytes()),
        hour_ms,
        rules.bucket_ms,
        &mut s.hint,
        &mut s.cover,
        &mut s.bytes,
    );
    let Some((bytes, starts)) = part else {
        return;
    };
    let t = r.first_ms;
    let src_acc = rules.bindings.lookup(r.src, t);
    let dst_acc = rules.bindings.lookup(r.dst, t);
    let (table, global) = rules.versions.at(t);
    let mut side = |account: u32, dir: Dir, remote: IpAddr| {
        let key = HostKey {
            account,
            remote,
            class: global[table.class_of(remote) as usize],
        };
        add_host(hosts, overflow, cap, key, dir, bytes, starts);
    };
    if let Some(a) = src_acc {
        side(a, Dir::Out, r.dst);
    }
    if let Some(a) = dst_acc {
        side(a, Dir::In, r.src);
    }
}

/// The bytes of a flow (`first_ms`, `last_ms`, `total`) that fall in the
/// hour starting at `hour_ms` (split over buckets as [`accumulate`]
/// splits them), and whether the flow starts in that hour (where it is
/// counted as one flow); `None` when none of it does. `cover` and `parts`
/// are scratch.
#[inline]
fn part_in_hour(
    (first_ms, last_ms, total): (i64, i64, u64),
    hour_ms: i64,
    bucket_ms: i64,
    hint: &mut BucketHint,
    cover: &mut Vec<(i64, i64)>,
    parts: &mut Vec<u64>,
) -> Option<(u64, bool)> {
    if let Some(b) = single_bucket(first_ms, last_ms, bucket_ms, hint) {
        return (bucket_of(b, HOUR_MS) == hour_ms).then_some((total, true));
    }
    cover_hinted(first_ms, last_ms, bucket_ms, hint, cover);
    let first_hour = bucket_of(cover[0].0, HOUR_MS);
    let last_hour = bucket_of(cover[cover.len() - 1].0, HOUR_MS);
    if hour_ms < first_hour || hour_ms > last_hour {
        return None;
    }
    split(total, cover, parts);
    let in_hour = cover
        .iter()
        .zip(parts.iter())
        .filter(|((b, _), _)| bucket_of(*b, HOUR_MS) == hour_ms)
        .map(|(_, &b)| b)
        .sum();
    Some((in_hour, first_hour == hour_ms))
}

/// One side of a record in an hour's host detail: `bytes` (its part in
/// the hour) to the pair `key`, or to the account's overflow sum once
/// `hosts` holds `cap` pairs; `starts` counts the flow (in the hour it
/// starts in, once).
#[inline]
fn add_host(
    hosts: &mut FastMap<HostKey, HostCounts>,
    overflow: &mut FastMap<u32, HostCounts>,
    cap: usize,
    key: HostKey,
    dir: Dir,
    bytes: u64,
    starts: bool,
) {
    let h = if hosts.len() < cap || hosts.contains_key(&key) {
        hosts.entry(key).or_default()
    } else {
        overflow.entry(key.account).or_default()
    };
    let sum = match dir {
        Dir::In => &mut h.bytes_in,
        _ => &mut h.bytes_out,
    };
    *sum = sum.saturating_add(bytes);
    h.flows += u64::from(starts);
}

/// A record of a block with a part in the pass's hour and an account on
/// at least one side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InHour {
    record: u32,
    src_acc: u32,
    dst_acc: u32,
    /// Bytes (scaled by sampling) in the hour.
    bytes: u64,
    /// The flow starts in the hour (counts it).
    starts: bool,
}

/// [`add_hosts`] for a block as tier 1 stores it, the way [`add_columns`]
/// reads one: the block skipped when its time misses the hour; each
/// distinct address's binding judged once over the block's time range;
/// the remote addresses that need a class looked up in one batch. Same
/// result as [`add_hosts`] on each record in order.
pub fn add_hosts_columns(
    rules: &Rules<'_>,
    cols: &FlowColumns,
    hour_ms: i64,
    hosts: &mut FastMap<HostKey, HostCounts>,
    overflow: &mut FastMap<u32, HostCounts>,
    cap: usize,
    s: &mut Scratch,
) {
    let n = cols.len();
    if n == 0 {
        return;
    }
    let (mut t0, mut t1, mut end) = (i64::MAX, i64::MIN, i64::MIN);
    for (&first, &last) in cols.first_ms.iter().zip(&cols.last_ms) {
        t0 = t0.min(first);
        t1 = t1.max(first);
        end = end.max(last);
    }
    // A record's hours lie between the hour of its start (later when a
    // too-long flow is clamped) and the hour of its end.
    if bucket_of(t0, HOUR_MS) > hour_ms || end.max(t1) < hour_ms {
        return;
    }
    let (table, global) = rules.versions.at(t0);
    let whole = std::ptr::eq(table, rules.versions.at(t1).0);
    let f = &mut s.facts;
    f.of.clear();
    for (i, &a) in cols.addrs.iter().enumerate() {
        if let Some(&ahead) = cols.addrs.get(i + PREFETCH_ADDRS) {
            rules.bindings.prefetch(ahead);
        }
        let account = match rules.bindings.lookup_over(a, t0, t1) {
            Some(acc) => acc.unwrap_or(NONE),
            None => VARIES,
        };
        f.of.push(AddrFact {
            account,
            class: 0,
            stamp: 0,
            in_subscribers: false,
        });
    }
    let l = &mut s.lookups;
    f.clear_queue(l);
    let mut todo = std::mem::take(&mut s.in_hour);
    todo.clear();
    for i in 0..n {
        let (first, last) = (cols.first_ms[i], cols.last_ms[i]);
        let account = |ix: u32| match f.of[ix as usize].account {
            VARIES => rules
                .bindings
                .lookup(cols.addrs[ix as usize], first)
                .unwrap_or(NONE),
            a => a,
        };
        let (src_acc, dst_acc) = (account(cols.src[i]), account(cols.dst[i]));
        if src_acc == NONE && dst_acc == NONE {
            continue;
        }
        let sampling = u64::from(cols.stream_of(i).sampling.max(1));
        let total = cols.bytes_raw[i].saturating_mul(sampling);
        if !rules.takes(
            first,
            last,
            total,
            cols.packets_raw[i].saturating_mul(sampling),
        ) {
            continue;
        }
        let part = part_in_hour(
            (first, last, total),
            hour_ms,
            rules.bucket_ms,
            &mut s.hint,
            &mut s.cover,
            &mut s.bytes,
        );
        let Some((bytes, starts)) = part else {
            continue;
        };
        todo.push(InHour {
            record: i as u32,
            src_acc,
            dst_acc,
            bytes,
            starts,
        });
        if !whole {
            continue;
        }
        // The remotes of the bound sides, each address queued once.
        let remotes = [
            (src_acc != NONE).then_some(cols.dst[i]),
            (dst_acc != NONE).then_some(cols.src[i]),
        ];
        for ix in remotes.into_iter().flatten() {
            f.queue_class(l, ix, cols.addrs[ix as usize], 1);
        }
    }
    if whole {
        f.resolve_classes(l, table);
    }
    for h in &todo {
        let i = h.record as usize;
        let class = |ix: u32| {
            if whole {
                global[f.of[ix as usize].class as usize]
            } else {
                let (table, global) = rules.versions.at(cols.first_ms[i]);
                global[table.class_of(cols.addrs[ix as usize]) as usize]
            }
        };
        let mut side = |account: u32, dir: Dir, remote: u32| {
            let key = HostKey {
                account,
                remote: cols.addrs[remote as usize],
                class: class(remote),
            };
            add_host(hosts, overflow, cap, key, dir, h.bytes, h.starts);
        };
        if h.src_acc != NONE {
            side(h.src_acc, Dir::Out, cols.dst[i]);
        }
        if h.dst_acc != NONE {
            side(h.dst_acc, Dir::In, cols.src[i]);
        }
    }
    s.in_hour = todo;
}

/// Adds one loss record (its count) to `batch`, by the bucket of its start.
pub fn add_loss(bucket_ms: i64, l: &LossRecord, batch: &mut Batch) {
    batch.stats.loss_records += 1;
    *batch
        .losses
        .entry(LossKey {
            bucket_ms: bucket_of(l.from_ms, bucket_ms),
            exporter: l.exporter,
            domain: l.domain,
            reason: l.reason.as_str(),
            unit: l.unit.as_str(),
        })
        .or_default() += l.count;
}

#[cfg(test)]
mod tests;
