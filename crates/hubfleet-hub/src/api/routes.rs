//! The route table: each REST endpoint once, with its handler and its description. The router
//! registers the handlers from it and [`openapi`] renders the OpenAPI document from it, which is
//! checked in as `docs/rest-api.json` (a test fails when the file is stale) and served at
//! `<base>hub/api/openapi.json`.

use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::{Map, Value, json};

use super::{AppStateRef, groups, hub, servers, shares, tokens, users};

/// One operation of the REST API.
pub(crate) struct Endpoint {
    pub method: &'static str,
    /// Relative to `<base>hub/api`; `{name}` marks a path parameter.
    pub path: &'static str,
    pub summary: &'static str,
    /// Any one of these scopes grants access (empty: no scope needed).
    pub scopes: &'static [&'static str],
    /// Status codes the operation answers with besides the error ones every call can return.
    pub responses: &'static [(u16, &'static str)],
    pub handler: fn() -> MethodRouter<AppStateRef>,
}

fn route<H, T>(method: MethodFilter, handler: H) -> MethodRouter<AppStateRef>
where
    H: Handler<T, AppStateRef>,
    T: 'static,
{
    on(method, handler)
}

const OK: (u16, &str) = (200, "Success");
const CREATED: (u16, &str) = (201, "Created");
const NO_CONTENT: (u16, &str) = (204, "Done; no content");

macro_rules! endpoint {
    ($method:ident $path:literal, $summary:literal, [$($scope:literal),*], [$($response:expr),*], $handler:path) => {
        Endpoint {
            method: stringify!($method),
            path: $path,
            summary: $summary,
            scopes: &[$($scope),*],
            responses: &[$($response),*],
            handler: || route(MethodFilter::$method, $handler),
        }
    };
}

pub(crate) const ENDPOINTS: &[Endpoint] = &[
    endpoint!(GET "", "The JupyterHub version the hub speaks", [], [OK], hub::version),
    endpoint!(GET "/", "The JupyterHub version the hub speaks", [], [OK], hub::version),
    endpoint!(GET "/info", "Detailed information about the hub", ["read:hub"], [OK], hub::info),
    endpoint!(GET "/health", "Liveness check", [], [OK], hub::health),
    endpoint!(GET "/openapi.json", "This document", [], [OK], openapi_handler),
    endpoint!(POST "/shutdown", "Shut the hub down", ["shutdown"], [(202, "Shutting down")], hub::shutdown),
    endpoint!(POST "/shared-password", "Replace the shared password (hubfleet): password, expires_at, end_sessions (none, non-admin, all)", ["admin:users"], [OK, (409, "The hub has no shared password")], hub::rotate_shared_password),
    endpoint!(GET "/user", "Identify the caller (user or service) and its scopes", [], [OK], users::whoami),
    endpoint!(GET "/users", "List users (paginated)", ["list:users"], [OK], users::list),
    endpoint!(POST "/users", "Create several users", ["admin:users"], [CREATED, (409, "All users exist")], users::create_many),
    endpoint!(GET "/users/{name}", "Get a user", ["read:users", "read:users:name", "read:servers", "read:users:groups", "read:users:activity", "read:roles:users"], [OK], users::get_one),
    endpoint!(POST "/users/{name}", "Create a user", ["admin:users"], [CREATED, (409, "User exists")], users::create_one),
    endpoint!(PATCH "/users/{name}", "Modify a user (name, admin, groups, roles)", ["admin:users"], [OK], users::patch),
    endpoint!(DELETE "/users/{name}", "Delete a user", ["delete:users"], [NO_CONTENT], users::delete),
    endpoint!(POST "/users/{name}/activity", "Report activity", ["users:activity"], [OK], users::activity),
    endpoint!(POST "/users/{name}/server", "Start the default server", ["start:servers"], [CREATED, (202, "Spawn pending")], servers::start_default),
    endpoint!(DELETE "/users/{name}/server", "Stop the default server", ["delete:servers"], [NO_CONTENT, (202, "Stop pending")], servers::stop_default),
    endpoint!(GET "/users/{name}/server/progress", "Progress events of the default server's spawn", ["read:servers"], [OK], servers::progress_default),
    endpoint!(GET "/users/{name}/servers/{server_name}", "Get a named server", ["read:servers"], [OK], servers::get_named),
    endpoint!(PUT "/users/{name}/servers/{server_name}", "Create a named server without starting it", ["start:servers"], [CREATED, (409, "Server exists")], servers::create_named),
    endpoint!(POST "/users/{name}/servers/{server_name}", "Start a named server", ["start:servers"], [CREATED, (202, "Spawn pending")], servers::start_named),
    endpoint!(PATCH "/users/{name}/servers/{server_name}", "Modify a stopped named server", ["start:servers"], [OK], servers::patch_named),
    endpoint!(DELETE "/users/{name}/servers/{server_name}", "Stop (and with remove: true, delete) a named server", ["delete:servers"], [NO_CONTENT, (202, "Stop pending")], servers::stop_named),
    endpoint!(GET "/users/{name}/servers/{server_name}/progress", "Progress events of a named server's spawn", ["read:servers"], [OK], servers::progress_named),
    endpoint!(GET "/users/{name}/tokens", "List a user's tokens", ["read:tokens"], [OK], tokens::list),
    endpoint!(POST "/users/{name}/tokens", "Create a token (shown once)", ["tokens"], [CREATED], tokens::create),
    endpoint!(GET "/users/{name}/tokens/{token_id}", "Get a token's model", ["read:tokens"], [OK], tokens::get_one),
    endpoint!(DELETE "/users/{name}/tokens/{token_id}", "Revoke a token", ["tokens"], [NO_CONTENT], tokens::delete),
    endpoint!(GET "/groups", "List groups (paginated)", ["list:groups"], [OK], groups::list),
    endpoint!(POST "/groups", "Create several groups", ["admin:groups"], [CREATED, (409, "A group exists")], groups::create_many),
    endpoint!(GET "/groups/{name}", "Get a group", ["read:groups", "read:groups:name", "read:roles:groups"], [OK], groups::get_one),
    endpoint!(POST "/groups/{name}", "Create a group", ["admin:groups"], [CREATED, (409, "Group exists")], groups::create_one),
    endpoint!(DELETE "/groups/{name}", "Delete a group", ["delete:groups"], [NO_CONTENT], groups::delete),
    endpoint!(POST "/groups/{name}/users", "Add users to a group", ["groups"], [OK], groups::add_members),
    endpoint!(DELETE "/groups/{name}/users", "Remove users from a group", ["groups"], [OK], groups::remove_members),
    endpoint!(PUT "/groups/{name}/properties", "Replace a group's properties", ["groups"], [OK], groups::set_properties),
    endpoint!(GET "/users/{name}/shared", "Servers shared with a user, directly or through groups (paginated)", ["read:users:shares"], [OK], shares::user_shared),
    endpoint!(GET "/users/{name}/shared/{owner}/{server_name}", "A user's share of one server", ["read:users:shares"], [OK], shares::user_share),
    endpoint!(DELETE "/users/{name}/shared/{owner}/{server_name}", "Leave a shared server", ["users:shares"], [NO_CONTENT], shares::leave_user_share),
    endpoint!(GET "/groups/{name}/shared", "Servers shared with a group (paginated)", ["read:groups:shares"], [OK], shares::group_shared),
    endpoint!(GET "/groups/{name}/shared/{owner}/{server_name}", "A group's share of one server", ["read:groups:shares"], [OK], shares::group_share),
    endpoint!(DELETE "/groups/{name}/shared/{owner}/{server_name}", "Revoke a group's share of one server", ["groups:shares"], [NO_CONTENT], shares::leave_group_share),
    endpoint!(GET "/shares/{owner}", "Shares of any of the owner's servers (paginated)", ["read:shares"], [OK], shares::list),
    endpoint!(GET "/shares/{owner}/{server_name}", "Shares of one server (paginated)", ["read:shares"], [OK], shares::list),
    endpoint!(POST "/shares/{owner}/{server_name}", "Grant (or extend) a user's or group's share of a server", ["shares"], [OK], shares::grant),
    endpoint!(PATCH "/shares/{owner}/{server_name}", "Revoke scopes (or all) of one share; {} when none remain", ["shares"], [OK], shares::revoke),
    endpoint!(DELETE "/shares/{owner}/{server_name}", "Revoke every share of a server", ["shares"], [NO_CONTENT], shares::revoke_all),
    endpoint!(GET "/share-codes/{owner}", "Unexpired share codes of the owner's servers (paginated)", ["read:shares"], [OK], shares::list_codes),
    endpoint!(GET "/share-codes/{owner}/{server_name}", "Unexpired share codes of one server (paginated)", ["read:shares"], [OK], shares::list_codes),
    endpoint!(POST "/share-codes/{owner}/{server_name}", "Issue a share code (shown once, with accept_url)", ["shares"], [OK], shares::create_code),
    endpoint!(DELETE "/share-codes/{owner}/{server_name}", "Revoke share codes: ?code=, ?id=, or all", ["shares"], [NO_CONTENT], shares::delete_codes),
    endpoint!(GET "/services", "Services, as an object keyed by name", ["list:services"], [OK], hub::list_services),
    endpoint!(GET "/services/{name}", "Get a service", ["read:services", "read:services:name", "read:roles:services"], [OK], hub::get_service),
    endpoint!(POST "/services/{name}", "Create an external service at runtime (JupyterHub 5): admin, url, api_token, oauth_client_allowed_scopes, oauth_client_id, oauth_redirect_uri, oauth_no_confirm, info, display", ["admin:services"], [CREATED, (409, "Service exists")], hub::create_service),
    endpoint!(DELETE "/services/{name}", "Delete a service created at runtime, with its token, OAuth client and route", ["admin:services"], [OK, (405, "Service from the configuration")], hub::delete_service),
    endpoint!(GET "/proxy", "The proxy's routing table (paginated)", ["proxy"], [OK], hub::get_proxy),
    endpoint!(POST "/proxy", "Make the proxy's routes match the running servers", ["proxy"], [OK], hub::sync_proxy),
    endpoint!(PATCH "/proxy", "Re-sync the proxy (its address comes from the configuration)", ["proxy"], [OK], hub::patch_proxy),
];

async fn openapi_handler() -> axum::Json<Value> {
    axum::Json(openapi())
}

/// Path parameters in `{braces}`.
fn parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The OpenAPI 3.1 document for [`ENDPOINTS`].
pub(crate) fn openapi() -> Value {
    let mut paths = Map::new();
    for endpoint in ENDPOINTS {
        let path = if endpoint.path.is_empty() {
            "/".to_string()
        } else {
            endpoint.path.to_string()
        };
        if endpoint.path.is_empty() {
            // `""` and `"/"` are the same operation in the document.
            continue;
        }
        let mut responses = Map::new();
        for (code, description) in endpoint.responses {
            responses.insert(code.to_string(), json!({ "description": description }));
        }
        for (code, description) in [
            (400, "Invalid request"),
            (403, "Missing credentials or scopes"),
            (
                404,
                "No such resource, or not visible with the caller's scopes",
            ),
        ] {
            responses
                .entry(code.to_string())
                .or_insert_with(|| json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }));
        }
        let params: Vec<Value> = parameters(endpoint.path)
            .into_iter()
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut operation = json!({
            "summary": endpoint.summary,
            "operationId": format!("{}{}", endpoint.method.to_lowercase(), endpoint.path.replace(['/', '{', '}'], "_")),
            "responses": responses,
            "security": if endpoint.scopes.is_empty() {
                json!([])
            } else {
                json!([{ "token": endpoint.scopes }])
            },
            "x-scopes": endpoint.scopes,
        });
        if !params.is_empty() {
            operation["parameters"] = Value::Array(params);
        }
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[endpoint.method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hubfleet: the JupyterHub REST API",
            "version": crate::JUPYTERHUB_COMPAT_VERSION,
            "description": "Generated from hubfleet's route table (crates/hubfleet-hub/src/api/routes.rs). Paths are relative to <base_url>hub/api. Access needs any one of an operation's x-scopes.",
        },
        "servers": [{ "url": "/hub/api" }],
        "components": {
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer", "description": "Authorization: token <token> or Bearer <token>" },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": { "status": { "type": "integer" }, "message": { "type": "string" } },
                    "required": ["status", "message"],
                },
            },
        },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/rest-api.json` must be what the route table renders (rust-analyzer's
    /// `ensure_file_contents`: `UPDATE_GENERATED=1` rewrites it).
    #[test]
    fn rest_api_document_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rest-api.json");
        let expected = serde_json::to_string_pretty(&openapi()).unwrap() + "\n";
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        if actual == expected {
            return;
        }
        if std::env::var_os("UPDATE_GENERATED").is_some() {
            std::fs::write(&path, expected).unwrap();
            return;
        }
        panic!(
            "{} is stale; run `UPDATE_GENERATED=1 cargo test -p hubfleet-hub rest_api_document_is_current` and commit the result",
            path.display()
        );
    }

    #[test]
    fn every_operation_is_unique_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for endpoint in ENDPOINTS {
            assert!(
                seen.insert((endpoint.method, endpoint.path)),
                "{} {} is registered twice",
                endpoint.method,
                endpoint.path
            );
            assert!(!endpoint.summary.is_empty());
            for scope in endpoint.scopes {
                assert!(
                    hubfleet_core::scopes::is_known_scope(scope),
                    "{} {} names unknown scope {scope}",
                    endpoint.method,
                    endpoint.path
                );
            }
        }
    }
}
