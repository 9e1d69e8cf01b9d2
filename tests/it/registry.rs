//! The APIs' registry is what a server serves: every registered API is in health checking's
//! List, in reflection and in the start-up line (with health checking and reflection beside
//! them), and follows what it depends on.

use crate::common;

use std::collections::BTreeSet;

use common::jwt::{token_args, token_config, KeyFile, SigningKey};
use common::{call, spawn_server_with, ServerProcess};
use futures::{SinkExt as _, StreamExt as _};
use mrmat_rust_api_grpc::apis::{self, DependsOn};
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthClient, HealthListRequest,
};
use mrmat_rust_api_grpc::proto::reflection::v1::{
    server_reflection_request::Message_request, server_reflection_response::Message_response,
    ServerReflectionClient, ServerReflectionRequest,
};

#[test]
fn every_registered_api_is_in_health_list_reflection_and_the_start_up_line() {
    let key = SigningKey::ed25519("registry");
    let keys = KeyFile::new(&[&key]);
    let server = spawn_server_with(token_config(&keys));
    let registered: Vec<&str> = server.apis().iter().map(|(name, _)| *name).collect();
    assert!(
        registered.len() >= 6,
        "every API of the contract: {registered:?}"
    );
    let standard = [
        apis::health::NAME,
        apis::reflection::NAMES[0],
        apis::reflection::NAMES[1],
    ];
    let served: Vec<&str> = registered.iter().copied().chain(standard).collect();

    let health = HealthClient::new(server.channel());
    let listed = health
        .list_opt(&HealthListRequest::new(), call())
        .expect("List answers");
    for name in &registered {
        let status = listed
            .statuses
            .get(*name)
            .map(|s| s.status.enum_value_or_default());
        assert_eq!(
            status,
            Some(ServingStatus::SERVING),
            "{name} in health List"
        );
    }

    let reflection = ServerReflectionClient::new(server.channel());
    let (mut requests, mut answers) = reflection
        .server_reflection_info_opt(call())
        .expect("a reflection stream");
    let mut ask = ServerReflectionRequest::new();
    ask.message_request = Some(Message_request::ListServices(String::new()));
    let reflected: BTreeSet<String> = futures::executor::block_on(async {
        requests
            .send((ask, grpcio::WriteFlags::default()))
            .await
            .expect("ask");
        let answer = answers.next().await.expect("an answer").expect("no error");
        let _ = requests.close().await;
        match answer.message_response {
            Some(Message_response::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("{other:?}"),
        }
    });
    let expected: BTreeSet<String> = served.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(
        reflected, expected,
        "reflection lists exactly what is served"
    );

    let mut args = token_args(&keys);
    args.extend(["--store".to_owned(), "memory".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let binary = ServerProcess::start(&args);
    assert!(
        binary
            .listening_line
            .contains(&format!("serving {};", served.join(", "))),
        "{}",
        binary.listening_line
    );
}

#[test]
fn the_apis_that_need_the_store_are_the_resource_apis_and_the_token_apis_need_their_keys() {
    let registered = common::registered_apis();
    let depending = |on: DependsOn| -> Vec<&str> {
        registered
            .iter()
            .filter(|(_, d)| *d == on)
            .map(|(n, _)| *n)
            .collect()
    };
    assert_eq!(
        depending(DependsOn::Store),
        ["ResourceV1Proto", "ResourceV2Proto"]
    );
    assert_eq!(
        depending(DependsOn::Keys),
        ["TokenV1Proto", "envoy.service.auth.v3.Authorization"]
    );
}
