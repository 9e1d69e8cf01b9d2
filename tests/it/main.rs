//! Every integration test, in one binary (as grpc-rs, ripgrep and zero2prod keep theirs): each
//! test binary links the gRPC C core and SQLite, so one binary links them once. One module per
//! behaviour; `common` starts real servers and clients for them.
//!
//! `ci/test --quick` leaves out the tests that start PostgreSQL, network namespaces, Prometheus,
//! Python, npm's peers, podman or a proxy, by module path: `ci/test`'s `SLOW` lists the modules
//! (`interop`, `netns`, `replicas`, `jwks_url`, `providers`, `proxies`, `floods`, `image`,
//! `kubernetes`) and the submodules of mixed ones (`store::with_postgres`,
//! `metrics::with_prometheus`, `routes::with_openid_provider`, ...). A new test that starts such a peer goes in
//! one of those modules, or in a new one added to that list.

mod common;

mod bench;
mod cli;
mod docs;
mod dpop;
mod ext_authz;
mod faults;
mod floods;
mod forward_auth;
mod greeting;
mod health;
mod healthz;
mod hostile_input;
mod http_ports;
mod image;
mod interop;
mod introspection;
mod jwks_url;
mod kubernetes;
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
mod routes;
mod store;
mod store_conformance;
mod tls;
mod token_client;
mod token_streams;
mod tokens;
