//! The revocation port: what token validation needs of wherever revoked token ids are kept. The
//! store implements it (in memory, SQLite, PostgreSQL); this domain knows none of them.

use std::fmt;

use futures::future::BoxFuture;

/// What storing a revocation resolves to: once it is durable, or why it is not.
pub type Stored = BoxFuture<'static, Result<(), RevocationError>>;

/// Revoked token ids (a JWT's `jti`), each refused until its own expiry. Asked on every token
/// validation, so a lookup must be cheap and must not scan the whole store: database backends
/// keep every unexpired revocation in memory too, and write through.
pub trait RevocationStore: Send + Sync {
    /// Refuses `token_id` until `expires_at` (Unix seconds); revoking an id again keeps the
    /// later expiry. `now` is the current time, for forgetting revocations that have expired.
    /// Resolves once the revocation is durable.
    fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Stored;
    /// Whether `token_id` is refused at `now`.
    fn is_revoked(&self, token_id: &str, now: i64) -> bool;
}

/// Why a revocation was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationError {
    /// As many unexpired revocations are held as may be.
    TooMany {
        /// The most revocations held.
        limit: usize,
    },
    /// The token id cannot be stored in this backend (PostgreSQL text cannot hold U+0000).
    Unstorable(String),
    /// The database did not answer or failed; nothing was kept.
    Unavailable {
        /// Which database, without credentials: `PostgreSQL at HOST:PORT/DB`.
        database: String,
        /// What went wrong, in the driver's words.
        reason: String,
    },
}

impl fmt::Display for RevocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany { limit } => write!(
                f,
                "the store holds its limit of {limit} unexpired revocations; each is forgotten \
                 at its expiry (--max-revocations raises the limit)"
            ),
            Self::Unstorable(why) => f.write_str(why),
            Self::Unavailable { database, reason } => write!(
                f,
                "the store is unavailable: {database}: {reason}; nothing was changed, try again"
            ),
        }
    }
}

impl std::error::Error for RevocationError {}
