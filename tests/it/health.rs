//! Standard health checking (`grpc.health.v1.Health`): every service SERVING while up,
//! NOT_SERVING from the moment a graceful shutdown begins, Watch streams that end with it.

use crate::common;

use std::thread;
use std::time::{Duration, Instant};

use common::{call, spawn_server, ServerProcess};
use futures::StreamExt as _;
use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient, HealthListRequest,
};
use mrmat_rust_api_grpc::proto::{GreetingV1Input, GreetingV1ProtoClient};

fn request(service: &str) -> HealthCheckRequest {
    let mut request = HealthCheckRequest::new();
    request.service = service.to_owned();
    request
}

fn check(client: &HealthClient, service: &str) -> grpcio::Result<ServingStatus> {
    client
        .check_opt(&request(service), call())
        .map(|answer| answer.status.enum_value_or_default())
}

#[test]
fn the_server_and_each_service_report_serving() {
    let server = spawn_server();
    let client = HealthClient::new(server.channel());
    // The server as a whole, and each API (health checking and reflection report none).
    let mut services: Vec<&str> = server.apis().iter().map(|(name, _)| *name).collect();
    services.insert(0, "");
    assert!(services.contains(&"ResourceV2Proto"), "{services:?}");
    for service in &services {
        assert_eq!(
            check(&client, service).expect("check answers"),
            ServingStatus::SERVING,
            "`{service}`"
        );
    }
    let listed = client
        .list_opt(&HealthListRequest::new(), call())
        .expect("list answers");
    let mut names: Vec<&str> = listed.statuses.keys().map(String::as_str).collect();
    names.sort();
    services.sort();
    assert_eq!(names, services);
}

#[test]
fn an_unknown_service_is_not_found_and_watched_as_service_unknown() {
    let server = spawn_server();
    let client = HealthClient::new(server.channel());
    match check(&client, "NoSuchService") {
        Err(grpcio::Error::RpcFailure(status)) => {
            assert_eq!(status.code(), RpcStatusCode::NOT_FOUND);
            assert!(status.message().contains("NoSuchService"), "{status:?}");
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    let mut watch = client
        .watch_opt(&request("NoSuchService"), call())
        .expect("watch starts");
    let first = futures::executor::block_on(watch.next())
        .expect("a first answer")
        .expect("ok");
    assert_eq!(
        first.status.enum_value_or_default(),
        ServingStatus::SERVICE_UNKNOWN
    );
}

#[test]
fn a_watch_sees_not_serving_when_shutdown_begins_and_then_ends() {
    let server = spawn_server();
    let client = HealthClient::new(server.channel());
    let mut watch = client
        .watch_opt(&request(""), call())
        .expect("watch starts");
    let mut next = || {
        futures::executor::block_on(watch.next()).map(|answer| {
            answer
                .expect("a health answer")
                .status
                .enum_value_or_default()
        })
    };
    assert_eq!(next(), Some(ServingStatus::SERVING));

    let started = Instant::now();
    let shutdown = thread::spawn(move || server.shutdown());
    assert_eq!(next(), Some(ServingStatus::NOT_SERVING));
    assert_eq!(
        next(),
        None,
        "the stream ends so it does not hold the shutdown"
    );
    assert!(
        shutdown.join().expect("shutdown thread"),
        "the open watch did not have to be cancelled"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn while_draining_checks_say_not_serving_and_calls_are_still_served() {
    // The drain delay: SIGTERM, NOT_SERVING for as long as the flag says, then shutdown. A
    // second SIGTERM cuts it short.
    let mut server = ServerProcess::start(&["--drain-delay", "60"]);
    let channel = server.channel();
    let health = HealthClient::new(channel.clone());
    assert_eq!(check(&health, "").expect("check"), ServingStatus::SERVING);

    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    while check(&health, "").expect("check answers while draining") != ServingStatus::NOT_SERVING {
        assert!(Instant::now() < deadline, "still SERVING after SIGTERM");
        thread::yield_now();
    }
    let greeting = GreetingV1ProtoClient::new(channel)
        .get_greeting_opt(&GreetingV1Input::new(), call())
        .expect("calls are still served while draining");
    assert_eq!(greeting.message, "Hello World");
    assert!(
        server.wait_for_exit(Duration::from_millis(200)).is_none(),
        "waits the delay"
    );

    server.terminate();
    let status = server
        .wait_for_exit(Duration::from_secs(15))
        .expect("a second SIGTERM cuts the delay short");
    assert!(status.success(), "{status}");
}
