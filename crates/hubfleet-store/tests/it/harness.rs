//! Per-test databases for both backends (for PostgreSQL, a fresh schema selected through the
//! connection's `search_path`: creating and dropping whole databases costs a checkpoint each), and the [`store_test!`] macro that runs one body on each.

use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{TimeZone, Utc};
use hubfleet_store::Store;
use hubfleet_types::{Timestamp, UserName};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const POSTGRES_URL_VAR: &str = "HUBFLEET_TEST_POSTGRES_URL";

/// A store on a database that exists only for one test.
pub struct TestDb {
    pub store: Store,
    /// Keeps the SQLite directory alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the server URL to drop the schema from, and its name.
    postgres_cleanup: Option<(String, String)>,
}

impl TestDb {
    /// Closes the store and drops a PostgreSQL test schema. A failed test skips this on purpose,
    /// leaving its schema behind for inspection.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.postgres_cleanup {
            drop_postgres_schema(&admin_url, &name).await;
        }
    }
}

/// A fresh, empty SQLite database URL in a new temporary directory (not opened yet).
pub fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("hub.sqlite").display());
    (dir, url)
}

pub async fn sqlite_db() -> TestDb {
    let (dir, url) = sqlite_url();
    let store = Store::open(&url).await.expect("open SQLite store");
    TestDb {
        store,
        _dir: Some(dir),
        postgres_cleanup: None,
    }
}

/// A URL for a fresh, empty PostgreSQL schema (not opened yet), the URL to administer it and the
/// schema name, or `None` (after saying so) when no PostgreSQL server is configured.
pub async fn postgres_url(test: &str) -> Option<(String, String, String)> {
    let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
        // Written to stderr directly: libtest hides `eprintln!` output of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: PostgreSQL variant NOT RUN ({POSTGRES_URL_VAR} is not set)"
        );
        return None;
    };
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(30)
        .collect();
    let name = format!(
        "hubfleet_t_{}_{}_{}",
        short.to_lowercase(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to HUBFLEET_TEST_POSTGRES_URL");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create a test schema");
    admin.close().await.ok();
    let url = with_search_path(&admin_url, &name);
    Some((admin_url, url, name))
}

pub async fn postgres_db(test: &str) -> Option<TestDb> {
    let (admin_url, url, name) = postgres_url(test).await?;
    let store = Store::open(&url).await.expect("open PostgreSQL store");
    Some(TestDb {
        store,
        _dir: None,
        postgres_cleanup: Some((admin_url, name)),
    })
}

/// Drops a test schema created by [`postgres_url`].
pub async fn drop_postgres_schema(admin_url: &str, name: &str) {
    let mut admin = PgConnection::connect(admin_url).await.expect("connect");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
    )))
    .execute(&mut admin)
    .await
    .expect("drop the test schema");
}

/// Adds `search_path=<schema>` to the connection options in a `postgres://…` URL.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options[search_path]={schema}");
    // Fail here, with a clear message, if the variable held something sqlx can't parse.
    sqlx::postgres::PgConnectOptions::from_str(&url).expect("valid PostgreSQL URL");
    url
}

/// Runs the block once against SQLite (`…::sqlite`) and once against PostgreSQL (`…::postgres`),
/// each on its own fresh database, with `$store: &Store` in scope.
macro_rules! store_test {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::harness::sqlite_db().await;
                {
                    let $store: &hubfleet_store::Store = &db.store;
                    $body
                }
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::harness::postgres_db(stringify!($name)).await else {
                    return;
                };
                {
                    let $store: &hubfleet_store::Store = &db.store;
                    $body
                }
                db.finish().await;
            }
        }
    };
}
pub(crate) use store_test;

pub fn user_name(name: &str) -> UserName {
    UserName::parse(name).expect("valid user name")
}

/// A fixed instant with whole microseconds (the store's resolution), `offset_secs` from a base.
pub fn at(offset_secs: i64) -> Timestamp {
    Utc.timestamp_opt(1_800_000_000 + offset_secs, 123_456_000)
        .single()
        .expect("valid timestamp")
}

/// The current time truncated to whole microseconds, as the store would return it.
pub fn now_micros() -> Timestamp {
    Timestamp::from_timestamp_micros(Utc::now().timestamp_micros()).expect("valid timestamp")
}
