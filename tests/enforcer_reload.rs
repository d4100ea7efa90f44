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

/// Applies a batch through the enforcer's own `nft::apply` (`c.nft` runs
/// nft inside the router's namespace).
fn apply(c: &EnforcerConfig, batch: &str) {
    nft::apply(c, batch).unwrap_or_else(|e| panic!("{e}\n{batch}"));
}

/// The test topology with a second subscriber address (10.1.0.4, never
/// allowed) and the enforcer's config for the router, whose `nft` is a
/// wrapper running nft inside the router's namespace.
///
/// The tests of this file take turns (the guard returned): they share the
/// namespaces' names, and a flood beside the ping test would cost it
/// packets the test counts.
fn router() -> (std::sync::MutexGuard<'static, ()>, Topology, EnforcerConfig) {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
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
        nft: wrapper,
        counters_poll: None,
        counters_by_class: false,
    };
    (turn, t, c)
}

#[test]
fn a_thousand_updates_while_packets_flow() {
    let (_turn, t, c) = router();
    let paid: IpNet = "10.1.0.2/32".parse().unwrap();
    let mut allowed: BTreeSet<IpNet> = [paid].into_iter().collect();
    // The others carry speed caps too: their policers are (re)written in
    // the same batches.
    let cap = Caps {
        down_kbit: Some(1_000),
        up_kbit: Some(500),
    };
    let mut caps: BTreeMap<IpNet, Caps> = BTreeMap::new();
    nft::replace(&c, &allowed, &caps, None, c.lease).unwrap();
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
        if i % 100 == 99 {
            // Whole, as the enforcer does at its start: through the guard.
            nft::replace(&c, &allowed, &caps, None, c.lease).unwrap();
            continue;
        }
        let batch = if i % 50 == 49 {
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
        apply(&c, &batch);
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
    let _ = std::fs::remove_file(&c.nft);
}

/// Sends UDP to 192.0.2.2:9999 as fast as it can until killed, from the
/// paid (10.1.0.2) and the unpaid (10.1.0.4) address in turn.
const UDP_FLOOD: &str = r#"
import socket
socks = []
for src in ("10.1.0.2", "10.1.0.4"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    socks.append(s)
n = 0
while True:
    for s in socks:
        try:
            s.sendto(b"%012d" % n, ("192.0.2.2", 9999))
        except OSError:
            pass
    n += 1
"#;

/// Counts what arrives on port 9999 by source, until 3 s pass without a
/// datagram; prints `paid unpaid`.
const UDP_COUNT: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", 9999))
print("ready", flush=True)
s.settimeout(3)
paid = unpaid = 0
try:
    while True:
        d, a = s.recvfrom(64)
        if a[0] == "10.1.0.2":
            paid += 1
        elif a[0] == "10.1.0.4":
            unpaid += 1
except socket.timeout:
    pass
print(paid, unpaid)
"#;

/// The whole table replaced 300 times (what the enforcer does at every
/// start) under a UDP flood from a paid and an unpaid address: not one
/// unpaid datagram gets through. Inside one transaction the kernel makes
/// the new rules active a moment before the new subscriber-network set's
/// contents; replaced in one batch, about one unpaid datagram per replace
/// passed at this rate (1,012 in 1,000 replaces, measured): `nft::replace`
/// puts a guard table with the same drops in place first.
#[test]
fn a_whole_table_replace_lets_no_unpaid_packet_through() {
    let (_turn, t, c) = router();
    let python = require_tool("python3");
    let allowed: BTreeSet<IpNet> = ["10.1.0.2/32".parse().unwrap()].into_iter().collect();
    let caps = BTreeMap::new();
    nft::replace(&c, &allowed, &caps, None, c.lease).unwrap();
    let mut count = Command::new("ip")
        .args(["netns", "exec", &t.net])
        .arg(&python)
        .args(["-c", UDP_COUNT])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(count.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut flood = Command::new("ip")
        .args(["netns", "exec", &t.sub])
        .arg(&python)
        .args(["-c", UDP_FLOOD])
        .spawn()
        .unwrap();
    for _ in 0..300 {
        nft::replace(&c, &allowed, &caps, None, c.lease).unwrap();
    }
    flood.kill().unwrap();
    flood.wait().unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    count.wait().unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (paid, unpaid) = (n[0], n[1]);
    eprintln!("replaces under a flood: paid {paid} datagrams through, unpaid {unpaid}");
    assert!(paid > 10_000, "the flood did not get through: {paid}");
    assert_eq!(unpaid, 0, "unpaid datagrams went through a replace");
    // The guard is gone; ours stays.
    let tables = in_ns(&t.rtr, &["nft", "list", "tables"]);
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert_eq!(tables.trim(), "table inet kopek", "{tables}");
}
