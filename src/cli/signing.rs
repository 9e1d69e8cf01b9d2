//! Signing keys for `token v1 jwks` and `token v1 mint`: a private key from a PEM file, the JWK
//! of its public half, and tokens signed with it. For trying the service and testing it; real
//! tokens come from an identity provider.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use serde_json::{json, Value};

use crate::tokens::keys::{algorithms_for, KeyType, MIN_RSA_BITS};

/// A private key read from PEM, with the algorithm it signs with.
pub(super) struct SigningKey {
    key: PKey<Private>,
    kid: String,
    algorithm: Algorithm,
}

/// The type of `key`, as the server's key set names types: what it signs with follows from it,
/// by the same rule the server verifies by.
fn key_type(key: &PKey<Private>) -> Result<KeyType, String> {
    match key.id() {
        Id::RSA => Ok(KeyType::Rsa(key.bits() as usize)),
        Id::EC => match key.ec_key().ok().and_then(|k| k.group().curve_name()) {
            Some(Nid::X9_62_PRIME256V1) => Ok(KeyType::P256),
            Some(Nid::SECP384R1) => Ok(KeyType::P384),
            _ => Err("EC keys must be on P-256 or P-384".to_owned()),
        },
        Id::ED25519 => Ok(KeyType::Ed25519),
        _ => Err("not an RSA, EC (P-256, P-384) or Ed25519 private key".to_owned()),
    }
}

/// The JOSE name of `algorithm`.
fn name(algorithm: Algorithm) -> String {
    serde_json::to_value(algorithm)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{algorithm:?}"))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// The private key in the PEM file `path` (PKCS#8, PKCS#1 or SEC1; unencrypted), to sign
    /// as `kid` with `algorithm` or the key type's default.
    pub(super) fn read(path: &Path, kid: &str, algorithm: Option<&str>) -> Result<Self, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let key = PKey::private_key_from_pem(&pem).map_err(|_| {
            format!(
                "{} holds no unencrypted PEM private key (e.g. `openssl genpkey -algorithm EC \
                 -pkeyopt ec_paramgen_curve:P-256`)",
                path.display()
            )
        })?;
        let key_type = key_type(&key).map_err(|why| format!("{}: {why}", path.display()))?;
        if matches!(key_type, KeyType::Rsa(bits) if bits < MIN_RSA_BITS) {
            return Err(format!(
                "{}: {key_type}; the server accepts RSA keys of {MIN_RSA_BITS} bits or more",
                path.display()
            ));
        }
        // The first is the default: RS256 for RSA keys.
        let allowed = algorithms_for(key_type);
        let algorithm = match algorithm {
            None => allowed[0],
            Some(asked) => *allowed
                .iter()
                .find(|a| name(**a).eq_ignore_ascii_case(asked))
                .ok_or_else(|| {
                    let names: Vec<String> = allowed.iter().map(|a| name(*a)).collect();
                    format!(
                        "--alg {asked} does not fit this key; it signs with {}",
                        names.join(", ")
                    )
                })?,
        };
        Ok(Self {
            key,
            kid: kid.to_owned(),
            algorithm,
        })
    }

    /// The JWK of the public half, with its kid, `use: sig` and algorithm.
    pub(super) fn jwk(&self) -> Result<Value, String> {
        let failed = |e: openssl::error::ErrorStack| format!("cannot export the public key: {e}");
        let mut jwk = match self.key.id() {
            Id::RSA => {
                let rsa = self.key.rsa().map_err(failed)?;
                json!({"kty": "RSA", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
            }
            Id::EC => {
                let ec = self.key.ec_key().map_err(failed)?;
                let (crv, size) = match self.algorithm {
                    Algorithm::ES256 => ("P-256", 32),
                    _ => ("P-384", 48),
                };
                let mut x = openssl::bn::BigNum::new().map_err(failed)?;
                let mut y = openssl::bn::BigNum::new().map_err(failed)?;
                let mut ctx = BigNumContext::new().map_err(failed)?;
                ec.public_key()
                    .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                    .map_err(failed)?;
                let x = x.to_vec_padded(size).map_err(failed)?;
                let y = y.to_vec_padded(size).map_err(failed)?;
                json!({"kty": "EC", "crv": crv, "x": b64(&x), "y": b64(&y)})
            }
            _ => {
                let raw = self.key.raw_public_key().map_err(failed)?;
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&raw)})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(name(self.algorithm));
        Ok(jwk)
    }

    /// `claims` signed as a compact JWS with this key, its kid in the header.
    pub(super) fn sign(&self, claims: &Value) -> Result<String, String> {
        let failed = |e: openssl::error::ErrorStack| format!("cannot export the private key: {e}");
        let key = match self.key.id() {
            // PKCS#1 DER for RSA, PKCS#8 DER for the others: what the signer reads.
            Id::RSA => EncodingKey::from_rsa_der(
                &self
                    .key
                    .rsa()
                    .and_then(|r| r.private_key_to_der())
                    .map_err(failed)?,
            ),
            Id::EC => EncodingKey::from_ec_der(&self.key.private_key_to_pkcs8().map_err(failed)?),
            _ => EncodingKey::from_ed_der(&self.key.private_key_to_pkcs8().map_err(failed)?),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| format!("cannot sign: {e}"))
    }
}
