//! A token's three parts (RFC 7515 compact serialization) and what its header asks for: the
//! algorithm and the key. Nothing here trusts the token; the signature is checked elsewhere.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::json::{self, JsonError};
use super::{Refusal, Verdict, MAX_TOKEN_BYTES};
use crate::quote::quoted;

/// Whether `token` has the shape of a compact JWS (three parts): such a token is read as a JWT;
/// any other may be an opaque token to introspect.
pub(super) fn is_compact(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The algorithms this server verifies: public-key signatures only.
pub(super) const SUPPORTED: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// A token split into its parts, with its header read.
#[derive(Debug)]
pub(super) struct Jws<'a> {
    /// The algorithm the header names.
    pub alg: Algorithm,
    /// The key id the header names, if any.
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The payload, base64url.
    pub payload: &'a str,
    /// The signature, base64url.
    pub signature: &'a str,
}

fn malformed(reason: impl Into<String>) -> Refusal {
    Refusal::new(Verdict::Malformed, reason)
}

/// Splits `token` and reads its header; refuses what is not a signed JWS this server could
/// verify.
pub(super) fn parse(token: &str) -> Result<Jws<'_>, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(too_long(token.len()));
    }
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    // `get`, not indexing: the seventh byte may fall inside a character.
    if token
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
    {
        return Err(malformed(
            "the token starts with `Bearer `: send the JWS alone, without the HTTP scheme",
        ));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(malformed(if parts.len() == 5 {
            "the token is an encrypted JWE; only signed tokens (JWS) are validated".to_owned()
        } else {
            format!(
                "the token is not a JWS: expected three base64url parts separated by dots, found {}",
                parts.len()
            )
        }));
    };
    let header =
        decode_json_object(header).map_err(|why| malformed(format!("the token's header {why}")))?;
    if header.contains_key("crit") {
        return Err(malformed(
            "the token's header marks extensions critical (crit) that this server does not implement",
        ));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => algorithm(alg)?,
        Some(_) => {
            return Err(malformed(
                "the token's header has an alg that is not a string",
            ))
        }
        None => return Err(malformed("the token's header names no algorithm (alg)")),
    };
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(malformed(
                "the token's header has a kid that is not a string",
            ))
        }
    };
    Ok(Jws {
        alg,
        kid,
        signing_input: &token[..header_len(token) + 1 + payload.len()],
        payload,
        signature,
    })
}

/// The refusal of a token of `len` bytes, over [`MAX_TOKEN_BYTES`].
pub fn too_long(len: usize) -> Refusal {
    malformed(format!(
        "the token is {len} bytes long; the limit is {MAX_TOKEN_BYTES} bytes"
    ))
}

fn header_len(token: &str) -> usize {
    token.find('.').expect("a token with three parts has a dot")
}

/// The algorithm the header names, if this server verifies it.
fn algorithm(alg: &str) -> Result<Algorithm, Refusal> {
    let unsupported = |why: String| Refusal::new(Verdict::UnsupportedAlgorithm, why);
    match alg {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        none if none.eq_ignore_ascii_case("none") => Err(unsupported(
            "the token is unsigned (alg none); unsigned tokens are never valid".to_owned(),
        )),
        "HS256" | "HS384" | "HS512" => Err(unsupported(format!(
            "the algorithm {alg} signs with a shared secret; this server accepts only \
             public-key signatures ({SUPPORTED})"
        ))),
        other => Err(unsupported(format!(
            "the algorithm {} is not supported; supported: {SUPPORTED}",
            quoted(other)
        ))),
    }
}

/// Decodes a base64url part holding a JSON object; on failure, what is wrong with it (its
/// `Display` follows the part's name: "the token's header is not valid JSON").
pub(super) fn decode_json_object(part: &str) -> Result<Map<String, Value>, PartError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| PartError::NotBase64Url)?;
    // serde_json refuses nesting deeper than 128, so a deeply nested part is refused here too.
    match json::parse(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(PartError::NotAnObject),
        Err(JsonError::Invalid) => Err(PartError::NotJson),
        Err(JsonError::Duplicate(name)) => Err(PartError::DuplicateMember(name)),
    }
}

/// What is wrong with a part of a JWS that should hold a JSON object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PartError {
    NotBase64Url,
    NotJson,
    NotAnObject,
    /// A member named more than once (RFC 7515 section 5.2 lets a parser refuse it).
    DuplicateMember(String),
}

impl std::fmt::Display for PartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotBase64Url => f.write_str("is not base64url (RFC 4648, without padding)"),
            Self::NotJson => f.write_str("is not valid JSON"),
            Self::NotAnObject => f.write_str("is not a JSON object"),
            Self::DuplicateMember(name) => write!(
                f,
                "names the member {} more than once; each name may appear once",
                quoted(name)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    fn refusal(token: &str) -> Refusal {
        parse(token).expect_err("refused")
    }

    #[test]
    fn a_well_formed_token_is_split_and_its_header_read() {
        let token = token(r#"{"alg":"ES256","kid":"k1"}"#, "{}");
        let jws = parse(&token).expect("parses");
        assert_eq!(jws.alg, Algorithm::ES256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.signature, "c2ln");
        assert_eq!(
            format!("{}.{}", jws.signing_input, jws.signature),
            token,
            "the signing input is header.payload"
        );
    }

    #[test]
    fn shapes_that_are_not_a_jws_are_malformed_with_a_reason() {
        for (bad, reason) in [
            ("", "empty"),
            ("abc", "found 1"),
            ("a.b.c.d.e", "JWE"),
            ("!!.e30.c2ln", "not base64url"),
            ("W10.e30.c2ln", "not a JSON object"),
            ("e30.e30.c2ln", "no algorithm"),
            ("Bearer a.b.c", "Bearer"),
            // A character across the seventh byte, where the scheme would end.
            ("Bearé.x.y", "not base64url"),
        ] {
            let refused = refusal(bad);
            assert_eq!(refused.verdict, Verdict::Malformed, "{bad}");
            assert!(refused.reason.contains(reason), "{bad}: {refused:?}");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(refusal(&long).reason.contains("limit is 8192 bytes"));
    }

    #[test]
    fn unsigned_secret_and_unknown_algorithms_are_refused() {
        for alg in ["none", "NONE", "HS256", "ES512", "RSA-OAEP"] {
            let refused = refusal(&token(&format!(r#"{{"alg":"{alg}"}}"#), "{}"));
            assert_eq!(refused.verdict, Verdict::UnsupportedAlgorithm, "{alg}");
        }
    }

    #[test]
    fn a_header_that_names_a_member_twice_is_refused_whichever_comes_last() {
        for header in [
            r#"{"alg":"none","alg":"ES256"}"#,
            r#"{"alg":"ES256","alg":"none"}"#,
            r#"{"alg":"ES256","kid":"a","kid":"b"}"#,
        ] {
            let refused = refusal(&token(header, "{}"));
            assert_eq!(refused.verdict, Verdict::Malformed, "{header}");
            assert!(refused.reason.contains("more than once"), "{refused:?}");
        }
    }

    #[test]
    fn critical_extensions_are_refused() {
        let refused = refusal(&token(
            r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
            "{}",
        ));
        assert_eq!(refused.verdict, Verdict::Malformed);
    }

    #[test]
    fn deeply_nested_headers_are_refused_not_overflowed() {
        let deep = format!(
            r#"{{"alg":"RS256","x":{}{}}}"#,
            "[".repeat(1000),
            "]".repeat(1000)
        );
        assert_eq!(refusal(&token(&deep, "{}")).verdict, Verdict::Malformed);
    }
}
