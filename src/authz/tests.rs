use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::tokens::{Refusal, ValidToken};

fn token(claims: serde_json::Value) -> Arc<ValidToken> {
    let claims = claims.as_object().expect("an object").clone();
    Arc::new(ValidToken {
        subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
        issuer: "https://id.example".to_owned(),
        audience: vec!["api".to_owned()],
        expires_at: 0,
        scopes: claims
            .get("scope")
            .and_then(|s| s.as_str())
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default(),
        token_id: String::new(),
        claims,
        encoded_claims: std::sync::OnceLock::new(),
    })
}

fn gate(claims: &[&str]) -> Gate {
    Gate {
        realm: "mrmat".to_owned(),
        claim_headers: claims
            .iter()
            .map(|c| ClaimHeader::parse(c).expect("a claim header"))
            .collect(),
    }
}

#[test]
fn the_bearer_token_is_the_only_credential_read() {
    assert_eq!(bearer_token("Bearer abc.def-_~+/="), Some("abc.def-_~+/="));
    assert_eq!(bearer_token("bEaReR   abc"), Some("abc"));
    for none in [
        "Basic dXNlcjpwdw==",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a\"b",
        "Bearerabc",
        "",
        "Bearer ===",
    ] {
        assert_eq!(bearer_token(none), None, "{none:?}");
    }
}

#[test]
fn allowed_the_identity_is_set_and_every_other_identity_header_removed() {
    let gate = gate(&[
        "email=X-Auth-Email",
        "realm_access.roles=x-auth-roles",
        "tenant=x-auth-tenant",
    ]);
    let token = token(json!({
        "sub": "alice",
        "email": "alice@example.com",
        "realm_access": {"roles": ["admin", "ops"]},
    }));
    let decision = gate.decide(&Ok(token), &[]);
    assert_eq!(
        decision,
        Decision::Allow {
            set: vec![
                ("x-auth-subject".to_owned(), "alice".to_owned()),
                ("x-auth-email".to_owned(), "alice@example.com".to_owned()),
                ("x-auth-roles".to_owned(), "admin,ops".to_owned()),
            ],
            remove: vec!["x-auth-tenant".to_owned()],
            left_out: 0,
        }
    );
}

#[test]
fn a_claim_that_cannot_be_a_header_value_is_left_out_counted_and_removed() {
    let gate = gate(&["name=x-auth-name", "n=x-auth-n"]);
    let token = token(json!({"sub": "bob\r\nx-admin: yes", "name": "a\u{0}b", "n": 7}));
    let Decision::Allow {
        set,
        remove,
        left_out,
    } = gate.decide(&Ok(token), &[])
    else {
        panic!("allowed");
    };
    assert_eq!(set, vec![("x-auth-n".to_owned(), "7".to_owned())]);
    assert_eq!(
        remove,
        vec!["x-auth-name".to_owned(), "x-auth-subject".to_owned()]
    );
    assert_eq!(left_out, 2);
}

#[test]
fn no_token_a_refused_token_and_a_missing_scope_get_the_rfc_6750_challenges() {
    let gate = gate(&[]);
    let Decision::Deny {
        status,
        www_authenticate,
        ..
    } = gate.no_token()
    else {
        panic!("denied");
    };
    assert_eq!(
        (status, www_authenticate.as_str()),
        (401, r#"Bearer realm="mrmat""#)
    );

    let refused = Err(Refusal {
        verdict: Verdict::Expired,
        reason: "the token expired at \"then\"\r\n".to_owned(),
    });
    let Decision::Deny {
        status,
        www_authenticate,
        ..
    } = gate.decide(&refused, &[])
    else {
        panic!("denied");
    };
    assert_eq!(status, 401);
    assert_eq!(
        www_authenticate,
        r#"Bearer realm="mrmat", error="invalid_token", error_description="the token expired at 'then'??""#
    );

    let token = token(json!({"sub": "carol", "scope": "read"}));
    let required = Gate::required_scopes(["read admin", "", "audit"]);
    assert_eq!(required, ["read", "admin", "audit"]);
    let Decision::Deny {
        status,
        www_authenticate,
        reason,
    } = gate.decide(&Ok(Arc::clone(&token)), &required)
    else {
        panic!("denied");
    };
    assert_eq!(status, 403);
    assert_eq!(
        www_authenticate,
        r#"Bearer realm="mrmat", error="insufficient_scope", scope="read admin audit""#
    );
    assert!(reason.contains("scopes admin, audit"), "{reason}");
    assert!(matches!(
        gate.decide(&Ok(token), &["read"]),
        Decision::Allow { .. }
    ));
}

#[test]
fn a_token_whose_provider_cannot_judge_it_is_neither_allowed_nor_denied() {
    let refused = Err(Refusal {
        verdict: Verdict::Unavailable,
        reason: "no keys yet".to_owned(),
    });
    assert_eq!(
        gate(&[]).decide(&refused, &[]),
        Decision::CannotJudge {
            reason: "no keys yet".to_owned()
        }
    );
}

#[test]
fn a_claim_header_names_a_claim_path_and_a_header_that_is_not_the_requests_own() {
    let parsed = ClaimHeader::parse("a.b=X-B").expect("valid");
    assert_eq!(parsed.path, ["a", "b"]);
    assert_eq!(parsed.header, "x-b");
    for bad in [
        "email",
        "=x",
        "a..b=x",
        "email=",
        "email=x y",
        "email=Authorization",
        "sub=x-auth-subject",
        "e=x\r\n",
    ] {
        let why = ClaimHeader::parse(bad).expect_err(bad);
        assert!(why.starts_with("--claim-header"), "{why}");
    }
}
