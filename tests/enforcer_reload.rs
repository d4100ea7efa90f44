//! Reload under load (RELIABILITY test 13): 1,000 atomic updates of the
//! enforcer's table — deltas, lease renewals and whole-table replaces, the
//! batches kopek_enforcer::nft builds — while two subscribers ping through
//! the router: the paid one loses no packet, the unpaid one gets none
//! through, and the table never holds a duplicate rule.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::{Topology, euid, in_ns, sh};
use common::require_tool;
use ipnet::IpNet;
use kopek_config::EnforcerConfig;
use kopek_enforcer::nft;
use kopek_enforcer::shaping::Caps;

/// Applies a batch inside the router namespace through the enforcer's own
/// `nft::apply` (nft is run via `ip netns exec`).
fn apply(ns: &str, c: &EnforcerConfig, batch: &str) {
    let mut in_ns_cfg = c.clone();
    in_ns_cfg.nft = std::env::temp_dir().join(format!("nft-in-{ns}"));
    nft::apply(&in_ns_cfg, batch).unwrap_or_else(|e| panic!("{e}\n{batch}"));
}

#[test]
fn a_thousand_updates_while_packets_flow() {
    assert_eq!(
        euid(),
        0,
        "this test needs root (network namespaces, nftables)"
    );
    let nft_bin = require_tool("nft");
    require_tool("ping");
    let t = Topology::new();
    sh(&[
        "ip",
        "-n",
        &t.sub,
        "addr",
        "add",
        "10.1.0.4/24",
        "dev",
        "s0",
    ]);
    // nft inside the router's namespace, as a program path for nft::apply.
    let wrapper = std::env::temp_dir().join(format!("nft-in-{}", t.rtr));
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
            t.rtr,
            nft_bin.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let c = EnforcerConfig {
        table: "kopek".into(),
        networks: vec!["10.1.0.0/24".parse().unwrap()],
        walled_garden: vec![],
        lease: Duration::from_secs(120),
        renew: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
        nft: wrapper.clone(),
        counters_poll: None,
        counters_by_class: false,
    };
    let paid: IpNet = "10.1.0.2/32".parse().unwrap();
    let mut allowed: BTreeSet<IpNet> = [paid].into_iter().collect();
    // The others carry speed caps too: their policers are (re)written in
    // the same batches.
    let cap = Caps {
        down_kbit: Some(1_000),
        up_kbit: Some(500),
    };
    let mut caps: BTreeMap<IpNet, Caps> = BTreeMap::new();
    apply(
        &t.rtr,
        &c,
        &nft::replace_batch(&c, &allowed, &caps, None, c.lease),
    );
    assert!(t.ping_from("10.1.0.2", "192.0.2.2"));
    assert!(!t.ping_from("10.1.0.4", "192.0.2.2"));

    // Two pingers, 10 ms apart, for the whole run.
    let pinger = |src: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.sub,
                "ping",
                "-i",
                "0.01",
                "-w",
                "60",
                "-I",
                src,
                "192.0.2.2",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut paid_ping = pinger("10.1.0.2");
    let unpaid_ping = pinger("10.1.0.4");
    std::thread::sleep(Duration::from_millis(300));
    // 1,000 updates: others come and go, every 50th renews all leases,
    // every 100th replaces the whole table.
    for i in 0..1_000u32 {
        let other: IpNet = format!("10.1.0.{}/32", 10 + i % 200).parse().unwrap();
        let batch = if i % 100 == 99 {
            nft::replace_batch(&c, &allowed, &caps, None, c.lease)
        } else if i % 50 == 49 {
            nft::delta_batch(
                &c,
                &allowed.iter().copied().collect::<Vec<_>>(),
                &[],
                &Default::default(),
                None,
                c.lease,
            )
        } else if allowed.contains(&other) {
            allowed.remove(&other);
            caps.remove(&other);
            nft::delta_batch(
                &c,
                &[],
                &[other],
                &(vec![(other, cap)], vec![]),
                None,
                c.lease,
            )
        } else {
            allowed.insert(other);
            caps.insert(other, cap);
            nft::delta_batch(
                &c,
                &[other],
                &[],
                &(vec![], vec![(other, cap)]),
                None,
                c.lease,
            )
        };
        apply(&t.rtr, &c, &batch);
    }
    assert!(
        paid_ping.try_wait().unwrap().is_none(),
        "the pings ended before the updates did: raise the count"
    );
    let finish =
        |p: std::process::Child| String::from_utf8(p.wait_with_output().unwrap().stdout).unwrap();
    let paid_out = finish(paid_ping);
    let unpaid_out = finish(unpaid_ping);
    let stats = |out: &str| -> (u64, u64) {
        let line = out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("{out}"));
        let n: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        (n[0], n[1])
    };
    let (sent, got) = stats(&paid_out);
    eprintln!(
        "paid: {sent} sent, {got} answered; unpaid: {:?}",
        stats(&unpaid_out)
    );
    assert!(sent > 100, "{paid_out}");
    assert_eq!(
        got, sent,
        "a paid packet was dropped during the updates:\n{paid_out}"
    );
    let (usent, ugot) = stats(&unpaid_out);
    assert!(usent > 100);
    assert_eq!(ugot, 0, "an unpaid packet went through:\n{unpaid_out}");
    // One copy of each rule.
    let out = in_ns(
        &t.rtr,
        &["nft", "list", "chain", "inet", "kopek", "forward"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rules: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("drop") || l.contains("counter name"))
        .collect();
    let unique: BTreeSet<&str> = rules.iter().copied().collect();
    assert_eq!(rules.len(), unique.len(), "duplicate rules:\n{text}");
    assert_eq!(rules.len(), 8, "{text}");
    let _ = std::fs::remove_file(&wrapper);
}
