//! Configuration -> a running grpcio server: the services registered, TLS set up, the address
//! bound. A new API version is registered in [`start_with_store`].

mod address;
mod config;

use std::ffi::CString;
use std::fmt;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use grpcio::{
    CertificateRequestType, ChannelBuilder, EnvBuilder, Server, ServerBuilder, ServerCredentials,
    ServerCredentialsBuilder,
};

pub use address::ListenAddress;
pub use config::{
    Limits, ServerConfig, TlsConfig, TlsMode, DEFAULT_LISTEN, DEFAULT_MAX_NAME_BYTES,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESOURCES,
};

use crate::apis;
use crate::store::{MemoryStore, ResourceStore};
use crate::tls::{self, TlsError};

/// Why a server did not start.
#[derive(Debug)]
pub enum ServerError {
    /// The listen address is not HOST:PORT.
    InvalidAddress { address: String, reason: String },
    /// The address is well-formed but cannot be listened on (in use, not local, ...).
    Bind { address: String, reason: String },
    /// A certificate, key or CA file is missing, unreadable or inconsistent.
    Tls(TlsError),
    /// The gRPC core refused to build the server.
    Build(grpcio::Error),
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidAddress { address, reason } => {
                write!(f, "invalid listen address `{address}`: {reason}")
            }
            Self::Bind { address, reason } => write!(f, "cannot listen on {address}: {reason}"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Build(e) => write!(f, "cannot build the gRPC server: {e}"),
            Self::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// A server that is accepting calls. Dropping it stops it at once; [`RunningServer::shutdown`]
/// stops it gracefully.
pub struct RunningServer {
    server: Server,
    address: ListenAddress,
}

impl RunningServer {
    /// The port the server listens on (the one picked when asked for port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address the server listens on, HOST:PORT with the bound port.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Stops accepting calls and waits up to `grace` for the calls in flight to finish, then
    /// cancels any that remain. Returns whether every call finished within `grace`.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        let drained = self.server.shutdown();
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = futures::executor::block_on(drained);
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(grace).is_ok() {
            return true;
        }
        log::warn!("calls still in flight after {grace:?}; cancelling them");
        self.server.cancel_all_calls();
        let _ = done_rx.recv_timeout(grace);
        false
    }
}

/// Builds the server with every API registered over an in-memory store, binds it and starts it.
pub fn start(config: &ServerConfig) -> Result<RunningServer, ServerError> {
    let store = Arc::new(MemoryStore::with_limit(config.limits.max_resources));
    start_with_store(config, store)
}

/// As [`start`], over the given store (a database-backed one, or a test double).
pub fn start_with_store(
    config: &ServerConfig,
    store: Arc<dyn ResourceStore>,
) -> Result<RunningServer, ServerError> {
    let address = ListenAddress::parse(&config.listen)?;
    // Files are checked before anything binds, so a typo costs no half-started server.
    let credentials = credentials(&config.tls).map_err(ServerError::Tls)?;
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(threads)
            .name_prefix("grpc-server")
            .build(),
    );
    // The core sets SO_REUSEPORT by default, which lets a second server share a busy port
    // silently; a port already in use must be an error instead.
    let args = ChannelBuilder::new(env.clone())
        .raw_cfg_int(CString::new("grpc.so_reuseport").expect("no NUL"), 0)
        .max_receive_message_len(config.limits.max_request_bytes as i32)
        .build_args();

    let mut server = ServerBuilder::new(env)
        .channel_args(args)
        .register_service(apis::greeting::v1::service())
        .register_service(apis::greeting::v2::service())
        .register_service(apis::healthz::service())
        .register_service(apis::resource::v1::service(store, &config.limits))
        .build()
        .map_err(ServerError::Build)?;

    let port = server
        .add_listening_port(address.to_string(), credentials)
        .map_err(|_| ServerError::Bind {
            address: address.to_string(),
            reason: why_bind_failed(&address),
        })?;
    server.start();
    let address = address.with_port(port);
    log::info!("listening on {address} ({})", config.tls.mode());
    Ok(RunningServer { server, address })
}

/// Plaintext, TLS or mutual TLS credentials, from files that have been checked.
fn credentials(config: &TlsConfig) -> Result<ServerCredentials, TlsError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(ServerCredentials::insecure());
    };
    let identity = tls::read_identity(cert, key)?;
    let mut builder = ServerCredentialsBuilder::new().add_cert(identity.cert_chain, identity.key);
    if let Some(ca) = &config.tls_client_ca {
        builder = builder.root_cert(
            tls::read_certificates(ca)?,
            CertificateRequestType::RequestAndRequireClientCertificateAndVerify,
        );
    }
    Ok(builder.build())
}

/// The core only says that binding failed; the OS says why when asked the same thing.
fn why_bind_failed(address: &ListenAddress) -> String {
    let host = address.host().trim_start_matches('[').trim_end_matches(']');
    match std::net::TcpListener::bind((host, address.port())) {
        Err(e) => e.to_string(),
        Ok(_) => "the gRPC core refused the address (RUST_LOG=debug shows why)".to_owned(),
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully.
pub fn run(config: &ServerConfig) -> Result<(), ServerError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Installed before the server starts, so a signal sent as soon as it answers is not lost.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Signals)?;
    let server = start(config)?;
    let signal = signals.forever().next();
    let name = match signal {
        Some(SIGINT) => "SIGINT",
        Some(SIGTERM) => "SIGTERM",
        _ => "a signal",
    };
    log::info!("{name} received; finishing calls in flight and shutting down");
    if server.shutdown(config.shutdown_grace) {
        log::info!("shut down");
    } else {
        log::warn!("shut down after cancelling calls that outlived the grace period");
    }
    Ok(())
}
