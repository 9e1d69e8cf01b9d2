//! The token of a request: the `Authorization` header's Bearer credential (RFC 6750 section
//! 2.1: `Bearer` then one or more spaces then the token; the scheme is case-insensitive, as
//! RFC 9110 section 11.1 says of every scheme).

/// The Bearer token of an `Authorization` header value, or None when it carries none (another
/// scheme, no credential, or characters a token cannot have).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    valid.then_some(token)
}
