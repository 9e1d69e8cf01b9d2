//! `GreetingV1Proto`: always "Hello World".

use grpcio::{RpcContext, UnarySink};

use crate::apis::{ApiService, Call};
use crate::proto::{create_greeting_v1_proto, GreetingV1Input, GreetingV1Output, GreetingV1Proto};

/// The greeting, version 1.
#[derive(Clone, Debug, Default)]
pub struct GreetingV1Api;

/// The service to register on a server.
pub fn service() -> ApiService {
    ApiService {
        name: "GreetingV1Proto",
        service: create_greeting_v1_proto(GreetingV1Api),
    }
}

impl GreetingV1Proto for GreetingV1Api {
    fn get_greeting(
        &mut self,
        ctx: RpcContext,
        _req: GreetingV1Input,
        sink: UnarySink<GreetingV1Output>,
    ) {
        let call = Call::start(&ctx);
        let mut answer = GreetingV1Output::new();
        answer.message = "Hello World".to_owned();
        call.reply(&ctx, sink, answer);
    }
}
