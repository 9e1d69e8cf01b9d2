//! The part of Envoy's `CheckRequest` the decision needs, read straight from the wire: the
//! `authorization` headers, the `scope` context extension, and whether there is an HTTP request
//! at all. Everything else (every other header, the peers' addresses, the TLS session, metadata)
//! is skipped unread, so it costs no allocation and no check: a non-UTF-8 byte in a cookie
//! cannot fail a request whose token is good, as decoding the whole message would.

use grpcio::MessageReader;
use protobuf::CodedInputStream;

use crate::codec;

/// What a `CheckRequest` asks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckRequestFields {
    /// Whether it has `attributes.request.http`, the HTTP request to judge.
    pub http: bool,
    /// Every `authorization` header's value, as sent: from `header_map` when Envoy sends that
    /// (`encode_raw_headers`, one entry per header), else from `headers`.
    pub authorization: Vec<Vec<u8>>,
    /// The `scope` context extension: the scopes the route requires, space separated.
    pub scope: Option<Vec<u8>>,
}

/// The request's fully qualified type, as a message that does not decode is logged.
const CHECK_REQUEST: &str = "envoy.service.auth.v3.CheckRequest";

/// grpcio's deserializer for `Check`.
pub fn decode(reader: MessageReader) -> grpcio::Result<CheckRequestFields> {
    codec::decode_with(reader, CHECK_REQUEST, read)
}

fn read(input: &mut CodedInputStream<'_>) -> protobuf::Result<CheckRequestFields> {
    let mut question = CheckRequestFields::default();
    let mut headers = Headers::default();
    // CheckRequest.attributes = 1
    fields(input, |input, tag| match tag {
        10 => nested(input, |input| {
            attributes(input, &mut question, &mut headers)
        }),
        _ => skip(input, tag),
    })?;
    question.authorization = match headers.map {
        Some(each) => each,
        None => headers.joined.into_iter().collect(),
    };
    Ok(question)
}

/// The `authorization` values seen, by where Envoy put them.
#[derive(Default)]
struct Headers {
    /// From `headers`, a map: its last `authorization` entry.
    joined: Option<Vec<u8>>,
    /// From `header_map`, when it is there: every `authorization` entry.
    map: Option<Vec<Vec<u8>>>,
}

/// AttributeContext: request = 4, context_extensions = 10 (map<string, string>).
fn attributes(
    input: &mut CodedInputStream<'_>,
    question: &mut CheckRequestFields,
    headers: &mut Headers,
) -> protobuf::Result<()> {
    fields(input, |input, tag| match tag {
        34 => nested(input, |input| {
            // AttributeContext.Request: http = 2.
            fields(input, |input, tag| match tag {
                18 => {
                    question.http = true;
                    nested(input, |input| http_request(input, headers))
                }
                _ => skip(input, tag),
            })
        }),
        82 => nested(input, |input| {
            if let Some((key, value)) = entry(input)? {
                if key == b"scope" {
                    question.scope = Some(value);
                }
            }
            Ok(())
        }),
        _ => skip(input, tag),
    })
}

/// AttributeContext.HttpRequest: headers = 3 (map<string, string>), header_map = 13.
fn http_request(input: &mut CodedInputStream<'_>, headers: &mut Headers) -> protobuf::Result<()> {
    fields(input, |input, tag| match tag {
        26 => nested(input, |input| {
            if let Some((key, value)) = entry(input)? {
                if key.eq_ignore_ascii_case(b"authorization") {
                    headers.joined = Some(value);
                }
            }
            Ok(())
        }),
        106 => nested(input, |input| {
            let each = headers.map.get_or_insert_with(Vec::new);
            // HeaderMap: headers = 1, each a HeaderValue (key = 1, value = 2, raw_value = 3).
            fields(input, |input, tag| match tag {
                10 => nested(input, |input| {
                    let (mut key, mut value, mut raw) = (Vec::new(), Vec::new(), Vec::new());
                    fields(input, |input, tag| match tag {
                        10 => input.read_bytes_into(&mut key),
                        18 => input.read_bytes_into(&mut value),
                        26 => input.read_bytes_into(&mut raw),
                        _ => skip(input, tag),
                    })?;
                    if key.eq_ignore_ascii_case(b"authorization") {
                        each.push(if raw.is_empty() { value } else { raw });
                    }
                    Ok(())
                }),
                _ => skip(input, tag),
            })
        }),
        _ => skip(input, tag),
    })
}

/// A map entry (key = 1, value = 2) whose value is wanted only for a few keys: the key, and the
/// value as sent. None when it has no key.
fn entry(input: &mut CodedInputStream<'_>) -> protobuf::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let (mut key, mut value) = (None, Vec::new());
    fields(input, |input, tag| match tag {
        10 => input.read_bytes().map(|read| key = Some(read)),
        18 => input.read_bytes_into(&mut value),
        _ => skip(input, tag),
    })?;
    Ok(key.map(|key| (key, value)))
}

/// Reads every field to the end of the current message, handing each tag to `field`.
fn fields(
    input: &mut CodedInputStream<'_>,
    mut field: impl FnMut(&mut CodedInputStream<'_>, u32) -> protobuf::Result<()>,
) -> protobuf::Result<()> {
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        field(input, tag)?;
    }
    Ok(())
}

/// Reads a length-delimited nested message with `read`, which reads to its end.
fn nested<T>(
    input: &mut CodedInputStream<'_>,
    read: impl FnOnce(&mut CodedInputStream<'_>) -> protobuf::Result<T>,
) -> protobuf::Result<T> {
    let length = input.read_raw_varint64()?;
    let outer = input.push_limit(length)?;
    let read = read(input);
    input.pop_limit(outer);
    read
}

/// Skips a field not read (groups nest at most protobuf's default depth).
fn skip(input: &mut CodedInputStream<'_>, tag: u32) -> protobuf::Result<()> {
    protobuf::rt::skip_field_for_tag(tag, input)
}

#[cfg(test)]
mod tests {
    use protobuf::Message as _;

    use super::*;
    use crate::proto::ext_authz::v3::attribute_context::attribute_context::HttpRequest;
    use crate::proto::ext_authz::v3::{CheckRequest, HeaderValue};

    /// The question in `request`'s encoding.
    fn asked(request: &CheckRequest) -> CheckRequestFields {
        let bytes = request.write_to_bytes().expect("encodes");
        let mut input = CodedInputStream::from_bytes(&bytes);
        read(&mut input).expect("decodes")
    }

    fn request(headers: &[(&str, &str)], scope: Option<&str>) -> CheckRequest {
        let mut http = HttpRequest::new();
        http.method = "GET".to_owned();
        http.path = "/x".to_owned();
        for (key, value) in headers {
            http.headers.insert((*key).to_owned(), (*value).to_owned());
        }
        let mut request = CheckRequest::new();
        let attributes = request.attributes.mut_or_insert_default();
        attributes.request.mut_or_insert_default().http = Some(http).into();
        if let Some(scope) = scope {
            attributes
                .context_extensions
                .insert("scope".to_owned(), scope.to_owned());
            attributes
                .context_extensions
                .insert("other".to_owned(), "x".to_owned());
        }
        request
    }

    #[test]
    fn the_authorization_header_and_the_scope_are_read_and_nothing_else() {
        let question = asked(&request(
            &[
                ("authorization", "Bearer abc"),
                ("cookie", "a=b"),
                (":path", "/x"),
            ],
            Some("read admin"),
        ));
        assert_eq!(
            question,
            CheckRequestFields {
                http: true,
                authorization: vec![b"Bearer abc".to_vec()],
                scope: Some(b"read admin".to_vec()),
            }
        );
        assert_eq!(asked(&CheckRequest::new()), CheckRequestFields::default());
    }

    #[test]
    fn a_header_map_gives_every_authorization_header_raw_values_first() {
        let mut request = request(&[("authorization", "Bearer ignored")], None);
        let http = request
            .attributes
            .mut_or_insert_default()
            .request
            .mut_or_insert_default()
            .http
            .mut_or_insert_default();
        for (key, value, raw) in [
            ("authorization", "", &b"Bearer \xff"[..]),
            ("Authorization", "Bearer b", &b""[..]),
            ("x-other", "Bearer c", &b""[..]),
        ] {
            let mut header = HeaderValue::new();
            header.key = key.to_owned();
            header.value = value.to_owned();
            header.raw_value = raw.to_vec();
            http.header_map.mut_or_insert_default().headers.push(header);
        }
        assert_eq!(
            asked(&request).authorization,
            vec![b"Bearer \xff".to_vec(), b"Bearer b".to_vec()]
        );
    }

    #[test]
    fn non_utf8_bytes_anywhere_are_no_error() {
        // A map<string, string> entry with bytes that are not UTF-8, as Envoy may send a header.
        let entry = [&[10u8, 6][..], b"cookie", &[18, 2, 0xff, 0xfe]].concat();
        let http = [&[26u8, entry.len() as u8][..], &entry].concat();
        let request = [&[18u8, http.len() as u8][..], &http].concat();
        let attributes = [&[34u8, request.len() as u8][..], &request].concat();
        let check = [&[10u8, attributes.len() as u8][..], &attributes].concat();
        assert!(CheckRequest::parse_from_bytes(&check).is_err(), "not UTF-8");
        let mut input = CodedInputStream::from_bytes(&check);
        let question = read(&mut input).expect("skipped unread");
        assert!(question.http);
        assert!(question.authorization.is_empty());
    }
}
