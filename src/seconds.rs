//! Durations given on the command line as a number of seconds, such as `5` or `0.25`.

use std::time::Duration;

/// Parses a positive, finite number of seconds (clap value parser).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let duration = parse_seconds_or_zero(text)?;
    if duration.is_zero() {
        return Err(format!("`{text}` must be a positive number of seconds"));
    }
    Ok(duration)
}

/// Parses a finite number of seconds that may be zero (clap value parser).
pub fn parse_seconds_or_zero(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "`{text}` must be zero or a positive number of seconds"
        ));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` seconds is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_fractional_seconds_parse() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn zero_is_allowed_only_where_asked_for() {
        assert_eq!(parse_seconds_or_zero("0"), Ok(Duration::ZERO));
        assert!(parse_seconds_or_zero("-0.5").is_err());
    }

    #[test]
    fn zero_negative_and_junk_are_refused() {
        for bad in ["0", "-1", "abc", "inf", "NaN", "1e300"] {
            assert!(parse_seconds(bad).is_err(), "{bad} was accepted");
        }
    }
}
