//! Stored password hashes (argon2 PHC strings, never passwords): the shared password an admin set
//! at runtime, replacing the configured one, with an optional expiry (at most one); and the
//! `native` authenticator's accounts, which an admin approves before they can log in.

use std::fmt;

use hubfleet_types::Timestamp;

use crate::error::StoreError;
use crate::store::{Columns, Store, dispatch};
use crate::users::expect_one;

/// The stored shared password. `Debug` redacts the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSharedPassword {
    /// argon2 PHC string.
    pub hash: String,
    pub expires_at: Option<Timestamp>,
    pub set_at: Timestamp,
    /// The admin who set it.
    pub set_by: String,
}

impl fmt::Debug for StoredSharedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSharedPassword")
            .field("hash", &"***")
            .field("expires_at", &self.expires_at)
            .field("set_at", &self.set_at)
            .field("set_by", &self.set_by)
            .finish()
    }
}

impl Store {
    /// Replaces the stored shared password.
    pub async fn set_shared_password(
        &self,
        password: &StoredSharedPassword,
    ) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO shared_password (id, hash, expires_at, set_at, set_by) \
                 VALUES (1, $1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, \
                 expires_at = excluded.expires_at, set_at = excluded.set_at, \
                 set_by = excluded.set_by",
            )
            .bind(&password.hash)
            .bind(password.expires_at.map(|t| t.timestamp_micros()))
            .bind(password.set_at.timestamp_micros())
            .bind(&password.set_by)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The stored shared password, if an admin ever set one.
    pub async fn get_shared_password(&self) -> Result<Option<StoredSharedPassword>, StoreError> {
        dispatch!(self, read, |pool| {
            let row = sqlx::query(
                "SELECT hash, expires_at, set_at, set_by FROM shared_password WHERE id = 1",
            )
            .fetch_optional(pool)
            .await?;
            row.map(|row| {
                Ok(StoredSharedPassword {
                    hash: row.text("hash")?,
                    expires_at: row.opt_timestamp("expires_at")?,
                    set_at: row.timestamp("set_at")?,
                    set_by: row.text("set_by")?,
                })
            })
            .transpose()
        })
    }
}

/// A `native` account. `Debug` redacts the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct NativeAccountRow {
    pub name: String,
    /// argon2 PHC string.
    pub hash: String,
    pub approved: bool,
}

impl fmt::Debug for NativeAccountRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeAccountRow")
            .field("name", &self.name)
            .field("hash", &"***")
            .field("approved", &self.approved)
            .finish()
    }
}

impl Store {
    /// Creates an unapproved account; [`StoreError::Conflict`] if the name is taken.
    pub async fn create_native_account(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query(
                "INSERT INTO native_accounts (name, hash, approved, created) \
                 VALUES ($1, $2, FALSE, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(hash)
            .bind(hubfleet_types::now().timestamp_micros())
            .execute(pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!("account {name:?} exists")));
            }
            Ok(())
        })
    }

    pub async fn get_native_account(
        &self,
        name: &str,
    ) -> Result<Option<NativeAccountRow>, StoreError> {
        dispatch!(self, read, |pool| {
            let row =
                sqlx::query("SELECT name, hash, approved FROM native_accounts WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?;
            row.map(|row| {
                Ok(NativeAccountRow {
                    name: row.text("name")?,
                    hash: row.text("hash")?,
                    approved: row.boolean("approved")?,
                })
            })
            .transpose()
        })
    }

    /// Approves the account; [`StoreError::NotFound`] if there is none.
    pub async fn approve_native_account(&self, name: &str) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("UPDATE native_accounts SET approved = TRUE WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
            expect_one(done.rows_affected())
        })
    }

    /// Names of accounts awaiting approval, oldest first (at most `limit`).
    pub async fn pending_native_accounts(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        dispatch!(self, read, |pool| {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM native_accounts WHERE approved = FALSE \
                 ORDER BY created, name LIMIT $1",
            )
            .bind(limit.max(0))
            .fetch_all(pool)
            .await?;
            Ok(names)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_and_replaces_the_one_shared_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        assert_eq!(store.get_shared_password().await.unwrap(), None);
        let now = hubfleet_types::now();
        let first = StoredSharedPassword {
            hash: "$argon2id$first".into(),
            expires_at: Some(now),
            set_at: now,
            set_by: "admin".into(),
        };
        store.set_shared_password(&first).await.unwrap();
        let second = StoredSharedPassword {
            hash: "$argon2id$second".into(),
            expires_at: None,
            ..first.clone()
        };
        store.set_shared_password(&second).await.unwrap();
        let got = store.get_shared_password().await.unwrap().unwrap();
        assert_eq!(got.hash, "$argon2id$second");
        assert_eq!(got.expires_at, None);
        assert!(!format!("{got:?}").contains("second"));
    }

    #[tokio::test]
    async fn native_accounts_are_created_unapproved_and_approved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        store.create_native_account("ann", "$h1").await.unwrap();
        assert!(matches!(
            store.create_native_account("ann", "$h2").await,
            Err(StoreError::Conflict(_))
        ));
        let ann = store.get_native_account("ann").await.unwrap().unwrap();
        assert!(!ann.approved);
        assert_eq!(ann.hash, "$h1");
        assert_eq!(store.pending_native_accounts(10).await.unwrap(), ["ann"]);
        store.approve_native_account("ann").await.unwrap();
        assert!(
            store
                .get_native_account("ann")
                .await
                .unwrap()
                .unwrap()
                .approved
        );
        assert!(store.pending_native_accounts(10).await.unwrap().is_empty());
        assert!(matches!(
            store.approve_native_account("bob").await,
            Err(StoreError::NotFound)
        ));
    }
}
