//! The resource API, version 1, over a real channel: every rpc and branch, ids, concurrency.

use crate::common;

use std::collections::BTreeSet;
use std::thread;

use common::{call, spawn_server};
use mrmat_rust_api_grpc::proto::{
    Empty, ResourceV1, ResourceV1IdInput, ResourceV1Output, ResourceV1ProtoClient,
};

fn create(client: &ResourceV1ProtoClient, owner_id: u64, name: &str) -> ResourceV1Output {
    let mut request = ResourceV1::new();
    request.id = 999; // ignored by the server
    request.owner_id = owner_id;
    request.name = name.to_owned();
    client.create_opt(&request, call()).expect("create answers")
}

fn id(id: u64) -> ResourceV1IdInput {
    let mut input = ResourceV1IdInput::new();
    input.id = id;
    input
}

fn modify(client: &ResourceV1ProtoClient, id: u64, owner_id: u64, name: &str) -> ResourceV1Output {
    let mut request = ResourceV1::new();
    request.id = id;
    request.owner_id = owner_id;
    request.name = name.to_owned();
    client.modify_opt(&request, call()).expect("modify answers")
}

fn list_ids(client: &ResourceV1ProtoClient) -> Vec<u64> {
    let answer = client
        .list_opt(&Empty::new(), call())
        .expect("list answers");
    assert_eq!(
        (answer.status.code, answer.status.message.as_str()),
        (200, "OK")
    );
    answer.resources.iter().map(|r| r.id).collect()
}

fn status(output: &ResourceV1Output) -> (u32, &str) {
    (output.status.code, output.status.message.as_str())
}

#[test]
fn create_assigns_ids_from_zero_and_ignores_the_requested_id() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    let first = create(&client, 7, "first");
    assert_eq!(status(&first), (201, "Created"));
    assert_eq!(first.resource.id, 0);
    assert_eq!(first.resource.owner_id, 7);
    assert_eq!(first.resource.name, "first");
    assert_eq!(create(&client, 7, "second").resource.id, 1);
}

#[test]
fn get_answers_the_resource_or_not_found() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    let created = create(&client, 3, "thing").resource.unwrap();
    let found = client
        .get_opt(&id(created.id), call())
        .expect("get answers");
    assert_eq!(status(&found), (200, "OK"));
    assert_eq!(found.resource.as_ref(), Some(&created));
    let missing = client.get_opt(&id(42), call()).expect("get answers");
    assert_eq!(status(&missing), (404, "Not Found"));
    assert!(
        missing.resource.is_none(),
        "a missing resource comes without one"
    );
}

#[test]
fn modify_renames_and_keeps_the_owner() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    let created = create(&client, 3, "before").resource.unwrap();
    let modified = modify(&client, created.id, 99, "after");
    assert_eq!(status(&modified), (200, "OK"));
    assert_eq!(modified.resource.owner_id, 3);
    assert_eq!(modified.resource.name, "after");
    let stored = client
        .get_opt(&id(created.id), call())
        .expect("get answers");
    assert_eq!(stored.resource.name, "after");
    assert_eq!(stored.resource.owner_id, 3);
}

#[test]
fn modify_of_a_missing_resource_answers_not_found() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    let answer = modify(&client, 5, 1, "x");
    assert_eq!(status(&answer), (404, "Not Found"));
    assert!(answer.resource.is_none());
}

#[test]
fn remove_answers_removed_then_gone() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    let created = create(&client, 1, "doomed").resource.unwrap();
    let removed = client.remove_opt(&id(created.id), call()).expect("answer");
    assert_eq!((removed.code, removed.message.as_str()), (401, "Removed"));
    let again = client.remove_opt(&id(created.id), call()).expect("answer");
    assert_eq!((again.code, again.message.as_str()), (410, "Gone"));
    let get = client.get_opt(&id(created.id), call()).expect("answer");
    assert_eq!(status(&get), (404, "Not Found"));
}

#[test]
fn ids_are_never_reused_after_removals() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    for name in ["a", "b", "c"] {
        create(&client, 1, name);
    }
    client.remove_opt(&id(2), call()).expect("answer");
    client.remove_opt(&id(0), call()).expect("answer");
    // The original assigned id = current count (1 here), colliding with a live resource.
    assert_eq!(create(&client, 1, "d").resource.id, 3);
    assert_eq!(list_ids(&client), vec![1, 3]);
}

#[test]
fn unicode_names_survive_the_round_trip() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    let name = "Grüße, 世界! 🦀 \u{202e}rtl";
    let created = create(&client, 1, name).resource.unwrap();
    assert_eq!(created.name, name);
    let listed = client.list_opt(&Empty::new(), call()).expect("answer");
    assert_eq!(listed.resources[0].name, name);
}

#[test]
fn list_of_an_empty_store_is_ok_and_empty() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    assert_eq!(list_ids(&client), Vec::<u64>::new());
}

#[test]
fn concurrent_creates_get_distinct_ids() {
    let server = spawn_server();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let client = ResourceV1ProtoClient::new(server.channel());
            thread::spawn(move || {
                (0..25)
                    .map(|i| create(&client, t, &format!("{t}-{i}")).resource.id)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let ids: BTreeSet<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("creating thread"))
        .collect();
    assert_eq!(ids.len(), 200, "every create got its own id");
    assert_eq!(ids, (0..200).collect::<BTreeSet<u64>>());
    let client = ResourceV1ProtoClient::new(server.channel());
    assert_eq!(list_ids(&client), (0..200).collect::<Vec<u64>>());
}

#[test]
fn list_returns_thousands_in_id_order() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    for i in 0..3000u64 {
        create(&client, i % 7, &format!("resource number {i}"));
    }
    let answer = client.list_opt(&Empty::new(), call()).expect("answer");
    assert_eq!(answer.resources.len(), 3000);
    for (i, resource) in answer.resources.iter().enumerate() {
        assert_eq!(resource.id, i as u64);
        assert_eq!(resource.owner_id, i as u64 % 7);
        assert_eq!(resource.name, format!("resource number {i}"));
    }
}
