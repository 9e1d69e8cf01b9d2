//! A hostile HTTP client, for every HTTP port (metrics, forward auth): raw HTTP/1.1 over a
//! `TcpStream`, so that a test can send what no well-behaved client library would (a head that
//! never ends, a flood of pipelined requests it never reads, a thousand idle connections) and
//! read exactly what the server answered.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What a server answered: the status, the headers (names lower-cased) and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lower case), if it was sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl From<TcpStream> for Raw {
    /// A connection opened by one of the attacks below, to go on with.
    fn from(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        Self {
            stream,
            pending: Vec::new(),
        }
    }
}

/// One raw connection.
pub struct Raw {
    stream: TcpStream,
    /// Bytes read past the last answer.
    pending: Vec<u8>,
}

impl Raw {
    /// Connects to `address` (HOST:PORT); reads wait at most 10 s.
    pub fn connect(address: &str) -> Self {
        Self::from(TcpStream::connect(address).expect("connect to the HTTP port"))
    }

    /// The connection's sending side, to write from another thread while this one reads.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the connection")
    }

    /// Sends `bytes` as they are; false when the server no longer takes them.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends `GET path` with nothing else but a Host header.
    pub fn get(&mut self, path: &str) -> bool {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    /// Reads the next answer, or None when the connection closed (or nothing came in 10 s).
    pub fn answer(&mut self) -> Option<Answer> {
        let head_end = loop {
            if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                break at;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()?
            .split(' ')
            .nth(1)?
            .parse()
            .expect("a numeric status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map_or(0, |(_, value)| {
                value.parse().expect("a numeric content-length")
            });
        let body_start = head_end + 4;
        while self.pending.len() < body_start + length {
            self.fill()?;
        }
        let body =
            String::from_utf8_lossy(&self.pending[body_start..body_start + length]).into_owned();
        self.pending.drain(..body_start + length);
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    /// Whether the server closes the connection within `timeout` (reading and dropping
    /// anything it still sends).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut sink = [0u8; 65536];
        while Instant::now() < deadline {
            self.stream
                .set_read_timeout(Some(deadline - Instant::now() + Duration::from_millis(1)))
                .expect("a read timeout");
            match self.stream.read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }

    fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// `GET path` on a fresh connection, and its answer.
pub fn get(address: &str, path: &str) -> Option<Answer> {
    let mut raw = Raw::connect(address);
    raw.get(path);
    raw.answer()
}

/// Starts a head with a header that never ends and sends `total` bytes of it (or until the
/// server stops taking them); returns how many it took and the answer, if one came.
pub fn endless_header(address: &str, total: usize) -> (usize, Option<Answer>) {
    let mut raw = Raw::connect(address);
    raw.stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("a write timeout");
    raw.send(b"GET /metrics HTTP/1.1\r\nHost: test\r\nX-Endless: ");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < total && raw.send(&chunk) {
        sent += chunk.len();
    }
    (sent, raw.answer())
}

/// Sends `count` pipelined `GET path` on one connection that never reads; the connection is
/// returned open (the caller holds it while it checks on others).
pub fn pipeline_without_reading(address: &str, path: &str, count: usize) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect to the HTTP port");
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("a write timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    let all = request.repeat(count);
    // The server stops reading once its answers back up: the rest is not taken, as it should.
    let _ = (&stream).write_all(all.as_bytes());
    stream
}

/// `count` connections that send nothing, held open by the caller.
pub fn idle_connections(address: &str, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(address).expect("connect to the HTTP port"))
        .collect()
}

/// How many threads process `pid` has now.
pub fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read its status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("a Threads line")
}
