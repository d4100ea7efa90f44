//! Tariff files: what an operator writes (docs/tariffs.md), validated into
//! a [`Tariff`]. Two layers like the config: serde wire structs with unknown
//! keys rejected, then checked types. Every error names the key
//! (`traffic[1].tier[0].from: the first tier must start at 0`).
//!
//! A tariff is stored as its [`Tariff::canonical`] text and that text's
//! SHA-256: the same meaning gives the same text whatever the layout,
//! comments, key order, defaults or zone spellings of the file.
//!
//! This module never rates anything (that is `rating.rs`) and never looks
//! at the clock: zones are matched against a local weekday and minute the
//! caller works out.

use std::fmt;
use std::str::FromStr;

use chrono::Weekday;
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};

use crate::money::{Money, Price};

/// Largest tariff file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most `[[zone]]` tables in one file.
pub const MAX_ZONE_TABLES: usize = 256;
/// Most `[[traffic]]` rules in one file.
pub const MAX_RULES: usize = 256;
/// Most `[[traffic.tier]]` tables in one rule.
pub const MAX_TIERS: usize = 64;
/// Longest name (zone, class, rule), in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Minutes in a day; a zone's `to` may be this ("24:00").
const DAY_MINUTES: u16 = 1440;
/// Zone edges fall on quarter hours (tier-2 buckets never straddle one).
const QUARTER_MINUTES: u16 = 15;
const QUARTERS_PER_DAY: usize = (DAY_MINUTES / QUARTER_MINUTES) as usize;
const WEEK_QUARTERS: usize = 7 * QUARTERS_PER_DAY;

/// Volume unit of a tariff's prices, quotas and tier bounds.
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

    /// Exact spelling only: "Mb" would be megabits.
    fn from_str(s: &str) -> Result<Unit, String> {
        match s {
            "MB" => Ok(Unit::MB),
            "MiB" => Ok(Unit::MiB),
            "GB" => Ok(Unit::GB),
            "GiB" => Ok(Unit::GiB),
            _ => Err(format!(
                "expected \"MB\" (10^6 bytes), \"MiB\" (2^20), \"GB\" (10^9) or \"GiB\" (2^30), got {s:?}"
            )),
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Which direction of a period's traffic a rule counts.
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

impl FromStr for DirectionRule {
    type Err = String;
    fn from_str(s: &str) -> Result<DirectionRule, String> {
        match s {
            "in" => Ok(DirectionRule::In),
            "out" => Ok(DirectionRule::Out),
            "sum" => Ok(DirectionRule::Sum),
            "max" => Ok(DirectionRule::Max),
            _ => Err(format!(
                "expected \"in\", \"out\", \"sum\" (in + out) or \"max\" (the larger of the two), got {s:?}"
            )),
        }
    }
}

impl fmt::Display for DirectionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The price per unit from `from_units` of the period's volume up to the
/// next tier's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub from_units: u64,
    pub price: Price,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRule {
    /// The service name charges are booked under; unique in the tariff.
    pub name: String,
    pub class: String,
    pub direction: DirectionRule,
    /// Indices into [`Tariff::zones`], ascending; empty = any time.
    pub zones: Vec<usize>,
    pub included_units: u64,
    /// At least one; the first from 0; strictly increasing; prices >= 0.
    /// A flat price is one tier from 0.
    pub tiers: Vec<Tier>,
}

/// Part of a zone: `[from_min, to_min)` of one weekday, local wall time.
/// A zone that wraps past midnight is two spans, one on each day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub weekday: Weekday,
    pub from_min: u16,
    pub to_min: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    /// Sorted by weekday (Monday first) then start; on one weekday they
    /// neither overlap nor touch (touching spans are merged).
    pub spans: Vec<Span>,
}

impl Zone {
    pub fn contains(&self, weekday: Weekday, minute_of_day: u16) -> bool {
        self.spans.iter().any(|s| {
            s.weekday == weekday && s.from_min <= minute_of_day && minute_of_day < s.to_min
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    pub unit: Unit,
    pub monthly_fee: Money,
    /// The zones rules use, sorted by name (a zone no rule names has no
    /// effect and is left out).
    pub zones: Vec<Zone>,
    /// In file order: the first match wins.
    pub rules: Vec<TrafficRule>,
    /// Speed caps the enforcer puts on the account's addresses while the
    /// tariff applies (`[rate_limit]`); `None`: no cap.
    pub rate_limit: Option<RateLimit>,
}

/// Per-address speed caps in kbit/s (1 kbit = 1000 bit), each direction
/// optional. Enforced by nftables policing (docs/enforcer.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Towards the subscriber.
    pub down_kbit: Option<u32>,
    /// From the subscriber.
    pub up_kbit: Option<u32>,
}

/// Slowest and fastest cap a tariff may set, kbit/s.
pub const RATE_LIMIT_KBIT: std::ops::RangeInclusive<u32> = 64..=100_000_000;

/// A tariff file problem. Every variant but `Syntax` names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TariffError {
    /// Not TOML: no key to name, so the place.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// TOML of the wrong shape: an unknown or missing key, a value of the
    /// wrong type.
    #[error("{key} (line {line}): {message}")]
    Shape {
        key: String,
        line: usize,
        message: String,
    },
    /// A value that does not make sense where it is.
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}

impl TariffError {
    /// The key path the error is about (`traffic[1].tier[0].from`), if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            TariffError::Syntax { .. } => None,
            TariffError::Shape { key, .. } | TariffError::Value { key, .. } => Some(key),
        }
    }
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> TariffError {
    TariffError::Value {
        key: key.into(),
        message: message.into(),
    }
}

/// The file as written. Optional keys are `Option` or `default`; their
/// defaults are applied in [`Tariff::from_toml`].
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
        #[serde(default)]
        pub rate_limit: Option<RateLimit>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RateLimit {
        #[serde(default)]
        pub down_kbit: Option<u32>,
        #[serde(default)]
        pub up_kbit: Option<u32>,
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
    WEEKDAYS[w.num_days_from_monday() as usize].0
}

/// "HH:MM" on a quarter hour, as minutes of the day; "24:00" only where
/// `allow_24`.
fn parse_clock(key: &str, s: &str, allow_24: bool) -> Result<u16, TariffError> {
    let latest = if allow_24 { "24:00" } else { "23:45" };
    let err = || {
        bad(
            key,
            format!(
                "expected a local time HH:MM from 00:00 to {latest} on a quarter hour (:00, :15, :30, :45), got {s:?}"
            ),
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(err)?;
    let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(err());
    }
    let h: u16 = h.parse().map_err(|_| err())?;
    let m: u16 = m.parse().map_err(|_| err())?;
    let minutes = h * 60 + m;
    if m >= 60 || !m.is_multiple_of(QUARTER_MINUTES) || minutes > DAY_MINUTES {
        return Err(err());
    }
    if minutes == DAY_MINUTES && !allow_24 {
        return Err(err());
    }
    Ok(minutes)
}

fn fmt_clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Names of zones, classes and rules: what a ledger service name and a
/// TOML string can hold without escaping.
fn check_name(key: &str, s: &str) -> Result<(), TariffError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("expected 1-{MAX_NAME_BYTES} letters, digits or - _ . @ + :, got {s:?}"),
        ))
    }
}

/// Line and column (1-based, in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Every key and array element of a parsed document with its path and
/// source span. The spans of `[[tables]]` are their headers.
fn collect_paths(v: &DeValue<'_>, path: &str, out: &mut Vec<(String, std::ops::Range<usize>)>) {
    match v {
        DeValue::Table(t) => {
            for (k, item) in t.iter() {
                let p = if path.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{path}.{}", k.get_ref())
                };
                out.push((p.clone(), k.span()));
                out.push((p.clone(), item.span()));
                collect_paths(item.get_ref(), &p, out);
            }
        }
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push((p.clone(), item.span()));
                collect_paths(item.get_ref(), &p, out);
            }
        }
        _ => {}
    }
}

/// Turns a TOML or serde error into one naming the key at its position.
fn toml_error(text: &str, e: &toml::de::Error) -> TariffError {
    let at = e.span().map(|s| s.start).unwrap_or(0);
    let (line, _) = line_column(text, at);
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        // Not even TOML (or a duplicate key): the parser's own error.
        Err(p) => {
            let at = p.span().map(|s| s.start).unwrap_or(at);
            let (line, column) = line_column(text, at);
            return TariffError::Syntax {
                line,
                column,
                message: p.message().to_string(),
            };
        }
    };
    let mut nodes = Vec::new();
    collect_paths(&DeValue::Table(doc.into_inner()), "", &mut nodes);
    // The deepest key or element whose source contains the position.
    let mut key = nodes
        .into_iter()
        .filter(|(_, span)| span.contains(&at))
        .max_by_key(|(p, _)| p.matches(['.', '[']).count())
        .map(|(p, _)| p)
        .unwrap_or_default();
    let mut message = e.message().to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        key = if key.is_empty() {
            field.to_string()
        } else {
            format!("{key}.{field}")
        };
        message = "required, missing".to_string();
    } else if message.contains("expected a sequence") {
        message.push_str(" (a list: [[table]] headers or [ ... ])");
    } else if message.contains("expected a string")
        && (key.ends_with("price") || key.ends_with("fee"))
    {
        message.push_str(" (amounts are strings such as \"1.50\", never floats)");
    }
    if key.is_empty() {
        key = "(top level)".to_string();
    }
    TariffError::Shape { key, line, message }
}

/// Quarter hours of the week a set of spans covers.
#[derive(Clone, PartialEq, Eq)]
struct WeekMask([bool; WEEK_QUARTERS]);

impl WeekMask {
    fn none() -> WeekMask {
        WeekMask([false; WEEK_QUARTERS])
    }

    fn all() -> WeekMask {
        WeekMask([true; WEEK_QUARTERS])
    }

    fn add(&mut self, spans: &[Span]) {
        for s in spans {
            let day = s.weekday.num_days_from_monday() as usize * QUARTERS_PER_DAY;
            let from = usize::from(s.from_min / QUARTER_MINUTES);
            let to = usize::from(s.to_min / QUARTER_MINUTES);
            for q in &mut self.0[day + from..day + to] {
                *q = true;
            }
        }
    }

    fn is_within(&self, other: &WeekMask) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| !a || *b)
    }

    fn union(&mut self, other: &WeekMask) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
    }
}

/// Sorts a zone's spans and merges those that overlap or touch on one
/// weekday, so that equal coverage has one representation.
fn normalize_spans(spans: &mut Vec<Span>) {
    spans.sort_by_key(|s| (s.weekday.num_days_from_monday(), s.from_min, s.to_min));
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans.drain(..) {
        match merged.last_mut() {
            Some(m) if m.weekday == s.weekday && s.from_min <= m.to_min => {
                m.to_min = m.to_min.max(s.to_min);
            }
            _ => merged.push(s),
        }
    }
    *spans = merged;
}

fn parse_zone(key: &str, z: &wire::Zone) -> Result<Vec<Span>, TariffError> {
    check_name(&format!("{key}.name"), &z.name)?;
    let days: Vec<Weekday> = match &z.days {
        None => WEEKDAYS.iter().map(|(_, d)| *d).collect(),
        Some(list) => {
            if list.is_empty() {
                return Err(bad(
                    format!("{key}.days"),
                    "an empty list matches no day; leave days out for every day",
                ));
            }
            let mut v = Vec::new();
            for (i, d) in list.iter().enumerate() {
                let day = WEEKDAYS
                    .iter()
                    .find(|(n, _)| *n == d.as_str())
                    .map(|(_, w)| *w)
                    .ok_or_else(|| {
                        bad(
                            format!("{key}.days[{i}]"),
                            format!("expected one of mon tue wed thu fri sat sun, got {d:?}"),
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
        return Err(bad(
            format!("{key}.to"),
            format!(
                "equals from ({}): an empty zone; \"00:00\" to \"24:00\" is the whole day",
                z.from
            ),
        ));
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
                to_min: DAY_MINUTES,
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
    Ok(spans)
}

fn parse_price(key: &str, s: &str) -> Result<Price, TariffError> {
    let price: Price = s.parse().map_err(|e| bad(key, format!("{e}")))?;
    if price.0 < 0 {
        return Err(bad(key, format!("must be 0 or more, got {price}")));
    }
    Ok(price)
}

fn parse_tiers(key: &str, t: &wire::Traffic, unit: Unit) -> Result<Vec<Tier>, TariffError> {
    match (&t.price, t.tier.is_empty()) {
        (Some(_), false) => Err(bad(
            format!("{key}.price"),
            "give either price or [[traffic.tier]] tables, not both",
        )),
        (None, true) => Err(bad(
            key,
            "no price: give price = \"...\" per unit or [[traffic.tier]] tables",
        )),
        (Some(p), true) => Ok(vec![Tier {
            from_units: 0,
            price: parse_price(&format!("{key}.price"), p)?,
        }]),
        (None, false) => {
            if t.tier.len() > MAX_TIERS {
                return Err(bad(
                    format!("{key}.tier"),
                    format!("{} tiers, at most {MAX_TIERS}", t.tier.len()),
                ));
            }
            let mut v: Vec<Tier> = Vec::new();
            for (j, tier) in t.tier.iter().enumerate() {
                let tkey = format!("{key}.tier[{j}]");
                match v.last() {
                    None if tier.from != 0 => {
                        return Err(bad(
                            format!("{tkey}.from"),
                            format!("the first tier must start at 0, got {}", tier.from),
                        ));
                    }
                    Some(prev) if tier.from <= prev.from_units => {
                        return Err(bad(
                            format!("{tkey}.from"),
                            format!(
                                "must be above the previous tier's from ({}), got {}",
                                prev.from_units, tier.from
                            ),
                        ));
                    }
                    _ => {}
                }
                if tier.from.checked_mul(unit.bytes()).is_none() {
                    return Err(bad(
                        format!("{tkey}.from"),
                        format!("{} {unit} is more bytes than can be counted", tier.from),
                    ));
                }
                v.push(Tier {
                    from_units: tier.from,
                    price: parse_price(&format!("{tkey}.price"), &tier.price)?,
                });
            }
            Ok(v)
        }
    }
}

impl Tariff {
    /// Parses and validates a tariff file.
    pub fn from_toml(text: &str) -> Result<Tariff, TariffError> {
        if text.len() > MAX_FILE_BYTES {
            return Err(bad(
                "file",
                format!("{} bytes, at most {MAX_FILE_BYTES}", text.len()),
            ));
        }
        let w: wire::File = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
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

        // Zones by name in file order; tables with one name are a union.
        if w.zone.len() > MAX_ZONE_TABLES {
            return Err(bad(
                "zone",
                format!(
                    "{} [[zone]] tables, at most {MAX_ZONE_TABLES}",
                    w.zone.len()
                ),
            ));
        }
        let mut defined: Vec<Zone> = Vec::new();
        for (i, z) in w.zone.iter().enumerate() {
            let spans = parse_zone(&format!("zone[{i}]"), z)?;
            match defined.iter_mut().find(|x| x.name == z.name) {
                Some(existing) => existing.spans.extend(spans),
                None => defined.push(Zone {
                    name: z.name.clone(),
                    spans,
                }),
            }
        }
        for z in &mut defined {
            normalize_spans(&mut z.spans);
        }

        if w.traffic.len() > MAX_RULES {
            return Err(bad(
                "traffic",
                format!("{} [[traffic]] rules, at most {MAX_RULES}", w.traffic.len()),
            ));
        }
        // Rules with zone indices into `defined` for now.
        let mut rules: Vec<TrafficRule> = Vec::new();
        let mut masks: Vec<WeekMask> = Vec::new();
        for (i, t) in w.traffic.iter().enumerate() {
            let key = format!("traffic[{i}]");
            check_name(&format!("{key}.class"), &t.class)?;
            let direction: DirectionRule = t
                .direction
                .parse()
                .map_err(|m: String| bad(format!("{key}.direction"), m))?;
            let mut zone_ix: Vec<usize> = Vec::new();
            if let Some(list) = &t.zones {
                if list.is_empty() {
                    return Err(bad(
                        format!("{key}.zones"),
                        "an empty list matches no time; leave zones out for any time",
                    ));
                }
                for (j, name) in list.iter().enumerate() {
                    let ix = defined
                        .iter()
                        .position(|z| &z.name == name)
                        .ok_or_else(|| {
                            bad(
                                format!("{key}.zones[{j}]"),
                                format!("no [[zone]] is named {name:?}"),
                            )
                        })?;
                    if !zone_ix.contains(&ix) {
                        zone_ix.push(ix);
                    }
                }
            }
            let tiers = parse_tiers(&key, t, unit)?;
            let included_units = t.included.unwrap_or(0);
            if included_units.checked_mul(unit.bytes()).is_none() {
                return Err(bad(
                    format!("{key}.included"),
                    format!("{included_units} {unit} is more bytes than can be counted"),
                ));
            }
            // The default name follows the zones as written.
            let name = match &t.name {
                Some(n) => n.clone(),
                None if zone_ix.is_empty() => t.class.clone(),
                None => format!(
                    "{}@{}",
                    t.class,
                    zone_ix
                        .iter()
                        .map(|&z| defined[z].name.as_str())
                        .collect::<Vec<_>>()
                        .join("+")
                ),
            };
            let name_key = format!("{key}.name");
            check_name(&name_key, &name)?;
            if name == crate::ledger::FEE_SERVICE || name.starts_with("free:") {
                return Err(bad(
                    name_key,
                    format!(
                        "{name:?} is reserved (\"{}\" is the monthly fee, \"free:<class>\" unpriced traffic)",
                        crate::ledger::FEE_SERVICE
                    ),
                ));
            }
            if let Some(j) = rules.iter().position(|r| r.name == name) {
                return Err(bad(
                    name_key,
                    format!(
                        "{name:?} is the name of traffic[{j}] too; rule names must be unique (give one a name = \"...\")"
                    ),
                ));
            }
            // A rule that can never match is a mistake: rules are tried in
            // order, so an earlier rule of the class covering all its
            // times takes all its traffic.
            let mut mask = WeekMask::none();
            if zone_ix.is_empty() {
                mask = WeekMask::all();
            } else {
                for &z in &zone_ix {
                    mask.add(&defined[z].spans);
                }
            }
            let mut earlier = WeekMask::none();
            let mut shadowing = Vec::new();
            for (j, r) in rules.iter().enumerate() {
                if r.class == t.class {
                    earlier.union(&masks[j]);
                    shadowing.push(format!("traffic[{j}] {:?}", r.name));
                }
            }
            if !shadowing.is_empty() && mask.is_within(&earlier) {
                return Err(bad(
                    key,
                    format!(
                        "never applies: the earlier rules for class {:?} ({}) take every time this rule covers. Rules are tried in order, so put the narrower rule first; a rule takes both directions of its class (direction only says which it prices)",
                        t.class,
                        shadowing.join(", ")
                    ),
                ));
            }
            masks.push(mask);
            rules.push(TrafficRule {
                name,
                class: t.class.clone(),
                direction,
                zones: zone_ix,
                included_units,
                tiers,
            });
        }

        // Keep the zones rules use, sorted by name, and renumber.
        let mut used: Vec<usize> = rules.iter().flat_map(|r| r.zones.clone()).collect();
        used.sort_by(|&a, &b| defined[a].name.cmp(&defined[b].name));
        used.dedup();
        let zones: Vec<Zone> = used.iter().map(|&z| defined[z].clone()).collect();
        for r in &mut rules {
            let mut ix: Vec<usize> = r
                .zones
                .iter()
                .filter_map(|z| used.iter().position(|u| u == z))
                .collect();
            ix.sort_unstable();
            r.zones = ix;
        }
        let rate_limit = match &w.rate_limit {
            None => None,
            Some(r) => {
                for (key, v) in [("down_kbit", r.down_kbit), ("up_kbit", r.up_kbit)] {
                    if let Some(v) = v
                        && !RATE_LIMIT_KBIT.contains(&v)
                    {
                        return Err(bad(
                            format!("rate_limit.{key}"),
                            format!(
                                "must be {}..={} kbit/s, got {v}",
                                RATE_LIMIT_KBIT.start(),
                                RATE_LIMIT_KBIT.end()
                            ),
                        ));
                    }
                }
                if r.down_kbit.is_none() && r.up_kbit.is_none() {
                    return Err(bad(
                        "rate_limit",
                        "names neither down_kbit nor up_kbit (leave the table out for no cap)",
                    ));
                }
                Some(RateLimit {
                    down_kbit: r.down_kbit,
                    up_kbit: r.up_kbit,
                })
            }
        };
        Ok(Tariff {
            unit,
            monthly_fee,
            zones,
            rules,
            rate_limit,
        })
    }

    /// A deterministic text of the tariff's meaning, itself a tariff file:
    /// `from_toml(canonical())` gives an equal tariff. Every key is
    /// written out (defaults too), zones as sorted non-wrapping spans
    /// grouped by time, a single tier from 0 as `price`.
    pub fn canonical(&self) -> String {
        let mut s = format!(
            "unit = \"{}\"\nmonthly_fee = \"{}\"\n",
            self.unit, self.monthly_fee
        );
        // Only when set: tariffs without a cap keep their earlier hashes.
        if let Some(r) = self.rate_limit {
            s.push_str("\n[rate_limit]\n");
            if let Some(d) = r.down_kbit {
                s.push_str(&format!("down_kbit = {d}\n"));
            }
            if let Some(u) = r.up_kbit {
                s.push_str(&format!("up_kbit = {u}\n"));
            }
        }
        for z in &self.zones {
            // (from, to) -> days, Monday first.
            let mut groups: Vec<((u16, u16), Vec<Weekday>)> = Vec::new();
            for sp in &z.spans {
                let k = (sp.from_min, sp.to_min);
                match groups.iter_mut().find(|(g, _)| *g == k) {
                    Some((_, days)) => days.push(sp.weekday),
                    None => groups.push((k, vec![sp.weekday])),
                }
            }
            groups.sort_by_key(|((from, to), days)| {
                (*from, *to, days.first().map(|d| d.num_days_from_monday()))
            });
            for ((from, to), days) in groups {
                s.push_str(&format!("\n[[zone]]\nname = \"{}\"\n", z.name));
                if days.len() < 7 {
                    let names: Vec<String> = days
                        .iter()
                        .map(|d| format!("\"{}\"", weekday_name(*d)))
                        .collect();
                    s.push_str(&format!("days = [{}]\n", names.join(", ")));
                }
                s.push_str(&format!(
                    "from = \"{}\"\nto = \"{}\"\n",
                    fmt_clock(from),
                    fmt_clock(to)
                ));
            }
        }
        for r in &self.rules {
            s.push_str(&format!(
                "\n[[traffic]]\nname = \"{}\"\nclass = \"{}\"\ndirection = \"{}\"\n",
                r.name, r.class, r.direction
            ));
            if !r.zones.is_empty() {
                let names: Vec<String> = r
                    .zones
                    .iter()
                    .filter_map(|&z| self.zones.get(z))
                    .map(|z| format!("\"{}\"", z.name))
                    .collect();
                s.push_str(&format!("zones = [{}]\n", names.join(", ")));
            }
            s.push_str(&format!("included = {}\n", r.included_units));
            match r.tiers.as_slice() {
                [only] if only.from_units == 0 => {
                    s.push_str(&format!("price = \"{}\"\n", only.price));
                }
                tiers => {
                    for t in tiers {
                        s.push_str(&format!(
                            "[[traffic.tier]]\nfrom = {}\nprice = \"{}\"\n",
                            t.from_units, t.price
                        ));
                    }
                }
            }
        }
        s
    }

    /// Lower-case hex SHA-256 of [`Tariff::canonical`].
    pub fn sha256(&self) -> String {
        Sha256::digest(self.canonical().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The first rule whose class matches and whose zones (if any) contain
    /// the local weekday and minute of the day (0..1440) of a bucket's
    /// start.
    pub fn rule_for(&self, class: &str, weekday: Weekday, minute_of_day: u16) -> Option<usize> {
        self.rules.iter().position(|r| {
            r.class == class
                && (r.zones.is_empty()
                    || r.zones.iter().any(|&z| {
                        self.zones
                            .get(z)
                            .is_some_and(|z| z.contains(weekday, minute_of_day))
                    }))
        })
    }

    pub fn rule_by_name(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Weekday::*;

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
[[traffic]]
class = "peering"
direction = "in"
price = "0.000123"
"#;

    fn parse(text: &str) -> Tariff {
        match Tariff::from_toml(text) {
            Ok(t) => t,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    #[test]
    fn a_full_tariff_parses() {
        let t = parse(FULL);
        assert_eq!(t.unit, Unit::MiB);
        assert_eq!(t.monthly_fee, Money(30_000));
        let names: Vec<&str> = t.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["paid@night+weekend", "paid", "peering"]);
        assert_eq!(
            t.rules[0].tiers,
            [Tier {
                from_units: 0,
                price: Price(0)
            }]
        );
        assert_eq!(t.rules[1].direction, DirectionRule::Max);
        assert_eq!(t.rules[1].included_units, 100);
        assert_eq!(
            t.rules[1].tiers,
            [
                Tier {
                    from_units: 0,
                    price: Price(1_500_000)
                },
                Tier {
                    from_units: 2000,
                    price: Price(750_000)
                },
            ]
        );
        assert_eq!(t.rules[2].tiers[0].price, Price(123));
        // Night every day: 23:00-24:00 and 00:00-07:00 of each weekday.
        let night = &t.zones[0];
        assert_eq!(night.name, "night");
        assert_eq!(night.spans.len(), 14);
        assert_eq!(t.rule_by_name("paid"), Some(1));
        assert_eq!(t.rule_by_name("nope"), None);
    }

    #[test]
    fn defaults_apply() {
        let t = parse(
            "unit = \"GB\"\n[[traffic]]\nclass = \"paid\"\ndirection = \"in\"\nprice = \"1\"\n",
        );
        assert_eq!(t.monthly_fee, Money::ZERO);
        assert_eq!(t.rules[0].name, "paid");
        assert_eq!(t.rules[0].included_units, 0);
        assert!(t.rules[0].zones.is_empty());
        assert!(t.zones.is_empty());
        let flat = parse("unit = \"GB\"\nmonthly_fee = \"750\"");
        assert_eq!(flat.monthly_fee, Money(75_000));
        assert!(flat.rules.is_empty());
    }

    #[test]
    fn rate_limits_parse_and_keep_their_place_in_the_hash() {
        let plain = parse(r#"unit = "MB""#);
        assert_eq!(plain.rate_limit, None);
        assert!(!plain.canonical().contains("rate_limit"));
        let capped = parse("unit = \"MB\"\n[rate_limit]\ndown_kbit = 20000\n");
        assert_eq!(
            capped.rate_limit,
            Some(RateLimit {
                down_kbit: Some(20_000),
                up_kbit: None
            })
        );
        assert_eq!(parse(&capped.canonical()), capped);
        assert_ne!(capped.sha256(), plain.sha256());
        let both = parse("unit = \"MB\"\n[rate_limit]\nup_kbit = 64\ndown_kbit = 100000000\n");
        assert_eq!(parse(&both.canonical()), both);
        assert!(
            both.canonical()
                .contains("[rate_limit]\ndown_kbit = 100000000\nup_kbit = 64\n")
        );
    }

    #[test]
    fn canonical_round_trips_and_ignores_form() {
        for text in [FULL, "unit = \"MB\"\n"] {
            let t = parse(text);
            let c = t.canonical();
            let again = parse(&c);
            assert_eq!(again, t, "{c}");
            assert_eq!(again.canonical(), c);
            assert_eq!(again.sha256(), t.sha256());
        }
        // The same meaning written differently: key order, comments, zone
        // order, days spelt out, a wrap written as two zones, a flat price
        // as one tier, defaults written, an unused zone.
        let a = parse(
            r#"
unit = "MB"
[[zone]]
name = "night"
from = "22:00"
to = "06:00"
[[zone]]
name = "lunch"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "12:00"
to = "13:00"
[[traffic]]
class = "paid"
direction = "in"
zones = ["night", "lunch"]
name = "cheap"
price = "0.5"
[[traffic]]
class = "paid"
direction = "in"
price = "1"
"#,
        );
        let b = parse(
            r#"
# the same, rearranged
monthly_fee = "0.00"
unit = "MB"
[[zone]]
name = "unused"
from = "01:00"
to = "02:00"
[[zone]]
name = "lunch"
days = ["fri", "thu", "wed", "tue", "mon", "mon"]
from = "12:00"
to = "12:30"
[[zone]]
name = "lunch"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "12:15"
to = "13:00"
[[zone]]
name = "night"
from = "00:00"
to = "06:00"
[[zone]]
name = "night"
days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
from = "22:00"
to = "24:00"
[[traffic]]
name = "cheap"
direction = "in"
class = "paid"
zones = ["lunch", "night", "lunch"]
included = 0
[[traffic.tier]]
from = 0
price = "0.500000"
[[traffic]]
class = "paid"
price = "1.00"
direction = "in"
"#,
        );
        assert_eq!(a, b);
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.sha256().len(), 64);
        // A different meaning, a different text.
        let c = parse(&a.canonical().replace("price = \"1\"", "price = \"1.01\""));
        assert_ne!(c.sha256(), a.sha256());
    }

    #[test]
    fn rules_match_in_order_with_zones_and_midnight_wrap() {
        let t = parse(FULL);
        for (day, minute, want) in [
            (Mon, 23 * 60, Some(0)),      // night starts
            (Mon, 22 * 60 + 59, Some(1)), // not yet
            (Tue, 6 * 60 + 45, Some(0)),  // wrapped part of Monday's night
            (Tue, 7 * 60, Some(1)),       // night over: the second rule
            (Mon, 0, Some(0)),            // Sunday's night, past midnight
            (Sat, 12 * 60, Some(0)),      // weekend
            (Sun, 23 * 60 + 59, Some(0)),
            (Fri, 22 * 60 + 45, Some(1)),
        ] {
            assert_eq!(t.rule_for("paid", day, minute), want, "{day:?} {minute}");
        }
        assert_eq!(t.rule_for("peering", Sat, 0), Some(2));
        assert_eq!(t.rule_for("local", Mon, 0), None);
    }

    #[test]
    fn days_name_the_day_a_wrapping_zone_starts() {
        let t = parse(
            r#"
unit = "MB"
[[zone]]
name = "fri-night"
days = ["fri"]
from = "22:00"
to = "06:00"
[[zone]]
name = "sun-night"
days = ["sun"]
from = "23:30"
to = "00:45"
[[traffic]]
name = "free"
class = "paid"
direction = "in"
zones = ["fri-night", "sun-night"]
price = "0"
[[traffic]]
class = "paid"
direction = "in"
price = "1"
"#,
        );
        for (day, minute, want) in [
            (Fri, 22 * 60, Some(0)),
            (Fri, 21 * 60 + 45, Some(1)),
            (Fri, 3 * 60, Some(1)), // Thursday's night: not in the zone
            (Sat, 3 * 60, Some(0)), // Friday's night, after midnight
            (Sat, 5 * 60 + 59, Some(0)),
            (Sat, 6 * 60, Some(1)),
            (Sat, 22 * 60, Some(1)),
            (Sun, 23 * 60 + 30, Some(0)),
            (Mon, 0, Some(0)), // Sunday's night wraps into Monday
            (Mon, 44, Some(0)),
            (Mon, 45, Some(1)),
            (Sun, 30, Some(1)),
        ] {
            assert_eq!(t.rule_for("paid", day, minute), want, "{day:?} {minute}");
        }
    }

    /// Each bad file and the key its error must name. "; " separates
    /// lines (see [`lines`]).
    const BAD: &[(&str, &str)] = &[
        (r#""#, "unit"),
        (r#"unit = "KB""#, "unit"),
        (r#"unit = "mb""#, "unit"),
        (r#"unit = 5"#, "unit"),
        (r#"unit = "MB"; monthly_fee = "-1""#, "monthly_fee"),
        (r#"unit = "MB"; monthly_fee = "1.001""#, "monthly_fee"),
        (r#"unit = "MB"; [rate_limit]"#, "rate_limit"),
        (
            r#"unit = "MB"; [rate_limit]; down_kbit = 10"#,
            "rate_limit.down_kbit",
        ),
        (
            r#"unit = "MB"; [rate_limit]; up_kbit = 100000001"#,
            "rate_limit.up_kbit",
        ),
        (
            r#"unit = "MB"; [rate_limit]; down_kbit = -5"#,
            "rate_limit.down_kbit",
        ),
        (
            r#"unit = "MB"; [rate_limit]; down_mbit = 5"#,
            "rate_limit.down_mbit",
        ),
        (r#"unit = "MB"; monthly_fee = 500.0"#, "monthly_fee"),
        (r#"unit = "MB"; bogus = 1"#, "bogus"),
        (r#"unit = "MB"; [traffic]; class = "p""#, "traffic"),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "01:00""#,
            "zone[0].to",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "01:10"; to = "02:00""#,
            "zone[0].from",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "24:00"; to = "02:00""#,
            "zone[0].from",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "+1:00"; to = "02:00""#,
            "zone[0].from",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "01:00"; to = "24:15""#,
            "zone[0].to",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "01:00"; to = "01:00""#,
            "zone[0].to",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; days = ["mon", "mo"]; from = "01:00"; to = "02:00""#,
            "zone[0].days[1]",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; days = []; from = "01:00"; to = "02:00""#,
            "zone[0].days",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "a b"; from = "01:00"; to = "02:00""#,
            "zone[0].name",
        ),
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "01:00"; to = "02:00"; day = ["mon"]"#,
            "zone[0].day",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "up"; price = "1""#,
            "traffic[0].direction",
        ),
        (
            r#"unit = "MB"; [[traffic]]; direction = "in"; price = "1""#,
            "traffic[0].class",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in""#,
            "traffic[0]",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = 1.5"#,
            "traffic[0].price",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "-1""#,
            "traffic[0].price",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "0.0000001""#,
            "traffic[0].price",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "1"; included = -5"#,
            "traffic[0].included",
        ),
        (
            r#"unit = "GiB"; [[traffic]]; class = "p"; direction = "in"; price = "1"; included = 9000000000000"#,
            "traffic[0].included",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; zones = ["x"]; price = "1""#,
            "traffic[0].zones[0]",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; zones = []; price = "1""#,
            "traffic[0].zones",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "1"; [[traffic.tier]]; from = 0; price = "1""#,
            "traffic[0].price",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; [[traffic.tier]]; from = 5; price = "1""#,
            "traffic[0].tier[0].from",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; [[traffic.tier]]; from = 0; price = "1"; [[traffic.tier]]; from = 0; price = "2""#,
            "traffic[0].tier[1].from",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; [[traffic.tier]]; from = 0; price = "x""#,
            "traffic[0].tier[0].price",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "1"; [[traffic]]; class = "q"; direction = "in"; [[traffic.tier]]; from = 0; price = "1"; [[traffic.tier]]; form = 7; price = "1""#,
            "traffic[1].tier[1].form",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "1"; [[traffic]]; class = "q"; direction = "in"; [[traffic.tier]]; price = "1""#,
            "traffic[1].tier[0].from",
        ),
        (
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "1"; [[traffic]]; class = "p"; name = "p"; direction = "out"; price = "1""#,
            "traffic[1].name",
        ),
        (
            r#"unit = "MB"; [[traffic]]; name = "fee"; class = "p"; direction = "in"; price = "1""#,
            "traffic[0].name",
        ),
        (
            r#"unit = "MB"; [[traffic]]; name = "free:p"; class = "p"; direction = "in"; price = "1""#,
            "traffic[0].name",
        ),
        // The zoned rule comes after the rule for any time: never used.
        (
            r#"unit = "MB"; [[zone]]; name = "n"; from = "01:00"; to = "02:00"; [[traffic]]; class = "p"; direction = "in"; price = "1"; [[traffic]]; class = "p"; direction = "in"; zones = ["n"]; price = "0""#,
            "traffic[1]",
        ),
        (
            r#"unit = "MB"; traffic = [{ class = "p", direction = "in", price = "1", tier = [{ from = 0, price = "1" }, { from = 1, prize = "2" }] }]"#,
            "traffic[0].tier[1].prize",
        ),
    ];

    /// A file from one line: "; " separates its lines.
    fn lines(s: &str) -> String {
        s.replace("; ", "\n")
    }

    #[test]
    fn bad_files_name_the_key() {
        for (text, key) in BAD {
            let text = lines(text);
            let e = Tariff::from_toml(&text).expect_err(&text);
            assert_eq!(e.key(), Some(*key), "{text:?}: {e}");
            assert!(e.to_string().starts_with(key), "{e}");
        }
        // Shape errors also say where.
        let e = Tariff::from_toml(&lines(
            r#"unit = "MB"; ; [[zone]]; name = "n"; from = 1; to = "02:00""#,
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "zone[0].from (line 5): invalid type: integer `1`, expected a string"
        );
        let e = Tariff::from_toml(&lines(
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; [[traffic.tier]]; from = 5; price = "1""#,
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "traffic[0].tier[0].from: the first tier must start at 0, got 5"
        );
    }

    /// The errors docs/tariffs.md shows are the real ones.
    #[test]
    fn the_docs_show_real_errors() {
        let doc = include_str!("../../docs/tariffs.md");
        for text in [
            r#"unit = "MB"; [[traffic]]; class = "p"; direction = "in"; price = "1"; [[traffic]]; class = "q"; direction = "in"; [[traffic.tier]]; from = 5; price = "1""#,
            r#"unit = "MB"; [[zone]]; name = "n"; from = "01:10"; to = "02:00""#,
            r#"unit = "MB"; [[traffic]]; class = "paid"; direction = "in"; zones = ["nite"]; price = "1""#,
            r#"unit = "MB"; [[traffic]]; class = "paid"; direction = "in"; pricee = "1""#,
            r#"unit = "MB"; monthly_fee = 500"#,
            r#"unit = "MB"; ; [[traffic]; "#,
        ] {
            let e = Tariff::from_toml(&lines(text)).unwrap_err().to_string();
            assert!(
                doc.contains(&format!("\n{e}\n")),
                "docs/tariffs.md lacks {e:?}"
            );
        }
        let e = Tariff::from_toml(&lines(
            r#"unit = "MB"; [[traffic]]; class = "paid"; direction = "in"; price = "1"; [[traffic]]; name = "up"; class = "paid"; direction = "out"; price = "1""#,
        ))
        .unwrap_err()
        .to_string();
        let shown = "traffic[1]: never applies: the earlier rules for class \"paid\"\n  (traffic[0] \"paid\") take every time this rule covers.";
        assert!(e.starts_with(&shown.replace("\n  ", " ")), "{e}");
        assert!(doc.contains(shown));
    }

    #[test]
    fn not_toml_says_where() {
        for (text, line, column) in [
            ("unit = \"MB\n", 1, 11),
            ("unit = \"MB\"\nunit = \"MB\"", 2, 1),
            ("unit = \"MB\"\n[[traffic]\n", 2, 11),
        ] {
            let e = Tariff::from_toml(text).expect_err(text);
            assert_eq!(e.key(), None, "{e}");
            match &e {
                TariffError::Syntax {
                    line: l, column: c, ..
                } => {
                    assert_eq!((*l, *c), (line, column), "{text:?}: {e}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_hold() {
        let big = format!("unit = \"MB\"\n#{}\n", "x".repeat(MAX_FILE_BYTES));
        assert_eq!(Tariff::from_toml(&big).unwrap_err().key(), Some("file"));
        let mut many = String::from("unit = \"MB\"\n");
        for i in 0..=MAX_RULES {
            many.push_str(&format!(
                "[[traffic]]\nclass = \"c{i}\"\ndirection = \"in\"\nprice = \"1\"\n"
            ));
        }
        assert_eq!(Tariff::from_toml(&many).unwrap_err().key(), Some("traffic"));
    }

    /// The files shipped in examples/tariffs/ and the example in
    /// docs/tariffs.md parse and round-trip.
    #[test]
    fn shipped_examples_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = root.join("examples/tariffs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let t = parse(&std::fs::read_to_string(&path).unwrap());
                assert_eq!(parse(&t.canonical()), t, "{}", path.display());
                n += 1;
            }
        }
        assert!(n >= 3, "{n} examples in {}", dir.display());
        let doc = std::fs::read_to_string(root.join("docs/tariffs.md")).unwrap();
        let mut blocks = Vec::new();
        for block in doc.split("```toml\n").skip(1) {
            blocks.push(parse(block.split("```").next().unwrap_or_default()));
        }
        assert!(
            blocks.len() >= 2,
            "{} toml blocks in docs/tariffs.md",
            blocks.len()
        );
        // The canonical form the page shows is the worked example's.
        let worked = blocks.last().unwrap().canonical();
        assert!(
            doc.contains(&format!("```text\n{worked}```")),
            "docs/tariffs.md should show the canonical form:\n{worked}"
        );
    }

    #[test]
    fn units_and_directions_spell_back() {
        for u in [Unit::MB, Unit::MiB, Unit::GB, Unit::GiB] {
            assert_eq!(u.name().parse::<Unit>(), Ok(u));
            assert_eq!(u.to_string(), u.name());
        }
        assert_eq!(Unit::MiB.bytes(), 1_048_576);
        assert_eq!(Unit::GiB.bytes(), 1_073_741_824);
        for d in [
            DirectionRule::In,
            DirectionRule::Out,
            DirectionRule::Sum,
            DirectionRule::Max,
        ] {
            assert_eq!(d.name().parse::<DirectionRule>(), Ok(d));
        }
    }
}
