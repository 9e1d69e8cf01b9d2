//! Identity providers as they are deployed: several issuers, each found by OpenID Connect
//! Discovery over HTTPS (a throwaway CA), each with its own keys, minted by PyJWT in a stand-in
//! provider (`tests/interop/idp.py`). Each provider's keys verify its own tokens only; one
//! provider down, misconfigured or rotating never disturbs the others.

use crate::common;

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use common::pki::Pki;
use common::python::{interop_dir, python};
use common::{call, spawn_server_with, test_config, OutputLines, ServerProcess, TestServer};
use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use mrmat_rust_api_grpc::proto::{TokenV1Output, TokenV1ProtoClient, TokenV1Verdict};
use mrmat_rust_api_grpc::server::ServerConfig;
use mrmat_rust_api_grpc::tokens::ProviderOptions;
use serde_json::{json, Value};

/// A stand-in identity provider (PyJWT keys and tokens), killed when dropped.
struct Idp {
    child: Child,
    stdin: ChildStdin,
    out: OutputLines,
    issuer: String,
    port: u16,
}

impl Idp {
    /// A provider with one `alg` key named `kid`, over HTTPS with `pki`'s server certificate,
    /// on `port` (0: any); `extra` are more arguments of idp.py (`--path`, `--names-issuer`).
    fn start(pki: &Pki, port: u16, alg: &str, kid: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(interop_dir().join("idp.py"))
            .args([&port.to_string(), alg, kid])
            .arg("--cert")
            .arg(pki.path("server.pem"))
            .arg("--key")
            .arg(pki.path("server.key"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the interop venv's python runs idp.py");
        let stdin = child.stdin.take().expect("piped");
        let out = OutputLines::read(child.stdout.take().expect("piped"));
        let line = out
            .line_containing("listening on ", Duration::from_secs(60))
            .expect("idp.py says where it listens");
        let port = line["listening on ".len()..]
            .trim()
            .parse()
            .expect("a port");
        let issuer = out
            .line_containing("issuer ", Duration::from_secs(10))
            .expect("idp.py names its issuer")["issuer ".len()..]
            .to_owned();
        Self {
            child,
            stdin,
            out,
            issuer,
            port,
        }
    }

    fn command(&mut self, command: &Value, answer: &str) -> String {
        writeln!(self.stdin, "{command}").expect("idp.py reads its commands");
        let line = self
            .out
            .line_containing(answer, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("idp.py answers {command}"));
        line[answer.len()..].to_owned()
    }

    /// A token signed by this provider's current key: `claims`, with `iss` its own unless given.
    fn mint(&mut self, claims: Value) -> String {
        self.command(&json!({ "mint": claims }), "token ")
    }

    /// A new key named `kid` replaces the old one.
    fn rotate(&mut self, kid: &str) {
        self.command(&json!({ "rotate": kid }), "rotated ");
    }

    /// The provider as the server is told of it: discovery at its issuer, trusting `pki`.
    fn provider(&self, pki: &Pki) -> ProviderOptions {
        ProviderOptions {
            ca_cert: Some(pki.path("ca.pem")),
            ..ProviderOptions::discovery(&self.issuer)
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(providers: Vec<ProviderOptions>) -> ServerConfig {
    let mut config = test_config();
    config.tokens.providers = providers;
    config.tokens.jwks_refresh = Duration::from_secs(1);
    config
}

fn in_an_hour(claims: Value) -> Value {
    let exp = common::jwt::now() + 3600;
    let mut claims = claims;
    claims["exp"] = json!(exp);
    claims
}

/// The unary answer for `token`: the answer, or the gRPC status code of a failed call.
fn validate(client: &TokenV1ProtoClient, token: &str) -> Result<TokenV1Output, RpcStatusCode> {
    client
        .validate_opt(&common::jwt::input(1, token), call())
        .map_err(|e| match e {
            grpcio::Error::RpcFailure(status) => status.code(),
            other => panic!("{other}"),
        })
}

fn verdict(client: &TokenV1ProtoClient, token: &str) -> TokenV1Verdict {
    let answer = validate(client, token).expect("an answer");
    answer.verdict.enum_value_or_default()
}

fn health(server: &TestServer) -> ServingStatus {
    let mut request = HealthCheckRequest::new();
    request.service = mrmat_rust_api_grpc::apis::token::v1::NAME.to_owned();
    HealthClient::new(server.channel())
        .check_opt(&request, call())
        .expect("health answers")
        .status
        .enum_value_or_default()
}

#[test]
fn each_provider_found_by_discovery_verifies_only_its_own_tokens() {
    let pki = Pki::new();
    // The same kid at all three; A and C both ES256, B RS256; C at a realm path.
    let mut a = Idp::start(&pki, 0, "ES256", "shared", &[]);
    let mut b = Idp::start(&pki, 0, "RS256", "shared", &[]);
    let mut c = Idp::start(&pki, 0, "ES256", "shared", &["--path", "/realms/apps"]);
    assert!(c.issuer.ends_with("/realms/apps"), "{}", c.issuer);
    let server = spawn_server_with(config(vec![
        a.provider(&pki),
        b.provider(&pki),
        c.provider(&pki),
    ]));
    assert_eq!(health(&server), ServingStatus::SERVING);
    let client = TokenV1ProtoClient::new(server.channel());

    for idp in [&mut a, &mut b, &mut c] {
        let token = idp.mint(in_an_hour(json!({"sub": "alice"})));
        let answer = validate(&client, &token).expect("an answer");
        assert_eq!(
            answer.verdict.enum_value_or_default(),
            TokenV1Verdict::TOKEN_V1_VALID,
            "{}: {}",
            idp.issuer,
            answer.status.message
        );
        assert_eq!(answer.issuer, idp.issuer);
    }
    // Tokens that claim A and are signed by another provider's key with the same kid.
    let from_b = b.mint(in_an_hour(json!({"iss": a.issuer, "sub": "mallory"})));
    assert_eq!(
        verdict(&client, &from_b),
        TokenV1Verdict::TOKEN_V1_UNSUPPORTED_ALGORITHM,
        "A's key is EC: it never verifies an RS256 signature"
    );
    let from_c = c.mint(in_an_hour(json!({"iss": a.issuer, "sub": "mallory"})));
    assert_eq!(
        verdict(&client, &from_c),
        TokenV1Verdict::TOKEN_V1_BAD_SIGNATURE,
        "C's key signed it; only A's is asked"
    );
    let nobody = a.mint(in_an_hour(json!({"iss": "https://nobody.example"})));
    assert_eq!(
        verdict(&client, &nobody),
        TokenV1Verdict::TOKEN_V1_WRONG_ISSUER
    );
}

/// `value` with every number a double, as a `google.protobuf.Struct` holds them.
fn as_doubles(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().expect("a number")),
        Value::Array(items) => Value::Array(items.into_iter().map(as_doubles).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, as_doubles(value)))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn a_valid_answer_carries_every_claim_of_every_json_type() {
    let pki = Pki::new();
    let mut idp = Idp::start(&pki, 0, "ES256", "k1", &[]);
    let server = spawn_server_with(config(vec![idp.provider(&pki)]));
    let client = TokenV1ProtoClient::new(server.channel());
    let claims = in_an_hour(json!({
        "sub": "alice", "email": "alice@example.com", "email_verified": true,
        "groups": ["ops", "dev"], "level": 3, "ratio": 0.25, "nothing": null,
        "tenant": {"id": "t-1", "roles": ["admin"], "limits": {"rps": 100}}
    }));
    let token = idp.mint(claims.clone());
    let answer = validate(&client, &token).expect("an answer");
    assert_eq!(
        answer.verdict.enum_value_or_default(),
        TokenV1Verdict::TOKEN_V1_VALID
    );
    let got: Value = serde_json::from_str(
        &protobuf_json_mapping::print_to_string(answer.claims.as_ref().expect("claims"))
            .expect("prints"),
    )
    .expect("JSON");
    let mut want = claims;
    want["iss"] = json!(idp.issuer);
    want["iat"] = got["iat"].clone();
    // A Struct holds every number as a double: 3 comes back as 3.0, the same number.
    assert_eq!(as_doubles(got), as_doubles(want));

    let refused = validate(&client, "not-a-token").expect("an answer");
    assert!(refused.claims.is_none(), "no claims in a refusal");
}

#[test]
fn a_provider_down_at_start_is_unavailable_then_valid_without_a_restart() {
    let pki = Pki::new();
    let mut up = Idp::start(&pki, 0, "ES256", "up", &[]);
    let port = common::free_port();
    let down_issuer = format!("https://localhost:{port}");
    let down = ProviderOptions {
        ca_cert: Some(pki.path("ca.pem")),
        ..ProviderOptions::discovery(&down_issuer)
    };
    let server = spawn_server_with(config(vec![up.provider(&pki), down]));
    assert_eq!(
        health(&server),
        ServingStatus::SERVING,
        "one provider with keys is enough"
    );
    let client = TokenV1ProtoClient::new(server.channel());
    let valid = up.mint(in_an_hour(json!({"sub": "a"})));
    assert_eq!(verdict(&client, &valid), TokenV1Verdict::TOKEN_V1_VALID);

    // A token naming the provider that is down cannot be judged yet: UNAVAILABLE, unary and
    // on a stream (where the stream goes on).
    let claiming = up.mint(in_an_hour(json!({"iss": down_issuer})));
    assert_eq!(
        validate(&client, &claiming).map(|_| ()),
        Err(RpcStatusCode::UNAVAILABLE)
    );
    let (answers, ended) = common::jwt::validate_stream(
        &client,
        vec![
            common::jwt::input(1, &claiming),
            common::jwt::input(2, &valid),
        ],
    );
    assert_eq!(
        answers[0].verdict.enum_value_or_default(),
        TokenV1Verdict::TOKEN_V1_UNAVAILABLE
    );
    assert_eq!(answers[0].status.code, 503, "{}", answers[0].status.message);
    assert_eq!(
        answers[1].verdict.enum_value_or_default(),
        TokenV1Verdict::TOKEN_V1_VALID
    );
    ended.expect("the stream ends OK");

    let mut late = Idp::start(&pki, port, "RS256", "late", &[]);
    assert_eq!(late.issuer, down_issuer);
    let token = late.mint(in_an_hour(json!({"sub": "b"})));
    common::wait_until(
        "the late provider's keys load",
        Duration::from_secs(30),
        || {
            validate(&client, &token)
                .is_ok_and(|a| a.verdict == TokenV1Verdict::TOKEN_V1_VALID.into())
        },
    );
    assert_eq!(verdict(&client, &valid), TokenV1Verdict::TOKEN_V1_VALID);
    // Signed by another provider's key, claiming the late one: now judged, and refused.
    assert_eq!(
        verdict(&client, &claiming),
        TokenV1Verdict::TOKEN_V1_UNKNOWN_KEY
    );
    assert!(late.port == port);
}

#[test]
fn a_key_rotated_at_the_provider_is_used_from_the_first_token_that_names_it() {
    let pki = Pki::new();
    let mut idp = Idp::start(&pki, 0, "ES256", "old", &[]);
    let mut config = config(vec![idp.provider(&pki)]);
    config.tokens.jwks_refresh = Duration::from_secs(3600);
    let server = spawn_server_with(config);
    let client = TokenV1ProtoClient::new(server.channel());
    let old = idp.mint(in_an_hour(json!({"sub": "a"})));
    assert_eq!(verdict(&client, &old), TokenV1Verdict::TOKEN_V1_VALID);
    idp.rotate("new");
    let new = idp.mint(in_an_hour(json!({"sub": "a"})));
    assert_eq!(
        verdict(&client, &new),
        TokenV1Verdict::TOKEN_V1_VALID,
        "an unknown kid fetches the provider's keys again"
    );
    assert_eq!(
        verdict(&client, &old),
        TokenV1Verdict::TOKEN_V1_UNKNOWN_KEY,
        "the old key is gone, and so is its cached answer"
    );
}

/// The server binary, trusting `pki` for its providers' https and refreshing keys every second,
/// with `extra` arguments.
fn start_binary(pki: &Pki, extra: &[&str]) -> ServerProcess {
    let ca = pki.path("ca.pem").display().to_string();
    let mut args = vec!["--jwks-refresh", "1", "--jwks-ca-cert", &ca];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

#[test]
fn a_discovery_document_naming_another_issuer_is_never_trusted() {
    let pki = Pki::new();
    let mut good = Idp::start(&pki, 0, "ES256", "g", &[]);
    let mut liar = Idp::start(
        &pki,
        0,
        "ES256",
        "l",
        &["--names-issuer", "https://elsewhere.example"],
    );
    let issuers = format!("{},{}", good.issuer, liar.issuer);
    let server = start_binary(&pki, &["--oidc-issuer", &issuers]);
    assert!(
        server.listening_line.contains(&good.issuer)
            && server.listening_line.contains(&liar.issuer),
        "the start-up line names the providers: {}",
        server.listening_line
    );
    let warning = server
        .log
        .line_containing("elsewhere.example", Duration::from_secs(20))
        .expect("a warn line names the issuer the document claims");
    assert!(
        warning.contains("WARN") && warning.contains(&liar.issuer),
        "{warning}"
    );
    // One line per attempt, retried: the next attempt says it again.
    server
        .log
        .line_containing("elsewhere.example", Duration::from_secs(20))
        .expect("each attempt warns");
    let client = TokenV1ProtoClient::new(server.channel());
    let lie = liar.mint(in_an_hour(json!({"sub": "x"})));
    assert_eq!(
        validate(&client, &lie).map(|_| ()),
        Err(RpcStatusCode::UNAVAILABLE),
        "its tokens are never valid"
    );
    let fine = good.mint(in_an_hour(json!({"sub": "x"})));
    assert_eq!(verdict(&client, &fine), TokenV1Verdict::TOKEN_V1_VALID);
}

#[test]
fn a_discovery_document_sending_keys_over_plain_http_elsewhere_is_refused() {
    let pki = Pki::new();
    let mut idp = Idp::start(
        &pki,
        0,
        "ES256",
        "k",
        &["--jwks-uri", "http://keys.example/jwks"],
    );
    let server = start_binary(&pki, &["--oidc-issuer", &idp.issuer]);
    let warning = server
        .log
        .line_containing("keys.example", Duration::from_secs(20))
        .expect("a warn line names the jwks_uri");
    assert!(
        warning.contains("WARN") && warning.contains("https only"),
        "{warning}"
    );
    assert_eq!(
        idp.out.count_containing("GET /jwks"),
        0,
        "the provider's own key set is never asked for either"
    );
    let client = TokenV1ProtoClient::new(server.channel());
    let token = idp.mint(in_an_hour(json!({"sub": "x"})));
    let refused = client
        .validate_opt(&common::jwt::input(1, &token), call())
        .expect_err("no keys, no service");
    let grpcio::Error::RpcFailure(status) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(
        status.code(),
        RpcStatusCode::UNAVAILABLE,
        "{}",
        status.message()
    );
}

fn write_providers(path: &std::path::Path, pki: &Pki, idps: &[&Idp]) {
    let text: String = idps
        .iter()
        .map(|idp| {
            format!(
                "[[provider]]\nissuer = \"{}\"\nca_cert = \"{}\"\naudiences = [\"api\"]\n\n",
                idp.issuer,
                pki.path("ca.pem").display()
            )
        })
        .collect();
    std::fs::write(path, text).expect("write the providers file");
}

#[test]
fn sighup_reads_the_providers_file_again_and_a_broken_file_keeps_the_providers() {
    let pki = Pki::new();
    let mut a = Idp::start(&pki, 0, "ES256", "a", &[]);
    let mut b = Idp::start(&pki, 0, "RS256", "b", &[]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("providers.toml");
    write_providers(&file, &pki, &[&a]);
    let server = ServerProcess::start(&[
        "--config",
        file.to_str().expect("UTF-8"),
        "--jwks-refresh",
        "1",
    ]);
    let client = TokenV1ProtoClient::new(server.channel());
    let token_a = a.mint(in_an_hour(json!({"aud": "api"})));
    let token_b = b.mint(in_an_hour(json!({"aud": "api"})));
    let wrong_audience = a.mint(in_an_hour(json!({"aud": "web"})));
    assert_eq!(verdict(&client, &token_a), TokenV1Verdict::TOKEN_V1_VALID);
    assert_eq!(
        verdict(&client, &wrong_audience),
        TokenV1Verdict::TOKEN_V1_WRONG_AUDIENCE,
        "the file's audiences apply"
    );
    assert_eq!(
        verdict(&client, &token_b),
        TokenV1Verdict::TOKEN_V1_WRONG_ISSUER
    );

    write_providers(&file, &pki, &[&a, &b]);
    server.signal("HUP");
    common::wait_until("B is added on SIGHUP", Duration::from_secs(20), || {
        validate(&client, &token_b)
            .is_ok_and(|a| a.verdict == TokenV1Verdict::TOKEN_V1_VALID.into())
    });

    std::fs::write(
        &file,
        "[[provider]]\nissuer = \"https://x\"\nlifetime = 3\n",
    )
    .expect("write");
    server.signal("HUP");
    let warning = server
        .log
        .line_containing("no longer reads", Duration::from_secs(20))
        .expect("a warn line");
    assert!(
        warning.contains("WARN") && warning.contains(":3: unknown field `lifetime`"),
        "{warning}"
    );
    assert_eq!(verdict(&client, &token_a), TokenV1Verdict::TOKEN_V1_VALID);
    assert_eq!(verdict(&client, &token_b), TokenV1Verdict::TOKEN_V1_VALID);
}

#[test]
fn every_providers_file_problem_exits_1_with_one_line_naming_the_file_and_the_line() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("providers.toml");
    let name = file.display().to_string();
    let keys = dir.path().join("jwks.json");
    let key = common::jwt::SigningKey::p256("k");
    std::fs::write(&keys, common::jwt::jwks(&[&key])).expect("write a key set");
    let jwks = keys.display().to_string();
    let cases: Vec<(String, Vec<&str>, String)> = vec![
        (
            "[[provider]]\nissuer = \"https://a.example\"\nleeway = \"soon\"\n".into(),
            vec![],
            format!("{name}:3:"),
        ),
        (
            "[[provider]]\nissuer = \"https://a.example\"\nscopes = []\n".into(),
            vec![],
            format!("{name}:3: unknown field `scopes`"),
        ),
        (
            "[[provider]]\nissuer = \"http://a.example\"\n".into(),
            vec![],
            format!("{name}:2: issuer http://a.example: keys are fetched over https only"),
        ),
        (
            format!("[[provider]]\nissuer = \"ci\"\njwks_file = \"{jwks}\"\njwks_url = \"https://a/k\"\n"),
            vec![],
            format!("{name}:2: issuer ci has both jwks_url and jwks_file"),
        ),
        (
            "[[provider]]\nissuer = \"https://a.example\"\n\n[[provider]]\nissuer = \"https://a.example\"\n".into(),
            vec![],
            format!("{name}:5: issuer https://a.example is already a provider at line 2"),
        ),
        (
            "[[provider]]\n\nissuer = \"https://a.example\"\n".into(),
            vec!["--oidc-issuer", "https://a.example"],
            format!("{name}:3: issuer https://a.example is also given by a flag"),
        ),
        (
            "[[provider]]\nissuer = \"ci\"\njwks_file = \"missing.json\"\n".into(),
            vec![],
            "missing.json of ci: cannot read".to_owned(),
        ),
        (
            "[[provider]\nissuer = \"x\"\n".into(),
            vec![],
            format!("{name}:1:"),
        ),
    ];
    for (text, flags, expected) in cases {
        std::fs::write(&file, &text).expect("write the providers file");
        let out = Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--config",
                &name,
            ])
            .args(&flags)
            .env("RUST_LOG", "off")
            .output()
            .expect("the server binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{text:?}: one line: {stderr}");
        assert!(
            lines[0].contains(&expected),
            "{text:?}: {stderr}, expected {expected:?}"
        );
    }
    // A missing file is named too.
    let out = Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
        .args(["--listen", "127.0.0.1:0", "--store", "memory", "--config"])
        .arg(dir.path().join("nowhere.toml"))
        .output()
        .expect("the server binary runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere.toml: cannot read"));
}

#[test]
fn key_set_loads_and_age_are_labelled_by_issuer() {
    let pki = Pki::new();
    let a = Idp::start(&pki, 0, "ES256", "a", &[]);
    let server = start_binary(
        &pki,
        &[
            "--oidc-issuer",
            &a.issuer,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let loaded = format!(
        "mrmat_token_key_set_loads_total{{issuer=\"{}\",outcome=\"loaded\"}}",
        a.issuer
    );
    common::wait_until("a load counted by issuer", Duration::from_secs(20), || {
        server.metric(&loaded).is_some_and(|n| n >= 1.0)
    });
    let age = server
        .metric(&format!(
            "mrmat_token_key_set_age_seconds{{issuer=\"{}\"}}",
            a.issuer
        ))
        .expect("an age by issuer");
    assert!(age.is_finite() && age >= 0.0, "{age}");
}
