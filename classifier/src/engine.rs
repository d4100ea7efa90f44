//! The classifier engine: tails tier 1, classifies, commits to tier 2.
//!
//! [`Engine::step`] reads whole blocks from every segment that is not yet
//! fully read (sealed ones and the growing `.open` ones), adds their records
//! to the in-memory batch and remembers, per segment, the offset after the
//! last block taken. [`Engine::commit`] writes the batch's aggregates and
//! those offsets in one transaction. After kill -9 the engine starts again
//! from the committed offsets: every record is counted once.
//!
//! When it is behind by two or more sealed segments (a backlog after
//! downtime, or tier 2 rebuilt from tier 1), a step reads up to
//! `classifier.threads` of them at once, one scoped worker thread per
//! segment, each into its own batch; the batches are merged into the
//! engine's before the commit, so the transaction and the exactly-once
//! rule are the same. Otherwise the engine is synchronous; the daemon
//! ([`crate::run`]) drives it on a timer, tests and benchmarks call it
//! directly.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use kopek_collector::LossRecord;
use kopek_collector::segment::{
    Block, FlowColumns, Footer, RawStore, SegmentInfo, SegmentReader, SegmentState, TailState,
};
use kopek_config::Config;

use crate::ClassifierError;
use crate::aggregate::{
    AggStats, Batch, FastMap, HOUR_MS, HostCounts, HostKey, Progress, Rules, Scratch, add_columns,
    add_hosts_columns, add_loss, traffic_cut,
};
use crate::bindings::{Binding, BindingIndex, Registry, read_static};
use crate::classes::{ClassTable, NetSet};
use crate::points::PointMatcher;
use crate::store::{
    CommitRows, HostDetail, Names, OTHER_HOSTS, RAW_REMOVED_KEY, SqliteTier2, StoreError, Tier2,
};
use crate::versions::ClassVersions;

/// Records read into one batch before it is committed.
pub const MAX_BATCH_RECORDS: u64 = 4_000_000;
/// Distinct aggregate keys held before the batch is committed.
pub const MAX_BATCH_ENTRIES: usize = 1_000_000;
/// Tier 1 is listed again at least this often even if its directory's
/// modification time says nothing changed (coarse-timestamp filesystems).
pub const RELIST_INTERVAL_MS: i64 = 5_000;
/// How often list and binding files are checked for changes.
pub const WATCH_INTERVAL_MS: i64 = 1_000;
/// The host detail of an hour is computed once the hour has been over for
/// this long (late flows have arrived by then; later ones recompute it).
pub const HOSTS_GRACE_MS: i64 = 10 * 60_000;
/// Blocks one slice of the host pass reads, so that the pass never delays
/// fresh records by more than a fraction of a second.
pub const HOSTS_SLICE_BLOCKS: usize = 16;
/// Distinct (account, host, class) pairs one hour's pass holds; beyond,
/// new hosts go straight into their account's "other hosts" sum.
pub const MAX_HOST_PAIRS: usize = 4_000_000;
const DAY_MS: i64 = 86_400_000;

/// What one [`Engine::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOutcome {
    pub records: u64,
    pub blocks: u64,
    /// Everything readable now has been read.
    pub caught_up: bool,
}

/// Engine counters, written to the stats file.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Totals of everything committed since this process started.
    pub committed: AggStats,
    pub commits: u64,
    pub last_commit_ms: i64,
    /// Segments with damage: records after the damage were not counted.
    pub damaged_segments: Vec<String>,
    /// Segments not yet read to their end, the collector's growing `.open`
    /// segment included (so never 0 while a collector runs).
    pub segments_pending: u64,
    /// Hours whose top-hosts detail is waiting to be (re)computed.
    pub hours_pending: u64,
    pub host_hours_done: u64,
    pub class_version: i64,
    pub class_version_sha256: String,
    pub class_prefixes: u64,
    pub bound_prefixes: u64,
    pub accounts: u64,
    /// Newest `last_ms` of any record committed.
    pub newest_record_ms: i64,
    /// Time the commit thread spent writing commits, and the time the
    /// reading thread spent waiting for it (ms since start): a wait near
    /// the write time means tier 2's writer is what limits a catch-up.
    #[serde(default)]
    pub commit_write_ms: u64,
    #[serde(default)]
    pub commit_wait_ms: u64,
    /// While the daily rollup is being summed again (a new zone): the
    /// first day it is complete from; `None` when complete.
    #[serde(default)]
    pub daily_complete_from_ms: Option<i64>,
    /// The last reload of this process (SIGHUP, or a list or bindings file
    /// that changed): `systemctl reload` and a file edit report nothing
    /// back, so `kopek classifier stats` tells whether it took.
    #[serde(default)]
    pub last_reload: Option<ReloadOutcome>,
}

/// When a reload was tried and, if it failed, why (the old config, lists
/// and bindings stay in force).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReloadOutcome {
    pub at_ms: i64,
    pub error: Option<String>,
}

type SegKey = (String, u64);

/// The host-detail pass of one hour, run a slice at a time between steps.
struct HostPass {
    hour_ms: i64,
    generation: i64,
    /// Segments still to read, with how far (committed offset).
    todo: Vec<(PathBuf, u64)>,
    reader: Option<(SegmentReader, u64)>,
    hosts: FastMap<HostKey, HostCounts>,
    overflow: FastMap<u32, HostCounts>,
    cols: FlowColumns,
    losses: Vec<LossRecord>,
}

/// A batch being filled and the buffers of the thread filling it: the
/// engine's own, and one per worker of a parallel catch-up.
#[derive(Debug)]
struct Lane {
    batch: Batch,
    scratch: Scratch,
    /// The tier-1 block being classified, as stored (columns).
    cols: FlowColumns,
    losses: Vec<LossRecord>,
    /// Newest last-packet time in `batch`.
    newest_ms: i64,
}

impl Default for Lane {
    fn default() -> Self {
        Lane {
            batch: Batch::default(),
            scratch: Scratch::default(),
            cols: FlowColumns::default(),
            losses: Vec::new(),
            newest_ms: i64::MIN,
        }
    }
}

/// Why [`read_blocks`] stopped.
#[derive(Debug)]
enum Stop {
    /// The lane's batch reached its cap.
    Full,
    /// Nothing more to read now; `done`: the sealed segment is read to its
    /// end (its position says so).
    End { done: bool },
    /// The next block needs class versions that are not loaded; the
    /// reader stands before it again.
    NeedVersions { lo: i64, hi: i64 },
    /// The segment cannot be read past `offset`.
    Damaged { offset: u64, why: String },
}

/// Reads blocks of one segment into `lane` until its batch holds `cap`
/// (records, entries), the segment has nothing more, or a block needs
/// something only the engine can do. The position after each block is
/// recorded in the batch, so a batch never holds part of a block.
fn read_blocks(
    rules: &Rules<'_>,
    key: &SegKey,
    reader: &mut SegmentReader,
    sealed: bool,
    lane: &mut Lane,
    cap: (u64, usize),
    out: &mut StepOutcome,
) -> Stop {
    let position = |offset, done| Progress {
        collector: key.0.clone(),
        segment_id: key.1,
        offset,
        done,
    };
    loop {
        if lane.batch.stats.records >= cap.0 || lane.batch.entries() >= cap.1 {
            return Stop::Full;
        }
        let before = reader.offset();
        lane.cols.clear();
        lane.losses.clear();
        let block = match reader.next_block(&mut lane.cols, &mut lane.losses) {
            Ok(Some(b)) => b,
            // A block that passed its checksum but does not decode.
            Err(e) => {
                return Stop::Damaged {
                    offset: reader.offset(),
                    why: e.to_string(),
                };
            }
            Ok(None) => {
                return match reader.tail().clone() {
                    TailState::Damaged { offset, why } => Stop::Damaged { offset, why },
                    TailState::Incomplete { offset, bytes } if sealed => Stop::Damaged {
                        offset,
                        why: format!("sealed segment ends inside a block ({bytes} bytes)"),
                    },
                    _ if sealed => {
                        lane.batch.set_progress(position(reader.offset(), true));
                        Stop::End { done: true }
                    }
                    _ => Stop::End { done: false },
                };
            }
        };
        match block {
            Block::Flows(_) => {
                let (lo, hi) = time_range(lane.cols.first_ms.iter().copied());
                if !rules.versions.loaded(lo, hi) {
                    reader.seek(before);
                    return Stop::NeedVersions { lo, hi };
                }
                add_columns(rules, &lane.cols, &mut lane.batch, &mut lane.scratch);
                if let Some(&newest) = lane.cols.last_ms.iter().max() {
                    lane.newest_ms = lane.newest_ms.max(newest);
                }
                out.records += lane.cols.len() as u64;
            }
            Block::Losses(_) => {
                for l in &lane.losses {
                    add_loss(rules.bucket_ms, l, &mut lane.batch);
                }
            }
            Block::Checkpoint(_) | Block::Footer(_) => {}
        }
        out.blocks += 1;
        lane.batch.set_progress(position(reader.offset(), false));
    }
}

/// A commit handed to the [`Committer`], and what becomes true of the
/// engine when it is written.
#[derive(Debug)]
struct InFlight {
    progress: Vec<Progress>,
    stats: AggStats,
    newest_ms: i64,
    now_ms: i64,
}

/// The thread that writes commits ([`Tier2::write_rows`]) on a
/// connection of its own, one at a time, while the engine reads and
/// classifies the next batch: a catch-up then costs the larger of the two,
/// not their sum.
struct Committer {
    jobs: Option<mpsc::SyncSender<(CommitRows, i64)>>,
    /// Each commit's outcome and how long it took to write.
    outcomes: mpsc::Receiver<(Result<(), StoreError>, Duration)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    fn start(state_dir: &std::path::Path, bulk: bool) -> Result<Committer, ClassifierError> {
        let mut store = if bulk {
            SqliteTier2::open_bulk(state_dir)?
        } else {
            SqliteTier2::open(state_dir)?
        };
        let (jobs, todo) = mpsc::sync_channel::<(CommitRows, i64)>(1);
        let (done, outcomes) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kopek-commit".into())
            .spawn(move || {
                for (rows, now_ms) in todo {
                    let t = Instant::now();
                    let written = store.write_rows(&rows, now_ms);
                    if done.send((written, t.elapsed())).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| ClassifierError::Io {
                what: "starting the tier-2 commit thread".into(),
                source,
            })?;
        Ok(Committer {
            jobs: Some(jobs),
            outcomes,
            thread: Some(thread),
        })
    }

    fn send(&self, rows: CommitRows, now_ms: i64) -> Result<(), ClassifierError> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send((rows, now_ms)).ok())
            .ok_or_else(Self::ended)
    }

    /// The outcome of the commit sent last, with how long it took to
    /// write and how long this call waited for it: waited for (`block`),
    /// or `None` while it is being written.
    fn outcome(&self, block: bool) -> Option<(Result<(), ClassifierError>, Duration, Duration)> {
        let t = Instant::now();
        let written = if block {
            self.outcomes.recv().ok()
        } else {
            match self.outcomes.try_recv() {
                Err(mpsc::TryRecvError::Empty) => return None,
                r => r.ok(),
            }
        };
        let waited = t.elapsed();
        Some(match written {
            Some((w, took)) => (w.map_err(ClassifierError::from), took, waited),
            None => (Err(Self::ended()), Duration::ZERO, waited),
        })
    }

    fn ended() -> ClassifierError {
        ClassifierError::Invalid("the tier-2 commit thread has ended".into())
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the commit it holds.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Engine {
    config: Config,
    store: SqliteTier2,
    raw: RawStore,
    versions: ClassVersions,
    bindings: BindingIndex,
    registry: Registry,
    binding_seq: i64,
    subscribers: NetSet,
    points: PointMatcher,
    progress: HashMap<SegKey, Progress>,
    readers: HashMap<SegKey, SegmentReader>,
    damaged_open: HashSet<SegKey>,
    /// The batch being filled, and the buffers of the reading thread.
    lane: Lane,
    /// One per worker of a parallel catch-up ([`Engine::parallel_step`]).
    lanes: Vec<Lane>,
    batch_started: Option<Instant>,
    /// Writes commits on its own connection ([`Engine::commit`]).
    committer: Committer,
    /// The commit being written.
    in_flight: Option<InFlight>,
    watched: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
    last_watch_ms: i64,
    /// A watched file changed at the last look: reloaded once it has not
    /// changed for a whole look (a list being copied in is not read half).
    watch_settling: bool,
    stats: EngineStats,
    host_pass: Option<HostPass>,
    /// Directory mtime and time of the last listing, and what it found.
    listed: (Option<SystemTime>, i64),
    listed_segments: Vec<SegmentInfo>,
    /// Records starting before `.0` are stale (retention keeps no traffic
    /// of their time), counted as losses in bucket `.1`: see
    /// [`Engine::set_clock`].
    stale: (i64, i64),
    /// Stale and implausible records since the last warning about them,
    /// and when that was ([`REFUSED_WARN_EVERY`]).
    refused: (u64, u64, Option<Instant>),
}

/// How often at most the log says that records were not counted.
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(600);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("state_dir", &self.config.state_dir)
            .finish()
    }
}

impl Engine {
    /// Opens tier 2 and the binding registry, loads the lists (recording a
    /// new version when their content changed) and the committed progress.
    pub fn open(config: Config, now_ms: i64) -> Result<Engine, ClassifierError> {
        Engine::open_with_progress(config, now_ms, &mut || {})
    }

    /// [`Self::open`], calling `progress` now and then while opening
    /// takes long (the daily rollup's newest days summed for a new zone),
    /// so that the daemon can tell systemd it is alive.
    pub fn open_with_progress(
        config: Config,
        now_ms: i64,
        progress: &mut dyn FnMut(),
    ) -> Result<Engine, ClassifierError> {
        let state = config.state_dir.clone();
        Engine::open_with(config, &state, false, now_ms, progress)
    }

    /// As [`Self::open`], for a rebuild: tier 2 in `tier2_dir` instead of
    /// the state dir (tier 1 and the bindings are the state dir's), opened
    /// with [`SqliteTier2::open_bulk`] (its indexes are built afterwards).
    pub fn open_rebuild(
        config: Config,
        tier2_dir: &std::path::Path,
        now_ms: i64,
    ) -> Result<Engine, ClassifierError> {
        Engine::open_with(config, tier2_dir, true, now_ms, &mut || {})
    }

    fn open_with(
        config: Config,
        tier2_dir: &std::path::Path,
        bulk: bool,
        now_ms: i64,
        progress: &mut dyn FnMut(),
    ) -> Result<Engine, ClassifierError> {
        let state = config.state_dir.clone();
        for dir in [&state, tier2_dir] {
            std::fs::create_dir_all(dir).map_err(|source| ClassifierError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let mut store = if bulk {
            SqliteTier2::open_bulk(tier2_dir)?
        } else {
            SqliteTier2::open(tier2_dir)?
        };
        check_bucket(&mut store, &config)?;
        daily_zone(&mut store, config.timezone, now_ms, progress)?;
        let registry = Registry::open(&state)?;
        let raw = RawStore::new(config.collector.raw_dir(&state));
        let mut e = Engine {
            subscribers: NetSet::new(&config.classifier.subscriber_networks),
            points: PointMatcher::new(&config.classifier.points),
            config,
            store,
            raw,
            versions: ClassVersions::new(),
            bindings: BindingIndex::new(),
            registry,
            binding_seq: 0,
            progress: HashMap::new(),
            readers: HashMap::new(),
            damaged_open: HashSet::new(),
            lane: Lane::default(),
            lanes: Vec::new(),
            batch_started: None,
            committer: Committer::start(tier2_dir, bulk)?,
            in_flight: None,
            watched: Vec::new(),
            last_watch_ms: now_ms,
            watch_settling: false,
            stats: EngineStats::default(),
            host_pass: None,
            listed: (None, i64::MIN),
            listed_segments: Vec::new(),
            stale: (i64::MIN, 0),
            refused: (0, 0, None),
        };
        for p in e.store.progress()? {
            e.progress.insert((p.collector.clone(), p.segment_id), p);
        }
        let table = ClassTable::load(&e.config.classifier)?;
        for v in e.store.class_versions()? {
            e.versions.push(v.id, v.valid_from_ms, None);
        }
        e.install_table(table, now_ms)?;
        e.load_static_bindings()?;
        e.refresh_bindings()?;
        e.watched = e.watch_list();
        e.note_daily();
        Ok(e)
    }

    /// Records `table` as the current version unless it equals the newest
    /// stored one.
    fn install_table(&mut self, table: ClassTable, now_ms: i64) -> Result<(), ClassifierError> {
        let stored = self.store.class_versions()?;
        let table = Arc::new(table);
        match stored.last() {
            Some(last) if last.sha256 == table.sha256() => {
                self.versions.provide(last.id, table.clone());
            }
            last => {
                let from = match last {
                    Some(l) => now_ms.max(l.valid_from_ms + 1),
                    None => now_ms,
                };
                let id = self.store.add_class_version(
                    from,
                    table.sha256(),
                    table.prefixes() as i64,
                    table.canonical(),
                )?;
                tracing::info!(
                    version = id,
                    sha256 = table.sha256(),
                    prefixes = table.prefixes(),
                    shadowed = table.shadowed,
                    "class lists: new version"
                );
                self.versions.push(id, from, Some(table.clone()));
            }
        }
        self.stats.class_version = self.versions.current().map(|c| c.0).unwrap_or(0);
        self.stats.class_version_sha256 = table.sha256().to_string();
        self.stats.class_prefixes = table.prefixes() as u64;
        Ok(())
    }

    fn load_static_bindings(&mut self) -> Result<(), ClassifierError> {
        let Some(path) = self.config.classifier.bindings_file.clone() else {
            return Ok(());
        };
        let list: Vec<Binding> = read_static(&path)?;
        for b in &list {
            self.bindings.apply(b);
        }
        self.bindings.finish();
        Ok(())
    }

    /// Applies bindings recorded in the registry since the last call.
    pub fn refresh_bindings(&mut self) -> Result<usize, ClassifierError> {
        let (changes, seq) = self.registry.changes_since(self.binding_seq)?;
        for b in &changes {
            self.bindings.apply(b);
        }
        self.bindings.finish();
        self.binding_seq = seq;
        self.stats.bound_prefixes = self.bindings.len() as u64;
        self.stats.accounts = self.bindings.accounts().len() as u64;
        Ok(changes.len())
    }

    /// Applies a new config: commits what is pending first, so every record
    /// is judged wholly by the old or wholly by the new rules.
    pub fn reload(&mut self, config: Config, now_ms: i64) -> Result<(), ClassifierError> {
        let r = self.apply_config(config, now_ms);
        self.note_reload(now_ms, r.as_ref().err().map(|e| e.to_string()));
        r
    }

    /// Records a reload's outcome for the stats; a config file that could
    /// not be read never reaches [`Self::reload`], so the daemon notes it
    /// here.
    pub fn note_reload(&mut self, now_ms: i64, error: Option<String>) {
        self.stats.last_reload = Some(ReloadOutcome {
            at_ms: now_ms,
            error,
        });
    }

    fn apply_config(&mut self, config: Config, now_ms: i64) -> Result<(), ClassifierError> {
        check_bucket(&mut self.store, &config)?;
        let table = ClassTable::load(&config.classifier)?;
        let statics = match &config.classifier.bindings_file {
            Some(p) => read_static(p)?,
            None => Vec::new(),
        };
        self.flush(now_ms)?;
        // A new zone: the daily rollup starts again from its newest day
        // (the commits of the old zone's days are written: flushed above),
        // the older days summed in the background.
        daily_zone(&mut self.store, config.timezone, now_ms, &mut || {})?;
        self.note_daily();
        // A host pass in progress holds account indices of the old binding
        // index: start it again (the hour stays pending).
        self.host_pass = None;
        self.subscribers = NetSet::new(&config.classifier.subscriber_networks);
        self.points = PointMatcher::new(&config.classifier.points);
        self.config = config;
        self.install_table(table, now_ms)?;
        // Static bindings are rebuilt from scratch: an index with the new
        // file's entries plus every registry binding.
        self.bindings = BindingIndex::new();
        for b in &statics {
            self.bindings.apply(b);
        }
        self.binding_seq = 0;
        self.refresh_bindings()?;
        self.watched = self.watch_list();
        self.watch_settling = false;
        Ok(())
    }

    fn watch_list(&self) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
        let mut files: Vec<PathBuf> = self
            .config
            .classifier
            .classes
            .iter()
            .flat_map(|c| c.files.iter().cloned())
            .collect();
        files.extend(self.config.classifier.bindings_file.iter().cloned());
        files
            .into_iter()
            .map(|p| {
                let sig = file_sig(&p);
                (p, sig)
            })
            .collect()
    }

    /// Whether a list or bindings file changed and has since stayed as it
    /// is for a whole look ([`WATCH_INTERVAL_MS`]): a file caught while it
    /// is being written (`cp` of a full peering table takes a while) would
    /// otherwise be loaded half, as a class-list version that judges every
    /// record until the next look.
    fn files_changed(&mut self, now_ms: i64) -> bool {
        if now_ms - self.last_watch_ms < WATCH_INTERVAL_MS {
            return false;
        }
        self.last_watch_ms = now_ms;
        let mut changed = false;
        for (p, sig) in &mut self.watched {
            let now = file_sig(p);
            if now != *sig {
                *sig = now;
                changed = true;
            }
        }
        let settled = self.watch_settling && !changed;
        self.watch_settling = changed;
        settled
    }

    /// The time records are counted at: what tier 2 keeps from then on
    /// ([`crate::aggregate::traffic_cut`]).
    fn set_clock(&mut self, now_ms: i64) {
        let bucket_ms = self.config.classifier.bucket_ms();
        self.stale = match traffic_cut(now_ms, self.config.retention.traffic_days) {
            Some(cut) => (cut, crate::split::bucket_of(now_ms, bucket_ms)),
            None => (i64::MIN, 0),
        };
    }

    /// Reads what tier 1 has now, up to the batch bounds.
    pub fn step(&mut self, now_ms: i64) -> Result<StepOutcome, ClassifierError> {
        self.set_clock(now_ms);
        self.finish_commit(false)?;
        if self.files_changed(now_ms) {
            tracing::info!("a list or bindings file changed: reloading");
            let cfg = self.config.clone();
            if let Err(e) = self.reload(cfg, now_ms) {
                tracing::error!(error = %e, "reload failed; the old lists stay");
            }
        }
        self.refresh_bindings()?;
        let mut out = StepOutcome {
            caught_up: true,
            ..Default::default()
        };
        let segments = self.segments(now_ms)?;
        if let Some(o) = self.parallel_step(&segments)? {
            if o.records > 0 && self.batch_started.is_none() {
                self.batch_started = Some(Instant::now());
            }
            return Ok(o);
        }
        let mut pending = 0;
        for seg in segments {
            let key = (seg.collector.clone(), seg.id);
            let prog = self.position(&key);
            if prog.done {
                self.readers.remove(&key);
                continue;
            }
            pending += 1;
            if !self.readers.contains_key(&key) {
                let Some(r) = self.open_listed(&seg.path, prog.offset)? else {
                    continue;
                };
                self.readers.insert(key.clone(), r);
            }
            let sealed = seg.state == SegmentState::Closed;
            let full = self.read_segment(&key, sealed, &mut out)?;
            if full {
                out.caught_up = false;
                break;
            }
        }
        self.stats.segments_pending = pending;
        if out.records > 0 && self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        Ok(out)
    }

    /// Opens a listed segment at `offset`; `None` when it is no longer
    /// there: the collector sealed it since the listing (`.open` renamed
    /// to `.kseg`, within the directory's mtime tick, so the cached
    /// listing did not notice) or it was removed. The next step lists
    /// again and finds it under its new name.
    fn open_listed(
        &mut self,
        path: &std::path::Path,
        offset: u64,
    ) -> Result<Option<SegmentReader>, ClassifierError> {
        match SegmentReader::open(path) {
            Ok(mut r) => {
                r.seek(offset);
                Ok(Some(r))
            }
            Err(_) if !path.exists() => {
                self.listed = (None, i64::MIN);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The tier-1 segments, listed again only when the directory changed
    /// (a segment created or sealed) or every [`RELIST_INTERVAL_MS`]: a
    /// year of one-minute segments is half a million entries, too many to
    /// read every poll. A growing segment needs no listing: its reader
    /// stays open.
    fn segments(&mut self, now_ms: i64) -> Result<Vec<SegmentInfo>, ClassifierError> {
        let mtime = std::fs::metadata(self.raw.dir())
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_none()
            || mtime != self.listed.0
            || now_ms.saturating_sub(self.listed.1) >= RELIST_INTERVAL_MS
        {
            let all = self.raw.list()?;
            // Keep only what is not fully read: the rest never changes.
            self.listed_segments = all
                .into_iter()
                .filter(|s| {
                    !self
                        .progress
                        .get(&(s.collector.clone(), s.id))
                        .is_some_and(|p| p.done)
                })
                .collect();
            self.listed = (mtime, now_ms);
        }
        Ok(self.listed_segments.clone())
    }

    /// Reads blocks of one segment; returns true when the batch is full.
    fn read_segment(
        &mut self,
        key: &SegKey,
        sealed: bool,
        out: &mut StepOutcome,
    ) -> Result<bool, ClassifierError> {
        loop {
            let reader = self.readers.get_mut(key).expect("reader opened above");
            let rules = Rules {
                versions: &self.versions,
                bindings: &self.bindings,
                subscribers: &self.subscribers,
                points: &self.points,
                bucket_ms: self.config.classifier.bucket_ms(),
                stale_before_ms: self.stale.0,
                stale_loss_bucket_ms: self.stale.1,
            };
            let cap = (MAX_BATCH_RECORDS, MAX_BATCH_ENTRIES);
            match read_blocks(&rules, key, reader, sealed, &mut self.lane, cap, out) {
                Stop::Full => return Ok(true),
                Stop::End { done } => {
                    if done {
                        self.readers.remove(key);
                    }
                    return Ok(false);
                }
                Stop::NeedVersions { lo, hi } => self.ensure_versions(lo, hi)?,
                Stop::Damaged { offset, why } => {
                    self.damaged(key, sealed, offset, &why)?;
                    return Ok(false);
                }
            }
        }
    }

    /// Catch-up over several sealed segments at once, one worker thread
    /// per segment (`classifier.threads`), each into its own batch; the
    /// batches are then merged into the engine's ([`Batch::absorb`]) and
    /// committed as one, with every segment's position. `None` when there
    /// are not two such segments to read (then [`Self::step`] reads in
    /// turn): a classifier that keeps up reads one growing segment.
    fn parallel_step(
        &mut self,
        segments: &[SegmentInfo],
    ) -> Result<Option<StepOutcome>, ClassifierError> {
        let threads = self.config.classifier.threads;
        let held = &self.lane.batch;
        if threads < 2
            || held.stats.records >= MAX_BATCH_RECORDS / 2
            || held.entries() >= MAX_BATCH_ENTRIES / 2
        {
            return Ok(None);
        }
        let mut jobs = Vec::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for seg in segments {
            if seg.state != SegmentState::Closed {
                continue;
            }
            let key = (seg.collector.clone(), seg.id);
            let pos = self.position(&key);
            if pos.done {
                continue;
            }
            // The footer bounds the segment's times: the class versions
            // they need are loaded before the workers share them.
            let Some(footer) = seg.read_footer()? else {
                continue;
            };
            if footer.flow_records > 0 {
                lo = lo.min(footer.min_first_ms);
                hi = hi.max(footer.max_last_ms);
            }
            let reader = match self.readers.remove(&key) {
                Some(r) => r,
                None => match self.open_listed(&seg.path, pos.offset)? {
                    Some(r) => r,
                    None => continue,
                },
            };
            jobs.push((key, reader));
            if jobs.len() == threads {
                break;
            }
        }
        if jobs.len() < 2 {
            for (key, reader) in jobs {
                self.readers.insert(key, reader);
            }
            return Ok(None);
        }
        self.ensure_versions(lo, hi)?;
        let n = jobs.len();
        let cap = (
            (MAX_BATCH_RECORDS - self.lane.batch.stats.records) / n as u64,
            (MAX_BATCH_ENTRIES - self.lane.batch.entries()) / n,
        );
        self.lanes.resize_with(n, Lane::default);
        let rules = Rules {
            versions: &self.versions,
            bindings: &self.bindings,
            subscribers: &self.subscribers,
            points: &self.points,
            bucket_ms: self.config.classifier.bucket_ms(),
            stale_before_ms: self.stale.0,
            stale_loss_bucket_ms: self.stale.1,
        };
        let lanes = &mut self.lanes;
        let stops: Vec<std::io::Result<(Stop, StepOutcome)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = jobs
                .iter_mut()
                .zip(lanes.iter_mut())
                .map(|((key, reader), lane)| {
                    let (key, rules) = (&*key, &rules);
                    std::thread::Builder::new()
                        .name("kopek-classify".into())
                        .spawn_scoped(scope, move || {
                            let mut out = StepOutcome::default();
                            let stop = read_blocks(rules, key, reader, true, lane, cap, &mut out);
                            (stop, out)
                        })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
                .collect()
        });
        let mut out = StepOutcome::default();
        for (((key, reader), done), i) in jobs.into_iter().zip(stops).zip(0..) {
            let lane = &mut self.lanes[i];
            let (stop, o) = match done {
                Ok(d) => d,
                Err(e) => {
                    // It read nothing; the segment is read by a later step.
                    tracing::warn!(error = %e, "cannot start a classifier thread");
                    (Stop::End { done: false }, StepOutcome::default())
                }
            };
            self.lane.batch.absorb(&mut lane.batch);
            self.lane.newest_ms = self.lane.newest_ms.max(lane.newest_ms);
            lane.newest_ms = i64::MIN;
            out.records += o.records;
            out.blocks += o.blocks;
            match stop {
                Stop::End { done: true } => {}
                Stop::Full | Stop::End { done: false } | Stop::NeedVersions { .. } => {
                    self.readers.insert(key, reader);
                }
                Stop::Damaged { offset, why } => self.damaged(&key, true, offset, &why)?,
            }
        }
        // Whatever is left is found by the next step.
        out.caught_up = false;
        self.stats.segments_pending = segments.len() as u64;
        Ok(Some(out))
    }

    /// Where reading `key` stands: the batch's position if it has one
    /// (never re-read what the batch already holds), else the position of
    /// the commit being written, else the committed one.
    fn position(&self, key: &SegKey) -> Progress {
        self.lane
            .batch
            .progress
            .iter()
            .find(|p| p.collector == key.0 && p.segment_id == key.1)
            .or_else(|| {
                let f = self.in_flight.as_ref()?;
                f.progress
                    .iter()
                    .find(|p| p.collector == key.0 && p.segment_id == key.1)
            })
            .or_else(|| self.progress.get(key))
            .cloned()
            .unwrap_or(Progress {
                collector: key.0.clone(),
                segment_id: key.1,
                offset: 0,
                done: false,
            })
    }

    /// Damage in a sealed segment: what follows it cannot be read; count it,
    /// say so loudly, and move on. In a growing segment, wait: the
    /// collector's recovery cuts a torn tail when it restarts.
    fn damaged(
        &mut self,
        key: &SegKey,
        sealed: bool,
        offset: u64,
        why: &str,
    ) -> Result<(), ClassifierError> {
        let name = format!("{}-{:010} at offset {offset}: {why}", key.0, key.1);
        if !sealed {
            if self.damaged_open.insert(key.clone()) {
                tracing::warn!(segment = %name, "open segment unreadable here; waiting");
            }
            self.readers.remove(key);
            return Ok(());
        }
        tracing::error!(segment = %name, "damaged tier-1 segment: records after the damage are not counted");
        self.stats.damaged_segments.push(name);
        self.readers.remove(key);
        self.lane.batch.set_progress(Progress {
            collector: key.0.clone(),
            segment_id: key.1,
            offset,
            done: true,
        });
        Ok(())
    }

    /// Loads every class version records with first packets in `[lo, hi]`
    /// need.
    fn ensure_versions(&mut self, lo: i64, hi: i64) -> Result<(), ClassifierError> {
        if lo > hi {
            return Ok(());
        }
        for id in self.versions.missing(lo, hi) {
            let text = self.store.class_version_content(id)?.ok_or_else(|| {
                ClassifierError::Invalid(format!("class version {id} vanished from tier 2"))
            })?;
            let t = ClassTable::from_canonical(&text)?;
            self.versions.provide(id, Arc::new(t));
        }
        Ok(())
    }

    /// One day of the daily rollup summed from the hourly one, while it is
    /// not complete ([`SqliteTier2::daily_fill_step`]); run when idle.
    /// Returns whether days are left.
    pub fn daily_step(&mut self, now_ms: i64) -> Result<bool, ClassifierError> {
        if self.store.daily_from() == i64::MIN {
            return Ok(false);
        }
        // Commits built before leave the older days to this step: written
        // first, so that the hourly rows it sums include them.
        self.flush(now_ms)?;
        let more = self.store.daily_fill_step()?;
        self.note_daily();
        if !more {
            tracing::info!("tier 2's daily rollup is complete");
        }
        Ok(more)
    }

    /// Does one slice of host-detail work: starts the pass of the oldest
    /// pending hour, reads a few blocks, or writes a finished hour. Returns
    /// whether there was work. Call when caught up (the pass reads only
    /// what is committed).
    pub fn hosts_step(&mut self, now_ms: i64) -> Result<bool, ClassifierError> {
        self.set_clock(now_ms);
        // The pass reads what is committed: nothing in the air.
        self.finish_commit(true)?;
        if self.host_pass.is_none() {
            let pending = self
                .store
                .hosts_pending(now_ms - HOSTS_GRACE_MS, 1_000_000)?;
            self.stats.hours_pending = pending.len() as u64;
            let Some(&(hour_ms, generation)) = pending.first() else {
                return Ok(false);
            };
            let mut todo = Vec::new();
            for seg in self.raw.list()? {
                let key = (seg.collector.clone(), seg.id);
                let Some(p) = self.progress.get(&key) else {
                    continue;
                };
                let limit = if p.done { u64::MAX } else { p.offset };
                if seg.state == SegmentState::Closed
                    && let Some(f) = seg.read_footer()?
                    && (f.min_first_ms >= hour_ms + HOUR_MS
                        || f.max_last_ms < hour_ms
                        || f.flow_records == 0)
                {
                    continue;
                }
                todo.push((seg.path, limit));
            }
            todo.reverse();
            self.host_pass = Some(HostPass {
                hour_ms,
                generation,
                todo,
                reader: None,
                hosts: FastMap::default(),
                overflow: FastMap::default(),
                cols: FlowColumns::default(),
                losses: Vec::new(),
            });
            return Ok(true);
        }
        let mut pass = self.host_pass.take().expect("checked above");
        let bucket_ms = self.config.classifier.bucket_ms();
        let mut blocks = 0;
        while blocks < HOSTS_SLICE_BLOCKS {
            if pass.reader.is_none() {
                let Some((path, limit)) = pass.todo.pop() else {
                    break;
                };
                match SegmentReader::open(&path) {
                    Ok(r) => pass.reader = Some((r, limit)),
                    Err(_) if !path.exists() => {
                        // Sealed meanwhile (`.open` renamed to `.kseg`):
                        // read it under its new name. Otherwise removed by
                        // retention: nothing of it to count.
                        let sealed = path.with_extension("kseg");
                        if path.extension().is_some_and(|e| e == "open") && sealed.exists() {
                            pass.todo.push((sealed, limit));
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let (reader, limit) = pass.reader.as_mut().expect("opened above");
            if reader.offset() >= *limit {
                pass.reader = None;
                continue;
            }
            pass.cols.clear();
            let block = reader.next_block(&mut pass.cols, &mut pass.losses);
            pass.losses.clear();
            match block {
                Ok(Some(Block::Flows(_))) => {
                    blocks += 1;
                    let (lo, hi) = time_range(pass.cols.first_ms.iter().copied());
                    self.ensure_versions(lo, hi)?;
                    let rules = Rules {
                        versions: &self.versions,
                        bindings: &self.bindings,
                        subscribers: &self.subscribers,
                        points: &self.points,
                        bucket_ms,
                        stale_before_ms: self.stale.0,
                        stale_loss_bucket_ms: self.stale.1,
                    };
                    add_hosts_columns(
                        &rules,
                        &pass.cols,
                        pass.hour_ms,
                        &mut pass.hosts,
                        &mut pass.overflow,
                        MAX_HOST_PAIRS,
                        &mut self.lane.scratch,
                    );
                }
                Ok(Some(_)) => {}
                // The end, or damage the main pass has already reported.
                Ok(None) | Err(_) => pass.reader = None,
            }
        }
        if pass.reader.is_some() || !pass.todo.is_empty() {
            self.host_pass = Some(pass);
            return Ok(true);
        }
        let rows = self.top_rows(&pass);
        self.store
            .write_hosts(pass.hour_ms, pass.generation, &rows)?;
        self.stats.host_hours_done += 1;
        Ok(true)
    }

    /// The finished pass as rows: per account its top N hosts by bytes
    /// (ties by address), and one row with the sum of the rest.
    fn top_rows(&self, pass: &HostPass) -> Vec<HostDetail> {
        let keep = self.config.classifier.top_hosts_per_hour;
        // Within an account: most bytes first, ties by address and class
        // (a total order: the three make the key).
        let rank = |(k, c): &(HostKey, HostCounts)| {
            (
                std::cmp::Reverse(c.bytes_in.saturating_add(c.bytes_out)),
                k.remote,
                k.class,
            )
        };
        // Grouped by account, then per account only its top N are sorted
        // (a selection, not a sort of every pair: an hour can hold
        // millions of them).
        let mut all: Vec<(HostKey, HostCounts)> =
            pass.hosts.iter().map(|(k, c)| (*k, *c)).collect();
        all.sort_unstable_by_key(|(k, _)| k.account);
        let mut rows = Vec::new();
        let mut other: FastMap<u32, HostCounts> = pass.overflow.clone();
        for run in all.chunk_by_mut(|a, b| a.0.account == b.0.account) {
            if run.len() > keep {
                run.select_nth_unstable_by_key(keep, rank);
            }
            let (top, rest) = run.split_at_mut(keep.min(run.len()));
            top.sort_unstable_by_key(rank);
            for (k, c) in top.iter() {
                rows.push(HostDetail {
                    account: self.bindings.account(k.account).to_string(),
                    remote: k.remote.to_string(),
                    class: self.versions.name(k.class).to_string(),
                    bytes_in: c.bytes_in,
                    bytes_out: c.bytes_out,
                    flows: c.flows,
                });
            }
            for (k, c) in rest.iter() {
                let o = other.entry(k.account).or_default();
                o.bytes_in = o.bytes_in.saturating_add(c.bytes_in);
                o.bytes_out = o.bytes_out.saturating_add(c.bytes_out);
                o.flows += c.flows;
            }
        }
        let mut other: Vec<_> = other.into_iter().collect();
        other.sort_by_key(|(a, _)| *a);
        for (a, c) in other {
            rows.push(HostDetail {
                account: self.bindings.account(a).to_string(),
                remote: OTHER_HOSTS.to_string(),
                class: String::new(),
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                flows: c.flows,
            });
        }
        rows
    }

    /// Runs host passes until no hour is pending (tests, benchmarks, the
    /// demo).
    pub fn finish_hosts(&mut self, now_ms: i64) -> Result<(), ClassifierError> {
        while self.hosts_step(now_ms)? {}
        Ok(())
    }

    /// Whether the batch should be committed now.
    pub fn commit_due(&self, caught_up: bool) -> bool {
        if self.lane.batch.is_empty() {
            return false;
        }
        caught_up
            || self.lane.batch.stats.records >= MAX_BATCH_RECORDS
            || self.lane.batch.entries() >= MAX_BATCH_ENTRIES
            || self
                .batch_started
                .is_some_and(|t| t.elapsed() >= self.config.classifier.commit_interval)
    }

    /// Hands the batch, with the read positions, to the commit thread,
    /// which writes them in one transaction while the engine fills the
    /// next batch; first waits for the commit before it (one at a time).
    /// [`Self::flush`] also waits for this one.
    pub fn commit(&mut self, now_ms: i64) -> Result<(), ClassifierError> {
        self.finish_commit(true)?;
        if self.lane.batch.is_empty() {
            return Ok(());
        }
        let names = Names {
            accounts: &self.bindings,
            classes: &self.versions,
            points: &self.points,
            // The zone the daily rollup is in (the config's, unless
            // summing it again for a new one failed).
            tz: self.store.daily_tz().unwrap_or(self.config.timezone),
            daily_from: self.store.daily_from(),
        };
        self.lane.batch.settle();
        let rows = CommitRows::of(&self.lane.batch, names);
        let batch = &mut self.lane.batch;
        self.in_flight = Some(InFlight {
            progress: std::mem::take(&mut batch.progress),
            stats: batch.stats,
            newest_ms: self.lane.newest_ms,
            now_ms,
        });
        batch.clear();
        self.batch_started = None;
        self.committer.send(rows, now_ms)
    }

    /// Commits the batch and waits until it is written.
    pub fn flush(&mut self, now_ms: i64) -> Result<(), ClassifierError> {
        self.commit(now_ms)?;
        self.finish_commit(true)
    }

    /// Takes the outcome of the commit being written, if any: waiting for
    /// it (`block`), or only if it is already done. Written: its positions
    /// become the committed ones. Failed: the batch filled since (read
    /// past the failed one's positions) is dropped and every segment is
    /// read again from the committed positions; the error is returned.
    fn finish_commit(&mut self, block: bool) -> Result<(), ClassifierError> {
        if self.in_flight.is_none() {
            return Ok(());
        }
        let Some((result, took, waited)) = self.committer.outcome(block) else {
            return Ok(());
        };
        self.stats.commit_write_ms += took.as_millis() as u64;
        self.stats.commit_wait_ms += waited.as_millis() as u64;
        let f = self.in_flight.take().expect("checked above");
        if let Err(e) = result {
            self.lane.batch.clear();
            self.batch_started = None;
            self.readers.clear();
            return Err(e);
        }
        for p in f.progress {
            self.progress.insert((p.collector.clone(), p.segment_id), p);
        }
        self.stats.committed.add(&f.stats);
        self.warn_refused(f.stats.stale_records, f.stats.implausible_records);
        self.stats.commits += 1;
        self.stats.last_commit_ms = f.now_ms;
        self.stats.newest_record_ms = self.stats.newest_record_ms.max(f.newest_ms);
        Ok(())
    }

    /// Says in the log (at most every [`REFUSED_WARN_EVERY`]) that records
    /// were counted as losses instead of traffic, and why.
    fn warn_refused(&mut self, stale: u64, implausible: u64) {
        let r = &mut self.refused;
        r.0 += stale;
        r.1 += implausible;
        if r.0 + r.1 == 0 || r.2.is_some_and(|t| t.elapsed() < REFUSED_WARN_EVERY) {
            return;
        }
        tracing::warn!(
            stale = r.0,
            implausible = r.1,
            traffic_days = self.config.retention.traffic_days,
            "records not counted as traffic, kept as losses of their exporter (`kopek traffic --points`): \
             stale = starting before what tier 2 keeps (an exporter's clock far behind?), \
             implausible = counters beyond what one record can carry"
        );
        *r = (0, 0, Some(Instant::now()));
    }

    /// Reads and commits until tier 1 has nothing more right now.
    pub fn catch_up(&mut self, now_ms: i64) -> Result<AggStats, ClassifierError> {
        self.catch_up_with(now_ms, |_| {})
    }

    /// [`Self::catch_up`], calling `progress` with the counters after each
    /// step that left more to read (a long catch-up reports how far it got).
    pub fn catch_up_with(
        &mut self,
        now_ms: i64,
        mut progress: impl FnMut(&EngineStats),
    ) -> Result<AggStats, ClassifierError> {
        let before = self.stats.committed;
        loop {
            let o = self.step(now_ms)?;
            self.commit(now_ms)?;
            if o.caught_up {
                break;
            }
            progress(&self.stats);
        }
        self.finish_commit(true)?;
        let mut d = self.stats.committed;
        d.records -= before.records;
        d.bytes -= before.bytes;
        Ok(d)
    }

    /// Sealed tier-1 segments fully counted (committed) whose records'
    /// hours have their host detail (which is computed from tier 1 after
    /// an hour ends), with footers.
    fn counted_segments(&self) -> Result<Vec<(SegmentInfo, Footer)>, ClassifierError> {
        let hosts_pending_from = self
            .store
            .hosts_pending(i64::MAX, 1)?
            .first()
            .map(|&(hour_ms, _)| hour_ms);
        let mut out = Vec::new();
        for seg in self.raw.list()? {
            let key = (seg.collector.clone(), seg.id);
            let done = self.progress.get(&key).is_some_and(|p| p.done);
            if !done || seg.state != SegmentState::Closed {
                continue;
            }
            if let Some(footer) = seg.read_footer()?
                && hosts_pending_from.is_none_or(|h| footer.max_last_ms < h)
            {
                out.push((seg, footer));
            }
        }
        Ok(out)
    }

    /// Removes a counted segment (its end noted first: a rebuild of tier
    /// 2 keeps the rows of that time, which tier 1 can no longer give; an
    /// interrupted removal only makes it keep a little more).
    fn remove_segment(
        &mut self,
        seg: &SegmentInfo,
        footer: &Footer,
    ) -> Result<(), ClassifierError> {
        let noted = self
            .store
            .meta(RAW_REMOVED_KEY)?
            .and_then(|v| v.parse::<i64>().ok());
        if noted.is_none_or(|n| n < footer.max_last_ms) {
            self.store
                .set_meta(RAW_REMOVED_KEY, &footer.max_last_ms.to_string())?;
        }
        std::fs::remove_file(&seg.path).map_err(|source| ClassifierError::Io {
            what: format!("removing {}", seg.path.display()),
            source,
        })?;
        self.store.forget_segment(&seg.collector, seg.id)?;
        self.progress.remove(&(seg.collector.clone(), seg.id));
        Ok(())
    }

    /// Keeps tier 1 below `retention.raw_max_bytes` (if set): removes the
    /// sealed, fully counted segments with the oldest records first until
    /// it is, never one not yet counted. Returns (segments removed, bytes
    /// tier 1 is still over the limit).
    pub fn trim_raw(&mut self, now_ms: i64) -> Result<(usize, u64), ClassifierError> {
        let max = self.config.retention.raw_max_bytes;
        if max == 0 {
            return Ok((0, 0));
        }
        let total: u64 = self.raw.list()?.iter().map(|s| s.size_bytes).sum();
        if total <= max {
            return Ok((0, 0));
        }
        // Every position read so far committed: a segment is removed only
        // once tier 2 holds its records for good.
        self.flush(now_ms)?;
        let mut counted = self.counted_segments()?;
        counted.sort_by_key(|(seg, f)| (f.max_last_ms, f.closed_ms, seg.id));
        let (mut over, mut removed) = (total - max, 0);
        for (seg, footer) in &counted {
            if over == 0 {
                break;
            }
            self.remove_segment(seg, footer)?;
            over = over.saturating_sub(seg.size_bytes);
            removed += 1;
        }
        Ok((removed, over))
    }

    /// Retention and hosts compaction; run about hourly.
    pub fn maintain(&mut self, now_ms: i64) -> Result<(), ClassifierError> {
        self.flush(now_ms)?;
        let r = self.config.retention;
        let cut = |days: u32| (days > 0).then(|| now_ms - i64::from(days) * DAY_MS);
        let pruned = self
            .store
            .prune(traffic_cut(now_ms, r.traffic_days), cut(r.top_hosts_days))?;
        let mut removed_segments = 0;
        if let Some(cut) = cut(r.raw_days) {
            for (seg, footer) in self.counted_segments()? {
                if footer.closed_ms < cut && footer.max_last_ms < cut {
                    self.remove_segment(&seg, &footer)?;
                    removed_segments += 1;
                }
            }
        }
        if pruned.held_rows > 0 {
            tracing::warn!(
                rows = pruned.held_rows,
                oldest_bucket_ms = pruned.held_oldest_ms,
                core_read_through = pruned.core_read_seq,
                "tier-2 rows past retention kept: the core has not read them yet (is kopek-core running?)"
            );
        }
        tracing::info!(
            traffic_rows_pruned = pruned.traffic_rows + pruned.unattributed_rows,
            host_rows_pruned = pruned.host_rows,
            raw_segments_removed = removed_segments,
            "maintenance done"
        );
        Ok(())
    }

    /// Records in the stats how far the daily rollup is complete.
    fn note_daily(&mut self) {
        let from = self.store.daily_from();
        self.stats.daily_complete_from_ms = (from != i64::MIN).then_some(from);
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Takes over the counters of an engine of the same process that
    /// failed and was dropped (the daemon's stats are per process).
    pub fn carry_over(&mut self, prev: &EngineStats) {
        let s = &mut self.stats;
        s.committed = prev.committed;
        s.commits = prev.commits;
        s.last_commit_ms = prev.last_commit_ms;
        s.newest_record_ms = s.newest_record_ms.max(prev.newest_record_ms);
        s.commit_write_ms = prev.commit_write_ms;
        s.commit_wait_ms = prev.commit_wait_ms;
        if s.last_reload.is_none() {
            s.last_reload = prev.last_reload.clone();
        }
    }

    /// Whether tier 2's file was deleted or replaced under the engine
    /// ([`SqliteTier2::replaced`]).
    pub fn tier2_replaced(&self) -> Option<String> {
        self.store.replaced()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store, for reports in-process (demo, tests).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.config.state_dir
    }
}

/// Makes tier 2's daily rollup sum the days of `tz` (see
/// [`SqliteTier2::daily_zone`]), saying so when it had to sum them again.
fn daily_zone(
    store: &mut SqliteTier2,
    tz: chrono_tz::Tz,
    now_ms: i64,
    progress: &mut dyn FnMut(),
) -> Result<(), ClassifierError> {
    if store.daily_zone(tz, now_ms, progress)?.is_some() && store.daily_from() != i64::MIN {
        tracing::info!(
            timezone = tz.name(),
            "tier 2's daily rollup is summed again for the days of this zone, newest first, \
             in the background; reports read the hourly rollup for the days not done yet"
        );
    }
    Ok(())
}

/// Tier 2's bucket width is fixed when it is created: rows of two widths
/// would not add up per bucket, and re-splitting history is a re-rating job.
fn check_bucket(store: &mut SqliteTier2, config: &Config) -> Result<(), ClassifierError> {
    let want = config.classifier.bucket_ms().to_string();
    match store.meta("bucket_ms")? {
        None => store.set_meta("bucket_ms", &want)?,
        Some(have) if have == want => {}
        Some(have) => {
            return Err(ClassifierError::Invalid(format!(
                "{}: tier 2 was built with classifier.bucket_s = {}, the config says {}; \
                 keep the old width or start a new state dir",
                store.path().display(),
                have.parse::<i64>().map(|ms| ms / 1000).unwrap_or(0),
                config.classifier.bucket_ms() / 1000
            )));
        }
    }
    Ok(())
}

/// Smallest and largest of first-packet `times` (lo > hi when empty).
fn time_range(times: impl Iterator<Item = i64>) -> (i64, i64) {
    times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)))
}

fn file_sig(p: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}
