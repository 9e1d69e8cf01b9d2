//! Opaque tokens judged by introspection (RFC 7662), against a stand-in endpoint that counts
//! (`tests/interop/introspection_server.py`, each token naming the answer it gets): answers as
//! claims, one call per token however many ask, inactive answers cached, a stale answer while
//! the endpoint is down, revocation by the token itself, the bound on calls in flight, and
//! hostile answers. The real OpenID Provider's opaque tokens are in `routes.rs`' neighbour
//! `introspection_oidc` tests below.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::jwt::{claims, input, token_config, KeyFile, SigningKey};
use common::pki::{client_tls, mtls, Pki, ADMIN_COMMON_NAME};
use common::{call, spawn_server_with, OutputLines, TestServer};
use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::proto::{
    TokenV1Output, TokenV1ProtoClient, TokenV1RevokeInput, TokenV1Verdict,
};
use mrmat_rust_api_grpc::server::ServerConfig;
use mrmat_rust_api_grpc::tokens::{
    IntrospectionEndpoint, IntrospectionOptions, KeysFrom, ProviderOptions,
};
use serde_json::Value;

/// The issuer of the opaque tokens.
pub const OPAQUE_ISSUER: &str = "https://opaque.example";

/// The stand-in endpoint, killed when dropped.
pub struct Endpoint {
    child: Child,
    _out: OutputLines,
    pub port: u16,
    /// Holds `secret`, the client secret of `gateway`.
    pub secret_dir: tempfile::TempDir,
}

impl Endpoint {
    pub fn start() -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/introspection_server.py"
        );
        let mut child = Command::new("python3")
            .args([script, "0", "gateway", "gateway-secret", OPAQUE_ISSUER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (ci/setup installs it)");
        let out = OutputLines::read(child.stdout.take().expect("piped"));
        let line = out
            .line_containing("listening on ", Duration::from_secs(20))
            .expect("the endpoint says where it listens");
        let port = line["listening on ".len()..]
            .trim()
            .parse()
            .expect("a port");
        let secret_dir = tempfile::tempdir().expect("a folder");
        std::fs::write(secret_dir.path().join("secret"), "gateway-secret\n").expect("write");
        Self {
            child,
            _out: out,
            port,
            secret_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// Introspection at this endpoint as `gateway`, with the defaults.
    pub fn options(&self) -> IntrospectionOptions {
        IntrospectionOptions::new(
            IntrospectionEndpoint::Url(self.url()),
            "gateway",
            self.secret_dir.path().join("secret"),
        )
    }

    fn post(&self, path: &str) {
        ureq::post(&format!("http://127.0.0.1:{}{path}", self.port))
            .send("")
            .expect("the endpoint takes its controls");
    }

    /// `{"calls", "max_in_flight", "by_token"}`.
    pub fn stats(&self) -> Value {
        let text = ureq::get(&format!("http://127.0.0.1:{}/stats", self.port))
            .call()
            .expect("stats")
            .body_mut()
            .read_to_string()
            .expect("its answer");
        serde_json::from_str(&text).expect("JSON")
    }

    /// The calls made for `token`.
    pub fn calls_for(&self, token: &str) -> u64 {
        self.stats()["by_token"][token].as_u64().unwrap_or(0)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JWT provider (a key file) and the opaque one at `endpoint`, introspection set by `tune`.
struct Setup {
    endpoint: Endpoint,
    key: SigningKey,
    _keys: KeyFile,
    config: ServerConfig,
}

impl Setup {
    fn new(tune: impl FnOnce(&mut IntrospectionOptions)) -> Self {
        let endpoint = Endpoint::start();
        let key = SigningKey::p256("p256-1");
        let keys = KeyFile::new(&[&key]);
        let mut config = token_config(&keys);
        let mut introspection = endpoint.options();
        tune(&mut introspection);
        let mut opaque = ProviderOptions::new(OPAQUE_ISSUER, KeysFrom::None);
        opaque.audiences = vec!["api".to_owned()];
        opaque.introspection = Some(introspection);
        config.tokens.providers.push(opaque);
        Self {
            endpoint,
            key,
            _keys: keys,
            config,
        }
    }
}

fn validate(server: &TestServer, token: &str) -> Result<TokenV1Output, grpcio::Error> {
    validate_on(server.channel(), token)
}

fn validate_on(channel: grpcio::Channel, token: &str) -> Result<TokenV1Output, grpcio::Error> {
    TokenV1ProtoClient::new(channel).validate_opt(&input(1, token), call())
}

fn verdict(server: &TestServer, token: &str) -> TokenV1Verdict {
    validate(server, token)
        .expect("an answer")
        .verdict
        .enum_value_or_default()
}

fn unavailable(server: &TestServer, token: &str) -> String {
    match validate(server, token) {
        Err(grpcio::Error::RpcFailure(status)) if status.code() == RpcStatusCode::UNAVAILABLE => {
            status.message().to_owned()
        }
        other => panic!(
            "UNAVAILABLE for {}: {other:?}",
            &token[..token.len().min(20)]
        ),
    }
}

fn unique(kind: &str) -> String {
    format!("{kind}-{}", fastrand::u64(..))
}

#[test]
fn an_active_token_is_valid_with_the_answer_as_claims_and_asked_once_however_many_ask() {
    let setup = Setup::new(|_| {});
    let server = spawn_server_with(setup.config.clone());
    let token = unique("active");
    let askers: Vec<_> = (0..16)
        .map(|_| {
            let (channel, token) = (server.channel(), token.clone());
            std::thread::spawn(move || validate_on(channel, &token).expect("an answer"))
        })
        .collect();
    for asker in askers {
        let answer = asker.join().expect("asked");
        assert_eq!(
            answer.verdict,
            TokenV1Verdict::TOKEN_V1_VALID.into(),
            "{answer:?}"
        );
        assert_eq!(answer.subject, token["active-".len()..]);
        assert_eq!(answer.issuer, OPAQUE_ISSUER);
        assert_eq!(answer.scopes, ["read", "write"]);
        assert_eq!(answer.audience, ["api"]);
        assert!(answer.expires_at > 0);
        let claims =
            protobuf_json_mapping::print_to_string(answer.claims.as_ref().expect("claims"))
                .expect("JSON");
        let claims: Value = serde_json::from_str(&claims).expect("JSON");
        assert_eq!(claims["client_id"], "app");
        assert!(claims.get("active").is_none(), "{claims}");
    }
    assert_eq!(
        setup.endpoint.calls_for(&token),
        1,
        "one call for sixteen questions"
    );
    // A JWT of the other provider in the same file is judged by its keys, as before.
    let jwt = setup.key.sign(&claims("jo"));
    assert_eq!(verdict(&server, &jwt), TokenV1Verdict::TOKEN_V1_VALID);
    assert_eq!(
        setup.endpoint.stats()["calls"],
        1,
        "a JWT is never introspected"
    );
}

#[test]
fn inactive_is_its_own_verdict_and_a_replay_is_answered_from_the_cache_until_it_runs_out() {
    let setup = Setup::new(|i| i.inactive_cache = Duration::from_secs(2));
    let server = spawn_server_with(setup.config.clone());
    let token = unique("nobody");
    for _ in 0..5 {
        let answer = validate(&server, &token).expect("an answer");
        assert_eq!(answer.verdict, TokenV1Verdict::TOKEN_V1_INACTIVE.into());
        assert_eq!(answer.status.code, 401);
        assert!(answer.status.message.contains("not active"), "{answer:?}");
    }
    assert_eq!(
        setup.endpoint.calls_for(&token),
        1,
        "replays come from the cache"
    );
    common::wait_until(
        "the inactive answer to run out",
        Duration::from_secs(10),
        || {
            verdict(&server, &token);
            setup.endpoint.calls_for(&token) == 2
        },
    );
}

#[test]
fn the_endpoint_down_is_unavailable_unless_a_stale_answer_may_be_used() {
    for stale in [Duration::ZERO, Duration::from_secs(60)] {
        let setup = Setup::new(|i| {
            i.cache = Duration::from_secs(1);
            i.stale_if_error = stale;
        });
        let server = spawn_server_with(setup.config.clone());
        let known = unique("active");
        assert_eq!(verdict(&server, &known), TokenV1Verdict::TOKEN_V1_VALID);
        setup.endpoint.post("/down");
        // Past its cache time it is asked again, and the endpoint cannot answer.
        common::wait_until("the cache time to pass", Duration::from_secs(10), || {
            let _ = validate(&server, &known);
            setup.endpoint.calls_for(&known) >= 2
        });
        let never_seen = unique("active");
        let why = unavailable(&server, &never_seen);
        assert!(why.contains("cannot judge") && why.contains("503"), "{why}");
        if stale.is_zero() {
            unavailable(&server, &known);
        } else {
            assert_eq!(
                verdict(&server, &known),
                TokenV1Verdict::TOKEN_V1_VALID,
                "stale"
            );
        }
        setup.endpoint.post("/up");
        assert_eq!(
            verdict(&server, &never_seen),
            TokenV1Verdict::TOKEN_V1_VALID
        );
    }
}

#[test]
fn a_token_revoked_by_itself_or_its_jti_is_refused_at_once_though_cached() {
    let pki = Pki::new();
    let setup = Setup::new(|i| i.cache = Duration::from_secs(300));
    let mut config = mtls(setup.config.clone(), &pki);
    config.apis.token_admins = vec![ADMIN_COMMON_NAME.to_owned()];
    let server = spawn_server_with(config);
    let user = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "client")));
    let admin = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "admin-client")));
    let ask = |token: &str| {
        user.validate_opt(&input(1, token), call())
            .expect("an answer")
            .verdict
            .enum_value_or_default()
    };
    let (plain, with_jti) = (unique("active"), unique("jti"));
    for token in [&plain, &with_jti] {
        assert_eq!(ask(token), TokenV1Verdict::TOKEN_V1_VALID);
    }
    let mut by_token = TokenV1RevokeInput::new();
    by_token.token = plain.clone();
    admin.revoke_opt(&by_token, call()).expect("revoked");
    let mut by_jti = TokenV1RevokeInput::new();
    by_jti.token_id = with_jti.clone();
    admin.revoke_opt(&by_jti, call()).expect("revoked");
    for token in [&plain, &with_jti] {
        assert_eq!(ask(token), TokenV1Verdict::TOKEN_V1_REVOKED);
        assert_eq!(
            setup.endpoint.calls_for(token),
            1,
            "the cached answer, refused"
        );
    }
    // Both, or neither: the admin is told to give one.
    let mut both = by_token.clone();
    both.token_id = "x".to_owned();
    for wrong in [both, TokenV1RevokeInput::new()] {
        let Err(grpcio::Error::RpcFailure(status)) = admin.revoke_opt(&wrong, call()) else {
            panic!("refused");
        };
        assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT);
        assert!(
            status.message().contains("give one of"),
            "{}",
            status.message()
        );
    }
    // And a user may not revoke.
    let Err(grpcio::Error::RpcFailure(status)) = user.revoke_opt(&by_token, call()) else {
        panic!("refused");
    };
    assert_eq!(status.code(), RpcStatusCode::PERMISSION_DENIED);
}

#[test]
fn hostile_answers_cannot_judge_and_hostile_tokens_are_never_sent() {
    let setup = Setup::new(|i| i.timeout = Duration::from_millis(1000));
    let server = spawn_server_with(setup.config.clone());
    for (kind, says) in [
        ("huge", "larger than 65536 bytes"),
        ("redirect", "a redirect, which is not followed"),
        ("stringy", "active member is a string"),
        ("deep", "not JSON (or nests deeper"),
        ("dup", "twice"),
        ("fail", "HTTP 500"),
        ("slow", "cannot call it"),
    ] {
        let why = unavailable(&server, &unique(kind));
        assert!(why.contains(says), "{kind}: {why}");
        // A good answer between them: five failures in a row would hold calls off.
        assert_eq!(
            verdict(&server, &unique("active")),
            TokenV1Verdict::TOKEN_V1_VALID
        );
    }
    let other = validate(&server, &unique("otheraud")).expect("an answer");
    assert_eq!(
        other.verdict,
        TokenV1Verdict::TOKEN_V1_WRONG_AUDIENCE.into()
    );
    let calls = setup.endpoint.stats()["calls"].as_u64().expect("calls");
    for hostile in [
        "a".repeat(1 << 20),
        "two words".to_owned(),
        "ünïcode".to_owned(),
        "tab\there".to_owned(),
    ] {
        let answer = validate(&server, &hostile).expect("an answer");
        assert_eq!(answer.verdict, TokenV1Verdict::TOKEN_V1_MALFORMED.into());
    }
    assert_eq!(
        setup.endpoint.stats()["calls"].as_u64(),
        Some(calls),
        "none sent"
    );
    // The server is well after all of it.
    assert_eq!(
        verdict(&server, &unique("active")),
        TokenV1Verdict::TOKEN_V1_VALID
    );
}

#[test]
fn calls_beyond_the_concurrency_wait_a_bounded_time_then_cannot_be_judged() {
    let setup = Setup::new(|i| {
        i.concurrency = 2;
        i.queue_wait = Duration::from_millis(300);
        i.timeout = Duration::from_secs(5);
    });
    let server = spawn_server_with(setup.config.clone());
    let askers: Vec<_> = (0..6)
        .map(|_| {
            let channel = server.channel();
            std::thread::spawn(move || validate_on(channel, &unique("slow")))
        })
        .collect();
    let answers: Vec<_> = askers
        .into_iter()
        .map(|a| a.join().expect("asked"))
        .collect();
    let busy = answers
        .iter()
        .filter(|answer| {
            matches!(answer, Err(grpcio::Error::RpcFailure(s))
                if s.code() == RpcStatusCode::UNAVAILABLE && s.message().contains("too many"))
        })
        .count();
    let valid = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!((valid, busy), (2, 4), "{answers:?}");
    assert_eq!(setup.endpoint.stats()["max_in_flight"], 2);
}

#[test]
fn a_bad_client_secret_is_unavailable_with_why_and_a_missing_one_stops_the_start() {
    let setup = Setup::new(|_| {});
    std::fs::write(setup.endpoint.secret_dir.path().join("wrong"), "nope").expect("write");
    let mut config = setup.config.clone();
    let opaque = config.tokens.providers.last_mut().expect("the opaque one");
    let introspection = opaque.introspection.as_mut().expect("introspects");
    introspection.client_secret_file = setup.endpoint.secret_dir.path().join("wrong");
    let server = spawn_server_with(config.clone());
    let why = unavailable(&server, &unique("active"));
    assert!(
        why.contains("does not accept this server's client_id"),
        "{why}"
    );
    drop(server);
    let opaque = config.tokens.providers.last_mut().expect("the opaque one");
    let introspection = opaque.introspection.as_mut().expect("introspects");
    introspection.client_secret_file = setup.endpoint.secret_dir.path().join("absent");
    // A store of its own: the server above may still be closing the file it shares.
    config.store = mrmat_rust_api_grpc::store::StoreOptions::memory();
    let Err(e) = mrmat_rust_api_grpc::server::start(&config) else {
        panic!("a missing secret stops the start");
    };
    assert!(e.to_string().contains("client_secret_file"), "{e}");
}

/// A real OpenID Provider (npm `oidc-provider`) issuing opaque access tokens, with its
/// introspection and revocation endpoints, found by discovery.
mod real_provider {
    use super::*;
    use common::oidc::OpenIdProvider;

    #[test]
    fn its_opaque_tokens_are_valid_until_revoked_there_or_here_and_stale_while_it_is_down() {
        let pki = Pki::new();
        let mut provider = OpenIdProvider::start(&pki);
        let key = SigningKey::p256("p256-1");
        let keys = KeyFile::new(&[&key]);
        let secret = tempfile::tempdir().expect("a folder");
        std::fs::write(secret.path().join("secret"), "gateway-secret").expect("write");
        let mut config = mtls(token_config(&keys), &pki);
        config.apis.token_admins = vec![ADMIN_COMMON_NAME.to_owned()];
        let mut introspection = IntrospectionOptions::new(
            IntrospectionEndpoint::Discovery,
            "gateway",
            secret.path().join("secret"),
        );
        introspection.cache = Duration::from_secs(1);
        introspection.stale_if_error = Duration::from_secs(300);
        let mut oidc = ProviderOptions::discovery(&provider.issuer);
        oidc.ca_cert = Some(pki.path("ca.pem"));
        oidc.audiences = vec!["api".to_owned()];
        oidc.introspection = Some(introspection);
        config.tokens.providers.push(oidc);
        let server = spawn_server_with(config);
        let user = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "client")));
        let admin = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "admin-client")));
        let ask = |token: &str| user.validate_opt(&input(1, token), call());
        let verdict_of = |token: &str| match ask(token) {
            Ok(answer) => answer.verdict.enum_value_or_default(),
            Err(_) => TokenV1Verdict::TOKEN_V1_UNAVAILABLE,
        };
        let jwt = key.sign(&claims("jo"));

        let token = provider.opaque_token("ops-job");
        assert!(!token.contains('.'), "opaque, not a JWT");
        // Discovery runs in the background: until it has, the endpoint is not known.
        common::wait_until("discovery", Duration::from_secs(30), || {
            verdict_of(&token) == TokenV1Verdict::TOKEN_V1_VALID
        });
        let answer = ask(&token).expect("an answer");
        assert_eq!(answer.issuer, provider.issuer);
        assert_eq!(answer.scopes, ["read"]);
        assert_eq!(answer.audience, ["api"]);
        let claims_json =
            protobuf_json_mapping::print_to_string(answer.claims.as_ref().expect("claims"))
                .expect("JSON");
        let claims_json: Value = serde_json::from_str(&claims_json).expect("JSON");
        assert_eq!(claims_json["client_id"], "ops-job");
        assert_eq!(claims_json["groups"], serde_json::json!(["ops", "dev"]));
        assert_eq!(verdict_of(&jwt), TokenV1Verdict::TOKEN_V1_VALID);

        // Revoked at the provider: inactive once the cached answer has run out.
        provider.revoke("ops-job", &token);
        common::wait_until("the cache time to pass", Duration::from_secs(10), || {
            verdict_of(&token) == TokenV1Verdict::TOKEN_V1_INACTIVE
        });

        // Revoked here, by the token itself: at once, though its answer is cached.
        let second = provider.opaque_token("dev-job");
        assert_eq!(verdict_of(&second), TokenV1Verdict::TOKEN_V1_VALID);
        let mut revoke = TokenV1RevokeInput::new();
        revoke.token = second.clone();
        admin.revoke_opt(&revoke, call()).expect("revoked");
        assert_eq!(verdict_of(&second), TokenV1Verdict::TOKEN_V1_REVOKED);

        // The provider stopped: a token never seen cannot be judged; one seen is served stale.
        let third = provider.opaque_token("dev-job");
        let unseen = provider.opaque_token("ops-job");
        assert_eq!(verdict_of(&third), TokenV1Verdict::TOKEN_V1_VALID);
        drop(provider);
        match ask(&unseen) {
            Err(grpcio::Error::RpcFailure(status)) => {
                assert_eq!(status.code(), RpcStatusCode::UNAVAILABLE);
                assert!(
                    status.message().contains("cannot judge"),
                    "{}",
                    status.message()
                );
            }
            other => panic!("UNAVAILABLE: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(verdict_of(&third), TokenV1Verdict::TOKEN_V1_VALID, "stale");
        assert_eq!(
            verdict_of(&jwt),
            TokenV1Verdict::TOKEN_V1_VALID,
            "throughout"
        );
    }
}

/// 100,000 distinct garbage tokens through one stream of the server binary: at most the
/// configured calls are in flight at any moment, the server's peak memory stays bounded, a
/// cached valid token keeps being answered meanwhile, and the endpoint failing is one warn line.
#[test]
fn a_flood_of_garbage_tokens_is_bounded_in_calls_and_memory_and_good_tokens_keep_answering() {
    use common::ServerProcess;
    let endpoint = Endpoint::start();
    let key = SigningKey::p256("p256-1");
    let keys = KeyFile::new(&[&key]);
    let dir = tempfile::tempdir().expect("a folder");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[provider]]\nissuer = \"{OPAQUE_ISSUER}\"\nintrospection_url = \"{}\"\n\
             client_id = \"gateway\"\nclient_secret_file = \"{}\"\naudiences = [\"api\"]\n\
             introspection_concurrency = 4\nintrospection_queue_wait_ms = 20\n",
            endpoint.url(),
            endpoint.secret_dir.path().join("secret").display()
        ),
    )
    .expect("write the config");
    let mut args = common::jwt::token_args(&keys);
    args.extend(["--config".to_owned(), config.display().to_string()]);
    args.extend(
        [
            "--store",
            "memory",
            "--metrics-listen",
            "127.0.0.1:0",
            "--forward-auth-listen",
            "127.0.0.1:0",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let jwt = key.sign(&claims("steady"));
    let channel = server.channel();
    let client = TokenV1ProtoClient::new(channel);
    let first = client
        .validate_opt(&input(1, &jwt), call())
        .expect("an answer");
    assert_eq!(first.verdict, TokenV1Verdict::TOKEN_V1_VALID.into());
    let before = common::peak_kib(server.pid());

    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let steady = {
        let (flooding, client, jwt) = (
            std::sync::Arc::clone(&flooding),
            client.clone(),
            jwt.clone(),
        );
        std::thread::spawn(move || {
            let (mut answered, mut refused) = (0u64, 0u64);
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = client.validate_opt(&input(1, &jwt), call());
                match answer {
                    Ok(a) if a.verdict == TokenV1Verdict::TOKEN_V1_VALID.into() => answered += 1,
                    _ => refused += 1,
                }
                // Paced: a steady app, not a second flood on this machine's two cores.
                std::thread::sleep(Duration::from_millis(2));
            }
            (answered, refused)
        })
    };
    let count: usize = std::env::var("FLOOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let garbage: String = (0..count)
        .map(|n| format!("delay-{n}-{}\n", fastrand::u64(..)))
        .collect();
    let out = common::output_fed(
        common::client_command(&server.address)
            .args(["--timeout", "60"])
            .args(["token", "v1", "validate", "--stream"]),
        garbage.as_bytes(),
    );
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let (answered, refused) = steady.join().expect("the steady asker");
    assert!(
        answered > 0 && refused == 0,
        "{answered} valid, {refused} not, during the flood"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        count,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .all(|l| l.contains("Inactive") || l.contains("Unavailable")),
        "{}",
        stdout
            .lines()
            .find(|l| !l.contains("Inactive") && !l.contains("Unavailable"))
            .unwrap_or("")
    );
    let stats = endpoint.stats();
    assert!(stats["max_in_flight"].as_u64() <= Some(4), "{stats}");
    let peak = common::peak_kib(server.pid());
    eprintln!(
        "flood: {} calls, {} in flight at most; peak {before} KiB before, {peak} KiB after; \
         {answered} cached validations meanwhile",
        stats["calls"], stats["max_in_flight"]
    );
    let busy = server.metric(&format!(
        "mrmat_token_introspections_total{{issuer=\"{OPAQUE_ISSUER}\",outcome=\"busy\"}}"
    ));
    assert!(
        busy.is_some_and(|n| n > 0.0),
        "questions beyond the bound: {busy:?}"
    );

    assert_eq!(
        server.log.count_containing("introspection endpoint"),
        0,
        "no failure"
    );

    // The endpoint failing: one warn line, not one per token, and calls held off after a few.
    let calls_before = endpoint.stats()["calls"].as_u64().expect("calls");
    endpoint.post("/down");
    let more: String = (0..2_000).map(|n| format!("fail-{n}\n")).collect();
    common::output_fed(
        common::client_command(&server.address)
            .args(["--timeout", "60"])
            .args(["token", "v1", "validate", "--stream"]),
        more.as_bytes(),
    );
    let warned = server
        .log
        .line_containing("introspection endpoint", Duration::from_secs(10))
        .expect("a warning");
    assert!(warned.contains("fails: it answered HTTP 503"), "{warned}");
    let calls_down = endpoint.stats()["calls"].as_u64().expect("calls") - calls_before;
    assert!(
        calls_down < 100,
        "{calls_down} calls for 2,000 tokens to a failing endpoint"
    );
    // Forward auth cannot judge either: 503, for the proxy to retry or fail closed.
    let auth = server.forward_auth_address().expect("forward auth");
    let mut raw = common::hostile::Raw::connect(&auth);
    raw.send(b"GET /auth HTTP/1.1\r\nHost: auth\r\nAuthorization: Bearer active-unseen\r\n\r\n");
    let answer = raw.answer().expect("an answer");
    assert_eq!(answer.status, 503, "{answer:?}");
    endpoint.post("/up");
    common::wait_until("the hold-off to end", Duration::from_secs(40), || {
        client
            .validate_opt(&input(1, &unique("active")), call())
            .is_ok()
    });

    // The client: each verdict by name; Revoke by the token itself needs an admin.
    let out = common::client_output(
        &server.address,
        &["token", "v1", "validate", "active-cli", "nobody-cli"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("[200] Valid"),
        "{out:?}"
    );
    assert!(lines[1].starts_with("[401] Inactive"), "{out:?}");
    let out = common::output_fed(
        common::client_command(&server.address).args([
            "token",
            "v1",
            "revoke",
            "--token-file",
            "-",
        ]),
        b"Bearer active-cli\n",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"),
        "{out:?}"
    );
    let again = server
        .log
        .line_containing(" fails: ", Duration::from_millis(10));
    assert!(again.is_none(), "one warn line: {again:?}");
    assert_eq!(
        server.log.count_containing("gateway-secret"),
        0,
        "no secret logged"
    );
    assert!(
        peak < before + 128 * 1024,
        "{before} KiB before, {peak} KiB after"
    );
}

#[test]
fn check_config_reads_the_client_secret_as_the_start_would_and_never_prints_it() {
    let endpoint = Endpoint::start();
    let dir = tempfile::tempdir().expect("a folder");
    let config = dir.path().join("config.toml");
    let write = |secret_file: &str| {
        std::fs::write(
            &config,
            format!(
                "[[provider]]\nissuer = \"{OPAQUE_ISSUER}\"\nintrospection_url = \"{}\"\n\
                 client_id = \"gateway\"\nclient_secret_file = \"{secret_file}\"\n",
                endpoint.url()
            ),
        )
        .expect("write the config");
    };
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
            .args(["--config", &config.display().to_string(), "--check-config"])
            .output()
            .expect("the server runs")
    };
    write("absent.secret");
    let out = check();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("client_secret_file") && stderr.contains("absent.secret"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("good.secret"), "s3cr3t-value\n").expect("write");
    write("good.secret");
    let out = check();
    assert!(out.status.success(), "{out:?}");
    let all = format!("{out:?}");
    assert!(
        all.contains(OPAQUE_ISSUER) && !all.contains("s3cr3t"),
        "{all}"
    );
}
