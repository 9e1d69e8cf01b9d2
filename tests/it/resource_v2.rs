//! `ResourceV2Proto` on every store (memory, SQLite, PostgreSQL): real gRPC status codes, pages
//! that walk every resource exactly once, creates that a request id makes safe to repeat,
//! etags that refuse a stale change, v1 and v2 over the same resources, and the client's
//! `resource v2` subcommands.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

use common::postgres;
use common::{call, resource, spawn_server_with, test_config, TestServer};
use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::proto::{
    ResourceV1ProtoClient, ResourceV2, ResourceV2CreateRequest, ResourceV2DeleteRequest,
    ResourceV2GetRequest, ResourceV2ListRequest, ResourceV2ProtoClient, ResourceV2UpdateRequest,
};
use mrmat_rust_api_grpc::store::StoreOptions;

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");

fn client(server: &TestServer) -> ResourceV2ProtoClient {
    ResourceV2ProtoClient::new(server.channel())
}

fn create(
    client: &ResourceV2ProtoClient,
    request_id: &str,
    owner_id: u64,
    name: &str,
) -> grpcio::Result<ResourceV2> {
    let mut request = ResourceV2CreateRequest::new();
    request.request_id = request_id.to_owned();
    request.owner_id = owner_id;
    request.name = name.to_owned();
    client.create_opt(&request, call())
}

fn get(client: &ResourceV2ProtoClient, id: u64) -> grpcio::Result<ResourceV2> {
    let mut request = ResourceV2GetRequest::new();
    request.id = id;
    client.get_opt(&request, call())
}

fn update(
    client: &ResourceV2ProtoClient,
    id: u64,
    name: &str,
    etag: &str,
) -> grpcio::Result<ResourceV2> {
    let mut request = ResourceV2UpdateRequest::new();
    request.id = id;
    request.name = name.to_owned();
    request.etag = etag.to_owned();
    client.update_opt(&request, call())
}

fn delete(client: &ResourceV2ProtoClient, id: u64, etag: &str) -> grpcio::Result<()> {
    let mut request = ResourceV2DeleteRequest::new();
    request.id = id;
    request.etag = etag.to_owned();
    client.delete_opt(&request, call()).map(drop)
}

fn list(
    client: &ResourceV2ProtoClient,
    page_size: u32,
    page_token: &str,
    owner_id: Option<u64>,
) -> grpcio::Result<(Vec<ResourceV2>, String)> {
    let mut request = ResourceV2ListRequest::new();
    request.page_size = page_size;
    request.page_token = page_token.to_owned();
    request.owner_id = owner_id;
    client
        .list_opt(&request, call())
        .map(|page| (page.resources, page.next_page_token))
}

/// The status code of a failed call, and its message.
fn refused<T: std::fmt::Debug>(answer: grpcio::Result<T>) -> (RpcStatusCode, String) {
    match answer {
        Err(grpcio::Error::RpcFailure(status)) => (status.code(), status.message().to_owned()),
        other => panic!("expected a gRPC error status, got {other:?}"),
    }
}

/// Every page of a listing, following next_page_token to the end.
fn all_pages(
    client: &ResourceV2ProtoClient,
    page_size: u32,
    owner_id: Option<u64>,
) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = list(client, page_size, &token, owner_id).expect("List answers");
        pages.push(page.iter().map(|r| r.id).collect());
        if next.is_empty() {
            return pages;
        }
        token = next;
    }
}

fn on_each_store(test: fn(&TestServer)) {
    let cluster = postgres::shared();
    let password = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(password.path(), postgres::PASSWORD).expect("write the password");
    let stores = [
        test_config().store,
        StoreOptions::memory(),
        StoreOptions::postgres(&cluster.new_database(), Some(password.path())),
    ];
    for store in stores {
        let mut config = test_config();
        config.store = store;
        test(&spawn_server_with(config));
    }
}

#[test]
fn a_page_token_forged_with_an_issued_at_at_either_end_of_time_is_stale() {
    use base64::Engine as _;
    let server = spawn_server_with(test_config());
    let client = client(&server);
    create(&client, "", 1, "r").expect("created");
    for issued_at in [i64::MIN, i64::MAX] {
        let forged =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("p1.0..{issued_at}"));
        let (code, message) = refused(list(&client, 10, &forged, None));
        assert_eq!(
            code,
            RpcStatusCode::INVALID_ARGUMENT,
            "{issued_at}: {message}"
        );
        assert!(message.contains("stale"), "{issued_at}: {message}");
    }
    assert_eq!(
        list(&client, 10, "", None).expect("still serving").0.len(),
        1
    );
}

#[test]
fn a_page_token_forged_with_any_position_or_owner_gets_the_true_page_or_invalid_argument() {
    use base64::Engine as _;
    let encode = |text: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    for (store, config) in [
        ("memory", {
            let mut config = test_config();
            config.store = mrmat_rust_api_grpc::store::StoreOptions::memory();
            config
        }),
        ("sqlite", test_config()),
    ] {
        let server = spawn_server_with(config);
        let client = client(&server);
        let first = create(&client, "", 1, "r").expect("created");
        // Past every id (2^63 and more were read as negative ids on SQLite): an empty last page.
        for from_id in [1u64 << 63, u64::MAX] {
            for owner in [None, Some(1), Some(u64::MAX)] {
                let text = owner.map_or(String::new(), |o| o.to_string());
                let forged = encode(format!("p1.{from_id}.{text}.{now}"));
                let (page, next) = list(&client, 10, &forged, owner)
                    .unwrap_or_else(|e| panic!("{store}: from {from_id}, owner {owner:?}: {e}"));
                assert!(
                    page.is_empty() && next.is_empty(),
                    "{store}: {page:?} {next:?}"
                );
            }
        }
        // A position itself, exactly: the page from there.
        let forged = encode(format!("p1.{}..{now}", first.id));
        let (page, _) = list(&client, 10, &forged, None).expect("listed");
        assert_eq!(page.len(), 1, "{store}");
        // Not a u64 (too large, negative, spaced, a float, empty): not a token this API gave.
        for from_id in ["18446744073709551616", "-1", " 1", "1e3", ""] {
            let forged = encode(format!("p1.{from_id}..{now}"));
            let (code, message) = refused(list(&client, 10, &forged, None));
            assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT, "{store} {from_id:?}");
            assert!(message.contains("not one this API gave"), "{message}");
        }
        for owner in ["18446744073709551616", "-1"] {
            let forged = encode(format!("p1.0.{owner}.{now}"));
            let (code, _) = refused(list(&client, 10, &forged, None));
            assert_eq!(
                code,
                RpcStatusCode::INVALID_ARGUMENT,
                "{store} owner {owner:?}"
            );
        }
    }
}

#[test]
fn v1_and_v2_serve_the_same_resources() {
    let server = spawn_server_with(test_config());
    let v1 = ResourceV1ProtoClient::new(server.channel());
    let v2 = client(&server);
    let made_by_v1 = v1
        .create_opt(&resource(0, 4, "from v1"), call())
        .expect("created")
        .resource
        .unwrap();
    let seen = get(&v2, made_by_v1.id).expect("found");
    assert_eq!((seen.owner_id, seen.name.as_str()), (4, "from v1"));
    let made_by_v2 = create(&v2, "x", 5, "from v2").expect("created");
    let listed = v1
        .list_opt(&Default::default(), call())
        .expect("listed")
        .resources;
    let names: BTreeSet<&str> = listed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["from v1", "from v2"]));
    assert!(made_by_v2.id > made_by_v1.id);
}

fn run_client(server: &TestServer, args: &[&str]) -> std::process::Output {
    Command::new(CLIENT)
        .args(["--server", &server.address])
        .args(args)
        .output()
        .expect("the client runs")
}

#[test]
fn the_client_speaks_v2_and_reports_its_errors_on_stderr() {
    let server = spawn_server_with(test_config());
    let created = run_client(
        &server,
        &[
            "resource",
            "v2",
            "create",
            "--owner-id",
            "2",
            "--name",
            "cli",
        ],
    );
    assert!(created.status.success(), "{created:?}");
    assert_eq!(
        String::from_utf8_lossy(&created.stdout),
        "- id: 0, owner_id: 2, name: cli, etag: v1\n"
    );
    let again = run_client(
        &server,
        &[
            "resource",
            "v2",
            "create",
            "--owner-id",
            "2",
            "--name",
            "cli",
            "--request-id",
            "r-1",
        ],
    );
    assert!(again.status.success());
    let listed = run_client(&server, &["resource", "v2", "list", "--page-size", "1"]);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        text.starts_with(
            "Resources:\n- id: 0, owner_id: 2, name: cli, etag: v1\nNext page: --page-token "
        ),
        "{text}"
    );
    let token = text
        .lines()
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let next = run_client(
        &server,
        &[
            "resource",
            "v2",
            "list",
            "--page-size",
            "1",
            "--page-token",
            &token,
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&next.stdout),
        "Resources:\n- id: 1, owner_id: 2, name: cli, etag: v1\n"
    );

    let missing = run_client(&server, &["resource", "v2", "get", "--id", "42"]);
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("NOT_FOUND: no resource has id 42"),
        "{stderr}"
    );

    let stale = run_client(
        &server,
        &[
            "resource", "v2", "update", "--id", "0", "--name", "x", "--etag", "v9",
        ],
    );
    assert!(!stale.status.success());
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("ABORTED"),
        "{stale:?}"
    );
    let deleted = run_client(
        &server,
        &["resource", "v2", "delete", "--id", "0", "--etag", "v1"],
    );
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout),
        "Deleted resource 0\n"
    );
}

/// ResourceV2Proto over a throwaway PostgreSQL cluster (`ci/test --quick` skips them).
mod with_postgres {
    use super::*;

    #[test]
    fn create_get_update_and_delete_answer_with_grpc_status_codes_on_sqlite_memory_and_postgres() {
        on_each_store(|server| {
            let client = client(server);
            let created = create(&client, "", 7, "first").expect("created");
            assert_eq!((created.owner_id, created.name.as_str()), (7, "first"));
            assert_eq!(get(&client, created.id).expect("found"), created);

            let (code, message) = refused(get(&client, 999_999));
            assert_eq!(code, RpcStatusCode::NOT_FOUND);
            assert_eq!(message, "no resource has id 999999");

            let renamed = update(&client, created.id, "second", &created.etag).expect("updated");
            assert_eq!(renamed.name, "second");
            assert_ne!(renamed.etag, created.etag, "a change moves the etag on");

            let (code, message) = refused(update(&client, created.id, "lost", &created.etag));
            assert_eq!(code, RpcStatusCode::ABORTED, "{message}");
            assert!(message.contains(&renamed.etag), "{message}");
            assert_eq!(get(&client, created.id).expect("found").name, "second");

            let (code, _) = refused(update(&client, created.id, "x", "not-an-etag"));
            assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT);
            let (code, _) = refused(update(&client, 999_999, "x", ""));
            assert_eq!(code, RpcStatusCode::NOT_FOUND);
            let (code, _) = refused(create(&client, &"r".repeat(129), 1, "x"));
            assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT);

            let (code, _) = refused(delete(&client, created.id, &created.etag));
            assert_eq!(code, RpcStatusCode::ABORTED, "a stale etag deletes nothing");
            delete(&client, created.id, &renamed.etag).expect("deleted");
            let (code, _) = refused(delete(&client, created.id, ""));
            assert_eq!(code, RpcStatusCode::NOT_FOUND);
        });
    }

    #[test]
    fn a_create_repeated_with_its_request_id_creates_once_on_sqlite_memory_and_postgres() {
        on_each_store(|server| {
            let client = client(server);
            let first = create(&client, "req-1", 3, "once").expect("created");
            let again = create(&client, "req-1", 3, "once").expect("answered");
            assert_eq!(again, first, "the first answer, not a second resource");
            let (resources, _) = list(&client, 0, "", None).expect("listed");
            assert_eq!(resources.len(), 1);

            // Renamed since: a retry still answers what the create made.
            update(&client, first.id, "renamed", "").expect("updated");
            assert_eq!(
                create(&client, "req-1", 3, "once").expect("answered").id,
                first.id
            );

            let (code, message) = refused(create(&client, "req-1", 3, "something else"));
            assert_eq!(code, RpcStatusCode::ALREADY_EXISTS, "{message}");
            assert!(message.contains("new request_id"), "{message}");

            let other = create(&client, "req-2", 3, "once").expect("created");
            assert_ne!(other.id, first.id, "another request id is another create");
        });
    }

    #[test]
    fn pages_walk_every_resource_once_in_id_order_on_sqlite_memory_and_postgres() {
        on_each_store(|server| {
            let client = client(server);
            let ids: Vec<u64> = (0..250)
                .map(|n| {
                    create(&client, "", n % 2, &format!("r{n}"))
                        .expect("created")
                        .id
                })
                .collect();

            let pages = all_pages(&client, 100, None);
            assert_eq!(
                pages.iter().map(Vec::len).collect::<Vec<_>>(),
                [100, 100, 50]
            );
            assert_eq!(pages.concat(), ids, "every resource once, in id order");
            assert_eq!(all_pages(&client, 0, None)[0].len(), 100, "100 by default");

            let owned_by_one = all_pages(&client, 30, Some(1)).concat();
            let expected: Vec<u64> = ids.iter().copied().skip(1).step_by(2).collect();
            assert_eq!(owned_by_one, expected);

            // A resource removed between pages shifts nothing.
            let (first, token) = list(&client, 100, "", None).expect("listed");
            delete(&client, first[99].id, "").expect("deleted");
            delete(&client, ids[100], "").expect("deleted");
            let (second, _) = list(&client, 100, &token, None).expect("listed");
            assert_eq!(second[0].id, ids[101]);

            let (code, message) = refused(list(&client, 10, "garbage", None));
            assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT, "{message}");
            let (_, owned_token) = list(&client, 10, "", Some(1)).expect("listed");
            let (code, message) = refused(list(&client, 10, &owned_token, Some(0)));
            assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT, "{message}");
            assert!(message.contains("owner_id"), "{message}");
        });
    }
}
