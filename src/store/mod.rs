//! Where the server keeps what it must remember: resources (the [`ResourceStore`] port, which
//! the resource APIs call) and revoked tokens (the token domain's [`RevocationStore`] port,
//! implemented here), with one module per backend: `memory` (gone at exit, as in the original),
//! `sqlite` (an embedded file, the default) and `postgres` (a shared server). No caller knows
//! which backend it talks to.

mod batch;
mod durable;
mod memory;
mod metered;
mod migrations;
mod options;
mod postgres;
mod resources;
mod sqlite;
mod stores;

pub use crate::availability::Availability;
pub use crate::store_error::{Held, StoreError, StoreErrorKind};
pub use crate::tokens::RevocationStore;
pub use memory::{MemoryRevocations, MemoryStore};
pub use metered::{MeteredResources, MeteredRevocations};
pub use options::{
    Capacity, StoreLocation, StoreOptions, DEFAULT_MAX_RESOURCES, DEFAULT_MAX_REVOCATIONS,
    DEFAULT_STORE, DEFAULT_TIMEOUT, PASSWORD_ENV,
};
pub use resources::{
    Changed, Created, PageQuery, Pending, Resource, ResourceStore, REQUEST_ID_DAYS,
};
pub use stores::{OpenError, Stores};

/// Opens the store `options` names: creates or migrates its schema, checks that it can write,
/// and loads the unexpired revocations. Fails before anything listens when it cannot.
pub fn open(options: &StoreOptions) -> Result<Stores, OpenError> {
    let capacity = options.capacity;
    match &options.location {
        StoreLocation::Memory => Ok(Stores::memory(
            capacity.max_resources,
            capacity.max_revocations,
        )),
        StoreLocation::Sqlite(path) => sqlite::open(path, options),
        StoreLocation::Postgres(url) => postgres::open(url, options),
    }
}
