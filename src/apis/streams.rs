//! Ending long-lived streams: when the server shuts down, a stream that would otherwise stay open
//! as long as its client wants stops reading, answers what it has read, and ends with
//! UNAVAILABLE, so that its client opens a new one, on another replica if there is one; and a
//! stream whose client sent a message that does not decode ends with INTERNAL naming its type,
//! as a unary call does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::oneshot;
use futures::future::{FutureExt as _, Shared};
use grpcio::{RpcStatus, RpcStatusCode};

/// Makes the pair: the trigger the server keeps, and the signal every stream watches.
pub fn streams_end() -> (EndStreams, StreamsEnd) {
    let (trigger, signal) = oneshot::channel();
    (EndStreams(trigger), StreamsEnd(signal.shared()))
}

/// Ends every stream watching the paired [`StreamsEnd`]; so does dropping it.
pub struct EndStreams(oneshot::Sender<()>);

impl EndStreams {
    /// Tells the streams to end now.
    pub fn now(self) {
        let _ = self.0.send(());
    }
}

/// Resolves when the server tells its streams to end. Clones watch the same signal.
#[derive(Clone)]
pub struct StreamsEnd(Shared<oneshot::Receiver<()>>);

impl Future for StreamsEnd {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Sent or dropped, the answer is the same: the server is going away.
        self.0.poll_unpin(cx).map(|_| ())
    }
}

/// The status to end a stream with after reading from it failed with `error`: INTERNAL with
/// the decoder's sentence (the message's size and type, never its content) when a message did
/// not decode; None when the call itself is gone (nothing can be sent on it).
pub fn read_failure(error: &grpcio::Error) -> Option<RpcStatus> {
    match error {
        grpcio::Error::Codec(why) => Some(RpcStatus::with_message(
            RpcStatusCode::INTERNAL,
            why.to_string(),
        )),
        _ => None,
    }
}
