//! Shared password rotation and expiry: an admin replaces the password from the admin page or the
//! REST API (`POST /hub/api/shared-password`); the old one is refused at once, the new one works,
//! sessions are kept or ended as chosen, the rotated password survives a hub restart, and expired
//! passwords (rotated or configured) are refused with a message saying so.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::standin::{standin_server, world_readable_tempdir};
use crate::support::test_hub::{ADMIN_TOKEN, HubOptions, PASSWORD, TestHub};
use crate::support::{Browser, hidden_input_value};

const ADMIN: &str = "itpwadmin";

async fn login(hub: &TestHub, user: &str, password: &str) -> (Browser, reqwest::Response) {
    let browser = hub.browser();
    let response = browser.login(user, password).await;
    (browser, response)
}

async fn logged_in(hub: &TestHub, user: &str, password: &str) -> Browser {
    let (browser, response) = login(hub, user, password).await;
    assert_eq!(response.status(), StatusCode::FOUND, "{user} logs in");
    browser
}

/// Whether the browser's login session still identifies `user`.
async fn session_works(browser: &Browser, user: &str) -> bool {
    let response = browser.get("/hub/api/user").await;
    if response.status() != StatusCode::OK {
        return false;
    }
    let body: Value = response.json().await.unwrap();
    body["name"] == user
}

async fn rotate_api(hub: &TestHub, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/hub/api/shared-password", hub.public_url))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .json(&body)
        .send()
        .await
        .expect("POST /hub/api/shared-password")
}

async fn assert_refused(hub: &TestHub, user: &str, password: &str, message: &str) {
    let (_, response) = login(hub, user, password).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "{user}/{password}"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains(message), "{message:?} in:\n{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_rotate_the_shared_password_and_it_expires() {
    let dir = world_readable_tempdir();
    let mut hub = TestHub::start_with_options(HubOptions {
        cmd: Some(standin_server(dir.path(), 0.0)),
        admin_users: &[ADMIN],
        ..HubOptions::default()
    })
    .await;
    let admin = logged_in(&hub, ADMIN, PASSWORD).await;
    let kept = logged_in(&hub, "itpwkept", PASSWORD).await;

    // The admin page's form rotates it, keeping sessions.
    let page = admin.get("/hub/admin").await.text().await.unwrap();
    assert!(page.contains("Shared password"), "{page}");
    let xsrf = hidden_input_value(&page, "_xsrf").expect("the admin page has an _xsrf field");
    let rotated = admin
        .client()
        .post(admin.url("/hub/admin/shared-password"))
        .form(&[
            ("_xsrf", xsrf.as_str()),
            ("password", "workshop-two"),
            ("expires_at", ""),
            ("end_sessions", "none"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::SEE_OTHER);
    let page = admin.get("/hub/admin").await.text().await.unwrap();
    assert!(
        page.contains("Shared password changed; the old one no longer works."),
        "{page}"
    );
    assert!(
        page.contains("The current password does not expire."),
        "{page}"
    );
    assert_refused(&hub, "itpwlate", PASSWORD, "Invalid username or password.").await;
    let fresh = logged_in(&hub, "itpwfresh", "workshop-two").await;
    assert!(session_works(&kept, "itpwkept").await, "sessions were kept");

    // Too short, and without the XSRF field: refused, nothing changes.
    let short = rotate_api(&hub, json!({"password": "short"})).await;
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let no_xsrf = admin
        .client()
        .post(admin.url("/hub/admin/shared-password"))
        .form(&[("password", "workshop-evil")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_xsrf.status(), StatusCode::FORBIDDEN);
    logged_in(&hub, "itpwfresh", "workshop-two").await;

    // The REST API rotates it and ends non-admins' sessions.
    let response = rotate_api(
        &hub,
        json!({"password": "workshop-three", "end_sessions": "non-admin"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["sessions_ended"].as_u64().unwrap() >= 3, "{body}");
    assert_eq!(body["expires_at"], Value::Null);
    assert!(
        !session_works(&kept, "itpwkept").await,
        "non-admins logged out"
    );
    assert!(
        !session_works(&fresh, "itpwfresh").await,
        "non-admins logged out"
    );
    assert!(
        session_works(&admin, ADMIN).await,
        "the admin stays logged in"
    );
    assert_refused(
        &hub,
        "itpwfresh",
        "workshop-two",
        "Invalid username or password.",
    )
    .await;
    logged_in(&hub, "itpwthird", "workshop-three").await;

    // An expiry in the past: the right password is refused, saying it expired.
    let response = rotate_api(
        &hub,
        json!({"password": "workshop-four", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_refused(
        &hub,
        "itpwexpired",
        "workshop-four",
        "This password expired on 2020-01-01",
    )
    .await;

    // A future expiry, ending everyone's sessions (the admin's too); it survives a restart.
    let response = rotate_api(
        &hub,
        json!({"password": "workshop-five", "expires_at": "2099-01-01T10:00:00+02:00", "end_sessions": "all"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_at"], "2099-01-01T08:00:00.000000Z");
    assert!(!session_works(&admin, ADMIN).await, "everyone logged out");
    hub.kill_hub();
    hub.launch().await;
    assert_refused(
        &hub,
        "itpwrestart",
        PASSWORD,
        "Invalid username or password.",
    )
    .await;
    let admin = logged_in(&hub, ADMIN, "workshop-five").await;
    let page = admin.get("/hub/admin").await.text().await.unwrap();
    assert!(
        page.contains("The current password expires 2099-01-01 08:00 UTC."),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_password_past_its_expiry_is_refused() {
    let dir = world_readable_tempdir();
    let auth = format!(
        "auth:\n  kind: shared-password\n  shared_password: \"{PASSWORD}\"\n  shared_password_expires_at: 2020-01-01T00:00:00Z\n"
    );
    let hub = TestHub::start_with_options(HubOptions {
        cmd: Some(standin_server(dir.path(), 0.0)),
        auth_yaml: Some(&auth),
        ..HubOptions::default()
    })
    .await;
    assert_refused(
        &hub,
        "itpwconfig",
        PASSWORD,
        "This password expired on 2020-01-01 at 00:00 UTC",
    )
    .await;
    assert_refused(
        &hub,
        "itpwconfig",
        "wrong-password",
        "Invalid username or password.",
    )
    .await;
}
