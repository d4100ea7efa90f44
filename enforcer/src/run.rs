//! The enforcer daemon (`kopek enforcer run`).
//!
//! Start: the table is replaced (ours only) with the allowed set the core
//! has decided — or an empty one if the core is not alive. Then, every
//! `poll_interval`: if the core's decisions or the bindings changed,
//! compute the desired set and apply the difference as one batch; every
//! `renew` interval, while the core is alive, give every allowed element a
//! fresh lease (one batch). A failed batch, or a table someone removed,
//! leads to a full resynchronization from the kernel's own view.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use kopek_config::Config;

use crate::EnforcerError;
use crate::classes::ClassMirror;
use crate::counters;
use crate::desired::{Desired, Versions, desired, versions};
use crate::nft;
use crate::shaping::{self, Caps};

/// Full comparison with the kernel at least this often.
const RESYNC_EVERY: Duration = Duration::from_secs(60);
/// How often failing counter polls are said again.
const COUNTERS_FAILING_SAID_EVERY: Duration = Duration::from_secs(60);
const WATCHDOG_PING: Duration = Duration::from_secs(5);

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The enforcer's state between polls.
#[derive(Debug)]
pub struct Enforcer {
    config: Config,
    /// What the kernel's allowed sets hold, as far as we know.
    applied: BTreeSet<IpNet>,
    /// What the kernel's speed-cap maps hold, as far as we know.
    applied_caps: BTreeMap<IpNet, Caps>,
    seen: Option<Versions>,
    last_renew: Instant,
    last_resync: Instant,
    /// The nft-counter tier-1 source, when `counters_poll_s` is set.
    counters: Option<counters::Source>,
    /// The class lists as nft sets, when counting by class.
    classes: Option<ClassMirror>,
    /// Counter polls fail since (when it was last said).
    counters_failing: Option<Instant>,
}

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    pub added: usize,
    pub removed: usize,
    pub renewed: usize,
    pub resynced: bool,
    /// Hosts whose speed caps were set or changed.
    pub capped: usize,
    /// Tier-1 records written from counters.
    pub counted: u64,
}

impl Enforcer {
    fn static_file(&self) -> Option<&Path> {
        self.config.classifier.bindings_file.as_deref()
    }

    /// The core confirms: its last cycle is younger than half a lease.
    fn core_alive(&self, cycle_ms: Option<i64>, now: i64) -> bool {
        let stale = (self.config.enforcer.lease.as_millis() / 2) as i64;
        cycle_ms.is_some_and(|t| now - t < stale)
    }

    /// Installs the table with what the core allows now (nothing if the
    /// core is not alive), replacing any earlier version of our table.
    pub fn start(config: Config) -> Result<Enforcer, EnforcerError> {
        let counters = match config.enforcer.counters_poll {
            Some(_) => Some(counters::Source::open(&config.state_dir, now_ms())?),
            None => None,
        };
        // A class list the classifier cannot read stops it too: refuse
        // to start (the unit's table keeps denying) rather than count
        // classes wrongly.
        let classes = match config.enforcer.counters_poll {
            Some(_) if config.enforcer.counters_by_class => {
                Some(ClassMirror::load(&config.classifier)?)
            }
            _ => None,
        };
        let mut e = Enforcer {
            classes,
            config,
            applied: BTreeSet::new(),
            applied_caps: BTreeMap::new(),
            seen: None,
            last_renew: Instant::now(),
            last_resync: Instant::now(),
            counters,
            counters_failing: None,
        };
        e.resync(true)?;
        Ok(e)
    }

    /// Reads and zeroes the counters, writes the deltas to tier 1, deletes
    /// the counters of hosts no longer allowed once they read zero.
    pub fn poll_counters(&mut self) -> Result<u64, EnforcerError> {
        let Some(src) = self.counters.as_mut() else {
            return Ok(0);
        };
        let c = &self.config.enforcer;
        let before = src.records_written;
        src.prepare(now_ms())?;
        let readings = counters::reset_all(c)?;
        let zero = src.write(&readings, self.classes.as_ref(), now_ms())?;
        let stale = counters::stale(&zero, &self.applied);
        if !stale.is_empty() {
            let batch: String = stale
                .iter()
                .map(|n| format!("delete counter inet {} {n}\n", c.table))
                .collect();
            if let Err(e) = nft::apply(c, &batch) {
                tracing::warn!(error = %e, "could not delete stale counters (retried next poll)");
            }
        }
        Ok(src.records_written - before)
    }

    /// Re-reads the class lists; when they changed, the counts so far are
    /// written under the old classes and the sets are swapped in one
    /// batch. A list that no longer reads keeps the old sets (logged).
    pub fn reload_classes(&mut self) -> Result<bool, EnforcerError> {
        let Some(old) = &self.classes else {
            return Ok(false);
        };
        let new = match ClassMirror::load(&self.config.classifier) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "class lists unreadable; counting by the last good ones");
                return Ok(false);
            }
        };
        if new.sha256 == old.sha256 {
            return Ok(false);
        }
        if new.classes != old.classes {
            tracing::warn!(
                "the classes themselves changed (names or the default); restart the enforcer to count them"
            );
            return Ok(false);
        }
        self.poll_counters()?;
        let mut batch = String::new();
        new.fill_lines(&self.config.enforcer.table, true, &mut batch);
        nft::apply(&self.config.enforcer, &batch)?;
        tracing::info!(sha256 = %new.sha256, "class sets updated");
        self.classes = Some(new);
        Ok(true)
    }

    /// Final counter poll and sealing of the counter segment.
    pub fn shutdown(&mut self) -> Result<(), EnforcerError> {
        if self.counters.is_some() {
            self.poll_counters()?;
        }
        if let Some(src) = self.counters.as_mut() {
            src.close(now_ms())?;
        }
        Ok(())
    }

    fn desired_now(&mut self) -> Result<(Desired, bool), EnforcerError> {
        let now = now_ms();
        let d = desired(&self.config.state_dir, self.static_file(), now)?;
        self.seen = Some(d.versions);
        let alive = self.core_alive(d.versions.core_cycle_ms, now);
        Ok((d, alive))
    }

    /// Rebuilds from the kernel's view: a missing table is reinstalled
    /// whole; otherwise the kernel set is what we diff against.
    fn resync(&mut self, replace: bool) -> Result<(), EnforcerError> {
        let (d, alive) = self.desired_now()?;
        let (want, caps) = if alive {
            (d.allowed, d.caps)
        } else {
            (BTreeSet::new(), BTreeMap::new())
        };
        let c = &self.config.enforcer;
        let kernel = nft::kernel_allowed(c)?;
        match kernel {
            Some(k) if !replace => {
                self.applied = k;
                self.applied_caps = shaping::kernel(c)?;
            }
            _ => {
                // Counts not yet read would go with the old table.
                if kernel.is_some() && self.counters.is_some() {
                    self.poll_counters()?;
                }
                let c = &self.config.enforcer;
                nft::replace(c, &want, &caps, self.classes.as_ref(), c.lease)?;
                self.applied = want;
                self.applied_caps = caps;
                self.last_renew = Instant::now();
            }
        }
        self.last_resync = Instant::now();
        Ok(())
    }

    /// One poll.
    pub fn step(&mut self) -> Result<Step, EnforcerError> {
        let mut s = Step::default();
        if self
            .counters
            .as_ref()
            .is_some_and(|src| src.due(&self.config.enforcer))
        {
            // A counter poll that fails (its tier 1 on a full disk) does
            // not hold up the allowed set and the leases: the counts wait
            // in the kernel or in memory (`counters::Source::prepare`).
            match self.poll_counters() {
                Ok(n) => {
                    s.counted = n;
                    self.counters_failing = None;
                }
                Err(e) => {
                    if self
                        .counters_failing
                        .is_none_or(|t| t.elapsed() >= COUNTERS_FAILING_SAID_EVERY)
                    {
                        tracing::error!(
                            error = %e,
                            "nft counters not written to tier 1 (retried every poll; \
                             the counts wait in the kernel, nothing is lost)"
                        );
                        self.counters_failing = Some(Instant::now());
                    }
                }
            }
        }
        if self.last_resync.elapsed() >= RESYNC_EVERY {
            self.reload_classes()?;
            self.resync(false)?;
            s.resynced = true;
        }
        let v = versions(&self.config.state_dir)?;
        let renew_due = self.last_renew.elapsed() >= self.config.enforcer.renew;
        if Some(v) == self.seen && !renew_due {
            return Ok(s);
        }
        let (d, alive) = self.desired_now()?;
        let want = d.allowed;
        // A dead core allows nothing new and renews nothing: its leases run
        // out. Revocations it made before dying are still applied.
        let add: Vec<IpNet> = if alive {
            if renew_due {
                want.iter().copied().collect()
            } else {
                want.difference(&self.applied).copied().collect()
            }
        } else {
            Vec::new()
        };
        let remove: Vec<IpNet> = self.applied.difference(&want).copied().collect();
        // Caps follow the allowed set as it will be after this batch.
        let mut after = self.applied.clone();
        for n in &remove {
            after.remove(n);
        }
        after.extend(add.iter().copied());
        let want_caps: BTreeMap<IpNet, Caps> = d
            .caps
            .into_iter()
            .filter(|(n, _)| after.contains(n))
            .collect();
        let caps = shaping::delta(&self.applied_caps, &want_caps);
        let c = &self.config.enforcer;
        let batch = nft::delta_batch(c, &add, &remove, &caps, self.classes.as_ref(), c.lease);
        match nft::apply(c, &batch) {
            Ok(()) => {
                s.capped = caps.1.len();
                self.applied_caps = want_caps;
                s.removed = remove.len();
                if renew_due && alive {
                    s.renewed = add.len();
                    self.last_renew = Instant::now();
                } else {
                    s.added = add.len();
                }
                for n in &remove {
                    self.applied.remove(n);
                }
                self.applied.extend(add);
                if renew_due && !alive {
                    // Nothing renewed: what we applied will expire.
                    self.last_renew = Instant::now();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "batch refused; resynchronizing from the kernel");
                self.resync(false)?;
                s.resynced = true;
            }
        }
        Ok(s)
    }

    pub fn applied(&self) -> &BTreeSet<IpNet> {
        &self.applied
    }
}

/// Runs the daemon until SIGTERM/SIGINT. The table stays when it stops:
/// the leases run out by themselves (fail-closed), and a restart replaces
/// it.
pub fn serve(config_path: &Path) -> Result<(), EnforcerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = Config::load(config_path).map_err(|e| EnforcerError::Invalid(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| EnforcerError::Io {
            what: "tokio runtime".into(),
            source,
        })?;
    let (mut term, mut int, mut hup) = {
        let _ctx = rt.enter();
        let sig = |k| {
            signal(k).map_err(|source| EnforcerError::Io {
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
    let poll = config.enforcer.poll_interval;
    let mut e = Enforcer::start(config)?;
    tracing::info!(
        allowed = e.applied().len(),
        "enforcer ready: table installed"
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        let reload = reload.clone();
        std::thread::Builder::new()
            .name("enforcer".into())
            .spawn(move || -> Result<(), EnforcerError> {
                while !stop.load(Ordering::Relaxed) {
                    if reload.swap(false, Ordering::Relaxed) {
                        match e.reload_classes() {
                            Ok(changed) => tracing::info!(changed, "class lists re-read"),
                            Err(err) => tracing::error!(error = %err, "class reload failed; retried in a minute"),
                        }
                    }
                    match e.step() {
                        Ok(s) if s.added + s.removed > 0 => {
                            tracing::info!(
                                added = s.added,
                                removed = s.removed,
                                allowed = e.applied().len(),
                                "allowed set changed"
                            )
                        }
                        Ok(_) => {}
                        Err(err) => tracing::error!(error = %err, "enforcer step failed; retrying"),
                    }
                    std::thread::sleep(poll);
                }
                e.shutdown()
            })
            .map_err(|source| EnforcerError::Io {
                what: "spawning the enforcer thread".into(),
                source,
            })?
    };
    let failure = rt.block_on(async {
        let mut watchdog = tokio::time::interval(WATCHDOG_PING);
        loop {
            tokio::select! {
                _ = term.recv() => return None,
                _ = int.recv() => return None,
                _ = hup.recv() => reload.store(true, Ordering::Relaxed),
                _ = watchdog.tick() => {
                    if worker.is_finished() {
                        return Some("the enforcer thread stopped");
                    }
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    worker
        .join()
        .map_err(|_| EnforcerError::Invalid("the enforcer thread panicked".into()))??;
    match failure {
        Some(why) => Err(EnforcerError::Invalid(why.into())),
        None => Ok(()),
    }
}
