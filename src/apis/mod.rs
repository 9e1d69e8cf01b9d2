//! One module per API and version, as in the original: `greeting::v1`, `greeting::v2`, `healthz`,
//! `resource::v1`. Each implements a generated service trait and knows nothing of transport.

pub mod greeting;
pub mod healthz;
pub mod resource;

use futures::FutureExt as _;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};

use crate::proto::StatusOutput;

/// Sends a unary answer. A failure here means the caller went away (cancelled, deadline passed),
/// which is worth a debug line, not an error.
pub(crate) fn reply<T: Send + 'static>(ctx: &RpcContext, sink: UnarySink<T>, answer: T) {
    let method = String::from_utf8_lossy(ctx.method()).into_owned();
    ctx.spawn(sink.success(answer).map(move |sent| {
        if let Err(e) = sent {
            log::debug!("{method}: answer not delivered: {e}");
        }
    }));
}

/// Answers with a gRPC error status: for requests the API cannot serve at all (invalid
/// arguments, exhausted limits), as opposed to application statuses inside an answer.
pub(crate) fn fail<T>(ctx: &RpcContext, sink: UnarySink<T>, code: RpcStatusCode, message: String) {
    let method = String::from_utf8_lossy(ctx.method()).into_owned();
    log::debug!("{method}: answering {code:?}: {message}");
    ctx.spawn(
        sink.fail(RpcStatus::with_message(code, message))
            .map(move |sent| {
                if let Err(e) = sent {
                    log::debug!("{method}: error not delivered: {e}");
                }
            }),
    );
}

/// The application status carried inside an answer, as the original sends it.
pub(crate) fn status(code: u32, message: &str) -> StatusOutput {
    let mut status = StatusOutput::new();
    status.code = code;
    status.message = message.to_owned();
    status
}
