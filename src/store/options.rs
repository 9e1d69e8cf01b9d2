//! Which store the server keeps its data in, how to reach it, and how much it may hold. Plain
//! values: the server's flags (`server/config.rs`) fill them in, and each default is the
//! constant here. The PostgreSQL password is never one of them: it is read when the store opens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::OpenError;

/// The store unless told otherwise: an embedded SQLite file under `data/` in the working
/// directory (as Prometheus keeps its `data/`), which a checkout's `.gitignore` ignores.
pub const DEFAULT_STORE: &str = "sqlite:data/mrmat-grpc.sqlite3";

/// How long a call may wait for the database unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most resources held at once unless told otherwise.
pub const DEFAULT_MAX_RESOURCES: usize = 1_000_000;

/// Most unexpired revocations held at once unless told otherwise.
pub const DEFAULT_MAX_REVOCATIONS: usize = 1_000_000;

/// Environment variables read for the PostgreSQL password when no password file is given, in
/// order (the second is libpq's own).
pub const PASSWORD_ENV: [&str; 2] = ["MRMAT_GRPC_STORE_PASSWORD", "PGPASSWORD"];

/// Where resources and revocations are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// In memory.
    Memory,
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl StoreLocation {
    /// What a `--store` value names, or why it names nothing usable.
    pub fn parse(store: &str) -> Result<Self, OpenError> {
        let store = store.trim();
        if store == "memory" {
            return Ok(Self::Memory);
        }
        if let Some(path) = store.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(OpenError(
                    "--store sqlite: needs a file path, e.g. sqlite:data/mrmat-grpc.sqlite3"
                        .to_owned(),
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            return Ok(Self::Postgres(store.to_owned()));
        }
        // Never echo what might be a connection string with a password in it.
        let scheme = store.split(':').next().unwrap_or_default();
        Err(OpenError(format!(
            "--store `{scheme}:...` is not a store: use sqlite:PATH, postgres://USER@HOST:PORT/DATABASE \
             or memory"
        )))
    }
}

/// How much the stores may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Most resources at once.
    pub max_resources: usize,
    /// Most unexpired revocations at once.
    pub max_revocations: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            max_resources: DEFAULT_MAX_RESOURCES,
            max_revocations: DEFAULT_MAX_REVOCATIONS,
        }
    }
}

/// Where resources and revocations are kept, and how the store is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Which store.
    pub location: StoreLocation,
    /// File whose first line is the PostgreSQL password.
    pub password_file: Option<PathBuf>,
    /// How long a call may wait for the database before it is answered UNAVAILABLE.
    pub timeout: Duration,
    /// How much it may hold.
    pub capacity: Capacity,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            location: StoreLocation::parse(DEFAULT_STORE).expect("the default store parses"),
            password_file: None,
            timeout: DEFAULT_TIMEOUT,
            capacity: Capacity::default(),
        }
    }
}

impl StoreOptions {
    /// A store in memory: for tests and demos.
    pub fn memory() -> Self {
        Self {
            location: StoreLocation::Memory,
            ..Self::default()
        }
    }

    /// An SQLite store in `path`.
    pub fn sqlite(path: &Path) -> Self {
        Self {
            location: StoreLocation::Sqlite(path.to_owned()),
            ..Self::default()
        }
    }

    /// A PostgreSQL store at `url`, its password in `password_file`.
    pub fn postgres(url: &str, password_file: Option<&Path>) -> Self {
        Self {
            location: StoreLocation::Postgres(url.to_owned()),
            password_file: password_file.map(Path::to_owned),
            ..Self::default()
        }
    }

    /// The PostgreSQL password, when one is configured outside the URL.
    pub(crate) fn password(&self) -> Result<Option<String>, OpenError> {
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                OpenError(format!(
                    "cannot read the store password file {}: {e}",
                    file.display()
                ))
            })?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        Ok(PASSWORD_ENV
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_named_by_scheme() {
        assert_eq!(StoreLocation::parse("memory"), Ok(StoreLocation::Memory));
        assert_eq!(
            StoreLocation::parse("sqlite:/var/lib/x.db"),
            Ok(StoreLocation::Sqlite("/var/lib/x.db".into()))
        );
        assert_eq!(
            StoreOptions::default().location,
            StoreLocation::Sqlite("data/mrmat-grpc.sqlite3".into())
        );
        assert_eq!(
            StoreLocation::parse("postgresql://u@h/db"),
            Ok(StoreLocation::Postgres("postgresql://u@h/db".into()))
        );
    }

    #[test]
    fn an_unknown_store_is_refused_without_echoing_it() {
        let refused = StoreLocation::parse("mysql://root:hunter2@db").expect_err("not a store");
        assert!(refused.0.contains("mysql:"), "{refused}");
        assert!(!refused.0.contains("hunter2"), "{refused}");
        assert!(StoreLocation::parse("sqlite:").is_err());
    }
}
