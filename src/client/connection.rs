//! A channel to the server, plaintext or TLS, and what every call needs to report errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, Channel, ChannelBuilder, ChannelCredentialsBuilder, EnvBuilder};
use grpcio::{ChannelCredentials, RpcStatusCode};

use super::error::ClientError;
use super::output::OutputFormat;
use super::servers::{Servers, ServersError};
use crate::tls::{self, TlsError};

/// Where a client connects unless told otherwise, as the original did.
pub const DEFAULT_SERVER: &str = "localhost:50051";

/// The deadline of a call (and of a validation) unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a client could not be set up to call a server: its TLS files, or its server list.
#[derive(Debug)]
pub struct ConnectError(Box<ConnectErrorKind>);

/// What stopped a client from being set up, for callers to match on.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// A certificate or key file is missing, unreadable or inconsistent.
    Tls(TlsError),
    /// The server list names no server a client may call.
    Servers(ServersError),
}

impl ConnectError {
    /// What stopped it.
    pub fn kind(&self) -> &ConnectErrorKind {
        &self.0
    }

    /// What stopped it, taken out.
    pub fn into_kind(self) -> ConnectErrorKind {
        *self.0
    }
}

impl From<TlsError> for ConnectError {
    fn from(e: TlsError) -> Self {
        Self(Box::new(ConnectErrorKind::Tls(e)))
    }
}

impl From<ServersError> for ConnectError {
    fn from(e: ServersError) -> Self {
        Self(Box::new(ConnectErrorKind::Servers(e)))
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind() {
            ConnectErrorKind::Tls(e) => write!(f, "TLS: {e}"),
            ConnectErrorKind::Servers(e) => write!(f, "--server: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// How the client secures the channel: any of these turns TLS on. The client's flags
/// (`cli`) fill them in; an app fills them in itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Speak TLS, trusting the system's root certificates (or `ca_cert`'s).
    pub tls: bool,
    /// PEM CA certificate(s) to trust instead of the system roots.
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate chain to present for mutual TLS, with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert` (unencrypted).
    pub client_key: Option<PathBuf>,
    /// Name the server's certificate must be issued to, when it is not the host connected to.
    pub tls_server_name: Option<String>,
}

impl TlsOptions {
    /// Whether these options ask for TLS.
    pub fn enabled(&self) -> bool {
        self.tls
            || self.ca_cert.is_some()
            || self.client_cert.is_some()
            || self.tls_server_name.is_some()
    }

    /// The certificates and keys these options name, read and checked once, for opening
    /// channels again and again.
    pub fn load(&self) -> Result<LoadedTls, TlsError> {
        if !self.enabled() {
            return Ok(LoadedTls::default());
        }
        let root = self
            .ca_cert
            .as_deref()
            .map(tls::read_certificates)
            .transpose()?;
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let identity = tls::read_identity(cert, key)?;
                Some((identity.cert_chain, identity.key))
            }
            _ => None,
        };
        Ok(LoadedTls {
            enabled: true,
            root,
            identity,
            server_name: self.tls_server_name.clone(),
        })
    }

    /// A channel to `server` with these options.
    pub fn connect(&self, builder: ChannelBuilder, server: &str) -> Result<Channel, TlsError> {
        Ok(self.load()?.connect(builder, server))
    }
}

/// Where and how a client reaches the server, as the client's `--server`, `--timeout`, TLS
/// flags and `--output` say: what every subcommand, and `bench`, is given.
pub struct Target<'a> {
    /// One server, or several replicas (see [`Servers`]).
    pub server: &'a str,
    /// Deadline of each call, and of connecting.
    pub timeout: Duration,
    /// How the channel is secured.
    pub tls: &'a TlsOptions,
    /// Text or JSON.
    pub output: OutputFormat,
}

/// [`TlsOptions`] with their files read: plaintext, or TLS with what to trust and present.
#[derive(Clone, Debug, Default)]
pub struct LoadedTls {
    enabled: bool,
    root: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl LoadedTls {
    /// The credentials, or None for plaintext.
    pub fn credentials(&self) -> Option<ChannelCredentials> {
        if !self.enabled {
            return None;
        }
        let mut builder = ChannelCredentialsBuilder::new();
        if let Some(root) = &self.root {
            builder = builder.root_cert(root.clone());
        }
        if let Some((chain, key)) = &self.identity {
            builder = builder.cert(chain.clone(), key.clone());
        }
        Some(builder.build())
    }

    /// A channel to `server`, secured as these options say.
    pub fn connect(&self, builder: ChannelBuilder, server: &str) -> Channel {
        self.connect_named(builder, server, None)
    }

    /// A channel to `target`; over TLS the server's certificate must be issued to `name`
    /// unless --tls-server-name says otherwise (a target listing addresses names no host).
    pub(crate) fn connect_named(
        &self,
        builder: ChannelBuilder,
        target: &str,
        name: Option<&str>,
    ) -> Channel {
        let Some(credentials) = self.credentials() else {
            return builder.connect(target);
        };
        let mut builder = builder.set_credentials(credentials);
        if let Some(name) = self.server_name.as_deref().or(name) {
            builder = builder.override_ssl_target(name);
        }
        builder.connect(target)
    }
}

/// A channel to the server plus what every call needs to report errors.
pub(crate) struct Connection {
    pub(crate) channel: Channel,
    /// How answers are printed.
    pub(crate) output: OutputFormat,
    server: String,
    timeout: Duration,
}

impl Connection {
    /// Opens a channel to `server` (one or several, see [`Servers`]); the connection itself is
    /// made by the first call. `service` is the `grpc.health.v1` name of the API called, whose
    /// health decides which replicas get calls when there are several.
    pub(crate) fn open(
        server: &str,
        timeout: Duration,
        output: OutputFormat,
        tls: &TlsOptions,
        service: &str,
    ) -> Result<Self, ConnectError> {
        // Checked before any thread is started.
        let servers = Servers::new(server)?;
        let tls = tls.load()?;
        let env = Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("grpc-client")
                .build(),
        );
        let channel = servers.connect(ChannelBuilder::new(env), &tls, service);
        Ok(Self {
            channel,
            output,
            server: servers.describe().to_owned(),
            timeout,
        })
    }

    /// Options for one call: the deadline.
    pub(crate) fn call_option(&self) -> CallOption {
        CallOption::default().timeout(self.timeout)
    }

    /// The server the calls go to, as the user named it.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Turns a failed call into an error that names the server.
    pub(crate) fn error(&self, e: grpcio::Error) -> ClientError {
        let (code, detail) = match e {
            grpcio::Error::RpcFailure(status) => (status.code(), status.message().to_owned()),
            other => (RpcStatusCode::UNKNOWN, other.to_string()),
        };
        // One line on stderr, whatever the core put in the message.
        let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
        let server = self.server.clone();
        match code {
            RpcStatusCode::UNAVAILABLE => ClientError::Unreachable { server, detail },
            RpcStatusCode::DEADLINE_EXCEEDED => ClientError::DeadlineExceeded {
                server,
                timeout: self.timeout,
            },
            code => ClientError::Failed {
                server,
                code,
                detail,
            },
        }
    }
}
