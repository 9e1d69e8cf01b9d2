//! The forward-auth port (`--forward-auth-listen`): nginx's `auth_request`, Caddy's
//! `forward_auth` and Traefik's `ForwardAuth` ask it whether a request may through, on the HTTP
//! serving layer. Any path and method; the decision is [`authz::Gate`]'s:
//! - 200 with the identity headers (`x-auth-subject`, `--claim-header`s) for the proxy to pass on;
//! - 401 or 403 with `WWW-Authenticate`, for the proxy to pass back to the client;
//! - 503 when the token cannot be judged now (its provider's keys have not loaded).
//!
//! The route's required scopes come from the query: `?scope=admin`, repeated or space separated.

use std::sync::Arc;

use crate::authz::{credential, Decision, Gate, Judged};
use crate::http::{self, header, Request, Response, StatusCode};
use crate::metrics::{self, Transport};
use crate::tokens::TokenVerifier;

/// A running port; dropping it stops it.
pub struct ForwardAuth {
    // Kept for its Drop, which stops the port.
    _server: http::Server,
    address: String,
}

impl ForwardAuth {
    /// Listens on `address` (HOST:PORT) and answers there from now on.
    pub fn start(
        address: &str,
        limits: http::Limits,
        verifier: Arc<TokenVerifier>,
        gate: Gate,
    ) -> Result<Self, String> {
        let gate = Arc::new(gate);
        let handler: http::Handler = Arc::new(move |request| {
            let (verifier, gate) = (Arc::clone(&verifier), Arc::clone(&gate));
            Box::pin(async move { answer(&verifier, &gate, &request).await })
        });
        let server = http::Server::start("forward_auth", address, limits, handler)?;
        Ok(Self {
            address: server.address().to_string(),
            _server: server,
        })
    }

    /// The address it listens on, HOST:PORT with the bound port.
    pub fn address(&self) -> &str {
        &self.address
    }
}

async fn answer(verifier: &TokenVerifier, gate: &Gate, request: &Request) -> Response {
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let required = match Gate::required_scopes(
        query
            .iter()
            .filter(|(key, _)| key == "scope")
            .map(|(_, value)| value.as_str()),
    ) {
        Ok(required) => required,
        // The proxy's configuration, not the client, names the scopes: say so to its operator.
        Err(why) => return http::text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    let authorization: Vec<&[u8]> = request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    let decision = match gate.judge(verifier, credential(&authorization), &required) {
        Judged::Now(decision) => decision,
        Judged::AfterKeyReload { reload, token } => {
            reload.await;
            gate.after_reload(verifier, token, &required)
        }
    };
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
                // Both checked by the gate: a token, and a value with no control character.
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
            let status = StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::UNAUTHORIZED);
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
