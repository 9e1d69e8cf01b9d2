//! Configuration -> a running grpcio server: the store opened, the token verifier started, the
//! services of the APIs' registry registered with health checking and reflection beside them,
//! TLS set up, the address bound. No API is named here: a new one is registered in
//! [`crate::apis::CONTRACT`].

mod address;
mod config;
mod explain;
mod flags;
pub mod providers_file;
mod services;
mod signals;
mod transport;

use std::fmt;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use grpcio::{EnvBuilder, Server, ServerCredentials};

pub use address::{AddressError, AddressErrorKind, ListenAddress};
pub use config::{
    Keepalive, ServerConfig, TlsConfig, TlsMode, TransportLimits, DEFAULT_KEEPALIVE,
    DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_REALM,
    DEFAULT_SHUTDOWN_GRACE,
};
pub use explain::{explain, ExplainRequest, Explained};
pub use flags::ServerFlags;
pub use signals::run;

use crate::apis::health::HealthRegistry;
use crate::apis::streams::{self, EndStreams};
use crate::apis::{self, DependsOn, HttpApi, ServingContext};
use crate::availability::Availability;
use crate::http;
use crate::store::{self, OpenError, ResourceStore, RevocationStore, Stores};
use crate::tls::TlsError;
use crate::tokens::{ProviderOptions, TokenError, TokenOptions, TokenVerifier};
use providers_file::Providers;
use services::{Readiness, Services};

/// Why a server did not start.
#[derive(Debug)]
pub enum ServerError {
    /// The configuration cannot work; one line per problem.
    Config(Vec<String>),
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
    /// The store cannot be opened (a file, a URL, credentials, a schema).
    Store(OpenError),
    /// An HTTP API's port (metrics, forward auth) cannot listen where it was told to.
    HttpPort {
        /// What the port does: `serve metrics`.
        does: &'static str,
        /// The flag that named the address.
        flag: &'static str,
        address: String,
        reason: http::PortError,
    },
}

impl ServerError {
    /// What to tell the user, one line per problem.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Config(problems) => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(problems) => f.write_str(&problems.join("; ")),
            Self::Bind { address, reason } => write!(f, "cannot listen on {address}: {reason}"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Build(e) => write!(f, "cannot build the gRPC server: {e}"),
            Self::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Self::Tokens(e) => write!(f, "tokens: {e}"),
            Self::Store(e) => write!(f, "store: {e}"),
            Self::HttpPort {
                does,
                flag,
                address,
                reason,
            } => write!(f, "cannot {does} on {address} ({flag}): {reason}"),
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
    verifier: Option<Arc<TokenVerifier>>,
    /// The providers given by flags and the providers file, to read again on SIGHUP.
    providers: Providers,
    /// The routes in force, replaced when the file is read again.
    routes: crate::authz::RouteTable,
    end_streams: Option<EndStreams>,
    scrape: Option<HttpPort>,
    forward_auth: Option<HttpPort>,
    served: Vec<(&'static str, DependsOn)>,
}

impl RunningServer {
    /// The contract's APIs served, in the order they were registered, each with what its
    /// health status follows (health checking and reflection are served beside them).
    pub fn apis(&self) -> &[(&'static str, DependsOn)] {
        &self.served
    }

    /// Where the metrics endpoint listens, HOST:PORT, when it was asked for.
    pub fn metrics_address(&self) -> Option<&str> {
        self.scrape.as_ref().map(|port| port.address.as_str())
    }

    /// Where the forward-auth port listens, HOST:PORT, when it was asked for.
    pub fn forward_auth_address(&self) -> Option<&str> {
        self.forward_auth.as_ref().map(|port| port.address.as_str())
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

    /// Reads the providers file again and loads every provider's keys again, in the background
    /// (what SIGHUP does). A file that no longer reads keeps the providers as they were.
    pub fn reload_keys(&self) {
        let Some(verifier) = &self.verifier else {
            log::info!("no identity provider to load again: TokenV1Proto is not served");
            return;
        };
        if let Some(path) = &self.providers.file {
            match self.providers.read() {
                Ok((wanted, routes)) => {
                    let count = routes.routes.len();
                    self.routes.replace(routes);
                    log::info!("config file {}: {count} routes in force", path.display());
                    let changed = verifier.replace_providers(&wanted);
                    for failed in &changed.failed {
                        log::warn!("providers file {}: {failed}; left out", path.display());
                    }
                    log::info!(
                        "providers file {} read again: added [{}], changed [{}], removed [{}]",
                        path.display(),
                        changed.added.join(", "),
                        changed.changed.join(", "),
                        changed.removed.join(", ")
                    );
                }
                Err(problems) => log::warn!(
                    "config file no longer reads, keeping the providers and routes as they \
                     were: {}",
                    problems.join("; ")
                ),
            }
        }
        log::info!(
            "loading the signing keys again: {}",
            verifier.describe_providers().join(", ")
        );
        verifier.reload_keys();
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

/// An HTTP API's port, running; dropping it stops it.
struct HttpPort {
    // Kept for its Drop, which stops the port.
    _server: http::Server,
    /// HOST:PORT with the bound port.
    address: String,
    /// Where its answers are, for the start-up line.
    path: &'static str,
}

impl HttpPort {
    /// Listens on `address` and serves `api` there from now on.
    fn start(api: HttpApi, address: &str, limits: http::HttpLimits) -> Result<Self, ServerError> {
        let server =
            http::Server::start(api.port, address, limits, api.handler).map_err(|reason| {
                ServerError::HttpPort {
                    does: api.does,
                    flag: api.flag,
                    address: address.to_owned(),
                    reason,
                }
            })?;
        (api.started)();
        Ok(Self {
            address: server.address().to_string(),
            _server: server,
            path: api.path,
        })
    }

    /// `; WHAT at http://ADDRESS/PATH`, for the start-up line.
    fn line(&self, what: &str) -> String {
        format!("; {what} at http://{}{}", self.address, self.path)
    }
}

/// How long cancelled calls are given to end before the server stops regardless.
const CANCELLED_CALLS_END: Duration = Duration::from_millis(500);

/// What `--check-config` prints: the configuration and the config file checked as a start
/// would check them (nothing opened, bound or fetched), described one line each; or every
/// problem, one line each.
pub fn check(config: &ServerConfig) -> Result<Vec<String>, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let (providers, routes) = read_config_file(&Providers::of(config))?;
    // The client secrets are read as the start would; the endpoints are not called.
    let unreadable: Vec<String> = providers
        .iter()
        .filter_map(|p| Some((p, p.introspection.as_ref()?)))
        .filter_map(|(p, i)| {
            crate::tokens::check_client_secret(i)
                .err()
                .map(|why| (p, why))
        })
        .map(|(p, why)| format!("issuer {}: {why}", p.issuer))
        .collect();
    if !unreadable.is_empty() {
        return Err(ServerError::Config(unreadable));
    }
    let mut lines: Vec<String> = providers
        .iter()
        .map(|provider| format!("provider {}", provider.issuer))
        .collect();
    for route in &routes.routes {
        lines.push(crate::authz::describe(route));
    }
    lines.push(format!(
        "{} providers, {} routes; a request no route covers: {}",
        providers.len(),
        routes.routes.len(),
        match routes.fallback {
            crate::authz::Fallback::Authenticated => "a valid token",
            crate::authz::Fallback::Deny => "denied",
        }
    ));
    Ok(lines)
}

/// Every provider and the routes; routes without a provider to check tokens are a problem.
fn read_config_file(
    providers: &Providers,
) -> Result<(Vec<ProviderOptions>, crate::authz::Routes), ServerError> {
    let (wanted, routes) = providers.read().map_err(ServerError::Config)?;
    if routes.in_use() && wanted.is_empty() {
        return Err(ServerError::Config(vec![
            "the config file has routes but there is no identity provider to check tokens: add \
             a [[provider]], --oidc-issuer, --jwks-file or --jwks-url"
                .to_owned(),
        ]));
    }
    Ok((wanted, routes))
}

/// Opens the store the configuration names, builds the server with every API registered over
/// it, binds it and starts it.
pub fn start(config: &ServerConfig) -> Result<RunningServer, ServerError> {
    // The configuration and files are checked before the store is opened, and the store before
    // anything binds, so a mistake costs no half-started server.
    let prepared = prepare(config)?;
    let stores = store::open(&config.store).map_err(ServerError::Store)?;
    serve(config, prepared, stores)
}

/// As [`start`], over the given resource store (a test double) and revocations in memory.
pub fn start_with_store(
    config: &ServerConfig,
    store: Arc<dyn ResourceStore>,
) -> Result<RunningServer, ServerError> {
    let max_revocations = config.store.capacity.max_revocations;
    start_with_stores(config, Stores::memory_with(store, max_revocations))
}

/// As [`start`], over the given stores: test doubles, or a database opened beforehand.
pub fn start_with_stores(
    config: &ServerConfig,
    stores: Stores,
) -> Result<RunningServer, ServerError> {
    let prepared = prepare(config)?;
    serve(config, prepared, stores)
}

/// What is read and checked before a store is opened.
struct Prepared {
    credentials: ServerCredentials,
    scrape: Option<HttpPort>,
    /// Where the providers come from, and every provider as read now.
    providers: Providers,
    wanted: Vec<ProviderOptions>,
}

/// What is checked before a store is opened: the configuration, the providers file, the TLS
/// files, and the metrics port (one in use should cost nothing, not even a migrated database).
fn prepare(config: &ServerConfig) -> Result<Prepared, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let providers = Providers::of(config);
    let (wanted, routes) = read_config_file(&providers)?;
    config.policy.routes.replace(routes);
    let credentials = transport::credentials(&config.tls).map_err(ServerError::Tls)?;
    let scrape = config
        .metrics_listen
        .as_ref()
        .map(|address| HttpPort::start(apis::scrape::offer(), address, config.http))
        .transpose()?;
    Ok(Prepared {
        credentials,
        scrape,
        providers,
        wanted,
    })
}

fn serve(
    config: &ServerConfig,
    prepared: Prepared,
    stores: Stores,
) -> Result<RunningServer, ServerError> {
    let Prepared {
        credentials,
        scrape,
        providers,
        wanted,
    } = prepared;
    let stores = if scrape.is_some() {
        stores.metered()
    } else {
        stores
    };
    let verifier = start_tokens(config, wanted, Arc::clone(&stores.revocations))?;
    let (end_streams, streams_end) = streams::streams_end();
    let health = HealthRegistry::new();
    let serving = ServingContext {
        resources: &stores.resources,
        verifier: verifier.as_ref(),
        policy: &config.policy,
        options: &config.apis,
        streams_end: &streams_end,
    };
    let services = Services::offer(&serving, &health, config.reflection);
    let not_served: String = services
        .not_served
        .iter()
        .map(|line| format!("; {line}"))
        .collect();
    services.follow(
        &health,
        &Readiness {
            store: stores.availability.clone(),
            keys: verifier
                .as_ref()
                .map_or_else(Availability::down, |verifier| verifier.keys_loaded()),
        },
    );
    let served = services.served();
    let names = services.names();
    let forward_auth = match (&config.forward_auth_listen, &verifier) {
        (Some(address), Some(verifier)) => Some(HttpPort::start(
            apis::forward_auth::offer(verifier, &config.policy, config.forward_auth_client_cert),
            address,
            config.http,
        )?),
        _ => None,
    };
    let (server, address) = bind(config, services, credentials)?;
    let metrics = scrape
        .as_ref()
        .map_or(String::new(), |port| port.line("metrics"));
    let forwarded = forward_auth
        .as_ref()
        .map_or(String::new(), |port| port.line("forward auth"));
    let identity = verifier.as_ref().map_or(String::new(), |verifier| {
        format!(
            "; identity providers: {}",
            verifier.describe_providers().join(", ")
        )
    });
    log::info!(
        "listening on {address} ({}), serving {}{}; store: {}{identity}{metrics}{forwarded}",
        config.tls.mode(),
        names.join(", "),
        not_served,
        stores.description
    );
    Ok(RunningServer {
        server,
        address,
        health,
        verifier,
        providers,
        routes: config.policy.routes.clone(),
        end_streams: Some(end_streams),
        scrape,
        forward_auth,
        served,
    })
}

/// Builds the gRPC server with `services` registered, binds the listen address and starts it.
fn bind(
    config: &ServerConfig,
    services: Services,
    credentials: ServerCredentials,
) -> Result<(Server, ListenAddress), ServerError> {
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(config.threads())
            .name_prefix("grpc-server")
            .build(),
    );
    let mut builder = transport::builder(env, config);
    for api in services.into_registered() {
        builder = builder.register_service(api.service);
    }
    let mut server = builder.build().map_err(ServerError::Build)?;
    let port = server
        .add_listening_port(config.listen.to_string(), credentials)
        .map_err(|_| ServerError::Bind {
            address: config.listen.to_string(),
            reason: transport::why_bind_failed(&config.listen),
        })?;
    server.start();
    Ok((server, config.listen.with_port(port)))
}

/// The token verifier, when an identity provider is configured.
fn start_tokens(
    config: &ServerConfig,
    providers: Vec<ProviderOptions>,
    revocations: Arc<dyn RevocationStore>,
) -> Result<Option<Arc<TokenVerifier>>, ServerError> {
    let options = TokenOptions {
        providers,
        ..config.tokens.clone()
    };
    let Some(verifier) =
        TokenVerifier::start(&options, revocations).map_err(ServerError::Tokens)?
    else {
        return Ok(None);
    };
    log::info!(
        "tokens: providers [{}], cache {} entries and {} bytes at most, admins [{}]",
        verifier.describe_providers().join(", "),
        options.cache_entries,
        options.cache_bytes,
        config.apis.token_admins.join(", ")
    );
    Ok(Some(Arc::new(verifier)))
}
