//! A client for the CHP REST API, for the hub to drive `hubfleet proxy` (or configurable-http-proxy itself).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::error::ClientError;

/// One route as the proxy reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteEntry {
    /// Where the route's traffic goes.
    pub target: String,
    /// The last traffic on the route, if the proxy reports it.
    pub last_activity: Option<DateTime<Utc>>,
    /// The rest of the data posted with the route (without `target` and `last_activity`).
    pub data: Map<String, Value>,
}

/// How long an idle API connection may be reused: below the 5 s after which proxies close them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Talks to a proxy's REST API (`/api/routes`) with `Authorization: token …`.
#[derive(Clone)]
pub struct ChpClient {
    http: reqwest::Client,
    /// The API's base URL, without a trailing slash.
    api_url: String,
    token: Option<String>,
}

impl fmt::Debug for ChpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChpClient")
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ChpClient {
    /// A client for the API at `api_url` (e.g. `http://127.0.0.1:8001`).
    pub fn new(api_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = api_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidUrl(api_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            // Proxies close idle API connections after a few seconds (CHP after Node's 5 s, ours
            // after `--keep-alive-timeout`, also 5 s): never reuse one near that age.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(ClientError::Http)?;
        Ok(Self {
            http,
            api_url: base.to_owned(),
            token,
        })
    }

    /// Adds (or replaces) a route. `data` (an object, or `null`) is stored with the route; `target` is set.
    pub async fn add_route(
        &self,
        path: &str,
        target: &str,
        data: Value,
    ) -> Result<(), ClientError> {
        let mut body = match data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        body.insert("target".to_owned(), Value::String(target.to_owned()));
        let response = self
            .send(Method::POST, path, Some(Value::Object(body)))
            .await?;
        expect_status(&response, &[StatusCode::CREATED], "POST", path)?;
        Ok(())
    }

    /// Deletes a route; a missing route is not an error.
    pub async fn delete_route(&self, path: &str) -> Result<(), ClientError> {
        let response = self.send(Method::DELETE, path, None).await?;
        expect_status(
            &response,
            &[StatusCode::NO_CONTENT, StatusCode::NOT_FOUND],
            "DELETE",
            path,
        )?;
        Ok(())
    }

    /// Every route, keyed by route path.
    pub async fn get_routes(&self) -> Result<BTreeMap<String, RouteEntry>, ClientError> {
        let response = self.send(Method::GET, "", None).await?;
        expect_status(&response, &[StatusCode::OK], "GET", "")?;
        let bytes = response.bytes().await.map_err(ClientError::Http)?;
        let table: BTreeMap<String, Map<String, Value>> =
            serde_json::from_slice(&bytes).map_err(ClientError::Decode)?;
        Ok(table
            .into_iter()
            .map(|(path, data)| (path, route_entry(data)))
            .collect())
    }

    /// The proxy's metrics (OpenMetrics text ending in `# EOF`) from hubfleet's `/api/metrics`;
    /// `None` from a proxy without them, such as configurable-http-proxy.
    pub async fn metrics_text(&self) -> Result<Option<String>, ClientError> {
        let url = format!("{}/api/metrics", self.api_url);
        let response = self.send_to(Method::GET, url, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect_status(&response, &[StatusCode::OK], "GET", "/api/metrics")?;
        response.text().await.map(Some).map_err(ClientError::Http)
    }

    /// Whether the API answers and accepts our token.
    pub async fn health(&self) -> Result<(), ClientError> {
        let response = self.send(Method::GET, "", None).await?;
        expect_status(&response, &[StatusCode::OK], "GET", "")?;
        Ok(())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}/api/routes{}", self.api_url, encode_route_path(path));
        self.send_to(method, url, body).await
    }

    async fn send_to(
        &self,
        method: Method,
        url: String,
        body: Option<Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.header(reqwest::header::AUTHORIZATION, format!("token {token}"));
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).map_err(ClientError::Decode)?);
        }
        let retry = request.try_clone();
        match request.send().await {
            // A kept connection the proxy closed just as we reused it. Every call of the API is
            // idempotent (a POST replaces the route), so one more try on a fresh connection is safe.
            Err(error) if !error.is_timeout() && retry.is_some() => {
                tracing::debug!(%error, "proxy API call failed on a kept connection; trying again");
                retry
                    .expect("checked")
                    .send()
                    .await
                    .map_err(ClientError::Http)
            }
            outcome => outcome.map_err(ClientError::Http),
        }
    }
}

fn expect_status(
    response: &reqwest::Response,
    accepted: &[StatusCode],
    method: &'static str,
    path: &str,
) -> Result<(), ClientError> {
    if accepted.contains(&response.status()) {
        return Ok(());
    }
    Err(ClientError::Status {
        method,
        path: path.to_owned(),
        status: response.status().as_u16(),
    })
}

/// Normalises a route path for the URL (leading `/`, no trailing `/`) and percent-encodes each segment.
fn encode_route_path(path: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    // Like Python's `quote(path, safe='@/~')`, which JupyterHub uses for route specs.
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'[')
        .add(b']')
        .add(b'\\')
        .add(b'^')
        .add(b'|');
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return String::new();
    }
    format!("/{}", utf8_percent_encode(trimmed, SEGMENT))
}

fn route_entry(mut data: Map<String, Value>) -> RouteEntry {
    let target = match data.remove("target") {
        Some(Value::String(target)) => target,
        _ => String::new(),
    };
    let last_activity = match data.remove("last_activity") {
        Some(Value::String(stamp)) => DateTime::parse_from_rfc3339(&stamp)
            .ok()
            .map(|stamp| stamp.with_timezone(&Utc)),
        _ => None,
    };
    RouteEntry {
        target,
        last_activity,
        data,
    }
}
