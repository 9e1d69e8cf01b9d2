//! Accepting connections up to the cap, and serving each: hyper over [`Guarded`], then the
//! answer to a refused request, if one is due.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use hyper::service::service_fn;
use hyper::Version;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

use super::guard::{Guarded, Refusal};
use super::{Handler, HttpLimits, Request, Response, StatusCode};
use crate::metrics;

/// Connections over the cap being answered 503 at once, at most; beyond, they are closed.
const MAX_TURNED_AWAY: usize = 256;

/// How long a connection being closed after an answer is drained, so that the client reads the
/// answer rather than a reset.
const LINGER: Duration = Duration::from_secs(1);

/// The most a closing connection reads of what its client still sends (a body it announced,
/// say), whatever the time: beyond it the connection is closed, even if a reset follows.
const MAX_LINGER_BYTES: usize = 64 * 1024;

/// Accepts connections for as long as the runtime runs.
pub(super) async fn accept(
    listener: TcpListener,
    port: Arc<str>,
    limits: HttpLimits,
    handler: Handler,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let turning_away = Arc::new(AtomicUsize::new(0));
    let mut trouble = AcceptTrouble::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to close.
                if trouble.fails(Instant::now()) {
                    log::warn!("HTTP port {port} cannot accept connections: {error}");
                }
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if trouble.accepts() {
            log::info!("HTTP port {port} accepts connections again");
        }
        // A response goes out in one segment as soon as it is written, not 40 ms later.
        let _ = stream.set_nodelay(true);
        if let Some(slot) = Slot::take(&open, limits.max_connections) {
            let counted = Counted::open(Arc::clone(&port));
            tokio::spawn(serve(stream, limits, Arc::clone(&handler), (slot, counted)));
        } else {
            metrics::http_refused(&port, "too_many_connections");
            if let Some(slot) = Slot::take(&turning_away, MAX_TURNED_AWAY) {
                tokio::spawn(turn_away(stream, limits, slot));
            }
        }
    }
}

/// How often a port that cannot accept says so, at most: short of descriptors, it flaps between
/// failing and accepting as connections close and queued ones take their places.
const SAY_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// Whether accepting is failing, and whether that was said: said when it starts, once a
/// minute at most, not every 100 ms; its end said only after a start that was.
#[derive(Default)]
struct AcceptTrouble {
    failing: bool,
    said: bool,
    said_at: Option<Instant>,
}

impl AcceptTrouble {
    /// An accept failed: whether to say so.
    fn fails(&mut self, now: Instant) -> bool {
        if self.failing {
            return false;
        }
        self.failing = true;
        let due = self
            .said_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SAY_AGAIN_AFTER);
        if due {
            self.said = true;
            self.said_at = Some(now);
        }
        due
    }

    /// An accept succeeded: whether to say that accepting works again.
    fn accepts(&mut self) -> bool {
        self.failing = false;
        std::mem::take(&mut self.said)
    }
}

/// One of a bounded number of places, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, most: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(count)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open connection, counted on its port's gauge while it lives.
struct Counted(Arc<str>);

impl Counted {
    fn open(port: Arc<str>) -> Self {
        metrics::http_connections(&port, 1);
        Self(port)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::http_connections(&self.0, -1);
    }
}

async fn serve(stream: TcpStream, limits: HttpLimits, handler: Handler, held: (Slot, Counted)) {
    let port = Arc::clone(&held.1 .0);
    // Set once a request with a body is answered: the connection then ends unread.
    let body_unread = Arc::new(AtomicBool::new(false));
    let unread = Arc::clone(&body_unread);
    let service = service_fn(move |request| {
        let (handler, port, unread) =
            (Arc::clone(&handler), Arc::clone(&port), Arc::clone(&unread));
        async move {
            Ok::<_, Infallible>(
                answer(&handler, &port, &unread, request)
                    .await
                    .map(Full::new),
            )
        }
    });
    let port = &held.1 .0;
    let served = hyper::server::conn::http1::Builder::new()
        // Guarded hands on only whole heads of at most max_head_bytes: this is a backstop.
        .max_buf_size(limits.max_head_bytes.max(8 * 1024) * 2)
        // Guarded times heads and idle connections itself.
        .header_read_timeout(None)
        // The end of the stream while a request is answered is not an error: Guarded ends it
        // after the last head it hands on, and that request is still answered.
        .half_close(true)
        .serve_connection(TokioIo::new(Guarded::new(stream, &limits)), service)
        .without_shutdown()
        .await;
    let parts = match served {
        Ok(parts) => parts,
        Err(error) => {
            if timed_out(&error) {
                metrics::http_refused(port, "write_timeout");
            }
            return;
        }
    };
    let guarded = parts.io.into_inner();
    if body_unread.load(Ordering::Acquire) {
        // What Guarded made of the body (a head too long, say) is no request: nothing more is
        // answered.
        linger(guarded.into_stream()).await;
        return;
    }
    let Some(refusal) = guarded.refusal() else {
        return;
    };
    metrics::http_refused(
        port,
        match refusal {
            Refusal::LineTooLong => "request_line_too_long",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::HeadTimeout => "head_timeout",
        },
    );
    let (status, reason) = match refusal {
        Refusal::LineTooLong => (
            StatusCode::URI_TOO_LONG,
            format!(
                "the request line is longer than {} bytes\n",
                super::MAX_REQUEST_LINE_BYTES.min(limits.max_head_bytes)
            ),
        ),
        Refusal::HeadTooLarge => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's head (request line and headers) is longer than {} bytes\n",
                limits.max_head_bytes
            ),
        ),
        Refusal::HeadTimeout => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request's head did not arrive within {} s\n",
                limits.request_timeout.as_secs_f64()
            ),
        ),
    };
    close_with(guarded.into_stream(), status, &reason, &limits).await;
}

/// The connection cap is reached: says so, and closes.
async fn turn_away(stream: TcpStream, limits: HttpLimits, _slot: Slot) {
    let reason = format!(
        "this port has its {} connections open; try again\n",
        limits.max_connections
    );
    close_with(stream, StatusCode::SERVICE_UNAVAILABLE, &reason, &limits).await;
}

/// Writes a last response (within the request timeout), then drains what the client still sends
/// for a moment before closing, so that it reads the response instead of a reset.
async fn close_with(mut stream: TcpStream, status: StatusCode, reason: &str, limits: &HttpLimits) {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        reason.len(),
        if status == StatusCode::SERVICE_UNAVAILABLE {
            "retry-after: 1\r\n"
        } else {
            ""
        },
    );
    let response = [head.as_bytes(), reason.as_bytes()].concat();
    let written = timeout(limits.request_timeout, stream.write_all(&response)).await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    linger(stream).await;
}

/// Ends the connection's sending side, then drains what the client still sends for a moment:
/// unread bytes at close would reset the connection, and a reset can destroy the answer before
/// the client reads it.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = timeout(LINGER, async {
        let mut drained = 0;
        while drained < MAX_LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    })
    .await;
}

/// Whether a connection ended because the client took no response bytes in time.
fn timed_out(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = cause.source();
    }
    false
}

/// A request's answer, the handler's. No port reads a body (none needs one, and holding heads
/// depends on it): a request with one is answered by its head alone, as proxies that forward
/// the body of the request they ask about (Caddy's `forward_auth`) need, and the connection
/// then closes, its body unread.
async fn answer(
    handler: &Handler,
    port: &str,
    body_unread: &AtomicBool,
    request: hyper::Request<Incoming>,
) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let mut response = match host_problem(&request) {
        Some(why) => {
            metrics::http_refused(port, "bad_host");
            let mut refused = super::text(StatusCode::BAD_REQUEST, format!("{why}\n"));
            refused
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            refused
        }
        None => {
            let (parts, _) = request.into_parts();
            handler(Request::from_parts(parts, ())).await
        }
    };
    if has_body {
        metrics::http_refused(port, "body");
        body_unread.store(true, Ordering::Release);
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Why a request's `Host` is refused (RFC 9112 section 3.2: 400 for an HTTP/1.1 request without
/// one, and for any with more than one or one that is not a host and port), or None.
fn host_problem<B>(request: &hyper::Request<B>) -> Option<&'static str> {
    let mut hosts = request.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if request.version() == Version::HTTP_11 => {
            Some("an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)")
        }
        (None, _) => None,
        (Some(_), Some(_)) => Some("a request has one Host header, not several"),
        (Some(host), None) => {
            let valid = host.to_str().ok().is_some_and(is_host);
            (!valid).then_some("the Host header is not a host with an optional port")
        }
    }
}

/// Whether `text` is `uri-host [ ":" port ]` (RFC 3986 section 3.2.2), or empty.
fn is_host(text: &str) -> bool {
    let (name, port) = match text.strip_prefix('[') {
        Some(literal) => match literal.split_once(']') {
            Some((ip, port)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => ("ip", port),
            _ => return false,
        },
        None => match text.rsplit_once(':') {
            Some((name, port)) => (name, port),
            None => (text, ""),
        },
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    text.is_empty() || name_ok && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, hosts: &[&str]) -> hyper::Request<()> {
        let mut request = hyper::Request::new(());
        *request.version_mut() = version;
        for host in hosts {
            request
                .headers_mut()
                .append(HOST, HeaderValue::from_str(host).expect("a header value"));
        }
        request
    }

    #[test]
    fn http_1_1_needs_one_host_and_http_1_0_may_have_none() {
        assert!(host_problem(&request(Version::HTTP_11, &[])).is_some());
        assert!(host_problem(&request(Version::HTTP_10, &[])).is_none());
        for fine in ["auth", "auth:9464", "127.0.0.1:1", "[::1]:9464", ""] {
            assert!(
                host_problem(&request(Version::HTTP_11, &[fine])).is_none(),
                "{fine}"
            );
        }
        for bad in ["user@auth", "a b", "auth:port", "auth/path"] {
            assert!(
                host_problem(&request(Version::HTTP_11, &[bad])).is_some(),
                "{bad}"
            );
        }
        assert!(host_problem(&request(Version::HTTP_11, &["a", "b"])).is_some());
    }

    #[test]
    fn a_port_that_flaps_says_it_cannot_accept_once_a_minute_and_recovers_after_saying_it() {
        let start = Instant::now();
        let mut trouble = AcceptTrouble::default();
        assert!(trouble.fails(start), "the first failure is said");
        assert!(!trouble.fails(start), "not every retry");
        assert!(
            trouble.accepts(),
            "the recovery from a said failure is said"
        );
        let soon = start + Duration::from_secs(5);
        assert!(!trouble.fails(soon), "a flap within the minute is quiet");
        assert!(!trouble.accepts(), "and so is its recovery");
        assert!(!trouble.accepts());
        let later = start + SAY_AGAIN_AFTER;
        assert!(trouble.fails(later), "a minute on, it is said again");
        assert!(trouble.accepts());
    }
}
