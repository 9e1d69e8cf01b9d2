//! `greeting v1` and `greeting v2`: print the greeting.

use std::io::Write;

use crate::client::write_answer;
use crate::client::{ClientError, Connection};
use crate::proto::{
    GreetingV1Input, GreetingV1ProtoClient, GreetingV2Input, GreetingV2ProtoClient,
};

/// Prints the version 1 greeting.
pub(super) fn v1(conn: &Connection, out: &mut dyn Write) -> Result<(), ClientError> {
    let client = GreetingV1ProtoClient::new(conn.channel.clone());
    let answer = client
        .get_greeting_opt(&GreetingV1Input::new(), conn.call_option())
        .map_err(|e| conn.error(e))?;
    write_answer(out, conn.output, &answer, |out| {
        writeln!(out, "{}", answer.message)
    })
}

/// Prints the version 2 greeting for `name`.
pub(super) fn v2(conn: &Connection, name: &str, out: &mut dyn Write) -> Result<(), ClientError> {
    let client = GreetingV2ProtoClient::new(conn.channel.clone());
    let mut request = GreetingV2Input::new();
    request.name = name.to_owned();
    let answer = client
        .get_greeting_opt(&request, conn.call_option())
        .map_err(|e| conn.error(e))?;
    write_answer(out, conn.output, &answer, |out| {
        writeln!(out, "{}", answer.message)
    })
}
