//! `healthz`: print the server's own health status, or standard health checking's for one
//! service (`--service`).

use std::io::Write;

use super::resource::status_line;
use crate::client::write_answer;
use crate::client::{ClientError, Connection};
use crate::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use crate::proto::{HealthzInput, HealthzProtoClient};

/// Prints `[code] message` of the health check.
pub(super) fn get(conn: &Connection, out: &mut dyn Write) -> Result<(), ClientError> {
    let client = HealthzProtoClient::new(conn.channel.clone());
    let answer = client
        .get_health_opt(&HealthzInput::new(), conn.call_option())
        .map_err(|e| conn.error(e))?;
    write_answer(out, conn.output, &answer, |out| {
        writeln!(out, "{}", status_line(&answer))
    })
}

/// Prints `[200] SERVING` when standard health checking reports `service` SERVING; anything
/// else is an error, so that a probe running this fails.
pub(super) fn check(
    conn: &Connection,
    service: &str,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let client = HealthClient::new(conn.channel.clone());
    let mut request = HealthCheckRequest::new();
    request.service = service.to_owned();
    let answer = client
        .check_opt(&request, conn.call_option())
        .map_err(|e| conn.error(e))?;
    match answer.status.enum_value() {
        Ok(ServingStatus::SERVING) => write_answer(out, conn.output, &answer, |out| {
            writeln!(out, "[200] SERVING")
        }),
        status => Err(ClientError::NotServing {
            server: conn.server().to_owned(),
            service: service.to_owned(),
            status: match status {
                Ok(status) => format!("{status:?}"),
                Err(number) => format!("status {number}"),
            },
        }),
    }
}
