//! `envoy.service.auth.v3.Authorization`: `Check` judges the request Envoy describes, by its
//! `authorization` header's Bearer token and the route's `scope` context extension. The answer
//! is a `CheckResponse` for every decision Envoy acts on (allow, 401, 403, 400); a token that
//! cannot be judged now fails the call UNAVAILABLE, so that Envoy applies its own
//! `failure_mode_allow` / `status_on_error`.

use std::sync::Arc;

use grpcio::{
    GrpcSlice, Marshaller, Method, MethodType, RpcContext, RpcStatus, RpcStatusCode,
    ServiceBuilder, UnarySink,
};

use super::question::{self, CheckRequestFields};
use super::response;
use crate::apis::call::{keys_not_loaded, Call};
use crate::apis::offer::{Api, ApiOffer, DependsOn, ServingContext};
use crate::authz::{credential, AuthzPolicy, Decision};
use crate::metrics::{self, Transport};
use crate::proto::ext_authz::v3::{external_auth, service_names, CheckResponse};
use crate::tokens::TokenVerifier;

/// The name health checking and reflection know the service by.
pub const NAME: &str = service_names::AUTHORIZATION;

/// `Check`, its request read by [`question::decode`] (only what the decision needs), its
/// response encoded as generated.
const CHECK: Method<CheckRequestFields, CheckResponse> = Method {
    ty: MethodType::Unary,
    name: "/envoy.service.auth.v3.Authorization/Check",
    req_mar: Marshaller {
        ser: never_sent,
        de: question::decode,
    },
    resp_mar: Marshaller {
        ser: grpcio::pb_ser,
        de: crate::codec::decode,
    },
};

/// A server only reads requests.
fn never_sent(_: &CheckRequestFields, _: &mut GrpcSlice) -> grpcio::Result<()> {
    Err(grpcio::Error::Codec(
        "a server sends no CheckRequest".into(),
    ))
}

/// The authorization service.
#[derive(Clone)]
struct ExtAuthzApi {
    verifier: Arc<TokenVerifier>,
    policy: Arc<AuthzPolicy>,
}

/// Served whenever the token service is (the same verifier, cache and revocations), ready once
/// the keys have loaded.
pub fn offer(serving: &ServingContext<'_>) -> ApiOffer {
    let Some(verifier) = serving.verifier else {
        return ApiOffer::NotServed {
            name: NAME,
            why: "no identity provider: --oidc-issuer, --jwks-file or --jwks-url, or --config",
        };
    };
    let api = ExtAuthzApi {
        verifier: Arc::clone(verifier),
        policy: Arc::new(serving.policy.clone()),
    };
    let service = ServiceBuilder::new()
        .add_unary_handler(&CHECK, move |ctx, question, sink| {
            api.check(&ctx, question, sink)
        })
        .build();
    ApiOffer::Served(Api {
        name: NAME,
        service,
        file: external_auth::file_descriptor(),
        depends_on: DependsOn::Keys,
    })
}

impl ExtAuthzApi {
    fn check(
        &self,
        ctx: &RpcContext,
        question: CheckRequestFields,
        sink: UnarySink<CheckResponse>,
    ) {
        let call = Call::start(ctx);
        if !question.http {
            return call.fail(
                ctx,
                sink,
                RpcStatusCode::INVALID_ARGUMENT,
                "the CheckRequest has no attributes.request.http: Check judges HTTP requests"
                    .to_owned(),
            );
        }
        if let Some(why) = keys_not_loaded(&self.verifier, NAME) {
            return call.fail(ctx, sink, RpcStatusCode::UNAVAILABLE, why);
        }
        let scope = match question.scope.as_deref().map(std::str::from_utf8) {
            None => "",
            Some(Ok(scope)) => scope,
            Some(Err(_)) => {
                return call.fail(
                    ctx,
                    sink,
                    RpcStatusCode::INVALID_ARGUMENT,
                    "the scope context extension is not UTF-8".to_owned(),
                )
            }
        };
        let required = match AuthzPolicy::required_scopes([scope]) {
            Ok(required) => required,
            Err(refused) => {
                return call.fail(
                    ctx,
                    sink,
                    RpcStatusCode::INVALID_ARGUMENT,
                    refused.to_string(),
                )
            }
        };
        let authorization: Vec<&[u8]> = question.authorization.iter().map(Vec::as_slice).collect();
        let credential = credential(&authorization);
        let presented = question.presentation(credential.is_dpop());
        let routes = self.policy.routes.current();
        let decision = if routes.in_use() {
            let request = question.request_facts(routes.read_headers());
            self.policy.judge_request(
                &routes,
                &self.verifier,
                credential,
                presented,
                &required,
                &request,
            )
        } else {
            self.policy
                .judge(&self.verifier, credential, presented, &required)
        };
        call.answer(ctx, sink, decision.map(check_response));
    }
}

/// The response to `decision`, or the status of a call that cannot be judged now.
fn check_response(decision: Decision) -> Result<CheckResponse, RpcStatus> {
    metrics::authz_decision(Transport::ExtAuthz, decision.label(), decision.left_out());
    match decision {
        Decision::Allow { set, remove, .. } => Ok(response::allowed(set, remove)),
        Decision::Deny {
            denial,
            www_authenticate,
            reason,
            dpop_nonce,
        } => Ok(response::denied(
            denial,
            www_authenticate,
            reason,
            dpop_nonce,
        )),
        Decision::CannotJudge { reason } => Err(RpcStatus::with_message(
            RpcStatusCode::UNAVAILABLE,
            format!("cannot judge the token now: {reason}"),
        )),
    }
}
