//! `HealthzProto`: the original's own health check, `{200, "OK"}` while the server answers.

use grpcio::{RpcContext, UnarySink};

use crate::apis::{status, ApiService, Call};
use crate::proto::{create_healthz_proto, HealthzInput, HealthzProto, StatusOutput};

/// The original's health check.
#[derive(Clone, Debug, Default)]
pub struct HealthzApi;

/// The service to register on a server.
pub fn service() -> ApiService {
    ApiService {
        name: "HealthzProto",
        service: create_healthz_proto(HealthzApi),
    }
}

impl HealthzProto for HealthzApi {
    fn get_health(&mut self, ctx: RpcContext, _req: HealthzInput, sink: UnarySink<StatusOutput>) {
        Call::start(&ctx).reply(&ctx, sink, status(200, "OK"));
    }
}
