//! One call as the request log and the metrics see it, and the ways a handler answers it. With
//! the `request` log target at debug (`RUST_LOG=info,request=debug`), each call gets one line
//! when its answer has gone out: method, peer, gRPC status, duration. With metrics on (the
//! server's `--metrics-listen`), each call is counted by method and status, timed, and its
//! messages counted, under the names the established gRPC exporters use.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use futures::FutureExt as _;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};
use prometheus::{Histogram, IntCounter, IntGauge};

use crate::metrics;

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

/// What kind of call, as the exporters' `grpc_type` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One request, one answer.
    Unary,
    /// One request, a stream of answers.
    ServerStream,
    /// Streams both ways.
    BidiStream,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ServerStream => "server_stream",
            Self::BidiStream => "bidi_stream",
        }
    }
}

/// A call being handled. Nothing is allocated when request logging and metrics are off.
pub struct Call {
    log: Option<Started>,
    metered: Option<Metered>,
}

struct Started {
    method: String,
    peer: String,
    at: Instant,
}

struct Metered {
    method: &'static MethodMetrics,
    at: Instant,
    /// Held while a stream is open; dropping it closes it in the gauge, however the call ends.
    _open: Option<OpenStream>,
}

struct OpenStream(IntGauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One method's series, resolved once: each call then costs one map lookup and atomic
/// additions, not a label lookup per series.
struct MethodMetrics {
    kind: Kind,
    labels: [String; 3],
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    open: IntGauge,
    /// By status code (0 to 16).
    handled: [OnceLock<(IntCounter, Histogram)>; 17],
}

impl MethodMetrics {
    fn new(path: &[u8], kind: Kind) -> Self {
        let path = String::from_utf8_lossy(path);
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", &path));
        let labels = [
            kind.label().to_owned(),
            service.to_owned(),
            method.to_owned(),
        ];
        let m = metrics::get();
        let call = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        Self {
            kind,
            started: m.grpc_started.with_label_values(&call),
            received: m.grpc_received.with_label_values(&call),
            sent: m.grpc_sent.with_label_values(&call),
            open: m.grpc_open_streams.with_label_values(&call),
            handled: Default::default(),
            labels,
        }
    }

    /// The series of the method at `path`, made on its first call. Each thread keeps its own
    /// map of them, so finding them writes nothing shared: a lock or a reference count taken
    /// per call would bounce its cache line between the completion-queue threads (measured with
    /// h2load). They live as long as the process; there is one per method served.
    fn of(path: &[u8], kind: Kind) -> &'static Self {
        thread_local! {
            static SEEN: RefCell<HashMap<Box<[u8]>, &'static MethodMetrics>> =
                RefCell::new(HashMap::new());
        }
        static MADE: LazyLock<Mutex<HashMap<Vec<u8>, &'static MethodMetrics>>> =
            LazyLock::new(Default::default);
        SEEN.with(|seen| {
            if let Some(found) = seen.borrow().get(path) {
                return *found;
            }
            let made = *MADE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(path.to_vec())
                .or_insert_with(|| Box::leak(Box::new(Self::new(path, kind))));
            seen.borrow_mut().insert(path.into(), made);
            made
        })
    }

    fn handled(&self, code: RpcStatusCode, seconds: f64) {
        let resolve = || {
            let [kind, service, method] = &self.labels;
            let name = status_name(code);
            let labels = [kind.as_str(), service, method, &name];
            let m = metrics::get();
            (
                m.grpc_handled.with_label_values(&labels),
                m.grpc_handling.with_label_values(&labels),
            )
        };
        let number = i32::from(code);
        match usize::try_from(number)
            .ok()
            .and_then(|n| self.handled.get(n))
        {
            Some(slot) => {
                let (count, time) = slot.get_or_init(resolve);
                count.inc();
                time.observe(seconds);
            }
            None => {
                let (count, time) = resolve();
                count.inc();
                time.observe(seconds);
            }
        }
    }
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
        let metered = metrics::enabled().then(|| {
            let method = MethodMetrics::of(ctx.method(), kind);
            method.started.inc();
            let open = match kind {
                Kind::Unary => {
                    method.received.inc();
                    None
                }
                Kind::ServerStream | Kind::BidiStream => {
                    method.open.inc();
                    Some(OpenStream(method.open.clone()))
                }
            };
            Metered {
                method,
                at: Instant::now(),
                _open: open,
            }
        });
        Self { log, metered }
    }

    /// Counts a message a stream received.
    pub fn received(&self) {
        if let Some(metered) = &self.metered {
            metered.method.received.inc();
        }
    }

    /// Counts a message a stream sent.
    pub fn sent(&self) {
        if let Some(metered) = &self.metered {
            metered.method.sent.inc();
        }
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
        self.log_refusal(code, &message);
        let sent = sink.fail(RpcStatus::with_message(code, message));
        ctx.spawn(sent.map(move |sent| self.finish(sent.map(|()| code))));
    }

    /// Sends what `answer` resolves to, an answer with status OK or an error status, without
    /// holding up the completion queue meanwhile (a commit to a database, say).
    pub fn answer_later<T, F>(self, ctx: &RpcContext, sink: UnarySink<T>, answer: F)
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
            let code = match &outcome {
                Ok(code) => *code,
                Err(grpcio::Error::RpcFinished(Some(status))) => status.code(),
                Err(_) => RpcStatusCode::CANCELLED,
            };
            if code == RpcStatusCode::OK && metered.method.kind == Kind::Unary {
                metered.method.sent.inc();
            }
            let seconds = metered.at.elapsed().as_secs_f64();
            metered.method.handled(code, seconds);
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
