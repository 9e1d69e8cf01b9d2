//! The command-line client: argument definitions, one function per subcommand, and the exact
//! lines the original client printed. Its plumbing (channel, TLS, output, errors) is
//! [`crate::client`], shared with `bench`.

mod bench;
mod greeting;
mod healthz;
mod resource;
mod signing;
mod tls;
mod token;

pub use bench::BenchArgs;
pub use tls::TlsFlags;
pub use token::{KeyArgs, MintArgs, TokenV1Command, ValidateArgs};

use std::io::Write;

use clap::{Parser, Subcommand};

use crate::client::{ClientError, Connection, OutputFormat, DEFAULT_SERVER, DEFAULT_TIMEOUT};
use crate::proto::service_names;
use crate::seconds::Seconds;

/// Calls the mrmat gRPC API and prints the answers as the original Python client did.
#[derive(Debug, Parser)]
#[command(
    name = "mrmat-rust-api-grpc-client",
    version,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Server to call, HOST:PORT; or several replicas, comma separated (or one name that
    /// resolves to several), which calls are spread over, round robin, avoiding any whose health
    /// says NOT_SERVING and retrying Get, List and Validate on another.
    #[arg(
        long,
        env = "MRMAT_GRPC_SERVER",
        value_name = "HOST:PORT[,...]",
        default_value = DEFAULT_SERVER,
        value_parser = crate::client::check_servers
    )]
    pub server: String,

    /// Deadline of each call; an unreachable or slow server is reported once it passes.
    #[arg(
        long,
        env = "MRMAT_GRPC_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = Seconds(DEFAULT_TIMEOUT),
        value_parser = Seconds::positive
    )]
    pub timeout: Seconds,

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
    pub tls: TlsFlags,

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
    Healthz {
        /// Ask standard health checking (grpc.health.v1) about one service instead: `""` for
        /// the server as a whole, `TokenV1Proto` for token validation (SERVING once its
        /// providers' keys are loaded). Prints `[200] SERVING`, or fails (exit 1) with the
        /// status: an exec probe or a container's health check where the port speaks TLS
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
    },
    /// Manage resources.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Validate tokens, revoke them; and for trying the service, make a key set and tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Load the server with many calls and report throughput, latency and errors.
    Bench(BenchArgs),
}

/// Versions of the token API.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Token API, version 1.
    #[command(subcommand)]
    V1(TokenV1Command),
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
    /// Resource API, version 2: pages, safe retries of creates, etags, gRPC status codes.
    #[command(subcommand)]
    V2(ResourceV2Command),
}

/// Calls of the resource API, version 2. Errors (not found, a stale etag, ...) are the gRPC
/// status, on stderr, with a non-zero exit.
#[derive(Debug, Subcommand)]
pub enum ResourceV2Command {
    /// List one page of resources, and the token of the next page when there is one.
    List {
        /// Resources on the page (default 100, at most 1000).
        #[arg(long, default_value_t = 0)]
        page_size: u32,
        /// The next page token a previous list printed.
        #[arg(long, default_value = "")]
        page_token: String,
        /// Only this owner's resources.
        #[arg(long)]
        owner_id: Option<u64>,
    },
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
        /// Makes the create safe to repeat: the same id again answers the first result. By
        /// default a new random one, so the client's own retries never create twice.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Rename a resource.
    Update {
        /// Id of the resource.
        #[arg(long)]
        id: u64,
        /// New name of the resource.
        #[arg(long)]
        name: String,
        /// Only if the resource is still at this etag (from get or list); refused (ABORTED)
        /// when someone changed it since.
        #[arg(long, default_value = "")]
        etag: String,
    },
    /// Delete a resource.
    Delete {
        /// Id of the resource.
        #[arg(long)]
        id: u64,
        /// Only if the resource is still at this etag.
        #[arg(long, default_value = "")]
        etag: String,
    },
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

/// Makes the call `cli` asks for and writes the answer to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), ClientError> {
    // With several servers, calls go to the replicas whose health for this API says SERVING.
    let service = match &cli.command {
        Command::Resource(ResourceCommand::V1(_)) => service_names::RESOURCE_V1_PROTO,
        Command::Resource(ResourceCommand::V2(_)) => service_names::RESOURCE_V2_PROTO,
        Command::Token(_) => service_names::TOKEN_V1_PROTO,
        _ => "",
    };
    let tls = cli.tls.options();
    let connect = || {
        Connection::open(&cli.server, cli.timeout.into(), cli.output, &tls, service)
            .map_err(ClientError::from)
    };
    match &cli.command {
        Command::Greeting(GreetingCommand::V1) => greeting::v1(&connect()?, out),
        Command::Greeting(GreetingCommand::V2 { name }) => greeting::v2(&connect()?, name, out),
        Command::Healthz { service: None } => healthz::get(&connect()?, out),
        Command::Healthz {
            service: Some(name),
        } => healthz::check(&connect()?, name, out),
        Command::Resource(ResourceCommand::V1(call)) => resource::v1(&connect()?, call, out),
        Command::Resource(ResourceCommand::V2(call)) => resource::v2(&connect()?, call, out),
        Command::Token(TokenCommand::V1(call)) => match call {
            TokenV1Command::Validate(args) => {
                let target = crate::client::Target {
                    server: &cli.server,
                    timeout: cli.timeout.into(),
                    output: cli.output,
                    tls: &tls,
                };
                token::validate(&target, args, out)
            }
            TokenV1Command::Revoke {
                token_id,
                token_file,
                expires_at,
            } => {
                let target = token::RevokeTarget::of(token_id.as_ref(), token_file.as_deref())?;
                token::revoke(&connect()?, &target, *expires_at, out)
            }
            TokenV1Command::Jwks { key } => token::jwks(key, out),
            TokenV1Command::Mint(args) => token::mint(args, out),
        },
        Command::Bench(args) => {
            let target = crate::client::Target {
                server: &cli.server,
                timeout: cli.timeout.into(),
                tls: &tls,
                output: cli.output,
            };
            crate::bench::run(&target, &args.plan(), out)
        }
    }
}

impl clap::ValueEnum for OutputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Text, Self::Json]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            Self::Text => ("text", "The original client's lines, byte for byte"),
            Self::Json => (
                "json",
                "The answer message as one line of protobuf's canonical JSON (lowerCamelCase \
                 names, 64-bit integers as strings, every field present)",
            ),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
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
