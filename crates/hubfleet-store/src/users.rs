//! Users: creation (singly and in bulk), lookup, admin flag, paging and activity.

use hubfleet_types::{Timestamp, UserName};

use crate::error::StoreError;
use crate::model::{User, UserQuery, UserSort, UserState};
use crate::store::{Columns, Store, WritePool, dispatch, id_list, to_micros};

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

    /// Renames a user. [`StoreError::Conflict`] if the new name is taken.
    pub async fn rename_user(&self, id: i64, name: &UserName) -> Result<(), StoreError> {
        let done = dispatch!(self, write, |pool| {
            sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
                .bind(name.as_str())
                .bind(id)
                .execute(pool)
                .await
                .map_err(StoreError::from)
                .and_then(|done| expect_one(done.rows_affected()))
        });
        match done {
            Err(StoreError::Conflict(_)) => {
                Err(StoreError::Conflict(format!("User {name} already exists")))
            }
            other => other,
        }
    }

    /// One page of users matching `query` and the number of all matching users, filtered, sorted
    /// and paged in SQL (two indexed queries whatever the number of users).
    pub async fn query_users(&self, query: &UserQuery) -> Result<(Vec<User>, i64), StoreError> {
        let mut conditions = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        // Text parameters are numbered after `$1` (limit) and `$2` (offset) in the page query;
        // the count query binds the same two first so that numbering is shared.
        let next = |texts: &mut Vec<String>, value: String| {
            texts.push(value);
            format!("${}", texts.len() + 2)
        };
        match query.state {
            None => {}
            Some(UserState::Active) => conditions.push(
                "EXISTS (SELECT 1 FROM servers s WHERE s.user_id = u.id AND s.status <> 'stopped')"
                    .to_string(),
            ),
            Some(UserState::Ready) => conditions.push(
                "EXISTS (SELECT 1 FROM servers s WHERE s.user_id = u.id AND s.status = 'running')"
                    .to_string(),
            ),
            Some(UserState::Inactive) => conditions.push(
                "NOT EXISTS (SELECT 1 FROM servers s WHERE s.user_id = u.id \
                 AND s.status <> 'stopped')"
                    .to_string(),
            ),
        }
        if let Some(filter) = &query.name_filter {
            let escaped = filter
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let p = next(&mut texts, format!("%{escaped}%"));
            // Names are stored lowercased, so a lowercased LIKE is case-insensitive on both backends.
            conditions.push(format!("u.name LIKE {p} ESCAPE '\\'"));
        }
        if let Some(visible) = &query.visible {
            let mut any = Vec::new();
            if !visible.names.is_empty() {
                let list: Vec<String> = visible
                    .names
                    .iter()
                    .map(|n| next(&mut texts, n.clone()))
                    .collect();
                any.push(format!("u.name IN ({})", list.join(", ")));
            }
            if !visible.groups.is_empty() {
                let list: Vec<String> = visible
                    .groups
                    .iter()
                    .map(|g| next(&mut texts, g.clone()))
                    .collect();
                any.push(format!(
                    "EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
                     WHERE ug.user_id = u.id AND g.name IN ({}))",
                    list.join(", ")
                ));
            }
            if any.is_empty() {
                any.push("1 = 0".to_string());
            }
            conditions.push(format!("({})", any.join(" OR ")));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let direction = if query.descending { "DESC" } else { "ASC" };
        // JupyterHub puts users who were never active first when ascending and last when
        // descending; spelled out because SQLite and PostgreSQL order NULLs differently.
        let order = match query.sort {
            UserSort::Id => format!("u.id {direction}"),
            UserSort::Name => format!("u.name {direction}"),
            UserSort::LastActivity if query.descending => {
                "(u.last_activity IS NULL) ASC, u.last_activity DESC, u.id DESC".to_string()
            }
            UserSort::LastActivity => {
                "(u.last_activity IS NULL) DESC, u.last_activity ASC, u.id ASC".to_string()
            }
        };
        let page_sql = format!(
            "SELECT u.id, u.name, u.admin, u.created, u.last_activity FROM users u{where_clause} \
             ORDER BY {order} LIMIT $1 OFFSET $2"
        );
        let count_sql = format!(
            "SELECT COUNT(*) FROM users u{where_clause}{}",
            if where_clause.is_empty() {
                " WHERE $1 >= 0 AND $2 >= 0"
            } else {
                " AND $1 >= 0 AND $2 >= 0"
            }
        );
        let (limit, offset) = (query.limit.max(0), query.offset.max(0));
        dispatch!(self, read, |pool| {
            let mut page = sqlx::query(sqlx::AssertSqlSafe(page_sql))
                .bind(limit)
                .bind(offset);
            let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql))
                .bind(limit)
                .bind(offset);
            for text in &texts {
                page = page.bind(text.clone());
                count = count.bind(text.clone());
            }
            let users = page
                .fetch_all(pool)
                .await?
                .iter()
                .map(user_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let total = count.fetch_one(pool).await?;
            Ok((users, total))
        })
    }

    /// Users by id, in one query (for resolving the members of a page).
    pub async fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<User>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, name, admin, created, last_activity FROM users WHERE id IN ({}) ORDER BY id",
            id_list(1, ids.len())
        );
        dispatch!(self, read, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(*id);
            }
            query
                .fetch_all(pool)
                .await?
                .iter()
                .map(user_from_row)
                .collect()
        })
    }
}
