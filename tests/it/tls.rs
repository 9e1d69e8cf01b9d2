//! Transport security: TLS and mutual TLS with certificates made at test time, and the checks
//! on certificate files before the server binds.

use crate::common;

use std::path::Path;

use common::pki::{Pki, OTHER_SERVER_NAME};
use common::{call, spawn_server_with, test_config, TestServer};
use grpcio::{Channel, RpcStatusCode};
use mrmat_rust_api_grpc::client::TlsOptions;
use mrmat_rust_api_grpc::proto::{HealthzInput, HealthzProtoClient};
use mrmat_rust_api_grpc::server::{self, ServerConfig, ServerError, TlsConfig};

fn tls_server(pki: &Pki, cert: &str, client_ca: Option<&str>) -> TestServer {
    spawn_server_with(ServerConfig {
        tls: TlsConfig {
            cert: Some(pki.path(&format!("{cert}.pem"))),
            key: Some(pki.path(&format!("{cert}.key"))),
            client_ca: client_ca.map(|ca| pki.path(ca)),
        },
        ..test_config()
    })
}

/// Client options trusting `ca`, presenting `client` (its `.pem` and `.key`) when given.
fn client_tls(pki: &Pki, ca: &str, client: Option<&str>) -> TlsOptions {
    TlsOptions {
        ca_cert: Some(pki.path(ca)),
        client_cert: client.map(|c| pki.path(&format!("{c}.pem"))),
        client_key: client.map(|c| pki.path(&format!("{c}.key"))),
        ..TlsOptions::default()
    }
}

fn healthz(channel: Channel) -> Result<u32, grpcio::Error> {
    HealthzProtoClient::new(channel)
        .get_health_opt(&HealthzInput::new(), call())
        .map(|answer| answer.code)
}

#[track_caller]
fn assert_refused(result: Result<u32, grpcio::Error>, what: &str) {
    match result {
        Err(grpcio::Error::RpcFailure(status)) => {
            assert_eq!(
                status.code(),
                RpcStatusCode::UNAVAILABLE,
                "{what}: {status:?}"
            )
        }
        other => panic!("{what}: expected the connection to be refused, got {other:?}"),
    }
}

#[test]
fn a_tls_client_gets_answers_from_a_tls_server() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", None);
    let channel = server.channel_with(&client_tls(&pki, "ca.pem", None));
    assert_eq!(healthz(channel).expect("answer over TLS"), 200);
}

#[test]
fn a_plaintext_client_is_refused_by_a_tls_server() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", None);
    assert_refused(healthz(server.channel()), "plaintext against TLS");
    // The server still serves TLS clients afterwards.
    let channel = server.channel_with(&client_tls(&pki, "ca.pem", None));
    assert_eq!(healthz(channel).expect("answer over TLS"), 200);
}

#[test]
fn a_tls_client_refuses_a_server_certificate_from_an_untrusted_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", None);
    let channel = server.channel_with(&client_tls(&pki, "other-ca.pem", None));
    assert_refused(healthz(channel), "server certificate from another CA");
}

#[test]
fn a_server_name_override_verifies_a_certificate_issued_to_another_name() {
    let pki = Pki::new();
    let server = tls_server(&pki, "named-server", None);
    let without = server.channel_with(&client_tls(&pki, "ca.pem", None));
    assert_refused(healthz(without), "certificate not issued to 127.0.0.1");
    let with = server.channel_with(&TlsOptions {
        tls_server_name: Some(OTHER_SERVER_NAME.to_owned()),
        ..client_tls(&pki, "ca.pem", None)
    });
    assert_eq!(healthz(with).expect("answer with the override"), 200);
}

#[test]
fn mutual_tls_serves_a_client_with_a_certificate_from_the_client_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", Some("ca.pem"));
    let channel = server.channel_with(&client_tls(&pki, "ca.pem", Some("client")));
    assert_eq!(healthz(channel).expect("answer over mutual TLS"), 200);
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", Some("ca.pem"));
    let channel = server.channel_with(&client_tls(&pki, "ca.pem", None));
    assert_refused(healthz(channel), "no client certificate");
}

#[test]
fn mutual_tls_refuses_a_client_certificate_from_another_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", Some("ca.pem"));
    let channel = server.channel_with(&client_tls(&pki, "ca.pem", Some("other-client")));
    assert_refused(healthz(channel), "client certificate from another CA");
}

/// The error `start` gives for these TLS files, which must name `culprit`.
fn start_error(tls: TlsConfig, culprit: &Path) -> String {
    let config = ServerConfig {
        tls,
        ..test_config()
    };
    match server::start(&config) {
        Err(e @ ServerError::Tls(_)) => {
            let message = e.to_string();
            assert!(
                message.contains(&culprit.display().to_string()),
                "{message} does not name {}",
                culprit.display()
            );
            message
        }
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("the server started with bad TLS files"),
    }
}

#[test]
fn missing_unreadable_and_mismatched_files_are_refused_by_name() {
    let pki = Pki::new();
    let tls = |cert: &str, key: &str, ca: Option<&str>| TlsConfig {
        cert: Some(pki.path(cert)),
        key: Some(pki.path(key)),
        client_ca: ca.map(|c| pki.path(c)),
    };

    std::fs::write(pki.path("nul.pem"), b"-----BEGIN CERTIFICATE-----\0").expect("write");

    // (certificate, key, client CA, the file the message must name, what it must say)
    #[rustfmt::skip]
    let cases = [
        ("nope.pem", "server.key", None, "nope.pem", "cannot read"),
        ("server.pem", "client.key", None, "client.key", "does not belong"),
        // A key where the certificate should be, and a certificate where the key should be.
        ("server.key", "server.key", None, "server.key", "certificate"),
        ("server.pem", "server.pem", None, "server.pem", "private key"),
        ("server.pem", "server.key", Some("no-ca.pem"), "no-ca.pem", "cannot read"),
        ("nul.pem", "server.key", None, "nul.pem", "NUL"),
    ];
    for (cert, key, ca, culprit, says) in cases {
        let message = start_error(tls(cert, key, ca), &pki.path(culprit));
        assert!(message.contains(says), "{cert} {key} {ca:?}: {message}");
    }
}

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");
const SERVER: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server");

/// Runs the client binary's `healthz` with `args` before the subcommand.
fn healthz_cli(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut command = std::process::Command::new(CLIENT);
    command.args(args).args(["--timeout", "5", "healthz"]);
    for var in [
        "MRMAT_GRPC_SERVER",
        "MRMAT_GRPC_TLS",
        "MRMAT_GRPC_CA_CERT",
        "MRMAT_GRPC_CLIENT_CERT",
        "MRMAT_GRPC_CLIENT_KEY",
        "MRMAT_GRPC_TLS_SERVER_NAME",
    ] {
        command.env_remove(var);
    }
    for (var, value) in env {
        command.env(var, value);
    }
    command.output().expect("the client runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_binaries_speak_mutual_tls_with_the_documented_flags() {
    let pki = Pki::new();
    let path = |name: &str| pki.path(name).display().to_string();
    let server = common::ServerProcess::start(&[
        "--tls-cert",
        &path("server.pem"),
        "--tls-key",
        &path("server.key"),
        "--tls-client-ca",
        &path("ca.pem"),
    ]);
    assert!(
        server.listening_line.contains("(mutual TLS)"),
        "{}",
        server.listening_line
    );
    let out = healthz_cli(
        &[
            "--server",
            &server.address,
            "--ca-cert",
            &path("ca.pem"),
            "--client-cert",
            &path("client.pem"),
            "--client-key",
            &path("client.key"),
        ],
        &[],
    );
    assert_eq!(text(&out.stdout), "[200] OK\n", "{}", text(&out.stderr));

    let without = healthz_cli(
        &["--server", &server.address, "--ca-cert", &path("ca.pem")],
        &[],
    );
    assert_eq!(without.status.code(), Some(1));
    let stderr = text(&without.stderr);
    assert!(stderr.contains(&server.address), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn the_client_flag_tls_alone_trusts_the_default_roots() {
    let pki = Pki::new();
    let path = |name: &str| pki.path(name).display().to_string();
    let server = common::ServerProcess::start(&[
        "--tls-cert",
        &path("server.pem"),
        "--tls-key",
        &path("server.key"),
    ]);
    // Our CA is in no system store, so --tls alone refuses the server...
    let untrusted = healthz_cli(&["--server", &server.address, "--tls"], &[]);
    assert_eq!(
        untrusted.status.code(),
        Some(1),
        "{}",
        text(&untrusted.stdout)
    );
    // ...until the gRPC core's roots file says otherwise.
    let ca = pki.path("ca.pem");
    let trusted = healthz_cli(
        &["--server", &server.address, "--tls"],
        &[("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca)],
    );
    assert_eq!(
        text(&trusted.stdout),
        "[200] OK\n",
        "{}",
        text(&trusted.stderr)
    );
}

#[test]
fn the_server_binary_exits_1_naming_a_bad_tls_file_before_it_listens() {
    let pki = Pki::new();
    let out = std::process::Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(pki.path("server.pem"))
        .arg("--tls-key")
        .arg(pki.path("missing.key"))
        .env("RUST_LOG", "info")
        .output()
        .expect("the server runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("missing.key"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_certificate_without_its_key_is_a_usage_error() {
    let out = std::process::Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .args(["--listen", "127.0.0.1:0", "--tls-cert", "cert.pem"])
        .output()
        .expect("the server runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--tls-key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_client_binary_exits_1_naming_a_bad_tls_file() {
    let pki = Pki::new();
    let missing = pki.path("missing-ca.pem");
    let out = healthz_cli(
        &[
            "--server",
            "127.0.0.1:1",
            "--ca-cert",
            &missing.display().to_string(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing-ca.pem"),
        "{}",
        text(&out.stderr)
    );

    let mismatched = healthz_cli(
        &[
            "--server",
            "127.0.0.1:1",
            "--client-cert",
            &pki.path("client.pem").display().to_string(),
            "--client-key",
            &pki.path("server.key").display().to_string(),
        ],
        &[],
    );
    assert_eq!(mismatched.status.code(), Some(1));
    let stderr = text(&mismatched.stderr);
    assert!(
        stderr.contains("server.key") && stderr.contains("does not belong"),
        "{stderr}"
    );
}

#[test]
fn a_tls_client_against_a_plaintext_server_exits_1_with_one_line() {
    let pki = Pki::new();
    let server = common::spawn_server();
    let ca = pki.path("ca.pem").display().to_string();
    let out = healthz_cli(&["--server", &server.address, "--ca-cert", &ca], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("handshake"), "says why: {stderr}");
}
