//! The greeting API, versions 1 and 2, over a real channel.

use crate::common;

use common::{call, spawn_server};
use mrmat_rust_api_grpc::proto::{
    GreetingV1Input, GreetingV1ProtoClient, GreetingV2Input, GreetingV2ProtoClient,
};

fn greet_v2(client: &GreetingV2ProtoClient, name: &str) -> String {
    let mut request = GreetingV2Input::new();
    request.name = name.to_owned();
    client
        .get_greeting_opt(&request, call())
        .expect("answer")
        .message
}

#[test]
fn v1_greets_the_world() {
    let server = spawn_server();
    let client = GreetingV1ProtoClient::new(server.channel());
    let answer = client
        .get_greeting_opt(&GreetingV1Input::new(), call())
        .expect("answer");
    assert_eq!(answer.message, "Hello World");
}

#[test]
fn v2_greets_by_name() {
    let server = spawn_server();
    let client = GreetingV2ProtoClient::new(server.channel());
    assert_eq!(greet_v2(&client, "Mat"), "Hello Mat");
    assert_eq!(greet_v2(&client, "Zoë 🌍"), "Hello Zoë 🌍");
}

#[test]
fn v2_without_a_name_greets_a_stranger() {
    let server = spawn_server();
    let client = GreetingV2ProtoClient::new(server.channel());
    assert_eq!(greet_v2(&client, ""), "Hello Stranger");
}
