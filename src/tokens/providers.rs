//! The identity providers the verifier holds: each one's issuer, key source and rules, and
//! what replacing them (a providers file read again) changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::claims::Rules;
use super::source::{KeySource, Location};
use super::{ProviderOptions, TokenError};

/// Ids of providers, unique across reloads of the providers file: a cached validation is
/// used only while the provider that made it (its keys, audiences, leeway) is the one in place.
static PROVIDER_IDS: AtomicU64 = AtomicU64::new(1);

/// One identity provider as the verifier uses it: its issuer's own key set and rules.
pub(super) struct Provider {
    pub id: u64,
    pub options: ProviderOptions,
    pub rules: Rules,
    pub keys: KeySource,
}

impl Provider {
    pub fn start(options: &ProviderOptions, refresh: Duration) -> Result<Self, TokenError> {
        let location = Location::of(options)?;
        Ok(Self {
            id: PROVIDER_IDS.fetch_add(1, Ordering::Relaxed),
            options: options.clone(),
            rules: Rules {
                audiences: options.audiences.clone(),
                leeway: i64::from(options.leeway_seconds),
            },
            keys: KeySource::start(&options.issuer, location, refresh)?,
        })
    }
}

/// The providers in place, by issuer.
pub(super) type Providers = HashMap<String, Arc<Provider>>;

/// What [`super::TokenVerifier::replace_providers`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProvidersChanged {
    /// Issuers of the providers started.
    pub added: Vec<String>,
    /// Issuers of the providers stopped.
    pub removed: Vec<String>,
    /// Issuers whose settings changed (started again).
    pub changed: Vec<String>,
    /// Providers that could not be started, each with why; the others are in place.
    pub failed: Vec<String>,
}
