//! What an API declares to the server, and what it is served over: an API's [`ApiOffer`] (its
//! name, service, descriptors and what its readiness depends on), or an [`HttpApi`] for one
//! served on an HTTP port of its own; the domain and settings in [`ServingContext`].

use std::sync::Arc;

use grpcio::Service;
use protobuf::reflect::FileDescriptor;

use crate::apis::budget::DEFAULT_STREAM_BUDGET;
use crate::apis::streams::{self, StreamsEnd};
use crate::authz::AuthzPolicy;
use crate::http;
use crate::store::ResourceStore;
use crate::tokens::TokenVerifier;

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
pub enum ApiOffer {
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
pub struct ServingContext<'a> {
    /// The resource store.
    pub resources: &'a Arc<dyn ResourceStore>,
    /// The token verifier, when a key set is configured.
    pub verifier: Option<&'a Arc<TokenVerifier>>,
    /// How proxies' questions are judged (the realm, the identity headers).
    pub policy: &'a AuthzPolicy,
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

/// An API served on an HTTP port of its own (`--metrics-listen`, `--forward-auth-listen`)
/// rather than on the gRPC port: what the server needs to start that port.
pub struct HttpApi {
    /// The port's name in its threads, logs and metrics (`metrics`, `forward_auth`).
    pub port: &'static str,
    /// The flag that names its address, for messages: `--metrics-listen`.
    pub flag: &'static str,
    /// What it does, for messages: `serve metrics`.
    pub does: &'static str,
    /// Where its answers are, after `http://HOST:PORT`, for the start-up line: `/metrics`.
    pub path: &'static str,
    /// How it answers.
    pub handler: http::Handler,
    /// Called once the port listens.
    pub started: fn(),
}
