//! `ResourceV1Proto`: list, get, create, modify (rename) and remove resources in a store.

use std::sync::Arc;

use grpcio::{RpcContext, RpcStatusCode, UnarySink};

use crate::apis::{status, ApiService, Call};
use crate::proto::{
    create_resource_v1_proto, Empty, ResourceV1, ResourceV1IdInput, ResourceV1Output,
    ResourceV1Proto, ResourcesV1, StatusOutput,
};
use crate::store::{Resource, ResourceStore};

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
        if name.len() > self.max_name_bytes {
            return Err(format!(
                "the name is {} bytes long; the limit is {} bytes",
                name.len(),
                self.max_name_bytes
            ));
        }
        Ok(())
    }
}

/// The service to register on a server, over `store`, refusing names longer than
/// `max_name_bytes`.
pub fn service(store: Arc<dyn ResourceStore>, max_name_bytes: usize) -> ApiService {
    ApiService {
        name: "ResourceV1Proto",
        service: create_resource_v1_proto(ResourceV1Api::new(store, max_name_bytes)),
    }
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
    answer.status = Some(status(code, text)).into();
    answer.resource = resource.map(to_message).into();
    answer
}

fn found_or_not(resource: Option<Resource>) -> ResourceV1Output {
    match resource {
        Some(resource) => output(200, "OK", Some(resource)),
        None => output(404, "Not Found", None),
    }
}

impl ResourceV1Proto for ResourceV1Api {
    fn list(&mut self, ctx: RpcContext, _req: Empty, sink: UnarySink<ResourcesV1>) {
        let call = Call::start(&ctx);
        let mut answer = ResourcesV1::new();
        answer.status = Some(status(200, "OK")).into();
        answer.resources = self.store.list().into_iter().map(to_message).collect();
        call.reply(&ctx, sink, answer);
    }

    fn get(&mut self, ctx: RpcContext, req: ResourceV1IdInput, sink: UnarySink<ResourceV1Output>) {
        let call = Call::start(&ctx);
        call.reply(&ctx, sink, found_or_not(self.store.get(req.id)));
    }

    fn create(&mut self, ctx: RpcContext, req: ResourceV1, sink: UnarySink<ResourceV1Output>) {
        let call = Call::start(&ctx);
        if let Err(why) = self.check_name(&req.name) {
            return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why);
        }
        // The caller's id is ignored: the store assigns ids.
        match self.store.create(req.owner_id, req.name) {
            Ok(created) => call.reply(&ctx, sink, output(201, "Created", Some(created))),
            Err(full) => call.fail(
                &ctx,
                sink,
                RpcStatusCode::RESOURCE_EXHAUSTED,
                full.to_string(),
            ),
        }
    }

    fn modify(&mut self, ctx: RpcContext, req: ResourceV1, sink: UnarySink<ResourceV1Output>) {
        let call = Call::start(&ctx);
        if let Err(why) = self.check_name(&req.name) {
            return call.fail(&ctx, sink, RpcStatusCode::INVALID_ARGUMENT, why);
        }
        call.reply(
            &ctx,
            sink,
            found_or_not(self.store.rename(req.id, req.name)),
        );
    }

    fn remove(&mut self, ctx: RpcContext, req: ResourceV1IdInput, sink: UnarySink<StatusOutput>) {
        let call = Call::start(&ctx);
        // 401 is the original's code for a successful removal; kept so its clients see the same.
        let answer = if self.store.remove(req.id) {
            status(401, "Removed")
        } else {
            status(410, "Gone")
        };
        call.reply(&ctx, sink, answer);
    }
}
