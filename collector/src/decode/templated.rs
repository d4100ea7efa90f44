//! NetFlow v9 and IPFIX messages: header, set structure, and the dispatch of
//! each set to templates, data decoding or the hold queue.
//!
//! Inputs: one datagram whose version is 9 or 10.
//! Outputs: flows, template/options state of the stream, held data sets,
//! sequence observations.
//! Never: processes any set of a datagram whose set structure is broken
//! (a set length below 4 or past the end drops the datagram whole); holds
//! data beyond the pending byte limits; lets one template exceed the
//! template caps.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::mem::FastMap;

use super::error::{DecodeError, LimitScope};
use super::plan::{Plan, RecordCtx, StreamOptions};
use super::sequence::DupKey;
use super::stats::DecodeStats;
use super::template::{
    IPFIX_OPTIONS_TEMPLATE_SET, IPFIX_TEMPLATE_SET, MIN_DATA_SET_ID, SetKind, TemplateEvent,
    V9_OPTIONS_TEMPLATE_SET, V9_TEMPLATE_SET, parse_template_set,
};
use super::wire::{be16, be32};
use super::{DecodeLimits, Decoder, ExporterState, HeldSet, Stream, StreamKey};
use crate::record::{FlowRecord, LossReason, LossRecord, LossUnit, SourceKind};

pub(crate) const V9_HEADER_BYTES: usize = 20;
pub(crate) const IPFIX_HEADER_BYTES: usize = 16;
const SET_HEADER_BYTES: usize = 4;

/// The parts of a v9 / IPFIX header the decoder uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MsgHeader {
    pub seq: u32,
    pub domain: u32,
    pub export_ms: i64,
    /// v9 only.
    pub sys_uptime_ms: Option<u32>,
    /// v9 header record count (templates + data); 0 for IPFIX.
    pub count: u16,
}

/// Parses the header; returns it, the set region and the bytes ignored
/// after the IPFIX message length.
pub(crate) fn parse_header(
    kind: SourceKind,
    d: &[u8],
) -> Result<(MsgHeader, &[u8], usize), DecodeError> {
    let t = DecodeError::Truncated;
    if kind == SourceKind::NetflowV9 {
        if d.len() < V9_HEADER_BYTES {
            return Err(t);
        }
        let h = MsgHeader {
            count: be16(d, 2).ok_or(t)?,
            sys_uptime_ms: Some(be32(d, 4).ok_or(t)?),
            export_ms: i64::from(be32(d, 8).ok_or(t)?) * 1000,
            seq: be32(d, 12).ok_or(t)?,
            domain: be32(d, 16).ok_or(t)?,
        };
        return Ok((h, d.get(V9_HEADER_BYTES..).ok_or(t)?, 0));
    }
    if d.len() < IPFIX_HEADER_BYTES {
        return Err(t);
    }
    let length = usize::from(be16(d, 2).ok_or(t)?);
    if length < IPFIX_HEADER_BYTES || length > d.len() {
        return Err(DecodeError::BadLength {
            declared_bytes: length,
            actual_bytes: d.len(),
        });
    }
    let h = MsgHeader {
        count: 0,
        sys_uptime_ms: None,
        export_ms: i64::from(be32(d, 4).ok_or(t)?) * 1000,
        seq: be32(d, 8).ok_or(t)?,
        domain: be32(d, 12).ok_or(t)?,
    };
    let body = d.get(IPFIX_HEADER_BYTES..length).ok_or(t)?;
    Ok((h, body, d.len() - length))
}

/// Checks every set header before anything is processed. Returns the
/// number of trailing bytes too short for a set header.
pub(crate) fn check_sets(body: &[u8]) -> Result<usize, DecodeError> {
    let mut pos = 0usize;
    loop {
        let rest = body.len() - pos;
        if rest == 0 {
            return Ok(0);
        }
        if rest < SET_HEADER_BYTES {
            return Ok(rest);
        }
        let len = be16(body, pos + 2).ok_or(DecodeError::Truncated)?;
        if usize::from(len) < SET_HEADER_BYTES || usize::from(len) > rest {
            return Err(DecodeError::BadSetLength(len));
        }
        pos += usize::from(len);
    }
}

/// Iterates `(set id, set body)` over a checked set region.
pub(crate) struct Sets<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Sets<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Sets<'a> {
        Sets { body, pos: 0 }
    }
}

impl<'a> Iterator for Sets<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let id = be16(self.body, self.pos)?;
        let len = usize::from(be16(self.body, self.pos + 2)?);
        if len < SET_HEADER_BYTES {
            return None;
        }
        let set = self.body.get(self.pos + SET_HEADER_BYTES..self.pos + len)?;
        self.pos += len;
        Some((id, set))
    }
}

/// Records the data sets of a message will yield with the templates known
/// now, or `None` if some data set has no template yet.
fn count_known_records(templates: &FastMap<u16, Plan>, body: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for (id, set) in Sets::new(body) {
        if id >= MIN_DATA_SET_ID {
            n = n.saturating_add(templates.get(&id)?.count_records(set));
        }
    }
    Some(n)
}

/// Applies one template event to a stream's template table.
fn apply_template_event(
    ev: TemplateEvent<'_>,
    templates: &mut FastMap<u16, Plan>,
    exporter_templates: &mut usize,
    stats: &mut DecodeStats,
    limits: &DecodeLimits,
    learned: &mut Vec<u16>,
) {
    match ev {
        TemplateEvent::Define { id, def } => {
            let hash = def.layout_hash();
            if let Some(old) = templates.get_mut(&id) {
                if old.layout_hash == hash && old.options == def.options {
                    stats.templates_refreshed += 1;
                    return;
                }
                match def.compile() {
                    Ok(plan) => {
                        *old = plan;
                        stats.templates_changed += 1;
                    }
                    Err(p) => {
                        // Its data now follows the refused layout: decoding
                        // it with the old plan would bill garbage.
                        stats.count_template_reject(&DecodeError::BadTemplate(p));
                        templates.remove(&id);
                        *exporter_templates = exporter_templates.saturating_sub(1);
                        stats.templates_current = stats.templates_current.saturating_sub(1);
                    }
                }
                return;
            }
            let plan = match def.compile() {
                Ok(plan) => plan,
                Err(p) => {
                    stats.count_template_reject(&DecodeError::BadTemplate(p));
                    return;
                }
            };
            if *exporter_templates >= limits.max_templates_per_exporter {
                stats.count_template_reject(&DecodeError::TemplateLimit(LimitScope::Exporter));
                return;
            }
            if stats.templates_current >= limits.max_templates_total as u64 {
                stats.count_template_reject(&DecodeError::TemplateLimit(LimitScope::Total));
                return;
            }
            templates.insert(id, plan);
            *exporter_templates += 1;
            stats.templates_current += 1;
            stats.templates_learned += 1;
            learned.push(id);
        }
        TemplateEvent::Withdraw { id } => {
            if templates.remove(&id).is_some() {
                *exporter_templates = exporter_templates.saturating_sub(1);
                stats.templates_current = stats.templates_current.saturating_sub(1);
                stats.templates_withdrawn += 1;
            }
        }
        TemplateEvent::WithdrawAll { options } => {
            let before = templates.len();
            templates.retain(|_, p| p.options != options);
            let n = before - templates.len();
            *exporter_templates = exporter_templates.saturating_sub(n);
            stats.templates_current = stats.templates_current.saturating_sub(n as u64);
            stats.templates_withdrawn += n as u64;
        }
        TemplateEvent::Reject(problem) => {
            stats.count_template_reject(&DecodeError::BadTemplate(problem));
        }
    }
}

/// Everything `hold` needs besides the set itself.
struct HoldCtx<'a> {
    limits: &'a DecodeLimits,
    exporter: IpAddr,
    key: StreamKey,
    hdr: &'a MsgHeader,
    sampling_override: Option<u32>,
    shift_ms: i64,
    now_ms: i64,
}

fn hold(
    c: &HoldCtx<'_>,
    template_id: u16,
    set: &[u8],
    held: &mut VecDeque<HeldSet>,
    exporter_pending: &mut usize,
    stats: &mut DecodeStats,
    losses: &mut Vec<LossRecord>,
) {
    let charge = set.len() + super::HELD_SET_OVERHEAD_BYTES;
    let over_exporter =
        exporter_pending.saturating_add(charge) > c.limits.max_pending_bytes_per_exporter;
    let over_total = stats.pending_bytes_current.saturating_add(charge as u64)
        > c.limits.max_pending_bytes_total as u64;
    if over_exporter || over_total {
        stats.held_sets_overflow += 1;
        stats.held_sets_dropped += 1;
        stats.held_bytes_dropped += set.len() as u64;
        losses.push(LossRecord {
            exporter: c.exporter,
            domain: c.key.domain,
            kind: c.key.kind,
            reason: LossReason::NoTemplate,
            unit: LossUnit::Packets,
            count: 1,
            from_ms: c.now_ms,
            to_ms: c.now_ms,
            expected_seq: c.hdr.seq,
            received_seq: c.hdr.seq,
        });
        return;
    }
    held.push_back(HeldSet {
        template_id,
        seq: c.hdr.seq,
        arrival_ms: c.now_ms,
        export_ms: c.hdr.export_ms,
        shift_ms: c.shift_ms,
        sys_uptime_ms: c.hdr.sys_uptime_ms,
        sampling_override: c.sampling_override,
        bytes: set.into(),
    });
    *exporter_pending += charge;
    stats.pending_bytes_current += charge as u64;
    stats.held_sets += 1;
    stats.held_bytes += set.len() as u64;
}

/// Decodes held sets whose template was just learned.
#[allow(clippy::too_many_arguments)]
fn resolve_held(
    exporter: IpAddr,
    key: StreamKey,
    learned: &[u16],
    templates: &FastMap<u16, Plan>,
    opts: &mut StreamOptions,
    held: &mut VecDeque<HeldSet>,
    exporter_pending: &mut usize,
    stats: &mut DecodeStats,
    flows: &mut Vec<FlowRecord>,
) {
    if !held.iter().any(|h| learned.contains(&h.template_id)) {
        return;
    }
    for h in std::mem::take(held) {
        let plan = if learned.contains(&h.template_id) {
            templates.get(&h.template_id)
        } else {
            None
        };
        let Some(plan) = plan else {
            held.push_back(h);
            continue;
        };
        let charge = h.charge_bytes();
        *exporter_pending = exporter_pending.saturating_sub(charge);
        stats.pending_bytes_current = stats.pending_bytes_current.saturating_sub(charge as u64);
        let ctx = RecordCtx {
            exporter,
            domain: key.domain,
            kind: key.kind,
            export_ms: h.export_ms,
            shift_ms: h.shift_ms,
            sys_uptime_ms: h.sys_uptime_ms,
            sampling_override: h.sampling_override,
        };
        let n = plan.decode_set(&h.bytes, &ctx, opts, flows, stats);
        stats.held_sets_decoded += 1;
        stats.held_records_decoded += u64::from(n);
    }
}

impl Decoder {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode_templated(
        &mut self,
        kind: SourceKind,
        exporter: IpAddr,
        now_ms: i64,
        opts: super::ExporterOpts,
        datagram: &[u8],
        flows: &mut Vec<FlowRecord>,
        losses: &mut Vec<LossRecord>,
    ) -> Result<usize, DecodeError> {
        let (hdr, body, ignored) = parse_header(kind, datagram)?;
        let trailing = check_sets(body)?;
        let v9 = kind == SourceKind::NetflowV9;
        if v9 {
            self.stats.datagrams_v9 += 1;
        } else {
            self.stats.datagrams_ipfix += 1;
        }
        self.stats.trailing_bytes += (trailing + ignored) as u64;
        let key = StreamKey {
            kind,
            domain: hdr.domain,
        };
        self.ensure_stream(exporter, key, now_ms, losses)?;

        let Decoder {
            limits,
            stats,
            exporters,
            fields_scratch,
            learned_scratch,
            ..
        } = self;
        let ExporterState {
            streams,
            template_count,
            pending_bytes,
            clock_skew_ms,
        } = exporters.get_mut(&exporter).ok_or(DecodeError::Malformed)?;
        *clock_skew_ms = now_ms - hdr.export_ms;
        let sampling_override = opts.sampling;
        // Added to every time of the datagram's records: all of them are
        // read by the exporter's clock (absolute, or relative to its
        // uptime at export time).
        let shift_ms = if opts.reads_by_arrival(hdr.export_ms, now_ms) {
            now_ms - hdr.export_ms
        } else {
            0
        };
        let Stream {
            seq,
            templates,
            opts,
            held,
            last_seen_ms,
        } = streams.get_mut(&key).ok_or(DecodeError::Malformed)?;
        *last_seen_ms = now_ms;

        let dup_count = if v9 {
            Some(u32::from(hdr.count))
        } else {
            count_known_records(templates, body)
        };
        // A true duplicate repeats the header stamp too.
        let stamp = hdr.sys_uptime_ms.unwrap_or((hdr.export_ms / 1000) as u32);
        let dup_key = |count: u32| DupKey {
            seq: hdr.seq,
            count,
            stamp,
        };
        if let Some(c) = dup_count
            && seq.is_duplicate(dup_key(c))
        {
            stats.duplicates += 1;
            return Err(DecodeError::Duplicate);
        }
        if v9 {
            seq.observe(
                hdr.seq,
                Some(1),
                dup_key(u32::from(hdr.count)),
                hdr.sys_uptime_ms,
                now_ms,
                losses,
                stats,
            );
        }

        let ctx = RecordCtx {
            exporter,
            domain: hdr.domain,
            kind,
            export_ms: hdr.export_ms,
            shift_ms,
            sys_uptime_ms: hdr.sys_uptime_ms,
            sampling_override,
        };
        let hold_ctx = HoldCtx {
            limits,
            exporter,
            key,
            hdr: &hdr,
            sampling_override,
            shift_ms,
            now_ms,
        };
        let start = flows.len();
        let mut records = 0u32;
        let mut options_records = 0u32;
        let mut all_known = true;
        learned_scratch.clear();
        for (set_id, set) in Sets::new(body) {
            let template_kind = match (v9, set_id) {
                (true, V9_TEMPLATE_SET) => Some(SetKind::V9Templates),
                (true, V9_OPTIONS_TEMPLATE_SET) => Some(SetKind::V9Options),
                (false, IPFIX_TEMPLATE_SET) => Some(SetKind::IpfixTemplates),
                (false, IPFIX_OPTIONS_TEMPLATE_SET) => Some(SetKind::IpfixOptions),
                _ => None,
            };
            if let Some(tk) = template_kind {
                parse_template_set(
                    tk,
                    set,
                    limits.max_fields_per_template,
                    fields_scratch,
                    &mut |ev| {
                        apply_template_event(
                            ev,
                            templates,
                            template_count,
                            stats,
                            limits,
                            learned_scratch,
                        )
                    },
                );
            } else if set_id >= MIN_DATA_SET_ID {
                match templates.get(&set_id) {
                    Some(plan) => {
                        let n = plan.decode_set(set, &ctx, opts, flows, stats);
                        records = records.saturating_add(n);
                        if plan.options {
                            options_records = options_records.saturating_add(n);
                        }
                    }
                    None => {
                        all_known = false;
                        hold(&hold_ctx, set_id, set, held, pending_bytes, stats, losses);
                    }
                }
            } else {
                stats.sets_reserved_skipped += 1;
            }
        }
        if !v9 {
            seq.observe_ipfix(
                hdr.seq,
                all_known.then_some((records, records - options_records)),
                dup_key(if all_known { records } else { 0 }),
                now_ms,
                losses,
                stats,
            );
        }
        if !learned_scratch.is_empty() && !held.is_empty() {
            resolve_held(
                exporter,
                key,
                learned_scratch,
                templates,
                opts,
                held,
                pending_bytes,
                stats,
                flows,
            );
        }
        Ok(flows.len() - start)
    }
}
