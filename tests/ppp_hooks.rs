//! pppd hook storm (RELIABILITY test 14): 500 sessions up and down through
//! the real `kopek ppp ip-up|ip-down`, run the way pppd runs them (empty
//! environment but pppd's variables, no PATH, stdio on /dev/null), 100 of
//! them without PEERNAME, plus hostile arguments, while the core is down.
//! Every hook returns within 2 s; when the core comes back every event is
//! applied exactly once (a second core start applies nothing again), in
//! order per link; the unauthenticated and the hostile ones bind nothing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::billing::{CoreProc, count};
use common::classify::kopek;
use common::kopek_bin;

const SESSIONS: usize = 500;
const WITHOUT_PEERNAME: usize = 100;

fn hook(config: &Path, kind: &str, i: usize, peer: bool) -> Duration {
    let ifname = format!("ppp{i}");
    let remote = format!("10.2.{}.{}", i / 250, i % 250 + 1);
    let mut c = Command::new(kopek_bin());
    c.env_clear()
        .arg("--config")
        .arg(config)
        .args([
            "ppp",
            kind,
            &ifname,
            "/dev/pts/1",
            "115200",
            "10.2.255.254",
            &remote,
            "",
        ])
        .env("IFNAME", &ifname)
        .env("IPLOCAL", "10.2.255.254")
        .env("IPREMOTE", &remote)
        .env("LINKNAME", format!("link{i}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if peer {
        c.env("PEERNAME", format!("user{i}"));
    }
    if kind == "ip-down" {
        c.env("CONNECT_TIME", "60")
            .env("BYTES_SENT", "1000")
            .env("BYTES_RCVD", "2000");
    }
    let t = Instant::now();
    let status = c.status().unwrap();
    assert!(status.success(), "hook {kind} {i}: {status}");
    t.elapsed()
}

#[test]
fn a_hook_storm_while_the_core_is_down_is_applied_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let socket = state.join("core.sock");
    let config = state.join("kopek.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\nstate_dir = \"{}\"\n[core]\nsocket = \"{}\"\ncycle_interval_ms = 200\n",
            state.display(),
            socket.display()
        ),
    )
    .unwrap();
    // 40 accounts with 10 logins each (user0..user399 log in with
    // PEERNAME; user400..user499 do not authenticate).
    let tariff = state.join("t.toml");
    std::fs::write(&tariff, "unit = \"MB\"\n").unwrap();
    {
        let mut core = CoreProc::start(&config, &socket);
        kopek(
            &config,
            &[
                "tariff",
                "add",
                "t",
                tariff.to_str().unwrap(),
                "--reason",
                "r",
            ],
        );
        kopek(&config, &["subscriber", "add", "--name", "ISP customers"]);
        for a in 0..40 {
            kopek(
                &config,
                &[
                    "account",
                    "add",
                    &format!("acct{a}"),
                    "--subscriber",
                    "1",
                    "--tariff",
                    "t",
                ],
            );
            for l in 0..10 {
                let i = a * 10 + l;
                kopek(
                    &config,
                    &["account", "login", &format!("acct{a}"), &format!("user{i}")],
                );
            }
        }
        core.stop();
    }
    // Hostile input: spooled as invalid, bound to nobody.
    for args in [
        vec!["ppp0;reboot", "/dev/pts/1", "1", "10.9.9.9", "10.9.9.8", ""],
        vec!["ppp1", "/dev/pts/1", "1", "10.9.9.9", "$(id)", ""],
        vec![],
    ] {
        let mut c = Command::new(kopek_bin());
        c.env_clear()
            .arg("--config")
            .arg(&config)
            .args(["ppp", "ip-up"])
            .args(&args);
        c.env("PEERNAME", "user1\n`id`");
        assert!(c.status().unwrap().success());
    }

    // The storm, 8 hooks at a time, the core down.
    let run = |kind: &'static str| -> Duration {
        let mut worst = Duration::ZERO;
        for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(8) {
            let hs: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let config = config.clone();
                    std::thread::spawn(move || {
                        hook(&config, kind, i, i < SESSIONS - WITHOUT_PEERNAME)
                    })
                })
                .collect();
            for h in hs {
                worst = worst.max(h.join().unwrap());
            }
        }
        worst
    };
    let worst_up = run("ip-up");
    let worst_down = run("ip-down");
    eprintln!("slowest hook: ip-up {worst_up:?}, ip-down {worst_down:?}");
    assert!(worst_up < Duration::from_secs(2) && worst_down < Duration::from_secs(2));
    let spooled = std::fs::read_dir(state.join("ppp-spool")).unwrap().count();
    assert_eq!(spooled, 2 * SESSIONS + 3);

    // The core comes back and applies everything.
    let mut core = CoreProc::start(&config, &socket);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(state.join("ppp-spool")).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the spool was not drained");
        std::thread::sleep(Duration::from_millis(100));
    }
    core.stop();
    let authed = (SESSIONS - WITHOUT_PEERNAME) as i64;
    assert_eq!(
        count(state, "core.sqlite", "SELECT count(*) FROM ppp_events"),
        2 * SESSIONS as i64 + 3
    );
    assert_eq!(
        count(
            state,
            "bindings.sqlite",
            "SELECT count(*) FROM bindings WHERE source = 'pppd'"
        ),
        authed
    );
    assert_eq!(
        count(
            state,
            "bindings.sqlite",
            "SELECT count(*) FROM bindings WHERE source = 'pppd' AND to_ms > from_ms"
        ),
        authed,
        "every session's binding ended by its ip-down, after its ip-up"
    );
    assert_eq!(
        count(
            state,
            "core.sqlite",
            "SELECT count(*) FROM ppp_events WHERE outcome LIKE 'refused: no PEERNAME%'"
        ),
        WITHOUT_PEERNAME as i64
    );
    assert_eq!(
        count(
            state,
            "core.sqlite",
            "SELECT count(*) FROM ppp_events WHERE outcome LIKE 'refused: invalid hook input%'"
        ),
        3
    );
    assert_eq!(
        count(
            state,
            "bindings.sqlite",
            "SELECT count(*) FROM bindings WHERE prefix LIKE '10.9.%'"
        ),
        0
    );
    // A binding carries its account and session.
    assert_eq!(
        count(
            state,
            "bindings.sqlite",
            "SELECT count(*) FROM bindings WHERE account = 'acct3' AND session = 'link37'"
        ),
        1
    );

    // Exactly once: a replayed spool file (as if the core died between
    // applying and removing it) changes nothing.
    let spool = state.join("ppp-spool");
    std::fs::create_dir_all(&spool).unwrap();
    let id: String = rusqlite::Connection::open(state.join("core.sqlite"))
        .unwrap()
        .query_row(
            "SELECT id FROM ppp_events WHERE kind = 'up' AND account = 'acct0' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    std::fs::write(spool.join(&id), b"{}").unwrap();
    let mut core = CoreProc::start(&config, &socket);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&spool).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the replayed file stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    core.stop();
    assert_eq!(
        count(state, "core.sqlite", "SELECT count(*) FROM ppp_events"),
        2 * SESSIONS as i64 + 3
    );
    assert_eq!(
        count(
            state,
            "bindings.sqlite",
            "SELECT count(*) FROM bindings WHERE source = 'pppd'"
        ),
        authed
    );
}
