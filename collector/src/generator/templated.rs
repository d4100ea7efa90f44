//! The machinery NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) share: a
//! template per address family, data sets in flow order, periodic template
//! resends, and a sampling options template plus options data record.
//!
//! [`V9Encoder`](super::V9Encoder) and [`IpfixEncoder`](super::IpfixEncoder)
//! are thin wrappers that pick a [`Flavor`]; the templates they announce
//! are built from the same field list that writes the records, so the two
//! cannot disagree.

use std::net::IpAddr;

use super::{
    DatagramBatch, GenError, StreamState, clamp_time, family_of, sat_u16, sat_u32, tcp_flags_of,
};
use crate::record::FlowRecord;

/// Width of the input/output interface fields (IE 10 / 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IfIndexWidth {
    /// 2 bytes, as classic Cisco v9 templates.
    Bytes2,
    /// 4 bytes (IPFIX `unsigned32`).
    Bytes4,
}

impl IfIndexWidth {
    fn len_bytes(self) -> u16 {
        match self {
            IfIndexWidth::Bytes2 => 2,
            IfIndexWidth::Bytes4 => 4,
        }
    }
}

/// One field of a data template: information element id and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateField {
    pub ie: u16,
    pub len_bytes: u16,
}

/// Which format, and therefore which header, set ids, times and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    V9,
    Ipfix,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::V9 => "netflow v9",
            Flavor::Ipfix => "ipfix",
        }
    }

    fn header_bytes(self) -> usize {
        match self {
            Flavor::V9 => 20,
            Flavor::Ipfix => 16,
        }
    }

    fn template_set_id(self) -> u16 {
        match self {
            Flavor::V9 => 0,
            Flavor::Ipfix => 2,
        }
    }

    fn options_template_set_id(self) -> u16 {
        match self {
            Flavor::V9 => 1,
            Flavor::Ipfix => 3,
        }
    }

    /// Counter width: u32 in v9 (like a router), u64 in IPFIX.
    fn counter_bytes(self) -> u16 {
        match self {
            Flavor::V9 => 4,
            Flavor::Ipfix => 8,
        }
    }
}

/// What a record field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    SrcAddr,
    DstAddr,
    NextHop,
    InIf,
    OutIf,
    Packets,
    Octets,
    /// v9: FIRST_SWITCHED / LAST_SWITCHED, uptime ms (u32).
    /// IPFIX: flowStartMilliseconds / flowEndMilliseconds (u64).
    Start,
    End,
    SrcPort,
    DstPort,
    TcpFlags,
    Protocol,
    Tos,
    Direction,
    SrcAs,
    DstAs,
}

pub(crate) const IE_OCTETS: u16 = 1;
pub(crate) const IE_PACKETS: u16 = 2;
pub(crate) const IE_PROTOCOL: u16 = 4;
pub(crate) const IE_TOS: u16 = 5;
pub(crate) const IE_TCP_FLAGS: u16 = 6;
pub(crate) const IE_SRC_PORT: u16 = 7;
pub(crate) const IE_SRC_ADDR4: u16 = 8;
pub(crate) const IE_IN_IF: u16 = 10;
pub(crate) const IE_DST_PORT: u16 = 11;
pub(crate) const IE_DST_ADDR4: u16 = 12;
pub(crate) const IE_OUT_IF: u16 = 14;
pub(crate) const IE_NEXT_HOP4: u16 = 15;
pub(crate) const IE_SRC_AS: u16 = 16;
pub(crate) const IE_DST_AS: u16 = 17;
pub(crate) const IE_LAST_SWITCHED: u16 = 21;
pub(crate) const IE_FIRST_SWITCHED: u16 = 22;
pub(crate) const IE_SRC_ADDR6: u16 = 27;
pub(crate) const IE_DST_ADDR6: u16 = 28;
pub(crate) const IE_SAMPLING_INTERVAL: u16 = 34;
pub(crate) const IE_SAMPLING_ALGORITHM: u16 = 35;
pub(crate) const IE_DIRECTION: u16 = 61;
pub(crate) const IE_NEXT_HOP6: u16 = 62;
pub(crate) const IE_OBSERVATION_DOMAIN: u16 = 149;
pub(crate) const IE_FLOW_START_MS: u16 = 152;
pub(crate) const IE_FLOW_END_MS: u16 = 153;
/// v9 options scope type "System".
const V9_SCOPE_SYSTEM: u16 = 1;
/// samplingAlgorithm 1: deterministic 1-in-N.
const SAMPLING_ALGORITHM_DETERMINISTIC: u8 = 1;
/// Options data record: scope (4) + samplingInterval (4) + algorithm (1).
const OPTIONS_RECORD_BYTES: usize = 9;

/// Largest record any layout produces (IPv6, 4-byte everything).
const MAX_RECORD_BYTES: usize = 128;

/// A data template: its fields in wire order, with their ids and lengths.
#[derive(Debug, Clone)]
struct Layout {
    template_id: u16,
    fields: Vec<(Field, TemplateField)>,
    record_bytes: usize,
}

impl Layout {
    fn new(flavor: Flavor, v6: bool, template_id: u16, ifindex: IfIndexWidth) -> Layout {
        let (addr_len, src_ie, dst_ie, hop_ie) = if v6 {
            (16, IE_SRC_ADDR6, IE_DST_ADDR6, IE_NEXT_HOP6)
        } else {
            (4, IE_SRC_ADDR4, IE_DST_ADDR4, IE_NEXT_HOP4)
        };
        let if_len = ifindex.len_bytes();
        let counter_len = flavor.counter_bytes();
        let (start_ie, end_ie, time_len) = match flavor {
            Flavor::V9 => (IE_FIRST_SWITCHED, IE_LAST_SWITCHED, 4),
            Flavor::Ipfix => (IE_FLOW_START_MS, IE_FLOW_END_MS, 8),
        };
        let mut spec = vec![
            (Field::SrcAddr, src_ie, addr_len),
            (Field::DstAddr, dst_ie, addr_len),
            (Field::NextHop, hop_ie, addr_len),
            (Field::InIf, IE_IN_IF, if_len),
            (Field::OutIf, IE_OUT_IF, if_len),
            (Field::Packets, IE_PACKETS, counter_len),
            (Field::Octets, IE_OCTETS, counter_len),
            (Field::Start, start_ie, time_len),
            (Field::End, end_ie, time_len),
            (Field::SrcPort, IE_SRC_PORT, 2),
            (Field::DstPort, IE_DST_PORT, 2),
            (Field::TcpFlags, IE_TCP_FLAGS, 1),
            (Field::Protocol, IE_PROTOCOL, 1),
            (Field::Tos, IE_TOS, 1),
            (Field::Direction, IE_DIRECTION, 1),
        ];
        if flavor == Flavor::V9 {
            // Like a router without BGP: AS fields present, zero.
            spec.push((Field::SrcAs, IE_SRC_AS, 2));
            spec.push((Field::DstAs, IE_DST_AS, 2));
        }
        let fields: Vec<(Field, TemplateField)> = spec
            .into_iter()
            .map(|(f, ie, len_bytes)| (f, TemplateField { ie, len_bytes }))
            .collect();
        let record_bytes = fields.iter().map(|(_, t)| usize::from(t.len_bytes)).sum();
        Layout {
            template_id,
            fields,
            record_bytes,
        }
    }

    /// Template record: id, field count, (ie, length)*.
    fn write_template(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.template_id.to_be_bytes());
        buf.extend_from_slice(&(self.fields.len() as u16).to_be_bytes());
        for (_, t) in &self.fields {
            buf.extend_from_slice(&t.ie.to_be_bytes());
            buf.extend_from_slice(&t.len_bytes.to_be_bytes());
        }
    }

    fn template_bytes(&self) -> usize {
        4 + 4 * self.fields.len()
    }
}

/// Per-flow values after clamping, ready to write.
struct Values {
    start: u64,
    end: u64,
    packets: u64,
    octets: u64,
    in_if: u32,
    out_if: u32,
}

/// Settings shared by [`V9Config`](super::V9Config) and
/// [`IpfixConfig`](super::IpfixConfig), after validation.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub domain: u32,
    pub boot_ms: i64,
    pub max_flows_per_datagram: u16,
    pub max_datagram_bytes: u16,
    pub template_resend_every_datagrams: u32,
    pub ifindex_width: IfIndexWidth,
    pub sampling_interval: u32,
    pub template_id_v4: u16,
    pub template_id_v6: u16,
    pub template_id_options: u16,
}

/// The encoder both v9 and IPFIX are.
#[derive(Debug, Clone)]
pub(crate) struct Templated {
    flavor: Flavor,
    pub(crate) settings: Settings,
    v4: Layout,
    v6: Layout,
    /// v9: export datagrams before this one; IPFIX: data records before.
    sequence: u32,
    /// Datagram index of the last template resend; `None` = due now.
    last_template_index: Option<u64>,
    pub(crate) stream: StreamState,
}

/// Open datagram: where it starts, what is in it.
struct Open {
    start: usize,
    flows: u16,
    /// Template and options template records.
    template_records: u16,
    /// Options data records (count toward the IPFIX sequence).
    options_data_records: u16,
    with_templates: bool,
    /// Open data set: (start offset, is IPv6).
    set: Option<(usize, bool)>,
}

impl Templated {
    pub(crate) fn new(flavor: Flavor, settings: Settings) -> Result<Templated, GenError> {
        let name = flavor.name();
        let ids = [
            ("template_id_v4", settings.template_id_v4),
            ("template_id_v6", settings.template_id_v6),
            ("template_id_options", settings.template_id_options),
        ];
        for (i, (key, id)) in ids.iter().enumerate() {
            if *id < 256 {
                return Err(GenError::config(name, key, "template ids start at 256"));
            }
            if ids[..i].iter().any(|(_, other)| other == id) {
                return Err(GenError::config(name, key, format!("{id} is used twice")));
            }
        }
        if settings.max_flows_per_datagram == 0 {
            return Err(GenError::config(
                name,
                "max_flows_per_datagram",
                "must be >= 1",
            ));
        }
        if settings.template_resend_every_datagrams == 0 {
            return Err(GenError::config(
                name,
                "template_resend_every_datagrams",
                "must be >= 1",
            ));
        }
        if settings.sampling_interval == 0 {
            return Err(GenError::config(
                name,
                "sampling_interval",
                "must be >= 1 (1 = unsampled)",
            ));
        }
        let v4 = Layout::new(
            flavor,
            false,
            settings.template_id_v4,
            settings.ifindex_width,
        );
        let v6 = Layout::new(
            flavor,
            true,
            settings.template_id_v6,
            settings.ifindex_width,
        );
        let t = Templated {
            flavor,
            settings,
            v4,
            v6,
            sequence: 0,
            last_template_index: None,
            stream: StreamState::default(),
        };
        // The fullest datagram must still fit one IPv6 record.
        let need = t.templates_bytes() + 4 + t.v6.record_bytes;
        let max = usize::from(t.settings.max_datagram_bytes);
        if need > max || max > usize::from(super::MAX_DATAGRAM_BYTES) {
            return Err(GenError::config(
                name,
                "max_datagram_bytes",
                format!(
                    "must be {need}..={} (header, templates and one IPv6 record)",
                    super::MAX_DATAGRAM_BYTES
                ),
            ));
        }
        Ok(t)
    }

    pub(crate) fn template_fields(&self, v6: bool) -> Vec<TemplateField> {
        let layout = if v6 { &self.v6 } else { &self.v4 };
        layout.fields.iter().map(|(_, t)| *t).collect()
    }

    fn sampled(&self) -> bool {
        self.settings.sampling_interval > 1
    }

    /// Header plus everything a template datagram carries before data.
    fn templates_bytes(&self) -> usize {
        let mut n =
            self.flavor.header_bytes() + 4 + self.v4.template_bytes() + self.v6.template_bytes();
        if self.sampled() {
            n += 24 + 16; // options template set + options data set, padded
        }
        n
    }

    pub(crate) fn restart(&mut self, boot_ms: i64) {
        self.settings.boot_ms = boot_ms;
        self.sequence = 0;
        self.last_template_index = None;
    }

    fn templates_due(&self) -> bool {
        match self.last_template_index {
            None => true,
            Some(last) => {
                self.stream.next_datagram_index.saturating_sub(last)
                    >= u64::from(self.settings.template_resend_every_datagrams)
            }
        }
    }

    /// Header fields fixed for one `encode_into` call: v9 rounds the export
    /// time up to a whole second so that `unix_secs` and `sys_uptime` name
    /// the same instant and decoded times are exact to the millisecond.
    /// Returns (header template, export instant ms).
    fn header(&self, export_time_ms: i64) -> Result<([u8; 20], i64), GenError> {
        let err = |problem| GenError::ExportTime {
            encoder: self.flavor.name(),
            export_time_ms,
            problem,
        };
        let mut h = [0u8; 20];
        match self.flavor {
            Flavor::V9 => {
                let secs = export_time_ms.div_euclid(1000)
                    + i64::from(export_time_ms.rem_euclid(1000) != 0);
                let unix_secs = u32::try_from(secs)
                    .map_err(|_| err("outside unix_secs (u32 seconds since 1970)"))?;
                let instant_ms = secs * 1000;
                if instant_ms < self.settings.boot_ms {
                    return Err(err("before the exporter booted (boot_ms)"));
                }
                let uptime_ms = instant_ms.wrapping_sub(self.settings.boot_ms) as u32;
                h[0..2].copy_from_slice(&9u16.to_be_bytes());
                h[4..8].copy_from_slice(&uptime_ms.to_be_bytes());
                h[8..12].copy_from_slice(&unix_secs.to_be_bytes());
                h[16..20].copy_from_slice(&self.settings.domain.to_be_bytes());
                Ok((h, instant_ms))
            }
            Flavor::Ipfix => {
                let unix_secs = u32::try_from(export_time_ms.div_euclid(1000))
                    .map_err(|_| err("outside exportTime (u32 seconds since 1970)"))?;
                h[0..2].copy_from_slice(&10u16.to_be_bytes());
                h[4..8].copy_from_slice(&unix_secs.to_be_bytes());
                h[12..16].copy_from_slice(&self.settings.domain.to_be_bytes());
                Ok((h, export_time_ms))
            }
        }
    }

    fn open_datagram(&mut self, out: &mut DatagramBatch, header: &[u8]) -> Open {
        let start = out.buf().len();
        out.buf().extend_from_slice(header);
        let mut open = Open {
            start,
            flows: 0,
            template_records: 0,
            options_data_records: 0,
            with_templates: false,
            set: None,
        };
        if self.templates_due() {
            self.last_template_index = Some(self.stream.next_datagram_index);
            open.with_templates = true;
            self.write_templates(out.buf(), &mut open);
        }
        open
    }

    fn write_templates(&self, buf: &mut Vec<u8>, open: &mut Open) {
        let set_start = buf.len();
        buf.extend_from_slice(&self.flavor.template_set_id().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        self.v4.write_template(buf);
        self.v6.write_template(buf);
        close_set(buf, set_start);
        open.template_records += 2;
        if !self.sampled() {
            return;
        }
        // Options template: scope = the exporter (v9 System / IPFIX
        // observationDomainId), options = samplingInterval, samplingAlgorithm.
        let set_start = buf.len();
        buf.extend_from_slice(&self.flavor.options_template_set_id().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&self.settings.template_id_options.to_be_bytes());
        let scope_ie = match self.flavor {
            Flavor::V9 => {
                buf.extend_from_slice(&4u16.to_be_bytes()); // scope length, bytes
                buf.extend_from_slice(&8u16.to_be_bytes()); // options length, bytes
                V9_SCOPE_SYSTEM
            }
            Flavor::Ipfix => {
                buf.extend_from_slice(&3u16.to_be_bytes()); // field count
                buf.extend_from_slice(&1u16.to_be_bytes()); // scope field count
                IE_OBSERVATION_DOMAIN
            }
        };
        for (ie, len) in [
            (scope_ie, 4u16),
            (IE_SAMPLING_INTERVAL, 4),
            (IE_SAMPLING_ALGORITHM, 1),
        ] {
            buf.extend_from_slice(&ie.to_be_bytes());
            buf.extend_from_slice(&len.to_be_bytes());
        }
        close_set(buf, set_start);
        // Options data: one record.
        let set_start = buf.len();
        buf.extend_from_slice(&self.settings.template_id_options.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&self.settings.domain.to_be_bytes());
        buf.extend_from_slice(&self.settings.sampling_interval.to_be_bytes());
        buf.push(SAMPLING_ALGORITHM_DETERMINISTIC);
        debug_assert_eq!(buf.len() - set_start, 4 + OPTIONS_RECORD_BYTES);
        close_set(buf, set_start);
        open.template_records += 1;
        open.options_data_records += 1;
    }

    fn finish(&mut self, out: &mut DatagramBatch, mut open: Open) {
        let buf = out.buf();
        if let Some((set_start, _)) = open.set.take() {
            close_set(buf, set_start);
        }
        let start = open.start;
        let sequence = self.sequence;
        match self.flavor {
            Flavor::V9 => {
                // Every record counts: templates, options, data.
                let count = open.flows + open.template_records + open.options_data_records;
                buf[start + 2..start + 4].copy_from_slice(&count.to_be_bytes());
                buf[start + 12..start + 16].copy_from_slice(&sequence.to_be_bytes());
                self.sequence = sequence.wrapping_add(1);
            }
            Flavor::Ipfix => {
                let len = (buf.len() - start) as u16;
                buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
                buf[start + 8..start + 12].copy_from_slice(&sequence.to_be_bytes());
                let records = u32::from(open.flows) + u32::from(open.options_data_records);
                self.sequence = sequence.wrapping_add(records);
            }
        }
        self.stream.finish(
            out,
            start,
            u32::from(open.flows),
            sequence,
            open.with_templates,
        );
    }

    pub(crate) fn encode_into(
        &mut self,
        flows: &[FlowRecord],
        export_time_ms: i64,
        out: &mut DatagramBatch,
    ) -> Result<(), GenError> {
        let (header, instant_ms) = self.header(export_time_ms)?;
        let header = &header[..self.flavor.header_bytes()];
        let lo_ms = match self.flavor {
            Flavor::V9 => instant_ms.saturating_sub(i64::from(u32::MAX)),
            Flavor::Ipfix => 0,
        };
        let max_flows = self.settings.max_flows_per_datagram;
        let max_bytes = usize::from(self.settings.max_datagram_bytes);
        let mut clamped = 0u64;
        let mut open: Option<Open> = None;
        out.buf()
            .reserve(flows.len() * (self.v4.record_bytes + 2) + self.templates_bytes());
        let mut rec = [0u8; MAX_RECORD_BYTES];
        for f in flows {
            let Some(v6) = family_of(f) else {
                self.stream.stats.flows_unrepresentable += 1;
                continue;
            };
            let layout_bytes = if v6 {
                self.v6.record_bytes
            } else {
                self.v4.record_bytes
            };
            // Room for the record (and a new set header if the family changes)?
            let fits = |o: &Open, len: usize| {
                let set_hdr = if matches!(o.set, Some((_, s)) if s == v6) {
                    0
                } else {
                    4
                };
                o.flows < max_flows && len + set_hdr + layout_bytes <= max_bytes
            };
            let mut o = match open.take() {
                Some(o) if fits(&o, out.buf().len() - o.start) => o,
                other => {
                    if let Some(o) = other {
                        self.finish(out, o);
                    }
                    self.open_datagram(out, header)
                }
            };
            let buf = out.buf();
            match o.set {
                Some((_, s)) if s == v6 => {}
                prev => {
                    if let Some((set_start, _)) = prev {
                        close_set(buf, set_start);
                    }
                    let layout = if v6 { &self.v6 } else { &self.v4 };
                    o.set = Some((buf.len(), v6));
                    buf.extend_from_slice(&layout.template_id.to_be_bytes());
                    buf.extend_from_slice(&[0, 0]);
                }
            }
            let values = self.values(f, instant_ms, lo_ms, &mut clamped);
            let layout = if v6 { &self.v6 } else { &self.v4 };
            let n = write_record(layout, f, &values, &mut rec);
            buf.extend_from_slice(&rec[..n]);
            o.flows += 1;
            open = Some(o);
        }
        if let Some(o) = open {
            self.finish(out, o);
        }
        self.stream.stats.values_clamped += clamped;
        Ok(())
    }

    fn values(&self, f: &FlowRecord, instant_ms: i64, lo_ms: i64, clamped: &mut u64) -> Values {
        let first_ms = clamp_time(f.first_ms, lo_ms, instant_ms.max(lo_ms), clamped);
        let last_ms = clamp_time(f.last_ms, lo_ms, instant_ms.max(lo_ms), clamped);
        let (start, end, packets, octets) = match self.flavor {
            Flavor::V9 => {
                let boot = self.settings.boot_ms;
                (
                    u64::from(first_ms.wrapping_sub(boot) as u32),
                    u64::from(last_ms.wrapping_sub(boot) as u32),
                    u64::from(sat_u32(f.packets_raw, clamped)),
                    u64::from(sat_u32(f.bytes_raw, clamped)),
                )
            }
            // lo_ms = 0 here, so both are >= 0.
            Flavor::Ipfix => (first_ms as u64, last_ms as u64, f.packets_raw, f.bytes_raw),
        };
        let (in_if, out_if) = match self.settings.ifindex_width {
            IfIndexWidth::Bytes2 => (
                u32::from(sat_u16(f.in_if, clamped)),
                u32::from(sat_u16(f.out_if, clamped)),
            ),
            IfIndexWidth::Bytes4 => (f.in_if, f.out_if),
        };
        Values {
            start,
            end,
            packets,
            octets,
            in_if,
            out_if,
        }
    }

    /// What a collector decodes from `flow` (see [`super::Encoder::expected`]).
    pub(crate) fn expected(&self, flow: &FlowRecord) -> Option<FlowRecord> {
        family_of(flow)?;
        let mut ignored = 0;
        let mut r = *flow;
        if self.flavor == Flavor::V9 {
            r.bytes_raw = u64::from(sat_u32(flow.bytes_raw, &mut ignored));
            r.packets_raw = u64::from(sat_u32(flow.packets_raw, &mut ignored));
        }
        if self.settings.ifindex_width == IfIndexWidth::Bytes2 {
            r.in_if = u32::from(sat_u16(flow.in_if, &mut ignored));
            r.out_if = u32::from(sat_u16(flow.out_if, &mut ignored));
        }
        r.domain = self.settings.domain;
        r.sampling = self.settings.sampling_interval.max(1);
        Some(r)
    }
}

/// Patches a set's length and pads it to a multiple of 4 bytes.
fn close_set(buf: &mut Vec<u8>, set_start: usize) {
    while !(buf.len() - set_start).is_multiple_of(4) {
        buf.push(0);
    }
    let len = (buf.len() - set_start) as u16;
    buf[set_start + 2..set_start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes `f` per `layout` into `rec`; returns the record length.
fn write_record(
    layout: &Layout,
    f: &FlowRecord,
    v: &Values,
    rec: &mut [u8; MAX_RECORD_BYTES],
) -> usize {
    let mut at = 0usize;
    for (field, t) in &layout.fields {
        let len = usize::from(t.len_bytes);
        let dst = &mut rec[at..at + len];
        match field {
            Field::SrcAddr => put_addr(dst, f.src),
            Field::DstAddr => put_addr(dst, f.dst),
            Field::NextHop | Field::Tos | Field::SrcAs | Field::DstAs => dst.fill(0),
            Field::InIf => put_uint(dst, u64::from(v.in_if)),
            Field::OutIf => put_uint(dst, u64::from(v.out_if)),
            Field::Packets => put_uint(dst, v.packets),
            Field::Octets => put_uint(dst, v.octets),
            Field::Start => put_uint(dst, v.start),
            Field::End => put_uint(dst, v.end),
            Field::SrcPort => put_uint(dst, u64::from(f.src_port)),
            Field::DstPort => put_uint(dst, u64::from(f.dst_port)),
            Field::TcpFlags => put_uint(dst, u64::from(tcp_flags_of(f))),
            Field::Protocol => put_uint(dst, u64::from(f.protocol)),
            Field::Direction => put_uint(dst, f.direction as u64),
        }
        at += len;
    }
    at
}

/// Big-endian low `dst.len()` bytes of `v` (callers clamp beforehand).
#[inline]
fn put_uint(dst: &mut [u8], v: u64) {
    let bytes = v.to_be_bytes();
    dst.copy_from_slice(&bytes[8 - dst.len()..]);
}

#[inline]
fn put_addr(dst: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(a) => dst.copy_from_slice(&a.octets()),
        IpAddr::V6(a) => dst.copy_from_slice(&a.octets()),
    }
}
