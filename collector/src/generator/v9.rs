//! NetFlow v9 (RFC 3954): templates for IPv4 and IPv6, sequence numbers
//! counting export datagrams, times relative to `sys_uptime`.

use std::net::IpAddr;

use super::templated::{Flavor, Settings, Templated};
use super::{
    DEFAULT_BOOT_MS, DEFAULT_MAX_DATAGRAM_BYTES, DatagramBatch, Encoder, GenError, IfIndexWidth,
    TemplateField, stream_hooks,
};
use crate::record::{FlowRecord, SourceKind};

pub const V9_DEFAULT_MAX_FLOWS_PER_DATAGRAM: u16 = 30;
pub const V9_DEFAULT_TEMPLATE_RESEND_EVERY_DATAGRAMS: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V9Config {
    pub source_id: u32,
    /// Exporter boot, ms since the epoch (UTC): `sys_uptime`,
    /// FIRST_SWITCHED and LAST_SWITCHED count from here.
    pub boot_ms: i64,
    /// Flow records per datagram at most (fewer if `max_datagram_bytes`
    /// leaves less room). >= 1.
    pub max_flows_per_datagram: u16,
    pub max_datagram_bytes: u16,
    /// Templates (and sampling options) go out in the first datagram and
    /// then in every `n`-th. >= 1.
    pub template_resend_every_datagrams: u32,
    pub ifindex_width: IfIndexWidth,
    /// 1 = unsampled. Above 1, an options template (scope System,
    /// SAMPLING_INTERVAL 34, SAMPLING_ALGORITHM 35) and its data record
    /// travel with the templates.
    pub sampling_interval: u32,
    pub template_id_v4: u16,
    pub template_id_v6: u16,
    pub template_id_options: u16,
}

impl Default for V9Config {
    fn default() -> V9Config {
        V9Config {
            source_id: 0,
            boot_ms: DEFAULT_BOOT_MS,
            max_flows_per_datagram: V9_DEFAULT_MAX_FLOWS_PER_DATAGRAM,
            max_datagram_bytes: DEFAULT_MAX_DATAGRAM_BYTES,
            template_resend_every_datagrams: V9_DEFAULT_TEMPLATE_RESEND_EVERY_DATAGRAMS,
            ifindex_width: IfIndexWidth::Bytes2,
            sampling_interval: 1,
            template_id_v4: 256,
            template_id_v6: 257,
            template_id_options: 258,
        }
    }
}

/// Writes NetFlow v9 datagrams. The header sequence counts datagrams
/// (emitted and skipped); `unix_secs` is the export time rounded up to a
/// whole second, and `sys_uptime` names that same instant.
#[derive(Debug, Clone)]
pub struct V9Encoder {
    inner: Templated,
}

impl V9Encoder {
    pub fn new(config: V9Config) -> Result<V9Encoder, GenError> {
        let settings = Settings {
            domain: config.source_id,
            boot_ms: config.boot_ms,
            max_flows_per_datagram: config.max_flows_per_datagram,
            max_datagram_bytes: config.max_datagram_bytes,
            template_resend_every_datagrams: config.template_resend_every_datagrams,
            ifindex_width: config.ifindex_width,
            sampling_interval: config.sampling_interval,
            template_id_v4: config.template_id_v4,
            template_id_v6: config.template_id_v6,
            template_id_options: config.template_id_options,
        };
        Ok(V9Encoder {
            inner: Templated::new(Flavor::V9, settings)?,
        })
    }

    /// The data template's fields, in wire order.
    pub fn template_fields(&self, ipv6: bool) -> Vec<TemplateField> {
        self.inner.template_fields(ipv6)
    }
}

impl Encoder for V9Encoder {
    fn kind(&self) -> SourceKind {
        SourceKind::NetflowV9
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
        r.kind = SourceKind::NetflowV9;
        Some(r)
    }

    fn restart(&mut self, boot_ms: i64) {
        self.inner.restart(boot_ms);
    }

    stream_hooks!(inner.stream);
}
