//! `GreetingV1Proto`: always "Hello World".

use grpcio::{RpcContext, UnarySink};

use crate::apis::call::Call;
use crate::apis::offer::{Api, ApiOffer, DependsOn, ServingContext};
use crate::proto::{
    create_greeting_v1_proto, grpc_api, service_names, GreetingV1Input, GreetingV1Output,
    GreetingV1Proto,
};

/// The service's name, as health checking and reflection report it.
pub const NAME: &str = service_names::GREETING_V1_PROTO;

/// The greeting, version 1.
#[derive(Clone, Debug, Default)]
pub struct GreetingV1Api;

/// Always served, ready from the start.
pub fn offer(_: &ServingContext<'_>) -> ApiOffer {
    ApiOffer::Served(Api {
        name: NAME,
        service: create_greeting_v1_proto(GreetingV1Api),
        file: grpc_api::file_descriptor(),
        depends_on: DependsOn::Nothing,
    })
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
