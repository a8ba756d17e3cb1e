//! The shared password an admin set at runtime, replacing the configured one: only its argon2
//! hash (a PHC string) is stored, with an optional expiry. There is at most one.

use std::fmt;

use hubfleet_types::Timestamp;

use crate::error::StoreError;
use crate::store::{Columns, Store, dispatch};

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
}
