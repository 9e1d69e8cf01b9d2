//! The HTTP ports (`/metrics`, forward auth): one serving layer, hyper's HTTP/1.1 server on a
//! small tokio runtime of its own per port, so that no port's clients can delay another's and
//! nothing async leaks out of this module. A port is a [`Handler`] (a plain function from a
//! request head to a response) and [`HttpLimits`]; this module holds it against hostile clients:
//! - a request head is held here until it is complete, and never beyond [`HttpLimits::max_head_bytes`]:
//!   a request line longer than [`MAX_REQUEST_LINE_BYTES`] is answered 414, a longer head 431,
//!   a head not complete within [`HttpLimits::request_timeout`] 408, each after the answers to the
//!   requests before it on the connection, and the connection is closed;
//! - a response not taken by the client within [`HttpLimits::request_timeout`] closes the connection,
//!   and a client that sends and never reads stops being read (its responses wait), so it holds
//!   its own connection only;
//! - at most [`HttpLimits::max_connections`] connections; the next is answered 503 and closed;
//! - an idle connection is closed after [`HttpLimits::idle_timeout`]; `TCP_NODELAY` on every one;
//! - a request with a body is answered by its head, and the connection closed after it, at most
//!   64 KiB of the body read (and dropped): no port here needs one, so none is buffered (Caddy's
//!   `forward_auth` sends the body of the request it asks about);
//! - an HTTP/1.1 request without `Host`, or any with several or one that is not a host, is
//!   answered 400 and the connection closed (RFC 9112 section 3.2).

mod connection;
mod guard;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use hyper::{header, Method, StatusCode};

/// A request as a port's handler sees it: the head only (method, URI, headers).
pub type Request = hyper::Request<()>;

/// A port's answer.
pub type Response = hyper::Response<Bytes>;

/// An answer on its way: a handler that must wait (for a key set to load, say) waits here,
/// without holding a thread.
pub type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What a port does with each request. Called on the port's runtime threads: it must not block
/// for long; what it waits for, it waits for in its [`Answer`].
pub type Handler = Arc<dyn Fn(Request) -> Answer + Send + Sync>;

/// A handler that answers at once, from the request head alone.
pub fn answer_at_once(answer: fn(&Request) -> Response) -> Handler {
    Arc::new(move |request| {
        let response = answer(&request);
        Box::pin(std::future::ready(response))
    })
}

/// The longest request line (method, target, version) accepted, as nginx's default buffer;
/// longer is 414. A port's targets are short (`/metrics`, `/auth?scope=admin`).
pub const MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;

/// What one port accepts of its clients. Defaults: [`HttpLimits::default`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// The longest request head (request line and headers), in bytes; longer is 431.
    pub max_head_bytes: usize,
    /// Connections open at once; beyond it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// How long a request head may take to arrive from its first byte, and a response to be
    /// taken by the client.
    pub request_timeout: Duration,
    /// How long a connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
}

/// A head of 32 KiB holds a proxy's forwarded headers with a browser's cookies (nginx's
/// default is 4 buffers of 8 KiB).
pub const DEFAULT_MAX_HEAD_BYTES: usize = 32 * 1024;

/// Well above what a fleet of scrapers or proxies keeps open (nginx keeps 32 idle per worker).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Generous for any client on a network; short enough that a slow one lets go.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longer than the proxies keep an idle upstream connection (nginx 60 s, Traefik 90 s, Caddy
/// 2 min), so that the server never closes one a proxy is about to reuse.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The smallest head limit accepted: a request line and a few headers.
pub const MIN_HEAD_BYTES: usize = 1024;

impl HttpLimits {
    /// What makes these limits unusable, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_head_bytes < MIN_HEAD_BYTES {
            problems.push(format!(
                "the head limit ({} bytes) is below {MIN_HEAD_BYTES}",
                self.max_head_bytes
            ));
        }
        if self.max_connections == 0 {
            problems.push("the connection limit must be at least 1".to_owned());
        }
        if self.request_timeout.is_zero() || self.idle_timeout.is_zero() {
            problems.push("HTTP timeouts must be positive".to_owned());
        }
        problems
    }
}

/// Why a port could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum PortError {
    /// The limits cannot be served by; each problem in a sentence.
    Limits(Vec<String>),
    /// The address cannot be listened on (in use, not this host's, not permitted).
    Bind(io::Error),
    /// Its threads could not be started.
    Runtime(io::Error),
}

impl std::fmt::Display for PortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Limits(problems) => f.write_str(&problems.join("; ")),
            Self::Bind(e) | Self::Runtime(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PortError {}

/// A running port; dropping it stops it (connections open are closed).
pub struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    address: SocketAddr,
}

impl Server {
    /// Listens on `address` (HOST:PORT; port 0 picks a free one) and serves `handler` there
    /// from now on, on threads named after `name`.
    pub fn start(
        name: &str,
        address: &str,
        limits: HttpLimits,
        handler: Handler,
    ) -> Result<Self, PortError> {
        let problems = limits.problems();
        if !problems.is_empty() {
            return Err(PortError::Limits(problems));
        }
        let listener = TcpListener::bind(address).map_err(PortError::Bind)?;
        let bound = listener.local_addr().map_err(PortError::Bind)?;
        listener.set_nonblocking(true).map_err(PortError::Bind)?;
        let runtime = runtime(name).map_err(PortError::Runtime)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(PortError::Runtime)?
        };
        runtime.spawn(connection::accept(listener, name.into(), limits, handler));
        Ok(Self {
            runtime: Some(runtime),
            address: bound,
        })
    }

    /// The address it listens on, with the bound port.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Two threads per port: one client's answer being computed never waits for another's, and the
/// count stays fixed however many connections are open.
fn runtime(name: &str) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .thread_name(format!("http-{name}"))
        .enable_io()
        .enable_time()
        .build()
}

/// A plain-text response, as every answer of these ports is unless it says otherwise.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = hyper::Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
