//! JSON models in the shapes JupyterHub emits (`apihandlers/base.py`), and their vertical
//! filtering: a caller sees only the fields its scopes cover for that resource.

use hubfleet_core::scopes::{Resource, ScopeSet};
use hubfleet_store::{Group, Server, ServerStatus, Service, TokenRecord, User, UserDetails};
use hubfleet_types::isoformat;
use serde_json::{Map, Value, json};

use crate::HubError;
use crate::identity::{self, Credential, Identity, Principal};
use crate::state::AppState;

fn opt_time(ts: Option<hubfleet_types::Timestamp>) -> Value {
    ts.map_or(Value::Null, |t| Value::String(isoformat(&t)))
}

pub(crate) fn server_model(state: &AppState, user: &User, server: &Server) -> Value {
    let prefix = state.server_prefix(user.name.as_str(), server.name.as_str());
    let pending = match server.status {
        ServerStatus::Spawning => json!("spawn"),
        ServerStatus::Stopping => json!("stop"),
        _ => Value::Null,
    };
    let escaped = crate::pages::url_escape(user.name.as_str());
    let progress_url = if server.name.is_default() {
        format!("{}users/{escaped}/server/progress", api_prefix(state))
    } else {
        format!(
            "{}users/{escaped}/servers/{}/progress",
            api_prefix(state),
            server.name
        )
    };
    let display_name = if server.display_name.is_empty() {
        server.name.as_str()
    } else {
        server.display_name.as_str()
    };
    json!({
        "name": server.name.as_str(),
        "display_name": display_name,
        "full_name": format!("{}/{}", user.name, server.name),
        "last_activity": opt_time(server.last_activity.or(server.started)),
        "started": opt_time(server.started),
        "pending": pending,
        "ready": server.status == ServerStatus::Running,
        "stopped": server.status == ServerStatus::Stopped,
        "url": prefix,
        "user_options": server.user_options,
        "progress_url": progress_url,
        "full_url": full_url(state, &prefix),
        "full_progress_url": full_url(state, &progress_url),
    })
}

fn api_prefix(state: &AppState) -> String {
    format!("{}api/", state.hub_prefix)
}

/// `path` (which starts with `base_url`) made absolute with the configured public URL's origin,
/// as JupyterHub fills `full_url` fields; null without a public URL.
pub(crate) fn full_url(state: &AppState, path: &str) -> Value {
    state.public_url(path).map_or(Value::Null, Value::String)
}

/// A user model in JupyterHub's shape (`apihandlers/base.py`), serialized straight from the
/// loaded rows (no intermediate JSON tree: a page has 200 of them). A field the caller may not
/// see is `None` and left out; `Some(None)` is an explicit `null`. Fields are declared in
/// alphabetical order, the order in which hubfleet has always emitted them.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct UserModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_state: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_activity: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<Option<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    servers: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_info: Option<UserInfo>,
}

#[derive(Debug, serde::Serialize)]
struct UserInfo {
    display_name: String,
    name: String,
}

/// Which fields each read scope reveals (JupyterHub's vertical filtering of user models).
const USER_FIELDS: &[(&str, &[&str])] = &[
    (
        "read:users",
        &[
            "kind",
            "name",
            "user_info",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
        ],
    ),
    ("read:users:name", &["kind", "name", "user_info", "admin"]),
    ("read:users:groups", &["kind", "name", "groups"]),
    ("read:users:activity", &["kind", "name", "last_activity"]),
    ("read:servers", &["kind", "name", "servers"]),
    ("read:roles:users", &["kind", "name", "roles", "admin"]),
    ("admin:auth_state", &["kind", "name", "auth_state"]),
];

/// The model of one user as `viewer` may see it (`None`: everything, for the user themself).
/// `servers` lists stopped servers only with `include_stopped`.
fn user_model_of(
    state: &AppState,
    viewer: Option<&ScopeSet>,
    details: &UserDetails,
    include_stopped: bool,
) -> UserModel {
    let user = &details.user;
    let name = user.name.as_str();
    let resource = Resource::User {
        name,
        groups: &details.groups,
    };
    let granted: Vec<&[&str]> = match viewer {
        None => Vec::new(),
        Some(scopes) => USER_FIELDS
            .iter()
            .filter(|(scope, _)| scopes.allows(scope, resource))
            .map(|(_, keys)| *keys)
            .collect(),
    };
    let shows = |key: &str| viewer.is_none() || granted.iter().any(|keys| keys.contains(&key));
    let default = details.servers.iter().find(|s| s.name.is_default());
    UserModel {
        kind: shows("kind").then_some("user"),
        name: shows("name").then(|| name.to_string()),
        admin: shows("admin").then_some(user.admin),
        roles: shows("roles")
            .then(|| identity::merge_user_roles(user.admin, &details.roles, &details.group_roles)),
        groups: shows("groups").then(|| details.groups.clone()),
        server: shows("server").then(|| {
            default
                .filter(|s| s.status == ServerStatus::Running)
                .map(|_| state.server_prefix(name, ""))
        }),
        pending: shows("pending").then(|| match default.map(|s| s.status) {
            Some(ServerStatus::Spawning) => Some("spawn"),
            Some(ServerStatus::Stopping) => Some("stop"),
            _ => None,
        }),
        created: shows("created").then(|| isoformat(&user.created)),
        last_activity: shows("last_activity").then(|| user.last_activity.map(|t| isoformat(&t))),
        // Per server: a `!server=` filter reveals only that server.
        servers: shows("servers").then(|| {
            details
                .servers
                .iter()
                .filter(|s| include_stopped || s.status != ServerStatus::Stopped)
                .filter(|s| {
                    viewer.is_none_or(|scopes| {
                        scopes.allows(
                            "read:servers",
                            Resource::Server {
                                user: name,
                                server: s.name.as_str(),
                                groups: &details.groups,
                            },
                        )
                    })
                })
                .map(|s| (s.name.to_string(), server_model(state, user, s)))
                .collect()
        }),
        auth_state: shows("auth_state").then_some(Value::Null),
        user_info: shows("user_info").then(|| UserInfo {
            display_name: name.to_string(),
            name: name.to_string(),
        }),
    }
}

/// Keeps only the fields of `model` that `scopes` allow on `resource`.
fn filter_fields(
    model: Value,
    scopes: &ScopeSet,
    resource: Resource<'_>,
    table: &[(&str, &[&str])],
) -> Value {
    let Value::Object(mut fields) = model else {
        return model;
    };
    let allowed: Vec<&str> = table
        .iter()
        .filter(|(scope, _)| scopes.allows(scope, resource))
        .flat_map(|(_, keys)| keys.iter().copied())
        .collect();
    fields.retain(|key, _| allowed.contains(&key.as_str()));
    Value::Object(fields)
}

/// User models for a page of users, as `identity` may see them: servers, groups and roles of
/// the whole page come from one query.
pub(crate) async fn user_models(
    state: &AppState,
    identity: &Identity,
    users: &[User],
    include_stopped: bool,
) -> Result<Vec<UserModel>, HubError> {
    let details = state
        .store
        .user_details(users.to_vec(), include_stopped)
        .await?;
    Ok(detailed_user_models(
        state,
        identity,
        &details,
        include_stopped,
    ))
}

/// User models, as `identity` may see them, from details already loaded.
pub(crate) fn detailed_user_models(
    state: &AppState,
    identity: &Identity,
    details: &[UserDetails],
    include_stopped: bool,
) -> Vec<UserModel> {
    details
        .iter()
        .map(|d| user_model_of(state, Some(&identity.scopes), d, include_stopped))
        .collect()
}

/// The full model of one user, unfiltered (`GET /user` for the caller itself).
pub(crate) async fn user_model(state: &AppState, user: &User) -> Result<Value, HubError> {
    let details = state
        .store
        .user_details(vec![user.clone()], false)
        .await?
        .pop()
        .ok_or_else(|| HubError::NotFound(format!("No such user: {}", user.name)))?;
    serde_json::to_value(user_model_of(state, None, &details, false))
        .map_err(|err| HubError::Internal(format!("cannot encode a user model: {err}")))
}

/// `GET /hub/api/user`: the caller's model plus `scopes`, `session_id` and `token_id`.
pub(crate) async fn identity_model(
    state: &AppState,
    identity: &Identity,
) -> Result<Value, HubError> {
    let mut model = match &identity.principal {
        Principal::User(user) => user_model(state, user).await?,
        Principal::Service(service) => json!({
            "kind": "service",
            "name": service.name,
            "admin": service.admin,
            "roles": identity::service_roles(state, service),
        }),
    };
    let token_id = match identity.credential {
        Credential::Token { token_id, .. } => json!(format!("a{token_id}")),
        Credential::Cookie { .. } => Value::Null,
    };
    model["scopes"] = json!(identity.scopes.to_strings());
    model["session_id"] = json!(identity.session_id());
    model["token_id"] = token_id;
    Ok(model)
}

const GROUP_FIELDS: &[(&str, &[&str])] = &[
    ("read:groups", &["kind", "name", "users", "properties"]),
    ("read:groups:name", &["kind", "name"]),
    ("read:roles:groups", &["kind", "name", "roles"]),
];

pub(crate) fn group_model(identity: &Identity, group: &Group) -> Value {
    let model = json!({
        "kind": "group",
        "name": group.name,
        "users": group.users,
        "roles": group.roles,
        "properties": group.properties,
    });
    filter_fields(
        model,
        &identity.scopes,
        Resource::Group { name: &group.name },
        GROUP_FIELDS,
    )
}

const SERVICE_FIELDS: &[(&str, &[&str])] = &[
    (
        "read:services",
        &[
            "kind", "name", "admin", "roles", "url", "prefix", "command", "pid", "info", "display",
        ],
    ),
    ("read:services:name", &["kind", "name"]),
    ("read:roles:services", &["kind", "name", "roles", "admin"]),
];

pub(crate) fn service_model(state: &AppState, identity: &Identity, service: &Service) -> Value {
    // Only services the proxy routes have a prefix (JupyterHub: those with a server).
    let prefix = match service.url {
        Some(_) => crate::services::service_prefix(state, &service.name),
        None => String::new(),
    };
    let command = crate::services::configured(state, &service.name)
        .and_then(|configured| configured.command.clone())
        .unwrap_or_default();
    let model = json!({
        "kind": "service",
        "name": service.name,
        "admin": service.admin,
        "roles": identity::service_roles(state, service),
        "url": service.url.as_deref().unwrap_or_default(),
        "prefix": prefix,
        "command": command,
        "pid": 0,
        "info": service.info,
        "display": service.display,
    });
    filter_fields(
        model,
        &identity.scopes,
        Resource::Service {
            name: &service.name,
        },
        SERVICE_FIELDS,
    )
}

/// A token as `GET /users/{name}/tokens` shows it; the token itself is never stored.
pub(crate) fn token_model(owner: &str, token: &TokenRecord) -> Value {
    json!({
        "kind": "api_token",
        "id": format!("a{}", token.id),
        "user": owner,
        "roles": [],
        "scopes": token.scopes,
        "note": token.note,
        "created": isoformat(&token.created),
        "last_activity": opt_time(token.last_activity),
        "expires_at": opt_time(token.expires_at),
        "session_id": token.session_id,
        "oauth_client": token.oauth_client_id,
    })
}
