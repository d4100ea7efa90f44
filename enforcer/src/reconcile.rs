//! `kopek reconcile`: where nft counters and flow records (NetFlow v5, v9,
//! IPFIX, or the collector's own pcap capture) both see a subscriber, do
//! they agree? Per subscriber address the counters cover,
//! the bytes each source put in tier 1 over a time range, each direction,
//! and a flag when they differ by more than a threshold. Whichever source
//! bills (the classifier's observation points decide), the other is the
//! check.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use kopek_collector::query::{RawFilter, scan};
use kopek_collector::record::SourceKind;
use kopek_collector::segment::RawStore;
use serde::Serialize;

use crate::EnforcerError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub address: String,
    pub nft_in: u64,
    pub nft_out: u64,
    pub netflow_in: u64,
    pub netflow_out: u64,
    /// Largest relative difference of the two directions, in tenths of a
    /// percent (integer: 52 = 5.2 %).
    pub diff_permille: u64,
    pub flagged: bool,
}

fn permille(a: u64, b: u64) -> u64 {
    let hi = a.max(b);
    if hi == 0 {
        return 0;
    }
    ((u128::from(a.abs_diff(b)) * 1000) / u128::from(hi)) as u64
}

/// Compares the sources over `[from_ms, to_ms)`. A subscriber is flagged
/// when a direction differs by more than `threshold_permille` and the
/// larger side has at least `min_bytes`.
pub fn reconcile(
    state_dir: &Path,
    from_ms: i64,
    to_ms: i64,
    threshold_permille: u64,
    min_bytes: u64,
) -> Result<Vec<Row>, EnforcerError> {
    let store = RawStore::new(state_dir.join("raw"));
    let filter = RawFilter {
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        ..RawFilter::default()
    };
    let mut nft: BTreeMap<IpAddr, (u64, u64)> = BTreeMap::new();
    let mut flows: Vec<(IpAddr, IpAddr, u64)> = Vec::new();
    scan(
        &store,
        &filter,
        |f| {
            if f.kind == SourceKind::NftCounter {
                let e = nft
                    .entry(if f.src.is_unspecified() { f.dst } else { f.src })
                    .or_default();
                if f.src.is_unspecified() {
                    e.0 += f.bytes();
                } else {
                    e.1 += f.bytes();
                }
            } else if matches!(
                f.kind,
                SourceKind::NetflowV5
                    | SourceKind::NetflowV9
                    | SourceKind::Ipfix
                    | SourceKind::Pcap
            ) {
                flows.push((f.src, f.dst, f.bytes()));
            }
        },
        |_| {},
    )
    .map_err(|e| EnforcerError::Invalid(e.to_string()))?;
    let mut netflow: BTreeMap<IpAddr, (u64, u64)> = BTreeMap::new();
    for (src, dst, bytes) in flows {
        if nft.contains_key(&dst) {
            netflow.entry(dst).or_default().0 += bytes;
        }
        if nft.contains_key(&src) {
            netflow.entry(src).or_default().1 += bytes;
        }
    }
    Ok(nft
        .into_iter()
        .map(|(addr, (ni, no))| {
            let (fi, fo) = netflow.get(&addr).copied().unwrap_or_default();
            let diff = permille(ni, fi).max(permille(no, fo));
            let big = ni.max(fi).max(no).max(fo) >= min_bytes;
            Row {
                address: addr.to_string(),
                nft_in: ni,
                nft_out: no,
                netflow_in: fi,
                netflow_out: fo,
                diff_permille: diff,
                flagged: big && diff > threshold_permille,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kopek_collector::record::{FlowDirection, FlowRecord};
    use kopek_collector::segment::{SegmentWriter, WriterOptions};
    use kopek_config::{Compression, Durability};
    use std::net::Ipv4Addr;

    fn rec(kind: SourceKind, src: &str, dst: &str, bytes: u64) -> FlowRecord {
        FlowRecord {
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            domain: 0,
            kind,
            first_ms: 1_000,
            last_ms: 2_000,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 0,
            dst_port: 0,
            protocol: 6,
            direction: FlowDirection::Ingress,
            in_if: 0,
            out_if: 0,
            bytes_raw: bytes,
            packets_raw: 1,
            sampling: 1,
        }
    }

    #[test]
    fn sources_that_disagree_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = RawStore::new(dir.path().join("raw"));
        store.create_dir().unwrap();
        let opts = || WriterOptions {
            compression: Compression::None,
            durability: Durability::Never,
        };
        let mut nf = SegmentWriter::create(store.dir(), "main", 1, 0, opts()).unwrap();
        nf.append_flows(&[
            rec(SourceKind::NetflowV5, "203.0.113.9", "10.1.0.2", 1_000_000),
            rec(SourceKind::Ipfix, "10.1.0.2", "203.0.113.9", 400_000),
            rec(SourceKind::NetflowV9, "203.0.113.9", "10.1.0.3", 1_000_000),
            // A host without an exporter, captured by pcap: a flow source too.
            rec(SourceKind::Pcap, "198.51.100.1", "10.1.0.4", 500_000),
        ])
        .unwrap();
        nf.close(3_000).unwrap();
        let mut c = SegmentWriter::create(store.dir(), "nft", 1, 0, opts()).unwrap();
        c.append_flows(&[
            rec(SourceKind::NftCounter, "0.0.0.0", "10.1.0.2", 1_010_000),
            rec(SourceKind::NftCounter, "10.1.0.2", "0.0.0.0", 400_000),
            rec(SourceKind::NftCounter, "0.0.0.0", "10.1.0.3", 1_300_000),
            rec(SourceKind::NftCounter, "0.0.0.0", "10.1.0.4", 500_000),
        ])
        .unwrap();
        c.close(3_000).unwrap();
        let rows = reconcile(dir.path(), 0, 10_000, 50, 100_000).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (
                rows[0].address.as_str(),
                rows[0].diff_permille,
                rows[0].flagged
            ),
            ("10.1.0.2", 9, false)
        );
        assert_eq!(
            (rows[0].netflow_in, rows[0].netflow_out),
            (1_000_000, 400_000)
        );
        assert_eq!(
            (
                rows[1].address.as_str(),
                rows[1].diff_permille,
                rows[1].flagged
            ),
            ("10.1.0.3", 230, true)
        );
        assert_eq!(
            (
                rows[2].address.as_str(),
                rows[2].netflow_in,
                rows[2].flagged
            ),
            ("10.1.0.4", 500_000, false)
        );
    }
}
