//! Counters of the decoder: every datagram, template, record and hole it
//! saw, kept, refused or lost. Plain `u64`s with fixed field names, so the
//! stats file and the operator see the same stable labels as
//! [`super::DecodeError::reason`].

use serde::{Deserialize, Serialize};

use super::error::{DecodeError, LimitScope, TemplateProblem};

/// Datagrams dropped whole, by [`DecodeError::reason`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DropCounts {
    pub truncated: u64,
    pub wrong_version: u64,
    pub bad_count: u64,
    pub bad_length: u64,
    pub bad_set_length: u64,
    pub stream_limit: u64,
    pub duplicate: u64,
    pub malformed: u64,
}

/// Templates refused, by [`DecodeError::reason`] of the refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateRejectCounts {
    pub template_truncated: u64,
    pub too_many_fields: u64,
    pub bad_field_length: u64,
    pub zero_record_length: u64,
    pub record_too_long: u64,
    pub bad_scope: u64,
    pub bad_template_id: u64,
    pub no_fields: u64,
    pub template_limit_exporter: u64,
    pub template_limit_total: u64,
}

/// Everything the decoder counts. Counters only grow; the `*_current`
/// fields are gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecodeStats {
    /// Datagrams accepted (header and set structure valid), by version.
    pub datagrams_v5: u64,
    pub datagrams_v9: u64,
    pub datagrams_ipfix: u64,
    /// Datagrams dropped whole (sum of `dropped`).
    pub datagrams_dropped: u64,
    pub dropped: DropCounts,
    /// Flow records appended to the caller's vector.
    pub flows_decoded: u64,
    /// Options data records read (sampling, system init time).
    pub options_records: u64,
    /// Data records skipped: their template has no address field.
    pub records_no_address: u64,
    /// Variable-length data records cut off by the end of their set.
    pub records_truncated: u64,
    /// Records without usable time fields: export time used for both ends.
    pub records_time_fallback: u64,
    /// IPFIX records with sysUpTime-relative times but no known
    /// systemInitTimeMilliseconds: export time used (also in
    /// `records_time_fallback`).
    pub records_sys_init_unknown: u64,
    /// Records whose end time was before their start (end set to start).
    pub records_time_inverted: u64,
    /// v9 flowsets / IPFIX sets with reserved ids (skipped).
    pub sets_reserved_skipped: u64,
    /// Bytes after the last set that could not hold a set header, or after
    /// the IPFIX message length.
    pub trailing_bytes: u64,

    pub templates_learned: u64,
    /// Same id re-sent with the same layout.
    pub templates_refreshed: u64,
    /// Same id re-sent with another layout (replaced).
    pub templates_changed: u64,
    pub templates_withdrawn: u64,
    /// Sum of `template_rejects`.
    pub templates_rejected: u64,
    pub template_rejects: TemplateRejectCounts,
    /// Removed with an idle stream evicted to make room for a new one.
    pub templates_evicted: u64,

    /// Data sets held because their template was not known yet.
    pub held_sets: u64,
    pub held_bytes: u64,
    /// Held sets decoded once their template arrived, and their records.
    pub held_sets_decoded: u64,
    pub held_records_decoded: u64,
    /// Held sets dropped: template never came within the hold time, the
    /// pending limits were full, or the exporter was forgotten. Their record
    /// count is unknowable.
    pub held_sets_dropped: u64,
    pub held_bytes_dropped: u64,
    /// Of `held_sets_dropped`: refused at arrival because a pending byte
    /// limit was reached.
    pub held_sets_overflow: u64,

    /// Final sequence gaps (one loss record each) and what they lost.
    pub gaps: u64,
    pub lost_flows: u64,
    pub lost_packets: u64,
    /// Exporter restarts (sequence or uptime went back).
    pub resets: u64,
    /// Datagrams that arrived behind the expected sequence number.
    pub reordered: u64,
    /// Datagrams seen twice (same sequence and record count): dropped.
    pub duplicates: u64,
    /// IPFIX streams found numbering their messages other than RFC 7011
    /// says (learned and converted, see `SeqConvention`).
    pub sequence_dialects: u64,
    /// Streams removed (idle, to make room) and exporters forgotten.
    pub streams_evicted: u64,
    pub exporters_forgotten: u64,

    /// Gauges.
    pub templates_current: u64,
    pub pending_bytes_current: u64,
    pub streams_current: u64,
}

impl DropCounts {
    /// Adds `other` field by field (gauges too: sums over decoders).
    pub fn add(&mut self, other: &DropCounts) {
        let DropCounts {
            truncated,
            wrong_version,
            bad_count,
            bad_length,
            bad_set_length,
            stream_limit,
            duplicate,
            malformed,
        } = other;
        self.truncated += *truncated;
        self.wrong_version += *wrong_version;
        self.bad_count += *bad_count;
        self.bad_length += *bad_length;
        self.bad_set_length += *bad_set_length;
        self.stream_limit += *stream_limit;
        self.duplicate += *duplicate;
        self.malformed += *malformed;
    }
}

impl TemplateRejectCounts {
    /// Adds `other` field by field (gauges too: sums over decoders).
    pub fn add(&mut self, other: &TemplateRejectCounts) {
        let TemplateRejectCounts {
            template_truncated,
            too_many_fields,
            bad_field_length,
            zero_record_length,
            record_too_long,
            bad_scope,
            bad_template_id,
            no_fields,
            template_limit_exporter,
            template_limit_total,
        } = other;
        self.template_truncated += *template_truncated;
        self.too_many_fields += *too_many_fields;
        self.bad_field_length += *bad_field_length;
        self.zero_record_length += *zero_record_length;
        self.record_too_long += *record_too_long;
        self.bad_scope += *bad_scope;
        self.bad_template_id += *bad_template_id;
        self.no_fields += *no_fields;
        self.template_limit_exporter += *template_limit_exporter;
        self.template_limit_total += *template_limit_total;
    }
}

impl DecodeStats {
    /// Adds `other` field by field (gauges too: sums over decoders).
    pub fn add(&mut self, other: &DecodeStats) {
        let DecodeStats {
            datagrams_v5,
            datagrams_v9,
            datagrams_ipfix,
            datagrams_dropped,
            dropped,
            flows_decoded,
            options_records,
            records_no_address,
            records_truncated,
            records_time_fallback,
            records_sys_init_unknown,
            records_time_inverted,
            sets_reserved_skipped,
            trailing_bytes,
            templates_learned,
            templates_refreshed,
            templates_changed,
            templates_withdrawn,
            templates_rejected,
            template_rejects,
            templates_evicted,
            held_sets,
            held_bytes,
            held_sets_decoded,
            held_records_decoded,
            held_sets_dropped,
            held_bytes_dropped,
            held_sets_overflow,
            gaps,
            lost_flows,
            lost_packets,
            resets,
            reordered,
            duplicates,
            sequence_dialects,
            streams_evicted,
            exporters_forgotten,
            templates_current,
            pending_bytes_current,
            streams_current,
        } = other;
        self.datagrams_v5 += *datagrams_v5;
        self.datagrams_v9 += *datagrams_v9;
        self.datagrams_ipfix += *datagrams_ipfix;
        self.datagrams_dropped += *datagrams_dropped;
        self.dropped.add(dropped);
        self.flows_decoded += *flows_decoded;
        self.options_records += *options_records;
        self.records_no_address += *records_no_address;
        self.records_truncated += *records_truncated;
        self.records_time_fallback += *records_time_fallback;
        self.records_sys_init_unknown += *records_sys_init_unknown;
        self.records_time_inverted += *records_time_inverted;
        self.sets_reserved_skipped += *sets_reserved_skipped;
        self.trailing_bytes += *trailing_bytes;
        self.templates_learned += *templates_learned;
        self.templates_refreshed += *templates_refreshed;
        self.templates_changed += *templates_changed;
        self.templates_withdrawn += *templates_withdrawn;
        self.templates_rejected += *templates_rejected;
        self.template_rejects.add(template_rejects);
        self.templates_evicted += *templates_evicted;
        self.held_sets += *held_sets;
        self.held_bytes += *held_bytes;
        self.held_sets_decoded += *held_sets_decoded;
        self.held_records_decoded += *held_records_decoded;
        self.held_sets_dropped += *held_sets_dropped;
        self.held_bytes_dropped += *held_bytes_dropped;
        self.held_sets_overflow += *held_sets_overflow;
        self.gaps += *gaps;
        self.lost_flows += *lost_flows;
        self.lost_packets += *lost_packets;
        self.resets += *resets;
        self.reordered += *reordered;
        self.duplicates += *duplicates;
        self.sequence_dialects += *sequence_dialects;
        self.streams_evicted += *streams_evicted;
        self.exporters_forgotten += *exporters_forgotten;
        self.templates_current += *templates_current;
        self.pending_bytes_current += *pending_bytes_current;
        self.streams_current += *streams_current;
    }
}

impl DecodeStats {
    /// Counts one datagram dropped whole.
    pub(crate) fn count_drop(&mut self, e: &DecodeError) {
        self.datagrams_dropped += 1;
        let d = &mut self.dropped;
        let slot = match e {
            DecodeError::Truncated => &mut d.truncated,
            DecodeError::WrongVersion(_) => &mut d.wrong_version,
            DecodeError::BadCount(_) => &mut d.bad_count,
            DecodeError::BadLength { .. } => &mut d.bad_length,
            DecodeError::BadSetLength(_) => &mut d.bad_set_length,
            DecodeError::StreamLimit => &mut d.stream_limit,
            DecodeError::Duplicate => &mut d.duplicate,
            DecodeError::Malformed
            | DecodeError::BadTemplate(_)
            | DecodeError::TemplateLimit(_) => &mut d.malformed,
        };
        *slot += 1;
    }

    /// Counts one refused template.
    pub(crate) fn count_template_reject(&mut self, e: &DecodeError) {
        self.templates_rejected += 1;
        let r = &mut self.template_rejects;
        let slot = match e {
            DecodeError::BadTemplate(p) => match p {
                TemplateProblem::Truncated => &mut r.template_truncated,
                TemplateProblem::TooManyFields(_) => &mut r.too_many_fields,
                TemplateProblem::BadFieldLength { .. } => &mut r.bad_field_length,
                TemplateProblem::ZeroRecordLength => &mut r.zero_record_length,
                TemplateProblem::RecordTooLong => &mut r.record_too_long,
                TemplateProblem::BadScope => &mut r.bad_scope,
                TemplateProblem::BadTemplateId(_) => &mut r.bad_template_id,
                TemplateProblem::NoFields => &mut r.no_fields,
            },
            DecodeError::TemplateLimit(LimitScope::Exporter) => &mut r.template_limit_exporter,
            DecodeError::TemplateLimit(LimitScope::Total) => &mut r.template_limit_total,
            _ => &mut r.template_truncated,
        };
        *slot += 1;
    }
}
