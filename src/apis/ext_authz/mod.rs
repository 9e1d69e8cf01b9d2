//! Envoy's external authorization, `envoy.service.auth.v3.Authorization/Check` (ext_authz over
//! gRPC, and Istio's `CUSTOM` policies on top of it): a proxy asks whether a request may
//! through, over the channel it keeps open to this server. The decision is [`crate::authz`]'s,
//! the same the HTTP forward-auth port gives; this module reads Envoy's question and writes its
//! answer.

mod question;
mod response;
pub mod v3;
