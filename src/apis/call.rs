//! One call as the request log and the metrics see it, and the ways a handler answers it. With
//! the `request` log target at debug (`RUST_LOG=info,request=debug`), each call gets one line
//! when its answer has gone out: method, peer, gRPC status, duration. With metrics on (the
//! server's `--metrics-listen`), each call is counted by method and status, timed, and its
//! messages counted ([`crate::metrics`] keeps the series).

use std::time::Instant;

use futures::FutureExt as _;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};

use crate::eventually::Eventually;
pub use crate::metrics::Kind;
use crate::metrics::{self, CallMeter};
use crate::proto::StatusOutput;
use crate::status::status_name;
use crate::store_error::{StoreError, StoreErrorKind};
use crate::tokens::TokenVerifier;

/// The log target of request lines.
pub const TARGET: &str = "request";

/// A call being handled. Nothing is allocated when request logging and metrics are off.
pub struct Call {
    log: Option<Started>,
    metered: Option<CallMeter>,
}

struct Started {
    method: String,
    peer: String,
    at: Instant,
}

impl Call {
    /// Starts timing the unary call `ctx` carries.
    pub fn start(ctx: &RpcContext) -> Self {
        Self::start_kind(ctx, Kind::Unary)
    }

    /// Starts timing the streaming call `ctx` carries; it counts as open until it ends.
    pub fn start_stream(ctx: &RpcContext, kind: Kind) -> Self {
        Self::start_kind(ctx, kind)
    }

    fn start_kind(ctx: &RpcContext, kind: Kind) -> Self {
        let log = log::log_enabled!(target: TARGET, log::Level::Debug).then(|| Started {
            method: String::from_utf8_lossy(ctx.method()).into_owned(),
            peer: ctx.peer(),
            at: Instant::now(),
        });
        let metered = metrics::enabled().then(|| CallMeter::start(ctx.method(), kind));
        Self { log, metered }
    }

    /// Counts a message a stream received.
    pub fn received(&self) {
        if let Some(metered) = &self.metered {
            metered.received();
        }
    }

    /// Counts a message a stream sent.
    pub fn sent(&self) {
        if let Some(metered) = &self.metered {
            metered.sent();
        }
    }

    /// Sends a unary answer with status OK.
    pub fn reply<T: Send + 'static>(self, ctx: &RpcContext, sink: UnarySink<T>, answer: T) {
        // The result must be kept until the answer is sent: dropping it unrefs the call, and the
        // core cancels a call its server lets go of before the final batch completes.
        let sent = sink.success(answer);
        ctx.spawn(sent.map(move |sent| self.finish(sent.map(|()| RpcStatusCode::OK))));
    }

    /// Answers with a gRPC error status: for requests the API cannot serve at all (invalid
    /// arguments, exhausted limits), as opposed to application statuses inside an answer.
    pub fn fail<T>(
        self,
        ctx: &RpcContext,
        sink: UnarySink<T>,
        code: RpcStatusCode,
        message: String,
    ) {
        self.fail_with(ctx, sink, RpcStatus::with_message(code, message));
    }

    fn fail_with<T>(self, ctx: &RpcContext, sink: UnarySink<T>, status: RpcStatus) {
        let code = status.code();
        self.log_refusal(code, status.message());
        let sent = sink.fail(status);
        ctx.spawn(sent.map(move |sent| self.finish(sent.map(|()| code))));
    }

    /// Answers with `answer`, an answer with status OK or an error status: at once when it is
    /// ready, else when it is, without holding up the completion queue meanwhile (a commit to a
    /// database, a key set reloading). Every unary handler whose answer may wait ends here.
    pub fn answer<T: Send + 'static>(
        self,
        ctx: &RpcContext,
        sink: UnarySink<T>,
        answer: Eventually<Result<T, RpcStatus>>,
    ) {
        match answer {
            Eventually::Now(Ok(answer)) => self.reply(ctx, sink, answer),
            Eventually::Now(Err(status)) => self.fail_with(ctx, sink, status),
            Eventually::Later(answer) => self.answer_later(ctx, sink, answer),
        }
    }

    fn answer_later<T, F>(self, ctx: &RpcContext, sink: UnarySink<T>, answer: F)
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, RpcStatus>> + Send + 'static,
    {
        ctx.spawn(async move {
            match answer.await {
                Ok(answer) => {
                    let sent = sink.success(answer).await;
                    self.finish(sent.map(|()| RpcStatusCode::OK));
                }
                Err(status) => {
                    let code = status.code();
                    self.log_refusal(code, status.message());
                    let sent = sink.fail(status).await;
                    self.finish(sent.map(|()| code));
                }
            }
        });
    }

    fn log_refusal(&self, code: RpcStatusCode, message: &str) {
        if let Some(started) = &self.log {
            log::debug!(
                target: TARGET,
                "{}: answering {}: {message}",
                started.method,
                status_name(code)
            );
        }
    }

    /// Logs the end of the call: the status sent, or why nothing could be sent (typically the
    /// caller went away: cancelled, or its deadline passed).
    pub fn finish(self, outcome: grpcio::Result<RpcStatusCode>) {
        if let Some(metered) = &self.metered {
            metered.finish(match &outcome {
                Ok(code) => *code,
                Err(grpcio::Error::RpcFinished(Some(status))) => status.code(),
                Err(_) => RpcStatusCode::CANCELLED,
            });
        }
        let Some(started) = self.log else { return };
        let millis = started.at.elapsed().as_secs_f64() * 1000.0;
        let outcome = match outcome {
            Ok(code) => status_name(code),
            Err(grpcio::Error::RpcFinished(Some(status))) => {
                format!("{} (ended by the caller)", status_name(status.code()))
            }
            Err(e) => format!("not delivered: {e}"),
        };
        log::debug!(
            target: TARGET,
            "{} from {}: {outcome} in {millis:.3} ms",
            started.method,
            started.peer
        );
    }
}

/// The gRPC status a store's refusal is answered with, for every API over a store.
pub(crate) fn store_status(error: &StoreError) -> RpcStatus {
    let code = match error.kind() {
        StoreErrorKind::Full { .. } => RpcStatusCode::RESOURCE_EXHAUSTED,
        StoreErrorKind::Unstorable { .. } => RpcStatusCode::INVALID_ARGUMENT,
        StoreErrorKind::Unavailable { .. } => RpcStatusCode::UNAVAILABLE,
    };
    RpcStatus::with_message(code, error.to_string())
}

/// The application status carried inside an answer, as the original sends it.
pub(crate) fn application_status(code: u32, message: &str) -> StatusOutput {
    let mut status = StatusOutput::new();
    status.code = code;
    status.message = message.to_owned();
    status
}

/// Why an API over the token verifier cannot answer yet, or None once a key set has loaded.
pub(crate) fn keys_not_loaded(verifier: &TokenVerifier, api: &str) -> Option<String> {
    (!verifier.ready()).then(|| {
        format!(
            "no identity provider's signing keys have loaded yet ({}); health checking \
             reports {api} NOT_SERVING until one has",
            verifier.describe_providers().join(", ")
        )
    })
}
