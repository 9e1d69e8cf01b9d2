//! The greeting API: `v1` greets the world, `v2` greets a name.

pub mod v1;
pub mod v2;
