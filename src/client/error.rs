//! Why a client call did not produce an answer to print ([`ClientError`]): what the CLI and
//! `bench` report, one line each.

use std::fmt;
use std::io;
use std::time::Duration;

use grpcio::RpcStatusCode;

use super::connection::{ConnectError, ConnectErrorKind};
use super::servers::ServersError;
use crate::status::status_name;
use crate::tls::TlsError;

/// Why a call did not produce an answer to print.
#[derive(Debug)]
pub enum ClientError {
    /// No connection to the server.
    Unreachable { server: String, detail: String },
    /// No answer within the deadline.
    DeadlineExceeded { server: String, timeout: Duration },
    /// The server answered with a gRPC error.
    Failed {
        server: String,
        code: RpcStatusCode,
        detail: String,
    },
    /// Health checking answered, and not SERVING.
    NotServing {
        server: String,
        service: String,
        status: String,
    },
    /// A certificate or key file is missing, unreadable or inconsistent.
    Tls(TlsError),
    /// The server list names no server a client may call.
    Servers(ServersError),
    /// A benchmark could not be run as asked.
    Bench(String),
    /// An input (a file, a line of stdin) cannot be used; the message says which and why.
    Input(String),
    /// The answer could not be written to stdout.
    Output(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { server, detail } => {
                write!(f, "cannot reach the server at {server}: {detail}")
            }
            Self::DeadlineExceeded { server, timeout } => write!(
                f,
                "no answer from the server at {server} within {}s (--timeout)",
                timeout.as_secs_f64()
            ),
            Self::Failed {
                server,
                code,
                detail,
            } => {
                write!(
                    f,
                    "the server at {server} answered {}: {detail}",
                    status_name(*code)
                )
            }
            Self::NotServing {
                server,
                service,
                status,
            } => write!(
                f,
                "the server at {server} reports {} {status}",
                if service.is_empty() {
                    "itself".to_owned()
                } else {
                    service.clone()
                }
            ),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Servers(e) => write!(f, "--server: {e}"),
            Self::Bench(why) => write!(f, "bench: {why}"),
            Self::Input(why) => write!(f, "{why}"),
            Self::Output(e) => write!(f, "cannot write the answer: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<ConnectError> for ClientError {
    fn from(e: ConnectError) -> Self {
        match e.into_kind() {
            ConnectErrorKind::Tls(e) => Self::Tls(e),
            ConnectErrorKind::Servers(e) => Self::Servers(e),
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Output(e)
    }
}
