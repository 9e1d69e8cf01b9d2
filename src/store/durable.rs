//! Revocations kept by a database through the group-commit writer, each unexpired one also in
//! memory, where every validation asks without touching the database.

use std::sync::Arc;

use futures::FutureExt as _;

use super::batch::Writer;
use super::memory::MemoryRevocations;
use crate::store_error::StoreError;
use crate::time::unix_now;
use crate::tokens::RevocationStore;
use crate::tokens::Stored;

/// Revocations kept by the writer's database, each unexpired one also in memory, where every
/// validation asks without touching the database.
pub(crate) struct DurableRevocations {
    in_memory: Arc<MemoryRevocations>,
    writer: Arc<Writer>,
    storable: fn(&str) -> Result<(), StoreError>,
}

impl DurableRevocations {
    /// Over `writer`, starting from the unexpired revocations the database holds; `storable`
    /// refuses token ids the database cannot hold.
    pub fn load(
        writer: Arc<Writer>,
        revoked: Vec<(String, i64)>,
        limit: usize,
        storable: fn(&str) -> Result<(), StoreError>,
    ) -> Self {
        let in_memory = Arc::new(MemoryRevocations::with_limit(limit));
        hold_all(&in_memory, revoked);
        Self {
            in_memory,
            writer,
            storable,
        }
    }

    /// The revocations enforced here, for adding those that other replicas store.
    pub fn in_memory(&self) -> Arc<MemoryRevocations> {
        Arc::clone(&self.in_memory)
    }
}

/// Enforces every revocation in `revoked` (token id, expiry) that has not expired, up to the
/// limit of `in_memory`; says so when some are left out.
pub(crate) fn hold_all(in_memory: &MemoryRevocations, revoked: Vec<(String, i64)>) {
    let now = unix_now();
    let stored = revoked.len();
    for (token_id, expires_at) in revoked {
        if let Err(e) = in_memory.hold(&token_id, expires_at, now) {
            log::warn!(
                "the store holds {stored} unexpired revocations, more than this server keeps \
                 ({e}); some are not enforced"
            );
            break;
        }
    }
}

impl RevocationStore for DurableRevocations {
    fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Stored {
        // Memory first, which enforces the limit. When the database then fails, the revocation
        // still holds here until a restart: refusing a token is the safe side to err on.
        let held =
            (self.storable)(token_id).and_then(|()| self.in_memory.hold(token_id, expires_at, now));
        if let Err(e) = held {
            return futures::future::ready(Err(e)).boxed();
        }
        self.writer.revoke(token_id, expires_at, now)
    }

    fn is_revoked(&self, token_id: &str, now: i64) -> bool {
        self.in_memory.holds(token_id, now)
    }
}
