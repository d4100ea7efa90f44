//! kopek-radius: RADIUS accounting, authorization and CoA/Disconnect.
//!
//! Not built yet: this crate is a placeholder until its issue lands.
