//! Sequence tracking of one export stream (exporter, domain, kind): turns
//! skipped sequence numbers into [`LossRecord`]s.
//!
//! Inputs: each datagram's sequence number, its span in sequence units
//! (v5: flows in it; IPFIX: data records in it; v9: always 1 packet), its
//! record count (for duplicate detection), the exporter's uptime (v5, v9)
//! and the arrival time.
//! Outputs: gaps (held for a reorder window, shrunk or split by late
//! arrivals, then emitted), resets, counters of reordered and duplicate
//! datagrams.
//! Never: holds more than [`MAX_PENDING_GAPS`] gaps per stream; emits a
//! gap before its hold time unless the bound forces it.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::stats::DecodeStats;
use crate::record::{LossReason, LossRecord, LossUnit, SourceKind};

/// Pending (not yet final) gaps per stream; the oldest is emitted at once
/// when another would exceed it.
pub(crate) const MAX_PENDING_GAPS: usize = 64;
/// How far behind the expected number a datagram may be and still count
/// as late rather than as an exporter reset (v5, IPFIX: flows).
pub(crate) const REORDER_WINDOW_FLOWS: u32 = 10_000;
/// Same for v9, whose sequence counts export packets.
pub(crate) const REORDER_WINDOW_PACKETS: u32 = 1_000;
/// An uptime this much lower than the last one means the exporter
/// rebooted (smaller steps back are late datagrams).
pub(crate) const UPTIME_BACK_RESET_MS: u32 = 10_000;
/// A forward jump faster than this (plus one second of slack) since the
/// last datagram is not a gap but a restart with a new sequence base.
pub(crate) const MAX_FLOWS_PER_S: u64 = 1_000_000;
pub(crate) const MAX_PACKETS_PER_S: u64 = 100_000;
/// (sequence, count) pairs remembered for duplicate detection.
pub(crate) const RECENT_DATAGRAMS: usize = 32;
/// Consecutive, contiguous late datagrams that fill no gap: the exporter
/// restarted its numbering a little behind the old position.
pub(crate) const STRAY_RUN_RESET: u32 = 4;

/// What identifies a datagram for duplicate detection: its sequence
/// number, record count (0 = never a duplicate) and a stamp (v5/v9 header
/// uptime, IPFIX export time): a true duplicate repeats all three.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DupKey {
    pub seq: u32,
    pub count: u32,
    pub stamp: u32,
}

/// What a datagram was, relative to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    First,
    InOrder,
    Gap,
    Late,
    /// Previous datagram's span was unknown: no gap check possible.
    Resync,
    Reset,
}

#[derive(Debug, Clone, Copy)]
struct Gap {
    start: u32,
    len: u32,
    from_ms: i64,
    to_ms: i64,
    opened_ms: i64,
}

#[derive(Debug)]
struct State {
    /// Next expected sequence number; `None` when the last datagram's span
    /// was unknown (IPFIX data whose template had not arrived).
    expected: Option<u32>,
    last_uptime_ms: Option<u32>,
    last_arrival_ms: i64,
    gaps: VecDeque<Gap>,
    recent: [DupKey; RECENT_DATAGRAMS],
    recent_next: usize,
    /// Late datagrams that filled no gap: (next sequence, run length).
    stray: Option<(u32, u32)>,
}

impl State {
    fn new(seq: u32, span: Option<u32>, uptime_ms: Option<u32>, now_ms: i64) -> State {
        State {
            expected: span.map(|s| seq.wrapping_add(s)),
            last_uptime_ms: uptime_ms,
            last_arrival_ms: now_ms,
            gaps: VecDeque::new(),
            recent: [DupKey::default(); RECENT_DATAGRAMS],
            recent_next: 0,
            stray: None,
        }
    }

    fn remember(&mut self, key: DupKey) {
        if key.count == 0 {
            return;
        }
        if let Some(slot) = self.recent.get_mut(self.recent_next) {
            *slot = key;
        }
        self.recent_next = (self.recent_next + 1) % RECENT_DATAGRAMS;
    }
}

/// What a stream's sequence state must carry across a collector restart,
/// so that the hole the restart caused (datagrams that arrived while it was
/// down, or were received but not yet written) becomes a loss record. The
/// collector writes these into tier 1 behind the data they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqCheckpoint {
    pub exporter: IpAddr,
    pub domain: u32,
    pub kind: SourceKind,
    /// Next expected sequence number.
    pub expected: u32,
    pub last_arrival_ms: i64,
    pub last_uptime_ms: Option<u32>,
    /// Holes seen but not yet final (inside the reorder window):
    /// `(first missing sequence, how many, from_ms, to_ms)`.
    pub gaps: Vec<(u32, u32, i64, i64)>,
    /// The exporter's IPFIX numbering, once learned (`expected` is in the
    /// RFC form).
    pub convention: Option<SeqConvention>,
}

/// How an IPFIX exporter numbers its messages. RFC 7011 §3.1: the sequence
/// number counts all data records (options data records included) sent
/// *before* this message. Exporters in the field deviate: softflowd 1.1.0
/// counts the records *up to and including* this message and leaves out
/// options data records; nfcapd reports such a stream as full of sequence
/// errors. kopek learns the convention from the first two datagrams that
/// agree with one exactly, then converts every sequence number to the RFC
/// form, so neither false gaps nor missed ones come from the exporter's
/// dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqConvention {
    /// The number includes this message's records.
    pub inclusive: bool,
    /// Options data records are not counted.
    pub data_only: bool,
}

impl SeqConvention {
    pub const RFC: SeqConvention = SeqConvention {
        inclusive: false,
        data_only: false,
    };

    /// Candidates in order of preference (the RFC first).
    const ALL: [SeqConvention; 4] = [
        SeqConvention::RFC,
        SeqConvention {
            inclusive: false,
            data_only: true,
        },
        SeqConvention {
            inclusive: true,
            data_only: false,
        },
        SeqConvention {
            inclusive: true,
            data_only: true,
        },
    ];

    fn span(self, all: u32, data: u32) -> u32 {
        if self.data_only { data } else { all }
    }

    /// The RFC-form sequence number of a message numbered this way.
    fn normalize(self, seq: u32, all: u32, data: u32) -> u32 {
        if self.inclusive {
            seq.wrapping_sub(self.span(all, data))
        } else {
            seq
        }
    }

    pub fn to_byte(self) -> u8 {
        u8::from(self.inclusive) | (u8::from(self.data_only) << 1)
    }

    pub fn from_byte(b: u8) -> SeqConvention {
        SeqConvention {
            inclusive: b & 1 != 0,
            data_only: b & 2 != 0,
        }
    }
}

const ALL_CANDIDATES: u8 = 0b1111;

/// Sequence state of one stream.
#[derive(Debug)]
pub(crate) struct SeqTracker {
    exporter: IpAddr,
    domain: u32,
    kind: SourceKind,
    unit: LossUnit,
    window: u32,
    max_rate_per_s: u64,
    state: Option<State>,
    /// IPFIX numbering convention, once learned.
    convention: Option<SeqConvention>,
    /// Previous IPFIX datagram as numbered by the exporter: (seq, all
    /// records, data records only); for learning the convention.
    last_raw: Option<(u32, u32, u32)>,
    /// Conventions (bits over `SeqConvention::ALL`) every message pair so
    /// far agreed with; the convention is learned when one is left.
    candidates: u8,
    /// The convention sequence numbers are converted with right now: the
    /// learned one, or until then the most preferred still possible.
    in_use: SeqConvention,
}

impl SeqTracker {
    pub(crate) fn new(exporter: IpAddr, domain: u32, kind: SourceKind) -> SeqTracker {
        let (unit, window, max_rate_per_s) = match kind {
            SourceKind::NetflowV9 => (LossUnit::Packets, REORDER_WINDOW_PACKETS, MAX_PACKETS_PER_S),
            _ => (LossUnit::Flows, REORDER_WINDOW_FLOWS, MAX_FLOWS_PER_S),
        };
        SeqTracker {
            exporter,
            domain,
            kind,
            unit,
            window,
            max_rate_per_s,
            state: None,
            convention: None,
            last_raw: None,
            candidates: ALL_CANDIDATES,
            in_use: SeqConvention::RFC,
        }
    }

    fn preferred(&self) -> SeqConvention {
        self.convention.unwrap_or_else(|| {
            if self.candidates == 0 {
                SeqConvention::RFC
            } else {
                SeqConvention::ALL[self.candidates.trailing_zeros() as usize]
            }
        })
    }

    /// Accounts one IPFIX message: learns the exporter's numbering
    /// convention, converts `seq` to the RFC form and observes it.
    /// `records`: `(all data records, without options data records)`, or
    /// `None` when some set's template is unknown.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe_ipfix(
        &mut self,
        seq: u32,
        records: Option<(u32, u32)>,
        key: DupKey,
        now_ms: i64,
        losses: &mut Vec<LossRecord>,
        stats: &mut DecodeStats,
    ) -> Verdict {
        let Some((all, data)) = records else {
            self.last_raw = None;
            let inclusive = self.convention.is_some_and(|c| c.inclusive);
            if let (true, Some(st)) = (inclusive, self.state.as_mut()) {
                // The span is unknown, so an inclusive number cannot be
                // converted: no check for this message, resync on the next.
                st.expected = None;
                st.last_arrival_ms = now_ms;
                st.remember(key);
                return Verdict::Resync;
            }
            return self.observe(seq, None, key, None, now_ms, losses, stats);
        };
        if self.convention.is_none()
            && let Some((prev_seq, prev_all, prev_data)) = self.last_raw
        {
            let mut matching = 0u8;
            for (i, c) in SeqConvention::ALL.into_iter().enumerate() {
                let span = if c.inclusive {
                    c.span(all, data)
                } else {
                    c.span(prev_all, prev_data)
                };
                if prev_seq.wrapping_add(span) == seq {
                    matching |= 1 << i;
                }
            }
            // A pair that fits none (a real hole, a reset) teaches nothing.
            if matching != 0 {
                self.candidates = if self.candidates & matching != 0 {
                    self.candidates & matching
                } else {
                    matching
                };
            }
            if self.candidates.count_ones() == 1 {
                let c = SeqConvention::ALL[self.candidates.trailing_zeros() as usize];
                self.convention = Some(c);
                if c != SeqConvention::RFC {
                    stats.sequence_dialects += 1;
                }
            }
            // The convention in use changed: restate the previous message
            // in it, so the expected number is in the same form.
            let now_pref = self.preferred();
            if now_pref != self.in_use {
                self.in_use = now_pref;
                if let Some(st) = self.state.as_mut() {
                    let prev = now_pref.normalize(prev_seq, prev_all, prev_data);
                    st.expected = Some(prev.wrapping_add(now_pref.span(prev_all, prev_data)));
                }
            }
        }
        self.last_raw = Some((seq, all, data));
        let conv = self.in_use;
        let span = conv.span(all, data);
        let normalized = conv.normalize(seq, all, data);
        self.observe(normalized, Some(span), key, None, now_ms, losses, stats)
    }

    /// The state to persist; `None` before the first datagram or while the
    /// next sequence number is unknown.
    pub(crate) fn checkpoint(&self) -> Option<SeqCheckpoint> {
        let st = self.state.as_ref()?;
        Some(SeqCheckpoint {
            exporter: self.exporter,
            domain: self.domain,
            kind: self.kind,
            expected: st.expected?,
            last_arrival_ms: st.last_arrival_ms,
            last_uptime_ms: st.last_uptime_ms,
            gaps: st
                .gaps
                .iter()
                .map(|g| (g.start, g.len, g.from_ms, g.to_ms))
                .collect(),
            convention: self.convention,
        })
    }

    /// Continues from a persisted state (collector restart). Restored gaps
    /// get a fresh reorder window from `now_ms`.
    pub(crate) fn restore(&mut self, cp: &SeqCheckpoint, now_ms: i64) {
        let mut st = State::new(cp.expected, Some(0), cp.last_uptime_ms, cp.last_arrival_ms);
        st.gaps = cp
            .gaps
            .iter()
            .take(MAX_PENDING_GAPS)
            .map(|&(start, len, from_ms, to_ms)| Gap {
                start,
                len,
                from_ms,
                to_ms,
                opened_ms: now_ms,
            })
            .collect();
        self.state = Some(st);
        self.convention = cp.convention;
        self.last_raw = None;
        self.candidates = ALL_CANDIDATES;
        self.in_use = self.preferred();
    }

    /// Same sequence number, record count and stamp as a recent datagram.
    pub(crate) fn is_duplicate(&self, key: DupKey) -> bool {
        let Some(st) = &self.state else { return false };
        // Every slot is compared, without an early exit, so that the loop
        // runs as vector compares: a slot never filled has a count of 0,
        // which no key that can be a duplicate has.
        key.count > 0
            && st.recent.iter().fold(false, |hit, r| {
                hit | ((r.seq == key.seq) & (r.count == key.count) & (r.stamp == key.stamp))
            })
    }

    /// Pending gaps (for tests and gauges).
    #[cfg(test)]
    pub(crate) fn pending_gaps(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.gaps.len())
    }

    /// Accounts one datagram. `span`: sequence units it covers (`None` if
    /// unknown); `key`: what identifies it for duplicate detection.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &mut self,
        seq: u32,
        span: Option<u32>,
        key: DupKey,
        uptime_ms: Option<u32>,
        now_ms: i64,
        losses: &mut Vec<LossRecord>,
        stats: &mut DecodeStats,
    ) -> Verdict {
        let Some(st) = self.state.as_mut() else {
            let mut st = State::new(seq, span, uptime_ms, now_ms);
            st.remember(key);
            self.state = Some(st);
            return Verdict::First;
        };
        if let (Some(prev), Some(up)) = (st.last_uptime_ms, uptime_ms) {
            let back = prev.wrapping_sub(up);
            if back > UPTIME_BACK_RESET_MS && back < 1 << 31 {
                return self.reset(seq, span, key, uptime_ms, now_ms, losses, stats);
            }
        }
        let Some(expected) = st.expected else {
            st.expected = span.map(|s| seq.wrapping_add(s));
            st.last_arrival_ms = now_ms;
            st.last_uptime_ms = uptime_ms;
            st.stray = None;
            st.remember(key);
            return Verdict::Resync;
        };
        let ahead = seq.wrapping_sub(expected);
        let verdict = if ahead == 0 {
            Verdict::InOrder
        } else if ahead < 1 << 31 {
            let elapsed_ms = u64::try_from(now_ms - st.last_arrival_ms).unwrap_or(0);
            let plausible = elapsed_ms
                .saturating_add(1000)
                .saturating_mul(self.max_rate_per_s)
                / 1000;
            if u64::from(ahead) > plausible {
                return self.reset(seq, span, key, uptime_ms, now_ms, losses, stats);
            }
            let gap = Gap {
                start: expected,
                len: ahead,
                from_ms: st.last_arrival_ms,
                to_ms: now_ms,
                opened_ms: now_ms,
            };
            st.gaps.push_back(gap);
            Verdict::Gap
        } else {
            let back = expected.wrapping_sub(seq);
            if back > self.window {
                return self.reset(seq, span, key, uptime_ms, now_ms, losses, stats);
            }
            stats.reordered += 1;
            let filled = span.is_some_and(|s| fill(&mut st.gaps, seq, s));
            if filled {
                st.stray = None;
            } else {
                let run = match st.stray {
                    Some((next, run)) if next == seq => run + 1,
                    _ => 1,
                };
                st.stray = Some((seq.wrapping_add(span.unwrap_or(0)), run));
                if run >= STRAY_RUN_RESET {
                    return self.reset(seq, span, key, uptime_ms, now_ms, losses, stats);
                }
            }
            st.remember(key);
            self.bound_gaps(losses, stats);
            return Verdict::Late;
        };
        st.expected = span.map(|s| seq.wrapping_add(s));
        st.last_arrival_ms = now_ms;
        st.last_uptime_ms = uptime_ms;
        st.stray = None;
        st.remember(key);
        self.bound_gaps(losses, stats);
        verdict
    }

    /// Emits gaps older than `hold_ms`.
    pub(crate) fn tick(
        &mut self,
        now_ms: i64,
        hold_ms: i64,
        losses: &mut Vec<LossRecord>,
        stats: &mut DecodeStats,
    ) {
        let Some(st) = self.state.as_mut() else {
            return;
        };
        if st.gaps.is_empty() {
            return;
        }
        let mut keep = VecDeque::new();
        for g in std::mem::take(&mut st.gaps) {
            if now_ms.saturating_sub(g.opened_ms) >= hold_ms {
                losses.push(self.gap_loss(&g, stats));
            } else {
                keep.push_back(g);
            }
        }
        if let Some(st) = self.state.as_mut() {
            st.gaps = keep;
        }
    }

    /// Emits every pending gap now (stream evicted).
    pub(crate) fn flush(&mut self, losses: &mut Vec<LossRecord>, stats: &mut DecodeStats) {
        let gaps = self
            .state
            .as_mut()
            .map(|st| std::mem::take(&mut st.gaps))
            .unwrap_or_default();
        for g in gaps {
            losses.push(self.gap_loss(&g, stats));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reset(
        &mut self,
        seq: u32,
        span: Option<u32>,
        key: DupKey,
        uptime_ms: Option<u32>,
        now_ms: i64,
        losses: &mut Vec<LossRecord>,
        stats: &mut DecodeStats,
    ) -> Verdict {
        self.flush(losses, stats);
        let (from_ms, expected) = self.state.as_ref().map_or((now_ms, seq), |s| {
            (s.last_arrival_ms, s.expected.unwrap_or(seq))
        });
        losses.push(LossRecord {
            exporter: self.exporter,
            domain: self.domain,
            kind: self.kind,
            reason: LossReason::Reset,
            unit: self.unit,
            count: 0,
            from_ms,
            to_ms: now_ms,
            expected_seq: expected,
            received_seq: seq,
        });
        stats.resets += 1;
        let mut st = State::new(seq, span, uptime_ms, now_ms);
        st.remember(key);
        self.state = Some(st);
        Verdict::Reset
    }

    fn bound_gaps(&mut self, losses: &mut Vec<LossRecord>, stats: &mut DecodeStats) {
        while let Some(st) = self.state.as_mut() {
            if st.gaps.len() <= MAX_PENDING_GAPS {
                break;
            }
            let Some(g) = st.gaps.pop_front() else { break };
            losses.push(self.gap_loss(&g, stats));
        }
    }

    fn gap_loss(&self, g: &Gap, stats: &mut DecodeStats) -> LossRecord {
        stats.gaps += 1;
        match self.unit {
            LossUnit::Flows => stats.lost_flows += u64::from(g.len),
            LossUnit::Packets => stats.lost_packets += u64::from(g.len),
        }
        LossRecord {
            exporter: self.exporter,
            domain: self.domain,
            kind: self.kind,
            reason: LossReason::Gap,
            unit: self.unit,
            count: u64::from(g.len),
            from_ms: g.from_ms,
            to_ms: g.to_ms,
            expected_seq: g.start,
            received_seq: g.start.wrapping_add(g.len),
        }
    }
}

/// Removes `[seq, seq + span)` from the pending gaps (shrinking or
/// splitting them). Returns whether any gap was touched.
fn fill(gaps: &mut VecDeque<Gap>, seq: u32, span: u32) -> bool {
    if span == 0 {
        return false;
    }
    let mut touched = false;
    let mut i = 0;
    while let Some(g) = gaps.get(i).copied() {
        let a = i64::from(seq.wrapping_sub(g.start) as i32);
        let b = a + i64::from(span);
        let len = i64::from(g.len);
        let lo = a.max(0);
        let hi = b.min(len);
        if lo >= hi {
            i += 1;
            continue;
        }
        touched = true;
        gaps.remove(i);
        let mut pieces = 0;
        if lo > 0 {
            gaps.insert(
                i,
                Gap {
                    len: lo as u32,
                    ..g
                },
            );
            pieces += 1;
        }
        if hi < len {
            let right = Gap {
                start: g.start.wrapping_add(hi as u32),
                len: (len - hi) as u32,
                ..g
            };
            gaps.insert(i + pieces, right);
            pieces += 1;
        }
        i += pieces;
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn k(seq: u32, count: u32) -> DupKey {
        DupKey {
            seq,
            count,
            stamp: 0,
        }
    }

    fn tracker(kind: SourceKind) -> SeqTracker {
        SeqTracker::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 7, kind)
    }

    struct Run {
        t: SeqTracker,
        losses: Vec<LossRecord>,
        stats: DecodeStats,
    }

    impl Run {
        fn new(kind: SourceKind) -> Run {
            Run {
                t: tracker(kind),
                losses: Vec::new(),
                stats: DecodeStats::default(),
            }
        }
        fn v5(&mut self, seq: u32, count: u32, uptime: u32, now: i64) -> Verdict {
            self.t.observe(
                seq,
                Some(count),
                k(seq, count),
                Some(uptime),
                now,
                &mut self.losses,
                &mut self.stats,
            )
        }
        fn tick(&mut self, now: i64) {
            self.t.tick(now, 2_000, &mut self.losses, &mut self.stats);
        }
    }

    #[test]
    fn in_order_stream_has_no_losses() {
        let mut r = Run::new(SourceKind::NetflowV5);
        assert_eq!(r.v5(u32::MAX - 10, 30, 1000, 0), Verdict::First);
        // Sequence wraps.
        assert_eq!(r.v5(19, 30, 1010, 10), Verdict::InOrder);
        assert_eq!(r.v5(49, 30, 1020, 20), Verdict::InOrder);
        r.tick(10_000);
        assert!(r.losses.is_empty());
    }

    #[test]
    fn gap_is_held_then_emitted() {
        let mut r = Run::new(SourceKind::NetflowV5);
        r.v5(0, 30, 1000, 100);
        assert_eq!(r.v5(90, 30, 1100, 200), Verdict::Gap);
        r.tick(1_000);
        assert!(r.losses.is_empty());
        r.tick(2_200);
        assert_eq!(r.losses.len(), 1);
        let l = r.losses[0];
        assert_eq!(
            (l.reason, l.unit, l.count),
            (LossReason::Gap, LossUnit::Flows, 60)
        );
        assert_eq!((l.from_ms, l.to_ms), (100, 200));
        assert_eq!((l.expected_seq, l.received_seq), (30, 90));
        assert_eq!((r.stats.gaps, r.stats.lost_flows), (1, 60));
    }

    #[test]
    fn late_datagram_splits_the_gap() {
        let mut r = Run::new(SourceKind::NetflowV5);
        r.v5(0, 30, 1000, 0);
        r.v5(120, 30, 1000, 10); // gap [30, 120)
        assert_eq!(r.v5(60, 30, 990, 20), Verdict::Late); // fills [60, 90)
        assert_eq!(r.t.pending_gaps(), 2);
        r.v5(30, 30, 990, 30); // fills [30, 60)
        assert_eq!(r.t.pending_gaps(), 1);
        r.tick(5_000);
        assert_eq!(r.losses.len(), 1);
        assert_eq!(r.losses[0].count, 30);
        assert_eq!(
            (r.losses[0].expected_seq, r.losses[0].received_seq),
            (90, 120)
        );
        assert_eq!(r.stats.reordered, 2);
    }

    #[test]
    fn fully_filled_gap_is_no_loss() {
        let mut r = Run::new(SourceKind::NetflowV5);
        r.v5(0, 10, 1000, 0);
        r.v5(20, 10, 1000, 10);
        r.v5(10, 10, 1000, 20);
        r.tick(10_000);
        assert!(r.losses.is_empty());
    }

    #[test]
    fn backwards_beyond_window_or_uptime_back_is_a_reset() {
        let mut r = Run::new(SourceKind::NetflowV5);
        r.v5(50_000, 30, 1_000_000, 0);
        assert_eq!(r.v5(0, 30, 1_000_100, 10), Verdict::Reset);
        assert_eq!(r.v5(30, 30, 500, 20), Verdict::Reset);
        assert_eq!(r.stats.resets, 2);
        assert!(
            r.losses
                .iter()
                .all(|l| l.reason == LossReason::Reset && l.count == 0)
        );
        // Uptime wrapping around 2^32 is not a reset.
        let mut r = Run::new(SourceKind::NetflowV5);
        r.v5(0, 30, u32::MAX - 5, 0);
        assert_eq!(r.v5(30, 30, 100, 10), Verdict::InOrder);
    }

    #[test]
    fn implausible_jump_is_a_reset() {
        let mut r = Run::new(SourceKind::Ipfix);
        r.t.observe(
            3_500_000_000,
            Some(10),
            k(3_500_000_000, 10),
            None,
            0,
            &mut r.losses,
            &mut r.stats,
        );
        let v = r.t.observe(
            0,
            Some(10),
            k(0, 10),
            None,
            1000,
            &mut r.losses,
            &mut r.stats,
        );
        assert_eq!(v, Verdict::Reset);
    }

    #[test]
    fn small_restart_is_found_by_a_run_of_strays() {
        let mut r = Run::new(SourceKind::Ipfix);
        let mut seq = 5_000;
        for i in 0..3 {
            r.t.observe(
                seq,
                Some(10),
                k(seq, 10),
                None,
                i,
                &mut r.losses,
                &mut r.stats,
            );
            seq += 10;
        }
        let mut verdicts = Vec::new();
        for i in 0..STRAY_RUN_RESET {
            let s = i * 10;
            verdicts.push(r.t.observe(
                s,
                Some(10),
                k(s, 10),
                None,
                100,
                &mut r.losses,
                &mut r.stats,
            ));
        }
        assert_eq!(verdicts.last(), Some(&Verdict::Reset));
    }

    #[test]
    fn duplicates_are_recognised() {
        let mut r = Run::new(SourceKind::NetflowV9);
        r.t.observe(
            7,
            Some(1),
            k(7, 12),
            Some(100),
            0,
            &mut r.losses,
            &mut r.stats,
        );
        assert!(r.t.is_duplicate(k(7, 12)));
        assert!(!r.t.is_duplicate(k(7, 11)));
        assert!(!r.t.is_duplicate(k(8, 12)));
        assert!(!r.t.is_duplicate(DupKey {
            stamp: 1,
            ..k(7, 12)
        }));
    }

    #[test]
    fn pending_gaps_are_bounded() {
        let mut r = Run::new(SourceKind::NetflowV9);
        let mut seq = 0u32;
        for i in 0..200 {
            r.t.observe(
                seq,
                Some(1),
                k(seq, 1),
                Some(1000),
                i,
                &mut r.losses,
                &mut r.stats,
            );
            seq += 2; // one packet lost each time
        }
        assert!(r.t.pending_gaps() <= MAX_PENDING_GAPS);
        assert_eq!(r.losses.len() + r.t.pending_gaps(), 199);
        assert!(r.losses.iter().all(|l| l.unit == LossUnit::Packets));
    }
}

#[cfg(test)]
mod dialect_tests {
    use super::*;

    fn feed(
        t: &mut SeqTracker,
        msgs: &[(u32, u32, u32)],
        stats: &mut DecodeStats,
    ) -> Vec<LossRecord> {
        let mut losses = Vec::new();
        for (i, &(seq, all, data)) in msgs.iter().enumerate() {
            let key = DupKey {
                seq,
                count: all,
                stamp: i as u32,
            };
            t.observe_ipfix(
                seq,
                Some((all, data)),
                key,
                1_000 + i as i64,
                &mut losses,
                stats,
            );
        }
        t.tick(1_000_000, 2_000, &mut losses, stats);
        losses
    }

    #[test]
    fn softflowd_numbering_is_learned_and_its_holes_still_counted() {
        // softflowd 1.1.0: seq = data records up to and including this
        // message, options records not counted (first message: 1 options
        // record + 24 data records, seq 24).
        let msgs = [
            (24, 25, 24),
            (52, 28, 28),
            (80, 28, 28),
            (109, 29, 29),
            (139, 30, 30),
            (168, 30, 29),
        ];
        let mut stats = DecodeStats::default();
        let mut t = SeqTracker::new("192.0.2.1".parse().unwrap(), 0, SourceKind::Ipfix);
        assert!(feed(&mut t, &msgs, &mut stats).is_empty());
        assert_eq!(
            (stats.gaps, stats.reordered, stats.sequence_dialects),
            (0, 0, 1)
        );
        assert_eq!(
            t.convention,
            Some(SeqConvention {
                inclusive: true,
                data_only: true
            })
        );
        // Next message lost (26 records), the one after arrives: a gap of 26.
        let mut losses = Vec::new();
        let key = DupKey {
            seq: 168 + 26 + 27,
            count: 27,
            stamp: 99,
        };
        t.observe_ipfix(
            168 + 26 + 27,
            Some((27, 27)),
            key,
            5_000,
            &mut losses,
            &mut stats,
        );
        t.tick(1_000_000, 2_000, &mut losses, &mut stats);
        assert_eq!(losses.len(), 1);
        assert_eq!((losses[0].reason, losses[0].count), (LossReason::Gap, 26));
    }

    #[test]
    fn rfc_numbering_stays_rfc() {
        let msgs = [(0, 25, 24), (25, 28, 28), (53, 28, 28), (81, 10, 10)];
        let mut stats = DecodeStats::default();
        let mut t = SeqTracker::new("192.0.2.1".parse().unwrap(), 0, SourceKind::Ipfix);
        assert!(feed(&mut t, &msgs, &mut stats).is_empty());
        assert_eq!(t.convention, Some(SeqConvention::RFC));
        assert_eq!(stats.sequence_dialects, 0);
    }
}
