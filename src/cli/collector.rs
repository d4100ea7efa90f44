//! `kopek collector [run]`, `kopek collector stats`.

use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use kopek_collector::run::{StatsSnapshot, serve, stats_path};

use super::format::{OutputFormat, human_count, time_utc};

#[derive(Debug, Args)]
pub struct CollectorArgs {
    #[command(subcommand)]
    cmd: Option<CollectorCmd>,
}

#[derive(Debug, Subcommand)]
enum CollectorCmd {
    /// Run the collector in the foreground (the default; systemd runs this).
    Run,
    /// Print the counters of the running (or last run) collector.
    Stats {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

pub fn exec(config_path: &Path, args: &CollectorArgs) -> super::Result {
    match args.cmd.as_ref().unwrap_or(&CollectorCmd::Run) {
        CollectorCmd::Run => Ok(serve(config_path)?),
        CollectorCmd::Stats { format } => {
            let config = super::load_config_or_defaults(config_path)?;
            let path = stats_path(&config.state_dir, &config.collector.name);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{}: no stats (has collector {:?} run?)",
                    path.display(),
                    config.collector.name
                )
            })?;
            let s: StatsSnapshot = serde_json::from_str(&text)
                .with_context(|| format!("{}: unreadable stats file", path.display()))?;
            match format {
                OutputFormat::Json => println!("{text}"),
                _ => print_stats(&s),
            }
            Ok(())
        }
    }
}

fn print_stats(s: &StatsSnapshot) {
    println!(
        "collector {} (pid {}), started {}, as of {}",
        s.collector,
        s.pid,
        time_utc(s.started_ms),
        time_utc(s.written_ms)
    );
    println!(
        "  datagrams received      {:>14}",
        human_count(s.datagrams_received)
    );
    println!(
        "  from unknown exporters  {:>14}",
        human_count(s.datagrams_unknown_exporter)
    );
    println!(
        "  kernel socket drops     {:>14}",
        human_count(s.socket_drops)
    );
    println!(
        "  flows written           {:>14}",
        human_count(s.flows_written)
    );
    println!(
        "  loss records written    {:>14}",
        human_count(s.loss_records_written)
    );
    println!(
        "  blocks / bytes written  {:>14} / {}",
        human_count(s.blocks_written),
        human_count(s.bytes_written)
    );
    println!(
        "  segments closed         {:>14}",
        human_count(s.segments_closed)
    );
    println!(
        "  open segment            {}",
        if s.open_segment.is_empty() {
            "(none: stopped)"
        } else {
            &s.open_segment
        }
    );
    println!("decoder (non-zero counters):");
    print_counters("", &serde_json::to_value(&s.decode).unwrap_or_default());
    if !s.exporters.is_empty() {
        println!("exporters:");
        println!(
            "  {:<16} {:>12} {:>14} {:>10} {:>8}  last seen",
            "name", "datagrams", "flows", "dropped", "losses"
        );
        let mut ex: Vec<_> = s.exporters.values().collect();
        ex.sort_by(|a, b| a.name.cmp(&b.name));
        for e in ex {
            println!(
                "  {:<16} {:>12} {:>14} {:>10} {:>8}  {}",
                e.name,
                e.datagrams,
                e.flows,
                e.dropped_datagrams,
                e.loss_records,
                time_utc(e.last_seen_ms)
            );
        }
    }
    if !s.unknown_exporters.is_empty() {
        println!("unknown sources (dropped):");
        let mut u: Vec<_> = s.unknown_exporters.iter().collect();
        u.sort_by(|a, b| b.1.cmp(a.1));
        for (a, n) in u.iter().take(20) {
            println!("  {a:<40} {n}");
        }
    }
}

/// Prints every non-zero number in a (nested) JSON object as `path value`.
fn print_counters(prefix: &str, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                print_counters(&key, v);
            }
        }
        serde_json::Value::Number(n) if n.as_u64() != Some(0) => println!("  {prefix:<40} {n}"),
        _ => {}
    }
}
