//! What a proxy asks of this service, "may this request through?", answered from a token's
//! verification: the decision Envoy's `ext_authz` and the HTTP forward-auth port both give, so
//! that the two transports only carry it. Knows nothing of gRPC or of an HTTP server:
//! - the token is the `Authorization` header's Bearer credential, and nothing else
//!   ([`credential`], RFC 6750 section 2.1); several, or one that cannot be a token, is a
//!   malformed request (400);
//! - allowed: the identity as headers for the app, `x-auth-subject` always and one per
//!   configured claim ([`ClaimHeader`]), and every configured identity header this answer does not
//!   set listed for removal, so that a value a client sent itself never reaches the app;
//! - denied: 401 with a `WWW-Authenticate` challenge (RFC 6750 section 3), or 403 when a valid
//!   token lacks a required scope; cannot judge (the token's provider has no keys): say so, and
//!   let the proxy apply its own failure mode.

//! - with routes (`[[route]]` in the config file): the first route that matches the request
//!   decides, by its scopes and its CEL rule ([`routes`], [`rules`]); a public one without
//!   reading the token; a rule that is false, or fails, is 403.

mod bearer;
mod challenge;
mod client_cert;
mod explain;
mod facts;
mod identity;
pub mod routes;
pub mod rules;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::eventually::Eventually;
use crate::metrics;
use crate::tokens::binding::Presentation;
use crate::tokens::{Outcome, TokenVerifier, ValidToken, Verdict};

pub use bearer::{credential, Credential};
pub use challenge::{challenge, dpop_challenge, Challenge};
pub use client_cert::ClientCertHeader;
pub use explain::explain;
pub use facts::{normalized_path, Facts, RequestFacts};
pub use identity::{ClaimHeader, ClaimHeaderError, ClaimHeaderErrorKind, SUBJECT_HEADER};
pub use routes::{describe, Fallback, PathMatch, Route, RouteTable, Routes};
pub use rules::{Rule, RuleError};

/// Most scopes a route may require: a longer list is a misconfiguration, refused in one sentence
/// rather than echoed back in a header no proxy would take.
pub const MAX_REQUIRED_SCOPES: usize = 64;

/// What the proxy is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through with these headers set (name, value; names lower case), and
    /// these removed (configured identity headers this answer does not set).
    Allow {
        set: Vec<(String, String)>,
        remove: Vec<String>,
        /// Claims left out because their value cannot be a header value (CR, LF, NUL, ...).
        left_out: usize,
    },
    /// Refuse it, with the `WWW-Authenticate` value and one sentence saying why; and with a
    /// DPoP nonce the client is to use (its `DPoP-Nonce` header).
    Deny {
        denial: Denial,
        www_authenticate: String,
        reason: String,
        dpop_nonce: Option<String>,
    },
    /// The token cannot be judged now (its provider's keys have not loaded).
    CannotJudge { reason: String },
}

/// Why a request is refused, each with its HTTP status (RFC 6750 section 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No Bearer credential: 401, no error code.
    NoToken,
    /// A credential that cannot be a token, or several: 400, `invalid_request`.
    Malformed,
    /// A token refused (its verdict's sentence says why): 401, `invalid_token`.
    InvalidToken,
    /// A valid token without a scope the route requires: 403, `insufficient_scope`.
    InsufficientScope,
    /// A route's rule is false or failed, or no route covers the request and the fallback is
    /// `deny`: 403, no challenge.
    Forbidden,
}

impl Denial {
    /// The HTTP status the client gets.
    pub fn http_status(self) -> u16 {
        match self {
            Self::NoToken | Self::InvalidToken => 401,
            Self::Malformed => 400,
            Self::InsufficientScope | Self::Forbidden => 403,
        }
    }
}

impl Decision {
    /// The claims an allow left out of the identity (none for any other decision).
    pub fn left_out(&self) -> usize {
        match self {
            Self::Allow { left_out, .. } => *left_out,
            _ => 0,
        }
    }

    /// A short name for counting decisions: `allowed`, `no_token`, `malformed`,
    /// `invalid_token`, `insufficient_scope` or `cannot_judge`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allowed",
            Self::Deny { denial, .. } => match denial {
                Denial::NoToken => "no_token",
                Denial::Malformed => "malformed",
                Denial::InvalidToken => "invalid_token",
                Denial::InsufficientScope => "insufficient_scope",
                Denial::Forbidden => "forbidden",
            },
            Self::CannotJudge { .. } => "cannot_judge",
        }
    }
}

/// How requests are judged: the realm the challenges name, the identity headers, the routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthzPolicy {
    pub realm: String,
    pub claim_headers: Vec<ClaimHeader>,
    /// The config file's routes, replaced on SIGHUP; none: a valid token is enough.
    pub routes: RouteTable,
}

impl AuthzPolicy {
    /// The decision for `request` carrying `credential`, the proxy naming `required` scopes,
    /// its token checked by `verifier`: by the one of `routes` (the table's current ones, read
    /// once by the transport) that covers it, or without routes by the token and scopes alone;
    /// now, or once the token's provider has reloaded its keys.
    pub fn judge_request(
        &self,
        routes: &Arc<Routes>,
        verifier: &Arc<TokenVerifier>,
        credential: Credential<'_>,
        presented: Presentation,
        required: &[&str],
        request: &RequestFacts,
    ) -> Eventually<Decision> {
        if !routes.in_use() {
            return self.judge(verifier, credential, presented, required);
        }
        let Some(at) = routes
            .routes
            .iter()
            .position(|route| route.matches(request))
        else {
            let decision = match routes.fallback {
                Fallback::Deny => forbidden("no route covers this request".to_owned()),
                Fallback::Authenticated => {
                    return self.judge(verifier, credential, presented, required)
                }
            };
            metrics::authz_route_decision("default", decision.label());
            return Eventually::Now(decision);
        };
        let route = &routes.routes[at];
        if route.public {
            let decision = identity::removed(&self.claim_headers);
            route.decisions.count(&route.name, "public");
            return Eventually::Now(decision);
        }
        let mut all: Vec<&str> = required.to_vec();
        all.extend(route.scopes.iter().map(String::as_str));
        let decision = match credential {
            Credential::Absent if route.token_optional => Eventually::Now(self.by_rule(
                route,
                None,
                request,
                identity::removed(&self.claim_headers),
            )),
            Credential::Bearer(token) | Credential::Dpop(token) => {
                match verifier.check_presented(token, presented) {
                    Eventually::Now(outcome) => {
                        Eventually::Now(self.decide_route(route, &outcome, &all, request))
                    }
                    later => {
                        let policy = self.clone();
                        let all: Vec<String> = all.iter().map(|s| (*s).to_owned()).collect();
                        let request = request.clone();
                        let routes = Arc::clone(routes);
                        return later.map(move |outcome| {
                            let all: Vec<&str> = all.iter().map(String::as_str).collect();
                            let route = &routes.routes[at];
                            let decision = policy.decide_route(route, &outcome, &all, &request);
                            route.decisions.count(&route.name, decision.label());
                            decision
                        });
                    }
                }
            }
            other => self.judge(verifier, other, presented, &all),
        };
        if let Eventually::Now(decision) = &decision {
            route.decisions.count(&route.name, decision.label());
        }
        decision
    }

    /// The decision on `route` for a token verified as `outcome`.
    fn decide_route(
        &self,
        route: &Route,
        outcome: &Outcome,
        required: &[&str],
        request: &RequestFacts,
    ) -> Decision {
        let decision = self.decide(outcome, required);
        match (&decision, outcome) {
            (Decision::Allow { .. }, Ok(token)) => {
                self.by_rule(route, Some(token), request, decision)
            }
            _ => decision,
        }
    }

    /// `allowed` if `route`'s rule (when it has one, and it is enforced) holds on the request.
    fn by_rule(
        &self,
        route: &Route,
        token: Option<&ValidToken>,
        request: &RequestFacts,
        allowed: Decision,
    ) -> Decision {
        let Some(rule) = &route.rule else {
            return allowed;
        };
        let holds = match rule.evaluate(&Facts { token, request }) {
            Ok(holds) => holds,
            Err(failure) => {
                metrics::authz_rule_error(&route.name);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if routes::may_log_error(route, now) {
                    log::warn!(
                        "route {}: its rule failed, taken as false: {} (logged at most once a \
                         minute per route)",
                        route.name,
                        failure.0
                    );
                }
                false
            }
        };
        if route.shadow {
            let would = if holds { "allowed" } else { "denied" };
            route.decisions.count(
                &route.name,
                if holds {
                    "shadow_allowed"
                } else {
                    "shadow_denied"
                },
            );
            let subject = token.map_or("", |t| t.subject.as_str());
            if holds {
                log::debug!(
                    "route {}: shadow rule would have {would} subject {subject:?}",
                    route.name
                );
            } else {
                log::info!(
                    "route {}: shadow rule would have {would} subject {subject:?}",
                    route.name
                );
            }
            return allowed;
        }
        if holds {
            allowed
        } else {
            forbidden(format!(
                "route {}: the request is not allowed by its rule",
                route.name
            ))
        }
    }

    /// The decision for a request carrying `credential` on a route that requires every scope of
    /// `required`, its token checked by `verifier`: now, or once the token's provider has
    /// reloaded its keys (the token names a key it does not have yet).
    pub fn judge(
        &self,
        verifier: &Arc<TokenVerifier>,
        credential: Credential<'_>,
        presented: Presentation,
        required: &[&str],
    ) -> Eventually<Decision> {
        match credential {
            Credential::Absent => Eventually::Now(self.no_token()),
            Credential::Malformed(why) => Eventually::Now(self.malformed(why)),
            Credential::Bearer(token) | Credential::Dpop(token) => match verifier
                .check_presented(token, presented)
            {
                Eventually::Now(outcome) => Eventually::Now(self.decide(&outcome, required)),
                later => {
                    // Rare (an unknown kid): only then is anything copied for the wait.
                    let policy = self.clone();
                    let required: Vec<String> = required.iter().map(|s| (*s).to_owned()).collect();
                    later.map(move |outcome| {
                        let required: Vec<&str> = required.iter().map(String::as_str).collect();
                        policy.decide(&outcome, &required)
                    })
                }
            },
        }
    }

    /// The decision for a request without a Bearer token.
    pub fn no_token(&self) -> Decision {
        Decision::Deny {
            denial: Denial::NoToken,
            www_authenticate: challenge(&self.realm, &Challenge::NoToken),
            reason: "no bearer token in the Authorization header".to_owned(),
            dpop_nonce: None,
        }
    }

    /// The decision for a request whose credential is malformed, as `why` says.
    pub fn malformed(&self, why: &str) -> Decision {
        Decision::Deny {
            denial: Denial::Malformed,
            www_authenticate: challenge(&self.realm, &Challenge::InvalidRequest(why)),
            reason: why.to_owned(),
            dpop_nonce: None,
        }
    }

    /// The decision for a request whose token was verified as `outcome`, on a route that
    /// requires every scope of `required`.
    pub fn decide(&self, outcome: &Outcome, required: &[&str]) -> Decision {
        let token = match outcome {
            Ok(token) => token,
            Err(refusal) if refusal.verdict == Verdict::Unavailable => {
                return Decision::CannotJudge {
                    reason: refusal.reason.clone(),
                }
            }
            Err(refusal) => {
                let www_authenticate = match &refusal.dpop {
                    Some(dpop) => dpop_challenge(
                        &self.realm,
                        &dpop.algs,
                        match refusal.verdict {
                            Verdict::InvalidDpopProof => "invalid_dpop_proof",
                            Verdict::UseDpopNonce => "use_dpop_nonce",
                            _ => "invalid_token",
                        },
                        &refusal.reason,
                    ),
                    None => challenge(&self.realm, &Challenge::InvalidToken(&refusal.reason)),
                };
                return Decision::Deny {
                    denial: Denial::InvalidToken,
                    www_authenticate,
                    reason: refusal.reason.clone(),
                    dpop_nonce: refusal.dpop.as_ref().and_then(|d| d.nonce.clone()),
                };
            }
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|scope| !token.scopes.iter().any(|held| held == scope))
            .collect();
        if !missing.is_empty() {
            let scope = required.join(" ");
            return Decision::Deny {
                denial: Denial::InsufficientScope,
                www_authenticate: challenge(&self.realm, &Challenge::InsufficientScope(&scope)),
                reason: format!(
                    "the token lacks the scope{} {} this route requires",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ),
                dpop_nonce: None,
            };
        }
        identity::headers(&self.claim_headers, token)
    }

    /// The scopes a route requires, from its `scope` setting: space separated, possibly repeated
    /// (`?scope=a&scope=b c`); empty parts ignored, each scope once. More than
    /// [`MAX_REQUIRED_SCOPES`] is refused.
    pub fn required_scopes<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<&'a str>, TooManyScopes> {
        let mut scopes: Vec<&str> = Vec::new();
        for scope in values
            .into_iter()
            .flat_map(|value| value.split(' '))
            .filter(|scope| !scope.is_empty())
        {
            if scopes.contains(&scope) {
                continue;
            }
            if scopes.len() == MAX_REQUIRED_SCOPES {
                return Err(TooManyScopes);
            }
            scopes.push(scope);
        }
        Ok(scopes)
    }
}

/// A 403 without a challenge (not a token's fault), saying why.
fn forbidden(reason: String) -> Decision {
    Decision::Deny {
        denial: Denial::Forbidden,
        www_authenticate: String::new(),
        reason,
        dpop_nonce: None,
    }
}

/// Why a route's requirement was refused: it names more than [`MAX_REQUIRED_SCOPES`] scopes.
/// The proxy's configuration names them, so the sentence is for its operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyScopes;

impl std::fmt::Display for TooManyScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the route requires more than {MAX_REQUIRED_SCOPES} scopes; a route's `scope` \
             setting names at most {MAX_REQUIRED_SCOPES}"
        )
    }
}

impl std::error::Error for TooManyScopes {}

#[cfg(test)]
mod tests;
