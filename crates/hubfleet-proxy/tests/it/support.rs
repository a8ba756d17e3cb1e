//! Test support: an in-process proxy on ephemeral ports and tiny hyper upstream servers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hubfleet_proxy::{ProxyConfig, ProxyError, ProxyHandle, ProxyServer};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any single step of a test may take before we call it a hang.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub type TestBody = BoxBody<Bytes, hyper::Error>;

pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A proxy serving in this process until [`TestProxy::stop`].
pub struct TestProxy {
    pub public: SocketAddr,
    pub api: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub redirect: Option<SocketAddr>,
    pub handle: ProxyHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ProxyError>>>,
}

impl TestProxy {
    pub async fn start(config: ProxyConfig) -> TestProxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = ProxyServer::bind(config).await.expect("proxy binds");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let proxy = TestProxy {
            public: server.public_addr(),
            api: server.api_addr(),
            metrics: server.metrics_addr(),
            redirect: server.redirect_addr(),
            handle: server.handle(),
            shutdown: Some(shutdown),
            task: None,
        };
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        TestProxy {
            task: Some(task),
            ..proxy
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}/api/routes{path}", self.api)
    }

    /// Adds a route straight into the table.
    pub fn route(&self, path: &str, target: &str) {
        let data = serde_json::json!({ "target": target });
        self.handle
            .routes()
            .insert(path, data.as_object().cloned().unwrap_or_default())
            .expect("route inserts");
    }

    /// Signals shutdown and waits (bounded) for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let served = tokio::time::timeout(DEADLINE, task)
                .await
                .expect("proxy stops in time");
            served
                .expect("serve task does not panic")
                .expect("serve returns Ok");
        }
    }
}

/// An HTTP/1.1 upstream running `handler` for every request.
pub async fn upstream<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("upstream binds");
    let addr = listener.local_addr().expect("upstream address");
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An upstream answering with a JSON description of the request it got (method, URI, headers).
pub async fn echo_upstream() -> SocketAddr {
    upstream(|req: Request<Incoming>| async move {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .keys()
            .map(|name| {
                let values: Vec<String> = req
                    .headers()
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("").to_owned())
                    .collect();
                (
                    name.as_str().to_owned(),
                    serde_json::Value::String(values.join(" | ")),
                )
            })
            .collect();
        let description = serde_json::json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "headers": headers,
        });
        Response::builder()
            .header("content-type", "application/json")
            .header("x-upstream", "echo")
            .body(full(description.to_string()))
            .expect("response builds")
    })
    .await
}

/// A loopback address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

/// Polls `condition` until it holds or [`DEADLINE`] passes.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
