//! The cache of valid tokens, by the SHA-256 of the token (so that no token is kept in memory),
//! bounded both in entries and in bytes: each entry weighs what it holds (the token's claims
//! and what is made of them), so that a few thousand tokens with large claims cannot hold more
//! memory than the bound, and the least used entries go first.

use std::mem::size_of;
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use serde_json::{Map, Value};

use super::introspection::Introspected;
use super::ValidToken;
use crate::metrics;

/// What is cached of a token: a JWT's validation, or its provider's introspection answer.
#[derive(Clone)]
pub(super) enum Entry {
    /// A valid JWT, verified with the key set of this generation.
    Verified {
        token: Arc<ValidToken>,
        generation: u64,
    },
    /// An introspection answer (active or not): used until `fresh_until`, and while the
    /// endpoint cannot answer until `stale_until` (Unix seconds).
    Introspected {
        answer: Arc<Introspected>,
        fresh_until: i64,
        stale_until: i64,
    },
}

/// A token as cached: what is known of it, the provider that judged it, and what it weighs.
#[derive(Clone)]
pub(super) struct Cached {
    pub entry: Entry,
    pub provider: u64,
    weight: u64,
}

/// What the cache knows a token by.
pub(super) type Key = [u8; 32];

/// Valid tokens, at most `entries` of them and `bytes` of memory.
pub(super) struct TokenCache {
    entries: Cache<Key, Cached, ByWeight>,
    /// The least an entry weighs: `bytes / entries`, so that the entries bound holds too.
    floor: u64,
}

/// Weighs each entry by the weight it carries (computed once, when it is made).
#[derive(Clone)]
struct ByWeight;

impl Weighter<Key, Cached> for ByWeight {
    fn weight(&self, _: &Key, cached: &Cached) -> u64 {
        cached.weight
    }
}

impl TokenCache {
    /// A cache of at most `entries` tokens holding at most `bytes`; None when either is 0
    /// (turned off).
    pub fn new(entries: usize, bytes: u64) -> Option<Self> {
        if entries == 0 || bytes == 0 {
            return None;
        }
        let floor = (bytes / entries as u64).max(1);
        // The number of entries it is sized for: those of the typical weight, capped.
        let typical = (bytes / TYPICAL_ENTRY_BYTES.max(floor)).max(1);
        let estimated = usize::try_from(typical).unwrap_or(entries).min(entries);
        Some(Self {
            entries: Cache::with_weighter(estimated, bytes, ByWeight),
            floor,
        })
    }

    /// The token `key` names, if cached.
    pub fn get(&self, key: &Key) -> Option<Cached> {
        self.entries.get(key)
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &Key) {
        self.entries.remove(key);
        self.record_weight();
    }

    /// Remembers `entry`, judged by `provider`; an entry heavier than a part of the cache
    /// holds is not remembered.
    pub fn insert(&self, key: Key, entry: Entry, provider: u64) {
        let held = match &entry {
            Entry::Verified { token, .. } => entry_bytes(token),
            Entry::Introspected { answer, .. } => match &**answer {
                Introspected::Active(token) => entry_bytes(token),
                Introspected::Refused(refusal) => {
                    (ENTRY_OVERHEAD + refusal.reason.capacity() + ALLOCATION) as u64
                }
            },
        };
        let weight = held.max(self.floor);
        self.entries.insert(
            key,
            Cached {
                entry,
                provider,
                weight,
            },
        );
        self.record_weight();
    }

    /// Tells the metrics what the entries weigh, when anyone can read them: summing the weight
    /// locks every shard of the cache in turn.
    fn record_weight(&self) {
        if metrics::enabled() {
            metrics::token_cache_bytes(self.entries.weight());
        }
    }

    /// The bytes its entries weigh now.
    #[cfg(test)]
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }

    /// Its entries now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What the cache knows `token` by: its SHA-256. Hashed with the low-level SHA-256 calls:
/// OpenSSL 3's one-shot `SHA256()` looks the digest up by name on every call, which cost more
/// than the hashing (a twentieth of a cached validation).
pub(super) fn key(token: &str) -> Key {
    let mut sha = openssl::sha::Sha256::new();
    sha.update(token.as_bytes());
    sha.finish()
}

/// What an entry of a token with a few short claims weighs (the cache is sized for them).
const TYPICAL_ENTRY_BYTES: u64 = 2048;

/// What the allocator adds to each allocation (its header, and rounding up).
const ALLOCATION: usize = 16;

/// The cache's own cost of an entry beside what the token holds: its place in the cache's
/// table (measured: about 128 bytes), the key, the entry, the shared token's allocation and
/// that of the claims' encoding.
const ENTRY_OVERHEAD: usize = 128
    + size_of::<Key>()
    + size_of::<Cached>()
    + 2 * size_of::<usize>()
    + size_of::<ValidToken>()
    + 2 * ALLOCATION;

/// The memory an entry for `token` holds, in bytes: the cache's own cost, the strings and lists
/// of the token, its claims as serde_json holds them, and the encoding of the claims that a
/// transport keeps beside them (made once, for every answer the entry gives), estimated from
/// above as a protobuf `Struct` of them.
pub(super) fn entry_bytes(token: &ValidToken) -> u64 {
    let strings = token.subject.capacity()
        + token.issuer.capacity()
        + token.token_id.capacity()
        + 3 * ALLOCATION
        + list_bytes(&token.audience)
        + list_bytes(&token.scopes);
    let claims = object_bytes(&token.claims);
    let total = ENTRY_OVERHEAD
        .saturating_add(strings)
        .saturating_add(claims.held)
        .saturating_add(claims.encoded);
    total as u64
}

fn list_bytes(list: &[String]) -> usize {
    list.iter()
        .fold(std::mem::size_of_val(list) + ALLOCATION, |sum, s| {
            sum.saturating_add(s.capacity() + ALLOCATION)
        })
}

/// What a claim holds beyond its own `Value`, and what its encoding takes.
#[derive(Clone, Copy, Default)]
struct Weight {
    held: usize,
    encoded: usize,
}

impl Weight {
    fn plus(self, other: Self) -> Self {
        Self {
            held: self.held.saturating_add(other.held),
            encoded: self.encoded.saturating_add(other.encoded),
        }
    }
}

/// A B-tree node of serde_json's map: 11 names and values, a parent and lengths.
const MAP_NODE_BYTES: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 16;

/// An object's nodes (at least one, about eight entries a node as B-trees fill them), names and
/// values; encoded, each field a map entry (tag, length, name, value: 8 bytes beside them).
fn object_bytes(object: &Map<String, Value>) -> Weight {
    let nodes = object.len().div_ceil(8).max(1);
    let own = Weight {
        held: nodes * (MAP_NODE_BYTES + ALLOCATION),
        encoded: 4,
    };
    object.iter().fold(own, |sum, (name, value)| {
        sum.plus(Weight {
            held: name.capacity() + ALLOCATION,
            encoded: 8 + name.len(),
        })
        .plus(value_bytes(value))
    })
}

/// A value's weight: a number encodes as 11 bytes (tag, length, a double's tag and 8 bytes),
/// null and booleans as 4, a string as its bytes and 6, a list as its items and 4 each. Claims
/// nest at most 128 deep (serde_json's limit when they were read), so the recursion is bounded.
fn value_bytes(value: &Value) -> Weight {
    match value {
        Value::Null | Value::Bool(_) => Weight {
            held: 0,
            encoded: 4,
        },
        Value::Number(_) => Weight {
            held: 0,
            encoded: 11,
        },
        Value::String(s) => Weight {
            held: s.capacity() + ALLOCATION,
            encoded: s.len() + 6,
        },
        Value::Array(items) => {
            let own = Weight {
                held: items.capacity() * size_of::<Value>() + ALLOCATION,
                encoded: 4,
            };
            items.iter().fold(own, |sum, item| {
                sum.plus(Weight {
                    held: 0,
                    encoded: 4,
                })
                .plus(value_bytes(item))
            })
        }
        Value::Object(object) => object_bytes(object).plus(Weight {
            held: 0,
            encoded: 4,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(claims: Value) -> Arc<ValidToken> {
        Arc::new(ValidToken {
            subject: "alice".to_owned(),
            issuer: "https://id.example".to_owned(),
            claims: claims.as_object().expect("an object").clone(),
            ..ValidToken::default()
        })
    }

    fn verified(token: &Arc<ValidToken>) -> Entry {
        Entry::Verified {
            token: Arc::clone(token),
            generation: 1,
        }
    }

    #[test]
    fn an_entry_weighs_what_its_claims_hold() {
        let small = entry_bytes(&token(json!({"sub": "alice", "iss": "https://id.example"})));
        assert!((600..3000).contains(&small), "{small}");
        // An 8 KiB token's claims of a long list of numbers: about 6,000 values.
        let numbers: Vec<u32> = vec![0; 6_000];
        let large = entry_bytes(&token(json!({"sub": "alice", "n": numbers})));
        // 32 bytes a value held, and at least 11 encoded.
        assert!(large > 6_000 * (32 + 11), "{large}");
        assert!(large < 6_000 * (32 + 20), "{large}");
    }

    #[test]
    fn the_cache_holds_no_more_bytes_than_its_bound_nor_more_entries() {
        let cache = TokenCache::new(1_000, 4 << 20).expect("on");
        let heavy = token(json!({"n": vec![0u32; 6_000]}));
        let each = entry_bytes(&heavy);
        for i in 0..200u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            cache.insert(key, verified(&heavy), 1);
        }
        assert!(cache.weight() <= 4 << 20, "{}", cache.weight());
        assert!((cache.len() as u64) <= (4 << 20) / each, "{}", cache.len());

        let light = token(json!({"sub": "a"}));
        let cache = TokenCache::new(100, 128 << 20).expect("on");
        for i in 0..1_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            cache.insert(key, verified(&light), 1);
        }
        assert!(cache.len() <= 100, "{}", cache.len());
    }

    #[test]
    fn zero_entries_or_zero_bytes_is_no_cache() {
        assert!(TokenCache::new(0, 1 << 20).is_none());
        assert!(TokenCache::new(10, 0).is_none());
    }
}
