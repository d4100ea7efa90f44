//! pppd sessions: the hooks' spool and the core's exactly-once applier.
//!
//! pppd runs `/etc/ppp/ip-up.d/kopek` and `ip-down.d/kopek` as root with
//! no PATH, stdio on /dev/null, and does not wait for them (it kills them 5 s
//! after it exits). So a hook ([`record`]) only validates its arguments,
//! writes one event file durably into the spool (`<state_dir>/ppp-spool`:
//! temp file, fsync, rename, fsync of the directory), pokes the core and
//! exits. The core ([`Billing::apply_ppp_spool`]) applies the events in
//! file-name order (time, then pid: in order per link), each exactly once:
//! an applied event is recorded in `ppp_events` under its file name before
//! the file is removed, and re-applying a binding the registry already has
//! is recognized as done.
//!
//! An `ip-up` of a known login binds the remote address to its account from
//! the event's time (the classifier attributes traffic by it; the enforcer
//! allows it if the core allows the account). An unknown login, a session
//! without PEERNAME (the peer did not authenticate) or an address another
//! account holds: a clear log line, the event recorded, no binding — so no
//! access.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::store::Billing;

pub const SPOOL_DIR: &str = "ppp-spool";
/// Events applied per call (a storm is drained over several cycles).
pub const MAX_EVENTS_PER_PASS: usize = 5_000;

/// One hook call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `up` or `down`.
    pub kind: String,
    pub at_ms: i64,
    pub ifname: String,
    pub tty: String,
    pub local: Option<Ipv4Addr>,
    pub remote: Option<Ipv4Addr>,
    pub ipparam: String,
    pub peername: Option<String>,
    pub linkname: Option<String>,
    pub connect_time_s: Option<u64>,
    pub bytes_sent: Option<u64>,
    pub bytes_rcvd: Option<u64>,
    /// Set when the hook's input did not validate (the event is still
    /// spooled so that the core logs it).
    pub invalid: Option<String>,
}

fn printable(field: &str, v: &str, max: usize) -> Result<(), String> {
    if v.len() > max || v.chars().any(|c| c.is_control()) {
        return Err(format!("{field}: at most {max} bytes of printable text"));
    }
    Ok(())
}

/// Builds an event from pppd's arguments (`interface tty speed local-IP
/// remote-IP ipparam`) and environment; what does not validate is noted in
/// `invalid`, never executed or interpolated anywhere.
pub fn event_from(
    kind: &str,
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    at_ms: i64,
) -> Event {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let ifname = env("IFNAME").unwrap_or_else(|| arg(0));
    if ifname.is_empty()
        || ifname.len() > 15
        || !ifname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        problems.push(format!("interface {ifname:?} is not an interface name"));
    }
    let ip = |name: &str, v: String, problems: &mut Vec<String>| -> Option<Ipv4Addr> {
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!("{name} {v:?} is not an IPv4 address"));
                None
            }
        }
    };
    let local = ip(
        "local IP",
        env("IPLOCAL").unwrap_or_else(|| arg(3)),
        &mut problems,
    );
    let remote = ip(
        "remote IP",
        env("IPREMOTE").unwrap_or_else(|| arg(4)),
        &mut problems,
    );
    let tty = arg(1);
    let ipparam = arg(5);
    let peername = env("PEERNAME").filter(|p| !p.is_empty());
    let linkname = env("LINKNAME").filter(|p| !p.is_empty());
    for (f, v, max) in [
        ("tty", Some(&tty), 256),
        ("ipparam", Some(&ipparam), 256),
        ("PEERNAME", peername.as_ref(), 64),
        ("LINKNAME", linkname.as_ref(), 64),
    ] {
        if let Some(v) = v
            && let Err(e) = printable(f, v, max)
        {
            problems.push(e);
        }
    }
    let num = |n: &str| env(n).and_then(|v| v.parse::<u64>().ok());
    if kind != "up" && kind != "down" {
        problems.push(format!("unknown hook {kind:?}"));
    }
    Event {
        kind: kind.into(),
        at_ms,
        ifname: ifname.chars().take(64).collect(),
        tty: tty.chars().take(256).collect(),
        local,
        remote,
        ipparam: ipparam.chars().take(256).collect(),
        peername: peername.map(|p| p.chars().take(64).collect()),
        linkname: linkname.map(|p| p.chars().take(64).collect()),
        connect_time_s: num("CONNECT_TIME"),
        bytes_sent: num("BYTES_SENT"),
        bytes_rcvd: num("BYTES_RCVD"),
        invalid: if problems.is_empty() {
            None
        } else {
            Some(problems.join("; "))
        },
    }
}

/// Writes an event durably into the spool; returns its path.
pub fn record(state_dir: &Path, e: &Event) -> Result<PathBuf, CoreError> {
    let dir = state_dir.join(SPOOL_DIR);
    let io = |what: String| move |source| CoreError::Io { what, source };
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    // Time first (ordering), then pid and a counter (uniqueness).
    let name = format!(
        "{:016}-{:010}-{}",
        e.at_ms.max(0),
        std::process::id(),
        e.kind
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let fin = dir.join(format!("{name}.event"));
    let json = serde_json::to_vec(e).map_err(|x| CoreError::Invalid(x.to_string()))?;
    {
        let mut f =
            std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(&json)
            .map_err(io(format!("writing {}", tmp.display())))?;
        f.sync_all()
            .map_err(io(format!("fsync {}", tmp.display())))?;
    }
    std::fs::rename(&tmp, &fin).map_err(io(format!("renaming {}", tmp.display())))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync {}", dir.display())))?;
    Ok(fin)
}

/// What applying the spool did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub events: u64,
    pub bound: u64,
    pub ended: u64,
    pub refused: u64,
    pub replayed: u64,
}

impl Billing {
    /// Applies the spooled pppd events (at most [`MAX_EVENTS_PER_PASS`]),
    /// each exactly once, in file-name order.
    pub fn apply_ppp_spool(&mut self, state_dir: &Path) -> Result<Applied, CoreError> {
        let dir = state_dir.join(SPOOL_DIR);
        let mut a = Applied::default();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(a);
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".event"))
            .collect();
        names.sort();
        names.truncate(MAX_EVENTS_PER_PASS);
        if names.is_empty() {
            return Ok(a);
        }
        let mut reg = kopek_classifier::bindings::Registry::open(state_dir)
            .map_err(|e| CoreError::Invalid(e.to_string()))?;
        for name in names {
            let path = dir.join(&name);
            let done: Option<i64> = self
                .conn
                .query_row(
                    "SELECT 1 FROM ppp_events WHERE id = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(CoreError::from_sql)?;
            if done.is_none() {
                let text = std::fs::read(&path).map_err(|source| CoreError::Io {
                    what: format!("reading {}", path.display()),
                    source,
                })?;
                let (e, outcome, account) = match serde_json::from_slice::<Event>(&text) {
                    Ok(e) => {
                        let (o, acct) = self.apply_event(&mut reg, &e, &mut a)?;
                        (Some(e), o, acct)
                    }
                    Err(x) => (None, format!("refused: unreadable event ({x})"), None),
                };
                if outcome.starts_with("refused") {
                    a.refused += 1;
                    tracing::warn!(event = %name, outcome = %outcome, "ppp event refused");
                } else {
                    tracing::info!(event = %name, outcome = %outcome, "ppp event applied");
                }
                self.conn
                    .execute(
                        "INSERT INTO ppp_events (id, at_ms, kind, ifname, login, address, account, outcome)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            name,
                            e.as_ref().map(|e| e.at_ms).unwrap_or(0),
                            e.as_ref().map(|e| e.kind.clone()).unwrap_or_default(),
                            e.as_ref().map(|e| e.ifname.clone()).unwrap_or_default(),
                            e.as_ref().and_then(|e| e.peername.clone()),
                            e.as_ref().and_then(|e| e.remote.map(|r| r.to_string())),
                            account,
                            outcome
                        ],
                    )
                    .map_err(CoreError::from_sql)?;
                a.events += 1;
            } else {
                a.replayed += 1;
            }
            std::fs::remove_file(&path).map_err(|source| CoreError::Io {
                what: format!("removing {}", path.display()),
                source,
            })?;
        }
        Ok(a)
    }

    fn apply_event(
        &mut self,
        reg: &mut kopek_classifier::bindings::Registry,
        e: &Event,
        a: &mut Applied,
    ) -> Result<(String, Option<String>), CoreError> {
        use kopek_classifier::bindings::BindingError;
        if let Some(why) = &e.invalid {
            return Ok((format!("refused: invalid hook input: {why}"), None));
        }
        let Some(remote) = e.remote else {
            return Ok(("refused: no remote address".into(), None));
        };
        let net = ipnet::IpNet::from(std::net::IpAddr::V4(remote));
        if e.kind == "down" {
            return Ok(match reg.end(net, e.at_ms) {
                Ok(b) => {
                    a.ended += 1;
                    (
                        format!("binding {} of {} to {} ended", b.id, net, b.account),
                        Some(b.account),
                    )
                }
                Err(BindingError::NotOpen(_)) => {
                    // Applied before a crash, or an ip-down of a session
                    // that was never bound (refused at ip-up).
                    (
                        "no open binding of the address: nothing to end".into(),
                        None,
                    )
                }
                Err(x) => return Err(CoreError::Invalid(x.to_string())),
            });
        }
        let Some(login) = &e.peername else {
            return Ok((
                "refused: no PEERNAME (the peer did not authenticate): no access".into(),
                None,
            ));
        };
        let account: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT a.number, coalesce(x.state, 'undecided') FROM logins l JOIN accounts a ON a.id = l.account_id
                 LEFT JOIN access x ON x.account_id = a.id WHERE l.login = ?1",
                params![login],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(CoreError::from_sql)?;
        let Some((account, state)) = account else {
            return Ok((format!("refused: unknown login {login:?}: no access"), None));
        };
        let session = e.linkname.clone().unwrap_or_else(|| e.ifname.clone());
        match reg.add(&account, net, e.at_ms, None, "pppd", Some(&session)) {
            Ok(id) => {
                a.bound += 1;
                let note = if state == "allowed" {
                    String::new()
                } else {
                    format!(" (account is {state}: no access until it is allowed)")
                };
                Ok((
                    format!("{net} bound to account {account} as binding {id}{note}"),
                    Some(account),
                ))
            }
            Err(BindingError::Overlap {
                account: holder,
                from,
                ..
            }) if holder == account
                && from == kopek_classifier::bindings::fmt_ms(Some(e.at_ms)) =>
            {
                // The same binding, made before a crash: done already.
                Ok((
                    format!("{net} already bound to account {account} by this event"),
                    Some(account),
                ))
            }
            Err(BindingError::Overlap {
                account: holder, ..
            }) => Ok((
                format!("refused: {net} is held by account {holder}: no access for {account}"),
                Some(account),
            )),
            Err(x) => Err(CoreError::Invalid(x.to_string())),
        }
    }
}
