//! A store that counts and times what another store does, for the metrics: every operation by
//! kind and outcome, and its latency. Wraps any backend, so none of them knows about metrics.

use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt as _;

use futures::future::BoxFuture;

use super::resources::{Changed, Created, PageQuery, Pending, Resource, ResourceStore};
use crate::metrics;
use crate::store_error::{StoreError, StoreErrorKind};
use crate::tokens::RevocationStore;
use crate::tokens::Stored;

/// The outcome label of a store's refusal.
fn label(error: &StoreError) -> &'static str {
    match error.kind() {
        StoreErrorKind::Full { .. } => "full",
        StoreErrorKind::Unstorable { .. } => "unstorable",
        StoreErrorKind::Unavailable { .. } => "unavailable",
    }
}

/// Counts and times `pending` as `operation`, its outcome named by `outcome` when it succeeds.
fn metered<T: Send + 'static>(
    operation: &'static str,
    pending: BoxFuture<'static, Result<T, StoreError>>,
    outcome: fn(&T) -> &'static str,
) -> BoxFuture<'static, Result<T, StoreError>> {
    let started = Instant::now();
    pending
        .map(move |result| {
            let label = match &result {
                Ok(value) => outcome(value),
                Err(e) => label(e),
            };
            metrics::store_operation(operation, label, started.elapsed().as_secs_f64());
            result
        })
        .boxed()
}

fn ok<T>(_: &T) -> &'static str {
    "ok"
}

fn changed<T>(changed: &Changed<T>) -> &'static str {
    match changed {
        Changed::Done(_) => "ok",
        Changed::Missing => "not_found",
        Changed::Stale { .. } => "stale",
    }
}

/// A resource store whose every operation is counted and timed.
pub struct MeteredResources(pub Arc<dyn ResourceStore>);

impl ResourceStore for MeteredResources {
    fn list(&self) -> Pending<Vec<Resource>> {
        metered("list", self.0.list(), ok)
    }

    fn page(&self, query: PageQuery) -> Pending<Vec<Resource>> {
        metered("page", self.0.page(query), ok)
    }

    fn get(&self, id: u64) -> Pending<Option<Resource>> {
        metered("get", self.0.get(id), |found| match found {
            Some(_) => "ok",
            None => "not_found",
        })
    }

    fn create_once(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Pending<Created> {
        metered(
            "create",
            self.0.create_once(request_id, owner_id, name),
            |created| match created {
                Created::Done(_) => "ok",
                Created::Conflict(_) => "conflict",
            },
        )
    }

    fn update(&self, id: u64, name: String, expected: Option<u64>) -> Pending<Changed<Resource>> {
        metered("update", self.0.update(id, name, expected), changed)
    }

    fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>> {
        metered("delete", self.0.delete(id, expected), changed)
    }
}

/// A revocation store whose revocations are counted and timed (lookups are in memory, on every
/// validation, and are not).
pub struct MeteredRevocations(pub Arc<dyn RevocationStore>);

impl RevocationStore for MeteredRevocations {
    fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Stored {
        metered("revoke", self.0.revoke(token_id, expires_at, now), ok)
    }

    fn is_revoked(&self, token_id: &str, now: i64) -> bool {
        self.0.is_revoked(token_id, now)
    }
}
