//! Where resources live: a small trait the resource API calls, and its in-memory implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

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

/// Why a store refused a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The store holds as many resources as it may.
    Full {
        /// The most resources it holds.
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
        }
    }
}

impl std::error::Error for StoreError {}

/// Resources in memory, ordered by id, behind one reader-writer lock.
#[derive(Debug)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
    limit: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_limit(usize::MAX)
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    resources: BTreeMap<u64, Resource>,
}

impl MemoryStore {
    /// An empty store whose first resource gets id 0, with no limit but memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that holds at most `limit` resources at once.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            inner: RwLock::default(),
            limit,
        }
    }

    // Every mutation is a single map operation, so a panic elsewhere cannot leave the data
    // half-changed: a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResourceStore for MemoryStore {
    fn list(&self) -> Vec<Resource> {
        self.read().resources.values().cloned().collect()
    }

    fn get(&self, id: u64) -> Option<Resource> {
        self.read().resources.get(&id).cloned()
    }

    fn create(&self, owner_id: u64, name: String) -> Result<Resource, StoreError> {
        let mut inner = self.write();
        // Checked under the same lock as the insert, so concurrent creates cannot overshoot.
        if inner.resources.len() >= self.limit {
            return Err(StoreError::Full { limit: self.limit });
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let resource = Resource { id, owner_id, name };
        inner.resources.insert(id, resource.clone());
        Ok(resource)
    }

    fn rename(&self, id: u64, name: String) -> Option<Resource> {
        let mut inner = self.write();
        let resource = inner.resources.get_mut(&id)?;
        resource.name = name;
        Some(resource.clone())
    }

    fn remove(&self, id: u64) -> bool {
        self.write().resources.remove(&id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_at_zero_and_are_never_reused() {
        let store = MemoryStore::new();
        assert_eq!(store.create(1, "a".into()).expect("room").id, 0);
        assert_eq!(store.create(1, "b".into()).expect("room").id, 1);
        assert!(store.remove(1));
        assert_eq!(store.create(1, "c".into()).expect("room").id, 2);
        let ids: Vec<u64> = store.list().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2]);
    }

    #[test]
    fn rename_keeps_the_owner() {
        let store = MemoryStore::new();
        let created = store.create(7, "before".into()).expect("room");
        let renamed = store.rename(created.id, "after".into()).expect("exists");
        assert_eq!(
            renamed,
            Resource {
                id: created.id,
                owner_id: 7,
                name: "after".into()
            }
        );
        assert_eq!(store.get(created.id), Some(renamed));
    }

    #[test]
    fn missing_ids_are_reported_as_missing() {
        let store = MemoryStore::new();
        assert_eq!(store.get(3), None);
        assert_eq!(store.rename(3, "x".into()), None);
        assert!(!store.remove(3));
    }

    #[test]
    fn a_full_store_refuses_creates_until_one_is_removed() {
        let store = MemoryStore::with_limit(2);
        store.create(1, "a".into()).expect("room");
        store.create(1, "b".into()).expect("room");
        assert_eq!(
            store.create(1, "c".into()),
            Err(StoreError::Full { limit: 2 })
        );
        assert!(store.remove(0));
        assert_eq!(store.create(1, "c".into()).expect("room again").id, 2);
    }
}
