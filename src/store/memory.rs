//! The in-memory backends: gone when the server stops, as in the original.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::future::{self, FutureExt as _};

use super::resources::{
    Changed, Created, PageQuery, Pending, Resource, ResourceStore, REQUEST_ID_DAYS,
};
use crate::store_error::{Held, StoreError};
use crate::time::unix_now;
use crate::tokens::RevocationStore;
use crate::tokens::Stored;

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
    /// Creates' request ids, with what each created and when.
    requests: Mutex<HashMap<String, (Resource, i64)>>,
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
            requests: Mutex::default(),
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

impl MemoryStore {
    fn all(&self) -> Vec<Resource> {
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

    fn insert(&self, owner_id: u64, name: String) -> Result<Resource, StoreError> {
        // A place is taken before the id, so concurrent creates can never overshoot the limit.
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .map_err(|_| StoreError::full(Held::Resources, self.limit))?;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let resource = Resource {
            id,
            owner_id,
            name,
            version: 1,
        };
        Self::write(self.shard(id)).insert(id, resource.clone());
        Ok(resource)
    }

    fn insert_once(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Result<Created, StoreError> {
        let Some(request_id) = request_id else {
            return self.insert(owner_id, name).map(Created::Done);
        };
        // Held across the create, so the same request id twice at once creates once.
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let now = unix_now();
        if let Some((first, _)) = requests.get(&request_id) {
            return Ok(replayed(first, owner_id, &name));
        }
        let created = self.insert(owner_id, name)?;
        requests.retain(|_, (_, at)| *at > now - REQUEST_ID_DAYS * 86_400);
        requests.insert(request_id, (created.clone(), now));
        Ok(Created::Done(created))
    }

    fn updated(&self, id: u64, name: String, expected: Option<u64>) -> Changed<Resource> {
        let mut shard = Self::write(self.shard(id));
        let Some(resource) = shard.get_mut(&id) else {
            return Changed::Missing;
        };
        if expected.is_some_and(|expected| expected != resource.version) {
            return Changed::Stale {
                current: resource.version,
            };
        }
        resource.name = name;
        resource.version += 1;
        Changed::Done(resource.clone())
    }

    fn deleted(&self, id: u64, expected: Option<u64>) -> Changed<()> {
        let mut shard = Self::write(self.shard(id));
        let Some(resource) = shard.get(&id) else {
            return Changed::Missing;
        };
        if expected.is_some_and(|expected| expected != resource.version) {
            return Changed::Stale {
                current: resource.version,
            };
        }
        shard.remove(&id);
        self.count.fetch_sub(1, Ordering::SeqCst);
        Changed::Done(())
    }

    fn paged(&self, query: PageQuery) -> Vec<Resource> {
        // A scan: the memory store is for tests and demos; the databases use their indexes.
        let mut page: Vec<Resource> = self
            .shards
            .iter()
            .flat_map(|shard| {
                Self::read(shard)
                    .values()
                    .filter(|r| r.id >= query.from_id)
                    .filter(|r| query.owner_id.is_none_or(|owner| owner == r.owner_id))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        page.sort_unstable_by_key(|resource| resource.id);
        page.truncate(query.limit);
        page
    }
}

/// The answer to a create whose request id was seen before, which created `first`.
pub(crate) fn replayed(first: &Resource, owner_id: u64, name: &str) -> Created {
    if first.owner_id == owner_id && first.name == name {
        Created::Done(first.clone())
    } else {
        Created::Conflict(first.clone())
    }
}

/// Answers at once: nothing here waits.
fn at_once<T: Send + 'static>(answer: Result<T, StoreError>) -> Pending<T> {
    future::ready(answer).boxed()
}

impl ResourceStore for MemoryStore {
    fn list(&self) -> Pending<Vec<Resource>> {
        at_once(Ok(self.all()))
    }

    fn page(&self, query: PageQuery) -> Pending<Vec<Resource>> {
        at_once(Ok(self.paged(query)))
    }

    fn get(&self, id: u64) -> Pending<Option<Resource>> {
        at_once(Ok(Self::read(self.shard(id)).get(&id).cloned()))
    }

    fn create_once(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Pending<Created> {
        at_once(self.insert_once(request_id, owner_id, name))
    }

    fn update(&self, id: u64, name: String, expected: Option<u64>) -> Pending<Changed<Resource>> {
        at_once(Ok(self.updated(id, name, expected)))
    }

    fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>> {
        at_once(Ok(self.deleted(id, expected)))
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

impl MemoryRevocations {
    /// As [`RevocationStore::revoke`], at once.
    pub(crate) fn hold(&self, token_id: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
        // A single map operation at a time, so a poisoned lock is still consistent.
        let mut until = self.until.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = until.get_mut(token_id) {
            *kept = (*kept).max(expires_at);
            return Ok(());
        }
        if until.len() >= self.limit {
            until.retain(|_, expiry| *expiry > now);
            self.held.store(until.len(), Ordering::Release);
            crate::metrics::revocations_held(until.len());
            if until.len() >= self.limit {
                return Err(StoreError::full(Held::Revocations, self.limit));
            }
        }
        until.insert(token_id.to_owned(), expires_at);
        self.held.store(until.len(), Ordering::Release);
        crate::metrics::revocations_held(until.len());
        Ok(())
    }

    /// As [`RevocationStore::is_revoked`].
    pub(crate) fn holds(&self, token_id: &str, now: i64) -> bool {
        if self.held.load(Ordering::Acquire) == 0 {
            return false;
        }
        let until = self.until.read().unwrap_or_else(PoisonError::into_inner);
        until.get(token_id).is_some_and(|expiry| *expiry > now)
    }
}

impl RevocationStore for MemoryRevocations {
    fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Stored {
        future::ready(self.hold(token_id, expires_at, now)).boxed()
    }

    fn is_revoked(&self, token_id: &str, now: i64) -> bool {
        self.holds(token_id, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn ok<T>(answer: Pending<T>) -> T {
        block_on(answer).expect("the memory store always answers")
    }

    #[test]
    fn ids_start_at_zero_and_are_never_reused() {
        let store = MemoryStore::new();
        assert_eq!(block_on(store.create(1, "a".into())).expect("room").id, 0);
        assert_eq!(block_on(store.create(1, "b".into())).expect("room").id, 1);
        assert!(ok(store.remove(1)));
        assert_eq!(block_on(store.create(1, "c".into())).expect("room").id, 2);
        let ids: Vec<u64> = ok(store.list()).iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2]);
    }

    #[test]
    fn rename_keeps_the_owner() {
        let store = MemoryStore::new();
        let created = block_on(store.create(7, "before".into())).expect("room");
        let renamed = ok(store.rename(created.id, "after".into())).expect("exists");
        assert_eq!(
            renamed,
            Resource {
                id: created.id,
                owner_id: 7,
                name: "after".into(),
                version: 2,
            }
        );
        assert_eq!(ok(store.get(created.id)), Some(renamed));
    }

    #[test]
    fn missing_ids_are_reported_as_missing() {
        let store = MemoryStore::new();
        assert_eq!(ok(store.get(3)), None);
        assert_eq!(ok(store.rename(3, "x".into())), None);
        assert!(!ok(store.remove(3)));
    }

    #[test]
    fn list_is_in_id_order_across_shards() {
        let store = MemoryStore::new();
        for n in 0..(SHARDS as u64 * 3) {
            block_on(store.create(n, format!("r{n}"))).expect("room");
        }
        let ids: Vec<u64> = ok(store.list()).iter().map(|r| r.id).collect();
        assert_eq!(ids, (0..SHARDS as u64 * 3).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_store_refuses_creates_until_one_is_removed() {
        let store = MemoryStore::with_limit(2);
        block_on(store.create(1, "a".into())).expect("room");
        block_on(store.create(1, "b".into())).expect("room");
        assert_eq!(
            block_on(store.create(1, "c".into())),
            Err(StoreError::full(Held::Resources, 2))
        );
        assert!(ok(store.remove(0)));
        assert_eq!(
            block_on(store.create(1, "c".into()))
                .expect("room again")
                .id,
            2
        );
    }

    #[test]
    fn a_revocation_holds_until_its_expiry_and_the_later_expiry_wins() {
        let revocations = MemoryRevocations::with_limit(10);
        assert!(!revocations.holds("a", 100));
        revocations.hold("a", 200, 100).expect("room");
        assert!(revocations.holds("a", 199));
        assert!(!revocations.holds("a", 200));
        revocations.hold("a", 150, 100).expect("room");
        assert!(
            revocations.holds("a", 199),
            "an earlier expiry does not shorten it"
        );
        revocations.hold("a", 300, 100).expect("room");
        assert!(revocations.holds("a", 299));
    }

    #[test]
    fn a_full_revocation_store_forgets_expired_ids_before_refusing() {
        let revocations = MemoryRevocations::with_limit(2);
        revocations.hold("a", 110, 100).expect("room");
        revocations.hold("b", 500, 100).expect("room");
        assert_eq!(
            revocations.hold("c", 500, 100),
            Err(StoreError::full(Held::Revocations, 2))
        );
        revocations
            .hold("c", 500, 120)
            .expect("a has expired by 120");
        assert!(revocations.holds("b", 120) && revocations.holds("c", 120));
        assert!(
            !revocations.holds("a", 105),
            "forgotten once expired and purged"
        );
    }
}
