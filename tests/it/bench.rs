//! The client's `bench` as a short smoke run: a few hundred calls of each workload against a real
//! server, with a report that is complete and consistent. (Against the Python server: see
//! tests/interop.rs. Figures are measured by the bench, never asserted by tests.)

use crate::common;

use std::process::Command;

use common::{assert_consistent_bench_report, bench_json, spawn_server};

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");

#[test]
fn every_workload_gives_a_complete_consistent_report() {
    let server = spawn_server();
    for call in [
        "greeting-v2",
        "healthz",
        "resource-get",
        "resource-create",
        "resource-list",
        "mixed",
    ] {
        let report = bench_json(
            &server.address,
            &[
                "--call",
                call,
                "--calls",
                "300",
                "--warmup",
                "0.1",
                "--resources",
                "50",
                "--connections",
                "2",
                "--in-flight",
                "8",
            ],
        );
        assert_eq!(report["call"], call);
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        assert_consistent_bench_report(&report, 300);
    }
}

#[test]
fn stored_ids_are_read_without_creating_any() {
    let server = spawn_server();
    // 20 resources, ids 0..19, as a seeded store holds them; then Get only among them.
    bench_json(
        &server.address,
        &[
            "--call",
            "resource-create",
            "--calls",
            "20",
            "--warmup",
            "0",
        ],
    );
    let report = bench_json(
        &server.address,
        &[
            "--call",
            "resource-get",
            "--stored-ids",
            "20",
            "--calls",
            "200",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_consistent_bench_report(&report, 200);
    let listed = bench_json(
        &server.address,
        &[
            "--call",
            "resource-list",
            "--stored-ids",
            "20",
            "--calls",
            "1",
        ],
    );
    assert_consistent_bench_report(&listed, 1);
}

#[test]
fn a_duration_run_reports_its_measured_time() {
    let server = spawn_server();
    let report = bench_json(&server.address, &["--duration", "0.5", "--warmup", "0"]);
    let seconds = report["seconds"].as_f64().expect("seconds");
    assert!((0.5..5.0).contains(&seconds), "{report}");
    let calls = report["calls"].as_u64().expect("calls");
    assert!(calls > 0);
    assert_consistent_bench_report(&report, calls);
}

#[test]
fn the_text_report_has_every_line() {
    let server = spawn_server();
    let out = Command::new(CLIENT)
        .args(["--server", &server.address, "bench", "--calls", "200"])
        .output()
        .expect("the client runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let starts: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        starts,
        ["bench", "calls", "rate", "latency", "errors"],
        "{text}"
    );
    assert!(
        text.contains("calls       200 (200 succeeded, 0 failed)"),
        "{text}"
    );
    // Not a terminal: no progress line, nothing on stderr at all.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn a_terminal_gets_a_live_progress_line() {
    let server = spawn_server();
    // util-linux `script` (Debian's essential bsdutils) runs the client on a pseudo-terminal;
    // the terminal's output is stdout and stderr together.
    let command = format!(
        "{CLIENT} --server {} bench --duration 1.5 --warmup 0",
        server.address
    );
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .output()
        .expect("util-linux script runs");
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    let progress = screen
        .split('\r')
        .find(|part| part.contains("measuring"))
        .unwrap_or_else(|| panic!("no progress line in {screen:?}"));
    for field in ["calls", "rate", "errors 0"] {
        assert!(progress.contains(field), "{progress:?}");
    }
    assert!(screen.contains("latency"), "the report follows: {screen:?}");
}

#[test]
fn an_unreachable_server_is_an_error_not_a_hang() {
    let out = Command::new(CLIENT)
        .args([
            "--server",
            "127.0.0.1:1",
            "--timeout",
            "1",
            "bench",
            "--duration",
            "1",
        ])
        .output()
        .expect("the client runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}

/// A server with the token service, the tokens file for `--tokens`, and what keeps both alive.
fn token_server(
    tokens: &[String],
) -> (common::TestServer, common::jwt::KeyFile, std::path::PathBuf) {
    use common::jwt::{token_config, KeyFile, SigningKey};
    let key = SigningKey::p256("bench");
    let keys = KeyFile::new(&[&key]);
    let server = common::spawn_server_with(token_config(&keys));
    let mut lines: Vec<String> = (0..20)
        .map(|n| key.sign(&common::jwt::claims(&format!("user{n}"))))
        .collect();
    lines.extend(tokens.iter().cloned());
    let file = keys.dir().join("tokens.txt");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the tokens");
    (server, keys, file)
}

#[test]
fn every_token_workload_gives_a_complete_consistent_report() {
    let (server, _keys, tokens) = token_server(&[]);
    let tokens = tokens.to_str().expect("UTF-8");
    for (call, extra) in [
        ("token-validate", None),
        ("token-validate", Some("--fresh-connection")),
        ("token-stream", None),
        ("token-validator", None),
    ] {
        let mut args = vec![
            "--call",
            call,
            "--tokens",
            tokens,
            "--calls",
            "300",
            "--warmup",
            "0.1",
            "--connections",
            "3",
            "--in-flight",
            "8",
        ];
        args.extend(extra);
        let report = bench_json(&server.address, &args);
        assert_consistent_bench_report(&report, 300);
        assert_eq!(report["successes"], 300, "{call} {extra:?}: {report}");
        assert_eq!(report["tokens"], 20, "{report}");
        assert_eq!(report["fresh_connection"], extra.is_some(), "{report}");
    }
}

#[test]
fn tokens_that_are_not_valid_count_as_errors_by_verdict() {
    let (server, _keys, tokens) = token_server(&["not-a-token".to_owned()]);
    let tokens = tokens.to_str().expect("UTF-8");
    for call in ["token-validate", "token-stream"] {
        let report = bench_json(
            &server.address,
            &[
                "--call", call, "--tokens", tokens, "--calls", "400", "--warmup", "0",
            ],
        );

        assert_consistent_bench_report(&report, 400);
        let malformed = report["errors"]["TOKEN_V1_MALFORMED"].as_u64().unwrap_or(0);
        assert!(malformed > 0, "{call}: {report}");
        assert_eq!(
            report["successes"].as_u64().expect("a count") + malformed,
            400,
            "{report}"
        );
    }
}

#[test]
fn token_workloads_say_what_they_need() {
    let (server, _keys, tokens) = token_server(&[]);
    let run = |args: &[&str]| {
        let out = Command::new(CLIENT)
            .args(["--server", &server.address, "bench"])
            .args(args)
            .output()
            .expect("the client runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stderr) = run(&["--call", "token-stream"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--call token-stream needs --tokens FILE"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--call", "token-validate", "--tokens", "/nonexistent"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot read --tokens /nonexistent"),
        "{stderr}"
    );
    let tokens = tokens.to_str().expect("UTF-8");
    let (code, stderr) = run(&[
        "--call",
        "token-stream",
        "--tokens",
        tokens,
        "--fresh-connection",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--fresh-connection is for unary calls"),
        "{stderr}"
    );
}

/// The elements of the SVG file `path` by local name, as Python's own XML parser reads them
/// (a file it cannot parse fails the test).
fn svg_elements(path: &std::path::Path) -> serde_json::Value {
    let script = r#"
import collections, json, sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
counts = collections.Counter(e.tag.rsplit("}", 1)[-1] for e in root.iter())
texts = [(e.text or "").strip() for e in root.iter() if e.tag.endswith("}text")]
# Series are drawn 2 wide; axes and ticks 1.
series = sum(1 for e in root.iter() if e.tag.endswith("}polyline") and e.get("stroke-width") == "2")
print(json.dumps({"counts": counts, "texts": texts, "series": series}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs (ci/setup installs it)");
    assert!(
        out.status.success(),
        "not valid SVG: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the checker")
}

#[test]
fn compare_refuses_what_is_not_a_report_before_any_call() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let not_json = dir.path().join("notes.txt");
    std::fs::write(&not_json, "p99 was fine").expect("write");
    let no_distribution = dir.path().join("old.json");
    std::fs::write(&no_distribution, r#"{"call":"greeting-v2"}"#).expect("write");
    let plot = dir.path().join("plot.svg");
    for (compared, says) in [
        (&not_json, "not a JSON report"),
        (&no_distribution, "holds no latency_distribution"),
    ] {
        // Nothing listens on port 1: a run would fail on connecting, after the check.
        let out = Command::new(CLIENT)
            .args(["--server", "127.0.0.1:1", "bench", "--plot"])
            .arg(&plot)
            .arg("--compare")
            .arg(compared)
            .output()
            .expect("the client runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("--compare {}", compared.display())) && stderr.contains(says),
            "{stderr}"
        );
        assert!(!plot.exists(), "no plot from a refused run");
    }
    let out = Command::new(CLIENT)
        .args(["--server", "127.0.0.1:1", "bench", "--compare"])
        .arg(&no_distribution)
        .output()
        .expect("the client runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "--compare without --plot is a usage error"
    );
}

/// A token service that answers every question twice: not ours, but the bench loads any
/// server of the contract, a faulty one too.
#[derive(Clone)]
struct AnswersTwice;

impl mrmat_rust_api_grpc::proto::TokenV1Proto for AnswersTwice {
    fn validate(
        &mut self,
        ctx: grpcio::RpcContext,
        _req: mrmat_rust_api_grpc::proto::TokenV1Input,
        sink: grpcio::UnarySink<mrmat_rust_api_grpc::proto::TokenV1Output>,
    ) {
        ctx.spawn(async move {
            let _ = sink.success(Default::default()).await;
        });
    }

    fn validate_stream(
        &mut self,
        ctx: grpcio::RpcContext,
        mut questions: grpcio::RequestStream<mrmat_rust_api_grpc::proto::TokenV1Input>,
        mut sink: grpcio::DuplexSink<mrmat_rust_api_grpc::proto::TokenV1Output>,
    ) {
        use futures::{SinkExt as _, TryStreamExt as _};
        ctx.spawn(async move {
            while let Ok(Some(question)) = questions.try_next().await {
                let mut answer = mrmat_rust_api_grpc::proto::TokenV1Output::new();
                answer.request_id = question.request_id;
                for _ in 0..2 {
                    let flags = grpcio::WriteFlags::default();
                    if sink.send((answer.clone(), flags)).await.is_err() {
                        return;
                    }
                }
            }
            let _ = sink.close().await;
        });
    }

    fn revoke(
        &mut self,
        ctx: grpcio::RpcContext,
        _req: mrmat_rust_api_grpc::proto::TokenV1RevokeInput,
        sink: grpcio::UnarySink<mrmat_rust_api_grpc::proto::StatusOutput>,
    ) {
        ctx.spawn(async move {
            let _ = sink.success(Default::default()).await;
        });
    }
}

#[test]
fn a_stream_that_answers_more_than_it_was_asked_is_an_error_in_the_report() {
    let (_server, port) = common::serve_in_process(
        mrmat_rust_api_grpc::proto::create_token_v1_proto(AnswersTwice),
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, "a.b.c\n").expect("write the tokens");

    let report = bench_json(
        &format!("127.0.0.1:{port}"),
        &[
            "--call",
            "token-stream",
            "--tokens",
            tokens.to_str().expect("UTF-8"),
            "--calls",
            "50",
            "--warmup",
            "0",
            "--connections",
            "1",
            "--in-flight",
            "4",
        ],
    );
    let errors = report["errors"].as_object().expect("errors by status");
    assert!(
        errors
            .keys()
            .any(|e| e.contains("more answers than questions")),
        "{report}"
    );
}

/// Against the Python original's design, a Python grpcio peer (`ci/test --quick` skips it).
mod with_python {
    use super::*;

    #[test]
    fn plot_draws_this_run_beside_the_reports_it_compares_as_python_reads_the_svg() {
        let server = spawn_server();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let runs = ["4 in flight", "16 in flight"];
        let mut reports = Vec::new();
        for (run, in_flight) in runs.iter().zip(["4", "16"]) {
            let report = bench_json(
                &server.address,
                &["--calls", "400", "--warmup", "0", "--in-flight", in_flight],
            );
            let distribution = report["latency_distribution"]
                .as_array()
                .expect("a latency distribution");
            let percentiles: Vec<f64> = distribution
                .iter()
                .map(|p| p[0].as_f64().expect("a percentile"))
                .collect();
            assert_eq!(percentiles.first(), Some(&0.0), "{report}");
            assert_eq!(percentiles.last(), Some(&100.0), "{report}");
            assert!(percentiles.windows(2).all(|w| w[0] < w[1]), "{report}");
            let max = distribution.last().expect("the max")[1].as_f64();
            assert_eq!(max, report["latency_ms"]["max"].as_f64(), "{report}");
            let path = dir.path().join(format!("{}.json", run.replace(' ', "-")));
            std::fs::write(&path, report.to_string()).expect("save the report");
            reports.push(path);
        }

        let plot = dir.path().join("latency.svg");
        let out = Command::new(CLIENT)
            .args([
                "--server",
                &server.address,
                "bench",
                "--calls",
                "400",
                "--warmup",
                "0",
            ])
            .arg("--plot")
            .arg(&plot)
            .arg("--compare")
            .arg(&reports[0])
            .arg("--compare")
            .arg(&reports[1])
            .output()
            .expect("the client runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = svg_elements(&plot);
        assert_eq!(
            svg["series"], 3,
            "one line per run (this one and the two compared): {svg}"
        );
        let texts: Vec<&str> = svg["texts"]
            .as_array()
            .expect("texts")
            .iter()
            .filter_map(|t| t.as_str())
            .collect();
        for label in [
            "this run: greeting-v2",
            "4-in-flight.json",
            "16-in-flight.json",
        ] {
            assert!(
                texts.iter().any(|t| t.contains(label)),
                "a legend entry for {label}: {texts:?}"
            );
        }
        for axis in ["99%", "percentile", "latency (ms)"] {
            assert!(texts.contains(&axis), "{axis} on an axis: {texts:?}");
        }
    }
}
