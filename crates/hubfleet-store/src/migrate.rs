//! Versioned schema migrations, embedded in the binary and applied when the store opens.
//!
//! Each migration has one script per backend (`migrations/sqlite`, `migrations/postgres`). They run
//! in order inside a single transaction together with the bookkeeping row in `hubfleet_schema`, so a
//! crash mid-upgrade leaves the database at its old version. To add a version, append to
//! [`MIGRATIONS`]; the tests then check upgrades from every earlier version automatically.

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::error::StoreError;
use crate::store::WritePool;

pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "users, servers, services, tokens, oauth, sessions",
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "groups, role assignments, server display names",
        sqlite: include_str!("../migrations/sqlite/0002_groups_roles.sql"),
        postgres: include_str!("../migrations/postgres/0002_groups_roles.sql"),
    },
    Migration {
        version: 3,
        description: "encrypted auth state",
        sqlite: include_str!("../migrations/sqlite/0003_auth_state.sql"),
        postgres: include_str!("../migrations/postgres/0003_auth_state.sql"),
    },
    Migration {
        version: 4,
        description: "server shares and share codes",
        sqlite: include_str!("../migrations/sqlite/0004_shares.sql"),
        postgres: include_str!("../migrations/postgres/0004_shares.sql"),
    },
    Migration {
        version: 5,
        description: "runtime shared password, native accounts (hashed)",
        sqlite: include_str!("../migrations/sqlite/0005_passwords.sql"),
        postgres: include_str!("../migrations/postgres/0005_passwords.sql"),
    },
    Migration {
        version: 6,
        description: "users_total: the number of users, kept by triggers",
        sqlite: include_str!("../migrations/sqlite/0006_users_total.sql"),
        postgres: include_str!("../migrations/postgres/0006_users_total.sql"),
    },
    Migration {
        version: 7,
        description: "runtime services; expiry indexes for purging",
        sqlite: include_str!("../migrations/sqlite/0007_runtime_services.sql"),
        postgres: include_str!("../migrations/postgres/0007_runtime_services.sql"),
    },
];

/// The schema version this build of the store reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const CREATE_BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS hubfleet_schema (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Arbitrary constant naming the PostgreSQL advisory lock that serialises hubs migrating at once.
const POSTGRES_MIGRATION_LOCK: i64 = 0x6875_6266_6c65_6574; // "hubfleet"

/// The body is the same for both backends apart from the script chosen and PostgreSQL's lock.
macro_rules! migrate_body {
    ($pool:expr, $target:expr, $script:ident, $lock:expr) => {{
        let mut tx = $pool.begin_write().await?;
        if let Some(lock_sql) = $lock {
            sqlx::query(lock_sql)
                .bind(POSTGRES_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql(CREATE_BOOKKEEPING).execute(&mut *tx).await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM hubfleet_schema")
            .fetch_one(&mut *tx)
            .await?;
        let current = current.unwrap_or(0);
        check_versions(current, $target)?;
        for migration in MIGRATIONS
            .iter()
            .filter(|m| m.version > current && m.version <= $target)
        {
            sqlx::raw_sql(migration.$script)
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    StoreError::Migration(format!("version {}: {err}", migration.version))
                })?;
            sqlx::query(
                "INSERT INTO hubfleet_schema (version, description, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(migration.version)
            .bind(migration.description)
            .bind(hubfleet_types::now().timestamp_micros())
            .execute(&mut *tx)
            .await?;
            tracing::info!(version = migration.version, "applied database migration");
        }
        tx.commit().await?;
        Ok(())
    }};
}

fn check_versions(current: i64, target: i64) -> Result<(), StoreError> {
    if current > SCHEMA_VERSION {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {current}, newer than this hubfleet understands ({SCHEMA_VERSION})"
        )));
    }
    if target > SCHEMA_VERSION {
        return Err(StoreError::Migration(format!(
            "unknown schema version {target}"
        )));
    }
    Ok(())
}

pub(crate) async fn migrate_sqlite(pool: &SqlitePool, target: i64) -> Result<(), StoreError> {
    migrate_body!(pool, target, sqlite, None::<&'static str>)
}

pub(crate) async fn migrate_postgres(pool: &PgPool, target: i64) -> Result<(), StoreError> {
    migrate_body!(
        pool,
        target,
        postgres,
        Some("SELECT pg_advisory_xact_lock($1)")
    )
}
