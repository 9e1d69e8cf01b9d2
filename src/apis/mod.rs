//! One module per API and version, as in the original: `greeting::v1`, `greeting::v2`, `healthz`,
//! `resource::v1`, `resource::v2`, `token::v1` (Validate, ValidateStream, ValidateBatches,
//! Revoke) and Envoy's `ext_authz::v3`; the standard services every server offers next to them,
//! `health` (`grpc.health.v1`) and `reflection`; and the APIs of the HTTP ports, `scrape`
//! (Prometheus) and `forward_auth` (nginx, Caddy, Traefik). Each translates between the wire and
//! the domain (stores, token validation, the authz decision).
//!
//! The registry: [`CONTRACT`] lists the gRPC APIs; each one's `offer` declares, in its own
//! module, all the server needs to serve it ([`offer`]), and health checking, reflection, the
//! start-up line and the metrics follow from that list. The HTTP ones declare an [`HttpApi`]
//! each (`scrape::offer`, `forward_auth::offer`), which the server starts on the port its flag
//! names: the metrics port before the store opens, forward auth once tokens are served. What every
//! handler shares is in [`call`] (answering, now or later), [`streams`] and [`budget`].

pub mod budget;
pub mod call;
pub mod ext_authz;
pub mod forward_auth;
pub mod greeting;
pub mod health;
pub mod healthz;
pub mod offer;
pub mod reflection;
pub mod resource;
pub mod scrape;
pub mod streams;
pub mod token;

pub use budget::DEFAULT_STREAM_BUDGET;
pub use call::Call;
pub use offer::{
    Api, ApiOffer, ApiOptions, DependsOn, HttpApi, ServingContext, DEFAULT_MAX_NAME_BYTES,
};
pub use streams::{StreamsEnd, DEFAULT_STREAMS_PER_CONNECTION};

/// Every API, in the order the server registers them and reflection lists them: the contract's,
/// then Envoy's external authorization.
/// A new API is its module and one more line here.
pub const CONTRACT: &[fn(&ServingContext<'_>) -> ApiOffer] = &[
    greeting::v1::offer,
    greeting::v2::offer,
    healthz::offer,
    resource::v1::offer,
    resource::v2::offer,
    token::v1::offer,
    ext_authz::v3::offer,
];
