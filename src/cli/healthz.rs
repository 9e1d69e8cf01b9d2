//! `healthz`: print the server's own health status.

use std::io::Write;

use super::resource::status_line;
use crate::client::write_answer;
use crate::client::{ClientError, Connection};
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
