//! Servers, default and named: start, stop (and remove), create without starting, modify, read,
//! and the progress event stream.
//!
//! The default server lives at `/users/{name}/server`, named ones at
//! `/users/{name}/servers/{server}`; both are handled by the same functions with the server name
//! extracted from the path (empty for the default server).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use http::StatusCode;
use hubfleet_store::{Server, ServerStatus};
use hubfleet_types::ServerName;
use serde_json::Value;

use super::{AppStateRef, Caller, Target, json_body, json_object, models, only_keys, target_user};
use crate::HubError;
use crate::error::{ApiError, ApiResult};
use crate::lifecycle::{self, ProgressLog};
use crate::state::AppState;

/// How long a start waits before answering 202 (JupyterHub's `slow_spawn_timeout`).
const SLOW_SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits before answering 202 (JupyterHub's `slow_stop_timeout`).
const SLOW_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a named server's path segment; the empty name is the default server's.
fn server_name(raw: &str) -> Result<ServerName, ApiError> {
    ServerName::parse(raw).map_err(|e| {
        ApiError(HubError::BadRequest(format!(
            "Invalid server name {raw:?}: {e}"
        )))
    })
}

fn require_named_servers(state: &AppState, name: &ServerName) -> Result<(), ApiError> {
    if !name.is_default() && !state.config.allow_named_servers {
        return Err(ApiError(HubError::BadRequest(
            "Named servers are not enabled.".into(),
        )));
    }
    Ok(())
}

/// JupyterHub's `named_server_limit_per_user`: counts every named server the user has.
async fn check_named_limit(
    state: &AppState,
    target: &Target,
    name: &ServerName,
    existing: Option<&Server>,
) -> Result<(), ApiError> {
    let limit = state.config.named_server_limit_per_user;
    if name.is_default() || existing.is_some() || limit == 0 {
        return Ok(());
    }
    let named = state
        .store
        .list_user_servers(target.user.id)
        .await?
        .iter()
        .filter(|s| !s.name.is_default())
        .count();
    if named >= limit as usize {
        return Err(ApiError(HubError::BadRequest(format!(
            "User {} already has the maximum of {limit} named servers. One must be deleted before a new server can be created",
            target.user.name
        ))));
    }
    Ok(())
}

/// `user_options` from a ServerRequest body: `{display_name?, user_options?}`, or (older
/// clients) the whole body; no body reuses the previous options.
fn requested_options(body: Option<Value>, previous: Option<&Server>) -> (Option<String>, Value) {
    let previous_options = || {
        previous
            .map(|s| s.user_options.clone())
            .unwrap_or_else(|| serde_json::json!({}))
    };
    match body {
        None | Some(Value::Null) => (None, previous_options()),
        Some(Value::Object(map))
            if map.contains_key("user_options") || map.contains_key("display_name") =>
        {
            let display = map
                .get("display_name")
                .and_then(Value::as_str)
                .map(String::from);
            let options = map
                .get("user_options")
                .cloned()
                .unwrap_or_else(previous_options);
            (display, options)
        }
        Some(other) => (None, other),
    }
}

pub(super) async fn start_default(
    state: State<AppStateRef>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    start(state, caller, name, String::new(), body).await
}

pub(super) async fn start_named(
    state: State<AppStateRef>,
    caller: Caller,
    Path((name, server)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    start(state, caller, name, server, body).await
}

async fn start(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    name: String,
    server: String,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["start:servers"], Some(&server)).await?;
    let server_name = server_name(&server)?;
    require_named_servers(&state, &server_name)?;
    let existing = state.store.get_server(target.user.id, &server_name).await?;
    check_named_limit(&state, &target, &server_name, existing.as_ref()).await?;
    let label = if server_name.is_default() {
        format!("{}'s server", target.user.name)
    } else {
        format!("{}'s server {server_name}", target.user.name)
    };
    if let Some(server) = &existing {
        match server.status {
            ServerStatus::Running => {
                return Err(ApiError(HubError::BadRequest(format!(
                    "{label} is already running"
                ))));
            }
            ServerStatus::Spawning => return Ok(StatusCode::ACCEPTED.into_response()),
            ServerStatus::Stopping => {
                return Err(ApiError(HubError::BadRequest(format!(
                    "{label} is stopping; try again shortly"
                ))));
            }
            ServerStatus::Stopped => {}
        }
    }
    let (_, user_options) = requested_options(json_body(&body)?, existing.as_ref());
    let mut progress =
        lifecycle::start_server(&state, &target.user, &server_name, user_options).await?;
    let finished =
        tokio::time::timeout(SLOW_SPAWN_TIMEOUT, progress.wait_for(|log| log.finished)).await;
    match finished {
        Ok(Ok(log)) if log.failed => Err(ApiError(HubError::Internal(last_message(&log)))),
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

pub(super) async fn stop_default(
    state: State<AppStateRef>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    stop(state, caller, name, String::new(), body).await
}

pub(super) async fn stop_named(
    state: State<AppStateRef>,
    caller: Caller,
    Path((name, server)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    stop(state, caller, name, server, body).await
}

async fn stop(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    name: String,
    server: String,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["delete:servers"], Some(&server)).await?;
    let server_name = server_name(&server)?;
    let remove = match json_object(&body)?.get("remove") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(remove)) => *remove,
        Some(_) => {
            return Err(ApiError(HubError::BadRequest(
                "remove must be a boolean".into(),
            )));
        }
    };
    if remove && server_name.is_default() {
        return Err(ApiError(HubError::BadRequest(
            "Cannot delete the default server".into(),
        )));
    }
    let Some(record) = state.store.get_server(target.user.id, &server_name).await? else {
        if server_name.is_default() {
            // JupyterHub answers a stop of a never-started default server with 204.
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        return Err(ApiError(HubError::NotFound(format!(
            "{} has no server named {server_name:?}",
            target.user.name
        ))));
    };
    // The stop runs in its own task so that answering 202 after the slow-stop timeout does not
    // cancel it half way.
    let task = {
        let state = std::sync::Arc::clone(&state);
        let user = target.user.clone();
        let server_name = server_name.clone();
        tokio::spawn(async move {
            lifecycle::stop_server(&state, &user, &server_name).await?;
            if remove {
                state.store.delete_server(record.id).await?;
            }
            Ok::<(), HubError>(())
        })
    };
    match tokio::time::timeout(SLOW_STOP_TIMEOUT, task).await {
        Ok(Ok(result)) => {
            result?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Ok(Err(join)) => Err(ApiError(HubError::Internal(format!(
            "stopping task: {join}"
        )))),
        Err(_) => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

/// `GET /users/{name}/servers/{server}` (JupyterHub 6).
pub(super) async fn get_named(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["read:servers"], Some(&server)).await?;
    let record = state
        .store
        .get_server(target.user.id, &server_name(&server)?)
        .await?
        .ok_or_else(|| {
            ApiError(HubError::NotFound(format!(
                "No such server: {name}/{server}"
            )))
        })?;
    Ok(axum::Json(models::server_model(&state, &target.user, &record)).into_response())
}

/// `PUT /users/{name}/servers/{server}`: create a named server without starting it.
pub(super) async fn create_named(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path((name, server)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["start:servers"], Some(&server)).await?;
    let server_name = server_name(&server)?;
    require_named_servers(&state, &server_name)?;
    let existing = state.store.get_server(target.user.id, &server_name).await?;
    if existing.is_some() {
        return Err(ApiError(HubError::Conflict(format!(
            "Server {name}/{server} already exists"
        ))));
    }
    check_named_limit(&state, &target, &server_name, None).await?;
    let (display_name, user_options) = requested_options(json_body(&body)?, None);
    let record = state
        .store
        .create_server(
            target.user.id,
            &server_name,
            display_name.as_deref().unwrap_or(""),
            &user_options,
        )
        .await?;
    let model = models::server_model(&state, &target.user, &record);
    Ok((StatusCode::CREATED, axum::Json(model)).into_response())
}

/// `PATCH /users/{name}/servers/{server}`: rename, change the display name or stored options of
/// a stopped server.
pub(super) async fn patch_named(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path((name, server)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["start:servers"], Some(&server)).await?;
    let server_name = server_name(&server)?;
    let body = json_object(&body)?;
    only_keys(&body, &["name", "display_name", "user_options"])?;
    let record = state
        .store
        .get_server(target.user.id, &server_name)
        .await?
        .ok_or_else(|| {
            ApiError(HubError::NotFound(format!(
                "No such server: {name}/{server}"
            )))
        })?;
    if record.status != ServerStatus::Stopped {
        return Err(ApiError(HubError::BadRequest(format!(
            "Server {name}/{server} is active; stop it before modifying it"
        ))));
    }
    let new_name = match body.get("name") {
        None => record.name.clone(),
        Some(Value::String(raw)) => {
            let parsed = super::servers::server_name(raw)?;
            if parsed.is_default() || record.name.is_default() {
                return Err(ApiError(HubError::BadRequest(
                    "The default server cannot be renamed".into(),
                )));
            }
            parsed
        }
        Some(_) => {
            return Err(ApiError(HubError::BadRequest(
                "name must be a string".into(),
            )));
        }
    };
    let display_name = match body.get("display_name") {
        None => record.display_name.clone(),
        Some(Value::String(display)) => display.clone(),
        Some(_) => {
            return Err(ApiError(HubError::BadRequest(
                "display_name must be a string".into(),
            )));
        }
    };
    let user_options = match body.get("user_options") {
        None => record.user_options.clone(),
        Some(options @ Value::Object(_)) => options.clone(),
        Some(_) => {
            return Err(ApiError(HubError::BadRequest(
                "user_options must be an object".into(),
            )));
        }
    };
    state
        .store
        .update_server(record.id, &new_name, &display_name, &user_options)
        .await?;
    let updated = state
        .store
        .get_server(target.user.id, &new_name)
        .await?
        .ok_or_else(|| {
            ApiError(HubError::NotFound(format!(
                "No such server: {name}/{new_name}"
            )))
        })?;
    Ok(axum::Json(models::server_model(&state, &target.user, &updated)).into_response())
}

pub(super) async fn progress_default(
    state: State<AppStateRef>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    progress(state, caller, name, String::new()).await
}

pub(super) async fn progress_named(
    state: State<AppStateRef>,
    caller: Caller,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    progress(state, caller, name, server).await
}

/// JupyterHub's progress EventSource for one server.
async fn progress(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    name: String,
    server: String,
) -> ApiResult<Response> {
    let target = target_user(&state, &identity, &name, &["read:servers"], Some(&server)).await?;
    let server_name = server_name(&server)?;
    let record = state.store.get_server(target.user.id, &server_name).await?;
    if record.is_none() && !server_name.is_default() {
        return Err(ApiError(HubError::NotFound(format!(
            "No such server: {name}/{server}"
        ))));
    }
    let receiver = match state.spawns.subscribe(target.user.id, server_name.as_str()) {
        Some(receiver) => receiver,
        None => {
            if !record.is_some_and(|s| s.status == ServerStatus::Running) {
                return Err(ApiError(HubError::BadRequest(format!(
                    "{}'s server {server:?} is not starting",
                    target.user.name
                ))));
            }
            let prefix = state.server_prefix(target.user.name.as_str(), server_name.as_str());
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
