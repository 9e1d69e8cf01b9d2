//! Keys from an identity provider's URL: a real local HTTP(S) server (Python's standard library
//! `http.server`, started by the test) serves the key set; the token service fetches it, keeps
//! it fresh, and says NOT_SERVING while it has none.

use crate::common;

use std::process::{Child, Command, Stdio};

use std::time::Duration;

use common::jwt::{claims, input, token_config, KeyFile, SigningKey};
use common::pki::Pki;
use common::{call, spawn_server_with, OutputLines, TestServer};
use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use mrmat_rust_api_grpc::proto::{TokenV1ProtoClient, TokenV1Verdict};
use mrmat_rust_api_grpc::server::ServerConfig;
use mrmat_rust_api_grpc::tokens::KeysFrom;

/// The stand-in identity provider, killed when dropped.
struct Provider {
    child: Child,
    requests: OutputLines,
    port: u16,
}

impl Provider {
    /// Serves `keys`' folder on `port` (0: any), over HTTPS with `tls` (certificate, key).
    fn start(keys: &KeyFile, port: u16, tls: Option<(&Pki, &str)>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/jwks_server.py");
        let mut command = Command::new("python3");
        command.arg(script).arg(keys.dir()).arg(port.to_string());
        if let Some((pki, name)) = tls {
            command
                .arg(pki.path(&format!("{name}.pem")))
                .arg(pki.path(&format!("{name}.key")));
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (ci/setup installs it)");
        let requests = OutputLines::read(child.stdout.take().expect("piped"));
        let line = requests
            .line_containing("listening on ", Duration::from_secs(20))
            .expect("the provider says where it listens");
        let port = line["listening on ".len()..]
            .trim()
            .parse()
            .expect("a port");
        Self {
            child,
            requests,
            port,
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://localhost:{}/jwks.json", self.port)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_config(keys: &KeyFile, url: &str) -> ServerConfig {
    let mut config = token_config(keys);
    config.tokens.providers[0].keys = KeysFrom::Url(url.to_owned());
    config
}

fn health(server: &TestServer) -> ServingStatus {
    let mut request = HealthCheckRequest::new();
    request.service = "TokenV1Proto".to_owned();
    HealthClient::new(server.channel())
        .check_opt(&request, call())
        .expect("health answers")
        .status
        .enum_value_or_default()
}

fn verdict(client: &TokenV1ProtoClient, token: &str) -> TokenV1Verdict {
    client
        .validate_opt(&input(1, token), call())
        .expect("Validate answers")
        .verdict
        .enum_value_or_default()
}

#[test]
fn keys_are_fetched_from_the_url_and_refreshed_on_schedule() {
    let first = SigningKey::rsa("2026-11", jsonwebtoken::Algorithm::RS256);
    let second = SigningKey::p256("2026-12");
    let keys = KeyFile::new(&[&first]);
    let provider = Provider::start(&keys, 0, None);
    let mut config = url_config(&keys, &provider.url("http"));
    config.tokens.jwks_refresh = Duration::from_secs(1);
    let server = spawn_server_with(config);
    provider
        .requests
        .line_containing("GET /jwks.json", Duration::from_secs(5))
        .expect("fetched at start");
    assert_eq!(health(&server), ServingStatus::SERVING);
    let client = TokenV1ProtoClient::new(server.channel());
    let first_token = first.sign(&claims("kim"));
    assert_eq!(
        verdict(&client, &first_token),
        TokenV1Verdict::TOKEN_V1_VALID
    );

    // The provider rotates: the next scheduled fetch brings the new key and drops the old.
    keys.write(&[&second]);
    let second_token = second.sign(&claims("kim"));
    common::wait_until(
        "the refresh brings the new key",
        Duration::from_secs(10),
        || verdict(&client, &second_token) == TokenV1Verdict::TOKEN_V1_VALID,
    );
    assert_eq!(
        verdict(&client, &first_token),
        TokenV1Verdict::TOKEN_V1_UNKNOWN_KEY
    );
}

#[test]
fn with_the_provider_down_at_start_the_service_is_not_serving_until_the_keys_load() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    // A port that was free a moment ago, where nothing listens yet.
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let server = spawn_server_with(url_config(&keys, &url));
    assert_eq!(health(&server), ServingStatus::NOT_SERVING);
    let client = TokenV1ProtoClient::new(server.channel());
    let token = key.sign(&claims("leo"));
    let error = client
        .validate_opt(&input(1, &token), call())
        .expect_err("no keys yet");
    let grpcio::Error::RpcFailure(status) = error else {
        panic!("{error:?}")
    };
    assert_eq!(status.code(), RpcStatusCode::UNAVAILABLE);
    assert!(
        status
            .message()
            .contains("no identity provider's signing keys have loaded yet")
            && status.message().contains(&url),
        "{}",
        status.message()
    );
    // The other services serve meanwhile.
    let mut request = HealthCheckRequest::new();
    request.service = "ResourceV1Proto".to_owned();
    let other = HealthClient::new(server.channel())
        .check_opt(&request, call())
        .expect("health answers");
    assert_eq!(other.status.enum_value_or_default(), ServingStatus::SERVING);

    // The provider comes up; the retries (1 s, doubling) find it.
    let _provider = Provider::start(&keys, port, None);
    common::wait_until(
        "SERVING once the keys load",
        Duration::from_secs(20),
        || health(&server) == ServingStatus::SERVING,
    );
    assert_eq!(verdict(&client, &token), TokenV1Verdict::TOKEN_V1_VALID);
}

#[test]
fn https_is_verified_against_the_given_ca_and_refused_without_it() {
    let key = SigningKey::p384("ec");
    let keys = KeyFile::new(&[&key]);
    let pki = Pki::new();
    let provider = Provider::start(&keys, 0, Some((&pki, "server")));
    let url = provider.url("https");

    let mut trusted = url_config(&keys, &url);
    trusted.tokens.providers[0].ca_cert = Some(pki.path("ca.pem"));
    let server = spawn_server_with(trusted);
    assert_eq!(health(&server), ServingStatus::SERVING);
    let client = TokenV1ProtoClient::new(server.channel());
    assert_eq!(
        verdict(&client, &key.sign(&claims("mia"))),
        TokenV1Verdict::TOKEN_V1_VALID
    );

    // The system roots do not know the test CA: no keys, NOT_SERVING.
    let untrusting = spawn_server_with(url_config(&keys, &url));
    assert_eq!(health(&untrusting), ServingStatus::NOT_SERVING);
}
