//! One module per API and version, as in the original: `greeting::v1`, `greeting::v2`, `healthz`,
//! `resource::v1`, and `token::v1`; and the standard services every server offers next to them:
//! `health` (`grpc.health.v1`) and `reflection`. Each implements a generated service trait over
//! domain code (stores, token validation), translating between it and the wire.

pub mod call;
pub mod greeting;
pub mod health;
pub mod healthz;
pub mod reflection;
pub mod resource;
pub mod streams;
pub mod token;

use grpcio::Service;

pub use call::Call;

use crate::proto::StatusOutput;

/// A service ready to register, with the fully qualified name that health checking and
/// reflection report it under.
pub struct ApiService {
    /// E.g. `GreetingV1Proto` (the contract has no package) or `grpc.health.v1.Health`.
    pub name: &'static str,
    /// What grpcio registers.
    pub service: Service,
}

/// The application status carried inside an answer, as the original sends it.
pub(crate) fn status(code: u32, message: &str) -> StatusOutput {
    let mut status = StatusOutput::new();
    status.code = code;
    status.message = message.to_owned();
    status
}

/// The gRPC status a store's refusal is answered with.
pub(crate) fn store_status(error: &crate::store::StoreError) -> grpcio::RpcStatus {
    use crate::store::StoreError;
    let code = match error {
        StoreError::Full { .. } | StoreError::TooManyRevocations { .. } => {
            grpcio::RpcStatusCode::RESOURCE_EXHAUSTED
        }
        StoreError::Unstorable(_) => grpcio::RpcStatusCode::INVALID_ARGUMENT,
        StoreError::Unavailable { .. } => grpcio::RpcStatusCode::UNAVAILABLE,
    };
    grpcio::RpcStatus::with_message(code, error.to_string())
}
