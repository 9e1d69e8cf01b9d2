//! A token read from a file or standard input (`--explain-token`, `--token-file`): never from
//! the command line, where every user of the host can read it, and never echoed in an error.

use std::io::Read as _;
use std::path::Path;

/// The most a token file may hold: far more than any token.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// The token in `path` ('-': standard input), trimmed; never echoed in an error.
pub fn read(path: &Path, flag: &str) -> Result<String, String> {
    let named = if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|file| {
            file.take(MAX_TOKEN_FILE_BYTES + 1)
                .read_to_string(&mut text)
        })
    };
    read.map_err(|e| format!("{flag}: cannot read {named}: {e}"))?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(format!(
            "{flag}: {named} holds more than {MAX_TOKEN_FILE_BYTES} bytes; a token is smaller"
        ));
    }
    let token = text.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(format!(
            "{flag}: {named} does not hold one token (no spaces or lines inside it)"
        ));
    }
    Ok(token.to_owned())
}
