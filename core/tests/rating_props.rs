//! Property tests of rating (RELIABILITY test 5; failures replay from the
//! seed proptest prints and persists): the exact charge against a simple
//! independent model, postings of any granularity adding up to the price of
//! the total, quota and tier edges, fee days, and DST days.

use chrono::TimeZone;
use kopek_core::money::{Money, Price};
use kopek_core::rating::{
    fee_cumulative, local_day, local_slot, num_to_kopecks, period_by_label, period_of, rule_charge,
    rule_charge_num, volume,
};
use kopek_core::tariff::{DirectionRule, Tier, TrafficRule, Unit};
use proptest::prelude::*;

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

/// A rule with 1-4 tiers (strictly increasing starts from 0) and a quota.
fn rule() -> impl Strategy<Value = TrafficRule> {
    (
        direction(),
        0u64..5_000,
        prop::collection::vec((1u64..3_000, 0i64..5_000_000), 0..4),
        0i64..5_000_000,
    )
        .prop_map(|(direction, included, rest, first_price)| {
            let mut tiers = vec![Tier {
                from_units: 0,
                price: Price(first_price),
            }];
            let mut from = 0;
            for (step, price) in rest {
                from += step;
                tiers.push(Tier {
                    from_units: from,
                    price: Price(price),
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

/// The model: walk the volume unit by unit boundary — the same definition
/// (price of each byte position, nothing inside the quota) written as a
/// loop over segments between every boundary, in u128.
fn model_num(rule: &TrafficRule, unit: Unit, volume: u64) -> u128 {
    let ub = u128::from(unit.bytes());
    let mut edges: Vec<u128> = rule
        .tiers
        .iter()
        .map(|t| u128::from(t.from_units) * ub)
        .collect();
    edges.push(u128::from(rule.included_units) * ub);
    edges.push(u128::from(volume));
    edges.sort();
    edges.dedup();
    let price_at = |x: u128| -> u128 {
        if x < u128::from(rule.included_units) * ub {
            return 0;
        }
        let t = rule
            .tiers
            .iter()
            .rev()
            .find(|t| u128::from(t.from_units) * ub <= x)
            .expect("the first tier starts at 0");
        t.price.0 as u128
    };
    let mut total = 0u128;
    for w in edges.windows(2) {
        let (a, b) = (w[0], w[1].min(u128::from(volume)));
        if b > a {
            total += (b - a) * price_at(a);
        }
    }
    total
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn charge_equals_the_model(r in rule(), u in unit(), v in 0u64..20_000_000_000_000) {
        prop_assert_eq!(rule_charge_num(&r, u, v) as u128, model_num(&r, u, v));
    }

    #[test]
    fn charge_is_monotone(r in rule(), u in unit(), a in 0u64..10_000_000_000_000, d in 0u64..10_000_000_000) {
        let lo = rule_charge_num(&r, u, a);
        let hi = rule_charge_num(&r, u, a + d);
        prop_assert!(hi >= lo);
    }

    /// Rating cumulatively and posting the differences: no negative posting,
    /// and the postings add up to the charge of the totals, whatever the
    /// split and order of the usage.
    #[test]
    fn postings_add_up_to_the_price_of_the_total(
        r in rule(),
        u in unit(),
        parts in prop::collection::vec((0u64..3_000_000_000, any::<bool>()), 1..60),
    ) {
        let (mut cin, mut cout) = (0u64, 0u64);
        let mut posted = 0i64;
        for (bytes, inbound) in &parts {
            if *inbound { cin += bytes } else { cout += bytes }
            let now = rule_charge(&r, u, cin, cout).0;
            prop_assert!(now >= posted, "negative posting {} after {}", now - posted, posted);
            posted = now;
        }
        prop_assert_eq!(posted, rule_charge(&r, u, cin, cout).0);
        // The same usage in reverse order, as one lump per direction.
        let mut rev = parts.clone();
        rev.reverse();
        let (tin, tout) = rev.iter().fold((0, 0), |(i, o), (b, inb)| if *inb { (i + b, o) } else { (i, o + b) });
        prop_assert_eq!(rule_charge(&r, u, tin, tout).0, posted);
        // Never more than the exact price, less by under one kopeck.
        let exact = rule_charge_num(&r, u, volume(r.direction, cin, cout));
        let den = i128::from(u.bytes()) * 10_000;
        prop_assert!(i128::from(posted) * den <= exact && exact < (i128::from(posted) + 1) * den);
    }

    #[test]
    fn fee_days_add_up_to_the_fee(fee in 0i64..10_000_000, days in 28u32..=31) {
        let mut sum = 0;
        for k in 1..=days {
            let step = fee_cumulative(Money(fee), k, days).0 - fee_cumulative(Money(fee), k - 1, days).0;
            prop_assert!(step >= 0);
            sum += step;
        }
        prop_assert_eq!(sum, fee);
    }

    /// Every instant lies in the period and the local day local_day says,
    /// and days tile their period exactly (any zone, any time).
    #[test]
    fn days_tile_periods(t in 1_600_000_000_000i64..2_000_000_000_000, z in 0usize..6) {
        let tz = [chrono_tz::Europe::Berlin, chrono_tz::America::New_York, chrono_tz::Europe::Moscow,
                  chrono_tz::Australia::Lord_Howe, chrono_tz::Asia::Kathmandu, chrono_tz::America::Santiago][z];
        let p = period_of(tz, t);
        prop_assert!(p.start_ms <= t && t < p.end_ms);
        let (s, e, ix) = local_day(tz, t);
        prop_assert!(s <= t && t < e && p.start_ms <= s && e <= p.end_ms);
        prop_assert!(ix < p.days);
        let mut day = p.start_ms;
        let mut n = 0;
        while day < p.end_ms {
            day = local_day(tz, day).1;
            n += 1;
        }
        prop_assert_eq!(day, p.end_ms);
        prop_assert_eq!(n, p.days);
    }
}

#[test]
fn quota_and_tier_edges_hit_exactly() {
    // 100 MiB included; 1.00/MiB to 1000 MiB, then 0.50/MiB.
    let r = TrafficRule {
        name: "r".into(),
        class: "paid".into(),
        direction: DirectionRule::Sum,
        zones: vec![],
        included_units: 100,
        tiers: vec![
            Tier {
                from_units: 0,
                price: "1.00".parse().unwrap(),
            },
            Tier {
                from_units: 1000,
                price: "0.50".parse().unwrap(),
            },
        ],
    };
    let mib = 1u64 << 20;
    for (bytes, kopecks) in [
        (100 * mib, 0),
        (100 * mib + mib / 2, 50),
        (1000 * mib, 90_000),
        (1000 * mib + mib, 90_050),
        (1000 * mib + mib - 1, 90_049),
    ] {
        assert_eq!(rule_charge(&r, Unit::MiB, bytes, 0).0, kopecks, "{bytes}");
        assert_eq!(
            rule_charge(&r, Unit::MiB, bytes / 2, bytes - bytes / 2).0,
            kopecks,
            "split {bytes}"
        );
    }
    assert_eq!(num_to_kopecks(0, Unit::MB), Money(0));
}

/// 5-minute buckets of a DST day whose local start is inside 01:00–07:00.
/// Returns (day length in hours, night buckets).
fn night_hours(tz: chrono_tz::Tz, date: (i32, u32, u32)) -> (i64, u32) {
    let start = tz
        .with_ymd_and_hms(date.0, date.1, date.2, 0, 0, 0)
        .earliest()
        .unwrap()
        .timestamp_millis();
    let (s, e, _) = local_day(tz, start);
    assert_eq!(s, start);
    let mut night = 0;
    let mut t = s;
    while t < e {
        let (_, minute) = local_slot(tz, t);
        if (60..420).contains(&minute) {
            night += 1;
        }
        t += 300_000;
    }
    ((e - s) / 3_600_000, night)
}

#[test]
fn dst_days_are_23_and_25_hours_and_zones_follow_the_wall_clock() {
    use chrono_tz::{America::New_York, Europe::Berlin};
    // 01:00-07:00 wall time is 5 real hours (60 buckets) on the spring
    // day and 7 (84 buckets) on the autumn day.
    assert_eq!(night_hours(Berlin, (2026, 3, 29)), (23, 60));
    assert_eq!(night_hours(Berlin, (2026, 10, 25)), (25, 84));
    assert_eq!(night_hours(New_York, (2026, 3, 8)), (23, 60));
    assert_eq!(night_hours(New_York, (2026, 11, 1)), (25, 84));
    let oct = period_by_label(Berlin, "2026-10").unwrap();
    assert_eq!(
        (oct.days, oct.end_ms - oct.start_ms),
        (31, (31 * 24 + 1) * 3_600_000)
    );
    let mar = period_by_label(Berlin, "2026-03").unwrap();
    assert_eq!(mar.end_ms - mar.start_ms, (31 * 24 - 1) * 3_600_000);
    for m in 1..=12 {
        let p = period_by_label(chrono_tz::Europe::Moscow, &format!("2026-{m:02}")).unwrap();
        assert_eq!(p.end_ms - p.start_ms, i64::from(p.days) * 86_400_000);
    }
}
