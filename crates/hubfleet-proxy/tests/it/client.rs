//! The hub's `ChpClient` against a real proxy.

use hubfleet_proxy::client::ChpClient;
use hubfleet_proxy::{ClientError, ProxyConfig};
use serde_json::json;

use crate::support::TestProxy;

/// A proxy whose API wants the token `hub-secret`, its API URL, and a client holding that token.
async fn proxy_and_client() -> (TestProxy, String, ChpClient) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let proxy = TestProxy::start(ProxyConfig {
        auth_token: Some("hub-secret".into()),
        ..ProxyConfig::default()
    })
    .await;
    let api_url = format!("http://{}", proxy.api);
    let client = ChpClient::new(&api_url, Some("hub-secret".into())).unwrap();
    (proxy, api_url, client)
}

#[tokio::test]
async fn add_list_delete_and_health() {
    let (proxy, api_url, client) = proxy_and_client().await;

    client.health().await.unwrap();
    client
        .add_route(
            "/user/alice/",
            "http://10.0.0.5:8888",
            json!({ "user": "alice", "jupyterhub": true }),
        )
        .await
        .unwrap();
    let routes = client.get_routes().await.unwrap();
    let alice = &routes["/user/alice"];
    assert_eq!(alice.target, "http://10.0.0.5:8888");
    assert_eq!(alice.data["user"], "alice");
    assert!(!alice.data.contains_key("target"));
    assert!(alice.last_activity.is_some());

    client.delete_route("/user/alice/").await.unwrap();
    client.delete_route("/user/alice/").await.unwrap();
    assert!(client.get_routes().await.unwrap().is_empty());

    let intruder = ChpClient::new(&api_url, Some("wrong".into())).unwrap();
    assert!(matches!(
        intruder.health().await,
        Err(ClientError::Status { status: 403, .. })
    ));
    assert!(
        !format!("{intruder:?}").contains("wrong"),
        "token leaked into Debug output"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn unreachable_api_is_an_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr = crate::support::closed_port().await;
    let client = ChpClient::new(&format!("http://{addr}"), None).unwrap();
    assert!(matches!(client.health().await, Err(ClientError::Http(_))));
    assert!(matches!(
        ChpClient::new("127.0.0.1:8001", None),
        Err(ClientError::InvalidUrl(_))
    ));
}

/// A proxy that closes a kept-alive API connection just as the client reuses it (the race with a
/// 5 s keep-alive timeout) must not make the call fail: the client tries once more. The server
/// here is a fake (a scripted TCP listener): neither real proxy closes on cue, so the race could
/// not be made to happen every time with one.
#[tokio::test]
async fn a_kept_connection_closed_as_it_is_reused_is_retried() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let first_connection = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                // One answer per request head; the first connection hangs up on its second request.
                for request in 1.. {
                    if socket.read(&mut buffer).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if first_connection && request == 2 {
                        return;
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    socket.write_all(reply).await.unwrap();
                }
            });
        }
    });
    let client = ChpClient::new(&api_url, Some("hub-secret".into())).unwrap();
    client.health().await.unwrap();
    client
        .health()
        .await
        .expect("the second call succeeds on a fresh connection");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the retry used a new connection"
    );
}

#[tokio::test]
async fn metrics_come_from_hubfleets_proxy() {
    let (_proxy, _, client) = proxy_and_client().await;
    let text = client
        .metrics_text()
        .await
        .unwrap()
        .expect("hubfleet's proxy has metrics");
    assert!(
        text.contains("# TYPE hubfleet_proxy_requests_web counter"),
        "{text}"
    );
}
