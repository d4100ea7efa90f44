//! `kopek export accounting --period 2026-10`: the month's charges and
//! payments per account for bookkeeping (docs/accounting-export.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::billing;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Charges and payments of a billing period as CSV.
    Accounting {
        #[arg(long)]
        period: String,
        /// Write here instead of stdout (replaced atomically).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

pub fn exec(config_path: &Path, a: &ExportArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let b = billing::open_read(&config)?;
    let Cmd::Accounting { period, output } = &a.cmd;
    let rows = b.export_accounting(period)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "entry",
        "date",
        "account",
        "subscriber",
        "kind",
        "service",
        "amount",
        "payment_id",
        "reason",
    ])?;
    for r in &rows {
        w.write_record([
            if r.entry == 0 {
                String::new()
            } else {
                r.entry.to_string()
            },
            r.date.clone(),
            r.account.clone(),
            r.subscriber.clone(),
            r.kind.clone(),
            r.service.clone(),
            r.amount.to_string(),
            r.ext_id.clone(),
            r.why.clone(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    match output {
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(super::output_error)?,
        Some(p) => {
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, p)?;
            eprintln!("{}: {} entries of {period}", p.display(), rows.len());
        }
    }
    Ok(())
}
