//! Token validation as plain Rust, with no gRPC in it: is this bearer token (a signed JWT, in
//! JWS compact form, or an opaque token its provider introspects) valid, and whose is it?
//!
//! - [`keys`]: the signing keys of a JSON Web Key Set, each usable only with its own algorithms;
//! - [`TokenOptions`]: what it is told, plain values the server's flags fill in;
//! - [`ProviderOptions`]: one identity provider, an issuer bound to its own key set;
//! - `source`: where a provider's key set comes from (OpenID Connect Discovery, a key set URL, a
//!   file) and when it is loaded again;
//! - `jws`: the token's three parts and its header, each part's JSON read by `json` (a member
//!   named twice refused); `claims`: the checks of its payload;
//! - [`TokenVerifier`]: all of it in order, with the revocations and `cache`, the valid tokens
//!   remembered (bounded in entries and in bytes);
//! - `introspection`: opaque tokens, asked of their provider (RFC 7662), one call per token
//!   however many ask, a bounded number in flight;
//! - [`binding`]: sender-constrained tokens, a token's `cnf` held to the request that presents
//!   it: a DPoP proof (RFC 9449) or the client certificate (RFC 8705);
//! - [`RevocationStore`]: the port to wherever revocations are kept (the store implements it).
//!
//! The signature itself is checked by `jsonwebtoken` (on aws-lc); this module only decides
//! which key and algorithm may be used, and says why a token is refused.

pub mod binding;
mod cache;
mod claims;
mod introspection;
mod json;
mod jws;
pub mod keys;
mod options;
mod providers;
mod revocations;
mod source;
mod verifier;

use std::fmt;

pub use crate::store_error::{Held, StoreError, StoreErrorKind};
pub use introspection::check_client_secret;
pub use jws::too_long;
pub use options::{
    fetchable, introspection_conflicts, IntrospectionEndpoint, IntrospectionOptions, KeysFrom,
    ProviderOptions, TokenOptions, Unfetchable, DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES,
    DEFAULT_INACTIVE_CACHE, DEFAULT_INTROSPECTION_CACHE, DEFAULT_INTROSPECTION_CONCURRENCY,
    DEFAULT_INTROSPECTION_QUEUE_WAIT, DEFAULT_INTROSPECTION_TIMEOUT, DEFAULT_JWKS_REFRESH,
    DEFAULT_LEEWAY_SECONDS, DEFAULT_REVOCATION_MAX_TTL,
};
pub use providers::ProvidersChanged;
pub use revocations::{RevocationStore, RevokeError, Revoked, Stored};
pub use verifier::{revocation_id, Outcome, TokenVerifier};

/// Tokens longer than this are refused unread: real ones are a few hundred bytes to a few KiB.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Most questions in one batch of `ValidateBatches`.
pub const MAX_BATCH_QUESTIONS: usize = 1_000;

/// Most bytes of tokens in one batch of `ValidateBatches`. Its answers can be larger (a claim's
/// encoding up to a few times its JSON): they are sent in as many messages as they need.
pub const MAX_BATCH_TOKEN_BYTES: usize = 1 << 20;

/// Token ids (`jti`) longer than this cannot be revoked.
pub const MAX_TOKEN_ID_BYTES: usize = 1024;

/// Why a token is, or is not, valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Signed by a known key, within its validity, for an accepted issuer and audience, and
    /// not revoked.
    Valid,
    /// Not a JWS, or its header or claims cannot be read, or a required claim is missing.
    Malformed,
    /// The signature does not verify with the key the token names.
    BadSignature,
    /// The token names a key that is not in the key set.
    UnknownKey,
    /// The algorithm is refused (`none`, HMAC, unknown), or does not fit the key's type.
    UnsupportedAlgorithm,
    /// Past `exp` (beyond the leeway).
    Expired,
    /// Before `nbf` (beyond the leeway).
    NotYetValid,
    /// `iss` is not an accepted issuer.
    WrongIssuer,
    /// `aud` names none of the accepted audiences.
    WrongAudience,
    /// Its `jti` has been revoked.
    Revoked,
    /// Not judged: the keys of the provider its `iss` names have not loaded (the provider is
    /// down, or never answered), or the provider that introspects it cannot answer now. Ask
    /// again later, or another replica.
    Unavailable,
    /// Not a JWT, and its provider's introspection says it is not active (unknown, expired or
    /// revoked there).
    Inactive,
    /// Sent with the DPoP scheme, but its DPoP proof (RFC 9449) is missing or refused: not one
    /// well-formed proof, an algorithm or key refused, a bad signature, another method or URL,
    /// too old or ahead, replayed, made for another token (`ath`) or with a key the token is not
    /// bound to (`cnf.jkt`).
    InvalidDpopProof,
    /// Its DPoP proof carries no current server nonce: make the proof again with the one the
    /// answer gives (RFC 9449 section 8).
    UseDpopNonce,
    /// Bound to a key or certificate the request does not prove: a key-bound token (`cnf.jkt`)
    /// sent as Bearer, a certificate-bound one (`cnf["x5t#S256"]`, RFC 8705) without that client
    /// certificate, or an unbound one with the DPoP scheme.
    WrongBinding,
}

impl Verdict {
    /// The verdict as the metrics label it, e.g. `bad_signature`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Revoked => "revoked",
            Self::Unavailable => "unavailable",
            Self::Inactive => "inactive",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::WrongBinding => "wrong_binding",
        }
    }
}

/// What a valid token says about its bearer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidToken {
    /// `sub`.
    pub subject: String,
    /// `iss`.
    pub issuer: String,
    /// `aud`, a string or a list in the token.
    pub audience: Vec<String>,
    /// `exp`, Unix seconds; 0 for an introspected token whose provider gave none.
    pub expires_at: i64,
    /// `scope` (space separated) or `scp` (a list, or space separated).
    pub scopes: Vec<String>,
    /// `jti`, empty when the token has none.
    pub token_id: String,
    /// Every claim of the verified payload, as the token has them.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Room for a transport's encoding of `claims`, made once per validated token and reused by
    /// every answer the cache gives for it (building it again per answer cost 15% of cached
    /// validations, measured).
    pub encoded_claims: std::sync::OnceLock<Vec<u8>>,
}

/// Why a token is not valid: the verdict, and one sentence a caller can act on. The sentence
/// never repeats the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Which check failed.
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub reason: String,
    /// Set when the refusal is to be answered with a DPoP challenge (RFC 9449 section 7.1):
    /// the token came with the DPoP scheme, or is bound to a key.
    pub dpop: Option<DpopChallenge>,
}

/// What a DPoP challenge names: the algorithms proofs may use, and a nonce to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopChallenge {
    /// Space separated, as `algs` names them.
    pub algs: std::sync::Arc<str>,
    /// With [`Verdict::UseDpopNonce`]: the nonce for the client's next proof (`DPoP-Nonce`).
    pub nonce: Option<String>,
}

impl Refusal {
    pub(crate) fn new(verdict: Verdict, reason: impl Into<String>) -> Self {
        Self {
            verdict,
            reason: reason.into(),
            dpop: None,
        }
    }
}

/// Why the token service could not be set up; the server does not start.
#[derive(Debug)]
pub struct TokenError(String);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenError {}
