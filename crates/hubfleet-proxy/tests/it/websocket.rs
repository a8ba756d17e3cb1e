//! WebSockets through the proxy: echo, survival across route-table churn, and closing from either side.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use hubfleet_proxy::ProxyConfig;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{DEADLINE, TestProxy, wait_until};

/// A WebSocket server that echoes messages; `close` makes it send a Close frame and hang up, `drop` makes it
/// hang up without one.
async fn ws_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() && message.to_text().ok() == Some("close") {
                        let _ = socket.close(None).await;
                        return;
                    }
                    if message.is_text() && message.to_text().ok() == Some("drop") {
                        return;
                    }
                    let echo = message.is_text() || message.is_binary();
                    if echo && socket.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn next_text<S>(socket: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let message = tokio::time::timeout(DEADLINE, socket.next())
        .await
        .expect("message in time");
    match message {
        Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Waits for the stream to end (close frame, EOF or error), failing on a hang or an unexpected message.
async fn expect_closed<S>(socket: &mut S)
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected message {other:?}"),
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "client did not see the close in time");
}

#[tokio::test]
async fn websocket_echo_survives_route_churn_and_sees_upstream_close() {
    let upstream = ws_echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/user/a", &format!("http://{upstream}"));
    let before = proxy
        .handle
        .routes()
        .get("/user/a")
        .unwrap()
        .activity()
        .last();
    wait_until("the clock passes the route timestamp", || {
        chrono::Utc::now() > before
    })
    .await;

    let (mut socket, response) = tokio_tungstenite::connect_async(format!(
        "ws://{}/user/a/api/kernels/k/channels",
        proxy.public
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "hello");
    assert_eq!(proxy.handle.metrics().websockets_active(), 1);
    assert!(
        proxy
            .handle
            .routes()
            .get("/user/a")
            .unwrap()
            .activity()
            .last()
            > before,
        "tunnel traffic counts as activity"
    );

    // Route updates swap the table under the live tunnel; the tunnel must not notice.
    let routes = proxy.handle.routes();
    for i in 0..10_000 {
        let data = serde_json::json!({ "target": format!("http://127.0.0.1:{}", 1000 + i % 50) });
        routes
            .insert(
                &format!("/user/churn{}", i % 100),
                data.as_object().cloned().unwrap_or_default(),
            )
            .unwrap();
        if i % 3 == 0 {
            routes.remove(&format!("/user/churn{}", (i + 7) % 100));
        }
    }
    for i in 0..20 {
        socket
            .send(Message::text(format!("after churn {i}")))
            .await
            .unwrap();
        assert_eq!(next_text(&mut socket).await, format!("after churn {i}"));
    }

    socket.send(Message::text("close")).await.unwrap();
    expect_closed(&mut socket).await;
    wait_until("the tunnel is gone", || {
        proxy.handle.metrics().websockets_active() == 0
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_hanging_up_without_close_frame_ends_the_client() {
    let upstream = ws_echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{upstream}"));
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.public))
        .await
        .unwrap();
    socket.send(Message::text("drop")).await.unwrap();
    expect_closed(&mut socket).await;
    wait_until("the tunnel is gone", || {
        proxy.handle.metrics().websockets_active() == 0
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn client_closing_ends_the_tunnel() {
    let upstream = ws_echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{upstream}"));
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.public))
        .await
        .unwrap();
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "ping");
    drop(socket);
    wait_until("the tunnel is gone", || {
        proxy.handle.metrics().websockets_active() == 0
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn failed_upgrades_get_plain_statuses() {
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    let dead = crate::support::closed_port().await;
    proxy.route("/dead", &format!("http://{dead}"));
    let no_route = tokio_tungstenite::connect_async(format!("ws://{}/nowhere", proxy.public)).await;
    match no_route {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("expected an HTTP 404, got {other:?}"),
    }
    let down = tokio_tungstenite::connect_async(format!("ws://{}/dead/ws", proxy.public)).await;
    match down {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected an HTTP 503, got {other:?}"),
    }
    assert_eq!(proxy.handle.metrics().websockets_active(), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_tunnels_after_the_grace_period() {
    let upstream = ws_echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig {
        shutdown_grace: std::time::Duration::from_millis(100),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/", &format!("http://{upstream}"));
    let metrics = proxy.handle.metrics().clone();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.public))
        .await
        .unwrap();
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "ping");
    proxy.stop().await;
    expect_closed(&mut socket).await;
    wait_until("the tunnel is gone", || metrics.websockets_active() == 0).await;
}

/// RFC 8441: over HTTP/2 (TLS, ALPN h2) a WebSocket is an extended CONNECT with `:protocol
/// websocket`. The proxy advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, opens an HTTP/1.1 Upgrade to
/// the upstream, answers 200 and tunnels the frames; closing from the upstream reaches the client.
#[tokio::test]
async fn websocket_over_http2_extended_connect_reaches_an_http1_upstream() {
    use std::sync::Arc;

    use http_body_util::Empty;
    use hubfleet_proxy::TlsPaths;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::tls::generate_cert(dir.path(), "h2ws");
    let upstream = ws_echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig {
        tls: Some(TlsPaths::new(&cert, &key)),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/user/a", &format!("http://{upstream}"));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let mut tls_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls_config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);

    let url = format!("https://localhost:{}/user/a/ws/echo", proxy.public.port());
    let extended_connect = || {
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(&url)
            .header("sec-websocket-version", "13")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        request
    };
    // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) may arrive just after the handshake, and
    // hyper refuses an extended CONNECT until it has seen them: retry until the deadline.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut response = loop {
        sender.ready().await.unwrap();
        match sender.send_request(extended_connect()).await {
            Ok(response) => break response,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "extended CONNECT failed: {error:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(response.status(), 200);
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    socket.send(Message::text("over h2")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "over h2");
    assert!(
        proxy
            .handle
            .metrics_text()
            .contains("hubfleet_proxy_websockets_http2_total 1"),
        "the HTTP/2 WebSocket is counted"
    );
    wait_until("the tunnel is counted", || {
        proxy.handle.metrics().websockets_active() == 1
    })
    .await;
    socket.send(Message::text("close")).await.unwrap();
    expect_closed(&mut socket).await;
    wait_until("the tunnel is gone", || {
        proxy.handle.metrics().websockets_active() == 0
    })
    .await;
    proxy.stop().await;
}
