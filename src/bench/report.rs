//! The report of a benchmark, as text for people or one JSON object for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::load::{Phase, PhaseResult};
use super::Plan;
use crate::client::TlsOptions;

/// Latency percentiles of the successful calls, in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// What a benchmark measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub call: &'static str,
    pub server: String,
    pub transport: &'static str,
    pub connections: u16,
    pub in_flight: u32,
    pub warmup_seconds: f64,
    /// From the end of the warm-up until the last call ended.
    pub seconds: f64,
    pub calls: u64,
    pub successes: u64,
    /// Failed calls by gRPC status name.
    pub errors: BTreeMap<String, u64>,
    pub calls_per_second: f64,
    /// None when no call succeeded.
    pub latency: Option<Latency>,
    /// (percentile, milliseconds) from 0% to the max, for plots; empty when no call succeeded.
    pub distribution: Vec<(f64, f64)>,
    /// Resources created before the warm-up.
    pub preloaded: u64,
    /// Each call on a connection of its own (--fresh-connection).
    pub fresh_connection: bool,
    /// Tokens the calls picked from (--tokens).
    pub tokens: u64,
    /// Through the token validator: questions to a message on its streams.
    pub questions_per_message: Option<f64>,
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The latency distribution of `h` (microseconds), HdrHistogram style: ten points per decade of
/// 1/(1 - q) (0%, 20.6%, 36.9% ... 90%, ... 99%, ...) as deep as the calls recorded reach, then
/// the max as 100%.
fn distribution(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let calls = h.len() as f64;
    let mut points = Vec::new();
    for step in 0.. {
        let rest = 10_f64.powf(-f64::from(step) / 10.0);
        if 1.0 / rest > calls {
            break;
        }
        let q = 1.0 - rest;
        points.push((q * 100.0, millis(h.value_at_quantile(q))));
    }
    points.push((100.0, millis(h.max())));
    points
}

impl Report {
    pub(super) fn new(
        server: &str,
        tls: &TlsOptions,
        args: &Plan,
        phase: &Phase,
        result: PhaseResult,
    ) -> Self {
        let successes = result.successes();
        let calls = successes + result.failures();
        let seconds = result.elapsed.as_secs_f64();
        let h = &result.latency;
        let latency = (successes > 0).then(|| Latency {
            p50: millis(h.value_at_quantile(0.50)),
            p90: millis(h.value_at_quantile(0.90)),
            p99: millis(h.value_at_quantile(0.99)),
            p999: millis(h.value_at_quantile(0.999)),
            max: millis(h.max()),
        });
        Self {
            call: args.call.name(),
            server: server.to_owned(),
            transport: if tls.enabled() { "TLS" } else { "plaintext" },
            connections: args.connections,
            in_flight: args.in_flight,
            warmup_seconds: args.warmup.as_secs_f64(),
            seconds,
            calls,
            successes,
            errors: result.errors,
            calls_per_second: if seconds > 0.0 {
                calls as f64 / seconds
            } else {
                0.0
            },
            latency,
            distribution: distribution(h),
            preloaded: phase.ids.len() as u64,
            fresh_connection: args.fresh_connection,
            tokens: phase.tokens.len() as u64,
            questions_per_message: None,
        }
    }

    /// The report for people, a few aligned lines.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "bench {} against {} ({}): {}, {} calls in flight, {:.1} s after a {:.1} s warm-up{}{}",
            self.call,
            self.server,
            self.transport,
            if self.fresh_connection {
                "a new connection per call".to_owned()
            } else {
                format!("{} connections", self.connections)
            },
            self.in_flight,
            self.seconds,
            self.warmup_seconds,
            if self.preloaded > 0 {
                format!(", {} resources preloaded", self.preloaded)
            } else {
                String::new()
            },
            if self.tokens > 0 {
                format!(", {} tokens", self.tokens)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            text,
            "calls       {} ({} succeeded, {} failed)",
            self.calls,
            self.successes,
            self.calls - self.successes
        );
        let _ = writeln!(text, "rate        {:.0} calls/s", self.calls_per_second);
        match &self.latency {
            Some(l) => {
                let _ = writeln!(
                    text,
                    "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                    l.p50, l.p90, l.p99, l.p999, l.max
                );
            }
            None => {
                let _ = writeln!(text, "latency ms  (no call succeeded)");
            }
        }
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(status, count)| format!("{status} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(text, "errors      {errors}");
        if let Some(together) = self.questions_per_message {
            let _ = writeln!(text, "batches     {together:.1} questions to a message");
        }
        text
    }

    /// The report for scripts: one JSON object.
    pub fn json(&self) -> String {
        let latency = self.latency.as_ref().map(|l| {
            serde_json::json!({
                "p50": l.p50, "p90": l.p90, "p99": l.p99, "p99_9": l.p999, "max": l.max,
            })
        });
        serde_json::json!({
            "call": self.call,
            "server": self.server,
            "transport": self.transport,
            "connections": self.connections,
            "in_flight": self.in_flight,
            "warmup_seconds": self.warmup_seconds,
            "seconds": self.seconds,
            "preloaded": self.preloaded,
            "fresh_connection": self.fresh_connection,
            "tokens": self.tokens,
            "questions_per_message": self.questions_per_message,
            "calls": self.calls,
            "successes": self.successes,
            "errors": self.errors,
            "calls_per_second": self.calls_per_second,
            "latency_ms": latency,
            "latency_distribution": self.distribution,
        })
        .to_string()
    }
}
