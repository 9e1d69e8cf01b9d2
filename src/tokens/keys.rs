//! The signing keys of a JSON Web Key Set (RFC 7517), each bound to the algorithms its type
//! allows: RSA keys to RS256/384/512 and PS256/384/512, EC P-256 to ES256, EC P-384 to ES384,
//! Ed25519 to EdDSA. A key's own `alg`, when it has one, narrows that to one algorithm.
//! Symmetric keys are never used, so a public key can never be taken for an HMAC secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::quote::quoted;

/// RSA keys shorter than this are refused: NIST has disallowed them since 2013, and the crypto
/// library would refuse every signature made with one anyway.
pub const MIN_RSA_BITS: usize = 2048;

const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The type of a signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA, with its modulus size in bits.
    Rsa(usize),
    /// ECDSA on NIST P-256.
    P256,
    /// ECDSA on NIST P-384.
    P384,
    /// EdDSA on Ed25519.
    Ed25519,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(bits) => write!(f, "an RSA key ({bits} bits)"),
            Self::P256 => f.write_str("an EC P-256 key"),
            Self::P384 => f.write_str("an EC P-384 key"),
            Self::Ed25519 => f.write_str("an Ed25519 key"),
        }
    }
}

/// One signing key, ready to verify.
pub struct Key {
    /// Its key id, when the set gives one.
    pub kid: Option<String>,
    /// What kind of key it is.
    pub key_type: KeyType,
    /// The algorithms it may verify.
    pub algorithms: Vec<Algorithm>,
    /// The key in the form the crypto library takes.
    pub(super) decoding: DecodingKey,
}

impl Key {
    /// How the key is named in a reason: by kid, or as the set's only key.
    pub fn name(&self) -> String {
        match &self.kid {
            Some(kid) => format!("key {}", quoted(kid)),
            None => "the key without a kid".to_owned(),
        }
    }
}

/// The usable keys of a key set, by key id.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    without_kid: Vec<Arc<Key>>,
    /// Each kept key as canonical JSON, sorted: equal for two loads of the same keys.
    fingerprint: Vec<String>,
    /// Counts the changes of the loaded key set; cached validations of an older one are not used.
    pub(super) generation: u64,
}

/// A key set read from a JWKS document, with what was left out of it and why.
pub struct Parsed {
    /// The usable keys.
    pub keys: KeySet,
    /// One line per key that was left out.
    pub skipped: Vec<String>,
}

impl KeySet {
    /// Reads a JWKS document. Keys that cannot be used are left out with a reason; a document
    /// that is not a key set, or leaves no usable key, is an error.
    pub fn parse(document: &[u8]) -> Result<Parsed, KeySetError> {
        let document: Value =
            serde_json::from_slice(document).map_err(|e| KeySetError::NotJson {
                reason: e.to_string(),
            })?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(KeySetError::NoKeysList);
        };
        let mut keys = KeySet::default();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let label = match entry.get("kid").and_then(Value::as_str) {
                Some(kid) => format!("key {}", quoted(kid)),
                None => format!("key #{}", index + 1),
            };
            let key = entry
                .as_object()
                .ok_or_else(|| "not a JSON object".to_owned())
                .and_then(signing_key);
            match key {
                Ok(Some(key)) => {
                    if let Err(why) = keys.add(key, entry) {
                        skipped.push(format!("{label}: {why}"));
                    }
                }
                Ok(None) => {} // an encryption key: not ours to use, nothing to report
                Err(why) => skipped.push(format!("{label}: {why}")),
            }
        }
        if keys.is_empty() {
            return Err(if skipped.is_empty() {
                KeySetError::NoSigningKey
            } else {
                KeySetError::NoUsableKey {
                    reasons: first_reasons(&skipped),
                }
            });
        }
        keys.fingerprint.sort();
        Ok(Parsed { keys, skipped })
    }

    fn add(&mut self, key: Key, json: &Value) -> Result<(), String> {
        let key = Arc::new(key);
        match &key.kid {
            Some(kid) if self.by_kid.contains_key(kid) => {
                return Err("another key earlier in the set has the same kid".to_owned())
            }
            Some(kid) => {
                self.by_kid.insert(kid.clone(), Arc::clone(&key));
            }
            None => self.without_kid.push(Arc::clone(&key)),
        }
        self.fingerprint.push(json.to_string());
        Ok(())
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key ids, sorted, for log lines.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Whether `other` holds the same keys.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.fingerprint == other.fingerprint
    }

    /// The key a token names: by its kid, or, for a token without one, the set's only key.
    /// `Err` says why there is none.
    pub fn find(&self, kid: Option<&str>) -> Result<&Arc<Key>, NoSuchKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid).ok_or_else(|| NoSuchKey::Kid {
                kid: kid.to_owned(),
            }),
            None if self.len() == 1 => Ok(self
                .by_kid
                .values()
                .chain(&self.without_kid)
                .next()
                .expect("one key")),
            None => Err(NoSuchKey::NoKidAmong { keys: self.len() }),
        }
    }
}

/// Why a document is not a key set with a usable key in it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not JSON at all.
    NotJson {
        /// The parser's words.
        reason: String,
    },
    /// JSON without a `keys` list.
    NoKeysList,
    /// Only encryption keys, or none.
    NoSigningKey,
    /// Signing keys, none of them usable.
    NoUsableKey {
        /// Why the first few were left out.
        reasons: String,
    },
}

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson { reason } => write!(f, "not a JSON Web Key Set: not JSON ({reason})"),
            Self::NoKeysList => f.write_str("not a JSON Web Key Set: it has no \"keys\" list"),
            Self::NoSigningKey => f.write_str("it holds no signing key"),
            Self::NoUsableKey { reasons } => {
                write!(f, "no usable signing key in it ({reasons})")
            }
        }
    }
}

impl std::error::Error for KeySetError {}

/// Why a key set holds no key for a token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoSuchKey {
    /// No key has the token's kid.
    Kid {
        /// The kid the token names.
        kid: String,
    },
    /// The token names no kid, and the set holds more than one key (or none).
    NoKidAmong {
        /// How many keys the set holds.
        keys: usize,
    },
}

impl fmt::Display for NoSuchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kid { kid } => write!(f, "no key with kid {} is in the key set", quoted(kid)),
            Self::NoKidAmong { keys } => write!(
                f,
                "the token names no key (kid), and the key set holds {keys} keys"
            ),
        }
    }
}

impl std::error::Error for NoSuchKey {}

/// The key a JWK describes, None for a key meant for encryption, or why it cannot be used.
// Long, as RFC 7517 and 7518 are: each check of a member, in the order a reason names it.
pub(super) fn signing_key(jwk: &Map<String, Value>) -> Result<Option<Key>, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("its {name} is not a string")),
        }
    };
    if text("use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    if let Some(operations) = jwk.get("key_ops") {
        let verifies = operations
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Ok(None);
        }
    }
    let kid = text("kid")?.map(str::to_owned);
    let param = |name: &str| -> Result<&str, String> {
        text(name)?.ok_or_else(|| format!("it has no {name}"))
    };
    let (key_type, decoding) = match param("kty")? {
        "RSA" => {
            let modulus = decode(param("n")?, "n")?;
            let exponent = decode(param("e")?, "e")?;
            let bits = bit_length(&modulus);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "an RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            let decoding = DecodingKey::from_rsa_raw_components(&modulus, &exponent);
            (KeyType::Rsa(bits), decoding)
        }
        "EC" => {
            let (key_type, size) = match param("crv")? {
                "P-256" => (KeyType::P256, 32),
                "P-384" => (KeyType::P384, 48),
                other => {
                    return Err(format!(
                        "EC curve {} is not supported (P-256 and P-384 are)",
                        quoted(other)
                    ))
                }
            };
            let (x, y) = (decode(param("x")?, "x")?, decode(param("y")?, "y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("its x and y are not {size} bytes each"));
            }
            let point = [&[4u8][..], &x, &y].concat(); // an uncompressed point, as SEC 1 encodes it
            (key_type, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if param("crv")? != "Ed25519" {
                return Err("of the OKP curves only Ed25519 is supported".to_owned());
            }
            let x = decode(param("x")?, "x")?;
            if x.len() != 32 {
                return Err("its x is not 32 bytes".to_owned());
            }
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x))
        }
        "oct" => {
            return Err(
                "a symmetric key (kty oct); shared secrets are never used to verify tokens"
                    .to_owned(),
            )
        }
        other => return Err(format!("key type {} is not supported", quoted(other))),
    };
    let fitting = algorithms_for(key_type);
    let algorithms = match text("alg")? {
        None => fitting.to_vec(),
        Some(alg) => match fitting.iter().find(|a| format!("{a:?}") == alg) {
            Some(algorithm) => vec![*algorithm],
            None => return Err(format!("its alg {} does not fit {key_type}", quoted(alg))),
        },
    };
    Ok(Some(Key {
        kid,
        key_type,
        algorithms,
        decoding,
    }))
}

/// The algorithms a key of this type may verify.
pub fn algorithms_for(key_type: KeyType) -> &'static [Algorithm] {
    match key_type {
        KeyType::Rsa(_) => RSA_ALGORITHMS,
        KeyType::P256 => &[Algorithm::ES256],
        KeyType::P384 => &[Algorithm::ES384],
        KeyType::Ed25519 => &[Algorithm::EdDSA],
    }
}

fn decode(value: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("its {name} is not base64url"))
}

/// The size of a big-endian unsigned integer in bits.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        None => 0,
        Some(first) => (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize,
    }
}

/// The first few of a key set's reasons, then how many more: a key set chose how many keys it
/// holds, and a log line must not grow with it.
pub(super) fn first_reasons(reasons: &[String]) -> String {
    const SHOWN: usize = 5;
    let shown = reasons[..reasons.len().min(SHOWN)].join("; ");
    match reasons.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown}; and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(kid: &str, bits: usize) -> Value {
        let mut n = vec![0u8; bits / 8];
        n[0] = 0x80;
        serde_json::json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"})
    }

    fn ec_jwk(kid: &str) -> Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&[1; 32]), "y": b64(&[2; 32])})
    }

    fn parse(keys: Vec<Value>) -> Result<Parsed, KeySetError> {
        KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn each_key_type_gets_only_its_own_algorithms() {
        let parsed = parse(vec![
            rsa_jwk("r", 2048),
            ec_jwk("e"),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": b64(&[3; 32])}),
        ])
        .expect("usable");
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        let keys = &parsed.keys;
        assert_eq!(keys.kids(), ["d", "e", "r"]);
        assert_eq!(keys.find(Some("r")).expect("r").algorithms, RSA_ALGORITHMS);
        assert_eq!(
            keys.find(Some("e")).expect("e").algorithms,
            [Algorithm::ES256]
        );
        assert_eq!(
            keys.find(Some("d")).expect("d").algorithms,
            [Algorithm::EdDSA]
        );
        assert_eq!(
            keys.find(Some("nope")).err(),
            Some(NoSuchKey::Kid { kid: "nope".into() })
        );
        assert_eq!(
            keys.find(None).err(),
            Some(NoSuchKey::NoKidAmong { keys: 3 }),
            "no kid and three keys"
        );
    }

    #[test]
    fn a_keys_own_alg_narrows_its_algorithms() {
        let mut jwk = rsa_jwk("r", 2048);
        jwk["alg"] = "PS256".into();
        let parsed = parse(vec![jwk]).expect("usable");
        let key = parsed.keys.find(None).expect("the only key");
        assert_eq!(key.algorithms, [Algorithm::PS256]);
    }

    #[test]
    fn unusable_keys_are_left_out_with_a_reason() {
        let mut wrong_alg = ec_jwk("wrong-alg");
        wrong_alg["alg"] = "RS256".into();
        let parsed = parse(vec![
            rsa_jwk("short", 1024),
            serde_json::json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0"}),
            serde_json::json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
            wrong_alg,
            ec_jwk("dup"),
            ec_jwk("dup"),
            serde_json::json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AA", "e": "AQAB"}),
            ec_jwk("good"),
        ])
        .expect("one usable key");
        assert_eq!(parsed.keys.kids(), ["dup", "good"]);
        let skipped = parsed.skipped.join("\n");
        for reason in [
            "1024 bits",
            "symmetric",
            "P-521",
            "does not fit",
            "same kid",
        ] {
            assert!(skipped.contains(reason), "{reason} in {skipped}");
        }
        assert!(
            !skipped.contains("enc"),
            "encryption keys are ignored quietly"
        );
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        assert!(matches!(
            KeySet::parse(b"not json").err(),
            Some(KeySetError::NotJson { .. })
        ));
        assert_eq!(KeySet::parse(b"{}").err(), Some(KeySetError::NoKeysList));
        let err = parse(vec![rsa_jwk("short", 1024)]).err().expect("refused");
        assert!(
            matches!(&err, KeySetError::NoUsableKey { reasons } if reasons.contains("1024 bits")),
            "{err}"
        );
    }

    #[test]
    fn the_same_keys_in_another_order_are_the_same_set() {
        let a = parse(vec![ec_jwk("1"), ec_jwk("2")]).expect("usable").keys;
        let b = parse(vec![ec_jwk("2"), ec_jwk("1")]).expect("usable").keys;
        let c = parse(vec![ec_jwk("1")]).expect("usable").keys;
        assert!(a.same_keys(&b));
        assert!(!a.same_keys(&c));
    }

    #[test]
    fn bit_lengths_ignore_leading_zeros() {
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }
}
