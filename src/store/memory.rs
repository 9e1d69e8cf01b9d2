//! The in-memory backends: gone when the server stops, as in the original.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Resource, ResourceStore, RevocationStore, StoreError};

/// How many independently locked parts the in-memory store is split into. Calls on different
/// resources rarely meet on the same lock, and no Get, Modify or Remove waits for a lock over
/// the whole store.
const SHARDS: usize = 64;

type Shard = HashMap<u64, Resource>;

/// Resources in memory: hash maps sharded by id, so lookups cost the same with a million
/// resources as with a thousand.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    next_id: AtomicU64,
    count: AtomicUsize,
    limit: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_limit(usize::MAX)
    }
}

impl MemoryStore {
    /// An empty store whose first resource gets id 0, with no limit but memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that holds at most `limit` resources at once.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            next_id: AtomicU64::new(0),
            count: AtomicUsize::new(0),
            limit,
        }
    }

    fn shard(&self, id: u64) -> &RwLock<Shard> {
        &self.shards[(id % SHARDS as u64) as usize]
    }

    // Every mutation is a single map operation, so a panic elsewhere cannot leave a shard
    // half-changed: a poisoned lock is still safe to use.
    fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        shard.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        shard.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResourceStore for MemoryStore {
    fn list(&self) -> Vec<Resource> {
        // All shards at once (always in the same order, so no deadlock): a point-in-time view,
        // where a create that finished before another is never missing while the other shows.
        let shards: Vec<_> = self.shards.iter().map(Self::read).collect();
        let mut all: Vec<Resource> = shards
            .iter()
            .flat_map(|shard| shard.values().cloned())
            .collect();
        drop(shards);
        all.sort_unstable_by_key(|resource| resource.id);
        all
    }

    fn get(&self, id: u64) -> Option<Resource> {
        Self::read(self.shard(id)).get(&id).cloned()
    }

    fn create(&self, owner_id: u64, name: String) -> Result<Resource, StoreError> {
        // A place is taken before the id, so concurrent creates can never overshoot the limit.
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .map_err(|_| StoreError::Full { limit: self.limit })?;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let resource = Resource { id, owner_id, name };
        Self::write(self.shard(id)).insert(id, resource.clone());
        Ok(resource)
    }

    fn rename(&self, id: u64, name: String) -> Option<Resource> {
        let mut shard = Self::write(self.shard(id));
        let resource = shard.get_mut(&id)?;
        resource.name = name;
        Some(resource.clone())
    }

    fn remove(&self, id: u64) -> bool {
        let removed = Self::write(self.shard(id)).remove(&id).is_some();
        if removed {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
        removed
    }
}

/// Revoked token ids in memory, each with the time until which it is refused. Expired ones are
/// forgotten when room is needed, so the map never holds more than its limit.
#[derive(Debug)]
pub struct MemoryRevocations {
    until: RwLock<HashMap<String, i64>>,
    /// How many ids the map holds, read without the lock: most servers revoke nothing, and
    /// then a validation never touches the lock.
    held: AtomicUsize,
    limit: usize,
}

impl MemoryRevocations {
    /// An empty store that holds at most `limit` unexpired revocations.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            until: RwLock::default(),
            held: AtomicUsize::new(0),
            limit,
        }
    }
}

impl RevocationStore for MemoryRevocations {
    fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
        // A single map operation at a time, so a poisoned lock is still consistent.
        let mut until = self.until.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = until.get_mut(token_id) {
            *kept = (*kept).max(expires_at);
            return Ok(());
        }
        if until.len() >= self.limit {
            until.retain(|_, expiry| *expiry > now);
            self.held.store(until.len(), Ordering::Release);
            if until.len() >= self.limit {
                return Err(StoreError::TooManyRevocations { limit: self.limit });
            }
        }
        until.insert(token_id.to_owned(), expires_at);
        self.held.store(until.len(), Ordering::Release);
        Ok(())
    }

    fn is_revoked(&self, token_id: &str, now: i64) -> bool {
        if self.held.load(Ordering::Acquire) == 0 {
            return false;
        }
        let until = self.until.read().unwrap_or_else(PoisonError::into_inner);
        until.get(token_id).is_some_and(|expiry| *expiry > now)
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
    fn list_is_in_id_order_across_shards() {
        let store = MemoryStore::new();
        for n in 0..(SHARDS as u64 * 3) {
            store.create(n, format!("r{n}")).expect("room");
        }
        let ids: Vec<u64> = store.list().iter().map(|r| r.id).collect();
        assert_eq!(ids, (0..SHARDS as u64 * 3).collect::<Vec<_>>());
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

    #[test]
    fn a_revocation_holds_until_its_expiry_and_the_later_expiry_wins() {
        let revocations = MemoryRevocations::with_limit(10);
        assert!(!revocations.is_revoked("a", 100));
        revocations.revoke("a", 200, 100).expect("room");
        assert!(revocations.is_revoked("a", 199));
        assert!(!revocations.is_revoked("a", 200));
        revocations.revoke("a", 150, 100).expect("room");
        assert!(
            revocations.is_revoked("a", 199),
            "an earlier expiry does not shorten it"
        );
        revocations.revoke("a", 300, 100).expect("room");
        assert!(revocations.is_revoked("a", 299));
    }

    #[test]
    fn a_full_revocation_store_forgets_expired_ids_before_refusing() {
        let revocations = MemoryRevocations::with_limit(2);
        revocations.revoke("a", 110, 100).expect("room");
        revocations.revoke("b", 500, 100).expect("room");
        assert_eq!(
            revocations.revoke("c", 500, 100),
            Err(StoreError::TooManyRevocations { limit: 2 })
        );
        revocations
            .revoke("c", 500, 120)
            .expect("a has expired by 120");
        assert!(revocations.is_revoked("b", 120) && revocations.is_revoked("c", 120));
        assert!(
            !revocations.is_revoked("a", 105),
            "forgotten once expired and purged"
        );
    }
}
