//! Compiled templates ("plans") and the data-record decoder that runs them.
//!
//! A v9/IPFIX template is validated and compiled once into a [`Plan`]: the
//! list of the fields kopek uses, each with its offset, length and target.
//! Data records are then decoded by running the plan over each record:
//! no per-record allocation, no lookups, checked slicing only.
//! Templates with variable-length fields (IPFIX length 65535) compile to a
//! slower walking plan.
//!
//! Inputs: the field specifiers of one template; data set bodies.
//! Outputs: [`FlowRecord`]s pushed into the caller's vector, or options
//! values (sampling, system init time) stored in [`StreamOptions`].
//! Never: panics on any byte sequence, loops without consuming bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::TemplateProblem;
use super::stats::DecodeStats;
use super::wire::{be_uint, be_uint_at, be16, be128};
use crate::record::{FlowDirection, FlowRecord, SourceKind};

/// IPFIX field length meaning "variable length, prefixed in the record".
pub(crate) const VARIABLE_LENGTH: u16 = 65_535;
/// The longest record that fits into a set (set length is a u16 and
/// includes the 4-byte set header).
pub(crate) const MAX_RECORD_BYTES: usize = 65_535 - 4;
/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: i64 = 2_208_988_800;
/// Sampler ids remembered per stream from options data.
pub(crate) const MAX_SAMPLERS_PER_STREAM: usize = 64;

/// One field specifier of a template record, as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldSpec {
    pub element_id: u16,
    /// IPFIX enterprise bit set (the PEN itself is not kept).
    pub enterprise: bool,
    pub length: u16,
    /// v9 options scope field: its type numbers are another namespace.
    pub scope: bool,
}

/// What a field feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Target {
    Skip,
    SrcV4,
    DstV4,
    SrcV6,
    DstV6,
    SrcPort,
    DstPort,
    Protocol,
    InIf,
    OutIf,
    Octets,
    Packets,
    Direction,
    StartMs,
    EndMs,
    StartSec,
    EndSec,
    StartUs,
    EndUs,
    StartNs,
    EndNs,
    StartUptime,
    EndUptime,
    SysInitMs,
    SamplingInterval,
    PacketInterval,
    PacketSpace,
    SamplerId,
}

impl Target {
    fn bit(self) -> u64 {
        1u64 << (self as u8)
    }

    fn is_options_target(self) -> bool {
        matches!(
            self,
            Target::SysInitMs
                | Target::SamplingInterval
                | Target::PacketInterval
                | Target::PacketSpace
                | Target::SamplerId
        )
    }
}

/// Preference groups: of several fields feeding the same value, the one
/// with the lowest rank wins and the others are skipped.
#[derive(Clone, Copy)]
enum Group {
    Octets,
    Packets,
    Start,
    End,
}

/// A preference group and the rank of an element in it (lower wins).
type Preference = Option<(Group, u8)>;

/// Target, allowed lengths (min, max) and preference of the IANA elements
/// kopek reads. Other elements are skipped whatever their length (but
/// never 0).
fn element(element_id: u16) -> Option<(Target, u16, u16, Preference)> {
    use Target::*;
    Some(match element_id {
        1 => (Octets, 1, 8, Some((Group::Octets, 0))),
        23 => (Octets, 1, 8, Some((Group::Octets, 1))),
        2 => (Packets, 1, 8, Some((Group::Packets, 0))),
        24 => (Packets, 1, 8, Some((Group::Packets, 1))),
        4 => (Protocol, 1, 1, None),
        7 => (SrcPort, 1, 2, None),
        11 => (DstPort, 1, 2, None),
        8 => (SrcV4, 4, 4, None),
        12 => (DstV4, 4, 4, None),
        27 => (SrcV6, 16, 16, None),
        28 => (DstV6, 16, 16, None),
        10 => (InIf, 1, 4, None),
        14 => (OutIf, 1, 4, None),
        61 => (Direction, 1, 1, None),
        152 => (StartMs, 8, 8, Some((Group::Start, 0))),
        150 => (StartSec, 4, 4, Some((Group::Start, 1))),
        154 => (StartUs, 8, 8, Some((Group::Start, 2))),
        156 => (StartNs, 8, 8, Some((Group::Start, 3))),
        22 => (StartUptime, 4, 4, Some((Group::Start, 4))),
        153 => (EndMs, 8, 8, Some((Group::End, 0))),
        151 => (EndSec, 4, 4, Some((Group::End, 1))),
        155 => (EndUs, 8, 8, Some((Group::End, 2))),
        157 => (EndNs, 8, 8, Some((Group::End, 3))),
        21 => (EndUptime, 4, 4, Some((Group::End, 4))),
        160 => (SysInitMs, 8, 8, None),
        34 | 50 => (SamplingInterval, 1, 4, None),
        305 => (PacketInterval, 1, 4, None),
        306 => (PacketSpace, 1, 4, None),
        48 | 302 => (SamplerId, 1, 8, None),
        _ => return None,
    })
}

/// Slots of [`Vals`]: one per target (its discriminant), then the low
/// halves of the two IPv6 addresses (an address is two 8-byte reads).
const SRC6_LO: u8 = Target::SamplerId as u8 + 1;
const DST6_LO: u8 = SRC6_LO + 1;
/// A power of two above the slots, so that an index masked by it needs
/// no bounds check.
const SLOTS: usize = 32;
const _: () = assert!((DST6_LO as usize) < SLOTS);

/// One read of a fixed plan: `length` (1..=8) bytes at `offset` into a
/// [`Vals`] slot.
#[derive(Debug, Clone, Copy)]
struct FieldOp {
    offset: u16,
    length: u8,
    slot: u8,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Fixed { length: u16, target: Target },
    Variable,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Options template: records feed [`StreamOptions`], not flows.
    pub options: bool,
    /// Hash of the wire layout: equal layouts compile to equal plans.
    pub layout_hash: u64,
    /// Fixed plans: the used fields with their offsets.
    ops: Vec<FieldOp>,
    /// Variable plans: every field in order (adjacent skips merged).
    steps: Vec<Step>,
    variable: bool,
    /// Fixed plans: the record length; variable plans: the minimum length.
    record_bytes: usize,
    /// The targets the plan has ([`Target::bit`]s).
    present: u64,
    has_v4: bool,
    has_v6: bool,
    has_sampling: bool,
}

/// Per-stream values learnt from options data records.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamOptions {
    /// Last sampling interval any options record announced.
    pub sampling_default: Option<u32>,
    /// Sampler / selector id → interval.
    pub samplers: Vec<(u64, u32)>,
    /// IPFIX systemInitTimeMilliseconds (IE 160).
    pub sys_init_ms: Option<i64>,
}

/// What a record needs from its datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordCtx {
    pub exporter: IpAddr,
    pub domain: u32,
    pub kind: SourceKind,
    /// Export time of the datagram, ms UTC.
    pub export_ms: i64,
    /// Added to every time of the record: arrival minus export time when
    /// the exporter's clock is not trusted, else 0.
    pub shift_ms: i64,
    /// v9 header sysUpTime (ms); `None` for IPFIX.
    pub sys_uptime_ms: Option<u32>,
    pub sampling_override: Option<u32>,
}

/// Values of one record while it is being decoded: the raw big-endian
/// integer of each target. Every record of a plan fills the same slots,
/// so one `Vals` serves a whole set: a slot the plan lacks stays 0, and
/// `present` (the plan's targets) tells a 0 read from a field from a
/// field the template does not have.
struct Vals {
    v: [u64; SLOTS],
    present: u64,
}

fn sat_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn sat_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// NTP timestamp (seconds since 1900 . fraction) to ms since 1970.
fn ntp_to_ms(v: u64) -> i64 {
    let secs = (v >> 32) as i64;
    let frac = v & 0xffff_ffff;
    (secs - NTP_UNIX_OFFSET_S) * 1000 + ((frac * 1000) >> 32) as i64
}

impl Vals {
    fn new(present: u64) -> Vals {
        Vals {
            v: [0; SLOTS],
            present,
        }
    }

    #[inline]
    fn get(&self, t: Target) -> u64 {
        self.v[t as usize]
    }

    #[inline]
    fn has(&self, t: Target) -> bool {
        self.present & t.bit() != 0
    }

    #[inline]
    fn opt(&self, t: Target) -> Option<u64> {
        self.has(t).then(|| self.get(t))
    }

    /// Stores the field `b` of a walking plan.
    #[inline]
    fn set(&mut self, target: Target, b: &[u8]) {
        let lo = match target {
            Target::Skip => return,
            Target::SrcV6 => SRC6_LO,
            Target::DstV6 => DST6_LO,
            _ => {
                self.v[target as usize] = be_uint(b);
                return;
            }
        };
        let a = be128(b);
        self.v[target as usize] = (a >> 64) as u64;
        self.v[usize::from(lo)] = a as u64;
    }

    fn v6(&self, hi: Target, lo: u8) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.get(hi)) << 64 | u128::from(self.v[usize::from(lo)]))
    }

    /// The start or end time from whichever field of its group the plan
    /// has (at most one: the others were skipped at compile time).
    #[inline]
    fn time(&self, ms: Target, sec: Target, us: Target, ns: Target) -> Option<i64> {
        if self.has(ms) {
            Some(sat_i64(self.get(ms)))
        } else if self.has(sec) {
            Some(sat_i64(self.get(sec)) * 1000)
        } else if self.has(us) {
            Some(ntp_to_ms(self.get(us)))
        } else if self.has(ns) {
            Some(ntp_to_ms(self.get(ns)))
        } else {
            None
        }
    }

    /// Sampling interval carried by the record itself (0 = none).
    fn own_sampling(&self) -> u32 {
        // All three are at most 4 bytes long.
        let interval = sat_u32(self.get(Target::SamplingInterval));
        if interval > 0 {
            return interval;
        }
        let packet_interval = sat_u32(self.get(Target::PacketInterval));
        if packet_interval > 0 {
            let space = self.get(Target::PacketSpace);
            if space > 0 {
                // PSAMP systematic count-based: `interval` selected, then
                // `space` skipped.
                let total = u64::from(packet_interval) + space;
                return sat_u32(total / u64::from(packet_interval));
            }
            return packet_interval;
        }
        0
    }
}

/// FNV-1a, enough to tell a re-sent layout from a changed one.
pub(crate) fn layout_hash(fields: &[FieldSpec], options: bool) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for byte in x.to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(u64::from(options));
    for f in fields {
        eat(u64::from(f.element_id)
            | u64::from(f.length) << 16
            | u64::from(f.enterprise) << 32
            | u64::from(f.scope) << 33);
    }
    h
}

impl Plan {
    /// Validates and compiles a template. `variable_allowed` is true for
    /// IPFIX, where length 65535 means a variable-length field.
    pub(crate) fn compile(
        fields: &[FieldSpec],
        options: bool,
        variable_allowed: bool,
        max_fields: usize,
    ) -> Result<Plan, TemplateProblem> {
        if fields.len() > max_fields {
            return Err(TemplateProblem::TooManyFields(
                u16::try_from(fields.len()).unwrap_or(u16::MAX),
            ));
        }
        if fields.is_empty() {
            return Err(TemplateProblem::NoFields);
        }
        // Pass 1: targets and length checks.
        let mut targets: Vec<(Target, Preference)> = Vec::with_capacity(fields.len());
        for f in fields {
            if f.length == 0 {
                return Err(TemplateProblem::BadFieldLength {
                    element_id: f.element_id,
                    length: 0,
                });
            }
            let variable = variable_allowed && f.length == VARIABLE_LENGTH;
            let known = if f.enterprise || f.scope {
                None
            } else {
                element(f.element_id)
            };
            let (target, group) = match known {
                Some((target, min_len, max_len, group)) => {
                    if variable || f.length < min_len || f.length > max_len {
                        return Err(TemplateProblem::BadFieldLength {
                            element_id: f.element_id,
                            length: f.length,
                        });
                    }
                    if options && !target.is_options_target() {
                        (Target::Skip, None)
                    } else {
                        (target, group)
                    }
                }
                None => (Target::Skip, None),
            };
            targets.push((target, group));
        }
        // Pass 2: one field per value; preferred element per group.
        let mut best: [Option<(u8, usize)>; 4] = [None; 4];
        for (i, (_, group)) in targets.iter().enumerate() {
            if let Some((g, rank)) = group {
                let slot = &mut best[*g as usize];
                if slot.is_none_or(|(r, _)| *rank < r) {
                    *slot = Some((*rank, i));
                }
            }
        }
        let mut seen: u64 = 0;
        for (i, (target, group)) in targets.iter_mut().enumerate() {
            if *target == Target::Skip {
                continue;
            }
            let keep = match group {
                Some((g, _)) => best[*g as usize].is_some_and(|(_, at)| at == i),
                None => seen & target.bit() == 0,
            };
            if keep {
                seen |= target.bit();
            } else {
                *target = Target::Skip;
            }
        }
        // Pass 3: lengths, ops, steps.
        let mut fixed_bytes: usize = 0;
        let mut variable_count: usize = 0;
        let mut ops = Vec::new();
        let mut steps: Vec<Step> = Vec::new();
        for (f, (target, _)) in fields.iter().zip(&targets) {
            if variable_allowed && f.length == VARIABLE_LENGTH {
                variable_count += 1;
                steps.push(Step::Variable);
                continue;
            }
            if *target != Target::Skip {
                // Known elements are at most 8 bytes long, addresses 16.
                let offset = u16::try_from(fixed_bytes).unwrap_or(u16::MAX);
                let length = u8::try_from(f.length.min(8)).unwrap_or(8);
                let slot = *target as u8;
                ops.push(FieldOp {
                    offset,
                    length,
                    slot,
                });
                let lo = match target {
                    Target::SrcV6 => Some(SRC6_LO),
                    Target::DstV6 => Some(DST6_LO),
                    _ => None,
                };
                if let Some(slot) = lo {
                    ops.push(FieldOp {
                        offset: offset.saturating_add(8),
                        length: 8,
                        slot,
                    });
                }
            }
            fixed_bytes += usize::from(f.length);
            if fixed_bytes > MAX_RECORD_BYTES {
                return Err(TemplateProblem::RecordTooLong);
            }
            match steps.last_mut() {
                Some(Step::Fixed {
                    length,
                    target: Target::Skip,
                }) if *target == Target::Skip => *length += f.length,
                _ => steps.push(Step::Fixed {
                    length: f.length,
                    target: *target,
                }),
            }
        }
        let record_bytes = fixed_bytes + variable_count;
        if record_bytes == 0 {
            return Err(TemplateProblem::ZeroRecordLength);
        }
        if record_bytes > MAX_RECORD_BYTES {
            return Err(TemplateProblem::RecordTooLong);
        }
        let variable = variable_count > 0;
        if !variable {
            steps = Vec::new();
        }
        let has = |t: Target| seen & t.bit() != 0;
        Ok(Plan {
            options,
            layout_hash: layout_hash(fields, options),
            ops,
            steps,
            variable,
            record_bytes,
            present: seen,
            has_v4: has(Target::SrcV4) || has(Target::DstV4),
            has_v6: has(Target::SrcV6) || has(Target::DstV6),
            has_sampling: has(Target::SamplingInterval)
                || has(Target::PacketInterval)
                || has(Target::SamplerId),
        })
    }

    /// Records in a data set body (padding shorter than a record ignored).
    pub(crate) fn count_records(&self, body: &[u8]) -> u32 {
        if !self.variable {
            return u32::try_from(body.len() / self.record_bytes.max(1)).unwrap_or(u32::MAX);
        }
        let mut n = 0u32;
        let mut pos = 0usize;
        while body.len().saturating_sub(pos) >= self.record_bytes {
            match self.walk(body, pos, None) {
                Some(next) => {
                    pos = next;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Walks one record of a variable plan from `pos`; returns the position
    /// after it, or `None` if it runs past the end of `body`.
    #[inline]
    fn walk(&self, body: &[u8], mut pos: usize, mut vals: Option<&mut Vals>) -> Option<usize> {
        for step in &self.steps {
            match *step {
                Step::Fixed { length, target } => {
                    let end = pos.checked_add(usize::from(length))?;
                    let b = body.get(pos..end)?;
                    if let Some(v) = vals.as_deref_mut() {
                        v.set(target, b);
                    }
                    pos = end;
                }
                Step::Variable => {
                    let first = *body.get(pos)?;
                    pos += 1;
                    let length = if first == 255 {
                        let l = be16(body, pos)?;
                        pos += 2;
                        usize::from(l)
                    } else {
                        usize::from(first)
                    };
                    pos = pos.checked_add(length)?;
                    if pos > body.len() {
                        return None;
                    }
                }
            }
        }
        Some(pos)
    }

    /// Decodes every record of a data set body: flows go to `flows`,
    /// options records into `opts`. Returns the number of records read
    /// (including records skipped for having no address).
    pub(crate) fn decode_set(
        &self,
        body: &[u8],
        ctx: &RecordCtx,
        opts: &mut StreamOptions,
        flows: &mut Vec<FlowRecord>,
        stats: &mut DecodeStats,
    ) -> u32 {
        if !self.options && !self.has_v4 && !self.has_v6 {
            let n = self.count_records(body);
            stats.records_no_address += u64::from(n);
            return n;
        }
        let mut n = 0u32;
        let mut v = Vals::new(self.present);
        if !self.variable {
            let record_bytes = self.record_bytes.max(1);
            let records = body.len() / record_bytes;
            if !self.options {
                flows.reserve(records);
            }
            for i in 0..records {
                let at = i * record_bytes;
                for op in &self.ops {
                    let value = be_uint_at(body, at + usize::from(op.offset), op.length);
                    v.v[usize::from(op.slot) & (SLOTS - 1)] = value;
                }
                self.emit(&v, ctx, opts, flows, stats);
                n += 1;
            }
        } else {
            let mut pos = 0usize;
            while body.len().saturating_sub(pos) >= self.record_bytes {
                match self.walk(body, pos, Some(&mut v)) {
                    Some(next) => pos = next,
                    None => {
                        stats.records_truncated += 1;
                        break;
                    }
                }
                self.emit(&v, ctx, opts, flows, stats);
                n += 1;
            }
        }
        n
    }

    #[inline]
    fn emit(
        &self,
        v: &Vals,
        ctx: &RecordCtx,
        opts: &mut StreamOptions,
        flows: &mut Vec<FlowRecord>,
        stats: &mut DecodeStats,
    ) {
        if self.options {
            apply_options(v, opts);
            stats.options_records += 1;
        } else {
            flows.push(self.finish(v, ctx, opts, stats));
            stats.flows_decoded += 1;
        }
    }

    #[inline]
    fn finish(
        &self,
        v: &Vals,
        ctx: &RecordCtx,
        opts: &StreamOptions,
        stats: &mut DecodeStats,
    ) -> FlowRecord {
        // IPv4 addresses are 4 bytes long.
        let src4 = v.get(Target::SrcV4) as u32;
        let dst4 = v.get(Target::DstV4) as u32;
        let use_v6 = self.has_v6 && (!self.has_v4 || (src4 == 0 && dst4 == 0));
        let (src, dst) = if use_v6 {
            (
                IpAddr::V6(v.v6(Target::SrcV6, SRC6_LO)),
                IpAddr::V6(v.v6(Target::DstV6, DST6_LO)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::from(src4)),
                IpAddr::V4(Ipv4Addr::from(dst4)),
            )
        };

        use Target::*;
        let mut start = v.time(StartMs, StartSec, StartUs, StartNs);
        let mut end = v.time(EndMs, EndSec, EndUs, EndNs);
        // Uptimes are 4 bytes long.
        let start_uptime_ms = v.opt(StartUptime).map(|t| t as u32);
        let end_uptime_ms = v.opt(EndUptime).map(|t| t as u32);
        let uses_uptime = (start.is_none() && start_uptime_ms.is_some())
            || (end.is_none() && end_uptime_ms.is_some());
        if uses_uptime {
            let sys_init = v.opt(SysInitMs).map(sat_i64).or(opts.sys_init_ms);
            if ctx.sys_uptime_ms.is_none() && sys_init.is_none() {
                stats.records_sys_init_unknown += 1;
            }
            let from_uptime = |rel: u32| -> Option<i64> {
                match ctx.sys_uptime_ms {
                    // v9: relative to the header's sysUpTime at export time.
                    Some(up) => Some(ctx.export_ms - i64::from(up.wrapping_sub(rel) as i32)),
                    // IPFIX: relative to systemInitTimeMilliseconds.
                    None => sys_init.map(|init| init.saturating_add(i64::from(rel))),
                }
            };
            start = start.or_else(|| start_uptime_ms.and_then(from_uptime));
            end = end.or_else(|| end_uptime_ms.and_then(from_uptime));
        }
        let (first_ms, mut last_ms) = match (start, end) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => (a, a),
            (None, Some(b)) => (b, b),
            (None, None) => {
                stats.records_time_fallback += 1;
                (ctx.export_ms, ctx.export_ms)
            }
        };
        if last_ms < first_ms {
            stats.records_time_inverted += 1;
            last_ms = first_ms;
        }
        let (first_ms, last_ms) = (
            first_ms.saturating_add(ctx.shift_ms),
            last_ms.saturating_add(ctx.shift_ms),
        );

        let sampling = match ctx.sampling_override {
            Some(n) => n,
            None => {
                let own = if self.has_sampling {
                    v.own_sampling()
                } else {
                    0
                };
                if own > 0 {
                    own
                } else {
                    v.opt(SamplerId)
                        .and_then(|id| {
                            opts.samplers
                                .iter()
                                .find(|(sid, _)| *sid == id)
                                .map(|(_, r)| *r)
                        })
                        .or(opts.sampling_default)
                        .unwrap_or(1)
                }
            }
        }
        .max(1);

        FlowRecord {
            exporter: ctx.exporter,
            domain: ctx.domain,
            kind: ctx.kind,
            first_ms,
            last_ms,
            src,
            dst,
            // Ports are at most 2 bytes long, the protocol and the
            // direction 1, interfaces 4.
            src_port: v.get(SrcPort) as u16,
            dst_port: v.get(DstPort) as u16,
            protocol: v.get(Protocol) as u8,
            direction: v
                .opt(Direction)
                .map_or(FlowDirection::Unknown, |d| FlowDirection::from_u8(d as u8)),
            in_if: sat_u32(v.get(InIf)),
            out_if: sat_u32(v.get(OutIf)),
            bytes_raw: v.get(Octets),
            packets_raw: v.get(Packets),
            sampling,
        }
    }
}

/// Stores what an options data record announces.
fn apply_options(v: &Vals, opts: &mut StreamOptions) {
    if let Some(init) = v.opt(Target::SysInitMs) {
        opts.sys_init_ms = Some(sat_i64(init));
    }
    let rate = v.own_sampling();
    if rate == 0 {
        return;
    }
    opts.sampling_default = Some(rate);
    if let Some(id) = v.opt(Target::SamplerId) {
        if let Some(slot) = opts.samplers.iter_mut().find(|(sid, _)| *sid == id) {
            slot.1 = rate;
        } else {
            if opts.samplers.len() >= MAX_SAMPLERS_PER_STREAM {
                opts.samplers.remove(0);
            }
            opts.samplers.push((id, rate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(element_id: u16, length: u16) -> FieldSpec {
        FieldSpec {
            element_id,
            enterprise: false,
            length,
            scope: false,
        }
    }

    #[test]
    fn wrong_lengths_reject_the_template() {
        for (ie, len) in [(8, 50), (8, 0), (4, 3), (27, 4), (7, 3), (10, 8), (152, 4)] {
            let r = Plan::compile(&[f(8, 4), f(ie, len)], false, true, 128);
            assert!(
                matches!(r, Err(TemplateProblem::BadFieldLength { .. })),
                "ie {ie} len {len}: {r:?}"
            );
        }
        // A variable length on a fixed-size element is wrong too.
        let r = Plan::compile(&[f(8, VARIABLE_LENGTH)], false, true, 128);
        assert!(matches!(r, Err(TemplateProblem::BadFieldLength { .. })));
        // In v9, 65535 is just a (too long) fixed length.
        let r = Plan::compile(&[f(8, 4), f(999, VARIABLE_LENGTH)], false, false, 128);
        assert_eq!(r.err(), Some(TemplateProblem::RecordTooLong));
    }

    #[test]
    fn preferred_elements_win() {
        // post octets (23) before octets (1): octets must win.
        let p = Plan::compile(&[f(8, 4), f(23, 4), f(1, 4)], false, false, 128).unwrap();
        let mut rec = vec![10, 0, 0, 1];
        rec.extend(7u32.to_be_bytes());
        rec.extend(99u32.to_be_bytes());
        let ctx = RecordCtx {
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            domain: 0,
            kind: SourceKind::NetflowV9,
            export_ms: 1000,
            sys_uptime_ms: Some(0),
            shift_ms: 0,
            sampling_override: None,
        };
        let mut flows = Vec::new();
        let mut stats = DecodeStats::default();
        let n = p.decode_set(
            &rec,
            &ctx,
            &mut StreamOptions::default(),
            &mut flows,
            &mut stats,
        );
        assert_eq!(n, 1);
        assert_eq!(flows[0].bytes_raw, 99);
        assert_eq!(stats.records_time_fallback, 1);
    }

    #[test]
    fn ntp_times_convert() {
        // 1970-01-01T00:00:01.5 in NTP format.
        let v = ((NTP_UNIX_OFFSET_S as u64 + 1) << 32) | 0x8000_0000;
        assert_eq!(ntp_to_ms(v), 1500);
    }
}
