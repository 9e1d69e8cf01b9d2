//! Sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificate-bound) at the forward-auth
//! port of the server binary: a bound token is allowed only with its proof or its certificate,
//! and every way of presenting it wrongly is refused with the answer RFC 9449 section 7.1 asks
//! for. Proofs are made here with `jsonwebtoken`, by a client key of the test's own.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::common;

use common::hostile::{self, Raw};
use common::jwt::{claims, hmac_signed, now, token_args, KeyFile, SigningKey};
use common::pki::Pki;
use common::ServerProcess;

const URL: &str = "https://api.example/orders";

struct Port {
    _server: ServerProcess,
    address: String,
    issuer: SigningKey,
    _keys: KeyFile,
}

fn forward_auth(extra: &[&str]) -> Port {
    let issuer = SigningKey::p256("idp");
    let keys = KeyFile::new(&[&issuer]);
    let mut args: Vec<String> = token_args(&keys);
    args.extend(["--store", "memory", "--forward-auth-listen", "127.0.0.1:0"].map(String::from));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let address = server
        .forward_auth_address()
        .expect("the start-up line says where forward auth is");
    Port {
        _server: server,
        address,
        issuer,
        _keys: keys,
    }
}

/// A client's DPoP key: its public JWK (as a proof's header carries it) and thumbprint.
pub struct ClientKey {
    key: SigningKey,
    jwk: Value,
}

impl ClientKey {
    pub fn new() -> Self {
        let key = SigningKey::p256("unused");
        let mut jwk = key.jwk();
        let object = jwk.as_object_mut().expect("an object");
        object.remove("kid");
        object.remove("use");
        Self { key, jwk }
    }

    /// RFC 7638: SHA-256 of the required members in lexical order, no spaces.
    pub fn thumbprint(&self) -> String {
        let j = &self.jwk;
        let canonical = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            j["crv"].as_str().unwrap(),
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()))
    }

    /// The usual proof's claims for `method` `url` and `token`.
    fn claims(method: &str, url: &str, token: &str) -> Value {
        json!({
            "jti": format!("p-{}", fastrand::u64(..)),
            "htm": method,
            "htu": url,
            "iat": now(),
            "ath": URL_SAFE_NO_PAD.encode(openssl::sha::sha256(token.as_bytes())),
        })
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    pub fn proof(&self, method: &str, url: &str, token: &str) -> String {
        self.sign(&self.header(), &Self::claims(method, url, token))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        self.key.sign_with_header(header, claims)
    }
}

/// The DER of `pki`'s certificate `name` (`client.pem`, ...).
fn certificate_der(pki: &Pki, name: &str) -> Vec<u8> {
    let pem = std::fs::read(pki.path(name)).expect("a certificate");
    openssl::x509::X509::from_pem(&pem)
        .expect("PEM")
        .to_der()
        .expect("DER")
}

/// A token of `port`'s issuer with `cnf`.
fn bound_token(port: &Port, cnf: Value) -> String {
    let mut claims = claims("alice");
    claims["cnf"] = cnf;
    port.issuer.sign(&claims)
}

/// `GET /auth` as a proxy asks for a client's `GET https://api.example/orders?page=2`.
fn ask(address: &str, headers: &[String]) -> hostile::Answer {
    let mut raw = Raw::connect(address);
    let forwarded = "X-Forwarded-Method: GET\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: \
                     api.example\r\nX-Forwarded-Uri: /orders?page=2\r\n";
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!("GET /auth HTTP/1.1\r\nHost: fa\r\n{forwarded}{extra}\r\n");
    assert!(raw.send(request.as_bytes()));
    raw.answer().expect("an answer")
}

fn dpop(address: &str, token: &str, proof: &str) -> hostile::Answer {
    ask(
        address,
        &[
            format!("Authorization: DPoP {token}"),
            format!("DPoP: {proof}"),
        ],
    )
}

/// A 401 with a DPoP challenge naming `error`, its body containing `why`.
fn assert_refused(answer: &hostile::Answer, error: &str, why: &str) {
    assert_eq!(answer.status, 401, "{answer:?}");
    let challenge = answer.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("DPoP "), "{answer:?}");
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{answer:?}"
    );
    assert!(
        challenge.contains("algs=\"ES256 ES384 PS256 PS384 PS512 EdDSA\""),
        "{answer:?}"
    );
    assert!(answer.body.contains(why), "{why}: {answer:?}");
}

#[test]
fn a_dpop_bound_token_is_allowed_with_its_proof_and_every_wrong_proof_is_refused() {
    let port = forward_auth(&["--metrics-listen", "127.0.0.1:0"]);
    let client = ClientKey::new();
    let token = bound_token(&port, json!({"jkt": client.thumbprint()}));
    let address = &port.address;

    let answer = dpop(address, &token, &client.proof("GET", URL, &token));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), Some("alice"));
    // Spellings of the same URL are the same URL (RFC 3986 normalization).
    let answer = dpop(
        address,
        &token,
        &client.proof("GET", "HTTPS://API.example:443/orders", &token),
    );
    assert_eq!(answer.status, 200, "{answer:?}");

    let invalid = |proof: String, why: &str| {
        assert_refused(&dpop(address, &token, &proof), "invalid_dpop_proof", why);
    };
    let proof_claims = || ClientKey::claims("GET", URL, &token);
    let header = |change: &dyn Fn(&mut Value)| {
        let mut header = client.header();
        change(&mut header);
        header
    };
    // alg none, and HS256 with the public key's bytes as the secret.
    let none_header = header(&|h| h["alg"] = json!("none"));
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(none_header.to_string()),
        URL_SAFE_NO_PAD.encode(proof_claims().to_string())
    );
    invalid(unsigned, "unsigned (alg none)");
    let hs = header(&|h| h["alg"] = json!("HS256"));
    invalid(
        hmac_signed(
            Algorithm::HS256,
            &client.key.public_pem(),
            &hs,
            &proof_claims(),
        ),
        "shared secret (HS256)",
    );
    // A private key in jwk (its d, taken from another key: the member alone is refused).
    let private = header(&|h| h["jwk"]["d"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32])));
    invalid(
        client.sign(&private, &proof_claims()),
        "holds a private key",
    );
    invalid(
        client.sign(&header(&|h| h["typ"] = json!("JWT")), &proof_claims()),
        "typ is not dpop+jwt",
    );
    invalid(
        client.proof("POST", URL, &token),
        "for method \"POST\" (htm)",
    );
    for (url, why) in [
        ("https://other.example/orders", "not this request's URL"),
        ("https://api.example:8443/orders", "not this request's URL"),
        (
            "https://api.example/orders?page=2",
            "has a query or fragment",
        ),
        ("https://api.example/orders/", "not this request's URL"),
        ("http://api.example/orders", "not this request's URL"),
    ] {
        invalid(client.proof("GET", url, &token), why);
    }
    let mut old = proof_claims();
    old["iat"] = json!(now() - 3600);
    invalid(client.sign(&client.header(), &old), "made 3600 s ago");
    let mut ahead = proof_claims();
    ahead["iat"] = json!(now() + 3600);
    invalid(client.sign(&client.header(), &ahead), "in the future");
    let other_token = bound_token(&port, json!({"jkt": client.thumbprint()}));
    invalid(
        client.proof("GET", URL, &other_token),
        "for another access token",
    );
    let mut no_ath = proof_claims();
    no_ath.as_object_mut().unwrap().remove("ath");
    invalid(client.sign(&client.header(), &no_ath), "has no ath");
    let stranger = ClientKey::new();
    invalid(stranger.proof("GET", URL, &token), "signed by another key");
    // A proof whose signature is not its key's.
    let good = client.proof("GET", URL, &token);
    let forged = format!(
        "{}.{}",
        &good[..good.rfind('.').unwrap()],
        URL_SAFE_NO_PAD.encode([7u8; 64])
    );
    invalid(forged, "does not verify");
    // Another key's proof is refused by its thumbprint before any signature is checked: a
    // stranger's key (an RSA key of any size, say) costs no verification.
    let strangers = stranger.proof("GET", URL, &token);
    let unverifiable = format!("{}.AAAA", &strangers[..strangers.rfind('.').unwrap()]);
    invalid(unverifiable, "signed by another key");

    // A header that names alg twice, and one nested 2,000 deep (within the size limit): refused,
    // never read twice or overflowed.
    let jwk = client.jwk.to_string();
    let twice = format!(r#"{{"typ":"dpop+jwt","alg":"none","alg":"ES256","jwk":{jwk}}}"#);
    let deep = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk},"x":{}{}}}"#,
        "[".repeat(2_000),
        "]".repeat(2_000)
    );
    for (header, why) in [(twice, "more than once"), (deep, "not valid JSON")] {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(proof_claims().to_string())
        );
        invalid(format!("{input}.AAAA"), why);
    }

    // Replayed: the same proof twice.
    let proof = client.proof("GET", URL, &token);
    assert_eq!(dpop(address, &token, &proof).status, 200);
    invalid(proof, "used before (its jti)");

    // Two DPoP headers; none.
    let two = ask(
        address,
        &[
            format!("Authorization: DPoP {token}"),
            format!("DPoP: {}", client.proof("GET", URL, &token)),
            format!("DPoP: {}", client.proof("GET", URL, &token)),
        ],
    );
    assert_refused(&two, "invalid_dpop_proof", "several DPoP headers");
    let none = ask(address, &[format!("Authorization: DPoP {token}")]);
    assert_refused(&none, "invalid_dpop_proof", "no DPoP header");
    // A proof of 1 MiB is refused by the port's header limit, before any check.
    let huge = ask(
        address,
        &[
            format!("Authorization: DPoP {token}"),
            format!("DPoP: {}", "a".repeat(1 << 20)),
        ],
    );
    assert!(matches!(huge.status, 400 | 431), "{huge:?}");
    // One of 9 KiB reaches the check, and is refused unread.
    invalid("a.".repeat(4600), "limit is 8192");

    // The bound token as Bearer: refused, with a DPoP challenge.
    let bearer = ask(address, &[format!("Authorization: Bearer {token}")]);
    assert_refused(&bearer, "invalid_token", "send it with the DPoP scheme");
    // An unbound token with the DPoP scheme is refused too; as Bearer it is valid.
    let unbound = port.issuer.sign(&claims("bob"));
    assert_refused(
        &dpop(address, &unbound, &client.proof("GET", URL, &unbound)),
        "invalid_token",
        "not bound to a key",
    );
    let answer = ask(address, &[format!("Authorization: Bearer {unbound}")]);
    assert_eq!(answer.status, 200, "{answer:?}");

    // Counted by binding and outcome: the three valid proofs, the replay among the refusals.
    let series = |binding: &str, outcome: &str| {
        port._server
            .metric(&format!(
                "mrmat_token_bound_checks_total{{binding=\"{binding}\",outcome=\"{outcome}\"}}"
            ))
            .unwrap_or(0.0)
    };
    assert_eq!(series("dpop", "valid"), 3.0);
    assert!(series("dpop", "invalid_dpop_proof") >= 20.0);
    assert_eq!(series("dpop", "wrong_binding"), 1.0);
    assert_eq!(series("none", "wrong_binding"), 1.0);
}

#[test]
fn with_a_nonce_secret_a_proof_needs_a_current_nonce_which_every_replica_accepts() {
    let dir = tempfile::tempdir().expect("a folder");
    let secret = dir.path().join("nonce.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("written");
    let secret = secret.to_str().expect("UTF-8").to_owned();
    let one = forward_auth(&["--dpop-nonce-secret-file", &secret]);
    let client = ClientKey::new();
    let token = bound_token(&one, json!({"jkt": client.thumbprint()}));
    let answer = dpop(&one.address, &token, &client.proof("GET", URL, &token));
    assert_refused(&answer, "use_dpop_nonce", "no current nonce");
    let nonce = answer.header("dpop-nonce").expect("a nonce").to_owned();

    let with_nonce = |nonce: &str| {
        let mut claims = ClientKey::claims("GET", URL, &token);
        claims["nonce"] = json!(nonce);
        client.sign(&client.header(), &claims)
    };
    let answer = dpop(&one.address, &token, &with_nonce(&nonce));
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = dpop(&one.address, &token, &with_nonce("forged-nonce"));
    assert_refused(&answer, "use_dpop_nonce", "no current nonce");

    // Another replica with the same secret (and the same keys) accepts that nonce.
    let mut args: Vec<String> = token_args(&one._keys);
    args.extend(
        [
            "--store",
            "memory",
            "--forward-auth-listen",
            "127.0.0.1:0",
            "--dpop-nonce-secret-file",
            &secret,
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let other = ServerProcess::start(&args);
    let address = other.forward_auth_address().expect("forward auth");
    let answer = dpop(&address, &token, &with_nonce(&nonce));
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[test]
fn a_certificate_bound_token_needs_its_certificate_from_a_header_only_when_trusted() {
    let pki = Pki::new();
    let der = |name: &str| certificate_der(&pki, name);
    let (mine, other) = (der("client.pem"), der("other-client.pem"));
    let thumbprint = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(&mine));
    let client_cert = |der: &[u8]| format!("Client-Cert: :{}:", STANDARD.encode(der));

    let trusting = forward_auth(&["--forward-auth-client-cert-header", "client-cert"]);
    let token = bound_token(&trusting, json!({"x5t#S256": thumbprint}));
    let bearer = format!("Authorization: Bearer {token}");
    let answer = ask(&trusting.address, &[bearer.clone(), client_cert(&mine)]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), Some("alice"));
    for (headers, why) in [
        (vec![bearer.clone()], "the request has none"),
        (
            vec![bearer.clone(), client_cert(&other)],
            "another client certificate",
        ),
    ] {
        let answer = ask(&trusting.address, &headers);
        assert_eq!(answer.status, 401, "{answer:?}");
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{answer:?}");
        assert!(challenge.contains("error=\"invalid_token\""), "{answer:?}");
        assert!(answer.body.contains(why), "{why}: {answer:?}");
    }
    // A header that is no certificate is the proxy's fault: 400, saying so.
    let answer = ask(
        &trusting.address,
        &[bearer.clone(), "Client-Cert: :bm90IGEgY2VydA==:".to_owned()],
    );
    assert_eq!(answer.status, 400, "{answer:?}");
    // Envoy's X-Forwarded-Client-Cert, by Hash or by Cert.
    let xfcc = forward_auth(&[
        "--forward-auth-client-cert-header",
        "x-forwarded-client-cert",
    ]);
    let token = bound_token(&xfcc, json!({"x5t#S256": thumbprint}));
    let bearer = format!("Authorization: Bearer {token}");
    let hash: String = openssl::sha::sha256(&mine)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pem = std::fs::read_to_string(pki.path("client.pem")).expect("PEM");
    let encoded: String =
        percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string();
    for value in [
        format!("By=spiffe://a/b;Hash={hash};Subject=\"CN=x,O=y\""),
        format!("By=spiffe://a/b;Cert=\"{encoded}\""),
    ] {
        let answer = ask(
            &xfcc.address,
            &[bearer.clone(), format!("X-Forwarded-Client-Cert: {value}")],
        );
        assert_eq!(answer.status, 200, "{value}: {answer:?}");
    }

    // A port not told to trust a header reads none: a forged one changes nothing.
    let untrusting = forward_auth(&[]);
    let token = bound_token(&untrusting, json!({"x5t#S256": thumbprint}));
    let answer = ask(
        &untrusting.address,
        &[format!("Authorization: Bearer {token}"), client_cert(&mine)],
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.body.contains("the request has none"), "{answer:?}");
}

#[test]
fn a_real_provider_s_dpop_and_certificate_bound_tokens_pass_forward_auth_with_their_proof_only() {
    let pki = Pki::new();
    let mut provider = common::oidc::OpenIdProvider::start(&pki);
    let ca = pki.path("ca.pem").display().to_string();
    let issuer = provider.issuer.clone();
    let server = ServerProcess::start(&[
        "--oidc-issuer",
        &issuer,
        "--jwks-ca-cert",
        &ca,
        "--token-audience",
        "api",
        "--store",
        "memory",
        "--forward-auth-listen",
        "127.0.0.1:0",
        "--forward-auth-client-cert-header",
        "client-cert",
    ]);
    let address = server.forward_auth_address().expect("forward auth");

    // The client asks for a DPoP-bound token with a proof for the token endpoint (no ath there).
    let client = ClientKey::new();
    let mut to_token_endpoint = ClientKey::claims("POST", &format!("{issuer}/token"), "");
    to_token_endpoint
        .as_object_mut()
        .expect("an object")
        .remove("ath");
    let token = provider.dpop_token(
        "ops-job",
        &client.sign(&client.header(), &to_token_endpoint),
    );
    let proof = || client.proof("GET", URL, &token);
    // The provider's keys load by discovery, in the background: poll until the token is judged.
    assert!(
        common::holds_within(std::time::Duration::from_secs(20), || dpop(
            &address,
            &token,
            &proof()
        )
        .status
            == 200),
        "the DPoP-bound token with its proof"
    );
    let answer = dpop(&address, &token, &proof());
    assert_eq!(
        answer.header("x-auth-subject"),
        Some("ops-job"),
        "{answer:?}"
    );
    let stolen = ask(&address, &[format!("Authorization: Bearer {token}")]);
    assert_refused(&stolen, "invalid_token", "send it with the DPoP scheme");
    let thief = ClientKey::new();
    assert_refused(
        &dpop(&address, &token, &thief.proof("GET", URL, &token)),
        "invalid_dpop_proof",
        "signed by another key",
    );

    // A certificate-bound one, by the client whose certificate the provider saw.
    let der = |name: &str| certificate_der(&pki, name);
    let (mine, other) = (der("client.pem"), der("other-client.pem"));
    let token = provider.certificate_bound_token(&mine);
    let bearer = format!("Authorization: Bearer {token}");
    let with = |der: &[u8]| format!("Client-Cert: :{}:", STANDARD.encode(der));
    let answer = ask(&address, &[bearer.clone(), with(&mine)]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-auth-subject"), Some("mtls-job"));
    for headers in [vec![bearer.clone()], vec![bearer.clone(), with(&other)]] {
        let answer = ask(&address, &headers);
        assert_eq!(answer.status, 401, "{answer:?}");
        assert!(answer.body.contains("client certificate"), "{answer:?}");
    }
}

/// `GET url` by curl over TLS, trusting `pki`'s CA and presenting its `client` certificate, with
/// `headers`; the answer.
fn curl(pki: &Pki, client: &str, url: &str, headers: &[String]) -> Option<hostile::Answer> {
    let mut command = std::process::Command::new("curl");
    command
        .args(["-sS", "-i", "--max-time", "10", "--cacert"])
        .arg(pki.path("ca.pem"))
        .arg("--cert")
        .arg(pki.path(&format!("{client}.pem")))
        .arg("--key")
        .arg(pki.path(&format!("{client}.key")));
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command
        .arg(url)
        .output()
        .expect("curl runs (ci/setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Some(hostile::Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

#[test]
fn through_envoy_with_client_certificates_bound_tokens_need_their_certificate_or_proof() {
    use common::proxies::{deployed, pypi_binary, App, Proxy};
    let pki = Pki::new();
    let issuer = SigningKey::p256("envoy-idp");
    let keys = KeyFile::new(&[&issuer]);
    let mut provider = common::oidc::OpenIdProvider::start(&pki);
    let grpc_port = common::free_port();
    let mut args = token_args(&keys);
    args.extend([
        "--store".to_owned(),
        "memory".to_owned(),
        "--listen".to_owned(),
    ]);
    args.push(format!("127.0.0.1:{grpc_port}"));
    // And the real provider's tokens (audience api), its keys by discovery.
    args.extend([
        "--oidc-issuer".to_owned(),
        provider.issuer.clone(),
        "--jwks-ca-cert".to_owned(),
        pki.path("ca.pem").display().to_string(),
        "--token-audience".to_owned(),
        "api".to_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _server = ServerProcess::start(&args);
    let app = App::start();
    let port = common::free_port();
    let path = |name: &str| pki.path(name).display().to_string();
    let config = deployed(
        "envoy/envoy-mtls.yaml",
        &[
            ("port_value: 8443", format!("port_value: {port}")),
            ("port_value: 3000", format!("port_value: {}", app.port())),
            ("port_value: 50051", format!("port_value: {grpc_port}")),
            (
                "port_value: 9901",
                format!("port_value: {}", common::free_port()),
            ),
            ("/etc/envoy/tls/server.pem", path("server.pem")),
            ("/etc/envoy/tls/server.key", path("server.key")),
            ("/etc/envoy/tls/client-ca.pem", path("ca.pem")),
        ],
    );
    let base = format!("https://127.0.0.1:{port}");
    let ready_url = format!("{base}/ready");
    let _envoy = Proxy::start_until(
        &pypi_binary("envoy"),
        &[
            "-c",
            "{dir}/envoy.yaml",
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
        &[("envoy.yaml", config)],
        format!("127.0.0.1:{port}"),
        |_| curl(&pki, "client", &ready_url, &[]).is_some_and(|a| a.status == 401),
    );

    // Certificate-bound: the token names client.pem; admin-client.pem (same CA) is another.
    let der = |name: &str| certificate_der(&pki, name);
    let thumbprint = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(&der("client.pem")));
    let mut bound = claims("carol");
    bound["cnf"] = json!({"x5t#S256": thumbprint});
    let token = issuer.sign(&bound);
    let bearer = format!("Authorization: Bearer {token}");
    let url = format!("{base}/orders");
    let answer = curl(&pki, "client", &url, std::slice::from_ref(&bearer)).expect("an answer");
    assert!(answer.reached_app(), "{answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["carol"]);
    let answer = curl(&pki, "admin-client", &url, &[bearer]).expect("an answer");
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer.body.contains("another client certificate"),
        "{answer:?}"
    );

    // DPoP: the proof names the URL the client asked for, which Envoy's CheckRequest carries.
    let client = ClientKey::new();
    let mut bound = claims("dave");
    bound["cnf"] = json!({"jkt": client.thumbprint()});
    let token = issuer.sign(&bound);
    let proof = client.proof("GET", &url, &token);
    let headers = [
        format!("Authorization: DPoP {token}"),
        format!("DPoP: {proof}"),
    ];
    let answer = curl(&pki, "client", &format!("{url}?page=1"), &headers).expect("an answer");
    assert!(answer.reached_app(), "{answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["dave"]);
    let replayed = curl(&pki, "client", &url, &headers).expect("an answer");
    assert_eq!(replayed.status, 401, "{replayed:?}");
    let challenge = replayed.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains("invalid_dpop_proof"),
        "{replayed:?}"
    );
    let elsewhere = client.proof("GET", &format!("{base}/admin"), &token);
    let answer = curl(
        &pki,
        "client",
        &url,
        &[
            format!("Authorization: DPoP {token}"),
            format!("DPoP: {elsewhere}"),
        ],
    )
    .expect("an answer");
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.body.contains("not this request's URL"), "{answer:?}");

    // The real provider's certificate-bound token, for client.pem, through the same listener.
    let token = provider.certificate_bound_token(&der("client.pem"));
    let bearer = format!("Authorization: Bearer {token}");
    assert!(
        common::holds_within(std::time::Duration::from_secs(20), || {
            curl(&pki, "client", &url, std::slice::from_ref(&bearer))
                .is_some_and(|answer| answer.reached_app())
        }),
        "the provider's certificate-bound token with its certificate"
    );
    let answer =
        curl(&pki, "admin-client", &url, std::slice::from_ref(&bearer)).expect("an answer");
    assert_eq!(answer.status, 401, "{answer:?}");
    // And its DPoP-bound one, with a proof for the URL the client asked for.
    let mut to_token_endpoint =
        ClientKey::claims("POST", &format!("{}/token", provider.issuer), "");
    to_token_endpoint
        .as_object_mut()
        .expect("an object")
        .remove("ath");
    let token = provider.dpop_token(
        "dev-job",
        &client.sign(&client.header(), &to_token_endpoint),
    );
    let headers = [
        format!("Authorization: DPoP {token}"),
        format!("DPoP: {}", client.proof("GET", &url, &token)),
    ];
    let answer = curl(&pki, "client", &url, &headers).expect("an answer");
    assert!(answer.reached_app(), "{answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["dev-job"]);
}

#[test]
fn apps_ask_about_bound_tokens_with_the_proof_or_certificate_by_the_validator_and_the_cli() {
    use mrmat_rust_api_grpc::client::{Presented, TokenValidator, ValidatorConfig};
    use mrmat_rust_api_grpc::proto::TokenV1Verdict;

    let issuer = SigningKey::p256("app-idp");
    let keys = KeyFile::new(&[&issuer]);
    let mut args = token_args(&keys);
    args.extend(["--store", "memory", "--listen", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let client = ClientKey::new();
    let mut bound = claims("alice");
    bound["cnf"] = json!({"jkt": client.thumbprint()});
    let token = issuer.sign(&bound);

    // The CLI: the proof from a file, never argv.
    let dir = tempfile::tempdir().expect("a folder");
    let proof_file = dir.path().join("proof");
    std::fs::write(&proof_file, client.proof("GET", URL, &token)).expect("written");
    let cli = |extra: &[&str]| {
        let out = common::client_command(&server.address)
            .args(["token", "v1", "validate", &token])
            .args(extra)
            .output()
            .expect("the client runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let proof_path = proof_file.to_str().expect("UTF-8");
    let with_proof = [
        "--dpop-proof-file",
        proof_path,
        "--http-method",
        "GET",
        "--http-url",
        "https://api.example/orders?page=1",
    ];
    let first = cli(&with_proof);
    assert!(first.starts_with("[200] Valid: sub=alice"), "{first}");
    let again = cli(&with_proof);
    assert!(
        again.contains("[401] InvalidDpopProof") && again.contains("used before"),
        "{again}"
    );
    let bare = cli(&[]);
    assert!(
        bare.contains("[401] WrongBinding") && bare.contains("DPoP scheme"),
        "{bare}"
    );
    let usage = cli(&["--dpop-proof-file", proof_path]);
    assert!(usage.contains("--http-method"), "{usage}");

    // The validator apps embed.
    let validator = TokenValidator::connect(
        &server.address,
        &Default::default(),
        ValidatorConfig::default(),
    )
    .expect("no TLS files to read");
    let ask = |presented: &Presented| {
        let answer = validator
            .validate_presented(&token, presented)
            .expect("an answer");
        answer.output().clone()
    };
    let presented = |proof: String| Presented {
        dpop_proof: proof,
        http_method: "GET".to_owned(),
        http_url: URL.to_owned(),
        ..Presented::default()
    };
    let answer = ask(&presented(client.proof("GET", URL, &token)));
    assert_eq!(
        answer.verdict,
        TokenV1Verdict::TOKEN_V1_VALID.into(),
        "{answer:?}"
    );
    assert_eq!(answer.subject, "alice");
    let answer = ask(&presented(client.proof("POST", URL, &token)));
    assert_eq!(
        answer.verdict,
        TokenV1Verdict::TOKEN_V1_INVALID_DPOP_PROOF.into(),
        "{answer:?}"
    );
    // A proof of 1 MiB is refused by its length, unread.
    let answer = ask(&presented("x".repeat(1 << 20)));
    assert_eq!(
        answer.verdict,
        TokenV1Verdict::TOKEN_V1_INVALID_DPOP_PROOF.into()
    );
    assert!(
        answer.status.message.contains("limit is 8192"),
        "{answer:?}"
    );
    let mut no_url = presented(client.proof("GET", URL, &token));
    no_url.http_url.clear();
    let answer = ask(&no_url);
    assert!(
        answer.status.message.contains("http_url is empty"),
        "{answer:?}"
    );
    let answer = ask(&Presented {
        client_certificate: b"not a certificate".to_vec(),
        ..Presented::default()
    });
    assert_eq!(answer.verdict, TokenV1Verdict::TOKEN_V1_MALFORMED.into());
    validator.close();
}
