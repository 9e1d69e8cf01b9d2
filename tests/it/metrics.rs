//! The server binary's metrics endpoint (`--metrics-listen`): its text passes promtool (the
//! Prometheus project's own checker), its counters move by exactly the calls made, a real
//! Prometheus scrapes it, the Grafana dashboard asks only for what it serves, and a port in use
//! stops the server before it listens.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::jwt::{
    self, alg_name, claims, input, token_args, validate_stream, KeyFile, SigningKey,
};
use common::pki::{client_tls, Pki, ADMIN_COMMON_NAME};
use common::{call, ServerProcess};
use grpcio::{Channel, ChannelBuilder, EnvBuilder, RpcStatusCode};
use jsonwebtoken::Algorithm;
use mrmat_rust_api_grpc::client::TlsOptions;
use mrmat_rust_api_grpc::proto::{
    GreetingV2Input, GreetingV2ProtoClient, ResourceV2GetRequest, ResourceV2ProtoClient,
    TokenV1ProtoClient, TokenV1RevokeInput, TokenV1Verdict,
};
use serde_json::{json, Value};

/// One series: its name and its labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// `name{a="b",c="d"}` as the text format writes it (no spaces, values with `\"` and `\\`).
fn parse_series(text: &str) -> Series {
    let Some((name, rest)) = text.split_once('{') else {
        return Series {
            name: text.to_owned(),
            labels: BTreeMap::new(),
        };
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "a quoted label value in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().expect("an escaped character")),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        match chars.next() {
            Some(',') => {}
            Some('}') | None => break,
            Some(other) => panic!("unexpected {other:?} in {text}"),
        }
    }
    Series {
        name: name.to_owned(),
        labels,
    }
}

/// One scrape of the endpoint: every sample, and the families it declared.
struct Scrape {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
            };
            samples.insert(parse_series(series), value);
        }
        Self { samples, types }
    }

    /// The sum of every sample of `name` whose labels include `labels` (0 when there is none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                series.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| series.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The one sample of `name` with no labels.
    fn single(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(series, _)| series.name == name && series.labels.is_empty())
            .map(|(_, value)| *value)
    }
}

/// An HTTP client that gives up after `seconds` and returns any status as an answer.
fn agent(seconds: u64) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(seconds)))
        .build()
        .into()
}

/// GET `url`: its status and body.
fn http_get(url: &str) -> (u16, String) {
    let mut response = agent(10)
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
    (status, body)
}

/// The endpoint's text, checked by promtool: it parses, and every family is named and
/// described as Prometheus's conventions ask.
fn scrape(metrics: &str) -> Scrape {
    let (status, text) = http_get(&format!("http://{metrics}/metrics"));
    assert_eq!(status, 200, "{text}");
    // ci/setup installs Debian's prometheus package, which has promtool.
    let checked = common::output_fed(
        Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
    );
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    Scrape::parse(&text)
}

/// The address of `server`'s `/metrics`.
fn metrics_address(server: &ServerProcess) -> String {
    server
        .metrics_address()
        .unwrap_or_else(|| panic!("no metrics address in: {}", server.listening_line))
}

/// Scrapes until `expected(scrape)` holds or 10 s have passed: the server counts a call once its
/// status has gone out, which can be a moment after the caller has it.
fn scrape_until(metrics: &str, expected: impl Fn(&Scrape) -> Vec<String>) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(metrics);
        let wrong = expected(&scraped);
        if wrong.is_empty() {
            return scraped;
        }
        assert!(
            Instant::now() < deadline,
            "after 10 s the counters still differ from the calls made:\n{}",
            wrong.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mutual-TLS token server with metrics on, and what its clients need.
struct Fixture {
    server: ServerProcess,
    metrics: String,
    pki: Pki,
    key: SigningKey,
    _keys: KeyFile,
}

impl Fixture {
    fn start() -> Self {
        let key = SigningKey::p256("p256-1");
        let keys = KeyFile::new(&[&key]);
        let pki = Pki::new();
        let path = |name: &str| pki.path(name).display().to_string();
        let mut args = token_args(&keys);
        args.extend(
            [
                "--tls-cert",
                &path("server.pem"),
                "--tls-key",
                &path("server.key"),
                "--tls-client-ca",
                &path("ca.pem"),
                "--token-admin",
                ADMIN_COMMON_NAME,
                "--metrics-listen",
                "127.0.0.1:0",
            ]
            .map(str::to_owned),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::start(&args);
        let metrics = metrics_address(&server);
        Self {
            server,
            metrics,
            pki,
            key,
            _keys: keys,
        }
    }

    fn channel(&self, client: &str) -> Channel {
        let env = std::sync::Arc::new(EnvBuilder::new().cq_count(1).build());
        let tls: TlsOptions = client_tls(&self.pki, client);
        tls.connect(ChannelBuilder::new(env), &self.server.address)
            .expect("the client's TLS files are readable")
    }
}

/// A token for every verdict `key` can earn (revoked: see the test), by verdict name.
fn tokens_by_verdict(key: &SigningKey) -> Vec<(&'static str, String)> {
    let header = json!({"alg": alg_name(Algorithm::ES256), "kid": key.kid});
    let sign = |changes: Value| {
        let mut claims = claims("alice");
        for (k, v) in changes.as_object().expect("an object") {
            claims[k] = v.clone();
        }
        key.sign_as(Algorithm::ES256, &header, &claims)
    };
    let valid = sign(json!({}));
    let (signed, signature) = valid.rsplit_once('.').expect("three parts");
    let (head, _) = signed.split_once('.').expect("three parts");
    let payload = json!({"sub": "root", "iss": jwt::ISSUER}).to_string();
    let forged = format!("{head}.{}.{signature}", jwt::b64(payload.as_bytes()));
    let now = jwt::now();
    vec![
        ("valid", valid.clone()),
        ("malformed", "not-a-token".to_owned()),
        ("bad_signature", forged),
        (
            "unknown_key",
            key.sign_as(
                Algorithm::ES256,
                &json!({"alg": "ES256", "kid": "retired-2019"}),
                &claims("alice"),
            ),
        ),
        (
            "unsupported_algorithm",
            format!(
                "{}.{signature}",
                jwt::signing_input(&json!({"alg": "ES384", "kid": key.kid}), &claims("alice"))
            ),
        ),
        ("expired", sign(json!({"exp": now - 3600}))),
        ("not_yet_valid", sign(json!({"nbf": now + 3600}))),
        ("wrong_issuer", sign(json!({"iss": "https://evil.example"}))),
        ("wrong_audience", sign(json!({"aud": "billing"}))),
    ]
}

const TOKEN: &str = "TokenV1Proto";

fn handled(scrape: &Scrape, kind: &str, service: &str, method: &str, code: &str) -> f64 {
    scrape.sum(
        "grpc_server_handled_total",
        &[
            ("grpc_type", kind),
            ("grpc_service", service),
            ("grpc_method", method),
            ("grpc_code", code),
        ],
    )
}

/// The PromQL queries of the Grafana dashboard.
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/mrmat-grpc.json"),
        )
        .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(value: &Value, exprs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => exprs.push(expr.clone()),
                        _ => walk(value, exprs),
                    }
                }
            }
            Value::Array(values) => values.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard's queries: {exprs:?}");
    exprs
}

/// The families `queries` name (a histogram's `_bucket`, `_sum` and `_count` are its family).
fn dashboard_metrics(queries: &[String]) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for expr in queries {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if ["grpc_server_", "mrmat_", "process_"]
                .iter()
                .any(|prefix| word.starts_with(prefix))
            {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word);
                names.insert(family.to_owned());
            }
        }
    }
    names
}

/// A Prometheus server of Debian's package on a free port, with a throwaway configuration and
/// data directory; killed when dropped.
struct Prometheus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mrmat-prometheus-")
            .tempdir()
            .expect("a temporary folder");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: mrmat\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = common::free_port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (ci/setup installs Debian's prometheus package)");
        let prometheus = Self {
            child,
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !prometheus.ready() {
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn ready(&self) -> bool {
        agent(2)
            .get(format!("http://{}/-/ready", self.address))
            .call()
            .is_ok_and(|response| response.status() == 200)
    }

    /// The answer of the query API to the instant query `query` (errors included).
    fn evaluate(&self, query: &str) -> Value {
        let answer = agent(5)
            .get(format!("http://{}/api/v1/query", self.address))
            .query("query", query)
            .call()
            .and_then(|mut response| response.body_mut().read_to_string());
        match answer {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Err(e) => json!({"status": "unreachable", "error": e.to_string()}),
        }
    }

    /// The value of the instant query `query`, when it has exactly one series.
    fn query(&self, query: &str) -> Option<String> {
        let answer = self.evaluate(query);
        let result = answer["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str().map(str::to_owned),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn metrics_listen_on_a_port_in_use_exits_1_before_listening_with_one_line_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("its address").to_string();
    let store = common::ScratchStore::new();
    let out = Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
        .args(["--listen", "127.0.0.1:0", "--store", &store.flag()])
        .args(["--metrics-listen", &address])
        .env_remove("RUST_LOG")
        .output()
        .expect("the server runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains(&address) && lines[0].contains("--metrics-listen"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

/// Checked by a real Prometheus and promtool (`ci/test --quick` skips them).
mod with_prometheus {
    use super::*;

    #[test]
    fn counters_move_by_exactly_the_calls_made_and_the_text_passes_promtool() {
        let fixture = Fixture::start();
        let before = scrape(&fixture.metrics);
        assert_eq!(
            before.single("mrmat_store_up"),
            Some(1.0),
            "the store answers"
        );
        assert!(
            before
                .single("process_resident_memory_bytes")
                .unwrap_or(0.0)
                > 0.0,
            "the process collector reports memory"
        );
        assert!(before.single("process_open_fds").unwrap_or(0.0) > 0.0);
        assert!(before.single("process_start_time_seconds").unwrap_or(0.0) > 1.7e9);

        let user = TokenV1ProtoClient::new(fixture.channel("client"));
        let admin = TokenV1ProtoClient::new(fixture.channel("admin-client"));
        let greeter = GreetingV2ProtoClient::new(fixture.channel("client"));
        let resources = ResourceV2ProtoClient::new(fixture.channel("client"));

        // Unary OK: each verdict once over Validate (a refusal is an answer, status OK), the valid
        // token twice more (from the cache), three greetings.
        let tokens = tokens_by_verdict(&fixture.key);
        let mut verdicts: BTreeMap<&str, f64> = BTreeMap::new();
        for (verdict, token) in &tokens {
            let answer = user
                .validate_opt(&input(1, token), call())
                .expect("Validate answers");
            assert_eq!(
                answer.verdict.enum_value_or_default() == TokenV1Verdict::TOKEN_V1_VALID,
                *verdict == "valid",
                "{verdict}: {answer:?}"
            );
            *verdicts.entry(verdict).or_default() += 1.0;
        }
        let (_, valid) = &tokens[0];
        let cached = scrape(&fixture.metrics);
        let cache_before = (
            cached.sum("mrmat_token_cache_lookups_total", &[("result", "hit")]),
            cached.sum("mrmat_token_cache_lookups_total", &[("result", "miss")]),
        );
        for _ in 0..2 {
            user.validate_opt(&input(2, valid), call())
                .expect("Validate answers");
        }
        *verdicts.entry("valid").or_default() += 2.0;
        for name in ["ann", "bob", "cy"] {
            let mut hello = GreetingV2Input::new();
            hello.name = name.to_owned();
            greeter
                .get_greeting_opt(&hello, call())
                .expect("a greeting");
        }

        // Unary errors: two Gets of what is not there, one Revoke by someone who may not.
        for id in [1_000_001, 1_000_002] {
            let mut get = ResourceV2GetRequest::new();
            get.id = id;
            match resources.get_opt(&get, call()) {
                Err(grpcio::Error::RpcFailure(status)) => {
                    assert_eq!(status.code(), RpcStatusCode::NOT_FOUND)
                }
                other => panic!("a missing resource: {other:?}"),
            }
        }
        let revoked = claims("mallory");
        let mut revoke = TokenV1RevokeInput::new();
        revoke.token_id = revoked["jti"].as_str().expect("a jti").to_owned();
        revoke.expires_at = revoked["exp"].as_i64().expect("an exp");
        match user.revoke_opt(&revoke, call()) {
            Err(grpcio::Error::RpcFailure(status)) => {
                assert_eq!(status.code(), RpcStatusCode::PERMISSION_DENIED)
            }
            other => panic!("a Revoke by a non-admin: {other:?}"),
        }
        admin
            .revoke_opt(&revoke, call())
            .expect("the admin revokes");

        // One stream: four validations, the revoked token among them.
        let revoked_token = fixture.key.sign_as(
            Algorithm::ES256,
            &json!({"alg": "ES256", "kid": fixture.key.kid}),
            &revoked,
        );
        let inputs = vec![
            input(10, valid),
            input(11, &revoked_token),
            input(12, "not-a-token"),
            input(13, &revoked_token),
        ];
        let (answers, ended) = validate_stream(&user, inputs);
        ended.expect("the stream ends OK");
        assert_eq!(answers.len(), 4);
        assert_eq!(
            answers[1].verdict.enum_value_or_default(),
            TokenV1Verdict::TOKEN_V1_REVOKED
        );
        *verdicts.entry("valid").or_default() += 1.0;
        *verdicts.entry("revoked").or_default() += 2.0;
        *verdicts.entry("malformed").or_default() += 1.0;

        let validations = tokens.len() as f64 + 2.0;
        let after = scrape_until(&fixture.metrics, |s| {
            let mut wrong = Vec::new();
            let mut expect = |what: String, got: f64, want: f64| {
                if got != want {
                    wrong.push(format!("{what}: {got}, expected {want}"));
                }
            };
            let delta = |name: &str, labels: &[(&str, &str)]| {
                s.sum(name, labels) - before.sum(name, labels)
            };
            let calls = [
                ("unary", TOKEN, "Validate", "OK", validations),
                ("unary", "GreetingV2Proto", "GetGreeting", "OK", 3.0),
                ("unary", "ResourceV2Proto", "Get", "NOT_FOUND", 2.0),
                ("unary", TOKEN, "Revoke", "PERMISSION_DENIED", 1.0),
                ("unary", TOKEN, "Revoke", "OK", 1.0),
                ("bidi_stream", TOKEN, "ValidateStream", "OK", 1.0),
            ];
            for (kind, service, method, code, want) in calls {
                expect(
                    format!("handled {kind} {service}/{method} {code}"),
                    handled(s, kind, service, method, code)
                        - handled(&before, kind, service, method, code),
                    want,
                );
                let labels = [
                    ("grpc_service", service),
                    ("grpc_method", method),
                    ("grpc_code", code),
                ];
                expect(
                    format!("handling_seconds_count {service}/{method} {code}"),
                    delta("grpc_server_handling_seconds_count", &labels),
                    want,
                );
            }
            let method = |service, method| [("grpc_service", service), ("grpc_method", method)];
            for (service, name, started) in [
                (TOKEN, "Validate", validations),
                (TOKEN, "Revoke", 2.0),
                (TOKEN, "ValidateStream", 1.0),
                ("ResourceV2Proto", "Get", 2.0),
            ] {
                expect(
                    format!("started {service}/{name}"),
                    delta("grpc_server_started_total", &method(service, name)),
                    started,
                );
            }
            let stream = method(TOKEN, "ValidateStream");
            expect(
                "stream messages received".into(),
                delta("grpc_server_msg_received_total", &stream),
                4.0,
            );
            expect(
                "stream messages sent".into(),
                delta("grpc_server_msg_sent_total", &stream),
                4.0,
            );
            expect(
                "streams open".into(),
                s.sum("grpc_server_open_streams", &stream),
                0.0,
            );
            expect(
                "unary Validate messages sent".into(),
                delta("grpc_server_msg_sent_total", &method(TOKEN, "Validate")),
                validations,
            );
            for (verdict, count) in &verdicts {
                expect(
                    format!("validations {verdict}"),
                    delta("mrmat_token_validations_total", &[("verdict", verdict)]),
                    *count,
                );
            }
            expect(
                "store get not_found".into(),
                delta(
                    "mrmat_store_operations_total",
                    &[("operation", "get"), ("outcome", "not_found")],
                ),
                2.0,
            );
            expect(
                "store revoke ok".into(),
                delta(
                    "mrmat_store_operations_total",
                    &[("operation", "revoke"), ("outcome", "ok")],
                ),
                1.0,
            );
            expect(
                "revocations held".into(),
                s.single("mrmat_token_revocations").unwrap_or(-1.0),
                1.0,
            );
            wrong
        });

        // Since the first round: the valid token twice over Validate and once on the stream, and
        // the revoked token's second time (verified once, then cached; revocation is asked apart).
        let hits =
            after.sum("mrmat_token_cache_lookups_total", &[("result", "hit")]) - cache_before.0;
        let misses =
            after.sum("mrmat_token_cache_lookups_total", &[("result", "miss")]) - cache_before.1;
        assert_eq!(hits, 4.0, "cache hits of tokens validated before");
        // The revoked token's first time and `not-a-token` (any token is looked up).
        assert_eq!(misses, 2.0, "cache misses of tokens never seen");
        assert!(
            after.sum(
                "mrmat_token_key_set_loads_total",
                &[("issuer", common::jwt::ISSUER), ("outcome", "loaded")]
            ) >= 1.0,
            "the key set loaded"
        );
        let age = after.sum(
            "mrmat_token_key_set_age_seconds",
            &[("issuer", common::jwt::ISSUER)],
        );
        assert!(
            after.samples.keys().any(|series| {
                series.name == "mrmat_token_key_set_age_seconds"
                    && series.labels.get("issuer").map(String::as_str) == Some(common::jwt::ISSUER)
            }),
            "the key set's age, by issuer"
        );
        assert!(age.is_finite() && age >= 0.0, "key set age {age}");
        assert_eq!(
            after
                .types
                .get("grpc_server_handling_seconds")
                .map(String::as_str),
            Some("histogram")
        );
        // The buckets start below a millisecond, where these answers fall, and are cumulative
        // up to +Inf, which counts every call. (How fast a call was is a benchmark's business.)
        let greeting = [
            ("grpc_service", "GreetingV2Proto"),
            ("grpc_method", "GetGreeting"),
        ];
        let bucket = |le: &str| {
            let mut labels = greeting.to_vec();
            labels.push(("le", le));
            after.sum("grpc_server_handling_seconds_bucket", &labels)
        };
        let mut counts = Vec::new();
        for le in mrmat_rust_api_grpc::metrics::LATENCY_BUCKETS {
            let le = le.to_string();
            assert!(
                after.samples.keys().any(|series| {
                    series.name == "grpc_server_handling_seconds_bucket"
                        && series.labels.get("grpc_method").map(String::as_str)
                            == Some("GetGreeting")
                        && series.labels.get("le") == Some(&le)
                }),
                "no bucket le={le}"
            );
            counts.push(bucket(&le));
        }
        counts.push(bucket("+Inf"));
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        let count = after.sum("grpc_server_handling_seconds_count", &greeting);
        assert!(count >= 3.0, "greetings counted: {count}");
        assert_eq!(counts.last(), Some(&count), "+Inf counts every call");

        // The dashboard asks only for families the server serves.
        let names = dashboard_metrics(&dashboard_queries());
        assert!(names.len() >= 6, "{names:?}");
        for name in &names {
            assert!(
                after.types.contains_key(name),
                "the dashboard asks for {name}, which /metrics does not serve"
            );
        }

        // Any other path is 404; the endpoint's own answers are not gRPC calls.
        let (status, body) = http_get(&format!("http://{}/nothing-here", fixture.metrics));
        assert_eq!(status, 404, "{body}");
    }

    #[test]
    fn a_real_prometheus_scrapes_the_server_and_its_query_api_returns_the_calls() {
        let server = ServerProcess::start(&["--metrics-listen", "127.0.0.1:0"]);
        let metrics = metrics_address(&server);
        let prometheus = Prometheus::start(&metrics);
        let greeter = GreetingV2ProtoClient::new(server.channel());
        for _ in 0..7 {
            greeter
                .get_greeting_opt(&GreetingV2Input::new(), call())
                .expect("a greeting");
        }
        let query = r#"grpc_server_handled_total{job="mrmat",grpc_service="GreetingV2Proto",grpc_method="GetGreeting",grpc_code="OK"}"#;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = prometheus.query(query);
            if value.as_deref() == Some("7") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not see 7 greetings within 30 s; last answer: {value:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            prometheus.query(r#"up{job="mrmat"}"#).as_deref(),
            Some("1"),
            "the scrape target is up"
        );

        // Every query of the dashboard is PromQL this Prometheus evaluates, with Grafana's
        // variables as Grafana fills them in.
        for expr in dashboard_queries() {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            let answer = prometheus.evaluate(&expr);
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
        }
    }
}
