//! Malformed requests over raw TCP get 4xx answers and never wedge the proxy.

use std::net::SocketAddr;

use hubfleet_proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{DEADLINE, TestProxy, echo_upstream};

/// Writes `request` and reads until the proxy closes the connection (bounded by [`DEADLINE`]).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The proxy may answer and close before it has read everything; a failed write is fine then.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "proxy neither answered nor closed in time");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

async fn assert_healthy(proxy: &TestProxy) {
    let answer = raw_exchange(
        proxy.public,
        b"GET /_chp_healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.ends_with(r#"{"status":"OK"}"#), "{answer}");
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_proxy_keeps_serving() {
    let user = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{user}"));
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("bad method token", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        ("oversized headers", huge_header.into_bytes()),
        (
            "conflicting content lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
        ),
        ("non-chunked transfer encoding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello".to_vec()),
        ("invalid chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec()),
    ];
    for (name, request) in cases {
        let answer = raw_exchange(proxy.public, &request).await;
        let status = status_of(&answer);
        // An invalid chunk is only noticed after the request was forwarded; the connection is then cut.
        let acceptable = (400..500).contains(&status)
            || (name == "invalid chunk size" && (status == 0 || status >= 400));
        assert!(acceptable, "{name}: got {answer:?}");
        assert_healthy(&proxy).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn content_length_with_chunked_is_read_as_chunked_and_not_smuggled() {
    let user = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{user}"));
    // If Content-Length won, "0\r\n\r\nGET /smuggled ..." would be parsed as a second request.
    let request = b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_exchange(proxy.public, request).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("/first"), "{answer}");
    assert!(
        !answer.contains("/smuggled"),
        "a smuggled request was forwarded: {answer}"
    );
    assert_healthy(&proxy).await;
    proxy.stop().await;
}

#[tokio::test]
async fn broken_upgrade_handshakes_are_answered() {
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    // An upstream that validates WebSocket handshakes rejects one without `Sec-WebSocket-Key`; the proxy
    // relays the rejection instead of tunnelling.
    let ws_addr =
        crate::support::upstream(|req: http::Request<hyper::body::Incoming>| async move {
            let status = if req.headers().contains_key("sec-websocket-key") {
                101
            } else {
                400
            };
            http::Response::builder()
                .status(status)
                .body(crate::support::full(""))
                .expect("response builds")
        })
        .await;
    proxy.route("/ws", &format!("http://{ws_addr}"));
    let answer = raw_exchange(
        proxy.public,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let status = status_of(&answer);
    assert!((400..500).contains(&status), "{answer:?}");
    assert_healthy(&proxy).await;
    assert_eq!(proxy.handle.metrics().websockets_active(), 0);
    proxy.stop().await;
}
