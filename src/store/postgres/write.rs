//! The writer's connection: the group-commit writer's transactions, as PostgreSQL statements
//! prepared once per connection, on a connection opened again when it is lost.

use std::sync::mpsc;

use postgres::{Client, Config, NoTls, Statement};

use super::listen::{MAX_PAYLOAD, REVOCATIONS};
use super::{reason, resource};
use crate::store::batch::{Counters, DatabaseFailure, WriteConnection};
use crate::store::resources::{Changed, Resource};

/// The writer's connection with its statements prepared.
pub(super) struct PreparedWriter {
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
    pub(super) fn new(mut client: Client) -> Result<Self, postgres::Error> {
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

pub(super) struct PgWriter {
    pub(super) config: Config,
    pub(super) client: Option<PreparedWriter>,
    pub(super) poke: mpsc::Sender<()>,
}

impl PgWriter {
    /// The connection, opened again at the start of a transaction if it was lost.
    fn reconnected(&mut self) -> Result<&mut PreparedWriter, DatabaseFailure> {
        if self.client.as_ref().is_none_or(|w| w.client.is_closed()) {
            self.client = None;
            let client = self.config.connect(NoTls).map_err(text)?;
            self.client = Some(PreparedWriter::new(client).map_err(text)?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Why a conditional change changed nothing: no such resource, or another version.
    fn not_changed<T>(&mut self, id: u64) -> Result<Changed<T>, DatabaseFailure> {
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
    fn prepared(&mut self) -> Result<&mut PreparedWriter, DatabaseFailure> {
        self.client.as_mut().ok_or_else(|| {
            "the connection was lost during the transaction"
                .to_owned()
                .into()
        })
    }
}

fn text(e: postgres::Error) -> DatabaseFailure {
    reason(&e).into()
}

impl WriteConnection for PgWriter {
    fn begin(&mut self) -> Result<Counters, DatabaseFailure> {
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
                .ok_or_else(|| {
                    DatabaseFailure::from(format!("the counters table has no `{name}` row"))
                })
        };
        Ok(Counters {
            next_id: counter("next_resource_id")?,
            resources: counter("resources")?,
        })
    }

    fn find_request(&mut self, request_id: &str) -> Result<Option<Resource>, DatabaseFailure> {
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
    ) -> Result<(), DatabaseFailure> {
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

    fn forget_requests(&mut self, before: i64) -> Result<(), DatabaseFailure> {
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
    ) -> Result<Changed<Resource>, DatabaseFailure> {
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

    fn delete(&mut self, id: u64, expected: Option<u64>) -> Result<Changed<()>, DatabaseFailure> {
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

    fn revoke(&mut self, token_id: &str, expires_at: i64, now: i64) -> Result<(), DatabaseFailure> {
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

    fn commit(&mut self, counters: Counters) -> Result<(), DatabaseFailure> {
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
