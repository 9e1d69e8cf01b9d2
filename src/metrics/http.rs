//! What the HTTP ports record: connections open on each, and what each refused, by reason.

use super::get;

/// A connection opened (`1`) or closed (`-1`) on the HTTP port `port` (`metrics`, ...).
pub fn http_connections(port: &str, change: i64) {
    get()
        .http_connections
        .with_label_values(&[port])
        .add(change);
}

/// A request or connection the HTTP port `port` refused, by `reason` (`head_too_large`, ...).
pub fn http_refused(port: &str, reason: &'static str) {
    get().http_refusals.with_label_values(&[port, reason]).inc();
}
