//! A token's claims: the issuer they name (which picks the provider whose keys may verify the
//! token), then, once the signature has verified, the checks of expiry, not-before and audience
//! (RFC 7519), and what a valid token says about its bearer.

use serde_json::{Map, Value};

use super::jws::decode_json_object;
use super::{Refusal, ValidToken, Verdict};
use crate::quote::quoted;
use crate::time::rfc3339;

/// What a provider's tokens' claims must satisfy (their issuer is the provider's).
#[derive(Clone, Debug)]
pub(super) struct Rules {
    /// Accepted `aud` values; when there are any, a token must name one of them.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway: i64,
}

fn malformed(reason: impl Into<String>) -> Refusal {
    Refusal::new(Verdict::Malformed, reason)
}

/// Reads the claims of `payload` (base64url JSON), not yet trusted.
pub(super) fn read(payload: &str) -> Result<Map<String, Value>, Refusal> {
    decode_json_object(payload).map_err(|why| malformed(format!("the token's claims {why}")))
}

/// The issuer (`iss`) the claims name: a token without one is never valid.
pub(super) fn issuer(claims: &Map<String, Value>) -> Result<&str, Refusal> {
    match claims.get("iss") {
        Some(Value::String(issuer)) => Ok(issuer),
        None => Err(Refusal::new(
            Verdict::WrongIssuer,
            "the token names no issuer (iss)",
        )),
        Some(_) => Err(malformed("the token's iss claim is not a string")),
    }
}

/// The refusal of a token whose issuer no provider has.
pub(super) fn unknown_issuer(issuer: &str) -> Refusal {
    Refusal::new(
        Verdict::WrongIssuer,
        format!(
            "the issuer {} is not one this server accepts",
            quoted(issuer)
        ),
    )
}

/// Checks verified `claims` against `rules` at `now`; the valid token keeps them all.
pub(super) fn check(
    claims: Map<String, Value>,
    rules: &Rules,
    now: i64,
) -> Result<ValidToken, Refusal> {
    if numeric_date(&claims, "exp")?.is_none() {
        return Err(malformed(
            "the token has no expiry (exp); tokens without one are never valid",
        ));
    }
    let issuer = issuer(&claims)?.to_owned();
    check_for(claims, issuer, rules, now)
}

/// Checks the members of `issuer`'s active introspection answer as claims: `exp` is optional
/// there (RFC 7662 section 2.2; `expires_at` is 0 without it), and `iss`, when present, must
/// be the provider's.
pub(super) fn check_introspected(
    claims: Map<String, Value>,
    issuer: &str,
    rules: &Rules,
    now: i64,
) -> Result<ValidToken, Refusal> {
    match claims.get("iss") {
        None => {}
        Some(Value::String(named)) if named == issuer => {}
        Some(Value::String(named)) => {
            return Err(Refusal::new(
                Verdict::WrongIssuer,
                format!(
                    "the introspection answer of {issuer} names the issuer {}",
                    quoted(named)
                ),
            ))
        }
        Some(_) => return Err(malformed("the token's iss claim is not a string")),
    }
    check_for(claims, issuer.to_owned(), rules, now)
}

fn check_for(
    claims: Map<String, Value>,
    issuer: String,
    rules: &Rules,
    now: i64,
) -> Result<ValidToken, Refusal> {
    let expires_at = numeric_date(&claims, "exp")?.unwrap_or(0);
    let not_before = numeric_date(&claims, "nbf")?;
    // Not checked against the clock (RFC 7519 leaves that to the application), but a claim of
    // the wrong type is a token some other reader would read differently.
    numeric_date(&claims, "iat")?;
    let mut valid = ValidToken {
        subject: registered_string(&claims, "sub")?.unwrap_or_default(),
        audience: strings(&claims, "aud", Null::Refused)?,
        expires_at,
        scopes: scopes(&claims)?,
        token_id: registered_string(&claims, "jti")?.unwrap_or_default(),
        issuer,
        claims: Map::new(),
        encoded_claims: std::sync::OnceLock::new(),
    };

    if claims.contains_key("exp") && now > expires_at.saturating_add(rules.leeway) {
        return Err(expired(expires_at));
    }
    if let Some(not_before) = not_before {
        if not_before > now.saturating_add(rules.leeway) {
            return Err(Refusal::new(
                Verdict::NotYetValid,
                format!("the token is not valid before {}", rfc3339(not_before)),
            ));
        }
    }
    if !rules.audiences.is_empty() && !valid.audience.iter().any(|a| rules.audiences.contains(a)) {
        let reason = if valid.audience.is_empty() {
            "the token names no audience (aud), and this server accepts only its own".to_owned()
        } else {
            let named: Vec<String> = valid.audience.iter().take(5).map(|a| quoted(a)).collect();
            format!(
                "the token is meant for {}, none of which this server accepts",
                named.join(", ")
            )
        };
        return Err(Refusal::new(Verdict::WrongAudience, reason));
    }
    valid.claims = claims;
    Ok(valid)
}

/// The refusal of a token that expired at `expires_at`.
pub(super) fn expired(expires_at: i64) -> Refusal {
    Refusal::new(
        Verdict::Expired,
        format!("the token expired at {}", rfc3339(expires_at)),
    )
}

/// A NumericDate claim: seconds since the epoch, possibly fractional (RFC 7519 section 2).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let seconds = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    };
    match seconds {
        Some(seconds) => Ok(Some(seconds)),
        None => Err(malformed(format!(
            "the token's {name} claim is not a number of seconds since 1970"
        ))),
    }
}

/// A registered claim that is a string when present (`sub`, `jti`); null is not a string.
fn registered_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed(format!(
            "the token's {name} claim is not a string"
        ))),
    }
}

/// Whether a claim that is null counts as absent: not for registered claims (RFC 7519 gives
/// each a type, and null is none of them), as some identity providers write other claims.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Null {
    Absent,
    Refused,
}

/// A claim that is a string or a list of strings, as `aud` may be.
fn strings(claims: &Map<String, Value>, name: &str, null: Null) -> Result<Vec<String>, Refusal> {
    let not_strings = || {
        malformed(format!(
            "the token's {name} claim is neither a string nor a list of strings"
        ))
    };
    match claims.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Null) if null == Null::Absent => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_strings))
            .collect(),
        Some(_) => Err(not_strings()),
    }
}

/// `scope` (RFC 8693: space separated) or, failing that, `scp` (a list in most identity
/// providers, space separated in some).
fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, Refusal> {
    for name in ["scope", "scp"] {
        let found = strings(claims, name, Null::Absent)?;
        if !found.is_empty() {
            return Ok(found
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect());
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    const NOW: i64 = 1_795_600_800;

    fn rules() -> Rules {
        Rules {
            audiences: vec!["api".into()],
            leeway: 30,
        }
    }

    fn check_json(json: &str) -> Result<ValidToken, Refusal> {
        check(read(&URL_SAFE_NO_PAD.encode(json))?, &rules(), NOW)
    }

    fn verdict(json: &str) -> Verdict {
        match check_json(json) {
            Ok(_) => Verdict::Valid,
            Err(refusal) => refusal.verdict,
        }
    }

    #[test]
    fn a_valid_token_says_whose_it_is() {
        let valid = check_json(&format!(
            r#"{{"iss":"https://id.example","sub":"alice","aud":["web","api"],"exp":{},
                "scope":"read write","jti":"t1"}}"#,
            NOW + 60
        ))
        .expect("valid");
        assert_eq!(
            valid,
            ValidToken {
                subject: "alice".into(),
                issuer: "https://id.example".into(),
                audience: vec!["web".into(), "api".into()],
                expires_at: NOW + 60,
                scopes: vec!["read".into(), "write".into()],
                token_id: "t1".into(),
                claims: valid.claims.clone(),
                encoded_claims: std::sync::OnceLock::new(),
            }
        );
        assert_eq!(valid.claims.len(), 6, "every claim is kept");
        assert_eq!(valid.claims["scope"], "read write");
    }

    #[test]
    fn scp_as_a_list_or_a_string_gives_the_scopes() {
        for scp in [r#"["read","write"]"#, r#""read write""#] {
            let valid = check_json(&format!(
                r#"{{"iss":"https://id.example","aud":"api","exp":{},"scp":{scp}}}"#,
                NOW + 60
            ))
            .expect("valid");
            assert_eq!(valid.scopes, ["read", "write"]);
        }
    }

    #[test]
    fn expiry_and_not_before_allow_the_leeway_and_no_more() {
        let base = r#""iss":"https://id.example","aud":"api""#;
        assert_eq!(
            verdict(&format!("{{{base},\"exp\":{}}}", NOW - 30)),
            Verdict::Valid
        );
        assert_eq!(
            verdict(&format!("{{{base},\"exp\":{}}}", NOW - 31)),
            Verdict::Expired
        );
        assert_eq!(
            verdict(&format!(
                "{{{base},\"exp\":{},\"nbf\":{}}}",
                NOW + 99,
                NOW + 30
            )),
            Verdict::Valid
        );
        assert_eq!(
            verdict(&format!(
                "{{{base},\"exp\":{},\"nbf\":{}}}",
                NOW + 99,
                NOW + 31
            )),
            Verdict::NotYetValid
        );
        let refused = check_json(&format!("{{{base},\"exp\":{}}}", NOW - 3600)).expect_err("old");
        assert_eq!(refused.reason, "the token expired at 2026-11-25T09:00:00Z");
    }

    #[test]
    fn missing_or_mistyped_claims_are_malformed() {
        for json in [
            r#"{"iss":"https://id.example","aud":"api"}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":"tomorrow"}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":1e400}"#,
            r#"{"iss":7,"aud":"api","exp":9999999999}"#,
            r#"{"iss":"https://id.example","aud":[1],"exp":9999999999}"#,
            r#"["not","an","object"]"#,
            // Every registered claim of the wrong type, null included.
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"iat":"x"}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"iat":null}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"nbf":[1]}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":null}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"sub":7}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"sub":null}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"jti":{}}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"jti":null}"#,
            r#"{"iss":"https://id.example","aud":null,"exp":9999999999}"#,
            r#"{"iss":null,"aud":"api","exp":9999999999}"#,
            // A claim named twice, at the top or deeper.
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"sub":"a","sub":"b"}"#,
            r#"{"iss":"https://id.example","aud":"api","exp":9999999999,"r":{"x":1,"x":2}}"#,
        ] {
            assert_eq!(verdict(json), Verdict::Malformed, "{json}");
        }
    }

    #[test]
    fn claims_that_are_not_registered_may_be_null_and_iat_may_be_fractional() {
        let valid = check_json(&format!(
            r#"{{"iss":"https://id.example","aud":"api","exp":{},"iat":{}.5,"scope":null,
                "email":null}}"#,
            NOW + 60,
            NOW
        ))
        .expect("valid");
        assert!(valid.scopes.is_empty());
        assert_eq!(
            valid.claims["email"],
            Value::Null,
            "kept as the token has it"
        );
    }

    #[test]
    fn a_token_names_its_issuer_and_an_accepted_audience() {
        let exp = NOW + 60;
        assert_eq!(
            verdict(&format!(r#"{{"aud":"api","exp":{exp}}}"#)),
            Verdict::WrongIssuer
        );
        assert_eq!(
            verdict(&format!(
                r#"{{"iss":"https://id.example","aud":"other","exp":{exp}}}"#
            )),
            Verdict::WrongAudience
        );
        assert_eq!(
            verdict(&format!(r#"{{"iss":"https://id.example","exp":{exp}}}"#)),
            Verdict::WrongAudience
        );
    }

    #[test]
    fn without_accepted_audiences_any_audience_is_fine() {
        let rules = Rules {
            audiences: Vec::new(),
            ..rules()
        };
        let json = format!(r#"{{"iss":"https://id.example","exp":{}}}"#, NOW + 60);
        let claims = read(&URL_SAFE_NO_PAD.encode(json)).expect("JSON");
        assert!(check(claims, &rules, NOW).is_ok());
    }
}
