//! Three replicas, each in its own network namespace with its own address, on one PostgreSQL;
//! the clients and the token validator on this host, given all three. Losing a replica
//! (SIGKILL) under load fails no Get, List or validation and creates nothing twice; a replica
//! cut off from the database turns NOT_SERVING, gets no calls, and comes back with the link; a
//! revocation through one replica is refused by another within a second; a rolling restart of
//! all three fails no call. Runs as root (CI does): the namespaces need it.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::jwt::{claims, input, token_args, KeyFile, SigningKey};
use common::netns::Topology;
use common::pki::{client_tls, Pki, ADMIN_COMMON_NAME};
use common::postgres::{PgCluster, PASSWORD};
use common::{call, resource, resource_id, ServerProcess};
use grpcio::{Channel, ChannelBuilder, EnvBuilder};
use jsonwebtoken::Algorithm;
use mrmat_rust_api_grpc::client::{Servers, TlsOptions, TokenValidator, ValidatorConfig};
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use mrmat_rust_api_grpc::proto::{
    Empty, ResourceV1ProtoClient, ResourceV2CreateRequest, ResourceV2GetRequest,
    ResourceV2ListRequest, ResourceV2ProtoClient, TokenV1ProtoClient, TokenV1RevokeInput,
    TokenV1Verdict,
};

const PORT: u16 = 50051;

/// One test at a time: each runs three servers, PostgreSQL and a load on what may be two
/// cores; together they would measure the machine rather than the replicas.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Three replicas in their namespaces, on one database, with the token service on.
struct Replicas {
    replicas: Vec<Option<ServerProcess>>,
    args: Vec<Vec<String>>,
    net: Topology,
    _cluster: PgCluster,
    _files: (KeyFile, tempfile::NamedTempFile),
    key: SigningKey,
    filter: &'static str,
}

impl Replicas {
    /// Starts three replicas with `more` flags, logging at `filter`.
    fn start(more: &[&str], filter: &'static str) -> Self {
        let net = Topology::new(3);
        let cluster = PgCluster::start_on(Some(&net.database_address));
        let database = cluster.new_database();
        let database = database.rsplit('/').next().expect("a database name");
        let password = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(password.path(), PASSWORD).expect("write the password");
        let key = SigningKey::rsa("rsa-1", Algorithm::RS256);
        let keys = KeyFile::new(&[&key]);
        let args: Vec<Vec<String>> = net
            .places
            .iter()
            .map(|place| {
                let mut args = vec![
                    "--listen".to_owned(),
                    format!("{}:{PORT}", place.address),
                    "--store".to_owned(),
                    cluster.url_at(&net.database_address, database),
                    "--store-password-file".to_owned(),
                    password.path().display().to_string(),
                    "--store-timeout".to_owned(),
                    "2".to_owned(),
                ];
                args.extend(token_args(&keys));
                args.extend(more.iter().map(|s| (*s).to_owned()));
                args
            })
            .collect();
        let mut replicas = Self {
            replicas: Vec::new(),
            args,
            net,
            _cluster: cluster,
            _files: (keys, password),
            key,
            filter,
        };
        for n in 0..3 {
            let replica = replicas.launch(n);
            replicas.replicas.push(Some(replica));
        }
        replicas
    }

    fn launch(&self, n: usize) -> ServerProcess {
        let args: Vec<&str> = self.args[n].iter().map(String::as_str).collect();
        ServerProcess::start_under(&self.net.prefix(n), &args, self.filter)
    }

    fn address(&self, n: usize) -> String {
        format!("{}:{PORT}", self.net.places[n].address)
    }

    /// `--server` for all three.
    fn servers(&self) -> String {
        (0..3)
            .map(|n| self.address(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn replica(&mut self, n: usize) -> &mut ServerProcess {
        self.replicas[n].as_mut().expect("running")
    }

    /// The health replica `n` reports for `service`, asked directly.
    fn health(&self, n: usize, service: &str) -> Option<ServingStatus> {
        let mut request = HealthCheckRequest::new();
        request.service = service.to_owned();
        HealthClient::new(plain(&self.address(n)))
            .check_opt(&request, call())
            .ok()
            .map(|answer| answer.status.enum_value_or_default())
    }

    /// Waits (up to `within`) until replica `n` reports `status` for `service`.
    fn await_health(&self, n: usize, service: &str, status: ServingStatus, within: Duration) {
        let deadline = Instant::now() + within;
        while self.health(n, service) != Some(status) {
            assert!(
                Instant::now() < deadline,
                "replica {n} did not report {service} {status:?} within {within:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sets its flag when dropped: the load stops however the test's scope ends, a failed assert
/// included (otherwise the scope would wait for the load forever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn plain(address: &str) -> Channel {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    ChannelBuilder::new(env).connect(address)
}

fn balanced(servers: &str, service: &str) -> Channel {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    Servers::new(servers).expect("a server list").connect(
        ChannelBuilder::new(env),
        &Default::default(),
        service,
    )
}

/// What a load saw: calls answered and failed, by kind.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    failed_reads: AtomicU64,
    failed_validations: AtomicU64,
    create_attempts_failed: AtomicU64,
}

/// Readers (v1 and v2 Get and List), a creator (v2 Create, each with its own request id,
/// repeated with it until acknowledged, as an app retries) and a validator, all balanced over
/// `servers`, until `stop`. Returns the request ids the creator had acknowledged, with their ids.
fn load(
    servers: &str,
    ids: &[u64],
    tokens: &[String],
    stop: &AtomicBool,
    tally: &Tally,
) -> BTreeMap<String, u64> {
    let validator =
        TokenValidator::connect(servers, &TlsOptions::default(), ValidatorConfig::default())
            .expect("no TLS files");
    thread::scope(|scope| {
        for reader in 0..2u64 {
            scope.spawn(move || {
                let v1 = ResourceV1ProtoClient::new(balanced(servers, "ResourceV1Proto"));
                let v2 = ResourceV2ProtoClient::new(balanced(servers, "ResourceV2Proto"));
                let mut n = reader as usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = ids[n % ids.len()];
                    let ok = match n % 8 {
                        0 => v1
                            .list_opt(&Empty::new(), call())
                            .map(|l| l.status.code == 200),
                        1 => {
                            let mut request = ResourceV2ListRequest::new();
                            request.page_size = 10;
                            v2.list_opt(&request, call())
                                .map(|l| l.resources.len() == 10)
                        }
                        2..=4 => v1
                            .get_opt(&resource_id(id), call())
                            .map(|g| g.status.code == 200),
                        _ => {
                            let mut request = ResourceV2GetRequest::new();
                            request.id = id;
                            v2.get_opt(&request, call()).map(|g| g.id == id)
                        }
                    };
                    match ok {
                        Ok(true) => tally.answered.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("a read failed: {other:?}");
                            tally.failed_reads.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
        let validator = &validator;
        scope.spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match validator.validate(&tokens[n % tokens.len()]) {
                    Ok(answer)
                        if answer.output().verdict.enum_value_or_default()
                            == TokenV1Verdict::TOKEN_V1_VALID =>
                    {
                        tally.answered.fetch_add(1, Ordering::Relaxed)
                    }
                    other => {
                        eprintln!("a validation failed: {other:?}");
                        tally.failed_validations.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        let creator = scope.spawn(move || {
            let v2 = ResourceV2ProtoClient::new(balanced(servers, "ResourceV2Proto"));
            let mut created = BTreeMap::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut request = ResourceV2CreateRequest::new();
                request.request_id = format!("create-{n}");
                request.owner_id = 42;
                request.name = request.request_id.clone();
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match v2.create_opt(&request, call()) {
                        Ok(made) => {
                            created.insert(request.request_id.clone(), made.id);
                            tally.answered.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            assert!(Instant::now() < deadline, "create {n} failed for 30s: {e}");
                            tally.create_attempts_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            created
        });
        creator.join().expect("the creator")
    })
}

impl Tally {
    fn report(&self, created: usize) {
        eprintln!(
            "answered {}, creates acknowledged {created} (attempts failed and repeated {}), \
             reads failed {}, validations failed {}",
            self.answered.load(Ordering::Relaxed),
            self.create_attempts_failed.load(Ordering::Relaxed),
            self.failed_reads.load(Ordering::Relaxed),
            self.failed_validations.load(Ordering::Relaxed)
        );
    }
}

/// Waits (up to 60 s) until `tally` has `at_least` answers.
fn await_answers(tally: &Tally, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.answered.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} answers within 60s",
            tally.answered.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Seeds 20 resources through replica 0; their ids.
fn seed(replicas: &Replicas) -> Vec<u64> {
    let client = ResourceV1ProtoClient::new(plain(&replicas.address(0)));
    (0..20)
        .map(|n| {
            let answer = client
                .create_opt(&resource(0, 1, &format!("seed-{n}")), call())
                .expect("Create");
            answer.resource.id
        })
        .collect()
}

fn tokens(replicas: &Replicas) -> Vec<String> {
    (0..20)
        .map(|n| replicas.key.sign(&claims(&format!("user-{n}"))))
        .collect()
}

/// Every resource of owner 42 (the creator's), by name (its request id): how many of each.
fn created_by_name(servers: &str) -> BTreeMap<String, Vec<u64>> {
    let v2 = ResourceV2ProtoClient::new(balanced(servers, "ResourceV2Proto"));
    let mut by_name: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut request = ResourceV2ListRequest::new();
    request.page_size = 1000;
    request.owner_id = Some(42);
    loop {
        let page = v2.list_opt(&request, call()).expect("List answers");
        for resource in page.resources {
            by_name.entry(resource.name).or_default().push(resource.id);
        }
        if page.next_page_token.is_empty() {
            return by_name;
        }
        request.page_token = page.next_page_token;
    }
}

/// Every acknowledged create exists exactly once, with the id it was acknowledged with, and
/// nothing else was created.
#[track_caller]
fn assert_created_exactly_once(servers: &str, acknowledged: &BTreeMap<String, u64>) {
    let stored = created_by_name(servers);
    for (request_id, id) in acknowledged {
        assert_eq!(
            stored.get(request_id),
            Some(&vec![*id]),
            "create {request_id}: acknowledged as {id}"
        );
    }
    let unacknowledged: Vec<&String> = stored
        .keys()
        .filter(|name| !acknowledged.contains_key(*name))
        .collect();
    // The creator stops with at most its last create in flight; a retry of one found by
    // request id is that same create, so at most one resource may be unacknowledged.
    assert!(
        unacknowledged.len() <= 1,
        "created yet never acknowledged: {unacknowledged:?}"
    );
}

#[test]
fn losing_a_replica_under_load_fails_no_read_or_validation_and_creates_nothing_twice() {
    let _serial = one_at_a_time();
    let mut replicas = Replicas::start(&[], "info");
    let (ids, tokens, servers) = (seed(&replicas), tokens(&replicas), replicas.servers());
    let (stop, tally) = (AtomicBool::new(false), Tally::default());
    let created = thread::scope(|scope| {
        let loading = scope.spawn(|| load(&servers, &ids, &tokens, &stop, &tally));
        let stopping = StopOnDrop(&stop);
        await_answers(&tally, 500);
        replicas.replica(1).signal("KILL");
        assert!(replicas
            .replica(1)
            .wait_for_exit(Duration::from_secs(5))
            .is_some());
        let before = tally.answered.load(Ordering::Relaxed);
        await_answers(&tally, before + 1500);
        drop(stopping);
        loading.join().expect("the load")
    });
    tally.report(created.len());
    assert_eq!(
        tally.failed_reads.load(Ordering::Relaxed),
        0,
        "no Get or List failed"
    );
    assert_eq!(
        tally.failed_validations.load(Ordering::Relaxed),
        0,
        "every validation answered"
    );
    assert!(created.len() > 10, "the creator made {}", created.len());
    assert_created_exactly_once(&servers, &created);
}

#[test]
fn a_replica_cut_off_from_the_database_gets_no_calls_until_the_link_is_back() {
    let _serial = one_at_a_time();
    let replicas = Replicas::start(&[], "info,request=debug");
    let servers = replicas.servers();
    let v1 = ResourceV1ProtoClient::new(balanced(&servers, "ResourceV1Proto"));
    let create = |n: usize| {
        v1.create_opt(&resource(0, 1, &format!("r{n}")), call())
            .map(|answer| answer.status.code)
    };
    for n in 0..30 {
        assert_eq!(create(n).expect("Create answers"), 201);
    }

    replicas.net.cut_database(2);
    // Within the store timeout (2 s) and the monitor's probe; Greeting does not need the
    // database and stays SERVING.
    replicas.await_health(
        2,
        "ResourceV1Proto",
        ServingStatus::NOT_SERVING,
        Duration::from_secs(15),
    );
    assert_eq!(
        replicas.health(2, "GreetingV1Proto"),
        Some(ServingStatus::SERVING)
    );
    // The clients' health watches hear of it as the replica says it; calls already on their
    // way there may fail meanwhile (v1 creates are not retried): not counted.
    let log = &replicas.replicas[2].as_ref().expect("running").log;
    for n in 0..20 {
        let _ = create(1000 + n);
    }
    let _ = log.count_containing("/ResourceV1Proto/Create from");
    for n in 0..60 {
        assert_eq!(
            create(n).expect("Create answers while replica 2 is cut off"),
            201,
            "create {n}"
        );
    }
    assert_eq!(
        log.count_containing("/ResourceV1Proto/Create from"),
        0,
        "replica 2 is NOT_SERVING: no call was sent to it"
    );

    replicas.net.mend_database(2);
    replicas.await_health(
        2,
        "ResourceV1Proto",
        ServingStatus::SERVING,
        Duration::from_secs(15),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while log.count_containing("/ResourceV1Proto/Create from") == 0 {
        assert!(
            Instant::now() < deadline,
            "SERVING again, yet no create reached replica 2"
        );
        n += 1;
        assert_eq!(create(n).expect("Create answers"), 201);
    }
}

#[test]
fn a_revocation_through_one_replica_is_refused_by_another_within_a_second() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let tls: Vec<String> = [
        "--tls-cert",
        &pki.path("server.pem").display().to_string(),
        "--tls-key",
        &pki.path("server.key").display().to_string(),
        "--tls-client-ca",
        &pki.path("ca.pem").display().to_string(),
        "--token-admin",
        ADMIN_COMMON_NAME,
    ]
    .map(str::to_owned)
    .to_vec();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let replicas = Replicas::start(&tls, "info");
    let secured = |n: usize, client: &str| {
        let mut options = client_tls(&pki, client);
        // The certificate is for localhost; the replicas are at 10.x addresses.
        options.tls_server_name = Some("localhost".to_owned());
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        TokenV1ProtoClient::new(
            options
                .connect(ChannelBuilder::new(env), &replicas.address(n))
                .expect("TLS files"),
        )
    };
    let claims = claims("grace");
    let token = replicas.key.sign(&claims);
    let verdict = |n: usize| {
        secured(n, "client")
            .validate_opt(&input(1, &token), call())
            .expect("Validate answers")
            .verdict
            .enum_value_or_default()
    };
    // Valid first, so replica C has it cached.
    assert_eq!(verdict(2), TokenV1Verdict::TOKEN_V1_VALID);

    let mut revoke = TokenV1RevokeInput::new();
    revoke.token_id = claims["jti"].as_str().expect("a jti").to_owned();
    let answer = secured(0, "admin-client")
        .revoke_opt(&revoke, call())
        .expect("Revoke");
    assert_eq!(answer.code, 200, "{answer:?}");
    let revoked = Instant::now();
    while verdict(2) != TokenV1Verdict::TOKEN_V1_REVOKED {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "replica C accepted the token a second after replica A revoked it"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_rolling_restart_of_every_replica_fails_no_call() {
    let _serial = one_at_a_time();
    let mut replicas = Replicas::start(&["--drain-delay", "1"], "info");
    let (ids, tokens, servers) = (seed(&replicas), tokens(&replicas), replicas.servers());
    let (stop, tally) = (AtomicBool::new(false), Tally::default());
    let created = thread::scope(|scope| {
        let loading = scope.spawn(|| load(&servers, &ids, &tokens, &stop, &tally));
        let stopping = StopOnDrop(&stop);
        await_answers(&tally, 300);
        for n in 0..3 {
            replicas.replica(n).terminate();
            let exit = replicas.replica(n).wait_for_exit(Duration::from_secs(30));
            assert!(
                exit.is_some_and(|status| status.success()),
                "replica {n}: {exit:?}"
            );
            replicas.replicas[n] = Some(replicas.launch(n));
            replicas.await_health(
                n,
                "ResourceV2Proto",
                ServingStatus::SERVING,
                Duration::from_secs(15),
            );
            let before = tally.answered.load(Ordering::Relaxed);
            await_answers(&tally, before + 300);
        }
        drop(stopping);
        loading.join().expect("the load")
    });
    tally.report(created.len());
    assert_eq!(
        tally.failed_reads.load(Ordering::Relaxed),
        0,
        "no Get or List failed"
    );
    assert_eq!(
        tally.failed_validations.load(Ordering::Relaxed),
        0,
        "no validation failed"
    );
    assert_eq!(
        tally.create_attempts_failed.load(Ordering::Relaxed),
        0,
        "no create needed a second attempt"
    );
    assert_created_exactly_once(&servers, &created);
}
