//! `kopek classifier [run]`, `kopek classifier stats|explain|rebuild`.

use std::io::Write;
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
    /// How an address was (or is) judged at a time: its class by the list
    /// version valid then (and the list entry that decided it), and the
    /// account holding it then.
    Explain {
        addr: std::net::IpAddr,
        /// The time (2026-11-22 05:00 in the ISP's zone, ...Z, epoch ms); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Compute tier 2 again from tier 1 with what is known now (sessions
    /// recorded late, corrected observation points or lists) and replace
    /// it; the core then charges only the differences. Stop the
    /// classifier daemon first (`--dry-run` may run beside it).
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
struct RebuildArgs {
    /// Class lists for old records: `recorded` (the version valid at
    /// each record's time) or `current` (today's lists applied to the
    /// past on purpose).
    #[arg(long, value_enum, default_value_t = ListsArg::Recorded)]
    lists: ListsArg,
    /// Rebuild only from this time on (rounded down to the hour; the
    /// ISP's zone, ...Z, or epoch ms); older rows stay as they are and
    /// segments that end before it are not read.
    #[arg(long)]
    from: Option<String>,
    /// Build and show what would change; leave tier 2 as it is.
    #[arg(long)]
    dry_run: bool,
    /// Also compute every hour's top hosts before installing (slower:
    /// tier 1 is read once more per hour). Without it the old host
    /// detail stays until the running classifier recomputes each hour
    /// in the background.
    #[arg(long)]
    with_hosts: bool,
    /// Tier 2 is damaged (SQLite finds faults in it): build a new one
    /// from tier 1 alone, judged by the current class lists; what only
    /// the damaged one holds (traffic older than tier 1, the class-list
    /// history) is lost.
    #[arg(long, conflicts_with_all = ["from", "lists"])]
    discard_damaged: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Human units: 1000 (kB, MB) or 1024 (KiB, MiB).
    #[arg(long, default_value_t = 1024, value_parser = super::traffic::unit_base)]
    unit_base: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListsArg {
    Recorded,
    Current,
}

pub fn exec(config_path: &Path, args: &ClassifierArgs) -> super::Result {
    match args.cmd.as_ref().unwrap_or(&ClassifierCmd::Run) {
        ClassifierCmd::Run => Ok(serve(config_path)?),
        ClassifierCmd::Explain { addr, at } => explain(config_path, *addr, at.as_deref()),
        ClassifierCmd::Rebuild(a) => rebuild(config_path, a),
        ClassifierCmd::Stats { format } => {
            let config = super::load_config_or_defaults(config_path)?;
            let file = read_stats(&config.state_dir)?;
            let process = super::DaemonProcess::from(&file);
            // Failing now: a daemon that stopped or died while failing
            // does not retry any more.
            let running = process.runs("classifier");
            let failing = file
                .last_failure
                .as_ref()
                .filter(|f| f.recovered_ms.is_none() && running);
            if let Some(f) = failing {
                eprintln!(
                    "kopek: tier 2 has not been written since {} ({} attempts), counting stands still: {}",
                    time_utc(f.since_ms),
                    f.attempts,
                    f.error
                );
            }
            if *format == OutputFormat::Json {
                let mut v = serde_json::to_value(&file)?;
                v["running"] = running.into();
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let s = &file.engine;
            let c = &s.committed;
            outln!("{}", process.headline("classifier", "classifier"));
            if let Some(f) = &file.last_failure {
                outln!("{}", super::failure_line(f, running));
                if failing.is_some() {
                    outln!(
                        "  nothing is lost: the records since the last commit are read again once tier 2 takes them"
                    );
                    if f.error.contains("malformed") || f.error.contains("not a database") {
                        outln!(
                            "  tier 2 is damaged: stop the classifier and run \
                             `kopek classifier rebuild --discard-damaged` (tier 1 keeps every record)"
                        );
                    }
                }
            }
            outln!("  {:<28} {}", "last commit", time_utc(s.last_commit_ms));
            for (k, v) in [
                ("records counted (this run)", human_count(c.records)),
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
                (
                    "implausible counters (losses)",
                    human_count(c.implausible_records),
                ),
                (
                    "older than tier-2 retention (losses)",
                    human_count(c.stale_records),
                ),
                ("commits", human_count(s.commits)),
                ("segments pending", human_count(s.segments_pending)),
                ("hours awaiting top hosts", human_count(s.hours_pending)),
                ("hours of top hosts done", human_count(s.host_hours_done)),
                (
                    "daily rollup",
                    match s.daily_complete_from_ms {
                        None => "complete".to_string(),
                        Some(t) => format!("complete from {} (older days summing)", time_utc(t)),
                    },
                ),
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
                (
                    "tier-2 writer busy / waited",
                    format!(
                        "{:.1} s / {:.1} s",
                        s.commit_write_ms as f64 / 1e3,
                        s.commit_wait_ms as f64 / 1e3
                    ),
                ),
            ] {
                outln!("  {k:<28} {v}");
            }
            match &s.last_reload {
                None => {}
                Some(r) => match &r.error {
                    None => outln!("  {:<28} ok at {}", "last reload", time_utc(r.at_ms)),
                    Some(e) => outln!(
                        "  {:<28} FAILED at {}, the old config stays in force: {e}",
                        "last reload",
                        time_utc(r.at_ms)
                    ),
                },
            }
            for d in &s.damaged_segments {
                outln!("  DAMAGED: {d}");
            }
            Ok(())
        }
    }
}

impl From<&kopek_classifier::run::StatsFile> for super::DaemonProcess {
    fn from(f: &kopek_classifier::run::StatsFile) -> Self {
        super::DaemonProcess {
            pid: f.pid,
            started_ms: f.started_ms,
            written_ms: f.written_ms,
            stopped: f.stopped,
            rewritten_every_ms: kopek_classifier::run::STATS_EVERY.as_millis() as i64,
        }
    }
}

fn explain(config_path: &Path, addr: std::net::IpAddr, at: Option<&str>) -> super::Result {
    use kopek_classifier::bindings::{BindingIndex, Registry, read_static};
    use kopek_classifier::classes::ClassTable;
    use kopek_classifier::report;
    use kopek_classifier::store::SqliteTier2;

    let config = super::load_config_or_defaults(config_path)?;
    let tz = config.timezone;
    let t = match at {
        Some(s) => super::format::parse_time_in(s, tz).map_err(anyhow::Error::msg)?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    outln!(
        "{addr} at {} ({})",
        super::format::time_in(t, tz),
        time_utc(t)
    );
    let conn = SqliteTier2::open_read(&config.state_dir)?;
    match report::version_at(&conn, t)? {
        None => outln!("  class: no list version recorded yet (has the classifier run?)"),
        Some((v, content)) => {
            let table = ClassTable::from_canonical(&content)?;
            let (c, net) = table.explain(addr);
            outln!(
                "  class: {} ({}), by list version {} valid from {} (sha256 {})",
                table.classes[c as usize].name,
                match net {
                    Some(n) => format!("listed as {n}"),
                    None => "no list covers it: the default class".to_string(),
                },
                v.id,
                time_utc(v.valid_from_ms),
                &v.sha256[..12.min(v.sha256.len())]
            );
            if t < v.valid_from_ms {
                // docs/tier2-schema.md: before the first version, the
                // first one judges (nothing older is known).
                outln!("         (the oldest version: records before it are judged by it too)");
            }
        }
    }
    // Bindings: the registry and the static file, as the classifier sees them.
    let mut index = BindingIndex::new();
    if let Some(f) = &config.classifier.bindings_file {
        for b in read_static(f)? {
            index.apply(&b);
        }
    }
    if config
        .state_dir
        .join(kopek_classifier::bindings::REGISTRY_FILE)
        .exists()
    {
        let reg = Registry::open(&config.state_dir)?;
        for b in reg.changes_since(0)?.0 {
            index.apply(&b);
        }
    }
    index.finish();
    match index.lookup(addr, t) {
        Some(a) => outln!("  account: {}", index.account(a)),
        None => outln!(
            "  account: none ({})",
            if config
                .classifier
                .subscriber_networks
                .iter()
                .any(|n| n.contains(&addr))
            {
                "inside the subscriber networks: its traffic is unattributed"
            } else {
                "not a subscriber address"
            }
        ),
    }
    Ok(())
}

fn rebuild(config_path: &Path, a: &RebuildArgs) -> super::Result {
    use kopek_classifier::rebuild::{Lists, RebuildOptions, rebuild};

    let config = kopek_config::Config::load(config_path)?;
    let tz = config.timezone;
    let from_ms = match &a.from {
        Some(s) => Some(super::format::parse_time_in(s, tz).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let opts = RebuildOptions {
        lists: match a.lists {
            ListsArg::Recorded => Lists::Recorded,
            ListsArg::Current => Lists::Current,
        },
        from_ms,
        dry_run: a.dry_run,
        hosts: a.with_hosts,
        discard_damaged: a.discard_damaged,
    };
    let (format, units) = (a.format, a.unit_base);
    let r = rebuild(config, opts, chrono::Utc::now().timestamp_millis())?;
    match format {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&r)?),
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record([
                "account",
                "class",
                "direction",
                "before_bytes",
                "after_bytes",
            ])?;
            for c in &r.changes {
                w.write_record([
                    c.account.as_str(),
                    &c.class,
                    &c.direction,
                    &c.before.to_string(),
                    &c.after.to_string(),
                ])?;
            }
            let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
            std::io::stdout()
                .lock()
                .write_all(&bytes)
                .map_err(super::output_error)?;
        }
        OutputFormat::Table => {
            outln!(
                "{} tier 2 from {} tier-1 records in {:.1} s{}",
                if r.installed {
                    "rebuilt"
                } else {
                    "built (dry run, not installed)"
                },
                human_count(r.records),
                r.seconds,
                match r.kept_before_ms {
                    Some(t) => format!(
                        "; before {} (--from, tier 1 removed by retention, or past tier-2 retention) {} rows kept as they were, {} segments not read",
                        super::format::time_in(t, tz),
                        human_count(r.rows_kept),
                        human_count(r.segments_skipped)
                    ),
                    None => String::new(),
                }
            );
            if let Some(d) = &r.discarded {
                outln!(
                    "the damaged tier 2 was replaced without being read ({d}): nothing kept, nothing compared"
                );
            } else if r.changes.is_empty() {
                outln!("billed traffic: no account changes");
            } else {
                outln!(
                    "{:<20} {:<12} {:<4} {:>14} {:>14} {:>14}",
                    "account",
                    "class",
                    "dir",
                    "before",
                    "after",
                    "difference"
                );
                for c in &r.changes {
                    let diff = c.after - c.before;
                    outln!(
                        "{:<20} {:<12} {:<4} {:>14} {:>14} {:>14}",
                        if c.account.is_empty() {
                            "(unattributed)"
                        } else {
                            &c.account
                        },
                        c.class,
                        c.direction,
                        human_bytes(c.before.max(0) as u64, units),
                        human_bytes(c.after.max(0) as u64, units),
                        format!(
                            "{}{}",
                            if diff < 0 { "-" } else { "+" },
                            human_bytes(diff.unsigned_abs(), units)
                        )
                    );
                }
            }
            if r.installed {
                outln!(
                    "tier 2 {} installed; the core charges the differences at its next cycle",
                    r.tier2_id
                );
            }
        }
    }
    Ok(())
}
