//! The calls a benchmark makes, one at a time per in-flight slot.

use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, Channel, ChannelBuilder, Environment};

use crate::client::{LoadedTls, Servers, TokenValidator, ValidateError};
use crate::proto::{
    Empty, GreetingV2Input, GreetingV2ProtoClient, HealthzInput, HealthzProtoClient, ResourceV1,
    ResourceV1IdInput, ResourceV1ProtoClient, TokenV1Input, TokenV1Output, TokenV1ProtoClient,
    TokenV1Verdict,
};
use crate::status::status_name;

/// The call to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// `TokenV1Proto/Validate` of a random token from --tokens.
    TokenValidate,
    /// `TokenV1Proto/ValidateStream`: one stream per connection, --in-flight questions
    /// outstanding across them, each answer making room for the next question.
    TokenStream,
    /// `ValidateStream` through the client library's TokenValidator (one per connection),
    /// --in-flight callers at once: what an app embedding it gets.
    TokenValidator,
}

impl Workload {
    /// Every workload, in the order `--help` lists them.
    pub const ALL: [Self; 9] = [
        Self::GreetingV2,
        Self::Healthz,
        Self::ResourceGet,
        Self::ResourceCreate,
        Self::ResourceList,
        Self::Mixed,
        Self::TokenValidate,
        Self::TokenStream,
        Self::TokenValidator,
    ];

    /// What the calls are, as `--help` says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::GreetingV2 => "`GreetingV2Proto/GetGreeting` with a name",
            Self::Healthz => "`HealthzProto/GetHealth`",
            Self::ResourceGet => "`ResourceV1Proto/Get` of a random preloaded resource",
            Self::ResourceCreate => "`ResourceV1Proto/Create` (the store grows by one per call)",
            Self::ResourceList => "`ResourceV1Proto/List` of the preloaded resources",
            Self::Mixed => "Get of a random preloaded resource, or (--read-percent) Modify of one",
            Self::TokenValidate => "`TokenV1Proto/Validate` of a random token from --tokens",
            Self::TokenStream => {
                "`TokenV1Proto/ValidateStream`: one stream per connection, --in-flight questions \
                 outstanding across them, each answer making room for the next question"
            }
            Self::TokenValidator => {
                "`ValidateStream` through the client library's TokenValidator (one per \
                 connection), --in-flight callers at once: what an app embedding it gets"
            }
        }
    }

    /// Whether the calls need resources in the store.
    pub fn needs_resources(self) -> bool {
        matches!(self, Self::ResourceGet | Self::ResourceList | Self::Mixed)
    }

    /// The `grpc.health.v1` name of the API the calls go to: with several servers, only
    /// replicas that report it SERVING get calls.
    pub fn service(self) -> &'static str {
        match self {
            Self::GreetingV2 | Self::Healthz => "",
            Self::ResourceGet | Self::ResourceCreate | Self::ResourceList | Self::Mixed => {
                crate::proto::service_names::RESOURCE_V1_PROTO
            }
            Self::TokenValidate | Self::TokenStream | Self::TokenValidator => {
                crate::proto::service_names::TOKEN_V1_PROTO
            }
        }
    }

    /// Whether the calls need tokens (--tokens).
    pub fn needs_tokens(self) -> bool {
        matches!(
            self,
            Self::TokenValidate | Self::TokenStream | Self::TokenValidator
        )
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
            Self::TokenValidate => "token-validate",
            Self::TokenStream => "token-stream",
            Self::TokenValidator => "token-validator",
        }
    }
}

/// Clients of every service over one channel.
#[derive(Clone)]
struct Clients {
    greeting: GreetingV2ProtoClient,
    healthz: HealthzProtoClient,
    resource: ResourceV1ProtoClient,
    token: TokenV1ProtoClient,
}

impl Clients {
    fn new(channel: Channel) -> Self {
        Self {
            greeting: GreetingV2ProtoClient::new(channel.clone()),
            healthz: HealthzProtoClient::new(channel.clone()),
            resource: ResourceV1ProtoClient::new(channel.clone()),
            token: TokenV1ProtoClient::new(channel),
        }
    }
}

/// Opens a channel, and so a connection and its handshakes, for every call: what an app that
/// does not keep its channel does.
pub struct FreshChannels {
    pub env: Arc<Environment>,
    pub servers: Servers,
    pub tls: LoadedTls,
    /// The health service name replicas must be SERVING for (see [`Workload::service`]).
    pub service: &'static str,
}

impl FreshChannels {
    fn open(&self) -> Channel {
        // A local subchannel pool: otherwise the core would reuse a live connection.
        let builder = ChannelBuilder::new(self.env.clone()).use_local_subchannel_pool(true);
        self.servers.connect(builder, &self.tls, self.service)
    }
}

/// Clients of every service over one connection, or a new connection per call.
#[derive(Clone)]
pub struct Caller {
    kept: Clients,
    fresh: Option<Arc<FreshChannels>>,
    validator: Option<Arc<TokenValidator>>,
    timeout: Duration,
}

/// How one call ended: the id a create was given, or the gRPC status name of a failure.
pub type CallOutcome = Result<Option<u64>, String>;

pub fn failed(e: grpcio::Error) -> String {
    match e {
        grpcio::Error::RpcFailure(status) => status_name(status.code()),
        other => format!("client error: {other}"),
    }
}

/// A token's answer as an outcome: a verdict other than valid counts as an error by its name,
/// so that a file of expired tokens does not pass for a fast benchmark.
pub fn verdict(answer: &TokenV1Output) -> CallOutcome {
    match answer.verdict.enum_value_or_default() {
        TokenV1Verdict::TOKEN_V1_VALID => Ok(None),
        other => Err(format!("{other:?}")),
    }
}

fn validation_failed(e: ValidateError) -> String {
    match e {
        ValidateError::DeadlineExceeded { .. } => "DEADLINE_EXCEEDED".to_owned(),
        ValidateError::Overloaded { .. } => "validator overloaded".to_owned(),
        ValidateError::Refused { code, .. } => status_name(code),
        ValidateError::Closed => "validator closed".to_owned(),
    }
}

impl Caller {
    /// Clients over `channel`, each call with a `timeout` deadline; with `fresh`, each call on
    /// a channel of its own instead, and with `validator`, token-stream questions through it.
    pub fn new(
        channel: Channel,
        timeout: Duration,
        fresh: Option<Arc<FreshChannels>>,
        validator: Option<Arc<TokenValidator>>,
    ) -> Self {
        Self {
            kept: Clients::new(channel),
            fresh,
            validator,
            timeout,
        }
    }

    /// The validator token-validator calls ask through.
    pub fn validator(&self) -> Option<&TokenValidator> {
        self.validator.as_deref()
    }

    /// The token client of the kept connection.
    pub fn token_client(&self) -> &TokenV1ProtoClient {
        &self.kept.token
    }

    /// Runs `future` on the connection's completion queue.
    pub fn spawn(&self, future: impl std::future::Future<Output = ()> + Send + 'static) {
        self.kept.healthz.spawn(future);
    }

    fn option(&self) -> CallOption {
        CallOption::default().timeout(self.timeout)
    }

    /// Makes one call of `workload`. `ids` are the preloaded resources to pick from.
    // Long: one arm per workload, each a whole call, read side by side.
    pub async fn call(
        &self,
        workload: Workload,
        ids: &[u64],
        tokens: &[String],
        read_percent: u8,
        rng: &mut fastrand::Rng,
    ) -> CallOutcome {
        let fresh;
        let clients = match &self.fresh {
            Some(channels) => {
                fresh = Clients::new(channels.open());
                &fresh
            }
            None => &self.kept,
        };
        let token = |rng: &mut fastrand::Rng| {
            if tokens.is_empty() {
                ""
            } else {
                tokens[rng.usize(..tokens.len())].as_str()
            }
        };
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
                let receiver = clients
                    .greeting
                    .get_greeting_async_opt(&request, self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::Healthz => {
                let receiver = clients
                    .healthz
                    .get_health_async_opt(&HealthzInput::new(), self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::ResourceGet => {
                let receiver = clients.resource.get_async_opt(&pick(rng), self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::ResourceCreate => {
                let mut request = ResourceV1::new();
                request.owner_id = 1;
                request.name = "bench resource".to_owned();
                let receiver = clients.resource.create_async_opt(&request, self.option());
                let answer = receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(Some(answer.resource.id))
            }
            Workload::ResourceList => {
                let receiver = clients
                    .resource
                    .list_async_opt(&Empty::new(), self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::Mixed => {
                if rng.u8(0..100) < read_percent {
                    let receiver = clients.resource.get_async_opt(&pick(rng), self.option());
                    receiver.map_err(failed)?.await.map_err(failed)?;
                    return Ok(None);
                }
                let mut request = ResourceV1::new();
                request.id = pick(rng).id;
                request.owner_id = 1;
                request.name = "renamed by bench".to_owned();
                let receiver = clients.resource.modify_async_opt(&request, self.option());
                receiver.map_err(failed)?.await.map_err(failed)?;
                Ok(None)
            }
            Workload::TokenValidate => {
                let mut request = TokenV1Input::new();
                request.token = token(rng).to_owned();
                let receiver = clients.token.validate_async_opt(&request, self.option());
                verdict(&receiver.map_err(failed)?.await.map_err(failed)?)
            }
            Workload::TokenStream => unreachable!("streams are driven by load::drive_streams"),
            Workload::TokenValidator => {
                let validator = self
                    .validator
                    .as_ref()
                    .expect("token-validator callers have a validator");
                let answer = validator
                    .validate_async(token(rng))
                    .await
                    .map_err(validation_failed)?;
                verdict(answer.output())
            }
        }
    }
}
