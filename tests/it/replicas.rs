//! Several replicas: servers on one PostgreSQL database share resources and revocations (ids
//! unique across them, a revocation through one refused by the others within a second, one
//! missed notification made good), and clients given several servers spread calls over them,
//! route around a replica whose health says NOT_SERVING, and lose no Get, List or validation
//! when a replica is killed under load.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::jwt::{claims, token_args, KeyFile, SigningKey};
use common::postgres::{PgCluster, PASSWORD};
use common::revocation::Revocation;
use common::{call, resource, resource_id, spawn_server_with, test_config, ServerProcess};
use futures::FutureExt as _;
use grpcio::{Channel, ChannelBuilder, EnvBuilder};
use jsonwebtoken::Algorithm;
use mrmat_rust_api_grpc::client::{LoadedTls, Servers, TokenValidator, ValidatorConfig};
use mrmat_rust_api_grpc::proto::{Empty, ResourceV1ProtoClient, TokenV1Verdict};
use mrmat_rust_api_grpc::server;
use mrmat_rust_api_grpc::store::{
    self, Capacity, MemoryStore, StoreLocation, StoreOptions, Stores,
};

/// A password file for the cluster's user, as a deployment mounts a secret.
fn password_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), format!("{PASSWORD}\n")).expect("write the password");
    file
}

/// A store on a new database of `cluster`.
fn postgres_store(cluster: &PgCluster, password: &tempfile::NamedTempFile) -> StoreOptions {
    StoreOptions {
        timeout: Duration::from_secs(2),
        ..StoreOptions::postgres(&cluster.new_database(), Some(password.path()))
    }
}

/// A plaintext channel balanced over `addresses`, routing by the health of `service`.
fn balanced(addresses: &[&str], service: &str) -> Channel {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let servers = Servers::new(&addresses.join(",")).expect("a server list");
    assert!(servers.balanced());
    servers.connect(ChannelBuilder::new(env), &LoadedTls::default(), service)
}

fn resources(address: &str) -> ResourceV1ProtoClient {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    ResourceV1ProtoClient::new(ChannelBuilder::new(env).connect(address))
}

fn count(address: &str) -> usize {
    resources(address)
        .list_opt(&Empty::new(), call())
        .expect("List answers")
        .resources
        .len()
}

#[test]
fn replicas_on_one_database_share_resources_and_never_share_ids() {
    let cluster = PgCluster::start();
    let password = password_file();
    let mut config = test_config();
    config.store = postgres_store(&cluster, &password);
    let replicas: Vec<_> = (0..3).map(|_| spawn_server_with(config.clone())).collect();
    let addresses: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();

    let created: Vec<Vec<u64>> = thread::scope(|scope| {
        let writers: Vec<_> = (0..3)
            .map(|n| {
                let (through, seen_by) = (&addresses[n], &addresses[(n + 1) % 3]);
                scope.spawn(move || {
                    let (writer, reader) = (resources(through), resources(seen_by));
                    (0..100)
                        .map(|i| {
                            let answer = writer
                                .create_opt(&resource(0, n as u64, &format!("r{n}-{i}")), call())
                                .expect("Create answers");
                            assert_eq!(answer.status.code, 201, "{answer:?}");
                            let id = answer.resource.id;
                            let got = reader.get_opt(&resource_id(id), call()).expect("Get");
                            assert_eq!(
                                (got.status.code, got.resource.name.as_str()),
                                (200, format!("r{n}-{i}").as_str()),
                                "created through one replica, seen at once through another"
                            );
                            id
                        })
                        .collect()
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });

    let ids: BTreeSet<u64> = created.iter().flatten().copied().collect();
    assert_eq!(ids.len(), 300, "no id was given twice across replicas");
    for address in &addresses {
        assert_eq!(count(address), 300, "{address} lists them all");
    }
}

#[test]
fn a_revocation_through_one_replica_is_refused_by_the_others_within_a_second() {
    let cluster = PgCluster::start();
    let password = password_file();
    let revocation = Revocation::new(postgres_store(&cluster, &password));
    let a = spawn_server_with(revocation.config.clone());
    let c = spawn_server_with(revocation.config.clone());
    // Valid first, so replica C has the token in its cache of valid tokens.
    assert_eq!(revocation.verdict(&c), TokenV1Verdict::TOKEN_V1_VALID);
    assert_eq!(revocation.verdict(&c), TokenV1Verdict::TOKEN_V1_VALID);

    let answer = revocation.revoke(&a).expect("Revoke answers");
    assert_eq!(answer.code, 200, "{answer:?}");
    let refused = revocation.refused_after(&c, Duration::from_secs(1));
    assert!(
        refused.is_some(),
        "replica C still accepts the token a second after replica A revoked it"
    );
    assert_eq!(
        revocation.verdict(&a),
        TokenV1Verdict::TOKEN_V1_REVOKED,
        "and A refuses it too"
    );
}

#[test]
fn an_opaque_token_revoked_by_itself_through_one_replica_is_refused_by_the_other_at_once() {
    use common::pki::client_tls;
    use mrmat_rust_api_grpc::proto::{TokenV1ProtoClient, TokenV1RevokeInput};
    let cluster = PgCluster::start();
    let password = password_file();
    let endpoint = crate::introspection::Endpoint::start();
    let mut revocation = Revocation::new(postgres_store(&cluster, &password));
    let mut opaque = mrmat_rust_api_grpc::tokens::ProviderOptions::new(
        crate::introspection::OPAQUE_ISSUER,
        mrmat_rust_api_grpc::tokens::KeysFrom::None,
    );
    opaque.introspection = Some(endpoint.options());
    revocation.config.tokens.providers.push(opaque);
    let a = spawn_server_with(revocation.config.clone());
    let c = spawn_server_with(revocation.config.clone());
    let token = format!("active-{}", fastrand::u64(..));
    let on = |server: &common::TestServer, cert: &str| {
        TokenV1ProtoClient::new(server.channel_with(&client_tls(revocation.pki(), cert)))
    };
    let verdict = |server: &common::TestServer| {
        on(server, "client")
            .validate_opt(&common::jwt::input(1, &token), call())
            .expect("an answer")
            .verdict
            .enum_value_or_default()
    };
    // Cached on C: its answer would be reused for a minute.
    assert_eq!(verdict(&c), TokenV1Verdict::TOKEN_V1_VALID);
    let mut revoke = TokenV1RevokeInput::new();
    revoke.token = token.clone();
    let answer = on(&a, "admin-client")
        .revoke_opt(&revoke, call())
        .expect("revoked");
    assert_eq!(answer.code, 200, "{answer:?}");
    common::wait_until("C to refuse it", Duration::from_secs(1), || {
        verdict(&c) == TokenV1Verdict::TOKEN_V1_REVOKED
    });
    assert_eq!(verdict(&a), TokenV1Verdict::TOKEN_V1_REVOKED);
    assert_eq!(
        endpoint.calls_for(&token),
        1,
        "C refused its cached answer, asked nothing"
    );
}

#[test]
fn a_revocation_whose_notification_was_missed_is_enforced_by_the_next_resync() {
    let cluster = PgCluster::start();
    let password = password_file();
    let store = postgres_store(&cluster, &password);
    let StoreLocation::Postgres(url) = &store.location else {
        unreachable!("a PostgreSQL store")
    };
    let database = url.rsplit('/').next().expect("a database").to_owned();
    let revocation = Revocation::new(store);
    let c = spawn_server_with(revocation.config.clone());
    assert_eq!(revocation.verdict(&c), TokenV1Verdict::TOKEN_V1_VALID);

    // Stored without a notification, as when a listener was away when it was sent.
    let expires_at = common::jwt::now() + 3600;
    cluster
        .client(&database)
        .execute(
            "INSERT INTO revocations (token_id, expires_at) VALUES ($1, $2)",
            &[&revocation.token_id, &expires_at],
        )
        .expect("insert a revocation");
    let refused = revocation.refused_after(&c, Duration::from_secs(15));
    assert!(
        refused.is_some(),
        "the replica never read the revocation it was not told of"
    );
}

#[test]
fn replicas_started_together_on_a_new_database_all_start() {
    let cluster = PgCluster::start();
    let password = password_file();
    let url = cluster.new_database();
    let password_path = password.path().display().to_string();
    let args = ["--store", &url, "--store-password-file", &password_path];
    let replicas: Vec<ServerProcess> = thread::scope(|scope| {
        let starting: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| ServerProcess::start(&args)))
            .collect();
        starting
            .into_iter()
            .map(|replica| replica.join().expect("each replica starts"))
            .collect()
    });
    for replica in &replicas {
        assert_eq!(count(&replica.address), 0);
    }
}

#[test]
fn replicas_writing_at_once_never_deadlock_on_the_database() {
    // Three stores on one database, as three replicas hold them, each with a full batch of
    // creates and renames in flight: every writer takes the same locks in the same order, so
    // none waits for another in a cycle (PostgreSQL would abort one: "deadlock detected").
    let cluster = PgCluster::start();
    let password = password_file();
    let mut config = postgres_store(&cluster, &password);
    config.capacity = Capacity {
        max_resources: 1_000_000,
        max_revocations: 100,
    };
    let replicas: Vec<Stores> = (0..3)
        .map(|_| store::open(&config).expect("the store opens"))
        .collect();
    let first = futures::executor::block_on(replicas[0].resources.create(1, "first".into()))
        .expect("a create");
    // Many small transactions from every replica at once, as under load: each thread waits for
    // a few writes, then sends the next few.
    let failed: Vec<String> = thread::scope(|scope| {
        let writers: Vec<_> = (0..12)
            .map(|n| {
                let resources = &replicas[n % 3].resources;
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for round in 0..100 {
                        let mut pending = vec![resources
                            .rename(first.id, format!("{n}-{round}"))
                            .map(|r| r.map(drop))
                            .boxed()];
                        for k in 0..4 {
                            let name = format!("{n}-{round}-{k}");
                            pending.push(
                                resources
                                    .create(n as u64, name)
                                    .map(|r| r.map(drop))
                                    .boxed(),
                            );
                        }
                        let done = futures::executor::block_on(futures::future::join_all(pending));
                        failed.extend(
                            done.into_iter()
                                .filter_map(|r| r.err().map(|e| e.to_string())),
                        );
                    }
                    failed
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|writer| writer.join().expect("a writer thread"))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "{} of 6000 writes failed, first: {}",
        failed.len(),
        failed[0]
    );
    let listed = futures::executor::block_on(replicas[0].resources.list()).expect("a list");
    let ids: BTreeSet<u64> = listed.iter().map(|r| r.id).collect();
    assert_eq!(listed.len(), 4801);
    assert_eq!(ids.len(), 4801, "ids are unique across replicas");
}

/// Three servers on memory stores of their own, the third's resource store reported down (so
/// its health says NOT_SERVING for the resource API) until its availability is set up again.
fn three_on_their_own_stores() -> (Vec<server::RunningServer>, Vec<String>, Stores3) {
    let mut running = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..3 {
        let store = Stores::memory_with(Arc::new(MemoryStore::new()), 100);
        stores.push(store.availability.clone());
        running.push(server::start_with_stores(&test_config(), store).expect("starts"));
    }
    let addresses = running
        .iter()
        .map(|server| format!("127.0.0.1:{}", server.port()))
        .collect();
    (running, addresses, stores)
}

type Stores3 = Vec<mrmat_rust_api_grpc::store::Availability>;

#[test]
fn calls_are_spread_over_every_replica() {
    let (_running, addresses, _) = three_on_their_own_stores();
    let list: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let client = ResourceV1ProtoClient::new(balanced(&list, "ResourceV1Proto"));
    for n in 0..300 {
        let answer = client
            .create_opt(&resource(0, 1, &format!("r{n}")), call())
            .expect("Create answers");
        assert_eq!(answer.status.code, 201, "{answer:?}");
    }
    let counts: Vec<usize> = addresses.iter().map(|a| count(a)).collect();
    assert_eq!(counts.iter().sum::<usize>(), 300, "{counts:?}");
    assert!(
        counts.iter().all(|n| *n >= 50),
        "round robin gives each replica its share: {counts:?}"
    );
}

#[test]
fn a_replica_not_serving_an_api_gets_none_of_its_calls_until_it_serves_again() {
    let (_running, addresses, availability) = three_on_their_own_stores();
    availability[2].set(false);
    let list: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let client = ResourceV1ProtoClient::new(balanced(&list, "ResourceV1Proto"));
    for n in 0..60 {
        let answer = client
            .create_opt(&resource(0, 1, &format!("r{n}")), call())
            .expect("Create answers");
        assert_eq!(answer.status.code, 201, "{answer:?}");
    }
    assert_eq!(count(&addresses[2]), 0, "NOT_SERVING: sent nothing");
    assert_eq!(count(&addresses[0]) + count(&addresses[1]), 60);

    availability[2].set(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&addresses[2]) == 0 {
        assert!(
            Instant::now() < deadline,
            "SERVING again, yet no call reached it within 10s"
        );
        client
            .create_opt(&resource(0, 1, "again"), call())
            .expect("Create answers");
    }
}

#[test]
fn losing_a_replica_under_load_fails_no_get_list_or_validation() {
    let cluster = PgCluster::start();
    let password = password_file();
    let url = cluster.new_database();
    let key = SigningKey::rsa("rsa-1", Algorithm::RS256);
    let keys = KeyFile::new(&[&key]);
    let mut args = vec![
        "--store".to_owned(),
        url,
        "--store-password-file".to_owned(),
        password.path().display().to_string(),
    ];
    args.extend(token_args(&keys));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replicas: Vec<ServerProcess> = (0..3).map(|_| ServerProcess::start(&args)).collect();
    let addresses: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();
    let list: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let seed = resources(&addresses[0]);
    let ids: Vec<u64> = (0..20)
        .map(|n| {
            seed.create_opt(&resource(0, 1, &format!("r{n}")), call())
                .expect("Create")
                .resource
                .id
        })
        .collect();
    let tokens: Vec<String> = (0..20)
        .map(|n| key.sign(&claims(&format!("u{n}"))))
        .collect();

    let stop = AtomicBool::new(false);
    let (answered, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let validator = TokenValidator::connect(
        &addresses.join(","),
        &Default::default(),
        ValidatorConfig::default(),
    )
    .expect("no TLS files to read");
    thread::scope(|scope| {
        for reader in 0..2 {
            let (stop, answered, failed, ids, list) = (&stop, &answered, &failed, &ids, &list);
            scope.spawn(move || {
                let client = ResourceV1ProtoClient::new(balanced(list, "ResourceV1Proto"));
                let mut n = reader;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let ok = if n % 10 == 0 {
                        client
                            .list_opt(&Empty::new(), call())
                            .map(|l| l.resources.len() == ids.len())
                    } else {
                        client
                            .get_opt(&resource_id(ids[n % ids.len()]), call())
                            .map(|g| g.status.code == 200)
                    };
                    match ok {
                        Ok(true) => answered.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("resource call failed: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
        let (stop, answered, failed, tokens, validator) =
            (&stop, &answered, &failed, &tokens, &validator);
        scope.spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match validator.validate(&tokens[n % tokens.len()]) {
                    Ok(answer)
                        if answer.output().verdict.enum_value_or_default()
                            == TokenV1Verdict::TOKEN_V1_VALID =>
                    {
                        answered.fetch_add(1, Ordering::Relaxed)
                    }
                    other => {
                        eprintln!("validation failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });

        let _stopping = StopOnDrop(stop);
        wait_for_answers(answered, 500);
        replicas[1].signal("KILL");
        assert!(replicas[1].wait_for_exit(Duration::from_secs(5)).is_some());
        let before = answered.load(Ordering::Relaxed);
        wait_for_answers(answered, before + 1000);
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "every Get, List and validation was answered, {} of them",
        answered.load(Ordering::Relaxed)
    );
    drop(replicas);
}

/// Sets its flag when dropped: the load stops however the test's scope ends, a failed assert
/// included (otherwise the scope would wait for the load forever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Waits (up to 30 s) until `answered` reaches `at_least`.
fn wait_for_answers(answered: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} answers within 30s",
            answered.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(10));
    }
}
