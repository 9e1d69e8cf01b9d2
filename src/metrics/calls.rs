//! What each gRPC call records, under the names the established gRPC exporters use: started,
//! handled by status and timed, messages received and sent, streams open. Each method's series
//! are resolved once and kept per thread, so a call costs a map lookup and a few atomic
//! additions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use grpcio::RpcStatusCode;
use prometheus::{Histogram, IntCounter, IntGauge};

use super::get;
use crate::status::status_name;

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

/// One call being counted, from its start to [`CallMeter::finish`].
pub struct CallMeter {
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

impl CallMeter {
    /// Counts the start of a call of the method at `path` (`/Service/Method`).
    pub fn start(path: &[u8], kind: Kind) -> Self {
        let method = MethodMetrics::of(path, kind);
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
        Self {
            method,
            at: Instant::now(),
            _open: open,
        }
    }

    /// Counts a message a stream received.
    pub fn received(&self) {
        self.method.received.inc();
    }

    /// Counts a message a stream sent.
    pub fn sent(&self) {
        self.method.sent.inc();
    }

    /// Counts the end of the call, with the status it ended with, and its time.
    pub fn finish(&self, code: RpcStatusCode) {
        if code == RpcStatusCode::OK && self.method.kind == Kind::Unary {
            self.method.sent.inc();
        }
        self.method.handled(code, self.at.elapsed().as_secs_f64());
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
        let m = get();
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
            let m = get();
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
