//! kopek-core: tier 3 of kopek — accounts, tariffs, the ledger, rating and
//! access decisions.
//!
//! Inputs: tier 2 (`tier2.sqlite`, read-only: what each account moved per
//! class, direction and bucket) and operator commands (the control socket,
//! `control.rs`). Output: the billing database `core.sqlite` (accounts,
//! tariff versions, the ledger, accruals, access states and their event
//! log), which the enforcer and reports read.
//!
//! Data flow of one rating cycle (`cycle.rs`): tier-2 rows changed since the
//! core's watermark → deltas against the core's mirror of them → per
//! (account, period, tariff version, service) cumulative volumes → the
//! cumulative charge (`rating.rs`, exact, rounded once) → accrued amount
//! (charged − posted) → access decision per account. At the end of each
//! local day the accruals become ledger entries (`store::post`). The
//! watermark, the mirror, the accruals and the entries commit together:
//! kill -9 at any point and every tier-2 byte is rated exactly once.
//!
//! Never: floats on a money path, an UPDATE or DELETE of a ledger entry,
//! writes to tier 1 or tier 2, packets.

use std::path::PathBuf;

pub mod control;
pub mod cycle;
pub mod import;
pub mod ledger;
pub mod money;
pub mod ops;
pub mod ppp;
pub mod rating;
pub mod report;
pub mod run;
pub mod store;
pub mod tariff;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{file}: {source}")]
    Sql {
        file: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the core is not running: {0}")]
    NotRunning(String),
}

impl CoreError {
    /// An SQL error inside a transaction whose file the caller names.
    pub fn from_sql(source: rusqlite::Error) -> CoreError {
        CoreError::Sql {
            file: PathBuf::from(store::CORE_FILE),
            source,
        }
    }
}

/// A UTC instant shown in the ISP's zone: `2026-10-01 00:00 MSK`.
pub fn fmt_ms(ms: i64, tz: chrono_tz::Tz) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
        None => format!("{ms} ms"),
    }
}
