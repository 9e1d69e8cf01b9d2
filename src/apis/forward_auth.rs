//! The forward-auth port (`--forward-auth-listen`): nginx's `auth_request`, Caddy's
//! `forward_auth` and Traefik's `ForwardAuth` ask it whether a request may through, on the HTTP
//! serving layer. Any path and method; the decision is [`crate::authz::AuthzPolicy`]'s:
//! - 200 with the identity headers (`x-auth-subject`, `--claim-header`s) for the proxy to pass on;
//! - 401 or 403 with `WWW-Authenticate`, for the proxy to pass back to the client;
//! - 503 when the token cannot be judged now (its provider's keys have not loaded).
//!
//! The route's required scopes come from the query: `?scope=admin`, repeated or space separated.

use std::sync::Arc;

use crate::apis::offer::HttpApi;
use crate::authz::{credential, AuthzPolicy, Decision};
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

async fn decide(
    verifier: &Arc<TokenVerifier>,
    policy: &AuthzPolicy,
    request: &Request,
) -> Response {
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
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
    let decision = policy
        .judge(verifier, credential(&authorization), &required)
        .get()
        .await;
    metrics::authz_decision(
        Transport::ForwardAuth,
        decision.label(),
        decision.left_out(),
    );
    respond(decision)
}

fn respond(decision: Decision) -> Response {
    match decision {
        Decision::Allow { set, .. } => {
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
