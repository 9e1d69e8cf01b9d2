//! The identity an allowed request carries to the app: `x-auth-subject` and one header per
//! `--claim-header CLAIM=HEADER`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Decision;
use crate::tokens::ValidToken;

/// The header that carries the token's `sub`; removed when the token has none.
pub const SUBJECT_HEADER: &str = "x-auth-subject";

/// Headers a claim may never be put in: the request's own framing, routing and credentials.
const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "host",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    SUBJECT_HEADER,
];

/// One claim to pass on, as `--claim-header CLAIM=HEADER` says: a dotted path reaches a nested
/// claim (`realm_access.roles`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeader {
    /// The path, one claim name per step.
    pub path: Vec<String>,
    /// The header's name, lower case.
    pub header: String,
}

impl ClaimHeader {
    /// Parses `CLAIM=HEADER`, or says why it cannot be one.
    pub fn parse(text: &str) -> Result<Self, ClaimHeaderError> {
        let invalid = |kind| ClaimHeaderError {
            text: text.to_owned(),
            kind,
        };
        let (claim, header) = text
            .split_once('=')
            .ok_or_else(|| invalid(ClaimHeaderErrorKind::NotClaimEqualsHeader))?;
        let path: Vec<String> = claim.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(invalid(ClaimHeaderErrorKind::EmptyClaimName));
        }
        let header = header.to_ascii_lowercase();
        // A header name is an RFC 9110 token.
        let token = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(invalid(ClaimHeaderErrorKind::BadHeaderName));
        }
        if RESERVED.contains(&header.as_str()) {
            return Err(invalid(ClaimHeaderErrorKind::ReservedHeader));
        }
        Ok(Self { path, header })
    }
}

/// Why `--claim-header` was refused: the text given, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeaderError {
    text: String,
    kind: ClaimHeaderErrorKind,
}

/// What is wrong with a `--claim-header`, for callers to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimHeaderErrorKind {
    /// Not `CLAIM=HEADER`.
    NotClaimEqualsHeader,
    /// A dotted path with an empty step (`a..b`, `.a`).
    EmptyClaimName,
    /// The header is not an RFC 9110 field name.
    BadHeaderName,
    /// The header is the request's own (`authorization`, `host`, ...).
    ReservedHeader,
}

impl ClaimHeaderError {
    /// What is wrong.
    pub fn kind(&self) -> ClaimHeaderErrorKind {
        self.kind
    }

    /// The text that was given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for ClaimHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.kind {
            ClaimHeaderErrorKind::NotClaimEqualsHeader => {
                "expected CLAIM=HEADER, e.g. email=x-auth-email"
            }
            ClaimHeaderErrorKind::EmptyClaimName => "a claim path has a name between each dot",
            ClaimHeaderErrorKind::BadHeaderName => "the header name is not a valid HTTP field name",
            ClaimHeaderErrorKind::ReservedHeader => {
                "that header is the request's own; name another"
            }
        };
        write!(f, "--claim-header `{}`: {why}", self.text)
    }
}

impl std::error::Error for ClaimHeaderError {}

/// The allow decision for `token`: every identity header it has a value for set, the others
/// removed.
pub(super) fn headers(claim_headers: &[ClaimHeader], token: &ValidToken) -> Decision {
    let mut set = Vec::with_capacity(claim_headers.len() + 1);
    let mut left_out = 0;
    let mut offer = |header: &str, value: Option<String>| match value {
        Some(value) if valid_value(&value) => set.push((header.to_owned(), value)),
        Some(_) => left_out += 1,
        None => {}
    };
    // No `sub` (or an empty one) is no subject: the header is removed, never set empty, which
    // an app could take for a real, empty identity.
    offer(
        SUBJECT_HEADER,
        (!token.subject.is_empty()).then(|| token.subject.clone()),
    );
    for claim in claim_headers {
        offer(
            &claim.header,
            lookup(&token.claims, &claim.path).and_then(text),
        );
    }
    let given: BTreeSet<&str> = set.iter().map(|(name, _)| name.as_str()).collect();
    // Never a header also set: a proxy applies removals after additions.
    let remove: Vec<String> = std::iter::once(SUBJECT_HEADER)
        .chain(claim_headers.iter().map(|claim| claim.header.as_str()))
        .filter(|header| !given.contains(header))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    Decision::Allow {
        set,
        remove,
        left_out,
    }
}

fn lookup<'a>(claims: &'a serde_json::Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |value, name| value.get(name))
}

/// A claim as header text: a string as it is, a number or boolean as JSON writes it, a list
/// joined with `,`, an object as JSON; null as nothing.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|item| match item {
                    Value::String(text) => Some(text.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

/// Whether `value` can be a field value (RFC 9110 section 5.5): no control character but tab;
/// so never CR, LF or NUL, which would split or end the header.
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The allow decision that carries no identity: every identity header removed (a public route,
/// or one a workload calls without a token), so that none a client sent reaches the app.
pub(super) fn removed(claim_headers: &[ClaimHeader]) -> Decision {
    let remove: BTreeSet<&str> = std::iter::once(SUBJECT_HEADER)
        .chain(claim_headers.iter().map(|claim| claim.header.as_str()))
        .collect();
    Decision::Allow {
        set: Vec::new(),
        remove: remove.into_iter().map(str::to_owned).collect(),
        left_out: 0,
    }
}
