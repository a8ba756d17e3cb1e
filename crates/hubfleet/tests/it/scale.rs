//! Class-start behaviour end to end: the fair spawn queue (positions, FIFO admission, the 429 page
//! when full) and the Prometheus metrics the dashboards read.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::standin::{standin_server, world_readable_tempdir};
use crate::support::test_hub::{ADMIN_TOKEN, HubOptions, PASSWORD, TestHub};
use crate::support::{Browser, singleuser_venv};

fn hub_xsrf(browser: &Browser) -> String {
    browser
        .cookie_header_for("/hub/")
        .split("; ")
        .find_map(|c| c.strip_prefix("_xsrf="))
        .map(String::from)
        .expect("the hub set an _xsrf cookie")
}

/// Reads a progress event stream to its end, returning the events.
async fn progress_events(browser: &Browser, user: &str) -> Vec<Value> {
    let url = format!(
        "/hub/api/users/{user}/server/progress?_xsrf={}",
        hub_xsrf(browser)
    );
    let response = browser.get(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), body.next())
        .await
        .expect("progress events keep coming")
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spawn_queue_is_fifo_shows_positions_and_refuses_with_429_only_when_full() {
    let dir = world_readable_tempdir();
    let users: Vec<String> = (1..=6).map(|i| format!("itqueue{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let hub = TestHub::start_with_options(HubOptions {
        users: &names,
        jupyterhub: "6.1.1",
        cmd: Some(standin_server(dir.path(), 2.0)),
        spawner_yaml: "  concurrent_starts: 2\n  max_queue: 3\n",
        ..HubOptions::default()
    })
    .await;

    // Five people ask for a server one after another: two start, three wait in line.
    let mut browsers = Vec::new();
    for user in &users[..5] {
        let browser = hub.browser();
        assert_eq!(
            browser.login(user, PASSWORD).await.status(),
            StatusCode::FOUND
        );
        let (url, response) = browser.get_following("/hub/spawn").await;
        assert_eq!(response.status(), StatusCode::OK, "{user} at {url}");
        assert_eq!(url.path(), format!("/hub/spawn-pending/{user}"));
        browsers.push(browser);
    }

    // The sixth finds the queue full: a 429 page that says it is a capacity limit.
    let sixth = hub.browser();
    sixth.login(&users[5], PASSWORD).await;
    let refused = sixth.get("/hub/spawn").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 10, "Retry-After {retry_after}");
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("capacity") && page.contains("not a failure"),
        "{page}"
    );

    // Everyone's event stream ends with their server ready; the queued ones saw their place go
    // down one by one, starting from where they joined.
    let streams = browsers
        .iter()
        .zip(&users)
        .map(|(browser, user)| progress_events(browser, user));
    let all_events = futures_util::future::join_all(streams).await;
    let mut turn_events = BTreeMap::new();
    for (index, events) in all_events.iter().enumerate() {
        let last = events.last().expect("events");
        assert_eq!(last["ready"], true, "{}: {events:?}", users[index]);
        // Repeats are ETA updates at the same place; the places themselves only go down.
        let mut positions: Vec<u64> = events
            .iter()
            .filter_map(|e| e["queue_position"].as_u64())
            .filter(|p| *p > 0)
            .collect();
        positions.dedup();
        if index < 2 {
            assert!(
                positions.is_empty(),
                "{} started at once: {events:?}",
                users[index]
            );
        } else {
            let joined_at = index as u64 - 1;
            assert_eq!(
                positions.first(),
                Some(&joined_at),
                "{}: {events:?}",
                users[index]
            );
            assert!(
                positions.windows(2).all(|w| w[1] == w[0] - 1),
                "{positions:?}"
            );
            let message = events
                .iter()
                .find(|e| e["queue_position"].as_u64() == Some(joined_at))
                .unwrap();
            assert!(
                message["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("number {joined_at} in the queue"))
            );
            turn_events.insert(index, events.iter().position(|e| e["queue_position"] == 0));
        }
    }
    assert_eq!(turn_events.len(), 3);
    assert!(
        turn_events.values().all(Option::is_some),
        "every queued person is told when it is their turn"
    );

    // With the queue drained, the sixth person gets in.
    let (url, response) = sixth.get_following("/hub/spawn").await;
    assert!(response.status().is_success(), "{url}");
}

/// JupyterHub's metric names and types (reference §6), which the upstream dashboards query.
const JUPYTERHUB_METRICS: &[(&str, &str)] = &[
    ("jupyterhub_request_duration_seconds", "histogram"),
    ("jupyterhub_server_spawn_duration_seconds", "histogram"),
    ("jupyterhub_running_servers", "gauge"),
    ("jupyterhub_total_users", "gauge"),
    ("jupyterhub_active_users", "gauge"),
    ("jupyterhub_check_routes_duration_seconds", "histogram"),
    ("jupyterhub_hub_startup_duration_seconds", "histogram"),
    ("jupyterhub_init_spawners_duration_seconds", "histogram"),
    ("jupyterhub_proxy_poll_duration_seconds", "histogram"),
    ("jupyterhub_login_duration_seconds", "histogram"),
    ("jupyterhub_logout_duration_seconds", "histogram"),
    ("jupyterhub_csp_reports", "counter"),
    ("jupyterhub_proxy_add_duration_seconds", "histogram"),
    ("jupyterhub_proxy_delete_duration_seconds", "histogram"),
    ("jupyterhub_server_poll_duration_seconds", "histogram"),
    ("jupyterhub_server_stop_seconds", "histogram"),
    ("jupyterhub_event_loop_interval_seconds", "histogram"),
    ("hubfleet_spawn_queue_length", "gauge"),
    ("hubfleet_spawn_queue_wait_seconds", "histogram"),
    ("hubfleet_spawns_refused", "counter"),
];

#[tokio::test(flavor = "multi_thread")]
async fn metrics_use_jupyterhubs_names_and_need_read_metrics() {
    let dir = world_readable_tempdir();
    let hub = TestHub::start_with_options(HubOptions {
        users: &["itmetrics"],
        jupyterhub: "6.1.1",
        cmd: Some(standin_server(dir.path(), 0.0)),
        ..HubOptions::default()
    })
    .await;
    let browser = hub.browser();
    browser.login("itmetrics", PASSWORD).await;
    browser.get_following("/hub/spawn").await;
    progress_events(&browser, "itmetrics").await;

    let url = format!("{}/hub/metrics", hub.public_url);
    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    let text = reqwest::Client::new()
        .get(&url)
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let types: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    for (name, kind) in JUPYTERHUB_METRICS {
        assert_eq!(types.get(name), Some(kind), "{name} in:\n{text}");
    }
    let sample = |prefix: &str| {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
            .to_string()
    };
    assert!(sample("jupyterhub_running_servers ").ends_with(" 1"));
    assert!(sample("jupyterhub_total_users ").ends_with(" 1"));
    assert!(sample("jupyterhub_active_users{period=\"24h\"}").ends_with(" 1"));
    sample("jupyterhub_server_spawn_duration_seconds_count{status=\"success\",reason=\"\"} 1");
    sample("jupyterhub_login_duration_seconds_count{status=\"success\"} 1");
    sample(
        "jupyterhub_request_duration_seconds_count{method=\"GET\",handler=\"jupyterhub.apihandlers.users.SpawnProgressAPIHandler\",code=\"200\"}",
    );

    // The proxy's own families come with the hub's, and the whole is valid OpenMetrics: one
    // `# EOF`, at the end, as the strict parser of Prometheus' Python client demands.
    assert_eq!(types.get("hubfleet_proxy_requests_web"), Some(&"counter"));
    assert_eq!(
        types.get("hubfleet_proxy_connections_active"),
        Some(&"gauge")
    );
    let proxied: u64 = sample("hubfleet_proxy_requests_web_total ")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        proxied >= 3,
        "login, spawn and progress went through the proxy: {proxied}"
    );
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    let mut parser = std::process::Command::new(singleuser_venv("6.1.1").join("bin/python"))
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             families = list(text_string_to_metric_families(sys.stdin.read()))\n\
             print(len(families))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    std::io::Write::write_all(&mut parser.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let parsed = parser.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "not valid OpenMetrics: {}\n{text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
}
