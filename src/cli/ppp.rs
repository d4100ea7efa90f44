//! `kopek ppp ip-up|ip-down`: pppd's hooks. Installed as
//! `/etc/ppp/ip-up.d/kopek` and `/etc/ppp/ip-down.d/kopek`
//! (`examples/ppp/`), run by pppd as root with no PATH and stdio on
//! /dev/null, not waited for. They validate, spool the event durably, poke
//! the core and exit: nothing here waits for the core.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct PppArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A link came up: interface tty speed local-IP remote-IP ipparam (env: PEERNAME, IPREMOTE, IFNAME, LINKNAME).
    IpUp {
        #[arg(allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// A link went down (env also CONNECT_TIME, BYTES_SENT, BYTES_RCVD).
    IpDown {
        #[arg(allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

/// How long a hook waits for the core's socket before leaving the event to
/// the next cycle.
const NUDGE_TIMEOUT: Duration = Duration::from_millis(200);

pub fn exec(config_path: &Path, a: &PppArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let (kind, args) = match &a.cmd {
        Cmd::IpUp { args } => ("up", args),
        Cmd::IpDown { args } => ("down", args),
    };
    let env = |k: &str| std::env::var(k).ok();
    let e = kopek_core::ppp::event_from(kind, args, &env, chrono::Utc::now().timestamp_millis());
    kopek_core::ppp::record(&config.state_dir, &e)?;
    // Poke the core (best effort: the event is safe in the spool).
    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&config.core.socket) {
        let _ = s.set_write_timeout(Some(NUDGE_TIMEOUT));
        let _ = s.write_all(b"{\"request\":\"cycle\"}\n");
    }
    Ok(())
}
