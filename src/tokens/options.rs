//! What token validation is told: the identity providers whose tokens are accepted (each an
//! issuer with its own key set, audiences and clock skew), how often keys are fetched again, the
//! cache, how long a revocation may be kept. Plain values: the server's flags and providers file
//! fill them in, and each default is the constant here.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How often a provider's keys are fetched again unless told otherwise.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// Clock skew tolerated for `exp` and `nbf` unless told otherwise, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u32 = 30;

/// Valid tokens remembered unless told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;

/// The memory the cache of valid tokens may hold unless told otherwise: 128 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;

/// The longest a revocation is kept unless told otherwise: a week.
pub const DEFAULT_REVOCATION_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a provider's signing keys are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysFrom {
    /// OpenID Connect Discovery: the `jwks_uri` of `ISSUER/.well-known/openid-configuration`,
    /// whose `issuer` must be the provider's exactly.
    Discovery,
    /// A JSON Web Key Set URL (the provider's `jwks_uri`, given directly).
    Url(String),
    /// A JSON Web Key Set file.
    File(PathBuf),
    /// None: the provider's tokens are only introspected (an `introspection_url` without keys).
    None,
}

/// How long an active introspection answer is reused unless told otherwise.
pub const DEFAULT_INTROSPECTION_CACHE: Duration = Duration::from_secs(60);

/// How long an inactive (or refused) introspection answer is reused unless told otherwise.
pub const DEFAULT_INACTIVE_CACHE: Duration = Duration::from_secs(5);

/// Introspection calls in flight to one provider at most, unless told otherwise.
pub const DEFAULT_INTROSPECTION_CONCURRENCY: usize = 8;

/// How long one introspection call may take unless told otherwise.
pub const DEFAULT_INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a question waits for a free call unless told otherwise.
pub const DEFAULT_INTROSPECTION_QUEUE_WAIT: Duration = Duration::from_millis(500);

/// Where a provider's introspection endpoint (RFC 7662) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntrospectionEndpoint {
    /// The `introspection_endpoint` of its OpenID configuration (found with its keys).
    Discovery,
    /// This URL.
    Url(String),
}

/// How a provider's tokens that are not JWTs are judged: by asking it (RFC 7662).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntrospectionOptions {
    pub endpoint: IntrospectionEndpoint,
    /// This server's client id at the provider (client_secret_basic).
    pub client_id: String,
    /// The file holding its client secret (read at start and on SIGHUP; never logged).
    pub client_secret_file: PathBuf,
    /// What its tokens start with, when several providers introspect.
    pub token_prefix: Option<String>,
    /// How long an active answer is reused (never past the token's `exp`).
    pub cache: Duration,
    /// How long an inactive answer is reused.
    pub inactive_cache: Duration,
    /// How long past its cache time an active answer is still used while the endpoint cannot
    /// answer (never past `exp`); zero: never.
    pub stale_if_error: Duration,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// How long one call may take.
    pub timeout: Duration,
    /// How long a question waits for a free call before it cannot be judged.
    pub queue_wait: Duration,
}

impl IntrospectionOptions {
    /// Introspection at `endpoint` as `client_id`, its secret in `client_secret_file`, with
    /// the defaults.
    pub fn new(
        endpoint: IntrospectionEndpoint,
        client_id: &str,
        client_secret_file: PathBuf,
    ) -> Self {
        Self {
            endpoint,
            client_id: client_id.to_owned(),
            client_secret_file,
            token_prefix: None,
            cache: DEFAULT_INTROSPECTION_CACHE,
            inactive_cache: DEFAULT_INACTIVE_CACHE,
            stale_if_error: Duration::ZERO,
            concurrency: DEFAULT_INTROSPECTION_CONCURRENCY,
            timeout: DEFAULT_INTROSPECTION_TIMEOUT,
            queue_wait: DEFAULT_INTROSPECTION_QUEUE_WAIT,
        }
    }
}

/// One identity provider: the issuer (`iss`) its tokens name, and the only keys that may verify
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderOptions {
    /// The `iss` of its tokens; with discovery, also where its configuration is found.
    pub issuer: String,
    /// Where its keys come from.
    pub keys: KeysFrom,
    /// PEM CA certificate(s) to trust for its https URLs instead of the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Audiences (`aud`) of which its tokens must name one; any audience when empty.
    pub audiences: Vec<String>,
    /// Clock skew tolerated for `exp` and `nbf`, in seconds.
    pub leeway_seconds: u32,
    /// How its tokens that are not JWTs are judged; None: they are not accepted.
    pub introspection: Option<IntrospectionOptions>,
}

impl ProviderOptions {
    /// A provider found by discovery at `issuer`, with the default leeway and any audience.
    pub fn discovery(issuer: &str) -> Self {
        Self::new(issuer, KeysFrom::Discovery)
    }

    /// A provider whose keys come from `keys`, with the default leeway and any audience.
    pub fn new(issuer: &str, keys: KeysFrom) -> Self {
        Self {
            issuer: issuer.to_owned(),
            keys,
            ca_cert: None,
            audiences: Vec::new(),
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            introspection: None,
        }
    }

    /// How its keys are found, for log lines and `--help`: `discovery`, `jwks_url URL`, ...
    pub fn keys_description(&self) -> String {
        let keys = match &self.keys {
            KeysFrom::Discovery => "discovery".to_owned(),
            KeysFrom::Url(url) => format!("jwks_url {url}"),
            KeysFrom::File(path) => format!("jwks_file {}", path.display()),
            KeysFrom::None => "no keys".to_owned(),
        };
        match self.introspection.as_ref().map(|i| &i.endpoint) {
            None => keys,
            Some(IntrospectionEndpoint::Discovery) => format!("{keys}, introspection by discovery"),
            Some(IntrospectionEndpoint::Url(url)) => format!("{keys}, introspection_url {url}"),
        }
    }

    /// What makes this provider unusable, one sentence each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let issuer = &self.issuer;
        if issuer.is_empty() {
            problems.push("a provider's issuer is empty".to_owned());
        }
        match &self.keys {
            KeysFrom::Discovery => {
                if let Err(why) = fetchable(issuer) {
                    problems.push(format!(
                        "issuer {issuer}: {why} (discovery fetches ISSUER/.well-known/openid-configuration)"
                    ));
                }
            }
            KeysFrom::Url(url) => {
                if let Err(why) = fetchable(url) {
                    problems.push(format!("jwks_url {url} of issuer {issuer}: {why}"));
                }
            }
            KeysFrom::File(_) => {
                let fetches = matches!(
                    self.introspection.as_ref().map(|i| &i.endpoint),
                    Some(IntrospectionEndpoint::Url(_))
                );
                if self.ca_cert.is_some() && !fetches {
                    problems.push(format!(
                        "issuer {issuer}: a CA certificate is for fetched keys, not a jwks_file"
                    ));
                }
            }
            KeysFrom::None => {
                if self.introspection.is_none() {
                    problems.push(format!(
                        "issuer {issuer}: no keys and no introspection: none of its tokens \
                         could be valid"
                    ));
                }
            }
        }
        if let Some(introspection) = &self.introspection {
            problems.extend(introspection_problems(issuer, &self.keys, introspection));
        }
        problems
    }
}

fn introspection_problems(
    issuer: &str,
    keys: &KeysFrom,
    introspection: &IntrospectionOptions,
) -> Vec<String> {
    let mut problems = Vec::new();
    match &introspection.endpoint {
        IntrospectionEndpoint::Discovery if *keys != KeysFrom::Discovery => problems.push(format!(
            "issuer {issuer}: introspection = true finds the endpoint by discovery, which this \
             provider does not use (it names its keys): give introspection_url instead"
        )),
        IntrospectionEndpoint::Discovery => {}
        IntrospectionEndpoint::Url(url) => {
            if let Err(why) = fetchable(url) {
                problems.push(format!("introspection_url {url} of issuer {issuer}: {why}"));
            }
        }
    }
    if introspection.client_id.is_empty() {
        problems.push(format!(
            "issuer {issuer}: introspection needs client_id and client_secret_file: the \
             endpoint answers only clients it knows (RFC 7662 section 2.1)"
        ));
    }
    if introspection.client_id.contains(':') {
        problems.push(format!(
            "issuer {issuer}: client_id {:?} has a colon, which client_secret_basic cannot send",
            introspection.client_id
        ));
    }
    if introspection.concurrency == 0 {
        problems.push(format!(
            "issuer {issuer}: introspection_concurrency is 0: no token could be introspected"
        ));
    }
    if introspection.timeout.is_zero() {
        problems.push(format!("issuer {issuer}: introspection_timeout_ms is 0"));
    }
    if let Some(prefix) = &introspection.token_prefix {
        if prefix.is_empty() || !prefix.bytes().all(is_token_byte) {
            problems.push(format!(
                "issuer {issuer}: token_prefix {prefix:?} is not the start of a token (letters, \
                 digits and -._~+/)"
            ));
        }
    }
    problems
}

/// Whether `b` may be in a bearer token (RFC 6750 section 2.1, `b64token`; `=` only at the end).
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl ProviderOptions {
    /// The prefix its introspected tokens start with: "" when it introspects any.
    pub(super) fn introspected_prefix(&self) -> Option<&str> {
        let introspection = self.introspection.as_ref()?;
        Some(introspection.token_prefix.as_deref().unwrap_or(""))
    }
}

/// Whether keys may be fetched from `url`: https, or http to a loopback address (an identity
/// provider on the same host, in development). Anything else says why not.
pub fn fetchable(url: &str) -> Result<(), Unfetchable> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| Unfetchable::NotAUrl)?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(Unfetchable::NoHost);
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(Unfetchable::PlainHttp),
        _ => Err(Unfetchable::NotHttps),
    }
}

/// Why keys may not be fetched from a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unfetchable {
    /// Not a URL.
    NotAUrl,
    /// A URL without a host.
    NoHost,
    /// Plain http to a host that is not this one.
    PlainHttp,
    /// Another scheme.
    NotHttps,
}

impl std::fmt::Display for Unfetchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAUrl => "not a URL, e.g. https://id.example/realms/apps",
            Self::NoHost => "the URL names no host",
            Self::PlainHttp => {
                "keys are fetched over https only (plain http only from a loopback address): \
                 anyone on the path could replace them"
            }
            Self::NotHttps => "only https URLs are fetched",
        })
    }
}

impl std::error::Error for Unfetchable {}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token service's settings. Without providers it is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOptions {
    /// The identity providers whose tokens are accepted, one issuer each.
    pub providers: Vec<ProviderOptions>,
    /// How often fetched keys (discovery, a key set URL) are fetched again.
    pub jwks_refresh: Duration,
    /// Valid tokens remembered; 0 turns the cache off.
    pub cache_entries: usize,
    /// The memory those may hold, in bytes, each entry weighed by what it holds; 0 turns the
    /// cache off.
    pub cache_bytes: u64,
    /// The longest a revocation is kept, and how long when Revoke gives no expiry.
    pub revocation_max_ttl: Duration,
    /// How DPoP proofs of key-bound tokens are checked.
    pub dpop: super::binding::DpopOptions,
}

impl Default for TokenOptions {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            jwks_refresh: DEFAULT_JWKS_REFRESH,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            revocation_max_ttl: DEFAULT_REVOCATION_MAX_TTL,
            dpop: super::binding::DpopOptions::default(),
        }
    }
}

impl TokenOptions {
    /// Whether any provider is configured, and so the token service is served.
    pub fn enabled(&self) -> bool {
        !self.providers.is_empty()
    }

    /// What makes these settings unusable, one sentence each; none when they can be used.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        problems.extend(introspection_conflicts(&self.providers));
        for (index, provider) in self.providers.iter().enumerate() {
            problems.extend(provider.problems());
            if self.providers[..index]
                .iter()
                .any(|earlier| earlier.issuer == provider.issuer)
            {
                problems.push(format!(
                    "issuer {} is configured twice: each issuer is one provider with one key set",
                    provider.issuer
                ));
            }
        }
        problems
    }
}

/// Which of `providers` could both be asked about the same opaque token, one sentence each:
/// two without a `token_prefix`, or a prefix that starts another (the one without a prefix
/// takes the tokens no prefix fits).
pub fn introspection_conflicts(providers: &[ProviderOptions]) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, provider) in providers.iter().enumerate() {
        let Some(prefix) = provider.introspected_prefix() else {
            continue;
        };
        for earlier in &providers[..index] {
            let Some(other) = earlier.introspected_prefix() else {
                continue;
            };
            // The one without a prefix takes what no prefix does; two without one, or one
            // prefix starting another, could both take a token.
            let both_bare = prefix.is_empty() && other.is_empty();
            let nested = !prefix.is_empty()
                && !other.is_empty()
                && (prefix.starts_with(other) || other.starts_with(prefix));
            if both_bare || nested {
                let what = |p: &str| {
                    if p.is_empty() {
                        "any token".to_owned()
                    } else {
                        format!("tokens starting {p:?}")
                    }
                };
                problems.push(format!(
                    "issuers {} and {} both introspect {}: give each but one a token_prefix \
                         that no other's tokens start with",
                    earlier.issuer,
                    provider.issuer,
                    what(if prefix.len() < other.len() {
                        other
                    } else {
                        prefix
                    })
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fetched_over_https_or_plain_http_from_loopback_only() {
        for ok in [
            "https://id.example/realms/apps",
            "http://127.0.0.1:8080/",
            "http://127.9.9.9/",
            "http://[::1]:9000/jwks",
            "http://localhost:5556/dex",
        ] {
            assert_eq!(fetchable(ok), Ok(()), "{ok}");
        }
        for (refused, why) in [
            ("http://id.example/", Unfetchable::PlainHttp),
            ("http://10.0.0.1/", Unfetchable::PlainHttp),
            ("ftp://id.example/", Unfetchable::NotHttps),
            ("file:///etc/jwks.json", Unfetchable::NotAUrl),
            ("id.example", Unfetchable::NotHttps),
            ("https://", Unfetchable::NotAUrl),
        ] {
            assert_eq!(fetchable(refused), Err(why), "{refused}");
        }
    }

    #[test]
    fn an_issuer_twice_is_a_problem() {
        let options = TokenOptions {
            providers: vec![
                ProviderOptions::discovery("https://a.example"),
                ProviderOptions::new("https://a.example", KeysFrom::Url("https://b/k".into())),
            ],
            ..TokenOptions::default()
        };
        let problems = options.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("configured twice"), "{problems:?}");
    }
}
