//! The part of Envoy's `CheckRequest` the decision needs, read straight from the wire: the
//! `authorization` and `dpop` headers, the `scope` context extension, the request's method,
//! scheme, host and path, the peer's certificate, and whether there is an HTTP request at all. Everything else (every other header, the peers' addresses, the TLS session, metadata)
//! is skipped unread, so it costs no allocation and no check: a non-UTF-8 byte in a cookie
//! cannot fail a request whose token is good, as decoding the whole message would.

use grpcio::MessageReader;
use protobuf::CodedInputStream;

use crate::authz::RequestFacts;
use crate::codec;
use crate::tokens::binding::{certificate_thumbprint, htu, DpopRequest, Presentation};

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
    /// `attributes.request.http`'s method, host, path (with its query) and scheme, as sent.
    pub method: Vec<u8>,
    pub host: Vec<u8>,
    pub path: Vec<u8>,
    pub scheme: Vec<u8>,
    /// Every `dpop` header's value (RFC 9449's proof), as sent.
    pub dpop: Vec<Vec<u8>>,
    /// `attributes.source.certificate`: the client's certificate, URL-encoded PEM, when Envoy
    /// includes it (`include_peer_certificate`).
    pub certificate: Vec<u8>,
    /// Every header (name, value), from `header_map` when Envoy sends that, else `headers`.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// `attributes.source.principal`: the calling workload (a SPIFFE ID, a certificate subject).
    pub principal: Vec<u8>,
}

impl CheckRequestFields {
    /// How the request presents its token: with the DPoP scheme (`dpop`), its proofs, method
    /// and URL; and its client certificate's thumbprint, when Envoy sent one that reads.
    pub fn presentation(&self, dpop: bool) -> Presentation {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let certificate = (!self.certificate.is_empty())
            .then(|| {
                let pem: Vec<u8> = percent_encoding::percent_decode(&self.certificate).collect();
                certificate_thumbprint(&pem).ok()
            })
            .flatten();
        let dpop = dpop.then(|| DpopRequest {
            proofs: self.dpop.iter().map(|proof| text(proof)).collect(),
            method: text(&self.method),
            url: htu::request_url(&text(&self.scheme), &text(&self.host), &text(&self.path))
                .map_err(|why| format!("{why} (Envoy's CheckRequest)")),
        });
        Presentation { dpop, certificate }
    }

    /// The request as the routes see it, its headers only when a rule reads them.
    pub fn request_facts(&self, with_headers: bool) -> RequestFacts {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut request =
            RequestFacts::new(&text(&self.method), &text(&self.host), &text(&self.path));
        request.principal = text(&self.principal);
        if with_headers {
            for (name, value) in &self.headers {
                request.add_header(name, value);
            }
        }
        request
    }
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
    question.dpop = match headers.dpop_map {
        Some(each) => each,
        None => headers.dpop_joined.into_iter().collect(),
    };
    question.method = headers.method;
    question.host = headers.host;
    question.path = headers.path;
    question.scheme = headers.scheme;
    question.headers = headers.all;
    Ok(question)
}

/// The `authorization` values seen, by where Envoy put them.
#[derive(Default)]
struct Headers {
    /// From `headers`, a map: its last `authorization` entry.
    joined: Option<Vec<u8>>,
    /// From `header_map`, when it is there: every `authorization` entry.
    map: Option<Vec<Vec<u8>>>,
    /// Every header, from `header_map` when it is there, else from `headers`.
    all: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether `all` came from `header_map` (then `headers` entries are not added).
    all_from_map: bool,
    /// The `dpop` values, as `joined` and `map` are for `authorization`.
    dpop_joined: Option<Vec<u8>>,
    dpop_map: Option<Vec<Vec<u8>>>,
    method: Vec<u8>,
    host: Vec<u8>,
    path: Vec<u8>,
    scheme: Vec<u8>,
}

/// AttributeContext: source = 1, request = 4, context_extensions = 10 (map<string, string>).
fn attributes(
    input: &mut CodedInputStream<'_>,
    question: &mut CheckRequestFields,
    headers: &mut Headers,
) -> protobuf::Result<()> {
    fields(input, |input, tag| match tag {
        // AttributeContext.Peer: principal = 4.
        10 => nested(input, |input| {
            fields(input, |input, tag| match tag {
                34 => input.read_bytes_into(&mut question.principal),
                42 => input.read_bytes_into(&mut question.certificate),
                _ => skip(input, tag),
            })
        }),
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

/// AttributeContext.HttpRequest: method = 2, headers = 3 (map<string, string>), path = 4,
/// host = 5, scheme = 6, header_map = 13.
fn http_request(input: &mut CodedInputStream<'_>, headers: &mut Headers) -> protobuf::Result<()> {
    fields(input, |input, tag| match tag {
        18 => input.read_bytes_into(&mut headers.method),
        34 => input.read_bytes_into(&mut headers.path),
        42 => input.read_bytes_into(&mut headers.host),
        50 => input.read_bytes_into(&mut headers.scheme),
        26 => nested(input, |input| {
            if let Some((key, value)) = entry(input)? {
                if key.eq_ignore_ascii_case(b"authorization") {
                    headers.joined = Some(value.clone());
                } else if key.eq_ignore_ascii_case(b"dpop") {
                    headers.dpop_joined = Some(value.clone());
                }
                if !headers.all_from_map {
                    headers.all.push((key, value));
                }
            }
            Ok(())
        }),
        106 => nested(input, |input| {
            if !headers.all_from_map {
                headers.all.clear();
                headers.all_from_map = true;
            }
            let each = headers.map.get_or_insert_with(Vec::new);
            let dpop = headers.dpop_map.get_or_insert_with(Vec::new);
            let all = &mut headers.all;
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
                    let value = if raw.is_empty() { value } else { raw };
                    if key.eq_ignore_ascii_case(b"authorization") {
                        each.push(value.clone());
                    } else if key.eq_ignore_ascii_case(b"dpop") {
                        dpop.push(value.clone());
                    }
                    all.push((key, value));
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
        assert!(question.http);
        assert_eq!(question.authorization, vec![b"Bearer abc".to_vec()]);
        assert_eq!(question.scope, Some(b"read admin".to_vec()));
        assert_eq!(
            (question.method.as_slice(), question.path.as_slice()),
            (&b"GET"[..], &b"/x"[..])
        );
        let facts = question.request_facts(true);
        assert_eq!(facts.path, "/x");
        assert!(facts
            .headers
            .iter()
            .any(|(name, value)| name == "cookie" && value == "a=b"));
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
    fn the_dpop_header_scheme_and_peer_certificate_make_the_presentation() {
        let mut request = request(&[("authorization", "DPoP t"), ("dpop", "p.r.f")], None);
        let attributes = request.attributes.mut_or_insert_default();
        let http = attributes
            .request
            .mut_or_insert_default()
            .http
            .mut_or_insert_default();
        http.scheme = "https".to_owned();
        http.host = "API.example:443".to_owned();
        http.path = "/orders?page=2".to_owned();
        let der = rcgen::generate_simple_self_signed(vec!["c.example".to_owned()])
            .expect("a certificate")
            .cert;
        let pem = der.pem();
        attributes.source.mut_or_insert_default().certificate =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let question = asked(&request);
        assert_eq!(question.dpop, vec![b"p.r.f".to_vec()]);
        let presented = question.presentation(true);
        let dpop = presented.dpop.expect("the DPoP scheme");
        assert_eq!(dpop.proofs, ["p.r.f"]);
        assert_eq!(dpop.method, "GET");
        assert_eq!(dpop.url.as_deref(), Ok("https://api.example/orders"));
        assert_eq!(
            presented.certificate,
            Some(openssl::sha::sha256(der.der())),
            "the thumbprint of the certificate's DER"
        );
        // Bearer: no proof read; the certificate still, for certificate-bound tokens.
        let bearer = question.presentation(false);
        assert!(bearer.dpop.is_none());
        assert!(bearer.certificate.is_some());
        // A certificate that does not read is none.
        let broken = CheckRequestFields {
            certificate: b"-----BEGIN%20CERTIFICATE-----garbage".to_vec(),
            ..CheckRequestFields::default()
        };
        assert_eq!(broken.presentation(false).certificate, None);
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
