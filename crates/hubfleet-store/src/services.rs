//! Services declared in the hub configuration, keyed by name.

use crate::error::StoreError;
use crate::model::Service;
use crate::store::{Columns, Store, dispatch};

fn service_from_row(row: &impl Columns) -> Result<Service, StoreError> {
    Ok(Service {
        id: row.int("id")?,
        name: row.text("name")?,
        admin: row.boolean("admin")?,
    })
}

impl Store {
    /// Creates the service or updates its admin flag; its id is stable across calls.
    pub async fn upsert_service(&self, name: &str, admin: bool) -> Result<Service, StoreError> {
        dispatch!(self, write, |pool| {
            let row = sqlx::query(
                "INSERT INTO services (name, admin) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET admin = excluded.admin \
                 RETURNING id, name, admin",
            )
            .bind(name)
            .bind(admin)
            .fetch_one(pool)
            .await?;
            service_from_row(&row)
        })
    }

    pub async fn get_service(&self, name: &str) -> Result<Option<Service>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query("SELECT id, name, admin FROM services WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(service_from_row)
                .transpose()
        })
    }

    pub async fn get_service_by_id(&self, id: i64) -> Result<Option<Service>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query("SELECT id, name, admin FROM services WHERE id = $1")
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
