//! What token validation records: verdicts and cache lookups (only with the endpoint on: every
//! validation records them), key set loads and the revocations held (rare; always kept).

use std::sync::LazyLock;

use prometheus::IntCounter;

use super::{enabled, get, unix_millis, KEYS_LOADED_AT};

/// Counts a validation's verdict (`valid`, `expired`, ...).
pub fn validation(verdict: &'static str) {
    // One series per verdict, resolved once: a validation costs a short scan and an addition.
    static SERIES: LazyLock<std::sync::RwLock<Vec<(&'static str, IntCounter)>>> =
        LazyLock::new(Default::default);
    if !enabled() {
        return;
    }
    {
        let series = SERIES
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = series.iter().find(|(name, _)| *name == verdict) {
            counter.inc();
            return;
        }
    }
    let counter = get().validations.with_label_values(&[verdict]);
    counter.inc();
    SERIES
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((verdict, counter));
}

/// Counts a lookup in the token cache.
pub fn token_cache(hit: bool) {
    static HIT: LazyLock<[IntCounter; 2]> = LazyLock::new(|| {
        let cache = &get().cache;
        [
            cache.with_label_values(&["miss"]),
            cache.with_label_values(&["hit"]),
        ]
    });
    if enabled() {
        HIT[usize::from(hit)].inc();
    }
}

/// What the cache of valid tokens weighs now, in bytes.
pub fn token_cache_bytes(bytes: u64) {
    if enabled() {
        get()
            .cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// Counts a load of `issuer`'s keys; a successful one restarts their age.
pub fn key_set_load(issuer: &str, loaded: bool) {
    let outcome = if loaded { "loaded" } else { "failed" };
    get().key_loads.with_label_values(&[issuer, outcome]).inc();
    let mut loaded_at = KEYS_LOADED_AT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = loaded_at.entry(issuer.to_owned()).or_insert(0);
    if loaded {
        *at = unix_millis().max(1);
    }
}

/// Drops the series of a provider no longer configured.
pub fn forget_key_set(issuer: &str) {
    KEYS_LOADED_AT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(issuer);
    let metrics = get();
    let _ = metrics.key_set_age.remove_label_values(&[issuer]);
    for outcome in ["loaded", "failed"] {
        let _ = metrics.key_loads.remove_label_values(&[issuer, outcome]);
    }
    for outcome in INTROSPECTION_OUTCOMES {
        let _ = metrics
            .introspections
            .remove_label_values(&[issuer, outcome]);
    }
    let _ = metrics.introspection_seconds.remove_label_values(&[issuer]);
    let _ = metrics.introspection_stale.remove_label_values(&[issuer]);
}

const INTROSPECTION_OUTCOMES: [&str; 6] = [
    "active", "inactive", "refused", "failed", "busy", "held_off",
];

/// Counts an introspection call to `issuer`'s endpoint (or one not made: `busy`) and, for one
/// made, how long it took.
pub fn introspection(issuer: &str, outcome: &'static str, seconds: Option<f64>) {
    debug_assert!(INTROSPECTION_OUTCOMES.contains(&outcome));
    let metrics = get();
    metrics
        .introspections
        .with_label_values(&[issuer, outcome])
        .inc();
    if let Some(seconds) = seconds {
        metrics
            .introspection_seconds
            .with_label_values(&[issuer])
            .observe(seconds);
    }
}

/// Counts a stale introspection answer served for `issuer` while its endpoint failed.
pub fn introspection_stale(issuer: &str) {
    get().introspection_stale.with_label_values(&[issuer]).inc();
}

/// Counts a check of a token's binding (`dpop`, `certificate`, `none` for an unbound token
/// sent with the DPoP scheme): `valid`, or the refusal's verdict.
pub fn bound_token(binding: &'static str, outcome: &'static str) {
    if enabled() {
        get()
            .bound_tokens
            .with_label_values(&[binding, outcome])
            .inc();
    }
}

/// The number of revocations held now.
pub fn revocations_held(count: usize) {
    get().revocations.set(count as i64);
}
