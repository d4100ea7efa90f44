//! kopek-enforcer: the default-deny nftables enforcer and pppd hooks.
//!
//! Not built yet: this crate is a placeholder until its issue lands. It owns
//! exactly one nftables table and never touches any other.
