//! Services, keyed by name: those declared in the hub configuration and those created at runtime
//! through the REST API (`from_config = false`), which only live here.

use crate::error::StoreError;
use crate::model::{NewService, OAuthClient, Service};
use crate::store::{Columns, Store, WritePool, dispatch, to_json_text};

const SERVICE_COLUMNS: &str = "id, name, admin, from_config, url, info, display, oauth_client_id, \
     oauth_no_confirm, oauth_client_allowed_scopes";

fn service_from_row(row: &impl Columns) -> Result<Service, StoreError> {
    Ok(Service {
        id: row.int("id")?,
        name: row.text("name")?,
        admin: row.boolean("admin")?,
        from_config: row.boolean("from_config")?,
        url: row.opt_text("url")?,
        info: row.json("info")?,
        display: row.boolean("display")?,
        oauth_client_id: row.opt_text("oauth_client_id")?,
        oauth_no_confirm: row.boolean("oauth_no_confirm")?,
        oauth_client_allowed_scopes: row.json("oauth_client_allowed_scopes")?,
    })
}

/// The credentials a runtime service is created with, stored in the same transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceCredentials<'a> {
    /// SHA-256 of the service's API token, if it has one.
    pub token_hash: Option<&'a str>,
    pub oauth_client: Option<&'a OAuthClient>,
}

impl Store {
    /// Creates or updates a service from the configuration and returns it (its id is stable
    /// across calls). `None` when a service created at runtime holds the name: JupyterHub leaves
    /// such a service alone rather than let the configuration take it over.
    pub async fn upsert_config_service(
        &self,
        service: &NewService,
    ) -> Result<Option<Service>, StoreError> {
        let info = to_json_text(&service.info)?;
        let allowed = to_json_text(&service.oauth_client_allowed_scopes)?;
        let sql = format!(
            "INSERT INTO services (name, admin, from_config, url, info, display, oauth_client_id, \
             oauth_no_confirm, oauth_client_allowed_scopes) \
             VALUES ($1, $2, TRUE, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET admin = excluded.admin, url = excluded.url, \
             info = excluded.info, display = excluded.display, \
             oauth_client_id = excluded.oauth_client_id, \
             oauth_no_confirm = excluded.oauth_no_confirm, \
             oauth_client_allowed_scopes = excluded.oauth_client_allowed_scopes \
             WHERE services.from_config = TRUE \
             RETURNING {SERVICE_COLUMNS}"
        );
        dispatch!(self, write, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(service.name.as_str())
                .bind(service.admin)
                .bind(service.url.as_deref())
                .bind(info)
                .bind(service.display)
                .bind(service.oauth_client_id.as_deref())
                .bind(service.oauth_no_confirm)
                .bind(allowed)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(service_from_row)
                .transpose()
        })
    }

    /// Creates or updates a configured service with only a name and admin flag.
    pub async fn upsert_service(&self, name: &str, admin: bool) -> Result<Service, StoreError> {
        self.upsert_config_service(&NewService::from_config(name, admin))
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("service {name} was created at runtime")))
    }

    /// Creates a service at runtime together with its API token (owned by the service, with its
    /// full permissions) and OAuth client, atomically. [`StoreError::Conflict`] if the name, the
    /// token or the OAuth client identifier is taken.
    pub async fn create_runtime_service(
        &self,
        service: &NewService,
        credentials: ServiceCredentials<'_>,
        now: hubfleet_types::Timestamp,
    ) -> Result<Service, StoreError> {
        let info = to_json_text(&service.info)?;
        let allowed = to_json_text(&service.oauth_client_allowed_scopes)?;
        let client_scopes = credentials
            .oauth_client
            .map(|client| to_json_text(&client.allowed_scopes))
            .transpose()?;
        let sql = format!(
            "INSERT INTO services (name, admin, from_config, url, info, display, oauth_client_id, \
             oauth_no_confirm, oauth_client_allowed_scopes) \
             VALUES ($1, $2, FALSE, $3, $4, $5, $6, $7, $8) RETURNING {SERVICE_COLUMNS}"
        );
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(service.name.as_str())
                .bind(service.admin)
                .bind(service.url.as_deref())
                .bind(info)
                .bind(service.display)
                .bind(service.oauth_client_id.as_deref())
                .bind(service.oauth_no_confirm)
                .bind(allowed)
                .fetch_one(&mut *tx)
                .await?;
            let created = service_from_row(&row)?;
            if let Some(hash) = credentials.token_hash {
                sqlx::query(
                    "INSERT INTO api_tokens (hash, service_id, scopes, note, created) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(hash)
                .bind(created.id)
                .bind(r#"["inherit"]"#)
                .bind("from the REST API")
                .bind(crate::store::to_micros(&now))
                .execute(&mut *tx)
                .await?;
            }
            if let (Some(client), Some(scopes)) = (credentials.oauth_client, client_scopes) {
                // A stale client of the same name (e.g. from a service deleted from the
                // configuration) is not this service's: refuse rather than take it over.
                sqlx::query(
                    "INSERT INTO oauth_clients (identifier, secret_hash, redirect_uri, \
                     description, allowed_scopes) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(client.identifier.as_str())
                .bind(client.secret_hash.as_str())
                .bind(client.redirect_uri.as_str())
                .bind(client.description.as_str())
                .bind(scopes)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(created)
        })
    }

    /// Deletes a service with its tokens and its OAuth client (with the client's tokens and
    /// codes), atomically, and returns what was deleted; `None` if there was no such service.
    pub async fn delete_service(&self, name: &str) -> Result<Option<Service>, StoreError> {
        let sql = format!("DELETE FROM services WHERE name = $1 RETURNING {SERVICE_COLUMNS}");
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let deleted = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(service_from_row)
                .transpose()?;
            let Some(service) = deleted else {
                return Ok(None);
            };
            sqlx::query("DELETE FROM api_tokens WHERE service_id = $1")
                .bind(service.id)
                .execute(&mut *tx)
                .await?;
            if let Some(client) = &service.oauth_client_id {
                for sql in [
                    "DELETE FROM api_tokens WHERE oauth_client_id = $1",
                    "DELETE FROM oauth_codes WHERE client_id = $1",
                    "DELETE FROM oauth_clients WHERE identifier = $1",
                ] {
                    sqlx::query(sql).bind(client).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok(Some(service))
        })
    }

    /// Every service, configured and runtime, by name.
    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let sql = format!("SELECT {SERVICE_COLUMNS} FROM services ORDER BY name");
        dispatch!(self, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?;
            rows.iter().map(service_from_row).collect()
        })
    }

    pub async fn get_service(&self, name: &str) -> Result<Option<Service>, StoreError> {
        let sql = format!("SELECT {SERVICE_COLUMNS} FROM services WHERE name = $1");
        dispatch!(self, read, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(service_from_row)
                .transpose()
        })
    }

    pub async fn get_service_by_id(&self, id: i64) -> Result<Option<Service>, StoreError> {
        let sql = format!("SELECT {SERVICE_COLUMNS} FROM services WHERE id = $1");
        dispatch!(self, read, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(service_from_row)
                .transpose()
        })
    }

    /// Revokes every token owned by the service. Returns how many.
    pub async fn delete_service_tokens(&self, service_id: i64) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            Ok(sqlx::query("DELETE FROM api_tokens WHERE service_id = $1")
                .bind(service_id)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }
}
