//! `kopek classifier [run]`, `kopek classifier stats`.

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_classifier::run::{read_stats, serve};

use super::format::{OutputFormat, human_bytes, human_count, time_utc};

#[derive(Debug, Args)]
pub struct ClassifierArgs {
    #[command(subcommand)]
    cmd: Option<ClassifierCmd>,
}

#[derive(Debug, Subcommand)]
enum ClassifierCmd {
    /// Run the classifier in the foreground (the default; systemd runs this).
    Run,
    /// Print the counters of the running (or last run) classifier.
    Stats {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

pub fn exec(config_path: &Path, args: &ClassifierArgs) -> super::Result {
    match args.cmd.as_ref().unwrap_or(&ClassifierCmd::Run) {
        ClassifierCmd::Run => Ok(serve(config_path)?),
        ClassifierCmd::Stats { format } => {
            let config = super::load_config_or_defaults(config_path)?;
            let s = read_stats(&config.state_dir)?;
            if *format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            let c = &s.committed;
            println!("classifier, last commit {}", time_utc(s.last_commit_ms));
            for (k, v) in [
                ("records counted", human_count(c.records)),
                ("bytes counted", human_bytes(c.bytes, 1024)),
                ("split over buckets", human_count(c.split_records)),
                ("clamped (implausibly long)", human_count(c.clamped_records)),
                ("unattributed records", human_count(c.unattributed_records)),
                ("transit records", human_count(c.transit_records)),
                (
                    "unbilled (no billing point)",
                    human_count(c.unbilled_records),
                ),
                ("loss records", human_count(c.loss_records)),
                ("commits", human_count(s.commits)),
                ("segments pending", human_count(s.segments_pending)),
                (
                    "class version",
                    format!(
                        "{} ({} prefixes, sha256 {})",
                        s.class_version,
                        s.class_prefixes,
                        &s.class_version_sha256[..s.class_version_sha256.len().min(12)]
                    ),
                ),
                ("bound prefixes", human_count(s.bound_prefixes)),
                ("accounts", human_count(s.accounts)),
                ("newest record", time_utc(s.newest_record_ms)),
            ] {
                println!("  {k:<28} {v}");
            }
            for d in &s.damaged_segments {
                println!("  DAMAGED: {d}");
            }
            Ok(())
        }
    }
}
