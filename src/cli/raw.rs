//! `kopek raw ls|dump|stats`: the operator's nfdump over tier 1.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ipnet::IpNet;
use kopek_collector::query::{self, RawFilter, Totals};
use kopek_collector::segment::{RawStore, SegmentState};
use kopek_collector::{FlowRecord, LossRecord};
use kopek_config::Config;

use super::format::{OutputFormat, human_bytes, human_count, parse_time_ms, time_utc};

#[derive(Debug, Args)]
pub struct RawArgs {
    /// State directory (default: from the config file).
    #[arg(long, global = true, env = "KOPEK_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: RawCmd,
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// Flows ending at or after this UTC time (2026-11-22T05:00:00Z, 2026-11-22 05:00, epoch ms).
    #[arg(long, value_parser = parse_time_ms)]
    from: Option<i64>,
    /// Flows starting before this UTC time.
    #[arg(long, value_parser = parse_time_ms)]
    to: Option<i64>,
    /// Flows with src or dst in this address or network (10.0.0.5, 10.0.0.0/24, 2001:db8::/32).
    #[arg(long, value_parser = parse_net)]
    addr: Option<IpNet>,
    /// Flows of this exporter (address, or name from the config).
    #[arg(long)]
    exporter: Option<String>,
    /// Only segments of this collector.
    #[arg(long)]
    collector: Option<String>,
}

#[derive(Debug, Subcommand)]
enum RawCmd {
    /// List segments with their time ranges and record counts.
    Ls {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Print records (flows, and loss records with --losses).
    Dump {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Print loss records instead of flows.
        #[arg(long)]
        losses: bool,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Totals per exporter (and per address with --by-address), with losses.
    Stats {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Also total per address (a flow counts for its src and its dst).
        #[arg(long)]
        by_address: bool,
        /// Show only the N addresses with most bytes (table format).
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Units: 1000 (MB) or 1024 (MiB).
        #[arg(long, default_value_t = 1000, value_parser = parse_unit_base)]
        unit_base: u64,
    },
}

fn parse_unit_base(s: &str) -> Result<u64, String> {
    match s {
        "1000" => Ok(1000),
        "1024" => Ok(1024),
        _ => Err(format!("expected 1000 or 1024, got {s:?}")),
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("expected an address or network like 10.0.0.0/24, got {s:?}"))
}

pub fn exec(config_path: &Path, args: &RawArgs) -> super::Result {
    let (store, config) = match &args.state_dir {
        Some(d) => (RawStore::new(d.join("raw")), None),
        None => {
            let c = super::load_config_or_defaults(config_path)?;
            (RawStore::new(c.collector.raw_dir(&c.state_dir)), Some(c))
        }
    };
    if !store.dir().is_dir() {
        return Err(anyhow::anyhow!(
            "{}: no tier-1 directory here (wrong --state-dir?)",
            store.dir().display()
        )
        .into());
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    // Standard output is the only thing these commands write to: a broken
    // pipe in their errors is the reader having gone.
    let result = (|| -> anyhow::Result<()> {
        match &args.cmd {
            RawCmd::Ls { format } => ls(&store, *format, &mut out)?,
            RawCmd::Dump {
                filter,
                format,
                losses,
                limit,
            } => {
                let f = build_filter(filter, config.as_ref())?;
                dump(&store, &f, *format, *losses, *limit, &mut out)?
            }
            RawCmd::Stats {
                filter,
                format,
                by_address,
                top,
                unit_base,
            } => {
                let f = build_filter(filter, config.as_ref())?;
                stats(
                    &store,
                    &f,
                    *format,
                    *by_address,
                    *top,
                    *unit_base,
                    config.as_ref(),
                    &mut out,
                )?
            }
        }
        out.flush().context("stdout")?;
        Ok(())
    })();
    Ok(super::stdout_only(result)?)
}

fn build_filter(a: &FilterArgs, config: Option<&Config>) -> anyhow::Result<RawFilter> {
    let exporter = match &a.exporter {
        None => None,
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let Some(c) = config else {
                    bail!(
                        "--exporter {s:?}: not an address, and without a config names are unknown"
                    );
                };
                match c.collector.exporters.iter().find(|e| e.name == *s) {
                    Some(e) => Some(e.address),
                    None => bail!(
                        "--exporter {s:?}: no exporter of that name in {}",
                        c.path.display()
                    ),
                }
            }
        },
    };
    if let (Some(f), Some(t)) = (a.from, a.to)
        && f >= t
    {
        bail!("--from must be before --to");
    }
    Ok(RawFilter {
        from_ms: a.from,
        to_ms: a.to,
        net: a.addr,
        exporter,
        collector: a.collector.clone(),
    })
}

fn ls(store: &RawStore, format: OutputFormat, out: &mut impl Write) -> anyhow::Result<()> {
    let segs = store.list()?;
    let mut rows = Vec::new();
    for s in &segs {
        let footer = s.read_footer()?;
        rows.push(serde_json::json!({
            "path": s.path.display().to_string(),
            "collector": s.collector,
            "id": s.id,
            "state": if s.state == SegmentState::Open { "open" } else { "closed" },
            "size_bytes": s.size_bytes,
            "flows": footer.map(|f| f.flow_records),
            "losses": footer.map(|f| f.loss_records),
            "first_ms": footer.filter(|f| f.flow_records > 0).map(|f| f.min_first_ms),
            "last_ms": footer.filter(|f| f.flow_records > 0).map(|f| f.max_last_ms),
        }));
    }
    match format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        OutputFormat::Csv => {
            writeln!(
                out,
                "collector,id,state,size_bytes,flows,losses,first_ms,last_ms,path"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    r["collector"].as_str().unwrap_or(""),
                    r["id"],
                    r["state"].as_str().unwrap_or(""),
                    r["size_bytes"],
                    opt(&r["flows"]),
                    opt(&r["losses"]),
                    opt(&r["first_ms"]),
                    opt(&r["last_ms"]),
                    r["path"].as_str().unwrap_or("")
                )?;
            }
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "{:<10} {:>10} {:<6} {:>12} {:>12} {:>7}  {:<23}  {:<23}",
                "collector", "id", "state", "size", "flows", "losses", "first (UTC)", "last (UTC)"
            )?;
            for (s, r) in segs.iter().zip(&rows) {
                let t = |k: &str| r[k].as_i64().map(time_utc).unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:<10} {:>10} {:<6} {:>12} {:>12} {:>7}  {:<23}  {:<23}",
                    s.collector,
                    s.id,
                    r["state"].as_str().unwrap_or(""),
                    human_bytes(s.size_bytes, 1024),
                    r["flows"]
                        .as_u64()
                        .map(human_count)
                        .unwrap_or_else(|| "(open)".into()),
                    r["losses"]
                        .as_u64()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    t("first_ms"),
                    t("last_ms")
                )?;
            }
        }
    }
    Ok(())
}

fn opt(v: &serde_json::Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        47 => "GRE".into(),
        58 => "ICMP6".into(),
        n => n.to_string(),
    }
}

fn sock(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}:{port}"),
        IpAddr::V6(_) => format!("[{a}]:{port}"),
    }
}

fn dump(
    store: &RawStore,
    filter: &RawFilter,
    format: OutputFormat,
    losses: bool,
    limit: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let limit = limit.unwrap_or(u64::MAX);
    let mut n = 0u64;
    let mut err: Option<std::io::Error> = None;
    let mut first = true;
    if format == OutputFormat::Csv {
        if losses {
            writeln!(
                out,
                "exporter,domain,kind,reason,unit,count,from_ms,to_ms,expected_seq,received_seq"
            )?;
        } else {
            writeln!(
                out,
                "exporter,domain,kind,first_ms,last_ms,src,dst,src_port,dst_port,protocol,direction,in_if,out_if,bytes,packets,bytes_raw,packets_raw,sampling"
            )?;
        }
    } else if format == OutputFormat::Json {
        write!(out, "[")?;
    } else if !losses {
        writeln!(
            out,
            "{:<23} {:>9} {:<5} {:>45} {:>45} {:>10} {:>14} {:>6}  exporter",
            "first seen (UTC)", "dur s", "proto", "src", "dst", "packets", "bytes", "sampl"
        )?;
    }
    let mut write_flow = |r: &FlowRecord| {
        if n >= limit || err.is_some() {
            return;
        }
        n += 1;
        let res = match format {
            OutputFormat::Csv => writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.exporter,
                r.domain,
                r.kind.as_str(),
                r.first_ms,
                r.last_ms,
                r.src,
                r.dst,
                r.src_port,
                r.dst_port,
                r.protocol,
                r.direction as u8,
                r.in_if,
                r.out_if,
                r.bytes(),
                r.packets(),
                r.bytes_raw,
                r.packets_raw,
                r.sampling
            ),
            OutputFormat::Json => {
                let sep = if first { "" } else { "," };
                first = false;
                writeln!(
                    out,
                    "{sep}{}",
                    serde_json::json!({"exporter": r.exporter, "domain": r.domain, "kind": r.kind.as_str(), "first_ms": r.first_ms, "last_ms": r.last_ms, "src": r.src, "dst": r.dst, "src_port": r.src_port, "dst_port": r.dst_port, "protocol": r.protocol, "direction": r.direction as u8, "in_if": r.in_if, "out_if": r.out_if, "bytes": r.bytes(), "packets": r.packets(), "bytes_raw": r.bytes_raw, "packets_raw": r.packets_raw, "sampling": r.sampling})
                )
            }
            OutputFormat::Table => {
                let dur = r.last_ms - r.first_ms;
                writeln!(
                    out,
                    "{:<23} {:>5}.{:03} {:<5} {:>45} {:>45} {:>10} {:>14} {:>6}  {}",
                    time_utc(r.first_ms),
                    dur / 1000,
                    dur % 1000,
                    proto_name(r.protocol),
                    sock(r.src, r.src_port),
                    sock(r.dst, r.dst_port),
                    r.packets(),
                    r.bytes(),
                    r.sampling,
                    r.exporter
                )
            }
        };
        if let Err(e) = res {
            err = Some(e);
        }
    };
    let mut loss_rows: Vec<LossRecord> = Vec::new();
    let report = if losses {
        query::scan(store, filter, |_| {}, |l| loss_rows.push(*l))?
    } else {
        query::scan(store, filter, &mut write_flow, |_| {})?
    };
    if let Some(e) = err {
        // A closed pipe (| head) included: `exec` tells them apart.
        return Err(e.into());
    }
    if losses {
        print_losses(&loss_rows, format, out)?;
    }
    if format == OutputFormat::Json && !losses {
        writeln!(out, "]")?;
    }
    report_damage(&report)
}

fn print_losses(
    rows: &[LossRecord],
    format: OutputFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Csv => {
            for l in rows {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{}",
                    l.exporter,
                    l.domain,
                    l.kind.as_str(),
                    l.reason.as_str(),
                    l.unit.as_str(),
                    l.count,
                    l.from_ms,
                    l.to_ms,
                    l.expected_seq,
                    l.received_seq
                )?;
            }
        }
        OutputFormat::Json => {
            let v: Vec<_> = rows.iter().map(|l| serde_json::json!({"exporter": l.exporter, "domain": l.domain, "kind": l.kind.as_str(), "reason": l.reason.as_str(), "unit": l.unit.as_str(), "count": l.count, "from_ms": l.from_ms, "to_ms": l.to_ms, "expected_seq": l.expected_seq, "received_seq": l.received_seq})).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        OutputFormat::Table => {
            for l in rows {
                let what = if l.count == 0 {
                    String::from("unknown amount")
                } else {
                    format!("{} {}", l.count, l.unit.as_str())
                };
                writeln!(
                    out,
                    "{}: {} lost from {} (domain {}, {}) between {} and {} (seq expected {}, got {})",
                    l.reason.as_str(),
                    what,
                    l.exporter,
                    l.domain,
                    l.kind.as_str(),
                    time_utc(l.from_ms),
                    time_utc(l.to_ms),
                    l.expected_seq,
                    l.received_seq
                )?;
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn stats(
    store: &RawStore,
    filter: &RawFilter,
    format: OutputFormat,
    by_address: bool,
    top: usize,
    base: u64,
    config: Option<&Config>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let s = query::stats(store, filter, by_address)?;
    let name_of = |a: &IpAddr| {
        config
            .and_then(|c| c.collector.exporters.iter().find(|e| e.address == *a))
            .map(|e| e.name.clone())
            .unwrap_or_default()
    };
    let mut exporters: Vec<(&IpAddr, &Totals)> = s.by_exporter.iter().collect();
    exporters.sort_by_key(|(a, _)| **a);
    let mut addrs: Vec<(&IpAddr, &Totals)> = s.by_address.iter().collect();
    addrs.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
    match format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "total": s.total,
                "exporters": exporters.iter().map(|(a, t)| serde_json::json!({"exporter": a, "name": name_of(a), "totals": t, "losses": s.losses.get(a)})).collect::<Vec<_>>(),
                "addresses": addrs.iter().map(|(a, t)| serde_json::json!({"address": a, "totals": t})).collect::<Vec<_>>(),
                "damaged": s.report.damaged.iter().map(|d| serde_json::json!({"path": d.path, "what": d.what})).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        OutputFormat::Csv => {
            writeln!(
                out,
                "kind,key,flows,bytes,packets,bytes_raw,packets_raw,lost_flows,lost_packets,gaps,resets"
            )?;
            for (a, t) in &exporters {
                let l = s.losses.get(*a).cloned().unwrap_or_default();
                writeln!(
                    out,
                    "exporter,{a},{},{},{},{},{},{},{},{},{}",
                    t.flows,
                    t.bytes,
                    t.packets,
                    t.bytes_raw,
                    t.packets_raw,
                    l.lost_flows,
                    l.lost_packets,
                    l.gaps,
                    l.resets
                )?;
            }
            for (a, t) in &addrs {
                writeln!(
                    out,
                    "address,{a},{},{},{},{},{},,,,",
                    t.flows, t.bytes, t.packets, t.bytes_raw, t.packets_raw
                )?;
            }
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "total: {} flows, {} ({} bytes), {} packets",
                human_count(s.total.flows),
                human_bytes(s.total.bytes, base),
                s.total.bytes,
                human_count(s.total.packets)
            )?;
            writeln!(
                out,
                "\n{:<40} {:<12} {:>12} {:>14} {:>14}  losses",
                "exporter", "name", "flows", "bytes", "packets"
            )?;
            for (a, t) in &exporters {
                let loss = match s.losses.get(*a) {
                    None => "none".to_string(),
                    Some(l) => format!(
                        "{} gaps ({} flows, {} datagrams), {} resets, {} no-template",
                        l.gaps, l.lost_flows, l.lost_packets, l.resets, l.no_template
                    ),
                };
                writeln!(
                    out,
                    "{:<40} {:<12} {:>12} {:>14} {:>14}  {}",
                    a.to_string(),
                    name_of(a),
                    human_count(t.flows),
                    human_bytes(t.bytes, base),
                    human_count(t.packets),
                    loss
                )?;
            }
            for (a, l) in &s.losses {
                if !s.by_exporter.contains_key(a) {
                    writeln!(
                        out,
                        "{:<40} {:<12} {:>12} {:>14} {:>14}  {} gaps ({} flows, {} datagrams), {} resets",
                        a.to_string(),
                        name_of(a),
                        0,
                        "-",
                        0,
                        l.gaps,
                        l.lost_flows,
                        l.lost_packets,
                        l.resets
                    )?;
                }
            }
            if by_address {
                writeln!(
                    out,
                    "\ntop {} of {} addresses by bytes:",
                    top.min(addrs.len()),
                    addrs.len()
                )?;
                writeln!(
                    out,
                    "{:<40} {:>12} {:>14} {:>14}",
                    "address", "flows", "bytes", "packets"
                )?;
                for (a, t) in addrs.iter().take(top) {
                    writeln!(
                        out,
                        "{:<40} {:>12} {:>14} {:>14}",
                        a.to_string(),
                        human_count(t.flows),
                        human_bytes(t.bytes, base),
                        human_count(t.packets)
                    )?;
                }
            }
        }
    }
    report_damage(&s.report)
}

/// Damage is printed and makes the command fail: an operator must never
/// take a partial total for a whole one.
fn report_damage(r: &query::ScanReport) -> anyhow::Result<()> {
    if r.damaged.is_empty() {
        return Ok(());
    }
    for d in &r.damaged {
        eprintln!("kopek: damaged: {}: {}", d.path.display(), d.what);
    }
    bail!(
        "{} segment(s) could not be read completely; totals above exclude the damaged blocks",
        r.damaged.len()
    )
}
