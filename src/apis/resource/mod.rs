//! The resource API. Versions share the store, so a resource created through one is seen by all.

pub mod v1;
