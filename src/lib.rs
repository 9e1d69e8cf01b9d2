//! A gRPC API service on grpcio (the gRPC C core), wire-compatible with mrmat-python-api-grpc
//! (the same contract, `proto/grpc-api.proto`, services and answers), and the central token
//! validation service that the original only described.
//!
//! Modules, from the edge down (each imports only those below it; `ci/test` checks it):
//! - [`server`]: its flags and configuration, and configuration to a running server;
//! - [`cli`]: the command-line client's arguments and subcommands; [`bench`](mod@bench): the client's
//!   load generator for any server of the contract;
//! - [`apis`]: one module per API and version, each implementing a generated service trait over
//!   the domain, and the registry of them; [`client`]: what the CLI, `bench` and apps share
//!   (channels, TLS options, output, errors, the [`client::TokenValidator`] apps embed);
//! - [`authz`]: what a proxy asks (may this request through?) decided from a token's
//!   verification, for Envoy's ext_authz and the forward-auth port alike;
//! - the domain, knowing nothing of gRPC: [`store`] (where resources and revoked tokens live:
//!   memory, SQLite by default, PostgreSQL) and [`tokens`] (token validation: keys, verdicts,
//!   cache, and the revocation port the store implements);
//! - [`http`]: the HTTP ports' one serving layer (limits, timeouts, the connection cap), under
//!   the server's ports on it;
//! - below both: [`metrics`] (what the server counts, for Prometheus), [`availability`]
//!   (whether what an API needs is there), [`eventually`] (an answer now or later), [`proto`] (the generated code) with [`codec`]
//!   (decoding that logs what does not decode), [`logs`] (warn lines a client can cause, held to
//!   a rate), [`tls`] (PEM files, checked), [`time`],
//!   [`quote`], [`seconds`], [`status`] and [`store_error`] (why a store refused a call: one
//!   error for both ports a store implements).

pub mod apis;
pub mod authz;
pub mod availability;
pub mod bench;
pub mod cli;
pub mod client;
pub mod codec;
pub mod eventually;
pub mod http;
pub mod logs;
pub mod metrics;
// Generated code is not ours to lint; it allows lints that newer compilers have removed.
#[allow(renamed_and_removed_lints, clippy::all, missing_docs)]
pub mod proto;
pub mod quote;
pub mod seconds;
pub mod server;
pub mod status;
pub mod store;
pub mod store_error;
pub mod time;
pub mod tls;
pub mod token_file;
pub mod tokens;
