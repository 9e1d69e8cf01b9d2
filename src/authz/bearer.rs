//! The token of a request: the `Authorization` header's Bearer credential (RFC 6750 section
//! 2.1: `Bearer` then one or more spaces then the token; the scheme is case-insensitive, as
//! RFC 9110 section 11.1 says of every scheme), or its DPoP one (RFC 9449 section 7.1: `DPoP`
//! and the token, of the same characters).

/// What a request's `Authorization` headers carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// One Bearer token.
    Bearer(&'a str),
    /// One token with the DPoP scheme: its proof is in the request's `DPoP` header.
    Dpop(&'a str),
    /// No Bearer credential: no header, or another scheme (the client may not know it needs one).
    Absent,
    /// A Bearer credential that cannot be a token, or several headers: the request is malformed
    /// (RFC 6750 section 3.1, `invalid_request`); the sentence says how.
    Malformed(&'static str),
}

/// The credential of a request whose `Authorization` headers have these values, as sent.
pub fn credential<'a>(authorization: &[&'a [u8]]) -> Credential<'a> {
    match authorization {
        [] => Credential::Absent,
        [value] => match std::str::from_utf8(value) {
            Ok(value) => bearer_credential(value),
            Err(_) => Credential::Malformed("the Authorization header is not ASCII text"),
        },
        _ => Credential::Malformed("the request has several Authorization headers; send one"),
    }
}

fn bearer_credential(authorization: &str) -> Credential<'_> {
    let value = authorization.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let dpop = scheme.eq_ignore_ascii_case("dpop");
    if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::Absent;
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Credential::Malformed(if dpop {
            "the DPoP credential has no token"
        } else {
            "the Bearer credential has no token"
        });
    }
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !valid {
        Credential::Malformed(if dpop {
            "the DPoP token has characters a token cannot have (RFC 9449 section 7.1)"
        } else {
            "the Bearer token has characters a token cannot have (RFC 6750 section 2.1)"
        })
    } else if dpop {
        Credential::Dpop(token)
    } else {
        Credential::Bearer(token)
    }
}

impl Credential<'_> {
    /// Whether the token came with the DPoP scheme.
    pub fn is_dpop(&self) -> bool {
        matches!(self, Self::Dpop(_))
    }
}
