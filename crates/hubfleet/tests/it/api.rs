//! The JupyterHub REST API end to end against a real `hubfleet serve`: users, groups, tokens,
//! services, proxy, named servers, pagination and errors; an RBAC matrix (each endpoint with and
//! without its scope, filtered scopes, the default `user` role); shutdown; and conformance to
//! JupyterHub's OpenAPI spec with schemathesis.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::standin::{standin_server, world_readable_tempdir};
use crate::support::test_hub::{ADMIN_TOKEN, TestHub};
use crate::support::{envs_dir, install_crypto_provider, wait_for, workspace_root};

const PAGINATION: &str = "application/jupyterhub-pagination+json";

/// Roles and named servers for the tests; `grader` sees the `class` group's users only.
const EXTRA: &str = r#"allow_named_servers: true
named_server_limit_per_user: 2
roles:
  - name: grader
    description: Reads the class
    scopes: ["list:users!group=class", "read:users!group=class"]
    groups: [graders]
"#;

async fn call(
    hub: &TestHub,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/hub/api{path}", hub.public_url))
        .header("Authorization", format!("token {token}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("hub API request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn admin(
    hub: &TestHub,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(hub, ADMIN_TOKEN, method, path, body).await
}

/// A token for `user` with `scopes`, created through the API by the admin service.
async fn token_for(hub: &TestHub, user: &str, scopes: &[&str]) -> String {
    let (status, body) = admin(
        hub,
        Method::POST,
        &format!("/users/{user}/tokens"),
        Some(json!({ "scopes": scopes, "note": "test" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"]
        .as_str()
        .expect("token in response")
        .to_string()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_groups_tokens_services_proxy_and_pagination() {
    install_crypto_provider();
    let hub = TestHub::start_with_extra(&[], "6.1.1", None, EXTRA).await;

    // Bulk create: one transaction, existing names skipped, 409 when all exist, 400 when invalid.
    let (status, created) = admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["ann", "bob", "cyd", "dee"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(names(&created), ["ann", "bob", "cyd", "dee"]);
    let (status, body) = admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["ann"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], 409, "JupyterHub's error shape: {body}");
    let (status, _) = admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["a/b"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = admin(&hub, Method::POST, "/users/eve", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = admin(&hub, Method::POST, "/users/eve", None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Pagination: bare list without the opt-in, wrapped with it, `next.url` walks the rest.
    let (status, bare) = admin(&hub, Method::GET, "/users?limit=2&offset=1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&bare), ["bob", "cyd"]);
    let response = reqwest::Client::new()
        .get(format!(
            "{}/hub/api/users?limit=2&sort=-name",
            hub.public_url
        ))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .header("Accept", PAGINATION)
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    // `graders` role members: none; users are ann..eve.
    assert_eq!(names(&page["items"]), ["eve", "dee"]);
    assert_eq!(page["_pagination"]["total"], 5);
    let next = page["_pagination"]["next"]["url"]
        .as_str()
        .expect("next url")
        .to_string();
    assert!(
        next.contains("offset=2") && next.contains("sort=-name"),
        "{next}"
    );
    let page: Value = reqwest::Client::new()
        .get(&next)
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .header("Accept", PAGINATION)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page["items"]), ["cyd", "bob"]);
    for bad in ["/users?state=sleepy", "/users?sort=age", "/users?limit=x"] {
        let (status, body) = admin(&hub, Method::GET, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (_, filtered) = admin(&hub, Method::GET, "/users?name_filter=D", None).await;
    assert_eq!(names(&filtered), ["cyd", "dee"]);
    let (_, inactive) = admin(&hub, Method::GET, "/users?state=ready", None).await;
    assert_eq!(names(&inactive), Vec::<&str>::new());

    // PATCH: rename, admin, groups (created on demand), roles; rename onto a taken name is 400.
    let (status, ann) = admin(
        &hub,
        Method::PATCH,
        "/users/ann",
        Some(json!({ "name": "anna", "admin": true, "groups": ["class"], "roles": ["grader"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ann}");
    assert_eq!(ann["name"], "anna");
    assert_eq!(ann["admin"], true);
    assert_eq!(ann["groups"], json!(["class"]));
    assert_eq!(ann["roles"], json!(["user", "admin", "grader"]));
    let (status, _) = admin(
        &hub,
        Method::PATCH,
        "/users/anna",
        Some(json!({ "name": "bob" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = admin(
        &hub,
        Method::PATCH,
        "/users/anna",
        Some(json!({ "colour": "red" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = admin(
        &hub,
        Method::PATCH,
        "/users/anna",
        Some(json!({ "roles": ["wizard"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Groups: bulk create, 409, members, properties, delete.
    let (status, groups) = admin(
        &hub,
        Method::POST,
        "/groups",
        Some(json!({ "groups": ["graders", "lab"], "users": ["bob"] })),
    )
    .await;
    // `graders` exists already (created by the config role), so the bulk create is refused whole.
    assert_eq!(status, StatusCode::CONFLICT, "{groups}");
    let (status, groups) = admin(
        &hub,
        Method::POST,
        "/groups",
        Some(json!({ "groups": ["lab", "art"], "users": ["bob"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{groups}");
    assert_eq!(groups[0]["users"], json!(["bob"]));
    let (status, lab) = admin(
        &hub,
        Method::POST,
        "/groups/lab/users",
        Some(json!({ "users": ["cyd"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lab["users"], json!(["bob", "cyd"]));
    let (status, _) = admin(
        &hub,
        Method::POST,
        "/groups/lab/users",
        Some(json!({ "users": ["ghost"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, lab) = admin(
        &hub,
        Method::DELETE,
        "/groups/lab/users",
        Some(json!({ "users": ["bob"] })),
    )
    .await;
    assert_eq!(lab["users"], json!(["cyd"]));
    let (_, lab) = admin(
        &hub,
        Method::PUT,
        "/groups/lab/properties",
        Some(json!({ "room": 12 })),
    )
    .await;
    assert_eq!(lab["properties"], json!({ "room": 12 }));
    let (status, _) = admin(&hub, Method::DELETE, "/groups/art", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin(&hub, Method::GET, "/groups/art", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, groups) = admin(&hub, Method::GET, "/groups", None).await;
    assert_eq!(names(&groups), ["class", "graders", "lab"]);

    // Tokens: shown once, stored hashed, `a<id>` ids, scopes limited to the owner's.
    let (status, new) = admin(
        &hub,
        Method::POST,
        "/users/bob/tokens",
        Some(json!({ "note": "ci", "expires_in": 3600, "scopes": ["read:users!user=bob"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    let secret = new["token"].as_str().unwrap().to_string();
    let id = new["id"].as_str().unwrap().to_string();
    assert!(id.starts_with('a'), "{id}");
    assert!(new["expires_at"].is_string());
    let (_, listed) = admin(&hub, Method::GET, "/users/bob/tokens", None).await;
    let listed = listed["api_tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].get("token").is_none(),
        "a token is shown only once"
    );
    let (status, one) = admin(&hub, Method::GET, &format!("/users/bob/tokens/{id}"), None).await;
    assert_eq!((status, one["note"].as_str()), (StatusCode::OK, Some("ci")));
    let (status, me) = call(&hub, &secret, Method::GET, "/user", None).await;
    assert_eq!((status, me["name"].as_str()), (StatusCode::OK, Some("bob")));
    let (status, _) = admin(
        &hub,
        Method::POST,
        "/users/bob/tokens",
        Some(json!({ "scopes": ["admin:users"] })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "bob does not hold admin:users"
    );
    let (status, _) = admin(
        &hub,
        Method::POST,
        "/users/bob/tokens",
        Some(json!({ "scopes": ["read:everything"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = admin(
        &hub,
        Method::DELETE,
        &format!("/users/bob/tokens/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&hub, &secret, Method::GET, "/user", None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a revoked token no longer works"
    );
    let (status, _) = admin(&hub, Method::GET, "/users/bob/tokens/7", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "ids without the `a` are unknown"
    );

    // Services: an object keyed by name; info; proxy; unknown endpoints; methods; the document.
    let (_, services) = admin(&hub, Method::GET, "/services", None).await;
    assert_eq!(services["test-admin"]["admin"], true, "{services}");
    let (status, _) = admin(&hub, Method::GET, "/services/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, info) = admin(&hub, Method::GET, "/info", None).await;
    assert_eq!(info["version"], "6.1.1");
    let (status, routes) = admin(&hub, Method::GET, "/proxy", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(routes.is_object(), "{routes}");
    let (status, _) = admin(&hub, Method::POST, "/proxy", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin(&hub, Method::GET, "/no/such/thing", None).await;
    assert_eq!(
        (status, body["status"].as_i64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    let (status, body) = admin(&hub, Method::PUT, "/users", None).await;
    assert_eq!(
        (status, body["status"].as_i64()),
        (StatusCode::METHOD_NOT_ALLOWED, Some(405))
    );
    let (status, document) = admin(&hub, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["paths"]["/users/{name}/tokens/{token_id}"]["delete"].is_object());

    // DELETE: cannot delete yourself; deleting removes the user.
    let anna = token_for(&hub, "anna", &["inherit"]).await;
    let (status, _) = call(&hub, &anna, Method::DELETE, "/users/anna", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = admin(&hub, Method::DELETE, "/users/eve", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin(&hub, Method::GET, "/users/eve", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// One RBAC case: `token` calls `method path` and must get `expected`.
struct Case {
    who: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Value>,
    expected: StatusCode,
}

fn case(who: &'static str, method: Method, path: &'static str, expected: u16) -> Case {
    Case {
        who,
        method,
        path,
        body: None,
        expected: StatusCode::from_u16(expected).unwrap(),
    }
}

fn with_body(mut case: Case, body: Value) -> Case {
    case.body = Some(body);
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_matrix() {
    install_crypto_provider();
    let hub = TestHub::start_with_extra(&[], "6.1.1", None, EXTRA).await;
    let (status, _) = admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["amy", "ben", "cat", "dan"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    admin(
        &hub,
        Method::POST,
        "/groups/class",
        Some(json!({ "users": ["ben", "cat"] })),
    )
    .await;
    admin(
        &hub,
        Method::POST,
        "/groups/graders/users",
        Some(json!({ "users": ["dan"] })),
    )
    .await;
    admin(&hub, Method::PUT, "/users/ben/servers/gpu", None).await;

    let mut tokens = std::collections::HashMap::new();
    // amy's own token with her default `user` role ("inherit").
    tokens.insert("amy", token_for(&hub, "amy", &["inherit"]).await);
    // A token that only identifies amy.
    tokens.insert(
        "amy-identify",
        token_for(&hub, "amy", &["read:users:name!user=amy"]).await,
    );
    // dan is in `graders`: list/read users of the `class` group only.
    tokens.insert("dan", token_for(&hub, "dan", &["inherit"]).await);
    // A token narrowed to one server of ben.
    tokens.insert(
        "ben-gpu",
        token_for(
            &hub,
            "ben",
            &[
                "read:servers!server=ben/gpu",
                "delete:servers!server=ben/gpu",
            ],
        )
        .await,
    );
    tokens.insert("admin", ADMIN_TOKEN.to_string());
    tokens.insert("nobody", "not-a-real-token".to_string());

    use Method as M;
    let cases = vec![
        // No credentials at all: 403 everywhere that needs a scope.
        case("nobody", M::GET, "/users", 403),
        case("nobody", M::GET, "/user", 403),
        case("nobody", M::GET, "/", 200),
        // The default `user` role: self only.
        case("amy", M::GET, "/user", 200),
        case("amy", M::GET, "/users/amy", 200),
        case("amy", M::GET, "/users/ben", 404),
        case("amy", M::GET, "/users/nobody-here", 404),
        case("amy", M::GET, "/users", 403),
        case("amy", M::POST, "/users/zed", 403),
        case("amy", M::PATCH, "/users/amy", 403),
        case("amy", M::DELETE, "/users/ben", 403),
        case("amy", M::GET, "/users/amy/tokens", 200),
        case("amy", M::GET, "/users/ben/tokens", 404),
        case("amy", M::PUT, "/users/amy/servers/box", 201),
        case("amy", M::PUT, "/users/ben/servers/box", 404),
        case("amy", M::GET, "/users/amy/servers/box", 200),
        case("amy", M::PATCH, "/users/amy/servers/box", 200),
        case("amy", M::DELETE, "/users/amy/servers/box", 204),
        case("amy", M::DELETE, "/users/ben/server", 404),
        case("amy", M::GET, "/groups", 403),
        case("amy", M::GET, "/groups/class", 403),
        case("amy", M::POST, "/groups/new", 403),
        case("amy", M::GET, "/services", 403),
        case("amy", M::GET, "/info", 403),
        case("amy", M::GET, "/proxy", 403),
        case("amy", M::POST, "/proxy", 403),
        case("amy", M::POST, "/shutdown", 403),
        with_body(
            case("amy", M::POST, "/users/amy/activity", 200),
            json!({ "last_activity": "2026-01-01T00:00:00Z" }),
        ),
        with_body(
            case("amy", M::POST, "/users/ben/activity", 404),
            json!({ "last_activity": "2026-01-01T00:00:00Z" }),
        ),
        // A token narrower than its owner.
        case("amy-identify", M::GET, "/users/amy", 200),
        case("amy-identify", M::GET, "/users/amy/tokens", 403),
        case("amy-identify", M::PUT, "/users/amy/servers/box2", 403),
        // `!group=` filters reach members of the group and nobody else.
        case("dan", M::GET, "/users/ben", 200),
        case("dan", M::GET, "/users/amy", 404),
        case("dan", M::GET, "/users", 200),
        case("dan", M::GET, "/users/ben/tokens", 404),
        // `!server=` filters reach that server only.
        case("ben-gpu", M::GET, "/users/ben/servers/gpu", 200),
        case("ben-gpu", M::GET, "/users/ben/servers/cpu", 404),
        case("ben-gpu", M::GET, "/users/ben", 200),
        case("ben-gpu", M::GET, "/users/ben/tokens", 403),
        // The admin service can do everything.
        case("admin", M::GET, "/users", 200),
        case("admin", M::GET, "/groups", 200),
        case("admin", M::GET, "/groups/class", 200),
        case("admin", M::GET, "/services", 200),
        case("admin", M::GET, "/services/test-admin", 200),
        case("admin", M::GET, "/info", 200),
        case("admin", M::GET, "/proxy", 200),
        case("admin", M::POST, "/groups/new", 201),
        case("admin", M::DELETE, "/groups/new", 204),
        case("admin", M::GET, "/users/ben/tokens", 200),
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let token = &tokens[case.who];
        let (status, body) = call(
            &hub,
            token,
            case.method.clone(),
            case.path,
            case.body.clone(),
        )
        .await;
        if status != case.expected {
            failures.push(format!(
                "{} {} {}: expected {}, got {status}: {body}",
                case.who, case.method, case.path, case.expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "RBAC mismatches:\n{}",
        failures.join("\n")
    );

    // Horizontal filtering: dan's listing holds exactly the class members.
    let (_, listed) = call(&hub, &tokens["dan"], M::GET, "/users", None).await;
    assert_eq!(names(&listed), ["ben", "cat"]);
    // Vertical filtering: a name-only token sees no activity or servers.
    let (_, model) = call(&hub, &tokens["amy-identify"], M::GET, "/users/amy", None).await;
    assert_eq!(model["name"], "amy");
    assert!(
        model.get("last_activity").is_none() && model.get("servers").is_none(),
        "{model}"
    );
    // A server-filtered token sees only its server in the user model.
    let (_, model) = call(
        &hub,
        &tokens["ben-gpu"],
        M::GET,
        "/users/ben?include_stopped_servers=1",
        None,
    )
    .await;
    assert_eq!(
        model["servers"].as_object().map(|s| s.len()),
        Some(1),
        "{model}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_servers_start_progress_stop_and_remove() {
    install_crypto_provider();
    let hub = TestHub::start_with_extra(&["nia"], "6.1.1", None, EXTRA).await;
    admin(&hub, Method::POST, "/users/nia", None).await;
    let (status, created) = admin(
        &hub,
        Method::PUT,
        "/users/nia/servers/gpu",
        Some(json!({ "display_name": "GPU", "user_options": { "size": 2 } })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["display_name"], "GPU");
    assert_eq!(created["stopped"], true);
    // Without `public_url`, JupyterHub leaves the absolute URLs out.
    assert_eq!(created["full_url"], Value::Null, "{created}");
    assert_eq!(created["full_progress_url"], Value::Null, "{created}");
    let (status, _) = admin(&hub, Method::PUT, "/users/nia/servers/gpu", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = admin(&hub, Method::PUT, "/users/nia/servers/Bad_Name", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, renamed) = admin(
        &hub,
        Method::PATCH,
        "/users/nia/servers/gpu",
        Some(json!({ "name": "tpu" })),
    )
    .await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (StatusCode::OK, Some("tpu"))
    );
    admin(&hub, Method::PUT, "/users/nia/servers/cpu", None).await;
    let (status, body) = admin(&hub, Method::PUT, "/users/nia/servers/third", None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "over named_server_limit_per_user: {body}"
    );

    let (status, _) = admin(&hub, Method::POST, "/users/nia/servers/tpu", None).await;
    assert!(matches!(status.as_u16(), 201 | 202), "{status}");
    wait_for(
        "nia's tpu server to be ready",
        Duration::from_secs(90),
        || async {
            let (_, server) = admin(&hub, Method::GET, "/users/nia/servers/tpu", None).await;
            (server["ready"] == true).then_some(())
        },
    )
    .await;
    let (_, user) = admin(&hub, Method::GET, "/users/nia", None).await;
    assert_eq!(user["servers"]["tpu"]["url"], "/user/nia/tpu/", "{user}");
    assert_eq!(
        user["servers"]["tpu"]["user_options"],
        json!({ "size": 2 }),
        "stored options are reused"
    );
    let progress = reqwest::Client::new()
        .get(format!(
            "{}/hub/api/users/nia/servers/tpu/progress",
            hub.public_url
        ))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(progress.contains("\"ready\":true"), "{progress}");
    let (status, _) = admin(
        &hub,
        Method::PATCH,
        "/users/nia/servers/tpu",
        Some(json!({ "display_name": "x" })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a running server cannot be modified"
    );
    let routes = hub.proxy_routes().await;
    assert!(routes.get("/user/nia/tpu").is_some(), "{routes}");

    let (status, _) = admin(
        &hub,
        Method::DELETE,
        "/users/nia/servers/tpu",
        Some(json!({ "remove": true })),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin(&hub, Method::GET, "/users/nia/servers/tpu", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "removed");
    let routes = hub.proxy_routes().await;
    assert!(routes.get("/user/nia/tpu").is_none(), "{routes}");
    let (status, _) = admin(
        &hub,
        Method::DELETE,
        "/users/nia/server",
        Some(json!({ "remove": true })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the default server cannot be removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_servers_are_refused_unless_enabled_and_shutdown_stops_the_hub() {
    install_crypto_provider();
    let hub = TestHub::start(&[]).await;
    admin(&hub, Method::POST, "/users/ola", None).await;
    let (status, body) = admin(&hub, Method::POST, "/users/ola/servers/gpu", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("not enabled"));
    let (status, body) = admin(
        &hub,
        Method::POST,
        "/shutdown",
        Some(json!({ "servers": "yes" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = admin(&hub, Method::POST, "/shutdown", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let url = format!("{}/hub/api/", hub.public_url);
    wait_for(
        "the hub to stop answering",
        Duration::from_secs(20),
        || async {
            // The proxy stays up; the hub behind it is gone, so the proxy answers with an error.
            let status = reqwest::get(&url).await.ok().map(|r| r.status());
            (status != Some(StatusCode::OK)).then_some(())
        },
    )
    .await;
}

const OAUTH_SERVICE_TOKEN: &str =
    "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";

/// Logs `browser` in to service `itoauth` through the hub's OAuth provider, as the service's
/// `HubOAuth` does: authorize (code), then exchange the code for an access token.
async fn oauth_access_token(hub: &TestHub, browser: &crate::support::Browser) -> String {
    let redirect_uri = "/services/itoauth/oauth_callback";
    let response = browser
        .get(&format!(
            "/hub/api/oauth2/authorize?client_id=service-itoauth&redirect_uri={redirect_uri}&response_type=code"
        ))
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let code = url::Url::parse(&format!("http://hub{location}"))
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no code in {location}"));
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/hub/api/oauth2/token", hub.public_url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "service-itoauth"),
            ("client_secret", OAUTH_SERVICE_TOKEN),
            ("code", &code),
            ("redirect_uri", redirect_uri),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {reply}"))
        .to_string()
}

/// The user's tokens as `GET /users/{name}/tokens` lists them.
async fn listed_tokens(hub: &TestHub, user: &str) -> Vec<Value> {
    let (status, body) = admin(hub, Method::GET, &format!("/users/{user}/tokens"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["api_tokens"].as_array().unwrap().clone()
}

/// JupyterHub's `DELETE /users/{name}/tokens/{id}`: deleting a token an OAuth client holds
/// revokes every token that client holds for the user; deleting an API token revokes only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_oauth_token_revokes_the_clients_tokens_and_an_api_token_only_itself() {
    use crate::support::test_hub::{HubOptions, PASSWORD};
    // Trusted (no confirmation page): this test is about revocation, not consent.
    let services = format!(
        "  - name: itoauth\n    api_token: \"{OAUTH_SERVICE_TOKEN}\"\n    oauth_no_confirm: true\n"
    );
    let hub = TestHub::start_with_options(HubOptions {
        services_yaml: &services,
        extra_yaml: "roles:\n  - name: itoauth-users\n    scopes: [\"access:services!service=itoauth\"]\n    users: [itoauthu]\n",
        ..HubOptions::default()
    })
    .await;
    let browser = hub.browser();
    assert_eq!(
        browser.login("itoauthu", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    // Two logins to the service (say, two browser tabs whose cookies expired), two API tokens.
    let oauth_first = oauth_access_token(&hub, &browser).await;
    let oauth_second = oauth_access_token(&hub, &browser).await;
    let api_first = token_for(&hub, "itoauthu", &[]).await;
    let api_second = token_for(&hub, "itoauthu", &[]).await;
    let works = |token: String| {
        let hub = &hub;
        async move { call(hub, &token, Method::GET, "/user", None).await.0 == StatusCode::OK }
    };
    for token in [&oauth_first, &oauth_second, &api_first, &api_second] {
        assert!(works(token.clone()).await);
    }
    let tokens = listed_tokens(&hub, "itoauthu").await;
    let of_client: Vec<&Value> = tokens
        .iter()
        .filter(|t| t["oauth_client"] == "service-itoauth")
        .collect();
    assert_eq!(of_client.len(), 2, "{tokens:#?}");
    let plain: Vec<&Value> = tokens
        .iter()
        .filter(|t| t["oauth_client"].is_null())
        .collect();
    assert_eq!(plain.len(), 2, "{tokens:#?}");

    // An API token: only itself.
    let (status, _) = admin(
        &hub,
        Method::DELETE,
        &format!(
            "/users/itoauthu/tokens/{}",
            plain[0]["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(listed_tokens(&hub, "itoauthu").await.len(), 3);
    let still_working = [
        works(api_first.clone()).await,
        works(api_second.clone()).await,
    ];
    assert_eq!(
        still_working.iter().filter(|w| **w).count(),
        1,
        "exactly one API token is revoked"
    );
    assert!(works(oauth_first.clone()).await && works(oauth_second.clone()).await);

    // One OAuth token: all of the client's tokens for the user.
    let (status, _) = admin(
        &hub,
        Method::DELETE,
        &format!(
            "/users/itoauthu/tokens/{}",
            of_client[1]["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = listed_tokens(&hub, "itoauthu").await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert!(left[0]["oauth_client"].is_null(), "{left:#?}");
    assert!(!works(oauth_first).await && !works(oauth_second).await);
    assert!(works(api_first).await || works(api_second).await);
}

/// With `public_url`, server models and share codes carry absolute URLs on that origin
/// (JupyterHub's `full_url`, `full_progress_url`, `full_accept_url`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_makes_full_urls_of_servers_shares_and_share_codes() {
    let extra = format!("{EXTRA}public_url: https://hub.example.org:8443/\n");
    let dir = world_readable_tempdir();
    let hub =
        TestHub::start_with_extra(&[], "6.1.1", Some(standin_server(dir.path(), 0.0)), &extra)
            .await;
    let (status, _) = admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["itpub", "itpubfriend"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, created) = admin(&hub, Method::PUT, "/users/itpub/servers/gpu", None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, server) = admin(&hub, Method::GET, "/users/itpub/servers/gpu", None).await;
    assert_eq!(server["url"], "/user/itpub/gpu/");
    assert_eq!(
        server["full_url"],
        "https://hub.example.org:8443/user/itpub/gpu/"
    );
    assert_eq!(
        server["full_progress_url"],
        "https://hub.example.org:8443/hub/api/users/itpub/servers/gpu/progress"
    );
    let (_, user) = admin(
        &hub,
        Method::GET,
        "/users/itpub?include_stopped_servers=1",
        None,
    )
    .await;
    assert_eq!(
        user["servers"]["gpu"]["full_url"], "https://hub.example.org:8443/user/itpub/gpu/",
        "{user}"
    );
    // The server itself is told its public URL and the hub's, as JupyterHub's spawner does.
    let (status, _) = admin(&hub, Method::POST, "/users/itpub/servers/gpu", None).await;
    assert!(matches!(status.as_u16(), 201 | 202), "{status}");
    wait_for(
        "itpub's gpu server to be ready",
        Duration::from_secs(90),
        || async {
            let (_, server) = admin(&hub, Method::GET, "/users/itpub/servers/gpu", None).await;
            (server["ready"] == true).then_some(())
        },
    )
    .await;
    for (variable, expected) in [
        (
            "JUPYTERHUB_PUBLIC_URL",
            "https://hub.example.org:8443/user/itpub/gpu/",
        ),
        (
            "JUPYTERHUB_PUBLIC_HUB_URL",
            "https://hub.example.org:8443/hub/",
        ),
    ] {
        let url = format!(
            "{}/user/itpub/gpu/hubfleet-test-env/{variable}",
            hub.public_url
        );
        let seen = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert_eq!(seen, expected, "{variable}");
    }

    let (status, code) = admin(
        &hub,
        Method::POST,
        "/share-codes/itpub/gpu",
        Some(json!({ "expires_in": 3600 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{code}");
    let accept = code["accept_url"].as_str().unwrap();
    assert!(accept.starts_with("/hub/accept-share?code="), "{code}");
    assert_eq!(
        code["full_accept_url"],
        format!("https://hub.example.org:8443{accept}")
    );
    assert_eq!(
        code["server"]["full_url"],
        "https://hub.example.org:8443/user/itpub/gpu/"
    );
    let (status, share) = admin(
        &hub,
        Method::POST,
        "/shares/itpub/gpu",
        Some(json!({ "user": "itpubfriend" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{share}");
    assert_eq!(
        share["server"]["full_url"],
        "https://hub.example.org:8443/user/itpub/gpu/"
    );
}

/// Operations where stock JupyterHub itself answers differently from its own OpenAPI document;
/// the conformance run leaves them out.
const KNOWN_SPEC_DEVIATIONS: &[(&str, &str)] = &[
    // `apihandlers/services.py`: returns an object keyed by name; the spec says a list.
    ("GET", "/services"),
    // `apihandlers/proxy.py`: PATCH takes `api_url`/`auth_token`; the spec lists ip/port/protocol.
    ("PATCH", "/proxy"),
    // `apihandlers/hub.py`: shutting down ends the run; never part of a fuzzing session.
    ("POST", "/shutdown"),
];

/// Findings that stock JupyterHub produces too, so they are accepted:
/// - error statuses the spec does not list (it documents few 4xx codes; `apihandlers/*.py` raise
///   400/403/404/409 throughout), and
/// - `null` where the spec's schema says string or object without `nullable` (`apihandlers/base.py`
///   emits `auth_state: null`, `last_activity: null` for never-active users and tokens,
///   `expires_at: null` for tokens that never expire).
///
/// Returns the findings that are not of these kinds.
fn unexpected_findings(report: &str) -> Vec<String> {
    let mut unexpected = Vec::new();
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    for (index, line) in lines.iter().enumerate() {
        if let Some(code) = line.strip_prefix("Received: ") {
            // 401 is `POST /oauth2/token`'s `invalid_client` (RFC 6749; oauthlib behind
            // `apihandlers/auth.py` answers the same).
            if !matches!(code, "400" | "401" | "403" | "404" | "405" | "409") {
                unexpected.push(format!("undocumented status {code}"));
            }
        } else if line.contains(" is not of type ")
            || line.contains("is a required property")
            || line.contains("Additional properties")
            || line.contains("is not valid under")
        {
            if !line.starts_with("null is not of type") {
                unexpected.push(line.to_string());
            }
        } else if line.starts_with("- ST")
            && !line.starts_with("- ST103 Undocumented status code")
            && !line.starts_with("- ST108 Response violates schema")
        {
            unexpected.push(format!("{line} (near line {index})"));
        }
    }
    unexpected
}

/// schemathesis against a live hub with JupyterHub's spec and an admin token. The venv is made
/// by `scripts/test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_to_the_jupyterhub_openapi_spec() {
    install_crypto_provider();
    let venv = envs_dir().join("schemathesis");
    let st = venv.join("bin/st");
    assert!(
        st.is_file(),
        "{} is missing: run `scripts/test` (it installs schemathesis into <workspace>/.cache/envs/schemathesis)",
        st.display()
    );
    // The upstream spec lives in the shared material beside every checkout (`../shared`).
    let spec = workspace_root().join("../shared/spec/jupyterhub-rest-api.yml");
    assert!(spec.is_file(), "{} is missing", spec.display());
    let hub = TestHub::start_with_extra(&[], "6.1.1", None, EXTRA).await;
    admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["sam", "tia"] })),
    )
    .await;
    let mut command = tokio::process::Command::new(&st);
    command
        .arg("run")
        .arg(&spec)
        .arg("--url")
        .arg(format!("{}/hub/api", hub.public_url))
        .arg("-H")
        .arg(format!("Authorization: token {ADMIN_TOKEN}"))
        .arg("--checks")
        .arg("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance")
        .arg("--max-examples")
        .arg("5")
        .arg("--no-color")
        .arg("--phases")
        .arg("examples,fuzzing")
        .arg("--request-timeout")
        .arg("20");
    for (method, path) in KNOWN_SPEC_DEVIATIONS {
        command
            .arg("--exclude-name")
            .arg(format!("{method} {path}"));
    }
    // Starting servers spawns real processes; stopping is harmless but starting is not fuzzed.
    command
        .arg("--exclude-path-regex")
        .arg(".*/server(s/[^/]+)?$");
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("schemathesis finishes within 5 minutes")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("Failures:") || output.status.success(),
        "schemathesis did not run to completion:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("Examples") || stdout.contains("Fuzzing"),
        "schemathesis ran no phase:\n{stdout}"
    );
    let unexpected = unexpected_findings(&stdout);
    assert!(
        unexpected.is_empty(),
        "schemathesis found deviations stock JupyterHub does not have: {unexpected:#?}\n{stdout}"
    );
}
