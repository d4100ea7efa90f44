//! Why a datagram or a template was refused.
//!
//! [`DecodeError`] is returned by [`super::Decoder::decode`] when a whole
//! datagram is dropped. The template variants ([`DecodeError::BadTemplate`],
//! [`DecodeError::TemplateLimit`]) never end a decode call: a refused template
//! does not spoil the other sets of its datagram. They are the reasons
//! counted in [`super::DecodeStats::template_rejects`].

/// What was wrong with one template record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateProblem {
    /// The template record runs past the end of its set.
    Truncated,
    /// More fields than [`super::DecodeLimits::max_fields_per_template`].
    TooManyFields(u16),
    /// A field length that cannot be right for its element: a 50-byte IPv4
    /// address, a zero-length field, a 3-byte protocol.
    BadFieldLength { element_id: u16, length: u16 },
    /// Every field has length 0: a data loop could never advance.
    ZeroRecordLength,
    /// The record can never fit into a set (longer than 65,531 bytes).
    RecordTooLong,
    /// Options template with scope count 0, more scope fields than fields,
    /// or scope/option lengths that are not multiples of 4 (v9).
    BadScope,
    /// Template id below 256 (ids 0-255 are reserved for set ids).
    BadTemplateId(u16),
    /// v9 template with field count 0 (v9 has no withdrawal).
    NoFields,
}

impl TemplateProblem {
    /// Short stable snake_case label.
    pub fn reason(&self) -> &'static str {
        match self {
            TemplateProblem::Truncated => "template_truncated",
            TemplateProblem::TooManyFields(_) => "too_many_fields",
            TemplateProblem::BadFieldLength { .. } => "bad_field_length",
            TemplateProblem::ZeroRecordLength => "zero_record_length",
            TemplateProblem::RecordTooLong => "record_too_long",
            TemplateProblem::BadScope => "bad_scope",
            TemplateProblem::BadTemplateId(_) => "bad_template_id",
            TemplateProblem::NoFields => "no_fields",
        }
    }
}

impl std::fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateProblem::Truncated => write!(f, "template record runs past its set"),
            TemplateProblem::TooManyFields(n) => write!(f, "{n} fields is over the limit"),
            TemplateProblem::BadFieldLength { element_id, length } => {
                write!(f, "length {length} is wrong for element {element_id}")
            }
            TemplateProblem::ZeroRecordLength => write!(f, "record length is 0"),
            TemplateProblem::RecordTooLong => write!(f, "record longer than any set"),
            TemplateProblem::BadScope => write!(f, "bad options scope"),
            TemplateProblem::BadTemplateId(id) => write!(f, "template id {id} is reserved"),
            TemplateProblem::NoFields => write!(f, "template without fields"),
        }
    }
}

/// Which template cap was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// [`super::DecodeLimits::max_templates_per_exporter`].
    Exporter,
    /// [`super::DecodeLimits::max_templates_total`].
    Total,
}

/// One variant per drop reason; [`DecodeError::reason`] is its counter label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its fixed header (or than 2 bytes of version).
    #[error("datagram truncated")]
    Truncated,
    /// Not NetFlow v5 (5), v9 (9) or IPFIX (10).
    #[error("unsupported version {0}")]
    WrongVersion(u16),
    /// v5 record count outside 1..=30.
    #[error("v5 record count {0} outside 1..=30")]
    BadCount(u16),
    /// Declared length disagrees with the datagram (v5: 24 + 48 × count;
    /// IPFIX: message length below 16 or beyond the datagram).
    #[error("declared length {declared_bytes} does not fit datagram of {actual_bytes} bytes")]
    BadLength {
        declared_bytes: usize,
        actual_bytes: usize,
    },
    /// A (flow)set header with length below 4 or past the end of the message.
    #[error("set with length {0} is malformed")]
    BadSetLength(u16),
    /// A new export stream would exceed [`super::DecodeLimits::max_streams`].
    #[error("too many export streams")]
    StreamLimit,
    /// The same sequence number and record count as a datagram already seen:
    /// its flows are dropped so that nothing is billed twice.
    #[error("duplicate datagram")]
    Duplicate,
    /// A stream the decoder had just made was not there (should not
    /// happen).
    #[error("malformed")]
    Malformed,
    /// (template) A template record was refused.
    #[error("template refused: {0}")]
    BadTemplate(TemplateProblem),
    /// (template) A new template would exceed a template cap.
    #[error("template limit reached ({0:?})")]
    TemplateLimit(LimitScope),
}

impl DecodeError {
    /// Short stable snake_case label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::WrongVersion(_) => "wrong_version",
            DecodeError::BadCount(_) => "bad_count",
            DecodeError::BadLength { .. } => "bad_length",
            DecodeError::BadSetLength(_) => "bad_set_length",
            DecodeError::StreamLimit => "stream_limit",
            DecodeError::Duplicate => "duplicate",
            DecodeError::Malformed => "malformed",
            DecodeError::BadTemplate(p) => p.reason(),
            DecodeError::TemplateLimit(LimitScope::Exporter) => "template_limit_exporter",
            DecodeError::TemplateLimit(LimitScope::Total) => "template_limit_total",
        }
    }
}
