//! The `jti`s of the DPoP proofs accepted, each kept until its proof is too old to be accepted
//! again, so that a proof is used once (RFC 9449 section 11.1). Bounded: when it holds its most,
//! a new proof cannot be judged (rather than forgetting one that could then be replayed).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Shards, so that concurrent checks seldom wait for one another.
const SHARDS: usize = 16;

/// What a proof is known by: the first 16 bytes of the SHA-256 of its key's thumbprint and its
/// `jti` (a collision needs 2^64 proofs).
pub type ProofKey = [u8; 16];

/// The proof's key, from its key's thumbprint and its `jti`.
pub fn proof_key(jkt: &str, jti: &str) -> ProofKey {
    let mut sha = openssl::sha::Sha256::new();
    sha.update(jkt.as_bytes());
    sha.update(b":");
    sha.update(jti.as_bytes());
    let digest = sha.finish();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Whether a proof was new.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First seen now, and remembered.
    New,
    /// Seen before, within its window: a replay.
    Replayed,
    /// Not remembered: the cache holds its most.
    Full,
}

pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    /// Proof key to the Unix second after which it may be forgotten.
    until: HashMap<ProofKey, i64>,
    /// When expired entries were last dropped.
    swept_at: i64,
}

impl ReplayCache {
    /// A cache of at most `entries` proofs (at least one per shard).
    pub fn new(entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: entries.div_ceil(SHARDS).max(1),
        }
    }

    /// Remembers `key` until `until` if it is not remembered already.
    pub fn first_use(&self, key: ProofKey, until: i64, now: i64) -> Seen {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&kept) = shard.until.get(&key) {
            if kept >= now {
                return Seen::Replayed;
            }
        }
        if shard.until.len() >= self.per_shard || now > shard.swept_at {
            // At most once a second, or when full: drop what may be forgotten.
            shard.until.retain(|_, kept| *kept >= now);
            shard.swept_at = now;
        }
        if shard.until.len() >= self.per_shard {
            return Seen::Full;
        }
        shard.until.insert(key, until);
        Seen::New
    }

    /// Proofs remembered now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .until
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_new_once_until_its_time_and_a_full_cache_remembers_no_more() {
        let cache = ReplayCache::new(SHARDS);
        let key = proof_key("jkt", "one");
        assert_eq!(cache.first_use(key, 110, 100), Seen::New);
        assert_eq!(cache.first_use(key, 110, 105), Seen::Replayed);
        assert_eq!(cache.first_use(key, 110, 110), Seen::Replayed);
        assert_eq!(
            cache.first_use(key, 200, 111),
            Seen::New,
            "forgotten after its time"
        );
        assert_ne!(proof_key("jkt", "one"), proof_key("other", "one"));
        // One entry per shard: a second one in the same shard finds it full until the first
        // may be forgotten.
        let same_shard = (0..)
            .map(|n| proof_key("jkt", &n.to_string()))
            .find(|k| k[0] as usize % SHARDS == key[0] as usize % SHARDS && *k != key)
            .expect("one");
        assert_eq!(cache.first_use(same_shard, 300, 150), Seen::Full);
        assert_eq!(cache.first_use(same_shard, 300, 201), Seen::New);
        assert_eq!(cache.len(), 1);
    }
}
