//! How message bytes become messages. The generated method descriptors decode with
//! [`decode`] instead of grpcio's own decoder (build.rs points them here), so that a message
//! that does not decode is logged, by type and size but never by content.

use std::fmt;

use grpcio::MessageReader;
use protobuf::{CodedInputStream, MessageFull};

/// Decodes one message, as grpcio's decoder does (unknown fields are kept, nesting is limited to
/// protobuf's default depth of 100), and logs a message that does not decode at warn.
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
    let decoded = read(&mut CodedInputStream::from_buf_read(&mut reader));
    decoded.map_err(|e| {
        let error = Undecodable {
            message_type: message_type.to_owned(),
            size,
            reason: e.to_string(),
        };
        log::warn!("{error}");
        grpcio::Error::Codec(Box::new(error))
    })
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
