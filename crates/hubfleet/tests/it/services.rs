//! Culling and services end to end: the built-in idle culler, the stock `jupyterhub-idle-culler`
//! as a hub-managed service, and a stock OAuth service (`jupyterhub-announcement`) that logs
//! people in through the hub.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::Browser;
use crate::support::standin::{standin_server, world_readable_tempdir};
use crate::support::test_hub::{HubOptions, PASSWORD, TestHub};
use crate::support::{envs_dir, free_port, wait_for};

const CULLER_TOKEN: &str = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff";
const ANNOUNCEMENT_TOKEN: &str = "a11ce0a11ce0a11ce0a11ce0a11ce0a11ce0a11ce0a11ce0a11ce0a11ce0a11c";

async fn server_running(hub: &TestHub, user: &str) -> bool {
    let model: Value = hub
        .api(reqwest::Method::GET, &format!("/users/{user}"))
        .await
        .json()
        .await
        .unwrap();
    !model["server"].is_null()
}

async fn start_server(hub: &TestHub, user: &str) {
    let browser = hub.browser();
    assert_eq!(
        browser.login(user, PASSWORD).await.status(),
        StatusCode::FOUND
    );
    browser.get_following("/hub/spawn").await;
    wait_for(
        &format!("{user}'s server to run"),
        Duration::from_secs(90),
        || async { server_running(hub, user).await.then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builtin_culler_stops_idle_servers_and_spares_busy_ones() {
    let dir = world_readable_tempdir();
    let hub = TestHub::start_with_options(HubOptions {
        users: &["itcullbusy"],
        jupyterhub: "6.1.1",
        cmd: Some(standin_server(dir.path(), 0.0)),
        extra_yaml: "cull:\n  timeout: 4s\n  every: 1s\n",
        ..HubOptions::default()
    })
    .await;
    start_server(&hub, "itcullbusy").await;

    // Traffic through the proxy counts as activity: a server in use outlives the timeout.
    let client = reqwest::Client::new();
    let busy_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < busy_until {
        let response = client
            .get(format!("{}/user/itcullbusy/", hub.public_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            server_running(&hub, "itcullbusy").await,
            "culled while in use"
        );
        tokio::time::sleep(Duration::from_millis(500)).await; // paces the traffic, not a wait
    }

    // Left alone, it is culled.
    wait_for(
        "the idle server to be culled",
        Duration::from_secs(60),
        || async { (!server_running(&hub, "itcullbusy").await).then_some(()) },
    )
    .await;
    assert!(
        hub.server_target("itcullbusy").await.is_none(),
        "route removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_jupyterhub_idle_culler_culls_as_a_managed_service() {
    let dir = world_readable_tempdir();
    let python = envs_dir().join("services/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/test",
        python.display()
    );
    let services = format!(
        r#"  - name: idle-culler
    api_token: "{CULLER_TOKEN}"
    command: ["{python}", "-m", "jupyterhub_idle_culler", "--timeout=4", "--cull-every=1"]
    scopes: [list:users, read:users:activity, read:servers, delete:servers]
"#,
        python = python.display()
    );
    let hub = TestHub::start_with_options(HubOptions {
        users: &["itstockcull"],
        jupyterhub: "6.1.1",
        cmd: Some(standin_server(dir.path(), 0.0)),
        services_yaml: &services,
        extra_yaml: "cull:\n  enabled: false\n",
        ..HubOptions::default()
    })
    .await;
    start_server(&hub, "itstockcull").await;
    wait_for(
        "jupyterhub-idle-culler to cull the idle server",
        Duration::from_secs(60),
        || async { (!server_running(&hub, "itstockcull").await).then_some(()) },
    )
    .await;
    let log = std::fs::read_to_string(hub.data_dir.join("logs/service-idle-culler.log")).unwrap();
    assert!(
        log.contains("Culling server") || log.contains("culling"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stock_oauth_service_admits_users_with_access_and_refuses_others() {
    let python = envs_dir().join("services/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/test",
        python.display()
    );
    let port = free_port();
    let extra = format!(
        r#"  - name: announcement
    api_token: "{ANNOUNCEMENT_TOKEN}"
    url: http://127.0.0.1:{port}
    command: ["{python}", "-m", "jupyterhub_announcement", "--AnnouncementService.port={port}"]
"#,
        python = python.display()
    );
    let roles = r#"roles:
  - name: announcement-readers
    scopes: ["access:services!service=announcement"]
    users: [itsvcreader]
"#;
    let hub = TestHub::start_with_options(HubOptions {
        services_yaml: &extra,
        extra_yaml: roles,
        ..HubOptions::default()
    })
    .await;
    // The service answers through its route once the hub has started it.
    wait_for(
        "the announcement service to answer",
        Duration::from_secs(60),
        || async {
            let response = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(format!("{}/services/announcement/", hub.public_url))
                .send()
                .await
                .ok()?;
            (response.status() != StatusCode::SERVICE_UNAVAILABLE
                && response.status() != StatusCode::NOT_FOUND)
                .then_some(())
        },
    )
    .await;

    // Anonymous visitors are sent to the hub's login.
    let anonymous = hub.browser();
    let (url, _) = anonymous.get_following("/services/announcement/").await;
    assert_eq!(url.path(), "/hub/login", "{url}");

    // A logged-in user with access:services gets in without logging in again, once they have
    // confirmed what the service may do for them (JupyterHub's OAuth confirmation page).
    let reader = hub.browser();
    assert_eq!(
        reader.login("itsvcreader", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    let (url, response) = reader.get_following("/services/announcement/").await;
    let (url, response) = reader.authorize_oauth(url, response).await;
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    assert_eq!(url.path(), "/services/announcement/");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("itsvcreader"),
        "the service knows who logged in:\n{page}"
    );

    // A logged-in user without it is refused.
    let outsider = hub.browser();
    assert_eq!(
        outsider.login("itsvcoutsider", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    let (url, response) = outsider.get_following("/services/announcement/").await;
    assert!(
        response.status().is_client_error(),
        "{} at {url}",
        response.status()
    );
}

const RUNTIME_TOKEN: &str = "5e41ce5e41ce5e41ce5e41ce5e41ce5e41ce5e41ce5e41ce5e41ce5e41ce5e41";

async fn call(
    hub: &TestHub,
    token: &str,
    method: reqwest::Method,
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
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// What the proxy answers at `path` (no redirects followed), and its body.
async fn through_proxy(hub: &TestHub, path: &str) -> (StatusCode, String) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{path}", hub.public_url))
        .send()
        .await
        .expect("request through the proxy");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// Starts the OAuth code flow for `client_id` as a logged-in browser, confirming the hub's
/// authorization page if it shows one: the redirect's URL, or the refusal's status.
async fn authorize(browser: &Browser, client_id: &str, redirect_uri: &str) -> Result<String, u16> {
    let path = format!(
        "/hub/api/oauth2/authorize?client_id={client_id}&redirect_uri={redirect_uri}&response_type=code&state=s1"
    );
    let mut response = browser.get(&path).await;
    if response.status() == StatusCode::OK {
        let page = response.text().await.unwrap();
        response = browser.confirm_oauth(&browser.url(&path), &page).await;
    }
    match response.headers().get("location") {
        Some(location) if response.status() == StatusCode::FOUND => {
            Ok(location.to_str().unwrap().to_string())
        }
        _ => Err(response.status().as_u16()),
    }
}

async fn admin(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(
        hub,
        crate::support::test_hub::ADMIN_TOKEN,
        method,
        path,
        body,
    )
    .await
}

/// What runtime service `rt` at `url` has while it exists: a listing entry, its token, its route
/// and its OAuth client. Returns the browser of a user the client granted a code.
async fn check_present(hub: &TestHub, url: &str) -> Browser {
    use reqwest::Method;
    let (_, listed) = admin(hub, Method::GET, "/services", None).await;
    assert_eq!(listed["rt"]["url"], url, "{listed}");
    assert!(listed["test-admin"].is_object(), "{listed}");
    let (status, me) = call(hub, RUNTIME_TOKEN, Method::GET, "/user", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["kind"].as_str(), me["name"].as_str()),
        (Some("service"), Some("rt"))
    );
    wait_for("the service's route", Duration::from_secs(30), || async {
        let (status, body) = through_proxy(hub, "/services/rt/").await;
        (status == StatusCode::OK && body.contains("runtime service page")).then_some(())
    })
    .await;
    let routes = hub.proxy_routes().await;
    assert_eq!(routes["/services/rt"]["target"], url, "{routes}");
    let browser = hub.browser();
    assert_eq!(
        browser.login("itrtuser", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    let redirect = authorize(&browser, "service-rt", "/services/rt/oauth_callback")
        .await
        .expect("the service's OAuth client grants a code");
    assert!(
        redirect.starts_with("/services/rt/oauth_callback?code="),
        "{redirect}"
    );
    browser
}

/// `POST`/`DELETE /services/{name}` (JupyterHub 5): JupyterHub's rules on what may be created and
/// by whom; the service's token, OAuth client and route exist while it does, survive a hub
/// restart, and go with it.
#[tokio::test(flavor = "multi_thread")]
async fn runtime_services_are_created_routed_kept_across_restarts_and_deleted() {
    use reqwest::Method;
    use serde_json::json;

    use crate::support::ProcessGuard;
    use crate::support::test_hub::ADMIN_TOKEN;

    // A real HTTP server for the service's route: Python's, serving a marker page under
    // /services/rt/ (the proxy forwards the whole path).
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("services/rt")).unwrap();
    std::fs::write(
        site.path().join("services/rt/index.html"),
        "runtime service page",
    )
    .unwrap();
    let port = free_port();
    let mut command = std::process::Command::new("/usr/bin/python3");
    command
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(site.path());
    let _site_server = ProcessGuard::spawn("runtime-service-site", command);
    let roles = r#"roles:
  - name: service-maker
    scopes: ["admin:services"]
    users: [itrtmaker]
  - name: rt-users
    scopes: ["access:services!service=rt"]
    users: [itrtuser]
"#;
    let mut hub = TestHub::start_with_options(HubOptions {
        extra_yaml: roles,
        ..HubOptions::default()
    })
    .await;
    let (status, created) = admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({ "usernames": ["itrtmaker", "itrtplain"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token_of = |user: &str| {
        let (hub, path) = (&hub, format!("/users/{user}/tokens"));
        async move {
            let (status, body) = call(hub, ADMIN_TOKEN, Method::POST, &path, Some(json!({}))).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["token"].as_str().unwrap().to_string()
        }
    };
    let maker = token_of("itrtmaker").await;
    let plain = token_of("itrtplain").await;
    let url = format!("http://127.0.0.1:{port}");
    let spec = json!({
        "url": url,
        "api_token": RUNTIME_TOKEN,
        "info": { "owner": "ops" },
        "display": false,
    });

    // Who may create what (JupyterHub's `_check_service_scopes` and model checks).
    let (status, _) = call(
        &hub,
        &plain,
        Method::POST,
        "/services/rt",
        Some(spec.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admin:services is needed");
    let (status, reply) = call(
        &hub,
        &maker,
        Method::POST,
        "/services/rt",
        Some(json!({ "url": url, "admin": true })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "no admin service from a caller without admin's scopes: {reply}"
    );
    for (body, why) in [
        (json!({}), "empty model"),
        (json!({ "url": url, "colour": "red" }), "unknown key"),
        (json!({ "url": 5 }), "wrong type"),
        (json!({ "command": ["sleep", "1"] }), "managed at runtime"),
        (json!({ "url": "ftp://127.0.0.1/" }), "not http(s)"),
        (
            json!({ "api_token": "short" }),
            "token too short to store hashed",
        ),
        (
            json!({ "oauth_client_id": "rt" }),
            "client id without service-",
        ),
        (
            json!({ "oauth_no_confirm": true }),
            "oauth without redirect URI",
        ),
    ] {
        let (status, reply) = call(&hub, &maker, Method::POST, "/services/rt", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {reply}");
    }
    let (status, _) = admin(&hub, Method::GET, "/services/rt", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "refused creations leave nothing"
    );

    let (status, model) = call(
        &hub,
        &maker,
        Method::POST,
        "/services/rt",
        Some(spec.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    assert_eq!(model["name"], "rt");
    assert_eq!(model["url"], url.as_str());
    assert_eq!(model["prefix"], "/services/rt/");
    assert_eq!(model["info"], json!({ "owner": "ops" }));
    assert_eq!(model["display"], false);
    assert_eq!(model["admin"], false);
    // A second creation, of it or of a configured service, is a conflict.
    let (status, _) = admin(&hub, Method::POST, "/services/rt", Some(spec.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = admin(
        &hub,
        Method::POST,
        "/services/test-admin",
        Some(json!({ "url": url })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = admin(&hub, Method::DELETE, "/services/test-admin", None).await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "configured services stay"
    );

    check_present(&hub, &url).await;

    // Kept across a hub restart (it lives in the database).
    hub.kill_hub();
    hub.launch().await;
    let browser = check_present(&hub, &url).await;

    let (status, _) = call(&hub, &plain, Method::DELETE, "/services/rt", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, reply) = call(&hub, &maker, Method::DELETE, "/services/rt", None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, _) = admin(&hub, Method::DELETE, "/services/rt", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin(&hub, Method::GET, "/services/rt", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&hub, RUNTIME_TOKEN, Method::GET, "/user", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "its token is revoked");
    assert!(
        hub.proxy_routes().await.get("/services/rt").is_none(),
        "its route is gone"
    );
    assert!(
        authorize(&browser, "service-rt", "/services/rt/oauth_callback")
            .await
            .is_err(),
        "its OAuth client is gone"
    );
    // The name is free again, and the deletion outlives a restart too.
    hub.kill_hub();
    hub.launch().await;
    let (status, listed) = admin(&hub, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed.get("rt").is_none(), "{listed}");
    let (status, model) = admin(&hub, Method::POST, "/services/rt", Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{model}");
    let (status, model) = admin(
        &hub,
        Method::POST,
        "/services/rt",
        Some(json!({ "display": true })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    assert_eq!(model["url"], "", "a service without a URL has no route");
    assert_eq!(model["prefix"], "");
}

/// JupyterHub's OAuth confirmation: a client other than the person's own server (here a service)
/// gets a code only after they confirm on the hub's page (XSRF-checked), once for the same scopes;
/// a service with `oauth_no_confirm` skips the page.
#[tokio::test(flavor = "multi_thread")]
async fn oauth_clients_other_than_own_servers_need_confirmation_once() {
    const ASKING: &str = "a5k1a5k1a5k1a5k1a5k1a5k1a5k1a5k1a5k1a5k1";
    const TRUSTED: &str = "7ru57ed07ru57ed07ru57ed07ru57ed07ru57ed0";
    let services = format!(
        r#"  - name: asking
    url: http://127.0.0.1:9
    api_token: "{ASKING}"
  - name: trusted
    url: http://127.0.0.1:9
    api_token: "{TRUSTED}"
    oauth_no_confirm: true
"#
    );
    let roles = r#"roles:
  - name: service-users
    scopes: ["access:services"]
    users: [itconfirm]
"#;
    let hub = TestHub::start_with_options(HubOptions {
        services_yaml: &services,
        extra_yaml: roles,
        ..HubOptions::default()
    })
    .await;
    let browser = hub.browser();
    assert_eq!(
        browser.login("itconfirm", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    let authorize_path = |service: &str| {
        format!(
            "/hub/api/oauth2/authorize?client_id=service-{service}&redirect_uri=/services/{service}/oauth_callback&response_type=code&state=s1"
        )
    };
    let code_location = |response: &reqwest::Response, service: &str| {
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (response.status() == StatusCode::FOUND
            && location.starts_with(&format!("/services/{service}/oauth_callback?code=")))
        .then_some(location)
    };

    // oauth_no_confirm: straight to the service with a code.
    let response = browser.get(&authorize_path("trusted")).await;
    assert!(
        code_location(&response, "trusted").is_some(),
        "{response:?}"
    );

    // Otherwise a page saying what the service asks for, and no code yet.
    let response = browser.get(&authorize_path("asking")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("Authorize access"), "{page}");
    assert!(page.contains("access:services!service=asking"), "{page}");
    // A forged confirmation (no matching XSRF token) gets nothing.
    let forged = browser
        .client()
        .post(browser.url(&authorize_path("asking")))
        .form(&[("_xsrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get("location").is_none());
    // The person's confirmation gets the service its code, and the code a token.
    let confirmed = browser
        .confirm_oauth(&browser.url(&authorize_path("asking")), &page)
        .await;
    let location = code_location(&confirmed, "asking").expect("a code after confirming");
    let code = url::Url::parse(&format!("http://x{location}"))
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "code")
        .unwrap()
        .1
        .into_owned();
    let token = reqwest::Client::new()
        .post(format!("{}/hub/api/oauth2/token", hub.public_url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "service-asking"),
            ("client_secret", ASKING),
            ("code", code.as_str()),
            ("redirect_uri", "/services/asking/oauth_callback"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);

    // Granted once, the same request goes straight through.
    let again = browser.get(&authorize_path("asking")).await;
    assert!(code_location(&again, "asking").is_some(), "{again:?}");
}
