//! Every flag of the server binary, each with its environment variable and its help (clap, at
//! the edge), and [`ServerFlags::into_config`], which turns them into the plain
//! [`ServerConfig`] the server checks ([`ServerConfig::validate`]) and runs on.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;

use super::config::{
    Keepalive, ServerConfig, TlsConfig, TransportLimits, DEFAULT_KEEPALIVE, DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_REALM,
    DEFAULT_SHUTDOWN_GRACE,
};
use super::ListenAddress;
use crate::apis::{self, ApiOptions};
use crate::authz::{AuthzPolicy, ClaimHeader};
use crate::http;
use crate::seconds::Seconds;
use crate::store::{self, Capacity, StoreLocation, StoreOptions};
use crate::tokens::{self, KeysFrom, ProviderOptions, TokenOptions};

/// Every flag of the server binary.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerFlags {
    /// Address to listen on, HOST:PORT. Port 0 picks a free port (the bound one is logged).
    #[arg(long, env = "MRMAT_GRPC_LISTEN", value_name = "HOST:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// On SIGINT/SIGTERM, how long in-flight calls may take to finish before they are cancelled.
    #[arg(
        long,
        env = "MRMAT_GRPC_SHUTDOWN_GRACE",
        value_name = "SECONDS",
        default_value_t = Seconds(DEFAULT_SHUTDOWN_GRACE),
        value_parser = Seconds::positive
    )]
    pub shutdown_grace: Seconds,

    /// On SIGINT/SIGTERM, how long to keep serving while health checking reports NOT_SERVING,
    /// before the listener closes: time for load balancers and orchestrators to stop sending
    /// calls. A second signal cuts it short.
    #[arg(
        long,
        env = "MRMAT_GRPC_DRAIN_DELAY",
        value_name = "SECONDS",
        default_value_t = Seconds(Duration::ZERO),
        value_parser = Seconds::or_zero
    )]
    pub drain_delay: Seconds,

    /// Completion queues, each polled by its own thread, that handle calls (default: one per
    /// CPU core).
    #[arg(long, env = "MRMAT_GRPC_THREADS", value_name = "COUNT")]
    pub threads: Option<NonZeroUsize>,

    /// Do not serve server reflection (grpc.reflection.v1 and v1alpha), which lets anyone who
    /// can connect list the services and their messages.
    #[arg(long, env = "MRMAT_GRPC_NO_REFLECTION")]
    pub no_reflection: bool,

    /// Serve metrics in the Prometheus text format at http://HOST:PORT/metrics (a second
    /// port, plain HTTP; off unless given). Port 0 picks a free port (the bound one is logged).
    #[arg(long, env = "MRMAT_GRPC_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,

    #[command(flatten)]
    pub http: HttpFlags,

    #[command(flatten)]
    pub proxies: ProxyFlags,

    #[command(flatten)]
    pub store: StoreFlags,

    #[command(flatten)]
    pub tls: TlsFlags,

    #[command(flatten)]
    pub keepalive: KeepaliveFlags,

    #[command(flatten)]
    pub limits: LimitFlags,

    #[command(flatten)]
    pub tokens: TokenFlags,
}

/// What the HTTP ports (--metrics-listen) accept of each client; each port counts its own.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "HTTP ports")]
pub struct HttpFlags {
    /// Longest request head (request line and headers) in bytes; longer is answered 431 and the
    /// connection closed. A request line longer than 8 KiB is 414.
    #[arg(
        long,
        env = "MRMAT_GRPC_HTTP_MAX_HEAD_BYTES",
        value_name = "BYTES",
        default_value_t = http::DEFAULT_MAX_HEAD_BYTES,
        value_parser = RangedU64ValueParser::<usize>::new().range(http::MIN_HEAD_BYTES as u64..=1 << 30)
    )]
    pub http_max_head_bytes: usize,

    /// Most connections open at once on one port; the next is answered 503 (Retry-After: 1)
    /// and closed.
    #[arg(
        long,
        env = "MRMAT_GRPC_HTTP_MAX_CONNECTIONS",
        value_name = "COUNT",
        default_value_t = http::DEFAULT_MAX_CONNECTIONS,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000)
    )]
    pub http_max_connections: usize,

    /// How long a request's head may take to arrive from its first byte (then 408), and a
    /// response to be taken by the client (then the connection is closed).
    #[arg(
        long,
        env = "MRMAT_GRPC_HTTP_REQUEST_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = Seconds(http::DEFAULT_REQUEST_TIMEOUT),
        value_parser = Seconds::positive
    )]
    pub http_request_timeout: Seconds,

    /// How long a connection may wait for its next request before it is closed (longer than
    /// the proxies and scrapers keep theirs idle).
    #[arg(
        long,
        env = "MRMAT_GRPC_HTTP_IDLE_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = Seconds(http::DEFAULT_IDLE_TIMEOUT),
        value_parser = Seconds::positive
    )]
    pub http_idle_timeout: Seconds,
}

impl HttpFlags {
    fn limits(&self) -> http::HttpLimits {
        http::HttpLimits {
            max_head_bytes: self.http_max_head_bytes,
            max_connections: self.http_max_connections,
            request_timeout: self.http_request_timeout.into(),
            idle_timeout: self.http_idle_timeout.into(),
        }
    }
}

/// How proxies ask this service whether a request may through.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Behind a proxy (forward auth)")]
pub struct ProxyFlags {
    /// Answer forward-auth requests (nginx auth_request, Caddy forward_auth, Traefik
    /// ForwardAuth) at http://HOST:PORT/ (any path): 200 with the identity headers, 401 or 403
    /// with WWW-Authenticate, 503 when the token cannot be judged; `?scope=NAME` requires a scope.
    /// Plain HTTP, for the proxies only: keep it internal. Off unless given.
    #[arg(long, env = "MRMAT_GRPC_FORWARD_AUTH_LISTEN", value_name = "HOST:PORT")]
    pub forward_auth_listen: Option<String>,

    /// The header the forward-auth port reads the client's certificate from, for
    /// certificate-bound tokens (RFC 8705): client-cert (RFC 9440) or x-forwarded-client-cert
    /// (Envoy). Only when the port is reachable by the proxy alone, and the proxy replaces the
    /// client's own copy: anyone else could send one. Off unless given.
    #[arg(
        long,
        env = "MRMAT_GRPC_FORWARD_AUTH_CLIENT_CERT_HEADER",
        value_name = "HEADER",
        value_parser = crate::authz::ClientCertHeader::parse
    )]
    pub forward_auth_client_cert_header: Option<crate::authz::ClientCertHeader>,

    /// Pass a claim to the app in a header, besides x-auth-subject (the `sub`): a dotted path
    /// reaches a nested claim, a list is joined with commas. Repeat it for more.
    #[arg(
        long,
        env = "MRMAT_GRPC_CLAIM_HEADER",
        value_name = "CLAIM=HEADER",
        value_delimiter = ',',
        value_parser = ClaimHeader::parse
    )]
    pub claim_header: Vec<ClaimHeader>,

    /// The realm the WWW-Authenticate challenges name.
    #[arg(long, env = "MRMAT_GRPC_AUTH_REALM", value_name = "REALM", default_value = DEFAULT_REALM)]
    pub auth_realm: String,
}

/// Where resources and revocations are kept.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Storage")]
pub struct StoreFlags {
    /// Where resources and token revocations are kept: `sqlite:PATH` (an embedded database
    /// file, created with its directory when missing), `postgres://USER@HOST:PORT/DATABASE` (a
    /// PostgreSQL server, shared by replicas; the password from --store-password-file,
    /// MRMAT_GRPC_STORE_PASSWORD or PGPASSWORD), or `memory` (nothing kept after exit).
    #[arg(
        long,
        env = "MRMAT_GRPC_STORE",
        value_name = "STORE",
        default_value = store::DEFAULT_STORE
    )]
    pub store: String,

    /// File whose first line is the PostgreSQL password (a mounted secret, say).
    #[arg(long, env = "MRMAT_GRPC_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,

    /// How long a call may wait for the database (a connection, a statement) before it is
    /// answered UNAVAILABLE.
    #[arg(
        long,
        env = "MRMAT_GRPC_STORE_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = Seconds(store::DEFAULT_TIMEOUT),
        value_parser = Seconds::positive
    )]
    pub store_timeout: Seconds,
}

/// Transport security. Without a certificate the server speaks plaintext.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Transport security")]
pub struct TlsFlags {
    /// PEM certificate chain to present (leaf first). With --tls-key, the port speaks TLS only.
    #[arg(
        long,
        env = "MRMAT_GRPC_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the --tls-cert certificate (unencrypted).
    #[arg(
        long,
        env = "MRMAT_GRPC_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s). Turns on mutual TLS: every client must present a certificate
    /// issued by one of them, or its connection is refused.
    #[arg(
        long,
        env = "MRMAT_GRPC_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
}

/// How the server finds out that a connection's peer has gone silent, and how often it lets
/// clients check on it.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Keepalive")]
pub struct KeepaliveFlags {
    /// How long a connection may be quiet before the server pings it, calls open or not.
    #[arg(
        long,
        env = "MRMAT_GRPC_KEEPALIVE_TIME",
        value_name = "SECONDS",
        default_value_t = Seconds(DEFAULT_KEEPALIVE.time),
        value_parser = Seconds::positive
    )]
    pub keepalive_time: Seconds,

    /// How long the server waits for a ping's answer before it drops the connection (and with
    /// it every call on it).
    #[arg(
        long,
        env = "MRMAT_GRPC_KEEPALIVE_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = Seconds(DEFAULT_KEEPALIVE.timeout),
        value_parser = Seconds::positive
    )]
    pub keepalive_timeout: Seconds,

    /// The shortest interval between a client's keepalive pings that the server accepts, with
    /// calls open or not. A client pinging more often is sent a `too_many_pings` GOAWAY after
    /// two strikes, as gRPC specifies.
    #[arg(
        long,
        env = "MRMAT_GRPC_KEEPALIVE_MIN_PING_INTERVAL",
        value_name = "SECONDS",
        default_value_t = Seconds(DEFAULT_KEEPALIVE.min_ping_interval),
        value_parser = Seconds::positive
    )]
    pub keepalive_min_ping_interval: Seconds,
}

/// What one caller may ask of the server.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitFlags {
    /// Largest request message accepted, in bytes (the default, 1.25 MiB, holds the largest
    /// batch of questions; gRPC's own is 4 MiB). Larger ones are answered with
    /// RESOURCE_EXHAUSTED. Each stream and each unary call in flight may hold one message this
    /// large, read ahead: this bounds what a flood can make the server hold.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_REQUEST_BYTES",
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_REQUEST_BYTES,
        // The gRPC core takes this as a C int.
        value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX))
    )]
    pub max_request_bytes: u32,

    /// Longest resource name accepted by create and modify, in bytes of UTF-8.
    /// Longer ones are answered with INVALID_ARGUMENT.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_NAME_BYTES",
        value_name = "BYTES",
        default_value_t = apis::DEFAULT_MAX_NAME_BYTES
    )]
    pub max_name_bytes: usize,

    /// Most resources stored at once. Creates beyond it are answered with RESOURCE_EXHAUSTED
    /// until some are removed.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_RESOURCES",
        value_name = "COUNT",
        default_value_t = store::DEFAULT_MAX_RESOURCES
    )]
    pub max_resources: usize,

    /// Most calls (streams) open at once on one connection; a client's further calls wait for
    /// one to end.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_CONCURRENT_STREAMS",
        value_name = "COUNT",
        default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX))
    )]
    pub max_concurrent_streams: u32,

    /// The memory every ValidateStream and ValidateBatches stream together may hold, in bytes:
    /// questions read and not yet answered, answers written and not yet taken by their clients.
    /// While it is spent, a stream that holds some reads no further question (flow control holds
    /// its client back); a stream whose client has taken every answer always may.
    #[arg(
        long,
        env = "MRMAT_GRPC_STREAM_BUDGET",
        value_name = "BYTES",
        default_value_t = apis::DEFAULT_STREAM_BUDGET,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub stream_budget: usize,

    /// Most ValidateStream and ValidateBatches calls one connection may have open at once; one
    /// more is answered RESOURCE_EXHAUSTED at once. One stream carries any number of questions;
    /// each may hold a question the transport has read ahead (up to --max-request-bytes), so
    /// this bounds what one connection can make the server hold.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_TOKEN_STREAMS_PER_CONNECTION",
        value_name = "COUNT",
        default_value_t = apis::DEFAULT_STREAMS_PER_CONNECTION,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000)
    )]
    pub max_token_streams_per_connection: usize,
}

/// The token service's settings. Without an identity provider (`--oidc-issuer`, `--jwks-file`
/// or `--jwks-url` with `--token-issuer`, or `--config`) it is not served.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Token validation (TokenV1Proto): identity providers")]
pub struct TokenFlags {
    /// An identity provider by its issuer URL, e.g. https://id.example/realms/apps: its keys
    /// are found by OpenID Connect Discovery (ISSUER/.well-known/openid-configuration, whose
    /// `issuer` must be this URL exactly, then its `jwks_uri`), fetched at start, every
    /// --jwks-refresh, on SIGHUP and on an unknown kid (at most once every 30 s). Its keys verify
    /// only tokens whose `iss` is this URL. https only (plain http only to a loopback address).
    /// Repeat it, or separate several with commas, one provider each.
    #[arg(
        long,
        env = "MRMAT_GRPC_OIDC_ISSUER",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub oidc_issuer: Vec<String>,

    /// A providers file (TOML), one [[provider]] table each, for what flags cannot say: a
    /// provider's own audiences, leeway and CA, or its keys from a jwks_url or jwks_file. Read
    /// again on SIGHUP; a file that no longer reads keeps the providers as they were. See the
    /// README for its keys.
    #[arg(long, env = "MRMAT_GRPC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A JSON Web Key Set file holding the public keys of the --token-issuer issuers. Read at
    /// start (a file that cannot be read or holds no usable key stops the server), again on
    /// SIGHUP, and when a token names a key id (kid) that is not loaded (at most once every 30 s).
    #[arg(
        long,
        env = "MRMAT_GRPC_JWKS_FILE",
        value_name = "PATH",
        conflicts_with = "jwks_url",
        requires = "token_issuer"
    )]
    pub jwks_file: Option<PathBuf>,

    /// URL of a JSON Web Key Set (a provider's `jwks_uri`) holding the keys of the
    /// --token-issuer issuers, fetched like an --oidc-issuer's. https only (plain http only to a
    /// loopback address).
    #[arg(
        long,
        env = "MRMAT_GRPC_JWKS_URL",
        value_name = "URL",
        requires = "token_issuer"
    )]
    pub jwks_url: Option<String>,

    /// How often fetched keys (--oidc-issuer, --jwks-url, the providers file's) are fetched
    /// again; sooner, with backoff, after a failure.
    #[arg(
        long,
        env = "MRMAT_GRPC_JWKS_REFRESH",
        value_name = "SECONDS",
        default_value_t = Seconds(tokens::DEFAULT_JWKS_REFRESH),
        value_parser = Seconds::positive
    )]
    pub jwks_refresh: Seconds,

    /// PEM CA certificate(s) to trust for the https URLs of --oidc-issuer and --jwks-url
    /// instead of the system's roots (the providers file gives each provider its own ca_cert).
    #[arg(long, env = "MRMAT_GRPC_JWKS_CA_CERT", value_name = "PEM")]
    pub jwks_ca_cert: Option<PathBuf>,

    /// An issuer (`iss`) whose tokens --jwks-file or --jwks-url verifies; repeat it, or
    /// separate several with commas. Required with them, so that a key set cannot admit tokens
    /// of an issuer it does not belong to.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_ISSUER",
        value_name = "ISS",
        value_delimiter = ','
    )]
    pub token_issuer: Vec<String>,

    /// An audience (`aud`) that the tokens of the providers given by flags must name; repeat
    /// it, or separate several with commas. When given, a token is accepted only if its `aud`
    /// names one of them.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ','
    )]
    pub token_audience: Vec<String>,

    /// Clock skew tolerated when checking `exp` and `nbf` of the providers given by flags.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_LEEWAY",
        value_name = "SECONDS",
        default_value_t = tokens::DEFAULT_LEEWAY_SECONDS
    )]
    pub token_leeway: u32,

    /// Valid tokens remembered (by a hash of the token, never past their expiry), so that a
    /// token presented again is not verified again. 0 turns the cache off.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_CACHE",
        value_name = "ENTRIES",
        default_value_t = tokens::DEFAULT_CACHE_ENTRIES
    )]
    pub token_cache: usize,

    /// The memory the cache of valid tokens may hold, in bytes: each entry weighs what it holds
    /// (a token's claims, and what is made of them for answers), so tokens with large claims take
    /// more room; the least used go first. 0 turns the cache off.
    #[arg(
        long,
        env = "MRMAT_GRPC_TOKEN_CACHE_BYTES",
        value_name = "BYTES",
        default_value_t = tokens::DEFAULT_CACHE_BYTES
    )]
    pub token_cache_bytes: u64,

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
        default_value_t = Seconds(tokens::DEFAULT_REVOCATION_MAX_TTL),
        value_parser = Seconds::positive
    )]
    pub revocation_max_ttl: Seconds,

    /// Most unexpired revocations held at once; Revoke beyond it is answered
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_REVOCATIONS",
        value_name = "COUNT",
        default_value_t = store::DEFAULT_MAX_REVOCATIONS
    )]
    pub max_revocations: usize,

    /// The algorithms a DPoP proof (RFC 9449) may be signed with; comma separated. Asymmetric
    /// ones only: none and HMAC never are.
    #[arg(
        long,
        env = "MRMAT_GRPC_DPOP_ALGORITHMS",
        value_name = "ALG",
        value_delimiter = ',',
        default_value = "ES256,ES384,PS256,PS384,PS512,EdDSA",
        value_parser = dpop_algorithm
    )]
    pub dpop_algorithms: Vec<jsonwebtoken::Algorithm>,

    /// How far a DPoP proof's iat may be from now, either way; each accepted proof's jti is
    /// remembered that long against replay.
    #[arg(
        long,
        env = "MRMAT_GRPC_DPOP_WINDOW",
        value_name = "SECONDS",
        default_value_t = Seconds(tokens::binding::DEFAULT_DPOP_WINDOW),
        value_parser = Seconds::positive
    )]
    pub dpop_window: Seconds,

    /// Most DPoP proofs remembered against replay at once; beyond it a proof cannot be judged
    /// (UNAVAILABLE, 503) until older ones leave the window.
    #[arg(
        long,
        env = "MRMAT_GRPC_DPOP_REPLAY_ENTRIES",
        value_name = "COUNT",
        default_value_t = tokens::binding::DEFAULT_DPOP_REPLAY_ENTRIES
    )]
    pub dpop_replay_entries: usize,

    /// A file holding a secret of at least 32 bytes that every replica shares: DPoP proofs must
    /// then carry a server nonce (RFC 9449 section 8), made and checked from it and the time.
    #[arg(long, env = "MRMAT_GRPC_DPOP_NONCE_SECRET_FILE", value_name = "FILE")]
    pub dpop_nonce_secret_file: Option<PathBuf>,
}

/// A DPoP algorithm's name, as clap reads it.
fn dpop_algorithm(name: &str) -> Result<jsonwebtoken::Algorithm, String> {
    tokens::binding::dpop_algorithm(name)
}

impl ServerFlags {
    /// The configuration these flags describe, or every problem with reading them, one line
    /// each. (Flags that cannot go together at all are clap's usage errors, before this; what
    /// makes a configuration unusable is [`ServerConfig::validate`]'s, which the server runs.)
    pub fn into_config(self) -> Result<ServerConfig, Vec<String>> {
        let mut problems = Vec::new();
        let listen =
            ListenAddress::parse(&self.listen).map_err(|why| problems.push(why.to_string()));
        let location = StoreLocation::parse(&self.store.store)
            .map_err(|e| problems.push(format!("store: {e}")));
        let (Ok(listen), Ok(location)) = (listen, location) else {
            return Err(problems);
        };
        problems.extend(self.tokens.problems());
        let config = ServerConfig {
            listen,
            shutdown_grace: self.shutdown_grace.into(),
            drain_delay: self.drain_delay.into(),
            threads: self.threads,
            reflection: !self.no_reflection,
            metrics_listen: self.metrics_listen,
            http: self.http.limits(),
            forward_auth_listen: self.proxies.forward_auth_listen,
            forward_auth_client_cert: self.proxies.forward_auth_client_cert_header,
            policy: AuthzPolicy {
                realm: self.proxies.auth_realm,
                claim_headers: self.proxies.claim_header,
                routes: Default::default(),
            },
            tls: self.tls.config(),
            keepalive: self.keepalive.config(),
            limits: TransportLimits {
                max_request_bytes: self.limits.max_request_bytes,
                max_concurrent_streams: self.limits.max_concurrent_streams,
            },
            store: StoreOptions {
                location,
                password_file: self.store.store_password_file,
                timeout: self.store.store_timeout.into(),
                capacity: Capacity {
                    max_resources: self.limits.max_resources,
                    max_revocations: self.tokens.max_revocations,
                },
            },
            tokens: self.tokens.options(),
            providers_file: self.tokens.config.clone(),
            apis: ApiOptions {
                max_name_bytes: self.limits.max_name_bytes,
                token_admins: self.tokens.token_admin,
                stream_budget: self.limits.stream_budget,
                streams_per_connection: self.limits.max_token_streams_per_connection,
            },
        };
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

impl TlsFlags {
    fn config(self) -> TlsConfig {
        TlsConfig {
            cert: self.tls_cert,
            key: self.tls_key,
            client_ca: self.tls_client_ca,
        }
    }
}

impl KeepaliveFlags {
    fn config(&self) -> Keepalive {
        Keepalive {
            time: self.keepalive_time.into(),
            timeout: self.keepalive_timeout.into(),
            min_ping_interval: self.keepalive_min_ping_interval.into(),
        }
    }
}

impl TokenFlags {
    /// The providers the flags give, one per issuer, each with the flags' audiences, leeway and
    /// CA.
    fn options(&self) -> TokenOptions {
        let keys = match (&self.jwks_file, &self.jwks_url) {
            (Some(path), _) => Some(KeysFrom::File(path.clone())),
            (None, Some(url)) => Some(KeysFrom::Url(url.clone())),
            (None, None) => None,
        };
        let provider = |issuer: &str, keys: KeysFrom| ProviderOptions {
            issuer: issuer.to_owned(),
            ca_cert: match keys {
                KeysFrom::File(_) => None,
                _ => self.jwks_ca_cert.clone(),
            },
            keys,
            audiences: self.token_audience.clone(),
            leeway_seconds: self.token_leeway,
            introspection: None,
        };
        let mut providers: Vec<ProviderOptions> = self
            .oidc_issuer
            .iter()
            .map(|issuer| provider(issuer, KeysFrom::Discovery))
            .collect();
        if let Some(keys) = keys {
            providers.extend(
                self.token_issuer
                    .iter()
                    .map(|issuer| provider(issuer, keys.clone())),
            );
        }
        TokenOptions {
            providers,
            jwks_refresh: self.jwks_refresh.into(),
            cache_entries: self.token_cache,
            cache_bytes: self.token_cache_bytes,
            revocation_max_ttl: self.revocation_max_ttl.into(),
            dpop: tokens::binding::DpopOptions {
                algorithms: self.dpop_algorithms.clone(),
                window: self.dpop_window.into(),
                replay_entries: self.dpop_replay_entries.max(1),
                nonce_secret_file: self.dpop_nonce_secret_file.clone(),
            },
        }
    }

    /// Flags that say nothing as given, one sentence each.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.token_issuer.is_empty() && self.jwks_file.is_none() && self.jwks_url.is_none() {
            problems.push(
                "--token-issuer names the issuers whose keys --jwks-file or --jwks-url holds, and \
                 neither is given (an --oidc-issuer is its own issuer)"
                    .to_owned(),
            );
        }
        let by_flags = !self.oidc_issuer.is_empty() || self.jwks_url.is_some();
        if self.jwks_ca_cert.is_some() && !by_flags {
            problems.push(
                "--jwks-ca-cert is for the URLs of --oidc-issuer and --jwks-url, and neither is \
                 given (a providers file gives each provider its own ca_cert)"
                    .to_owned(),
            );
        }
        if !self.token_audience.is_empty() && !by_flags && self.jwks_file.is_none() {
            problems.push(
                "--token-audience is for the providers given by flags, and none is (a \
                 providers file gives each provider its own audiences)"
                    .to_owned(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Binary {
        #[command(flatten)]
        flags: ServerFlags,
    }

    fn config(args: &[&str]) -> Result<ServerConfig, Vec<String>> {
        let args = std::iter::once("server").chain(args.iter().copied());
        Binary::try_parse_from(args)
            .expect("flags that parse")
            .flags
            .into_config()
            .and_then(|config| config.validate().map(|()| config))
    }

    #[test]
    fn no_flags_give_the_defaults() {
        let made = config(&[]).expect("the defaults are usable");
        let defaults = ServerConfig::default();
        assert_eq!(made.listen, defaults.listen);
        assert_eq!(made.shutdown_grace, defaults.shutdown_grace);
        assert_eq!(made.drain_delay, defaults.drain_delay);
        assert_eq!(made.reflection, defaults.reflection);
        assert_eq!(made.tls, defaults.tls);
        assert_eq!(made.keepalive, defaults.keepalive);
        assert_eq!(made.limits, defaults.limits);
        assert_eq!(made.store, defaults.store);
        assert_eq!(made.tokens, defaults.tokens);
        assert_eq!(made.apis, defaults.apis);
    }

    #[test]
    fn every_problem_is_one_line_of_its_own() {
        let problems = config(&["--listen", "nonsense", "--store", "mysql://root:pw@db"])
            .expect_err("two problems");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("invalid listen address `nonsense`"));
        assert!(problems[1].starts_with("store: --store `mysql:...`"));
        assert!(!problems[1].contains("pw"), "{problems:?}");
    }

    #[test]
    fn admins_without_mutual_tls_are_refused() {
        let problems = config(&[
            "--jwks-file",
            "k.json",
            "--token-issuer",
            "i",
            "--token-admin",
            "ops",
        ])
        .expect_err("no client CA");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("--token-admin needs mutual TLS"));
    }

    #[test]
    fn token_flags_become_token_options() {
        let made = config(&[
            "--jwks-url",
            "https://id.example/jwks",
            "--jwks-ca-cert",
            "ca.pem",
            "--token-issuer",
            "a,b",
            "--jwks-refresh",
            "0.5",
            "--max-revocations",
            "7",
        ])
        .expect("usable");
        let providers = &made.tokens.providers;
        assert_eq!(providers.len(), 2, "one provider per issuer: {providers:?}");
        for (provider, issuer) in providers.iter().zip(["a", "b"]) {
            assert_eq!(provider.issuer, issuer);
            assert_eq!(
                provider.keys,
                KeysFrom::Url("https://id.example/jwks".to_owned())
            );
            assert_eq!(provider.ca_cert, Some("ca.pem".into()));
        }
        assert_eq!(made.tokens.jwks_refresh, Duration::from_millis(500));
        assert_eq!(made.store.capacity.max_revocations, 7);
    }

    #[test]
    fn each_oidc_issuer_is_a_provider_of_its_own() {
        let made = config(&[
            "--oidc-issuer",
            "https://a.example,https://b.example/realms/x",
            "--token-audience",
            "api",
            "--config",
            "providers.toml",
        ])
        .expect("usable");
        let providers = &made.tokens.providers;
        assert_eq!(providers.len(), 2);
        assert!(providers
            .iter()
            .all(|p| p.keys == KeysFrom::Discovery && p.audiences == ["api"]));
        assert_eq!(providers[1].issuer, "https://b.example/realms/x");
        assert_eq!(made.providers_file, Some("providers.toml".into()));
    }

    #[test]
    fn provider_flags_without_a_provider_by_flags_are_refused() {
        let problems = config(&["--config", "p.toml", "--jwks-ca-cert", "ca.pem"])
            .expect_err("nothing to trust it for");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("--jwks-ca-cert"), "{problems:?}");
        let problems =
            config(&["--oidc-issuer", "http://id.example"]).expect_err("plain http elsewhere");
        assert!(problems[0].contains("https only"), "{problems:?}");
    }
}
