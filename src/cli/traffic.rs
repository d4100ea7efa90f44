//! `kopek traffic`: tier-2 reports for operators.

use std::io::Write;
use std::path::Path;

use clap::{Args, ValueEnum};
use kopek_classifier::aggregate::HOUR_MS;
use kopek_classifier::engine::HOSTS_GRACE_MS;
use kopek_classifier::report::{self, Period, TrafficQuery};
use kopek_classifier::store::SqliteTier2;

use super::format::{
    Out, OutputFormat, finish, human_bytes, human_count, parse_time_in, time_in, time_utc,
};

#[derive(Debug, Args)]
pub struct TrafficArgs {
    /// Start (2026-11-01 or 2026-11-01 05:00 in the ISP's zone, ...Z, epoch ms); default: 24 h ago.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive); default: now.
    #[arg(long)]
    to: Option<String>,
    /// Only this account.
    #[arg(long)]
    account: Option<String>,
    /// Only this class.
    #[arg(long)]
    class: Option<String>,
    /// Group by: month, day or hour of the ISP's zone, bucket, or total.
    #[arg(long, value_enum, default_value_t = By::Day)]
    by: By,
    /// Only what billing counts (billing points, the class's counted direction).
    #[arg(long)]
    billed: bool,
    /// Also list the N largest remote hosts per account (with --format
    /// csv: the hosts alone, one CSV: account, remote, class, bytes_in,
    /// bytes_out, flows; remote empty for the sum of the other hosts).
    /// Hosts are summed per whole hour once the hour is over; the report
    /// says which hours of the interval have none yet or none any more.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    top: Option<u32>,
    /// Show unattributed and transit traffic per address instead (with
    /// --class: of that class only).
    #[arg(long, conflicts_with_all = ["account", "by", "billed", "top", "points", "versions"])]
    unattributed: bool,
    /// Show bytes per observation point (billed or not) and export losses instead.
    #[arg(long, conflicts_with_all = ["account", "class", "by", "billed", "top", "versions"])]
    points: bool,
    /// List the class-list versions (id, valid from, sha256, prefixes)
    /// instead; with --from or --to, the ones in force then.
    #[arg(long, conflicts_with_all = ["account", "class", "by", "billed", "top"])]
    versions: bool,
    /// Human units: 1000 (kB, MB) or 1024 (KiB, MiB).
    #[arg(long, default_value_t = 1024, value_parser = unit_base)]
    unit_base: u64,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum By {
    Day,
    Hour,
    Month,
    Bucket,
    Total,
}

pub(super) fn unit_base(s: &str) -> Result<u64, String> {
    match s {
        "1000" => Ok(1000),
        "1024" => Ok(1024),
        _ => Err(format!("expected 1000 or 1024, got {s:?}")),
    }
}

pub fn exec(config_path: &Path, a: &TrafficArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let tz = config.timezone;
    let now = chrono::Utc::now().timestamp_millis();
    let t = |s: &Option<String>, d: i64| -> super::Result<i64> {
        match s {
            None => Ok(d),
            Some(s) => Ok(parse_time_in(s, tz).map_err(anyhow::Error::msg)?),
        }
    };
    let to = t(&a.to, now)?;
    let from = t(&a.from, to - 86_400_000)?;
    if from >= to {
        return Err(anyhow::anyhow!("--from must be before --to").into());
    }
    let conn = SqliteTier2::open_read(&config.state_dir)?;
    let notes = [
        collector_not_writing(&config),
        not_counting(&config.state_dir),
    ];
    for note in notes.iter().flatten() {
        eprintln!("kopek: note: {note}");
    }
    let h = |n: u64| human_bytes(n, a.unit_base);
    let mut out = Out::stdout();

    if a.versions {
        let mut rows = report::versions(&conn)?;
        if a.from.is_some() || a.to.is_some() {
            rows = report::versions_in_force(rows, from, to);
        }
        emit(
            &mut out,
            a.format,
            &rows,
            |out: &mut dyn Write| {
                let _ = writeln!(
                    out,
                    "{:>6}  {:<23} {:>10}  sha256",
                    "id", "valid from (UTC)", "prefixes"
                );
                for r in &rows {
                    let _ = writeln!(
                        out,
                        "{:>6}  {:<23} {:>10}  {}",
                        r.id,
                        time_utc(r.valid_from_ms),
                        human_count(r.prefixes.max(0) as u64),
                        r.sha256
                    );
                }
            },
            |r| {
                vec![
                    r.id.to_string(),
                    r.valid_from_ms.to_string(),
                    r.sha256.clone(),
                    r.prefixes.to_string(),
                ]
            },
            "id,valid_from_ms,sha256,prefixes",
        )?;
        return finish(out);
    }
    if a.unattributed {
        let rows = report::unattributed(&conn, from, to, a.class.as_deref())?;
        emit(
            &mut out,
            a.format,
            &rows,
            |out: &mut dyn Write| {
                let _ = writeln!(
                    out,
                    "unattributed and transit traffic, {} .. {}",
                    time_in(from, tz),
                    time_in(to, tz)
                );
                let _ = writeln!(
                    out,
                    "{:<40} {:<8} {:<12} {:>12} {:>12} {:>10}",
                    "address", "dir", "class", "bytes", "packets", "flows"
                );
                for r in &rows {
                    let _ = writeln!(
                        out,
                        "{:<40} {:<8} {:<12} {:>12} {:>12} {:>10}",
                        r.address,
                        r.direction,
                        r.class,
                        h(r.bytes),
                        human_count(r.packets),
                        human_count(r.flows)
                    );
                }
                if rows.is_empty() {
                    let of = match &a.class {
                        Some(c) => format!(" of class {c:?}"),
                        None => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "  (no unattributed or transit traffic{of} in this interval)"
                    );
                }
            },
            |r| {
                vec![
                    r.address.clone(),
                    r.direction.clone(),
                    r.class.clone(),
                    r.bytes.to_string(),
                    r.packets.to_string(),
                    r.flows.to_string(),
                ]
            },
            "address,direction,class,bytes,packets,flows",
        )?;
        return finish(out);
    }
    if a.points {
        let rows = report::points(&conn, from, to)?;
        let losses = report::losses(&conn, from, to)?;
        if a.format == OutputFormat::Json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"points": rows, "losses": losses})
                )?
            );
            return finish(out);
        }
        let _ = writeln!(
            out,
            "observation points, {} .. {}",
            time_in(from, tz),
            time_in(to, tz)
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "  {:<24} {:<9} {:>12} {:>12} flows",
                r.point,
                if r.billed { "billed" } else { "unbilled" },
                h(r.bytes),
                human_count(r.flows)
            );
        }
        let _ = writeln!(out, "export losses");
        if losses.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for l in &losses {
            let _ = writeln!(
                out,
                "  {:<40} {:<12} {:>12} {}",
                l.exporter,
                l.reason,
                human_count(l.count),
                l.unit
            );
        }
        return finish(out);
    }

    let q = TrafficQuery {
        from_ms: from,
        to_ms: to,
        account: a.account.clone(),
        class: a.class.clone(),
        billed_only: a.billed,
        period: match a.by {
            By::Day => Period::Day,
            By::Hour => Period::Hour,
            By::Month => Period::Month,
            By::Bucket => Period::Bucket,
            By::Total => Period::Total,
        },
        tz,
    };
    // Rows are printed as the report produces them (one period at a time
    // in memory): an hourly report of every account over a year is tens
    // of millions of rows.
    let (hosts, coverage) = match a.top {
        Some(n) => (
            report::top_hosts(&conn, from, to, a.account.as_deref(), n as usize)?,
            Some(report::host_coverage(&conn, from, to)?),
        ),
        None => (Vec::new(), None),
    };
    let host_notes = match &coverage {
        Some(c) => coverage_notes(c, tz, config.retention.top_hosts_days),
        None => Vec::new(),
    };
    let mut rows = 0u64;
    match a.format {
        OutputFormat::Json => {
            // One object, its rows written one by one (a line each).
            writeln!(
                out,
                "{{\n  \"from_ms\": {from},\n  \"to_ms\": {to},\n  \"timezone\": {},\n  \"top_hosts\": {},\n  \"top_hosts_coverage\": {},\n  \"rows\": [",
                serde_json::to_string(tz.name())?,
                serde_json::to_string(&hosts)?,
                serde_json::to_string(&coverage)?
            )?;
            report::traffic_each(&conn, &q, |r| {
                let sep = if rows == 0 { "" } else { ",\n" };
                rows += 1;
                match serde_json::to_string(&r) {
                    Ok(l) => {
                        let _ = write!(out, "{sep}    {l}");
                    }
                    Err(e) => out.fail(e.into()),
                }
            })?;
            writeln!(out, "\n  ]\n}}")?;
        }
        OutputFormat::Csv if a.top.is_some() => {
            // One CSV holds one table: the hosts, which were asked for;
            // what they lack goes to the operator, not into the data.
            for n in &host_notes {
                eprintln!("kopek: note: top hosts: {n}");
            }
            writeln!(out, "account,remote,class,bytes_in,bytes_out,flows")?;
            for r in &hosts {
                writeln!(
                    out,
                    "{},{},{},{},{},{}",
                    r.account, r.remote, r.class, r.bytes_in, r.bytes_out, r.flows
                )?;
            }
        }
        OutputFormat::Csv => {
            writeln!(
                out,
                "period_start,account,class,bytes_in,bytes_out,packets_in,packets_out,flows"
            )?;
            report::traffic_each(&conn, &q, |r| {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    time_in(r.period_ms, tz),
                    r.account,
                    r.class,
                    r.bytes_in,
                    r.bytes_out,
                    r.packets_in,
                    r.packets_out,
                    r.flows
                );
            })?;
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "traffic{}, {} .. {} ({})",
                if a.billed { " (billed only)" } else { "" },
                time_in(from, tz),
                time_in(to, tz),
                tz.name()
            )?;
            writeln!(
                out,
                "{:<22} {:<16} {:<10} {:>12} {:>12} {:>10}",
                "period", "account", "class", "in", "out", "flows"
            )?;
            report::traffic_each(&conn, &q, |r| {
                rows += 1;
                let _ = writeln!(
                    out,
                    "{:<22} {:<16} {:<10} {:>12} {:>12} {:>10}",
                    time_in(r.period_ms, tz),
                    r.account,
                    r.class,
                    h(r.bytes_in),
                    h(r.bytes_out),
                    human_count(r.flows)
                );
            })?;
            if rows == 0 {
                // Say what was filtered: a mistyped name gives no rows.
                let mut what = String::new();
                if let Some(acc) = &a.account {
                    what += &format!(" of account {acc:?}");
                }
                if let Some(class) = &a.class {
                    what += &format!(" of class {class:?}");
                }
                writeln!(out, "  (no traffic{what} in this interval)")?;
                let c = &config.classifier;
                let mut known = c
                    .classes
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>();
                known.push(&c.default_class);
                if let Some(class) = a.class.as_deref().filter(|x| !known.contains(x)) {
                    writeln!(
                        out,
                        "  (no class {class:?} is configured; the classes are: {})",
                        known.join(", ")
                    )?;
                }
            }
            if let Some(c) = &coverage {
                writeln!(
                    out,
                    "top remote hosts, whole hours {} .. {}",
                    time_in(c.from_ms, tz),
                    time_in(c.to_ms, tz)
                )?;
                for n in &host_notes {
                    writeln!(out, "  ({n})")?;
                }
            }
            if coverage.is_some() && hosts.is_empty() {
                writeln!(out, "  (no host detail in these hours)")?;
            }
            if !hosts.is_empty() {
                writeln!(
                    out,
                    "{:<16} {:<40} {:<10} {:>12} {:>12} {:>10}",
                    "account", "remote", "class", "in", "out", "flows"
                )?;
                for r in &hosts {
                    let remote = if r.remote.is_empty() {
                        "(other hosts)"
                    } else {
                        &r.remote
                    };
                    writeln!(
                        out,
                        "{:<16} {:<40} {:<10} {:>12} {:>12} {:>10}",
                        r.account,
                        remote,
                        r.class,
                        h(r.bytes_in),
                        h(r.bytes_out),
                        human_count(r.flows)
                    )?;
                }
            }
        }
    }
    finish(out)
}

/// Why tier 2 may lack recent traffic: the classifier daemon is not
/// running (stopped, or killed without a word), or runs but cannot write
/// tier 2 (or has not said how it is for a while). `None` while it counts,
/// or with no stats file to tell.
fn not_counting(state_dir: &Path) -> Option<String> {
    let f = kopek_classifier::run::read_stats(state_dir).ok()?;
    let process = super::DaemonProcess::from(&f);
    if f.pid == 0 {
        return None;
    }
    if process.runs("classifier") {
        let last = time_utc(f.engine.last_commit_ms);
        if let Some(e) = f.last_failure.as_ref().filter(|e| e.recovered_ms.is_none()) {
            return Some(format!(
                "the classifier cannot write tier 2 since {} ({}): tier 1 records after its last commit at {last} are not in these figures yet",
                time_utc(e.since_ms),
                e.error
            ));
        }
        return process.stale_for().map(|behind| {
            format!(
                "the classifier has not reported for {} s (a full disk? see its log): tier 1 records after its last commit at {last} may not be in these figures yet",
                behind / 1000
            )
        });
    }
    Some(format!(
        "the classifier is not running ({} {}): tier 1 records after its last commit at {} are not in these figures yet",
        if f.stopped {
            "stopped at"
        } else {
            "gone since"
        },
        time_utc(f.written_ms),
        time_utc(f.engine.last_commit_ms)
    ))
}

/// Why the newest traffic is not in tier 1 yet, if the configured
/// collector runs and cannot write it (a full disk).
fn collector_not_writing(config: &kopek_config::Config) -> Option<String> {
    use kopek_collector::run::{StatsSnapshot, stats_path};
    let path = stats_path(&config.state_dir, &config.collector.name);
    let s: StatsSnapshot = kopek_collector::state_file::read_json(&path).ok()?;
    let w = s.last_write_failure.as_ref()?;
    let running = super::DaemonProcess::from(&s).runs("collector");
    (running && w.failure.recovered_ms.is_none()).then(|| {
        format!(
            "collector {} cannot write tier 1 since {} ({}): what the routers send meanwhile is \
             held in its memory ({}){}, not in these figures yet",
            s.collector,
            time_utc(w.failure.since_ms),
            w.failure.error,
            human_bytes(w.held_bytes, 1024),
            if w.paused {
                " and, past collector.segment.hold_bytes, dropped and recorded as gaps"
            } else {
                ""
            }
        )
    })
}

/// What a report's host rows lack, in the operator's words: hours not
/// summed yet (as ranges) and hours whose detail retention removed.
fn coverage_notes(c: &report::HostCoverage, tz: chrono_tz::Tz, kept_days: u32) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(t) = c.removed_before_ms {
        notes.push(match kept_days {
            0 => format!("none before {}: removed by retention", time_in(t, tz)),
            d => format!(
                "none before {}: host detail is kept {d} days (retention.top_hosts_days)",
                time_in(t, tz)
            ),
        });
    }
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &hour in &c.pending_hours_ms {
        match ranges.last_mut() {
            Some(r) if r.1 == hour => r.1 = hour + HOUR_MS,
            _ => ranges.push((hour, hour + HOUR_MS)),
        }
    }
    if !ranges.is_empty() {
        let list: Vec<String> = ranges
            .iter()
            .map(|&(a, b)| format!("{} .. {}", time_in(a, tz), time_in(b, tz)))
            .collect();
        notes.push(format!(
            "not summed yet: {}; an hour's hosts are summed {} minutes after it ends",
            list.join(", "),
            HOSTS_GRACE_MS / 60_000
        ));
    }
    notes
}

fn emit<T: serde::Serialize>(
    out: &mut dyn Write,
    format: OutputFormat,
    rows: &[T],
    table: impl FnOnce(&mut dyn Write),
    csv: impl Fn(&T) -> Vec<String>,
    header: &str,
) -> super::Result {
    match format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        OutputFormat::Csv => {
            writeln!(out, "{header}")?;
            for r in rows {
                writeln!(out, "{}", csv(r).join(","))?;
            }
        }
        OutputFormat::Table => table(out),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lacking_hours_are_named_as_ranges_in_the_isp_zone() {
        let h = HOUR_MS;
        let t = 1_796_601_600_000; // 2026-12-07 00:00 UTC = 03:00 +03:00
        let c = report::HostCoverage {
            from_ms: t - 24 * h,
            to_ms: t + 24 * h,
            pending_hours_ms: vec![t, t + h, t + 2 * h, t + 5 * h],
            removed_before_ms: Some(t - 20 * h),
        };
        let tz = chrono_tz::Europe::Moscow;
        assert_eq!(
            coverage_notes(&c, tz, 190),
            [
                "none before 2026-12-06 07:00 +03:00: host detail is kept 190 days (retention.top_hosts_days)",
                "not summed yet: 2026-12-07 03:00 +03:00 .. 2026-12-07 06:00 +03:00, \
                 2026-12-07 08:00 +03:00 .. 2026-12-07 09:00 +03:00; \
                 an hour's hosts are summed 10 minutes after it ends",
            ]
        );
        let whole = report::HostCoverage {
            pending_hours_ms: vec![],
            removed_before_ms: None,
            ..c
        };
        assert!(coverage_notes(&whole, tz, 190).is_empty());
    }
}
