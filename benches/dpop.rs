//! What a DPoP-bound validation costs beside a cached bearer one, and beside its floor: one
//! ES256 verification per request, which no cache can save (the proof is new each time). In a
//! loop on one thread, as the server judges a token (`TokenVerifier::check_presented`): the
//! token itself is cached, the proof checked in full (header, claims, htu, signature,
//! thumbprint, replay). `ci/bench-dpop` runs it and prints the ratios.
//!
//! Cases: `bearer` (a cached unbound token), `check` (the same by `TokenVerifier::check`,
//! without the binding step: what that step costs an unbound token), `dpop` (a cached DPoP-bound token with a fresh
//! proof each time), `es256` (the proof's signature alone, by the same crypto: the limit),
//! `replay` (the replay cache's memory: VmHWM before and after `ITERATIONS` proofs, made in
//! small chunks so that they do not count).

use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};

use mrmat_rust_api_grpc::eventually::Eventually;
use mrmat_rust_api_grpc::store::MemoryRevocations;
use mrmat_rust_api_grpc::tokens::binding::{DpopOptions, DpopRequest, Presentation};
use mrmat_rust_api_grpc::tokens::{KeysFrom, ProviderOptions, TokenOptions, TokenVerifier};

const ISSUER: &str = "https://issuer.bench";
const URL: &str = "https://api.example/orders";

/// An EC P-256 key: to sign with, and its public JWK.
struct EcKeyPair {
    encoding: EncodingKey,
    jwk: Value,
    pkey: PKey<Private>,
}

impl EcKeyPair {
    fn new() -> Self {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let ec = EcKey::generate(&group).expect("an EC key");
        let mut context = BigNumContext::new().expect("a context");
        let point = ec
            .public_key()
            .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut context)
            .expect("the public point");
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let pkey = PKey::from_ec_key(ec).expect("a key");
        let encoding = EncodingKey::from_ec_der(&pkey.private_key_to_pkcs8().expect("PKCS#8"));
        Self {
            encoding,
            jwk,
            pkey,
        }
    }

    fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            self.jwk["x"], self.jwk["y"]
        );
        URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&String> = args.iter().filter(|arg| !arg.starts_with("--")).collect();
    let measuring =
        args.iter().any(|arg| arg == "--bench") || std::env::var_os("ITERATIONS").is_some();
    let iterations: u32 = std::env::var("ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if measuring { 20_000 } else { 10 });
    let wanted = |name: &str| cases.is_empty() || cases.iter().any(|case| case.as_str() == name);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let issuer = EcKeyPair::new();
    let client = EcKeyPair::new();
    let verifier = verifier(&dir, &issuer);
    mrmat_rust_api_grpc::metrics::enable();
    let bearer = token(&issuer, None);
    let bound = token(&issuer, Some(client.thumbprint()));
    let ath = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(bound.as_bytes()));
    let proofs = |count: u32| -> Vec<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(client.jwk.clone()).expect("a JWK"));
        (0..count)
            .map(|_| {
                let claims = json!({"jti": format!("{:032x}", fastrand::u128(..)), "htm": "GET",
                    "htu": URL, "iat": now(), "ath": ath});
                jsonwebtoken::encode(&header, &claims, &client.encoding).expect("a proof")
            })
            .collect()
    };
    let presented = |proof: String| Presentation {
        dpop: Some(DpopRequest {
            proofs: vec![proof],
            method: "GET".into(),
            url: Ok(URL.into()),
        }),
        certificate: None,
    };
    let valid = |eventually: Eventually<_>| match eventually {
        Eventually::Now(Ok(valid)) => black_box(valid),
        Eventually::Now(Err(refusal)) => panic!("{refusal:?}"),
        Eventually::Later(_) => panic!("a cached token is judged at once"),
    };
    valid(verifier.check_presented(&bearer, Presentation::default()));
    let mut line = String::from("dpop:");
    // The best of five rounds: the least disturbed by a shared machine.
    let best =
        |round: &mut dyn FnMut() -> Duration| (0..5).map(|_| round()).min().unwrap_or_default();
    let per_second = |took: Duration| f64::from(iterations) / took.as_secs_f64();
    if wanted("bearer") {
        let took = best(&mut || {
            let started = Instant::now();
            for _ in 0..iterations {
                valid(verifier.check_presented(&bearer, Presentation::default()));
            }
            started.elapsed()
        });
        println!(
            "bearer  {:>10.0} validations/s (cached, unbound)",
            per_second(took)
        );
        line += &format!(" bearer={:.0}", per_second(took));
    }
    if wanted("check") {
        // The same without the binding's step: what it costs an unbound token.
        let took = best(&mut || {
            let started = Instant::now();
            for _ in 0..iterations {
                valid(verifier.check(&bearer));
            }
            started.elapsed()
        });
        println!(
            "check   {:>10.0} validations/s (cached, unbound, without the binding step)",
            per_second(took)
        );
        line += &format!(" check={:.0}", per_second(took));
    }
    if wanted("dpop") {
        let took = best(&mut || {
            let made = proofs(iterations);
            let started = Instant::now();
            for proof in made {
                valid(verifier.check_presented(&bound, presented(proof)));
            }
            started.elapsed()
        });
        println!(
            "dpop    {:>10.0} validations/s (cached token, a new proof each)",
            per_second(took)
        );
        line += &format!(" dpop={:.0}", per_second(took));
    }
    if wanted("es256") {
        let decoding = DecodingKey::from_ec_der(
            &client
                .pkey
                .ec_key()
                .expect("EC")
                .public_key()
                .to_bytes(
                    &EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256"),
                    PointConversionForm::UNCOMPRESSED,
                    &mut BigNumContext::new().expect("a context"),
                )
                .expect("the point"),
        );
        let made = proofs(1000);
        let took = best(&mut || {
            let started = Instant::now();
            for n in 0..iterations {
                let proof = &made[n as usize % made.len()];
                let (input, signature) = proof.rsplit_once('.').expect("a JWS");
                let ok = jsonwebtoken::crypto::verify(
                    signature,
                    input.as_bytes(),
                    &decoding,
                    Algorithm::ES256,
                );
                assert!(matches!(ok, Ok(true)));
            }
            started.elapsed()
        });
        println!(
            "es256   {:>10.0} verifications/s (the signature alone)",
            per_second(took)
        );
        line += &format!(" es256={:.0}", per_second(took));
    }
    if wanted("replay") && measuring {
        let before = (peak_kib(), verifier.dpop_proofs_remembered());
        let mut left = iterations * 5;
        while left > 0 {
            let chunk = left.min(1000);
            for proof in proofs(chunk) {
                valid(verifier.check_presented(&bound, presented(proof)));
            }
            left -= chunk;
        }
        let remembered = verifier.dpop_proofs_remembered() - before.1;
        let grown = peak_kib().saturating_sub(before.0) * 1024;
        let per = grown as f64 / remembered.max(1) as f64;
        println!(
            "replay  {remembered} proofs remembered, peak memory +{} KiB: {per:.0} bytes each",
            grown / 1024
        );
        line += &format!(" replay_bytes_per_proof={per:.0}");
    }
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// The process's peak resident memory (VmHWM), KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A token of `issuer`, bound to the key `jkt` names when given.
fn token(issuer: &EcKeyPair, jkt: Option<String>) -> String {
    let mut claims = json!({
        "iss": ISSUER, "aud": "api", "sub": "user1", "exp": now() + 7200,
        "jti": format!("t-{}", fastrand::u64(..)), "scope": "read",
    });
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    jsonwebtoken::encode(&header, &claims, &issuer.encoding).expect("a token")
}

/// A verifier of `issuer`'s key set in a file, DPoP by default.
fn verifier(dir: &tempfile::TempDir, issuer: &EcKeyPair) -> Arc<TokenVerifier> {
    let mut jwk = issuer.jwk.clone();
    jwk["kid"] = json!("bench");
    jwk["use"] = json!("sig");
    let path = dir.path().join("jwks.json");
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(json!({ "keys": [jwk] }).to_string().as_bytes()))
        .expect("write the key set");
    let options = TokenOptions {
        providers: vec![ProviderOptions {
            audiences: vec!["api".into()],
            ..ProviderOptions::new(ISSUER, KeysFrom::File(path))
        }],
        dpop: DpopOptions::default(),
        ..TokenOptions::default()
    };
    let verifier = TokenVerifier::start(&options, Arc::new(MemoryRevocations::with_limit(10)))
        .expect("a verifier")
        .expect("a provider");
    Arc::new(verifier)
}
