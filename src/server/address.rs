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
    /// or says in one line why it cannot be listened on.
    pub fn parse(address: &str) -> Result<Self, String> {
        let invalid = |reason: &str| format!("invalid listen address `{address}`: {reason}");
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected HOST:PORT, e.g. localhost:50051"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
        if host.is_empty() {
            return Err(invalid("the host is missing, e.g. localhost or 0.0.0.0"));
        }
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.contains(':') && !bracketed {
            return Err(invalid("an IPv6 host goes in brackets, e.g. [::1]:50051"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(invalid("the host contains characters no host name has"));
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
        for bad in [
            "localhost",
            ":50051",
            "localhost:http",
            "localhost:70000",
            "::1:80",
            "a b:1",
        ] {
            let err = ListenAddress::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
