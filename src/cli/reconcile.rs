//! `kopek reconcile`: nft counters against NetFlow per subscriber address
//! (docs/enforcer.md).

use std::path::Path;

use clap::Args;

use super::billing;
use super::format::OutputFormat;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Start (ISP's zone); default: 24 h ago.
    #[arg(long)]
    from: Option<String>,
    /// End, exclusive; default: now.
    #[arg(long)]
    to: Option<String>,
    /// Flag differences above this many percent (one decimal: 0.5).
    #[arg(long, default_value = "5", value_parser = percent)]
    threshold: u64,
    /// Ignore subscribers with less traffic than this (bytes).
    #[arg(long, default_value_t = 1_000_000)]
    min_bytes: u64,
    /// Only the flagged ones.
    #[arg(long)]
    flagged: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

/// "5" or "0.5" percent as permille, exactly.
fn percent(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a percentage like 5 or 0.5, got {s:?}");
    let (int, frac) = s
        .trim_end_matches('%')
        .split_once('.')
        .unwrap_or((s.trim_end_matches('%'), "0"));
    if frac.len() != 1 {
        return Err(bad());
    }
    let int: u64 = int.parse().map_err(|_| bad())?;
    let frac: u64 = frac.parse().map_err(|_| bad())?;
    if int > 100 {
        return Err(bad());
    }
    Ok(int * 10 + frac)
}

pub fn exec(config_path: &Path, a: &ReconcileArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let now = chrono::Utc::now().timestamp_millis();
    let from = billing::time(&config, &a.from)?.unwrap_or(now - 86_400_000);
    let to = billing::time(&config, &a.to)?.unwrap_or(now + 1);
    let mut rows = kopek_enforcer::reconcile::reconcile(
        &config.state_dir,
        from,
        to,
        a.threshold,
        a.min_bytes,
    )?;
    if a.flagged {
        rows.retain(|r| r.flagged);
    }
    billing::print_rows(
        a.format,
        &[
            "address",
            "nft_in",
            "netflow_in",
            "nft_out",
            "netflow_out",
            "diff_%",
            "flag",
        ],
        &rows,
        |r| {
            vec![
                r.address.clone(),
                r.nft_in.to_string(),
                r.netflow_in.to_string(),
                r.nft_out.to_string(),
                r.netflow_out.to_string(),
                format!("{}.{}", r.diff_permille / 10, r.diff_permille % 10),
                if r.flagged {
                    "DIFFERS".into()
                } else {
                    String::new()
                },
            ]
        },
    )
}
