//! `kopek account ...`: accounts, their policy, tariff, logins, blocks,
//! freezes and promised payments.

use std::path::Path;

use clap::{Args, Subcommand};
use ipnet::IpNet;
use kopek_core::money::Money;
use kopek_core::ops::{Command, Policy};
use kopek_core::run::now_ms;

use super::billing::{self, Via};
use super::format::{OutputFormat, time_in};

#[derive(Debug, Args)]
pub struct AccountArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Open an account for a subscriber.
    Add {
        /// Account number (what bindings and tier 2 call it).
        number: String,
        #[arg(long)]
        subscriber: i64,
        /// Another account of the same subscriber that pays for this one.
        #[arg(long)]
        payer: Option<String>,
        /// block-at-zero or credit.
        #[arg(long, default_value = "block-at-zero", value_parser = parse_policy)]
        policy: Policy,
        #[arg(long, default_value = "0", allow_negative_numbers = true)]
        credit_limit: Money,
        #[arg(long)]
        tariff: Option<String>,
        /// When the tariff starts (default: now).
        #[arg(long)]
        tariff_from: Option<String>,
        #[command(flatten)]
        via: Via,
    },
    /// Balance, accrued, available money and access state.
    Show {
        number: String,
        /// As of this time (promises and freezes then); default: now.
        #[arg(long)]
        at: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Change the policy or credit limit.
    Set {
        number: String,
        #[arg(long, value_parser = parse_policy)]
        policy: Option<Policy>,
        #[arg(long, allow_negative_numbers = true)]
        credit_limit: Option<Money>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Block by an operator's decision.
    Block {
        number: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Lift an operator's block.
    Unblock {
        number: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Move to a tariff (default: at the start of the next billing period).
    Tariff {
        number: String,
        tariff: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Voluntary freeze: no periodic fee, traffic blocked.
    Freeze {
        number: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Promised payment: temporary credit that expires by itself.
    Promise {
        number: String,
        #[arg(allow_negative_numbers = true)]
        amount: Money,
        #[arg(long)]
        until: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Add a login (pppd/RADIUS user name) to the account.
    Login {
        number: String,
        login: String,
        #[command(flatten)]
        via: Via,
    },
    /// A static address or prefix of the account (for the classifier).
    Bind {
        number: String,
        #[arg(value_parser = parse_net)]
        addr: IpNet,
    },
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::parse(s).map_err(|e| e.to_string())
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    kopek_config::parse_net(s).ok_or_else(|| format!("expected an address or prefix, got {s:?}"))
}

pub fn exec(config_path: &Path, a: &AccountArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let c = &config;
    match &a.cmd {
        Cmd::Add {
            number,
            subscriber,
            payer,
            policy,
            credit_limit,
            tariff,
            tariff_from,
            via,
        } => billing::run(
            c,
            via,
            Command::AccountAdd {
                number: number.clone(),
                subscriber: *subscriber,
                payer: payer.clone(),
                policy: *policy,
                credit_limit: *credit_limit,
                tariff: tariff.clone(),
                tariff_from_ms: billing::time(c, tariff_from)?,
            },
        ),
        Cmd::Show { number, at, format } => {
            let b = billing::open_read(c)?;
            let s = b.account_status(number, billing::time(c, at)?.unwrap_or_else(now_ms))?;
            match format {
                OutputFormat::Table => {
                    outln!("account      {}", s.number);
                    outln!("subscriber   {} ({})", s.subscriber, s.subscriber_id);
                    if let Some(p) = &s.payer {
                        outln!("paid by      {p}");
                    }
                    outln!("tariff       {}", s.tariff.as_deref().unwrap_or("-"));
                    outln!("logins       {}", s.logins.join(" "));
                    outln!(
                        "policy       {} (credit limit {})",
                        s.policy,
                        s.credit_limit
                    );
                    outln!("balance      {:>12}  (posted entries)", s.balance);
                    outln!("accrued      {:>12}  (charged, not yet posted)", s.accrued);
                    outln!("promised     {:>12}", s.promised);
                    outln!("available    {:>12}", s.available);
                    let since = s
                        .since_ms
                        .map(|t| format!(" since {}", time_in(t, c.timezone)))
                        .unwrap_or_default();
                    outln!("access       {}{since}", s.state);
                }
                _ => billing::print_rows(*format, &["account"], &[s], |s| vec![s.number.clone()])?,
            }
            Ok(())
        }
        Cmd::Set {
            number,
            policy,
            credit_limit,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::AccountSet {
                number: number.clone(),
                policy: *policy,
                credit_limit: *credit_limit,
                why: reason.clone(),
            },
        ),
        Cmd::Block {
            number,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::AccountBlock {
                number: number.clone(),
                why: reason.clone(),
            },
        ),
        Cmd::Unblock {
            number,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::AccountUnblock {
                number: number.clone(),
                why: reason.clone(),
            },
        ),
        Cmd::Tariff {
            number,
            tariff,
            from,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::AccountTariff {
                number: number.clone(),
                tariff: tariff.clone(),
                from_ms: billing::time(c, from)?,
                why: reason.clone(),
            },
        ),
        Cmd::Freeze {
            number,
            from,
            to,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::Freeze {
                account: number.clone(),
                from_ms: billing::time(c, &Some(from.clone()))?.unwrap_or_default(),
                to_ms: billing::time(c, &Some(to.clone()))?.unwrap_or_default(),
                why: reason.clone(),
            },
        ),
        Cmd::Promise {
            number,
            amount,
            until,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::Promise {
                account: number.clone(),
                amount: *amount,
                until_ms: billing::time(c, &Some(until.clone()))?.unwrap_or_default(),
                why: reason.clone(),
            },
        ),
        Cmd::Login { number, login, via } => billing::run(
            c,
            via,
            Command::LoginAdd {
                login: login.clone(),
                account: number.clone(),
            },
        ),
        Cmd::Bind { number, addr } => {
            // The account must exist in billing before its addresses count.
            let b = billing::open_read(c)?;
            b.account_status(number, now_ms())?;
            std::fs::create_dir_all(&c.state_dir)?;
            let mut reg = kopek_classifier::bindings::Registry::open(&c.state_dir)?;
            let id = reg.add(
                number,
                *addr,
                kopek_classifier::bindings::FOREVER_START_MS,
                None,
                "core",
                None,
            )?;
            outln!("binding {id}: {addr} -> {number} (static)");
            Ok(())
        }
    }
}
