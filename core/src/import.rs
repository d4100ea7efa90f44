//! Payment registers from banks and payment gateways (CSV), and times as
//! operators write them.
//!
//! Layout (docs/payments-import.md): a header line naming the columns, in
//! any order; `account`, `amount` and `id` are required, `source`, `date`
//! and `comment` optional. Fields may be quoted. Every line is checked
//! before anything is posted: the first bad line is named and nothing is
//! imported.

use chrono::{DateTime, NaiveDateTime, TimeZone};

use crate::CoreError;
use crate::money::Money;
use crate::ops::Payment;

/// Largest register accepted in one import.
pub const MAX_IMPORT_LINES: usize = 100_000;

/// Parses `2026-11-22`, `2026-11-22 05:00[:00]` (wall time in `tz`),
/// RFC 3339 (`2026-11-22T05:00:00Z`, `+03:00`) or epoch milliseconds.
pub fn parse_time_in(s: &str, tz: chrono_tz::Tz) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            format!(
                "expected a time like 2026-11-22, 2026-11-22 05:00 (in {tz}), 2026-11-22T05:00:00Z or epoch ms, got {s:?}"
            )
        })?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("{s:?} does not exist in {tz} (a DST gap)"))
}

/// Parses a payment register. `file` names it in errors; payments without
/// a `source` column get `default_source`; `why` is their reason (the
/// `comment` column, when present and not empty, is appended).
pub fn parse_payments_csv(
    file: &str,
    text: &str,
    default_source: &str,
    tz: chrono_tz::Tz,
    why: &str,
) -> Result<Vec<Payment>, CoreError> {
    let bad = |line: u64, msg: String| {
        CoreError::Invalid(format!("{file}:{line}: {msg}; nothing imported"))
    };
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = rd
        .headers()
        .map_err(|e| bad(1, format!("unreadable header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(c_account), Some(c_amount), Some(c_id)) = (col("account"), col("amount"), col("id"))
    else {
        return Err(bad(
            1,
            format!(
                "the header must name the columns account, amount and id (optional: source, date, comment); got {:?}",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    };
    for (i, h) in headers.iter().enumerate() {
        if !["account", "amount", "id", "source", "date", "comment"]
            .contains(&h.to_ascii_lowercase().as_str())
        {
            return Err(bad(1, format!("unknown column {h:?} (column {})", i + 1)));
        }
    }
    let (c_source, c_date, c_comment) = (col("source"), col("date"), col("comment"));
    let mut out = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            bad(line, format!("{e}"))
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if out.len() >= MAX_IMPORT_LINES {
            return Err(bad(
                line,
                format!("more than {MAX_IMPORT_LINES} payments in one file; split it"),
            ));
        }
        let get = |c: usize| rec.get(c).unwrap_or("");
        let account = get(c_account).to_string();
        if account.is_empty() {
            return Err(bad(line, "empty account".into()));
        }
        let amount: Money = get(c_amount)
            .parse()
            .map_err(|e| bad(line, format!("amount: {e}")))?;
        if amount.0 <= 0 {
            return Err(bad(line, format!("amount must be positive, got {amount}")));
        }
        let ext_id = get(c_id).to_string();
        if ext_id.is_empty() {
            return Err(bad(
                line,
                "empty id (the payment system's transaction id)".into(),
            ));
        }
        let source = c_source
            .map(get)
            .filter(|s| !s.is_empty())
            .unwrap_or(default_source)
            .to_string();
        if let Some(prev) = ids.insert((source.clone(), ext_id.clone()), line) {
            // The same id twice in one file is fine if identical (ops.rs
            // posts it once); flag differing copies here with both lines.
            if let Some(p) = out
                .iter()
                .find(|p: &&Payment| p.source == source && p.ext_id == ext_id)
                && (p.account != account || p.amount != amount)
            {
                return Err(bad(
                    line,
                    format!("id {ext_id} appears on line {prev} with another account or amount"),
                ));
            }
        }
        let at_ms = match c_date.map(get).filter(|s| !s.is_empty()) {
            Some(d) => Some(parse_time_in(d, tz).map_err(|e| bad(line, format!("date: {e}")))?),
            None => None,
        };
        let mut reason = why.to_string();
        if let Some(c) = c_comment.map(get).filter(|s| !s.is_empty()) {
            reason = format!("{reason}: {c}");
        }
        out.push(Payment {
            account,
            amount,
            ext_id,
            source,
            at_ms,
            why: reason,
            line: Some(line as usize),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_register_parses_with_quotes_and_any_column_order() {
        let text = "id,amount,account,date,comment\n\"tx-1\",100.50,1001,2026-10-05,\"first, with comma\"\ntx-2,7,1002,,\n";
        let v = parse_payments_csv(
            "r.csv",
            text,
            "bank",
            chrono_tz::Europe::Moscow,
            "import r.csv",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].amount, Money(10_050));
        assert_eq!(v[0].why, "import r.csv: first, with comma");
        assert_eq!(v[0].at_ms, Some(1_791_147_600_000));
        assert_eq!(v[0].line, Some(2));
        assert_eq!(v[1].source, "bank");
        assert_eq!(v[1].at_ms, None);
    }

    #[test]
    fn a_bad_line_is_named() {
        for (text, line, what) in [
            (
                "account,amount,id\n1001,10,a\n1002,-5,b\n",
                "r.csv:3",
                "positive",
            ),
            ("account,amount,id\n1001,10.001,a\n", "r.csv:2", "amount"),
            (
                "account,amount,id\n1001,10,a\n1001,10\n",
                "r.csv:3",
                "fields",
            ),
            ("account,amount\n1001,10\n", "r.csv:1", "header"),
            (
                "account,amount,id,bank\n1001,10,a,x\n",
                "r.csv:1",
                "unknown column",
            ),
            (
                "account,amount,id,date\n1001,10,a,yesterday\n",
                "r.csv:2",
                "date",
            ),
            (
                "account,amount,id\n1001,10,a\n1002,10,a\n",
                "r.csv:3",
                "line 2",
            ),
            ("account,amount,id\n,10,a\n", "r.csv:2", "empty account"),
        ] {
            let e = parse_payments_csv("r.csv", text, "bank", chrono_tz::UTC, "x")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(line) && e.contains(what) && e.contains("nothing imported"),
                "{text:?}: {e}"
            );
        }
    }
}
