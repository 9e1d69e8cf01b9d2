//! Ending long-lived streams: when the server shuts down, a stream that would otherwise stay open
//! as long as its client wants stops reading, answers what it has read, and ends with
//! UNAVAILABLE, so that its client opens a new one, on another replica if there is one; and a
//! stream whose client sent a message that does not decode ends with INTERNAL naming its type,
//! as a unary call does; and how many long-lived streams one connection may hold open.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
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

/// Most token streams (`ValidateStream`, `ValidateBatches`) one connection may have open at once
/// unless told otherwise. One stream carries any number of questions (the validator apps embed
/// opens one per server); each open stream may hold a question the transport has read ahead
/// of it, so this is what bounds a single connection's share of memory.
pub const DEFAULT_STREAMS_PER_CONNECTION: usize = 8;

/// The long-lived streams open on each connection (known by its peer address, which is the
/// connection's own), at most `limit` each.
pub struct StreamsPerConnection {
    limit: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl StreamsPerConnection {
    /// None open, at most `limit` a connection.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more stream on the connection `peer`, or refuses it: the connection has
    /// `limit` open.
    pub fn open(self: &Arc<Self>, peer: String) -> Result<OpenStream, TooManyStreams> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer.clone()).or_insert(0);
        if *count >= self.limit {
            return Err(TooManyStreams { limit: self.limit });
        }
        *count += 1;
        Ok(OpenStream {
            streams: Arc::clone(self),
            peer,
        })
    }
}

/// Why a stream may not open: its connection has as many token streams open as one may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyStreams {
    /// The most a connection may have open.
    pub limit: usize,
}

impl std::fmt::Display for TooManyStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this connection has {} token streams open, the most this server allows one \
             connection (--max-token-streams-per-connection); one stream carries any number \
             of questions: send them over the streams open",
            self.limit
        )
    }
}

impl std::error::Error for TooManyStreams {}

/// A stream counted on its connection until dropped.
pub struct OpenStream {
    streams: Arc<StreamsPerConnection>,
    peer: String,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_opens_up_to_its_limit_and_a_closed_stream_makes_room() {
        let streams = StreamsPerConnection::new(2);
        let a1 = streams.open("ipv4:10.0.0.1:1".into()).expect("one");
        let _a2 = streams.open("ipv4:10.0.0.1:1".into()).expect("two");
        let refused = streams.open("ipv4:10.0.0.1:1".into()).err().expect("three");
        assert_eq!(refused, TooManyStreams { limit: 2 });
        let _b = streams
            .open("ipv4:10.0.0.1:2".into())
            .expect("another connection");
        drop(a1);
        let _a3 = streams.open("ipv4:10.0.0.1:1".into()).expect("room again");
        drop(_a3);
        drop(_a2);
        drop(_b);
        assert!(
            streams.open.lock().unwrap().is_empty(),
            "no count left behind"
        );
    }
}
