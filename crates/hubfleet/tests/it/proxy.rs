//! `hubfleet proxy` as a process: stock JupyterHub on it, streaming and memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::{
    Browser, HubfleetProxy, KernelSocket, STOCK_HUB_PASSWORD, StockJupyterHub, free_port,
    hubfleet_bin, peak_rss_kib, workspace_root,
};

/// Stock JupyterHub 6.1.1 with `ConfigurableHTTPProxy.command = [hubfleet, "proxy"]`: the whole
/// browser flow and a kernel WebSocket go through our proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_jupyterhub_runs_on_hubfleet_proxy() {
    login_spawn_and_run_kernel_through_our_proxy("6.1.1", false).await;
}

/// JupyterHub's `internal_ssl = True`: our proxy serves its REST API over mutual TLS and reaches
/// the hub and the single-user server (HTTP and the kernel WebSocket) at `https://` targets with
/// JupyterHub's client certificate and CAs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_jupyterhub_with_internal_ssl_runs_on_hubfleet_proxy() {
    login_spawn_and_run_kernel_through_our_proxy("6.1.1", true).await;
}

/// The same with the previous major version, 5.5.4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_jupyterhub_5_runs_on_hubfleet_proxy() {
    login_spawn_and_run_kernel_through_our_proxy("5.5.4", false).await;
}

async fn login_spawn_and_run_kernel_through_our_proxy(version: &str, internal_ssl: bool) {
    let proxy_command = vec![hubfleet_bin().display().to_string(), "proxy".to_owned()];
    let hub = if internal_ssl {
        StockJupyterHub::start_with_internal_ssl(version, Some(proxy_command)).await
    } else {
        StockJupyterHub::start(version, Some(proxy_command)).await
    };
    let proxy_pid = hub
        .proxy_pid()
        .expect("JupyterHub wrote the proxy's pid file");
    let proxy_cmdline = std::fs::read(format!("/proc/{proxy_pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&proxy_cmdline).contains("hubfleet"),
        "the proxy JupyterHub started is ours"
    );

    let browser = Browser::new(&hub.public_url());
    let login = browser.login("alice", STOCK_HUB_PASSWORD).await;
    assert_eq!(login.status(), StatusCode::FOUND, "login redirects");
    let lab = browser
        .spawn_and_wait_for_lab("alice", Duration::from_secs(180))
        .await;
    assert!(
        lab.contains(r#""hubUser": "alice""#),
        "the lab page is alice's single-user server"
    );
    let routes: serde_json::Value = hub
        .proxy_api_client(true)
        .get(format!("{}/api/routes", hub.proxy_api_url()))
        .header("Authorization", format!("token {}", hub.proxy_auth_token()))
        .send()
        .await
        .expect("GET our proxy's routes")
        .json()
        .await
        .expect("routes are JSON");
    assert_eq!(routes["/user/alice"]["user"], "alice", "{routes}");
    assert_eq!(routes["/user/alice"]["jupyterhub"], true, "{routes}");
    if internal_ssl {
        let target = routes["/user/alice"]["target"].as_str().unwrap_or_default();
        assert!(target.starts_with("https://"), "{routes}");
        let anonymous = hub
            .proxy_api_client(false)
            .get(format!("{}/api/routes", hub.proxy_api_url()))
            .header("Authorization", format!("token {}", hub.proxy_auth_token()))
            .send()
            .await;
        assert!(
            anonymous.is_err(),
            "the proxy API admits no client without a certificate from JupyterHub's CA"
        );
    }

    let kernel_id = browser.start_kernel("alice").await;
    let mut kernel = KernelSocket::open(&browser, "alice", &kernel_id).await;
    let output = kernel
        .execute("print(6*7)")
        .await
        .expect("kernel runs code");
    assert_eq!(output.trim(), "42");
    // The same socket keeps working for a second request.
    let output = kernel
        .execute("import sys; print('stderr', file=sys.stderr); print('x' * 3)")
        .await
        .expect("kernel runs more code");
    assert!(
        output.contains("stderr") && output.contains("xxx"),
        "{output:?}"
    );
    kernel.close().await;
}

const GIB: u64 = 1 << 30;
const CHUNK: usize = 256 * 1024;
/// The goal from the issue: streaming must not buffer whole bodies.
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;

/// 1 GiB up and 1 GiB down through the proxy; its peak RSS stays small and no byte is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_upload_and_download_stream_in_bounded_memory() {
    let upstream = start_streaming_upstream().await;
    let proxy = HubfleetProxy::start("stream-test-token", &[]).await;
    proxy
        .add_route("/stream", &format!("http://{upstream}"))
        .await;
    let client = reqwest::Client::new();

    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let upload = futures_util::stream::iter(
        std::iter::repeat_n(chunk, (GIB / CHUNK as u64) as usize).map(Ok::<_, Infallible>),
    );
    let response = client
        .post(proxy.public_url("/stream/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("upload through the proxy");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let received: u64 = response
        .text()
        .await
        .expect("upload reply")
        .parse()
        .expect("a byte count");
    assert_eq!(received, GIB, "upstream received every uploaded byte");

    let response = client
        .get(proxy.public_url("/stream/download"))
        .send()
        .await
        .expect("download through the proxy");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut downloaded = 0u64;
    while let Some(chunk) = body.next().await {
        downloaded += chunk.expect("download chunk").len() as u64;
    }
    assert_eq!(downloaded, GIB, "client received every downloaded byte");

    let peak = peak_rss_kib(proxy.process.pid());
    eprintln!("hubfleet proxy peak RSS after 2 GiB streamed: {peak} KiB");
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "proxy peak RSS {peak} KiB is not below {PEAK_RSS_LIMIT_KIB} KiB"
    );
}

/// The CHP REST API on the real process: token auth, route CRUD, routing, health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chp_rest_api_through_the_process() {
    let upstream = start_streaming_upstream().await;
    let proxy = HubfleetProxy::start("api-test-token", &[]).await;
    let client = reqwest::Client::new();

    let anonymous = client
        .get(proxy.api_url("/api/routes"))
        .send()
        .await
        .expect("GET /api/routes");
    assert_eq!(anonymous.status(), reqwest::StatusCode::FORBIDDEN);
    let wrong = client
        .get(proxy.api_url("/api/routes"))
        .header("Authorization", "token not-the-token")
        .send()
        .await
        .expect("GET /api/routes");
    assert_eq!(wrong.status(), reqwest::StatusCode::FORBIDDEN);

    proxy
        .add_route("/user/alice", &format!("http://{upstream}"))
        .await;
    let routes = proxy.routes().await;
    let alice = &routes["/user/alice"];
    assert_eq!(alice["target"], format!("http://{upstream}"));
    assert!(alice["last_activity"].is_string(), "{routes}");

    let routed = client
        .get(proxy.public_url("/user/alice/api/status"))
        .send()
        .await
        .expect("routed request");
    assert_eq!(routed.status(), reqwest::StatusCode::OK);
    assert_eq!(routed.text().await.unwrap(), "path=/user/alice/api/status");
    let other = client
        .get(proxy.public_url("/user/alicea/x"))
        .send()
        .await
        .expect("unrouted request");
    assert_eq!(
        other.status(),
        reqwest::StatusCode::NOT_FOUND,
        "whole-segment prefix match"
    );

    let deleted = client
        .delete(proxy.api_url("/api/routes/user/alice"))
        .header("Authorization", "token api-test-token")
        .send()
        .await
        .expect("DELETE route");
    assert_eq!(deleted.status(), reqwest::StatusCode::NO_CONTENT);
    let gone = client
        .get(proxy.public_url("/user/alice/api/status"))
        .send()
        .await
        .expect("request after delete");
    assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);

    let health = client
        .get(proxy.public_url("/_chp_healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let health: serde_json::Value = health.json().await.expect("healthz is JSON");
    assert_eq!(health, serde_json::json!({"status": "OK"}));
}

/// Chromium loads a page through `hubfleet proxy` over HTTPS (HTTP/2 by ALPN) and opens a
/// WebSocket from it: with SETTINGS_ENABLE_CONNECT_PROTOCOL advertised, Chromium sends the
/// WebSocket as an RFC 8441 extended CONNECT on that HTTP/2 connection, which the proxy turns into
/// an HTTP/1.1 Upgrade to the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_websockets_over_http2_through_the_tls_proxy() {
    let node_modules = workspace_root().join(".cache/node/node_modules");
    assert!(
        node_modules.join("playwright-core/package.json").is_file()
            && std::path::Path::new("/usr/bin/chromium").is_file(),
        "Chromium and playwright-core are missing: run `scripts/test`, which installs them"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("proxy.crt"), dir.path().join("proxy.key"));
    let openssl = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(openssl.status.success(), "openssl: {openssl:?}");

    let page = start_page_upstream().await;
    let echo = start_websocket_echo_upstream().await;
    let metrics_port = free_port().to_string();
    let proxy = HubfleetProxy::start_https(
        "h2-websocket-token",
        &cert,
        &key,
        &["--metrics-ip", "127.0.0.1", "--metrics-port", &metrics_port],
    )
    .await;
    proxy.add_route("/", &format!("http://{page}")).await;
    proxy.add_route("/ws", &format!("http://{echo}")).await;

    let script = workspace_root().join("crates/hubfleet/tests/browser/h2_websocket.mjs");
    let mut command = std::process::Command::new("node");
    command
        .arg(script)
        .env("PAGE_URL", proxy.public_url("/"))
        .env("NODE_MODULES", &node_modules);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser script failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("protocol h2"), "page over HTTP/2: {stdout}");
    assert!(
        stdout.contains("echo hello over http/2"),
        "the WebSocket echoed: {stdout}"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("hubfleet_proxy_websockets_http2_total 1"),
        "the WebSocket went over HTTP/2 (extended CONNECT):\n{metrics}"
    );
}

/// The page for the Chromium test: it opens `wss://<host>/ws`, sends one message and exposes the
/// echo as the promise `window.echoed`.
const WEBSOCKET_PAGE: &str = r#"<!doctype html><title>h2 websocket</title><script>
window.echoed = new Promise((resolve, reject) => {
  const socket = new WebSocket(`wss://${location.host}/ws/echo`);
  socket.onopen = () => socket.send('hello over http/2');
  socket.onmessage = (event) => { resolve(event.data); socket.close(); };
  socket.onerror = () => reject(new Error('WebSocket failed'));
});
</script>"#;

async fn start_page_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind page upstream");
    let addr = listener.local_addr().expect("page upstream address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
                    let mut response = Response::new(Full::new(Bytes::from(WEBSOCKET_PAGE)));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn start_websocket_echo_upstream() -> SocketAddr {
    use futures_util::SinkExt;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo upstream");
    let addr = listener.local_addr().expect("echo upstream address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if (message.is_text() || message.is_binary())
                        && socket.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

type UpstreamBody = BoxBody<Bytes, Infallible>;

/// An in-test HTTP server: `GET …/download` streams 1 GiB, `POST …/upload` answers with the
/// number of bytes it read, anything else answers `path=<path>`.
async fn start_streaming_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle_upstream_request);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn handle_upstream_request(
    request: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let body = if path.ends_with("/download") {
        let chunk = Bytes::from(vec![b'd'; CHUNK]);
        let frames = std::iter::repeat_n(chunk, (GIB / CHUNK as u64) as usize)
            .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
        BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
    } else if path.ends_with("/upload") {
        let mut body = request.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                received += data.len() as u64;
            }
        }
        Full::new(Bytes::from(received.to_string())).boxed()
    } else {
        Full::new(Bytes::from(format!("path={path}"))).boxed()
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .body(body)
        .expect("a valid response"))
}

/// The hub's proxy client against the real configurable-http-proxy 5.3.0 (from npm), as when a hub
/// is pointed at an external CHP: routes round-trip with their data, a wrong token is refused, and
/// CHP has no `/api/metrics`, so the hub's scrape simply goes without the proxy's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chp_client_works_against_stock_configurable_http_proxy() {
    use hubfleet_proxy::client::ChpClient;
    crate::support::install_crypto_provider();
    let chp = crate::support::chp_path();
    let (public, api) = (free_port(), free_port());
    let mut command = std::process::Command::new(&chp);
    command
        .args(["--ip", "127.0.0.1", "--port", &public.to_string()])
        .args(["--api-ip", "127.0.0.1", "--api-port", &api.to_string()])
        .env("CONFIGPROXY_AUTH_TOKEN", "chp-test-token");
    let _chp = crate::support::ProcessGuard::spawn("configurable-http-proxy", command);
    let api_url = format!("http://127.0.0.1:{api}");
    let client = ChpClient::new(&api_url, Some("chp-test-token".into())).unwrap();
    crate::support::wait_for("CHP's API", Duration::from_secs(30), || async {
        client.health().await.ok()
    })
    .await;

    client
        .add_route(
            "/user/alice/",
            "http://127.0.0.1:1",
            serde_json::json!({"user": "alice", "server_name": ""}),
        )
        .await
        .unwrap();
    let routes = client.get_routes().await.unwrap();
    let alice = &routes["/user/alice"];
    assert_eq!(alice.target, "http://127.0.0.1:1");
    assert_eq!(alice.data["user"], "alice");
    assert_eq!(client.metrics_text().await.unwrap(), None);
    let intruder = ChpClient::new(&api_url, Some("wrong".into())).unwrap();
    assert!(intruder.health().await.is_err());
    client.delete_route("/user/alice/").await.unwrap();
    assert!(
        !client
            .get_routes()
            .await
            .unwrap()
            .contains_key("/user/alice")
    );
}
