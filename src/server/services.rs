//! The services a server registers, from the APIs' registry ([`apis::CONTRACT`]) and the
//! standard services beside them (health checking, reflection): health checking reports each
//! API as what it depends on is, reflection describes them all, and the start-up line names
//! them (the metrics count each call by its method, whatever the API). Nothing here names an
//! API.

use crate::apis::health::HealthRegistry;
use crate::apis::reflection::{Descriptors, ReflectionApi};
use crate::apis::{self, Api, ApiOffer, DependsOn, ServingContext};
use crate::availability::Availability;
use crate::proto::health::v1::health_check_response::ServingStatus;

/// What a server serves, and what it does not.
pub(super) struct Services {
    /// The contract's APIs served, in registry order; health checking reports each one.
    pub apis: Vec<Api>,
    /// Health checking, and reflection unless turned off: registered after the APIs, not
    /// reported by health checking themselves (as gRPC's own servers do).
    pub standard: Vec<Api>,
    /// `NAME not served (WHY)`, for the start-up line.
    pub not_served: Vec<String>,
}

/// What an API's readiness can follow.
pub(super) struct Readiness {
    /// Whether the store's database answers.
    pub store: Availability,
    /// Whether the token service's keys have loaded (down when there is no token service).
    pub keys: Availability,
}

impl Services {
    /// Every API of the contract that `serving` serves, then health checking over `health`, and
    /// reflection when asked for.
    pub fn offer(serving: &ServingContext<'_>, health: &HealthRegistry, reflection: bool) -> Self {
        let mut apis = Vec::new();
        let mut not_served = Vec::new();
        for offer in apis::CONTRACT {
            match offer(serving) {
                ApiOffer::Served(api) => apis.push(api),
                ApiOffer::NotServed { name, why } => {
                    not_served.push(format!("{name} not served ({why})"))
                }
            }
        }
        let mut standard = vec![health.api()];
        if reflection {
            let described: Vec<&Api> = apis.iter().chain(&standard).collect();
            standard.extend(ReflectionApi::apis(Descriptors::of(&described)));
        }
        Self {
            apis,
            standard,
            not_served,
        }
    }

    /// Has `health` report each API as what it depends on is: at once, and on every change
    /// (until shutdown, when everything is NOT_SERVING for good).
    pub fn follow(&self, health: &HealthRegistry, readiness: &Readiness) {
        health.set("", ServingStatus::SERVING);
        for api in &self.apis {
            let follows = match api.depends_on {
                DependsOn::Nothing => {
                    health.set(api.name, ServingStatus::SERVING);
                    continue;
                }
                DependsOn::Store => &readiness.store,
                DependsOn::Keys => &readiness.keys,
            };
            let (health, name) = (health.clone(), api.name);
            follows.watch(move |up| health.follow(name, up));
        }
    }

    /// The contract's APIs served, in order, with what each one's health follows.
    pub fn served(&self) -> Vec<(&'static str, DependsOn)> {
        self.apis
            .iter()
            .map(|api| (api.name, api.depends_on))
            .collect()
    }

    /// The names of every service registered, the standard ones last.
    pub fn names(&self) -> Vec<&'static str> {
        self.apis
            .iter()
            .chain(&self.standard)
            .map(|api| api.name)
            .collect()
    }

    /// Every service, to register, in order.
    pub fn into_registered(self) -> impl Iterator<Item = Api> {
        self.apis.into_iter().chain(self.standard)
    }
}
