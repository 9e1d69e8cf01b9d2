//! [`TokenVerifier`]: a token's checks in order (shape, algorithm, key, signature, claims,
//! revocation), with valid results cached and revocations asked on every call.

use std::sync::Arc;

use futures::future::{self, BoxFuture, FutureExt as _};
use quick_cache::sync::Cache;

use super::claims::{self, Rules};
use super::keys::KeySet;
use super::source::{KeyReload, KeySource, Location};
use super::{
    jws, KeysFrom, Refusal, RevocationError, RevocationStore, TokenError, TokenOptions, ValidToken,
    Verdict, MAX_TOKEN_BYTES, MAX_TOKEN_ID_BYTES,
};
use crate::availability::Availability;
use crate::metrics;
use crate::quote::quoted;
use crate::time::{rfc3339, unix_now};

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
    Store(RevocationError),
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
/// the client's `TokenValidator` instead.)
pub struct TokenVerifier {
    keys: KeySource,
    rules: Rules,
    /// Valid tokens by the SHA-256 of the token; None when turned off.
    cache: Option<Cache<[u8; 32], Cached>>,
    revocations: Arc<dyn RevocationStore>,
    max_revocation_seconds: i64,
}

impl TokenVerifier {
    /// Loads the key set `options` names and starts keeping it loaded; None when `options`
    /// names no key set. [`TokenVerifier::keys_loaded`] turns up once the first key set is in
    /// (at once for a file).
    pub fn start(
        options: &TokenOptions,
        revocations: Arc<dyn RevocationStore>,
    ) -> Result<Option<Self>, TokenError> {
        let location = match &options.keys {
            Some(KeysFrom::File(path)) => Location::file(path),
            Some(KeysFrom::Url { url, ca_cert }) => Location::url(url, ca_cert.as_deref())?,
            None => return Ok(None),
        };
        if let Some(problem) = options.problems().into_iter().next() {
            return Err(TokenError(problem));
        }
        let keys = KeySource::start(location, options.jwks_refresh)?;
        Ok(Some(Self {
            keys,
            rules: Rules {
                issuers: options.issuers.clone(),
                audiences: options.audiences.clone(),
                leeway: i64::from(options.leeway_seconds),
            },
            cache: (options.cache_entries > 0).then(|| Cache::new(options.cache_entries)),
            revocations,
            max_revocation_seconds: i64::try_from(options.revocation_max_ttl.as_secs())
                .unwrap_or(i64::MAX),
        }))
    }

    /// Whether a key set is loaded, so tokens can be validated.
    pub fn ready(&self) -> bool {
        // Asked on every call: an atomic load, not a clone of the shared flag.
        self.keys.is_loaded()
    }

    /// Whether a key set has loaded, and who to tell when it first does: what the readiness of
    /// the APIs that validate tokens depends on.
    pub fn keys_loaded(&self) -> Availability {
        self.keys.loaded()
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use futures::future::{self, FutureExt as _};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use openssl::pkey::PKey;
    use serde_json::{json, Value};

    use super::*;
    use crate::tokens::Stored;

    const ISSUER: &str = "https://id.example";
    const LEEWAY: i64 = 30;

    /// Revocations in a map: the port, without a store.
    #[derive(Default)]
    struct Revocations(Mutex<HashMap<String, i64>>);

    impl RevocationStore for Revocations {
        fn revoke(&self, token_id: &str, expires_at: i64, _: i64) -> Stored {
            let mut held = self.0.lock().expect("unpoisoned");
            held.insert(token_id.to_owned(), expires_at);
            future::ready(Ok(())).boxed()
        }

        fn is_revoked(&self, token_id: &str, now: i64) -> bool {
            let held = self.0.lock().expect("unpoisoned");
            held.get(token_id).is_some_and(|until| *until > now)
        }
    }

    /// A verifier of one Ed25519 key, and what signs with it.
    struct Fixture {
        verifier: TokenVerifier,
        signer: EncodingKey,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(cache_entries: usize) -> Self {
            let key = PKey::generate_ed25519().expect("an Ed25519 key");
            let raw = key.raw_public_key().expect("its public half");
            let jwks = json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "kid": "k", "x": URL_SAFE_NO_PAD.encode(raw)
            }]});
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("jwks.json");
            std::fs::write(&path, jwks.to_string()).expect("write the key set");
            let options = TokenOptions {
                keys: Some(KeysFrom::File(path)),
                issuers: vec![ISSUER.to_owned()],
                leeway_seconds: LEEWAY as u32,
                cache_entries,
                ..TokenOptions::default()
            };
            let verifier = TokenVerifier::start(&options, Arc::new(Revocations::default()))
                .expect("starts")
                .expect("a key set is configured");
            let pkcs8 = key.private_key_to_pkcs8().expect("PKCS#8");
            Self {
                verifier,
                signer: EncodingKey::from_ed_der(&pkcs8),
                _dir: dir,
            }
        }

        fn token(&self, claims: Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some("k".to_owned());
            jsonwebtoken::encode(&header, &claims, &self.signer).expect("signs")
        }

        /// The verdict for `token` at `now`.
        fn verdict_at(&self, token: &str, now: i64) -> Verdict {
            match self.verifier.check_at(token, now, false) {
                Check::Done(Ok(_)) => Verdict::Valid,
                Check::Done(Err(refusal)) => refusal.verdict,
                Check::AfterKeyReload(_) => panic!("no reload was allowed"),
            }
        }
    }

    #[test]
    fn a_token_is_valid_until_its_expiry_plus_the_leeway_and_not_a_second_longer() {
        for cache in [0, 100] {
            let fixture = Fixture::new(cache);
            let token = fixture.token(json!({"iss": ISSUER, "exp": 1_000}));
            assert_eq!(
                fixture.verdict_at(&token, 1_000),
                Verdict::Valid,
                "cache {cache}"
            );
            assert_eq!(fixture.verdict_at(&token, 1_000 + LEEWAY), Verdict::Valid);
            // A cached answer must not outlive the token either.
            assert_eq!(
                fixture.verdict_at(&token, 1_000 + LEEWAY + 1),
                Verdict::Expired,
                "cache {cache}"
            );
        }
    }

    #[test]
    fn a_token_is_valid_from_its_not_before_less_the_leeway() {
        let fixture = Fixture::new(0);
        let token = fixture.token(json!({"iss": ISSUER, "exp": 9_000, "nbf": 2_000}));
        assert_eq!(
            fixture.verdict_at(&token, 2_000 - LEEWAY - 1),
            Verdict::NotYetValid
        );
        assert_eq!(fixture.verdict_at(&token, 2_000 - LEEWAY), Verdict::Valid);
        assert_eq!(fixture.verdict_at(&token, 2_000), Verdict::Valid);
    }

    #[test]
    fn times_at_either_end_of_the_range_neither_overflow_nor_pass() {
        let fixture = Fixture::new(100);
        let forever = fixture.token(json!({"iss": ISSUER, "exp": i64::MAX}));
        assert_eq!(fixture.verdict_at(&forever, i64::MAX), Verdict::Valid);
        let long_ago = fixture.token(json!({"iss": ISSUER, "exp": i64::MIN}));
        assert_eq!(fixture.verdict_at(&long_ago, 0), Verdict::Expired);
        let never = fixture.token(json!({"iss": ISSUER, "exp": i64::MAX, "nbf": i64::MAX}));
        assert_eq!(fixture.verdict_at(&never, 0), Verdict::NotYetValid);
    }

    #[test]
    fn a_revocation_is_asked_on_every_check_even_of_a_cached_token() {
        let fixture = Fixture::new(100);
        let now = unix_now();
        let token = fixture.token(json!({"iss": ISSUER, "exp": now + 3_600, "jti": "t-1"}));
        assert_eq!(fixture.verdict_at(&token, now), Verdict::Valid);
        let revoked = futures::executor::block_on(fixture.verifier.revoke("t-1", now + 60));
        assert_eq!(revoked, Ok(Revoked::Until(now + 60)));
        assert_eq!(
            fixture.verdict_at(&token, now),
            Verdict::Revoked,
            "the cache hides nothing"
        );
        assert_eq!(
            fixture.verdict_at(&token, now + 60),
            Verdict::Valid,
            "until it runs out"
        );
    }

    #[test]
    fn a_token_for_another_issuer_is_refused_even_when_its_key_verifies() {
        let fixture = Fixture::new(0);
        let token = fixture.token(json!({"iss": "https://elsewhere.example", "exp": 9_000}));
        assert_eq!(fixture.verdict_at(&token, 1_000), Verdict::WrongIssuer);
    }
}
