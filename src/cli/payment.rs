//! `kopek payment add|import|refund`: money in (idempotent by the payment
//! system's id) and out.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use kopek_core::money::Money;
use kopek_core::ops::{Command, Payment};

use super::billing::{self, Via};

#[derive(Debug, Args)]
pub struct PaymentArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Post a payment once: the same --id again changes nothing.
    Add {
        account: String,
        #[arg(allow_negative_numbers = true)]
        amount: Money,
        /// The payment system's transaction id.
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "cash")]
        source: String,
        /// Value time (default: now).
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Import a bank or gateway register (CSV: account,amount,id[,source,date,comment]); all or nothing.
    Import {
        file: PathBuf,
        #[arg(long, default_value = "bank")]
        source: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        via: Via,
    },
    /// Pay money back to a subscriber.
    Refund {
        account: String,
        #[arg(allow_negative_numbers = true)]
        amount: Money,
        #[arg(long, default_value = "cash")]
        source: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
}

pub fn exec(config_path: &Path, a: &PaymentArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let c = &config;
    match &a.cmd {
        Cmd::Add {
            account,
            amount,
            id,
            source,
            at,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::PaymentAdd(Payment {
                account: account.clone(),
                amount: *amount,
                ext_id: id.clone(),
                source: source.clone(),
                at_ms: billing::time(c, at)?,
                why: reason.clone(),
                line: None,
            }),
        ),
        Cmd::Import {
            file,
            source,
            reason,
            via,
        } => {
            let name = file.display().to_string();
            let text =
                kopek_config::files::read_limited_text(file, kopek_config::files::MAX_IMPORT_BYTES)
                    .map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
            let why = reason.clone().unwrap_or_else(|| format!("import {name}"));
            let payments =
                kopek_core::import::parse_payments_csv(&name, &text, source, c.timezone, &why)?;
            billing::run(
                c,
                via,
                Command::PaymentImport {
                    file: name,
                    payments,
                },
            )
        }
        Cmd::Refund {
            account,
            amount,
            source,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::Refund {
                account: account.clone(),
                amount: *amount,
                source: source.clone(),
                why: reason.clone(),
            },
        ),
    }
}
