//! `mrmat-rust-api-grpc-client`: one call of the API per run, printed as the original printed it.

use clap::Parser;
use mrmat_rust_api_grpc::cli::{self, Cli};

/// Warnings of ours only: the gRPC core's own messages repeat what our one-line error already
/// says (RUST_LOG=grpcio=debug shows them).
const LOG_DEFAULT: &str = "warn,grpcio=off";

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
