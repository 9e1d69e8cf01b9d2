//! The revocation port: what token validation needs of wherever revoked token ids are kept. The
//! store implements it (in memory, SQLite, PostgreSQL); this domain knows none of them.

use futures::future::BoxFuture;

use super::MAX_TOKEN_ID_BYTES;
use crate::store_error::StoreError;
use crate::time::rfc3339;

/// What storing a revocation resolves to: once it is durable, or why it is not.
pub type Stored = BoxFuture<'static, Result<(), StoreError>>;

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

/// A revocation as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The token id is refused until this time (Unix seconds).
    Until(i64),
}

/// Why a revocation was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeError {
    /// The request cannot be carried out as asked; the message says why.
    InvalidArgument(String),
    /// The store refused it.
    Store(StoreError),
}

impl std::fmt::Display for RevokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidArgument(why) => f.write_str(why),
            Self::Store(e) => e.fmt(f),
        }
    }
}

/// Until when `token_id` is refused when revoked with `expires_at` at `now`: `expires_at` (0:
/// the longest this server keeps a revocation, `max_revocation_seconds`), or why the request
/// cannot be carried out.
pub(super) fn revocation_until(
    token_id: &str,
    expires_at: i64,
    now: i64,
    max_revocation_seconds: i64,
) -> Result<i64, RevokeError> {
    let refused = |why: String| Err(RevokeError::InvalidArgument(why));
    if token_id.is_empty() {
        return refused("token_id is empty: give the jti of the token to revoke".to_owned());
    }
    if token_id.len() > MAX_TOKEN_ID_BYTES {
        return refused(format!(
            "token_id is {} bytes long; the limit is {MAX_TOKEN_ID_BYTES} bytes",
            token_id.len()
        ));
    }
    let longest = now.saturating_add(max_revocation_seconds);
    let until = match expires_at {
        0 => longest,
        // Never "done" for a revocation that would not take effect: the token's real `exp`
        // may be hours away, and an admin who sent the wrong time must be told.
        at if at <= now => {
            return refused(format!(
                "expires_at {} has passed, so the revocation would not take effect: send the \
                     token's exp, or 0 to keep it for as long as this server keeps revocations",
                rfc3339(at)
            ))
        }
        at if at > longest => {
            return refused(format!(
                "expires_at {} is further away than this server keeps revocations ({} s, \
                     until {}); raise --revocation-max-ttl to revoke longer-lived tokens",
                rfc3339(at),
                max_revocation_seconds,
                rfc3339(longest)
            ))
        }
        at => at,
    };
    Ok(until)
}
