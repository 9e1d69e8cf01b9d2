//! The calls a benchmark makes, one at a time per in-flight slot.

use std::time::Duration;

use grpcio::{CallOption, Channel};

use crate::apis::call::status_name;
use crate::proto::{
    Empty, GreetingV2Input, GreetingV2ProtoClient, HealthzInput, HealthzProtoClient, ResourceV1,
    ResourceV1IdInput, ResourceV1ProtoClient,
};

/// The call to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `GreetingV2Proto/GetGreeting` with a name.
    GreetingV2,
    /// `HealthzProto/GetHealth`.
    Healthz,
    /// `ResourceV1Proto/Get` of a random preloaded resource.
    ResourceGet,
    /// `ResourceV1Proto/Create` (the store grows by one per call).
    ResourceCreate,
    /// `ResourceV1Proto/List` of the preloaded resources.
    ResourceList,
    /// Get of a random preloaded resource, or (--read-percent) Modify of one.
    Mixed,
}

impl Workload {
    /// Whether the calls need resources in the store.
    pub fn needs_resources(self) -> bool {
        matches!(self, Self::ResourceGet | Self::ResourceList | Self::Mixed)
    }

    /// The name as the `--call` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::GreetingV2 => "greeting-v2",
            Self::Healthz => "healthz",
            Self::ResourceGet => "resource-get",
            Self::ResourceCreate => "resource-create",
            Self::ResourceList => "resource-list",
            Self::Mixed => "mixed",
        }
    }
}

/// Clients of every service over one connection.
#[derive(Clone)]
pub struct Caller {
    greeting: GreetingV2ProtoClient,
    healthz: HealthzProtoClient,
    resource: ResourceV1ProtoClient,
    timeout: Duration,
}

/// How one call ended: the id a create was given, or the gRPC status name of a failure.
pub type Outcome = Result<Option<u64>, String>;

fn failed(e: grpcio::Error) -> String {
    match e {
        grpcio::Error::RpcFailure(status) => status_name(status.code()),
        other => format!("client error: {other}"),
    }
}

impl Caller {
    /// Clients over `channel`, each call with a `timeout` deadline.
    pub fn new(channel: Channel, timeout: Duration) -> Self {
        Self {
            greeting: GreetingV2ProtoClient::new(channel.clone()),
            healthz: HealthzProtoClient::new(channel.clone()),
            resource: ResourceV1ProtoClient::new(channel),
            timeout,
        }
    }

    /// Runs `future` on the connection's completion queue.
    pub fn spawn(&self, future: impl std::future::Future<Output = ()> + Send + 'static) {
        self.healthz.spawn(future);
    }

    fn option(&self) -> CallOption {
        CallOption::default().timeout(self.timeout)
    }

    /// Makes one call of `workload`. `ids` are the preloaded resources to pick from.
    pub async fn call(
        &self,
        workload: Workload,
        ids: &[u64],
        read_percent: u8,
        rng: &mut fastrand::Rng,
    ) -> Outcome {
        let pick = |rng: &mut fastrand::Rng| {
            let mut input = ResourceV1IdInput::new();
            input.id = if ids.is_empty() {
                0
            } else {
                ids[rng.usize(..ids.len())]
            };
            input
        };
        match workload {
            Workload::GreetingV2 => {
                let mut request = GreetingV2Input::new();
                request.name = "bench".to_owned();
                let receiver = self
                    .greeting
                    .get_greeting_async_opt(&request, self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::Healthz => {
                let receiver = self
                    .healthz
                    .get_health_async_opt(&HealthzInput::new(), self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::ResourceGet => {
                let receiver = self.resource.get_async_opt(&pick(rng), self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::ResourceCreate => {
                let mut request = ResourceV1::new();
                request.owner_id = 1;
                request.name = "bench resource".to_owned();
                let receiver = self.resource.create_async_opt(&request, self.option());
                let answer = receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(Some(answer.resource.id))
            }
            Workload::ResourceList => {
                let receiver = self.resource.list_async_opt(&Empty::new(), self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::Mixed => {
                if rng.u8(0..100) < read_percent {
                    return Box::pin(self.call(Workload::ResourceGet, ids, read_percent, rng))
                        .await;
                }
                let mut request = ResourceV1::new();
                request.id = pick(rng).id;
                request.owner_id = 1;
                request.name = "renamed by bench".to_owned();
                let receiver = self.resource.modify_async_opt(&request, self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
        }
    }
}
