//! Groups: list, create (singly and in bulk), read, delete, change members, set properties.

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use hubfleet_core::scopes::{Filter, Resource, Targets};
use hubfleet_store::{Group, StoreError};

use super::{
    AppStateRef, Caller, Params, json_object, models, only_keys, pagination, require, string_list,
};
use crate::HubError;
use crate::error::{ApiError, ApiResult};
use crate::identity::Identity;
use crate::state::AppState;

/// Group names: non-empty, no `/` (they appear in URL paths), at most 255 bytes.
fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 255 || name.contains('/') || name.trim() != name {
        return Err(ApiError(HubError::BadRequest(format!(
            "Invalid group name {name:?}"
        ))));
    }
    Ok(())
}

/// The group `name` after checking `scopes` on it; unknown groups are 404 to holders of the
/// scope and 403 to others.
async fn target_group(
    state: &AppState,
    identity: &Identity,
    name: &str,
    scopes: &[&str],
) -> Result<Group, ApiError> {
    if !scopes.iter().any(|s| identity.scopes.has(s)) {
        return Err(ApiError(HubError::Forbidden(scopes.join(", "))));
    }
    require(identity, scopes, Resource::Group { name })?;
    state
        .store
        .get_group(name)
        .await?
        .ok_or_else(|| ApiError(HubError::NotFound(format!("No such group: {name}"))))
}

fn user_not_found(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError(HubError::BadRequest("No such user in the list".into())),
        other => other.into(),
    }
}

pub(super) async fn list(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
    let page = pagination::page(&headers, &query)?;
    let only = match identity.scopes.targets("list:groups") {
        None => return Err(ApiError(HubError::Forbidden("list:groups".into()))),
        Some(Targets::All) => None,
        Some(Targets::Only(filters)) => {
            // Only group filters make sense for listing groups (JupyterHub: else 403).
            let mut names = Vec::new();
            for filter in filters {
                match filter {
                    Filter::Group(name) => names.push(name.clone()),
                    _ => return Err(ApiError(HubError::Forbidden("list:groups".into()))),
                }
            }
            Some(names)
        }
    };
    let (groups, total) = state
        .store
        .list_groups(page.offset, page.limit, only.as_deref())
        .await?;
    let items = groups
        .iter()
        .map(|g| models::group_model(&identity, g))
        .collect();
    Ok(pagination::respond(page, items, total, &headers, &uri))
}

/// `POST /groups` with `{groups: [...], users?: [...]}`: all or nothing, 409 if any exists.
pub(super) async fn create_many(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require(&identity, &["admin:groups"], Resource::Hub)?;
    let body = json_object(&body)?;
    only_keys(&body, &["groups", "users"])?;
    let names = string_list(
        body.get("groups").unwrap_or(&serde_json::Value::Null),
        "groups",
    )?;
    if names.is_empty() {
        return Err(ApiError(HubError::BadRequest(
            "Must specify at least one group to create".into(),
        )));
    }
    for name in &names {
        check_name(name)?;
    }
    let users = match body.get("users") {
        None => Vec::new(),
        Some(users) => string_list(users, "users")?,
    };
    let groups = state
        .store
        .create_groups(&names, &users)
        .await
        .map_err(user_not_found)?;
    let models: Vec<_> = groups
        .iter()
        .map(|g| models::group_model(&identity, g))
        .collect();
    Ok((StatusCode::CREATED, axum::Json(models)).into_response())
}

pub(super) async fn get_one(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let group = target_group(
        &state,
        &identity,
        &name,
        &["read:groups", "read:groups:name", "read:roles:groups"],
    )
    .await?;
    Ok(axum::Json(models::group_model(&identity, &group)).into_response())
}

pub(super) async fn create_one(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require(&identity, &["admin:groups"], Resource::Hub)?;
    check_name(&name)?;
    let body = json_object(&body)?;
    only_keys(&body, &["users"])?;
    let users = match body.get("users") {
        None => Vec::new(),
        Some(users) => string_list(users, "users")?,
    };
    let mut groups = state
        .store
        .create_groups(std::slice::from_ref(&name), &users)
        .await
        .map_err(user_not_found)?;
    let group = groups.remove(0);
    Ok((
        StatusCode::CREATED,
        axum::Json(models::group_model(&identity, &group)),
    )
        .into_response())
}

pub(super) async fn delete(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let group = target_group(&state, &identity, &name, &["delete:groups"]).await?;
    state.store.delete_group(group.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn add_members(
    state: State<AppStateRef>,
    caller: Caller,
    path: Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    change_members(state, caller, path, body, true).await
}

pub(super) async fn remove_members(
    state: State<AppStateRef>,
    caller: Caller,
    path: Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    change_members(state, caller, path, body, false).await
}

async fn change_members(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
    add: bool,
) -> ApiResult<Response> {
    let group = target_group(&state, &identity, &name, &["groups"]).await?;
    let body = json_object(&body)?;
    only_keys(&body, &["users"])?;
    let users = string_list(
        body.get("users").unwrap_or(&serde_json::Value::Null),
        "users",
    )?;
    state
        .store
        .change_group_members(group.id, &users, add)
        .await
        .map_err(user_not_found)?;
    let group = target_group(&state, &identity, &name, &["groups"]).await?;
    Ok(axum::Json(models::group_model(&identity, &group)).into_response())
}

pub(super) async fn set_properties(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let group = target_group(&state, &identity, &name, &["groups"]).await?;
    let properties = serde_json::Value::Object(json_object(&body)?);
    state
        .store
        .set_group_properties(group.id, &properties)
        .await?;
    let group = target_group(&state, &identity, &name, &["groups"]).await?;
    Ok(axum::Json(models::group_model(&identity, &group)).into_response())
}
