//! What the token streams' memory budget records: its size, what is held of it now (only with
//! the endpoint on: every message changes it), and the reads it held back.

use super::{enabled, get};

/// The budget's size, in bytes.
pub fn stream_budget_limit(bytes: usize) {
    get()
        .stream_budget_limit
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// What the streams hold changed by `change` bytes.
pub fn stream_budget_held(change: i64) {
    if enabled() {
        get().stream_budget_held.add(change);
    }
}

/// A stream waited for room in the budget before reading its next question.
pub fn stream_read_held_back() {
    get().stream_reads_held_back.inc();
}
