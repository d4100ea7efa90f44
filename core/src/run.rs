//! The core daemon (`kopek core run`).
//!
//! Three threads share one [`Core`] behind a mutex: the rater runs a cycle
//! every `core.cycle_interval_ms` (sooner when nudged), the control thread
//! serves the CLI's socket one request at a time, and the main thread waits
//! for signals and feeds the systemd watchdog. READY is sent once the
//! billing database is open and the socket bound.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kopek_config::Config;

use crate::CoreError;
use crate::control::{self, Reply, Request};
use crate::cycle::{CycleReport, Rater};
use crate::store::{Billing, LOCK_FILE};

pub const STATS_FILE: &str = "core.stats.json";
const WATCHDOG_PING: Duration = Duration::from_secs(5);
const STUCK_AFTER: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);
/// A rating cycle that keeps failing (its database on a full disk) is
/// logged at its first failure and then this often, not every cycle.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The billing database and the rating state: everything one core owns.
#[derive(Debug)]
pub struct Core {
    pub billing: Billing,
    pub rater: Rater,
    _lock: File,
}

impl Core {
    /// Takes the state dir's core lock and opens the database: the one
    /// writer. Used by the daemon and by `--offline` commands.
    pub fn open(config: &Config) -> Result<Core, CoreError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| CoreError::Io {
            what: format!("creating {}", config.state_dir.display()),
            source,
        })?;
        let lock = lock(&config.state_dir)?;
        let billing = Billing::open(&config.state_dir, config.timezone)?;
        let rater = Rater::new(&config.state_dir, config.core.posting);
        Ok(Core {
            billing,
            rater,
            _lock: lock,
        })
    }

    /// Applies the pppd spool, then runs a rating cycle.
    pub fn cycle(&mut self, now_ms: i64) -> Result<CycleReport, CoreError> {
        let spool = self.rater.state_dir().to_path_buf();
        let a = self.billing.apply_ppp_spool(&spool)?;
        if a.events > 0 {
            tracing::debug!(
                events = a.events,
                bound = a.bound,
                ended = a.ended,
                refused = a.refused,
                "ppp events applied"
            );
        }
        self.billing.cycle(&mut self.rater, now_ms)
    }
}

/// Takes the per-state-dir lock: one core writes the billing database
/// (held while the returned file lives).
pub fn lock(state_dir: &Path) -> Result<File, CoreError> {
    let p = state_dir.join(LOCK_FILE);
    let f = File::create(&p).map_err(|source| CoreError::Io {
        what: format!("creating {}", p.display()),
        source,
    })?;
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(CoreError::Invalid(format!(
            "another core holds {} (one writer per billing database); with the daemon running, leave out --offline",
            p.display()
        )));
    }
    Ok(f)
}

/// The stats file: the last cycle that went through, the cycles failing
/// since (each rolled back and retried: billing stands still meanwhile),
/// and the process, so that `kopek core stats` tells a running core from
/// a stopped or killed one.
#[derive(serde::Serialize)]
struct StatsOut<'a> {
    #[serde(flatten)]
    cycle: &'a CycleReport,
    pid: u32,
    started_ms: i64,
    written_ms: i64,
    stopped: bool,
    /// Cycles failed in a row up to now (0: the last one went through).
    failed_cycles: u64,
    /// The last failure of this run: when, and why.
    last_failure: Option<&'a Failure>,
}

/// A rating cycle that failed.
#[derive(Debug, Clone, serde::Serialize)]
struct Failure {
    at_ms: i64,
    error: String,
}

/// What the rater has to say in the stats file.
#[derive(Default)]
struct RaterState {
    last: CycleReport,
    started_ms: i64,
    failed_cycles: u64,
    last_failure: Option<Failure>,
    /// The stats file could not be written (said once).
    stats_unwritten: bool,
}

fn write_stats(state_dir: &Path, st: &mut RaterState, stopped: bool) {
    let p = state_dir.join(STATS_FILE);
    let out = StatsOut {
        cycle: &st.last,
        pid: std::process::id(),
        started_ms: st.started_ms,
        written_ms: now_ms(),
        stopped,
        failed_cycles: st.failed_cycles,
        last_failure: st.last_failure.as_ref(),
    };
    let ok = serde_json::to_vec_pretty(&out)
        .ok()
        .and_then(|j| kopek_collector::state_file::replace(&p, &j).ok());
    // Said once until it works again (a full disk fails every cycle).
    if ok.is_none() && !st.stats_unwritten {
        tracing::warn!(file = %p.display(), "could not write the stats file");
    }
    st.stats_unwritten = ok.is_none();
}

/// Wakes the rater early.
#[derive(Debug, Default)]
struct Nudge {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Nudge {
    fn poke(&self) {
        if let Ok(mut f) = self.flag.lock() {
            *f = true;
            self.cv.notify_all();
        }
    }

    fn wait(&self, timeout: Duration) {
        if let Ok(f) = self.flag.lock()
            && let Ok((mut f, _)) = self.cv.wait_timeout_while(f, timeout, |f| !*f)
        {
            *f = false;
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn serve(config_path: &Path) -> Result<(), CoreError> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = Config::load(config_path).map_err(|e| CoreError::Invalid(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CoreError::Io {
            what: "tokio runtime".into(),
            source,
        })?;
    let (mut term, mut int) = {
        let _ctx = rt.enter();
        let sig = |k| {
            signal(k).map_err(|source| CoreError::Io {
                what: "signal handler".into(),
                source,
            })
        };
        (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?)
    };
    let core = Core::open(&config)?;
    let listener = control::bind(&config.core.socket, &config.core.socket_group)?;
    let core = Arc::new(Mutex::new(core));
    let nudge = Arc::new(Nudge::default());
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let interval = config.core.cycle_interval;
    let state_dir = config.state_dir.clone();
    let mirror_days = config.retention.traffic_days;

    let rater = {
        let (core, nudge, stop, heartbeat) =
            (core.clone(), nudge.clone(), stop.clone(), heartbeat.clone());
        std::thread::Builder::new()
            .name("rater".into())
            .spawn(move || {
                rate_loop(
                    &core,
                    &nudge,
                    &stop,
                    &heartbeat,
                    started,
                    interval,
                    &state_dir,
                    mirror_days,
                )
            })
            .map_err(|source| CoreError::Io {
                what: "spawning the rater".into(),
                source,
            })?
    };
    {
        let (core, nudge) = (core.clone(), nudge.clone());
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || serve_control(&listener, &core, &nudge))
            .map_err(|source| CoreError::Io {
                what: "spawning the control thread".into(),
                source,
            })?;
    }
    tracing::info!(socket = %config.core.socket.display(), state_dir = %config.state_dir.display(), "core ready");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let failure: Option<String> = rt.block_on(async {
        let mut watchdog = tokio::time::interval(WATCHDOG_PING);
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return None }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return None }
                _ = watchdog.tick() => {
                    let beat = Duration::from_millis(heartbeat.load(Ordering::Relaxed));
                    if rater.is_finished() {
                        return Some("the rater stopped".to_string());
                    }
                    if started.elapsed().saturating_sub(beat) > STUCK_AFTER {
                        return Some("the rater is stuck".to_string());
                    }
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    });
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    stop.store(true, Ordering::Relaxed);
    nudge.poke();
    let rated = rater
        .join()
        .map_err(|_| CoreError::Invalid("the rater panicked".into()))?;
    let _ = std::fs::remove_file(&config.core.socket);
    rated?;
    match failure {
        Some(why) => Err(CoreError::Invalid(why)),
        None => Ok(()),
    }
}

/// How much longer than tier 2 the mirror keeps a row (see [`rate_loop`]):
/// a day covers the two daemons' clocks and timers drifting apart.
const MIRROR_MARGIN_MS: i64 = 86_400_000;

#[allow(clippy::too_many_arguments)]
fn rate_loop(
    core: &Mutex<Core>,
    nudge: &Nudge,
    stop: &AtomicBool,
    heartbeat: &AtomicU64,
    started: Instant,
    interval: Duration,
    state_dir: &Path,
    mirror_days: u32,
) -> Result<(), CoreError> {
    let mut last_prune: Option<Instant> = None;
    let mut st = RaterState {
        started_ms: now_ms(),
        ..RaterState::default()
    };
    let mut failure_said: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        // The mirror of tier 2 keeps what tier 2 keeps (retention.traffic_days),
        // and a day more: it must never forget a row tier 2 could still
        // change (the classifier counts no record before its cut, and
        // removes a row only once this core has read it).
        if let Some(cut) = kopek_classifier::aggregate::traffic_cut(now_ms(), mirror_days)
            && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY)
        {
            let before = cut - MIRROR_MARGIN_MS;
            let r = core
                .lock()
                .map_err(|_| CoreError::Invalid("core state poisoned".into()))?
                .billing
                .prune_mirror(before);
            match r {
                Ok(n) if n > 0 => {
                    tracing::info!(rows = n, "pruned the tier-2 mirror past retention")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "pruning the tier-2 mirror failed"),
            }
            last_prune = Some(Instant::now());
        }
        heartbeat.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let report = {
            let mut c = core
                .lock()
                .map_err(|_| CoreError::Invalid("core state poisoned".into()))?;
            c.cycle(now_ms())
        };
        match report {
            Ok(r) => {
                for t in &r.transitions {
                    tracing::info!(account = %t.account, from = %t.from, to = %t.to, detail = %t.detail, "access changed");
                }
                if r.rows > 0 || r.entries_posted > 0 {
                    tracing::debug!(
                        rows = r.rows,
                        entries = r.entries_posted,
                        elapsed_ms = r.elapsed_ms,
                        "cycle"
                    );
                }
                st.last = r;
                if st.failed_cycles > 0 {
                    tracing::info!(
                        failed_cycles = st.failed_cycles,
                        "rating cycles succeed again"
                    );
                }
                st.failed_cycles = 0;
                failure_said = None;
                write_stats(state_dir, &mut st, false);
            }
            Err(e) => {
                // The transaction rolled back; the next cycle retries from
                // the same watermark.
                st.failed_cycles += 1;
                if failure_said.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY) {
                    tracing::error!(
                        error = %e,
                        failed_cycles = st.failed_cycles,
                        "rating cycle failed (rolled back; retried every cycle, said once a minute)"
                    );
                    failure_said = Some(Instant::now());
                }
                st.last_failure = Some(Failure {
                    at_ms: now_ms(),
                    error: e.to_string(),
                });
                write_stats(state_dir, &mut st, false);
            }
        }
        nudge.wait(interval);
    }
    write_stats(state_dir, &mut st, true);
    Ok(())
}

fn serve_control(listener: &std::os::unix::net::UnixListener, core: &Mutex<Core>, nudge: &Nudge) {
    for conn in listener.incoming() {
        let s = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let who = control::peer_name(&s);
        let Some(request) = control::read_request(&s) else {
            continue;
        };
        let reply = match request {
            Err(e) => Reply::from_result(Err(CoreError::Invalid(e))),
            Ok(Request::Ping) => Reply::from_result(Ok(crate::ops::Outcome {
                changed: false,
                message: "pong".into(),
                id: None,
            })),
            Ok(Request::Cycle) => {
                nudge.poke();
                Reply::from_result(Ok(crate::ops::Outcome {
                    changed: false,
                    message: "cycle requested".into(),
                    id: None,
                }))
            }
            Ok(Request::Apply { command }) => {
                let r = match core.lock() {
                    Ok(mut c) => c.billing.apply(&command, &who, now_ms()),
                    Err(_) => Err(CoreError::Invalid("core state poisoned".into())),
                };
                match &r {
                    Ok(o) => {
                        tracing::info!(who = %who, result = %o.message, "command applied");
                        // Money or state may have changed: decide at once.
                        nudge.poke();
                    }
                    Err(e) => tracing::warn!(who = %who, error = %e, "command refused"),
                }
                Reply::from_result(r)
            }
        };
        control::write_reply(&s, &reply);
    }
}
