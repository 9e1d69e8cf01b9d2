//! One introspection call (RFC 7662 section 2): the token POSTed as a form, this server
//! authenticated by client_secret_basic (RFC 6749 section 2.3.1), the answer read within a size
//! limit and parsed strictly. The agent is the key fetches' one: the provider's CA, no redirects,
//! a timeout on the whole call.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::tokens::json;

/// The largest answer read; real ones are a few hundred bytes to a few KiB.
pub(super) const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// The `Authorization` header of client_secret_basic: id and secret each form-encoded first.
pub(super) fn basic_authorization(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// The client secret in `path`, its trailing line break left out; never in an error.
pub(super) fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("client_secret_file {}: cannot read: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(format!("client_secret_file {} is empty", path.display()));
    }
    Ok(secret.to_owned())
}

/// Asks `url` about `token`; the answer's members, or why there is no RFC 7662 answer.
pub(super) fn introspect(
    agent: &ureq::Agent,
    url: &str,
    authorization: &str,
    token: &str,
) -> Result<Map<String, Value>, String> {
    let body = form_urlencoded::Serializer::new(String::with_capacity(token.len() + 48))
        .append_pair("token", token)
        .append_pair("token_type_hint", "access_token")
        .finish();
    let response = agent
        .post(url)
        .header("Accept", "application/json")
        .header("Authorization", authorization)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body);
    let mut response = match response {
        Ok(response) => response,
        Err(ureq::Error::StatusCode(code)) => return Err(status_problem(code)),
        Err(e) => return Err(format!("cannot call it: {e}")),
    };
    let status = response.status();
    if !status.is_success() {
        return Err(status_problem(status.as_u16()));
    }
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                format!("its answer is larger than {MAX_ANSWER_BYTES} bytes")
            }
            e => format!("cannot read its answer: {e}"),
        })?;
    match json::parse(&bytes) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err("its answer is not a JSON object".to_owned()),
        Err(json::JsonError::Duplicate(name)) => Err(format!(
            "its answer names the member {:?} twice",
            crate::quote::quoted(&name)
        )),
        Err(json::JsonError::Invalid) => {
            Err("its answer is not JSON (or nests deeper than 128 levels)".to_owned())
        }
    }
}

fn status_problem(code: u16) -> String {
    match code {
        300..=399 => format!(
            "it answered {code}, a redirect, which is not followed: configure the URL it names"
        ),
        401 | 403 => {
            format!("it answered {code}: it does not accept this server's client_id and secret")
        }
        code => format!("it answered HTTP {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_form_encoded_before_base64() {
        // RFC 6749 2.3.1: "a b" is sent as "a+b", ":" as "%3A".
        let header = basic_authorization("gate way", "s:e/c");
        let decoded = STANDARD
            .decode(header.strip_prefix("Basic ").expect("basic"))
            .expect("base64");
        assert_eq!(decoded, b"gate+way:s%3Ae%2Fc");
    }

    #[test]
    fn a_secret_file_loses_its_line_break_and_may_not_be_empty() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(read_secret(&path), Ok("s3cret".to_owned()));
        std::fs::write(&path, "\n").expect("write");
        assert!(read_secret(&path).expect_err("empty").contains("empty"));
    }
}
