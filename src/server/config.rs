//! What a server is told to do: where to listen, how to secure the channel, how much to accept,
//! how to validate tokens.
//! Every field is a flag of the server binary and an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use crate::seconds::{parse_seconds, parse_seconds_or_zero};
use crate::store::StoreConfig;
use crate::tokens::TokenConfig;

/// Where the server listens unless told otherwise, as the original did.
pub const DEFAULT_LISTEN: &str = "localhost:50051";

/// gRPC's own default for the largest message a server receives.
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 4 * 1024 * 1024;

/// Longest resource name accepted unless told otherwise.
pub const DEFAULT_MAX_NAME_BYTES: usize = 1024;

/// Most resources held at once unless told otherwise.
pub const DEFAULT_MAX_RESOURCES: usize = 1_000_000;

/// Calls open at once on one connection unless told otherwise (HTTP/2's
/// SETTINGS_MAX_CONCURRENT_STREAMS; 100 is the value RFC 9113 recommends as the least).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;

/// How the server is run.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerConfig {
    /// Address to listen on, HOST:PORT. Port 0 picks a free port (the bound one is logged).
    #[arg(long, env = "MRMAT_GRPC_LISTEN", value_name = "HOST:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// On SIGINT/SIGTERM, how long in-flight calls may take to finish before they are cancelled.
    #[arg(
        long,
        env = "MRMAT_GRPC_SHUTDOWN_GRACE",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = parse_seconds
    )]
    pub shutdown_grace: Duration,

    /// On SIGINT/SIGTERM, how long to keep serving while health checking reports NOT_SERVING,
    /// before the listener closes: time for load balancers and orchestrators to stop sending
    /// calls. A second signal cuts it short.
    #[arg(
        long,
        env = "MRMAT_GRPC_DRAIN_DELAY",
        value_name = "SECONDS",
        default_value = "0",
        value_parser = parse_seconds_or_zero
    )]
    pub drain_delay: Duration,

    /// Completion queues, each polled by its own thread, that handle calls (default: one per
    /// CPU core).
    #[arg(long, env = "MRMAT_GRPC_THREADS", value_name = "COUNT")]
    pub threads: Option<std::num::NonZeroUsize>,

    /// Do not serve server reflection (grpc.reflection.v1 and v1alpha), which lets anyone who
    /// can connect list the services and their messages.
    #[arg(long, env = "MRMAT_GRPC_NO_REFLECTION")]
    pub no_reflection: bool,

    /// Serve metrics in the Prometheus text format at http://HOST:PORT/metrics (a second
    /// port, plain HTTP; off unless given). Port 0 picks a free port (the bound one is logged).
    #[arg(long, env = "MRMAT_GRPC_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,

    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub tls: TlsConfig,

    #[command(flatten)]
    pub keepalive: Keepalive,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub tokens: TokenConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            shutdown_grace: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            threads: None,
            no_reflection: false,
            metrics_listen: None,
            store: StoreConfig::default(),
            tls: TlsConfig::default(),
            keepalive: Keepalive::default(),
            limits: Limits::default(),
            tokens: TokenConfig::default(),
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

    /// Whether server reflection is served.
    pub fn reflection(&self) -> bool {
        !self.no_reflection
    }
}

/// Transport security. Without a certificate the server speaks plaintext.
#[derive(Clone, Debug, Default, clap::Args)]
#[command(next_help_heading = "Transport security")]
pub struct TlsConfig {
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
    /// The mode these flags select.
    pub fn mode(&self) -> TlsMode {
        match (&self.tls_cert, &self.tls_client_ca) {
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
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Keepalive")]
pub struct Keepalive {
    /// How long a connection may be quiet before the server pings it, calls open or not.
    #[arg(
        long,
        env = "MRMAT_GRPC_KEEPALIVE_TIME",
        value_name = "SECONDS",
        default_value = "30",
        value_parser = parse_seconds
    )]
    pub keepalive_time: Duration,

    /// How long the server waits for a ping's answer before it drops the connection (and with
    /// it every call on it).
    #[arg(
        long,
        env = "MRMAT_GRPC_KEEPALIVE_TIMEOUT",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = parse_seconds
    )]
    pub keepalive_timeout: Duration,

    /// The shortest interval between a client's keepalive pings that the server accepts, with
    /// calls open or not. A client pinging more often is sent a `too_many_pings` GOAWAY after
    /// two strikes, as gRPC specifies.
    #[arg(
        long,
        env = "MRMAT_GRPC_KEEPALIVE_MIN_PING_INTERVAL",
        value_name = "SECONDS",
        default_value = "1",
        value_parser = parse_seconds
    )]
    pub keepalive_min_ping_interval: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            keepalive_time: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            keepalive_min_ping_interval: Duration::from_secs(1),
        }
    }
}

/// What one caller may ask of the server.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Largest request message accepted, in bytes (the default, 4 MiB, is gRPC's own).
    /// Larger ones are answered with RESOURCE_EXHAUSTED.
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
        default_value_t = DEFAULT_MAX_NAME_BYTES
    )]
    pub max_name_bytes: usize,

    /// Most resources stored at once. Creates beyond it are answered with RESOURCE_EXHAUSTED
    /// until some are removed.
    #[arg(
        long,
        env = "MRMAT_GRPC_MAX_RESOURCES",
        value_name = "COUNT",
        default_value_t = DEFAULT_MAX_RESOURCES
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_resources: DEFAULT_MAX_RESOURCES,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        }
    }
}
