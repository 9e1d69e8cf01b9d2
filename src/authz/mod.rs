//! What a proxy asks of this service, "may this request through?", answered from a token's
//! verification: the decision Envoy's `ext_authz` and the HTTP forward-auth port both give, so
//! that the two transports only carry it. Knows nothing of gRPC or of an HTTP server:
//! - the token is the `Authorization` header's Bearer credential, and nothing else
//!   ([`bearer_token`], RFC 6750 section 2.1);
//! - allowed: the identity as headers for the app, `x-auth-subject` always and one per
//!   configured claim ([`ClaimHeader`]), and every configured identity header this answer does not
//!   set listed for removal, so that a value a client sent itself never reaches the app;
//! - denied: 401 with a `WWW-Authenticate` challenge (RFC 6750 section 3), or 403 when a valid
//!   token lacks a required scope; cannot judge (the token's provider has no keys): say so, and
//!   let the proxy apply its own failure mode.

mod bearer;
mod challenge;
mod identity;

use crate::tokens::{Outcome, Verdict};

pub use bearer::bearer_token;
pub use challenge::{challenge, Challenge};
pub use identity::{ClaimHeader, SUBJECT_HEADER};

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
    /// Refuse it: HTTP 401 (no token, or a token refused) or 403 (a scope is missing), with the
    /// `WWW-Authenticate` value and one sentence saying why.
    Deny {
        status: u16,
        www_authenticate: String,
        reason: String,
    },
    /// The token cannot be judged now (its provider's keys have not loaded).
    CannotJudge { reason: String },
}

/// How requests are judged: the realm the challenges name, and the identity headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub realm: String,
    pub claim_headers: Vec<ClaimHeader>,
}

impl Gate {
    /// The decision for a request without a Bearer token.
    pub fn no_token(&self) -> Decision {
        Decision::Deny {
            status: 401,
            www_authenticate: challenge(&self.realm, &Challenge::NoToken),
            reason: "no bearer token in the Authorization header".to_owned(),
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
                return Decision::Deny {
                    status: 401,
                    www_authenticate: challenge(
                        &self.realm,
                        &Challenge::InvalidToken(&refusal.reason),
                    ),
                    reason: refusal.reason.clone(),
                }
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
                status: 403,
                www_authenticate: challenge(&self.realm, &Challenge::InsufficientScope(&scope)),
                reason: format!(
                    "the token lacks the scope{} {} this route requires",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ),
            };
        }
        identity::headers(&self.claim_headers, token)
    }

    /// The scopes a route requires, from its `scope` setting: space separated, possibly repeated
    /// (`?scope=a&scope=b c`); empty parts ignored.
    pub fn required_scopes<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        values
            .into_iter()
            .flat_map(|value| value.split(' '))
            .filter(|scope| !scope.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests;
