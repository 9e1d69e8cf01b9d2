//! `GreetingV1Proto`: always "Hello World".

use grpcio::{RpcContext, Service, UnarySink};

use crate::apis::reply;
use crate::proto::{create_greeting_v1_proto, GreetingV1Input, GreetingV1Output, GreetingV1Proto};

/// The greeting, version 1.
#[derive(Clone, Debug, Default)]
pub struct GreetingV1Api;

/// The service to register on a server.
pub fn service() -> Service {
    create_greeting_v1_proto(GreetingV1Api)
}

impl GreetingV1Proto for GreetingV1Api {
    fn get_greeting(
        &mut self,
        ctx: RpcContext,
        _req: GreetingV1Input,
        sink: UnarySink<GreetingV1Output>,
    ) {
        let mut answer = GreetingV1Output::new();
        answer.message = "Hello World".to_owned();
        reply(&ctx, sink, answer);
    }
}
