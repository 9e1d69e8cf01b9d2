//! Requests that are not valid messages, sent as raw bytes to every rpc, streams included: each
//! gets INTERNAL with a message naming the type it failed to be (on a stream, after the answers to
//! what came before it), is logged without its content, and the server keeps answering. Then a
//! fixed-seed batch of random payloads.

use crate::common;

use std::io::Read;
use std::time::Duration;

use common::jwt::{token_config, KeyFile, SigningKey};
use common::{call, spawn_server, spawn_server_with, ServerProcess, TestServer};
use futures::{SinkExt as _, StreamExt as _};
use grpcio::WriteFlags;
use grpcio::{Client, GrpcSlice, Marshaller, MessageReader, Method, MethodType, RpcStatusCode};
use mrmat_rust_api_grpc::proto::reflection::v1::ServerReflectionRequest;
use mrmat_rust_api_grpc::proto::{
    HealthzInput, HealthzProtoClient, ResourceV1Output, TokenV1Input, TokenV1InputBatch,
};
use protobuf::Message as _;

/// Every rpc of the contract, with the request type a payload must decode as.
const RPCS: &[(&str, &str)] = &[
    ("/GreetingV1Proto/GetGreeting", "GreetingV1Input"),
    ("/GreetingV2Proto/GetGreeting", "GreetingV2Input"),
    ("/HealthzProto/GetHealth", "HealthzInput"),
    ("/ResourceV1Proto/List", "Empty"),
    ("/ResourceV1Proto/Get", "ResourceV1IdInput"),
    ("/ResourceV1Proto/Create", "ResourceV1"),
    ("/ResourceV1Proto/Modify", "ResourceV1"),
    ("/ResourceV1Proto/Remove", "ResourceV1IdInput"),
    ("/TokenV1Proto/Validate", "TokenV1Input"),
    ("/TokenV1Proto/Revoke", "TokenV1RevokeInput"),
    (
        "/envoy.service.auth.v3.Authorization/Check",
        "envoy.service.auth.v3.CheckRequest",
    ),
];

/// A server with every service of the contract on, the token service included, and the key
/// file it needs (kept as long as the server).
fn spawn_full_server() -> (TestServer, KeyFile) {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    (spawn_server_with(token_config(&keys)), keys)
}

// The signature is grpcio's SerializeFn<Vec<u8>>.
#[allow(clippy::ptr_arg)]
fn raw_ser(bytes: &Vec<u8>, buf: &mut GrpcSlice) -> grpcio::Result<()> {
    *buf = GrpcSlice::from(bytes.clone());
    Ok(())
}

fn raw_de(mut reader: MessageReader) -> grpcio::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(bytes)
}

fn raw_method(name: &'static str) -> Method<Vec<u8>, Vec<u8>> {
    raw_method_of(MethodType::Unary, name)
}

fn raw_method_of(ty: MethodType, name: &'static str) -> Method<Vec<u8>, Vec<u8>> {
    let bytes = || Marshaller {
        ser: raw_ser,
        de: raw_de,
    };
    Method {
        ty,
        name,
        req_mar: bytes(),
        resp_mar: bytes(),
    }
}

/// A client that sends any bytes as a request, plus the server's health check.
struct RawClient {
    client: Client,
    healthz: HealthzProtoClient,
}

impl RawClient {
    fn new(server: &TestServer) -> Self {
        let channel = server.channel();
        Self {
            client: Client::new(channel.clone()),
            healthz: HealthzProtoClient::new(channel),
        }
    }

    fn send(&self, rpc: &'static str, payload: &[u8]) -> grpcio::Result<Vec<u8>> {
        self.client
            .unary_call(&raw_method(rpc), &payload.to_vec(), call())
    }

    fn assert_still_serving(&self, after: &str) {
        let answer = self
            .healthz
            .get_health_opt(&HealthzInput::new(), call())
            .unwrap_or_else(|e| panic!("the server stopped answering after {after}: {e}"));
        assert_eq!(answer.code, 200, "after {after}");
    }
}

/// Payloads no message type decodes: each breaks the wire format itself.
fn undecodable() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "a length-delimited field cut short",
            vec![0x0a, 0x05, b'a', b'b'],
        ),
        ("a varint cut short", vec![0x08, 0x80]),
        (
            "a varint of eleven bytes",
            [&[0x08][..], &[0xff; 10], &[0x01]].concat(),
        ),
        ("wire type 6", vec![0x0e, 0x00]),
        ("wire type 7", vec![0x0f, 0x00]),
        ("field number 0", vec![0x00, 0x00]),
        ("an end-group without a start", vec![0x0c]),
        (
            "a length far past the end",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00],
        ),
        (
            "a field that declares 4 GiB and holds nothing",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
        ("a fixed64 cut short", vec![0x09, 0x01, 0x02]),
        ("groups nested 100000 deep", vec![0x0b; 100_000]),
    ]
}

#[track_caller]
fn assert_internal_naming(result: grpcio::Result<Vec<u8>>, message_type: &str, case: &str) {
    match result {
        Err(grpcio::Error::RpcFailure(status)) => {
            assert_eq!(status.code(), RpcStatusCode::INTERNAL, "{case}: {status:?}");
            assert!(
                status
                    .message()
                    .contains(&format!("is not a valid {message_type}")),
                "{case}: {}",
                status.message()
            );
        }
        other => panic!("{case}: expected INTERNAL, got {other:?}"),
    }
}

#[test]
fn every_rpc_answers_a_broken_encoding_with_internal_and_keeps_serving() {
    let (server, _keys) = spawn_full_server();
    let client = RawClient::new(&server);
    for &(rpc, message_type) in RPCS {
        for (what, payload) in undecodable() {
            let case = format!("{what} sent to {rpc}");
            assert_internal_naming(client.send(rpc, &payload), message_type, &case);
            client.assert_still_serving(&case);
        }
    }
}

/// Every streaming rpc that reads messages from its client, with a valid first message and the
/// request type a payload must decode as.
fn streaming_rpcs() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut validate = TokenV1Input::new();
    validate.request_id = 1;
    validate.token = "not.a.token".to_owned();
    let mut batch = TokenV1InputBatch::new();
    batch.inputs.push(validate.clone());
    let mut reflect = ServerReflectionRequest::new();
    reflect.set_list_services(String::new());
    let reflect = reflect.write_to_bytes().expect("encodes");
    vec![
        (
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            reflect.clone(),
            "ServerReflectionRequest",
        ),
        (
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            reflect,
            "ServerReflectionRequest",
        ),
        (
            "/TokenV1Proto/ValidateStream",
            validate.write_to_bytes().expect("encodes"),
            "TokenV1Input",
        ),
        (
            "/TokenV1Proto/ValidateBatches",
            batch.write_to_bytes().expect("encodes"),
            "TokenV1InputBatch",
        ),
    ]
}

#[test]
fn every_stream_answers_what_came_before_a_broken_encoding_then_ends_internal_naming_its_type() {
    let (server, _keys) = spawn_full_server();
    let client = RawClient::new(&server);
    for (rpc, valid, message_type) in streaming_rpcs() {
        for (what, payload) in undecodable() {
            let case = format!("{what} sent to {rpc} after a valid message");
            let (mut sink, mut answers) = client
                .client
                .duplex_streaming(&raw_method_of(MethodType::Duplex, rpc), call())
                .expect("the stream opens");
            // The valid message is answered (the stream works), then the broken one ends it.
            // (One at a time: grpcio's client reports a failed status before messages that
            // arrived ahead of it, so sending both at once would test the client.)
            futures::executor::block_on(sink.send((valid.clone(), WriteFlags::default())))
                .expect("the valid message is sent");
            let first = futures::executor::block_on(answers.next());
            assert!(
                matches!(first, Some(Ok(_))),
                "{case}: the valid message is answered: {first:?}"
            );
            // The server may end the call before the client's send completes.
            let _ = futures::executor::block_on(sink.send((payload, WriteFlags::default())));
            let end = futures::executor::block_on(answers.next());
            match end {
                Some(Err(error)) => assert_internal_naming(Err(error), message_type, &case),
                other => panic!("{case}: expected INTERNAL, got {other:?}"),
            }
            client.assert_still_serving(&case);
        }
    }
}

#[test]
fn health_watch_answers_a_broken_request_with_internal_naming_its_type() {
    let (server, _keys) = spawn_full_server();
    let client = RawClient::new(&server);
    let watch = raw_method_of(MethodType::ServerStreaming, "/grpc.health.v1.Health/Watch");
    for (what, payload) in undecodable() {
        let case = format!("{what} sent to Watch");
        let mut answers = client
            .client
            .server_streaming(&watch, &payload, call())
            .expect("the stream opens");
        match futures::executor::block_on(answers.next()) {
            Some(Err(error)) => assert_internal_naming(Err(error), "HealthCheckRequest", &case),
            other => panic!("{case}: expected INTERNAL, got {other:?}"),
        }
        client.assert_still_serving(&case);
    }
}

#[test]
fn invalid_utf8_in_a_name_is_refused_where_the_field_is_a_string() {
    let (server, _keys) = spawn_full_server();
    let client = RawClient::new(&server);
    let bad_utf8 = [0xc3, 0x28];
    // GreetingV2Input.name is field 1, ResourceV1.name is field 3.
    let greeting = [&[0x0a, 0x02][..], &bad_utf8].concat();
    let resource = [&[0x1a, 0x02][..], &bad_utf8].concat();
    // TokenV1Input.token is field 2.
    let token = [&[0x12, 0x02][..], &bad_utf8].concat();
    for (rpc, message_type, payload) in [
        ("/GreetingV2Proto/GetGreeting", "GreetingV2Input", &greeting),
        ("/ResourceV1Proto/Create", "ResourceV1", &resource),
        ("/ResourceV1Proto/Modify", "ResourceV1", &resource),
        ("/TokenV1Proto/Validate", "TokenV1Input", &token),
    ] {
        let case = format!("invalid UTF-8 sent to {rpc}");
        assert_internal_naming(client.send(rpc, payload), message_type, &case);
        client.assert_still_serving(&case);
    }
}

#[test]
fn a_known_field_with_another_wire_type_is_kept_as_an_unknown_field() {
    // As protobuf specifies (and Python's and C++'s parsers do): the request decodes, the field
    // keeps its default. Here Get's id arrives length-delimited, so the id read is 0.
    let server = spawn_server();
    let client = RawClient::new(&server);
    let answer = client
        .send("/ResourceV1Proto/Get", &[0x0a, 0x01, 0x41])
        .expect("the request decodes");
    let answer = ResourceV1Output::parse_from_bytes(&answer).expect("a valid answer");
    assert_eq!(
        (answer.status.code, answer.status.message.as_str()),
        (404, "Not Found")
    );
}

#[test]
fn a_fixed_seed_batch_of_random_payloads_never_breaks_the_server() {
    let (server, _keys) = spawn_full_server();
    let client = RawClient::new(&server);
    let mut rng = fastrand::Rng::with_seed(0x6d72_6d61_7467_7270);
    // A valid ResourceV1{id: 3, owner_id: 7, name: "name"}: mutations of it reach deeper into
    // the decoder than pure noise does.
    let valid = [&[0x08, 0x03, 0x10, 0x07, 0x1a, 0x04][..], b"name"].concat();
    let (mut answered, mut refused) = (0, 0);
    for &(rpc, message_type) in RPCS {
        for round in 0..150 {
            let payload = if round % 2 == 0 {
                let len = rng.usize(0..48);
                (0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>()
            } else {
                mutate(&mut rng, &valid)
            };
            let case = format!("random payload {payload:02x?} sent to {rpc}");
            match client.send(rpc, &payload) {
                Ok(_) => answered += 1,
                // A Revoke that decoded, refused for want of a client certificate; a Check
                // that decoded but asks about no HTTP request.
                Err(grpcio::Error::RpcFailure(status))
                    if status.code() == RpcStatusCode::PERMISSION_DENIED
                        || status.code() == RpcStatusCode::INVALID_ARGUMENT =>
                {
                    answered += 1
                }
                result => {
                    assert_internal_naming(result, message_type, &case);
                    refused += 1;
                }
            }
            client.assert_still_serving(&case);
        }
    }
    // The batch is only worth something if it exercises both outcomes.
    assert!(
        answered > 100 && refused > 100,
        "{answered} answered, {refused} refused"
    );
}

/// A copy of `valid` with one to three random edits: a byte replaced, removed or inserted, or
/// the tail cut off.
fn mutate(rng: &mut fastrand::Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for _ in 0..rng.usize(1..=3) {
        let at = rng.usize(0..bytes.len().max(1));
        match rng.u8(0..4) {
            0 if !bytes.is_empty() => bytes[at] = rng.u8(..),
            1 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            2 => bytes.insert(at.min(bytes.len()), rng.u8(..)),
            _ => bytes.truncate(at),
        }
    }
    bytes
}

#[test]
fn an_undecodable_request_is_logged_at_warn_without_its_content() {
    let server = ServerProcess::start(&[]);
    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let client = Client::new(grpcio::ChannelBuilder::new(env).connect(&server.address));
    // A name that is a secret followed by a byte that is not UTF-8.
    let payload = [&[0x0a, 0x0b][..], b"hunter2-pw", &[0xff]].concat();
    let result = client.unary_call(
        &raw_method("/GreetingV2Proto/GetGreeting"),
        &payload,
        call(),
    );
    assert_internal_naming(result, "GreetingV2Input", "invalid UTF-8");
    let line = server
        .log
        .line_containing("GreetingV2Input", Duration::from_secs(10))
        .expect("the refusal is logged");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("13-byte"), "{line}");
    assert!(
        !line.contains("hunter2"),
        "the log shows the request's content: {line}"
    );
}

#[test]
fn two_hundred_undecodable_messages_make_a_few_warn_lines_and_a_later_one_counts_the_rest() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let args = common::jwt::token_args(&keys);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let client = Client::new(grpcio::ChannelBuilder::new(env).connect(&server.address));
    let broken = move || {
        let batches = raw_method_of(MethodType::Duplex, "/TokenV1Proto/ValidateBatches");
        let (mut sink, mut answers) = client
            .duplex_streaming(&batches, call())
            .expect("the stream opens");
        let _ = futures::executor::block_on(sink.send((vec![0x0a, 0x05], WriteFlags::default())));
        match futures::executor::block_on(answers.next()) {
            Some(Err(error)) => assert_internal_naming(Err(error), "TokenV1InputBatch", "flood"),
            other => panic!("expected INTERNAL, got {other:?}"),
        }
    };
    for _ in 0..200 {
        broken();
    }
    // Then one every 100 ms, until a line says how many were left out.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let more = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                broken();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let lines = server
        .log
        .lines_until("more like it left out", Duration::from_secs(20))
        .expect("a line counts the ones left out");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    more.join().expect("the sender ends");
    let said = "is not a valid TokenV1InputBatch";
    let (counting, before) = lines.split_last().expect("a line");
    let warned = before.iter().filter(|line| line.contains(said)).count();
    assert_eq!(
        warned,
        mrmat_rust_api_grpc::logs::BURST as usize,
        "a burst, then nothing until the interval has passed"
    );
    assert!(
        counting.contains(said) && counting.contains("WARN"),
        "{counting}"
    );
    let left_out: usize = counting
        .split(" more like it left out")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(left_out >= 150, "{counting}");
}
