//! `mrmat-rust-api-grpc-client`: one call of the API per run, printed as the original printed it.

use clap::Parser;
use mrmat_rust_api_grpc::cli::{self, Cli};

/// Warnings of ours only: the gRPC core's own messages, and the token validator's reconnection
/// warnings (for apps that run for long), repeat what our one-line error already says
/// (RUST_LOG=warn,grpcio=debug shows them all).
const LOG_DEFAULT: &str = "warn,grpcio=off,mrmat_rust_api_grpc::client::validator=error";

fn main() {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(LOG_DEFAULT)).init();
    grpcio::redirect_log();
    let stdout = std::io::stdout();
    if let Err(e) = cli::run(&cli, &mut stdout.lock()) {
        eprintln!("mrmat-rust-api-grpc-client: {e}");
        std::process::exit(1);
    }
}
