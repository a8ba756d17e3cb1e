//! The hub's `ChpClient` against a real proxy.

use hubfleet_proxy::client::ChpClient;
use hubfleet_proxy::{ClientError, ProxyConfig};
use serde_json::json;

use crate::support::TestProxy;

#[tokio::test]
async fn add_list_delete_and_health() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let proxy = TestProxy::start(ProxyConfig {
        auth_token: Some("hub-secret".into()),
        ..ProxyConfig::default()
    })
    .await;
    let api_url = format!("http://{}", proxy.api);
    let client = ChpClient::new(&api_url, Some("hub-secret".into())).unwrap();

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
