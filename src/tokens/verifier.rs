//! [`TokenVerifier`]: a token's checks in order (shape, algorithm, key, signature, claims,
//! revocation), with valid results cached and revocations asked on every call.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::future::{self, BoxFuture, FutureExt as _};

use super::binding::{Binding, Presentation};
use super::cache::{self, Entry, TokenCache};
use super::claims;
use super::introspection::{Introspected, Judged, Remember};
use super::options::is_token_byte;
use super::providers::{Provider, Providers, ProvidersChanged};
use super::revocations::{revocation_until, RevokeError, Revoked};
use super::source::KeyReload;
use super::{
    jws, ProviderOptions, Refusal, RevocationStore, TokenError, TokenOptions, ValidToken, Verdict,
    MAX_TOKEN_BYTES,
};
use crate::availability::Availability;
use crate::eventually::Eventually;
use crate::metrics;
use crate::quote::quoted;
use crate::time::unix_now;

/// The answer for one token.
pub type Outcome = Result<Arc<ValidToken>, Refusal>;

/// What checking a token came to: an answer, or a key set load to wait for before asking again
/// (the token names a kid that is not loaded).
enum Check {
    /// The answer.
    Done(Outcome),
    /// Wait for this, then ask again.
    AfterKeyReload(KeyReload),
    /// Wait for the provider's introspection answer, then judge it.
    AfterIntrospection(BoxFuture<'static, Judged>, Arc<Provider>, cache::Key),
}

/// Validates tokens, in the server, each only with the keys of the identity provider its `iss`
/// names, against that provider's audiences, and a revocation store. Shared by every call. (An
/// app asks a server through the client's `TokenValidator` instead.)
pub struct TokenVerifier {
    providers: RwLock<Providers>,
    refresh: Duration,
    /// Up once any provider's keys have loaded.
    any_loaded: Availability,
    /// Valid tokens by the SHA-256 of the token; None when turned off.
    cache: Option<Arc<TokenCache>>,
    revocations: Arc<dyn RevocationStore>,
    max_revocation_seconds: i64,
    /// Holds bound tokens (`cnf`) to the request that presents them.
    binding: Binding,
}

impl TokenVerifier {
    /// Starts each provider `options` names (their keys loading); None when it names none.
    /// [`TokenVerifier::keys_loaded`] turns up once one provider's keys are in (at once for a
    /// file).
    pub fn start(
        options: &TokenOptions,
        revocations: Arc<dyn RevocationStore>,
    ) -> Result<Option<Self>, TokenError> {
        if !options.enabled() {
            return Ok(None);
        }
        if let Some(problem) = options.problems().into_iter().next() {
            return Err(TokenError(problem));
        }
        let verifier = Self {
            providers: RwLock::default(),
            refresh: options.jwks_refresh,
            any_loaded: Availability::down(),
            cache: TokenCache::new(options.cache_entries, options.cache_bytes).map(Arc::new),
            revocations,
            max_revocation_seconds: i64::try_from(options.revocation_max_ttl.as_secs())
                .unwrap_or(i64::MAX),
            binding: Binding::start(&options.dpop)?,
        };
        let mut providers = Providers::new();
        for provider in &options.providers {
            verifier.add(&mut providers, Provider::start(provider, verifier.refresh)?);
        }
        *verifier.providers_mut() = providers;
        Ok(Some(verifier))
    }

    fn add(&self, providers: &mut Providers, provider: Provider) {
        let any = self.any_loaded.clone();
        match &provider.keys {
            Some(keys) => keys.loaded().watch(move |up| {
                if up {
                    any.set(true);
                }
            }),
            // Only introspected: ready now (an endpoint that is down answers UNAVAILABLE).
            None => any.set(true),
        }
        providers.insert(provider.options.issuer.clone(), Arc::new(provider));
    }

    fn providers(&self) -> RwLockReadGuard<'_, Providers> {
        // Replaced whole under the lock: consistent even after a panic.
        self.providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn providers_mut(&self) -> RwLockWriteGuard<'_, Providers> {
        self.providers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `wanted` in place of the providers now (a providers file read again): a provider
    /// whose settings are unchanged keeps its keys; a new or changed one starts loading; one no
    /// longer wanted stops. A provider that cannot start is left out and named in `failed`.
    pub fn replace_providers(&self, wanted: &[ProviderOptions]) -> ProvidersChanged {
        let mut changed = ProvidersChanged::default();
        let old = self.providers().clone();
        let mut next = Providers::new();
        for options in wanted {
            match old.get(&options.issuer) {
                Some(kept) if kept.options == *options => {
                    if let Some(introspection) = &kept.introspection {
                        introspection.reload_secret();
                    }
                    next.insert(options.issuer.clone(), Arc::clone(kept));
                    continue;
                }
                Some(_) => changed.changed.push(options.issuer.clone()),
                None => changed.added.push(options.issuer.clone()),
            }
            match Provider::start(options, self.refresh) {
                Ok(provider) => self.add(&mut next, provider),
                Err(e) => changed.failed.push(e.to_string()),
            }
        }
        changed.removed = old
            .keys()
            .filter(|issuer| !next.contains_key(*issuer))
            .cloned()
            .collect();
        for issuer in &changed.removed {
            crate::metrics::forget_key_set(issuer);
        }
        let any = next.values().any(|provider| provider.is_ready());
        *self.providers_mut() = next;
        self.any_loaded.set(any);
        changed
    }

    /// Whether some provider's keys are loaded, so tokens can be validated.
    pub fn ready(&self) -> bool {
        // Asked on every call: an atomic load, not a clone of the shared flag.
        self.any_loaded.is_up()
    }

    /// Whether some provider's keys have loaded, and who to tell when that changes: what the
    /// readiness of the APIs that validate tokens depends on.
    pub fn keys_loaded(&self) -> Availability {
        self.any_loaded.clone()
    }

    /// Each provider's issuer and how its keys are found, sorted by issuer, for log lines.
    pub fn describe_providers(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .providers()
            .values()
            .map(|p| format!("{} ({})", p.options.issuer, p.options.keys_description()))
            .collect();
        lines.sort();
        lines
    }

    /// Loads every provider's keys again, in the background (SIGHUP).
    pub fn reload_keys(&self) {
        for provider in self.providers().values() {
            if let Some(keys) = &provider.keys {
                keys.reload();
            }
        }
    }

    /// Checks `token` as `presented`: valid ([`Self::check`]) and, when it is bound to a key or
    /// certificate (`cnf`), proven by the request; the outcome now or later, as `check`'s.
    pub fn check_presented(
        self: &Arc<Self>,
        token: &str,
        presented: Presentation,
    ) -> Eventually<Outcome> {
        match self.check(token) {
            Eventually::Now(outcome) => Eventually::Now(self.bound(outcome, token, &presented)),
            later => {
                let (verifier, token) = (Arc::clone(self), token.to_owned());
                later.map(move |outcome| verifier.bound(outcome, &token, &presented))
            }
        }
    }

    /// `outcome`, held to the binding of its token (`token`) as `presented`; a refusal of a
    /// token sent with the DPoP scheme, or bound to a key, answered with a DPoP challenge.
    fn bound(&self, outcome: Outcome, token: &str, presented: &Presentation) -> Outcome {
        let valid = match outcome {
            Ok(valid) => valid,
            Err(refusal) if refusal.dpop.is_none() && presented.dpop.is_none() => {
                // A Bearer request's refusal of the token itself: Bearer's challenge, as before.
                return Err(refusal);
            }
            Err(refusal) => {
                return Err(self
                    .binding
                    .challenged(refusal, presented, false, unix_now()))
            }
        };
        let (kind, key_bound) = match valid.claims.get("cnf") {
            None if presented.dpop.is_none() => return Ok(valid),
            None => ("none", false),
            Some(cnf) if cnf.get("jkt").is_some() => ("dpop", true),
            Some(_) => ("certificate", false),
        };
        let now = unix_now();
        let checked = self
            .binding
            .check(&valid, &cache::key(token), presented, now);
        metrics::bound_token(
            kind,
            match &checked {
                Ok(()) => Verdict::Valid.name(),
                Err(refusal) => refusal.verdict.name(),
            },
        );
        match checked {
            Ok(()) => Ok(valid),
            Err(refusal) => Err(self.binding.challenged(refusal, presented, key_bound, now)),
        }
    }

    /// The algorithms DPoP proofs may use, as a challenge's `algs` names them.
    pub fn dpop_algs(&self) -> &str {
        self.binding.algs()
    }

    /// The DPoP nonce to give a client now, when nonces are on.
    pub fn dpop_nonce(&self) -> Option<String> {
        self.binding.nonce(unix_now())
    }

    /// DPoP proofs remembered against replay now.
    pub fn dpop_proofs_remembered(&self) -> usize {
        self.binding.remembered()
    }

    /// Checks `token`: the outcome now, or, for a token naming a kid its provider's set lacks,
    /// once that provider's keys have loaded again (at most one such load per 30 s a provider).
    pub fn check(self: &Arc<Self>, token: &str) -> Eventually<Outcome> {
        match self.check_at(token, unix_now(), true) {
            Check::Done(outcome) => {
                count(&outcome);
                Eventually::Now(outcome)
            }
            Check::AfterKeyReload(reload) => {
                let (verifier, token) = (Arc::clone(self), token.to_owned());
                Eventually::Later(
                    async move {
                        reload.await;
                        verifier.check_after_reload(&token)
                    }
                    .boxed(),
                )
            }
            Check::AfterIntrospection(asked, provider, digest) => {
                let verifier = Arc::clone(self);
                Eventually::Later(
                    async move {
                        let judged = asked.await;
                        let outcome =
                            verifier.after_introspection(judged, &provider, &digest, unix_now());
                        count(&outcome);
                        outcome
                    }
                    .boxed(),
                )
            }
        }
    }

    /// The outcome of an introspection `judged` of the token `digest` names (cached already, by
    /// [`remember_answer`]), and when the endpoint could not answer, a stale answer while it may
    /// be used.
    fn after_introspection(
        &self,
        judged: Judged,
        provider: &Provider,
        digest: &cache::Key,
        now: i64,
    ) -> Outcome {
        // Asked before the question too; again for a revocation made while it was out.
        if let Some(refused) = self.token_revoked(digest, now) {
            return Err(refused);
        }
        match judged {
            Ok(answer) => self.judge_answer(&answer, provider, now),
            Err(cannot) => {
                let stale = self.cache.as_ref().and_then(|cache| {
                    let hit = cache
                        .get(digest)
                        .filter(|hit| hit.provider == provider.id)?;
                    match hit.entry {
                        Entry::Introspected {
                            answer,
                            stale_until,
                            ..
                        } if now < stale_until => Some(answer),
                        _ => None,
                    }
                });
                match stale {
                    Some(answer) => {
                        metrics::introspection_stale(&provider.options.issuer);
                        self.judge_answer(&answer, provider, now)
                    }
                    None => Err(cannot),
                }
            }
        }
    }

    /// The outcome of `provider`'s introspection `answer` at `now`: refused as it says, or
    /// valid unless past its `exp` or its `jti` revoked (the token itself is asked before).
    fn judge_answer(&self, answer: &Introspected, provider: &Provider, now: i64) -> Outcome {
        match answer {
            Introspected::Refused(refusal) => Err(refusal.clone()),
            Introspected::Active(valid) => {
                let has_exp = valid.claims.contains_key("exp");
                if has_exp && now > valid.expires_at.saturating_add(provider.rules.leeway) {
                    return Err(claims::expired(valid.expires_at));
                }
                self.jti_not_revoked(Arc::clone(valid), now)
            }
        }
    }

    /// Checks `token` once the load [`Check::AfterKeyReload`] waited for is done.
    fn check_after_reload(&self, token: &str) -> Outcome {
        match self.check_at(token, unix_now(), false) {
            Check::Done(outcome) => {
                count(&outcome);
                outcome
            }
            Check::AfterKeyReload(_) | Check::AfterIntrospection(..) => {
                unreachable!("no reload is asked for, and a token's kind does not change")
            }
        }
    }

    fn check_at(&self, token: &str, now: i64, may_reload: bool) -> Check {
        if token.len() > MAX_TOKEN_BYTES {
            // Refused before hashing or caching anything about it.
            return Check::Done(Err(jws::too_long(token.len())));
        }
        let providers = self.providers();
        if !jws::is_compact(token) {
            if let Some(found) = introspecting_provider(&providers, token) {
                return match found {
                    Ok(provider) => self.check_opaque(token, provider, now),
                    Err(refusal) => Check::Done(Err(refusal)),
                };
            }
        }
        let digest = cache::key(token);
        if let Some(cache) = &self.cache {
            let hit = cache.get(&digest).and_then(|hit| {
                let Entry::Verified { token, generation } = hit.entry else {
                    return None;
                };
                let provider = providers.get(&token.issuer)?;
                let current = provider.id == hit.provider
                    && provider.keys.as_ref().map(|k| k.generation()) == Some(generation);
                current.then(|| (token, provider.rules.leeway))
            });
            metrics::token_cache(hit.is_some());
            if let Some((token, leeway)) = hit {
                if now > token.expires_at.saturating_add(leeway) {
                    cache.remove(&digest);
                    return Check::Done(Err(claims::expired(token.expires_at)));
                }
                return Check::Done(self.not_revoked(token, now, &digest));
            }
        }
        let (valid, provider, generation) = match verify(token, &providers, now) {
            Ok(verified) => verified,
            Err(Unverified::Refused(refusal)) => return Check::Done(Err(refusal)),
            Err(Unverified::UnknownKid(refusal, provider)) => {
                let reload = if may_reload {
                    provider
                        .keys
                        .as_ref()
                        .and_then(super::source::KeySource::reload_for_unknown_kid)
                } else {
                    None
                };
                return match reload {
                    Some(reload) => Check::AfterKeyReload(reload),
                    None => Check::Done(Err(refusal)),
                };
            }
        };
        let valid = Arc::new(valid);
        if let Some(cache) = &self.cache {
            let entry = Entry::Verified {
                token: Arc::clone(&valid),
                generation,
            };
            cache.insert(digest, entry, provider);
        }
        Check::Done(self.not_revoked(valid, now, &digest))
    }

    /// Checks a token that is not a JWT, which `provider` introspects: its cached answer while
    /// fresh, else a question to the provider.
    fn check_opaque(&self, token: &str, provider: Arc<Provider>, now: i64) -> Check {
        let shaped = token.trim_end_matches('=');
        if shaped.is_empty() || !shaped.bytes().all(is_token_byte) {
            // Never sent: no provider issues such a token, so it is no question for one.
            return Check::Done(Err(Refusal::new(
                Verdict::Malformed,
                "the token is neither a JWT nor an opaque bearer token (RFC 6750: letters, \
                 digits, -._~+/ and = at the end)",
            )));
        }
        let digest = cache::key(token);
        if let Some(refused) = self.token_revoked(&digest, now) {
            // Refused before its cached answer is read or its provider asked: a revoked token
            // costs the provider nothing.
            return Check::Done(Err(refused));
        }
        if let Some(cache) = &self.cache {
            let fresh = cache.get(&digest).and_then(|hit| match hit.entry {
                Entry::Introspected {
                    answer,
                    fresh_until,
                    ..
                } if hit.provider == provider.id && now < fresh_until => Some(answer),
                _ => None,
            });
            metrics::token_cache(fresh.is_some());
            if let Some(answer) = fresh {
                return Check::Done(self.judge_answer(&answer, &provider, now));
            }
        }
        let introspection = provider.introspection.as_ref().expect("it introspects");
        let remember = remember_answer(self.cache.as_ref(), &provider, digest);
        let asked = introspection.ask(digest, token, remember);
        Check::AfterIntrospection(asked, provider, digest)
    }

    /// `valid`, unless its `jti` or the token itself (by `digest`) has been revoked.
    fn not_revoked(&self, valid: Arc<ValidToken>, now: i64, digest: &cache::Key) -> Outcome {
        match self.token_revoked(digest, now) {
            Some(refusal) => Err(refusal),
            None => self.jti_not_revoked(valid, now),
        }
    }

    /// `valid`, unless its `jti` has been revoked.
    fn jti_not_revoked(&self, valid: Arc<ValidToken>, now: i64) -> Outcome {
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

    /// The refusal of the token `digest` names if it has been revoked by itself.
    fn token_revoked(&self, digest: &cache::Key, now: i64) -> Option<Refusal> {
        let mut id = [0u8; TOKEN_REVOCATION_ID_BYTES];
        self.revocations
            .is_revoked(token_revocation_id(digest, &mut id), now)
            .then(|| Refusal::new(Verdict::Revoked, "the token has been revoked"))
    }

    /// Refuses `token` itself until `expires_at`, as [`Self::revoke`] does by `jti`: for
    /// tokens without one (most opaque tokens). Only its SHA-256 is kept.
    pub fn revoke_token(
        &self,
        token: &str,
        expires_at: i64,
    ) -> BoxFuture<'static, Result<Revoked, RevokeError>> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return future::ready(Err(RevokeError::InvalidArgument(format!(
                "token is {} bytes long: give the token itself, 1 to {MAX_TOKEN_BYTES} bytes",
                token.len()
            ))))
            .boxed();
        }
        self.revoke(&revocation_id(token), expires_at)
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
        let until = match revocation_until(token_id, expires_at, now, self.max_revocation_seconds) {
            Ok(until) => until,
            Err(refused) => return future::ready(Err(refused)).boxed(),
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

/// Why a token was not verified: refused, or naming a kid that a load of its provider's keys
/// might bring.
enum Unverified {
    Refused(Refusal),
    UnknownKid(Refusal, Arc<Provider>),
}

impl From<Refusal> for Unverified {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

/// Everything but revocation: shape, issuer, algorithm, key, signature, claims. The key is
/// looked up only among the keys of the provider the token's `iss` names. The valid token comes
/// with the id of that provider and the generation of the key set that verified it.
fn verify(
    token: &str,
    providers: &Providers,
    now: i64,
) -> Result<(ValidToken, u64, u64), Unverified> {
    let jws = jws::parse(token)?;
    let claims = claims::read(jws.payload)?;
    let issuer = claims::issuer(&claims)?;
    let provider = providers
        .get(issuer)
        .ok_or_else(|| claims::unknown_issuer(issuer))?;
    let Some(key_source) = &provider.keys else {
        return Err(Unverified::Refused(Refusal::new(
            Verdict::UnknownKey,
            format!("{issuer} has no signing keys here: its tokens are introspected, not JWTs"),
        )));
    };
    let Some(keys) = key_source.current() else {
        return Err(Unverified::Refused(Refusal::new(
            Verdict::Unavailable,
            format!(
                "the signing keys of {issuer} have not loaded yet (its identity provider is down \
                 or has not answered); ask again later"
            ),
        )));
    };
    let key = keys.find(jws.kid.as_deref()).map_err(|why| match jws.kid {
        Some(_) => Unverified::UnknownKid(
            Refusal::new(Verdict::UnknownKey, format!("{why} of {issuer}")),
            Arc::clone(provider),
        ),
        None => Unverified::Refused(Refusal::new(Verdict::UnknownKey, why.to_string())),
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
    let valid = claims::check(claims, &provider.rules, now)?;
    Ok((valid, provider.id, keys.generation))
}

/// The provider that introspects `token`, a token that is not a JWT: the one whose
/// `token_prefix` it starts with, else the one without a prefix. None when no provider
/// introspects; a refusal when none takes this token.
fn introspecting_provider(
    providers: &Providers,
    token: &str,
) -> Option<Result<Arc<Provider>, Refusal>> {
    let mut any = false;
    let mut best: Option<(&str, &Arc<Provider>)> = None;
    for provider in providers.values() {
        let Some(prefix) = provider.introspected_prefix() else {
            continue;
        };
        any = true;
        if token.starts_with(prefix) && best.is_none_or(|(longest, _)| prefix.len() > longest.len())
        {
            best = Some((prefix, provider));
        }
    }
    match best {
        Some((_, provider)) => Some(Ok(Arc::clone(provider))),
        None if any => Some(Err(Refusal::new(
            Verdict::Malformed,
            "the token is not a JWT, and starts with none of the token_prefix of the providers \
             that introspect",
        ))),
        None => None,
    }
}

/// What an introspection answer is cached as, at `now`: an active one for the provider's cache
/// time, never past its `exp` (and, stale, at most `stale_if_error` longer, still never past
/// `exp`); an inactive or refused one for its inactive cache time. None when not cached.
/// Caches an answer of `provider` about the token `digest` names, in the caller thread that got
/// it, before any asker is given it: a question asked after the answer finds it.
fn remember_answer(
    cache: Option<&Arc<TokenCache>>,
    provider: &Provider,
    digest: cache::Key,
) -> Remember {
    let (Some(cache), Some(options)) = (cache, provider.options.introspection.as_ref()) else {
        return Box::new(|_| {});
    };
    let (cache, id) = (Arc::clone(cache), provider.id);
    let times = AnswerTimes {
        active: seconds(options.cache),
        inactive: seconds(options.inactive_cache),
        stale: seconds(options.stale_if_error),
    };
    Box::new(move |judged| {
        if let Ok(answer) = judged {
            if let Some(entry) = introspected_entry(answer, times, unix_now()) {
                cache.insert(digest, entry, id);
            }
        }
    })
}

/// How long a provider's answers are used, in seconds: active, inactive, and stale past
/// active while its endpoint cannot answer.
#[derive(Clone, Copy)]
struct AnswerTimes {
    active: i64,
    inactive: i64,
    stale: i64,
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn introspected_entry(answer: &Arc<Introspected>, times: AnswerTimes, now: i64) -> Option<Entry> {
    let (fresh_until, stale_until) = match &**answer {
        Introspected::Active(valid) => {
            let exp = if valid.claims.contains_key("exp") {
                valid.expires_at
            } else {
                i64::MAX
            };
            let fresh = now.saturating_add(times.active).min(exp);
            let stale = fresh.saturating_add(times.stale).min(exp);
            (fresh, stale)
        }
        Introspected::Refused(_) => {
            let fresh = now.saturating_add(times.inactive);
            (fresh, fresh)
        }
    };
    // Kept while it may be used: fresh, or stale while the endpoint cannot answer.
    (stale_until > now).then(|| Entry::Introspected {
        answer: Arc::clone(answer),
        fresh_until,
        stale_until,
    })
}

/// What `token` revoked by itself is kept as: `sha256:` and the hex of its SHA-256 (a hash, not
/// a secret: what an audit line may name).
pub fn revocation_id(token: &str) -> String {
    let mut id = [0u8; TOKEN_REVOCATION_ID_BYTES];
    token_revocation_id(&cache::key(token), &mut id).to_owned()
}

/// A token revoked by itself is kept as `sha256:` and the hex of its SHA-256.
const TOKEN_REVOCATION_ID_BYTES: usize = 7 + 64;

/// The revocation id of the token `digest` names, written into `buffer`.
fn token_revocation_id<'a>(
    digest: &cache::Key,
    buffer: &'a mut [u8; TOKEN_REVOCATION_ID_BYTES],
) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buffer[..7].copy_from_slice(b"sha256:");
    for (i, byte) in digest.iter().enumerate() {
        buffer[7 + 2 * i] = HEX[usize::from(byte >> 4)];
        buffer[8 + 2 * i] = HEX[usize::from(byte & 15)];
    }
    std::str::from_utf8(buffer).expect("ASCII")
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
    use crate::tokens::{KeysFrom, Stored};

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

    /// An Ed25519 key with kid `k`, in a key set file of its own.
    struct Signer {
        key: EncodingKey,
        path: std::path::PathBuf,
    }

    impl Signer {
        fn new(dir: &std::path::Path, name: &str) -> Self {
            let key = PKey::generate_ed25519().expect("an Ed25519 key");
            let raw = key.raw_public_key().expect("its public half");
            let jwks = json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "kid": "k", "x": URL_SAFE_NO_PAD.encode(raw)
            }]});
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, jwks.to_string()).expect("write the key set");
            let pkcs8 = key.private_key_to_pkcs8().expect("PKCS#8");
            Self {
                key: EncodingKey::from_ed_der(&pkcs8),
                path,
            }
        }

        fn provider(&self, issuer: &str) -> ProviderOptions {
            ProviderOptions {
                leeway_seconds: LEEWAY as u32,
                ..ProviderOptions::new(issuer, KeysFrom::File(self.path.clone()))
            }
        }

        fn token(&self, claims: Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some("k".to_owned());
            jsonwebtoken::encode(&header, &claims, &self.key).expect("signs")
        }
    }

    fn verifier(providers: Vec<ProviderOptions>, cache_entries: usize) -> TokenVerifier {
        let options = TokenOptions {
            providers,
            cache_entries,
            ..TokenOptions::default()
        };
        TokenVerifier::start(&options, Arc::new(Revocations::default()))
            .expect("starts")
            .expect("a provider is configured")
    }

    /// A verifier of one provider with one Ed25519 key, and what signs with it.
    struct Fixture {
        verifier: TokenVerifier,
        signer: Signer,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(cache_entries: usize) -> Self {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let signer = Signer::new(dir.path(), "jwks");
            Self {
                verifier: verifier(vec![signer.provider(ISSUER)], cache_entries),
                signer,
                _dir: dir,
            }
        }

        fn token(&self, claims: Value) -> String {
            self.signer.token(claims)
        }

        /// The verdict for `token` at `now`.
        fn verdict_at(&self, token: &str, now: i64) -> Verdict {
            match self.verifier.check_at(token, now, false) {
                Check::Done(Ok(_)) => Verdict::Valid,
                Check::Done(Err(refusal)) => refusal.verdict,
                Check::AfterKeyReload(_) | Check::AfterIntrospection(..) => {
                    panic!("no reload was allowed")
                }
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
    fn a_revocation_that_would_not_take_effect_is_refused_not_done() {
        let fixture = Fixture::new(100);
        let now = unix_now();
        for past in [now, now - 1, i64::MIN] {
            let revoked = futures::executor::block_on(fixture.verifier.revoke("t-1", past));
            let Err(RevokeError::InvalidArgument(why)) = revoked else {
                panic!("{past}: {revoked:?}");
            };
            assert!(why.contains("send the token's exp"), "{why}");
        }
    }

    #[test]
    fn a_token_for_another_issuer_is_refused_even_when_its_key_verifies() {
        let fixture = Fixture::new(0);
        let token = fixture.token(json!({"iss": "https://elsewhere.example", "exp": 9_000}));
        assert_eq!(fixture.verdict_at(&token, 1_000), Verdict::WrongIssuer);
    }

    fn verdict(verifier: &TokenVerifier, token: &str, now: i64) -> Verdict {
        match verifier.check_at(token, now, false) {
            Check::Done(Ok(_)) => Verdict::Valid,
            Check::Done(Err(refusal)) => refusal.verdict,
            Check::AfterKeyReload(_) | Check::AfterIntrospection(..) => {
                panic!("no reload was allowed")
            }
        }
    }

    #[test]
    fn each_providers_keys_verify_its_own_tokens_only_even_with_the_same_kid() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (a, b) = (Signer::new(dir.path(), "a"), Signer::new(dir.path(), "b"));
        let (issuer_a, issuer_b) = ("https://a.example", "https://b.example");
        for cache in [0, 100] {
            let verifier = verifier(vec![a.provider(issuer_a), b.provider(issuer_b)], cache);
            let own_a = a.token(json!({"iss": issuer_a, "exp": 9_000}));
            let own_b = b.token(json!({"iss": issuer_b, "exp": 9_000}));
            assert_eq!(verdict(&verifier, &own_a, 1_000), Verdict::Valid);
            assert_eq!(verdict(&verifier, &own_b, 1_000), Verdict::Valid);
            // B's key, B's kid `k`, A's name: A's `k` is asked, and does not verify it.
            let forged = b.token(json!({"iss": issuer_a, "exp": 9_000}));
            assert_eq!(
                verdict(&verifier, &forged, 1_000),
                Verdict::BadSignature,
                "cache {cache}"
            );
            let nobody = a.token(json!({"iss": "https://c.example", "exp": 9_000}));
            assert_eq!(verdict(&verifier, &nobody, 1_000), Verdict::WrongIssuer);
        }
    }

    #[test]
    fn a_valid_token_keeps_every_claim_as_the_token_has_it() {
        let fixture = Fixture::new(100);
        let claims = json!({
            "iss": ISSUER, "exp": 9_000, "email": "a@example.com", "admin": true,
            "groups": ["ops", "dev"], "n": 1.5, "tenant": {"id": 7, "tags": [null]}
        });
        let token = fixture.token(claims.clone());
        for _ in 0..2 {
            let Check::Done(Ok(valid)) = fixture.verifier.check_at(&token, 1_000, false) else {
                panic!("valid");
            };
            assert_eq!(Value::Object(valid.claims.clone()), claims, "cached or not");
        }
    }

    #[test]
    fn replacing_the_providers_keeps_the_unchanged_and_drops_the_cache_of_the_changed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (a, b) = (Signer::new(dir.path(), "a"), Signer::new(dir.path(), "b"));
        let (issuer_a, issuer_b) = ("https://a.example", "https://b.example");
        let verifier = verifier(vec![a.provider(issuer_a)], 100);
        let token_a = a.token(json!({"iss": issuer_a, "aud": "x", "exp": 9_000}));
        let token_b = b.token(json!({"iss": issuer_b, "exp": 9_000}));
        assert_eq!(verdict(&verifier, &token_a, 1_000), Verdict::Valid);
        assert_eq!(verdict(&verifier, &token_b, 1_000), Verdict::WrongIssuer);

        let changed = verifier.replace_providers(&[a.provider(issuer_a), b.provider(issuer_b)]);
        assert_eq!(changed.added, [issuer_b]);
        assert!(changed.changed.is_empty() && changed.removed.is_empty());
        assert_eq!(verdict(&verifier, &token_b, 1_000), Verdict::Valid);

        // A now wants audience `y`: its cached answer for audience `x` must not be used.
        let strict = ProviderOptions {
            audiences: vec!["y".to_owned()],
            ..a.provider(issuer_a)
        };
        let changed = verifier.replace_providers(&[strict]);
        assert_eq!(changed.changed, [issuer_a]);
        assert_eq!(changed.removed, [issuer_b]);
        assert_eq!(verdict(&verifier, &token_a, 1_000), Verdict::WrongAudience);
        assert_eq!(verdict(&verifier, &token_b, 1_000), Verdict::WrongIssuer);
        assert!(verifier.ready());
    }

    #[test]
    fn an_opaque_token_goes_to_the_longest_prefix_that_fits_else_the_provider_without_one() {
        use crate::tokens::{IntrospectionEndpoint, IntrospectionOptions};
        let dir = tempfile::tempdir().expect("a temporary directory");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").expect("write the secret");
        let introspecting = |issuer: &str, prefix: Option<&str>| {
            let mut options = IntrospectionOptions::new(
                IntrospectionEndpoint::Url("http://127.0.0.1:1/i".to_owned()),
                "g",
                secret.clone(),
            );
            options.token_prefix = prefix.map(str::to_owned);
            ProviderOptions {
                introspection: Some(options),
                ..ProviderOptions::new(issuer, KeysFrom::None)
            }
        };
        let mut providers = Providers::new();
        for (issuer, prefix) in [
            ("any", None),
            ("ory", Some("ory_")),
            ("at", Some("ory_at_")),
        ] {
            let provider = Provider::start(&introspecting(issuer, prefix), Duration::from_secs(60))
                .expect("starts");
            providers.insert(issuer.to_owned(), Arc::new(provider));
        }
        let to = |token: &str| match introspecting_provider(&providers, token) {
            Some(Ok(provider)) => provider.options.issuer.clone(),
            other => panic!("{token}: {:?}", other.map(|found| found.map(|_| ()))),
        };
        assert_eq!(to("ory_at_abc"), "at");
        assert_eq!(to("ory_rt_abc"), "ory");
        assert_eq!(to("abc"), "any");
        providers.remove("any");
        assert!(matches!(
            introspecting_provider(&providers, "abc"),
            Some(Err(_))
        ));
        providers.clear();
        assert!(
            introspecting_provider(&providers, "abc").is_none(),
            "none introspects"
        );
    }
}
