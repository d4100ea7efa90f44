//! Template and options-template sets of NetFlow v9 (flowset ids 0, 1) and
//! IPFIX (set ids 2, 3), read into [`TemplateEvent`]s.
//!
//! Inputs: the body of one template set (after its 4-byte header).
//! Outputs: one event per template record: defined (with its compiled
//! [`Plan`]), withdrawn, or rejected with the reason.
//! Never: trusts a count or length without checking it against the bytes
//! that are there; reads past the set; keeps parsing a set after a record
//! whose end cannot be known.

use super::error::TemplateProblem;
use super::plan::{FieldSpec, Plan, layout_hash};
use super::wire::be16;

/// Set ids that carry templates.
pub(crate) const V9_TEMPLATE_SET: u16 = 0;
pub(crate) const V9_OPTIONS_TEMPLATE_SET: u16 = 1;
pub(crate) const IPFIX_TEMPLATE_SET: u16 = 2;
pub(crate) const IPFIX_OPTIONS_TEMPLATE_SET: u16 = 3;
/// Lowest data set / template id.
pub(crate) const MIN_DATA_SET_ID: u16 = 256;

/// A template record that passed the structural checks, not compiled yet
/// (a re-sent template with an unchanged layout is never compiled again).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TemplateDef<'a> {
    pub fields: &'a [FieldSpec],
    pub options: bool,
    variable_allowed: bool,
    max_fields: usize,
}

impl TemplateDef<'_> {
    pub(crate) fn layout_hash(&self) -> u64 {
        layout_hash(self.fields, self.options)
    }

    pub(crate) fn compile(&self) -> Result<Plan, TemplateProblem> {
        Plan::compile(
            self.fields,
            self.options,
            self.variable_allowed,
            self.max_fields,
        )
    }
}

/// What one template record asks for.
#[derive(Debug)]
pub(crate) enum TemplateEvent<'a> {
    Define {
        id: u16,
        def: TemplateDef<'a>,
    },
    /// IPFIX withdrawal of one template.
    Withdraw {
        id: u16,
    },
    /// IPFIX withdrawal of all (options) templates of the domain.
    WithdrawAll {
        options: bool,
    },
    Reject(TemplateProblem),
}

/// Which protocol and which kind of template set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetKind {
    V9Templates,
    V9Options,
    IpfixTemplates,
    IpfixOptions,
}

/// Reads every template record of one set body, calling `on` for each.
pub(crate) fn parse_template_set(
    kind: SetKind,
    body: &[u8],
    max_fields: usize,
    scratch: &mut Vec<FieldSpec>,
    on: &mut dyn FnMut(TemplateEvent<'_>),
) {
    match kind {
        SetKind::V9Templates => parse_v9_templates(body, max_fields, scratch, on),
        SetKind::V9Options => parse_v9_options(body, max_fields, scratch, on),
        SetKind::IpfixTemplates => parse_ipfix(body, false, max_fields, scratch, on),
        SetKind::IpfixOptions => parse_ipfix(body, true, max_fields, scratch, on),
    }
}

fn define(
    id: u16,
    fields: &[FieldSpec],
    options: bool,
    variable_allowed: bool,
    max_fields: usize,
) -> TemplateEvent<'_> {
    if id < MIN_DATA_SET_ID {
        return TemplateEvent::Reject(TemplateProblem::BadTemplateId(id));
    }
    TemplateEvent::Define {
        id,
        def: TemplateDef {
            fields,
            options,
            variable_allowed,
            max_fields,
        },
    }
}

/// Reads `count` 4-byte v9 field specifiers from `pos`.
fn read_v9_fields(
    body: &[u8],
    pos: usize,
    count: usize,
    scope: bool,
    out: &mut Vec<FieldSpec>,
) -> Option<()> {
    for i in 0..count {
        let at = pos + i * 4;
        out.push(FieldSpec {
            element_id: be16(body, at)?,
            enterprise: false,
            length: be16(body, at + 2)?,
            scope,
        });
    }
    Some(())
}

fn parse_v9_templates(
    body: &[u8],
    max_fields: usize,
    scratch: &mut Vec<FieldSpec>,
    on: &mut dyn FnMut(TemplateEvent<'_>),
) {
    let mut pos = 0usize;
    while let (Some(id), Some(count)) = (be16(body, pos), be16(body, pos + 2)) {
        if id == 0 && count == 0 {
            return; // zero padding
        }
        pos += 4;
        if count == 0 {
            on(TemplateEvent::Reject(TemplateProblem::NoFields));
            continue;
        }
        let count = usize::from(count);
        let bytes = count * 4;
        if body.len() - pos < bytes {
            on(TemplateEvent::Reject(TemplateProblem::Truncated));
            return;
        }
        if count > max_fields {
            on(TemplateEvent::Reject(TemplateProblem::TooManyFields(
                u16::try_from(count).unwrap_or(u16::MAX),
            )));
            pos += bytes;
            continue;
        }
        scratch.clear();
        if read_v9_fields(body, pos, count, false, scratch).is_none() {
            on(TemplateEvent::Reject(TemplateProblem::Truncated));
            return;
        }
        pos += bytes;
        on(define(id, scratch, false, false, max_fields));
    }
}

fn parse_v9_options(
    body: &[u8],
    max_fields: usize,
    scratch: &mut Vec<FieldSpec>,
    on: &mut dyn FnMut(TemplateEvent<'_>),
) {
    let mut pos = 0usize;
    while let (Some(id), Some(scope_len), Some(opt_len)) =
        (be16(body, pos), be16(body, pos + 2), be16(body, pos + 4))
    {
        if id == 0 {
            return; // zero padding
        }
        pos += 6;
        if scope_len % 4 != 0 || opt_len % 4 != 0 {
            // Field boundaries are unknowable: the rest of the set too.
            on(TemplateEvent::Reject(TemplateProblem::BadScope));
            return;
        }
        let bytes = usize::from(scope_len) + usize::from(opt_len);
        if body.len() - pos < bytes {
            on(TemplateEvent::Reject(TemplateProblem::Truncated));
            return;
        }
        let scope_count = usize::from(scope_len / 4);
        let count = bytes / 4;
        if count > max_fields {
            on(TemplateEvent::Reject(TemplateProblem::TooManyFields(
                u16::try_from(count).unwrap_or(u16::MAX),
            )));
            pos += bytes;
            continue;
        }
        scratch.clear();
        let ok = read_v9_fields(body, pos, scope_count, true, scratch).is_some()
            && read_v9_fields(
                body,
                pos + scope_count * 4,
                count - scope_count,
                false,
                scratch,
            )
            .is_some();
        if !ok {
            on(TemplateEvent::Reject(TemplateProblem::Truncated));
            return;
        }
        pos += bytes;
        on(define(id, scratch, true, false, max_fields));
    }
}

fn parse_ipfix(
    body: &[u8],
    options: bool,
    max_fields: usize,
    scratch: &mut Vec<FieldSpec>,
    on: &mut dyn FnMut(TemplateEvent<'_>),
) {
    let set_id = if options {
        IPFIX_OPTIONS_TEMPLATE_SET
    } else {
        IPFIX_TEMPLATE_SET
    };
    let mut pos = 0usize;
    while let (Some(id), Some(count)) = (be16(body, pos), be16(body, pos + 2)) {
        if id == 0 && count == 0 {
            return; // zero padding
        }
        pos += 4;
        if count == 0 {
            // Withdrawal (RFC 7011 8.1): no scope field count follows.
            on(if id == set_id {
                TemplateEvent::WithdrawAll { options }
            } else if id >= MIN_DATA_SET_ID {
                TemplateEvent::Withdraw { id }
            } else {
                TemplateEvent::Reject(TemplateProblem::BadTemplateId(id))
            });
            continue;
        }
        let mut scope_count = 0u16;
        if options {
            match be16(body, pos) {
                Some(s) => scope_count = s,
                None => {
                    on(TemplateEvent::Reject(TemplateProblem::Truncated));
                    return;
                }
            }
            pos += 2;
        }
        let collect = usize::from(count) <= max_fields;
        scratch.clear();
        for _ in 0..count {
            let (Some(raw), Some(length)) = (be16(body, pos), be16(body, pos + 2)) else {
                on(TemplateEvent::Reject(TemplateProblem::Truncated));
                return;
            };
            pos += 4;
            let enterprise = raw & 0x8000 != 0;
            if enterprise {
                if body.len() - pos < 4 {
                    on(TemplateEvent::Reject(TemplateProblem::Truncated));
                    return;
                }
                pos += 4; // Private Enterprise Number, not needed
            }
            if collect {
                scratch.push(FieldSpec {
                    element_id: raw & 0x7fff,
                    enterprise,
                    length,
                    scope: false,
                });
            }
        }
        if !collect {
            on(TemplateEvent::Reject(TemplateProblem::TooManyFields(count)));
            continue;
        }
        if options && (scope_count == 0 || scope_count > count) {
            on(TemplateEvent::Reject(TemplateProblem::BadScope));
            continue;
        }
        on(define(id, scratch, options, true, max_fields));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned copy of an event, for assertions.
    #[derive(Debug)]
    enum Ev {
        #[allow(dead_code)] // read through Debug in failure messages
        Define(u16, usize),
        Withdraw(u16),
        WithdrawAll(bool),
        Reject(TemplateProblem),
    }

    fn events(kind: SetKind, body: &[u8]) -> Vec<Ev> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        parse_template_set(kind, body, 128, &mut scratch, &mut |e| {
            out.push(match e {
                TemplateEvent::Define { id, def } => Ev::Define(id, def.fields.len()),
                TemplateEvent::Withdraw { id } => Ev::Withdraw(id),
                TemplateEvent::WithdrawAll { options } => Ev::WithdrawAll(options),
                TemplateEvent::Reject(p) => Ev::Reject(p),
            })
        });
        out
    }

    #[test]
    fn field_count_65535_is_rejected_not_trusted() {
        let mut body = vec![1, 0, 0xff, 0xff];
        body.extend([0, 8, 0, 4]);
        for kind in [SetKind::V9Templates, SetKind::IpfixTemplates] {
            let ev = events(kind, &body);
            assert!(
                matches!(ev[..], [Ev::Reject(TemplateProblem::Truncated)]),
                "{kind:?}: {ev:?}"
            );
        }
    }

    #[test]
    fn ipfix_withdrawals() {
        let body = [1, 0, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0];
        let ev = events(SetKind::IpfixTemplates, &body);
        assert!(matches!(
            ev[..],
            [
                Ev::Withdraw(256),
                Ev::WithdrawAll(false),
                Ev::Reject(TemplateProblem::BadTemplateId(5))
            ]
        ));
    }

    #[test]
    fn v9_options_with_odd_scope_length_stops_the_set() {
        let body = [1, 0, 0, 3, 0, 4, 0, 1, 0, 4, 0, 34, 0, 4];
        let ev = events(SetKind::V9Options, &body);
        assert!(matches!(ev[..], [Ev::Reject(TemplateProblem::BadScope)]));
    }
}
