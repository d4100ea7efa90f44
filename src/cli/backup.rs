//! `kopek backup --to DIR`: consistent copies of the state databases while
//! the daemons run; `kopek restore --from DIR` puts them back.
//!
//! Each database is copied by SQLite's `VACUUM INTO` from a read
//! transaction: a snapshot of one moment, whatever the writers do meanwhile
//! (WAL), never a torn file as `cp` of a database being written gives. The
//! order matters for a restore: the core's database first, then the
//! bindings, then tier 2, so that the tier 2 restored holds at least every
//! row the restored core has read (its watermark is a position in tier 2).
//! Tier 1 is not copied: sealed segments never change (copy them with
//! `rsync`), and the classifier counts again, once, whatever tier 1 holds
//! past the restored tier 2's read positions.

use std::path::Path;
use std::time::Instant;

use clap::Args;

use super::format::human_bytes;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Directory of a `kopek backup`.
    #[arg(long)]
    from: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory for the copies (created; files already there are not
    /// overwritten).
    #[arg(long)]
    to: std::path::PathBuf,
}

/// What is copied, in this order (see the module docs), and what it is.
const FILES: [(&str, &str); 3] = [
    ("core.sqlite", "tier 3: accounts, tariffs, the ledger"),
    ("bindings.sqlite", "session bindings"),
    ("tier2.sqlite", "tier 2: traffic aggregates"),
];

/// The [`FILES`] that `dir` holds, in their order.
fn present_in(dir: &Path) -> Vec<&'static (&'static str, &'static str)> {
    FILES.iter().filter(|(f, _)| dir.join(f).exists()).collect()
}

/// Syncs `tmp` and renames it to `dest` (then syncs the directory): `dest`
/// is the whole new file or the old one, never half. Returns its size.
fn put_in_place(tmp: &Path, dest: &Path) -> anyhow::Result<u64> {
    let file = std::fs::File::open(tmp)?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    std::fs::rename(tmp, dest)?;
    if let Some(dir) = dest.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(bytes)
}

pub fn exec(config_path: &Path, a: &BackupArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let state = &config.state_dir;
    let present = present_in(state);
    if present.is_empty() {
        return Err(anyhow::anyhow!("{}: no kopek database to back up", state.display()).into());
    }
    std::fs::create_dir_all(&a.to)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", a.to.display()))?;
    for (f, _) in &present {
        let dest = a.to.join(f);
        if dest.exists() {
            return Err(anyhow::anyhow!(
                "{}: already there; a backup never overwrites one (choose an empty directory)",
                dest.display()
            )
            .into());
        }
    }
    for (f, what) in present {
        let started = Instant::now();
        let dest = a.to.join(f);
        let bytes = snapshot(&state.join(f), &dest)?;
        outln!(
            "{f:<16} {:>10}  {:.1} s  ({what})",
            human_bytes(bytes, 1024),
            started.elapsed().as_secs_f64()
        );
    }
    outln!(
        "backed up to {}; tier 1 ({}) is not copied: its sealed segments never change (rsync them)",
        a.to.display(),
        config.collector.raw_dir(state).display()
    );
    Ok(())
}

/// `VACUUM INTO` a temporary name beside `dest`, synced, then renamed:
/// `dest` is a whole snapshot or absent. Returns its size.
fn snapshot(src: &Path, dest: &Path) -> anyhow::Result<u64> {
    let tmp = dest.with_extension("sqlite.tmp");
    let _ = std::fs::remove_file(&tmp);
    let conn = rusqlite::Connection::open_with_flags(
        src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", src.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let tmp_text = tmp
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{}: not a UTF-8 path", tmp.display()))?;
    conn.execute("VACUUM INTO ?1", [tmp_text])
        .map_err(|e| anyhow::anyhow!("copying {} to {}: {e}", src.display(), tmp.display()))?;
    drop(conn);
    put_in_place(&tmp, dest)
}

/// Puts the copies in `a.from` into the state dir, the core and the
/// classifier stopped (their locks are held meanwhile). Each file goes in
/// under a temporary name and is renamed over the live one, after the live
/// one's `-wal` and `-shm` are deleted: SQLite would otherwise apply the
/// old database's write-ahead log to the restored one (silently damaging
/// it), the usual way a hand restore goes wrong.
pub fn restore(config_path: &Path, a: &RestoreArgs) -> super::Result {
    let config = super::load_config_or_defaults(config_path)?;
    let state = &config.state_dir;
    let present = present_in(&a.from);
    if present.is_empty() {
        return Err(anyhow::anyhow!(
            "{}: no kopek backup here (core.sqlite, bindings.sqlite, tier2.sqlite)",
            a.from.display()
        )
        .into());
    }
    for (f, _) in &present {
        let p = a.from.join(f);
        let conn = rusqlite::Connection::open_with_flags(
            &p,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        });
        if let Err(e) = conn {
            return Err(anyhow::anyhow!("{}: not a database to restore: {e}", p.display()).into());
        }
    }
    fn stopped(what: &str, e: &dyn std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{e}: stop kopek-{what} first (systemctl stop kopek-{what}), restore, start it"
        )
    }
    std::fs::create_dir_all(state)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", state.display()))?;
    let _core = kopek_core::run::lock(state).map_err(|e| stopped("core", &e))?;
    let _classifier = kopek_classifier::run::lock(state).map_err(|e| stopped("classifier", &e))?;
    for (f, what) in present {
        let live = state.join(f);
        let tmp = state.join(format!("{f}.restore.tmp"));
        std::fs::copy(a.from.join(f), &tmp).map_err(|e| {
            anyhow::anyhow!(
                "copying {} to {}: {e}",
                a.from.join(f).display(),
                tmp.display()
            )
        })?;
        for side in ["-wal", "-shm"] {
            let p = state.join(format!("{f}{side}"));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow::anyhow!("removing {}: {e}", p.display()).into()),
            }
        }
        put_in_place(&tmp, &live)?;
        outln!("{f:<16} restored  ({what})");
    }
    outln!(
        "restored into {}; start the daemons: the classifier counts tier 1 past the restored read positions",
        state.display()
    );
    Ok(())
}
