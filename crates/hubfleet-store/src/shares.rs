//! Server sharing (JupyterHub 5): shares that grant a user or a group scopes on one server, and
//! share codes, stored only as hashes, that a person exchanges for a share.
//!
//! A share's scopes are stored filtered to its server (`access:servers!server=alice/`); they are
//! re-filtered on every read with the server's current owner and name, so renaming a user keeps
//! the share pointing at the same server (JupyterHub's `Share.scopes` does the same). Lists page
//! in SQL, ordered by id; expired share codes are never returned.

use hubfleet_types::{ServerName, Timestamp};

use crate::error::StoreError;
use crate::model::ServerStatus;
use crate::store::{Columns, Store, WritePool, dispatch, to_json_text, to_micros};

/// Who a share is granted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareWith {
    /// A user id.
    User(i64),
    /// A group id.
    Group(i64),
}

impl ShareWith {
    fn column(self) -> (&'static str, i64) {
        match self {
            ShareWith::User(id) => ("user_id", id),
            ShareWith::Group(id) => ("group_id", id),
        }
    }
}

/// Which shares a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareQuery {
    /// Every server of this owner (a user id).
    Owner(i64),
    /// One server (a server id).
    Server(i64),
    /// Shares granted to this user directly or through any of their groups.
    SharedWithUser(i64),
    /// Shares granted to this group.
    SharedWithGroup(i64),
}

impl ShareQuery {
    /// The SQL condition, with the id as `$1`.
    fn condition(self, table: &str) -> String {
        match self {
            ShareQuery::Owner(_) => "s.user_id = $1".to_string(),
            ShareQuery::Server(_) => format!("{table}.server_id = $1"),
            ShareQuery::SharedWithUser(_) => format!(
                "({table}.user_id = $1 OR {table}.group_id IN \
                 (SELECT group_id FROM user_groups WHERE user_id = $1))"
            ),
            ShareQuery::SharedWithGroup(_) => format!("{table}.group_id = $1"),
        }
    }

    fn id(self) -> i64 {
        match self {
            ShareQuery::Owner(id)
            | ShareQuery::Server(id)
            | ShareQuery::SharedWithUser(id)
            | ShareQuery::SharedWithGroup(id) => id,
        }
    }
}

/// The server a share or share code is for, as the share models show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedServer {
    pub id: i64,
    pub owner: String,
    pub name: ServerName,
    pub status: ServerStatus,
}

/// A granted share.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub id: i64,
    pub server: SharedServer,
    /// Exactly one of `user` and `group` is set (names).
    pub user: Option<String>,
    pub group: Option<String>,
    /// Sorted, each filtered to the server.
    pub scopes: Vec<String>,
    pub created: Timestamp,
}

/// A share code. Carries no hash, so the derived `Debug` is safe.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareCode {
    pub id: i64,
    pub server: SharedServer,
    pub scopes: Vec<String>,
    pub created: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub exchange_count: i64,
    pub last_exchanged_at: Option<Timestamp>,
}

/// `scope` with its filter replaced by `!server=<owner>/<server>`.
pub fn filter_to_server(scope: &str, owner: &str, server: &str) -> String {
    let base = scope.split_once('!').map_or(scope, |(base, _)| base);
    format!("{base}!server={owner}/{server}")
}

fn server_from_row(row: &impl Columns) -> Result<SharedServer, StoreError> {
    let name = row.text("server_name")?;
    let status = row.text("server_status")?;
    Ok(SharedServer {
        id: row.int("server_id")?,
        owner: row.text("owner_name")?,
        name: ServerName::parse(&name)
            .map_err(|err| StoreError::CorruptRow(format!("servers.name: {err}")))?,
        status: ServerStatus::parse(&status)
            .ok_or_else(|| StoreError::CorruptRow(format!("servers.status: {status:?}")))?,
    })
}

fn refiltered(scopes: Vec<String>, server: &SharedServer) -> Vec<String> {
    let mut scopes: Vec<String> = scopes
        .iter()
        .map(|s| filter_to_server(s, &server.owner, server.name.as_str()))
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

fn share_from_row(row: &impl Columns) -> Result<Share, StoreError> {
    let server = server_from_row(row)?;
    Ok(Share {
        id: row.int("id")?,
        scopes: refiltered(row.json("scopes")?, &server),
        server,
        user: row.opt_text("user_name")?,
        group: row.opt_text("group_name")?,
        created: row.timestamp("created")?,
    })
}

fn code_from_row(row: &impl Columns) -> Result<ShareCode, StoreError> {
    let server = server_from_row(row)?;
    Ok(ShareCode {
        id: row.int("id")?,
        scopes: refiltered(row.json("scopes")?, &server),
        server,
        created: row.timestamp("created")?,
        expires_at: row.opt_timestamp("expires_at")?,
        exchange_count: row.int("exchange_count")?,
        last_exchanged_at: row.opt_timestamp("last_exchanged_at")?,
    })
}

const SHARE_SELECT: &str = "SELECT sh.id, sh.server_id, sh.scopes, sh.created, \
     o.name AS owner_name, s.name AS server_name, s.status AS server_status, \
     u.name AS user_name, g.name AS group_name \
     FROM shares sh JOIN servers s ON s.id = sh.server_id JOIN users o ON o.id = s.user_id \
     LEFT JOIN users u ON u.id = sh.user_id LEFT JOIN groups g ON g.id = sh.group_id";

const CODE_SELECT: &str = "SELECT sh.id, sh.server_id, sh.scopes, sh.created, sh.expires_at, \
     sh.exchange_count, sh.last_exchanged_at, \
     o.name AS owner_name, s.name AS server_name, s.status AS server_status \
     FROM share_codes sh JOIN servers s ON s.id = sh.server_id JOIN users o ON o.id = s.user_id";

impl Store {
    /// Grants `scopes` on a server, adding them to an existing share for the same user or group
    /// (JupyterHub's `Share.grant`). [`StoreError::NotFound`] if the server, user or group is gone.
    pub async fn grant_share(
        &self,
        server_id: i64,
        with: ShareWith,
        scopes: &[String],
        now: Timestamp,
    ) -> Result<Share, StoreError> {
        let (column, target) = with.column();
        let find = format!("SELECT id, scopes FROM shares WHERE server_id = $1 AND {column} = $2");
        let insert = format!(
            "INSERT INTO shares (server_id, {column}, scopes, created) VALUES ($1, $2, $3, $4) \
             RETURNING id"
        );
        let id = dispatch!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let existing: Option<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(find.clone()))
                .bind(server_id)
                .bind(target)
                .fetch_optional(&mut *tx)
                .await?;
            let id = match existing {
                Some((id, stored)) => {
                    let mut merged: Vec<String> = serde_json::from_str(&stored)
                        .map_err(|err| StoreError::CorruptRow(format!("shares.scopes: {err}")))?;
                    merged.extend(scopes.iter().cloned());
                    merged.sort();
                    merged.dedup();
                    sqlx::query("UPDATE shares SET scopes = $1 WHERE id = $2")
                        .bind(to_json_text(&merged)?)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    id
                }
                None => {
                    let mut sorted = scopes.to_vec();
                    sorted.sort();
                    sorted.dedup();
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(insert.clone()))
                        .bind(server_id)
                        .bind(target)
                        .bind(to_json_text(&sorted)?)
                        .bind(to_micros(&now))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|err| match StoreError::from(err) {
                            StoreError::Conflict(_) => StoreError::NotFound,
                            other => other,
                        })?
                }
            };
            tx.commit().await?;
            id
        });
        self.get_share_by_id(id).await?.ok_or(StoreError::NotFound)
    }

    /// Revokes `scopes` (all of them when `None`) from a share; deletes it when none remain
    /// (JupyterHub's `Share.revoke`). Returns what is left, `None` if nothing is.
    pub async fn revoke_share(
        &self,
        server_id: i64,
        with: ShareWith,
        scopes: Option<&[String]>,
    ) -> Result<Option<Share>, StoreError> {
        let Some(share) = self.find_share(server_id, with).await? else {
            return Ok(None);
        };
        let remaining: Vec<String> = match scopes {
            None => Vec::new(),
            Some(revoked) => share
                .scopes
                .iter()
                .filter(|s| !revoked.contains(s))
                .cloned()
                .collect(),
        };
        if remaining == share.scopes {
            return Ok(Some(share));
        }
        dispatch!(self, write, |pool| {
            if remaining.is_empty() {
                sqlx::query("DELETE FROM shares WHERE id = $1")
                    .bind(share.id)
                    .execute(pool)
                    .await?;
            } else {
                sqlx::query("UPDATE shares SET scopes = $1 WHERE id = $2")
                    .bind(to_json_text(&remaining)?)
                    .bind(share.id)
                    .execute(pool)
                    .await?;
            }
            Ok::<_, StoreError>(())
        })?;
        if remaining.is_empty() {
            return Ok(None);
        }
        self.get_share_by_id(share.id).await
    }

    /// The share of a server with one user or group.
    pub async fn find_share(
        &self,
        server_id: i64,
        with: ShareWith,
    ) -> Result<Option<Share>, StoreError> {
        let (column, target) = with.column();
        let sql = format!("{SHARE_SELECT} WHERE sh.server_id = $1 AND sh.{column} = $2");
        dispatch!(self, read, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(server_id)
                .bind(target)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(share_from_row)
                .transpose()
        })
    }

    async fn get_share_by_id(&self, id: i64) -> Result<Option<Share>, StoreError> {
        let sql = format!("{SHARE_SELECT} WHERE sh.id = $1");
        dispatch!(self, read, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(share_from_row)
                .transpose()
        })
    }

    /// Deletes one share by id. [`StoreError::NotFound`] if it is already gone.
    pub async fn delete_share(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("DELETE FROM shares WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            crate::users::expect_one(done.rows_affected())
        })
    }

    /// Deletes every share of a server. Returns how many.
    pub async fn delete_server_shares(&self, server_id: i64) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            Ok(sqlx::query("DELETE FROM shares WHERE server_id = $1")
                .bind(server_id)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// One page of shares, ordered by id, and the total count.
    pub async fn list_shares(
        &self,
        query: ShareQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Share>, i64), StoreError> {
        let condition = query.condition("sh");
        let page_sql =
            format!("{SHARE_SELECT} WHERE {condition} ORDER BY sh.id LIMIT $2 OFFSET $3");
        let count_sql = format!(
            "SELECT COUNT(*) FROM shares sh JOIN servers s ON s.id = sh.server_id WHERE {condition}"
        );
        dispatch!(self, read, |pool| {
            let shares = sqlx::query(sqlx::AssertSqlSafe(page_sql))
                .bind(query.id())
                .bind(limit.max(0))
                .bind(offset.max(0))
                .fetch_all(pool)
                .await?
                .iter()
                .map(share_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))
                .bind(query.id())
                .fetch_one(pool)
                .await?;
            Ok((shares, total))
        })
    }

    /// Every scope a user holds through shares, granted to them or to any of their groups
    /// (JupyterHub adds these to the user's own scopes).
    pub async fn share_scopes_of_user(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "{SHARE_SELECT} WHERE {}",
            ShareQuery::SharedWithUser(user_id).condition("sh")
        );
        let shares = dispatch!(self, read, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user_id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(share_from_row)
                .collect::<Result<Vec<_>, StoreError>>()?
        });
        let mut scopes: Vec<String> = shares.into_iter().flat_map(|s| s.scopes).collect();
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    /// Stores a share code by the hash of its secret.
    pub async fn insert_share_code(
        &self,
        server_id: i64,
        hash: &str,
        scopes: &[String],
        created: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Result<ShareCode, StoreError> {
        let mut sorted = scopes.to_vec();
        sorted.sort();
        sorted.dedup();
        let scopes = to_json_text(&sorted)?;
        let id = dispatch!(self, write, |pool| {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO share_codes (server_id, hash, scopes, created, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(server_id)
            .bind(hash)
            .bind(scopes)
            .bind(to_micros(&created))
            .bind(expires_at.as_ref().map(to_micros))
            .fetch_one(pool)
            .await?
        });
        let sql = format!("{CODE_SELECT} WHERE sh.id = $1");
        dispatch!(self, read, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(code_from_row)
                .transpose()?
                .ok_or(StoreError::NotFound)
        })
    }

    /// Looks a share code up by hash; expired codes are treated as absent.
    pub async fn find_share_code(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<ShareCode>, StoreError> {
        let sql = format!(
            "{CODE_SELECT} WHERE sh.hash = $1 AND (sh.expires_at IS NULL OR sh.expires_at > $2)"
        );
        dispatch!(self, read, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(hash)
                .bind(to_micros(&now))
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(code_from_row)
                .transpose()
        })
    }

    /// One page of unexpired share codes of an owner ([`ShareQuery::Owner`]) or a server
    /// ([`ShareQuery::Server`]), ordered by id, and the total count.
    pub async fn list_share_codes(
        &self,
        query: ShareQuery,
        now: Timestamp,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ShareCode>, i64), StoreError> {
        let condition = format!(
            "{} AND (sh.expires_at IS NULL OR sh.expires_at > $2)",
            query.condition("sh")
        );
        let page_sql = format!("{CODE_SELECT} WHERE {condition} ORDER BY sh.id LIMIT $3 OFFSET $4");
        let count_sql = format!(
            "SELECT COUNT(*) FROM share_codes sh JOIN servers s ON s.id = sh.server_id \
             WHERE {condition}"
        );
        let now = to_micros(&now);
        dispatch!(self, read, |pool| {
            let codes = sqlx::query(sqlx::AssertSqlSafe(page_sql))
                .bind(query.id())
                .bind(now)
                .bind(limit.max(0))
                .bind(offset.max(0))
                .fetch_all(pool)
                .await?
                .iter()
                .map(code_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))
                .bind(query.id())
                .bind(now)
                .fetch_one(pool)
                .await?;
            Ok((codes, total))
        })
    }

    /// Deletes one share code of a server by id. [`StoreError::NotFound`] if there is none.
    pub async fn delete_share_code(&self, server_id: i64, id: i64) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query("DELETE FROM share_codes WHERE id = $1 AND server_id = $2")
                .bind(id)
                .bind(server_id)
                .execute(pool)
                .await?;
            crate::users::expect_one(done.rows_affected())
        })
    }

    /// Deletes every share code of a server. Returns how many.
    pub async fn delete_server_share_codes(&self, server_id: i64) -> Result<u64, StoreError> {
        dispatch!(self, write, |pool| {
            Ok(sqlx::query("DELETE FROM share_codes WHERE server_id = $1")
                .bind(server_id)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// Exchanges a share code for a share with `user_id` (JupyterHub's `ShareCode.exchange`):
    /// counts the exchange and grants the code's scopes. Codes may be exchanged more than once
    /// until they expire.
    pub async fn exchange_share_code(
        &self,
        code: &ShareCode,
        user_id: i64,
        now: Timestamp,
    ) -> Result<Share, StoreError> {
        dispatch!(self, write, |pool| {
            let done = sqlx::query(
                "UPDATE share_codes SET exchange_count = exchange_count + 1, \
                 last_exchanged_at = $1 WHERE id = $2",
            )
            .bind(to_micros(&now))
            .bind(code.id)
            .execute(pool)
            .await?;
            crate::users::expect_one(done.rows_affected())
        })?;
        self.grant_share(code.server.id, ShareWith::User(user_id), &code.scopes, now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_replaced_by_the_server_filter() {
        assert_eq!(
            filter_to_server("access:servers!server=old/", "alice", ""),
            "access:servers!server=alice/"
        );
        assert_eq!(
            filter_to_server("read:servers", "alice", "gpu"),
            "read:servers!server=alice/gpu"
        );
    }
}
