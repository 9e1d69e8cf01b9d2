//! Routes and their CEL rules (`[[route]]` in `--config`) against the server binary, on both
//! proxy transports: the forward-auth port asked as nginx, Caddy and Traefik ask it (their
//! forwarded headers), and ext_authz asked as Envoy asks it; the file checked at load
//! (`--check-config`, and a start that fails), replaced on SIGHUP, and hostile rules and input.

use std::time::Duration;

use mrmat_rust_api_grpc::proto::ext_authz::v3::attribute_context::attribute_context::HttpRequest;
use mrmat_rust_api_grpc::proto::ext_authz::v3::{
    check_response::Http_response, AuthorizationClient, CheckRequest,
};

use crate::common;

use common::hostile::{self, Raw};
use common::jwt::{claims, token_args, KeyFile, SigningKey};
use common::ServerProcess;

const ROUTES: &str = r#"
[policy]
default = "deny"

[[route]]
name = "health"
path_prefix = "/healthz"
public = true

[[route]]
name = "admin-writes"
hosts = ["api.example.com", "*.example.com"]
path_prefix = "/admin"
methods = ["POST", "PUT", "DELETE"]
scopes = ["write"]
allow = "'ops' in claims.groups && claims.email.endsWith('@example.com') && claims.level == 3"

[[route]]
name = "internal"
path_prefix = "/internal"
token = "optional"
allow = "peer.principal == 'spiffe://cluster.local/ns/jobs/sa/batch' || has(claims.sub)"

[[route]]
name = "reports"
path_prefix = "/reports"
allow = "claims.realm_access.roles.exists(r, r == 'reporter')"
shadow = true

[[route]]
name = "by-header"
path_prefix = "/tenant"
allow = "request.headers['x-tenant'] == claims.tenant"

[[route]]
name = "reads"
methods = ["GET"]
"#;

struct Routed {
    server: ServerProcess,
    key: SigningKey,
    dir: tempfile::TempDir,
    _keys: KeyFile,
}

fn routed(file: &str) -> Routed {
    let key = SigningKey::p256("routes");
    let keys = KeyFile::new(&[&key]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, file).expect("write the config file");
    let mut args: Vec<String> = token_args(&keys);
    args.extend(
        [
            "--store",
            "memory",
            "--forward-auth-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--claim-header",
            "email=x-auth-email",
            "--config",
        ]
        .map(String::from),
    );
    args.push(config.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    Routed {
        server,
        key,
        dir,
        _keys: keys,
    }
}

fn alice() -> serde_json::Value {
    let mut claims = claims("alice");
    claims["email"] = "alice@example.com".into();
    claims["groups"] = serde_json::json!(["ops", "dev"]);
    claims["level"] = 3.into();
    claims["tenant"] = "t1".into();
    claims
}

/// Forward auth asked as Traefik and Caddy ask: the request in X-Forwarded-* headers.
fn forward(
    routed: &Routed,
    method: &str,
    host: &str,
    uri: &str,
    extra: &[String],
) -> hostile::Answer {
    ask(
        routed,
        &format!(
            "GET /auth HTTP/1.1\r\nHost: auth\r\nX-Forwarded-Method: {method}\r\n\
             X-Forwarded-Host: {host}\r\nX-Forwarded-Uri: {uri}\r\n"
        ),
        extra,
    )
}

/// The forward-auth port's answer to `head` (lines ending in CRLF) with `extra` headers.
fn ask(routed: &Routed, head: &str, extra: &[String]) -> hostile::Answer {
    let address = routed.server.forward_auth_address().expect("forward auth");
    let mut raw = Raw::connect(&address);
    let extra: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
    assert!(raw.send(format!("{head}{extra}\r\n").as_bytes()));
    raw.answer().expect("an answer")
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[test]
fn each_route_decides_its_requests_over_forward_auth() {
    let routed = routed(ROUTES);
    let token = routed.key.sign(&alice());
    let with = [bearer(&token)];
    // Public: allowed without reading the token, even a forged one; identity never passed.
    let answer = forward(
        &routed,
        "GET",
        "app",
        "/healthz",
        &["Authorization: Bearer forged".into()],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), None);
    // The rule holds: allowed with the identity.
    let answer = forward(&routed, "POST", "api.example.com", "/admin/users", &with);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), Some("alice"));
    // The rule is false: 403 naming the route, never the claims or the rule.
    let mut bob = alice();
    bob["groups"] = serde_json::json!(["dev"]);
    let answer = forward(
        &routed,
        "POST",
        "a.example.com",
        "/admin",
        &[bearer(&routed.key.sign(&bob))],
    );
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("route admin-writes"), "{answer:?}");
    assert!(
        !answer.body.contains("ops") && !answer.body.contains("dev"),
        "{answer:?}"
    );
    assert_eq!(answer.header("www-authenticate"), None);
    // A claim absent: the rule fails, is false, and counted; never a 5xx.
    let mut carol = alice();
    carol.as_object_mut().expect("an object").remove("email");
    let answer = forward(
        &routed,
        "POST",
        "api.example.com",
        "/admin",
        &[bearer(&routed.key.sign(&carol))],
    );
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(routed
        .server
        .log
        .lines_until("its rule failed", Duration::from_secs(10))
        .is_some());
    assert_eq!(
        routed
            .server
            .metric("mrmat_authz_rule_errors_total{route=\"admin-writes\"}"),
        Some(1.0)
    );
    // A route's scopes: the test tokens hold `read write`; a missing one stays insufficient_scope.
    let answer = forward(
        &routed,
        "PUT",
        "api.example.com",
        "/admin",
        &[bearer(&token)],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    // No token on a route that needs one: 401 with the challenge.
    let answer = forward(&routed, "POST", "api.example.com", "/admin", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
    // Dot segments are resolved before matching: /healthz/../admin is /admin.
    let answer = forward(&routed, "POST", "api.example.com", "/healthz/../admin", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
    // No route covers it and the fallback is deny.
    let answer = forward(&routed, "DELETE", "app", "/other", &with);
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("no route"), "{answer:?}");
    // Reads: a valid token is enough.
    assert_eq!(forward(&routed, "GET", "app", "/other", &with).status, 200);
    // Headers in the rule.
    let tenant = |value: &str| [bearer(&token), format!("X-Tenant: {value}")];
    assert_eq!(
        forward(&routed, "GET", "app", "/tenant/x", &tenant("t1")).status,
        200
    );
    assert_eq!(
        forward(&routed, "GET", "app", "/tenant/x", &tenant("t2")).status,
        403
    );
    // A shadow rule: would deny, counted, and the request decided without it.
    assert_eq!(
        forward(&routed, "GET", "app", "/reports/q", &with).status,
        200
    );
    assert_eq!(
        routed.server.metric(
            "mrmat_authz_route_decisions_total{decision=\"shadow_denied\",route=\"reports\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        routed
            .server
            .metric("mrmat_authz_route_decisions_total{decision=\"public\",route=\"health\"}"),
        Some(1.0)
    );
    // The request must be forwarded: without X-Forwarded-Uri it is not judged as /.
    let address = routed.server.forward_auth_address().expect("forward auth");
    let mut raw = Raw::connect(&address);
    assert!(raw.send(
        format!(
            "GET /auth HTTP/1.1\r\nHost: a\r\nX-Forwarded-Method: GET\r\n{}\r\n\r\n",
            bearer(&token)
        )
        .as_bytes()
    ));
    let answer = raw.answer().expect("an answer");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("X-Forwarded-Uri"), "{answer:?}");
    // nginx's headers.
    let mut raw = Raw::connect(&address);
    assert!(raw.send(b"GET /auth HTTP/1.1\r\nHost: app\r\nX-Original-Method: GET\r\nX-Original-URI: /healthz\r\n\r\n"));
    assert_eq!(raw.answer().expect("an answer").status, 200);
}

fn check(
    method: &str,
    host: &str,
    path: &str,
    token: Option<&str>,
    principal: &str,
) -> CheckRequest {
    let mut http = HttpRequest::new();
    http.method = method.to_owned();
    http.path = path.to_owned();
    http.host = host.to_owned();
    if let Some(token) = token {
        http.headers
            .insert("authorization".to_owned(), format!("Bearer {token}"));
    }
    http.headers
        .insert("x-bad".to_owned(), "\u{fffd}".to_owned());
    let mut request = CheckRequest::new();
    let attributes = request.attributes.mut_or_insert_default();
    attributes.request.mut_or_insert_default().http = Some(http).into();
    attributes.source.mut_or_insert_default().principal = principal.to_owned();
    request
}

/// The HTTP status Envoy would answer with for `request`.
fn status_of(client: &AuthorizationClient, request: &CheckRequest) -> u16 {
    let response = client.check(request).expect("a CheckResponse");
    match response.http_response {
        Some(Http_response::OkResponse(_)) => 200,
        Some(Http_response::DeniedResponse(denied)) => denied.status.code.value() as u16,
        _ => panic!("neither: {response:?}"),
    }
}

#[test]
fn each_route_decides_its_requests_over_ext_authz_and_a_workload_may_call_without_a_token() {
    let routed = routed(ROUTES);
    let client = AuthorizationClient::new(routed.server.channel());
    let token = routed.key.sign(&alice());
    let cases = [
        ("GET", "app", "/healthz", None, "", 200),
        (
            "POST",
            "api.example.com:443",
            "/admin/x",
            Some(token.as_str()),
            "",
            200,
        ),
        ("POST", "api.example.com", "/admin/x", None, "", 401),
        (
            "POST",
            "other.org",
            "/admin/x",
            Some(token.as_str()),
            "",
            403,
        ),
        (
            "GET",
            "app",
            "/internal/jobs",
            None,
            "spiffe://cluster.local/ns/jobs/sa/batch",
            200,
        ),
        (
            "GET",
            "app",
            "/internal/jobs",
            None,
            "spiffe://cluster.local/ns/web/sa/front",
            403,
        ),
        (
            "GET",
            "app",
            "/internal/jobs",
            Some(token.as_str()),
            "",
            200,
        ),
        (
            "GET",
            "app",
            "/internal/jobs",
            Some("not.a.token"),
            "spiffe://cluster.local/ns/jobs/sa/batch",
            401,
        ),
        ("GET", "app", "/x?a=1", Some(token.as_str()), "", 200),
        ("PATCH", "app", "/x", Some(token.as_str()), "", 403),
    ];
    for (method, host, path, token, principal, expected) in cases {
        let request = check(method, host, path, token, principal);
        assert_eq!(
            status_of(&client, &request),
            expected,
            "{method} {host} {path} {principal}"
        );
    }
    // A workload allowed without a token gets no identity headers, and any a client sent removed.
    let request = check(
        "GET",
        "app",
        "/internal/jobs",
        None,
        "spiffe://cluster.local/ns/jobs/sa/batch",
    );
    let response = client.check(&request).expect("a CheckResponse");
    let Some(Http_response::OkResponse(ok)) = response.http_response else {
        panic!("allowed");
    };
    assert!(ok.headers.is_empty());
    assert!(
        ok.headers_to_remove.contains(&"x-auth-subject".to_owned()),
        "{ok:?}"
    );
    assert!(
        ok.headers_to_remove.contains(&"x-auth-email".to_owned()),
        "{ok:?}"
    );
}

#[test]
fn sighup_replaces_the_routes_and_a_broken_file_keeps_them() {
    let routed = routed(ROUTES);
    let token = routed.key.sign(&alice());
    assert_eq!(
        forward(&routed, "PATCH", "app", "/x", &[bearer(&token)]).status,
        403
    );
    let config = routed.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("{ROUTES}\n[[route]]\nname = \"patches\"\nmethods = [\"PATCH\"]\n"),
    )
    .expect("write");
    routed.server.signal("HUP");
    common::wait_until("the new route is in force", Duration::from_secs(10), || {
        forward(&routed, "PATCH", "app", "/x", &[bearer(&token)]).status == 200
    });
    std::fs::write(
        &config,
        format!("{ROUTES}\n[[route]]\nname = \"broken\"\nallow = \"claims.x ==\"\n"),
    )
    .expect("write");
    routed.server.signal("HUP");
    let lines = routed
        .server
        .log
        .lines_until(
            "keeping the providers and routes as they were",
            Duration::from_secs(10),
        )
        .expect("the broken file is told");
    assert!(
        lines.last().expect("a line").contains("route \"broken\""),
        "{lines:?}"
    );
    assert_eq!(
        forward(&routed, "PATCH", "app", "/x", &[bearer(&token)]).status,
        200
    );
}

/// `--check-config` with `file`: its exit code, stdout and stderr.
fn check_config(file: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, file).expect("write the config file");
    let key = SigningKey::p256("cc");
    let keys = KeyFile::new(&[&key]);
    let mut args = token_args(&keys);
    args.extend([
        "--config".to_owned(),
        config.display().to_string(),
        "--check-config".to_owned(),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
        .args(&args)
        .output()
        .expect("run the server");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(&config.display().to_string(), "FILE"),
        String::from_utf8_lossy(&out.stderr).replace(&config.display().to_string(), "FILE"),
    )
}

#[test]
fn check_config_shows_the_routes_and_every_load_error_names_its_line() {
    let (code, out, err) = check_config(ROUTES);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("route admin-writes: api.example.com *.example.com, /admin*"),
        "{out}"
    );
    assert!(
        out.contains("6 routes; a request no route covers: denied"),
        "{out}"
    );
    let cases = [
        (
            "[[route]]\nname = \"a\"\nallow = \"claims.x +\"\n",
            "FILE:3: route \"a\": the rule does not parse",
        ),
        (
            "[[route]]\nname = \"a\"\nallow = \"user.admin\"\n",
            "FILE:3: route \"a\": the rule names user",
        ),
        (
            "[[route]]\nname = \"a\"\nallow = \"claims.level + 1\"\n",
            "FILE:3: route \"a\": the rule's value can never be a bool",
        ),
        (
            "[[route]]\nname = \"a\"\n[[route]]\nname = \"a\"\n",
            "FILE:4: route \"a\": another route has this name",
        ),
        (
            "[[route]]\nname = \"a\"\npath = \"/x\"\npath_prefix = \"/y\"\n",
            "FILE:2: route \"a\": it has both path and path_prefix",
        ),
        (
            "[[route]]\nname = \"a\"\nmethods = [\"GE T\"]\n",
            "FILE:2: route \"a\": method \"GE T\" is not",
        ),
        (
            "[[route]]\nname = \"a\"\nhosts = [\"\"]\n",
            "FILE:2: route \"a\": host \"\" is not",
        ),
        (
            "[policy]\ndefault = \"allow\"\n",
            "FILE:2: [policy] default is \"allow\"",
        ),
        (
            "[[route]]\nname = \"a\"\npublic = true\nscopes = [\"x\"]\n",
            "FILE:2: route \"a\": a public route reads no token",
        ),
        (
            "[[route]]\nname = \"a\"\nshadow = true\n",
            "FILE:2: route \"a\": shadow = true needs a rule",
        ),
        (
            "[[route]]\nname = \"a\"\nalow = \"true\"\n",
            "FILE:3: unknown field `alow`",
        ),
        // The first of the name did not load: its twin is still a second route of that name.
        (
            "[[route]]\nname = \"a\"\npath = \"x\"\n[[route]]\nname = \"a\"\n",
            "FILE:5: route \"a\": another route has this name",
        ),
    ];
    for (text, expected) in cases {
        let (code, _, err) = check_config(text);
        assert_eq!(code, 1, "{text}: {err}");
        assert!(err.contains(expected), "{text}: {err}, expected {expected}");
    }
}

#[test]
fn hostile_rules_and_files_are_refused_at_load_in_one_line() {
    let huge = format!(
        "[[route]]\nname = \"a\"\nallow = \"{}\"\n",
        "a".repeat(100 * 1024)
    );
    let deep = format!(
        "[[route]]\nname = \"a\"\nallow = \"{}true{}\"\n",
        "(".repeat(2000),
        ")".repeat(2000)
    );
    let nots = format!(
        "[[route]]\nname = \"a\"\nallow = \"{}true\"\n",
        "!".repeat(4000)
    );
    let ten_thousand = format!(
        "[[route]]\nname = \"a\"\nallow = \"{}true{}\"\n",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    let many: String = (0..10_000)
        .map(|i| format!("[[route]]\nname = \"r{i}\"\n"))
        .collect();
    let regex =
        "[[route]]\nname = \"a\"\nallow = \"request.path.matches(claims.pattern)\"\n".to_owned();
    let quadratic = "[[route]]\nname = \"a\"\nallow = \"claims.groups.exists(a, claims.groups.exists(b, a == b))\"\n".to_owned();
    for (file, expected) in [
        (huge, "a rule is at most 4096"),
        (deep, "nests deeper than 32"),
        (nots, "nests deeper than 32"),
        (ten_thousand, "a rule is at most 4096"),
        (many, "a file has at most 1000"),
        (regex, "matches() takes a literal pattern"),
        (quadratic, "inside a list macro"),
    ] {
        let (code, _, err) = check_config(&file);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(expected), "{err:.300}, expected {expected}");
        assert_eq!(err.lines().count(), 1, "{err:.300}");
    }
}

#[test]
fn hostile_requests_get_an_answer_in_bounded_time() {
    let file = r#"
[[route]]
name = "groups"
allow = "claims.groups.exists(g, g.matches('^(a+)+$')) || 'ops' in claims.groups || request.headers['x-h'] == 'v'"
"#;
    let routed = routed(file);
    // A token as large as is accepted, with thousands of groups, and one with 50,000 (refused
    // for its size before any rule sees it).
    let mut many = alice();
    many["groups"] = serde_json::json!(vec![
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab";
        100
    ]);
    let token = routed.key.sign(&many);
    let started = std::time::Instant::now();
    let answer = forward(
        &routed,
        "GET",
        "app",
        "/",
        &[bearer(&token), "X-H: \u{00ff}".into()],
    );
    assert_eq!(answer.status, 403, "{answer:?}");
    let mut small = alice();
    small["groups"] = serde_json::json!((0..1500).map(|i| format!("g{i}")).collect::<Vec<_>>());
    let answer = forward(
        &routed,
        "GET",
        "app",
        "/",
        &[bearer(&routed.key.sign(&small))],
    );
    assert!(answer.status == 403 || answer.status == 401, "{answer:?}");
    let mut huge = alice();
    huge["groups"] = serde_json::json!((0..50_000).map(|i| format!("g{i}")).collect::<Vec<_>>());
    let huge = routed.key.sign(&huge);
    // Over HTTP its head is too large for the port (431); over ext_authz it is too long (401).
    let answer = forward(&routed, "GET", "app", "/", &[bearer(&huge)]);
    assert_eq!(answer.status, 431, "{answer:?}");
    let client = AuthorizationClient::new(routed.server.channel());
    assert_eq!(
        status_of(&client, &check("GET", "app", "/", Some(&huge), "")),
        401
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded: {:?}",
        started.elapsed()
    );
    // Not UTF-8 in a header the rule reads: the header is absent, the rule fails, 403.
    let address = routed.server.forward_auth_address().expect("forward auth");
    let mut raw = Raw::connect(&address);
    let mut head = format!(
        "GET /auth HTTP/1.1\r\nHost: a\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /\r\n{}\r\nX-H: ",
        bearer(&routed.key.sign(&claims("dan")))
    )
    .into_bytes();
    head.extend_from_slice(b"\xff\xfe\r\n\r\n");
    assert!(raw.send(&head));
    assert_eq!(raw.answer().expect("an answer").status, 403);
    assert!(routed
        .server
        .metric("mrmat_authz_rule_errors_total{route=\"groups\"}")
        .is_some());
}

#[test]
fn routes_without_an_identity_provider_are_refused_at_check_and_at_start() {
    let routes = format!("{}/deploy/routes.toml", env!("CARGO_MANIFEST_DIR"));
    for extra in [
        &["--check-config"][..],
        &["--store", "memory", "--listen", "127.0.0.1:0"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
            .args(["--config", &routes])
            .args(extra)
            .output()
            .expect("run the server");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no identity provider to check tokens"),
            "{out:?}"
        );
    }
}

/// `--explain METHOD URL` on [`ROUTES`], the token (when given) on standard input, with
/// `extra` arguments: its exit code, stdout and stderr.
fn explain(
    key: &SigningKey,
    token: Option<&str>,
    method: &str,
    url: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, ROUTES).expect("write the config file");
    let keys = KeyFile::new(&[key]);
    let mut args = token_args(&keys);
    args.extend(["--config".to_owned(), config.display().to_string()]);
    args.extend(["--claim-header", "email=x-auth-email"].map(String::from));
    args.extend(["--explain", method, url].map(String::from));
    if token.is_some() {
        args.extend(["--explain-token".to_owned(), "-".to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    server_reading(&args, token.unwrap_or(""))
}

/// The server binary run with `args`, `input` on its standard input: its exit code, stdout and
/// stderr.
fn server_reading(args: &[String], input: &str) -> (i32, String, String) {
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"));
    let out = common::output_fed(server.args(args), input.as_bytes());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_says_which_route_covered_a_request_each_condition_and_the_decision() {
    let key = SigningKey::p256("explain");
    let mut claims = alice();
    claims["scope"] = "write".into();
    let token = key.sign(&claims);
    let (code, out, err) = explain(
        &key,
        Some(&token),
        "POST",
        "https://api.example.com/admin/users?x=1",
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    for said in [
        "request: POST host api.example.com, path /admin/users, query x=1",
        "token: valid; issuer ",
        "subject alice",
        "route health: does not cover it: path /admin/users does not start with /healthz",
        "route admin-writes: covers it (host api.example.com in api.example.com *.example.com; \
         path /admin/users starts with /admin; method POST in POST PUT DELETE)",
        "  scopes write: held",
        "     'ops' in claims.groups = true",
        "  && claims.email.endsWith('@example.com') = true",
        "  && claims.level == 3 = true",
        "  rule = true",
        "decision: allowed; the app gets [x-auth-subject: alice, x-auth-email: alice@example.com]",
    ] {
        assert!(out.contains(said), "{out}\nexpected: {said}");
    }
    assert!(!out.contains(&token), "the token is never printed");

    // The same request by someone outside ops: which part is false, and the 403.
    let mut dev = claims.clone();
    dev["groups"] = serde_json::json!(["dev"]);
    let (code, out, _) = explain(
        &key,
        Some(&key.sign(&dev)),
        "POST",
        "https://api.example.com/admin/users",
        &[],
    );
    assert_eq!(code, 3, "denied: {out}");
    assert!(out.contains("'ops' in claims.groups = false"), "{out}");
    assert!(
        out.contains(
            "decision: denied, 403 forbidden: route admin-writes: the request is not allowed by \
             its rule"
        ),
        "{out}"
    );

    // A workload without a token, on the route that lets it in by its principal.
    let (code, out, _) = explain(
        &key,
        None,
        "GET",
        "http://app/internal/jobs",
        &[
            "--explain-principal",
            "spiffe://cluster.local/ns/jobs/sa/batch",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("token: none"), "{out}");
    assert!(out.contains("token: optional"), "{out}");
    assert!(
        out.contains("has(claims.sub) = false") || out.contains("has(claims.sub) = fails"),
        "{out}"
    );

    // A header the rule reads; no route covers a request, the default decides.
    let (code, out, _) = explain(
        &key,
        Some(&token),
        "GET",
        "https://app/tenant/a",
        &["--explain-header", "X-Tenant: t2"],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("rule = false"), "{out}");
    let (code, out, _) = explain(&key, Some(&token), "PATCH", "https://app/x", &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("no route covers it: [policy] default = \"deny\""),
        "{out}"
    );

    // A token refused: said, and the 401 with its challenge.
    let other = SigningKey::p256("explain");
    let (code, out, _) = explain(
        &key,
        Some(&other.sign(&claims)),
        "POST",
        "https://api.example.com/admin/users",
        &[],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("token: refused: "), "{out}");
    assert!(out.contains("decision: denied, 401 invalid_token"), "{out}");
    assert!(out.contains("WWW-Authenticate: Bearer"), "{out}");
}

#[test]
fn explain_refuses_what_it_cannot_read_in_one_line() {
    let key = SigningKey::p256("explain");
    for (token, method, url, extra, expected) in [
        (
            None,
            "GE T",
            "https://app/",
            &[][..],
            "is not an HTTP method",
        ),
        (
            None,
            "GET",
            "/admin",
            &[][..],
            "is not an absolute http:// or https:// URL",
        ),
        (None, "GET", "https:///x", &[][..], "names no host"),
        (
            None,
            "GET",
            "https://app/",
            &["--explain-header", "nocolon"][..],
            "is not NAME: VALUE",
        ),
        (
            Some("two tokens"),
            "GET",
            "https://app/",
            &[][..],
            "does not hold one token",
        ),
        (
            Some(""),
            "GET",
            "https://app/",
            &[][..],
            "does not hold one token",
        ),
    ] {
        let (code, out, err) = explain(&key, token, method, url, extra);
        assert_eq!(code, 1, "{method} {url}: {out}{err}");
        assert!(err.contains(expected), "{err}, expected {expected}");
        assert!(out.is_empty(), "{out}");
    }
    let (code, _, err) = explain(&key, Some(&"a".repeat(70_000)), "GET", "https://app/", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("more than 65536 bytes"), "{err}");
    assert!(!err.contains("aaaa"), "the token is never echoed: {err}");
}

/// The forward-auth port asked as Envoy's ext_authz asks in its HTTP mode: the request itself,
/// at /envoy followed by its path.
fn envoy_http(
    routed: &Routed,
    method: &str,
    host: &str,
    target: &str,
    extra: &[String],
) -> hostile::Answer {
    ask(
        routed,
        &format!("{method} /envoy{target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n"),
        extra,
    )
}

#[test]
fn envoys_http_mode_is_judged_as_the_request_itself() {
    let routed = routed(ROUTES);
    let mut claims = alice();
    claims["scope"] = "write".into();
    let token = routed.key.sign(&claims);
    let with = [bearer(&token)];
    // Method, host and path are the question's own: the admin route's rule and scope hold.
    let answer = envoy_http(
        &routed,
        "POST",
        "api.example.com",
        "/admin/users?x=1",
        &with,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), Some("alice"), "{answer:?}");
    // The same on another host: no route covers it, denied by default.
    let answer = envoy_http(&routed, "POST", "elsewhere.test", "/admin/users", &with);
    assert_eq!(answer.status, 403, "{answer:?}");
    // The request's own query names no scopes: the client cannot add or change any.
    let answer = envoy_http(&routed, "GET", "app", "/x?scope=nothing-held", &with);
    assert_eq!(answer.status, 200, "{answer:?}");
    // A header the rule reads; the identity headers this allow does not set are named for
    // Envoy to remove.
    let mut tenant = with.to_vec();
    tenant.push("X-Tenant: t1".into());
    let answer = envoy_http(&routed, "GET", "app", "/tenant/a", &tenant);
    assert_eq!(answer.status, 200, "{answer:?}");
    let mut bare = claims.clone();
    bare.as_object_mut().expect("claims").remove("email");
    let answer = envoy_http(
        &routed,
        "GET",
        "app",
        "/x",
        &[bearer(&routed.key.sign(&bare))],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("x-envoy-auth-headers-to-remove"),
        Some("x-auth-email"),
        "{answer:?}"
    );
    // Public: every identity header named for removal, no token read.
    let answer = envoy_http(&routed, "GET", "app", "/healthz", &[bearer("forged")]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("x-envoy-auth-headers-to-remove"),
        Some("x-auth-email,x-auth-subject"),
        "{answer:?}"
    );
    // Denied: the challenge for Envoy to pass back.
    let answer = envoy_http(&routed, "POST", "api.example.com", "/admin/users", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.header("www-authenticate").is_some(), "{answer:?}");
    // Nothing after the prefix is no question Envoy asks: 400 saying so, never judged as /.
    let address = routed.server.forward_auth_address().expect("forward auth");
    let mut raw = Raw::connect(&address);
    assert!(raw.send(b"GET /envoy HTTP/1.1\r\nHost: app\r\n\r\n"));
    let answer = raw.answer().expect("an answer");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("path_prefix"), "{answer:?}");
}

/// The tests that start a real OpenID Provider (npm's oidc-provider): `ci/test --quick` leaves
/// them out.
mod with_openid_provider {
    use super::*;

    #[test]
    fn tokens_from_a_real_openid_provider_carrying_groups_are_judged_by_the_rules() {
        let pki = common::pki::Pki::new();
        let mut provider = common::oidc::OpenIdProvider::start(&pki);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "[[route]]\nname = \"ops\"\npath_prefix = \"/ops\"\n\
             allow = \"'ops' in claims.groups && claims.email.endsWith('@example.com')\"\n",
        )
        .expect("write the config file");
        let ca = pki.path("ca.pem").display().to_string();
        let config = config.display().to_string();
        let issuer = provider.issuer.clone();
        let flags = [
            "--oidc-issuer",
            issuer.as_str(),
            "--jwks-ca-cert",
            &ca,
            "--token-audience",
            "api",
            "--config",
            &config,
        ];
        let mut args = flags.to_vec();
        args.extend(["--store", "memory", "--forward-auth-listen", "127.0.0.1:0"]);
        let server = ServerProcess::start(&args);
        let address = server.forward_auth_address().expect("forward auth");
        let ask = |token: &str, uri: &str| {
            let mut raw = Raw::connect(&address);
            let head = format!(
                "GET /auth HTTP/1.1\r\nHost: auth\r\nX-Forwarded-Method: GET\r\n\
                 X-Forwarded-Host: app\r\nX-Forwarded-Uri: {uri}\r\n{}\r\n\r\n",
                bearer(token)
            );
            assert!(raw.send(head.as_bytes()));
            raw.answer().expect("an answer")
        };
        let ops = provider.token("ops-job");
        let dev = provider.token("dev-job");
        // The provider's keys load by discovery, in the background: poll until the token is judged.
        assert!(
            common::holds_within(Duration::from_secs(20), || ask(&ops, "/ops/x").status
                == 200),
            "the ops token through /ops"
        );
        let answer = ask(&ops, "/ops/x");
        assert_eq!(
            answer.header("x-auth-subject"),
            Some("ops-job"),
            "{answer:?}"
        );
        let answer = ask(&dev, "/ops/x");
        assert_eq!(answer.status, 403, "{answer:?}");
        assert!(answer.body.contains("route ops"), "{answer:?}");
        assert_eq!(
            ask(&dev, "/elsewhere").status,
            200,
            "no route: a valid token"
        );

        // Explain fetches the keys as a start would, and says which part held.
        let mut explain_args: Vec<&str> = flags.to_vec();
        explain_args.extend([
            "--explain",
            "GET",
            "https://app/ops/x",
            "--explain-token",
            "-",
        ]);
        for (token, code, said) in [
            (&ops, 0, "'ops' in claims.groups = true"),
            (&dev, 3, "'ops' in claims.groups = false"),
        ] {
            let args: Vec<String> = explain_args.iter().map(|s| s.to_string()).collect();
            let (status, stdout, stderr) = server_reading(&args, token);
            assert_eq!(status, code, "{stdout}{stderr}");
            assert!(stdout.contains(said), "{stdout}");
            assert!(
                stdout.contains(&format!("issuer {}", provider.issuer)),
                "{stdout}"
            );
        }
    }
}
