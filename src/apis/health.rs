//! `grpc.health.v1.Health`, the standard health checking service that orchestrators and load
//! balancers probe (not to be confused with the original's own `healthz`). Every service of the
//! server, and the server as a whole (`""`), is SERVING while it runs and NOT_SERVING from the
//! moment a graceful shutdown begins; then Watch streams end, so they do not hold the shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::mpsc;
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{RpcContext, RpcStatusCode, ServerStreamingSink, UnarySink, WriteFlags};

use crate::apis::call::Call;
use crate::apis::call::Kind;
use crate::apis::offer::{Api, DependsOn};
use crate::proto::health::v1::{
    create_health, health, health_check_response::ServingStatus, service_names, Health,
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};

/// The fully qualified name of the service.
pub const NAME: &str = service_names::HEALTH;

/// The serving status of every service, shared by the health service and the server that
/// changes it. Clones share the same statuses.
#[derive(Clone, Default)]
pub struct HealthRegistry {
    state: Arc<Mutex<Statuses>>,
}

#[derive(Default)]
struct Statuses {
    statuses: BTreeMap<String, ServingStatus>,
    watchers: Vec<Watcher>,
    shut_down: bool,
}

struct Watcher {
    service: String,
    last: ServingStatus,
    updates: mpsc::UnboundedSender<ServingStatus>,
}

impl Statuses {
    /// Sends `status` to the watchers of `service` that have not seen it yet, and forgets the
    /// watchers whose callers went away.
    fn notify(&mut self, service: &str, status: ServingStatus) {
        self.watchers.retain_mut(|watcher| {
            if watcher.service == service && watcher.last != status {
                watcher.last = status;
                return watcher.updates.unbounded_send(status).is_ok();
            }
            !watcher.updates.is_closed()
        });
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    let mut response = HealthCheckResponse::new();
    response.status = status.into();
    response
}

impl HealthRegistry {
    /// A registry that knows no service yet.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while the lock was held cannot leave the map half-changed: safe to go on.
    fn state(&self) -> std::sync::MutexGuard<'_, Statuses> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the status of `service` (`""` for the server as a whole) and tells its watchers.
    /// Ignored once shut down: a server going away stays NOT_SERVING.
    pub fn set(&self, service: &str, status: ServingStatus) {
        let mut state = self.state();
        if state.shut_down {
            return;
        }
        state.statuses.insert(service.to_owned(), status);
        state.notify(service, status);
    }

    /// The status of `service`, if it is known.
    pub fn serving_status(&self, service: &str) -> Option<ServingStatus> {
        self.state().statuses.get(service).copied()
    }

    /// Marks every service NOT_SERVING for good, tells the watchers, and ends their streams.
    pub fn shut_down(&self) {
        let mut state = self.state();
        state.shut_down = true;
        let services: Vec<String> = state.statuses.keys().cloned().collect();
        for service in services {
            state
                .statuses
                .insert(service.clone(), ServingStatus::NOT_SERVING);
            state.notify(&service, ServingStatus::NOT_SERVING);
        }
        // Dropping the senders ends each stream once its last update has gone out.
        state.watchers.clear();
    }

    /// Sets the status of `service` to SERVING while `up`, NOT_SERVING otherwise.
    pub fn follow(&self, service: &str, up: bool) {
        let status = if up {
            ServingStatus::SERVING
        } else {
            ServingStatus::NOT_SERVING
        };
        self.set(service, status);
    }

    /// The service to register on a server, answering for these statuses.
    pub fn api(&self) -> Api {
        Api {
            name: NAME,
            service: create_health(self.clone()),
            file: health::file_descriptor(),
            depends_on: DependsOn::Nothing,
        }
    }
}

impl Health for HealthRegistry {
    fn check(
        &mut self,
        ctx: RpcContext,
        req: HealthCheckRequest,
        sink: UnarySink<HealthCheckResponse>,
    ) {
        let call = Call::start(&ctx);
        match self.serving_status(&req.service) {
            Some(status) => call.reply(&ctx, sink, response(status)),
            None => call.fail(
                &ctx,
                sink,
                RpcStatusCode::NOT_FOUND,
                format!("unknown service `{}`", req.service),
            ),
        }
    }

    fn list(
        &mut self,
        ctx: RpcContext,
        _req: HealthListRequest,
        sink: UnarySink<HealthListResponse>,
    ) {
        let call = Call::start(&ctx);
        let mut answer = HealthListResponse::new();
        answer.statuses = self
            .state()
            .statuses
            .iter()
            .map(|(service, status)| (service.clone(), response(*status)))
            .collect();
        call.reply(&ctx, sink, answer);
    }

    fn watch(
        &mut self,
        ctx: RpcContext,
        req: HealthCheckRequest,
        mut sink: ServerStreamingSink<HealthCheckResponse>,
    ) {
        let call = Call::start_stream(&ctx, Kind::ServerStream);
        call.received();
        let (updates, mut received) = mpsc::unbounded();
        {
            let mut state = self.state();
            let now = state
                .statuses
                .get(&req.service)
                .copied()
                .unwrap_or(ServingStatus::SERVICE_UNKNOWN);
            let _ = updates.unbounded_send(now);
            // After shut down, the stream ends with the first answer.
            if !state.shut_down {
                state.watchers.push(Watcher {
                    service: req.service,
                    last: now,
                    updates,
                });
            }
        }
        ctx.spawn(async move {
            let streamed: grpcio::Result<()> = async {
                while let Some(status) = received.next().await {
                    sink.send((response(status), WriteFlags::default())).await?;
                    call.sent();
                }
                sink.close().await
            }
            .await;
            call.finish(streamed.map(|()| RpcStatusCode::OK));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_set_and_read_until_shut_down() {
        let registry = HealthRegistry::new();
        assert_eq!(registry.serving_status(""), None);
        registry.set("", ServingStatus::SERVING);
        assert_eq!(registry.serving_status(""), Some(ServingStatus::SERVING));
        registry.shut_down();
        assert_eq!(
            registry.serving_status(""),
            Some(ServingStatus::NOT_SERVING)
        );
        registry.set("", ServingStatus::SERVING);
        assert_eq!(
            registry.serving_status(""),
            Some(ServingStatus::NOT_SERVING),
            "a server shutting down stays NOT_SERVING"
        );
    }
}
