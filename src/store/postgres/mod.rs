//! A PostgreSQL server, for a store that outlives the machine and is shared by replicas. Reads
//! go to a few reader threads, never run on the caller's thread (a slow database must not hold
//! the server's completion queues, which also answer health checks and token validations); each
//! reader takes every Get waiting and asks for them in one query (`id = ANY($1)`), so a busy
//! server makes one round trip for many Gets. Changes go through the group-commit writer
//! ([`super::batch`]), which takes the `counters` rows' lock, so ids stay unique whichever
//! replica assigns them.
//!
//! A monitor asks the database every second (at once when a call has failed): while it does not
//! answer, calls fail at once with UNAVAILABLE instead of each waiting for a connection, health
//! checking reports the resource API NOT_SERVING, and everything resumes when it answers again.

mod listen;
mod monitor;
mod read;
mod write;

use std::str::FromStr as _;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{self, FutureExt as _};
use postgres::config::Host;
use postgres::{Client, Config, NoTls};

use super::batch::{answered, Writer};
use super::durable::DurableRevocations;
use crate::availability::Availability;
use crate::store::migrations;
use crate::store::options::StoreOptions;
use crate::store::resources::{Changed, Created, PageQuery, Pending, Resource, ResourceStore};
use crate::store::stores::{OpenError, Stores};
use crate::store_error::StoreError;
use listen::{listen, start_listener};
use monitor::start_monitor;
use read::{start_readers, Read, Readers, READERS};
use write::{PgWriter, PreparedWriter};

/// The advisory lock that migrations run under (any number the application uses only for this).
const MIGRATION_LOCK: i64 = 0x6d72_6d61_7467_7270;

/// Connects, migrates the schema, loads the revocations, and starts the store's threads: the
/// monitor, the writer, the readers and the revocation listener.
pub(super) fn open(url: &str, options: &StoreOptions) -> Result<Stores, OpenError> {
    let capacity = options.capacity;
    let pg = config(url, options)?;
    let database = describe(&pg);
    let mut client = pg
        .connect(NoTls)
        .map_err(|e| OpenError(format!("cannot connect to {database}: {}", reason(&e))))?;
    migrate(&mut client, &database)?;
    // Listening before the first load: a revocation stored meanwhile is in one or the other.
    let listening =
        listen(&pg).map_err(|why| OpenError(format!("cannot listen on {database}: {why}")))?;
    let revoked = load_revocations(&mut client)
        .map_err(|e| OpenError(format!("cannot read {database}: {}", reason(&e))))?;

    let availability = Availability::always_up();
    let (poke, pokes) = mpsc::channel();
    start_monitor(pg.clone(), database.clone(), availability.clone(), pokes);
    let prepared = PreparedWriter::new(client).map_err(|e| {
        OpenError(format!(
            "cannot prepare statements on {database}: {}",
            reason(&e)
        ))
    })?;
    let writer = Arc::new(Writer::start(
        PgWriter {
            config: pg.clone(),
            client: Some(prepared),
            poke: poke.clone(),
        },
        database.clone(),
        availability.clone(),
        capacity.max_resources,
    ));
    let readers = r2d2::Pool::builder()
        .max_size(READERS)
        .min_idle(Some(READERS))
        .connection_timeout(options.timeout)
        .build_unchecked(Readers { config: pg.clone() });
    let reads = start_readers(readers, database.clone(), availability.clone(), poke);
    let revocations =
        DurableRevocations::load(writer.clone(), revoked, capacity.max_revocations, storable);
    let enforced = Arc::downgrade(&revocations.in_memory());
    start_listener(pg, database.clone(), listening, enforced);
    Ok(Stores {
        resources: Arc::new(PgStore {
            reads,
            writer,
            database: database.clone(),
        }),
        revocations: Arc::new(revocations),
        availability,
        description: database,
    })
}

/// The driver's configuration of `url`: the password from `options` when the URL has none,
/// and every wait bounded by the store's timeout.
fn config(url: &str, options: &StoreOptions) -> Result<Config, OpenError> {
    let mut pg = Config::from_str(url).map_err(|e| {
        OpenError(format!(
            "--store is not a usable PostgreSQL URL ({e}); the form is \
             postgres://USER@HOST:PORT/DATABASE"
        ))
    })?;
    if pg.get_password().is_none() {
        if let Some(password) = options.password()? {
            pg.password(password);
        }
    }
    let timeout = options.timeout;
    let statement_timeout = timeout.as_millis().max(1);
    pg.application_name("mrmat-rust-api-grpc")
        .connect_timeout(timeout)
        // A peer that vanished (a cut link) fails the call within the timeout, not TCP's minutes.
        .tcp_user_timeout(timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .options(&format!("-c statement_timeout={statement_timeout}"))
        // Notices ("relation already exists, skipping") are not worth an info line.
        .notice_callback(|notice| log::debug!("PostgreSQL: {}", notice.message()));
    Ok(pg)
}

/// Brings the schema up to date. Replicas starting together on a new database would each apply
/// the migrations: one at a time, under a lock the database releases if this process dies
/// holding it.
fn migrate(client: &mut Client, database: &str) -> Result<(), OpenError> {
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(|e| {
            OpenError(format!(
                "cannot lock the schema of {database}: {}",
                reason(&e)
            ))
        })?;
    let migrated = migrations::apply(migrations::postgres(), client, database);
    let _ = client.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    migrated
}

/// `PostgreSQL at HOST:PORT/DATABASE as USER`: what logs and errors call it (no password).
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("PostgreSQL at {host}:{port}/{dbname} as {user}")
}

/// The driver's error with its cause: `Error`'s own text is often only "db error".
fn reason(e: &postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{}: {}", db.severity(), db.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

fn load_revocations(client: &mut Client) -> Result<Vec<(String, i64)>, postgres::Error> {
    let now = crate::time::unix_now();
    let rows = client.query(
        "SELECT token_id, expires_at FROM revocations WHERE expires_at > $1",
        &[&now],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

struct PgStore {
    reads: mpsc::Sender<Read>,
    writer: Arc<Writer>,
    database: String,
}

fn resource(row: &postgres::Row) -> Resource {
    Resource {
        id: row.get::<_, i64>(0) as u64,
        owner_id: row.get::<_, i64>(1) as u64,
        name: row.get(2),
        version: row.get::<_, i64>(3) as u64,
    }
}

/// PostgreSQL text cannot hold U+0000; such text is refused before it reaches a batch, where
/// it would fail every change committed with it.
fn storable(text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        return Err(StoreError::unstorable(
            "the text contains U+0000 (NUL), which this store (PostgreSQL) cannot hold",
        ));
    }
    Ok(())
}

impl PgStore {
    /// Queues `read` for a reader thread; its answer comes through the returned future.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Read,
    ) -> Pending<T> {
        let (done, answer) = oneshot::channel();
        // Only fails when the readers have gone, which `answer` then reports.
        let _ = self.reads.send(read(done));
        answered(answer, &self.database, "readers")
    }
}

impl ResourceStore for PgStore {
    fn list(&self) -> Pending<Vec<Resource>> {
        self.read(Read::List)
    }

    fn page(&self, query: PageQuery) -> Pending<Vec<Resource>> {
        self.read(|done| Read::Page(query, done))
    }

    fn get(&self, id: u64) -> Pending<Option<Resource>> {
        self.read(|done| Read::Get(id, done))
    }

    fn create_once(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Pending<Created> {
        let checked = storable(&name).and_then(|()| request_id.as_deref().map_or(Ok(()), storable));
        if let Err(refused) = checked {
            return future::ready(Err(refused)).boxed();
        }
        self.writer.create(request_id, owner_id, name)
    }

    fn update(&self, id: u64, name: String, expected: Option<u64>) -> Pending<Changed<Resource>> {
        if let Err(refused) = storable(&name) {
            return future::ready(Err(refused)).boxed();
        }
        self.writer.update(id, name, expected)
    }

    fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>> {
        self.writer.delete(id, expected)
    }
}
