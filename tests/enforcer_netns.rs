//! The enforcer with real kernel nftables and real packets (issue 5's
//! first proof). Three network namespaces made here: a subscriber
//! (10.1.0.2) behind a router running the enforcer, and an "internet"
//! (192.0.2.2, plus 192.0.2.53 as the walled garden) behind it.
//!
//! The real core decides (an account bound to 10.1.0.2); the real
//! enforcer, inside the router namespace, keeps the allowed set. Checked
//! with ping: allowed → traffic flows; blocked by the operator → it stops
//! while the walled garden still answers; unblocked → flows again; kill -9
//! of the enforcer and the core → it stops by itself when the lease runs
//! out; restart both → flows again with no manual step. A foreign table in
//! the router namespace survives everything.
//!
//! Needs root, `ip`, `nft` and `ping` (.ci/run installs nftables and
//! iputils-ping); fails loudly without them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::billing::CoreProc;
use common::classify::kopek;
use common::netns::{EnforcerProc, Topology, euid, in_ns, sh};
use common::{kopek_bin, require_tool};

#[test]
fn default_deny_follows_the_core_and_fails_closed() {
    assert_eq!(
        euid(),
        0,
        "this test needs root (network namespaces, nftables); CI runs as root"
    );
    for tool in ["ip", "nft", "ping"] {
        require_tool(tool);
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let socket = state.join("core.sock");
    let config = state.join("kopek.toml");
    let nft = require_tool("nft");
    std::fs::write(
        &config,
        format!(
            r#"[general]
state_dir = "{s}"
timezone = "Europe/Moscow"
[core]
socket = "{sock}"
cycle_interval_ms = 200
[enforcer]
networks = ["10.1.0.0/24"]
walled_garden = ["192.0.2.53/32"]
lease_s = 4
renew_s = 1
poll_interval_ms = 100
nft = "{nft}"
counters_poll_s = 1
counters_by_class = true
[classifier]
default_class = "paid"
[[classifier.class]]
name = "local"
networks = ["198.51.100.0/24"]
files = ["{local}"]
"#,
            s = state.display(),
            sock = socket.display(),
            nft = nft.display(),
            local = state.join("local.txt").display(),
        ),
    )
    .unwrap();
    std::fs::write(state.join("local.txt"), "192.0.2.53/32\n").unwrap();
    let t = Topology::new();
    // A table that is not ours, in the router's namespace.
    let out = in_ns(&t.rtr, &["nft", "add", "table", "inet", "foreign"]);
    assert!(out.status.success());
    in_ns(&t.rtr, &["nft", "add", "chain", "inet", "foreign", "keep"]);

    // Without the enforcer the router forwards everything.
    assert!(t.ping("192.0.2.2"), "the topology itself does not forward");

    let tariff = state.join("t.toml");
    // A monthly fee and no money yet: blocked until the payment.
    std::fs::write(&tariff, "unit = \"MB\"\nmonthly_fee = \"30.00\"\n").unwrap();
    let off = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--offline");
        kopek(&config, &a)
    };
    off(&[
        "tariff",
        "add",
        "t",
        tariff.to_str().unwrap(),
        "--effective",
        "2000-01-01",
        "--reason",
        "r",
    ]);
    off(&["subscriber", "add", "--name", "Anna"]);
    off(&[
        "account",
        "add",
        "1001",
        "--subscriber",
        "1",
        "--tariff",
        "t",
    ]);
    kopek(&config, &["account", "bind", "1001", "10.1.0.2"]);

    // The unit's ExecStartPre: the table, nothing allowed.
    let out = Command::new("ip")
        .args(["netns", "exec", &t.rtr, kopek_bin(), "--config"])
        .arg(&config)
        .args(["enforcer", "install"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !t.ping("192.0.2.2"),
        "installed table must deny before anything is allowed"
    );
    assert!(t.ping("192.0.2.53"), "the walled garden answers");

    let mut core = CoreProc::start(&config, &socket);
    let mut enforcer = EnforcerProc::start(&t.rtr, &config);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!t.ping("192.0.2.2"), "an account without money is blocked");
    assert!(t.ping("192.0.2.53"), "the walled garden answers");

    // A payment: the address enters the kernel set, traffic flows.
    let t0 = Instant::now();
    kopek(
        &config,
        &[
            "payment", "add", "1001", "100.00", "--id", "p1", "--reason", "test",
        ],
    );
    t.wait_in_set("10.1.0.2", true, Duration::from_secs(5));
    let in_set = t0.elapsed();
    let took = t.wait_ping("192.0.2.2", true, Duration::from_secs(5));
    eprintln!(
        "payment -> element in the kernel set {in_set:?}, ping answered {:?} after the payment",
        t0.elapsed()
    );
    let _ = took;

    // The operator blocks the account: the element leaves the kernel set,
    // traffic stops, the garden still answers.
    let t0 = Instant::now();
    kopek(&config, &["account", "block", "1001", "--reason", "test"]);
    let gone = t.wait_in_set("10.1.0.2", false, Duration::from_secs(5));
    eprintln!(
        "block -> element gone from the kernel set after {gone:?} (command included: {:?})",
        t0.elapsed()
    );
    t.wait_ping("192.0.2.2", false, Duration::from_secs(5));
    assert!(
        t.ping("192.0.2.53"),
        "the walled garden answers a blocked subscriber"
    );
    kopek(&config, &["account", "unblock", "1001", "--reason", "test"]);
    let took = t.wait_ping("192.0.2.2", true, Duration::from_secs(5));
    eprintln!("allowed again after {took:?}");

    // Counters as a tier-1 source: 20 pings of 1,028-byte IP packets each
    // way appear in tier 1 exactly, across several read-and-reset polls;
    // 10 pings of 528-byte packets to the "local" class (mirrored into
    // an nft set) are counted apart, under the class's representative
    // remote address.
    std::thread::sleep(Duration::from_millis(1_500));
    let (in0, out0) = counted(state, "10.1.0.2", "0.0.0.0");
    let (lin0, lout0) = counted(state, "10.1.0.2", "192.0.2.53");
    let out = in_ns(
        &t.sub,
        &[
            "ping",
            "-c",
            "10",
            "-i",
            "0.05",
            "-s",
            "500",
            "-q",
            "192.0.2.53",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = in_ns(
        &t.sub,
        &[
            "ping",
            "-c",
            "20",
            "-i",
            "0.05",
            "-s",
            "1000",
            "-q",
            "192.0.2.2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(2_500));
    let (in1, out1) = counted(state, "10.1.0.2", "0.0.0.0");
    assert_eq!(
        (in1 - in0, out1 - out0),
        (20 * 1_028, 20 * 1_028),
        "nft counter records in tier 1, default class"
    );
    let (lin1, lout1) = counted(state, "10.1.0.2", "192.0.2.53");
    assert_eq!(
        (lin1 - lin0, lout1 - lout0),
        (10 * 528, 10 * 528),
        "nft counter records in tier 1, class local"
    );

    // The list file changes and the enforcer is told (SIGHUP, systemctl
    // reload): 192.0.2.53 is no longer local, its pings count in the
    // default class; the class set was swapped in one batch.
    std::fs::write(state.join("local.txt"), "203.0.113.0/24\n").unwrap();
    enforcer.hup();
    let t0 = Instant::now();
    loop {
        let out = in_ns(
            &t.rtr,
            &["nft", "list", "set", "inet", "kopek", "cls4_local"],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("203.0.113.0/24") && !text.contains("192.0.2.53") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "class set not reloaded: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = in_ns(
        &t.sub,
        &[
            "ping",
            "-c",
            "5",
            "-i",
            "0.05",
            "-s",
            "500",
            "-q",
            "192.0.2.53",
        ],
    );
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        counted(state, "10.1.0.2", "192.0.2.53"),
        (lin1, lout1),
        "nothing more counted as local"
    );
    assert_eq!(
        counted(state, "10.1.0.2", "0.0.0.0"),
        (in1 + 5 * 528, out1 + 5 * 528),
        "the garden's pings now count in the default class"
    );

    // A pppd session: bob's address comes up through the ip-up hook and is
    // allowed once the core has applied the event; ip-down takes it away.
    sh(&[
        "ip",
        "-n",
        &t.sub,
        "addr",
        "add",
        "10.1.0.3/24",
        "dev",
        "s0",
    ]);
    kopek(&config, &["subscriber", "add", "--name", "Bob"]);
    kopek(
        &config,
        &[
            "account",
            "add",
            "1002",
            "--subscriber",
            "2",
            "--tariff",
            "t",
        ],
    );
    kopek(&config, &["account", "login", "1002", "bob"]);
    kopek(
        &config,
        &[
            "payment", "add", "1002", "50.00", "--id", "p2", "--reason", "test",
        ],
    );
    assert!(!t.ping_from("10.1.0.3", "192.0.2.2"), "no session yet");
    let hook = |kind: &str| {
        let out = Command::new(kopek_bin())
            .env_clear()
            .env("PEERNAME", "bob")
            .env("IFNAME", "ppp7")
            .arg("--config")
            .arg(&config)
            .args([
                "ppp",
                kind,
                "ppp7",
                "/dev/pts/7",
                "0",
                "10.1.0.1",
                "10.1.0.3",
                "",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let t0 = Instant::now();
    hook("ip-up");
    t.wait_in_set("10.1.0.3", true, Duration::from_secs(5));
    eprintln!(
        "ip-up -> address in the kernel set after {:?}",
        t0.elapsed()
    );
    assert!(
        t.ping_from("10.1.0.3", "192.0.2.2"),
        "the session's traffic flows"
    );
    hook("ip-down");
    t.wait_in_set("10.1.0.3", false, Duration::from_secs(5));
    assert!(
        !t.ping_from("10.1.0.3", "192.0.2.2"),
        "after ip-down the address is denied"
    );

    // A batch the kernel refuses changes nothing (one transaction): an
    // element that would be allowed, then an invalid statement.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &t.rtr, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"add element inet kopek allowed4 { 10.1.0.9 timeout 60s }\nadd element inet kopek allowed4 { 999.1.1.1 }\n")
        .unwrap();
    assert!(!child.wait().unwrap().success());
    t.wait_in_set("10.1.0.9", false, Duration::from_millis(10));

    // Leases are renewed while both run: still flowing after 3 leases.
    std::thread::sleep(Duration::from_secs(12));
    assert!(t.ping("192.0.2.2"), "leases were not renewed");

    // Fail closed: kill both; traffic stops when the lease runs out.
    enforcer.kill9();
    core.kill9();
    let took = t.wait_ping("192.0.2.2", false, Duration::from_secs(8));
    eprintln!("stopped {took:?} after kill -9 of enforcer and core (lease 4 s)");

    // Restart both: traffic returns with no manual step.
    let _core = CoreProc::start(&config, &socket);
    let _enforcer = EnforcerProc::start(&t.rtr, &config);
    t.wait_ping("192.0.2.2", true, Duration::from_secs(10));

    // The foreign table and its chain were never touched.
    let out = in_ns(&t.rtr, &["nft", "list", "table", "inet", "foreign"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("chain keep"),
        "{text}"
    );
}

/// Bytes the nft-counter source wrote to tier 1 for `addr` with `remote`
/// on the other side: (to it, from it).
fn counted(state: &Path, addr: &str, remote: &str) -> (u64, u64) {
    let out = Command::new(kopek_bin())
        .args(["raw", "--state-dir"])
        .arg(state)
        .args(["dump", "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut i, mut o) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let bytes: u64 = f[13].parse().unwrap();
        if f[5] == addr && f[6] == remote {
            o += bytes;
        } else if f[6] == addr && f[5] == remote {
            i += bytes;
        }
    }
    (i, o)
}
