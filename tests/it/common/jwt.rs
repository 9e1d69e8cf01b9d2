//! Signing keys and tokens made at test time: a key of each family the server verifies, its
//! public half as a JWK, and compact JWS tokens signed with it (by `jsonwebtoken`, so the server
//! is checked against a signer, not against itself). Also the raw pieces hostile tokens are made
//! of.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde_json::{json, Value};

/// The issuer the test servers accept.
pub const ISSUER: &str = "https://id.mrmat.test";

/// The audience the test servers accept.
pub const AUDIENCE: &str = "mrmat-api";

/// A private key with its kid and the algorithm its tokens are signed with.
pub struct SigningKey {
    /// The key id tokens name.
    pub kid: String,
    /// The algorithm tokens signed with it name.
    pub alg: Algorithm,
    pkey: PKey<Private>,
    encoding: EncodingKey,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key, signing with `alg` (an RS* or PS* algorithm).
    pub fn rsa(kid: &str, alg: Algorithm) -> Self {
        let rsa = Rsa::generate(2048).expect("generate an RSA key");
        let encoding = EncodingKey::from_rsa_der(&rsa.private_key_to_der().expect("PKCS#1 DER"));
        let pkey = PKey::from_rsa(rsa).expect("wrap the RSA key");
        Self::new(kid, alg, pkey, encoding)
    }

    /// A fresh P-256 key, signing with ES256.
    pub fn p256(kid: &str) -> Self {
        Self::ec(kid, Nid::X9_62_PRIME256V1, Algorithm::ES256)
    }

    /// A fresh P-384 key, signing with ES384.
    pub fn p384(kid: &str) -> Self {
        Self::ec(kid, Nid::SECP384R1, Algorithm::ES384)
    }

    /// A fresh Ed25519 key, signing with EdDSA.
    pub fn ed25519(kid: &str) -> Self {
        let pkey = PKey::generate_ed25519().expect("generate an Ed25519 key");
        let encoding = EncodingKey::from_ed_der(&pkey.private_key_to_pkcs8().expect("PKCS#8"));
        Self::new(kid, Algorithm::EdDSA, pkey, encoding)
    }

    fn ec(kid: &str, curve: Nid, alg: Algorithm) -> Self {
        let group = EcGroup::from_curve_name(curve).expect("a named curve");
        let ec = EcKey::generate(&group).expect("generate an EC key");
        let pkey = PKey::from_ec_key(ec).expect("wrap the EC key");
        let encoding = EncodingKey::from_ec_der(&pkey.private_key_to_pkcs8().expect("PKCS#8"));
        Self::new(kid, alg, pkey, encoding)
    }

    fn new(kid: &str, alg: Algorithm, pkey: PKey<Private>, encoding: EncodingKey) -> Self {
        Self {
            kid: kid.to_owned(),
            alg,
            pkey,
            encoding,
        }
    }

    /// The public half as a JWK, with `kid`, `use: sig` and no `alg` (as most providers
    /// publish them).
    pub fn jwk(&self) -> Value {
        let mut jwk = if let Ok(rsa) = self.pkey.rsa() {
            json!({"kty": "RSA", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
        } else if let Ok(ec) = self.pkey.ec_key() {
            let group = ec.group();
            let (crv, size) = match group.curve_name() {
                Some(Nid::X9_62_PRIME256V1) => ("P-256", 32),
                Some(Nid::SECP384R1) => ("P-384", 48),
                other => panic!("no JWK for curve {other:?}"),
            };
            let mut ctx = BigNumContext::new().expect("a BN context");
            let mut x = openssl::bn::BigNum::new().expect("a BN");
            let mut y = openssl::bn::BigNum::new().expect("a BN");
            ec.public_key()
                .affine_coordinates(group, &mut x, &mut y, &mut ctx)
                .expect("the public point");
            let x = x.to_vec_padded(size).expect("x fits");
            let y = y.to_vec_padded(size).expect("y fits");
            json!({"kty": "EC", "crv": crv, "x": b64(&x), "y": b64(&y)})
        } else {
            let raw = self.pkey.raw_public_key().expect("an Ed25519 public key");
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&raw)})
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public half as PEM (SubjectPublicKeyInfo), what an HMAC confusion attack uses as the
    /// secret.
    pub fn public_pem(&self) -> Vec<u8> {
        self.pkey.public_key_to_pem().expect("a public PEM")
    }

    /// A token with the usual header (`alg`, `typ`, `kid`) over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": alg_name(self.alg), "typ": "JWT", "kid": self.kid});
        self.sign_with_header(&header, claims)
    }

    /// A token with exactly `header` over `claims`, signed with this key's algorithm.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_as(self.alg, header, claims)
    }

    /// A token with `header` over `claims`, signed with `alg` (which must suit the key).
    pub fn sign_as(&self, alg: Algorithm, header: &Value, claims: &Value) -> String {
        self.sign_payload(alg, header, claims.to_string().as_bytes())
    }

    /// A token whose header and payload are exactly the JSON texts given (a member named twice,
    /// say, which no JSON value can hold), signed with this key's algorithm.
    pub fn sign_texts(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).expect("sign");
        format!("{input}.{signature}")
    }

    /// A token with `header` over any `payload` bytes, signed with `alg`.
    pub fn sign_payload(&self, alg: Algorithm, header: &Value, payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, alg).expect("sign");
        format!("{input}.{signature}")
    }
}

/// A key set document holding the public halves of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
    json!({ "keys": keys }).to_string()
}

/// The name of `alg` as a JWS header spells it.
pub fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .expect("an algorithm serializes")
        .as_str()
        .expect("as a string")
        .to_owned()
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Claims of a token for `subject` that is valid for an hour on the test servers, with a jti
/// of its own.
pub fn claims(subject: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "jti": format!("{subject}-{}", fastrand::u64(..)),
        "scope": "read write",
    })
}

/// Claims for `subject` with a list of `numbers` zeros beside them: a token of about 8 KiB for
/// 2,900, whose answer's claims (each number a protobuf Value) are about 32 KB.
pub fn claims_with_numbers(subject: &str, numbers: usize) -> Value {
    let mut claims = claims(subject);
    claims["n"] = Value::Array(vec![Value::from(0); numbers]);
    claims
}

/// base64url without padding, as JWS parts are.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims`, base64url encoded: what a signature covers.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A token signed with HMAC-`alg` using `secret`: the shape of an algorithm confusion attack
/// when the secret is a public key.
pub fn hmac_signed(alg: Algorithm, secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let key = EncodingKey::from_secret(secret);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).expect("HMAC");
    format!("{input}.{signature}")
}

/// A key set file in a folder of its own (deleted with this value), and the keys in it.
pub struct KeyFile {
    dir: tempfile::TempDir,
}

impl KeyFile {
    /// A key set file holding the public halves of `keys`.
    pub fn new(keys: &[&SigningKey]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mrmat-jwks-")
            .tempdir()
            .expect("create a temporary folder");
        let file = Self { dir };
        file.write(keys);
        file
    }

    /// The folder holding the key set file (`jwks.json`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The key set file's path.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// Replaces the file's keys with `keys`, atomically (as a deploy tool would), so a load
    /// never sees half a file.
    pub fn write(&self, keys: &[&SigningKey]) {
        let partial = self.dir.path().join("jwks.json.partial");
        std::fs::write(&partial, jwks(keys)).expect("write the key set");
        std::fs::rename(&partial, self.path()).expect("move the key set into place");
    }
}

/// The test configuration (see `super::test_config`) with the token service on: keys from
/// `path`, issuer [`ISSUER`], audience [`AUDIENCE`].
pub fn file_provider_config(path: std::path::PathBuf) -> mrmat_rust_api_grpc::server::ServerConfig {
    use mrmat_rust_api_grpc::tokens::{KeysFrom, ProviderOptions};
    let mut config = super::test_config();
    config.tokens.providers = vec![ProviderOptions {
        audiences: vec![AUDIENCE.to_owned()],
        ..ProviderOptions::new(ISSUER, KeysFrom::File(path))
    }];
    config
}

/// The test configuration with the token service on: keys from `keys`, issuer [`ISSUER`],
/// audience [`AUDIENCE`].
pub fn token_config(keys: &KeyFile) -> mrmat_rust_api_grpc::server::ServerConfig {
    file_provider_config(keys.path())
}

/// The arguments that turn the server binary's token service on, as [`token_config`] does.
pub fn token_args(keys: &KeyFile) -> Vec<String> {
    vec![
        "--jwks-file".to_owned(),
        keys.path().display().to_string(),
        "--token-issuer".to_owned(),
        ISSUER.to_owned(),
        "--token-audience".to_owned(),
        AUDIENCE.to_owned(),
    ]
}

/// An input for the token service.
pub fn input(request_id: u64, token: &str) -> mrmat_rust_api_grpc::proto::TokenV1Input {
    let mut input = mrmat_rust_api_grpc::proto::TokenV1Input::new();
    input.request_id = request_id;
    input.token = token.to_owned();
    input
}

/// Sends `inputs` over one ValidateStream call while reading its answers, and returns every
/// answer in the order it came, and how the stream ended.
pub fn validate_stream(
    client: &mrmat_rust_api_grpc::proto::TokenV1ProtoClient,
    inputs: Vec<mrmat_rust_api_grpc::proto::TokenV1Input>,
) -> (
    Vec<mrmat_rust_api_grpc::proto::TokenV1Output>,
    grpcio::Result<()>,
) {
    use futures::{SinkExt as _, StreamExt as _};
    let options = grpcio::CallOption::default().timeout(std::time::Duration::from_secs(60));
    let (mut sink, mut answers) = client
        .validate_stream_opt(options)
        .expect("the stream opens");
    futures::executor::block_on(async move {
        let send = async {
            let mut inputs = futures::stream::iter(
                inputs
                    .into_iter()
                    .map(|i| Ok((i, grpcio::WriteFlags::default()))),
            );
            sink.send_all(&mut inputs).await?;
            match sink.close().await {
                // grpcio reports a half-close still in flight when the status arrives first
                // (the server answered the close at once) as RpcFinished: the call has ended,
                // and the receiving side says how.
                Err(grpcio::Error::RpcFinished(_)) => Ok(()),
                closed => closed,
            }
        };
        let receive = async {
            let mut got = Vec::new();
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok(answer) => got.push(answer),
                    Err(e) => return (got, Err(e)),
                }
            }
            (got, Ok(()))
        };
        let (sent, (got, ended)) = futures::join!(send, receive);
        (got, sent.and(ended))
    })
}

/// Sends `batches` over one ValidateBatches call, each once the one before has its answers
/// (grpcio's client reports a failed status ahead of answers still in flight), half-closes, and
/// returns every batch of answers and how the call ended.
pub fn validate_batches(
    client: &mrmat_rust_api_grpc::proto::TokenV1ProtoClient,
    batches: Vec<mrmat_rust_api_grpc::proto::TokenV1InputBatch>,
) -> (
    Vec<mrmat_rust_api_grpc::proto::TokenV1OutputBatch>,
    grpcio::Result<()>,
) {
    use futures::{SinkExt as _, StreamExt as _};
    let (mut sink, mut answers) = client
        .validate_batches_opt(super::call())
        .expect("the stream opens");
    futures::executor::block_on(async move {
        let mut got = Vec::new();
        for batch in batches {
            if let Err(e) = sink.send((batch, grpcio::WriteFlags::default())).await {
                // The call has ended: the receiver says how.
                if !matches!(e, grpcio::Error::RpcFinished(_)) {
                    return (got, Err(e));
                }
            }
            match answers.next().await {
                Some(Ok(answer)) => got.push(answer),
                Some(Err(e)) => return (got, Err(e)),
                None => return (got, Ok(())),
            }
        }
        if let Err(e) = sink.close().await {
            if !matches!(e, grpcio::Error::RpcFinished(_)) {
                return (got, Err(e));
            }
        }
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(answer) => got.push(answer),
                Err(e) => return (got, Err(e)),
            }
        }
        (got, Ok(()))
    })
}
