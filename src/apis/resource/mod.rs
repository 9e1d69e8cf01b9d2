//! The resource API. Versions share the store, so a resource created through one is seen by all.

pub mod v1;
pub mod v2;

use futures::FutureExt as _;
use grpcio::{RpcContext, RpcStatus, UnarySink};

use crate::apis::Call;
use crate::store::{Pending, StoreError};

/// The gRPC status a store's refusal is answered with.
fn store_status(error: &StoreError) -> RpcStatus {
    let code = match error {
        StoreError::Full { .. } => grpcio::RpcStatusCode::RESOURCE_EXHAUSTED,
        StoreError::Unstorable(_) => grpcio::RpcStatusCode::INVALID_ARGUMENT,
        StoreError::Unavailable { .. } => grpcio::RpcStatusCode::UNAVAILABLE,
    };
    RpcStatus::with_message(code, error.to_string())
}

/// Answers with what the store's `pending` result comes to, through `to_answer` (an answer, or
/// an error status): at once when the store has already answered (memory), else when it does (a
/// database's commit), without holding the thread.
fn answer<T, R>(
    call: Call,
    ctx: &RpcContext,
    sink: UnarySink<R>,
    mut pending: Pending<T>,
    to_answer: impl FnOnce(T) -> Result<R, RpcStatus> + Send + 'static,
) where
    T: Send + 'static,
    R: Send + 'static,
{
    match (&mut pending).now_or_never() {
        Some(done) => match done.map_err(|e| store_status(&e)).and_then(to_answer) {
            Ok(answer) => call.reply(ctx, sink, answer),
            Err(status) => call.fail(ctx, sink, status.code(), status.message().to_owned()),
        },
        None => call.answer_later(ctx, sink, async move {
            pending
                .await
                .map_err(|e| store_status(&e))
                .and_then(to_answer)
        }),
    }
}

/// Why `name` cannot be stored, if it is longer than `max_bytes`.
fn check_name(name: &str, max_bytes: usize) -> Result<(), String> {
    if name.len() > max_bytes {
        return Err(format!(
            "the name is {} bytes long; the limit is {max_bytes} bytes",
            name.len()
        ));
    }
    Ok(())
}
