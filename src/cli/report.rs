//! `kopek report statement|usage|invoice|debtors|revenue|blocked|audit`.

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_core::money::Money;
use kopek_core::run::now_ms;

use super::billing;
use super::format::{OutputFormat, time_in};

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    cmd: Cmd,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    format: OutputFormat,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Opening balance, every entry, closing balance.
    Statement {
        account: String,
        /// Start (ISP's zone); default: start of this month.
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive; default: now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Usage per day and service with what it cost.
    Usage {
        account: String,
        /// First day (2026-10-01); default: the 1st of this month.
        #[arg(long)]
        from: Option<String>,
        /// Last day, inclusive; default: today.
        #[arg(long)]
        to: Option<String>,
    },
    /// The month's invoice of an account.
    Invoice {
        account: String,
        /// Billing period, e.g. 2026-10.
        #[arg(long)]
        period: String,
    },
    /// Accounts whose balance minus accrued is below a threshold.
    Debtors {
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        below: Money,
    },
    /// Revenue by service/class and payments by source for a period.
    Revenue {
        #[arg(long)]
        period: String,
    },
    /// Accounts not allowed now: reason and since when.
    Blocked,
    /// Operator commands, applied and refused: who, what, why, result.
    Audit {
        /// From (ISP's zone); default: 24 h ago.
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

pub fn exec(config_path: &Path, a: &ReportArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let c = &config;
    let tz = c.timezone;
    let b = billing::open_read(c)?;
    let now = now_ms();
    let month_start = kopek_core::rating::period_of(tz, now).start_ms;
    match &a.cmd {
        Cmd::Statement { account, from, to } => {
            let from = billing::time(c, from)?.unwrap_or(month_start);
            let to = billing::time(c, to)?.unwrap_or(now + 1);
            let s = b.statement(account, from, to)?;
            if a.format == OutputFormat::Table {
                outln!(
                    "statement of account {} ({}), {} – {}",
                    s.account,
                    s.book,
                    time_in(from, tz),
                    time_in(to, tz)
                );
                outln!("opening balance {:>12}", s.opening);
            }
            billing::print_rows(
                a.format,
                &[
                    "entry", "time", "kind", "service", "day", "amount", "id", "who", "why",
                ],
                &s.entries,
                |e| {
                    vec![
                        e.id.to_string(),
                        time_in(e.ts_ms, tz),
                        e.kind.clone(),
                        e.service.clone().unwrap_or_default(),
                        e.day.clone().unwrap_or_default(),
                        e.effect.to_string(),
                        e.ext_id.clone().unwrap_or_default(),
                        e.who.clone(),
                        e.why.clone(),
                    ]
                },
            )?;
            if a.format == OutputFormat::Table {
                outln!("closing balance {:>12}", s.closing);
            }
            Ok(())
        }
        Cmd::Usage { account, from, to } => {
            let today = kopek_core::cycle::day_label(tz, now);
            let first = kopek_core::cycle::day_label(tz, month_start);
            let rows = b.usage(
                account,
                from.as_deref().unwrap_or(&first),
                to.as_deref().unwrap_or(&today),
            )?;
            billing::print_rows(
                a.format,
                &[
                    "day",
                    "service",
                    "class",
                    "in_bytes",
                    "out_bytes",
                    "charged",
                ],
                &rows,
                |r| {
                    vec![
                        r.day.clone(),
                        r.service.clone(),
                        r.class.clone(),
                        r.in_bytes.to_string(),
                        r.out_bytes.to_string(),
                        r.charged.to_string(),
                    ]
                },
            )
        }
        Cmd::Invoice { account, period } => {
            let inv = b.invoice(account, period)?;
            if a.format != OutputFormat::Table {
                return billing::print_rows(
                    a.format,
                    &["account", "period", "charges", "payments", "closing"],
                    &[inv],
                    |i| {
                        vec![
                            i.account.clone(),
                            i.period.clone(),
                            i.charges.to_string(),
                            i.payments.to_string(),
                            i.closing.to_string(),
                        ]
                    },
                );
            }
            outln!(
                "invoice: account {} ({}), period {}",
                inv.account,
                inv.subscriber,
                inv.period
            );
            outln!("opening balance {:>12}", inv.opening);
            billing::print_rows(
                a.format,
                &[
                    "service",
                    "class",
                    "tariff",
                    "in_bytes",
                    "out_bytes",
                    "days",
                    "amount",
                ],
                &inv.lines,
                |l| {
                    vec![
                        l.service.clone(),
                        l.class.clone(),
                        format!("{} v{}", l.tariff, l.version),
                        l.in_bytes.to_string(),
                        l.out_bytes.to_string(),
                        l.days.to_string(),
                        l.amount.to_string(),
                    ]
                },
            )?;
            outln!("charges         {:>12}", inv.charges);
            outln!("payments        {:>12}", inv.payments);
            outln!("other           {:>12}", inv.other);
            outln!("closing balance {:>12}", inv.closing);
            if inv.accrued.0 != 0 {
                outln!(
                    "(of the charges, {} is accrued and not yet posted)",
                    inv.accrued
                );
            }
            Ok(())
        }
        Cmd::Debtors { below } => {
            let rows = b.debtors(*below, now)?;
            billing::print_rows(
                a.format,
                &[
                    "account",
                    "subscriber",
                    "balance",
                    "accrued",
                    "available",
                    "state",
                ],
                &rows,
                |r| {
                    vec![
                        r.account.clone(),
                        r.subscriber.clone(),
                        r.balance.to_string(),
                        r.accrued.to_string(),
                        r.available.to_string(),
                        r.state.clone(),
                    ]
                },
            )
        }
        Cmd::Revenue { period } => {
            let rows = b.revenue(period)?;
            billing::print_rows(
                a.format,
                &["book", "kind", "entries", "amount"],
                &rows,
                |r| {
                    vec![
                        r.book.clone(),
                        r.kind.clone(),
                        r.entries.to_string(),
                        r.amount.to_string(),
                    ]
                },
            )
        }
        Cmd::Audit { from, limit } => {
            let from = billing::time(c, from)?.unwrap_or(now - 86_400_000);
            let rows = b.audit(from, *limit)?;
            billing::print_rows(
                a.format,
                &["id", "time", "who", "command", "args", "result"],
                &rows,
                |r| {
                    vec![
                        r.id.to_string(),
                        time_in(r.ts_ms, tz),
                        r.who.clone(),
                        r.command.clone(),
                        r.args.clone(),
                        r.result.clone(),
                    ]
                },
            )
        }
        Cmd::Blocked => {
            let rows = b.blocked()?;
            billing::print_rows(
                a.format,
                &["account", "state", "since", "detail"],
                &rows,
                |r| {
                    vec![
                        r.account.clone(),
                        r.state.clone(),
                        time_in(r.since_ms, tz),
                        r.detail.clone(),
                    ]
                },
            )
        }
    }
}
