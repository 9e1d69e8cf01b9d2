//! The `WWW-Authenticate` value of a refusal (RFC 6750 section 3), every quoted value made safe:
//! a sentence or scope with a character the grammar does not allow cannot break the header.

/// Why a request is challenged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge<'a> {
    /// No token at all: the realm only, no error code (section 3.1).
    NoToken,
    /// A malformed credential, with the sentence why (`invalid_request`).
    InvalidRequest(&'a str),
    /// A token refused, with the sentence why (`invalid_token`).
    InvalidToken(&'a str),
    /// A valid token without a required scope (`insufficient_scope`), with the scopes required.
    InsufficientScope(&'a str),
}

/// A DPoP challenge (RFC 9449 section 7.1) for `realm`: the algorithms `algs` proofs may use,
/// and the error (`invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`) with the sentence
/// why.
pub fn dpop_challenge(realm: &str, algs: &str, error: &str, reason: &str) -> String {
    format!(
        "DPoP realm=\"{}\", error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
        quoted_string(realm),
        description(reason),
        scope_text(algs)
    )
}

/// The header's value for `realm` and `why`.
pub fn challenge(realm: &str, why: &Challenge<'_>) -> String {
    let realm = quoted_string(realm);
    match why {
        Challenge::NoToken => format!("Bearer realm=\"{realm}\""),
        Challenge::InvalidRequest(reason) => format!(
            "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
            description(reason)
        ),
        Challenge::InvalidToken(reason) => format!(
            "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
            description(reason)
        ),
        Challenge::InsufficientScope(scope) => format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
            scope_text(scope)
        ),
    }
}

/// A quoted-string's content (RFC 9110 section 5.6.4): `"` and `\` escaped, anything that is
/// not visible ASCII or a space replaced by `?`.
fn quoted_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// `error_description` allows %x20-21 / %x23-5B / %x5D-7E (no `"`, no `\`): others become `'`
/// (quotes) or `?`.
fn description(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// `scope` is scope-tokens (%x21 / %x23-5B / %x5D-7E) joined by spaces: others are left out.
fn scope_text(text: &str) -> String {
    text.chars()
        .filter(|&c| c == ' ' || (('!'..='~').contains(&c) && c != '"' && c != '\\'))
        .collect()
}
