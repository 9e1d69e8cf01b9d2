//! gRPC status codes by the names gRPC gives them, as server logs, metrics and client errors
//! all say them.

use grpcio::RpcStatusCode;

/// The name of a status code as gRPC spells it, e.g. `INVALID_ARGUMENT` (grpcio's own formats
/// prefix the number).
pub fn status_name(code: RpcStatusCode) -> String {
    let text = code.to_string();
    match text.split_once('-') {
        Some((_, name)) => name.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_grpcs() {
        assert_eq!(status_name(RpcStatusCode::OK), "OK");
        assert_eq!(
            status_name(RpcStatusCode::INVALID_ARGUMENT),
            "INVALID_ARGUMENT"
        );
    }
}
