//! Server sharing end to end (JupyterHub 5's shares): the share and share-code REST API, and
//! their effect with the real `jupyterhub-singleuser` — a person granted a share (by name, or by
//! accepting a code on `/hub/accept-share`) reaches the owner's JupyterLab through the hub's
//! OAuth, and loses it again when the share is revoked.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::Browser;
use crate::support::test_hub::{ADMIN_TOKEN, HubOptions, PASSWORD, SPAWN_TIMEOUT, TestHub};

const PAGINATION: &str = "application/jupyterhub-pagination+json";

/// Owners share by name only with people they may read (JupyterHub's rule); the role grants it.
const EXTRA: &str = r#"allow_named_servers: true
roles:
  - name: sharer
    description: May name other users when sharing
    scopes: ["read:users:name", "read:groups:name"]
    users: [itshalice, shapi-owner]
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

/// A token with its owner's scopes, minted by the admin service.
async fn token_of(hub: &TestHub, user: &str) -> String {
    let (status, body) = call(
        hub,
        ADMIN_TOKEN,
        Method::POST,
        &format!("/users/{user}/tokens"),
        Some(json!({ "note": "sharing test" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().expect("token").to_string()
}

fn hidden_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.split(&marker)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no hidden {name} input in:\n{html}"))
        .to_string()
}

async fn logged_in(hub: &TestHub, user: &str) -> Browser {
    let browser = hub.browser();
    let response = browser.login(user, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::FOUND, "login of {user}");
    browser
}

/// Does `browser` get alice's JupyterLab page?
async fn reaches_lab(browser: &Browser, owner: &str) -> bool {
    let lab = format!("/user/{owner}/lab");
    let (mut url, mut response) = browser.get_following(&lab).await;
    if url.path() == "/hub/api/oauth2/authorize" && response.status() == StatusCode::OK {
        // Someone else's server: the person first confirms the hub's OAuth page.
        (url, response) = browser.authorize_oauth(url, response).await;
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    status == StatusCode::OK && url.path() == lab && body.contains("JupyterLab")
}

#[tokio::test(flavor = "multi_thread")]
async fn shares_and_share_codes_open_and_close_the_owners_jupyterlab() {
    let (owner, bob, carol) = ("itshalice", "itshbob", "itshcarol");
    let hub = TestHub::start_with_options(HubOptions {
        users: &[owner, bob, carol],
        extra_yaml: EXTRA,
        ..HubOptions::default()
    })
    .await;
    let alice = logged_in(&hub, owner).await;
    alice.spawn_and_wait_for_lab(owner, SPAWN_TIMEOUT).await;

    let bob_before = logged_in(&hub, bob).await;
    assert!(
        !reaches_lab(&bob_before, owner).await,
        "bob reached alice's lab unshared"
    );

    // Alice shares her default server with bob, with her own token.
    let token = token_of(&hub, owner).await;
    let (status, share) = call(
        &hub,
        &token,
        Method::POST,
        &format!("/shares/{owner}/"),
        Some(json!({ "user": bob })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{share}");
    assert_eq!(
        share["scopes"],
        json!([format!("access:servers!server={owner}/")])
    );
    assert_eq!(share["user"]["name"], bob);
    assert_eq!(share["group"], Value::Null);
    assert_eq!(share["server"]["user"]["name"], owner);
    assert_eq!(share["server"]["ready"], true);
    assert_eq!(share["server"]["url"], format!("/user/{owner}/"));
    // She cannot grant what she does not hold.
    let (status, body) = call(
        &hub,
        &token,
        Method::POST,
        &format!("/shares/{owner}/"),
        Some(json!({ "user": bob, "scopes": ["admin:servers"] })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let bob_after = logged_in(&hub, bob).await;
    assert!(
        reaches_lab(&bob_after, owner).await,
        "bob cannot reach alice's lab although shared"
    );
    // Bob sees what is shared with him, with his own login.
    let (status, mine) = call(
        &hub,
        &token_of(&hub, bob).await,
        Method::GET,
        &format!("/users/{bob}/shared"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["_pagination"]["total"], 1, "{mine}");
    assert_eq!(mine["items"][0]["server"]["user"]["name"], owner);

    // A share code, accepted by carol on /hub/accept-share.
    let (status, code) = call(
        &hub,
        &token,
        Method::POST,
        &format!("/share-codes/{owner}/"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{code}");
    let accept_url = code["accept_url"].as_str().expect("accept_url").to_string();
    assert!(
        accept_url.starts_with("/hub/accept-share?code="),
        "{accept_url}"
    );
    let carol_browser = logged_in(&hub, carol).await;
    assert!(!reaches_lab(&carol_browser, owner).await);
    let carol_browser = logged_in(&hub, carol).await;
    let page = carol_browser.get(&accept_url).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(owner), "{html}");
    let response = carol_browser
        .client()
        .post(carol_browser.url("/hub/accept-share"))
        .form(&[
            ("_xsrf", hidden_input(&html, "_xsrf")),
            ("code", hidden_input(&html, "code")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("/user/{owner}/")
    );
    assert!(
        reaches_lab(&carol_browser, owner).await,
        "carol cannot reach alice's lab after accepting the code"
    );
    let (_, codes) = call(
        &hub,
        &token,
        Method::GET,
        &format!("/share-codes/{owner}"),
        None,
    )
    .await;
    assert_eq!(codes["items"][0]["exchange_count"], 1, "{codes}");
    assert!(
        codes["items"][0].get("code").is_none(),
        "codes are shown once"
    );
    let (_, shares) = call(&hub, &token, Method::GET, &format!("/shares/{owner}"), None).await;
    assert_eq!(shares["_pagination"]["total"], 2, "{shares}");

    // Revoking bob's share (PATCH without scopes revokes all) closes the server to a fresh login.
    let (status, left) = call(
        &hub,
        &token,
        Method::PATCH,
        &format!("/shares/{owner}/"),
        Some(json!({ "user": bob })),
    )
    .await;
    assert_eq!((status, left), (StatusCode::OK, json!({})));
    let bob_revoked = logged_in(&hub, bob).await;
    assert!(
        !reaches_lab(&bob_revoked, owner).await,
        "bob still reaches alice's lab after revocation"
    );
    // Carol leaves the share herself; the code still works until it is deleted.
    let carol_token = token_of(&hub, carol).await;
    let (status, _) = call(
        &hub,
        &carol_token,
        Method::DELETE,
        &format!("/users/{carol}/shared/{owner}/"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let id = codes["items"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = call(
        &hub,
        &token,
        Method::DELETE,
        &format!("/share-codes/{owner}/?id={id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let carol_again = logged_in(&hub, carol).await;
    assert!(!reaches_lab(&carol_again, owner).await);
    let page = carol_again.get(&accept_url).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND, "a deleted code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_api_validates_requests_and_scopes() {
    let hub = TestHub::start_with_extra(&[], "6.1.1", None, EXTRA).await;
    let admin = |method: Method, path: &str, body: Option<Value>| {
        let path = path.to_string();
        let hub = &hub;
        async move { call(hub, ADMIN_TOKEN, method, &path, body).await }
    };
    let (status, _) = admin(
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["shapi-owner", "shapi-friend", "shapi-other"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = admin(
        Method::POST,
        "/groups/shapi-class",
        Some(json!({ "users": ["shapi-friend"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = admin(Method::PUT, "/users/shapi-owner/servers/gpu", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let owner = token_of(&hub, "shapi-owner").await;
    let other = token_of(&hub, "shapi-other").await;
    let as_owner = |method: Method, path: &str, body: Option<Value>| {
        let path = path.to_string();
        let (hub, owner) = (&hub, owner.clone());
        async move { call(hub, &owner, method, &path, body).await }
    };

    // Bad requests.
    for body in [
        json!({}),
        json!({ "user": "shapi-friend", "group": "shapi-class" }),
        json!({ "user": "shapi-friend", "scopes": ["read:everything"] }),
        json!({ "user": "shapi-friend", "scopes": ["access:servers!server=shapi-other/"] }),
        json!({ "user": "shapi-friend", "extra": 1 }),
        json!({ "user": "nobody-here" }),
    ] {
        let (status, reply) =
            as_owner(Method::POST, "/shares/shapi-owner/gpu", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {reply}");
    }
    let (status, _) = as_owner(
        Method::POST,
        "/shares/shapi-owner/nope",
        Some(json!({ "user": "shapi-friend" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such server");
    let (status, _) = as_owner(Method::POST, "/shares/shapi-owner", Some(json!({}))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // A group share reaches its members' "shared with me" and the group's list.
    let (status, share) = as_owner(
        Method::POST,
        "/shares/shapi-owner/gpu",
        Some(json!({ "group": "shapi-class", "scopes": ["access:servers", "read:servers"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{share}");
    assert_eq!(share["kind"], "group");
    assert_eq!(
        share["scopes"],
        json!([
            "access:servers!server=shapi-owner/gpu",
            "read:servers!server=shapi-owner/gpu"
        ])
    );
    let (_, shared) = admin(Method::GET, "/users/shapi-friend/shared", None).await;
    assert_eq!(
        shared["items"][0]["group"]["name"], "shapi-class",
        "{shared}"
    );
    let (_, shared) = admin(Method::GET, "/groups/shapi-class/shared?limit=1", None).await;
    assert_eq!(shared["_pagination"]["limit"], 1, "{shared}");
    let (status, one) = admin(
        Method::GET,
        "/groups/shapi-class/shared/shapi-owner/gpu",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    // The member now holds the share's scopes.
    let friend = token_of(&hub, "shapi-friend").await;
    let (_, me) = call(&hub, &friend, Method::GET, "/user", None).await;
    let scopes = me["scopes"].as_array().unwrap();
    assert!(
        scopes.contains(&json!("access:servers!server=shapi-owner/gpu")),
        "{me}"
    );
    // Partial revocation keeps the rest.
    let (status, left) = as_owner(
        Method::PATCH,
        "/shares/shapi-owner/gpu",
        Some(json!({ "group": "shapi-class", "scopes": ["read:servers!server=shapi-owner/gpu"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        left["scopes"],
        json!(["access:servers!server=shapi-owner/gpu"])
    );

    // Someone else cannot see or manage the owner's shares.
    let (status, _) = call(&hub, &other, Method::GET, "/shares/shapi-owner", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &hub,
        &other,
        Method::POST,
        "/shares/shapi-owner/gpu",
        Some(json!({ "user": "shapi-other" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Share codes: expiry bounds, one-time display, deletion by code and by id.
    for body in [json!({ "expires_in": 5 }), json!({ "expires_in": "soon" })] {
        let (status, _) = as_owner(Method::POST, "/share-codes/shapi-owner/gpu", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, code) = as_owner(
        Method::POST,
        "/share-codes/shapi-owner/gpu",
        Some(json!({ "expires_in": 3600 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{code}");
    assert_eq!(code["full_accept_url"], Value::Null);
    assert!(code["id"].as_str().unwrap().starts_with("sc_"));
    let secret = code["code"].as_str().unwrap().to_string();
    let (status, _) = as_owner(
        Method::DELETE,
        "/share-codes/shapi-owner/gpu?code=not-the-code",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = as_owner(
        Method::DELETE,
        &format!("/share-codes/shapi-owner/gpu?code={secret}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = as_owner(
        Method::DELETE,
        "/share-codes/shapi-owner/gpu?id=sc_999999",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let client = reqwest::Client::new();
    let listed: Value = client
        .get(format!(
            "{}/hub/api/share-codes/shapi-owner/gpu",
            hub.public_url
        ))
        .header("Authorization", format!("token {owner}"))
        .header("Accept", PAGINATION)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["_pagination"]["total"], 0, "{listed}");

    // Deleting every share of the server.
    let (status, _) = as_owner(Method::DELETE, "/shares/shapi-owner/gpu", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin(
        Method::GET,
        "/groups/shapi-class/shared/shapi-owner/gpu",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Rows the purge must remove and one it must keep, written straight into the hub's database:
/// an expired and a live share code of `user`'s server `gpu`, and an expired API token of
/// `user`. Returns the store, the user's id and the server's id.
async fn seed_expiring_rows(store: &hubfleet_store::Store, user: &str, round: u32) -> (i64, i64) {
    let owner = store
        .get_user(&hubfleet_types::UserName::parse(user).unwrap())
        .await
        .unwrap()
        .expect("user exists");
    let server = store
        .get_server(owner.id, &hubfleet_types::ServerName::parse("gpu").unwrap())
        .await
        .unwrap()
        .expect("server exists");
    let now = hubfleet_types::now();
    let minute = chrono::Duration::minutes(1);
    let scopes = vec![format!("access:servers!server={user}/gpu")];
    for (hash, expires) in [
        (format!("{user}-expired-code-{round}"), now - minute),
        (format!("{user}-live-code-{round}"), now + minute * 60),
    ] {
        store
            .insert_share_code(server.id, &hash, &scopes, now - minute * 2, Some(expires))
            .await
            .unwrap();
    }
    store
        .insert_token(&hubfleet_store::NewToken {
            hash: format!("{user}-expired-token-{round}"),
            owner: hubfleet_store::TokenOwner::User(owner.id),
            scopes: vec!["inherit".to_string()],
            note: "expired".to_string(),
            created: now - minute * 2,
            expires_at: Some(now - minute),
            session_id: None,
            oauth_client_id: None,
        })
        .await
        .unwrap();
    (owner.id, server.id)
}

async fn open_store(hub: &TestHub) -> hubfleet_store::Store {
    hubfleet_store::Store::open(&hub.db_url)
        .await
        .expect("open the hub's database")
}

/// How many share codes of the server and tokens of the user are stored, expired or not.
async fn stored_rows(store: &hubfleet_store::Store, user_id: i64, server_id: i64) -> (i64, usize) {
    // Listing "as of" the epoch counts expired codes too: only deletion removes them.
    let epoch = chrono::DateTime::from_timestamp(0, 0).unwrap();
    let (_, codes) = store
        .list_share_codes(hubfleet_store::ShareQuery::Server(server_id), epoch, 0, 100)
        .await
        .unwrap();
    let tokens = store.list_user_tokens(user_id).await.unwrap().len();
    (codes, tokens)
}

async fn wait_for_purge(store: &hubfleet_store::Store, user_id: i64, server_id: i64, why: &str) {
    crate::support::wait_for(why, std::time::Duration::from_secs(30), || async {
        // The live code stays; the expired code and token go.
        (stored_rows(store, user_id, server_id).await == (1, 0)).then_some(())
    })
    .await;
}

async fn user_with_server(hub: &TestHub, user: &str) {
    let (status, _) = call(
        hub,
        ADMIN_TOKEN,
        Method::POST,
        &format!("/users/{user}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(
        hub,
        ADMIN_TOKEN,
        Method::PUT,
        &format!("/users/{user}/servers/gpu"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

/// Expired share codes and tokens are deleted from the database, not only refused: when the hub
/// starts, and every `hub.purge_expired_every` (JupyterHub: at startup, then hourly).
#[tokio::test(flavor = "multi_thread")]
async fn expired_share_codes_and_tokens_are_purged_at_startup_and_periodically() {
    // At startup: rows that expired while no hub ran are gone soon after the next one starts,
    // with the default hourly period, so only the start can have purged them.
    let mut hub = TestHub::start_with_extra(&[], "6.1.1", None, EXTRA).await;
    user_with_server(&hub, "itpurgea").await;
    hub.kill_hub();
    let store = open_store(&hub).await;
    let (user_id, server_id) = seed_expiring_rows(&store, "itpurgea", 1).await;
    assert_eq!(
        stored_rows(&store, user_id, server_id).await,
        (2, 1),
        "seeded rows are stored"
    );
    hub.launch().await;
    wait_for_purge(&store, user_id, server_id, "the purge at startup").await;
    store.close().await;
    drop(hub);

    // Periodically: rows seeded twice into a running hub disappear twice; the second time can
    // only be a later run than the one at startup.
    let hub = TestHub::start_with_options(HubOptions {
        extra_yaml: EXTRA,
        hub_yaml: "  purge_expired_every: 1s\n",
        ..HubOptions::default()
    })
    .await;
    user_with_server(&hub, "itpurgeb").await;
    let store = open_store(&hub).await;
    for round in 1..=2 {
        let (user_id, server_id) = seed_expiring_rows(&store, "itpurgeb", round).await;
        wait_for_purge(&store, user_id, server_id, "a periodic purge").await;
        // Only the live code is left; clear it so that the next round counts from scratch.
        store.delete_server_share_codes(server_id).await.unwrap();
    }
    store.close().await;
}
