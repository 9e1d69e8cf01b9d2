//! Token validation, by version, and the claim set as the wire carries it.

mod claims;
pub mod v1;
