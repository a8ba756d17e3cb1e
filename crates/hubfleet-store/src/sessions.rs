//! Browser login sessions, keyed by the hash of the secret in the hub's login cookie.

use hubfleet_types::Timestamp;

use crate::error::StoreError;
use crate::model::{NewSession, Session, User};
use crate::store::{Columns, Store, WritePool, dispatch, to_micros};
use crate::users::user_from_prefixed_row;

fn session_from_row(row: &impl Columns) -> Result<Session, StoreError> {
    Ok(Session {
        hash: row.text("hash")?,
        session_id: row.text("session_id")?,
        user_id: row.int("user_id")?,
        created: row.timestamp("created")?,
        expires_at: row.timestamp("expires_at")?,
    })
}

impl Store {
    /// [`StoreError::NotFound`] if the user does not exist; [`StoreError::Conflict`] if the hash is taken.
    pub async fn insert_session(&self, session: &NewSession) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO sessions (hash, session_id, user_id, created, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(session.hash.as_str())
            .bind(session.session_id.as_str())
            .bind(session.user_id)
            .bind(to_micros(&session.created))
            .bind(to_micros(&session.expires_at))
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The live session with this hash and its user; expired sessions are treated as absent.
    pub async fn find_session(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<(Session, User)>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query(
                "SELECT s.hash, s.session_id, s.user_id, s.created, s.expires_at, \
                 u.id AS u_id, u.name AS u_name, u.admin AS u_admin, u.created AS u_created, \
                 u.last_activity AS u_last_activity \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.hash = $1 AND s.expires_at > $2",
            )
            .bind(hash)
            .bind(to_micros(&now))
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(|row| Ok((session_from_row(row)?, user_from_prefixed_row(row, "u_")?)))
            .transpose()
        })
    }

    /// Deletes the session (on logout) and returns it, so the caller can revoke its tokens.
    pub async fn delete_session(&self, hash: &str) -> Result<Option<Session>, StoreError> {
        dispatch!(self, write, |pool| {
            sqlx::query(
                "DELETE FROM sessions WHERE hash = $1 \
                 RETURNING hash, session_id, user_id, created, expires_at",
            )
            .bind(hash)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
        })
    }

    /// Logs a user out everywhere. Returns how many sessions were deleted.
    pub async fn delete_user_sessions(&self, user_id: i64) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            Ok(sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// Ends every session of non-admin users (or of everyone, with `include_admins`), together
    /// with the tokens single-user servers obtained through them. Returns how many sessions ended.
    pub async fn delete_all_sessions(&self, include_admins: bool) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "DELETE FROM api_tokens WHERE session_id IN (SELECT s.session_id FROM sessions s \
                 JOIN users u ON u.id = s.user_id WHERE $1 OR u.admin = FALSE)",
            )
            .bind(include_admins)
            .execute(&mut *tx)
            .await?;
            let ended = sqlx::query(
                "DELETE FROM sessions WHERE user_id IN \
                 (SELECT id FROM users WHERE $1 OR admin = FALSE)",
            )
            .bind(include_admins)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(ended)
        })
    }
}
