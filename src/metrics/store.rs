//! What the store records: each operation by outcome and its latency, and whether its database
//! answers.

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounter};

use super::get;

/// Counts a store operation by outcome and records how long it took.
pub fn store_operation(operation: &'static str, outcome: &'static str, seconds: f64) {
    type Series = ((&'static str, &'static str), IntCounter, Histogram);
    // Each pair's series resolved once, as for verdicts: a few pairs, scanned.
    static SERIES: LazyLock<std::sync::RwLock<Vec<Series>>> = LazyLock::new(Default::default);
    {
        let series = SERIES
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, count, time)) = series.iter().find(|(key, ..)| *key == (operation, outcome))
        {
            count.inc();
            time.observe(seconds);
            return;
        }
    }
    let m = get();
    let count = m.store_operations.with_label_values(&[operation, outcome]);
    let time = m.store_seconds.with_label_values(&[operation]);
    count.inc();
    time.observe(seconds);
    SERIES
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(((operation, outcome), count, time));
}

/// Whether the store's database answers.
pub fn store_up(up: bool) {
    get().store_up.set(i64::from(up));
}
