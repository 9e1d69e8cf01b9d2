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
//!
//! A token sent with the DPoP scheme is held to its proof for the request the proxy forwards:
//! `X-Forwarded-Method` (or `X-Original-Method`) and the URL of `X-Forwarded-Proto`,
//! `X-Forwarded-Host` (or `Host`) and `X-Forwarded-Uri` (or `X-Original-URI`); for Envoy's HTTP
//! mode, the question's own method, Host and path with `X-Forwarded-Proto`. The client's
//! certificate, for certificate-bound tokens, is read from the header the operator names
//! (`--forward-auth-client-cert-header`) and from no other.

use std::sync::Arc;

use crate::apis::offer::HttpApi;
use crate::authz::{credential, AuthzPolicy, ClientCertHeader, Decision, RequestFacts};
use crate::http::{self, header, Request, Response, StatusCode};
use crate::metrics::{self, Transport};
use crate::tokens::binding::{htu, DpopRequest, Presentation};
use crate::tokens::TokenVerifier;

/// The forward-auth port's API: the proxies' questions answered with `policy`'s decision on
/// tokens checked by `verifier`, the client's certificate read from `client_cert` when named.
pub fn offer(
    verifier: &Arc<TokenVerifier>,
    policy: &AuthzPolicy,
    client_cert: Option<ClientCertHeader>,
) -> HttpApi {
    let (verifier, policy) = (Arc::clone(verifier), Arc::new(policy.clone()));
    let handler: http::Handler = Arc::new(move |request| {
        let (verifier, policy) = (Arc::clone(&verifier), Arc::clone(&policy));
        Box::pin(async move { decide(&verifier, &policy, client_cert, &request).await })
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
    client_cert: Option<ClientCertHeader>,
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
    let credential = credential(&authorization);
    let presented = match presentation(request, envoy, credential.is_dpop(), client_cert) {
        Ok(presented) => presented,
        Err(why) => {
            metrics::authz_decision(Transport::ForwardAuth, "malformed", 0);
            return http::text(StatusCode::BAD_REQUEST, format!("{why}\n"));
        }
    };
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
            &routes, verifier, credential, presented, &required, &request,
        )
    } else {
        policy.judge(verifier, credential, presented, &required)
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

/// How the request the proxy asks about presents its token: with the DPoP scheme (`dpop`), its
/// proofs, method and URL as the proxy forwards them (`envoy`: Envoy's HTTP mode, at this
/// target); and the certificate in `client_cert`'s header. A certificate header that does not
/// read is the proxy's fault: why, for a 400.
fn presentation(
    request: &Request,
    envoy: Option<&str>,
    dpop: bool,
    client_cert: Option<ClientCertHeader>,
) -> Result<Presentation, String> {
    let headers = request.headers();
    let certificate = match client_cert {
        None => None,
        Some(header) => {
            let values: Vec<&[u8]> = headers
                .get_all(header.name())
                .iter()
                .map(|value| value.as_bytes())
                .collect();
            header
                .thumbprint(&values)
                .map_err(|why| format!("{why} ({}, which the proxy sets)", header.name()))?
        }
    };
    let dpop = dpop.then(|| {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
                .unwrap_or_default()
        };
        let (method, path) = match envoy {
            Some(target) => (request.method().as_str(), target),
            None => (
                first(&["x-forwarded-method", "x-original-method"]),
                first(&["x-forwarded-uri", "x-original-uri"]),
            ),
        };
        let host = first(&["x-forwarded-host", "host"]);
        let url = htu::request_url(first(&["x-forwarded-proto"]), host, path).map_err(|why| {
            format!(
                "{why}: the proxy must send X-Forwarded-Proto, X-Forwarded-Host and                  X-Forwarded-Uri (or X-Original-URI) for DPoP"
            )
        });
        DpopRequest {
            proofs: headers
                .get_all("dpop")
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect(),
            method: method.to_owned(),
            url,
        }
    });
    Ok(Presentation { dpop, certificate })
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
            dpop_nonce,
        } => {
            let status =
                StatusCode::from_u16(denial.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut response = http::text(status, format!("{reason}\n"));
            if let Some(nonce) = dpop_nonce.and_then(|n| header::HeaderValue::from_str(&n).ok()) {
                response.headers_mut().insert("dpop-nonce", nonce);
            }
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
