//! How the client prints an answer: the original's lines (text, the default), or the answer
//! message in protobuf's canonical JSON mapping, one object per line, for scripts.

use std::io::{self, Write};

use protobuf::MessageFull;
use protobuf_json_mapping::PrintOptions;

use super::error::ClientError;

/// The format of the client's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// The original client's lines, byte for byte.
    #[default]
    Text,
    /// The answer message as one line of protobuf's canonical JSON (lowerCamelCase names,
    /// 64-bit integers as strings, every field present).
    Json,
}

/// Writes `answer`: with `text` in text format, as JSON otherwise.
pub(crate) fn write_answer<M: MessageFull>(
    out: &mut dyn Write,
    format: OutputFormat,
    answer: &M,
    text: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), ClientError> {
    match format {
        OutputFormat::Text => text(out)?,
        OutputFormat::Json => writeln!(out, "{}", to_json(answer))?,
    }
    Ok(())
}

/// `answer` in protobuf's canonical JSON mapping, with default values written out so a script
/// finds every field (`"id": "0"` rather than no `id`).
pub fn to_json<M: MessageFull>(answer: &M) -> String {
    let options = PrintOptions {
        always_output_default_values: true,
        ..PrintOptions::default()
    };
    // Only float NaN/infinity or unknown enum numbers fail to print; our messages have neither.
    protobuf_json_mapping::print_to_string_with_options(answer, &options)
        .expect("the contract's messages print as JSON")
}
