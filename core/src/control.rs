//! The control socket: how the `kopek` CLI asks the running core to change
//! something. A Unix stream socket (mode 0660, owner root, group
//! `core.socket_group`), one JSON request line, one JSON reply line. The
//! operator's identity ("who" in the audit log and on ledger entries) comes
//! from the kernel (SO_PEERCRED), not from anything the client says.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::ops::{Command, Outcome};

/// Largest request accepted (a payment import of ~20,000 lines fits).
pub const MAX_REQUEST_BYTES: u64 = 16 << 20;
/// A client that sends nothing for this long is dropped.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    Apply {
        command: Command,
    },
    /// Run a rating cycle now (after a payment: unblock at once).
    Cycle,
    Ping,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// `invalid`, `not-found`, `conflict`, `internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn from_result(r: Result<Outcome, CoreError>) -> Reply {
        match r {
            Ok(o) => Reply {
                ok: true,
                outcome: Some(o),
                error_kind: None,
                error: None,
            },
            Err(e) => {
                let kind = match e {
                    CoreError::Invalid(_) => "invalid",
                    CoreError::NotFound(_) => "not-found",
                    CoreError::Conflict(_) => "conflict",
                    _ => "internal",
                };
                Reply {
                    ok: false,
                    outcome: None,
                    error_kind: Some(kind.into()),
                    error: Some(e.to_string()),
                }
            }
        }
    }

    /// Back into a result on the client side.
    pub fn into_result(self) -> Result<Outcome, CoreError> {
        if self.ok {
            return self
                .outcome
                .ok_or_else(|| CoreError::Invalid("the core replied without an outcome".into()));
        }
        let msg = self
            .error
            .unwrap_or_else(|| "the core refused without a reason".into());
        Err(match self.error_kind.as_deref() {
            Some("invalid") => CoreError::Invalid(msg),
            Some("not-found") => CoreError::NotFound(msg),
            Some("conflict") => CoreError::Conflict(msg),
            _ => CoreError::Invalid(format!("core: {msg}")),
        })
    }
}

/// Sends one request to the core at `socket` and waits for its reply.
pub fn call(socket: &Path, req: &Request) -> Result<Reply, CoreError> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        CoreError::NotRunning(format!(
            "cannot connect to {} ({e}); start it (systemctl start kopek-core) or use --offline while it is stopped",
            socket.display()
        ))
    })?;
    let io = |what: &str| {
        let what = format!("{what} {}", socket.display());
        move |source| CoreError::Io { what, source }
    };
    s.set_read_timeout(Some(IO_TIMEOUT * 4))
        .map_err(io("configuring"))?;
    let mut line = serde_json::to_vec(req).map_err(|e| CoreError::Invalid(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line).map_err(io("writing to"))?;
    let mut reply = String::new();
    BufReader::new(s.take(MAX_REQUEST_BYTES))
        .read_line(&mut reply)
        .map_err(io("reading from"))?;
    serde_json::from_str(&reply)
        .map_err(|e| CoreError::Invalid(format!("unreadable reply from the core ({e}): {reply:?}")))
}

/// Binds the control socket: refuses if a live core answers on it, removes
/// a stale file left by a crash, sets mode 0660 and the group.
pub fn bind(socket: &Path, group: &str) -> Result<UnixListener, CoreError> {
    let io = |what: String| move |source| CoreError::Io { what, source };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(CoreError::Invalid(format!(
                "{} answers: another core is running",
                socket.display()
            )));
        }
        std::fs::remove_file(socket).map_err(io(format!("removing stale {}", socket.display())))?;
    }
    let l = UnixListener::bind(socket).map_err(io(format!("binding {}", socket.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(io(format!("chmod {}", socket.display())))?;
    if let Some(gid) = group_id(group) {
        let c = std::ffi::CString::new(socket.as_os_str().as_encoded_bytes()).ok();
        if let Some(c) = c {
            // SAFETY: a valid NUL-terminated path; -1 keeps the owner.
            let rc = unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) };
            if rc != 0 {
                tracing::warn!(socket = %socket.display(), group, "could not give the socket to the group (root only)");
            }
        }
    }
    Ok(l)
}

fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// The user name (or `uid:N`) of the process at the other end.
pub fn peer_name(s: &UnixStream) -> String {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return "unknown".into();
    }
    user_name(cred.uid)
}

/// Name of a uid from /etc/passwd, or `uid:N`.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// The name of the user running this process (for `--offline`).
pub fn current_user() -> String {
    // SAFETY: getuid cannot fail.
    user_name(unsafe { libc::getuid() })
}

/// Reads one request from a client: `None` when it hung up without one
/// (a liveness probe), `Err` (answered with an error) when it is bad.
pub fn read_request(s: &UnixStream) -> Option<Result<Request, String>> {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let mut line = String::new();
    let r = BufReader::new(s.take(MAX_REQUEST_BYTES)).read_line(&mut line);
    Some(match r {
        Ok(0) => return None,
        Ok(_) if !line.ends_with('\n') => Err(format!(
            "request longer than {MAX_REQUEST_BYTES} bytes or cut off"
        )),
        Ok(_) => serde_json::from_str(&line).map_err(|e| format!("bad request: {e}")),
        Err(e) => Err(format!("reading the request: {e}")),
    })
}

pub fn write_reply(mut s: &UnixStream, reply: &Reply) {
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = s.write_all(&line) {
        tracing::warn!(error = %e, "could not send a reply (the client left)");
    }
}
