//! Token validation, by version.

pub mod v1;
