//! Server-provided DPoP nonces (RFC 9449 section 8) that every replica makes and accepts alike
//! without sharing anything per request: a nonce is the time step it was made in and an HMAC of
//! that step under a secret the replicas share. A nonce is accepted in its step and the next, so
//! a proof carrying one can be used for at most two steps wherever it is sent.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

/// How long a step lasts, in seconds.
pub const STEP_SECONDS: i64 = 60;

/// The least a shared secret holds, in bytes (what oidc-provider asks of its own).
pub const MIN_SECRET_BYTES: usize = 32;

/// The bytes of the HMAC a nonce carries.
const TAG_BYTES: usize = 16;

pub struct Nonces {
    key: PKey<Private>,
}

impl Nonces {
    /// Nonces made with `secret`, or why it cannot be used.
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the DPoP nonce secret is {} bytes; at least {MIN_SECRET_BYTES} are needed",
                secret.len()
            ));
        }
        let key =
            PKey::hmac(secret).map_err(|e| format!("cannot use the DPoP nonce secret: {e}"))?;
        Ok(Self { key })
    }

    /// The nonce to give a client at `now`.
    pub fn current(&self, now: i64) -> String {
        self.make(now.div_euclid(STEP_SECONDS))
    }

    /// Whether `nonce` was made in this step or the one before.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Some((step, _)) = bytes.split_first_chunk::<8>() else {
            return false;
        };
        let step = i64::from_be_bytes(*step);
        let current = now.div_euclid(STEP_SECONDS);
        if step != current && Some(step) != current.checked_sub(1) {
            return false;
        }
        let expected = URL_SAFE_NO_PAD.decode(self.make(step)).unwrap_or_default();
        bytes.len() == expected.len() && openssl::memcmp::eq(&bytes, &expected)
    }

    fn make(&self, step: i64) -> String {
        let step = step.to_be_bytes();
        let tag = Signer::new(MessageDigest::sha256(), &self.key)
            .and_then(|mut signer| signer.sign_oneshot_to_vec(&step))
            .unwrap_or_default();
        let mut nonce = step.to_vec();
        nonce.extend(tag.iter().take(TAG_BYTES));
        URL_SAFE_NO_PAD.encode(nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_by_any_holder_of_the_secret_for_its_step_and_the_next() {
        let (one, other) = (
            Nonces::new(&[7; 32]).unwrap(),
            Nonces::new(&[7; 32]).unwrap(),
        );
        let now = 1_000 * STEP_SECONDS + 5;
        let nonce = one.current(now);
        assert!(other.accepts(&nonce, now), "another replica");
        assert!(other.accepts(&nonce, now + STEP_SECONDS));
        assert!(!other.accepts(&nonce, now + 2 * STEP_SECONDS), "too old");
        assert!(!other.accepts(&nonce, now - STEP_SECONDS), "ahead");
        let stranger = Nonces::new(&[8; 32]).unwrap();
        assert!(!stranger.accepts(&nonce, now), "another secret");
        let mut forged = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        forged[10] ^= 1;
        assert!(!one.accepts(&URL_SAFE_NO_PAD.encode(forged), now));
        for garbage in ["", "!!", "AAAA", &"A".repeat(4000)] {
            assert!(!one.accepts(garbage, now), "{garbage}");
        }
        assert!(Nonces::new(&[1; 31]).is_err());
    }
}
