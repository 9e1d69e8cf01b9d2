//! Server reflection from a Rust client of both versions: the services listed, descriptors that
//! describe them (imports included), clear errors for what is unknown, and the flag that turns it
//! off. grpcurl and Python's descriptor database are in tests/interop.rs.

use crate::common;

use common::{call, spawn_server, spawn_server_with, test_config, TestServer};
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{RpcStatusCode, WriteFlags};
use mrmat_rust_api_grpc::proto::reflection::{v1, v1alpha};
use mrmat_rust_api_grpc::server::ServerConfig;
use protobuf::descriptor::FileDescriptorProto;
use protobuf::Message as _;

use v1::server_reflection_request::Message_request as Ask;
use v1::server_reflection_response::Message_response as Answer;

/// Sends `asks` on one v1 stream and returns the answers in order.
fn ask_v1(server: &TestServer, asks: Vec<Ask>) -> grpcio::Result<Vec<Answer>> {
    let client = v1::ServerReflectionClient::new(server.channel());
    let (mut requests, mut responses) = client.server_reflection_info_opt(call())?;
    futures::executor::block_on(async {
        let mut answers = Vec::new();
        for ask in asks {
            let mut request = v1::ServerReflectionRequest::new();
            request.host = "test".to_owned();
            request.message_request = Some(ask);
            requests.send((request, WriteFlags::default())).await?;
            let response = responses.next().await.expect("one answer per request")?;
            assert_eq!(response.valid_host, "test");
            answers.push(response.message_response.expect("an answer"));
        }
        end(&mut requests, &mut responses).await?;
        Ok(answers)
    })
}

/// Half-closes a stream and checks that the server ends it with OK. grpcio's `close` reports
/// `RpcFinished(None)` when the server's OK overtook the half-close: that is a clean end too.
async fn end<Req, Resp>(
    requests: &mut grpcio::ClientDuplexSender<Req>,
    responses: &mut grpcio::ClientDuplexReceiver<Resp>,
) -> grpcio::Result<()> {
    match requests.close().await {
        Ok(()) | Err(grpcio::Error::RpcFinished(None)) => {}
        Err(e) => return Err(e),
    }
    match responses.next().await {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok(_)) => panic!("an answer nobody asked for"),
    }
}

fn files(answer: &Answer) -> Vec<FileDescriptorProto> {
    match answer {
        Answer::FileDescriptorResponse(found) => found
            .file_descriptor_proto
            .iter()
            .map(|bytes| FileDescriptorProto::parse_from_bytes(bytes).expect("a descriptor"))
            .collect(),
        other => panic!("expected descriptors, got {other:?}"),
    }
}

fn error_code(answer: &Answer) -> i32 {
    match answer {
        Answer::ErrorResponse(error) => error.error_code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn every_service_is_listed() {
    let server = spawn_server();
    let answers = ask_v1(&server, vec![Ask::ListServices(String::new())]).expect("answers");
    let Answer::ListServicesResponse(list) = &answers[0] else {
        panic!("expected a list, got {:?}", answers[0]);
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, server.served());
    assert!(names.contains(&"ResourceV2Proto"), "{names:?}");
}

#[test]
fn the_token_service_is_listed_and_described_when_it_is_served() {
    let key = common::jwt::SigningKey::ed25519("ed");
    let keys = common::jwt::KeyFile::new(&[&key]);
    let server = spawn_server_with(common::jwt::token_config(&keys));
    let answers = ask_v1(
        &server,
        vec![
            Ask::ListServices(String::new()),
            Ask::FileContainingSymbol("TokenV1Proto".to_owned()),
            Ask::FileContainingSymbol("envoy.service.auth.v3.Authorization".to_owned()),
        ],
    )
    .expect("answers");
    let Answer::ListServicesResponse(list) = &answers[0] else {
        panic!("expected a list, got {:?}", answers[0]);
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, server.served());
    assert!(names.contains(&"TokenV1Proto"), "{names:?}");
    let file = &files(&answers[1])[0];
    let service = file
        .service
        .iter()
        .find(|s| s.name() == "TokenV1Proto")
        .expect("the file describes the service");
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        ["Validate", "ValidateStream", "Revoke", "ValidateBatches"]
    );
    // Envoy's external authorization comes with it, with every file its messages are in.
    assert!(
        names.contains(&"envoy.service.auth.v3.Authorization"),
        "{names:?}"
    );
    let mut envoy: Vec<String> = files(&answers[2])
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    envoy.sort();
    assert_eq!(
        envoy,
        [
            "envoy/config/core/v3/base.proto",
            "envoy/service/auth/v3/attribute_context.proto",
            "envoy/service/auth/v3/external_auth.proto",
            "envoy/type/v3/http_status.proto",
            "google/protobuf/any.proto",
            "google/rpc/status.proto",
        ]
    );
}

#[test]
fn a_symbol_comes_with_its_file_and_the_files_it_imports() {
    let server = spawn_server();
    let answers = ask_v1(
        &server,
        vec![
            Ask::FileContainingSymbol("ResourceV1Proto".to_owned()),
            Ask::FileContainingSymbol("ResourceV1Proto.Create".to_owned()),
            Ask::FileContainingSymbol("grpc.health.v1.HealthCheckResponse.ServingStatus".into()),
            Ask::FileByFilename("grpc-api.proto".to_owned()),
        ],
    )
    .expect("answers");

    let contract = files(&answers[0]);
    let names: Vec<&str> = contract.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "grpc-api.proto",
            "google/protobuf/empty.proto",
            "google/protobuf/struct.proto"
        ]
    );
    let service = contract[0]
        .service
        .iter()
        .find(|s| s.name() == "ResourceV1Proto")
        .expect("the service is described");
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["List", "Get", "Create", "Modify", "Remove"]);

    assert_eq!(files(&answers[1])[0].name(), "grpc-api.proto", "a method");
    assert_eq!(
        files(&answers[2])[0].name(),
        "grpc/health/v1/health.proto",
        "a nested enum"
    );
    assert_eq!(
        files(&answers[3])[0].name(),
        "grpc-api.proto",
        "by file name"
    );
}

#[test]
fn unknown_symbols_files_and_extensions_are_not_found_on_a_stream_that_goes_on() {
    let server = spawn_server();
    let answers = ask_v1(
        &server,
        vec![
            Ask::FileContainingSymbol("NoSuchThing".to_owned()),
            Ask::FileByFilename("nope.proto".to_owned()),
            Ask::FileContainingExtension(v1::ExtensionRequest::new()),
            Ask::ListServices(String::new()),
        ],
    )
    .expect("answers");
    let not_found: i32 = RpcStatusCode::NOT_FOUND.into();
    assert_eq!(error_code(&answers[0]), not_found);
    assert_eq!(error_code(&answers[1]), not_found);
    assert_eq!(error_code(&answers[2]), not_found);
    assert!(matches!(answers[3], Answer::ListServicesResponse(_)));
}

#[test]
fn v1alpha_answers_as_v1_does() {
    let server = spawn_server();
    let client = v1alpha::ServerReflectionClient::new(server.channel());
    let (mut requests, mut responses) = client.server_reflection_info_opt(call()).expect("stream");
    let response = futures::executor::block_on(async {
        let mut request = v1alpha::ServerReflectionRequest::new();
        request.message_request = Some(
            v1alpha::server_reflection_request::Message_request::FileContainingSymbol(
                "GreetingV2Proto".to_owned(),
            ),
        );
        requests
            .send((request, WriteFlags::default()))
            .await
            .expect("sent");
        let response = responses.next().await.expect("an answer").expect("ok");
        end(&mut requests, &mut responses)
            .await
            .expect("a clean end");
        response
    });
    let found = response.file_descriptor_response();
    let file = FileDescriptorProto::parse_from_bytes(&found.file_descriptor_proto[0])
        .expect("a descriptor");
    assert_eq!(file.name(), "grpc-api.proto");
}

#[test]
fn no_reflection_turns_it_off() {
    let server = spawn_server_with(ServerConfig {
        reflection: false,
        ..test_config()
    });
    // Depending on timing the status arrives as the stream's failure or as the reason a send
    // could not be made.
    match ask_v1(&server, vec![Ask::ListServices(String::new())]) {
        Err(grpcio::Error::RpcFailure(status)) | Err(grpcio::Error::RpcFinished(Some(status))) => {
            assert_eq!(status.code(), RpcStatusCode::UNIMPLEMENTED)
        }
        other => panic!("expected UNIMPLEMENTED, got {other:?}"),
    }
}
