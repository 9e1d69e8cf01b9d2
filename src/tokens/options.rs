//! What token validation is told: where the signing keys come from and how often to load them
//! again, which issuers and audiences are accepted, the clock skew tolerated, the cache, how
//! long a revocation may be kept. Plain values: the server's flags (`server/config.rs`) fill
//! them in, and each default is the constant here.

use std::path::PathBuf;
use std::time::Duration;

/// How often a key set URL is fetched again unless told otherwise.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// Clock skew tolerated for `exp` and `nbf` unless told otherwise, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u32 = 30;

/// Valid tokens remembered unless told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;

/// The longest a revocation is kept unless told otherwise: a week.
pub const DEFAULT_REVOCATION_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where the signing keys are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysFrom {
    /// A JSON Web Key Set file.
    File(PathBuf),
    /// An identity provider's `jwks_uri`; `ca_cert` replaces the system roots for https.
    Url {
        /// The URL.
        url: String,
        /// PEM CA certificate(s) to trust instead of the system's.
        ca_cert: Option<PathBuf>,
    },
}

/// The token service's settings. Without `keys` it is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOptions {
    /// Where the signing keys come from; None: no token service.
    pub keys: Option<KeysFrom>,
    /// How often a key set URL is fetched again.
    pub jwks_refresh: Duration,
    /// Issuers (`iss`) whose tokens are accepted; at least one with a key set.
    pub issuers: Vec<String>,
    /// Audiences (`aud`) of which a token must name one; any audience when empty.
    pub audiences: Vec<String>,
    /// Clock skew tolerated for `exp` and `nbf`, in seconds.
    pub leeway_seconds: u32,
    /// Valid tokens remembered; 0 turns the cache off.
    pub cache_entries: usize,
    /// The longest a revocation is kept, and how long when Revoke gives no expiry.
    pub revocation_max_ttl: Duration,
}

impl Default for TokenOptions {
    fn default() -> Self {
        Self {
            keys: None,
            jwks_refresh: DEFAULT_JWKS_REFRESH,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            revocation_max_ttl: DEFAULT_REVOCATION_MAX_TTL,
        }
    }
}

impl TokenOptions {
    /// Whether a key source is configured, and so the token service is served.
    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    /// What makes these settings unusable, one sentence each; none when they can be used.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.enabled() && self.issuers.is_empty() {
            problems.push(
                "--token-issuer is required with a key set: name the issuers whose tokens are \
                 accepted"
                    .to_owned(),
            );
        }
        problems
    }
}
