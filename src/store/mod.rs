//! Where the server keeps what it must remember: resources, and revoked tokens. Each is a small
//! trait that the API and domain code call, with one module per backend (`memory` today); no
//! caller knows which backend it talks to.

mod memory;

use std::fmt;

pub use memory::{MemoryRevocations, MemoryStore};

/// A stored resource, independent of any API version's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Assigned by the store on creation; never reused.
    pub id: u64,
    /// The owner; set on creation and never changed.
    pub owner_id: u64,
    /// The only field a modification changes.
    pub name: String,
}

/// Storage for resources. Implementations are shared by every call, so they are `Send + Sync`
/// and safe under concurrent use; lookups by id must not scan the whole store.
pub trait ResourceStore: Send + Sync {
    /// Every resource, in id order.
    fn list(&self) -> Vec<Resource>;
    /// The resource with this id, if it exists.
    fn get(&self, id: u64) -> Option<Resource>;
    /// Stores a new resource under the next id, which no earlier resource has had.
    fn create(&self, owner_id: u64, name: String) -> Result<Resource, StoreError>;
    /// Renames the resource with this id and returns it as stored now, if it exists.
    fn rename(&self, id: u64, name: String) -> Option<Resource>;
    /// Removes the resource with this id; false when there was none.
    fn remove(&self, id: u64) -> bool;
}

/// Revoked token ids (a JWT's `jti`), each refused until its own expiry. Asked on every token
/// validation, so a lookup must be cheap and must not scan the whole store.
pub trait RevocationStore: Send + Sync {
    /// Refuses `token_id` until `expires_at` (Unix seconds); revoking an id again keeps the
    /// later expiry. `now` is the current time, for forgetting revocations that have expired.
    fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Result<(), StoreError>;
    /// Whether `token_id` is refused at `now`.
    fn is_revoked(&self, token_id: &str, now: i64) -> bool;
}

/// Why a store refused a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The store holds as many resources as it may.
    Full {
        /// The most resources it holds.
        limit: usize,
    },
    /// The store holds as many unexpired revocations as it may.
    TooManyRevocations {
        /// The most revocations it holds.
        limit: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { limit } => write!(
                f,
                "the store holds its limit of {limit} resources; remove some before creating more"
            ),
            Self::TooManyRevocations { limit } => write!(
                f,
                "the store holds its limit of {limit} unexpired revocations; each is forgotten \
                 at its expiry (--max-revocations raises the limit)"
            ),
        }
    }
}

impl std::error::Error for StoreError {}
