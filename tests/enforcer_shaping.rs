//! Per-tariff speed caps with real kernel nftables and real TCP (issue 5).
//! The topology of enforcer_netns (subscriber — router with the enforcer —
//! "internet"), two subscriber addresses: 10.1.0.2 on a tariff capped at
//! 8 Mbit/s down and 4 Mbit/s up, 10.1.0.3 on one without a cap. Bulk
//! TCP transfers (python3 sockets on both ends) must run at about the cap
//! for the first and far above it for the second; a new tariff version
//! with another cap reaches the kernel when it takes effect; a block
//! removes the cap with the address.
//!
//! Needs root, `ip`, `nft`, `ping` and `python3`; fails loudly without.

mod common;

use std::time::{Duration, Instant};

use common::billing::CoreProc;
use common::classify::kopek;
use common::netns::{EnforcerProc, Topology, Way, euid, in_ns, sh, tcp_transfer};
use common::require_tool;

/// Kernel speed caps of `addr`: (down, up) policer chains it jumps to.
fn caps_in_kernel(rtr: &str, addr: &str) -> (Option<String>, Option<String>) {
    let find = |map: &str| {
        let out = in_ns(rtr, &["nft", "list", "map", "inet", "kopek", map]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split([',', '{', '}', '\n'])
            .map(str::trim)
            .find_map(|e| {
                let (k, v) = e.split_once(" : jump ")?;
                (k.trim() == addr).then(|| v.trim().to_string())
            })
    };
    (find("rl_in4"), find("rl_out4"))
}

fn wait_caps(rtr: &str, addr: &str, want: (Option<&str>, Option<&str>), timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let got = caps_in_kernel(rtr, addr);
        if (got.0.as_deref(), got.1.as_deref()) == want {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "caps of {addr}: {got:?}, want {want:?} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Transfers `bytes` and returns the rate in bytes/s net of the policer's
/// bucket (what may pass at once before the rate applies: one second at
/// the rate, docs/enforcer.md).
fn rate(t: &Topology, src: &str, way: Way, bytes: u64, bucket: u64, port: u16) -> f64 {
    let (got, secs) = tcp_transfer(&t.sub, src, &t.net, "192.0.2.2", port, way, bytes);
    assert_eq!(got, bytes, "{way:?} from {src}: bytes received");
    let r = got.saturating_sub(bucket) as f64 / secs.max(1e-6);
    eprintln!(
        "{way:?} {src}: {got} bytes in {secs:.3} s = {:.0} B/s net of the bucket",
        r
    );
    r
}

#[test]
fn tariff_caps_police_each_subscriber_address() {
    assert_eq!(
        euid(),
        0,
        "this test needs root (network namespaces, nftables); CI runs as root"
    );
    for tool in ["ip", "nft", "ping", "python3"] {
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
lease_s = 30
renew_s = 5
poll_interval_ms = 100
nft = "{nft}"
"#,
            s = state.display(),
            sock = socket.display(),
            nft = nft.display()
        ),
    )
    .unwrap();
    let t = Topology::new();
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

    let capped = state.join("capped.toml");
    std::fs::write(
        &capped,
        "unit = \"MB\"\n[rate_limit]\ndown_kbit = 8000\nup_kbit = 4000\n",
    )
    .unwrap();
    let open = state.join("open.toml");
    std::fs::write(&open, "unit = \"MB\"\n").unwrap();
    let off = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--offline");
        kopek(&config, &a)
    };
    for (name, file) in [("capped", &capped), ("open", &open)] {
        off(&[
            "tariff",
            "add",
            name,
            file.to_str().unwrap(),
            "--effective",
            "2000-01-01",
            "--reason",
            "r",
        ]);
    }
    off(&["subscriber", "add", "--name", "Anna"]);
    off(&[
        "account",
        "add",
        "1001",
        "--subscriber",
        "1",
        "--tariff",
        "capped",
    ]);
    off(&[
        "account",
        "add",
        "1002",
        "--subscriber",
        "1",
        "--tariff",
        "open",
    ]);
    kopek(&config, &["account", "bind", "1001", "10.1.0.2"]);
    kopek(&config, &["account", "bind", "1002", "10.1.0.3"]);

    let _core = CoreProc::start(&config, &socket);
    let _enforcer = EnforcerProc::start(&t.rtr, &config);
    wait_caps(
        &t.rtr,
        "10.1.0.2",
        (Some("rl_in_8000"), Some("rl_out_4000")),
        Duration::from_secs(10),
    );
    assert_eq!(caps_in_kernel(&t.rtr, "10.1.0.3"), (None, None));
    t.wait_ping("192.0.2.2", true, Duration::from_secs(5));

    // 8 Mbit/s = 1,000,000 B/s down, 4 Mbit/s = 500,000 B/s up. TCP
    // through a policer runs at or somewhat under the rate; never above.
    let down = rate(&t, "10.1.0.2", Way::Download, 4_000_000, 1_000_000, 5001);
    assert!(
        (400_000.0..=1_100_000.0).contains(&down),
        "capped download at {down:.0} B/s, cap 1,000,000"
    );
    let up = rate(&t, "10.1.0.2", Way::Upload, 2_000_000, 500_000, 5002);
    assert!(
        (200_000.0..=550_000.0).contains(&up),
        "capped upload at {up:.0} B/s, cap 500,000"
    );
    let free = rate(&t, "10.1.0.3", Way::Download, 20_000_000, 0, 5003);
    assert!(
        free > 5_000_000.0,
        "uncapped download at {free:.0} B/s: the other subscriber must not be policed"
    );

    // A new version of the tariff takes effect in two seconds with a
    // doubled down cap and no up cap: the kernel follows when it begins.
    let capped2 = state.join("capped2.toml");
    std::fs::write(&capped2, "unit = \"MB\"\n[rate_limit]\ndown_kbit = 16000\n").unwrap();
    let at = chrono::Utc::now().timestamp_millis() + 2_000;
    kopek(
        &config,
        &[
            "tariff",
            "update",
            "capped",
            capped2.to_str().unwrap(),
            "--effective",
            &at.to_string(),
            "--reason",
            "faster",
        ],
    );
    assert_eq!(
        caps_in_kernel(&t.rtr, "10.1.0.2"),
        (Some("rl_in_8000".into()), Some("rl_out_4000".into())),
        "the new version is not in effect yet"
    );
    wait_caps(
        &t.rtr,
        "10.1.0.2",
        (Some("rl_in_16000"), None),
        Duration::from_secs(10),
    );
    let down2 = rate(&t, "10.1.0.2", Way::Download, 8_000_000, 2_000_000, 5004);
    assert!(
        (800_000.0..=2_200_000.0).contains(&down2),
        "download at {down2:.0} B/s after the change, cap 2,000,000"
    );

    // A blocked account loses its address and its cap together.
    kopek(&config, &["account", "block", "1001", "--reason", "test"]);
    t.wait_in_set("10.1.0.2", false, Duration::from_secs(5));
    wait_caps(&t.rtr, "10.1.0.2", (None, None), Duration::from_secs(5));
}
