//! Sender-constrained tokens: a token whose `cnf` claim binds it to a key or a certificate is
//! valid only when the request that presents it proves that key or certificate.
//! - `cnf.jkt` (RFC 9449, DPoP): the request uses the DPoP scheme and carries one DPoP proof
//!   ([`proof`]) signed by that key, for this request's method and URL, made within the window,
//!   used once (`replay`), and, when nonces are on, with a current one (`nonce`);
//! - `cnf["x5t#S256"]` (RFC 8705): the request's client certificate has that SHA-256
//!   thumbprint.
//!
//! A token without `cnf` stays a bearer token; a key-bound one sent as Bearer is refused, so a
//! stolen bound token does not become a bearer token by changing the scheme. Knows nothing of
//! HTTP: the transports say how the token was presented ([`Presentation`]).

pub mod htu;
mod nonce;
pub mod proof;
mod replay;

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::Value;

pub use nonce::{MIN_SECRET_BYTES, STEP_SECONDS as NONCE_STEP_SECONDS};
use replay::{proof_key, ReplayCache, Seen};

use super::{Refusal, TokenError, ValidToken, Verdict};

/// The algorithms a DPoP proof may be signed with by default: FAPI 2.0's (ES256, PS256) and
/// the other asymmetric ones its security profile does not rule out. Never `none` or an HMAC.
pub const DEFAULT_DPOP_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// How far a proof's `iat` may be from now, by default.
pub const DEFAULT_DPOP_WINDOW: Duration = Duration::from_secs(60);

/// Proofs remembered against replay at most, by default: two cores' worth of ES256 proofs
/// (some 16,000 a second each, measured) over the default window; about 41 bytes each.
pub const DEFAULT_DPOP_REPLAY_ENTRIES: usize = 2_000_000;

/// How DPoP proofs are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopOptions {
    pub algorithms: Vec<Algorithm>,
    /// How far a proof's `iat` may be from now, either way.
    pub window: Duration,
    /// Proofs remembered against replay at most.
    pub replay_entries: usize,
    /// The secret replicas share to make and accept nonces; None: no nonces asked for.
    pub nonce_secret_file: Option<PathBuf>,
}

impl Default for DpopOptions {
    fn default() -> Self {
        Self {
            algorithms: DEFAULT_DPOP_ALGORITHMS.to_vec(),
            window: DEFAULT_DPOP_WINDOW,
            replay_entries: DEFAULT_DPOP_REPLAY_ENTRIES,
            nonce_secret_file: None,
        }
    }
}

/// How a request presents its token: the scheme and proof, and its client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presentation {
    /// Some when the token came with the DPoP scheme (or an app gave a proof).
    pub dpop: Option<DpopRequest>,
    /// The SHA-256 of the client's certificate (DER), when the request has one.
    pub certificate: Option<[u8; 32]>,
}

/// A request made with the DPoP scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopRequest {
    /// Every `DPoP` header's value (one is expected).
    pub proofs: Vec<String>,
    /// The request's method.
    pub method: String,
    /// The request's URL normalized ([`htu::request_url`]), or why it is not known.
    pub url: Result<String, String>,
}

/// The thumbprint (SHA-256) of a certificate given as DER or PEM, or why it cannot be read.
pub fn certificate_thumbprint(certificate: &[u8]) -> Result<[u8; 32], &'static str> {
    let der = if certificate.starts_with(b"-----BEGIN") {
        openssl::x509::X509::from_pem(certificate)
            .and_then(|cert| cert.to_der())
            .map_err(|_| "the client certificate is not a PEM certificate")?
    } else {
        openssl::x509::X509::from_der(certificate)
            .map_err(|_| "the client certificate is neither PEM nor DER")?;
        certificate.to_vec()
    };
    Ok(openssl::sha::sha256(&der))
}

/// The name of `algorithm` as JOSE spells it.
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // Newer ones (the enum is non-exhaustive) are never accepted for proofs.
        _ => "unsupported",
    }
}

/// `algorithms` as a challenge's `algs` names them: space separated.
pub fn algorithm_names(algorithms: &[Algorithm]) -> String {
    let names: Vec<&str> = algorithms.iter().map(|a| algorithm_name(*a)).collect();
    names.join(" ")
}

/// The algorithm a name spells, if a proof may use it (asymmetric only).
pub fn dpop_algorithm(name: &str) -> Result<Algorithm, String> {
    DEFAULT_DPOP_ALGORITHMS
        .iter()
        .chain(&[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512])
        .copied()
        .find(|a| algorithm_name(*a) == name)
        .ok_or_else(|| {
            format!(
                "{name} is not an asymmetric JOSE algorithm a DPoP proof may use (RS256, RS384, \
                 RS512, {})",
                algorithm_names(DEFAULT_DPOP_ALGORITHMS)
            )
        })
}

/// Holds tokens to their binding.
pub struct Binding {
    algorithms: Vec<Algorithm>,
    /// `algorithms` as a challenge names them.
    algs: std::sync::Arc<str>,
    window: i64,
    replay: ReplayCache,
    nonces: Option<nonce::Nonces>,
}

impl Binding {
    /// The checks `options` configure; its nonce secret read now.
    pub fn start(options: &DpopOptions) -> Result<Self, TokenError> {
        let nonces = match &options.nonce_secret_file {
            None => None,
            Some(file) => {
                let secret = std::fs::read(file).map_err(|e| {
                    TokenError(format!(
                        "cannot read the DPoP nonce secret {}: {e}",
                        file.display()
                    ))
                })?;
                let secret = secret.trim_ascii();
                Some(
                    nonce::Nonces::new(secret)
                        .map_err(|why| TokenError(format!("{}: {why}", file.display())))?,
                )
            }
        };
        if options.algorithms.is_empty() {
            return Err(TokenError(
                "no algorithm is accepted for DPoP proofs; name at least one".to_owned(),
            ));
        }
        Ok(Self {
            algorithms: options.algorithms.clone(),
            algs: algorithm_names(&options.algorithms).into(),
            window: i64::try_from(options.window.as_secs()).unwrap_or(i64::MAX),
            replay: ReplayCache::new(options.replay_entries),
            nonces,
        })
    }

    /// The algorithms proofs may use, as a challenge's `algs` names them.
    pub fn algs(&self) -> &str {
        &self.algs
    }

    /// `refusal` of a token presented as `presented`, with a DPoP challenge when the request
    /// used the DPoP scheme or the token is bound to a key (`key_bound`); the nonce with
    /// [`Verdict::UseDpopNonce`].
    pub fn challenged(
        &self,
        mut refusal: Refusal,
        presented: &Presentation,
        key_bound: bool,
        now: i64,
    ) -> Refusal {
        if presented.dpop.is_some() || key_bound {
            let nonce = match refusal.verdict {
                Verdict::UseDpopNonce => self.nonce(now),
                _ => None,
            };
            refusal.dpop = Some(super::DpopChallenge {
                algs: std::sync::Arc::clone(&self.algs),
                nonce,
            });
        }
        refusal
    }

    /// The nonce a client is to make its proof with now, when nonces are on.
    pub fn nonce(&self, now: i64) -> Option<String> {
        self.nonces.as_ref().map(|nonces| nonces.current(now))
    }

    /// Proofs remembered against replay now.
    pub fn remembered(&self) -> usize {
        self.replay.len()
    }

    /// Whether `valid` (the token whose SHA-256 is `token_hash`) may be used as `presented`.
    pub fn check(
        &self,
        valid: &ValidToken,
        token_hash: &[u8; 32],
        presented: &Presentation,
        now: i64,
    ) -> Result<(), Refusal> {
        let empty = serde_json::Map::new();
        let cnf = match valid.claims.get("cnf") {
            None => &empty,
            Some(Value::Object(cnf)) => cnf,
            Some(_) => {
                return Err(Refusal::new(
                    Verdict::Malformed,
                    "the token's cnf is not a JSON object",
                ))
            }
        };
        let member = |name: &str| match cnf.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.as_str())),
            Some(_) => Err(Refusal::new(
                Verdict::Malformed,
                format!("the token's cnf.{name} is not a string"),
            )),
        };
        let (jkt, x5t) = (member("jkt")?, member("x5t#S256")?);
        if let Some(x5t) = x5t {
            let Some(certificate) = presented.certificate else {
                return Err(wrong_binding(
                    "the token is bound to a client certificate (cnf x5t#S256) and the request \
                     has none: present it over mutual TLS with that certificate",
                ));
            };
            if URL_SAFE_NO_PAD.encode(certificate) != x5t {
                return Err(wrong_binding(
                    "the token is bound to another client certificate than the request's (cnf \
                     x5t#S256)",
                ));
            }
        }
        match (jkt, &presented.dpop) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(wrong_binding(
                "the token is not bound to a key (it has no cnf.jkt): send it with the Bearer \
                 scheme",
            )),
            (Some(_), None) => Err(wrong_binding(
                "the token is bound to a key (cnf.jkt): send it with the DPoP scheme and a DPoP \
                 proof, not as Bearer",
            )),
            (Some(jkt), Some(request)) => self.check_proof(jkt, token_hash, request, now),
        }
    }

    fn check_proof(
        &self,
        jkt: &str,
        token_hash: &[u8; 32],
        request: &DpopRequest,
        now: i64,
    ) -> Result<(), Refusal> {
        let proof = match request.proofs.as_slice() {
            [one] => one,
            [] => return Err(proof::refused("the request has no DPoP header (its proof)")),
            _ => {
                return Err(proof::refused(
                    "the request has several DPoP headers; send one proof",
                ))
            }
        };
        let expected = proof::Expected {
            algorithms: &self.algorithms,
            method: &request.method,
            url: request.url.as_deref().map_err(String::as_str),
            token_hash,
            jkt,
            now,
            window: self.window,
        };
        let proof = proof::check(proof, &expected)?;
        if let Some(nonces) = &self.nonces {
            let current = proof
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.accepts(n, now));
            if !current {
                return Err(Refusal::new(
                    Verdict::UseDpopNonce,
                    "the DPoP proof has no current nonce: make it again with the DPoP-Nonce \
                     this answer gives",
                ));
            }
        }
        // Last, once the proof is known good: only signed proofs take room.
        let until = proof.iat.saturating_add(self.window);
        match self
            .replay
            .first_use(proof_key(&proof.jkt, &proof.jti), until, now)
        {
            Seen::New => Ok(()),
            Seen::Replayed => Err(proof::refused(
                "the DPoP proof has been used before (its jti): make a new one per request",
            )),
            Seen::Full => Err(Refusal::new(
                Verdict::Unavailable,
                "too many DPoP proofs within the replay window to remember another; ask again \
                 later",
            )),
        }
    }
}

fn wrong_binding(reason: &str) -> Refusal {
    Refusal::new(Verdict::WrongBinding, reason)
}
