//! JSON models in the shapes JupyterHub emits (`apihandlers/base.py`).

use hubfleet_store::{Server, ServerStatus, User};
use hubfleet_types::isoformat;
use serde_json::{Value, json};

use crate::HubError;
use crate::identity::{Credential, Identity, Principal};
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
    json!({
        "name": server.name.as_str(),
        "display_name": server.name.as_str(),
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

pub(crate) async fn user_model(state: &AppState, user: &User) -> Result<Value, HubError> {
    let servers = state.store.list_user_servers(user.id).await?;
    let default = servers.iter().find(|s| s.name.is_default());
    let server_url = default
        .filter(|s| s.status == ServerStatus::Running)
        .map(|_| state.server_prefix(user.name.as_str(), ""));
    let pending = match default.map(|s| s.status) {
        Some(ServerStatus::Spawning) => json!("spawn"),
        Some(ServerStatus::Stopping) => json!("stop"),
        _ => Value::Null,
    };
    let active: serde_json::Map<String, Value> = servers
        .iter()
        .filter(|s| s.status != ServerStatus::Stopped)
        .map(|s| (s.name.to_string(), server_model(state, user, s)))
        .collect();
    let mut roles = vec!["user"];
    if user.admin {
        roles.push("admin");
    }
    Ok(json!({
        "kind": "user",
        "name": user.name.as_str(),
        "admin": user.admin,
        "roles": roles,
        "groups": [],
        "server": server_url,
        "pending": pending,
        "created": isoformat(&user.created),
        "last_activity": opt_time(user.last_activity),
        "servers": active,
        "auth_state": Value::Null,
        "user_info": { "name": user.name.as_str(), "display_name": user.name.as_str() },
    }))
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
            "roles": if service.admin { vec!["admin"] } else { vec![] },
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
