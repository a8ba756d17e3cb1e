//! The JupyterHub REST API under `<base>hub/api`: the parts single-user servers and clients of a
//! hub core need (identify, users, server start/stop, progress events, activity), plus the OAuth2
//! provider in [`oauth`].

mod models;
mod oauth;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use http::{HeaderMap, Method, StatusCode};
use hubfleet_core::scopes::Resource;
use hubfleet_store::{ServerStatus, User};
use hubfleet_types::{ServerName, UserName};

use crate::error::{ApiError, ApiResult};
use crate::identity::{self, Identity};
use crate::lifecycle::{self, ProgressLog};
use crate::state::AppState;
use crate::{HubError, JUPYTERHUB_COMPAT_VERSION};

type AppStateRef = Arc<AppState>;
type Params = HashMap<String, String>;

/// How long `POST /users/{name}/server` waits before answering 202 (JupyterHub's
/// `slow_spawn_timeout`).
const SLOW_SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn router(state: AppStateRef) -> Router {
    let api = format!("{}api", state.hub_prefix);
    let hub = state.hub_prefix.clone();
    Router::new()
        .route(&api, get(version))
        .route(&format!("{api}/"), get(version))
        .route(&format!("{api}/health"), get(health))
        .route(&format!("{hub}health"), get(health))
        .route(&format!("{api}/user"), get(whoami))
        .route(&format!("{api}/users/{{name}}"), get(get_user))
        .route(
            &format!("{api}/users/{{name}}/server"),
            post(start_server).delete(stop_server),
        )
        .route(
            &format!("{api}/users/{{name}}/server/progress"),
            get(progress),
        )
        .route(&format!("{api}/users/{{name}}/activity"), post(activity))
        .route(&format!("{api}/oauth2/authorize"), get(oauth::authorize))
        .route(&format!("{api}/oauth2/token"), post(oauth::token))
        .route(
            &format!("{api}/{{*rest}}"),
            axum::routing::any(api_not_found),
        )
        .with_state(state)
}

/// The caller's identity, or 403 "Missing or invalid credentials".
pub(crate) async fn authenticated(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    query: &Params,
) -> Result<Identity, ApiError> {
    identity::identify_api(
        state,
        method,
        headers,
        query.get("_xsrf").map(String::as_str),
    )
    .await?
    .ok_or(ApiError(HubError::Unauthenticated))
}

/// JupyterHub's `needs_scope`: 403 if the scope is not held at all, 404 if it is held but its
/// filters exclude this resource (so callers cannot probe which users exist).
fn require(identity: &Identity, scopes: &[&str], resource: Resource<'_>) -> Result<(), ApiError> {
    if scopes.iter().any(|s| identity.scopes.allows(s, resource)) {
        return Ok(());
    }
    if scopes.iter().any(|s| identity.scopes.has(s)) {
        return Err(ApiError(HubError::NotFound(
            "No access to resources or resources not found".into(),
        )));
    }
    Err(ApiError(HubError::Forbidden(scopes.join(", "))))
}

async fn load_user(state: &AppState, name: &str) -> Result<Option<User>, ApiError> {
    match UserName::parse(name) {
        Ok(name) => Ok(state.store.get_user(&name).await?),
        Err(_) => Ok(None),
    }
}

fn user_resource(user: &User) -> Resource<'_> {
    Resource::User {
        name: user.name.as_str(),
        groups: &[],
    }
}

fn default_server_resource(user: &User) -> Resource<'_> {
    Resource::Server {
        user: user.name.as_str(),
        server: "",
        groups: &[],
    }
}

async fn version() -> Response {
    (
        [("access-control-allow-origin", "*")],
        axum::Json(serde_json::json!({ "version": JUPYTERHUB_COMPAT_VERSION })),
    )
        .into_response()
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn api_not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError(HubError::NotFound(format!(
        "No such API endpoint: {}",
        uri.path()
    )))
}

async fn whoami(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    let model = models::identity_model(&state, &identity).await?;
    Ok(axum::Json(model).into_response())
}

async fn get_user(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    let scopes = [
        "read:users",
        "read:users:name",
        "read:servers",
        "read:users:activity",
    ];
    let Some(user) = load_user(&state, &name).await? else {
        require(&identity, &scopes, Resource::Hub)?;
        return Err(ApiError(HubError::NotFound(format!(
            "No such user: {name}"
        ))));
    };
    require(&identity, &scopes, user_resource(&user))?;
    Ok(axum::Json(models::user_model(&state, &user).await?).into_response())
}

async fn start_server(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    let Some(user) = load_user(&state, &name).await? else {
        require(&identity, &["start:servers"], Resource::Hub)?;
        return Err(ApiError(HubError::NotFound(format!(
            "No such user: {name}"
        ))));
    };
    require(
        &identity,
        &["start:servers"],
        default_server_resource(&user),
    )?;
    let user_options = if body.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| HubError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let default = ServerName::default_server();
    if let Some(server) = state.store.get_server(user.id, &default).await? {
        match server.status {
            ServerStatus::Running => {
                return Err(ApiError(HubError::BadRequest(format!(
                    "{}'s server is already running",
                    user.name
                ))));
            }
            ServerStatus::Spawning => return Ok(StatusCode::ACCEPTED.into_response()),
            ServerStatus::Stopping => {
                return Err(ApiError(HubError::BadRequest(format!(
                    "{}'s server is stopping; try again shortly",
                    user.name
                ))));
            }
            ServerStatus::Stopped => {}
        }
    }
    let mut progress = lifecycle::start_server(&state, &user, &default, user_options).await?;
    let finished =
        tokio::time::timeout(SLOW_SPAWN_TIMEOUT, progress.wait_for(|log| log.finished)).await;
    match finished {
        Ok(Ok(log)) if log.failed => {
            let message = last_message(&log);
            Err(ApiError(HubError::Internal(message)))
        }
        Ok(Ok(_)) => Ok(StatusCode::CREATED.into_response()),
        _ => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

fn last_message(log: &ProgressLog) -> String {
    log.events
        .last()
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .unwrap_or("spawn failed")
        .to_string()
}

async fn stop_server(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    let Some(user) = load_user(&state, &name).await? else {
        require(&identity, &["delete:servers"], Resource::Hub)?;
        return Err(ApiError(HubError::NotFound(format!(
            "No such user: {name}"
        ))));
    };
    require(
        &identity,
        &["delete:servers"],
        default_server_resource(&user),
    )?;
    lifecycle::stop_server(&state, &user, &ServerName::default_server()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /users/{name}/server/progress`: JupyterHub's progress EventSource.
async fn progress(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    let Some(user) = load_user(&state, &name).await? else {
        require(&identity, &["read:servers"], Resource::Hub)?;
        return Err(ApiError(HubError::NotFound(format!(
            "No such user: {name}"
        ))));
    };
    require(&identity, &["read:servers"], default_server_resource(&user))?;
    let receiver = match state.spawns.subscribe(user.id, "") {
        Some(receiver) => receiver,
        None => {
            let server = state
                .store
                .get_server(user.id, &ServerName::default_server())
                .await?;
            if !server.is_some_and(|s| s.status == ServerStatus::Running) {
                return Err(ApiError(HubError::BadRequest(format!(
                    "{}'s server is not starting",
                    user.name
                ))));
            }
            let prefix = state.server_prefix(user.name.as_str(), "");
            let (_, receiver) = tokio::sync::watch::channel(ProgressLog {
                events: vec![serde_json::json!({
                    "progress": 100, "ready": true,
                    "message": format!("Server ready at {prefix}"),
                    "html_message": format!("Server ready at <a href=\"{prefix}\">{prefix}</a>"),
                    "url": prefix,
                })],
                finished: true,
                failed: false,
            });
            receiver
        }
    };
    let sse = Sse::new(progress_stream(receiver))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(8)).text(""));
    let mut response = sse.into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    Ok(response)
}

fn progress_stream(
    receiver: tokio::sync::watch::Receiver<ProgressLog>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (receiver, 0usize, false),
        |(mut receiver, sent, done)| async move {
            if done {
                return None;
            }
            loop {
                let (next, finished) = {
                    let log = receiver.borrow_and_update();
                    (
                        log.events.get(sent).cloned(),
                        log.finished && sent + 1 >= log.events.len(),
                    )
                };
                if let Some(event) = next {
                    let event = Event::default().data(event.to_string());
                    return Some((Ok(event), (receiver, sent + 1, finished)));
                }
                if receiver.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
}

/// `POST /users/{name}/activity`, sent by single-user servers every few minutes.
async fn activity(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    let Some(user) = load_user(&state, &name).await? else {
        require(&identity, &["users:activity"], Resource::Hub)?;
        return Err(ApiError(HubError::NotFound(format!(
            "No such user: {name}"
        ))));
    };
    require(&identity, &["users:activity"], user_resource(&user))?;
    let body: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| HubError::BadRequest(format!("invalid JSON body: {e}")))?;
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
