//! JSON models in the shapes JupyterHub emits (`apihandlers/base.py`), and their vertical
//! filtering: a caller sees only the fields its scopes cover for that resource.

use std::collections::HashMap;

use hubfleet_core::scopes::{Resource, ScopeSet};
use hubfleet_store::{Group, Server, ServerStatus, Service, TokenRecord, User};
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
        "full_url": Value::Null,
        "full_progress_url": Value::Null,
    })
}

fn api_prefix(state: &AppState) -> String {
    format!("{}api/", state.hub_prefix)
}

/// What a user model is built from; loaded for a whole page at once by [`user_models`].
pub(crate) struct UserParts<'a> {
    pub user: &'a User,
    pub servers: Vec<&'a Server>,
    pub groups: &'a [String],
    pub roles: Vec<String>,
}

fn full_user_model(state: &AppState, parts: &UserParts<'_>, include_stopped: bool) -> Value {
    let user = parts.user;
    let default = parts.servers.iter().find(|s| s.name.is_default());
    let server_url = default
        .filter(|s| s.status == ServerStatus::Running)
        .map(|_| state.server_prefix(user.name.as_str(), ""));
    let pending = match default.map(|s| s.status) {
        Some(ServerStatus::Spawning) => json!("spawn"),
        Some(ServerStatus::Stopping) => json!("stop"),
        _ => Value::Null,
    };
    let servers: Map<String, Value> = parts
        .servers
        .iter()
        .filter(|s| include_stopped || s.status != ServerStatus::Stopped)
        .map(|s| (s.name.to_string(), server_model(state, user, s)))
        .collect();
    json!({
        "kind": "user",
        "name": user.name.as_str(),
        "admin": user.admin,
        "roles": parts.roles,
        "groups": parts.groups,
        "server": server_url,
        "pending": pending,
        "created": isoformat(&user.created),
        "last_activity": opt_time(user.last_activity),
        "servers": servers,
        "auth_state": Value::Null,
        "user_info": { "name": user.name.as_str(), "display_name": user.name.as_str() },
    })
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

/// User models for a page of users, as `identity` may see them: groups, roles and servers of
/// the whole page come from one query each.
pub(crate) async fn user_models(
    state: &AppState,
    identity: &Identity,
    users: &[User],
    include_stopped: bool,
) -> Result<Vec<Value>, HubError> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let servers = state
        .store
        .list_servers_for_users(&ids, !include_stopped)
        .await?;
    let groups = state.store.groups_of_users(&ids).await?;
    let own_roles = state.store.roles_of_users(&ids).await?;
    let group_roles = state.store.group_roles_of_users(&ids).await?;
    let mut servers_by_user: HashMap<i64, Vec<&Server>> = HashMap::new();
    for server in &servers {
        servers_by_user
            .entry(server.user_id)
            .or_default()
            .push(server);
    }
    let empty: Vec<String> = Vec::new();
    Ok(users
        .iter()
        .map(|user| {
            let user_groups = groups.get(&user.id).unwrap_or(&empty);
            let parts = UserParts {
                user,
                servers: servers_by_user.remove(&user.id).unwrap_or_default(),
                groups: user_groups,
                roles: identity::merge_user_roles(
                    user.admin,
                    own_roles.get(&user.id).unwrap_or(&empty),
                    group_roles.get(&user.id).unwrap_or(&empty),
                ),
            };
            let model = full_user_model(state, &parts, include_stopped);
            let resource = Resource::User {
                name: user.name.as_str(),
                groups: user_groups,
            };
            let mut model = filter_fields(model, &identity.scopes, resource, USER_FIELDS);
            // `servers` is per server: a `!server=` filter reveals only that server.
            if let Some(Value::Object(servers)) = model.get_mut("servers") {
                servers.retain(|name, _| {
                    identity.scopes.allows(
                        "read:servers",
                        Resource::Server {
                            user: user.name.as_str(),
                            server: name,
                            groups: user_groups,
                        },
                    )
                });
            }
            model
        })
        .collect())
}

/// The full model of one user, unfiltered (`GET /user` for the caller itself).
pub(crate) async fn user_model(state: &AppState, user: &User) -> Result<Value, HubError> {
    let servers = state.store.list_user_servers(user.id).await?;
    let groups = state
        .store
        .groups_of_users(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    let parts = UserParts {
        user,
        servers: servers.iter().collect(),
        groups: &groups,
        roles: identity::user_roles(state, user).await?,
    };
    Ok(full_user_model(state, &parts, false))
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
    let model = json!({
        "kind": "service",
        "name": service.name,
        "admin": service.admin,
        "roles": identity::service_roles(state, service),
        "url": "",
        "prefix": "",
        "command": [],
        "pid": 0,
        "info": {},
        "display": true,
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
