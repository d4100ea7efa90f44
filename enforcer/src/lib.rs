//! kopek-enforcer: the default-deny nftables enforcer.
//!
//! Input: the core's access decisions (`core.sqlite`, table `access`, and
//! its event log `access_events`), the core's liveness (`meta
//! last_cycle_ms`) and which account holds which address now (the binding
//! registry `bindings.sqlite` and the classifier's static bindings file).
//! Output: one nftables table (`inet kopek` by default) whose forward chain
//! drops traffic of the subscriber networks unless the subscriber's address
//! is in the allowed set (or the other end is in the walled garden).
//!
//! Fail-closed by construction: every allowed element carries a lease (an
//! element timeout) that the enforcer renews only while the core is alive;
//! if either dies, the leases run out and traffic stops by itself. Every
//! change is one `nft -f` transaction.
//!
//! Never: touch another table, flush the ruleset, allow an address the core
//! has not decided on.

pub mod classes;
pub mod counters;
pub mod desired;
pub mod nft;
pub mod reconcile;
pub mod run;
pub mod shaping;

#[derive(Debug, thiserror::Error)]
pub enum EnforcerError {
    #[error("{0}")]
    Invalid(String),
    #[error("{file}: {source}")]
    Sql {
        file: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("nft: {0}")]
    Nft(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
