//! The simulator against stock JupyterHub 6.1.1 with configurable-http-proxy, spawning the same
//! stand-in command, with the concurrent spawn limit set to 1 so the hub answers 429s.

use std::process::Command;
use std::time::Duration;

use hubfleet_loadsim::{Distribution, Password, Phase, RunOptions};

use crate::support::{
    HubProcess, configurable_http_proxy, free_port, jupyterhub_venv, test_token, wait_for_200,
};

const PASSWORD: &str = "loadsim-dummy-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_jupyterhub_throttles_and_every_user_is_served_after_retries() {
    hubfleet_loadsim::install_crypto_provider();
    let venv = jupyterhub_venv("6.1.1");
    let chp = configurable_http_proxy();
    let dir = tempfile::Builder::new()
        .prefix("hubfleet-loadsim-jh-")
        .tempdir()
        .expect("tempdir");
    let (public, hub, proxy_api) = (free_port(), free_port(), free_port());
    let admin_token = test_token("loadsim-admin");
    let py = |value: &str| serde_json::to_string(value).expect("a JSON string is a Python str");
    let config = format!(
        r#"c = get_config()  # noqa
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {public}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {hub}
c.JupyterHub.db_url = {db}
c.JupyterHub.cookie_secret_file = {secret}
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = {password}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = 'simple'
c.SimpleLocalProcessSpawner.home_dir_template = {homes}
c.Spawner.cmd = ['/usr/bin/python3', {standin}]
c.Spawner.default_url = '/lab'
c.JupyterHub.concurrent_spawn_limit = 1
c.JupyterHub.spawn_throttle_retry_range = (1, 2)
c.ConfigurableHTTPProxy.command = [{chp}]
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{proxy_api}'
c.JupyterHub.services = [{{'name': 'loadsim-admin', 'api_token': {token}}}]
c.JupyterHub.load_roles = [{{'name': 'loadsim-admin-role',
    'scopes': ['admin:users', 'admin:servers', 'list:users'], 'services': ['loadsim-admin']}}]
"#,
        db = py(&format!(
            "sqlite:///{}",
            dir.path().join("jupyterhub.sqlite").display()
        )),
        secret = py(&dir.path().join("cookie_secret").display().to_string()),
        password = py(PASSWORD),
        homes = py(&format!("{}/homes/{{username}}", dir.path().display())),
        standin = py(&hubfleet_loadsim::standin_script_path()
            .display()
            .to_string()),
        chp = py(&chp.display().to_string()),
        token = py(&admin_token),
    );
    let config_path = dir.path().join("jupyterhub_config.py");
    std::fs::write(&config_path, config).expect("write config");
    let mut command = Command::new(venv.join("bin/jupyterhub"));
    command
        .arg("-f")
        .arg(&config_path)
        .current_dir(dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let hub_process = HubProcess::spawn(command, dir.path(), "jupyterhub.log");
    let url = format!("http://127.0.0.1:{public}");
    wait_for_200(
        "JupyterHub's login page through configurable-http-proxy",
        &format!("{url}/hub/login"),
        Duration::from_secs(120),
    )
    .await;

    let mut scenario = hubfleet_loadsim::preset("research-group-5").expect("preset");
    scenario.kernel = false;
    scenario.idle = Duration::from_millis(200);
    // Everyone at once, so spawns overlap and the limit of one concurrent spawn bites.
    scenario.arrival.window = Duration::ZERO;
    scenario.arrival.distribution = Distribution::Burst;
    scenario.user_timeout = Duration::from_secs(150);
    scenario.max_retries = 50;
    scenario.password = Password::new(PASSWORD);
    let report = hubfleet_loadsim::run(
        RunOptions {
            url,
            scenario,
            api_token: Some(Password::new(admin_token)),
        },
        |_| {},
    )
    .await
    .expect("run");

    let table = report.to_table();
    let log = hub_process.log("jupyterhub.log");
    assert_eq!(
        (report.served, report.failed),
        (5, 0),
        "{table}\nlog:\n{log}"
    );
    assert!(
        report.retries >= 1,
        "a spawn limit of 1 must throttle a burst of 5:\n{table}"
    );
    assert!(report.served_without_retry < 5, "{table}");
    assert!(
        log.contains("429") || log.contains("Too many users"),
        "JupyterHub logged no throttling:\n{log}"
    );
    for phase in [Phase::Login, Phase::SpawnReady, Phase::LabPage, Phase::Stop] {
        assert_eq!(report.phases[&phase].count, 5, "{phase:?}\n{table}");
    }
}
