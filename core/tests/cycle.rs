//! Library-level tests of the rating cycle with a simulated clock: a real
//! billing database and a real tier 2 (the classifier's schema, commits
//! written here the way the classifier writes them) in a temp dir.

use chrono::TimeZone;
use kopek_classifier::store::{SimRow, write_commit};
use kopek_config::Posting;
use kopek_core::cycle::Rater;
use kopek_core::money::Money;
use kopek_core::ops::{Command, Payment, Policy};
use kopek_core::store::Billing;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Moscow;

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    TZ.with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .timestamp_millis()
}

struct World {
    dir: tempfile::TempDir,
    b: Billing,
    r: Rater,
}

impl World {
    fn new(posting: Posting) -> World {
        let dir = tempfile::tempdir().unwrap();
        drop(kopek_classifier::store::SqliteTier2::open(dir.path()).unwrap());
        let b = Billing::open(dir.path(), TZ).unwrap();
        let r = Rater::new(dir.path(), posting);
        World { dir, b, r }
    }

    fn apply(&mut self, now: i64, cmd: Command) -> kopek_core::ops::Outcome {
        self.b.apply(&cmd, "test", now).unwrap()
    }

    fn tariff(&mut self, now: i64, name: &str, content: &str, effective: i64) {
        self.apply(
            now,
            Command::TariffAdd {
                name: name.into(),
                content: content.into(),
                effective_ms: Some(effective),
                why: "t".into(),
            },
        );
    }

    fn account(&mut self, now: i64, number: &str, payer: Option<&str>, tariff: &str, from: i64) {
        let s = self.apply(
            now,
            Command::SubscriberAdd {
                name: number.into(),
                kind: "person".into(),
                contact: String::new(),
            },
        );
        let subscriber = match payer {
            // A payer must belong to the same subscriber.
            Some(p) => self
                .b
                .conn()
                .query_row(
                    "SELECT subscriber_id FROM accounts WHERE number = ?1",
                    [p],
                    |r| r.get(0),
                )
                .unwrap(),
            None => s.id.unwrap(),
        };
        self.apply(
            now,
            Command::AccountAdd {
                number: number.into(),
                subscriber,
                payer: payer.map(Into::into),
                policy: Policy::BlockAtZero,
                credit_limit: Money(0),
                tariff: Some(tariff.into()),
                tariff_from_ms: Some(from),
            },
        );
    }

    fn pay(&mut self, now: i64, account: &str, kopecks: i64, id: &str) {
        self.apply(
            now,
            Command::PaymentAdd(Payment {
                account: account.into(),
                amount: Money(kopecks),
                ext_id: id.into(),
                source: "bank".into(),
                at_ms: None,
                why: "t".into(),
                line: None,
            }),
        );
    }

    /// A tier-2 commit: `bytes` more in one row.
    fn usage(&self, account: &str, bucket_ms: i64, class: &str, dir: &str, bytes: i64) {
        let row = SimRow {
            bucket_ms: bucket_ms - bucket_ms % 300_000,
            account,
            class,
            direction: dir,
            bytes,
        };
        write_commit(self.dir.path(), &[row]).unwrap();
    }

    /// Replaces tier 2 with one rebuilt elsewhere holding `rows` in one
    /// commit (its numbers start again at 1), as `kopek classifier
    /// rebuild` installs it.
    fn install_rebuilt(&self, rows: &[SimRow<'_>]) {
        let rebuilt = tempfile::tempdir().unwrap();
        write_commit(rebuilt.path(), rows).unwrap();
        kopek_classifier::store::SqliteTier2::install(
            self.dir.path(),
            &rebuilt.path().join(kopek_classifier::store::TIER2_FILE),
        )
        .unwrap();
    }

    fn cycle(&mut self, now: i64) -> kopek_core::cycle::CycleReport {
        self.b.cycle(&mut self.r, now).unwrap()
    }

    fn state(&self, number: &str) -> String {
        self.b
            .conn()
            .query_row(
                "SELECT x.state FROM access x JOIN accounts a ON a.id = x.account_id WHERE a.number = ?1",
                [number],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn balance(&self, number: &str) -> i64 {
        self.b.account_status(number, 0).unwrap().balance.0
    }

    fn verify(&self) {
        let v = self.b.verify().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
}

/// Paid inbound traffic at 1.00 a megabyte.
const PAID_IN_1: &str =
    "unit = \"MB\"\n[[traffic]]\nclass = \"paid\"\ndirection = \"in\"\nprice = \"1.00\"\n";

const FEE_310: &str = "unit = \"MB\"\nmonthly_fee = \"310.00\"\n";

#[test]
fn a_freeze_stops_the_fee_and_blocks() {
    let mut w = World::new(Posting::Day);
    let t0 = at(2026, 9, 30, 12, 0);
    w.tariff(t0, "f", FEE_310, at(2026, 10, 1, 0, 0));
    w.account(t0, "1", None, "f", at(2026, 10, 1, 0, 0));
    w.pay(t0, "1", 100_000, "p1");
    w.apply(
        t0,
        Command::Freeze {
            account: "1".into(),
            from_ms: at(2026, 10, 5, 0, 0),
            to_ms: at(2026, 10, 10, 0, 0),
            why: "vacation".into(),
        },
    );
    let mut states = Vec::new();
    for d in 1..=31 {
        w.cycle(at(2026, 10, d, 0, 1));
        states.push(w.state("1"));
    }
    w.cycle(at(2026, 11, 1, 0, 1));
    // 31 days minus 5 frozen (the 5th to the 9th): 310.00 × 26/31 = 260.00.
    assert_eq!(w.balance("1"), 100_000 - 26_000);
    assert_eq!(&states[3], "allowed");
    for (i, s) in states.iter().enumerate().take(9).skip(4) {
        assert_eq!(s, "blocked:frozen", "day {}", i + 1);
    }
    assert_eq!(&states[9], "allowed");
    w.verify();
}

#[test]
fn admin_block_and_unblock_are_logged_transitions() {
    let mut w = World::new(Posting::Day);
    let t0 = at(2026, 10, 1, 0, 0);
    w.tariff(t0, "f", FEE_310, t0);
    w.account(t0, "1", None, "f", t0);
    w.pay(t0, "1", 100_000, "p1");
    w.cycle(t0 + 1_000);
    w.apply(
        t0 + 2_000,
        Command::AccountBlock {
            number: "1".into(),
            why: "abuse report".into(),
        },
    );
    let r = w.cycle(t0 + 3_000);
    assert_eq!(r.transitions.len(), 1);
    assert_eq!(r.transitions[0].to, "blocked:admin");
    w.apply(
        t0 + 4_000,
        Command::AccountUnblock {
            number: "1".into(),
            why: "resolved".into(),
        },
    );
    let r = w.cycle(t0 + 5_000);
    assert_eq!(r.transitions[0].from, "blocked:admin");
    assert_eq!(r.transitions[0].to, "allowed");
    let events: i64 =
        w.b.conn()
            .query_row("SELECT count(*) FROM access_events", [], |r| r.get(0))
            .unwrap();
    assert_eq!(events, 3); // new → allowed, → admin, → allowed
}

#[test]
fn a_payer_account_pays_for_another() {
    let mut w = World::new(Posting::Cycle);
    let t0 = at(2026, 10, 1, 0, 0);
    w.tariff(t0, "m", PAID_IN_1, t0);
    w.account(t0, "main", None, "m", t0);
    w.account(t0, "office", Some("main"), "m", t0);
    w.pay(t0, "main", 5_000, "p1");
    w.usage("office", t0 + 3_600_000, "paid", "in", 30_000_000); // 30 MB = 30.00
    w.cycle(t0 + 4_000_000);
    // Posting per cycle: the charge is in main's book at once.
    assert_eq!(w.balance("main"), 2_000);
    assert_eq!(
        w.balance("office"),
        2_000,
        "office shows its payer's balance"
    );
    w.usage("office", t0 + 3_600_000, "paid", "in", 25_000_000); // 55 MB total
    w.cycle(t0 + 5_000_000);
    assert_eq!(w.state("office"), "blocked:no-money");
    assert_eq!(
        w.state("main"),
        "blocked:no-money",
        "the payer's money ran out"
    );
    w.verify();
}

#[test]
fn usage_nobody_can_price_is_kept_as_unrated() {
    let mut w = World::new(Posting::Day);
    let t0 = at(2026, 10, 1, 0, 0);
    w.tariff(t0, "m", PAID_IN_1, t0);
    w.account(t0, "later", None, "m", at(2026, 10, 10, 0, 0));
    w.usage("ghost", t0 + 1_000_000, "paid", "in", 7);
    w.usage("later", t0 + 2_000_000, "paid", "in", 11);
    let r = w.cycle(t0 + 3_000_000);
    assert_eq!(r.rows_unrated, 2);
    let rows: Vec<(String, String, i64)> =
        w.b.conn()
            .prepare("SELECT account, reason, bytes FROM unrated ORDER BY account")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(
        rows,
        vec![
            ("ghost".into(), "unknown-account".into(), 7),
            ("later".into(), "no-tariff".into(), 11)
        ]
    );
}

#[test]
fn a_new_tariff_version_prices_from_its_effective_time() {
    let mut w = World::new(Posting::Cycle);
    let t0 = at(2026, 10, 1, 0, 0);
    let v1 = PAID_IN_1;
    let v2 = "unit = \"MB\"\n[[traffic]]\nclass = \"paid\"\ndirection = \"in\"\nprice = \"0.50\"\n";
    w.tariff(t0, "m", v1, t0);
    w.account(t0, "1", None, "m", t0);
    w.pay(t0, "1", 1_000_000, "p");
    // A new version from November (the default: the next period).
    let o = w.apply(
        at(2026, 10, 15, 12, 0),
        Command::TariffUpdate {
            name: "m".into(),
            content: v2.into(),
            effective_ms: None,
            why: "cheaper".into(),
        },
    );
    assert!(o.message.contains("version 2"), "{}", o.message);
    w.usage("1", at(2026, 10, 31, 23, 0), "paid", "in", 100_000_000);
    w.usage("1", at(2026, 11, 1, 1, 0), "paid", "in", 100_000_000);
    w.cycle(at(2026, 11, 1, 2, 0));
    // October at 1.00/MB, November at 0.50/MB.
    assert_eq!(w.balance("1"), 1_000_000 - 10_000 - 5_000);
    let by_version: Vec<(i64, i64)> = w
        .b
        .conn()
        .prepare("SELECT version_id, sum(amount) FROM entries WHERE kind = 'charge' GROUP BY version_id ORDER BY 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(by_version, vec![(1, 10_000), (2, 5_000)]);
    w.verify();
}

#[test]
fn verify_catches_edits_behind_the_ledgers_back() {
    let mut w = World::new(Posting::Cycle);
    let t0 = at(2026, 10, 1, 0, 0);
    w.tariff(t0, "m", "unit = \"MB\"\nmonthly_fee = \"31.00\"\n[[traffic]]\nclass = \"paid\"\ndirection = \"in\"\nprice = \"1.00\"\n", t0);
    w.account(t0, "1", None, "m", t0);
    w.pay(t0, "1", 10_000, "p");
    w.usage("1", t0 + 60_000, "paid", "in", 3_000_000);
    w.cycle(t0 + 120_000);
    w.verify();
    let problems = |w: &World| w.b.verify().unwrap().problems.join("\n");
    let path = w.dir.path().join("core.sqlite");
    let raw = rusqlite::Connection::open(&path).unwrap();
    // An amount edited in place: the chain and the book both notice.
    raw.execute("UPDATE entries SET amount = amount + 1 WHERE id = 1", [])
        .unwrap();
    let p = problems(&w);
    assert!(
        p.contains("hash chain broken") && p.contains("stored balance"),
        "{p}"
    );
    raw.execute("UPDATE entries SET amount = amount - 1 WHERE id = 1", [])
        .unwrap();
    w.verify();
    // A charge that does not match its volume.
    raw.execute(
        "UPDATE accruals SET charged = charged + 1, posted = posted + 1 WHERE service = 'paid'",
        [],
    )
    .unwrap();
    assert!(
        problems(&w).contains("but its volumes price at 3.00"),
        "{}",
        problems(&w)
    );
    raw.execute(
        "UPDATE accruals SET charged = charged - 1, posted = posted - 1 WHERE service = 'paid'",
        [],
    )
    .unwrap();
    // Rated bytes that tier 2 never gave.
    raw.execute(
        "UPDATE accruals SET in_bytes = in_bytes + 5 WHERE service = 'paid'",
        [],
    )
    .unwrap();
    assert!(
        problems(&w).contains("tier 2 gave 3000000 bytes, 3000005 are rated"),
        "{}",
        problems(&w)
    );
    raw.execute(
        "UPDATE accruals SET in_bytes = in_bytes - 5 WHERE service = 'paid'",
        [],
    )
    .unwrap();
    // An entry deleted: ids jump.
    raw.execute(
        "DELETE FROM entries WHERE id = (SELECT max(id) FROM entries)",
        [],
    )
    .unwrap();
    assert!(problems(&w).contains("stored balance"), "{}", problems(&w));
}

#[test]
fn tier2_attaches_from_a_state_dir_with_uri_characters() {
    let dir = tempfile::Builder::new()
        .prefix("kopek state #1 50%?")
        .tempdir()
        .unwrap();
    drop(kopek_classifier::store::SqliteTier2::open(dir.path()).unwrap());
    let mut b = Billing::open(dir.path(), TZ).unwrap();
    let mut r = Rater::new(dir.path(), Posting::Day);
    let t0 = at(2026, 10, 1, 0, 0);
    let row = SimRow {
        bucket_ms: t0,
        account: "x",
        class: "paid",
        direction: "in",
        bytes: 5,
    };
    write_commit(dir.path(), &[row]).unwrap();
    let rep = b.cycle(&mut r, t0 + 1_000).unwrap();
    assert_eq!((rep.rows, rep.rows_unrated), (1, 1));
}

#[test]
fn speed_caps_follow_the_tariff_in_effect() {
    let mut w = World::new(Posting::Cycle);
    let t0 = at(2026, 10, 1, 0, 0);
    let caps = |w: &World| -> Vec<(String, Option<u32>, Option<u32>)> {
        w.b.conn()
            .prepare("SELECT a.number, s.down_kbit, s.up_kbit FROM shaping s JOIN accounts a ON a.id = s.account_id ORDER BY 1")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let seq = |w: &World| w.b.meta_i64("shaping_seq").unwrap();
    w.tariff(
        t0,
        "capped",
        "unit = \"MB\"\n[rate_limit]\ndown_kbit = 20000\nup_kbit = 5000\n",
        t0,
    );
    w.tariff(t0, "open", "unit = \"MB\"\n", t0);
    w.account(t0, "1", None, "capped", t0);
    w.account(t0, "2", None, "open", t0);
    let r = w.cycle(t0 + 1_000);
    assert_eq!(r.shaping_changed, 1);
    assert_eq!(caps(&w), vec![("1".into(), Some(20_000), Some(5_000))]);
    assert_eq!(seq(&w), Some(1));
    // Nothing changed: no write, no new sequence number.
    assert_eq!(w.cycle(t0 + 2_000).shaping_changed, 0);
    assert_eq!(seq(&w), Some(1));

    // A new version with only a down cap, from November; account 2 moves
    // to the capped tariff in November too.
    w.apply(
        t0 + 3_000,
        Command::TariffUpdate {
            name: "capped".into(),
            content: "unit = \"MB\"\n[rate_limit]\ndown_kbit = 50000\n".into(),
            effective_ms: None,
            why: "faster".into(),
        },
    );
    w.apply(
        t0 + 3_000,
        Command::AccountTariff {
            number: "2".into(),
            tariff: "capped".into(),
            from_ms: None,
            why: "upgrade".into(),
        },
    );
    assert_eq!(w.cycle(at(2026, 10, 31, 23, 59)).shaping_changed, 0);
    let r = w.cycle(at(2026, 11, 1, 0, 0));
    assert_eq!(r.shaping_changed, 2);
    assert_eq!(
        caps(&w),
        vec![
            ("1".into(), Some(50_000), None),
            ("2".into(), Some(50_000), None)
        ]
    );
    assert_eq!(seq(&w), Some(2));
    w.verify();
}

#[test]
fn a_replaced_tier2_is_compared_row_by_row_not_skipped() {
    let mut w = World::new(Posting::Cycle);
    let t0 = at(2026, 10, 1, 0, 0);
    let mb = 1_000_000;
    w.tariff(t0, "m", PAID_IN_1, t0);
    w.account(t0, "1", None, "m", t0);
    w.pay(t0, "1", 1_000_000, "p");
    let (a, b, c) = (t0 + 600_000, t0 + 1_200_000, t0 + 1_800_000);
    w.usage("1", a, "paid", "in", 100 * mb);
    w.usage("1", b, "paid", "in", 50 * mb);
    w.usage("1", b, "paid", "in", 50 * mb);
    let r = w.cycle(t0 + 3_600_000);
    assert!(!r.tier2_replaced);
    assert_eq!(r.tier2_seq_to, 3);
    assert_eq!(w.balance("1"), 1_000_000 - 20_000);

    // Tier 2 rebuilt elsewhere in one commit (its numbers start again at
    // 1, below the core's watermark of 3): bucket a as before, b with
    // 30 MB more, a new bucket c; installed into the live file.
    let row = |bucket_ms, bytes| SimRow {
        bucket_ms,
        account: "1",
        class: "paid",
        direction: "in",
        bytes,
    };
    w.install_rebuilt(&[row(a, 100 * mb), row(b, 130 * mb), row(c, 10 * mb)]);

    let r = w.cycle(t0 + 7_200_000);
    assert!(r.tier2_replaced);
    assert_eq!((r.tier2_seq_from, r.tier2_seq_to, r.rows), (-1, 1, 3));
    // Only the differences are charged: 30 + 10 MB.
    assert_eq!(w.balance("1"), 1_000_000 - 20_000 - 4_000);
    let r = w.cycle(t0 + 10_800_000);
    assert!(!r.tier2_replaced);
    assert_eq!(r.rows, 0);
    // The next commit of the new tier 2 is read as usual.
    w.usage("1", c, "paid", "in", 5 * mb);
    let r = w.cycle(t0 + 14_400_000);
    assert_eq!((r.tier2_seq_from, r.tier2_seq_to, r.rows), (1, 2, 1));
    assert_eq!(w.balance("1"), 1_000_000 - 20_000 - 4_000 - 500);
    w.verify();
}

#[test]
fn traffic_a_rebuild_moves_to_another_account_is_credited_back_and_charged_there() {
    let mut w = World::new(Posting::Cycle);
    let t0 = at(2026, 10, 1, 0, 0);
    let mb = 1_000_000;
    w.tariff(t0, "m", PAID_IN_1, t0);
    w.account(t0, "1", None, "m", t0);
    w.account(t0, "2", None, "m", t0);
    w.pay(t0, "1", 1_000_000, "p1");
    w.pay(t0, "2", 1_000_000, "p2");
    let a = t0 + 600_000;
    w.usage("1", a, "paid", "in", 100 * mb);
    w.cycle(t0 + 3_600_000);
    assert_eq!(w.balance("1"), 1_000_000 - 10_000);
    // The address was account 2's (a session recorded late): the rebuilt
    // tier 2 keeps account 1's row at 0 bytes (as `kopek classifier
    // rebuild` writes it) and has the traffic under account 2.
    let row = |account, bytes| SimRow {
        bucket_ms: a - a % 300_000,
        account,
        class: "paid",
        direction: "in",
        bytes,
    };
    w.install_rebuilt(&[row("1", 0), row("2", 100 * mb)]);
    let r = w.cycle(t0 + 7_200_000);
    assert!(r.tier2_replaced);
    assert_eq!(w.balance("1"), 1_000_000);
    assert_eq!(w.balance("2"), 1_000_000 - 10_000);
    w.verify();
}

#[test]
fn retention_keeps_tier2_rows_the_core_has_not_read() {
    use kopek_classifier::store::{SqliteTier2, Tier2};
    const DAY: i64 = 86_400_000;
    let mut w = World::new(Posting::Cycle);
    let t_set = at(2026, 6, 1, 0, 0);
    w.tariff(t_set, "m", PAID_IN_1, t_set);
    w.account(t_set, "a", None, "m", t_set);
    w.pay(t_set, "a", 100_000, "p1");
    let t0 = at(2026, 10, 1, 0, 0);
    w.usage("a", t0 - DAY, "paid", "in", 1_000_000); // 1.00, read at once
    w.cycle(t0);
    assert_eq!(w.balance("a"), 99_900);
    // 20 MB in a bucket 31 days ago, written after that cycle (the
    // classifier counted a late record while it was still inside the 30
    // days of retention; then the core stopped for a while).
    let old = t0 - 31 * DAY;
    w.usage("a", old, "paid", "in", 20_000_000);
    // Retention of 30 days runs before the core's next cycle: the old row
    // the core has read goes, the unread one stays.
    let mut t2 = SqliteTier2::open(w.dir.path()).unwrap();
    let cut = t0 - 30 * DAY;
    let p = t2.prune(Some(cut), None).unwrap();
    assert_eq!(p.core_read_seq, Some(1));
    assert_eq!(
        (p.traffic_rows, p.held_rows, p.held_oldest_ms),
        (0, 1, Some(old - old % 300_000)),
        "{p:?}"
    );
    let r = w.cycle(t0 + 60_000);
    assert_eq!(r.rows, 1);
    assert_eq!(w.balance("a"), 99_900 - 2_000, "the late 20 MB charged");
    // Read now: the next retention removes it.
    let p = t2.prune(Some(cut), None).unwrap();
    assert_eq!(
        (p.traffic_rows, p.held_rows, p.core_read_seq),
        (1, 0, Some(2))
    );
    // A tier 2 the core has not seen yet (rebuilt, replaced): nothing
    // unread goes, whatever its time.
    w.install_rebuilt(&[SimRow {
        bucket_ms: old - old % 300_000,
        account: "a",
        class: "paid",
        direction: "in",
        bytes: 20_000_000,
    }]);
    let mut t2 = SqliteTier2::open(w.dir.path()).unwrap();
    let p = t2.prune(Some(cut), None).unwrap();
    assert_eq!(
        (p.traffic_rows, p.held_rows, p.core_read_seq),
        (0, 1, Some(-1))
    );
    w.cycle(t0 + 120_000);
    let p = t2.prune(Some(cut), None).unwrap();
    assert_eq!(
        (p.traffic_rows, p.held_rows, p.core_read_seq),
        (1, 0, Some(1))
    );
    assert_eq!(w.balance("a"), 97_900, "the rebuilt tier 2 changed nothing");
    w.verify();
}
