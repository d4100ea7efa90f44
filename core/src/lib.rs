//! kopek-core: tier 3 of kopek — accounts, tariffs, the ledger, rating and
//! access decisions.
//!
//! Not built yet: this crate is a placeholder until its issue lands. It is
//! the only writer of the billing database; it never reads packets.
