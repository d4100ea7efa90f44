//! Property tests of rating (RELIABILITY test 5): the exact charge against
//! two simple independent models, postings of any granularity and order
//! adding up to the price of the total, monotone charges, fee days adding
//! up to the fee, and the calendar on DST days.
//!
//! Seeded: every run draws the same cases (seed [`SEED`]) unless
//! `PROPTEST_RNG_SEED` says otherwise; a failure prints its minimal case
//! and proptest stores it under `proptest-regressions/` to replay first.

use chrono::{TimeZone, Weekday};
use kopek_core::money::{Money, PRICE_PER_MINOR, Price};
use kopek_core::rating::{
    fee_cumulative, local_day, local_slot, num_to_kopecks, period_by_label, period_of, rule_charge,
    rule_charge_num, volume,
};
use kopek_core::tariff::{DirectionRule, Tariff, Tier, TrafficRule, Unit};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

const SEED: u64 = 0x6b6f_7065_6b00_0001;
const HOUR_MS: i64 = 3_600_000;

fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::with_cases(cases);
    if c.rng_seed == RngSeed::Random {
        c.rng_seed = RngSeed::Fixed(SEED);
    }
    c
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![
        Just(Unit::MB),
        Just(Unit::MiB),
        Just(Unit::GB),
        Just(Unit::GiB)
    ]
}

fn direction() -> impl Strategy<Value = DirectionRule> {
    prop_oneof![
        Just(DirectionRule::In),
        Just(DirectionRule::Out),
        Just(DirectionRule::Sum),
        Just(DirectionRule::Max)
    ]
}

/// Prices from nothing to 5.00 per unit, often with six decimals, now
/// and then 0.
fn price() -> impl Strategy<Value = Price> {
    prop_oneof![1 => Just(Price(0)), 6 => (0i64..5_000_000).prop_map(Price)]
}

/// A rule with 1-5 tiers (strictly increasing starts from 0, gaps of up
/// to `max_step` units) and a quota of up to `max_included` units.
fn rule_with(max_step: u64, max_included: u64) -> impl Strategy<Value = TrafficRule> {
    (
        direction(),
        prop_oneof![Just(0u64), 0..max_included],
        price(),
        prop::collection::vec((1..max_step, price()), 0..5),
    )
        .prop_map(|(direction, included, first, rest)| {
            let mut tiers = vec![Tier {
                from_units: 0,
                price: first,
            }];
            let mut from = 0;
            for (step, price) in rest {
                from += step;
                tiers.push(Tier {
                    from_units: from,
                    price,
                });
            }
            TrafficRule {
                name: "r".into(),
                class: "paid".into(),
                direction,
                zones: vec![],
                included_units: included,
                tiers,
            }
        })
}

fn rule() -> impl Strategy<Value = TrafficRule> {
    rule_with(3_000, 5_000)
}

/// Byte counts spread over every magnitude: a mantissa shifted left.
fn bytes_upto(max_shift: u32) -> impl Strategy<Value = u64> {
    (0u64..1_000, 0..=max_shift).prop_map(|(m, s)| m << s)
}

/// Volumes anywhere up to u64::MAX, with its edges.
fn any_volume() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => bytes_upto(53),
        1 => any::<u64>(),
        1 => (0u64..3).prop_map(|d| u64::MAX - d),
    ]
}

/// Model 1, by segments: cut [0, volume) at every tier start and at the
/// end of the quota; each segment has one price, the price at its start.
fn model_segments(rule: &TrafficRule, unit: Unit, volume: u64) -> u128 {
    let ub = u128::from(unit.bytes());
    let v = u128::from(volume);
    let free_to = u128::from(rule.included_units) * ub;
    let mut cuts: Vec<u128> = rule
        .tiers
        .iter()
        .map(|t| u128::from(t.from_units) * ub)
        .chain([free_to, v])
        .filter(|&c| c <= v)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let price_at = |x: u128| -> u128 {
        if x < free_to {
            return 0;
        }
        let mut p = 0;
        for t in &rule.tiers {
            if u128::from(t.from_units) * ub <= x {
                p = u128::try_from(t.price.0).expect("prices are >= 0");
            }
        }
        p
    };
    cuts.windows(2)
        .map(|w| (w[1] - w[0]) * price_at(w[0]))
        .sum()
}

/// Model 2, unit by unit (small volumes): every whole unit has one price,
/// since quota and tier bounds are whole units; the last unit may be used
/// in part.
fn model_units(rule: &TrafficRule, unit: Unit, volume: u64) -> u128 {
    let ub = unit.bytes();
    let mut total = 0u128;
    let mut u = 0u64;
    while u * ub < volume {
        let used = (volume - u * ub).min(ub);
        let price = if u < rule.included_units {
            0
        } else {
            rule.tiers
                .iter()
                .rfind(|t| t.from_units <= u)
                .map_or(0, |t| t.price.0)
        };
        total += u128::from(used) * u128::try_from(price).expect("prices are >= 0");
        u += 1;
    }
    total
}

fn charge_num(rule: &TrafficRule, unit: Unit, volume: u64) -> u128 {
    u128::try_from(rule_charge_num(rule, unit, volume)).expect("a charge is >= 0")
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn charge_equals_the_segment_model(r in rule(), u in unit(), v in any_volume()) {
        prop_assert_eq!(charge_num(&r, u, v), model_segments(&r, u, v));
    }

    #[test]
    fn charge_is_monotone(r in rule(), u in unit(), a in any_volume(), d in bytes_upto(40)) {
        let b = a.saturating_add(d);
        prop_assert!(rule_charge_num(&r, u, b) >= rule_charge_num(&r, u, a));
        prop_assert!(num_to_kopecks(rule_charge_num(&r, u, b), u) >= num_to_kopecks(rule_charge_num(&r, u, a), u));
    }

    /// Rule charges are monotone in each of in and out, whatever the
    /// direction rule (`max` included).
    #[test]
    fn charge_grows_with_either_direction(
        r in rule(), u in unit(), i in bytes_upto(50), o in bytes_upto(50), d in bytes_upto(40),
    ) {
        let base = rule_charge(&r, u, i, o);
        prop_assert!(rule_charge(&r, u, i + d, o) >= base);
        prop_assert!(rule_charge(&r, u, i, o + d) >= base);
    }

    #[test]
    fn fee_days_add_up_to_the_fee(
        fee in prop_oneof![0i64..10_000_000, 0i64..i64::MAX],
        days in 28u32..=31,
    ) {
        let mut sum = 0i64;
        for k in 1..=days {
            let step = fee_cumulative(Money(fee), k, days).0 - fee_cumulative(Money(fee), k - 1, days).0;
            prop_assert!(step >= 0);
            // Each day is the fee / days rounded down or up.
            prop_assert!(step == fee / i64::from(days) || step == fee / i64::from(days) + 1);
            sum += step;
        }
        prop_assert_eq!(sum, fee);
        prop_assert_eq!(fee_cumulative(Money(fee), days, days), Money(fee));
    }

    /// Every instant lies in the period and the local day that say so, and
    /// the days tile their period exactly (zones with DST at 02:00, at
    /// midnight, by 30 minutes, and none).
    #[test]
    fn days_tile_periods(t in 1_600_000_000_000i64..2_000_000_000_000, z in 0usize..6) {
        let tz = [
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Europe::Moscow,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kathmandu,
            chrono_tz::America::Santiago,
        ][z];
        let p = period_of(tz, t);
        prop_assert!(p.start_ms <= t && t < p.end_ms);
        prop_assert_eq!(period_by_label(tz, &p.label), Ok(p.clone()));
        let (s, e, ix) = local_day(tz, t);
        prop_assert!(s <= t && t < e && p.start_ms <= s && e <= p.end_ms);
        prop_assert!(ix < p.days);
        prop_assert!((22 * HOUR_MS..=26 * HOUR_MS).contains(&(e - s)));
        let mut day = p.start_ms;
        let mut n = 0;
        while day < p.end_ms {
            let (ds, de, di) = local_day(tz, day);
            prop_assert_eq!((ds, di), (day, n));
            day = de;
            n += 1;
        }
        prop_assert_eq!(day, p.end_ms);
        prop_assert_eq!(n, p.days);
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Small volumes against the unit-by-unit model (at most ~20,000
    /// units walked per case).
    #[test]
    fn charge_equals_the_unit_model(
        r in rule_with(400, 2_000),
        u in unit(),
        units in 0u64..8_000,
        part in 0u64..1 << 30,
    ) {
        let v = units * u.bytes() + part % u.bytes();
        prop_assert_eq!(charge_num(&r, u, v), model_units(&r, u, v));
    }

    /// Rating cumulatively and posting the differences of the floors: no
    /// negative posting, the postings add up to the charge of the totals,
    /// never above the exact price and under it by less than a kopeck; and
    /// the same usage in another order or split into other parts ends at
    /// the same total.
    #[test]
    fn postings_add_up_to_the_price_of_the_total(
        (r, u, parts, shuffled) in (
            rule(),
            unit(),
            prop::collection::vec((bytes_upto(36), any::<bool>()), 1..60),
        ).prop_flat_map(|(r, u, parts)| {
            let shuffled = Just(parts.clone()).prop_shuffle();
            (Just(r), Just(u), Just(parts), shuffled)
        }),
        splits in prop::collection::vec(1u64..8, 60),
    ) {
        // Posts each step's difference; returns the sum and the totals.
        let post = |steps: &[(u64, bool)]| -> Result<(i64, u64, u64), TestCaseError> {
            let (mut cin, mut cout) = (0u64, 0u64);
            let mut before = num_to_kopecks(0, u);
            let mut posted = 0i64;
            for &(bytes, inbound) in steps {
                if inbound { cin += bytes } else { cout += bytes }
                let now = num_to_kopecks(rule_charge_num(&r, u, volume(r.direction, cin, cout)), u);
                let posting = now.0 - before.0;
                prop_assert!(posting >= 0, "negative posting {} at {} in, {} out", posting, cin, cout);
                posted += posting;
                before = now;
            }
            Ok((posted, cin, cout))
        };
        let (posted, cin, cout) = post(&parts)?;
        prop_assert_eq!(Money(posted), rule_charge(&r, u, cin, cout));
        // Never more than the exact price, less by under one kopeck.
        let exact = rule_charge_num(&r, u, volume(r.direction, cin, cout));
        let den = i128::from(u.bytes()) * i128::from(PRICE_PER_MINOR);
        prop_assert!(i128::from(posted) * den <= exact && exact < (i128::from(posted) + 1) * den);
        // Another order.
        let (again, sin, sout) = post(&shuffled)?;
        prop_assert_eq!((again, sin, sout), (posted, cin, cout));
        // Other parts: each split into k nearly equal pieces.
        let mut pieces = Vec::new();
        for (&(bytes, inbound), &k) in parts.iter().zip(splits.iter().cycle()) {
            for j in 0..k {
                pieces.push((bytes / k + u64::from(j < bytes % k), inbound));
            }
        }
        let (again, pin, pout) = post(&pieces)?;
        prop_assert_eq!((again, pin, pout), (posted, cin, cout));
        // One lump per direction.
        prop_assert_eq!(post(&[(cin, true), (cout, false)])?.0, posted);
    }
}

#[test]
fn quota_and_tier_edges_hit_exactly() {
    // 100 MiB included; 1.00/MiB to 1000 MiB, then 0.50/MiB.
    let r = Tariff::from_toml(
        "unit = \"MiB\"\n[[traffic]]\nclass = \"paid\"\ndirection = \"sum\"\nincluded = 100\n\
         [[traffic.tier]]\nfrom = 0\nprice = \"1.00\"\n[[traffic.tier]]\nfrom = 1000\nprice = \"0.50\"\n",
    )
    .unwrap()
    .rules
    .remove(0);
    let mib = 1u64 << 20;
    // (bytes, exact numerator, kopecks)
    for (bytes, num, kopecks) in [
        (100 * mib - 1, 0, 0),
        (100 * mib, 0, 0),
        (100 * mib + 1, 1_000_000, 0),
        (100 * mib + mib / 2, 1_000_000 * i128::from(mib / 2), 50),
        (
            1000 * mib - 1,
            1_000_000 * i128::from(900 * mib - 1),
            89_999,
        ),
        (1000 * mib, 1_000_000 * i128::from(900 * mib), 90_000),
        (
            1000 * mib + 1,
            1_000_000 * i128::from(900 * mib) + 500_000,
            90_000,
        ),
        (
            1001 * mib,
            1_000_000 * i128::from(900 * mib) + 500_000 * i128::from(mib),
            90_050,
        ),
    ] {
        assert_eq!(rule_charge_num(&r, Unit::MiB, bytes), num, "{bytes}");
        assert_eq!(rule_charge(&r, Unit::MiB, bytes, 0).0, kopecks, "{bytes}");
        assert_eq!(
            rule_charge(&r, Unit::MiB, bytes / 2, bytes - bytes / 2).0,
            kopecks,
            "split {bytes}"
        );
    }
}

/// The wall-clock hours of 5-minute UTC buckets whose local start falls
/// in a 01:00-07:00 zone, over the local day starting at `date`'s
/// midnight. Returns (day length in hours, zone minutes / 60).
fn night_hours(tz: chrono_tz::Tz, date: (i32, u32, u32)) -> (i64, i64) {
    let tariff = Tariff::from_toml(
        "unit = \"MB\"\n[[zone]]\nname = \"night\"\nfrom = \"01:00\"\nto = \"07:00\"\n\
         [[traffic]]\nclass = \"paid\"\ndirection = \"in\"\nzones = [\"night\"]\nprice = \"0\"\n",
    )
    .unwrap();
    let midnight = tz
        .with_ymd_and_hms(date.0, date.1, date.2, 0, 0, 0)
        .earliest()
        .unwrap()
        .timestamp_millis();
    let (s, e, _) = local_day(tz, midnight + 12 * HOUR_MS);
    assert_eq!(s, midnight);
    let mut night_min = 0;
    let mut t = s;
    while t < e {
        let (weekday, minute) = local_slot(tz, t);
        if tariff.rule_for("paid", weekday, minute).is_some() {
            night_min += 5;
        }
        t += 5 * 60_000;
    }
    assert_eq!(night_min % 60, 0);
    ((e - s) / HOUR_MS, night_min / 60)
}

#[test]
fn dst_days_are_23_and_25_hours_and_zones_follow_the_wall_clock() {
    use chrono_tz::{America::New_York, Europe::Berlin, Europe::Moscow};
    // 01:00-07:00 wall time is 5 real hours on the spring day and 7 on
    // the autumn day.
    assert_eq!(night_hours(Berlin, (2026, 3, 29)), (23, 5));
    assert_eq!(night_hours(Berlin, (2026, 10, 25)), (25, 7));
    assert_eq!(night_hours(New_York, (2026, 3, 8)), (23, 5));
    assert_eq!(night_hours(New_York, (2026, 11, 1)), (25, 7));
    assert_eq!(night_hours(Berlin, (2026, 10, 26)), (24, 6));
    assert_eq!(night_hours(Moscow, (2026, 3, 29)), (24, 6));

    let oct = period_by_label(Berlin, "2026-10").unwrap();
    assert_eq!(
        (oct.days, oct.end_ms - oct.start_ms),
        (31, (31 * 24 + 1) * HOUR_MS)
    );
    assert_eq!(period_of(Berlin, oct.start_ms + 40 * 86_400_000 / 2), oct);
    let mar = period_by_label(Berlin, "2026-03").unwrap();
    assert_eq!(mar.end_ms - mar.start_ms, (31 * 24 - 1) * HOUR_MS);
    for year in 2024..=2027 {
        for m in 1..=12 {
            let p = period_by_label(Moscow, &format!("{year}-{m:02}")).unwrap();
            assert_eq!(p.end_ms - p.start_ms, i64::from(p.days) * 24 * HOUR_MS);
            assert_eq!(p.start_ms % (24 * HOUR_MS), 21 * HOUR_MS); // 00:00 MSK = 21:00 UTC
        }
    }
    // The repeated hour of the autumn day: both passes are 02:xx Sunday.
    let first = Berlin
        .with_ymd_and_hms(2026, 10, 25, 2, 30, 0)
        .earliest()
        .unwrap()
        .timestamp_millis();
    assert_eq!(local_slot(Berlin, first), (Weekday::Sun, 150));
    assert_eq!(local_slot(Berlin, first + HOUR_MS), (Weekday::Sun, 150));
}

/// The worked example of docs/tariffs.md, number by number.
#[test]
fn the_worked_example_in_the_docs_holds() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tariffs.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let section = doc.split("## Worked example").nth(1).unwrap();
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let t = Tariff::from_toml(toml).unwrap();
    let tz = chrono_tz::Europe::Moscow;
    let oct = period_by_label(tz, "2026-10").unwrap();
    assert_eq!(oct.days, 31);

    // The night and the day, as the core would route the buckets.
    let at_3 = tz
        .with_ymd_and_hms(2026, 10, 7, 3, 0, 0)
        .single()
        .unwrap()
        .timestamp_millis();
    let (wd, min) = local_slot(tz, at_3);
    let night = &t.rules[t.rule_for("paid", wd, min).unwrap()];
    let (wd, min) = local_slot(tz, at_3 + 9 * HOUR_MS);
    let day = &t.rules[t.rule_for("paid", wd, min).unwrap()];
    assert_eq!((night.name.as_str(), day.name.as_str()), ("night", "paid"));

    assert_eq!(
        rule_charge(night, t.unit, 20_000_000_000, 1_000_000_000),
        Money(0)
    );
    let v = 62_345_678_901u64;
    assert_eq!(volume(day.direction, v, 5_000_000_000), v);
    let num = rule_charge_num(day, t.unit, v);
    assert_eq!(num, 2_000_000_000_000_000 + 246_913_578_020_000);
    let traffic = rule_charge(day, t.unit, v, 5_000_000_000);
    assert_eq!(traffic, Money(224_691));
    assert_eq!(fee_cumulative(t.monthly_fee, 31, 31), Money(50_000));
    assert_eq!(fee_cumulative(t.monthly_fee, 10, 31), Money(16_129));
    let days: Vec<i64> = (1..=3)
        .map(|k| {
            fee_cumulative(t.monthly_fee, k, 31).0 - fee_cumulative(t.monthly_fee, k - 1, 31).0
        })
        .collect();
    assert_eq!(days, [1_612, 1_613, 1_613]);
    assert_eq!(traffic.0 + 50_000, 274_691);

    // Three cycles just past the quota: postings 0.00, 0.01, 0.01.
    let mut before = Money(0);
    let mut postings = Vec::new();
    for cum in [10_000_100_000u64, 10_000_300_000, 10_000_500_000] {
        let now = rule_charge(day, t.unit, cum, 0);
        postings.push(now.0 - before.0);
        before = now;
    }
    assert_eq!(postings, [0, 1, 1]);

    for shown in [
        "2,246.91357802",
        "**2,246.91**",
        "**161.29**",
        "16.12, 16.13, 16.13",
        "**2,746.91**",
        "0.00, 0.01 and 0.01",
        "2,246,913,578,020,000",
    ] {
        assert!(
            section.contains(shown),
            "the worked example lacks {shown:?}"
        );
    }
}
