//! `kopek explain ENTRY`: a ledger entry traced to the tariff version, the
//! price rule, the tier-2 rows and the tier-1 segments behind it.

use std::path::Path;

use clap::Args;

use super::billing;
use super::format::{OutputFormat, time_in};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Ledger entry id (from a statement).
    entry: i64,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub fn exec(config_path: &Path, a: &ExplainArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let b = billing::open_read(&config)?;
    let x = b.explain(a.entry, &config.state_dir)?;
    if a.format != OutputFormat::Table {
        outln!("{}", serde_json::to_string_pretty(&x)?);
        return Ok(());
    }
    outln!(
        "entry {}: {} {} on {}",
        x.entry,
        x.kind,
        x.amount,
        time_in(x.ts_ms, config.timezone)
    );
    outln!(
        "  {} → {} (account {})",
        x.debit,
        x.credit,
        x.account.as_deref().unwrap_or("-")
    );
    outln!("  by {}: {}", x.who, x.why);
    if let Some(id) = &x.ext_id {
        outln!("  payment id {id}");
    }
    if let Some(s) = &x.service {
        outln!(
            "  service {s}, day {}, period {}",
            x.day.as_deref().unwrap_or("-"),
            x.period.as_deref().unwrap_or("-")
        );
    }
    if let Some(t) = &x.tariff {
        outln!("tariff: {t}");
    }
    if let Some(r) = &x.rule {
        outln!("rule: {r}");
    }
    for c in &x.computation {
        outln!("  {c}");
    }
    if !x.tier2.is_empty() {
        outln!("tier 2 (tier2.sqlite, table traffic):");
        for t in &x.tier2 {
            outln!("  {t}");
        }
    }
    if !x.tier1.is_empty() {
        outln!("tier 1 segments covering the period:");
        for t in &x.tier1 {
            outln!("  {t}");
        }
    }
    Ok(())
}
