//! Why a store refused or could not carry out a call: one error for both ports a store
//! implements (the resource port of `store`, the revocation port of `tokens`), below both so
//! that each names it and neither imports the other.

use std::fmt;

/// Why a store refused or could not carry out a call. Callers branch on [`StoreError::kind`];
/// its `Display` is one sentence for the caller, never a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(Box<StoreErrorKind>);

/// What went wrong, for callers to match on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store holds as many of what the call would add as it may.
    Full {
        /// What it holds its limit of.
        held: Held,
        /// The most it holds.
        limit: usize,
    },
    /// The value cannot be stored in this backend (PostgreSQL text cannot hold U+0000).
    Unstorable {
        /// Which value, and why, in one sentence.
        reason: String,
    },
    /// The database did not answer or failed; nothing of the call was kept.
    Unavailable {
        /// Which database, without credentials: `PostgreSQL at HOST:PORT/DB`.
        database: String,
        /// What went wrong, in the driver's words.
        reason: String,
    },
}

/// What a full store holds its limit of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Resources (`--max-resources`).
    Resources,
    /// Unexpired revocations (`--max-revocations`).
    Revocations,
}

impl StoreError {
    /// The store holds its `limit` of `held`.
    pub fn full(held: Held, limit: usize) -> Self {
        StoreErrorKind::Full { held, limit }.into()
    }

    /// A value this backend cannot store, and why.
    pub fn unstorable(reason: impl Into<String>) -> Self {
        StoreErrorKind::Unstorable {
            reason: reason.into(),
        }
        .into()
    }

    /// `database` did not answer or failed, for `reason`.
    pub fn unavailable(database: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreErrorKind::Unavailable {
            database: database.into(),
            reason: reason.into(),
        }
        .into()
    }

    /// What went wrong.
    pub fn kind(&self) -> &StoreErrorKind {
        &self.0
    }
}

impl From<StoreErrorKind> for StoreError {
    fn from(kind: StoreErrorKind) -> Self {
        Self(Box::new(kind))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            StoreErrorKind::Full {
                held: Held::Resources,
                limit,
            } => write!(
                f,
                "the store holds its limit of {limit} resources; remove some before creating more"
            ),
            StoreErrorKind::Full {
                held: Held::Revocations,
                limit,
            } => write!(
                f,
                "the store holds its limit of {limit} unexpired revocations; each is forgotten \
                 at its expiry (--max-revocations raises the limit)"
            ),
            StoreErrorKind::Unstorable { reason } => f.write_str(reason),
            StoreErrorKind::Unavailable { database, reason } => write!(
                f,
                "the store is unavailable: {database}: {reason}; nothing was changed, try again"
            ),
        }
    }
}

impl std::error::Error for StoreError {}
