//! [`TokenVerifier`]: a token's checks in order (shape, algorithm, key, signature, claims,
//! revocation), with valid results cached and revocations asked on every call.

use std::sync::Arc;

use futures::future::{self, BoxFuture, FutureExt as _};
use quick_cache::sync::Cache;

use super::claims::{self, Rules};
use super::keys::KeySet;
use super::source::{KeyReload, KeySource, Location};
use super::{
    jws, quoted, rfc3339, unix_now, Refusal, TokenConfig, TokenError, ValidToken, Verdict,
    MAX_TOKEN_BYTES, MAX_TOKEN_ID_BYTES,
};
use crate::metrics;
use crate::store::{RevocationStore, StoreError};

/// The answer for one token.
pub type Outcome = Result<Arc<ValidToken>, Refusal>;

/// What checking a token came to: an answer, or a key set load to wait for before asking again
/// with [`TokenVerifier::check_after_reload`] (the token names a kid that is not loaded).
pub enum Check {
    /// The answer.
    Done(Outcome),
    /// Wait for this, then ask again.
    AfterKeyReload(KeyReload),
}

/// A valid token as cached: what it says, and the key set that verified it.
#[derive(Clone)]
struct Cached {
    token: Arc<ValidToken>,
    generation: u64,
}

/// A revocation as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The token id is refused until this time (Unix seconds).
    Until(i64),
    /// The time given has passed: the token, expired, is refused anyway, so nothing is kept.
    AlreadyExpired(i64),
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

/// Validates tokens, in the server, against a key set that is kept loaded, accepted issuers and
/// audiences, and a revocation store. Shared by every call. (An app asks a server through
/// [`crate::client::TokenValidator`] instead.)
pub struct TokenVerifier {
    keys: KeySource,
    rules: Rules,
    /// Valid tokens by the SHA-256 of the token; None when turned off.
    cache: Option<Cache<[u8; 32], Cached>>,
    revocations: Arc<dyn RevocationStore>,
    max_revocation_seconds: i64,
}

impl TokenVerifier {
    /// Loads the key set `config` names and starts keeping it loaded; None when `config` names
    /// no key set. `on_ready` is called once the first key set is loaded (at once for a file).
    pub fn start(
        config: &TokenConfig,
        revocations: Arc<dyn RevocationStore>,
        on_ready: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Option<Self>, TokenError> {
        let location = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => Location::file(path),
            (None, Some(url)) => Location::url(url, config.jwks_ca_cert.as_deref())?,
            (None, None) => return Ok(None),
        };
        if config.token_issuer.is_empty() {
            return Err(TokenError(
                "--token-issuer is required with a key set: name the issuers whose tokens are \
                 accepted"
                    .to_owned(),
            ));
        }
        let keys = KeySource::start(location, config.jwks_refresh, on_ready)?;
        Ok(Some(Self {
            keys,
            rules: Rules {
                issuers: config.token_issuer.clone(),
                audiences: config.token_audience.clone(),
                leeway: i64::from(config.token_leeway),
            },
            cache: (config.token_cache > 0).then(|| Cache::new(config.token_cache)),
            revocations,
            max_revocation_seconds: config.revocation_max_ttl.as_secs() as i64,
        }))
    }

    /// Whether a key set is loaded, so tokens can be validated.
    pub fn ready(&self) -> bool {
        self.keys.ready()
    }

    /// Where the keys come from, for log lines.
    pub fn key_location(&self) -> String {
        self.keys.location()
    }

    /// Loads the key set again, in the background (SIGHUP).
    pub fn reload_keys(&self) {
        self.keys.reload();
    }

    /// Checks `token` now. A token naming a kid that is not loaded may ask for the key set to
    /// be loaded again; then the answer comes from [`TokenVerifier::check_after_reload`].
    pub fn check(&self, token: &str) -> Check {
        let check = self.check_at(token, unix_now(), true);
        if let Check::Done(outcome) = &check {
            count(outcome);
        }
        check
    }

    /// Checks `token` once the load [`Check::AfterKeyReload`] waited for is done.
    pub fn check_after_reload(&self, token: &str) -> Outcome {
        match self.check_at(token, unix_now(), false) {
            Check::Done(outcome) => {
                count(&outcome);
                outcome
            }
            Check::AfterKeyReload(_) => unreachable!("no reload is asked for"),
        }
    }

    fn check_at(&self, token: &str, now: i64, may_reload: bool) -> Check {
        if token.len() > MAX_TOKEN_BYTES {
            // Refused before hashing or caching anything about it.
            return Check::Done(Err(jws::too_long(token.len())));
        }
        let Some(keys) = self.keys.current() else {
            return Check::Done(Err(Refusal::new(
                Verdict::UnknownKey,
                "no signing keys have been loaded yet",
            )));
        };
        let digest = self
            .cache
            .as_ref()
            .map(|_| openssl::sha::sha256(token.as_bytes()));
        if let (Some(cache), Some(digest)) = (&self.cache, &digest) {
            let hit = cache
                .get(digest)
                .filter(|hit| hit.generation == keys.generation);
            metrics::token_cache(hit.is_some());
            if let Some(hit) = hit {
                if now > hit.token.expires_at.saturating_add(self.rules.leeway) {
                    cache.remove(digest);
                    return Check::Done(Err(claims::expired(hit.token.expires_at)));
                }
                return Check::Done(self.not_revoked(hit.token, now));
            }
        }
        let valid = match self.verify(token, &keys, now) {
            Ok(valid) => Arc::new(valid),
            Err(Unverified::Refused(refusal)) => return Check::Done(Err(refusal)),
            Err(Unverified::UnknownKid(refusal)) => {
                let reload = if may_reload {
                    self.keys.reload_for_unknown_kid()
                } else {
                    None
                };
                return match reload {
                    Some(reload) => Check::AfterKeyReload(reload),
                    None => Check::Done(Err(refusal)),
                };
            }
        };
        if let (Some(cache), Some(digest)) = (&self.cache, digest) {
            let cached = Cached {
                token: Arc::clone(&valid),
                generation: keys.generation,
            };
            cache.insert(digest, cached);
        }
        Check::Done(self.not_revoked(valid, now))
    }

    /// Everything but revocation: shape, algorithm, key, signature, claims.
    fn verify(&self, token: &str, keys: &KeySet, now: i64) -> Result<ValidToken, Unverified> {
        let jws = jws::parse(token)?;
        let key = keys.find(jws.kid.as_deref()).map_err(|why| match jws.kid {
            Some(_) => Unverified::UnknownKid(Refusal::new(Verdict::UnknownKey, why)),
            None => Unverified::Refused(Refusal::new(Verdict::UnknownKey, why)),
        })?;
        if !key.algorithms.contains(&jws.alg) {
            return Err(Unverified::Refused(Refusal::new(
                Verdict::UnsupportedAlgorithm,
                format!(
                    "{} is {}, which verifies {}, not {:?}",
                    key.name(),
                    key.key_type,
                    algorithm_list(&key.algorithms),
                    jws.alg
                ),
            )));
        }
        let verified = jsonwebtoken::crypto::verify(
            jws.signature,
            jws.signing_input.as_bytes(),
            &key.decoding,
            jws.alg,
        );
        match verified {
            Ok(true) => {}
            Ok(false) => {
                return Err(Unverified::Refused(Refusal::new(
                    Verdict::BadSignature,
                    format!("the signature does not verify with {}", key.name()),
                )))
            }
            Err(e) => {
                let refusal = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::Base64(_) => {
                        Refusal::new(Verdict::Malformed, "the token's signature is not base64url")
                    }
                    _ => Refusal::new(
                        Verdict::BadSignature,
                        format!("the signature cannot be checked with {}", key.name()),
                    ),
                };
                return Err(Unverified::Refused(refusal));
            }
        }
        Ok(claims::check(jws.payload, &self.rules, now)?)
    }

    fn not_revoked(&self, valid: Arc<ValidToken>, now: i64) -> Outcome {
        if !valid.token_id.is_empty() && self.revocations.is_revoked(&valid.token_id, now) {
            return Err(Refusal::new(
                Verdict::Revoked,
                format!(
                    "the token (jti {}) has been revoked",
                    quoted(&valid.token_id)
                ),
            ));
        }
        Ok(valid)
    }

    /// Refuses the token with id `token_id` until `expires_at` (Unix seconds; 0 for the
    /// longest this server keeps a revocation), from the next validation on. Resolves once the
    /// revocation is durable; a request that cannot be carried out resolves at once.
    pub fn revoke(
        &self,
        token_id: &str,
        expires_at: i64,
    ) -> BoxFuture<'static, Result<Revoked, RevokeError>> {
        let now = unix_now();
        let refused = |why: String| future::ready(Err(RevokeError::InvalidArgument(why))).boxed();
        if token_id.is_empty() {
            return refused("token_id is empty: give the jti of the token to revoke".to_owned());
        }
        if token_id.len() > MAX_TOKEN_ID_BYTES {
            return refused(format!(
                "token_id is {} bytes long; the limit is {MAX_TOKEN_ID_BYTES} bytes",
                token_id.len()
            ));
        }
        let longest = now.saturating_add(self.max_revocation_seconds);
        let until = match expires_at {
            0 => longest,
            at if at <= now => return future::ready(Ok(Revoked::AlreadyExpired(at))).boxed(),
            at if at > longest => {
                return refused(format!(
                    "expires_at {} is further away than this server keeps revocations ({} s, \
                     until {}); raise --revocation-max-ttl to revoke longer-lived tokens",
                    rfc3339(at),
                    self.max_revocation_seconds,
                    rfc3339(longest)
                ))
            }
            at => at,
        };
        self.revocations
            .revoke(token_id, until, now)
            .map(move |stored| {
                stored
                    .map(|()| Revoked::Until(until))
                    .map_err(RevokeError::Store)
            })
            .boxed()
    }
}

/// Why a token was not verified: refused, or naming a kid a key set load might bring.
enum Unverified {
    Refused(Refusal),
    UnknownKid(Refusal),
}

impl From<Refusal> for Unverified {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

/// Counts the verdict of a validation that is done.
fn count(outcome: &Outcome) {
    metrics::validation(match outcome {
        Ok(_) => Verdict::Valid.name(),
        Err(refusal) => refusal.verdict.name(),
    });
}

fn algorithm_list(algorithms: &[jsonwebtoken::Algorithm]) -> String {
    let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
    names.join("/")
}
