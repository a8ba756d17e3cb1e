//! Users: creation (singly and in bulk), lookup, admin flag, paging and activity.

use std::collections::HashMap;

use hubfleet_types::{Timestamp, UserName};

use crate::error::StoreError;
use crate::model::{User, UserDetails, UserQuery, UserSort, UserState};
use crate::servers::server_from_row;
use crate::store::{Columns, Pools, Store, dispatch, id_list, to_micros};

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

    /// Creates every name not yet taken, in one statement; returns the users created, in input
    /// order (a name given twice counts once).
    pub async fn create_users(
        &self,
        names: &[UserName],
        admin: bool,
    ) -> Result<Vec<User>, StoreError> {
        let mut position: HashMap<&str, usize> = HashMap::with_capacity(names.len());
        let mut distinct: Vec<&str> = Vec::with_capacity(names.len());
        for name in names {
            if !position.contains_key(name.as_str()) {
                position.insert(name.as_str(), distinct.len());
                distinct.push(name.as_str());
            }
        }
        if distinct.is_empty() {
            return Ok(Vec::new());
        }
        let created = to_micros(&hubfleet_types::now());
        // DO NOTHING + RETURNING yields rows only for names actually inserted. The names travel
        // as one parameter (a PostgreSQL array, a JSON array for SQLite): one round trip, and
        // PostgreSQL's statement-level `users_total` trigger fires once.
        let rows = match &*self.pools {
            Pools::Sqlite { writer, .. } => {
                let names = serde_json::to_string(&distinct)
                    .map_err(|err| StoreError::CorruptRow(format!("cannot encode names: {err}")))?;
                // `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join constraint.
                sqlx::query(
                    "INSERT INTO users (name, admin, created) \
                     SELECT value, $2, $3 FROM json_each($1) WHERE true ORDER BY key \
                     ON CONFLICT (name) DO NOTHING \
                     RETURNING id, name, admin, created, last_activity",
                )
                .bind(names)
                .bind(admin)
                .bind(created)
                .fetch_all(writer)
                .await?
                .iter()
                .map(user_from_row)
                .collect::<Result<Vec<_>, _>>()?
            }
            Pools::Postgres { pool } => sqlx::query(
                "INSERT INTO users (name, admin, created) \
                 SELECT name, $2, $3 FROM unnest($1::text[]) WITH ORDINALITY AS n (name, position) \
                 ORDER BY position \
                 ON CONFLICT (name) DO NOTHING \
                 RETURNING id, name, admin, created, last_activity",
            )
            .bind(&distinct)
            .bind(admin)
            .bind(created)
            .fetch_all(pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?,
        };
        let mut users = rows;
        users.sort_by_key(|user| position.get(user.name.as_str()).copied());
        Ok(users)
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
    /// and paged in SQL.
    pub async fn query_users(&self, query: &UserQuery) -> Result<(Vec<User>, i64), StoreError> {
        let (users, total) = self.query_user_page(query, true).await?;
        Ok((users, total.unwrap_or_default()))
    }

    /// One page of users matching `query`, filtered, sorted and paged in SQL, in one statement;
    /// with `with_total`, also the number of all matching users. Listing everyone reads that
    /// number from `users_total` (kept by triggers) instead of counting the table on every page.
    pub async fn query_user_page(
        &self,
        query: &UserQuery,
        with_total: bool,
    ) -> Result<(Vec<User>, Option<i64>), StoreError> {
        let filter = UserFilter::new(query);
        let total_column = if with_total {
            format!(", ({}) AS total", filter.count_sql())
        } else {
            String::new()
        };
        let page_sql = format!(
            "SELECT u.id, u.name, u.admin, u.created, u.last_activity{total_column} \
             FROM users u{} ORDER BY {} LIMIT $1 OFFSET $2",
            filter.where_clause,
            filter.order(query)
        );
        let (limit, offset) = (query.limit.max(0), query.offset.max(0));
        let (users, total) = dispatch!(self, read, |pool| {
            let mut page = sqlx::query(sqlx::AssertSqlSafe(page_sql))
                .bind(limit)
                .bind(offset);
            for text in &filter.texts {
                page = page.bind(text.clone());
            }
            let rows = page.fetch_all(pool).await?;
            let total = match rows.first() {
                Some(row) if with_total => Some(row.int("total")?),
                _ => None,
            };
            let users = rows
                .iter()
                .map(user_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            (users, total)
        });
        if !with_total || total.is_some() {
            return Ok((users, total));
        }
        // A page past the end has no row to carry the total.
        let count_sql = filter.count_sql();
        let total = dispatch!(self, read, |pool| {
            // The count binds `$1`/`$2` too, so that text parameters keep their numbers.
            let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT ({count_sql}) WHERE $1 >= 0 AND $2 >= 0"
            )))
            .bind(limit)
            .bind(offset);
            for text in &filter.texts {
                count = count.bind(text.clone());
            }
            count.fetch_one(pool).await?
        });
        Ok((users, Some(total)))
    }

    /// The user named `name` with their servers (all, or only those not stopped), groups and
    /// roles, in one query.
    pub async fn user_details_by_name(
        &self,
        name: &UserName,
        include_stopped: bool,
    ) -> Result<Option<UserDetails>, StoreError> {
        let sql = details_sql(
            "IN (SELECT id FROM users WHERE name = $1)",
            true,
            include_stopped,
        );
        let rows = dispatch!(self, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name.as_str())
                .fetch_all(pool)
                .await?;
            details_from_rows(&rows, Vec::new())?
        });
        Ok(rows.into_iter().next())
    }

    /// `users` with their servers (all, or only those not stopped), groups and roles, in one
    /// query whatever the number of users; in the order given.
    pub async fn user_details(
        &self,
        users: Vec<User>,
        include_stopped: bool,
    ) -> Result<Vec<UserDetails>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        // One statement text whatever the number of ids, so it is prepared once: PostgreSQL takes
        // an array, SQLite a JSON array.
        match &*self.pools {
            Pools::Sqlite { reader, .. } => {
                let sql = details_sql(
                    "IN (SELECT value FROM json_each($1))",
                    false,
                    include_stopped,
                );
                let ids = serde_json::to_string(&ids)
                    .map_err(|err| StoreError::CorruptRow(format!("cannot encode ids: {err}")))?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ids)
                    .fetch_all(reader)
                    .await?;
                details_from_rows(&rows, users)
            }
            Pools::Postgres { pool } => {
                let sql = details_sql("= ANY($1)", false, include_stopped);
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ids)
                    .fetch_all(pool)
                    .await?;
                details_from_rows(&rows, users)
            }
        }
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

/// The `WHERE` clause of a user listing, with its text parameters numbered from `$3` (the page
/// query binds `$1` limit and `$2` offset first).
struct UserFilter {
    where_clause: String,
    texts: Vec<String>,
}

impl UserFilter {
    fn new(query: &UserQuery) -> Self {
        let mut conditions = Vec::new();
        let mut texts: Vec<String> = Vec::new();
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
        UserFilter {
            where_clause,
            texts,
        }
    }

    /// A query for the number of matching users: the maintained total when nothing filters.
    fn count_sql(&self) -> String {
        if self.where_clause.is_empty() {
            "SELECT users FROM users_total WHERE id = 1".to_string()
        } else {
            format!("SELECT COUNT(*) FROM users u{}", self.where_clause)
        }
    }

    fn order(&self, query: &UserQuery) -> String {
        let direction = if query.descending { "DESC" } else { "ASC" };
        // JupyterHub puts users who were never active first when ascending and last when
        // descending; spelled out because SQLite and PostgreSQL order NULLs differently.
        match query.sort {
            UserSort::Id => format!("u.id {direction}"),
            UserSort::Name => format!("u.name {direction}"),
            UserSort::LastActivity if query.descending => {
                "(u.last_activity IS NULL) ASC, u.last_activity DESC, u.id DESC".to_string()
            }
            UserSort::LastActivity => {
                "(u.last_activity IS NULL) DESC, u.last_activity ASC, u.id ASC".to_string()
            }
        }
    }
}

/// One statement for everything a user model shows beyond the `users` row: a row per server
/// (kind `s`), group (`g`), directly assigned role (`r`) and role through a group (`h`) of the
/// users whose id is `id_set` (an SQL predicate on the id), plus the user rows themselves (`u`)
/// when `with_users`. Columns are cast so both backends agree on each column's type.
fn details_sql(id_set: &str, with_users: bool, include_stopped: bool) -> String {
    const NO_SERVER: &str = "CAST(NULL AS BIGINT) AS id, CAST(NULL AS TEXT) AS status, \
        CAST(NULL AS TEXT) AS url, CAST(NULL AS TEXT) AS state, CAST(NULL AS BIGINT) AS started, \
        CAST(NULL AS BIGINT) AS last_activity, CAST(NULL AS TEXT) AS user_options, \
        CAST(NULL AS TEXT) AS display_name";
    const NO_USER: &str = "CAST(NULL AS BOOLEAN) AS admin, CAST(NULL AS BIGINT) AS created";
    let mut branches = Vec::new();
    if with_users {
        branches.push(format!(
            "SELECT CAST('u' AS TEXT) AS kind, u.id AS user_id, u.name AS name, u.id AS id, \
             CAST(NULL AS TEXT) AS status, CAST(NULL AS TEXT) AS url, CAST(NULL AS TEXT) AS state, \
             CAST(NULL AS BIGINT) AS started, u.last_activity AS last_activity, \
             CAST(NULL AS TEXT) AS user_options, CAST(NULL AS TEXT) AS display_name, \
             u.admin AS admin, u.created AS created FROM users u WHERE u.id {id_set}"
        ));
    }
    branches.push(format!(
        "SELECT CAST('s' AS TEXT) AS kind, s.user_id AS user_id, s.name AS name, s.id AS id, \
         s.status AS status, s.url AS url, s.state AS state, s.started AS started, \
         s.last_activity AS last_activity, s.user_options AS user_options, \
         s.display_name AS display_name, {NO_USER} FROM servers s WHERE s.user_id {id_set}{}",
        if include_stopped {
            ""
        } else {
            " AND s.status <> 'stopped'"
        }
    ));
    branches.push(format!(
        "SELECT CAST('g' AS TEXT) AS kind, ug.user_id AS user_id, g.name AS name, {NO_SERVER}, \
         {NO_USER} FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
         WHERE ug.user_id {id_set}"
    ));
    branches.push(format!(
        "SELECT CAST('r' AS TEXT) AS kind, ur.user_id AS user_id, ur.role AS name, {NO_SERVER}, \
         {NO_USER} FROM user_roles ur WHERE ur.user_id {id_set}"
    ));
    branches.push(format!(
        "SELECT DISTINCT CAST('h' AS TEXT) AS kind, ug.user_id AS user_id, gr.role AS name, \
         {NO_SERVER}, {NO_USER} FROM user_groups ug \
         JOIN group_roles gr ON gr.group_id = ug.group_id WHERE ug.user_id {id_set}"
    ));
    format!(
        "{} ORDER BY user_id, kind, name",
        branches.join(" UNION ALL ")
    )
}

/// Assembles the rows of [`details_sql`] into one [`UserDetails`] per user: those of `users`
/// in their order, then (for a query `with_users`) those whose `u` row came back.
fn details_from_rows<R: Columns>(
    rows: &[R],
    users: Vec<User>,
) -> Result<Vec<UserDetails>, StoreError> {
    let mut details: Vec<UserDetails> = users
        .into_iter()
        .map(|user| UserDetails {
            user,
            servers: Vec::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            group_roles: Vec::new(),
        })
        .collect();
    // Rows of user rows first, so that `u` rows can add users the others then refer to.
    for row in rows {
        if row.text("kind")? == "u" {
            details.push(UserDetails {
                user: user_from_row(row)?,
                servers: Vec::new(),
                groups: Vec::new(),
                roles: Vec::new(),
                group_roles: Vec::new(),
            });
        }
    }
    let position: HashMap<i64, usize> = details
        .iter()
        .enumerate()
        .map(|(i, d)| (d.user.id, i))
        .collect();
    for row in rows {
        let kind = row.text("kind")?;
        let Some(&i) = position.get(&row.int("user_id")?) else {
            continue;
        };
        let entry = &mut details[i];
        match kind.as_str() {
            "u" => {}
            "s" => entry.servers.push(server_from_row(row)?),
            "g" => entry.groups.push(row.text("name")?),
            "r" => entry.roles.push(row.text("name")?),
            "h" => entry.group_roles.push(row.text("name")?),
            other => {
                return Err(StoreError::CorruptRow(format!(
                    "unknown user detail kind {other:?}"
                )));
            }
        }
    }
    Ok(details)
}
