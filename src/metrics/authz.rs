//! What the proxies' questions record: each decision by transport (only with the endpoint on:
//! every request records one), and claims left out of the identity (rare; always kept).

use std::sync::{LazyLock, OnceLock};

use prometheus::IntCounter;

use super::{enabled, get};

/// The transports that carry a proxy's question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Envoy's `ext_authz` over gRPC.
    ExtAuthz,
    /// The HTTP forward-auth port.
    ForwardAuth,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Self::ExtAuthz => "ext_authz",
            Self::ForwardAuth => "forward_auth",
        }
    }
}

/// The decisions [`authz_decision`] counts, in the order of its series.
const DECISIONS: [&str; 7] = [
    "allowed",
    "no_token",
    "malformed",
    "invalid_token",
    "insufficient_scope",
    "forbidden",
    "cannot_judge",
];

/// Counts a decision (`allowed`, `invalid_token`, ...; see `authz::Decision::label`) given over
/// `transport`, and the claims it left out.
pub fn authz_decision(transport: Transport, decision: &'static str, left_out: usize) {
    if left_out > 0 {
        get()
            .authz_left_out
            .with_label_values(&[transport.label()])
            .inc_by(left_out as u64);
    }
    // Every series resolved once: a decision costs an index and an addition.
    static SERIES: LazyLock<[[IntCounter; DECISIONS.len()]; 2]> = LazyLock::new(|| {
        [Transport::ExtAuthz, Transport::ForwardAuth].map(|transport| {
            DECISIONS.map(|decision| {
                get()
                    .authz_decisions
                    .with_label_values(&[transport.label(), decision])
            })
        })
    });
    if !enabled() {
        return;
    }
    if let Some(at) = DECISIONS.iter().position(|known| *known == decision) {
        SERIES[transport as usize][at].inc();
    }
}

/// The decisions only a route counts, besides [`DECISIONS`]: a public route's and a shadow
/// rule's.
const ROUTE_ONLY: [&str; 3] = ["public", "shadow_allowed", "shadow_denied"];

/// A route's decision counters, each resolved at its first decision: then a decision costs an
/// index and an addition, not a lookup of its labels.
#[derive(Debug, Default)]
pub struct RouteDecisions([OnceLock<IntCounter>; DECISIONS.len() + ROUTE_ONLY.len()]);

impl RouteDecisions {
    /// Counts a decision of `route` (`public`, `allowed`, `forbidden`, `shadow_denied`, ...; a
    /// request no route covers is route `default`).
    pub fn count(&self, route: &str, decision: &str) {
        if !enabled() {
            return;
        }
        let at = DECISIONS
            .iter()
            .chain(&ROUTE_ONLY)
            .position(|known| *known == decision);
        let Some(at) = at else {
            get()
                .authz_route_decisions
                .with_label_values(&[route, decision])
                .inc();
            return;
        };
        if let Some(series) = self.0.get(at) {
            series
                .get_or_init(|| {
                    get()
                        .authz_route_decisions
                        .with_label_values(&[route, decision])
                })
                .inc();
        }
    }
}

/// Counts a decision of a route without counters of its own (the fallback, `default`).
pub fn authz_route_decision(route: &str, decision: &str) {
    if enabled() {
        get()
            .authz_route_decisions
            .with_label_values(&[route, decision])
            .inc();
    }
}

/// Counts a route's rule that failed at run time (taken as false).
pub fn authz_rule_error(route: &str) {
    get().authz_rule_errors.with_label_values(&[route]).inc();
}
