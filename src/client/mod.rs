//! The command-line client: argument definitions, one function per subcommand, and the exact
//! lines the original client printed.

mod connection;
mod greeting;
mod healthz;
mod output;
mod resource;

use connection::Connection;
pub use connection::TlsOptions;
pub use output::{to_json, OutputFormat};

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use clap::{Parser, Subcommand};
use grpcio::RpcStatusCode;

use crate::apis::call::status_name;
use crate::bench::BenchArgs;
use crate::seconds::parse_seconds;
use crate::tls::TlsError;

/// Where the client connects unless told otherwise, as the original did.
pub const DEFAULT_SERVER: &str = "localhost:50051";

/// Calls the mrmat gRPC API and prints the answers as the original Python client did.
#[derive(Debug, Parser)]
#[command(
    name = "mrmat-rust-api-grpc-client",
    version,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Server to call, HOST:PORT.
    #[arg(long, env = "MRMAT_GRPC_SERVER", value_name = "HOST:PORT", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// Deadline of each call; an unreachable or slow server is reported once it passes.
    #[arg(
        long,
        env = "MRMAT_GRPC_TIMEOUT",
        value_name = "SECONDS",
        default_value = "5",
        value_parser = parse_seconds
    )]
    pub timeout: Duration,

    /// How to print the answer: the original's lines, or the answer message as one line of
    /// protobuf's canonical JSON.
    #[arg(
        long,
        env = "MRMAT_GRPC_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Text
    )]
    pub output: OutputFormat,

    #[command(flatten)]
    pub tls: TlsOptions,

    #[command(subcommand)]
    pub command: Command,
}

/// The APIs the server offers.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask for a greeting.
    #[command(subcommand)]
    Greeting(GreetingCommand),
    /// Ask whether the server is healthy; prints `[200] OK` when it is.
    Healthz,
    /// Manage resources.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Load the server with many calls and report throughput, latency and errors.
    Bench(BenchArgs),
}

/// Versions of the greeting API.
#[derive(Debug, Subcommand)]
pub enum GreetingCommand {
    /// Prints `Hello World`.
    V1,
    /// Prints `Hello NAME`.
    V2 {
        /// Who to greet.
        #[arg(short, long, default_value = "Stranger")]
        name: String,
    },
}

/// Versions of the resource API.
#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Resource API, version 1.
    #[command(subcommand)]
    V1(ResourceV1Command),
}

/// Calls of the resource API, version 1.
#[derive(Debug, Subcommand)]
pub enum ResourceV1Command {
    /// List every resource.
    List,
    /// Show one resource.
    Get {
        /// Id of the resource.
        #[arg(long)]
        id: u64,
    },
    /// Create a resource; the server assigns its id.
    Create {
        /// Id of the owner.
        #[arg(long)]
        owner_id: u64,
        /// Name of the resource.
        #[arg(long)]
        name: String,
    },
    /// Rename a resource (its owner does not change).
    Modify {
        /// Id of the resource.
        #[arg(long)]
        id: u64,
        /// Id of the owner (sent, as the original did; the server keeps the stored owner).
        #[arg(long)]
        owner_id: u64,
        /// New name of the resource.
        #[arg(long)]
        name: String,
    },
    /// Remove a resource.
    Remove {
        /// Id of the resource.
        #[arg(long)]
        id: u64,
    },
}

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
    /// A certificate or key file is missing, unreadable or inconsistent.
    Tls(TlsError),
    /// A benchmark could not be run as asked.
    Bench(String),
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
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Bench(why) => write!(f, "bench: {why}"),
            Self::Output(e) => write!(f, "cannot write the answer: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Output(e)
    }
}

/// Makes the call `cli` asks for and writes the answer to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), ClientError> {
    let connect = || {
        Connection::open(&cli.server, cli.timeout, cli.output, &cli.tls).map_err(ClientError::Tls)
    };
    match &cli.command {
        Command::Greeting(GreetingCommand::V1) => greeting::v1(&connect()?, out),
        Command::Greeting(GreetingCommand::V2 { name }) => greeting::v2(&connect()?, name, out),
        Command::Healthz => healthz::get(&connect()?, out),
        Command::Resource(ResourceCommand::V1(call)) => resource::v1(&connect()?, call, out),
        Command::Bench(args) => {
            crate::bench::run(&cli.server, cli.timeout, &cli.tls, cli.output, args, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn argument_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
