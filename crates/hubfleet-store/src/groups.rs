//! Groups, their members, and role assignments of users and groups.
//!
//! Lists are read a page at a time with the members and roles of the whole page fetched in one
//! query each, never one query per row: JupyterHub's per-row loading is what makes its user list
//! slow at tens of thousands of users.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::model::Group;
use crate::store::{Columns, Store, WritePool, dispatch, id_list, to_json_text};

/// `(owner id, name)` pairs from a two-column query, grouped by owner; names stay in query order.
fn group_pairs(pairs: Vec<(i64, String)>) -> HashMap<i64, Vec<String>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, name) in pairs {
        out.entry(id).or_default().push(name);
    }
    out
}

impl Store {
    /// Creates groups with the given members (existing users' names; unknown names are
    /// [`StoreError::NotFound`]) in one transaction. [`StoreError::Conflict`] if any group exists.
    pub async fn create_groups(
        &self,
        names: &[String],
        members: &[String],
    ) -> Result<Vec<Group>, StoreError> {
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut ids = Vec::with_capacity(names.len());
            for name in names {
                let id = sqlx::query_scalar::<_, i64>(
                    "INSERT INTO groups (name, properties) VALUES ($1, '{}') RETURNING id",
                )
                .bind(name.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(|err| match StoreError::from(err) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("Group {name} already exists"))
                    }
                    other => other,
                })?;
                for member in members {
                    let added = sqlx::query(
                        "INSERT INTO user_groups (group_id, user_id) \
                         SELECT $1, id FROM users WHERE name = $2 ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(member.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if added.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                }
                ids.push(id);
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        let mut groups = Vec::with_capacity(names.len());
        for name in names {
            groups.extend(self.get_group(name).await?);
        }
        Ok(groups)
    }

    pub async fn get_group(&self, name: &str) -> Result<Option<Group>, StoreError> {
        let row = dispatch!(self, read, |pool| {
            sqlx::query("SELECT id, name, properties FROM groups WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
                .map(|row| -> Result<_, StoreError> {
                    Ok((row.int("id")?, row.text("name")?, row.json("properties")?))
                })
                .transpose()?
        });
        let Some((id, name, properties)) = row else {
            return Ok(None);
        };
        let mut users = self.members_of_groups(&[id]).await?;
        let mut roles = self.roles_of_groups(&[id]).await?;
        Ok(Some(Group {
            id,
            name,
            properties,
            users: users.remove(&id).unwrap_or_default(),
            roles: roles.remove(&id).unwrap_or_default(),
        }))
    }

    /// One page of groups ordered by name, with members and roles, and the total count.
    /// `only` limits the listing to these group names (a filtered `list:groups` scope).
    pub async fn list_groups(
        &self,
        offset: i64,
        limit: i64,
        only: Option<&[String]>,
    ) -> Result<(Vec<Group>, i64), StoreError> {
        // Names are numbered after the page's `$1`/`$2` in the page query and from `$1` in the count.
        let condition = |first: usize| match only {
            None => String::new(),
            Some([]) => " WHERE 1 = 0".to_string(),
            Some(names) => format!(" WHERE name IN ({})", id_list(first, names.len())),
        };
        let page_sql = format!(
            "SELECT id, name, properties FROM groups{} ORDER BY name LIMIT $1 OFFSET $2",
            condition(3)
        );
        let count_sql = format!("SELECT COUNT(*) FROM groups{}", condition(1));
        let names: Vec<String> = only.map(<[String]>::to_vec).unwrap_or_default();
        let (rows, total) = dispatch!(self, read, |pool| {
            let mut page = sqlx::query(sqlx::AssertSqlSafe(page_sql))
                .bind(limit.max(0))
                .bind(offset.max(0));
            let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
            for name in &names {
                page = page.bind(name.clone());
                count = count.bind(name.clone());
            }
            let rows = page
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| -> Result<_, StoreError> {
                    Ok((row.int("id")?, row.text("name")?, row.json("properties")?))
                })
                .collect::<Result<Vec<(i64, String, serde_json::Value)>, _>>()?;
            let total = count.fetch_one(pool).await?;
            (rows, total)
        });
        let ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
        let mut users = self.members_of_groups(&ids).await?;
        let mut roles = self.roles_of_groups(&ids).await?;
        let groups = rows
            .into_iter()
            .map(|(id, name, properties)| Group {
                id,
                name,
                properties,
                users: users.remove(&id).unwrap_or_default(),
                roles: roles.remove(&id).unwrap_or_default(),
            })
            .collect();
        Ok((groups, total))
    }

    pub async fn delete_group(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("DELETE FROM groups WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            crate::users::expect_one(done.rows_affected())
        })
    }

    /// Adds (or removes) users by name, in one transaction. Adding an unknown user is
    /// [`StoreError::NotFound`] and changes nothing.
    pub async fn change_group_members(
        &self,
        group_id: i64,
        names: &[String],
        add: bool,
    ) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for name in names {
                let sql = if add {
                    "INSERT INTO user_groups (group_id, user_id) \
                     SELECT $1, id FROM users WHERE name = $2 ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM user_groups WHERE group_id = $1 \
                     AND user_id IN (SELECT id FROM users WHERE name = $2)"
                };
                sqlx::query(sql)
                    .bind(group_id)
                    .bind(name.as_str())
                    .execute(&mut *tx)
                    .await?;
                if add {
                    let exists: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
                            .bind(name.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound);
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn set_group_properties(
        &self,
        group_id: i64,
        properties: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let text = to_json_text(properties)?;
        dispatch!(self, write, |pool| {
            let done = sqlx::query("UPDATE groups SET properties = $1 WHERE id = $2")
                .bind(text)
                .bind(group_id)
                .execute(pool)
                .await?;
            crate::users::expect_one(done.rows_affected())
        })
    }

    /// Makes `names` exactly the user's groups, creating groups that do not exist yet
    /// (JupyterHub's `PATCH /users/{name}` with `groups`).
    pub async fn set_user_groups(&self, user_id: i64, names: &[String]) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for name in names {
                sqlx::query(
                    "INSERT INTO groups (name, properties) VALUES ($1, '{}') \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO user_groups (group_id, user_id) \
                     SELECT id, $2 FROM groups WHERE name = $1 ON CONFLICT DO NOTHING",
                )
                .bind(name.as_str())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Makes `roles` exactly the roles assigned to the user (or group) directly.
    pub async fn set_roles(&self, holder: RoleHolder, roles: &[String]) -> Result<(), StoreError> {
        let (delete, insert, id) = match holder {
            RoleHolder::User(id) => (
                "DELETE FROM user_roles WHERE user_id = $1",
                "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                id,
            ),
            RoleHolder::Group(id) => (
                "DELETE FROM group_roles WHERE group_id = $1",
                "INSERT INTO group_roles (group_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                id,
            ),
        };
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(delete).bind(id).execute(&mut *tx).await?;
            for role in roles {
                sqlx::query(insert)
                    .bind(id)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Adds a role to users and groups named in the configuration, creating missing users and
    /// groups (JupyterHub's `load_roles`), in one transaction.
    pub async fn grant_config_role(
        &self,
        role: &str,
        users: &[String],
        groups: &[String],
    ) -> Result<(), StoreError> {
        let now = crate::store::to_micros(&hubfleet_types::now());
        dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for user in users {
                sqlx::query(
                    "INSERT INTO users (name, admin, created) VALUES ($1, FALSE, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(user.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO user_roles (user_id, role) SELECT id, $2 FROM users \
                     WHERE name = $1 ON CONFLICT DO NOTHING",
                )
                .bind(user.as_str())
                .bind(role)
                .execute(&mut *tx)
                .await?;
            }
            for group in groups {
                sqlx::query(
                    "INSERT INTO groups (name, properties) VALUES ($1, '{}') \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(group.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO group_roles (group_id, role) SELECT id, $2 FROM groups \
                     WHERE name = $1 ON CONFLICT DO NOTHING",
                )
                .bind(group.as_str())
                .bind(role)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Group names of each user, for a page of users, in one query.
    pub async fn groups_of_users(
        &self,
        user_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        self.pairs(
            "SELECT ug.user_id, g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
             WHERE ug.user_id IN",
            "ORDER BY ug.user_id, g.name",
            user_ids,
        )
        .await
    }

    /// Roles assigned directly to each user, in one query.
    pub async fn roles_of_users(
        &self,
        user_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        self.pairs(
            "SELECT user_id, role FROM user_roles WHERE user_id IN",
            "ORDER BY user_id, role",
            user_ids,
        )
        .await
    }

    /// Roles each user holds through their groups, in one query.
    pub async fn group_roles_of_users(
        &self,
        user_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        self.pairs(
            "SELECT DISTINCT ug.user_id, gr.role FROM user_groups ug \
             JOIN group_roles gr ON gr.group_id = ug.group_id WHERE ug.user_id IN",
            "ORDER BY ug.user_id, gr.role",
            user_ids,
        )
        .await
    }

    async fn members_of_groups(
        &self,
        group_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        self.pairs(
            "SELECT ug.group_id, u.name FROM user_groups ug JOIN users u ON u.id = ug.user_id \
             WHERE ug.group_id IN",
            "ORDER BY ug.group_id, u.name",
            group_ids,
        )
        .await
    }

    async fn roles_of_groups(
        &self,
        group_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        self.pairs(
            "SELECT group_id, role FROM group_roles WHERE group_id IN",
            "ORDER BY group_id, role",
            group_ids,
        )
        .await
    }

    /// Runs `<select> (<ids>) <order>` returning `(id, text)` pairs, grouped by id.
    async fn pairs(
        &self,
        select: &str,
        order: &str,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!("{select} ({}) {order}", id_list(1, ids.len()));
        let pairs = dispatch!(self, read, |pool| {
            let mut query = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await?
        });
        Ok(group_pairs(pairs))
    }
}

/// Who a role is assigned to in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleHolder {
    User(i64),
    Group(i64),
}
