//! Shared plumbing of the billing commands: changes go to the running core
//! over its control socket (or, with `--offline`, straight to the database
//! under the core's lock); reports read the database directly.

use clap::Args;
use kopek_config::Config;
use kopek_core::control::{self, Request};
use kopek_core::ops::{Command, Outcome};
use kopek_core::run::{Core, now_ms};
use kopek_core::store::Billing;

/// How a change reaches the billing database.
#[derive(Debug, Clone, Args)]
pub struct Via {
    /// Apply directly while the core is stopped (takes its lock; refused
    /// while it runs).
    #[arg(long)]
    pub offline: bool,
    /// With --offline: apply as of this time (replaying past events, or a
    /// simulation); refused if before the core's last rating cycle.
    #[arg(long, requires = "offline")]
    pub now: Option<String>,
}

/// Sends one command to the core and returns what it did.
pub fn send(config: &Config, via: &Via, cmd: Command) -> super::Result<Outcome> {
    if via.offline {
        let now = time(config, &via.now)?.unwrap_or_else(now_ms);
        let mut core = Core::open(config)?;
        if let Some(last) = core.billing.meta_i64(kopek_core::store::META_LAST_CYCLE)?
            && now < last
        {
            return Err(anyhow::anyhow!(
                "--now {} is before the last rating cycle ({}): the past is already rated",
                kopek_core::fmt_ms(now, config.timezone),
                kopek_core::fmt_ms(last, config.timezone)
            )
            .into());
        }
        return Ok(core.billing.apply(&cmd, &control::current_user(), now)?);
    }
    let reply = control::call(&config.core.socket, &Request::Apply { command: cmd })?;
    Ok(reply.into_result()?)
}

/// Sends a command and prints its outcome.
pub fn run(config: &Config, via: &Via, cmd: Command) -> super::Result {
    let o = send(config, via, cmd)?;
    outln!("{}", o.message);
    Ok(())
}

/// A read-only handle for reports.
pub fn open_read(config: &Config) -> super::Result<Billing> {
    Ok(Billing::open_read(&config.state_dir, config.timezone)?)
}

/// `--at`-style times in the ISP's zone.
pub fn time(config: &Config, s: &Option<String>) -> super::Result<Option<i64>> {
    match s {
        None => Ok(None),
        Some(s) => Ok(Some(
            kopek_core::import::parse_time_in(s, config.timezone).map_err(anyhow::Error::msg)?,
        )),
    }
}

/// Prints rows as a table, CSV or JSON.
pub fn print_rows<T: serde::Serialize>(
    format: super::format::OutputFormat,
    header: &[&str],
    rows: &[T],
    cells: impl Fn(&T) -> Vec<String>,
) -> super::Result {
    use super::format::OutputFormat;
    match format {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(rows)?),
        OutputFormat::Csv => {
            outln!("{}", header.join(","));
            for r in rows {
                let line: Vec<String> = cells(r).into_iter().map(|c| csv_field(&c)).collect();
                outln!("{}", line.join(","));
            }
        }
        OutputFormat::Table => {
            let body: Vec<Vec<String>> = rows.iter().map(&cells).collect();
            let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for r in &body {
                for (i, c) in r.iter().enumerate() {
                    if let Some(x) = w.get_mut(i) {
                        *x = (*x).max(c.chars().count());
                    }
                }
            }
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<width$}", width = w.get(i).copied().unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            outln!("{}", line(header.iter().map(|h| h.to_string()).collect()));
            for r in body {
                outln!("{}", line(r));
            }
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
