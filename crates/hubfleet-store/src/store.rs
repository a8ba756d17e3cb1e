//! Opening the database and the plumbing every query shares.
//!
//! The two backends are a small enum over sqlx's concrete pools. Query code is written once: the
//! `dispatch!` macro expands a block for each pool type, so the same portable SQL (with `$1`
//! placeholders, which sqlx's SQLite driver accepts too) runs on both.
//!
//! SQLite runs in WAL mode with `synchronous=FULL`, so a commit is on disk when it returns. All
//! writes go through one dedicated connection (a pool of size 1) and start with `BEGIN IMMEDIATE`,
//! so concurrent requests queue in the pool instead of failing with "database is locked"; reads use
//! a separate pool and, thanks to WAL, never wait for the writer.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use hubfleet_types::Timestamp;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Postgres, Row, Sqlite, Transaction};

use crate::error::StoreError;
use crate::migrate;
use crate::model::Backend;

/// Readers in WAL mode don't block each other or the writer; a few cover the hub's concurrency.
const SQLITE_READERS: u32 = 4;
/// Long enough to ride out a checkpoint or another process (e.g. an admin CLI) holding the write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// The hub database. Cheap to clone: all clones share the same pools.
#[derive(Clone)]
pub struct Store {
    pub(crate) pools: Arc<Pools>,
}

pub(crate) enum Pools {
    Sqlite {
        /// The only connection that writes; its pool has exactly one connection.
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres {
        pool: PgPool,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately no URL: it may carry a password.
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Runs `$body` with `$pool` bound to the backend's concrete pool: the SQLite writer or reader
/// (`write`/`read`), or the PostgreSQL pool. The body is compiled once per backend.
macro_rules! dispatch {
    ($store:expr, $kind:ident, |$pool:ident| $body:expr) => {
        match &*$store.pools {
            $crate::store::Pools::Sqlite { writer, reader } => {
                let $pool = $crate::store::dispatch!(@pick $kind, writer, reader);
                $body
            }
            $crate::store::Pools::Postgres { pool } => {
                let $pool = pool;
                $body
            }
        }
    };
    (@pick read, $writer:ident, $reader:ident) => {{
        let _ = $writer;
        $reader
    }};
    (@pick write, $writer:ident, $reader:ident) => {{
        let _ = $reader;
        $writer
    }};
}
pub(crate) use dispatch;

/// Starting a write transaction differs per backend: SQLite must take the write lock up front
/// (`BEGIN IMMEDIATE`) so a transaction that reads first never fails to upgrade its lock later.
pub(crate) trait WritePool {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl WritePool for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl WritePool for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin().await
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`: `sqlite:///abs/path.db`,
    /// `sqlite://relative.db`, or `postgres://…` / `postgresql://…` (the PostgreSQL database itself
    /// must already exist; its tables are created here).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Self::open_at_version(url, migrate::SCHEMA_VERSION).await
    }

    /// Opens (creating it with mode 0600 if absent) and migrates the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Self::open_sqlite_at_version(path, migrate::SCHEMA_VERSION).await
    }

    /// Like [`Store::open`] but migrates only up to `version`; for migration tests.
    #[doc(hidden)]
    pub async fn open_at_version(url: &str, version: i64) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Self::open_sqlite_at_version(Path::new(path), version).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::open_postgres_at_version(url, version).await;
        }
        Err(StoreError::UnsupportedUrl)
    }

    async fn open_sqlite_at_version(path: &Path, version: i64) -> Result<Store, StoreError> {
        // Switching a new database to WAL needs an exclusive lock, and SQLite answers BUSY at once
        // (without its busy handler) when several processes open the same new file together;
        // retry for a while rather than fail the start of a second hub.
        let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
        let mut delay = std::time::Duration::from_millis(10);
        loop {
            match Self::open_sqlite_once(path, version).await {
                Err(error) if error.is_busy() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_millis(250));
                }
                result => return result,
            }
        }
    }

    async fn open_sqlite_once(path: &Path, version: i64) -> Result<Store, StoreError> {
        create_private_file(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        migrate::migrate_sqlite(&writer, version).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(SQLITE_READERS)
            .connect_with(options)
            .await?;
        tracing::info!(path = %path.display(), "opened SQLite database");
        Ok(Store {
            pools: Arc::new(Pools::Sqlite { writer, reader }),
        })
    }

    async fn open_postgres_at_version(url: &str, version: i64) -> Result<Store, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        migrate::migrate_postgres(&pool, version).await?;
        tracing::info!("opened PostgreSQL database");
        Ok(Store {
            pools: Arc::new(Pools::Postgres { pool }),
        })
    }

    pub fn backend(&self) -> Backend {
        match &*self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The highest migration applied to this database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        dispatch!(self, read, |pool| {
            let version: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM hubfleet_schema")
                    .fetch_one(pool)
                    .await?;
            Ok(version.unwrap_or(0))
        })
    }

    /// Closes every connection; later calls on any clone fail.
    pub async fn close(&self) {
        match &*self.pools {
            Pools::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Pools::Postgres { pool } => pool.close().await,
        }
    }

    /// Runs a fixed SQL script on the write connection; lets migration tests seed old schemas.
    #[doc(hidden)]
    pub async fn execute_script(&self, sql: &'static str) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            sqlx::raw_sql(sql).execute(pool).await?;
            Ok(())
        })
    }
}

/// Creates the database file readable by its owner only (it holds token hashes). SQLite gives the
/// `-wal` and `-shm` files the same mode as the database file.
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let result = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::CreateFile(err)),
    }
}

/// Timestamps are stored as microseconds since the Unix epoch (UTC), the portable choice.
pub(crate) fn to_micros(ts: &Timestamp) -> i64 {
    ts.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> Result<Timestamp, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::CorruptRow(format!("timestamp {micros} is out of range")))
}

pub(crate) fn to_json_text(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::CorruptRow(format!("cannot encode JSON: {err}")))
}

/// Typed column access shared by both backends' rows, so row mappers are written once.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;

    fn timestamp(&self, column: &str) -> Result<Timestamp, StoreError> {
        from_micros(self.int(column)?)
    }

    fn opt_timestamp(&self, column: &str) -> Result<Option<Timestamp>, StoreError> {
        self.opt_int(column)?.map(from_micros).transpose()
    }

    fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T, StoreError> {
        let text = self.text(column)?;
        serde_json::from_str(&text)
            .map_err(|err| StoreError::CorruptRow(format!("column {column}: {err}")))
    }
}

macro_rules! impl_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(self.try_get::<i64, _>(column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get::<Option<i64>, _>(column)?)
            }
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(self.try_get::<String, _>(column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get::<Option<String>, _>(column)?)
            }
            fn boolean(&self, column: &str) -> Result<bool, StoreError> {
                Ok(self.try_get::<bool, _>(column)?)
            }
        }
    };
}
impl_columns!(SqliteRow);
impl_columns!(PgRow);

/// `$start, $start+1, …` for `count` parameters: the body of an `IN (…)` list. Callers bound the
/// count (a page is at most a few hundred ids), far below both backends' parameter limits.
pub(crate) fn id_list(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
