//! Fixtures for process-level tests: the real `kopek` binary, real peers
//! (softflowd, nfcapd, nfreplay, nfdump), temp state dirs, and a pcap
//! builder. Peers that are missing make the test fail loudly: `.ci/run`
//! installs them.
#![allow(dead_code)]

pub mod billing;
pub mod classify;
pub mod netns;
pub mod pcap;

use std::collections::HashMap;
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn kopek_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kopek")
}

/// A tmpfs of `size` (e.g. "64m") mounted on `dir` (created) while this
/// lives: a filesystem a test can fill. Needs root, as the suite has in CI.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} needs root (the suite runs as root in CI)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Path of an external tool; panics with instructions if it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: run .ci/run (it installs softflowd, nfdump, nftables, iputils-ping) or apt-get install -y softflowd nfdump nftables iputils-ping"
    );
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `kopek collector run` process on its own temp state dir.
pub struct Collector {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    /// The config's state dir (`dir` unless the test says otherwise).
    state: PathBuf,
    child: Option<Child>,
}

impl Collector {
    /// Writes a config allowing 127.0.0.1 (as exporter `local`; `extra_toml`
    /// continues that exporter's table) and starts.
    pub fn start(extra_toml: &str) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let config = dir.path().join("kopek.toml");
        std::fs::write(
            &config,
            Collector::config_text(dir.path(), port, extra_toml),
        )
        .unwrap();
        Collector::with_config(dir, config, port)
    }

    /// The config [`Collector::start`] writes, for state dir `state`.
    pub fn config_text(state: &Path, port: u16, extra_toml: &str) -> String {
        format!(
            r#"
[general]
state_dir = "{state}"

[collector]
name = "test"
listen = ["127.0.0.1:{port}"]
stats_interval_ms = 100

{segment}

[[collector.exporter]]
name = "local"
address = "127.0.0.1"
{extra_toml}
"#,
            state = state.display(),
            // A test may bring its own segment table (then it goes
            // after the exporter table, as the next top-level table).
            segment = if extra_toml.contains("[collector.segment]") {
                ""
            } else {
                "[collector.segment]\nblock_flush_ms = 50"
            },
        )
    }

    /// Starts a collector on a config written by the test (collector
    /// `name = "test"`, listening on 127.0.0.1:`port`).
    pub fn with_config(dir: tempfile::TempDir, config: PathBuf, port: u16) -> Collector {
        let state = dir.path().to_path_buf();
        Collector::with_state(dir, config, port, state)
    }

    /// [`Collector::with_config`] for a config whose state dir is `state`.
    pub fn with_state(
        dir: tempfile::TempDir,
        config: PathBuf,
        port: u16,
        state: PathBuf,
    ) -> Collector {
        let mut c = Collector {
            dir,
            config,
            port,
            state,
            child: None,
        };
        c.spawn();
        c
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub fn stats_file(&self) -> PathBuf {
        self.state.join("collector-test.stats.json")
    }

    /// Starts the process and waits until it has written its first stats
    /// file (after binding and opening its segment).
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.stats_file());
        let child = Command::new(kopek_bin())
            .args(["--config"])
            .arg(&self.config)
            .args(["collector", "run"])
            .env("KOPEK_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kopek collector");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.stats_file().exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("collector exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "collector not ready in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stats(&self) -> serde_json::Value {
        // Replaced atomically, or (a full disk) rewritten in place and read
        // again if caught halfway.
        kopek_collector::state_file::read_json(&self.stats_file()).unwrap()
    }

    /// Waits until `flows_written` reaches `n` (or the timeout).
    pub fn wait_flows(&self, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.stats()["flows_written"].as_u64().unwrap_or(0);
            if got >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait: the graceful path (flush, seal).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc_sigterm());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "collector exited with {status} on SIGTERM"
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "collector ignored SIGTERM for 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: the crash path.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Runs `kopek raw --state-dir <dir> <args>`.
    pub fn raw(&self, args: &[&str]) -> Output {
        raw(self.state_dir(), args)
    }

    /// Per-address totals as `kopek raw stats --by-address` reports them.
    pub fn totals_by_address(&self) -> HashMap<IpAddr, (u64, u64)> {
        raw_totals_by_address(self.state_dir())
    }
}

/// Runs `kopek raw --state-dir <state> <args>`.
pub fn raw(state: &Path, args: &[&str]) -> Output {
    Command::new(kopek_bin())
        .arg("raw")
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

/// `kopek raw stats --by-address` of a state dir: address → (bytes, packets).
pub fn raw_totals_by_address(state: &Path) -> HashMap<IpAddr, (u64, u64)> {
    let out = raw(state, &["stats", "--by-address", "--format", "csv"]);
    assert!(
        out.status.success(),
        "kopek raw stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[0] == "address" {
            m.insert(
                f[1].parse().unwrap(),
                (f[3].parse().unwrap(), f[4].parse().unwrap()),
            );
        }
    }
    m
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn libc_sigterm() -> i32 {
    15
}

pub fn signal(pid: u32, sig: i32) {
    run(Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string()));
}

/// nfdump's nfcapd, receiving into its own directory.
pub struct Nfcapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Nfcapd {
    pub fn start() -> Nfcapd {
        let bin = require_tool("nfcapd");
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let child = Command::new(bin)
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nfcapd");
        // nfcapd has no readiness signal; wait for its socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "nfcapd did not bind port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nfcapd {
            dir,
            port,
            child: Some(child),
        }
    }

    /// SIGTERM: nfcapd flushes and closes its file.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc_sigterm());
            c.wait().unwrap();
        }
    }

    /// The nfcapd files written (after stop).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("nfcapd.") && !n.contains("current"))
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Per-address (bytes, packets) from `nfdump -R dir -q -o csv`, counting a
/// flow for its src and its dst like `kopek raw stats --by-address`.
pub fn nfdump_totals_by_address(dir: &Path) -> HashMap<IpAddr, (u64, u64)> {
    let out = run(Command::new(require_tool("nfdump"))
        .arg("-R")
        .arg(dir)
        .args(["-q", "-o", "csv"]));
    let mut m: HashMap<IpAddr, (u64, u64)> = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 13 {
            continue;
        }
        let (Ok(sa), Ok(da)) = (f[3].parse::<IpAddr>(), f[4].parse::<IpAddr>()) else {
            continue;
        };
        let pkts: u64 = f[11].trim().parse().unwrap();
        let bytes: u64 = f[12].trim().parse().unwrap();
        let addrs = if sa == da { vec![sa] } else { vec![sa, da] };
        for a in addrs {
            let e = m.entry(a).or_default();
            e.0 += bytes;
            e.1 += pkts;
        }
    }
    m
}

/// Per-address totals of a list of flows (bytes, packets), the same rule.
pub fn totals_of(flows: &[pcap::Flow]) -> HashMap<IpAddr, (u64, u64)> {
    let mut m: HashMap<IpAddr, (u64, u64)> = HashMap::new();
    for f in flows {
        let addrs = if f.src == f.dst {
            vec![f.src]
        } else {
            vec![f.src, f.dst]
        };
        for a in addrs {
            let e = m.entry(a).or_default();
            e.0 += f.ip_bytes();
            e.1 += f.packets as u64;
        }
    }
    m
}

/// softflowd -r: reads the pcap, exports every flow at the end, exits.
/// `version`: "5", "9" or "10" (IPFIX); v9 and IPFIX carry IPv6 too.
pub fn softflowd(pcap: &Path, port: u16, version: &str, work: &Path) {
    let mut cmd = Command::new(require_tool("softflowd"));
    cmd.arg("-r")
        .arg(pcap)
        // -a: the pcap's clock, so exported times are the packets' times.
        .args([
            "-n",
            &format!("127.0.0.1:{port}"),
            "-v",
            version,
            "-d",
            "-a",
        ])
        .arg("-p")
        .arg(work.join(format!("softflowd-{port}.pid")))
        // No control socket (softflowd 1.1.0 may block in accept() with -r).
        .args(["-c", "none"]);
    if version != "5" {
        cmd.arg("-6");
    }
    run(&mut cmd);
}
