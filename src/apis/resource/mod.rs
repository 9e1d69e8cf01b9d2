//! The resource API. Versions share the store, so a resource created through one is seen by all.

pub mod v1;
pub mod v2;

use grpcio::{RpcContext, RpcStatus, UnarySink};

use crate::apis::call::{store_status, Call};
use crate::eventually::Eventually;
use crate::store::Pending;

/// Answers with what the store's `pending` result comes to, through `to_answer` (an answer, or
/// an error status): at once when the store has already answered (memory), else when it does (a
/// database's commit), without holding the thread.
fn answer_from_store<T, R>(
    call: Call,
    ctx: &RpcContext,
    sink: UnarySink<R>,
    pending: Pending<T>,
    to_answer: impl FnOnce(T) -> Result<R, RpcStatus> + Send + 'static,
) where
    T: Send + 'static,
    R: Send + 'static,
{
    let answer =
        Eventually::of(pending).map(|done| done.map_err(|e| store_status(&e)).and_then(to_answer));
    call.answer(ctx, sink, answer);
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
