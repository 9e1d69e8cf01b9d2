//! Durations given on the command line as a number of seconds, such as `5` or `0.25`: parsed,
//! and shown back in `--help` as they are written.

use std::fmt;
use std::time::Duration;

/// A duration as the command line writes it: a number of seconds. Its `Display` is what
/// `--help` shows as the default, so a default is written once, as a `Duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl Seconds {
    /// A positive, finite number of seconds (a clap value parser).
    pub fn positive(text: &str) -> Result<Self, SecondsError> {
        parse_seconds(text).map(Self)
    }

    /// A finite number of seconds that may be zero (a clap value parser).
    pub fn or_zero(text: &str) -> Result<Self, SecondsError> {
        parse_seconds_or_zero(text).map(Self)
    }
}

/// Why a text is not the number of seconds asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondsError {
    text: String,
    kind: SecondsErrorKind,
}

/// What is wrong with it, for callers to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecondsErrorKind {
    /// Not a number.
    NotANumber,
    /// Zero where a positive number is asked for.
    Zero,
    /// Negative, infinite or NaN.
    OutOfRange,
    /// More seconds than a duration holds.
    TooLong,
}

impl SecondsError {
    /// What is wrong.
    pub fn kind(&self) -> SecondsErrorKind {
        self.kind
    }
}

impl fmt::Display for SecondsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = &self.text;
        match self.kind {
            SecondsErrorKind::NotANumber => write!(f, "`{text}` is not a number of seconds"),
            SecondsErrorKind::Zero => write!(f, "`{text}` must be a positive number of seconds"),
            SecondsErrorKind::OutOfRange => {
                write!(f, "`{text}` must be zero or a positive number of seconds")
            }
            SecondsErrorKind::TooLong => write!(f, "`{text}` seconds is too long"),
        }
    }
}

impl std::error::Error for SecondsError {}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 300, 0.25: f64's shortest form that reads back as the same number.
        write!(f, "{}", self.0.as_secs_f64())
    }
}

impl From<Seconds> for Duration {
    fn from(seconds: Seconds) -> Self {
        seconds.0
    }
}

/// Parses a positive, finite number of seconds.
fn parse_seconds(text: &str) -> Result<Duration, SecondsError> {
    let duration = parse_seconds_or_zero(text)?;
    if duration.is_zero() {
        return Err(refused(text, SecondsErrorKind::Zero));
    }
    Ok(duration)
}

/// Parses a finite number of seconds that may be zero.
fn parse_seconds_or_zero(text: &str) -> Result<Duration, SecondsError> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| refused(text, SecondsErrorKind::NotANumber))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(refused(text, SecondsErrorKind::OutOfRange));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| refused(text, SecondsErrorKind::TooLong))
}

fn refused(text: &str, kind: SecondsErrorKind) -> SecondsError {
    SecondsError {
        text: text.to_owned(),
        kind,
    }
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
        assert_eq!(
            parse_seconds_or_zero("-0.5").map_err(|e| e.kind()),
            Err(SecondsErrorKind::OutOfRange)
        );
    }

    #[test]
    fn zero_negative_and_junk_are_refused() {
        for bad in ["0", "-1", "abc", "inf", "NaN", "1e300"] {
            assert!(parse_seconds(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn seconds_show_as_they_are_written_and_read_back() {
        for text in ["300", "0.25", "604800", "0"] {
            let seconds = Seconds::or_zero(text).expect(text);
            assert_eq!(seconds.to_string(), text);
        }
    }
}
