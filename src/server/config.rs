//! What a server is told to do: [`ServerConfig`], the plain values the server, the store, token
//! validation and the APIs run on, and [`ServerConfig::validate`], the one check of them, which
//! the server runs before it starts (however the configuration was made: from the flags, by
//! `super::flags`, or written by a test or an embedding program). Each default is written once,
//! as a constant beside what reads it, and `--help` shows it from there.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::ListenAddress;
use crate::apis::ApiOptions;
use crate::authz::AuthzPolicy;
use crate::http;
use crate::store::StoreOptions;
use crate::tokens::TokenOptions;

/// The realm of the challenges proxies pass back to clients unless told otherwise: the service.
pub const DEFAULT_REALM: &str = "mrmat-rust-api-grpc";

/// Where the server listens unless told otherwise, as the original did.
pub const DEFAULT_LISTEN: &str = "localhost:50051";

/// How long calls in flight may take at shutdown unless told otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The largest message a server receives unless told otherwise: 1.25 MiB, the largest the
/// contract has (a full batch, 1 MiB of tokens with the framing of 1,000 questions) and room to
/// spare. gRPC's own default, 4 MiB, let every stream of a flood hold 4 MiB that the transport
/// reads ahead of it, and every unary call in flight as much.
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1280 * 1024;

/// Calls open at once on one connection unless told otherwise (HTTP/2's
/// SETTINGS_MAX_CONCURRENT_STREAMS; 100 is the value RFC 9113 recommends as the least).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Keepalive unless told otherwise: a quiet connection is pinged after 30 s, dropped when a
/// ping is not answered within 10 s; clients may ping every second.
pub const DEFAULT_KEEPALIVE: Keepalive = Keepalive {
    time: Duration::from_secs(30),
    timeout: Duration::from_secs(10),
    min_ping_interval: Duration::from_secs(1),
};

/// How the server is run: plain values, checked. Made from flags by [`super::ServerFlags::into_config`],
/// or written directly (tests, an embedding program) starting from [`ServerConfig::default`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: ListenAddress,
    /// On SIGINT/SIGTERM, how long calls in flight may take before they are cancelled.
    pub shutdown_grace: Duration,
    /// On SIGINT/SIGTERM, how long to keep serving while health says NOT_SERVING.
    pub drain_delay: Duration,
    /// Completion queues, each polled by its own thread; None: one per CPU core.
    pub threads: Option<NonZeroUsize>,
    /// Whether server reflection is served.
    pub reflection: bool,
    /// Where to serve Prometheus metrics, HOST:PORT; None: nowhere.
    pub metrics_listen: Option<String>,
    /// What each HTTP port accepts of its clients.
    pub http: http::HttpLimits,
    /// Where to answer proxies' forward-auth requests, HOST:PORT; None: nowhere.
    pub forward_auth_listen: Option<String>,
    /// The header the forward-auth port trusts to carry the client's certificate; None: no
    /// certificate is read there.
    pub forward_auth_client_cert: Option<crate::authz::ClientCertHeader>,
    /// How proxies' requests are judged (the realm, the identity headers).
    pub policy: AuthzPolicy,
    /// Transport security.
    pub tls: TlsConfig,
    /// Keepalive of connections.
    pub keepalive: Keepalive,
    /// What the transport accepts of one caller.
    pub limits: TransportLimits,
    /// Where resources and revocations are kept.
    pub store: StoreOptions,
    /// How tokens are validated; without a provider, the token service is not served.
    pub tokens: TokenOptions,
    /// A providers file (TOML) describing more identity providers than `tokens` names, read at
    /// start and again on SIGHUP.
    pub providers_file: Option<PathBuf>,
    /// What the APIs are told.
    pub apis: ApiOptions,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ListenAddress::parse(DEFAULT_LISTEN).expect("the default listen address"),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            drain_delay: Duration::ZERO,
            threads: None,
            reflection: true,
            metrics_listen: None,
            http: http::HttpLimits::default(),
            forward_auth_listen: None,
            forward_auth_client_cert: None,
            policy: AuthzPolicy {
                realm: DEFAULT_REALM.to_owned(),
                claim_headers: Vec::new(),
                routes: Default::default(),
            },
            tls: TlsConfig::default(),
            keepalive: DEFAULT_KEEPALIVE,
            limits: TransportLimits::default(),
            store: StoreOptions::default(),
            tokens: TokenOptions::default(),
            providers_file: None,
            apis: ApiOptions::default(),
        }
    }
}

impl ServerConfig {
    /// The completion queues to run: as asked, or one per CPU core.
    pub fn threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n.get(),
        )
    }

    /// Checks that this configuration can be used: `Err` holds what makes it unusable, one line
    /// each, prefixed as the start-up error says it. The server runs it once, before it starts.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems: Vec<String> = self
            .tokens
            .problems()
            .into_iter()
            .map(|problem| format!("tokens: {problem}"))
            .collect();
        if !self.apis.token_admins.is_empty() && self.tls.mode() != TlsMode::MutualTls {
            problems.push(
                "--token-admin needs mutual TLS (--tls-cert, --tls-key and --tls-client-ca): \
                 admins are recognised by their client certificates"
                    .to_owned(),
            );
        }
        if self.forward_auth_listen.is_some()
            && !self.tokens.enabled()
            && self.providers_file.is_none()
        {
            problems.push(
                "--forward-auth-listen needs an identity provider (--oidc-issuer, --jwks-file or \
                 --jwks-url, or --config): it judges tokens"
                    .to_owned(),
            );
        }
        problems.extend(
            self.http
                .problems()
                .into_iter()
                .map(|problem| format!("HTTP ports: {problem}")),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Transport security. Without a certificate the server speaks plaintext.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain to present (leaf first); with `key`, the port speaks TLS only.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (unencrypted).
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates must be issued by: mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// How the channel is secured, as a log line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// No encryption.
    Plaintext,
    /// The server is authenticated and the channel encrypted.
    Tls,
    /// Both ends are authenticated.
    MutualTls,
}

impl TlsConfig {
    /// The mode these files select.
    pub fn mode(&self) -> TlsMode {
        match (&self.cert, &self.client_ca) {
            (None, _) => TlsMode::Plaintext,
            (Some(_), None) => TlsMode::Tls,
            (Some(_), Some(_)) => TlsMode::MutualTls,
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "plaintext",
            Self::Tls => "TLS",
            Self::MutualTls => "mutual TLS",
        })
    }
}

/// How the server finds out that a connection's peer has gone silent, and how often it lets
/// clients check on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How long a connection may be quiet before it is pinged, calls open or not.
    pub time: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    pub timeout: Duration,
    /// The shortest interval between a client's pings that the server accepts.
    pub min_ping_interval: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        DEFAULT_KEEPALIVE
    }
}

/// What the transport accepts of one caller (the limits the APIs and the store enforce are
/// theirs: [`ApiOptions`], [`crate::store::Capacity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportLimits {
    /// Largest request message, in bytes; larger ones get RESOURCE_EXHAUSTED.
    pub max_request_bytes: u32,
    /// Most calls (streams) open at once on one connection.
    pub max_concurrent_streams: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        }
    }
}
