//! Group commit, for both databases: every change goes to one writer thread, which applies all
//! the changes waiting at that moment in one transaction and answers each only after the commit.
//! One durable commit (an fsync) then serves many callers, and ids and counts are assigned
//! under the transaction's write lock, so two writers (replicas) never hand out the same id.

use std::sync::{mpsc, Arc};
use std::thread;

use futures::channel::oneshot;
use futures::FutureExt as _;

use super::memory::replayed;
use super::{
    Availability, Changed, Created, MemoryRevocations, Pending, Resource, RevocationStore,
    StoreError, REQUEST_ID_DAYS,
};

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
/// Errors are the driver's message, without credentials.
pub(crate) trait WriteConnection: Send + 'static {
    /// Begins a transaction that holds the database's write lock, and reads the counters.
    fn begin(&mut self) -> Result<Counters, String>;
    /// What the create with this request id made, if one did (within the days kept).
    fn find_request(&mut self, request_id: &str) -> Result<Option<Resource>, String>;
    /// Inserts a new resource; with a request id, remembers it made it, from `now`.
    fn insert(
        &mut self,
        resource: &Resource,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<(), String>;
    /// Forgets request ids remembered before `before` (Unix seconds).
    fn forget_requests(&mut self, before: i64) -> Result<(), String>;
    /// Renames a resource if it is at version `expected` (any when None), one version on.
    fn update(
        &mut self,
        id: u64,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Changed<Resource>, String>;
    /// Deletes a resource if it is at version `expected` (any when None).
    fn delete(&mut self, id: u64, expected: Option<u64>) -> Result<Changed<()>, String>;
    /// Stores a revocation, keeping the later expiry, and forgets expired ones.
    fn revoke(&mut self, token_id: &str, expires_at: i64, now: i64) -> Result<(), String>;
    /// Writes the counters and commits.
    fn commit(&mut self, counters: Counters) -> Result<(), String>;
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
    ) -> Pending<T> {
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

    pub fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Pending<()> {
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
) -> Pending<T> {
    let database = database.to_owned();
    answer
        .map(move |answer| {
            answer.unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    database,
                    reason: format!("the store's {who} stopped"),
                })
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
            Err("not answering; waiting for it to come back".to_owned())
        };
        match outcome {
            Ok(applied) => {
                for (change, applied) in batch.into_iter().zip(applied) {
                    answer(change, Ok(applied));
                }
            }
            Err(reason) => {
                let error = StoreError::Unavailable {
                    database: database.to_owned(),
                    reason,
                };
                for change in batch {
                    answer(change, Err(error.clone()));
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
) -> Result<Vec<Applied>, String> {
    let now = crate::tokens::unix_now();
    let mut applying = || {
        let mut counters = connection.begin()?;
        let mut applied = Vec::with_capacity(batch.len());
        let mut requests = false;
        for change in batch {
            applied.push(match change {
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
                    requests |= request_id.is_some();
                    if let Some(first) = first {
                        Applied::Created(replayed(&first, *owner_id, name))
                    } else if counters.resources >= max_resources {
                        Applied::Full(max_resources as usize)
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
            });
        }
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

/// Tells the caller of `change` what became of it; a caller that has gone is not asked twice.
fn answer(change: Change, outcome: Result<Applied, StoreError>) {
    match (change, outcome) {
        (Change::Create { done, .. }, outcome) => {
            let _ = done.send(outcome.and_then(|applied| match applied {
                Applied::Created(created) => Ok(created),
                Applied::Full(limit) => Err(StoreError::Full { limit }),
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
            let _ = done.send(outcome.map(|_| ()));
        }
    }
}

/// Revocations kept by the writer's database, each unexpired one also in memory, where every
/// validation asks without touching the database.
pub(crate) struct DurableRevocations {
    in_memory: Arc<MemoryRevocations>,
    writer: Arc<Writer>,
    storable: fn(&str) -> Result<(), StoreError>,
}

impl DurableRevocations {
    /// Over `writer`, starting from the unexpired revocations the database holds; `storable`
    /// refuses token ids the database cannot hold.
    pub fn load(
        writer: Arc<Writer>,
        revoked: Vec<(String, i64)>,
        limit: usize,
        storable: fn(&str) -> Result<(), StoreError>,
    ) -> Self {
        let in_memory = Arc::new(MemoryRevocations::with_limit(limit));
        hold_all(&in_memory, revoked);
        Self {
            in_memory,
            writer,
            storable,
        }
    }

    /// The revocations enforced here, for adding those that other replicas store.
    pub fn in_memory(&self) -> Arc<MemoryRevocations> {
        Arc::clone(&self.in_memory)
    }
}

/// Enforces every revocation in `revoked` (token id, expiry) that has not expired, up to the
/// limit of `in_memory`; says so when some are left out.
pub(crate) fn hold_all(in_memory: &MemoryRevocations, revoked: Vec<(String, i64)>) {
    let now = crate::tokens::unix_now();
    let stored = revoked.len();
    for (token_id, expires_at) in revoked {
        if let Err(e) = in_memory.hold(&token_id, expires_at, now) {
            log::warn!(
                "the store holds {stored} unexpired revocations, more than this server keeps \
                 ({e}); some are not enforced"
            );
            break;
        }
    }
}

impl RevocationStore for DurableRevocations {
    fn revoke(&self, token_id: &str, expires_at: i64, now: i64) -> Pending<()> {
        // Memory first, which enforces the limit. When the database then fails, the revocation
        // still holds here until a restart: refusing a token is the safe side to err on.
        let held =
            (self.storable)(token_id).and_then(|()| self.in_memory.hold(token_id, expires_at, now));
        if let Err(e) = held {
            return futures::future::ready(Err(e)).boxed();
        }
        self.writer.revoke(token_id, expires_at, now)
    }

    fn is_revoked(&self, token_id: &str, now: i64) -> bool {
        self.in_memory.holds(token_id, now)
    }
}
