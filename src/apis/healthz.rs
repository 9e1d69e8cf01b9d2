//! `HealthzProto`: the original's own health check, `{200, "OK"}` while the server answers.

use grpcio::{RpcContext, UnarySink};

use crate::apis::call::{application_status, Call};
use crate::apis::offer::{Api, ApiOffer, DependsOn, ServingContext};
use crate::proto::{
    create_healthz_proto, grpc_api, service_names, HealthzInput, HealthzProto, StatusOutput,
};

/// The service's name, as health checking and reflection report it.
pub const NAME: &str = service_names::HEALTHZ_PROTO;

/// The original's health check.
#[derive(Clone, Debug, Default)]
pub struct HealthzApi;

/// Always served, ready from the start.
pub fn offer(_: &ServingContext<'_>) -> ApiOffer {
    ApiOffer::Served(Api {
        name: NAME,
        service: create_healthz_proto(HealthzApi),
        file: grpc_api::file_descriptor(),
        depends_on: DependsOn::Nothing,
    })
}

impl HealthzProto for HealthzApi {
    fn get_health(&mut self, ctx: RpcContext, _req: HealthzInput, sink: UnarySink<StatusOutput>) {
        Call::start(&ctx).reply(&ctx, sink, application_status(200, "OK"));
    }
}
