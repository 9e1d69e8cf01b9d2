//! One module per API and version, as in the original: `greeting::v1`, `greeting::v2`, `healthz`,
//! `resource::v1`, `resource::v2` and `token::v1`; and the standard services every server offers
//! next to them: `health` (`grpc.health.v1`) and `reflection`. Each implements a generated
//! service trait over domain code (stores, token validation), translating between it and the
//! wire.
//!
//! The registry: [`CONTRACT`] lists the APIs of the contract, and each one's `offer` declares,
//! in its own module, all the server needs to serve it (its name, service, descriptors, what its
//! readiness depends on, and whether it is served at all with the configuration given). Health
//! checking, reflection, the start-up line and the metrics follow from that list.

pub mod budget;
pub mod call;
pub mod ext_authz;
pub mod greeting;
pub mod health;
pub mod healthz;
pub mod reflection;
pub mod resource;
pub mod streams;
pub mod token;

use std::sync::Arc;

use grpcio::Service;
use protobuf::reflect::FileDescriptor;

pub use budget::DEFAULT_STREAM_BUDGET;
pub use call::Call;
pub use streams::{StreamsEnd, DEFAULT_STREAMS_PER_CONNECTION};

use crate::authz::Gate;
use crate::proto::StatusOutput;
use crate::store::ResourceStore;
use crate::tokens::TokenVerifier;

/// Every API, in the order the server registers them and reflection lists them: the contract's,
/// then Envoy's external authorization.
/// A new API is its module and one more line here.
pub const CONTRACT: &[fn(&Serving<'_>) -> Offer] = &[
    greeting::v1::offer,
    greeting::v2::offer,
    healthz::offer,
    resource::v1::offer,
    resource::v2::offer,
    token::v1::offer,
    ext_authz::v3::offer,
];

/// What an API's readiness, as health checking reports it, depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DependsOn {
    /// Nothing: SERVING from start to shutdown.
    Nothing,
    /// The store: NOT_SERVING while its database does not answer, so that load balancers route
    /// around this replica.
    Store,
    /// The token service's signing keys: NOT_SERVING until they have loaded.
    Keys,
}

/// An API ready to register, with all the server needs to know of it.
pub struct Api {
    /// The fully qualified service name health checking and reflection report, e.g.
    /// `GreetingV1Proto` (the contract has no package) or `grpc.health.v1.Health`.
    pub name: &'static str,
    /// What grpcio registers.
    pub service: Service,
    /// The file that defines the service, for reflection (the files it imports come along).
    pub file: &'static FileDescriptor,
    /// What its health status follows.
    pub depends_on: DependsOn,
}

/// Whether an API is served with the configuration given.
pub enum Offer {
    /// It is, as this.
    Served(Api),
    /// It is not; the start-up line says `NAME not served (WHY)`.
    NotServed {
        /// The service's name.
        name: &'static str,
        /// What would have it served, e.g. `no identity provider: ...`.
        why: &'static str,
    },
}

/// What the APIs are served over: the domain they translate to, the settings they read, and the
/// signal that ends long-lived streams at shutdown.
pub struct Serving<'a> {
    /// The resource store.
    pub resources: &'a Arc<dyn ResourceStore>,
    /// The token verifier, when a key set is configured.
    pub verifier: Option<&'a Arc<TokenVerifier>>,
    /// How proxies' questions are judged (the realm, the identity headers).
    pub gate: &'a Gate,
    /// What the APIs are told.
    pub options: &'a ApiOptions,
    /// Resolves when the server shuts down.
    pub streams_end: &'a StreamsEnd,
}

/// Longest resource name accepted unless told otherwise.
pub const DEFAULT_MAX_NAME_BYTES: usize = 1024;

/// What the APIs themselves are told (the rest of the configuration belongs to the server, the
/// store and token validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiOptions {
    /// Longest resource name create and modify accept, in bytes of UTF-8.
    pub max_name_bytes: usize,
    /// Client certificate names (common name or DNS name) allowed to revoke tokens.
    pub token_admins: Vec<String>,
    /// What the token streams together may hold, in bytes.
    pub stream_budget: usize,
    /// Most token streams one connection may have open at once.
    pub streams_per_connection: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            token_admins: Vec::new(),
            stream_budget: DEFAULT_STREAM_BUDGET,
            streams_per_connection: streams::DEFAULT_STREAMS_PER_CONNECTION,
        }
    }
}

/// The application status carried inside an answer, as the original sends it.
pub(crate) fn status(code: u32, message: &str) -> StatusOutput {
    let mut status = StatusOutput::new();
    status.code = code;
    status.message = message.to_owned();
    status
}

/// Why an API over the token verifier cannot answer yet, or None once a key set has loaded.
pub(crate) fn keys_not_loaded(verifier: &TokenVerifier, api: &str) -> Option<String> {
    (!verifier.ready()).then(|| {
        format!(
            "no identity provider's signing keys have loaded yet ({}); health checking \
             reports {api} NOT_SERVING until one has",
            verifier.describe_providers().join(", ")
        )
    })
}
