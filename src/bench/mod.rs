//! `bench`: loads any server of this contract (ours, the Python original, another
//! implementation) over real channels, and reports throughput, latency percentiles and errors by
//! gRPC status. A subcommand of the client, so it shares `--server`, `--timeout`, `--output` and
//! the TLS flags, and ships with it.

mod load;
mod report;
mod workload;

use std::io::{IsTerminal as _, Write};
use std::sync::Arc;
use std::time::Duration;

use grpcio::{ChannelBuilder, EnvBuilder};

pub use report::Report;
pub use workload::Workload;

use crate::client::{ClientError, OutputFormat, TlsOptions};
use crate::seconds::{parse_seconds, parse_seconds_or_zero};
use load::{Phase, Stop};
use workload::Caller;

/// What to load the server with, and for how long.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// The call to make.
    #[arg(long, value_enum, default_value_t = Workload::GreetingV2)]
    pub call: Workload,

    /// Connections to open, each its own TCP connection (HTTP/2 multiplexes the calls on each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub connections: u16,

    /// Calls in flight at once, across all connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub in_flight: u32,

    /// How long to measure, after the warm-up.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,

    /// Measure this many calls instead of a duration.
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: Option<u64>,

    /// Calls made before measuring starts, to warm connections and caches up.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds_or_zero)]
    pub warmup: Duration,

    /// Resources created before the warm-up, for resource-get, resource-list and mixed.
    #[arg(long, value_name = "COUNT", default_value_t = 1000)]
    pub resources: u64,

    /// Share of reads (Get) in the mixed workload, in percent; the rest are writes (Modify).
    #[arg(long, value_name = "PERCENT", default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
}

/// Runs the benchmark `args` describes against `server` and writes the report to `out`.
pub fn run(
    server: &str,
    timeout: Duration,
    tls: &TlsOptions,
    output: OutputFormat,
    args: &BenchArgs,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(threads)
            .name_prefix("bench")
            .build(),
    );
    let mut callers = Vec::new();
    for _ in 0..args.connections {
        // A local subchannel pool per channel: otherwise the core shares one connection.
        let builder = ChannelBuilder::new(env.clone()).use_local_subchannel_pool(true);
        let channel = tls.connect(builder, server).map_err(ClientError::Tls)?;
        if !futures::executor::block_on(channel.wait_for_connected(timeout)) {
            return Err(ClientError::Unreachable {
                server: server.to_owned(),
                detail: format!(
                    "no connection within {}s (--timeout)",
                    timeout.as_secs_f64()
                ),
            });
        }
        callers.push(Caller::new(channel, timeout));
    }

    let progress = std::io::stderr().is_terminal();
    let mut ids = Vec::new();
    if args.call.needs_resources() && args.resources > 0 {
        let preload = Phase {
            workload: Workload::ResourceCreate,
            in_flight: args.in_flight,
            warmup: Duration::ZERO,
            stop: Stop::AfterCalls(args.resources),
            ids: Arc::new(Vec::new()),
            read_percent: 0,
            progress: progress.then_some("preloading"),
        };
        let result = load::drive(&callers, &preload);
        if result.successes() < args.resources {
            return Err(ClientError::Bench(format!(
                "preloading {} resources: only {} created; errors: {:?}",
                args.resources,
                result.successes(),
                result.errors
            )));
        }
        ids = result.created;
    }

    let phase = Phase {
        workload: args.call,
        in_flight: args.in_flight,
        warmup: args.warmup,
        stop: match args.calls {
            Some(calls) => Stop::AfterCalls(calls),
            None => Stop::After(args.duration),
        },
        ids: Arc::new(ids),
        read_percent: args.read_percent,
        progress: progress.then_some("measuring"),
    };
    let result = load::drive(&callers, &phase);
    let report = Report::new(server, tls, args, &phase, result);
    match output {
        OutputFormat::Text => write!(out, "{}", report.text())?,
        OutputFormat::Json => writeln!(out, "{}", report.json())?,
    }
    Ok(())
}
