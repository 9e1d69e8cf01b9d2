//! What the server counts, in the Prometheus text format: gRPC calls (named as the established
//! gRPC exporters name them, so existing dashboards work), token validation, the store, the HTTP
//! ports (connections, refusals), proxies' questions (authz decisions, claims left out), the
//! token streams' memory budget, and the process. The metrics are process-wide, as a scrape target is one process: the families are
//! statics in one registry, and the code that records knows nothing of how they are served.
//!
//! Calls, verdicts and cache lookups (what every call records) are recorded only once
//! [`enable`] has been called (by the server's `/metrics` endpoint): without one nobody could
//! read them, so a server without it pays nothing. Key set loads, revocations and the store's
//! availability are rare and always kept.

mod authz;
mod calls;
mod http;
mod store;
mod streams;
mod tokens;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use prometheus::{
    Encoder as _, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use authz::{
    authz_decision, authz_route_decision, authz_rule_error, RouteDecisions, Transport,
};
pub use calls::{CallMeter, Kind};
pub use http::{http_connections, http_refused};
pub use store::{store_operation, store_up};
pub use streams::{stream_budget_held, stream_budget_limit, stream_read_held_back};
pub use tokens::{
    bound_token, forget_key_set, introspection, introspection_stale, key_set_load,
    revocations_held, token_cache, token_cache_bytes, validation,
};

/// Latency buckets, in seconds, from 50 µs: most answers here take well under a millisecond,
/// and the default buckets (from 5 ms) would put them all in the first.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns recording of calls on, for the rest of the process.
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether calls are recorded.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Every family, registered once.
pub struct Metrics {
    registry: Registry,
    /// `grpc_server_started_total{grpc_type, grpc_service, grpc_method}`.
    grpc_started: IntCounterVec,
    /// `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`.
    grpc_handled: IntCounterVec,
    /// `grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method, grpc_code}`.
    grpc_handling: HistogramVec,
    /// `grpc_server_msg_received_total{grpc_type, grpc_service, grpc_method}`.
    grpc_received: IntCounterVec,
    /// `grpc_server_msg_sent_total{grpc_type, grpc_service, grpc_method}`.
    grpc_sent: IntCounterVec,
    /// `grpc_server_open_streams{grpc_type, grpc_service, grpc_method}`: streams open now.
    grpc_open_streams: IntGaugeVec,
    /// Validations by verdict.
    validations: IntCounterVec,
    /// Token cache lookups by result.
    cache: IntCounterVec,
    /// Key set loads by issuer and outcome.
    key_loads: IntCounterVec,
    /// Seconds since each issuer's keys last loaded.
    key_set_age: GaugeVec,
    revocations: IntGauge,
    /// Introspection calls by issuer and outcome.
    introspections: IntCounterVec,
    /// Introspection call latency by issuer.
    introspection_seconds: HistogramVec,
    /// Cached introspection answers served past their cache time while the endpoint failed.
    introspection_stale: IntCounterVec,
    /// Checks of sender-constrained tokens (DPoP, certificate) by binding and outcome.
    bound_tokens: IntCounterVec,
    /// Store operations by kind and outcome.
    store_operations: IntCounterVec,
    /// Store operation latency by kind.
    store_seconds: HistogramVec,
    store_up: IntGauge,
    /// Connections open on each HTTP port.
    http_connections: IntGaugeVec,
    /// What each HTTP port refused, by reason.
    http_refusals: IntCounterVec,
    /// Proxies' questions answered, by transport and decision.
    authz_decisions: IntCounterVec,
    /// Claims left out of an allowed request's identity, by transport.
    authz_left_out: IntCounterVec,
    /// Routes' decisions, by route and decision.
    authz_route_decisions: IntCounterVec,
    /// Routes' rules that failed at run time, by route.
    authz_rule_errors: IntCounterVec,
    /// What the valid tokens cached weigh.
    cache_bytes: IntGauge,
    /// The token streams' memory budget, and what they hold of it now.
    stream_budget_limit: IntGauge,
    stream_budget_held: IntGauge,
    /// Reads of a stream's next question that waited for room in the budget.
    stream_reads_held_back: IntCounter,
}

/// When each issuer's key set last loaded, in Unix milliseconds; absent before its first load.
static KEYS_LOADED_AT: LazyLock<Mutex<HashMap<String, i64>>> = LazyLock::new(Default::default);

fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric")
}

fn histograms(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("a valid metric")
}

const CALL: &[&str] = &["grpc_type", "grpc_service", "grpc_method"];
const HANDLED: &[&str] = &["grpc_type", "grpc_service", "grpc_method", "grpc_code"];

impl Metrics {
    // Long: one statement per family, its name and help beside it, as the scrape shows them.
    fn new() -> Self {
        let metrics = Self {
            registry: Registry::new(),
            grpc_started: counters(
                "grpc_server_started_total",
                "RPCs started on the server.",
                CALL,
            ),
            grpc_handled: counters(
                "grpc_server_handled_total",
                "RPCs completed on the server, by gRPC status code.",
                HANDLED,
            ),
            grpc_handling: histograms(
                "grpc_server_handling_seconds",
                "Time from an RPC's start until its status was sent, in seconds.",
                HANDLED,
            ),
            grpc_received: counters(
                "grpc_server_msg_received_total",
                "Messages received from clients.",
                CALL,
            ),
            grpc_sent: counters(
                "grpc_server_msg_sent_total",
                "Messages sent to clients.",
                CALL,
            ),
            grpc_open_streams: IntGaugeVec::new(
                Opts::new("grpc_server_open_streams", "Streaming RPCs open now."),
                CALL,
            )
            .expect("a valid metric"),
            validations: counters(
                "mrmat_token_validations_total",
                "Token validations, by verdict.",
                &["verdict"],
            ),
            cache: counters(
                "mrmat_token_cache_lookups_total",
                "Lookups in the cache of valid tokens, by result (hit or miss).",
                &["result"],
            ),
            key_loads: counters(
                "mrmat_token_key_set_loads_total",
                "Loads of an identity provider's signing keys, by issuer and outcome (loaded or \
                 failed).",
                &["issuer", "outcome"],
            ),
            key_set_age: GaugeVec::new(
                Opts::new(
                    "mrmat_token_key_set_age_seconds",
                    "Seconds since an identity provider's signing keys last loaded, by issuer; \
                     NaN before they first load.",
                ),
                &["issuer"],
            )
            .expect("a valid metric"),
            revocations: IntGauge::new(
                "mrmat_token_revocations",
                "Revoked token ids held (each until its expiry).",
            )
            .expect("a valid metric"),
            introspections: counters(
                "mrmat_token_introspections_total",
                "Token introspection calls (RFC 7662) to an identity provider, by issuer and \
                 outcome (active, inactive, refused: an active answer this server refuses, \
                 failed: no usable answer, busy: not made, too many waiting; held_off: not made, \
                 the endpoint failing).",
                &["issuer", "outcome"],
            ),
            introspection_seconds: histograms(
                "mrmat_token_introspection_seconds",
                "Token introspection call latency, in seconds, by issuer.",
                &["issuer"],
            ),
            introspection_stale: counters(
                "mrmat_token_introspection_stale_total",
                "Cached active introspection answers served past their cache time because the \
                 endpoint could not answer (stale_if_error), by issuer.",
                &["issuer"],
            ),
            bound_tokens: counters(
                "mrmat_token_bound_checks_total",
                "Valid tokens held to their binding (cnf) or sent with the DPoP scheme, by                  binding (dpop, certificate, none) and outcome (valid or the refusal's verdict).",
                &["binding", "outcome"],
            ),
            store_operations: counters(
                "mrmat_store_operations_total",
                "Store operations, by operation and outcome.",
                &["operation", "outcome"],
            ),
            store_seconds: histograms(
                "mrmat_store_operation_seconds",
                "Store operation latency, in seconds, by operation.",
                &["operation"],
            ),
            store_up: IntGauge::new(
                "mrmat_store_up",
                "Whether the store's database answers (1) or not (0).",
            )
            .expect("a valid metric"),
            http_connections: IntGaugeVec::new(
                Opts::new(
                    "mrmat_http_connections",
                    "Connections open on an HTTP port (metrics, ...), by port.",
                ),
                &["port"],
            )
            .expect("a valid metric"),
            http_refusals: counters(
                "mrmat_http_refusals_total",
                "Requests and connections an HTTP port refused, by port and reason \
                 (request_line_too_long, head_too_large, head_timeout, write_timeout, \
                 too_many_connections, bad_host: no Host on HTTP/1.1, several, or not a host; \
                 body: answered by its head, the connection closed with at most 64 KiB of the \
                 body read).",
                &["port", "reason"],
            ),
            authz_decisions: counters(
                "mrmat_authz_decisions_total",
                "Proxies' questions answered (ext_authz, forward_auth), by decision (allowed, \
                 no_token, malformed, invalid_token, insufficient_scope, cannot_judge).",
                &["transport", "decision"],
            ),
            authz_left_out: counters(
                "mrmat_authz_claims_left_out_total",
                "Claims left out of an allowed request's identity headers because their value \
                 cannot be a header value (CR, LF, NUL, other controls), by transport.",
                &["transport"],
            ),
            authz_route_decisions: counters(
                "mrmat_authz_route_decisions_total",
                "Proxies' questions decided by a route of the config file, by route (default: \
                 none covered it) and decision (public, allowed, forbidden, no_token, \
                 invalid_token, insufficient_scope, ...; shadow_allowed and shadow_denied: what \
                 a shadow rule would have decided).",
                &["route", "decision"],
            ),
            authz_rule_errors: counters(
                "mrmat_authz_rule_errors_total",
                "Routes' rules that failed at run time (an absent claim, a type that does not \
                 fit), each taken as false, by route.",
                &["route"],
            ),
            cache_bytes: IntGauge::new(
                "mrmat_token_cache_bytes",
                "Memory the cache of valid tokens holds, in bytes (each entry weighed by its \
                 claims; bounded by --token-cache-bytes).",
            )
            .expect("a valid metric"),
            stream_budget_limit: IntGauge::new(
                "mrmat_stream_budget_bytes",
                "The token streams' memory budget (--stream-budget), in bytes.",
            )
            .expect("a valid metric"),
            stream_budget_held: IntGauge::new(
                "mrmat_stream_budget_held_bytes",
                "What the token streams hold of their budget now, in bytes: questions read and \
                 not answered, answers written and not yet taken by their clients.",
            )
            .expect("a valid metric"),
            stream_reads_held_back: IntCounter::new(
                "mrmat_stream_reads_held_back_total",
                "Times a token stream waited for room in the budget before reading its next \
                 question (its client held back by flow control meanwhile).",
            )
            .expect("a valid metric"),
        };
        metrics.store_up.set(1);
        let r = &metrics.registry;
        let families: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.grpc_started.clone()),
            Box::new(metrics.grpc_handled.clone()),
            Box::new(metrics.grpc_handling.clone()),
            Box::new(metrics.grpc_received.clone()),
            Box::new(metrics.grpc_sent.clone()),
            Box::new(metrics.grpc_open_streams.clone()),
            Box::new(metrics.validations.clone()),
            Box::new(metrics.cache.clone()),
            Box::new(metrics.key_loads.clone()),
            Box::new(metrics.key_set_age.clone()),
            Box::new(metrics.revocations.clone()),
            Box::new(metrics.introspections.clone()),
            Box::new(metrics.introspection_seconds.clone()),
            Box::new(metrics.introspection_stale.clone()),
            Box::new(metrics.bound_tokens.clone()),
            Box::new(metrics.store_operations.clone()),
            Box::new(metrics.store_seconds.clone()),
            Box::new(metrics.store_up.clone()),
            Box::new(metrics.http_connections.clone()),
            Box::new(metrics.http_refusals.clone()),
            Box::new(metrics.authz_decisions.clone()),
            Box::new(metrics.authz_left_out.clone()),
            Box::new(metrics.authz_route_decisions.clone()),
            Box::new(metrics.authz_rule_errors.clone()),
            Box::new(metrics.cache_bytes.clone()),
            Box::new(metrics.stream_budget_limit.clone()),
            Box::new(metrics.stream_budget_held.clone()),
            Box::new(metrics.stream_reads_held_back.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for family in families {
            r.register(family).expect("each family registered once");
        }
        metrics
    }

    /// Every family in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let now = unix_millis();
        for (issuer, loaded_at) in KEYS_LOADED_AT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let age = match loaded_at {
                0 => f64::NAN,
                at => now.saturating_sub(*at).max(0) as f64 / 1000.0,
            };
            self.key_set_age.with_label_values(&[issuer]).set(age);
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text format encodes any family");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// Now, in Unix milliseconds.
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The media type of [`Metrics::encode`].
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_families_encode_in_the_text_format() {
        enable();
        validation("valid");
        validation("valid");
        token_cache(true);
        // A family with labels shows once it has a series.
        get()
            .grpc_handling
            .with_label_values(&["unary", "GreetingV2Proto", "GetGreeting", "OK"])
            .observe(0.000_07);
        let text = get().encode();
        assert!(text.contains(
            "grpc_server_handling_seconds_bucket{grpc_code=\"OK\",grpc_method=\"GetGreeting\",\
             grpc_service=\"GreetingV2Proto\",grpc_type=\"unary\",le=\"0.0001\"} 1"
        ));
        assert!(text.contains("# TYPE grpc_server_handling_seconds histogram"));
        assert!(text.contains("mrmat_token_validations_total{verdict=\"valid\"}"));
        assert!(text.contains("mrmat_token_cache_lookups_total{result=\"hit\"}"));
        assert!(text.contains("process_resident_memory_bytes"));
        assert!(text.contains("mrmat_store_up 1"));
    }
}
