//! Operator mistakes at the billing CLI: each gets a clear error naming
//! what is wrong, a non-zero exit, and changes nothing (the audit log
//! records the refusal). Runs against a live core over its socket, and
//! checks the socket's permissions.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::billing::{CoreProc, count, kopek_fails};
use common::classify::kopek;

/// A config for a core in `state` (zone Europe/Moscow), `core_extra` added
/// to its `[core]` table; returns the config file and the core's socket.
fn core_config(
    state: &std::path::Path,
    core_extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = state.join("run/core.sock");
    let config = state.join("kopek.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\nstate_dir = \"{}\"\ntimezone = \"Europe/Moscow\"\n[core]\nsocket = \"{}\"\n{core_extra}",
            state.display(),
            socket.display()
        ),
    )
    .unwrap();
    (config, socket)
}

#[test]
fn bad_billing_commands_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (config, socket) = core_config(state, "");
    let tariff = state.join("t.toml");
    std::fs::write(&tariff, "unit = \"MB\"\nmonthly_fee = \"100.00\"\n").unwrap();
    let bad_tariff = state.join("bad.toml");
    std::fs::write(
        &bad_tariff,
        "unit = \"MB\"\n[[traffic]]\nclass = \"paid\"\ndirection = \"up\"\nprice = \"1\"\n",
    )
    .unwrap();

    // Without a running core, changes say so (and how to proceed).
    let e = kopek_fails(&config, &["subscriber", "add", "--name", "X"]);
    assert!(
        e.contains("the core is not running") && e.contains("--offline"),
        "{e}"
    );

    let _core = CoreProc::start(&config, &socket);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    // A second core on the same state dir is refused.
    let e = kopek_fails(&config, &["core", "run"]);
    assert!(e.contains("another core"), "{e}");

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
    kopek(&config, &["subscriber", "add", "--name", "Anna"]);
    kopek(
        &config,
        &[
            "account",
            "add",
            "1001",
            "--subscriber",
            "1",
            "--tariff",
            "t",
        ],
    );
    let entries_before = count(state, "core.sqlite", "SELECT count(*) FROM entries");
    let accounts_before = count(state, "core.sqlite", "SELECT count(*) FROM accounts");

    for (args, want) in [
        // A wrong path (a device that never ends): refused at the limit.
        (
            vec!["payment", "import", "/dev/zero", "--source", "bank"],
            "more than 64 MiB",
        ),
        (vec!["tariff", "check", "/dev/zero"], "more than 1 MiB"),
        (
            vec!["payment", "add", "1001", "-5", "--id", "x", "--reason", "r"],
            "amount must be positive",
        ),
        (
            vec![
                "payment", "add", "1001", "5.001", "--id", "x", "--reason", "r",
            ],
            "at most 2 decimals",
        ),
        (
            vec![
                "payment", "add", "nobody", "5", "--id", "x", "--reason", "r",
            ],
            "unknown account \"nobody\"",
        ),
        (
            vec!["payment", "add", "1001", "5", "--id", "x", "--reason", ""],
            "reason is required",
        ),
        (
            vec!["payment", "add", "1001", "5", "--id", "", "--reason", "r"],
            "payment id is required",
        ),
        (
            vec!["account", "add", "1001", "--subscriber", "1"],
            "exists already",
        ),
        (
            vec!["account", "add", "1002", "--subscriber", "9"],
            "unknown subscriber 9",
        ),
        (
            vec![
                "account",
                "add",
                "1002",
                "--subscriber",
                "1",
                "--tariff",
                "nope",
            ],
            "unknown tariff \"nope\"",
        ),
        (
            vec!["account", "add", "a b", "--subscriber", "1"],
            "account number",
        ),
        (
            vec![
                "account",
                "add",
                "1002",
                "--subscriber",
                "1",
                "--policy",
                "maybe",
            ],
            "block-at-zero or credit",
        ),
        (
            vec![
                "account",
                "add",
                "1002",
                "--subscriber",
                "1",
                "--credit-limit",
                "-1",
            ],
            "0 or more",
        ),
        (
            vec![
                "account",
                "freeze",
                "1001",
                "--from",
                "2030-02-01",
                "--to",
                "2030-01-01",
                "--reason",
                "r",
            ],
            "must end after it starts",
        ),
        (
            vec![
                "account",
                "promise",
                "1001",
                "10",
                "--until",
                "2020-01-01",
                "--reason",
                "r",
            ],
            "expire in the future",
        ),
        (
            vec![
                "account",
                "tariff",
                "1001",
                "t",
                "--from",
                "2020-01-01",
                "--reason",
                "r",
            ],
            "in the past",
        ),
        (
            vec![
                "tariff",
                "add",
                "t",
                tariff.to_str().unwrap(),
                "--reason",
                "r",
            ],
            "exists already",
        ),
        (
            vec![
                "tariff",
                "add",
                "u",
                bad_tariff.to_str().unwrap(),
                "--reason",
                "r",
            ],
            "traffic[0].direction",
        ),
        (
            vec![
                "tariff",
                "update",
                "t",
                tariff.to_str().unwrap(),
                "--effective",
                "2020-01-01",
                "--reason",
                "r",
            ],
            "in the past",
        ),
        (
            vec!["ledger", "correct", "1001", "0", "--reason", "r"],
            "changes nothing",
        ),
        (
            vec!["subscriber", "add", "--name", "Y", "--kind", "robot"],
            "person or org",
        ),
        (
            vec!["report", "invoice", "1001", "--period", "2026-13"],
            "YYYY-MM",
        ),
        (vec!["explain", "999999"], "no ledger entry 999999"),
        (
            vec!["subscriber", "set", "99", "--name", "X"],
            "unknown subscriber 99",
        ),
    ] {
        let e = kopek_fails(&config, &args);
        assert!(e.contains(want), "{args:?}: expected {want:?} in {e}");
    }
    kopek(
        &config,
        &["subscriber", "set", "1", "--contact", "+7 900 000-00-00"],
    );
    let subs = kopek(&config, &["subscriber", "ls", "--format", "csv"]);
    assert!(
        subs.contains("1,Anna,person,+7 900 000-00-00,1001"),
        "{subs}"
    );
    let audit = kopek(&config, &["report", "audit", "--format", "csv"]);
    assert!(
        audit.contains("payment-add") && audit.contains("refused: amount must be positive"),
        "{audit}"
    );
    // Overlapping tariff versions: a version must start after the last.
    kopek(
        &config,
        &[
            "tariff",
            "update",
            "t",
            tariff.to_str().unwrap(),
            "--effective",
            "2031-01-01",
            "--reason",
            "r",
        ],
    );
    let e = kopek_fails(
        &config,
        &[
            "tariff",
            "update",
            "t",
            tariff.to_str().unwrap(),
            "--effective",
            "2030-06-01",
            "--reason",
            "r",
        ],
    );
    assert!(e.contains("overlapping tariff versions"), "{e}");
    assert_eq!(
        count(state, "core.sqlite", "SELECT count(*) FROM entries"),
        entries_before
    );
    assert_eq!(
        count(state, "core.sqlite", "SELECT count(*) FROM accounts"),
        accounts_before
    );
    assert_eq!(
        count(state, "core.sqlite", "SELECT count(*) FROM tariff_versions"),
        2
    );
    // Every refusal that reached the core is in the audit log with who.
    let refused = count(
        state,
        "core.sqlite",
        "SELECT count(*) FROM audit WHERE result LIKE 'refused:%' AND who <> ''",
    );
    assert!(refused >= 15, "{refused} refusals audited");
    // --offline is refused while the core runs (one writer).
    let e = kopek_fails(&config, &["subscriber", "add", "--name", "Z", "--offline"]);
    assert!(e.contains("another core holds"), "{e}");
    let v = kopek(&config, &["ledger", "verify"]);
    assert!(v.contains("ledger ok"), "{v}");
}

/// `kopek core stats` with a tier 2 the core cannot read: every cycle
/// fails (rolled back, retried), and the stats say so — how many in a row
/// and why — besides whether the core runs, stopped or was killed.
#[test]
fn core_stats_tell_failing_cycles_and_whether_the_core_runs() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (config, socket) = core_config(state, "cycle_interval_ms = 100\n");
    let stats = || -> (serde_json::Value, String) {
        let out = std::process::Command::new(common::kopek_bin())
            .arg("--config")
            .arg(&config)
            .args(["core", "stats"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            serde_json::from_slice(&out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let wait =
        |what: &str, ok: &dyn Fn(&serde_json::Value) -> bool| -> (serde_json::Value, String) {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if state.join("core.stats.json").exists() {
                    let s = stats();
                    if ok(&s.0) {
                        return s;
                    }
                    assert!(Instant::now() < deadline, "{what}: {}", s.0);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
    let log = dir.path().join("core.log");
    let mut core = CoreProc::start_logged(&config, &socket, Some(&log));
    let pid = core.pid();
    let (s, said) = wait("running", &|s| {
        s["running"] == true && s["now_ms"].as_i64() > Some(0)
    });
    assert_eq!(
        (s["pid"].as_u64(), s["failed_cycles"].as_u64()),
        (Some(pid.into()), Some(0))
    );
    assert!(said.is_empty(), "{said}");

    // Tier 2 turns into something that is not a database.
    std::fs::write(state.join("tier2.sqlite"), vec![b'x'; 8192]).unwrap();
    let (s, said) = wait("failing", &|s| s["failed_cycles"].as_u64() >= Some(3));
    let error = s["last_failure"]["error"].as_str().unwrap();
    assert!(
        error.contains("tier2.sqlite") && error.contains("not a database"),
        "{s}"
    );
    assert!(
        said.contains("rating cycle(s) failed, billing stands still")
            && said.contains("not a database"),
        "{said}"
    );
    assert_eq!(s["running"], true);
    // A failure every cycle is logged once (then once a minute).
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.matches("rating cycle failed").count(),
        1,
        "{} failed cycles: {logged}",
        s["failed_cycles"]
    );

    core.stop();
    let (s, _) = stats();
    assert_eq!(
        (&s["running"], &s["stopped"]),
        (&false.into(), &true.into()),
        "{s}"
    );

    std::fs::remove_file(state.join("tier2.sqlite")).unwrap();
    let mut core = CoreProc::start(&config, &socket);
    let pid = core.pid();
    let (s, _) = wait("running again", &|s| {
        s["running"] == true && s["pid"].as_u64() == Some(pid.into())
    });
    assert_eq!(s["failed_cycles"].as_u64(), Some(0), "{s}");
    assert!(s["last_failure"].is_null(), "a new run: {s}");
    core.kill9();
    let (s, _) = stats();
    assert_eq!(
        (&s["running"], &s["stopped"]),
        (&false.into(), &false.into()),
        "{s}"
    );
}
