//! The CPU cost of one decision, with and without routes: a proxy's question with a valid,
//! cached ES256 token, judged as both transports judge it (`AuthzPolicy::judge_request` after
//! the token cache's hit), in a loop on one thread. `ci/bench-authz-decision` runs it and reads
//! the difference; under callgrind (`ITERATIONS`, one case per run) it gives instruction counts.
//!
//! Cases: `today` (no routes: the token and the proxy's scopes), `first` (50 routes, the first
//! covering the request, with a typical rule), `last` (50 routes, the 50th covering it: 49
//! routes tried first), `last-headers` (as `last`, the rule also reading a header).

use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::PKey;

use mrmat_rust_api_grpc::authz::{credential, AuthzPolicy, RequestFacts, Routes};
use mrmat_rust_api_grpc::server::providers_file;
use mrmat_rust_api_grpc::store::MemoryRevocations;
use mrmat_rust_api_grpc::tokens::{KeysFrom, ProviderOptions, TokenOptions, TokenVerifier};

const ISSUER: &str = "https://issuer.bench";

/// A typical rule: a group, a claim's suffix and the token's scope.
const RULE: &str =
    "'ops' in claims.groups && claims.email.endsWith('@example.com') && 'read' in token.scopes";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&String> = args.iter().filter(|arg| !arg.starts_with("--")).collect();
    // `cargo bench` passes --bench; `cargo test` (ci/test) runs it as a check of each case's
    // decision, a few rounds, timing nothing that matters.
    let measuring =
        args.iter().any(|arg| arg == "--bench") || std::env::var_os("ITERATIONS").is_some();
    let iterations: u32 = std::env::var("ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if measuring { 200_000 } else { 10 });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (verifier, token) = verifier_and_token(&dir);
    let policy = AuthzPolicy {
        realm: "bench".into(),
        claim_headers: Vec::new(),
        routes: Default::default(),
    };
    // Counted as a server with --metrics-listen counts.
    mrmat_rust_api_grpc::metrics::enable();
    let header = format!("Bearer {token}");
    let all = [
        ("today", Arc::new(Routes::default())),
        ("first", Arc::new(routes(&dir, true, RULE))),
        ("last", Arc::new(routes(&dir, false, RULE))),
        (
            "last-headers",
            Arc::new(routes(
                &dir,
                false,
                &format!("{RULE} && request.headers['x-tenant'] == 't1'"),
            )),
        ),
    ];
    for (name, routes) in &all {
        if !cases.is_empty() && !cases.iter().any(|case| case.as_str() == *name) {
            continue;
        }
        let decide = || {
            // What the transport does with routes: the request's facts gathered, its headers
            // only when a rule reads them (a typical proxy's dozen).
            let mut request = RequestFacts::default();
            if routes.in_use() {
                request = RequestFacts::new("GET", "127.0.0.1:50095", "/orders/42?view=full");
                if routes.read_headers() {
                    for (name, value) in HEADERS {
                        request.add_header(name.as_bytes(), value.as_bytes());
                    }
                }
            }
            let decision = policy.judge_request(
                routes,
                &verifier,
                credential(&[header.as_bytes()]),
                Default::default(),
                &[],
                &request,
            );
            match decision {
                mrmat_rust_api_grpc::eventually::Eventually::Now(decision) => {
                    assert_eq!(decision.label(), "allowed", "{decision:?}");
                    black_box(decision);
                }
                _ => panic!("a cached token is judged at once"),
            }
        };
        decide();
        // The best of five rounds: the least disturbed by a shared machine.
        let best = (0..5)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..iterations {
                    decide();
                }
                started.elapsed()
            })
            .min()
            .unwrap_or(Duration::ZERO);
        let per = best.as_nanos() as f64 / f64::from(iterations);
        println!("{name:<13} {per:>8.0} ns per decision (best of 5 x {iterations})");
    }
}

/// The headers of a proxied request, as Envoy reports them.
const HEADERS: [(&str, &str); 10] = [
    (":authority", "127.0.0.1:50095"),
    (":method", "GET"),
    (":path", "/orders/42?view=full"),
    (":scheme", "http"),
    ("user-agent", "h2load nghttp2/1.52.0"),
    ("accept", "*/*"),
    ("x-forwarded-proto", "http"),
    ("x-request-id", "5d1f9a52-6a1e-4b8e-9a0c-2d4c1b7e9f10"),
    ("x-tenant", "t1"),
    ("x-envoy-expected-rq-timeout-ms", "15000"),
];

/// 50 routes, the one covering `/orders/...` first or last, each with `rule`.
fn routes(dir: &tempfile::TempDir, covering_first: bool, rule: &str) -> Routes {
    let covering = format!(
        "[[route]]\nname = \"orders\"\nhosts = [\"127.0.0.1\", \"*.example.com\"]\n\
         path_prefix = \"/orders\"\nmethods = [\"GET\", \"POST\"]\nallow = \"{rule}\"\n"
    );
    let others: String = (0..49)
        .map(|i| {
            format!(
                "[[route]]\nname = \"svc{i}\"\nhosts = [\"svc{i}.example.com\"]\n\
                 path_prefix = \"/svc{i}\"\nallow = \"{rule}\"\n"
            )
        })
        .collect();
    let text = if covering_first {
        format!("{covering}{others}")
    } else {
        format!("{others}{covering}")
    };
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, text).expect("write the routes");
    let routes = providers_file::read_all(&path)
        .unwrap_or_else(|problems| panic!("{problems:?}"))
        .routes;
    assert_eq!(routes.routes.len(), 50);
    routes
}

/// A verifier of one ES256 key set in a file, and a valid token it has cached.
fn verifier_and_token(dir: &tempfile::TempDir) -> (Arc<TokenVerifier>, String) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let ec = EcKey::generate(&group).expect("an EC key");
    let mut context = BigNumContext::new().expect("a context");
    let point = ec
        .public_key()
        .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut context)
        .expect("the public point");
    let jwk = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "bench", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]});
    let path = dir.path().join("jwks.json");
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(jwk.to_string().as_bytes()))
        .expect("write the key set");
    let pkey = PKey::from_ec_key(ec).expect("a key");
    let key = EncodingKey::from_ec_der(&pkey.private_key_to_pkcs8().expect("PKCS#8"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "api", "sub": "user1", "exp": now + 7200, "jti": "t1",
        "scope": "read", "email": "user1@example.com", "groups": ["dev", "ops", "payments"],
        "name": "User One", "preferred_username": "user1",
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("a token");
    let options = TokenOptions {
        providers: vec![ProviderOptions {
            audiences: vec!["api".into()],
            ..ProviderOptions::new(ISSUER, KeysFrom::File(path))
        }],
        ..TokenOptions::default()
    };
    let verifier = TokenVerifier::start(&options, Arc::new(MemoryRevocations::with_limit(10)))
        .expect("a verifier")
        .expect("a provider");
    let verifier = Arc::new(verifier);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !verifier.ready() {
        assert!(Instant::now() < deadline, "the key file did not load");
        std::thread::sleep(Duration::from_millis(10));
    }
    (verifier, token)
}
