//! Values that someone else chose (a token's claims, a key set's key ids, a certificate's
//! names), made fit to put in a reason or a log line.

/// The most characters of such a value that a message repeats.
const MAX_CHARS: usize = 64;

/// `value` quoted and escaped (a newline cannot split a log line), and cut short when long: a
/// 10 KB value must not make a 10 KB line.
pub fn quoted(value: &str) -> String {
    if value.chars().count() <= MAX_CHARS {
        return format!("{value:?}");
    }
    let cut: String = value.chars().take(MAX_CHARS).collect();
    format!("{cut:?}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_escaped_and_cut_short() {
        assert_eq!(quoted("a\"b\n"), r#""a\"b\n""#);
        let long = "x".repeat(1000);
        assert_eq!(quoted(&long), format!("{:?}...", "x".repeat(64)));
    }
}
