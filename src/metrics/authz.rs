//! What the proxies' questions record: each decision by transport (only with the endpoint on:
//! every request records one), and claims left out of the identity (rare; always kept).

use std::sync::LazyLock;

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
const DECISIONS: [&str; 6] = [
    "allowed",
    "no_token",
    "malformed",
    "invalid_token",
    "insufficient_scope",
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

/// Counts a decision of a route (`public`, `allowed`, `forbidden`, `shadow_denied`, ...; a
/// request no route covers is route `default`).
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
