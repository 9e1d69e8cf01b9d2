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

#[test]
fn a_key_set_of_ten_thousand_bad_keys_is_one_bounded_warn_line_with_its_values_quoted() {
    let good = common::jwt::SigningKey::p256("good");
    let mut keys = vec![good.jwk()];
    // A 10 KB kid with a newline in it, then keys of a type nobody has.
    let long_kid = format!("evil\nINFO forged line {}", "x".repeat(10_000));
    keys.push(serde_json::json!({"kty": "XX", "kid": long_kid}));
    for n in 0..9_999 {
        keys.push(serde_json::json!({"kty": "XX", "kid": format!("bad{n}")}));
    }
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).expect("written");
    let path = path.to_str().expect("a UTF-8 path");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--jwks-file",
            path,
        ])
        .args(["--token-issuer", "https://id.example"])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the server runs");
    let log = common::OutputLines::read(server.stderr.take().expect("piped"));
    // Every line up to the start-up line (the keys load before it).
    let mut lines = Vec::new();
    while let Some(line) = log.line_containing("", Duration::from_secs(20)) {
        let listening = line.contains("listening on ");
        lines.push(line);
        if listening {
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let with = |needle: &str| -> Vec<&String> {
        lines.iter().filter(|line| line.contains(needle)).collect()
    };
    let loaded = with("signing keys loaded for");
    assert_eq!(loaded.len(), 1, "{lines:#?}");
    assert!(loaded[0].contains("1 usable"), "{}", loaded[0]);
    let left_out = with("left out of");
    assert_eq!(left_out.len(), 1, "one line for every key left out");
    let left_out = left_out[0];
    assert!(left_out.contains("and 9995 more"), "{left_out}");
    assert!(left_out.len() < 4096, "a {}-byte line", left_out.len());
    assert!(with("forged line").len() <= 1, "a kid split a line");
    assert!(
        lines.iter().all(|line| line.starts_with('[')),
        "a kid split a line"
    );
}
