use std::sync::Arc;

use kopek_collector::segment::{FORMAT_VERSION, FlowBlockEncoder, FlowColumns, decode_columns};
use kopek_collector::{FlowDirection, SourceKind};
use kopek_config::{ObservationPoint, PointDirection};

use super::*;
use crate::bindings::{Binding, FOREVER_START_MS};
use crate::classes::ClassTable;

struct World {
    versions: ClassVersions,
    bindings: BindingIndex,
    subscribers: NetSet,
    points: PointMatcher,
}

fn world(points: &[ObservationPoint]) -> World {
    let mut versions = ClassVersions::new();
    versions.push(
        1,
        0,
        Some(Arc::new(ClassTable::build(
            vec![
                (
                    "local".into(),
                    CountRule::Both,
                    vec!["10.0.0.0/8".parse().unwrap()],
                ),
                (
                    "peering".into(),
                    CountRule::Inbound,
                    vec!["198.51.100.0/24".parse().unwrap()],
                ),
            ],
            "paid",
        ))),
    );
    let mut bindings = BindingIndex::new();
    let mut bind = |id, acc: &str, net: &str, from, to| {
        bindings.apply(&Binding {
            id,
            account: acc.into(),
            net: net.parse().unwrap(),
            from_ms: from,
            to_ms: to,
            source: "test".into(),
            session: None,
        })
    };
    bind(-1, "alice", "10.0.0.1/32", FOREVER_START_MS, None);
    bind(-2, "bob", "10.0.0.2/32", FOREVER_START_MS, None);
    bind(1, "carol", "10.0.0.9/32", 0, Some(600_000));
    bind(2, "dave", "10.0.0.9/32", 600_000, None);
    bindings.finish();
    World {
        versions,
        bindings,
        subscribers: NetSet::new(&["10.0.0.0/8".parse().unwrap()]),
        points: PointMatcher::new(points),
    }
}

fn rec(src: &str, dst: &str, first: i64, last: i64, bytes: u64) -> FlowRecord {
    FlowRecord {
        exporter: "192.0.2.1".parse().unwrap(),
        first_ms: first,
        last_ms: last,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        bytes_raw: bytes,
        packets_raw: bytes / 100,
        in_if: 3,
        direction: FlowDirection::Ingress,
        ..FlowRecord::empty(SourceKind::Ipfix)
    }
}

fn rules(w: &World) -> Rules<'_> {
    Rules {
        versions: &w.versions,
        bindings: &w.bindings,
        subscribers: &w.subscribers,
        points: &w.points,
        bucket_ms: 300_000,
        stale_before_ms: i64::MIN,
        stale_loss_bucket_ms: 0,
    }
}

/// `recs` in tier-1 blocks of `block` records (encoded, then decoded into
/// columns) through [`add_columns`], settled.
fn via_columns(rules: &Rules<'_>, recs: &[FlowRecord], block: usize) -> Batch {
    let mut b = Batch::default();
    let mut s = Scratch::default();
    let mut enc = FlowBlockEncoder::default();
    let (mut buf, mut cols) = (Vec::new(), FlowColumns::default());
    for chunk in recs.chunks(block) {
        enc.encode(chunk, &mut buf);
        decode_columns(&buf, chunk.len(), FORMAT_VERSION, &mut cols).unwrap();
        add_columns(rules, &cols, &mut b, &mut s);
    }
    b.settle();
    b
}

fn run(w: &World, recs: &[FlowRecord]) -> Batch {
    let rules = rules(w);
    let mut b = Batch::default();
    let mut s = Scratch::default();
    for r in recs {
        add_record(&rules, r, &mut b, &mut s);
    }
    // The engine's path, blocks with batched class lookups: the same.
    for block in [1, 2, 7, recs.len().max(1)] {
        let mut bb = Batch::default();
        let mut s = Scratch::default();
        for chunk in recs.chunks(block) {
            add_block(&rules, chunk, &mut bb, &mut s);
        }
        bb.settle();
        assert_eq!(traffic(w, &b), traffic(w, &bb), "blocks of {block}");
        let sorted = |m: &FastMap<UnattributedKey, Counts>| {
            let mut v: Vec<String> = m.iter().map(|e| format!("{e:?}")).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&b.unattributed), sorted(&bb.unattributed));
        assert_eq!(b.stats, bb.stats);

        // Tier 1's own path: blocks encoded, decoded into columns, each
        // distinct address judged once per block.
        let bc = via_columns(&rules, recs, block);
        assert_eq!(
            traffic(w, &b),
            traffic(w, &bc),
            "columns, blocks of {block}"
        );
        assert_eq!(sorted(&b.unattributed), sorted(&bc.unattributed));
        assert_eq!(b.stats, bc.stats);
    }
    b
}

/// (bucket, account, class, dir, billed) → bytes, names resolved.
fn traffic(w: &World, b: &Batch) -> Vec<(i64, String, String, &'static str, bool, u64)> {
    let mut v: Vec<_> = b
        .traffic()
        .map(|(k, c)| {
            (
                k.bucket_ms,
                w.bindings.account(k.account).to_string(),
                w.versions.name(k.class).to_string(),
                k.dir.as_str(),
                k.billed,
                c.bytes,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn records_become_account_class_direction_bucket_rows() {
    let w = world(&[]);
    let b = run(
        &w,
        &[
            // Download from peering, 100 s inside one bucket.
            rec("198.51.100.7", "10.0.0.1", 0, 100_000, 1_000),
            // Upload to the internet, crossing a bucket boundary 1:2.
            rec("10.0.0.1", "203.0.113.5", 200_000, 500_000, 3_000),
            // Subscriber to subscriber: counts for both.
            rec("10.0.0.1", "10.0.0.2", 0, 0, 500),
        ],
    );
    let a = |s: &str| s.to_string();
    assert_eq!(
        traffic(&w, &b),
        vec![
            (0, a("alice"), a("local"), "out", true, 500),
            (0, a("alice"), a("paid"), "out", true, 1_000),
            (0, a("alice"), a("peering"), "in", true, 1_000),
            (0, a("bob"), a("local"), "in", true, 500),
            (300_000, a("alice"), a("paid"), "out", true, 2_000),
        ]
    );
    assert_eq!(b.stats.records, 3);
    assert_eq!(b.stats.split_records, 1);
    // The split flow's flow count is in its first bucket only.
    let flows: u64 = b.traffic().map(|(_, c)| c.flows).sum();
    assert_eq!(flows, 4, "3 records, one of them on two sides");
    assert_eq!(b.hours, vec![0]);
    // Host detail of hour 0: alice's upload host holds all 3000 bytes.
    let rules = Rules {
        versions: &w.versions,
        bindings: &w.bindings,
        subscribers: &w.subscribers,
        points: &w.points,
        bucket_ms: 300_000,
        stale_before_ms: i64::MIN,
        stale_loss_bucket_ms: 0,
    };
    let mut hosts = FastMap::default();
    let mut overflow = FastMap::default();
    let mut s = Scratch::default();
    add_hosts(
        &rules,
        &rec("10.0.0.1", "203.0.113.5", 200_000, 500_000, 3_000),
        0,
        &mut hosts,
        &mut overflow,
        10,
        &mut s,
    );
    add_hosts(
        &rules,
        &rec("10.0.0.1", "203.0.113.5", 3_500_000, 3_700_000, 1_000),
        0,
        &mut hosts,
        &mut overflow,
        10,
        &mut s,
    );
    let h = hosts.values().next().unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        (h.bytes_in, h.bytes_out, h.flows),
        (0, 3_000 + 500, 2),
        "half of the second flow lies in hour 0, where it starts"
    );
}

#[test]
fn class_direction_rule_and_points_decide_billing() {
    let w = world(&[ObservationPoint {
        name: "uplink".into(),
        exporter_name: "border".into(),
        exporter: "192.0.2.1".parse().unwrap(),
        interface: Some(3),
        direction: PointDirection::Ingress,
    }]);
    let mut other_if = rec("198.51.100.7", "10.0.0.1", 0, 0, 70);
    other_if.in_if = 4;
    let b = run(
        &w,
        &[
            // Peering counts inbound only: the upload is stored, not billed.
            rec("10.0.0.1", "198.51.100.7", 0, 0, 10),
            rec("198.51.100.7", "10.0.0.1", 0, 0, 20),
            other_if,
        ],
    );
    let billed: Vec<_> = traffic(&w, &b)
        .into_iter()
        .map(|(_, _, c, d, billed, bytes)| (c, d, billed, bytes))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        billed,
        vec![
            (s("peering"), "in", false, 70),
            (s("peering"), "in", true, 20),
            (s("peering"), "out", false, 10),
        ]
    );
    assert_eq!(b.stats.unbilled_records, 1);
}

#[test]
fn dynamic_addresses_attribute_by_record_time_and_nothing_is_dropped() {
    let w = world(&[]);
    let b = run(
        &w,
        &[
            rec("10.0.0.9", "203.0.113.5", 599_000, 599_500, 100),
            rec("10.0.0.9", "203.0.113.5", 600_000, 600_500, 200),
            // Inside the subscriber networks, bound to nobody.
            rec("10.0.0.77", "203.0.113.5", 0, 0, 300),
            // No subscriber side at all.
            rec("203.0.113.5", "192.0.2.99", 0, 0, 400),
        ],
    );
    let t = traffic(&w, &b);
    assert_eq!(t[0].1, "carol");
    assert_eq!(t[0].5, 100);
    assert_eq!(t[1].1, "dave");
    assert_eq!(t[1].5, 200);
    let mut un: Vec<_> = b
        .unattributed
        .iter()
        .map(|(k, c)| (k.address.to_string(), k.dir.as_str(), c.bytes))
        .collect();
    un.sort();
    assert_eq!(
        un,
        vec![
            ("10.0.0.77".to_string(), "out", 300),
            ("203.0.113.5".to_string(), "transit", 400),
        ]
    );
    assert_eq!(b.stats.unattributed_records, 1);
    assert_eq!(b.stats.transit_records, 1);
    // Every byte is somewhere.
    let total: u64 = b.traffic().map(|(_, c)| c.bytes).sum::<u64>()
        + b.unattributed.values().map(|c| c.bytes).sum::<u64>();
    assert_eq!(total, 1_000);
}

#[test]
fn sampled_records_are_scaled_exactly() {
    let w = world(&[]);
    let mut r = rec("203.0.113.5", "10.0.0.1", 0, 0, 1_234);
    r.sampling = 1_000;
    let b = run(&w, &[r]);
    assert_eq!(b.traffic().next().unwrap().1.bytes, 1_234_000);
}

/// Every aggregate, packets and flows included, as sorted text.
fn everything(b: &Batch) -> Vec<String> {
    let mut v: Vec<String> = b
        .traffic()
        .map(|e| format!("{e:?}"))
        .chain(b.unattributed.iter().map(|e| format!("{e:?}")))
        .collect();
    v.push(format!("{:?}", b.stats));
    v.sort();
    v
}

/// A world where everything the per-block shortcuts must not get wrong
/// happens: a session handed from one account to another, a class list
/// reloaded (at 450 s), a prefix with several bindings, nested prefixes,
/// IPv6, billing points on one of several exporters, sampling; and `n`
/// random records between them, starting in the first `span_ms`, lasting
/// up to `len_ms`.
fn busy_world(n: usize, span_ms: u64, len_ms: u64) -> (World, Vec<FlowRecord>) {
    let mut w = world(&[ObservationPoint {
        name: "uplink".into(),
        exporter_name: "border".into(),
        exporter: "192.0.2.1".parse().unwrap(),
        interface: Some(3),
        direction: PointDirection::Ingress,
    }]);
    let mut bind = |id, acc: &str, net: &str, from, to| {
        w.bindings.apply(&Binding {
            id,
            account: acc.into(),
            net: net.parse().unwrap(),
            from_ms: from,
            to_ms: to,
            source: "test".into(),
            session: None,
        })
    };
    bind(10, "erin", "10.1.0.0/24", 0, Some(300_000));
    bind(11, "frank", "10.1.0.0/24", 300_000, None);
    bind(12, "grace", "10.1.0.0/16", FOREVER_START_MS, None);
    bind(13, "heidi", "2001:db8:1:2::/64", FOREVER_START_MS, None);
    bind(14, "ivan", "2001:db8:1:3::/64", 200_000, Some(700_000));
    w.bindings.finish();
    w.subscribers = NetSet::new(&[
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ]);
    w.versions.push(
        2,
        450_000,
        Some(Arc::new(ClassTable::build(
            vec![
                (
                    "peering".into(),
                    CountRule::Inbound,
                    vec![
                        "198.51.0.0/16".parse().unwrap(),
                        "2a00:1::/32".parse().unwrap(),
                    ],
                ),
                (
                    "local".into(),
                    CountRule::Both,
                    vec!["10.0.0.0/8".parse().unwrap()],
                ),
            ],
            "paid",
        ))),
    );
    let pool: Vec<IpAddr> = [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.9",
        "10.0.0.77",
        "10.1.0.5",
        "10.1.7.5",
        "2001:db8:1:2::5",
        "2001:db8:1:3::5",
        "2001:db8:9::1",
        "198.51.100.7",
        "198.51.7.1",
        "203.0.113.5",
        "2a00:1::1",
        "2a00:2::1",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let exporters: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2", "2001:db8:ff::1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let mut recs = Vec::new();
    for _ in 0..n {
        let first = next(span_ms) as i64;
        let mut r = FlowRecord {
            exporter: exporters[next(3) as usize],
            first_ms: first,
            last_ms: first + next(len_ms) as i64,
            src: pool[next(pool.len() as u64) as usize],
            dst: pool[next(pool.len() as u64) as usize],
            bytes_raw: next(1 << 40),
            packets_raw: next(1 << 20),
            in_if: next(5) as u32,
            out_if: next(5) as u32,
            direction: [
                FlowDirection::Ingress,
                FlowDirection::Egress,
                FlowDirection::Unknown,
            ][next(3) as usize],
            sampling: [1, 1, 100][next(3) as usize],
            ..FlowRecord::empty(SourceKind::Ipfix)
        };
        if next(10) == 0 {
            r.bytes_raw = u64::MAX - next(10);
        }
        recs.push(r);
    }
    (w, recs)
}

/// The column path ([`add_columns`]: addresses judged once per block)
/// gives exactly what the row path gives, record by record, on random
/// blocks where everything the per-block shortcut must not get wrong
/// happens inside one block: a session handed from one account to another,
/// a class list reloaded, a prefix with several bindings, nested prefixes,
/// IPv6, billing points on one of several exporters, sampling.
#[test]
fn columns_agree_with_rows_on_random_blocks() {
    let (w, recs) = busy_world(3_000, 900_000, 700_000);
    let b = run(&w, &recs);
    assert!(b.stats.split_records > 100 && b.stats.unbilled_records > 100);
    assert!(b.stats.transit_records > 0 && b.stats.unattributed_records > 0);
    // Full equality (packets and flows too) for one block size.
    let bc = via_columns(&rules(&w), &recs, 500);
    assert_eq!(everything(&b), everything(&bc));
}

/// The column path of the host detail ([`add_hosts_columns`]) gives
/// exactly what [`add_hosts`] gives record by record, in every hour a
/// random stream touches, with and without the pair cap reached.
#[test]
fn host_columns_agree_with_rows_on_random_blocks() {
    let (w, recs) = busy_world(3_000, 2 * HOUR_MS as u64, 2_000_000);
    let rules = rules(&w);
    let sorted = |m: &FastMap<HostKey, HostCounts>| {
        let mut v: Vec<String> = m.iter().map(|e| format!("{e:?}")).collect();
        v.sort();
        v
    };
    let sorted_over = |m: &FastMap<u32, HostCounts>| {
        let mut v: Vec<String> = m.iter().map(|e| format!("{e:?}")).collect();
        v.sort();
        v
    };
    let mut enc = FlowBlockEncoder::default();
    let (mut buf, mut cols) = (Vec::new(), FlowColumns::default());
    for hour in [0, HOUR_MS, 2 * HOUR_MS] {
        for cap in [4, usize::MAX] {
            let (mut hosts, mut over, mut s) =
                (FastMap::default(), FastMap::default(), Scratch::default());
            for r in &recs {
                add_hosts(&rules, r, hour, &mut hosts, &mut over, cap, &mut s);
            }
            let (mut hc, mut oc, mut sc) =
                (FastMap::default(), FastMap::default(), Scratch::default());
            for chunk in recs.chunks(500) {
                enc.encode(chunk, &mut buf);
                decode_columns(&buf, chunk.len(), FORMAT_VERSION, &mut cols).unwrap();
                add_hosts_columns(&rules, &cols, hour, &mut hc, &mut oc, cap, &mut sc);
            }
            assert!(!hosts.is_empty(), "hour {hour}");
            assert_eq!(sorted(&hosts), sorted(&hc), "hour {hour}, cap {cap}");
            assert_eq!(
                sorted_over(&over),
                sorted_over(&oc),
                "hour {hour}, cap {cap}"
            );
            assert_eq!(over.is_empty(), cap == usize::MAX);
        }
    }
}
