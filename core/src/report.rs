//! Operator reports over the billing database (read-only; they never block
//! the core). Every query is driven by an index: accounts by number,
//! entries by (account, time), accruals by account or period, the usage
//! mirror by (account, bucket).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::CoreError;
use crate::cycle::{FREE_PREFIX, standings};
use crate::money::Money;
use crate::ops::account_id;
use crate::rating;
use crate::store::{Billing, account_book};
use crate::tariff::Tariff;

#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub number: String,
    pub subscriber_id: i64,
    pub subscriber: String,
    pub payer: Option<String>,
    pub policy: String,
    pub credit_limit: Money,
    pub balance: Money,
    pub accrued: Money,
    pub promised: Money,
    pub available: Money,
    pub state: String,
    pub since_ms: Option<i64>,
    pub tariff: Option<String>,
    pub logins: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryRow {
    pub id: i64,
    pub ts_ms: i64,
    pub kind: String,
    pub account: Option<String>,
    pub amount: Money,
    /// Signed effect on the book the report is about.
    pub effect: Money,
    pub service: Option<String>,
    pub day: Option<String>,
    pub ext_id: Option<String>,
    pub who: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub account: String,
    pub book: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub opening: Money,
    pub entries: Vec<EntryRow>,
    pub closing: Money,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvoiceLine {
    pub service: String,
    pub class: String,
    pub tariff: String,
    pub version: i64,
    pub in_bytes: i64,
    pub out_bytes: i64,
    pub days: i64,
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize)]
pub struct Invoice {
    pub account: String,
    pub subscriber: String,
    pub period: String,
    pub opening: Money,
    pub lines: Vec<InvoiceLine>,
    pub charges: Money,
    pub payments: Money,
    pub other: Money,
    pub closing: Money,
    /// Charged for the period but not yet posted (the period is still open).
    pub accrued: Money,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    pub day: String,
    pub service: String,
    pub class: String,
    pub in_bytes: i64,
    pub out_bytes: i64,
    pub charged: Money,
}

#[derive(Debug, Clone, Serialize)]
pub struct DebtorRow {
    pub account: String,
    pub subscriber: String,
    pub balance: Money,
    pub accrued: Money,
    pub available: Money,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevenueRow {
    pub book: String,
    pub kind: String,
    pub entries: i64,
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockedRow {
    pub account: String,
    pub state: String,
    pub since_ms: i64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportRow {
    pub entry: i64,
    pub date: String,
    pub account: String,
    pub subscriber: String,
    pub kind: String,
    pub service: String,
    pub amount: Money,
    pub ext_id: String,
    pub why: String,
}

fn book_effect(book: &str, debit: &str, credit: &str, amount: i64) -> i64 {
    if credit == book {
        amount
    } else if debit == book {
        -amount
    } else {
        0
    }
}

impl Billing {
    fn payer_book(&self, number: &str) -> Result<(i64, String), CoreError> {
        let id = account_id(&self.conn, number)?;
        let payer = crate::ops::payer_of(&self.conn, id)?;
        Ok((id, account_book(payer)))
    }

    pub fn account_status(&self, number: &str, now_ms: i64) -> Result<AccountStatus, CoreError> {
        let e = CoreError::from_sql;
        let id = account_id(&self.conn, number)?;
        let (sub_id, sub, payer, policy, limit): (i64, String, Option<String>, String, i64) = self
            .conn
            .query_row(
                "SELECT s.id, s.name, p.number, a.policy, a.credit_limit FROM accounts a
                 JOIN subscribers s ON s.id = a.subscriber_id
                 LEFT JOIN accounts p ON p.id = a.payer_id WHERE a.id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(e)?;
        let s = standings(&self.conn, now_ms, Some(id))?
            .into_iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, _, s)| s)
            .ok_or_else(|| CoreError::NotFound(format!("unknown account {number:?}")))?;
        let (state, since): (Option<String>, Option<i64>) = self
            .conn
            .query_row(
                "SELECT state, since_ms FROM access WHERE account_id = ?1",
                params![id],
                |r| Ok((Some(r.get(0)?), Some(r.get(1)?))),
            )
            .optional()
            .map_err(e)?
            .unwrap_or((None, None));
        let tariff: Option<String> = self
            .conn
            .query_row(
                "SELECT t.name FROM account_tariffs x JOIN tariffs t ON t.id = x.tariff_id
                 WHERE x.account_id = ?1 AND x.from_ms <= ?2 AND (x.to_ms IS NULL OR ?2 < x.to_ms)",
                params![id, now_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        let logins = self
            .conn
            .prepare("SELECT login FROM logins WHERE account_id = ?1 ORDER BY login")
            .map_err(e)?
            .query_map(params![id], |r| r.get(0))
            .map_err(e)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(e)?;
        Ok(AccountStatus {
            number: number.to_string(),
            subscriber_id: sub_id,
            subscriber: sub,
            payer,
            policy,
            credit_limit: Money(limit),
            balance: s.balance,
            accrued: s.accrued,
            promised: s.promised,
            available: s.available(),
            state: state
                .unwrap_or_else(|| format!("{} (not yet decided by a cycle)", s.decide().as_str())),
            since_ms: since,
            tariff,
            logins,
        })
    }

    /// Opening balance, every entry of the account's book in
    /// `[from_ms, to_ms)` (by value time), closing balance.
    pub fn statement(
        &self,
        number: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Statement, CoreError> {
        let e = CoreError::from_sql;
        let (_, book) = self.payer_book(number)?;
        // The book's entries all concern the payer or an account it pays
        // for: found through the (account, time) index.
        let payer = book
            .trim_start_matches("acct:")
            .parse::<i64>()
            .unwrap_or(-1);
        let opening: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(sum(CASE WHEN credit = ?1 THEN amount WHEN debit = ?1 THEN -amount ELSE 0 END), 0)
                 FROM entries
                 WHERE account_id IN (SELECT id FROM accounts WHERE id = ?3 OR payer_id = ?3) AND ts_ms < ?2",
                params![book, from_ms, payer],
                |r| r.get(0),
            )
            .map_err(e)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT e.id, e.ts_ms, e.kind, a.number, e.amount, e.debit, e.credit, e.service, e.day, e.ext_id, e.who, e.why
                 FROM entries e LEFT JOIN accounts a ON a.id = e.account_id
                 WHERE e.account_id IN (SELECT id FROM accounts WHERE id = ?4 OR payer_id = ?4)
                   AND (e.credit = ?1 OR e.debit = ?1) AND e.ts_ms >= ?2 AND e.ts_ms < ?3
                 ORDER BY e.ts_ms, e.id",
            )
            .map_err(e)?;
        let entries = st
            .query_map(params![book, from_ms, to_ms, payer], |r| {
                let amount: i64 = r.get(4)?;
                let debit: String = r.get(5)?;
                let credit: String = r.get(6)?;
                Ok(EntryRow {
                    id: r.get(0)?,
                    ts_ms: r.get(1)?,
                    kind: r.get(2)?,
                    account: r.get(3)?,
                    amount: Money(amount),
                    effect: Money(book_effect(&book, &debit, &credit, amount)),
                    service: r.get(7)?,
                    day: r.get(8)?,
                    ext_id: r.get(9)?,
                    who: r.get(10)?,
                    why: r.get(11)?,
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        let closing = opening + entries.iter().map(|x| x.effect.0).sum::<i64>();
        Ok(Statement {
            account: number.into(),
            book,
            from_ms,
            to_ms,
            opening: Money(opening),
            entries,
            closing: Money(closing),
        })
    }

    /// The month's bill: what each service charged for the period (posted
    /// or still accrued), payments and other entries dated in the period,
    /// opening and closing balance.
    pub fn invoice(&self, number: &str, period: &str) -> Result<Invoice, CoreError> {
        let e = CoreError::from_sql;
        let p = rating::period_by_label(self.timezone, period)
            .map_err(|x| CoreError::Invalid(x.to_string()))?;
        let id = account_id(&self.conn, number)?;
        let subscriber: String = self
            .conn
            .query_row(
                "SELECT s.name FROM accounts a JOIN subscribers s ON s.id = a.subscriber_id WHERE a.id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(e)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT a.service, a.class, t.name, v.version, a.in_bytes, a.out_bytes, a.days, a.charged, a.posted
                 FROM accruals a JOIN tariff_versions v ON v.id = a.version_id JOIN tariffs t ON t.id = v.tariff_id
                 WHERE a.account_id = ?1 AND a.period_start_ms = ?2 ORDER BY v.effective_ms, a.service",
            )
            .map_err(e)?;
        let mut accrued = 0i64;
        let lines = st
            .query_map(params![id, p.start_ms], |r| {
                Ok((
                    InvoiceLine {
                        service: r.get(0)?,
                        class: r.get(1)?,
                        tariff: r.get(2)?,
                        version: r.get(3)?,
                        in_bytes: r.get(4)?,
                        out_bytes: r.get(5)?,
                        days: r.get(6)?,
                        amount: Money(r.get(7)?),
                    },
                    r.get::<_, i64>(7)? - r.get::<_, i64>(8)?,
                ))
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?
            .into_iter()
            .map(|(l, a)| {
                accrued += a;
                l
            })
            .collect::<Vec<_>>();
        let charges = lines.iter().map(|l| l.amount.0).sum::<i64>();
        let st = self.statement(number, p.start_ms, p.end_ms)?;
        let payments = st
            .entries
            .iter()
            .filter(|x| x.kind == crate::ledger::PAYMENT)
            .map(|x| x.effect.0)
            .sum::<i64>();
        let other = st
            .entries
            .iter()
            .filter(|x| {
                ![
                    crate::ledger::PAYMENT,
                    crate::ledger::CHARGE,
                    crate::ledger::FEE,
                    crate::ledger::ADJUSTMENT,
                ]
                .contains(&x.kind.as_str())
            })
            .map(|x| x.effect.0)
            .sum::<i64>();
        Ok(Invoice {
            account: number.into(),
            subscriber,
            period: p.label,
            opening: st.opening,
            lines,
            charges: Money(charges),
            payments: Money(payments),
            other: Money(other),
            closing: Money(st.opening.0 + payments + other - charges),
            accrued: Money(accrued),
        })
    }

    /// Usage per day with what it was charged ("why was I charged so
    /// much"): volume rows per class (from the rated tier-2 rows) and charge
    /// rows per service (the entries posted for that day), days inclusive.
    pub fn usage(
        &self,
        number: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<UsageRow>, CoreError> {
        let e = CoreError::from_sql;
        let id = account_id(&self.conn, number)?;
        let tz = self.timezone;
        let day_ms = |d: &str| {
            crate::import::parse_time_in(d, tz)
                .map_err(|m| CoreError::Invalid(format!("day {d:?}: {m}")))
        };
        let from_ms = day_ms(from_day)?;
        let to_ms = rating::local_day(tz, day_ms(to_day)?).1;
        // Volumes: the rated tier-2 rows (the core's mirror), per local day
        // and class. Charges: the entries posted for each day and service.
        let mut rows: BTreeMap<(String, String, String), UsageRow> = BTreeMap::new();
        let mut st = self
            .conn
            .prepare(
                "SELECT bucket_ms, class, direction, sum(bytes) FROM usage_mirror
                 WHERE account = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 GROUP BY bucket_ms, class, direction",
            )
            .map_err(e)?;
        let mut it = st.query(params![number, from_ms, to_ms]).map_err(e)?;
        let mut last_day: Option<(i64, i64, String)> = None;
        while let Some(r) = it.next().map_err(e)? {
            let bucket: i64 = r.get(0).map_err(e)?;
            let class: String = r.get(1).map_err(e)?;
            let dir: String = r.get(2).map_err(e)?;
            let bytes: i64 = r.get(3).map_err(e)?;
            // Buckets come in time order: the day changes rarely.
            let day = match &last_day {
                Some((s, end, label)) if *s <= bucket && bucket < *end => label.clone(),
                _ => {
                    let (s, end, _) = rating::local_day(tz, bucket);
                    let label = crate::cycle::day_label(tz, bucket);
                    last_day = Some((s, end, label.clone()));
                    label
                }
            };
            let u = rows
                .entry((day.clone(), String::new(), class.clone()))
                .or_insert_with(|| UsageRow {
                    day,
                    service: String::new(),
                    class,
                    in_bytes: 0,
                    out_bytes: 0,
                    charged: Money::ZERO,
                });
            if dir == "in" {
                u.in_bytes += bytes;
            } else {
                u.out_bytes += bytes;
            }
        }
        let mut st = self
            .conn
            .prepare(
                "SELECT day, service, sum(CASE WHEN kind = 'adjustment' THEN -amount ELSE amount END) FROM entries
                 WHERE account_id = ?1 AND kind IN ('charge', 'fee', 'adjustment') AND day >= ?2 AND day <= ?3
                 GROUP BY day, service",
            )
            .map_err(e)?;
        let it = st
            .query_map(params![id, from_day, to_day], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(e)?;
        for x in it {
            let (day, service, amount) = x.map_err(e)?;
            rows.entry((day.clone(), service.clone(), String::new()))
                .or_insert_with(|| UsageRow {
                    day,
                    service,
                    class: String::new(),
                    in_bytes: 0,
                    out_bytes: 0,
                    charged: Money::ZERO,
                })
                .charged = Money(amount);
        }
        Ok(rows.into_values().collect())
    }

    /// Accounts whose available money (balance − accrued) is below
    /// `threshold`.
    pub fn debtors(&self, threshold: Money, now_ms: i64) -> Result<Vec<DebtorRow>, CoreError> {
        let e = CoreError::from_sql;
        let names: BTreeMap<i64, (String, String)> = self
            .conn
            .prepare(
                "SELECT a.id, s.name, coalesce(x.state, '') FROM accounts a JOIN subscribers s ON s.id = a.subscriber_id
                 LEFT JOIN access x ON x.account_id = a.id",
            )
            .map_err(e)?
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .map_err(e)?
            .collect::<Result<_, _>>()
            .map_err(e)?;
        let mut out = Vec::new();
        for (id, number, s) in standings(&self.conn, now_ms, None)? {
            let own = Money(s.balance.0 - s.accrued.0);
            if own.0 < threshold.0 && crate::ops::payer_of(&self.conn, id)? == id {
                let (sub, state) = names.get(&id).cloned().unwrap_or_default();
                out.push(DebtorRow {
                    account: number,
                    subscriber: sub,
                    balance: s.balance,
                    accrued: s.accrued,
                    available: s.available(),
                    state,
                });
            }
        }
        out.sort_by_key(|d| Money(d.balance.0 - d.accrued.0));
        Ok(out)
    }

    /// What a period charged, by service and class (posted and still
    /// accrued, from the accruals), and the money that came in and went out
    /// in it, by kind and book (from the ledger).
    pub fn revenue(&self, period: &str) -> Result<Vec<RevenueRow>, CoreError> {
        let e = CoreError::from_sql;
        let p = rating::period_by_label(self.timezone, period)
            .map_err(|x| CoreError::Invalid(x.to_string()))?;
        let mut st = self
            .conn
            .prepare(
                "SELECT CASE WHEN service = 'fee' THEN 'revenue:fee' ELSE 'revenue:traffic:' || class || ' (' || service || ')' END,
                        CASE WHEN service = 'fee' THEN 'fee' ELSE 'charge' END, count(*), sum(charged)
                 FROM accruals WHERE period_start_ms = ?1 AND charged <> 0
                 GROUP BY 1, 2
                 UNION ALL
                 SELECT CASE WHEN e.kind = 'payment' THEN e.debit ELSE e.credit END, e.kind, count(*), sum(e.amount)
                 FROM accounts a JOIN entries e ON e.account_id = a.id AND e.ts_ms >= ?2 AND e.ts_ms < ?3
                 WHERE e.kind IN ('payment', 'refund', 'correction', 'credit')
                 GROUP BY 1, 2
                 ORDER BY 2, 1",
            )
            .map_err(e)?;
        let rows = st
            .query_map(params![p.start_ms, p.start_ms, p.end_ms], |r| {
                Ok(RevenueRow {
                    book: r.get(0)?,
                    kind: r.get(1)?,
                    entries: r.get(2)?,
                    amount: Money(r.get(3)?),
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(rows)
    }

    /// Accounts not allowed now, with the reason and since when.
    pub fn blocked(&self) -> Result<Vec<BlockedRow>, CoreError> {
        let e = CoreError::from_sql;
        let mut st = self
            .conn
            .prepare(
                "SELECT a.number, x.state, x.since_ms, coalesce(ev.detail, '') FROM access x
                 JOIN accounts a ON a.id = x.account_id
                 LEFT JOIN access_events ev ON ev.seq = x.seq
                 WHERE x.state <> 'allowed' ORDER BY x.since_ms, a.number",
            )
            .map_err(e)?;
        let rows = st
            .query_map([], |r| {
                Ok(BlockedRow {
                    account: r.get(0)?,
                    state: r.get(1)?,
                    since_ms: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(rows)
    }

    /// Charges and payments of a month for bookkeeping
    /// (docs/accounting-export.md): per account and service what was
    /// posted for the period, and every money entry dated in it.
    pub fn export_accounting(&self, period: &str) -> Result<Vec<ExportRow>, CoreError> {
        let e = CoreError::from_sql;
        let p = rating::period_by_label(self.timezone, period)
            .map_err(|x| CoreError::Invalid(x.to_string()))?;
        let tz = self.timezone;
        let last_day = crate::cycle::day_label(tz, p.end_ms - 1);
        let mut out = Vec::new();
        let mut st = self
            .conn
            .prepare(
                "SELECT a.number, s.name, CASE WHEN x.service = 'fee' THEN 'fee' ELSE 'charge' END, x.service,
                        sum(x.posted), count(*)
                 FROM accruals x JOIN accounts a ON a.id = x.account_id JOIN subscribers s ON s.id = a.subscriber_id
                 WHERE x.period_start_ms = ?1 AND x.posted <> 0
                 GROUP BY a.number, s.name, x.service ORDER BY a.number, x.service",
            )
            .map_err(e)?;
        let charges = st
            .query_map(params![p.start_ms], |r| {
                Ok(ExportRow {
                    entry: 0,
                    date: last_day.clone(),
                    account: r.get(0)?,
                    subscriber: r.get(1)?,
                    kind: r.get(2)?,
                    service: r.get(3)?,
                    amount: Money(-r.get::<_, i64>(4)?),
                    ext_id: String::new(),
                    why: format!("{} for {}", r.get::<_, String>(3)?, p.label),
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        out.extend(charges);
        let mut st = self
            .conn
            .prepare(
                "SELECT e.id, e.ts_ms, a.number, s.name, e.kind, e.amount, e.credit, coalesce(e.ext_id, ''), e.why
                 FROM accounts a JOIN entries e ON e.account_id = a.id AND e.ts_ms >= ?1 AND e.ts_ms < ?2
                 JOIN subscribers s ON s.id = a.subscriber_id
                 WHERE e.kind IN ('payment', 'refund', 'correction', 'credit')
                 ORDER BY e.id",
            )
            .map_err(e)?;
        let money = st
            .query_map(params![p.start_ms, p.end_ms], |r| {
                let amount: i64 = r.get(5)?;
                let credit: String = r.get(6)?;
                // Signed from the subscriber's side: + money in, − out.
                let signed = if credit.starts_with("acct:") {
                    amount
                } else {
                    -amount
                };
                Ok(ExportRow {
                    entry: r.get(0)?,
                    date: crate::cycle::day_label(tz, r.get(1)?),
                    account: r.get(2)?,
                    subscriber: r.get(3)?,
                    kind: r.get(4)?,
                    service: String::new(),
                    amount: Money(signed),
                    ext_id: r.get(7)?,
                    why: r.get(8)?,
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        out.extend(money);
        Ok(out)
    }

    /// Traces one ledger entry back to what produced it.
    pub fn explain(&self, entry: i64, state_dir: &Path) -> Result<Explanation, CoreError> {
        let e = CoreError::from_sql;
        let row = self
            .conn
            .query_row(
                "SELECT e.kind, e.amount, e.ts_ms, a.number, e.service, e.day, e.period, e.version_id, e.details,
                        e.who, e.why, e.ext_id, e.debit, e.credit, e.account_id
                 FROM entries e LEFT JOIN accounts a ON a.id = e.account_id WHERE e.id = ?1",
                params![entry],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, String>(9)?,
                        r.get::<_, String>(10)?,
                        r.get::<_, Option<String>>(11)?,
                        r.get::<_, String>(12)?,
                        r.get::<_, String>(13)?,
                        r.get::<_, Option<i64>>(14)?,
                    ))
                },
            )
            .optional()
            .map_err(e)?
            .ok_or_else(|| CoreError::NotFound(format!("no ledger entry {entry}")))?;
        let (
            kind,
            amount,
            ts,
            account,
            service,
            day,
            period,
            version_id,
            details,
            who,
            why,
            ext_id,
            debit,
            credit,
            account_id,
        ) = row;
        let mut x = Explanation {
            entry,
            kind,
            amount: Money(amount),
            ts_ms: ts,
            account: account.clone(),
            debit,
            credit,
            who,
            why,
            ext_id,
            service: service.clone(),
            day,
            period: period.clone(),
            ..Default::default()
        };
        let (Some(vid), Some(service), Some(account), Some(account_id)) =
            (version_id, service, account, account_id)
        else {
            return Ok(x);
        };
        let (tname, version, effective, content, sha): (String, i64, i64, String, String) = self
            .conn
            .query_row(
                "SELECT t.name, v.version, v.effective_ms, v.content, v.sha256 FROM tariff_versions v
                 JOIN tariffs t ON t.id = v.tariff_id WHERE v.id = ?1",
                params![vid],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(e)?;
        x.tariff = Some(format!(
            "{tname} version {version} (id {vid}, effective {}, sha256 {sha})",
            crate::fmt_ms(effective, self.timezone)
        ));
        let details: serde_json::Value = details
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let get = |k: &str| details.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
        let (in_b, out_b) = (get("in_bytes"), get("out_bytes"));
        x.computation.push(format!(
            "cumulative for period {}: in {} bytes, out {} bytes, {} fee days",
            period.as_deref().unwrap_or("?"),
            in_b,
            out_b,
            get("days")
        ));
        x.computation.push(format!(
            "charged for the period so far {} − posted before {} = this entry {}",
            Money(get("charged_after")),
            Money(get("charged_before")),
            Money(amount)
        ));
        if let Ok(t) = Tariff::from_toml(&content)
            && let Some(ix) = t.rule_by_name(&service)
        {
            let rule = &t.rules[ix];
            let vol = rating::volume(rule.direction, in_b.max(0) as u64, out_b.max(0) as u64);
            x.rule = Some(format!(
                "[[traffic]] {} class {} direction {:?}: included {} {}, tiers {}",
                rule.name,
                rule.class,
                rule.direction,
                rule.included_units,
                t.unit.name(),
                rule.tiers
                    .iter()
                    .map(|tier| format!("from {} at {}", tier.from_units, tier.price))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            x.computation.push(format!(
                "volume counted {} bytes = {} {} → {}",
                vol,
                fmt_units(vol, t.unit.bytes()),
                t.unit.name(),
                rating::rule_charge(rule, t.unit, in_b.max(0) as u64, out_b.max(0) as u64)
            ));
            // The tier-2 rows behind the volume: per day, what tier 2 holds
            // for this account and class in the period up to this entry.
            let pstart = get("period_start_ms");
            let p = rating::period_of(self.timezone, pstart);
            if let Ok(t2) = kopek_classifier::store::SqliteTier2::open_read(state_dir) {
                let mut st = t2
                    .prepare(
                        "SELECT bucket_ms, direction, point, bytes, seq FROM traffic
                         WHERE account = ?1 AND class = ?2 AND billed = 1 AND bucket_ms >= ?3 AND bucket_ms < ?4
                         ORDER BY bucket_ms",
                    )
                    .map_err(e)?;
                let mut by_day: BTreeMap<String, (i64, i64, u64, i64, i64)> = BTreeMap::new();
                let mut it = st
                    .query(params![account, rule.class, p.start_ms, p.end_ms])
                    .map_err(e)?;
                while let Some(r) = it.next().map_err(e)? {
                    let b: i64 = r.get(0).map_err(e)?;
                    let dir: String = r.get(1).map_err(e)?;
                    let bytes: i64 = r.get(3).map_err(e)?;
                    let seq: i64 = r.get(4).map_err(e)?;
                    let d = by_day
                        .entry(crate::cycle::day_label(self.timezone, b))
                        .or_insert((0, 0, 0, b, b));
                    if dir == "in" {
                        d.0 += bytes;
                    } else {
                        d.1 += bytes;
                    }
                    d.2 += 1;
                    d.3 = d.3.min(b);
                    d.4 = d.4.max(b);
                    let _ = seq;
                }
                x.tier2 = by_day
                    .into_iter()
                    .map(|(day, (i, o, n, _, _))| {
                        format!("{day}: {n} tier-2 rows, in {i} bytes, out {o} bytes")
                    })
                    .collect();
                x.tier1 = tier1_segments(state_dir, p.start_ms, p.end_ms);
            }
        } else if service == crate::ledger::FEE_SERVICE {
            x.rule = Some("monthly fee, charged per day: floor(fee × days / days in month)".into());
        } else if service.starts_with(FREE_PREFIX) {
            x.rule = Some("no rule prices this class: free".into());
        }
        let _ = account_id;
        Ok(x)
    }
}

/// Tier-1 segments holding records of `[from_ms, to_ms)` (sealed segments
/// by their footer's time range; open ones always, their range is not
/// known yet).
fn tier1_segments(state_dir: &Path, from_ms: i64, to_ms: i64) -> Vec<String> {
    use kopek_collector::segment::{RawStore, SegmentState};
    let Ok(list) = RawStore::new(state_dir.join("raw")).list() else {
        return Vec::new();
    };
    list.into_iter()
        .filter(|s| match s.read_footer() {
            Ok(Some(f)) => f.flow_records > 0 && f.min_first_ms < to_ms && f.max_last_ms >= from_ms,
            _ => s.state == SegmentState::Open,
        })
        .map(|s| s.path.display().to_string())
        .collect()
}

/// `bytes` in `unit_bytes` units with six exact decimals (no floats).
pub fn fmt_units(bytes: u64, unit_bytes: u64) -> String {
    let whole = bytes / unit_bytes;
    let frac = (u128::from(bytes % unit_bytes) * 1_000_000 / u128::from(unit_bytes)) as u64;
    format!("{whole}.{frac:06}")
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Explanation {
    pub entry: i64,
    pub kind: String,
    pub amount: Money,
    pub ts_ms: i64,
    pub account: Option<String>,
    pub debit: String,
    pub credit: String,
    pub who: String,
    pub why: String,
    pub ext_id: Option<String>,
    pub service: Option<String>,
    pub day: Option<String>,
    pub period: Option<String>,
    pub tariff: Option<String>,
    pub rule: Option<String>,
    pub computation: Vec<String>,
    pub tier2: Vec<String>,
    pub tier1: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriberRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub contact: String,
    pub accounts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub id: i64,
    pub name: String,
    pub version: i64,
    pub effective_ms: i64,
    pub sha256: String,
    pub who: String,
    pub why: String,
    #[serde(skip)]
    pub content: String,
}

impl Billing {
    pub fn subscribers(&self) -> Result<Vec<SubscriberRow>, CoreError> {
        let e = CoreError::from_sql;
        let mut accounts: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        let mut st = self
            .conn
            .prepare("SELECT subscriber_id, number FROM accounts ORDER BY number")
            .map_err(e)?;
        for r in st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(e)?
        {
            let (s, n) = r.map_err(e)?;
            accounts.entry(s).or_default().push(n);
        }
        let mut st = self
            .conn
            .prepare("SELECT id, name, kind, contact FROM subscribers ORDER BY id")
            .map_err(e)?;
        let rows = st
            .query_map([], |r| {
                Ok(SubscriberRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    contact: r.get(3)?,
                    accounts: Vec::new(),
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(rows
            .into_iter()
            .map(|mut s| {
                s.accounts = accounts.remove(&s.id).unwrap_or_default();
                s
            })
            .collect())
    }

    const VERSION_COLS: &'static str =
        "SELECT v.id, t.name, v.version, v.effective_ms, v.sha256, v.who, v.why, v.content
         FROM tariff_versions v JOIN tariffs t ON t.id = v.tariff_id";

    fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
        Ok(VersionRow {
            id: r.get(0)?,
            name: r.get(1)?,
            version: r.get(2)?,
            effective_ms: r.get(3)?,
            sha256: r.get(4)?,
            who: r.get(5)?,
            why: r.get(6)?,
            content: r.get(7)?,
        })
    }

    /// Every tariff version ever stored (the tariff archive).
    pub fn tariff_versions(&self) -> Result<Vec<VersionRow>, CoreError> {
        let e = CoreError::from_sql;
        let mut st = self
            .conn
            .prepare(&format!(
                "{} ORDER BY t.name, v.version",
                Self::VERSION_COLS
            ))
            .map_err(e)?;
        let rows = st
            .query_map([], Self::version_row)
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(rows)
    }

    /// One version of a tariff (default: the latest).
    pub fn tariff_version(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<VersionRow, CoreError> {
        self.conn
            .query_row(
                &format!(
                    "{} WHERE t.name = ?1 AND (?2 IS NULL OR v.version = ?2) ORDER BY v.version DESC LIMIT 1",
                    Self::VERSION_COLS
                ),
                params![name, version],
                Self::version_row,
            )
            .optional()
            .map_err(CoreError::from_sql)?
            .ok_or_else(|| CoreError::NotFound(format!("no tariff {name:?}{}", version.map(|v| format!(" version {v}")).unwrap_or_default())))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub ts_ms: i64,
    pub who: String,
    pub command: String,
    pub args: String,
    pub result: String,
}

impl Billing {
    /// The operator audit log from `from_ms` on, oldest first, at most
    /// `limit` rows.
    pub fn audit(&self, from_ms: i64, limit: usize) -> Result<Vec<AuditRow>, CoreError> {
        let e = CoreError::from_sql;
        let mut st = self
            .conn
            .prepare(
                "SELECT id, ts_ms, who, command, args, result FROM audit WHERE ts_ms >= ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(e)?;
        let rows = st
            .query_map(params![from_ms, limit as i64], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    ts_ms: r.get(1)?,
                    who: r.get(2)?,
                    command: r.get(3)?,
                    args: r.get(4)?,
                    result: r.get(5)?,
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(rows)
    }
}
