//! Servers: one row per (user, server name), driven through the spawn lifecycle.
//!
//! A stopped server keeps its row (with its `user_options` and `last_activity`) until deleted, like
//! JupyterHub's named servers; the default server is the one named "".

use hubfleet_types::{ServerName, SpawnerState, Timestamp};

use crate::error::StoreError;
use crate::model::{Server, ServerStatus, User};
use crate::store::{Columns, Store, dispatch, id_list, to_json_text, to_micros};
use crate::users::{expect_one, user_from_prefixed_row};

pub(crate) fn server_from_row(row: &impl Columns) -> Result<Server, StoreError> {
    let name = row.text("name")?;
    let status = row.text("status")?;
    let state = match row.opt_text("state")? {
        None => SpawnerState::default(),
        Some(text) => SpawnerState(
            serde_json::from_str(&text)
                .map_err(|err| StoreError::CorruptRow(format!("servers.state: {err}")))?,
        ),
    };
    Ok(Server {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        name: ServerName::parse(&name)
            .map_err(|err| StoreError::CorruptRow(format!("servers.name: {err}")))?,
        status: ServerStatus::parse(&status)
            .ok_or_else(|| StoreError::CorruptRow(format!("servers.status: {status:?}")))?,
        url: row.opt_text("url")?,
        state,
        started: row.opt_timestamp("started")?,
        last_activity: row.opt_timestamp("last_activity")?,
        user_options: row.json("user_options")?,
        display_name: row.text("display_name")?,
    })
}

impl Store {
    pub async fn get_server(
        &self,
        user_id: i64,
        name: &ServerName,
    ) -> Result<Option<Server>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query(
                "SELECT id, user_id, name, status, url, state, started, last_activity, user_options, display_name \
                 FROM servers WHERE user_id = $1 AND name = $2",
            )
            .bind(user_id)
            .bind(name.as_str())
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(server_from_row)
            .transpose()
        })
    }

    pub async fn get_server_by_id(&self, server_id: i64) -> Result<Option<Server>, StoreError> {
        dispatch!(self, read, |pool| {
            sqlx::query(
                "SELECT id, user_id, name, status, url, state, started, last_activity, user_options, display_name \
                 FROM servers WHERE id = $1",
            )
            .bind(server_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(server_from_row)
            .transpose()
        })
    }

    /// All of one user's servers, ordered by name (so the default server comes first).
    pub async fn list_user_servers(&self, user_id: i64) -> Result<Vec<Server>, StoreError> {
        dispatch!(self, read, |pool| {
            let rows = sqlx::query(
                "SELECT id, user_id, name, status, url, state, started, last_activity, user_options, display_name \
                 FROM servers WHERE user_id = $1 ORDER BY name",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(server_from_row).collect()
        })
    }

    /// Every server that is not stopped, with its user, ordered by server id. Used at startup to
    /// re-adopt servers and by the idle culler.
    pub async fn list_active_servers(&self) -> Result<Vec<(User, Server)>, StoreError> {
        dispatch!(self, read, |pool| {
            let rows = sqlx::query(
                "SELECT s.id, s.user_id, s.name, s.status, s.url, s.state, s.started, \
                 s.last_activity, s.user_options, s.display_name, u.id AS u_id, u.name AS u_name, \
                 u.admin AS u_admin, u.created AS u_created, u.last_activity AS u_last_activity \
                 FROM servers s JOIN users u ON u.id = s.user_id \
                 WHERE s.status <> 'stopped' ORDER BY s.id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| Ok((user_from_prefixed_row(row, "u_")?, server_from_row(row)?)))
                .collect()
        })
    }

    /// Marks the server as spawning (creating its row if needed): `started` = now, URL and spawner
    /// state cleared, `user_options` replaced. [`StoreError::Conflict`] if it is not stopped;
    /// [`StoreError::NotFound`] if the user does not exist.
    pub async fn begin_spawn(
        &self,
        user_id: i64,
        name: &ServerName,
        user_options: &serde_json::Value,
    ) -> Result<Server, StoreError> {
        let options = to_json_text(user_options)?;
        let now = to_micros(&hubfleet_types::now());
        // The WHERE on DO UPDATE makes the status check and the transition one atomic statement:
        // a server that is not stopped yields no row.
        let spawned = dispatch!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO servers (user_id, name, status, started, user_options) \
                 VALUES ($1, $2, 'spawning', $3, $4) \
                 ON CONFLICT (user_id, name) DO UPDATE SET status = 'spawning', url = NULL, \
                 state = NULL, started = excluded.started, user_options = excluded.user_options \
                 WHERE servers.status = 'stopped' \
                 RETURNING id, user_id, name, status, url, state, started, last_activity, user_options, display_name",
            )
            .bind(user_id)
            .bind(name.as_str())
            .bind(now)
            .bind(options)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(server_from_row)
            .transpose()?
        });
        match spawned {
            Some(server) => Ok(server),
            None => {
                let status = self
                    .get_server(user_id, name)
                    .await?
                    .map(|server| server.status.as_str())
                    .unwrap_or("gone");
                Err(StoreError::Conflict(format!(
                    "server {name:?} is {status}, not stopped"
                )))
            }
        }
    }

    /// Saves where the launched server is and the spawner state needed to find it after a restart.
    /// The status is left alone (normally still spawning).
    pub async fn set_server_launched(
        &self,
        server_id: i64,
        url: &str,
        state: &SpawnerState,
    ) -> Result<(), StoreError> {
        let state = to_json_text(&state.0)?;
        dispatch!(self, write, |pool| {
            let done = sqlx::query("UPDATE servers SET url = $1, state = $2 WHERE id = $3")
                .bind(url)
                .bind(state)
                .bind(server_id)
                .execute(pool)
                .await?;
            expect_one(done.rows_affected())
        })
    }

    /// Marks the server running and records activity now.
    pub async fn set_server_running(&self, server_id: i64) -> Result<(), StoreError> {
        let now = to_micros(&hubfleet_types::now());
        dispatch!(self, write, |pool| {
            let done = sqlx::query(
                "UPDATE servers SET status = 'running', last_activity = CASE \
                 WHEN last_activity IS NULL OR last_activity < $1 THEN $1 ELSE last_activity END \
                 WHERE id = $2",
            )
            .bind(now)
            .bind(server_id)
            .execute(pool)
            .await?;
            expect_one(done.rows_affected())
        })
    }

    pub async fn set_server_stopping(&self, server_id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("UPDATE servers SET status = 'stopping' WHERE id = $1")
                .bind(server_id)
                .execute(pool)
                .await?;
            expect_one(done.rows_affected())
        })
    }

    /// Marks the server stopped and forgets its URL, spawner state and start time.
    pub async fn set_server_stopped(&self, server_id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query(
                "UPDATE servers SET status = 'stopped', url = NULL, state = NULL, started = NULL \
                 WHERE id = $1",
            )
            .bind(server_id)
            .execute(pool)
            .await?;
            expect_one(done.rows_affected())
        })
    }

    /// Records activity; never moves `last_activity` backwards. A missing server is not an error.
    pub async fn touch_server_activity(
        &self,
        server_id: i64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            sqlx::query(
                "UPDATE servers SET last_activity = $1 \
                 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
            )
            .bind(to_micros(&at))
            .bind(server_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn delete_server(&self, server_id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("DELETE FROM servers WHERE id = $1")
                .bind(server_id)
                .execute(pool)
                .await?;
            expect_one(done.rows_affected())
        })
    }

    /// Creates a stopped server record (JupyterHub 6's `PUT /users/{name}/servers/{server}`).
    /// [`StoreError::Conflict`] if it exists.
    pub async fn create_server(
        &self,
        user_id: i64,
        name: &ServerName,
        display_name: &str,
        user_options: &serde_json::Value,
    ) -> Result<Server, StoreError> {
        let options = to_json_text(user_options)?;
        let row = dispatch!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO servers (user_id, name, status, user_options, display_name) \
                 VALUES ($1, $2, 'stopped', $3, $4) \
                 RETURNING id, user_id, name, status, url, state, started, last_activity, user_options, display_name",
            )
            .bind(user_id)
            .bind(name.as_str())
            .bind(options)
            .bind(display_name)
            .fetch_one(pool)
            .await
            .map_err(StoreError::from)
            .and_then(|row| server_from_row(&row))
        });
        match row {
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
                "server {name:?} already exists"
            ))),
            other => other,
        }
    }

    /// Renames a server and sets its display name and options (a stopped server only; the
    /// caller checks). [`StoreError::Conflict`] if the new name is taken.
    pub async fn update_server(
        &self,
        server_id: i64,
        name: &ServerName,
        display_name: &str,
        user_options: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let options = to_json_text(user_options)?;
        let done = dispatch!(self, write, |pool| {
            sqlx::query(
                "UPDATE servers SET name = $1, display_name = $2, user_options = $3 WHERE id = $4",
            )
            .bind(name.as_str())
            .bind(display_name)
            .bind(options)
            .bind(server_id)
            .execute(pool)
            .await
            .map_err(StoreError::from)
            .and_then(|done| expect_one(done.rows_affected()))
        });
        match done {
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
                "server {name:?} already exists"
            ))),
            other => other,
        }
    }

    /// The servers of many users in one query (for a page of user models), ordered by user and
    /// name. `active_only` leaves out stopped servers.
    pub async fn list_servers_for_users(
        &self,
        user_ids: &[i64],
        active_only: bool,
    ) -> Result<Vec<Server>, StoreError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, user_id, name, status, url, state, started, last_activity, user_options, \
             display_name FROM servers WHERE user_id IN ({}){} ORDER BY user_id, name",
            id_list(1, user_ids.len()),
            if active_only {
                " AND status <> 'stopped'"
            } else {
                ""
            }
        );
        dispatch!(self, read, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in user_ids {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(server_from_row).collect()
        })
    }
}
