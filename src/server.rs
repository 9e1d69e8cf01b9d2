//! Configuration -> a running grpcio server: the services registered (the contract's, health
//! checking, reflection), TLS set up, the address bound, keepalive and stream limits set. A new
//! API version is registered in `contract_services`.

mod address;
mod config;
mod scrape;

use std::ffi::CString;
use std::fmt;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use grpcio::{
    CertificateRequestType, ChannelBuilder, EnvBuilder, Server, ServerBuilder, ServerCredentials,
    ServerCredentialsBuilder,
};

pub use address::ListenAddress;
pub use config::{
    Keepalive, Limits, ServerConfig, TlsConfig, TlsMode, DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_NAME_BYTES, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESOURCES,
};
pub use scrape::Scrape;

use crate::apis::health::HealthRegistry;
use crate::apis::reflection::{Descriptors, ReflectionApi};
use crate::apis::streams::{self, EndStreams, StreamsEnd};
use crate::apis::{self, ApiService};
use crate::proto::{self, health::v1::health_check_response::ServingStatus};
use crate::store::{self, Capacity, OpenError, ResourceStore, RevocationStore, Stores};
use crate::tls::{self, TlsError};
use crate::tokens::{TokenError, TokenVerifier};

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
    /// The token service cannot be set up (its key set, its issuers).
    Tokens(TokenError),
    /// Flags that cannot work together.
    Config(String),
    /// The store cannot be opened (a file, a URL, credentials, a schema).
    Store(OpenError),
    /// The metrics endpoint cannot listen where it was told to.
    Metrics { address: String, reason: String },
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
            Self::Tokens(e) => write!(f, "tokens: {e}"),
            Self::Config(why) => f.write_str(why),
            Self::Store(e) => write!(f, "store: {e}"),
            Self::Metrics { address, reason } => {
                write!(
                    f,
                    "cannot serve metrics on {address} (--metrics-listen): {reason}"
                )
            }
        }
    }
}

impl std::error::Error for ServerError {}

/// A server that is accepting calls. Dropping it stops it at once; [`RunningServer::shutdown`]
/// stops it gracefully.
pub struct RunningServer {
    server: Server,
    address: ListenAddress,
    health: HealthRegistry,
    validator: Option<Arc<TokenVerifier>>,
    end_streams: Option<EndStreams>,
    scrape: Option<Scrape>,
}

impl RunningServer {
    /// Where the metrics endpoint listens, HOST:PORT, when it was asked for.
    pub fn metrics_address(&self) -> Option<&str> {
        self.scrape.as_ref().map(Scrape::address)
    }

    /// The port the server listens on (the one picked when asked for port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address the server listens on, HOST:PORT with the bound port.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The serving status that health checking reports.
    pub fn health(&self) -> &HealthRegistry {
        &self.health
    }

    /// Starts draining: health checking reports NOT_SERVING for every service from now on (so
    /// load balancers stop sending calls) and Watch streams end, while calls are still served.
    pub fn begin_drain(&self) {
        self.health.shut_down();
    }

    /// Loads the token service's key set again, in the background (what SIGHUP does).
    pub fn reload_keys(&self) {
        match &self.validator {
            Some(validator) => {
                log::info!(
                    "loading the signing keys again from {}",
                    validator.key_location()
                );
                validator.reload_keys();
            }
            None => log::info!("no key set to load again: TokenV1Proto is not served"),
        }
    }

    /// Drains (see [`RunningServer::begin_drain`]), stops accepting calls, tells open streams to
    /// end (each answers what it has read, then ends with UNAVAILABLE), and waits up to `grace`
    /// for the calls in flight to finish, then cancels any that remain. Returns whether every
    /// call finished within `grace`.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        self.begin_drain();
        let drained = self.server.shutdown();
        if let Some(end_streams) = self.end_streams.take() {
            end_streams.now();
        }
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = futures::executor::block_on(drained);
            let _ = done_tx.send(());
        });
        if done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {
            return true;
        }
        log::warn!("calls still in flight after {grace:?}; cancelling them");
        self.server.cancel_all_calls();
        // Cancelled calls end at once; this wait only lets their handlers see it.
        let _ = done_rx.recv_timeout(CANCELLED_CALLS_END);
        false
    }
}

/// How long cancelled calls are given to end before the server stops regardless.
const CANCELLED_CALLS_END: Duration = Duration::from_millis(500);

/// Opens the store the configuration names, builds the server with every API registered over
/// it, binds it and starts it.
pub fn start(config: &ServerConfig) -> Result<RunningServer, ServerError> {
    let address = ListenAddress::parse(&config.listen)?;
    // Files are checked before the store is opened, and the store before anything binds, so a
    // mistake costs no half-started server.
    let credentials = credentials(&config.tls).map_err(ServerError::Tls)?;
    // The metrics port too: one in use should cost nothing, not even a migrated database.
    let scrape = metrics_endpoint(config)?;
    let stores = store::open(
        &config.store,
        Capacity {
            max_resources: config.limits.max_resources,
            max_revocations: config.tokens.max_revocations,
        },
    )
    .map_err(ServerError::Store)?;
    serve(config, address, credentials, stores, scrape)
}

/// The `/metrics` endpoint, when `--metrics-listen` asks for one.
fn metrics_endpoint(config: &ServerConfig) -> Result<Option<Scrape>, ServerError> {
    config
        .metrics_listen
        .as_ref()
        .map(|address| {
            Scrape::start(address).map_err(|reason| ServerError::Metrics {
                address: address.clone(),
                reason,
            })
        })
        .transpose()
}

/// As [`start`], over the given resource store (a test double) and revocations in memory.
pub fn start_with_store(
    config: &ServerConfig,
    store: Arc<dyn ResourceStore>,
) -> Result<RunningServer, ServerError> {
    start_with_stores(
        config,
        Stores::memory_with(store, config.tokens.max_revocations),
    )
}

/// As [`start`], over the given stores: test doubles, or a database opened beforehand.
pub fn start_with_stores(
    config: &ServerConfig,
    stores: Stores,
) -> Result<RunningServer, ServerError> {
    let address = ListenAddress::parse(&config.listen)?;
    let credentials = credentials(&config.tls).map_err(ServerError::Tls)?;
    let scrape = metrics_endpoint(config)?;
    serve(config, address, credentials, stores, scrape)
}

fn serve(
    config: &ServerConfig,
    address: ListenAddress,
    credentials: ServerCredentials,
    stores: Stores,
    scrape: Option<Scrape>,
) -> Result<RunningServer, ServerError> {
    if !config.tokens.token_admin.is_empty() && config.tls.mode() != TlsMode::MutualTls {
        return Err(ServerError::Config(
            "--token-admin needs mutual TLS (--tls-cert, --tls-key and --tls-client-ca): \
             admins are recognised by their client certificates"
                .to_owned(),
        ));
    }
    let stores = if scrape.is_some() {
        stores.metered()
    } else {
        stores
    };
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(config.threads())
            .name_prefix("grpc-server")
            .build(),
    );
    // The core sets SO_REUSEPORT by default, which lets a second server share a busy port
    // silently; a port already in use must be an error instead.
    let keepalive = &config.keepalive;
    let args = ChannelBuilder::new(env.clone())
        .raw_cfg_int(CString::new("grpc.so_reuseport").expect("no NUL"), 0)
        .max_receive_message_len(config.limits.max_request_bytes as i32)
        .max_concurrent_stream(config.limits.max_concurrent_streams as i32)
        // Ping quiet connections, with calls or without, and drop those that do not answer.
        .keepalive_time(keepalive.keepalive_time)
        .keepalive_timeout(keepalive.keepalive_timeout)
        .keepalive_permit_without_calls(true)
        .http2_max_pings_without_data(0)
        // Accept clients' keepalive pings down to this interval, idle or not.
        .http2_min_recv_ping_interval_without_data(keepalive.keepalive_min_ping_interval)
        .build_args();

    let health = HealthRegistry::new();
    health.set("", ServingStatus::SERVING);
    let validator = start_tokens(config, &health, stores.revocations)?;
    let (end_streams, streams_end) = streams::streams_end();
    let apis = contract_services(stores.resources, config, validator.clone(), &streams_end);
    for api in &apis {
        // The token service has its own status: NOT_SERVING until its keys load.
        if health.status(api.name).is_none() {
            health.set(api.name, ServingStatus::SERVING);
        }
    }
    let mut services = apis;
    services.push(health.service());
    if config.reflection() {
        let names: Vec<&str> = services
            .iter()
            .map(|s| s.name)
            .chain(apis::reflection::NAMES)
            .collect();
        let descriptors = Descriptors::new(
            &names,
            &[
                proto::grpc_api::file_descriptor(),
                proto::health::v1::health::file_descriptor(),
                proto::reflection::v1::reflection::file_descriptor(),
                proto::reflection::v1alpha::reflection::file_descriptor(),
            ],
        );
        services.extend(ReflectionApi::services(descriptors));
    }
    let names: Vec<&str> = services.iter().map(|s| s.name).collect();
    // The resource API needs the database for every call; the token service only to revoke
    // (validations ask the revocations kept in memory), so it stays SERVING.
    let resources = health.clone();
    stores.availability.watch(move |up| {
        let status = if up {
            ServingStatus::SERVING
        } else {
            ServingStatus::NOT_SERVING
        };
        resources.set(apis::resource::v1::NAME, status);
        resources.set(apis::resource::v2::NAME, status);
    });

    let mut builder = ServerBuilder::new(env).channel_args(args);
    for api in services {
        builder = builder.register_service(api.service);
    }
    let mut server = builder.build().map_err(ServerError::Build)?;

    let port = server
        .add_listening_port(address.to_string(), credentials)
        .map_err(|_| ServerError::Bind {
            address: address.to_string(),
            reason: why_bind_failed(&address),
        })?;
    server.start();
    let address = address.with_port(port);
    let not_served = if validator.is_none() {
        "; TokenV1Proto not served (no --jwks-file or --jwks-url)"
    } else {
        ""
    };
    let metrics = scrape.as_ref().map_or(String::new(), |scrape| {
        format!("; metrics at http://{}/metrics", scrape.address())
    });
    log::info!(
        "listening on {address} ({}), serving {}{not_served}; store: {}{metrics}",
        config.tls.mode(),
        names.join(", "),
        stores.description
    );
    Ok(RunningServer {
        server,
        address,
        health,
        validator,
        end_streams: Some(end_streams),
        scrape,
    })
}

/// The token validator, when a key set is configured; health reports its service NOT_SERVING
/// until the key set has loaded.
fn start_tokens(
    config: &ServerConfig,
    health: &HealthRegistry,
    revocations: Arc<dyn RevocationStore>,
) -> Result<Option<Arc<TokenVerifier>>, ServerError> {
    if !config.tokens.enabled() {
        return Ok(None);
    }
    let name = apis::token::v1::NAME;
    health.set(name, ServingStatus::NOT_SERVING);
    let ready = health.clone();
    let validator = TokenVerifier::start(
        &config.tokens,
        revocations,
        Box::new(move || ready.set(name, ServingStatus::SERVING)),
    )
    .map_err(ServerError::Tokens)?
    .expect("a key set is configured");
    let tokens = &config.tokens;
    log::info!(
        "tokens: keys from {}, issuers [{}], audiences [{}], cache {} entries, admins [{}]",
        validator.key_location(),
        tokens.token_issuer.join(", "),
        tokens.token_audience.join(", "),
        tokens.token_cache,
        tokens.token_admin.join(", ")
    );
    Ok(Some(Arc::new(validator)))
}

/// The services of the contract, `proto/grpc-api.proto`, each from its own module in
/// `src/apis`. A new API version is one more line here.
fn contract_services(
    store: Arc<dyn ResourceStore>,
    config: &ServerConfig,
    validator: Option<Arc<TokenVerifier>>,
    streams_end: &StreamsEnd,
) -> Vec<ApiService> {
    let mut services = vec![
        apis::greeting::v1::service(),
        apis::greeting::v2::service(),
        apis::healthz::service(),
        apis::resource::v1::service(store.clone(), config.limits.max_name_bytes),
        apis::resource::v2::service(store, config.limits.max_name_bytes),
    ];
    if let Some(validator) = validator {
        let admins = config.tokens.token_admin.clone();
        services.push(apis::token::v1::service(
            validator,
            admins,
            streams_end.clone(),
        ));
    }
    services
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

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully. SIGHUP loads the
/// token service's key set again.
pub fn run(config: &ServerConfig) -> Result<(), ServerError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Installed before the server starts, so a signal sent as soon as it answers is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(ServerError::Signals)?;
    let signals_handle = signals.handle();
    let (signal_tx, signal_rx) = mpsc::channel();
    thread::spawn(move || {
        for signal in signals.forever() {
            if signal_tx.send(signal).is_err() {
                break;
            }
        }
    });
    let server = start(config)?;
    let signal_name = |signal| match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    };
    let first = loop {
        match signal_rx.recv() {
            Ok(SIGHUP) => server.reload_keys(),
            Ok(signal) => break signal_name(signal),
            Err(_) => break "a signal",
        }
    };
    server.begin_drain();
    if !config.drain_delay.is_zero() {
        log::info!(
            "{first} received; reporting NOT_SERVING for {:?} before closing the listener",
            config.drain_delay
        );
        let until = Instant::now() + config.drain_delay;
        while let Ok(signal) =
            signal_rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if signal == SIGHUP {
                server.reload_keys();
                continue;
            }
            log::info!(
                "{} received; cutting the drain delay short",
                signal_name(signal)
            );
            break;
        }
    }
    log::info!("{first} received; finishing calls in flight and shutting down");
    let clean = server.shutdown(config.shutdown_grace);
    signals_handle.close();
    if clean {
        log::info!("shut down");
    } else {
        log::warn!("shut down after cancelling calls that outlived the grace period");
    }
    Ok(())
}
