//! What a request is judged on besides its token: the method, host, path, query and headers the
//! proxy reports, and the calling workload's identity; and all of it, with the token's claims,
//! as the variables a rule sees.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::Value;

use super::rules::json_object;
use crate::tokens::ValidToken;

/// The request a proxy asks about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// `GET`, `POST`, ... as sent.
    pub method: String,
    /// The host, lower case, without its port.
    pub host: String,
    /// The path, dot segments resolved and repeated slashes folded, without the query.
    pub path: String,
    /// The query, without its `?`; empty when none.
    pub query: String,
    /// Headers whose value is UTF-8, names lower case; a repeated one joined with `,`.
    pub headers: Vec<(String, String)>,
    /// The calling workload as the proxy reports it (a SPIFFE ID, a certificate subject);
    /// empty when none.
    pub principal: String,
}

impl RequestFacts {
    /// The facts of a request for `target` (a path with its query, or an absolute URI) on
    /// `host` with `method`.
    pub fn new(method: &str, host: &str, target: &str) -> Self {
        let target = match target.find("://") {
            // An absolute URI (`X-Forwarded-Uri` may be one): its path on.
            Some(scheme) if !target[..scheme].contains('/') => {
                let rest = &target[scheme + 3..];
                rest.find('/').map_or("/", |at| &rest[at..])
            }
            _ => target,
        };
        let target = target.split('#').next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: method.to_owned(),
            host: host_only(host),
            path: normalized_path(path),
            query: query.to_owned(),
            headers: Vec::new(),
            principal: String::new(),
        }
    }

    /// Adds a header (its name lower-cased); a value that is not UTF-8 is left out.
    pub fn add_header(&mut self, name: &[u8], value: &[u8]) {
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            return;
        };
        let name = name.to_ascii_lowercase();
        match self.headers.iter_mut().find(|(known, _)| *known == name) {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(value);
            }
            None => self.headers.push((name, value.to_owned())),
        }
    }
}

/// `host[:port]` lower case, without its port (an IPv6 literal keeps its brackets).
fn host_only(host: &str) -> String {
    let host = host.trim();
    let bare = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    bare.trim_end_matches('.').to_ascii_lowercase()
}

/// `path` as the app will most likely see it: `.` and `..` segments resolved (written plainly
/// or as `%2e`), repeated slashes folded, so that `/public/../admin` is judged as `/admin`.
pub fn normalized_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        let dots = segment.replace("%2e", ".").replace("%2E", ".");
        match dots.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut normal = String::with_capacity(path.len() + 1);
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() || (path.ends_with('/') && !segments.is_empty()) {
        normal.push('/');
    }
    normal
}

/// The variables of one request's rule: its facts and its token, when it has one.
pub struct Facts<'a> {
    pub token: Option<&'a ValidToken>,
    pub request: &'a RequestFacts,
}

fn string(text: &str) -> Value {
    Value::String(Arc::new(text.to_owned()))
}

fn strings(texts: &[String]) -> Value {
    Value::List(Arc::new(texts.iter().map(|t| string(t)).collect()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let entries: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(key, value)| (Key::from(key), value))
        .collect();
    Value::Map(Map {
        map: Arc::new(entries),
    })
}

impl Facts<'_> {
    /// `claims`: the verified claim set; empty without a token.
    pub fn claims(&self) -> Value {
        match self.token {
            Some(token) => json_object(&token.claims),
            None => map(Vec::new()),
        }
    }

    /// `token`: issuer, subject, audience, scopes, expires_at; empty strings and lists without
    /// a token.
    pub fn token(&self) -> Value {
        let (issuer, subject, audience, scopes, expires_at) = match self.token {
            Some(t) => (
                t.issuer.as_str(),
                t.subject.as_str(),
                t.audience.as_slice(),
                t.scopes.as_slice(),
                t.expires_at,
            ),
            None => ("", "", &[][..], &[][..], 0),
        };
        let expires_at = chrono::DateTime::from_timestamp(expires_at, 0)
            .unwrap_or_default()
            .fixed_offset();
        map(vec![
            ("issuer", string(issuer)),
            ("subject", string(subject)),
            ("audience", strings(audience)),
            ("scopes", strings(scopes)),
            ("expires_at", Value::Timestamp(expires_at)),
        ])
    }

    /// `request`: method, host, path, query, headers.
    pub fn request(&self) -> Value {
        let request = self.request;
        let headers: HashMap<Key, Value> = request
            .headers
            .iter()
            .map(|(name, value)| (Key::from(name.as_str()), string(value)))
            .collect();
        map(vec![
            ("method", string(&request.method)),
            ("host", string(&request.host)),
            ("path", string(&request.path)),
            ("query", string(&request.query)),
            (
                "headers",
                Value::Map(Map {
                    map: Arc::new(headers),
                }),
            ),
        ])
    }

    /// `peer`: principal.
    pub fn peer(&self) -> Value {
        map(vec![("principal", string(&self.request.principal))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_judged_as_the_app_sees_them() {
        for (given, judged) in [
            ("/", "/"),
            ("", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/admin", "/admin"),
            ("//admin//x", "/admin/x"),
            ("/./admin", "/admin"),
            ("/../../admin", "/admin"),
        ] {
            assert_eq!(normalized_path(given), judged, "{given}");
        }
    }

    #[test]
    fn a_target_splits_into_path_and_query_and_the_host_loses_its_port() {
        let facts = RequestFacts::new("GET", "API.Example.com:8443", "/x/../y?a=1&b=2#frag");
        assert_eq!(
            (
                facts.host.as_str(),
                facts.path.as_str(),
                facts.query.as_str()
            ),
            ("api.example.com", "/y", "a=1&b=2")
        );
        let facts = RequestFacts::new("GET", "[::1]:80", "https://h.example/p?q");
        assert_eq!((facts.host.as_str(), facts.path.as_str()), ("[::1]", "/p"));
    }

    #[test]
    fn headers_are_lower_case_joined_and_utf8_only() {
        let mut facts = RequestFacts::default();
        facts.add_header(b"X-A", b"1");
        facts.add_header(b"x-a", b"2");
        facts.add_header(b"x-bad", b"\xff");
        assert_eq!(facts.headers, vec![("x-a".to_owned(), "1,2".to_owned())]);
    }
}
