//! Durable stores, against real databases: every acknowledged change survives SIGKILL of the
//! server in the middle of parallel creates, modifies and removes (SQLite and PostgreSQL), ids
//! are never reused, revocations survive a restart, a PostgreSQL outage is UNAVAILABLE and
//! NOT_SERVING and heals by itself, and a store that cannot be used stops the server before it
//! listens.

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::jwt::{token_args, KeyFile, SigningKey};
use common::postgres::{self, PgCluster, PASSWORD};
use common::revocation::Revocation;
use common::{resource, resource_id, spawn_server_with, ServerProcess};
use grpcio::{CallOption, ChannelBuilder, EnvBuilder, RpcStatusCode};
use mrmat_rust_api_grpc::apis::DependsOn;
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use mrmat_rust_api_grpc::proto::{Empty, ResourceV1ProtoClient, TokenV1Verdict};
use mrmat_rust_api_grpc::store::StoreOptions;

const SERVER: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server");

fn client(address: &str) -> ResourceV1ProtoClient {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    ResourceV1ProtoClient::new(ChannelBuilder::new(env).connect(address))
}

fn deadline(seconds: u64) -> CallOption {
    CallOption::default().timeout(Duration::from_secs(seconds))
}

/// Every resource the server lists, by id: (owner, name).
fn listed(client: &ResourceV1ProtoClient) -> BTreeMap<u64, (u64, String)> {
    let answer = client
        .list_opt(&Empty::new(), deadline(30))
        .expect("List answers");
    answer
        .resources
        .into_iter()
        .map(|r| (r.id, (r.owner_id, r.name)))
        .collect()
}

/// A password file for the cluster's user, as a deployment mounts a secret.
fn password_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), format!("{PASSWORD}\n")).expect("write the password");
    file
}

/// The server binary on the PostgreSQL database `url`, its password from a file, with `more`
/// flags.
fn start_on_postgres(
    url: &str,
    password: &tempfile::NamedTempFile,
    more: &[&str],
) -> ServerProcess {
    let password = password.path().to_str().expect("UTF-8");
    let mut args = vec!["--store", url, "--store-password-file", password];
    args.extend_from_slice(more);
    ServerProcess::start(&args)
}

/// What one writer thread knows of its own resources (owner id = its number): the state each
/// was acknowledged in (None = removed), and the one change in flight when the server died,
/// whose outcome is unknown.
#[derive(Default)]
struct Ledger {
    acknowledged: BTreeMap<u64, Option<String>>,
    in_flight: Option<Change>,
}

#[derive(Clone, Debug)]
enum Change {
    Create(String),
    Rename(u64, String),
    Remove(u64),
}

/// Creates, renames and removes its own resources until a call fails (the server is gone) or
/// `stop`; counts acknowledged changes in `done`.
fn write_until_failure(address: &str, owner: u64, stop: &AtomicBool, done: &AtomicUsize) -> Ledger {
    let client = client(address);
    let mut ledger = Ledger::default();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let live: Vec<u64> = ledger
            .acknowledged
            .iter()
            .filter(|(_, name)| name.is_some())
            .map(|(id, _)| *id)
            .collect();
        let name = format!("w{owner}-{seq}");
        let change = match (live.len(), fastrand::u8(0..10)) {
            (0..=4, _) | (_, 0..=4) => Change::Create(name),
            (_, 5..=7) => Change::Rename(live[fastrand::usize(..live.len())], name),
            _ => Change::Remove(live[fastrand::usize(..live.len())]),
        };
        ledger.in_flight = Some(change.clone());
        let acknowledged =
            match &change {
                Change::Create(name) => client
                    .create_opt(&resource(0, owner, name), deadline(10))
                    .map(|answer| {
                        assert_eq!(answer.status.code, 201, "{answer:?}");
                        let created = answer.resource.into_option().expect("the resource");
                        assert_eq!((created.owner_id, &created.name), (owner, name));
                        ledger.acknowledged.insert(created.id, Some(created.name));
                    }),
                Change::Rename(id, name) => client
                    .modify_opt(&resource(*id, owner, name), deadline(10))
                    .map(|answer| {
                        assert_eq!(answer.status.code, 200, "{answer:?}");
                        ledger.acknowledged.insert(*id, Some(name.clone()));
                    }),
                Change::Remove(removed) => client
                    .remove_opt(&resource_id(*removed), deadline(10))
                    .map(|answer| {
                        assert_eq!(answer.code, 401, "{answer:?}");
                        ledger.acknowledged.insert(*removed, None);
                    }),
            };
        if acknowledged.is_err() {
            return ledger;
        }
        ledger.in_flight = None;
        done.fetch_add(1, Ordering::Relaxed);
    }
    ledger
}

/// Runs writers against the server started by `start`, SIGKILLs it mid-flight, starts it again
/// on the same store, and checks that every acknowledged change is there, nothing else is, and
/// new ids follow every earlier one.
fn every_acknowledged_change_survives_sigkill(start: impl Fn() -> ServerProcess) {
    const WRITERS: u64 = 4;
    const CHANGES_BEFORE_KILL: usize = 1_500;
    let server = start();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (1..=WRITERS)
        .map(|owner| {
            let (address, stop, done) = (server.address.clone(), stop.clone(), done.clone());
            thread::spawn(move || write_until_failure(&address, owner, &stop, &done))
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < CHANGES_BEFORE_KILL {
        assert!(Instant::now() < until, "the writers are too slow");
        thread::sleep(Duration::from_millis(5));
    }
    server.signal("KILL");
    let ledgers: Vec<Ledger> = writers
        .into_iter()
        .map(|w| w.join().expect("a writer"))
        .collect();
    assert!(
        ledgers.iter().all(|l| l.in_flight.is_some()),
        "every writer was cut off mid-change, not stopped"
    );
    drop(server);

    let server = start();
    let client = client(&server.address);
    let mut stored = listed(&client);
    let mut highest_id = stored.keys().copied().max();
    for (owner, ledger) in (1..=WRITERS).zip(&ledgers) {
        for (id, acknowledged) in &ledger.acknowledged {
            highest_id = highest_id.max(Some(*id));
            let found = stored.remove(id);
            assert_eq!(found.as_ref().map(|(o, _)| *o).unwrap_or(owner), owner);
            let found = found.map(|(_, name)| name);
            let changed_in_flight = match &ledger.in_flight {
                Some(Change::Rename(target, name)) if target == id => Some(Some(name.clone())),
                Some(Change::Remove(target)) if target == id => Some(None),
                _ => None,
            };
            assert!(
                found == *acknowledged || Some(&found) == changed_in_flight.as_ref(),
                "resource {id}: acknowledged as {acknowledged:?} (in flight: {:?}), found {found:?}",
                ledger.in_flight
            );
        }
    }
    // What is left must be a create that was in flight, whole: its owner and its name.
    for (id, (owner, name)) in &stored {
        let ledger = &ledgers[(*owner - 1) as usize];
        assert!(
            matches!(&ledger.in_flight, Some(Change::Create(pending)) if pending == name),
            "resource {id} ({owner}, {name:?}) was never acknowledged nor in flight"
        );
    }
    let acknowledged: usize = ledgers.iter().map(|l| l.acknowledged.len()).sum();
    assert!(
        acknowledged > 100,
        "only {acknowledged} resources were written"
    );

    // No id is given twice: new ones follow every id the store ever handed out.
    for n in 0..20 {
        let created = client
            .create_opt(&resource(0, 99, &format!("after-{n}")), deadline(10))
            .expect("Create answers")
            .resource
            .into_option()
            .expect("created");
        assert!(
            Some(created.id) > highest_id,
            "id {} given again (highest before: {highest_id:?})",
            created.id
        );
    }
}

#[test]
fn sqlite_keeps_every_acknowledged_change_through_sigkill() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = format!("sqlite:{}", dir.path().join("store.sqlite3").display());
    every_acknowledged_change_survives_sigkill(|| ServerProcess::start(&["--store", &store]));
}

fn health_of(address: &str, service: &str) -> Option<ServingStatus> {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let health = HealthClient::new(ChannelBuilder::new(env).connect(address));
    let mut request = HealthCheckRequest::new();
    request.service = service.to_owned();
    health
        .check_opt(&request, deadline(3))
        .ok()
        .map(|answer| answer.status.enum_value_or_default())
}

/// Revokes a token through one server, stops it, and checks a new server on the same store
/// refuses it.
fn revocations_survive_a_restart_on(store: StoreOptions) {
    let revocation = Revocation::new(store);
    let server = spawn_server_with(revocation.config.clone());
    assert_eq!(revocation.verdict(&server), TokenV1Verdict::TOKEN_V1_VALID);
    let answer = revocation.revoke(&server).expect("revoked");
    assert_eq!(answer.code, 200, "{answer:?}");
    assert_eq!(
        revocation.verdict(&server),
        TokenV1Verdict::TOKEN_V1_REVOKED
    );
    assert!(server.shutdown());
    let restarted = spawn_server_with(revocation.config.clone());
    assert_eq!(
        revocation.verdict(&restarted),
        TokenV1Verdict::TOKEN_V1_REVOKED,
        "the revocation outlived the server"
    );
}

#[test]
fn revocations_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    revocations_survive_a_restart_on(StoreOptions::sqlite(&dir.path().join("store.sqlite3")));
}

/// Runs the server binary with `args` and `env`; it must exit 1 with one line on stderr
/// containing every one of `says`, before listening.
fn refused_at_start(args: &[&str], env: &[(&str, &str)], says: &[&str]) {
    let out = Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("MRMAT_GRPC_STORE")
        .output()
        .expect("the server runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    for said in says {
        assert!(
            stderr.contains(said),
            "{args:?}: {stderr} does not say {said:?}"
        );
    }
}

#[test]
fn by_default_the_store_is_an_sqlite_file_under_data_named_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("MRMAT_GRPC_STORE")
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the server runs");
    let log = common::OutputLines::read(child.stderr.take().expect("piped"));
    let line = log.line_containing("listening on", Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the server starts");
    let file = dir.path().join("data").join("mrmat-grpc.sqlite3");
    assert!(
        line.contains(&format!("store: SQLite at {}", file.display())),
        "{line}"
    );
    assert!(file.exists(), "the file is created");
}

/// The store on a throwaway PostgreSQL cluster (`ci/test --quick` skips them).
mod with_postgres {
    use super::*;

    #[test]
    fn postgres_keeps_every_acknowledged_change_through_sigkill() {
        let url = postgres::shared().new_database();
        let password = password_file();
        every_acknowledged_change_survives_sigkill(|| start_on_postgres(&url, &password, &[]));
    }

    #[test]
    fn a_postgres_outage_is_unavailable_and_not_serving_and_heals_by_itself() {
        // A cluster of its own: this test stops it.
        let cluster = PgCluster::start();
        let url = cluster.new_database();
        let password = password_file();
        // Every API served, the token service too, so that each one's health can be watched.
        let key = SigningKey::ed25519("outage");
        let keys = KeyFile::new(&[&key]);
        let mut more = vec!["--store-timeout", "2", "--metrics-listen", "127.0.0.1:0"];
        let token_args = token_args(&keys);
        more.extend(token_args.iter().map(String::as_str));
        let server = start_on_postgres(&url, &password, &more);
        let registered = common::registered_apis();
        let client = client(&server.address);
        assert_eq!(server.metric("mrmat_store_up"), Some(1.0));
        let kept = client
            .create_opt(&resource(0, 1, "before the outage"), deadline(5))
            .expect("Create answers")
            .resource
            .into_option()
            .expect("created");
        assert_eq!(
            health_of(&server.address, "ResourceV1Proto"),
            Some(ServingStatus::SERVING)
        );

        // Load while the database goes away: every call answers, none waits past its deadline.
        let stop = Arc::new(AtomicBool::new(false));
        // Answers the load has had: OK, and UNAVAILABLE.
        let answered = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let load = {
            let (address, stop, answered) =
                (server.address.clone(), stop.clone(), answered.clone());
            thread::spawn(move || {
                let client = self::client(&address);
                let mut codes = BTreeMap::<String, usize>::new();
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let code = match client.get_opt(&resource_id(kept.id), deadline(3)) {
                        Ok(_) => {
                            answered[0].fetch_add(1, Ordering::Relaxed);
                            "OK".to_owned()
                        }
                        Err(grpcio::Error::RpcFailure(status)) => {
                            assert_eq!(
                                status.code(),
                                RpcStatusCode::UNAVAILABLE,
                                "the only failure is UNAVAILABLE, none waits out its deadline"
                            );
                            answered[1].fetch_add(1, Ordering::Relaxed);
                            "UNAVAILABLE".to_owned()
                        }
                        Err(e) => panic!("{e}"),
                    };
                    assert!(asked.elapsed() < Duration::from_secs(3));
                    *codes.entry(code).or_default() += 1;
                    thread::sleep(Duration::from_millis(2));
                }
                codes
            })
        };
        // The load is under way before the database goes (a busy machine may start it late).
        common::wait_until("the load gets answers", Duration::from_secs(10), || {
            answered[0].load(Ordering::Relaxed) > 0
        });
        cluster.stop();
        let database = format!("PostgreSQL at 127.0.0.1:{}/", cluster.port);
        common::wait_until(
            "Get answers UNAVAILABLE naming the database",
            Duration::from_secs(10),
            || match client.get_opt(&resource_id(kept.id), deadline(3)) {
                Err(grpcio::Error::RpcFailure(status)) => {
                    let message = status.message();
                    assert!(!message.contains(PASSWORD), "{message}");
                    status.code() == RpcStatusCode::UNAVAILABLE && message.contains(&database)
                }
                _ => false,
            },
        );
        let refused = client
            .create_opt(&resource(0, 1, "during the outage"), deadline(3))
            .expect_err("no create while the database is down");
        let grpcio::Error::RpcFailure(status) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(status.code(), RpcStatusCode::UNAVAILABLE, "{status:?}");
        for (name, depends_on) in &registered {
            if *depends_on == DependsOn::Store {
                common::wait_until(
                    &format!("health says {name} NOT_SERVING"),
                    Duration::from_secs(10),
                    || health_of(&server.address, name) == Some(ServingStatus::NOT_SERVING),
                );
            }
        }
        for (name, depends_on) in &registered {
            if *depends_on != DependsOn::Store {
                assert_eq!(
                    health_of(&server.address, name),
                    Some(ServingStatus::SERVING),
                    "{name} needs no database and keeps serving"
                );
            }
        }
        // What an operator's alert sees.
        common::wait_until("mrmat_store_up says 0", Duration::from_secs(10), || {
            server.metric("mrmat_store_up") == Some(0.0)
        });
        let unavailable = r#"mrmat_store_operations_total{operation="get",outcome="unavailable"}"#;
        assert!(
            server.metric(unavailable).unwrap_or(0.0) >= 1.0,
            "{unavailable}"
        );

        // A call that was waiting for a connection when the database went may outlast a short
        // outage and succeed; the load must see the outage itself before it ends.
        common::wait_until("the load sees UNAVAILABLE", Duration::from_secs(10), || {
            answered[1].load(Ordering::Relaxed) > 0
        });
        cluster.start_again();
        common::wait_until(
            "the same server answers OK again",
            Duration::from_secs(20),
            || client.get_opt(&resource_id(kept.id), deadline(3)).is_ok(),
        );
        for (name, _) in &registered {
            common::wait_until(
                &format!("health says {name} SERVING again"),
                Duration::from_secs(10),
                || health_of(&server.address, name) == Some(ServingStatus::SERVING),
            );
        }
        common::wait_until(
            "mrmat_store_up says 1 again",
            Duration::from_secs(10),
            || server.metric("mrmat_store_up") == Some(1.0),
        );
        let after = client
            .create_opt(&resource(0, 1, "after the outage"), deadline(5))
            .expect("Create answers")
            .resource
            .into_option()
            .expect("created");
        stop.store(true, Ordering::Relaxed);
        let codes = load.join().expect("the load");
        assert!(
            codes.contains_key("OK") && codes.contains_key("UNAVAILABLE"),
            "{codes:?}"
        );
        let stored = listed(&client);
        assert_eq!(
            stored.get(&kept.id).map(|(_, n)| n.as_str()),
            Some("before the outage")
        );
        assert_eq!(
            stored.get(&after.id).map(|(_, n)| n.as_str()),
            Some("after the outage")
        );
        assert_eq!(
            stored.len(),
            2,
            "nothing of the refused create was kept: {stored:?}"
        );
    }

    #[test]
    fn a_revocation_during_a_postgres_outage_is_unavailable_yet_holds_on_this_server() {
        let cluster = PgCluster::start();
        let password = password_file();
        let revocation = Revocation::new(StoreOptions {
            timeout: Duration::from_secs(2),
            ..StoreOptions::postgres(&cluster.new_database(), Some(password.path()))
        });
        let server = spawn_server_with(revocation.config.clone());
        assert_eq!(revocation.verdict(&server), TokenV1Verdict::TOKEN_V1_VALID);

        cluster.stop();
        let asked = Instant::now();
        let refused = revocation.revoke(&server).expect_err("not stored");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "answered within the store timeout"
        );
        let grpcio::Error::RpcFailure(status) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(status.code(), RpcStatusCode::UNAVAILABLE, "{status:?}");
        assert!(
            status.message().contains("PostgreSQL at 127.0.0.1:"),
            "{}",
            status.message()
        );
        assert_eq!(
            revocation.verdict(&server),
            TokenV1Verdict::TOKEN_V1_REVOKED,
            "refused here all the same: the safe side"
        );

        cluster.start_again();
        common::wait_until(
            "the revocation is stored once the database is back",
            Duration::from_secs(20),
            || {
                revocation
                    .revoke(&server)
                    .is_ok_and(|answer| answer.code == 200)
            },
        );
        assert!(server.shutdown());
        let restarted = spawn_server_with(revocation.config.clone());
        assert_eq!(
            revocation.verdict(&restarted),
            TokenV1Verdict::TOKEN_V1_REVOKED
        );
    }

    #[test]
    fn revocations_survive_a_restart_on_postgres() {
        let password = password_file();
        revocations_survive_a_restart_on(StoreOptions::postgres(
            &postgres::shared().new_database(),
            Some(password.path()),
        ));
    }

    #[test]
    fn postgres_refuses_a_name_it_cannot_hold_without_failing_other_changes() {
        let url = postgres::shared().new_database();
        let password = password_file();
        let server = start_on_postgres(&url, &password, &[]);
        let client = client(&server.address);
        let refused = client
            .create_opt(&resource(0, 1, "nul\0inside"), deadline(5))
            .expect_err("refused");
        let grpcio::Error::RpcFailure(status) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT);
        assert!(status.message().contains("U+0000"), "{}", status.message());
        let created = client
            .create_opt(&resource(0, 1, "fine"), deadline(5))
            .expect("Create answers");
        assert_eq!(created.status.code, 201);
    }

    #[test]
    fn a_store_that_cannot_be_used_stops_the_server_before_it_listens_sqlite_and_postgres_alike() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("a-file");
        std::fs::write(&file, "not a directory").expect("write");
        let under_a_file = format!("sqlite:{}/store.sqlite3", file.display());
        refused_at_start(
            &["--store", &under_a_file],
            &[],
            &["cannot create the directory", "a-file"],
        );
        let not_a_database = format!("sqlite:{}", file.display());
        refused_at_start(
            &["--store", &not_a_database],
            &[],
            &["a-file", "not a database"],
        );
        let a_directory = format!("sqlite:{}", dir.path().display());
        refused_at_start(
            &["--store", &a_directory],
            &[],
            &["cannot open the SQLite store"],
        );
        refused_at_start(
            &["--store", "mysql://root:secret@db/x"],
            &[],
            &["is not a store", "sqlite:PATH"],
        );
        refused_at_start(
            &["--store", "postgres://mrmat@127.0.0.1:notaport/x"],
            &[],
            &["not a usable PostgreSQL URL"],
        );

        let cluster = postgres::shared();
        let url = cluster.url("postgres");
        refused_at_start(
            &["--store", &url],
            &[("MRMAT_GRPC_STORE_PASSWORD", "wrong-password")],
            &["cannot connect to", "password authentication failed"],
        );
        let closed = format!("postgres://mrmat@127.0.0.1:{}/x", common::free_port());
        refused_at_start(
            &["--store", &closed, "--store-timeout", "2"],
            &[("MRMAT_GRPC_STORE_PASSWORD", PASSWORD)],
            &["cannot connect to PostgreSQL at 127.0.0.1:"],
        );
        refused_at_start(
            &[
                "--store",
                &url,
                "--store-password-file",
                "/nonexistent/password",
            ],
            &[],
            &["cannot read the store password file /nonexistent/password"],
        );
    }

    #[test]
    fn a_schema_newer_than_the_server_knows_is_refused_by_sqlite_and_postgres() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store.sqlite3");
        let store = format!("sqlite:{}", path.display());
        drop(ServerProcess::start(&["--store", &store]));
        let db = rusqlite::Connection::open(&path).expect("open");
        db.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
            [],
        )
        .expect("record a newer migration");
        drop(db);
        refused_at_start(
            &["--store", &store],
            &[],
            &["schema version 99", "newer than this server knows"],
        );

        let url = postgres::shared().new_database();
        let password = password_file();
        let password = password.path().to_str().expect("UTF-8").to_owned();
        drop(ServerProcess::start(&[
            "--store",
            &url,
            "--store-password-file",
            &password,
        ]));
        let database = url.rsplit('/').next().expect("a database name");
        postgres::shared()
            .client(database)
            .batch_execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (7, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
            )
            .expect("record a newer migration");
        refused_at_start(
            &["--store", &url, "--store-password-file", &password],
            &[],
            &["schema version 7", "newer than this server knows"],
        );
    }
}
