//! Configuration -> a running grpcio server: the services registered, the address bound.

use std::ffi::CString;
use std::fmt;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use grpcio::{ChannelBuilder, EnvBuilder, Server, ServerBuilder, ServerCredentials};

use crate::apis;
use crate::seconds::parse_seconds;
use crate::store::{MemoryStore, ResourceStore};

/// Where the server listens unless told otherwise, as the original did.
pub const DEFAULT_LISTEN: &str = "localhost:50051";

/// How the server is run; every field is also a command-line flag of the server binary.
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why a server did not start.
#[derive(Debug)]
pub enum ServerError {
    /// The listen address is not HOST:PORT.
    InvalidAddress { address: String, reason: String },
    /// The address is well-formed but cannot be listened on (in use, not local, ...).
    Bind { address: String, reason: String },
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
            Self::Build(e) => write!(f, "cannot build the gRPC server: {e}"),
            Self::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// A listen address split into host and port, checked before the gRPC core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    host: String,
    port: u16,
}

impl ListenAddress {
    /// Parses `HOST:PORT`, where HOST is a name, an IPv4 address or a bracketed IPv6 address.
    pub fn parse(address: &str) -> Result<Self, ServerError> {
        let invalid = |reason: &str| ServerError::InvalidAddress {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected HOST:PORT, e.g. localhost:50051"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
        if host.is_empty() {
            return Err(invalid("the host is missing, e.g. localhost or 0.0.0.0"));
        }
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.contains(':') && !bracketed {
            return Err(invalid("an IPv6 host goes in brackets, e.g. [::1]:50051"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(invalid("the host contains characters no host name has"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The same host with another port.
    fn with_port(&self, port: u16) -> Self {
        Self {
            host: self.host.clone(),
            port,
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A server that is accepting calls. Dropping it stops it at once; [`RunningServer::shutdown`]
/// stops it gracefully.
pub struct RunningServer {
    server: Server,
    address: ListenAddress,
}

impl RunningServer {
    /// The port the server listens on (the one picked when asked for port 0).
    pub fn port(&self) -> u16 {
        self.address.port
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

/// Builds the server with every API registered, binds it and starts it.
pub fn start(config: &ServerConfig) -> Result<RunningServer, ServerError> {
    let address = ListenAddress::parse(&config.listen)?;
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
        .build_args();
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());

    let mut server = ServerBuilder::new(env)
        .channel_args(args)
        .register_service(apis::greeting::v1::service())
        .register_service(apis::greeting::v2::service())
        .register_service(apis::healthz::service())
        .register_service(apis::resource::v1::service(store))
        .build()
        .map_err(ServerError::Build)?;

    let port = server
        .add_listening_port(address.to_string(), ServerCredentials::insecure())
        .map_err(|_| ServerError::Bind {
            address: address.to_string(),
            reason: why_bind_failed(&address),
        })?;
    server.start();
    let address = address.with_port(port);
    log::info!("listening on {address}");
    Ok(RunningServer { server, address })
}

/// The core only says that binding failed; the OS says why when asked the same thing.
fn why_bind_failed(address: &ListenAddress) -> String {
    let host = address.host.trim_start_matches('[').trim_end_matches(']');
    match std::net::TcpListener::bind((host, address.port)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms_parse() {
        for ok in [
            "localhost:50051",
            "0.0.0.0:0",
            "[::1]:8080",
            "127.0.0.1:65535",
        ] {
            assert_eq!(ListenAddress::parse(ok).expect(ok).to_string(), ok);
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        for bad in [
            "localhost",
            ":50051",
            "localhost:http",
            "localhost:70000",
            "::1:80",
            "a b:1",
        ] {
            let err = ListenAddress::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
