//! Operator commands: everything that changes the billing database on a
//! person's behalf. Each runs in one transaction with its audit row (who,
//! what, why, result): all of it applies or none of it does.
//!
//! The running core executes these for the CLI over the control socket
//! (`control.rs`); `--offline` runs the same code under the core's lock.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::ledger::{self, BOOK_CORRECTIONS, BOOK_CREDITS};
use crate::money::Money;
use crate::rating;
use crate::store::{Billing, NewEntry, account_book, post};
use crate::tariff::Tariff;

/// Longest text an operator may put in a name or reason.
pub const MAX_TEXT: usize = 500;

/// Disconnection policy chosen by the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Blocked as soon as the balance would go below zero.
    BlockAtZero,
    /// Continues in credit down to the account's credit limit.
    Credit,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::BlockAtZero => "block-at-zero",
            Policy::Credit => "credit",
        }
    }

    pub fn parse(s: &str) -> Result<Policy, CoreError> {
        match s {
            "block-at-zero" => Ok(Policy::BlockAtZero),
            "credit" => Ok(Policy::Credit),
            _ => Err(CoreError::Invalid(format!(
                "policy {s:?}: expected block-at-zero or credit"
            ))),
        }
    }
}

/// A change requested by an operator (or a payment gateway script).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Command {
    SubscriberAdd {
        name: String,
        kind: String,
        contact: String,
    },
    /// Changes a subscriber's name or contact.
    SubscriberSet {
        id: i64,
        name: Option<String>,
        contact: Option<String>,
    },
    AccountAdd {
        number: String,
        subscriber: i64,
        payer: Option<String>,
        policy: Policy,
        credit_limit: Money,
        tariff: Option<String>,
        /// When the tariff starts (default: now).
        tariff_from_ms: Option<i64>,
    },
    AccountSet {
        number: String,
        policy: Option<Policy>,
        credit_limit: Option<Money>,
        why: String,
    },
    AccountBlock {
        number: String,
        why: String,
    },
    AccountUnblock {
        number: String,
        why: String,
    },
    LoginAdd {
        login: String,
        account: String,
    },
    TariffAdd {
        name: String,
        content: String,
        effective_ms: Option<i64>,
        why: String,
    },
    /// A new version of an existing tariff (default effective: start of the
    /// next billing period).
    TariffUpdate {
        name: String,
        content: String,
        effective_ms: Option<i64>,
        why: String,
    },
    /// Moves an account to a tariff (default: at the next period start).
    AccountTariff {
        number: String,
        tariff: String,
        from_ms: Option<i64>,
        why: String,
    },
    PaymentAdd(Payment),
    PaymentImport {
        file: String,
        payments: Vec<Payment>,
    },
    Refund {
        account: String,
        amount: Money,
        source: String,
        why: String,
    },
    Correction {
        account: String,
        /// Positive: money given to the account; negative: taken.
        amount: Money,
        why: String,
    },
    Credit {
        account: String,
        amount: Money,
        why: String,
    },
    Promise {
        account: String,
        amount: Money,
        until_ms: i64,
        why: String,
    },
    Freeze {
        account: String,
        from_ms: i64,
        to_ms: i64,
        why: String,
    },
}

/// A payment: idempotent by (`source`, `ext_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub account: String,
    pub amount: Money,
    /// The payment system's transaction id.
    pub ext_id: String,
    /// Which payment system or desk (`bank`, `cash`, `gateway`).
    pub source: String,
    /// Value time (default: now).
    pub at_ms: Option<i64>,
    pub why: String,
    /// Line in an imported file (for error messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// False when the command changed nothing because it had been applied
    /// before (a replayed payment).
    pub changed: bool,
    pub message: String,
    /// Id of what was created (subscriber, entry, version ...), if any.
    pub id: Option<i64>,
}

impl Outcome {
    fn new(id: Option<i64>, message: String) -> Outcome {
        Outcome {
            changed: true,
            message,
            id,
        }
    }
}

fn text(field: &str, v: &str, required: bool) -> Result<(), CoreError> {
    if required && v.trim().is_empty() {
        return Err(CoreError::Invalid(format!(
            "{field} is required and may not be empty"
        )));
    }
    if v.len() > MAX_TEXT || v.chars().any(|c| c.is_control()) {
        return Err(CoreError::Invalid(format!(
            "{field}: at most {MAX_TEXT} bytes of printable text"
        )));
    }
    Ok(())
}

fn positive(field: &str, m: Money) -> Result<(), CoreError> {
    if m.0 <= 0 {
        return Err(CoreError::Invalid(format!(
            "{field} must be positive, got {m}"
        )));
    }
    Ok(())
}

/// Account id by number, or an error naming it.
pub(crate) fn account_id(tx: &rusqlite::Connection, number: &str) -> Result<i64, CoreError> {
    tx.query_row(
        "SELECT id FROM accounts WHERE number = ?1",
        params![number],
        |r| r.get(0),
    )
    .optional()
    .map_err(CoreError::from_sql)?
    .ok_or_else(|| CoreError::NotFound(format!("unknown account {number:?}")))
}

fn tariff_id(tx: &rusqlite::Connection, name: &str) -> Result<i64, CoreError> {
    tx.query_row(
        "SELECT id FROM tariffs WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()
    .map_err(CoreError::from_sql)?
    .ok_or_else(|| CoreError::NotFound(format!("unknown tariff {name:?}")))
}

/// The book charges of an account go to: its payer's, or its own.
pub(crate) fn payer_of(conn: &rusqlite::Connection, account_id: i64) -> Result<i64, CoreError> {
    let payer: Option<i64> = conn
        .query_row(
            "SELECT payer_id FROM accounts WHERE id = ?1",
            params![account_id],
            |r| r.get(0),
        )
        .map_err(CoreError::from_sql)?;
    Ok(payer.unwrap_or(account_id))
}

impl Billing {
    /// Applies one command as `who` at `now_ms`: the change and its audit row
    /// in one transaction.
    pub fn apply(&mut self, cmd: &Command, who: &str, now_ms: i64) -> Result<Outcome, CoreError> {
        let tz = self.timezone;
        let tx = self.write()?;
        let result = apply_in(&tx, cmd, who, now_ms, tz);
        match result {
            Ok(outcome) => {
                if matches!(
                    cmd,
                    Command::AccountAdd { .. }
                        | Command::AccountTariff { .. }
                        | Command::TariffAdd { .. }
                        | Command::TariffUpdate { .. }
                ) {
                    // The rater's cached model is out of date.
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, '1')
                         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)",
                        params![crate::cycle::META_MODEL_GEN],
                    )
                    .map_err(CoreError::from_sql)?;
                }
                audit(&tx, now_ms, who, cmd, &outcome.message)?;
                tx.commit().map_err(CoreError::from_sql)?;
                Ok(outcome)
            }
            Err(e) => {
                drop(tx);
                // Refusals are audited too, in their own transaction.
                let tx = self.write()?;
                audit(&tx, now_ms, who, cmd, &format!("refused: {e}"))?;
                tx.commit().map_err(CoreError::from_sql)?;
                Err(e)
            }
        }
    }
}

fn audit(
    tx: &Transaction<'_>,
    now_ms: i64,
    who: &str,
    cmd: &Command,
    result: &str,
) -> Result<(), CoreError> {
    // An import's audit row names the file and count, not every payment
    // (and does not serialize them all to say so).
    let args = match cmd {
        Command::PaymentImport { file, payments } => {
            serde_json::json!({"cmd": "payment-import", "file": file, "payments": payments.len()})
        }
        _ => serde_json::to_value(cmd).unwrap_or_default(),
    };
    let name = args
        .get("cmd")
        .and_then(|c| c.as_str())
        .unwrap_or("?")
        .to_string();
    tx.prepare_cached(
        "INSERT INTO audit (ts_ms, who, command, args, result) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut st| st.execute(params![now_ms, who, name, args.to_string(), result]))
    .map_err(CoreError::from_sql)?;
    Ok(())
}

fn apply_in(
    tx: &Transaction<'_>,
    cmd: &Command,
    who: &str,
    now_ms: i64,
    tz: chrono_tz::Tz,
) -> Result<Outcome, CoreError> {
    let sqlerr = CoreError::from_sql;
    match cmd {
        Command::SubscriberAdd {
            name,
            kind,
            contact,
        } => {
            text("name", name, true)?;
            text("contact", contact, false)?;
            if kind != "person" && kind != "org" {
                return Err(CoreError::Invalid(format!(
                    "kind {kind:?}: expected person or org"
                )));
            }
            tx.execute(
                "INSERT INTO subscribers (name, kind, contact, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, kind, contact, now_ms],
            )
            .map_err(sqlerr)?;
            let id = tx.last_insert_rowid();
            Ok(Outcome::new(
                Some(id),
                format!("subscriber {id} ({name}) created"),
            ))
        }
        Command::SubscriberSet { id, name, contact } => {
            if let Some(n) = name {
                text("name", n, true)?;
            }
            if let Some(c) = contact {
                text("contact", c, false)?;
            }
            let n = tx
                .execute(
                    "UPDATE subscribers SET name = coalesce(?2, name), contact = coalesce(?3, contact) WHERE id = ?1",
                    params![id, name, contact],
                )
                .map_err(sqlerr)?;
            if n == 0 {
                return Err(CoreError::NotFound(format!("unknown subscriber {id}")));
            }
            Ok(Outcome::new(Some(*id), format!("subscriber {id} changed")))
        }
        Command::AccountAdd {
            number,
            subscriber,
            payer,
            policy,
            credit_limit,
            tariff,
            tariff_from_ms,
        } => {
            kopek_classifier::bindings::check_account(number)
                .map_err(|e| CoreError::Invalid(format!("account number: {e}")))?;
            if credit_limit.is_negative() {
                return Err(CoreError::Invalid(format!(
                    "credit limit must be 0 or more, got {credit_limit}"
                )));
            }
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT id FROM subscribers WHERE id = ?1",
                    params![subscriber],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlerr)?;
            if exists.is_none() {
                return Err(CoreError::NotFound(format!(
                    "unknown subscriber {subscriber}"
                )));
            }
            if account_id(tx, number).is_ok() {
                return Err(CoreError::Conflict(format!(
                    "account {number:?} exists already"
                )));
            }
            let payer_id = match payer {
                Some(p) => {
                    let pid = account_id(tx, p)?;
                    let (psub, pp): (i64, Option<i64>) = tx
                        .query_row(
                            "SELECT subscriber_id, payer_id FROM accounts WHERE id = ?1",
                            params![pid],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .map_err(sqlerr)?;
                    if psub != *subscriber {
                        return Err(CoreError::Invalid(format!(
                            "payer {p:?} belongs to another subscriber ({psub})"
                        )));
                    }
                    if pp.is_some() {
                        return Err(CoreError::Invalid(format!(
                            "payer {p:?} is itself paid for by another account; name that one"
                        )));
                    }
                    Some(pid)
                }
                None => None,
            };
            tx.execute(
                "INSERT INTO accounts (number, subscriber_id, payer_id, policy, credit_limit, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![number, subscriber, payer_id, policy.as_str(), credit_limit.0, now_ms],
            )
            .map_err(sqlerr)?;
            let id = tx.last_insert_rowid();
            let mut msg = format!("account {number} (id {id}) created for subscriber {subscriber}");
            if let Some(t) = tariff {
                let tid = tariff_id(tx, t)?;
                let from = tariff_from_ms.unwrap_or(now_ms);
                tx.execute(
                    "INSERT INTO account_tariffs (account_id, tariff_id, from_ms) VALUES (?1, ?2, ?3)",
                    params![id, tid, from],
                )
                .map_err(sqlerr)?;
                msg.push_str(&format!(", tariff {t} from {}", crate::fmt_ms(from, tz)));
            }
            Ok(Outcome::new(Some(id), msg))
        }
        Command::AccountSet {
            number,
            policy,
            credit_limit,
            why,
        } => {
            text("reason", why, true)?;
            let id = account_id(tx, number)?;
            if let Some(p) = policy {
                tx.execute(
                    "UPDATE accounts SET policy = ?1 WHERE id = ?2",
                    params![p.as_str(), id],
                )
                .map_err(sqlerr)?;
            }
            if let Some(l) = credit_limit {
                if l.is_negative() {
                    return Err(CoreError::Invalid(format!(
                        "credit limit must be 0 or more, got {l}"
                    )));
                }
                tx.execute(
                    "UPDATE accounts SET credit_limit = ?1 WHERE id = ?2",
                    params![l.0, id],
                )
                .map_err(sqlerr)?;
            }
            Ok(Outcome::new(Some(id), format!("account {number} changed")))
        }
        Command::AccountBlock { number, why } => {
            text("reason", why, true)?;
            let id = account_id(tx, number)?;
            tx.execute(
                "UPDATE accounts SET admin_block = ?1 WHERE id = ?2",
                params![why, id],
            )
            .map_err(sqlerr)?;
            Ok(Outcome::new(
                Some(id),
                format!("account {number} blocked by {who}: {why}"),
            ))
        }
        Command::AccountUnblock { number, why } => {
            text("reason", why, true)?;
            let id = account_id(tx, number)?;
            tx.execute(
                "UPDATE accounts SET admin_block = NULL WHERE id = ?1",
                params![id],
            )
            .map_err(sqlerr)?;
            Ok(Outcome::new(
                Some(id),
                format!("account {number}: administrative block lifted"),
            ))
        }
        Command::LoginAdd { login, account } => {
            kopek_classifier::bindings::check_account(login)
                .map_err(|e| CoreError::Invalid(format!("login: {e}")))?;
            let id = account_id(tx, account)?;
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT account_id FROM logins WHERE login = ?1",
                    params![login],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlerr)?;
            if let Some(other) = taken {
                return Err(CoreError::Conflict(format!(
                    "login {login:?} already belongs to account id {other}"
                )));
            }
            tx.execute(
                "INSERT INTO logins (login, account_id, created_ms) VALUES (?1, ?2, ?3)",
                params![login, id, now_ms],
            )
            .map_err(sqlerr)?;
            Ok(Outcome::new(
                Some(id),
                format!("login {login} → account {account}"),
            ))
        }
        Command::TariffAdd {
            name,
            content,
            effective_ms,
            why,
        } => {
            kopek_classifier::bindings::check_account(name)
                .map_err(|e| CoreError::Invalid(format!("tariff name: {e}")))?;
            text("reason", why, true)?;
            let t = Tariff::from_toml(content)
                .map_err(|e| CoreError::Invalid(format!("tariff {name}: {e}")))?;
            if tariff_id(tx, name).is_ok() {
                return Err(CoreError::Conflict(format!(
                    "tariff {name:?} exists already: `kopek tariff update` makes a new version"
                )));
            }
            tx.execute(
                "INSERT INTO tariffs (name, created_ms) VALUES (?1, ?2)",
                params![name, now_ms],
            )
            .map_err(sqlerr)?;
            let tid = tx.last_insert_rowid();
            let eff = effective_ms.unwrap_or(now_ms);
            let vid = insert_version(tx, tid, 1, eff, &t, now_ms, who, why)?;
            Ok(Outcome::new(
                Some(vid),
                format!(
                    "tariff {name} version 1 (id {vid}, sha256 {}) effective {}",
                    &t.sha256()[..12],
                    crate::fmt_ms(eff, tz)
                ),
            ))
        }
        Command::TariffUpdate {
            name,
            content,
            effective_ms,
            why,
        } => {
            text("reason", why, true)?;
            let tid = tariff_id(tx, name)?;
            let t = Tariff::from_toml(content)
                .map_err(|e| CoreError::Invalid(format!("tariff {name}: {e}")))?;
            let (last_version, last_eff): (i64, i64) = tx
                .query_row(
                    "SELECT version, effective_ms FROM tariff_versions WHERE tariff_id = ?1 ORDER BY version DESC LIMIT 1",
                    params![tid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sqlerr)?;
            let eff = effective_ms.unwrap_or_else(|| rating::period_of(tz, now_ms).end_ms);
            if eff < now_ms {
                return Err(CoreError::Invalid(format!(
                    "effective time {} is in the past: a version may not change charges already made (that is re-rating)",
                    crate::fmt_ms(eff, tz)
                )));
            }
            if eff <= last_eff {
                return Err(CoreError::Conflict(format!(
                    "tariff {name} version {last_version} is effective from {}; a new version must start after it (overlapping tariff versions)",
                    crate::fmt_ms(last_eff, tz)
                )));
            }
            let vid = insert_version(tx, tid, last_version + 1, eff, &t, now_ms, who, why)?;
            Ok(Outcome::new(
                Some(vid),
                format!(
                    "tariff {name} version {} (id {vid}) effective {}",
                    last_version + 1,
                    crate::fmt_ms(eff, tz)
                ),
            ))
        }
        Command::AccountTariff {
            number,
            tariff,
            from_ms,
            why,
        } => {
            text("reason", why, true)?;
            let id = account_id(tx, number)?;
            let tid = tariff_id(tx, tariff)?;
            let from = from_ms.unwrap_or_else(|| rating::period_of(tz, now_ms).end_ms);
            if from < now_ms {
                return Err(CoreError::Invalid(format!(
                    "{} is in the past: a tariff change applies from now on",
                    crate::fmt_ms(from, tz)
                )));
            }
            let later: Option<i64> = tx
                .query_row(
                    "SELECT from_ms FROM account_tariffs WHERE account_id = ?1 AND from_ms >= ?2 LIMIT 1",
                    params![id, from],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlerr)?;
            if let Some(l) = later {
                return Err(CoreError::Conflict(format!(
                    "account {number} already changes tariff at {}; a change may only follow the last one",
                    crate::fmt_ms(l, tz)
                )));
            }
            tx.execute(
                "UPDATE account_tariffs SET to_ms = ?1 WHERE account_id = ?2 AND (to_ms IS NULL OR to_ms > ?1)",
                params![from, id],
            )
            .map_err(sqlerr)?;
            tx.execute(
                "INSERT INTO account_tariffs (account_id, tariff_id, from_ms) VALUES (?1, ?2, ?3)",
                params![id, tid, from],
            )
            .map_err(sqlerr)?;
            Ok(Outcome::new(
                Some(id),
                format!(
                    "account {number}: tariff {tariff} from {}",
                    crate::fmt_ms(from, tz)
                ),
            ))
        }
        Command::PaymentAdd(p) => payment(tx, p, who, now_ms),
        Command::PaymentImport { file, payments } => {
            // Every payment checked first, then all posted in one go (one
            // chain step and one balance update per book).
            let mut seen = 0usize;
            let mut entries = Vec::with_capacity(payments.len());
            let mut in_file: std::collections::HashMap<String, (String, Money)> =
                Default::default();
            for p in payments {
                let at = |e: CoreError| match p.line {
                    Some(l) => CoreError::Invalid(format!("{file}:{l}: {e}; nothing imported")),
                    None => e,
                };
                match payment_entry(tx, p, who, now_ms).map_err(at)? {
                    Ok(e) => {
                        let key = e.ext_id.clone().unwrap_or_default();
                        match in_file.get(&key) {
                            Some((acct, amount)) if *acct == p.account && *amount == p.amount => {
                                seen += 1
                            }
                            Some(_) => {
                                return Err(at(CoreError::Conflict(format!(
                                    "payment {key} appears earlier in the file with another account or amount"
                                ))));
                            }
                            None => {
                                in_file.insert(key, (p.account.clone(), p.amount));
                                entries.push(e);
                            }
                        }
                    }
                    Err(_) => seen += 1,
                }
            }
            let new = entries.len();
            post(tx, now_ms, &entries).map_err(CoreError::from_sql)?;
            Ok(Outcome {
                changed: new > 0,
                message: format!("{file}: {new} payments posted, {seen} already posted before"),
                id: None,
            })
        }
        Command::Refund {
            account,
            amount,
            source,
            why,
        } => {
            positive("amount", *amount)?;
            text("reason", why, true)?;
            text("source", source, true)?;
            let id = account_id(tx, account)?;
            money_entry(
                tx,
                now_ms,
                ledger::REFUND,
                id,
                account_book(id),
                ledger::payments_book(source),
                *amount,
                who,
                why,
            )
        }
        Command::Correction {
            account,
            amount,
            why,
        } => {
            text("reason", why, true)?;
            if amount.0 == 0 {
                return Err(CoreError::Invalid(
                    "a correction of 0.00 changes nothing".into(),
                ));
            }
            let id = account_id(tx, account)?;
            let (debit, credit) = if amount.0 > 0 {
                (BOOK_CORRECTIONS.to_string(), account_book(id))
            } else {
                (account_book(id), BOOK_CORRECTIONS.to_string())
            };
            money_entry(
                tx,
                now_ms,
                ledger::CORRECTION,
                id,
                debit,
                credit,
                Money(amount.0.abs()),
                who,
                why,
            )
        }
        Command::Credit {
            account,
            amount,
            why,
        } => {
            positive("amount", *amount)?;
            text("reason", why, true)?;
            let id = account_id(tx, account)?;
            money_entry(
                tx,
                now_ms,
                ledger::CREDIT,
                id,
                BOOK_CREDITS.into(),
                account_book(id),
                *amount,
                who,
                why,
            )
        }
        Command::Promise {
            account,
            amount,
            until_ms,
            why,
        } => {
            positive("amount", *amount)?;
            text("reason", why, true)?;
            if *until_ms <= now_ms {
                return Err(CoreError::Invalid(
                    "a promised payment must expire in the future".into(),
                ));
            }
            let id = account_id(tx, account)?;
            tx.execute(
                "INSERT INTO promises (account_id, amount, from_ms, until_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, amount.0, now_ms, until_ms],
            )
            .map_err(sqlerr)?;
            Ok(Outcome::new(
                Some(tx.last_insert_rowid()),
                format!(
                    "account {account}: promised payment {amount} until {}",
                    crate::fmt_ms(*until_ms, tz)
                ),
            ))
        }
        Command::Freeze {
            account,
            from_ms,
            to_ms,
            why,
        } => {
            text("reason", why, true)?;
            if to_ms <= from_ms {
                return Err(CoreError::Invalid(
                    "a freeze must end after it starts".into(),
                ));
            }
            let id = account_id(tx, account)?;
            let overlap: Option<i64> = tx
                .query_row(
                    "SELECT id FROM freezes WHERE account_id = ?1 AND from_ms < ?3 AND to_ms > ?2",
                    params![id, from_ms, to_ms],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlerr)?;
            if let Some(f) = overlap {
                return Err(CoreError::Conflict(format!(
                    "overlaps freeze {f} of account {account}"
                )));
            }
            tx.execute(
                "INSERT INTO freezes (account_id, from_ms, to_ms) VALUES (?1, ?2, ?3)",
                params![id, from_ms, to_ms],
            )
            .map_err(sqlerr)?;
            Ok(Outcome::new(
                Some(tx.last_insert_rowid()),
                format!(
                    "account {account} frozen {} – {}",
                    crate::fmt_ms(*from_ms, tz),
                    crate::fmt_ms(*to_ms, tz)
                ),
            ))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_version(
    tx: &Transaction<'_>,
    tariff_id: i64,
    version: i64,
    effective_ms: i64,
    t: &Tariff,
    now_ms: i64,
    who: &str,
    why: &str,
) -> Result<i64, CoreError> {
    tx.execute(
        "INSERT INTO tariff_versions (tariff_id, version, effective_ms, content, sha256, created_ms, who, why)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![tariff_id, version, effective_ms, t.canonical(), t.sha256(), now_ms, who, why],
    )
    .map_err(CoreError::from_sql)?;
    Ok(tx.last_insert_rowid())
}

#[allow(clippy::too_many_arguments)]
fn money_entry(
    tx: &Transaction<'_>,
    now_ms: i64,
    kind: &'static str,
    account_id: i64,
    debit: String,
    credit: String,
    amount: Money,
    who: &str,
    why: &str,
) -> Result<Outcome, CoreError> {
    let ids = post(
        tx,
        now_ms,
        &[NewEntry {
            ts_ms: now_ms,
            kind,
            account_id: Some(account_id),
            debit,
            credit,
            amount,
            who: who.into(),
            why: why.into(),
            ..Default::default()
        }],
    )
    .map_err(CoreError::from_sql)?;
    Ok(Outcome::new(
        ids.first().copied(),
        format!("{kind} {amount} posted as entry {}", ids[0]),
    ))
}

/// Checks a payment: `Ok(Err(outcome))` when the same payment was posted
/// before (nothing to do), `Ok(Ok(entry))` for a new one. The same id with
/// another account, amount or value time is refused naming the field.
fn payment_entry(
    tx: &Transaction<'_>,
    p: &Payment,
    who: &str,
    now_ms: i64,
) -> Result<Result<NewEntry, Outcome>, CoreError> {
    positive("amount", p.amount)?;
    text("payment id", &p.ext_id, true)?;
    text("source", &p.source, true)?;
    text("reason", &p.why, true)?;
    if p.source.contains(':') {
        return Err(CoreError::Invalid(format!(
            "source {:?} may not contain ':'",
            p.source
        )));
    }
    let key = format!("{}:{}", p.source, p.ext_id);
    let id = account_id(tx, &p.account)?;
    let prior: Option<(i64, Option<i64>, i64, i64)> = tx
        .prepare_cached("SELECT id, account_id, amount, ts_ms FROM entries WHERE ext_id = ?1")
        .and_then(|mut st| {
            st.query_row(params![key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(CoreError::from_sql)?;
    let at = p.at_ms.unwrap_or(now_ms);
    if let Some((entry, acc, amount, ts)) = prior {
        if acc != Some(id) {
            return Err(CoreError::Conflict(format!(
                "payment {key} was posted to another account (entry {entry}); field account differs"
            )));
        }
        if amount != p.amount.0 {
            return Err(CoreError::Conflict(format!(
                "payment {key} was posted with amount {} (entry {entry}); field amount differs ({})",
                Money(amount),
                p.amount
            )));
        }
        if p.at_ms.is_some() && ts != at {
            return Err(CoreError::Conflict(format!(
                "payment {key} was posted with another value time (entry {entry}); field at differs"
            )));
        }
        return Ok(Err(Outcome {
            changed: false,
            message: format!("payment {key} already posted as entry {entry}; nothing changed"),
            id: Some(entry),
        }));
    }
    Ok(Ok(NewEntry {
        ts_ms: at,
        kind: ledger::PAYMENT,
        account_id: Some(id),
        debit: ledger::payments_book(&p.source),
        credit: account_book(id),
        amount: p.amount,
        ext_id: Some(key),
        who: who.into(),
        why: p.why.clone(),
        ..Default::default()
    }))
}

/// Posts a payment once: a replay with the same fields changes nothing and
/// says so.
fn payment(
    tx: &Transaction<'_>,
    p: &Payment,
    who: &str,
    now_ms: i64,
) -> Result<Outcome, CoreError> {
    let entry = match payment_entry(tx, p, who, now_ms)? {
        Ok(e) => e,
        Err(already) => return Ok(already),
    };
    let key = entry.ext_id.clone().unwrap_or_default();
    let ids = post(tx, now_ms, &[entry]).map_err(CoreError::from_sql)?;
    Ok(Outcome::new(
        Some(ids[0]),
        format!(
            "payment {key} of {} to account {} posted as entry {}",
            p.amount, p.account, ids[0]
        ),
    ))
}
