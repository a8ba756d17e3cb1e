//! Server sharing (JupyterHub 5's `apihandlers/shares.py`): shares granting a user or group
//! scopes on one server, share codes that a person exchanges for a share on
//! `/hub/accept-share`, and the "shared with me" views of users and groups.
//!
//! Every scope a share grants is filtered to its server (`access:servers!server=alice/`), and
//! the caller must hold each one; a person holding a share gets its scopes added to their own
//! (see `identity.rs`), which is what lets the OAuth provider admit them to the server. Lists are
//! always in the paginated form. The default server is the empty last path segment
//! (`/shares/alice/`).

use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use hubfleet_core::scopes::{Resource, validate_scope};
use hubfleet_core::token::{generate_token, hash_token};
use hubfleet_store::{
    Group, Server, Share, ShareCode, ShareQuery, ShareWith, SharedServer, StoreError, User,
    filter_to_server,
};
use hubfleet_types::{ServerName, UserName, isoformat};
use serde_json::{Map, Value, json};

use super::{
    AppStateRef, Caller, Params, Target, json_object, models, only_keys, pagination, require,
    target_user,
};
use crate::HubError;
use crate::error::{ApiError, ApiResult};
use crate::identity::Identity;
use crate::state::AppState;

type PathParams = HashMap<String, String>;

/// JupyterHub's `ShareCode.default_expires_in`, and the bounds on `expires_in`.
const DEFAULT_CODE_SECONDS: i64 = 86_400;
const MIN_CODE_SECONDS: i64 = 60;
const MAX_CODE_SECONDS: i64 = 525_600 * 60;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(HubError::BadRequest(message.into()))
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError(HubError::NotFound(message.into()))
}

fn param<'a>(params: &'a PathParams, name: &str) -> &'a str {
    params.get(name).map(String::as_str).unwrap_or("")
}

fn opt_time(ts: Option<hubfleet_types::Timestamp>) -> Value {
    ts.map_or(Value::Null, |t| Value::String(isoformat(&t)))
}

/// The truncated server model of shares: owner, name, url, full_url, ready.
fn server_model(state: &AppState, server: &SharedServer) -> Value {
    let url = state.server_prefix(&server.owner, server.name.as_str());
    json!({
        "user": { "name": server.owner },
        "name": server.name.as_str(),
        "full_url": models::full_url(state, &url),
        "url": url,
        "ready": server.status == hubfleet_store::ServerStatus::Running,
    })
}

pub(crate) fn share_model(state: &AppState, share: &Share) -> Value {
    json!({
        "server": server_model(state, &share.server),
        "scopes": share.scopes,
        "user": share.user.as_ref().map(|name| json!({ "name": name })),
        "group": share.group.as_ref().map(|name| json!({ "name": name })),
        "kind": if share.group.is_some() { "group" } else { "user" },
        "created_at": isoformat(&share.created),
    })
}

fn code_model(state: &AppState, code: &ShareCode) -> Value {
    json!({
        "server": server_model(state, &code.server),
        "scopes": code.scopes,
        "id": format!("sc_{}", code.id),
        "created_at": isoformat(&code.created),
        "expires_at": opt_time(code.expires_at),
        "exchange_count": code.exchange_count,
        "last_exchanged_at": opt_time(code.last_exchanged_at),
    })
}

/// Share lists are always `{items, _pagination}`, with JupyterHub's default page size.
fn share_page(headers: &HeaderMap, query: &Params) -> Result<pagination::Page, ApiError> {
    let mut page = pagination::page(headers, query)?;
    if !page.wrapped && !query.contains_key("limit") {
        page.limit = pagination::DEFAULT_LIMIT;
    }
    page.wrapped = true;
    Ok(page)
}

/// The owner's server named in the path; 404 if it does not exist.
async fn owner_server(state: &AppState, owner: &Target, server: &str) -> Result<Server, ApiError> {
    let missing = || not_found(format!("No such server: {}/{server}", owner.user.name));
    let Ok(name) = ServerName::parse(server) else {
        return Err(missing());
    };
    state
        .store
        .get_server(owner.user.id, &name)
        .await?
        .ok_or_else(missing)
}

/// A user by name, if it exists (invalid names do not).
async fn find_user(state: &AppState, name: &str) -> Result<Option<User>, ApiError> {
    match UserName::parse(name) {
        Ok(name) => Ok(state.store.get_user(&name).await?),
        Err(_) => Ok(None),
    }
}

/// The scopes of a grant request, each filtered to the server: JupyterHub's
/// `Share._apply_filter` (400 for unknown scopes and for filters naming anything else).
/// Empty or absent means `access:servers` on the server.
fn requested_scopes(
    body: &Map<String, Value>,
    owner: &str,
    server: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let scopes = match body.get("scopes") {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => super::string_list(value, "scopes")?,
    };
    if scopes.is_empty() {
        return Ok(None);
    }
    let server_filter = format!("server={owner}/{server}");
    let mut filtered = Vec::with_capacity(scopes.len());
    for scope in &scopes {
        validate_scope(scope).map_err(|e| bad_request(format!("Invalid scope for share: {e}")))?;
        let (base, filter) = scope.split_once('!').unwrap_or((scope, ""));
        if matches!(base, "self" | "inherit") {
            return Err(bad_request(format!("{scope} cannot be shared")));
        }
        if !filter.is_empty() && filter != server_filter {
            return Err(bad_request(format!(
                "!{filter} not allowed on sharing {scope}, only !{server_filter}"
            )));
        }
        filtered.push(filter_to_server(scope, owner, server));
    }
    filtered.sort();
    filtered.dedup();
    Ok(Some(filtered))
}

/// Scopes to grant: what was asked for (or `access:servers`), every one held by the caller.
fn grantable_scopes(
    identity: &Identity,
    body: &Map<String, Value>,
    owner: &Target,
    server: &str,
) -> Result<Vec<String>, ApiError> {
    let owner_name = owner.user.name.as_str();
    let scopes = requested_scopes(body, owner_name, server)?
        .unwrap_or_else(|| vec![format!("access:servers!server={owner_name}/{server}")]);
    for scope in &scopes {
        let base = scope.split_once('!').map_or(scope.as_str(), |(b, _)| b);
        if !identity.scopes.allows(base, owner.server(server)) {
            return Err(ApiError(HubError::Refused(format!(
                "Do not have permission to grant share with scope {scope}"
            ))));
        }
    }
    Ok(scopes)
}

/// `user` or `group` of a grant or revoke request: exactly one, a string.
enum Recipient {
    User(String),
    Group(String),
}

fn recipient(body: &Map<String, Value>) -> Result<Recipient, ApiError> {
    let field = |key: &str| -> Result<Option<String>, ApiError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad_request(format!("{key} must be a string"))),
        }
    };
    match (field("user")?, field("group")?) {
        (Some(user), None) => Ok(Recipient::User(user)),
        (None, Some(group)) => Ok(Recipient::Group(group)),
        (Some(_), Some(_)) => Err(bad_request(
            "Expected exactly one of `user` or `group`, not both.",
        )),
        (None, None) => Err(bad_request("Specify exactly one of `user` or `group`")),
    }
}

fn json_response(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// What both share listings start with: the caller may read `{owner}`'s shares (of one server
/// when `{server_name}` is given); returns the page asked for and the rows it covers.
async fn listing(
    state: &AppStateRef,
    identity: &Identity,
    headers: &HeaderMap,
    query: &Params,
    params: &PathParams,
) -> Result<(pagination::Page, ShareQuery), ApiError> {
    let page = share_page(headers, query)?;
    let server = params.get("server_name").map(String::as_str);
    let owner = target_user(
        state,
        identity,
        param(params, "owner"),
        &["read:shares"],
        server,
    )
    .await?;
    let filter = match server {
        None => ShareQuery::Owner(owner.user.id),
        Some(server) => ShareQuery::Server(owner_server(state, &owner, server).await?.id),
    };
    Ok((page, filter))
}

/// `GET /shares/{owner}` and `GET /shares/{owner}/{server_name}`.
pub(super) async fn list(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
    Path(params): Path<PathParams>,
) -> ApiResult<Response> {
    let (page, filter) = listing(&state, &identity, &headers, &query, &params).await?;
    let (shares, total) = state
        .store
        .list_shares(filter, page.offset, page.limit)
        .await?;
    let items = shares.iter().map(|s| share_model(&state, s)).collect();
    Ok(pagination::respond(page, items, total, &headers, &uri))
}

/// What granting and revoking both start with: the caller may manage `{owner}`'s shares of
/// `{server_name}`, and the body names one recipient (plus, optionally, scopes).
async fn share_change(
    state: &AppStateRef,
    identity: &Identity,
    params: &PathParams,
    body: &[u8],
) -> Result<(Target, Map<String, Value>, Recipient), ApiError> {
    let owner = target_user(
        state,
        identity,
        param(params, "owner"),
        &["shares"],
        Some(param(params, "server_name")),
    )
    .await?;
    let body = json_object(body)?;
    only_keys(&body, &["scopes", "user", "group"])?;
    let recipient = recipient(&body)?;
    Ok((owner, body, recipient))
}

/// `POST /shares/{owner}/{server_name}`: grant (or extend) a share with a user or group.
pub(super) async fn grant(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let server = param(&params, "server_name");
    let (owner, body, recipient) = share_change(&state, &identity, &params, &body).await?;
    let scopes = grantable_scopes(&identity, &body, &owner, server)?;
    let record = owner_server(&state, &owner, server).await?;
    let with = match recipient {
        Recipient::User(name) => {
            let user = find_user(&state, &name).await?;
            let groups = match &user {
                Some(user) => state
                    .store
                    .groups_of_users(&[user.id])
                    .await?
                    .remove(&user.id)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let resource = Resource::User {
                name: &name,
                groups: &groups,
            };
            if !identity.scopes.allows("read:users:name", resource) {
                return Err(ApiError(HubError::Refused(
                    "Need scope 'read:users:name' to share with users by name".into(),
                )));
            }
            let user = user.ok_or_else(|| bad_request(format!("No such user: {name}")))?;
            ShareWith::User(user.id)
        }
        Recipient::Group(name) => {
            if !identity
                .scopes
                .allows("read:groups:name", Resource::Group { name: &name })
            {
                return Err(ApiError(HubError::Refused(
                    "Need scope 'read:groups:name' to share with groups by name".into(),
                )));
            }
            let group: Group = state
                .store
                .get_group(&name)
                .await?
                .ok_or_else(|| bad_request(format!("No such group: {name}")))?;
            ShareWith::Group(group.id)
        }
    };
    let share = state
        .store
        .grant_share(record.id, with, &scopes, hubfleet_types::now())
        .await?;
    tracing::info!(by = %identity.name(), server = %format!("{}/{server}", owner.user.name), scopes = ?share.scopes, "granted share");
    Ok(json_response(share_model(&state, &share)))
}

/// `PATCH /shares/{owner}/{server_name}`: revoke some (or all) scopes of one share. Answers the
/// remaining share, or `{}` when nothing remains or the user or group does not exist.
pub(super) async fn revoke(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let server = param(&params, "server_name");
    let (owner, body, recipient) = share_change(&state, &identity, &params, &body).await?;
    let scopes = requested_scopes(&body, owner.user.name.as_str(), server)?;
    let record = owner_server(&state, &owner, server).await?;
    let with = match recipient {
        Recipient::User(name) => find_user(&state, &name)
            .await?
            .map(|u| ShareWith::User(u.id)),
        Recipient::Group(name) => state
            .store
            .get_group(&name)
            .await?
            .map(|g| ShareWith::Group(g.id)),
    };
    let Some(with) = with else {
        return Ok(json_response(json!({})));
    };
    let left = state
        .store
        .revoke_share(record.id, with, scopes.as_deref())
        .await?;
    Ok(json_response(left.map_or_else(
        || json!({}),
        |share| share_model(&state, &share),
    )))
}

/// `DELETE /shares/{owner}/{server_name}`: revoke every share of the server.
pub(super) async fn revoke_all(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
) -> ApiResult<StatusCode> {
    let server = param(&params, "server_name");
    let owner = target_user(
        &state,
        &identity,
        param(&params, "owner"),
        &["shares"],
        Some(server),
    )
    .await?;
    let record = owner_server(&state, &owner, server).await?;
    let deleted = state.store.delete_server_shares(record.id).await?;
    tracing::info!(by = %identity.name(), server = %format!("{}/{server}", owner.user.name), deleted, "revoked all shares");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /share-codes/{owner}` and `GET /share-codes/{owner}/{server_name}`: unexpired codes.
pub(super) async fn list_codes(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
    Path(params): Path<PathParams>,
) -> ApiResult<Response> {
    let (page, filter) = listing(&state, &identity, &headers, &query, &params).await?;
    let (codes, total) = state
        .store
        .list_share_codes(filter, hubfleet_types::now(), page.offset, page.limit)
        .await?;
    let items = codes.iter().map(|c| code_model(&state, c)).collect();
    Ok(pagination::respond(page, items, total, &headers, &uri))
}

fn expires_in(body: &Map<String, Value>) -> Result<i64, ApiError> {
    let seconds = match body.get("expires_in") {
        None | Some(Value::Null) => return Ok(DEFAULT_CODE_SECONDS),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| bad_request("expires_in must be an integer number of seconds"))?,
        Some(_) => {
            return Err(bad_request(
                "expires_in must be an integer number of seconds",
            ));
        }
    };
    if !(MIN_CODE_SECONDS..=MAX_CODE_SECONDS).contains(&seconds) {
        return Err(bad_request(format!(
            "expires_in must be between {MIN_CODE_SECONDS} and {MAX_CODE_SECONDS} seconds"
        )));
    }
    Ok(seconds)
}

/// `POST /share-codes/{owner}/{server_name}`: issue a code. The code itself is in this response
/// only; the hub keeps its hash.
pub(super) async fn create_code(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let server = param(&params, "server_name");
    let owner = target_user(
        &state,
        &identity,
        param(&params, "owner"),
        &["shares"],
        Some(server),
    )
    .await?;
    let body = json_object(&body)?;
    only_keys(&body, &["scopes", "expires_in"])?;
    let seconds = expires_in(&body)?;
    let scopes = grantable_scopes(&identity, &body, &owner, server)?;
    let record = owner_server(&state, &owner, server).await?;
    let code = generate_token();
    let now = hubfleet_types::now();
    let stored = state
        .store
        .insert_share_code(
            record.id,
            &hash_token(&code),
            &scopes,
            now,
            Some(now + chrono::Duration::seconds(seconds)),
        )
        .await?;
    let mut model = code_model(&state, &stored);
    model["code"] = json!(code);
    let accept_url = format!("{}accept-share?code={code}", state.hub_prefix);
    model["full_accept_url"] = models::full_url(&state, &accept_url);
    model["accept_url"] = json!(accept_url);
    tracing::info!(by = %identity.name(), server = %format!("{}/{server}", owner.user.name), id = stored.id, "issued share code");
    Ok(json_response(model))
}

/// `DELETE /share-codes/{owner}/{server_name}`: revoke one code (`?code=` or `?id=sc_N`), or all.
pub(super) async fn delete_codes(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Query(query): Query<Params>,
    Path(params): Path<PathParams>,
) -> ApiResult<StatusCode> {
    let server = param(&params, "server_name");
    let owner = target_user(
        &state,
        &identity,
        param(&params, "owner"),
        &["shares"],
        Some(server),
    )
    .await?;
    let record = owner_server(&state, &owner, server).await?;
    let code = query.get("code").filter(|c| !c.is_empty());
    let id = query.get("id").filter(|c| !c.is_empty());
    if let Some(code) = code {
        let found = state
            .store
            .find_share_code(&hash_token(code), hubfleet_types::now())
            .await?
            .filter(|c| c.server.id == record.id)
            .ok_or_else(|| not_found("No matching code found"))?;
        state.store.delete_share_code(record.id, found.id).await?;
    } else if let Some(id) = id {
        let missing = || not_found(format!("No code found matching id={id}"));
        let number: i64 = id
            .strip_prefix("sc_")
            .and_then(|n| n.parse().ok())
            .ok_or_else(missing)?;
        match state.store.delete_share_code(record.id, number).await {
            Err(StoreError::NotFound) => return Err(missing()),
            other => other?,
        }
    } else {
        state.store.delete_server_share_codes(record.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /users/{name}/shared`: shares granted to the user directly or through their groups.
pub(super) async fn user_shared(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let page = share_page(&headers, &query)?;
    let target = target_user(&state, &identity, &name, &["read:users:shares"], None).await?;
    let (shares, total) = state
        .store
        .list_shares(
            ShareQuery::SharedWithUser(target.user.id),
            page.offset,
            page.limit,
        )
        .await?;
    let items = shares.iter().map(|s| share_model(&state, s)).collect();
    Ok(pagination::respond(page, items, total, &headers, &uri))
}

/// The share of `owner/server` with `with`, or 404 with `who` in the message.
async fn one_share(
    state: &AppState,
    with: ShareWith,
    who: &str,
    params: &PathParams,
) -> Result<Share, ApiError> {
    let owner = param(params, "owner");
    let server = param(params, "server_name");
    let missing = || not_found(format!("No such share for {who} on {owner}/{server}"));
    let Some(owner_user) = find_user(state, owner).await? else {
        return Err(missing());
    };
    let Ok(server_name) = ServerName::parse(server) else {
        return Err(missing());
    };
    let Some(record) = state.store.get_server(owner_user.id, &server_name).await? else {
        return Err(missing());
    };
    state
        .store
        .find_share(record.id, with)
        .await?
        .ok_or_else(missing)
}

/// `GET /users/{name}/shared/{owner}/{server_name}`.
pub(super) async fn user_share(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
) -> ApiResult<Response> {
    let name = param(&params, "name");
    let target = target_user(&state, &identity, name, &["read:users:shares"], None).await?;
    let who = format!("user {name}");
    let share = one_share(&state, ShareWith::User(target.user.id), &who, &params).await?;
    Ok(json_response(share_model(&state, &share)))
}

/// `DELETE /users/{name}/shared/{owner}/{server_name}`: leave a shared server.
pub(super) async fn leave_user_share(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
) -> ApiResult<StatusCode> {
    let name = param(&params, "name");
    let target = target_user(&state, &identity, name, &["users:shares"], None).await?;
    let who = format!("user {name}");
    let share = one_share(&state, ShareWith::User(target.user.id), &who, &params).await?;
    state.store.delete_share(share.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The group `name` after checking `scope` on it (as `groups.rs` does).
async fn target_group(
    state: &AppState,
    identity: &Identity,
    name: &str,
    scope: &str,
) -> Result<Group, ApiError> {
    if !identity.scopes.has(scope) {
        return Err(ApiError(HubError::Forbidden(scope.to_string())));
    }
    require(identity, &[scope], Resource::Group { name })?;
    state
        .store
        .get_group(name)
        .await?
        .ok_or_else(|| not_found(format!("No such group: {name}")))
}

/// `GET /groups/{name}/shared`.
pub(super) async fn group_shared(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let page = share_page(&headers, &query)?;
    let group = target_group(&state, &identity, &name, "read:groups:shares").await?;
    let (shares, total) = state
        .store
        .list_shares(
            ShareQuery::SharedWithGroup(group.id),
            page.offset,
            page.limit,
        )
        .await?;
    let items = shares.iter().map(|s| share_model(&state, s)).collect();
    Ok(pagination::respond(page, items, total, &headers, &uri))
}

/// `GET /groups/{name}/shared/{owner}/{server_name}`.
pub(super) async fn group_share(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
) -> ApiResult<Response> {
    let name = param(&params, "name");
    let group = target_group(&state, &identity, name, "read:groups:shares").await?;
    let who = format!("group {name}");
    let share = one_share(&state, ShareWith::Group(group.id), &who, &params).await?;
    Ok(json_response(share_model(&state, &share)))
}

/// `DELETE /groups/{name}/shared/{owner}/{server_name}`.
pub(super) async fn leave_group_share(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(params): Path<PathParams>,
) -> ApiResult<StatusCode> {
    let name = param(&params, "name");
    let group = target_group(&state, &identity, name, "groups:shares").await?;
    let who = format!("group {name}");
    let share = one_share(&state, ShareWith::Group(group.id), &who, &params).await?;
    state.store.delete_share(share.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
