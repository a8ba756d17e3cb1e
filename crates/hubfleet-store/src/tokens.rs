//! API tokens, stored only as the hex SHA-256 the hub computes; plus purging of expired credentials
//! (tokens, sessions, OAuth codes, share codes).

use hubfleet_types::Timestamp;

use crate::error::StoreError;
use crate::model::{NewToken, TokenOwner, TokenRecord};
use crate::store::{Columns, Store, WritePool, dispatch, to_json_text, to_micros};
use crate::users::expect_one;

fn token_from_row(row: &impl Columns) -> Result<TokenRecord, StoreError> {
    let owner = match (row.opt_int("user_id")?, row.opt_int("service_id")?) {
        (Some(user_id), None) => TokenOwner::User(user_id),
        (None, Some(service_id)) => TokenOwner::Service(service_id),
        _ => {
            return Err(StoreError::CorruptRow(
                "api_tokens: a token needs exactly one owner".to_string(),
            ));
        }
    };
    Ok(TokenRecord {
        id: row.int("id")?,
        owner,
        scopes: row.json("scopes")?,
        note: row.text("note")?,
        created: row.timestamp("created")?,
        expires_at: row.opt_timestamp("expires_at")?,
        last_activity: row.opt_timestamp("last_activity")?,
        session_id: row.opt_text("session_id")?,
        oauth_client_id: row.opt_text("oauth_client_id")?,
    })
}

impl Store {
    /// Stores a token and returns its id. [`StoreError::NotFound`] if the owner does not exist,
    /// [`StoreError::Conflict`] if the hash is already stored.
    pub async fn insert_token(&self, token: &NewToken) -> Result<i64, StoreError> {
        let (user_id, service_id) = match token.owner {
            TokenOwner::User(id) => (Some(id), None),
            TokenOwner::Service(id) => (None, Some(id)),
        };
        let scopes = to_json_text(&token.scopes)?;
        dispatch!(self, write, |pool| {
            Ok(sqlx::query_scalar::<_, i64>(
                "INSERT INTO api_tokens (hash, user_id, service_id, scopes, note, created, \
                 expires_at, session_id, oauth_client_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(token.hash.as_str())
            .bind(user_id)
            .bind(service_id)
            .bind(scopes)
            .bind(token.note.as_str())
            .bind(to_micros(&token.created))
            .bind(token.expires_at.as_ref().map(to_micros))
            .bind(token.session_id.as_deref())
            .bind(token.oauth_client_id.as_deref())
            .fetch_one(pool)
            .await?)
        })
    }

    /// Looks a token up by hash; expired tokens are treated as absent.
    pub async fn find_token(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query(
                "SELECT id, user_id, service_id, scopes, note, created, expires_at, last_activity, \
                 session_id, oauth_client_id FROM api_tokens \
                 WHERE hash = $1 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(hash)
            .bind(to_micros(&now))
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
        })
    }

    /// All of a user's tokens (expired ones included, so they can be listed and revoked), by id.
    pub async fn list_user_tokens(&self, user_id: i64) -> Result<Vec<TokenRecord>, StoreError> {
        dispatch!(self, read, |pool| {
            let rows = sqlx::query(
                "SELECT id, user_id, service_id, scopes, note, created, expires_at, last_activity, \
                 session_id, oauth_client_id FROM api_tokens WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(token_from_row).collect()
        })
    }

    pub async fn delete_token(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            expect_one(done.rows_affected())
        })
    }

    /// Revokes every token issued within a browser session (on logout). Returns how many.
    pub async fn delete_tokens_for_session(&self, session_id: &str) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            Ok(sqlx::query("DELETE FROM api_tokens WHERE session_id = $1")
                .bind(session_id)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// Revokes every token issued to an OAuth client. Returns how many.
    pub async fn delete_tokens_for_oauth_client(&self, client_id: &str) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            Ok(
                sqlx::query("DELETE FROM api_tokens WHERE oauth_client_id = $1")
                    .bind(client_id)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            )
        })
    }

    /// Revokes the OAuth access tokens `client_id` issued to one user (JupyterHub revokes them
    /// all when one is deleted). Access tokens always expire; a token tied to the client that
    /// never expires is the client's own server token (kept with the client only so that deleting
    /// the client revokes it), which stays. Returns how many were deleted.
    pub async fn delete_user_oauth_tokens(
        &self,
        user_id: i64,
        client_id: &str,
    ) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            Ok(sqlx::query(
                "DELETE FROM api_tokens WHERE user_id = $1 AND oauth_client_id = $2 \
                 AND expires_at IS NOT NULL",
            )
            .bind(user_id)
            .bind(client_id)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Records token use; never moves `last_activity` backwards. A missing token is not an error.
    pub async fn touch_token(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            sqlx::query(
                "UPDATE api_tokens SET last_activity = $1 \
                 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
            )
            .bind(to_micros(&at))
            .bind(id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Deletes tokens, sessions, OAuth codes and share codes that expired at or before `now`, in
    /// one transaction. Lookups already ignore them; this reclaims space and keeps hashes of dead
    /// secrets out of the database. Returns rows deleted.
    pub async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now = to_micros(&now);
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut deleted = 0;
            for sql in [
                "DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1",
                "DELETE FROM sessions WHERE expires_at <= $1",
                "DELETE FROM oauth_codes WHERE expires_at <= $1",
                "DELETE FROM share_codes WHERE expires_at IS NOT NULL AND expires_at <= $1",
            ] {
                deleted += sqlx::query(sql)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            Ok(deleted)
        })
    }
}
