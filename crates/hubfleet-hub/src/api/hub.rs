//! Hub-wide endpoints: version, health, info, the proxy's routing table, services, shutdown.

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use hubfleet_core::scopes::Resource;
use serde_json::{Map, Value, json};

use super::{AppStateRef, Params, authenticated, json_object, models, pagination, require};
use crate::error::{ApiError, ApiResult};
use crate::{HubError, JUPYTERHUB_COMPAT_VERSION, lifecycle, shared_password};

pub(super) async fn version() -> Response {
    (
        [("access-control-allow-origin", "*")],
        axum::Json(json!({ "version": JUPYTERHUB_COMPAT_VERSION })),
    )
        .into_response()
}

pub(super) async fn health() -> StatusCode {
    StatusCode::OK
}

pub(super) async fn info(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    require(&identity, &["read:hub"], Resource::Hub)?;
    let hubfleet = env!("CARGO_PKG_VERSION");
    Ok(axum::Json(json!({
        "version": JUPYTERHUB_COMPAT_VERSION,
        "python": format!("hubfleet {hubfleet} (no Python)"),
        "sys_executable": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
        "spawner": { "class": "hubfleet.LocalProcessSpawner", "version": hubfleet },
        "authenticator": { "class": "hubfleet.Authenticator", "version": hubfleet },
    }))
    .into_response())
}

/// `GET /proxy`: the proxy's routing table keyed by routespec (with the trailing slash JupyterHub
/// uses), paginated over the sorted keys.
pub(super) async fn get_proxy(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    require(&identity, &["proxy"], Resource::Hub)?;
    let page = pagination::page(&headers, &query)?;
    let routes = state.proxy.routes().await?;
    let total = routes.len() as i64;
    let mut table = Map::new();
    for (path, route) in routes
        .into_iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
    {
        let spec = if path.ends_with('/') {
            path
        } else {
            format!("{path}/")
        };
        let mut data = Map::new();
        if let Some(user) = route.user {
            data.insert("user".into(), json!(user));
        }
        if let Some(server) = route.server_name {
            data.insert("server_name".into(), json!(server));
        }
        if let Some(seen) = route.last_activity {
            data.insert(
                "last_activity".into(),
                json!(hubfleet_types::isoformat(&seen)),
            );
        }
        table.insert(
            spec.clone(),
            json!({ "routespec": spec, "target": route.target, "data": data }),
        );
    }
    if !page.wrapped {
        return Ok(axum::Json(Value::Object(table)).into_response());
    }
    // The wrapped form of this endpoint keeps the object under `items`.
    Ok(axum::Json(json!({
        "items": table,
        "_pagination": pagination::meta(page, total, &headers, &uri),
    }))
    .into_response())
}

/// `POST /proxy`: make the proxy's table match the running servers now.
pub(super) async fn sync_proxy(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    require(&identity, &["proxy"], Resource::Hub)?;
    lifecycle::sync_routes(&state).await?;
    Ok(StatusCode::OK.into_response())
}

/// `PATCH /proxy`: JupyterHub lets an admin point the hub at a new proxy API. hubfleet's proxy
/// link is fixed by its configuration, so the body is validated and the routes re-synced.
pub(super) async fn patch_proxy(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    require(&identity, &["proxy"], Resource::Hub)?;
    let body = json_object(&body)?;
    if !body.is_empty() {
        tracing::info!(
            keys = ?body.keys().collect::<Vec<_>>(),
            "PATCH /proxy: the proxy link comes from the configuration; only re-syncing routes"
        );
    }
    lifecycle::sync_routes(&state).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /shutdown`: answer 202, then stop serving. Servers and the proxy are separate
/// processes and keep running (JupyterHub's `servers`/`proxy` flags default to false here).
pub(super) async fn shutdown(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    require(&identity, &["shutdown"], Resource::Hub)?;
    let body = json_object(&body)?;
    for key in ["proxy", "servers"] {
        if body.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(ApiError(HubError::BadRequest(format!(
                "{key} must be true or false"
            ))));
        }
    }
    if body.get("servers").and_then(Value::as_bool) == Some(true) {
        for (user, server) in state.store.list_active_servers().await? {
            lifecycle::stop_server(&state, &user, &server.name).await?;
        }
    }
    state.shutdown_requested.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "message": "Shutting down Hub" })),
    )
        .into_response())
}

/// `POST /shared-password` (hubfleet's own): replaces the shared password. Body:
/// `{"password": "...", "expires_at": "<RFC 3339>" | null, "end_sessions": "none" | "non-admin" | "all"}`.
/// Answers `{"expires_at": ..., "sessions_ended": n}`.
pub(super) async fn rotate_shared_password(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    require(&identity, &["admin:users"], Resource::Hub)?;
    let body = json_object(&body)?;
    super::only_keys(&body, &["password", "expires_at", "end_sessions"])?;
    let text = |key: &str| -> Result<&str, ApiError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError(HubError::BadRequest(format!(
                "{key} must be a string"
            )))),
        }
    };
    let expires_at = shared_password::parse_expiry(text("expires_at")?)?;
    let rotation = shared_password::Rotation {
        password: text("password")?,
        expires_at,
        end_sessions: shared_password::EndSessions::parse(text("end_sessions")?)?,
        by: identity.name(),
    };
    let ended = shared_password::rotate(&state, rotation).await?;
    Ok(axum::Json(json!({
        "expires_at": expires_at.map(|t| hubfleet_types::isoformat(&t)),
        "sessions_ended": ended,
    }))
    .into_response())
}

/// `GET /services`: an object keyed by name (JupyterHub returns an object, not the spec's list).
pub(super) async fn list_services(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    if !identity.scopes.has("list:services") {
        return Err(ApiError(HubError::Forbidden("list:services".into())));
    }
    let mut out = Map::new();
    for configured in &state.config.services {
        let resource = Resource::Service {
            name: &configured.name,
        };
        if !identity.scopes.allows("list:services", resource) {
            continue;
        }
        if let Some(service) = state.store.get_service(&configured.name).await? {
            out.insert(
                service.name.clone(),
                models::service_model(&state, &identity, &service),
            );
        }
    }
    Ok(axum::Json(Value::Object(out)).into_response())
}

pub(super) async fn get_service(
    State(state): State<AppStateRef>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Params>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let identity = authenticated(&state, &method, &headers, &query).await?;
    let scopes = ["read:services", "read:services:name", "read:roles:services"];
    if !scopes.iter().any(|s| identity.scopes.has(s)) {
        return Err(ApiError(HubError::Forbidden(scopes.join(", "))));
    }
    require(&identity, &scopes, Resource::Service { name: &name })?;
    let service = match state.config.services.iter().any(|s| s.name == name) {
        true => state.store.get_service(&name).await?,
        false => None,
    }
    .ok_or_else(|| ApiError(HubError::NotFound(format!("No such service: {name}"))))?;
    Ok(axum::Json(models::service_model(&state, &identity, &service)).into_response())
}
