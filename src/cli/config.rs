//! `kopek config check`.

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_config::Config;

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
            if print_effective {
                print!("{}", Config::effective_toml(path)?);
            } else {
                println!(
                    "{}: ok ({} exporter(s), state dir {})",
                    path.display(),
                    config.collector.exporters.len(),
                    config.state_dir.display()
                );
            }
            Ok(())
        }
    }
}
