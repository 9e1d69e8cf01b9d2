//! The embedded default: one SQLite file (with its `-wal` and `-shm` beside it), in WAL mode so
//! readers never wait for the writer. Reads run on the caller's thread from a pool of
//! connections (a lookup by primary key takes microseconds); changes go through the group-commit
//! writer ([`super::batch`]), and `synchronous=FULL` makes each commit survive a power cut, not
//! only a crash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, FutureExt as _};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _};

use super::batch::{Counters, DatabaseFailure, WriteConnection, Writer};
use super::durable::DurableRevocations;
use super::migrations;
use super::options::StoreOptions;
use super::resources::{Changed, Created, PageQuery, Pending, Resource, ResourceStore};
use super::stores::{OpenError, Stores};
use crate::availability::Availability;
use crate::store_error::StoreError;

/// Reader connections kept open: more than the server's completion-queue threads, which are the
/// only callers.
const READERS: u32 = 16;

/// Opens (creating it when missing) the file, migrates its schema, proves it writable, and
/// starts the writer.
pub(super) fn open(path: &Path, options: &StoreOptions) -> Result<Stores, OpenError> {
    let capacity = options.capacity;
    let database = format!("SQLite at {}", path.display());
    let cannot = |what: &str, e: rusqlite::Error| {
        OpenError(format!(
            "cannot {what} the SQLite store {}: {e}",
            path.display()
        ))
    };
    let writer = open_writer(path, options, &database)?;
    let readers = r2d2::Pool::builder()
        .max_size(READERS)
        .min_idle(Some(2))
        .connection_timeout(options.timeout)
        .build(Readers {
            path: path.to_owned(),
            busy_timeout: options.timeout,
        })
        .map_err(|e| {
            OpenError(format!(
                "cannot open the SQLite store {}: {e}",
                path.display()
            ))
        })?;
    let revoked = load_revocations(&writer).map_err(|e| cannot("read", e))?;

    let availability = Availability::always_up();
    let writer = Arc::new(Writer::start(
        SqliteWriter(writer),
        database.clone(),
        availability.clone(),
        capacity.max_resources,
    ));
    let revocations = DurableRevocations::load(
        writer.clone(),
        revoked,
        capacity.max_revocations,
        |_| Ok(()),
    );
    Ok(Stores {
        resources: Arc::new(SqliteStore {
            readers,
            writer,
            database,
        }),
        revocations: Arc::new(revocations),
        availability,
        description: format!("SQLite at {}", absolute(path).display()),
    })
}

/// The writer's connection to `path`: the file and its directory created when missing, in WAL
/// mode, its schema migrated, and proven writable now rather than at the first create.
fn open_writer(
    path: &Path,
    options: &StoreOptions,
    database: &str,
) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            OpenError(format!(
                "cannot create the directory of the SQLite store {}: {e}",
                dir.display()
            ))
        })?;
    }
    let cannot = |what: &str, e: rusqlite::Error| {
        OpenError(format!(
            "cannot {what} the SQLite store {}: {e}",
            path.display()
        ))
    };
    let mut writer = connect(path, options.timeout).map_err(|e| {
        // SQLite says only "unable to open database file"; the file system says why (a volume
        // the server's user cannot write, most often).
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path);
        match opened {
            Err(why) => OpenError(format!(
                "cannot open the SQLite store {}: {why}",
                path.display()
            )),
            Ok(_) => cannot("open", e),
        }
    })?;
    let mode: String = writer
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| cannot("open", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError(format!(
            "the SQLite store {} cannot use write-ahead logging (journal mode stays `{mode}`): \
             put it on a local file system",
            path.display()
        )));
    }
    migrations::apply(migrations::sqlite(), &mut writer, database)?;
    writer
        .execute_batch(
            "BEGIN IMMEDIATE; UPDATE counters SET value = value WHERE name = 'resources'; COMMIT",
        )
        .map_err(|e| cannot("write to", e))?;
    Ok(writer)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn connect(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    // NO_MUTEX: each connection is used by one thread at a time (the pool or the writer).
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(busy_timeout)?;
    connection.execute_batch("PRAGMA synchronous = FULL")?;
    Ok(connection)
}

/// The unexpired revocations, for the in-memory copy that validations ask.
fn load_revocations(connection: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let now = crate::time::unix_now();
    let mut query =
        connection.prepare("SELECT token_id, expires_at FROM revocations WHERE expires_at > ?1")?;
    let rows = query.query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// Opens the read connections of the pool.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
}

impl r2d2::ManageConnection for Readers {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Connection, rusqlite::Error> {
        let connection = connect(&self.path, self.busy_timeout)?;
        connection.execute_batch("PRAGMA query_only = 1")?;
        Ok(connection)
    }

    fn is_valid(&self, connection: &mut Connection) -> Result<(), rusqlite::Error> {
        connection.execute_batch("")
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

struct SqliteStore {
    readers: r2d2::Pool<Readers>,
    writer: Arc<Writer>,
    database: String,
}

/// The columns [`resource`] reads, in its order.
const COLUMNS: &str = "id, owner_id, name, version";

fn resource(row: &rusqlite::Row<'_>) -> rusqlite::Result<Resource> {
    Ok(Resource {
        id: row.get::<_, i64>(0)? as u64,
        owner_id: row.get::<_, i64>(1)? as u64,
        name: row.get(2)?,
        version: row.get::<_, i64>(3)? as u64,
    })
}

impl SqliteStore {
    /// Runs `read` on a pooled connection, on this thread.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Pending<T> {
        let unavailable = |reason: String| StoreError::unavailable(&self.database, reason);
        let answer = match self.readers.get() {
            Ok(connection) => read(&connection).map_err(|e| unavailable(e.to_string())),
            Err(e) => Err(unavailable(e.to_string())),
        };
        future::ready(answer).boxed()
    }
}

impl ResourceStore for SqliteStore {
    fn list(&self) -> Pending<Vec<Resource>> {
        self.read(|connection| {
            let mut query = connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM resources ORDER BY id"))?;
            let rows = query.query_map([], resource)?;
            rows.collect()
        })
    }

    fn page(&self, query: PageQuery) -> Pending<Vec<Resource>> {
        self.read(move |connection| {
            let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
            // Ids are signed 64-bit here: a position past them all (a forged page token's) has
            // nothing, and must not wrap to a negative id, which would list from the start.
            let Ok(from) = i64::try_from(query.from_id) else {
                return Ok(Vec::new());
            };
            let rows = match query.owner_id {
                Some(owner) => connection
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM resources WHERE owner_id = ?1 AND id >= ?2 \
                         ORDER BY id LIMIT ?3"
                    ))?
                    .query_map(params![owner as i64, from, limit], resource)?
                    .collect(),
                None => connection
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM resources WHERE id >= ?1 ORDER BY id LIMIT ?2"
                    ))?
                    .query_map(params![from, limit], resource)?
                    .collect(),
            };
            rows
        })
    }

    fn get(&self, id: u64) -> Pending<Option<Resource>> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM resources WHERE id = ?1"))?
                .query_row([id as i64], resource)
                .optional()
        })
    }

    fn create_once(
        &self,
        request_id: Option<String>,
        owner_id: u64,
        name: String,
    ) -> Pending<Created> {
        self.writer.create(request_id, owner_id, name)
    }

    fn update(&self, id: u64, name: String, expected: Option<u64>) -> Pending<Changed<Resource>> {
        self.writer.update(id, name, expected)
    }

    fn delete(&self, id: u64, expected: Option<u64>) -> Pending<Changed<()>> {
        self.writer.delete(id, expected)
    }
}

/// The writer's connection.
struct SqliteWriter(Connection);

impl SqliteWriter {
    /// Why a conditional change changed nothing: no such resource, or another version.
    fn not_changed<T>(&mut self, id: u64) -> Result<Changed<T>, DatabaseFailure> {
        let version = self
            .0
            .prepare_cached("SELECT version FROM resources WHERE id = ?1")
            .and_then(|mut find| {
                find.query_row([id as i64], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map_err(text)?;
        Ok(match version {
            Some(current) => Changed::Stale {
                current: current as u64,
            },
            None => Changed::Missing,
        })
    }
}

fn text(e: rusqlite::Error) -> DatabaseFailure {
    e.to_string().into()
}

impl WriteConnection for SqliteWriter {
    fn begin(&mut self) -> Result<Counters, DatabaseFailure> {
        // IMMEDIATE takes the write lock now, so the counters read stay ours until the commit.
        self.0.execute_batch("BEGIN IMMEDIATE").map_err(text)?;
        let counter = |name: &str| -> rusqlite::Result<u64> {
            self.0
                .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
                .query_row([name], |row| row.get::<_, i64>(0))
                .map(|value| value as u64)
        };
        Ok(Counters {
            next_id: counter("next_resource_id").map_err(text)?,
            resources: counter("resources").map_err(text)?,
        })
    }

    fn find_request(&mut self, request_id: &str) -> Result<Option<Resource>, DatabaseFailure> {
        self.0
            .prepare_cached(
                "SELECT resource_id, owner_id, name, 1 FROM create_requests WHERE request_id = ?1",
            )
            .and_then(|mut find| find.query_row([request_id], resource).optional())
            .map_err(text)
    }

    fn insert(
        &mut self,
        resource: &Resource,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<(), DatabaseFailure> {
        self.0
            .prepare_cached(
                "INSERT INTO resources (id, owner_id, name, version) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    resource.id as i64,
                    resource.owner_id as i64,
                    resource.name,
                    resource.version as i64
                ])
            })
            .map_err(text)?;
        let Some(request_id) = request_id else {
            return Ok(());
        };
        self.0
            .prepare_cached(
                "INSERT INTO create_requests (request_id, resource_id, owner_id, name, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    request_id,
                    resource.id as i64,
                    resource.owner_id as i64,
                    resource.name,
                    now
                ])
            })
            .map(drop)
            .map_err(text)
    }

    fn forget_requests(&mut self, before: i64) -> Result<(), DatabaseFailure> {
        self.0
            .prepare_cached("DELETE FROM create_requests WHERE created_at < ?1")
            .and_then(|mut forget| forget.execute([before]))
            .map(drop)
            .map_err(text)
    }

    fn update(
        &mut self,
        id: u64,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Changed<Resource>, DatabaseFailure> {
        let updated = self
            .0
            .prepare_cached(&format!(
                "UPDATE resources SET name = ?2, version = version + 1 \
                 WHERE id = ?1 AND (?3 IS NULL OR version = ?3) RETURNING {COLUMNS}"
            ))
            .and_then(|mut update| {
                update
                    .query_row(
                        params![id as i64, name, expected.map(|v| v as i64)],
                        resource,
                    )
                    .optional()
            })
            .map_err(text)?;
        match updated {
            Some(resource) => Ok(Changed::Done(resource)),
            None => self.not_changed(id),
        }
    }

    fn delete(&mut self, id: u64, expected: Option<u64>) -> Result<Changed<()>, DatabaseFailure> {
        let deleted = self
            .0
            .prepare_cached("DELETE FROM resources WHERE id = ?1 AND (?2 IS NULL OR version = ?2)")
            .and_then(|mut delete| delete.execute(params![id as i64, expected.map(|v| v as i64)]))
            .map_err(text)?;
        if deleted > 0 {
            return Ok(Changed::Done(()));
        }
        self.not_changed(id)
    }

    fn revoke(&mut self, token_id: &str, expires_at: i64, now: i64) -> Result<(), DatabaseFailure> {
        self.0
            .prepare_cached(
                "INSERT INTO revocations (token_id, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (token_id) DO UPDATE \
                 SET expires_at = max(expires_at, excluded.expires_at)",
            )
            .and_then(|mut upsert| upsert.execute(params![token_id, expires_at]))
            .and_then(|_| {
                self.0
                    .prepare_cached("DELETE FROM revocations WHERE expires_at <= ?1")?
                    .execute([now])
            })
            .map(drop)
            .map_err(text)
    }

    fn commit(&mut self, counters: Counters) -> Result<(), DatabaseFailure> {
        let mut set = self
            .0
            .prepare_cached("UPDATE counters SET value = ?2 WHERE name = ?1")
            .map_err(text)?;
        set.execute(params!["next_resource_id", counters.next_id as i64])
            .map_err(text)?;
        set.execute(params!["resources", counters.resources as i64])
            .map_err(text)?;
        drop(set);
        self.0.execute_batch("COMMIT").map_err(text)
    }

    fn rollback(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Held;
    use futures::executor::block_on;

    fn open_in(dir: &Path) -> Stores {
        let path = dir.join("store.sqlite3");
        let mut options = StoreOptions::sqlite(&path);
        options.capacity = super::super::Capacity {
            max_resources: 3,
            max_revocations: 10,
        };
        open(&path, &options).expect("opens")
    }

    #[test]
    fn resources_and_revocations_are_there_after_reopening() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let now = crate::time::unix_now();
        let stores = open_in(dir.path());
        let a = block_on(stores.resources.create(1, "a".into())).expect("created");
        let b = block_on(stores.resources.create(2, "b".into())).expect("created");
        assert_eq!((a.id, b.id), (0, 1));
        assert!(block_on(stores.resources.remove(b.id)).expect("removed"));
        block_on(stores.revocations.revoke("jti-1", now + 600, now)).expect("revoked");
        let _first = stores;

        let stores = open_in(dir.path());
        assert!(stores.revocations.is_revoked("jti-1", now));
        assert_eq!(block_on(stores.resources.list()).expect("listed"), vec![a]);
        let c = block_on(stores.resources.create(3, "c".into())).expect("created");
        assert_eq!(c.id, 2, "id 1 is never given again");
        block_on(stores.resources.create(4, "d".into())).expect("created");
        assert_eq!(
            block_on(stores.resources.create(5, "e".into())),
            Err(StoreError::full(Held::Resources, 3))
        );
    }
}
