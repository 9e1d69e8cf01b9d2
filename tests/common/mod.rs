//! Shared by the test files: a real server on a free port, and clients connected to it.
#![allow(dead_code)] // each test file uses its own subset

pub mod pki;

use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, Channel, ChannelBuilder, EnvBuilder};
use mrmat_rust_api_grpc::client::TlsOptions;
use mrmat_rust_api_grpc::server::{self, RunningServer, ServerConfig};

/// A server started for one test, stopped when dropped.
pub struct TestServer {
    server: Option<RunningServer>,
    /// HOST:PORT to connect to.
    pub address: String,
}

impl TestServer {
    /// A channel to this server.
    pub fn channel(&self) -> Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        ChannelBuilder::new(env).connect(&self.address)
    }

    /// A channel to this server secured as `tls` says.
    pub fn channel_with(&self, tls: &TlsOptions) -> Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        tls.connect(ChannelBuilder::new(env), &self.address)
            .expect("the client's TLS files are readable")
    }

    /// Stops the server gracefully, as a signal would.
    pub fn shutdown(mut self) -> bool {
        self.server
            .take()
            .expect("running")
            .shutdown(Duration::from_secs(5))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(5));
        }
    }
}

/// The default configuration, listening on 127.0.0.1 on a port the OS picks.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".to_owned(),
        ..ServerConfig::default()
    }
}

/// Starts the real server on 127.0.0.1, on a port the OS picks.
pub fn spawn_server() -> TestServer {
    spawn_server_with(test_config())
}

/// Starts the real server with `config` (whose listen address should have port 0).
pub fn spawn_server_with(config: ServerConfig) -> TestServer {
    let server = server::start(&config).expect("the server starts on a free port");
    let address = format!("127.0.0.1:{}", server.port());
    TestServer {
        server: Some(server),
        address,
    }
}

/// Every call in the tests has a deadline, so a broken server fails a test instead of hanging it.
pub fn call() -> CallOption {
    CallOption::default().timeout(Duration::from_secs(10))
}

/// Reads a child's output on a thread until a line says `listening on ADDRESS ...`, and returns
/// the address, or None after `timeout`. The thread keeps draining the pipe so the child never
/// blocks on a full pipe.
pub fn announced_address(
    output: impl std::io::Read + Send + 'static,
    timeout: Duration,
) -> Option<String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("listening on ") {
                let address = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(address.to_owned());
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}
