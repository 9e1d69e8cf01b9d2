//! What the server's port speaks: its credentials (plaintext, TLS or mutual TLS, from files
//! checked first), the C core's channel arguments (message size, streams, keepalive), and why a
//! bind failed.

use std::ffi::CString;
use std::sync::Arc;

use grpcio::{
    CertificateRequestType, ChannelBuilder, Environment, ServerBuilder, ServerCredentials,
    ServerCredentialsBuilder,
};

use super::{ListenAddress, ServerConfig, TlsConfig};
use crate::tls::{self, TlsError};

/// Plaintext, TLS or mutual TLS credentials, from files that have been checked.
pub(super) fn credentials(config: &TlsConfig) -> Result<ServerCredentials, TlsError> {
    let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
        return Ok(ServerCredentials::insecure());
    };
    let identity = tls::read_identity(cert, key)?;
    let mut builder = ServerCredentialsBuilder::new().add_cert(identity.cert_chain, identity.key);
    if let Some(ca) = &config.client_ca {
        builder = builder.root_cert(
            tls::read_certificates(ca)?,
            CertificateRequestType::RequestAndRequireClientCertificateAndVerify,
        );
    }
    Ok(builder.build())
}

/// A server builder whose every connection gets the configuration's limits and keepalive.
pub(super) fn builder(env: Arc<Environment>, config: &ServerConfig) -> ServerBuilder {
    let keepalive = &config.keepalive;
    // The core takes these as C ints; the flags keep them within one.
    let int = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
    let args = ChannelBuilder::new(env.clone())
        // The core sets SO_REUSEPORT by default, which lets a second server share a busy port
        // silently; a port already in use must be an error instead.
        .raw_cfg_int(CString::new("grpc.so_reuseport").expect("no NUL"), 0)
        .max_receive_message_len(int(config.limits.max_request_bytes))
        .max_concurrent_stream(int(config.limits.max_concurrent_streams))
        // A stream's receive window stays HTTP/2's 64 KiB: with the core's bandwidth-delay
        // probing, a stream whose messages are not read grew its window (and what the core
        // buffers for it) to tens of MiB, 300 of them past 6 GB in 30 s. A pending read still
        // opens the window for the whole message it waits for.
        .http2_bdp_probe(false)
        // Ping quiet connections, with calls or without, and drop those that do not answer.
        .keepalive_time(keepalive.time)
        .keepalive_timeout(keepalive.timeout)
        .keepalive_permit_without_calls(true)
        .http2_max_pings_without_data(0)
        // Accept clients' keepalive pings down to this interval, idle or not.
        .http2_min_recv_ping_interval_without_data(keepalive.min_ping_interval)
        .build_args();
    ServerBuilder::new(env).channel_args(args)
}

/// The core only says that binding failed; the OS says why when asked the same thing.
pub(super) fn why_bind_failed(address: &ListenAddress) -> String {
    let host = address.host().trim_start_matches('[').trim_end_matches(']');
    match std::net::TcpListener::bind((host, address.port())) {
        Err(e) => e.to_string(),
        Ok(_) => "the gRPC core refused the address (RUST_LOG=debug shows why)".to_owned(),
    }
}
