//! `ResourceV1Proto`: list, get, create, modify (rename) and remove resources in a store.

use std::sync::Arc;

use grpcio::{RpcContext, RpcStatusCode, UnarySink};

use crate::apis::call::{application_status, Call};
use crate::apis::offer::{Api, ApiOffer, DependsOn, ServingContext};
use crate::proto::{
    create_resource_v1_proto, grpc_api, service_names, Empty, ResourceV1, ResourceV1IdInput,
    ResourceV1Output, ResourceV1Proto, ResourcesV1, StatusOutput,
};
use crate::store::{Pending, Resource, ResourceStore};

/// The service's name, as health checking and reflection report it.
pub const NAME: &str = service_names::RESOURCE_V1_PROTO;

/// The resource API, version 1, over a shared store.
#[derive(Clone)]
pub struct ResourceV1Api {
    store: Arc<dyn ResourceStore>,
    max_name_bytes: usize,
}

impl ResourceV1Api {
    /// The API over `store`, refusing names longer than `max_name_bytes`.
    pub fn new(store: Arc<dyn ResourceStore>, max_name_bytes: usize) -> Self {
        Self {
            store,
            max_name_bytes,
        }
    }

    /// Why `name` cannot be stored, if it cannot.
    fn check_name(&self, name: &str) -> Result<(), String> {
        super::check_name(name, self.max_name_bytes)
    }
}

/// Always served, over the store; every call needs the store, so it is ready while the store
/// is.
pub fn offer(serving: &ServingContext<'_>) -> ApiOffer {
    let api = ResourceV1Api::new(
        Arc::clone(serving.resources),
        serving.options.max_name_bytes,
    );
    ApiOffer::Served(Api {
        name: NAME,
        service: create_resource_v1_proto(api),
        file: grpc_api::file_descriptor(),
        depends_on: DependsOn::Store,
    })
}

fn to_message(resource: Resource) -> ResourceV1 {
    let mut message = ResourceV1::new();
    message.id = resource.id;
    message.owner_id = resource.owner_id;
    message.name = resource.name;
    message
}

/// An answer with a status and, when there is one, the resource.
fn output(code: u32, text: &str, resource: Option<Resource>) -> ResourceV1Output {
    let mut answer = ResourceV1Output::new();
    answer.status = Some(application_status(code, text)).into();
    answer.resource = resource.map(to_message).into();
    answer
}

fn found_or_not(resource: Option<Resource>) -> ResourceV1Output {
    match resource {
        Some(resource) => output(200, "OK", Some(resource)),
        None => output(404, "Not Found", None),
    }
}

/// Answers with what the store's `pending` result comes to (v1 answers every outcome with OK).
fn answer_ok_from_store<T, R>(
    call: Call,
    ctx: &RpcContext,
    sink: UnarySink<R>,
    pending: Pending<T>,
    to_answer: impl FnOnce(T) -> R + Send + 'static,
) where
    T: Send + 'static,
    R: Send + 'static,
{
    super::answer_from_store(call, ctx, sink, pending, move |done| Ok(to_answer(done)));
}

impl ResourceV1Proto for ResourceV1Api {
    fn list(&mut self, ctx: RpcContext, _req: Empty, sink: UnarySink<ResourcesV1>) {
        let call = Call::start(&ctx);
        answer_ok_from_store(call, &ctx, sink, self.store.list(), |resources| {
            let mut answer = ResourcesV1::new();
            answer.status = Some(application_status(200, "OK")).into();
            answer.resources = resources.into_iter().map(to_message).collect();
            answer
        });
    }

    fn get(&mut self, ctx: RpcContext, req: ResourceV1IdInput, sink: UnarySink<ResourceV1Output>) {
        let call = Call::start(&ctx);
        answer_ok_from_store(call, &ctx, sink, self.store.get(req.id), found_or_not);
    }

    fn create(&mut self, ctx: RpcContext, req: ResourceV1, sink: UnarySink<ResourceV1Output>) {
        let call = Call::start(&ctx);
        if let Err(why) = self.check_name(&req.name) {
            return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why);
        }
        // The caller's id is ignored: the store assigns ids.
        let created = self.store.create(req.owner_id, req.name);
        answer_ok_from_store(call, &ctx, sink, created, |created| {
            output(201, "Created", Some(created))
        });
    }

    fn modify(&mut self, ctx: RpcContext, req: ResourceV1, sink: UnarySink<ResourceV1Output>) {
        let call = Call::start(&ctx);
        if let Err(why) = self.check_name(&req.name) {
            return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why);
        }
        let renamed = self.store.rename(req.id, req.name);
        answer_ok_from_store(call, &ctx, sink, renamed, found_or_not);
    }

    fn remove(&mut self, ctx: RpcContext, req: ResourceV1IdInput, sink: UnarySink<StatusOutput>) {
        let call = Call::start(&ctx);
        answer_ok_from_store(call, &ctx, sink, self.store.remove(req.id), |removed| {
            // 401 is the original's code for a successful removal; kept so its clients see the
            // same.
            if removed {
                application_status(401, "Removed")
            } else {
                application_status(410, "Gone")
            }
        });
    }
}
