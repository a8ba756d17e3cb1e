//! The hub end to end, with the real `jupyterhub-singleuser` and JupyterLab: login, spawn,
//! JupyterLab through our proxy, kernels over WebSockets, isolation between users, stopping,
//! `kill -9` of the hub, and bad input.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::test_hub::{PASSWORD, SPAWN_TIMEOUT, TestHub};
use crate::support::{Browser, KernelSocket, hubfleet_bin, singleuser_venv, wait_for};

async fn login_and_open_lab(hub: &TestHub, user: &str) -> Browser {
    let browser = hub.browser();
    let response = browser.login(user, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::FOUND, "login of {user}");
    let html = browser.spawn_and_wait_for_lab(user, SPAWN_TIMEOUT).await;
    assert!(html.contains("JupyterLab"));
    browser
}

async fn can_connect(target: &str) -> bool {
    let addr = target.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_spawns_jupyterlab_and_runs_a_kernel_through_the_proxy() {
    let hub = TestHub::start(&["itlabalice"]).await;
    let browser = login_and_open_lab(&hub, "itlabalice").await;
    let status = browser.get("/user/itlabalice/api/status").await;
    assert_eq!(status.status(), StatusCode::OK);
    let status: Value = status.json().await.unwrap();
    assert!(status.get("started").is_some(), "{status}");

    let kernel = browser.start_kernel("itlabalice").await;
    let mut socket = KernelSocket::open(&browser, "itlabalice", &kernel).await;
    let output = socket.execute("print(6*7)").await.expect("execute");
    assert_eq!(output.trim(), "42");
    // The server runs as the user's own Unix account, not as the hub's root.
    let whoami = socket
        .execute("import getpass; print(getpass.getuser())")
        .await
        .expect("execute");
    assert_eq!(whoami.trim(), "hf-itlabalice");
}

#[tokio::test(flavor = "multi_thread")]
async fn singleuser_from_jupyterhub_5_works_too() {
    let hub = TestHub::start_with(&["itjh5"], "5.5.4", None).await;
    let browser = login_and_open_lab(&hub, "itjh5").await;
    let kernel = browser.start_kernel("itjh5").await;
    let mut socket = KernelSocket::open(&browser, "itjh5", &kernel).await;
    assert_eq!(
        socket.execute("print(40+2)").await.expect("execute").trim(),
        "42"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_never_reach_another_users_server() {
    let hub = TestHub::start(&["itisoalice", "itisobob"]).await;
    let alice = login_and_open_lab(&hub, "itisoalice").await;
    let kernel = alice.start_kernel("itisoalice").await;
    let secret_file = alice
        .client()
        .put(alice.url("/user/itisoalice/api/contents/secret.txt"))
        .header("X-XSRFToken", alice.xsrf_for("/user/itisoalice/").unwrap())
        .json(
            &serde_json::json!({"type": "file", "format": "text", "content": "alice-only-secret"}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        secret_file.status().is_success(),
        "{}",
        secret_file.status()
    );

    let bob = hub.browser();
    assert_eq!(
        bob.login("itisobob", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    let anonymous = hub.browser();
    for visitor in [&bob, &anonymous] {
        for path in [
            "/user/itisoalice/lab",
            "/user/itisoalice/api/status",
            "/user/itisoalice/api/contents/secret.txt",
            "/user/itisoalice/files/secret.txt",
            &format!("/user/itisoalice/api/kernels/{kernel}"),
        ] {
            let (url, response) = visitor.get_following(path).await;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert!(
                !(body.contains("alice-only-secret")
                    || status == StatusCode::OK && url.path().starts_with("/user/itisoalice")),
                "{path} leaked to another visitor: {status} at {url}"
            );
        }
        // The kernel WebSocket refuses them too.
        let mut url = visitor.url(&format!("/user/itisoalice/api/kernels/{kernel}/channels"));
        url.set_scheme("ws").unwrap();
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                url.as_str(),
            )
            .unwrap();
        let cookies = visitor.cookie_header_for("/user/itisoalice/");
        if !cookies.is_empty() {
            request
                .headers_mut()
                .insert("cookie", cookies.parse().unwrap());
        }
        assert!(
            tokio_tungstenite::connect_async(request).await.is_err(),
            "another visitor opened alice's kernel websocket"
        );
    }
    // Bob's attempt to log in to alice's server through the hub's OAuth is refused outright.
    let (_, response) = bob.get_following("/user/itisoalice/lab").await;
    assert!(response.status().is_client_error(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_from_home_page_and_api_removes_process_and_route() {
    let hub = TestHub::start(&["itstop"]).await;
    let browser = login_and_open_lab(&hub, "itstop").await;
    let target = hub
        .server_target("itstop")
        .await
        .expect("route after spawn");
    assert!(can_connect(&target).await);

    // Stop with the home page's form.
    let home = browser.get("/hub/home").await.text().await.unwrap();
    let xsrf = home
        .split("name=\"_xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("home page has a form with _xsrf")
        .to_string();
    let response = browser
        .client()
        .post(browser.url("/hub/stop/itstop"))
        .form(&[("_xsrf", xsrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert!(
        hub.server_target("itstop").await.is_none(),
        "route left behind"
    );
    assert!(
        !can_connect(&target).await,
        "server still listening at {target}"
    );
    let (_, response) = browser.get_following("/user/itstop/lab").await;
    assert_eq!(response.status(), StatusCode::FAILED_DEPENDENCY);
    let page = response.text().await.unwrap();
    assert!(page.contains("Launch server"));

    // The 424 page's button starts the server again.
    let xsrf = page
        .split("name=\"_xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the 424 page has a form with _xsrf")
        .to_string();
    let relaunch = browser
        .client()
        .post(browser.url("/hub/spawn/itstop?next=%2Fuser%2Fitstop%2Flab"))
        .form(&[("_xsrf", xsrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(relaunch.status(), StatusCode::FOUND);
    let location = relaunch.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/hub/spawn-pending/itstop"),
        "{location}"
    );
    wait_for("the relaunched server's route", SPAWN_TIMEOUT, || async {
        hub.server_target("itstop").await
    })
    .await;
    let stopped = hub
        .api(reqwest::Method::DELETE, "/users/itstop/server")
        .await;
    assert_eq!(stopped.status(), StatusCode::NO_CONTENT);

    // Start and stop with the REST API.
    let started = hub.api(reqwest::Method::POST, "/users/itstop/server").await;
    assert!(
        matches!(started.status().as_u16(), 201 | 202),
        "{}",
        started.status()
    );
    let target = wait_for("the API-started server's route", SPAWN_TIMEOUT, || async {
        hub.server_target("itstop").await
    })
    .await;
    let stopped = hub
        .api(reqwest::Method::DELETE, "/users/itstop/server")
        .await;
    assert_eq!(stopped.status(), StatusCode::NO_CONTENT);
    assert!(hub.server_target("itstop").await.is_none());
    assert!(!can_connect(&target).await);
    let model: Value = hub
        .api(reqwest::Method::GET, "/users/itstop")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(model["server"], Value::Null);
    assert_eq!(model["servers"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_hub_keeps_kernel_websockets_and_the_hub_recovers() {
    let mut hub = TestHub::start(&["itkillalice", "itkillbob"]).await;
    let alice = login_and_open_lab(&hub, "itkillalice").await;
    let kernel = alice.start_kernel("itkillalice").await;
    let mut socket = KernelSocket::open(&alice, "itkillalice", &kernel).await;
    assert_eq!(
        socket.execute("x = 21; print(x)").await.unwrap().trim(),
        "21"
    );

    hub.kill_hub();
    // The same WebSocket, the same kernel state, with no hub process at all.
    assert_eq!(socket.execute("print(x * 2)").await.unwrap().trim(), "42");

    hub.launch().await;
    assert_eq!(socket.execute("print(x + 1)").await.unwrap().trim(), "22");
    let status = alice.get("/user/itkillalice/api/status").await;
    assert_eq!(
        status.status(),
        StatusCode::OK,
        "alice's server was re-adopted"
    );
    let bob = login_and_open_lab(&hub, "itkillbob").await;
    let kernel = bob.start_kernel("itkillbob").await;
    let mut bob_socket = KernelSocket::open(&bob, "itkillbob", &kernel).await;
    assert_eq!(bob_socket.execute("print(6*7)").await.unwrap().trim(), "42");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_gets_403_and_creates_nothing() {
    let hub = TestHub::start(&[]).await;
    let browser = hub.browser();
    let response = browser.login("itnobody", "not the password").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Invalid username or password")
    );
    assert_eq!(
        hub.api(reqwest::Method::GET, "/users/itnobody")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // And no session: the hub still sends the browser to the login page.
    let (url, _) = browser.get_following("/hub/home").await;
    assert_eq!(url.path(), "/hub/login");
}

#[test]
fn a_typo_in_the_config_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:8000\nspawnr:\n  cmd: [x]\n").unwrap();
    for subcommand in [&["check-config"][..], &["serve", "--config"][..]] {
        let output = Command::new(hubfleet_bin())
            .args(subcommand)
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("{}:2:1", path.display())) && stderr.contains("spawnr"),
            "{subcommand:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_spawn_shows_the_failure_and_log_and_can_be_retried() {
    // Fails the first time with a message on stderr, then starts the real server.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let marker = dir.path().join("failed-once");
    let script = dir.path().join("flaky-singleuser");
    let singleuser = singleuser_venv("6.1.1").join("bin/jupyterhub-singleuser");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ ! -e {m} ]; then touch {m}; echo 'flaky: the disk is on fire' >&2; exit 3; fi\nexec {s} \"$@\"\n",
            m = marker.display(),
            s = singleuser.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hub = TestHub::start_with(
        &["itflaky"],
        "6.1.1",
        Some(vec![script.to_string_lossy().into_owned()]),
    )
    .await;
    let browser = hub.browser();
    browser.login("itflaky", PASSWORD).await;
    let (url, response) = browser.get_following("/hub/spawn").await;
    assert_eq!(url.path(), "/hub/spawn-pending/itflaky");
    assert_eq!(response.status(), StatusCode::OK);

    // The pending page's event stream ends with the failure and the server's own output.
    let xsrf = browser
        .cookie_header_for("/hub/")
        .split("; ")
        .find_map(|c| c.strip_prefix("_xsrf="))
        .map(String::from)
        .expect("hub xsrf cookie");
    let events = browser
        .get(&format!(
            "/hub/api/users/itflaky/server/progress?_xsrf={xsrf}"
        ))
        .await;
    assert_eq!(events.status(), StatusCode::OK);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = events.text().await.unwrap();
    let last: Value = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .next_back()
        .map(|data| serde_json::from_str(data).unwrap())
        .expect("progress events");
    assert_eq!(last["failed"], true, "{body}");
    assert!(
        last["message"].as_str().unwrap().contains("exited"),
        "{last}"
    );
    assert!(
        last["html_message"]
            .as_str()
            .unwrap()
            .contains("the disk is on fire"),
        "{last}"
    );

    // Retry from the pending page's button: this time it starts.
    let html = browser
        .spawn_and_wait_for_lab("itflaky", SPAWN_TIMEOUT)
        .await;
    assert!(html.contains("JupyterLab"));
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_users_admit_listed_and_existing_users_only() {
    use crate::support::test_hub::HubOptions;
    for (allow_existing, existing_admitted) in
        [("", true), ("  allow_existing_users: false\n", false)]
    {
        let auth = format!(
            "auth:\n  kind: shared-password\n  shared_password: \"{PASSWORD}\"\n  allowed_users: [itallowlisted]\n{allow_existing}"
        );
        let hub = TestHub::start_with_options(HubOptions {
            auth_yaml: Some(&auth),
            ..HubOptions::default()
        })
        .await;
        let listed = hub.browser().login("itallowlisted", PASSWORD).await;
        assert_eq!(listed.status(), StatusCode::FOUND, "a listed user logs in");
        let stranger = hub.browser().login("itstranger", PASSWORD).await;
        assert_eq!(
            stranger.status(),
            StatusCode::FORBIDDEN,
            "an unlisted new user is refused"
        );
        // An admin adds a user through the REST API: JupyterHub 5's allow_existing_users decides.
        let created = hub.api(reqwest::Method::POST, "/users/itexisting").await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let existing = hub.browser().login("itexisting", PASSWORD).await;
        let expected = if existing_admitted {
            StatusCode::FOUND
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(
            existing.status(),
            expected,
            "allow_existing_users={existing_admitted}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_whose_port_another_process_took_is_started_again_on_a_fresh_port() {
    use crate::support::standin::{standin_server, world_readable_tempdir};
    // On the first start a process outside the server's process group (a session of its own) takes
    // the port and answers HTTP before the server listens, as an unrelated program may; the hub
    // must not route to it. The second start serves for real. Both are the stand-in server; the
    // squatter has `SQUATTER=yes` in its environment.
    let dir = world_readable_tempdir();
    // The server (Unix user hf-itsquat) keeps its notes next to the script.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let standin = standin_server(dir.path(), 0.0);
    let script = dir.path().join("squatted-server.py");
    std::fs::write(
        &script,
        r#"import os, signal, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
standin = os.path.join(here, "standin-server.py")
with open(os.path.join(here, "starts"), "a") as f:
    f.write(os.environ["JUPYTERHUB_SERVICE_URL"] + "\n")
with open(os.path.join(here, "starts")) as f:
    first_start = len(f.readlines()) == 1
if first_start:
    squatter = subprocess.Popen(
        ["timeout", "120", sys.executable, standin],  # never outlives the test by long
        env={**os.environ, "SQUATTER": "yes"},
        start_new_session=True,
    )
    with open(os.path.join(here, "squatter-pid"), "w") as f:
        f.write(str(squatter.pid))
    signal.pause()  # still importing, as far as the hub can tell
os.execv(sys.executable, [sys.executable, standin])
"#,
    )
    .unwrap();
    let hub = TestHub::start_with(
        &["itsquat"],
        "6.1.1",
        Some(vec![
            standin[0].clone(),
            script.to_string_lossy().into_owned(),
        ]),
    )
    .await;
    let browser = hub.browser();
    assert_eq!(
        browser.login("itsquat", PASSWORD).await.status(),
        StatusCode::FOUND
    );
    browser.get_following("/hub/spawn").await;
    let target = wait_for("itsquat's route", SPAWN_TIMEOUT, || async {
        hub.server_target("itsquat").await
    })
    .await;

    let starts = std::fs::read_to_string(dir.path().join("starts")).unwrap();
    let starts: Vec<&str> = starts.lines().collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    let squatted = starts[0].trim_end_matches("/user/itsquat/");
    let squatter_env = reqwest::get(format!("{squatted}/hubfleet-test-env/SQUATTER"))
        .await
        .expect("the squatter answers on the first port");
    assert_eq!(squatter_env.text().await.unwrap(), "yes");
    assert_ne!(target, squatted, "routed to the squatter");
    let served = reqwest::get(format!(
        "{}/user/itsquat/hubfleet-test-env/SQUATTER",
        hub.public_url
    ))
    .await
    .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(
        served.text().await.unwrap(),
        "",
        "the server itself answers"
    );

    let squatter_pid = std::fs::read_to_string(dir.path().join("squatter-pid")).unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(squatter_pid.parse().unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
}
