//! A gRPC API service on grpcio (the gRPC C core), wire-compatible with mrmat-python-api-grpc
//! (the same contract, `proto/grpc-api.proto`, services and answers), and the central token
//! validation service that the original only described.
//!
//! - [`apis`]: one module per API and version, each implementing a generated service trait;
//! - [`tokens`]: token validation (keys, verdicts, cache), knowing nothing of gRPC;
//! - [`store`]: where resources and revoked tokens live: memory, SQLite (default), PostgreSQL;
//! - [`server`]: configuration to a running server;
//! - [`cli`]: the command-line client's subcommands;
//! - [`bench`]: the client's `bench`, a load generator for any server of the contract;
//! - [`client`]: what both share and apps embed: channels, TLS options, output, errors, and the
//!   [`client::TokenValidator`];
//! - [`tls`]: certificates and keys from PEM files, checked before use;
//! - [`codec`]: message decoding that logs what does not decode;
//! - [`metrics`]: what the server counts, for Prometheus.

pub mod apis;
pub mod bench;
pub mod cli;
pub mod client;
pub mod codec;
pub mod metrics;
// Generated code is not ours to lint; it allows lints that newer compilers have removed.
#[allow(renamed_and_removed_lints, clippy::all, missing_docs)]
pub mod proto;
pub mod seconds;
pub mod server;
pub mod store;
pub mod tls;
pub mod tokens;
