//! Network-namespace fixtures: a subscriber, a router running the
//! enforcer and an "internet", wired with veth pairs; removed on drop and
//! before creation (leftovers of a crashed run). Needs root, `ip`, `nft`
//! and `ping`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::kopek_bin;

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

/// Three namespaces wired sub — rtr — net; removed on drop (and before
/// creation, if a crashed run left them).
pub struct Topology {
    pub sub: String,
    pub rtr: String,
    pub net: String,
}

impl Topology {
    pub fn new() -> Topology {
        let id = std::process::id() % 100_000;
        let t = Topology {
            sub: format!("kpk{id}s"),
            rtr: format!("kpk{id}r"),
            net: format!("kpk{id}n"),
        };
        t.remove();
        for ns in [&t.sub, &t.rtr, &t.net] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "link", "add", "s0", "netns", &t.sub, "type", "veth", "peer", "name", "r0",
            "netns", &t.rtr,
        ]);
        sh(&[
            "ip", "link", "add", "r1", "netns", &t.rtr, "type", "veth", "peer", "name", "n0",
            "netns", &t.net,
        ]);
        for (ns, dev, addr) in [
            (&t.sub, "s0", "10.1.0.2/24"),
            (&t.rtr, "r0", "10.1.0.1/24"),
            (&t.rtr, "r1", "192.0.2.1/24"),
            (&t.net, "n0", "192.0.2.2/24"),
            (&t.net, "n0", "192.0.2.53/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        sh(&[
            "ip", "-n", &t.sub, "route", "add", "default", "via", "10.1.0.1",
        ]);
        sh(&[
            "ip",
            "-n",
            &t.net,
            "route",
            "add",
            "10.1.0.0/24",
            "via",
            "192.0.2.1",
        ]);
        let out = in_ns(&t.rtr, &["sysctl", "-w", "net.ipv4.ip_forward=1"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    pub fn remove(&self) {
        for ns in [&self.sub, &self.rtr, &self.net] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }

    /// One ping from the subscriber; true if answered.
    pub fn ping(&self, dst: &str) -> bool {
        in_ns(&self.sub, &["ping", "-c", "1", "-W", "1", "-q", dst])
            .status
            .success()
    }

    /// One ping from the subscriber's address `src`.
    pub fn ping_from(&self, src: &str, dst: &str) -> bool {
        in_ns(
            &self.sub,
            &["ping", "-c", "1", "-W", "1", "-q", "-I", src, dst],
        )
        .status
        .success()
    }

    /// Waits until `addr` is (or is not) in the enforcer's allowed4 set.
    pub fn wait_in_set(&self, addr: &str, want: bool, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let out = in_ns(
                &self.rtr,
                &["nft", "list", "set", "inet", "kopek", "allowed4"],
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let has = text
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .any(|w| w == addr);
            if has == want {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "{addr} in set: {has} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until ping to `dst` gives `want`; returns how long it took.
    pub fn wait_ping(&self, dst: &str, want: bool, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.ping(dst) == want {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "ping {dst} still {} after {timeout:?}",
                if want { "failing" } else { "answered" }
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A bulk TCP transfer between two namespaces (python3's sockets: no
/// tool of ours on either end). `serve` runs in one namespace, `connect`
/// in the other; whoever has `bytes` to send sends them, the receiver
/// counts what arrived and the time from the first byte to the last.
const TCP_XFER: &str = r#"
import socket, sys, time
mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
src = sys.argv[5] if len(sys.argv) > 5 else None
def pump(c):
    if n > 0:
        buf = b"k" * 65536
        left = n
        while left > 0:
            left -= c.send(buf[:min(left, len(buf))])
        c.shutdown(socket.SHUT_WR)
        c.recv(1)
    else:
        got, t0 = 0, None
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            if t0 is None:
                t0 = time.monotonic()
            got += len(d)
        print(got, time.monotonic() - (t0 or time.monotonic()))
        sys.stdout.flush()
if mode == "serve":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(1)
    c, _ = s.accept(); pump(c); c.close()
else:
    deadline = time.monotonic() + 10
    while True:
        try:
            c = socket.create_connection((host, port), timeout=60,
                                         source_address=(src, 0) if src else None); break
        except OSError:
            if time.monotonic() > deadline: raise
            time.sleep(0.05)
    pump(c); c.close()
"#;

/// Which way a [`tcp_transfer`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The server sends to the client.
    Download,
    /// The client sends to the server.
    Upload,
}

/// `bytes` over one TCP connection between a client in `client_ns`
/// (from `client_addr`) and a server in `server_ns` on
/// `server_addr:port`. Returns (bytes received, seconds from the first
/// byte received to the last).
pub fn tcp_transfer(
    client_ns: &str,
    client_addr: &str,
    server_ns: &str,
    server_addr: &str,
    port: u16,
    way: Way,
    bytes: u64,
) -> (u64, f64) {
    let python = super::require_tool("python3");
    let n = bytes.to_string();
    let (server_n, client_n) = match way {
        Way::Download => (n.as_str(), "0"),
        Way::Upload => ("0", n.as_str()),
    };
    let port = port.to_string();
    let server = Command::new("ip")
        .args(["netns", "exec", server_ns])
        .arg(&python)
        .args(["-c", TCP_XFER, "serve", server_addr, &port, server_n])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = Command::new("ip")
        .args(["netns", "exec", client_ns])
        .arg(&python)
        .args([
            "-c",
            TCP_XFER,
            "connect",
            server_addr,
            &port,
            client_n,
            client_addr,
        ])
        .output()
        .unwrap();
    let server = server.wait_with_output().unwrap();
    for (who, out) in [("client", &client), ("server", &server)] {
        assert!(
            out.status.success(),
            "tcp transfer {who}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let receiver = match way {
        Way::Download => &client,
        Way::Upload => &server,
    };
    let text = String::from_utf8_lossy(&receiver.stdout);
    let mut f = text.split_whitespace();
    let got = f
        .next()
        .and_then(|v| v.parse().ok())
        .expect("received bytes");
    let secs = f.next().and_then(|v| v.parse().ok()).expect("seconds");
    (got, secs)
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `kopek --config <config> <args>` inside namespace `ns`, logging warnings
/// to the test's stderr. `ip netns exec` execs kopek, so the child's pid
/// is kopek's.
pub fn spawn_in_ns(ns: &str, config: &Path, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, kopek_bin(), "--config"])
        .arg(config)
        .args(args)
        .env("KOPEK_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

pub struct EnforcerProc(Option<Child>);

impl EnforcerProc {
    pub fn start(ns: &str, config: &Path) -> EnforcerProc {
        EnforcerProc(Some(spawn_in_ns(ns, config, &["enforcer", "run"])))
    }

    /// SIGHUP (`systemctl reload`): re-read the class lists. `ip netns
    /// exec` execs the enforcer, so the child's pid is the enforcer's.
    pub fn hup(&self) {
        if let Some(c) = &self.0 {
            sh(&["kill", "-HUP", &c.id().to_string()]);
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for EnforcerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn euid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
