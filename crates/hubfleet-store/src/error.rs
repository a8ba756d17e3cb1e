//! The store's error type.
//!
//! `Display` is the short message that may be shown to a user or API client; the underlying database
//! error (which can name tables, constraints or file paths) is only reachable through
//! [`std::error::Error::source`] and [`StoreError::log_detail`], for logs.

use std::error::Error as _;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the call refers to (by id or key) does not exist.
    #[error("not found")]
    NotFound,
    /// The write would break a uniqueness rule or a state rule (e.g. spawning a running server).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed or could not be reached.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The database URL is not one this store understands.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// Creating or opening the database file failed.
    #[error("cannot create the database file")]
    CreateFile(#[source] std::io::Error),
    /// The schema is newer than this program, or a migration failed.
    #[error("database schema migration failed: {0}")]
    Migration(String),
    /// A stored value could not be decoded (for example an invalid user name or malformed JSON).
    #[error("stored data is invalid")]
    CorruptRow(String),
}

impl StoreError {
    /// SQLite's "database is locked" (SQLITE_BUSY), which a retry can cure.
    pub(crate) fn is_busy(&self) -> bool {
        const LOCKED: &str = "database is locked";
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => error.message().contains(LOCKED),
            StoreError::Migration(message) => message.contains(LOCKED),
            _ => false,
        }
    }

    /// The full error chain, for logs. Never contains secrets: the store only holds hashes, and
    /// database URLs are not part of any error.
    pub fn log_detail(&self) -> String {
        let mut detail = self.to_string();
        if let StoreError::CorruptRow(what) = self {
            detail.push_str(": ");
            detail.push_str(what);
        }
        let mut source = self.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        detail
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict("already exists".to_string());
            }
            if db.is_foreign_key_violation() {
                // Every foreign key points at an owner (user or service); a missing owner is a lookup miss.
                return StoreError::NotFound;
            }
        }
        StoreError::Database(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_message_hides_database_detail_but_log_detail_has_it() {
        let err = StoreError::from(sqlx::Error::Protocol("relation \"users\" is odd".into()));
        assert_eq!(err.to_string(), "database error");
        let detail = err.log_detail();
        assert!(detail.starts_with("database error: "), "{detail}");
        assert!(detail.contains("relation \"users\" is odd"), "{detail}");
    }

    #[test]
    fn corrupt_row_detail_is_only_in_logs() {
        let err = StoreError::CorruptRow("users.name: bad".to_string());
        assert_eq!(err.to_string(), "stored data is invalid");
        assert_eq!(err.log_detail(), "stored data is invalid: users.name: bad");
    }
}
