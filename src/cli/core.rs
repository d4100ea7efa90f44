//! `kopek core run|cycle|stats`: the billing daemon (tier 3).

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_core::run::{Core, STATS_FILE, now_ms};

use super::billing;

#[derive(Debug, Args)]
pub struct CoreArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the core in the foreground (systemd: kopek-core.service).
    Run,
    /// Run one rating cycle now (or as of --at) on a stopped core's database.
    Cycle {
        /// Rate as of this time (must not be before the last cycle).
        #[arg(long)]
        at: Option<String>,
    },
    /// Ask the running core to rate at once.
    Nudge,
    /// The last cycle's figures (from the running core's stats file).
    Stats,
}

pub fn exec(config_path: &Path, a: &CoreArgs) -> super::Result {
    match &a.cmd {
        Cmd::Run => kopek_core::run::serve(config_path).map_err(|e| match e {
            kopek_core::CoreError::Invalid(m) if m.contains(&config_path.display().to_string()) => {
                super::Failure::config(anyhow::anyhow!(m))
            }
            e => e.into(),
        }),
        Cmd::Cycle { at } => {
            let config = super::load_config_or_defaults(config_path)?;
            let at = billing::time(&config, at)?.unwrap_or_else(now_ms);
            let mut core = Core::open(&config)?;
            let r = core.cycle(at)?;
            outln!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Cmd::Nudge => {
            let config = super::load_config_or_defaults(config_path)?;
            let r = kopek_core::control::call(
                &config.core.socket,
                &kopek_core::control::Request::Cycle,
            )?;
            outln!("{}", r.into_result()?.message);
            Ok(())
        }
        Cmd::Stats => {
            let config = super::load_config_or_defaults(config_path)?;
            let p = config.state_dir.join(STATS_FILE);
            let mut v: serde_json::Value =
                kopek_collector::state_file::read_json(&p).map_err(|e| match e.is_missing() {
                    true => anyhow::anyhow!("{e} (is the core running?)"),
                    false => anyhow::anyhow!("{e}"),
                })?;
            let process = super::DaemonProcess {
                pid: v["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
                started_ms: 0,
                written_ms: 0,
                stopped: v["stopped"].as_bool().unwrap_or(false),
                rewritten_every_ms: 0,
            };
            v["running"] = process.runs("core").into();
            outln!("{}", serde_json::to_string_pretty(&v)?);
            if let Some(n) = v["failed_cycles"].as_u64().filter(|&n| n > 0) {
                eprintln!(
                    "kopek: the last {n} rating cycle(s) failed, billing stands still: {}",
                    v["last_failure"]["error"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
    }
}
