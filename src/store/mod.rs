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
mod sqlite;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt as _;

pub use crate::availability::Availability;
pub use crate::store_error::{Held, StoreError, StoreErrorKind};
pub use crate::tokens::RevocationStore;
pub use memory::{MemoryRevocations, MemoryStore};
pub use metered::{MeteredResources, MeteredRevocations};
pub use options::{
    Capacity, StoreLocation, StoreOptions, DEFAULT_MAX_RESOURCES, DEFAULT_MAX_REVOCATIONS,
    DEFAULT_STORE, DEFAULT_TIMEOUT, PASSWORD_ENV,
};

/// A stored resource, independent of any API version's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Assigned by the store on creation; never reused.
    pub id: u64,
    /// The owner; set on creation and never changed.
    pub owner_id: u64,
    /// The only field a modification changes.
    pub name: String,
    /// 1 when created, one more on every change: what an etag says.
    pub version: u64,
}

/// What a store call resolves to. A database answers later without holding the caller's thread
/// (a create waits for its commit); the memory store answers at once.
pub type Pending<T> = BoxFuture<'static, Result<T, StoreError>>;

/// Which resources one page of a listing holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageQuery {
    /// Only ids from this one on (the one after the previous page's last).
    pub from_id: u64,
    /// Only this owner's resources, when set.
    pub owner_id: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// What a conditional change came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed<T> {
    /// Made: what it made.
    Done(T),
    /// No resource has the id.
    Missing,
    /// The resource is no longer at the version the caller expected; it is at this one.
    Stale {
        /// The version it is at now.
        current: u64,
    },
}

/// What a create with a request id came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new resource; or, for a request id seen before with the same owner and name, the
    /// resource that request created (as it was then).
    Done(Resource),
    /// The request id was used for a different create, which made this resource.
    Conflict(Resource),
}

/// How long a create's request id is remembered: a retry within this long gets the first
/// answer.
pub const REQUEST_ID_DAYS: i64 = 1;

/// Storage for resources. Implementations are shared by every call, so they are `Send + Sync`
/// and safe under concurrent use; lookups by id must not scan the whole store. A change is
/// acknowledged (its future resolves `Ok`) only once it is durable in the backend.
pub trait ResourceStore: Send + Sync {
    /// Every resource, in id order.
    fn list(&self) -> Pending<Vec<Resource>>;
    /// One page of resources in id order, as `query` says.
    fn page(&self, query: PageQuery) -> Pending<Vec<Resource>>;
    /// The resource with this id, if it exists.
    fn get(&self, id: u64) -> Pending<Option<Resource>>;
    /// Stores a new resource under the next id, which no earlier resource has had. With a
    /// `request_id`, a create repeated with it (a retry, through any replica) creates nothing
    /// and answers what the first one did, for [`REQUEST_ID_DAYS`].
    fn create_once(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Pending<Created>;
    /// Renames the resource with this id, if it is at version `expected` (any version when
    /// None), and returns it as stored now.
    fn update(&self, id: u64, name: String, expected: Option<u64>) -> Pending<Changed<Resource>>;
    /// Removes the resource with this id, if it is at version `expected` (any when None).
    fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>>;

    /// Stores a new resource (no request id).
    fn create(&self, owner_id: u64, name: String) -> Pending<Resource> {
        self.create_once(None, owner_id, name)
            .map(|created| {
                created.map(|created| match created {
                    Created::Done(resource) | Created::Conflict(resource) => resource,
                })
            })
            .boxed()
    }
    /// Renames the resource with this id, whatever its version, if it exists.
    fn rename(&self, id: u64, name: String) -> Pending<Option<Resource>> {
        self.update(id, name, None)
            .map(|changed| {
                changed.map(|changed| match changed {
                    Changed::Done(resource) => Some(resource),
                    Changed::Missing | Changed::Stale { .. } => None,
                })
            })
            .boxed()
    }
    /// Removes the resource with this id; false when there was none.
    fn remove(&self, id: u64) -> Pending<bool> {
        self.delete(id, None)
            .map(|changed| changed.map(|changed| matches!(changed, Changed::Done(()))))
            .boxed()
    }
}

/// The stores a server runs on, opened from [`StoreOptions`].
pub struct Stores {
    /// Resources.
    pub resources: Arc<dyn ResourceStore>,
    /// Revoked token ids.
    pub revocations: Arc<dyn RevocationStore>,
    /// Whether the database answers; always up for the memory and SQLite stores.
    pub availability: Availability,
    /// What the start-up line says about the store (never a password).
    pub description: String,
}

impl Stores {
    /// Both stores in memory, as the original kept them.
    pub fn memory(max_resources: usize, max_revocations: usize) -> Self {
        Self::memory_with(
            Arc::new(MemoryStore::with_limit(max_resources)),
            max_revocations,
        )
    }

    /// The same stores, each operation counted and timed for the metrics, and the database's
    /// availability shown there.
    pub fn metered(self) -> Self {
        self.availability.watch(crate::metrics::store_up);
        Self {
            resources: Arc::new(MeteredResources(self.resources)),
            revocations: Arc::new(MeteredRevocations(self.revocations)),
            ..self
        }
    }

    /// `resources` (a test double, say) with revocations in memory.
    pub fn memory_with(resources: Arc<dyn ResourceStore>, max_revocations: usize) -> Self {
        Self {
            resources,
            revocations: Arc::new(MemoryRevocations::with_limit(max_revocations)),
            availability: Availability::always_up(),
            description: "memory (nothing kept after exit)".to_owned(),
        }
    }
}

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

/// Why a store could not be opened; one line, never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError(pub String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}
