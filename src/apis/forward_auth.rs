//! The forward-auth port (`--forward-auth-listen`): nginx's `auth_request`, Caddy's
//! `forward_auth` and Traefik's `ForwardAuth` ask it whether a request may through, on the HTTP
//! serving layer. Any path and method; the decision is [`crate::authz::AuthzPolicy`]'s:
//! - 200 with the identity headers (`x-auth-subject`, `--claim-header`s) for the proxy to pass on;
//! - 401 or 403 with `WWW-Authenticate`, for the proxy to pass back to the client;
//! - 503 when the token cannot be judged now (its provider's keys have not loaded).
//!
//! The route's required scopes come from the query: `?scope=admin`, repeated or space separated.
//! With routes in the config file, the request judged is the one the proxy forwards:
//! `X-Forwarded-Method`, `X-Forwarded-Host`, `X-Forwarded-Uri` (Traefik, Caddy) or nginx's
//! `X-Original-Method`, `X-Original-URI`; without them it cannot be judged (400, never as `/`).
//!
//! Envoy's ext_authz in its HTTP mode (`http_service`, `path_prefix: /envoy`) asks under
//! [`ENVOY_PREFIX`]: the question is the request itself, its method, Host and headers, its path
//! after the prefix (query included, so no scopes are read from it: a route's scopes come from
//! the config file). An allow also lists, in `x-envoy-auth-headers-to-remove`, the identity
//! headers it does not set, so that Envoy removes the client's own copies.

use std::sync::Arc;

use crate::apis::offer::HttpApi;
use crate::authz::{credential, AuthzPolicy, Decision, RequestFacts};
use crate::http::{self, header, Request, Response, StatusCode};
use crate::metrics::{self, Transport};
use crate::tokens::TokenVerifier;

/// The forward-auth port's API: the proxies' questions answered with `policy`'s decision on
/// tokens checked by `verifier`.
pub fn offer(verifier: &Arc<TokenVerifier>, policy: &AuthzPolicy) -> HttpApi {
    let (verifier, policy) = (Arc::clone(verifier), Arc::new(policy.clone()));
    let handler: http::Handler = Arc::new(move |request| {
        let (verifier, policy) = (Arc::clone(&verifier), Arc::clone(&policy));
        Box::pin(async move { decide(&verifier, &policy, &request).await })
    });
    HttpApi {
        port: "forward_auth",
        flag: "--forward-auth-listen",
        does: "answer forward auth",
        path: "/auth",
        handler,
        started: || {},
    }
}

/// Where Envoy's ext_authz in its HTTP mode asks (its `path_prefix`), the request's own path
/// after it.
pub const ENVOY_PREFIX: &str = "/envoy";

/// The header of an allow that names the headers Envoy removes from the request (Envoy's
/// `x-envoy-auth-headers-to-remove`, honoured in its HTTP mode).
const ENVOY_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

async fn decide(
    verifier: &Arc<TokenVerifier>,
    policy: &AuthzPolicy,
    request: &Request,
) -> Response {
    let envoy = envoy_target(request);
    if envoy == Some("") {
        metrics::authz_decision(Transport::ForwardAuth, "malformed", 0);
        return http::text(
            StatusCode::BAD_REQUEST,
            format!(
                "no path after {ENVOY_PREFIX}: Envoy's HTTP mode asks at its path_prefix \
                 ({ENVOY_PREFIX}) followed by the request's own path\n"
            ),
        );
    }
    // Envoy's question carries the request's own query: not the proxy's scopes.
    let query: Vec<(String, String)> = match (envoy, request.uri().query()) {
        (None, Some(query)) => form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        _ => Vec::new(),
    };
    let required = match AuthzPolicy::required_scopes(
        query
            .iter()
            .filter(|(key, _)| key == "scope")
            .map(|(_, value)| value.as_str()),
    ) {
        Ok(required) => required,
        // The proxy's configuration, not the client, names the scopes: say so to its operator.
        Err(refused) => return http::text(StatusCode::BAD_REQUEST, format!("{refused}\n")),
    };
    let authorization: Vec<&[u8]> = request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    let routes = policy.routes.current();
    let decision = if routes.in_use() {
        let asked = match envoy {
            Some(target) => Ok(envoy_request(request, target, routes.read_headers())),
            None => forwarded_request(request, routes.read_headers()),
        };
        let request = match asked {
            Ok(request) => request,
            Err(missing) => {
                metrics::authz_decision(Transport::ForwardAuth, "malformed", 0);
                return http::text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the proxy did not send {missing}: with routes, the request judged is \
                         the one the proxy forwards (X-Forwarded-Method and X-Forwarded-Uri, or \
                         nginx's X-Original-Method and X-Original-URI)\n"
                    ),
                );
            }
        };
        policy.judge_request(
            &routes,
            verifier,
            credential(&authorization),
            &required,
            &request,
        )
    } else {
        policy.judge(verifier, credential(&authorization), &required)
    };
    let decision = decision.get().await;
    metrics::authz_decision(
        Transport::ForwardAuth,
        decision.label(),
        decision.left_out(),
    );
    respond(decision, envoy.is_some())
}

/// The request's own target when Envoy's HTTP mode asks ([`ENVOY_PREFIX`] then the path and
/// query); empty when nothing follows the prefix; None for any other question.
fn envoy_target(request: &Request) -> Option<&str> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("", |target| target.as_str());
    let rest = target.strip_prefix(ENVOY_PREFIX)?;
    match rest.as_bytes().first() {
        None | Some(b'?') => Some(""),
        Some(b'/') => Some(rest),
        Some(_) => None,
    }
}

/// The request Envoy's HTTP mode asks about: this one, at `target`.
fn envoy_request(request: &Request, target: &str, with_headers: bool) -> RequestFacts {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let mut facts = RequestFacts::new(request.method().as_str(), host, target);
    if with_headers {
        for (name, value) in request.headers() {
            facts.add_header(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    facts
}

/// The request the proxy asks about, from the headers it forwards; or the header missing.
fn forwarded_request(request: &Request, with_headers: bool) -> Result<RequestFacts, &'static str> {
    let headers = request.headers();
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
    };
    let method = first(&["x-forwarded-method", "x-original-method"])
        .ok_or("X-Forwarded-Method (or X-Original-Method)")?;
    let uri = first(&["x-forwarded-uri", "x-original-uri"])
        .ok_or("X-Forwarded-Uri (or X-Original-URI)")?;
    let host = first(&["x-forwarded-host", "host"]).unwrap_or_default();
    let mut facts = RequestFacts::new(method, host, uri);
    if with_headers {
        for (name, value) in headers {
            facts.add_header(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    Ok(facts)
}

/// The answer to `decision`; to Envoy (`envoy`), an allow also names the headers to remove.
fn respond(decision: Decision, envoy: bool) -> Response {
    match decision {
        Decision::Allow { set, remove, .. } => {
            // No body: nginx's auth_request reads only the head, and keeps the connection
            // for the next question only when there is nothing after it.
            let mut response = http::text(StatusCode::OK, "");
            for (name, value) in set {
                // Both checked by the policy: a token, and a value with no control character.
                if let (Ok(name), Ok(value)) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    header::HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            if envoy && !remove.is_empty() {
                if let Ok(value) = header::HeaderValue::from_str(&remove.join(",")) {
                    response
                        .headers_mut()
                        .insert(ENVOY_HEADERS_TO_REMOVE, value);
                }
            }
            response
        }
        Decision::Deny {
            denial,
            www_authenticate,
            reason,
        } => {
            let status =
                StatusCode::from_u16(denial.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut response = http::text(status, format!("{reason}\n"));
            if www_authenticate.is_empty() {
                return response;
            }
            if let Ok(value) = header::HeaderValue::from_str(&www_authenticate) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
        Decision::CannotJudge { reason } => http::text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot judge the token now: {reason}\n"),
        ),
    }
}
