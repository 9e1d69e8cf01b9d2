//! `bench`: loads any server of this contract (ours, the Python original, another
//! implementation) over real channels, and reports throughput, latency percentiles and errors by
//! gRPC status. A subcommand of the client, so it shares `--server`, `--timeout`, `--output` and
//! the TLS flags, and ships with it.

mod load;
mod plot;
mod report;
mod workload;

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grpcio::{ChannelBuilder, EnvBuilder};

pub use report::Report;
pub use workload::Workload;

use crate::client::{
    ClientError, OutputFormat, Servers, TlsOptions, TokenValidator, ValidatorConfig,
};
use crate::seconds::{parse_seconds, parse_seconds_or_zero};
use load::{Phase, Stop};
use workload::{Caller, FreshChannels};

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

    /// Pick ids from 0 to COUNT-1 instead of preloading: for a store seeded beforehand (a
    /// million resources take minutes to create through the API, seconds through SQL).
    #[arg(long, value_name = "COUNT", conflicts_with = "resources")]
    pub stored_ids: Option<u64>,

    /// Share of reads (Get) in the mixed workload, in percent; the rest are writes (Modify).
    #[arg(long, value_name = "PERCENT", default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,

    /// Tokens for token-validate and token-stream, one per line (e.g. from `token v1 mint
    /// --count 1000`); each call picks one at random.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,

    /// Open a new channel, so a new connection and (with the TLS flags) TLS handshake, for
    /// every call, as an app that does not keep its channel does; unary calls only.
    #[arg(long)]
    pub fresh_connection: bool,

    /// Write the run's latency percentile distribution to FILE as an SVG plot (log scale on
    /// the percentile axis, as HdrHistogram plots it).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Put an earlier run's report (saved with `--output json`) in the plot beside this one,
    /// labelled with its file name; repeat for more.
    #[arg(long, value_name = "REPORT.json", requires = "plot")]
    pub compare: Vec<PathBuf>,
}

/// The latency distribution of an earlier run's JSON report, labelled with its file name.
fn read_compared(path: &Path) -> Result<plot::Series, ClientError> {
    let fail = |why: String| ClientError::Bench(format!("--compare {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| fail(format!("not a JSON report (`bench --output json`): {e}")))?;
    let points = report
        .get("latency_distribution")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| {
            fail("it holds no latency_distribution (a report of `bench --output json`)".to_owned())
        })?
        .iter()
        .map(|point| match point.as_array().map(Vec::as_slice) {
            Some([percentile, ms]) => percentile.as_f64().zip(ms.as_f64()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            fail("latency_distribution holds a point that is not [percentile, ms]".to_owned())
        })?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(plot::Series {
        label: describe(&name, &report),
        points,
    })
}

/// A legend entry: the run's name, its call and its rate.
fn describe(name: &str, report: &serde_json::Value) -> String {
    let call = report.get("call").and_then(serde_json::Value::as_str);
    let rate = report
        .get("calls_per_second")
        .and_then(serde_json::Value::as_f64);
    match (call, rate) {
        (Some(call), Some(rate)) => format!("{name}: {call}, {rate:.0} calls/s"),
        _ => name.to_owned(),
    }
}

/// The tokens in `path`, one per line; blank lines left out.
fn read_tokens(path: &Path) -> Result<Vec<String>, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Bench(format!("cannot read --tokens {}: {e}", path.display())))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        return Err(ClientError::Bench(format!(
            "--tokens {} holds no tokens",
            path.display()
        )));
    }
    Ok(tokens)
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
    let tokens = match (&args.tokens, args.call.needs_tokens()) {
        (Some(path), true) => read_tokens(path)?,
        (None, true) => {
            return Err(ClientError::Bench(format!(
                "--call {} needs --tokens FILE (e.g. from `token v1 mint --count 1000`)",
                args.call.name()
            )))
        }
        (_, false) => Vec::new(),
    };
    if args.fresh_connection
        && matches!(args.call, Workload::TokenStream | Workload::TokenValidator)
    {
        return Err(ClientError::Bench(format!(
            "--fresh-connection is for unary calls; {} keeps its streams",
            args.call.name()
        )));
    }
    // Earlier reports are read first: a bad one should not cost a whole run.
    let compared = args
        .compare
        .iter()
        .map(|path| read_compared(path))
        .collect::<Result<Vec<_>, _>>()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(threads)
            .name_prefix("bench")
            .build(),
    );
    let loaded = tls.load().map_err(ClientError::Tls)?;
    let servers = Servers::new(server);
    let fresh = args.fresh_connection.then(|| {
        Arc::new(FreshChannels {
            env: env.clone(),
            servers: servers.clone(),
            tls: loaded.clone(),
            service: args.call.service(),
        })
    });
    let mut kept = Vec::new();
    let mut callers = Vec::new();
    for _ in 0..args.connections {
        // A local subchannel pool per channel: otherwise the core shares one connection.
        let builder = ChannelBuilder::new(env.clone()).use_local_subchannel_pool(true);
        let channel = servers.connect(builder, &loaded, args.call.service());
        if !futures::executor::block_on(channel.wait_for_connected(timeout)) {
            return Err(ClientError::Unreachable {
                server: server.to_owned(),
                detail: format!(
                    "no connection within {}s (--timeout)",
                    timeout.as_secs_f64()
                ),
            });
        }
        // The stream workload asks through the validator apps embed: one per connection.
        let validator = if args.call == Workload::TokenValidator {
            let config = ValidatorConfig {
                timeout,
                max_in_flight: args.in_flight as usize,
                ..ValidatorConfig::default()
            };
            Some(Arc::new(TokenValidator::connect_loaded(
                server, &loaded, config,
            )))
        } else {
            None
        };
        kept.push(Caller::new(channel.clone(), timeout, None, None));
        callers.push(Caller::new(channel, timeout, fresh.clone(), validator));
    }

    let progress = std::io::stderr().is_terminal();
    let mut ids = Vec::new();
    if let Some(stored) = args.stored_ids {
        ids = (0..stored).collect();
    } else if args.call.needs_resources() && args.resources > 0 {
        let preload = Phase {
            workload: Workload::ResourceCreate,
            in_flight: args.in_flight,
            warmup: Duration::ZERO,
            stop: Stop::AfterCalls(args.resources),
            ids: Arc::new(Vec::new()),
            tokens: Arc::new(Vec::new()),
            read_percent: 0,
            progress: progress.then_some("preloading"),
        };
        let result = load::drive(&kept, &preload);
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
        tokens: Arc::new(tokens),
        read_percent: args.read_percent,
        progress: progress.then_some("measuring"),
    };
    let result = if args.call == Workload::TokenStream {
        load::drive_streams(&callers, &phase)
    } else {
        load::drive(&callers, &phase)
    };
    let report = Report::new(server, tls, args, &phase, result);
    match output {
        OutputFormat::Text => write!(out, "{}", report.text())?,
        OutputFormat::Json => writeln!(out, "{}", report.json())?,
    }
    if let Some(path) = &args.plot {
        let this = plot::Series {
            label: format!(
                "this run: {}, {:.0} calls/s",
                report.call, report.calls_per_second
            ),
            points: report.distribution.clone(),
        };
        let mut series = vec![this];
        series.extend(compared);
        let title = format!(
            "latency by percentile, {} against {}",
            report.call, report.server
        );
        plot::write(path, &title, &series).map_err(ClientError::Bench)?;
    }
    Ok(())
}
