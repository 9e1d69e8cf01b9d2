//! The URL a DPoP proof names (`htu`) and the URL of the request, each normalized as RFC 9449
//! section 4.3 asks (RFC 3986 sections 6.2.2 and 6.2.3: scheme and host in lower case, the
//! default port left out, dot segments removed, an empty path as `/`), without query and
//! fragment, so that two spellings of one URL compare equal and nothing else does.

use url::Url;

/// Most bytes of a URL read: beyond any real request line.
const MAX_URL_BYTES: usize = 8192;

/// `url`, normalized, without its query and fragment; or why it is not an http(s) URL.
pub fn normalize(url: &str) -> Result<String, &'static str> {
    if url.len() > MAX_URL_BYTES {
        return Err("it is longer than 8192 bytes");
    }
    let mut parsed = Url::parse(url).map_err(|_| "it does not parse as a URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("its scheme is not http or https");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("it has no host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("it carries a user name or password");
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed.into())
}

/// The request's URL from its parts as a proxy gives them: `scheme`, `host` (with its port, if
/// any) and `path` (its query, if any, ignored); normalized.
pub fn request_url(scheme: &str, host: &str, path: &str) -> Result<String, &'static str> {
    if scheme.is_empty() {
        return Err("the proxy did not say its scheme");
    }
    if host.is_empty() {
        return Err("the proxy did not say its host");
    }
    if !path.starts_with('/') {
        return Err("the proxy did not say its path");
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    normalize(&format!("{}://{host}{path}", scheme.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_url_are_equal_and_others_are_not() {
        let url = normalize("https://api.example/orders").expect("a URL");
        for same in [
            "HTTPS://API.Example/orders",
            "https://api.example:443/orders",
            "https://api.example/a/../orders",
            "https://api.example/orders?page=2",
            "https://api.example/orders#top",
        ] {
            assert_eq!(normalize(same).as_deref(), Ok(url.as_str()), "{same}");
        }
        for other in [
            "https://api.example/orders/",
            "https://api.example:8443/orders",
            "http://api.example/orders",
            "https://other.example/orders",
            "https://api.example/Orders",
        ] {
            assert_ne!(normalize(other).as_deref(), Ok(url.as_str()), "{other}");
        }
        assert_eq!(
            normalize("https://api.example").as_deref(),
            Ok("https://api.example/")
        );
    }

    #[test]
    fn what_is_not_an_http_url_is_refused() {
        for bad in [
            "",
            "/orders",
            "ftp://api.example/x",
            "https://",
            "https://user:pw@api.example/x",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert!(normalize(&format!("https://a.example/{}", "x".repeat(9000))).is_err());
    }

    #[test]
    fn a_request_url_is_made_of_its_parts_its_query_ignored() {
        assert_eq!(
            request_url("HTTPS", "API.example:443", "/orders?page=1").as_deref(),
            Ok("https://api.example/orders")
        );
        assert!(request_url("", "a", "/").is_err());
        assert!(request_url("https", "", "/").is_err());
        assert!(request_url("https", "a", "").is_err());
    }
}
