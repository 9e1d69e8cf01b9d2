//! The metrics endpoint: `GET /metrics` in the Prometheus text format, on a port of its own
//! (`--metrics-listen`), on the HTTP serving layer. Any other path is 404.

use crate::http::{self, header, Method, Request, Response, StatusCode};
use crate::metrics;

/// A running endpoint; dropping it stops it.
pub struct Scrape {
    // Kept for its Drop, which stops the port.
    _server: http::Server,
    address: String,
}

impl Scrape {
    /// Listens on `address` (HOST:PORT) and serves there from now on; turns recording on.
    pub fn start(address: &str, limits: http::Limits) -> Result<Self, String> {
        let server = http::Server::start("metrics", address, limits, http::answer_at_once(answer))?;
        metrics::enable();
        Ok(Self {
            address: server.address().to_string(),
            _server: server,
        })
    }

    /// The address it listens on, HOST:PORT with the bound port.
    pub fn address(&self) -> &str {
        &self.address
    }
}

fn answer(request: &Request) -> Response {
    let method = request.method();
    match request.uri().path() {
        "/metrics" if method == Method::GET || method == Method::HEAD => {
            let mut response = http::text(StatusCode::OK, metrics::get().encode());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(metrics::TEXT_FORMAT),
            );
            response
        }
        "/metrics" => {
            let mut response = http::text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            response
        }
        _ => http::text(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        ),
    }
}
