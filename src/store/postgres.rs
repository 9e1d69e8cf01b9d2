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

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::{mpsc, Arc, Mutex, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{self, FutureExt as _};
use postgres::config::Host;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, Config, NoTls, Statement};

use super::batch::{answered, hold_all, Counters, DurableRevocations, WriteConnection, Writer};
use super::{
    migrations, Availability, Capacity, Changed, Created, MemoryRevocations, OpenError, PageQuery,
    Pending, Resource, ResourceStore, StoreConfig, StoreError, Stores,
};

/// Reader threads, each with its connection: enough to keep the database busy while one waits
/// for an answer, few enough to leave PostgreSQL's default of 100 connections to many replicas.
const READERS: u32 = 4;

/// The most reads one reader takes at once.
const MAX_READS: usize = 512;

/// The advisory lock that migrations run under (any number the application uses only for this).
const MIGRATION_LOCK: i64 = 0x6d72_6d61_7467_7270;

/// How often the monitor asks a database that answers, and one that does not.
const PROBE_UP: Duration = Duration::from_secs(1);
const PROBE_DOWN: Duration = Duration::from_millis(250);

/// The channel replicas tell each other of revocations on (`NOTIFY`): `EXPIRES_AT TOKEN_ID`,
/// or an empty payload for "read them all again".
const REVOCATIONS: &str = "mrmat_revocations";

/// How often the listener reads every revocation again, in case it missed a notification.
/// (It also reads them all each time it connects: nothing is sent to a listener that is away.)
const RESYNC: Duration = Duration::from_secs(10);

/// The longest notification payload PostgreSQL takes is 8000 bytes; a longer one is sent empty.
const MAX_PAYLOAD: usize = 7999;

const GET: &str = "SELECT id, owner_id, name, version FROM resources WHERE id = ANY($1)";
const LIST: &str = "SELECT id, owner_id, name, version FROM resources ORDER BY id";
// Two statements, not one with `$2 IS NULL OR`: a prepared plan must fit both cases, and one
// owner's page should walk the (owner_id, id) index, not every resource in id order.
const PAGE: &str = "SELECT id, owner_id, name, version FROM resources \
                    WHERE id >= $1 ORDER BY id LIMIT $2";
const OWNER_PAGE: &str = "SELECT id, owner_id, name, version FROM resources \
                          WHERE owner_id = $3 AND id >= $1 ORDER BY id LIMIT $2";

pub(super) fn open(
    url: &str,
    config: &StoreConfig,
    capacity: Capacity,
) -> Result<Stores, OpenError> {
    let mut pg = Config::from_str(url).map_err(|e| {
        OpenError(format!(
            "--store is not a usable PostgreSQL URL ({e}); the form is \
             postgres://USER@HOST:PORT/DATABASE"
        ))
    })?;
    if pg.get_password().is_none() {
        if let Some(password) = config.password()? {
            pg.password(password);
        }
    }
    let timeout = config.store_timeout;
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
    let database = describe(&pg);

    let mut client = pg
        .connect(NoTls)
        .map_err(|e| OpenError(format!("cannot connect to {database}: {}", reason(&e))))?;
    // Replicas starting together on a new database would each apply the migrations: one at a
    // time, under a lock the database releases if this process dies holding it.
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(|e| {
            OpenError(format!(
                "cannot lock the schema of {database}: {}",
                reason(&e)
            ))
        })?;
    let migrated = migrations::apply(migrations::postgres(), &mut client, &database);
    let _ = client.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    migrated?;
    // Listening before the first load: a revocation stored meanwhile is in one or the other.
    let listening =
        listen(&pg).map_err(|why| OpenError(format!("cannot listen on {database}: {why}")))?;
    let revoked = load_revocations(&mut client)
        .map_err(|e| OpenError(format!("cannot read {database}: {}", reason(&e))))?;

    let availability = Availability::always_up();
    let (poke, pokes) = mpsc::channel();
    start_monitor(pg.clone(), database.clone(), availability.clone(), pokes);
    let writer = Arc::new(Writer::start(
        PgWriter {
            config: pg.clone(),
            client: Some(PreparedWriter::new(client).map_err(|e| {
                OpenError(format!(
                    "cannot prepare statements on {database}: {}",
                    reason(&e)
                ))
            })?),
            poke: poke.clone(),
        },
        database.clone(),
        availability.clone(),
        capacity.max_resources,
    ));
    let readers = r2d2::Pool::builder()
        .max_size(READERS)
        .min_idle(Some(READERS))
        .connection_timeout(timeout)
        .build_unchecked(Readers { config: pg.clone() });
    let reads = start_readers(
        readers,
        database.clone(),
        availability.clone(),
        poke.clone(),
    );
    let revocations =
        DurableRevocations::load(writer.clone(), revoked, capacity.max_revocations, storable);
    start_listener(
        pg.clone(),
        database.clone(),
        listening,
        Arc::downgrade(&revocations.in_memory()),
    );
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
    let now = crate::tokens::unix_now();
    let rows = client.query(
        "SELECT token_id, expires_at FROM revocations WHERE expires_at > $1",
        &[&now],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Asks the database whether it answers, every [`PROBE_UP`], at once when poked, and every
/// [`PROBE_DOWN`] while it does not. Ends when the store and its writer are gone.
fn start_monitor(
    config: Config,
    database: String,
    availability: Availability,
    pokes: mpsc::Receiver<()>,
) {
    let mut client: Option<Client> = None;
    let mut probe = move || -> Result<(), String> {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = Some(config.connect(NoTls).map_err(|e| reason(&e))?);
        }
        let answered = client
            .as_mut()
            .expect("connected above")
            .simple_query("SELECT 1")
            .map(drop)
            .map_err(|e| reason(&e));
        if answered.is_err() {
            client = None;
        }
        answered
    };
    thread::Builder::new()
        .name("store-monitor".to_owned())
        .spawn(move || loop {
            let wait = if availability.is_up() {
                PROBE_UP
            } else {
                PROBE_DOWN
            };
            if let Err(mpsc::RecvTimeoutError::Disconnected) = pokes.recv_timeout(wait) {
                return;
            }
            // Many failed calls poke at once; one probe answers them all.
            pokes.try_iter().for_each(drop);
            match probe() {
                Ok(()) if !availability.is_up() => {
                    log::info!("{database} answers again");
                    availability.set(true);
                }
                Err(why) if availability.is_up() => {
                    log::warn!(
                        "{database} does not answer ({why}); calls that need it fail until it does"
                    );
                    availability.set(false);
                }
                _ => {}
            }
        })
        .expect("the OS starts a thread");
}

/// Listens for the revocations other replicas (and this one) store, and enforces them here
/// within moments: a token revoked through any replica is refused by every one. `listening` has
/// already run LISTEN, before the revocations were first loaded, so none falls between the two.
/// Whenever it listens again (after losing the connection: nothing is sent to a listener that is
/// away) it reads them all again at once, and also every [`RESYNC`], so a missed notification is
/// made good. Ends when the store is gone.
fn start_listener(
    config: Config,
    database: String,
    listening: Client,
    revocations: Weak<MemoryRevocations>,
) {
    thread::Builder::new()
        .name("store-listener".to_owned())
        .spawn(move || {
            let mut client = Some(listening);
            let mut resync_at = Instant::now() + RESYNC;
            loop {
                let Some(in_memory) = revocations.upgrade() else {
                    return;
                };
                if client.as_ref().is_none_or(Client::is_closed) {
                    match listen(&config) {
                        Ok(listening) => {
                            client = Some(listening);
                            resync_at = Instant::now();
                        }
                        Err(why) => {
                            log::debug!("cannot listen for revocations on {database}: {why}");
                            client = None;
                            drop(in_memory);
                            thread::sleep(PROBE_UP);
                            continue;
                        }
                    }
                }
                let listening = client.as_mut().expect("connected above");
                if Instant::now() >= resync_at {
                    match load_revocations(listening) {
                        Ok(revoked) => {
                            hold_all(&in_memory, revoked);
                            resync_at = Instant::now() + RESYNC;
                        }
                        Err(e) => {
                            log::debug!("cannot read revocations from {database}: {}", reason(&e));
                            client = None;
                            continue;
                        }
                    }
                }
                let mut notifications = listening.notifications();
                let mut arrived = notifications.timeout_iter(PROBE_UP);
                let now = crate::tokens::unix_now();
                while let Ok(Some(notification)) = arrived.next() {
                    match parse_revocation(notification.payload()) {
                        Some((token_id, expires_at)) => {
                            if let Err(e) = in_memory.hold(token_id, expires_at, now) {
                                log::warn!("a revocation stored by a replica is not enforced: {e}");
                            }
                        }
                        // Too long to send: read them all.
                        None => resync_at = Instant::now(),
                    }
                }
            }
        })
        .expect("the OS starts a thread");
}

/// The token id and expiry a notification's `EXPIRES_AT TOKEN_ID` payload names; None for an
/// empty payload ("read them all again").
fn parse_revocation(payload: &str) -> Option<(&str, i64)> {
    let (expires_at, token_id) = payload.split_once(' ')?;
    Some((token_id, expires_at.parse().ok()?))
}

/// A connection listening on the [`REVOCATIONS`] channel.
fn listen(config: &Config) -> Result<Client, String> {
    let mut client = config.connect(NoTls).map_err(|e| reason(&e))?;
    client
        .batch_execute(&format!("LISTEN {REVOCATIONS}"))
        .map_err(|e| reason(&e))?;
    Ok(client)
}

/// A reader's connection, with the statements it runs prepared once.
struct Reader {
    client: Client,
    get: Statement,
    list: Statement,
    page: Statement,
    owner_page: Statement,
}

/// Opens the read connections of the pool.
struct Readers {
    config: Config,
}

impl r2d2::ManageConnection for Readers {
    type Connection = Reader;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Reader, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        let get = client.prepare(GET)?;
        let list = client.prepare(LIST)?;
        let page = client.prepare(PAGE)?;
        let owner_page = client.prepare(OWNER_PAGE)?;
        Ok(Reader {
            client,
            get,
            list,
            page,
            owner_page,
        })
    }

    fn is_valid(&self, reader: &mut Reader) -> Result<(), postgres::Error> {
        reader.client.simple_query("").map(drop)
    }

    fn has_broken(&self, reader: &mut Reader) -> bool {
        reader.client.is_closed()
    }
}

struct PgStore {
    reads: mpsc::Sender<Read>,
    writer: Arc<Writer>,
    database: String,
}

/// A read waiting for a reader thread, and where its answer goes.
enum Read {
    Get(u64, oneshot::Sender<Result<Option<Resource>, StoreError>>),
    List(oneshot::Sender<Result<Vec<Resource>, StoreError>>),
    Page(
        PageQuery,
        oneshot::Sender<Result<Vec<Resource>, StoreError>>,
    ),
}

/// Starts the reader threads; they end when the returned sender is dropped.
fn start_readers(
    pool: r2d2::Pool<Readers>,
    database: String,
    availability: Availability,
    poke: mpsc::Sender<()>,
) -> mpsc::Sender<Read> {
    let (reads, waiting) = mpsc::channel();
    let waiting = Arc::new(Mutex::new(waiting));
    for n in 0..READERS {
        let (pool, database, availability, poke, waiting) = (
            pool.clone(),
            database.clone(),
            availability.clone(),
            poke.clone(),
            waiting.clone(),
        );
        thread::Builder::new()
            .name(format!("store-reader-{n}"))
            .spawn(move || loop {
                // One reader waits at a time and takes everything waiting; the next waits for
                // what arrives meanwhile.
                let batch: Vec<Read> = {
                    let waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
                    let Ok(first) = waiting.recv() else { return };
                    std::iter::once(first)
                        .chain(waiting.try_iter().take(MAX_READS - 1))
                        .collect()
                };
                serve(&pool, batch, &database, &availability, &poke);
            })
            .expect("the OS starts a thread");
    }
    reads
}

/// Runs `query` on a pooled connection; once more on another when the database had closed it
/// (a restart is only found out by using the connection; the pool drops it).
fn with_reader<T>(
    pool: &r2d2::Pool<Readers>,
    query: impl Fn(&mut Reader) -> Result<T, postgres::Error>,
) -> Result<T, String> {
    let attempt = || match pool.get() {
        Ok(mut reader) => {
            let answer = query(&mut reader).map_err(|e| reason(&e));
            let lost = answer.is_err() && reader.client.is_closed();
            (answer, lost)
        }
        Err(e) => (Err(e.to_string()), false),
    };
    match attempt() {
        (Err(_), true) => attempt().0,
        (answer, _) => answer,
    }
}

/// Answers a batch of reads: every Get in one query, each List in its own.
fn serve(
    pool: &r2d2::Pool<Readers>,
    batch: Vec<Read>,
    database: &str,
    availability: &Availability,
    poke: &mpsc::Sender<()>,
) {
    let unavailable = |reason: String| StoreError::Unavailable {
        database: database.to_owned(),
        reason,
    };
    let failed = |reason: &String| {
        let _ = poke.send(());
        unavailable(reason.clone())
    };
    let up = availability.is_up();
    let (gets, lists): (Vec<Read>, Vec<Read>) = batch
        .into_iter()
        .partition(|read| matches!(read, Read::Get(..)));
    if !gets.is_empty() {
        let ids: Vec<i64> = gets
            .iter()
            .filter_map(|read| match read {
                Read::Get(id, _) => Some(*id as i64),
                _ => None,
            })
            .collect();
        let found = if up {
            with_reader(pool, |reader| reader.client.query(&reader.get, &[&ids])).map(|rows| {
                rows.iter()
                    .map(|row| {
                        let resource = resource(row);
                        (resource.id, resource)
                    })
                    .collect::<HashMap<u64, Resource>>()
            })
        } else {
            Err(DOWN.to_owned())
        };
        for read in gets {
            if let Read::Get(id, done) = read {
                let _ = done.send(match &found {
                    Ok(found) => Ok(found.get(&id).cloned()),
                    Err(reason) => Err(failed(reason)),
                });
            }
        }
    }
    for read in lists {
        let (listed, done) = match read {
            Read::List(done) => (
                up.then(|| with_reader(pool, |reader| reader.client.query(&reader.list, &[]))),
                done,
            ),
            Read::Page(query, done) => {
                let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
                let from = query.from_id as i64;
                let paged = up.then(|| {
                    with_reader(pool, |reader| match query.owner_id {
                        Some(owner) => reader
                            .client
                            .query(&reader.owner_page, &[&from, &limit, &(owner as i64)]),
                        None => reader.client.query(&reader.page, &[&from, &limit]),
                    })
                });
                (paged, done)
            }
            Read::Get(..) => continue,
        };
        let listed = listed
            .unwrap_or_else(|| Err(DOWN.to_owned()))
            .map(|rows| rows.iter().map(resource).collect());
        let _ = done.send(listed.map_err(|reason| failed(&reason)));
    }
}

/// Why a call fails at once while the monitor finds the database down.
const DOWN: &str = "not answering; waiting for it to come back";

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
        return Err(StoreError::Unstorable(
            "the text contains U+0000 (NUL), which this store (PostgreSQL) cannot hold".to_owned(),
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
        if let Err(e) = checked {
            return future::ready(Err(e)).boxed();
        }
        self.writer.create(request_id, owner_id, name)
    }

    fn update(&self, id: u64, name: String, expected: Option<u64>) -> Pending<Changed<Resource>> {
        if let Err(e) = storable(&name) {
            return future::ready(Err(e)).boxed();
        }
        self.writer.update(id, name, expected)
    }

    fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>> {
        self.writer.delete(id, expected)
    }
}

/// The writer's connection with its statements prepared.
struct PreparedWriter {
    client: Client,
    counters: Statement,
    set_counter: Statement,
    insert: Statement,
    find_request: Statement,
    remember_request: Statement,
    forget_requests: Statement,
    update: Statement,
    delete: Statement,
    version: Statement,
    revoke: Statement,
    forget: Statement,
    notify: Statement,
}

impl PreparedWriter {
    fn new(mut client: Client) -> Result<Self, postgres::Error> {
        Ok(Self {
            // FOR UPDATE: the rows stay locked to this transaction, so another replica's
            // writer waits for the commit instead of reading the same next id.
            // Every writer, on every replica, locks the two rows in the same order: without
            // ORDER BY the scan's order follows where updates left the rows, and two replicas
            // locking them in opposite orders deadlock (PostgreSQL then aborts one).
            counters: client.prepare(
                "SELECT name, value FROM counters \
                 WHERE name IN ('next_resource_id', 'resources') ORDER BY name FOR UPDATE",
            )?,
            set_counter: client.prepare("UPDATE counters SET value = $2 WHERE name = $1")?,
            insert: client.prepare(
                "INSERT INTO resources (id, owner_id, name, version) VALUES ($1, $2, $3, $4)",
            )?,
            find_request: client.prepare(
                "SELECT resource_id, owner_id, name, 1::BIGINT FROM create_requests \
                 WHERE request_id = $1",
            )?,
            remember_request: client.prepare(
                "INSERT INTO create_requests (request_id, resource_id, owner_id, name, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )?,
            forget_requests: client.prepare("DELETE FROM create_requests WHERE created_at < $1")?,
            update: client.prepare(
                "UPDATE resources SET name = $2, version = version + 1 \
                 WHERE id = $1 AND ($3::BIGINT IS NULL OR version = $3) \
                 RETURNING id, owner_id, name, version",
            )?,
            delete: client.prepare(
                "DELETE FROM resources WHERE id = $1 AND ($2::BIGINT IS NULL OR version = $2)",
            )?,
            version: client.prepare("SELECT version FROM resources WHERE id = $1")?,
            revoke: client.prepare(
                "INSERT INTO revocations (token_id, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (token_id) DO UPDATE \
                 SET expires_at = GREATEST(revocations.expires_at, excluded.expires_at)",
            )?,
            forget: client.prepare("DELETE FROM revocations WHERE expires_at <= $1")?,
            // Delivered to every listener when the transaction commits, never before.
            notify: client.prepare(&format!("SELECT pg_notify('{REVOCATIONS}', $1)"))?,
            client,
        })
    }
}

struct PgWriter {
    config: Config,
    client: Option<PreparedWriter>,
    poke: mpsc::Sender<()>,
}

impl PgWriter {
    /// The connection, opened again at the start of a transaction if it was lost.
    fn reconnected(&mut self) -> Result<&mut PreparedWriter, String> {
        if self.client.as_ref().is_none_or(|w| w.client.is_closed()) {
            self.client = None;
            let client = self.config.connect(NoTls).map_err(|e| reason(&e))?;
            self.client = Some(PreparedWriter::new(client).map_err(|e| reason(&e))?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Why a conditional change changed nothing: no such resource, or another version.
    fn not_changed<T>(&mut self, id: u64) -> Result<Changed<T>, String> {
        let w = self.prepared()?;
        let row = w
            .client
            .query_opt(&w.version, &[&(id as i64)])
            .map_err(text)?;
        Ok(match row {
            Some(row) => Changed::Stale {
                current: row.get::<_, i64>(0) as u64,
            },
            None => Changed::Missing,
        })
    }

    /// The connection of the transaction under way; never a new one, which would run the rest
    /// of the transaction's statements outside it.
    fn prepared(&mut self) -> Result<&mut PreparedWriter, String> {
        self.client
            .as_mut()
            .ok_or_else(|| "the connection was lost during the transaction".to_owned())
    }
}

fn text(e: postgres::Error) -> String {
    reason(&e)
}

impl WriteConnection for PgWriter {
    fn begin(&mut self) -> Result<Counters, String> {
        // A connection the database closed (a restart) is only found out by using it; nothing
        // has been done yet at BEGIN, so one retry on a new connection is safe.
        if self.reconnected()?.client.batch_execute("BEGIN").is_err() {
            self.client = None;
            self.reconnected()?
                .client
                .batch_execute("BEGIN")
                .map_err(text)?;
        }
        let w = self.prepared()?;
        let rows = w.client.query(&w.counters, &[]).map_err(text)?;
        let counter = |name: &str| {
            rows.iter()
                .find(|row| row.get::<_, &str>(0) == name)
                .map(|row| row.get::<_, i64>(1) as u64)
                .ok_or_else(|| format!("the counters table has no `{name}` row"))
        };
        Ok(Counters {
            next_id: counter("next_resource_id")?,
            resources: counter("resources")?,
        })
    }

    fn find_request(&mut self, request_id: &str) -> Result<Option<Resource>, String> {
        let w = self.prepared()?;
        let row = w
            .client
            .query_opt(&w.find_request, &[&request_id])
            .map_err(text)?;
        Ok(row.as_ref().map(resource))
    }

    fn insert(
        &mut self,
        resource: &Resource,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<(), String> {
        let w = self.prepared()?;
        let (id, owner_id) = (resource.id as i64, resource.owner_id as i64);
        w.client
            .execute(
                &w.insert,
                &[&id, &owner_id, &resource.name, &(resource.version as i64)],
            )
            .map_err(text)?;
        if let Some(request_id) = request_id {
            w.client
                .execute(
                    &w.remember_request,
                    &[&request_id, &id, &owner_id, &resource.name, &now],
                )
                .map_err(text)?;
        }
        Ok(())
    }

    fn forget_requests(&mut self, before: i64) -> Result<(), String> {
        let w = self.prepared()?;
        w.client
            .execute(&w.forget_requests, &[&before])
            .map(drop)
            .map_err(text)
    }

    fn update(
        &mut self,
        id: u64,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Changed<Resource>, String> {
        let w = self.prepared()?;
        let expected = expected.map(|version| version as i64);
        let row = w
            .client
            .query_opt(&w.update, &[&(id as i64), &name, &expected])
            .map_err(text)?;
        match row {
            Some(row) => Ok(Changed::Done(resource(&row))),
            None => self.not_changed(id),
        }
    }

    fn delete(&mut self, id: u64, expected: Option<u64>) -> Result<Changed<()>, String> {
        let w = self.prepared()?;
        let expected = expected.map(|version| version as i64);
        let deleted = w
            .client
            .execute(&w.delete, &[&(id as i64), &expected])
            .map_err(text)?;
        if deleted > 0 {
            return Ok(Changed::Done(()));
        }
        self.not_changed(id)
    }

    fn revoke(&mut self, token_id: &str, expires_at: i64, now: i64) -> Result<(), String> {
        let w = self.prepared()?;
        w.client
            .execute(&w.revoke, &[&token_id, &expires_at])
            .map_err(text)?;
        let mut payload = format!("{expires_at} {token_id}");
        if payload.len() > MAX_PAYLOAD {
            payload.clear();
        }
        w.client.execute(&w.notify, &[&payload]).map_err(text)?;
        w.client.execute(&w.forget, &[&now]).map(drop).map_err(text)
    }

    fn commit(&mut self, counters: Counters) -> Result<(), String> {
        let w = self.prepared()?;
        w.client
            .execute(
                &w.set_counter,
                &[&"next_resource_id", &(counters.next_id as i64)],
            )
            .map_err(text)?;
        w.client
            .execute(
                &w.set_counter,
                &[&"resources", &(counters.resources as i64)],
            )
            .map_err(text)?;
        w.client.batch_execute("COMMIT").map_err(text)
    }

    fn rollback(&mut self) {
        if let Some(w) = &mut self.client {
            if w.client.batch_execute("ROLLBACK").is_err() {
                self.client = None;
            }
        }
    }

    fn failed(&mut self) {
        let _ = self.poke.send(());
    }
}
