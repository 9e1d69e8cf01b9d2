//! One call as the request log sees it, and the ways a handler answers it. With the `request`
//! log target at debug (`RUST_LOG=info,request=debug`), each call gets one line when its answer
//! has gone out: method, peer, gRPC status, duration.

use std::time::Instant;

use futures::FutureExt as _;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};

/// The log target of request lines.
pub const TARGET: &str = "request";

/// The name of a status code as gRPC spells it, e.g. `INVALID_ARGUMENT` (grpcio's own formats
/// prefix the number).
pub fn status_name(code: RpcStatusCode) -> String {
    let text = code.to_string();
    match text.split_once('-') {
        Some((_, name)) => name.to_owned(),
        None => text,
    }
}

/// A call being handled. Nothing is allocated when request logging is off.
pub struct Call(Option<Started>);

struct Started {
    method: String,
    peer: String,
    at: Instant,
}

impl Call {
    /// Starts timing the call `ctx` carries.
    pub fn start(ctx: &RpcContext) -> Self {
        if !log::log_enabled!(target: TARGET, log::Level::Debug) {
            return Self(None);
        }
        Self(Some(Started {
            method: String::from_utf8_lossy(ctx.method()).into_owned(),
            peer: ctx.peer(),
            at: Instant::now(),
        }))
    }

    /// Sends a unary answer with status OK.
    pub fn reply<T: Send + 'static>(self, ctx: &RpcContext, sink: UnarySink<T>, answer: T) {
        // The result must be kept until the answer is sent: dropping it unrefs the call, and the
        // core cancels a call its server lets go of before the final batch completes.
        let sent = sink.success(answer);
        ctx.spawn(sent.map(move |sent| self.finish(sent.map(|()| RpcStatusCode::OK))));
    }

    /// Sends the unary answer `answer` resolves to, with status OK: for an answer that waits on
    /// something (a key set load) without holding up the completion queue meanwhile.
    pub fn reply_later<T, F>(self, ctx: &RpcContext, sink: UnarySink<T>, answer: F)
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        ctx.spawn(async move {
            let sent = sink.success(answer.await).await;
            self.finish(sent.map(|()| RpcStatusCode::OK));
        });
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
        if let Some(started) = &self.0 {
            log::debug!(
                target: TARGET,
                "{}: answering {}: {message}",
                started.method,
                status_name(code)
            );
        }
        let sent = sink.fail(RpcStatus::with_message(code, message));
        ctx.spawn(sent.map(move |sent| self.finish(sent.map(|()| code))));
    }

    /// Logs the end of the call: the status sent, or why nothing could be sent (typically the
    /// caller went away: cancelled, or its deadline passed).
    pub fn finish(self, outcome: grpcio::Result<RpcStatusCode>) {
        let Some(started) = self.0 else { return };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_grpcs() {
        assert_eq!(status_name(RpcStatusCode::OK), "OK");
        assert_eq!(
            status_name(RpcStatusCode::INVALID_ARGUMENT),
            "INVALID_ARGUMENT"
        );
    }
}
