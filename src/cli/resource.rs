//! `resource v1 ...` and `resource v2 ...`: list, get, create, change and remove resources.

use std::io::Write;

use super::{ResourceV1Command, ResourceV2Command};
use crate::client::write_answer;
use crate::client::{ClientError, Connection};
use crate::proto::{
    Empty, ResourceV1, ResourceV1IdInput, ResourceV1Output, ResourceV1ProtoClient, ResourceV2,
    ResourceV2CreateRequest, ResourceV2DeleteRequest, ResourceV2GetRequest, ResourceV2ListRequest,
    ResourceV2ProtoClient, ResourceV2UpdateRequest, StatusOutput,
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

/// `- id: 0, owner_id: 1, name: a, etag: v1`: v1's resource line with the etag.
fn resource_v2_line(resource: &ResourceV2) -> String {
    format!(
        "- id: {}, owner_id: {}, name: {}, etag: {}",
        resource.id, resource.owner_id, resource.name, resource.etag
    )
}

/// A new random request id, in the form of a version 4 UUID.
fn new_request_id() -> String {
    let bits = fastrand::u128(..);
    let hex = format!(
        "{:032x}",
        bits & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Makes one call of the resource API, version 2, and prints the answer.
// Long: one arm per subcommand, each its request and the lines it prints.
pub(super) fn v2(
    conn: &Connection,
    call: &ResourceV2Command,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let client = ResourceV2ProtoClient::new(conn.channel.clone());
    let opt = || conn.call_option();
    let err = |e| conn.error(e);
    let print_one = |answer: ResourceV2, out: &mut dyn Write| {
        write_answer(out, conn.output, &answer, |out| {
            writeln!(out, "{}", resource_v2_line(&answer))
        })
    };
    match call {
        ResourceV2Command::List {
            page_size,
            page_token,
            owner_id,
        } => {
            let mut request = ResourceV2ListRequest::new();
            request.page_size = *page_size;
            request.page_token = page_token.clone();
            request.owner_id = *owner_id;
            let answer = client.list_opt(&request, opt()).map_err(err)?;
            write_answer(out, conn.output, &answer, |out| {
                writeln!(out, "Resources:")?;
                for resource in &answer.resources {
                    writeln!(out, "{}", resource_v2_line(resource))?;
                }
                if !answer.next_page_token.is_empty() {
                    writeln!(out, "Next page: --page-token {}", answer.next_page_token)?;
                }
                Ok(())
            })
        }
        ResourceV2Command::Get { id } => {
            let mut request = ResourceV2GetRequest::new();
            request.id = *id;
            print_one(client.get_opt(&request, opt()).map_err(err)?, out)
        }
        ResourceV2Command::Create {
            owner_id,
            name,
            request_id,
        } => {
            let mut request = ResourceV2CreateRequest::new();
            request.owner_id = *owner_id;
            request.name = name.clone();
            request.request_id = request_id.clone().unwrap_or_else(new_request_id);
            print_one(client.create_opt(&request, opt()).map_err(err)?, out)
        }
        ResourceV2Command::Update { id, name, etag } => {
            let mut request = ResourceV2UpdateRequest::new();
            request.id = *id;
            request.name = name.clone();
            request.etag = etag.clone();
            print_one(client.update_opt(&request, opt()).map_err(err)?, out)
        }
        ResourceV2Command::Delete { id, etag } => {
            let mut request = ResourceV2DeleteRequest::new();
            request.id = *id;
            request.etag = etag.clone();
            let answer = client.delete_opt(&request, opt()).map_err(err)?;
            write_answer(out, conn.output, &answer, |out| {
                writeln!(out, "Deleted resource {id}")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_version_4_uuids() {
        let id = new_request_id();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(&id[14..15], "4", "{id}");
        assert!("89ab".contains(&id[19..20]), "{id}");
        assert_ne!(id, new_request_id());
    }
}
