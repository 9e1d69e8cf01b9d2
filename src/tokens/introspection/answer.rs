//! What an introspection answer (RFC 7662 section 2.2) says, judged as a JWT's claims are: not
//! active, or active and then held to the provider's rules (audience, expiry, not-before,
//! issuer), its members kept as the token's claims.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::quote::quoted;
use crate::tokens::claims::{self, Rules};
use crate::tokens::{Refusal, ValidToken, Verdict};

/// What a provider's answer came to, as this server judges it.
#[derive(Debug)]
pub(in crate::tokens) enum Introspected {
    /// Active, and within this server's rules.
    Active(Arc<ValidToken>),
    /// Not active, or active but refused here (another audience, expired, ...).
    Refused(Refusal),
}

/// Judges the members of `issuer`'s answer at `now`; or why they are not an RFC 7662 answer
/// (`active` missing, or not a boolean: the provider cannot be understood, so it cannot judge).
pub(super) fn judge(
    mut answer: Map<String, Value>,
    issuer: &str,
    rules: &Rules,
    now: i64,
) -> Result<Introspected, String> {
    match answer.remove("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Introspected::Refused(inactive(issuer))),
        Some(other) => {
            return Err(format!(
                "its answer's active member is {}, not true or false",
                kind(&other)
            ))
        }
        None => return Err("its answer has no active member".to_owned()),
    }
    // Ory Hydra says what a token is; another kind of token is not an access token.
    if let Some(used) = answer.get("token_use") {
        if used.as_str() != Some("access_token") {
            return Ok(Introspected::Refused(Refusal::new(
                Verdict::Malformed,
                format!(
                    "{issuer} says the token is a {}, not an access token",
                    used.as_str().map_or_else(|| kind(used).to_owned(), quoted)
                ),
            )));
        }
    }
    Ok(
        match claims::check_introspected(answer, issuer, rules, now) {
            Ok(valid) => Introspected::Active(Arc::new(valid)),
            Err(refusal) => Introspected::Refused(refusal),
        },
    )
}

/// The refusal of a token its provider says is not active.
pub(in crate::tokens) fn inactive(issuer: &str) -> Refusal {
    Refusal::new(
        Verdict::Inactive,
        format!("{issuer} says the token is not active (unknown to it, expired or revoked there)"),
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://id.example";
    const NOW: i64 = 1_800_000_000;

    fn judged(answer: Value) -> Result<Introspected, String> {
        let Value::Object(members) = answer else {
            panic!("an object")
        };
        let rules = Rules {
            audiences: vec!["api".to_owned()],
            leeway: 30,
        };
        judge(members, ISSUER, &rules, NOW)
    }

    fn refused(answer: Value) -> Refusal {
        match judged(answer) {
            Ok(Introspected::Refused(refusal)) => refusal,
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn an_active_answer_is_a_valid_token_with_every_member_but_active() {
        let answer = json!({
            "active": true, "sub": "u-1", "scope": "read write", "aud": ["api", "x"],
            "client_id": "app", "exp": NOW + 60, "iat": NOW, "jti": "j-1", "groups": ["ops"]
        });
        let Ok(Introspected::Active(valid)) = judged(answer) else {
            panic!("active")
        };
        assert_eq!(valid.subject, "u-1");
        assert_eq!(valid.issuer, ISSUER, "a provider need not send iss");
        assert_eq!(valid.scopes, ["read", "write"]);
        assert_eq!(valid.token_id, "j-1");
        assert_eq!(valid.expires_at, NOW + 60);
        assert_eq!(valid.claims["client_id"], "app");
        assert!(!valid.claims.contains_key("active"));
    }

    #[test]
    fn an_answer_without_exp_is_valid_with_expires_at_zero() {
        let Ok(Introspected::Active(valid)) = judged(json!({"active": true, "aud": "api"})) else {
            panic!("active")
        };
        assert_eq!(valid.expires_at, 0);
    }

    #[test]
    fn inactive_another_audience_issuer_or_an_expired_answer_is_refused() {
        assert_eq!(refused(json!({"active": false})).verdict, Verdict::Inactive);
        let other = refused(json!({"active": true, "aud": "billing"}));
        assert_eq!(other.verdict, Verdict::WrongAudience);
        let elsewhere = refused(json!({"active": true, "aud": "api", "iss": "https://x"}));
        assert_eq!(elsewhere.verdict, Verdict::WrongIssuer);
        let old = refused(json!({"active": true, "aud": "api", "exp": NOW - 31}));
        assert_eq!(old.verdict, Verdict::Expired);
        let refresh = refused(json!({"active": true, "aud": "api", "token_use": "refresh_token"}));
        assert_eq!(refresh.verdict, Verdict::Malformed);
    }

    #[test]
    fn active_that_is_not_a_boolean_is_not_an_answer() {
        for answer in [
            json!({"active": "true"}),
            json!({"active": 1}),
            json!({"sub": "x"}),
        ] {
            assert!(judged(answer.clone()).is_err(), "{answer}");
        }
    }
}
