use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn registry_adds_ends_refuses_overlap_and_reports_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Registry::open(dir.path()).unwrap();
    let a = r
        .add("alice", net("100.64.0.7/32"), 1_000, None, "cli", None)
        .unwrap();
    let e = r
        .add("bob", net("100.64.0.7/32"), 5_000, None, "cli", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("100.64.0.7/32 is already bound to account \"alice\""),
        "{e}"
    );
    let ended = r.end(net("100.64.0.7/32"), 5_000).unwrap();
    assert_eq!((ended.id, ended.to_ms), (a, Some(5_000)));
    r.add(
        "bob",
        net("100.64.0.7/32"),
        5_000,
        None,
        "pppd",
        Some("ppp3"),
    )
    .unwrap();
    // A closed interval before alice's is fine; one reaching into it is not.
    r.add("carol", net("100.64.0.7/32"), 0, Some(1_000), "cli", None)
        .unwrap();
    assert!(
        r.add("dave", net("100.64.0.7/32"), 0, Some(1_001), "cli", None)
            .is_err()
    );
    assert!(matches!(
        r.end(net("100.64.0.8/32"), 9_000),
        Err(BindingError::NotOpen(_))
    ));
    assert!(
        r.add("bad account", net("10.0.0.0/8"), 0, None, "cli", None)
            .is_err()
    );
    assert!(
        r.add("x", net("10.0.0.0/8"), 10, Some(10), "cli", None)
            .is_err()
    );

    let (all, seq) = r.changes_since(0).unwrap();
    assert_eq!(all.len(), 3);
    // The ended binding moved to the newest seq: a reader that had seen
    // its start sees its end.
    let (later, seq2) = r.changes_since(1).unwrap();
    assert!(later.iter().any(|b| b.id == a && b.to_ms == Some(5_000)));
    assert_eq!(seq, seq2);
    assert!(r.changes_since(seq).unwrap().0.is_empty());

    let at = r.list(None, None, Some(6_000), 10).unwrap();
    assert_eq!(at.len(), 1);
    assert_eq!(at[0].account, "bob");
    assert_eq!(at[0].session.as_deref(), Some("ppp3"));
}

#[test]
fn index_answers_by_time_and_most_specific_prefix() {
    let mut ix = BindingIndex::new();
    let b = |id, account: &str, n: &str, from, to| Binding {
        id,
        account: account.into(),
        net: net(n),
        from_ms: from,
        to_ms: to,
        source: "test".into(),
        session: None,
    };
    ix.apply(&b(-1, "corp", "203.0.113.0/24", FOREVER_START_MS, None));
    ix.apply(&b(
        -2,
        "v6home",
        "2001:db8:aa00::/56",
        FOREVER_START_MS,
        None,
    ));
    ix.apply(&b(1, "alice", "100.64.0.7/32", 1_000, Some(5_000)));
    ix.apply(&b(2, "bob", "100.64.0.7/32", 5_000, None));
    ix.apply(&b(3, "guest", "203.0.113.9/32", 2_000, Some(3_000)));
    ix.finish();
    fn who_in(ix: &BindingIndex, a: &str, t: i64) -> Option<String> {
        ix.lookup(ip(a), t).map(|i| ix.account(i).to_string())
    }
    let who = |a: &str, t: i64| who_in(&ix, a, t);
    // (address, time, owner): data-driven.
    let cases: &[(&str, i64, Option<&str>)] = &[
        ("100.64.0.7", 999, None),
        ("100.64.0.7", 1_000, Some("alice")),
        ("100.64.0.7", 4_999, Some("alice")),
        ("100.64.0.7", 5_000, Some("bob")),
        ("100.64.0.7", i64::MAX - 1, Some("bob")),
        ("100.64.0.8", 2_000, None),
        ("203.0.113.9", 1_000, Some("corp")),
        ("203.0.113.9", 2_500, Some("guest")),
        ("203.0.113.9", 3_000, Some("corp")),
        ("203.0.113.200", 0, Some("corp")),
        ("2001:db8:aa00:ff::1", 0, Some("v6home")),
        ("2001:db8:ab00::1", 0, None),
    ];
    for (a, t, want) in cases {
        assert_eq!(who(a, *t).as_deref(), *want, "{a} at {t}");
    }
    // Ending alice's binding early (an update of binding 1) takes effect.
    ix.apply(&b(1, "alice", "100.64.0.7/32", 1_000, Some(2_000)));
    ix.finish();
    assert_eq!(who_in(&ix, "100.64.0.7", 3_000), None);
    assert_eq!(who_in(&ix, "100.64.0.7", 1_500).as_deref(), Some("alice"));
}

#[test]
fn static_file_lines_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bindings.csv");
    std::fs::write(
        &p,
        "# account,prefix\nacc1001, 198.51.100.0/28\nacc1002,2001:db8:1::/48 # delegated\n\nacc1003,198.51.100.77\n",
    )
    .unwrap();
    let v = read_static(&p).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[2].net, net("198.51.100.77/32"));
    assert_eq!(v[0].from_ms, FOREVER_START_MS);
    std::fs::write(&p, "acc1001,198.51.100.1/28\n").unwrap();
    let e = read_static(&p).unwrap_err().to_string();
    assert!(e.contains("bindings.csv:1:"), "{e}");
    std::fs::write(&p, "acc 1001,198.51.100.0/28\n").unwrap();
    assert!(read_static(&p).is_err());
}

/// The index against a linear scan: most specific bound prefix holding
/// the address with a binding covering t, and of several, the latest
/// start (then the highest id). Bindings are added, ended later and moved
/// to another prefix, in random order; one-span prefixes (answered
/// inline) and many-span ones alike. Twice: IPv6 /64s and hosts only
/// (the /64 shortcut), then with a /48 above them and /96s inside them
/// (the trie decides).
#[test]
fn index_agrees_with_a_linear_scan() {
    for deep in [false, true] {
        let nets: Vec<IpNet> = (0..40)
            .map(|i| match (i % 7, deep) {
                (0, _) => net(&format!("10.0.{}.{}/32", i % 3, i % 7)),
                (1, _) => net(&format!("10.0.{}.0/24", i % 3)),
                (2, _) => net("10.0.0.0/16"),
                (3 | 5, false) => net(&format!("2001:db8:0:{:x}::/64", i % 4)),
                (5, true) => net(&format!("2001:db8:0:{:x}::/96", i % 4)),
                (6, true) => net("2001:db8::/48"),
                (3, true) => net(&format!("2001:db8:0:{:x}::/64", i % 4)),
                _ => net(&format!("2001:db8:0:{:x}::{:x}/128", i % 4, i % 3)),
            })
            .collect();
        agrees_with_a_linear_scan(&nets);
    }
}

fn agrees_with_a_linear_scan(nets: &[IpNet]) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut idx = BindingIndex::new();
    let mut all: Vec<Binding> = Vec::new();
    let mut proven = 0;
    for id in 1..=300i64 {
        let from = (rnd(1000) as i64) * 10;
        let b = Binding {
            id,
            account: format!("acc{}", rnd(12)),
            net: nets[rnd(nets.len() as u64) as usize],
            from_ms: from,
            to_ms: if rnd(3) == 0 {
                None
            } else {
                Some(from + 10 + rnd(3000) as i64)
            },
            source: "cli".into(),
            session: None,
        };
        idx.apply(&b);
        all.push(b);
        // Now and then: end or move an earlier binding (same id).
        if rnd(4) == 0 {
            let k = rnd(all.len() as u64) as usize;
            let mut c = all[k].clone();
            if rnd(2) == 0 {
                c.to_ms = Some(c.from_ms + rnd(500) as i64);
            } else {
                c.net = nets[rnd(nets.len() as u64) as usize];
            }
            idx.apply(&c);
            all[k] = c;
        }
        idx.finish();
        if [3, 8, 15, 30, 60, 300].contains(&id) {
            proven += check_lookup_over(&idx, &all);
        }
    }
    assert!(
        proven > 200,
        "too few proven intervals to mean anything: {proven}"
    );
    let oracle = |addr: IpAddr, t: i64| -> Option<String> {
        all.iter()
            .filter(|b| b.net.contains(&addr) && b.from_ms <= t && t < b.to_ms.unwrap_or(i64::MAX))
            .max_by_key(|b| (b.net.prefix_len(), b.from_ms, b.id))
            .map(|b| b.account.clone())
    };
    let addrs: Vec<IpAddr> = (0..8)
        .flat_map(|i| {
            [
                ip(&format!("10.0.{}.{}", i % 3, i % 7)),
                ip(&format!("10.0.{}.200", i % 3)),
                ip(&format!("2001:db8:0:{:x}::{:x}", i % 4, i % 3)),
                ip(&format!("2001:db8:0:{:x}::99", i % 4)),
                ip(&format!("2001:db8:0:{:x}:1::5", i % 4)),
            ]
        })
        .chain([ip("10.1.0.1"), ip("2001:db8:1::1")])
        .collect();
    let mut checked = 0;
    for &a in &addrs {
        for t in (0..14_000).step_by(37) {
            let got = idx.lookup(a, t).map(|i| idx.account(i).to_string());
            assert_eq!(got, oracle(a, t), "{a} at {t}");
            checked += usize::from(got.is_some());
        }
    }
    assert!(
        checked > 1000,
        "too few bound answers to mean anything: {checked}"
    );
}

/// Where [`BindingIndex::lookup_over`] claims one answer for an interval,
/// every time in it has that answer (by a linear scan of `all`). Returns
/// how many intervals were proven.
fn check_lookup_over(idx: &BindingIndex, all: &[Binding]) -> usize {
    let oracle = |addr: IpAddr, t: i64| -> Option<String> {
        all.iter()
            .filter(|b| b.net.contains(&addr) && b.from_ms <= t && t < b.to_ms.unwrap_or(i64::MAX))
            .max_by_key(|b| (b.net.prefix_len(), b.from_ms, b.id))
            .map(|b| b.account.clone())
    };
    let addrs = [
        "10.0.0.0",
        "10.0.1.1",
        "10.0.2.5",
        "10.0.0.200",
        "10.0.9.9",
        "10.1.0.1",
        "2001:db8:0:1::1",
        "2001:db8:0:2::99",
        "2001:db8:0:3::2",
        "2001:db8:1::1",
    ];
    let mut proven = 0;
    for a in addrs.map(ip) {
        for t0 in (0..14_000).step_by(211) {
            for len in [0, 5, 60, 700, 5_000] {
                let t1 = t0 + len;
                let Some(claim) = idx.lookup_over(a, t0, t1) else {
                    continue;
                };
                proven += 1;
                let claim = claim.map(|i| idx.account(i).to_string());
                for t in (t0..=t1).step_by(7).chain([t1]) {
                    assert_eq!(claim, oracle(a, t), "{a} over [{t0}, {t1}] at {t}");
                }
            }
        }
    }
    proven
}
