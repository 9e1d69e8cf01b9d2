//! The clock, as both domains read it: Unix seconds, and RFC 3339 for people.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as an RFC 3339 time, e.g. `2026-11-25T10:00:00Z`.
pub fn rfc3339(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(time) => time.to_string(),
        Err(_) => format!("{seconds} (Unix seconds)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_600_800), "2026-11-25T10:00:00Z");
    }

    #[test]
    fn a_time_out_of_rfc3339s_range_is_said_in_seconds() {
        assert_eq!(rfc3339(i64::MAX), format!("{} (Unix seconds)", i64::MAX));
    }
}
