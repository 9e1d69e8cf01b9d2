//! Client plumbing below the command-line subcommands and `bench`: a channel to the server with
//! its TLS options, the output format, the errors a call reports, and the token validator that
//! apps embed.

mod connection;
mod error;
mod output;
mod servers;
mod validator;

pub(crate) use connection::Connection;
pub use connection::{
    ConnectError, ConnectErrorKind, LoadedTls, Target, TlsOptions, DEFAULT_SERVER, DEFAULT_TIMEOUT,
};
pub use error::ClientError;
pub(crate) use output::write_answer;
pub use output::{to_json, OutputFormat};
pub use servers::{
    check as check_servers, service_config, Servers, ServersError, ServersErrorKind, RETRIED,
};
pub use validator::{
    malformed, too_long, PendingValidation, Presented, TokenAnswer, TokenValidator, ValidateError,
    Validation, ValidatorConfig, ValidatorStats, RECENT_FAILURES, VALIDATOR_DEFAULTS,
};
