//! A decision as Envoy's `CheckResponse`: allowed, the identity set with
//! `OVERWRITE_IF_EXISTS_OR_ADD` and the other identity headers in `headers_to_remove`; denied,
//! the status and `WWW-Authenticate` the client gets, with the gRPC code Envoy reads the
//! decision by.

use grpcio::RpcStatusCode;
use protobuf::{EnumOrUnknown, MessageField};

use crate::authz::Denial;
use crate::proto::ext_authz::v3::header_value_option::HeaderAppendAction;
use crate::proto::ext_authz::v3::{
    check_response, CheckResponse, DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpStatus,
    OkHttpResponse, Status,
};

/// Let the request through, with `set` on it and `remove` taken off.
pub fn allowed(set: Vec<(String, String)>, remove: Vec<String>) -> CheckResponse {
    let mut ok = OkHttpResponse::new();
    ok.headers = set.into_iter().map(overwrite).collect();
    ok.headers_to_remove = remove;
    let mut response = CheckResponse::new();
    response.status = MessageField::some(Status::new());
    response.http_response = Some(check_response::Http_response::OkResponse(ok));
    response
}

/// Refuse it, with the client's status, the challenge, the sentence why, and the DPoP nonce the
/// client is to use.
pub fn denied(
    denial: Denial,
    www_authenticate: String,
    reason: String,
    dpop_nonce: Option<String>,
) -> CheckResponse {
    let code = match denial {
        Denial::NoToken | Denial::InvalidToken => RpcStatusCode::UNAUTHENTICATED,
        Denial::InsufficientScope | Denial::Forbidden => RpcStatusCode::PERMISSION_DENIED,
        Denial::Malformed => RpcStatusCode::INVALID_ARGUMENT,
    };
    let mut http_status = HttpStatus::new();
    http_status.code = EnumOrUnknown::from_i32(i32::from(denial.http_status()));
    let mut denied = DeniedHttpResponse::new();
    denied.status = MessageField::some(http_status);
    if !www_authenticate.is_empty() {
        denied.headers = vec![overwrite(("www-authenticate".to_owned(), www_authenticate))];
    }
    if let Some(nonce) = dpop_nonce {
        denied
            .headers
            .push(overwrite(("dpop-nonce".to_owned(), nonce)));
    }
    denied.body = format!("{reason}\n");
    let mut status = Status::new();
    status.code = i32::from(code);
    status.message = reason;
    let mut response = CheckResponse::new();
    response.status = MessageField::some(status);
    response.http_response = Some(check_response::Http_response::DeniedResponse(denied));
    response
}

/// A header that replaces any of its name the request already has.
fn overwrite((key, value): (String, String)) -> HeaderValueOption {
    let mut header = HeaderValue::new();
    header.key = key;
    header.value = value;
    let mut option = HeaderValueOption::new();
    option.header = MessageField::some(header);
    option.append_action = EnumOrUnknown::new(HeaderAppendAction::OVERWRITE_IF_EXISTS_OR_ADD);
    option
}
