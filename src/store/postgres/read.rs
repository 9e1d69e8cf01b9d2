//! The reads: a few reader threads, each with a pooled connection, each taking every read
//! waiting and answering all the Gets among them with one query.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;

use futures::channel::oneshot;
use postgres::{Client, Config, NoTls, Statement};

use super::{reason, resource};
use crate::availability::Availability;
use crate::store::batch::DatabaseFailure;
use crate::store::resources::{PageQuery, Resource};
use crate::store_error::StoreError;

/// Reader threads, each with its connection: enough to keep the database busy while one waits
/// for an answer, few enough to leave PostgreSQL's default of 100 connections to many replicas.
pub(super) const READERS: u32 = 4;

/// The most reads one reader takes at once.
const MAX_READS: usize = 512;

const GET: &str = "SELECT id, owner_id, name, version FROM resources WHERE id = ANY($1)";
const LIST: &str = "SELECT id, owner_id, name, version FROM resources ORDER BY id";
// Two statements, not one with `$2 IS NULL OR`: a prepared plan must fit both cases, and one
// owner's page should walk the (owner_id, id) index, not every resource in id order.
const PAGE: &str = "SELECT id, owner_id, name, version FROM resources \
                    WHERE id >= $1 ORDER BY id LIMIT $2";
const OWNER_PAGE: &str = "SELECT id, owner_id, name, version FROM resources \
                          WHERE owner_id = $3 AND id >= $1 ORDER BY id LIMIT $2";

/// A reader's connection, with the statements it runs prepared once.
pub(super) struct Reader {
    client: Client,
    get: Statement,
    list: Statement,
    page: Statement,
    owner_page: Statement,
}

/// Opens the read connections of the pool.
pub(super) struct Readers {
    pub(super) config: Config,
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

/// A read waiting for a reader thread, and where its answer goes.
pub(super) enum Read {
    Get(u64, oneshot::Sender<Result<Option<Resource>, StoreError>>),
    List(oneshot::Sender<Result<Vec<Resource>, StoreError>>),
    Page(
        PageQuery,
        oneshot::Sender<Result<Vec<Resource>, StoreError>>,
    ),
}

/// Starts the reader threads; they end when the returned sender is dropped.
pub(super) fn start_readers(
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
) -> Result<T, DatabaseFailure> {
    let attempt = || match pool.get() {
        Ok(mut reader) => {
            let answer = query(&mut reader).map_err(|e| DatabaseFailure::from(reason(&e)));
            let lost = answer.is_err() && reader.client.is_closed();
            (answer, lost)
        }
        Err(e) => (Err(e.to_string().into()), false),
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
    let failed = |reason: &str| {
        // The monitor checks at once rather than at its next round.
        let _ = poke.send(());
        StoreError::unavailable(database, reason)
    };
    let up = availability.is_up();
    let (gets, lists): (Vec<Read>, Vec<Read>) = batch
        .into_iter()
        .partition(|read| matches!(read, Read::Get(..)));
    if !gets.is_empty() {
        serve_gets(pool, gets, up, &failed);
    }
    for read in lists {
        let (listed, done) = match read {
            Read::List(done) => (
                up.then(|| with_reader(pool, |reader| reader.client.query(&reader.list, &[]))),
                done,
            ),
            Read::Page(query, done) => (up.then(|| page(pool, query)), done),
            Read::Get(..) => continue,
        };
        let listed = listed
            .unwrap_or_else(|| Err(DOWN.to_owned().into()))
            .map(|rows| rows.iter().map(resource).collect());
        let _ = done.send(listed.map_err(|failure| failed(&failure.reason)));
    }
}

/// Answers every Get of `gets` with one query.
fn serve_gets(
    pool: &r2d2::Pool<Readers>,
    gets: Vec<Read>,
    up: bool,
    failed: &dyn Fn(&str) -> StoreError,
) {
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
        Err(DatabaseFailure::from(DOWN.to_owned()))
    };
    for read in gets {
        if let Read::Get(id, done) = read {
            let _ = done.send(match &found {
                Ok(found) => Ok(found.get(&id).cloned()),
                Err(failure) => Err(failed(&failure.reason)),
            });
        }
    }
}

/// One page, by its own statement when it is one owner's.
fn page(
    pool: &r2d2::Pool<Readers>,
    query: PageQuery,
) -> Result<Vec<postgres::Row>, DatabaseFailure> {
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    // As in SQLite: a position past every signed 64-bit id has nothing (it must not wrap).
    let Ok(from) = i64::try_from(query.from_id) else {
        return Ok(Vec::new());
    };
    with_reader(pool, |reader| match query.owner_id {
        Some(owner) => reader
            .client
            .query(&reader.owner_page, &[&from, &limit, &(owner as i64)]),
        None => reader.client.query(&reader.page, &[&from, &limit]),
    })
}

/// Why a call fails at once while the monitor finds the database down.
const DOWN: &str = "not answering; waiting for it to come back";
