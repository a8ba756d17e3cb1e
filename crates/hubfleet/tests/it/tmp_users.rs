//! The `tmp` authenticator: "Start a session" logs in a new anonymous `tmp-<random>` user, who gets
//! a server and a home directory; when the server stops, the user and the home are deleted.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::standin::{standin_server, world_readable_tempdir};
use crate::support::test_hub::{HubOptions, SPAWN_TIMEOUT, TestHub};
use crate::support::{hidden_input_value, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_tmp_user_is_deleted_with_their_home_when_their_server_stops() {
    let dir = world_readable_tempdir();
    let as_root = nix::unistd::Uid::effective().is_root();
    let hub = TestHub::start_with_options(HubOptions {
        cmd: Some(standin_server(dir.path(), 0.0)),
        auth_yaml: Some("auth:\n  kind: tmp\n"),
        // As root, each server runs as its own Unix account, which must go with the user.
        spawner_yaml: if as_root {
            "  run_as: system-users\n"
        } else {
            "  run_as: hub-user\n"
        },
        ..HubOptions::default()
    })
    .await;
    let browser = hub.browser();
    let page = browser.get("/hub/login").await.text().await.unwrap();
    assert!(page.contains("Start a session"), "{page}");
    assert!(
        !page.contains("name=\"password\""),
        "no password form: {page}"
    );
    let xsrf = hidden_input_value(&page, "_xsrf").expect("an _xsrf field");
    let login = browser
        .client()
        .post(browser.url("/hub/login"))
        .form(&[("_xsrf", xsrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::FOUND);
    assert_eq!(login.headers()["location"], "/hub/spawn");
    let me: Value = browser.get("/hub/api/user").await.json().await.unwrap();
    let name = me["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("tmp-") && name.len() == 16, "{name}");

    // Another session is another user.
    let other = hub.browser();
    let page = other.get("/hub/login").await.text().await.unwrap();
    let xsrf = hidden_input_value(&page, "_xsrf").unwrap();
    other
        .client()
        .post(other.url("/hub/login"))
        .form(&[("_xsrf", xsrf.as_str())])
        .send()
        .await
        .unwrap();
    let them: Value = other.get("/hub/api/user").await.json().await.unwrap();
    assert_ne!(them["name"].as_str().unwrap(), name);

    // The login sent the browser to the spawn page, which starts the server.
    let (_, _) = browser.get_following("/hub/spawn").await;
    let user_path = format!("/users/{name}");
    wait_for(
        "the tmp user's server to be ready",
        SPAWN_TIMEOUT,
        || async {
            let user: Value = hub.api(Method::GET, &user_path).await.json().await.ok()?;
            (user["servers"][""]["ready"] == true).then_some(())
        },
    )
    .await;
    let home = hub.data_dir.join("homes").join(&name);
    assert!(home.is_dir(), "{} exists", home.display());
    std::fs::write(home.join("notes.txt"), "scratch").unwrap();
    let account = as_root.then(|| hubfleet_spawner::account_name_for("hf-", &name));
    if let Some(account) = &account {
        assert!(unix_account_exists(account), "{account} was created");
    }

    let stop = hub
        .api(Method::DELETE, &format!("/users/{name}/server"))
        .await;
    assert!(
        [StatusCode::NO_CONTENT, StatusCode::ACCEPTED].contains(&stop.status()),
        "{}",
        stop.status()
    );
    wait_for(
        "the tmp user, their home and their Unix account to be removed",
        Duration::from_secs(30),
        || async {
            let gone = hub.api(Method::GET, &user_path).await.status() == StatusCode::NOT_FOUND;
            let account_gone = account.as_deref().is_none_or(|a| !unix_account_exists(a));
            (gone && !home.exists() && account_gone).then_some(())
        },
    )
    .await;
    // Their session went with them.
    assert_eq!(
        browser.get("/hub/api/user").await.status(),
        StatusCode::FORBIDDEN
    );
    // The other anonymous user, who never started a server, is still there.
    let them_path = format!("/users/{}", them["name"].as_str().unwrap());
    assert_eq!(
        hub.api(Method::GET, &them_path).await.status(),
        StatusCode::OK
    );
}

fn unix_account_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name)
        .expect("reading the account database")
        .is_some()
}
