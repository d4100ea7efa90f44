//! Tariff files: what an operator writes (docs/tariffs.md), validated into
//! [`Tariff`]. Two layers like the config: serde wire structs with unknown
//! keys rejected, then checked types whose errors name the key.

use std::fmt;
use std::str::FromStr;

use chrono::Weekday;
use sha2::{Digest, Sha256};

use crate::money::{Money, Price};

/// Volume unit of a tariff's prices and quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// 1,000,000 bytes.
    MB,
    /// 1,048,576 bytes.
    MiB,
    /// 10^9 bytes.
    GB,
    /// 2^30 bytes.
    GiB,
}

impl Unit {
    pub fn bytes(self) -> u64 {
        match self {
            Unit::MB => 1_000_000,
            Unit::MiB => 1 << 20,
            Unit::GB => 1_000_000_000,
            Unit::GiB => 1 << 30,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::MB => "MB",
            Unit::MiB => "MiB",
            Unit::GB => "GB",
            Unit::GiB => "GiB",
        }
    }
}

impl FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Unit, String> {
        match s {
            "MB" => Ok(Unit::MB),
            "MiB" => Ok(Unit::MiB),
            "GB" => Ok(Unit::GB),
            "GiB" => Ok(Unit::GiB),
            _ => Err(format!(
                "expected MB (10^6 bytes), MiB (2^20), GB (10^9) or GiB (2^30), got {s:?}"
            )),
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which direction a traffic rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectionRule {
    In,
    Out,
    /// In plus out.
    Sum,
    /// The larger of the period totals in and out.
    Max,
}

impl DirectionRule {
    pub fn name(self) -> &'static str {
        match self {
            DirectionRule::In => "in",
            DirectionRule::Out => "out",
            DirectionRule::Sum => "sum",
            DirectionRule::Max => "max",
        }
    }
}

/// A price from `from_units` of the period's volume on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub from_units: u64,
    pub price: Price,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRule {
    pub name: String,
    pub class: String,
    pub direction: DirectionRule,
    /// Indices into [`Tariff::zones`]; empty = any time.
    pub zones: Vec<usize>,
    pub included_units: u64,
    /// At least one; the first from 0; strictly increasing.
    pub tiers: Vec<Tier>,
}

/// Part of a zone: `[from_min, to_min)` of one weekday, local wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub weekday: Weekday,
    pub from_min: u16,
    pub to_min: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub spans: Vec<Span>,
}

impl Zone {
    pub fn contains(&self, weekday: Weekday, minute: u16) -> bool {
        self.spans
            .iter()
            .any(|s| s.weekday == weekday && s.from_min <= minute && minute < s.to_min)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    pub unit: Unit,
    pub monthly_fee: Money,
    pub zones: Vec<Zone>,
    pub rules: Vec<TrafficRule>,
}

/// A tariff file problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TariffError {
    pub key: String,
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> TariffError {
    TariffError {
        key: key.into(),
        message: message.into(),
    }
}

mod wire {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub unit: String,
        #[serde(default)]
        pub monthly_fee: Option<String>,
        #[serde(default)]
        pub zone: Vec<Zone>,
        #[serde(default)]
        pub traffic: Vec<Traffic>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Zone {
        pub name: String,
        #[serde(default)]
        pub days: Option<Vec<String>>,
        pub from: String,
        pub to: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Traffic {
        #[serde(default)]
        pub name: Option<String>,
        pub class: String,
        pub direction: String,
        #[serde(default)]
        pub zones: Option<Vec<String>>,
        #[serde(default)]
        pub included: Option<u64>,
        #[serde(default)]
        pub price: Option<String>,
        #[serde(default)]
        pub tier: Vec<Tier>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tier {
        pub from: u64,
        pub price: String,
    }
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

fn weekday_name(w: Weekday) -> &'static str {
    WEEKDAYS
        .iter()
        .find(|(_, d)| *d == w)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// "HH:MM" on a quarter hour; "24:00" only where `allow_24`.
fn parse_clock(key: &str, s: &str, allow_24: bool) -> Result<u16, TariffError> {
    let err = || {
        bad(
            key,
            format!("expected HH:MM on a quarter hour (00, 15, 30, 45), got {s:?}"),
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(err());
    }
    let h: u16 = h.parse().map_err(|_| err())?;
    let m: u16 = m.parse().map_err(|_| err())?;
    if !m.is_multiple_of(15) || m >= 60 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
        return Err(err());
    }
    Ok(h * 60 + m)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+:".contains(c))
}

impl Tariff {
    /// Parses and validates a tariff file.
    pub fn from_toml(text: &str) -> Result<Tariff, TariffError> {
        let w: wire::File = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    bad(format!("line {line}"), msg)
                }
                None => bad("file", msg),
            }
        })?;
        let unit: Unit = w.unit.parse().map_err(|m: String| bad("unit", m))?;
        let monthly_fee = match &w.monthly_fee {
            None => Money::ZERO,
            Some(s) => {
                let m: Money = s.parse().map_err(|e| bad("monthly_fee", format!("{e}")))?;
                if m.is_negative() {
                    return Err(bad("monthly_fee", format!("must be 0 or more, got {m}")));
                }
                m
            }
        };
        let mut zones: Vec<Zone> = Vec::new();
        for (i, z) in w.zone.iter().enumerate() {
            let key = format!("zone[{i}]");
            if !is_name(&z.name) {
                return Err(bad(
                    format!("{key}.name"),
                    format!("1-64 letters, digits or -_.@+: , got {:?}", z.name),
                ));
            }
            let days: Vec<Weekday> = match &z.days {
                None => WEEKDAYS.iter().map(|(_, d)| *d).collect(),
                Some(list) => {
                    if list.is_empty() {
                        return Err(bad(
                            format!("{key}.days"),
                            "an empty list matches nothing; leave it out for every day",
                        ));
                    }
                    let mut v = Vec::new();
                    for d in list {
                        let day = WEEKDAYS
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(d))
                            .map(|(_, w)| *w)
                            .ok_or_else(|| {
                                bad(
                                    format!("{key}.days"),
                                    format!("expected mon..sun, got {d:?}"),
                                )
                            })?;
                        if !v.contains(&day) {
                            v.push(day);
                        }
                    }
                    v
                }
            };
            let from = parse_clock(&format!("{key}.from"), &z.from, false)?;
            let to = parse_clock(&format!("{key}.to"), &z.to, true)?;
            if from == to {
                return Err(bad(format!("{key}.to"), "equals from: an empty zone"));
            }
            let mut spans = Vec::new();
            for d in days {
                if from < to {
                    spans.push(Span {
                        weekday: d,
                        from_min: from,
                        to_min: to,
                    });
                } else {
                    // Wraps past midnight: the rest belongs to the next day.
                    spans.push(Span {
                        weekday: d,
                        from_min: from,
                        to_min: 1440,
                    });
                    if to > 0 {
                        spans.push(Span {
                            weekday: d.succ(),
                            from_min: 0,
                            to_min: to,
                        });
                    }
                }
            }
            match zones.iter_mut().find(|x| x.name == z.name) {
                Some(existing) => existing.spans.extend(spans),
                None => zones.push(Zone {
                    name: z.name.clone(),
                    spans,
                }),
            }
        }
        for z in &mut zones {
            z.spans
                .sort_by_key(|s| (s.weekday.num_days_from_monday(), s.from_min, s.to_min));
            z.spans.dedup();
        }
        let mut rules: Vec<TrafficRule> = Vec::new();
        for (i, t) in w.traffic.iter().enumerate() {
            let key = format!("traffic[{i}]");
            if !is_name(&t.class) {
                return Err(bad(
                    format!("{key}.class"),
                    format!("a class name, got {:?}", t.class),
                ));
            }
            let direction = match t.direction.as_str() {
                "in" => DirectionRule::In,
                "out" => DirectionRule::Out,
                "sum" => DirectionRule::Sum,
                "max" => DirectionRule::Max,
                other => {
                    return Err(bad(
                        format!("{key}.direction"),
                        format!("expected in, out, sum or max, got {other:?}"),
                    ));
                }
            };
            let mut zone_ix = Vec::new();
            if let Some(list) = &t.zones {
                if list.is_empty() {
                    return Err(bad(
                        format!("{key}.zones"),
                        "an empty list matches nothing; leave it out for any time",
                    ));
                }
                for name in list {
                    let ix = zones.iter().position(|z| &z.name == name).ok_or_else(|| {
                        bad(
                            format!("{key}.zones"),
                            format!("no [[zone]] named {name:?}"),
                        )
                    })?;
                    if !zone_ix.contains(&ix) {
                        zone_ix.push(ix);
                    }
                }
            }
            let tiers = match (&t.price, t.tier.is_empty()) {
                (Some(_), false) => {
                    return Err(bad(
                        key.clone(),
                        "give either price or [[traffic.tier]], not both",
                    ));
                }
                (None, true) => {
                    return Err(bad(
                        key.clone(),
                        "no price: give price = \"...\" or [[traffic.tier]] tables",
                    ));
                }
                (Some(p), true) => {
                    let price: Price = p
                        .parse()
                        .map_err(|e| bad(format!("{key}.price"), format!("{e}")))?;
                    if price.0 < 0 {
                        return Err(bad(format!("{key}.price"), "must be 0 or more"));
                    }
                    vec![Tier {
                        from_units: 0,
                        price,
                    }]
                }
                (None, false) => {
                    let mut v: Vec<Tier> = Vec::new();
                    for (j, tier) in t.tier.iter().enumerate() {
                        let tkey = format!("{key}.tier[{j}]");
                        if j == 0 && tier.from != 0 {
                            return Err(bad(
                                format!("{tkey}.from"),
                                "the first tier must start at 0",
                            ));
                        }
                        if let Some(prev) = v.last()
                            && tier.from <= prev.from_units
                        {
                            return Err(bad(
                                format!("{tkey}.from"),
                                format!("must be above the previous tier's {}", prev.from_units),
                            ));
                        }
                        if tier.from.checked_mul(unit.bytes()).is_none() {
                            return Err(bad(format!("{tkey}.from"), "too large"));
                        }
                        let price: Price = tier
                            .price
                            .parse()
                            .map_err(|e| bad(format!("{tkey}.price"), format!("{e}")))?;
                        if price.0 < 0 {
                            return Err(bad(format!("{tkey}.price"), "must be 0 or more"));
                        }
                        v.push(Tier {
                            from_units: tier.from,
                            price,
                        });
                    }
                    v
                }
            };
            let included_units = t.included.unwrap_or(0);
            if included_units.checked_mul(unit.bytes()).is_none() {
                return Err(bad(format!("{key}.included"), "too large"));
            }
            let name = match &t.name {
                Some(n) => n.clone(),
                None if zone_ix.is_empty() => t.class.clone(),
                None => format!(
                    "{}@{}",
                    t.class,
                    zone_ix
                        .iter()
                        .map(|&z| zones[z].name.as_str())
                        .collect::<Vec<_>>()
                        .join("+")
                ),
            };
            if !is_name(&name) || name == crate::ledger::FEE_SERVICE || name.starts_with("free:") {
                return Err(bad(
                    format!("{key}.name"),
                    format!(
                        "1-64 letters, digits or -_.@+: and not \"fee\" or \"free:...\", got {name:?}"
                    ),
                ));
            }
            if rules.iter().any(|r| r.name == name) {
                return Err(bad(
                    format!("{key}.name"),
                    format!("{name:?} is used by an earlier rule; names must be unique"),
                ));
            }
            rules.push(TrafficRule {
                name,
                class: t.class.clone(),
                direction,
                zones: zone_ix,
                included_units,
                tiers,
            });
        }
        Ok(Tariff {
            unit,
            monthly_fee,
            zones,
            rules,
        })
    }

    /// A deterministic text of the tariff's meaning; parses back to an
    /// equal tariff.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "unit = \"{}\"\nmonthly_fee = \"{}\"\n",
            self.unit, self.monthly_fee
        ));
        for z in &self.zones {
            for sp in &z.spans {
                s.push_str(&format!(
                    "\n[[zone]]\nname = \"{}\"\ndays = [\"{}\"]\nfrom = \"{:02}:{:02}\"\nto = \"{:02}:{:02}\"\n",
                    z.name,
                    weekday_name(sp.weekday),
                    sp.from_min / 60,
                    sp.from_min % 60,
                    sp.to_min / 60,
                    sp.to_min % 60
                ));
            }
        }
        for r in &self.rules {
            s.push_str(&format!(
                "\n[[traffic]]\nname = \"{}\"\nclass = \"{}\"\ndirection = \"{}\"\n",
                r.name,
                r.class,
                r.direction.name()
            ));
            if !r.zones.is_empty() {
                let names: Vec<String> = r
                    .zones
                    .iter()
                    .map(|&z| format!("\"{}\"", self.zones[z].name))
                    .collect();
                s.push_str(&format!("zones = [{}]\n", names.join(", ")));
            }
            s.push_str(&format!("included = {}\n", r.included_units));
            for t in &r.tiers {
                s.push_str(&format!(
                    "[[traffic.tier]]\nfrom = {}\nprice = \"{}\"\n",
                    t.from_units, t.price
                ));
            }
        }
        s
    }

    pub fn sha256(&self) -> String {
        crate::store::hex(&Sha256::digest(self.canonical().as_bytes()))
    }

    /// The first rule whose class matches and whose zones contain the
    /// local slot.
    pub fn rule_for(&self, class: &str, weekday: Weekday, minute_of_day: u16) -> Option<usize> {
        self.rules.iter().position(|r| {
            r.class == class
                && (r.zones.is_empty()
                    || r.zones
                        .iter()
                        .any(|&z| self.zones[z].contains(weekday, minute_of_day)))
        })
    }

    pub fn rule_by_name(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
unit = "MiB"
monthly_fee = "300.00"
[[zone]]
name = "night"
from = "23:00"
to = "07:00"
[[zone]]
name = "weekend"
days = ["sat", "sun"]
from = "00:00"
to = "24:00"
[[traffic]]
class = "paid"
direction = "sum"
zones = ["night", "weekend"]
price = "0"
[[traffic]]
class = "paid"
direction = "max"
included = 100
[[traffic.tier]]
from = 0
price = "1.5"
[[traffic.tier]]
from = 2000
price = "0.75"
"#;

    #[test]
    fn a_full_tariff_parses_and_round_trips() {
        let t = Tariff::from_toml(FULL).unwrap();
        assert_eq!(t.unit, Unit::MiB);
        assert_eq!(t.monthly_fee, Money(30_000));
        assert_eq!(t.rules[0].name, "paid@night+weekend");
        assert_eq!(t.rules[1].name, "paid");
        assert_eq!(t.rules[1].tiers.len(), 2);
        let again = Tariff::from_toml(&t.canonical()).unwrap();
        assert_eq!(again, t);
        assert_eq!(again.sha256(), t.sha256());
    }

    #[test]
    fn rules_match_in_order_with_zones_and_midnight_wrap() {
        let t = Tariff::from_toml(FULL).unwrap();
        use Weekday::*;
        for (day, minute, want) in [
            (Mon, 23 * 60, Some(0)),     // night starts
            (Tue, 6 * 60 + 45, Some(0)), // wrapped part of Monday's night
            (Mon, 7 * 60, Some(1)),      // day
            (Sat, 12 * 60, Some(0)),     // weekend
            (Sun, 23 * 60 + 59, Some(0)),
            (Fri, 22 * 60 + 45, Some(1)),
        ] {
            assert_eq!(t.rule_for("paid", day, minute), want, "{day:?} {minute}");
        }
        assert_eq!(t.rule_for("local", Mon, 0), None);
    }

    #[test]
    fn bad_files_name_the_key() {
        for (text, key) in [
            ("unit = \"KB\"", "unit"),
            ("unit = \"MB\"\nmonthly_fee = \"-1\"", "monthly_fee"),
            ("unit = \"MB\"\nmonthly_fee = \"1.001\"", "monthly_fee"),
            ("unit = \"MB\"\nbogus = 1", "line 2"),
            (
                "unit = \"MB\"\n[[zone]]\nname = \"n\"\nfrom = \"01:10\"\nto = \"02:00\"",
                "zone[0].from",
            ),
            (
                "unit = \"MB\"\n[[zone]]\nname = \"n\"\nfrom = \"01:00\"\nto = \"01:00\"",
                "zone[0].to",
            ),
            (
                "unit = \"MB\"\n[[zone]]\nname = \"n\"\ndays = [\"mo\"]\nfrom = \"01:00\"\nto = \"02:00\"",
                "zone[0].days",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nclass = \"p\"\ndirection = \"up\"\nprice = \"1\"",
                "traffic[0].direction",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nclass = \"p\"\ndirection = \"in\"",
                "traffic[0]",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nclass = \"p\"\ndirection = \"in\"\nzones = [\"x\"]\nprice = \"1\"",
                "traffic[0].zones",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nclass = \"p\"\ndirection = \"in\"\n[[traffic.tier]]\nfrom = 5\nprice = \"1\"",
                "traffic[0].tier[0].from",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nclass = \"p\"\ndirection = \"in\"\n[[traffic.tier]]\nfrom = 0\nprice = \"1\"\n[[traffic.tier]]\nfrom = 0\nprice = \"2\"",
                "traffic[0].tier[1].from",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nclass = \"p\"\ndirection = \"in\"\nprice = \"1\"\n[[traffic]]\nclass = \"p\"\ndirection = \"out\"\nprice = \"1\"",
                "traffic[1].name",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nclass = \"p\"\ndirection = \"in\"\nprice = \"-1\"",
                "traffic[0].price",
            ),
            (
                "unit = \"MB\"\n[[traffic]]\nname = \"fee\"\nclass = \"p\"\ndirection = \"in\"\nprice = \"1\"",
                "traffic[0].name",
            ),
        ] {
            let e = Tariff::from_toml(text).unwrap_err();
            assert_eq!(e.key, key, "{text:?}: {e}");
        }
    }
}
