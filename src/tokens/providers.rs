//! The identity providers the verifier holds: each one's issuer, key source and rules, and
//! what replacing them (a providers file read again) changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::claims::Rules;
use super::introspection::Introspector;
use super::source::{KeySource, Location};
use super::{ProviderOptions, TokenError};

/// Ids of providers, unique across reloads of the providers file: a cached validation is
/// used only while the provider that made it (its keys, audiences, leeway) is the one in place.
static PROVIDER_IDS: AtomicU64 = AtomicU64::new(1);

/// One identity provider as the verifier uses it: its issuer's own key set (None when its
/// tokens are only introspected), rules, and introspection when it has it.
pub(super) struct Provider {
    pub id: u64,
    pub options: ProviderOptions,
    pub rules: Rules,
    pub keys: Option<KeySource>,
    pub introspection: Option<Introspector>,
}

impl Provider {
    pub fn start(options: &ProviderOptions, refresh: Duration) -> Result<Self, TokenError> {
        let rules = Rules {
            audiences: options.audiences.clone(),
            leeway: i64::from(options.leeway_seconds),
        };
        let keys = match Location::of(options)? {
            Some(location) => Some(KeySource::start(&options.issuer, location, refresh)?),
            None => None,
        };
        let introspection = match &options.introspection {
            Some(introspection) => Some(Introspector::start(
                &options.issuer,
                introspection,
                rules.clone(),
                options.ca_cert.as_deref(),
                keys.as_ref().map(KeySource::introspection_endpoint),
            )?),
            None => None,
        };
        Ok(Self {
            id: PROVIDER_IDS.fetch_add(1, Ordering::Relaxed),
            options: options.clone(),
            rules,
            keys,
            introspection,
        })
    }

    /// Whether its tokens can be judged: its keys loaded, or none to load.
    pub fn is_ready(&self) -> bool {
        self.keys.as_ref().is_none_or(KeySource::is_loaded)
    }

    /// The prefix its introspected tokens start with ("" for any); None when it introspects
    /// none.
    pub fn introspected_prefix(&self) -> Option<&str> {
        self.introspection.as_ref()?;
        self.options.introspected_prefix()
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
