//! Billing fixtures: NetFlow v5 datagrams built here byte by byte (a real
//! export, sent over UDP to the real collector), and the `kopek` CLI run
//! for commands that must fail.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;

use super::kopek_bin;

/// One NetFlow v5 flow: `bytes` from `src` to `dst` during
/// `[start_ms, end_ms]` (UTC epoch ms).
#[derive(Debug, Clone, Copy)]
pub struct V5Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub bytes: u32,
    pub packets: u32,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Router uptime at export in every datagram: times are relative to it.
const SYS_UPTIME_MS: u32 = 1_000_000_000;

/// A NetFlow v5 datagram of up to 30 flows, exported 1 s after the last
/// flow ended.
pub fn v5_datagram(flows: &[V5Flow], sequence: u32) -> Vec<u8> {
    assert!(!flows.is_empty() && flows.len() <= 30);
    let export_ms = flows.iter().map(|f| f.end_ms).max().unwrap() + 1_000;
    let mut b = Vec::with_capacity(24 + 48 * flows.len());
    b.extend_from_slice(&5u16.to_be_bytes());
    b.extend_from_slice(&(flows.len() as u16).to_be_bytes());
    b.extend_from_slice(&SYS_UPTIME_MS.to_be_bytes());
    b.extend_from_slice(&((export_ms / 1000) as u32).to_be_bytes());
    b.extend_from_slice(&(((export_ms % 1000) * 1_000_000) as u32).to_be_bytes());
    b.extend_from_slice(&sequence.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]); // engine type, id, sampling
    let uptime_at = |ms: i64| (i64::from(SYS_UPTIME_MS) - (export_ms - ms)) as u32;
    for f in flows {
        b.extend_from_slice(&f.src.octets());
        b.extend_from_slice(&f.dst.octets());
        b.extend_from_slice(&[0; 4]); // next hop
        b.extend_from_slice(&1u16.to_be_bytes()); // input
        b.extend_from_slice(&2u16.to_be_bytes()); // output
        b.extend_from_slice(&f.packets.to_be_bytes());
        b.extend_from_slice(&f.bytes.to_be_bytes());
        b.extend_from_slice(&uptime_at(f.start_ms).to_be_bytes());
        b.extend_from_slice(&uptime_at(f.end_ms).to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b.extend_from_slice(&50_000u16.to_be_bytes());
        b.extend_from_slice(&[0, 0x18, 6, 0]); // pad, tcp flags, proto, tos
        b.extend_from_slice(&[0; 8]); // AS numbers, masks, pad
    }
    b
}

/// Sends flows as v5 datagrams (in export order) to 127.0.0.1:`port`;
/// `sequence` carries the flow sequence across calls. Returns the flow count.
pub fn send_v5(port: u16, flows: &[V5Flow], sequence: &mut u32) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in flows.chunks(30) {
        sock.send_to(&v5_datagram(chunk, *sequence), ("127.0.0.1", port))
            .unwrap();
        *sequence += chunk.len() as u32;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    flows.len() as u64
}

/// Runs `kopek --config <config> <args>` expecting failure; returns stderr.
pub fn kopek_fails(config: &Path, args: &[&str]) -> String {
    let out = Command::new(kopek_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KOPEK_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "kopek {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A `kopek core run` process.
pub struct CoreProc {
    pub config: std::path::PathBuf,
    pub socket: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl CoreProc {
    /// Starts the core and waits until its socket answers.
    pub fn start(config: &Path, socket: &Path) -> CoreProc {
        CoreProc::start_logged(config, socket, None)
    }

    /// [`CoreProc::start`] with its log (standard error) appended to `log`,
    /// if given.
    pub fn start_logged(config: &Path, socket: &Path, log: Option<&Path>) -> CoreProc {
        let child = Command::new(kopek_bin())
            .arg("--config")
            .arg(config)
            .args(["core", "run"])
            // Refusals are logged at warn: the tests provoke many.
            .env("KOPEK_LOG", "error")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(match log {
                None => std::process::Stdio::inherit(),
                Some(p) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("open the core's log")
                    .into(),
            })
            .spawn()
            .expect("spawn kopek core");
        let mut c = CoreProc {
            config: config.to_path_buf(),
            socket: socket.to_path_buf(),
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("core exited at start: {status}");
            }
            if std::os::unix::net::UnixStream::connect(&c.socket).is_ok() {
                return c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "core not ready in 20 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            super::signal(c.id(), 15);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                if let Some(status) = c.try_wait().unwrap() {
                    assert!(status.success(), "core exited with {status} on SIGTERM");
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "core ignored SIGTERM");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

impl Drop for CoreProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One request on the control socket (the protocol of core/src/control.rs).
/// `Err` when the core could not be reached or hung up without a reply.
pub fn call(socket: &Path, request: &serde_json::Value) -> Result<serde_json::Value, String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut line = serde_json::to_vec(request).unwrap();
    line.push(b'\n');
    s.write_all(&line).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    if reply.is_empty() {
        return Err("no reply".into());
    }
    serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply}"))
}

/// `{"request":"apply","command":{...}}`, asserting the core accepted it.
pub fn apply(socket: &Path, command: serde_json::Value) -> serde_json::Value {
    let r = call(
        socket,
        &serde_json::json!({"request": "apply", "command": command}),
    )
    .unwrap();
    assert_eq!(r["ok"], true, "{command}: {r}");
    r["outcome"].clone()
}

/// One integer from `sql` over the database file `db` in `state`.
pub fn count(state: &Path, db: &str, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(state.join(db)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}
