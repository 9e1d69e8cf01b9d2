//! `GreetingV2Proto`: "Hello {name}", or "Hello Stranger" without a name.

use grpcio::{RpcContext, UnarySink};

use crate::apis::call::Call;
use crate::apis::offer::{Api, ApiOffer, DependsOn, ServingContext};
use crate::proto::{
    create_greeting_v2_proto, grpc_api, service_names, GreetingV2Input, GreetingV2Output,
    GreetingV2Proto,
};

/// The service's name, as health checking and reflection report it.
pub const NAME: &str = service_names::GREETING_V2_PROTO;

/// The greeting, version 2.
#[derive(Clone, Debug, Default)]
pub struct GreetingV2Api;

/// Always served, ready from the start.
pub fn offer(_: &ServingContext<'_>) -> ApiOffer {
    ApiOffer::Served(Api {
        name: NAME,
        service: create_greeting_v2_proto(GreetingV2Api),
        file: grpc_api::file_descriptor(),
        depends_on: DependsOn::Nothing,
    })
}

/// The greeting for `name`; proto3 cannot tell an empty name from none, so both are a stranger.
pub fn greeting(name: &str) -> String {
    let name = if name.is_empty() { "Stranger" } else { name };
    format!("Hello {name}")
}

impl GreetingV2Proto for GreetingV2Api {
    fn get_greeting(
        &mut self,
        ctx: RpcContext,
        req: GreetingV2Input,
        sink: UnarySink<GreetingV2Output>,
    ) {
        let call = Call::start(&ctx);
        let mut answer = GreetingV2Output::new();
        answer.message = greeting(&req.name);
        call.reply(&ctx, sink, answer);
    }
}
