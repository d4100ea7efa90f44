//! The billing golden test: October 2026 for four accounts, end to end
//! through all three tiers. NetFlow v5 datagrams built here go over UDP to
//! the real collector (tier 1), the real classifier turns them into tier 2,
//! and the core rates them (tier 3) in `kopek core cycle --at` steps
//! through the month, with operator commands (`--offline --now`) between
//! them. Every balance, state and invoice below is computed by hand in the
//! comments, not by the rating code.
//!
//! Zone Europe/Berlin: October 2026 has 31 days, one of them (the 25th)
//! 25 hours long.
//!
//! | account | tariff | policy | story |
//! |---|---|---|---|
//! | 1001 | flat: 600.00/month, traffic free | block at zero | pays 600.00 twice with one id; 10 GB paid traffic free |
//! | 1002 | metered (1000 MB included, 0.50/MB in), from the 16th maxgb (100.00/month, 20.00/GB of max(in, out)) | block at zero | mid-month tariff change |
//! | 1003 | night: 300.00/month, paid 1.00/MiB of in+out, free 01:00–07:00 | credit, limit 500.00 | goes into credit, blocked at the limit |
//! | 1004 | metered | block at zero | blocked at zero, a promised payment, expiry, pays |

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeZone;
use common::billing::{V5Flow, kopek_fails, send_v5};
use common::classify::{Classifier, kopek, kopek_into_closed_pipe, kopek_json};
use common::{Collector, free_udp_port};

const TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;
const MB: u32 = 1_000_000;
const MIB: u32 = 1_048_576;

const FLAT: &str = r#"
unit = "MB"
monthly_fee = "600.00"
"#;

const METERED: &str = r#"
unit = "MB"
[[traffic]]
name = "paid-in"
class = "paid"
direction = "in"
included = 1000
price = "0.50"
"#;

const MAXGB: &str = r#"
unit = "GB"
monthly_fee = "100.00"
[[traffic]]
name = "paid-max"
class = "paid"
direction = "max"
price = "20.00"
"#;

const NIGHT: &str = r#"
unit = "MiB"
monthly_fee = "300.00"
[[zone]]
name = "night"
from = "01:00"
to = "07:00"
[[traffic]]
name = "paid-night"
class = "paid"
direction = "sum"
zones = ["night"]
price = "0"
[[traffic]]
name = "paid-day"
class = "paid"
direction = "sum"
[[traffic.tier]]
from = 0
price = "1.00"
[[traffic.tier]]
from = 2000
price = "0.50"
"#;

/// UTC ms of a Berlin wall time "2026-10-03 14:00".
fn at(local: &str) -> i64 {
    let n = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M"))
        .unwrap();
    TZ.from_local_datetime(&n)
        .earliest()
        .unwrap()
        .timestamp_millis()
}

fn sub(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, n)
}

const PAID: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 5, 5);

/// `bytes` downloaded by subscriber `n` from `remote`, in one second at
/// Berlin time `local`.
fn down(n: u8, remote: Ipv4Addr, bytes: u32, local: &str) -> V5Flow {
    let t = at(local);
    V5Flow {
        src: remote,
        dst: sub(n),
        bytes,
        packets: bytes / 1400 + 1,
        start_ms: t,
        end_ms: t + 1_000,
    }
}

fn up(n: u8, remote: Ipv4Addr, bytes: u32, local: &str) -> V5Flow {
    V5Flow {
        src: sub(n),
        dst: remote,
        ..down(n, remote, bytes, local)
    }
}

struct World {
    config: PathBuf,
    state: PathBuf,
    collector: Collector,
    classifier: Classifier,
    sequence: u32,
    flows: u64,
    /// The simulated time of the last command or cycle.
    now: std::cell::RefCell<String>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        let port = free_udp_port();
        std::fs::write(
            state.join("bindings.csv"),
            "1001,10.1.0.1\n1002,10.1.0.2\n1003,10.1.0.3\n1004,10.1.0.4\n",
        )
        .unwrap();
        let config = state.join("kopek.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[general]
state_dir = "{s}"
timezone = "Europe/Berlin"

[collector]
name = "test"
listen = ["127.0.0.1:{port}"]
stats_interval_ms = 100

[collector.segment]
block_flush_ms = 50

[[collector.exporter]]
name = "border"
address = "127.0.0.1"

[classifier]
bucket_s = 300
subscriber_networks = ["10.1.0.0/24"]
bindings_file = "{s}/bindings.csv"
poll_interval_ms = 50
commit_interval_ms = 100
default_class = "paid"

[[classifier.class]]
name = "local"
networks = ["192.168.0.0/16"]

[core]
socket = "{s}/core.sock"
"#,
                s = state.display()
            ),
        )
        .unwrap();
        for (name, text) in [
            ("flat", FLAT),
            ("metered", METERED),
            ("maxgb", MAXGB),
            ("night", NIGHT),
        ] {
            std::fs::write(state.join(format!("{name}.toml")), text).unwrap();
        }
        let collector = Collector::with_config(dir, config.clone(), port);
        let classifier = Classifier::start(&config, &state);
        World {
            config,
            state,
            collector,
            classifier,
            sequence: 0,
            flows: 0,
            now: std::cell::RefCell::new("2026-09-30 12:00".into()),
        }
    }

    /// `kopek ... --offline --now <local>`.
    fn op(&self, now: &str, args: &[&str]) -> String {
        *self.now.borrow_mut() = now.to_string();
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--offline", "--now", now]);
        kopek(&self.config, &a)
    }

    /// Exports flows and waits until tier 2 has them.
    fn traffic(&mut self, flows: &[V5Flow]) {
        self.flows += send_v5(self.collector.port, flows, &mut self.sequence);
        let got = self
            .collector
            .wait_flows(self.flows, Duration::from_secs(20));
        assert_eq!(
            got, self.flows,
            "collector stored {got} of {} flows",
            self.flows
        );
        self.classifier
            .wait_committed(self.flows, Duration::from_secs(30));
    }

    /// One rating cycle as of Berlin time `local`; returns its report.
    fn cycle(&self, local: &str) -> serde_json::Value {
        *self.now.borrow_mut() = local.to_string();
        kopek_json(&self.config, &["core", "cycle", "--at", local])
    }

    fn show(&self, account: &str) -> serde_json::Value {
        let now = self.now.borrow().clone();
        let v = kopek_json(
            &self.config,
            &["account", "show", account, "--at", &now, "--format", "json"],
        );
        v[0].clone()
    }

    fn state(&self, account: &str) -> String {
        self.show(account)["state"].as_str().unwrap().to_string()
    }

    fn money(&self, account: &str, field: &str) -> String {
        self.show(account)[field].as_str().unwrap().to_string()
    }
}

fn tariff_path(w: &World, name: &str) -> String {
    w.state.join(format!("{name}.toml")).display().to_string()
}

#[test]
fn a_month_of_four_accounts_bills_to_the_kopeck() {
    let mut w = World::new();
    let setup = "2026-09-30 12:00";
    for name in ["flat", "metered", "maxgb", "night"] {
        w.op(
            setup,
            &[
                "tariff",
                "add",
                name,
                &tariff_path(&w, name),
                "--effective",
                "2026-10-01",
                "--reason",
                "October price list",
            ],
        );
    }
    for (i, name) in ["Anna", "Boris", "Vera", "Gleb"].iter().enumerate() {
        let out = w.op(setup, &["subscriber", "add", "--name", name]);
        assert!(out.contains(&format!("subscriber {}", i + 1)), "{out}");
    }
    let from = ["--tariff-from", "2026-10-01"];
    w.op(
        setup,
        &[
            &[
                "account",
                "add",
                "1001",
                "--subscriber",
                "1",
                "--tariff",
                "flat",
            ][..],
            &from[..],
        ]
        .concat(),
    );
    w.op(
        setup,
        &[
            &[
                "account",
                "add",
                "1002",
                "--subscriber",
                "2",
                "--tariff",
                "metered",
            ][..],
            &from[..],
        ]
        .concat(),
    );
    w.op(
        setup,
        &[
            &[
                "account",
                "add",
                "1003",
                "--subscriber",
                "3",
                "--tariff",
                "night",
                "--policy",
                "credit",
                "--credit-limit",
                "500.00",
            ][..],
            &from[..],
        ]
        .concat(),
    );
    w.op(
        setup,
        &[
            &[
                "account",
                "add",
                "1004",
                "--subscriber",
                "4",
                "--tariff",
                "metered",
            ][..],
            &from[..],
        ]
        .concat(),
    );

    // Oct 1 00:00:30: the first fee day. Nobody has paid: 1001 owes
    // 600.00 × 1/31 = 19.35 (floor of 19.354...) and is blocked at zero;
    // 1003 owes 300.00 / 31 = 9.67 but may go 500.00 into credit.
    let r = w.cycle("2026-10-01 00:00:30");
    assert_eq!(r["fee_days"], 2, "{r}");
    assert_eq!(w.money("1001", "accrued"), "19.35");
    assert_eq!(w.state("1001"), "blocked:no-money");
    assert_eq!(w.money("1003", "accrued"), "9.67");
    assert_eq!(w.money("1003", "available"), "490.33");
    assert_eq!(w.state("1003"), "allowed");
    assert_eq!(w.state("1002"), "allowed");

    // Oct 1 09:00: payments; the bank sends b-1 twice.
    let now = "2026-10-01 09:00";
    let pay = |id: &str, acct: &str, amount: &str| {
        w.op(
            now,
            &[
                "payment",
                "add",
                acct,
                amount,
                "--id",
                id,
                "--source",
                "bank",
                "--reason",
                "bank register 2026-10-01",
            ],
        )
    };
    assert!(pay("b-1", "1001", "600.00").contains("posted as entry"));
    let again = pay("b-1", "1001", "600.00");
    assert!(
        again.contains("already posted") && again.contains("nothing changed"),
        "{again}"
    );
    let e = kopek_fails(
        &w.config,
        &[
            "payment",
            "add",
            "1001",
            "600.01",
            "--id",
            "b-1",
            "--source",
            "bank",
            "--reason",
            "x",
            "--offline",
            "--now",
            now,
        ],
    );
    assert!(e.contains("amount differs"), "{e}");
    pay("b-2", "1002", "1000.00");
    pay("b-4", "1004", "100.00");
    w.cycle("2026-10-01 09:00:10");
    assert_eq!(w.state("1001"), "allowed");
    assert_eq!(w.money("1001", "balance"), "600.00");

    // Traffic up to Oct 4 10:00. 1004 downloads exactly 1200 MB of paid
    // traffic: 200 MB over the 1000 included × 0.50 = 100.00 = its money.
    w.traffic(&[
        // 1001: 10 GB paid, free on tariff flat (no rule prices traffic).
        down(1, PAID, 2_500 * MB, "2026-10-02 20:00"),
        down(1, PAID, 2_500 * MB, "2026-10-02 20:10"),
        down(1, PAID, 2_500 * MB, "2026-10-02 20:20"),
        down(1, PAID, 2_500 * MB, "2026-10-02 20:30"),
        // 1002: 600 MB paid (inside its 1000 MB) and 3 GB local (free).
        down(2, PAID, 600 * MB, "2026-10-03 14:00"),
        down(2, LOCAL, 3_000 * MB, "2026-10-03 15:00"),
        // 1004: 1200 MB paid in two flows.
        down(4, PAID, 700 * MB, "2026-10-04 09:00"),
        down(4, PAID, 500 * MB, "2026-10-04 09:55"),
    ]);
    w.cycle("2026-10-04 10:30");
    assert_eq!(w.money("1004", "available"), "0.00");
    assert_eq!(w.state("1004"), "allowed", "exactly zero is not below zero");

    // 2 MB more for 1004 (202 MB over: 101.00), and 1003's traffic: 3000
    // MiB at night (free) and 250 MiB in + 50 MiB out by day: 300 MiB ×
    // 1.00 = 300.00, below the 2000 MiB tier edge.
    w.traffic(&[
        down(4, PAID, 2 * MB, "2026-10-04 11:00"),
        down(3, PAID, 1_500 * MIB, "2026-10-05 02:00"),
        down(3, PAID, 1_500 * MIB, "2026-10-05 06:50"),
        down(3, PAID, 250 * MIB, "2026-10-05 15:00"),
        up(3, PAID, 50 * MIB, "2026-10-05 15:05"),
    ]);
    w.cycle("2026-10-05 23:00");
    assert_eq!(w.state("1004"), "blocked:no-money");
    assert_eq!(w.money("1004", "available"), "-1.00");
    // 1003: fees for days 1-5: 300.00 × 5/31 = 48.38; + 300.00 traffic;
    // balance 0: available = 500.00 − 348.38 = 151.62, in credit.
    assert_eq!(w.money("1003", "available"), "151.62");
    assert_eq!(w.state("1003"), "allowed");

    // Oct 8: a promised payment of 200.00 until the 15th, 12:00.
    w.op(
        "2026-10-08 12:00",
        &[
            "account",
            "promise",
            "1004",
            "200.00",
            "--until",
            "2026-10-15 12:00",
            "--reason",
            "asked by phone",
        ],
    );
    w.cycle("2026-10-08 12:00:10");
    assert_eq!(w.state("1004"), "allowed");
    assert_eq!(w.money("1004", "available"), "199.00");

    // Oct 10: 1002 moves to maxgb from the 16th.
    let out = w.op(
        "2026-10-10 12:00",
        &[
            "account",
            "tariff",
            "1002",
            "maxgb",
            "--from",
            "2026-10-16",
            "--reason",
            "customer request",
        ],
    );
    assert!(out.contains("tariff maxgb from 2026-10-16 00:00"), "{out}");
    let e = kopek_fails(
        &w.config,
        &[
            "account",
            "tariff",
            "1002",
            "metered",
            "--from",
            "2026-10-12",
            "--reason",
            "x",
            "--offline",
            "--now",
            "2026-10-10 12:00",
        ],
    );
    assert!(e.contains("already changes tariff"), "{e}");

    // Oct 15 12:00:30: the promise has expired.
    w.cycle("2026-10-15 12:00:30");
    assert_eq!(w.state("1004"), "blocked:no-money");

    // Oct 18: 1004 pays 150.00 → 250.00 − 101.00 = 149.00.
    w.op(
        "2026-10-18 10:00",
        &[
            "payment", "add", "1004", "150.00", "--id", "b-4b", "--source", "bank", "--reason",
            "register",
        ],
    );
    w.cycle("2026-10-18 10:00:10");
    assert_eq!(w.state("1004"), "allowed");
    assert_eq!(w.money("1004", "available"), "149.00");

    // Oct 20, on maxgb: 3 GB in, 5 GB out: max = 5 GB × 20.00 = 100.00.
    w.traffic(&[
        down(2, PAID, 3_000 * MB, "2026-10-20 10:00"),
        up(2, PAID, 2_500 * MB, "2026-10-20 11:00"),
        up(2, PAID, 2_500 * MB, "2026-10-20 12:00"),
    ]);
    // 1003 on the 20th: fees 300.00 × 20/31 = 193.54 + 300.00 = 493.54,
    // inside the 500.00 limit.
    w.cycle("2026-10-20 23:00");
    assert_eq!(w.money("1003", "available"), "6.46");
    assert_eq!(w.state("1003"), "allowed");
    // The 21st: 300.00 × 21/31 = 203.22 + 300.00 = 503.22 > 500.00.
    w.cycle("2026-10-21 00:00:30");
    assert_eq!(w.state("1003"), "blocked:no-money");

    // Nov 1 00:00:30: October is posted; November's first fee day accrues.
    w.cycle("2026-11-01 00:00:30");

    // Balances (posted entries) after October:
    // 1001: 600.00 − 600.00 (31 days of flat) = 0.00
    // 1002: 1000.00 − (metered 0.00 + maxgb fee 100.00 × 16/31 = 51.61
    //       + maxgb traffic 100.00) = 848.39
    // 1003: −(300.00 fee + 300.00 traffic) = −600.00
    // 1004: 250.00 − 101.00 = 149.00
    for (acct, balance, accrued) in [
        ("1001", "0.00", "20.00"),  // Nov 1: 600.00 / 30
        ("1002", "848.39", "3.33"), // Nov 1: 100.00 / 30
        ("1003", "-600.00", "10.00"),
        ("1004", "149.00", "0.00"),
    ] {
        assert_eq!(w.money(acct, "balance"), balance, "balance of {acct}");
        assert_eq!(w.money(acct, "accrued"), accrued, "accrued of {acct}");
    }
    assert_eq!(w.state("1001"), "blocked:no-money", "November is unpaid");
    assert_eq!(w.state("1004"), "allowed");

    // Invoices for October.
    let inv = |acct: &str| {
        kopek_json(
            &w.config,
            &[
                "report", "invoice", acct, "--period", "2026-10", "--format", "json",
            ],
        )[0]
        .clone()
    };
    for (acct, charges, payments, closing) in [
        ("1001", "600.00", "600.00", "0.00"),
        ("1002", "151.61", "1000.00", "848.39"),
        ("1003", "600.00", "0.00", "-600.00"),
        ("1004", "101.00", "250.00", "149.00"),
    ] {
        let i = inv(acct);
        assert_eq!(i["charges"], charges, "{acct}: {i}");
        assert_eq!(i["payments"], payments, "{acct}: {i}");
        assert_eq!(i["closing"], closing, "{acct}: {i}");
        assert_eq!(i["opening"], "0.00", "{acct}: {i}");
    }
    // 1002's lines: one per tariff version and service.
    let text = kopek(
        &w.config,
        &["report", "invoice", "1002", "--period", "2026-10"],
    );
    for want in [
        "paid-in",
        "metered v1",
        "600000000",
        "paid-max",
        "maxgb v1",
        "100.00",
        "fee",
        "51.61",
        "free:local",
        "3000000000",
    ] {
        assert!(
            text.contains(want),
            "invoice of 1002 lacks {want:?}:\n{text}"
        );
    }

    // The ledger proves itself; the export adds up to the invoices.
    let v = kopek(&w.config, &["ledger", "verify"]);
    assert!(v.contains("ledger ok"), "{v}");
    let csv = kopek(&w.config, &["export", "accounting", "--period", "2026-10"]);
    let mut per_account: std::collections::BTreeMap<String, i64> = Default::default();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let kop: i64 = f[6].replace('.', "").parse().unwrap();
        *per_account.entry(f[2].to_string()).or_default() += kop;
    }
    assert_eq!(per_account["1001"], 0);
    assert_eq!(per_account["1002"], 84_839);
    assert_eq!(per_account["1003"], -60_000);
    assert_eq!(per_account["1004"], 14_900);

    // Explain 1004's traffic charge: the rule, the volume, tier 2, tier 1.
    let st = kopek_json(
        &w.config,
        &[
            "report",
            "statement",
            "1004",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
            "--format",
            "json",
        ],
    );
    // Posted in two entries (100.00 on the 4th, 1.00 on the 5th) that add
    // up to the price of the total.
    let charges: Vec<&serde_json::Value> = st
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "charge")
        .collect();
    let total: i64 = charges
        .iter()
        .map(|e| {
            e["amount"]
                .as_str()
                .unwrap()
                .replace('.', "")
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 10_100, "{st}");
    let last = charges.last().unwrap();
    let x = kopek(&w.config, &["explain", &last["id"].to_string()]);
    for want in [
        "metered version 1",
        "paid-in",
        "included 1000 MB",
        "1202000000 bytes",
        "1202.000000 MB",
        "101.00",
        "tier2.sqlite",
        "raw/",
    ] {
        assert!(x.contains(want), "explain lacks {want:?}:\n{x}");
    }
    // A reader that has gone (| head that is done): every report ends
    // quietly, with success, instead of panicking or printing an error.
    let id = last["id"].to_string();
    for args in [
        &["report", "invoice", "1002", "--period", "2026-10"][..],
        &["report", "statement", "1004", "--from", "2026-10-01"],
        &["report", "statement", "1004", "--format", "csv"],
        &["report", "usage", "1004", "--from", "2026-10-01"],
        &["report", "debtors"],
        &["report", "revenue", "--period", "2026-10"],
        &["report", "blocked"],
        &["report", "audit", "--from", "2026-10-01"],
        &["account", "show", "1002"],
        &["subscriber", "ls"],
        &["tariff", "ls"],
        &["tariff", "show", "metered"],
        &["ledger", "verify"],
        &["export", "accounting", "--period", "2026-10"],
        &["explain", &id],
    ] {
        kopek_into_closed_pipe(&w.config, args);
    }
    assert_no_double_count(&w.state);
}

/// Every billed tier-2 byte went into exactly one accrual.
fn assert_no_double_count(state: &Path) {
    let t2 = rusqlite::Connection::open(state.join("tier2.sqlite")).unwrap();
    let billed: i64 = t2
        .query_row("SELECT sum(bytes) FROM traffic WHERE billed = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let core = rusqlite::Connection::open(state.join("core.sqlite")).unwrap();
    let rated: i64 = core
        .query_row("SELECT sum(in_bytes + out_bytes) FROM accruals", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(billed, rated);
}
