//! Log lines that a client can cause, held to a rate: anyone who can connect can send a
//! thousand broken messages a second, and one warn line for each would bury the lines an
//! operator needs (and fill a disk). Each kind of such line is a [`Throttled`]: a burst of
//! [`BURST`] lines, then one a second; the next line that is written says how many were left out
//! since the last one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines a kind may write at once, after a quiet spell.
pub const BURST: u32 = 5;

/// How often a kind may write a line once its burst is spent.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One kind of warn line about bad input, written at most [`BURST`] at once and one each
/// [`INTERVAL`] after that. Kept in a `static` beside the code that writes it.
pub struct Throttled {
    state: Mutex<ThrottleWindow>,
}

struct ThrottleWindow {
    /// Lines that may be written now (a token bucket refilled one per interval).
    allowance: u32,
    /// When the allowance was last refilled; None before the first line.
    refilled: Option<Instant>,
    /// Lines left out since the last one written.
    left_out: u64,
}

impl Throttled {
    /// A kind that has written nothing yet.
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(ThrottleWindow {
                allowance: BURST,
                refilled: None,
                left_out: 0,
            }),
        }
    }

    /// Writes the line `line` makes at warn, unless this kind has written its share; `line` is
    /// called only when the line is written.
    pub fn warn(&self, line: impl FnOnce() -> String) {
        if !log::log_enabled!(log::Level::Warn) {
            return;
        }
        if let Some(left_out) = self.take(Instant::now()) {
            let line = line();
            match left_out {
                0 => log::warn!("{line}"),
                n => log::warn!("{line} ({n} more like it left out since the last such line)"),
            }
        }
    }

    /// Whether a line may be written at `now`: Some(lines left out before it), or None.
    fn take(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic while counting: the counts are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refilled = *state.refilled.get_or_insert(now);
        let elapsed = now.saturating_duration_since(refilled);
        let earned = elapsed.as_nanos() / INTERVAL.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            state.allowance = state.allowance.saturating_add(earned).min(BURST);
            // Whole intervals only: the part of one not yet earned counts towards the next.
            state.refilled = Some(refilled + INTERVAL * earned);
        }
        if state.allowance == 0 {
            state.left_out = state.left_out.saturating_add(1);
            return None;
        }
        state.allowance -= 1;
        Some(std::mem::take(&mut state.left_out))
    }
}

impl Default for Throttled {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_an_interval_and_the_next_line_counts_the_left_out() {
        let kind = Throttled::new();
        let start = Instant::now();
        for _ in 0..BURST {
            assert_eq!(kind.take(start), Some(0));
        }
        for _ in 0..186 {
            assert_eq!(kind.take(start), None);
        }
        assert_eq!(kind.take(start + INTERVAL / 2), None, "not yet an interval");
        assert_eq!(kind.take(start + INTERVAL), Some(187));
        assert_eq!(kind.take(start + INTERVAL), None);
        assert_eq!(kind.take(start + INTERVAL * 2), Some(1));
    }

    #[test]
    fn a_quiet_spell_earns_the_burst_back_and_no_more() {
        let kind = Throttled::new();
        let start = Instant::now();
        for _ in 0..BURST {
            kind.take(start);
        }
        let later = start + INTERVAL * 1000;
        for _ in 0..BURST {
            assert_eq!(kind.take(later), Some(0));
        }
        assert_eq!(kind.take(later), None);
    }
}
