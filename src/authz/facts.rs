//! What a request is judged on besides its token: the method, host, path, query and headers the
//! proxy reports, and the calling workload's identity; and all of it, with the token's claims,
//! as the variables a rule sees.

use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp,
};

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
    // Most paths need nothing done: no dot segment, no repeated slash, no escaped dot.
    let plain = path.starts_with('/')
        && !path.contains("//")
        && !path.contains("/.")
        && !path.contains('%');
    if plain {
        return path.to_owned();
    }
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

/// A borrowed value: the rule reads the request's and token's own strings, never copies.
type Val<'a> = Box<dyn cel::common::value::Val + 'a>;

fn string(text: &str) -> Val<'_> {
    Box::new(CelString::from(text))
}

fn strings(texts: &[String]) -> Val<'_> {
    Box::new(CelList::from(
        texts.iter().map(|t| string(t)).collect::<Vec<_>>(),
    ))
}

fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Val<'a>)>) -> Val<'a> {
    let entries: HashMap<CelMapKey<'a>, Val<'a>> = entries
        .into_iter()
        .map(|(key, value)| (CelMapKey::from(key), value))
        .collect();
    Box::new(CelMap::from(entries))
}

/// A JSON value as CEL sees it: an integral number in i64's range an int, other numbers
/// doubles, objects maps with string keys. Claims nest at most 128 deep (serde_json's limit
/// when they were read), so the recursion is bounded.
pub fn json_value(value: &serde_json::Value) -> Val<'_> {
    match value {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Box::new(CelInt::from(i)),
            None => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        serde_json::Value::String(s) => string(s),
        serde_json::Value::Array(items) => Box::new(CelList::from(
            items.iter().map(json_value).collect::<Vec<_>>(),
        )),
        serde_json::Value::Object(object) => json_object(object),
    }
}

/// A JSON object as a CEL map.
pub fn json_object(object: &serde_json::Map<String, serde_json::Value>) -> Val<'_> {
    map(object
        .iter()
        .map(|(key, value)| (key.as_str(), json_value(value))))
}

impl<'a> Facts<'a> {
    /// `claims`: the verified claim set (`only` those named, when given); empty without a
    /// token.
    pub fn claims(&self, only: Option<&[String]>) -> Val<'a> {
        match (self.token, only) {
            (Some(token), None) => json_object(&token.claims),
            (Some(token), Some(names)) => map(names.iter().filter_map(|name| {
                let (name, value) = token.claims.get_key_value(name)?;
                Some((name.as_str(), json_value(value)))
            })),
            (None, _) => map([]),
        }
    }

    /// `token`: issuer, subject, audience, scopes, expires_at (`only` those named, when
    /// given); empty strings and lists without a token.
    pub fn token(&self, only: Option<&[String]>) -> Val<'a> {
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
        let wanted = |name: &str| only.is_none_or(|names| names.iter().any(|n| n == name));
        let mut fields: Vec<(&'a str, Val<'a>)> = Vec::with_capacity(5);
        if wanted("issuer") {
            fields.push(("issuer", string(issuer)));
        }
        if wanted("subject") {
            fields.push(("subject", string(subject)));
        }
        if wanted("audience") {
            fields.push(("audience", strings(audience)));
        }
        if wanted("scopes") {
            fields.push(("scopes", strings(scopes)));
        }
        if wanted("expires_at") {
            let expires_at = chrono::DateTime::from_timestamp(expires_at, 0)
                .unwrap_or_default()
                .fixed_offset();
            fields.push(("expires_at", Box::new(CelTimestamp::from(expires_at))));
        }
        map(fields)
    }

    /// `request`: method, host, path, query, headers (`only` those named, when given).
    pub fn request(&self, only: Option<&[String]>) -> Val<'a> {
        let request = self.request;
        let wanted = |name: &str| only.is_none_or(|names| names.iter().any(|n| n == name));
        let mut fields: Vec<(&'a str, Val<'a>)> = Vec::with_capacity(5);
        for (name, value) in [
            ("method", &request.method),
            ("host", &request.host),
            ("path", &request.path),
            ("query", &request.query),
        ] {
            if wanted(name) {
                fields.push((name, string(value)));
            }
        }
        if wanted("headers") {
            let headers = map(request
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), string(value))));
            fields.push(("headers", headers));
        }
        map(fields)
    }

    /// `peer`: principal.
    pub fn peer(&self) -> Val<'a> {
        map([("principal", string(&self.request.principal))])
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
            ("/a/..", "/"),
            (
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration",
            ),
            ("/a%20b/c", "/a%20b/c"),
            ("/orders/42", "/orders/42"),
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
