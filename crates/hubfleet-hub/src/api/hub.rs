//! Hub-wide endpoints: version, health, info, the proxy's routing table, services (listing, and
//! creating and deleting them at runtime), shutdown.

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use hubfleet_core::scopes::{Owner, Resource, ScopeSet, validate_scope};
use hubfleet_store::NewService;
use serde_json::{Map, Value, json};

use super::{AppStateRef, Caller, Params, json_object, models, pagination, require};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
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

pub(super) async fn info(Caller(identity): Caller) -> ApiResult<Response> {
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
    Caller(identity): Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
) -> ApiResult<Response> {
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
    Caller(identity): Caller,
) -> ApiResult<Response> {
    require(&identity, &["proxy"], Resource::Hub)?;
    lifecycle::sync_routes(&state).await?;
    Ok(StatusCode::OK.into_response())
}

/// `PATCH /proxy`: JupyterHub lets an admin point the hub at a new proxy API. hubfleet's proxy
/// link is fixed by its configuration, so the body is validated and the routes re-synced.
pub(super) async fn patch_proxy(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
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
    Caller(identity): Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
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
    Caller(identity): Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
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

/// `GET /services`: an object keyed by name (JupyterHub returns an object, not the spec's list),
/// configured and runtime services alike.
pub(super) async fn list_services(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
) -> ApiResult<Response> {
    if !identity.scopes.has("list:services") {
        return Err(ApiError(HubError::Forbidden("list:services".into())));
    }
    let mut out = Map::new();
    for service in state.store.list_services().await? {
        let resource = Resource::Service {
            name: &service.name,
        };
        if identity.scopes.allows("list:services", resource) {
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
    Caller(identity): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let scopes = ["read:services", "read:services:name", "read:roles:services"];
    if !scopes.iter().any(|s| identity.scopes.has(s)) {
        return Err(ApiError(HubError::Forbidden(scopes.join(", "))));
    }
    require(&identity, &scopes, Resource::Service { name: &name })?;
    let service = state
        .store
        .get_service(&name)
        .await?
        .ok_or_else(|| ApiError(HubError::NotFound(format!("No such service: {name}"))))?;
    Ok(axum::Json(models::service_model(&state, &identity, &service)).into_response())
}

/// The fields `POST /services/{name}` accepts and their JSON types (JupyterHub's
/// `_service_model_types`). `command`, `cwd`, `environment` and `user` only matter to managed
/// services, which cannot be created at runtime.
const SERVICE_FIELDS: &[(&str, JsonType)] = &[
    ("name", JsonType::String),
    ("admin", JsonType::Bool),
    ("url", JsonType::String),
    ("oauth_client_allowed_scopes", JsonType::List),
    ("api_token", JsonType::String),
    ("info", JsonType::Object),
    ("display", JsonType::Bool),
    ("oauth_no_confirm", JsonType::Bool),
    ("command", JsonType::List),
    ("cwd", JsonType::String),
    ("environment", JsonType::Object),
    ("user", JsonType::String),
    ("oauth_client_id", JsonType::String),
    ("oauth_redirect_uri", JsonType::String),
];

#[derive(Clone, Copy)]
enum JsonType {
    String,
    Bool,
    List,
    Object,
}

impl JsonType {
    fn matches(self, value: &Value) -> bool {
        match self {
            JsonType::String => value.is_string(),
            JsonType::Bool => value.is_boolean(),
            JsonType::List => value.is_array(),
            JsonType::Object => value.is_object(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::String => "a string",
            JsonType::Bool => "true or false",
            JsonType::List => "a list",
            JsonType::Object => "an object",
        }
    }
}

/// Service tokens are stored as unsalted SHA-256, safe only for high-entropy tokens; the same
/// minimum as for tokens in the configuration.
const MIN_SERVICE_TOKEN_CHARS: usize = 32;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(HubError::BadRequest(message.into()))
}

/// JupyterHub's service name rules (no `/`, no URL escapes, not empty, not only dots, no
/// surrounding spaces), plus no whitespace, `?` or `#` at all: the name is a URL path segment.
fn check_service_name(name: &str) -> Result<(), ApiError> {
    let problem = if name.is_empty() {
        Some("must not be empty")
    } else if name.chars().all(|c| c == '.') {
        Some("must not be a relative path component")
    } else if name.contains('/') {
        Some("must not contain '/'")
    } else if name.contains('%') {
        Some("must not be URL-escaped")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        Some("must not contain spaces, '?' or '#'")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(bad_request(format!("Service name {name:?} {problem}"))),
        None => Ok(()),
    }
}

/// JupyterHub's `_check_service_scopes`: a caller can only create a service with as much power
/// as it holds itself — the admin role's scopes for `admin: true`, and the scopes the service's
/// OAuth client may grant.
fn check_service_scopes(
    state: &AppState,
    identity: &crate::identity::Identity,
    admin: bool,
    oauth_scopes: &[String],
) -> Result<(), ApiError> {
    let mut requested: Vec<String> = oauth_scopes.to_vec();
    if admin && let Some((_, admin_scopes)) = crate::identity::role_definition(state, "admin") {
        requested.extend(admin_scopes);
    }
    if requested.is_empty() {
        return Ok(());
    }
    for scope in &requested {
        validate_scope(scope).map_err(|e| bad_request(e.to_string()))?;
    }
    let owner = match &identity.principal {
        crate::identity::Principal::User(user) => Owner::User {
            name: user.name.as_str(),
            server: None,
        },
        crate::identity::Principal::Service(service) => Owner::Service {
            name: &service.name,
        },
    };
    let wanted = ScopeSet::expand(&requested, owner);
    if wanted.intersect(&identity.scopes) != wanted {
        return Err(bad_request(format!(
            "Not assigning requested scopes {requested:?} not held by {}",
            identity.name()
        )));
    }
    Ok(())
}

/// `POST /services/{name}` (JupyterHub 5+): creates an external service at runtime, with its
/// API token, OAuth client and route. It is stored in the database, so it outlives the hub
/// process; configured services cannot be overwritten (409 like any existing service).
pub(super) async fn create_service(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require(
        &identity,
        &["admin:services"],
        Resource::Service { name: &name },
    )?;
    if state.store.get_service(&name).await?.is_some() {
        return Err(ApiError(HubError::Conflict(format!(
            "Service {name} already exists"
        ))));
    }
    let mut body = match super::json_body(&body)? {
        Some(Value::Object(body)) if !body.is_empty() => body,
        _ => return Err(bad_request("Invalid service data")),
    };
    body.insert("name".into(), Value::String(name.clone()));
    for (key, value) in &body {
        let Some((_, kind)) = SERVICE_FIELDS.iter().find(|(field, _)| field == key) else {
            return Err(bad_request(format!(
                "Invalid key {key:?} in service model; allowed keys are {:?}",
                SERVICE_FIELDS.iter().map(|(f, _)| *f).collect::<Vec<_>>()
            )));
        };
        if !kind.matches(value) {
            return Err(bad_request(format!(
                "service.{key} must be {}",
                kind.name()
            )));
        }
    }
    check_service_name(&name)?;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(String::from);
    let flag = |key: &str| body.get(key).and_then(Value::as_bool);
    let admin = flag("admin").unwrap_or(false);
    let oauth_client_allowed_scopes = match body.get("oauth_client_allowed_scopes") {
        Some(value) => super::string_list(value, "oauth_client_allowed_scopes")?,
        None => Vec::new(),
    };
    check_service_scopes(&state, &identity, admin, &oauth_client_allowed_scopes)?;
    if body
        .get("command")
        .and_then(Value::as_array)
        .is_some_and(|command| !command.is_empty())
    {
        return Err(bad_request(format!(
            "Can not create managed service {name} at runtime"
        )));
    }
    let url = text("url").filter(|url| !url.is_empty());
    if let Some(url) = &url {
        let valid = url::Url::parse(url).is_ok_and(|parsed| {
            matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some()
        });
        if !valid {
            return Err(bad_request(format!(
                "Unsupported URL for service {name}: {url}. Must be http[s]"
            )));
        }
    }
    let api_token = text("api_token").filter(|token| !token.is_empty());
    if api_token
        .as_ref()
        .is_some_and(|token| token.chars().count() < MIN_SERVICE_TOKEN_CHARS)
    {
        return Err(bad_request(format!(
            "api_token must be at least {MIN_SERVICE_TOKEN_CHARS} characters"
        )));
    }
    let client_id = text("oauth_client_id")
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| crate::services::oauth_client_id(&name));
    if !client_id.starts_with("service-") {
        return Err(bad_request(format!(
            "service {name} has oauth_client_id={client_id:?}; service OAuth client ids must start with 'service-'"
        )));
    }
    // OAuth is available to routed services and to those given any OAuth setting.
    let oauth_specified = ["oauth_client_id", "oauth_redirect_uri", "oauth_no_confirm"]
        .iter()
        .any(|key| body.get(*key).is_some_and(|v| v != "" && !v.is_null()));
    let oauth_redirect_uri = if url.is_some() || oauth_specified {
        let redirect = text("oauth_redirect_uri")
            .filter(|uri| !uri.is_empty())
            .or_else(|| {
                url.as_ref().map(|_| {
                    format!(
                        "{}oauth_callback",
                        crate::services::service_prefix(&state, &name)
                    )
                })
            });
        Some(redirect.ok_or_else(|| {
            bad_request(format!(
                "Service {name} has oauth configured, but is missing required oauth_redirect_uri."
            ))
        })?)
    } else {
        None
    };
    let info = body
        .get("info")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let record = NewService {
        name: name.clone(),
        admin,
        from_config: false,
        url,
        info,
        display: flag("display").unwrap_or(true),
        oauth_client_id: oauth_redirect_uri.as_ref().map(|_| client_id),
        oauth_no_confirm: flag("oauth_no_confirm").unwrap_or(false),
        oauth_client_allowed_scopes,
    };
    let created = crate::services::create_runtime(
        &state,
        crate::services::RuntimeService {
            record,
            api_token,
            oauth_redirect_uri,
        },
    )
    .await
    .map_err(|error| match error {
        HubError::Store(hubfleet_store::StoreError::Conflict(_)) => ApiError(HubError::Conflict(
            format!("Service {name}, its token or its OAuth client already exists"),
        )),
        other => ApiError(other),
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(models::service_model(&state, &identity, &created)),
    )
        .into_response())
}

/// `DELETE /services/{name}` (JupyterHub 5+): deletes a service created at runtime with its
/// token, OAuth client (and the tokens it issued) and route; 405 for configured services.
pub(super) async fn delete_service(
    State(state): State<AppStateRef>,
    Caller(identity): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(
        &identity,
        &["admin:services"],
        Resource::Service { name: &name },
    )?;
    crate::services::delete_runtime(&state, &name).await?;
    Ok(StatusCode::OK.into_response())
}
