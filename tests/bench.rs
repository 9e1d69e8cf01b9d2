//! The client's `bench` as a short smoke run: a few hundred calls of each workload against a real
//! server, with a report that is complete and consistent. (Against the Python server: see
//! tests/interop.rs. Figures are measured by the bench, never asserted by tests.)

mod common;

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
