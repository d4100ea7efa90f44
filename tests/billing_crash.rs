//! The core under kill -9 (RELIABILITY tests 2, 3 and 4, and the issue's
//! crash test).
//!
//! * Rating: a writer process plays the classifier (commits to tier 2 with
//!   the classifier's own schema and `seq` protocol) while the core is
//!   killed at random moments 25 times. At the end every tier-2 byte is in
//!   exactly one accrual and every account is charged exactly
//!   floor(bytes / 1,000,000) kopecks (0.01 per MB), the ledger verifies.
//! * Payments: 3,000 payments over the control socket while the core is
//!   killed; every acknowledged payment is there once; the unacknowledged
//!   one is retried with the same id; replaying them all (shuffled) changes
//!   nothing; a replay with another amount is refused. `PRAGMA
//!   integrity_check` is ok.
//! * Atomicity: kill -9 during a 5,000-line import: all or nothing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::billing::{CoreProc, apply, call};
use common::classify::{Rng, kopek};
use serde_json::json;

const ACCOUNTS: usize = 300;

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let socket = dir.join("core.sock");
    let config = dir.join("kopek.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\nstate_dir = \"{}\"\ntimezone = \"Europe/Moscow\"\n[core]\nsocket = \"{}\"\ncycle_interval_ms = 100\n",
            dir.display(),
            socket.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("permb.toml"),
        "unit = \"MB\"\n[[traffic]]\nname = \"paid\"\nclass = \"paid\"\ndirection = \"sum\"\nprice = \"0.01\"\n",
    )
    .unwrap();
    (config, socket)
}

fn create_accounts(socket: &Path, dir: &Path, n: usize) {
    let content = std::fs::read_to_string(dir.join("permb.toml")).unwrap();
    apply(
        socket,
        json!({"cmd": "tariff-add", "name": "permb", "content": content, "effective_ms": 0, "why": "test"}),
    );
    apply(
        socket,
        json!({"cmd": "subscriber-add", "name": "S", "kind": "org", "contact": ""}),
    );
    for i in 0..n {
        apply(
            socket,
            json!({"cmd": "account-add", "number": format!("a{i}"), "subscriber": 1, "payer": null,
                   "policy": "credit", "credit_limit": "100000000.00", "tariff": "permb", "tariff_from_ms": 0}),
        );
    }
}

/// Plays the classifier: commits of 100 row updates with the next `seq`.
fn classifier_writer(state: PathBuf, stop: Arc<AtomicBool>, seed: u64) -> BTreeMap<String, i64> {
    use kopek_classifier::store::{SimRow, write_commit};
    let mut rng = Rng(seed);
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let now = chrono::Utc::now().timestamp_millis();
    let base = now - now % 300_000 - 3_600_000;
    while !stop.load(Ordering::Relaxed) {
        let commit: Vec<(String, i64, &str, i64)> = (0..100)
            .map(|_| {
                let acct = format!("a{}", rng.between(0, ACCOUNTS as u64 - 1));
                let bucket = base + 300_000 * rng.between(0, 11) as i64;
                let dir = if rng.between(0, 1) == 0 { "in" } else { "out" };
                (acct, bucket, dir, rng.between(1, 50_000_000) as i64)
            })
            .collect();
        let rows: Vec<SimRow<'_>> = commit
            .iter()
            .map(|(account, bucket_ms, direction, bytes)| SimRow {
                bucket_ms: *bucket_ms,
                account,
                class: "paid",
                direction,
                bytes: *bytes,
            })
            .collect();
        write_commit(&state, &rows).unwrap();
        for (acct, _, _, bytes) in commit {
            *totals.entry(acct).or_default() += bytes;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    totals
}

/// A core on `state` with [`ACCOUNTS`] accounts, and a thread playing the
/// classifier ([`classifier_writer`]) until `stop`.
struct Billing {
    config: PathBuf,
    socket: PathBuf,
    core: CoreProc,
    stop: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<BTreeMap<String, i64>>,
}

fn billing_with_writer(state: &Path, seed: u64) -> Billing {
    let (config, socket) = setup(state);
    let core = CoreProc::start(&config, &socket);
    create_accounts(&socket, state, ACCOUNTS);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (state, stop) = (state.to_path_buf(), stop.clone());
        std::thread::spawn(move || classifier_writer(state, stop, seed))
    };
    Billing {
        config,
        socket,
        core,
        stop,
        writer,
    }
}

fn core_db(state: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(state.join("core.sqlite")).unwrap()
}

fn meta(conn: &rusqlite::Connection, key: &str) -> i64 {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
        r.get::<_, String>(0)
    })
    .map(|v| v.parse().unwrap())
    .unwrap_or(-1)
}

#[test]
fn kill_9_during_rating_charges_every_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let Billing {
        config,
        socket,
        mut core,
        stop,
        writer,
    } = billing_with_writer(&state, 7);
    let mut rng = Rng(99);
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(rng.between(30, 400)));
        core.kill9();
        core = CoreProc::start(&config, &socket);
    }
    stop.store(true, Ordering::Relaxed);
    let totals = writer.join().unwrap();
    // Let the last core catch up with the writer's last commit.
    let t2 = rusqlite::Connection::open(state.join("tier2.sqlite")).unwrap();
    let top = meta(&t2, "traffic_seq");
    let deadline = Instant::now() + Duration::from_secs(60);
    while meta(&core_db(&state), "tier2_seq") < top {
        assert!(
            Instant::now() < deadline,
            "core did not catch up with tier 2"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    core.stop();

    let db = core_db(&state);
    let rated: BTreeMap<String, (i64, i64)> = db
        .prepare(
            "SELECT c.number, sum(a.in_bytes + a.out_bytes), sum(a.charged) FROM accruals a
             JOIN accounts c ON c.id = a.account_id GROUP BY c.number",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rated.len(), totals.len());
    for (acct, bytes) in &totals {
        let (got_bytes, charged) = rated[acct];
        assert_eq!(got_bytes, *bytes, "account {acct}: rated bytes");
        assert_eq!(
            charged,
            bytes / 1_000_000,
            "account {acct}: 0.01 per MB, floored once"
        );
    }
    let v = kopek(&config, &["ledger", "verify"]);
    assert!(v.contains("ledger ok"), "{v}");
    let ic: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ic, "ok");
}

fn payment(i: usize, amount: &str) -> serde_json::Value {
    json!({"cmd": "payment-add", "account": format!("a{}", i % 10), "amount": amount,
           "ext_id": format!("tx-{i}"), "source": "gateway", "at_ms": null, "why": "test"})
}

#[test]
fn kill_9_during_payments_loses_no_acknowledged_payment() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let (config, socket) = setup(&state);
    let mut core = CoreProc::start(&config, &socket);
    create_accounts(&socket, &state, 10);
    const N: usize = 3_000;
    let mut acked = vec![false; N];
    let mut rng = Rng(5);
    let mut next_kill = rng.between(50, 300) as usize;
    let mut i = 0;
    let mut kills = 0;
    while i < N {
        if i == next_kill {
            // Kill while a payment is in flight: send it from a thread and
            // kill the core a moment later.
            let s = socket.clone();
            let req = json!({"request": "apply", "command": payment(i, &format!("{}.{:02}", i % 97 + 1, i % 100))});
            let h = std::thread::spawn(move || call(&s, &req));
            std::thread::sleep(Duration::from_micros(rng.between(0, 3_000)));
            core.kill9();
            kills += 1;
            if let Ok(Ok(r)) = h.join().map(|r| r.map(|v| v["ok"] == true)) {
                acked[i] = r;
            }
            core = CoreProc::start(&config, &socket);
            next_kill = i + rng.between(50, 300) as usize;
            // Whether or not it was acknowledged, the client retries with
            // the same id: exactly one entry either way.
        }
        let r = call(&socket, &json!({"request": "apply", "command": payment(i, &format!("{}.{:02}", i % 97 + 1, i % 100))})).unwrap();
        assert_eq!(r["ok"], true, "{r}");
        acked[i] = true;
        i += 1;
    }
    assert!(kills >= 8, "only {kills} kills");
    // Replay everything, shuffled: nothing changes.
    let mut order: Vec<usize> = (0..N).collect();
    for k in (1..N).rev() {
        order.swap(k, rng.between(0, k as u64) as usize);
    }
    for &k in order.iter().take(600) {
        let r = call(&socket, &json!({"request": "apply", "command": payment(k, &format!("{}.{:02}", k % 97 + 1, k % 100))})).unwrap();
        assert_eq!(r["outcome"]["changed"], false, "{r}");
    }
    let r = call(
        &socket,
        &json!({"request": "apply", "command": payment(17, "999.99")}),
    )
    .unwrap();
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap().contains("amount differs"),
        "{r}"
    );
    core.stop();

    let db = core_db(&state);
    let (count, sum): (i64, i64) = db
        .query_row(
            "SELECT count(*), sum(amount) FROM entries WHERE kind = 'payment'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let want: i64 = (0..N).map(|i| ((i % 97 + 1) * 100 + i % 100) as i64).sum();
    assert_eq!(count, N as i64);
    assert_eq!(sum, want);
    let dup: i64 = db
        .query_row("SELECT count(*) FROM (SELECT ext_id FROM entries WHERE ext_id IS NOT NULL GROUP BY ext_id HAVING count(*) > 1)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dup, 0);
    let ic: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ic, "ok");
    let v = kopek(&config, &["ledger", "verify"]);
    assert!(v.contains("ledger ok"), "{v}");
}

#[test]
fn kill_9_during_an_import_applies_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let (config, socket) = setup(&state);
    let mut core = CoreProc::start(&config, &socket);
    create_accounts(&socket, &state, 10);
    let payments: Vec<serde_json::Value> = (0..5_000)
        .map(|i| {
            let mut p = payment(i, "1.00");
            p.as_object_mut().unwrap().remove("cmd");
            p["line"] = json!(i + 2);
            p
        })
        .collect();
    let req = json!({"request": "apply", "command": {"cmd": "payment-import", "file": "big.csv", "payments": payments}});
    let s = socket.clone();
    let h = std::thread::spawn(move || call(&s, &req));
    std::thread::sleep(Duration::from_millis(40));
    core.kill9();
    let _ = h.join();
    let db = core_db(&state);
    let count: i64 = db
        .query_row(
            "SELECT count(*) FROM entries WHERE kind = 'payment'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        count == 0 || count == 5_000,
        "half an import applied: {count} entries"
    );
    // A register with a bad line applies nothing and names the line.
    let csv = dir.path().join("bad.csv");
    let mut text = String::from("account,amount,id\n");
    for i in 0..100 {
        text.push_str(&format!("a1,2.00,r-{i}\n"));
    }
    text.push_str("a1,2.001,r-x\n");
    std::fs::write(&csv, text).unwrap();
    let before: i64 = db
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    let e = common::billing::kopek_fails(
        &config,
        &["payment", "import", csv.to_str().unwrap(), "--offline"],
    );
    assert!(
        e.contains("bad.csv:102") && e.contains("nothing imported"),
        "{e}"
    );
    let after: i64 = db
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after);
    // An unknown account on line 51 of a parsed-valid register: refused
    // inside the transaction, nothing applied.
    let mut text = String::from("account,amount,id\n");
    for i in 0..100 {
        let acct = if i == 49 { "nobody" } else { "a1" };
        text.push_str(&format!("{acct},2.00,u-{i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let e = common::billing::kopek_fails(
        &config,
        &["payment", "import", csv.to_str().unwrap(), "--offline"],
    );
    assert!(
        e.contains("bad.csv:51") && e.contains("unknown account"),
        "{e}"
    );
    let after2: i64 = db
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after2);
}

/// `kopek backup` while payments flow and tier 2 is written, then `kopek
/// restore` over the live state dir, whose killed core left its
/// write-ahead log (refused while a core runs): the restored databases are
/// sound; every payment acknowledged before the backup began is in the
/// restored ledger and none after it (the old log was not applied to it),
/// and it verifies; the restored tier 2 holds every row the restored core
/// had read; the core takes the payment system's records again
/// (idempotent by id) and ends with every payment once.
#[test]
fn a_backup_while_payments_flow_restores_a_sound_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let Billing {
        config,
        socket,
        mut core,
        stop,
        writer,
    } = billing_with_writer(&state, 11);
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let payer = {
        let (socket, stop, acked) = (socket.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = call(
                    &socket,
                    &json!({"request": "apply", "command": payment(i, "1.00")}),
                )
                .unwrap();
                assert_eq!(r["ok"], true, "{r}");
                i += 1;
                acked.store(i, Ordering::Relaxed);
            }
            i
        })
    };
    while acked.load(Ordering::Relaxed) < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = acked.load(Ordering::Relaxed);
    let copies = dir.path().join("backup");
    let said = kopek(&config, &["backup", "--to", copies.to_str().unwrap()]);
    assert!(
        said.contains("core.sqlite") && said.contains("tier2.sqlite"),
        "{said}"
    );
    stop.store(true, Ordering::Relaxed);
    let sent = payer.join().unwrap();
    writer.join().unwrap();
    assert!(
        sent > before,
        "payments went on during the backup: {before} → {sent}"
    );
    // Killed: its write-ahead log stays beside the database, with the
    // payments made after the backup.
    core.kill9();
    // A second backup into the same place is refused, the copies kept.
    let out = std::process::Command::new(common::kopek_bin())
        .arg("--config")
        .arg(&config)
        .args(["backup", "--to", copies.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already there"),
        "{out:?}"
    );

    // Restore over the live state dir: refused while a core runs.
    let restore = || {
        std::process::Command::new(common::kopek_bin())
            .arg("--config")
            .arg(&config)
            .args(["restore", "--from", copies.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let mut running = CoreProc::start(&config, &socket);
    let out = restore();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("stop kopek-core first"),
        "{out:?}"
    );
    running.kill9();
    assert!(state.join("core.sqlite-wal").exists());
    let out = restore();
    assert!(out.status.success(), "{out:?}");
    for f in ["core.sqlite", "tier2.sqlite"] {
        let ic: String = rusqlite::Connection::open(state.join(f))
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ic, "ok", "{f}");
    }
    let (restored, config2, socket2) = (&state, &config, &socket);
    let db = core_db(restored);
    let in_copy: i64 = db
        .query_row(
            "SELECT count(*) FROM entries WHERE kind = 'payment'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        in_copy as usize >= before && in_copy as usize <= sent,
        "{in_copy} payments in the copy; {before} acknowledged before the backup, {sent} in all"
    );
    let in_backup: i64 = core_db(&copies)
        .query_row(
            "SELECT count(*) FROM entries WHERE kind = 'payment'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_copy, in_backup, "the restored ledger is the backup's");
    let read = meta(&db, "tier2_seq");
    let t2 = rusqlite::Connection::open(restored.join("tier2.sqlite")).unwrap();
    let newest: i64 = t2
        .query_row("SELECT COALESCE(max(seq), 0) FROM traffic", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        newest >= read,
        "the copied core read up to {read}, the copied tier 2 has {newest}"
    );
    drop((db, t2));
    let v = kopek(config2, &["ledger", "verify"]);
    assert!(v.contains("ledger ok"), "{v}");
    // The payment system's records again: what the copy lacks is taken.
    let mut core2 = CoreProc::start(config2, socket2);
    for i in 0..sent {
        let r = call(
            socket2,
            &json!({"request": "apply", "command": payment(i, "1.00")}),
        )
        .unwrap();
        assert_eq!(r["ok"], true, "{r}");
    }
    core2.stop();
    let count: i64 = core_db(restored)
        .query_row(
            "SELECT count(*) FROM entries WHERE kind = 'payment'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count as usize, sent);
    let v = kopek(config2, &["ledger", "verify"]);
    assert!(v.contains("ledger ok"), "{v}");
}
