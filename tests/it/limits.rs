//! Limits: request size, resource name length and the number of stored resources, each answered
//! with a gRPC status that says which limit was hit.

use crate::common;

use std::sync::Arc;
use std::thread;

use common::{call, spawn_server, spawn_server_with, test_config};
use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::apis::DEFAULT_MAX_NAME_BYTES;
use mrmat_rust_api_grpc::proto::{
    GreetingV2Input, GreetingV2ProtoClient, ResourceV1, ResourceV1IdInput, ResourceV1ProtoClient,
};
use mrmat_rust_api_grpc::server::ServerConfig;

fn with_limits(set: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut config = test_config();
    set(&mut config);
    config
}

fn resource(id: u64, name: &str) -> ResourceV1 {
    let mut request = ResourceV1::new();
    request.id = id;
    request.owner_id = 1;
    request.name = name.to_owned();
    request
}

/// The status of a failed call; panics when the call succeeded.
fn failure<T: std::fmt::Debug>(result: grpcio::Result<T>) -> grpcio::RpcStatus {
    match result {
        Err(grpcio::Error::RpcFailure(status)) => status,
        other => panic!("expected a gRPC error status, got {other:?}"),
    }
}

fn greet(client: &GreetingV2ProtoClient, name: String) -> grpcio::Result<String> {
    let mut request = GreetingV2Input::new();
    request.name = name;
    client
        .get_greeting_opt(&request, call())
        .map(|answer| answer.message)
}

#[test]
fn a_request_over_the_default_1_25_mib_is_resource_exhausted() {
    let server = spawn_server();
    let default = mrmat_rust_api_grpc::server::DEFAULT_MAX_REQUEST_BYTES as usize;
    assert_eq!(default, 1280 * 1024);
    let client = GreetingV2ProtoClient::new(server.channel());
    // Tag and length take 4 bytes; the name fills the rest up to the limit.
    let fits = "x".repeat(default - 4);
    let served = greet(&client, fits);
    assert!(
        served.is_ok(),
        "a request of the limit is served: {:?}",
        served.map(|m| m.len())
    );
    let status = failure(greet(&client, "x".repeat(default - 3)));
    assert_eq!(
        status.code(),
        RpcStatusCode::RESOURCE_EXHAUSTED,
        "{status:?}"
    );
    // The connection and the server are fine afterwards.
    assert_eq!(
        greet(&client, "again".into()).expect("answer"),
        "Hello again"
    );
}

#[test]
fn the_request_size_limit_is_configurable() {
    let server = spawn_server_with(with_limits(|c| c.limits.max_request_bytes = 1024));
    let client = GreetingV2ProtoClient::new(server.channel());
    assert!(greet(&client, "x".repeat(1000)).is_ok());
    let status = failure(greet(&client, "x".repeat(2000)));
    assert_eq!(
        status.code(),
        RpcStatusCode::RESOURCE_EXHAUSTED,
        "{status:?}"
    );
}

#[test]
fn a_name_over_the_default_limit_is_invalid_argument_on_create_and_modify() {
    let server = spawn_server();
    let client = ResourceV1ProtoClient::new(server.channel());
    let longest = "é".repeat(DEFAULT_MAX_NAME_BYTES / 2); // 2 bytes each: exactly the limit
    let created = client
        .create_opt(&resource(0, &longest), call())
        .expect("a name at the limit is stored");
    assert_eq!(created.status.code, 201);

    let too_long = format!("{longest}x");
    for (rpc, result) in [
        ("create", client.create_opt(&resource(0, &too_long), call())),
        ("modify", client.modify_opt(&resource(0, &too_long), call())),
    ] {
        let status = failure(result);
        assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT, "{rpc}");
        assert_eq!(
            status.message(),
            "the name is 1025 bytes long; the limit is 1024 bytes",
            "{rpc}"
        );
    }
    let mut id = ResourceV1IdInput::new();
    id.id = created.resource.id;
    let stored = client.get_opt(&id, call()).expect("get answers");
    assert_eq!(
        stored.resource.name, longest,
        "the refused modify changed nothing"
    );
}

#[test]
fn the_name_limit_is_configurable() {
    let server = spawn_server_with(with_limits(|c| c.apis.max_name_bytes = 3));
    let client = ResourceV1ProtoClient::new(server.channel());
    assert!(client.create_opt(&resource(0, "abc"), call()).is_ok());
    let status = failure(client.create_opt(&resource(0, "abcd"), call()));
    assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT);
    assert!(
        status.message().contains("the limit is 3 bytes"),
        "{status:?}"
    );
}

#[test]
fn a_full_store_is_resource_exhausted_until_a_resource_is_removed() {
    let server = spawn_server_with(with_limits(|c| c.store.capacity.max_resources = 2));
    let client = ResourceV1ProtoClient::new(server.channel());
    for name in ["a", "b"] {
        let created = client.create_opt(&resource(0, name), call()).expect("room");
        assert_eq!(created.status.code, 201);
    }
    let status = failure(client.create_opt(&resource(0, "c"), call()));
    assert_eq!(status.code(), RpcStatusCode::RESOURCE_EXHAUSTED);
    assert!(
        status.message().contains("limit of 2 resources"),
        "{status:?}"
    );

    let mut first = ResourceV1IdInput::new();
    first.id = 0;
    assert_eq!(client.remove_opt(&first, call()).expect("remove").code, 401);
    let created = client
        .create_opt(&resource(0, "c"), call())
        .expect("room again");
    assert_eq!((created.status.code, created.resource.id), (201, 2));
}

#[test]
fn concurrent_creates_never_overshoot_the_resource_limit() {
    const LIMIT: usize = 50;
    let server = spawn_server_with(with_limits(|c| c.store.capacity.max_resources = LIMIT));
    let client = Arc::new(ResourceV1ProtoClient::new(server.channel()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                let mut created = 0;
                for _ in 0..20 {
                    match client.create_opt(&resource(0, "r"), call()) {
                        Ok(answer) if answer.status.code == 201 => created += 1,
                        result => {
                            assert_eq!(failure(result).code(), RpcStatusCode::RESOURCE_EXHAUSTED)
                        }
                    }
                }
                created
            })
        })
        .collect();
    let created: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(created, LIMIT);
    let listed = client
        .list_opt(&Default::default(), call())
        .expect("list answers");
    assert_eq!(listed.resources.len(), LIMIT);
}
