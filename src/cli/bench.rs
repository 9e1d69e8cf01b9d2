//! The `bench` subcommand's flags, made into the [`Plan`] that `bench` runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;

use crate::bench::{Plan, Workload};
use crate::seconds::Seconds;

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
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Duration::from_secs(10)), value_parser = Seconds::positive)]
    pub duration: Seconds,

    /// Measure this many calls instead of a duration.
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: Option<u64>,

    /// Calls made before measuring starts, to warm connections and caches up.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Duration::from_secs(1)), value_parser = Seconds::or_zero)]
    pub warmup: Seconds,

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

impl BenchArgs {
    /// The plan these flags describe.
    pub fn plan(&self) -> Plan {
        Plan {
            call: self.call,
            connections: self.connections,
            in_flight: self.in_flight,
            duration: self.duration.into(),
            calls: self.calls,
            warmup: self.warmup.into(),
            resources: self.resources,
            stored_ids: self.stored_ids,
            read_percent: self.read_percent,
            tokens: self.tokens.clone(),
            fresh_connection: self.fresh_connection,
            plot: self.plot.clone(),
            compare: self.compare.clone(),
        }
    }
}

impl clap::ValueEnum for Workload {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.describe()))
    }
}
