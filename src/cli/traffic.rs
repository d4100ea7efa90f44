//! `kopek traffic`: tier-2 reports for operators.

use std::io::Write;
use std::path::Path;

use clap::{Args, ValueEnum};
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
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Show unattributed and transit traffic per address instead.
    #[arg(long)]
    unattributed: bool,
    /// Show bytes per observation point (billed or not) and export losses instead.
    #[arg(long)]
    points: bool,
    /// List the class-list versions (id, valid from, sha256, prefixes) instead.
    #[arg(long)]
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
    let h = |n: u64| human_bytes(n, a.unit_base);
    let mut out = Out::stdout();

    if a.versions {
        let rows = report::versions(&conn)?;
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
        let rows = report::unattributed(&conn, from, to)?;
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
    let hosts = match a.top {
        Some(n) => report::top_hosts(&conn, from, to, a.account.as_deref(), n)?,
        None => Vec::new(),
    };
    let mut rows = 0u64;
    match a.format {
        OutputFormat::Json => {
            // One object, its rows written one by one (a line each).
            writeln!(
                out,
                "{{\n  \"from_ms\": {from},\n  \"to_ms\": {to},\n  \"timezone\": {},\n  \"top_hosts\": {},\n  \"rows\": [",
                serde_json::to_string(tz.name())?,
                serde_json::to_string(&hosts)?
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
            // One CSV holds one table: the hosts, which were asked for.
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
                writeln!(out, "  (no traffic in this interval)")?;
            }
            if !hosts.is_empty() {
                writeln!(out, "top remote hosts")?;
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
