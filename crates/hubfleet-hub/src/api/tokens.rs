//! A user's API tokens: list, create (shown once, stored as a hash), read and revoke. Ids are
//! JupyterHub's `a<number>`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hubfleet_core::scopes::{Owner, ScopeSet, validate_scope};
use hubfleet_core::token::{generate_token, hash_token};
use hubfleet_store::{NewToken, TokenOwner, TokenRecord};
use serde_json::Value;

use super::{AppStateRef, Caller, json_object, models, only_keys, string_list, target_user};
use crate::HubError;
use crate::error::{ApiError, ApiResult};
use crate::identity::{self, Principal};

fn parse_id(raw: &str) -> Option<i64> {
    raw.strip_prefix('a')?.parse().ok()
}

/// The user's token `raw_id`, or 404; expired tokens count as absent.
async fn find(
    state: &crate::state::AppState,
    user_id: i64,
    raw_id: &str,
) -> Result<TokenRecord, ApiError> {
    let now = hubfleet_types::now();
    let not_found = || ApiError(HubError::NotFound(format!("No such token: {raw_id}")));
    let id = parse_id(raw_id).ok_or_else(not_found)?;
    state
        .store
        .list_user_tokens(user_id)
        .await?
        .into_iter()
        .find(|t| t.id == id && t.expires_at.is_none_or(|e| e > now))
        .ok_or_else(not_found)
}

pub(super) async fn list(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["read:tokens"], None).await?;
    let now = hubfleet_types::now();
    let tokens: Vec<Value> = state
        .store
        .list_user_tokens(target.user.id)
        .await?
        .iter()
        .filter(|t| t.expires_at.is_none_or(|e| e > now))
        .map(|t| models::token_model(target.user.name.as_str(), t))
        .collect();
    Ok(axum::Json(serde_json::json!({ "api_tokens": tokens })).into_response())
}

pub(super) async fn get_one(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path((name, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["read:tokens"], None).await?;
    let token = find(&state, target.user.id, &token_id).await?;
    Ok(axum::Json(models::token_model(target.user.name.as_str(), &token)).into_response())
}

pub(super) async fn delete(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path((name, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["tokens"], None).await?;
    let token = find(&state, target.user.id, &token_id).await?;
    // Deleting an OAuth access token revokes every token that client holds for the user (as
    // JupyterHub does): logging out of one service means logging out of it everywhere. Access
    // tokens always expire; a server's own API token is tied to its client (so that stopping the
    // server revokes it) but never expires, and like any API token is deleted alone.
    match &token.oauth_client_id {
        Some(client) if token.expires_at.is_some() => {
            let revoked = state
                .store
                .delete_user_oauth_tokens(target.user.id, client)
                .await?;
            tracing::info!(user = %target.user.name, client = %client, revoked, "revoked a user's OAuth tokens for a client");
        }
        _ => state.store.delete_token(token.id).await?,
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{name}/tokens`: the new token is in the response and nowhere else; its scopes
/// must be ones the owner holds.
pub(super) async fn create(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["tokens"], None).await?;
    let body = json_object(&body)?;
    only_keys(&body, &["expires_in", "note", "scopes", "roles", "auth"])?;
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_i64() {
            Some(seconds) if seconds > 0 => Some(seconds),
            _ => {
                return Err(ApiError(HubError::BadRequest(
                    "expires_in must be a positive integer number of seconds".into(),
                )));
            }
        },
    };
    let note = match body.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(note)) => Some(note.clone()),
        Some(_) => {
            return Err(ApiError(HubError::BadRequest(
                "note must be a string".into(),
            )));
        }
    };
    let mut scopes = match body.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => string_list(value, "scopes")?,
    };
    // Deprecated `roles`: their scopes, as JupyterHub 3+ does.
    if let Some(roles) = body.get("roles").filter(|v| !v.is_null()) {
        for role in string_list(roles, "roles")? {
            let (_, role_scopes) = identity::role_definition(&state, &role).ok_or_else(|| {
                ApiError(HubError::BadRequest(format!("Role {role} does not exist")))
            })?;
            scopes.extend(role_scopes);
        }
    }
    if scopes.is_empty() {
        scopes.push("inherit".to_string());
    }
    for scope in &scopes {
        validate_scope(scope).map_err(|e| ApiError(HubError::BadRequest(e.to_string())))?;
    }
    let owner = Owner::User {
        name: target.user.name.as_str(),
        server: None,
    };
    let owner_scopes =
        identity::principal_scopes(&state, &Principal::User(target.user.clone())).await?;
    let requested = ScopeSet::expand(&scopes, owner);
    if !scopes.iter().any(|s| s == "inherit") && requested.intersect(&owner_scopes) != requested {
        return Err(ApiError(HubError::Refused(format!(
            "Not assigning requested scopes {scopes:?} not held by {}",
            target.user.name
        ))));
    }
    let now = hubfleet_types::now();
    let note = note.unwrap_or_else(|| {
        if identity.name() == target.user.name.as_str() {
            "Requested via api".to_string()
        } else {
            format!("Requested via api by {}", identity.name())
        }
    });
    let secret = generate_token();
    let record = NewToken {
        hash: hash_token(&secret),
        owner: TokenOwner::User(target.user.id),
        scopes,
        note,
        created: now,
        expires_at: expires_in.map(|s| now + chrono::Duration::seconds(s)),
        session_id: None,
        oauth_client_id: None,
    };
    let id = state.store.insert_token(&record).await?;
    let mut model = models::token_model(
        target.user.name.as_str(),
        &TokenRecord {
            id,
            owner: record.owner,
            scopes: record.scopes,
            note: record.note,
            created: record.created,
            expires_at: record.expires_at,
            last_activity: None,
            session_id: None,
            oauth_client_id: None,
        },
    );
    model["token"] = Value::String(secret);
    Ok((StatusCode::CREATED, axum::Json(model)).into_response())
}
