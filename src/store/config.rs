//! Which store the server keeps its data in, and how to reach it. Every field is a flag of the
//! server binary and an environment variable; the PostgreSQL password never has to be a flag.

use std::path::PathBuf;
use std::time::Duration;

use crate::seconds::parse_seconds;

use super::OpenError;

/// The store unless told otherwise: an embedded SQLite file under `data/` in the working
/// directory (as Prometheus keeps its `data/`), which a checkout's `.gitignore` ignores.
pub const DEFAULT_STORE: &str = "sqlite:data/mrmat-grpc.sqlite3";

/// Environment variables read for the PostgreSQL password when `--store-password-file` is not
/// given, in order (the second is libpq's own).
pub const PASSWORD_ENV: [&str; 2] = ["MRMAT_GRPC_STORE_PASSWORD", "PGPASSWORD"];

/// Where resources and revocations are kept.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Storage")]
pub struct StoreConfig {
    /// Where resources and token revocations are kept: `sqlite:PATH` (an embedded database
    /// file, created with its directory when missing), `postgres://USER@HOST:PORT/DATABASE` (a
    /// PostgreSQL server, shared by replicas; the password from --store-password-file,
    /// MRMAT_GRPC_STORE_PASSWORD or PGPASSWORD), or `memory` (nothing kept after exit).
    #[arg(
        long,
        env = "MRMAT_GRPC_STORE",
        value_name = "STORE",
        default_value = DEFAULT_STORE
    )]
    pub store: String,

    /// File whose first line is the PostgreSQL password (a mounted secret, say).
    #[arg(long, env = "MRMAT_GRPC_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,

    /// How long a call may wait for the database (a connection, a statement) before it is
    /// answered UNAVAILABLE.
    #[arg(
        long,
        env = "MRMAT_GRPC_STORE_TIMEOUT",
        value_name = "SECONDS",
        default_value = "5",
        value_parser = parse_seconds
    )]
    pub store_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            store: DEFAULT_STORE.to_owned(),
            store_password_file: None,
            store_timeout: Duration::from_secs(5),
        }
    }
}

/// A parsed `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// In memory.
    Memory,
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl StoreConfig {
    /// A store in memory: for tests and demos.
    pub fn memory() -> Self {
        Self {
            store: "memory".to_owned(),
            ..Self::default()
        }
    }

    /// An SQLite store in `path`.
    pub fn sqlite(path: &std::path::Path) -> Self {
        Self {
            store: format!("sqlite:{}", path.display()),
            ..Self::default()
        }
    }

    /// What `--store` names, or why it names nothing usable.
    pub fn location(&self) -> Result<StoreLocation, OpenError> {
        let store = self.store.trim();
        if store == "memory" {
            return Ok(StoreLocation::Memory);
        }
        if let Some(path) = store.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(OpenError(
                    "--store sqlite: needs a file path, e.g. sqlite:data/mrmat-grpc.sqlite3"
                        .to_owned(),
                ));
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(store.to_owned()));
        }
        // Never echo what might be a connection string with a password in it.
        let scheme = store.split(':').next().unwrap_or_default();
        Err(OpenError(format!(
            "--store `{scheme}:...` is not a store: use sqlite:PATH, postgres://USER@HOST:PORT/DATABASE \
             or memory"
        )))
    }

    /// The PostgreSQL password, when one is configured outside the URL.
    pub(crate) fn password(&self) -> Result<Option<String>, OpenError> {
        if let Some(file) = &self.store_password_file {
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

    fn location(store: &str) -> Result<StoreLocation, OpenError> {
        StoreConfig {
            store: store.to_owned(),
            ..StoreConfig::default()
        }
        .location()
    }

    #[test]
    fn stores_are_named_by_scheme() {
        assert_eq!(location("memory"), Ok(StoreLocation::Memory));
        assert_eq!(
            location("sqlite:/var/lib/x.db"),
            Ok(StoreLocation::Sqlite("/var/lib/x.db".into()))
        );
        assert_eq!(
            location(DEFAULT_STORE),
            Ok(StoreLocation::Sqlite("data/mrmat-grpc.sqlite3".into()))
        );
        assert_eq!(
            location("postgresql://u@h/db"),
            Ok(StoreLocation::Postgres("postgresql://u@h/db".into()))
        );
    }

    #[test]
    fn an_unknown_store_is_refused_without_echoing_it() {
        let refused = location("mysql://root:hunter2@db").expect_err("not a store");
        assert!(refused.0.contains("mysql:"), "{refused}");
        assert!(!refused.0.contains("hunter2"), "{refused}");
        assert!(location("sqlite:").is_err());
    }
}
