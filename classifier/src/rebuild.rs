//! `kopek classifier rebuild`: tier 2 computed again from tier 1.
//!
//! What a rebuild is for: a session binding recorded after its records were
//! classified (a late RADIUS Stop, a forgotten pppd hook), a corrected
//! observation point, class lists applied to the past on purpose. The
//! classifier never moves committed traffic by itself; a rebuild computes
//! all of tier 2 again with what is known now, and the core, seeing a tier
//! 2 of another identity, charges only the differences (`tier2_id`,
//! docs/tier2-schema.md).
//!
//! How: a new tier 2 in `<state_dir>/rebuild.tmp/` is filled by the same
//! [`Engine`] the daemon runs ([`Engine::open_rebuild`]; same splitting, bindings, points, versions),
//! reading every segment tier 1 still has; the time whose segments
//! retention has removed keeps the old rows (`meta.raw_removed_through_ms`,
//! rounded up to a whole hour), and so does the time before tier 2's own
//! retention (no record of it is counted: stale, as by the daemon); then the new content replaces the old in
//! one transaction on the live file ([`SqliteTier2::install`]). Host
//! detail (top hosts per account and hour) is computed too with
//! [`RebuildOptions::hosts`]; otherwise the old detail stays and the
//! daemon recomputes each hour in the background. The
//! classifier daemon must be stopped (its lock is taken); the collector may
//! go on writing: the rebuild reads what is there and the daemon, started
//! again, goes on from there. A rebuild that stops half-way leaves the live
//! tier 2 untouched.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kopek_config::Config;

use crate::ClassifierError;
use crate::aggregate::HOUR_MS;
use crate::aggregate::Progress;
use crate::engine::Engine;
use crate::store::{BilledChange, RAW_REMOVED_KEY, SqliteTier2, TIER2_FILE, TIER2_ID_KEY, Tier2};
use kopek_collector::segment::{RawStore, SegmentReader};
use kopek_collector::{FlowRecord, LossRecord};
use std::collections::HashMap;

/// Where the new tier 2 is built, inside the state dir (same filesystem).
pub const REBUILD_DIR: &str = "rebuild.tmp";
/// How often a rebuild logs how far it got.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// One rebuild at a time per state dir.
pub const REBUILD_LOCK: &str = "rebuild.lock";

/// Which class lists judge old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lists {
    /// Each record by the version valid at its time (reproduces the past).
    #[default]
    Recorded,
    /// Every record by the lists the config names now (the correction
    /// applied to the past; the old versions are not kept).
    Current,
}

/// The default is the command's: recorded lists, all of tier 1 (bar
/// what retention removed), installed, host detail left to the daemon.
#[derive(Debug, Clone, Copy, Default)]
pub struct RebuildOptions {
    pub lists: Lists,
    /// Build and compare, but leave the live tier 2 as it is.
    pub dry_run: bool,
    /// Rebuild only from this time on (rounded down to a whole hour): the
    /// rows before it are kept as they are, and sealed segments that end
    /// before it are not read.
    pub from_ms: Option<i64>,
    /// Compute every hour's host detail before installing. Otherwise the
    /// old detail is kept and each hour is pending: the classifier daemon
    /// computes it again in the background, when idle (the host pass reads
    /// tier 1 once more per hour: it is most of a rebuild's time).
    pub hosts: bool,
    /// The live tier 2 is damaged (SQLite's `quick_check` finds faults):
    /// build a new one from tier 1 alone, judged by the current class
    /// lists, taking nothing from the damaged one. Refused when it is
    /// sound, and a damaged one is not rebuilt without it.
    pub discard_damaged: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildReport {
    /// Tier-1 records counted into the new tier 2.
    pub records: u64,
    pub seconds: f64,
    /// Where the time went (s): tier 1 into the new tier 2, the host
    /// detail of every hour, building the indexes, the rows kept from
    /// before, the comparison, installing.
    pub phases_s: [f64; 6],
    /// Of the first phase: the time tier 2's writer spent writing, and the
    /// time the reading waited for it (s).
    pub writer_s: f64,
    pub writer_wait_s: f64,
    /// Rows before this time are the old ones (`--from`, tier 1 of that
    /// time was removed by retention, or it is past tier 2's retention);
    /// `None`: all of tier 2 was computed again.
    pub kept_before_ms: Option<i64>,
    /// Rows taken over from the old tier 2: those before `kept_before_ms`,
    /// and the host detail unless it was computed again.
    pub rows_kept: u64,
    /// Sealed segments not read: all their records are before
    /// `kept_before_ms`.
    pub segments_skipped: u64,
    /// Billed rows of the old tier 2 that the new one has no traffic in
    /// (moved to another account, or unbilled): kept with 0 bytes, so the
    /// core takes back what it charged for them.
    pub rows_zeroed: u64,
    /// Billed bytes that differ, per account, class and direction.
    pub changes: Vec<BilledChange>,
    pub installed: bool,
    /// The identity of the new tier 2.
    pub tier2_id: String,
    /// What was wrong with the tier 2 this one replaced without reading it
    /// (`--discard-damaged`): nothing was kept or compared.
    pub discarded: Option<String>,
}

/// Rebuilds `config`'s tier 2 from its tier 1 (see the module docs).
pub fn rebuild(
    config: Config,
    opts: RebuildOptions,
    now_ms: i64,
) -> Result<RebuildReport, ClassifierError> {
    let live = config.state_dir.join(TIER2_FILE);
    rebuild_or_not(config, opts, now_ms).map_err(|e| match e {
        // The live file found damaged while reading what a rebuild keeps
        // of it: what to do instead.
        ClassifierError::Store(s) if s.is_damage() && s.file == live && !opts.discard_damaged => {
            ClassifierError::Invalid(format!("{s}: {DAMAGED_HINT}"))
        }
        e => e,
    })
}

/// What a damaged tier 2 leaves an operator to do.
const DAMAGED_HINT: &str = "tier 2 is damaged; `kopek classifier rebuild --discard-damaged` builds a new one \
    from tier 1 alone, judged by the current class lists: what only the damaged one holds \
    (traffic older than tier 1, the class-list history) is lost";

fn rebuild_or_not(
    config: Config,
    opts: RebuildOptions,
    now_ms: i64,
) -> Result<RebuildReport, ClassifierError> {
    let started = Instant::now();
    let state = config.state_dir.clone();
    let tz = config.timezone;
    let live = state.join(TIER2_FILE);
    if !live.exists() {
        return Err(ClassifierError::Invalid(format!(
            "{}: no tier 2 to rebuild (`kopek classifier run` builds the first one)",
            live.display()
        )));
    }
    // A dry run writes nothing live and may run beside the daemon; a real
    // one replaces what the daemon writes.
    let _lock = if opts.dry_run {
        None
    } else {
        Some(crate::run::flock(
            &state.join(crate::run::LOCK_FILE),
            "the classifier daemon runs: stop it first (systemctl stop kopek-classifier), \
             rebuild, start it again; --dry-run may run beside it",
        )?)
    };
    let _rebuilding = crate::run::flock(
        &state.join(REBUILD_LOCK),
        "another rebuild of this tier 2 is running",
    )?;
    // A damaged tier 2 cannot be read for what a rebuild keeps of it; it
    // is replaced whole, on the operator's word, once SQLite's check
    // confirms the damage (it reads every page: minutes for gigabytes, so
    // only then; a plain rebuild meets damage where it reads).
    let discarded = if opts.discard_damaged {
        if opts.from_ms.is_some() {
            return Err(ClassifierError::Invalid(
                "--from keeps the rows before it from the live tier 2, which is damaged: \
                 --discard-damaged rebuilds all of tier 1"
                    .into(),
            ));
        }
        let Some(d) = SqliteTier2::damage(&live)? else {
            return Err(ClassifierError::Invalid(format!(
                "{}: tier 2 is not damaged (SQLite's quick_check: ok): a rebuild without --discard-damaged \
                 keeps what only it holds",
                live.display()
            )));
        };
        Some(d)
    } else {
        None
    };
    let discard = discarded.is_some();
    if !opts.dry_run && !discard {
        // Tier 2 first counts what tier 1 holds (the daemon may have been
        // stopped behind): the rows a rebuild keeps must have it all.
        let mut e = Engine::open(config.clone(), now_ms)?;
        e.catch_up(now_ms)?;
        e.flush(now_ms)?;
    }
    check_space(&state, &live)?;
    let work = Workspace::create(state.join(REBUILD_DIR))?;
    let (live_progress, removed) = if discard {
        (Vec::new(), None)
    } else {
        let reader = SqliteTier2::open_reader(&state)?;
        let removed = reader
            .meta(RAW_REMOVED_KEY)?
            .and_then(|v| v.parse::<i64>().ok())
            .map(|t| t.div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS);
        (reader.progress()?, removed)
    };
    let from = opts.from_ms.map(|t| t.div_euclid(HOUR_MS) * HOUR_MS);
    // Tier 1 is read from `read_from` on; records before tier 2's
    // retention are not counted (stale, as by the daemon), so the live
    // rows of that time stay as they are too.
    let read_from = removed.max(from);
    let retained = crate::aggregate::traffic_cut(now_ms, config.retention.traffic_days);
    // Nothing is kept of a damaged tier 2 (records past tier 2's
    // retention are not counted: they are lost with it).
    let kept_before_ms = if discard {
        None
    } else {
        read_from.max(retained)
    };
    let raw = RawStore::new(config.collector.raw_dir(&state));
    let skipped = match read_from {
        Some(cut) => segments_before(&raw, &live_progress, cut)?,
        None => Vec::new(),
    };
    {
        let mut fresh = SqliteTier2::open_bulk(&work.0)?;
        if !discard {
            fresh.seed_from(&live, opts.lists == Lists::Recorded)?;
        }
        fresh.seed_progress(&skipped)?;
    }
    let mut phases_s = [0.0; 6];
    let mut mark = Instant::now();
    let mut lap = |i: usize| {
        phases_s[i] = mark.elapsed().as_secs_f64();
        mark = Instant::now();
    };
    let (records, writer) = {
        let mut engine = Engine::open_rebuild(config, &work.0, now_ms)?;
        // A progress line now and then: a month of tier 1 takes minutes.
        let mut said = Instant::now();
        let counted = engine.catch_up_with(now_ms, |st| {
            if said.elapsed() >= PROGRESS_EVERY {
                tracing::info!(
                    records = st.committed.records,
                    segments_left = st.segments_pending,
                    elapsed_s = started.elapsed().as_secs(),
                    "rebuilding tier 2"
                );
                said = Instant::now();
            }
        })?;
        lap(0);
        if opts.hosts {
            engine.finish_hosts(now_ms)?;
        }
        lap(1);
        let st = engine.stats();
        (
            counted.records,
            (
                st.commit_write_ms as f64 / 1e3,
                st.commit_wait_ms as f64 / 1e3,
            ),
        )
    };
    // The secondary indexes, built from the finished tables.
    let mut fresh = SqliteTier2::open(&work.0)?;
    lap(2);
    if let Some(cut) = read_from {
        check_counted_before(&raw, &live_progress, &fresh.progress()?, cut)?;
    }
    let mut rows_kept = match kept_before_ms {
        Some(cut) => fresh.keep_before(&live, cut, tz)?,
        None => 0,
    };
    if !opts.hosts && !discard {
        rows_kept += fresh.keep_hosts_from(&live, kept_before_ms.unwrap_or(i64::MIN))?;
    }
    let zeroed = if discard {
        0
    } else {
        fresh.zero_vanished(&live)?
    };
    lap(3);
    let changes = if discard {
        Vec::new()
    } else {
        fresh.billed_changes(&live)?
    };
    let tier2_id = fresh.meta(TIER2_ID_KEY)?.unwrap_or_default();
    drop(fresh);
    lap(4);
    if !opts.dry_run {
        SqliteTier2::install(&state, &work.0.join(TIER2_FILE))?;
        tracing::info!(
            records,
            tier2_id,
            "tier 2 rebuilt from tier 1 and installed"
        );
    }
    lap(5);
    Ok(RebuildReport {
        records,
        seconds: started.elapsed().as_secs_f64(),
        phases_s,
        writer_s: writer.0,
        writer_wait_s: writer.1,
        kept_before_ms,
        rows_kept,
        rows_zeroed: zeroed,
        segments_skipped: skipped.len() as u64,
        changes,
        installed: !opts.dry_run,
        tier2_id,
        discarded,
    })
}

/// The rebuild's directory: emptied when created (a rebuild that stopped
/// half-way left it), removed when done or failed.
struct Workspace(PathBuf);

impl Workspace {
    fn create(dir: PathBuf) -> Result<Workspace, ClassifierError> {
        let io = |what: &str, dir: &Path, source| ClassifierError::Io {
            what: format!("{what} {}", dir.display()),
            source,
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io("removing", &dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        Ok(Workspace(dir))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sealed segments, finished in `live`, whose every record lies before
/// `cut`: their positions, to be taken over instead of read. Segments with
/// loss records are read (a loss's time is not in the footer).
fn segments_before(
    raw: &RawStore,
    live: &[Progress],
    cut: i64,
) -> Result<Vec<Progress>, ClassifierError> {
    let done: HashMap<(&str, u64), &Progress> = live
        .iter()
        .filter(|p| p.done)
        .map(|p| ((p.collector.as_str(), p.segment_id), p))
        .collect();
    let mut out = Vec::new();
    for seg in raw.list()? {
        let Some(p) = done.get(&(seg.collector.as_str(), seg.id)) else {
            continue;
        };
        if let Some(f) = seg.read_footer()?
            && f.loss_records == 0
            && f.max_last_ms < cut
        {
            out.push((*p).clone());
        }
    }
    Ok(out)
}

/// Refuses a rebuild whose kept rows (before `cut`) would miss records:
/// ones the rebuild read (`new` positions) that `live` had not counted,
/// with a time before `cut` (a record the collector wrote while the
/// rebuild ran, about the past). Reads only those records.
fn check_counted_before(
    raw: &RawStore,
    live: &[Progress],
    new: &[Progress],
    cut: i64,
) -> Result<(), ClassifierError> {
    let counted: HashMap<(&str, u64), &Progress> = live
        .iter()
        .map(|p| ((p.collector.as_str(), p.segment_id), p))
        .collect();
    let paths: HashMap<(String, u64), std::path::PathBuf> = raw
        .list()?
        .into_iter()
        .map(|s| ((s.collector, s.id), s.path))
        .collect();
    for p in new {
        let from = match counted.get(&(p.collector.as_str(), p.segment_id)) {
            Some(l) if l.done => continue,
            Some(l) => l.offset,
            None => 0,
        };
        if !p.done && p.offset <= from {
            continue;
        }
        let Some(path) = paths.get(&(p.collector.clone(), p.segment_id)) else {
            continue;
        };
        let mut r = SegmentReader::open(path)?;
        r.seek(from);
        let (mut flows, mut losses) = (Vec::<FlowRecord>::new(), Vec::<LossRecord>::new());
        while p.done || r.offset() < p.offset {
            flows.clear();
            losses.clear();
            match r.next_block(&mut flows, &mut losses) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
            let early = flows
                .iter()
                .map(|f| f.first_ms)
                .chain(losses.iter().map(|l| l.from_ms));
            if early.into_iter().any(|t| t < cut) {
                return Err(ClassifierError::Invalid(format!(
                    "{}: tier 1 has records before {} that tier 2 had not counted (written while \
                     the rebuild ran?); run the rebuild again",
                    path.display(),
                    cut
                )));
            }
        }
    }
    Ok(())
}

/// A rebuild writes a second tier 2 beside the live one, and installing
/// it passes every page through the live file's WAL: refuses up front
/// when the state dir's filesystem has less free space than two copies of
/// the live tier 2 (a rebuild that runs out fails cleanly anyway, later).
fn check_space(state: &Path, live: &Path) -> Result<(), ClassifierError> {
    let need = 2 * std::fs::metadata(live).map(|m| m.len()).unwrap_or(0);
    let c = std::ffi::CString::new(state.as_os_str().as_encoded_bytes())
        .map_err(|_| ClassifierError::Invalid(format!("{}: NUL in path", state.display())))?;
    // SAFETY: statvfs fills the zeroed struct from a valid C path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Ok(()); // unknown: let the writes tell
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    if free < need {
        return Err(ClassifierError::Invalid(format!(
            "{}: {} MB free, a rebuild needs about {} MB (two more copies of {})",
            state.display(),
            free / 1_000_000,
            need / 1_000_000,
            live.display()
        )));
    }
    Ok(())
}
