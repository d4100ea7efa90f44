//! Observation points: which records are billed.
//!
//! Each record has exactly one observation key: its exporter, the direction
//! the exporter observed it in (NetFlow v5 and records without IE 61 count
//! as ingress) and the interface in that direction (input for ingress,
//! output for egress). A record whose key falls in a configured billing
//! point is billed under that point's name; any other record is kept in
//! tier 2 under [`UNBILLED`] for reconciliation and never billed. With no
//! points configured every record is billed under [`ALL`].
//! `kopek config check` refuses points that overlap
//! ([`kopek_config::double_count`]), so a key matches at most one point.

use std::collections::HashMap;
use std::net::IpAddr;

use kopek_collector::{FlowDirection, FlowRecord};
use kopek_config::{ObservationPoint, PointDirection};

/// Point name of records no billing point takes.
pub const UNBILLED: &str = "-";
/// Point name of every record when no points are configured.
pub const ALL: &str = "*";

#[derive(Debug, Clone)]
pub struct PointMatcher {
    /// Index 0 is [`UNBILLED`].
    names: Vec<String>,
    by_exporter: HashMap<IpAddr, Vec<(Option<u32>, PointDirection, u16)>>,
    all: bool,
}

/// The billing points of one exporter ([`PointMatcher::exporter`]).
#[derive(Debug, Clone, Copy)]
pub enum ExporterPoints<'a> {
    /// No points configured: everything is billed under [`ALL`].
    All,
    /// Points configured, none for this exporter: nothing is billed.
    None,
    Some(&'a [(Option<u32>, PointDirection, u16)]),
}

impl ExporterPoints<'_> {
    /// The point that bills a record of this exporter seen in `direction`
    /// on these interfaces (0: none).
    #[inline]
    pub fn point(&self, direction: FlowDirection, in_if: u32, out_if: u32) -> u16 {
        let list = match self {
            ExporterPoints::All => return 1,
            ExporterPoints::None => return 0,
            ExporterPoints::Some(list) => list,
        };
        let (dir, iface) = match direction {
            FlowDirection::Egress => (PointDirection::Egress, out_if),
            FlowDirection::Ingress | FlowDirection::Unknown => (PointDirection::Ingress, in_if),
        };
        for &(pi, pd, ix) in list.iter() {
            if (pd == PointDirection::Any || pd == dir) && pi.is_none_or(|i| i == iface) {
                return ix;
            }
        }
        0
    }
}

impl PointMatcher {
    pub fn new(points: &[ObservationPoint]) -> PointMatcher {
        let mut names = vec![UNBILLED.to_string()];
        let mut by_exporter: HashMap<IpAddr, Vec<_>> = HashMap::new();
        if points.is_empty() {
            names.push(ALL.to_string());
        }
        for p in points {
            let ix = names.len() as u16;
            names.push(p.name.clone());
            by_exporter
                .entry(p.exporter)
                .or_default()
                .push((p.interface, p.direction, ix));
        }
        PointMatcher {
            names,
            by_exporter,
            all: points.is_empty(),
        }
    }

    /// The point that bills `r` (0: none).
    #[inline]
    pub fn point_of(&self, r: &FlowRecord) -> u16 {
        self.exporter(r.exporter)
            .point(r.direction, r.in_if, r.out_if)
    }

    /// The points of one exporter: look it up once per export stream, then
    /// ask [`ExporterPoints::point`] per record.
    #[inline]
    pub fn exporter(&self, exporter: IpAddr) -> ExporterPoints<'_> {
        if self.all {
            return ExporterPoints::All;
        }
        match self.by_exporter.get(&exporter) {
            Some(list) => ExporterPoints::Some(list),
            None => ExporterPoints::None,
        }
    }

    pub fn name(&self, ix: u16) -> &str {
        &self.names[ix as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kopek_collector::SourceKind;

    #[test]
    fn records_match_by_exporter_direction_and_interface() {
        let border: IpAddr = "192.0.2.1".parse().unwrap();
        let p = |name: &str, iface, direction| ObservationPoint {
            name: name.into(),
            exporter_name: "border".into(),
            exporter: border,
            interface: iface,
            direction,
        };
        let m = PointMatcher::new(&[
            p("up_in", Some(3), PointDirection::Ingress),
            p("up_out", Some(3), PointDirection::Egress),
        ]);
        let rec = |exp: &str, dir, in_if, out_if| FlowRecord {
            exporter: exp.parse().unwrap(),
            direction: dir,
            in_if,
            out_if,
            ..FlowRecord::empty(SourceKind::Ipfix)
        };
        use FlowDirection::*;
        // (record, point name): data-driven.
        let cases = [
            (rec("192.0.2.1", Ingress, 3, 7), "up_in"),
            (rec("192.0.2.1", Unknown, 3, 7), "up_in"),
            (rec("192.0.2.1", Egress, 7, 3), "up_out"),
            (rec("192.0.2.1", Egress, 3, 7), UNBILLED),
            (rec("192.0.2.1", Ingress, 7, 3), UNBILLED),
            (rec("192.0.2.2", Ingress, 3, 7), UNBILLED),
        ];
        for (r, want) in cases {
            assert_eq!(m.name(m.point_of(&r)), want, "{r:?}");
        }
        let all = PointMatcher::new(&[]);
        assert_eq!(all.name(all.point_of(&cases[5].0)), ALL);
    }
}
