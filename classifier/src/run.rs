//! The classifier daemon (`kopek classifier run`).
//!
//! One worker thread drives the [`Engine`]: step, commit when due, sleep
//! `poll_interval` when caught up, maintenance hourly. The main thread
//! waits for signals: SIGHUP reloads the config through the same path as
//! startup, SIGTERM/SIGINT commit what is pending and stop. systemd hears
//! READY once tier 2 is open and the first catch-up pass has started, then
//! WATCHDOG every few seconds while the worker is alive. A failure after
//! the start (tier 2 on a full disk) does not end the daemon: the engine
//! is opened again from the committed positions after a pause, until
//! tier 2 takes commits again ([`StatsFile::last_failure`]).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kopek_config::Config;

use crate::ClassifierError;
use crate::engine::{Engine, EngineStats};

pub const STATS_FILE: &str = "classifier.stats.json";
pub const LOCK_FILE: &str = "classifier.lock";
const WATCHDOG_PING: Duration = Duration::from_secs(5);
pub const STATS_EVERY: Duration = Duration::from_secs(1);
const MAINTAIN_EVERY: Duration = Duration::from_secs(3_600);
/// A worker that has not finished a loop for this long is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(60);

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The stats file path of the classifier in `state_dir`.
pub fn stats_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATS_FILE)
}

/// The stats file: the engine's counters and the process that wrote them,
/// so that `kopek classifier stats` can tell a running daemon from one
/// that stopped or was killed (its counters are of that run only).
/// (Written with a borrowed `E`, read back with `EngineStats`.)
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StatsFile<E = EngineStats, F = Failure> {
    #[serde(flatten)]
    pub engine: E,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub started_ms: i64,
    #[serde(default)]
    pub written_ms: i64,
    /// Written last by a daemon that stopped cleanly (SIGTERM, SIGINT).
    #[serde(default)]
    pub stopped: bool,
    /// The last time tier 2 could not be written or read (a full disk, an
    /// I/O error): the daemon stays up, commits nothing, and starts over
    /// from the committed positions with growing pauses until it can.
    /// `recovered_ms` is `None` while it still fails.
    #[serde(default)]
    pub last_failure: Option<F>,
}

/// A run of failed attempts of the classifier's work (see
/// [`StatsFile::last_failure`]).
pub use kopek_collector::run::Failure;

/// Reads the stats file a running classifier writes.
pub fn read_stats(state_dir: &Path) -> Result<StatsFile, ClassifierError> {
    use kopek_collector::state_file::{ReadError, read_json};
    let p = stats_path(state_dir);
    read_json(&p).map_err(|e| match e {
        ReadError::Io { source, .. } => ClassifierError::Io {
            what: format!("reading {}", p.display()),
            source,
        },
        e @ ReadError::Parse { .. } => ClassifierError::Invalid(e.to_string()),
    })
}

fn write_stats(
    state_dir: &Path,
    s: &EngineStats,
    started_ms: i64,
    stopped: bool,
    last_failure: Option<&Failure>,
) -> Result<(), ClassifierError> {
    let p = stats_path(state_dir);
    let out = StatsFile {
        engine: s,
        pid: std::process::id(),
        started_ms,
        written_ms: now_ms(),
        stopped,
        last_failure,
    };
    let json =
        serde_json::to_vec_pretty(&out).map_err(|e| ClassifierError::Invalid(e.to_string()))?;
    kopek_collector::state_file::replace(&p, &json).map_err(|source| ClassifierError::Io {
        what: format!("writing {}", p.display()),
        source,
    })
}

/// Takes the per-state-dir lock: one classifier writes tier 2.
pub fn lock(state_dir: &Path) -> Result<File, ClassifierError> {
    flock(
        &state_dir.join(LOCK_FILE),
        "another classifier holds it (one writer per tier 2)",
    )
}

/// Takes an exclusive lock on `p` (created), held while the file lives;
/// `busy` says why it may be held.
pub(crate) fn flock(p: &Path, busy: &str) -> Result<File, ClassifierError> {
    let f = File::create(p).map_err(|source| ClassifierError::Io {
        what: format!("creating {}", p.display()),
        source,
    })?;
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(ClassifierError::Invalid(format!(
            "{} is locked: {busy}",
            p.display()
        )));
    }
    Ok(f)
}

enum Control {
    Reload(Box<Config>),
    /// SIGHUP with a config file that does not load: noted in the stats.
    ReloadFailed(String),
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn serve(config_path: &Path) -> Result<(), ClassifierError> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = Config::load(config_path)?;
    std::fs::create_dir_all(&config.state_dir).map_err(|source| ClassifierError::Io {
        what: format!("creating {}", config.state_dir.display()),
        source,
    })?;
    let _lock = lock(&config.state_dir)?;
    let started_ms = now_ms();
    let state_dir = config.state_dir.clone();
    // Signals are taken over before anything slow (opening tier 2, loading
    // a full table): a SIGTERM that early waits in the stream and stops the
    // daemon cleanly as soon as it runs, instead of killing it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ClassifierError::Io {
            what: "tokio runtime".into(),
            source,
        })?;
    let (mut term, mut int, mut hup) = {
        let _ctx = rt.enter();
        let sig = |k| {
            signal(k).map_err(|source| ClassifierError::Io {
                what: "signal handler".into(),
                source,
            })
        };
        (
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
            sig(SignalKind::hangup())?,
        )
    };
    // Opening may take a while (for a new zone, the daily rollup's newest
    // day, and any days ahead of the clock, are summed before READY):
    // systemd is asked for more time as it goes rather than killing a
    // start that would then begin again from nothing.
    let mut asked = Instant::now();
    let engine = Engine::open_with_progress(config, now_ms(), &mut || {
        if asked.elapsed() >= Duration::from_secs(10) {
            asked = Instant::now();
            let _ = sd_notify::notify(
                false,
                &[sd_notify::NotifyState::ExtendTimeoutUsec(60_000_000)],
            );
        }
    })?;
    write_stats(&state_dir, engine.stats(), started_ms, false, None)?;

    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Control>();
    let worker = {
        let stop = stop.clone();
        let heartbeat = heartbeat.clone();
        let state_dir = state_dir.clone();
        std::thread::Builder::new()
            .name("classifier".into())
            .spawn(move || {
                let mut w = Worker {
                    state_dir: &state_dir,
                    stop: &stop,
                    heartbeat: &heartbeat,
                    started,
                    started_ms,
                    rx: &rx,
                    failure: None,
                    stats_unwritten: false,
                };
                w.supervise(engine)
            })
            .map_err(|source| ClassifierError::Io {
                what: "spawning the classifier thread".into(),
                source,
            })?
    };
    tracing::info!(state_dir = %state_dir.display(), "classifier ready");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let failure: Result<Option<String>, ClassifierError> = rt.block_on(async {
        let mut watchdog = tokio::time::interval(WATCHDOG_PING);
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(None) }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(None) }
                _ = hup.recv() => match Config::load(config_path) {
                    Ok(c) => { let _ = tx.send(Control::Reload(Box::new(c))); }
                    Err(e) => {
                        tracing::error!(error = %e, "reload failed; the old config stays");
                        let _ = tx.send(Control::ReloadFailed(e.to_string()));
                    }
                },
                _ = watchdog.tick() => {
                    let beat = Duration::from_millis(heartbeat.load(Ordering::Relaxed));
                    if worker.is_finished() {
                        return Ok(Some("the classifier thread stopped".to_string()));
                    }
                    if started.elapsed().saturating_sub(beat) > STUCK_AFTER {
                        return Ok(Some("the classifier thread is stuck".to_string()));
                    }
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    });
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    stop.store(true, Ordering::Relaxed);
    let worker_result = worker
        .join()
        .map_err(|_| ClassifierError::Invalid("the classifier thread panicked".into()))?;
    let failure: Option<String> = failure?;
    worker_result?;
    match failure {
        Some(why) => Err(ClassifierError::Invalid(why)),
        None => Ok(()),
    }
}

/// How often tier 1 is checked against `retention.raw_max_bytes`.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// How often tier 1 still over the limit is said again.
const OVER_SAID_EVERY: Duration = Duration::from_secs(600);

/// Keeps tier 1 below `retention.raw_max_bytes` ([`Engine::trim_raw`]):
/// first once idle (caught up, host detail done: what was counted by then
/// can go), then every [`TRIM_EVERY`].
struct Trim {
    started: Instant,
    last: Option<Instant>,
    over_said: Option<Instant>,
}

impl Trim {
    fn new() -> Trim {
        Trim {
            started: Instant::now(),
            last: None,
            over_said: None,
        }
    }

    fn when_due(&mut self, engine: &mut Engine, idle: bool) -> Result<(), ClassifierError> {
        let due = match self.last {
            None => idle || self.started.elapsed() >= TRIM_EVERY,
            Some(t) => t.elapsed() >= TRIM_EVERY,
        };
        if !due {
            return Ok(());
        }
        self.last = Some(Instant::now());
        let (removed, over) = engine.trim_raw(now_ms())?;
        let max = engine.config().retention.raw_max_bytes;
        if removed > 0 {
            tracing::info!(
                segments = removed,
                raw_max_bytes = max,
                "tier-1 segments removed (retention.raw_max_bytes: the oldest, counted)"
            );
        }
        if over == 0 {
            self.over_said = None;
        } else if self
            .over_said
            .is_none_or(|t| t.elapsed() >= OVER_SAID_EVERY)
        {
            tracing::warn!(
                over_bytes = over,
                raw_max_bytes = max,
                "tier 1 is over retention.raw_max_bytes, and what is left is not yet counted \
                 (or its hours' host detail is not done, or it is the collectors' open segments): \
                 nothing more removed"
            );
            self.over_said = Some(Instant::now());
        }
        Ok(())
    }
}

/// The first pause after a failed attempt; each failure in a row doubles
/// it, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// The classifier thread: the engine's loop ([`Worker::work`]), and what
/// happens when it fails ([`Worker::supervise`]).
struct Worker<'a> {
    state_dir: &'a Path,
    stop: &'a AtomicBool,
    heartbeat: &'a AtomicU64,
    started: Instant,
    started_ms: i64,
    rx: &'a mpsc::Receiver<Control>,
    /// The current or last run of failures, for the stats file.
    failure: Option<Failure>,
    /// The stats file could not be written (said once).
    stats_unwritten: bool,
}

impl Worker<'_> {
    /// Runs the engine until asked to stop. When its work fails after
    /// the start (tier 2 on a full disk, an I/O error), the daemon does
    /// not exit: systemd would restart it every few seconds and give up
    /// after five tries (its start limit), leaving billing stopped after
    /// the disk has room again. The engine is dropped (a failed commit
    /// wrote nothing, its batch and read positions go with it) and opened
    /// again after a pause, as a restart would, from the committed
    /// positions: nothing counted twice, nothing lost. The stats file
    /// shows the failure until a commit gets through.
    fn supervise(&mut self, engine: Engine) -> Result<(), ClassifierError> {
        let mut engine = engine;
        let mut pause = RETRY_FIRST;
        loop {
            let commits_before = engine.stats().commits;
            let err = match self.work(&mut engine, commits_before, &mut pause) {
                Ok(()) => return Ok(()),
                // Stopping: what was not committed is read again at the
                // next start.
                Err(e) if self.stop.load(Ordering::Relaxed) => return Err(e),
                Err(e) => e,
            };
            let mut config = engine.config().clone();
            let mut carried = engine.stats().clone();
            drop(engine);
            self.failed(&err, pause);
            engine = loop {
                if !self.pause(pause, &mut config, &mut carried) {
                    return Ok(());
                }
                pause = (pause * 2).min(RETRY_MAX);
                let heartbeat = (self.heartbeat, self.started);
                let opened = Engine::open_with_progress(config.clone(), now_ms(), &mut || {
                    heartbeat
                        .0
                        .store(heartbeat.1.elapsed().as_millis() as u64, Ordering::Relaxed)
                });
                match opened {
                    Ok(mut e) => {
                        e.carry_over(&carried);
                        break e;
                    }
                    Err(e) => self.failed(&e, pause),
                }
            };
        }
    }

    fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Notes a failed attempt (log, stats file) before a pause of `pause`.
    fn failed(&mut self, err: &ClassifierError, pause: Duration) {
        let f = Failure::note(&mut self.failure, now_ms(), err.to_string());
        tracing::error!(
            error = %err,
            attempts = f.attempts,
            retry_in_s = pause.as_secs(),
            "tier 2 not written: the records since the last commit are read again \
             from tier 1 once it can be (nothing is lost or counted twice); retrying"
        );
    }

    /// Sleeps `pause` (alive for the watchdog), taking reloads meanwhile
    /// into `config` and rewriting the stats file; false when asked to
    /// stop.
    fn pause(&mut self, pause: Duration, config: &mut Config, carried: &mut EngineStats) -> bool {
        let until = Instant::now() + pause;
        let mut written: Option<Instant> = None;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            self.beat();
            // Reloads meanwhile: the config the next engine opens with.
            while let Ok(control) = self.rx.try_recv() {
                let error = match control {
                    Control::Reload(c) => {
                        *config = *c;
                        None
                    }
                    Control::ReloadFailed(e) => Some(e),
                };
                carried.last_reload = Some(crate::engine::ReloadOutcome {
                    at_ms: now_ms(),
                    error,
                });
            }
            if written.is_none_or(|t| t.elapsed() >= STATS_EVERY) {
                self.write_stats(carried, false);
                written = Some(Instant::now());
            }
            std::thread::sleep(
                Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())),
            );
        }
        true
    }

    /// Writes the stats file; one that cannot be written (the disk is
    /// full) is said in the log once, not a reason to stop.
    fn write_stats(&mut self, s: &EngineStats, stopped: bool) {
        match write_stats(
            self.state_dir,
            s,
            self.started_ms,
            stopped,
            self.failure.as_ref(),
        ) {
            Ok(()) => self.stats_unwritten = false,
            Err(e) => {
                if !self.stats_unwritten {
                    tracing::error!(error = %e, "cannot write the stats file");
                    self.stats_unwritten = true;
                }
            }
        }
    }

    /// The engine's loop: step, commit, maintenance, stats; on stop, the
    /// pending batch committed. A failure on the way is the caller's.
    fn work(
        &mut self,
        engine: &mut Engine,
        commits_before: u64,
        pause: &mut Duration,
    ) -> Result<(), ClassifierError> {
        let poll = engine.config().classifier.poll_interval;
        let mut last_stats = Instant::now();
        let mut last_maintain: Option<Instant> = None;
        let mut trim = Trim::new();
        while !self.stop.load(Ordering::Relaxed) {
            self.beat();
            while let Ok(control) = self.rx.try_recv() {
                match control {
                    Control::Reload(c) => match engine.reload(*c, now_ms()) {
                        Ok(()) => tracing::info!("config reloaded"),
                        Err(e) => {
                            tracing::error!(error = %e, "reload failed; the old config stays")
                        }
                    },
                    Control::ReloadFailed(e) => engine.note_reload(now_ms(), Some(e)),
                }
            }
            let o = engine.step(now_ms())?;
            if engine.commit_due(o.caught_up) {
                engine.commit(now_ms())?;
            }
            // Failing until tier 2 has taken a commit again (an ISP's
            // tier 1 grows every second: there is always one to take).
            if let Some(f) = self.failure.as_mut()
                && engine.stats().commits > commits_before
                && f.end(now_ms())
            {
                *pause = RETRY_FIRST;
                tracing::info!(attempts = f.attempts, "tier 2 written again");
            }
            if last_maintain.is_none_or(|t| t.elapsed() >= MAINTAIN_EVERY) && o.caught_up {
                engine.maintain(now_ms())?;
                last_maintain = Some(Instant::now());
            }
            if last_stats.elapsed() >= STATS_EVERY {
                // Commits into a file nobody else sees any more: open the
                // one that is there now (as a restart would), and count
                // tier 1 into it from its own read positions.
                if let Some(why) = engine.tier2_replaced() {
                    return Err(ClassifierError::Invalid(why));
                }
                self.write_stats(engine.stats(), false);
                last_stats = Instant::now();
            }
            // Host detail only when nothing fresh waits, a slice at a time.
            let hosts_busy = o.caught_up && engine.hosts_step(now_ms())?;
            // Then the daily rollup's older days, one a step.
            let daily_busy = o.caught_up && !hosts_busy && engine.daily_step(now_ms())?;
            let idle = o.caught_up && !hosts_busy && !daily_busy;
            trim.when_due(engine, idle)?;
            if idle {
                std::thread::sleep(poll);
            }
        }
        engine.flush(now_ms())?;
        self.write_stats(engine.stats(), true);
        tracing::info!(
            records = engine.stats().committed.records,
            commits = engine.stats().commits,
            "classifier stopped"
        );
        Ok(())
    }
}
