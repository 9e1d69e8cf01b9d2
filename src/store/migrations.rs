//! The schema of both databases, as versioned migrations (refinery) embedded in the binary from
//! `src/store/schema/{sqlite,postgres}/V<N>__<name>.sql` and applied at start. A new schema
//! version is one new file in each directory, with the same N.

use refinery::{Migrate, Runner};

use super::OpenError;

mod sqlite_schema {
    refinery::embed_migrations!("src/store/schema/sqlite");
}

mod postgres_schema {
    refinery::embed_migrations!("src/store/schema/postgres");
}

/// The table where refinery records the migrations applied (its default name).
const HISTORY: &str = "refinery_schema_history";

/// SQLite's migrations.
pub(super) fn sqlite() -> Runner {
    sqlite_schema::migrations::runner()
}

/// PostgreSQL's migrations.
pub(super) fn postgres() -> Runner {
    postgres_schema::migrations::runner()
}

/// Brings the schema behind `connection` up to the newest version this binary knows, after
/// refusing one newer than that: an older binary must not write to a database it does not
/// understand (a rollback after an upgrade, say).
pub(super) fn apply<C: Migrate>(
    runner: Runner,
    connection: &mut C,
    database: &str,
) -> Result<(), OpenError> {
    let known = runner
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or_default();
    let failed = |e: refinery::Error| {
        OpenError(format!(
            "cannot bring the schema of {database} up to version {known}: {e}"
        ))
    };
    // The history table is created when missing (refinery's own statement), so a new database
    // reads as having no version instead of failing.
    connection
        .assert_migrations_table(HISTORY)
        .map_err(failed)?;
    if let Some(last) = runner
        .get_last_applied_migration(connection)
        .map_err(failed)?
    {
        if last.version() > known {
            return Err(OpenError(format!(
                "{database} has schema version {} ({}), newer than this server knows (up to \
                 {known}): run the newer server that migrated it, or restore a backup taken \
                 before",
                last.version(),
                last.name()
            )));
        }
    }
    runner
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run(connection)
        .map_err(failed)?;
    Ok(())
}
