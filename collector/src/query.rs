//! Reading tier 1 back: every segment in order, filtered, with loss records
//! and damage reported. This is what `kopek raw dump|stats` and, later,
//! re-rating use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::record::{FlowRecord, LossRecord};
use crate::segment::{
    Block, RawStore, SegmentError, SegmentInfo, SegmentReader, SegmentState, TailState,
};

/// Which records to return. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct RawFilter {
    /// Flows that end at or after this time (ms UTC).
    pub from_ms: Option<i64>,
    /// Flows that start before this time (ms UTC).
    pub to_ms: Option<i64>,
    /// Flows with src or dst inside this network.
    pub net: Option<IpNet>,
    pub exporter: Option<IpAddr>,
    /// Only segments of this collector.
    pub collector: Option<String>,
}

impl RawFilter {
    pub fn matches(&self, r: &FlowRecord) -> bool {
        self.from_ms.is_none_or(|f| r.last_ms >= f)
            && self.to_ms.is_none_or(|t| r.first_ms < t)
            && self.exporter.is_none_or(|e| r.exporter == e)
            && self
                .net
                .is_none_or(|n| n.contains(&r.src) || n.contains(&r.dst))
    }

    /// Loss records are kept when they concern the exporter and overlap the time range.
    pub fn matches_loss(&self, l: &LossRecord) -> bool {
        self.from_ms.is_none_or(|f| l.to_ms >= f)
            && self.to_ms.is_none_or(|t| l.from_ms < t)
            && self.exporter.is_none_or(|e| l.exporter == e)
    }

    fn wants_segment(&self, s: &SegmentInfo) -> bool {
        self.collector.as_ref().is_none_or(|c| *c == s.collector)
    }
}

/// A segment the scan could not read to its end.
#[derive(Debug, Clone)]
pub struct Damage {
    pub path: PathBuf,
    pub what: String,
}

#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    pub segments: u64,
    pub blocks: u64,
    pub flows_read: u64,
    /// Closed segments with a damaged block, or unreadable files. Open
    /// segments ending in an incomplete block are normal (being written).
    pub damaged: Vec<Damage>,
}

/// Calls `on_flow` for every matching flow and `on_loss` for every matching
/// loss record, segment by segment in (collector, id) order.
pub fn scan(
    store: &RawStore,
    filter: &RawFilter,
    mut on_flow: impl FnMut(&FlowRecord),
    mut on_loss: impl FnMut(&LossRecord),
) -> Result<ScanReport, SegmentError> {
    let mut report = ScanReport::default();
    let mut flows = Vec::new();
    let mut losses = Vec::new();
    for seg in store.list()?.iter().filter(|s| filter.wants_segment(s)) {
        if seg.state == SegmentState::Closed
            && (filter.from_ms.is_some() || filter.to_ms.is_some())
            && let Some(f) = seg.read_footer()?
            && (filter.from_ms.is_some_and(|from| f.max_last_ms < from)
                || filter.to_ms.is_some_and(|to| f.min_first_ms >= to))
        {
            continue;
        }
        let mut reader = match SegmentReader::open(&seg.path) {
            Ok(r) => r,
            // Renamed between list and open: read it under its new name.
            Err(SegmentError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && seg.state == SegmentState::Open =>
            {
                match SegmentReader::open(&seg.path.with_extension("kseg")) {
                    Ok(r) => r,
                    Err(e) => {
                        report.damaged.push(Damage {
                            path: seg.path.clone(),
                            what: e.to_string(),
                        });
                        continue;
                    }
                }
            }
            Err(e) => {
                report.damaged.push(Damage {
                    path: seg.path.clone(),
                    what: e.to_string(),
                });
                continue;
            }
        };
        report.segments += 1;
        loop {
            flows.clear();
            losses.clear();
            match reader.next_block(&mut flows, &mut losses) {
                Ok(Some(Block::Footer(_))) => break,
                Ok(Some(_)) => {
                    report.blocks += 1;
                    report.flows_read += flows.len() as u64;
                    for r in flows.iter().filter(|r| filter.matches(r)) {
                        on_flow(r);
                    }
                    for l in losses.iter().filter(|l| filter.matches_loss(l)) {
                        on_loss(l);
                    }
                }
                Ok(None) => {
                    let tail = reader.tail().clone();
                    let closed = seg.state == SegmentState::Closed;
                    match tail {
                        TailState::Damaged { offset, why } => report.damaged.push(Damage {
                            path: seg.path.clone(),
                            what: format!("block at offset {offset}: {why}"),
                        }),
                        TailState::Incomplete { offset, bytes } if closed => {
                            report.damaged.push(Damage {
                                path: seg.path.clone(),
                                what: format!("truncated block at offset {offset} ({bytes} bytes)"),
                            })
                        }
                        _ if closed => report.damaged.push(Damage {
                            path: seg.path.clone(),
                            what: "closed segment without a footer".into(),
                        }),
                        _ => {}
                    }
                    break;
                }
                Err(e) => {
                    report.damaged.push(Damage {
                        path: seg.path.clone(),
                        what: e.to_string(),
                    });
                    break;
                }
            }
        }
    }
    Ok(report)
}

/// Totals of a set of flows (scaled estimates and raw counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub flows: u64,
    pub bytes: u64,
    pub packets: u64,
    pub bytes_raw: u64,
    pub packets_raw: u64,
}

impl Totals {
    pub fn add(&mut self, r: &FlowRecord) {
        self.flows += 1;
        self.bytes = self.bytes.saturating_add(r.bytes());
        self.packets = self.packets.saturating_add(r.packets());
        self.bytes_raw = self.bytes_raw.saturating_add(r.bytes_raw);
        self.packets_raw = self.packets_raw.saturating_add(r.packets_raw);
    }
}

/// Loss totals of one exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LossTotals {
    pub records: u64,
    pub gaps: u64,
    pub lost_flows: u64,
    pub lost_packets: u64,
    pub resets: u64,
    pub no_template: u64,
    pub dropped: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

impl LossTotals {
    pub fn add(&mut self, l: &LossRecord) {
        use crate::record::{LossReason, LossUnit};
        self.records += 1;
        match l.reason {
            LossReason::Gap => self.gaps += 1,
            LossReason::Reset => self.resets += 1,
            LossReason::NoTemplate => self.no_template += 1,
            LossReason::Dropped => self.dropped += 1,
        }
        match l.unit {
            LossUnit::Flows => self.lost_flows += l.count,
            LossUnit::Packets => self.lost_packets += l.count,
        }
        self.first_ms = Some(self.first_ms.map_or(l.from_ms, |f| f.min(l.from_ms)));
        self.last_ms = Some(self.last_ms.map_or(l.to_ms, |t| t.max(l.to_ms)));
    }
}

/// `kopek raw stats`: totals per exporter and per address, with losses.
#[derive(Debug, Clone, Default)]
pub struct RawStats {
    pub total: Totals,
    pub by_exporter: HashMap<IpAddr, Totals>,
    /// Per address, counting a flow for both its src and its dst (as
    /// `nfdump -s ip` does).
    pub by_address: HashMap<IpAddr, Totals>,
    pub losses: HashMap<IpAddr, LossTotals>,
    pub report: ScanReport,
}

pub fn stats(
    store: &RawStore,
    filter: &RawFilter,
    by_address: bool,
) -> Result<RawStats, SegmentError> {
    let mut s = RawStats::default();
    let mut by_exporter = HashMap::new();
    let mut by_addr: HashMap<IpAddr, Totals> = HashMap::new();
    let mut losses: HashMap<IpAddr, LossTotals> = HashMap::new();
    let mut total = Totals::default();
    let report = scan(
        store,
        filter,
        |r| {
            total.add(r);
            by_exporter
                .entry(r.exporter)
                .or_insert_with(Totals::default)
                .add(r);
            if by_address {
                by_addr.entry(r.src).or_default().add(r);
                if r.dst != r.src {
                    by_addr.entry(r.dst).or_default().add(r);
                }
            }
        },
        |l| losses.entry(l.exporter).or_default().add(l),
    )?;
    s.total = total;
    s.by_exporter = by_exporter;
    s.by_address = by_addr;
    s.losses = losses;
    s.report = report;
    Ok(s)
}
