//! The token service, `TokenV1Proto`, over real channels: every verdict for each algorithm
//! family over `Validate` and `ValidateStream`, algorithm confusion, key set changes, revocation
//! and who may do it, ten thousand answers in order, hostile tokens. Keys and tokens are made
//! at test time (`common::jwt`).

use crate::common;

use std::time::{Duration, Instant};

use common::jwt::{
    self, alg_name, claims, hmac_signed, input, token_config, validate_stream, KeyFile, SigningKey,
    AUDIENCE, ISSUER,
};
use common::pki::{client_tls, mtls, Pki, ADMIN_COMMON_NAME, ADMIN_DNS_NAME, CLIENT_NAME};
use common::{call, spawn_server_with, TestServer};
use grpcio::RpcStatusCode;
use jsonwebtoken::Algorithm;
use mrmat_rust_api_grpc::client::TlsOptions;
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use mrmat_rust_api_grpc::proto::{
    TokenV1Output, TokenV1ProtoClient, TokenV1RevokeInput, TokenV1Verdict,
};
use mrmat_rust_api_grpc::server::TlsConfig;
use serde_json::{json, Value};

use TokenV1Verdict::*;

/// A token server on mutual TLS whose admin is the `client` certificate, and that client.
struct Fixture {
    server: TestServer,
    client: TokenV1ProtoClient,
    _pki: Pki,
    _keys: KeyFile,
}

impl Fixture {
    fn new(keys: &[&SigningKey], admins: &[&str]) -> Self {
        let pki = Pki::new();
        let key_file = KeyFile::new(keys);
        let mut config = mtls(token_config(&key_file), &pki);
        config.apis.token_admins = admins.iter().map(|a| a.to_string()).collect();
        let server = spawn_server_with(config);
        let client = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "client")));
        Self {
            server,
            client,
            _pki: pki,
            _keys: key_file,
        }
    }

    fn validate(&self, token: &str) -> TokenV1Output {
        self.client
            .validate_opt(&input(7, token), call())
            .expect("Validate answers")
    }

    fn revoke(&self, token_id: &str, expires_at: i64) -> grpcio::Result<String> {
        revoke_with(&self.client, token_id, expires_at)
    }
}

fn revoke_with(
    client: &TokenV1ProtoClient,
    token_id: &str,
    expires_at: i64,
) -> grpcio::Result<String> {
    let mut request = TokenV1RevokeInput::new();
    request.token_id = token_id.to_owned();
    request.expires_at = expires_at;
    client.revoke_opt(&request, call()).map(|answer| {
        assert_eq!(answer.code, 200, "{answer:?}");
        answer.message
    })
}

fn verdict(answer: &TokenV1Output) -> TokenV1Verdict {
    answer.verdict.enum_value_or_default()
}

/// Asserts the answer is `expected`, with the status that goes with it and a reason that
/// contains `reason`; a refusal carries nothing about the bearer.
#[track_caller]
fn assert_answer(answer: &TokenV1Output, expected: TokenV1Verdict, reason: &str, case: &str) {
    assert_eq!(verdict(answer), expected, "{case}: {answer:?}");
    let status = answer.status.as_ref().expect("a status");
    if expected == TOKEN_V1_VALID {
        assert_eq!(
            (status.code, status.message.as_str()),
            (200, "Valid"),
            "{case}"
        );
        return;
    }
    assert_eq!(status.code, 401, "{case}: {answer:?}");
    assert!(
        status.message.contains(reason),
        "{case}: the reason {:?} does not say {reason:?}",
        status.message
    );
    assert!(
        answer.subject.is_empty() && answer.scopes.is_empty() && answer.expires_at == 0,
        "{case}: a refusal says nothing about the bearer: {answer:?}"
    );
}

fn with(claims: &Value, changes: Value) -> Value {
    let mut claims = claims.clone();
    for (name, value) in changes.as_object().expect("an object") {
        if value.is_null() {
            claims.as_object_mut().expect("an object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// One token per verdict, signed with `key` and `alg`, with the reason each refusal gives.
/// REVOKED needs a Revoke first: its token id is returned too.
fn one_token_per_verdict(
    key: &SigningKey,
    alg: Algorithm,
) -> (Vec<(String, TokenV1Verdict, &'static str)>, String) {
    let header = json!({"alg": alg_name(alg), "typ": "JWT", "kid": key.kid});
    let sign = |claims: &Value| key.sign_as(alg, &header, claims);
    let now = jwt::now();
    let base = claims("alice");
    let revoked = claims("mallory");
    let revoked_id = revoked["jti"].as_str().expect("a jti").to_owned();

    let valid = sign(&base);
    // The payload swapped for another after signing.
    let (signed_part, signature) = valid.rsplit_once('.').expect("three parts");
    let (head, _) = signed_part.split_once('.').expect("three parts");
    let forged_claims = with(&base, json!({"sub": "root"}));
    let forged = format!(
        "{head}.{}.{signature}",
        jwt::b64(forged_claims.to_string().as_bytes())
    );
    let other_alg = if alg == Algorithm::ES256 {
        Algorithm::ES384
    } else {
        Algorithm::ES256
    };
    let mismatched = format!(
        "{}.{signature}",
        jwt::signing_input(&json!({"alg": alg_name(other_alg), "kid": key.kid}), &base)
    );
    let unknown_kid = key.sign_as(
        alg,
        &json!({"alg": alg_name(alg), "kid": "retired-2019"}),
        &base,
    );
    let tokens = vec![
        (valid, TOKEN_V1_VALID, ""),
        (
            sign(&with(&base, json!({"exp": null}))),
            TOKEN_V1_MALFORMED,
            "exp",
        ),
        (forged, TOKEN_V1_BAD_SIGNATURE, "signature does not verify"),
        (unknown_kid, TOKEN_V1_UNKNOWN_KEY, "retired-2019"),
        (mismatched, TOKEN_V1_UNSUPPORTED_ALGORITHM, "verifies"),
        (
            sign(&with(&base, json!({"exp": now - 3600}))),
            TOKEN_V1_EXPIRED,
            "expired at",
        ),
        (
            sign(&with(&base, json!({"nbf": now + 3600}))),
            TOKEN_V1_NOT_YET_VALID,
            "not valid before",
        ),
        (
            sign(&with(&base, json!({"iss": "https://evil.example"}))),
            TOKEN_V1_WRONG_ISSUER,
            "evil.example",
        ),
        (
            sign(&with(&base, json!({"aud": ["billing", "mail"]}))),
            TOKEN_V1_WRONG_AUDIENCE,
            "billing",
        ),
        (sign(&revoked), TOKEN_V1_REVOKED, "revoked"),
    ];
    (tokens, revoked_id)
}

#[test]
fn every_verdict_for_each_algorithm_family_over_validate_and_validate_stream() {
    let rsa = SigningKey::rsa("rsa-1", Algorithm::RS256);
    let p256 = SigningKey::p256("ec-256");
    let p384 = SigningKey::p384("ec-384");
    let ed = SigningKey::ed25519("ed-1");
    let fixture = Fixture::new(&[&rsa, &p256, &p384, &ed], &[CLIENT_NAME]);
    let cases: Vec<(&SigningKey, Algorithm)> = vec![
        (&rsa, Algorithm::RS256),
        (&rsa, Algorithm::RS384),
        (&rsa, Algorithm::RS512),
        (&rsa, Algorithm::PS256),
        (&rsa, Algorithm::PS384),
        (&rsa, Algorithm::PS512),
        (&p256, Algorithm::ES256),
        (&p384, Algorithm::ES384),
        (&ed, Algorithm::EdDSA),
    ];
    let mut every_verdict = std::collections::BTreeSet::new();
    for (key, alg) in cases {
        let (tokens, revoked_id) = one_token_per_verdict(key, alg);
        fixture
            .revoke(&revoked_id, jwt::now() + 3600)
            .expect("the admin may revoke");

        for (token, expected, reason) in &tokens {
            let case = format!("{alg:?} over Validate, expecting {expected:?}");
            let answer = fixture.validate(token);
            assert_eq!(answer.request_id, 7, "{case}");
            assert_answer(&answer, *expected, reason, &case);
            every_verdict.insert(*expected as i32);
        }

        let inputs = tokens
            .iter()
            .enumerate()
            .map(|(i, (token, _, _))| input(1000 + i as u64, token))
            .collect();
        let (answers, ended) = validate_stream(&fixture.client, inputs);
        ended.expect("the stream ends OK when the client closes it");
        assert_eq!(answers.len(), tokens.len(), "{alg:?}: one answer per input");
        for (i, (answer, (_, expected, reason))) in answers.iter().zip(&tokens).enumerate() {
            let case = format!("{alg:?} over ValidateStream, expecting {expected:?}");
            assert_eq!(answer.request_id, 1000 + i as u64, "{case}: in input order");
            assert_answer(answer, *expected, reason, &case);
        }

        let valid = &answers[0];
        assert_eq!(valid.subject, "alice");
        assert_eq!(valid.issuer, ISSUER);
        assert_eq!(valid.audience, [AUDIENCE]);
        assert_eq!(valid.scopes, ["read", "write"]);
        assert!(valid.token_id.starts_with("alice-"), "{valid:?}");
        assert!(
            (valid.expires_at - jwt::now() - 3600).abs() < 60,
            "{valid:?}"
        );
    }
    assert_eq!(every_verdict.len(), 10, "every verdict but UNSPECIFIED");
    drop(fixture.server);
}

#[test]
fn algorithm_confusion_and_unsigned_tokens_are_refused() {
    let rsa = SigningKey::rsa("rsa-1", Algorithm::RS256);
    let ed = SigningKey::ed25519("ed-1");
    let fixture = Fixture::new(&[&rsa, &ed], &[]);
    let claims = claims("eve");
    let cases = [
        (
            "HS256 with the RSA public key as the secret",
            hmac_signed(
                Algorithm::HS256,
                &rsa.public_pem(),
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &claims,
            ),
            "shared secret",
        ),
        (
            "HS512 with the Ed25519 public key as the secret",
            hmac_signed(
                Algorithm::HS512,
                &ed.public_pem(),
                &json!({"alg": "HS512", "kid": "ed-1"}),
                &claims,
            ),
            "shared secret",
        ),
        (
            "alg none, no signature",
            format!(
                "{}.",
                jwt::signing_input(&json!({"alg": "none", "kid": "rsa-1"}), &claims)
            ),
            "unsigned",
        ),
        (
            "alg NoNe, with the RSA signature of a valid token",
            format!(
                "{}.{}",
                jwt::signing_input(&json!({"alg": "NoNe", "kid": "rsa-1"}), &claims),
                rsa.sign(&claims).rsplit_once('.').expect("three parts").1
            ),
            "unsigned",
        ),
        (
            "EdDSA named for the RSA key",
            ed.sign_with_header(&json!({"alg": "EdDSA", "kid": "rsa-1"}), &claims),
            "verifies",
        ),
        (
            "RS256 named for the Ed25519 key",
            rsa.sign_with_header(&json!({"alg": "RS256", "kid": "ed-1"}), &claims),
            "verifies",
        ),
        (
            "an algorithm nobody knows",
            rsa.sign_with_header(&json!({"alg": "RS1024", "kid": "rsa-1"}), &claims),
            "not supported",
        ),
    ];
    for (case, token, reason) in &cases {
        assert_answer(
            &fixture.validate(token),
            TOKEN_V1_UNSUPPORTED_ALGORITHM,
            reason,
            case,
        );
    }
    // The Ed25519 key's signature under the RSA key's kid, alg matching the RSA key: the
    // signature simply does not verify.
    let header = json!({"alg": "EdDSA", "kid": "ed-1"});
    let ed_signature = ed.sign_with_header(&header, &claims);
    let swapped = format!(
        "{}.{}",
        jwt::signing_input(&json!({"alg": "RS256", "kid": "rsa-1"}), &claims),
        ed_signature.rsplit_once('.').expect("three parts").1
    );
    assert_answer(
        &fixture.validate(&swapped),
        TOKEN_V1_BAD_SIGNATURE,
        "does not verify",
        "a signature of another key",
    );
    assert_answer(
        &fixture.validate(&rsa.sign(&claims)),
        TOKEN_V1_VALID,
        "",
        "the real thing, after all that",
    );
}

#[test]
fn a_kid_added_to_the_file_is_picked_up_by_the_first_token_that_names_it() {
    let old = SigningKey::p256("2026-10");
    let new = SigningKey::p256("2026-11");
    let keys = KeyFile::new(&[&old]);
    let server = spawn_server_with(token_config(&keys));
    let client = TokenV1ProtoClient::new(server.channel());
    let token = new.sign(&claims("bob"));

    // Rotated in: the first token naming the new kid waits for the file to be read again.
    keys.write(&[&old, &new]);
    let answer = client
        .validate_opt(&input(1, &token), call())
        .expect("Validate answers");
    assert_answer(
        &answer,
        TOKEN_V1_VALID,
        "",
        "the new kid, after the file changed",
    );

    // Another unknown kid within 30 s does not read the file again: UNKNOWN_KEY at once, even
    // though the file now has it.
    let newer = SigningKey::p256("2026-12");
    keys.write(&[&old, &new, &newer]);
    let newer_token = newer.sign(&claims("bob"));
    let (answers, ended) = validate_stream(&client, vec![input(2, &newer_token)]);
    ended.expect("the stream ends OK");
    assert_answer(
        &answers[0],
        TOKEN_V1_UNKNOWN_KEY,
        "2026-12",
        "a second unknown kid within the rate limit",
    );

    // A reload (what SIGHUP does) brings it in.
    server.reload_keys();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client
            .validate_opt(&input(3, &newer_token), call())
            .expect("Validate answers");
        if verdict(&answer) == TOKEN_V1_VALID {
            break;
        }
        assert_answer(
            &answer,
            TOKEN_V1_UNKNOWN_KEY,
            "2026-12",
            "before the reload",
        );
        assert!(Instant::now() < deadline, "the reload did not load the key");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Rotated out: tokens of the removed key stop validating after the next reload.
    keys.write(&[&new, &newer]);
    server.reload_keys();
    let old_token = old.sign(&claims("bob"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while verdict(
        &client
            .validate_opt(&input(4, &old_token), call())
            .expect("answers"),
    ) == TOKEN_V1_VALID
    {
        assert!(Instant::now() < deadline, "the removed key is still used");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_answer(
        &client
            .validate_opt(&input(5, &old_token), call())
            .expect("answers"),
        TOKEN_V1_UNKNOWN_KEY,
        "2026-10",
        "a removed key",
    );
}

#[test]
fn a_cached_token_is_refused_once_its_key_is_gone() {
    // The cache must not outlive the key set that verified its entries.
    let old = SigningKey::ed25519("old");
    let new = SigningKey::ed25519("new");
    let keys = KeyFile::new(&[&old, &new]);
    let server = spawn_server_with(token_config(&keys));
    let client = TokenV1ProtoClient::new(server.channel());
    let token = old.sign(&claims("carol"));
    for _ in 0..3 {
        let answer = client
            .validate_opt(&input(1, &token), call())
            .expect("answers");
        assert_answer(&answer, TOKEN_V1_VALID, "", "cached");
    }
    keys.write(&[&new]);
    server.reload_keys();
    let deadline = Instant::now() + Duration::from_secs(10);
    while verdict(
        &client
            .validate_opt(&input(2, &token), call())
            .expect("answers"),
    ) == TOKEN_V1_VALID
    {
        assert!(
            Instant::now() < deadline,
            "the cache kept a removed key's token"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn revocation_is_for_admins_on_mutual_tls_and_reaches_open_streams_and_the_cache() {
    use futures::{SinkExt as _, StreamExt as _};
    let key = SigningKey::rsa("rsa-1", Algorithm::PS256);
    let pki = Pki::new();
    let keys = KeyFile::new(&[&key]);
    let mut config = mtls(token_config(&keys), &pki);
    config.apis.token_admins = vec![ADMIN_COMMON_NAME.to_owned()];
    let server = spawn_server_with(config);
    let admin = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "admin-client")));
    let user = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "client")));

    // An open stream validates the token (and so caches it)...
    let claims = claims("dave");
    let token_id = claims["jti"].as_str().expect("a jti").to_owned();
    let token = key.sign(&claims);
    let (mut sink, mut answers) = user.validate_stream_opt(call()).expect("the stream opens");
    let mut ask = |id: u64| {
        futures::executor::block_on(async {
            sink.send((input(id, &token), grpcio::WriteFlags::default()))
                .await
                .expect("send");
            answers
                .next()
                .await
                .expect("an answer")
                .expect("an answer, not an error")
        })
    };
    assert_answer(&ask(1), TOKEN_V1_VALID, "", "before the revocation");
    assert_answer(&ask(2), TOKEN_V1_VALID, "", "before the revocation, cached");

    // ...a user may not revoke it...
    let denied = revoke_with(&user, &token_id, 0).expect_err("a non-admin is refused");
    let grpcio::Error::RpcFailure(status) = denied else {
        panic!("{denied:?}")
    };
    assert_eq!(status.code(), RpcStatusCode::PERMISSION_DENIED);
    assert!(
        status.message().contains(CLIENT_NAME) && status.message().contains("--token-admin"),
        "{}",
        status.message()
    );

    // ...an admin (by common name) may, and the same stream refuses it from the next message.
    let message = revoke_with(&admin, &token_id, claims["exp"].as_i64().expect("exp"))
        .expect("the admin may revoke");
    assert!(message.starts_with("Revoked until "), "{message}");
    assert_answer(&ask(3), TOKEN_V1_REVOKED, "revoked", "on the open stream");
    assert_answer(
        &user
            .validate_opt(&input(4, &token), call())
            .expect("answers"),
        TOKEN_V1_REVOKED,
        "revoked",
        "over Validate",
    );

    // Bad requests are INVALID_ARGUMENT with a reason, an expiry already past among them: a
    // revocation that would not take effect is never answered as done.
    for (token_id, expires_at, reason) in [
        ("", 0, "give one of token_id"),
        ("x", jwt::now() + 30 * 24 * 3600, "--revocation-max-ttl"),
        (
            "old",
            jwt::now() - 10,
            "has passed, so the revocation would not take effect",
        ),
    ] {
        let error = revoke_with(&admin, token_id, expires_at).expect_err("refused");
        let grpcio::Error::RpcFailure(status) = error else {
            panic!("{error:?}")
        };
        assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT);
        assert!(status.message().contains(reason), "{}", status.message());
    }
}

#[test]
fn an_admin_is_recognised_by_a_dns_name_of_its_certificate() {
    let key = SigningKey::ed25519("ed");
    let pki = Pki::new();
    let keys = KeyFile::new(&[&key]);
    let mut config = mtls(token_config(&keys), &pki);
    config.apis.token_admins = vec!["someone-else".to_owned(), ADMIN_DNS_NAME.to_owned()];
    let server = spawn_server_with(config);
    let admin = TokenV1ProtoClient::new(server.channel_with(&client_tls(&pki, "admin-client")));
    let message = revoke_with(&admin, "jti-1", 0).expect("the DNS name is an admin");
    assert!(message.starts_with("Revoked until "), "{message}");
}

#[test]
fn revoke_over_plaintext_or_without_a_client_certificate_is_permission_denied() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let pki = Pki::new();
    let plaintext = spawn_server_with(token_config(&keys));
    let mut tls_only = token_config(&keys);
    tls_only.tls = TlsConfig {
        cert: Some(pki.path("server.pem")),
        key: Some(pki.path("server.key")),
        client_ca: None,
    };
    let tls_only = spawn_server_with(tls_only);
    let tls_client = TlsOptions {
        ca_cert: Some(pki.path("ca.pem")),
        ..TlsOptions::default()
    };
    for (what, channel) in [
        ("plaintext", plaintext.channel()),
        (
            "TLS without a client certificate",
            tls_only.channel_with(&tls_client),
        ),
    ] {
        let client = TokenV1ProtoClient::new(channel);
        let error = revoke_with(&client, "jti-1", 0).expect_err("refused");
        let grpcio::Error::RpcFailure(status) = error else {
            panic!("{what}: {error:?}")
        };
        assert_eq!(status.code(), RpcStatusCode::PERMISSION_DENIED, "{what}");
        assert!(
            status.message().contains("needs mutual TLS"),
            "{what}: {}",
            status.message()
        );
        // Validation itself needs no certificate.
        let answer = client
            .validate_opt(&input(1, &key.sign(&claims("erin"))), call())
            .expect("answers");
        assert_answer(&answer, TOKEN_V1_VALID, "", what);
    }
}

#[test]
fn ten_thousand_stream_messages_are_answered_once_each_in_order() {
    let key = SigningKey::p256("ec");
    let keys = KeyFile::new(&[&key]);
    let server = spawn_server_with(token_config(&keys));
    let client = TokenV1ProtoClient::new(server.channel());
    // A few hundred distinct tokens, valid and not, so the cache and the checks both work.
    let tokens: Vec<(String, TokenV1Verdict)> = (0..300)
        .map(|i| {
            let mut claims = claims(&format!("user-{i}"));
            match i % 3 {
                0 => (key.sign(&claims), TOKEN_V1_VALID),
                1 => {
                    claims["aud"] = json!("other");
                    (key.sign(&claims), TOKEN_V1_WRONG_AUDIENCE)
                }
                _ => (format!("not-a-token-{i}"), TOKEN_V1_MALFORMED),
            }
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(11);
    let plan: Vec<(u64, usize)> = (0..10_000)
        .map(|_| (rng.u64(..), rng.usize(..tokens.len())))
        .collect();
    let inputs = plan
        .iter()
        .map(|&(id, which)| input(id, &tokens[which].0))
        .collect();
    let (answers, ended) = validate_stream(&client, inputs);
    ended.expect("the stream ends OK");
    assert_eq!(answers.len(), plan.len());
    for (answer, &(id, which)) in answers.iter().zip(&plan) {
        assert_eq!(answer.request_id, id, "answers come in input order");
        assert_eq!(verdict(answer), tokens[which].1, "{answer:?}");
        if tokens[which].1 == TOKEN_V1_VALID {
            assert_eq!(answer.subject, format!("user-{}", which));
        }
    }
}

/// The members of a JSON object, as text without its braces, to put beside others.
fn members(object: &Value) -> String {
    let text = object.to_string();
    text[1..text.len() - 1].to_owned()
}

#[test]
fn hostile_tokens_get_answers_and_the_server_keeps_serving() {
    let key = SigningKey::rsa("rsa", Algorithm::RS256);
    let keys = KeyFile::new(&[&key]);
    let server = spawn_server_with(token_config(&keys));
    let client = TokenV1ProtoClient::new(server.channel());
    let b64 = |s: &str| jwt::b64(s.as_bytes());
    let valid_claims = claims("x");
    let good_header = json!({"alg": "RS256", "kid": "rsa"});
    let mut cases: Vec<(String, String, TokenV1Verdict, &str)> = vec![
        (
            "invalid base64 in the header".into(),
            format!("e$!*.{}.c2ln", b64("{}")),
            TOKEN_V1_MALFORMED,
            "base64url",
        ),
        (
            "padded base64".into(),
            format!("{}==.{}.c2ln", b64("{\"alg\":\"RS256\"}"), b64("{}")),
            TOKEN_V1_MALFORMED,
            "base64url",
        ),
        (
            "invalid base64 in the signature".into(),
            format!("{}.@@@", jwt::signing_input(&good_header, &valid_claims)),
            TOKEN_V1_MALFORMED,
            "base64url",
        ),
        (
            "a header nested 4000 deep".into(),
            format!("{}.{}.c2ln", b64(&"[".repeat(4000)), b64("{}")),
            TOKEN_V1_MALFORMED,
            "header",
        ),
        (
            "claims nested 2400 deep, signed".into(),
            key.sign_payload(
                Algorithm::RS256,
                &good_header,
                format!("{}1{}", "[".repeat(2400), "]".repeat(2400)).as_bytes(),
            ),
            TOKEN_V1_MALFORMED,
            "claims",
        ),
        (
            "a 1 MiB token".into(),
            "a".repeat(1 << 20),
            TOKEN_V1_MALFORMED,
            "the limit is 8192 bytes",
        ),
        (
            "8193 bytes".into(),
            format!(
                "{}.{}",
                jwt::signing_input(&good_header, &valid_claims),
                "A".repeat(8192)
            ),
            TOKEN_V1_MALFORMED,
            "the limit is 8192 bytes",
        ),
        (
            "a kid of path separators".into(),
            key.sign_with_header(
                &json!({"alg": "RS256", "kid": "../../../../etc/passwd/..\\..\\windows"}),
                &valid_claims,
            ),
            TOKEN_V1_UNKNOWN_KEY,
            "etc/passwd",
        ),
        (
            "a kid of 5,000 characters".into(),
            key.sign_with_header(
                &json!({"alg": "RS256", "kid": "k".repeat(5000)}),
                &valid_claims,
            ),
            TOKEN_V1_UNKNOWN_KEY,
            "...",
        ),
        (
            "a kid that is a number".into(),
            key.sign_with_header(&json!({"alg": "RS256", "kid": 7}), &valid_claims),
            TOKEN_V1_MALFORMED,
            "kid",
        ),
        (
            "exp as a string".into(),
            key.sign(&with(&valid_claims, json!({"exp": "tomorrow"}))),
            TOKEN_V1_MALFORMED,
            "exp",
        ),
        (
            "exp far beyond i64".into(),
            key.sign(&with(&valid_claims, json!({"exp": 1e300}))),
            TOKEN_V1_MALFORMED,
            "exp",
        ),
        (
            "a header that is a JSON string".into(),
            format!("{}.{}.c2ln", b64("\"RS256\""), b64("{}")),
            TOKEN_V1_MALFORMED,
            "JSON object",
        ),
        (
            "control characters and a NUL".into(),
            "\u{0}\u{1}\u{7f}.\n.\r".into(),
            TOKEN_V1_MALFORMED,
            "",
        ),
        (
            "a Bearer prefix".into(),
            format!("Bearer {}", key.sign(&valid_claims)),
            TOKEN_V1_MALFORMED,
            "Bearer",
        ),
        (
            "an encrypted JWE".into(),
            "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".into(),
            TOKEN_V1_MALFORMED,
            "JWE",
        ),
        ("empty".into(), String::new(), TOKEN_V1_MALFORMED, "empty"),
        (
            "iat as a string".into(),
            key.sign(&with(&valid_claims, json!({"iat": "x"}))),
            TOKEN_V1_MALFORMED,
            "iat",
        ),
        (
            "sub as null".into(),
            key.sign_texts(
                r#"{"alg":"RS256","kid":"rsa"}"#,
                &format!(
                    r#"{{{},"sub":null}}"#,
                    members(&with(&valid_claims, json!({"sub": null})))
                ),
            ),
            TOKEN_V1_MALFORMED,
            "sub",
        ),
        (
            "jti as a number".into(),
            key.sign(&with(&valid_claims, json!({"jti": 7}))),
            TOKEN_V1_MALFORMED,
            "jti",
        ),
        (
            "alg none, then alg RS256, signed".into(),
            key.sign_texts(
                r#"{"alg":"none","alg":"RS256","kid":"rsa"}"#,
                &valid_claims.to_string(),
            ),
            TOKEN_V1_MALFORMED,
            "more than once",
        ),
        (
            "alg RS256, then alg none, signed".into(),
            key.sign_texts(
                r#"{"alg":"RS256","kid":"rsa","alg":"none"}"#,
                &valid_claims.to_string(),
            ),
            TOKEN_V1_MALFORMED,
            "more than once",
        ),
        (
            "sub given twice, signed".into(),
            key.sign_texts(
                r#"{"alg":"RS256","kid":"rsa"}"#,
                &format!(r#"{{"sub":"admin",{},"sub":"x"}}"#, members(&valid_claims)),
            ),
            TOKEN_V1_MALFORMED,
            "more than once",
        ),
        (
            "a nested claim given twice, signed".into(),
            key.sign_texts(
                r#"{"alg":"RS256","kid":"rsa"}"#,
                &format!(
                    r#"{{{},"realm_access":{{"roles":["user"],"roles":["admin"]}}}}"#,
                    members(&valid_claims)
                ),
            ),
            TOKEN_V1_MALFORMED,
            "more than once",
        ),
    ];
    // Random tokens from a fixed seed: noise, and noise shaped like a JWS.
    let mut rng = fastrand::Rng::with_seed(0x6a77_7473);
    for round in 0..300 {
        let len = rng.usize(0..200);
        let noise: String = (0..len).map(|_| rng.char(..)).collect();
        let token = if round % 2 == 0 {
            noise
        } else {
            let part = |rng: &mut fastrand::Rng| {
                let bytes: Vec<u8> = (0..rng.usize(0..60)).map(|_| rng.u8(..)).collect();
                jwt::b64(&bytes)
            };
            format!("{}.{}.{}", part(&mut rng), part(&mut rng), part(&mut rng))
        };
        cases.push((
            format!("random token #{round}"),
            token,
            TOKEN_V1_MALFORMED,
            "",
        ));
    }

    let inputs: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, token, _, _))| input(i as u64, token))
        .collect();
    let (streamed, ended) = validate_stream(&client, inputs);
    ended.expect("the stream survives every hostile token");
    assert_eq!(streamed.len(), cases.len());
    for ((case, token, expected, reason), streamed) in cases.iter().zip(&streamed) {
        let answer = client
            .validate_opt(&input(1, token), call())
            .unwrap_or_else(|e| panic!("{case}: Validate failed: {e}"));
        assert_answer(&answer, *expected, reason, case);
        assert_eq!(
            (verdict(streamed), &streamed.status),
            (verdict(&answer), &answer.status),
            "{case}: the stream answers as Validate does"
        );
        let reason = &answer.status.message;
        assert!(
            reason.len() < 600,
            "{case}: a reason is a sentence, not an echo: {} bytes",
            reason.len()
        );
    }
    assert_answer(
        &client
            .validate_opt(&input(1, &key.sign(&valid_claims)), call())
            .expect("still answering"),
        TOKEN_V1_VALID,
        "",
        "after the hostile tokens",
    );
}

#[test]
fn health_checking_reports_the_token_service_serving() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let server = spawn_server_with(token_config(&keys));
    let health = HealthClient::new(server.channel());
    let mut request = HealthCheckRequest::new();
    request.service = "TokenV1Proto".to_owned();
    let answer = health.check_opt(&request, call()).expect("health answers");
    assert_eq!(
        answer.status.enum_value_or_default(),
        ServingStatus::SERVING
    );
}

#[test]
fn a_cache_of_tokens_with_large_claims_holds_no_more_memory_than_its_bytes() {
    let key = SigningKey::p256("big");
    let keys = KeyFile::new(&[&key]);
    let mut args = jwt::token_args(&keys);
    args.extend(
        [
            "--store",
            "memory",
            "--metrics-listen",
            "127.0.0.1:0",
            "--token-cache-bytes",
            "8388608",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = common::ServerProcess::start(&args);
    let client = TokenV1ProtoClient::new(server.channel());
    // 1,000 distinct tokens of about 8 KiB whose claims are 2,900 numbers: each entry holds some
    // 170 KB, so 1,000 of them held 165 MiB under the entries bound alone.
    let tokens: Vec<String> = (0..1_000)
        .map(|i| key.sign(&jwt::claims_with_numbers(&format!("c{i}"), 2_900)))
        .collect();
    let before = common::peak_kib(server.pid());
    for chunk in tokens.chunks(100) {
        let inputs = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| input(i as u64, t))
            .collect();
        let (answers, ended) = validate_stream(&client, inputs);
        ended.expect("the stream ends OK");
        assert!(answers.iter().all(|a| verdict(a) == TOKEN_V1_VALID));
    }
    let grown_mib = common::peak_kib(server.pid()).saturating_sub(before) / 1024;
    let cached = server.metric("mrmat_token_cache_bytes").expect("the gauge");
    eprintln!("the cache weighs {cached} bytes; the server's peak grew {grown_mib} MiB");
    assert!(cached <= 8_388_608.0, "{cached} bytes cached");
    assert!(cached > 4_000_000.0, "the cache holds what fits: {cached}");
    assert!(grown_mib < 48, "the server's peak grew {grown_mib} MiB");
}
