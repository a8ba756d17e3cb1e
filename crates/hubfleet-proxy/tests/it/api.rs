//! CHP REST API conformance: every endpoint, auth, and the 400/403/404/405 cases.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use hubfleet_proxy::ProxyConfig;
use serde_json::{Value, json};

use crate::support::{TestProxy, http_client};

async fn proxy_with_token(token: Option<&str>) -> TestProxy {
    TestProxy::start(ProxyConfig {
        auth_token: token.map(str::to_owned),
        ..ProxyConfig::default()
    })
    .await
}

#[tokio::test]
async fn route_lifecycle() {
    let proxy = proxy_with_token(Some("secret")).await;
    let client = http_client();
    let auth = "token secret";

    let empty: Value = client
        .get(proxy.api_url(""))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty, json!({}));

    let posted = client
        .post(proxy.api_url("/user/alice/"))
        .header("authorization", auth)
        .body(json!({ "target": "http://127.0.0.1:9999", "user": "alice", "server_name": "", "jupyterhub": true }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    assert!(posted.text().await.unwrap().is_empty());

    let all: Value = client
        .get(proxy.api_url(""))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let route = &all["/user/alice"];
    assert_eq!(route["target"], "http://127.0.0.1:9999");
    assert_eq!(route["user"], "alice");
    assert_eq!(route["jupyterhub"], true);
    assert!(DateTime::parse_from_rfc3339(route["last_activity"].as_str().unwrap()).is_ok());
    assert_eq!(all.as_object().unwrap().len(), 1);

    let single = client
        .get(proxy.api_url("/user/alice"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(single.status(), 200);
    assert_eq!(single.headers()["content-type"], "application/json");
    assert_eq!(single.json::<Value>().await.unwrap()["user"], "alice");

    let missing = client
        .get(proxy.api_url("/user/bob"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let deleted = client
        .delete(proxy.api_url("/user/alice"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let deleted_again = client
        .delete(proxy.api_url("/user/alice"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted_again.status(), 404);
    assert!(proxy.handle.routes().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn token_is_enforced() {
    let proxy = proxy_with_token(Some("secret")).await;
    let client = http_client();
    let no_token = client.get(proxy.api_url("")).send().await.unwrap();
    assert_eq!(no_token.status(), 403);
    let wrong = client
        .get(proxy.api_url(""))
        .header("authorization", "token nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let bearer = client
        .get(proxy.api_url(""))
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 403);
    let post = client
        .post(proxy.api_url("/x"))
        .body(r#"{"target":"http://a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert!(
        proxy.handle.routes().is_empty(),
        "a rejected POST must not add a route"
    );
    let right = client
        .get(proxy.api_url(""))
        .header("authorization", "token secret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn open_api_without_token() {
    let proxy = proxy_with_token(None).await;
    let response = http_client().get(proxy.api_url("")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn error_statuses() {
    let proxy = proxy_with_token(None).await;
    let client = http_client();
    let invalid_json = client
        .post(proxy.api_url("/x"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid_json.status(), 400);
    let empty_body = client.post(proxy.api_url("/x")).send().await.unwrap();
    assert_eq!(empty_body.status(), 400);
    let no_target = client
        .post(proxy.api_url("/x"))
        .body(r#"{"user":"a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_target.status(), 400);
    let numeric_target = client
        .post(proxy.api_url("/x"))
        .body(r#"{"target":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(numeric_target.status(), 400);
    let array = client
        .post(proxy.api_url("/x"))
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(array.status(), 400);
    let put = client
        .put(proxy.api_url("/x"))
        .body(r#"{"target":"http://a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    let unknown = client
        .get(format!("http://{}/api/other", proxy.api))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let lookalike = client
        .get(format!("http://{}/api/routesx", proxy.api))
        .send()
        .await
        .unwrap();
    assert_eq!(lookalike.status(), 404);
    assert!(proxy.handle.routes().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn path_arguments_are_decoded_and_normalised() {
    let proxy = proxy_with_token(None).await;
    let client = http_client();
    let posted = client
        .post(proxy.api_url("/user/a%40b%20c/"))
        .body(r#"{"target":"http://a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    assert!(proxy.handle.routes().get("/user/a@b c").is_some());
    let single = client
        .get(proxy.api_url("/user/a%40b%20c"))
        .send()
        .await
        .unwrap();
    assert_eq!(single.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn default_route_is_listed_and_posting_root_works() {
    let proxy = TestProxy::start(ProxyConfig {
        default_target: Some("http://hub:8081".into()),
        ..ProxyConfig::default()
    })
    .await;
    let client = http_client();
    let all: Value = client
        .get(proxy.api_url(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["/"]["target"], "http://hub:8081");
    let posted = client
        .post(proxy.api_url("/"))
        .body(r#"{"target":"http://other"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    let all: Value = client
        .get(proxy.api_url(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["/"]["target"], "http://other");
    proxy.stop().await;
}

#[tokio::test]
async fn inactive_since_filters_by_last_activity() {
    let proxy = proxy_with_token(None).await;
    let client = http_client();
    for path in ["/a", "/b"] {
        let posted = client
            .post(proxy.api_url(path))
            .body(r#"{"target":"http://a"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 201);
    }
    let future = (Utc::now() + ChronoDuration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let past = (Utc::now() - ChronoDuration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let inactive: Value = client
        .get(format!("{}?inactive_since={}", proxy.api_url(""), future))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inactive.as_object().unwrap().len(), 2, "{inactive}");
    let camel: Value = client
        .get(format!("{}?inactiveSince={}", proxy.api_url(""), future))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(camel.as_object().unwrap().len(), 2, "{camel}");
    let none: Value = client
        .get(format!("{}?inactive_since={}", proxy.api_url(""), past))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!({}));
    let bad = client
        .get(format!(
            "{}?inactive_since={}",
            proxy.api_url(""),
            "not-a-date"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    proxy.stop().await;
}

/// hubfleet's addition to CHP's API: `/api/metrics`, for the hub to append to `/hub/metrics`.
#[tokio::test]
async fn metrics_on_the_api_port_need_the_token() {
    let proxy = proxy_with_token(Some("secret")).await;
    let client = http_client();
    let url = format!("http://{}/api/metrics", proxy.api);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 403);
    assert_eq!(
        client
            .post(&url)
            .header("authorization", "token secret")
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    let metrics = client
        .get(&url)
        .header("authorization", "token secret")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("\nhubfleet_proxy_requests_api_total 3\n"),
        "the three API requests, this one included, are counted: {text}"
    );
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    proxy.stop().await;
}
