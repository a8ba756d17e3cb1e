//! The JupyterHub REST API under `<base>hub/api`, and the OAuth2 provider in [`oauth`].
//!
//! Every endpoint is one row of [`routes::ENDPOINTS`]: the same table registers the handler and
//! describes the operation in the OpenAPI document hubfleet ships (`docs/rest-api.json`), so the
//! two cannot drift. Handlers live by resource: [`users`], [`servers`], [`tokens`], [`groups`],
//! [`shares`] (server sharing), [`hub`] (info, proxy, services, shutdown). Access checks follow
//! JupyterHub's `needs_scope` (see [`require`]); list endpoints page in SQL and load related rows
//! for a whole page at once.

mod groups;
mod hub;
mod models;
mod oauth;
mod pagination;
pub(crate) mod routes;
mod servers;
mod shares;
mod tokens;
mod users;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::OriginalUri;
use http::Method;
use hubfleet_core::scopes::Resource;
use hubfleet_store::User;
use hubfleet_types::UserName;

use crate::HubError;
use crate::error::ApiError;
use crate::identity::{self, Identity};
use crate::state::AppState;

type AppStateRef = Arc<AppState>;
type Params = HashMap<String, String>;

pub(crate) fn router(state: AppStateRef) -> Router {
    let api = format!("{}api", state.hub_prefix);
    let hub = state.hub_prefix.clone();
    let mut router = Router::new();
    for endpoint in routes::ENDPOINTS {
        let path = if endpoint.path.is_empty() {
            api.clone()
        } else {
            format!("{api}{}", endpoint.path)
        };
        if let Some(default) = default_server_variant(&path) {
            router = router.route(&default, (endpoint.handler)());
        }
        router = router.route(&path, (endpoint.handler)());
    }
    router
        .route(&format!("{hub}health"), axum::routing::get(hub::health))
        .route(
            &format!("{api}/oauth2/authorize"),
            axum::routing::get(oauth::authorize).post(oauth::authorize_confirmed),
        )
        .route(
            &format!("{api}/oauth2/token"),
            axum::routing::post(oauth::token),
        )
        .route(
            &format!("{api}/{{*rest}}"),
            axum::routing::any(api_not_found),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Sharing paths name a server as `{owner}/{server_name}`, where the default server is an empty
/// last segment (JupyterHub's `([^/]+)/([^/]*)`); the router cannot match an empty parameter, so
/// they are also registered ending in `{owner}/`.
fn default_server_variant(path: &str) -> Option<String> {
    path.strip_suffix("{server_name}")
        .filter(|prefix| prefix.ends_with("{owner}/"))
        .map(String::from)
}

/// Loads configured roles into the database (JupyterHub's `load_roles`: members named in the
/// config get the role, missing users and groups are created) and returns the hub's shutdown
/// future: the given one, or `POST /shutdown`, whichever comes first.
pub(crate) async fn init(
    state: &AppStateRef,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = ()> + Send + 'static, HubError> {
    for role in &state.config.roles {
        let users: Vec<String> = role.users.iter().map(|u| u.to_string()).collect();
        state
            .store
            .grant_config_role(&role.name, &users, &role.groups)
            .await?;
    }
    let state = Arc::clone(state);
    Ok(async move {
        tokio::select! {
            () = shutdown => {}
            () = state.shutdown_requested.notified() => {
                tracing::info!("shutting down on request of the REST API");
            }
        }
    })
}

/// The authenticated caller of an API request, as a handler argument: a token (header or
/// `?token=`) or a session cookie with its XSRF check. Without valid credentials the request is
/// answered with JupyterHub's 403 before the handler runs.
pub(crate) struct Caller(pub Identity);

impl axum::extract::FromRequestParts<AppStateRef> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppStateRef,
    ) -> Result<Self, ApiError> {
        let xsrf = parts.uri.query().and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "_xsrf")
                .map(|(_, value)| value.into_owned())
        });
        identity::identify_api(state, &parts.method, &parts.headers, xsrf.as_deref())
            .await?
            .map(Caller)
            .ok_or(ApiError(HubError::Unauthenticated))
    }
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

/// A user addressed by a request, with the groups scope filters match against.
pub(crate) struct Target {
    pub user: User,
    pub groups: Vec<String>,
}

impl Target {
    fn resource(&self) -> Resource<'_> {
        Resource::User {
            name: self.user.name.as_str(),
            groups: &self.groups,
        }
    }

    fn server<'a>(&'a self, server: &'a str) -> Resource<'a> {
        Resource::Server {
            user: self.user.name.as_str(),
            server,
            groups: &self.groups,
        }
    }
}

/// Looks up the user a request names and checks `scopes` on it (or on `server` of it). An
/// unknown user is 404 for callers holding the scope at all, 403 otherwise, as in JupyterHub.
async fn target_user(
    state: &AppState,
    identity: &Identity,
    name: &str,
    scopes: &[&str],
    server: Option<&str>,
) -> Result<Target, ApiError> {
    let user = match UserName::parse(name) {
        Ok(name) => state.store.get_user(&name).await?,
        Err(_) => None,
    };
    let Some(user) = user else {
        return Err(missing_user(identity, name, scopes));
    };
    let groups = state
        .store
        .groups_of_users(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    let target = Target { user, groups };
    match server {
        None => require(identity, scopes, target.resource())?,
        Some(server) => require(identity, scopes, target.server(server))?,
    }
    Ok(target)
}

/// The answer for a request naming an unknown user: 404 for callers holding one of `scopes` at
/// all, 403 otherwise, as in JupyterHub.
fn missing_user(identity: &Identity, name: &str, scopes: &[&str]) -> ApiError {
    if !scopes.iter().any(|s| identity.scopes.has(s)) {
        return ApiError(HubError::Forbidden(scopes.join(", ")));
    }
    ApiError(HubError::NotFound(format!("No such user: {name}")))
}

/// A JSON request body; an empty body is `None`.
fn json_body(body: &[u8]) -> Result<Option<serde_json::Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError(HubError::BadRequest(format!("Invalid JSON in body: {e}"))))
}

/// A JSON object body (or `{}` when empty).
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match json_body(body)? {
        None => Ok(serde_json::Map::new()),
        Some(serde_json::Value::Object(map)) => Ok(map),
        Some(_) => Err(ApiError(HubError::BadRequest(
            "Request body must be a JSON object".into(),
        ))),
    }
}

/// Rejects keys outside `allowed` (JupyterHub's model validation).
fn only_keys(
    body: &serde_json::Map<String, serde_json::Value>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ApiError(HubError::BadRequest(format!(
            "Invalid key {key:?}; allowed keys are {allowed:?}"
        )))),
        None => Ok(()),
    }
}

/// A list of strings from a body field; 400 for anything else.
fn string_list(value: &serde_json::Value, field: &str) -> Result<Vec<String>, ApiError> {
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            ApiError(HubError::BadRequest(format!(
                "{field} must be a list of strings"
            )))
        })
}

async fn api_not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError(HubError::NotFound(format!(
        "No such API endpoint: {}",
        uri.path()
    )))
}

/// JupyterHub answers unsupported methods with its JSON error shape too.
async fn method_not_allowed(
    method: Method,
    OriginalUri(uri): OriginalUri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = http::StatusCode::METHOD_NOT_ALLOWED;
    let message = format!("Method {method} is not supported on {}", uri.path());
    (
        status,
        axum::Json(serde_json::json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}
