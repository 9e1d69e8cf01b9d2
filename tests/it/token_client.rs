//! The token validator that apps embed (`client::TokenValidator`) and the CLI built on it,
//! against the server binary run as a child process and then faulted: SIGKILL and a restart on
//! the same port, SIGTERM with its drain, SIGSTOP (a silent peer), and the `--stream` pipe
//! across a restart. Every question gets exactly one answer, the right one, and none is lost.

use crate::common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::jwt::{claims, token_args, KeyFile, SigningKey};
use common::{OutputLines, ServerProcess};
use mrmat_rust_api_grpc::client::{
    ConnectErrorKind, ServersErrorKind, TlsOptions, TokenValidator, ValidatorConfig,
};
use mrmat_rust_api_grpc::proto::TokenV1Verdict;

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");

fn start(keys: &KeyFile, extra: &[&str]) -> ServerProcess {
    let args = token_args(keys);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

/// A key file with `key`, `count` tokens signed with it, and the server binary using both.
fn serve(
    key: &SigningKey,
    count: usize,
    extra: &[&str],
) -> (KeyFile, Arc<Vec<String>>, ServerProcess) {
    let keys = KeyFile::new(&[key]);
    let server = start(&keys, extra);
    (keys, tokens(key, count), server)
}

/// `count` tokens, token `n` for subject `user{n}`, so an answer shows whose question it was.
fn tokens(key: &SigningKey, count: usize) -> Arc<Vec<String>> {
    Arc::new(
        (0..count)
            .map(|n| key.sign(&claims(&format!("user{n}"))))
            .collect(),
    )
}

/// Validations from several threads at a few hundred a second, each checked against the
/// subject its token was made for.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<Vec<String>>>,
}

impl Load {
    const THREADS: usize = 4;

    fn start(validator: &Arc<TokenValidator>, tokens: &Arc<Vec<String>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let threads = (0..Self::THREADS)
            .map(|t| {
                let (validator, tokens) = (Arc::clone(validator), Arc::clone(tokens));
                let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
                thread::spawn(move || {
                    let mut problems = Vec::new();
                    let mut n = t;
                    while !stop.load(Ordering::Relaxed) {
                        let index = n % tokens.len();
                        match validator.validate(&tokens[index]) {
                            Ok(answer) => {
                                let answer = answer.output();
                                let valid = answer.verdict.enum_value_or_default()
                                    == TokenV1Verdict::TOKEN_V1_VALID;
                                if !valid || answer.subject != format!("user{index}") {
                                    problems.push(format!(
                                        "token {index}: {:?} for {:?}",
                                        answer.status.message, answer.subject
                                    ));
                                }
                            }
                            Err(e) => problems.push(format!("token {index}: {e}")),
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                        n += Self::THREADS;
                        // About a hundred a second per thread.
                        thread::sleep(Duration::from_millis(10));
                    }
                    problems
                })
            })
            .collect();
        Self {
            stop,
            answered,
            threads,
        }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits until `more` further validations have been answered.
    fn wait_for(&self, more: u64, timeout: Duration) {
        let target = self.answered() + more;
        common::wait_until("validations answered", timeout, || {
            self.answered() >= target
        });
    }

    /// Stops the threads; returns how many validations were made and every problem seen.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let problems = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("a load thread"))
            .collect();
        (self.answered.load(Ordering::Relaxed), problems)
    }
}

/// Fails with the first few of `problems`, if there are any.
#[track_caller]
fn assert_every_answer_right(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problems: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
}

/// A validator with deadlines long enough to ride out a restart, and keepalive tight enough
/// to catch a silent server fast.
fn validator(address: &str) -> Arc<TokenValidator> {
    let config = ValidatorConfig {
        timeout: Duration::from_secs(30),
        keepalive_time: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        ..ValidatorConfig::default()
    };
    Arc::new(TokenValidator::connect(address, &TlsOptions::default(), config).expect("connect"))
}

#[test]
fn sigkill_and_a_restart_on_the_same_port_lose_no_validation() {
    let key = SigningKey::p256("k1");
    let (keys, tokens, mut server) = serve(&key, 200, &[]);
    let address = server.address.clone();
    let validator = validator(&address);
    let load = Load::start(&validator, &tokens);
    load.wait_for(200, Duration::from_secs(30));

    server.signal("KILL");
    server
        .wait_for_exit(Duration::from_secs(10))
        .expect("killed");
    let restarted = start(&keys, &["--listen", &address]);
    load.wait_for(200, Duration::from_secs(30));
    let (made, problems) = load.finish();

    assert_every_answer_right(&problems);
    let stats = validator.stats();
    assert!(
        stats.stream_failures >= 1 && stats.streams_opened >= 2,
        "{stats:?}"
    );
    assert!(made >= 400, "{made} validations");
    assert_eq!((stats.in_flight, stats.queued), (0, 0), "{stats:?}");
    validator.close();
    drop(restarted);
}

#[test]
fn sigterm_ends_the_stream_with_unavailable_and_the_validator_moves_to_the_restarted_server() {
    let key = SigningKey::ed25519("k1");
    let (keys, tokens, mut server) = serve(&key, 200, &["--drain-delay", "0.2"]);
    let address = server.address.clone();
    let validator = validator(&address);
    let load = Load::start(&validator, &tokens);
    load.wait_for(200, Duration::from_secs(30));

    assert_eq!(validator.stats().stream_failures, 0);
    server.terminate();
    let status = server
        .wait_for_exit(Duration::from_secs(20))
        .expect("it stops");
    assert!(status.success(), "{status}");
    // The client may see the stream end after the process has gone; the first failure is it.
    common::wait_until("the stream's end seen", Duration::from_secs(10), || {
        validator.stats().stream_failures >= 1
    });
    let failure = validator.stats().recent_failures[0].clone();
    assert!(
        failure.starts_with("UNAVAILABLE") && failure.contains("shutting down"),
        "{failure}"
    );
    let _restarted = start(&keys, &["--listen", &address]);
    load.wait_for(200, Duration::from_secs(30));
    let (_, problems) = load.finish();

    assert_every_answer_right(&problems);
    assert!(validator.stats().streams_opened >= 2);
}

#[test]
fn a_silent_server_is_caught_by_keepalive_and_nothing_is_lost_after_sigcont() {
    let key = SigningKey::rsa("k1", jsonwebtoken::Algorithm::RS256);
    let (_keys, tokens, server) = serve(&key, 200, &[]);
    let validator = validator(&server.address);
    let load = Load::start(&validator, &tokens);
    load.wait_for(300, Duration::from_secs(30));
    // Client pings every second agree with the server's policy: no GOAWAY, no failure yet.
    assert_eq!(
        validator.stats().stream_failures,
        0,
        "{:?}",
        validator.stats()
    );

    server.signal("STOP");
    let stopped = Instant::now();
    // keepalive_time + keepalive_timeout is 2 s (measured: 2.15-2.19 s); slack for a busy host.
    common::wait_until(
        "the silent server noticed",
        Duration::from_millis(3500),
        || validator.stats().stream_failures >= 1,
    );
    let noticed = stopped.elapsed();
    let failure = validator.stats().last_failure.unwrap_or_default();
    server.signal("CONT");
    load.wait_for(300, Duration::from_secs(30));
    let (_, problems) = load.finish();

    assert!(failure.starts_with("UNAVAILABLE"), "{failure}");
    assert!(
        noticed >= Duration::from_millis(500),
        "noticed after {noticed:?}, too soon"
    );
    assert_every_answer_right(&problems);
}

#[test]
fn a_lone_question_goes_at_once_and_questions_that_come_together_share_messages() {
    let key = SigningKey::p256("k1");
    let (_keys, tokens, server) = serve(&key, 50, &[]);
    let validator = validator(&server.address);
    let first = validator.validate(&tokens[0]).expect("answered");
    assert_eq!(first.output().subject, "user0");
    let before = validator.stats();
    let started = Instant::now();
    let alone = validator.validate(&tokens[1]).expect("answered");
    let took = started.elapsed();
    let after = validator.stats();
    assert_eq!(alone.output().subject, "user1");
    assert_eq!(
        (after.sent - before.sent, after.messages - before.messages),
        (1, 1),
        "one question, one message, answered in {took:?}"
    );

    let waiting: Vec<_> = (0..1000)
        .map(|n| {
            (
                n % tokens.len(),
                validator.validate_async(&tokens[n % tokens.len()]),
            )
        })
        .collect();
    for (n, answer) in waiting {
        let answer = futures::executor::block_on(answer).expect("answered");
        assert_eq!(answer.output().subject, format!("user{n}"));
    }
    let end = validator.stats();
    let (sent, messages) = (end.sent - after.sent, end.messages - after.messages);
    assert_eq!(sent, 1000, "{end:?}");
    // Asked faster than a write takes, they leave many to a message, not one each.
    assert!(
        messages * 4 <= sent,
        "{sent} questions in {messages} messages"
    );
    validator.close();
}

#[test]
fn questions_whose_answers_come_in_several_messages_are_each_answered_with_their_claims() {
    let key = SigningKey::p256("k1");
    let keys = KeyFile::new(&[&key]);
    let server = start(&keys, &[]);
    let validator = validator(&server.address);
    // Asked together, they leave in batches whose answers (some 32 KB each) the server sends in
    // messages of at most 256 KiB.
    let tokens: Vec<String> = (0..300)
        .map(|n| {
            key.sign(&common::jwt::claims_with_numbers(
                &format!("user{n}"),
                2_900,
            ))
        })
        .collect();
    let waiting: Vec<_> = tokens.iter().map(|t| validator.validate_async(t)).collect();
    for (n, answer) in waiting.into_iter().enumerate() {
        let answer = futures::executor::block_on(answer).expect("answered");
        assert_eq!(answer.output().subject, format!("user{n}"));
        let claims = answer.claims().expect("the claims decode");
        assert_eq!(claims.fields["n"].list_value().values.len(), 2_900);
    }
    let stats = validator.stats();
    assert!(
        stats.messages < 300,
        "{stats:?}: asked together, sent together"
    );
    validator.close();
}

#[test]
fn close_answers_or_fails_every_waiting_caller() {
    let key = SigningKey::p256("k1");
    let (_keys, tokens, server) = serve(&key, 50, &[]);
    let validator = validator(&server.address);
    server.signal("STOP");
    let waiting: Vec<_> = tokens.iter().map(|t| validator.validate_async(t)).collect();

    let started = Instant::now();
    validator.close_within(Duration::from_millis(300));
    let closed_in = started.elapsed();
    server.signal("CONT");

    for answer in waiting {
        let error =
            futures::executor::block_on(answer).expect_err("no answer from a stopped server");
        assert_eq!(error.to_string(), "the validator is closed");
    }
    assert!(closed_in < Duration::from_secs(5), "{closed_in:?}");
    assert!(
        validator.validate(&tokens[0]).is_err(),
        "closed stays closed"
    );
}

#[test]
fn questions_beyond_the_bound_wait_for_room_and_fail_fast_past_the_queue() {
    let key = SigningKey::p256("k1");
    let (_keys, tokens, server) = serve(&key, 20, &[]);
    let config = ValidatorConfig {
        max_in_flight: 2,
        max_queued: 3,
        ..ValidatorConfig::default()
    };
    let validator =
        TokenValidator::connect(&server.address, &TlsOptions::default(), config).expect("connect");
    server.signal("STOP");
    let waiting: Vec<_> = tokens[..5]
        .iter()
        .map(|t| validator.validate_async(t))
        .collect();
    let refused = futures::executor::block_on(validator.validate_async(&tokens[5]));
    server.signal("CONT");

    assert_eq!(
        refused.expect_err("past the queue").to_string(),
        "5 validations are waiting already; this one was not queued"
    );
    for (n, answer) in waiting.into_iter().enumerate() {
        let answer = futures::executor::block_on(answer).expect("queued, then answered");
        assert_eq!(answer.output().subject, format!("user{n}"));
        // The app gets the whole claim set too, when it asks.
        let claims = answer.claims().expect("the claims decode");
        let sub = claims.fields.get("sub").map(|v| v.string_value());
        assert_eq!(sub, Some(format!("user{n}").as_str()));
    }
}

#[test]
fn the_stream_pipe_keeps_every_line_in_order_across_a_server_restart() {
    let key = SigningKey::p256("k1");
    let (keys, tokens, mut server) = serve(&key, 4000, &[]);
    let address = server.address.clone();
    let mut cli = Command::new(CLIENT)
        .args(["--server", &address, "--timeout", "30"])
        .args(["token", "v1", "validate", "--stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client runs");
    let mut stdin = cli.stdin.take().expect("piped");
    let lines = OutputLines::read(cli.stdout.take().expect("piped"));
    let stderr = OutputLines::read(cli.stderr.take().expect("piped"));
    let half = tokens.len() / 2;
    for token in &tokens[..half] {
        writeln!(stdin, "{token}").expect("write a line");
    }
    stdin.flush().expect("flush");
    let first = lines.line_containing("sub=user0 ", Duration::from_secs(30));
    assert!(first.is_some(), "the first answer came");

    server.signal("KILL");
    server
        .wait_for_exit(Duration::from_secs(10))
        .expect("killed");
    let _restarted = start(&keys, &["--listen", &address]);
    // An empty line is a token too: the server calls it malformed, in its place.
    writeln!(stdin).expect("write a line");
    for token in &tokens[half..] {
        writeln!(stdin, "{token}").expect("write a line");
    }
    drop(stdin);
    let status = cli.wait().expect("the client ends");
    let mut got = vec![first.expect("checked")];
    while let Some(line) = lines.line_containing("", Duration::from_secs(5)) {
        got.push(line);
    }

    assert!(
        status.success(),
        "{status}: {:?}",
        stderr.line_containing("", Duration::ZERO)
    );
    assert_eq!(got.len(), tokens.len() + 1, "one line out per line in");
    for (n, line) in got.iter().enumerate() {
        let expected = match n.cmp(&half) {
            std::cmp::Ordering::Less => format!("[200] Valid: sub=user{n} "),
            std::cmp::Ordering::Equal => "[401] Malformed: ".to_owned(),
            std::cmp::Ordering::Greater => format!("[200] Valid: sub=user{} ", n - 1),
        };
        assert!(line.starts_with(&expected), "line {}: {line}", n + 1);
    }
}

#[test]
fn the_stream_pipe_answers_a_line_not_utf8_or_over_long_in_place_and_every_other_line() {
    let key = SigningKey::p256("k1");
    let (_keys, tokens, server) = serve(&key, 700, &[]);
    const LONG_LINE: usize = 100 << 20;
    let feed = {
        let tokens = tokens.clone();
        move |mut stdin: std::process::ChildStdin| {
            let lines = |stdin: &mut std::process::ChildStdin, tokens: &[String]| {
                for token in tokens {
                    stdin
                        .write_all(format!("{token}\n").as_bytes())
                        .expect("a token line taken");
                }
            };
            lines(&mut stdin, &tokens[..600]);
            stdin
                .write_all(b"eyJ\xff\xfe.not.utf8\n")
                .expect("the line taken");
            // 100 MiB on one line, written a MiB at a time: read up to the limit and
            // counted, never held.
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..LONG_LINE / chunk.len() {
                stdin.write_all(&chunk).expect("the long line taken");
            }
            stdin.write_all(b"\n").expect("its end taken");
            lines(&mut stdin, &tokens[600..]);
        }
    };
    let mut cli = Command::new(CLIENT);
    cli.args(["--server", &server.address, "--timeout", "30"])
        .args(["token", "v1", "validate", "--stream"]);

    let (out, peak_kib) = common::output_and_peak_kib(&mut cli, Some(Box::new(feed)));

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 answers");
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got.len(), tokens.len() + 2, "one line out per line in");
    for (n, line) in got.iter().enumerate() {
        let expected = match n {
            600 => "[401] Malformed: the line is not UTF-8".to_owned(),
            601 => format!("[401] Malformed: the token is {LONG_LINE} bytes long"),
            n if n < 600 => format!("[200] Valid: sub=user{n} "),
            n => format!("[200] Valid: sub=user{} ", n - 2),
        };
        assert!(line.starts_with(&expected), "line {}: {line}", n + 1);
    }
    // The token limit and a read buffer on top of the client itself, whatever the line's length.
    assert!(peak_kib < 48 * 1024, "the client peaked at {peak_kib} KiB");
}

#[test]
fn the_cli_against_a_refused_port_says_so_in_one_line() {
    let port = common::free_port();
    let out = Command::new(CLIENT)
        .args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "2"])
        .args(["token", "v1", "validate", "abc"])
        .env_remove("RUST_LOG")
        .output()
        .expect("the client runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
}

#[test]
fn the_cli_validates_mints_and_prints_a_key_set_a_server_accepts() {
    let dir = tempfile::tempdir().expect("a folder");
    let pem = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&pem)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let client = |args: &[&str]| {
        let out = Command::new(CLIENT)
            .args(args)
            .output()
            .expect("the client runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let key = pem.to_str().expect("a UTF-8 path");
    let (code, jwks, stderr) = client(&["token", "v1", "jwks", "--key", key, "--kid", "cli"]);
    assert_eq!(code, Some(0), "{stderr}");
    let keys = dir.path().join("jwks.json");
    std::fs::write(&keys, &jwks).expect("write the key set");
    let (code, minted, stderr) = client(&[
        "token",
        "v1",
        "mint",
        "--key",
        key,
        "--kid",
        "cli",
        "--issuer",
        common::jwt::ISSUER,
        "--subject",
        "alice",
        "--audience",
        common::jwt::AUDIENCE,
        "--scope",
        "read",
        "--scope",
        "write",
        "--count",
        "3",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let minted: Vec<&str> = minted.lines().collect();
    let server = ServerProcess::start(&[
        "--jwks-file",
        keys.to_str().expect("UTF-8"),
        "--token-issuer",
        common::jwt::ISSUER,
        "--token-audience",
        common::jwt::AUDIENCE,
    ]);

    let mut args = vec![
        "--server",
        server.address.as_str(),
        "token",
        "v1",
        "validate",
    ];
    args.extend(minted.iter().copied());
    args.push("not-a-token");
    let (code, out, stderr) = client(&args);

    assert_eq!(code, Some(0), "{stderr}");
    let out: Vec<&str> = out.lines().collect();
    assert_eq!(out.len(), 4, "{out:?}");
    for line in &out[..3] {
        assert!(
            line.starts_with(&format!(
                "[200] Valid: sub=alice iss={} aud={} exp=",
                common::jwt::ISSUER,
                common::jwt::AUDIENCE
            )) && line.contains(" scopes=read,write jti="),
            "{line}"
        );
    }
    assert!(out[3].starts_with("[401] Malformed: "), "{}", out[3]);
    let jtis: std::collections::HashSet<&str> = out[..3]
        .iter()
        .filter_map(|l| l.split(" jti=").nth(1))
        .collect();
    assert_eq!(jtis.len(), 3, "each minted token has its own jti");

    let (code, json, _) = client(&[
        "--server",
        &server.address,
        "--output",
        "json",
        "token",
        "v1",
        "validate",
        minted[0],
    ]);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(json["verdict"], "TOKEN_V1_VALID", "{json}");
    assert_eq!(json["subject"], "alice", "{json}");
    assert_eq!(
        json["claims"]["sub"], "alice",
        "--output json shows every claim: {json}"
    );

    let (code, _, stderr) = client(&[
        "token",
        "v1",
        "mint",
        "--key",
        key,
        "--kid",
        "k",
        "--alg",
        "RS256",
        "--issuer",
        "i",
        "--subject",
        "s",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--alg RS256 does not fit this key; it signs with ES256"),
        "{stderr}"
    );
    let (code, _, stderr) = client(&[
        "token",
        "v1",
        "jwks",
        "--key",
        "/nonexistent.pem",
        "--kid",
        "k",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read /nonexistent.pem"), "{stderr}");
}

#[test]
fn the_cli_says_why_when_no_server_answers_in_time() {
    // A port nothing listens on: connection refused, again and again, until the deadline.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("an address").to_string();
    drop(listener);
    let out = Command::new(CLIENT)
        .args([
            "--server",
            &address,
            "--timeout",
            "0.5",
            "token",
            "v1",
            "validate",
            "a.b.c",
        ])
        .output()
        .expect("the client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the server at {address}: token 1: no answer within"
        )) && stderr
            .contains("the validation stream is down, reconnecting (last ended UNAVAILABLE"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// A server of an older version: `TokenV1Proto` without `ValidateBatches` (the generated
/// default answers UNIMPLEMENTED), calling every token valid, for `sub` "older".
#[derive(Clone)]
struct OlderServer;

impl mrmat_rust_api_grpc::proto::TokenV1Proto for OlderServer {
    fn validate_stream(
        &mut self,
        ctx: grpcio::RpcContext,
        questions: grpcio::RequestStream<mrmat_rust_api_grpc::proto::TokenV1Input>,
        mut sink: grpcio::DuplexSink<mrmat_rust_api_grpc::proto::TokenV1Output>,
    ) {
        use futures::{SinkExt as _, TryStreamExt as _};
        ctx.spawn(async move {
            let mut questions = questions;
            while let Ok(Some(question)) = questions.try_next().await {
                let mut answer = mrmat_rust_api_grpc::proto::TokenV1Output::new();
                answer.request_id = question.request_id;
                answer.verdict = TokenV1Verdict::TOKEN_V1_VALID.into();
                answer.subject = "older".to_owned();
                if sink
                    .send((answer, grpcio::WriteFlags::default()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = sink.close().await;
        });
    }
}

#[test]
fn against_a_server_without_batches_the_validator_asks_over_validate_stream() {
    let (_server, port) = common::serve_in_process(
        mrmat_rust_api_grpc::proto::create_token_v1_proto(OlderServer),
    );
    let validator = TokenValidator::connect(
        &format!("127.0.0.1:{port}"),
        &TlsOptions::default(),
        ValidatorConfig::default(),
    )
    .expect("connect");
    for _ in 0..3 {
        let answer = validator
            .validate("any.token.here")
            .expect("answered over ValidateStream");
        assert_eq!(answer.output().subject, "older");
    }
    validator.close();
}

#[test]
fn a_validator_for_a_port_above_65535_is_refused_before_anything_connects() {
    let refused = TokenValidator::connect(
        "127.0.0.1:116437",
        &TlsOptions::default(),
        ValidatorConfig::default(),
    );

    let Err(error) = refused else {
        panic!("port 116437 must be refused, not taken as 50901");
    };
    assert!(
        matches!(
            error.kind(),
            ConnectErrorKind::Servers(servers)
                if matches!(servers.kind(), ServersErrorKind::BadPort { entry } if entry == "127.0.0.1:116437")
        ),
        "{error}"
    );
}
