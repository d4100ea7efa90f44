//! `kopek ledger verify|correct|credit`: proving the ledger and operator
//! corrections (always new entries, never edits).

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_core::money::Money;
use kopek_core::ops::Command;

use super::billing::{self, Via};

#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Prove every balance equals the sum of its entries and the chain is intact.
    Verify,
    /// A correction: positive gives money to the account, negative takes it.
    Correct {
        account: String,
        #[arg(allow_hyphen_values = true)]
        amount: Money,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// A goodwill credit (e.g. compensation for an outage).
    Credit {
        account: String,
        #[arg(allow_negative_numbers = true)]
        amount: Money,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
}

pub fn exec(config_path: &Path, a: &LedgerArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let c = &config;
    match &a.cmd {
        Cmd::Verify => {
            let b = billing::open_read(c)?;
            let v = b.verify()?;
            if v.problems.is_empty() {
                outln!(
                    "ledger ok: {} entries, {} books, books sum to {}, hash chain intact, accruals match their volumes and tier 2",
                    v.entries,
                    v.books,
                    Money(v.total)
                );
                Ok(())
            } else {
                for p in &v.problems {
                    eprintln!("{p}");
                }
                Err(
                    anyhow::anyhow!("ledger verification failed: {} problems", v.problems.len())
                        .into(),
                )
            }
        }
        Cmd::Correct {
            account,
            amount,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::Correction {
                account: account.clone(),
                amount: *amount,
                why: reason.clone(),
            },
        ),
        Cmd::Credit {
            account,
            amount,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::Credit {
                account: account.clone(),
                amount: *amount,
                why: reason.clone(),
            },
        ),
    }
}
