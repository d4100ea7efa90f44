//! kopek-classifier: tier 2 of kopek.
//!
//! Role: read tier-1 raw segments (written by `kopek-collector`), decide for
//! every record which account it belongs to (IP → account bindings over time)
//! and which traffic class it is (local, peering, paid, ... by versioned
//! network lists), and write exactly-once aggregates per account, class,
//! direction and time bucket.
//!
//! Not built yet: this crate is a placeholder until its issue lands. It must
//! never write tier 1 and never touch money (tier 3 belongs to `kopek-core`).
