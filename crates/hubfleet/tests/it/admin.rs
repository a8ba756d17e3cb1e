//! The admin pages (`/hub/admin`) and login hardening: an admin drives the page in headless
//! Chromium (`tests/browser/admin.mjs`), pages and search work at scale, everyone without
//! `admin-ui` gets 403 on every admin route, failed logins are rate limited per name and per
//! client address, and logging out kills the server-side session.

use std::path::PathBuf;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::standin::{standin_server, world_readable_tempdir};
use crate::support::test_hub::{ADMIN_TOKEN, HubOptions, PASSWORD, TestHub};
use crate::support::{Browser, workspace_root};

const ADMIN: &str = "itadmin";

/// `<workspace>/.cache/node/node_modules`, where `scripts/test` installs `playwright-core`.
fn node_modules() -> PathBuf {
    let dir = workspace_root().join(".cache/node/node_modules");
    assert!(
        dir.join("playwright-core/package.json").is_file(),
        "playwright-core is missing from {}: run `scripts/test` (it installs Debian chromium and \
         npm playwright-core there), or `npm install --prefix {} playwright-core`",
        dir.display(),
        dir.parent().expect("has a parent").display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: run `scripts/test` or `apt-get install chromium`"
    );
    dir
}

fn hub_xsrf(browser: &Browser) -> String {
    browser
        .cookie_header_for("/hub/")
        .split("; ")
        .find_map(|c| c.strip_prefix("_xsrf="))
        .map(String::from)
        .expect("the hub set an _xsrf cookie")
}

async fn logged_in(hub: &TestHub, user: &str) -> Browser {
    let browser = hub.browser();
    let response = browser.login(user, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::FOUND, "{user} logs in");
    browser
}

async fn post_form(browser: &Browser, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    browser
        .client()
        .post(browser.url(path))
        .form(fields)
        .send()
        .await
        .expect("POST to the hub")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_manages_users_groups_servers_and_tokens_in_chromium() {
    let node_modules = node_modules();
    let dir = world_readable_tempdir();
    let (target, other) = ("itadminbob", "itadmincarol");
    let hub = TestHub::start_with_options(HubOptions {
        users: &[ADMIN, target, other],
        cmd: Some(standin_server(dir.path(), 0.0)),
        admin_users: &[ADMIN],
        ..HubOptions::default()
    })
    .await;
    let screenshot = workspace_root().join("target/test-artifacts/admin.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = workspace_root().join("crates/hubfleet/tests/browser/admin.mjs");
    let mut command = Command::new("node");
    command
        .arg(script)
        .env("HUB_URL", &hub.public_url)
        .env("ADMIN_USER", ADMIN)
        .env("HUB_PASSWORD", PASSWORD)
        .env("API_TOKEN", ADMIN_TOKEN)
        .env("TARGET_USER", target)
        .env("OTHER_USER", other)
        .env("SCREENSHOT", &screenshot)
        .env("NODE_MODULES", &node_modules);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("admin page test passed"), "{stdout}");
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");

    // The end state, through the REST API: the group has its member, the server is stopped,
    // the token is there, the deleted user is gone.
    let group: Value = hub
        .api(Method::GET, "/groups/staff")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(group["users"], json!([target]));
    let bob: Value = hub
        .api(Method::GET, &format!("/users/{target}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bob["servers"], json!({}), "{bob}");
    assert_eq!(bob["groups"], json!(["staff"]), "{bob}");
    let tokens: Value = hub
        .api(Method::GET, &format!("/users/{target}/tokens"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        tokens["api_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["note"] == "made in the admin page test"),
        "{tokens}"
    );
    assert_eq!(
        hub.api(Method::GET, &format!("/users/{other}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_list_pages_and_searches_in_sql_and_refuses_everyone_else() {
    let dir = world_readable_tempdir();
    let hub = TestHub::start_with_options(HubOptions {
        users: &[ADMIN, "itplain"],
        cmd: Some(standin_server(dir.path(), 0.0)),
        admin_users: &[ADMIN],
        ..HubOptions::default()
    })
    .await;
    let names: Vec<String> = (0..120).map(|n| format!("bulk{n:03}")).collect();
    let created = reqwest::Client::new()
        .post(format!("{}/hub/api/users", hub.public_url))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .json(&json!({ "usernames": names }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let admin = logged_in(&hub, ADMIN).await;
    // 120 bulk users + the admin, sorted by name: page 3 holds users 101-121.
    let page = admin.get("/hub/admin?page=3").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Users 101–121 of 121"), "{html}");
    assert!(html.contains("data-user=\"bulk100\"") && html.contains("data-user=\"itadmin\""));
    assert!(
        !html.contains("data-user=\"bulk099\""),
        "page 2's users are not on page 3"
    );
    assert!(html.contains("rel=\"prev\"") && !html.contains("rel=\"next\""));

    let search = admin.get("/hub/admin?q=BULK11").await.text().await.unwrap();
    assert!(search.contains("Users 1–10 of 10 matching"), "{search}");
    assert!(search.contains("data-user=\"bulk119\"") && !search.contains("data-user=\"bulk120\""));
    let none = admin.get("/hub/admin?q=%25").await.text().await.unwrap();
    assert!(
        none.contains("No users match"),
        "a LIKE wildcard is matched literally"
    );

    // A user without admin-ui: 403 on every admin route, and nothing changes.
    let plain = logged_in(&hub, "itplain").await;
    let xsrf = hub_xsrf(&plain);
    for path in ["/hub/admin", "/hub/admin/", "/hub/admin/users/bulk000"] {
        let response = plain.get(path).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "GET {path}");
        assert!(
            response.text().await.unwrap().contains("admin-ui"),
            "GET {path}"
        );
    }
    let posts: [(&str, &[(&str, &str)]); 7] = [
        ("/hub/admin/users", &[("names", "intruder")]),
        ("/hub/admin/users/bulk000/delete", &[]),
        ("/hub/admin/users/bulk000/start", &[("server", "")]),
        ("/hub/admin/users/bulk000/stop", &[("server", "")]),
        ("/hub/admin/users/bulk000/token", &[("note", "stolen")]),
        ("/hub/admin/groups", &[("name", "intruders")]),
        (
            "/hub/admin/groups/members",
            &[
                ("group", "intruders"),
                ("users", "itplain"),
                ("action", "add"),
            ],
        ),
    ];
    for (path, fields) in posts {
        let mut fields = fields.to_vec();
        fields.push(("_xsrf", &xsrf));
        let response = post_form(&plain, path, &fields).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "POST {path}");
        let body = response.text().await.unwrap();
        assert!(body.contains("admin-ui"), "POST {path}: {body}");
    }
    for (path, status) in [
        ("/users/intruder", StatusCode::NOT_FOUND),
        ("/users/bulk000", StatusCode::OK),
        ("/groups/intruders", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(hub.api(Method::GET, path).await.status(), status, "{path}");
    }
    assert_eq!(
        hub.api(Method::GET, "/users/bulk000/tokens")
            .await
            .json::<Value>()
            .await
            .unwrap()["api_tokens"],
        json!([])
    );

    // Anonymous visitors are sent to log in on GET and refused on POST.
    let anonymous = hub.browser();
    let page = anonymous.get("/hub/admin/users/bulk000").await;
    assert_eq!(page.status(), StatusCode::FOUND);
    assert!(
        page.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/hub/login?next=%2Fhub%2Fadmin%2Fusers%2Fbulk000")
    );
    let post = post_form(&anonymous, "/hub/admin/users", &[("names", "x")]).await;
    assert_eq!(post.status(), StatusCode::FORBIDDEN);

    // The admin's forms need the XSRF token.
    let forged = post_form(&admin, "/hub/admin/users", &[("names", "forged")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        hub.api(Method::GET, "/users/forged").await.status(),
        StatusCode::NOT_FOUND
    );

    // Errors come back as messages on the page the form came from.
    let admin_xsrf = hub_xsrf(&admin);
    let unknown = post_form(
        &admin,
        "/hub/admin/users/nobody/start",
        &[("server", ""), ("_xsrf", &admin_xsrf)],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let bad_back = post_form(
        &admin,
        "/hub/admin/groups",
        &[
            ("name", "a/b"),
            ("back", "//evil.example/"),
            ("_xsrf", &admin_xsrf),
        ],
    )
    .await;
    assert_eq!(bad_back.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        bad_back.headers()["location"],
        "/hub/admin",
        "no open redirect"
    );
    let shown = admin.get("/hub/admin").await.text().await.unwrap();
    assert!(
        shown.contains("role=\"alert\">Invalid group name &quot;a&#x2f;b&quot;."),
        "{shown}"
    );
    let again = admin.get("/hub/admin").await.text().await.unwrap();
    assert!(
        !again.contains("Invalid group name"),
        "a message is shown once"
    );
}

/// Posts one login attempt through the proxy, claiming (in vain) to come from `spoofed`.
async fn attempt_login(
    hub: &TestHub,
    user: &str,
    password: &str,
    spoofed: &str,
) -> reqwest::Response {
    let browser = hub.browser();
    let page = browser.get("/hub/login").await;
    assert_eq!(page.status(), StatusCode::OK);
    let xsrf = hub_xsrf(&browser);
    browser
        .client()
        .post(browser.url("/hub/login"))
        .header("X-Forwarded-For", spoofed)
        .form(&[("username", user), ("password", password), ("_xsrf", &xsrf)])
        .send()
        .await
        .expect("POST /hub/login")
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_limited_per_name_and_per_client_address() {
    let dir = world_readable_tempdir();
    let hub = TestHub::start_with(
        &["itvictim", "itbystander"],
        "6.1.1",
        Some(standin_server(dir.path(), 0.0)),
    )
    .await;

    // Five wrong passwords for one name lock it, even against the right password.
    for n in 0..5 {
        let response = attempt_login(&hub, "itvictim", "wrong", &format!("198.51.100.{n}")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "attempt {n}");
    }
    let locked = attempt_login(&hub, "ItVictim", PASSWORD, "203.0.113.9").await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let seconds = retry_after(&locked);
    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    let page = locked.text().await.unwrap();
    assert!(
        page.contains(&format!(
            "Too many failed attempts; try again in {seconds} s"
        )),
        "{page}"
    );
    assert!(page.contains("Too Many Requests"), "{page}");
    // Other names are unaffected.
    assert_eq!(
        attempt_login(&hub, "itbystander", PASSWORD, "1.2.3.4")
            .await
            .status(),
        StatusCode::FOUND
    );

    // The proxy's client address (127.0.0.1 here) is what counts, not what the client claims:
    // failures under many names and many spoofed addresses add up to the per-address limit.
    let mut refused = None;
    for n in 0..60 {
        let response = attempt_login(
            &hub,
            &format!("nobody{n}"),
            "wrong",
            &format!("192.0.2.{n}"),
        )
        .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(n);
            break;
        }
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "attempt {n}");
    }
    // 50 per address, of which the victim's 5 and the bystander's success (refunded) count 5.
    assert_eq!(refused, Some(45), "the address locks at its limit");
    let blocked = attempt_login(&hub, "itbystander", PASSWORD, "192.0.2.200").await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_invalidates_the_server_side_session() {
    let dir = world_readable_tempdir();
    let hub = TestHub::start_with(
        &["itlogout"],
        "6.1.1",
        Some(standin_server(dir.path(), 0.0)),
    )
    .await;
    let browser = logged_in(&hub, "itlogout").await;
    let cookies = browser.cookie_header_for("/hub/");
    assert!(cookies.contains("jupyterhub-hub-login="), "{cookies}");
    let copied = |path: &str| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}{path}", hub.public_url))
            .header("Cookie", cookies.clone())
            .send()
    };
    let before = copied("/hub/api/user").await.unwrap();
    assert_eq!(before.status(), StatusCode::OK, "the copied cookie works");
    assert_eq!(copied("/hub/home").await.unwrap().status(), StatusCode::OK);

    let logout = browser.get("/hub/logout").await;
    assert_eq!(logout.status(), StatusCode::FOUND);

    // The copy still carries the old secret, and the hub no longer honours it.
    let api = copied("/hub/api/user").await.unwrap();
    assert_eq!(
        api.status(),
        StatusCode::FORBIDDEN,
        "API with the copied cookie"
    );
    let home = copied("/hub/home").await.unwrap();
    assert_eq!(
        home.status(),
        StatusCode::FOUND,
        "home with the copied cookie"
    );
    assert!(
        home.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/hub/login"),
        "sent to log in"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_removes_a_named_server_but_not_the_default_one() {
    let dir = world_readable_tempdir();
    let hub = TestHub::start_with_options(HubOptions {
        users: &["itremoveadmin", "itremoveowner"],
        admin_users: &["itremoveadmin"],
        cmd: Some(standin_server(dir.path(), 0.0)),
        extra_yaml: "allow_named_servers: true\n",
        ..HubOptions::default()
    })
    .await;
    let created = hub.api(reqwest::Method::POST, "/users/itremoveowner").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let started = hub
        .api(reqwest::Method::POST, "/users/itremoveowner/servers/gpu")
        .await;
    assert!(started.status().is_success(), "{}", started.status());
    let admin = logged_in(&hub, "itremoveadmin").await;
    admin.get("/hub/admin/users/itremoveowner").await;
    let xsrf = hub_xsrf(&admin);
    let back = "/hub/admin/users/itremoveowner";

    // The default server can only be stopped.
    let refused = post_form(
        &admin,
        "/hub/admin/users/itremoveowner/remove-server",
        &[("_xsrf", &xsrf), ("server", ""), ("back", back)],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);

    let removed = post_form(
        &admin,
        "/hub/admin/users/itremoveowner/remove-server",
        &[("_xsrf", &xsrf), ("server", "gpu"), ("back", back)],
    )
    .await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    let model: serde_json::Value = hub
        .api(
            reqwest::Method::GET,
            "/users/itremoveowner?include_stopped_servers=1",
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        model["servers"].get("gpu").is_none(),
        "gpu was removed: {model}"
    );
    let gone = hub
        .api(reqwest::Method::GET, "/users/itremoveowner/servers/gpu")
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}
