//! The core's performance targets (issue 4), on one core, with the real
//! database on disk (WAL, synchronous=FULL):
//!
//! - `cycle`: a rating cycle over N accounts (default 100,000) that all
//!   have fresh usage (two tier-2 rows each: in and out) — first sight
//!   (mirror rows created) and steady state (every row changed again);
//!   target < 1 s;
//! - `post`: 1,000,000 payments posted through the real command path
//!   (`PaymentImport`, batches of 10,000 per transaction, each fsynced);
//!   target ≥ 100,000 entries/s;
//! - `reports`: a year of daily usage and ledger entries for 10,000
//!   accounts, then statement, usage, invoice of one account and debtors,
//!   revenue, blocked over all; target < 1 s each.
//!
//! ```text
//! cargo bench -p kopek-core --bench core [-- --accounts N --payments N --runs N --skip-reports]
//! ```

use std::path::Path;
use std::time::Instant;

use kopek_config::Posting;
use kopek_core::cycle::Rater;
use kopek_core::money::Money;
use kopek_core::ops::{Command, Payment, Policy};
use kopek_core::store::Billing;
use rusqlite::params;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Moscow;
const TARIFF: &str = "unit = \"MB\"\nmonthly_fee = \"500.00\"\n[[traffic]]\nname = \"paid\"\nclass = \"paid\"\ndirection = \"in\"\nincluded = 1000\nprice = \"0.10\"\n";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// N accounts on one tariff, created in one transaction (setup, not timed).
fn accounts(b: &mut Billing, n: u64, now_ms: i64) {
    b.apply(
        &Command::TariffAdd {
            name: "t".into(),
            content: TARIFF.into(),
            effective_ms: Some(0),
            why: "bench".into(),
        },
        "bench",
        now_ms,
    )
    .unwrap();
    b.apply(
        &Command::SubscriberAdd {
            name: "s".into(),
            kind: "org".into(),
            contact: String::new(),
        },
        "bench",
        now_ms,
    )
    .unwrap();
    let tx = b.conn().unchecked_transaction().unwrap();
    {
        let mut a = tx
            .prepare("INSERT INTO accounts (number, subscriber_id, policy, credit_limit, created_ms) VALUES (?1, 1, ?2, 0, ?3)")
            .unwrap();
        let mut t = tx
            .prepare(
                "INSERT INTO account_tariffs (account_id, tariff_id, from_ms) VALUES (?1, 1, ?2)",
            )
            .unwrap();
        for i in 0..n {
            a.execute(params![
                format!("a{i}"),
                Policy::BlockAtZero.as_str(),
                now_ms
            ])
            .unwrap();
            t.execute(params![tx.last_insert_rowid(), now_ms - 86_400_000])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// One tier-2 commit touching two rows (in, out) of every account.
fn tier2_commit(state: &Path, n: u64, bucket_ms: i64, bytes: i64) {
    use kopek_classifier::store::{SimRow, write_commit};
    let names: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
    let rows: Vec<SimRow<'_>> = names
        .iter()
        .enumerate()
        .flat_map(|(i, account)| {
            ["in", "out"].map(|direction| SimRow {
                bucket_ms,
                account,
                class: "paid",
                direction,
                bytes: bytes + i as i64,
            })
        })
        .collect();
    write_commit(state, &rows).unwrap();
}

fn bench_cycle(n: u64, runs: usize) {
    let mut first = Vec::new();
    let mut steady = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let mut b = Billing::open(dir.path(), TZ).unwrap();
        accounts(&mut b, n, now);
        let mut r = Rater::new(dir.path(), Posting::Day);
        // Fees and decisions for the day first: the timed cycles then
        // measure the rating of fresh usage.
        b.cycle(&mut r, now).unwrap();
        let bucket = now - now % 300_000;
        tier2_commit(dir.path(), n, bucket, 300_000_000);
        let t = Instant::now();
        let rep = b.cycle(&mut r, now + 1_000).unwrap();
        first.push(t.elapsed().as_secs_f64());
        assert_eq!(rep.rows, 2 * n);
        tier2_commit(dir.path(), n, bucket, 1_000_000);
        let t = Instant::now();
        let rep = b.cycle(&mut r, now + 2_000).unwrap();
        steady.push(t.elapsed().as_secs_f64());
        println!(
            "cycle phases (ms: tier 2, rate, charge, fees+post, decide, commit): {:?}",
            rep.phases_ms
        );
        assert_eq!(rep.rows, 2 * n);
        let v = b.verify().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
    println!(
        "cycle: {n} accounts, {} rows: first sight median {:.3} s, steady median {:.3} s (target < 1 s) [runs: {:?} / {:?}]",
        2 * n,
        median(first.clone()),
        median(steady.clone()),
        first.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>(),
        steady.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>()
    );
}

fn bench_post(total: u64, runs: usize) {
    const BATCH: u64 = 10_000;
    let mut rates = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let mut b = Billing::open(dir.path(), TZ).unwrap();
        accounts(&mut b, 1_000, now);
        // The requests as the control socket would deliver them, built
        // before the clock starts: what is timed is the command path.
        let batches: Vec<Command> = (0..total.div_ceil(BATCH))
            .map(|k| Command::PaymentImport {
                file: "bench".into(),
                payments: (k * BATCH..((k + 1) * BATCH).min(total))
                    .map(|i| Payment {
                        account: format!("a{}", i % 1_000),
                        amount: Money(100 + (i % 5_000) as i64),
                        ext_id: format!("p{i}"),
                        source: "gateway".into(),
                        at_ms: None,
                        why: "bench".into(),
                        line: None,
                    })
                    .collect(),
            })
            .collect();
        let t = Instant::now();
        for cmd in &batches {
            let o = b.apply(cmd, "bench", now).unwrap();
            assert!(o.changed);
        }
        let s = t.elapsed().as_secs_f64();
        rates.push(total as f64 / s);
        let v = b.verify().unwrap();
        assert!(v.problems.is_empty() && v.entries == total, "{v:?}");
    }
    println!(
        "post: {total} payments in batches of {BATCH}, synchronous=FULL: median {:.0} entries/s (target >= 100000) [runs: {:?}]",
        median(rates.clone()),
        rates.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>()
    );
}

fn bench_reports(runs: usize) {
    const ACCOUNTS: i64 = 10_000;
    const DAYS: i64 = 365;
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut b = Billing::open(dir.path(), TZ).unwrap();
    accounts(&mut b, ACCOUNTS as u64, now);
    let day_ms = 86_400_000i64;
    let start = now - DAYS * day_ms;
    // A year of what rating leaves: per account and day, usage rows and a
    // fee and a charge entry (through the real ledger write path).
    let setup = Instant::now();
    for d in 0..DAYS {
        let t = start + d * day_ms;
        let day = kopek_core::cycle::day_label(TZ, t);
        let period = kopek_core::rating::period_of(TZ, t).label;
        let tx = b.conn().unchecked_transaction().unwrap();
        let mut entries = Vec::with_capacity(2 * ACCOUNTS as usize);
        {
            let mut u = tx
                .prepare(
                    "INSERT INTO usage_mirror (account, bucket_ms, class, direction, point, bytes)
                     VALUES (?1, ?2, 'paid', 'in', '*', ?3)",
                )
                .unwrap();
            for a in 1..=ACCOUNTS {
                u.execute(params![format!("a{}", a - 1), t, 1_000_000 * a])
                    .unwrap();
                for (kind, credit) in [("fee", "revenue:fee"), ("charge", "revenue:traffic:paid")] {
                    entries.push(kopek_core::store::NewEntry {
                        ts_ms: t,
                        kind,
                        account_id: Some(a),
                        debit: kopek_core::store::account_book(a),
                        credit: credit.into(),
                        amount: Money(1_000 + a),
                        who: "core".into(),
                        why: "rating".into(),
                        service: Some(if kind == "fee" {
                            "fee".into()
                        } else {
                            "paid".into()
                        }),
                        day: Some(day.clone()),
                        period: Some(period.clone()),
                        version_id: Some(1),
                        ..Default::default()
                    });
                }
            }
        }
        kopek_core::store::post_entries(&tx, now, &entries).unwrap();
        tx.commit().unwrap();
    }
    // Per account and month: the accruals rating leaves (fee and traffic)
    // and one payment.
    {
        let tx = b.conn().unchecked_transaction().unwrap();
        {
            let mut acc = tx
                .prepare(
                    "INSERT INTO accruals (account_id, period_start_ms, version_id, service, class, in_bytes, out_bytes, days, charged, posted)
                     VALUES (?1, ?2, 1, ?3, ?4, ?5, 0, ?6, ?7, ?7) ON CONFLICT DO NOTHING",
                )
                .unwrap();
            let mut payments = Vec::new();
            let mut m = kopek_core::rating::period_of(TZ, start);
            while m.start_ms < now {
                for a in 1..=ACCOUNTS {
                    acc.execute(params![a, m.start_ms, "fee", "", 0, m.days, 50_000])
                        .unwrap();
                    acc.execute(params![
                        a,
                        m.start_ms,
                        "paid",
                        "paid",
                        1_000_000_000 * a,
                        0,
                        3_000 + a
                    ])
                    .unwrap();
                    payments.push(kopek_core::store::NewEntry {
                        ts_ms: m.start_ms + 3_600_000,
                        kind: "payment",
                        account_id: Some(a),
                        debit: "payments:bank".into(),
                        credit: kopek_core::store::account_book(a),
                        amount: Money(60_000),
                        ext_id: Some(format!("bank:{}-{a}", m.label)),
                        who: "bench".into(),
                        why: "bench".into(),
                        ..Default::default()
                    });
                }
                m = kopek_core::rating::period_of(TZ, m.end_ms);
            }
            kopek_core::store::post_entries(&tx, now, &payments).unwrap();
        }
        tx.commit().unwrap();
    }
    // The account the per-account reports read gets a full year of
    // 5-minute buckets in and out (what a busy subscriber leaves).
    {
        let tx = b.conn().unchecked_transaction().unwrap();
        {
            let mut u = tx
                .prepare(
                    "INSERT INTO usage_mirror (account, bucket_ms, class, direction, point, bytes)
                     VALUES ('a4999', ?1, 'paid', ?2, '*', 1000) ON CONFLICT DO NOTHING",
                )
                .unwrap();
            let mut t = start - start % 300_000;
            while t < now {
                u.execute(params![t, "in"]).unwrap();
                u.execute(params![t, "out"]).unwrap();
                t += 300_000;
            }
        }
        tx.commit().unwrap();
    }
    println!(
        "reports: setup of {} usage rows and {} entries took {:.1} s",
        ACCOUNTS * DAYS,
        2 * ACCOUNTS * DAYS,
        setup.elapsed().as_secs_f64()
    );
    drop(b);
    let r = Billing::open_read(dir.path(), TZ).unwrap();
    let mid = kopek_core::rating::period_of(TZ, now - 180 * day_ms);
    let from_day = kopek_core::cycle::day_label(TZ, start);
    let to_day = kopek_core::cycle::day_label(TZ, now);
    let report = |name: &str, f: &dyn Fn() -> usize| {
        let mut t = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let s = Instant::now();
            rows = f();
            t.push(s.elapsed().as_secs_f64());
        }
        println!(
            "reports: {name:<32} {rows:>8} rows, median {:.4} s (target < 1 s)",
            median(t)
        );
    };
    report("statement (a year, one account)", &|| {
        r.statement("a4999", start, now + 1).unwrap().entries.len()
    });
    report("usage (a year, one account)", &|| {
        r.usage("a4999", &from_day, &to_day).unwrap().len()
    });
    report("invoice (one month)", &|| {
        r.invoice("a4999", &mid.label).unwrap().lines.len() + 1
    });
    report("debtors (all accounts)", &|| {
        r.debtors(Money(0), now).unwrap().len()
    });
    report("revenue (one month, all)", &|| {
        r.revenue(&mid.label).unwrap().len()
    });
    report("blocked (all accounts)", &|| r.blocked().unwrap().len());
    report("export accounting (one month)", &|| {
        r.export_accounting(&mid.label).unwrap().len()
    });
}

fn main() {
    let runs = arg("--runs", 3) as usize;
    bench_cycle(arg("--accounts", 100_000), runs);
    bench_post(arg("--payments", 1_000_000), runs.min(2));
    if !std::env::args().any(|a| a == "--skip-reports") {
        bench_reports(runs);
    }
}
