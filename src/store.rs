//! Where resources live: a small trait the resource API calls, and its in-memory implementation.

use std::collections::BTreeMap;
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
    fn create(&self, owner_id: u64, name: String) -> Resource;
    /// Renames the resource with this id and returns it as stored now, if it exists.
    fn rename(&self, id: u64, name: String) -> Option<Resource>;
    /// Removes the resource with this id; false when there was none.
    fn remove(&self, id: u64) -> bool;
}

/// Resources in memory, ordered by id, behind one reader-writer lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    resources: BTreeMap<u64, Resource>,
}

impl MemoryStore {
    /// An empty store whose first resource gets id 0.
    pub fn new() -> Self {
        Self::default()
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

    fn create(&self, owner_id: u64, name: String) -> Resource {
        let mut inner = self.write();
        let id = inner.next_id;
        inner.next_id += 1;
        let resource = Resource { id, owner_id, name };
        inner.resources.insert(id, resource.clone());
        resource
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
        assert_eq!(store.create(1, "a".into()).id, 0);
        assert_eq!(store.create(1, "b".into()).id, 1);
        assert!(store.remove(1));
        assert_eq!(store.create(1, "c".into()).id, 2);
        let ids: Vec<u64> = store.list().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2]);
    }

    #[test]
    fn rename_keeps_the_owner() {
        let store = MemoryStore::new();
        let created = store.create(7, "before".into());
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
}
