//! The ledger against a simple model (RELIABILITY test 5): random
//! sequences of payments (ids reused: replays and conflicting replays),
//! refunds, corrections, credits, usage and rating cycles on a simulated
//! clock. After every step the database must agree with a few lines of
//! arithmetic, and the ledger must verify. Failures replay from the seed
//! proptest prints (and persists).

use chrono::TimeZone;
use kopek_classifier::store::{SimRow, write_commit};
use kopek_config::Posting;
use kopek_core::cycle::Rater;
use kopek_core::money::Money;
use kopek_core::ops::{Command, Payment, Policy};
use kopek_core::store::Billing;
use proptest::prelude::*;
use std::collections::HashMap;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Moscow;
const ACCOUNTS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Pay {
        acct: usize,
        kopecks: i64,
        id: u8,
    },
    Refund {
        acct: usize,
        kopecks: i64,
    },
    Correct {
        acct: usize,
        kopecks: i64,
    },
    Credit {
        acct: usize,
        kopecks: i64,
    },
    Usage {
        acct: usize,
        bytes: i64,
        inbound: bool,
    },
    Cycle {
        minutes: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 1..100_000i64, 0..12u8).prop_map(|(acct, kopecks, id)| Op::Pay { acct, kopecks, id }),
        1 => (0..3usize, 1..10_000i64).prop_map(|(acct, kopecks)| Op::Refund { acct, kopecks }),
        1 => (0..3usize, -10_000..10_000i64).prop_map(|(acct, kopecks)| Op::Correct { acct, kopecks }),
        1 => (0..3usize, 1..10_000i64).prop_map(|(acct, kopecks)| Op::Credit { acct, kopecks }),
        3 => (0..3usize, 1..50_000_000i64, any::<bool>()).prop_map(|(acct, bytes, inbound)| Op::Usage { acct, bytes, inbound }),
        2 => (1..600i64).prop_map(|minutes| Op::Cycle { minutes }),
    ]
}

fn tier2_commit(dir: &std::path::Path, acct: &str, bucket: i64, direction: &str, bytes: i64) {
    let row = SimRow {
        bucket_ms: bucket - bucket % 300_000,
        account: acct,
        class: "paid",
        direction,
        bytes,
    };
    write_commit(dir, &[row]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_agrees_with_the_model(ops in prop::collection::vec(op(), 1..60), cycle_posting in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        drop(kopek_classifier::store::SqliteTier2::open(dir.path()).unwrap());
        let mut b = Billing::open(dir.path(), TZ).unwrap();
        let mut r = Rater::new(dir.path(), if cycle_posting { Posting::Cycle } else { Posting::Day });
        // October 2026; at most 60 cycles × 10 h stays inside it.
        let mut now = TZ.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap().timestamp_millis();
        b.apply(&Command::TariffAdd {
            name: "t".into(),
            // 0.01 per MB of traffic in + out: a charge of floor(bytes / 10^6) kopecks.
            content: "unit = \"MB\"\n[[traffic]]\nclass = \"paid\"\ndirection = \"sum\"\nprice = \"0.01\"\n".into(),
            effective_ms: Some(now), why: "t".into() }, "t", now).unwrap();
        b.apply(&Command::SubscriberAdd { name: "s".into(), kind: "org".into(), contact: String::new() }, "t", now).unwrap();
        for a in ACCOUNTS {
            b.apply(&Command::AccountAdd { number: a.into(), subscriber: 1, payer: None, policy: Policy::Credit,
                credit_limit: Money(0), tariff: Some("t".into()), tariff_from_ms: Some(now) }, "t", now).unwrap();
        }
        // The model: money per account, payments by id, bytes seen by
        // tier 2 and bytes the core has rated.
        let mut money = [0i64; 3];
        let mut paid: HashMap<u8, (usize, i64)> = HashMap::new();
        let mut bytes = [0i64; 3];
        let mut rated = [0i64; 3];
        for op in &ops {
            now += 1_000;
            match op {
                Op::Pay { acct, kopecks, id } => {
                    let cmd = Command::PaymentAdd(Payment { account: ACCOUNTS[*acct].into(), amount: Money(*kopecks),
                        ext_id: format!("id{id}"), source: "bank".into(), at_ms: None, why: "m".into(), line: None });
                    let res = b.apply(&cmd, "t", now);
                    match paid.get(id) {
                        None => {
                            prop_assert!(res.as_ref().is_ok_and(|o| o.changed), "{res:?}");
                            paid.insert(*id, (*acct, *kopecks));
                            money[*acct] += kopecks;
                        }
                        Some(&(a, k)) if a == *acct && k == *kopecks => {
                            prop_assert!(res.as_ref().is_ok_and(|o| !o.changed), "{res:?}");
                        }
                        Some(_) => prop_assert!(res.is_err(), "a conflicting replay was accepted: {res:?}"),
                    }
                }
                Op::Refund { acct, kopecks } => {
                    b.apply(&Command::Refund { account: ACCOUNTS[*acct].into(), amount: Money(*kopecks),
                        source: "bank".into(), why: "m".into() }, "t", now).unwrap();
                    money[*acct] -= kopecks;
                }
                Op::Correct { acct, kopecks } => {
                    let res = b.apply(&Command::Correction { account: ACCOUNTS[*acct].into(), amount: Money(*kopecks),
                        why: "m".into() }, "t", now);
                    if *kopecks == 0 { prop_assert!(res.is_err()); } else { res.unwrap(); money[*acct] += kopecks; }
                }
                Op::Credit { acct, kopecks } => {
                    b.apply(&Command::Credit { account: ACCOUNTS[*acct].into(), amount: Money(*kopecks),
                        why: "m".into() }, "t", now).unwrap();
                    money[*acct] += kopecks;
                }
                Op::Usage { acct, bytes: n, inbound } => {
                    tier2_commit(dir.path(), ACCOUNTS[*acct], now, if *inbound { "in" } else { "out" }, *n);
                    bytes[*acct] += n;
                }
                Op::Cycle { minutes } => {
                    now += minutes * 60_000;
                    b.cycle(&mut r, now).unwrap();
                    rated = bytes;
                }
            }
            // balance − accrued = money in − the price of what was rated.
            for (i, a) in ACCOUNTS.iter().enumerate() {
                let s = b.account_status(a, now).unwrap();
                prop_assert_eq!(s.balance.0 - s.accrued.0, money[i] - rated[i] / 1_000_000, "account {}", a);
            }
        }
        let v = b.verify().unwrap();
        prop_assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
}
