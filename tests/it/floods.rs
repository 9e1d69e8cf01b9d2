//! Floods of the token streams by a Python grpcio peer that never reads an answer
//! (`tests/interop/flood.py`), against the server binary: once the flood is under way the
//! server's peak memory (VmHWM, the process's own high-water mark) stays where it is, within its
//! bound, and a client that reads its answers is answered throughout.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::jwt::{claims, input, token_args, KeyFile, SigningKey};
use common::python::{interop_dir, python};
use common::{call, peak_kib, OutputLines, ServerProcess};
use grpcio::{ChannelBuilder, EnvBuilder};
use mrmat_rust_api_grpc::proto::{TokenV1InputBatch, TokenV1ProtoClient, TokenV1Verdict};

/// How long each half of a flood runs: the peak at its end must equal the peak at its middle.
const HALF: Duration = Duration::from_secs(10);

/// The flooder, killed when dropped.
struct Flood {
    child: Child,
    /// What it says, read for as long as it runs (a closed pipe would end it).
    _said: OutputLines,
}

impl Flood {
    /// Starts `flood.py` against `address` with `args`, and waits until it is sending.
    fn start(address: &str, args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(interop_dir().join("flood.py"))
            .arg(address)
            .args(args)
            .args(["--seconds", "600"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tests/interop/flood.py");
        let said = OutputLines::read(child.stdout.take().expect("piped"));
        said.line_containing("sent ", Duration::from_secs(30))
            .expect("the flood is under way");
        Self { child, _said: said }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server under the flood: the token service on, metrics on.
fn server(keys: &KeyFile) -> ServerProcess {
    let mut args = token_args(keys);
    args.extend(["--store", "memory", "--metrics-listen", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(&args)
}

/// A client on a connection of its own that validates a token unary and over a short batch
/// stream, again and again, for `period`; every question must be answered. Returns the slowest
/// round it saw.
fn keep_asking(address: &str, token: &str, period: Duration) -> Duration {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let channel = ChannelBuilder::new(env)
        .use_local_subchannel_pool(true)
        .connect(address);
    let client = TokenV1ProtoClient::new(channel);
    let until = Instant::now() + period;
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let started = Instant::now();
        let answer = client
            .validate_opt(&input(1, token), call())
            .expect("Validate is answered through the flood");
        assert_eq!(
            answer.verdict.enum_value_or_default(),
            TokenV1Verdict::TOKEN_V1_VALID
        );
        let mut batch = TokenV1InputBatch::new();
        batch.inputs = (0..10).map(|id| input(id, token)).collect();
        let (answered, ended) = common::jwt::validate_batches(&client, vec![batch]);
        ended.expect("a batch stream is served through the flood");
        assert_eq!(answered.iter().map(|m| m.outputs.len()).sum::<usize>(), 10);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    slowest
}

/// Floods with `args` until the server has read a batch from each of the `served` streams it
/// serves, asks politely meanwhile, and returns the server's peak at the middle and at the end,
/// in MiB, with the server and the flood still on (dropping it ends it).
fn flood_and_measure(args: &[&str], served: f64) -> (u64, u64, ServerProcess, Flood) {
    let key = SigningKey::p256("f");
    let keys = KeyFile::new(&[&key]);
    let server = server(&keys);
    let token = key.sign(&claims("polite"));
    let flood = Flood::start(&server.address, args);
    let received = r#"grpc_server_msg_received_total{grpc_method="ValidateBatches",grpc_service="TokenV1Proto",grpc_type="bidi_stream"}"#;
    let under_way = common::holds_within(Duration::from_secs(60), || {
        server.metric(received).is_some_and(|n| n >= served)
    });
    assert!(under_way, "the flood never reached every stream");
    let slowest = keep_asking(&server.address, &token, HALF);
    let middle = peak_kib(server.pid()) / 1024;
    let slowest = slowest.max(keep_asking(&server.address, &token, HALF));
    let end = peak_kib(server.pid()) / 1024;
    eprintln!(
        "flood {args:?}: peak {middle} MiB after {HALF:?}, {end} MiB after twice that; the \
         polite client's slowest round {slowest:?}"
    );
    (middle, end, server, flood)
}

#[test]
fn python_300_batch_streams_on_3_connections_that_never_read_hold_a_flat_peak_and_others_are_answered(
) {
    let (middle, end, server, _flood) =
        flood_and_measure(&["--connections", "3", "--streams", "300"], 24.0);
    assert!(end <= middle + 4, "still rising: {middle} then {end} MiB");
    assert!(end < 256, "a peak of {end} MiB");
    // Beyond 8 a connection, each stream was refused at once: 24 stay open, most of the others
    // saw RESOURCE_EXHAUSTED (a few, cancelled by the peer before it came, count as cancelled).
    let series = |name: &str, code: Option<&str>| {
        let code = code.map_or(String::new(), |code| format!(r#"grpc_code="{code}","#));
        server
            .metric(&format!(
                r#"{name}{{{code}grpc_method="ValidateBatches",grpc_service="TokenV1Proto",grpc_type="bidi_stream"}}"#
            ))
            .unwrap_or(0.0)
    };
    let open = series("grpc_server_open_streams", None);
    assert!(open <= 24.0, "{open} streams open on 3 connections");
    let refused = series("grpc_server_handled_total", Some("RESOURCE_EXHAUSTED"));
    assert!(refused >= 200.0, "{refused} refused");
    let held = server
        .metric("mrmat_stream_budget_held_bytes")
        .expect("the gauge");
    assert!(held <= 64.0 * 1024.0 * 1024.0, "{held} bytes held");
}

#[test]
fn python_300_connections_of_one_batch_stream_each_hold_a_flat_peak_bounded_by_their_count() {
    let (middle, end, _server, _flood) =
        flood_and_measure(&["--connections", "300", "--streams", "300"], 300.0);
    assert!(end <= middle + 4, "still rising: {middle} then {end} MiB");
    // Each stream's share: the batch the transport reads ahead of it (1 MiB), its answers, its
    // connection's buffers.
    assert!(end < 300 * 2 + 64, "a peak of {end} MiB for 300 streams");
}
