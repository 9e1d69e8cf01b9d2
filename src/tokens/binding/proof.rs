//! A DPoP proof (RFC 9449 section 4.3), checked: one compact JWS of `typ` `dpop+jwt`, signed
//! with an allowed asymmetric algorithm by the public key in its own `jwk` header, for this
//! request's method (`htm`) and URL (`htu`), made recently (`iat`), for this token (`ath`), by the
//! key the token is bound to (`jkt`). What remains for the caller: the replay of its `jti` and its
//! nonce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::htu;
use crate::quote::quoted;
use crate::tokens::jws::{decode_json_object, is_compact};
use crate::tokens::keys::{signing_key, KeyType};
use crate::tokens::{Refusal, Verdict};

/// Proofs longer than this are refused unread: one with an RSA 4096 key is under 2 KiB.
pub const MAX_PROOF_BYTES: usize = 8192;

/// `jti` values longer than this are refused: RFC 9449 asks for 96 bits of randomness, a few
/// dozen characters.
const MAX_JTI_BYTES: usize = 256;

/// JWK members that hold a private key (RFC 7518 section 6): a proof carrying one is refused,
/// since its client has published its key.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof whose signature, method, URL, time and token hold.
#[derive(Debug)]
pub struct Proof {
    /// The RFC 7638 thumbprint of its key (SHA-256, base64url): what `cnf.jkt` names.
    pub jkt: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`, Unix seconds.
    pub iat: i64,
    /// Its `nonce`, when it has one.
    pub nonce: Option<String>,
}

/// What a proof is checked against.
pub struct Expected<'a> {
    /// The algorithms a proof may be signed with.
    pub algorithms: &'a [Algorithm],
    /// The request's method.
    pub method: &'a str,
    /// The request's URL, normalized ([`htu::normalize`]), or why it is not known.
    pub url: Result<&'a str, &'a str>,
    /// The SHA-256 of the access token, which `ath` must name.
    pub token_hash: &'a [u8; 32],
    /// The thumbprint of the key the token is bound to (`cnf.jkt`), which the proof's key must
    /// have: checked before the signature, so that no key but the bound one (of the size its
    /// provider accepted) costs a verification.
    pub jkt: &'a str,
    /// Now, and how far `iat` may be from it, in seconds.
    pub now: i64,
    pub window: i64,
}

pub(super) fn refused(reason: impl Into<String>) -> Refusal {
    Refusal::new(Verdict::InvalidDpopProof, reason)
}

/// Checks `proof` against `expected`.
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<Proof, Refusal> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(refused(format!(
            "the DPoP proof is {} bytes long; the limit is {MAX_PROOF_BYTES}",
            proof.len()
        )));
    }
    if !is_compact(proof) {
        return Err(refused(
            "the DPoP proof is not a JWS in compact form (three base64url parts)",
        ));
    }
    let mut parts = proof.splitn(3, '.');
    let (header, payload, signature) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s)) => (h, p, s),
        _ => return Err(refused("the DPoP proof is not a JWS in compact form")),
    };
    let header = decode_json_object(header)
        .map_err(|why| refused(format!("the DPoP proof's header {why}")))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(refused("the DPoP proof's typ is not dpop+jwt"));
    }
    if header.contains_key("crit") {
        return Err(refused(
            "the DPoP proof marks extensions critical (crit) that this server does not implement",
        ));
    }
    let alg = algorithm(&header, expected.algorithms)?;
    let jwk = match header.get("jwk") {
        Some(Value::Object(jwk)) => jwk,
        Some(_) => return Err(refused("the DPoP proof's jwk is not a JSON object")),
        None => {
            return Err(refused(
                "the DPoP proof's header has no jwk (its public key)",
            ))
        }
    };
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(refused(format!(
            "the DPoP proof's jwk holds a private key (member {private}): the key is no longer \
             the client's own; make a new one and send only its public part"
        )));
    }
    let key = match signing_key(jwk) {
        Ok(Some(key)) => key,
        Ok(None) => return Err(refused("the DPoP proof's jwk is not a signing key")),
        Err(why) => return Err(refused(format!("the DPoP proof's jwk: {why}"))),
    };
    if !key.algorithms.contains(&alg) {
        return Err(refused(format!(
            "the DPoP proof's jwk is {}, which cannot sign {alg:?}",
            key.key_type
        )));
    }
    let jkt = thumbprint(jwk, key.key_type);
    if jkt != expected.jkt {
        return Err(refused(
            "the DPoP proof is signed by another key than the one the token is bound to \
             (cnf.jkt)",
        ));
    }
    let claims = decode_json_object(payload)
        .map_err(|why| refused(format!("the DPoP proof's payload {why}")))?;
    let read = Claims::read(&claims)?;
    read.check(expected)?;
    let signing_input = &proof[..proof.len() - signature.len() - 1];
    match jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &key.decoding, alg) {
        Ok(true) => {}
        _ => {
            return Err(refused(
                "the DPoP proof's signature does not verify with its jwk",
            ))
        }
    }
    Ok(Proof {
        jkt,
        jti: read.jti.to_owned(),
        iat: read.iat,
        nonce: read.nonce.map(str::to_owned),
    })
}

/// The algorithm the proof names, if it is one of `allowed`.
fn algorithm(header: &Map<String, Value>, allowed: &[Algorithm]) -> Result<Algorithm, Refusal> {
    let names = || super::algorithm_names(allowed);
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(refused("the DPoP proof's header names no algorithm (alg)")),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(refused(format!(
            "the DPoP proof is unsigned (alg none); sign it with one of {}",
            names()
        )));
    }
    if alg.starts_with("HS") {
        return Err(refused(format!(
            "the DPoP proof is signed with a shared secret ({alg}); sign it with one of {}",
            names()
        )));
    }
    allowed
        .iter()
        .copied()
        .find(|a| super::algorithm_name(*a) == alg)
        .ok_or_else(|| {
            refused(format!(
                "the DPoP proof's algorithm {} is not accepted; accepted: {}",
                quoted(alg),
                names()
            ))
        })
}

/// The claims of a proof, read.
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    ath: Option<&'a str>,
    nonce: Option<&'a str>,
}

impl<'a> Claims<'a> {
    fn read(claims: &'a Map<String, Value>) -> Result<Self, Refusal> {
        let text = |name: &str| -> Result<&'a str, Refusal> {
            match claims.get(name) {
                Some(Value::String(value)) => Ok(value.as_str()),
                Some(_) => Err(refused(format!("the DPoP proof's {name} is not a string"))),
                None => Err(refused(format!("the DPoP proof has no {name}"))),
            }
        };
        let optional = |name: &str| -> Result<Option<&'a str>, Refusal> {
            match claims.get(name) {
                None => Ok(None),
                Some(_) => text(name).map(Some),
            }
        };
        let jti = text("jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
            return Err(refused(format!(
                "the DPoP proof's jti is {} bytes long: 1 to {MAX_JTI_BYTES}",
                jti.len()
            )));
        }
        let iat = match claims.get("iat") {
            // Whole seconds; a fraction is cut off, a number past i64 refused.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.abs() < 1e15).map(|f| f as i64))
                .ok_or_else(|| refused("the DPoP proof's iat is not a time in seconds"))?,
            Some(_) => return Err(refused("the DPoP proof's iat is not a number")),
            None => return Err(refused("the DPoP proof has no iat")),
        };
        Ok(Self {
            jti,
            htm: text("htm")?,
            htu: text("htu")?,
            iat,
            ath: optional("ath")?,
            nonce: optional("nonce")?,
        })
    }

    fn check(&self, expected: &Expected<'_>) -> Result<(), Refusal> {
        if self.htm != expected.method {
            return Err(refused(format!(
                "the DPoP proof is for method {} (htm), not this request's {}",
                quoted(self.htm),
                quoted(expected.method)
            )));
        }
        let url = expected.url.map_err(|why| {
            refused(format!(
                "the request's URL, which htu must name, is not known: {why}"
            ))
        })?;
        if self.htu.contains(['?', '#']) {
            return Err(refused(
                "the DPoP proof's htu has a query or fragment; it names the URL without them \
                 (RFC 9449 section 4.2)",
            ));
        }
        let htu = htu::normalize(self.htu)
            .map_err(|why| refused(format!("the DPoP proof's htu is not an http(s) URL: {why}")))?;
        if htu != url {
            return Err(refused(format!(
                "the DPoP proof is for {} (htu), not this request's URL {}",
                quoted(&htu),
                quoted(url)
            )));
        }
        let age = expected.now.saturating_sub(self.iat);
        if age > expected.window {
            return Err(refused(format!(
                "the DPoP proof was made {age} s ago (iat); it is accepted for {} s: make a new one",
                expected.window
            )));
        }
        if age < -expected.window {
            return Err(refused(format!(
                "the DPoP proof is made {} s in the future (iat); check the client's clock",
                age.unsigned_abs()
            )));
        }
        let ath = self
            .ath
            .ok_or_else(|| refused("the DPoP proof has no ath (the hash of the access token)"))?;
        if ath != URL_SAFE_NO_PAD.encode(expected.token_hash) {
            return Err(refused(
                "the DPoP proof is for another access token (its ath is not this token's hash)",
            ));
        }
        Ok(())
    }
}

/// The RFC 7638 thumbprint of `jwk`: the SHA-256 of its required members, in lexical order,
/// without spaces; base64url.
pub fn thumbprint(jwk: &Map<String, Value>, key_type: KeyType) -> String {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or_default();
    // serde_json escapes as RFC 7638 requires (the values are base64url and names anyway).
    let text = |value: &str| Value::String(value.to_owned()).to_string();
    let canonical = match key_type {
        KeyType::Rsa(_) => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            text(member("e")),
            text(member("n"))
        ),
        KeyType::P256 | KeyType::P384 => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            text(member("crv")),
            text(member("x")),
            text(member("y"))
        ),
        KeyType::Ed25519 => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            text(member("crv")),
            text(member("x"))
        ),
    };
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn expected(token_hash: &[u8; 32]) -> Expected<'_> {
        Expected {
            algorithms: &[Algorithm::ES256],
            method: "GET",
            url: Ok("https://a.example/"),
            token_hash,
            jkt: "",
            now: 1_800_000_000,
            window: 60,
        }
    }

    #[test]
    fn times_at_either_end_of_the_range_are_refused_without_overflow() {
        let hash = [0u8; 32];
        let ath = URL_SAFE_NO_PAD.encode(hash);
        for iat in [
            json!(i64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!(-1e300),
            json!(0.5),
        ] {
            let claims = json!({"jti": "j", "htm": "GET", "htu": "https://a.example/",
                "iat": iat, "ath": ath});
            let claims = claims.as_object().expect("an object").clone();
            let refused = Claims::read(&claims).and_then(|read| read.check(&expected(&hash)));
            let refusal = refused.expect_err("far from now");
            assert_eq!(refusal.verdict, Verdict::InvalidDpopProof, "{iat}");
        }
    }
}
