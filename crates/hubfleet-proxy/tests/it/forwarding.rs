//! HTTP forwarding: routing, paths, headers, errors, error target, timeouts, activity and metrics.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hubfleet_proxy::ProxyConfig;
use hyper::body::Incoming;
use serde_json::Value;

use crate::support::{
    DEADLINE, TestProxy, closed_port, echo_upstream, full, http_client, upstream, wait_until,
};

async fn echo_through(proxy: &TestProxy, path: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = http_client().get(proxy.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    assert_eq!(response.headers()["x-upstream"], "echo");
    response.json().await.unwrap()
}

#[tokio::test]
async fn routes_by_longest_segment_prefix_and_keeps_the_full_path() {
    let user = echo_upstream().await;
    let hub = upstream(|_req: Request<Incoming>| async { Response::new(full("hub")) }).await;
    let proxy = TestProxy::start(ProxyConfig {
        default_target: Some(format!("http://{hub}")),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/user/a", &format!("http://{user}"));

    let seen = echo_through(&proxy, "/user/a/lab/tree?token=x&y=%2F", &[]).await;
    assert_eq!(seen["uri"], "/user/a/lab/tree?token=x&y=%2F");
    let client = http_client();
    let sibling = client.get(proxy.url("/user/ab")).send().await.unwrap();
    assert_eq!(sibling.text().await.unwrap(), "hub");
    // Request paths are percent-decoded before matching, as CHP does.
    let encoded = echo_through(&proxy, "/user/%61/x", &[]).await;
    assert_eq!(encoded["uri"], "/user/%61/x");
    proxy.stop().await;
}

#[tokio::test]
async fn forwards_headers_like_chp() {
    let user = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig {
        custom_headers: vec![("X-Custom".into(), "yes".into())],
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/", &format!("http://{user}"));
    let seen = echo_through(
        &proxy,
        "/x",
        &[
            ("host", "hub.example.org:8443"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
            ("x-keep-me", "1"),
        ],
    )
    .await;
    let headers = &seen["headers"];
    assert_eq!(headers["host"], "hub.example.org:8443");
    assert_eq!(headers["x-forwarded-for"], "10.1.1.1,127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https,http");
    assert_eq!(headers["x-forwarded-port"], "8443");
    assert_eq!(headers["x-forwarded-host"], "hub.example.org:8443");
    assert_eq!(headers["x-custom"], "yes");
    assert_eq!(headers["x-keep-me"], "1");
    assert!(headers.get("x-drop-me").is_none(), "{headers}");
    assert!(headers.get("keep-alive").is_none(), "{headers}");
    proxy.stop().await;
}

#[tokio::test]
async fn no_x_forward_and_target_prefixes() {
    let user = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig {
        x_forward: false,
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/svc", &format!("http://{user}/base/"));
    let seen = echo_through(&proxy, "/svc/x?a=1", &[]).await;
    assert_eq!(seen["uri"], "/base/svc/x?a=1");
    assert!(seen["headers"].get("x-forwarded-for").is_none());
    assert!(seen["headers"].get("x-forwarded-host").is_none());
    proxy.stop().await;

    let proxy = TestProxy::start(ProxyConfig {
        include_prefix: false,
        prepend_path: false,
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/svc", &format!("http://{user}/base"));
    let seen = echo_through(&proxy, "/svc/x?a=1", &[]).await;
    assert_eq!(seen["uri"], "/x?a=1");
    proxy.stop().await;
}

#[tokio::test]
async fn host_routing_uses_the_host_header() {
    let user = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig {
        host_routing: true,
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/alice.example.org/user/alice", &format!("http://{user}"));
    let seen = echo_through(
        &proxy,
        "/user/alice/api",
        &[("host", "alice.example.org:8000")],
    )
    .await;
    assert_eq!(seen["uri"], "/user/alice/api");
    let other = http_client()
        .get(proxy.url("/user/alice/api"))
        .header("host", "bob.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    proxy.stop().await;
}

#[tokio::test]
async fn health_404_and_503() {
    let dead = closed_port().await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/user/dead", &format!("http://{dead}"));
    let client = http_client();
    let health = client.get(proxy.url("/_chp_healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        serde_json::json!({ "status": "OK" })
    );
    let no_route = client.get(proxy.url("/nowhere")).send().await.unwrap();
    assert_eq!(no_route.status(), 404);
    let down = client.get(proxy.url("/user/dead/x")).send().await.unwrap();
    assert_eq!(down.status(), 503);
    let metrics = proxy.handle.metrics_text();
    assert!(
        metrics.contains("hubfleet_proxy_upstream_errors_total{kind=\"connect\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubfleet_proxy_responses_total{code=\"5xx\"} 1"),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn error_target_renders_errors_with_the_original_status() {
    let error_pages = upstream(|req: Request<Incoming>| async move {
        Response::builder()
            .header("content-type", "text/html")
            .header("x-not-copied", "1")
            .body(full(format!("<h1>page for {}</h1>", req.uri())))
            .expect("response builds")
    })
    .await;
    let dead = closed_port().await;
    let proxy = TestProxy::start(ProxyConfig {
        error_target: Some(format!("http://{error_pages}/hub/error")),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/user/dead", &format!("http://{dead}"));
    let client = http_client();
    let down = client
        .get(proxy.url("/user/dead/x?y=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["content-type"], "text/html");
    assert!(down.headers().get("x-not-copied").is_none());
    assert_eq!(
        down.text().await.unwrap(),
        "<h1>page for /hub/error/503?url=%2Fuser%2Fdead%2Fx%3Fy%3D1</h1>"
    );
    let missing = client.get(proxy.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.text().await.unwrap(),
        "<h1>page for /hub/error/404?url=%2Fnowhere</h1>"
    );
    proxy.stop().await;

    // When the error target itself is down, the answer falls back to plain text with the same status.
    let proxy = TestProxy::start(ProxyConfig {
        error_target: Some(format!("http://{dead}")),
        ..ProxyConfig::default()
    })
    .await;
    let missing = client.get(proxy.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().await.unwrap(), "Not Found");
    proxy.stop().await;
}

#[tokio::test]
async fn proxy_timeout_gives_503() {
    // Accepts connections but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let proxy = TestProxy::start(ProxyConfig {
        proxy_timeout: Some(Duration::from_millis(300)),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/slow", &format!("http://{silent_addr}"));
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(DEADLINE, http_client().get(proxy.url("/slow")).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        proxy
            .handle
            .metrics_text()
            .contains("hubfleet_proxy_upstream_errors_total{kind=\"timeout\"} 1")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn successful_traffic_updates_last_activity_and_errors_do_not() {
    let user = echo_upstream().await;
    let failing = upstream(|_req: Request<Incoming>| async {
        Response::builder()
            .status(500)
            .body(full("boom"))
            .expect("response builds")
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/user/a", &format!("http://{user}"));
    proxy.route("/user/b", &format!("http://{failing}"));
    let routes = proxy.handle.routes().clone();
    let before_a = routes.get("/user/a").unwrap().activity().last();
    let before_b = routes.get("/user/b").unwrap().activity().last();
    // Timestamps have millisecond resolution; let the clock move past them first.
    wait_until("the clock passes the route timestamps", || {
        chrono::Utc::now() > before_a.max(before_b)
    })
    .await;

    let client = http_client();
    assert_eq!(
        client
            .get(proxy.url("/user/a/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(proxy.url("/user/b/x"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    assert!(routes.get("/user/a").unwrap().activity().last() > before_a);
    assert_eq!(routes.get("/user/b").unwrap().activity().last(), before_b);
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_listener_serves_prometheus_text() {
    let user = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig {
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/", &format!("http://{user}"));
    let client = http_client();
    assert_eq!(
        client.get(proxy.url("/x")).send().await.unwrap().status(),
        200
    );
    let metrics = client
        .get(format!("http://{}/metrics", proxy.metrics.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            "# TYPE hubfleet_proxy_requests_web counter\nhubfleet_proxy_requests_web_total 1\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert!(
        text.contains("hubfleet_proxy_responses_total{code=\"2xx\"} 1"),
        "{text}"
    );
    let other = client
        .get(format!("http://{}/other", proxy.metrics.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(full("ok")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{addr}"));
    let client = http_client();
    for _ in 0..20 {
        let response = client.get(proxy.url("/x")).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sequential requests should share one upstream connection"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_stops_accepting() {
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let (arrived_signal, release_wait) = (arrived.clone(), release.clone());
    let slow = upstream(move |_req: Request<Incoming>| {
        let (arrived, release) = (arrived_signal.clone(), release_wait.clone());
        async move {
            arrived.notify_one();
            release.notified().await;
            Response::new(full("finished"))
        }
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{slow}"));
    let public = proxy.public;
    let in_flight = tokio::spawn(http_client().get(proxy.url("/slow")).send());
    tokio::time::timeout(DEADLINE, arrived.notified())
        .await
        .expect("request reaches the upstream");

    let stopping = tokio::spawn(proxy.stop());
    // New connections are refused once the listener is closed.
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(public).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(DEADLINE, refused)
        .await
        .expect("listener closes");
    release.notify_one();
    let response = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let proxy = TestProxy::start(ProxyConfig {
        keep_alive_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /_chp_healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection was not closed");
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    proxy.stop().await;
}
