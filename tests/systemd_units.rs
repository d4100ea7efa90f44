//! The systemd units in `systemd/` as systemd reads them: `systemd-analyze
//! verify` accepts each (with `/usr/bin/kopek` pointed at the binary under
//! test), and `systemctl reload` — the unit's `ExecReload=` lines, run in
//! order as systemd runs them, stopping at the first that fails — checks
//! the config before the daemon gets SIGHUP: a broken config fails the
//! reload and the daemon is not signalled; a good one signals it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{kopek_bin, require_tool};

fn units() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let mut units: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    units.sort();
    assert!(units.len() >= 4, "{units:?}");
    units
}

#[test]
fn systemd_accepts_every_unit() {
    let analyze = require_tool("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    for unit in units() {
        let text = std::fs::read_to_string(&unit)
            .unwrap()
            .replace("/usr/bin/kopek", kopek_bin());
        let copy = dir.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{}: {}{stderr}",
            unit.display(),
            out.status
        );
    }
}

/// Runs a unit's `ExecReload=` lines against `config` and `main_pid` the way
/// systemd does (in order, the first failure ends the reload); whether the
/// reload succeeded.
fn reload(lines: &[String], config: &Path, main_pid: u32) -> bool {
    for line in lines {
        let line = line
            .replace("/etc/kopek/kopek.toml", config.to_str().unwrap())
            .replace("/usr/bin/kopek", kopek_bin())
            .replace("$MAINPID", &main_pid.to_string());
        let mut words = line.split_whitespace();
        let ok = Command::new(words.next().unwrap())
            .args(words)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !ok {
            return false;
        }
    }
    true
}

#[test]
fn systemctl_reload_checks_the_config_before_the_daemon_is_signalled() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[general]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[general]\nstate_dir = \"relative/not/allowed\"\n").unwrap();
    let mut reloadable = 0;
    for unit in units() {
        let lines: Vec<String> = std::fs::read_to_string(&unit)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("ExecReload="))
            .map(str::to_string)
            .collect();
        if lines.is_empty() {
            continue;
        }
        reloadable += 1;
        // A stand-in daemon: `sleep` dies of the SIGHUP a reload sends
        // (with SIGHUP's default action: a test run under nohup would
        // hand it down ignored).
        let mut daemon = {
            use std::os::unix::process::CommandExt;
            let mut sleep = Command::new("sleep");
            sleep.arg("60");
            // SAFETY: signal() is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                sleep.pre_exec(|| {
                    libc::signal(libc::SIGHUP, libc::SIG_DFL);
                    Ok(())
                });
            }
            sleep.spawn().unwrap()
        };
        assert!(!reload(&lines, &broken, daemon.id()), "{}", unit.display());
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "{}: a broken config must not reach the daemon",
            unit.display()
        );
        assert!(reload(&lines, &good, daemon.id()), "{}", unit.display());
        assert_eq!(
            daemon.wait().unwrap().signal(),
            Some(1),
            "{}: SIGHUP after the check",
            unit.display()
        );
    }
    assert_eq!(reloadable, 3, "collector, classifier and enforcer reload");
}

/// Every unit that systemd restarts on failure is restarted however often
/// it fails: with systemd's default start limit (five starts within 10 s,
/// `DefaultStartLimitIntervalSec`), a daemon failing at each start for a
/// while (its state dir on a full disk) is given up for good after about
/// ten seconds and stays down after the cause is gone.
#[test]
fn no_unit_is_given_up_after_failing_a_few_times() {
    for unit in units() {
        let text = std::fs::read_to_string(&unit).unwrap();
        let mut section = "";
        let (mut restarts, mut unlimited) = (false, false);
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
            } else if let Some((k, v)) = line.split_once('=') {
                match (section, k, v) {
                    ("[Service]", "Restart", v) => restarts = v != "no",
                    ("[Unit]", "StartLimitIntervalSec", "0") => unlimited = true,
                    _ => {}
                }
            }
        }
        assert!(
            !restarts || unlimited,
            "{}: Restart= without StartLimitIntervalSec=0 in [Unit]",
            unit.display()
        );
    }
}
