//! The forward-auth port (`--forward-auth-listen`) against the server binary: what nginx's
//! `auth_request`, Caddy's `forward_auth` and Traefik's `ForwardAuth` get for each request, and
//! the port's limits held against a hostile client as the metrics port's are.

use crate::common;

use common::hostile::{self, Raw};
use common::jwt::{claims, token_args, KeyFile, SigningKey};
use common::ServerProcess;

struct Port {
    server: ServerProcess,
    address: String,
    key: SigningKey,
    _keys: KeyFile,
}

fn forward_auth(extra: &[&str]) -> Port {
    let key = SigningKey::p256("fa");
    let keys = KeyFile::new(&[&key]);
    let mut args: Vec<String> = token_args(&keys);
    args.extend(["--store", "memory", "--forward-auth-listen", "127.0.0.1:0"].map(String::from));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let address = server
        .forward_auth_address()
        .expect("the start-up line says where forward auth is");
    Port {
        server,
        address,
        key,
        _keys: keys,
    }
}

/// `GET path` with `headers` (each `Name: value`), and the answer.
fn ask(address: &str, path: &str, headers: &[String]) -> hostile::Answer {
    let mut raw = Raw::connect(address);
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    assert!(raw.send(format!("GET {path} HTTP/1.1\r\nHost: app\r\n{extra}\r\n").as_bytes()));
    raw.answer().expect("an answer")
}

#[test]
fn a_valid_token_is_200_with_the_identity_and_its_claims_as_headers() {
    let port = forward_auth(&["--claim-header", "email=X-Auth-Email,groups=x-auth-groups"]);
    let mut claims = claims("alice");
    claims["email"] = "alice@example.com".into();
    claims["groups"] = serde_json::json!(["admins", "ops"]);
    let token = port.key.sign(&claims);
    let answer = ask(
        &port.address,
        "/auth",
        &[format!("Authorization: bearer {token}")],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), Some("alice"));
    assert_eq!(answer.header("x-auth-email"), Some("alice@example.com"));
    assert_eq!(answer.header("x-auth-groups"), Some("admins,ops"));
    // Any path: a proxy forwards the original one.
    let answer = ask(
        &port.address,
        "/some/app/path",
        &[format!("Authorization: Bearer {token}")],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    // A claim the token lacks sets no header.
    let bare = port.key.sign(&claims_without_email());
    let answer = ask(
        &port.address,
        "/auth",
        &[format!("Authorization: Bearer {bare}")],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-email"), None, "{answer:?}");
    assert!(
        port.server.metric("x").is_none(),
        "no metrics port asked for"
    );
}

fn claims_without_email() -> serde_json::Value {
    claims("bob")
}

#[test]
fn no_token_and_a_refused_token_are_401_with_the_challenges_of_rfc_6750() {
    let port = forward_auth(&["--auth-realm", "apps"]);
    let answer = ask(&port.address, "/auth", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer realm="apps""#)
    );
    let answer = ask(
        &port.address,
        "/auth",
        &["Authorization: Basic dTpw".to_owned()],
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer realm="apps""#)
    );

    let mut expired = claims("carol");
    expired["exp"] = (common::jwt::now() - 3600).into();
    let token = port.key.sign(&expired);
    let answer = ask(
        &port.address,
        "/auth",
        &[format!("Authorization: Bearer {token}")],
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    let challenge = answer.header("www-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with(r#"Bearer realm="apps", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    assert!(challenge.contains("expired"), "{challenge}");
    assert!(!answer.body.contains(&token), "the token is never repeated");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let answer = ask(
        &port.address,
        "/auth",
        &[format!("Authorization: Bearer {forged}")],
    );
    assert_eq!(answer.status, 401, "{answer:?}");
}

#[test]
fn a_route_that_requires_a_scope_the_token_lacks_is_403() {
    let port = forward_auth(&[]);
    // The test tokens hold `read write`.
    let token = port.key.sign(&claims("dave"));
    let bearer = [format!("Authorization: Bearer {token}")];
    assert_eq!(ask(&port.address, "/auth?scope=read", &bearer).status, 200);
    assert_eq!(
        ask(&port.address, "/auth?scope=read+write", &bearer).status,
        200
    );
    let answer = ask(&port.address, "/auth?scope=read&scope=admin", &bearer);
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(
        answer.header("www-authenticate"),
        Some(
            r#"Bearer realm="mrmat-rust-api-grpc", error="insufficient_scope", scope="read admin""#
        )
    );
    let answer = ask(&port.address, "/auth?scope=%22%0d%0a", &bearer);
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        !answer
            .header("www-authenticate")
            .unwrap_or_default()
            .contains('\r'),
        "{answer:?}"
    );
}

#[test]
fn a_token_of_a_provider_without_keys_is_503_and_the_port_needs_a_provider() {
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let server = ServerProcess::start(&[
        "--store",
        "memory",
        "--oidc-issuer",
        &dead,
        "--forward-auth-listen",
        "127.0.0.1:0",
    ]);
    let address = server.forward_auth_address().expect("announced");
    let address = address.as_str();
    let key = SigningKey::p256("k");
    let mut claims = claims("erin");
    claims["iss"] = dead.clone().into();
    let answer = ask(
        address,
        "/auth",
        &[format!("Authorization: Bearer {}", key.sign(&claims))],
    );
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("cannot judge"), "{answer:?}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
        .args(["--store", "memory", "--forward-auth-listen", "127.0.0.1:0"])
        .output()
        .expect("the server runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--forward-auth-listen needs an identity provider"),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
        .args(["--store", "memory", "--claim-header", "email=Authorization"])
        .output()
        .expect("the server runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the request's own"), "{stderr}");
}

#[test]
fn the_forward_auth_port_holds_against_a_hostile_client_as_the_metrics_port_does() {
    let port = forward_auth(&["--http-max-head-bytes", "4096"]);
    let (_, answer) = hostile::endless_header(&port.address, 1 << 20);
    assert_eq!(answer.expect("an answer").status, 431);
    let idle = hostile::idle_connections(&port.address, 500);
    let answer = ask(&port.address, "/auth", &[]);
    assert_eq!(
        answer.status, 401,
        "still answered beside 500 idle connections"
    );
    drop(idle);
    // After both attacks, the port still answers.
    let answer = ask(&port.address, "/auth", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
}

#[test]
fn a_token_without_a_subject_is_allowed_without_a_subject_header() {
    let port = forward_auth(&["--claim-header", "email=x-auth-email"]);
    let mut claims = claims("nobody");
    claims.as_object_mut().expect("an object").remove("sub");
    claims["email"] = "svc@example.com".into();
    let token = port.key.sign(&claims);
    let answer = ask(
        &port.address,
        "/auth",
        &[format!("Authorization: Bearer {token}")],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), None, "{answer:?}");
    assert_eq!(answer.header("x-auth-email"), Some("svc@example.com"));
}

#[test]
fn a_body_announced_as_200_mb_is_read_no_further_than_64_kib_before_the_connection_closes() {
    let port = forward_auth(&[]);
    let token = port.key.sign(&claims("carol"));
    let mut raw = Raw::connect(&port.address);
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 200000000\r\n\r\n"
    );
    assert!(raw.send(head.as_bytes()));
    // The body, as fast as the server takes it, until it stops taking it.
    let mut writer = raw.try_clone_stream();
    let sending = std::thread::spawn(move || {
        let chunk = vec![b'b'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 200_000_000 && std::io::Write::write_all(&mut writer, &chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let answer = raw.answer().expect("an answer to the head");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(raw.closed_within(std::time::Duration::from_secs(5)));
    let sent = sending.join().expect("the sender ends");
    // What the server read (64 KiB at most, and the head's read-ahead) plus what the kernel's
    // buffers on both ends hold before the reset; reading for its whole linger second took
    // hundreds of MiB.
    assert!(sent < 24 << 20, "{sent} bytes of the body were taken");
}

#[test]
fn malformed_credentials_are_400_invalid_request_and_too_many_scopes_a_400_for_the_operator() {
    let port = forward_auth(&["--metrics-listen", "127.0.0.1:0"]);
    let token = port.key.sign(&claims("frank"));
    let bearer = format!("Authorization: Bearer {token}");
    for (case, headers) in [
        ("two headers", vec![bearer.clone(), bearer.clone()]),
        ("Bearer alone", vec!["Authorization: Bearer".to_owned()]),
        (
            "a token with a space",
            vec!["Authorization: Bearer a b".to_owned()],
        ),
    ] {
        let answer = ask(&port.address, "/auth", &headers);
        assert_eq!(answer.status, 400, "{case}: {answer:?}");
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_request""#),
            "{case}: {answer:?}"
        );
    }
    // Bytes that are not UTF-8 in the header: hyper takes them as obs-text.
    let mut raw = Raw::connect(&port.address);
    assert!(raw.send(b"GET /auth HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"));
    let answer = raw.answer().expect("an answer");
    assert_eq!(answer.status, 400, "{answer:?}");
    // An Authorization header of 1 MiB is over the head limit: 431, and the port serves on.
    let (_, answer) = hostile::endless_header(&port.address, 1 << 20);
    assert_eq!(answer.expect("an answer").status, 431);
    let scopes: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let answer = ask(
        &port.address,
        &format!("/auth?scope={}", scopes[..200].join("+")),
        std::slice::from_ref(&bearer),
    );
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("more than 64 scopes"), "{answer:?}");
    assert_eq!(ask(&port.address, "/auth", &[bearer]).status, 200);
    assert_eq!(
        port.server.metric(
            r#"mrmat_authz_decisions_total{decision="malformed",transport="forward_auth"}"#
        ),
        Some(4.0)
    );
}
