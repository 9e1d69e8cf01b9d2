//! `mrmat-rust-api-grpc-server`: serves the API until SIGINT or SIGTERM.

use clap::Parser;
use mrmat_rust_api_grpc::server::{self, ServerFlags};

/// Serves the mrmat gRPC API (greeting v1 and v2, healthz, resource v1 and v2, and token v1
/// when given a key set), keeping its data in an embedded SQLite file unless told otherwise.
/// Logs go to stderr; RUST_LOG sets their level (default: info).
#[derive(Debug, Parser)]
#[command(name = "mrmat-rust-api-grpc-server", version)]
struct Args {
    #[command(flatten)]
    flags: ServerFlags,

    /// Check the flags and the config file (--config: its providers and routes, every rule
    /// compiled) as a start would, print what they describe and exit: 0 when they are good, 1
    /// with every problem on stderr. Nothing is opened, bound or fetched.
    #[arg(long)]
    check_config: bool,
}

/// Our lifecycle lines at info; the gRPC core's messages (already summarised in ours) only when asked for, e.g. RUST_LOG=info,grpcio=debug.
const LOG_DEFAULT: &str = "info,grpcio=off";

fn main() {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(LOG_DEFAULT)).init();
    // The gRPC core's own messages go through the same logger and RUST_LOG (target `grpcio`).
    grpcio::redirect_log();
    let check_config = args.check_config;
    let config = args
        .flags
        .into_config()
        .map_err(server::ServerError::Config);
    let started = if check_config {
        config
            .and_then(|config| server::check(&config))
            .map(|lines| {
                for line in lines {
                    println!("{line}");
                }
            })
    } else {
        config.and_then(|config| server::run(&config))
    };
    if let Err(e) = started {
        for line in e.lines() {
            eprintln!("mrmat-rust-api-grpc-server: {line}");
        }
        std::process::exit(1);
    }
}
