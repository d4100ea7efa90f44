//! kopek-config (being written).
