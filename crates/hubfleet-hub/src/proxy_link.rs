//! The hub's link to the proxy process: starting or adopting it, and telling it about routes.
//!
//! The proxy is a separate `hubfleet proxy` process in its own process group, so it outlives the
//! hub: a hub restart (even `kill -9`) leaves established connections alone. At start the hub
//! adopts a healthy proxy it finds through the pid file and the API token in the data directory,
//! and otherwise launches one. It checks on it every few seconds and relaunches it (restoring
//! routes) if it died.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hubfleet_proxy::client::ChpClient;

use crate::HubError;

/// How long a scrape of `/hub/metrics` waits for the proxy's part.
const PROXY_METRICS_TIMEOUT: Duration = Duration::from_secs(2);

/// How to launch the proxy process when none is running.
#[derive(Debug, Clone)]
pub struct ProxyLauncher {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Passed as `CONFIGPROXY_AUTH_TOKEN`; never logged.
    pub auth_token: String,
    pub log_file: PathBuf,
}

/// A route as the hub sees it: where a path prefix goes and which server it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRoute {
    pub target: String,
    pub user: Option<String>,
    pub server_name: Option<String>,
    pub service: Option<String>,
    pub last_activity: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct ProxyLink {
    client: ChpClient,
    launcher: Option<ProxyLauncher>,
}

impl ProxyLink {
    /// `launcher: None` means the proxy is managed elsewhere (it must already be running).
    pub fn new(
        api_url: &str,
        auth_token: Option<String>,
        launcher: Option<ProxyLauncher>,
    ) -> Result<Self, HubError> {
        let client = ChpClient::new(api_url, auth_token)
            .map_err(|e| HubError::Proxy(format!("proxy API client for {api_url}: {e}")))?;
        Ok(ProxyLink { client, launcher })
    }

    /// Makes sure a proxy answers; launches one if needed. Returns true if it launched a new one
    /// (whose route table is empty, so the caller must restore routes).
    pub async fn ensure_running(&self) -> Result<bool, HubError> {
        if self.client.health().await.is_ok() {
            return Ok(false);
        }
        let Some(launcher) = &self.launcher else {
            return Err(HubError::Proxy(
                "the proxy's API does not answer and hubfleet is not configured to launch it"
                    .into(),
            ));
        };
        tracing::info!(program = %launcher.program.display(), "launching the proxy process");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launcher.log_file)
            .map_err(|e| {
                HubError::Internal(format!("opening {}: {e}", launcher.log_file.display()))
            })?;
        let log_err = log
            .try_clone()
            .map_err(|e| HubError::Internal(format!("duplicating the proxy log handle: {e}")))?;
        let mut command = std::process::Command::new(&launcher.program);
        command
            .args(&launcher.args)
            .env("CONFIGPROXY_AUTH_TOKEN", &launcher.auth_token)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Its own process group: Ctrl-C or a signal to the hub's group must not take the proxy down.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| {
            HubError::Proxy(format!("launching {}: {e}", launcher.program.display()))
        })?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut delay = Duration::from_millis(20);
        loop {
            if self.client.health().await.is_ok() {
                // Deliberately not waited on: the proxy must outlive this process. (If it dies
                // while this hub runs it stays a zombie until the hub exits and init reaps it.)
                std::mem::drop(child);
                return Ok(true);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(HubError::Proxy(format!(
                    "the proxy exited at start ({status}); see {}",
                    launcher.log_file.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(HubError::Proxy(format!(
                    "the proxy did not answer within 15 s; see {}",
                    launcher.log_file.display()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    pub async fn add_route(
        &self,
        prefix: &str,
        target: &str,
        user: &str,
        server_name: &str,
    ) -> Result<(), HubError> {
        let data =
            serde_json::json!({ "user": user, "server_name": server_name, "jupyterhub": true });
        self.client
            .add_route(prefix, target, data)
            .await
            .map_err(|e| HubError::Proxy(e.to_string()))
    }

    pub async fn add_service_route(
        &self,
        prefix: &str,
        target: &str,
        service: &str,
    ) -> Result<(), HubError> {
        let data = serde_json::json!({ "service": service, "jupyterhub": true });
        self.client
            .add_route(prefix, target, data)
            .await
            .map_err(|e| HubError::Proxy(e.to_string()))
    }

    /// The proxy's own metrics (OpenMetrics text ending in `# EOF`), or `None` when the proxy has
    /// none to give (configurable-http-proxy) or does not answer in time; a scrape of the hub's
    /// metrics never waits long on the proxy.
    pub async fn metrics_text(&self) -> Option<String> {
        match tokio::time::timeout(PROXY_METRICS_TIMEOUT, self.client.metrics_text()).await {
            Ok(Ok(text)) => text,
            Ok(Err(error)) => {
                tracing::warn!(%error, "reading the proxy's metrics");
                None
            }
            Err(_) => {
                tracing::warn!("the proxy's metrics did not come within {PROXY_METRICS_TIMEOUT:?}");
                None
            }
        }
    }

    pub async fn delete_route(&self, prefix: &str) -> Result<(), HubError> {
        self.client
            .delete_route(prefix)
            .await
            .map_err(|e| HubError::Proxy(e.to_string()))
    }

    /// The proxy's routes keyed by normalised path (no trailing slash, as the proxy stores them).
    pub async fn routes(&self) -> Result<BTreeMap<String, HubRoute>, HubError> {
        let routes = self
            .client
            .get_routes()
            .await
            .map_err(|e| HubError::Proxy(e.to_string()))?;
        Ok(routes
            .into_iter()
            .map(|(path, entry)| {
                let text = |key: &str| {
                    entry
                        .data
                        .get(key)
                        .and_then(|v| v.as_str())
                        .map(String::from)
                };
                let route = HubRoute {
                    user: text("user"),
                    server_name: text("server_name"),
                    service: text("service"),
                    target: entry.target,
                    last_activity: entry.last_activity,
                };
                (path, route)
            })
            .collect())
    }
}
