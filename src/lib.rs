//! A gRPC API service on grpcio, wire-compatible with mrmat-python-api-grpc.

// Generated code is not ours to lint; it allows lints that newer compilers have removed.
#[allow(renamed_and_removed_lints, clippy::all, missing_docs)]
pub mod proto;
