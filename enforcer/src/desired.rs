//! What the kernel's allowed sets should hold now: the addresses and
//! prefixes bound (at this moment) to accounts the core allows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use ipnet::IpNet;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::EnforcerError;
use crate::shaping::Caps;

/// The desired allowed set and what it was computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub allowed: BTreeSet<IpNet>,
    /// Speed caps of allowed hosts whose account's tariff sets them.
    pub caps: BTreeMap<IpNet, Caps>,
    pub versions: Versions,
}

/// Cheap change detection: what `desired` depends on, by version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    /// The core's last access event.
    pub access_seq: i64,
    /// The core's last cycle.
    pub core_cycle_ms: Option<i64>,
    /// The binding registry's last change.
    pub binding_seq: i64,
    /// The core's last change of speed caps.
    pub shaping_seq: i64,
}

fn open_ro(path: &Path) -> Result<Option<Connection>, EnforcerError> {
    if !path.exists() {
        return Ok(None);
    }
    let err = |source| EnforcerError::Sql {
        file: path.to_path_buf(),
        source,
    };
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    Ok(Some(c))
}

/// The versions of everything [`desired`] reads.
pub fn versions(state_dir: &Path) -> Result<Versions, EnforcerError> {
    let core = state_dir.join(kopek_classifier::store::CORE_FILE);
    let (seq, cycle, shaping) = match open_ro(&core)? {
        None => (0, None, None),
        Some(c) => {
            let err = |source| EnforcerError::Sql {
                file: core.clone(),
                source,
            };
            let seq: i64 = c
                .query_row("SELECT coalesce(max(seq), 0) FROM access_events", [], |r| {
                    r.get(0)
                })
                .map_err(err)?;
            let cycle: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'last_cycle_ms'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            let shaping: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'shaping_seq'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            (
                seq,
                cycle.and_then(|v| v.parse().ok()),
                shaping.and_then(|v| v.parse().ok()),
            )
        }
    };
    let reg = state_dir.join("bindings.sqlite");
    let bseq = match open_ro(&reg)? {
        None => 0,
        Some(c) => c
            .query_row("SELECT coalesce(max(seq), 0) FROM bindings", [], |r| {
                r.get(0)
            })
            .map_err(|source| EnforcerError::Sql {
                file: reg.clone(),
                source,
            })?,
    };
    Ok(Versions {
        access_seq: seq,
        core_cycle_ms: cycle,
        binding_seq: bseq,
        shaping_seq: shaping.unwrap_or(0),
    })
}

/// Computes the desired allowed set at `now_ms`.
pub fn desired(
    state_dir: &Path,
    static_file: Option<&Path>,
    now_ms: i64,
) -> Result<Desired, EnforcerError> {
    let mut d = Desired {
        versions: versions(state_dir)?,
        ..Desired::default()
    };
    let core = state_dir.join(kopek_classifier::store::CORE_FILE);
    let Some(c) = open_ro(&core)? else {
        return Ok(d);
    };
    let err = |source| EnforcerError::Sql {
        file: core.clone(),
        source,
    };
    let allowed: BTreeSet<String> = c
        .prepare("SELECT a.number FROM access x JOIN accounts a ON a.id = x.account_id WHERE x.state = 'allowed'")
        .map_err(err)?
        .query_map([], |r| r.get(0))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    // A core older than speed caps has no `shaping` table: no caps.
    let has_shaping: bool = c
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'shaping'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let caps: HashMap<String, Caps> = if has_shaping {
        c.prepare("SELECT a.number, s.down_kbit, s.up_kbit FROM shaping s JOIN accounts a ON a.id = s.account_id")
            .map_err(err)?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Caps {
                        down_kbit: r.get(1)?,
                        up_kbit: r.get(2)?,
                    },
                ))
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?
    } else {
        HashMap::new()
    };
    let mut bindings = Vec::new();
    if state_dir.join("bindings.sqlite").exists() {
        let reg = kopek_classifier::bindings::Registry::open(state_dir)
            .map_err(|e| EnforcerError::Invalid(e.to_string()))?;
        bindings.extend(
            reg.changes_since(0)
                .map_err(|e| EnforcerError::Invalid(e.to_string()))?
                .0,
        );
    }
    if let Some(f) = static_file {
        bindings.extend(
            kopek_classifier::bindings::read_static(f)
                .map_err(|e| EnforcerError::Invalid(e.to_string()))?,
        );
    }
    for b in bindings {
        let active = b.from_ms <= now_ms && b.to_ms.is_none_or(|t| now_ms < t);
        if active && allowed.contains(&b.account) {
            d.allowed.insert(b.net);
            if let Some(k) = caps.get(&b.account)
                && b.net.prefix_len() == b.net.max_prefix_len()
            {
                d.caps.insert(b.net, *k);
            }
        }
    }
    Ok(d)
}
