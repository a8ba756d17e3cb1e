//! OAuth clients (one per single-user server or service) and single-use authorization codes.

use hubfleet_types::Timestamp;

use crate::error::StoreError;
use crate::model::{OAuthClient, OAuthCode};
use crate::store::{Columns, Store, WritePool, dispatch, to_json_text, to_micros};

fn client_from_row(row: &impl Columns) -> Result<OAuthClient, StoreError> {
    Ok(OAuthClient {
        identifier: row.text("identifier")?,
        secret_hash: row.text("secret_hash")?,
        redirect_uri: row.text("redirect_uri")?,
        description: row.text("description")?,
        allowed_scopes: row.json("allowed_scopes")?,
    })
}

fn code_from_row(row: &impl Columns) -> Result<OAuthCode, StoreError> {
    Ok(OAuthCode {
        code_hash: row.text("code_hash")?,
        client_id: row.text("client_id")?,
        user_id: row.int("user_id")?,
        redirect_uri: row.text("redirect_uri")?,
        scopes: row.json("scopes")?,
        code_challenge: row.opt_text("code_challenge")?,
        code_challenge_method: row.opt_text("code_challenge_method")?,
        session_id: row.opt_text("session_id")?,
        expires_at: row.timestamp("expires_at")?,
    })
}

impl Store {
    /// Creates the client or replaces every field of the one with the same identifier.
    pub async fn upsert_oauth_client(&self, client: &OAuthClient) -> Result<(), StoreError> {
        let scopes = to_json_text(&client.allowed_scopes)?;
        dispatch!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO oauth_clients (identifier, secret_hash, redirect_uri, description, \
                 allowed_scopes) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (identifier) DO UPDATE SET secret_hash = excluded.secret_hash, \
                 redirect_uri = excluded.redirect_uri, description = excluded.description, \
                 allowed_scopes = excluded.allowed_scopes",
            )
            .bind(client.identifier.as_str())
            .bind(client.secret_hash.as_str())
            .bind(client.redirect_uri.as_str())
            .bind(client.description.as_str())
            .bind(scopes)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn get_oauth_client(
        &self,
        identifier: &str,
    ) -> Result<Option<OAuthClient>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query(
                "SELECT identifier, secret_hash, redirect_uri, description, allowed_scopes \
                 FROM oauth_clients WHERE identifier = $1",
            )
            .bind(identifier)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(client_from_row)
            .transpose()
        })
    }

    /// Deletes the client with the tokens and codes issued to it, atomically. Deleting a client
    /// that does not exist is not an error (the caller wants it gone either way).
    pub async fn delete_oauth_client(&self, identifier: &str) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for sql in [
                "DELETE FROM api_tokens WHERE oauth_client_id = $1",
                "DELETE FROM oauth_codes WHERE client_id = $1",
                "DELETE FROM oauth_clients WHERE identifier = $1",
            ] {
                sqlx::query(sql).bind(identifier).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Stores an authorization code. [`StoreError::NotFound`] if the user does not exist.
    pub async fn insert_oauth_code(&self, code: &OAuthCode) -> Result<(), StoreError> {
        let scopes = to_json_text(&code.scopes)?;
        dispatch!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, scopes, \
                 code_challenge, code_challenge_method, session_id, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(code.code_hash.as_str())
            .bind(code.client_id.as_str())
            .bind(code.user_id)
            .bind(code.redirect_uri.as_str())
            .bind(scopes)
            .bind(code.code_challenge.as_deref())
            .bind(code.code_challenge_method.as_deref())
            .bind(code.session_id.as_deref())
            .bind(to_micros(&code.expires_at))
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Redeems a code: deletes and returns it in one statement, so two concurrent redemptions can
    /// never both succeed. An expired code is deleted too, and reported as absent.
    pub async fn take_oauth_code(
        &self,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<Option<OAuthCode>, StoreError> {
        let code = dispatch!(self, write, |pool| {
            sqlx::query(
                "DELETE FROM oauth_codes WHERE code_hash = $1 \
                 RETURNING code_hash, client_id, user_id, redirect_uri, scopes, code_challenge, \
                 code_challenge_method, session_id, expires_at",
            )
            .bind(code_hash)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(code_from_row)
            .transpose()?
        });
        Ok(code.filter(|code| code.expires_at > now))
    }
}
