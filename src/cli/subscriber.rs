//! `kopek subscriber add|set|ls`: people and organisations.

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_core::ops::Command;

use super::billing::{self, Via};
use super::format::OutputFormat;

#[derive(Debug, Args)]
pub struct SubscriberArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a subscriber (prints its id).
    Add {
        #[arg(long)]
        name: String,
        /// person or org.
        #[arg(long, default_value = "person")]
        kind: String,
        #[arg(long, default_value = "")]
        contact: String,
        #[command(flatten)]
        via: Via,
    },
    /// Change a subscriber's name or contact.
    Set {
        id: i64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        contact: Option<String>,
        #[command(flatten)]
        via: Via,
    },
    /// List subscribers with their accounts.
    Ls {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

pub fn exec(config_path: &Path, a: &SubscriberArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    match &a.cmd {
        Cmd::Add {
            name,
            kind,
            contact,
            via,
        } => billing::run(
            &config,
            via,
            Command::SubscriberAdd {
                name: name.clone(),
                kind: kind.clone(),
                contact: contact.clone(),
            },
        ),
        Cmd::Set {
            id,
            name,
            contact,
            via,
        } => billing::run(
            &config,
            via,
            Command::SubscriberSet {
                id: *id,
                name: name.clone(),
                contact: contact.clone(),
            },
        ),
        Cmd::Ls { format } => {
            let b = billing::open_read(&config)?;
            let rows = b.subscribers()?;
            billing::print_rows(
                *format,
                &["id", "name", "kind", "contact", "accounts"],
                &rows,
                |r| {
                    vec![
                        r.id.to_string(),
                        r.name.clone(),
                        r.kind.clone(),
                        r.contact.clone(),
                        r.accounts.join(" "),
                    ]
                },
            )
        }
    }
}
