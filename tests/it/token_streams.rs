//! The token service's streams under load, abuse and shutdown, mostly against the server binary
//! as a user runs it: SIGHUP, a client that writes without reading, SIGTERM with streams open,
//! keepalive pings, and the cap on concurrent streams.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::jwt::{
    claims, claims_with_numbers, input, token_args, token_config, validate_batches, KeyFile,
    SigningKey,
};
use common::{call, rss_kib, spawn_server_with, ServerProcess};
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{ChannelBuilder, EnvBuilder, RpcStatusCode, WriteFlags};
use jsonwebtoken::Algorithm;
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use mrmat_rust_api_grpc::proto::{
    TokenV1Input, TokenV1InputBatch, TokenV1Output, TokenV1ProtoClient, TokenV1Verdict,
};
use protobuf::Message as _;

fn start(keys: &KeyFile, extra: &[&str]) -> ServerProcess {
    let args = token_args(keys);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

fn verdict(answer: &TokenV1Output) -> TokenV1Verdict {
    answer.verdict.enum_value_or_default()
}

fn validate(client: &TokenV1ProtoClient, token: &str) -> TokenV1Verdict {
    verdict(
        &client
            .validate_opt(&input(1, token), call())
            .expect("Validate answers"),
    )
}

/// A channel of its own, never sharing a connection with another channel to the same server.
fn own_channel(address: &str) -> grpcio::Channel {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    ChannelBuilder::new(env)
        .use_local_subchannel_pool(true)
        .connect(address)
}

#[test]
fn sighup_loads_the_key_set_again_and_unknown_kids_do_not_make_it_reload_more_than_every_30_s() {
    let old = SigningKey::p384("old");
    let new = SigningKey::p384("new");
    let keys = KeyFile::new(&[&old]);
    let server = start(&keys, &[]);
    let client = TokenV1ProtoClient::new(server.channel());
    let token = new.sign(&claims("frank"));

    // An unknown kid makes the server read the file once (nothing new in it)...
    assert_eq!(
        validate(&client, &token),
        TokenV1Verdict::TOKEN_V1_UNKNOWN_KEY
    );
    // ...and a second one, with the key now there, does not make it read again within 30 s.
    keys.write(&[&old, &new]);
    for _ in 0..20 {
        assert_eq!(
            validate(&client, &token),
            TokenV1Verdict::TOKEN_V1_UNKNOWN_KEY
        );
    }
    assert!(
        server
            .log
            .line_containing("signing keys loaded", Duration::from_millis(200))
            .is_none(),
        "unknown kids made the server load the keys"
    );

    // SIGHUP does.
    server.signal("HUP");
    let line = server
        .log
        .line_containing("signing keys loaded", Duration::from_secs(10))
        .expect("SIGHUP loads the key set");
    assert!(line.contains(r#"kids ["new", "old"]"#), "{line}");
    assert_eq!(validate(&client, &token), TokenV1Verdict::TOKEN_V1_VALID);

    // A key set that breaks on reload keeps the one loaded before, and says so.
    std::fs::write(keys.path(), "{\"keys\": 7}").expect("write");
    server.signal("HUP");
    let line = server
        .log
        .line_containing("cannot load signing keys", Duration::from_secs(10))
        .expect("the failed load is logged");
    assert!(line.contains("keeping the 2 keys loaded before"), "{line}");
    assert_eq!(validate(&client, &token), TokenV1Verdict::TOKEN_V1_VALID);
}

#[test]
fn a_client_that_writes_without_reading_is_held_back_by_flow_control_not_buffered() {
    const INPUTS: u64 = 1_000_000;
    let key = SigningKey::rsa("rsa", Algorithm::RS256);
    let keys = KeyFile::new(&[&key]);
    let server = start(&keys, &[]);
    let token = key.sign(&claims("greedy"));
    let baseline = rss_kib(server.pid());

    // The greedy client: a million inputs on one stream, not one answer read.
    let sent = Arc::new(AtomicU64::new(0));
    let greedy = TokenV1ProtoClient::new(own_channel(&server.address));
    let (mut sink, answers) = greedy.validate_stream().expect("the stream opens");
    let writer = {
        let sent = Arc::clone(&sent);
        thread::spawn(move || {
            futures::executor::block_on(async {
                for id in 0..INPUTS {
                    if sink
                        .send((input(id, &token), WriteFlags::default()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
    };

    // Wait until the writer is held back: no progress for a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (sent.load(Ordering::Relaxed), Instant::now());
    loop {
        thread::sleep(Duration::from_millis(100));
        let now = sent.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the writer was never held back");
    }
    let held_at = last.0;
    assert!(held_at > 0, "the stream took no input at all");
    assert!(
        held_at < INPUTS / 2,
        "{held_at} of {INPUTS} inputs were taken without one answer read"
    );
    let grown_mib = rss_kib(server.pid()).saturating_sub(baseline) / 1024;
    assert!(
        grown_mib < 64,
        "the server grew {grown_mib} MiB holding {held_at} unread inputs"
    );

    // Everyone else is served meanwhile, on another connection and on the same one.
    let other = TokenV1ProtoClient::new(own_channel(&server.address));
    assert_eq!(
        validate(&other, &key.sign(&claims("polite"))),
        TokenV1Verdict::TOKEN_V1_VALID
    );
    let (answers_to_other, ended) =
        common::jwt::validate_stream(&other, (0..100).map(|i| input(i, "x.y.z")).collect());
    ended.expect("another stream is served");
    assert_eq!(answers_to_other.len(), 100);
    eprintln!("held back after {held_at} inputs; the server grew {grown_mib} MiB");

    // Reading at last drains what was held back, in order.
    let read = futures::executor::block_on(answers.take(1000).collect::<Vec<_>>());
    for (i, answer) in read.into_iter().enumerate() {
        let answer = answer.expect("an answer");
        assert_eq!(answer.request_id, i as u64);
        assert_eq!(verdict(&answer), TokenV1Verdict::TOKEN_V1_VALID);
    }
    drop(server);
    writer.join().expect("the writer ends when the server goes");
}

#[test]
fn sigterm_answers_what_each_stream_has_read_then_ends_it_unavailable_and_exits_within_the_grace() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let mut server = start(&keys, &["--drain-delay", "1", "--shutdown-grace", "3"]);
    let token = key.sign(&claims("gina"));

    // A stuck stream: its client writes and never reads, so it cannot end cleanly.
    let stuck_client = TokenV1ProtoClient::new(own_channel(&server.address));
    let (mut stuck, _unread) = stuck_client.validate_stream().expect("the stream opens");
    thread::spawn(move || {
        futures::executor::block_on(async {
            for id in 0.. {
                let sent = stuck.send((input(id, &token), WriteFlags::default()));
                if sent.await.is_err() {
                    break;
                }
            }
        })
    });

    // A well-behaved stream: sends and reads all the time, through the shutdown.
    let client = TokenV1ProtoClient::new(own_channel(&server.address));
    let (mut sink, mut answers) = client.validate_stream().expect("the stream opens");
    let token = key.sign(&claims("hank"));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent = Arc::clone(&sent);
        thread::spawn(move || {
            futures::executor::block_on(async {
                for id in 0.. {
                    let input = input(id, &token);
                    if sink.send((input, WriteFlags::default())).await.is_err() {
                        break;
                    }
                    sent.store(id + 1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(2));
                }
            })
        })
    };
    let first = futures::executor::block_on(answers.next()).expect("an answer");
    assert_eq!(first.expect("an answer").request_id, 0);

    let health = HealthClient::new(own_channel(&server.address));
    let asked = Instant::now();
    server.terminate();
    let mut request = HealthCheckRequest::new();
    request.service = "TokenV1Proto".to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while health
        .check_opt(&request, call())
        .expect("health answers while draining")
        .status
        .enum_value_or_default()
        != ServingStatus::NOT_SERVING
    {
        assert!(Instant::now() < deadline, "health never said NOT_SERVING");
        thread::sleep(Duration::from_millis(10));
    }

    // Answers keep coming, in order, through the drain delay; then UNAVAILABLE.
    let mut next_id = 1;
    let ended = futures::executor::block_on(async {
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(answer) => {
                    assert_eq!(answer.request_id, next_id, "in order, none lost");
                    assert_eq!(verdict(&answer), TokenV1Verdict::TOKEN_V1_VALID);
                    next_id += 1;
                }
                Err(e) => return e,
            }
        }
        panic!("the stream ended without a status")
    });
    let ended_after = asked.elapsed();
    let grpcio::Error::RpcFailure(status) = ended else {
        panic!("{ended:?}")
    };
    assert_eq!(status.code(), RpcStatusCode::UNAVAILABLE);
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    assert!(
        ended_after >= Duration::from_secs(1),
        "the stream ended {ended_after:?} after SIGTERM, before the drain delay"
    );
    // Inputs sent but not yet read when the stream was told to end get no answer; the ones
    // read all did (in order, above), and the drain kept it going meanwhile.
    assert!(
        next_id > 100,
        "only {next_id} answered of {} sent",
        sent.load(Ordering::Relaxed)
    );

    // The stuck stream does not hold the server past drain delay + grace.
    let exit = server
        .wait_for_exit(Duration::from_secs(10))
        .expect("the server exits");
    let took = asked.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took < Duration::from_secs(1 + 3 + 2),
        "the server took {took:?} to exit"
    );
    let _ = sender.join();
}

#[test]
fn keepalive_pings_from_a_client_every_second_are_welcome_and_keep_an_idle_stream_open() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let server = spawn_server_with(token_config(&keys));
    // Pings as often as the token client of issue 12 may send them, with or without calls.
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let channel = ChannelBuilder::new(env)
        .keepalive_time(Duration::from_secs(1))
        .keepalive_timeout(Duration::from_secs(5))
        .keepalive_permit_without_calls(true)
        .http2_max_pings_without_data(0)
        .use_local_subchannel_pool(true)
        .connect(&server.address);
    let client = TokenV1ProtoClient::new(channel);
    let (mut sink, mut answers) = client.validate_stream().expect("the stream opens");
    let token = key.sign(&claims("ivan"));
    let mut ask = |id: u64| {
        futures::executor::block_on(async {
            sink.send((input(id, &token), WriteFlags::default()))
                .await
                .expect("send");
            answers.next().await.expect("an answer")
        })
    };
    assert_eq!(ask(1).expect("answered").request_id, 1);
    // Idle for several ping intervals: a server that thought the pings too many would have
    // sent GOAWAY (too_many_pings) and the stream would fail.
    thread::sleep(Duration::from_secs(6));
    let answer = ask(2).expect("the stream is still open after idle pings");
    assert_eq!(answer.request_id, 2);
    assert_eq!(verdict(&answer), TokenV1Verdict::TOKEN_V1_VALID);
}

#[test]
fn streams_beyond_the_per_connection_cap_wait_and_other_connections_do_not() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let mut config = token_config(&keys);
    config.limits.max_concurrent_streams = 2;
    let server = spawn_server_with(config);
    let client = TokenV1ProtoClient::new(own_channel(&server.address));
    let token = key.sign(&claims("judy"));

    let mut open = Vec::new();
    for id in 0..2 {
        let (mut sink, mut answers) = client.validate_stream().expect("the stream opens");
        futures::executor::block_on(async {
            sink.send((input(id, &token), WriteFlags::default()))
                .await
                .expect("send");
            answers.next().await.expect("an answer").expect("answered");
        });
        open.push((sink, answers));
    }
    // A third call on the same connection waits for a free stream, here past its deadline.
    let short = grpcio::CallOption::default().timeout(Duration::from_millis(500));
    let error = client
        .validate_opt(&input(3, &token), short)
        .expect_err("no stream is free");
    let grpcio::Error::RpcFailure(status) = error else {
        panic!("{error:?}")
    };
    assert_eq!(status.code(), RpcStatusCode::DEADLINE_EXCEEDED);

    // Another connection is not held up.
    let other = TokenV1ProtoClient::new(own_channel(&server.address));
    assert_eq!(validate(&other, &token), TokenV1Verdict::TOKEN_V1_VALID);

    // Once a stream ends, the waiting call goes through.
    let (mut sink, _answers) = open.pop().expect("two streams");
    // grpcio's close says RpcFinished when the server's status beats its own send: ended too.
    match futures::executor::block_on(sink.close()) {
        Ok(()) | Err(grpcio::Error::RpcFinished(None)) => {}
        Err(e) => panic!("half-close: {e:?}"),
    }
    drop(open);
    assert_eq!(validate(&client, &token), TokenV1Verdict::TOKEN_V1_VALID);
}

fn batch(inputs: impl IntoIterator<Item = TokenV1Input>) -> TokenV1InputBatch {
    let mut batch = TokenV1InputBatch::new();
    batch.inputs = inputs.into_iter().collect();
    batch
}

#[test]
fn each_batch_is_answered_by_one_batch_in_its_order_and_oversized_ones_get_a_clear_status() {
    let key = SigningKey::p256("b");
    let keys = KeyFile::new(&[&key]);
    let server = start(&keys, &[]);
    let client = TokenV1ProtoClient::new(server.channel());
    let good = key.sign(&claims("alice"));
    let batches: Vec<TokenV1InputBatch> = vec![
        batch((0..1_000).map(|i| input(i, if i % 3 == 0 { "junk" } else { &good }))),
        batch([]),
        batch([input(5_000, &good)]),
    ];
    let (answers, ended) = validate_batches(&client, batches);
    ended.expect("the stream ends OK");
    let sizes: Vec<usize> = answers.iter().map(|b| b.outputs.len()).collect();
    assert_eq!(sizes, [1_000, 0, 1]);
    for (i, answer) in answers[0].outputs.iter().enumerate() {
        assert_eq!(answer.request_id, i as u64);
        let expected = if i % 3 == 0 {
            TokenV1Verdict::TOKEN_V1_MALFORMED
        } else {
            TokenV1Verdict::TOKEN_V1_VALID
        };
        assert_eq!(verdict(answer), expected, "question {i}");
    }
    assert_eq!(answers[2].outputs[0].request_id, 5_000);

    // Beyond either bound, the batches before are answered and the stream ends, saying which.
    let long = "a".repeat(8_000);
    for (oversized, needle) in [
        (
            batch((0..1_001).map(|i| input(i, "x"))),
            "a batch of 1001 questions",
        ),
        (
            batch((0..140).map(|i| input(i, &long))),
            "a batch with 1120000 bytes of tokens",
        ),
    ] {
        let (answers, ended) = validate_batches(&client, vec![batch([input(1, &good)]), oversized]);
        assert_eq!(answers.len(), 1, "the batch before is answered");
        match ended {
            Err(grpcio::Error::RpcFailure(status)) => {
                assert_eq!(status.code(), RpcStatusCode::RESOURCE_EXHAUSTED);
                assert!(status.message().contains(needle), "{}", status.message());
                assert!(status.message().contains("send smaller batches"));
            }
            other => panic!("RESOURCE_EXHAUSTED, not {other:?}"),
        }
    }
    assert_eq!(validate(&client, &good), TokenV1Verdict::TOKEN_V1_VALID);
}

/// A channel whose client takes answers only into its transport's first window (no
/// bandwidth-delay probing): one that does not read holds the server's writes back at once.
fn stingy_channel(address: &str) -> grpcio::Channel {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    ChannelBuilder::new(env)
        .use_local_subchannel_pool(true)
        .http2_bdp_probe(false)
        .connect(address)
}

#[test]
fn a_connection_opens_at_most_its_token_streams_and_the_next_is_resource_exhausted_at_once() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let server = start(&keys, &["--max-token-streams-per-connection", "3"]);
    let client = TokenV1ProtoClient::new(own_channel(&server.address));
    let token = key.sign(&claims("kate"));
    let ask = |sink: &mut grpcio::StreamingCallSink<TokenV1Input>,
               answers: &mut grpcio::ClientDuplexReceiver<TokenV1Output>,
               id: u64| {
        futures::executor::block_on(async {
            // A refused call may end before the send completes: its answer says how.
            let _ = sink.send((input(id, &token), WriteFlags::default())).await;
            answers.next().await
        })
    };
    let mut open = Vec::new();
    for id in 0..3 {
        let (mut sink, mut answers) = client.validate_stream().expect("the stream opens");
        let answer = ask(&mut sink, &mut answers, id).expect("an answer");
        assert_eq!(answer.expect("answered").request_id, id);
        open.push((sink, answers));
    }
    // A fourth, of either kind, is refused at once, saying why and what to do.
    let (mut sink, mut answers) = client.validate_stream().expect("the call starts");
    match ask(&mut sink, &mut answers, 4) {
        Some(Err(grpcio::Error::RpcFailure(status))) => {
            assert_eq!(status.code(), RpcStatusCode::RESOURCE_EXHAUSTED);
            assert!(
                status
                    .message()
                    .contains("--max-token-streams-per-connection"),
                "{}",
                status.message()
            );
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    let (_batch_sink, mut batch_answers) = client.validate_batches().expect("the call starts");
    let refused = futures::executor::block_on(batch_answers.next());
    assert!(
        matches!(&refused, Some(Err(grpcio::Error::RpcFailure(s))) if s.code() == RpcStatusCode::RESOURCE_EXHAUSTED),
        "{refused:?}"
    );
    // Unary calls on the same connection, and streams on another, are not held up.
    assert_eq!(validate(&client, &token), TokenV1Verdict::TOKEN_V1_VALID);
    let other = TokenV1ProtoClient::new(own_channel(&server.address));
    let (answered, ended) = common::jwt::validate_stream(&other, vec![input(9, &token)]);
    ended.expect("another connection's stream is served");
    assert_eq!(answered.len(), 1);

    // A stream that ends makes room.
    let (mut sink, mut answers) = open.pop().expect("three");
    futures::executor::block_on(async {
        // The server ends the stream once it sees the half-close; grpcio's close can see that
        // status before its own send completes, and then says RpcFinished: the stream ended.
        match sink.close().await {
            Ok(()) | Err(grpcio::Error::RpcFinished(None)) => {}
            Err(e) => panic!("half-close: {e:?}"),
        }
        while answers.next().await.is_some() {}
    });
    let reopened = common::holds_within(Duration::from_secs(10), || {
        let (mut sink, mut answers) = client.validate_stream().expect("the call starts");
        let answered = matches!(ask(&mut sink, &mut answers, 5), Some(Ok(_)));
        if answered {
            open.push((sink, answers));
        }
        answered
    });
    assert!(reopened, "no room after a stream ended");
}

#[test]
fn every_stream_refused_for_the_cap_is_told_resource_exhausted_never_cancelled() {
    let key = SigningKey::ed25519("ed");
    let keys = KeyFile::new(&[&key]);
    let server = start(&keys, &["--max-token-streams-per-connection", "1"]);
    let client = TokenV1ProtoClient::new(own_channel(&server.address));
    let token = key.sign(&claims("kate"));
    let (mut held, mut held_answers) = client.validate_stream().expect("the stream opens");
    let first = futures::executor::block_on(async {
        let _ = held.send((input(0, &token), WriteFlags::default())).await;
        held_answers.next().await
    });
    assert!(matches!(first, Some(Ok(_))), "{first:?}");

    // A refused call's requests are dropped only once the refusal has gone out: dropped before,
    // the C core cancelled the call and some refusals reached the client as CANCELLED (2 of 6
    // runs of this test beside three busy loops; a whole ci/test run now and then).
    let mut refused = Vec::new();
    for _ in 0..200 {
        let (_sink, mut answers) = client.validate_batches().expect("the call starts");
        refused.push(futures::executor::block_on(answers.next()));
    }

    let wrong: Vec<_> = refused
        .iter()
        .filter(|answer| {
            !matches!(answer, Some(Err(grpcio::Error::RpcFailure(s))) if s.code() == RpcStatusCode::RESOURCE_EXHAUSTED)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of 200: {:?}",
        wrong.len(),
        wrong.first()
    );
}

#[test]
fn streams_that_leave_answers_unread_stop_being_read_once_the_budget_is_spent_and_lose_nothing() {
    const BATCHES: u64 = 60;
    const QUESTIONS: u64 = 100;
    let key = SigningKey::p256("p");
    let keys = KeyFile::new(&[&key]);
    let budget = 100_000;
    let server = start(
        &keys,
        &[
            "--stream-budget",
            &budget.to_string(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--store",
            "memory",
        ],
    );
    let token = key.sign(&claims("greedy"));
    let batch_of = |first: u64| {
        let mut batch = TokenV1InputBatch::new();
        batch.inputs = (first..first + QUESTIONS)
            .map(|id| input(id, &token))
            .collect();
        batch
    };

    // Four greedy clients, each on its own connection: batch after batch, no answer read.
    let greedy: Vec<_> = (0..4)
        .map(|_| {
            let client = TokenV1ProtoClient::new(stingy_channel(&server.address));
            let (mut sink, answers) = client.validate_batches().expect("the stream opens");
            let sent = Arc::new(AtomicU64::new(0));
            let writer = {
                let (sent, batches) = (
                    Arc::clone(&sent),
                    (0..BATCHES)
                        .map(|b| batch_of(b * QUESTIONS))
                        .collect::<Vec<_>>(),
                );
                thread::spawn(move || {
                    futures::executor::block_on(async {
                        for batch in batches {
                            if sink.send((batch, WriteFlags::default())).await.is_err() {
                                return;
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = sink.close().await;
                    })
                })
            };
            (client, answers, sent, writer)
        })
        .collect();

    // Held back: the budget spent, the writers stop making progress.
    let held_back = common::holds_within(Duration::from_secs(60), || {
        server
            .metric("mrmat_stream_reads_held_back_total")
            .is_some_and(|n| n > 0.0)
    });
    assert!(held_back, "no stream waited for room");
    let mut last = (0, Instant::now());
    let stalled = common::holds_within(Duration::from_secs(60), || {
        let now: u64 = greedy
            .iter()
            .map(|(_, _, sent, _)| sent.load(Ordering::Relaxed))
            .sum();
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(1)
    });
    assert!(stalled, "the writers were never held back");
    assert!(
        last.0 < 4 * BATCHES,
        "{} of {} batches taken unread",
        last.0,
        4 * BATCHES
    );
    let held = server
        .metric("mrmat_stream_budget_held_bytes")
        .expect("the gauge");
    eprintln!("held back after {} batches; {held} bytes held", last.0);
    assert!(
        held <= f64::from(budget) * 2.0,
        "{held} bytes held of a {budget}-byte budget"
    );

    // A client that reads its answers is answered meanwhile, batch after batch.
    let polite = TokenV1ProtoClient::new(own_channel(&server.address));
    let (answered, ended) =
        validate_batches(&polite, (0..20).map(|b| batch_of(b * QUESTIONS)).collect());
    ended.expect("the polite stream is served");
    assert_eq!(
        answered.iter().map(|b| b.outputs.len()).sum::<usize>(),
        2_000
    );

    // Reading at last: every question answered, in order, none lost.
    for (_client, mut answers, sent, writer) in greedy {
        let mut next = 0;
        futures::executor::block_on(async {
            while let Some(batch) = answers.next().await {
                for answer in batch.expect("answers").outputs {
                    assert_eq!(answer.request_id, next, "in order, none lost");
                    assert_eq!(verdict(&answer), TokenV1Verdict::TOKEN_V1_VALID);
                    next += 1;
                }
            }
        });
        writer.join().expect("the writer ends");
        assert_eq!(sent.load(Ordering::Relaxed), BATCHES, "every batch sent");
        assert_eq!(next, BATCHES * QUESTIONS);
    }
}

#[test]
fn a_batch_whose_answers_pass_a_quarter_mib_comes_in_several_messages_a_default_client_takes() {
    let key = SigningKey::p256("p");
    let keys = KeyFile::new(&[&key]);
    let server = start(&keys, &[]);
    // 128 tokens as long as the limit allows, their claims a long list of numbers: about 4 MB of
    // answers.
    let claims_of = |i: usize, numbers: usize| {
        let mut claims = claims_with_numbers(&format!("u{i:03}"), numbers);
        claims["jti"] = format!("t{i:03}").into();
        claims
    };
    let numbers = (2_900..)
        .take_while(|&n| key.sign(&claims_of(0, n)).len() <= 8_192)
        .last()
        .expect("2,900 numbers fit");
    let tokens: Vec<String> = (0..128).map(|i| key.sign(&claims_of(i, numbers))).collect();
    assert!(tokens.iter().all(|t| t.len() > 8_150 && t.len() <= 8_192));
    let mut question = TokenV1InputBatch::new();
    question.inputs = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| input(i as u64, t))
        .collect();

    // A client with grpcio's default limit of 4 MiB a message.
    let client = TokenV1ProtoClient::new(server.channel());
    let (messages, ended) = validate_batches(&client, vec![question]);
    ended.expect("the stream ends OK");
    let mut next = 0;
    let mut total = 0;
    for message in &messages {
        let size = message.compute_size();
        assert!(size <= 256 * 1024, "a message of {size} bytes");
        total += size;
        for answer in &message.outputs {
            assert_eq!(answer.request_id, next, "in order");
            assert_eq!(verdict(answer), TokenV1Verdict::TOKEN_V1_VALID);
            assert_eq!(answer.claims.fields["n"].list_value().values.len(), numbers);
            next += 1;
        }
    }
    assert_eq!(next, 128);
    // Within a few KB of a client's 4 MiB (the issue's 4,199,422 bytes went past it, with longer
    // names in its claims): as one message, it would not be taken.
    assert!(total > 4_000_000, "{total} bytes of answers");
    assert!(messages.len() >= 16, "{} messages", messages.len());
}
