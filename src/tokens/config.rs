//! How tokens are validated: where the signing keys come from, which issuers and audiences are
//! accepted, who may revoke. Every field is a flag of the server binary and an environment
//! variable.

use std::path::PathBuf;
use std::time::Duration;

use crate::seconds::parse_seconds;

/// Valid tokens remembered unless told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;

/// Revocations held at once unless told otherwise.
pub const DEFAULT_MAX_REVOCATIONS: usize = 1_000_000;

/// The token service's settings. Without `--jwks-file` or `--jwks-url` it is not served.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Token validation (TokenV1Proto)")]
pub struct TokenConfig {
    /// JSON Web Key Set file holding the public keys that sign tokens. Read at start (a file
    /// that cannot be read or holds no usable key stops the server), again on SIGHUP, and when a
    /// token names a key id (kid) that is not loaded (at most once every 30 s).
    #[arg(
        long,
        env = "MRMAT_GRPC_JWKS_FILE",
        value_name = "PATH",
        conflicts_with = "jwks_url",
        requires = "token_issuer"
    )]
    pub jwks_file: Option<PathBuf>,

    /// URL of the identity provider's JSON Web Key Set (its `jwks_uri`), fetched at start,
    /// every --jwks-refresh, on SIGHUP and on an unknown kid (at most once every 30 s). While no
    /// key set has been fetched, health checking reports TokenV1Proto NOT_SERVING.
    #[arg(
        long,
        env = "MRMAT_GRPC_JWKS_URL",
        value_name = "URL",
        requires = "token_issuer"
    )]
    pub jwks_url: Option<String>,

    /// How often to fetch --jwks-url again.
    #[arg(
        long,
        env = "MRMAT_GRPC_JWKS_REFRESH",
        value_name = "SECONDS",
        default_value = "300",
        value_parser = parse_seconds
    )]
    pub jwks_refresh: Duration,

    /// PEM CA certificate(s) to trust for an https --jwks-url instead of the system's roots.
    #[arg(
        long,
        env = "MRMAT_GRPC_JWKS_CA_CERT",
        value_name = "PEM",
        requires = "jwks_url"
    )]
    pub jwks_ca_cert: Option<PathBuf>,

    /// An issuer (`iss`) whose tokens are accepted; repeat it, or separate several with commas.
    /// Required with a key set, so that a key set shared by several issuers cannot admit tokens
    /// meant for another.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_ISSUER",
        value_name = "ISS",
        value_delimiter = ','
    )]
    pub token_issuer: Vec<String>,

    /// An audience (`aud`) tokens must name; repeat it, or separate several with commas. When
    /// given, a token is accepted only if its `aud` names one of them.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ','
    )]
    pub token_audience: Vec<String>,

    /// Clock skew tolerated when checking `exp` and `nbf`.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_LEEWAY",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub token_leeway: u32,

    /// Valid tokens remembered (by a hash of the token, never past their expiry), so that a
    /// token presented again is not verified again. 0 turns the cache off.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_CACHE",
        value_name = "ENTRIES",
        default_value_t = DEFAULT_CACHE_ENTRIES
    )]
    pub token_cache: usize,

    /// A client allowed to call Revoke: the common name or a DNS subject alternative name of
    /// its certificate. Repeat it, or separate several with commas. Needs mutual TLS
    /// (--tls-client-ca); everyone else is answered PERMISSION_DENIED.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_ADMIN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub token_admin: Vec<String>,

    /// The longest a revocation is kept, and how long one is kept when Revoke gives no
    /// expires_at. Revocations that would outlive it are refused with INVALID_ARGUMENT.
    #[arg(
        long,
        env = "MRMAT_GRPC_REVOCATION_MAX_TTL",
        value_name = "SECONDS",
        default_value = "604800",
        value_parser = parse_seconds
    )]
    pub revocation_max_ttl: Duration,

    /// Most unexpired revocations held at once; Revoke beyond it is answered
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_REVOCATIONS",
        value_name = "COUNT",
        default_value_t = DEFAULT_MAX_REVOCATIONS
    )]
    pub max_revocations: usize,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_ca_cert: None,
            token_issuer: Vec::new(),
            token_audience: Vec::new(),
            token_leeway: 30,
            token_cache: DEFAULT_CACHE_ENTRIES,
            token_admin: Vec::new(),
            revocation_max_ttl: Duration::from_secs(7 * 24 * 3600),
            max_revocations: DEFAULT_MAX_REVOCATIONS,
        }
    }
}

impl TokenConfig {
    /// Whether a key source is configured, and so the token service is served.
    pub fn enabled(&self) -> bool {
        self.jwks_file.is_some() || self.jwks_url.is_some()
    }
}
