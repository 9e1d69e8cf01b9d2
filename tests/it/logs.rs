//! What the server binary logs: a start-up line that says where, how and what it serves, and with
//! `request=debug`, one line per call.

use crate::common;

use std::time::Duration;

use common::{call, default_services, ServerProcess};
use mrmat_rust_api_grpc::proto::{
    GreetingV2Input, GreetingV2ProtoClient, ResourceV1, ResourceV1ProtoClient,
};

#[test]
fn the_startup_line_says_the_address_the_transport_and_the_services() {
    let server = ServerProcess::start(&[]);
    let line = &server.listening_line;
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains(&format!(
            "listening on {} (plaintext), serving ",
            server.address
        )),
        "{line}"
    );
    for service in default_services() {
        assert!(line.contains(service), "{service} missing from: {line}");
    }
    let without = ServerProcess::start(&["--no-reflection"]);
    assert!(
        !without.listening_line.contains("Reflection"),
        "{}",
        without.listening_line
    );
}

#[test]
fn each_call_gets_one_request_line_at_debug() {
    let server = ServerProcess::start_logging(&[], "info,request=debug");
    let channel = server.channel();
    let mut greeting = GreetingV2Input::new();
    greeting.name = "Mat".to_owned();
    GreetingV2ProtoClient::new(channel.clone())
        .get_greeting_opt(&greeting, call())
        .expect("answer");
    let line = server
        .log
        .line_containing(
            "/GreetingV2Proto/GetGreeting from ",
            Duration::from_secs(10),
        )
        .expect("the call is logged");
    assert!(line.contains(" DEBUG "), "{line}");
    assert!(line.contains("from ipv4:127.0.0.1:"), "the peer: {line}");
    assert!(line.contains(": OK in "), "the status: {line}");
    assert!(line.ends_with(" ms"), "the duration: {line}");

    let mut too_long = ResourceV1::new();
    too_long.name = "x".repeat(2000);
    let refused = ResourceV1ProtoClient::new(channel).create_opt(&too_long, call());
    assert!(refused.is_err());
    let line = server
        .log
        .line_containing("/ResourceV1Proto/Create from ", Duration::from_secs(10))
        .expect("the refused call is logged");
    assert!(line.contains(": INVALID_ARGUMENT in "), "{line}");
}

#[test]
fn no_request_lines_at_the_default_level() {
    let mut server = ServerProcess::start(&[]);
    GreetingV2ProtoClient::new(server.channel())
        .get_greeting_opt(&GreetingV2Input::new(), call())
        .expect("answer");
    server.terminate();
    server
        .wait_for_exit(Duration::from_secs(15))
        .expect("the server exits");
    // Every line up to the end of the log, none of them about the call.
    assert!(server
        .log
        .line_containing("GetGreeting", Duration::from_secs(5))
        .is_none());
}
