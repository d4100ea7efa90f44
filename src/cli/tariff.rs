//! `kopek tariff add|update|show|ls`: tariffs and their version archive.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use kopek_core::ops::Command;

use super::billing::{self, Via};
use super::format::{OutputFormat, time_in};

#[derive(Debug, Args)]
pub struct TariffArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a tariff from a file (docs/tariffs.md); version 1.
    Add {
        name: String,
        file: PathBuf,
        /// Effective from (default: now).
        #[arg(long)]
        effective: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// A new version (default effective: start of the next billing period).
    Update {
        name: String,
        file: PathBuf,
        #[arg(long)]
        effective: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        via: Via,
    },
    /// Print a version's content (default: the latest).
    Show {
        name: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Every tariff version ever stored.
    Ls {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Check a tariff file without storing it.
    Check { file: PathBuf },
}

fn read(file: &Path) -> super::Result<String> {
    kopek_config::files::read_limited_text(file, kopek_config::files::MAX_TARIFF_BYTES)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()).into())
}

pub fn exec(config_path: &Path, a: &TariffArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let c = &config;
    match &a.cmd {
        Cmd::Add {
            name,
            file,
            effective,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::TariffAdd {
                name: name.clone(),
                content: read(file)?,
                effective_ms: billing::time(c, effective)?,
                why: reason.clone(),
            },
        ),
        Cmd::Update {
            name,
            file,
            effective,
            reason,
            via,
        } => billing::run(
            c,
            via,
            Command::TariffUpdate {
                name: name.clone(),
                content: read(file)?,
                effective_ms: billing::time(c, effective)?,
                why: reason.clone(),
            },
        ),
        Cmd::Show { name, version } => {
            let b = billing::open_read(c)?;
            let v = b.tariff_version(name, *version)?;
            outln!(
                "# tariff {} version {} (id {}), effective {}, sha256 {}\n# by {}: {}",
                v.name,
                v.version,
                v.id,
                time_in(v.effective_ms, c.timezone),
                v.sha256,
                v.who,
                v.why
            );
            out!("{}", v.content);
            Ok(())
        }
        Cmd::Ls { format } => {
            let b = billing::open_read(c)?;
            let rows = b.tariff_versions()?;
            let tz = c.timezone;
            billing::print_rows(
                *format,
                &[
                    "id",
                    "tariff",
                    "version",
                    "effective",
                    "sha256",
                    "who",
                    "why",
                ],
                &rows,
                |v| {
                    vec![
                        v.id.to_string(),
                        v.name.clone(),
                        v.version.to_string(),
                        time_in(v.effective_ms, tz),
                        v.sha256[..12.min(v.sha256.len())].to_string(),
                        v.who.clone(),
                        v.why.clone(),
                    ]
                },
            )
        }
        Cmd::Check { file } => {
            let t = kopek_core::tariff::Tariff::from_toml(&read(file)?)
                .map_err(|e| super::Failure::config(anyhow::anyhow!("{}: {e}", file.display())))?;
            outln!("{}: ok, sha256 {}", file.display(), t.sha256());
            out!("{}", t.canonical());
            Ok(())
        }
    }
}
