use std::sync::Arc;

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

fn run(w: &World, recs: &[FlowRecord]) -> Batch {
    let rules = Rules {
        versions: &w.versions,
        bindings: &w.bindings,
        subscribers: &w.subscribers,
        points: &w.points,
        bucket_ms: 300_000,
    };
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
