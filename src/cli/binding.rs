//! `kopek binding add|end|ls`: session bindings of addresses to accounts.

use std::io::Write;
use std::path::Path;

use clap::{Args, Subcommand};
use ipnet::IpNet;
use kopek_classifier::bindings::{Binding, Registry, fmt_ms};

use super::format::{OutputFormat, parse_time_in};

#[derive(Debug, Args)]
pub struct BindingArgs {
    #[command(subcommand)]
    cmd: BindingCmd,
}

#[derive(Debug, Subcommand)]
enum BindingCmd {
    /// Bind an address or prefix to an account from a time (default: now).
    Add {
        /// Account id (1-64 printable characters, no spaces or commas).
        account: String,
        /// Address or prefix (100.64.0.7, 2001:db8:1::/48).
        #[arg(value_parser = parse_net)]
        addr: IpNet,
        /// Start (2026-11-22 05:00 in the ISP's zone, ...Z, or epoch ms); default now.
        #[arg(long)]
        from: Option<String>,
        /// End, if already known; default: open until `kopek binding end`.
        #[arg(long)]
        to: Option<String>,
        /// A static binding: valid from the beginning of time.
        #[arg(long, conflicts_with = "from")]
        r#static: bool,
        /// Session id (pppd link, Acct-Session-Id).
        #[arg(long)]
        session: Option<String>,
    },
    /// End the open binding of an address at a time (default: now).
    End {
        #[arg(value_parser = parse_net)]
        addr: IpNet,
        #[arg(long)]
        at: Option<String>,
    },
    /// List bindings, newest first.
    Ls {
        #[arg(long)]
        account: Option<String>,
        /// Bindings of this address or inside/around this prefix.
        #[arg(long, value_parser = parse_net)]
        addr: Option<IpNet>,
        /// Only bindings active at this time.
        #[arg(long)]
        at: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    kopek_config::parse_net(s).ok_or_else(|| {
        format!("expected an address or a prefix with zero host bits (100.64.0.7, 2001:db8:1::/48), got {s:?}")
    })
}

pub fn exec(config_path: &Path, args: &BindingArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let tz = config.timezone;
    let now = chrono::Utc::now().timestamp_millis();
    let time = |s: &Option<String>| -> super::Result<Option<i64>> {
        match s {
            None => Ok(None),
            Some(s) => Ok(Some(parse_time_in(s, tz).map_err(anyhow::Error::msg)?)),
        }
    };
    std::fs::create_dir_all(&config.state_dir)?;
    let mut reg = Registry::open(&config.state_dir)?;
    match &args.cmd {
        BindingCmd::Add {
            account,
            addr,
            from,
            to,
            r#static,
            session,
        } => {
            let from_ms = if *r#static {
                kopek_classifier::bindings::FOREVER_START_MS
            } else {
                time(from)?.unwrap_or(now)
            };
            let id = reg.add(
                account,
                *addr,
                from_ms,
                time(to)?,
                "cli",
                session.as_deref(),
            )?;
            outln!(
                "binding {id}: {addr} -> {account} from {}",
                fmt_ms(Some(from_ms))
            );
            if from.is_some() || *r#static {
                note_counted_before(&config, from_ms, *addr);
            }
        }
        BindingCmd::End { addr, at } => {
            let at_ms = time(at)?.unwrap_or(now);
            let b = reg.end(*addr, at_ms)?;
            outln!(
                "binding {}: {} -> {} ended at {}",
                b.id,
                b.net,
                b.account,
                fmt_ms(b.to_ms)
            );
            if at.is_some() {
                note_counted_before(&config, at_ms, b.net);
            }
        }
        BindingCmd::Ls {
            account,
            addr,
            at,
            limit,
            format,
        } => {
            let list = reg.list(account.as_deref(), *addr, time(at)?, *limit)?;
            print_list(&list, *format)?;
        }
    }
    Ok(())
}

/// A binding changed from an explicit time `t_ms` on (not "now"), when
/// tier 2 has already counted traffic since then: the classifier attributes each record once, by the
/// bindings known when it counts it, so the operator must hear that the
/// counted traffic stays as it was and which rebuild recounts it (a
/// session recorded late is the usual dispute). Said on standard error;
/// the binding itself is recorded either way.
fn note_counted_before(config: &kopek_config::Config, t_ms: i64, net: IpNet) {
    let Ok(conn) = kopek_classifier::store::SqliteTier2::open_read(&config.state_dir) else {
        return; // no tier 2 yet: nothing counted
    };
    let bucket = config.classifier.bucket_ms();
    match kopek_classifier::report::newest_bucket(&conn) {
        Ok(Some(newest)) if newest.saturating_add(bucket) > t_ms => {}
        _ => return,
    }
    let forever = t_ms == kopek_classifier::bindings::FOREVER_START_MS;
    let (since, rebuild) = match chrono::DateTime::from_timestamp_millis(t_ms) {
        Some(t) if !forever => (
            format!(" since {}", super::format::time_in(t_ms, config.timezone)),
            format!(
                "kopek classifier rebuild --from \"{}\"",
                t.with_timezone(&config.timezone).format("%Y-%m-%d %H:%M")
            ),
        ),
        _ => (String::new(), "kopek classifier rebuild".to_string()),
    };
    eprintln!(
        "kopek: note: tier 2 has already counted traffic{since} with the bindings known then; \
         records of {net} among it keep that attribution. To count them again with this \
         change: stop the classifier, run `{rebuild}`, start it (the core then charges only \
         the differences)"
    );
}

/// Prints the list; a closed pipe (| head) ends it quietly.
fn print_list(list: &[Binding], format: OutputFormat) -> super::Result {
    let mut out = super::format::Out::stdout();
    match format {
        OutputFormat::Json => {
            let v: Vec<_> = list
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "id": b.id, "account": b.account, "prefix": b.net.to_string(),
                        "from_ms": b.from_ms, "to_ms": b.to_ms, "source": b.source, "session": b.session,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        OutputFormat::Csv => {
            writeln!(out, "id,account,prefix,from,to,source,session")?;
            for b in list {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{}",
                    b.id,
                    b.account,
                    b.net,
                    fmt_ms(Some(b.from_ms)),
                    fmt_ms(b.to_ms),
                    b.source,
                    b.session.as_deref().unwrap_or("")
                )?;
            }
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "{:>6}  {:<16} {:<24} {:<25} {:<25} {:<6} session",
                "id", "account", "prefix", "from (UTC)", "to (UTC)", "source"
            )?;
            for b in list {
                writeln!(
                    out,
                    "{:>6}  {:<16} {:<24} {:<25} {:<25} {:<6} {}",
                    b.id,
                    b.account,
                    b.net.to_string(),
                    fmt_ms(Some(b.from_ms)),
                    fmt_ms(b.to_ms),
                    b.source,
                    b.session.as_deref().unwrap_or("")
                )?;
            }
        }
    }
    super::format::finish(out)
}
