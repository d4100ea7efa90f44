//! kopek-classifier: tier 2 of kopek.
//!
//! Role: read tier-1 raw segments (written by `kopek-collector`), decide for
//! every record which account it belongs to and which traffic class it is,
//! and write exactly-once aggregates per account, class, direction and time
//! bucket — "account A moved B bytes of class C in direction D during
//! bucket T", which is what the core prices.
//!
//! Data flow:
//! ```text
//!  tier 1 segments ──► engine (tail, per block) ──► aggregate::add_columns
//!        ▲                  │                        ├─ points: billed or not
//!        │                  │                        ├─ bindings: address → account at time t
//!  progress offsets         │                        ├─ versions/classes: remote address → class (LPM)
//!  committed with           ▼                        └─ split: pro-rata over buckets
//!  the aggregates ◄── store::Tier2::write_rows (commit thread, one transaction)
//! ```
//! - [`lpm`]: the longest-prefix-match structure (IPv4 and IPv6).
//! - [`classes`], [`versions`]: class lists, one version per content hash,
//!   each valid from its load time; records use the version of their time.
//! - [`bindings`]: static and session bindings, one time-indexed index;
//!   the binding registry that `kopek binding` writes.
//! - [`points`]: billing observation points.
//! - [`split`]: pro-rata splitting, exact in integers.
//! - [`probe`]: the `u64`-keyed hash map with prefetch the per-record
//!   tables use (a batch's sums, host bindings).
//! - [`aggregate`]: records (a block's columns, or rows) → batch entries.
//! - [`store`]: all tier-2 SQL, behind the [`store::Tier2`] trait.
//! - [`engine`]: the tail/commit loop; [`run`]: the daemon around it;
//!   [`report`]: the read side for `kopek traffic`; [`rebuild`]: tier 2
//!   computed again from tier 1 and swapped in (`kopek classifier rebuild`).
//!
//! Invariants: the classifier is the only writer of tier 2 and never writes
//! tier 1 (except deleting sealed, fully counted segments past their
//! retention). It never touches money: tier 3 belongs to `kopek-core`.
//! It never drops a record: what no account holds is `unattributed`, what
//! no billing point takes is kept unbilled, what has no subscriber side is
//! `transit`.

pub mod aggregate;
pub mod bindings;
pub mod classes;
pub mod days;
pub mod engine;
pub mod lpm;
pub mod points;
pub mod probe;
pub mod rebuild;
pub mod report;
pub mod run;
pub mod split;
pub mod store;
pub mod versions;

/// Errors of the classifier library.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error(transparent)]
    Config(#[from] kopek_config::ConfigError),
    #[error(transparent)]
    Classes(#[from] classes::ClassError),
    #[error(transparent)]
    Bindings(#[from] bindings::BindingError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Segment(#[from] kopek_collector::segment::SegmentError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}
