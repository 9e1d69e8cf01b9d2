//! The resource port: what the resource APIs need of wherever resources are kept
//! ([`ResourceStore`]), and the values it speaks in. Each backend implements it.

use futures::future::BoxFuture;
use futures::FutureExt as _;

use crate::store_error::StoreError;

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
