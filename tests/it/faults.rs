//! Faults: shutdown while calls are in flight, servers that stop and come back, and many clients
//! changing resources at once.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    call, resource, resource_id, spawn_server, spawn_server_with, test_config, ServerProcess,
};
use grpcio::{ChannelBuilder, EnvBuilder, RpcStatusCode};
use mrmat_rust_api_grpc::proto::{Empty, HealthzInput, HealthzProtoClient, ResourceV1ProtoClient};
use mrmat_rust_api_grpc::server;
use mrmat_rust_api_grpc::store::{
    Changed, Created, MemoryStore, PageQuery, Pending, Resource, ResourceStore,
};

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");

fn channel(address: &str) -> grpcio::Channel {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    ChannelBuilder::new(env).connect(address)
}

fn code_of<T>(result: &grpcio::Result<T>) -> Option<RpcStatusCode> {
    match result {
        Ok(_) => None,
        Err(grpcio::Error::RpcFailure(status)) => Some(status.code()),
        Err(_) => Some(RpcStatusCode::UNKNOWN),
    }
}

/// A store whose creates wait at a gate the test opens, so calls are provably in flight.
struct GatedStore {
    inner: MemoryStore,
    gate: Mutex<(usize, bool)>, // (creates waiting, open)
    changed: Condvar,
}

impl GatedStore {
    fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            gate: Mutex::new((0, false)),
            changed: Condvar::new(),
        }
    }

    fn wait_for_waiting(&self, count: usize, timeout: Duration) -> bool {
        let gate = self.gate.lock().expect("gate");
        let (gate, _) = self
            .changed
            .wait_timeout_while(gate, timeout, |(waiting, _)| *waiting < count)
            .expect("gate");
        gate.0 >= count
    }

    fn open(&self) {
        self.gate.lock().expect("gate").1 = true;
        self.changed.notify_all();
    }
}

impl ResourceStore for GatedStore {
    fn list(&self) -> Pending<Vec<Resource>> {
        self.inner.list()
    }
    fn page(&self, query: PageQuery) -> Pending<Vec<Resource>> {
        self.inner.page(query)
    }
    fn get(&self, id: u64) -> Pending<Option<Resource>> {
        self.inner.get(id)
    }
    // Holds the calling (completion-queue) thread at the gate, as a slow store would.
    fn create_once(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Pending<Created> {
        let mut gate = self.gate.lock().expect("gate");
        gate.0 += 1;
        self.changed.notify_all();
        let _open = self
            .changed
            .wait_timeout_while(gate, Duration::from_secs(20), |(_, open)| !*open)
            .expect("gate");
        self.inner.create_once(request_id, owner_id, name)
    }
    fn update(&self, id: u64, name: String, expected: Option<u64>) -> Pending<Changed<Resource>> {
        self.inner.update(id, name, expected)
    }
    fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>> {
        self.inner.delete(id, expected)
    }
}

#[test]
fn a_graceful_shutdown_lets_calls_in_flight_finish_and_refuses_new_ones() {
    // Handlers run on the server's completion-queue threads, so a create held at the gate holds
    // one of them; one call in flight is enough and cannot starve the others.
    const IN_FLIGHT: usize = 1;
    let store = Arc::new(GatedStore::new());
    let running =
        server::start_with_store(&test_config(), store.clone()).expect("the server starts");
    let address = format!("127.0.0.1:{}", running.port());
    let client = ResourceV1ProtoClient::new(channel(&address));
    let pending: Vec<_> = (0..IN_FLIGHT)
        .map(|n| {
            client
                .create_async_opt(&resource(0, 1, &format!("r{n}")), call())
                .expect("the call starts")
        })
        .collect();
    assert!(
        store.wait_for_waiting(IN_FLIGHT, Duration::from_secs(10)),
        "every create reached the store"
    );

    let shutdown = thread::spawn(move || running.shutdown(Duration::from_secs(20)));
    // Once the shutdown has begun the listener is closed, and a new call is refused before any
    // handler sees it: UNAVAILABLE on a new connection, CANCELLED on one the core had already
    // open to this address (channels to the same address share connections).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections");
        thread::yield_now();
    }
    let newcomer = ResourceV1ProtoClient::new(channel(&address));
    let refused = newcomer.create_opt(&resource(0, 1, "late"), call());
    assert!(
        matches!(
            code_of(&refused),
            Some(RpcStatusCode::UNAVAILABLE | RpcStatusCode::CANCELLED)
        ),
        "{refused:?}"
    );
    assert!(
        !store.wait_for_waiting(IN_FLIGHT + 1, Duration::from_millis(100)),
        "the refused call reached the store"
    );

    store.open();
    for answer in pending {
        let answer = futures::executor::block_on(answer).expect("an accepted call is answered");
        assert_eq!(answer.status.code, 201);
    }
    assert!(
        shutdown.join().expect("shutdown thread"),
        "every call finished within the grace period"
    );
}

#[test]
fn sigterm_during_a_burst_answers_every_accepted_call_and_exits_0() {
    // A grace no accepted call should need (they take milliseconds): what is asserted is that
    // none is cut off, not how fast a busy machine answers. (Once, on a clean clone just after
    // the build, the default 10 s ran out; the server usually exits 50 ms after SIGTERM.)
    let mut server = ServerProcess::start(&["--shutdown-grace", "60"]);
    let client = Arc::new(ResourceV1ProtoClient::new(channel(&server.address)));
    // Lists of a few thousand resources keep each call busy for a while.
    for n in 0..3000 {
        client
            .create_opt(&resource(0, 1, &format!("resource {n}")), call())
            .expect("create");
    }
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            let answered = Arc::clone(&answered);
            thread::spawn(move || loop {
                let result = client.list_opt(&Empty::new(), call());
                match code_of(&result) {
                    None => {
                        let list = result.expect("ok");
                        assert_eq!(list.resources.len(), 3000, "a complete answer");
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    // Refused: the call arrived after the shutdown began.
                    Some(code) => return (code, format!("{:?}", result.err())),
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 50 {
        assert!(Instant::now() < deadline, "the burst is not being answered");
        thread::yield_now();
    }

    server.terminate();
    let status = server
        .wait_for_exit(Duration::from_secs(75))
        .expect("the server exits within its grace of SIGTERM");
    assert!(status.success(), "exit status {status}");
    for thread in burst {
        // A call that reached the server after the shutdown began is refused: by the closed
        // listener (UNAVAILABLE), or by the core on a connection still open (CANCELLED, before
        // any handler sees it). No deadline passes and nothing else fails.
        let (refusal, detail) = thread.join().expect("client thread");
        assert!(
            matches!(
                refusal,
                RpcStatusCode::UNAVAILABLE | RpcStatusCode::CANCELLED
            ),
            "{detail}"
        );
    }
    // Whether a call the server had accepted was cut off, the server knows and logs.
    let last = server
        .log
        .line_containing("shut down", Duration::from_secs(5))
        .expect("the server logs its shutdown");
    assert!(
        !last.contains("cancelling"),
        "accepted calls were cancelled: {last}"
    );
    assert!(answered.load(std::sync::atomic::Ordering::SeqCst) >= 50);
}

/// Runs the client binary's healthz against `address`; returns (exit code, stdout, stderr, time).
fn healthz_cli(address: &str) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(CLIENT)
        .args(["--server", address, "--timeout", "3", "healthz"])
        .env_remove("MRMAT_GRPC_SERVER")
        .env_remove("MRMAT_GRPC_TIMEOUT")
        .output()
        .expect("the client runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn the_client_reports_a_stopped_server_and_reaches_it_again_after_a_restart() {
    let mut first = ServerProcess::start(&[]);
    let address = first.address.clone();
    assert_eq!(healthz_cli(&address).1, "[200] OK\n");

    first.terminate();
    assert!(first.wait_for_exit(Duration::from_secs(15)).is_some());
    let (code, stdout, stderr, took) = healthz_cli(&address);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(&address),
        "the error names the server: {stderr}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let _second = ServerProcess::start(&["--listen", &address]);
    let (code, stdout, stderr, _) = healthz_cli(&address);
    assert_eq!((code, stdout.as_str()), (Some(0), "[200] OK\n"), "{stderr}");
}

#[test]
fn a_long_lived_channel_reconnects_to_a_restarted_server() {
    let first = spawn_server();
    let address = first.address.clone();
    let client = HealthzProtoClient::new(first.channel());
    client
        .get_health_opt(&HealthzInput::new(), call())
        .expect("answer");
    first.shutdown();
    let down = client.get_health_opt(&HealthzInput::new(), call());
    assert_eq!(code_of(&down), Some(RpcStatusCode::UNAVAILABLE), "{down:?}");

    let config = server::ServerConfig {
        listen: server::ListenAddress::parse(&address).expect("the first server's address"),
        ..test_config()
    };
    let _second = spawn_server_with(config);
    // Waiting for readiness rides out the channel's reconnect backoff within the deadline.
    let answer = client
        .get_health_opt(&HealthzInput::new(), call().wait_for_ready(true))
        .expect("the same channel reaches the new server");
    assert_eq!(answer.code, 200);
}

#[test]
fn parallel_creates_modifies_and_removes_leave_exactly_what_the_answers_imply() {
    let server = spawn_server();
    let client = Arc::new(ResourceV1ProtoClient::new(server.channel()));
    let workers: Vec<_> = (0..8u64)
        .map(|worker| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(worker);
                let mut created = Vec::new(); // every id this worker was given
                let mut live: BTreeMap<u64, Resource> = BTreeMap::new();
                for step in 0..150 {
                    let choice = if live.is_empty() { 0 } else { rng.u8(0..4) };
                    match choice {
                        0 | 1 => {
                            let name = format!("w{worker} s{step}");
                            let answer = client
                                .create_opt(&resource(0, worker, &name), call())
                                .expect("create answers");
                            assert_eq!(answer.status.code, 201);
                            let id = answer.resource.id;
                            created.push(id);
                            live.insert(
                                id,
                                Resource {
                                    id,
                                    owner_id: worker,
                                    name,
                                    // v1 does not show versions: not compared.
                                    version: 0,
                                },
                            );
                        }
                        2 => {
                            let target = *live.keys().nth(rng.usize(0..live.len())).expect("one");
                            let name = format!("w{worker} s{step} renamed");
                            let answer = client
                                .modify_opt(&resource(target, 999, &name), call())
                                .expect("modify answers");
                            assert_eq!(answer.status.code, 200);
                            live.get_mut(&target).expect("live").name = name;
                        }
                        _ => {
                            let target = *live.keys().nth(rng.usize(0..live.len())).expect("one");
                            let answer = client
                                .remove_opt(&resource_id(target), call())
                                .expect("remove answers");
                            assert_eq!(answer.code, 401);
                            live.remove(&target);
                            let again = client
                                .remove_opt(&resource_id(target), call())
                                .expect("answers");
                            assert_eq!(again.code, 410);
                        }
                    }
                }
                (created, live)
            })
        })
        .collect();

    let mut all_created = Vec::new();
    let mut expected = BTreeMap::new();
    for worker in workers {
        let (created, live) = worker.join().expect("worker");
        all_created.extend(created);
        expected.extend(live);
    }
    let distinct: BTreeSet<u64> = all_created.iter().copied().collect();
    assert_eq!(distinct.len(), all_created.len(), "an id was given twice");

    let listed = client
        .list_opt(&Empty::new(), call())
        .expect("list answers");
    let actual: BTreeMap<u64, Resource> = listed
        .resources
        .iter()
        .map(|r| {
            (
                r.id,
                Resource {
                    id: r.id,
                    owner_id: r.owner_id,
                    name: r.name.clone(),
                    version: 0,
                },
            )
        })
        .collect();
    assert_eq!(
        actual, expected,
        "the store differs from what the answers imply"
    );
}
