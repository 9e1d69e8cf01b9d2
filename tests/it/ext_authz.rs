//! Envoy's `envoy.service.auth.v3.Authorization/Check` against the server binary, asked as
//! Envoy asks it: each decision's CheckResponse, the headers Envoy sets and removes, the statuses
//! it fails closed on, and bad input. The real Envoy in front of a real app is `proxies`.

use std::collections::HashMap;

use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::proto::ext_authz::v3::attribute_context::attribute_context::HttpRequest;
use mrmat_rust_api_grpc::proto::ext_authz::v3::header_value_option::HeaderAppendAction;
use mrmat_rust_api_grpc::proto::ext_authz::v3::{
    check_response::Http_response, AuthorizationClient, CheckRequest, CheckResponse,
    DeniedHttpResponse, HeaderValue, OkHttpResponse,
};

use crate::common;

use common::jwt::{claims, token_args, KeyFile, SigningKey};
use common::ServerProcess;

struct Authorizer {
    server: ServerProcess,
    client: AuthorizationClient,
    key: SigningKey,
    _keys: KeyFile,
}

fn authorizer(extra: &[&str]) -> Authorizer {
    let key = SigningKey::p256("ea");
    let keys = KeyFile::new(&[&key]);
    let mut args: Vec<String> = token_args(&keys);
    args.extend(["--store", "memory", "--metrics-listen", "127.0.0.1:0"].map(String::from));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let client = AuthorizationClient::new(server.channel());
    Authorizer {
        server,
        client,
        key,
        _keys: keys,
    }
}

/// A CheckRequest for `GET /app` with `headers` (in `headers`, as Envoy sends them by default)
/// and the route's `scope` extension.
fn request(headers: &[(&str, &str)], scope: Option<&str>) -> CheckRequest {
    let mut http = HttpRequest::new();
    http.method = "GET".to_owned();
    http.path = "/app".to_owned();
    http.host = "app".to_owned();
    http.headers = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<HashMap<_, _>>();
    let mut request = CheckRequest::new();
    let attributes = request.attributes.mut_or_insert_default();
    attributes.request.mut_or_insert_default().http = Some(http).into();
    if let Some(scope) = scope {
        attributes
            .context_extensions
            .insert("scope".to_owned(), scope.to_owned());
    }
    request
}

/// The same with the headers in `header_map` (Envoy's `encode_raw_headers: true`), raw values.
fn raw_request(headers: &[(&str, &[u8])]) -> CheckRequest {
    let mut request = request(&[], None);
    let map = request
        .attributes
        .mut_or_insert_default()
        .request
        .mut_or_insert_default()
        .http
        .mut_or_insert_default()
        .header_map
        .mut_or_insert_default();
    for (key, value) in headers {
        let mut header = HeaderValue::new();
        header.key = (*key).to_owned();
        header.raw_value = value.to_vec();
        map.headers.push(header);
    }
    request
}

fn check(authorizer: &Authorizer, request: &CheckRequest) -> CheckResponse {
    authorizer
        .client
        .check_opt(request, common::call())
        .expect("Check answers")
}

fn ok(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.code, 0, "{response:?}");
    match &response.http_response {
        Some(Http_response::OkResponse(ok)) => ok,
        other => panic!("allowed, not {other:?}"),
    }
}

/// The denial's gRPC code, HTTP status and WWW-Authenticate.
fn denied(response: &CheckResponse) -> (i32, i32, String) {
    let Some(Http_response::DeniedResponse(DeniedHttpResponse {
        status, headers, ..
    })) = &response.http_response
    else {
        panic!("denied, not {response:?}");
    };
    let challenge = headers
        .iter()
        .find(|h| h.header.key == "www-authenticate")
        .map(|h| h.header.value.clone())
        .expect("a challenge");
    (response.status.code, status.code.value(), challenge)
}

/// The headers an allow sets, as (name, value), each overwriting.
fn set(ok: &OkHttpResponse) -> Vec<(String, String)> {
    ok.headers
        .iter()
        .map(|option| {
            assert_eq!(
                option.append_action.enum_value(),
                Ok(HeaderAppendAction::OVERWRITE_IF_EXISTS_OR_ADD)
            );
            (option.header.key.clone(), option.header.value.clone())
        })
        .collect()
}

#[test]
fn a_valid_token_is_allowed_with_the_identity_set_and_every_other_identity_header_removed() {
    let authorizer = authorizer(&["--claim-header", "email=x-auth-email,tenant=x-auth-tenant"]);
    let mut claims = claims("alice");
    claims["email"] = "alice@example.com".into();
    let token = authorizer.key.sign(&claims);
    let bearer = format!("Bearer {token}");
    let response = check(
        &authorizer,
        &request(
            &[("authorization", &bearer), ("x-auth-subject", "mallory")],
            None,
        ),
    );
    let allowed = ok(&response);
    assert_eq!(
        set(allowed),
        [
            ("x-auth-subject".to_owned(), "alice".to_owned()),
            ("x-auth-email".to_owned(), "alice@example.com".to_owned()),
        ]
    );
    assert_eq!(allowed.headers_to_remove, ["x-auth-tenant"]);

    // The same from header_map, as raw bytes, with a header that is not UTF-8 beside it.
    let response = check(
        &authorizer,
        &raw_request(&[
            ("cookie", b"a=\xff\xfe"),
            ("authorization", bearer.as_bytes()),
        ]),
    );
    assert_eq!(set(ok(&response))[0].1, "alice");
    // A scope the token holds (test tokens hold `read write`).
    let response = check(
        &authorizer,
        &request(&[("authorization", &bearer)], Some("read write")),
    );
    ok(&response);
    assert_eq!(
        authorizer
            .server
            .metric(r#"mrmat_authz_decisions_total{decision="allowed",transport="ext_authz"}"#),
        Some(3.0)
    );
}

#[test]
fn a_token_without_a_subject_is_allowed_with_the_subject_header_removed_not_set_empty() {
    let authorizer = authorizer(&[]);
    let mut claims = claims("nobody");
    claims.as_object_mut().expect("an object").remove("sub");
    let bearer = format!("Bearer {}", authorizer.key.sign(&claims));
    let response = check(
        &authorizer,
        &request(
            &[("authorization", &bearer), ("x-auth-subject", "mallory")],
            None,
        ),
    );
    let allowed = ok(&response);
    assert!(set(allowed).is_empty(), "{allowed:?}");
    assert_eq!(allowed.headers_to_remove, ["x-auth-subject"]);
}

#[test]
fn denials_carry_the_status_envoy_sends_and_the_rfc_6750_challenge() {
    let authorizer = authorizer(&["--auth-realm", "apps"]);
    let (code, status, challenge) = denied(&check(&authorizer, &request(&[], None)));
    assert_eq!(
        (code, status, challenge.as_str()),
        (16, 401, r#"Bearer realm="apps""#)
    );
    let (code, status, _) = denied(&check(
        &authorizer,
        &request(&[("authorization", "Basic dTpw")], None),
    ));
    assert_eq!((code, status), (16, 401));

    let mut expired = claims("bob");
    expired["exp"] = (common::jwt::now() - 60).into();
    let bearer = format!("Bearer {}", authorizer.key.sign(&expired));
    let response = check(&authorizer, &request(&[("authorization", &bearer)], None));
    let (code, status, challenge) = denied(&response);
    assert_eq!((code, status), (16, 401));
    assert!(
        challenge.starts_with(r#"Bearer realm="apps", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    assert!(
        !response.status.message.contains(&bearer[7..]),
        "never the token"
    );

    let bearer = format!("Bearer {}", authorizer.key.sign(&claims("carol")));
    let (code, status, challenge) = denied(&check(
        &authorizer,
        &request(&[("authorization", &bearer)], Some("read admin")),
    ));
    assert_eq!((code, status), (7, 403));
    assert_eq!(
        challenge,
        r#"Bearer realm="apps", error="insufficient_scope", scope="read admin""#
    );
}

#[test]
fn malformed_credentials_are_400_and_bad_requests_get_a_status_envoy_fails_closed_on() {
    let authorizer = authorizer(&[]);
    let bearer = format!("Bearer {}", authorizer.key.sign(&claims("dave")));
    // Several authorization headers, a Bearer without a token, bytes that are not text.
    for (case, request) in [
        (
            "two headers",
            raw_request(&[
                ("authorization", bearer.as_bytes()),
                ("authorization", bearer.as_bytes()),
            ]),
        ),
        (
            "Bearer alone",
            request(&[("authorization", "Bearer")], None),
        ),
        (
            "Bearer and spaces",
            request(&[("authorization", "Bearer   ")], None),
        ),
        (
            "not UTF-8",
            raw_request(&[("authorization", b"Bearer \xff\xfe")]),
        ),
        (
            "Envoy's joined duplicates",
            request(&[("authorization", &format!("{bearer},{bearer}"))], None),
        ),
    ] {
        let (code, status, challenge) = denied(&check(&authorizer, &request));
        assert_eq!((code, status), (3, 400), "{case}");
        assert!(
            challenge.contains(r#"error="invalid_request""#),
            "{case}: {challenge}"
        );
    }
    // An authorization header of 1 MiB is a token refused, in a sentence.
    let huge = format!("Bearer {}", "a".repeat(1 << 20));
    let response = check(&authorizer, &request(&[("authorization", &huge)], None));
    let (code, status, _) = denied(&response);
    assert_eq!((code, status), (16, 401));
    assert!(
        response.status.message.len() < 500,
        "{}",
        response.status.message
    );

    // No HTTP request to judge, a scope list of 10,000 entries: the call fails, and Envoy
    // applies its failure mode.
    let fails = |request: &CheckRequest, code: RpcStatusCode, needle: &str| match authorizer
        .client
        .check_opt(request, common::call())
    {
        Err(grpcio::Error::RpcFailure(status)) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(needle), "{status:?}");
        }
        other => panic!("a failed call, not {other:?}"),
    };
    fails(
        &CheckRequest::new(),
        RpcStatusCode::INVALID_ARGUMENT,
        "no attributes.request.http",
    );
    let scopes: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    fails(
        &request(&[("authorization", &bearer)], Some(&scopes.join(" "))),
        RpcStatusCode::INVALID_ARGUMENT,
        "more than 64 scopes",
    );
    // Still serving.
    ok(&check(
        &authorizer,
        &request(&[("authorization", &bearer)], None),
    ));
}

#[test]
fn a_token_whose_provider_has_no_keys_fails_the_call_unavailable() {
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let server = ServerProcess::start(&["--store", "memory", "--oidc-issuer", &dead]);
    let client = AuthorizationClient::new(server.channel());
    let key = SigningKey::p256("k");
    let mut claims = claims("erin");
    claims["iss"] = dead.into();
    let bearer = format!("Bearer {}", key.sign(&claims));
    match client.check_opt(
        &request(&[("authorization", &bearer)], None),
        common::call(),
    ) {
        Err(grpcio::Error::RpcFailure(status)) => {
            assert_eq!(status.code(), RpcStatusCode::UNAVAILABLE, "{status:?}")
        }
        other => panic!("UNAVAILABLE, not {other:?}"),
    }
    // Without an identity provider it is not served at all, and says why.
    let server = ServerProcess::start(&["--store", "memory"]);
    assert!(
        server
            .listening_line
            .contains("envoy.service.auth.v3.Authorization not served (no identity provider"),
        "{}",
        server.listening_line
    );
}

#[test]
fn health_checking_and_the_call_metrics_know_it_by_envoys_name() {
    use mrmat_rust_api_grpc::proto::health::v1::{
        health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
    };
    let authorizer = authorizer(&[]);
    let health = HealthClient::new(authorizer.server.channel());
    let mut ask = HealthCheckRequest::new();
    ask.service = "envoy.service.auth.v3.Authorization".to_owned();
    let answer = health.check_opt(&ask, common::call()).expect("known");
    assert_eq!(answer.status.enum_value(), Ok(ServingStatus::SERVING));
    check(&authorizer, &request(&[], None));
    assert_eq!(
        authorizer.server.metric(
            r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="envoy.service.auth.v3.Authorization",grpc_type="unary"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        authorizer
            .server
            .metric(r#"mrmat_authz_decisions_total{decision="no_token",transport="ext_authz"}"#),
        Some(1.0)
    );
}
