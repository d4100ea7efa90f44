//! `kopek config check`.

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_classifier::bindings::read_static;
use kopek_classifier::classes::ClassTable;
use kopek_config::Config;

/// A broken file the config names is a config error (exit 78).
fn config_error(e: impl std::fmt::Display) -> super::Failure {
    super::Failure::config(anyhow::anyhow!("{e}"))
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    cmd: ConfigCmd,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate the file; exit non-zero naming the key on error.
    Check {
        /// Print the configuration with every default filled in.
        #[arg(long)]
        print_effective: bool,
    },
}

pub fn exec(path: &Path, args: &ConfigArgs) -> super::Result {
    match args.cmd {
        ConfigCmd::Check { print_effective } => {
            let config = Config::load(path)?;
            // The files the config names must parse too: class lists and
            // static bindings (the same code the classifier loads them with).
            let lists = ClassTable::load(&config.classifier).map_err(config_error)?;
            if let Some(p) = &config.collector.pcap {
                kopek_collector::capture::check_filter(&p.filter).map_err(|e| {
                    config_error(format!(
                        "{}: key `collector.pcap.filter`: libpcap cannot compile {e}",
                        path.display()
                    ))
                })?;
            }
            let statics = match &config.classifier.bindings_file {
                Some(f) => read_static(f).map_err(config_error)?.len(),
                None => 0,
            };
            if print_effective {
                out!("{}", Config::effective_toml(path)?);
            } else {
                outln!(
                    "{}: ok ({} exporter(s), {} class(es) with {} prefixes, {} static binding(s), {} billing point(s), state dir {})",
                    path.display(),
                    config.collector.exporters.len(),
                    lists.classes.len(),
                    lists.prefixes(),
                    statics,
                    config.classifier.points.len(),
                    config.state_dir.display()
                );
            }
            Ok(())
        }
    }
}
