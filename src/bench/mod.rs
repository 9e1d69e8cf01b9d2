//! `bench`: loads any server of this contract (ours, the Python original, another
//! implementation) over real channels, and reports throughput, latency percentiles and errors by
//! gRPC status. A subcommand of the client, so it shares `--server`, `--timeout`, `--output` and
//! the TLS flags, and ships with it. Its flags are `cli`'s; it runs a [`Plan`].

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

use crate::client::{ClientError, OutputFormat, Servers, Target, TokenValidator, ValidatorConfig};
use load::{Phase, Stop};
use workload::{Caller, FreshChannels};

/// What to load the server with, and for how long: the client's `bench` flags (`cli`), as
/// plain values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The call to make.
    pub call: Workload,
    /// Connections to open, each its own TCP connection.
    pub connections: u16,
    /// Calls in flight at once, across all connections.
    pub in_flight: u32,
    /// How long to measure, after the warm-up (unless `calls` is given).
    pub duration: Duration,
    /// Measure this many calls instead of a duration.
    pub calls: Option<u64>,
    /// Calls made before measuring starts.
    pub warmup: Duration,
    /// Resources created before the warm-up, for the workloads that read them.
    pub resources: u64,
    /// Pick ids from 0 to COUNT-1 instead of preloading.
    pub stored_ids: Option<u64>,
    /// Share of reads in the mixed workload, in percent.
    pub read_percent: u8,
    /// Tokens for the token workloads, one per line.
    pub tokens: Option<PathBuf>,
    /// A new channel (connection, TLS handshake) for every call.
    pub fresh_connection: bool,
    /// Where to draw the latency plot.
    pub plot: Option<PathBuf>,
    /// Earlier runs' JSON reports to draw beside this one.
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

/// Runs the benchmark `plan` describes against `target` and writes the report to `out`.
pub fn run(target: &Target<'_>, plan: &Plan, out: &mut dyn Write) -> Result<(), ClientError> {
    let tokens = tokens_for(plan)?;
    // Earlier reports are read first: a bad one should not cost a whole run.
    let compared = plan
        .compare
        .iter()
        .map(|path| read_compared(path))
        .collect::<Result<Vec<_>, _>>()?;
    let connected = connect(target, plan)?;
    let progress = std::io::stderr().is_terminal();
    let ids = resource_ids(plan, &connected.kept, progress)?;
    let phase = Phase {
        workload: plan.call,
        in_flight: plan.in_flight,
        warmup: plan.warmup,
        stop: match plan.calls {
            Some(calls) => Stop::AfterCalls(calls),
            None => Stop::After(plan.duration),
        },
        ids: Arc::new(ids),
        tokens: Arc::new(tokens),
        read_percent: plan.read_percent,
        progress: progress.then_some("measuring"),
    };
    let result = if plan.call == Workload::TokenStream {
        load::drive_streams(&connected.callers, &phase)
    } else {
        load::drive(&connected.callers, &phase)
    };
    let mut report = Report::new(target.server, target.tls, plan, &phase, result);
    report.questions_per_message = questions_per_message(&connected.callers);
    match target.output {
        OutputFormat::Text => write!(out, "{}", report.text())?,
        OutputFormat::Json => writeln!(out, "{}", report.json())?,
    }
    if let Some(path) = &plan.plot {
        draw(path, &report, compared)?;
    }
    Ok(())
}

/// How many questions the validators sent to a message, warm-up included; None without
/// validators.
fn questions_per_message(callers: &[Caller]) -> Option<f64> {
    let (sent, messages) = callers
        .iter()
        .filter_map(Caller::validator)
        .map(|validator| validator.stats())
        .fold((0, 0), |(sent, messages), stats| {
            (sent + stats.sent, messages + stats.messages)
        });
    (messages > 0).then(|| sent as f64 / messages as f64)
}

/// The tokens the workload needs (from `--tokens`), or why the plan cannot run.
fn tokens_for(plan: &Plan) -> Result<Vec<String>, ClientError> {
    if plan.fresh_connection
        && matches!(plan.call, Workload::TokenStream | Workload::TokenValidator)
    {
        return Err(ClientError::Bench(format!(
            "--fresh-connection is for unary calls; {} keeps its streams",
            plan.call.name()
        )));
    }
    match (&plan.tokens, plan.call.needs_tokens()) {
        (Some(path), true) => read_tokens(path),
        (None, true) => Err(ClientError::Bench(format!(
            "--call {} needs --tokens FILE (e.g. from `token v1 mint --count 1000`)",
            plan.call.name()
        ))),
        (_, false) => Ok(Vec::new()),
    }
}

/// The connections a run makes its calls on.
struct Connected {
    /// One plain caller per connection, for preloading.
    kept: Vec<Caller>,
    /// The callers the measured phase uses (fresh channels or validators, as the plan asks).
    callers: Vec<Caller>,
}

/// Opens `plan.connections` channels to the target, each connected within the timeout.
fn connect(target: &Target<'_>, plan: &Plan) -> Result<Connected, ClientError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(threads)
            .name_prefix("bench")
            .build(),
    );
    let loaded = target.tls.load().map_err(ClientError::Tls)?;
    let servers = Servers::new(target.server).map_err(ClientError::Servers)?;
    let fresh = plan.fresh_connection.then(|| {
        Arc::new(FreshChannels {
            env: env.clone(),
            servers: servers.clone(),
            tls: loaded.clone(),
            service: plan.call.service(),
        })
    });
    let mut connected = Connected {
        kept: Vec::new(),
        callers: Vec::new(),
    };
    for _ in 0..plan.connections {
        // A local subchannel pool per channel: otherwise the core shares one connection.
        let builder = ChannelBuilder::new(env.clone()).use_local_subchannel_pool(true);
        let channel = servers.connect(builder, &loaded, plan.call.service());
        if !futures::executor::block_on(channel.wait_for_connected(target.timeout)) {
            return Err(ClientError::Unreachable {
                server: target.server.to_owned(),
                detail: format!(
                    "no connection within {}s (--timeout)",
                    target.timeout.as_secs_f64()
                ),
            });
        }
        // The stream workload asks through the validator apps embed: one per connection.
        let validator = if plan.call == Workload::TokenValidator {
            let config = ValidatorConfig {
                timeout: target.timeout,
                max_in_flight: plan.in_flight as usize,
                ..ValidatorConfig::default()
            };
            Some(Arc::new(
                TokenValidator::connect_loaded(target.server, &loaded, config)
                    .map_err(ClientError::Servers)?,
            ))
        } else {
            None
        };
        let timeout = target.timeout;
        connected
            .kept
            .push(Caller::new(channel.clone(), timeout, None, None));
        connected
            .callers
            .push(Caller::new(channel, timeout, fresh.clone(), validator));
    }
    Ok(connected)
}

/// The resource ids the workload picks from: `--stored-ids`, or those of the resources it
/// creates first.
fn resource_ids(plan: &Plan, kept: &[Caller], progress: bool) -> Result<Vec<u64>, ClientError> {
    if let Some(stored) = plan.stored_ids {
        return Ok((0..stored).collect());
    }
    if !plan.call.needs_resources() || plan.resources == 0 {
        return Ok(Vec::new());
    }
    let preload = Phase {
        workload: Workload::ResourceCreate,
        in_flight: plan.in_flight,
        warmup: Duration::ZERO,
        stop: Stop::AfterCalls(plan.resources),
        ids: Arc::new(Vec::new()),
        tokens: Arc::new(Vec::new()),
        read_percent: 0,
        progress: progress.then_some("preloading"),
    };
    let result = load::drive(kept, &preload);
    if result.successes() < plan.resources {
        return Err(ClientError::Bench(format!(
            "preloading {} resources: only {} created; errors: {:?}",
            plan.resources,
            result.successes(),
            result.errors
        )));
    }
    Ok(result.created)
}

/// Draws this run's latency distribution, and the `compared` ones beside it, to `path`.
fn draw(path: &Path, report: &Report, compared: Vec<plot::Series>) -> Result<(), ClientError> {
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
    plot::write(path, &title, &series).map_err(|e| ClientError::Bench(e.to_string()))
}
