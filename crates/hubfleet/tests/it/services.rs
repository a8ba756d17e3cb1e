//! Culling and services end to end: the built-in idle culler, the stock `jupyterhub-idle-culler`
//! as a hub-managed service, and a stock OAuth service (`jupyterhub-announcement`) that logs
//! people in through the hub.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

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

    // A logged-in user with access:services gets in without logging in again.
    let reader = hub.browser();
    assert_eq!(
        reader.login("itsvcreader", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    let (url, response) = reader.get_following("/services/announcement/").await;
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
