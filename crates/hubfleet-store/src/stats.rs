//! Aggregate counts for metrics and admission control, computed in SQL so they stay cheap at
//! 50k users.

use hubfleet_types::Timestamp;

use crate::StoreError;
use crate::store::{Store, dispatch, to_micros};

impl Store {
    /// Users whose `last_activity` is at or after `since` (JupyterHub's `active_users` gauge).
    pub async fn count_active_users(&self, since: Timestamp) -> Result<i64, StoreError> {
        let since = to_micros(&since);
        dispatch!(self, read, |pool| {
            Ok(
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM users WHERE last_activity >= $1",
                )
                .bind(since)
                .fetch_one(pool)
                .await?,
            )
        })
    }

    /// Servers that are running or stopping (started and not yet gone).
    pub async fn count_running_servers(&self) -> Result<i64, StoreError> {
        dispatch!(self, read, |pool| {
            Ok(sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM servers WHERE status IN ('running', 'stopping')",
            )
            .fetch_one(pool)
            .await?)
        })
    }
}
