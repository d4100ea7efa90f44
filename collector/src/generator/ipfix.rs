//! IPFIX (RFC 7011): templates for IPv4 and IPv6, sequence numbers counting
//! data records, absolute times (flowStart/EndMilliseconds), u64 counters.

use std::net::IpAddr;

use super::templated::{Flavor, Settings, Templated};
use super::{
    DEFAULT_BOOT_MS, DEFAULT_MAX_DATAGRAM_BYTES, DatagramBatch, Encoder, GenError, IfIndexWidth,
    TemplateField, stream_hooks,
};
use crate::record::{FlowRecord, SourceKind};

/// 16 + 4 + 24 × 60 = 1460 bytes: an IPv4 message fits one Ethernet MTU.
pub const IPFIX_DEFAULT_MAX_FLOWS_PER_MESSAGE: u16 = 24;
pub const IPFIX_DEFAULT_TEMPLATE_RESEND_EVERY_MESSAGES: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpfixConfig {
    pub observation_domain_id: u32,
    /// Flow records per message at most (fewer if `max_message_bytes`
    /// leaves less room). >= 1.
    pub max_flows_per_message: u16,
    pub max_message_bytes: u16,
    /// Templates (and sampling options) go out in the first message and
    /// then in every `n`-th (UDP transport, RFC 7011 §10.3.6). >= 1.
    pub template_resend_every_messages: u32,
    pub ifindex_width: IfIndexWidth,
    /// 1 = unsampled. Above 1, an options template (scope
    /// observationDomainId 149; samplingInterval 34, samplingAlgorithm 35)
    /// and its data record travel with the templates. Options data records
    /// are data records: the header sequence counts them.
    pub sampling_interval: u32,
    pub template_id_v4: u16,
    pub template_id_v6: u16,
    pub template_id_options: u16,
}

impl Default for IpfixConfig {
    fn default() -> IpfixConfig {
        IpfixConfig {
            observation_domain_id: 0,
            max_flows_per_message: IPFIX_DEFAULT_MAX_FLOWS_PER_MESSAGE,
            max_message_bytes: DEFAULT_MAX_DATAGRAM_BYTES,
            template_resend_every_messages: IPFIX_DEFAULT_TEMPLATE_RESEND_EVERY_MESSAGES,
            ifindex_width: IfIndexWidth::Bytes4,
            sampling_interval: 1,
            template_id_v4: 256,
            template_id_v6: 257,
            template_id_options: 258,
        }
    }
}

/// Writes IPFIX messages. The header sequence is the number of data
/// records (emitted and skipped) before the message.
#[derive(Debug, Clone)]
pub struct IpfixEncoder {
    inner: Templated,
}

impl IpfixEncoder {
    pub fn new(config: IpfixConfig) -> Result<IpfixEncoder, GenError> {
        let settings = Settings {
            domain: config.observation_domain_id,
            // IPFIX times are absolute; boot only matters for v9.
            boot_ms: DEFAULT_BOOT_MS,
            max_flows_per_datagram: config.max_flows_per_message,
            max_datagram_bytes: config.max_message_bytes,
            template_resend_every_datagrams: config.template_resend_every_messages,
            ifindex_width: config.ifindex_width,
            sampling_interval: config.sampling_interval,
            template_id_v4: config.template_id_v4,
            template_id_v6: config.template_id_v6,
            template_id_options: config.template_id_options,
        };
        Ok(IpfixEncoder {
            inner: Templated::new(Flavor::Ipfix, settings)?,
        })
    }

    /// The data template's fields, in wire order.
    pub fn template_fields(&self, ipv6: bool) -> Vec<TemplateField> {
        self.inner.template_fields(ipv6)
    }
}

impl Encoder for IpfixEncoder {
    fn kind(&self) -> SourceKind {
        SourceKind::Ipfix
    }

    fn domain(&self) -> u32 {
        self.inner.settings.domain
    }

    fn max_flows_per_datagram(&self) -> usize {
        usize::from(self.inner.settings.max_flows_per_datagram)
    }

    fn encode_into(
        &mut self,
        flows: &[FlowRecord],
        export_time_ms: i64,
        out: &mut DatagramBatch,
    ) -> Result<(), GenError> {
        self.inner.encode_into(flows, export_time_ms, out)
    }

    fn expected(&self, flow: &FlowRecord, exporter: IpAddr) -> Option<FlowRecord> {
        let mut r = self.inner.expected(flow)?;
        r.exporter = exporter;
        r.kind = SourceKind::Ipfix;
        // flowStart/EndMilliseconds are unsigned: no time before 1970.
        r.first_ms = r.first_ms.max(0);
        r.last_ms = r.last_ms.max(0);
        Some(r)
    }

    /// Sequence numbers start over and templates go out again; IPFIX
    /// carries no uptime, so `boot_ms` is not used.
    fn restart(&mut self, boot_ms: i64) {
        self.inner.restart(boot_ms);
    }

    stream_hooks!(inner.stream);
}
