//! The HTTP serving layer against a hostile client, through the server binary's metrics port
//! (the forward-auth port is served by the same layer): every attack is answered with a status
//! that says what was wrong, is bounded in what it costs, and never delays another client.

use crate::common;

use std::time::Duration;

use common::holds_within;
use common::hostile::{self, Raw};
use common::{rss_kib, ServerProcess};

fn metrics_server(extra: &[&str]) -> (ServerProcess, String) {
    let mut args = vec!["--store", "memory", "--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(&args);
    let address = server.metrics_address().expect("a metrics address");
    (server, address)
}

/// `mrmat_http_refusals_total` of the metrics port for `reason` (0 before the first); None
/// when the scrape is not answered 200 (the connection cap, say).
fn refusals_now(server: &ServerProcess, reason: &str) -> Option<f64> {
    let address = server.metrics_address().expect("a metrics address");
    let scrape = hostile::get(&address, "/metrics").filter(|scrape| scrape.status == 200)?;
    let series = format!(r#"mrmat_http_refusals_total{{port="metrics",reason="{reason}"}} "#);
    Some(
        scrape
            .body
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0.0, |value| value.parse().expect("a number")),
    )
}

/// As [`refusals_now`], once a scrape is answered (connections close asynchronously).
fn refusals(server: &ServerProcess, reason: &str) -> f64 {
    let mut found = None;
    holds_within(Duration::from_secs(10), || {
        found = refusals_now(server, reason);
        found.is_some()
    });
    found.expect("a scrape answered within 10 s")
}

/// Another client, meanwhile, is answered at once.
fn still_serves(address: &str) {
    let answer = hostile::get(address, "/metrics").expect("an answer to a second client");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("process_"), "{answer:?}");
}

#[test]
fn a_head_over_the_limit_is_431_and_a_long_request_line_414_after_the_answers_before_them() {
    let (server, address) = metrics_server(&["--http-max-head-bytes", "4096"]);
    // Within the limit, pipelined: answered in order.
    let mut raw = Raw::connect(&address);
    let header = format!("X-Filler: {}\r\n", "f".repeat(3000));
    let ok = format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{header}\r\n");
    let too_large = format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{header}{header}\r\n");
    assert!(raw.send(format!("{ok}{ok}{too_large}").as_bytes()));
    for _ in 0..2 {
        assert_eq!(raw.answer().expect("an answer").status, 200);
    }
    let refused = raw.answer().expect("the refusal");
    assert_eq!(refused.status, 431, "{refused:?}");
    assert!(
        refused.body.contains("longer than 4096 bytes"),
        "{refused:?}"
    );
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(raw.closed_within(Duration::from_secs(5)));

    let mut raw = Raw::connect(&address);
    assert!(raw.get(&format!("/metrics?{}", "q".repeat(5000))));
    let refused = raw.answer().expect("the refusal");
    assert_eq!(refused.status, 414, "{refused:?}");
    assert!(
        refused.body.contains("request line is longer than 4096"),
        "{refused:?}"
    );
    still_serves(&address);
    assert_eq!(refusals(&server, "head_too_large"), 1.0);
    assert_eq!(refusals(&server, "request_line_too_long"), 1.0);
}

#[test]
fn a_header_that_never_ends_costs_no_more_memory_than_the_limit() {
    let (server, address) = metrics_server(&[]);
    still_serves(&address);
    let before = rss_kib(server.pid());
    // 256 MiB offered; once past the 32 KiB limit the server stops reading and answers.
    let (sent, answer) = hostile::endless_header(&address, 256 << 20);
    let after = rss_kib(server.pid());
    let answer = answer.expect("an answer to the endless header");
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB after {sent} bytes of one header"
    );
    still_serves(&address);
}

#[test]
fn a_head_that_does_not_arrive_in_time_is_408_and_an_idle_connection_is_closed() {
    let (server, address) =
        metrics_server(&["--http-request-timeout", "0.5", "--http-idle-timeout", "1"]);
    let mut slow = Raw::connect(&address);
    assert!(slow.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n"));
    let refused = slow.answer().expect("the timeout's answer");
    assert_eq!(refused.status, 408, "{refused:?}");
    assert!(refused.body.contains("within 0.5 s"), "{refused:?}");

    // Idle: answered, then left alone; the server closes it, without an answer.
    let mut idle = Raw::connect(&address);
    assert!(idle.get("/metrics"));
    assert_eq!(idle.answer().expect("an answer").status, 200);
    assert!(idle.closed_within(Duration::from_secs(5)));
    still_serves(&address);
    assert_eq!(refusals(&server, "head_timeout"), 1.0);
}

#[test]
fn a_client_that_pipelines_and_never_reads_delays_no_other_and_is_let_go() {
    let (server, address) = metrics_server(&["--http-request-timeout", "1"]);
    still_serves(&address);
    let before = rss_kib(server.pid());
    let attacker = hostile::pipeline_without_reading(&address, "/metrics", 20_000);
    for _ in 0..4 {
        still_serves(&address);
    }
    // Its answers back up in its own socket; once one has not been taken for the request
    // timeout, the server closes its end (the attacker, who reads nothing, still holds its own).
    assert!(
        holds_within(Duration::from_secs(30), || {
            refusals_now(&server, "write_timeout") == Some(1.0)
        }),
        "the non-reading connection is closed for its write timeout"
    );
    drop(attacker);
    let after = rss_kib(server.pid());
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    still_serves(&address);
}

#[test]
fn a_thousand_idle_connections_are_held_on_a_fixed_number_of_threads() {
    let (server, address) = metrics_server(&[]);
    still_serves(&address);
    let before = hostile::threads(server.pid());
    let idle = hostile::idle_connections(&address, 1000);
    still_serves(&address);
    let during = hostile::threads(server.pid());
    let open = server
        .metric(r#"mrmat_http_connections{port="metrics"}"#)
        .expect("the connections gauge");
    assert!(open >= 1000.0, "{open} connections counted");
    assert!(
        during <= before + 1,
        "{during} threads with 1,000 idle connections, {before} before"
    );
    // Held, not dropped: each still gets its answer.
    let mut last = Raw::from(idle.into_iter().last().expect("a connection"));
    assert!(last.get("/metrics"));
    assert_eq!(last.answer().expect("an answer").status, 200);
}

#[test]
fn beyond_the_connection_cap_a_new_client_is_told_503_and_served_once_one_closes() {
    let (server, address) = metrics_server(&["--http-max-connections", "8"]);
    let mut held = hostile::idle_connections(&address, 8);
    // All 8 are accepted once the first of them is answered.
    let mut first = Raw::from(held.remove(0));
    assert!(first.get("/metrics"));
    assert_eq!(first.answer().expect("an answer").status, 200);
    let turned_away = holds_within(Duration::from_secs(10), || {
        hostile::get(&address, "/metrics").is_some_and(|answer| answer.status == 503)
    });
    assert!(turned_away, "the ninth connection is answered 503");
    let answer = hostile::get(&address, "/metrics").expect("an answer");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
    assert!(answer.body.contains("8 connections open"), "{answer:?}");
    drop(first);
    assert!(
        holds_within(Duration::from_secs(10), || {
            hostile::get(&address, "/metrics").is_some_and(|answer| answer.status == 200)
        }),
        "served again once a connection closed"
    );
    assert!(refusals(&server, "too_many_connections") >= 2.0);
}

#[test]
fn a_body_is_left_unread_a_malformed_request_400_and_the_port_keeps_serving() {
    let (server, address) = metrics_server(&[]);
    // Answered by its head, then closed: the body (here 1 MiB with no line end, which read as a
    // head would be refused) is never read, and nothing else is answered.
    let mut raw = Raw::connect(&address);
    let body = vec![b'x'; 1 << 20];
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert!(raw.send(head.as_bytes()));
    let writer = raw.try_clone_stream();
    let sending = std::thread::spawn(move || {
        let mut writer = writer;
        let _ = std::io::Write::write_all(&mut writer, &body);
    });
    let answered = raw.answer().expect("an answer");
    assert_eq!(answered.status, 200, "{answered:?}");
    assert_eq!(answered.header("connection"), Some("close"));
    assert!(raw.closed_within(Duration::from_secs(5)));
    assert!(raw.answer().is_none(), "one answer only");
    sending.join().expect("the sender ends");
    let mut raw = Raw::connect(&address);
    assert!(raw.send(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"));
    assert_eq!(raw.answer().expect("an answer").status, 405);
    assert!(raw.closed_within(Duration::from_secs(5)));

    let mut raw = Raw::connect(&address);
    assert!(raw.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n"));
    let refused = raw.answer().expect("an answer");
    assert_eq!(refused.status, 400, "{refused:?}");

    let mut raw = Raw::connect(&address);
    assert!(raw.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"));
    let refused = raw.answer().expect("an answer to a TLS hello");
    assert_eq!(refused.status, 400, "{refused:?}");

    let answer = hostile::get(&address, "/nothing").expect("an answer");
    assert_eq!(answer.status, 404, "{answer:?}");
    let mut raw = Raw::connect(&address);
    assert!(raw.send(b"DELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n"));
    let refused = raw.answer().expect("an answer");
    assert_eq!(refused.status, 405, "{refused:?}");
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    still_serves(&address);
    assert_eq!(refusals(&server, "body"), 2.0);
}

#[test]
fn http_1_1_without_host_or_with_two_is_400_and_closed_and_http_1_0_without_is_served() {
    let (server, address) = metrics_server(&[]);
    for head in [
        "GET /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: user@metrics\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: metrics:port\r\n\r\n",
    ] {
        let mut raw = Raw::connect(&address);
        assert!(raw.send(head.as_bytes()));
        let refused = raw.answer().expect("an answer");
        assert_eq!(refused.status, 400, "{head:?}: {refused:?}");
        assert!(refused.body.contains("Host"), "{refused:?}");
        assert_eq!(refused.header("connection"), Some("close"), "{head:?}");
        assert!(raw.closed_within(Duration::from_secs(5)), "{head:?}");
    }
    let mut raw = Raw::connect(&address);
    assert!(raw.send(b"GET /metrics HTTP/1.0\r\n\r\n"));
    assert_eq!(raw.answer().expect("an answer").status, 200);
    for host in ["metrics", "metrics:9464", "[::1]:9464", "127.0.0.1"] {
        let mut raw = Raw::connect(&address);
        assert!(raw.send(format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()));
        assert_eq!(raw.answer().expect("an answer").status, 200, "{host}");
    }
    assert_eq!(refusals(&server, "bad_host"), 4.0);
}

#[test]
fn http_limits_out_of_range_stop_the_server_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"))
        .args(["--store", "memory", "--http-max-head-bytes", "100"])
        .output()
        .expect("the server runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--http-max-head-bytes"), "{stderr}");
    assert!(stderr.contains("1024"), "{stderr}");
}

#[test]
fn out_of_file_descriptors_the_port_says_so_once_and_serves_again_when_some_close() {
    // The hard limit is the server's whole allowance: it cannot raise its soft limit past it.
    let prefix: Vec<String> = ["sh", "-c", r#"ulimit -n 128 && exec "$0" "$@""#]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let server = ServerProcess::start_under(
        &prefix,
        &["--store", "memory", "--metrics-listen", "127.0.0.1:0"],
        "info",
    );
    let address = server.metrics_address().expect("a metrics address");
    still_serves(&address);
    // More connections than the process may have files: the port runs out of them.
    // (200: past the 128 files, within what the listen backlog holds beyond them.)
    let idle = hostile::idle_connections(&address, 200);
    let said = server
        .log
        .line_containing("cannot accept connections", Duration::from_secs(10))
        .expect("the port says it cannot accept");
    assert!(said.contains("WARN"), "{said}");
    drop(idle);
    assert!(
        holds_within(Duration::from_secs(10), || {
            hostile::get(&address, "/metrics").is_some_and(|answer| answer.status == 200)
        }),
        "served again once connections closed"
    );
    let again = server
        .log
        .line_containing("accepts connections again", Duration::from_secs(10));
    assert!(again.is_some(), "it says it accepts again");
    assert_eq!(
        server.log.count_containing("cannot accept connections"),
        0,
        "said once, not every 100 ms"
    );
}
