//! End-to-end tests of [`LocalProcessSpawner`] with real processes (and, when run as root, real
//! Unix accounts created with `useradd` and removed again with `userdel -r`).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hubfleet_spawner::{LocalProcessSpawner, LocalSpawnerConfig, RunAs};
use hubfleet_types::{
    PollStatus, ProgressSink, ServerName, SpawnError, SpawnRequest, Spawner, SpawnerState, UserName,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn request(data_dir: &Path, user: &str, cmd: &[&str]) -> SpawnRequest {
    SpawnRequest {
        user: UserName::parse(user).unwrap(),
        server_name: ServerName::default_server(),
        service_prefix: format!("/user/{user}/"),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::from([("PYTHONCOERCECLOCALE".to_string(), "0".to_string())]),
        data_dir: data_dir.to_path_buf(),
    }
}

fn hub_user_spawner(stop_timeout: Duration) -> LocalProcessSpawner {
    LocalProcessSpawner::new(LocalSpawnerConfig {
        run_as: RunAs::HubUser,
        stop_timeout,
        ..LocalSpawnerConfig::default()
    })
}

/// Polls `condition` until it holds; panics with `what` at the deadline.
async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while !condition().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_exited(spawner: &LocalProcessSpawner, state: &SpawnerState) -> PollStatus {
    let until = Instant::now() + DEADLINE;
    loop {
        let status = spawner.poll(state).await;
        if status != PollStatus::Running {
            return status;
        }
        assert!(Instant::now() < until, "server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_log_contains(spawner: &LocalProcessSpawner, state: &SpawnerState, needle: &str) {
    wait_for(
        &format!("{needle:?} in the log"),
        Duration::from_secs(60),
        || async {
            spawner
                .log_tail(state, 1000)
                .await
                .is_some_and(|tail| tail.contains(needle))
        },
    )
    .await;
}

fn state_pid(state: &SpawnerState) -> u32 {
    state.0["pid"].as_u64().unwrap() as u32
}

/// Alive means a /proc entry that is not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap();
        state != 'Z' && state != 'X'
    })
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Serves HTTP on the port the spawner chose, as jupyterhub-singleuser would.
const HTTP_SERVER_SCRIPT: &str = r#"port=${JUPYTERHUB_SERVICE_URL#http://127.0.0.1:}; port=${port%%/*}; echo "serving on $port"; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 "$port""#;

#[tokio::test]
async fn starts_polls_and_stops_a_real_server() {
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = hub_user_spawner(Duration::from_secs(5));
    let (progress, mut events) = ProgressSink::new();
    let server = spawner
        .start(
            request(
                data_dir.path(),
                "alice",
                &["/bin/sh", "-c", HTTP_SERVER_SCRIPT],
            ),
            progress,
        )
        .await
        .unwrap();
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let port = port_of(&server.url);
    wait_for("the server to accept connections", DEADLINE, || async {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert_eq!(spawner.poll(&server.state).await, PollStatus::Running);

    let mut messages = Vec::new();
    while let Ok(event) = events.try_recv() {
        messages.push(event.message);
    }
    assert!(
        messages.contains(&"Creating home directory".to_string()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"Starting sh…".to_string()),
        "{messages:?}"
    );

    let home = data_dir.path().join("homes/alice");
    assert_eq!(
        std::fs::metadata(&home).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(data_dir.path().join("homes"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o711
    );
    let log = data_dir.path().join("logs/alice.log");
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );

    spawner.stop(&server.state).await.unwrap();
    assert!(matches!(
        spawner.poll(&server.state).await,
        PollStatus::Exited { .. }
    ));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port closed after stop"
    );
    // Stopping again is fine.
    spawner.stop(&server.state).await.unwrap();
}

#[tokio::test]
async fn exit_code_and_log_tail_of_a_finished_server() {
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = hub_user_spawner(Duration::from_secs(5));
    let mut req = request(
        data_dir.path(),
        "carol",
        &[
            "/bin/sh",
            "-c",
            "for i in $(seq 1 50); do echo line $i; done; echo oops >&2; exit 3",
        ],
    );
    req.server_name = ServerName::parse("second").unwrap();
    let server = spawner.start(req, ProgressSink::discard()).await.unwrap();
    assert_eq!(
        wait_exited(&spawner, &server.state).await,
        PollStatus::Exited { code: Some(3) }
    );
    assert_eq!(
        spawner.log_tail(&server.state, 3).await.unwrap(),
        "line 49\nline 50\noops"
    );
    assert!(data_dir.path().join("logs/carol--second.log").exists());
}

#[tokio::test]
async fn server_environment_is_exactly_the_keep_list_plus_spawner_variables() {
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = hub_user_spawner(Duration::from_secs(5));
    let mut req = request(
        data_dir.path(),
        "dave",
        &[
            "/usr/bin/python3",
            "-c",
            "import os, json; print(json.dumps(dict(os.environ)))",
        ],
    );
    req.env
        .insert("JUPYTERHUB_API_TOKEN".into(), "from-the-hub".into());
    let server = spawner.start(req, ProgressSink::discard()).await.unwrap();
    wait_exited(&spawner, &server.state).await;
    let tail = spawner.log_tail(&server.state, 1).await.unwrap();
    let env: BTreeMap<String, String> = serde_json::from_str(&tail).unwrap();

    let mut expected: BTreeMap<String, String> = std::env::vars()
        .filter(|(key, _)| hubfleet_spawner::ENV_KEEP.contains(&key.as_str()))
        .collect();
    let home = data_dir.path().join("homes/dave");
    let hub_user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .unwrap()
        .unwrap()
        .name;
    for (key, value) in [
        ("PYTHONCOERCECLOCALE", "0".to_string()),
        ("JUPYTERHUB_API_TOKEN", "from-the-hub".to_string()),
        ("HOME", home.display().to_string()),
        ("USER", hub_user),
        ("SHELL", "/bin/bash".to_string()),
        (
            "JUPYTERHUB_SERVICE_URL",
            format!("{}/user/dave/", server.url),
        ),
    ] {
        expected.insert(key.to_string(), value);
    }
    assert_eq!(env, expected);
    // The test process certainly has cargo's variables; none may leak.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert!(!env.contains_key("CARGO_MANIFEST_DIR"));
}

#[tokio::test]
async fn root_hub_user_gets_allow_root_appended() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: only meaningful when the tests run as root");
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = hub_user_spawner(Duration::from_secs(5));
    let server = spawner
        .start(
            request(
                data_dir.path(),
                "erin",
                &["/bin/sh", "-c", r#"echo "args: $0""#],
            ),
            ProgressSink::discard(),
        )
        .await
        .unwrap();
    wait_exited(&spawner, &server.state).await;
    assert_eq!(
        spawner.log_tail(&server.state, 1).await.unwrap(),
        "args: --allow-root"
    );
}

#[tokio::test]
async fn failing_command_is_reported_with_command_and_os_error() {
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = hub_user_spawner(Duration::from_secs(5));
    let err = spawner
        .start(
            request(
                data_dir.path(),
                "frank",
                &["/nonexistent/jupyterhub-singleuser"],
            ),
            ProgressSink::discard(),
        )
        .await
        .unwrap_err();
    let SpawnError::Failed { message, .. } = &err else {
        panic!("expected Failed, got {err:?}");
    };
    assert!(
        message.contains("`/nonexistent/jupyterhub-singleuser`"),
        "{message}"
    );
    assert!(message.contains("No such file or directory"), "{message}");

    let not_executable = data_dir.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let err = spawner
        .start(
            request(
                data_dir.path(),
                "frank",
                &[not_executable.to_str().unwrap()],
            ),
            ProgressSink::discard(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Permission denied"), "{err}");
}

/// A server keeps running when its spawner goes away, and a fresh spawner (as in a restarted hub)
/// finds it from the persisted JSON state, then stops it.
#[tokio::test]
async fn fresh_spawner_adopts_a_server_that_outlived_its_spawner() {
    let data_dir = tempfile::tempdir().unwrap();
    let first = hub_user_spawner(Duration::from_secs(5));
    let server = first
        .start(
            request(
                data_dir.path(),
                "grace",
                &[
                    "/bin/sh",
                    "-c",
                    "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done",
                ],
            ),
            ProgressSink::discard(),
        )
        .await
        .unwrap();
    let persisted = serde_json::to_string(&server.state).unwrap();
    drop(first);

    let log = data_dir.path().join("logs/grace.log");
    let size_after_drop = std::fs::metadata(&log).unwrap().len();
    wait_for(
        "the server to keep writing after its spawner was dropped",
        DEADLINE,
        || async { std::fs::metadata(&log).unwrap().len() > size_after_drop + 100 },
    )
    .await;

    let second = hub_user_spawner(Duration::from_secs(5));
    let state: SpawnerState = serde_json::from_str(&persisted).unwrap();
    assert_eq!(second.poll(&state).await, PollStatus::Running);
    assert!(
        second
            .log_tail(&state, 1)
            .await
            .unwrap()
            .starts_with("tick ")
    );
    second.stop(&state).await.unwrap();
    assert!(!process_alive(state_pid(&state)));
    assert_eq!(second.poll(&state).await, PollStatus::Exited { code: None });
}

#[tokio::test]
async fn stop_kills_the_whole_group_escalating_to_sigkill() {
    let data_dir = tempfile::tempdir().unwrap();
    let stop_timeout = Duration::from_millis(500);
    let spawner = hub_user_spawner(stop_timeout);
    // The grandchild ignores SIGTERM, so only the SIGKILL after `stop_timeout` removes it.
    let script = r#"sh -c 'trap "" TERM; echo "grandchild $$"; exec sleep 600' & wait"#;
    let server = spawner
        .start(
            request(data_dir.path(), "heidi", &["/bin/sh", "-c", script]),
            ProgressSink::discard(),
        )
        .await
        .unwrap();
    wait_log_contains(&spawner, &server.state, "grandchild ").await;
    let tail = spawner.log_tail(&server.state, 1).await.unwrap();
    let grandchild: u32 = tail.trim_start_matches("grandchild ").parse().unwrap();
    assert!(process_alive(grandchild));

    let started = Instant::now();
    spawner.stop(&server.state).await.unwrap();
    assert!(
        started.elapsed() >= stop_timeout,
        "SIGKILL came only after the timeout"
    );
    assert!(
        !process_alive(grandchild),
        "grandchild killed with the group"
    );
    assert!(!process_alive(state_pid(&server.state)));
    // Our own child was reaped and its fate is known: killed by SIGTERM (128 + 15).
    assert_eq!(
        spawner.poll(&server.state).await,
        PollStatus::Exited { code: Some(143) }
    );
}

#[tokio::test]
async fn state_with_a_different_start_time_is_a_different_process() {
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = hub_user_spawner(Duration::from_secs(5));
    let server = spawner
        .start(
            request(
                data_dir.path(),
                "ivan",
                &["/bin/sh", "-c", "exec sleep 600"],
            ),
            ProgressSink::discard(),
        )
        .await
        .unwrap();
    let mut reused = server.state.clone();
    let start_time = reused.0["start_time"].as_u64().unwrap();
    reused.0["start_time"] = serde_json::json!(start_time + 1);

    let fresh = hub_user_spawner(Duration::from_secs(5));
    assert_eq!(fresh.poll(&reused).await, PollStatus::Exited { code: None });
    // Stopping "the old server" must not touch the process that now has its pid.
    fresh.stop(&reused).await.unwrap();
    assert_eq!(fresh.poll(&server.state).await, PollStatus::Running);

    spawner.stop(&server.state).await.unwrap();
    assert!(!process_alive(state_pid(&server.state)));
}

#[tokio::test]
async fn launches_real_jupyterhub_singleuser() {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/envs/jh-6.1.1");
    let singleuser = venv.join("bin/jupyterhub-singleuser");
    assert!(
        singleuser.exists(),
        "{} is missing: build it with `/usr/bin/python3 -m venv` + `pip install jupyterhub==6.1.1 jupyterlab`",
        singleuser.display()
    );
    // A port nobody listens on, so the server fails to reach "its hub" in a recognisable way.
    let hub_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = hub_user_spawner(Duration::from_secs(10));
    let mut req = request(data_dir.path(), "judy", &[singleuser.to_str().unwrap()]);
    let api_url = format!("http://127.0.0.1:{hub_port}/hub/api");
    for (key, value) in [
        ("JUPYTERHUB_API_TOKEN", "not-a-real-token".to_string()),
        ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-judy".to_string()),
        ("JUPYTERHUB_API_URL", api_url.clone()),
        (
            "JUPYTERHUB_ACTIVITY_URL",
            format!("{api_url}/users/judy/activity"),
        ),
        ("JUPYTERHUB_BASE_URL", "/".to_string()),
        ("JUPYTERHUB_SERVICE_PREFIX", "/user/judy/".to_string()),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            "/user/judy/oauth_callback".to_string(),
        ),
        ("JUPYTERHUB_USER", "judy".to_string()),
        ("JUPYTERHUB_SERVER_NAME", String::new()),
    ] {
        req.env.insert(key.to_string(), value);
    }
    let server = spawner.start(req, ProgressSink::discard()).await.unwrap();
    wait_log_contains(
        &spawner,
        &server.state,
        &format!("Failed to connect to my Hub at {api_url}"),
    )
    .await;
    let log = spawner.log_tail(&server.state, 1000).await.unwrap();
    assert!(
        log.contains("Starting jupyterhub single-user server extension version 6.1.1"),
        "{log}"
    );
    spawner.stop(&server.state).await.unwrap();
    assert!(matches!(
        spawner.poll(&server.state).await,
        PollStatus::Exited { .. }
    ));
}

/// Removes the test accounts even when the test fails.
struct AccountCleanup(Vec<String>);

impl AccountCleanup {
    fn remove_all(&self) {
        for name in &self.0 {
            let _ = std::process::Command::new("userdel")
                .args(["-r", name])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for AccountCleanup {
    fn drop(&mut self) {
        self.remove_all();
    }
}

#[tokio::test]
async fn system_users_run_as_their_own_account_with_private_homes() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: creating Unix accounts needs root");
        return;
    }
    let prefix = "hfts-";
    let cleanup = AccountCleanup(vec!["hfts-kim".into(), "hfts-leo".into()]);
    cleanup.remove_all(); // leftovers of an interrupted earlier run
    let data_dir = tempfile::tempdir().unwrap();
    let spawner = LocalProcessSpawner::new(LocalSpawnerConfig {
        run_as: RunAs::SystemUsers {
            prefix: prefix.to_string(),
        },
        stop_timeout: Duration::from_secs(5),
        ..LocalSpawnerConfig::default()
    });

    let leo = spawner
        .start(
            request(
                data_dir.path(),
                "leo",
                &["/bin/sh", "-c", "echo secret > $HOME/diary; exec sleep 600"],
            ),
            ProgressSink::discard(),
        )
        .await
        .unwrap();
    let leo_home = data_dir.path().join("homes/leo");
    wait_for("leo's file", DEADLINE, || async {
        leo_home.join("diary").exists()
    })
    .await;

    let probe = format!(
        "import os\nprint('uid', os.getuid(), os.getgid(), os.getgroups())\n\
         try:\n    open({:?}).read(); print('read leo: yes')\n\
         except PermissionError:\n    print('read leo: denied')\n",
        leo_home.join("diary").display().to_string()
    );
    let kim = spawner
        .start(
            request(data_dir.path(), "kim", &["/usr/bin/python3", "-c", &probe]),
            ProgressSink::discard(),
        )
        .await
        .unwrap();
    assert_eq!(
        wait_exited(&spawner, &kim.state).await,
        PollStatus::Exited { code: Some(0) }
    );
    let output = spawner.log_tail(&kim.state, 10).await.unwrap();

    let kim_account = nix::unistd::User::from_name("hfts-kim")
        .unwrap()
        .expect("account created");
    assert!(kim_account.uid.as_raw() >= 1000);
    assert_eq!(kim.state.0["unix_user"], "hfts-kim");
    assert!(
        output.contains(&format!("uid {} {} []", kim_account.uid, kim_account.gid)),
        "runs as kim without supplementary groups: {output}"
    );
    assert!(output.contains("read leo: denied"), "{output}");

    let kim_home = std::fs::metadata(data_dir.path().join("homes/kim")).unwrap();
    assert_eq!(kim_home.permissions().mode() & 0o777, 0o700);
    assert_eq!(kim_home.uid(), kim_account.uid.as_raw());
    let leo_account = nix::unistd::User::from_name("hfts-leo").unwrap().unwrap();
    assert_eq!(
        std::fs::metadata(&leo_home).unwrap().uid(),
        leo_account.uid.as_raw()
    );
    assert_ne!(leo_account.uid, kim_account.uid);

    // A second start reuses the existing account.
    let again = spawner
        .start(
            request(data_dir.path(), "kim", &["/bin/true"]),
            ProgressSink::discard(),
        )
        .await
        .unwrap();
    assert_eq!(
        wait_exited(&spawner, &again.state).await,
        PollStatus::Exited { code: Some(0) }
    );
    assert_eq!(again.state.0["uid"], kim_account.uid.as_raw());

    spawner.stop(&leo.state).await.unwrap();
    assert!(!process_alive(state_pid(&leo.state)));
    drop(cleanup);
    assert!(
        nix::unistd::User::from_name("hfts-kim").unwrap().is_none(),
        "account removed"
    );
}
