//! Group commit, for both databases: every change goes to one writer thread, which applies all
//! the changes waiting at that moment in one transaction and answers each only after the commit.
//! One durable commit (an fsync) then serves many callers, and ids and counts are assigned
//! under the transaction's write lock, so two writers (replicas) never hand out the same id.

use std::sync::mpsc;
use std::thread;

use futures::channel::oneshot;
use futures::FutureExt as _;

use futures::future::BoxFuture;

use super::memory::replayed;
use super::resources::{Changed, Created, Pending, Resource, REQUEST_ID_DAYS};
use crate::availability::Availability;
use crate::store_error::{Held, StoreError};
use crate::time::unix_now;
use crate::tokens::Stored;

/// The most changes applied in one transaction: enough to share a commit among every caller a
/// busy server has in flight, few enough that none waits long behind the rest.
const MAX_BATCH: usize = 512;

/// What the writer keeps across commits in the database itself (the `counters` table).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counters {
    /// The id the next resource gets; only ever grows.
    pub next_id: u64,
    /// How many resources are stored.
    pub resources: u64,
}

/// A database connection that the writer applies changes through, one transaction at a time.
pub(crate) trait WriteConnection: Send + 'static {
    /// Begins a transaction that holds the database's write lock, and reads the counters.
    fn begin(&mut self) -> Result<Counters, DatabaseFailure>;
    /// What the create with this request id made, if one did (within the days kept).
    fn find_request(&mut self, request_id: &str) -> Result<Option<Resource>, DatabaseFailure>;
    /// Inserts a new resource; with a request id, remembers it made it, from `now`.
    fn insert(
        &mut self,
        resource: &Resource,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<(), DatabaseFailure>;
    /// Forgets request ids remembered before `before` (Unix seconds).
    fn forget_requests(&mut self, before: i64) -> Result<(), DatabaseFailure>;
    /// Renames a resource if it is at version `expected` (any when None), one version on.
    fn update(
        &mut self,
        id: u64,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Changed<Resource>, DatabaseFailure>;
    /// Deletes a resource if it is at version `expected` (any when None).
    fn delete(&mut self, id: u64, expected: Option<u64>) -> Result<Changed<()>, DatabaseFailure>;
    /// Stores a revocation, keeping the later expiry, and forgets expired ones.
    fn revoke(&mut self, token_id: &str, expires_at: i64, now: i64) -> Result<(), DatabaseFailure>;
    /// Writes the counters and commits.
    fn commit(&mut self, counters: Counters) -> Result<(), DatabaseFailure>;
    /// Abandons the transaction after an error (the connection may be gone: best effort).
    fn rollback(&mut self);
    /// Told when a transaction failed, so the store can check on its database.
    fn failed(&mut self) {}
}

enum Change {
    Create {
        request_id: Option<String>,
        owner_id: u64,
        name: String,
        done: oneshot::Sender<Result<Created, StoreError>>,
    },
    Update {
        id: u64,
        name: String,
        expected: Option<u64>,
        done: oneshot::Sender<Result<Changed<Resource>, StoreError>>,
    },
    Delete {
        id: u64,
        expected: Option<u64>,
        done: oneshot::Sender<Result<Changed<()>, StoreError>>,
    },
    Revoke {
        token_id: String,
        expires_at: i64,
        now: i64,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What the database said when a statement or a transaction failed, in the driver's words
/// without credentials. The writer answers every change of the batch UNAVAILABLE with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DatabaseFailure {
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for DatabaseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<String> for DatabaseFailure {
    fn from(reason: String) -> Self {
        Self { reason }
    }
}

/// What one change came to, before the commit makes it true.
enum Applied {
    Created(Created),
    /// Refused: the store holds its limit.
    Full(usize),
    Updated(Changed<Resource>),
    Deleted(Changed<()>),
    Revoked,
}

/// The handle callers send changes through; the writer thread ends when it is dropped.
pub(crate) struct Writer {
    changes: mpsc::Sender<Change>,
    database: String,
}

impl Writer {
    /// Starts the writer thread over `connection`. `database` names it in errors; calls fail at
    /// once while `availability` says it is down; at most `max_resources` are stored.
    pub fn start(
        connection: impl WriteConnection,
        database: String,
        availability: Availability,
        max_resources: usize,
    ) -> Self {
        let (changes, received) = mpsc::channel();
        let name = database.clone();
        thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || write_batches(connection, &name, &availability, max_resources, received))
            .expect("the OS starts a thread");
        Self { changes, database }
    }

    fn send<T: Send + 'static>(
        &self,
        change: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Change,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let (done, answer) = oneshot::channel();
        // Only fails when the writer thread has gone, which `answer` then reports.
        let _ = self.changes.send(change(done));
        answered(answer, &self.database, "writer")
    }

    pub fn create(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Pending<Created> {
        self.send(|done| Change::Create {
            request_id,
            owner_id,
            name,
            done,
        })
    }

    pub fn update(
        &self,
        id: u64,
        name: String,
        expected: Option<u64>,
    ) -> Pending<Changed<Resource>> {
        self.send(|done| Change::Update {
            id,
            name,
            expected,
            done,
        })
    }

    pub fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>> {
        self.send(|done| Change::Delete { id, expected, done })
    }

    pub fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Stored {
        let token_id = token_id.to_owned();
        self.send(|done| Change::Revoke {
            token_id,
            expires_at,
            now,
            done,
        })
    }
}

/// The answer a store thread (`who`: writer, readers) sends through `answer`; UNAVAILABLE if the
/// thread has gone without answering.
pub(crate) fn answered<T: Send + 'static>(
    answer: oneshot::Receiver<Result<T, StoreError>>,
    database: &str,
    who: &'static str,
) -> BoxFuture<'static, Result<T, StoreError>> {
    let database = database.to_owned();
    answer
        .map(move |answer| {
            answer.unwrap_or_else(|_| {
                Err(StoreError::unavailable(
                    database,
                    format!("the store's {who} stopped"),
                ))
            })
        })
        .boxed()
}

fn write_batches(
    mut connection: impl WriteConnection,
    database: &str,
    availability: &Availability,
    max_resources: usize,
    received: mpsc::Receiver<Change>,
) {
    let max_resources = max_resources as u64;
    while let Ok(first) = received.recv() {
        let mut batch = vec![first];
        batch.extend(received.try_iter().take(MAX_BATCH - 1));
        let outcome = if availability.is_up() {
            apply(&mut connection, &batch, max_resources)
        } else {
            Err(DatabaseFailure::from(
                "not answering; waiting for it to come back".to_owned(),
            ))
        };
        match outcome {
            Ok(applied) => {
                for (change, applied) in batch.into_iter().zip(applied) {
                    tell_caller(change, Ok(applied));
                }
            }
            Err(DatabaseFailure { reason }) => {
                let error = StoreError::unavailable(database, reason);
                for change in batch {
                    tell_caller(change, Err(error.clone()));
                }
            }
        }
    }
}

/// Applies `batch` in one transaction; nothing of it is kept unless all of it is.
fn apply(
    connection: &mut impl WriteConnection,
    batch: &[Change],
    max_resources: u64,
) -> Result<Vec<Applied>, DatabaseFailure> {
    let now = unix_now();
    let mut applying = || {
        let mut counters = connection.begin()?;
        let applied = batch
            .iter()
            .map(|change| apply_one(connection, change, &mut counters, max_resources, now))
            .collect::<Result<Vec<_>, _>>()?;
        let requests = batch.iter().any(|change| {
            matches!(
                change,
                Change::Create {
                    request_id: Some(_),
                    ..
                }
            )
        });
        if requests {
            connection.forget_requests(now - REQUEST_ID_DAYS * 86_400)?;
        }
        connection.commit(counters)?;
        Ok(applied)
    };
    let outcome = applying();
    if outcome.is_err() {
        connection.rollback();
        connection.failed();
    }
    outcome
}

/// Applies one change inside the transaction, keeping `counters` as it goes.
fn apply_one(
    connection: &mut impl WriteConnection,
    change: &Change,
    counters: &mut Counters,
    max_resources: u64,
    now: i64,
) -> Result<Applied, DatabaseFailure> {
    Ok(match change {
        Change::Create {
            request_id,
            owner_id,
            name,
            ..
        } => {
            // A retry of a create already made (in this batch too): its first answer.
            let first = match request_id {
                Some(request_id) => connection.find_request(request_id)?,
                None => None,
            };
            if let Some(first) = first {
                Applied::Created(replayed(&first, *owner_id, name))
            } else if counters.resources >= max_resources {
                Applied::Full(usize::try_from(max_resources).unwrap_or(usize::MAX))
            } else {
                let resource = Resource {
                    id: counters.next_id,
                    owner_id: *owner_id,
                    name: name.clone(),
                    version: 1,
                };
                connection.insert(&resource, request_id.as_deref(), now)?;
                counters.next_id += 1;
                counters.resources += 1;
                Applied::Created(Created::Done(resource))
            }
        }
        Change::Update {
            id, name, expected, ..
        } => Applied::Updated(connection.update(*id, name, *expected)?),
        Change::Delete { id, expected, .. } => {
            let deleted = connection.delete(*id, *expected)?;
            if deleted == Changed::Done(()) {
                counters.resources = counters.resources.saturating_sub(1);
            }
            Applied::Deleted(deleted)
        }
        Change::Revoke {
            token_id,
            expires_at,
            now,
            ..
        } => {
            connection.revoke(token_id, *expires_at, *now)?;
            Applied::Revoked
        }
    })
}

/// Tells the caller of `change` what became of it; a caller that has gone is not asked twice.
fn tell_caller(change: Change, outcome: Result<Applied, StoreError>) {
    match (change, outcome) {
        (Change::Create { done, .. }, outcome) => {
            let _ = done.send(outcome.and_then(|applied| match applied {
                Applied::Created(created) => Ok(created),
                Applied::Full(limit) => Err(StoreError::full(Held::Resources, limit)),
                _ => unreachable!("a create is applied as created or full"),
            }));
        }
        (Change::Update { done, .. }, outcome) => {
            let _ = done.send(outcome.map(|applied| match applied {
                Applied::Updated(changed) => changed,
                _ => unreachable!("an update is applied as updated"),
            }));
        }
        (Change::Delete { done, .. }, outcome) => {
            let _ = done.send(outcome.map(|applied| match applied {
                Applied::Deleted(changed) => changed,
                _ => unreachable!("a delete is applied as deleted"),
            }));
        }
        (Change::Revoke { done, .. }, outcome) => {
            let _ = done.send(outcome.map(drop));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use futures::executor::block_on;

    use super::*;
    use crate::store::StoreErrorKind;

    /// What a fake database holds: its committed rows, and what the tests watch.
    #[derive(Clone, Default)]
    struct Rows {
        resources: BTreeMap<u64, Resource>,
        requests: BTreeMap<String, Resource>,
        revocations: BTreeMap<String, i64>,
        counters: (u64, u64),
    }

    /// A database in memory behind [`WriteConnection`]: a transaction works on a copy of the
    /// committed rows, which commit keeps and rollback drops.
    #[derive(Clone, Default)]
    struct FakeDatabase {
        committed: Arc<Mutex<Rows>>,
        /// How many changes each commit carried.
        commits: Arc<Mutex<Vec<usize>>>,
        fail_commits: Arc<AtomicBool>,
        /// Stops the next transaction at its BEGIN: it says it has arrived, then waits to be let
        /// through, so that the test knows what the batch after it will hold.
        gate: Arc<Mutex<Option<Gate>>>,
    }

    struct Gate {
        arrived: mpsc::Sender<()>,
        open: mpsc::Receiver<()>,
    }

    /// Sets a gate on `database`'s next BEGIN; returns (arrived, open).
    fn gate(database: &FakeDatabase) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (arrived, at_gate) = mpsc::channel();
        let (let_through, open) = mpsc::channel();
        *database.gate.lock().expect("unpoisoned") = Some(Gate { arrived, open });
        (at_gate, let_through)
    }

    struct FakeConnection {
        database: FakeDatabase,
        tx: Option<Rows>,
        changes: usize,
    }

    impl FakeConnection {
        fn tx(&mut self) -> Result<&mut Rows, DatabaseFailure> {
            self.tx
                .as_mut()
                .ok_or_else(|| "no transaction".to_owned().into())
        }

        /// The transaction, for a change it counts.
        fn change(&mut self) -> Result<&mut Rows, DatabaseFailure> {
            self.changes += 1;
            self.tx()
        }
    }

    impl WriteConnection for FakeConnection {
        fn begin(&mut self) -> Result<Counters, DatabaseFailure> {
            let gate = self.database.gate.lock().expect("unpoisoned").take();
            if let Some(gate) = gate {
                let _ = gate.arrived.send(());
                let _ = gate.open.recv();
            }
            let rows = self.database.committed.lock().expect("unpoisoned").clone();
            let (next_id, resources) = rows.counters;
            self.tx = Some(rows);
            self.changes = 0;
            Ok(Counters { next_id, resources })
        }

        fn find_request(&mut self, request_id: &str) -> Result<Option<Resource>, DatabaseFailure> {
            Ok(self.tx()?.requests.get(request_id).cloned())
        }

        fn insert(
            &mut self,
            resource: &Resource,
            request_id: Option<&str>,
            _: i64,
        ) -> Result<(), DatabaseFailure> {
            let tx = self.change()?;
            tx.resources.insert(resource.id, resource.clone());
            if let Some(request_id) = request_id {
                tx.requests.insert(request_id.to_owned(), resource.clone());
            }
            Ok(())
        }

        fn forget_requests(&mut self, _: i64) -> Result<(), DatabaseFailure> {
            Ok(())
        }

        fn update(
            &mut self,
            id: u64,
            name: &str,
            expected: Option<u64>,
        ) -> Result<Changed<Resource>, DatabaseFailure> {
            let tx = self.change()?;
            let Some(resource) = tx.resources.get_mut(&id) else {
                return Ok(Changed::Missing);
            };
            if expected.is_some_and(|v| v != resource.version) {
                return Ok(Changed::Stale {
                    current: resource.version,
                });
            }
            resource.name = name.to_owned();
            resource.version += 1;
            Ok(Changed::Done(resource.clone()))
        }

        fn delete(&mut self, id: u64, _: Option<u64>) -> Result<Changed<()>, DatabaseFailure> {
            Ok(match self.change()?.resources.remove(&id) {
                Some(_) => Changed::Done(()),
                None => Changed::Missing,
            })
        }

        fn revoke(
            &mut self,
            token_id: &str,
            expires_at: i64,
            _: i64,
        ) -> Result<(), DatabaseFailure> {
            self.change()?
                .revocations
                .insert(token_id.to_owned(), expires_at);
            Ok(())
        }

        fn commit(&mut self, counters: Counters) -> Result<(), DatabaseFailure> {
            let mut rows = self
                .tx
                .take()
                .ok_or_else(|| DatabaseFailure::from("no transaction".to_owned()))?;
            if self.database.fail_commits.load(Ordering::SeqCst) {
                return Err("the disk is full".to_owned().into());
            }
            rows.counters = (counters.next_id, counters.resources);
            *self.database.committed.lock().expect("unpoisoned") = rows;
            self.database
                .commits
                .lock()
                .expect("unpoisoned")
                .push(self.changes);
            Ok(())
        }

        fn rollback(&mut self) {
            self.tx = None;
        }
    }

    fn writer(max_resources: usize) -> (Writer, FakeDatabase, Availability) {
        let database = FakeDatabase::default();
        let availability = Availability::always_up();
        let connection = FakeConnection {
            database: database.clone(),
            tx: None,
            changes: 0,
        };
        let writer = Writer::start(
            connection,
            "the fake".to_owned(),
            availability.clone(),
            max_resources,
        );
        (writer, database, availability)
    }

    fn created(pending: Pending<Created>) -> Resource {
        match block_on(pending).expect("stored") {
            Created::Done(resource) => resource,
            Created::Conflict(first) => panic!("a conflict with {first:?}"),
        }
    }

    #[test]
    fn changes_that_wait_together_share_one_commit() {
        let (writer, database, _) = writer(100);
        let (at_gate, open) = gate(&database);
        // The first change holds the writer at its BEGIN; the rest queue up meanwhile.
        let first = writer.create(None, 1, "first".into());
        at_gate.recv().expect("the writer reaches the gate");
        let rest: Vec<_> = (0..9)
            .map(|n| writer.create(None, 1, format!("r{n}")))
            .collect();
        open.send(()).expect("the writer waits at the gate");
        assert_eq!(created(first).id, 0);
        let ids: Vec<u64> = rest.into_iter().map(|p| created(p).id).collect();
        assert_eq!(ids, (1..10).collect::<Vec<_>>(), "ids in the order asked");
        assert_eq!(*database.commits.lock().expect("unpoisoned"), [1, 9]);
    }

    #[test]
    fn a_create_repeated_with_its_request_id_answers_the_first_even_in_the_same_batch() {
        let (writer, database, _) = writer(100);
        let (at_gate, open) = gate(&database);
        let hold = writer.create(None, 9, "holds the gate".into());
        at_gate.recv().expect("the writer reaches the gate");
        let first = writer.create(Some("r".into()), 1, "a".into());
        let retry = writer.create(Some("r".into()), 1, "a".into());
        let other = writer.create(Some("r".into()), 2, "b".into());
        open.send(()).expect("the writer waits at the gate");
        created(hold);
        let first = created(first);
        assert_eq!(created(retry), first, "the retry gets the first answer");
        assert_eq!(block_on(other), Ok(Created::Conflict(first.clone())));
        let later = created(writer.create(Some("r".into()), 1, "a".into()));
        assert_eq!(later, first, "and so does one in a later batch");
        let rows = database.committed.lock().expect("unpoisoned").clone();
        assert_eq!(
            rows.resources.len(),
            2,
            "created once: {:?}",
            rows.resources
        );
    }

    #[test]
    fn creates_beyond_the_limit_are_full_until_a_delete_makes_room() {
        let (writer, _, _) = writer(2);
        let a = created(writer.create(None, 1, "a".into()));
        created(writer.create(None, 1, "b".into()));
        assert_eq!(
            block_on(writer.create(None, 1, "c".into())),
            Err(StoreError::full(Held::Resources, 2))
        );
        assert_eq!(block_on(writer.delete(a.id, None)), Ok(Changed::Done(())));
        assert_eq!(
            created(writer.create(None, 1, "c".into())).id,
            2,
            "ids are never reused"
        );
    }

    #[test]
    fn a_failed_commit_answers_every_waiter_and_keeps_nothing() {
        let (writer, database, _) = writer(100);
        let kept = created(writer.create(None, 1, "kept".into()));
        database.fail_commits.store(true, Ordering::SeqCst);
        let (at_gate, open) = gate(&database);
        let hold = writer.create(None, 1, "holds the gate".into());
        at_gate.recv().expect("the writer reaches the gate");
        // These three share the next transaction, whose commit fails.
        let create = writer.create(None, 1, "lost".into());
        let update = writer.update(kept.id, "renamed".into(), None);
        let revoke = writer.revoke("jti", 100, 1);
        open.send(()).expect("the writer waits at the gate");
        assert!(block_on(hold).is_err());
        let unavailable = |e: &StoreError| matches!(e.kind(), StoreErrorKind::Unavailable { reason, .. } if reason == "the disk is full");
        assert!(block_on(create).is_err_and(|e| unavailable(&e)));
        assert!(block_on(update).is_err_and(|e| unavailable(&e)));
        assert!(block_on(revoke).is_err_and(|e| unavailable(&e)));

        database.fail_commits.store(false, Ordering::SeqCst);
        let rows = database.committed.lock().expect("unpoisoned").clone();
        assert_eq!(
            rows.resources
                .values()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["kept"]
        );
        assert!(rows.revocations.is_empty());
        assert_eq!(
            created(writer.create(None, 1, "next".into())).id,
            1,
            "no id was used up"
        );
    }

    #[test]
    fn while_the_database_is_down_changes_fail_at_once_without_a_transaction() {
        let (writer, database, availability) = writer(100);
        availability.set(false);
        let refused = block_on(writer.create(None, 1, "a".into()));
        assert!(
            matches!(refused.as_ref().map_err(StoreError::kind), Err(StoreErrorKind::Unavailable { database, reason }) if database == "the fake" && reason.contains("not answering")),
            "{refused:?}"
        );
        assert!(database.commits.lock().expect("unpoisoned").is_empty());
        availability.set(true);
        assert_eq!(created(writer.create(None, 1, "a".into())).id, 0);
    }

    #[test]
    fn a_conditional_change_says_what_the_resource_is_at() {
        let (writer, _, _) = writer(100);
        let a = created(writer.create(None, 1, "a".into()));
        assert_eq!(
            block_on(writer.update(a.id, "b".into(), Some(7))),
            Ok(Changed::Stale { current: 1 })
        );
        let renamed = block_on(writer.update(a.id, "b".into(), Some(1))).expect("stored");
        assert!(matches!(
            renamed,
            Changed::Done(Resource { version: 2, .. })
        ));
        assert_eq!(
            block_on(writer.update(99, "x".into(), None)),
            Ok(Changed::Missing)
        );
    }
}
