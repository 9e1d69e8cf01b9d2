//! The metrics endpoint: `GET /metrics` in the Prometheus text format, on a port of its own
//! (`--metrics-listen`), served by one thread. Any other path is 404.

use std::sync::Arc;
use std::thread;

use tiny_http::{Header, Method, Response, Server};

use crate::metrics;

/// A running endpoint; dropping it stops it.
pub struct Scrape {
    server: Arc<Server>,
    address: String,
}

impl Scrape {
    /// Listens on `address` (HOST:PORT) and serves there from now on; turns recording on.
    pub fn start(address: &str) -> Result<Self, String> {
        let server = Arc::new(Server::http(address).map_err(|e| e.to_string())?);
        let bound = server
            .server_addr()
            .to_ip()
            .map_or_else(|| address.to_owned(), |ip| ip.to_string());
        metrics::enable();
        let serving = Arc::clone(&server);
        thread::Builder::new()
            .name("metrics".to_owned())
            .spawn(move || serve(&serving))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            server,
            address: bound,
        })
    }

    /// The address it listens on, HOST:PORT with the bound port.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for Scrape {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn serve(server: &Server) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or_default();
        let response = match (request.method(), path) {
            (Method::Get | Method::Head, "/metrics") => {
                let header = Header::from_bytes("Content-Type", metrics::TEXT_FORMAT)
                    .expect("a valid header");
                Response::from_string(metrics::get().encode()).with_header(header)
            }
            (_, "/metrics") => Response::from_string("only GET and HEAD\n").with_status_code(405),
            _ => Response::from_string("not found: the metrics are at /metrics\n")
                .with_status_code(404),
        };
        // A scraper that went away is its own problem; the next one is served.
        let _ = request.respond(response);
    }
}
