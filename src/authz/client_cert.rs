//! The client certificate a proxy passes on in a header, for certificate-bound tokens (RFC
//! 8705) behind a proxy that ends TLS: RFC 9440's `Client-Cert` (the DER as a structured-field
//! byte sequence, `:BASE64:`) or Envoy's `X-Forwarded-Client-Cert` (its last element's `Cert`,
//! URL-encoded PEM, or `Hash`, the hex SHA-256). Trusted only when the operator names the header,
//! since any client can send one: the port must be reachable by that proxy only, and the proxy
//! must replace a client's own copy.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::tokens::binding::certificate_thumbprint;

/// Which header carries the client's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertHeader {
    /// RFC 9440's `Client-Cert`.
    ClientCert,
    /// Envoy's `X-Forwarded-Client-Cert`.
    ForwardedClientCert,
}

impl ClientCertHeader {
    /// The header a name (any case) names, or why it is not one this server reads.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "client-cert" => Ok(Self::ClientCert),
            "x-forwarded-client-cert" => Ok(Self::ForwardedClientCert),
            _ => Err(format!(
                "{name} is not a client certificate header this server reads: name client-cert \
                 (RFC 9440) or x-forwarded-client-cert (Envoy)"
            )),
        }
    }

    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientCert => "client-cert",
            Self::ForwardedClientCert => "x-forwarded-client-cert",
        }
    }

    /// The SHA-256 thumbprint of the certificate `values` (every such header of the request)
    /// carry; None when there is none; why, when it does not read (several headers, a value
    /// that is not a certificate).
    pub fn thumbprint(self, values: &[&[u8]]) -> Result<Option<[u8; 32]>, &'static str> {
        let value = match values {
            [] => return Ok(None),
            [value] => {
                std::str::from_utf8(value).map_err(|_| "the certificate header is not text")?
            }
            _ => return Err("the request has several certificate headers"),
        };
        match self {
            Self::ClientCert => {
                let encoded = value
                    .trim()
                    .strip_prefix(':')
                    .and_then(|v| v.strip_suffix(':'))
                    .ok_or("Client-Cert is not a byte sequence (:BASE64:)")?;
                let der = STANDARD
                    .decode(encoded)
                    .map_err(|_| "Client-Cert is not base64")?;
                certificate_thumbprint(&der).map(Some)
            }
            Self::ForwardedClientCert => forwarded_client_cert(value).map(Some),
        }
    }
}

/// The thumbprint in an `X-Forwarded-Client-Cert` value: its last element (the nearest proxy's),
/// from `Cert` when it has one, else `Hash`.
fn forwarded_client_cert(value: &str) -> Result<[u8; 32], &'static str> {
    let last = *split_outside_quotes(value, ',')
        .last()
        .ok_or("X-Forwarded-Client-Cert is empty")?;
    let (mut cert, mut hash) = (None, None);
    for pair in split_outside_quotes(last, ';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "cert" => cert = Some(value),
            "hash" => hash = Some(value),
            _ => {}
        }
    }
    if let Some(cert) = cert {
        let pem: Vec<u8> = percent_encoding::percent_decode(cert.as_bytes()).collect();
        return certificate_thumbprint(&pem);
    }
    let hash = hash.ok_or("X-Forwarded-Client-Cert names no Cert or Hash")?;
    let mut thumbprint = [0u8; 32];
    if hash.len() != 64 {
        return Err("X-Forwarded-Client-Cert's Hash is not a SHA-256 in hex");
    }
    for (at, byte) in thumbprint.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hash[at * 2..at * 2 + 2], 16)
            .map_err(|_| "X-Forwarded-Client-Cert's Hash is not a SHA-256 in hex")?;
    }
    Ok(thumbprint)
}

/// `text` split at `separator`s outside double quotes.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (at, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..at]);
            start = at + 1;
        }
    }
    parts.push(&text[start..]);
    parts.retain(|part| !part.trim().is_empty());
    parts
}
