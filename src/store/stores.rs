//! The stores a server runs on ([`Stores`]), as a backend opens them, and why one could not be
//! opened ([`OpenError`]).

use std::fmt;
use std::sync::Arc;

use super::memory::{MemoryRevocations, MemoryStore};
use super::metered::{MeteredResources, MeteredRevocations};
use super::resources::ResourceStore;
use crate::availability::Availability;
use crate::tokens::RevocationStore;

/// The stores a server runs on, opened from [`super::StoreOptions`].
pub struct Stores {
    /// Resources.
    pub resources: Arc<dyn ResourceStore>,
    /// Revoked token ids.
    pub revocations: Arc<dyn RevocationStore>,
    /// Whether the database answers; always up for the memory and SQLite stores.
    pub availability: Availability,
    /// What the start-up line says about the store (never a password).
    pub description: String,
}

impl Stores {
    /// Both stores in memory, as the original kept them.
    pub fn memory(max_resources: usize, max_revocations: usize) -> Self {
        Self::memory_with(
            Arc::new(MemoryStore::with_limit(max_resources)),
            max_revocations,
        )
    }

    /// The same stores, each operation counted and timed for the metrics, and the database's
    /// availability shown there.
    pub fn metered(self) -> Self {
        self.availability.watch(crate::metrics::store_up);
        Self {
            resources: Arc::new(MeteredResources(self.resources)),
            revocations: Arc::new(MeteredRevocations(self.revocations)),
            ..self
        }
    }

    /// `resources` (a test double, say) with revocations in memory.
    pub fn memory_with(resources: Arc<dyn ResourceStore>, max_revocations: usize) -> Self {
        Self {
            resources,
            revocations: Arc::new(MemoryRevocations::with_limit(max_revocations)),
            availability: Availability::always_up(),
            description: "memory (nothing kept after exit)".to_owned(),
        }
    }
}

/// Why a store could not be opened; one line, never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError(pub String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}
