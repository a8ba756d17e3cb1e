//! Users: creation (singly and in bulk), lookup, admin flag, paging and activity.

use hubfleet_types::{Timestamp, UserName};

use crate::error::StoreError;
use crate::model::User;
use crate::store::{Columns, Store, WritePool, dispatch, to_micros};

pub(crate) fn user_from_row(row: &impl Columns) -> Result<User, StoreError> {
    user_from_prefixed_row(row, "")
}

/// Reads a user from columns named `<prefix>id`, `<prefix>name`, …; joins alias them this way.
pub(crate) fn user_from_prefixed_row(row: &impl Columns, prefix: &str) -> Result<User, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    let name = row.text(&column("name"))?;
    Ok(User {
        id: row.int(&column("id"))?,
        name: UserName::parse(&name)
            .map_err(|err| StoreError::CorruptRow(format!("users.name: {err}")))?,
        admin: row.boolean(&column("admin"))?,
        created: row.timestamp(&column("created"))?,
        last_activity: row.opt_timestamp(&column("last_activity"))?,
    })
}

/// Maps "zero rows changed" to [`StoreError::NotFound`] for updates and deletes addressed by id.
pub(crate) fn expect_one(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

impl Store {
    /// Creates a user; [`StoreError::Conflict`] if the name is taken.
    pub async fn create_user(&self, name: &UserName, admin: bool) -> Result<User, StoreError> {
        let created = to_micros(&hubfleet_types::now());
        let result = dispatch!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO users (name, admin, created) VALUES ($1, $2, $3) \
                 RETURNING id, name, admin, created, last_activity",
            )
            .bind(name.as_str())
            .bind(admin)
            .bind(created)
            .fetch_one(pool)
            .await
            .map_err(StoreError::from)
            .and_then(|row| user_from_row(&row))
        });
        match result {
            Err(StoreError::Conflict(_)) => {
                Err(StoreError::Conflict(format!("user {name} already exists")))
            }
            other => other,
        }
    }

    /// Creates every name not yet taken, in one transaction; returns the users created, in input order.
    pub async fn create_users(
        &self,
        names: &[UserName],
        admin: bool,
    ) -> Result<Vec<User>, StoreError> {
        let created = to_micros(&hubfleet_types::now());
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut users = Vec::with_capacity(names.len());
            for name in names {
                // DO NOTHING + RETURNING yields a row only for names actually inserted.
                let row = sqlx::query(
                    "INSERT INTO users (name, admin, created) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING \
                     RETURNING id, name, admin, created, last_activity",
                )
                .bind(name.as_str())
                .bind(admin)
                .bind(created)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = row {
                    users.push(user_from_row(&row)?);
                }
            }
            tx.commit().await?;
            Ok(users)
        })
    }

    pub async fn get_user(&self, name: &UserName) -> Result<Option<User>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query("SELECT id, name, admin, created, last_activity FROM users WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(user_from_row)
                .transpose()
        })
    }

    pub async fn get_user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query("SELECT id, name, admin, created, last_activity FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(user_from_row)
                .transpose()
        })
    }

    pub async fn set_user_admin(&self, id: i64, admin: bool) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("UPDATE users SET admin = $1 WHERE id = $2")
                .bind(admin)
                .bind(id)
                .execute(pool)
                .await?;
            expect_one(done.rows_affected())
        })
    }

    /// Deletes the user with their servers, tokens, sessions and OAuth codes (by foreign-key cascade).
    pub async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            expect_one(done.rows_affected())
        })
    }

    /// One page of users ordered by id. Negative offsets and limits are treated as zero.
    pub async fn list_users(&self, offset: i64, limit: i64) -> Result<Vec<User>, StoreError> {
        dispatch!(self, read, |pool| {
            let rows = sqlx::query(
                "SELECT id, name, admin, created, last_activity FROM users \
                 ORDER BY id LIMIT $1 OFFSET $2",
            )
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(pool)
            .await?;
            rows.iter().map(user_from_row).collect()
        })
    }

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        dispatch!(self, read, |pool| {
            Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
                .fetch_one(pool)
                .await?)
        })
    }

    /// Records activity; never moves `last_activity` backwards. A missing user is not an error.
    pub async fn touch_user_activity(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            sqlx::query(
                "UPDATE users SET last_activity = $1 \
                 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
            )
            .bind(to_micros(&at))
            .bind(id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
