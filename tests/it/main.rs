//! Every integration test, in one binary (as grpc-rs, ripgrep and zero2prod keep theirs): each
//! test binary links the gRPC C core and SQLite, so one binary links them once. One module per
//! behaviour; `common` starts real servers and clients for them.
//!
//! `ci/test --quick` leaves out the tests that start PostgreSQL, network namespaces, Prometheus,
//! Python or a proxy: their paths say so (`postgres`, `netns`, `replicas`, `interop`,
//! `prometheus`, `promtool`, `python`, `jwks_url`, whose identity provider is Python's HTTP
//! server, and `proxies`: Envoy, nginx, Caddy, Traefik), and a new test that needs one of those
//! must keep such a word in its name.

mod common;

mod bench;
mod cli;
mod ext_authz;
mod faults;
mod floods;
mod forward_auth;
mod greeting;
mod health;
mod healthz;
mod hostile_input;
mod http_ports;
mod interop;
mod jwks_url;
mod layers;
mod limits;
mod logs;
mod metrics;
mod netns;
mod providers;
mod proxies;
mod reflection;
mod registry;
mod replicas;
mod resource;
mod resource_v2;
mod store;
mod store_conformance;
mod tls;
mod token_client;
mod token_streams;
mod tokens;
