use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::tokens::{Refusal, ValidToken};

fn token(claims: serde_json::Value) -> Arc<ValidToken> {
    let claims = claims.as_object().expect("an object").clone();
    Arc::new(ValidToken {
        subject: claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned(),
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

fn policy(claims: &[&str]) -> AuthzPolicy {
    AuthzPolicy {
        realm: "mrmat".to_owned(),
        claim_headers: claims
            .iter()
            .map(|c| ClaimHeader::parse(c).expect("a claim header"))
            .collect(),
        routes: Default::default(),
    }
}

#[test]
fn the_bearer_token_is_the_only_credential_read() {
    fn one(value: &str) -> Credential<'_> {
        credential(&[value.as_bytes()])
    }
    assert_eq!(
        one("Bearer abc.def-_~+/="),
        Credential::Bearer("abc.def-_~+/=")
    );
    assert_eq!(one("bEaReR   abc"), Credential::Bearer("abc"));
    for absent in ["Basic dXNlcjpwdw==", "Bearerabc", "", "Negotiate"] {
        assert_eq!(one(absent), Credential::Absent, "{absent:?}");
    }
    assert_eq!(credential(&[]), Credential::Absent);
    for malformed in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a\"b",
        "Bearer ===",
    ] {
        assert!(
            matches!(one(malformed), Credential::Malformed(_)),
            "{malformed:?}"
        );
    }
    assert!(matches!(
        credential(&[b"Bearer \xff\xfe"]),
        Credential::Malformed(why) if why.contains("not ASCII")
    ));
    assert!(matches!(
        credential(&[b"Bearer a", b"Bearer b"]),
        Credential::Malformed(why) if why.contains("several")
    ));
}

#[test]
fn a_malformed_credential_is_a_400_invalid_request() {
    let decision = policy(&[]).malformed("the Bearer credential has no token");
    assert_eq!(decision.label(), "malformed");
    let Decision::Deny {
        denial,
        www_authenticate,
        ..
    } = decision
    else {
        panic!("denied");
    };
    assert_eq!(denial.http_status(), 400);
    assert_eq!(
        www_authenticate,
        r#"Bearer realm="mrmat", error="invalid_request", error_description="the Bearer credential has no token""#
    );
}

#[test]
fn a_route_requires_each_scope_once_and_at_most_a_bounded_number() {
    assert_eq!(
        AuthzPolicy::required_scopes(["a b", "b", " a  c "]).expect("bounded"),
        ["a", "b", "c"]
    );
    let many: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let why = AuthzPolicy::required_scopes(many.iter().map(String::as_str)).expect_err("too many");
    assert_eq!(why, TooManyScopes);
    let repeated = vec!["same"; 10_000];
    assert_eq!(
        AuthzPolicy::required_scopes(repeated).expect("one scope"),
        ["same"]
    );
}

#[test]
fn allowed_the_identity_is_set_and_every_other_identity_header_removed() {
    let policy = policy(&[
        "email=X-Auth-Email",
        "realm_access.roles=x-auth-roles",
        "tenant=x-auth-tenant",
    ]);
    let token = token(json!({
        "sub": "alice",
        "email": "alice@example.com",
        "realm_access": {"roles": ["admin", "ops"]},
    }));
    let decision = policy.decide(&Ok(token), &[]);
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
    let policy = policy(&["name=x-auth-name", "n=x-auth-n"]);
    let token = token(json!({"sub": "bob\r\nx-admin: yes", "name": "a\u{0}b", "n": 7}));
    let Decision::Allow {
        set,
        remove,
        left_out,
    } = policy.decide(&Ok(token), &[])
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
fn a_token_without_a_subject_sets_no_subject_header_and_removes_any_sent() {
    let policy = policy(&["email=x-auth-email"]);
    for claims in [
        json!({"email": "a@example.com"}),
        json!({"sub": "", "email": "a@example.com"}),
    ] {
        let Decision::Allow { set, remove, .. } = policy.decide(&Ok(token(claims.clone())), &[])
        else {
            panic!("allowed: {claims}");
        };
        assert_eq!(
            set,
            vec![("x-auth-email".to_owned(), "a@example.com".to_owned())],
            "{claims}"
        );
        assert_eq!(remove, vec!["x-auth-subject".to_owned()], "{claims}");
    }
}

#[test]
fn no_token_a_refused_token_and_a_missing_scope_get_the_rfc_6750_challenges() {
    let policy = policy(&[]);
    let Decision::Deny {
        denial,
        www_authenticate,
        ..
    } = policy.no_token()
    else {
        panic!("denied");
    };
    assert_eq!(
        (denial.http_status(), www_authenticate.as_str()),
        (401, r#"Bearer realm="mrmat""#)
    );

    let refused = Err(Refusal {
        verdict: Verdict::Expired,
        reason: "the token expired at \"then\"\r\n".to_owned(),
        dpop: None,
    });
    let Decision::Deny {
        denial,
        www_authenticate,
        ..
    } = policy.decide(&refused, &[])
    else {
        panic!("denied");
    };
    assert_eq!((denial, denial.http_status()), (Denial::InvalidToken, 401));
    assert_eq!(
        www_authenticate,
        r#"Bearer realm="mrmat", error="invalid_token", error_description="the token expired at 'then'??""#
    );

    let token = token(json!({"sub": "carol", "scope": "read"}));
    let required = AuthzPolicy::required_scopes(["read admin", "", "audit"]).expect("bounded");
    assert_eq!(required, ["read", "admin", "audit"]);
    let Decision::Deny {
        denial,
        www_authenticate,
        reason,
        ..
    } = policy.decide(&Ok(Arc::clone(&token)), &required)
    else {
        panic!("denied");
    };
    assert_eq!(denial.http_status(), 403);
    assert_eq!(
        www_authenticate,
        r#"Bearer realm="mrmat", error="insufficient_scope", scope="read admin audit""#
    );
    assert!(reason.contains("scopes admin, audit"), "{reason}");
    assert!(matches!(
        policy.decide(&Ok(token), &["read"]),
        Decision::Allow { .. }
    ));
}

#[test]
fn a_token_whose_provider_cannot_judge_it_is_neither_allowed_nor_denied() {
    let refused = Err(Refusal {
        verdict: Verdict::Unavailable,
        reason: "no keys yet".to_owned(),
        dpop: None,
    });
    assert_eq!(
        policy(&[]).decide(&refused, &[]),
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
        assert_eq!(why.text(), bad);
        assert!(why.to_string().starts_with("--claim-header"), "{why}");
    }
}
