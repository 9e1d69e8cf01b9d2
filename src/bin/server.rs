//! `mrmat-rust-api-grpc-server`: serves the API until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};

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

    /// Explain how the server would judge one request, then exit: the routes tried, each
    /// condition with its value, the rule's parts, and the decision (0: allowed, 3: denied, 1:
    /// the configuration, the token file or the keys are at fault). The token is verified as
    /// the server would (its provider's keys fetched); revocations are not consulted.
    #[arg(long, num_args = 2, value_names = ["METHOD", "URL"], conflicts_with = "check_config")]
    explain: Option<Vec<String>>,

    /// With --explain: the request's bearer token, read from FILE ('-': standard input).
    #[arg(long, value_name = "FILE", requires = "explain")]
    explain_token: Option<PathBuf>,

    /// With --explain: a header of the request, 'NAME: VALUE' (repeat for more).
    #[arg(long, value_name = "NAME: VALUE", requires = "explain")]
    explain_header: Vec<String>,

    /// With --explain: the calling workload as Envoy reports it (a SPIFFE ID).
    #[arg(long, value_name = "ID", requires = "explain")]
    explain_principal: Option<String>,
}

/// Exit status of --explain when the request would be denied.
const DENIED: i32 = 3;

/// Our lifecycle lines at info; the gRPC core's messages (already summarised in ours) only when asked for, e.g. RUST_LOG=info,grpcio=debug.
const LOG_DEFAULT: &str = "info,grpcio=off";

fn main() {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(LOG_DEFAULT)).init();
    // The gRPC core's own messages go through the same logger and RUST_LOG (target `grpcio`).
    grpcio::redirect_log();
    let check_config = args.check_config;
    if let Some(explain) = &args.explain {
        explain_and_exit(&args, explain);
    }
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

/// --explain: prints the explanation and exits 0 (allowed) or 3 (denied), or 1 with the
/// problem on stderr.
fn explain_and_exit(args: &Args, explain: &[String]) -> ! {
    let fail = |lines: Vec<String>| -> ! {
        for line in lines {
            eprintln!("mrmat-rust-api-grpc-server: {line}");
        }
        std::process::exit(1);
    };
    let token = match args.explain_token.as_deref().map(read_token).transpose() {
        Ok(token) => token,
        Err(why) => fail(vec![why]),
    };
    let request = server::ExplainRequest {
        method: explain.first().cloned().unwrap_or_default(),
        url: explain.get(1).cloned().unwrap_or_default(),
        headers: args.explain_header.clone(),
        principal: args.explain_principal.clone().unwrap_or_default(),
        token,
    };
    let explained = args
        .flags
        .clone()
        .into_config()
        .map_err(server::ServerError::Config)
        .and_then(|config| server::explain(&config, &request));
    match explained {
        Ok(explained) => {
            for line in explained.lines {
                println!("{line}");
            }
            std::process::exit(if explained.allowed { 0 } else { DENIED });
        }
        Err(e) => fail(e.lines()),
    }
}

fn read_token(path: &Path) -> Result<String, String> {
    mrmat_rust_api_grpc::token_file::read(path, "--explain-token")
}
