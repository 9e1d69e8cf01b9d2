//! The address the server listens on, checked before the gRPC core sees it.

use std::fmt;

/// A listen address split into host and port, checked before the gRPC core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    host: String,
    port: u16,
}

impl ListenAddress {
    /// Parses `HOST:PORT`, where HOST is a name, an IPv4 address or a bracketed IPv6 address;
    /// or says why it cannot be listened on.
    pub fn parse(address: &str) -> Result<Self, AddressError> {
        let invalid = |kind| AddressError {
            address: address.to_owned(),
            kind,
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| invalid(AddressErrorKind::NotHostPort))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(AddressErrorKind::BadPort))?;
        if host.is_empty() {
            return Err(invalid(AddressErrorKind::NoHost));
        }
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.contains(':') && !bracketed {
            return Err(invalid(AddressErrorKind::UnbracketedIpv6));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(invalid(AddressErrorKind::BadHost));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The same host with another port.
    pub(super) fn with_port(&self, port: u16) -> Self {
        Self {
            host: self.host.clone(),
            port,
        }
    }
}

/// Why an address cannot be listened on: the address given, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressError {
    address: String,
    kind: AddressErrorKind,
}

/// What is wrong with a listen address, for callers to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressErrorKind {
    /// Not `HOST:PORT`.
    NotHostPort,
    /// The port is not a number from 0 to 65535.
    BadPort,
    /// No host before the colon.
    NoHost,
    /// An IPv6 host without brackets.
    UnbracketedIpv6,
    /// A host with characters no host name has.
    BadHost,
}

impl AddressError {
    /// What is wrong.
    pub fn kind(&self) -> AddressErrorKind {
        self.kind
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.kind {
            AddressErrorKind::NotHostPort => "expected HOST:PORT, e.g. localhost:50051",
            AddressErrorKind::BadPort => "the port must be a number from 0 to 65535",
            AddressErrorKind::NoHost => "the host is missing, e.g. localhost or 0.0.0.0",
            AddressErrorKind::UnbracketedIpv6 => "an IPv6 host goes in brackets, e.g. [::1]:50051",
            AddressErrorKind::BadHost => "the host contains characters no host name has",
        };
        write!(f, "invalid listen address `{}`: {reason}", self.address)
    }
}

impl std::error::Error for AddressError {}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl ListenAddress {
    /// The host as given (an IPv6 host keeps its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (0 until the server has bound one).
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms_parse() {
        for ok in [
            "localhost:50051",
            "0.0.0.0:0",
            "[::1]:8080",
            "127.0.0.1:65535",
        ] {
            assert_eq!(ListenAddress::parse(ok).expect(ok).to_string(), ok);
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        for (bad, kind) in [
            ("localhost", AddressErrorKind::NotHostPort),
            (":50051", AddressErrorKind::NoHost),
            ("localhost:http", AddressErrorKind::BadPort),
            ("localhost:70000", AddressErrorKind::BadPort),
            ("::1:80", AddressErrorKind::UnbracketedIpv6),
            ("a b:1", AddressErrorKind::BadHost),
        ] {
            let err = ListenAddress::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), kind, "{bad}");
            assert!(err.to_string().contains(bad), "the message names it: {err}");
        }
    }
}
