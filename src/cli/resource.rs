//! `resource v1 ...`: list, get, create, modify and remove resources.

use std::io::Write;

use super::ResourceV1Command;
use crate::client::write_answer;
use crate::client::{ClientError, Connection};
use crate::proto::{
    Empty, ResourceV1, ResourceV1IdInput, ResourceV1Output, ResourceV1ProtoClient, StatusOutput,
};

/// `[code] message`, the original's status line.
pub(super) fn status_line(status: &StatusOutput) -> String {
    format!("[{}] {}", status.code, status.message)
}

/// `- id: 0, owner_id: 1, name: a`, the original's resource line.
fn resource_line(resource: &ResourceV1) -> String {
    format!(
        "- id: {}, owner_id: {}, name: {}",
        resource.id, resource.owner_id, resource.name
    )
}

fn id_input(id: u64) -> ResourceV1IdInput {
    let mut input = ResourceV1IdInput::new();
    input.id = id;
    input
}

fn resource(id: u64, owner_id: u64, name: &str) -> ResourceV1 {
    let mut resource = ResourceV1::new();
    resource.id = id;
    resource.owner_id = owner_id;
    resource.name = name.to_owned();
    resource
}

/// Makes one call of the resource API, version 1, and prints the answer.
pub(super) fn v1(
    conn: &Connection,
    call: &ResourceV1Command,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let client = ResourceV1ProtoClient::new(conn.channel.clone());
    let opt = || conn.call_option();
    let err = |e| conn.error(e);
    match call {
        ResourceV1Command::List => {
            let answer = client.list_opt(&Empty::new(), opt()).map_err(err)?;
            write_answer(out, conn.output, &answer, |out| {
                writeln!(out, "{}", status_line(&answer.status))?;
                writeln!(out, "Resources:")?;
                for resource in &answer.resources {
                    writeln!(out, "{}", resource_line(resource))?;
                }
                Ok(())
            })
        }
        ResourceV1Command::Get { id } => {
            let answer = client.get_opt(&id_input(*id), opt()).map_err(err)?;
            write_answer(out, conn.output, &answer, |out| {
                print_output(&answer, true, out)
            })
        }
        ResourceV1Command::Create { owner_id, name } => {
            let request = resource(0, *owner_id, name);
            let answer = client.create_opt(&request, opt()).map_err(err)?;
            write_answer(out, conn.output, &answer, |out| {
                print_output(&answer, false, out)
            })
        }
        ResourceV1Command::Modify { id, owner_id, name } => {
            let request = resource(*id, *owner_id, name);
            let answer = client.modify_opt(&request, opt()).map_err(err)?;
            write_answer(out, conn.output, &answer, |out| {
                print_output(&answer, false, out)
            })
        }
        ResourceV1Command::Remove { id } => {
            let answer = client.remove_opt(&id_input(*id), opt()).map_err(err)?;
            write_answer(out, conn.output, &answer, |out| {
                writeln!(out, "{}", status_line(&answer))
            })
        }
    }
}

/// The status line and, for a found resource when `with_resource`, the resource line.
fn print_output(
    answer: &ResourceV1Output,
    with_resource: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(out, "{}", status_line(&answer.status))?;
    if with_resource && answer.status.code == 200 {
        if let Some(resource) = answer.resource.as_ref() {
            writeln!(out, "{}", resource_line(resource))?;
        }
    }
    Ok(())
}
