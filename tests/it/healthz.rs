//! The original's health check over a real channel.

use crate::common;

use common::{call, spawn_server};
use mrmat_rust_api_grpc::proto::{HealthzInput, HealthzProtoClient};

#[test]
fn healthz_answers_200_ok() {
    let server = spawn_server();
    let client = HealthzProtoClient::new(server.channel());
    let answer = client
        .get_health_opt(&HealthzInput::new(), call())
        .expect("answer");
    assert_eq!((answer.code, answer.message.as_str()), (200, "OK"));
}

#[test]
fn graceful_shutdown_completes_and_stops_answering() {
    let server = spawn_server();
    let client = HealthzProtoClient::new(server.channel());
    client
        .get_health_opt(&HealthzInput::new(), call())
        .expect("answer while up");
    assert!(
        server.shutdown(),
        "no call was in flight, so none was cancelled"
    );
    let after = client.get_health_opt(&HealthzInput::new(), call());
    assert!(after.is_err(), "answered after shutdown: {after:?}");
}
