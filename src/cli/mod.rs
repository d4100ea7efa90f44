//! Command-line interface: one subcommand per file, each with an `exec()`.

// Command output goes through `outln!`/`out!` or `format::Out`: `println!`
// panics when the reader has closed the pipe.
#![deny(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kopek_config::{Config, DEFAULT_CONFIG_PATH};

/// `println!` for command output: a write error (the reader closed the
/// pipe: `| head`) returns it from the calling function instead of
/// panicking; [`main`] ends quietly on a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        if let Err(e) = std::io::Write::write_fmt(
            &mut std::io::stdout().lock(),
            format_args!("{}\n", format_args!($($arg)*)),
        ) {
            return Err($crate::cli::output_error(e).into());
        }
    };
}

/// `print!` for command output, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        if let Err(e) = std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!($($arg)*)) {
            return Err($crate::cli::output_error(e).into());
        }
    };
}

mod account;
mod backup;
mod billing;
mod binding;
mod classifier;
mod collector;
mod config;
mod core;
mod demo;
mod demo_bill;
mod demo_capture;
mod enforcer;
mod explain;
mod export;
mod r#gen;
mod ledger;
mod payment;
mod ppp;
mod report;
mod subscriber;
mod tariff;

mod format;
mod raw;
mod reconcile;
mod traffic;

/// Exit code for an invalid or unreadable config (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for any other failure.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(name = "kopek", version, about = "ISP traffic accounting and billing", long_about = None)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "KOPEK_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config file.
    Config(config::ConfigArgs),
    /// Run the NetFlow/IPFIX collector (tier 1), or query a running one.
    Collector(collector::CollectorArgs),
    /// Read tier-1 raw segments: list, dump, totals.
    Raw(raw::RawArgs),
    /// Run the classifier (tier 2), or query a running one.
    Classifier(classifier::ClassifierArgs),
    /// Record or list which account holds an address when.
    Binding(binding::BindingArgs),
    /// Traffic reports from tier 2: per account, class, day/hour; top hosts; unattributed.
    Traffic(traffic::TrafficArgs),
    /// Run the core (tier 3: rating, ledger, access decisions), or rate once.
    Core(core::CoreArgs),
    /// The default-deny nftables enforcer.
    Enforcer(enforcer::EnforcerArgs),
    /// Subscribers: people and organisations.
    Subscriber(subscriber::SubscriberArgs),
    /// Accounts: balance, policy, tariff, logins, blocks, freezes, promised payments.
    Account(account::AccountArgs),
    /// Tariffs and their version archive.
    Tariff(tariff::TariffArgs),
    /// Payments (idempotent by the payment system's id), imports, refunds.
    Payment(payment::PaymentArgs),
    /// pppd hooks (ip-up, ip-down): spool the session event for the core.
    Ppp(ppp::PppArgs),
    /// Verify the ledger; corrections and credits.
    Ledger(ledger::LedgerArgs),
    /// nft counters against NetFlow per subscriber: flags sources that disagree.
    Reconcile(reconcile::ReconcileArgs),
    /// Billing reports: statement, usage, invoice, debtors, revenue, blocked.
    Report(report::ReportArgs),
    /// Trace a ledger entry to the tariff, rule, tier-2 rows and tier-1 segments behind it.
    Explain(explain::ExplainArgs),
    /// Exports for bookkeeping.
    Export(export::ExportArgs),
    /// Consistent copies of the state databases while the daemons run.
    Backup(backup::BackupArgs),
    /// Put a backup's databases back (the core and the classifier stopped).
    Restore(backup::RestoreArgs),
    /// Send a generated NetFlow v5/v9/IPFIX stream to a collector (exporter simulator).
    Gen(r#gen::GenArgs),
    /// Run the suite on a temporary state dir with a generated NetFlow stream.
    Demo(demo::DemoArgs),
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let code = if error.downcast_ref::<kopek_config::ConfigError>().is_some() {
            EXIT_CONFIG
        } else {
            EXIT_FAILURE
        };
        Failure { code, error }
    }
}

impl Failure {
    /// A failure that is the config's fault (exit 78).
    pub fn config(error: anyhow::Error) -> Failure {
        Failure {
            code: EXIT_CONFIG,
            error,
        }
    }
}

pub type Result<T = ()> = std::result::Result<T, Failure>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match &cli.command {
        Command::Config(a) => config::exec(&cli.config, a),
        Command::Collector(a) => collector::exec(&cli.config, a),
        Command::Raw(a) => raw::exec(&cli.config, a),
        Command::Classifier(a) => classifier::exec(&cli.config, a),
        Command::Binding(a) => binding::exec(&cli.config, a),
        Command::Traffic(a) => traffic::exec(&cli.config, a),
        Command::Core(a) => core::exec(&cli.config, a),
        Command::Enforcer(a) => enforcer::exec(&cli.config, a),
        Command::Subscriber(a) => subscriber::exec(&cli.config, a),
        Command::Account(a) => account::exec(&cli.config, a),
        Command::Tariff(a) => tariff::exec(&cli.config, a),
        Command::Payment(a) => payment::exec(&cli.config, a),
        Command::Ppp(a) => ppp::exec(&cli.config, a),
        Command::Ledger(a) => ledger::exec(&cli.config, a),
        Command::Reconcile(a) => reconcile::exec(&cli.config, a),
        Command::Report(a) => report::exec(&cli.config, a),
        Command::Explain(a) => explain::exec(&cli.config, a),
        Command::Export(a) => export::exec(&cli.config, a),
        Command::Backup(a) => backup::exec(&cli.config, a),
        Command::Restore(a) => backup::restore(&cli.config, a),
        Command::Gen(a) => r#gen::exec(a),
        Command::Demo(a) => demo::exec(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of the output has gone (`| head` that is done): not
        // an error worth a message, as for any Unix filter.
        Err(f) if closed_pipe(&f.error) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("kopek: {}", message(&f.error));
            ExitCode::from(f.code)
        }
    }
}

/// The reader of standard output has gone (`| head` that is done).
#[derive(Debug)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for OutputClosed {}

/// A failed write to standard output: [`OutputClosed`] if the reader
/// closed the pipe (ends the command quietly), else the error, named.
pub fn output_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(OutputClosed)
    } else {
        anyhow::Error::new(e).context("writing standard output")
    }
}

/// The result of a command whose only writes are to standard output: a
/// broken pipe anywhere in its error is [`OutputClosed`].
pub fn stdout_only<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| {
        let broken = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken {
            anyhow::Error::new(OutputClosed)
        } else {
            e
        }
    })
}

/// Whether `e` is [`OutputClosed`].
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<OutputClosed>())
}

/// The error and its causes in one line, each cause once: library errors
/// often name their cause in their own message already.
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !msg.contains(&c) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&c);
        }
    }
    msg
}

/// `KOPEK_LOG` filters (default `info`), `KOPEK_LOG_FORMAT=json|text`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KOPEK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("KOPEK_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Loads the config for commands that only read state. A missing file at
/// the default path means "all defaults"; a missing file named explicitly
/// (or any invalid file) is an error.
fn load_config_or_defaults(path: &Path) -> Result<Config> {
    if path == Path::new(DEFAULT_CONFIG_PATH) && !path.exists() {
        return Ok(Config::from_toml(path, "")?);
    }
    Ok(Config::load(path)?)
}

/// A stats file this much older than its daemon's rewrite interval is
/// said to be stale (at least this long, whatever the interval).
const STALE_STATS_MS: i64 = 30_000;

/// The process a daemon's stats file names: whether it is still running
/// (`what`: its subcommand, "classifier"...), so that the stats commands
/// never pass a stopped or killed daemon's last counters off as current.
pub(crate) struct DaemonProcess {
    pub pid: u32,
    pub started_ms: i64,
    pub written_ms: i64,
    /// It wrote the file last, on a clean stop.
    pub stopped: bool,
    /// How often a running daemon rewrites the file (0: not known).
    pub rewritten_every_ms: i64,
}

impl DaemonProcess {
    pub fn runs(&self, what: &str) -> bool {
        !self.stopped && process_runs(self.pid, what)
    }

    /// How long (ms) the file is overdue, if it is: the daemon has not
    /// rewritten it for ten of its intervals (at least 30 s).
    pub fn stale_for(&self) -> Option<i64> {
        let behind = chrono::Utc::now().timestamp_millis() - self.written_ms;
        (self.rewritten_every_ms > 0 && behind > (10 * self.rewritten_every_ms).max(STALE_STATS_MS))
            .then_some(behind)
    }

    /// The stats' first line: `<name> running`, `STOPPED` or `NOT RUNNING`.
    pub fn headline(&self, name: &str, what: &str) -> String {
        let (pid, started, written) = (
            self.pid,
            format::time_utc(self.started_ms),
            format::time_utc(self.written_ms),
        );
        if pid == 0 {
            format!("{name} (a stats file of an older kopek: no process recorded)")
        } else if self.runs(what) {
            let mut line = format!("{name} running (pid {pid}, since {started}), as of {written}");
            if let Some(behind) = self.stale_for() {
                line += &format!(
                    "\n  STALE: not rewritten for {} s (it is due every {} s): a full disk? see its log",
                    behind / 1000,
                    (self.rewritten_every_ms as f64 / 1e3)
                );
            }
            line
        } else if self.stopped {
            format!(
                "{name} STOPPED at {written} (pid {pid}, started {started}); the counters are of that run"
            )
        } else {
            format!(
                "{name} NOT RUNNING: pid {pid} (started {started}) ended without stopping \
                 (killed or crashed; see its log); the counters are of that run, as of {written}"
            )
        }
    }
}

/// The stats' line of a daemon's last run of failed attempts: `FAILING`
/// while the daemon runs and the run goes on; when it ended otherwise.
pub(crate) fn failure_line(f: &kopek_collector::run::Failure, running: bool) -> String {
    let since = format::time_utc(f.since_ms);
    match f.recovered_ms {
        None if running => format!(
            "  FAILING since {since} ({} attempts, retrying): {}",
            f.attempts, f.error
        ),
        None => format!(
            "  {:<28} since {since} ({} attempts, not over when it ended): {}",
            "last failure", f.attempts, f.error
        ),
        Some(t) => format!(
            "  {:<28} {since} .. {} ({} attempts): {}",
            "last failure",
            format::time_utc(t),
            f.attempts,
            f.error
        ),
    }
}

/// Whether process `pid` lives and is a kopek `what` daemon (a pid the
/// kernel gave to another program since is not).
fn process_runs(pid: u32, what: &str) -> bool {
    // A dead daemon's pid handed to this very command is not the daemon.
    if pid == std::process::id() {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.iter().any(|a| a.ends_with(b"kopek")) && args.contains(&what.as_bytes())
        }
        Err(_) => false,
    }
}
