//! The metrics endpoint: `GET /metrics` in the Prometheus text format, on a port of its own
//! (`--metrics-listen`), on the HTTP serving layer. Any other path is 404.

use crate::apis::offer::HttpApi;
use crate::http::{self, header, Method, Request, Response, StatusCode};
use crate::metrics;

/// The metrics port's API: `GET /metrics`; recording turns on once it listens.
pub fn offer() -> HttpApi {
    HttpApi {
        port: "metrics",
        flag: "--metrics-listen",
        does: "serve metrics",
        path: "/metrics",
        handler: http::answer_at_once(scrape),
        started: metrics::enable,
    }
}

fn scrape(request: &Request) -> Response {
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
