//! Users: identify (`GET /user`), list, create (singly and in bulk), read, modify, delete, and
//! activity reports from single-user servers.

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use hubfleet_core::scopes::{Filter, Resource, Targets};
use hubfleet_store::{RoleHolder, ServerStatus, UserQuery, UserSort, UserState, Visibility};
use hubfleet_types::{ServerName, UserName};

use super::{
    AppStateRef, Caller, Params, json_body, json_object, missing_user, models, only_keys,
    pagination, require, string_list, target_user,
};
use crate::HubError;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Identity, Principal};
use crate::lifecycle;

const READ_USER_SCOPES: &[&str] = &[
    "read:users",
    "read:users:name",
    "read:servers",
    "read:users:groups",
    "read:users:activity",
    "read:roles:users",
];

fn truthy(query: &Params, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false" | "False" | "no"))
}

pub(super) async fn whoami(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
) -> ApiResult<Response> {
    let model = models::identity_model(&state, &identity).await?;
    Ok(axum::Json(model).into_response())
}

/// Which users a filtered `list:users` covers, for the SQL query.
fn visibility(identity: &Identity) -> Option<Visibility> {
    match identity.scopes.targets("list:users")? {
        Targets::All => None,
        Targets::Only(filters) => {
            let mut visible = Visibility::default();
            for filter in filters {
                match filter {
                    Filter::User(name) | Filter::Server { user: name, .. } => {
                        visible.names.push(name.clone());
                    }
                    Filter::Group(group) => visible.groups.push(group.clone()),
                    Filter::Service(_) => {}
                }
            }
            Some(visible)
        }
    }
}

pub(super) async fn list(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
    if !identity.scopes.has("list:users") {
        return Err(ApiError(HubError::Forbidden("list:users".into())));
    }
    let page = pagination::page(&headers, &query)?;
    let user_state = match query.get("state").map(String::as_str) {
        None | Some("") => None,
        Some("active") => Some(UserState::Active),
        Some("ready") => Some(UserState::Ready),
        Some("inactive") => Some(UserState::Inactive),
        Some(other) => {
            return Err(ApiError(HubError::BadRequest(format!(
                "Unrecognized state filter: {other:?}; use active, ready or inactive"
            ))));
        }
    };
    let raw_sort = query.get("sort").map(String::as_str).unwrap_or("id");
    let (descending, sort_key) = match raw_sort.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, raw_sort),
    };
    let sort = match sort_key {
        "id" => UserSort::Id,
        "name" => UserSort::Name,
        "last_activity" => UserSort::LastActivity,
        other => {
            return Err(ApiError(HubError::BadRequest(format!(
                "sort must be one of id, name, last_activity (optionally with a leading -), got {other:?}"
            ))));
        }
    };
    let user_query = UserQuery {
        state: user_state,
        name_filter: query.get("name_filter").filter(|f| !f.is_empty()).cloned(),
        sort,
        descending,
        visible: visibility(&identity),
        offset: page.offset,
        limit: page.limit,
    };
    // Two statements per page: the users (with the total, only when the page is wrapped), then
    // everything their models show.
    let (users, total) = state
        .store
        .query_user_page(&user_query, page.wrapped)
        .await?;
    let include_stopped = truthy(&query, "include_stopped_servers");
    let details = state.store.user_details(users, include_stopped).await?;
    let items = models::detailed_user_models(&state, &identity, &details, include_stopped);
    Ok(pagination::respond(
        page,
        items,
        total.unwrap_or_default(),
        &headers,
        &uri,
    ))
}

fn parse_names(raw: &[String]) -> Result<Vec<UserName>, ApiError> {
    raw.iter()
        .map(|name| {
            UserName::parse(name).map_err(|e| {
                ApiError(HubError::BadRequest(format!(
                    "Invalid username {name:?}: {e}"
                )))
            })
        })
        .collect()
}

/// Only admins may make admins (JupyterHub checks the requester, not just the scope).
fn may_grant_admin(identity: &Identity) -> bool {
    match &identity.principal {
        Principal::User(user) => user.admin,
        Principal::Service(service) => service.admin,
    }
}

fn admin_flag(body: &serde_json::Map<String, serde_json::Value>) -> Result<bool, ApiError> {
    match body.get("admin") {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(admin)) => Ok(*admin),
        Some(_) => Err(ApiError(HubError::BadRequest(
            "admin must be a boolean".into(),
        ))),
    }
}

/// `POST /users`: bulk creation in one transaction; existing names are skipped, and if all
/// exist the answer is 409.
pub(super) async fn create_many(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require(&identity, &["admin:users"], Resource::Hub)?;
    let body = json_object(&body)?;
    only_keys(&body, &["usernames", "admin"])?;
    let raw = string_list(
        body.get("usernames").unwrap_or(&serde_json::Value::Null),
        "usernames",
    )?;
    let admin = admin_flag(&body)?;
    if admin && !may_grant_admin(&identity) {
        return Err(ApiError(HubError::Refused(
            "Only admins can grant admin permissions".into(),
        )));
    }
    let mut names = parse_names(&raw)?;
    names.dedup();
    if names.is_empty() {
        return Err(ApiError(HubError::BadRequest(
            "Must specify at least one user to create".into(),
        )));
    }
    let created = state.store.create_users(&names, admin).await?;
    if created.is_empty() {
        return Err(ApiError(HubError::Conflict(
            "All specified users already exist".into(),
        )));
    }
    let models = models::user_models(&state, &identity, &created, false).await?;
    Ok((StatusCode::CREATED, axum::Json(models)).into_response())
}

pub(super) async fn get_one(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Query(query): Query<Params>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let include_stopped = truthy(&query, "include_stopped_servers");
    // One query for the user and everything its model shows; the access checks are
    // `target_user`'s.
    let details = match UserName::parse(&name) {
        Ok(user_name) => {
            state
                .store
                .user_details_by_name(&user_name, include_stopped)
                .await?
        }
        Err(_) => None,
    };
    let Some(details) = details else {
        return Err(missing_user(&identity, &name, READ_USER_SCOPES));
    };
    let resource = Resource::User {
        name: details.user.name.as_str(),
        groups: &details.groups,
    };
    require(&identity, READ_USER_SCOPES, resource)?;
    let mut models = models::detailed_user_models(
        &state,
        &identity,
        std::slice::from_ref(&details),
        include_stopped,
    );
    Ok(axum::Json(models.remove(0)).into_response())
}

pub(super) async fn create_one(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require(&identity, &["admin:users"], Resource::Hub)?;
    let body = json_object(&body)?;
    let admin = admin_flag(&body)?;
    if admin && !may_grant_admin(&identity) {
        return Err(ApiError(HubError::Refused(
            "Only admins can grant admin permissions".into(),
        )));
    }
    let name = parse_names(&[name])?.remove(0);
    let user = state.store.create_user(&name, admin).await?;
    let mut models = models::user_models(&state, &identity, &[user], false).await?;
    Ok((StatusCode::CREATED, axum::Json(models.remove(0))).into_response())
}

pub(super) async fn patch(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["admin:users"], None).await?;
    let body = json_object(&body)?;
    only_keys(&body, &["name", "admin", "groups", "roles", "auth_state"])?;
    // Validate everything before changing anything.
    let new_name = match body.get("name") {
        None => None,
        Some(serde_json::Value::String(raw)) => {
            Some(parse_names(std::slice::from_ref(raw))?.remove(0))
        }
        Some(_) => {
            return Err(ApiError(HubError::BadRequest(
                "name must be a string".into(),
            )));
        }
    };
    let admin = match body.get("admin") {
        None => None,
        Some(serde_json::Value::Bool(admin)) => Some(*admin),
        Some(_) => {
            return Err(ApiError(HubError::BadRequest(
                "admin must be a boolean".into(),
            )));
        }
    };
    if admin == Some(true) && !target.user.admin && !may_grant_admin(&identity) {
        return Err(ApiError(HubError::Refused(
            "Only admins can grant admin permissions".into(),
        )));
    }
    let groups = body
        .get("groups")
        .map(|v| string_list(v, "groups"))
        .transpose()?;
    let roles = body
        .get("roles")
        .map(|v| string_list(v, "roles"))
        .transpose()?;
    if let Some(roles) = &roles {
        let known = crate::identity::role_names(&state);
        if let Some(unknown) = roles.iter().find(|r| !known.contains(r)) {
            return Err(ApiError(HubError::BadRequest(format!(
                "Role {unknown} does not exist"
            ))));
        }
    }
    let user_id = target.user.id;
    if let Some(new_name) = &new_name
        && new_name != &target.user.name
    {
        state
            .store
            .rename_user(user_id, new_name)
            .await
            .map_err(|e| match e {
                hubfleet_store::StoreError::Conflict(_) => ApiError(HubError::BadRequest(format!(
                    "User {new_name} already exists, username must be unique"
                ))),
                other => other.into(),
            })?;
    }
    if let Some(admin) = admin {
        state.store.set_user_admin(user_id, admin).await?;
    }
    if let Some(groups) = groups {
        state.store.set_user_groups(user_id, &groups).await?;
    }
    if let Some(mut roles) = roles {
        // `user` and `admin` follow from being a user and the admin flag; only others are stored.
        roles.retain(|r| r != "user" && r != "admin");
        state
            .store
            .set_roles(RoleHolder::User(user_id), &roles)
            .await?;
    }
    let user = state
        .store
        .get_user_by_id(user_id)
        .await?
        .ok_or_else(|| ApiError(HubError::NotFound(format!("No such user: {name}"))))?;
    let mut models = models::user_models(&state, &identity, &[user], false).await?;
    Ok(axum::Json(models.remove(0)).into_response())
}

pub(super) async fn delete(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["delete:users"], None).await?;
    if identity.user().is_some_and(|me| me.id == target.user.id) {
        return Err(ApiError(HubError::BadRequest(
            "Cannot delete yourself!".into(),
        )));
    }
    let servers = state.store.list_user_servers(target.user.id).await?;
    if servers.iter().any(|s| s.status == ServerStatus::Stopping) {
        return Err(ApiError(HubError::BadRequest(format!(
            "{name}'s server is in the process of stopping, please wait."
        ))));
    }
    for server in servers.iter().filter(|s| s.status != ServerStatus::Stopped) {
        lifecycle::stop_server(&state, &target.user, &server.name).await?;
    }
    state.store.delete_user(target.user.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{name}/activity`, sent by single-user servers every few minutes.
pub(super) async fn activity(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["users:activity"], None).await?;
    let user = target.user;
    let body = json_body(&body)?.unwrap_or(serde_json::Value::Null);
    let now = hubfleet_types::now();
    let parse = |value: &serde_json::Value| -> Result<hubfleet_types::Timestamp, ApiError> {
        let text = value.as_str().ok_or_else(|| {
            HubError::BadRequest("last_activity must be an ISO 8601 string".into())
        })?;
        let ts = chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|_| HubError::BadRequest(format!("invalid timestamp {text:?}")))?
            .with_timezone(&chrono::Utc);
        if ts > now + chrono::Duration::minutes(59) {
            return Err(ApiError(HubError::BadRequest(format!(
                "timestamp {text:?} is in the future"
            ))));
        }
        Ok(ts)
    };
    let user_activity = body.get("last_activity");
    let servers = body.get("servers").and_then(|s| s.as_object());
    if user_activity.is_none() && servers.is_none() {
        return Err(ApiError(HubError::BadRequest(
            "body must have last_activity or servers".into(),
        )));
    }
    if let Some(value) = user_activity {
        state
            .store
            .touch_user_activity(user.id, parse(value)?)
            .await?;
    }
    for (server_name, info) in servers.into_iter().flatten() {
        let name =
            ServerName::parse(server_name).map_err(|e| HubError::BadRequest(e.to_string()))?;
        let Some(server) = state.store.get_server(user.id, &name).await? else {
            return Err(ApiError(HubError::BadRequest(format!(
                "no such server {server_name:?} for {}",
                user.name
            ))));
        };
        if let Some(value) = info.get("last_activity") {
            let ts = parse(value)?;
            state.store.touch_server_activity(server.id, ts).await?;
            state.store.touch_user_activity(user.id, ts).await?;
        }
    }
    Ok(StatusCode::OK.into_response())
}
