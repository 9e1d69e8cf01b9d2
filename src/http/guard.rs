//! A connection's bytes on their way to hyper, held until a request head is complete: hyper
//! only ever sees whole heads, so that a head too long, or too slow to arrive, is stopped here
//! before anything of it is buffered past the limit, and answered (414, 431, 408) once hyper
//! has answered the requests before it. Writes that the client does not take in time fail.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep, Sleep};

use super::{HttpLimits, MAX_REQUEST_LINE_BYTES};

/// Why a connection stopped being read: a request that will not be handed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 414: the request line is longer than [`MAX_REQUEST_LINE_BYTES`].
    LineTooLong,
    /// 431: the head is longer than the limit.
    HeadTooLarge,
    /// 408: the head did not arrive in time.
    HeadTimeout,
}

/// What a pending read waits for, each with its own deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// The first byte of the next request.
    Idle,
    /// The rest of a head already begun.
    Head,
}

pub(super) struct Guarded {
    stream: TcpStream,
    max_head: usize,
    max_line: usize,
    request_timeout: Duration,
    idle_timeout: Duration,
    /// Bytes read and not yet handed on: `buf[..ready]` are whole heads, the rest the start of
    /// the next one.
    buf: Vec<u8>,
    ready: usize,
    /// Where scanning resumes, where the line being scanned began, and whether it is a request
    /// line (the first line of a head, empty lines before it aside).
    scan: usize,
    line_start: usize,
    first_line: bool,
    peer_closed: bool,
    idle_expired: bool,
    refusal: Option<Refusal>,
    /// Whether hyper was told the stream ended because of `refusal` (so it answered everything
    /// before, and the refusal is the connection's next answer).
    refusal_reached: bool,
    read_deadline: Option<(Pin<Box<Sleep>>, Waiting)>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

/// Bytes read from the socket at once, at most.
const READ_CHUNK: usize = 16 * 1024;

impl Guarded {
    pub(super) fn new(stream: TcpStream, limits: &HttpLimits) -> Self {
        Self {
            stream,
            max_head: limits.max_head_bytes,
            max_line: MAX_REQUEST_LINE_BYTES.min(limits.max_head_bytes),
            request_timeout: limits.request_timeout,
            idle_timeout: limits.idle_timeout,
            buf: Vec::new(),
            ready: 0,
            scan: 0,
            line_start: 0,
            first_line: true,
            peer_closed: false,
            idle_expired: false,
            refusal: None,
            refusal_reached: false,
            read_deadline: None,
            write_deadline: None,
        }
    }

    /// The request refused, once hyper has answered every request before it.
    pub(super) fn refusal(&self) -> Option<Refusal> {
        self.refusal.filter(|_| self.refusal_reached)
    }

    pub(super) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Scans the bytes read since the last scan for the ends of lines and heads.
    fn scan(&mut self) {
        while self.refusal.is_none() && self.scan < self.buf.len() {
            let Some(offset) = self.buf[self.scan..].iter().position(|&b| b == b'\n') else {
                self.scan = self.buf.len();
                let line = self.buf.len() - self.line_start;
                if self.first_line && line > self.max_line {
                    self.refuse(Refusal::LineTooLong);
                } else if self.buf.len() - self.ready > self.max_head {
                    self.refuse(Refusal::HeadTooLarge);
                }
                return;
            };
            let end = self.scan + offset + 1;
            let mut line = &self.buf[self.line_start..end - 1];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let empty = line.is_empty();
            if self.first_line && line.len() > self.max_line {
                self.refuse(Refusal::LineTooLong);
                return;
            }
            if end - self.ready > self.max_head {
                self.refuse(Refusal::HeadTooLarge);
                return;
            }
            if !empty {
                self.first_line = false;
            } else if !self.first_line {
                // The empty line that ends a head: hand the head on, expect a request line.
                self.ready = end;
                self.first_line = true;
            }
            self.line_start = end;
            self.scan = end;
        }
    }

    /// Stops reading: what is not a whole head yet is dropped, the rest handed on first.
    fn refuse(&mut self, refusal: Refusal) {
        self.refusal = Some(refusal);
        self.buf.truncate(self.ready);
        self.scan = self.ready;
        self.line_start = self.ready;
    }

    /// Whether the deadline for what the read waits for has passed (arming it if need be).
    fn read_expired(&mut self, cx: &mut Context<'_>, waiting: Waiting) -> bool {
        let armed = matches!(&self.read_deadline, Some((_, armed)) if *armed == waiting);
        if !armed {
            let timeout = match waiting {
                Waiting::Idle => self.idle_timeout,
                Waiting::Head => self.request_timeout,
            };
            self.read_deadline = Some((Box::pin(sleep(timeout)), waiting));
        }
        let (deadline, _) = self.read_deadline.as_mut().expect("armed above");
        deadline.as_mut().poll(cx).is_ready()
    }

    /// Polls a write, failing it once the client has not taken it for the request timeout.
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(result) = write(Pin::new(&mut self.stream), cx) {
            self.write_deadline = None;
            return Poll::Ready(result);
        }
        let timeout = self.request_timeout;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(sleep(timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took no response bytes within the request timeout",
        )))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.drain(..n);
                this.ready -= n;
                this.scan -= n;
                this.line_start -= n;
                this.read_deadline = None;
                return Poll::Ready(Ok(()));
            }
            if this.refusal.is_some() {
                this.refusal_reached = true;
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed || this.idle_expired {
                // The end of the stream; a head begun and never finished goes with it.
                return Poll::Ready(Ok(()));
            }
            let waiting = if this.buf.is_empty() {
                Waiting::Idle
            } else {
                Waiting::Head
            };
            if this.read_expired(cx, waiting) {
                match waiting {
                    Waiting::Idle => this.idle_expired = true,
                    Waiting::Head => this.refuse(Refusal::HeadTimeout),
                }
                continue;
            }
            // Never more than one byte past the limit of the head being read.
            let room = (this.max_head + 1)
                .saturating_sub(this.buf.len())
                .clamp(1, READ_CHUNK);
            let mut chunk = [0u8; READ_CHUNK];
            let mut into = ReadBuf::new(&mut chunk[..room]);
            ready!(Pin::new(&mut this.stream).poll_read(cx, &mut into))?;
            if into.filled().is_empty() {
                this.peer_closed = true;
            } else {
                this.buf.extend_from_slice(into.filled());
                this.scan();
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |stream, cx| stream.poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |stream, cx| stream.poll_write_vectored(cx, data))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_with(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
