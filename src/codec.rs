//! How message bytes become messages. The generated method descriptors decode with
//! [`decode`] instead of grpcio's own decoder (build.rs points them here), so that a message
//! that does not decode is logged, by type and size but never by content.

use std::fmt;

use grpcio::MessageReader;
use protobuf::{CodedInputStream, MessageFull};

use crate::logs::Throttled;

/// Decodes one message, as grpcio's decoder does (unknown fields are kept, nesting is limited to
/// protobuf's default depth of 100), and logs a message that does not decode at warn (a few
/// lines a second at most: see [`crate::logs`]).
///
/// On a server, grpcio answers a request that fails here with INTERNAL, with this error's text in
/// the status message; the server goes on serving.
pub fn decode<T: MessageFull>(reader: MessageReader) -> grpcio::Result<T> {
    decode_with(reader, T::descriptor().name(), |input| {
        let mut message = T::new();
        message.merge_from(input).map(|()| message)
    })
}

/// Decodes one message of the type named `message_type` with `read`, which takes from the
/// stream only what it needs (a view of the message rather than all of it), and logs a message
/// that does not decode as [`decode`] does.
pub fn decode_with<T>(
    mut reader: MessageReader,
    message_type: &str,
    read: impl FnOnce(&mut CodedInputStream<'_>) -> protobuf::Result<T>,
) -> grpcio::Result<T> {
    let size = reader.len();
    read_message(&mut reader, size, read).map_err(|e| {
        let error = Undecodable {
            message_type: message_type.to_owned(),
            size,
            reason: reason(&e),
        };
        UNDECODABLE.warn(|| error.to_string());
        grpcio::Error::Codec(Box::new(error))
    })
}

/// Reads one message of `size` bytes from `bytes` with `read`.
fn read_message<T>(
    bytes: &mut dyn std::io::BufRead,
    size: usize,
    read: impl FnOnce(&mut CodedInputStream<'_>) -> protobuf::Result<T>,
) -> protobuf::Result<T> {
    let mut input = CodedInputStream::from_buf_read(bytes);
    // The message ends where its bytes do: without this limit, a field whose length runs past
    // the end would be read up to the end of the stream and taken for a shorter, valid field.
    input.push_limit(size as u64)?;
    read(&mut input)
}

/// Messages that do not decode, logged at warn: anyone who can connect can send them, so at
/// most a few lines a second, each saying how many more were left out.
static UNDECODABLE: Throttled = Throttled::new();

/// What is wrong with the bytes, as the caller can act on it.
fn reason(error: &protobuf::Error) -> String {
    let text = error.to_string();
    // rust-protobuf's words for a length that reaches past the limit pushed above.
    if text == "New limit must not be greater than current limit" {
        return "a field's length runs past the end of the message".to_owned();
    }
    text
}

/// A message that is not a valid encoding of its type.
struct Undecodable {
    message_type: String,
    size: usize,
    reason: String,
}

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {}-byte message is not a valid {}: {}",
            self.size, self.message_type, self.reason
        )
    }
}

// grpcio puts the Debug form of a decoding error into the status a caller sees; make it the
// readable sentence.
impl fmt::Debug for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Undecodable {}

#[cfg(test)]
mod tests {
    use protobuf::Message as _;

    use crate::proto::{TokenV1Input, TokenV1InputBatch};

    fn decode_bytes<T: protobuf::MessageFull>(bytes: &[u8]) -> Result<T, String> {
        super::read_message(&mut &bytes[..], bytes.len(), |input| {
            let mut message = T::new();
            message.merge_from(input).map(|()| message)
        })
        .map_err(|e| super::reason(&e))
    }

    #[test]
    fn a_length_past_the_end_is_an_error_not_a_shorter_message() {
        // inputs: a field that declares 4 GiB and holds nothing.
        let refused = decode_bytes::<TokenV1InputBatch>(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(
            refused.unwrap_err(),
            "a field's length runs past the end of the message"
        );
        // A string one byte longer than what follows.
        let refused = decode_bytes::<TokenV1Input>(&[0x12, 0x03, b'a', b'b']);
        assert!(refused.is_err());
    }

    #[test]
    fn what_fits_decodes_as_the_generated_code_decodes_it() {
        let mut batch = TokenV1InputBatch::new();
        for id in 0..3 {
            let mut input = TokenV1Input::new();
            input.request_id = id;
            input.token = format!("t{id}");
            batch.inputs.push(input);
        }
        let bytes = batch.write_to_bytes().unwrap();
        assert_eq!(decode_bytes::<TokenV1InputBatch>(&bytes), Ok(batch));
        assert_eq!(
            decode_bytes::<TokenV1InputBatch>(&[]),
            Ok(TokenV1InputBatch::new())
        );
    }
}
