//! The explain command: the configuration and config file loaded as a start would, the token
//! verified as the server would (its provider's keys fetched as at start), and one request
//! judged by the routes, with every step said: which route covered it, each condition with its
//! value, and the decision the server would give.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{read_config_file, Providers, ServerConfig, ServerError};
use crate::authz::{self, Credential, Decision, RequestFacts};
use crate::store::MemoryRevocations;
use crate::tokens::binding::Presentation;
use crate::tokens::{Outcome, TokenOptions, TokenVerifier, Verdict};

/// How long the token's provider's keys are waited for: its discovery and key set fetched.
const KEYS_WAIT: Duration = Duration::from_secs(30);

/// How often the token is checked again while its provider's keys load.
const KEYS_POLL: Duration = Duration::from_millis(50);

/// The request to explain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplainRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// An absolute URL, `https://api.example.com/admin?x=1`: host, path and query.
    pub url: String,
    /// `Name: value` each.
    pub headers: Vec<String>,
    /// The calling workload, as Envoy would report it (a SPIFFE ID).
    pub principal: String,
    /// The bearer token, when the request carries one.
    pub token: Option<String>,
}

/// What the explain command prints, and whether the request would be let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explained {
    pub lines: Vec<String>,
    pub allowed: bool,
}

/// Explains how the server configured by `config` would judge `request`.
pub fn explain(config: &ServerConfig, request: &ExplainRequest) -> Result<Explained, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let facts = request_facts(request).map_err(|why| ServerError::Config(vec![why]))?;
    let (providers, routes) = read_config_file(&Providers::of(config))?;
    let routes = Arc::new(routes);
    let options = TokenOptions {
        providers,
        ..config.tokens.clone()
    };
    // Revocations live in the server's store, which a running server holds: none consulted.
    let revocations = Arc::new(MemoryRevocations::with_limit(0));
    let verifier = TokenVerifier::start(&options, revocations)
        .map_err(ServerError::Tokens)?
        .map(Arc::new)
        .ok_or_else(|| {
            ServerError::Config(vec![
                "there is no identity provider to verify tokens: give --config with a \
                 [[provider]], --oidc-issuer, --jwks-file or --jwks-url"
                    .to_owned(),
            ])
        })?;
    let mut lines = vec![format!(
        "request: {} host {}, path {}{}{}",
        facts.method,
        facts.host,
        facts.path,
        if facts.query.is_empty() {
            String::new()
        } else {
            format!(", query {}", facts.query)
        },
        if facts.principal.is_empty() {
            String::new()
        } else {
            format!(", peer {}", facts.principal)
        }
    )];
    let credential = match &request.token {
        Some(token) => Credential::Bearer(token),
        None => Credential::Absent,
    };
    let outcome = match &request.token {
        Some(token) => Some(verified(&verifier, token)?),
        None => None,
    };
    lines.push(match &outcome {
        None => "token: none".to_owned(),
        Some(Ok(token)) => format!(
            "token: valid; issuer {}, subject {}, audience [{}], scopes [{}], expires at {} \
             (revocations not consulted: they are in the server's store)",
            token.issuer,
            token.subject,
            token.audience.join(", "),
            token.scopes.join(" "),
            token.expires_at
        ),
        Some(Err(refusal)) => format!("token: refused: {}", refusal.reason),
    });
    let valid = outcome.as_ref().and_then(|outcome| outcome.as_ref().ok());
    lines.extend(authz::explain(&routes, &facts, valid.map(Arc::as_ref)));
    let decision = futures::executor::block_on(
        config
            .policy
            .judge_request(
                &routes,
                &verifier,
                credential,
                Presentation::default(),
                &[],
                &facts,
            )
            .get(),
    );
    lines.push(format!("decision: {}", shown(&decision)));
    Ok(Explained {
        lines,
        allowed: matches!(decision, Decision::Allow { .. }),
    })
}

/// The token's outcome once its provider's keys have loaded, or why they did not.
fn verified(verifier: &Arc<TokenVerifier>, token: &str) -> Result<Outcome, ServerError> {
    let deadline = Instant::now() + KEYS_WAIT;
    loop {
        let outcome = futures::executor::block_on(verifier.check(token).get());
        match &outcome {
            Err(refusal) if refusal.verdict == Verdict::Unavailable => {
                if Instant::now() >= deadline {
                    return Err(ServerError::Config(vec![format!(
                        "{} (waited {}s)",
                        refusal.reason,
                        KEYS_WAIT.as_secs()
                    )]));
                }
                std::thread::sleep(KEYS_POLL);
            }
            _ => return Ok(outcome),
        }
    }
}

/// The facts of `request`, or why it cannot be one.
fn request_facts(request: &ExplainRequest) -> Result<RequestFacts, String> {
    let method = request.method.as_str();
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!(
            "--explain: {method:?} is not an HTTP method (GET, POST, ...)"
        ));
    }
    let Some(rest) = request
        .url
        .strip_prefix("https://")
        .or_else(|| request.url.strip_prefix("http://"))
    else {
        return Err(format!(
            "--explain: {:?} is not an absolute http:// or https:// URL (https://api.example.com/path)",
            request.url
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("--explain: {:?} names no host", request.url));
    }
    let mut facts = RequestFacts::new(method, authority, &request.url);
    for header in &request.headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(format!("--explain-header: {header:?} is not NAME: VALUE"));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(format!("--explain-header: {name:?} is not a header name"));
        }
        facts.add_header(name.as_bytes(), value.trim().as_bytes());
    }
    facts.principal.clone_from(&request.principal);
    Ok(facts)
}

/// A decision as the explain command says it: the status the client would get and why, or
/// the identity headers the app would get.
fn shown(decision: &Decision) -> String {
    match decision {
        Decision::Allow { set, remove, .. } => {
            let set: Vec<String> = set
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            format!(
                "allowed; the app gets [{}]; removed from the request: [{}]",
                set.join(", "),
                remove.join(", ")
            )
        }
        Decision::Deny {
            denial,
            www_authenticate,
            reason,
            ..
        } => {
            let challenge = if www_authenticate.is_empty() {
                String::new()
            } else {
                format!(" (WWW-Authenticate: {www_authenticate})")
            };
            format!(
                "denied, {} {}: {reason}{challenge}",
                denial.http_status(),
                decision.label()
            )
        }
        Decision::CannotJudge { reason } => format!("cannot judge now: {reason}"),
    }
}
