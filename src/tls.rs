//! Certificates and keys from PEM files, checked when the server or client starts, so that a
//! wrong path, a file that is not PEM or a key that does not match its certificate is reported
//! by file name instead of surfacing later as a failed handshake.

use std::fmt;
use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

/// A problem with one of the files that configure TLS.
#[derive(Debug)]
pub struct TlsError {
    path: PathBuf,
    problem: String,
}

impl TlsError {
    fn new(path: &Path, problem: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            problem: problem.into(),
        }
    }

    /// The file the problem is in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for TlsError {}

/// A certificate chain and the private key of its first certificate, as PEM.
pub struct Identity {
    /// The certificate chain, leaf first.
    pub cert_chain: Vec<u8>,
    /// The private key of the leaf certificate.
    pub key: Vec<u8>,
}

// The key never reaches logs or error messages.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field(
                "cert_chain",
                &format_args!("{} bytes", self.cert_chain.len()),
            )
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// Reads a PEM file. The gRPC core takes PEM as C strings, so a NUL byte is refused here rather
/// than left to panic there.
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::new(path, format!("cannot read: {e}")))?;
    if pem.contains(&0) {
        return Err(TlsError::new(
            path,
            "not a PEM file (it contains NUL bytes)",
        ));
    }
    Ok(pem)
}

/// Reads one or more PEM certificates (a chain, or a bundle of CA certificates).
pub fn read_certificates(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read_pem(path)?;
    parse_certificates(path, &pem)?;
    Ok(pem)
}

fn parse_certificates(path: &Path, pem: &[u8]) -> Result<Vec<X509>, TlsError> {
    let certs = X509::stack_from_pem(pem)
        .map_err(|e| TlsError::new(path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            path,
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// Reads a certificate chain and its private key, and checks that the key belongs to the first
/// certificate of the chain. An expired or not yet valid certificate is logged, not refused,
/// so a service can still start while its certificate is being renewed.
pub fn read_identity(cert_path: &Path, key_path: &Path) -> Result<Identity, TlsError> {
    let cert_chain = read_pem(cert_path)?;
    let leaf = parse_certificates(cert_path, &cert_chain)?.remove(0);
    let key = read_pem(key_path)?;
    let private: PKey<Private> = PKey::private_key_from_pem(&key).map_err(|_| {
        TlsError::new(
            key_path,
            "not a PEM private key (or an encrypted one, which is not supported)",
        )
    })?;
    let public = leaf
        .public_key()
        .map_err(|e| TlsError::new(cert_path, format!("unreadable public key: {e}")))?;
    if !public.public_eq(&private) {
        return Err(TlsError::new(
            key_path,
            format!(
                "this key does not belong to the certificate in {}",
                cert_path.display()
            ),
        ));
    }
    warn_unless_valid_now(cert_path, &leaf);
    Ok(Identity { cert_chain, key })
}

fn warn_unless_valid_now(path: &Path, cert: &X509) {
    let Ok(now) = openssl::asn1::Asn1Time::days_from_now(0) else {
        return;
    };
    if cert.not_after() < now {
        log::warn!(
            "the certificate in {} expired on {}",
            path.display(),
            cert.not_after()
        );
    } else if cert.not_before() > now {
        log::warn!(
            "the certificate in {} is not valid before {}",
            path.display(),
            cert.not_before()
        );
    }
}
