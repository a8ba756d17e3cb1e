//! The `research-group-5` scenario against a real `hubfleet serve` spawning the stand-in.

use std::process::Command;
use std::time::Duration;

use hubfleet_loadsim::{Password, Phase, RunOptions, Scenario};

use crate::support::{HubProcess, free_port, hubfleet_bin, test_token, wait_for_200};

const PASSWORD: &str = "loadsim-shared-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn research_group_is_served_by_hubfleet() {
    hubfleet_loadsim::install_crypto_provider();
    let dir = tempfile::Builder::new()
        .prefix("hubfleet-loadsim-it-")
        .tempdir()
        .expect("tempdir");
    let (public, hub, proxy_api) = (free_port(), free_port(), free_port());
    let admin_token = test_token("loadsim-admin");
    let standin = hubfleet_loadsim::standin_script_path();
    let config = format!(
        r#"listen: 127.0.0.1:{public}
data_dir: {data}
hub:
  listen: 127.0.0.1:{hub}
proxy:
  api_listen: 127.0.0.1:{proxy_api}
auth:
  kind: shared-password
  shared_password: "{PASSWORD}"
spawner:
  cmd: ["/usr/bin/python3", "{standin}"]
  run_as: hub-user
  start_timeout: 60s
  http_timeout: 60s
services:
  - name: loadsim-admin
    api_token: "{admin_token}"
    admin: true
"#,
        data = dir.path().join("data").display(),
        standin = standin.display(),
    );
    let config_path = dir.path().join("hubfleet.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let mut command = Command::new(hubfleet_bin());
    command.arg("serve").arg("--config").arg(&config_path);
    let hub_process = HubProcess::spawn(command, dir.path(), "hub.log");
    let url = format!("http://127.0.0.1:{public}");
    wait_for_200(
        "hubfleet to answer through its proxy",
        &format!("{url}/hub/api"),
        Duration::from_secs(60),
    )
    .await;

    let mut scenario = hubfleet_loadsim::preset("research-group-5").expect("preset");
    scenario.kernel = false;
    scenario.idle = Duration::from_millis(200);
    scenario.arrival.window = Duration::from_secs(2);
    scenario.user_timeout = Duration::from_secs(120);
    scenario.password = Password::new(PASSWORD);
    let report = hubfleet_loadsim::run(
        RunOptions {
            url: url.clone(),
            scenario,
            api_token: Some(Password::new(admin_token.clone())),
        },
        |_| {},
    )
    .await
    .expect("run");

    let log = hub_process.log("hub.log");
    assert_eq!(
        (report.served, report.failed),
        (5, 0),
        "{}\nhub log:\n{log}",
        report.to_table()
    );
    assert_eq!(
        report.served_without_retry_share, 1.0,
        "no 429s at five users"
    );
    for phase in [
        Phase::Login,
        Phase::SpawnReady,
        Phase::LoginToReady,
        Phase::LabPage,
        Phase::Stop,
    ] {
        let stats = report
            .phases
            .get(&phase)
            .unwrap_or_else(|| panic!("no {phase:?} timings:\n{}", report.to_table()));
        assert_eq!(stats.count, 5, "{phase:?}");
        assert!(
            stats.max_ms > 0.0 && stats.p50_ms <= stats.p99_ms,
            "{stats:?}"
        );
    }
    assert!(
        !report.phases.contains_key(&Phase::KernelStart),
        "kernel: false"
    );
    // login_to_ready covers login and the spawn, so it is at least as long as either.
    let outcome = &report.outcomes[0];
    assert!(outcome.timings[&Phase::LoginToReady] >= outcome.timings[&Phase::SpawnReady]);

    // Every server was stopped, and the hub agrees.
    let client = reqwest::Client::new();
    for index in 0..5 {
        let user = Scenario::minimal("x", 5).user_name(index);
        let model: serde_json::Value = client
            .get(format!("{url}/hub/api/users/{user}"))
            .header("Authorization", format!("token {admin_token}"))
            .send()
            .await
            .expect("user model")
            .json()
            .await
            .expect("user JSON");
        assert!(
            model["server"].is_null(),
            "{user} still has a server: {model}"
        );
    }
}

/// The stand-in refuses a browser whose hub login is someone else's: the OAuth dance with the
/// hub really decides who gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_refuses_another_users_browser() {
    hubfleet_loadsim::install_crypto_provider();
    let dir = tempfile::Builder::new()
        .prefix("hubfleet-loadsim-it-")
        .tempdir()
        .expect("tempdir");
    let (public, hub, proxy_api) = (free_port(), free_port(), free_port());
    let standin = hubfleet_loadsim::standin_script_path();
    let config = format!(
        "listen: 127.0.0.1:{public}\ndata_dir: {data}\nhub:\n  listen: 127.0.0.1:{hub}\n\
         proxy:\n  api_listen: 127.0.0.1:{proxy_api}\nauth:\n  kind: shared-password\n  \
         shared_password: \"{PASSWORD}\"\nspawner:\n  cmd: [\"/usr/bin/python3\", \"{standin}\"]\n  \
         run_as: hub-user\n",
        data = dir.path().join("data").display(),
        standin = standin.display(),
    );
    let config_path = dir.path().join("hubfleet.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let mut command = Command::new(hubfleet_bin());
    command.arg("serve").arg("--config").arg(&config_path);
    let _hub_process = HubProcess::spawn(command, dir.path(), "hub.log");
    let url = format!("http://127.0.0.1:{public}");
    wait_for_200(
        "hubfleet",
        &format!("{url}/hub/api"),
        Duration::from_secs(60),
    )
    .await;

    // The owner gets a server and stays logged in (no stop).
    let mut owner = Scenario::minimal("owner", 1);
    owner.kernel = false;
    owner.stop = false;
    owner.idle = Duration::ZERO;
    owner.user_prefix = "owner-".into();
    owner.password = Password::new(PASSWORD);
    let report = hubfleet_loadsim::run(
        RunOptions {
            url: url.clone(),
            scenario: owner,
            api_token: None,
        },
        |_| {},
    )
    .await
    .expect("run");
    assert_eq!(report.served, 1, "{}", report.to_table());

    // Another user logs in and tries the owner's lab: the hub must not let the stand-in admit
    // them (hubfleet answers 404/403 at authorize, or the stand-in 403s at the callback).
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let intruder = reqwest::Client::builder()
        .cookie_provider(jar)
        .build()
        .expect("client");
    let login = intruder
        .get(format!("{url}/hub/login"))
        .send()
        .await
        .expect("login page");
    let html = login.text().await.expect("html");
    let xsrf = html
        .split("name=\"_xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("xsrf on the login page")
        .to_owned();
    intruder
        .post(format!("{url}/hub/login"))
        .form(&[
            ("username", "intruder"),
            ("password", PASSWORD),
            ("_xsrf", xsrf.as_str()),
        ])
        .send()
        .await
        .expect("login");
    let response = intruder
        .get(format!("{url}/user/owner-0001/lab"))
        .send()
        .await
        .expect("lab");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        !body.contains("JupyterLab-standin") && status.is_client_error(),
        "intruder got {status}: {body}"
    );
}
