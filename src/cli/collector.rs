//! `kopek collector [run]`, `kopek collector stats`, `kopek collector
//! pcap-read`.

use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use kopek_collector::run::{StatsSnapshot, serve, stats_path};
use kopek_collector::state_file::read_json;

use super::format::{OutputFormat, human_bytes, human_count, time_utc};

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
    /// Build flows from a capture file (libpcap format) the way
    /// `[collector.pcap]` does live, and write them to tier 1 under
    /// collector NAME. Timeouts and the BPF filter come from
    /// `[collector.pcap]` when configured, else the defaults.
    PcapRead {
        file: std::path::PathBuf,
        /// Tier-1 collector name of the records.
        #[arg(long, default_value = "pcap_import")]
        name: String,
        /// BPF filter (overrides `[collector.pcap] filter`).
        #[arg(long)]
        filter: Option<String>,
    },
}

pub fn exec(config_path: &Path, args: &CollectorArgs) -> super::Result {
    match args.cmd.as_ref().unwrap_or(&CollectorCmd::Run) {
        CollectorCmd::Run => Ok(serve(config_path)?),
        CollectorCmd::PcapRead { file, name, filter } => {
            let config = super::load_config_or_defaults(config_path)?;
            pcap_read(&config, file, name, filter.as_deref())
        }
        CollectorCmd::Stats { format } => {
            let config = super::load_config_or_defaults(config_path)?;
            let path = stats_path(&config.state_dir, &config.collector.name);
            // The file as written (fields this build does not know
            // included, for --format json), and as this build reads it.
            let v: serde_json::Value = read_json(&path).map_err(|e| match e.is_missing() {
                true => anyhow::anyhow!(
                    "{e}: no stats (has collector {:?} run?)",
                    config.collector.name
                ),
                false => anyhow::anyhow!("{e}"),
            })?;
            let s: StatsSnapshot = serde_json::from_value(v.clone())
                .with_context(|| format!("{}: unreadable stats file", path.display()))?;
            let running = super::DaemonProcess::from(&s).runs("collector");
            let failing = s
                .last_write_failure
                .as_ref()
                .filter(|w| w.failure.recovered_ms.is_none() && running);
            if let Some(w) = failing {
                eprintln!(
                    "kopek: tier 1 has not been written since {} ({} attempts): {}; {} held in memory{}",
                    time_utc(w.failure.since_ms),
                    w.failure.attempts,
                    w.failure.error,
                    human_bytes(w.held_bytes, 1024),
                    if w.paused {
                        ", the sockets are not read (what is dropped meanwhile becomes gaps)"
                    } else {
                        ""
                    }
                );
            }
            match format {
                OutputFormat::Json => {
                    let mut v = v;
                    v["running"] = running.into();
                    outln!("{}", serde_json::to_string_pretty(&v)?);
                }
                _ => print_stats(&s, running)?,
            }
            Ok(())
        }
    }
}

impl From<&StatsSnapshot> for super::DaemonProcess {
    fn from(s: &StatsSnapshot) -> Self {
        super::DaemonProcess {
            pid: s.pid,
            started_ms: s.started_ms,
            written_ms: s.written_ms,
            stopped: s.stopped,
            rewritten_every_ms: s.stats_interval_ms as i64,
        }
    }
}

fn print_stats(s: &StatsSnapshot, running: bool) -> super::Result {
    outln!(
        "{}",
        super::DaemonProcess::from(s).headline(&format!("collector {}", s.collector), "collector")
    );
    if let Some(w) = &s.last_write_failure {
        outln!("{}", super::failure_line(&w.failure, running));
        if running && w.failure.recovered_ms.is_none() {
            outln!(
                "  {} held in memory, written as soon as the disk has room{}",
                human_bytes(w.held_bytes, 1024),
                if w.paused {
                    "; holding all it may (collector.segment.hold_bytes): the sockets are not \
                     read, what the exporters send meanwhile is dropped and recorded as gaps"
                } else {
                    ""
                }
            );
        }
    }
    outln!(
        "  datagrams received      {:>14}",
        human_count(s.datagrams_received)
    );
    outln!(
        "  from unknown exporters  {:>14}",
        human_count(s.datagrams_unknown_exporter)
    );
    outln!(
        "  kernel socket drops     {:>14}",
        human_count(s.socket_drops)
    );
    outln!(
        "  flows written           {:>14}",
        human_count(s.flows_written)
    );
    outln!(
        "  loss records written    {:>14}",
        human_count(s.loss_records_written)
    );
    outln!(
        "  blocks / bytes written  {:>14} / {}",
        human_count(s.blocks_written),
        human_count(s.bytes_written)
    );
    outln!(
        "  segments closed         {:>14}",
        human_count(s.segments_closed)
    );
    outln!(
        "  open segment            {}",
        if s.open_segment.is_empty() {
            "(none: stopped)"
        } else {
            &s.open_segment
        }
    );
    outln!("decoder (non-zero counters):");
    print_counters("", &serde_json::to_value(&s.decode).unwrap_or_default())?;
    if !s.exporters.is_empty() {
        outln!("exporters:");
        outln!(
            "  {:<16} {:>12} {:>14} {:>10} {:>8} {:>12}  last seen",
            "name",
            "datagrams",
            "flows",
            "dropped",
            "losses",
            "clock skew"
        );
        let mut ex: Vec<_> = s.exporters.values().collect();
        ex.sort_by(|a, b| a.name.cmp(&b.name));
        for e in ex {
            outln!(
                "  {:<16} {:>12} {:>14} {:>10} {:>8} {:>12}  {}",
                e.name,
                e.datagrams,
                e.flows,
                e.dropped_datagrams,
                e.loss_records,
                clock_skew(e.clock_skew_ms),
                time_utc(e.last_seen_ms)
            );
        }
    }
    if let Some(p) = &s.pcap {
        outln!("capture on {}:", p.interface);
        print_counters("  ", &serde_json::to_value(p).unwrap_or_default())?;
    }
    if !s.unknown_exporters.is_empty() {
        outln!("unknown sources (dropped):");
        let mut u: Vec<_> = s.unknown_exporters.iter().collect();
        u.sort_by(|a, b| b.1.cmp(a.1));
        for (a, n) in u.iter().take(20) {
            outln!("  {a:<40} {n}");
        }
    }
    Ok(())
}

pub(super) fn pcap_read(
    config: &kopek_config::Config,
    file: &Path,
    name: &str,
    filter: Option<&str>,
) -> super::Result {
    use kopek_collector::segment::{RawStore, SegmentWriter, WriterOptions};
    if !kopek_config::valid_name(name) {
        return Err(anyhow::anyhow!(
            "--name must be 1-32 characters of a-z, 0-9, '_' (it names segment files), got {name:?}"
        )
        .into());
    }
    let mut pc = config.collector.pcap.clone().unwrap_or_default();
    if let Some(f) = filter {
        pc.filter = f.to_string();
    }
    let store = RawStore::new(config.collector.raw_dir(&config.state_dir));
    store.create_dir()?;
    let _lock = store.lock(name)?;
    let now = kopek_collector::run::now_ms();
    store.recover(name, now)?;
    let opts = WriterOptions {
        compression: config.collector.segment.compression,
        durability: kopek_config::Durability::Never,
    };
    let mut w = SegmentWriter::create(store.dir(), name, store.next_id(name)?, now, opts)?;
    let block = config.collector.segment.block_records;
    let mut written = 0u64;
    let stats = kopek_collector::capture::read_file(file, &pc, block, |recs| {
        written += recs.len() as u64;
        w.append_flows(recs).map_err(|e| e.to_string())
    })
    .map_err(anyhow::Error::msg)?;
    let path = w.close(kopek_collector::run::now_ms())?;
    outln!(
        "{}: {} packets, {} IP bytes -> {} flows in {}; skipped: {} not IP, {} truncated, {} malformed",
        file.display(),
        stats.flows.packets,
        stats.flows.ip_bytes,
        written,
        path.display(),
        stats.not_ip,
        stats.truncated,
        stats.malformed
    );
    Ok(())
}

/// Prints every non-zero number in a (nested) JSON object as `path value`.
fn print_counters(prefix: &str, v: &serde_json::Value) -> super::Result {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                print_counters(&key, v)?;
            }
        }
        serde_json::Value::Number(n) if n.as_u64() != Some(0) => outln!("  {prefix:<40} {n}"),
        _ => {}
    }
    Ok(())
}

/// An exporter's clock against the collector's, as the stats show it:
/// `ok` within [`CLOCK_SKEW_WARN_MS`], else how far behind (`-`) or ahead
/// (`+`) in the largest whole unit.
fn clock_skew(skew_ms: i64) -> String {
    if skew_ms.abs() <= kopek_collector::run::CLOCK_SKEW_WARN_MS {
        return "ok".into();
    }
    let sign = if skew_ms > 0 { "-" } else { "+" };
    let s = skew_ms.unsigned_abs() / 1000;
    let (n, unit) = match s {
        s if s >= 365 * 86_400 => (s / (365 * 86_400), "y"),
        s if s >= 86_400 => (s / 86_400, "d"),
        s if s >= 3_600 => (s / 3_600, "h"),
        s => (s / 60, "min"),
    };
    format!("{sign}{n} {unit}")
}
